/* fake_model.h — a stand-in model for scheduler tests (header-only, test code).
 *
 * Like a real model's KV, what it stores at a position depends on the whole prefix: slot
 * value = mix(value at the previous position, read through the block table; this token),
 * with the position alongside. A forward step checks that the plan is a well-formed ragged
 * batch, writes every planned token, then for every logit row reads the sequence's whole
 * context back through its block table and checks each value against the request's true
 * tokens (prompt + generated so far). The next token is the last value modulo the
 * vocabulary. So outputs depend only on a request's own tokens — the same whether it runs
 * alone, batched, preempted or served from the prefix cache — and any block-table, slot,
 * sharing or wrong-prefix mistake fails loudly.
 */
#ifndef SL_TEST_FAKE_MODEL_H
#define SL_TEST_FAKE_MODEL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/sched.h"
#include "tests/test.h"

typedef struct fake_req {
    uint64_t id;
    int32_t *tok;      /* prompt then generated, [cap] */
    int n_prompt, n, cap;
    sl_finish finish;  /* SL_FINISH_NONE while live */
    int n_cached, n_preemptions;
    bool submitted;
} fake_req;

typedef struct fake_model {
    int n_blocks, bs, vocab;
    uint64_t *kv_val;         /* [n_blocks * bs] prefix-dependent value */
    int32_t *kv_pos;          /* [n_blocks * bs] position written there; -1 never written */
    fake_req *reqs;           /* indexed by request id */
    int n_reqs;
} fake_model;

static inline void fake_init(fake_model *f, int n_blocks, int bs, int vocab, int n_reqs) {
    f->n_blocks = n_blocks;
    f->bs = bs;
    f->vocab = vocab;
    f->kv_val = calloc((size_t)n_blocks * bs, sizeof(uint64_t));
    f->kv_pos = malloc((size_t)n_blocks * bs * sizeof(int32_t));
    memset(f->kv_pos, 0xff, (size_t)n_blocks * bs * sizeof(int32_t));
    f->reqs = calloc((size_t)n_reqs, sizeof *f->reqs);
    f->n_reqs = n_reqs;
}

static inline void fake_deinit(fake_model *f) {
    for (int i = 0; i < f->n_reqs; i++) free(f->reqs[i].tok);
    free(f->reqs);
    free(f->kv_val);
    free(f->kv_pos);
}

/* Registers request id with its prompt; room for max_tokens more. */
static inline fake_req *fake_req_set(fake_model *f, uint64_t id, const int32_t *prompt, int n, int max_tokens) {
    ASSERT(id < (uint64_t)f->n_reqs);
    fake_req *r = &f->reqs[id];
    free(r->tok);
    memset(r, 0, sizeof *r);
    r->id = id;
    r->cap = n + max_tokens;
    r->tok = malloc((size_t)r->cap * sizeof(int32_t));
    memcpy(r->tok, prompt, (size_t)n * sizeof(int32_t));
    r->n_prompt = r->n = n;
    return r;
}

static inline uint64_t fake_mix(uint64_t prev, int32_t tok) {
    uint64_t h = (prev ^ (uint64_t)(uint32_t)tok) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}
#define FAKE_SEED 0xcbf29ce484222325ull

/* The next token after a context: the same function fake_forward applies, from the truth. */
static inline int32_t fake_next(const int32_t *tok, int n, int vocab) {
    uint64_t h = FAKE_SEED;
    for (int i = 0; i < n; i++) h = fake_mix(h, tok[i]);
    return (int32_t)(h % (uint64_t)vocab);
}

/* Runs the plan; writes one sampled token per logit row. */
static inline void fake_forward(fake_model *f, const sl_sched_plan *p, int32_t *sampled) {
    const sl_batch *b = &p->batch;
    const int bs = f->bs;
    int T = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        ASSERT_EQ(b->q_start[s], T);
        ASSERT(b->q_len[s] >= 1 && b->q_len[s] <= b->ctx_len[s]);
        ASSERT(b->ctx_len[s] <= b->max_blocks * bs);
        fake_req *r = &f->reqs[p->seq_ids[s]];
        ASSERT(b->ctx_len[s] <= r->n);
        for (int s2 = 0; s2 < s; s2++) ASSERT(p->seq_ids[s2] != p->seq_ids[s]);
        const int32_t *bt = b->block_tables + (size_t)s * b->max_blocks;
        for (int i = 0; i < b->q_len[s]; i++, T++) {
            int32_t pos = b->ctx_len[s] - b->q_len[s] + i;
            ASSERT_EQ(b->pos[T], pos);
            ASSERT_EQ(b->tokens[T], r->tok[pos]);
            ASSERT(bt[pos / bs] >= 1 && bt[pos / bs] < f->n_blocks);
            ASSERT_EQ(b->slot_mapping[T], bt[pos / bs] * bs + pos % bs);
        }
    }
    ASSERT_EQ(T, b->n_tokens);
    /* writes, each from the value at the previous position as the table gives it */
    for (int s = 0; s < b->n_seqs; s++) {
        const int32_t *bt = b->block_tables + (size_t)s * b->max_blocks;
        for (int t = b->q_start[s]; t < b->q_start[s] + b->q_len[s]; t++) {
            int32_t pos = b->pos[t];
            uint64_t prev = FAKE_SEED;
            if (pos > 0) {
                int32_t ps = bt[(pos - 1) / bs] * bs + (pos - 1) % bs;
                ASSERT_EQ(f->kv_pos[ps], pos - 1);
                prev = f->kv_val[ps];
            }
            f->kv_val[b->slot_mapping[t]] = fake_mix(prev, b->tokens[t]);
            f->kv_pos[b->slot_mapping[t]] = pos;
        }
    }
    for (int l = 0; l < b->n_logits; l++) {
        int t = b->logit_idx[l], s = 0;
        while (s + 1 < b->n_seqs && b->q_start[s + 1] <= t) s++;
        ASSERT_EQ(t, b->q_start[s] + b->q_len[s] - 1); /* logits only at a sequence's last token */
        ASSERT(p->logit_ids[l] == p->seq_ids[s]);
        fake_req *r = &f->reqs[p->seq_ids[s]];
        ASSERT_EQ(b->ctx_len[s], r->n); /* sampling needs the whole sequence */
        const int32_t *bt = b->block_tables + (size_t)s * b->max_blocks;
        uint64_t h = FAKE_SEED;
        for (int q = 0; q < b->ctx_len[s]; q++) {
            int32_t slot = bt[q / bs] * bs + q % bs;
            h = fake_mix(h, r->tok[q]);
            if (f->kv_pos[slot] != q || f->kv_val[slot] != h)
                fprintf(stderr, "request %llu position %d: KV slot %d holds position %d and a value of another prefix\n",
                        (unsigned long long)r->id, q, slot, f->kv_pos[slot]);
            ASSERT_EQ(f->kv_pos[slot], q);
            ASSERT(f->kv_val[slot] == h);
        }
        sampled[l] = (int32_t)(h % (uint64_t)f->vocab);
    }
}

/* Applies events to the requests' records. */
static inline void fake_apply(fake_model *f, const sl_sched_event *ev, int n) {
    for (int i = 0; i < n; i++) {
        fake_req *r = &f->reqs[ev[i].id];
        ASSERT_EQ(r->finish, SL_FINISH_NONE);
        if (ev[i].finish != SL_FINISH_ABORT) {
            ASSERT(r->n < r->cap);
            r->tok[r->n++] = ev[i].token;
            ASSERT_EQ(ev[i].n_generated, r->n - r->n_prompt);
        } else {
            ASSERT_EQ(ev[i].token, -1);
        }
        r->finish = ev[i].finish;
        r->n_cached = ev[i].n_cached_tokens;
        r->n_preemptions = ev[i].n_preemptions;
    }
}

/* One full step: plan, fake forward, update, apply, check. Returns the number of events. */
static inline int fake_step(fake_model *f, sl_sched *s, double now, const sl_sched_plan **plan_out) {
    const sl_sched_plan *p = sl_sched_step(s, now);
    int32_t *sampled = malloc(((size_t)p->batch.n_logits + 1) * sizeof *sampled);
    fake_forward(f, p, sampled);
    const sl_sched_event *ev;
    int n = sl_sched_update(s, p, sampled, now, &ev);
    fake_apply(f, ev, n);
    free(sampled);
    char err[SL_ERRMSG] = "";
    int rc = sl_sched_check(s, err);
    if (rc) fprintf(stderr, "scheduler invariant: %s\n", err);
    ASSERT_EQ(rc, 0);
    if (plan_out) *plan_out = p;
    return n;
}

#endif
