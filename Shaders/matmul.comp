#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#if QUAD_SHARED_A
#extension GL_KHR_shader_subgroup_quad : require
#endif
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
// SPLIT_K (SplitK in VulkanBackend+Matmul.swift) splits a long K over gl_NumWorkGroups.z workgroups,
// each a range of whole BK steps: the partial pass writes each range's raw product (no epilogue) to C,
// an f32 [splits][M][N]; the reduce pass binds that at 0 (in place of A and B), sums the splits in
// order, so the result is deterministic, and goes on as one product would (second product,
// epilogue); its K is the number of splits.
// The bindings may be windows of larger tensors (one block of a split product): lda, ldb, ldc, lda2
// and ldb2 are the full tensors' row strides, and (m0, n0, k0) the block's origin, at which the
// dropout mask is evaluated so that it does not depend on the split.

// The tile (MatmulTile.swift chooses it per device and problem) is a set of specialization constants:
// a BM×BN block of C per workgroup over steps of BK, each thread a TM×TN part of it (rows in groups of
// four, TM / 4 groups BM / TM·4 apart; columns alike), so one 16-byte shared-memory load feeds four
// rows or columns. The defaults are the large tile, the one tools/isa-report.sh measures.
layout(local_size_x_id = 0, local_size_x = 256) in;
layout(constant_id = 1) const uint BM = 128;
layout(constant_id = 2) const uint BN = 128;
layout(constant_id = 3) const uint BK = 8;
layout(constant_id = 4) const uint TM = 8;
layout(constant_id = 5) const uint TN = 8;
const uint THREADS = (BM / TM) * (BN / TN);
// Each thread's share of a tile's quads, the last share partial where a tile has fewer than THREADS.
const uint A_QUADS = (BM * BK / 4u + THREADS - 1u) / THREADS, B_QUADS = (BN * BK / 4u + THREADS - 1u) / THREADS;

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

float acc[TM * TN];

// The thread's place in the tile: its TM×TN outputs are at (ty, tx) = (t / (BN / TN), t % (BN / TN)).
// QUAD_SHARED_A numbers the threads in subgroup order, so that the four of a quad (BN / TN is a multiple
// of four) compute the same rows and share A's values (matmul_tile_loop.glsl).
uint tile_thread() {
#if QUAD_SHARED_A
    return gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
#else
    return gl_LocalInvocationID.x;
#endif
}

// Which of the thread's TM rows acc[i * TN + 4 * h + e] holds: row i, or with QUAD_SHARED_A, in even
// groups of four columns, lane q ^ t's rows in slot t (quad_permute, matmul_tile_loop.glsl).
uint acc_row(uint i, uint h) {
#if QUAD_SHARED_A
    uint t = i / (TM / 4u), s = i % (TM / 4u);
    return (h % 2u == 1u ? t : t ^ (tile_thread() % 4u)) * (TM / 4u) + s;
#else
    return i;
#endif
}

// How many of the four elements from `first` along an axis of `size` exist (none when `other` is out of bounds).
uint quad_valid(uint first, uint size, bool other) { return other && first < size ? min(size - first, 4u) : 0u; }

#if SPLIT_K != SPLIT_K_REDUCE
// The end of this workgroup's range of the first product's K.
uint k_end;

// Operand loads in quads along the operand's contiguous axis (m for Aᵀ, k for A; k for Bᵀ, n for B),
// zero outside, with the dropout mask and the k scale where they apply. Element e is (m + e, k) or
// (m, k + e) for A, (k + e, n) or (k, n + e) for B.
vec4 load_a(uint m, uint k) {
#if TRANS_A
    vec4 v = LOAD_QUAD(a_data, a_quads, k * p.lda + m, quad_valid(m, p.M, k < k_end));
#else
    vec4 v = LOAD_QUAD(a_data, a_quads, m * p.lda + k, quad_valid(k, k_end, m < p.M));
#endif
    for (uint e = 0u; e < 4u; e++) {
        uint me = TRANS_A != 0 ? m + e : m, ke = TRANS_A != 0 ? k : k + e;
#if DROPOUT_A
        v[e] *= dropout_at(p.m0 + me, p.k0 + ke);
#endif
#if KSCALE
        if (ke < k_end) v[e] *= vec_data[ke] + p.vec_offset;
#endif
    }
    return v;
}

vec4 load_b(uint k, uint n) {
#if B_QUANT != QUANT_NONE
    // Element e is the quantized tensor's i0 + e.
#if TRANS_B
    uint i0 = (p.n0 + n) * p.ldb + p.k0 + k, valid = quad_valid(k, k_end, n < p.N);
#else
    uint i0 = (p.k0 + k) * p.ldb + p.n0 + n, valid = quad_valid(n, p.N, k < k_end);
#endif
    vec4 v = vec4(0.0);
#ifdef QUANT_QUADS
    // A GGML format's quad is decoded whole, its block's scales once: a quad starts at a multiple of 4
    // (a GGML tensor's rows are whole blocks, the host's windows start at multiples of 256 and tiles and
    // split-K ranges at multiples of 4), so its block holds all four, and reading it is in bounds when
    // the first element is. Element by element, each decode's block offsets, scales and high bits live
    // beside the others' values took RDNA2 past 80 VGPRs (K-quants with dropout on B or the k scale:
    // 96, 10 subgroups per SIMD; docs/isa). NF4's blocks run over the flattened tensor, not its rows.
    if (valid > 0u) v = dequant_quad(i0);
#endif
    for (uint e = 0u; e < 4u; e++) {
#ifdef QUANT_QUADS
        if (e >= valid) v[e] = 0.0;
#else
        if (e < valid) v[e] = dequant(i0 + e, p.b_count);
#endif
#if DROPOUT_B
        // Masked in the loop that bounds or decodes each value: in a loop of its own after all four
        // were decoded element by element, RADV held more of both at once (Q5_0, Q5_1 and Q6_K went
        // over RDNA2's 80 VGPRs).
        v[e] *= dropout_at(p.k0 + (TRANS_B != 0 ? k + e : k), p.n0 + (TRANS_B != 0 ? n : n + e));
#endif
    }
#elif TRANS_B
    vec4 v = LOAD_QUAD(b_data, b_quads, n * p.ldb + k, quad_valid(k, k_end, n < p.N));
#else
    vec4 v = LOAD_QUAD(b_data, b_quads, k * p.ldb + n, quad_valid(n, p.N, k < k_end));
#endif
#if DROPOUT_B && B_QUANT == QUANT_NONE
    for (uint e = 0u; e < 4u; e++)
        v[e] *= dropout_at(p.k0 + (TRANS_B != 0 ? k + e : k), p.n0 + (TRANS_B != 0 ? n : n + e));
#endif
    return v;
}

#include "matmul_tile_loop.glsl"
#endif

// The thread's sum at C's (m, n): its share of the split (SPLIT_K_PARTIAL) or C with the epilogue.
void store_acc(uint m, uint n, float sum) {
#if SPLIT_K == SPLIT_K_PARTIAL
    c_data[(gl_WorkGroupID.z * p.M + m) * p.ldc + n] = sum;
#else
    store_c(m, n, sum);
#endif
}

void main() {
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    uint tx = tile_thread() % (BN / TN), ty = tile_thread() / (BN / TN);
    for (uint i = 0u; i < TM * TN; i++) acc[i] = 0.0;
#ifdef QUANT_TABLES_SHARED
    quant_tables_init(gl_LocalInvocationID.x);
    barrier();
#endif
#if SPLIT_K == SPLIT_K_REDUCE
    for (uint s = 0u; s < p.K; s++) {
        for (uint i = 0u; i < TM; i++) {
            uint m = m0 + 4u * ((i / 4u) * (BM / TM) + ty) + i % 4u;
            for (uint j = 0u; j < TN; j++) {
                uint n = n0 + 4u * ((j / 4u) * (BN / TN) + tx) + j % 4u;
                if (m < p.M && n < p.N) acc[i * TN + j] += part_data[(s * p.M + m) * p.ldc + n];
            }
        }
    }
#else
    // Whole BK steps per split, so that each split's sums run as one product's would.
    uint k_split = ceil_div(ceil_div(p.K, gl_NumWorkGroups.z), BK) * BK, k_begin = gl_WorkGroupID.z * k_split;
    k_end = min(p.K, k_begin + k_split);
    accumulate_product(m0, n0, k_begin, max(k_begin, k_end));
#endif
    for (uint i = 0u; i < TM; i++) {
#if QUAD_SHARED_A
        // Row i's accumulators hold other rows in even column groups (acc_row), a row per group of four
        // columns (taken per column, the indices beside DoRA's epilogue went over RDNA2's 80 VGPRs).
        for (uint h = 0u; h < TN / 4u; h++) {
            uint r = acc_row(i, h), m = m0 + 4u * ((r / 4u) * (BM / TM) + ty) + r % 4u;
            if (m >= p.M) continue;
            for (uint j = 4u * h; j < 4u * h + 4u; j++) {
                uint n = n0 + 4u * (h * (BN / TN) + tx) + j % 4u;
                if (n < p.N) store_acc(m, n, acc[i * TN + j]);
            }
        }
#else
        uint m = m0 + 4u * ((i / 4u) * (BM / TM) + ty) + i % 4u;
        if (m >= p.M) continue;
        for (uint j = 0u; j < TN; j++) {
            uint n = n0 + 4u * ((j / 4u) * (BN / TN) + tx) + j % 4u;
            if (n >= p.N) continue;
            store_acc(m, n, acc[i * TN + j]);
        }
#endif
    }
}
