#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// out[i] = scale · Σ_b partial[b, i], summed in block order: the deterministic second stage of
// reductions split across workgroups (no float atomics). Host defines: C_T, C_FROM_F32, and
// ACCUMULATE (1: add onto the f32 values out holds, for sums gathered over windows in order).
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer PartialBuf { float partial[]; };
#if ACCUMULATE
layout(std430, binding = 1) buffer OutBuf { float out_data[]; };
#else
layout(std430, binding = 1) writeonly buffer OutBuf { C_T out_data[]; };
#endif

layout(push_constant) uniform Params { uint count, blocks; float scale; } p;

void main() {
    uint stride = gl_NumWorkGroups.x * 256u;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        float s = 0.0;
        for (uint b = 0u; b < p.blocks; b++) s += partial[b * p.count + i];
#if ACCUMULATE
        out_data[i] += p.scale * s;
#else
        out_data[i] = C_FROM_F32(p.scale * s);
#endif
    }
}
