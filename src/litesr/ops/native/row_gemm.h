/* Row GEMMs for litesr's fused convolution kernels (fp32, AVX-512): a row of pixels through a 1x1 convolution whose
 * input channels may each read another pixel (ELAN's one-hot shift; a dense 3x3 conv as nine such groups, one per
 * tap), 6 pixels x 64 outputs per register block, the activation applied before the store. Included by the kernels
 * that use it; everything here is static. */
#ifndef LITESR_ROW_GEMM_H
#define LITESR_ROW_GEMM_H

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vector_math.h"

enum { ACT_NONE = 0, ACT_RELU = 1, ACT_GELU = 2, ACT_LEAKY_RELU = 3 };

#define LEAKY_SLOPE 0.2f /* PAN's LeakyReLU */

static inline __attribute__((always_inline)) __m512 activate(__m512 v, int act) {
    if (act == ACT_RELU) return _mm512_max_ps(v, _mm512_setzero_ps());
    if (act == ACT_GELU) return gelu_f32(v);
    if (act == ACT_LEAKY_RELU) return _mm512_max_ps(v, _mm512_mul_ps(v, _mm512_set1_ps(LEAKY_SLOPE)));
    return v;
}

/* Work item t of a walk over (batch, height, width) pictures in strips of strip_cols columns by chunks of chunk_rows
   rows: its picture b, first row r0 and column c0, and its rows and columns (fewer at the edges). */
typedef struct {
    int64_t b, r0, c0, rows, cols;
} strip_item;

static inline strip_item strip_at(int64_t t, int64_t height, int64_t width, int64_t chunk_rows, int64_t strip_cols) {
    const int64_t chunks = (height + chunk_rows - 1) / chunk_rows, strips = (width + strip_cols - 1) / strip_cols;
    strip_item s;
    s.b = t / (chunks * strips);
    s.r0 = (t / strips) % chunks * chunk_rows;
    s.c0 = t % strips * strip_cols;
    s.rows = height - s.r0 < chunk_rows ? height - s.r0 : chunk_rows;
    s.cols = width - s.c0 < strip_cols ? width - s.c0 : strip_cols;
    return s;
}

/* Scratch memory for n floats, 64-byte aligned (NULL when none could be had); free() releases it. */
static inline float *scratch(int64_t n) { return aligned_alloc(64, (size_t)(n * 4 + 63) / 64 * 64); }

/* Column c clamped to the picture's columns 0 .. width. */
static inline int64_t clamp_column(int64_t c, int64_t width) { return c < 0 ? 0 : c > width ? width : c; }

/* Zero the pixels (px floats each) of a row that holds picture columns first .. last-1 and lie outside the picture,
   i.e. outside [clamp_column(first), clamp_column(last)): the convs' zero padding at the left and right edges. */
static inline void zero_outside(float *row, int64_t first, int64_t last, int64_t width, int64_t px) {
    const int64_t lo = clamp_column(first, width), hi = clamp_column(last, width);
    memset(row, 0, (size_t)((lo - first) * px * 4));
    memset(row + (hi - first) * px, 0, (size_t)((last - hi) * px * 4));
}

/* Row r (any integer) of a ring of n rows, size floats each. */
static inline float *ring_row(float *ring, int64_t r, int64_t n, int64_t size) { return ring + ((r % n + n) % n) * size; }

#define MAX_PIXELS 6  /* pixels of one register block */
#define MAX_VECTORS 4 /* 16-float output vectors of one register block */

/* dst[i][0 : 16·nv] = act(bias + sum_k wt[k][0 : 16·nv] · src[i·stride + off(k) + k]) for the np pixels i of a
 * block; off(k) is the offset of k's group (of `groups`): k below ends[0] takes offs[0], below ends[1] offs[1], and
 * so on. wt rows are ldw floats apart. */
static inline __attribute__((always_inline)) void block(const float *src, int64_t stride, const int64_t *offs,
                                                        const int64_t *ends, int groups, const float *wt,
                                                        int64_t ldw, const float *bias, float *dst, int64_t dst_stride,
                                                        int act, const int np, const int nv) {
    __m512 acc[MAX_PIXELS][MAX_VECTORS];
    for (int v = 0; v < nv; v++) {
        __m512 b = _mm512_loadu_ps(bias + 16 * v);
        for (int i = 0; i < np; i++) acc[i][v] = b;
    }
    int64_t k = 0;
    for (int q = 0; q < groups; q++) {
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
    for (int i = 0; i < np; i++)
        for (int v = 0; v < nv; v++)
            _mm512_storeu_ps(dst + i * dst_stride + 16 * v, activate(acc[i][v], act));
}

typedef void (*block_fn)(const float *, int64_t, const int64_t *, const int64_t *, int, const float *, int64_t,
                         const float *, float *, int64_t, int);

#define BLOCK(NP, NV)                                                                                              \
    static void block_##NP##_##NV(const float *src, int64_t stride, const int64_t *offs, const int64_t *ends,      \
                                  int groups, const float *wt, int64_t ldw, const float *bias, float *dst,        \
                                  int64_t dst_stride, int act) {                                                  \
        block(src, stride, offs, ends, groups, wt, ldw, bias, dst, dst_stride, act, NP, NV);                      \
    }
#define BLOCKS(NP) BLOCK(NP, 1) BLOCK(NP, 2) BLOCK(NP, 3) BLOCK(NP, 4)
BLOCKS(1) BLOCKS(2) BLOCKS(3) BLOCKS(4) BLOCKS(5) BLOCKS(6)
#define ROW(NP) {0, block_##NP##_1, block_##NP##_2, block_##NP##_3, block_##NP##_4}
static const block_fn BLOCKS_BY_SIZE[MAX_PIXELS + 1][MAX_VECTORS + 1] = {
    {0}, ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6)};

/* A row of n pixels (consecutive, stride floats apart) through one shift-conv (`groups` groups of input channels,
 * as block() reads them): out_width outputs each (a multiple of 16), written dst_stride floats apart. */
static inline void conv_row(const float *src, int64_t stride, const int64_t *offs, const int64_t *ends, int groups,
                     const float *wt, int64_t out_width, const float *bias, float *dst, int64_t dst_stride, int act,
                     int64_t n) {
    for (int64_t i = 0; i < n; i += MAX_PIXELS) {
        int np = n - i < MAX_PIXELS ? (int)(n - i) : MAX_PIXELS;
        for (int64_t o = 0; o < out_width; o += 16 * MAX_VECTORS) {
            int nv = (out_width - o) / 16 < MAX_VECTORS ? (int)((out_width - o) / 16) : MAX_VECTORS;
            BLOCKS_BY_SIZE[np][nv](src + i * stride, stride, offs, ends, groups, wt + o, out_width, bias + o,
                                   dst + i * dst_stride + o, dst_stride, act);
        }
    }
}

#endif
