#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// The token embedding and its backward (CPUBackend+Embedding.swift is the twin).
// PASS_GATHER: out[t, c] = table[ids[t], c], one invocation per element; an id outside the table
// gives NaN, as on the CPU.
// PASS_SCATTER: d table[v, c] = Σ over tokens t with ids[t] = v, in token order, of G[t, c]; an id
// outside the table adds nothing. Invocation i owns column i % columns of the rows
// [block·rows_per_block, +rows_per_block), block = i / columns: it zeroes them, then walks every
// token in order, so each sum is formed by one invocation in the CPU's order (no atomics).
// Host defines: PASS, W_T (the table, or G), C_T, C_FROM_F32. Workgroup size: specialization constant 0.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer TableBuf { W_T table[]; };
layout(std430, binding = 1) readonly buffer IdBuf { int ids[]; };
layout(std430, binding = 2) buffer OutBuf { C_T out_data[]; };

// count: elements (gather) or invocations (scatter); tokens and rows_per_block: the scatter's.
layout(push_constant) uniform Params { uint count, columns, vocabulary, tokens, rows_per_block; } p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
#if PASS == PASS_GATHER
        int id = ids[i / p.columns];
        float v = id >= 0 && uint(id) < p.vocabulary ? to_f32(table[uint(id) * p.columns + i % p.columns]) : uintBitsToFloat(0x7FC00000u);
        out_data[i] = C_FROM_F32(v);
#else
        uint c = i % p.columns, first = (i / p.columns) * p.rows_per_block, end = min(first + p.rows_per_block, p.vocabulary);
        for (uint v = first; v < end; v++) out_data[v * p.columns + c] = C_FROM_F32(0.0);
        for (uint t = 0; t < p.tokens; t++) {
            int id = ids[t];
            if (id >= int(first) && id < int(end)) {
                uint o = uint(id) * p.columns + c;
                out_data[o] = C_FROM_F32(to_f32(out_data[o]) + to_f32(table[t * p.columns + c]));
            }
        }
#endif
    }
}
