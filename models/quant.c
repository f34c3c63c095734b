#include "quant.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../base/pool.h"
#include "gguf.h"

/* Our own block table (gguf.c has the public one); FORMATS.md §2. */
typedef struct blkinfo {
    int blck, bytes;
} blkinfo;

static blkinfo blk_of(uint32_t type) {
    switch (type) {
    case SL_GGML_F32: return (blkinfo){1, 4};
    case SL_GGML_F16: return (blkinfo){1, 2};
    case SL_GGML_BF16: return (blkinfo){1, 2};
    case SL_GGML_Q4_0: return (blkinfo){32, 18};
    case SL_GGML_Q4_1: return (blkinfo){32, 20};
    case SL_GGML_Q5_0: return (blkinfo){32, 22};
    case SL_GGML_Q5_1: return (blkinfo){32, 24};
    case SL_GGML_Q8_0: return (blkinfo){32, 34};
    case SL_GGML_Q4_K: return (blkinfo){256, 144};
    case SL_GGML_Q5_K: return (blkinfo){256, 176};
    case SL_GGML_Q6_K: return (blkinfo){256, 210};
    default: return (blkinfo){0, 0};
    }
}

/* Block fields are little-endian and unaligned. */
static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static inline float h2f(const uint8_t *p) { return sl_fp16_to_f32(rd16(p)); }

/* ggml's get_scale_min_k4 for all eight sub-blocks. */
static inline void kscales(const uint8_t *s, int sc[8], int m[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 15) | (s[j] >> 6) << 4;
        m[j + 4] = (s[j + 8] >> 4) | (s[j + 4] >> 6) << 4;
    }
}

/* ---- reference dequantizers ------------------------------------------------------------ */
/* Each mirrors ggml's dequantize_row_* operation for operation: int code → float, then the
 * same products and sums in the same order, so results are identical bit for bit. */

static void dq_q8_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int e = 0; e < 32; e++) y[e] = (float)qs[e] * d;
}

static void dq_q4_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 15) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void dq_q4_1(const uint8_t *b, float *y) {
    float d = h2f(b), m = h2f(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 15) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

static void dq_q5_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    uint32_t h = rd32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int q0 = (qs[j] & 15) | (int)((h >> j) & 1) << 4;
        int q1 = (qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
        y[j] = (float)(q0 - 16) * d;
        y[j + 16] = (float)(q1 - 16) * d;
    }
}

static void dq_q5_1(const uint8_t *b, float *y) {
    float d = h2f(b), m = h2f(b + 2);
    uint32_t h = rd32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int q0 = (qs[j] & 15) | (int)((h >> j) & 1) << 4;
        int q1 = (qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
        y[j] = (float)q0 * d + m;
        y[j + 16] = (float)q1 * d + m;
    }
}

static void dq_q4_k(const uint8_t *b, float *y) {
    float d = h2f(b), dmin = h2f(b + 2);
    int sc[8], m[8];
    kscales(b + 4, sc, m);
    const uint8_t *qs = b + 16;
    for (int c = 0; c < 4; c++) {
        float d1 = d * (float)sc[2 * c], m1 = dmin * (float)m[2 * c];
        float d2 = d * (float)sc[2 * c + 1], m2 = dmin * (float)m[2 * c + 1];
        for (int l = 0; l < 32; l++) {
            y[64 * c + l] = d1 * (float)(qs[32 * c + l] & 15) - m1;
            y[64 * c + 32 + l] = d2 * (float)(qs[32 * c + l] >> 4) - m2;
        }
    }
}

static void dq_q5_k(const uint8_t *b, float *y) {
    float d = h2f(b), dmin = h2f(b + 2);
    int sc[8], m[8];
    kscales(b + 4, sc, m);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int c = 0; c < 4; c++) {
        float d1 = d * (float)sc[2 * c], m1 = dmin * (float)m[2 * c];
        float d2 = d * (float)sc[2 * c + 1], m2 = dmin * (float)m[2 * c + 1];
        for (int l = 0; l < 32; l++) {
            int q0 = (qs[32 * c + l] & 15) | ((qh[l] >> (2 * c)) & 1) << 4;
            int q1 = (qs[32 * c + l] >> 4) | ((qh[l] >> (2 * c + 1)) & 1) << 4;
            y[64 * c + l] = d1 * (float)q0 - m1;
            y[64 * c + 32 + l] = d2 * (float)q1 - m2;
        }
    }
}

/* Q6_K code of element 128h + 32k + l (FORMATS.md §2), 0..63. */
static inline int q6k_code(const uint8_t *ql, const uint8_t *qh, int h, int k, int l) {
    int lo = ql[64 * h + l + 32 * (k & 1)];
    lo = k < 2 ? lo & 15 : lo >> 4;
    return lo | ((qh[32 * h + l] >> (2 * k)) & 3) << 4;
}

static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h2f(b + 208);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int e = 128 * h + 32 * k + l;
                /* ggml: d * sc[is] * q, left to right */
                y[e] = d * (float)sc[e / 16] * (float)(q6k_code(ql, qh, h, k, l) - 32);
            }
}

void sl_dequant_row(uint32_t type, const void *src, float *dst, int64_t n) {
    blkinfo bi = blk_of(type);
    SL_CHECK(bi.blck > 0 && n >= 0 && n % bi.blck == 0);
    const uint8_t *b = src;
    int64_t nb = n / bi.blck;
    switch (type) {
    case SL_GGML_F32: memcpy(dst, src, (size_t)n * 4); return;
    case SL_GGML_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = h2f(b + 2 * i);
        return;
    case SL_GGML_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = sl_bf16_to_f32(rd16(b + 2 * i));
        return;
    default: break;
    }
    void (*fn)(const uint8_t *, float *) = NULL;
    switch (type) {
    case SL_GGML_Q8_0: fn = dq_q8_0; break;
    case SL_GGML_Q4_0: fn = dq_q4_0; break;
    case SL_GGML_Q4_1: fn = dq_q4_1; break;
    case SL_GGML_Q5_0: fn = dq_q5_0; break;
    case SL_GGML_Q5_1: fn = dq_q5_1; break;
    case SL_GGML_Q4_K: fn = dq_q4_k; break;
    case SL_GGML_Q5_K: fn = dq_q5_k; break;
    case SL_GGML_Q6_K: fn = dq_q6_k; break;
    }
    for (int64_t i = 0; i < nb; i++) fn(b + i * bi.bytes, dst + i * bi.blck);
}

/* ---- repack into the logical formats ----------------------------------------------------- */

/* ggml splits a 2n-element run of nibbles as "elements 0..n-1 in the low nibbles of qs[0..n-1],
 * n..2n-1 in the high nibbles"; QW4 packs elements 2k, 2k+1 into byte k. */
static inline void unsplit_nibbles(const uint8_t *qs, int n, uint8_t *out) {
    for (int k = 0; k < n / 2; k++)
        out[k] = (uint8_t)((qs[2 * k] & 15) | (qs[2 * k + 1] & 15) << 4);
    for (int k = 0; k < n / 2; k++)
        out[n / 2 + k] = (uint8_t)((qs[2 * k] >> 4) | (qs[2 * k + 1] & 0xf0));
}

/* One row of nb blocks. codes/scales/offsets point at the row's start. */
static void repack_row(uint32_t type, const uint8_t *b, int64_t nb, void *codes, float *sc,
                       float *of) {
    uint8_t *c4 = codes;
    int8_t *c8 = codes;
    switch (type) {
    case SL_GGML_Q8_0:
        for (int64_t i = 0; i < nb; i++, b += 34) {
            sc[i] = h2f(b);
            memcpy(c8 + 32 * i, b + 2, 32);
        }
        return;
    case SL_GGML_Q4_0:
        for (int64_t i = 0; i < nb; i++, b += 18) {
            sc[i] = h2f(b);
            unsplit_nibbles(b + 2, 16, c4 + 16 * i);
        }
        return;
    case SL_GGML_Q4_1:
        for (int64_t i = 0; i < nb; i++, b += 20) {
            sc[i] = h2f(b);
            of[i] = h2f(b + 2);
            unsplit_nibbles(b + 4, 16, c4 + 16 * i);
        }
        return;
    case SL_GGML_Q5_0:
    case SL_GGML_Q5_1: {
        int m1 = type == SL_GGML_Q5_1;
        int bytes = m1 ? 24 : 22, zero = m1 ? 0 : 16;
        for (int64_t i = 0; i < nb; i++, b += bytes) {
            sc[i] = h2f(b);
            if (m1) of[i] = h2f(b + 2);
            uint32_t h = rd32(b + 2 + 2 * m1);
            const uint8_t *qs = b + 6 + 2 * m1;
            int8_t *o = c8 + 32 * i;
            for (int j = 0; j < 16; j++) {
                o[j] = (int8_t)(((qs[j] & 15) | (int)((h >> j) & 1) << 4) - zero);
                o[j + 16] = (int8_t)(((qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4) - zero);
            }
        }
        return;
    }
    case SL_GGML_Q4_K:
    case SL_GGML_Q5_K: {
        int five = type == SL_GGML_Q5_K;
        int bytes = five ? 176 : 144;
        for (int64_t i = 0; i < nb; i++, b += bytes) {
            float d = h2f(b), dmin = h2f(b + 2);
            int s[8], m[8];
            kscales(b + 4, s, m);
            /* d·sc_j and dmin·m_j are exact in f32; x − m1 == x + (−m1) exactly */
            for (int j = 0; j < 8; j++) {
                sc[8 * i + j] = d * (float)s[j];
                of[8 * i + j] = -(dmin * (float)m[j]);
            }
            if (!five) {
                for (int c = 0; c < 4; c++)
                    unsplit_nibbles(b + 16 + 32 * c, 32, c4 + 128 * i + 32 * c);
            } else {
                const uint8_t *qh = b + 16, *qs = b + 48;
                int8_t *o = c8 + 256 * i;
                for (int c = 0; c < 4; c++)
                    for (int l = 0; l < 32; l++) {
                        o[64 * c + l] =
                            (int8_t)((qs[32 * c + l] & 15) | ((qh[l] >> (2 * c)) & 1) << 4);
                        o[64 * c + 32 + l] =
                            (int8_t)((qs[32 * c + l] >> 4) | ((qh[l] >> (2 * c + 1)) & 1) << 4);
                    }
            }
        }
        return;
    }
    case SL_GGML_Q6_K:
        for (int64_t i = 0; i < nb; i++, b += 210) {
            const uint8_t *ql = b, *qh = b + 128;
            const int8_t *s = (const int8_t *)(b + 192);
            float d = h2f(b + 208);
            for (int j = 0; j < 16; j++) sc[16 * i + j] = d * (float)s[j]; /* ≤ 18 bits: exact */
            int8_t *o = c8 + 256 * i;
            for (int h = 0; h < 2; h++)
                for (int l = 0; l < 32; l++) {
                    int lo0 = ql[64 * h + l], lo1 = ql[64 * h + l + 32], hi = qh[32 * h + l];
                    o[128 * h + l] = (int8_t)(((lo0 & 15) | (hi & 3) << 4) - 32);
                    o[128 * h + 32 + l] = (int8_t)(((lo1 & 15) | ((hi >> 2) & 3) << 4) - 32);
                    o[128 * h + 64 + l] = (int8_t)(((lo0 >> 4) | ((hi >> 4) & 3) << 4) - 32);
                    o[128 * h + 96 + l] = (int8_t)(((lo1 >> 4) | ((hi >> 6) & 3) << 4) - 32);
                }
        }
        return;
    }
}

/* f16 values next to v: the nearest at or above it (up) or at or below it (down); inf past
 * the range */
static float f16_up(float v) {
    const float h = sl_fp16_to_f32(sl_f32_to_fp16(v));
    if (h >= v) return h;
    const uint16_t b = sl_f32_to_fp16(v);
    return sl_fp16_to_f32(h >= 0.0f ? (uint16_t)(b + 1) : (uint16_t)(b - 1)); /* away from 0 / toward */
}
static float f16_down(float v) { return -f16_up(-v); }

/* Round-to-nearest of one row of floats at load. QW8: symmetric, s = absmax/127,
 * c = round(x/s) in −127..127. QW4: asymmetric, s = (max−min)/15, o = min,
 * c = round((x−o)/s) clamped to 0..15 (error ≤ s/2 with the full 16 levels used).
 * With f16: s and o are f16 values (half the bytes of their f32 on the GPU, as ggml's Q8_0
 * and Q4_1 keep them): o the f16 at or below min, s the f16 at or above absmax/127 or
 * (max − o)/15 (within 2^-10 of it, or 2^-24 when subnormal), so the grid still covers the
 * group and the error stays ≤ s/2. Returns 0 when a value is past the f16 range (or NaN): the
 * caller then quantizes the tensor with f32 scales. */
static int rtn_row(const float *x, int64_t n, int group, sl_wfmt fmt, int f16, void *codes,
                   float *sc, float *of) {
    for (int64_t g = 0; g < n / group; g++) {
        const float *xg = x + g * group;
        if (fmt == SL_WF_QW8) {
            float amax = 0.0f;
            for (int i = 0; i < group; i++) amax = fmaxf(amax, fabsf(xg[i]));
            float s = amax / 127.0f;
            if (f16 && s != 0.0f) {
                s = f16_up(s);
                if (!(s > 0.0f && s <= 65504.0f)) return 0; /* past the range, or NaN */
            }
            const float id = s > 0.0f ? 1.0f / s : 0.0f;
            int8_t *c = (int8_t *)codes + g * group;
            for (int i = 0; i < group; i++) {
                float q = nearbyintf(xg[i] * id);
                c[i] = (int8_t)(q > 127.0f ? 127 : q < -127.0f ? -127 : q);
            }
            sc[g] = s;
        } else {
            float lo = FLT_MAX, hi = -FLT_MAX;
            for (int i = 0; i < group; i++) {
                lo = fminf(lo, xg[i]);
                hi = fmaxf(hi, xg[i]);
            }
            if (f16) {
                lo = f16_down(lo);
                if (!(fabsf(lo) <= 65504.0f)) return 0;
            }
            float s = (hi - lo) / 15.0f;
            if (f16 && s != 0.0f) {
                s = f16_up(s);
                if (!(s > 0.0f && s <= 65504.0f)) return 0;
            }
            const float id = s > 0.0f ? 1.0f / s : 0.0f;
            uint8_t *c = (uint8_t *)codes + g * group / 2;
            for (int i = 0; i < group; i += 2) {
                float q0 = nearbyintf((xg[i] - lo) * id), q1 = nearbyintf((xg[i + 1] - lo) * id);
                int c0 = q0 > 15.0f ? 15 : q0 < 0.0f ? 0 : (int)q0;
                int c1 = q1 > 15.0f ? 15 : q1 < 0.0f ? 0 : (int)q1;
                c[i / 2] = (uint8_t)(c0 | c1 << 4);
            }
            sc[g] = s;
            of[g] = lo;
        }
    }
    return 1;
}

/* Rows [r0, r1) of an F32/F16/BF16 tensor quantized round-to-nearest (an sl_pool job): f16
 * scales, or f32 ones; a row that cannot have f16 ones sets failed and stops every worker. */
typedef struct rtn_job {
    uint32_t type;
    const uint8_t *src;
    int64_t src_row; /* bytes per source row */
    int group;
    sl_qw *out;
    int f16;
    atomic_int failed;
    float *tmp; /* [threads][cols]: a row as floats */
} rtn_job;

static void rtn_rows(void *ctx, int64_t r0, int64_t r1, int tid) {
    rtn_job *j = ctx;
    sl_qw *o = j->out;
    const int64_t cols = o->cols, ng = cols / j->group, cb = sl_qw_row_bytes(o);
    float *tmp = j->tmp + (size_t)tid * (size_t)cols;
    for (int64_t r = r0; r < r1 && !atomic_load_explicit(&j->failed, memory_order_relaxed); r++) {
        const uint8_t *row = j->src + r * j->src_row;
        const float *x = (const float *)row;
        if (j->type != SL_GGML_F32) {
            sl_dequant_row(j->type, row, tmp, cols);
            x = tmp;
        } else if (((uintptr_t)row & 3) != 0) {
            memcpy(tmp, row, (size_t)cols * 4);
            x = tmp;
        }
        if (!rtn_row(x, cols, j->group, o->fmt, j->f16, (uint8_t *)o->codes + r * cb,
                     o->scales + r * ng, o->offsets ? o->offsets + r * ng : NULL))
            atomic_store(&j->failed, 1);
    }
}

/* Rows [r0, r1) of a GGUF-quantized tensor into the logical format (an sl_pool job). */
typedef struct repack_job {
    uint32_t type;
    const uint8_t *src;
    int64_t src_row, nb; /* bytes and blocks per source row */
    sl_qw *out;
} repack_job;

static void repack_rows(void *ctx, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const repack_job *j = ctx;
    const sl_qw *o = j->out;
    const int64_t ng = o->cols / o->group, cb = sl_qw_row_bytes(o);
    for (int64_t r = r0; r < r1; r++)
        repack_row(j->type, j->src + r * j->src_row, j->nb, (uint8_t *)o->codes + r * cb,
                   o->scales + r * ng, o->offsets ? o->offsets + r * ng : NULL);
}

int sl_repack(uint32_t type, const void *src, int64_t rows, int64_t cols, int quant_to,
              int group, int alias, sl_qw *out) {
    memset(out, 0, sizeof *out);
    blkinfo bi = blk_of(type);
    if (bi.blck == 0) return SL_EUNSUPPORTED;
    if (rows < 0 || cols <= 0 || cols % bi.blck != 0) return SL_EINVAL;
    if (quant_to < -1 || quant_to > SL_WF_QW4) return SL_EINVAL;
    const uint8_t *s = src;
    int64_t nb = cols / bi.blck, src_row = nb * bi.bytes;

    if (bi.blck == 1) {
        sl_wfmt keep = type == SL_GGML_F32   ? SL_WF_F32
                       : type == SL_GGML_F16 ? SL_WF_F16
                                             : SL_WF_BF16;
        if (quant_to != SL_WF_QW8 && quant_to != SL_WF_QW4) {
            if (alias) {
                *out = (sl_qw){
                    .fmt = keep, .rows = rows, .cols = cols, .data = (void *)src, .owns = 0};
                return SL_OK;
            }
            sl_qw_alloc(out, keep, rows, cols, 0, 0);
            memcpy(out->data, src, (size_t)(rows * src_row));
            return SL_OK;
        }
        if (group <= 0 || cols % group != 0 || (quant_to == SL_WF_QW4 && group % 2 != 0))
            return SL_EINVAL;
        sl_qw_alloc(out, (sl_wfmt)quant_to, rows, cols, group, quant_to == SL_WF_QW4);
        /* a large tensor's rows over the CPUs; f16 scales and offsets unless a group cannot
         * have them: then f32 for every row */
        sl_pool *pool = rows * cols >= (1 << 22) ? sl_pool_create(0) : NULL;
        const int threads = pool ? sl_pool_threads(pool) : 1;
        rtn_job j = {type, s, src_row, group, out, 1, 0,
                     sl_xmalloc((size_t)threads * (size_t)cols * sizeof(float))};
        for (int pass = 0; pass < 2; pass++) {
            if (pool) sl_pool_run(pool, rtn_rows, &j, rows, 16);
            else rtn_rows(&j, 0, rows, 0);
            if (!atomic_load(&j.failed)) break;
            j.f16 = 0;
            atomic_store(&j.failed, 0);
        }
        sl_pool_destroy(pool);
        free(j.tmp);
        return SL_OK;
    }

    /* GGUF-quantized types always go to their natural format (FORMATS.md §3). */
    sl_wfmt fmt = SL_WF_QW8;
    int g = 32, offs = 0;
    switch (type) {
    case SL_GGML_Q8_0: break;
    case SL_GGML_Q4_0: fmt = SL_WF_QW4; break;
    case SL_GGML_Q4_1: fmt = SL_WF_QW4; offs = 1; break;
    case SL_GGML_Q5_0: break;
    case SL_GGML_Q5_1: offs = 1; break;
    case SL_GGML_Q4_K: fmt = SL_WF_QW4; offs = 1; break;
    case SL_GGML_Q5_K: offs = 1; break;
    case SL_GGML_Q6_K: g = 16; break;
    }
    sl_qw_alloc(out, fmt, rows, cols, g, offs);
    repack_job j = {type, s, src_row, nb, out};
    if (rows * cols >= (1 << 22)) { /* a large tensor: its rows over the CPUs */
        sl_pool *pool = sl_pool_create(0);
        sl_pool_run(pool, repack_rows, &j, rows, 64);
        sl_pool_destroy(pool);
    } else {
        repack_rows(&j, 0, rows, 0);
    }
    return SL_OK;
}

/* ---- random blocks ---------------------------------------------------------------------- */

static void rand_bytes(sl_rng *rng, uint8_t *p, int n) {
    for (int i = 0; i < n; i += 8) {
        uint64_t v = sl_rng_u64(rng);
        for (int k = 0; k < 8 && i + k < n; k++) p[i + k] = (uint8_t)(v >> 8 * k);
    }
}

/* base·u with u uniform in [0.5, 1.5), negated with probability 1/8 when allow_neg. */
static uint16_t rand_scale(sl_rng *rng, float base, int allow_neg) {
    float v = base * (0.5f + sl_rng_f32(rng));
    if (allow_neg && (sl_rng_u64(rng) & 7) == 0) v = -v;
    return sl_f32_to_fp16(v);
}

void sl_quant_random(uint32_t type, sl_rng *rng, void *dst, int64_t nblocks, float amp) {
    blkinfo bi = blk_of(type);
    SL_CHECK(bi.blck > 0 && nblocks >= 0);
    uint8_t *b = dst;
    for (int64_t i = 0; i < nblocks; i++, b += bi.bytes) {
        switch (type) {
        case SL_GGML_F32: {
            float v = sl_rng_normal(rng) * amp * 0.5f;
            memcpy(b, &v, 4);
            break;
        }
        case SL_GGML_F16: wr16(b, sl_f32_to_fp16(sl_rng_normal(rng) * amp * 0.5f)); break;
        case SL_GGML_BF16: wr16(b, sl_f32_to_bf16(sl_rng_normal(rng) * amp * 0.5f)); break;
        case SL_GGML_Q8_0:
            rand_bytes(rng, b + 2, 32);
            wr16(b, rand_scale(rng, amp / 127.0f, 1));
            break;
        case SL_GGML_Q4_0:
            rand_bytes(rng, b + 2, 16);
            wr16(b, rand_scale(rng, amp / 8.0f, 1));
            break;
        case SL_GGML_Q5_0:
            rand_bytes(rng, b + 2, 20);
            wr16(b, rand_scale(rng, amp / 16.0f, 1));
            break;
        case SL_GGML_Q4_1:
        case SL_GGML_Q5_1: {
            int five = type == SL_GGML_Q5_1;
            rand_bytes(rng, b + 4, five ? 20 : 16);
            wr16(b, rand_scale(rng, 2.0f * amp / (five ? 31.0f : 15.0f), 0));
            wr16(b + 2, rand_scale(rng, -amp, 0));
            break;
        }
        case SL_GGML_Q4_K:
        case SL_GGML_Q5_K:
            /* every 12-byte pattern is a valid set of 6-bit sub-scales and mins */
            rand_bytes(rng, b + 4, bi.bytes - 4);
            wr16(b,
                 rand_scale(rng, 2.0f * amp / (63.0f * (type == SL_GGML_Q5_K ? 31.0f : 15.0f)), 0));
            wr16(b + 2, rand_scale(rng, amp / 63.0f, 0));
            break;
        case SL_GGML_Q6_K:
            rand_bytes(rng, b, 208);
            wr16(b + 208, rand_scale(rng, amp / (128.0f * 32.0f), 1));
            break;
        }
    }
}

/* ---- quantizers (ggml's quantize_row_*_ref) ----------------------------------------------- */

static void q_q8_0(const float *x, uint8_t *b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    wr16(b, sl_f32_to_fp16(d));
    for (int j = 0; j < 32; j++) {
        float f = x[j] * id;
        b[2 + j] = (uint8_t)(int8_t)roundf(f);
    }
}

/* Signed value of largest magnitude (the first one on ties), as ggml picks it. */
static float signed_max(const float *x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

static void q_q4_0(const float *x, uint8_t *b) {
    float d = signed_max(x) / -8.0f, id = d ? 1.0f / d : 0.0f;
    wr16(b, sl_f32_to_fp16(d));
    for (int j = 0; j < 16; j++) {
        float f0 = x[j] * id, f1 = x[j + 16] * id; /* separate roundings, as ggml */
        int x0 = (int8_t)(f0 + 8.5f), x1 = (int8_t)(f1 + 8.5f);
        x0 = x0 < 15 ? x0 : 15;
        x1 = x1 < 15 ? x1 : 15;
        b[2 + j] = (uint8_t)(x0 | x1 << 4);
    }
}

static void q_q5_0(const float *x, uint8_t *b) {
    float d = signed_max(x) / -16.0f, id = d ? 1.0f / d : 0.0f;
    wr16(b, sl_f32_to_fp16(d));
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        float f0 = x[j] * id, f1 = x[j + 16] * id;
        int x0 = (int8_t)(f0 + 16.5f), x1 = (int8_t)(f1 + 16.5f);
        x0 = x0 < 31 ? x0 : 31;
        x1 = x1 < 31 ? x1 : 31;
        b[6 + j] = (uint8_t)((x0 & 15) | (x1 & 15) << 4);
        qh |= (uint32_t)(x0 >> 4) << j | (uint32_t)(x1 >> 4) << (j + 16);
    }
    wr32(b + 2, qh);
}

/* Q4_1 (levels = 15) and Q5_1 (31): d = (max − min)/levels, m = min. */
static void q_q_1(const float *x, uint8_t *b, int levels) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    float d = (hi - lo) / (float)levels, id = d ? 1.0f / d : 0.0f;
    wr16(b, sl_f32_to_fp16(d));
    wr16(b + 2, sl_f32_to_fp16(lo));
    uint32_t qh = 0;
    uint8_t *qs = b + (levels == 15 ? 4 : 8);
    for (int j = 0; j < 16; j++) {
        /* ggml truncates x + 0.5 (x ≥ 0) and caps at the top level */
        float f0 = (x[j] - lo) * id, f1 = (x[j + 16] - lo) * id;
        int x0 = (int)(f0 + 0.5f), x1 = (int)(f1 + 0.5f);
        x0 = x0 < levels ? x0 : levels;
        x1 = x1 < levels ? x1 : levels;
        qs[j] = (uint8_t)((x0 & 15) | (x1 & 15) << 4);
        qh |= (uint32_t)(x0 >> 4) << j | (uint32_t)(x1 >> 4) << (j + 16);
    }
    if (levels == 31) wr32(b + 4, qh);
}

int sl_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    blkinfo bi = blk_of(type);
    if (bi.blck == 0 || type == SL_GGML_Q4_K || type == SL_GGML_Q5_K || type == SL_GGML_Q6_K)
        return SL_EUNSUPPORTED;
    if (n < 0 || n % bi.blck != 0) return SL_EINVAL;
    uint8_t *b = dst;
    switch (type) {
    case SL_GGML_F32: memcpy(dst, src, (size_t)n * 4); return SL_OK;
    case SL_GGML_F16:
        for (int64_t i = 0; i < n; i++) wr16(b + 2 * i, sl_f32_to_fp16(src[i]));
        return SL_OK;
    case SL_GGML_BF16:
        for (int64_t i = 0; i < n; i++) wr16(b + 2 * i, sl_f32_to_bf16(src[i]));
        return SL_OK;
    }
    for (int64_t i = 0; i < n / 32; i++, b += bi.bytes) {
        const float *x = src + 32 * i;
        switch (type) {
        case SL_GGML_Q8_0: q_q8_0(x, b); break;
        case SL_GGML_Q4_0: q_q4_0(x, b); break;
        case SL_GGML_Q5_0: q_q5_0(x, b); break;
        case SL_GGML_Q4_1: q_q_1(x, b, 15); break;
        case SL_GGML_Q5_1: q_q_1(x, b, 31); break;
        }
    }
    return SL_OK;
}
