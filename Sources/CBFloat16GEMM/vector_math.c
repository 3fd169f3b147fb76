#include "vector_math.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

int lowrank_vector_math_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

/* Lanes [0, n) of p, the others `fill`. */
AVX512 static inline __m512 load(const float *p, long n, float fill) {
    return n >= 16 ? _mm512_loadu_ps(p) : _mm512_mask_loadu_ps(_mm512_set1_ps(fill), (__mmask16)((1u << n) - 1u), p);
}

AVX512 static inline void store(float *p, long n, __m512 v) {
    if (n >= 16) _mm512_storeu_ps(p, v); else _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
}

/* VectorMath.exp, operation for operation. */
AVX512 static inline __m512 vexp(__m512 x) {
    const __m512 rounding = _mm512_set1_ps(12582912.0f);
    __m512 clamped = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(89), _CMP_GT_OQ), x, _mm512_set1_ps(89));
    clamped = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-104), _CMP_LT_OQ), clamped, _mm512_set1_ps(-104));
    const __m512 biased = _mm512_add_ps(_mm512_mul_ps(clamped, _mm512_set1_ps(1.44269504088896341f)), rounding);
    const __m512 n = _mm512_sub_ps(biased, rounding);
    const __m512 r = _mm512_sub_ps(_mm512_sub_ps(clamped, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f))),
                                   _mm512_mul_ps(n, _mm512_set1_ps(-2.12194440e-4f)));
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), _mm512_set1_ps(1));
    const __m512i k = _mm512_sub_epi32(_mm512_castps_si512(biased), _mm512_set1_epi32(0x4B400000));
    const __m512i half = _mm512_srai_epi32(k, 1);
    const __m512 low = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, _mm512_set1_epi32(127)), 23));
    const __m512 high = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(k, half), _mm512_set1_epi32(127)), 23));
    const __m512 result = _mm512_mul_ps(_mm512_mul_ps(p, low), high);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), result, x);
}

/* 1 / (1 + e^−x). */
AVX512 static inline __m512 vsigmoid(__m512 x) {
    const __m512 one = _mm512_set1_ps(1);
    const __m512 negated = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
    return _mm512_div_ps(one, _mm512_add_ps(one, vexp(negated)));
}

AVX512 void lowrank_silu_gated(long count, const float *gate, const float *up, float *out) {
    for (long i = 0; i < count; i += 16) {
        const long n = count - i;
        const __m512 x = load(gate + i, n, 0);
        store(out + i, n, _mm512_mul_ps(_mm512_mul_ps(x, vsigmoid(x)), load(up + i, n, 0)));
    }
}

AVX512 void lowrank_silu_gated_backward(long count, const float *gate, const float *up, const float *g, float *d_gate, float *d_up) {
    const __m512 one = _mm512_set1_ps(1);
    for (long i = 0; i < count; i += 16) {
        const long n = count - i;
        const __m512 x = load(gate + i, n, 0), u = load(up + i, n, 0), gv = load(g + i, n, 0);
        const __m512 s = vsigmoid(x);
        const __m512 slope = _mm512_mul_ps(s, _mm512_add_ps(one, _mm512_mul_ps(x, _mm512_sub_ps(one, s))));
        store(d_gate + i, n, _mm512_mul_ps(_mm512_mul_ps(gv, u), slope));
        store(d_up + i, n, _mm512_mul_ps(gv, _mm512_mul_ps(x, s)));
    }
}

AVX512 void lowrank_exp_scaled(long count, const float *logits, float shift, float factor, float *out) {
    const __m512 vs = _mm512_set1_ps(shift), vf = _mm512_set1_ps(factor);
    for (long i = 0; i < count; i += 16) {
        const long n = count - i;
        store(out + i, n, _mm512_mul_ps(vexp(_mm512_sub_ps(load(logits + i, n, 0), vs)), vf));
    }
}

AVX512 void lowrank_sum_exp(long count, const float *p, float shift, float *out, double sums[16]) {
    const __m512 vs = _mm512_set1_ps(shift);
    __m512d low = _mm512_loadu_pd(sums), high = _mm512_loadu_pd(sums + 8);
    for (long i = 0; i < count; i += 16) {
        const long n = count - i;
        // Padding of −inf adds e^−inf = 0, as the Swift loop's does.
        const __m512 e = vexp(_mm512_sub_ps(load(p + i, n, -__builtin_inff()), vs));
        low = _mm512_add_pd(low, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        high = _mm512_add_pd(high, _mm512_cvtps_pd(_mm256_castsi256_ps(_mm512_castsi512_si256(_mm512_shuffle_i64x2(_mm512_castps_si512(e), _mm512_castps_si512(e), 0xEE)))));
        if (out) store(out + i, n, e);
    }
    _mm512_storeu_pd(sums, low);
    _mm512_storeu_pd(sums + 8, high);
}
