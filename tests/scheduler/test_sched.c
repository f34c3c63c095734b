/* Scheduler unit tests against the fake model (fake_model.h): budgets and chunked prefill,
 * decodes before prefills, the sequence cap, priority classes, preemption order and
 * recompute, prefix reuse counts, stop and length, abort in every state, refused requests,
 * and outputs that do not depend on batching, preemption or the prefix cache. Every step is
 * followed by the full invariant check. */
#include "fake_model.h"

static sl_sched *mk(int n_blocks, int bs, int max_seqs, int budget, int max_len, bool cache) {
    sl_sched_config c;
    sl_sched_config_defaults(&c);
    c.n_blocks = n_blocks;
    c.block_size = bs;
    c.max_num_seqs = max_seqs;
    c.max_num_batched_tokens = budget;
    c.max_model_len = max_len;
    c.prefix_cache = cache;
    sl_sched *s;
    char err[SL_ERRMSG] = "";
    int rc = sl_sched_create(&s, &c, err);
    if (rc) fprintf(stderr, "create: %s\n", err);
    ASSERT_EQ(rc, 0);
    return s;
}

static void add(sl_sched *s, fake_model *f, uint64_t id, const int32_t *prompt, int n, int max_tokens, sl_prio prio,
                const int32_t *stop, int n_stop, double now) {
    fake_req_set(f, id, prompt, n, max_tokens)->submitted = true;
    sl_sched_req r = {.id = id, .prompt = prompt, .n_prompt = n, .max_tokens = max_tokens, .prio = prio,
                      .stop_ids = stop, .n_stop_ids = n_stop};
    char err[SL_ERRMSG] = "";
    int rc = sl_sched_add(s, &r, now, err);
    if (rc) fprintf(stderr, "add: %s\n", err);
    ASSERT_EQ(rc, 0);
}

static void seq_prompt(int32_t *p, int n, int seed) {
    for (int i = 0; i < n; i++) p[i] = (seed * 7919 + i * 31) % 97 + 3;
}

/* Steps until no work is left; returns the number of steps. */
static int drain(sl_sched *s, fake_model *f, int max_steps) {
    int n = 0;
    while (sl_sched_has_work(s)) {
        ASSERT(n < max_steps);
        fake_step(f, s, n, NULL);
        n++;
    }
    return n;
}

static void assert_all_free(sl_sched *s) {
    sl_sched_stats st;
    sl_sched_get_stats(s, &st);
    ASSERT_EQ(st.n_running, 0);
    ASSERT_EQ(st.n_waiting, 0);
    ASSERT_EQ(st.n_blocks_free + st.n_blocks_cached, st.n_blocks);
}

/* Runs to the end: requests 0 .. n-1 all finished by length, every block back in the pool. */
static void drain_to_length(sl_sched *s, fake_model *f, int n) {
    drain(s, f, 100);
    for (int i = 0; i < n; i++) ASSERT_EQ(f->reqs[i].finish, SL_FINISH_LENGTH);
    assert_all_free(s);
}

/* Index of request id in the plan's sequences, -1 when absent. */
static int plan_index(const sl_sched_plan *p, uint64_t id) {
    for (int i = 0; i < p->batch.n_seqs; i++)
        if (p->seq_ids[i] == id) return i;
    return -1;
}

static void test_chunked_prefill(void) {
    sl_sched *s = mk(64, 4, 8, 8, 64, true);
    fake_model f;
    fake_init(&f, 64, 4, 100, 4);
    int32_t p[20];
    seq_prompt(p, 20, 1);
    add(s, &f, 0, p, 20, 3, SL_PRIO_INTERACTIVE, NULL, 0, 0);
    const sl_sched_plan *pl;
    static const int want_len[] = {8, 8, 4, 1, 1};
    static const int want_ctx[] = {8, 16, 20, 21, 22};
    for (int st = 0; st < 5; st++) {
        int n_ev = fake_step(&f, s, st, &pl);
        ASSERT_EQ(pl->batch.n_seqs, 1);
        ASSERT_EQ(pl->batch.n_tokens, want_len[st]);
        ASSERT_EQ(pl->batch.q_len[0], want_len[st]);
        ASSERT_EQ(pl->batch.ctx_len[0], want_ctx[st]);
        ASSERT_EQ(pl->batch.pos[0], want_ctx[st] - want_len[st]);
        ASSERT_EQ(pl->batch.max_blocks, (want_ctx[st] + 3) / 4);
        /* no logits for a partial prefill chunk */
        ASSERT_EQ(pl->batch.n_logits, st >= 2);
        ASSERT_EQ(n_ev, st >= 2);
        ASSERT_EQ(pl->n_decode_tokens, st >= 3);
        ASSERT_EQ(pl->n_prefill_tokens, st >= 3 ? 0 : want_len[st]);
    }
    ASSERT_EQ(f.reqs[0].finish, SL_FINISH_LENGTH);
    ASSERT_EQ(f.reqs[0].n, 23);
    ASSERT(!sl_sched_has_work(s));
    assert_all_free(s);
    /* the outputs are the fake model's, computed from the truth */
    for (int i = 20; i < 23; i++) ASSERT_EQ(f.reqs[0].tok[i], fake_next(f.reqs[0].tok, i, 100));
    sl_sched_destroy(s);
    fake_deinit(&f);
}

static void test_decodes_first(void) {
    sl_sched *s = mk(64, 4, 8, 8, 64, true);
    fake_model f;
    fake_init(&f, 64, 4, 100, 4);
    int32_t a[3], b[20];
    seq_prompt(a, 3, 2);
    seq_prompt(b, 20, 3);
    add(s, &f, 0, a, 3, 10, SL_PRIO_INTERACTIVE, NULL, 0, 0);
    const sl_sched_plan *pl;
    fake_step(&f, s, 0, &pl); /* A's prefill */
    add(s, &f, 1, b, 20, 2, SL_PRIO_INTERACTIVE, NULL, 0, 1);
    static const int bl[] = {7, 7, 6};
    for (int st = 0; st < 3; st++) {
        fake_step(&f, s, 1 + st, &pl);
        ASSERT_EQ(pl->batch.n_seqs, 2);
        ASSERT(pl->seq_ids[0] == 0); /* the decode comes first and is never squeezed out */
        ASSERT_EQ(pl->batch.q_len[0], 1);
        ASSERT(pl->seq_ids[1] == 1);
        ASSERT_EQ(pl->batch.q_len[1], bl[st]);
        ASSERT_EQ(pl->batch.n_tokens, 1 + bl[st]);
        ASSERT_EQ(pl->batch.n_logits, st == 2 ? 2 : 1);
    }
    fake_step(&f, s, 4, &pl); /* both decode */
    ASSERT_EQ(pl->batch.n_tokens, 2);
    drain(s, &f, 100);
    assert_all_free(s);
    sl_sched_destroy(s);
    fake_deinit(&f);
}

static void test_max_num_seqs(void) {
    sl_sched *s = mk(64, 4, 2, 64, 64, true);
    fake_model f;
    fake_init(&f, 64, 4, 100, 4);
    int32_t p[3][5];
    for (int i = 0; i < 3; i++) {
        seq_prompt(p[i], 5, 10 + i);
        add(s, &f, i, p[i], 5, 2 + 2 * i, SL_PRIO_INTERACTIVE, NULL, 0, 0);
    }
    const sl_sched_plan *pl;
    fake_step(&f, s, 0, &pl);
    ASSERT_EQ(pl->batch.n_seqs, 2);
    ASSERT_EQ(plan_index(pl, 2), -1);
    sl_sched_stats st;
    sl_sched_get_stats(s, &st);
    ASSERT_EQ(st.n_running, 2);
    ASSERT_EQ(st.n_waiting, 1);
    fake_step(&f, s, 1, &pl); /* request 0 finishes (max_tokens 2) */
    ASSERT_EQ(f.reqs[0].finish, SL_FINISH_LENGTH);
    fake_step(&f, s, 2, &pl); /* request 2 takes its place */
    ASSERT_EQ(pl->batch.n_seqs, 2);
    ASSERT(plan_index(pl, 2) >= 0);
    drain(s, &f, 100);
    for (int i = 0; i < 3; i++) ASSERT_EQ(f.reqs[i].n - 5, 2 + 2 * i);
    assert_all_free(s);
    sl_sched_destroy(s);
    fake_deinit(&f);
}

static void test_priorities(void) {
    sl_sched *s = mk(64, 4, 1, 64, 64, true);
    fake_model f;
    fake_init(&f, 64, 4, 100, 8);
    int32_t p[5][4];
    static const sl_prio cls[5] = {SL_PRIO_BATCH, SL_PRIO_INTERACTIVE, SL_PRIO_BATCH, SL_PRIO_INTERACTIVE,
                                   SL_PRIO_BATCH};
    for (int i = 0; i < 5; i++) {
        seq_prompt(p[i], 4, 20 + i);
        add(s, &f, i, p[i], 4, 2, cls[i], NULL, 0, i);
    }
    /* one sequence at a time: interactive first (1, 3), then batch (0, 2, 4), FCFS in a class */
    static const int order[5] = {1, 3, 0, 2, 4};
    for (int k = 0; k < 5; k++) {
        const sl_sched_plan *pl;
        fake_step(&f, s, 2 * k, &pl);
        ASSERT_EQ(pl->batch.n_seqs, 1);
        ASSERT(pl->seq_ids[0] == (uint64_t)order[k]);
        fake_step(&f, s, 2 * k + 1, &pl);
        ASSERT_EQ(f.reqs[order[k]].finish, SL_FINISH_LENGTH);
    }
    ASSERT(!sl_sched_has_work(s));
    sl_sched_destroy(s);
    fake_deinit(&f);

    /* An interactive request that does not fit the pool takes the place of the running batch
     * request (preempted, to recompute later); a batch request behind it does not overtake
     * it, and everything finishes. Pool: 6 blocks of 4. */
    s = mk(7, 4, 8, 64, 64, false);
    fake_init(&f, 7, 4, 100, 8);
    int32_t big[16], small[4];
    seq_prompt(big, 16, 30);
    seq_prompt(small, 4, 31);
    add(s, &f, 0, big, 16, 4, SL_PRIO_BATCH, NULL, 0, 0); /* takes 4 blocks, then 5 */
    const sl_sched_plan *pl;
    fake_step(&f, s, 0, &pl);
    add(s, &f, 1, big, 12, 2, SL_PRIO_INTERACTIVE, NULL, 0, 1); /* needs 3 blocks: only 2 left */
    add(s, &f, 2, small, 4, 2, SL_PRIO_BATCH, NULL, 0, 1);      /* would fit */
    fake_step(&f, s, 1, &pl);
    ASSERT_EQ(pl->n_preempted, 1);
    ASSERT_EQ(pl->batch.n_seqs, 1);
    ASSERT(pl->seq_ids[0] == 1);
    drain_to_length(s, &f, 3);
    ASSERT_EQ(f.reqs[0].n_preemptions, 1);
    ASSERT_EQ(f.reqs[1].n_preemptions, 0);
    sl_sched_destroy(s);
    fake_deinit(&f);

    /* At the sequence cap, an interactive request takes the newest batch sequence's place;
     * one of the batch class waits for a free place. Cap 2. */
    s = mk(64, 4, 2, 64, 64, false);
    fake_init(&f, 64, 4, 100, 8);
    int32_t q[4][4];
    for (int i = 0; i < 4; i++) seq_prompt(q[i], 4, 40 + i);
    add(s, &f, 0, q[0], 4, 6, SL_PRIO_BATCH, NULL, 0, 0);
    add(s, &f, 1, q[1], 4, 6, SL_PRIO_BATCH, NULL, 0, 0);
    fake_step(&f, s, 0, &pl);
    ASSERT_EQ(pl->batch.n_seqs, 2);
    add(s, &f, 2, q[2], 4, 6, SL_PRIO_BATCH, NULL, 0, 1);       /* waits */
    add(s, &f, 3, q[3], 4, 6, SL_PRIO_INTERACTIVE, NULL, 0, 1); /* preempts 1, the newer */
    fake_step(&f, s, 1, &pl);
    ASSERT_EQ(pl->n_preempted, 1);
    ASSERT(plan_index(pl, 3) >= 0 && plan_index(pl, 0) >= 0);
    ASSERT(plan_index(pl, 1) == -1 && plan_index(pl, 2) == -1);
    drain_to_length(s, &f, 4);
    ASSERT_EQ(f.reqs[0].n_preemptions, 0);
    ASSERT_EQ(f.reqs[1].n_preemptions, 1);
    sl_sched_destroy(s);
    fake_deinit(&f);

    /* No preemption when the batch class cannot make room: interactive A holds most of the
     * pool, batch B one or two blocks, interactive C needs 3 — it waits for A. Pool: 6 of 4. */
    s = mk(7, 4, 8, 64, 64, false);
    fake_init(&f, 7, 4, 100, 8);
    int32_t a12[12], c12[12];
    seq_prompt(a12, 12, 60);
    seq_prompt(c12, 12, 61);
    add(s, &f, 0, a12, 12, 4, SL_PRIO_INTERACTIVE, NULL, 0, 0); /* 3 blocks, then 4 */
    add(s, &f, 1, q[1], 4, 4, SL_PRIO_BATCH, NULL, 0, 0);       /* 1 block, then 2 */
    fake_step(&f, s, 0, &pl);
    add(s, &f, 2, c12, 12, 1, SL_PRIO_INTERACTIVE, NULL, 0, 1);
    fake_step(&f, s, 1, &pl);
    ASSERT_EQ(pl->n_preempted, 0);
    ASSERT(plan_index(pl, 0) >= 0 && plan_index(pl, 1) >= 0 && plan_index(pl, 2) == -1);
    drain_to_length(s, &f, 3);
    ASSERT_EQ(f.reqs[1].n_preemptions, 0);
    sl_sched_destroy(s);
    fake_deinit(&f);
}

static void test_preemption(void) {
    /* 8 usable blocks of 4; three requests of 4 prompt tokens, 14 new tokens each (up to 5
     * blocks apiece): the pool runs out while all three decode. */
    for (int cache = 0; cache < 2; cache++) {
        sl_sched *s = mk(9, 4, 8, 64, 64, cache);
        fake_model f;
        fake_init(&f, 9, 4, 100, 4);
        int32_t p[3][4];
        for (int i = 0; i < 3; i++) {
            seq_prompt(p[i], 4, 40 + i);
            add(s, &f, i, p[i], 4, 14, SL_PRIO_INTERACTIVE, NULL, 0, 0);
        }
        const sl_sched_plan *pl;
        int first = -1, step = 0, recomputed = 0, served = 0;
        for (; step < 200 && sl_sched_has_work(s); step++) {
            int lens_before[3];
            for (int i = 0; i < 3; i++) lens_before[i] = f.reqs[i].n;
            fake_step(&f, s, step, &pl);
            if (pl->n_preempted && first < 0) {
                first = step;
                /* the newest (2) goes; the older two run */
                ASSERT_EQ(pl->n_preempted, 1);
                ASSERT_EQ(plan_index(pl, 2), -1);
                ASSERT(plan_index(pl, 0) >= 0 && plan_index(pl, 1) >= 0);
                sl_sched_stats st;
                sl_sched_get_stats(s, &st);
                ASSERT_EQ(st.n_waiting, 1);
                ASSERT_EQ(st.n_running, 2);
            }
            int k = plan_index(pl, 2);
            if (first >= 0 && k >= 0 && pl->batch.q_len[k] > 1) {
                /* recompute: prompt and generated tokens again, minus cached full blocks */
                int cached = pl->batch.ctx_len[k] - pl->batch.q_len[k];
                ASSERT_EQ(pl->batch.ctx_len[k], lens_before[2]);
                ASSERT(cached % 4 == 0 && cached <= (cache ? (lens_before[2] - 1) / 4 * 4 : 0));
                recomputed += pl->batch.q_len[k];
                served += cached;
                ASSERT_EQ(pl->batch.pos[pl->batch.q_start[k]], cached);
            }
        }
        ASSERT(first >= 0);
        ASSERT(recomputed > 0);
        printf("test_sched: preemption (cache %d): %d tokens recomputed, %d served from cache\n", cache, recomputed,
               served);
        ASSERT(!sl_sched_has_work(s));
        for (int i = 0; i < 3; i++) {
            ASSERT_EQ(f.reqs[i].finish, SL_FINISH_LENGTH);
            ASSERT_EQ(f.reqs[i].n, 18);
            for (int t = 4; t < 18; t++) ASSERT_EQ(f.reqs[i].tok[t], fake_next(f.reqs[i].tok, t, 100));
        }
        ASSERT_EQ(f.reqs[0].n_preemptions, 0);
        ASSERT(f.reqs[2].n_preemptions >= 1);
        assert_all_free(s);
        sl_sched_destroy(s);
        fake_deinit(&f);
    }

    /* Batch-class sequences are preempted before interactive ones, even newer ones. */
    sl_sched *s = mk(9, 4, 8, 64, 64, false);
    fake_model f;
    fake_init(&f, 9, 4, 100, 4);
    int32_t p[3][4];
    for (int i = 0; i < 3; i++) seq_prompt(p[i], 4, 50 + i);
    add(s, &f, 0, p[0], 4, 14, SL_PRIO_INTERACTIVE, NULL, 0, 0);
    add(s, &f, 1, p[1], 4, 14, SL_PRIO_BATCH, NULL, 0, 0);
    fake_step(&f, s, 0, NULL);
    add(s, &f, 2, p[2], 4, 14, SL_PRIO_INTERACTIVE, NULL, 0, 1);
    const sl_sched_plan *pl;
    int seen = 0;
    for (int step = 1; step < 200 && sl_sched_has_work(s); step++) {
        fake_step(&f, s, step, &pl);
        if (pl->n_preempted && !seen) {
            seen = 1;
            ASSERT_EQ(plan_index(pl, 1), -1);
            ASSERT(plan_index(pl, 2) >= 0);
        }
    }
    ASSERT(seen);
    ASSERT_EQ(f.reqs[0].n_preemptions, 0); /* the oldest interactive one never goes */
    ASSERT(f.reqs[1].n_preemptions >= 1);
    sl_sched_destroy(s);
    fake_deinit(&f);

    /* A preempted sequence whose blocks survive in the cache recomputes only what is not in
     * a full block. 6 usable blocks; A (4 + 9) needs 3, B (8 + 8) needs 4: B preempts itself
     * when it wants its 4th block, holding 3 full registered ones, and returns when A ends. */
    for (int cache = 0; cache < 2; cache++) {
        s = mk(7, 4, 8, 64, 64, cache);
        fake_init(&f, 7, 4, 100, 4);
        int32_t a[4], b[8];
        seq_prompt(a, 4, 55);
        seq_prompt(b, 8, 56);
        add(s, &f, 0, a, 4, 9, SL_PRIO_INTERACTIVE, NULL, 0, 0);
        add(s, &f, 1, b, 8, 8, SL_PRIO_INTERACTIVE, NULL, 0, 0);
        int resumed = 0;
        for (int step = 0; step < 100 && sl_sched_has_work(s); step++) {
            int before = f.reqs[1].n;
            fake_step(&f, s, step, &pl);
            int k = plan_index(pl, 1);
            if (f.reqs[1].n_preemptions && k >= 0 && !resumed) {
                resumed = 1;
                ASSERT_EQ(before, 13);
                ASSERT_EQ(pl->batch.ctx_len[k], 13);
                ASSERT_EQ(pl->batch.q_len[k], cache ? 1 : 13);
            }
        }
        ASSERT(resumed);
        ASSERT_EQ(f.reqs[1].finish, SL_FINISH_LENGTH);
        for (int t = 8; t < 16; t++) ASSERT_EQ(f.reqs[1].tok[t], fake_next(f.reqs[1].tok, t, 100));
        assert_all_free(s);
        sl_sched_destroy(s);
        fake_deinit(&f);
    }
}

static void test_prefix_reuse(void) {
    for (int cache = 0; cache < 2; cache++) {
        sl_sched *s = mk(64, 4, 8, 64, 64, cache);
        fake_model f;
        fake_init(&f, 64, 4, 100, 8);
        int32_t a[10], b[13];
        seq_prompt(a, 10, 60);
        add(s, &f, 0, a, 10, 3, SL_PRIO_INTERACTIVE, NULL, 0, 0);
        drain(s, &f, 100);
        ASSERT_EQ(f.reqs[0].n_cached, 0);
        /* B shares A's first 8 prompt tokens (2 blocks) */
        memcpy(b, a, 8 * sizeof *b);
        seq_prompt(b + 8, 5, 61);
        add(s, &f, 1, b, 13, 2, SL_PRIO_INTERACTIVE, NULL, 0, 10);
        const sl_sched_plan *pl;
        fake_step(&f, s, 10, &pl);
        ASSERT_EQ(pl->batch.q_len[0], cache ? 5 : 13);
        ASSERT_EQ(pl->batch.pos[0], cache ? 8 : 0);
        drain(s, &f, 100);
        ASSERT_EQ(f.reqs[1].n_cached, cache ? 8 : 0);
        /* C is exactly A's first 8 tokens: one token must be computed, so one block is served */
        add(s, &f, 2, a, 8, 2, SL_PRIO_INTERACTIVE, NULL, 0, 20);
        drain(s, &f, 100);
        ASSERT_EQ(f.reqs[2].n_cached, cache ? 4 : 0);
        /* D continues A's conversation: A's prompt, A's output, more. A computed 10 + 2
         * tokens (the last sampled one never is): 3 full blocks, generated ones included. */
        int32_t d[16];
        memcpy(d, f.reqs[0].tok, 13 * sizeof *d);
        seq_prompt(d + 13, 3, 62);
        add(s, &f, 3, d, 16, 2, SL_PRIO_INTERACTIVE, NULL, 0, 30);
        drain(s, &f, 100);
        ASSERT_EQ(f.reqs[3].n_cached, cache ? 12 : 0);
        sl_sched_stats st;
        sl_sched_get_stats(s, &st);
        ASSERT(st.prefix_queries == 10 + 13 + 8 + 16);
        ASSERT(st.prefix_hits == (cache ? 8u + 4 + 12 : 0u));
        /* two identical prompts admitted together: computed twice, then one copy kept */
        int32_t e[12];
        seq_prompt(e, 12, 63);
        add(s, &f, 4, e, 12, 1, SL_PRIO_INTERACTIVE, NULL, 0, 40);
        add(s, &f, 5, e, 12, 1, SL_PRIO_INTERACTIVE, NULL, 0, 40);
        fake_step(&f, s, 40, &pl);
        ASSERT_EQ(pl->batch.n_tokens, 24);
        ASSERT_EQ(f.reqs[4].tok[12], f.reqs[5].tok[12]);
        add(s, &f, 6, e, 12, 1, SL_PRIO_INTERACTIVE, NULL, 0, 41);
        drain(s, &f, 100);
        ASSERT_EQ(f.reqs[6].n_cached, cache ? 8 : 0);
        assert_all_free(s);
        sl_sched_destroy(s);
        fake_deinit(&f);
    }
}

static void test_stop(void) {
    sl_sched *s = mk(64, 4, 8, 64, 64, true);
    fake_model f;
    fake_init(&f, 64, 4, 100, 4);
    int32_t p[6];
    seq_prompt(p, 6, 70);
    add(s, &f, 0, p, 6, 12, SL_PRIO_INTERACTIVE, NULL, 0, 0);
    drain(s, &f, 100);
    ASSERT_EQ(f.reqs[0].n, 18);
    int32_t stop[2] = {-5, f.reqs[0].tok[6 + 4]};
    int first = 4;
    for (int i = 0; i < 4; i++)
        if (f.reqs[0].tok[6 + i] == stop[1]) first = i;
    add(s, &f, 1, p, 6, 12, SL_PRIO_INTERACTIVE, stop, 2, 0);
    drain(s, &f, 100);
    ASSERT_EQ(f.reqs[1].finish, SL_FINISH_STOP);
    ASSERT_EQ(f.reqs[1].n, 6 + first + 1); /* the stop token is the last event's token */
    ASSERT_EQ(f.reqs[1].tok[f.reqs[1].n - 1], stop[1]);
    assert_all_free(s);
    sl_sched_destroy(s);
    fake_deinit(&f);
}

static void test_abort(void) {
    sl_sched *s = mk(64, 4, 8, 8, 64, true);
    fake_model f;
    fake_init(&f, 64, 4, 100, 8);
    int32_t p[20];
    seq_prompt(p, 20, 80);
    add(s, &f, 0, p, 20, 5, SL_PRIO_INTERACTIVE, NULL, 0, 0); /* prefills in chunks of 8 */
    add(s, &f, 1, p, 6, 5, SL_PRIO_BATCH, NULL, 0, 0);        /* waits for budget */
    const sl_sched_plan *pl;
    fake_step(&f, s, 0, &pl);
    /* waiting */
    ASSERT_EQ(sl_sched_abort(s, 1), 0);
    ASSERT_EQ(sl_sched_abort(s, 1), SL_ENOTFOUND);
    ASSERT_EQ(sl_sched_abort(s, 99), SL_ENOTFOUND);
    /* running, mid-prefill */
    ASSERT_EQ(sl_sched_abort(s, 0), 0);
    int n = fake_step(&f, s, 1, &pl); /* delivers both abort events */
    ASSERT_EQ(n, 2);
    ASSERT_EQ(pl->batch.n_seqs, 0);
    ASSERT_EQ(f.reqs[0].finish, SL_FINISH_ABORT);
    ASSERT_EQ(f.reqs[1].finish, SL_FINISH_ABORT);
    assert_all_free(s);
    /* between step and update: the sampled token is dropped, the blocks are freed at once */
    add(s, &f, 2, p, 3, 5, SL_PRIO_INTERACTIVE, NULL, 0, 2);
    add(s, &f, 3, p, 4, 5, SL_PRIO_INTERACTIVE, NULL, 0, 2);
    pl = sl_sched_step(s, 2);
    ASSERT_EQ(pl->batch.n_logits, 2);
    ASSERT_EQ(sl_sched_abort(s, 2), 0);
    char err[SL_ERRMSG] = "";
    ASSERT_EQ(sl_sched_check(s, err), 0);
    int32_t sampled[2];
    fake_forward(&f, pl, sampled);
    const sl_sched_event *ev;
    n = sl_sched_update(s, pl, sampled, 2, &ev);
    ASSERT_EQ(n, 2);
    ASSERT(ev[0].id == 2 && ev[0].finish == SL_FINISH_ABORT);
    ASSERT(ev[1].id == 3 && ev[1].finish == SL_FINISH_NONE && ev[1].token == sampled[1]);
    fake_apply(&f, ev, n);
    ASSERT_EQ(sl_sched_check(s, err), 0);
    drain(s, &f, 100);
    ASSERT_EQ(sl_sched_abort(s, 3), SL_ENOTFOUND); /* finished */
    assert_all_free(s);
    /* abort while other requests are live, then destroy with live requests (no leak) */
    add(s, &f, 4, p, 20, 5, SL_PRIO_INTERACTIVE, NULL, 0, 3);
    add(s, &f, 5, p, 20, 5, SL_PRIO_BATCH, NULL, 0, 3);
    fake_step(&f, s, 3, NULL);
    pl = sl_sched_step(s, 4);
    ASSERT_EQ(sl_sched_abort(s, 4), 0);
    sl_sched_destroy(s); /* mid-step, one aborted in the plan, one live */
    fake_deinit(&f);
}

static void test_refused(void) {
    sl_sched *s = mk(9, 4, 8, 64, 40, true); /* 8 blocks = 32 token slots; max_model_len 40 */
    int32_t p[40] = {0};
    char err[SL_ERRMSG] = "";
    sl_sched_req r = {.id = 1, .prompt = p, .n_prompt = 29, .max_tokens = 12};
    ASSERT_EQ(sl_sched_add(s, &r, 0, err), SL_ERANGE);
    ASSERT_STR_CONTAINS(err, "maximum context length 40");
    r.max_tokens = 4; /* 33 tokens: 32 in the KV, fits exactly */
    ASSERT_EQ(sl_sched_add(s, &r, 0, err), 0);
    r.id = 2;
    r.max_tokens = 5; /* 34 tokens: 33 in the KV, 9 blocks */
    ASSERT_EQ(sl_sched_add(s, &r, 0, err), SL_ENOMEM);
    ASSERT_STR_CONTAINS(err, "whole pool has 8");
    r.id = 1;
    r.max_tokens = 1;
    ASSERT_EQ(sl_sched_add(s, &r, 0, err), SL_EINVAL); /* duplicate id */
    ASSERT_STR_CONTAINS(err, "already in use");
    r.id = 3;
    r.n_prompt = 0;
    ASSERT_EQ(sl_sched_add(s, &r, 0, err), SL_EINVAL);
    r.n_prompt = 2;
    r.max_tokens = 0;
    ASSERT_EQ(sl_sched_add(s, &r, 0, err), SL_EINVAL);
    r.max_tokens = 1;
    r.prio = (sl_prio)7;
    ASSERT_EQ(sl_sched_add(s, &r, 0, err), SL_EINVAL);
    r.prio = SL_PRIO_BATCH;
    p[1] = -3;
    ASSERT_EQ(sl_sched_add(s, &r, 0, err), SL_EINVAL);
    sl_sched_destroy(s);
    sl_sched_config c;
    sl_sched_config_defaults(&c);
    sl_sched *x;
    ASSERT_EQ(sl_sched_create(&x, &c, err), SL_EINVAL); /* n_blocks unset */
    ASSERT_STR_CONTAINS(err, "n_blocks");
    /* the request that fits exactly runs to the end */
    s = mk(9, 4, 8, 64, 40, true);
    fake_model f;
    fake_init(&f, 9, 4, 100, 2);
    p[1] = 5;
    add(s, &f, 1, p, 30, 3, SL_PRIO_INTERACTIVE, NULL, 0, 0);
    drain(s, &f, 100);
    ASSERT_EQ(f.reqs[1].finish, SL_FINISH_LENGTH);
    sl_sched_destroy(s);
    fake_deinit(&f);
}

/* The same prompts under four regimes give the same outputs. */
enum { NP = 12 };
static void run_regime(int n_blocks, int budget, bool cache, bool staggered, int warm, int32_t out[NP][32],
                       uint64_t *preempt, uint64_t *hits) {
    sl_sched *s = mk(n_blocks, 4, 6, budget, 64, cache);
    memset(out, 0, NP * sizeof out[0]);
    fake_model f;
    fake_init(&f, n_blocks, 4, 50, 2 * NP);
    int32_t p[NP][24];
    int plen[NP];
    sl_rng rng;
    sl_rng_seed(&rng, 5);
    for (int i = 0; i < NP; i++) {
        plen[i] = 5 + (int)(sl_rng_u64(&rng) % 18);
        seq_prompt(p[i], plen[i], i % 4); /* prompts of the same seed share prefixes */
        p[i][plen[i] - 1] += i;
    }
    for (int round = 0; round <= warm; round++) {
        int next = 0, step = 0;
        uint64_t base = (uint64_t)round * NP;
        while (next < NP || sl_sched_has_work(s)) {
            ASSERT(step < 10000);
            if (!staggered)
                for (; next < NP; next++) add(s, &f, base + next, p[next], plen[next], 8, SL_PRIO_INTERACTIVE, NULL, 0, step);
            else if (next < NP && sl_rng_u64(&rng) % 3 == 0) {
                add(s, &f, base + next, p[next], plen[next], 8, next % 3 ? SL_PRIO_INTERACTIVE : SL_PRIO_BATCH, NULL, 0,
                    step);
                next++;
            }
            fake_step(&f, s, step++, NULL);
        }
        for (int i = 0; i < NP; i++) memcpy(out[i], f.reqs[base + i].tok + plen[i], 8 * sizeof(int32_t));
    }
    sl_sched_stats st;
    sl_sched_get_stats(s, &st);
    *preempt = st.n_preemptions;
    *hits = st.prefix_hits;
    assert_all_free(s);
    sl_sched_destroy(s);
    fake_deinit(&f);
}

static void test_invariance(void) {
    int32_t ref[NP][32], out[NP][32];
    uint64_t pre, hits;
    run_regime(200, 256, false, false, 0, ref, &pre, &hits); /* all at once, big pool, no cache */
    ASSERT_EQ(pre, 0);
    run_regime(200, 7, true, true, 0, out, &pre, &hits); /* random arrivals, small chunks */
    ASSERT(!memcmp(out, ref, sizeof ref));
    run_regime(10, 16, false, true, 0, out, &pre, &hits); /* tiny pool */
    ASSERT(pre > 0);
    ASSERT(!memcmp(out, ref, sizeof ref));
    run_regime(12, 16, true, true, 0, out, &pre, &hits); /* tiny pool with the cache */
    ASSERT(pre > 0);
    ASSERT(!memcmp(out, ref, sizeof ref));
    run_regime(200, 32, true, false, 1, out, &pre, &hits); /* second round served from cache */
    ASSERT(hits > 0);
    ASSERT(!memcmp(out, ref, sizeof ref));
}

int main(void) {
    test_chunked_prefill();
    test_decodes_first();
    test_max_num_seqs();
    test_priorities();
    test_preemption();
    test_prefix_reuse();
    test_stop();
    test_abort();
    test_refused();
    test_invariance();
    printf("test_sched: ok\n");
    return 0;
}
