/*
 * PAN's trunk block (SCPA) at fp32 inference, fused, for CPUs with AVX-512:
 *
 *     a1 = lrelu(conv1_a(x)),  b1 = lrelu(conv1_b(x))       (1x1, nf -> w each, no bias)
 *     a  = lrelu(k1(a1))                                    (3x3, no bias)
 *     c  = k3(b1) · sigmoid(k2(b1))                         (3x3 no bias; 1x1 with bias)
 *     b  = lrelu(k4(c))                                     (3x3, no bias)
 *     y  = conv3([a, b]) + x                                (1x1, 2w -> nf, no bias)
 *
 * on NCHW maps, the 3x3 convs zero-padded at the picture's border. oneDNN runs it as ten passes over memory, and its
 * 20-channel convolutions at a quarter of the GEMM rate: 20 outputs fill 16-float vectors of a pixel badly. Here the
 * vector lanes are 16 pixels of one row and the outputs sit in 20 registers (any width up to MAX_WIDTH), so every
 * lane computes; a strip of pixels goes down the picture with the rows a1, b1 and c it needs in rings in L2 (planar,
 * one run of columns per channel). The same terms as the official order, accumulated in another; the sigmoid from
 * the shared exp (~2e-7).
 *
 * Built at run time by litesr.ops.native with the other kernels of this folder.
 */
#include <stdlib.h>
#include <string.h>

#include "row_gemm.h"

#define MAX_WIDTH 24 /* the widest w: its outputs' accumulators and a loaded vector fit in 32 registers */

/* acc[o] = sum over taps t and input channels k of w[(t·n_in + k)·no + o] · src[t][k·cstride + 0..15] (lanes in m
   loaded, the rest zero), for the no (a constant where inlined) outputs of 16 pixels. The sums live in a local
   array that every access indexes by a constant, so that they stay in registers; acc is written once, at the end. */
static inline __attribute__((always_inline)) void accumulate(const float *const *src, int taps, int64_t cstride,
                                                              int n_in, const float *w, const int no, __mmask16 m,
                                                              __m512 *acc) {
    __m512 sum[MAX_WIDTH];
#pragma GCC unroll 24
    for (int o = 0; o < no; o++) sum[o] = _mm512_setzero_ps();
    for (int t = 0; t < taps; t++) {
        for (int k = 0; k < n_in; k++) {
            const __m512 v = _mm512_maskz_loadu_ps(m, src[t] + k * cstride);
            const float *wk = w + (t * n_in + k) * no;
#pragma GCC unroll 24
            for (int o = 0; o < no; o++) sum[o] = _mm512_fmadd_ps(_mm512_set1_ps(wk[o]), v, sum[o]);
        }
    }
#pragma GCC unroll 24
    for (int o = 0; o < no; o++) acc[o] = sum[o];
}

/* Lanes of the 16 pixels from picture column c whose columns lie in [lo, hi). */
static inline __mmask16 within(int64_t c, int64_t lo, int64_t hi) {
    __mmask16 m = 0;
    for (int i = 0; i < 16; i++)
        if (c + i >= lo && c + i < hi) m |= (__mmask16)(1u << i);
    return m;
}

/* What every work item reads: the maps, their sizes and the packed weights. */
typedef struct {
    const float *x, *w1, *wk1, *wk2, *bk2, *wk3, *wk4, *w3;
    float *y;
    int64_t height, width, nf, plane, rs, groups;
} scpa_args;

/* One work item (a strip of columns down a chunk of rows) for no = w outputs a layer, the weights padded with zeros
   to it; ab and cr the rings: a1 and b1 (2·no channels, 4 rows), c (no channels, 3 rows), rs floats per channel of
   a row, column j is picture column c0 - 2 + j; xr one row of x (nf channels) laid out the same way. Inlined with
   no a constant, so that the sums stay in registers. */
static inline __attribute__((always_inline)) void scpa_item(const scpa_args *a, strip_item it, float *ab, float *cr,
                                                            float *xr, const int no) {
    float *y = a->y;
    const float *x = a->x, *w1 = a->w1, *wk1 = a->wk1, *wk2 = a->wk2, *bk2 = a->bk2, *wk3 = a->wk3, *wk4 = a->wk4,
                *w3 = a->w3;
    const int64_t height = a->height, width = a->width, nf = a->nf, plane = a->plane, rs = a->rs, groups = a->groups;
    const int64_t b = it.b, r0 = it.r0, c0 = it.c0, tr = it.rows, tc = it.cols;
    const float *xb = x + b * nf * plane;
    float *yb = y + b * nf * plane;
    __m512 acc[MAX_WIDTH], gate[MAX_WIDTH];
    for (int64_t r = r0 - 2; r < r0 + tr + 2; r++) {
        /* a1, b1 of row r at columns c0-2 .. c0+tc+1, zero outside the picture */
        float *abr = ring_row(ab, r, 4, 2 * no * rs);
        if (r < 0 || r >= height) {
            memset(abr, 0, (size_t)(2 * no * rs * 4));
        } else {
            /* x's row into xr first, its channels rs floats apart: read where they lie, a plane apart, every vector
               of channels would fall in one set of the L1 cache */
            const int64_t lo = clamp_column(c0 - 2, width), hi = clamp_column(c0 + tc + 2, width);
            for (int64_t k = 0; k < nf; k++) {
                float *d = xr + k * rs;
                zero_outside(d, c0 - 2, c0 + tc + 2, width, 1);
                memcpy(d + lo - (c0 - 2), xb + k * plane + r * width + lo, (size_t)((hi - lo) * 4));
            }
            for (int64_t j = 0; j < tc + 4; j += 16) {
                const __mmask16 m = within(c0 - 2 + j, 0, width) & lanes(tc + 4 - j);
                const float *src[1] = {xr + j};
                for (int half = 0; half < 2; half++) {
                    accumulate(src, 1, rs, (int)nf, w1 + half * nf * no, no, m, acc);
                    for (int o = 0; o < no; o++)
                        _mm512_storeu_ps(abr + (half * no + o) * rs + j,
                                         _mm512_maskz_mov_ps(m, activate(acc[o], ACT_LEAKY_RELU)));
                }
            }
        }
        /* c of row r-1 at columns c0-1 .. c0+tc, zero outside the picture */
        const int64_t mrow = r - 1;
        if (mrow < r0 - 1) continue;
        float *cm = ring_row(cr, mrow, 3, no * rs);
        if (mrow < 0 || mrow >= height) {
            memset(cm, 0, (size_t)(no * rs * 4));
        } else {
            for (int64_t j = 1; j < tc + 3; j += 16) {
                const int64_t c = c0 - 2 + j;
                const __mmask16 m = within(c, 0, width) & lanes(tc + 3 - j);
                const float *here[1] = {ring_row(ab, mrow, 4, 2 * no * rs) + no * rs + j};
                accumulate(here, 1, rs, no, wk2, no, 0xffff, gate);
                const float *taps[9];
                for (int q = 0; q < 9; q++)
                    taps[q] = ring_row(ab, mrow + q / 3 - 1, 4, 2 * no * rs) + no * rs + j + q % 3 - 1;
                accumulate(taps, 9, rs, no, wk3, no, 0xffff, acc);
                for (int o = 0; o < no; o++) {
                    const __m512 g = sigmoid_f32(_mm512_add_ps(gate[o], _mm512_set1_ps(bk2[o])));
                    _mm512_storeu_ps(cm + o * rs + j, _mm512_maskz_mul_ps(m, acc[o], g));
                }
            }
        }
        /* the output row r-2 */
        const int64_t out = r - 2;
        if (out < r0) continue;
        for (int64_t j = 2; j < tc + 2; j += 16) {
            const __mmask16 m = lanes(tc + 2 - j);
            float ab_out[2 * MAX_WIDTH * 16] __attribute__((aligned(64)));
            const float *taps[9];
            for (int q = 0; q < 9; q++) taps[q] = ring_row(ab, out + q / 3 - 1, 4, 2 * no * rs) + j + q % 3 - 1;
            accumulate(taps, 9, rs, no, wk1, no, 0xffff, acc);
            for (int o = 0; o < no; o++) _mm512_store_ps(ab_out + o * 16, activate(acc[o], ACT_LEAKY_RELU));
            for (int q = 0; q < 9; q++) taps[q] = ring_row(cr, out + q / 3 - 1, 3, no * rs) + j + q % 3 - 1;
            accumulate(taps, 9, rs, no, wk4, no, 0xffff, acc);
            for (int o = 0; o < no; o++)
                _mm512_store_ps(ab_out + (no + o) * 16, activate(acc[o], ACT_LEAKY_RELU));
            const float *halves[2] = {ab_out, ab_out + no * 16};
            const int64_t at = out * width + c0 + j - 2;
            for (int64_t g = 0; g < groups; g++) {
                accumulate(halves, 2, 16, no, w3 + g * 2 * no * no, no, 0xffff, acc);
                for (int o = 0; o < no && g * no + o < nf; o++) {
                    const int64_t ch = (g * no + o) * plane + at;
                    _mm512_mask_storeu_ps(yb + ch, m, _mm512_add_ps(acc[o], _mm512_maskz_loadu_ps(m, xb + ch)));
                }
            }
        }
    }
}

/*
 * x, y: (B, nf, H, W) fp32, contiguous, not overlapping. Weights, the block's width w padded with zeros to no (20,
 * or MAX_WIDTH for any other w up to it): w1 (2, nf, no) conv1_a and conv1_b, [k][o]; wk1, wk3, wk4 (9, no, no)
 * k1, k3, k4 [tap 3·dy + dx][k][o]; wk2 (no, no) and bk2 (no) k2; w3 (ceil(nf / no), 2, no, no) conv3, output
 * g·no + o of input half·w + k at [g][half][k][o]. Work items are strips of strip_cols columns by chunk_rows rows.
 * Returns nonzero when scratch memory could not be had, -1 for a width it does not take.
 */
int scpa_f32(const float *x, float *y, int64_t batch, int64_t height, int64_t width, int64_t nf, int64_t no,
             const float *w1, const float *wk1, const float *wk2, const float *bk2, const float *wk3,
             const float *wk4, const float *w3, int64_t chunk_rows, int64_t strip_cols, int threads) {
    if (no != 20 && no != MAX_WIDTH) return -1;
    const int64_t chunks = (height + chunk_rows - 1) / chunk_rows, strips = (width + strip_cols - 1) / strip_cols;
    const int64_t items = batch * chunks * strips, rs = (strip_cols + 4 + 15) / 16 * 16 + 16; /* with slack */
    const scpa_args a = {x, w1, wk1, wk2, bk2, wk3, wk4, w3, y, height, width, nf, height * width, rs,
                         (nf + no - 1) / no};
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *ab = scratch(4 * 2 * no * rs), *cr = scratch(3 * no * rs), *xr = scratch(nf * rs);
        if (!ab || !cr || !xr) failed = 1;
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < items; t++) {
            if (failed) continue;
            const strip_item it = strip_at(t, height, width, chunk_rows, strip_cols);
            if (no == 20)
                scpa_item(&a, it, ab, cr, xr, 20);
            else
                scpa_item(&a, it, ab, cr, xr, MAX_WIDTH);
        }
        free(ab);
        free(cr);
        free(xr);
    }
    return failed;
}
