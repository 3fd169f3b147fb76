#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// out[t, c] = table[ids[t], c]; an id outside the table gives NaN, as on the CPU
// (CPUBackend+Embedding.swift). The backward scatter-add runs on the CPU backend.
// Host defines: W_T, C_T, C_FROM_F32. Workgroup size: specialization constant 0.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer TableBuf { W_T table[]; };
layout(std430, binding = 1) readonly buffer IdBuf { int ids[]; };
layout(std430, binding = 2) writeonly buffer OutBuf { C_T out_data[]; };

layout(push_constant) uniform Params { uint count, columns, vocabulary; } p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        int id = ids[i / p.columns];
        float v = id >= 0 && uint(id) < p.vocabulary ? to_f32(table[uint(id) * p.columns + i % p.columns]) : uintBitsToFloat(0x7FC00000u);
        out_data[i] = C_FROM_F32(v);
    }
}
