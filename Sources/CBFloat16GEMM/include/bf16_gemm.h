#ifndef LOWRANK_BF16_GEMM_H
#define LOWRANK_BF16_GEMM_H

#include <stddef.h>
#include <stdint.h>

/* Products of f32 activations with bfloat16 weights on AVX-512 BF16 (VDPBF16PS): A rounded to
 * bfloat16 (to nearest, ties to even) once, packed; B read as it is stored; every sum in f32.
 * This is what PyTorch's CPU build does for a bfloat16 model's linear layers (oneDNN). */

/* Whether this CPU and OS run AVX-512 BF16 instructions, which the packing and product functions need. */
int lowrank_bf16_gemm_supported(void);

/* Elements of 32 bits that `lowrank_bf16_pack_a` writes for an m×k A. */
size_t lowrank_bf16_packed_a_count(int m, int k);

/* Elements of 32 bits of the workspace one `lowrank_bf16_gemm_columns` call packs B into. */
size_t lowrank_bf16_workspace_count(void);

/* Rows of A per strip of the packed layout: threads pack whole strips. */
int lowrank_bf16_strip_rows(void);

/* Columns of C per register tile: threads take multiples of it. */
int lowrank_bf16_tile_columns(void);

/* Strips [first, last) of op(A) (m×k; A is [m, k] with lda, or [k, m] with lda when transposed)
 * rounded to bfloat16 into `packed` (the layout `lowrank_bf16_gemm_columns` reads). */
void lowrank_bf16_pack_a(int transpose_a, int m, int k, const float *a, int lda, int first, int last, uint32_t *packed);

/* C[m, n] = alpha·A·op(B) + beta·C (row-major, ldc) for A packed by `lowrank_bf16_pack_a`; B is
 * bfloat16 [k, n] with ldb, or [n, k] with ldb when transposed. Call it for disjoint column ranges
 * of C (offsetting b and c) from several threads, each with its own workspace. beta = 0 never
 * reads C. */
void lowrank_bf16_gemm_columns(int transpose_b, int m, int n, int k, float alpha, const uint32_t *packed_a,
                               const uint16_t *b, int ldb, float beta, float *c, int ldc, uint32_t *workspace);

#endif
