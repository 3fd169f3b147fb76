#version 450
// Compiled ahead of time (GL_KHR_cooperative_matrix is beyond the glslang that shaderc links here):
// tools/compile-coopmat-shaders.sh writes Shaders/spirv/, which the build embeds. Edit, then run it.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "dora.glsl"
#include "step_scalars.glsl"

// C[M, N] = alpha·op(A)·op(B) [⊙ dropout] [+ alpha2·(op(A2)·op(B2)) ⊙ dropout] [+ bias] [+ C] with
// subgroup-scope cooperative matrices: f16 operands in shared memory, f32 accumulators (ggml-vulkan's
// mul_mm.comp with COOPMAT). A is [M, K] ([K, M] with TRANS_A); B is [K, N] ([N, K] with TRANS_B).
// Each subgroup owns a WM × WN part of the workgroup's BM × BN block as a grid of CM_M × CM_N
// accumulators; per CM_K slice of a K step it loads B fragments from shared memory B_CACHED at a time
// and each A fragment once per B_CACHED of them, multiplying every pair, so that shared-memory
// traffic grows with WM + WM·WN / B_CACHED while the math grows with WM·WN.
// The second product (SECOND, the LoRA term: x·Wᵀ + s·u·Bᵀ, G·W + du·A; matmul.comp's) has a small
// inner dimension K2 = r and f32 operands, so the epilogue sums it exactly in f32 FMAs, in k order,
// as matmul.comp does. The dropout masks at (m, n), DoRA's per-element vector (VEC: KSCALE scales
// A's elements by vec[k] + vec_offset as they load; DORA composes the output with g = vec[n]) and
// WRITE_INNER are matmul.comp's too.
// B_QUANT (a QuantFormat case other than QUANT_NONE): B is block-quantized (quant.glsl), bound whole
// and read at the block's origin (k0, n0) as matmul.comp reads it; each K step dequantizes its tile
// into shared memory in runs of 8 elements along B's stored rows (one block scale and one to three
// packed words per run, read before the barrier that settles the tile's scale and decoded after it;
// the code tables in shared memory), and the cooperative matrices see f16.
// One SPIR-V module serves every tile, matrix shape, dtype and layout: they are specialization
// constants (MatmulCoopmatKernel.Constants); HAS_BIAS, SECOND, VEC, WRITE_INNER and B_QUANT are
// defines, as they change the bindings.
// Operands that are not f16 (bf16, a dequantized B; f32 where the precision policy allows) are scaled
// per tile by a power of two that brings the tile's largest magnitude to [2^14, 2^15) before rounding
// to f16, and the f32 sums follow each tile's power of two (rescaled exactly when it changes, scaled
// back as C is written): no value leaves f16's range, bf16 values
// within 2^31 of their tile's largest keep every bit (8 significant bits; f16 has 11, fewer when
// subnormal), and f32 values within 2^28 of it keep 11.
// The bindings may be windows of larger tensors (one block of a split product): lda, ldb and ldc are
// the full tensors' row strides, and (m0, n0) the block's origin, at which the dropout mask is
// evaluated. The push block is matmul.comp's; k0 and b_count serve a quantized B only.

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint BM = 128;
layout(constant_id = 2) const uint BN = 128;
layout(constant_id = 3) const uint BK = 32;
layout(constant_id = 4) const uint CM_M = 16;  // one cooperative matrix: CM_M × CM_K times CM_K × CM_N
layout(constant_id = 5) const uint CM_N = 16;
layout(constant_id = 6) const uint CM_K = 16;
layout(constant_id = 7) const uint WM = 64;  // one subgroup's share of the tile: WM × WN
layout(constant_id = 8) const uint WN = 64;
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
#if B_QUANT != QUANT_NONE
layout(std430, binding = 1) readonly buffer BQuant { uint b_words[]; };
#define QWORDS b_words
#define QUANT B_QUANT
#define QUANT_TABLES_SHARED 1
// The code tables share the epilogue's stage (quant.glsl is included below it): the main loop reads
// them, and the epilogue writes the stage only after the loop's last barrier.
#define QUANT_TABLES stage
#else
layout(std430, binding = 1) readonly buffer BF32 { float b_f32[]; };
layout(std430, binding = 1) readonly buffer BF16 { float16_t b_f16[]; };
layout(std430, binding = 1) readonly buffer BBF16 { uint16_t b_bf16[]; };
#endif
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

// f16 tiles, A row-major [m][k] and B column-major [n][k] so that both are read along k, each row
// padded by 8 halves (16 bytes: rows stay 16-byte aligned for wide loads, and consecutive rows start
// in different banks; ggml's stride for cooperative loads).
const uint A_STRIDE = BK + 8, B_STRIDE = BK + 8;
shared float16_t As[BM * A_STRIDE];
shared float16_t Bs[BN * B_STRIDE];
const uint SUBGROUPS = (BM / WM) * (BN / WN);
// Each subgroup passes its accumulators one at a time through its own CM_M × CM_N f32 stage to the
// epilogue, which writes C a row of the matrix at a time; before it, a quantized B's code tables are
// in it (at most NF4's 16 and double quantization's 256 entries).
const uint STAGE_ENTRIES = SUBGROUPS * CM_M * CM_N > 16u + 256u ? SUBGROUPS * CM_M * CM_N : 16u + 256u;
shared float stage[STAGE_ENTRIES];
#if B_QUANT != QUANT_NONE
#include "quant.glsl"
#endif
// Each tile's largest magnitude (as bits: non-negative floats order as their bits), for A and for B, in
// two sets so one can be cleared while the other is in use. Invocations take MAX_LANES slots by their
// index: an atomic at one address is reduced across the subgroup first in whole-wave registers, which
// RADV places at the top of the register budget (NF4 with double quantization: 192 VGPRs, not 120).
const uint MAX_LANES = 8;
shared uvec4 tile_max_bits[2 * 2 * MAX_LANES / 4u];

void tile_max_update(uint set, uint operand, float value) {
    // A NaN's bits exceed infinity's, so a tile holding one is left unscaled too.
    uint lane = (set * 2u + operand) * MAX_LANES + gl_LocalInvocationID.x % MAX_LANES;
    atomicMax(tile_max_bits[lane / 4u][lane % 4u], isnan(value) ? 0x7FC00000u : floatBitsToUint(value));
}

uint tile_max(uint set, uint operand) {
    uvec4 m = uvec4(0u);
    [[unroll]] for (uint i = 0u; i < MAX_LANES / 4u; i++) m = max(m, tile_max_bits[(set * 2u + operand) * MAX_LANES / 4u + i]);
    return max(max(m.x, m.y), max(m.z, m.w));
}

const bool SCALE_A = A_DTYPE != DTYPE_F16, SCALE_B = B_QUANT != QUANT_NONE || B_DTYPE != DTYPE_F16;
const uint A_LOADS = (BM * BK + gl_WorkGroupSize.x - 1) / gl_WorkGroupSize.x;
const uint CMS_M = WM / CM_M, CMS_N = WN / CM_N;
// B fragments held at once: two, so that a subgroup's fragments and accumulators stay within the
// registers of ggml-vulkan's occupancy on RDNA3 (all four would save a third of the fragment loads).
const uint B_CACHED = CMS_N % 2u == 0u ? 2u : 1u;

float load_a(uint m, uint k) {
    if (m >= p.M || k >= p.K) return 0.0;
    uint i = TRANS_A ? k * p.lda + m : m * p.lda + k;
    float v = A_DTYPE == DTYPE_F32 ? a_f32[i] : A_DTYPE == DTYPE_F16 ? to_f32(a_f16[i]) : to_f32(a_bf16[i]);
#if VEC
    if (KSCALE) v *= vec_data[k] + p.vec_offset;
#endif
    return v;
}

// Element e of A's tile: consecutive threads walk the operand's contiguous axis.
uvec2 a_element(uint e) { return TRANS_A ? uvec2(e % BM, e / BM) : uvec2(e / BK, e % BK); }

#if B_QUANT != QUANT_NONE
// B's tile in runs of RUN elements along its stored rows: [N][K] with TRANS_B (runs along k), else
// [K][N] (runs along n). A run is 8 aligned elements of the tensor, so one block holds it.
const uint RUN = 8;
const uint B_LOADS = (BN * BK / RUN + gl_WorkGroupSize.x - 1) / gl_WorkGroupSize.x;

// Run r of the tile: its (n, k) in the tile.
uvec2 b_run(uint r) { return TRANS_B ? uvec2(r / (BK / RUN), (r % (BK / RUN)) * RUN) : uvec2((r % (BN / RUN)) * RUN, r / (BN / RUN)); }

// Run r of the tile at step k0: its first element's index in B (i0) and how many of its elements are
// within the product's K and N (0 … RUN).
uint b_run_elements(uint r, uint k0, uint n0, out uint i0) {
    uvec2 nk = b_run(r);
    uint row = TRANS_B ? n0 + nk.x : k0 + nk.y, col = TRANS_B ? k0 + nk.y : n0 + nk.x;
    uint rows = TRANS_B ? p.N : p.K, cols = TRANS_B ? p.K : p.N;
    i0 = TRANS_B ? (p.n0 + row) * p.ldb + p.k0 + col : (p.k0 + row) * p.ldb + p.n0 + col;
    return r >= BN * BK / RUN || row >= rows || col >= cols ? 0u : min(cols - col, RUN);
}

// A whole run on a run boundary is read packed (its words and scale, decoded after the barrier); a row
// that does not start on one, or the product's edge, element by element (loops kept rolled, so that their
// loads do not all wait in registers at once), once for the tile's maximum and again to store them.
bool b_run_packed(uint elements) { return elements == RUN && p.ldb % RUN == 0u; }

// Reads run r of the tile at step k0 (packed into `run` where it can be) and returns its largest magnitude.
float read_b_run(uint r, uint k0, uint n0, out QuantRun run) {
    uint i0, elements = b_run_elements(r, k0, n0, i0);
    run = QuantRun(uvec2(0u), 0.0, 0.0);
    if (b_run_packed(elements)) {
        run = quant_run_read(i0, p.b_count);
        return quant_run_max(run);
    }
    float m = 0.0;
    [[dont_unroll]] for (uint t = 0u; t < elements; t++) m = max(m, abs(dequant(i0 + t, p.b_count)));
    return m;
}

// Element t of run r in B's tile, stored scaled by 2^-b_exp.
void store_b_element(uint r, uint t, float value, int b_exp) {
    uvec2 nk = b_run(r);
    uint n = TRANS_B ? nk.x : nk.x + t, k = TRANS_B ? nk.y + t : nk.y;
    Bs[n * B_STRIDE + k] = float16_t(ldexp(value, -b_exp));
}

void store_b_run(uint r, uint k0, uint n0, QuantRun run, int b_exp) {
    if (r >= BN * BK / RUN) return;
    uint i0, elements = b_run_elements(r, k0, n0, i0);
    if (b_run_packed(elements)) {
        float values[RUN];
        quant_run_decode(run, values);
        [[unroll]] for (uint t = 0u; t < RUN; t++) store_b_element(r, t, values[t], b_exp);
    } else {
        [[dont_unroll]] for (uint t = 0u; t < RUN; t++) store_b_element(r, t, t < elements ? dequant(i0 + t, p.b_count) : 0.0, b_exp);
    }
}

#else
const uint B_LOADS = (BN * BK + gl_WorkGroupSize.x - 1) / gl_WorkGroupSize.x;

float load_b(uint k, uint n) {
    if (n >= p.N || k >= p.K) return 0.0;
    uint i = TRANS_B ? n * p.ldb + k : k * p.ldb + n;
    return B_DTYPE == DTYPE_F32 ? b_f32[i] : B_DTYPE == DTYPE_F16 ? to_f32(b_f16[i]) : to_f32(b_bf16[i]);
}

uvec2 b_element(uint e) { return TRANS_B ? uvec2(e / BK, e % BK) : uvec2(e % BN, e / BN); }
#endif

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

float dropout_at(uint row, uint col) { return dropout_factor(dropout_seed(p.seed), p.drop_threshold, p.keep_scale, row, col); }

// The exponent s with max·2^-s in [2^14, 2^15); 0 for a tile of zeros, infinities or NaNs, which
// then pass through unscaled.
int tile_exponent(uint max_bits) {
    if (max_bits == 0u || max_bits >= 0x7F800000u) return 0;
    return int(max_bits >> 23) - 127 - 14;
}

// C's element (m, n) from the first product's sum v: the fused extras, then the store.
void write_c(uint m, uint n, float v) {
    v *= p.alpha;
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

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint wm0 = (gl_SubgroupID / (BN / WN)) * WM, wn0 = (gl_SubgroupID % (BN / WN)) * WN;
    coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator> acc[CMS_M * CMS_N];
    [[unroll]] for (uint i = 0; i < CMS_M * CMS_N; i++) acc[i] = coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator>(0.0);
    // The sums are in units of 2^acc_exp: scaled operands' tiles each move them to their own (below).
    int acc_exp = 0;
    if (lid < 2u * 2u * MAX_LANES / 4u) tile_max_bits[lid] = uvec4(0u);
#if B_QUANT != QUANT_NONE
    quant_tables_init(lid);
#endif
    barrier();

    for (uint k0 = 0u, step = 0u; k0 < p.K; k0 += BK, step++) {
        float a_values[A_LOADS], b_max = 0.0;
        [[unroll]] for (uint l = 0u; l < A_LOADS; l++) {
            uint e = lid + l * gl_WorkGroupSize.x;
            uvec2 mk = a_element(e);
            a_values[l] = e < BM * BK ? load_a(m0 + mk.x, k0 + mk.y) : 0.0;
            // Unscaled operands go to shared memory as they arrive, not held in registers as a tile.
            if (!SCALE_A && e < BM * BK) As[mk.x * A_STRIDE + mk.y] = float16_t(a_values[l]);
        }
#if B_QUANT != QUANT_NONE
        // Runs held packed across the tile maximum's barrier: a few registers each, not RUN values.
        QuantRun b_runs[B_LOADS];
        [[unroll]] for (uint l = 0u; l < B_LOADS; l++) b_max = max(b_max, read_b_run(lid + l * gl_WorkGroupSize.x, k0, n0, b_runs[l]));
#else
        float b_values[B_LOADS];
        [[unroll]] for (uint l = 0u; l < B_LOADS; l++) {
            uint e = lid + l * gl_WorkGroupSize.x;
            uvec2 nk = b_element(e);
            b_values[l] = e < BN * BK ? load_b(k0 + nk.y, n0 + nk.x) : 0.0;
            if (!SCALE_B && e < BN * BK) Bs[nk.x * B_STRIDE + nk.y] = float16_t(b_values[l]);
        }
        if (SCALE_B) {
            [[unroll]] for (uint l = 0u; l < B_LOADS; l++) b_max = max(b_max, abs(b_values[l]));
        }
#endif
        int a_exp = 0, b_exp = 0;
        uint set = step & 1u;
        if (SCALE_A || SCALE_B) {
            float a_max = 0.0;
            [[unroll]] for (uint l = 0u; l < A_LOADS; l++) a_max = max(a_max, abs(a_values[l]));
            if (SCALE_A) tile_max_update(set, 0u, a_max);
            if (SCALE_B) tile_max_update(set, 1u, b_max);
            barrier();
            a_exp = SCALE_A ? tile_exponent(tile_max(set, 0u)) : 0;
            b_exp = SCALE_B ? tile_exponent(tile_max(set, 1u)) : 0;
            // The other set was last read before the previous step's closing barrier.
            if (lid < 2u * MAX_LANES / 4u) tile_max_bits[(set ^ 1u) * 2u * MAX_LANES / 4u + lid] = uvec4(0u);
            // The sums move to this tile's units (a power of two: exact), upward by at most 2^60; past
            // that the scaled operand's tile is stored smaller instead, its products then below 2^-30
            // of a unit while the products already summed reached up to 2^30 units.
            int tile_exp = a_exp + b_exp, next = step == 0u ? tile_exp : max(tile_exp, acc_exp - 60);
            if (SCALE_B) b_exp += next - tile_exp; else a_exp += next - tile_exp;
            if (next != acc_exp) {
                float rescale = exp2(float(acc_exp - next));
                [[unroll]] for (uint i = 0u; i < CMS_M * CMS_N; i++) acc[i] = acc[i] * rescale;
                acc_exp = next;
            }
        }
        [[unroll]] for (uint l = 0u; l < A_LOADS; l++) {
            uint e = lid + l * gl_WorkGroupSize.x;
            uvec2 mk = a_element(e);
            if (SCALE_A && e < BM * BK) As[mk.x * A_STRIDE + mk.y] = float16_t(ldexp(a_values[l], -a_exp));
        }
#if B_QUANT != QUANT_NONE
        [[unroll]] for (uint l = 0u; l < B_LOADS; l++) store_b_run(lid + l * gl_WorkGroupSize.x, k0, n0, b_runs[l], b_exp);
#else
        [[unroll]] for (uint l = 0u; l < B_LOADS; l++) {
            uint e = lid + l * gl_WorkGroupSize.x;
            uvec2 nk = b_element(e);
            if (SCALE_B && e < BN * BK) Bs[nk.x * B_STRIDE + nk.y] = float16_t(ldexp(b_values[l], -b_exp));
        }
#endif
        barrier();
        [[unroll]] for (uint kk = 0u; kk < BK; kk += CM_K) {
            // B_CACHED fragments of the subgroup's row of B at a time, each used by every A fragment of
            // its column: (CMS_N + CMS_M·CMS_N / B_CACHED) fragment loads for CMS_M·CMS_N products.
            [[unroll]] for (uint j0 = 0u; j0 < CMS_N; j0 += B_CACHED) {
                coopmat<float16_t, gl_ScopeSubgroup, CM_K, CM_N, gl_MatrixUseB> b[B_CACHED];
                [[unroll]] for (uint j = 0u; j < B_CACHED; j++)
                    coopMatLoad(b[j], Bs, (wn0 + (j0 + j) * CM_N) * B_STRIDE + kk, B_STRIDE, gl_CooperativeMatrixLayoutColumnMajor);
                [[unroll]] for (uint i = 0u; i < CMS_M; i++) {
                    coopmat<float16_t, gl_ScopeSubgroup, CM_M, CM_K, gl_MatrixUseA> a;
                    coopMatLoad(a, As, (wm0 + i * CM_M) * A_STRIDE + kk, A_STRIDE, gl_CooperativeMatrixLayoutRowMajor);
                    [[unroll]] for (uint j = 0u; j < B_CACHED; j++)
                        acc[i * CMS_N + j0 + j] = coopMatMulAdd(a, b[j], acc[i * CMS_N + j0 + j]);
                }
            }
        }
        barrier();
    }

    // The subgroup's accumulators one by one through its stage; each lane then writes elements of C.
    uint base = gl_SubgroupID * CM_M * CM_N;
    [[unroll]] for (uint i = 0u; i < CMS_M; i++) {
        [[unroll]] for (uint j = 0u; j < CMS_N; j++) {
            coopMatStore(acc[i * CMS_N + j], stage, base, CM_N, gl_CooperativeMatrixLayoutRowMajor);
            controlBarrier(gl_ScopeSubgroup, gl_ScopeSubgroup, gl_StorageSemanticsShared, gl_SemanticsAcquireRelease);
            for (uint e = gl_SubgroupInvocationID; e < CM_M * CM_N; e += gl_SubgroupSize) {
                uint m = m0 + wm0 + i * CM_M + e / CM_N, n = n0 + wn0 + j * CM_N + e % CM_N;
                if (m < p.M && n < p.N) write_c(m, n, ldexp(stage[base + e], acc_exp));
            }
            controlBarrier(gl_ScopeSubgroup, gl_ScopeSubgroup, gl_StorageSemanticsShared, gl_SemanticsAcquireRelease);
        }
    }
}
