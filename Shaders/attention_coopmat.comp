#version 450
// Compiled ahead of time (GL_KHR_cooperative_matrix is beyond the glslang that shaderc links here):
// tools/compile-coopmat-shaders.sh writes Shaders/spirv/, which the build embeds. Edit, then run it.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

// attention.comp's passes (forward, dq, dk and dv; the same items, masks, tiles skipped and grouped KV
// heads) with the products of tiles in subgroup-scope cooperative matrices, after ggml-vulkan's
// flash_attn_cm1.comp: q, k, v (and G) tiles of BLOCK rows are staged in shared memory as f16, each
// product (scores Q·Kᵀ, P·V; backward G·Vᵀ, dS·K, Pᵀ·G, dSᵀ·Q) is a grid of CM_M × CM_N accumulators in
// f32 spread over the workgroup's SUBGROUPS subgroups, and the softmax (its running maximum, rescaling
// and sums, the logsumexp, P and dS) is f32 on the scores in shared memory. P and dS are rounded to
// f16 to enter the next product (2⁻¹¹ of each; the sums of P that normalize the output and make the
// logsumexp are the f32 values). Operands that are not f16 are rounded to f16 as they are staged (the
// host takes this kernel for them only under MatmulPrecision.high).
// PASS_FORWARD: a workgroup per (query tile, KV head); each query row's softmax over a key tile shared
// by workgroup size / BLOCK invocations; out accumulators rescaled at each key tile by the row's
// correction through the subgroup's f32 stage. PASS_QUERY_GRADIENT: per (query tile, KV
// head), dq. PASS_KEY_VALUE_GRADIENT: per (key tile, KV head), dk and dv over the query tiles that see it.
// Host defines: PASS, HEAD_DIM_MAX (64, 128 or 256: the staged columns), SEQUENCE_STARTS (packed rows,
// attention_mask.glsl). Everything else is a specialization constant (AttentionCoopmatKernel.Constants).
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint BLOCK = 32;  // queries (items) and key rows per tile
layout(constant_id = 2) const uint CM_M = 16;
layout(constant_id = 3) const uint CM_N = 16;
layout(constant_id = 4) const uint CM_K = 16;
layout(constant_id = 5) const uint Q_DTYPE = 0;  // DTYPE_F32, DTYPE_F16 or DTYPE_BF16
layout(constant_id = 6) const uint K_DTYPE = 0;
layout(constant_id = 7) const uint V_DTYPE = 0;
layout(constant_id = 8) const uint G_DTYPE = 0;
layout(constant_id = 9) const uint O_DTYPE = 0;
layout(constant_id = 10) const uint C_DTYPE = 0;
const uint DTYPE_F32 = 0, DTYPE_F16 = 1, DTYPE_BF16 = 2;
const uint SUBGROUPS = 4;

// Each operand is declared once per element type at the same binding; its dtype constant picks one.
#define OPERAND(binding_, name, access) \
    layout(std430, binding = binding_) access buffer name##F32 { float name##_f32[]; }; \
    layout(std430, binding = binding_) access buffer name##F16 { float16_t name##_f16[]; }; \
    layout(std430, binding = binding_) access buffer name##BF16 { uint16_t name##_bf16[]; };
#define READ(name, dtype, i) ((dtype) == DTYPE_F32 ? name##_f32[i] : (dtype) == DTYPE_F16 ? float(name##_f16[i]) : to_f32(name##_bf16[i]))
#define WRITE(name, i, value_) \
    if (C_DTYPE == DTYPE_F32) name##_f32[i] = (value_); else if (C_DTYPE == DTYPE_F16) name##_f16[i] = f32_to_f16(value_); else name##_bf16[i] = f32_to_bf16(value_);

OPERAND(0, q, readonly)
OPERAND(1, k, readonly)
OPERAND(2, v, readonly)
#if PASS == PASS_FORWARD
OPERAND(3, out, writeonly)
layout(std430, binding = 4) writeonly buffer LseBuf { float lse_data[]; };
#else
OPERAND(3, g, readonly)
OPERAND(4, o, readonly)
layout(std430, binding = 5) readonly buffer LseBuf { float lse_data[]; };
#if PASS == PASS_QUERY_GRADIENT
OPERAND(6, dq, writeonly)
#else
OPERAND(6, dk, writeonly)
OPERAND(7, dv, writeonly)
#endif
#endif

// attention.comp's block (cache_rows is its cached pass's; 0 here).
layout(push_constant) uniform Params { uint rows, q_heads, kv_heads, head_dim, sequence; float scale; uint cache_rows; } p;

// The mask is attention.comp's (attention_mask.glsl), a packed attention's sequence starts bound after
// the pass's other buffers.
#if PASS == PASS_FORWARD
#define SEQUENCE_STARTS_BINDING 5
#elif PASS == PASS_QUERY_GRADIENT
#define SEQUENCE_STARTS_BINDING 7
#else
#define SEQUENCE_STARTS_BINDING 8
#endif
#include "attention_mask.glsl"

uint group_size() { return p.q_heads / p.kv_heads; }
uint items() { return p.rows * group_size(); }
uint item_row(uint item) { return item / group_size(); }
// Where query item `item` of KV head `kh` is in a [T, H_q] tensor.
uint item_index(uint item, uint kh) { return item_row(item) * p.q_heads + kh * group_size() + item % group_size(); }
// Whether query item `item` sees key row `key`.
bool visible(uint item, uint key) { return item < items() && attention_visible(item_row(item), key, p.sequence, 0u); }

// f16 tiles of BLOCK rows, each padded by 8 halves (16 bytes: rows stay aligned for the matrix loads
// and start in different banks); scores (and dP) in f32, P (and dS) in f16, [query][key].
const uint STRIDE = HEAD_DIM_MAX + 8u, S_STRIDE = BLOCK + 4u, P_STRIDE = BLOCK + 8u;
shared float16_t sq[BLOCK * STRIDE];
shared float16_t sk[BLOCK * STRIDE];
shared float16_t sv[BLOCK * STRIDE];
shared float ss[BLOCK * S_STRIDE];
shared float16_t sp[BLOCK * P_STRIDE];
// Per query row: the forward's running maximum, sum and correction; the backward's logsumexp and Δ.
shared float srow[3][BLOCK];
// Each subgroup's CM_M × CM_N f32 stage, through which accumulators are rescaled and written.
shared float stage[SUBGROUPS * CM_M * CM_N];
#if PASS == PASS_FORWARD
// The softmax's invocations per query row (all of them share the rows when there are at least BLOCK),
// and each one's partial maximum, then sum.
const uint ROW_THREADS = gl_WorkGroupSize.x >= BLOCK ? gl_WorkGroupSize.x / BLOCK : 1u;
shared float spartial[gl_WorkGroupSize.x];
#else
shared float16_t sg[BLOCK * STRIDE];
shared float sdp[BLOCK * S_STRIDE];
shared float16_t sds[BLOCK * P_STRIDE];
#endif

#define NEGATIVE_INFINITY uintBitsToFloat(0xFF800000u)
#define THREADS gl_WorkGroupSize.x

// A tile's BLOCK rows of a [T, heads, head_dim] tensor as f16: rows in range from `base`, a head's
// start (zero beyond the head dim and the range).
#define LOAD_TILE(tile, name, dtype, in_range, base) \
    for (uint e = gl_LocalInvocationID.x; e < BLOCK * HEAD_DIM_MAX; e += THREADS) { \
        uint r = e / HEAD_DIM_MAX, c = e % HEAD_DIM_MAX; \
        tile[r * STRIDE + c] = float16_t((in_range) && c < p.head_dim ? READ(name, dtype, (base) * p.head_dim + c) : 0.0); \
    }
#define LOAD_KEYS(tile, name, dtype, j0, kh) LOAD_TILE(tile, name, dtype, (j0) + r < p.rows, ((j0) + r) * p.kv_heads + (kh))
#define LOAD_QUERIES(tile, name, dtype, first, kh) LOAD_TILE(tile, name, dtype, (first) + r < items(), item_index((first) + r, kh))

#define ACC coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator>
#define MAT_A coopmat<float16_t, gl_ScopeSubgroup, CM_M, CM_K, gl_MatrixUseA>
#define MAT_B coopmat<float16_t, gl_ScopeSubgroup, CM_K, CM_N, gl_MatrixUseB>
const uint ROW_BLOCKS = BLOCK / CM_M, KEY_BLOCKS = BLOCK / CM_N;
// The accumulators of a BLOCK × HEAD_DIM_MAX result (out, dq, dk, dv): tile t = subgroup + SUBGROUPS·a
// is row block t / COLUMN_BLOCKS, column block t % COLUMN_BLOCKS. COLUMN_BLOCKS is a multiple of
// SUBGROUPS (HEAD_DIM_MAX of 64 at least, matrices of at most 16 columns), so every subgroup has as many
// and runs the same branches, the tiles of zero columns beyond the head included (lavapipe's products
// were wrong when subgroups skipped theirs: a subgroup-scope barrier it does not take).
const uint COLUMN_BLOCKS = HEAD_DIM_MAX / CM_N, PER_SUBGROUP = ROW_BLOCKS * COLUMN_BLOCKS / SUBGROUPS;

void subgroup_barrier() { controlBarrier(gl_ScopeSubgroup, gl_ScopeSubgroup, gl_StorageSemanticsShared, gl_SemanticsAcquireRelease); }

// dst[i][j] = Σ_c a[i][c]·b[j][c] over the head's columns, i and j < BLOCK (a's rows by b's rows: Q·Kᵀ,
// G·Vᵀ), each subgroup some of its CM_M × CM_N blocks.
#define ROW_PRODUCTS(dst, a, b) \
    for (uint t = gl_SubgroupID; t < ROW_BLOCKS * KEY_BLOCKS; t += SUBGROUPS) { \
        uint i0 = (t / KEY_BLOCKS) * CM_M, j0 = (t % KEY_BLOCKS) * CM_N; \
        ACC sum = ACC(0.0); \
        for (uint c = 0u; c < p.head_dim; c += CM_K) { \
            MAT_A x; MAT_B y; \
            coopMatLoad(x, a, i0 * STRIDE + c, STRIDE, gl_CooperativeMatrixLayoutRowMajor); \
            coopMatLoad(y, b, j0 * STRIDE + c, STRIDE, gl_CooperativeMatrixLayoutColumnMajor); \
            sum = coopMatMulAdd(x, y, sum); \
        } \
        coopMatStore(sum, dst, i0 * S_STRIDE + j0, S_STRIDE, gl_CooperativeMatrixLayoutRowMajor); \
    }

// acc[a] += w·values over the tile's BLOCK inner rows for this subgroup's result tiles: w a BLOCK ×
// BLOCK f16 weight matrix, [row][inner] (order RowMajor) or [inner][row] (ColumnMajor: a transpose),
// values a staged tile [inner][column]. A subgroup's tiles of one row block are ROW_TILES consecutive
// accumulators, so each weight fragment is loaded once for all of them.
const uint ROW_TILES = COLUMN_BLOCKS / SUBGROUPS;
#define ACCUMULATE(acc, weights, order, values) \
    [[unroll]] for (uint row = 0u; row < PER_SUBGROUP / ROW_TILES; row++) { \
        uint i0 = ((gl_SubgroupID + SUBGROUPS * row * ROW_TILES) / COLUMN_BLOCKS) * CM_M; \
        [[unroll]] for (uint kk = 0u; kk < BLOCK; kk += CM_K) { \
            MAT_A w; \
            coopMatLoad(w, weights, order == gl_CooperativeMatrixLayoutRowMajor ? i0 * P_STRIDE + kk : kk * P_STRIDE + i0, P_STRIDE, order); \
            [[unroll]] for (uint j = 0u; j < ROW_TILES; j++) { \
                uint a = row * ROW_TILES + j; \
                MAT_B x; \
                coopMatLoad(x, values, kk * STRIDE + ((gl_SubgroupID + SUBGROUPS * a) % COLUMN_BLOCKS) * CM_N, STRIDE, gl_CooperativeMatrixLayoutRowMajor); \
                acc[a] = coopMatMulAdd(w, x, acc[a]); \
            } \
        } \
    }

// Passes each accumulator through the subgroup's stage: STORE(row, column, value) for each of
// its elements in the tile (row < BLOCK, column < HEAD_DIM_MAX).
#define EACH_RESULT(acc, STORE) \
    [[unroll]] for (uint a = 0u; a < PER_SUBGROUP; a++) { \
        uint t = gl_SubgroupID + SUBGROUPS * a, i0 = (t / COLUMN_BLOCKS) * CM_M, c0 = (t % COLUMN_BLOCKS) * CM_N, base = gl_SubgroupID * CM_M * CM_N; \
        coopMatStore(acc[a], stage, base, CM_N, gl_CooperativeMatrixLayoutRowMajor); \
        subgroup_barrier(); \
        for (uint e = gl_SubgroupInvocationID; e < CM_M * CM_N; e += gl_SubgroupSize) { STORE(i0 + e / CM_N, c0 + e % CM_N, stage[base + e]); } \
        subgroup_barrier(); \
    }

#if PASS == PASS_FORWARD
void main() {
    uint lid = gl_LocalInvocationID.x;
    uint first = gl_WorkGroupID.x * BLOCK, kh = gl_WorkGroupID.y;
    uint last = item_row(min(first + BLOCK, items()) - 1u);
    LOAD_QUERIES(sq, q, Q_DTYPE, first, kh);
    for (uint r = lid; r < BLOCK; r += THREADS) { srow[0][r] = NEGATIVE_INFINITY; srow[1][r] = 0.0; }
    ACC acc[PER_SUBGROUP];
    [[unroll]] for (uint a = 0u; a < PER_SUBGROUP; a++) acc[a] = ACC(0.0);
    for (uint j0 = attention_first_key(item_row(first), p.sequence); j0 <= last; j0 += BLOCK) {
        barrier();  // the previous key tile is consumed
        LOAD_KEYS(sk, k, K_DTYPE, j0, kh);
        LOAD_KEYS(sv, v, V_DTYPE, j0, kh);
        barrier();
        ROW_PRODUCTS(ss, sq, sk);
        barrier();
        // ROW_THREADS invocations a row, each over the columns j ≡ part (mod ROW_THREADS), their maxima and
        // sums combined in order through spartial.
        for (uint r0 = 0u; r0 < BLOCK; r0 += THREADS / ROW_THREADS) {
            uint r = r0 + lid / ROW_THREADS, part = lid % ROW_THREADS;
            bool here = r < BLOCK;
            float largest = here ? srow[0][r] : 0.0, next = largest, sum = 0.0;
            for (uint j = part; here && j < BLOCK; j += ROW_THREADS) {
                float s = visible(first + r, j0 + j) ? ss[r * S_STRIDE + j] * p.scale : NEGATIVE_INFINITY;
                ss[r * S_STRIDE + j] = s;
                next = max(next, s);
            }
            spartial[lid] = next;
            barrier();
            for (uint i = 0u; here && i < ROW_THREADS; i++) next = max(next, spartial[lid - part + i]);
            // A row that has seen no key yet stays at −∞: nothing to rescale, every weight 0.
            for (uint j = part; here && j < BLOCK; j += ROW_THREADS) {
                float weight = next == NEGATIVE_INFINITY ? 0.0 : exp(ss[r * S_STRIDE + j] - next);
                sp[r * P_STRIDE + j] = float16_t(weight);
                sum += weight;
            }
            barrier();  // every part has read the maxima
            spartial[lid] = sum;
            barrier();
            if (here && part == 0u) {
                for (uint i = 1u; i < ROW_THREADS; i++) sum += spartial[lid + i];
                float correction = next == NEGATIVE_INFINITY ? 1.0 : exp(largest - next);
                srow[0][r] = next;
                srow[1][r] = srow[1][r] * correction + sum;
                srow[2][r] = correction;
            }
            barrier();
        }
        // out = out·correction (by row, through the stage) + P·V.
        [[unroll]] for (uint a = 0u; a < PER_SUBGROUP; a++) {
            uint t = gl_SubgroupID + SUBGROUPS * a, i0 = (t / COLUMN_BLOCKS) * CM_M, base = gl_SubgroupID * CM_M * CM_N;
            coopMatStore(acc[a], stage, base, CM_N, gl_CooperativeMatrixLayoutRowMajor);
            subgroup_barrier();
            for (uint e = gl_SubgroupInvocationID; e < CM_M * CM_N; e += gl_SubgroupSize) stage[base + e] *= srow[2][i0 + e / CM_N];
            subgroup_barrier();
            coopMatLoad(acc[a], stage, base, CM_N, gl_CooperativeMatrixLayoutRowMajor);
            subgroup_barrier();
        }
        ACCUMULATE(acc, sp, gl_CooperativeMatrixLayoutRowMajor, sv);
    }
    barrier();
    for (uint r = lid; r < BLOCK; r += THREADS) {
        if (first + r < items()) lse_data[item_index(first + r, kh)] = srow[0][r] + log(srow[1][r]);
    }
#define STORE_OUT(r, c, value) if (first + (r) < items() && (c) < p.head_dim) { WRITE(out, item_index(first + (r), kh) * p.head_dim + (c), (value) / srow[1][r]) }
    EACH_RESULT(acc, STORE_OUT);
}
#else
// The query side of a tile pair: q and G, and per row the logsumexp and Δ = G·out (from the exact
// values, in f32) of items first.. of KV head kh.
void load_queries(uint first, uint kh) {
    uint lid = gl_LocalInvocationID.x;
    LOAD_QUERIES(sq, q, Q_DTYPE, first, kh);
    LOAD_QUERIES(sg, g, G_DTYPE, first, kh);
    for (uint r = lid; r < BLOCK; r += THREADS) {
        uint at = item_index(first + r, kh);
        float delta = 0.0;
        if (first + r < items()) {
            for (uint c = 0u; c < p.head_dim; c++) delta += READ(g, G_DTYPE, at * p.head_dim + c) * READ(o, O_DTYPE, at * p.head_dim + c);
        }
        srow[0][r] = first + r < items() ? lse_data[at] : 0.0;
        srow[1][r] = delta;
    }
}

// P and dS·scale of query items first.. against key rows j0.. (zero where masked), as f16.
void probabilities(uint first, uint j0) {
    ROW_PRODUCTS(ss, sq, sk);
    ROW_PRODUCTS(sdp, sg, sv);
    barrier();
    for (uint e = gl_LocalInvocationID.x; e < BLOCK * BLOCK; e += THREADS) {
        uint r = e / BLOCK, j = e % BLOCK;
        float prob = 0.0, ds = 0.0;
        if (visible(first + r, j0 + j)) {
            prob = exp(ss[r * S_STRIDE + j] * p.scale - srow[0][r]);
            ds = prob * (sdp[r * S_STRIDE + j] - srow[1][r]) * p.scale;
        }
        sp[r * P_STRIDE + j] = float16_t(prob);
        sds[r * P_STRIDE + j] = float16_t(ds);
    }
}

#if PASS == PASS_QUERY_GRADIENT
void main() {
    uint first = gl_WorkGroupID.x * BLOCK, kh = gl_WorkGroupID.y;
    uint last = item_row(min(first + BLOCK, items()) - 1u);
    load_queries(first, kh);
    ACC acc[PER_SUBGROUP];
    [[unroll]] for (uint a = 0u; a < PER_SUBGROUP; a++) acc[a] = ACC(0.0);
    for (uint j0 = attention_first_key(item_row(first), p.sequence); j0 <= last; j0 += BLOCK) {
        barrier();
        LOAD_KEYS(sk, k, K_DTYPE, j0, kh);
        LOAD_KEYS(sv, v, V_DTYPE, j0, kh);
        barrier();
        probabilities(first, j0);
        barrier();
        ACCUMULATE(acc, sds, gl_CooperativeMatrixLayoutRowMajor, sk);
    }
#define STORE_DQ(r, c, value) if (first + (r) < items() && (c) < p.head_dim) { WRITE(dq, item_index(first + (r), kh) * p.head_dim + (c), value) }
    EACH_RESULT(acc, STORE_DQ);
}
#else
void main() {
    uint j0 = gl_WorkGroupID.x * BLOCK, kh = gl_WorkGroupID.y;
    // The query tiles that see a key of this tile: from its first key's, until one starts after its last key.
    uint last_key = min(j0 + BLOCK, p.rows) - 1u;
    LOAD_KEYS(sk, k, K_DTYPE, j0, kh);
    LOAD_KEYS(sv, v, V_DTYPE, j0, kh);
    ACC dk[PER_SUBGROUP];
    ACC dv[PER_SUBGROUP];
    [[unroll]] for (uint a = 0u; a < PER_SUBGROUP; a++) { dk[a] = ACC(0.0); dv[a] = ACC(0.0); }
    for (uint first = j0 * group_size(); first < items() && attention_tile_sees(item_row(first), last_key, p.sequence); first += BLOCK) {
        barrier();
        load_queries(first, kh);
        barrier();
        probabilities(first, j0);
        barrier();
        // Transposed weights: [key][query] read from the [query][key] tiles.
        ACCUMULATE(dk, sds, gl_CooperativeMatrixLayoutColumnMajor, sq);
        ACCUMULATE(dv, sp, gl_CooperativeMatrixLayoutColumnMajor, sg);
    }
#define STORE_DK(r, c, value) if (j0 + (r) < p.rows && (c) < p.head_dim) { WRITE(dk, ((j0 + (r)) * p.kv_heads + kh) * p.head_dim + (c), value) }
#define STORE_DV(r, c, value) if (j0 + (r) < p.rows && (c) < p.head_dim) { WRITE(dv, ((j0 + (r)) * p.kv_heads + kh) * p.head_dim + (c), value) }
    EACH_RESULT(dk, STORE_DK);
    EACH_RESULT(dv, STORE_DV);
}
#endif
#endif
