#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "dora.glsl"

// matmul.comp's product for few rows: C[M, N] = alpha·op(A)·Bᵀ [+ its epilogue], B the nn.Linear
// layout [N, K] (float or block-quantized), as ggml-vulkan's mul_mat_vec computes a decoding step's
// products. A workgroup computes ROWS rows of C by COLUMNS columns: each thread sums runs of RUN elements
// of K strided by the workgroup (B's rows read along their length, dequantized a run at a time), then
// the workgroup adds the threads' sums in a fixed tree in shared memory, so results are the same run to
// run. The bindings, push constants and defines are matmul.comp's (MatrixVectorKernel in
// VulkanBackend+MatrixVector.swift), without split K, dropout on A or B, or A's k scale, and with TRANS_B.
layout(local_size_x_id = 0, local_size_x = 64) in;
layout(constant_id = 1) const uint ROWS = 1;
layout(constant_id = 2) const uint COLUMNS = 4;
const uint THREADS = gl_WorkGroupSize.x;
const uint RUN = 8u;

layout(push_constant) uniform Params {
    uint M, N, K, K2;
    float alpha, alpha2;
    uint seed, drop_threshold;
    float keep_scale;
    uint lda, ldb, ldc, lda2, ldb2;
    uint m0, n0, k0;
    float vec_offset;
    uint b_count;
} p;

#include "matmul_common.glsl"

shared float partial[ROWS * COLUMNS * THREADS];
float acc[ROWS * COLUMNS];
float a_run[ROWS * RUN];

// B's elements (n, k … k + RUN − 1), zero from K on.
void load_b_run(uint n, uint k, out float v[RUN]) {
#if B_QUANT != QUANT_NONE
    // Bound whole: the block's origin (n0, k0) is added.
    uint i = (p.n0 + n) * p.ldb + p.k0 + k;
    if (k + RUN <= p.K && i % RUN == 0u) {
        dequant_run(i, p.b_count, v);
    } else {
        for (uint t = 0u; t < RUN; t++) v[t] = k + t < p.K ? dequant(i + t, p.b_count) : 0.0;
    }
#else
    uint i = n * p.ldb + k;
    vec4 lo = LOAD_QUAD(b_data, b_quads, i, k < p.K ? min(p.K - k, 4u) : 0u);
    vec4 hi = LOAD_QUAD(b_data, b_quads, i + 4u, k + 4u < p.K ? min(p.K - k - 4u, 4u) : 0u);
    for (uint t = 0u; t < 4u; t++) {
        v[t] = lo[t];
        v[t + 4u] = hi[t];
    }
#endif
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * ROWS, n0 = gl_WorkGroupID.x * COLUMNS;
    for (uint i = 0u; i < ROWS * COLUMNS; i++) acc[i] = 0.0;
#ifdef QUANT_TABLES_SHARED
    quant_tables_init(tid);
    barrier();
#endif
    for (uint k = RUN * tid; k < p.K; k += RUN * THREADS) {
        for (uint r = 0u; r < ROWS; r++) {
            uint m = m0 + r;
            for (uint t = 0u; t < RUN; t++) {
#if TRANS_A
                a_run[r * RUN + t] = m < p.M && k + t < p.K ? to_f32(a_data[(k + t) * p.lda + m]) : 0.0;
#else
                a_run[r * RUN + t] = m < p.M && k + t < p.K ? to_f32(a_data[m * p.lda + k + t]) : 0.0;
#endif
            }
        }
        for (uint c = 0u; c < COLUMNS; c++) {
            if (n0 + c >= p.N) break;
            float b[RUN];
            load_b_run(n0 + c, k, b);
            for (uint r = 0u; r < ROWS; r++)
                for (uint t = 0u; t < RUN; t++) acc[r * COLUMNS + c] = fma(a_run[r * RUN + t], b[t], acc[r * COLUMNS + c]);
        }
    }
    for (uint i = 0u; i < ROWS * COLUMNS; i++) partial[i * THREADS + tid] = acc[i];
    barrier();
    for (uint width = THREADS / 2u; width > 0u; width /= 2u) {
        if (tid < width)
            for (uint i = 0u; i < ROWS * COLUMNS; i++) partial[i * THREADS + tid] += partial[i * THREADS + tid + width];
        barrier();
    }
    if (tid < ROWS * COLUMNS) {
        uint m = m0 + tid / COLUMNS, n = n0 + tid % COLUMNS;
        if (m < p.M && n < p.N) store_c(m, n, partial[tid * THREADS]);
    }
}
