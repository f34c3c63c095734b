/* cpu_matmul_avx2.c — the AVX2/FMA/F16C matmul kernels (the plan and the summation order they
 * all follow are in cpu_matmul.c).
 *
 * Decode speed is uops per 8 weights, so the kernels keep decoding minimal:
 *  - QW4 loads 32 code bytes as 8 dwords; nibble k of every dword is a shift and a mask, which
 *    yields elements 8j + k of the block in lane j. x is permuted once per call to match
 *    (sl__mm_job.xp), so no shuffles are needed.
 *  - QW4 scales multiply per-block partial sums (Σ c·x over the block's 8 steps, per lane), not
 *    each weight; the tiled kernel stores unscaled codes and applies the same scale per block.
 *    QW4's −8 is applied per block and lane, Σ (c − 8)·x = Σ c·x − 8·Σ x, by starting the
 *    even-step chain from −8·Σ x (precomputed, sl__mm_job.xl): no op at all.
 *  - QW8 and the float formats form each weight (s·c, or s·c + o in one FMA) and FMA it into
 *    one accumulator per (row, token); the fused kernel runs several rows at once for ILP.
 *  - F16 is one vcvtph2ps, BF16 a widen and a shift.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../../base/base.h"
#include "cpu_matmul.h"

#define MR SL_MM_MR
#define INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))
/* The same 256-bit code with AVX-512VL's 32 vector registers (no 512-bit op): same results. */
#define SL_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512vl")))
#define UNROLL _Pragma("GCC unroll 8")

/* How the 8 lanes of a 64-element QW4 block map to groups (lane j holds elements 8j .. 8j+7). */
enum { GM_8 = 8, GM_16 = 16, GM_32 = 32, GM_BIG = 64 /* group % 64 == 0: one per block */ };

static int qw4_gm(int64_t G) {
    if (G == 8 || G == 16 || G == 32) return (int)G;
    return G % 64 == 0 ? GM_BIG : 0;
}

int sl__mm_avx2_covers(const sl_qw *w) {
    if (w->cols % 8) return 0;
    if (w->fmt == SL_WF_QW8) return w->group % 8 == 0;
    if (w->fmt == SL_WF_QW4) return qw4_gm(w->group) != 0;
    return 1;
}

/* [Σa, Σb, Σc, Σd], each summed ((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7)): the one
 * horizontal order of every kernel (cpu_matmul.c's hsum8). */
SL_AVX2 static INLINE __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

SL_AVX2 static INLINE float hsum(__m256 v) {
    __m256 s = _mm256_hadd_ps(v, v);
    s = _mm256_hadd_ps(s, s);
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
}

/* Σ a·b as cpu_matmul.c's dot_off: one 8-lane FMA chain, hsum, then the tail by scalar FMAs. */
SL_AVX2 static INLINE float dot_off(const float *a, const float *b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

/* Per-lane scale (or offset) of the QW4 block starting at element k0, from a row's group
 * values p. */
SL_AVX2 static INLINE __m256 lanes64(const float *p, int64_t k0, int gm, int64_t G) {
    switch (gm) {
    case GM_8: return _mm256_loadu_ps(p + k0 / 8);
    case GM_16:
        return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + k0 / 16)),
                                        _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
    case GM_32: {
        __m128 two = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(p + k0 / 32)));
        return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two),
                                        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    }
    }
    return _mm256_set1_ps(p[k0 / G]);
}

/* Nibble k (0..7) of every dword of v, the code c as floats: one shift and one mask. */
SL_AVX2 static INLINE __m256 nib(__m256i v, int k, int off) {
    (void)off;
    __m256i c = k == 7 ? _mm256_srli_epi32(v, 28)
                       : _mm256_and_si256(_mm256_srli_epi32(v, 4 * k), _mm256_set1_epi32(15));
    return _mm256_cvtepi32_ps(c);
}

/* nib's values through a 16-entry table: vpermt2ps (AVX-512VL) reads only the low 4 bits of
 * each index, so a nibble is one shift and one lookup, with no mask and no conversion. */
SL_AVX512 static INLINE __m256 nib_lut(__m256i v, int k, int off) {
    (void)off;
    const __m256 lo = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 hi = _mm256_setr_ps(8, 9, 10, 11, 12, 13, 14, 15);
    return _mm256_permutex2var_ps(lo, k ? _mm256_srli_epi32(v, 4 * k) : v, hi);
}

SL_AVX2 static INLINE __m256i ld_codes4(const uint8_t *p, int off) {
    (void)off;
    return _mm256_loadu_si256((const __m256i *)p);
}

/* Eight QW4 codes of the plain (unpermuted) order from 4 bytes: lane i = element i, as
 * floats (c − 8 without offsets). Used for the tail of a row that is not a whole block. */
SL_AVX2 static INLINE __m256 nib8(const uint8_t *p, int off) {
    uint32_t u;
    memcpy(&u, p, 4);
    __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32((int)u),
                                  _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    v = _mm256_and_si256(v, _mm256_set1_epi32(15));
    if (!off) v = _mm256_sub_epi32(v, _mm256_set1_epi32(8));
    return _mm256_cvtepi32_ps(v);
}

SL_AVX2 static INLINE __m256 ld_q8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* Eight F16/BF16/F32 weights as floats. */
SL_AVX2 static INLINE __m256 ld_f(sl_wfmt fmt, const void *row, int64_t k) {
    if (fmt == SL_WF_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
    if (fmt == SL_WF_BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)row + k);
}

/* QW8 weights s·c (or s·c + o, one rounding), as the tiled kernel's tile holds them. */
SL_AVX2 static INLINE __m256 q8w(const int8_t *p, __m256 s, __m256 o, int off) {
    __m256 c = ld_q8(p);
    return off ? _mm256_fmadd_ps(c, s, o) : _mm256_mul_ps(c, s);
}

/* ---- activations ----------------------------------------------------------------------- */

/* 8×8 transpose of the rows r0..r7. */
SL_AVX2 static INLINE void transpose8(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

SL_AVX2 void sl__mm_prep_avx2(const float *x, int64_t cols, float *xp, float *xl) {
    int64_t b = 0;
    for (; b + 64 <= cols; b += 64) {
        __m256 r[8];
        for (int l = 0; l < 8; l++) r[l] = _mm256_loadu_ps(x + b + 8 * l);
        transpose8(r); /* r[k] lane l = x[b + 8l + k] */
        for (int k = 0; k < 8; k++) _mm256_storeu_ps(xp + b + 8 * k, r[k]);
        if (xl) { /* −8 × (the tree of sl__mm_group_sums' runs of 8): exact */
            __m256 l = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r[0], r[1]), _mm256_add_ps(r[2], r[3])),
                                     _mm256_add_ps(_mm256_add_ps(r[4], r[5]), _mm256_add_ps(r[6], r[7])));
            _mm256_storeu_ps(xl + b / 8, _mm256_mul_ps(l, _mm256_set1_ps(-8.0f)));
        }
    }
    if (b < cols) memcpy(xp + b, x + b, (size_t)(cols - b) * sizeof(float));
}

/* ---- fused kernel: a few rows, nt <= 4 tokens, nothing stored but the results ----------- */

/* One QW4 row: per block and token, chains over the even steps (from −8·Σx without offsets)
 * and the odd steps, acc = fma(s, even + odd, acc). A macro for the AVX2 kernel (nib) and its
 * AVX-512VL twin (nib_lut: the same code values, so the same results bit for bit). */
#define ROW_QW4(name, attr, nibf)                                                              \
    attr static INLINE void name(const sl__mm_job *j, int64_t r, int off, const int nt, int gm) { \
    const sl_qw *w = j->w;                                                                          \
    const int64_t cols = j->cols, G = w->group, ng = cols / G, nb = cols / 64;                      \
    const uint8_t *cb = (const uint8_t *)w->codes + r * (cols / 2);                                 \
    const float *sc = w->scales + r * ng;                                                           \
    __m256 acc[4], p[2][4];                                                                         \
    const float *x[4];                                                                              \
    UNROLL for (int t = 0; t < 4; t++) {                                                            \
        x[t] = j->xp + (nt > t ? t : 0) * cols;                                                     \
        acc[t] = _mm256_setzero_ps();                                                               \
    }                                                                                               \
    for (int64_t b = 0; b < nb; b++) {                                                              \
        __m256i v = ld_codes4(cb + b * 32, off);                                                    \
        UNROLL for (int k = 0; k < 8; k++) {                                                        \
            __m256 c = nibf(v, k, off);                                                             \
            UNROLL for (int t = 0; t < nt; t++) {                                                   \
                __m256 xv = _mm256_loadu_ps(x[t] + b * 64 + 8 * k);                                 \
                if (k >= 2) p[k & 1][t] = _mm256_fmadd_ps(c, xv, p[k & 1][t]);                      \
                else if (k == 1 || off) p[k][t] = _mm256_mul_ps(c, xv);                             \
                else p[0][t] = _mm256_fmadd_ps(c, xv, _mm256_loadu_ps(j->xl + t * (cols / 8) + b * 8)); \
            }                                                                                       \
        }                                                                                           \
        __m256 s = lanes64(sc, b * 64, gm, G);                                                      \
        UNROLL for (int t = 0; t < nt; t++)                                                         \
            acc[t] = _mm256_fmadd_ps(s, _mm256_add_ps(p[0][t], p[1][t]), acc[t]);                   \
    }                                                                                               \
    for (int64_t k = nb * 64; k < cols; k += 8) { /* tail: plain order */                           \
        __m256 c = nib8(cb + k / 2, off), s = _mm256_set1_ps(sc[k / G]);                            \
        UNROLL for (int t = 0; t < nt; t++)                                                         \
            acc[t] = _mm256_fmadd_ps(s, _mm256_mul_ps(c, _mm256_loadu_ps(x[t] + k)), acc[t]);       \
    }                                                                                               \
    UNROLL for (int t = 0; t < nt; t++) {                                                           \
        float o = hsum(acc[t]);                                                                     \
        if (off) o += dot_off(w->offsets + r * ng, j->xg + t * ng, ng);                             \
        j->y[t * j->rows + r] = o;                                                                  \
    }                                                                                               \
}
ROW_QW4(row_qw4, SL_AVX2, nib)
ROW_QW4(row_qw4_lut, SL_AVX512, nib_lut)

/* One step (8 columns at k) of a QW8 or float row into chain c of every token. */
#define PRE_STEP(kk, c, s, o)                                                                     \
    do {                                                                                          \
        __m256 wv_ = fmt == SL_WF_QW8 ? q8w(cb + (kk), s, o, off) : ld_f(fmt, row, kk);           \
        UNROLL for (int t = 0; t < nt; t++)                                                       \
            acc[c][t] = _mm256_fmadd_ps(wv_, _mm256_loadu_ps(x[t] + (kk)), acc[c][t]);            \
    } while (0)

/* One row of QW8 or a float format, nt <= 2 tokens: step i (8 columns) goes to chain i % 4 of
 * each token, y = hsum((acc0 + acc1) + (acc2 + acc3)). */
SL_AVX2 static INLINE void row_pre(const sl__mm_job *j, int64_t r, sl_wfmt fmt, int off,
                                   const int nt) {
    const sl_qw *w = j->w;
    const int64_t cols = j->cols;
    const int64_t G = fmt == SL_WF_QW8 ? w->group : 32, ng = cols / G;
    const int8_t *cb = fmt == SL_WF_QW8 ? (const int8_t *)w->codes + r * cols : NULL;
    const float *sc = fmt == SL_WF_QW8 ? w->scales + r * ng : NULL;
    const float *of = off ? w->offsets + r * ng : NULL;
    const void *row = fmt == SL_WF_QW8 ? NULL : (const char *)w->data + r * sl_qw_row_bytes(w);
    __m256 acc[4][2], s = _mm256_setzero_ps(), o = s;
    const float *x[2];
    UNROLL for (int t = 0; t < 2; t++) {
        x[t] = j->xp + (nt > t ? t : 0) * cols;
        UNROLL for (int c = 0; c < 4; c++) acc[c][t] = _mm256_setzero_ps();
    }
#define SCALE(kk)                                                                                 \
    if (fmt == SL_WF_QW8) {                                                                       \
        s = _mm256_set1_ps(sc[(kk) / G]);                                                         \
        o = off ? _mm256_set1_ps(of[(kk) / G]) : s;                                               \
    }
    int64_t k = 0;
    if (G % 32 == 0) { /* one scale per 4 steps */
        for (; k + 32 <= cols; k += 32) {
            SCALE(k)
            UNROLL for (int c = 0; c < 4; c++) PRE_STEP(k + 8 * c, c, s, o);
        }
    } else {
        for (; k + 32 <= cols; k += 32) {
            UNROLL for (int c = 0; c < 4; c++) {
                SCALE(k + 8 * c)
                PRE_STEP(k + 8 * c, c, s, o);
            }
        }
    }
    for (int c = 0; k < cols; k += 8, c++) {
        SCALE(k)
        PRE_STEP(k, c, s, o);
    }
#undef SCALE
    UNROLL for (int t = 0; t < nt; t++)
        j->y[t * j->rows + r] = hsum(_mm256_add_ps(_mm256_add_ps(acc[0][t], acc[1][t]),
                                                   _mm256_add_ps(acc[2][t], acc[3][t])));
}

/* One function per (format, offsets, tokens, QW4 group mode): the traits are compile-time.
 * One row at a time, so that each thread reads one sequential stream. */
#define Q4_FN(name, nt, off, gm)                                                                 \
    SL_AVX2 static void name(const sl__mm_job *j, int64_t r0, int64_t r1) {                      \
        for (int64_t r = r0; r < r1; r++) row_qw4(j, r, off, nt, gm);                            \
    }
#define Q4L_FN(name, nt, off, gm)                                                                \
    SL_AVX512 static void name(const sl__mm_job *j, int64_t r0, int64_t r1) {                    \
        for (int64_t r = r0; r < r1; r++) row_qw4_lut(j, r, off, nt, gm);                        \
    }
#define PRE_FN(name, nt, fmt, off)                                                               \
    SL_AVX2 static void name(const sl__mm_job *j, int64_t r0, int64_t r1) {                      \
        for (int64_t r = r0; r < r1; r++) row_pre(j, r, fmt, off, nt);                           \
    }
#define NT_FNS(pre, M, ...) M(pre##1, 1, __VA_ARGS__) M(pre##2, 2, __VA_ARGS__) \
    M(pre##3, 3, __VA_ARGS__) M(pre##4, 4, __VA_ARGS__)
#define NT_FNS2(pre, M, ...) M(pre##1, 1, __VA_ARGS__) M(pre##2, 2, __VA_ARGS__)
NT_FNS(q4s8_, Q4_FN, 0, GM_8)
NT_FNS(q4o8_, Q4_FN, 1, GM_8)
NT_FNS(q4s16_, Q4_FN, 0, GM_16)
NT_FNS(q4o16_, Q4_FN, 1, GM_16)
NT_FNS(q4s32_, Q4_FN, 0, GM_32)
NT_FNS(q4o32_, Q4_FN, 1, GM_32)
NT_FNS(q4sb_, Q4_FN, 0, GM_BIG)
NT_FNS(q4ob_, Q4_FN, 1, GM_BIG)
NT_FNS(q4ls8_, Q4L_FN, 0, GM_8)
NT_FNS(q4lo8_, Q4L_FN, 1, GM_8)
NT_FNS(q4ls16_, Q4L_FN, 0, GM_16)
NT_FNS(q4lo16_, Q4L_FN, 1, GM_16)
NT_FNS(q4ls32_, Q4L_FN, 0, GM_32)
NT_FNS(q4lo32_, Q4L_FN, 1, GM_32)
NT_FNS(q4lsb_, Q4L_FN, 0, GM_BIG)
NT_FNS(q4lob_, Q4L_FN, 1, GM_BIG)
NT_FNS2(q8s_, PRE_FN, SL_WF_QW8, 0)
NT_FNS2(q8o_, PRE_FN, SL_WF_QW8, 1)
NT_FNS2(f16_, PRE_FN, SL_WF_F16, 0)
NT_FNS2(bf16_, PRE_FN, SL_WF_BF16, 0)
NT_FNS2(f32_, PRE_FN, SL_WF_F32, 0)

typedef void (*rows_fn)(const sl__mm_job *j, int64_t r0, int64_t r1);
#define NT4(pre) {pre##1, pre##2, pre##3, pre##4}
#define NT2(pre) {pre##1, pre##2}

void sl__mm_fused_avx2(const sl__mm_job *j, int64_t tb, int64_t te) {
    static const rows_fn q4[2][4][2][4] = {{
        {NT4(q4s8_), NT4(q4o8_)},
        {NT4(q4s16_), NT4(q4o16_)},
        {NT4(q4s32_), NT4(q4o32_)},
        {NT4(q4sb_), NT4(q4ob_)},
    }, { /* AVX-512VL: the nibbles by table lookup */
        {NT4(q4ls8_), NT4(q4lo8_)},
        {NT4(q4ls16_), NT4(q4lo16_)},
        {NT4(q4ls32_), NT4(q4lo32_)},
        {NT4(q4lsb_), NT4(q4lob_)},
    }};
    static const rows_fn q8[2][2] = {NT2(q8s_), NT2(q8o_)};
    static const rows_fn f[3][2] = {NT2(f32_), NT2(f16_), NT2(bf16_)};
    SL_CHECK(j->T >= 1 && j->T <= (j->w->fmt == SL_WF_QW4 ? SL_MM_FUSED_MAX_T : 2));
    const int off = j->w->offsets != NULL, t = j->T - 1;
    rows_fn fn;
    switch (j->w->fmt) {
    case SL_WF_QW8: fn = q8[off][t]; break;
    case SL_WF_QW4: {
        int gm = qw4_gm(j->w->group);
        fn = q4[j->wide != 0][gm == GM_8 ? 0 : gm == GM_16 ? 1 : gm == GM_32 ? 2 : 3][off][t];
        break;
    }
    default: fn = f[j->w->fmt][t]; break;
    }
    int64_t r1 = te * MR < j->rows ? te * MR : j->rows;
    fn(j, tb * MR, r1);
}

/* ---- tiled kernel ----------------------------------------------------------------------- */

/* QW4 columns [k0, k0 + n) of row r (k0 % 64 == 0): dst gets the codes (c − 8 without
 * offsets) as floats in xp's order, sv one scale vector per full block and then one per
 * 8-column step of the tail, as the fused kernel applies them. */
SL_AVX2 static INLINE void dec_qw4(const sl_qw *w, int64_t r, int64_t k0, int64_t n, float *dst,
                                   float *sv, int off, int gm) {
    const int64_t cols = w->cols, G = w->group, ng = cols / G, e = k0 + n;
    const uint8_t *cb = (const uint8_t *)w->codes + r * (cols / 2);
    const float *sc = w->scales + r * ng;
    int64_t k = k0;
    for (; k + 64 <= e; k += 64, sv += 8) {
        __m256i v = ld_codes4(cb + k / 2, off);
        float *d = dst + (k - k0);
        UNROLL for (int q = 0; q < 8; q++) _mm256_storeu_ps(d + 8 * q, nib(v, q, off));
        _mm256_storeu_ps(sv, lanes64(sc, k, gm, G));
    }
    for (; k < e; k += 8, sv += 8) {
        _mm256_storeu_ps(dst + (k - k0), nib8(cb + k / 2, off));
        _mm256_storeu_ps(sv, _mm256_set1_ps(sc[k / G]));
    }
}

SL_AVX2 static void dec_qw4_any(const sl_qw *w, int64_t r, int64_t k0, int64_t n, float *dst,
                                float *sv) {
    const int off = w->offsets != NULL;
    switch (qw4_gm(w->group)) {
    case GM_8: off ? dec_qw4(w, r, k0, n, dst, sv, 1, GM_8) : dec_qw4(w, r, k0, n, dst, sv, 0, GM_8); return;
    case GM_16: off ? dec_qw4(w, r, k0, n, dst, sv, 1, GM_16) : dec_qw4(w, r, k0, n, dst, sv, 0, GM_16); return;
    case GM_32: off ? dec_qw4(w, r, k0, n, dst, sv, 1, GM_32) : dec_qw4(w, r, k0, n, dst, sv, 0, GM_32); return;
    default: off ? dec_qw4(w, r, k0, n, dst, sv, 1, GM_BIG) : dec_qw4(w, r, k0, n, dst, sv, 0, GM_BIG); return;
    }
}

/* Columns [k0, k0 + n) of row r as floats, plain order (k0 and n multiples of the group). */
SL_AVX2 static void dec_plain(const sl_qw *w, int64_t r, int64_t k0, int64_t n, float *dst) {
    const void *row = (const char *)(w->fmt == SL_WF_QW8 ? w->codes : w->data) + r * sl_qw_row_bytes(w);
    switch (w->fmt) {
    case SL_WF_F16:
        for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(dst + i, ld_f(SL_WF_F16, row, k0 + i));
        return;
    case SL_WF_BF16:
        for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(dst + i, ld_f(SL_WF_BF16, row, k0 + i));
        return;
    case SL_WF_QW8: {
        const int64_t G = w->group, ng = w->cols / G;
        const float *sc = w->scales + r * ng, *of = w->offsets ? w->offsets + r * ng : NULL;
        for (int64_t k = k0; k < k0 + n; k += G) {
            __m256 s = _mm256_set1_ps(sc[k / G]);
            __m256 o = of ? _mm256_set1_ps(of[k / G]) : s;
            for (int64_t i = k; i < k + G; i += 8)
                _mm256_storeu_ps(dst + (i - k0), q8w((const int8_t *)row + i, s, o, of != NULL));
        }
        return;
    }
    default: memcpy(dst, (const float *)row + k0, (size_t)n * sizeof(float)); return;
    }
}

/* Weights already formed (F32/F16/BF16/QW8): tile rows wr[0..3] · x rows t < nt (xs floats
 * apart) over the n columns from k0 on. Step i (8 columns, counted from column 0) belongs to
 * chain i % 4 of each (row, token), as in row_pre; the chains run one after the other, each
 * a pass with 12 accumulators at nt = 3, kept in ab ([nt][4][MR][8]) between passes and column
 * tiles. The last tile sums them into y[t][r] (ys floats apart). */
SL_AVX2 static INLINE void mk(const float *const *wr, const float *x, int64_t xs, const int nt,
                              int64_t n, int64_t k0, float *y, int64_t ys, int nr, float *ab,
                              int first, int last) {
    _Pragma("GCC unroll 1") for (int c = 0; c < 4; c++) {
        __m256 a[3][MR];
        UNROLL for (int t = 0; t < 3; t++) UNROLL for (int i = 0; i < MR; i++)
            a[t][i] = first || t >= nt ? _mm256_setzero_ps()
                                       : _mm256_loadu_ps(ab + ((t * 4 + c) * MR + i) * 8);
        for (int64_t k = 8 * ((c - k0 / 8) & 3); k < n; k += 32) {
            __m256 v[MR];
            UNROLL for (int i = 0; i < MR; i++) v[i] = _mm256_loadu_ps(wr[i] + k);
            UNROLL for (int t = 0; t < nt; t++) {
                __m256 xv = _mm256_loadu_ps(x + t * xs + k);
                UNROLL for (int i = 0; i < MR; i++) a[t][i] = _mm256_fmadd_ps(v[i], xv, a[t][i]);
            }
        }
        UNROLL for (int t = 0; t < nt; t++) UNROLL for (int i = 0; i < MR; i++)
            _mm256_storeu_ps(ab + ((t * 4 + c) * MR + i) * 8, a[t][i]);
    }
    if (!last) return;
    UNROLL for (int t = 0; t < nt; t++) {
        __m256 v[MR];
        UNROLL for (int i = 0; i < MR; i++) {
            const float *a = ab + (t * 4 * MR + i) * 8;
            v[i] = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(a + MR * 8)),
                                 _mm256_add_ps(_mm256_loadu_ps(a + 2 * MR * 8), _mm256_loadu_ps(a + 3 * MR * 8)));
        }
        __m128 s = hsum4(v[0], v[1], v[2], v[3]);
        float *yt = y + t * ys;
        if (nr == MR) {
            _mm_storeu_ps(yt, s);
        } else {
            float o[4];
            _mm_storeu_ps(o, s);
            for (int i = 0; i < nr; i++) yt[i] = o[i];
        }
    }
}

/* QW4: tile rows wr[0..R) of codes with their scale vectors sv[0..R) (dec_qw4) · x rows t < nt
 * over n columns, as row_qw4 sums: per block, chains over the even and the odd steps for the
 * R × nt (row, token) pairs, 2·R·nt accumulators in registers (R = 2 fits AVX2's 16; R = 4,
 * with 24, needs AVX-512VL's 32 and halves the loads of x); then ab[t][i] = fma(scale, even + odd,
 * ab[t][i]) ([nt][MR][8]). xl: −8·lane sums of token 0 (xls floats per token), NULL with
 * offsets. The step loop is not unrolled: unrolled, GCC orders each chain's steps one after
 * the other and the chains no longer overlap. */
SL_AVX2 static INLINE void mkq(const float *const *wr, const float *const *sv, const float *x,
                               int64_t xs, const float *xl, int64_t xls, const int nt, int64_t n,
                               float *ab, const int R) {
    const int64_t nb = n / 64;
    for (int64_t b = 0; b < nb; b++) {
        __m256 pe[3][MR], po[3][MR];
        {
            const int64_t k = b * 64;
            __m256 ve[MR], vo[MR];
            UNROLL for (int i = 0; i < R; i++) {
                ve[i] = _mm256_loadu_ps(wr[i] + k);
                vo[i] = _mm256_loadu_ps(wr[i] + k + 8);
            }
            UNROLL for (int t = 0; t < nt; t++) {
                __m256 xe = _mm256_loadu_ps(x + t * xs + k), xo = _mm256_loadu_ps(x + t * xs + k + 8);
                __m256 l = xl ? _mm256_loadu_ps(xl + t * xls + b * 8) : _mm256_setzero_ps();
                UNROLL for (int i = 0; i < R; i++) {
                    pe[t][i] = xl ? _mm256_fmadd_ps(ve[i], xe, l) : _mm256_mul_ps(ve[i], xe);
                    po[t][i] = _mm256_mul_ps(vo[i], xo);
                }
            }
        }
        UNROLL for (int64_t k = b * 64 + 16; k < b * 64 + 64; k += 16) {
            __m256 ve[MR], vo[MR];
            UNROLL for (int i = 0; i < R; i++) {
                ve[i] = _mm256_loadu_ps(wr[i] + k);
                vo[i] = _mm256_loadu_ps(wr[i] + k + 8);
            }
            UNROLL for (int t = 0; t < nt; t++) {
                __m256 xe = _mm256_loadu_ps(x + t * xs + k), xo = _mm256_loadu_ps(x + t * xs + k + 8);
                UNROLL for (int i = 0; i < R; i++) {
                    pe[t][i] = _mm256_fmadd_ps(ve[i], xe, pe[t][i]);
                    po[t][i] = _mm256_fmadd_ps(vo[i], xo, po[t][i]);
                }
            }
        }
        UNROLL for (int i = 0; i < R; i++) {
            __m256 s = _mm256_loadu_ps(sv[i] + b * 8);
            UNROLL for (int t = 0; t < nt; t++) {
                float *a = ab + (t * MR + i) * 8;
                _mm256_storeu_ps(a, _mm256_fmadd_ps(s, _mm256_add_ps(pe[t][i], po[t][i]), _mm256_loadu_ps(a)));
            }
        }
    }
    for (int64_t k = nb * 64, u = nb; k < n; k += 8, u++) {
        UNROLL for (int i = 0; i < R; i++) {
            __m256 v = _mm256_loadu_ps(wr[i] + k), s = _mm256_loadu_ps(sv[i] + u * 8);
            UNROLL for (int t = 0; t < nt; t++) {
                float *a = ab + (t * MR + i) * 8;
                __m256 pv = _mm256_mul_ps(v, _mm256_loadu_ps(x + t * xs + k));
                _mm256_storeu_ps(a, _mm256_fmadd_ps(s, pv, _mm256_loadu_ps(a)));
            }
        }
    }
}

#define MK_FNS(n_)                                                                                \
    SL_AVX2 static NOINLINE void mk##n_(const float *const *wr, const float *x, int64_t xs,       \
                                        int64_t n, int64_t k0, float *y, int64_t ys, int nr,      \
                                        float *ab, int first, int last) {                         \
        mk(wr, x, xs, n_, n, k0, y, ys, nr, ab, first, last);                                     \
    }                                                                                             \
    SL_AVX2 static NOINLINE void mkq##n_(const float *const *wr, const float *const *sv,          \
                                         const float *x, int64_t xs, const float *xl,             \
                                         int64_t xls, int64_t n, float *ab) {                     \
        mkq(wr, sv, x, xs, xl, xls, n_, n, ab, 2);                                                \
        mkq(wr + 2, sv + 2, x, xs, xl, xls, n_, n, ab + 16, 2);                                   \
    }                                                                                             \
    SL_AVX512 static NOINLINE void mkqw##n_(const float *const *wr, const float *const *sv,       \
                                            const float *x, int64_t xs, const float *xl,          \
                                            int64_t xls, int64_t n, float *ab) {                  \
        mkq(wr, sv, x, xs, xl, xls, n_, n, ab, 4);                                                \
    }
MK_FNS(1)
MK_FNS(2)
MK_FNS(3)


SL_AVX2 void sl__mm_tiled_avx2(const sl__mm_job *j, int64_t tb, int64_t te, int tid) {
    const sl_qw *w = j->w;
    const int64_t rows = j->rows, cols = j->cols, kc = j->kc;
    const int T = j->T, q4 = w->fmt == SL_WF_QW4;
    const int64_t ng = q4 ? cols / w->group : 0, svs = kc / 8 + 64; /* scale floats per row */
    float *tile = j->tiles ? j->tiles + (size_t)tid * j->tile_floats : NULL;
    float *ab = j->accb + (size_t)tid * j->accb_floats;
    /* tokens in threes; a remainder of one after threes becomes 2 + 2 (mk1 is the least
     * efficient: 5 loads per 4 FMAs) */
    const int t3 = T % 3 == 1 && T >= 4 ? T - 4 : T - T % 3;
    for (int64_t i = tb; i < te; i++) {
        int64_t r0 = i * MR;
        int nr = rows - r0 < MR ? (int)(rows - r0) : MR;
        if (q4) memset(ab, 0, (size_t)T * MR * 8 * sizeof(float));
        for (int64_t k0 = 0; k0 < cols; k0 += kc) {
            int64_t n = cols - k0 < kc ? cols - k0 : kc;
            const int first = k0 == 0, last = k0 + n == cols;
            const float *wr[MR], *sv[MR] = {NULL};
            for (int r = 0; r < MR; r++) {
                if (r >= nr) { /* computed, not stored */
                    wr[r] = wr[nr - 1];
                    sv[r] = sv[nr - 1];
                } else if (w->fmt == SL_WF_F32) {
                    wr[r] = (const float *)w->data + (r0 + r) * cols + k0;
                } else if (q4) {
                    float *svr = tile + MR * kc + r * svs;
                    dec_qw4_any(w, r0 + r, k0, n, tile + r * kc, svr);
                    wr[r] = tile + r * kc;
                    sv[r] = svr;
                } else {
                    dec_plain(w, r0 + r, k0, n, tile + r * kc);
                    wr[r] = tile + r * kc;
                }
            }
            const float *x = j->xp + k0;
            float *y = j->y + r0;
            int t = 0;
            if (q4) {
                const float *xl = j->xl ? j->xl + k0 / 8 : NULL;
#define XL(t) (xl ? xl + (t) * (cols / 8) : NULL)
                if (j->wide) {
                    for (; t < t3; t += 3) mkqw3(wr, sv, x + t * cols, cols, XL(t), cols / 8, n, ab + t * MR * 8);
                    for (; t + 2 <= T; t += 2) mkqw2(wr, sv, x + t * cols, cols, XL(t), cols / 8, n, ab + t * MR * 8);
                    if (t < T) mkqw1(wr, sv, x + t * cols, cols, XL(t), cols / 8, n, ab + t * MR * 8);
                    continue;
                }
                for (; t < t3; t += 3) mkq3(wr, sv, x + t * cols, cols, XL(t), cols / 8, n, ab + t * MR * 8);
                for (; t + 2 <= T; t += 2) mkq2(wr, sv, x + t * cols, cols, XL(t), cols / 8, n, ab + t * MR * 8);
                if (t < T) mkq1(wr, sv, x + t * cols, cols, XL(t), cols / 8, n, ab + t * MR * 8);
#undef XL
                continue;
            }
            for (; t < t3; t += 3)
                mk3(wr, x + t * cols, cols, n, k0, y + t * rows, rows, nr, ab + t * 4 * MR * 8, first, last);
            for (; t + 2 <= T; t += 2)
                mk2(wr, x + t * cols, cols, n, k0, y + t * rows, rows, nr, ab + t * 4 * MR * 8, first, last);
            if (t < T) mk1(wr, x + t * cols, cols, n, k0, y + t * rows, rows, nr, ab + t * 4 * MR * 8, first, last);
        }
        if (!q4) continue;
        for (int t = 0; t < T; t++) {
            const float *a = ab + t * MR * 8;
            float o[4];
            _mm_storeu_ps(o, hsum4(_mm256_loadu_ps(a), _mm256_loadu_ps(a + 8), _mm256_loadu_ps(a + 16),
                                   _mm256_loadu_ps(a + 24)));
            for (int r = 0; r < nr; r++) {
                float v = o[r];
                if (w->offsets) v += dot_off(w->offsets + (r0 + r) * ng, j->xg + t * ng, ng);
                j->y[t * rows + r0 + r] = v;
            }
        }
    }
}

/* ---- int8 activations (cpu_matmul.c gives the order and the panel layout) ---------------
 * Lane j of every vector is row 8p + j of panel p. Per unit (32 columns), the 8 vectors W[v]
 * of a panel hold columns 32u + 4v .. + 3 (QW4: its 4 code vectors' low nibbles, then their
 * high ones); against a token, DOT adds to each lane the 4 products of W[v]'s bytes with the
 * token's 4 codes at 32u + 4v, broadcast. vpdpbusd (VNNI) takes unsigned × signed bytes:
 * QW4's codes, QW8's c + 128 (from −128·Σq, init). AVX2's vpmaddubsw sums byte pairs to int16
 * with saturation, which these never reach (QW4: 15·127·2; QW8 as |c| · ±q: 128·127·2), then
 * vpmaddwd the pairs. Each part (min(group, 32) columns) sums in two chains (even and odd
 * vectors) that are added: integers, so the order is free. */
#define SL_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")))

SL_AVX2 static INLINE __m256i dot_avx2(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
SL_VNNI static INLINE __m256i dot_vnni(__m256i acc, __m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(acc, u, s);
}

/* RP panels from p × NT tokens from t0; S: columns per part (8, 16 or 32). */
#define MMQ_KERNEL(name, attr, vnni)                                                             \
    attr static INLINE void name(const sl__mmq_job *j, int64_t p, int64_t t0, const int RP,        \
                                 const int NT, const int S) {                                      \
        const sl_qw *w = j->w;                                                                     \
        const int64_t cols = j->cols, G = w->group, ng = cols / G, nu = cols / SL_MMQ_U;           \
        const int q4 = w->fmt == SL_WF_QW4, off = w->offsets != NULL;                              \
        const int use_init = j->init != NULL; /* QW4 without offsets; QW8 through VNNI */      \
        const size_t ub = q4 ? 128 : 256;                                                          \
        const __m256i m4 = _mm256_set1_epi8(15), flip = _mm256_set1_epi8((char)0x80);              \
        /* the offsets' chain o: inside the unit loop for one token (one more stream in flight,  \
         * not a second pass), after it for more (registers); the same operations either way */    \
        const int off_in = off && NT == 1;                                                         \
        __m256 acc[4][4], o[4][4];                                                                 \
        UNROLL for (int i = 0; i < RP; i++) UNROLL for (int t = 0; t < NT; t++)                    \
            acc[i][t] = o[i][t] = _mm256_setzero_ps();                                             \
        for (int64_t u = 0; u < nu; u++) {                                                         \
            __m256i W[4][8];                                                                       \
            UNROLL for (int i = 0; i < RP; i++) {                                                  \
                const uint8_t *src = j->pk->codes + ((size_t)(p + i) * nu + u) * ub;               \
                if (q4) {                                                                          \
                    UNROLL for (int k = 0; k < 4; k++) {                                           \
                        __m256i v = _mm256_loadu_si256((const __m256i *)(src + 32 * k));           \
                        W[i][k] = _mm256_and_si256(v, m4);                                         \
                        W[i][4 + k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);               \
                    }                                                                              \
                } else {                                                                           \
                    UNROLL for (int v = 0; v < 8; v++) {                                           \
                        W[i][v] = _mm256_loadu_si256((const __m256i *)(src + 32 * v));             \
                        if (!vnni) W[i][v] = _mm256_xor_si256(W[i][v], flip); /* c */              \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            UNROLL for (int P = 0; P < SL_MMQ_U / S; P++) {                                        \
                const int64_t g = (u * SL_MMQ_U + P * S) / G;                                      \
                __m256 sw[4];                                                                      \
                UNROLL for (int i = 0; i < RP; i++)                                                \
                    sw[i] = _mm256_loadu_ps(j->pk->scales + ((p + i) * ng + g) * 8);               \
                if (off_in && (u * SL_MMQ_U + P * S) % G == 0)                                     \
                    UNROLL for (int i = 0; i < RP; i++) {                                          \
                        __m256 ov = _mm256_loadu_ps(j->pk->offsets + ((p + i) * ng + g) * 8);      \
                        o[i][0] = _mm256_fmadd_ps(ov, _mm256_set1_ps(j->xg[t0 * ng + g]), o[i][0]); \
                    }                                                                              \
                UNROLL for (int t = 0; t < NT; t++) {                                              \
                    const int8_t *qt = j->q + (t0 + t) * cols + u * SL_MMQ_U;                      \
                    const __m256 dx = _mm256_set1_ps(j->d[(t0 + t) * nu + u]);                     \
                    const __m256i s0 = use_init                                                    \
                        ? _mm256_set1_epi32(j->init[(t0 + t) * (cols / S) + u * (SL_MMQ_U / S) + P]) \
                        : _mm256_setzero_si256();                                                  \
                    __m256i L[4][2];                                                               \
                    UNROLL for (int i = 0; i < RP; i++) {                                          \
                        L[i][0] = s0;                                                              \
                        L[i][1] = _mm256_setzero_si256();                                          \
                    }                                                                              \
                    UNROLL for (int v = P * S / 4; v < (P + 1) * S / 4; v++) {                     \
                        int32_t qd;                                                                \
                        memcpy(&qd, qt + 4 * v, 4);                                                \
                        const __m256i qb = _mm256_set1_epi32(qd);                                  \
                        UNROLL for (int i = 0; i < RP; i++) {                                      \
                            if (vnni)                                                              \
                                L[i][v & 1] = dot_vnni(L[i][v & 1], W[i][v], qb);                  \
                            else if (q4)                                                           \
                                L[i][v & 1] = dot_avx2(L[i][v & 1], W[i][v], qb);                  \
                            else                                                                   \
                                L[i][v & 1] = dot_avx2(L[i][v & 1], _mm256_abs_epi8(W[i][v]),      \
                                                       _mm256_sign_epi8(qb, W[i][v]));             \
                        }                                                                          \
                    }                                                                              \
                    UNROLL for (int i = 0; i < RP; i++) {                                          \
                        __m256 f = _mm256_cvtepi32_ps(_mm256_add_epi32(L[i][0], L[i][1]));         \
                        acc[i][t] = _mm256_fmadd_ps(f, _mm256_mul_ps(sw[i], dx), acc[i][t]);       \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int i = 0; i < RP; i++) {                                                      \
            if (off && !off_in)                                                                    \
                for (int64_t g = 0; g < ng; g++) {                                                 \
                    __m256 ov = _mm256_loadu_ps(j->pk->offsets + ((p + i) * ng + g) * 8);          \
                    UNROLL for (int t = 0; t < NT; t++)                                            \
                        o[i][t] = _mm256_fmadd_ps(ov, _mm256_set1_ps(j->xg[(t0 + t) * ng + g]), o[i][t]); \
                }                                                                                  \
            const int64_t r0 = (p + i) * 8, nr = j->rows - r0 < 8 ? j->rows - r0 : 8;              \
            UNROLL for (int t = 0; t < NT; t++) {                                                  \
                float yv[8];                                                                       \
                _mm256_storeu_ps(yv, _mm256_add_ps(acc[i][t], o[i][t]));                           \
                memcpy(j->y + (t0 + t) * j->rows + r0, yv, (size_t)nr * sizeof(float));            \
            }                                                                                      \
        }                                                                                          \
    }
MMQ_KERNEL(mmq_avx2, SL_AVX2, 0)
MMQ_KERNEL(mmq_vnni, SL_VNNI, 1)

typedef void (*mmq_fn)(const sl__mmq_job *j, int64_t p, int64_t t0);
#define MMQ_FN(name, attr, kern, RP, NT, S)                                                       \
    attr static NOINLINE void name(const sl__mmq_job *j, int64_t p, int64_t t0) { kern(j, p, t0, RP, NT, S); }
/* One function per (panels RP = 1, 2) × (tokens NT = 1 .. 4), and 4 panels × 1 token */
#define MMQ_FNS(pre, attr, kern, S)                                                               \
    MMQ_FN(pre##_11, attr, kern, 1, 1, S) MMQ_FN(pre##_12, attr, kern, 1, 2, S)                   \
    MMQ_FN(pre##_13, attr, kern, 1, 3, S) MMQ_FN(pre##_14, attr, kern, 1, 4, S)                   \
    MMQ_FN(pre##_21, attr, kern, 2, 1, S) MMQ_FN(pre##_22, attr, kern, 2, 2, S)                   \
    MMQ_FN(pre##_23, attr, kern, 2, 3, S) MMQ_FN(pre##_24, attr, kern, 2, 4, S)                   \
    MMQ_FN(pre##_41, attr, kern, 4, 1, S)
MMQ_FNS(mmqv8, SL_VNNI, mmq_vnni, 8)
MMQ_FNS(mmqv16, SL_VNNI, mmq_vnni, 16)
MMQ_FNS(mmqv32, SL_VNNI, mmq_vnni, 32)
MMQ_FNS(mmqa8, SL_AVX2, mmq_avx2, 8)
MMQ_FNS(mmqa16, SL_AVX2, mmq_avx2, 16)
MMQ_FNS(mmqa32, SL_AVX2, mmq_avx2, 32)
#define MMQ_TAB(pre) {{pre##_11, pre##_12, pre##_13, pre##_14}, {pre##_21, pre##_22, pre##_23, pre##_24}, {pre##_41}}

void sl__mmq_avx2(const sl__mmq_job *j, int64_t pb, int64_t pe) {
    static const mmq_fn fns[2][3][3][4] = {
        {MMQ_TAB(mmqa8), MMQ_TAB(mmqa16), MMQ_TAB(mmqa32)},
        {MMQ_TAB(mmqv8), MMQ_TAB(mmqv16), MMQ_TAB(mmqv32)},
    };
    const int64_t G = j->w->group;
    const mmq_fn(*f)[4] = fns[j->level >= 3][G == 8 ? 0 : G == 16 ? 1 : 2];
    /* 2 panels × 4 tokens at a time: measured best (bench_cpu_matmul, 4096 × 4096, T = 128:
     * VNNI 300 GFLOP/s against 178 for 1 × 4 and 265 for 2 × 3; AVX2 153 against 134 for 2 × 2) */
    const int NT = 4;
    for (int64_t p = pb; p < pe;) {
        if (j->T == 1 && j->level >= 3 && p + 4 <= pe) {
            /* decode with 32 registers: 4 streams (QW4 from memory 16 -> 20 GB/s) */
            f[2][0](j, p, 0);
            p += 4;
            continue;
        }
        const int rp = p + 2 <= pe ? 2 : 1;
        for (int64_t t0 = 0; t0 < j->T; t0 += NT) {
            const int nt = j->T - t0 < NT ? (int)(j->T - t0) : NT;
            f[rp - 1][nt - 1](j, p, t0);
        }
        p += rp;
    }
}

SL_AVX2 void sl__mmq_quant_unit_avx2(const float *xu, int8_t *q, float *d, int32_t *s4) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 v[4], a[4];
    int ok = 1;
    UNROLL for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(xu + 8 * k);
        a[k] = _mm256_and_ps(v[k], absm);
        ok &= _mm256_movemask_ps(_mm256_cmp_ps(a[k], _mm256_set1_ps(3.4028235e38f), _CMP_LE_OQ)) == 0xFF;
    }
    __m256 m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h); /* max is exact: the same as the scalar loop's */
    if (!ok) {
        *d = NAN;
        memset(q, 0, SL_MMQ_U);
        memset(s4, 0, 8 * sizeof *s4);
        return;
    }
    *d = amax / 127.0f;
    const float id0 = 127.0f / amax; /* as quant_unit: 0 when it overflows (amax 0 or tiny) */
    const __m256 id = _mm256_set1_ps(id0 <= 3.4028235e38f ? id0 : 0.0f), rnd = _mm256_set1_ps(12582912.0f);
    __m256i c[4];
    UNROLL for (int k = 0; k < 4; k++) {
        __m256 r = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(v[k], id), rnd), rnd);
        r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
        c[k] = _mm256_cvttps_epi32(r);
    }
    /* packs work within 128-bit halves: the dwords come out in the order 0 4 1 5 2 6 3 7 */
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, b);
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), b), _mm256_set1_epi16(1));
    _mm256_storeu_si256((__m256i *)s4, s);
}
