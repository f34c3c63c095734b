/* api_internal.h — what api.c (routing, errors, small endpoints) and api_gen.c (completions
 * and chat) share. Loop thread only. */
#ifndef SL_API_INTERNAL_H
#define SL_API_INTERNAL_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "api_util.h"
#include "metrics.h"

typedef struct sl__gen sl__gen;

struct sl_api {
    sl_api_config cfg;           /* strings point into the copies below */
    char *name, *root, *key;
    uv_loop_t *loop;
    sl_api_state state;
    sl_api_engine eng;
    bool have_engine;
    const sl_tok *tok;
    const sl_chat *chat;
    int n_vocab;
    sl_metrics metrics;
    long long created;           /* unix time at start ("created" of the model) */
    sl__gen *gens;               /* generation requests in flight (doubly linked) */
    int n_inflight;              /* of them */
    int inflight_seqs;           /* their sequences that were submitted and are not done */
    sl_rng rng;                  /* response ids */
};

/* Sends an OpenAI error response (status, type and code from the table; code overrides the
 * table's when non-NULL) and counts it in the metrics. */
void sl__api_error(sl_api *a, sl_http_req *r, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Sends 200 application/json with body, and logs the request. */
void sl__api_json(sl_api *a, sl_http_req *r, const sl_buf *body, int prompt_tokens, int gen_tokens);
/* One INFO line per request (DEBUG for /health and /metrics). */
void sl__api_log(const sl_http_req *r, int status, int prompt_tokens, int gen_tokens);

/* POST /v1/completions (chat false) and /v1/chat/completions: root is the parsed body, owned
 * (freed) by the callee. */
void sl__api_generate(sl_api *a, sl_http_req *r, cJSON *root, bool chat);
/* Chat messages (OpenAI's array) → prompt token ids through the chat template. Returns 0, or
 * an HTTP status with a message in err and the offending parameter in *param. */
int sl__api_chat_tokens(sl_api *a, const cJSON *messages, bool add_generation_prompt, bool continue_final,
                        sl_tok_ids *ids, char *err, size_t cap, const char **param);
/* Acts on one engine event. */
void sl__api_event(sl_api *a, sl_engine_event *ev);
void sl__api_abort_all(sl_api *a);

#endif
