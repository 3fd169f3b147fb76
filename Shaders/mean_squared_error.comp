#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// BACKWARD = 0: partial[workgroup] = Σ (prediction − target)² over the workgroup's
// grid-stride share of one window, by a fixed-shape tree, so that sum_blocks.comp then forms the
// mean deterministically (no float atomics).
// BACKWARD = 1: d prediction[i] = (prediction[i] − target[i]) · (2·dLoss / total).
// Host defines: BACKWARD, P_T, T_T, C_T, C_FROM_F32 (backward). CPUBackend+Loss.swift is the twin.
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer PBuf { P_T p_data[]; };
layout(std430, binding = 1) readonly buffer TBuf { T_T t_data[]; };
#if BACKWARD
layout(std430, binding = 2) readonly buffer LossGradBuf { float loss_grad[]; };
layout(std430, binding = 3) writeonly buffer CBuf { C_T c_data[]; };
#else
layout(std430, binding = 2) writeonly buffer PartialBuf { float partial[]; };
shared float sums[256];
#endif

layout(push_constant) uniform Params { uint count, total; } p;

void main() {
    uint stride = gl_NumWorkGroups.x * 256u;
#if BACKWARD
    float factor = 2.0 * loss_grad[0] / float(p.total);
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        c_data[i] = C_FROM_F32((to_f32(p_data[i]) - to_f32(t_data[i])) * factor);
    }
#else
    uint lid = gl_LocalInvocationID.x;
    float s = 0.0;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        float d = to_f32(p_data[i]) - to_f32(t_data[i]);
        s = fma(d, d, s);
    }
    sums[lid] = s;
    barrier();
    for (uint width = 128u; width > 0u; width >>= 1) {
        if (lid < width) sums[lid] += sums[lid + width];
        barrier();
    }
    if (lid == 0u) partial[gl_WorkGroupID.x] = sums[0];
#endif
}
