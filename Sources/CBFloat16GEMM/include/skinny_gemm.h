#ifndef LOWRANK_SKINNY_GEMM_H
#define LOWRANK_SKINNY_GEMM_H

/* f32 products with one side of at most `lowrank_skinny_max_width()` (LoRA's rank-r products) on
 * AVX-512F: the narrow operand is read from cache a row of 16-float vectors at a time, the long
 * one streamed once as it is stored, never packed; every product and sum in f32, each element of
 * C summed over k in order. Row-major throughout; beta = 0 never reads C. */

/* Whether this CPU and OS run AVX-512F instructions, which the product functions need. */
int lowrank_skinny_supported(void);

/* The widest narrow side (n of `lowrank_skinny_narrow`, k of `lowrank_skinny_update`). */
int lowrank_skinny_max_width(void);

/* C[m, n] = alpha·op(A)·B + beta·C for n ≤ max width: A is [m, k] with lda, or [k, m] with lda
 * when transposed; B is [k, n] with ldb. */
void lowrank_skinny_narrow(int transpose_a, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                           float beta, float *c, int ldc);

/* C[m, n] = alpha·A·B + beta·C for k ≤ max width: A is [m, k] with lda, B is [k, n] with ldb. */
void lowrank_skinny_update(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                           float *c, int ldc);

#endif
