#include "skinny_gemm.h"

#include <immintrin.h>

/* A register tile is ROWS rows of C by VECTORS 16-float vectors: at most 24 of the 32 zmm
 * registers accumulate, the rest hold the narrow operand's vectors and a broadcast. */
enum { MAX_WIDTH = 64, MAX_VECTORS = MAX_WIDTH / 16, MAX_ROWS = 16, UPDATE_ROWS = 6 };

int lowrank_skinny_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

int lowrank_skinny_max_width(void) { return MAX_WIDTH; }

/* Lanes of vector v that lie inside `width` columns. */
static inline __mmask16 lanes(int v, int width) {
    const int left = width - 16 * v;
    return left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
}

/* ROWS rows of C[·, n] (n ≤ 16·VECTORS) over all k: per k one row of B in registers, one broadcast
 * of op(A) per row. Instantiated with constant ROWS and VECTORS so that acc stays in registers. */
__attribute__((target("avx512f"), always_inline))
static inline void narrow_tile(const int ROWS, const int VECTORS, int transpose_a, int n, int k, float alpha, const float *a,
                               int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    __mmask16 mask[MAX_VECTORS];
    for (int v = 0; v < MAX_VECTORS; v++) mask[v] = lanes(v, n);
    __m512 acc[MAX_ROWS][MAX_VECTORS];
    _Pragma("clang loop unroll(full)") for (int r = 0; r < ROWS; r++)
        _Pragma("clang loop unroll(full)") for (int v = 0; v < VECTORS; v++) acc[r][v] = _mm512_setzero_ps();
    for (int p = 0; p < k; p++) {
        __m512 row[MAX_VECTORS];
        // The next tile's line of a transposed A, into L2 (56 against 115 GFLOP/s at m = 5632 without).
        if (transpose_a) _mm_prefetch((const char *)(a + (size_t)p * lda + 16), _MM_HINT_T1);
        _Pragma("clang loop unroll(full)") for (int v = 0; v < VECTORS; v++)
            row[v] = _mm512_maskz_loadu_ps(mask[v], b + (size_t)p * ldb + 16 * v);
        _Pragma("clang loop unroll(full)") for (int r = 0; r < ROWS; r++) {
            const __m512 x = _mm512_set1_ps(transpose_a ? a[(size_t)p * lda + r] : a[(size_t)r * lda + p]);
            _Pragma("clang loop unroll(full)") for (int v = 0; v < VECTORS; v++) acc[r][v] = _mm512_fmadd_ps(x, row[v], acc[r][v]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    _Pragma("clang loop unroll(full)") for (int r = 0; r < ROWS; r++) {
        _Pragma("clang loop unroll(full)") for (int v = 0; v < VECTORS; v++) {
            float *out = c + (size_t)r * ldc + 16 * v;
            __m512 x = _mm512_mul_ps(acc[r][v], va);
            if (beta != 0) x = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask[v], out), vb, x);
            _mm512_mask_storeu_ps(out, mask[v], x);
        }
    }
}

/* All m rows in tiles of ROWS, the last rows one at a time. */
#define NARROW_ROWS(NAME, TRANSPOSED, ROWS, VECTORS)                                                     \
    __attribute__((target("avx512f"))) static void NAME(int m, int n, int k, float alpha, const float *a, int lda,      \
                                                        const float *b, int ldb, float beta, float *c, int ldc) {     \
        int i = 0;                                                                                       \
        for (; i + ROWS <= m; i += ROWS)                                                                 \
            narrow_tile(ROWS, VECTORS, TRANSPOSED, n, k, alpha, TRANSPOSED ? a + i : a + (size_t)i * lda, lda, b, ldb, beta, \
                        c + (size_t)i * ldc, ldc);                                                       \
        for (; i < m; i++)                                                                               \
            narrow_tile(1, VECTORS, TRANSPOSED, n, k, alpha, TRANSPOSED ? a + i : a + (size_t)i * lda, lda, b, ldb, beta,   \
                        c + (size_t)i * ldc, ldc);                                                       \
    }
NARROW_ROWS(plain_1, 0, 8, 1)
NARROW_ROWS(plain_2, 0, 8, 2)
NARROW_ROWS(plain_3, 0, 8, 3)
NARROW_ROWS(plain_4, 0, 6, 4)
NARROW_ROWS(transposed, 1, 16, 1)

/* A transposed ([k, m]) is read a 64-byte line of 16 rows of C per k, the whole line by one tile:
 * narrower tiles left each line to several tiles, after the line had left L1 (20–50% slower at
 * m = 5632), and wider ones do not fit, so C's columns go 16 at a time, one pass over A each. Rows
 * of a plain A are 8 KiB apart at d = 2048 and share an L1 set: more than 8 rows a tile thrash its
 * 8 ways (85 against 117 GFLOP/s at 12 rows). */
typedef void (*narrow_rows)(int, int, int, float, const float *, int, const float *, int, float, float *, int);

void lowrank_skinny_narrow(int transpose_a, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                           float beta, float *c, int ldc) {
    if (transpose_a) {
        for (int j = 0; j < n; j += 16) transposed(m, n - j < 16 ? n - j : 16, k, alpha, a, lda, b + j, ldb, beta, c + j, ldc);
        return;
    }
    static const narrow_rows kernels[MAX_VECTORS] = {plain_1, plain_2, plain_3, plain_4};
    kernels[(n + 15) / 16 - 1](m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* A rank-k update is narrow tiles of 64 columns of C (a row of B in four vectors, one broadcast of
 * A per row and k). Blocks of UPDATE_COLUMNS columns outer, so that their k rows of B (128 KiB at k = 64) stay in L2
 * while every row of A and C passes: rows outer streamed a B of 1.4 MiB (k = 64, n = 5632) from L3
 * for each tile, at half sgemm's rate. */
enum { UPDATE_COLUMNS = 512 };

__attribute__((target("avx512f")))
void lowrank_skinny_update(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                           float *c, int ldc) {
    for (int j0 = 0; j0 < n; j0 += UPDATE_COLUMNS) {
        const int j1 = n - j0 < UPDATE_COLUMNS ? n : j0 + UPDATE_COLUMNS;
        int i = 0;
        for (; i + UPDATE_ROWS <= m; i += UPDATE_ROWS)
            for (int j = j0; j < j1; j += MAX_WIDTH)
                narrow_tile(UPDATE_ROWS, MAX_VECTORS, 0, j1 - j, k, alpha, a + (size_t)i * lda, lda, b + j, ldb, beta, c + (size_t)i * ldc + j, ldc);
        for (; i < m; i++)
            for (int j = j0; j < j1; j += MAX_WIDTH)
                narrow_tile(1, MAX_VECTORS, 0, j1 - j, k, alpha, a + (size_t)i * lda, lda, b + j, ldb, beta, c + (size_t)i * ldc + j, ldc);
    }
}
