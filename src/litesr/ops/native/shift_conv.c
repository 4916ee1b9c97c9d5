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
 * Built at run time by litesr.ops.native together with window_attention.c.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Group q of the one-hot shift reads the pixel DR[q] rows down and DC[q] columns right. */
static const int DR[5] = {0, 0, 1, -1, 0};
static const int DC[5] = {1, -1, 0, 0, 0};

#define MAX_PIXELS 6  /* pixels of one register block */
#define MAX_VECTORS 4 /* 16-float output vectors of one register block */

/* dst[i][0 : 16·nv] = act(bias + sum_k wt[k][0 : 16·nv] · src[i·stride + off(k) + k]) for the np pixels i of a
 * block; off(k) is the shift offset of k's channel group: channels below ends[0] take offs[0], below ends[1] offs[1],
 * and so on. wt rows are ldw floats apart. */
static inline __attribute__((always_inline)) void block(const float *src, int64_t stride, const int64_t *offs,
                                                        const int64_t *ends, const float *wt, int64_t ldw,
                                                        const float *bias, float *dst, int64_t dst_stride, int relu,
                                                        const int np, const int nv) {
    __m512 acc[MAX_PIXELS][MAX_VECTORS];
    for (int v = 0; v < nv; v++) {
        __m512 b = _mm512_loadu_ps(bias + 16 * v);
        for (int i = 0; i < np; i++) acc[i][v] = b;
    }
    int64_t k = 0;
    for (int q = 0; q < 5; q++) {
        const float *s = src + offs[q];
        for (; k < ends[q]; k++) {
            __m512 w[MAX_VECTORS];
            for (int v = 0; v < nv; v++) w[v] = _mm512_loadu_ps(wt + k * ldw + 16 * v);
            for (int i = 0; i < np; i++) {
                __m512 a = _mm512_set1_ps(s[i * stride + k]);
                for (int v = 0; v < nv; v++) acc[i][v] = _mm512_fmadd_ps(a, w[v], acc[i][v]);
            }
        }
    }
    __m512 zero = _mm512_setzero_ps();
    for (int i = 0; i < np; i++)
        for (int v = 0; v < nv; v++)
            _mm512_storeu_ps(dst + i * dst_stride + 16 * v, relu ? _mm512_max_ps(acc[i][v], zero) : acc[i][v]);
}

typedef void (*block_fn)(const float *, int64_t, const int64_t *, const int64_t *, const float *, int64_t,
                         const float *, float *, int64_t, int);

#define BLOCK(NP, NV)                                                                                              \
    static void block_##NP##_##NV(const float *src, int64_t stride, const int64_t *offs, const int64_t *ends,      \
                                  const float *wt, int64_t ldw, const float *bias, float *dst, int64_t dst_stride, \
                                  int relu) {                                                                      \
        block(src, stride, offs, ends, wt, ldw, bias, dst, dst_stride, relu, NP, NV);                              \
    }
#define BLOCKS(NP) BLOCK(NP, 1) BLOCK(NP, 2) BLOCK(NP, 3) BLOCK(NP, 4)
BLOCKS(1) BLOCKS(2) BLOCKS(3) BLOCKS(4) BLOCKS(5) BLOCKS(6)
#define ROW(NP) {0, block_##NP##_1, block_##NP##_2, block_##NP##_3, block_##NP##_4}
static const block_fn BLOCKS_BY_SIZE[MAX_PIXELS + 1][MAX_VECTORS + 1] = {
    {0}, ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6)};

/* A row of n pixels (consecutive, stride floats apart) through one shift-conv: out_width outputs each (a multiple
 * of 16), written dst_stride floats apart. */
static void conv_row(const float *src, int64_t stride, const int64_t *offs, const int64_t *ends, const float *wt,
                     int64_t out_width, const float *bias, float *dst, int64_t dst_stride, int relu, int64_t n) {
    for (int64_t i = 0; i < n; i += MAX_PIXELS) {
        int np = n - i < MAX_PIXELS ? (int)(n - i) : MAX_PIXELS;
        for (int64_t o = 0; o < out_width; o += 16 * MAX_VECTORS) {
            int nv = (out_width - o) / 16 < MAX_VECTORS ? (int)((out_width - o) / 16) : MAX_VECTORS;
            BLOCKS_BY_SIZE[np][nv](src + i * stride, stride, offs, ends, wt + o, out_width, bias + o,
                                   dst + i * dst_stride + o, dst_stride, relu);
        }
    }
}

static void group_ends(int64_t channels, int64_t padded, int64_t *ends) {
    int64_t g = channels / 5;
    for (int q = 0; q < 4; q++) ends[q] = (q + 1) * g;
    ends[4] = padded;
}

static inline __mmask16 lanes(int64_t count) { return count >= 16 ? 0xffff : (__mmask16)((1u << count) - 1); }

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
                conv_row(xt + ((i + 1) * xrow + 1) * channels, channels, xoffs, in_ends, w0t, hp, b0, row, hp, 1,
                         tc + 2);
                if (c0 == 0) memset(row, 0, (size_t)(hp * 4));
                if (c0 + tc == width) memset(row + (tc + 1) * hp, 0, (size_t)(hp * 4));
            }
            for (int64_t i = 0; i < tr; i++) {
                conv_row(ht + ((i + 1) * hrow + 1) * hp, hp, hoffs, hid_ends, w1t, cp, b1, ot, cp, 0, tc);
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
