#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// DoRA's factored weight norm, one workgroup per output row j, never forming B·A:
//   n_j² = ‖W_j‖² + s·Σ_c B[j,c]·(2·(A·Wᵀ)[c,j] + s·(B·(A·Aᵀ))[j,c])
// with ‖W‖² cached per frozen W, and A·Wᵀ [r, d_out] formed by the matmul kernel. (B·(A·Aᵀ))[j, c]
// is read from B·(A·Aᵀ) [d_out, r], formed by the matmul kernel (BAAT_PRODUCT), or summed here
// over k in order from B's row and A·Aᵀ [r, r] (BAAT_ROW_LOOP: at low rank, where those r² reads
// stay in cache, it saves the product's dispatch). n = √max(n², 0) and g = m / max(n, eps), so that
// an all-zero row gives a finite g. The 64 partial sums are added in a fixed tree (deterministic).
// Host defines: B_T, M_T, BAAT.
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer WsqBuf { float wsq[]; };
layout(std430, binding = 1) readonly buffer AWBuf { float aw[]; };
layout(std430, binding = 2) readonly buffer BBuf { B_T b_data[]; };
// B·(A·Aᵀ) [d_out, r], or A·Aᵀ [r, r] with BAAT_ROW_LOOP.
layout(std430, binding = 3) readonly buffer BAAtBuf { float baat[]; };
layout(std430, binding = 4) readonly buffer MBuf { M_T m_data[]; };
layout(std430, binding = 5) writeonly buffer NBuf { float n_out[]; };
layout(std430, binding = 6) writeonly buffer GBuf { float g_out[]; };

layout(push_constant) uniform Params { uint rows, r; float scale, eps; } p;

shared float partial[64];

void main() {
    uint j = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (j >= p.rows) return;  // uniform across the workgroup
    uint lid = gl_LocalInvocationID.x;
    float s = 0.0;
    for (uint c = lid; c < p.r; c += 64u) {
#if BAAT == BAAT_ROW_LOOP
        float baat_jc = 0.0;
        for (uint k = 0u; k < p.r; k++) baat_jc = fma(to_f32(b_data[j * p.r + k]), baat[k * p.r + c], baat_jc);
#else
        float baat_jc = baat[j * p.r + c];
#endif
        s = fma(to_f32(b_data[j * p.r + c]), fma(p.scale, baat_jc, 2.0 * aw[c * p.rows + j]), s);
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
