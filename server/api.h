/* api.h — the OpenAI-compatible HTTP API (../shared/API.md) on top of http.h and the engine.
 *
 * Routes (every one but /health needs "Authorization: Bearer KEY" when an API key is set):
 *   GET  /health                200 {"status":"ok"}; 503 while loading or draining
 *   GET  /v1/models             the served model (OpenAI's list, with vLLM's root/max_model_len)
 *   GET  /v1/models/{id}        one model
 *   POST /v1/completions        prompt as a string, token ids, or a list of either
 *   POST /v1/chat/completions   messages through the model's chat template
 *   POST /tokenize, /detokenize vLLM's shapes
 *   GET  /metrics               Prometheus text format (metrics.h)
 * Validation order: auth (401) → route (404) → method (405) → server state (503) → JSON (400)
 * → fields (400) → model name (404) → tokenize → length (400) → queue admission (429) → run.
 * Every error body is OpenAI's {"error": {"message", "type", "param", "code"}}, its status,
 * type and code taken from one table (sl_api_error_body).
 *
 * Generation: each prompt becomes one engine request with n sequences; choice i*n + j is
 * sequence j of prompt i. Non-streaming responses are sent when every sequence is done;
 * streaming ones as Server-Sent Events ("data: {json}\n\n", ending with "data: [DONE]\n\n"),
 * a chunk as soon as an engine event brings text. A client that goes away aborts its engine
 * requests at once. Prompts over inline_tokenize_bytes are rendered and tokenized in libuv's
 * thread pool.
 *
 * Threads: everything runs on the loop thread, except prompt preparation in the pool (which
 * touches only its own request and the immutable tokenizer and chat template).
 * Ownership: the API borrows the engine, tokenizer and chat template (they must outlive it)
 * and owns the per-request state, freed when the request's last engine event has come and
 * its HTTP response is finished.
 */
#ifndef SL_API_H
#define SL_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "../models/chat.h"
#include "../models/tokenizer.h"
#include "../scheduler/engine.h"
#include "http.h"

typedef struct sl_api_config {
    const char *served_model_name;
    const char *model_root;      /* reported as "root" (the model file) */
    const char *api_key;         /* NULL or "": no authentication */
    int max_model_len;
    int max_num_seqs;            /* admission: sequences in flight may reach max_num_seqs + max_queue */
    int max_queue;
    size_t inline_tokenize_bytes; /* larger prompts are prepared in the thread pool */
} sl_api_config;

/* The engine as the API uses it (scheduler/engine.h), behind pointers so that the fuzzer and
 * tests can put a fake in its place. sl_api_engine_wrap fills it for a real engine. */
typedef struct sl_api_engine {
    void *impl;
    int (*submit)(void *impl, const sl_engine_req *r, uint64_t *id);
    void (*abort)(void *impl, uint64_t id);
    sl_engine_event *(*poll)(void *impl);
    void (*release)(void *impl, sl_engine_event *list);
    void (*stats)(void *impl, sl_engine_stats *st);
} sl_api_engine;
void sl_api_engine_wrap(sl_api_engine *out, sl_engine *e);

typedef enum { SL_API_LOADING = 0, SL_API_READY, SL_API_DRAINING } sl_api_state;

typedef struct sl_api sl_api;

/* loop: where prompt preparation is queued (uv_queue_work); NULL prepares every prompt
 * inline. Starts in SL_API_LOADING. */
void sl_api_create(sl_api **out, const sl_api_config *c, uv_loop_t *loop);
/* Frees the API. Every request must be finished (sl_api_n_inflight() == 0). */
void sl_api_destroy(sl_api *a);

/* The model is loaded: from now on requests run (LOADING becomes READY; DRAINING stays).
 * chat may be NULL (then chat requests get 400 naming --chat-template). max_model_len
 * replaces the configuration's (the loader may settle it only now). */
void sl_api_set_model(sl_api *a, const sl_api_engine *e, const sl_tok *tok, const sl_chat *chat, int n_vocab,
                      int max_model_len);
void sl_api_set_state(sl_api *a, sl_api_state st);
sl_api_state sl_api_get_state(const sl_api *a);

/* The http.h handler: pass the sl_api as its ctx. */
void sl_api_handle(sl_http_req *r, void *api);
/* Takes every engine event and acts on it (call when the engine's notify fired). */
void sl_api_pump(sl_api *a);
/* Generation requests accepted and not yet completely finished. */
int sl_api_n_inflight(const sl_api *a);
/* Aborts every generation request in flight (their engine requests end with abort events). */
void sl_api_abort_all(sl_api *a);

/* http.h's error_body: OpenAI's error object for a status from the table. */
const char *sl_api_error_body(int status, const char *message, char *out, size_t cap);

#endif
