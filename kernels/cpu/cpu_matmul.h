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
    int wide;               /* 1: the CPU has AVX-512VL (32 vector registers; cpu->simd >= 2) */
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

/* ---- int8 activations (cpu_matmul.c describes the order and the panel layout) ---------- */

#define SL_MMQ_U 32 /* columns per activation scale (a unit) */

/* A QW4/QW8 weight in panels of 8 rows, for the SIMD int8 kernels (sl__mmq_pack). */
typedef struct sl__mmq_panels {
    uint8_t *codes; /* [(rows + 7) / 8][cols / 32][128 (QW4) or 256 (QW8) bytes] */
    float *scales;  /* [(rows + 7) / 8][cols / group][8] */
    float *offsets; /* the same, or NULL */
} sl__mmq_panels;

typedef struct sl__mmq_job {
    const sl_qw *w;              /* the format; its arrays when pk is NULL (scalar kernel) */
    const sl__mmq_panels *pk;    /* the SIMD kernels' layout, or NULL */
    const int8_t *q;             /* [T][cols]: x quantized per 32 columns (plain order) */
    const float *d;              /* [T][cols / 32] the activation scales */
    const int32_t *init;         /* [T][cols / part]: −8·Σq (QW4 without offsets) or −128·Σq
                                  * (QW8 through VNNI) over each part; NULL where no kernel
                                  * takes it (scalar, QW4 with offsets, QW8 on AVX2) */
    const float *xg;             /* with offsets: [T][cols / group] group sums of the quantized x */
    float *y;                    /* [T][rows] */
    int T;
    int level;                   /* 1 AVX2, 3 AVX-512VL + VNNI (SIMD kernels) */
    int64_t rows, cols;
} sl__mmq_job;

/* 1 when the int8-activation kernels cover w: QW4 or QW8 with cols % 32 == 0 and a group of 8,
 * 16 or a multiple of 32. */
int sl__mmq_covers(const sl_qw *w);
/* Packs w (covered) into panels on the pool's threads; 0 or SL_ENOMEM (free with
 * sl__mmq_free). */
int sl__mmq_pack(const sl_qw *w, sl__mmq_panels *pk, sl_pool *pool);
void sl__mmq_free(sl__mmq_panels *pk);
/* Row r of a packed w as f32, as sl_qw_dequant_row gives it from the logical arrays. */
void sl__mmq_dequant_row(const sl_qw *w, const sl__mmq_panels *pk, int64_t r, float *dst);
/* y = x · Wᵀ with int8 activations: panels through the SIMD kernels at c->simd's level, or
 * the logical arrays through the scalar kernel (pk NULL); the same bits either way. */
void sl__cpu_matmul_i8(sl_cpu *c, const sl_qw *w, const sl__mmq_panels *pk, const float *x,
                       float *y, int T);
/* One 32-column unit of a token row quantized: q[32], *d, and s4[8] the sums of q's runs of 4
 * (scalar, and AVX2 with the same bits). */
void sl__mmq_quant_unit(const float *xu, int8_t *q, float *d, int32_t *s4);
void sl__mmq_quant_unit_avx2(const float *xu, int8_t *q, float *d, int32_t *s4);
/* Panels [pb, pe) (8 rows each), every token. */
void sl__mmq_avx2(const sl__mmq_job *j, int64_t pb, int64_t pe);

#endif
