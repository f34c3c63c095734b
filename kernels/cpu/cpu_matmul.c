/* cpu_matmul.c — y[T][rows] = x[T][cols] · Wᵀ for every logical weight format.
 *
 * Batch invariance: every y[t][r] is computed by the same sequence of f32 operations whatever T
 * is, whichever kernel runs it and however the rows are split over threads, so that a token
 * gets the same bits alone or inside any batch. Per (row, token) pair:
 *  - F32, F16, BF16, QW8: four 8-lane accumulators acc0..acc3, zero; the i-th 8-column step
 *    (columns 8i .. 8i + 7) goes to chain c = i % 4, lane by lane: acc_c = fma(w, x, acc_c),
 *    where w is the weight as f32 (QW8: s·c, or fma(c, s, o) with offsets: one rounding).
 *    y = hsum8((acc0 + acc1) + (acc2 + acc3)).
 *  - QW4: one accumulator acc, zero. Per full 64-column block b, lane j takes the elements
 *    e = 64b + 8j + k, k = 0..7 (c the unsigned code), in two chains: the odd k starting with
 *    the product c·x, the even k starting with fma(c, x, −8·L) without offsets (L = Σ x over
 *    the lane's 8 elements, the run summed as in sl__mm_group_sums) or c·x with offsets, each
 *    then fma(c, x, p); acc_j = fma(s_(group of 64b + 8j), p_even + p_odd, acc_j). The
 *    columns after the last full block go 8 at a time in plain order: acc = fma(s, c'·x, acc),
 *    c' = c − 8 without offsets. y = hsum8(acc), plus with offsets dot_off(offsets of the row,
 *    group sums of x) (sl__mm_group_sums).
 * hsum8(a) = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)). The chains within a pair are
 * fixed by the column index, so a kernel may run them interleaved (the fused kernel, one row
 * at a time, one memory stream) or one after the other (the tiled kernel, whose ILP comes from
 * 12 (row, token) pairs); the pool splits rows, never columns. The scalar kernel follows the
 * same order with fmaf, so the SIMD and the scalar kernels agree bit for bit on the shapes
 * both cover.
 *
 * Work is split over tiles of MR output rows; a worker computes every token of its rows, so
 * each weight is read from memory once per call. Three kernels:
 *  - fused (AVX2, T <= 4 for QW4, T <= 2 for the others; cpu_matmul_avx2.c): decode a row in
 *    registers and FMA it against the tokens, one row after the other, so each thread reads
 *    one sequential stream. A decode step is bound by decode uops and memory, and this spends
 *    the fewest of both. (Beyond 2 tokens the 4 chains per token of the formats other than QW4
 *    no longer fit in registers.)
 *  - tiled (AVX2, larger T): decode an MR × kc tile into a per-thread buffer (F32 is read in
 *    place), then a register-blocked kernel (MR rows × 3 tokens) runs every token over it, so
 *    decoding is paid once per weight, not once per token. Lane accumulators carry over from
 *    one chain and column tile to the next in a per-thread buffer.
 *  - scalar: plain C, for CPUs without AVX2 and for shapes the SIMD kernels do not cover
 *    (cols % 8 != 0, unusual groups); there the order is the first rule above (also for QW4),
 *    column i in lane i % 8 of chain (i / 8) % 4.
 *
 * Int8 activations (weights created after sl_cpu_backend_set_int8_activations: QW4 and QW8
 * that sl__mmq_covers): as llama.cpp does, each token row of x is quantized per 32 columns,
 * d = amax / 127, q = round-to-nearest-even(x · (127 / amax)) in [−127, 127] (q = 0 where
 * 127 / amax overflows: amax 0 or below ~3.7e-37; a block with a non-finite element gets
 * d = NaN and q = 0, so its results are NaN), and products are summed
 * in integers, exact in any order. Per (row, token) pair, with parts of min(group, 32)
 * columns in column order: L = Σ c'·q over the part (c' = c − 8 for QW4 without offsets, else
 * c), acc = fma(L, s_(group) · d_(unit), acc) from acc = 0; with offsets, off = fma(o_g, xg_g,
 * off) over the groups in order from 0, xg_g the sum of the quantized x over group g (per
 * part (float)Σq · d, added in order), so that y = acc + off is the product of the weights
 * with the quantized x; without, y = acc. The scalar kernel reads the logical arrays, the SIMD
 * ones (AVX2 vpmaddubsw, AVX-512 VNNI vpdpbusd; cpu_matmul_avx2.c) a layout of 8-row panels
 * (sl__mmq_pack) in which each lane is a row; all compute the same integers L and the same
 * float sequence, so they agree bit for bit, and a pair depends only on its row and token.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/base.h"
#include "cpu_matmul.h"

#define MR SL_MM_MR
#define KC_TARGET 512 /* columns per decoded tile (a multiple of the group and of 64) */

enum { K_SCALAR, K_FUSED, K_TILED };

typedef struct mm_call {
    sl__mm_job j;
    int kernel;
} mm_call;
typedef sl__mm_job mm_job;

static int is_q(sl_wfmt f) { return f == SL_WF_QW8 || f == SL_WF_QW4; }

static int64_t kc_for(const sl_qw *w) {
    if (w->fmt == SL_WF_F32) return w->cols; /* read in place: no tile, no chunking */
    if (!is_q(w->fmt)) return KC_TARGET;
    int64_t g = w->group;
    return g >= KC_TARGET ? g : g * (KC_TARGET / g);
}

size_t sl__cpu_tile_floats(const sl_qw *w) {
    if (w->fmt == SL_WF_F32) return 0;
    int64_t kc = kc_for(w);
    /* QW4 also keeps a scale vector per block and per tail step (the tiled kernel's sv) */
    return (size_t)(MR * (kc + (w->fmt == SL_WF_QW4 ? kc / 8 + 64 : 0)));
}

/* ---- scalar ----------------------------------------------------------------------------- */

static float hsum8(const float *a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* Σ a·b: an 8-lane FMA chain, hsum8, then the tail by FMAs (as the AVX2 dot_off). */
static float dot_off(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] = fmaf(a[i + l], b[i + l], acc[l]);
    float s = hsum8(acc);
    for (; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

void sl__mm_group_sums(const float *x, int64_t cols, int64_t G, float *xg) {
    for (int64_t g = 0; g < cols / G; g++) {
        double s = 0;
        for (const float *p = x + g * G; p < x + (g + 1) * G; p += 8)
            s += ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
        xg[g] = (float)s;
    }
}

/* Code of element i of a QW4 row (c − 8 without offsets). */
static float q4code(const uint8_t *c4, int64_t i, int off) {
    int q = (i & 1) ? c4[i >> 1] >> 4 : c4[i >> 1] & 15;
    return (float)(off ? q : q - 8);
}

/* Element i of row r as f32, formed as the kernels form it. */
static float weight(const sl_qw *w, int64_t r, int64_t i) {
    const int64_t cols = w->cols;
    switch (w->fmt) {
    case SL_WF_F32: return ((const float *)w->data)[r * cols + i];
    case SL_WF_F16: return sl_fp16_to_f32(((const uint16_t *)w->data)[r * cols + i]);
    case SL_WF_BF16: return sl_bf16_to_f32(((const uint16_t *)w->data)[r * cols + i]);
    default: break;
    }
    const int64_t g = r * (cols / w->group) + i / w->group;
    const int off = w->offsets != NULL;
    float c = w->fmt == SL_WF_QW8 ? (float)((const int8_t *)w->codes)[r * cols + i]
                                  : q4code((const uint8_t *)w->codes + r * (cols / 2), i, off);
    return off ? fmaf(c, w->scales[g], w->offsets[g]) : c * w->scales[g];
}

/* One (row, token) pair in the formed-weight order. */
static float pair_plain(const sl_qw *w, int64_t r, const float *x) {
    float acc[4][8] = {{0}}, v[8];
    for (int64_t i = 0; i < w->cols; i++)
        acc[(i / 8) & 3][i & 7] = fmaf(weight(w, r, i), x[i], acc[(i / 8) & 3][i & 7]);
    for (int l = 0; l < 8; l++) v[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    return hsum8(v);
}

/* One (row, token) pair in the QW4 block order (cols % 8 == 0, group % 8 == 0). */
static float pair_qw4(const sl_qw *w, int64_t r, const float *x, const float *xg) {
    const int64_t cols = w->cols, G = w->group, ng = cols / G, nb = cols / 64;
    const int off = w->offsets != NULL;
    const uint8_t *c4 = (const uint8_t *)w->codes + r * (cols / 2);
    const float *sc = w->scales + r * ng;
    float acc[8] = {0};
    for (int64_t b = 0; b < nb; b++)
        for (int j = 0; j < 8; j++) {
            const int64_t e = 64 * b + 8 * j;
            const float *q = x + e;
            float p[2];
            for (int k = 0; k < 8; k++) {
                float cx = q4code(c4, e + k, 1); /* c: the −8 is the even chain's start */
                if (k >= 2) p[k & 1] = fmaf(cx, q[k], p[k & 1]);
                else if (k == 1 || off) p[k] = cx * q[k];
                else p[0] = fmaf(cx, q[0], -8.0f * (((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]))));
            }
            acc[j] = fmaf(sc[e / G], p[0] + p[1], acc[j]);
        }
    for (int64_t k = nb * 64; k < cols; k += 8)
        for (int l = 0; l < 8; l++) acc[l] = fmaf(sc[k / G], q4code(c4, k + l, off) * x[k + l], acc[l]);
    float y = hsum8(acc);
    if (off) y += dot_off(w->offsets + r * ng, xg, ng);
    return y;
}

static void mm_scalar(const mm_job *j, int64_t tb, int64_t te) {
    const sl_qw *w = j->w;
    const int64_t rows = j->rows, cols = j->cols;
    const int blocks = w->fmt == SL_WF_QW4 && sl__mm_avx2_covers(w);
    const int64_t ng = blocks ? cols / w->group : 0;
    int64_t r1 = te * MR < rows ? te * MR : rows;
    for (int64_t r = tb * MR; r < r1; r++)
        for (int t = 0; t < j->T; t++) {
            const float *x = j->x + (int64_t)t * cols;
            j->y[(int64_t)t * rows + r] =
                blocks ? pair_qw4(w, r, x, j->xg ? j->xg + t * ng : NULL) : pair_plain(w, r, x);
        }
}

static int grow(float **buf, size_t *have, size_t need);

/* ---- int8 activations ------------------------------------------------------------------ */

int sl__mmq_covers(const sl_qw *w) {
    const int64_t G = w->group;
    if (w->fmt != SL_WF_QW4 && w->fmt != SL_WF_QW8) return 0;
    return w->cols % SL_MMQ_U == 0 && (G == 8 || G == 16 || G % SL_MMQ_U == 0);
}

/* Code of element i of row r as an integer (QW4 without offsets: c − 8). */
static int code_at(const sl_qw *w, int64_t r, int64_t i) {
    if (w->fmt == SL_WF_QW8) return ((const int8_t *)w->codes)[r * w->cols + i];
    return (int)q4code((const uint8_t *)w->codes + r * (w->cols / 2), i, w->offsets != NULL);
}

/* Zeroed, 64-byte aligned (so that no 32-byte vector load crosses a cache line); NULL if out
 * of memory. */
static void *zalloc64(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    memset(p, 0, bytes);
    return p;
}

/* Panel layout. Rows go in panels of 8 (row 8p + j is lane j of panel p; the last panel's
 * missing rows have zero codes, scales and offsets). Per panel and 32-column unit u, 8 dword
 * lanes per 32-byte vector:
 *  - QW8: 256 bytes, vector v = 0..7, byte 4j + m of it: (code of row 8p + j, column
 *    32u + 4v + m) + 128, as an unsigned byte (c ^ 0x80);
 *  - QW4: 128 bytes, vector k = 0..3, byte 4j + m: the raw 4-bit code of column 32u + 4k + m
 *    in the low nibble, that of column 32u + 16 + 4k + m in the high one.
 * So, QW4's nibbles split, vector v of a unit always holds columns 32u + 4v .. + 3 of 8 rows.
 * Scales and offsets: per panel, per group, the 8 rows' values. */
typedef struct pack_job {
    const sl_qw *w;
    sl__mmq_panels *pk;
} pack_job;

static void pack_range(void *ctx, int64_t pb, int64_t pe, int tid) {
    (void)tid;
    const pack_job *pj = ctx;
    const sl_qw *w = pj->w;
    const int64_t cols = w->cols, nu = cols / SL_MMQ_U, ng = cols / w->group, rb = sl_qw_row_bytes(w);
    const int q4 = w->fmt == SL_WF_QW4;
    const size_t ub = q4 ? 128 : 256;
    for (int64_t r = pb * 8; r < pe * 8 && r < w->rows; r++) {
        const int64_t p = r / 8, j = r % 8;
        const uint8_t *src = (const uint8_t *)w->codes + r * rb;
        uint8_t *dst = pj->pk->codes + (size_t)(p * nu) * ub + 4 * j;
        for (int64_t u = 0; u < nu; u++, dst += ub) {
            if (q4) {
                uint8_t n[SL_MMQ_U]; /* the unit's 32 nibbles */
                for (int i = 0; i < 16; i++) {
                    n[2 * i] = src[16 * u + i] & 15;
                    n[2 * i + 1] = src[16 * u + i] >> 4;
                }
                for (int v = 0; v < 4; v++)
                    for (int m = 0; m < 4; m++) dst[32 * v + m] = (uint8_t)(n[4 * v + m] | n[16 + 4 * v + m] << 4);
            } else {
                for (int v = 0; v < 8; v++)
                    for (int m = 0; m < 4; m++) dst[32 * v + m] = src[SL_MMQ_U * u + 4 * v + m] ^ 0x80;
            }
        }
        for (int64_t g = 0; g < ng; g++) {
            pj->pk->scales[(p * ng + g) * 8 + j] = w->scales[r * ng + g];
            if (w->offsets) pj->pk->offsets[(p * ng + g) * 8 + j] = w->offsets[r * ng + g];
        }
    }
}

int sl__mmq_pack(const sl_qw *w, sl__mmq_panels *pk, sl_pool *pool) {
    const int64_t cols = w->cols, ng = cols / w->group, np = (w->rows + 7) / 8;
    const size_t unit_bytes = w->fmt == SL_WF_QW4 ? 128 : 256;
    memset(pk, 0, sizeof *pk);
    pk->codes = zalloc64((size_t)(np * (cols / SL_MMQ_U)) * unit_bytes);
    pk->scales = zalloc64((size_t)(np * ng * 8) * sizeof(float));
    pk->offsets = w->offsets ? zalloc64((size_t)(np * ng * 8) * sizeof(float)) : NULL;
    if (!pk->codes || !pk->scales || (w->offsets && !pk->offsets)) {
        sl__mmq_free(pk);
        return SL_ENOMEM;
    }
    pack_job pj = {w, pk};
    sl_pool_run(pool, pack_range, &pj, np, 1 + (1 << 16) / (8 * cols));
    return 0;
}

void sl__mmq_free(sl__mmq_panels *pk) {
    free(pk->codes);
    free(pk->scales);
    free(pk->offsets);
    memset(pk, 0, sizeof *pk);
}

void sl__mmq_dequant_row(const sl_qw *w, const sl__mmq_panels *pk, int64_t r, float *dst) {
    const int64_t cols = w->cols, G = w->group, ng = cols / G, p = r / 8, j = r % 8;
    const int q4 = w->fmt == SL_WF_QW4, off = w->offsets != NULL;
    const size_t unit_bytes = q4 ? 128 : 256;
    for (int64_t e = 0; e < cols; e++) {
        const int64_t u = e / SL_MMQ_U, o = e % SL_MMQ_U;
        const uint8_t *src = pk->codes + (size_t)(p * (cols / SL_MMQ_U) + u) * unit_bytes + 4 * j;
        int c;
        if (q4) {
            uint8_t b = src[32 * ((o % 16) / 4) + o % 4];
            c = (o < 16 ? b & 15 : b >> 4) - (off ? 0 : 8);
        } else {
            c = (int8_t)(src[32 * (o / 4) + o % 4] ^ 0x80);
        }
        const float s = pk->scales[(p * ng + e / G) * 8 + j];
        dst[e] = off ? s * (float)c + pk->offsets[(p * ng + e / G) * 8 + j] : s * (float)c;
    }
}

/* Parts: the int8 order sums min(group, 32) columns at a time. */
static int64_t part_of(const sl_qw *w) { return w->group < SL_MMQ_U ? w->group : SL_MMQ_U; }

/* One 32-column unit: q, *d and s4[8], the sums of q's runs of 4 (cpu_matmul.c's header);
 * sl__mmq_quant_unit_avx2 computes the same. */
void sl__mmq_quant_unit(const float *xu, int8_t *q, float *d, int32_t *s4) {
    const float round = 12582912.0f; /* 1.5 · 2^23: v + round − round is v rounded to even */
    float amax = 0;
    int bad = 0;
    for (int k = 0; k < SL_MMQ_U; k++) {
        float a = fabsf(xu[k]);
        bad |= !(a <= 3.4028235e38f);
        amax = a > amax ? a : amax;
    }
    *d = bad ? NAN : amax / 127.0f;
    /* amax 0, or so small that 127 / amax overflows: all codes 0 */
    const float id0 = 127.0f / amax, id = bad || !(id0 <= 3.4028235e38f) ? 0.0f : id0;
    for (int k = 0; k < SL_MMQ_U; k++) {
        float v = (xu[k] * id + round) - round;
        v = v > 127 ? 127 : v < -127 ? -127 : v;
        q[k] = bad ? 0 : (int8_t)v;
    }
    for (int l = 0; l < 8; l++) s4[l] = q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3];
}

/* One token row: q, d, the parts' lane starts init (NULL: none; mul·Σq over each part) and
 * with offsets xg (NULL: none), the sums of the quantized x over each group of G. */
static void quantize_row(const float *x, int64_t cols, int64_t part, int32_t mul, int64_t G,
                         int simd, int8_t *q, float *d, int32_t *init, float *xg) {
    const int64_t nu = cols / SL_MMQ_U, per = SL_MMQ_U / part; /* parts per unit */
    for (int64_t u = 0; u < nu; u++) {
        int32_t s4[8], n[4] = {0};
        if (simd) sl__mmq_quant_unit_avx2(x + u * SL_MMQ_U, q + u * SL_MMQ_U, d + u, s4);
        else sl__mmq_quant_unit(x + u * SL_MMQ_U, q + u * SL_MMQ_U, d + u, s4);
        for (int l = 0; l < 8; l++) n[l / (part / 4)] += s4[l];
        for (int64_t k = 0; k < per; k++) {
            if (init) init[u * per + k] = mul * n[k];
            if (!xg) continue;
            /* per group, (float)Σq · d of each part in it, summed in order */
            const int64_t e = u * SL_MMQ_U + k * part;
            if (e % G == 0) xg[e / G] = 0;
            xg[e / G] += (float)n[k] * d[u];
        }
    }
}

/* One (row, token) pair in the int8 order (cpu_matmul.c's header), from the logical arrays. */
static float pair_i8(const sl_qw *w, int64_t r, const int8_t *q, const float *d, const float *xg) {
    const int64_t cols = w->cols, G = w->group, ng = cols / G, part = part_of(w);
    float acc = 0, off = 0;
    for (int64_t e = 0; e < cols; e += part) {
        int32_t L = 0;
        for (int64_t k = 0; k < part; k++) L += code_at(w, r, e + k) * q[e + k];
        acc = fmaf((float)L, w->scales[r * ng + e / G] * d[e / SL_MMQ_U], acc);
    }
    if (w->offsets)
        for (int64_t g = 0; g < ng; g++) off = fmaf(w->offsets[r * ng + g], xg[g], off);
    return acc + off;
}

typedef struct mmq_call {
    sl__mmq_job j;
    int32_t mul; /* init's factor, 0: no init */
    const float *x;
} mmq_call;

static void mmq_quant_range(void *ctx, int64_t tb, int64_t te, int tid) {
    (void)tid;
    const mmq_call *m = ctx;
    const int64_t cols = m->j.cols, G = m->j.w->group, ng = cols / G, part = part_of(m->j.w);
    for (int64_t t = tb; t < te; t++)
        quantize_row(m->x + t * cols, cols, part, m->mul, G, m->j.pk != NULL, (int8_t *)m->j.q + t * cols,
                     (float *)m->j.d + t * (cols / SL_MMQ_U),
                     m->mul ? (int32_t *)m->j.init + t * (cols / part) : NULL,
                     m->j.xg ? (float *)m->j.xg + t * ng : NULL);
}

static void mmq_range(void *ctx, int64_t tb, int64_t te, int tid) {
    (void)tid;
    const sl__mmq_job *j = &((const mmq_call *)ctx)->j;
    if (j->pk) {
        sl__mmq_avx2(j, tb, te);
        return;
    }
    const int64_t cols = j->cols, ng = cols / j->w->group;
    int64_t r1 = te * MR < j->rows ? te * MR : j->rows;
    for (int64_t r = tb * MR; r < r1; r++)
        for (int t = 0; t < j->T; t++)
            j->y[(int64_t)t * j->rows + r] =
                pair_i8(j->w, r, j->q + (int64_t)t * cols, j->d + (int64_t)t * (cols / SL_MMQ_U),
                        j->xg ? j->xg + (int64_t)t * ng : NULL);
}

void sl__cpu_matmul_i8(sl_cpu *c, const sl_qw *w, const sl__mmq_panels *pk, const float *x,
                       float *y, int T) {
    SL_CHECK(w && x && y && T >= 0 && sl__mmq_covers(w) && (!pk || c->simd));
    if (T == 0 || w->rows == 0) return;
    const int64_t cols = w->cols, ng = cols / w->group, part = part_of(w);
    const int q4 = w->fmt == SL_WF_QW4, off = w->offsets != NULL;
    mmq_call m = {.j = {.w = w, .pk = pk, .y = y, .T = T, .rows = w->rows, .cols = cols,
                        .level = c->simd >= 3 ? 3 : 1},
                  .x = x};
    /* lane starts for the SIMD kernels that take them: QW4 without offsets, QW8 through VNNI */
    m.mul = !pk ? 0 : q4 ? (off ? 0 : -8) : m.j.level == 3 ? -128 : 0;
    /* floats: codes (4 per float), scales, lane starts, group sums */
    size_t per = (size_t)(cols / 4 + cols / SL_MMQ_U + (m.mul ? cols / part : 0) + (off ? ng : 0));
    SL_CHECK(grow(&c->xbuf, &c->xbuf_floats, per * (size_t)T) == 0);
    float *p = c->xbuf;
    m.j.q = (const int8_t *)p;
    p += (size_t)T * (cols / 4);
    m.j.d = p;
    p += (size_t)T * (cols / SL_MMQ_U);
    if (m.mul) {
        m.j.init = (const int32_t *)p;
        p += (size_t)T * (cols / part);
    }
    if (off) m.j.xg = p;
    sl_pool_run(c->pool, mmq_quant_range, &m, T, 1 + (1 << 14) / cols);
    /* the SIMD kernels take panels of 8 rows, the scalar one tiles of MR */
    const int64_t rows_per = pk ? 8 : MR, items = (w->rows + rows_per - 1) / rows_per;
    sl_pool_run(c->pool, mmq_range, &m, items, 1 + (1 << 17) / (rows_per * cols * T));
}

/* ---- dispatch --------------------------------------------------------------------------- */

static void mm_range(void *ctx, int64_t tb, int64_t te, int tid) {
    const mm_call *c = ctx;
    switch (c->kernel) {
    case K_FUSED: sl__mm_fused_avx2(&c->j, tb, te); return;
    case K_TILED: sl__mm_tiled_avx2(&c->j, tb, te, tid); return;
    default: mm_scalar(&c->j, tb, te); return;
    }
}

/* Grows a 64-aligned scratch buffer to at least need floats; 0 or SL_ENOMEM. */
static int grow(float **buf, size_t *have, size_t need) {
    if (need <= *have) return 0;
    float *p = NULL;
    size_t n = need + need / 2;
    if (posix_memalign((void **)&p, 64, n * sizeof(float)) != 0) return SL_ENOMEM;
    free(*buf);
    *buf = p;
    *have = n;
    return 0;
}

/* The activations as the kernels read them (see sl__mm_job): QW4 blocks permuted for the SIMD
 * kernels, the group sums of x for QW4 with offsets, and the tiled kernel's accumulators.
 * Returns 0 or SL_ENOMEM. */
static int prepare_x(sl_cpu *c, mm_call *m) {
    const sl_qw *w = m->j.w;
    const int64_t T = m->j.T, cols = m->j.cols;
    if (m->kernel == K_TILED) {
        size_t per = (size_t)T * 4 * MR * 8;
        if (grow(&c->accb, &c->accb_floats, per * (size_t)c->n_threads)) return SL_ENOMEM;
        m->j.accb = c->accb;
        m->j.accb_floats = per;
    }
    if (w->fmt != SL_WF_QW4 || !sl__mm_avx2_covers(w)) return 0;
    const int perm = m->kernel != K_SCALAR, sums = w->offsets != NULL, lanes = perm && !sums;
    const int64_t ng = cols / w->group;
    size_t need = (size_t)((perm ? T * cols : 0) + (sums ? T * ng : 0) + (lanes ? T * (cols / 8) : 0));
    if (grow(&c->xbuf, &c->xbuf_floats, need)) return SL_ENOMEM;
    float *xp = c->xbuf, *xg = xp + (perm ? T * cols : 0), *xl = xg + (sums ? T * ng : 0);
    for (int64_t t = 0; t < T; t++) {
        if (perm) sl__mm_prep_avx2(m->j.x + t * cols, cols, xp + t * cols, lanes ? xl + t * (cols / 8) : NULL);
        if (sums) sl__mm_group_sums(m->j.x + t * cols, cols, w->group, xg + t * ng);
    }
    if (perm) m->j.xp = xp;
    if (sums) m->j.xg = xg;
    if (lanes) m->j.xl = xl;
    return 0;
}

void sl__cpu_matmul(sl_cpu *c, const sl_qw *w, const float *x, float *y, int T) {
    SL_CHECK(w && x && y && T >= 0);
    if (T == 0 || w->rows == 0) return;
    mm_call m = {.j = {.w = w, .x = x, .xp = x, .y = y, .T = T, .rows = w->rows,
                       .cols = w->cols, .kc = kc_for(w)}};
    size_t tf = sl__cpu_tile_floats(w);
    if (tf > c->tile_floats) SL_CHECK(sl__cpu_reserve_tiles(c, tf) == 0); /* normally done at weight_create */
    m.j.wide = c->simd >= 2;
    m.j.tiles = c->tiles;
    m.j.tile_floats = c->tile_floats;
    if (!c->simd || !sl__mm_avx2_covers(w)) m.kernel = K_SCALAR;
    else m.kernel = T <= (w->fmt == SL_WF_QW4 ? SL_MM_FUSED_MAX_T : 2) ? K_FUSED : K_TILED;
    SL_CHECK(prepare_x(c, &m) == 0);
    int64_t ntiles = (w->rows + MR - 1) / MR;
    /* at least ~128K multiply-adds per thread, or waking a worker costs more than it saves */
    int64_t per_tile = (int64_t)MR * w->cols * T;
    sl_pool_run(c->pool, mm_range, &m, ntiles, 1 + (1 << 17) / per_tile);
}
