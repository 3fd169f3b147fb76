#ifndef LOWRANK_VECTOR_MATH_H
#define LOWRANK_VECTOR_MATH_H

/* The CPU backend's transcendental elementwise loops on AVX-512F, with the very bits of its Swift
 * loops (`Sources/LowRankCPU/FloatVector.swift`): the same operations in the same order, lane by
 * lane (16 lanes, a partial last vector padded as the Swift one pads it), no fused multiply-adds.
 * Call them only where `lowrank_vector_math_supported()` says they run. */

/* Whether this CPU and OS run AVX-512F instructions. */
int lowrank_vector_math_supported(void);

/* out[i] = silu(gate[i])·up[i], silu(x) = x·(1 / (1 + e^−x)). */
void lowrank_silu_gated(long count, const float *gate, const float *up, float *out);

/* d_gate[i] = g·up·silu′(gate), d_up[i] = g·silu(gate); either output may alias any input. */
void lowrank_silu_gated_backward(long count, const float *gate, const float *up, const float *g, float *d_gate, float *d_up);

/* out[i] = e^(logits[i] − shift)·factor (out may be logits). */
void lowrank_exp_scaled(long count, const float *logits, float shift, float factor, float *out);

/* Σ e^(p[i] − shift) into 16 f64 lane sums (added to `sums`), lane j taking elements i ≡ j (mod 16);
 * with out, each exponential is written there too (out may be p). */
void lowrank_sum_exp(long count, const float *p, float shift, float *out, double sums[16]);

#endif
