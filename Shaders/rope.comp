#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// Hugging Face's rotate-half RoPE: each pair (i, i + D/2) of every head of row t rotated by
// angle = float(position[t]) · inv_freq[i] (an f32 product), backwards with INVERSE (the backward).
// The angle is reduced modulo 2π in three parts (Cody and Waite) before sin and cos, so that large
// positions keep f32 accuracy on drivers whose sin and cos are only accurate near 0.
// PAIR: a second tensor y (a layer's keys beside its queries, its own head count) rotated in the
// same dispatch, its pairs numbered after x's.
// CPUBackend+RoPE.swift is the twin. Host defines: INVERSE, PAIR, X_T, C_T, C_FROM_F32, and Y_T, D_T,
// D_FROM_F32 (PAIR). Workgroup size: specialization constant 0.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer XBuf { X_T x_data[]; };
layout(std430, binding = 1) readonly buffer FreqBuf { float inv_freq[]; };
layout(std430, binding = 2) readonly buffer PosBuf { int positions[]; };
layout(std430, binding = 3) writeonly buffer OutBuf { C_T out_data[]; };
#if PAIR
layout(std430, binding = 4) readonly buffer YBuf { Y_T y_data[]; };
layout(std430, binding = 5) writeonly buffer DBuf { D_T d_data[]; };
#endif

layout(push_constant) uniform Params { uint pairs, heads, half_dim, pairs_y, heads_y; } p;

const float TWO_PI_A = 6.28125;                // 2π split so that k·TWO_PI_A is exact for |k| < 2^15
const float TWO_PI_B = 0.0019353071693331003;
const float TWO_PI_C = 1.0253131677018246e-11;
const float INV_TWO_PI = 0.15915493667125702;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint n = gl_GlobalInvocationID.x; n < p.pairs + p.pairs_y; n += stride) {
        bool of_y = n >= p.pairs;
        uint i = of_y ? n - p.pairs : n;
        uint row = i / p.half_dim, j = i % p.half_dim;   // row: one head of one position
        precise float angle = float(positions[row / (of_y ? p.heads_y : p.heads)]) * inv_freq[j];
        float k = round(angle * INV_TWO_PI);
        precise float r = ((angle - k * TWO_PI_A) - k * TWO_PI_B) - k * TWO_PI_C;
        float c = cos(r), s = sin(r);
#if INVERSE
        s = -s;
#endif
        uint a = row * 2u * p.half_dim + j, b = a + p.half_dim;
#if PAIR
        if (of_y) {
            float y1 = to_f32(y_data[a]), y2 = to_f32(y_data[b]);
            d_data[a] = D_FROM_F32(y1 * c - y2 * s);
            d_data[b] = D_FROM_F32(y2 * c + y1 * s);
            continue;
        }
#endif
        float x1 = to_f32(x_data[a]), x2 = to_f32(x_data[b]);
        out_data[a] = C_FROM_F32(x1 * c - x2 * s);
        out_data[b] = C_FROM_F32(x2 * c + x1 * s);
    }
}
