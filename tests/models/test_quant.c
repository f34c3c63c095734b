/* test_quant.c — ggml block dequantizers, repack into QW8/QW4, quantizers, random blocks.
 *
 * 1. repacked weights dequantize bit-exactly to sl_dequant_row, which itself matches an
 *    independent per-element reference written from FORMATS.md §2 (random, subnormal,
 *    negative-scale and fully random blocks);
 * 2. hand-built blocks checked against values worked out by hand;
 * 3. round-trip error of sl_quantize_row and of RTN quantization at load, per format bound;
 * 4. quantized dot product against the float dot product;
 * 5. where tests/oracle has llama.cpp's libggml-base.so (scripts/setup.sh installs it), ggml's
 *    own dequantize_row_* / quantize_row_*_ref / fp16 / bf16 conversions as the oracle: bit
 *    for bit, byte for byte. Skipped (and said so) when the library is absent.
 */
#include <dlfcn.h>
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "../../models/gguf.h"
#include "../../models/quant.h"
#include "../test.h"

typedef struct tinfo {
    uint32_t type;
    const char *name;
    int blck, bytes;
} tinfo;

/* Block sizes as FORMATS.md §2 lists them (independent of quant.c's and gguf.c's tables). */
static const tinfo QTYPES[] = {
    {SL_GGML_Q8_0, "Q8_0", 32, 34},    {SL_GGML_Q4_0, "Q4_0", 32, 18},
    {SL_GGML_Q4_1, "Q4_1", 32, 20},    {SL_GGML_Q5_0, "Q5_0", 32, 22},
    {SL_GGML_Q5_1, "Q5_1", 32, 24},    {SL_GGML_Q4_K, "Q4_K", 256, 144},
    {SL_GGML_Q5_K, "Q5_K", 256, 176},  {SL_GGML_Q6_K, "Q6_K", 256, 210},
};
#define NQ ((int)(sizeof QTYPES / sizeof QTYPES[0]))

/* ---- an independent reference, element by element, from FORMATS.md §2 ------------------ */

/* fp16 decoded with ldexp (not base.c's code path). */
static float f16(const uint8_t *p) {
    int h = p[0] | p[1] << 8, e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0    ? ldexpf((float)m, -24)
              : e == 31 ? (m ? NAN : INFINITY)
                        : ldexpf((float)(1024 + m), e - 25);
    return (h & 0x8000) ? -v : v;
}
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
/* Q4_0-style nibble: element e < 16 is the low nibble of qs[e], e + 16 the high one. */
static int nib32(const uint8_t *qs, int e) { return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4; }

static void kscale(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

static float ref_elem(uint32_t t, const uint8_t *b, int e) {
    switch (t) {
    case SL_GGML_Q8_0: return f16(b) * (float)(int8_t)b[2 + e];
    case SL_GGML_Q4_0: return f16(b) * (float)(nib32(b + 2, e) - 8);
    case SL_GGML_Q4_1: return f16(b) * (float)nib32(b + 4, e) + f16(b + 2);
    case SL_GGML_Q5_0: {
        int q = nib32(b + 6, e) | (int)((le32(b + 2) >> e) & 1) << 4;
        return f16(b) * (float)(q - 16);
    }
    case SL_GGML_Q5_1: {
        int q = nib32(b + 8, e) | (int)((le32(b + 4) >> e) & 1) << 4;
        return f16(b) * (float)q + f16(b + 2);
    }
    case SL_GGML_Q4_K:
    case SL_GGML_Q5_K: {
        int sc, m, c = e / 64, r = e % 64;
        kscale(b + 4, e / 32, &sc, &m);
        const uint8_t *qs = b + (t == SL_GGML_Q4_K ? 16 : 48);
        int q = r < 32 ? qs[32 * c + r % 32] & 15 : qs[32 * c + r % 32] >> 4;
        if (t == SL_GGML_Q5_K) q |= ((b[16 + e % 32] >> (e / 32)) & 1) << 4;
        return (f16(b) * (float)sc) * (float)q - (f16(b + 2) * (float)m);
    }
    case SL_GGML_Q6_K: {
        int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
        int lo = b[64 * h + l + 32 * (k & 1)];
        lo = k < 2 ? lo & 15 : lo >> 4;
        int q = lo | ((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4;
        return (f16(b + 208) * (float)(int8_t)b[192 + e / 16]) * (float)(q - 32);
    }
    }
    ASSERT(0);
    return 0;
}

/* Same bits, or both NaN (a NaN's sign may differ: o = −(dmin·m) negates it). */
static int same(float a, float b) { return memcmp(&a, &b, 4) == 0 || (isnan(a) && isnan(b)); }

/* ---- 1. exactness ------------------------------------------------------------------------ */

static void expect_format(const tinfo *ti, const sl_qw *w, int64_t rows, int64_t cols) {
    sl_wfmt fmt = SL_WF_QW8;
    int g = 32, offs = 0;
    switch (ti->type) {
    case SL_GGML_Q4_0: fmt = SL_WF_QW4; break;
    case SL_GGML_Q4_1: fmt = SL_WF_QW4; offs = 1; break;
    case SL_GGML_Q5_1: offs = 1; break;
    case SL_GGML_Q4_K: fmt = SL_WF_QW4; offs = 1; break;
    case SL_GGML_Q5_K: offs = 1; break;
    case SL_GGML_Q6_K: g = 16; break;
    }
    ASSERT_EQ(w->fmt, fmt);
    ASSERT_EQ(w->group, g);
    ASSERT_EQ(w->offsets != NULL, offs);
    ASSERT_EQ(w->rows, rows);
    ASSERT_EQ(w->cols, cols);
    ASSERT_EQ(w->owns, 1);
}

/* Checks sl_dequant_row against ref_elem and sl_repack + sl_qw_dequant_row against
 * sl_dequant_row over rows × cols of blocks at buf. Returns the number of mismatches. */
static long check_exact(const tinfo *ti, const uint8_t *buf, int64_t rows, int64_t cols,
                        int quant_to) {
    float *a = malloc((size_t)cols * 4), *b = malloc((size_t)cols * 4);
    int64_t rb = cols / ti->blck * ti->bytes;
    long bad = 0;
    sl_qw w;
    ASSERT_EQ(sl_repack(ti->type, buf, rows, cols, quant_to, 128, 1, &w), SL_OK);
    expect_format(ti, &w, rows, cols);
    for (int64_t r = 0; r < rows; r++) {
        sl_dequant_row(ti->type, buf + r * rb, a, cols);
        for (int64_t i = 0; i < cols; i++) {
            float ref =
                ref_elem(ti->type, buf + r * rb + i / ti->blck * ti->bytes, (int)(i % ti->blck));
            if (!same(a[i], ref)) {
                if (bad++ < 5)
                    fprintf(stderr, "%s dequant r%lld e%lld: %.9g vs ref %.9g\n", ti->name,
                            (long long)r, (long long)i, a[i], ref);
            }
        }
        sl_qw_dequant_row(&w, r, b);
        for (int64_t i = 0; i < cols; i++)
            if (!same(a[i], b[i])) {
                if (bad++ < 5)
                    fprintf(stderr, "%s repack r%lld e%lld: %.9g vs %.9g\n", ti->name, (long long)r,
                            (long long)i, b[i], a[i]);
            }
    }
    sl_qw_free(&w);
    free(a);
    free(b);
    return bad;
}

/* Offsets of the fp16 scale fields of a block (d, then m/dmin when present). */
static int scale_fields(uint32_t t, int off[2]) {
    switch (t) {
    case SL_GGML_Q8_0: case SL_GGML_Q4_0: case SL_GGML_Q5_0: off[0] = 0; return 1;
    case SL_GGML_Q6_K: off[0] = 208; return 1;
    default: off[0] = 0; off[1] = 2; return 2;
    }
}

static void test_exact(void) {
    sl_rng rng;
    sl_rng_seed(&rng, 42);
    for (int k = 0; k < NQ; k++) {
        const tinfo *ti = &QTYPES[k];
        int64_t rows = 6, cols = ti->blck == 32 ? 32 * 40 : 256 * 5, nblk = rows * cols / ti->blck;
        uint8_t *buf = malloc((size_t)(nblk * ti->bytes));
        long bad = 0, neg0 = 0, blk0 = 0;
        /* (a) typical random blocks, (b) small amp, (c) subnormal scales, (d) random bytes */
        for (int pass = 0; pass < 16; pass++) {
            int kind = pass & 3;
            sl_quant_random(ti->type, &rng, buf, nblk, kind == 1 ? 1e-3f : 1.0f + (float)pass);
            int off[2], nf = scale_fields(ti->type, off);
            long nneg = 0, nsub = 0;
            for (int64_t i = 0; i < nblk; i++) {
                uint8_t *bl = buf + i * ti->bytes;
                if (kind == 2) {
                    for (int f = 0; f < nf; f++) {
                        uint64_t v = sl_rng_u64(&rng);
                        uint16_t h = (uint16_t)((v & 0x3ff) | ((v >> 10) & 1) << 15);
                        if (h == 0 || h == 0x8000) h |= 1;
                        bl[off[f]] = (uint8_t)h;
                        bl[off[f] + 1] = (uint8_t)(h >> 8);
                    }
                }
                if (kind == 3)
                    for (int j = 0; j < ti->bytes; j++) bl[j] = (uint8_t)sl_rng_u64(&rng);
                int d = bl[off[0]] | bl[off[0] + 1] << 8;
                nneg += (d & 0x8000) != 0;
                nsub += (d & 0x7c00) == 0 && (d & 0x3ff) != 0;
            }
            if (kind == 2) ASSERT_EQ(nsub, nblk);
            if (kind == 0) {
                neg0 += nneg;
                blk0 += nblk;
            }
            if (kind == 1 && ti->blck == 256) ASSERT(nsub > nblk / 2); /* K-quant d subnormal */
            /* quant_to is ignored for quantized GGUF types */
            bad += check_exact(ti, buf, rows, cols,
                               pass < 8     ? -1
                               : (pass & 1) ? SL_WF_QW4
                                            : SL_WF_QW8);
        }
        ASSERT_EQ(bad, 0);
        /* ggml's signed-extreme quantizers give negative d: sl_quant_random does in ~1/8 */
        if (ti->type == SL_GGML_Q8_0 || ti->type == SL_GGML_Q4_0 || ti->type == SL_GGML_Q5_0 ||
            ti->type == SL_GGML_Q6_K)
            ASSERT(neg0 > blk0 / 32 && neg0 < blk0 / 4);
        else
            ASSERT_EQ(neg0, 0);
        free(buf);
        printf(
            "exact %-5s: repack == dequant == reference, bit for bit (%lld blocks x 16 passes)\n",
            ti->name, (long long)nblk);
    }
    /* a tensor large enough for the repack to split its rows over threads */
    for (int k = 0; k < NQ; k++) {
        const tinfo *ti = &QTYPES[k];
        if (ti->type != SL_GGML_Q4_K && ti->type != SL_GGML_Q8_0) continue;
        const int64_t rows = 67, cols = 65536, nblk = rows * cols / ti->blck;
        uint8_t *buf = malloc((size_t)(nblk * ti->bytes));
        sl_quant_random(ti->type, &rng, buf, nblk, 1.0f);
        ASSERT_EQ(check_exact(ti, buf, rows, cols, -1), 0);
        free(buf);
        printf("exact %-5s: %lldx%lld (rows over threads) ok\n", ti->name, (long long)rows, (long long)cols);
    }
}

/* F32/F16/BF16 kept as is: copied or aliased. */
static void test_float_keep(void) {
    static const struct { uint32_t t; sl_wfmt f; int esz; } F[] = {
        {SL_GGML_F32, SL_WF_F32, 4}, {SL_GGML_F16, SL_WF_F16, 2}, {SL_GGML_BF16, SL_WF_BF16, 2}};
    sl_rng rng;
    sl_rng_seed(&rng, 7);
    for (int k = 0; k < 3; k++) {
        int64_t rows = 5, cols = 96;
        uint8_t *buf = malloc((size_t)(rows * cols * F[k].esz));
        sl_quant_random(F[k].t, &rng, buf, rows * cols, 2.0f);
        float *a = malloc((size_t)cols * 4), *b = malloc((size_t)cols * 4);
        for (int alias = 0; alias < 2; alias++) {
            sl_qw w;
            ASSERT_EQ(sl_repack(F[k].t, buf, rows, cols, alias ? (int)F[k].f : -1, 32, alias, &w),
                      SL_OK);
            ASSERT_EQ(w.fmt, F[k].f);
            ASSERT_EQ(w.owns, !alias);
            ASSERT(alias ? w.data == (void *)buf : w.data != (void *)buf);
            for (int64_t r = 0; r < rows; r++) {
                sl_dequant_row(F[k].t, buf + r * cols * F[k].esz, a, cols);
                sl_qw_dequant_row(&w, r, b);
                ASSERT(memcmp(a, b, (size_t)cols * 4) == 0);
                for (int64_t i = 0; i < cols; i++)
                    ASSERT(fabsf(a[i]) < 2.0f * 6); /* normal(0, 1) */
            }
            sl_qw_free(&w);
        }
        free(a);
        free(b);
        free(buf);
    }
}

/* ---- 2. hand-built blocks ------------------------------------------------------------------ */

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* dequant and repack+dequant both give want at element e */
static void expect_elem(uint32_t type, const uint8_t *blk, int blck, int e, float want) {
    float y[256], z[256];
    sl_dequant_row(type, blk, y, blck);
    sl_qw w;
    ASSERT_EQ(sl_repack(type, blk, 1, blck, -1, 32, 0, &w), SL_OK);
    sl_qw_dequant_row(&w, 0, z);
    sl_qw_free(&w);
    if (y[e] != want || z[e] != want)
        fprintf(stderr, "type %u element %d: dequant %.9g, repack %.9g, want %.9g\n", type, e, y[e],
                z[e], want);
    ASSERT(y[e] == want);
    ASSERT(z[e] == want);
}

static void test_hand(void) {
    uint8_t b[256];

    /* Q8_0: d = 0.5 (0x3800), qs[e] = e − 16 */
    memset(b, 0, sizeof b);
    put16(b, 0x3800);
    for (int e = 0; e < 32; e++) b[2 + e] = (uint8_t)(int8_t)(e - 16);
    expect_elem(SL_GGML_Q8_0, b, 32, 0, -8.0f);
    expect_elem(SL_GGML_Q8_0, b, 32, 31, 7.5f);
    /* negative d = −0.5 (0xB800) */
    put16(b, 0xB800);
    expect_elem(SL_GGML_Q8_0, b, 32, 0, 8.0f);
    /* subnormal d = 2^-24 (0x0001), qs = −128: −2^-17 */
    put16(b, 0x0001);
    b[2 + 5] = 0x80;
    expect_elem(SL_GGML_Q8_0, b, 32, 5, -7.62939453125e-06f);
    /* largest subnormal d = 1023·2^-24 (0x03ff), qs = 127 */
    put16(b, 0x03ff);
    b[2 + 6] = 127;
    expect_elem(SL_GGML_Q8_0, b, 32, 6, 1023.0f * 127.0f / 16777216.0f);

    /* Q4_0: d = 0.25; qs[3] = 0xA2 → e3: q = 2 → −1.5; e19: q = 10 → 0.5 */
    memset(b, 0, sizeof b);
    put16(b, 0x3400);
    b[2 + 3] = 0xA2;
    expect_elem(SL_GGML_Q4_0, b, 32, 3, -1.5f);
    expect_elem(SL_GGML_Q4_0, b, 32, 19, 0.5f);
    expect_elem(SL_GGML_Q4_0, b, 32, 4, -2.0f); /* q = 0 → −8·0.25 */
    put16(b, 0xB400); /* d = −0.25 */
    expect_elem(SL_GGML_Q4_0, b, 32, 3, 1.5f);

    /* Q4_1: d = 0.5, m = −1; qs[0] = 0xF0 → e0: q = 0 → −1; e16: q = 15 → 6.5 */
    memset(b, 0, sizeof b);
    put16(b, 0x3800);
    put16(b + 2, 0xBC00);
    b[4] = 0xF0;
    expect_elem(SL_GGML_Q4_1, b, 32, 0, -1.0f);
    expect_elem(SL_GGML_Q4_1, b, 32, 16, 6.5f);
    /* m = 0.1 (fp16 0x2E66 = 0.0999755859375): 0.5·0 + m */
    put16(b + 2, 0x2E66);
    expect_elem(SL_GGML_Q4_1, b, 32, 0, 0.0999755859375f);
    /* d·q + m rounds once in f32: d = 1 + 2^-10 (0x3C01), q = 15, m = 2^-22 (0x0004, subnormal):
     * 15·d = 15.0146484375 is exact; + 2^-22 is a quarter ulp, so it rounds back down */
    put16(b, 0x3C01);
    put16(b + 2, 0x0004);
    expect_elem(SL_GGML_Q4_1, b, 32, 16, 15.0146484375f);
    put16(b + 2, 0x0018); /* m = 3·2^-21 = 1.5 ulp: ties to even, up to 15.0146484375 + 2^-19 */
    expect_elem(SL_GGML_Q4_1, b, 32, 16, 15.0146484375f + 0x1p-19f);

    /* Q5_0: d = 1; qs[5] = 0x3C, qh bits 5 and 21 set → e5: 12|16 = 28 → 12; e21: 3|16 = 19 → 3 */
    memset(b, 0, sizeof b);
    put16(b, 0x3C00);
    b[6 + 5] = 0x3C;
    uint32_t qh = 1u << 5 | 1u << 21;
    memcpy(b + 2, &qh, 4); /* little-endian host */
    expect_elem(SL_GGML_Q5_0, b, 32, 5, 12.0f);
    expect_elem(SL_GGML_Q5_0, b, 32, 21, 3.0f);
    expect_elem(SL_GGML_Q5_0, b, 32, 6, -16.0f);
    expect_elem(SL_GGML_Q5_0, b, 32, 22, -16.0f);

    /* Q5_1: d = 0.5, m = 2; qs[1] = 0x7F, qh bit 17 → e1: 15 → 9.5; e17: 7|16 = 23 → 13.5 */
    memset(b, 0, sizeof b);
    put16(b, 0x3800);
    put16(b + 2, 0x4000);
    b[8 + 1] = 0x7F;
    qh = 1u << 17;
    memcpy(b + 4, &qh, 4);
    expect_elem(SL_GGML_Q5_1, b, 32, 1, 9.5f);
    expect_elem(SL_GGML_Q5_1, b, 32, 17, 13.5f);
    expect_elem(SL_GGML_Q5_1, b, 32, 31, 2.0f);

    /* Q4_K: d = 1, dmin = 0.5; sc_1 = 3, m_1 = 5; sc_5 = 42 (low 10, high 2), m_5 = 17 (low 1,
     * high 1): s[1] = 3 | 2 << 6, s[5] = 5 | 1 << 6, s[9] = 10 | 1 << 4.
     * e36 (sub-block 1, high nibble of qs[4] = 9): 3·9 − 0.5·5 = 24.5
     * e167 (sub-block 5, chunk 2 high nibble of qs[64 + 7] = 4): 42·4 − 0.5·17 = 159.5 */
    memset(b, 0, sizeof b);
    put16(b, 0x3C00);
    put16(b + 2, 0x3800);
    b[4 + 1] = 3 | 2 << 6;
    b[4 + 5] = 5 | 1 << 6;
    b[4 + 9] = 10 | 1 << 4;
    b[16 + 4] = 0x90;
    b[16 + 64 + 7] = 0x40;
    expect_elem(SL_GGML_Q4_K, b, 256, 36, 24.5f);
    expect_elem(SL_GGML_Q4_K, b, 256, 167, 159.5f);
    expect_elem(SL_GGML_Q4_K, b, 256, 4, 0.0f);     /* sub-block 0: sc = m = 0 */
    expect_elem(SL_GGML_Q4_K, b, 256, 135, 0.0f);   /* sub-block 4: sc = m = 0 */
    expect_elem(SL_GGML_Q4_K, b, 256, 33, -2.5f);   /* q = 0: −dmin·m_1 */
    /* subnormal d = 3·2^-24 (0x0003), dmin = 2^-24 (0x0001): 3·2^-24·3·9 − 2^-24·5 = 76·2^-24 */
    put16(b, 0x0003);
    put16(b + 2, 0x0001);
    expect_elem(SL_GGML_Q4_K, b, 256, 36, 76.0f / 16777216.0f);

    /* Q5_K: d = 0.5, dmin = 1; sc_2 = 7, m_2 = 1; e67 (sub-block 2: chunk 1 low nibble of
     * qs[32 + 3] = 11, bit 2 of qh[3] set): q = 27 → 0.5·7·27 − 1 = 93.5 */
    memset(b, 0, sizeof b);
    put16(b, 0x3800);
    put16(b + 2, 0x3C00);
    b[4 + 2] = 7;
    b[4 + 6] = 1;
    b[48 + 32 + 3] = 0x0B;
    b[16 + 3] = 0x04;
    expect_elem(SL_GGML_Q5_K, b, 256, 67, 93.5f);
    expect_elem(SL_GGML_Q5_K, b, 256, 3, 0.0f);   /* sub-block 0; bit 0 of qh[3] clear */
    expect_elem(SL_GGML_Q5_K, b, 256, 64, -1.0f); /* q = 0 */
    /* sub-block 7 (e = 224 + l: chunk 3 high nibble, bit 7 of qh[l]); sc_7 = 63 via
     * s[11] low = 15, s[3] high = 3; m_7 = 0: e225 with qs[96 + 1] = 0xF0, qh[1] = 0x80 → 31 */
    b[4 + 3] = 3 << 6;
    b[4 + 11] = 15;
    b[48 + 96 + 1] = 0xF0;
    b[16 + 1] = 0x80;
    expect_elem(SL_GGML_Q5_K, b, 256, 225, 0.5f * 63.0f * 31.0f);

    /* Q6_K: d = 0.5 (@208); e229 (h = 1, k = 3, l = 5): low = high nibble of ql[64 + 5 + 32] = 7,
     * high = bits 6–7 of qh[32 + 5] = 2 → q = 39 → 7; scale[14] = −3 → −10.5.
     * e37 (h = 0, k = 1, l = 5): low nibble of ql[37] = 15, bits 2–3 of qh[5] = 3 → 63 → 31;
     * scale[2] = 1 → 15.5. e0: q = 0 → −32; scale[0] = 2 → −32. */
    memset(b, 0, sizeof b);
    put16(b + 208, 0x3800);
    b[101] = 0x70;
    b[128 + 37] = 0x80;
    b[192 + 14] = (uint8_t)(int8_t)-3;
    b[37] = 0x0F;
    b[128 + 5] = 0x0C;
    b[192 + 2] = 1;
    b[192 + 0] = 2;
    expect_elem(SL_GGML_Q6_K, b, 256, 229, -10.5f);
    expect_elem(SL_GGML_Q6_K, b, 256, 37, 15.5f);
    expect_elem(SL_GGML_Q6_K, b, 256, 0, -32.0f);
    /* scale −128, d = 1 + 2^-10 (0x3C01), q − 32 = −32: (1 + 2^-10)·(−128)·(−32), exact */
    put16(b + 208, 0x3C01);
    b[192 + 0] = 0x80;
    expect_elem(SL_GGML_Q6_K, b, 256, 0, 4096.0f * (1.0f + 1.0f / 1024.0f));

    /* F16 / BF16 single values */
    put16(b, 0x3555); /* 0.333251953125 */
    expect_elem(SL_GGML_F16, b, 1, 0, 0.333251953125f);
    put16(b, 0xC049); /* bf16 → −3.140625 */
    expect_elem(SL_GGML_BF16, b, 1, 0, -3.140625f);
    printf("hand-built blocks: ok\n");
}

/* ---- 3. round trips ------------------------------------------------------------------------ */

/* Absolute rounding error of a value once stored as fp16 (normal or subnormal range). */
static double fp16_err(double v) {
    return fmax(fabs(v) * ldexp(1.0, -11), ldexp(1.0, -25)) * 1.001;
}

static void test_quantize_roundtrip(void) {
    sl_rng rng;
    sl_rng_seed(&rng, 3);
    const int n = 32 * 256;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    uint8_t *q = malloc(n * 4);
    static const uint32_t T[] = {SL_GGML_F32, SL_GGML_F16, SL_GGML_BF16, SL_GGML_Q8_0,
                                 SL_GGML_Q4_0, SL_GGML_Q4_1, SL_GGML_Q5_0, SL_GGML_Q5_1};
    static const char *names[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"};
    static const int bytes[] = {4, 2, 2, 34, 18, 20, 22, 24};
    for (int k = 0; k < 8; k++) {
        double worst = 0; /* max |err| / per-block bound */
        for (int sc = 0; sc < 3; sc++) {
            double sigma = sc == 0 ? 1.0 : sc == 1 ? 1e-3 : 300.0;
            for (int i = 0; i < n; i++) x[i] = (float)(sigma * sl_rng_normal(&rng));
            for (int i = 0; i < 32; i++) x[32 + i] = 0.0f;            /* a zero block */
            for (int i = 0; i < 32; i++) x[64 + i] = (float)sigma;    /* a constant block */
            x[96] = -(float)sigma * 3; x[97] = (float)sigma * 3;      /* signed-extreme tie */
            ASSERT_EQ(sl_quantize_row(T[k], x, q, n), SL_OK);
            sl_dequant_row(T[k], q, y, n);
            for (int i = 0; i < n; i++) {
                const uint8_t *b =
                    q + (T[k] <= SL_GGML_F16 || T[k] == SL_GGML_BF16 ? i : i / 32) * bytes[k];
                int e = i % 32;
                double err = fabs((double)x[i] - y[i]), bound;
                switch (T[k]) {
                case SL_GGML_F32: bound = 0; break;
                case SL_GGML_F16: bound = fp16_err(x[i]); break; /* half an ulp */
                case SL_GGML_BF16: bound = fabs(x[i]) * ldexp(1.0, -8) * 1.0001; break;
                case SL_GGML_Q8_0:
                    bound = fabs(f16(b)) * 0.5 * (1 + 1e-5) + 127 * fp16_err(f16(b));
                    break;
                case SL_GGML_Q4_0:
                case SL_GGML_Q5_0: {
                    /* the code of the extreme opposite to the signed extreme is capped (q = 15 /
                     * 31): up to |d| there, |d|/2 elsewhere */
                    int top = T[k] == SL_GGML_Q4_0 ? 15 : 31;
                    int qq = T[k] == SL_GGML_Q4_0
                                 ? nib32(b + 2, e)
                                 : nib32(b + 6, e) | (int)((le32(b + 2) >> e) & 1) << 4;
                    double d = fabs(f16(b));
                    bound = d * (qq == top ? 1.0 : 0.5) * (1 + 1e-5) + (top + 1) / 2 * fp16_err(d);
                    break;
                }
                default: { /* Q4_1, Q5_1 */
                    int levels = T[k] == SL_GGML_Q4_1 ? 15 : 31;
                    double d = f16(b), m = f16(b + 2);
                    bound = d * 0.5 * (1 + 1e-5) + levels * fp16_err(d) + fp16_err(m) +
                            fabs(x[i]) * 1e-6;
                    break;
                }
                }
                if (!(err <= bound)) {
                    fprintf(stderr, "%s sigma %g element %d: x %.9g y %.9g err %.3g bound %.3g\n",
                            names[k], sigma, i, x[i], y[i], err, bound);
                    ASSERT(0);
                }
                if (bound > 0) worst = fmax(worst, err / bound);
            }
            /* exact cases: zero and constant blocks (representable) */
            for (int i = 32; i < 64; i++) ASSERT(y[i] == 0.0f);
            if (T[k] == SL_GGML_Q4_1 || T[k] == SL_GGML_Q5_1)
                for (int i = 64; i < 96; i++)
                    ASSERT(y[i] == sl_fp16_to_f32(sl_f32_to_fp16((float)sigma)));
        }
        printf("roundtrip %-5s: max err / bound = %.3f\n", names[k], worst);
    }

    /* signs and scale rules of ggml's reference quantizers */
    float blk[32];
    for (int i = 0; i < 32; i++) blk[i] = 0.1f * (float)(i % 7) - 0.3f;
    blk[9] = -3.0f; /* signed extreme negative → Q4_0 d = −3/−8 > 0 */
    ASSERT_EQ(sl_quantize_row(SL_GGML_Q4_0, blk, q, 32), SL_OK);
    ASSERT(f16(q) == sl_fp16_to_f32(sl_f32_to_fp16(0.375f)));
    ASSERT_EQ(nib32(q + 2, 9), 0); /* the extreme gets q = 0 → d·(−8) = −3 */
    blk[9] = 3.2f; /* positive → d = −0.4 */
    ASSERT_EQ(sl_quantize_row(SL_GGML_Q4_0, blk, q, 32), SL_OK);
    ASSERT(f16(q) == sl_fp16_to_f32(sl_f32_to_fp16(-0.4f)));
    ASSERT_EQ(sl_quantize_row(SL_GGML_Q5_0, blk, q, 32), SL_OK);
    ASSERT(f16(q) == sl_fp16_to_f32(sl_f32_to_fp16(-0.2f)));
    ASSERT_EQ(sl_quantize_row(SL_GGML_Q8_0, blk, q, 32), SL_OK);
    ASSERT(f16(q) == sl_fp16_to_f32(sl_f32_to_fp16(3.2f / 127.0f)));
    ASSERT_EQ((int8_t)q[2 + 9], 127);
    ASSERT_EQ(sl_quantize_row(SL_GGML_Q4_1, blk, q, 32), SL_OK);
    ASSERT(f16(q + 2) == sl_fp16_to_f32(sl_f32_to_fp16(-0.3f)));
    ASSERT(f16(q) == sl_fp16_to_f32(sl_f32_to_fp16(3.5f / 15.0f)));
    ASSERT_EQ(nib32(q + 4, 9), 15);
    ASSERT_EQ(sl_quantize_row(SL_GGML_Q5_1, blk, q, 32), SL_OK);
    ASSERT(f16(q) == sl_fp16_to_f32(sl_f32_to_fp16(3.5f / 31.0f)));
    ASSERT_EQ(nib32(q + 8, 9) | (int)((le32(q + 4) >> 9) & 1) << 4, 31);

    /* errors */
    ASSERT_EQ(sl_quantize_row(SL_GGML_Q4_K, x, q, 256), SL_EUNSUPPORTED);
    ASSERT_EQ(sl_quantize_row(SL_GGML_Q6_K, x, q, 256), SL_EUNSUPPORTED);
    ASSERT_EQ(sl_quantize_row(4, x, q, 32), SL_EUNSUPPORTED);
    ASSERT_EQ(sl_quantize_row(SL_GGML_Q8_0, x, q, 48), SL_EINVAL);
    free(x);
    free(y);
    free(q);
}

static int is_f16(float v) { return sl_fp16_to_f32(sl_f32_to_fp16(v)) == v; }

/* The checks of one RTN weight w from its source src (type, esz bytes per element): each
 * group's scale (and offset) as quant.h defines it, f16 values (want_f16) or the f32 formulas;
 * every error within s/2; QW8's extreme code ±127 (with a normal scale). Returns the largest
 * error / (s/2). */
static double check_rtn(const sl_qw *w, uint32_t type, const uint8_t *src, int esz, int want_f16) {
    const int64_t rows = w->rows, cols = w->cols, group = w->group;
    const int f = w->fmt == SL_WF_QW4;
    float *a = malloc((size_t)cols * 4), *y = malloc((size_t)cols * 4);
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        sl_dequant_row(type, src + r * cols * esz, a, cols);
        sl_qw_dequant_row(w, r, y);
        for (int64_t g = 0; g < cols / group; g++) {
            float lo = FLT_MAX, hi = -FLT_MAX, amax = 0;
            for (int i = 0; i < group; i++) {
                float v = a[g * group + i];
                lo = fminf(lo, v);
                hi = fmaxf(hi, v);
                amax = fmaxf(amax, fabsf(v));
            }
            float s = w->scales[r * (cols / group) + g];
            if (f) {
                float o = w->offsets[r * (cols / group) + g];
                if (want_f16) { /* o the f16 at or below lo, s just covering [o, hi] */
                    const double q = ((double)hi - o) / 15;
                    ASSERT(is_f16(o) && is_f16(s) && o <= lo && lo - o <= fabsf(lo) * 0x1p-10f + 0x1p-24f);
                    ASSERT(s >= q * (1 - 0x1p-22) && s <= q * (1 + 0x1p-10) + 0x1p-24);
                } else {
                    ASSERT(s == (hi - lo) / 15.0f);
                    ASSERT(o == lo);
                }
            } else if (want_f16) {
                const double q = (double)amax / 127;
                ASSERT(is_f16(s) && s >= q * (1 - 0x1p-22) && s <= q * (1 + 0x1p-10) + 0x1p-24);
            } else {
                ASSERT(s == amax / 127.0f);
            }
            for (int i = 0; i < group; i++) {
                int64_t j = g * group + i;
                double err = fabs((double)a[j] - y[j]);
                double bound = 0.5 * s * (1 + 1e-5) + fabs(a[j]) * 3e-7;
                if (!(err <= bound)) {
                    fprintf(stderr, "RTN %s/%d row %lld el %lld: %.9g vs %.9g (s %g)\n",
                            sl_wfmt_name(w->fmt), (int)group, (long long)r, (long long)j, y[j], a[j], s);
                    ASSERT(0);
                }
                if (s > 0) worst = fmax(worst, err / (0.5 * s));
                if (hi == lo) ASSERT(y[j] == a[j] || (want_f16 && !f)); /* constant group: exact, but QW8's f16 s */
            }
        }
        if (!f) /* the extreme of each group with a normal scale maps to ±127, none beyond */
            for (int64_t g = 0; g < cols / group; g++) {
                int top = 0;
                for (int i = 0; i < group; i++) {
                    int c = abs(((int8_t *)w->codes)[r * cols + g * group + i]);
                    ASSERT(c <= 127);
                    top = c > top ? c : top;
                }
                const float s = w->scales[r * (cols / group) + g];
                if (s == 0 || s >= 0x1p-14f) ASSERT_EQ(top, s > 0 ? 127 : 0);
            }
    }
    free(a), free(y);
    return worst;
}

/* RTN quantization at load (sl_repack with quant_to) from F32, F16 and BF16 sources, with f16
 * scales and offsets (row 0's values about 1e-3: QW8 scales f16 subnormals; an all-positive
 * group and one near the f16 limit); then an F32 tensor whose last row holds a group past the
 * f16 range: f32 scales for all of it. */
static void test_rtn(void) {
    sl_rng rng;
    sl_rng_seed(&rng, 11);
    const int64_t rows = 8, cols = 512;
    float *x = malloc((size_t)(rows * cols) * 4);
    uint8_t *src = malloc((size_t)(rows * cols) * 4);
    static const uint32_t T[] = {SL_GGML_F32, SL_GGML_F16, SL_GGML_BF16};
    for (int i = 0; i < rows * cols; i++) x[i] = sl_rng_normal(&rng) * (i < cols ? 1e-3f : 1.0f);
    for (int i = 0; i < 128; i++) x[cols + i] = 0.0f;        /* row 1: a zero group */
    for (int i = 128; i < 256; i++) x[cols + i] = -0.75f;    /* and a constant group */
    for (int i = 0; i < 128; i++) x[2 * cols + i] = fabsf(x[2 * cols + i]) + 3.0f; /* positive */
    for (int i = 0; i < 128; i++) x[3 * cols + i] = 60000.0f + 40.0f * (float)(i % 97); /* near 65504 */
    for (int t = 0; t < 3; t++) {
        ASSERT_EQ(sl_quantize_row(T[t], x, src, rows * cols), SL_OK);
        int esz = T[t] == SL_GGML_F32 ? 4 : 2;
        for (int f = 0; f < 2; f++) {
            sl_wfmt fmt = f ? SL_WF_QW4 : SL_WF_QW8;
            for (int gi = 0; gi < 3; gi++) {
                int group = gi == 0 ? 32 : gi == 1 ? 128 : 16;
                sl_qw w;
                ASSERT_EQ(sl_repack(T[t], src, rows, cols, fmt, group, 1, &w), SL_OK);
                ASSERT_EQ(w.fmt, fmt);
                ASSERT_EQ(w.group, group);
                ASSERT_EQ(w.offsets != NULL, f);
                ASSERT_EQ(w.owns, 1);
                const double worst = check_rtn(&w, T[t], src, esz, 1);
                sl_qw_free(&w);
                if (t == 0 && group != 16)
                    printf("RTN %s/%d: max err / (s/2) = %.4f\n", sl_wfmt_name(fmt), group, worst);
            }
        }
    }
    /* a group past the f16 range in the last row: f32 scales for the whole tensor */
    {
        for (int i = 0; i < 32; i++) x[7 * cols + i] = 1e7f * (1.0f + 0.01f * (float)i);
        ASSERT_EQ(sl_quantize_row(SL_GGML_F32, x, src, rows * cols), SL_OK);
        for (int f = 0; f < 2; f++) {
            sl_qw w;
            ASSERT_EQ(sl_repack(SL_GGML_F32, src, rows, cols, f ? SL_WF_QW4 : SL_WF_QW8, 32, 1, &w), SL_OK);
            check_rtn(&w, SL_GGML_F32, src, 4, 0);
            sl_qw_free(&w);
        }
    }
    /* a tensor large enough for its rows to go over threads: f16 scales, then with a group
     * past the f16 range in its last row, f32 for all of it */
    {
        const int64_t br = 67, bc = 65536;
        float *bx = malloc((size_t)(br * bc) * 4);
        for (int64_t i = 0; i < br * bc; i++) bx[i] = sl_rng_normal(&rng) * 0.02f;
        for (int pass = 0; pass < 2; pass++) {
            if (pass)
                for (int i = 0; i < 32; i++) bx[(br - 1) * bc + i] = 1e7f * (1.0f + 0.01f * (float)i);
            for (int f = 0; f < 2; f++) {
                sl_qw w;
                ASSERT_EQ(sl_repack(SL_GGML_F32, bx, br, bc, f ? SL_WF_QW4 : SL_WF_QW8, 32, 1, &w), SL_OK);
                check_rtn(&w, SL_GGML_F32, (const uint8_t *)bx, 4, !pass);
                sl_qw_free(&w);
            }
        }
        free(bx);
        printf("RTN %lldx%lld (rows over threads): f16 scales, and f32 past the range: ok\n",
               (long long)br, (long long)bc);
    }
    /* an F32 source that is not 4-byte aligned quantizes the same */
    {
        ASSERT_EQ(sl_quantize_row(SL_GGML_F32, x, src, rows * cols), SL_OK);
        uint8_t *mis = malloc((size_t)(rows * cols) * 4 + 2);
        memcpy(mis + 2, src, (size_t)(rows * cols) * 4);
        sl_qw w1, w2;
        ASSERT_EQ(sl_repack(SL_GGML_F32, src, rows, cols, SL_WF_QW4, 32, 0, &w1), SL_OK);
        ASSERT_EQ(sl_repack(SL_GGML_F32, mis + 2, rows, cols, SL_WF_QW4, 32, 0, &w2), SL_OK);
        ASSERT(memcmp(w1.codes, w2.codes, (size_t)(rows * cols / 2)) == 0);
        ASSERT(memcmp(w1.scales, w2.scales, (size_t)(rows * cols / 32) * 4) == 0);
        ASSERT(memcmp(w1.offsets, w2.offsets, (size_t)(rows * cols / 32) * 4) == 0);
        sl_qw_free(&w1);
        sl_qw_free(&w2);
        free(mis);
    }
    /* error paths */
    sl_qw w;
    ASSERT_EQ(sl_repack(SL_GGML_F32, src, rows, cols, SL_WF_QW8, 100, 0, &w), SL_EINVAL);
    ASSERT_EQ(sl_repack(SL_GGML_F32, src, rows, cols, SL_WF_QW4, 0, 0, &w), SL_EINVAL);
    ASSERT_EQ(sl_repack(SL_GGML_F32, src, 1, 9, SL_WF_QW4, 3, 0, &w), SL_EINVAL);
    ASSERT_EQ(sl_repack(SL_GGML_F32, src, 1, 8, 7, 8, 0, &w), SL_EINVAL);
    ASSERT_EQ(sl_repack(SL_GGML_Q4_0, src, 1, 48, -1, 32, 0, &w), SL_EINVAL);
    ASSERT_EQ(sl_repack(SL_GGML_Q6_K, src, 1, 128, -1, 32, 0, &w), SL_EINVAL);
    ASSERT_EQ(sl_repack(4, src, 1, 32, -1, 32, 0, &w), SL_EUNSUPPORTED);
    ASSERT_EQ(sl_repack(99, src, 1, 32, -1, 32, 0, &w), SL_EUNSUPPORTED);
    ASSERT(w.codes == NULL && w.data == NULL);
    free(x);
    free(src);
}

/* ---- 4. quantized dot vs float dot ------------------------------------------------------- */

static void test_dot(void) {
    sl_rng rng;
    sl_rng_seed(&rng, 5);
    const int64_t rows = 16, n = 4096;
    float *w = malloc((size_t)(rows * n) * 4), *x = malloc((size_t)n * 4),
          *y = malloc((size_t)n * 4);
    uint8_t *q = malloc((size_t)(rows * n) * 4);
    for (int64_t i = 0; i < rows * n; i++) w[i] = sl_rng_normal(&rng);
    for (int64_t i = 0; i < n; i++) x[i] = sl_rng_normal(&rng);
    /* eps: bound on the relative rms weight error ‖Δw‖/‖w‖ of the format on normal data.
     * For x independent of Δw, dot(Δw, x) ~ N(0, ‖Δw‖²·σx²), so
     * |dot(ŵ, x) − dot(w, x)| ≤ 6·eps·‖w‖·‖x‖/√n (six sigma; Cauchy–Schwarz is √n looser). */
    static const struct {
        const char *name;
        uint32_t type;
        int quant_to, group;
        double eps;
    } F[] = {
        {"F16", SL_GGML_F16, -1, 0, 4e-4},
        {"BF16", SL_GGML_BF16, -1, 0, 3e-3},
        {"Q8_0", SL_GGML_Q8_0, -1, 0, 6.5e-3},
        {"Q5_0", SL_GGML_Q5_0, -1, 0, 0.05},
        {"Q5_1", SL_GGML_Q5_1, -1, 0, 0.045},
        {"Q4_0", SL_GGML_Q4_0, -1, 0, 0.1},
        {"Q4_1", SL_GGML_Q4_1, -1, 0, 0.095},
        {"QW8/32", SL_GGML_F32, SL_WF_QW8, 32, 6.5e-3},
        {"QW8/128", SL_GGML_F32, SL_WF_QW8, 128, 8e-3},
        {"QW4/32", SL_GGML_F32, SL_WF_QW4, 32, 0.095},
        {"QW4/128", SL_GGML_F32, SL_WF_QW4, 128, 0.13},
    };
    for (int k = 0; k < (int)(sizeof F / sizeof F[0]); k++) {
        ASSERT_EQ(sl_quantize_row(F[k].type, w, q, rows * n), SL_OK);
        sl_qw qw;
        ASSERT_EQ(sl_repack(F[k].type, q, rows, n, F[k].quant_to, F[k].group, 0, &qw), SL_OK);
        double e2 = 0, w2 = 0, x2 = 0, worst = 0;
        for (int64_t i = 0; i < n; i++) x2 += (double)x[i] * x[i];
        for (int64_t r = 0; r < rows; r++) {
            sl_qw_dequant_row(&qw, r, y);
            double dq = 0, df = 0, rw2 = 0;
            for (int64_t i = 0; i < n; i++) {
                double wf = w[r * n + i];
                dq += (double)y[i] * x[i];
                df += wf * x[i];
                e2 += (y[i] - wf) * (y[i] - wf);
                rw2 += wf * wf;
            }
            w2 += rw2;
            double bound = 6 * F[k].eps * sqrt(rw2) * sqrt(x2) / sqrt((double)n);
            if (!(fabs(dq - df) <= bound)) {
                fprintf(stderr, "dot %s row %lld: %.6g vs %.6g, bound %.3g\n", F[k].name,
                        (long long)r, dq, df, bound);
                ASSERT(0);
            }
            worst = fmax(worst, fabs(dq - df) / bound);
        }
        double rel = sqrt(e2 / w2);
        printf("dot %-7s: rms rel weight error %.5f (eps %.5f), max |dot err| / bound %.3f\n",
               F[k].name, rel, F[k].eps, worst);
        ASSERT(rel <= F[k].eps);
        sl_qw_free(&qw);
    }
    free(w);
    free(x);
    free(y);
    free(q);
}

/* ---- random blocks: determinism and amplitude; repack speed ------------------------------- */

static void test_random_and_speed(void) {
    for (int k = 0; k < NQ; k++) {
        const tinfo *ti = &QTYPES[k];
        int64_t nblk = 64;
        uint8_t *a = malloc((size_t)(nblk * ti->bytes)), *b = malloc((size_t)(nblk * ti->bytes));
        sl_rng r1, r2;
        sl_rng_seed(&r1, 99);
        sl_rng_seed(&r2, 99);
        sl_quant_random(ti->type, &r1, a, nblk, 0.5f);
        sl_quant_random(ti->type, &r2, b, nblk, 0.5f);
        ASSERT(memcmp(a, b, (size_t)(nblk * ti->bytes)) == 0);
        float *y = malloc((size_t)(nblk * ti->blck) * 4);
        sl_dequant_row(ti->type, a, y, nblk * ti->blck);
        double amax = 0, s2 = 0;
        for (int64_t i = 0; i < nblk * ti->blck; i++) {
            amax = fmax(amax, fabs(y[i]));
            s2 += (double)y[i] * y[i];
        }
        double rms = sqrt(s2 / (double)(nblk * ti->blck));
        /* "roughly ±amp": bounded by a small multiple of amp, and not degenerate */
        ASSERT(amax <= 0.5 * 3.5);
        ASSERT(rms >= 0.5 * 0.1);
        free(a);
        free(b);
        free(y);
    }

    /* repack throughput at load (printed, not asserted) */
    static const uint32_t T[] = {SL_GGML_Q4_0, SL_GGML_Q8_0, SL_GGML_Q4_K, SL_GGML_Q5_K,
                                 SL_GGML_Q6_K};
    static const char *names[] = {"Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"};
    static const int bytes[] = {18, 34, 144, 176, 210}, blck[] = {32, 32, 256, 256, 256};
    const int64_t rows = 1024, cols = 4096;
    sl_rng rng;
    sl_rng_seed(&rng, 1);
    for (int k = 0; k < 5; k++) {
        int64_t nblk = rows * cols / blck[k];
        uint8_t *buf = malloc((size_t)(nblk * bytes[k]));
        sl_quant_random(T[k], &rng, buf, nblk, 1.0f);
        sl_qw w;
        double t0 = sl_time_s();
        ASSERT_EQ(sl_repack(T[k], buf, rows, cols, -1, 32, 0, &w), SL_OK);
        double dt = sl_time_s() - t0;
        printf("repack %-5s: %.0f Mweights/s\n", names[k], (double)(rows * cols) / dt * 1e-6);
        sl_qw_free(&w);
        free(buf);
    }
}

/* ---- 5. ggml itself as the oracle -------------------------------------------------------- */

static void *sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p) fprintf(stderr, "ggml oracle: no symbol %s\n", name);
    ASSERT(p);
    return p;
}

static void test_ggml_oracle(void) {
    /* the source tree from this file's path (CMake compiles with absolute paths) */
    const char *f = __FILE__, *tail = strstr(f, "tests/models/test_quant.c");
    if (f[0] != '/' || !tail) {
        printf("ggml oracle: skipped (source path unknown)\n");
        return;
    }
    char path[4096];
    snprintf(
        path, sizeof path,
        "%.*stests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so",
        (int)(tail - f), f);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("ggml oracle: skipped (%s)\n", dlerror());
        return;
    }
    typedef void (*dq_fn)(const void *, float *, int64_t);
    typedef void (*q_fn)(const float *, void *, int64_t);
    static const char *dqn[] = {"dequantize_row_q8_0", "dequantize_row_q4_0", "dequantize_row_q4_1",
                                "dequantize_row_q5_0", "dequantize_row_q5_1", "dequantize_row_q4_K",
                                "dequantize_row_q5_K", "dequantize_row_q6_K"};
    static const char *qn[] = {"quantize_row_q8_0_ref",
                               "quantize_row_q4_0_ref",
                               "quantize_row_q4_1_ref",
                               "quantize_row_q5_0_ref",
                               "quantize_row_q5_1_ref",
                               NULL,
                               NULL,
                               NULL};
    sl_rng rng;
    sl_rng_seed(&rng, 2024);
    for (int k = 0; k < NQ; k++) {
        const tinfo *ti = &QTYPES[k];
        dq_fn dq;
        q_fn q = NULL;
        void *p = sym(h, dqn[k]);
        memcpy(&dq, &p, sizeof dq);
        if (qn[k]) {
            p = sym(h, qn[k]);
            memcpy(&q, &p, sizeof q);
        }
        const int64_t nb = 512, n = nb * ti->blck;
        uint8_t *b1 = malloc((size_t)(nb * ti->bytes)), *b2 = malloc((size_t)(nb * ti->bytes));
        float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4), *x = malloc((size_t)n * 4);
        long bad = 0, badq = 0;
        for (int pass = 0; pass < 6; pass++) {
            /* random blocks, small amp (subnormal d), then fully random bytes (inf/nan too) */
            sl_quant_random(ti->type, &rng, b1, nb, pass == 1 ? 1e-3f : 1.0f);
            if (pass >= 3)
                for (int64_t i = 0; i < nb * ti->bytes; i++) b1[i] = (uint8_t)sl_rng_u64(&rng);
            dq(b1, a, n);
            sl_dequant_row(ti->type, b1, b, n);
            for (int64_t i = 0; i < n; i++) bad += !same(a[i], b[i]);
            sl_qw w;
            ASSERT_EQ(sl_repack(ti->type, b1, nb, ti->blck, -1, 32, 0, &w), SL_OK);
            for (int64_t r = 0; r < nb; r++) {
                sl_qw_dequant_row(&w, r, b);
                for (int e = 0; e < ti->blck; e++) bad += !same(a[r * ti->blck + e], b[e]);
            }
            sl_qw_free(&w);
            if (q) {
                float sc = pass == 0 ? 1.0f : pass == 1 ? 1e-3f : pass == 2 ? 1e4f : 1e-6f;
                for (int64_t i = 0; i < n; i++) x[i] = sl_rng_normal(&rng) * sc;
                for (int i = 0; i < 32; i++) x[i] = 0.0f;
                for (int i = 32; i < 64; i++) x[i] = 0.5f;
                x[64] = -2.0f;
                x[65] = 2.0f;
                q(x, b1, n);
                ASSERT_EQ(sl_quantize_row(ti->type, x, b2, n), SL_OK);
                for (int64_t i = 0; i < nb * ti->bytes; i++) badq += b1[i] != b2[i];
            }
        }
        if (bad || badq)
            fprintf(stderr, "ggml oracle %s: %ld values, %ld quantized bytes differ\n", ti->name,
                    bad, badq);
        ASSERT_EQ(bad, 0);
        ASSERT_EQ(badq, 0);
        printf("ggml oracle %-5s: dequant and repack bit-exact%s\n", ti->name,
               q ? ", quantize byte-exact" : "");
        free(b1);
        free(b2);
        free(a);
        free(b);
        free(x);
    }
    uint16_t (*f2h)(float), (*f2b)(float); /* ggml_bf16_t is a struct of one uint16_t */
    void *p = sym(h, "ggml_fp32_to_fp16");
    memcpy(&f2h, &p, sizeof f2h);
    p = sym(h, "ggml_fp32_to_bf16");
    memcpy(&f2b, &p, sizeof f2b);
    long bh = 0, bb = 0;
    for (int i = 0; i < 1000000; i++) {
        uint32_t u = (uint32_t)sl_rng_u64(&rng);
        if (i & 1) u = (u & 0x807fffffu) | (uint32_t)(100 + (u >> 23) % 45) << 23; /* fp16 range */
        float v;
        memcpy(&v, &u, 4);
        if (isnan(v)) continue;
        bh += f2h(v) != sl_f32_to_fp16(v);
        bb += f2b(v) != sl_f32_to_bf16(v);
    }
    ASSERT_EQ(bh, 0);
    ASSERT_EQ(bb, 0);
    printf("ggml oracle fp16/bf16: 1M conversions identical\n");
    /* the library stays loaded: unloading C++ runtimes at exit is not worth the trouble */
}

int main(void) {
    test_hand();
    test_exact();
    test_float_keep();
    test_quantize_roundtrip();
    test_rtn();
    test_dot();
    test_random_and_speed();
    test_ggml_oracle();
    printf("test_quant: ok\n");
    return 0;
}
