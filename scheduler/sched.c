/* sched.c — the continuous-batching scheduler; see sched.h for the contract. */
#include "sched.h"

#include <stdlib.h>
#include <string.h>

#include "../base/idmap.h"
#include "block.h"

enum { S_WAITING = 0, S_RUNNING };

typedef struct seq {
    uint64_t id;
    void *user;
    sl_prio prio;
    int state;
    int32_t *tokens;        /* [n_prompt + max_tokens]: prompt, then generated tokens */
    int32_t *stop;          /* [n_stop] */
    int n_tokens, n_prompt, max_tokens, n_stop;
    int n_computed;         /* tokens whose KV is in the cache */
    sl_block_table bt;
    int n_cached_tokens, n_preemptions;
    bool admitted;          /* admitted at least once (n_cached_tokens is final) */
    bool aborted;           /* aborted while in the plan in flight; freed by the update */
    int plan_new;           /* tokens planned this step; 0 when not in the plan */
    int logit_row;          /* plan logit row, -1 when none */
    double t_arrival, t_first_sched, t_first_token;
    struct seq *prev, *next; /* queue links */
    sl_idmap_node hnode;     /* in the id map (its id: the request's) */
} seq;

typedef struct queue {
    seq *head, *tail;
    int n;
} queue;

struct sl_sched {
    sl_sched_config c;
    sl_block_mgr *bm;
    int max_blocks;          /* per sequence: ceil(max_model_len / block_size) */
    queue waiting[SL_PRIO_COUNT], running;
    sl_idmap map;            /* id -> live sequence */
    int n_live;
    bool in_flight;          /* between sl_sched_step and sl_sched_update */
    int budget;
    /* the plan and its arrays */
    sl_sched_plan plan;
    seq **snap;              /* [max_num_seqs] running sequences at the start of a step */
    seq **planned;           /* [max_num_seqs] in batch order */
    int n_planned;
    int32_t *tokens, *pos, *slots;          /* [max_num_batched_tokens] */
    int32_t *q_start, *q_len, *ctx_len;     /* [max_num_seqs] */
    int32_t *logit_idx;                     /* [max_num_seqs] */
    int32_t *block_tables;                  /* [max_num_seqs][max_blocks] */
    uint64_t *seq_ids, *logit_ids;          /* [max_num_seqs] */
    void **logit_user;                      /* [max_num_seqs] */
    /* events: ev is what the last update returned; aborts collect in ab until the next one */
    sl_sched_event *ev, *ab;
    int n_ev, cap_ev, n_ab, cap_ab;
    uint64_t n_preemptions, prefix_queries, prefix_hits, n_steps;
};

const char *sl_finish_name(sl_finish f) {
    switch (f) {
    case SL_FINISH_STOP: return "stop";
    case SL_FINISH_LENGTH: return "length";
    case SL_FINISH_ABORT: return "abort";
    case SL_FINISH_ERROR: return "error";
    default: return "";
    }
}

void sl_sched_config_defaults(sl_sched_config *c) {
    *c = (sl_sched_config){.n_blocks = 0, .block_size = 16, .max_num_seqs = 256, .max_num_batched_tokens = 2048,
                           .max_model_len = 4096, .prefix_cache = true};
}

/* ---- queues --------------------------------------------------------------------------- */
static void q_push_back(queue *q, seq *x) {
    x->next = NULL;
    x->prev = q->tail;
    if (q->tail) q->tail->next = x;
    else q->head = x;
    q->tail = x;
    q->n++;
}

static void q_push_front(queue *q, seq *x) {
    x->prev = NULL;
    x->next = q->head;
    if (q->head) q->head->prev = x;
    else q->tail = x;
    q->head = x;
    q->n++;
}

static void q_remove(queue *q, seq *x) {
    if (x->prev) x->prev->next = x->next;
    else q->head = x->next;
    if (x->next) x->next->prev = x->prev;
    else q->tail = x->prev;
    x->prev = x->next = NULL;
    q->n--;
}

static queue *queue_of(sl_sched *s, seq *x) { return x->state == S_RUNNING ? &s->running : &s->waiting[x->prio]; }

/* ---- id map --------------------------------------------------------------------------- */
static seq *map_find(const sl_sched *s, uint64_t id) {
    sl_idmap_node *n = sl_idmap_find(&s->map, id);
    return n ? SL_IDMAP_ENTRY(n, seq, hnode) : NULL;
}

static void map_insert(sl_sched *s, seq *x) {
    x->hnode.id = x->id;
    sl_idmap_insert(&s->map, &x->hnode);
    s->n_live++;
}

static void map_remove(sl_sched *s, seq *x) {
    sl_idmap_remove(&s->map, &x->hnode);
    s->n_live--;
}

static void count_node(sl_idmap_node *n, void *ctx) {
    (void)n;
    ++*(int *)ctx;
}

/* ---- lifecycle ------------------------------------------------------------------------ */
int sl_sched_create(sl_sched **out, const sl_sched_config *c, char err[SL_ERRMSG]) {
    *out = NULL;
    if (c->n_blocks < 2 || c->block_size < 1 || c->block_size > 4096 || c->max_num_seqs < 1 ||
        c->max_num_batched_tokens < 1 || c->max_model_len < 2)
        return sl_fail(err, SL_EINVAL,
                       "scheduler: need n_blocks >= 2, 1 <= block_size <= 4096, max_num_seqs >= 1, "
                       "max_num_batched_tokens >= 1, max_model_len >= 2 (got %d, %d, %d, %d, %d)",
                       c->n_blocks, c->block_size, c->max_num_seqs, c->max_num_batched_tokens, c->max_model_len);
    sl_sched *s = sl_xcalloc(1, sizeof *s);
    s->c = *c;
    sl_block_opts bo = {.n_blocks = c->n_blocks, .block_size = c->block_size, .prefix_cache = c->prefix_cache};
    int rc = sl_block_mgr_create(&s->bm, &bo);
    if (rc) {
        sl_fail(err, rc, "scheduler: cannot create a block manager of %d blocks", c->n_blocks);
        goto fail;
    }
    s->max_blocks = (c->max_model_len + c->block_size - 1) / c->block_size;
    sl_idmap_init(&s->map);
    size_t S = (size_t)c->max_num_seqs, T = (size_t)c->max_num_batched_tokens;
    s->snap = sl_xmalloc(S * sizeof *s->snap);
    s->planned = sl_xmalloc(S * sizeof *s->planned);
    s->tokens = sl_xmalloc(T * sizeof *s->tokens);
    s->pos = sl_xmalloc(T * sizeof *s->pos);
    s->slots = sl_xmalloc(T * sizeof *s->slots);
    s->q_start = sl_xmalloc(S * sizeof *s->q_start);
    s->q_len = sl_xmalloc(S * sizeof *s->q_len);
    s->ctx_len = sl_xmalloc(S * sizeof *s->ctx_len);
    s->logit_idx = sl_xmalloc(S * sizeof *s->logit_idx);
    s->block_tables = sl_xmalloc(S * (size_t)s->max_blocks * sizeof *s->block_tables);
    s->seq_ids = sl_xmalloc(S * sizeof *s->seq_ids);
    s->logit_ids = sl_xmalloc(S * sizeof *s->logit_ids);
    s->logit_user = sl_xmalloc(S * sizeof *s->logit_user);
    s->cap_ev = c->max_num_seqs + 16;
    s->ev = sl_xmalloc((size_t)s->cap_ev * sizeof *s->ev);
    s->cap_ab = 16;
    s->ab = sl_xmalloc((size_t)s->cap_ab * sizeof *s->ab);
    *out = s;
    return SL_OK;
fail:
    free(s);
    return rc;
}

static void seq_free(sl_sched *s, seq *x) {
    sl_block_release(s->bm, &x->bt);
    sl_block_table_deinit(&x->bt);
    free(x->tokens);
    free(x);
}

void sl_sched_destroy(sl_sched *s) {
    if (!s) return;
    if (s->in_flight) /* sequences aborted mid-step are off every queue */
        for (int i = 0; i < s->n_planned; i++)
            if (s->planned[i]->aborted) seq_free(s, s->planned[i]);
    for (int k = 0; k < SL_PRIO_COUNT; k++)
        while (s->waiting[k].head) {
            seq *x = s->waiting[k].head;
            q_remove(&s->waiting[k], x);
            seq_free(s, x);
        }
    while (s->running.head) {
        seq *x = s->running.head;
        q_remove(&s->running, x);
        seq_free(s, x);
    }
    sl_block_mgr_destroy(s->bm);
    sl_idmap_free(&s->map);
    free(s->snap);
    free(s->planned);
    free(s->tokens);
    free(s->pos);
    free(s->slots);
    free(s->q_start);
    free(s->q_len);
    free(s->ctx_len);
    free(s->logit_idx);
    free(s->block_tables);
    free(s->seq_ids);
    free(s->logit_ids);
    free(s->logit_user);
    free(s->ev);
    free(s->ab);
    free(s);
}

/* ---- requests ------------------------------------------------------------------------- */
int sl_sched_add(sl_sched *s, const sl_sched_req *r, double now, char err[SL_ERRMSG]) {
    if (!r || r->n_prompt < 1 || !r->prompt) return sl_fail(err, SL_EINVAL, "request: the prompt is empty");
    if (r->max_tokens < 1) return sl_fail(err, SL_EINVAL, "request: max_tokens must be at least 1, got %d", r->max_tokens);
    if ((unsigned)r->prio >= SL_PRIO_COUNT) return sl_fail(err, SL_EINVAL, "request: unknown priority class %d", (int)r->prio);
    if (r->n_stop_ids < 0 || (r->n_stop_ids && !r->stop_ids)) return sl_fail(err, SL_EINVAL, "request: bad stop token ids");
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0) return sl_fail(err, SL_EINVAL, "request: prompt token %d is negative", i);
    long long total = (long long)r->n_prompt + r->max_tokens;
    if (total > s->c.max_model_len)
        return sl_fail(err, SL_ERANGE,
                       "request: prompt (%d tokens) + max_tokens (%d) = %lld exceeds the maximum context length %d",
                       r->n_prompt, r->max_tokens, total, s->c.max_model_len);
    /* the last sampled token is never computed, so the KV holds at most total - 1 tokens */
    long long need = (total - 1 + s->c.block_size - 1) / s->c.block_size;
    if (need > s->c.n_blocks - 1)
        return sl_fail(err, SL_ENOMEM, "request: needs %lld KV blocks of %d tokens, the whole pool has %d", need,
                       s->c.block_size, s->c.n_blocks - 1);
    if (map_find(s, r->id)) return sl_fail(err, SL_EINVAL, "request: id %llu is already in use", (unsigned long long)r->id);

    seq *x = sl_xcalloc(1, sizeof *x);
    x->id = r->id;
    x->user = r->user;
    x->prio = r->prio;
    x->state = S_WAITING;
    x->tokens = sl_xmalloc(((size_t)total + (size_t)r->n_stop_ids) * sizeof *x->tokens);
    x->stop = x->tokens + total;
    memcpy(x->tokens, r->prompt, (size_t)r->n_prompt * sizeof *x->tokens);
    if (r->n_stop_ids) memcpy(x->stop, r->stop_ids, (size_t)r->n_stop_ids * sizeof *x->stop);
    x->n_tokens = x->n_prompt = r->n_prompt;
    x->max_tokens = r->max_tokens;
    x->n_stop = r->n_stop_ids;
    sl_block_table_init(&x->bt, (int)need);
    x->logit_row = -1;
    x->t_arrival = now;
    x->t_first_sched = x->t_first_token = -1;
    map_insert(s, x);
    q_push_back(&s->waiting[x->prio], x);
    return SL_OK;
}

static void fill_event(sl_sched_event *e, const seq *x, int32_t token, int row, sl_finish f) {
    *e = (sl_sched_event){.id = x->id, .user = x->user, .token = token, .logit_row = row, .finish = f,
                          .n_prompt = x->n_prompt, .n_generated = x->n_tokens - x->n_prompt,
                          .n_cached_tokens = x->n_cached_tokens, .n_preemptions = x->n_preemptions,
                          .t_arrival = x->t_arrival, .t_first_scheduled = x->t_first_sched,
                          .t_first_token = x->t_first_token};
}

static int end_request(sl_sched *s, uint64_t id, bool event) {
    seq *x = map_find(s, id);
    if (!x) return SL_ENOTFOUND;
    if (event) {
        if (s->n_ab == s->cap_ab) {
            s->cap_ab *= 2;
            s->ab = realloc(s->ab, (size_t)s->cap_ab * sizeof *s->ab);
            SL_CHECK(s->ab);
        }
        fill_event(&s->ab[s->n_ab++], x, -1, -1, SL_FINISH_ABORT);
    }
    map_remove(s, x);
    q_remove(queue_of(s, x), x);
    if (s->in_flight && x->plan_new) {
        /* the plan still names it: its blocks go now, the struct at the update */
        sl_block_release(s->bm, &x->bt);
        x->aborted = true;
    } else {
        seq_free(s, x);
    }
    return SL_OK;
}

int sl_sched_abort(sl_sched *s, uint64_t id) { return end_request(s, id, true); }
int sl_sched_finish(sl_sched *s, uint64_t id) { return end_request(s, id, false); }

/* ---- planning ------------------------------------------------------------------------- */
static void preempt(sl_sched *s, seq *v) {
    if (v->plan_new) { /* planned earlier in this step: take it out of the plan */
        int i = 0;
        while (s->planned[i] != v) i++;
        memmove(s->planned + i, s->planned + i + 1, (size_t)(s->n_planned - i - 1) * sizeof *s->planned);
        s->n_planned--;
        s->budget += v->plan_new;
        v->plan_new = 0;
    }
    sl_block_release(s->bm, &v->bt);
    v->n_computed = 0;
    q_remove(&s->running, v);
    v->state = S_WAITING;
    q_push_front(&s->waiting[v->prio], v);
    v->n_preemptions++;
    s->n_preemptions++;
    s->plan.n_preempted++;
}

/* The newest running batch-class sequence, or NULL. */
static seq *newest_batch(sl_sched *s) {
    for (seq *x = s->running.tail; x; x = x->prev)
        if (x->prio == SL_PRIO_BATCH) return x;
    return NULL;
}

/* Whether preempting every running batch-class sequence could make room for waiting x: a
 * sequence slot, and the blocks of x's first chunk (an upper bound: its prefix may be cached)
 * within what is free plus what those sequences hold. */
static bool batch_room_for(const sl_sched *s, const seq *x) {
    int n_batch = 0, held = 0;
    for (const seq *y = s->running.head; y; y = y->next)
        if (y->prio == SL_PRIO_BATCH) n_batch++, held += y->bt.n;
    if (!n_batch) return false;
    const int bs = s->c.block_size, chunk = x->n_tokens < s->budget ? x->n_tokens : s->budget;
    return (chunk + bs - 1) / bs <= sl_block_num_free(s->bm) + held;
}

/* The newest running sequence of the batch class, else the newest running sequence. */
static seq *pick_victim(sl_sched *s) {
    seq *x = newest_batch(s);
    return x ? x : s->running.tail;
}

static void add_to_plan(sl_sched *s, seq *x, int n_new) {
    x->plan_new = n_new;
    s->planned[s->n_planned++] = x;
    s->budget -= n_new;
}

/* Gives x blocks for n_new more tokens, preempting others (or x itself) when the pool is
 * empty, and plans it. Returns false when x was preempted. */
static bool plan_running(sl_sched *s, seq *x, int n_new) {
    const int bs = s->c.block_size;
    int need = (x->n_computed + n_new + bs - 1) / bs;
    for (;;) {
        int rc = sl_block_alloc(s->bm, &x->bt, need);
        if (rc == SL_OK) break;
        SL_CHECK(rc == SL_ENOMEM);
        seq *v = pick_victim(s);
        SL_CHECK(v);
        preempt(s, v);
        if (v == x) return false;
    }
    add_to_plan(s, x, n_new);
    return true;
}

/* Tries to move the head of a waiting queue to running. Returns false when it does not fit. */
static bool admit(sl_sched *s, seq *x, double now) {
    const int bs = s->c.block_size;
    int hits = sl_block_match(s->bm, &x->bt, x->tokens, x->n_tokens, (x->n_tokens - 1) / bs);
    x->n_computed = hits * bs;
    int n_new = x->n_tokens - x->n_computed;
    if (n_new > s->budget) n_new = s->budget;
    int rc = sl_block_alloc(s->bm, &x->bt, (x->n_computed + n_new + bs - 1) / bs);
    if (rc != SL_OK) {
        SL_CHECK(rc == SL_ENOMEM);
        sl_block_release(s->bm, &x->bt);
        x->n_computed = 0;
        return false;
    }
    q_remove(&s->waiting[x->prio], x);
    x->state = S_RUNNING;
    q_push_back(&s->running, x);
    if (!x->admitted) {
        x->admitted = true;
        x->n_cached_tokens = x->n_computed;
        x->t_first_sched = now;
        s->prefix_queries += (uint64_t)x->n_prompt;
        s->prefix_hits += (uint64_t)x->n_computed;
    }
    add_to_plan(s, x, n_new);
    return true;
}

static void build_batch(sl_sched *s) {
    const int bs = s->c.block_size;
    int stride = 1, T = 0, L = 0;
    for (int i = 0; i < s->n_planned; i++)
        if (s->planned[i]->bt.n > stride) stride = s->planned[i]->bt.n;
    sl_sched_plan *p = &s->plan;
    p->n_prefill_tokens = p->n_decode_tokens = 0;
    for (int i = 0; i < s->n_planned; i++) {
        seq *x = s->planned[i];
        const int32_t *bt = x->bt.blocks;
        s->q_start[i] = T;
        s->q_len[i] = x->plan_new;
        s->ctx_len[i] = x->n_computed + x->plan_new;
        s->seq_ids[i] = x->id;
        for (int k = 0; k < x->plan_new; k++, T++) {
            int32_t q = x->n_computed + k;
            s->tokens[T] = x->tokens[q];
            s->pos[T] = q;
            s->slots[T] = bt[q / bs] * bs + q % bs;
        }
        int32_t *row = s->block_tables + (size_t)i * stride;
        memcpy(row, bt, (size_t)x->bt.n * sizeof *row);
        memset(row + x->bt.n, 0, (size_t)(stride - x->bt.n) * sizeof *row); /* null block */
        if (x->n_computed + x->plan_new == x->n_tokens) {
            s->logit_idx[L] = T - 1;
            s->logit_ids[L] = x->id;
            s->logit_user[L] = x->user;
            x->logit_row = L++;
        } else {
            x->logit_row = -1;
        }
        /* a sequence decodes when its one new token is the last it sampled */
        if (x->plan_new == 1 && x->n_tokens > x->n_prompt && x->n_computed == x->n_tokens - 1)
            p->n_decode_tokens++;
        else
            p->n_prefill_tokens += x->plan_new;
    }
    p->batch = (sl_batch){.n_tokens = T, .tokens = s->tokens, .pos = s->pos, .slot_mapping = s->slots,
                          .n_seqs = s->n_planned, .max_blocks = stride, .q_start = s->q_start,
                          .q_len = s->q_len, .ctx_len = s->ctx_len, .block_tables = s->block_tables,
                          .n_logits = L, .logit_idx = s->logit_idx};
    p->seq_ids = s->seq_ids;
    p->logit_ids = s->logit_ids;
    p->logit_user = s->logit_user;
}

const sl_sched_plan *sl_sched_step(sl_sched *s, double now) {
    SL_CHECK(!s->in_flight); /* every step needs its update */
    s->in_flight = true;
    s->n_planned = 0;
    s->budget = s->c.max_num_batched_tokens;
    s->plan.n_preempted = 0;
    int n = 0;
    for (seq *x = s->running.head; x; x = x->next) s->snap[n++] = x;
    /* 1: decodes, oldest first; 2: running prefills, oldest first. Preemption removes
     * sequences from running, so walk the snapshot and skip those no longer running. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n && s->budget > 0; i++) {
            seq *x = s->snap[i];
            int left = x->n_tokens - x->n_computed;
            if (x->state != S_RUNNING || x->plan_new || (pass == 0) != (left == 1)) continue;
            plan_running(s, x, left < s->budget ? left : s->budget);
        }
    /* 3: admissions, unless this step already had to preempt. An interactive request that
     * does not fit (the sequence cap, or the KV pool) takes the place of running batch-class
     * sequences, newest first, when that can make room (they go back to the front of their
     * queue and recompute), as vLLM's priority scheduling does. */
    if (!s->plan.n_preempted)
        for (int k = 0; k < SL_PRIO_COUNT; k++) {
            bool blocked = false;
            while (s->waiting[k].head && s->budget > 0) {
                seq *x = s->waiting[k].head;
                if (s->running.n < s->c.max_num_seqs && admit(s, x, now)) continue;
                if (k != SL_PRIO_INTERACTIVE || !batch_room_for(s, x)) {
                    blocked = true;
                    break;
                }
                preempt(s, newest_batch(s));
            }
            if (blocked || s->waiting[k].head) break; /* no overtaking across classes either */
            if (s->plan.n_preempted) break; /* what was just preempted waits a step */
        }
    build_batch(s);
    s->n_steps++;
    return &s->plan;
}

/* ---- update --------------------------------------------------------------------------- */
static sl_sched_event *new_event(sl_sched *s) {
    if (s->n_ev == s->cap_ev) {
        s->cap_ev *= 2;
        s->ev = realloc(s->ev, (size_t)s->cap_ev * sizeof *s->ev);
        SL_CHECK(s->ev);
    }
    return &s->ev[s->n_ev++];
}

static bool is_stop(const seq *x, int32_t t) {
    for (int i = 0; i < x->n_stop; i++)
        if (x->stop[i] == t) return true;
    return false;
}

int sl_sched_update(sl_sched *s, const sl_sched_plan *plan, const int32_t *sampled, double now,
                    const sl_sched_event **events) {
    SL_CHECK(s->in_flight && plan == &s->plan);
    SL_CHECK(sampled || plan->batch.n_logits == 0);
    s->in_flight = false;
    s->n_ev = 0;
    for (int i = 0; i < s->n_ab; i++) *new_event(s) = s->ab[i];
    s->n_ab = 0;
    for (int i = 0; i < s->n_planned; i++) {
        seq *x = s->planned[i];
        int row = x->logit_row;
        x->n_computed += x->plan_new;
        x->plan_new = 0;
        x->logit_row = -1;
        if (x->aborted) {
            seq_free(s, x);
            continue;
        }
        sl_block_commit(s->bm, &x->bt, x->tokens, x->n_computed);
        if (row < 0) continue;
        int32_t t = sampled[row];
        SL_CHECK(t >= 0);
        x->tokens[x->n_tokens++] = t;
        if (x->t_first_token < 0) x->t_first_token = now;
        sl_finish f = is_stop(x, t) ? SL_FINISH_STOP
                      : x->n_tokens - x->n_prompt >= x->max_tokens ? SL_FINISH_LENGTH
                                                                   : SL_FINISH_NONE;
        fill_event(new_event(s), x, t, row, f);
        if (f != SL_FINISH_NONE) {
            map_remove(s, x);
            q_remove(&s->running, x);
            seq_free(s, x);
        }
    }
    s->n_planned = 0;
    *events = s->ev;
    return s->n_ev;
}

/* ---- introspection -------------------------------------------------------------------- */
bool sl_sched_has_work(const sl_sched *s) { return s->n_live > 0 || s->n_ab > 0; }

void sl_sched_get_stats(const sl_sched *s, sl_sched_stats *st) {
    sl_block_stats b;
    sl_block_get_stats(s->bm, &b);
    *st = (sl_sched_stats){.n_waiting = s->waiting[0].n + s->waiting[1].n, .n_running = s->running.n,
                           .n_blocks = b.n_blocks, .n_blocks_free = b.n_free, .n_blocks_cached = b.n_cached,
                           .n_preemptions = s->n_preemptions, .prefix_queries = s->prefix_queries,
                           .prefix_hits = s->prefix_hits, .n_steps = s->n_steps};
}

int sl_sched_check(const sl_sched *s, char err[SL_ERRMSG]) {
    const int bs = s->c.block_size;
    const sl_block_table **tabs = sl_xmalloc(((size_t)s->n_live + 1) * sizeof *tabs);
    int n_tabs = 0, rc = SL_OK;
#define FAIL(...)                                                                                \
    do {                                                                                         \
        rc = sl_fail(err, SL_EFORMAT, __VA_ARGS__);                                              \
        goto done;                                                                               \
    } while (0)
    if (s->running.n > s->c.max_num_seqs) FAIL("%d running > max_num_seqs %d", s->running.n, s->c.max_num_seqs);
    for (int k = 0; k <= SL_PRIO_COUNT; k++) {
        const queue *q = k < SL_PRIO_COUNT ? &s->waiting[k] : &s->running;
        int n = 0;
        const seq *prev = NULL;
        for (const seq *x = q->head; x; prev = x, x = x->next, n++) {
            if (x->prev != prev) FAIL("queue %d: broken back link at request %llu", k, (unsigned long long)x->id);
            if (n_tabs >= s->n_live) FAIL("queues hold more than the %d live requests", s->n_live);
            if (map_find(s, x->id) != x) FAIL("request %llu is missing from the id map", (unsigned long long)x->id);
            int gen = x->n_tokens - x->n_prompt;
            if (gen < 0 || gen >= x->max_tokens || x->aborted)
                FAIL("request %llu: %d generated of %d, aborted %d", (unsigned long long)x->id, gen, x->max_tokens, x->aborted);
            if (k < SL_PRIO_COUNT) {
                if (x->state != S_WAITING || (int)x->prio != k || x->bt.n || x->n_computed)
                    FAIL("waiting request %llu: state %d, class %d, %d blocks, %d computed", (unsigned long long)x->id,
                         x->state, x->prio, x->bt.n, x->n_computed);
            } else {
                int want = (x->n_computed + x->plan_new + bs - 1) / bs;
                if (x->state != S_RUNNING || x->n_computed + x->plan_new > x->n_tokens ||
                    (!s->in_flight && x->n_computed >= x->n_tokens) || x->bt.n != want)
                    FAIL("running request %llu: state %d, %d computed + %d planned of %d tokens, %d blocks (want %d)",
                         (unsigned long long)x->id, x->state, x->n_computed, x->plan_new, x->n_tokens, x->bt.n, want);
            }
            if (!s->in_flight && x->plan_new) FAIL("request %llu is planned outside a step", (unsigned long long)x->id);
            tabs[n_tabs++] = &x->bt;
        }
        if (n != q->n || prev != q->tail) FAIL("queue %d: %d linked, count %d", k, n, q->n);
    }
    if (n_tabs != s->n_live) FAIL("queues hold %d requests, %d live", n_tabs, s->n_live);
    int n_map = 0;
    sl_idmap_each(&s->map, count_node, &n_map);
    if (n_map != s->n_live) FAIL("id map holds %d requests, %d live", n_map, s->n_live);
    rc = sl_block_mgr_check(s->bm, tabs, n_tabs, err);
#undef FAIL
done:
    free(tabs);
    return rc;
}
