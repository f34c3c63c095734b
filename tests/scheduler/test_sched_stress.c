/* Randomized stress: thousands of submits, aborts (in every state, also between step and
 * update) and arrivals against the fake model, over random configurations (block size,
 * pool size, budgets, sequence caps, prefix cache on and off). After every step the full
 * invariant check runs (fake_step); the fake model checks every context it reads. At the end
 * every request has finished correctly and every block is free or cached-unreferenced. */
#include "fake_model.h"

enum { V = 40, MAX_LEN = 64, N_PREFIX = 4 };

typedef struct meta {
    int max_tokens;
    int32_t stop[2];
    int n_stop;
} meta;

int main(void) {
    sl_rng rng;
    sl_rng_seed(&rng, 20240611);
    uint64_t tot_req = 0, tot_abort = 0, tot_refused = 0, tot_steps = 0, tot_preempt = 0, tot_hits = 0;
    int32_t prefix[N_PREFIX][MAX_LEN];
    for (int k = 0; k < N_PREFIX; k++)
        for (int i = 0; i < MAX_LEN; i++) prefix[k][i] = (int32_t)(sl_rng_u64(&rng) % V);
    for (int round = 0; round < 40; round++) {
        static const int bss[] = {1, 2, 4, 16};
        sl_sched_config c;
        sl_sched_config_defaults(&c);
        c.block_size = bss[sl_rng_u64(&rng) % 4];
        c.n_blocks = 2 + (int)(sl_rng_u64(&rng) % (unsigned)(320 / c.block_size + 4));
        c.max_num_seqs = 1 + (int)(sl_rng_u64(&rng) % 16);
        c.max_num_batched_tokens = 1 + (int)(sl_rng_u64(&rng) % 64);
        c.max_model_len = MAX_LEN;
        c.prefix_cache = sl_rng_u64(&rng) % 4 != 0;
        sl_sched *s;
        char err[SL_ERRMSG] = "";
        ASSERT_EQ(sl_sched_create(&s, &c, err), 0);
        const int N = 400;
        fake_model f;
        fake_init(&f, c.n_blocks, c.block_size, V, N);
        meta *m = calloc(N, sizeof *m);
        uint64_t *live = malloc(N * sizeof *live);
        int n_live = 0, next = 0, step = 0;
        while (next < N || sl_sched_has_work(s)) {
            ASSERT(step < 200000);
            /* arrivals: bursts and gaps */
            int arrivals = next < N ? (int)(sl_rng_u64(&rng) % 4) - 1 : 0;
            for (int a = 0; a < arrivals && next < N; a++, next++) {
                int32_t p[MAX_LEN];
                int n = 1 + (int)(sl_rng_u64(&rng) % 48);
                int shared = (int)(sl_rng_u64(&rng) % (unsigned)(n + 1));
                memcpy(p, prefix[sl_rng_u64(&rng) % N_PREFIX], (size_t)shared * sizeof *p);
                for (int i = shared; i < n; i++) p[i] = (int32_t)(sl_rng_u64(&rng) % V);
                meta *mm = &m[next];
                mm->max_tokens = 1 + (int)(sl_rng_u64(&rng) % 24);
                mm->n_stop = (int)(sl_rng_u64(&rng) % 3);
                for (int i = 0; i < mm->n_stop; i++) mm->stop[i] = (int32_t)(sl_rng_u64(&rng) % V);
                fake_req_set(&f, (uint64_t)next, p, n, mm->max_tokens);
                sl_sched_req r = {.id = (uint64_t)next, .prompt = p, .n_prompt = n, .max_tokens = mm->max_tokens,
                                  .prio = sl_rng_u64(&rng) % 3 ? SL_PRIO_INTERACTIVE : SL_PRIO_BATCH,
                                  .stop_ids = mm->stop, .n_stop_ids = mm->n_stop};
                int rc = sl_sched_add(s, &r, step, err);
                int kv = n + mm->max_tokens - 1;
                int want = n + mm->max_tokens > MAX_LEN                                      ? SL_ERANGE
                           : (kv + c.block_size - 1) / c.block_size > c.n_blocks - 1 ? SL_ENOMEM
                                                                                       : SL_OK;
                ASSERT_EQ(rc, want);
                tot_req++;
                if (rc) {
                    f.reqs[next].finish = SL_FINISH_ABORT; /* refused: never live */
                    tot_refused++;
                    continue;
                }
                live[n_live++] = (uint64_t)next;
            }
            /* aborts: before the step, or between step and update */
            if (n_live && sl_rng_u64(&rng) % 48 == 0) {
                int k = (int)(sl_rng_u64(&rng) % (unsigned)n_live);
                if (f.reqs[live[k]].finish == SL_FINISH_NONE) {
                    ASSERT_EQ(sl_sched_abort(s, live[k]), 0);
                    tot_abort++;
                }
            }
            if (sl_rng_u64(&rng) % 8 == 0) {
                const sl_sched_plan *p = sl_sched_step(s, step);
                if (p->batch.n_seqs && sl_rng_u64(&rng) % 6 == 0) {
                    ASSERT_EQ(sl_sched_abort(s, p->seq_ids[sl_rng_u64(&rng) % (unsigned)p->batch.n_seqs]), 0);
                    tot_abort++;
                    ASSERT_EQ(sl_sched_check(s, err), 0);
                }
                int32_t *sampled = malloc(((size_t)p->batch.n_logits + 1) * sizeof *sampled);
                fake_forward(&f, p, sampled);
                const sl_sched_event *ev;
                int n = sl_sched_update(s, p, sampled, step, &ev);
                fake_apply(&f, ev, n);
                free(sampled);
                int rc = sl_sched_check(s, err);
                if (rc) fprintf(stderr, "invariant: %s\n", err);
                ASSERT_EQ(rc, 0);
            } else {
                fake_step(&f, s, step, NULL);
            }
            step++;
            /* forget finished requests */
            for (int k = 0; k < n_live;)
                if (f.reqs[live[k]].finish != SL_FINISH_NONE) live[k] = live[--n_live];
                else k++;
        }
        /* every request ended, correctly */
        for (int i = 0; i < N; i++) {
            fake_req *r = &f.reqs[i];
            int gen = r->n - r->n_prompt;
            ASSERT(r->finish != SL_FINISH_NONE);
            for (int t = r->n_prompt; t < r->n; t++) {
                ASSERT_EQ(r->tok[t], fake_next(r->tok, t, V));
                bool stop = false;
                for (int k = 0; k < m[i].n_stop; k++) stop |= r->tok[t] == m[i].stop[k];
                ASSERT_EQ(stop, r->finish == SL_FINISH_STOP && t == r->n - 1);
            }
            if (r->finish == SL_FINISH_LENGTH) ASSERT_EQ(gen, m[i].max_tokens);
            if (r->finish != SL_FINISH_ABORT) ASSERT(gen >= 1 && gen <= m[i].max_tokens);
        }
        sl_sched_stats st;
        sl_sched_get_stats(s, &st);
        ASSERT_EQ(st.n_running + st.n_waiting, 0);
        ASSERT_EQ(st.n_blocks_free + st.n_blocks_cached, st.n_blocks);
        if (!c.prefix_cache) ASSERT_EQ(st.n_blocks_cached, 0);
        tot_steps += (uint64_t)step;
        tot_preempt += st.n_preemptions;
        tot_hits += st.prefix_hits;
        sl_sched_destroy(s);
        fake_deinit(&f);
        free(m);
        free(live);
    }
    printf("test_sched_stress: %llu requests (%llu refused, %llu aborted), %llu steps, %llu preemptions, "
           "%llu prompt tokens from cache: ok\n",
           (unsigned long long)tot_req, (unsigned long long)tot_refused, (unsigned long long)tot_abort,
           (unsigned long long)tot_steps, (unsigned long long)tot_preempt, (unsigned long long)tot_hits);
    ASSERT(tot_preempt > 0 && tot_hits > 0 && tot_abort > 0);
    return 0;
}
