/* Vector functions for litesr's fp32 kernels (AVX-512). */
#ifndef LITESR_VECTOR_MATH_H
#define LITESR_VECTOR_MATH_H

#include <immintrin.h>
#include <stdint.h>

/* The first count lanes of a vector (all 16 from 16 on). */
static inline __mmask16 lanes(int64_t count) { return count >= 16 ? 0xffff : (__mmask16)((1u << count) - 1); }

/* exp(x) for x <= 0: 2^t = 2^round(t) · 2^f, f in [-0.5, 0.5], 2^f by its degree-6 Taylor polynomial (relative
   error ~2e-7); clamped at exp(-87), so the result stays a normal number (a masked logit weighs ~1e-38, not ~1e-44). */
static inline __m512 exp_nonpositive(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    __m512 k = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_sub_ps(_mm512_setzero_ps(), k));
    __m512 p = _mm512_set1_ps(1.5403530393381606e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

/* exp(x) for any x, clamped to [-87, 88]. */
static inline __m512 exp_f32(__m512 x) { return exp_nonpositive(_mm512_min_ps(x, _mm512_set1_ps(88.0f))); }

/* 1 / d by one Newton step from the 14-bit reciprocal estimate (relative error ~1e-8, no division), d finite. */
static inline __m512 reciprocal_f32(__m512 d) {
    const __m512 e = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(e, _mm512_fnmadd_ps(d, e, _mm512_set1_ps(2.0f)));
}

/* The logistic sigmoid, 1 / (1 + exp(-x)) (exp clamped at exp(88), so the divisor stays finite). */
static inline __m512 sigmoid_f32(__m512 x) {
    return reciprocal_f32(_mm512_add_ps(_mm512_set1_ps(1.0f), exp_f32(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

/* erf(x) = sign(x) · (1 − erfc(|x|)), erfc(z) = t · exp(−z² + P(t)), t = 1 / (1 + z/2), P the degree-9 Chebyshev
   fit of Numerical Recipes' erfcc (fractional error below 1.2e-7 for every z >= 0). */
static inline __m512 erf_f32(__m512 x) {
    const __m512 z = _mm512_abs_ps(x), one = _mm512_set1_ps(1.0f);
    const __m512 t = reciprocal_f32(_mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), one));
    __m512 p = _mm512_set1_ps(0.17087277f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
    const __m512 erfc = _mm512_mul_ps(t, exp_f32(_mm512_fnmadd_ps(z, z, p)));
    const __m512 r = _mm512_sub_ps(one, erfc);
    const __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), sign));
}

/* The exact GELU, x · (1 + erf(x / √2)) / 2. */
static inline __m512 gelu_f32(__m512 x) {
    const __m512 half_x = _mm512_mul_ps(x, _mm512_set1_ps(0.5f));
    return _mm512_fmadd_ps(half_x, erf_f32(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f))), half_x);
}

#endif
