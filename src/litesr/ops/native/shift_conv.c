/*
 * ELAN's local feature extraction (LFE) at fp32 inference, fused, for CPUs with AVX-512:
 *
 *     y = conv1x1_1(shift(relu(conv1x1_0(shift(x))))) [+ x]
 *
 * on channels-last maps (B, H, W, C). shift is ELAN's fixed one-hot depthwise 3x3 conv: of a map's channels, split
 * into five groups of width channels/5 (the fifth also holds the rest), group q reads pixel (r + DR[q], c + DC[q]),
 * zero outside the picture. oneDNN runs it as four passes over memory (a depthwise conv, the 1x1 conv, the ReLU, a
 * depthwise conv over the twice-as-wide hidden map, the second 1x1 conv) and each pass over a 256x256 map leaves the
 * cache. Here a tile of pixels at a time goes through both shift-convs: the shifts are offsets into the tile's
 * padded input and hidden map (zero where the picture ends), the hidden map of the tile and a one-pixel halo
 * stays in the core's L2, and the 1x1 convs are register-blocked FMA loops (6 pixels x 64 outputs).
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

/*
 * x, y: (B, H, W, C) fp32, contiguous, not overlapping. w0t: (C, HP) the first 1x1 conv's weight transposed, b0 (HP),
 * hidden width hid padded with zero columns to HP (a multiple of 16); w1t: (HP, CP) the second's, zero rows past hid,
 * zero columns past C; b1 (CP). residual: add x to the result. Tiles of tile_rows x tile_cols pixels. Returns
 * nonzero when scratch memory could not be had.
 */
int lfe_f32(const float *x, float *y, int64_t batch, int64_t height, int64_t width, int64_t channels,
            int64_t hid, int64_t hp, const float *w0t, const float *b0, int64_t cp, const float *w1t,
            const float *b1, int residual, int64_t tile_rows, int64_t tile_cols, int threads) {
    const int64_t bands = (height + tile_rows - 1) / tile_rows, cols = (width + tile_cols - 1) / tile_cols;
    const int64_t tiles = batch * bands * cols;
    const int64_t xrow = tile_cols + 4, hrow = tile_cols + 2; /* pixels per row of the padded tiles */
    int64_t in_ends[5], hid_ends[5];
    group_ends(channels, channels, in_ends);
    group_ends(hid, hp, hid_ends);
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        size_t xbytes = (size_t)((tile_rows + 4) * xrow * channels * 4 + 63) / 64 * 64;
        size_t hbytes = (size_t)((tile_rows + 2) * hrow * hp * 4 + 63) / 64 * 64;
        size_t obytes = (size_t)(tile_cols * cp * 4 + 63) / 64 * 64;
        float *xt = aligned_alloc(64, xbytes), *ht = aligned_alloc(64, hbytes), *ot = aligned_alloc(64, obytes);
        if (!xt || !ht || !ot) failed = 1;
        int64_t xoffs[5], hoffs[5];
        for (int q = 0; q < 5; q++) {
            xoffs[q] = (DR[q] * xrow + DC[q]) * channels;
            hoffs[q] = (DR[q] * hrow + DC[q]) * hp;
        }
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < tiles; t++) {
            if (failed) continue;
            const int64_t b = t / (bands * cols), r0 = (t / cols) % bands * tile_rows, c0 = t % cols * tile_cols;
            const int64_t tr = height - r0 < tile_rows ? height - r0 : tile_rows;
            const int64_t tc = width - c0 < tile_cols ? width - c0 : tile_cols;
            const float *xb = x + b * height * width * channels;
            /* the input rows r0-2 .. r0+tr+1, columns c0-2 .. c0+tc+1, zero outside the picture */
            for (int64_t i = 0; i < tr + 4; i++) {
                int64_t r = r0 - 2 + i;
                float *row = xt + i * xrow * channels;
                if (r < 0 || r >= height) {
                    memset(row, 0, (size_t)((tc + 4) * channels * 4));
                    continue;
                }
                int64_t lo = c0 - 2 < 0 ? 0 : c0 - 2, hi = c0 + tc + 2 > width ? width : c0 + tc + 2;
                memset(row, 0, (size_t)((lo - (c0 - 2)) * channels * 4));
                memcpy(row + (lo - (c0 - 2)) * channels, xb + (r * width + lo) * channels,
                       (size_t)((hi - lo) * channels * 4));
                memset(row + (hi - (c0 - 2)) * channels, 0, (size_t)((c0 + tc + 2 - hi) * channels * 4));
            }
            /* the hidden map at rows r0-1 .. r0+tr, columns c0-1 .. c0+tc: zero outside the picture */
            for (int64_t i = 0; i < tr + 2; i++) {
                int64_t r = r0 - 1 + i;
                float *row = ht + i * hrow * hp;
                if (r < 0 || r >= height) {
                    memset(row, 0, (size_t)((tc + 2) * hp * 4));
                    continue;
                }
                conv_row(xt + ((i + 1) * xrow + 1) * channels, channels, xoffs, in_ends, w0t, hp, b0, row, hp, ACT_RELU,
                         tc + 2);
                if (c0 == 0) memset(row, 0, (size_t)(hp * 4));
                if (c0 + tc == width) memset(row + (tc + 1) * hp, 0, (size_t)(hp * 4));
            }
            for (int64_t i = 0; i < tr; i++) {
                conv_row(ht + ((i + 1) * hrow + 1) * hp, hp, hoffs, hid_ends, w1t, cp, b1, ot, cp, ACT_NONE, tc);
                const int64_t at = ((b * height + r0 + i) * width + c0) * channels;
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
        free(xt);
        free(ht);
        free(ot);
    }
    return failed;
}
