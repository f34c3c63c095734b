/* engine.c — the engine thread; see engine.h for the contract. */
#include "engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/idmap.h"
#include "output.h"

enum { Q_PENDING = 0, Q_LIVE, Q_ABORTING, Q_DONE }; /* a sequence, as the scheduler knows it */

typedef struct ereq ereq;

typedef struct eseq {
    ereq *r;
    int index;
    uint64_t sid;                /* scheduler request id */
    int state;
    bool started;                /* has produced its first token */
    sl_sampler smp;
    sl_output out;               /* when the engine has a tokenizer */
    sl_sample_result res;        /* the row sampled in the current step */
} eseq;

struct ereq {
    uint64_t id;
    void *user;
    sl_prio prio;
    int32_t *prompt;             /* [n_prompt] */
    int n_prompt;
    sl_sampling_params sp;       /* its arrays point at the copies below */
    sl_logit_bias *bias;
    int32_t *stop_ids;           /* the request's stop ids, then the end-of-sequence ids */
    int n_sched_stop;            /* how many of them the scheduler stops on */
    char **stop;
    eseq *seqs;                  /* [sp.n] */
    int n_live;                  /* sequences without their finishing event */
    double t_arrival;
    int error;                   /* set when the engine fails it mid-flight */
    char error_msg[SL_ERRMSG];
    ereq *next;                  /* input queue */
    sl_idmap_node hnode;         /* in the id map (its id: the request's) */
};

struct sl_engine {
    sl_engine_config c;
    sl_model *m;
    sl_kv_cache kv;
    sl_sched *s;
    int V;
    int32_t *eos;                /* [n_eos] */
    int n_eos;
    float *logits;               /* host [max_num_seqs][V], when the host samples */
    int32_t *sampled;            /* [max_num_seqs] */
    sl_sample_ws ws;
    /* sampling on the backend (sl_model_device_sampling): the logits stay there */
    bool dev_sample;
    sl_bsample_row *rows;        /* [max_num_seqs] */
    sl_bsample_out *outs;        /* [max_num_seqs] */
    sl_bsample_adj *adj;         /* [adj_cap] the rows' adjustment lists */
    size_t adj_cap;

    pthread_t th;
    bool th_started, joining, joined;
    pthread_mutex_t mu;
    pthread_cond_t wake;         /* the engine thread waits on it */
    pthread_cond_t joined_cv;
    /* guarded by mu */
    ereq *in_head, *in_tail;
    uint64_t *ab;                /* [cap_ab] ids to abort */
    int n_ab, cap_ab;
    bool stop;                   /* shutdown asked: no more submits */
    sl_engine_event *out_head, *out_tail;
    sl_engine_event *free_ev;
    sl_engine_stats stats;
    uint64_t next_id;
    /* engine thread only */
    uint64_t *ab_work;
    int cap_ab_work;
    sl_idmap map;                /* id -> live request */
    int n_live;
    sl_engine_event *pend_head, *pend_tail; /* built this iteration, published at its end */
    sl_engine_event *cache_ev;
    uint64_t next_sid;
    sl_engine_stats acc;         /* counters kept by the thread, copied into stats */
};

/* ---- requests --------------------------------------------------------------------------- */
static void req_free(ereq *r) {
    if (r->seqs)
        for (int k = 0; k < r->sp.n; k++) {
            sl_sampler_deinit(&r->seqs[k].smp);
            if (r->seqs[k].out.buf) sl_output_deinit(&r->seqs[k].out);
        }
    free(r->seqs);
    if (r->stop)
        for (int i = 0; i < r->sp.n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->prompt);
    free(r->bias);
    free(r->stop_ids);
    free(r);
}

static ereq *map_find(const sl_engine *e, uint64_t id) {
    sl_idmap_node *n = sl_idmap_find(&e->map, id);
    return n ? SL_IDMAP_ENTRY(n, ereq, hnode) : NULL;
}

static void map_insert(sl_engine *e, ereq *r) {
    r->hnode.id = r->id;
    sl_idmap_insert(&e->map, &r->hnode);
    e->n_live++;
}

static void map_remove(sl_engine *e, ereq *r) {
    sl_idmap_remove(&e->map, &r->hnode);
    e->n_live--;
}

/* ---- events ----------------------------------------------------------------------------- */
static sl_engine_event *ev_new(sl_engine *e) {
    if (!e->cache_ev) {
        pthread_mutex_lock(&e->mu);
        e->cache_ev = e->free_ev;
        e->free_ev = NULL;
        pthread_mutex_unlock(&e->mu);
    }
    sl_engine_event *o = e->cache_ev;
    if (o) e->cache_ev = o->next;
    else o = sl_xcalloc(1, sizeof *o);
    char *buf = o->text_buf;
    size_t cap = o->text_cap;
    memset(o, 0, offsetof(sl_engine_event, text_buf));
    o->text_buf = buf;
    o->text_cap = cap;
    o->token = -1;
    o->stop_string = -1;
    o->t_arrival = o->t_first_scheduled = o->t_first_token = -1;
    o->t_event = sl_time_s();
    return o;
}

static void ev_text(sl_engine_event *o, const char *p, size_t n) {
    if (n + 1 > o->text_cap) {
        free(o->text_buf);
        o->text_cap = n + 1 > 64 ? n + 1 : 64;
        o->text_buf = sl_xmalloc(o->text_cap);
    }
    if (n) memcpy(o->text_buf, p, n);
    o->text_buf[n] = 0;
    o->text = o->text_buf;
    o->text_len = n;
}

static void ev_push(sl_engine *e, sl_engine_event *o) {
    o->next = NULL;
    if (e->pend_tail) e->pend_tail->next = o;
    else e->pend_head = o;
    e->pend_tail = o;
}

/* An event for sequence q (or index 0 of r when q is NULL) that names the request. */
static sl_engine_event *ev_for(sl_engine *e, ereq *r, int index) {
    sl_engine_event *o = ev_new(e);
    o->id = r->id;
    o->user = r->user;
    o->index = index;
    o->n_prompt = r->n_prompt;
    o->t_arrival = r->t_arrival;
    if (e->c.tok) ev_text(o, "", 0);
    return o;
}

/* A sequence got its finishing event o: the request is done after its last one. */
static void seq_finished(sl_engine *e, ereq *r, eseq *q, sl_engine_event *o) {
    if (q) q->state = Q_DONE;
    if (--r->n_live == 0) {
        o->done = true;
        map_remove(e, r);
        if (r->error) e->acc.n_requests_error++;
        e->acc.n_requests_done++;
        req_free(r);
    }
}

/* Refuses a request that never reached the scheduler: one error event, done. */
static void refuse(sl_engine *e, ereq *r, int code, const char *msg) {
    sl_engine_event *o = ev_for(e, r, 0);
    o->finish = SL_FINISH_ERROR;
    o->error = code;
    snprintf(o->error_msg, sizeof o->error_msg, "%s", msg);
    o->done = true;
    ev_push(e, o);
    e->acc.n_requests_error++;
    e->acc.n_requests_done++;
    req_free(r);
}

/* ---- the engine thread's work ------------------------------------------------------------ */
static int sched_add(sl_engine *e, ereq *r, eseq *q, char err[SL_ERRMSG]) {
    q->sid = e->next_sid++;
    sl_sched_req sr = {.id = q->sid, .user = q, .prompt = r->prompt, .n_prompt = r->n_prompt,
                       .max_tokens = r->sp.max_tokens, .prio = r->prio, .stop_ids = r->stop_ids,
                       .n_stop_ids = r->n_sched_stop};
    int rc = sl_sched_add(e->s, &sr, r->t_arrival, err);
    if (rc == SL_OK) q->state = Q_LIVE;
    return rc;
}

static void start_request(sl_engine *e, ereq *r) {
    char err[SL_ERRMSG] = "";
    int rc = sl_sampling_params_check(&r->sp, e->V, err);
    if (rc) return refuse(e, r, rc, err);
    if (r->sp.n_stop && !e->c.tok) return refuse(e, r, SL_EINVAL, "stop strings need a tokenizer");
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= e->V) {
            snprintf(err, sizeof err, "prompt token %d (id %d) is outside the vocabulary of %d", i, r->prompt[i], e->V);
            return refuse(e, r, SL_EINVAL, err);
        }
    if (!r->sp.ignore_eos) {
        memcpy(r->stop_ids + r->sp.n_stop_ids, e->eos, (size_t)e->n_eos * sizeof *e->eos);
        r->n_sched_stop += e->n_eos;
    }
    r->seqs = sl_xcalloc((size_t)r->sp.n, sizeof *r->seqs);
    for (int k = 0; k < r->sp.n; k++) {
        eseq *q = &r->seqs[k];
        q->r = r;
        q->index = k;
        sl_sampler_init(&q->smp, &r->sp, sl_sampling_seed(&r->sp, e->c.seed, r->id, k), r->prompt, r->n_prompt, e->V);
        if (e->c.tok) sl_output_init(&q->out, e->c.tok, (const char *const *)r->stop, r->sp.n_stop);
    }
    if ((rc = sched_add(e, r, &r->seqs[0], err))) return refuse(e, r, rc, err);
    r->n_live = r->sp.n;
    map_insert(e, r);
    e->acc.n_prompt_tokens += (uint64_t)r->n_prompt;
}

/* Ends every unfinished sequence of r: those in the scheduler get their abort event at the
 * next update, those not yet started get it now. code != 0 turns them into errors. */
static void abort_request(sl_engine *e, ereq *r, int code, const char *msg) {
    if (code && !r->error) {
        r->error = code;
        snprintf(r->error_msg, sizeof r->error_msg, "%s", msg);
    }
    for (int k = 0; k < r->sp.n && r->n_live > 0; k++) {
        eseq *q = &r->seqs[k];
        if (q->state == Q_LIVE) {
            SL_CHECK(sl_sched_abort(e->s, q->sid) == SL_OK);
            q->state = Q_ABORTING;
        } else if (q->state == Q_PENDING) {
            sl_engine_event *o = ev_for(e, r, k);
            o->finish = r->error ? SL_FINISH_ERROR : SL_FINISH_ABORT;
            o->error = r->error;
            if (r->error) memcpy(o->error_msg, r->error_msg, sizeof o->error_msg);
            seq_finished(e, r, q, o); /* frees r after its last sequence ... */
            ev_push(e, o);
            if (o->done) return;      /* ... so leave without touching it again */
        }
    }
}

typedef struct collect {
    ereq **all;
    int *n;
} collect;

static void collect_node(sl_idmap_node *node, void *ctx) {
    collect *c = ctx;
    c->all[(*c->n)++] = SL_IDMAP_ENTRY(node, ereq, hnode);
}

static void abort_all(sl_engine *e, int code, const char *msg) {
    /* collect first: abort_request may free requests (those with only pending sequences) */
    int n = 0;
    ereq **all = sl_xmalloc(((size_t)e->n_live + 1) * sizeof *all);
    collect c = {all, &n};
    sl_idmap_each(&e->map, collect_node, &c);
    for (int i = 0; i < n; i++) abort_request(e, all[i], code, msg);
    free(all);
}

static void fill_usage(sl_engine_event *o, const sl_sched_event *ev) {
    o->n_prompt = ev->n_prompt;
    o->n_generated = ev->n_generated;
    o->n_cached_tokens = ev->n_cached_tokens;
    o->n_preemptions = ev->n_preemptions;
    o->t_arrival = ev->t_arrival;
    o->t_first_scheduled = ev->t_first_scheduled;
    o->t_first_token = ev->t_first_token;
}

static void on_event(sl_engine *e, const sl_sched_event *ev) {
    eseq *q = ev->user;
    ereq *r = q->r;
    sl_engine_event *o = ev_for(e, r, q->index);
    fill_usage(o, ev);
    if (ev->finish == SL_FINISH_ABORT) {
        o->finish = r->error ? SL_FINISH_ERROR : SL_FINISH_ABORT;
        o->error = r->error;
        if (r->error) memcpy(o->error_msg, r->error_msg, sizeof o->error_msg);
        seq_finished(e, r, q, o);
        ev_push(e, o);
        return;
    }
    sl_finish f = ev->finish;
    o->token = ev->token;
    e->acc.n_generated_tokens++;
    sl_sampler_accept(&q->smp, ev->token);
    if (r->sp.logprobs) {
        o->logprob = q->res.logprob;
        o->n_top = q->res.n_top;
        memcpy(o->top_ids, q->res.top_ids, (size_t)o->n_top * sizeof *o->top_ids);
        memcpy(o->top_lps, q->res.top_lps, (size_t)o->n_top * sizeof *o->top_lps);
    }
    if (e->c.tok) {
        const char *text;
        size_t len;
        int hit = sl_output_feed(&q->out, ev->token, f != SL_FINISH_STOP, f != SL_FINISH_NONE, &text, &len);
        ev_text(o, text, len);
        if (hit >= 0) {
            if (f == SL_FINISH_NONE) SL_CHECK(sl_sched_finish(e->s, q->sid) == SL_OK);
            f = SL_FINISH_STOP;
            o->stop_string = hit;
        }
    }
    o->finish = f;
    if (!q->started) {
        q->started = true;
        /* n > 1: the prompt's full blocks are in the prefix cache now; start the others */
        if (q->index == 0)
            for (int k = 1; k < r->sp.n; k++) {
                char err[SL_ERRMSG] = "";
                if (sched_add(e, r, &r->seqs[k], err) == SL_OK) continue;
                sl_engine_event *x = ev_for(e, r, k); /* cannot happen: sequence 0 fitted */
                x->finish = SL_FINISH_ERROR;
                x->error = SL_EINVAL;
                memcpy(x->error_msg, err, sizeof x->error_msg);
                r->seqs[k].state = Q_DONE;
                r->n_live--; /* sequence 0 is still live: never the last */
                ev_push(e, x);
            }
    }
    if (f != SL_FINISH_NONE) seq_finished(e, r, q, o);
    ev_push(e, o);
}

static void step(sl_engine *e) {
    double t_step = sl_time_s();
    const sl_sched_plan *p = sl_sched_step(e->s, t_step);
    double t0 = sl_time_s(); /* forward and sampling times from here, on either path */
    const int L = p->batch.n_logits;
    if (p->batch.n_tokens) {
        int rc;
        double t1;
        if (e->dev_sample) {
            /* each row draws its u now, advancing the sequence's RNG as the host sampler would */
            size_t need = 0, at = 0;
            for (int l = 0; l < L; l++) {
                const eseq *q = p->logit_user[l];
                need += (size_t)sl_sampler_adj_max(&q->smp);
            }
            if (need > e->adj_cap) {
                free(e->adj);
                e->adj_cap = 2 * need;
                e->adj = sl_xmalloc(e->adj_cap * sizeof *e->adj);
            }
            for (int l = 0; l < L; l++) {
                eseq *q = p->logit_user[l];
                sl_sampler_device_row(&q->smp, e->adj + at, &e->rows[l]);
                at += (size_t)e->rows[l].n_adj;
            }
            double tr = sl_time_s();
            e->acc.sample_s += tr - t0;
            rc = sl_forward_sample(e->m, &e->kv, &p->batch, e->rows, e->outs);
            t1 = sl_time_s();
            e->acc.forward_s += t1 - tr; /* sampling included */
        } else {
            rc = sl_forward(e->m, &e->kv, &p->batch, e->logits);
            t1 = sl_time_s();
            e->acc.forward_s += t1 - t0;
        }
        if (rc) {
            char msg[SL_ERRMSG];
            snprintf(msg, sizeof msg, "the forward pass failed: %s", sl_strerror(rc));
            SL_LOG(SL_LOG_ERROR, "engine", "%s", msg);
            abort_all(e, rc, msg); /* every planned sequence is aborted: nothing is sampled */
            memset(e->sampled, 0, (size_t)L * sizeof *e->sampled);
        } else {
            for (int l = 0; l < L; l++) {
                eseq *q = p->logit_user[l];
                if (e->dev_sample) q->res = e->outs[l];
                else sl_sampler_sample(&q->smp, e->logits + (size_t)l * e->V, &e->ws, &q->res);
                e->sampled[l] = q->res.token;
            }
            e->acc.sample_s += sl_time_s() - t1;
        }
        e->acc.n_forward_tokens += (uint64_t)p->batch.n_tokens;
    }
    const sl_sched_event *ev;
    int n = sl_sched_update(e->s, p, e->sampled, sl_time_s(), &ev);
    for (int i = 0; i < n; i++) on_event(e, &ev[i]);
    e->acc.busy_s += sl_time_s() - t_step;
}

static void *engine_main(void *arg) {
    sl_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && !e->in_head && !e->n_ab && !sl_sched_has_work(e->s)) pthread_cond_wait(&e->wake, &e->mu);
        ereq *in = e->in_head;
        e->in_head = e->in_tail = NULL;
        uint64_t *ab = e->ab;
        int n_ab = e->n_ab, cap = e->cap_ab;
        e->ab = e->ab_work, e->cap_ab = e->cap_ab_work, e->n_ab = 0; /* swap the two buffers */
        e->ab_work = ab, e->cap_ab_work = cap;
        bool stop = e->stop;
        pthread_mutex_unlock(&e->mu);

        while (in) {
            ereq *r = in;
            in = in->next;
            start_request(e, r);
        }
        for (int i = 0; i < n_ab; i++) {
            ereq *r = map_find(e, ab[i]);
            if (r) abort_request(e, r, 0, NULL);
        }
        if (stop) abort_all(e, 0, NULL);
        if (sl_sched_has_work(e->s)) step(e);

        pthread_mutex_lock(&e->mu);
        sl_engine_event *head = e->pend_head;
        if (head) {
            if (e->out_tail) e->out_tail->next = head;
            else e->out_head = head;
            e->out_tail = e->pend_tail;
        }
        e->pend_head = e->pend_tail = NULL;
        e->stats = e->acc;
        sl_sched_get_stats(e->s, &e->stats.sched);
        e->stats.n_requests = e->n_live;
        pthread_mutex_unlock(&e->mu);
        if (head && e->c.notify) e->c.notify(e->c.notify_ctx);
        if (stop && !sl_sched_has_work(e->s)) break;
    }
    SL_CHECK(e->n_live == 0);
    return NULL;
}

/* ---- public API --------------------------------------------------------------------------- */
int sl_engine_create(sl_engine **out, const sl_engine_config *c, char err[SL_ERRMSG]) {
    *out = NULL;
    if (!c->model) return sl_fail(err, SL_EINVAL, "engine: no model");
    if (c->n_eos < 0 || (c->n_eos && !c->eos_ids)) return sl_fail(err, SL_EINVAL, "engine: bad end-of-sequence ids");
    sl_engine *e = sl_xcalloc(1, sizeof *e);
    e->c = *c;
    e->m = c->model;
    e->V = c->model->hp.n_vocab;
    if (c->tok && sl_tok_n_vocab(c->tok) > e->V) {
        /* a model may pad its vocabulary; a tokenizer larger than the model cannot work */
        free(e);
        return sl_fail(err, SL_EINVAL, "engine: the tokenizer has %d tokens, the model %d", sl_tok_n_vocab(c->tok),
                       c->model->hp.n_vocab);
    }
    int rc = sl_sched_create(&e->s, &c->sched, err);
    if (rc) goto fail;
    const sl_sched_config *sc = &c->sched;
    int max_blocks = (sc->max_model_len + sc->block_size - 1) / sc->block_size;
    if ((rc = sl_model_reserve(e->m, sc->max_num_batched_tokens, sc->max_num_seqs, max_blocks, sc->max_num_seqs))) {
        sl_fail(err, rc, "engine: cannot reserve the forward workspace for %d tokens, %d sequences",
                sc->max_num_batched_tokens, sc->max_num_seqs);
        goto fail;
    }
    if ((rc = sl_kv_cache_init(&e->kv, e->m, sc->n_blocks, sc->block_size))) {
        sl_fail(err, rc, "engine: cannot allocate a KV cache of %d blocks of %d tokens", sc->n_blocks, sc->block_size);
        goto fail;
    }
    /* end-of-sequence ids: given, or the model's (and the tokenizer's end-of-generation) */
    e->eos = sl_xmalloc((size_t)(c->n_eos + 2) * sizeof *e->eos);
    if (c->eos_ids) {
        memcpy(e->eos, c->eos_ids, (size_t)c->n_eos * sizeof *e->eos);
        e->n_eos = c->n_eos;
    } else {
        int cap = 2;
        const sl_hparams *hp = &e->m->hp;
        if (hp->eos_id >= 0) e->eos[e->n_eos++] = hp->eos_id;
        if (hp->eot_id >= 0 && hp->eot_id != hp->eos_id) e->eos[e->n_eos++] = hp->eot_id;
        for (int32_t t = 0; c->tok && t < sl_tok_n_vocab(c->tok); t++) {
            if (!sl_tok_is_eog(c->tok, t) || t == hp->eos_id || t == hp->eot_id) continue;
            if (e->n_eos == cap) {
                e->eos = realloc(e->eos, (size_t)(cap *= 2) * sizeof *e->eos);
                SL_CHECK(e->eos);
            }
            e->eos[e->n_eos++] = t;
        }
    }
    e->dev_sample = sl_model_device_sampling(e->m) && !c->host_sampling;
    if (e->dev_sample) {
        e->rows = sl_xcalloc((size_t)sc->max_num_seqs, sizeof *e->rows);
        e->outs = sl_xcalloc((size_t)sc->max_num_seqs, sizeof *e->outs);
    } else {
        e->logits = sl_xmalloc((size_t)sc->max_num_seqs * (size_t)e->V * sizeof *e->logits);
        sl_sample_ws_init(&e->ws, e->V);
    }
    e->sampled = sl_xcalloc((size_t)sc->max_num_seqs, sizeof *e->sampled);
    sl_idmap_init(&e->map);
    e->cap_ab = e->cap_ab_work = 16;
    e->ab = sl_xmalloc((size_t)e->cap_ab * sizeof *e->ab);
    e->ab_work = sl_xmalloc((size_t)e->cap_ab_work * sizeof *e->ab_work);
    e->next_id = 1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    pthread_cond_init(&e->joined_cv, NULL);
    sl_sched_get_stats(e->s, &e->stats.sched);
    if (pthread_create(&e->th, NULL, engine_main, e)) {
        rc = sl_fail(err, SL_ENOMEM, "engine: cannot start the engine thread");
        e->joined = true;
        sl_engine_destroy(e);
        return rc;
    }
    e->th_started = true;
    *out = e;
    return SL_OK;
fail:
    if (e->kv.k) sl_kv_cache_deinit(&e->kv, e->m);
    sl_sched_destroy(e->s);
    free(e);
    return rc;
}

void sl_engine_shutdown(sl_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_signal(&e->wake);
    if (!e->th_started || e->joined) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    if (e->joining) { /* another thread is joining: wait for it */
        while (!e->joined) pthread_cond_wait(&e->joined_cv, &e->mu);
        pthread_mutex_unlock(&e->mu);
        return;
    }
    e->joining = true;
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->th, NULL);
    pthread_mutex_lock(&e->mu);
    e->joined = true;
    pthread_cond_broadcast(&e->joined_cv);
    pthread_mutex_unlock(&e->mu);
}

static void free_events(sl_engine_event *o) {
    while (o) {
        sl_engine_event *nx = o->next;
        free(o->text_buf);
        free(o);
        o = nx;
    }
}

void sl_engine_destroy(sl_engine *e) {
    if (!e) return;
    sl_engine_shutdown(e);
    for (ereq *r = e->in_head, *nx; r; r = nx) { /* only if the thread never ran */
        nx = r->next;
        req_free(r);
    }
    free_events(e->out_head);
    free_events(e->free_ev);
    free_events(e->cache_ev);
    free_events(e->pend_head);
    sl_kv_cache_deinit(&e->kv, e->m);
    sl_sched_destroy(e->s);
    sl_sample_ws_deinit(&e->ws);
    free(e->logits);
    free(e->rows);
    free(e->outs);
    free(e->adj);
    free(e->sampled);
    free(e->eos);
    sl_idmap_free(&e->map);
    free(e->ab);
    free(e->ab_work);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    pthread_cond_destroy(&e->joined_cv);
    free(e);
}

/* A copy of n elements in room for n + extra. */
static void *dup_array(const void *p, size_t n, size_t extra, size_t size) {
    void *q = sl_xmalloc((n + extra) * size + 1);
    if (n) memcpy(q, p, n * size);
    return q;
}

/* The engine's copy of a request; NULL when it is malformed. */
static ereq *new_request(sl_engine *e, const sl_engine_req *rq) {
    const sl_sampling_params *sp = &rq->sp;
    if (!rq->prompt || rq->n_prompt < 1 || sp->n_logit_bias < 0 || (sp->n_logit_bias && !sp->logit_bias) ||
        sp->n_stop_ids < 0 || (sp->n_stop_ids && !sp->stop_ids) || sp->n_stop < 0 || (sp->n_stop && !sp->stop))
        return NULL;
    for (int i = 0; i < sp->n_stop; i++)
        if (!sp->stop[i]) return NULL;
    ereq *r = sl_xcalloc(1, sizeof *r);
    r->user = rq->user;
    r->prio = rq->prio;
    r->n_prompt = rq->n_prompt;
    r->prompt = dup_array(rq->prompt, (size_t)rq->n_prompt, 0, sizeof *r->prompt);
    r->sp = *sp;
    r->bias = dup_array(sp->logit_bias, (size_t)sp->n_logit_bias, 0, sizeof *r->bias);
    r->sp.logit_bias = r->bias;
    r->stop_ids = dup_array(sp->stop_ids, (size_t)sp->n_stop_ids, (size_t)e->n_eos, sizeof *r->stop_ids);
    r->n_sched_stop = sp->n_stop_ids;
    r->sp.stop_ids = r->stop_ids;
    r->stop = sl_xcalloc((size_t)sp->n_stop + 1, sizeof *r->stop);
    for (int i = 0; i < sp->n_stop; i++) {
        r->stop[i] = strdup(sp->stop[i]);
        SL_CHECK(r->stop[i]);
    }
    r->sp.stop = (const char *const *)r->stop;
    r->t_arrival = sl_time_s();
    return r;
}

int sl_engine_submit_many(sl_engine *e, const sl_engine_req *rq, int n, uint64_t *ids) {
    if (n < 1) return n ? SL_EINVAL : SL_OK;
    ereq *one, **rs = n == 1 ? &one : sl_xmalloc((size_t)n * sizeof *rs);
    int made = 0;
    while (made < n && (rs[made] = new_request(e, &rq[made]))) made++;
    pthread_mutex_lock(&e->mu);
    if (made < n || e->stop) {
        pthread_mutex_unlock(&e->mu);
        for (int i = 0; i < made; i++) req_free(rs[i]);
        if (rs != &one) free(rs);
        return SL_EINVAL;
    }
    /* all in one turn of the lock: the engine's next step sees every one of them */
    for (int i = 0; i < n; i++) {
        ereq *r = rs[i];
        uint64_t rid = r->id = e->next_id++;
        if (e->in_tail) e->in_tail->next = r;
        else e->in_head = r;
        e->in_tail = r;
        if (ids) ids[i] = rid; /* from the unlock on r may be gone already: only its id is kept */
    }
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    if (rs != &one) free(rs);
    return SL_OK;
}

int sl_engine_submit(sl_engine *e, const sl_engine_req *rq, uint64_t *id) {
    return sl_engine_submit_many(e, rq, 1, id);
}

void sl_engine_abort(sl_engine *e, uint64_t id) {
    pthread_mutex_lock(&e->mu);
    if (!e->stop) {
        if (e->n_ab == e->cap_ab) {
            e->cap_ab *= 2;
            e->ab = realloc(e->ab, (size_t)e->cap_ab * sizeof *e->ab);
            SL_CHECK(e->ab);
        }
        e->ab[e->n_ab++] = id;
        pthread_cond_signal(&e->wake);
    }
    pthread_mutex_unlock(&e->mu);
}

sl_engine_event *sl_engine_poll(sl_engine *e) {
    pthread_mutex_lock(&e->mu);
    sl_engine_event *o = e->out_head;
    e->out_head = e->out_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    return o;
}

void sl_engine_release(sl_engine *e, sl_engine_event *list) {
    if (!list) return;
    sl_engine_event *tail = list;
    while (tail->next) tail = tail->next;
    pthread_mutex_lock(&e->mu);
    tail->next = e->free_ev;
    e->free_ev = list;
    pthread_mutex_unlock(&e->mu);
}

void sl_engine_get_stats(sl_engine *e, sl_engine_stats *st) {
    pthread_mutex_lock(&e->mu);
    *st = e->stats;
    pthread_mutex_unlock(&e->mu);
}
