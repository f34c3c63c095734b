/* sampling.c — the per-sequence sampler; see sampling.h for the semantics. */
#include "sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../models/sample.h"

void sl_sampling_params_defaults(sl_sampling_params *p) {
    *p = (sl_sampling_params){.n = 1, .max_tokens = 16, .temperature = 1.0f, .top_k = 0, .top_p = 1.0f,
                              .min_p = 0.0f, .repetition_penalty = 1.0f};
}

int sl_sampling_params_check(const sl_sampling_params *p, int n_vocab, char err[SL_ERRMSG]) {
    /* written as !(in range) so that NaN fails every check */
    if (p->n < 1 || p->n > 128) return sl_fail(err, SL_EINVAL, "n must be in [1, 128], got %d", p->n);
    if (p->max_tokens < 1) return sl_fail(err, SL_EINVAL, "max_tokens must be at least 1, got %d", p->max_tokens);
    if (!(p->temperature >= 0 && p->temperature <= 1e4f))
        return sl_fail(err, SL_EINVAL, "temperature must be in [0, 10000], got %g", p->temperature);
    if (p->top_k < -1) return sl_fail(err, SL_EINVAL, "top_k must be -1, 0 (off) or positive, got %d", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1)) return sl_fail(err, SL_EINVAL, "top_p must be in (0, 1], got %g", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1)) return sl_fail(err, SL_EINVAL, "min_p must be in [0, 1], got %g", p->min_p);
    if (!(p->repetition_penalty > 0 && p->repetition_penalty <= 1e4f))
        return sl_fail(err, SL_EINVAL, "repetition_penalty must be in (0, 10000], got %g", p->repetition_penalty);
    if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
        return sl_fail(err, SL_EINVAL, "frequency_penalty must be in [-2, 2], got %g", p->frequency_penalty);
    if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
        return sl_fail(err, SL_EINVAL, "presence_penalty must be in [-2, 2], got %g", p->presence_penalty);
    if (p->n_logit_bias < 0 || (p->n_logit_bias && !p->logit_bias))
        return sl_fail(err, SL_EINVAL, "logit_bias: bad list");
    for (int i = 0; i < p->n_logit_bias; i++) {
        const sl_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return sl_fail(err, SL_EINVAL, "logit_bias: token %d is out of range (vocabulary of %d)", b->token, n_vocab);
        if (!(b->bias >= -100 && b->bias <= 100))
            return sl_fail(err, SL_EINVAL, "logit_bias: bias of token %d must be in [-100, 100], got %g", b->token,
                           b->bias);
    }
    if (p->n_logit_bias > 1) { /* each token once ("5" and "05" are one token): at most V entries */
        uint8_t *seen = sl_xcalloc((size_t)n_vocab / 8 + 1, 1);
        int dup = -1;
        for (int i = 0; i < p->n_logit_bias && dup < 0; i++) {
            const int32_t t = p->logit_bias[i].token;
            if (seen[t / 8] & (1u << (t % 8))) dup = t;
            seen[t / 8] |= (uint8_t)(1u << (t % 8));
        }
        free(seen);
        if (dup >= 0) return sl_fail(err, SL_EINVAL, "logit_bias: token %d is listed twice", dup);
    }
    if (p->n_stop_ids < 0 || (p->n_stop_ids && !p->stop_ids)) return sl_fail(err, SL_EINVAL, "stop_token_ids: bad list");
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] < 0) return sl_fail(err, SL_EINVAL, "stop_token_ids: %d is negative", p->stop_ids[i]);
    if (p->n_stop < 0 || p->n_stop > SL_MAX_STOP_STRINGS || (p->n_stop && !p->stop))
        return sl_fail(err, SL_EINVAL, "stop: at most %d stop strings", SL_MAX_STOP_STRINGS);
    for (int i = 0; i < p->n_stop; i++) {
        size_t n = p->stop[i] ? strlen(p->stop[i]) : 0;
        if (n == 0 || n > SL_MAX_STOP_LEN)
            return sl_fail(err, SL_EINVAL, "stop: string %d must have 1 to %d bytes", i, SL_MAX_STOP_LEN);
    }
    if (p->top_logprobs < 0 || p->top_logprobs > SL_MAX_LOGPROBS)
        return sl_fail(err, SL_EINVAL, "top_logprobs must be in [0, %d], got %d", SL_MAX_LOGPROBS, p->top_logprobs);
    return SL_OK;
}

void sl_sample_ws_init(sl_sample_ws *ws, int n_vocab) {
    ws->n_vocab = n_vocab;
    ws->work = sl_xmalloc((size_t)n_vocab * sizeof *ws->work);
    ws->prob = sl_xmalloc((size_t)n_vocab * sizeof *ws->prob);
    ws->keys = sl_xmalloc((size_t)n_vocab * sizeof *ws->keys);
}

void sl_sample_ws_deinit(sl_sample_ws *ws) {
    free(ws->work);
    free(ws->prob);
    free(ws->keys);
    memset(ws, 0, sizeof *ws);
}

static uint64_t mix64(uint64_t x) { /* splitmix64's finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t sl_sampling_seed(const sl_sampling_params *p, uint64_t base, uint64_t id, int k) {
    if (p->has_seed) return p->seed + (uint64_t)k;
    return mix64(mix64(base ^ 0x73616d706c657221ull) + mix64(id) * 31 + (uint64_t)k);
}

/* the draw of one token: a uniform double in [0, 1) from the top 53 bits */
static double uniform01(sl_rng *r) { return (double)(sl_rng_u64(r) >> 11) * 0x1.0p-53; }

/* ---- penalty history ------------------------------------------------------------------ */
static uint32_t h_slot(const sl_sampler *s, int32_t t) {
    return (uint32_t)(mix64((uint64_t)(uint32_t)t) & (uint64_t)s->h_mask);
}

/* The slot of token t, inserted if absent. Capacity is at least twice the tokens the
 * sequence can ever hold, so the table never fills. */
static uint32_t h_get(sl_sampler *s, int32_t t) {
    uint32_t i = h_slot(s, t);
    while (s->h_tok[i] != t) {
        if (s->h_tok[i] < 0) {
            s->h_tok[i] = t;
            s->h_pos[i] = s->h_n;
            s->h_list[s->h_n++] = (int32_t)i;
            return i;
        }
        i = (i + 1) & (uint32_t)s->h_mask;
    }
    return i;
}

void sl_sampler_init(sl_sampler *s, const sl_sampling_params *p, uint64_t seed, const int32_t *prompt,
                     int n_prompt, int n_vocab) {
    memset(s, 0, sizeof *s);
    s->p = p;
    sl_rng_seed(&s->rng, seed);
    s->penalties = p->repetition_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f;
    if (!s->penalties) return;
    long long distinct = (long long)n_prompt + p->max_tokens;
    if (distinct > n_vocab) distinct = n_vocab;
    int cap = 16;
    while (cap < 2 * distinct) cap *= 2;
    s->h_mask = cap - 1;
    s->h_tok = sl_xmalloc((size_t)cap * sizeof *s->h_tok);
    memset(s->h_tok, 0xff, (size_t)cap * sizeof *s->h_tok);
    s->h_count = sl_xcalloc((size_t)cap, sizeof *s->h_count);
    s->h_prompt = sl_xcalloc((size_t)cap, sizeof *s->h_prompt);
    s->h_list = sl_xmalloc((size_t)cap * sizeof *s->h_list);
    s->h_pos = sl_xmalloc((size_t)cap * sizeof *s->h_pos);
    for (int i = 0; i < n_prompt; i++) s->h_prompt[h_get(s, prompt[i])] = 1;
}

void sl_sampler_deinit(sl_sampler *s) {
    free(s->h_tok);
    free(s->h_count);
    free(s->h_prompt);
    free(s->h_list);
    free(s->h_pos);
    memset(s, 0, sizeof *s);
}

void sl_sampler_accept(sl_sampler *s, int32_t token) {
    if (s->penalties) s->h_count[h_get(s, token)]++;
}

/* The slot of token t, or -1 when it is not in the history. */
static int32_t h_find(const sl_sampler *s, int32_t t) {
    if (!s->penalties) return -1;
    uint32_t i = h_slot(s, t);
    while (s->h_tok[i] >= 0) {
        if (s->h_tok[i] == t) return (int32_t)i;
        i = (i + 1) & (uint32_t)s->h_mask;
    }
    return -1;
}

int sl_sampler_count(const sl_sampler *s, int32_t token) {
    int32_t i = h_find(s, token);
    return i < 0 ? 0 : (int)s->h_count[i];
}

int sl_sampler_adj_max(const sl_sampler *s) { return s->h_n + s->p->n_logit_bias; }

void sl_sampler_device_row(sl_sampler *s, sl_bsample_adj *adj, sl_bsample_row *row) {
    const sl_sampling_params *p = s->p;
    int n = 0;
    for (int j = 0; j < s->h_n; j++) { /* the history, in h_list order: entry j is slot h_list[j] */
        int32_t slot = s->h_list[j];
        adj[n++] = (sl_bsample_adj){s->h_tok[slot], 0.0f, s->h_count[slot] | (s->h_prompt[slot] ? SL_BSAMPLE_PROMPT : 0u)};
    }
    for (int i = 0; i < p->n_logit_bias; i++) { /* distinct tokens (sl_sampling_params_check) */
        const sl_logit_bias *lb = &p->logit_bias[i];
        int32_t slot = h_find(s, lb->token);
        if (slot >= 0) adj[s->h_pos[slot]].bias = lb->bias;
        else adj[n++] = (sl_bsample_adj){lb->token, lb->bias, 0u};
    }
    *row = (sl_bsample_row){
        .u = uniform01(&s->rng), /* once per token, as sl_sampler_sample */
        .temperature = p->temperature,
        .top_p = p->top_p,
        .min_p = p->min_p,
        .top_k = p->top_k,
        .repetition_penalty = s->penalties ? p->repetition_penalty : 1.0f,
        .frequency_penalty = s->penalties ? p->frequency_penalty : 0.0f,
        .presence_penalty = s->penalties ? p->presence_penalty : 0.0f,
        .adj = adj,
        .n_adj = n,
        .logprobs = p->logprobs,
        .top_logprobs = p->logprobs ? p->top_logprobs : 0,
    };
}

/* ---- selection ------------------------------------------------------------------------ */
/* Orders by logit descending, then id ascending: the inverted sortable bits of the float in
 * the high half, the id in the low half. Keys are unique, so every selection below is a
 * function of the logits alone. */
static uint64_t key_of(float v, int32_t id) {
    uint32_t u;
    memcpy(&u, &v, 4);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u; /* monotone in v */
    return ((uint64_t)~u << 32) | (uint32_t)id;
}
#define KEY_ID(k) ((int32_t)(uint32_t)(k))

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

static void swap_u64(uint64_t *a, uint64_t *b) {
    uint64_t t = *a;
    *a = *b;
    *b = t;
}

/* Partitions a[lo, hi) (hi - lo >= 2) around a median-of-three pivot; returns the pivot's
 * final index k: a[lo, k) < a[k] < a(k, hi). */
static int partition(uint64_t *a, int lo, int hi) {
    int mid = lo + (hi - lo) / 2, last = hi - 1;
    if (a[mid] < a[lo]) swap_u64(&a[mid], &a[lo]);
    if (a[last] < a[lo]) swap_u64(&a[last], &a[lo]);
    if (a[last] < a[mid]) swap_u64(&a[last], &a[mid]);
    swap_u64(&a[mid], &a[last]); /* pivot (the median) at the end */
    uint64_t pv = a[last];
    int k = lo;
    for (int i = lo; i < last; i++)
        if (a[i] < pv) swap_u64(&a[i], &a[k++]);
    swap_u64(&a[k], &a[last]);
    return k;
}

/* Moves the k smallest keys of a[0, m) to a[0, k) (in no order). 0 < k < m. */
static void select_k(uint64_t *a, int m, int k) {
    int lo = 0, hi = m;
    while (hi - lo > 1) {
        int p = partition(a, lo, hi);
        if (p == k || p == k - 1) return;
        if (p > k) hi = p;
        else lo = p + 1;
    }
}

/* The smallest c such that the c smallest keys of a[0, m) carry mass >= need (their
 * probabilities in prob[id]); moves them to a[0, c). Expected O(m), like quickselect. */
static int select_mass(uint64_t *a, int m, const float *prob, double need) {
    int lo = 0, hi = m;
    double base = 0; /* mass of a[0, lo), all kept */
    while (hi - lo > 1) {
        int p = partition(a, lo, hi);
        double left = 0;
        for (int i = lo; i < p; i++) left += prob[KEY_ID(a[i])];
        if (base + left >= need) {
            hi = p;
            continue;
        }
        base += left + prob[KEY_ID(a[p])];
        if (base >= need) return p + 1;
        lo = p + 1;
    }
    /* one candidate left at lo: it completes the mass (or rounding left need just out of
     * reach: keep it anyway) */
    return lo < m ? lo + 1 : m;
}

/* ---- sampling ------------------------------------------------------------------------- */
/* GCC vectorizes the branch-free loops below only at -O3 and without -ftrapping-math (a
 * float compare may trap, so it will not turn the selects into masks); neither changes a
 * result here. Clang vectorizes them at -O2 as they are. */
#if defined(__GNUC__) && !defined(__clang__)
#define SL_VECTORIZE __attribute__((optimize("O3", "no-trapping-math")))
#else
#define SL_VECTORIZE
#endif


/* The largest value (NaN ignored). Eight independent lanes so the compiler can vectorize:
 * this and the exponentials are the whole cost of sampling a row. */
SL_VECTORIZE static float max_of(const float *x, int n) {
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = -INFINITY;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    for (int j = 1; j < 8; j++) m[0] = m[j] > m[0] ? m[j] : m[0];
    return m[0];
}

/* e[j] = exp(y[j]) for 8 lanes, y <= 0, relative error below 2e-7, exactly 0 below e^-87:
 * exp(y) = 2^k · e^r with k = round(y / ln 2), |r| <= ln(2)/2 (ln 2 split in two parts,
 * Cody–Waite), e^r by its degree-6 Taylor polynomial, 2^k built in the exponent bits.
 * Branch-free over a fixed 8 lanes so the compiler vectorizes it: libm's expf one at a time
 * is most of the cost of a 32k-vocabulary row. */
SL_VECTORIZE static inline void exp8(const float *y, float *e) {
    int32_t bits[8];
    float p[8];
    for (int j = 0; j < 8; j++) {
        float yc = y[j] < -87.0f ? -87.0f : y[j];
        float k = (yc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
        float r = (yc - k * 0.693145751953125f) - k * 1.42860682030941723e-6f;
        p[j] = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
        bits[j] = ((int32_t)k + 127) << 23;
    }
    float sc[8];
    memcpy(sc, bits, sizeof sc);
    for (int j = 0; j < 8; j++) e[j] = y[j] < -87.0f ? 0.0f : p[j] * sc[j];
}

/* w[i] = exp((x[i] - mx) · inv_t) for i < n, or 0 where that is below min_w; returns their
 * sum. */
SL_VECTORIZE static double exp_row(const float *x, int n, float mx, float inv_t, float min_w, float *w) {
    double acc[8] = {0}; /* in double, like draw_cdf's sums, so the two agree to ~1e-15 */
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float y[8], e[8];
        for (int j = 0; j < 8; j++) y[j] = (x[i + j] - mx) * inv_t;
        exp8(y, e);
        for (int j = 0; j < 8; j++) {
            w[i + j] = e[j] < min_w ? 0.0f : e[j];
            acc[j] += w[i + j];
        }
    }
    if (i < n) {
        float y[8], e[8];
        for (int j = 0; j < 8; j++) y[j] = i + j < n ? (x[i + j] - mx) * inv_t : -100.0f;
        exp8(y, e);
        for (int j = 0; i + j < n; j++) w[i + j] = e[j] < min_w ? 0.0f : e[j], acc[j] += w[i + j];
    }
    double mass = 0;
    for (int j = 0; j < 8; j++) mass += acc[j];
    return mass;
}

/* The first i with w[0] + ... + w[i] > r (r < the sum of w), skipping blocks of 64 by their
 * sums; -1 when rounding leaves r just out of reach. */
SL_VECTORIZE static int32_t draw_cdf(const float *w, int n, double r) {
    double acc = 0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        double b[8] = {0};
        for (int k = 0; k < 64; k += 8)
            for (int j = 0; j < 8; j++) b[j] += w[i + k + j];
        double s = 0;
        for (int j = 0; j < 8; j++) s += b[j];
        if (acc + s > r) break;
        acc += s;
    }
    for (; i < n; i++) {
        acc += w[i];
        if (r < acc) return i;
    }
    return -1;
}

/* sl_argmax's answer (the first index of the largest value), in two fast passes. */
static int32_t argmax_fast(const float *x, int n) {
    float mx = max_of(x, n);
    for (int i = 0; i < n; i++)
        if (x[i] == mx) return i;
    return 0; /* all NaN */
}

void sl_sampler_sample(sl_sampler *s, const float *logits, sl_sample_ws *ws, sl_sample_result *out) {
    const sl_sampling_params *p = s->p;
    const int V = ws->n_vocab;
    double u = uniform01(&s->rng); /* once per token, whatever the path */

    /* 2-4: bias and penalties on a copy; the raw row stays for the logprobs */
    const float *x = logits;
    if (p->n_logit_bias || s->penalties) {
        memcpy(ws->work, logits, (size_t)V * sizeof *ws->work);
        for (int i = 0; i < p->n_logit_bias; i++) ws->work[p->logit_bias[i].token] += p->logit_bias[i].bias;
        for (int j = 0; j < s->h_n; j++) {
            int32_t slot = s->h_list[j], t = s->h_tok[slot];
            if (t >= V) continue; /* a prompt token outside the vocabulary: nothing to penalize */
            float v = ws->work[t];
            if (p->repetition_penalty != 1.0f)
                v = v > 0 ? v / p->repetition_penalty : v * p->repetition_penalty;
            uint32_t c = s->h_count[slot];
            v -= (float)c * p->frequency_penalty + (c > 0 ? p->presence_penalty : 0.0f);
            ws->work[t] = v;
        }
        x = ws->work;
    }

    int32_t tok;
    if (p->temperature < SL_SAMPLING_EPS) {
        tok = argmax_fast(x, V);
    } else {
        /* 6: unnormalized probabilities, relative to the largest (which gets exactly 1), with
         * those below min_p already zero */
        float *w = ws->prob;
        double mass = exp_row(x, V, max_of(x, V), 1.0f / p->temperature, p->min_p, w);
        const int k = p->top_k > 0 ? p->top_k : 0;
        tok = -1;
        if (!k && p->top_p >= 1.0f) {
            tok = draw_cdf(w, V, u * mass); /* in token id order */
            for (int i = V - 1; tok < 0 && i >= 0; i--) /* rounding at the very end */
                if (w[i] > 0) tok = i;
        } else {
            uint64_t *a = ws->keys;
            int m = 0;
            for (int i = 0; i < V; i++)
                if (w[i] > 0) a[m++] = key_of(x[i], i);
            if (k && k < m) {
                select_k(a, m, k);
                m = k;
            }
            if (p->top_p < 1.0f) {
                double total = 0;
                for (int i = 0; i < m; i++) total += w[KEY_ID(a[i])];
                m = select_mass(a, m, w, total * p->top_p);
            }
            /* draw over the kept tokens in token id order, as the untruncated draw and the
             * device sampler (kernels/cuda/sample.cu) do: the same u picks the same token on
             * either, up to rounding at a boundary */
            for (int i = 0; i < m; i++) a[i] = (uint64_t)(uint32_t)KEY_ID(a[i]);
            qsort(a, (size_t)m, sizeof *a, cmp_u64);
            mass = 0;
            for (int i = 0; i < m; i++) mass += w[a[i]];
            double r = u * mass, acc = 0;
            for (int i = 0; i < m && tok < 0; i++) {
                acc += w[a[i]];
                if (r < acc) tok = (int32_t)a[i];
            }
            if (tok < 0) tok = (int32_t)a[m - 1]; /* rounding at the very end */
        }
    }

    out->token = tok;
    out->n_top = 0;
    out->logprob = 0;
    if (p->logprobs) {
        out->logprob = sl_logprob(logits, V, tok);
        if (p->top_logprobs > 0) {
            out->n_top = p->top_logprobs < V ? p->top_logprobs : V;
            sl_top_logprobs(logits, V, out->n_top, out->top_ids, out->top_lps);
        }
    }
}
