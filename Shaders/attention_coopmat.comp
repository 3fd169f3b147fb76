#version 450
// Compiled ahead of time (GL_KHR_cooperative_matrix is beyond the glslang that shaderc links here):
// tools/compile-coopmat-shaders.sh writes Shaders/spirv/, which the build embeds. Edit, then run it.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

// attention.comp's passes (forward, dq, dk and dv; the same items, masks, tiles skipped and grouped KV
// heads) with the products of tiles in subgroup-scope cooperative matrices, after ggml-vulkan's
// flash_attn_cm1.comp. Each product (scores Q·Kᵀ, P·V; backward G·Vᵀ, dS·K, Pᵀ·G, dSᵀ·Q) is a grid of
// CM_M × CM_N accumulators in f32 spread over the workgroup's SUBGROUPS subgroups; the softmax (its
// running maximum, rescaling and sums, the logsumexp, P and dS) is f32. P and dS are rounded to f16 to
// enter the next product (2⁻¹¹ of each; the sums of P that normalize the output and make the logsumexp
// are the f32 values). Operands that are not f16 are rounded to f16 as they are staged (the host takes
// this kernel for them only under MatmulPrecision.high).
// PASS_FORWARD: a workgroup per (query tile of BLOCK items, KV head), over key tiles of KEYS = SUBGROUPS ·
// CM_N rows. Q is staged once (and held in fragments at heads of 64); subgroup s computes the scores of
// key block s, and each subgroup the softmax of its query rows with subgroup reductions, its running
// maximum and sum in registers; K's and V's fragments come straight from the buffers where DIRECT
// (ggml's unstaged path), else through a fragment-sized stage per subgroup. The out accumulators are
// rescaled at each key tile by the row's correction through the subgroup's f32 stage.
// PASS_QUERY_GRADIENT: per (query tile, KV head), dq. PASS_KEY_VALUE_GRADIENT: per (key tile, KV head), dk
// and dv over the query tiles that see it. Both stage q and G as f16 tiles of BLOCK rows and read K's
// and V's fragments as the forward does.
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
// K and V are f16, the head a multiple of CM_K, CM_N and 8 columns (16-byte rows, as the matrix loads
// need) and at least KEYS rows, so that their fragments are loaded from the buffers.
layout(constant_id = 11) const uint DIRECT = 0;
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

// Key rows of a tile: the forward's KEYS, one CM_N block a subgroup; the backward's BLOCK.
#if PASS == PASS_FORWARD
const uint KEYS = SUBGROUPS * CM_N;
#else
const uint KEYS = BLOCK;
#endif
// f16 tiles of BLOCK rows, each padded by 8 halves (16 bytes: rows stay aligned for the matrix loads
// and start in different banks); scores (and dP) in f32, P (and dS) in f16, [query][key].
const uint STRIDE = HEAD_DIM_MAX + 8u, S_STRIDE = KEYS + 4u, P_STRIDE = KEYS + 8u;
shared float16_t sq[BLOCK * STRIDE];
shared float ss[BLOCK * S_STRIDE];
shared float16_t sp[BLOCK * P_STRIDE];
// Per query row: the forward's final maximum, sum and each key tile's correction; the backward's
// logsumexp and Δ.
shared float srow[3][BLOCK];
// Each subgroup's CM_M × CM_N f32 stage, through which accumulators are rescaled and written.
shared float stage[SUBGROUPS * CM_M * CM_N];
// Each subgroup's f16 stage for a K or V fragment that cannot be loaded from its buffer (one element
// when every one can).
const uint FRAGMENT = CM_K > CM_N ? CM_K : CM_N, FRAGMENT_STRIDE = FRAGMENT + 8u;
shared float16_t sfragment[DIRECT != 0u ? 1u : SUBGROUPS * FRAGMENT * FRAGMENT_STRIDE];
#if PASS != PASS_FORWARD
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
#define LOAD_QUERIES(tile, name, dtype, first, kh) LOAD_TILE(tile, name, dtype, (first) + r < items(), item_index((first) + r, kh))

#define ACC coopmat<float, gl_ScopeSubgroup, CM_M, CM_N, gl_MatrixUseAccumulator>
#define MAT_A coopmat<float16_t, gl_ScopeSubgroup, CM_M, CM_K, gl_MatrixUseA>
#define MAT_B coopmat<float16_t, gl_ScopeSubgroup, CM_K, CM_N, gl_MatrixUseB>
const uint ROW_BLOCKS = BLOCK / CM_M, KEY_BLOCKS = KEYS / CM_N;
// The accumulators of a BLOCK × HEAD_DIM_MAX result (out, dq, dk, dv): tile t = subgroup + SUBGROUPS·a
// is row block t / COLUMN_BLOCKS, column block t % COLUMN_BLOCKS. COLUMN_BLOCKS is a multiple of
// SUBGROUPS (HEAD_DIM_MAX of 64 at least, matrices of at most 16 columns), so every subgroup has as many
// and runs the same branches, the tiles of zero columns beyond the head included (lavapipe's products
// were wrong when subgroups skipped theirs: a subgroup-scope barrier it does not take).
const uint COLUMN_BLOCKS = HEAD_DIM_MAX / CM_N, PER_SUBGROUP = ROW_BLOCKS * COLUMN_BLOCKS / SUBGROUPS;

void subgroup_barrier() { controlBarrier(gl_ScopeSubgroup, gl_ScopeSubgroup, gl_StorageSemanticsShared, gl_SemanticsAcquireRelease); }

// The backward's block t of dst[i][j] = Σ_c a[i][c]·b[j][c] over the head's columns, i and j < BLOCK (a
// staged tile's rows by the key tile's rows of b, K or V: Q·Kᵀ, G·Vᵀ).
#define ROW_PRODUCT(dst, a, b, t) { \
        uint i0 = ((t) / KEY_BLOCKS) * CM_M, k0 = ((t) % KEY_BLOCKS) * CM_N; \
        ACC sum = ACC(0.0); \
        for (uint c = 0u; c < p.head_dim; c += CM_K) { \
            MAT_A x; MAT_B y; \
            coopMatLoad(x, a, i0 * STRIDE + c, STRIDE, gl_CooperativeMatrixLayoutRowMajor); \
            KV_ROWS(y, b, k0, c); \
            sum = coopMatMulAdd(x, y, sum); \
        } \
        coopMatStore(sum, dst, i0 * S_STRIDE + k0, S_STRIDE, gl_CooperativeMatrixLayoutRowMajor); \
    }

// acc[a] += w·values over the tile's KEYS inner rows for this subgroup's result tiles: w a BLOCK ×
// KEYS f16 weight matrix, [row][inner] (order RowMajor) or [inner][row] (ColumnMajor: a transpose),
// LOAD_VALUES(x, values, inner, column) the CM_K × CM_N fragment of values [inner][column] at that
// row and column. A subgroup's tiles of one row block are ROW_TILES consecutive accumulators, so each
// weight fragment is loaded once for all of them.
const uint ROW_TILES = COLUMN_BLOCKS / SUBGROUPS;
#define ACCUMULATE(acc, weights, order, LOAD_VALUES, values) \
    [[unroll]] for (uint row = 0u; row < PER_SUBGROUP / ROW_TILES; row++) { \
        uint i0 = ((gl_SubgroupID + SUBGROUPS * row * ROW_TILES) / COLUMN_BLOCKS) * CM_M; \
        [[unroll]] for (uint kk = 0u; kk < KEYS; kk += CM_K) { \
            MAT_A w; \
            coopMatLoad(w, weights, order == gl_CooperativeMatrixLayoutRowMajor ? i0 * P_STRIDE + kk : kk * P_STRIDE + i0, P_STRIDE, order); \
            [[unroll]] for (uint j = 0u; j < ROW_TILES; j++) { \
                uint a = row * ROW_TILES + j; \
                MAT_B x; \
                LOAD_VALUES(x, values, kk, ((gl_SubgroupID + SUBGROUPS * a) % COLUMN_BLOCKS) * CM_N); \
                acc[a] = coopMatMulAdd(w, x, acc[a]); \
            } \
        } \
    }
// A fragment of a staged tile.
#define STAGED_VALUES(x, tile, row, column) coopMatLoad(x, tile, (row) * STRIDE + (column), STRIDE, gl_CooperativeMatrixLayoutRowMajor)

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

// The rows_ × columns_ block of K or V (`name`) from key row `row` and column `column` of KV head kh into
// `fragment`, which reads that [key][column] block in `order`: straight from the buffer (DIRECT), else
// through this subgroup's stage, zero beyond the rows and the head.
#define KV_FRAGMENT(fragment, name, dtype, row, column, rows_, columns_, order) \
    if (DIRECT != 0u) { \
        coopMatLoad(fragment, name##_f16, ((row) * p.kv_heads + kh) * p.head_dim + (column), p.kv_heads * p.head_dim, order); \
    } else { \
        uint base = gl_SubgroupID * FRAGMENT * FRAGMENT_STRIDE; \
        for (uint e = gl_SubgroupInvocationID; e < (rows_) * (columns_); e += gl_SubgroupSize) { \
            uint r = (row) + e / (columns_), c = (column) + e % (columns_); \
            sfragment[base + (e / (columns_)) * FRAGMENT_STRIDE + e % (columns_)] = \
                float16_t(r < p.rows && c < p.head_dim ? READ(name, dtype, (r * p.kv_heads + kh) * p.head_dim + c) : 0.0); \
        } \
        subgroup_barrier(); \
        coopMatLoad(fragment, sfragment, base, FRAGMENT_STRIDE, order); \
        subgroup_barrier(); \
    }
// K's or V's fragment at the tile's key `row` (from jb) and `column`, [key][column]: as values (the tiles
// of columns beyond the head, whose results are dropped, read the head's first columns, so that no load
// leaves the buffer), and transposed for the scores.
#define k_DTYPE K_DTYPE
#define v_DTYPE V_DTYPE
#define KV_VALUES(x, name, row, column) \
    KV_FRAGMENT(x, name, name##_DTYPE, jb + (row), (column) < p.head_dim ? (column) : 0u, CM_K, CM_N, gl_CooperativeMatrixLayoutRowMajor)
#define KV_ROWS(y, name, row, column) KV_FRAGMENT(y, name, name##_DTYPE, jb + (row), column, CM_N, CM_K, gl_CooperativeMatrixLayoutColumnMajor)

#if PASS == PASS_FORWARD
// Q's fragments are held in registers across the key loop up to heads of 64 columns (4 per row
// block); wider heads read them from the staged tile (at 128 columns, 8 held fragments took RDNA3's
// kernel to 252 VGPRs).
const bool Q_FRAGMENTS = HEAD_DIM_MAX <= 64u;
const uint Q_BLOCKS = HEAD_DIM_MAX / CM_K;
// Each subgroup's softmax rows: gl_SubgroupID + SUBGROUPS·i.
const uint SUBGROUP_ROWS = BLOCK / SUBGROUPS;

void main() {
    uint first = gl_WorkGroupID.x * BLOCK, kh = gl_WorkGroupID.y;
    uint last = item_row(min(first + BLOCK, items()) - 1u);
    LOAD_QUERIES(sq, q, Q_DTYPE, first, kh);
    barrier();
    MAT_A qf[Q_FRAGMENTS ? ROW_BLOCKS * Q_BLOCKS : 1u];
    if (Q_FRAGMENTS) {
        [[unroll]] for (uint b = 0u; b < ROW_BLOCKS; b++) {
            [[unroll]] for (uint c = 0u; c < Q_BLOCKS; c++) coopMatLoad(qf[b * Q_BLOCKS + c], sq, b * CM_M * STRIDE + c * CM_K, STRIDE, gl_CooperativeMatrixLayoutRowMajor);
        }
    }
    // The running maximum and sum of this subgroup's rows (uniform in the subgroup).
    float row_max[SUBGROUP_ROWS], row_sum[SUBGROUP_ROWS];
    [[unroll]] for (uint i = 0u; i < SUBGROUP_ROWS; i++) { row_max[i] = NEGATIVE_INFINITY; row_sum[i] = 0.0; }
    ACC acc[PER_SUBGROUP];
    [[unroll]] for (uint a = 0u; a < PER_SUBGROUP; a++) acc[a] = ACC(0.0);
    for (uint j0 = attention_first_key(item_row(first), p.sequence); j0 <= last; j0 += KEYS) {
        // The tile's KEYS key rows from jb: where fragments come from the buffers, the last tile moves back
        // to end at the last row, and the keys before j0 it takes again are masked.
        uint jb = DIRECT != 0u ? min(j0, p.rows - KEYS) : j0;
        // Scores of key block gl_SubgroupID against every row block (the previous tile's softmax has read ss).
        ACC scores[ROW_BLOCKS];
        [[unroll]] for (uint b = 0u; b < ROW_BLOCKS; b++) scores[b] = ACC(0.0);
        [[unroll]] for (uint c = 0u; c < HEAD_DIM_MAX; c += CM_K) {
            if (c < p.head_dim) {
                MAT_B y;
                KV_ROWS(y, k, gl_SubgroupID * CM_N, c);
                [[unroll]] for (uint b = 0u; b < ROW_BLOCKS; b++) {
                    MAT_A x;
                    if (Q_FRAGMENTS) x = qf[b * Q_BLOCKS + c / CM_K];
                    else coopMatLoad(x, sq, b * CM_M * STRIDE + c, STRIDE, gl_CooperativeMatrixLayoutRowMajor);
                    scores[b] = coopMatMulAdd(x, y, scores[b]);
                }
            }
        }
        [[unroll]] for (uint b = 0u; b < ROW_BLOCKS; b++) {
            coopMatStore(scores[b], ss, b * CM_M * S_STRIDE + gl_SubgroupID * CM_N, S_STRIDE, gl_CooperativeMatrixLayoutRowMajor);
        }
        barrier();
        // Each row's softmax over the tile by its subgroup, a key a lane (or several): the scaled, masked
        // scores, their maximum with the running one, P in f16 and its f32 sum. A row that has seen no
        // key yet stays at −∞: nothing to rescale, every weight 0.
        [[unroll]] for (uint i = 0u; i < SUBGROUP_ROWS; i++) {
            uint r = gl_SubgroupID + SUBGROUPS * i;
            float next = row_max[i];
            for (uint j = gl_SubgroupInvocationID; j < KEYS; j += gl_SubgroupSize) {
                float s = jb + j >= j0 && visible(first + r, jb + j) ? ss[r * S_STRIDE + j] * p.scale : NEGATIVE_INFINITY;
                ss[r * S_STRIDE + j] = s;
                next = max(next, s);
            }
            next = subgroupMax(next);
            float sum = 0.0;
            for (uint j = gl_SubgroupInvocationID; j < KEYS; j += gl_SubgroupSize) {
                float weight = next == NEGATIVE_INFINITY ? 0.0 : exp(ss[r * S_STRIDE + j] - next);
                sp[r * P_STRIDE + j] = float16_t(weight);
                sum += weight;
            }
            float correction = next == NEGATIVE_INFINITY ? 1.0 : exp(row_max[i] - next);
            row_sum[i] = row_sum[i] * correction + subgroupAdd(sum);
            row_max[i] = next;
            if (subgroupElect()) srow[2][r] = correction;
        }
        barrier();
        // out = out·correction (by row, through the stage) + P·V (the next tile's scores write ss only:
        // its softmax, which writes sp and the corrections, waits at the barrier above).
        [[unroll]] for (uint a = 0u; a < PER_SUBGROUP; a++) {
            uint t = gl_SubgroupID + SUBGROUPS * a, i0 = (t / COLUMN_BLOCKS) * CM_M, base = gl_SubgroupID * CM_M * CM_N;
            coopMatStore(acc[a], stage, base, CM_N, gl_CooperativeMatrixLayoutRowMajor);
            subgroup_barrier();
            for (uint e = gl_SubgroupInvocationID; e < CM_M * CM_N; e += gl_SubgroupSize) stage[base + e] *= srow[2][i0 + e / CM_N];
            subgroup_barrier();
            coopMatLoad(acc[a], stage, base, CM_N, gl_CooperativeMatrixLayoutRowMajor);
            subgroup_barrier();
        }
        ACCUMULATE(acc, sp, gl_CooperativeMatrixLayoutRowMajor, KV_VALUES, v);
    }
    if (subgroupElect()) {
        [[unroll]] for (uint i = 0u; i < SUBGROUP_ROWS; i++) { srow[0][gl_SubgroupID + SUBGROUPS * i] = row_max[i]; srow[1][gl_SubgroupID + SUBGROUPS * i] = row_sum[i]; }
    }
    barrier();
    for (uint r = gl_LocalInvocationID.x; r < BLOCK; r += THREADS) {
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

// P and dS·scale of query items first.. against the key rows from jb of KV head kh (zero where masked
// and before j0), as f16, K's and V's fragments read as the forward reads them.
void probabilities(uint first, uint jb, uint j0, uint kh) {
    // The scores' and dP's blocks dealt out together, so that at 16 rows in 16×16 matrices (one block each)
    // two subgroups compute them.
    for (uint t = gl_SubgroupID; t < 2u * ROW_BLOCKS * KEY_BLOCKS; t += SUBGROUPS) {
        if (t < ROW_BLOCKS * KEY_BLOCKS) ROW_PRODUCT(ss, sq, k, t)
        else ROW_PRODUCT(sdp, sg, v, t - ROW_BLOCKS * KEY_BLOCKS)
    }
    barrier();
    for (uint e = gl_LocalInvocationID.x; e < BLOCK * BLOCK; e += THREADS) {
        uint r = e / BLOCK, j = e % BLOCK;
        float prob = 0.0, ds = 0.0;
        if (jb + j >= j0 && visible(first + r, jb + j)) {
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
    barrier();
    ACC acc[PER_SUBGROUP];
    [[unroll]] for (uint a = 0u; a < PER_SUBGROUP; a++) acc[a] = ACC(0.0);
    for (uint j0 = attention_first_key(item_row(first), p.sequence); j0 <= last; j0 += BLOCK) {
        // The tile's key rows from jb, moved back as the forward's (the previous tile's scores and dS are
        // read: the next products write only ss and sdp, and the barrier in probabilities orders the rest).
        uint jb = DIRECT != 0u ? min(j0, p.rows - BLOCK) : j0;
        probabilities(first, jb, j0, kh);
        barrier();
        ACCUMULATE(acc, sds, gl_CooperativeMatrixLayoutRowMajor, KV_VALUES, k);
    }
#define STORE_DQ(r, c, value) if (first + (r) < items() && (c) < p.head_dim) { WRITE(dq, item_index(first + (r), kh) * p.head_dim + (c), value) }
    EACH_RESULT(acc, STORE_DQ);
}
#else
void main() {
    uint j0 = gl_WorkGroupID.x * BLOCK, kh = gl_WorkGroupID.y;
    // The tile's key rows from jb: where K and V come from their buffers, the last tile moves back to end
    // at the last row, and only its keys from j0 are written (the previous tile writes the others).
    uint jb = DIRECT != 0u ? min(j0, p.rows - BLOCK) : j0;
    // The query tiles that see a key of this tile: from its first key's, until one starts after its last key.
    uint last_key = min(jb + BLOCK, p.rows) - 1u;
    ACC dk[PER_SUBGROUP];
    ACC dv[PER_SUBGROUP];
    [[unroll]] for (uint a = 0u; a < PER_SUBGROUP; a++) { dk[a] = ACC(0.0); dv[a] = ACC(0.0); }
    for (uint first = jb * group_size(); first < items() && attention_tile_sees(item_row(first), last_key, p.sequence); first += BLOCK) {
        barrier();
        load_queries(first, kh);
        barrier();
        probabilities(first, jb, jb, kh);
        barrier();
        // Transposed weights: [key][query] read from the [query][key] tiles.
        ACCUMULATE(dk, sds, gl_CooperativeMatrixLayoutColumnMajor, STAGED_VALUES, sq);
        ACCUMULATE(dv, sp, gl_CooperativeMatrixLayoutColumnMajor, STAGED_VALUES, sg);
    }
#define STORE_DK(r, c, value) if (jb + (r) >= j0 && jb + (r) < p.rows && (c) < p.head_dim) { WRITE(dk, ((jb + (r)) * p.kv_heads + kh) * p.head_dim + (c), value) }
#define STORE_DV(r, c, value) if (jb + (r) >= j0 && jb + (r) < p.rows && (c) < p.head_dim) { WRITE(dv, ((jb + (r)) * p.kv_heads + kh) * p.head_dim + (c), value) }
    EACH_RESULT(dk, STORE_DK);
    EACH_RESULT(dv, STORE_DV);
}
#endif
#endif
