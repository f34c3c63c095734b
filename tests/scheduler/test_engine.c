/* The engine thread (scheduler/engine.h) with the real CPU model: requests submitted from a
 * producer thread with random delays and random aborts, events drained by the main thread
 * through the notify callback. Checks: every sequence gets exactly one finishing event and
 * every request exactly one done event (its last); greedy outputs (tokens, logprobs, finish
 * reason, text) equal a plain one-sequence forward loop; seeded sampling is the same alone and
 * batched, and sequence k of n > 1 equals seed + k alone; stop strings cut the text; refused
 * requests get an error event; the engine sleeps when idle; shutdown with requests in flight
 * aborts them all; every KV block is free (or cached) at the end. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cpu/cpu.h"
#include "models/gguf.h"
#include "models/mkmodel.h"
#include "models/sample.h"
#include "models/tokenizer.h"
#include "scheduler/engine.h"
#include "tests/test.h"

enum { NREQ = 48, MAXP = 40, MAXGEN = 16, GOTCAP = 48, BS = 4, MAX_LEN = 64, V = 300 };

static sl_model *model;
static sl_tok *tok;

typedef struct ref {
    int32_t tok[MAXGEN];
    float lp[MAXGEN];
} ref;

typedef struct rq {
    int32_t prompt[MAXP];
    int n_prompt, max_tokens, n;
    bool seeded, abort_me, stop_str;
    char stop[64];
    char want_text[512];     /* stop-string requests: the expected text */
    ref ref;                 /* greedy continuation, no stopping */
    int ref_len;             /* tokens until and including the first EOS, or max_tokens */
    uint64_t id, seen_id;
    /* received, per sequence */
    int32_t got[3][GOTCAP];
    float got_lp[3][GOTCAP];
    int n_got[3];
    sl_finish fin[3];
    int n_fin[3], n_done;
    char text[3][512];
    size_t text_len[3];
    int cached[3];           /* prompt tokens served from the prefix cache */
    bool saw_error;
} rq;

static rq reqs[NREQ];

/* ---- the reference: one sequence, whole prompt, then one token per forward -------------- */
static void reference(const int32_t *prompt, int n_prompt, int n_gen, ref *out) {
    sl_kv_cache kv;
    int nb = (MAX_LEN + BS - 1) / BS;
    ASSERT_EQ(sl_kv_cache_init(&kv, model, nb + 1, BS), 0);
    int32_t blocks[(MAX_LEN + BS - 1) / BS], pos[MAX_LEN], slots[MAX_LEN], toks[MAX_LEN];
    for (int i = 0; i < nb; i++) blocks[i] = i + 1;
    static float logits[V];
    memcpy(toks, prompt, (size_t)n_prompt * sizeof *toks);
    int n = n_prompt, done = 0;
    for (int g = 0; g < n_gen; g++) {
        int T = n - done;
        for (int i = 0; i < T; i++) {
            pos[i] = done + i;
            slots[i] = blocks[(done + i) / BS] * BS + (done + i) % BS;
        }
        int32_t q_start = 0, q_len = T, ctx_len = n, li = T - 1;
        sl_batch b = {.n_tokens = T, .tokens = toks + done, .pos = pos, .slot_mapping = slots, .n_seqs = 1,
                      .max_blocks = nb, .q_start = &q_start, .q_len = &q_len, .ctx_len = &ctx_len,
                      .block_tables = blocks, .n_logits = 1, .logit_idx = &li};
        ASSERT_EQ(sl_forward(model, &kv, &b, logits), 0);
        done = n;
        out->tok[g] = sl_argmax(logits, V);
        out->lp[g] = sl_logprob(logits, V, out->tok[g]);
        toks[n++] = out->tok[g];
    }
    sl_kv_cache_deinit(&kv, model);
}

/* The tokenizer's streaming text of ids (what the engine releases without stop strings). */
static size_t stream_text(const int32_t *ids, int n, char *out) {
    sl_tok_stream st;
    sl_tok_stream_init(&st, tok, 0);
    char *piece = malloc(sl_tok_stream_bound(tok));
    size_t len = 0, k;
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(sl_tok_stream_put(&st, ids[i], piece, &k), 0);
        memcpy(out + len, piece, k);
        len += k;
    }
    sl_tok_stream_finish(&st, piece, &k);
    memcpy(out + len, piece, k);
    len += k;
    out[len] = 0;
    free(piece);
    return len;
}

/* ---- consumer side ------------------------------------------------------------------------ */
static pthread_mutex_t nmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ncv = PTHREAD_COND_INITIALIZER;
static int nflag, n_notify;

static void notify(void *ctx) {
    (void)ctx;
    pthread_mutex_lock(&nmu);
    nflag = 1;
    n_notify++;
    pthread_cond_signal(&ncv);
    pthread_mutex_unlock(&nmu);
}

/* Waits for a notify (at most ms milliseconds). */
static void wait_notify(int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&nmu);
    while (!nflag)
        if (pthread_cond_timedwait(&ncv, &nmu, &ts)) break;
    nflag = 0;
    pthread_mutex_unlock(&nmu);
}

/* Drains events into set; returns the number of done events seen. text: the engine has a
 * tokenizer. */
static int drain(sl_engine *e, rq *set, int n, bool text) {
    int done = 0;
    sl_engine_event *list = sl_engine_poll(e);
    for (sl_engine_event *o = list; o; o = o->next) {
        rq *r = o->user;
        ASSERT(r >= set && r < set + n);
        /* the producer learns the id when submit returns, maybe after the first events:
         * remember the first, compare with r->id once the producer is done */
        if (!r->seen_id) r->seen_id = o->id;
        ASSERT_EQ(o->id, r->seen_id);
        ASSERT(r->n_done == 0); /* nothing after done */
        ASSERT(o->index >= 0 && o->index < (r->n > 0 ? r->n : 1));
        int k = o->index;
        ASSERT_EQ(r->n_fin[k], 0); /* nothing after a sequence's finishing event */
        if (o->token >= 0) {
            ASSERT(r->n_got[k] < GOTCAP);
            r->got[k][r->n_got[k]] = o->token;
            r->got_lp[k][r->n_got[k]] = o->logprob;
            r->n_got[k]++;
            ASSERT_EQ(o->n_generated, r->n_got[k]);
            ASSERT_EQ(o->n_prompt, r->n_prompt);
            r->cached[k] = o->n_cached_tokens;
        }
        if (text) {
            ASSERT(o->text && strlen(o->text) == o->text_len);
            ASSERT(r->text_len[k] + o->text_len < sizeof r->text[k]);
            memcpy(r->text[k] + r->text_len[k], o->text, o->text_len + 1);
            r->text_len[k] += o->text_len;
        } else {
            ASSERT(o->text == NULL);
        }
        if (o->finish != SL_FINISH_NONE) {
            r->fin[k] = o->finish;
            r->n_fin[k]++;
            if (o->finish == SL_FINISH_ERROR) {
                r->saw_error = true;
                ASSERT(o->error < 0 && o->error_msg[0]);
            }
        }
        if (o->done) {
            r->n_done++;
            done++;
        }
    }
    sl_engine_release(e, list);
    return done;
}

/* ---- producer ------------------------------------------------------------------------------ */
typedef struct producer {
    sl_engine *e;
    uint64_t seed;
} producer;

static sl_engine_req make_req(rq *r, sl_logit_bias *unused) {
    (void)unused;
    sl_engine_req q = {.prompt = r->prompt, .n_prompt = r->n_prompt, .user = r};
    sl_sampling_params_defaults(&q.sp);
    q.sp.max_tokens = r->max_tokens;
    q.sp.n = r->n;
    q.sp.temperature = 0;
    q.sp.logprobs = true;
    q.sp.top_logprobs = 2;
    q.prio = (r - reqs) % 4 == 0 ? SL_PRIO_BATCH : SL_PRIO_INTERACTIVE;
    return q;
}

static void *produce(void *arg) {
    producer *p = arg;
    sl_rng rng;
    sl_rng_seed(&rng, p->seed);
    static const char *stops[NREQ][1];
    for (int i = 0; i < NREQ; i++) {
        rq *r = &reqs[i];
        sl_engine_req q = make_req(r, NULL);
        if (r->stop_str) {
            stops[i][0] = r->stop;
            q.sp.stop = stops[i];
            q.sp.n_stop = 1;
        }
        ASSERT_EQ(sl_engine_submit(p->e, &q, &r->id), 0);
        if (i == 10) { /* at once: it cannot have finished */
            r->abort_me = true;
            sl_engine_abort(p->e, r->id);
        }
        if (i % 4 == 3) usleep((useconds_t)(sl_rng_u64(&rng) % 3000)); /* bursts of four */
        /* abort an earlier request now and then, maybe already finished */
        if (i > 2 && sl_rng_u64(&rng) % 4 == 0) {
            int j = i - 1 - (int)(sl_rng_u64(&rng) % 3);
            reqs[j].abort_me = true;
            sl_engine_abort(p->e, reqs[j].id);
        }
    }
    sl_engine_abort(p->e, 1u << 30); /* unknown: ignored */
    return NULL;
}

static sl_engine_config config(int n_blocks, bool cache, bool with_tok) {
    sl_engine_config c = {.model = model, .tok = with_tok ? tok : NULL, .seed = 99, .notify = notify};
    sl_sched_config_defaults(&c.sched);
    c.sched.n_blocks = n_blocks;
    c.sched.block_size = BS;
    c.sched.max_num_seqs = 8;
    c.sched.max_num_batched_tokens = 24;
    c.sched.max_model_len = MAX_LEN;
    c.sched.prefix_cache = cache;
    return c;
}

/* An engine of config(n_blocks, cache, with_tok), started */
static sl_engine *start(int n_blocks, bool cache, bool with_tok) {
    sl_engine_config c = config(n_blocks, cache, with_tok);
    sl_engine *e;
    char err[SL_ERRMSG];
    ASSERT_EQ(sl_engine_create(&e, &c, err), 0);
    return e;
}

static void check_blocks_free(sl_engine *e) {
    sl_engine_stats st;
    sl_engine_get_stats(e, &st);
    ASSERT_EQ(st.n_requests, 0);
    ASSERT_EQ(st.sched.n_running + st.sched.n_waiting, 0);
    ASSERT_EQ(st.sched.n_blocks_free + st.sched.n_blocks_cached, st.sched.n_blocks);
}

static bool is_eos(int32_t t) { return t == model->hp.eos_id || t == model->hp.eot_id; }

static void test_concurrent(bool cache) {
    for (int i = 0; i < NREQ; i++) {
        rq *r = &reqs[i];
        memset(r->got, 0, sizeof r->got);
        memset(r->n_got, 0, sizeof r->n_got);
        memset(r->n_fin, 0, sizeof r->n_fin);
        memset(r->text, 0, sizeof r->text);
        memset(r->text_len, 0, sizeof r->text_len);
        r->n_done = 0;
        r->seen_id = 0;
        r->abort_me = false;
        r->saw_error = false;
    }
    sl_engine_config c = config(40, cache, true);
    sl_engine *e;
    char err[SL_ERRMSG] = "";
    int rc = sl_engine_create(&e, &c, err);
    if (rc) fprintf(stderr, "engine: %s\n", err);
    ASSERT_EQ(rc, 0);
    producer p = {.e = e, .seed = cache ? 5 : 6};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, produce, &p), 0);
    int done = 0;
    double t0 = sl_time_s();
    while (done < NREQ) {
        ASSERT(sl_time_s() - t0 < 60);
        wait_notify(50);
        done += drain(e, reqs, NREQ, true);
    }
    pthread_join(th, NULL);
    done += drain(e, reqs, NREQ, true);
    ASSERT_EQ(done, NREQ);

    int n_aborted = 0, n_full = 0, n_stopped = 0;
    for (int i = 0; i < NREQ; i++) {
        rq *r = &reqs[i];
        ASSERT_EQ(r->n_done, 1);
        ASSERT_EQ(r->seen_id, r->id);
        for (int k = 0; k < r->n; k++) {
            ASSERT_EQ(r->n_fin[k], 1);
            /* every token received so far is the reference's, aborted or not */
            for (int t = 0; t < r->n_got[k]; t++) {
                if (r->got[k][t] != r->ref.tok[t])
                    fprintf(stderr, "request %d seq %d token %d: %d, alone %d\n", i, k, t, r->got[k][t], r->ref.tok[t]);
                ASSERT_EQ(r->got[k][t], r->ref.tok[t]);
                ASSERT_NEAR(r->got_lp[k][t], r->ref.lp[t], 1e-4, 0);
            }
            if (r->fin[k] == SL_FINISH_ABORT) {
                ASSERT(r->abort_me);
                n_aborted++;
                continue;
            }
            n_full++;
            if (r->stop_str) {
                ASSERT_EQ(r->fin[k], SL_FINISH_STOP);
                ASSERT(!strcmp(r->text[k], r->want_text));
                n_stopped++;
                continue;
            }
            ASSERT_EQ(r->n_got[k], r->ref_len);
            ASSERT_EQ(r->fin[k], is_eos(r->ref.tok[r->ref_len - 1]) ? SL_FINISH_STOP : SL_FINISH_LENGTH);
            /* the text is the decoded tokens, without a final stop token's */
            char want[512];
            stream_text(r->ref.tok, r->fin[k] == SL_FINISH_STOP ? r->ref_len - 1 : r->ref_len, want);
            ASSERT(!strcmp(r->text[k], want));
        }
    }
    ASSERT(n_aborted > 0 && n_full > NREQ / 2 && n_stopped > 0);
    sl_engine_stats st;
    sl_engine_get_stats(e, &st);
    printf("test_engine: %-13s %d sequences complete (%d by stop string), %d aborted, %llu steps, %llu preemptions, "
           "%llu prompt tokens from the cache, %d notifies\n",
           cache ? "cache on:" : "cache off:", n_full, n_stopped, n_aborted, (unsigned long long)st.sched.n_steps,
           (unsigned long long)st.sched.n_preemptions, (unsigned long long)st.sched.prefix_hits, n_notify);

    /* idle: no steps and (almost) no CPU while nothing is submitted */
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    usleep(100000);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    sl_engine_stats st2;
    sl_engine_get_stats(e, &st2);
    ASSERT_EQ(st2.sched.n_steps, st.sched.n_steps);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
    ASSERT(cpu < 0.02);
    check_blocks_free(e);
    sl_engine_destroy(e);
}

/* Runs one request alone on a fresh engine; returns its tokens of sequence k. */
static int run_alone(const sl_engine_req *q, int k, int32_t *out) {
    sl_engine *e = start(40, true, false);
    static rq one;
    memset(&one, 0, sizeof one);
    one.n = q->sp.n;
    one.n_prompt = q->n_prompt;
    sl_engine_req qq = *q;
    qq.user = &one;
    ASSERT_EQ(sl_engine_submit(e, &qq, &one.id), 0);
    while (!one.n_done) {
        wait_notify(50);
        drain(e, &one, 1, false);
    }
    memcpy(out, one.got[k], sizeof one.got[k]);
    int n = one.n_got[k];
    sl_engine_destroy(e);
    return n;
}

/* Seeded sampling: the same tokens alone and in a busy batch; sequence k of n = 3 equals the
 * request with seed + k alone; greedy n = 2 gives two identical sequences. */
static void test_seeds_and_n(void) {
    enum { NS = 6 };
    static rq set[NS];
    memset(set, 0, sizeof set);
    sl_engine *e = start(60, true, false);
    sl_engine_req q[NS];
    for (int i = 0; i < NS; i++) {
        rq *r = &set[i];
        r->n_prompt = 6 + 3 * i;
        for (int t = 0; t < r->n_prompt; t++) r->prompt[t] = 3 + (int32_t)((t * 37 + i * 11) % 290);
        r->n = i == 0 ? 3 : i == 1 ? 2 : 1;
        q[i] = (sl_engine_req){.prompt = r->prompt, .n_prompt = r->n_prompt, .user = r};
        sl_sampling_params_defaults(&q[i].sp);
        q[i].sp.n = r->n;
        q[i].sp.max_tokens = 12;
        q[i].sp.ignore_eos = true;
        q[i].sp.temperature = i == 1 ? 0 : 1.0f;
        q[i].sp.has_seed = true;
        q[i].sp.seed = 1000 + (uint64_t)i * 10;
        ASSERT_EQ(sl_engine_submit(e, &q[i], &r->id), 0);
    }
    int done = 0;
    while (done < NS) {
        wait_notify(50);
        done += drain(e, set, NS, false);
    }
    check_blocks_free(e);
    sl_engine_destroy(e);
    int32_t alone[GOTCAP];
    for (int i = 0; i < NS; i++)
        for (int k = 0; k < set[i].n; k++) {
            ASSERT_EQ(set[i].n_got[k], 12);
            ASSERT_EQ(set[i].fin[k], SL_FINISH_LENGTH);
            sl_engine_req one = q[i];
            one.sp.n = 1;
            one.sp.seed += (uint64_t)k;
            ASSERT_EQ(run_alone(&one, 0, alone), 12);
            ASSERT_EQ(memcmp(alone, set[i].got[k], 12 * sizeof *alone), 0);
        }
    ASSERT(memcmp(set[0].got[0], set[0].got[1], 12 * sizeof(int32_t)) != 0); /* seeds differ */
    /* n > 1 shares the prompt: the other sequences find its full blocks in the prefix cache */
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(set[i].cached[0], 0);
        for (int k = 1; k < set[i].n; k++) ASSERT_EQ(set[i].cached[k], (set[i].n_prompt - 1) / BS * BS);
    }
    ASSERT_EQ(memcmp(set[1].got[0], set[1].got[1], 12 * sizeof(int32_t)), 0); /* greedy */
    printf("test_engine: seeded requests identical alone and batched; n = 3 sequences equal seed + k alone and "
           "share the prompt's blocks\n");
}

static void test_refused(void) {
    sl_engine *e = start(10, true, false); /* 9 usable blocks: 36 tokens */
    static rq set[5];
    memset(set, 0, sizeof set);
    sl_engine_req q[5];
    const char *stop[] = {"x"};
    for (int i = 0; i < 5; i++) {
        set[i].n = 1;
        set[i].n_prompt = 10;
        for (int t = 0; t < 10; t++) set[i].prompt[t] = 5 + t;
        q[i] = (sl_engine_req){.prompt = set[i].prompt, .n_prompt = 10, .user = &set[i]};
        sl_sampling_params_defaults(&q[i].sp);
    }
    q[0].sp.max_tokens = MAX_LEN; /* over max_model_len */
    q[1].sp.max_tokens = 40;      /* 49 tokens of KV: more than the pool */
    set[2].prompt[3] = V;         /* outside the vocabulary */
    q[3].sp.stop = stop;          /* stop strings without a tokenizer */
    q[3].sp.n_stop = 1;
    q[4].sp.top_p = 2;            /* bad parameter */
    const int want[5] = {SL_ERANGE, SL_ENOMEM, SL_EINVAL, SL_EINVAL, SL_EINVAL};
    for (int i = 0; i < 5; i++) ASSERT_EQ(sl_engine_submit(e, &q[i], &set[i].id), 0);
    sl_engine_req empty = {.n_prompt = 0};
    ASSERT_EQ(sl_engine_submit(e, &empty, NULL), SL_EINVAL); /* malformed: refused at once */
    int done = 0;
    while (done < 5) {
        wait_notify(50);
        sl_engine_event *list = sl_engine_poll(e);
        for (sl_engine_event *o = list; o; o = o->next) {
            rq *r = o->user;
            int i = (int)(r - set);
            ASSERT(o->done && o->finish == SL_FINISH_ERROR && o->index == 0 && o->token == -1);
            ASSERT_EQ(o->error, want[i]);
            ASSERT(o->error_msg[0]);
            done++;
        }
        sl_engine_release(e, list);
    }
    check_blocks_free(e);
    sl_engine_stats st;
    sl_engine_get_stats(e, &st);
    ASSERT_EQ(st.n_requests_error, 5);
    sl_engine_destroy(e);
}

/* sl_engine_submit_many: all or nothing; what it queues, the next step schedules together (4
 * prompts of 5 tokens fit one step of 24: 3 tokens each take 3 steps, the first one the
 * prefill's); ids in order. */
static void test_submit_many(void) {
    enum { NS = 4 };
    static rq set[NS];
    memset(set, 0, sizeof set);
    sl_engine *e = start(40, false, false);
    sl_engine_req q[NS];
    for (int i = 0; i < NS; i++) {
        rq *r = &set[i];
        r->n = 1;
        r->n_prompt = 5;
        for (int t = 0; t < 5; t++) r->prompt[t] = 3 + (int32_t)((t * 13 + i * 5) % 290);
        q[i] = (sl_engine_req){.prompt = r->prompt, .n_prompt = 5, .user = r};
        sl_sampling_params_defaults(&q[i].sp);
        q[i].sp.max_tokens = 3;
        q[i].sp.ignore_eos = true;
    }
    uint64_t ids[NS] = {0};
    q[2].n_prompt = 0; /* malformed: nothing of the batch is queued */
    ASSERT_EQ(sl_engine_submit_many(e, q, NS, ids), SL_EINVAL);
    q[2].n_prompt = 5;
    ASSERT_EQ(sl_engine_submit_many(e, q, -1, ids), SL_EINVAL);
    ASSERT_EQ(sl_engine_submit_many(e, q, 0, ids), 0);
    ASSERT_EQ(ids[0], 0);
    ASSERT_EQ(sl_engine_submit_many(e, q, NS, ids), 0);
    for (int i = 0; i < NS; i++) {
        set[i].id = ids[i];
        if (i) ASSERT_EQ(ids[i], ids[i - 1] + 1);
    }
    int done = 0;
    while (done < NS) {
        wait_notify(50);
        done += drain(e, set, NS, false);
    }
    for (int i = 0; i < NS; i++) {
        ASSERT_EQ(set[i].seen_id, set[i].id);
        ASSERT_EQ(set[i].n_got[0], 3);
    }
    sl_engine_stats st;
    sl_engine_get_stats(e, &st);
    ASSERT_EQ(st.n_requests_done, NS); /* the refused batch left no request behind */
    ASSERT_EQ(st.sched.n_steps, 3);
    check_blocks_free(e);
    sl_engine_destroy(e);
    printf("test_engine: a batch of %d submitted at once ran in 3 steps\n", NS);
}

/* Shutdown with requests running and waiting: each sequence gets its abort, blocks are free. */
static void test_shutdown(void) {
    enum { NS = 12 };
    static rq set[NS];
    memset(set, 0, sizeof set);
    sl_engine *e = start(40, true, true);
    for (int i = 0; i < NS; i++) {
        rq *r = &set[i];
        r->n = i % 3 == 0 ? 2 : 1;
        r->n_prompt = 20;
        for (int t = 0; t < 20; t++) r->prompt[t] = 3 + (int32_t)((t * 7 + i) % 290);
        sl_engine_req q = {.prompt = r->prompt, .n_prompt = 20, .user = r};
        sl_sampling_params_defaults(&q.sp);
        q.sp.n = r->n;
        q.sp.max_tokens = 40;
        q.sp.ignore_eos = true;
        ASSERT_EQ(sl_engine_submit(e, &q, &r->id), 0);
    }
    int seen = 0;
    while (seen == 0) { /* wait for the first tokens */
        wait_notify(50);
        seen += drain(e, set, NS, true) + (set[0].n_got[0] > 0);
    }
    sl_engine_shutdown(e);
    drain(e, set, NS, true);
    int aborted = 0;
    for (int i = 0; i < NS; i++) {
        ASSERT_EQ(set[i].n_done, 1);
        for (int k = 0; k < set[i].n; k++) {
            ASSERT_EQ(set[i].n_fin[k], 1);
            aborted += set[i].fin[k] == SL_FINISH_ABORT;
        }
    }
    ASSERT(aborted > 0);
    rq late = {.n = 1, .n_prompt = 1};
    sl_engine_req q = {.prompt = set[0].prompt, .n_prompt = 1, .user = &late};
    sl_sampling_params_defaults(&q.sp);
    ASSERT_EQ(sl_engine_submit(e, &q, NULL), SL_EINVAL);
    check_blocks_free(e);
    sl_engine_shutdown(e); /* twice is fine */
    sl_engine_destroy(e);
    printf("test_engine: shutdown aborted %d sequences in flight, every block free\n", aborted);
}

int main(void) {
    double t0 = sl_time_s();
    sl_mkmodel_opts o;
    sl_mkmodel_defaults(&o);
    o.dim = 64, o.ff = 96, o.heads = 4, o.kv_heads = 2, o.vocab = V;
    o.tied = false; /* random tied models repeat one token */
    o.seed = 7;
    const char *path = "test_engine.gguf";
    char err[SL_ERRMSG] = "";
    int rc = sl_mkmodel(&o, path, err);
    if (rc) fprintf(stderr, "mkmodel: %s\n", err);
    ASSERT_EQ(rc, 0);
    sl_backend *be = sl_cpu_backend_create(2);
    ASSERT_EQ(sl_model_load(&model, path, be, NULL, err), 0);
    sl_gguf *g;
    ASSERT_EQ(sl_gguf_open(&g, path, err), 0);
    ASSERT_EQ(sl_tok_create(&tok, g, err), 0);
    sl_gguf_close(g);
    remove(path);
    ASSERT_EQ(sl_model_reserve(model, MAX_LEN, 1, (MAX_LEN + BS - 1) / BS, 1), 0);

    /* prompts in families sharing prefixes; references computed one at a time */
    sl_rng rng;
    sl_rng_seed(&rng, 21);
    int32_t fam[3][MAXP];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < MAXP; i++) fam[k][i] = 3 + (int32_t)(sl_rng_u64(&rng) % 290);
    int n_eos = 0;
    for (int i = 0; i < NREQ; i++) {
        rq *r = &reqs[i];
        r->n_prompt = 3 + (int)(sl_rng_u64(&rng) % (MAXP - 2));
        int shared = (int)(sl_rng_u64(&rng) % 24);
        for (int t = 0; t < r->n_prompt; t++)
            r->prompt[t] = t < shared ? fam[i % 3][t] : 3 + (int32_t)(sl_rng_u64(&rng) % 290);
        if (i == 7) r->prompt[r->n_prompt - 1] = 2; /* an EOS inside a prompt is just a token */
        r->max_tokens = 4 + (int)(sl_rng_u64(&rng) % (MAXGEN - 3));
        r->n = i % 5 == 1 ? 2 : 1;
        reference(r->prompt, r->n_prompt, r->max_tokens, &r->ref);
        r->ref_len = r->max_tokens;
        for (int t = 0; t < r->max_tokens; t++)
            if (is_eos(r->ref.tok[t])) {
                r->ref_len = t + 1;
                n_eos++;
                break;
            }
        /* every 6th request stops at a string that spans tokens 2 and 3 of its text */
        if (i % 6 == 3 && r->ref_len >= 4) {
            char text[512], head[512];
            size_t len2 = stream_text(r->ref.tok, 2, head), len = stream_text(r->ref.tok, r->ref_len, text);
            if (len2 >= 2 && len >= len2 + 2 && !memchr(text, 0, len)) {
                r->stop_str = true;
                memcpy(r->stop, text + len2 - 2, 4);
                r->stop[4] = 0;
                char *at = strstr(text, r->stop);
                memcpy(r->want_text, text, (size_t)(at - text));
                r->want_text[at - text] = 0;
            }
        }
    }
    printf("test_engine: %d references computed one at a time (%d end with EOS)\n", NREQ, n_eos);
    test_concurrent(true);
    test_concurrent(false);
    test_seeds_and_n();
    test_refused();
    test_submit_many();
    test_shutdown();
    sl_tok_destroy(tok);
    sl_model_free(model);
    be->destroy(be);
    printf("test_engine: %.1f s\n", sl_time_s() - t0);
    return 0;
}
