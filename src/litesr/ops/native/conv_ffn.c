/*
 * The ConvFFN of GRFormer and HiT-SRF at fp32 inference, fused, for CPUs with AVX-512:
 *
 *     h = GELU(x·W1 + b1)                                   (fc1, exact GELU)
 *     o = h + dw2(GELU(dw1(h)))    GRFormer (two depthwise 3x3 convs with biases)
 *     o = h + GELU(dw1(h))         HiT-SRF (one depthwise 5x5 conv), when there is no dw2
 *     y = o·W2 + b2                                         (fc2)
 *     y = x + LayerNorm(y)                                  (HiT-SRF's post-norm residual, where asked)
 *
 * on (B, H, W, C) tokens, the depthwise convs zero-padded at the picture's border as in the official code. oneDNN
 * runs it as four passes over the twice-as-wide hidden map; here a tile of pixels at a time goes through all of it,
 * its hidden maps (with the halos the depthwise convs need) in the core's L2. The same terms as the official order,
 * accumulated in another order; GELU's erf from a polynomial (fractional error below 1.2e-7, with the exp's ~2e-7).
 *
 * Built at run time by litesr.ops.native with the other kernels of this folder.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "row_gemm.h"

#define DW_PIXELS 4 /* output pixels of one depthwise block: each input vector loaded once serves up to four */

static inline __attribute__((always_inline)) void depthwise(float *const *rows, int64_t hp, const float *w,
                                                             const float *bias, const int k, int act,
                                                             const float *add, float *dst, int64_t n) {
    const int r = k / 2;
    int64_t j = 0;
    for (; j + DW_PIXELS <= n; j += DW_PIXELS) {
        for (int64_t c = 0; c < hp; c += 16) {
            __m512 acc[DW_PIXELS];
            for (int q = 0; q < DW_PIXELS; q++) acc[q] = _mm512_loadu_ps(bias + c);
            for (int dy = 0; dy < k; dy++) {
                const float *row = rows[dy] + (j - r) * hp + c;
                const float *wr = w + dy * k * hp + c;
                __m512 in[DW_PIXELS + 8];
                for (int u = 0; u < k + DW_PIXELS - 1; u++) in[u] = _mm512_loadu_ps(row + u * hp);
                for (int dx = 0; dx < k; dx++) {
                    const __m512 wv = _mm512_loadu_ps(wr + dx * hp);
                    for (int q = 0; q < DW_PIXELS; q++) acc[q] = _mm512_fmadd_ps(wv, in[q + dx], acc[q]);
                }
            }
            for (int q = 0; q < DW_PIXELS; q++) {
                __m512 v = activate(acc[q], act);
                if (add) v = _mm512_add_ps(v, _mm512_loadu_ps(add + (j + q) * hp + c));
                _mm512_storeu_ps(dst + (j + q) * hp + c, v);
            }
        }
    }
    for (; j < n; j++) {
        for (int64_t c = 0; c < hp; c += 16) {
            __m512 acc = _mm512_loadu_ps(bias + c);
            for (int dy = 0; dy < k; dy++) {
                const float *row = rows[dy] + (j - r) * hp + c;
                const float *wr = w + dy * k * hp + c;
                for (int dx = 0; dx < k; dx++)
                    acc = _mm512_fmadd_ps(_mm512_loadu_ps(wr + dx * hp), _mm512_loadu_ps(row + dx * hp), acc);
            }
            acc = activate(acc, act);
            if (add) acc = _mm512_add_ps(acc, _mm512_loadu_ps(add + j * hp + c));
            _mm512_storeu_ps(dst + j * hp + c, acc);
        }
    }
}

/* dst[j] = act(bias + sum over the k x k taps of w[tap] · rows[dy][j + dx - k/2]) (+ add[j]) for n pixels, hp
 * channels each (a multiple of 16); rows[dy] points at the pixel of row dy (of the k around the output row) that
 * lies above or below the first output pixel. Sides 3 and 5 unrolled. */
static void depthwise_row(float *const *rows, int64_t hp, const float *w, const float *bias, int64_t k, int act,
                          const float *add, float *dst, int64_t n) {
    if (k == 3)
        depthwise(rows, hp, w, bias, 3, act, add, dst, n);
    else if (k == 5)
        depthwise(rows, hp, w, bias, 5, act, add, dst, n);
    else
        depthwise(rows, hp, w, bias, (int)k, act, add, dst, n);
}

#define MAX_K 7 /* the largest depthwise kernel side */

/* dst[0 : c] = add + LayerNorm(v[0 : c]) with weight w, bias b: the mean, then the mean of the squared deviations
   (both over the c channels, in fp32), as PyTorch's layer norm takes them. */
static inline void norm_add(const float *v, const float *w, const float *b, float eps, const float *add, float *dst,
                            int64_t c) {
    __m512 sum = _mm512_setzero_ps();
    for (int64_t k = 0; k < c; k += 16) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(lanes(c - k), v + k));
    const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / (float)c);
    __m512 sq = _mm512_setzero_ps();
    for (int64_t k = 0; k < c; k += 16) {
        const __mmask16 m = lanes(c - k);
        const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, v + k), mean);
        sq = _mm512_fmadd_ps(d, d, sq);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(sq) / (float)c + eps));
    for (int64_t k = 0; k < c; k += 16) {
        const __mmask16 m = lanes(c - k);
        const __m512 n = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, v + k), mean), inv);
        const __m512 o = _mm512_fmadd_ps(n, _mm512_maskz_loadu_ps(m, w + k), _mm512_maskz_loadu_ps(m, b + k));
        _mm512_mask_storeu_ps(dst + k, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, add + k), o));
    }
}

/*
 * x, y: (B, H, W, C) fp32 tokens, contiguous, not overlapping. w1t (C, hp): fc1's weight transposed, b1 (hp); the
 * hidden width padded with zeros to hp (a multiple of 16). dw1 (k1·k1, hp): the first depthwise conv's taps, row
 * dy·k1 + dx, db1 (hp); dw2/db2 the second's (k2 = 0: none). Odd sides up to MAX_K. w2t (hp, cp): fc2's weight
 * transposed, zero rows past the hidden width, zero columns past C; b2 (cp). ln_w, ln_b (C): a LayerNorm over the
 * channels (eps ln_eps) applied to the result and x added to it; NULL: the result as it is.
 *
 * Work items are strips of strip_cols columns by chunk_rows rows. Each goes down its rows once: the hidden rows
 * (h = GELU(fc1(x)), and g = GELU(dw1(h)) with a second conv) live in rings of as many rows as the depthwise convs
 * reach, each computed once per item; only the strip's side halos and the chunk's first rows are computed twice.
 * Returns nonzero when scratch memory could not be had, -1 for a kernel side out of range.
 */
int conv_ffn_f32(const float *x, float *y, int64_t batch, int64_t height, int64_t width, int64_t channels,
                 int64_t hp, const float *w1t, const float *b1, int64_t k1, const float *dw1, const float *db1,
                 int64_t k2, const float *dw2, const float *db2, int64_t cp, const float *w2t, const float *b2,
                 const float *ln_w, const float *ln_b, float ln_eps, int64_t chunk_rows, int64_t strip_cols,
                 int threads) {
    if (k1 < 1 || k1 > MAX_K || k1 % 2 == 0 || k2 < 0 || k2 > MAX_K || (k2 && k2 % 2 == 0)) return -1;
    const int64_t r1 = k1 / 2, r2 = k2 / 2, halo = r1 + r2;
    const int64_t chunks = (height + chunk_rows - 1) / chunk_rows, strips = (width + strip_cols - 1) / strip_cols;
    const int64_t items = batch * chunks * strips;
    const int64_t hring = 2 * halo + 1, gring = 2 * r2 + 1;
    const int64_t hrow = strip_cols + 2 * halo, grow = strip_cols + 2 * r2; /* pixels per ring row */
    const int64_t zero_offs[1] = {0}, in_ends[1] = {channels}, hid_ends[1] = {hp};
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *ht = scratch(hring * hrow * hp), *gt = scratch(gring * grow * hp), *ot = scratch(strip_cols * hp);
        float *yt = scratch(strip_cols * cp);
        if (!ht || !gt || !ot || !yt) failed = 1;
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < items; t++) {
            if (failed) continue;
            const strip_item it = strip_at(t, height, width, chunk_rows, strip_cols);
            const int64_t b = it.b, r0 = it.r0, c0 = it.c0, tr = it.rows, tc = it.cols;
            const float *xb = x + b * height * width * channels;
            /* ring row of picture row r: h at columns c0-halo .. c0+tc+halo-1, g at c0-r2 .. c0+tc+r2-1 */
#define H_ROW(r) ring_row(ht, (r), hring, hrow * hp)
#define G_ROW(r) ring_row(gt, (r), gring, grow * hp)
            /* h of picture row r (zero outside the picture), then g of row r - halo + r2 once h reaches it */
            for (int64_t r = r0 - halo; r < r0 + tr + halo; r++) {
                float *row = H_ROW(r);
                if (r < 0 || r >= height) {
                    memset(row, 0, (size_t)((tc + 2 * halo) * hp * 4));
                } else {
                    const int64_t lo = clamp_column(c0 - halo, width), hi = clamp_column(c0 + tc + halo, width);
                    zero_outside(row, c0 - halo, c0 + tc + halo, width, hp);
                    conv_row(xb + (r * width + lo) * channels, channels, zero_offs, in_ends, 1, w1t, hp, b1,
                             row + (lo - (c0 - halo)) * hp, hp, ACT_GELU, hi - lo);
                }
                if (k2 && r - r1 >= r0 - r2) { /* g of row r - r1: its k1 rows of h are in the ring */
                    const int64_t gr = r - r1;
                    float *grw = G_ROW(gr);
                    if (gr < 0 || gr >= height) {
                        memset(grw, 0, (size_t)((tc + 2 * r2) * hp * 4));
                    } else {
                        const int64_t lo = clamp_column(c0 - r2, width), hi = clamp_column(c0 + tc + r2, width);
                        zero_outside(grw, c0 - r2, c0 + tc + r2, width, hp);
                        float *rows[MAX_K];
                        for (int64_t dy = 0; dy < k1; dy++) rows[dy] = H_ROW(gr - r1 + dy) + (lo - (c0 - halo)) * hp;
                        depthwise_row(rows, hp, dw1, db1, k1, ACT_GELU, NULL, grw + (lo - (c0 - r2)) * hp, hi - lo);
                    }
                }
                const int64_t out = r - halo; /* its h rows (and g rows) are all in the rings now */
                if (out < r0) continue;
                const float *h = H_ROW(out) + halo * hp;
                float *rows[MAX_K];
                if (k2) {
                    for (int64_t dy = 0; dy < k2; dy++) rows[dy] = G_ROW(out - r2 + dy) + r2 * hp;
                    depthwise_row(rows, hp, dw2, db2, k2, ACT_NONE, h, ot, tc);
                } else {
                    for (int64_t dy = 0; dy < k1; dy++) rows[dy] = H_ROW(out - r1 + dy) + halo * hp;
                    depthwise_row(rows, hp, dw1, db1, k1, ACT_GELU, h, ot, tc);
                }
                conv_row(ot, hp, zero_offs, hid_ends, 1, w2t, cp, b2, yt, cp, ACT_NONE, tc);
                float *yo = y + ((b * height + out) * width + c0) * channels;
                if (ln_w) {
                    const float *xo = xb + (out * width + c0) * channels;
                    for (int64_t j = 0; j < tc; j++)
                        norm_add(yt + j * cp, ln_w, ln_b, ln_eps, xo + j * channels, yo + j * channels, channels);
                    continue;
                }
                for (int64_t j = 0; j < tc; j++)
                    for (int64_t ch = 0; ch < channels; ch += 16)
                        _mm512_mask_storeu_ps(yo + j * channels + ch, lanes(channels - ch),
                                              _mm512_maskz_loadu_ps(lanes(channels - ch), yt + j * cp + ch));
            }
#undef H_ROW
#undef G_ROW
        }
        free(ht);
        free(gt);
        free(ot);
        free(yt);
    }
    return failed;
}

/*
 * y = x + LayerNorm(a) over the c channels of every pixel (HiT-SRF's post-norm residual after its attention): x, y
 * (B, H, W, c) contiguous; pixel (b, r, col) of a at a + b·a_batch + r·a_row + col·c (a crop of a padded map).
 */
void residual_norm_f32(const float *a, int64_t a_batch, int64_t a_row, const float *x, float *y, int64_t batch,
                       int64_t height, int64_t width, int64_t c, const float *w, const float *b, float eps,
                       int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < batch * height; t++) {
        const float *ar = a + t / height * a_batch + t % height * a_row;
        const int64_t at = t * width * c;
        for (int64_t j = 0; j < width; j++) norm_add(ar + j * c, w, b, eps, x + at + j * c, y + at + j * c, c);
    }
}
