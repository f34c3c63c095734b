/* engine.h — the engine thread: owns a scheduler, a model and its KV cache, and serves
 * requests submitted from other threads (DESIGN.md decision 6).
 *
 *     other thread                              engine thread
 *     sl_engine_submit(e, &req, &id)  ──queue──▶ validate, sl_sched_add
 *     sl_engine_abort(e, id)          ──queue──▶ sl_sched_abort
 *                                               loop: plan = sl_sched_step → sl_forward
 *                                                     → sample each row (its request's
 *                                                     sampler) → sl_sched_update → events
 *     notify(ctx)  ◀── called after events were queued
 *     list = sl_engine_poll(e)  (drain all)  ◀──queue── events
 *     sl_engine_release(e, list)
 *
 * The engine thread sleeps on a condition variable while there is nothing to do: it never
 * spins. notify is the consumer's wake-up (the server passes a function that calls
 * uv_async_send, which coalesces): it runs on the engine thread, after new events were queued,
 * must be cheap and must not call back into the engine except sl_engine_poll/release. One
 * notify can stand for many events: drain everything per wake-up.
 *
 * Events. Every accepted request produces, for each of its n sequences (index 0 .. n-1), zero
 * or more token events and exactly one finishing event (finish != SL_FINISH_NONE: stop,
 * length, abort, error), the finishing event possibly carrying the last token. The very last
 * event of a request has done = true; nothing follows it. A request refused by the engine
 * thread (bad sampling parameters, a prompt token outside the vocabulary, prompt + max_tokens
 * over max_model_len, more KV blocks than the pool holds) gets a single event: index 0,
 * finish SL_FINISH_ERROR, error and message set, done = true. Sequences of a request come in
 * no fixed order relative to each other; the events of one sequence come in order.
 *
 * n > 1: sequence 0 runs first; once its prompt is computed (its first token sampled), the
 * other n − 1 are scheduled with the same prompt. With the prefix cache on they find every
 * full block of the prompt cached and compute only its last partial block; with it off they
 * recompute the prompt. (Forking the block table would also share the partial block; this is
 * the simpler correct approach.) Sequence k samples with seed + k (sampling.h).
 *
 * Text: with a tokenizer, token events carry the text they release (output.h: incremental
 * detokenization, stop strings excluded, hold-back while a stop string may still match).
 * Without one, text is NULL and stop strings are refused.
 *
 * Shutdown: sl_engine_shutdown stops accepting requests, aborts everything in flight (each
 * sequence gets its abort event), frees every KV block and joins the thread; sl_engine_destroy
 * shuts down if needed and frees everything, events not yet released included.
 *
 * Thread-safety: submit, abort, poll, release, get_stats and shutdown may be called from any
 * thread; destroy from one thread once nothing else uses the engine. A request's first events
 * can reach another thread's poll before submit has returned its id there: identify requests
 * by their user pointer.
 * Ownership: the engine borrows the model and the tokenizer (both must outlive it; nobody
 * else may run the model meanwhile) and copies everything a request points to at submit.
 */
#ifndef SL_ENGINE_H
#define SL_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/base.h"
#include "../models/model.h"
#include "../models/tokenizer.h"
#include "sampling.h"
#include "sched.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_engine_config {
    sl_sched_config sched;       /* n_blocks, block_size, limits, prefix cache */
    sl_model *model;             /* borrowed */
    const sl_tok *tok;           /* borrowed, or NULL: no text, no stop strings */
    const int32_t *eos_ids;      /* [n_eos] end-of-sequence tokens; NULL: the model's eos and
                                    eot (and, with a tokenizer, every end-of-generation token) */
    int n_eos;
    uint64_t seed;               /* seeds of requests that bring none derive from it */
    bool host_sampling;          /* sample on the host even where the backend could (the
                                    logits then cross to the host every step) */
    void (*notify)(void *ctx);   /* may be NULL (then poll when convenient) */
    void *notify_ctx;
} sl_engine_config;

typedef struct sl_engine_req {
    const int32_t *prompt;       /* [n_prompt] token ids */
    int n_prompt;
    sl_sampling_params sp;
    sl_prio prio;
    void *user;                  /* returned with every event */
} sl_engine_req;

typedef struct sl_engine_event {
    struct sl_engine_event *next; /* the list sl_engine_poll returns, oldest first */
    uint64_t id;                 /* the request's id (from sl_engine_submit) */
    void *user;
    int index;                   /* sequence of the request, 0 .. n-1 */
    int32_t token;               /* generated token, or -1 (abort, error) */
    float logprob;               /* raw log-probability of token (sp.logprobs), else 0 */
    int n_top;                   /* sp.top_logprobs entries when sp.logprobs */
    int32_t top_ids[SL_MAX_LOGPROBS];
    float top_lps[SL_MAX_LOGPROBS];
    const char *text;            /* released text, NUL-terminated (tokenizer given), else NULL */
    size_t text_len;
    sl_finish finish;            /* SL_FINISH_NONE while the sequence goes on */
    int stop_string;             /* index of the stop string that finished it, or -1 */
    bool done;                   /* last event of the request */
    int error;                   /* finish == SL_FINISH_ERROR: a negative sl_err */
    char error_msg[SL_ERRMSG];
    /* usage of this sequence, as of this event */
    int n_prompt, n_generated, n_cached_tokens, n_preemptions;
    double t_arrival, t_first_scheduled, t_first_token, t_event; /* sl_time_s(); -1: not yet */
    /* private */
    char *text_buf;
    size_t text_cap;
} sl_engine_event;

typedef struct sl_engine_stats {
    sl_sched_stats sched;        /* as of the last step */
    int n_requests;              /* accepted and not yet done */
    uint64_t n_prompt_tokens, n_generated_tokens, n_forward_tokens;
    uint64_t n_requests_done, n_requests_error;
    double busy_s;               /* time spent in steps, of which: */
    double forward_s, sample_s;  /* in sl_forward, in sampling */
} sl_engine_stats;

typedef struct sl_engine sl_engine;

/* Allocates the KV cache (c->sched.n_blocks blocks) and the forward workspace, and starts the
 * engine thread. Errors with a message: SL_EINVAL (bad configuration), SL_ENOMEM. */
int sl_engine_create(sl_engine **out, const sl_engine_config *c, char err[SL_ERRMSG]);
/* Shuts down if needed, then frees everything. */
void sl_engine_destroy(sl_engine *e);
/* Aborts every request, waits until their events are queued and the thread has ended. */
void sl_engine_shutdown(sl_engine *e);

/* Queues a request (copying what it points to) and gives its id. SL_EINVAL, with nothing
 * queued, when the engine is shut down or the request is malformed (no prompt, a negative
 * count, a NULL array or stop string); every other problem comes as an error event. */
int sl_engine_submit(sl_engine *e, const sl_engine_req *r, uint64_t *id);
/* Queues n requests (ids[i] for rq[i] when ids is not NULL) in one turn of the engine's lock,
 * so that its next step schedules them together, as a batch of prompts given at once (vLLM's
 * LLM.generate) would be. All or nothing: SL_EINVAL, with nothing queued, as above for any,
 * and for n < 0; n = 0 queues nothing and returns SL_OK. */
int sl_engine_submit_many(sl_engine *e, const sl_engine_req *rq, int n, uint64_t *ids);
/* Asks for a request to end with abort events. Unknown or finished ids are ignored (their
 * events may still be in the queue). */
void sl_engine_abort(sl_engine *e, uint64_t id);

/* Takes every queued event (oldest first); NULL when none. The list belongs to the caller
 * until it hands it back with sl_engine_release: a list linked by next (a single event with
 * next = NULL), which the engine recycles. */
sl_engine_event *sl_engine_poll(sl_engine *e);
void sl_engine_release(sl_engine *e, sl_engine_event *list);

void sl_engine_get_stats(sl_engine *e, sl_engine_stats *st);

#ifdef __cplusplus
}
#endif
#endif
