/*
 * The high-resolution half of PAN's upsampling stage at fp32 inference, fused, for CPUs with AVX-512:
 *
 *     u = pixel_shuffle(pre, f)                      (upconv's output at the low resolution, f² times the channels)
 *     p = lrelu(u · sigmoid(conv1x1(u)))            (pixel attention, then the LeakyReLU)
 *     h = lrelu(conv3x3(p))                          (HRconv)
 *     y = conv3x3(h) + base                          (conv_last and the bilinear image, the network's last stage)
 *  or y = h                                          (an inner stage: the next stage's upconv reads it)
 *
 * At the high resolution (a 1024x1024 map of 24 channels for LR 256² x4) oneDNN runs each of these as a pass over
 * memory, and the 24-in 24- or 3-out convolutions at a fraction of the GEMM rate. Here a strip of pixels going down
 * the picture goes through all of it: the attended rows p and the rows h stay in rings of three rows in the core's
 * L2 (zero where the picture ends, as the convs' padding), the 3x3 conv is a row GEMM of nine taps (row_gemm.h),
 * and conv_last, with its 3 outputs, a dot product per pixel. The pixel shuffle is only the order u's rows are read
 * in. The same terms as the official order, accumulated in another; the sigmoid from the shared exp (~2e-7).
 *
 * Built at run time by litesr.ops.native with the other kernels of this folder.
 */
#include <stdlib.h>
#include <string.h>

#include "row_gemm.h"

/* Row r of the picture: columns lo .. hi-1 of u (channels floats a pixel) into dst, read out of pre, the
   (height/f, width/f, channels·f²) map before the shuffle: u[r][c][k] = pre[r/f][c/f][k·f² + (r%f)·f + c%f]. */
static void shuffled_row(const float *pre, int64_t f, int64_t width, int64_t channels, int64_t r, int64_t lo,
                         int64_t hi, float *dst) {
    const int64_t lanes_in = channels * f * f;
    const float *row = pre + (r / f) * (width / f) * lanes_in + (r % f) * f;
    for (int64_t c = lo; c < hi; c++) {
        const float *px = row + (c / f) * lanes_in + c % f;
        float *d = dst + (c - lo) * channels;
        for (int64_t k = 0; k < channels; k++) d[k] = px[k * f * f];
    }
}

/*
 * pre: (B, H/f, W/f, C·f²) fp32 contiguous (channels-last), H and W the high resolution. wat (C, cp), ba (cp): the
 * attention's 1x1 conv transposed; wht (9·C, cp), bh (cp): HRconv, row t·C + k the weights of input channel k at
 * tap t = 3·dy + dx; every width padded with zeros to cp (a multiple of 16, at most 64). With wl (outs, 9, cp) and
 * bl (outs): y (B, outs, H, W) = conv_last(h) + bl + base, base (B, outs, H, W) or NULL; without: y (B, H, W, C) = h.
 *
 * Work items are strips of strip_cols columns by chunk_rows rows, each going down its rows once with rings of three
 * rows of p (its columns and two more on each side) and of h (one more). Returns nonzero when scratch memory could
 * not be had.
 */
int pan_upsampling_f32(const float *pre, int64_t f, float *y, const float *base, int64_t batch, int64_t height,
                       int64_t width, int64_t channels, int64_t cp, const float *wat, const float *ba,
                       const float *wht, const float *bh, const float *wl, const float *bl, int64_t outs,
                       int64_t chunk_rows, int64_t strip_cols, int threads) {
    const int64_t chunks = (height + chunk_rows - 1) / chunk_rows, strips = (width + strip_cols - 1) / strip_cols;
    const int64_t items = batch * chunks * strips;
    const int64_t psize = (strip_cols + 4) * cp, hsize = (strip_cols + 2) * cp; /* floats per ring row */
    const int64_t one_offs[1] = {0}, one_end[1] = {channels};
    int64_t tap_ends[9];
    for (int t = 0; t < 9; t++) tap_ends[t] = (t + 1) * channels;
    const int64_t pre_size = height / f * (width / f) * channels * f * f;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *pr = scratch(3 * psize), *hr = scratch(3 * hsize), *ut = scratch((strip_cols + 4) * channels);
        if (!pr || !hr || !ut) failed = 1;
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < items; t++) {
            if (failed) continue;
            const strip_item it = strip_at(t, height, width, chunk_rows, strip_cols);
            const int64_t b = it.b, r0 = it.r0, c0 = it.c0, tr = it.rows, tc = it.cols;
            const float *preb = pre + b * pre_size;
            const int64_t lo = clamp_column(c0 - 2, width), hi = clamp_column(c0 + tc + 2, width);
            for (int64_t r = r0 - 2; r < r0 + tr + 2; r++) {
                /* p of row r into the ring: columns c0-2 .. c0+tc+1, zero outside the picture */
                float *p = ring_row(pr, r, 3, psize);
                if (r < 0 || r >= height) {
                    memset(p, 0, (size_t)((tc + 4) * cp * 4));
                } else {
                    float *pl = p + (lo - (c0 - 2)) * cp;
                    zero_outside(p, c0 - 2, c0 + tc + 2, width, cp);
                    shuffled_row(preb, f, width, channels, r, lo, hi, ut);
                    conv_row(ut, channels, one_offs, one_end, 1, wat, cp, ba, pl, cp, ACT_NONE, hi - lo);
                    for (int64_t j = 0; j < hi - lo; j++) {
                        for (int64_t k = 0; k < cp; k += 16) {
                            const __mmask16 m = lanes(channels - k);
                            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, ut + j * channels + k),
                                                     sigmoid_f32(_mm512_loadu_ps(pl + j * cp + k)));
                            _mm512_storeu_ps(pl + j * cp + k, activate(v, ACT_LEAKY_RELU));
                        }
                    }
                }
                const int64_t hrow = r - 1; /* its p rows hrow-1 .. hrow+1 are in the ring now */
                if (hrow < r0 - 1) continue;
                float *h = ring_row(hr, hrow, 3, hsize);
                if (hrow < 0 || hrow >= height) {
                    memset(h, 0, (size_t)((tc + 2) * cp * 4));
                } else {
                    /* tap (dy, dx) reads p at row hrow+dy-1, column +dx-1; its channels are rows t·C .. of wht */
                    int64_t offs[9];
                    const float *here = ring_row(pr, hrow, 3, psize);
                    for (int tap = 0; tap < 9; tap++)
                        offs[tap] = (ring_row(pr, hrow + tap / 3 - 1, 3, psize) - here) + (tap % 3 - 1) * cp -
                                    tap * channels;
                    conv_row(here + cp, cp, offs, tap_ends, 9, wht, cp, bh, h, cp, ACT_LEAKY_RELU, tc + 2);
                    zero_outside(h, c0 - 1, c0 + tc + 1, width, cp);
                }
                const int64_t out = hrow - 1; /* its h rows out-1 .. out+1 are in the ring now */
                if (out < r0) continue;
                if (!wl) {
                    const float *hc = ring_row(hr, out, 3, hsize) + cp;
                    float *yo = y + ((b * height + out) * width + c0) * channels;
                    for (int64_t j = 0; j < tc; j++) memcpy(yo + j * channels, hc + j * cp, (size_t)(channels * 4));
                    continue;
                }
                const float *rows[3];
                for (int dy = 0; dy < 3; dy++) rows[dy] = ring_row(hr, out + dy - 1, 3, hsize);
                for (int64_t j = 0; j < tc; j++) {
                    for (int64_t o = 0; o < outs; o++) {
                        __m512 acc = _mm512_setzero_ps();
                        const float *w = wl + o * 9 * cp;
                        for (int tap = 0; tap < 9; tap++) {
                            const float *hp = rows[tap / 3] + (j + tap % 3) * cp;
                            for (int64_t k = 0; k < cp; k += 16)
                                acc = _mm512_fmadd_ps(_mm512_loadu_ps(hp + k), _mm512_loadu_ps(w + tap * cp + k), acc);
                        }
                        const int64_t at = ((b * outs + o) * height + out) * width + c0 + j;
                        y[at] = _mm512_reduce_add_ps(acc) + bl[o] + (base ? base[at] : 0.0f);
                    }
                }
            }
        }
        free(pr);
        free(hr);
        free(ut);
    }
    return failed;
}
