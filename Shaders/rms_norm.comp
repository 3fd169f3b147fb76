#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// Llama's RMSNorm, `y = w ⊙ x·rstd`, `rstd = 1/√(mean(x²) + ε)`, in f32 (CPUBackend+RMSNorm.swift is the twin).
// PASS_FORWARD: one workgroup per row. PASS_INPUT_GRADIENT: dx = rstd·(G⊙w) − x·rstd³·Σ(G⊙w⊙x)/d, one
// workgroup per row. PASS_WEIGHT_GRADIENT: partial[block, c] = Σ over the block's 64 rows of G⊙x·rstd, summed
// over blocks by sum_blocks.comp into d weight.
// RESIDUAL: forward normalises x + r (rounded by X_FROM_F32 into x's dtype, as `add` would) and
// writes that sum; PASS_INPUT_GRADIENT adds R, a gradient of x from elsewhere, onto dx.
// Host defines: PASS, RESIDUAL, X_T, W_T, G_T (backward), C_T, C_FROM_F32, R_T and (forward) X_FROM_F32 with RESIDUAL.
#define REDUCE_SIZE 256u
layout(local_size_x = 256) in;
#include "reduce.glsl"

layout(std430, binding = 0) readonly buffer XBuf { X_T x_data[]; };
layout(std430, binding = 1) readonly buffer WBuf { W_T w_data[]; };
#if PASS == PASS_FORWARD
layout(std430, binding = 2) writeonly buffer YBuf { C_T y_data[]; };
layout(std430, binding = 3) writeonly buffer RstdBuf { float rstd_data[]; };
#if RESIDUAL
layout(std430, binding = 4) readonly buffer RBuf { R_T r_data[]; };
layout(std430, binding = 5) writeonly buffer SumBuf { X_T sum_data[]; };
#endif
#else
layout(std430, binding = 2) readonly buffer GBuf { G_T g_data[]; };
layout(std430, binding = 3) readonly buffer RstdBuf { float rstd_data[]; };
#if PASS == PASS_INPUT_GRADIENT
layout(std430, binding = 4) writeonly buffer DxBuf { C_T dx_data[]; };
#if RESIDUAL
layout(std430, binding = 5) readonly buffer RBuf { R_T r_data[]; };
#endif
#else
layout(std430, binding = 4) writeonly buffer PartialBuf { float partial[]; };
#endif
#endif

layout(push_constant) uniform Params { uint rows, columns; float epsilon; } p;

#if PASS == PASS_FORWARD
// The row's element c: x, or the rounded sum x + r.
float input_at(uint i) {
#if RESIDUAL
    return to_f32(X_FROM_F32(to_f32(x_data[i]) + to_f32(r_data[i])));
#else
    return to_f32(x_data[i]);
#endif
}
#endif

void main() {
    uint lid = gl_LocalInvocationID.x;
#if PASS == PASS_WEIGHT_GRADIENT
    uint c = gl_GlobalInvocationID.x, block = gl_WorkGroupID.y;
    if (c >= p.columns) return;
    float s = 0.0;
    for (uint row = block * 64u; row < min(p.rows, block * 64u + 64u); row++) {
        uint i = row * p.columns + c;
        s += to_f32(g_data[i]) * to_f32(x_data[i]) * rstd_data[row];
    }
    partial[block * p.columns + c] = s;
#else
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (row >= p.rows) return;  // uniform across the workgroup
    uint base = row * p.columns;
    float s = 0.0;
    for (uint c = lid; c < p.columns; c += 256u) {
#if PASS == PASS_FORWARD
        float x = input_at(base + c);
#if RESIDUAL
        sum_data[base + c] = X_FROM_F32(x);
#endif
        s = fma(x, x, s);
#else
        float x = to_f32(x_data[base + c]);
        s += to_f32(g_data[base + c]) * to_f32(w_data[c]) * x;
#endif
    }
    float total = workgroup_sum(vec4(s, 0.0, 0.0, 0.0)).x;
#if PASS == PASS_FORWARD
    float rstd = 1.0 / sqrt(total / float(p.columns) + p.epsilon);
    if (lid == 0u) rstd_data[row] = rstd;
    for (uint c = lid; c < p.columns; c += 256u) y_data[base + c] = C_FROM_F32(to_f32(w_data[c]) * (input_at(base + c) * rstd));
#else
    float rstd = rstd_data[row];
    float k = rstd * rstd * rstd * total / float(p.columns);
    for (uint c = lid; c < p.columns; c += 256u) {
        float dx = rstd * to_f32(g_data[base + c]) * to_f32(w_data[c]) - to_f32(x_data[base + c]) * k;
#if RESIDUAL
        dx = to_f32(C_FROM_F32(dx)) + to_f32(r_data[base + c]);
#endif
        dx_data[base + c] = C_FROM_F32(dx);
    }
#endif
#endif
}
