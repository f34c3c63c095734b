/* sched.h — the continuous-batching scheduler, a pure state machine (DESIGN.md decision 5).
 *
 * No threads, no I/O, no clock: the engine thread drives it, passing the time in.
 *
 *     sl_sched_add(s, req, now)          a request joins the waiting queue of its class
 *     plan = sl_sched_step(s, now)       what to compute this step, as a ragged batch
 *     (forward plan->batch, sample one token per logit row)
 *     sl_sched_update(s, plan, sampled, now, &events)
 *     sl_sched_abort(s, id)              at any time, even between step and update
 *
 * Call sl_sched_update exactly once after every sl_sched_step, even for an empty plan (with
 * sampled = NULL): it also delivers the events of aborts.
 *
 * A step, with B = max_num_batched_tokens tokens to hand out:
 *   1. running sequences that decode (one new token each), oldest first;
 *   2. running sequences in the middle of their prefill, oldest first, each taking a chunk of
 *      up to what is left of B (chunked prefill);
 *   3. if nothing was preempted in this step: waiting sequences, interactive class before
 *      batch class, first come first served within a class, each taking its cached prefix
 *      from the prefix cache and then a chunk of what is left of B, until B, max_num_seqs or
 *      the KV pool runs out. A sequence that does not fit stops admission (no overtaking),
 *      except that an interactive one takes the place of running batch-class sequences,
 *      newest first, when preempting them can make room (a sequence slot, and blocks for its
 *      first chunk); what was preempted so waits for a later step.
 * A sequence that needs a block when none is left preempts by recompute, until the block is
 * there: the victim is the newest running sequence of the batch class, else the newest
 * running sequence (possibly one already planned in this step, which then leaves the plan,
 * or the needy sequence itself, which then waits). The victim's blocks are released (its full
 * blocks stay in the prefix cache, so recompute is often cheap) and it returns to the front
 * of the waiting queue of its class, keeping its prompt and generated tokens.
 *
 * With max_num_batched_tokens below the number of decoding sequences, the newest decodes wait
 * for a later step (oldest first is the only order; nobody starves once older ones finish).
 *
 * Sequences hold blocks for the positions they have computed or are computing; the last token
 * of a sequence is computed in the step that samples the next one. A logit row is planned for
 * a sequence when its chunk reaches its last token.
 *
 * Guarantees: every admitted request finishes (stop, length or abort); a request that could
 * never run is refused at sl_sched_add: prompt + max_tokens > max_model_len (SL_ERANGE), or
 * more KV blocks than the whole pool (SL_ENOMEM), each with a message.
 *
 * Ownership: sl_sched_create allocates, sl_sched_destroy frees (including unfinished
 * requests, without events). The request's arrays are copied at sl_sched_add. The plan and
 * the events are owned by the scheduler: the plan stays valid until the next sl_sched_step,
 * the events until the next sl_sched_update or sl_sched_destroy.
 * Thread-safety: none; one thread (the engine thread) makes every call.
 */
#ifndef SL_SCHED_H
#define SL_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/base.h"
#include "../models/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_prio { SL_PRIO_INTERACTIVE = 0, SL_PRIO_BATCH = 1, SL_PRIO_COUNT } sl_prio;

typedef enum sl_finish {
    SL_FINISH_NONE = 0, /* the request goes on */
    SL_FINISH_STOP,     /* sampled one of its stop token ids (EOS is one unless ignore_eos) */
    SL_FINISH_LENGTH,   /* generated max_tokens */
    SL_FINISH_ABORT,    /* sl_sched_abort */
    SL_FINISH_ERROR,    /* never from the scheduler: the engine's refused or failed requests */
} sl_finish;
const char *sl_finish_name(sl_finish f); /* "stop", "length", "abort", "error", or "" */

typedef struct sl_sched_config {
    int n_blocks;               /* KV pool in blocks, including the null block 0 */
    int block_size;             /* tokens per block (--block-size) */
    int max_num_seqs;           /* running sequences at most (--max-num-seqs) */
    int max_num_batched_tokens; /* tokens per step at most (--max-num-batched-tokens) */
    int max_model_len;          /* prompt + max_tokens at most (--max-model-len) */
    bool prefix_cache;          /* automatic prefix caching (--no-prefix-cache turns it off) */
} sl_sched_config;

/* block_size 16, max_num_seqs 256, max_num_batched_tokens 2048, max_model_len 4096, prefix
 * cache on; n_blocks must be set by the caller. */
void sl_sched_config_defaults(sl_sched_config *c);

typedef struct sl_sched_req {
    uint64_t id;               /* caller's id, unique among live requests */
    void *user;                /* returned with the plan's logit rows and the events */
    const int32_t *prompt;     /* [n_prompt], n_prompt >= 1 */
    int n_prompt;
    int max_tokens;            /* >= 1 */
    sl_prio prio;
    const int32_t *stop_ids;   /* [n_stop_ids] tokens that finish the request with "stop" */
    int n_stop_ids;
} sl_sched_req;

typedef struct sl_sched_plan {
    sl_batch batch;            /* the forward's input; all arrays are the scheduler's */
    const uint64_t *seq_ids;   /* [batch.n_seqs] request of each batch sequence */
    const uint64_t *logit_ids; /* [batch.n_logits] request whose next token row i samples */
    void *const *logit_user;   /* [batch.n_logits] its user pointer */
    int n_prefill_tokens;      /* tokens of prefill chunks (including recompute) */
    int n_decode_tokens;
    int n_preempted;           /* sequences preempted while planning this step */
} sl_sched_plan;

typedef struct sl_sched_event {
    uint64_t id;
    void *user;
    int32_t token;             /* appended token; -1 for an abort */
    int logit_row;             /* plan logit row it was sampled from; -1 for an abort */
    sl_finish finish;          /* SL_FINISH_NONE while the request goes on */
    /* usage and timings, current as of this event */
    int n_prompt, n_generated;
    int n_cached_tokens;       /* prompt tokens served from the prefix cache at first admission */
    int n_preemptions;
    double t_arrival, t_first_scheduled, t_first_token; /* the caller's clock; -1 when not yet */
} sl_sched_event;

typedef struct sl_sched_stats {
    int n_waiting, n_running;
    int n_blocks, n_blocks_free, n_blocks_cached; /* usable blocks; free; cached unreferenced */
    uint64_t n_preemptions;
    uint64_t prefix_queries, prefix_hits; /* prompt tokens looked up / served, first admissions */
    uint64_t n_steps;
} sl_sched_stats;

typedef struct sl_sched sl_sched;

/* Errors: SL_EINVAL for a bad configuration, with a message. */
int sl_sched_create(sl_sched **out, const sl_sched_config *c, char err[SL_ERRMSG]);
void sl_sched_destroy(sl_sched *s);

/* Queues a request. Errors (nothing queued, message in err): SL_EINVAL (empty prompt,
 * max_tokens < 1, bad class, duplicate id), SL_ERANGE (too long for max_model_len), SL_ENOMEM
 * (needs more blocks than the pool has). */
int sl_sched_add(sl_sched *s, const sl_sched_req *r, double now, char err[SL_ERRMSG]);

/* Ends a request at once, whatever its state, and frees its blocks; its finish event comes
 * with the next sl_sched_update. SL_ENOTFOUND if the id is not live. */
int sl_sched_abort(sl_sched *s, uint64_t id);

/* Ends a request at once, like sl_sched_abort, but without any event: for finishes the caller
 * decides itself (a stop string matched on the text). SL_ENOTFOUND if the id is not live. */
int sl_sched_finish(sl_sched *s, uint64_t id);

/* Plans one step. The plan may be empty (batch.n_seqs == 0) when nothing can run. */
const sl_sched_plan *sl_sched_step(sl_sched *s, double now);

/* Applies the step: sampled[i] is the token drawn from logit row i (plan->batch.n_logits of
 * them). Returns the number of events and points *events at them: one per sampled token (its
 * finish set on the last one), and one per abort since the last update. */
int sl_sched_update(sl_sched *s, const sl_sched_plan *plan, const int32_t *sampled, double now,
                    const sl_sched_event **events);

/* True while any request is waiting or running, or events are pending. */
bool sl_sched_has_work(const sl_sched *s);
void sl_sched_get_stats(const sl_sched *s, sl_sched_stats *st);
/* Checks every invariant (queues, states, token counts, and sl_block_mgr_check over all
 * sequences). Returns 0 or SL_EFORMAT with a message. O(state); for tests and debugging. */
int sl_sched_check(const sl_sched *s, char err[SL_ERRMSG]);

#ifdef __cplusplus
}
#endif
#endif
