#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// Causal softmax attention with grouped KV heads over sequences of `sequence` rows packed along T
// (AttentionOptions in Op.swift; CPUBackend+Attention.swift is the twin), tiled as FlashAttention-2:
// tiles of BLOCK queries against tiles of BLOCK key rows of one KV head, staged in shared memory
// as f32 with columns up to HEAD_DIM_MAX (zero beyond the head dim and beyond T), 64 invocations.
// A query is an item (row, query head of the KV head's group), items in row-major order, so one
// query tile holds every head of the group for its rows and each key tile is read once for all of
// them. Key tiles start at the query tile's sequence start and end at its last row, so tiles that
// are entirely masked (earlier sequences, the future) are never loaded; masks inside a tile are per
// element (attention_mask.glsl: which keys a row sees, with a packed attention's sequence starts).
// Every sum runs in a fixed order, so results do not depend on scheduling.
// PASS_FORWARD: a workgroup per (query tile, KV head): an online softmax over the key tiles; out
//   and logsumexp.
// PASS_CACHED_FORWARD: the forward pass of one sequence whose first keys and values are a KV
//   cache's first `past` rows (read from a buffer at run time, so one pipeline and one recorded
//   dispatch serve every decoding step), followed by the new rows of k and v: query row t, at
//   position past + t, sees keys 0..past + t (Op.cachedAttention).
// PASS_QUERY_GRADIENT: a workgroup per (query tile, KV head): dq over its key tiles, the
//   probabilities recomputed from the saved logsumexp: P = exp(s − lse), dS = P·(G·v − Δ), Δ = G·out.
// PASS_KEY_VALUE_GRADIENT: a workgroup per (key tile, KV head): dk and dv over the query tiles
//   that see the key tile, no atomics.
// (AttentionKernel.Pass, AttentionKernel.Tile.) The products of tiles (scores, P·V, dS·K, Pᵀ·G, dSᵀ·Q)
// are the loops a cooperative-matrix path would replace.
// Host defines: PASS, BLOCK, HEAD_DIM_MAX, Q_T, K_T, V_T, G_T and O_T (backward), C_T, C_FROM_F32,
// SEQUENCE_STARTS (packed; not with PASS_CACHED_FORWARD).
#define THREADS 64u
// Accumulators (out and dq by query, dk and dv by key row) in micro-tiles of ROWS_PER × COLUMNS_PER
// on a ROW_GROUPS × COLUMN_GROUPS layout of invocations: rows ar + ROW_GROUPS·a, columns
// ac + COLUMN_GROUPS·b, each loaded weight feeding COLUMNS_PER products and each loaded value
// ROWS_PER (BLOCK is at least 4).
#define ROWS_PER 4u
#define ROW_GROUPS (BLOCK / ROWS_PER)
#define COLUMN_GROUPS (THREADS / ROW_GROUPS)
#define COLUMNS_PER (HEAD_DIM_MAX / COLUMN_GROUPS)
#define ACCUMULATORS (ROWS_PER * COLUMNS_PER)
// A tile's row stride: one past the head so that the rows an invocation grid reads at one column
// fall in different banks.
#define STRIDE (HEAD_DIM_MAX + 1u)
// Scores are computed in micro-tiles of MICRO × MICRO on a GRID × GRID layout of invocations,
// each loaded q (or G) and k (or v) value feeding MICRO products.
#define MICRO (BLOCK >= 8u ? BLOCK / 8u : 1u)
#define GRID (BLOCK / MICRO)
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer QBuf { Q_T q_data[]; };
layout(std430, binding = 1) readonly buffer KBuf { K_T k_data[]; };
layout(std430, binding = 2) readonly buffer VBuf { V_T v_data[]; };
#if PASS == PASS_FORWARD || PASS == PASS_CACHED_FORWARD
layout(std430, binding = 3) writeonly buffer OutBuf { C_T out_data[]; };
layout(std430, binding = 4) writeonly buffer LseBuf { float lse_data[]; };
#else
layout(std430, binding = 3) readonly buffer GBuf { G_T g_data[]; };
layout(std430, binding = 4) readonly buffer OBuf { O_T o_data[]; };
layout(std430, binding = 5) readonly buffer LseBuf { float lse_data[]; };
#if PASS == PASS_QUERY_GRADIENT
layout(std430, binding = 6) writeonly buffer DqBuf { C_T dq_data[]; };
#else
layout(std430, binding = 6) writeonly buffer DkBuf { C_T dk_data[]; };
layout(std430, binding = 7) writeonly buffer DvBuf { C_T dv_data[]; };
#endif
#endif

layout(push_constant) uniform Params { uint rows, q_heads, kv_heads, head_dim, sequence; float scale; uint cache_rows; } p;

// The sequence starts bind after the pass's other buffers.
#if PASS == PASS_FORWARD
#define SEQUENCE_STARTS_BINDING 5
#elif PASS == PASS_QUERY_GRADIENT
#define SEQUENCE_STARTS_BINDING 7
#elif PASS == PASS_KEY_VALUE_GRADIENT
#define SEQUENCE_STARTS_BINDING 8
#endif
#include "attention_mask.glsl"

#if PASS == PASS_CACHED_FORWARD
layout(std430, binding = 5) readonly buffer KCacheBuf { K_T kc_data[]; };
layout(std430, binding = 6) readonly buffer VCacheBuf { V_T vc_data[]; };
layout(std430, binding = 7) readonly buffer PastBuf { int past_data[]; };
// The cache rows before the new ones, never more than the cache holds.
uint past_rows() { return uint(clamp(past_data[0], 0, int(p.cache_rows))); }
#else
uint past_rows() { return 0u; }
#endif

// Tiles of BLOCK rows × STRIDE columns (AttentionKernel.Tile.sharedBytes counts these).
shared float sq[BLOCK * STRIDE];
shared float sk[BLOCK * STRIDE];
shared float sv[BLOCK * STRIDE];
// [query row][key row]: scores, then probabilities.
shared float sp[BLOCK * BLOCK];
// Per query row: the forward's rescaling factor, then its sum; the backward's logsumexp.
shared float srow[BLOCK];
#if PASS != PASS_FORWARD && PASS != PASS_CACHED_FORWARD
shared float sg[BLOCK * STRIDE];
shared float sds[BLOCK * BLOCK];
shared float sdelta[BLOCK];
#endif

#define NEGATIVE_INFINITY uintBitsToFloat(0xFF800000u)

uint group_size() { return p.q_heads / p.kv_heads; }
uint items() { return p.rows * group_size(); }
uint item_row(uint item) { return item / group_size(); }
// Where query item `item` of KV head `kh` is in a [T, H_q] tensor.
uint item_index(uint item, uint kh) { return item_row(item) * p.q_heads + kh * group_size() + item % group_size(); }

// A tile's BLOCK rows r of a [T, heads, head_dim] tensor: those in range from `base`, a head's start.
#define LOAD_TILE(tile, data, in_range, base) \
    for (uint e = gl_LocalInvocationID.x; e < BLOCK * HEAD_DIM_MAX; e += THREADS) { \
        uint r = e / HEAD_DIM_MAX, c = e % HEAD_DIM_MAX; \
        tile[r * STRIDE + c] = (in_range) && c < p.head_dim ? to_f32(data[(base) * p.head_dim + c]) : 0.0; \
    }
// Key rows j0.. of KV head kh; query items first.. of KV head kh's group.
#define LOAD_KEYS(tile, data, j0, kh) LOAD_TILE(tile, data, (j0) + r < p.rows, ((j0) + r) * p.kv_heads + (kh))
#define LOAD_QUERIES(tile, data, first, kh) LOAD_TILE(tile, data, (first) + r < items(), item_index((first) + r, kh))
#if PASS == PASS_CACHED_FORWARD
// Key rows j0.. of KV head kh of the cache's first rows followed by the new ones.
#define LOAD_FORWARD_KEYS(tile, data, cache, j0, kh) \
    for (uint e = gl_LocalInvocationID.x; e < BLOCK * HEAD_DIM_MAX; e += THREADS) { \
        uint r = e / HEAD_DIM_MAX, c = e % HEAD_DIM_MAX, j = (j0) + r, past = past_rows(); \
        tile[r * STRIDE + c] = j >= past + p.rows || c >= p.head_dim ? 0.0 \
            : j < past ? to_f32(cache[(j * p.kv_heads + (kh)) * p.head_dim + c]) \
            : to_f32(data[((j - past) * p.kv_heads + (kh)) * p.head_dim + c]); \
    }
#else
#define LOAD_FORWARD_KEYS(tile, data, cache, j0, kh) LOAD_KEYS(tile, data, j0, kh)
#endif

// Whether query item `item` sees key row `key`.
bool visible(uint item, uint key) { return item < items() && attention_visible(item_row(item), key, p.sequence, past_rows()); }

// dots[x·MICRO + y] = tile a's row tr + GRID·x · tile b's row tk + GRID·y, summed over the head's
// columns in order.
#define MICRO_DOTS(dots, a, b, tr, tk) \
    for (uint i = 0u; i < MICRO * MICRO; i++) dots[i] = 0.0; \
    for (uint c = 0u; c < p.head_dim; c++) { \
        float av[MICRO], bv[MICRO]; \
        for (uint x = 0u; x < MICRO; x++) { av[x] = a[((tr) + GRID * x) * STRIDE + c]; bv[x] = b[((tk) + GRID * x) * STRIDE + c]; } \
        for (uint x = 0u; x < MICRO; x++) { \
            for (uint y = 0u; y < MICRO; y++) dots[x * MICRO + y] += av[x] * bv[y]; \
        } \
    }

// acc[a·COLUMNS_PER + b] += Σ over k < BLOCK of weight(row ar + ROW_GROUPS·a, k) · values[k][column
// ac + COLUMN_GROUPS·b], k in order.
#define ACCUMULATE(acc, weight, values) \
    for (uint k = 0u; k < BLOCK; k++) { \
        float w[ROWS_PER], x[COLUMNS_PER]; \
        for (uint a = 0u; a < ROWS_PER; a++) w[a] = weight(ar + ROW_GROUPS * a, k); \
        for (uint b = 0u; b < COLUMNS_PER; b++) x[b] = values[k * STRIDE + ac + COLUMN_GROUPS * b]; \
        for (uint a = 0u; a < ROWS_PER; a++) { \
            for (uint b = 0u; b < COLUMNS_PER; b++) acc[a * COLUMNS_PER + b] += w[a] * x[b]; \
        } \
    }
// Weights by (query, key) and, transposed, by (key, query).
#define PROBABILITY(r, j) sp[(r) * BLOCK + (j)]
#define PROBABILITY_BY_KEY(j, r) sp[(r) * BLOCK + (j)]
#define SCORE_GRADIENT(r, j) sds[(r) * BLOCK + (j)]
#define SCORE_GRADIENT_BY_KEY(j, r) sds[(r) * BLOCK + (j)]

#if PASS == PASS_FORWARD || PASS == PASS_CACHED_FORWARD
void main() {
    uint t = gl_LocalInvocationID.x, ar = t / COLUMN_GROUPS, ac = t % COLUMN_GROUPS;
    uint first = gl_WorkGroupID.x * BLOCK, kh = gl_WorkGroupID.y;
    uint last = item_row(min(first + BLOCK, items()) - 1u);
    LOAD_QUERIES(sq, q_data, first, kh);
    float acc[ACCUMULATORS];
    for (uint i = 0u; i < ACCUMULATORS; i++) acc[i] = 0.0;
    float largest = NEGATIVE_INFINITY, total = 0.0;  // of query t, held by invocation t < BLOCK
    for (uint j0 = attention_first_key(item_row(first), p.sequence); j0 <= last + past_rows(); j0 += BLOCK) {
        barrier();  // the previous key tile is consumed
        LOAD_FORWARD_KEYS(sk, k_data, kc_data, j0, kh);
        LOAD_FORWARD_KEYS(sv, v_data, vc_data, j0, kh);
        barrier();
        if (t < GRID * GRID) {
            uint tr = t / GRID, tk = t % GRID;
            float dots[MICRO * MICRO];
            MICRO_DOTS(dots, sq, sk, tr, tk);
            for (uint x = 0u; x < MICRO; x++) {
                for (uint y = 0u; y < MICRO; y++) {
                    uint r = tr + GRID * x, j = tk + GRID * y;
                    sp[r * BLOCK + j] = visible(first + r, j0 + j) ? dots[x * MICRO + y] * p.scale : NEGATIVE_INFINITY;
                }
            }
        }
        barrier();
        if (t < BLOCK) {
            float next = largest;
            for (uint j = 0u; j < BLOCK; j++) next = max(next, sp[t * BLOCK + j]);
            // A row that has seen no key yet stays at −∞: nothing to rescale, every weight 0.
            float correction = next == NEGATIVE_INFINITY ? 1.0 : exp(largest - next), sum = 0.0;
            for (uint j = 0u; j < BLOCK; j++) {
                float weight = next == NEGATIVE_INFINITY ? 0.0 : exp(sp[t * BLOCK + j] - next);
                sp[t * BLOCK + j] = weight;
                sum += weight;
            }
            total = total * correction + sum;
            largest = next;
            srow[t] = correction;
        }
        barrier();
        for (uint a = 0u; a < ROWS_PER; a++) {
            float correction = srow[ar + ROW_GROUPS * a];
            for (uint b = 0u; b < COLUMNS_PER; b++) acc[a * COLUMNS_PER + b] *= correction;
        }
        ACCUMULATE(acc, PROBABILITY, sv);
    }
    barrier();
    if (t < BLOCK) {
        srow[t] = total;
        if (first + t < items()) lse_data[item_index(first + t, kh)] = largest + log(total);
    }
    barrier();
    for (uint a = 0u; a < ROWS_PER; a++) {
        for (uint b = 0u; b < COLUMNS_PER; b++) {
            uint r = ar + ROW_GROUPS * a, c = ac + COLUMN_GROUPS * b;
            if (first + r < items() && c < p.head_dim) out_data[item_index(first + r, kh) * p.head_dim + c] = C_FROM_F32(acc[a * COLUMNS_PER + b] / srow[r]);
        }
    }
}
#else
// The query side of a tile pair: q, G, logsumexp and Δ = G·out of items first.. of KV head kh.
void load_queries(uint first, uint kh) {
    uint t = gl_LocalInvocationID.x;
    LOAD_QUERIES(sq, q_data, first, kh);
    LOAD_QUERIES(sg, g_data, first, kh);
    barrier();
    if (t < BLOCK) {
        uint at = item_index(first + t, kh);
        float delta = 0.0;
        if (first + t < items()) {
            for (uint c = 0u; c < p.head_dim; c++) delta += sg[t * STRIDE + c] * to_f32(o_data[at * p.head_dim + c]);
        }
        sdelta[t] = delta;
        srow[t] = first + t < items() ? lse_data[at] : 0.0;
    }
}

// P and dS·scale of query items first.. against key rows j0.. (zero where masked).
void probabilities(uint first, uint j0) {
    uint t = gl_LocalInvocationID.x;
    if (t >= GRID * GRID) return;
    uint tr = t / GRID, tk = t % GRID;
    float s[MICRO * MICRO], gv[MICRO * MICRO];
    MICRO_DOTS(s, sq, sk, tr, tk);
    MICRO_DOTS(gv, sg, sv, tr, tk);
    for (uint x = 0u; x < MICRO; x++) {
        for (uint y = 0u; y < MICRO; y++) {
            uint r = tr + GRID * x, j = tk + GRID * y;
            float prob = 0.0, ds = 0.0;
            if (visible(first + r, j0 + j)) {
                prob = exp(s[x * MICRO + y] * p.scale - srow[r]);
                ds = prob * (gv[x * MICRO + y] - sdelta[r]) * p.scale;
            }
            sp[r * BLOCK + j] = prob;
            sds[r * BLOCK + j] = ds;
        }
    }
}

#if PASS == PASS_QUERY_GRADIENT
void main() {
    uint t = gl_LocalInvocationID.x, ar = t / COLUMN_GROUPS, ac = t % COLUMN_GROUPS;
    uint first = gl_WorkGroupID.x * BLOCK, kh = gl_WorkGroupID.y;
    uint last = item_row(min(first + BLOCK, items()) - 1u);
    load_queries(first, kh);
    float acc[ACCUMULATORS];
    for (uint i = 0u; i < ACCUMULATORS; i++) acc[i] = 0.0;
    for (uint j0 = attention_first_key(item_row(first), p.sequence); j0 <= last; j0 += BLOCK) {
        barrier();
        LOAD_KEYS(sk, k_data, j0, kh);
        LOAD_KEYS(sv, v_data, j0, kh);
        barrier();
        probabilities(first, j0);
        barrier();
        ACCUMULATE(acc, SCORE_GRADIENT, sk);
    }
    for (uint a = 0u; a < ROWS_PER; a++) {
        for (uint b = 0u; b < COLUMNS_PER; b++) {
            uint r = ar + ROW_GROUPS * a, c = ac + COLUMN_GROUPS * b;
            if (first + r < items() && c < p.head_dim) dq_data[item_index(first + r, kh) * p.head_dim + c] = C_FROM_F32(acc[a * COLUMNS_PER + b]);
        }
    }
}
#else
void main() {
    uint t = gl_LocalInvocationID.x, ar = t / COLUMN_GROUPS, ac = t % COLUMN_GROUPS;
    uint j0 = gl_WorkGroupID.x * BLOCK, kh = gl_WorkGroupID.y;
    // The query tiles that see a key of this tile: from its first key's, until one starts after its last key.
    uint last_key = min(j0 + BLOCK, p.rows) - 1u;
    LOAD_KEYS(sk, k_data, j0, kh);
    LOAD_KEYS(sv, v_data, j0, kh);
    float dk[ACCUMULATORS], dv[ACCUMULATORS];
    for (uint i = 0u; i < ACCUMULATORS; i++) { dk[i] = 0.0; dv[i] = 0.0; }
    for (uint first = j0 * group_size(); first < items() && attention_tile_sees(item_row(first), last_key, p.sequence); first += BLOCK) {
        barrier();
        load_queries(first, kh);
        barrier();
        probabilities(first, j0);
        barrier();
        ACCUMULATE(dk, SCORE_GRADIENT_BY_KEY, sq);
        ACCUMULATE(dv, PROBABILITY_BY_KEY, sg);
    }
    for (uint a = 0u; a < ROWS_PER; a++) {
        for (uint b = 0u; b < COLUMNS_PER; b++) {
            uint row = j0 + ar + ROW_GROUPS * a, c = ac + COLUMN_GROUPS * b;
            if (row < p.rows && c < p.head_dim) {
                uint at = (row * p.kv_heads + kh) * p.head_dim + c;
                dk_data[at] = C_FROM_F32(dk[a * COLUMNS_PER + b]);
                dv_data[at] = C_FROM_F32(dv[a * COLUMNS_PER + b]);
            }
        }
    }
}
#endif
#endif
