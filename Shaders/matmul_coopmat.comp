#version 450
// Compiled ahead of time (GL_KHR_cooperative_matrix is beyond the glslang that shaderc links here):
// tools/compile-coopmat-shaders.sh writes Shaders/spirv/, which the build embeds. Edit, then run it.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#include "common.glsl"
#include "dora.glsl"

// C[M, N] = alpha·op(A)·op(B) [⊙ dropout] [+ alpha2·(op(A2)·op(B2)) ⊙ dropout] [+ bias] [+ C] with
// subgroup-scope cooperative matrices: f16 operands in shared memory, f32 accumulators (ggml-vulkan's
// mul_mm.comp with COOPMAT). A is [M, K] ([K, M] with TRANS_A); B is [K, N] ([N, K] with TRANS_B).
// The second product (SECOND, the LoRA term: x·Wᵀ + s·u·Bᵀ, G·W + du·A; matmul.comp's) has a small
// inner dimension K2 = r and f32 operands, so the epilogue sums it exactly in f32 FMAs, in k order,
// as matmul.comp does. The dropout masks at (m, n), DoRA's per-element vector (VEC: KSCALE scales
// A's elements by vec[k] + vec_offset as they load; DORA composes the output with g = vec[n]) and
// WRITE_INNER are matmul.comp's too.
// One SPIR-V module serves every tile, matrix shape, dtype and layout: they are specialization
// constants (MatmulCoopmatKernel.Constants); HAS_BIAS, SECOND, VEC and WRITE_INNER are defines, as
// they add bindings.
// Operands that are not f16 (bf16; f32 where the precision policy allows) are scaled per tile by a
// power of two that brings the tile's largest magnitude to [2^14, 2^15) before rounding to f16, and
// each tile's product is scaled back in f32: no value leaves f16's range, bf16 values within 2^31 of
// their tile's largest keep every bit (8 significant bits; f16 has 11, fewer when subnormal), and f32
// values within 2^28 of it keep 11.
// The bindings may be windows of larger tensors (one block of a split product): lda, ldb and ldc are
// the full tensors' row strides, and (m0, n0) the block's origin, at which the dropout mask is
// evaluated. The push block is matmul.comp's; k0 and b_count are unused here.

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint BM = 64;
layout(constant_id = 2) const uint BN = 64;
layout(constant_id = 3) const uint BK = 16;
layout(constant_id = 4) const uint CM_M = 16;  // one cooperative matrix: CM_M × CM_K times CM_K × CM_N
layout(constant_id = 5) const uint CM_N = 16;
layout(constant_id = 6) const uint CM_K = 16;
layout(constant_id = 7) const uint WM = 32;  // one subgroup's share of the tile: WM × WN
layout(constant_id = 8) const uint WN = 32;
layout(constant_id = 9) const uint A_DTYPE = 0;  // DTYPE_F32, DTYPE_F16 or DTYPE_BF16
layout(constant_id = 10) const uint B_DTYPE = 0;
layout(constant_id = 11) const uint C_DTYPE = 0;
layout(constant_id = 12) const uint BIAS_DTYPE = 0;
layout(constant_id = 13) const bool TRANS_A = false;
layout(constant_id = 14) const bool TRANS_B = false;
layout(constant_id = 15) const bool ACCUMULATE = false;
layout(constant_id = 16) const uint A2_DTYPE = 0;
layout(constant_id = 17) const uint B2_DTYPE = 0;
layout(constant_id = 18) const bool DROPOUT_PRODUCT = false;
layout(constant_id = 19) const bool DROPOUT_SECOND = false;
layout(constant_id = 20) const bool KSCALE = false;
layout(constant_id = 21) const bool DORA = false;
layout(constant_id = 22) const bool DORA_ADD_BASE = false;
const uint DTYPE_F32 = 0, DTYPE_F16 = 1, DTYPE_BF16 = 2;

// Each operand is declared once per element type at the same binding; the dtype constant picks one.
layout(std430, binding = 0) readonly buffer AF32 { float a_f32[]; };
layout(std430, binding = 0) readonly buffer AF16 { float16_t a_f16[]; };
layout(std430, binding = 0) readonly buffer ABF16 { uint16_t a_bf16[]; };
layout(std430, binding = 1) readonly buffer BF32 { float b_f32[]; };
layout(std430, binding = 1) readonly buffer BF16 { float16_t b_f16[]; };
layout(std430, binding = 1) readonly buffer BBF16 { uint16_t b_bf16[]; };
layout(std430, binding = 2) buffer CF32 { float c_f32[]; };
layout(std430, binding = 2) buffer CF16 { float16_t c_f16[]; };
layout(std430, binding = 2) buffer CBF16 { uint16_t c_bf16[]; };
#if HAS_BIAS
layout(std430, binding = 3) readonly buffer BiasF32 { float bias_f32[]; };
layout(std430, binding = 3) readonly buffer BiasF16 { float16_t bias_f16[]; };
layout(std430, binding = 3) readonly buffer BiasBF16 { uint16_t bias_bf16[]; };
#endif
#if SECOND
layout(std430, binding = 3 + HAS_BIAS) readonly buffer A2F32 { float a2_f32[]; };
layout(std430, binding = 3 + HAS_BIAS) readonly buffer A2F16 { float16_t a2_f16[]; };
layout(std430, binding = 3 + HAS_BIAS) readonly buffer A2BF16 { uint16_t a2_bf16[]; };
layout(std430, binding = 4 + HAS_BIAS) readonly buffer B2F32 { float b2_f32[]; };
layout(std430, binding = 4 + HAS_BIAS) readonly buffer B2F16 { float16_t b2_f16[]; };
layout(std430, binding = 4 + HAS_BIAS) readonly buffer B2BF16 { uint16_t b2_bf16[]; };
#endif
#if VEC
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

// f16 tiles, padded by 8 halves a row (ggml's stride for cooperative loads); A row-major [m][k],
// B column-major [n][k], so that both are read along k.
const uint A_STRIDE = BK + 8, B_STRIDE = BK + 8, C_STRIDE = BN + 4;
shared float16_t As[BM * A_STRIDE];
shared float16_t Bs[BN * B_STRIDE];
// The accumulators go through shared memory to the epilogue, which writes C a row at a time.
shared float Cs[BM * C_STRIDE];
// Each tile's largest magnitude (as bits: non-negative floats order as their bits), two slots so one
// can be cleared while the other is in use.
shared uint tile_max_bits[2][2];

const bool SCALE_A = A_DTYPE != DTYPE_F16, SCALE_B = B_DTYPE != DTYPE_F16;
const uint A_LOADS = (BM * BK + gl_WorkGroupSize.x - 1) / gl_WorkGroupSize.x;
const uint B_LOADS = (BN * BK + gl_WorkGroupSize.x - 1) / gl_WorkGroupSize.x;
const uint CMS_M = WM / CM_M, CMS_N = WN / CM_N;

float load_a(uint m, uint k) {
    if (m >= p.M || k >= p.K) return 0.0;
    uint i = TRANS_A ? k * p.lda + m : m * p.lda + k;
    float v = A_DTYPE == DTYPE_F32 ? a_f32[i] : A_DTYPE == DTYPE_F16 ? to_f32(a_f16[i]) : to_f32(a_bf16[i]);
#if VEC
    if (KSCALE) v *= vec_data[k] + p.vec_offset;
#endif
    return v;
}

float load_b(uint k, uint n) {
    if (n >= p.N || k >= p.K) return 0.0;
    uint i = TRANS_B ? n * p.ldb + k : k * p.ldb + n;
    return B_DTYPE == DTYPE_F32 ? b_f32[i] : B_DTYPE == DTYPE_F16 ? to_f32(b_f16[i]) : to_f32(b_bf16[i]);
}

#if SECOND
float load_a2(uint m, uint k) {
    uint i = TRANS_A ? k * p.lda2 + m : m * p.lda2 + k;
    return A2_DTYPE == DTYPE_F32 ? a2_f32[i] : A2_DTYPE == DTYPE_F16 ? to_f32(a2_f16[i]) : to_f32(a2_bf16[i]);
}

float load_b2(uint k, uint n) {
    uint i = TRANS_B ? n * p.ldb2 + k : k * p.ldb2 + n;
    return B2_DTYPE == DTYPE_F32 ? b2_f32[i] : B2_DTYPE == DTYPE_F16 ? to_f32(b2_f16[i]) : to_f32(b2_bf16[i]);
}
#endif

float dropout_at(uint row, uint col) { return dropout_factor(p.seed, p.drop_threshold, p.keep_scale, row, col); }

// The exponent s with max·2^-s in [2^14, 2^15); 0 for a tile of zeros, infinities or NaNs, which
// then pass through unscaled.
int tile_exponent(uint max_bits) {
    if (max_bits == 0u || max_bits >= 0x7F800000u) return 0;
    return int(max_bits >> 23) - 127 - 14;
}

// Element e of a tile's load: consecutive threads walk the operand's contiguous axis.
uvec2 a_element(uint e) { return TRANS_A ? uvec2(e % BM, e / BM) : uvec2(e / BK, e % BK); }
uvec2 b_element(uint e) { return TRANS_B ? uvec2(e / BK, e % BK) : uvec2(e % BN, e / BN); }

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint wm0 = (gl_SubgroupID / (BN / WN)) * WM, wn0 = (gl_SubgroupID % (BN / WN)) * WN;
    coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator> acc[CMS_M * CMS_N];
    for (uint i = 0; i < CMS_M * CMS_N; i++) acc[i] = coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator>(0.0);
    if (lid < 4u) tile_max_bits[lid / 2u][lid % 2u] = 0u;
    barrier();

    for (uint k0 = 0u, step = 0u; k0 < p.K; k0 += BK, step++) {
        float a_values[A_LOADS], b_values[B_LOADS];
        for (uint l = 0u; l < A_LOADS; l++) {
            uint e = lid + l * gl_WorkGroupSize.x;
            uvec2 mk = a_element(e);
            a_values[l] = e < BM * BK ? load_a(m0 + mk.x, k0 + mk.y) : 0.0;
        }
        for (uint l = 0u; l < B_LOADS; l++) {
            uint e = lid + l * gl_WorkGroupSize.x;
            uvec2 nk = b_element(e);
            b_values[l] = e < BN * BK ? load_b(k0 + nk.y, n0 + nk.x) : 0.0;
        }
        int a_exp = 0, b_exp = 0;
        uint slot = step & 1u;
        if (SCALE_A || SCALE_B) {
            float a_max = 0.0, b_max = 0.0;
            for (uint l = 0u; l < A_LOADS; l++) a_max = max(a_max, abs(a_values[l]));
            for (uint l = 0u; l < B_LOADS; l++) b_max = max(b_max, abs(b_values[l]));
            // A NaN's bits exceed infinity's, so a tile holding one is left unscaled too.
            if (SCALE_A) atomicMax(tile_max_bits[slot][0], isnan(a_max) ? 0x7FC00000u : floatBitsToUint(a_max));
            if (SCALE_B) atomicMax(tile_max_bits[slot][1], isnan(b_max) ? 0x7FC00000u : floatBitsToUint(b_max));
            barrier();
            a_exp = SCALE_A ? tile_exponent(tile_max_bits[slot][0]) : 0;
            b_exp = SCALE_B ? tile_exponent(tile_max_bits[slot][1]) : 0;
            // The other slot was last read before the previous step's closing barrier.
            if (lid < 2u) tile_max_bits[slot ^ 1u][lid] = 0u;
        }
        for (uint l = 0u; l < A_LOADS; l++) {
            uint e = lid + l * gl_WorkGroupSize.x;
            uvec2 mk = a_element(e);
            if (e < BM * BK) As[mk.x * A_STRIDE + mk.y] = float16_t(ldexp(a_values[l], -a_exp));
        }
        for (uint l = 0u; l < B_LOADS; l++) {
            uint e = lid + l * gl_WorkGroupSize.x;
            uvec2 nk = b_element(e);
            if (e < BN * BK) Bs[nk.x * B_STRIDE + nk.y] = float16_t(ldexp(b_values[l], -b_exp));
        }
        barrier();
        float tile_scale = exp2(float(a_exp + b_exp));
        for (uint i = 0u; i < CMS_M; i++) {
            for (uint j = 0u; j < CMS_N; j++) {
                coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator> product =
                    SCALE_A || SCALE_B ? coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator>(0.0) : acc[i * CMS_N + j];
                for (uint kk = 0u; kk < BK; kk += CM_K) {
                    coopmat<float16_t, gl_ScopeSubgroup, CM_M, CM_K, gl_MatrixUseA> a;
                    coopmat<float16_t, gl_ScopeSubgroup, CM_K, CM_N, gl_MatrixUseB> b;
                    coopMatLoad(a, As, (wm0 + i * CM_M) * A_STRIDE + kk, A_STRIDE, gl_CooperativeMatrixLayoutRowMajor);
                    coopMatLoad(b, Bs, (wn0 + j * CM_N) * B_STRIDE + kk, B_STRIDE, gl_CooperativeMatrixLayoutColumnMajor);
                    product = coopMatMulAdd(a, b, product);
                }
                acc[i * CMS_N + j] = SCALE_A || SCALE_B ? acc[i * CMS_N + j] + product * tile_scale : product;
            }
        }
        barrier();
    }

    for (uint i = 0u; i < CMS_M; i++)
        for (uint j = 0u; j < CMS_N; j++)
            coopMatStore(acc[i * CMS_N + j], Cs, (wm0 + i * CM_M) * C_STRIDE + wn0 + j * CM_N, C_STRIDE, gl_CooperativeMatrixLayoutRowMajor);
    barrier();
    for (uint e = lid; e < BM * BN; e += gl_WorkGroupSize.x) {
        uint m = m0 + e / BN, n = n0 + e % BN;
        if (m >= p.M || n >= p.N) continue;
        float v = p.alpha * Cs[(e / BN) * C_STRIDE + e % BN];
        if (DROPOUT_PRODUCT) v *= dropout_at(p.m0 + m, p.n0 + n);
#if SECOND
        float v2 = 0.0;
        for (uint k = 0u; k < p.K2; k++) v2 = fma(load_a2(m, k), load_b2(k, n), v2);
        v2 *= p.alpha2;
        if (DROPOUT_SECOND) v2 *= dropout_at(p.m0 + m, p.n0 + n);
#if WRITE_INNER
        inner_data[m * p.ldc + n] = v + v2;
#endif
#if VEC
        v = DORA ? dora_compose(v, v2, vec_data[n], DORA_ADD_BASE) : v + v2;
#else
        v += v2;
#endif
#elif VEC
        if (DORA) {
            // A block after the first along K: its share of the base, without the LoRA term.
#if WRITE_INNER
            inner_data[m * p.ldc + n] += v;
#endif
            v = dora_compose(v, 0.0, vec_data[n], DORA_ADD_BASE);
        }
#endif
#if HAS_BIAS
        v += BIAS_DTYPE == DTYPE_F32 ? bias_f32[n] : BIAS_DTYPE == DTYPE_F16 ? to_f32(bias_f16[n]) : to_f32(bias_bf16[n]);
#endif
        uint c = m * p.ldc + n;
        if (C_DTYPE == DTYPE_F32) {
            c_f32[c] = ACCUMULATE ? v + c_f32[c] : v;
        } else if (C_DTYPE == DTYPE_F16) {
            c_f16[c] = f32_to_f16(ACCUMULATE ? v + to_f32(c_f16[c]) : v);
        } else {
            c_bf16[c] = f32_to_bf16(ACCUMULATE ? v + to_f32(c_bf16[c]) : v);
        }
    }
}
