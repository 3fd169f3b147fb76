#include "bf16_gemm.h"

#include <immintrin.h>
#include <string.h>

/* Register tile MR×NR (24 of the 32 zmm registers accumulate), KCP pairs of k per packed block
 * (a B micro-panel of KCP·NR pairs, 128 KiB, reused by MC_STRIPS strips of A, 48 KiB each, from
 * Zen 4's 1 MiB L2), NC columns of B packed at a time: a packed block of 512 KiB. A deep block
 * reads and writes each tile of C fewer times: on one core at M = 512 and the step's 10 shapes
 * (TinyLlama's layers and LM head, x·Wᵀ and G·W), best of 4 rounds under load, 212 GFLOP/s on
 * average against 205 with KCP = 256, NC = 512 and 12 strips; 193 before the tile prefetched C and
 * A, and 172–181 with KCP = 128 and NC = 1536. VDPBF16PS' peak is 229, and a tile on data in L1 reaches it. */
enum { MR = 12, NR = 32, KCP = 1024, MC_STRIPS = 8, NC = 128, PREFETCH_PAIRS = 4 };

int lowrank_bf16_gemm_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
}

static int strips(int m) { return (m + MR - 1) / MR; }
static int pairs(int k) { return (k + 1) / 2; }

size_t lowrank_bf16_packed_a_count(int m, int k) { return (size_t)strips(m) * MR * (size_t)pairs(k); }
size_t lowrank_bf16_workspace_count(void) { return (size_t)KCP * NC; }
int lowrank_bf16_strip_rows(void) { return MR; }
int lowrank_bf16_tile_columns(void) { return NR; }

/* Round to nearest, ties to even, as PyTorch's float -> bfloat16; a NaN stays a (quiet) NaN. */
static inline uint32_t bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

/* The 16×16 block of 32-bit elements in r transposed in place. */
__attribute__((target("avx512f")))
static inline void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8) {
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

/* Sixteen floats rounded as `bf16` does, each in the low half of its 32-bit lane. */
__attribute__((target("avx512f")))
static inline __m512i bf16x16(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i even = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), even)), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

/* Pairs [p, last) of strip s of the block from pair p0 into `out`, one element at a time. */
static void pack_a_scalar(int transpose_a, int m, int k, const float *a, int lda, int s, int p0, int p, int last, uint32_t *out) {
    for (int r = 0; r < MR; r++) {
        const int row = s * MR + r;
        for (int q = p; q < last; q++) {
            const int k0 = 2 * (p0 + q);
            uint32_t lo = 0, hi = 0;
            if (row < m) {
                if (transpose_a) {
                    lo = bf16(a[(size_t)k0 * lda + row]);
                    if (k0 + 1 < k) hi = bf16(a[(size_t)(k0 + 1) * lda + row]);
                } else {
                    const float *x = a + (size_t)row * lda + k0;
                    lo = bf16(x[0]);
                    if (k0 + 1 < k) hi = bf16(x[1]);
                }
            }
            out[(size_t)q * MR + r] = lo | hi << 16;
        }
    }
}

/* A transposed ([k, m]): a strip's MR rows are adjacent in each row of A, so each pair is two
 * masked loads. A plain A: 16 pairs of each of the MR rows converted along the row, then
 * transposed in registers into 16 pairs of MR rows; the tails go one element at a time. */
__attribute__((target("avx512f,avx512bw")))
void lowrank_bf16_pack_a(int transpose_a, int m, int k, const float *a, int lda, int first, int last, uint32_t *packed) {
    const int kp = pairs(k);
    const size_t padded = (size_t)strips(m) * MR;
    const __mmask16 strip = (__mmask16)((1u << MR) - 1u);
    for (int p0 = 0; p0 < kp; p0 += KCP) {
        const int count = kp - p0 < KCP ? kp - p0 : KCP;
        for (int s = first; s < last; s++) {
            uint32_t *out = packed + (size_t)p0 * padded + (size_t)s * count * MR;
            const int valid = m - s * MR < MR ? m - s * MR : MR;
            if (transpose_a) {
                const __mmask16 rows = (__mmask16)((1u << valid) - 1u);
                for (int p = 0; p < count; p++) {
                    const int k0 = 2 * (p0 + p);
                    const __m512i lo = bf16x16(_mm512_maskz_loadu_ps(rows, a + (size_t)k0 * lda + s * MR));
                    const __m512i hi = k0 + 1 < k ? bf16x16(_mm512_maskz_loadu_ps(rows, a + (size_t)(k0 + 1) * lda + s * MR))
                                                  : _mm512_setzero_si512();
                    _mm512_mask_storeu_epi32(out + (size_t)p * MR, strip, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
                }
                continue;
            }
            int p = 0;
            if (valid == MR) {
                for (; p + 16 <= count && 2 * (p0 + p + 16) <= k; p += 16) {
                    __m512i r[16];
                    for (int i = 0; i < MR; i++) {
                        const float *x = a + (size_t)(s * MR + i) * lda + 2 * (p0 + p);
                        const __m256i lo = _mm512_cvtepi32_epi16(bf16x16(_mm512_loadu_ps(x)));
                        const __m256i hi = _mm512_cvtepi32_epi16(bf16x16(_mm512_loadu_ps(x + 16)));
                        r[i] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                    }
                    for (int i = MR; i < 16; i++) r[i] = _mm512_setzero_si512();
                    transpose16(r);
                    for (int i = 0; i < 16; i++) _mm512_mask_storeu_epi32(out + (size_t)(p + i) * MR, strip, r[i]);
                }
            }
            pack_a_scalar(transpose_a, m, k, a, lda, s, p0, p, count, out);
        }
    }
}

/* One packed pair: rows k0 and k0 + 1 of op(B) at `column`, zero past n and k. */
static inline uint32_t pair_of_b(int transpose_b, int n, int k, const uint16_t *b, int ldb, int column, int k0) {
    if (column >= n || k0 >= k) return 0;
    if (transpose_b) {
        const uint16_t *w = b + (size_t)column * ldb;
        return (uint32_t)w[k0] | (k0 + 1 < k ? (uint32_t)w[k0 + 1] << 16 : 0);
    }
    return (uint32_t)b[(size_t)k0 * ldb + column] | (k0 + 1 < k ? (uint32_t)b[(size_t)(k0 + 1) * ldb + column] << 16 : 0);
}

/* Columns [j0, j0 + nc) and pairs [p0, p0 + count) of op(B) into NR-column micro-panels, each
 * `count` rows of NR pairs, zero past n and k. Whole 16×16 blocks of a transposed B (W [n, k],
 * pairs adjacent in memory) go through register transposes. A plain B's whole panels interleave
 * two rows read along all nc columns at once, the rows PREFETCH_PAIRS pairs on requested ahead:
 * panel by panel, each row's 64-byte pieces were read in separate passes and waited on memory
 * (packing took 30% longer at M = 512 and TinyLlama's shapes). Partial panels two rows a panel. */
__attribute__((target("avx512f,avx512bw")))
static void pack_b(int transpose_b, int n, int k, const uint16_t *b, int ldb, int j0, int nc, int p0, int count,
                   uint32_t *out) {
    const int whole_panels = transpose_b ? 0 : (nc < n - j0 ? nc : n - j0) / NR;
    const int whole_pairs = transpose_b ? 0 : (count < (k - 2 * p0) / 2 ? count : (k - 2 * p0) / 2);
    for (int p = 0; p < whole_pairs; p++) {
        const uint16_t *even = b + (size_t)(2 * (p0 + p)) * ldb + j0, *odd = even + ldb;
        if (p + PREFETCH_PAIRS < whole_pairs)
            for (int c = 0; c < whole_panels * NR; c += 32) {
                _mm_prefetch((const char *)(even + (size_t)2 * PREFETCH_PAIRS * ldb + c), _MM_HINT_T0);
                _mm_prefetch((const char *)(odd + (size_t)2 * PREFETCH_PAIRS * ldb + c), _MM_HINT_T0);
            }
        for (int j = 0; j < whole_panels; j++) {
            uint32_t *row = out + (size_t)j * count * NR + (size_t)p * NR;
            for (int c = 0; c < NR; c++) row[c] = (uint32_t)even[j * NR + c] | (uint32_t)odd[j * NR + c] << 16;
        }
    }
    for (int j = 0; j < nc; j += NR) {
        uint32_t *panel = out + (size_t)(j / NR) * count * NR;
        const int valid = (nc - j < NR ? nc - j : NR) < n - j0 - j ? (nc - j < NR ? nc - j : NR) : n - j0 - j;
        for (int g = 0; g < NR; g += 16) {
            for (int p = 0; p < count; p += 16) {
                const int whole = g + 16 <= valid && p + 16 <= count && 2 * (p0 + p + 16) <= k;
                if (whole && j / NR < whole_panels) continue;
                if (whole && transpose_b) {
                    __m512i r[16];
                    for (int i = 0; i < 16; i++)
                        r[i] = _mm512_loadu_si512(b + (size_t)(j0 + j + g + i) * ldb + 2 * (p0 + p));
                    transpose16(r);
                    for (int i = 0; i < 16; i++) _mm512_storeu_si512(panel + (size_t)(p + i) * NR + g, r[i]);
                } else if (whole) {
                    for (int i = 0; i < 16; i++) {
                        const uint16_t *even = b + (size_t)(2 * (p0 + p + i)) * ldb + j0 + j + g, *odd = even + ldb;
                        uint32_t *row = panel + (size_t)(p + i) * NR + g;
                        for (int c = 0; c < 16; c++) row[c] = (uint32_t)even[c] | (uint32_t)odd[c] << 16;
                    }
                } else {
                    const int last = p + 16 < count ? p + 16 : count;
                    for (int q = p; q < last; q++)
                        for (int c = g; c < g + 16; c++)
                            panel[(size_t)q * NR + c] =
                                c < valid ? pair_of_b(transpose_b, n, k, b, ldb, j0 + j + c, 2 * (p0 + q)) : 0;
                }
            }
        }
    }
}

/* C[mr, nr] = alpha·(a·b) + beta·C for one strip and one micro-panel of `count` pairs. The tile's
 * rows of C are requested for writing as it starts, and the strip `next_a` (the next tile's A),
 * a line a pair, into L2: C's rows (2 lines each, a row of C apart, touched once per block of
 * pairs) and a strip's first pass otherwise missed in L2 (one core at M = 512 and the step's
 * shapes, best of 3 rounds under load: 193 → 207 GFLOP/s on average over its 10 products). */
__attribute__((target("avx512f,avx512bf16")))
static void tile(int count, const uint32_t *a, const uint32_t *b, float *c, int ldc, int mr, int nr, float alpha, float beta,
                 const uint32_t *next_a) {
    __m512 acc[MR][2];
    for (int r = 0; r < mr; r++) {
        __builtin_prefetch(c + (size_t)r * ldc, 1, 3);
        if (nr > 16) __builtin_prefetch(c + (size_t)r * ldc + 16, 1, 3);
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < count; p++) {
        _mm_prefetch((const char *)(next_a + (size_t)p * MR), _MM_HINT_T1);
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * NR);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * NR + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            const __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[(size_t)p * MR + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int left = nr < 16 ? nr : 16, right = nr > 16 ? nr - 16 : 0;
    const __mmask16 masks[2] = {(__mmask16)((1u << left) - 1u), (__mmask16)((1u << right) - 1u)};
    // Unrolled over all MR rows, so that acc stays in registers (a loop to mr indexed it in memory).
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
#pragma clang loop unroll(full)
        for (int h = 0; h < 2; h++) {
            float *out = c + (size_t)r * ldc + 16 * h;
            __m512 v = _mm512_mul_ps(acc[r][h], va);
            if (r >= mr) continue;
            if (beta != 0) v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(masks[h], out), vb, v);
            _mm512_mask_storeu_ps(out, masks[h], v);
        }
    }
}

void lowrank_bf16_gemm_columns(int transpose_b, int m, int n, int k, float alpha, const uint32_t *packed_a,
                               const uint16_t *b, int ldb, float beta, float *c, int ldc, uint32_t *workspace) {
    const int kp = pairs(k), ms = strips(m);
    const size_t padded = (size_t)ms * MR;
    for (int j0 = 0; j0 < n; j0 += NC) {
        const int nc = n - j0 < NC ? n - j0 : NC;
        for (int p0 = 0; p0 < kp; p0 += KCP) {
            const int count = kp - p0 < KCP ? kp - p0 : KCP;
            const float blockBeta = p0 == 0 ? beta : 1;
            pack_b(transpose_b, n, k, b, ldb, j0, nc, p0, count, workspace);
            const uint32_t *block = packed_a + (size_t)p0 * padded;
            for (int s0 = 0; s0 < ms; s0 += MC_STRIPS) {
                const int s1 = ms - s0 < MC_STRIPS ? ms : s0 + MC_STRIPS;
                for (int j = 0; j < nc; j += NR) {
                    const uint32_t *panel = workspace + (size_t)(j / NR) * count * NR;
                    const int nr = nc - j < NR ? nc - j : NR;
                    for (int s = s0; s < s1; s++) {
                        const int mr = m - s * MR < MR ? m - s * MR : MR;
                        tile(count, block + (size_t)s * count * MR, panel, c + (size_t)s * MR * ldc + j0 + j, ldc, mr, nr,
                             alpha, blockBeta, block + (size_t)(s + 1 < s1 ? s + 1 : s0) * count * MR);
                    }
                }
            }
        }
    }
}
