/* test_cuda_sample.c — sl_cuda_sample (kernels/cuda/sample.h) against a double-precision host
 * reference of the same rule (ref_sample below), against the CPU sampler itself
 * (scheduler/sampling.c: penalties, bias, greedy, the draw with the same u, truncated or not) and
 * against the exact truncated distribution (a chi-square test of 10k draws per setting).
 *
 * A draw may differ from the reference only where f32-vs-f64 rounding decides it: r within
 * 1e-5 (of the kept mass) of a cumulative boundary, a top_p prefix within 1e-5 of its target,
 * or a token within 1e-5 (relative) of min_p; such draws must stay under 0.1%. Greedy tokens,
 * adjusted logits and top-N ids are exact; logprobs within 1e-5.
 */
#include "tests/kernels/test_cuda_harness.h"

#include "kernels/cuda/sample.h"
#include "models/sample.h"
#include "scheduler/sampling.h"

#define NLP SL_CUDA_MAX_LOGPROBS
#define MARGIN 1e-5
#define LIST_CAP 4096 /* sample.cu's LIST_MAX: the default cap of a candidate list */

static long g_draws, g_near, g_exact_greedy;

static double u01(sl_rng *r) { return (double)(sl_rng_u64(r) >> 11) * 0x1.0p-53; } /* sampling.c's */

/* logprobs within 1e-5; -inf (a -inf logit) only where the reference has it */
static void check_lps(const char *what, const float *got, const float *ref, int n) {
    for (int i = 0; i < n; i++) {
        if (got[i] == ref[i]) {
            g_checks++;
            continue;
        }
        check_close(what, &got[i], &ref[i], 1, 1e-5, 0);
    }
}

/* ---- the reference ------------------------------------------------------------------------ */

typedef struct ref_out {
    int32_t tok;
    double margin; /* how far (relative) the nearest decision was from flipping */
} ref_out;

static const float *g_sort_x;
static int cmp_key(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = g_sort_x[i], y = g_sort_x[j];
    if (x != y) return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

/* Applies p's adjustments to x (sampling.h steps 2-4, the kernel's f32 arithmetic). */
static void ref_adjust(float *x, int V, const sl_cuda_sample_row *p, const sl_cuda_sample_adj *adj) {
    for (int j = 0; j < p->n_adj; j++) {
        int32_t t = adj[j].token;
        if (t < 0 || t >= V) continue;
        float v = x[t];
        if (adj[j].bias != 0.0f) v = v + adj[j].bias;
        uint32_t c = adj[j].count & ~SL_CUDA_ADJ_PROMPT;
        if ((c > 0 || (adj[j].count & SL_CUDA_ADJ_PROMPT)) && p->repetition_penalty != 1.0f)
            v = v > 0.0f ? v / p->repetition_penalty : v * p->repetition_penalty;
        if (c > 0) v = v - ((float)c * p->frequency_penalty + p->presence_penalty);
        x[t] = v;
    }
}

/* sample.h's rule on adjusted logits x, in double; w and ids are scratch [V]. */
static ref_out ref_sample(const float *x, int V, const sl_cuda_sample_row *p, double *w,
                          int32_t *ids) {
    ref_out o = {0, 1.0};
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) {
        float v = x[i] != x[i] ? -INFINITY : x[i];
        if (v > mx) mx = v, o.tok = i;
    }
    if (!(p->temperature >= SL_CUDA_SAMPLING_EPS) || mx == -INFINITY) return o;
    const float inv_t = 1.0f / p->temperature;
    int m = 0;
    for (int i = 0; i < V; i++) {
        float y = (x[i] - mx) * inv_t;
        w[i] = y < -87.0f || x[i] != x[i] ? 0.0 : exp((double)y);
        if (p->min_p > 0 && w[i] > 0) {
            double d = fabs(w[i] - p->min_p) / p->min_p;
            if (d < o.margin) o.margin = d;
        }
        if (w[i] < p->min_p) w[i] = 0;
        if (w[i] > 0) ids[m++] = i;
    }
    g_sort_x = x;
    qsort(ids, (size_t)m, sizeof *ids, cmp_key);
    if (p->top_k > 0 && p->top_k < m) m = p->top_k;
    if (p->top_p < 1.0f) {
        double total = 0, cum = 0, need;
        for (int i = 0; i < m; i++) total += w[ids[i]];
        need = total * p->top_p;
        int c = m;
        for (int i = 0; i < m; i++) {
            double prev = cum;
            cum += w[ids[i]];
            if (cum >= need) {
                c = i + 1;
                double d = fmin(fabs(cum - need), fabs(prev - need)) / total;
                if (d < o.margin) o.margin = d;
                break;
            }
        }
        m = c;
    }
    /* the draw in id order over the kept */
    char *keep = calloc((size_t)V, 1);
    for (int i = 0; i < m; i++) keep[ids[i]] = 1;
    double mass = 0;
    for (int i = 0; i < V; i++)
        if (keep[i]) mass += w[i];
    double r = p->u * mass, cum = 0;
    o.tok = -1;
    int last = -1;
    for (int i = 0; i < V; i++) {
        if (!keep[i]) continue;
        cum += w[i];
        last = i;
        double d = fabs(cum - r) / mass;
        if (d < o.margin) o.margin = d;
        if (o.tok < 0 && r < cum) o.tok = i;
    }
    if (o.tok < 0) o.tok = last;
    free(keep);
    return o;
}

/* ---- a batch on the device ------------------------------------------------------------------ */

typedef struct batch {
    int B, V;
    float *logits;            /* host [B][V], raw */
    sl_cuda_sample_row *rows; /* host [B]; .adj: host pointers into adj until uploaded */
    sl_cuda_sample_adj *adj;  /* host, every row's entries */
    int n_adj_total;
    int32_t *tok;             /* results [B] */
    float *lp, *top_lps;      /* [B], [B][NLP] */
    int32_t *top_ids;
    float *adjusted;          /* [B][V] the logits after the call */
    sl_cuda_sample_adj *adj_after;
    int32_t *list_n;          /* [B][2] sl__cuda_sample_ex's candidate list lengths */
    int cap;                  /* the list cap of the run (sl_cuda_sample_set_list_cap) */
} batch;

static void batch_alloc(batch *t, int B, int V, int max_adj) {
    memset(t, 0, sizeof *t);
    t->B = B, t->V = V;
    t->logits = sl_xmalloc((size_t)B * V * sizeof(float));
    t->adjusted = sl_xmalloc((size_t)B * V * sizeof(float));
    t->rows = sl_xcalloc((size_t)B, sizeof *t->rows);
    t->adj = sl_xcalloc((size_t)(max_adj > 0 ? max_adj : 1), sizeof *t->adj);
    t->adj_after = sl_xcalloc((size_t)(max_adj > 0 ? max_adj : 1), sizeof *t->adj);
    t->tok = sl_xmalloc((size_t)B * 4);
    t->lp = sl_xmalloc((size_t)B * 4);
    t->top_ids = sl_xmalloc((size_t)B * NLP * 4);
    t->top_lps = sl_xmalloc((size_t)B * NLP * 4);
    t->list_n = sl_xmalloc((size_t)B * 8);
    t->cap = LIST_CAP;
}
static void batch_free(batch *t) {
    free(t->logits), free(t->adjusted), free(t->rows), free(t->adj), free(t->adj_after);
    free(t->tok), free(t->lp), free(t->top_ids), free(t->top_lps), free(t->list_n);
}

/* Uploads, samples, downloads; checks the guards and that the top-N entries past n_top are
 * untouched. rows[b].adj holds an index into t->adj (as a pointer-sized integer + 1, 0: none). */
static void batch_run(batch *t, const char *what) {
    const int B = t->B, V = t->V;
    const int64_t n = (int64_t)B * V;
    const int adj_words = t->n_adj_total * 4;
    dbuf dl = dev_from(t->logits, n, 0), dt = dev_alloc(B, 0), dlp = dev_alloc(B, 1);
    dbuf dti = dev_alloc((int64_t)B * NLP, 0), dtl = dev_alloc((int64_t)B * NLP, 0);
    dbuf dln = dev_alloc(2 * (int64_t)B, 0);
    dbuf da = dev_from(t->adj, adj_words > 0 ? adj_words : 1, 0);
    sl_cuda_sample_row *rows = sl_xmalloc((size_t)B * sizeof *rows);
    for (int b = 0; b < B; b++) {
        rows[b] = t->rows[b];
        uintptr_t k = (uintptr_t)t->rows[b].adj;
        rows[b].adj = k ? (sl_cuda_sample_adj *)da.p + (k - 1) : NULL;
    }
    const int row_words = (int)(sizeof *rows / 4);
    dbuf dr = dev_from(rows, (int64_t)B * row_words, 0);
    sl_cuda_sample_set_list_cap(t->cap);
    sl__cuda_sample_ex(dl.p, B, V, (const sl_cuda_sample_row *)dr.p, (int32_t *)dt.p, dlp.p,
                       (int32_t *)dti.p, dtl.p, (int32_t *)dln.p, NULL);
    sl_cuda_sample_set_list_cap(-1);
    dev_get(&dt, t->tok);
    dev_get(&dln, t->list_n);
    dev_check_guards(&dln, what);
    dev_get(&dlp, t->lp);
    dev_get(&dti, t->top_ids);
    dev_get(&dtl, t->top_lps);
    dev_get(&dl, t->adjusted);
    if (adj_words > 0) dev_get(&da, t->adj_after);
    dev_check_guards(&dl, what), dev_check_guards(&dt, what), dev_check_guards(&dlp, what);
    dev_check_guards(&dti, what), dev_check_guards(&dtl, what);
    if (adj_words > 0) dev_check_guards(&da, what);
    for (int b = 0; b < B; b++) {
        int nt = t->rows[b].logprobs ? t->rows[b].top_logprobs : 0;
        if (nt > V) nt = V;
        for (int j = nt; j < NLP; j++) {
            uint32_t u;
            memcpy(&u, &t->top_ids[(int64_t)b * NLP + j], 4);
            ASSERT_EQ(u, 0xffffffffu);
        }
    }
    dev_free(&dl), dev_free(&dt), dev_free(&dlp), dev_free(&dti), dev_free(&dtl), dev_free(&da);
    dev_free(&dln);
    dev_free(&dr);
    free(rows);
}

/* The candidate lists sl__cuda_sample_ex reported for row b (x: its adjusted logits, raw: its
 * raw ones). The draw's: -2 exactly where neither top_k nor top_p truncates it (or it is
 * greedy), else the whole row (-1) or a list within the run's cap that holds at least the top_k
 * best weighted tokens. The top-N's: -2 exactly without a top-N, else the whole row or a list
 * of at least N within the cap. */
static long g_list_rows, g_full_rows, g_top_list_rows, g_top_full_rows, g_sorted_rows;
static void check_list(const batch *t, int b, const float *x, const float *raw, const char *where) {
    const sl_cuda_sample_row *p = &t->rows[b];
    const int V = t->V, n = t->list_n[2 * b], tn = t->list_n[2 * b + 1];
    const int n_top = p->logprobs ? (p->top_logprobs < V ? p->top_logprobs : V) : 0;
    int raw_finite = 0;
    for (int i = 0; i < V; i++) raw_finite += raw[i] == raw[i] && raw[i] > -INFINITY;
    if (n_top == 0 ? tn != -2 : tn < -1 || tn > t->cap || (tn >= 0 && tn < n_top) ||
                                    (raw_finite == 0 && tn != -1)) {
        fprintf(stderr, "%s: top-%d candidate list %d (cap %d)\n", where, n_top, tn, t->cap);
        abort();
    }
    if (n_top > 0) *(tn >= 0 ? &g_top_list_rows : &g_top_full_rows) += 1;
    float mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (x[i] == x[i] && x[i] > mx) mx = x[i];
    const int trunc = p->temperature >= SL_CUDA_SAMPLING_EPS && mx > -INFINITY &&
                      (p->top_k > 0 || p->top_p < 1.0f);
    if (trunc ? n < -1 || n > t->cap || (t->cap == 0 && n != -1) : n != -2) {
        fprintf(stderr, "%s: candidate list %d (cap %d)\n", where, n, t->cap);
        abort();
    }
    if (!trunc) return;
    if (n == -1) {
        g_full_rows++;
        return;
    }
    if (p->top_k > 0) {
        /* the tokens clearly weighted (away from the e^-87 and min_p edges, where the f32 and
         * f64 weights may disagree) */
        int clear = 0;
        for (int i = 0; i < V; i++) {
            const double y = ((double)x[i] - mx) / p->temperature;
            clear += x[i] == x[i] && y > -86.9 && exp(y) > p->min_p * (1.0 + 1e-4);
        }
        if (n < (p->top_k < clear ? p->top_k : clear)) {
            fprintf(stderr, "%s: a list of %d for top_k %d (%d weighted)\n", where, n, p->top_k,
                    clear);
            abort();
        }
    }
    /* lists longer than the block (sample.cu's launch: 16 logits a thread, 64 to 1024 threads)
     * take the bitonic sort, the others the rank placement */
    int threads = 64;
    while (threads < 1024 && threads * 16 < V) threads *= 2;
    g_sorted_rows += n > threads;
    g_list_rows++;
    g_checks++;
}

/* Checks every row of a run against the reference (and the models/ logprob functions). */
static void batch_check(batch *t, const char *what) {
    const int V = t->V;
    double *w = sl_xmalloc((size_t)V * sizeof(double));
    int32_t *ids = sl_xmalloc((size_t)V * sizeof(int32_t));
    float *x = sl_xmalloc((size_t)V * sizeof(float));
    int32_t rid[NLP];
    float rlp[NLP];
    long near = 0;
    for (int b = 0; b < t->B; b++) {
        const sl_cuda_sample_row *p = &t->rows[b];
        const float *raw = t->logits + (int64_t)b * V;
        const sl_cuda_sample_adj *adj = p->adj ? t->adj + ((uintptr_t)p->adj - 1) : NULL;
        memcpy(x, raw, (size_t)V * sizeof(float));
        if (adj) ref_adjust(x, V, p, adj);
        char where[200];
        snprintf(where, sizeof where, "%s: row %d (V=%d T=%g k=%d p=%g min_p=%g u=%.6f)", what, b,
                 V, (double)p->temperature, p->top_k, (double)p->top_p, (double)p->min_p, p->u);
        check_bits(where, t->adjusted + (int64_t)b * V, x, V, 4); /* in place, exactly */
        if (adj)
            for (int j = 0; j < p->n_adj; j++) {
                const sl_cuda_sample_adj *e = &t->adj_after[((uintptr_t)p->adj - 1) + j];
                if (e->token >= 0 && e->token < V) check_bits(where, &e->raw, &raw[e->token], 1, 4);
            }
        check_list(t, b, x, raw, where);
        ref_out o = ref_sample(x, V, p, w, ids);
        const int greedy = !(p->temperature >= SL_CUDA_SAMPLING_EPS);
        g_draws++;
        if (t->tok[b] != o.tok) {
            if (greedy || !(o.margin < MARGIN)) {
                fprintf(stderr, "%s: token %d, reference %d (margin %.3g)\n", where, t->tok[b],
                        o.tok, o.margin);
                abort();
            }
            near++;
        } else if (greedy) {
            g_exact_greedy++;
        }
        if (p->logprobs) {
            float want = sl_logprob(raw, V, t->tok[b]);
            check_lps(where, &t->lp[b], &want, 1);
            int nt = p->top_logprobs < V ? p->top_logprobs : V;
            if (nt > 0) {
                sl_top_logprobs(raw, V, nt, rid, rlp);
                if (memcmp(&t->top_ids[(int64_t)b * NLP], rid, (size_t)nt * 4) != 0)
                    for (int j = 0; j < nt; j++) /* the ids, with their logits */
                        fprintf(stderr, "top %d: got %d (%g), want %d (%g)\n", j,
                                t->top_ids[(int64_t)b * NLP + j],
                                (double)raw[t->top_ids[(int64_t)b * NLP + j] % V], rid[j],
                                (double)raw[rid[j]]);
                check_bits(where, &t->top_ids[(int64_t)b * NLP], rid, nt, 4);
                check_lps(where, &t->top_lps[(int64_t)b * NLP], rlp, nt);
            }
        } else {
            ASSERT_EQ(t->lp[b], 0.0f);
        }
    }
    g_near += near;
    free(w), free(ids), free(x);
}

/* ---- random rows ---------------------------------------------------------------------------- */

static float pick_f(const float *a, int n) { return a[rnd_int(n)]; }

/* Random logits: normal × scale, quantized to steps (ties) when quant > 0, a few -inf. */
static void fill_logits(float *x, int V, float scale, float quant, int with_inf) {
    for (int i = 0; i < V; i++) {
        float v = sl_rng_normal(&g_rng) * scale;
        if (quant > 0) v = roundf(v / quant) * quant;
        x[i] = v;
    }
    if (with_inf && V > 2)
        for (int j = 0; j < 1 + V / 50; j++) x[rnd_int(V)] = -INFINITY;
}

/* Random parameters; greedy_frac of rows greedy; adjustments on some. */
static void random_row(batch *t, int b, int max_adj) {
    static const float temps[] = {0.3f, 0.7f, 1.0f, 1.5f};
    static const float tps[] = {1.0f, 1.0f, 0.95f, 0.8f, 0.5f, 0.1f, 1e-3f};
    static const float mps[] = {0.0f, 0.0f, 0.0f, 0.01f, 0.1f, 0.5f};
    const int V = t->V;
    sl_cuda_sample_row *p = &t->rows[b];
    memset(p, 0, sizeof *p);
    p->u = u01(&g_rng);
    int g = rnd_int(8);
    p->temperature = g == 0 ? 0.0f : g == 1 ? 1e-6f : pick_f(temps, 4);
    const int ks[] = {0, -1, 1, 2, 5, 50, V, V + 5};
    p->top_k = ks[rnd_int(8)];
    p->top_p = pick_f(tps, 7);
    p->min_p = pick_f(mps, 6);
    p->repetition_penalty = 1.0f;
    p->logprobs = rnd_int(2);
    p->top_logprobs = p->logprobs ? rnd_int(NLP + 1) : 0;
    if (max_adj > 0 && rnd_int(3) == 0) {
        static const float reps[] = {1.0f, 1.3f, 0.8f}, fs[] = {0.0f, 0.5f, -0.3f},
                           ps[] = {0.0f, 0.7f};
        p->repetition_penalty = pick_f(reps, 3);
        p->frequency_penalty = pick_f(fs, 3);
        p->presence_penalty = pick_f(ps, 2);
        int n = 1 + rnd_int(max_adj);
        if (n > V) n = V;
        p->adj = (sl_cuda_sample_adj *)(uintptr_t)(t->n_adj_total + 1);
        p->n_adj = n;
        /* distinct tokens: a random start and stride coprime-ish with V */
        int start = rnd_int(V), stride = 1 + 2 * rnd_int(5);
        for (int j = 0; j < n; j++) {
            sl_cuda_sample_adj *e = &t->adj[t->n_adj_total++];
            e->token = (int32_t)(((int64_t)start + (int64_t)j * stride) % V);
            if (j > 0 && stride > 1 && V % stride == 0) e->token = (start + j) % V;
            e->bias = rnd_int(3) == 0 ? 0.0f : rnd() * 5.0f;
            e->count = (uint32_t)rnd_int(4) | (rnd_int(2) ? SL_CUDA_ADJ_PROMPT : 0u);
            e->raw = 0.0f;
        }
        if (rnd_int(4) == 0) t->adj[t->n_adj_total - 1].token = V + 3; /* skipped */
    }
}

/* Removes duplicate tokens the stride trick may have made (the kernel wants them distinct). */
static void dedup_adj(batch *t) {
    for (int b = 0; b < t->B; b++) {
        sl_cuda_sample_row *p = &t->rows[b];
        if (!p->adj) continue;
        sl_cuda_sample_adj *a = t->adj + ((uintptr_t)p->adj - 1);
        for (int i = 0; i < p->n_adj; i++)
            for (int j = 0; j < i; j++)
                if (a[j].token == a[i].token) a[i].token = -1 - i; /* out of range: skipped */
    }
}

/* Runs t again with list cap `cap`: the same tokens, logprobs and top-N, bit for bit (the list
 * only changes where the selection reads), and lists within the cap. */
static void same_run(batch *t, int cap, const char *what) {
    const size_t B = (size_t)t->B;
    int32_t *tok = sl_xmalloc(B * 4), *ids = sl_xmalloc(B * NLP * 4);
    float *lp = sl_xmalloc(B * 4), *lps = sl_xmalloc(B * NLP * 4);
    memcpy(tok, t->tok, B * 4), memcpy(ids, t->top_ids, B * NLP * 4);
    memcpy(lp, t->lp, B * 4), memcpy(lps, t->top_lps, B * NLP * 4);
    const int cap0 = t->cap;
    t->cap = cap;
    batch_run(t, what);
    for (size_t b = 0; b < B; b++) {
        const int n = t->list_n[2 * b], tn = t->list_n[2 * b + 1];
        if (tok[b] != t->tok[b] || n > cap || tn > cap || (cap == 0 && (n >= 0 || tn >= 0))) {
            fprintf(stderr, "%s, list cap %d: row %zu token %d (lists %d %d), with cap %d %d\n",
                    what, cap, b, t->tok[b], n, tn, cap0, tok[b]);
            abort();
        }
    }
    check_bits(what, t->lp, lp, (int64_t)B, 4);
    check_bits(what, t->top_ids, ids, (int64_t)B * NLP, 4);
    check_bits(what, t->top_lps, lps, (int64_t)B * NLP, 4);
    t->cap = cap0;
    free(tok), free(ids), free(lp), free(lps);
}

static void random_case(int V, int B, float quant, const char *what) {
    batch t;
    const int max_adj = V < 40 ? V : 40;
    batch_alloc(&t, B, V, B * (max_adj + 1));
    static const float scales[] = {1.0f, 3.0f, 8.0f};
    for (int b = 0; b < B; b++) {
        fill_logits(t.logits + (int64_t)b * V, V, pick_f(scales, 3), quant, b % 5 == 4);
        random_row(&t, b, max_adj);
    }
    dedup_adj(&t);
    batch_run(&t, what);
    batch_check(&t, what);
    same_run(&t, 0, what); /* every truncated row over the whole row */
    same_run(&t, 8, what); /* short lists, and the whole row where 8 are too few */
    batch_free(&t);
}

static void test_random(void) {
    static const int Vs[] = {1, 2, 7, 50, 333, 1000, 1024, 4099};
    static const int Bs[] = {40, 60, 200, 400, 200, 150, 100, 40};
    long d0 = g_draws;
    for (int i = 0; i < 8; i++) {
        char what[64];
        snprintf(what, sizeof what, "random V=%d", Vs[i]);
        random_case(Vs[i], Bs[i], 0.0f, what);
        snprintf(what, sizeof what, "ties V=%d", Vs[i]);
        random_case(Vs[i], Bs[i] / 2 + 1, 0.5f, what); /* many equal logits: the tie cuts */
    }
    printf("random rows: %ld draws ok, truncated ones from candidate lists %ld (%ld longer than "
           "the block), from the whole row %ld; top-N from lists %ld, from the whole row %ld (cap "
           "%d)\n", g_draws - d0, g_list_rows, g_sorted_rows, g_full_rows, g_top_list_rows,
           g_top_full_rows, LIST_CAP);
    ASSERT(g_list_rows > 100 && g_sorted_rows > 10 && g_full_rows > 0 && g_top_list_rows > 100);
}

/* One vocabulary of Llama 3's size, a few rows through every path. */
static void test_large(void) {
    const int V = 128256, B = 5;
    batch t;
    batch_alloc(&t, B, V, 64);
    for (int b = 0; b < B; b++) {
        fill_logits(t.logits + (int64_t)b * V, V, b == 4 ? 0.5f : 3.0f, b == 3 ? 0.25f : 0.0f, 1);
        sl_cuda_sample_row *p = &t.rows[b];
        memset(p, 0, sizeof *p);
        p->u = u01(&g_rng);
        p->top_p = 1.0f;
        p->repetition_penalty = 1.0f;
        p->logprobs = 1;
        p->top_logprobs = b == 0 ? NLP : 5;
        p->temperature = b == 0 ? 0.0f : b == 1 ? 0.8f : 1.0f;
    }
    t.rows[1].top_k = 50, t.rows[1].top_p = 0.95f;       /* the common setting */
    t.rows[2].top_p = 0.9f;                              /* a mass cut over the whole row */
    t.rows[3].min_p = 0.05f, t.rows[3].top_k = 1000;     /* ties at the top_k cut */
    t.rows[4].top_p = 0.5f, t.rows[4].top_k = 20000;     /* a flat row: a large kept set */
    /* penalties on row 1 */
    t.rows[1].repetition_penalty = 1.2f, t.rows[1].presence_penalty = 0.5f;
    t.rows[1].adj = (sl_cuda_sample_adj *)(uintptr_t)1;
    t.rows[1].n_adj = 64;
    for (int j = 0; j < 64; j++)
        t.adj[j] = (sl_cuda_sample_adj){j * 2003, j % 3 ? 0.0f : 2.0f, (uint32_t)(j % 4), 0.0f};
    t.n_adj_total = 64;
    batch_run(&t, "V=128256");
    batch_check(&t, "V=128256");
    /* top_k 50 from a list; top_k 1000 under min_p 0.05 from a list of the few that min_p
     * keeps; top_p 0.9 over a spread row and top_k 20000 need more than a list holds */
    const int32_t *ln = t.list_n; /* [b][0] the draw's, [b][1] the top-N's */
    ASSERT(ln[0] == -2 && ln[2] >= 50 && ln[6] >= 1 && ln[6] < 1000);
    ASSERT(ln[4] == -1 && ln[8] == -1);
    for (int b = 0; b < B; b++) ASSERT(ln[2 * b + 1] >= (b == 0 ? NLP : 5));
    printf("large vocabulary: %d rows ok, candidate lists %d %d %d %d, top-N %d %d %d %d %d\n", B,
           ln[2], ln[4], ln[6], ln[8], ln[1], ln[3], ln[5], ln[7], ln[9]);
    same_run(&t, 0, "V=128256");
    batch_free(&t);
}

/* ---- distribution ------------------------------------------------------------------------------ */

/* 10k rows of one row of logits with one setting, each with its own u from a seeded RNG: the
 * token counts against the exact truncated distribution (chi-square), nothing outside it. */
static void dist_case(float temp, int top_k, float top_p, float min_p) {
    const int V = 50, B = 10000;
    batch t;
    batch_alloc(&t, B, V, 0);
    fill_logits(t.logits, V, 1.5f, 0.0f, 0);
    for (int b = 0; b < B; b++) {
        memcpy(t.logits + (int64_t)b * V, t.logits, V * sizeof(float));
        sl_cuda_sample_row *p = &t.rows[b];
        *p = (sl_cuda_sample_row){.u = u01(&g_rng), .temperature = temp, .top_p = top_p,
                                  .min_p = min_p, .top_k = top_k, .repetition_penalty = 1.0f};
    }
    char what[128];
    snprintf(what, sizeof what, "distribution T=%g top_k=%d top_p=%g min_p=%g", (double)temp,
             top_k, (double)top_p, (double)min_p);
    batch_run(&t, what);
    /* the exact distribution: the reference's kept set and weights (u = 0 finds the set) */
    double w[50], prob[50] = {0}, mass = 0;
    int32_t ids[50];
    sl_cuda_sample_row p0 = t.rows[0];
    p0.u = 0;
    (void)ref_sample(t.logits, V, &p0, w, ids);
    /* ref_sample leaves ids sorted best first with w zeroed below min_p; redo the cut */
    int m = 0;
    for (int i = 0; i < V; i++)
        if (w[i] > 0) m++;
    if (top_k > 0 && top_k < m) m = top_k;
    if (top_p < 1.0f) {
        double tot = 0, cum = 0;
        for (int i = 0; i < m; i++) tot += w[ids[i]];
        for (int i = 0; i < m; i++)
            if ((cum += w[ids[i]]) >= tot * top_p) {
                m = i + 1;
                break;
            }
    }
    for (int i = 0; i < m; i++) mass += w[ids[i]];
    for (int i = 0; i < m; i++) prob[ids[i]] = w[ids[i]] / mass;
    long count[50] = {0};
    for (int b = 0; b < B; b++) {
        ASSERT(t.tok[b] >= 0 && t.tok[b] < V);
        count[t.tok[b]]++;
    }
    double chi2 = 0;
    int df = -1;
    for (int i = 0; i < V; i++) {
        if (prob[i] == 0) {
            if (count[i]) {
                fprintf(stderr, "%s: token %d drawn %ld times, outside the kept set\n", what, i,
                        count[i]);
                abort();
            }
            continue;
        }
        double e = prob[i] * B;
        chi2 += (count[i] - e) * (count[i] - e) / e;
        df++;
    }
    /* far in the tail (about 6 sigma) for the df of these settings; seeded: deterministic */
    double bound = df + 6.0 * sqrt(2.0 * (df > 0 ? df : 1)) + 10.0;
    printf("%s: %d kept, chi2 %.1f (df %d, bound %.1f)\n", what, m, chi2, df, bound);
    ASSERT(chi2 < bound);
    g_checks++;
    batch_free(&t);
}

static void test_distribution(void) {
    dist_case(0.8f, 10, 1.0f, 0.0f);
    dist_case(1.2f, 0, 0.8f, 0.0f);
    dist_case(1.0f, 0, 1.0f, 0.1f);
    dist_case(0.7f, 20, 0.9f, 0.02f);
}

/* ---- against the CPU sampler (scheduler/sampling.c) ------------------------------------------ */

/* The adjustment list of a CPU sampler and its request's logit_bias, merged per token. */
static int adj_from_sampler(const sl_sampler *s, sl_cuda_sample_adj *out) {
    int n = 0;
    for (int j = 0; j < s->h_n; j++) {
        int slot = s->h_list[j];
        out[n++] = (sl_cuda_sample_adj){s->h_tok[slot], 0.0f,
                                        s->h_count[slot] | (s->h_prompt[slot] ? SL_CUDA_ADJ_PROMPT : 0u),
                                        0.0f};
    }
    for (int i = 0; i < s->p->n_logit_bias; i++) {
        const sl_logit_bias *lb = &s->p->logit_bias[i];
        int j = 0;
        while (j < n && out[j].token != lb->token) j++;
        if (j == n) out[n++] = (sl_cuda_sample_adj){lb->token, 0.0f, 0u, 0.0f};
        out[j].bias += lb->bias;
    }
    return n;
}

/* One row per setting: the device and the CPU sampler with the same logits, history and u. */
static void cpu_case(int V, int rows, float temp, float min_p, int top_k, float top_p,
                     int decisive) {
    batch t;
    const int max_adj = 64;
    batch_alloc(&t, rows, V, rows * max_adj);
    sl_sample_ws ws;
    sl_sample_ws_init(&ws, V);
    sl_sample_result *cpu = sl_xmalloc((size_t)rows * sizeof *cpu);
    float *cpu_work = sl_xmalloc((size_t)rows * V * sizeof(float));
    for (int b = 0; b < rows; b++) {
        float *x = t.logits + (int64_t)b * V;
        fill_logits(x, V, 2.0f, 0.0f, 0);
        sl_sampling_params sp;
        sl_sampling_params_defaults(&sp);
        sp.temperature = temp;
        sp.min_p = min_p;
        sp.top_k = top_k;
        sp.top_p = top_p;
        sp.max_tokens = 32;
        sp.repetition_penalty = b % 3 == 0 ? 1.0f : 1.3f;
        sp.frequency_penalty = b % 2 ? 0.4f : 0.0f;
        sp.presence_penalty = b % 4 == 1 ? 0.0f : 0.6f;
        sp.logprobs = true;
        sp.top_logprobs = b % NLP;
        /* distinct tokens: the CPU adds a token's biases one by one, the kernel their sum */
        const int b0 = rnd_int(V);
        sl_logit_bias bias[3] = {{b0, -4.0f}, {(b0 + 1) % V, 3.0f}, {(b0 + 2) % V, 1.5f}};
        sp.logit_bias = bias;
        sp.n_logit_bias = b % 5 == 0 ? 0 : 3;
        int32_t prompt[12];
        for (int i = 0; i < 12; i++) prompt[i] = rnd_int(V);
        sl_sampler s;
        sl_sampler_init(&s, &sp, 1000 + (uint64_t)b, prompt, 12, V);
        for (int i = 0; i < 8; i++) sl_sampler_accept(&s, rnd_int(V));
        if (decisive) {
            /* the raw favourite is a generated token; penalties must move the choice */
            int fav = s.h_tok[s.h_list[s.h_n - 1]];
            x[fav] = 10.0f;
            x[(fav + 1) % V] = 9.9f;
        }
        sl_sampler_accept(&s, s.h_tok[s.h_list[s.h_n - 1]]);
        sl_rng peek = s.rng;
        t.rows[b] = (sl_cuda_sample_row){.u = u01(&peek), .temperature = temp, .top_p = top_p,
                                         .min_p = min_p, .top_k = top_k,
                                         .repetition_penalty = sp.repetition_penalty,
                                         .frequency_penalty = sp.frequency_penalty,
                                         .presence_penalty = sp.presence_penalty,
                                         .logprobs = 1, .top_logprobs = sp.top_logprobs};
        if (s.penalties) {
            /* the penalized tokens (and the bias) as the kernel takes them */
            int n = adj_from_sampler(&s, t.adj + t.n_adj_total);
            ASSERT(n <= max_adj);
            t.rows[b].adj = (sl_cuda_sample_adj *)(uintptr_t)(t.n_adj_total + 1);
            t.rows[b].n_adj = n;
            t.n_adj_total += n;
        } else if (sp.n_logit_bias) {
            sl_sampler tmp = {.p = &sp}; /* no history: the bias alone */
            int n = adj_from_sampler(&tmp, t.adj + t.n_adj_total);
            t.rows[b].adj = (sl_cuda_sample_adj *)(uintptr_t)(t.n_adj_total + 1);
            t.rows[b].n_adj = n;
            t.n_adj_total += n;
        }
        sl_sampler_sample(&s, x, &ws, &cpu[b]);
        memcpy(cpu_work + (int64_t)b * V,
               (sp.n_logit_bias || s.penalties) ? ws.work : x, (size_t)V * sizeof(float));
        sl_sampler_deinit(&s);
    }
    char what[96];
    snprintf(what, sizeof what, "cpu sampler V=%d T=%g min_p=%g top_k=%d top_p=%g%s", V,
             (double)temp, (double)min_p, top_k, (double)top_p, decisive ? " decisive" : "");
    batch_run(&t, what);
    batch_check(&t, what); /* the reference, and the adjusted logits */
    double *w = sl_xmalloc((size_t)V * sizeof(double));
    int32_t *ids = sl_xmalloc((size_t)V * sizeof(int32_t));
    long same = 0;
    for (int b = 0; b < rows; b++) {
        /* the CPU's adjusted logits equal the kernel's, bit for bit */
        check_bits(what, t.adjusted + (int64_t)b * V, cpu_work + (int64_t)b * V, V, 4);
        check_lps(what, &t.lp[b], &cpu[b].logprob, 1);
        if (t.tok[b] == cpu[b].token) {
            same++;
            continue;
        }
        ref_out o = ref_sample(cpu_work + (int64_t)b * V, V, &t.rows[b], w, ids);
        if (temp < SL_SAMPLING_EPS || !(o.margin < MARGIN)) {
            fprintf(stderr, "%s: row %d: device %d, CPU sampler %d (margin %.3g)\n", what, b,
                    t.tok[b], cpu[b].token, o.margin);
            abort();
        }
    }
    printf("%s: %ld/%d rows pick the CPU sampler's token\n", what, same, rows);
    free(w), free(ids), free(cpu), free(cpu_work);
    sl_sample_ws_deinit(&ws);
    batch_free(&t);
}

static void test_cpu_sampler(void) {
    cpu_case(1000, 60, 0.0f, 0.0f, 0, 1.0f, 1); /* greedy: the penalties decide */
    cpu_case(1000, 200, 0.9f, 0.0f, 0, 1.0f, 0);
    cpu_case(3000, 100, 1.3f, 0.05f, 0, 1.0f, 1);
    /* truncated: both draw in token id order over the kept set */
    cpu_case(1000, 200, 0.8f, 0.0f, 50, 0.95f, 0);
    cpu_case(2000, 100, 1.1f, 0.02f, 0, 0.8f, 0);
    cpu_case(1000, 100, 1.0f, 0.0f, 7, 1.0f, 1);
}

int main(void) {
    int skip = harness_begin("test_cuda_sample", 20250812);
    if (skip) return skip;
    double t0 = sl_time_s();
    /* B == 0 touches nothing */
    dbuf d = dev_alloc(4, 0);
    sl_cuda_sample(d.p, 0, 4, (const sl_cuda_sample_row *)d.p, (int32_t *)d.p, NULL, NULL, NULL,
                   NULL);
    uint32_t h[4];
    dev_get(&d, h);
    for (int i = 0; i < 4; i++) ASSERT_EQ(h[i], 0xffffffffu);
    dev_free(&d);

    test_cpu_sampler();
    test_random();
    test_large();
    test_distribution();
    printf("test_cuda_sample: ok (%ld checks, %ld draws, %ld greedy exact, %ld within %.0e of a "
           "boundary, %.1f s)\n",
           g_checks, g_draws, g_exact_greedy, g_near, MARGIN, sl_time_s() - t0);
    ASSERT(g_near * 1000 <= g_draws);
    return 0;
}
