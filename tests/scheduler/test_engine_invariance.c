/* Batch invariance with the real CPU model: greedy outputs (tokens and log-probabilities, bit
 * for bit) of a set of prompts are the same whether each prompt runs alone, all run together with random
 * arrivals and small prefill chunks, the KV pool is so small that preemption happens again
 * and again, or prefixes are served from the cache. A small engine loop drives scheduler
 * plans through sl_forward, as the engine thread will. */
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "models/mkmodel.h"
#include "models/sample.h"
#include "scheduler/sched.h"
#include "tests/test.h"

enum { NP = 10, GEN = 10, BS = 4, MAX_LEN = 64, MAX_SEQS = 6 };

static sl_model *model;
static int32_t prompt[NP][48];
static int plen[NP];

typedef struct result {
    int32_t tok[NP][GEN];
    float lp[NP][GEN];
    int n[NP];
    uint64_t preemptions, hits;
} result;

typedef struct regime {
    int n_blocks, budget;
    bool cache, staggered;
    int rounds;        /* > 1: the same prompts again, results of the last round kept */
    uint64_t seed;
} regime;

/* Runs the prompts listed in which[0..n) through one scheduler; fills r for them. */
static void run(const regime *g, const int *which, int n, result *r) {
    sl_sched_config c;
    sl_sched_config_defaults(&c);
    c.n_blocks = g->n_blocks;
    c.block_size = BS;
    c.max_num_seqs = MAX_SEQS;
    c.max_num_batched_tokens = g->budget;
    c.max_model_len = MAX_LEN;
    c.prefix_cache = g->cache;
    sl_sched *s;
    char err[SL_ERRMSG] = "";
    ASSERT_EQ(sl_sched_create(&s, &c, err), 0);
    sl_kv_cache kv;
    ASSERT_EQ(sl_kv_cache_init(&kv, model, g->n_blocks, BS), 0);
    const int V = model->hp.n_vocab;
    float *logits = malloc((size_t)MAX_SEQS * V * sizeof *logits);
    sl_rng rng;
    sl_rng_seed(&rng, g->seed);
    for (int round = 0; round < g->rounds; round++) {
        int next = 0, step = 0;
        while (next < n || sl_sched_has_work(s)) {
            ASSERT(step < 5000);
            while (next < n && (!g->staggered || sl_rng_u64(&rng) % 3 == 0)) {
                int i = which[next++];
                sl_sched_req q = {.id = (uint64_t)(round * NP + i), .prompt = prompt[i], .n_prompt = plen[i],
                                  .max_tokens = GEN, .prio = i % 3 ? SL_PRIO_INTERACTIVE : SL_PRIO_BATCH};
                ASSERT_EQ(sl_sched_add(s, &q, step, err), 0);
                r->n[i] = 0;
                if (g->staggered) break;
            }
            const sl_sched_plan *p = sl_sched_step(s, step);
            int32_t sampled[MAX_SEQS];
            float lps[MAX_SEQS];
            if (p->batch.n_tokens) {
                ASSERT_EQ(sl_forward(model, &kv, &p->batch, logits), 0);
                for (int l = 0; l < p->batch.n_logits; l++) {
                    const float *row = logits + (size_t)l * V;
                    sampled[l] = sl_argmax(row, V);
                    lps[l] = sl_logprob(row, V, sampled[l]);
                }
            }
            const sl_sched_event *ev;
            int ne = sl_sched_update(s, p, sampled, step, &ev);
            for (int e = 0; e < ne; e++) {
                int i = (int)(ev[e].id % NP);
                ASSERT(ev[e].finish != SL_FINISH_ABORT);
                ASSERT(r->n[i] < GEN);
                r->tok[i][r->n[i]] = ev[e].token;
                r->lp[i][r->n[i]] = lps[ev[e].logit_row];
                r->n[i]++;
            }
            ASSERT_EQ(sl_sched_check(s, err), 0);
            step++;
        }
    }
    sl_sched_stats st;
    sl_sched_get_stats(s, &st);
    ASSERT_EQ(st.n_blocks_free + st.n_blocks_cached, st.n_blocks);
    r->preemptions += st.n_preemptions;
    r->hits += st.prefix_hits;
    free(logits);
    sl_kv_cache_deinit(&kv, model);
    sl_sched_destroy(s);
}

/* Tokens and logprobs bit for bit the same as each prompt alone. */
static void compare(const result *a, const result *ref, const char *what) {
    for (int i = 0; i < NP; i++) {
        ASSERT_EQ(a->n[i], GEN);
        for (int t = 0; t < GEN; t++) {
            if (a->tok[i][t] != ref->tok[i][t])
                fprintf(stderr, "%s: prompt %d token %d: %d, alone %d\n", what, i, t, a->tok[i][t], ref->tok[i][t]);
            ASSERT_EQ(a->tok[i][t], ref->tok[i][t]);
            uint32_t lb, rb;
            memcpy(&lb, &a->lp[i][t], 4);
            memcpy(&rb, &ref->lp[i][t], 4);
            if (lb != rb)
                fprintf(stderr, "%s: prompt %d token %d: logprob %.9g (0x%08x), alone %.9g (0x%08x)\n", what, i, t,
                        a->lp[i][t], lb, ref->lp[i][t], rb);
            ASSERT_EQ(lb, rb);
        }
    }
    printf("test_engine_invariance: %-34s same tokens, same logprob bits\n", what);
}

/* One model through every regime: F32 weights, or (i8) quantized weights with the CPU
 * backend's int8 activations, whose per-token quantization must keep tokens independent. */
static void run_model(int type, int i8, const char *name) {
    printf("test_engine_invariance: %s\n", name);
    sl_mkmodel_opts o;
    sl_mkmodel_defaults(&o);
    o.type = type;
    o.dim = 64;
    o.ff = 96;
    o.heads = 4;
    o.kv_heads = 2;
    o.vocab = 300;
    o.tied = false; /* random tied models repeat one token */
    o.seed = 4;
    const char *path = "test_engine_invariance.gguf";
    char err[SL_ERRMSG] = "";
    int rc = sl_mkmodel(&o, path, err);
    if (rc) fprintf(stderr, "mkmodel: %s\n", err);
    ASSERT_EQ(rc, 0);
    sl_backend *be = sl_cpu_backend_create(2);
    sl_cpu_backend_set_int8_activations(be, i8);
    rc = sl_model_load(&model, path, be, NULL, err);
    if (rc) fprintf(stderr, "load: %s\n", err);
    ASSERT_EQ(rc, 0);
    remove(path);
    ASSERT_EQ(sl_model_reserve(model, 64, MAX_SEQS, (MAX_LEN + BS - 1) / BS, MAX_SEQS), 0);

    /* prompts in families that share prefixes of 0 to 20 tokens */
    sl_rng rng;
    sl_rng_seed(&rng, 11);
    int32_t fam[3][48];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 48; i++) fam[k][i] = 3 + (int32_t)(sl_rng_u64(&rng) % 290);
    for (int i = 0; i < NP; i++) {
        plen[i] = 3 + (int)(sl_rng_u64(&rng) % 38);
        int shared = (int)(sl_rng_u64(&rng) % 21);
        for (int t = 0; t < plen[i]; t++)
            prompt[i][t] = t < shared ? fam[i % 3][t] : 3 + (int32_t)(sl_rng_u64(&rng) % 290);
    }
    int all[NP];
    for (int i = 0; i < NP; i++) all[i] = i;

    static result alone, r;
    regime solo = {.n_blocks = 40, .budget = 64, .cache = false, .rounds = 1, .seed = 1};
    for (int i = 0; i < NP; i++) run(&solo, &i, 1, &alone);

    regime together = {.n_blocks = 80, .budget = 13, .cache = false, .staggered = true, .rounds = 1, .seed = 2};
    memset(&r, 0, sizeof r);
    run(&together, all, NP, &r);
    compare(&r, &alone, "together, random arrivals, chunks:");

    regime tiny = {.n_blocks = 16, .budget = 24, .cache = false, .staggered = true, .rounds = 1, .seed = 3};
    memset(&r, 0, sizeof r);
    run(&tiny, all, NP, &r);
    ASSERT(r.preemptions > 0);
    compare(&r, &alone, "tiny pool (preemption):");
    printf("test_engine_invariance: tiny pool: %llu preemptions\n", (unsigned long long)r.preemptions);

    regime cached = {.n_blocks = 120, .budget = 32, .cache = true, .staggered = true, .rounds = 2, .seed = 4};
    memset(&r, 0, sizeof r);
    run(&cached, all, NP, &r);
    ASSERT(r.hits > 0);
    compare(&r, &alone, "prefix cache, second round:");
    printf("test_engine_invariance: prefix cache: %llu prompt tokens served\n", (unsigned long long)r.hits);

    regime both = {.n_blocks = 18, .budget = 16, .cache = true, .staggered = true, .rounds = 2, .seed = 5};
    memset(&r, 0, sizeof r);
    run(&both, all, NP, &r);
    ASSERT(r.preemptions > 0 && r.hits > 0);
    compare(&r, &alone, "tiny pool with the prefix cache:");

    sl_model_free(model);
    be->destroy(be);
}

int main(void) {
    run_model(SL_GGML_F32, 0, "F32 weights, f32 activations");
    run_model(SL_GGML_Q4_1, 1, "Q4_1 weights (QW4 with offsets), int8 activations");
    run_model(SL_GGML_Q8_0, 1, "Q8_0 weights (QW8), int8 activations");
    run_model(SL_GGML_Q4_0, 1, "Q4_0 weights (QW4), int8 activations");
    return 0;
}
