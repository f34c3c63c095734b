/* Per-request sampling (scheduler/sampling.h) and text output with stop strings
 * (scheduler/output.h): each parameter is checked for its exact effect on the logits or,
 * for the random parts, statistically against a reference distribution computed here by a
 * plain sort, with fixed seeds. */
#include <math.h>

#include "models/gguf.h"
#include "models/mkmodel.h"
#include "models/sample.h"
#include "models/tokenizer.h"
#include "scheduler/output.h"
#include "scheduler/sampling.h"
#include "tests/test.h"

static sl_sample_ws ws;

/* The sampler reads the vocabulary size from the workspace: size it for each test. */
static void vocab(int V) {
    if (ws.n_vocab == V) return;
    if (ws.n_vocab) sl_sample_ws_deinit(&ws);
    sl_sample_ws_init(&ws, V);
}

static void rand_logits(sl_rng *r, float *l, int n, float scale) {
    for (int i = 0; i < n; i++) l[i] = sl_rng_normal(r) * scale;
}

static int32_t draw(sl_sampler *s, const float *l) {
    sl_sample_result res;
    sl_sampler_sample(s, l, &ws, &res);
    return res.token;
}

/* ---- reference distribution: plain sort, then min_p, top_k, top_p -------------------- */
static const float *g_ref_l;
static int cmp_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (g_ref_l[x] != g_ref_l[y]) return g_ref_l[x] > g_ref_l[y] ? -1 : 1;
    return x - y;
}

/* want[i] = probability of token i under p (no bias or penalties). */
static void reference(const float *l, int V, const sl_sampling_params *p, double *want) {
    int *ord = malloc((size_t)V * sizeof *ord);
    for (int i = 0; i < V; i++) ord[i] = i;
    g_ref_l = l;
    qsort(ord, (size_t)V, sizeof *ord, cmp_desc);
    double *w = malloc((size_t)V * sizeof *w);
    for (int i = 0; i < V; i++) w[i] = exp(((double)l[ord[i]] - l[ord[0]]) / p->temperature); /* sorted order */
    int m = V;
    if (p->min_p > 0)
        for (int i = 0; i < V; i++)
            if (w[i] < p->min_p) {
                m = i;
                break;
            }
    if (p->top_k > 0 && p->top_k < m) m = p->top_k;
    if (p->top_p < 1) {
        double tot = 0, acc = 0;
        for (int i = 0; i < m; i++) tot += w[i];
        for (int i = 0; i < m; i++) {
            acc += w[i];
            if (acc >= p->top_p * tot) {
                m = i + 1;
                break;
            }
        }
    }
    double tot = 0;
    for (int i = 0; i < m; i++) tot += w[i];
    for (int i = 0; i < V; i++) want[i] = 0;
    for (int i = 0; i < m; i++) want[ord[i]] = w[i] / tot;
    free(ord);
    free(w);
}

/* Draws n tokens and compares the frequencies with the reference: every draw inside the
 * reference support, each token within 5 sigma, total variation small. */
static void check_distribution(const float *l, int V, const sl_sampling_params *p, uint64_t seed, int n,
                               const char *what) {
    vocab(V);
    double *want = malloc((size_t)V * sizeof *want);
    int *count = calloc((size_t)V, sizeof *count);
    reference(l, V, p, want);
    sl_sampler s;
    sl_sampler_init(&s, p, seed, NULL, 0, V);
    for (int i = 0; i < n; i++) {
        int32_t t = draw(&s, l);
        ASSERT(t >= 0 && t < V);
        if (want[t] == 0) fprintf(stderr, "%s: drew token %d outside the kept set\n", what, t);
        ASSERT(want[t] > 0);
        count[t]++;
    }
    double tv = 0;
    for (int i = 0; i < V; i++) {
        double got = (double)count[i] / n, sigma = sqrt(want[i] * (1 - want[i]) / n);
        if (!(fabs(got - want[i]) <= 5 * sigma + 1e-12))
            fprintf(stderr, "%s: token %d drawn %.5f, want %.5f\n", what, i, got, want[i]);
        ASSERT_NEAR(got, want[i], 5 * sigma + 1e-12, 0);
        tv += fabs(got - want[i]);
    }
    int support = 0;
    for (int i = 0; i < V; i++) support += want[i] > 0;
    printf("test_sampling: %-40s %d draws, support %d of %d, total variation %.4f\n", what, n, support, V, tv / 2);
    sl_sampler_deinit(&s);
    free(want);
    free(count);
}

static void test_params(void) {
    sl_sampling_params p;
    char err[SL_ERRMSG];
    sl_sampling_params_defaults(&p);
    ASSERT_EQ(p.n, 1);
    ASSERT_EQ(p.max_tokens, 16);
    ASSERT_EQ(sl_sampling_params_check(&p, 100, err), 0);
    sl_sampling_params bad = p;
    bad.temperature = NAN;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    ASSERT_STR_CONTAINS(err, "temperature");
    bad = p, bad.top_p = 0;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    bad = p, bad.min_p = 1.5f;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    bad = p, bad.top_k = -2;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    bad = p, bad.repetition_penalty = 0;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    bad = p, bad.frequency_penalty = 2.5f;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    bad = p, bad.max_tokens = 0;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    bad = p, bad.n = 0;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    sl_logit_bias lb = {100, 1};
    bad = p, bad.logit_bias = &lb, bad.n_logit_bias = 1;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    ASSERT_STR_CONTAINS(err, "out of range");
    lb = (sl_logit_bias){5, 101};
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    const char *stops[] = {"ok", ""};
    bad = p, bad.stop = stops, bad.n_stop = 2;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
    bad.n_stop = 1;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), 0);
    bad = p, bad.top_logprobs = SL_MAX_LOGPROBS + 1;
    ASSERT_EQ(sl_sampling_params_check(&bad, 100, err), SL_EINVAL);
}

static void test_greedy_and_top_k_1(void) {
    enum { V = 1000 };
    static float l[V];
    vocab(V);
    sl_rng r;
    sl_rng_seed(&r, 1);
    sl_sampling_params g, k1;
    sl_sampling_params_defaults(&g);
    g.temperature = 0;
    g.top_k = 5, g.top_p = 0.1f, g.min_p = 0.9f; /* ignored when greedy */
    sl_sampling_params_defaults(&k1);
    k1.top_k = 1;
    k1.temperature = 1.5f;
    sl_sampler sg, sk;
    sl_sampler_init(&sg, &g, 7, NULL, 0, V);
    sl_sampler_init(&sk, &k1, 8, NULL, 0, V);
    for (int it = 0; it < 200; it++) {
        rand_logits(&r, l, V, 3);
        if (it % 4 == 0) l[17] = l[600] = 50; /* a tie: the lowest id wins */
        int32_t want = sl_argmax(l, V);
        ASSERT_EQ(draw(&sg, l), want);
        ASSERT_EQ(draw(&sk, l), want);
        if (it % 4 == 0) ASSERT_EQ(want, 17);
    }
    sl_sampler_deinit(&sg);
    sl_sampler_deinit(&sk);
}

static void test_distributions(void) {
    sl_rng r;
    sl_rng_seed(&r, 2);
    float small[8] = {0.5f, 2.0f, 1.0f, -0.5f, 1.5f, 0.0f, 1.5f, -3.0f}; /* a tie at 4 and 6 */
    sl_sampling_params p;
    sl_sampling_params_defaults(&p);
    p.temperature = 0.7f;
    check_distribution(small, 8, &p, 11, 60000, "temperature 0.7");
    p.temperature = 1;
    p.top_k = 3;
    check_distribution(small, 8, &p, 12, 60000, "top_k 3 (tie at the edge)");
    p.top_k = 0;
    p.top_p = 0.6f;
    check_distribution(small, 8, &p, 13, 60000, "top_p 0.6");
    p.top_p = 1;
    p.min_p = 0.3f;
    check_distribution(small, 8, &p, 14, 60000, "min_p 0.3");
    p.min_p = 0.05f, p.top_k = 5, p.top_p = 0.8f, p.temperature = 1.3f;
    check_distribution(small, 8, &p, 15, 60000, "min_p + top_k + top_p, T 1.3");

    /* larger vocabularies exercise the selection (quickselect) paths; ties included */
    enum { V = 2000 };
    static float l[V];
    rand_logits(&r, l, V, 2.5f);
    for (int i = 0; i < V; i += 7) l[i] = l[(i * 13) % V]; /* many ties */
    sl_sampling_params_defaults(&p);
    p.top_p = 0.5f;
    check_distribution(l, V, &p, 16, 20000, "V 2000 top_p 0.5");
    p.top_p = 0.95f, p.top_k = 400;
    check_distribution(l, V, &p, 17, 20000, "V 2000 top_k 400 + top_p 0.95");
    p.top_p = 1, p.top_k = 0, p.min_p = 0.02f;
    check_distribution(l, V, &p, 18, 20000, "V 2000 min_p 0.02");
    /* nearly flat: top_p keeps most of the vocabulary */
    for (int i = 0; i < V; i++) l[i] = 0.01f * sl_rng_normal(&r);
    sl_sampling_params_defaults(&p);
    p.top_p = 0.9f;
    check_distribution(l, V, &p, 19, 20000, "V 2000 flat, top_p 0.9");
}

/* After a sample call, ws.work holds the logits after bias and penalties. */
static void test_penalties(void) {
    enum { V = 40 };
    float l[V];
    vocab(V);
    sl_rng r;
    sl_rng_seed(&r, 3);
    rand_logits(&r, l, V, 2);
    l[4] = 1.5f, l[6] = -1.5f, l[8] = 0.0f, l[9] = 2.0f, l[11] = -0.5f;
    const int32_t prompt[] = {4, 6, 8, 4};
    sl_sampling_params p;
    sl_sampling_params_defaults(&p);
    p.repetition_penalty = 2.0f;
    sl_sampler s;
    sl_sampler_init(&s, &p, 1, prompt, 4, V);
    sl_sample_result res;
    sl_sampler_sample(&s, l, &ws, &res);
    for (int i = 0; i < V; i++) {
        float want = l[i];
        if (i == 4) want = 0.75f;   /* positive: divided */
        if (i == 6) want = -3.0f;   /* negative: multiplied */
        if (i == 8) want = 0.0f;    /* zero stays */
        ASSERT_EQ(memcmp(&ws.work[i], &want, 4), 0);
    }
    /* generated tokens count for the repetition penalty too */
    sl_sampler_accept(&s, 9);
    sl_sampler_accept(&s, 11);
    sl_sampler_sample(&s, l, &ws, &res);
    ASSERT_NEAR(ws.work[9], 1.0, 0, 0);
    ASSERT_NEAR(ws.work[11], -1.0, 0, 0);
    ASSERT_NEAR(ws.work[4], 0.75, 0, 0);
    for (int i = 12; i < V; i++) ASSERT_EQ(memcmp(&ws.work[i], &l[i], 4), 0);
    sl_sampler_deinit(&s);

    /* frequency and presence: output tokens only, count·f + (count > 0)·p */
    sl_sampling_params_defaults(&p);
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    sl_sampler_init(&s, &p, 1, prompt, 4, V);
    int32_t out[] = {9, 9, 9, 11, 20, 9};
    for (int i = 0; i < 6; i++) sl_sampler_accept(&s, out[i]);
    ASSERT_EQ(sl_sampler_count(&s, 9), 4);
    ASSERT_EQ(sl_sampler_count(&s, 4), 0);
    sl_sampler_sample(&s, l, &ws, &res);
    for (int i = 0; i < V; i++) {
        float want = l[i];
        if (i == 9) want = l[i] - (4 * 0.5f + 0.25f);
        if (i == 11 || i == 20) want = l[i] - (0.5f + 0.25f);
        ASSERT_NEAR(ws.work[i], want, 1e-6, 0);
        if (i != 9 && i != 11 && i != 20) ASSERT_EQ(memcmp(&ws.work[i], &l[i], 4), 0); /* prompt 4, 6, 8 too */
    }
    /* negative penalties encourage repetition */
    p.frequency_penalty = -1;
    p.presence_penalty = 0;
    sl_sampler_sample(&s, l, &ws, &res);
    ASSERT_NEAR(ws.work[9], l[9] + 4, 1e-6, 0);
    sl_sampler_deinit(&s);

    /* greedy follows the penalized logits: 9 is the largest raw logit; after 1 repetition
     * with a presence penalty of 2 it loses to 4 */
    float g[V];
    for (int i = 0; i < V; i++) g[i] = -1;
    g[9] = 3, g[4] = 2;
    sl_sampling_params_defaults(&p);
    p.temperature = 0;
    p.presence_penalty = 2;
    sl_sampler_init(&s, &p, 1, NULL, 0, V);
    ASSERT_EQ(draw(&s, g), 9);
    sl_sampler_accept(&s, 9);
    ASSERT_EQ(draw(&s, g), 4);
    sl_sampler_deinit(&s);

    /* a history with every token of the vocabulary (capacity bound by the vocabulary) */
    enum { BIGV = 500 };
    static int32_t big[2 * BIGV];
    static float bl[BIGV];
    for (int i = 0; i < 2 * BIGV; i++) big[i] = i % BIGV;
    for (int i = 0; i < BIGV; i++) bl[i] = 1;
    sl_sample_ws wbig;
    sl_sample_ws_init(&wbig, BIGV);
    sl_sampling_params_defaults(&p);
    p.repetition_penalty = 4;
    p.max_tokens = 1000;
    sl_sampler_init(&s, &p, 1, big, 2 * BIGV, BIGV);
    for (int i = 0; i < 1000; i++) sl_sampler_accept(&s, (int32_t)(i * 7 % BIGV));
    sl_sampler_sample(&s, bl, &wbig, &res);
    for (int i = 0; i < BIGV; i++) ASSERT_NEAR(wbig.work[i], 0.25, 0, 0);
    ASSERT_EQ(sl_sampler_count(&s, 7), 2);
    sl_sampler_deinit(&s);
    sl_sample_ws_deinit(&wbig);
}

static void test_logit_bias_and_logprobs(void) {
    enum { V = 50 };
    float l[V];
    vocab(V);
    sl_rng r;
    sl_rng_seed(&r, 4);
    rand_logits(&r, l, V, 1);
    l[3] = 8; /* by far the most likely */
    sl_logit_bias force = {30, 100}, ban = {3, -100};
    sl_sampling_params p;
    sl_sampling_params_defaults(&p);
    p.logit_bias = &force;
    p.n_logit_bias = 1;
    p.logprobs = true;
    p.top_logprobs = 3;
    sl_sampler s;
    sl_sampler_init(&s, &p, 5, NULL, 0, V);
    for (int i = 0; i < 500; i++) {
        sl_sample_result res;
        sl_sampler_sample(&s, l, &ws, &res);
        ASSERT_EQ(res.token, 30);
        /* logprobs are of the raw logits, not the biased ones */
        ASSERT_NEAR(res.logprob, sl_logprob(l, V, 30), 1e-6, 0);
        ASSERT(res.logprob < -5);
        ASSERT_EQ(res.n_top, 3);
        ASSERT_EQ(res.top_ids[0], 3);
        ASSERT(res.top_lps[0] >= res.top_lps[1] && res.top_lps[1] >= res.top_lps[2]);
    }
    sl_sampler_deinit(&s);
    p.logit_bias = &ban;
    p.logprobs = false;
    sl_sampler_init(&s, &p, 6, NULL, 0, V);
    int seen3 = 0;
    for (int i = 0; i < 5000; i++) {
        sl_sample_result res;
        sl_sampler_sample(&s, l, &ws, &res);
        seen3 += res.token == 3;
        ASSERT_EQ(res.n_top, 0);
    }
    ASSERT_EQ(seen3, 0); /* without the ban, token 3 has p > 0.9 */
    sl_sampler_deinit(&s);
}

/* A deterministic fake model: the logits of a sequence depend only on its own tokens. */
static void fake_logits(const int32_t *tok, int n, float *l, int V) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = (h ^ (uint64_t)tok[i]) * 1099511628211ull;
    sl_rng r;
    sl_rng_seed(&r, h);
    for (int i = 0; i < V; i++) l[i] = 2 * sl_rng_normal(&r);
}

enum { SEQ_V = 64, SEQ_LEN = 40, NSEQ = 5 };
typedef struct fseq {
    sl_sampling_params p;
    sl_sampler s;
    int32_t tok[8 + SEQ_LEN];
    int n, start;
} fseq;

/* Runs the sequences listed in which[] with staggered starts: in every "step" every active
 * sequence gets its row (in a batch buffer, in varying order) and samples from it. */
static void run_fake(fseq *q, const int *which, int nw, uint64_t shuffle_seed) {
    static float batch[NSEQ][SEQ_V];
    vocab(SEQ_V);
    sl_rng r;
    sl_rng_seed(&r, shuffle_seed);
    for (int step = 0;; step++) {
        int act[NSEQ], na = 0;
        for (int i = 0; i < nw; i++) {
            fseq *x = &q[which[i]];
            if (step >= x->start && x->n < 8 + SEQ_LEN) act[na++] = which[i];
        }
        bool pending = false;
        for (int i = 0; i < nw; i++) pending |= q[which[i]].n < 8 + SEQ_LEN;
        if (!pending) break;
        for (int i = na - 1; i > 0; i--) { /* batch order varies */
            int j = (int)(sl_rng_u64(&r) % (uint64_t)(i + 1)), t = act[i];
            act[i] = act[j], act[j] = t;
        }
        for (int i = 0; i < na; i++) fake_logits(q[act[i]].tok, q[act[i]].n, batch[i], SEQ_V);
        for (int i = 0; i < na; i++) {
            fseq *x = &q[act[i]];
            sl_sample_result res;
            sl_sampler_sample(&x->s, batch[i], &ws, &res);
            sl_sampler_accept(&x->s, res.token);
            x->tok[x->n++] = res.token;
        }
    }
}

static void init_fseq(fseq *q, int i, uint64_t seed) {
    sl_sampling_params_defaults(&q->p);
    q->p.has_seed = true;
    q->p.seed = seed;
    q->p.max_tokens = SEQ_LEN;
    q->p.temperature = 0.9f + 0.1f * (float)i;
    q->p.top_p = i % 2 ? 0.9f : 1.0f;
    q->p.top_k = i == 3 ? 20 : 0;
    q->p.presence_penalty = i == 4 ? 0.5f : 0;
    for (int t = 0; t < 8; t++) q->tok[t] = (int32_t)(i * 8 + t);
    q->n = 8;
    q->start = 0;
    sl_sampler_init(&q->s, &q->p, sl_sampling_seed(&q->p, 0, (uint64_t)i, 0), q->tok, 8, SEQ_V);
}

static void test_seed(void) {
    static fseq alone[NSEQ], together[NSEQ], again[NSEQ], other[NSEQ];
    for (int i = 0; i < NSEQ; i++) {
        init_fseq(&alone[i], i, 1000 + (uint64_t)i);
        run_fake(alone, &i, 1, 1);
    }
    int all[NSEQ] = {0, 1, 2, 3, 4};
    for (int i = 0; i < NSEQ; i++) {
        init_fseq(&together[i], i, 1000 + (uint64_t)i);
        together[i].start = 3 * i; /* staggered arrivals */
        init_fseq(&again[i], i, 1000 + (uint64_t)i);
        again[i].start = 7 * (NSEQ - i);
        init_fseq(&other[i], i, 2000 + (uint64_t)i);
    }
    run_fake(together, all, NSEQ, 2);
    run_fake(again, all, NSEQ, 3);
    run_fake(other, all, NSEQ, 4);
    int differ = 0;
    for (int i = 0; i < NSEQ; i++) {
        ASSERT_EQ(memcmp(alone[i].tok, together[i].tok, sizeof alone[i].tok), 0);
        ASSERT_EQ(memcmp(alone[i].tok, again[i].tok, sizeof alone[i].tok), 0);
        differ += memcmp(alone[i].tok, other[i].tok, sizeof alone[i].tok) != 0;
        sl_sampler_deinit(&alone[i].s);
        sl_sampler_deinit(&together[i].s);
        sl_sampler_deinit(&again[i].s);
        sl_sampler_deinit(&other[i].s);
    }
    ASSERT_EQ(differ, NSEQ); /* another seed, other tokens */
    /* seeds of n > 1 sequences and unseeded requests */
    sl_sampling_params p;
    sl_sampling_params_defaults(&p);
    p.has_seed = true, p.seed = 77;
    ASSERT_EQ(sl_sampling_seed(&p, 1, 5, 0), 77);
    ASSERT_EQ(sl_sampling_seed(&p, 2, 6, 3), 80);
    p.has_seed = false;
    ASSERT(sl_sampling_seed(&p, 1, 5, 0) != sl_sampling_seed(&p, 1, 5, 1));
    ASSERT(sl_sampling_seed(&p, 1, 5, 0) != sl_sampling_seed(&p, 1, 6, 0));
    ASSERT(sl_sampling_seed(&p, 1, 5, 0) != sl_sampling_seed(&p, 2, 5, 0));
    ASSERT_EQ(sl_sampling_seed(&p, 1, 5, 0), sl_sampling_seed(&p, 1, 5, 0));
    printf("test_sampling: seeded sequences identical alone, batched and reordered; other seeds differ\n");
}

/* ---- text output and stop strings ------------------------------------------------------ */
static sl_tok *tok;

/* Byte tokens of the toy vocabulary spell any text: token 3 + b is the byte b. */
static int spell(const char *s, int32_t *ids) {
    int n = 0;
    for (; *s; s++) ids[n++] = 3 + (unsigned char)*s;
    return n;
}

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

/* Feeds ids; returns the concatenated released text in out; checks every piece. */
static int feed_all(const char *const *stop, int n_stop, const int32_t *ids, int n, bool stop_token_last, char *out,
                    int *n_fed) {
    sl_output o;
    sl_output_init(&o, tok, stop, n_stop);
    size_t len = 0, held_max = 0;
    int hit = -1;
    *n_fed = 0;
    for (int i = 0; i < n && hit < 0; i++) {
        bool last = i == n - 1;
        const char *t;
        size_t k;
        hit = sl_output_feed(&o, ids[i], !(last && stop_token_last), last, &t, &k);
        ASSERT(valid_utf8(t, k));
        memcpy(out + len, t, k);
        len += k;
        if (o.n > held_max) held_max = o.n;
        (*n_fed)++;
    }
    out[len] = 0;
    const char *t;
    size_t k;
    ASSERT_EQ(sl_output_feed(&o, 5, true, true, &t, &k), -1); /* ended: nothing more */
    ASSERT_EQ(k, 0);
    sl_output_deinit(&o);
    return hit;
}

static void test_stop_strings(void) {
    int32_t ids[128];
    char out[512];
    int fed;
    /* no stop strings: the whole text, released at once */
    int n = spell("Hello world", ids);
    ASSERT_EQ(feed_all(NULL, 0, ids, n, false, out, &fed), -1);
    ASSERT(!strcmp(out, "Hello world"));
    /* a stop string spanning three tokens; it and what follows are dropped */
    const char *s1[] = {"o w"};
    ASSERT_EQ(feed_all(s1, 1, ids, n, false, out, &fed), 0);
    ASSERT(!strcmp(out, "Hell"));
    ASSERT_EQ(fed, 7); /* ends at the token that completes it */
    /* the earliest occurrence wins, whatever the order of the list */
    const char *s2[] = {"rld", "lo", "wor"};
    ASSERT_EQ(feed_all(s2, 3, ids, n, false, out, &fed), 1);
    ASSERT(!strcmp(out, "Hel"));
    /* the first stop string completed ends the text, even when a longer one starts there */
    const char *s3[] = {"world", "wo"};
    ASSERT_EQ(feed_all(s3, 2, ids, n, false, out, &fed), 1);
    ASSERT(!strcmp(out, "Hello "));
    ASSERT_EQ(fed, 8);
    /* completed by the same token: the earliest start */
    const char *s3b[] = {"ab", "xab"};
    n = spell("zxab", ids);
    ASSERT_EQ(feed_all(s3b, 2, ids, n, false, out, &fed), 1);
    ASSERT(!strcmp(out, "z"));
    /* ... and at the same start the longer ("t300 t301": both complete inside " t301") */
    int32_t w2[] = {300, 301};
    const char *s3c[] = {"0 t", "0 t30"};
    ASSERT_EQ(feed_all(s3c, 2, w2, 2, false, out, &fed), 1);
    ASSERT(!strcmp(out, "t30"));
    n = spell("Hello world", ids);
    /* a partial match at the end is released when the sequence ends */
    const char *s4[] = {"ldx"};
    ASSERT_EQ(feed_all(s4, 1, ids, n, false, out, &fed), -1);
    ASSERT(!strcmp(out, "Hello world"));
    /* a stop token's own text is not added */
    n = spell("abc", ids);
    ASSERT_EQ(feed_all(NULL, 0, ids, n, true, out, &fed), -1);
    ASSERT(!strcmp(out, "ab"));
    /* multi-byte characters split over byte tokens: pieces stay valid UTF-8 while held back */
    n = spell("caf\xc3\xa9 \xe2\x82\xac" "5 na\xc3\xafve", ids);
    const char *s5[] = {"\xe2\x82\xac" "5 n"};
    ASSERT_EQ(feed_all(s5, 1, ids, n, false, out, &fed), 0);
    ASSERT(!strcmp(out, "caf\xc3\xa9 "));
    const char *s6[] = {"zzzzzz"};
    ASSERT_EQ(feed_all(s6, 1, ids, n, false, out, &fed), -1);
    ASSERT(!strcmp(out, "caf\xc3\xa9 \xe2\x82\xac" "5 na\xc3\xafve"));
    /* filler pieces "▁t<i>" decode with spaces; a stop string across piece boundaries */
    int32_t words[] = {300, 301, 302, 303};
    const char *s7[] = {"1 t30"};
    ASSERT_EQ(feed_all(s7, 1, words, 4, false, out, &fed), 0);
    ASSERT(!strcmp(out, "t300 t30"));
    ASSERT_EQ(fed, 3);

    /* hold-back: released text never includes the last (longest - 1) bytes before the end */
    sl_output o;
    const char *s8[] = {"abcd", "x"};
    sl_output_init(&o, tok, s8, 2);
    n = spell("0123456789", ids);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const char *t;
        size_t k;
        ASSERT_EQ(sl_output_feed(&o, ids[i], true, false, &t, &k), -1);
        total += k;
        ASSERT_EQ(total, (size_t)(i + 1 > 3 ? i + 1 - 3 : 0));
    }
    sl_output_deinit(&o);
    printf("test_sampling: stop strings cut across token and UTF-8 boundaries, held-back text released at the end\n");
}

/* sl_sampler_device_row: the adjustment list (logit_bias merged into the penalty history, one
 * entry per distinct token), the parameters, and the RNG advanced exactly as by one sample. */
static void test_device_row(void) {
    const int V = 320;
    vocab(V);
    static const sl_logit_bias bias[] = {{5, 2.5f}, {9, -1.0f}, {42, 0.5f}, {200, 3.0f}};
    const int32_t prompt[] = {5, 7, 7, 100};
    sl_sampling_params p;
    sl_sampling_params_defaults(&p);
    p.temperature = 0.7f, p.top_k = 12, p.top_p = 0.8f, p.min_p = 0.1f;
    p.repetition_penalty = 1.2f, p.frequency_penalty = 0.5f, p.presence_penalty = 0.25f;
    p.logit_bias = bias, p.n_logit_bias = 4, p.logprobs = true, p.top_logprobs = 3, p.max_tokens = 8;
    sl_sampler a, b;
    sl_sampler_init(&a, &p, 31, prompt, 4, V);
    sl_sampler_init(&b, &p, 31, prompt, 4, V);
    const int32_t gen[] = {7, 7, 42};
    for (int i = 0; i < 3; i++) sl_sampler_accept(&a, gen[i]), sl_sampler_accept(&b, gen[i]);
    char err[SL_ERRMSG];
    ASSERT_EQ(sl_sampling_params_check(&p, V, err), 0);
    ASSERT_EQ(sl_sampler_adj_max(&a), 4 + 4); /* history 5, 7, 100, 42; four bias entries */
    sl_bsample_adj adj[8];
    sl_bsample_row row;
    sl_sampler_device_row(&a, adj, &row);
    ASSERT(row.adj == adj);
    ASSERT_EQ(row.n_adj, 6);
    static const struct { int32_t tok; float bias; uint32_t count; } want[] = {
        {5, 2.5f, SL_BSAMPLE_PROMPT}, {7, 0.0f, 2u | SL_BSAMPLE_PROMPT}, {100, 0.0f, SL_BSAMPLE_PROMPT},
        {42, 0.5f, 1u}, {9, -1.0f, 0u}, {200, 3.0f, 0u}};
    for (int w = 0; w < 6; w++) {
        int found = 0;
        for (int j = 0; j < row.n_adj; j++) {
            if (adj[j].token != want[w].tok) continue;
            found++;
            ASSERT_EQ(adj[j].bias, want[w].bias);
            ASSERT_EQ(adj[j].count, want[w].count);
        }
        ASSERT_EQ(found, 1);
    }
    ASSERT_EQ(row.temperature, 0.7f);
    ASSERT_EQ(row.top_k, 12);
    ASSERT_EQ(row.top_p, 0.8f);
    ASSERT_EQ(row.min_p, 0.1f);
    ASSERT_EQ(row.repetition_penalty, 1.2f);
    ASSERT_EQ(row.frequency_penalty, 0.5f);
    ASSERT_EQ(row.presence_penalty, 0.25f);
    ASSERT(row.logprobs && row.top_logprobs == 3);
    /* u is the sampler's next draw, and the RNG moves as one sample moves it */
    sl_rng r;
    sl_rng_seed(&r, 31);
    ASSERT_EQ(row.u, (double)(sl_rng_u64(&r) >> 11) * 0x1.0p-53);
    float *l = sl_xmalloc((size_t)V * sizeof *l);
    for (int i = 0; i < V; i++) l[i] = (float)(i % 17) * 0.1f;
    sl_sample_result res;
    sl_sampler_sample(&b, l, &ws, &res);
    ASSERT_EQ(sl_rng_u64(&a.rng), sl_rng_u64(&b.rng));
    free(l);
    sl_sampler_deinit(&a);
    sl_sampler_deinit(&b);

    /* no penalties: the bias list alone (merged), neutral penalty parameters, no logprobs */
    p.repetition_penalty = 1.0f, p.frequency_penalty = 0.0f, p.presence_penalty = 0.0f;
    p.logprobs = false;
    sl_sampler_init(&a, &p, 32, prompt, 4, V);
    ASSERT_EQ(sl_sampler_adj_max(&a), 4);
    sl_sampler_device_row(&a, adj, &row);
    ASSERT_EQ(row.n_adj, 4);
    for (int i = 0; i < 4; i++)
        ASSERT(adj[i].token == bias[i].token && adj[i].bias == bias[i].bias && adj[i].count == 0);
    ASSERT(row.repetition_penalty == 1.0f && row.frequency_penalty == 0.0f && row.presence_penalty == 0.0f);
    ASSERT(!row.logprobs && row.top_logprobs == 0);
    sl_sampler_deinit(&a);

    /* a token listed twice ("5" and "05" in JSON) is refused with a clear error */
    static const sl_logit_bias twice[] = {{5, 1.0f}, {9, -1.0f}, {5, 0.5f}};
    p.logit_bias = twice, p.n_logit_bias = 3;
    ASSERT_EQ(sl_sampling_params_check(&p, V, err), SL_EINVAL);
    ASSERT_STR_CONTAINS(err, "token 5 is listed twice");
}

int main(void) {
    test_params();
    test_device_row();
    test_greedy_and_top_k_1();
    test_distributions();
    test_penalties();
    test_logit_bias_and_logprobs();
    test_seed();

    sl_mkmodel_opts o;
    sl_mkmodel_defaults(&o);
    o.dim = 32, o.ff = 64, o.heads = 2, o.kv_heads = 1, o.layers = 1, o.vocab = 320;
    const char *path = "test_sampling.gguf";
    char err[SL_ERRMSG] = "";
    int rc = sl_mkmodel(&o, path, err);
    if (rc) fprintf(stderr, "mkmodel: %s\n", err);
    ASSERT_EQ(rc, 0);
    sl_gguf *g;
    ASSERT_EQ(sl_gguf_open(&g, path, err), 0);
    rc = sl_tok_create(&tok, g, err);
    if (rc) fprintf(stderr, "tokenizer: %s\n", err);
    ASSERT_EQ(rc, 0);
    sl_gguf_close(g);
    remove(path);
    test_stop_strings();
    sl_tok_destroy(tok);
    sl_sample_ws_deinit(&ws);
    return 0;
}
