/* cpu_matmul.h — private to cpu_matmul*.c: one matmul call as the kernels see it, and the one
 * summation order every kernel follows (cpu_matmul.c describes it). */
#ifndef SL_CPU_MATMUL_H
#define SL_CPU_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_internal.h"

#define SL_MM_MR 4          /* output rows per pool item (and per tiled-kernel tile) */
#define SL_MM_FUSED_MAX_T 4 /* the fused kernel takes T <= this for QW4 (2 for the other
                             * formats); the tiled kernel the rest */

typedef struct sl__mm_job {
    const sl_qw *w;
    const float *x;  /* [T][cols] as the caller gave it (scalar kernel) */
    const float *xp; /* [T][cols] as the SIMD kernels read it: for QW4 every full 64-element block
                      * is permuted so that element 8j + k sits at 8k + j (dword lane j of a
                      * 32-byte code load holds elements 8j .. 8j + 7); otherwise x itself */
    const float *xg; /* QW4 with offsets: [T][cols / group] group sums of x (sl__mm_group_sums);
                      * else NULL */
    const float *xl; /* QW4 without offsets, SIMD kernels: [T][cols / 8] −8 × the lane sums of
                      * xp's full blocks (lane j of block b: the sum of x[64b + 8j ..][8], summed
                      * as in sl__mm_group_sums); else NULL */
    float *y;        /* [T][rows] */
    int T;
    int wide;               /* 1: the CPU has AVX-512VL (32 vector registers; cpu->simd == 2) */
    int64_t rows, cols, kc; /* kc: columns per decoded tile */
    float *tiles;           /* per thread: tile_floats (sl__cpu_tile_floats) */
    size_t tile_floats;
    float *accb;            /* tiled kernel, per thread: [T][4][SL_MM_MR][8] lane accumulators */
    size_t accb_floats;
} sl__mm_job;

/* For one token row x[cols] (cols % 8 == 0): xp gets x with every full 64-element block
 * permuted as sl__mm_job.xp describes; xl (when not NULL) −8 × its lane sums (sl__mm_job.xl). */
void sl__mm_prep_avx2(const float *x, int64_t cols, float *xp, float *xl);
/* xg[cols / G] = the sums of x over each group of G (G % 8 == 0): the runs of 8 summed
 * ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)) in f32, those added in order in double. */
void sl__mm_group_sums(const float *x, int64_t cols, int64_t G, float *xg);
/* 1 when the AVX2 kernels cover w: cols % 8 == 0, and for QW8/QW4 a group that is a multiple
 * of 8 (QW4: 8, 16, 32 or a multiple of 64, so that scale lanes follow the permuted blocks). */
int sl__mm_avx2_covers(const sl_qw *w);
/* Rows [tb·MR, te·MR) for T <= SL_MM_FUSED_MAX_T: decode in registers, a few rows at a time. */
void sl__mm_fused_avx2(const sl__mm_job *j, int64_t tb, int64_t te);
/* Tiles [tb, te) for any T: decode MR × kc tiles into thread tid's buffer, then FMA all tokens. */
void sl__mm_tiled_avx2(const sl__mm_job *j, int64_t tb, int64_t te, int tid);

/* ---- int8 activations (sl_cpu.act_i8; cpu_matmul.c describes the order) -------------- */

#define SL_MMQ_U 32 /* columns per activation scale */

typedef struct sl__mmq_job {
    const sl_qw *w;
    const int8_t *q;      /* [T][cols]: x quantized per 32 columns (sl__mmq_quantize); for QW4
                           * each 64-column block holds its even elements, then its odd ones */
    const float *d;       /* [T][cols / 32] the activation scales */
    const int32_t *init;  /* the SIMD kernels' lane starts (sl__mmq_quantize), else NULL */
    const float *xg;      /* with offsets: [T][cols / group] group sums of the quantized x, else NULL */
    float *y;             /* [T][rows] */
    int T;
    int level;            /* 0 scalar, 1 AVX2, 3 AVX-512VL + VNNI */
    int64_t rows, cols;
} sl__mmq_job;

/* 1 when the int8-activation kernels cover w: QW4 with cols % 64 == 0 and a group of 8, 16, 32
 * or a multiple of 64; QW8 with cols % 32 == 0 and a group of 8, 16 or a multiple of 32. */
int sl__mmq_covers(const sl_qw *w);
/* Rows [tb·MR, te·MR), every token (AVX2 or VNNI as j->level says). */
void sl__mmq_avx2(const sl__mmq_job *j, int64_t tb, int64_t te);
/* cpu_matmul.c's dot_off: Σ a·b, an 8-lane FMA chain, hsum8, then the tail. */
float sl__mm_dot_off(const float *a, const float *b, int64_t n);

#endif
