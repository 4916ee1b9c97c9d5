/*
 * ELAN's local feature extraction (LFE) at fp32 inference, fused, for CPUs with AVX-512:
 *
 *     y = conv1x1_1(shift(relu(conv1x1_0(shift(x))))) [+ x]
 *
 * on channels-last maps (B, H, W, C). shift is ELAN's fixed one-hot depthwise 3x3 conv: of a map's channels, split
 * into five groups of width channels/5 (the fifth also holds the rest), group q reads pixel (r + DR[q], c + DC[q]),
 * zero outside the picture. oneDNN runs it as four passes over memory (a depthwise conv, the 1x1 conv, the ReLU, a
 * depthwise conv over the twice-as-wide hidden map, the second 1x1 conv) and each pass over a 256x256 map leaves the
 * cache. Here a strip of pixels going down the picture goes through both shift-convs: the input and hidden rows it
 * needs stay in rings of three rows in the core's L2 (zero-padded where the picture ends), each shift is an offset
 * into them, and the 1x1 convs are register-blocked FMA loops (6 pixels x 64 outputs, row_gemm.h).
 *
 * The same sums as the official order in another order: each output is a dot product of the same terms, accumulated
 * in fp32 (the caller checks the result against the official op sequence).
 *
 * Built at run time by litesr.ops.native with the other kernels of this folder.
 */
#include <stdlib.h>
#include <string.h>

#include "row_gemm.h"

/* Group q of the one-hot shift reads the pixel DR[q] rows down and DC[q] columns right. */
static const int DR[5] = {0, 0, 1, -1, 0};
static const int DC[5] = {1, -1, 0, 0, 0};

static void group_ends(int64_t channels, int64_t padded, int64_t *ends) {
    int64_t g = channels / 5;
    for (int q = 0; q < 4; q++) ends[q] = (q + 1) * g;
    ends[4] = padded;
}

/* Offsets (in floats, from the row of picture row r, column c) of the pixel each channel group reads, in a ring of
 * rows of `pixels` pixels × `width` floats. */
static void ring_offsets(float *ring, int64_t r, int64_t size, int64_t width, int64_t *offs) {
    const float *here = ring_row(ring, r, 3, size);
    for (int q = 0; q < 5; q++) offs[q] = (ring_row(ring, r + DR[q], 3, size) - here) + DC[q] * width;
}

/*
 * x, y: (B, H, W, C) fp32, contiguous, not overlapping. w0t: (C, HP) the first 1x1 conv's weight transposed, b0 (HP),
 * hidden width hid padded with zero columns to HP (a multiple of 16); w1t: (HP, CP) the second's, zero rows past hid,
 * zero columns past C; b1 (CP). residual: add x to the result.
 *
 * Work items are strips of strip_cols columns by chunk_rows rows. Each goes down its rows once, with rings of three
 * rows: the input (zero-padded by two columns) and the hidden map (by one), so each hidden row is computed once per
 * item and only the strip's side columns and each chunk's first and last rows twice. Returns nonzero when scratch
 * memory could not be had.
 */
int lfe_f32(const float *x, float *y, int64_t batch, int64_t height, int64_t width, int64_t channels,
            int64_t hid, int64_t hp, const float *w0t, const float *b0, int64_t cp, const float *w1t,
            const float *b1, int residual, int64_t chunk_rows, int64_t strip_cols, int threads) {
    const int64_t chunks = (height + chunk_rows - 1) / chunk_rows, strips = (width + strip_cols - 1) / strip_cols;
    const int64_t items = batch * chunks * strips;
    const int64_t xsize = (strip_cols + 4) * channels, hsize = (strip_cols + 2) * hp; /* floats per ring row */
    int64_t in_ends[5], hid_ends[5];
    group_ends(channels, channels, in_ends);
    group_ends(hid, hp, hid_ends);
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *xr = scratch(3 * xsize), *hr = scratch(3 * hsize), *ot = scratch(strip_cols * cp);
        if (!xr || !hr || !ot) failed = 1;
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < items; t++) {
            if (failed) continue;
            const strip_item it = strip_at(t, height, width, chunk_rows, strip_cols);
            const int64_t b = it.b, r0 = it.r0, c0 = it.c0, tr = it.rows, tc = it.cols;
            const float *xb = x + b * height * width * channels;
            const int64_t lo = clamp_column(c0 - 2, width), hi = clamp_column(c0 + tc + 2, width);
            /* input row r into the ring: columns c0-2 .. c0+tc+1, zero outside the picture */
            for (int64_t r = r0 - 2; r < r0 + tr + 2; r++) {
                float *row = ring_row(xr, r, 3, xsize);
                if (r < 0 || r >= height) {
                    memset(row, 0, (size_t)((tc + 4) * channels * 4));
                } else {
                    zero_outside(row, c0 - 2, c0 + tc + 2, width, channels);
                    memcpy(row + (lo - (c0 - 2)) * channels, xb + (r * width + lo) * channels,
                           (size_t)((hi - lo) * channels * 4));
                }
                const int64_t hrow = r - 1; /* its input rows hrow-1 .. hrow+1 are in the ring now */
                if (hrow < r0 - 1) continue;
                float *h = ring_row(hr, hrow, 3, hsize);
                if (hrow < 0 || hrow >= height) {
                    memset(h, 0, (size_t)((tc + 2) * hp * 4));
                } else {
                    int64_t offs[5];
                    ring_offsets(xr, hrow, xsize, channels, offs);
                    conv_row(ring_row(xr, hrow, 3, xsize) + channels, channels, offs, in_ends, 5, w0t, hp, b0, h,
                             hp, ACT_RELU, tc + 2);
                    zero_outside(h, c0 - 1, c0 + tc + 1, width, hp);
                }
                const int64_t out = hrow - 1; /* its hidden rows out-1 .. out+1 are in the ring now */
                if (out < r0) continue;
                int64_t offs[5];
                ring_offsets(hr, out, hsize, hp, offs);
                conv_row(ring_row(hr, out, 3, hsize) + hp, hp, offs, hid_ends, 5, w1t, cp, b1, ot, cp, ACT_NONE, tc);
                const int64_t at = ((b * height + out) * width + c0) * channels;
                for (int64_t j = 0; j < tc; j++) {
                    const float *o = ot + j * cp, *xi = x + at + j * channels;
                    float *yo = y + at + j * channels;
                    for (int64_t ch = 0; ch < channels; ch += 16) {
                        __mmask16 m = lanes(channels - ch);
                        __m512 v = _mm512_maskz_loadu_ps(m, o + ch);
                        if (residual) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, xi + ch));
                        _mm512_mask_storeu_ps(yo + ch, m, v);
                    }
                }
            }
        }
        free(xr);
        free(hr);
        free(ot);
    }
    return failed;
}
