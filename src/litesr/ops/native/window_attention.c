/* ELAN's window attention, y = softmax(Q·Qᵀ)·V per window, fused for bf16 on AVX-512 BF16 CPUs.
 *
 * The eager path writes each window's n×n scores, runs ATen's/oneDNN's softmax over them (an fp32-accurate exp,
 * ~4 G elements/s here) and reads the map back for A·V. Here a block of 16 query rows is one vector lane each:
 * its scores against every key (vdpbf16ps on Q pairs), the row maxima and sums as vertical max/add over the keys
 * (no horizontal reductions), an exp accurate to ~2e-7 (far under bf16's 4e-3 step) and A·V from the bf16
 * probabilities — all in L1, no map written out. Normalising by the row sum happens on the d outputs, not the n
 * probabilities.
 *
 * Layouts: Q and V are (windows, n, d) with row and window strides in elements (Q and V may be the two halves of
 * one gathered tensor); y is written the same way, or row by row into the rows a table names (its place in the
 * block's output map). n must be a multiple of 16; d at most 64.
 * Arithmetic: scores and A·V accumulate bf16 products in fp32 (as oneDNN's bf16 bmm does); the probabilities are
 * rounded to bf16 before A·V (as the eager bf16 path rounds the softmax output); y is rounded to bf16 once.
 *
 * Built at run time by litesr.ops.native with the machine's C compiler; the caller checks the CPU and the result.
 * With -mavx512bf16 (__AVX512BF16__) every kernel is built; without it (an AVX-512 CPU without BF16) only the fp32
 * one, biased_window_attention_f32, which needs AVX-512F only and also runs ELAN's fp32 attention.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "vector_math.h"

#define MAX_D 64
#define LANES 16

typedef uint16_t bf16;

#ifdef __AVX512BF16__ /* the bf16 kernels: built where the CPU has AVX-512 BF16 (-mavx512bf16) */
static inline __m512 dp(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

static inline __m512i bcast(const uint32_t *p) { return _mm512_set1_epi32((int)*p); }

/* A·V for one block of 16 rows and C output channels [c0, c0 + C): acc[c] lane l = sum_j P[l][j] V[j][c0 + c]. */
#define AV_BLOCK(C)                                                                                          \
    static void av_##C(const __m512i *pp, const uint32_t *vt, int64_t pairs, int64_t dv, int64_t c0,        \
                       float *out) {                                                                        \
        __m512 acc[C];                                                                                      \
        _Pragma("GCC unroll 32")                                                                            \
        for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();                                           \
        for (int64_t jp = 0; jp < pairs; jp++) {                                                            \
            __m512i p = _mm512_load_si512(pp + jp);                                                         \
            const uint32_t *v = vt + jp * dv + c0;                                                          \
            _Pragma("GCC unroll 32")                                                                        \
            for (int c = 0; c < C; c++) acc[c] = dp(acc[c], p, bcast(v + c));                               \
        }                                                                                                   \
        _Pragma("GCC unroll 32")                                                                            \
        for (int c = 0; c < C; c++) _mm512_store_ps(out + (c0 + c) * LANES, acc[c]);                        \
    }
AV_BLOCK(4)
AV_BLOCK(8)
AV_BLOCK(12)
AV_BLOCK(16)
AV_BLOCK(20)

static void av(const __m512i *pp, const uint32_t *vt, int64_t pairs, int64_t dv, float *out) {
    int64_t c0 = 0;
    for (; c0 + 20 <= dv; c0 += 20) av_20(pp, vt, pairs, dv, c0, out);
    switch (dv - c0) {
        case 16: av_16(pp, vt, pairs, dv, c0, out); break;
        case 12: av_12(pp, vt, pairs, dv, c0, out); break;
        case 8: av_8(pp, vt, pairs, dv, c0, out); break;
        case 4: av_4(pp, vt, pairs, dv, c0, out); break;
        default: break;
    }
}

typedef struct {
    __m512i *qp;   /* (n/16, dpairs) vectors: lane l = (Q[16b+l][2p], Q[16b+l][2p+1]) */
    uint32_t *qj;  /* (n, dpairs): (Q[j][2p], Q[j][2p+1]) */
    uint32_t *vt;  /* (n/2, dv): (V[2jp][c], V[2jp+1][c]) */
    __m512 *s;     /* (n) score vectors of one row block */
    __m512i *pp;   /* (n/2) probability pair vectors of one row block */
    float *out;    /* (dv, 16) */
} scratch;

static void one_window(const bf16 *q, int64_t qr, const bf16 *v, int64_t vr, bf16 *y, int64_t yr,
                       const int32_t *out_rows, int64_t n,
                       int64_t d, scratch *w) {
    const int64_t dpairs = (d + 1) / 2, dv = (d + 3) / 4 * 4, blocks = n / LANES, pairs = n / 2;
    for (int64_t j = 0; j < n; j++)
        for (int64_t p = 0; p < dpairs; p++) {
            uint32_t lo = q[j * qr + 2 * p], hi = 2 * p + 1 < d ? q[j * qr + 2 * p + 1] : 0;
            w->qj[j * dpairs + p] = lo | hi << 16;
        }
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t p = 0; p < dpairs; p++) {
            uint32_t lanes[LANES];
            for (int l = 0; l < LANES; l++) lanes[l] = w->qj[(b * LANES + l) * dpairs + p];
            w->qp[b * dpairs + p] = _mm512_loadu_si512(lanes);
        }
    for (int64_t jp = 0; jp < pairs; jp++)
        for (int64_t c = 0; c < dv; c++) {
            uint32_t lo = c < d ? v[2 * jp * vr + c] : 0, hi = c < d ? v[(2 * jp + 1) * vr + c] : 0;
            w->vt[jp * dv + c] = lo | hi << 16;
        }
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23,
                                                7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t b = 0; b < blocks; b++) {
        const __m512i *a = w->qp + b * dpairs;
        __m512 m = _mm512_set1_ps(-INFINITY);
        for (int64_t j0 = 0; j0 < n; j0 += LANES) {
            __m512 acc[LANES];
            for (int t = 0; t < LANES; t++) acc[t] = _mm512_setzero_ps();
            for (int64_t p = 0; p < dpairs; p++) {
                __m512i ap = _mm512_load_si512(a + p);
                const uint32_t *k = w->qj + j0 * dpairs + p;
                for (int t = 0; t < LANES; t++) acc[t] = dp(acc[t], ap, bcast(k + t * dpairs));
            }
            for (int t = 0; t < LANES; t++) {
                w->s[j0 + t] = acc[t];
                m = _mm512_max_ps(m, acc[t]);
            }
        }
        __m512 sum = _mm512_setzero_ps();
        for (int64_t jp = 0; jp < pairs; jp++) {
            __m512 e0 = exp_nonpositive(_mm512_sub_ps(w->s[2 * jp], m));
            __m512 e1 = exp_nonpositive(_mm512_sub_ps(w->s[2 * jp + 1], m));
            sum = _mm512_add_ps(sum, _mm512_add_ps(e0, e1));
            /* cvtne2ps: words 0-15 from the second operand, 16-31 from the first; interleave to (e0, e1) pairs */
            __m512i both = (__m512i)_mm512_cvtne2ps_pbh(e1, e0);
            w->pp[jp] = _mm512_permutexvar_epi16(interleave, both);
        }
        av(w->pp, w->vt, pairs, dv, w->out);
        const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
        bf16 cols[MAX_D][LANES];
        for (int64_t c = 0; c < d; c++)
            _mm256_storeu_si256((__m256i *)cols[c],
                                (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_load_ps(w->out + c * LANES), inv)));
        for (int l = 0; l < LANES; l++) {
            bf16 *row = y + (out_rows ? out_rows[b * LANES + l] : b * LANES + l) * yr;
            for (int64_t c = 0; c < d; c++) row[c] = cols[c][l];
        }
    }
}

/* With out_rows NULL, y is (windows, n, d) with the given strides; else window i's row t is written to row
   out_rows[i·n + t] (row stride y_row_stride) of y: straight into its place in a (B·H·W, C) map, no scatter after.
   Returns 0, or -1 if n or d is out of range or scratch memory could not be had. */
int window_attention_bf16(const bf16 *q, int64_t q_window_stride, int64_t q_row_stride, const bf16 *v,
                          int64_t v_window_stride, int64_t v_row_stride, bf16 *y, int64_t y_window_stride,
                          int64_t y_row_stride, const int32_t *out_rows, int64_t windows, int64_t n, int64_t d,
                          int threads) {
    if (n <= 0 || n % LANES || d <= 0 || d > MAX_D) return -1;
    const int64_t dpairs = (d + 1) / 2, dv = (d + 3) / 4 * 4;
    const size_t sizes[6] = {(size_t)(n / LANES * dpairs) * 64, (size_t)(n * dpairs) * 4, (size_t)(n / 2 * dv) * 4,
                             (size_t)n * 64, (size_t)(n / 2) * 64, (size_t)dv * LANES * 4};
    size_t total = 0;
    for (int i = 0; i < 6; i++) total += (sizes[i] + 63) / 64 * 64;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        char *mem = aligned_alloc(64, total);
        scratch w;
        if (mem) {
            char *at = mem;
            void **slots[6] = {(void **)&w.qp, (void **)&w.qj, (void **)&w.vt, (void **)&w.s, (void **)&w.pp,
                               (void **)&w.out};
            for (int i = 0; i < 6; i++) {
                *slots[i] = at;
                at += (sizes[i] + 63) / 64 * 64;
            }
        }
        failed = !mem;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < windows; i++)
            if (mem)
                one_window(q + i * q_window_stride, q_row_stride, v + i * v_window_stride, v_row_stride,
                           out_rows ? y : y + i * y_window_stride, y_row_stride, out_rows ? out_rows + i * n : NULL,
                           n, d, &w);
        free(mem);
    }
    return failed ? -1 : 0;
}

#endif /* __AVX512BF16__ */

/* ---------------------------------------------------------------------------------------------------------------
 * Swin-type window attention in fp32: y = softmax(Q·Kᵀ + T)·V per window and head, T the additive term of the
 * window's label pattern (relative position bias, plus the shifted-window mask where the window straddles the
 * roll's seam). Q is already scaled. As above, 16 query rows ride in the lanes of a vector; the products are fp32
 * FMAs (accumulated in another order than a BLAS GEMM: ~1e-7 relative), the exp the one above.
 *
 * Layouts: element (w, h, i, c) of Q is q[w·qs[0] + h·qs[1] + i·qs[2] + c] (likewise K, V with their strides; the
 * columns are unit-stride), of y y[w·ys[0] + h·ys[1] + i·ys[2] + c]. terms_t holds, per pattern and head, Tᵀ: the
 * (j, i) element is T[i][j], so the 16 query rows of one key are one vector load. pattern[w] picks window w's term.
 */


/* A·V for one block of 16 rows, channels [c0, c0 + C): acc[c] lane l = sum_j P[l][j] V[j][c0 + c]. */
#define AV_F32(C)                                                                                            \
    static void av_f32_##C(const __m512 *p, const float *v, int64_t vr, int64_t n, int64_t c0, float *out) { \
        __m512 acc[C];                                                                                       \
        _Pragma("GCC unroll 16")                                                                             \
        for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();                                            \
        for (int64_t j = 0; j < n; j++) {                                                                    \
            const float *row = v + j * vr + c0;                                                              \
            _Pragma("GCC unroll 16")                                                                         \
            for (int c = 0; c < C; c++) acc[c] = _mm512_fmadd_ps(p[j], _mm512_set1_ps(row[c]), acc[c]);      \
        }                                                                                                    \
        _Pragma("GCC unroll 16")                                                                             \
        for (int c = 0; c < C; c++) _mm512_store_ps(out + (c0 + c) * LANES, acc[c]);                         \
    }
AV_F32(1) AV_F32(2) AV_F32(3) AV_F32(4) AV_F32(5) AV_F32(6) AV_F32(7) AV_F32(8)
AV_F32(9) AV_F32(10) AV_F32(11) AV_F32(12) AV_F32(13) AV_F32(14) AV_F32(15) AV_F32(16)

typedef void (*av_f32_fn)(const __m512 *, const float *, int64_t, int64_t, int64_t, float *);
static const av_f32_fn AV_F32_BY_WIDTH[17] = {0, av_f32_1, av_f32_2, av_f32_3, av_f32_4, av_f32_5, av_f32_6,
                                               av_f32_7, av_f32_8, av_f32_9, av_f32_10, av_f32_11, av_f32_12,
                                               av_f32_13, av_f32_14, av_f32_15, av_f32_16};

/* A·V for two blocks of 16 rows at once, channels [c0, c0 + C): each V element is broadcast once for both (24
   accumulators at C = 12), so the loop is bound by the FMAs rather than the broadcasts. */
#define AV2_F32(C)                                                                                               \
    static void av2_f32_##C(const __m512 *p0, const __m512 *p1, const float *v, int64_t vr, int64_t n, int64_t c0, \
                            float *out0, float *out1) {                                                          \
        __m512 a0[C], a1[C];                                                                                     \
        _Pragma("GCC unroll 16")                                                                                 \
        for (int c = 0; c < C; c++) a0[c] = a1[c] = _mm512_setzero_ps();                                         \
        for (int64_t j = 0; j < n; j++) {                                                                        \
            const float *row = v + j * vr + c0;                                                                  \
            const __m512 x0 = p0[j], x1 = p1[j];                                                                 \
            _Pragma("GCC unroll 16")                                                                             \
            for (int c = 0; c < C; c++) {                                                                        \
                const __m512 vb = _mm512_set1_ps(row[c]);                                                        \
                a0[c] = _mm512_fmadd_ps(x0, vb, a0[c]);                                                          \
                a1[c] = _mm512_fmadd_ps(x1, vb, a1[c]);                                                          \
            }                                                                                                    \
        }                                                                                                        \
        _Pragma("GCC unroll 16")                                                                                 \
        for (int c = 0; c < C; c++) {                                                                            \
            _mm512_store_ps(out0 + (c0 + c) * LANES, a0[c]);                                                     \
            _mm512_store_ps(out1 + (c0 + c) * LANES, a1[c]);                                                     \
        }                                                                                                        \
    }
AV2_F32(1) AV2_F32(2) AV2_F32(3) AV2_F32(4) AV2_F32(5) AV2_F32(6) AV2_F32(7) AV2_F32(8) AV2_F32(9) AV2_F32(10)
AV2_F32(11) AV2_F32(12)

#define AV2_MAX 12
typedef void (*av2_f32_fn)(const __m512 *, const __m512 *, const float *, int64_t, int64_t, int64_t, float *, float *);
static const av2_f32_fn AV2_F32_BY_WIDTH[AV2_MAX + 1] = {0, av2_f32_1, av2_f32_2, av2_f32_3, av2_f32_4, av2_f32_5,
                                                         av2_f32_6, av2_f32_7, av2_f32_8, av2_f32_9, av2_f32_10,
                                                         av2_f32_11, av2_f32_12};

/* Scores of one block of 16 query rows (a: their columns, 16 rows a vector) against every key: s[j] lane l is
   Q[l]·K[j] + T[l][j]; returns the lanes' maxima. */
static __m512 scores_f32(const float *a, const float *k, int64_t kr, const float *term_t, int64_t row0, int64_t n,
                         int64_t d, __m512 *s) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int64_t j0 = 0; j0 < n; j0 += LANES) {
        __m512 acc[LANES];
        _Pragma("GCC unroll 16")
        for (int t = 0; t < LANES; t++)
            acc[t] = term_t ? _mm512_load_ps(term_t + (j0 + t) * n + row0) : _mm512_setzero_ps();
        for (int64_t c = 0; c < d; c++) {
            __m512 qc = _mm512_load_ps(a + c * LANES);
            const float *kc = k + j0 * kr + c;
            _Pragma("GCC unroll 16")
            for (int t = 0; t < LANES; t++) acc[t] = _mm512_fmadd_ps(qc, _mm512_set1_ps(kc[t * kr]), acc[t]);
        }
        _Pragma("GCC unroll 16")
        for (int t = 0; t < LANES; t++) {
            s[j0 + t] = acc[t];
            m = _mm512_max_ps(m, acc[t]);
        }
    }
    return m;
}

/* The same for two blocks at once (a0, a1; rows row0 and row0 + 16), 8 keys at a time: each key element is
   broadcast once for both blocks. */
static void scores2_f32(const float *a0, const float *a1, const float *k, int64_t kr, const float *term_t,
                        int64_t row0, int64_t n, int64_t d, __m512 *s0, __m512 *s1, __m512 *m0, __m512 *m1) {
    __m512 x0 = _mm512_set1_ps(-INFINITY), x1 = x0;
    for (int64_t j0 = 0; j0 < n; j0 += 8) {
        __m512 c0[8], c1[8];
        _Pragma("GCC unroll 8")
        for (int t = 0; t < 8; t++) {
            c0[t] = term_t ? _mm512_load_ps(term_t + (j0 + t) * n + row0) : _mm512_setzero_ps();
            c1[t] = term_t ? _mm512_load_ps(term_t + (j0 + t) * n + row0 + LANES) : _mm512_setzero_ps();
        }
        for (int64_t c = 0; c < d; c++) {
            const __m512 q0 = _mm512_load_ps(a0 + c * LANES), q1 = _mm512_load_ps(a1 + c * LANES);
            const float *kc = k + j0 * kr + c;
            _Pragma("GCC unroll 8")
            for (int t = 0; t < 8; t++) {
                const __m512 kb = _mm512_set1_ps(kc[t * kr]);
                c0[t] = _mm512_fmadd_ps(q0, kb, c0[t]);
                c1[t] = _mm512_fmadd_ps(q1, kb, c1[t]);
            }
        }
        _Pragma("GCC unroll 8")
        for (int t = 0; t < 8; t++) {
            s0[j0 + t] = c0[t];
            s1[j0 + t] = c1[t];
            x0 = _mm512_max_ps(x0, c0[t]);
            x1 = _mm512_max_ps(x1, c1[t]);
        }
    }
    *m0 = x0;
    *m1 = x1;
}

/* s[j] = exp(s[j] - m) in place; returns the lanes' sums. */
static __m512 exp_and_sum(__m512 *s, __m512 m, int64_t n) {
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j++) {
        s[j] = exp_nonpositive(_mm512_sub_ps(s[j], m));
        sum = _mm512_add_ps(sum, s[j]);
    }
    return sum;
}

/* out (d vectors of 16 rows) divided by the rows' sums, written to rows row0 .. row0 + 15 of y. */
static void normalise_rows(float *out, __m512 sum, float *y, int64_t yr, int64_t row0, int64_t d) {
    const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
    for (int64_t c = 0; c < d; c++)
        _mm512_store_ps(out + c * LANES, _mm512_mul_ps(_mm512_load_ps(out + c * LANES), inv));
    for (int l = 0; l < LANES; l++)
        for (int64_t c = 0; c < d; c++) y[(row0 + l) * yr + c] = out[c * LANES + l];
}

/* 1 / max(|row|, 1e-12) · scale: the factor of F.normalize(row) · scale, as ops.attention.unit_rows computes it. */
static inline float unit_factor(const float *row, int64_t d, float scale) {
    float ss = 0.0f;
    for (int64_t c = 0; c < d; c++) ss += row[c] * row[c];
    return 1.0f / fmaxf(sqrtf(ss), 1e-12f) * scale;
}

/* n rows of src (stride sr) as unit rows into dst (stride d; may be src itself when sr == d). */
static void unit_rows_f32(const float *src, int64_t sr, float *dst, int64_t n, int64_t d) {
    for (int64_t i = 0; i < n; i++) {
        const float f = unit_factor(src + i * sr, d, 1.0f);
        for (int64_t c = 0; c < d; c++) dst[i * d + c] = src[i * sr + c] * f;
    }
}

/* One window and head: y = softmax(Q·Kᵀ + T)·V (T absent: no term), two blocks of 16 query rows at a time where
   two are left; with qscale, Q's rows are first made unit rows times *qscale (cosine attention). Scratch: qt (n·d
   floats), s (2n vectors), out (2·16·d floats). */
static void one_head_f32(const float *q, int64_t qr, const float *k, int64_t kr, const float *v, int64_t vr,
                         const float *term_t, float *y, int64_t yr, int64_t n, int64_t d, const float *qscale,
                         float *qt, __m512 *s, float *out) {
    for (int64_t i = 0; i < n; i++) { /* Q's columns, 16 rows a vector */
        const float f = qscale ? unit_factor(q + i * qr, d, *qscale) : 1.0f; /* times 1: the same bits */
        for (int64_t c = 0; c < d; c++) qt[(i / LANES * d + c) * LANES + i % LANES] = q[i * qr + c] * f;
    }
    const int64_t blocks = n / LANES;
    float *out1 = out + d * LANES;
    for (int64_t b = 0; b < blocks;) {
        const float *a = qt + b * d * LANES;
        if (b + 1 < blocks) {
            __m512 m0, m1;
            scores2_f32(a, a + d * LANES, k, kr, term_t, b * LANES, n, d, s, s + n, &m0, &m1);
            const __m512 sum0 = exp_and_sum(s, m0, n), sum1 = exp_and_sum(s + n, m1, n);
            for (int64_t c0 = 0; c0 < d; c0 += AV2_MAX)
                AV2_F32_BY_WIDTH[d - c0 < AV2_MAX ? d - c0 : AV2_MAX](s, s + n, v, vr, n, c0, out, out1);
            normalise_rows(out, sum0, y, yr, b * LANES, d);
            normalise_rows(out1, sum1, y, yr, (b + 1) * LANES, d);
            b += 2;
            continue;
        }
        const __m512 sum = exp_and_sum(s, scores_f32(a, k, kr, term_t, b * LANES, n, d, s), n);
        for (int64_t c0 = 0; c0 < d; c0 += 16) AV_F32_BY_WIDTH[d - c0 < 16 ? d - c0 : 16](s, v, vr, n, c0, out);
        normalise_rows(out, sum, y, yr, b * LANES, d);
        b += 1;
    }
}

#ifdef __AVX512BF16__
/* The same for bf16 Q, K, V and y (autocast): each head's rows are widened to fp32 first, the attention runs in
   fp32 as above (more exact than bf16 logits), and y is rounded to bf16 once. */

static inline void widen_row(const bf16 *src, float *dst, int64_t d) {
    for (int64_t c = 0; c < d; c += LANES) {
        const __mmask16 m = lanes(d - c);
        __m512i wide = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src + c)), 16);
        _mm512_mask_storeu_ps(dst + c, m, _mm512_castsi512_ps(wide));
    }
}

static inline void narrow_row(const float *src, bf16 *dst, int64_t d) {
    for (int64_t c = 0; c < d; c += LANES) {
        const __mmask16 m = lanes(d - c);
        _mm256_mask_storeu_epi16(dst + c, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + c)));
    }
}

#endif

/* Both precisions: fp32 rows are read and written in place; bf16 rows are widened into fp32 copies first and y is
   narrowed back. With unit (one scale per head), the attention is cosine attention: Q's and K's rows are made unit
   rows, Q's times unit[head], before their product. Returns 0, or -1 if n or d is out of range or scratch memory
   could not be had. */
static int biased_attention(int bf16io, const void *q, const int64_t *qs, const void *k, const int64_t *ks,
                            const void *v, const int64_t *vs, const float *terms_t, const int32_t *pattern,
                            const float *unit, void *y, const int64_t *ys, int64_t windows, int64_t heads, int64_t n,
                            int64_t d, int threads) {
    if (n <= 0 || n % LANES || d <= 0 || d > MAX_D) return -1;
    const size_t rows_bytes = (size_t)(n * d) * 4, s_bytes = (size_t)n * 128, out_bytes = (size_t)(d * LANES) * 8;
    const size_t padded = (rows_bytes + 63) / 64 * 64, total = 5 * padded + s_bytes + (out_bytes + 63) / 64 * 64;
    const size_t size = bf16io ? 2 : 4;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        char *mem = aligned_alloc(64, total);
        failed = !mem;
        float *qt = (float *)mem, *qf = (float *)(mem + padded), *kf = (float *)(mem + 2 * padded);
        float *vf = (float *)(mem + 3 * padded), *yf = (float *)(mem + 4 * padded);
        __m512 *s = (__m512 *)(mem + 5 * padded);
        float *out = (float *)((char *)s + s_bytes);
#pragma omp for schedule(static)
        for (int64_t item = 0; item < windows * heads; item++) {
            if (!mem) continue;
            const int64_t w = item / heads, h = item % heads;
            const char *qh = (const char *)q + (w * qs[0] + h * qs[1]) * size;
            const char *kh = (const char *)k + (w * ks[0] + h * ks[1]) * size;
            const char *vh = (const char *)v + (w * vs[0] + h * vs[1]) * size;
            char *yh = (char *)y + (w * ys[0] + h * ys[1]) * size;
            const float *term = terms_t + ((int64_t)pattern[w] * heads + h) * n * n;
            const float *qscale = unit ? unit + h : NULL;
            if (!bf16io) {
                const float *kk = (const float *)kh;
                int64_t kr = ks[2];
                if (unit) { /* K's unit rows, once per window and head */
                    unit_rows_f32(kk, kr, kf, n, d);
                    kk = kf, kr = d;
                }
                one_head_f32((const float *)qh, qs[2], kk, kr, (const float *)vh, vs[2], term, (float *)yh, ys[2],
                             n, d, qscale, qt, s, out);
                continue;
            }
#ifdef __AVX512BF16__
            for (int64_t i = 0; i < n; i++) {
                widen_row((const bf16 *)qh + i * qs[2], qf + i * d, d);
                widen_row((const bf16 *)kh + i * ks[2], kf + i * d, d);
                widen_row((const bf16 *)vh + i * vs[2], vf + i * d, d);
            }
            if (unit) unit_rows_f32(kf, d, kf, n, d);
            one_head_f32(qf, d, kf, d, vf, d, term, yf, d, n, d, qscale, qt, s, out);
            for (int64_t i = 0; i < n; i++) narrow_row(yf + i * d, (bf16 *)yh + i * ys[2], d);
#else
            (void)qf, (void)kf, (void)vf, (void)yf; /* an fp32-only build has no bf16 entry point */
#endif
        }
        free(mem);
    }
    return failed ? -1 : 0;
}

int biased_window_attention_f32(const float *q, const int64_t *qs, const float *k, const int64_t *ks, const float *v,
                                const int64_t *vs, const float *terms_t, const int32_t *pattern, const float *unit,
                                float *y, const int64_t *ys, int64_t windows, int64_t heads, int64_t n, int64_t d,
                                int threads) {
    return biased_attention(0, q, qs, k, ks, v, vs, terms_t, pattern, unit, y, ys, windows, heads, n, d, threads);
}

#ifdef __AVX512BF16__
int biased_window_attention_bf16(const bf16 *q, const int64_t *qs, const bf16 *k, const int64_t *ks, const bf16 *v,
                                 const int64_t *vs, const float *terms_t, const int32_t *pattern, const float *unit,
                                 bf16 *y, const int64_t *ys, int64_t windows, int64_t heads, int64_t n, int64_t d,
                                 int threads) {
    return biased_attention(1, q, qs, k, ks, v, vs, terms_t, pattern, unit, y, ys, windows, heads, n, d, threads);
}
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * ELAN's fp32 attention, y = softmax(Q·Qᵀ)·V per window, read from and written to maps in token order: token i of
 * window w is row rows[w·n + i] of the (tokens, ·) maps, its Q at q[row·qr], its V at v[row·vr], its output at
 * y[row·yr] (each d floats, unit stride; Q and V may be column ranges of one projection, y of one output map). Each
 * window's rows are gathered into cache-resident copies, computed as one_head_f32 with no term, and scattered back:
 * no windowed copy of the map is made, and no map of scores is written out.
 */
/* dst[0 : d] = src[0 : d], inline: a library memcpy per row of 20 floats cost as much as the copy (a 4x4 window
   copies 48 rows). */
static inline void copy_row(float *dst, const float *src, int64_t d) {
    for (int64_t c = 0; c < d; c += LANES) {
        const __mmask16 m = lanes(d - c);
        _mm512_mask_storeu_ps(dst + c, m, _mm512_maskz_loadu_ps(m, src + c));
    }
}

/* The cache lines of d floats from p into L1. */
static inline void prefetch_row(const float *p, int64_t d) {
    for (int64_t c = 0; c < d; c += 16) _mm_prefetch((const char *)(p + c), _MM_HINT_T0);
    _mm_prefetch((const char *)(p + d - 1), _MM_HINT_T0);
}

int elan_window_attention_f32(const float *q, int64_t qr, const float *v, int64_t vr, const int32_t *rows, float *y,
                              int64_t yr, int64_t windows, int64_t n, int64_t d, int threads) {
    if (n <= 0 || n % LANES || d <= 0 || d > MAX_D) return -1;
    const size_t rows_bytes = (size_t)(n * d) * 4, s_bytes = (size_t)n * 128, out_bytes = (size_t)(d * LANES) * 8;
    const size_t padded = (rows_bytes + 63) / 64 * 64, total = 4 * padded + s_bytes + (out_bytes + 63) / 64 * 64;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        char *mem = aligned_alloc(64, total);
        failed = !mem;
        float *qt = (float *)mem, *qf = (float *)(mem + padded), *vf = (float *)(mem + 2 * padded);
        float *yf = (float *)(mem + 3 * padded);
        __m512 *s = (__m512 *)(mem + 4 * padded);
        float *out = (float *)((char *)s + s_bytes);
#pragma omp for schedule(static)
        for (int64_t w = 0; w < windows; w++) {
            if (!mem) continue;
            const int32_t *r = rows + w * n;
            for (int64_t i = 0; i < n; i++) {
                copy_row(qf + i * d, q + (int64_t)r[i] * qr, d);
                copy_row(vf + i * d, v + (int64_t)r[i] * vr, d);
            }
            if (w + 1 < windows) /* the next window's rows on their way while this one computes */
                for (int64_t i = 0; i < n; i++) {
                    const int64_t row = r[n + i];
                    prefetch_row(q + row * qr, d);
                    prefetch_row(v + row * vr, d);
                    prefetch_row(y + row * yr, d);
                }
            one_head_f32(qf, d, qf, d, vf, d, NULL, yf, d, n, d, NULL, qt, s, out);
            for (int64_t i = 0; i < n; i++) copy_row(y + (int64_t)r[i] * yr, yf + i * d, d);
        }
        free(mem);
    }
    return failed ? -1 : 0;
}
