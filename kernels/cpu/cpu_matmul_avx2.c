/* cpu_matmul_avx2.c — the AVX2/FMA/F16C matmul kernels (the plan is in cpu_matmul.c).
 *
 * Decode speed is uops per 8 weights, so the kernels keep decoding minimal:
 *  - QW4 loads 32 code bytes as 8 dwords; nibble k of every dword is one shift and a mask,
 *    which yields elements 8j + k of the block in lane j. x is permuted once per call to match
 *    (sl__mm_job.xp), so no shuffles are needed.
 *  - Scales multiply per-group partial sums (Σ c·x over the group, kept per lane), not each
 *    weight. QW4's −8 is applied per block and lane, Σ (c − 8)·x = Σ c·x − 8·Σ x, from the
 *    precomputed lane sums of x (sl__mm_job.xl): one op per 64 weights, and the cancellation
 *    stays within 8 products. With offsets the fused kernel adds Σ_g o_g·(Σ x over g) from the
 *    precomputed group sums of x (sl__mm_job.xg).
 *  - F16 is one vcvtph2ps, BF16 a widen and a shift.
 */
#include <immintrin.h>
#include <string.h>

#include "../../base/base.h"
#include "cpu_matmul.h"

#define MR SL_MM_MR
#define INLINE inline __attribute__((always_inline))

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

SL_AVX2 static INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* [Σa, Σb, Σc, Σd] */
SL_AVX2 static INLINE __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

SL_AVX2 static INLINE float dot(const float *a, const float *b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < n; i++) s += a[i] * b[i];
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

/* Nibble k (0..7) of every dword of v, as floats: one shift and one mask. */
SL_AVX2 static INLINE __m256 nib(__m256i v, int k) {
    __m256i c = k == 7 ? _mm256_srli_epi32(v, 28)
                       : _mm256_and_si256(_mm256_srli_epi32(v, 4 * k), _mm256_set1_epi32(15));
    return _mm256_cvtepi32_ps(c);
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

SL_AVX2 void sl__mm_prep_avx2(const float *x, int64_t cols, float *xp, float *cs) {
    int64_t b = 0;
    for (; b + 64 <= cols; b += 64) {
        __m256 r[8];
        for (int l = 0; l < 8; l++) r[l] = _mm256_loadu_ps(x + b + 8 * l);
        transpose8(r); /* r[k] lane l = x[b + 8l + k] */
        __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r[0], r[1]), _mm256_add_ps(r[2], r[3])),
                                 _mm256_add_ps(_mm256_add_ps(r[4], r[5]), _mm256_add_ps(r[6], r[7])));
        _mm256_storeu_ps(cs + b / 8, s);
        if (xp)
            for (int k = 0; k < 8; k++) _mm256_storeu_ps(xp + b + 8 * k, r[k]);
    }
    for (; b < cols; b += 8) {
        const float *p = x + b;
        cs[b / 8] = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
        if (xp) memcpy(xp + b, p, 8 * sizeof(float));
    }
}

/* ---- fused kernel: one row, nt <= 4 tokens, nothing stored but the results ------------- */

/* Per token t < nt, up to four accumulator chains a<t>0 .. a<t>3; FMA into chain (q % CH)
 * (CH chains per token: 4, 2 or 1 as nt grows, to hide FMA latency without spilling). The
 * first use of a chain may be a multiply (then its zeroing is free). */
#define FMA_CH(t, q, CH, first, wv, xv)                                                          \
    do {                                                                                         \
        if ((q) % (CH) == 0) a##t##0 = (first) ? _mm256_mul_ps(wv, xv) : _mm256_fmadd_ps(wv, xv, a##t##0); \
        else if ((q) % (CH) == 1) a##t##1 = (first) ? _mm256_mul_ps(wv, xv) : _mm256_fmadd_ps(wv, xv, a##t##1); \
        else if ((q) % (CH) == 2) a##t##2 = _mm256_fmadd_ps(wv, xv, a##t##2);                  \
        else a##t##3 = _mm256_fmadd_ps(wv, xv, a##t##3);                                        \
    } while (0)
#define FOR_T(X) X(0) X(1) X(2) X(3)
#define FOR_T3(X, a, b, c) X(0, a, b, c) X(1, a, b, c) X(2, a, b, c) X(3, a, b, c)
#define DECL_T(t)                                                                                \
    __m256 a##t##0 = _mm256_setzero_ps(), a##t##1 = a##t##0, a##t##2 = a##t##0, a##t##3 = a##t##0; \
    __m256 acc##t = a##t##0;                                                                     \
    const float *x##t = j->xp + (nt > t ? t : 0) * cols;                                         \
    (void)acc##t;
#define SUM_CH(t) _mm256_add_ps(_mm256_add_ps(a##t##0, a##t##1), _mm256_add_ps(a##t##2, a##t##3))

SL_AVX2 static INLINE void row_qw4(const sl__mm_job *j, int64_t r, int off, int nt, int gm,
                                   float *o) {
    const sl_qw *w = j->w;
    const int64_t cols = j->cols, G = w->group, ng = cols / G, nb = cols / 64;
    const uint8_t *cb = (const uint8_t *)w->codes + r * (cols / 2);
    const float *sc = w->scales + r * ng;
    const int CH = nt <= 2 ? 2 : 1; /* the chains restart per block, so few suffice */
    const __m256 eight = _mm256_set1_ps(8.0f);
    FOR_T(DECL_T)
    for (int64_t b = 0; b < nb; b++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(cb + b * 32));
        __m256 c;
        /* the chains restart every block (the scale differs per lane and block) */
#define Q4T(t, k)                                                                                \
    if (nt > t) FMA_CH(t, k, CH, (k) < CH, c, _mm256_loadu_ps(x##t + b * 64 + 8 * (k)));
#define Q4STEP(k) c = nib(v, k); Q4T(0, k) Q4T(1, k) Q4T(2, k) Q4T(3, k)
        Q4STEP(0) Q4STEP(1) Q4STEP(2) Q4STEP(3) Q4STEP(4) Q4STEP(5) Q4STEP(6) Q4STEP(7)
#undef Q4STEP
#undef Q4T
        __m256 s = lanes64(sc, b * 64, gm, G);
#define Q4END(t)                                                                                 \
    if (nt > t) {                                                                                \
        __m256 g = CH == 2 ? _mm256_add_ps(a##t##0, a##t##1) : a##t##0;                          \
        if (!off) g = _mm256_fnmadd_ps(eight, _mm256_loadu_ps(j->xl + t * (cols / 8) + b * 8), g); \
        acc##t = _mm256_fmadd_ps(s, g, acc##t);                                                  \
    }
        FOR_T(Q4END)
#undef Q4END
    }
    for (int64_t k = nb * 64; k < cols; k += 8) { /* tail: plain order */
        __m256 wv = _mm256_mul_ps(nib8(cb + k / 2, off), _mm256_set1_ps(sc[k / G]));
#define Q4TAIL(t) if (nt > t) acc##t = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x##t + k), acc##t);
        FOR_T(Q4TAIL)
#undef Q4TAIL
    }
#define Q4OUT(t)                                                                                 \
    if (nt > t) {                                                                                \
        o[t] = hsum(acc##t);                                                                     \
        if (off) o[t] += dot(w->offsets + r * ng, j->xg + t * ng, ng);                           \
    }
    FOR_T(Q4OUT)
#undef Q4OUT
}

SL_AVX2 static INLINE void row_qw8(const sl__mm_job *j, int64_t r, int off, int nt, float *o) {
    const sl_qw *w = j->w;
    const int64_t cols = j->cols, G = w->group, ng = cols / G;
    const int8_t *cb = (const int8_t *)w->codes + r * cols;
    const float *sc = w->scales + r * ng;
    const int CH = nt <= 2 ? 2 : 1;
    FOR_T(DECL_T)
    for (int64_t g = 0; g < ng; g++) {
        const int8_t *cg = cb + g * G;
        const int64_t k0 = g * G;
        int64_t i = 0;
        __m256 c0, c1;
#define Q8T(t, q, c, first) if (nt > t) FMA_CH(t, q, CH, first, c, _mm256_loadu_ps(x##t + k0 + i + 8 * (q)));
        c0 = ld_q8(cg);
        FOR_T3(Q8T, 0, c0, 1)
        if (G >= 16) {
            c1 = ld_q8(cg + 8);
            FOR_T3(Q8T, 1, c1, CH == 2)
            for (i = 16; i + 16 <= G; i += 16) {
                c0 = ld_q8(cg + i);
                c1 = ld_q8(cg + i + 8);
                FOR_T3(Q8T, 0, c0, 0)
                FOR_T3(Q8T, 1, c1, 0)
            }
            if (i < G) {
                c0 = ld_q8(cg + i);
                FOR_T3(Q8T, 0, c0, 0)
            }
        } /* else (G == 8) chain 1 stays zero */
#undef Q8T
        __m256 s = _mm256_set1_ps(sc[g]);
#define Q8END(t) if (nt > t) acc##t = _mm256_fmadd_ps(s, CH == 2 ? _mm256_add_ps(a##t##0, a##t##1) : a##t##0, acc##t);
        FOR_T(Q8END)
#undef Q8END
    }
#define Q8OUT(t)                                                                                 \
    if (nt > t) {                                                                                \
        o[t] = hsum(acc##t);                                                                     \
        if (off) o[t] += dot(w->offsets + r * ng, j->xg + t * ng, ng);                           \
    }
    FOR_T(Q8OUT)
#undef Q8OUT
}

SL_AVX2 static INLINE void row_f(const sl__mm_job *j, int64_t r, sl_wfmt fmt, int nt, float *o) {
    const int64_t cols = j->cols;
    const void *row = (const char *)j->w->data + r * sl_qw_row_bytes(j->w);
    const int CH = nt <= 2 ? 4 : nt == 3 ? 3 : 2; /* at least 8 chains */
    FOR_T(DECL_T)
    int64_t k = 0;
#define FT(t, q, wv, unused) if (nt > t) FMA_CH(t, q, CH, 0, wv, _mm256_loadu_ps(x##t + k + 8 * (q)));
    for (; k + 32 <= cols; k += 32) {
        __m256 w0 = ld_f(fmt, row, k), w1 = ld_f(fmt, row, k + 8);
        __m256 w2 = ld_f(fmt, row, k + 16), w3 = ld_f(fmt, row, k + 24);
        FOR_T3(FT, 0, w0, 0) FOR_T3(FT, 1, w1, 0) FOR_T3(FT, 2, w2, 0) FOR_T3(FT, 3, w3, 0)
    }
    for (; k < cols; k += 8) {
        __m256 w0 = ld_f(fmt, row, k);
        FOR_T3(FT, 0, w0, 0)
    }
#undef FT
#define FOUT(t) if (nt > t) o[t] = hsum(SUM_CH(t));
    FOR_T(FOUT)
#undef FOUT
}

/* One function per (format, offsets, tokens, QW4 group mode): the traits are compile-time. */
#define ROWS_FN(name, nt, call)                                                                  \
    SL_AVX2 static void name(const sl__mm_job *j, int64_t r0, int64_t r1) {                      \
        for (int64_t r = r0; r < r1; r++) {                                                      \
            float o[4];                                                                          \
            call;                                                                                \
            for (int t = 0; t < nt; t++) j->y[t * j->rows + r] = o[t];                           \
        }                                                                                        \
    }
#define NT_FNS(pre, ...)                                                                         \
    ROWS_FN(pre##1, 1, __VA_ARGS__(1)) ROWS_FN(pre##2, 2, __VA_ARGS__(2))                        \
    ROWS_FN(pre##3, 3, __VA_ARGS__(3)) ROWS_FN(pre##4, 4, __VA_ARGS__(4))
#define Q4S8(nt) row_qw4(j, r, 0, nt, GM_8, o)
#define Q4O8(nt) row_qw4(j, r, 1, nt, GM_8, o)
#define Q4S16(nt) row_qw4(j, r, 0, nt, GM_16, o)
#define Q4O16(nt) row_qw4(j, r, 1, nt, GM_16, o)
#define Q4S32(nt) row_qw4(j, r, 0, nt, GM_32, o)
#define Q4O32(nt) row_qw4(j, r, 1, nt, GM_32, o)
#define Q4SB(nt) row_qw4(j, r, 0, nt, GM_BIG, o)
#define Q4OB(nt) row_qw4(j, r, 1, nt, GM_BIG, o)
#define Q8S(nt) row_qw8(j, r, 0, nt, o)
#define Q8O(nt) row_qw8(j, r, 1, nt, o)
#define F16R(nt) row_f(j, r, SL_WF_F16, nt, o)
#define BF16R(nt) row_f(j, r, SL_WF_BF16, nt, o)
#define F32R(nt) row_f(j, r, SL_WF_F32, nt, o)
NT_FNS(q4s8_, Q4S8)
NT_FNS(q4o8_, Q4O8)
NT_FNS(q4s16_, Q4S16)
NT_FNS(q4o16_, Q4O16)
NT_FNS(q4s32_, Q4S32)
NT_FNS(q4o32_, Q4O32)
NT_FNS(q4sb_, Q4SB)
NT_FNS(q4ob_, Q4OB)
NT_FNS(q8s_, Q8S)
NT_FNS(q8o_, Q8O)
NT_FNS(f16_, F16R)
NT_FNS(bf16_, BF16R)
NT_FNS(f32_, F32R)

typedef void (*rows_fn)(const sl__mm_job *j, int64_t r0, int64_t r1);
#define NT4(pre) {pre##1, pre##2, pre##3, pre##4}

void sl__mm_fused_avx2(const sl__mm_job *j, int64_t tb, int64_t te) {
    static const rows_fn q4[4][2][4] = {
        {NT4(q4s8_), NT4(q4o8_)},
        {NT4(q4s16_), NT4(q4o16_)},
        {NT4(q4s32_), NT4(q4o32_)},
        {NT4(q4sb_), NT4(q4ob_)},
    };
    static const rows_fn q8[2][4] = {NT4(q8s_), NT4(q8o_)};
    static const rows_fn f[3][4] = {NT4(f32_), NT4(f16_), NT4(bf16_)};
    SL_CHECK(j->T >= 1 && j->T <= SL_MM_FUSED_MAX_T);
    const int off = j->w->offsets != NULL, t = j->T - 1;
    rows_fn fn;
    switch (j->w->fmt) {
    case SL_WF_QW8: fn = q8[off][t]; break;
    case SL_WF_QW4: {
        int gm = qw4_gm(j->w->group);
        fn = q4[gm == GM_8 ? 0 : gm == GM_16 ? 1 : gm == GM_32 ? 2 : 3][off][t];
        break;
    }
    default: fn = f[j->w->fmt][t]; break;
    }
    int64_t r1 = te * MR < j->rows ? te * MR : j->rows;
    fn(j, tb * MR, r1);
}

/* ---- tiled kernel ----------------------------------------------------------------------- */

/* Dequantizes columns [k0, k0 + n) of QW4 row r into dst, in xp's order (k0 % 64 == 0). */
SL_AVX2 static INLINE void dec_qw4(const sl_qw *w, int64_t r, int64_t k0, int64_t n, float *dst,
                                   int off, int gm) {
    const int64_t cols = w->cols, G = w->group, ng = cols / G, e = k0 + n;
    const uint8_t *cb = (const uint8_t *)w->codes + r * (cols / 2);
    const float *sc = w->scales + r * ng, *of = off ? w->offsets + r * ng : NULL;
    int64_t k = k0;
    for (; k + 64 <= e; k += 64) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(cb + k / 2));
        /* s·c + o, or s·c − 8s = s·(c − 8) (one rounding either way) */
        __m256 s = lanes64(sc, k, gm, G);
        __m256 o = off ? lanes64(of, k, gm, G) : _mm256_mul_ps(s, _mm256_set1_ps(-8.0f));
        float *d = dst + (k - k0);
#define DSTEP(q) _mm256_storeu_ps(d + 8 * (q), _mm256_fmadd_ps(nib(v, q), s, o));
        DSTEP(0) DSTEP(1) DSTEP(2) DSTEP(3) DSTEP(4) DSTEP(5) DSTEP(6) DSTEP(7)
#undef DSTEP
    }
    for (; k < e; k += 8) {
        __m256 s = _mm256_set1_ps(sc[k / G]), c = nib8(cb + k / 2, off);
        _mm256_storeu_ps(dst + (k - k0),
                         off ? _mm256_fmadd_ps(c, s, _mm256_set1_ps(of[k / G])) : _mm256_mul_ps(c, s));
    }
}

SL_AVX2 static void dec_qw4_any(const sl_qw *w, int64_t r, int64_t k0, int64_t n, float *dst) {
    const int off = w->offsets != NULL;
    switch (qw4_gm(w->group)) {
    case GM_8: off ? dec_qw4(w, r, k0, n, dst, 1, GM_8) : dec_qw4(w, r, k0, n, dst, 0, GM_8); return;
    case GM_16: off ? dec_qw4(w, r, k0, n, dst, 1, GM_16) : dec_qw4(w, r, k0, n, dst, 0, GM_16); return;
    case GM_32: off ? dec_qw4(w, r, k0, n, dst, 1, GM_32) : dec_qw4(w, r, k0, n, dst, 0, GM_32); return;
    default: off ? dec_qw4(w, r, k0, n, dst, 1, GM_BIG) : dec_qw4(w, r, k0, n, dst, 0, GM_BIG); return;
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
            __m256 o = of ? _mm256_set1_ps(of[k / G]) : _mm256_setzero_ps();
            for (int64_t i = k; i < k + G; i += 8) {
                __m256 c = ld_q8((const int8_t *)row + i);
                _mm256_storeu_ps(dst + (i - k0), of ? _mm256_fmadd_ps(c, s, o) : _mm256_mul_ps(c, s));
            }
        }
        return;
    }
    default: memcpy(dst, (const float *)row + k0, (size_t)n * sizeof(float)); return;
    }
}

/* y[t][r0 .. r0 + nr) (+)= tile rows w0..w3 · x rows t = 0 .. nt − 1 (xs floats apart) over n
 * columns (a multiple of 8). nt is a constant after inlining: 12 accumulators at nt = 3. */
SL_AVX2 static INLINE void mk(const float *const *wr, const float *x, int64_t xs, int nt, int64_t n,
                              float *y, int64_t ys, int64_t k0, int nr) {
    const float *w0 = wr[0], *w1 = wr[1], *w2 = wr[2], *w3 = wr[3];
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    for (int64_t k = 0; k < n; k += 8) {
        __m256 v0 = _mm256_loadu_ps(w0 + k), v1 = _mm256_loadu_ps(w1 + k);
        __m256 v2 = _mm256_loadu_ps(w2 + k), v3 = _mm256_loadu_ps(w3 + k);
        __m256 xv = _mm256_loadu_ps(x + k);
        a00 = _mm256_fmadd_ps(v0, xv, a00);
        a01 = _mm256_fmadd_ps(v1, xv, a01);
        a02 = _mm256_fmadd_ps(v2, xv, a02);
        a03 = _mm256_fmadd_ps(v3, xv, a03);
        if (nt >= 2) {
            xv = _mm256_loadu_ps(x + xs + k);
            a10 = _mm256_fmadd_ps(v0, xv, a10);
            a11 = _mm256_fmadd_ps(v1, xv, a11);
            a12 = _mm256_fmadd_ps(v2, xv, a12);
            a13 = _mm256_fmadd_ps(v3, xv, a13);
        }
        if (nt >= 3) {
            xv = _mm256_loadu_ps(x + 2 * xs + k);
            a20 = _mm256_fmadd_ps(v0, xv, a20);
            a21 = _mm256_fmadd_ps(v1, xv, a21);
            a22 = _mm256_fmadd_ps(v2, xv, a22);
            a23 = _mm256_fmadd_ps(v3, xv, a23);
        }
    }
    __m128 s[3] = {hsum4(a00, a01, a02, a03), hsum4(a10, a11, a12, a13), hsum4(a20, a21, a22, a23)};
    for (int t = 0; t < nt; t++) {
        float *yt = y + t * ys;
        if (nr == MR) {
            _mm_storeu_ps(yt, k0 ? _mm_add_ps(s[t], _mm_loadu_ps(yt)) : s[t]);
        } else {
            float o[4];
            _mm_storeu_ps(o, s[t]);
            for (int r = 0; r < nr; r++) yt[r] = k0 ? yt[r] + o[r] : o[r];
        }
    }
}

SL_AVX2 static void mk1(const float *const *wr, const float *x, int64_t xs, int64_t n, float *y,
                        int64_t ys, int64_t k0, int nr) {
    mk(wr, x, xs, 1, n, y, ys, k0, nr);
}
SL_AVX2 static void mk2(const float *const *wr, const float *x, int64_t xs, int64_t n, float *y,
                        int64_t ys, int64_t k0, int nr) {
    mk(wr, x, xs, 2, n, y, ys, k0, nr);
}
SL_AVX2 static void mk3(const float *const *wr, const float *x, int64_t xs, int64_t n, float *y,
                        int64_t ys, int64_t k0, int nr) {
    mk(wr, x, xs, 3, n, y, ys, k0, nr);
}

void sl__mm_tiled_avx2(const sl__mm_job *j, int64_t tb, int64_t te, int tid) {
    const sl_qw *w = j->w;
    const int64_t rows = j->rows, cols = j->cols, kc = j->kc;
    const int T = j->T;
    float *tile = j->tiles ? j->tiles + (size_t)tid * j->tile_floats : NULL;
    for (int64_t i = tb; i < te; i++) {
        int64_t r0 = i * MR;
        int nr = rows - r0 < MR ? (int)(rows - r0) : MR;
        for (int64_t k0 = 0; k0 < cols; k0 += kc) {
            int64_t n = cols - k0 < kc ? cols - k0 : kc;
            const float *wr[MR];
            for (int r = 0; r < MR; r++) {
                if (r >= nr) {
                    wr[r] = wr[nr - 1]; /* computed, not stored */
                } else if (w->fmt == SL_WF_F32) {
                    wr[r] = (const float *)w->data + (r0 + r) * cols + k0;
                } else {
                    if (w->fmt == SL_WF_QW4) dec_qw4_any(w, r0 + r, k0, n, tile + r * kc);
                    else dec_plain(w, r0 + r, k0, n, tile + r * kc);
                    wr[r] = tile + r * kc;
                }
            }
            const float *x = j->xp + k0;
            float *y = j->y + r0;
            /* tokens in threes; a remainder of one after threes becomes 2 + 2 (mk1 is the
             * least efficient: 5 loads per 4 FMAs) */
            int t = 0, t3 = T % 3 == 1 && T >= 4 ? T - 4 : T - T % 3;
            for (; t < t3; t += 3) mk3(wr, x + t * cols, cols, n, y + t * rows, rows, k0, nr);
            for (; t + 2 <= T; t += 2) mk2(wr, x + t * cols, cols, n, y + t * rows, rows, k0, nr);
            if (t < T) mk1(wr, x + t * cols, cols, n, y + t * rows, rows, k0, nr);
        }
    }
}
