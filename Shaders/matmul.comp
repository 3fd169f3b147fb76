#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "dora.glsl"

// C[M, N] = alpha·op(A)·op(B) [+ alpha2·(op(A2)·op(B2)) ⊙ dropout] [+ bias] [+ C]
// A is [M, K] ([K, M] with TRANS_A); B is [K, N] ([N, K] with TRANS_B, the nn.Linear layout).
// The optional second product (SECOND) has the same layouts over K2: it is the LoRA term fused
// into the base matmul's epilogue (forward: x·Wᵀ + s·u·Bᵀ; backward: G·W + du·A), kept in its own
// accumulator because dropout masks it alone.
// Host defines: A_T B_T C_T [BIAS_T A2_T B2_T] C_FROM_F32, TRANS_A TRANS_B HAS_BIAS ACCUMULATE SECOND
// DROPOUT_A (mask A's (m, k)) DROPOUT_B (mask B's (k, n)) DROPOUT_PRODUCT, DROPOUT_SECOND (mask the
// first or second term at (m, n)).
// B_QUANT (a QuantFormat case other than QUANT_NONE, quant.glsl): B is block-quantized, bound whole, read at the block's origin
// (n0, k0) plus the tile's offset, b_count elements in all.
// KSCALE: A's elements are scaled by (vec[k] + vec_offset) as they load (DoRA backward: (g⊙G)·W).
// DORA: the epilogue composes DoRA's output from the product (base) and the second term (s·lora)
// with g = vec[n] (dora.glsl), adding the base itself with DORA_ADD_BASE; WRITE_INNER also stores
// inner = base + s·lora (blocks after the first along K add their share of the base to it).
// The bindings may be windows of larger tensors (one block of a split product): lda, ldb, ldc, lda2
// and ldb2 are the full tensors' row strides, and (m0, n0, k0) the block's origin, at which the
// dropout mask is evaluated so that it does not depend on the split.

#define BM 64
#define BN 64
#define BK 16
#define TM 4
#define TN 4
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer ABuf { A_T a_data[]; };
#if B_QUANT != QUANT_NONE
// A block-quantized B (a frozen weight), bound whole and dequantized as tiles load (quant.glsl).
layout(std430, binding = 1) readonly buffer BBuf { uint b_words[]; };
#define QWORDS b_words
#define QUANT B_QUANT
#include "quant.glsl"
#else
layout(std430, binding = 1) readonly buffer BBuf { B_T b_data[]; };
#endif
#if ACCUMULATE
layout(std430, binding = 2) buffer CBuf { C_T c_data[]; };
#else
layout(std430, binding = 2) writeonly buffer CBuf { C_T c_data[]; };
#endif
#if HAS_BIAS
layout(std430, binding = 3) readonly buffer BiasBuf { BIAS_T bias_data[]; };
#endif
#if SECOND
layout(std430, binding = 3 + HAS_BIAS) readonly buffer A2Buf { A2_T a2_data[]; };
layout(std430, binding = 4 + HAS_BIAS) readonly buffer B2Buf { B2_T b2_data[]; };
#endif
#if KSCALE || DORA
layout(std430, binding = 3 + HAS_BIAS + 2 * SECOND) readonly buffer VecBuf { float vec_data[]; };
#endif
#if WRITE_INNER
layout(std430, binding = 4 + HAS_BIAS + 2 * SECOND) buffer InnerBuf { float inner_data[]; };
#endif

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

shared float As[BK][BM];
shared float Bs[BK][BN];

float dropout_at(uint row, uint col) { return dropout_factor(p.seed, p.drop_threshold, p.keep_scale, row, col); }

// Operand loads, bounds-checked (zero outside), with the dropout mask where it applies.
float load_a(uint m, uint k) {
    if (m >= p.M || k >= p.K) return 0.0;
#if TRANS_A
    float v = to_f32(a_data[k * p.lda + m]);
#else
    float v = to_f32(a_data[m * p.lda + k]);
#endif
#if DROPOUT_A
    v *= dropout_at(p.m0 + m, p.k0 + k);
#endif
#if KSCALE
    v *= vec_data[k] + p.vec_offset;
#endif
    return v;
}

float load_b(uint k, uint n) {
    if (n >= p.N || k >= p.K) return 0.0;
#if B_QUANT != QUANT_NONE && TRANS_B
    float v = dequant((p.n0 + n) * p.ldb + p.k0 + k, p.b_count);
#elif B_QUANT != QUANT_NONE
    float v = dequant((p.k0 + k) * p.ldb + p.n0 + n, p.b_count);
#elif TRANS_B
    float v = to_f32(b_data[n * p.ldb + k]);
#else
    float v = to_f32(b_data[k * p.ldb + n]);
#endif
#if DROPOUT_B
    v *= dropout_at(p.k0 + k, p.n0 + n);
#endif
    return v;
}

// The tile loop, instantiated once per product so that neither pays for the other's loads.
#define PRODUCT_NAME accumulate_product
#define PRODUCT_K p.K
#define PRODUCT_LOAD_A load_a
#define PRODUCT_LOAD_B load_b
#include "matmul_tile_loop.glsl"

#if SECOND
float load_a2(uint m, uint k) {
    if (m >= p.M || k >= p.K2) return 0.0;
#if TRANS_A
    return to_f32(a2_data[k * p.lda2 + m]);
#else
    return to_f32(a2_data[m * p.lda2 + k]);
#endif
}

float load_b2(uint k, uint n) {
    if (n >= p.N || k >= p.K2) return 0.0;
#if TRANS_B
    return to_f32(b2_data[n * p.ldb2 + k]);
#else
    return to_f32(b2_data[k * p.ldb2 + n]);
#endif
}

#define PRODUCT_NAME accumulate_second
#define PRODUCT_K p.K2
#define PRODUCT_LOAD_A load_a2
#define PRODUCT_LOAD_B load_b2
#include "matmul_tile_loop.glsl"
#endif

void main() {
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint tx = gl_LocalInvocationID.x % 16u, ty = gl_LocalInvocationID.x / 16u;
    float acc[TM][TN];
    for (uint i = 0u; i < TM; i++) for (uint j = 0u; j < TN; j++) acc[i][j] = 0.0;
    accumulate_product(m0, n0, acc);
#if SECOND
    float acc2[TM][TN];
    for (uint i = 0u; i < TM; i++) for (uint j = 0u; j < TN; j++) acc2[i][j] = 0.0;
    accumulate_second(m0, n0, acc2);
#endif
    for (uint i = 0u; i < TM; i++) {
        uint m = m0 + ty + 16u * i;
        if (m >= p.M) continue;
        for (uint j = 0u; j < TN; j++) {
            uint n = n0 + tx + 16u * j;
            if (n >= p.N) continue;
            float v = p.alpha * acc[i][j];
#if DROPOUT_PRODUCT
            v *= dropout_at(p.m0 + m, p.n0 + n);
#endif
#if SECOND
            float v2 = p.alpha2 * acc2[i][j];
#if DROPOUT_SECOND
            v2 *= dropout_at(p.m0 + m, p.n0 + n);
#endif
#if WRITE_INNER
            inner_data[m * p.ldc + n] = v + v2;
#endif
#if DORA
            v = dora_compose(v, v2, vec_data[n], DORA_ADD_BASE != 0);
#else
            v += v2;
#endif
#elif DORA
            // A block after the first along K: its share of the base, without the LoRA term.
#if WRITE_INNER
            inner_data[m * p.ldc + n] += v;
#endif
            v = dora_compose(v, 0.0, vec_data[n], DORA_ADD_BASE != 0);
#endif
#if HAS_BIAS
            v += to_f32(bias_data[n]);
#endif
#if ACCUMULATE
            v += to_f32(c_data[m * p.ldc + n]);
#endif
            c_data[m * p.ldc + n] = C_FROM_F32(v);
        }
    }
}
