/* cpu_attention.c — causal attention over the paged KV cache for a ragged batch (backend.h).
 *
 * Work items are (token, KV head) pairs. The query heads that share a KV head (GQA) are done
 * together, so each K and V row is read once per item rather than once per query head: rows
 * of one KV head sit n_kv_heads·head_dim floats apart (4 KiB for 8 × 128), all in the same L1
 * sets, so re-reading them per head would come from L2 at best. Causal prefill tokens see very
 * different context lengths, so items are handed out dynamically from an atomic counter,
 * longest first within each KV head.
 *
 * Softmax is online over chunks of up to CH positions (which may span KV blocks): the scores of
 * the chunk for every head, one rescale of the running sum and accumulator when the max grows,
 * then the p·v accumulation. All f32; the running max keeps every exponent <= 0. The AVX2 path
 * computes scores for 4 heads × 2 positions (or 2 × 4, 1 × 8) at a time and accumulates p·v
 * for 4 heads × 16 columns (2 × 32, 1 × 64) in registers, each K/V cache line loaded once per
 * chunk; exp is a vectorized Cephes polynomial (about 1 ulp).
 */
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "../../base/base.h"
#include "cpu_internal.h"

#define MAXG 8   /* query heads per pass over the context */
#define CH 64    /* positions per softmax chunk */
#define MAXD 512 /* largest head_dim */

typedef struct at_job {
    const float *q;       /* [T][H][D] */
    const float *k_cache; /* [n_blocks][bs][Hkv][D] */
    const float *v_cache;
    float *out;           /* [T][H][D] */
    const sl_attn_batch *b;
    const int32_t *toks;  /* [n_tok][2]: batch token, its sequence */
    int64_t n_items;      /* n_tok × Hkv */
    int H, Hkv, D, bs, vec;
    float scale;
    atomic_llong next;
} at_job;

#define INLINE inline __attribute__((always_inline))

/* ---- scalar ------------------------------------------------------------------------- */

/* S[h][i] = scale · q_h · k_i for heads h < nh (q rows D apart) and the n rows kp[i]. */
static void scores_s(const float *q, int nh, const float *const *kp, int n, int D, float scale,
                     float (*S)[CH]) {
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < n; i++) {
            float s[4] = {0};
            for (int d = 0; d < D; d++) s[d & 3] += q[h * D + d] * kp[i][d];
            S[h][i] = ((s[0] + s[1]) + (s[2] + s[3])) * scale;
        }
}

/* acc[h][D] += Σ_i S[h][i] · v_i for heads h < nh and the n rows vp[i]. */
static void pv_s(float (*acc)[MAXD], float (*S)[CH], const float *const *vp, int n, int nh, int D) {
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < n; i++)
            for (int d = 0; d < D; d++) acc[h][d] += S[h][i] * vp[i][d];
}

/* ---- AVX2 (D % 8 == 0) ---------------------------------------------------------------- */

SL_AVX2 static INLINE __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* e^x for x <= 0 (Cephes expf: x = n·ln2 + r, |r| <= ln2/2, degree-6 polynomial, 2^n through
 * the exponent bits); 0 below −88. */
SL_AVX2 static INLINE __m256 exp256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* scores_s for the HQ query rows qp[] × 8/HQ positions per step: eight accumulators a<i>,
 * head i / PJ, position i % PJ. Loads repeated across the a<i> lines are the same address and
 * are merged by the compiler. Missing positions repeat the last one and are not stored. */
SL_AVX2 static INLINE void scores_hq(const float *const *qp, const float *const *kp, int n, int D,
                                     float scale, float (*S)[CH], const int HQ) {
    const int PJ = 8 / HQ;
    for (int j = 0; j < n; j += PJ) {
        const float *k[8];
        for (int p = 0; p < PJ; p++) k[p] = kp[j + p < n ? j + p : n - 1];
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int d = 0; d < D; d += 8) {
#define SC(i) a##i = _mm256_fmadd_ps(_mm256_loadu_ps(qp[i / PJ] + d), _mm256_loadu_ps(k[i % PJ] + d), a##i);
            SC(0) SC(1) SC(2) SC(3) SC(4) SC(5) SC(6) SC(7)
#undef SC
        }
        float t[8];
        _mm_storeu_ps(t, _mm_mul_ps(hsum4(a0, a1, a2, a3), _mm_set1_ps(scale)));
        _mm_storeu_ps(t + 4, _mm_mul_ps(hsum4(a4, a5, a6, a7), _mm_set1_ps(scale)));
        for (int i = 0; i < 8; i++)
            if (j + i % PJ < n) S[i / PJ][j + i % PJ] = t[i];
    }
}

/* pv_s for HQ heads × 64/HQ columns per pass: eight accumulators, head i / NR, columns
 * d + 8·(i % NR); each V cache line is loaded once per pass. */
SL_AVX2 static INLINE void pv_hq(float (*acc)[MAXD], float (*S)[CH], const float *const *vp, int n,
                                 int D, const int HQ) {
    const int NR = 8 / HQ;
    int d = 0;
    for (; d + 8 * NR <= D; d += 8 * NR) {
#define LD(i) __m256 a##i = _mm256_loadu_ps(&acc[i / NR][d + 8 * (i % NR)]);
        LD(0) LD(1) LD(2) LD(3) LD(4) LD(5) LD(6) LD(7)
#undef LD
        for (int j = 0; j < n; j++) {
#define PV(i) a##i = _mm256_fmadd_ps(_mm256_broadcast_ss(&S[i / NR][j]), _mm256_loadu_ps(vp[j] + d + 8 * (i % NR)), a##i);
            PV(0) PV(1) PV(2) PV(3) PV(4) PV(5) PV(6) PV(7)
#undef PV
        }
#define ST(i) _mm256_storeu_ps(&acc[i / NR][d + 8 * (i % NR)], a##i);
        ST(0) ST(1) ST(2) ST(3) ST(4) ST(5) ST(6) ST(7)
#undef ST
    }
    for (; d < D; d += 8) /* columns left when D is not a multiple of 8·NR */
        for (int h = 0; h < HQ; h++) {
            __m256 a = _mm256_loadu_ps(&acc[h][d]);
            for (int j = 0; j < n; j++)
                a = _mm256_fmadd_ps(_mm256_broadcast_ss(&S[h][j]), _mm256_loadu_ps(vp[j] + d), a);
            _mm256_storeu_ps(&acc[h][d], a);
        }
}

/* Heads are taken HQ at a time (4, or 2 / 1 when there are fewer). Rows of S and acc past nh
 * (up to a multiple of HQ) are scratch: S rows are zeroed, acc rows never read. */
static int hq_for(int nh) { return nh >= 3 ? 4 : nh; }

SL_AVX2 static void scores_avx2(const float *q, int nh, const float *const *kp, int n, int D,
                                float scale, float (*S)[CH]) {
    const int hq = hq_for(nh);
    for (int h = 0; h < nh; h += hq) {
        const float *qp[4]; /* a head past nh reads the last head's q; its row is zeroed below */
        for (int r = 0; r < hq; r++) qp[r] = q + (int64_t)(h + r < nh ? h + r : nh - 1) * D;
        if (hq == 4) scores_hq(qp, kp, n, D, scale, S + h, 4);
        else if (hq == 2) scores_hq(qp, kp, n, D, scale, S + h, 2);
        else scores_hq(qp, kp, n, D, scale, S + h, 1);
    }
    for (int h = nh; h % hq; h++)
        for (int i = 0; i < n; i++) S[h][i] = 0.0f;
}

SL_AVX2 static void pv_avx2(float (*acc)[MAXD], float (*S)[CH], const float *const *vp, int n,
                            int nh, int D) {
    const int hq = hq_for(nh);
    for (int h = 0; h < nh; h += hq) {
        if (hq == 4) pv_hq(acc + h, S + h, vp, n, D, 4);
        else if (hq == 2) pv_hq(acc + h, S + h, vp, n, D, 2);
        else pv_hq(acc + h, S + h, vp, n, D, 1);
    }
}

/* S[i] = e^(S[i] − m) for i < n; returns their sum. */
SL_AVX2 static float exp_row_avx2(float *S, int n, float m) {
    __m256 sum = _mm256_setzero_ps(), mv = _mm256_set1_ps(m);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(S + i), mv));
        _mm256_storeu_ps(S + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    float t[4];
    _mm_storeu_ps(t, hsum4(sum, sum, sum, sum));
    float s = t[0];
    for (; i < n; i++) {
        S[i] = expf(S[i] - m);
        s += S[i];
    }
    return s;
}

static float exp_row_s(float *S, int n, float m) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) {
        S[i] = expf(S[i] - m);
        s += S[i];
    }
    return s;
}

/* ---- one work item ------------------------------------------------------------------- */

static void item(const at_job *j, int64_t it) {
    const sl_attn_batch *b = j->b;
    const int D = j->D, bs = j->bs, G = j->H / j->Hkv, vec = j->vec;
    const int64_t kvd = (int64_t)j->Hkv * D;
    /* KV head major: consecutive items read the same head's K/V, which then stays in L2 */
    const int64_t n_tok = j->n_items / j->Hkv, li = it % n_tok;
    const int kvh = (int)(it / n_tok);
    const int32_t t = j->toks[2 * li], s = j->toks[2 * li + 1];
    const int64_t pos = (int64_t)b->ctx_len[s] - b->q_len[s] + (t - b->q_start[s]);
    const int32_t *bt = b->block_tables + (int64_t)s * b->max_blocks;
    float acc[MAXG][MAXD], S[MAXG][CH], m[MAXG], l[MAXG];
    const float *kp[CH], *vp[CH];

    for (int h0 = kvh * G; h0 < (kvh + 1) * G; h0 += MAXG) {
        const int ng = (kvh + 1) * G - h0 < MAXG ? (kvh + 1) * G - h0 : MAXG;
        const int npad = vec ? (ng + hq_for(ng) - 1) / hq_for(ng) * hq_for(ng) : ng;
        const float *qh = j->q + ((int64_t)t * j->H + h0) * D;
        for (int g = 0; g < npad; g++) {
            m[g] = -INFINITY;
            l[g] = 0.0f;
            for (int d = 0; d < D; d++) acc[g][d] = 0.0f;
            for (int i = 0; i < CH; i++) S[g][i] = 0.0f;
        }
        for (int64_t p0 = 0; p0 <= pos;) {
            int n = pos + 1 - p0 < CH ? (int)(pos + 1 - p0) : CH;
            int64_t bi = p0 / bs, off = p0 % bs;
            for (int i = 0; i < n; i++, off++) {
                if (off == bs) bi++, off = 0;
                int32_t blk = bt[bi];
                SL_CHECK(blk >= 0);
                int64_t row = ((int64_t)blk * bs + off) * kvd + (int64_t)kvh * D;
                kp[i] = j->k_cache + row;
                vp[i] = j->v_cache + row;
            }
            if (vec) scores_avx2(qh, ng, kp, n, D, j->scale, S);
            else scores_s(qh, ng, kp, n, D, j->scale, S);
            for (int g = 0; g < ng; g++) {
                float mx = S[g][0];
                for (int i = 1; i < n; i++) mx = S[g][i] > mx ? S[g][i] : mx;
                if (mx > m[g]) {
                    float alpha = expf(m[g] - mx); /* 0 on the first chunk */
                    for (int d = 0; d < D; d++) acc[g][d] *= alpha;
                    l[g] *= alpha;
                    m[g] = mx;
                }
                l[g] += vec ? exp_row_avx2(S[g], n, m[g]) : exp_row_s(S[g], n, m[g]);
            }
            if (vec) pv_avx2(acc, S, vp, n, ng, D);
            else pv_s(acc, S, vp, n, ng, D);
            p0 += n;
        }
        for (int g = 0; g < ng; g++) {
            float *o = j->out + ((int64_t)t * j->H + h0 + g) * D;
            float inv = 1.0f / l[g];
            for (int d = 0; d < D; d++) o[d] = acc[g][d] * inv;
        }
    }
}

static void at_run(void *ctx, int64_t begin, int64_t end, int tid) {
    (void)begin, (void)end, (void)tid;
    at_job *j = ctx;
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (i >= j->n_items) return;
        item(j, j->n_items - 1 - i);
    }
}

void sl__cpu_attention(sl_cpu *c, const float *q, const float *k_cache, const float *v_cache,
                       float *out, const sl_attn_batch *b, int H, int Hkv, int head_dim,
                       int block_size, float scale) {
    SL_CHECK(q && k_cache && v_cache && out && b && b->n_seqs >= 0);
    SL_CHECK(Hkv > 0 && H % Hkv == 0 && head_dim > 0 && head_dim <= MAXD && block_size > 0);
    int64_t n_tok = 0, work = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        SL_CHECK(b->q_len[s] >= 0 && b->q_len[s] <= b->ctx_len[s] && b->q_start[s] >= 0);
        SL_CHECK((b->ctx_len[s] + block_size - 1) / block_size <= b->max_blocks);
        n_tok += b->q_len[s];
        work += (int64_t)b->q_len[s] * b->ctx_len[s];
    }
    if (n_tok == 0) return;
    if (n_tok > c->tok_cap) {
        int32_t *p = realloc(c->tok_list, (size_t)n_tok * 2 * sizeof *p);
        SL_CHECK(p);
        c->tok_list = p;
        c->tok_cap = n_tok;
    }
    int64_t n = 0;
    for (int s = 0; s < b->n_seqs; s++)
        for (int i = 0; i < b->q_len[s]; i++) {
            c->tok_list[2 * n] = b->q_start[s] + i;
            c->tok_list[2 * n + 1] = s;
            n++;
        }
    at_job j = {.q = q, .k_cache = k_cache, .v_cache = v_cache, .out = out, .b = b,
                .toks = c->tok_list, .n_items = n_tok * Hkv, .H = H, .Hkv = Hkv, .D = head_dim,
                .bs = block_size, .vec = c->simd && head_dim % 8 == 0, .scale = scale};
    atomic_init(&j.next, 0);
    /* one pool item per thread, each pulling work items; small batches stay on the caller */
    int64_t workers = work * H * head_dim < (1 << 16) ? 1 : c->n_threads;
    sl_pool_run(c->pool, at_run, &j, workers, 1);
}
