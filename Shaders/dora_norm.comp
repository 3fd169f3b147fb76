#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// DoRA's factored weight norm, one workgroup per output row j, never forming B·A:
//   n_j² = ‖W_j‖² + 2s·Σ_c B[j,c]·(A·Wᵀ)[c,j] + s²·Σ_c B[j,c]·(B·(A·Aᵀ))[j,c]
// with ‖W‖² cached per frozen W, A·Wᵀ [r, d_out] and A·Aᵀ [r, r] given, and B_j·(A·Aᵀ) formed here
// from the row of B in shared memory. n = √max(n², 0) and g = m / max(n, eps), so that an all-zero
// row gives a finite g. The 64 partial sums are added in a fixed tree (deterministic).
// Host defines: B_T, M_T, MAX_R (B's row in shared memory).
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer WsqBuf { float wsq[]; };
layout(std430, binding = 1) readonly buffer AWBuf { float aw[]; };
layout(std430, binding = 2) readonly buffer BBuf { B_T b_data[]; };
layout(std430, binding = 3) readonly buffer AAtBuf { float aat[]; };
layout(std430, binding = 4) readonly buffer MBuf { M_T m_data[]; };
layout(std430, binding = 5) writeonly buffer NBuf { float n_out[]; };
layout(std430, binding = 6) writeonly buffer GBuf { float g_out[]; };

layout(push_constant) uniform Params { uint rows, r; float scale, eps; } p;

shared float brow[MAX_R];
shared float partial[64];

void main() {
    uint j = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (j >= p.rows) return;  // uniform across the workgroup
    uint lid = gl_LocalInvocationID.x;
    for (uint c = lid; c < p.r; c += 64u) brow[c] = to_f32(b_data[j * p.r + c]);
    barrier();
    float s = 0.0;
    for (uint c = lid; c < p.r; c += 64u) {
        float baat = 0.0;  // (B_j·(A·Aᵀ))[c]; A·Aᵀ is symmetric, so its row c is read contiguously
        for (uint q = 0u; q < p.r; q++) baat = fma(brow[q], aat[c * p.r + q], baat);
        s = fma(brow[c], fma(p.scale, baat, 2.0 * aw[c * p.rows + j]), s);
    }
    partial[lid] = p.scale * s;
    barrier();
    for (uint width = 32u; width > 0u; width >>= 1) {
        if (lid < width) partial[lid] += partial[lid + width];
        barrier();
    }
    if (lid == 0u) {
        float n = sqrt(max(wsq[j] + partial[0], 0.0));
        n_out[j] = n;
        g_out[j] = to_f32(m_data[j]) / max(n, p.eps);
    }
}
