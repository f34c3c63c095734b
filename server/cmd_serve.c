/* cmd_serve.c — `sluice serve`: the OpenAI-compatible HTTP server (api.h) over one engine.
 *
 * Start-up: the listener opens at once and /health answers 503 "Loading model" while the
 * model, tokenizer, chat template and engine are built in libuv's thread pool and the model
 * runs a warm-up forward pass (sl_model_warmup); then 200.
 * SIGTERM or SIGINT drains: the listener closes, /health and new generation requests get
 * 503, requests in flight finish (aborted after --shutdown-timeout seconds, or at once on a
 * second signal), then the engine stops and the process exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "../kernels/cpu/cpu.h"
#include "../models/chat.h"
#include "../models/model.h"
#include "../models/tokenizer.h"
#include "../scheduler/engine.h"
#include "api.h"
#include "cli.h"
#include "commands.h"
#include "http.h"

typedef struct opts {
    const char *model, *host, *api_key, *name, *chat_template, *device, *quant, *log_level, *cpu_act;
    int port, max_num_seqs, max_batched, max_model_len, block_size, max_queue, threads, seed, num_blocks,
        no_prefix_cache, max_body, max_conns, fake_model, batch_invariant, no_warmup;
    float kv_space_gib, shutdown_timeout, header_timeout, keepalive_timeout;
} opts;

typedef struct server {
    opts o;
    uv_loop_t loop;
    uv_async_t wake;             /* the engine's notify */
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_timer, deadline;
    uv_work_t load;
    sl_http_server *http;
    sl_api *api;
    /* built by the loader */
    sl_backend *be;
    sl_model *model;
    sl_tok *tok;
    sl_chat *chat;
    sl_engine *engine;
    char err[SL_ERRMSG];
    int max_model_len, n_blocks;
    bool loading, draining, stopping, failed, deadline_passed;
} server;

static void on_wake(uv_async_t *h) {
    server *s = h->data;
    sl_api_pump(s->api);
}

static void notify(void *ctx) { uv_async_send(ctx); }

/* ---- loading (thread pool) ----------------------------------------------------------------- */

static void load_work(uv_work_t *w) {
    server *s = w->data;
    const opts *o = &s->o;
    sl_gguf *g = NULL;
    int rc;
    if ((rc = sl_gguf_open(&g, o->model, s->err)) || (rc = sl_tok_create(&s->tok, g, s->err))) goto fail;
    char cerr[SL_ERRMSG] = "";
    if (sl_chat_create(&s->chat, g, s->tok, o->chat_template, cerr)) {
        if (o->chat_template) {
            snprintf(s->err, sizeof s->err, "--chat-template: %.200s", cerr);
            goto fail;
        }
        SL_LOG(SL_LOG_WARN, "serve", "chat completions are off: %s", cerr);
    }
    sl_model_opts mo = {.quant_to = -1, .group = 32};
    if (o->quant && !strcmp(o->quant, "int8")) mo.quant_to = SL_WF_QW8;
    else if (o->quant && !strcmp(o->quant, "int4")) mo.quant_to = SL_WF_QW4;
    if (o->fake_model) { /* the weights stay unread; the stand-in needs no backend */
        rc = sl_model_create_fake(&s->model, g, NULL, s->tok, s->err);
    } else {
        s->be = sl_device_backend(o->device, o->threads, o->batch_invariant, o->cpu_act);
        rc = s->be ? sl_model_load_gguf(&s->model, g, s->be, &mo, s->err)
                   : sl_fail(s->err, SL_EIO, "--device %s: the backend could not be created", o->device);
    }
    g = NULL;
    if (rc) goto fail;
    const sl_hparams *hp = &s->model->hp;
    /* KV cache: f32 on the CPU, f16 on the GPU, two tensors per layer (none for the fake model) */
    size_t per_block = sl_kv_cache_block_bytes(s->model, o->block_size);
    size_t budget = (size_t)((double)o->kv_space_gib * (double)(1ull << 30));
    size_t fit_z = per_block ? budget / per_block : (size_t)1 << 30;
    int fit = (int)(fit_z > (size_t)1 << 30 ? 1 << 30 : fit_z);
    int L = o->max_model_len > 0 ? o->max_model_len : (hp->n_ctx_train > 0 ? hp->n_ctx_train : 2048);
    int per_seq = (L + o->block_size - 1) / o->block_size;
    int nb = o->num_blocks;
    if (!nb) {
        long long want = (long long)o->max_num_seqs * per_seq + 1;
        nb = want < fit ? (int)want : fit;
        if (nb < per_seq + 1) {
            if (o->max_model_len > 0) {
                snprintf(s->err, sizeof s->err,
                         "--max-model-len %d needs %d KV blocks of %d tokens (%.2f GiB) but --kv-cache-space allows %d: "
                         "raise --kv-cache-space or lower --max-model-len",
                         L, per_seq + 1, o->block_size, (double)(per_seq + 1) * (double)per_block / (1 << 30), fit);
                rc = SL_EINVAL;
                goto fail;
            }
            int L2 = (fit - 1) * o->block_size;
            if (L2 < o->block_size) {
                snprintf(s->err, sizeof s->err, "--kv-cache-space is too small for even one KV block");
                rc = SL_EINVAL;
                goto fail;
            }
            SL_LOG(SL_LOG_WARN, "serve", "max_model_len lowered from %d to %d to fit --kv-cache-space %.2f GiB", L, L2,
                   (double)o->kv_space_gib);
            L = L2;
            nb = fit;
        }
    }
    s->max_model_len = L;
    s->n_blocks = nb;
    /* the warm-up, before the engine reserves its workspace and cache: the common paths' first
     * launches (on a GPU: kernel loading, cuBLAS, the device sampler) and the weights' first
     * reads happen here, not in the first request */
    if (!o->no_warmup && !o->fake_model) {
        int n = sl_device_warmup_tokens(s->be, o->device);
        if (n > o->max_batched) n = o->max_batched;
        if (n > L - 1) n = L - 1;
        if (n < 1) n = 1;
        const double t0 = sl_time_s();
        if ((rc = sl_model_warmup(s->model, n))) {
            snprintf(s->err, sizeof s->err, "warm-up (%d tokens) failed: %s (--no-warmup skips it)", n,
                     sl_strerror(rc));
            goto fail;
        }
        SL_LOG(SL_LOG_INFO, "serve", "warmed up: %d token%s and a decode step in %.0f ms", n, n > 1 ? "s" : "",
               1e3 * (sl_time_s() - t0));
    }
    sl_engine_config ec = {.model = s->model, .tok = s->tok, .seed = (uint64_t)o->seed, .notify = notify,
                           .notify_ctx = &s->wake};
    sl_sched_config_defaults(&ec.sched);
    ec.sched.n_blocks = nb;
    ec.sched.block_size = o->block_size;
    ec.sched.max_num_seqs = o->max_num_seqs;
    ec.sched.max_num_batched_tokens = o->max_batched;
    ec.sched.max_model_len = L;
    ec.sched.prefix_cache = !o->no_prefix_cache;
    if ((rc = sl_engine_create(&s->engine, &ec, s->err))) goto fail;
    return;
fail:
    sl_gguf_close(g);
    s->failed = true;
}

static void begin_shutdown(server *s);

static void load_done(uv_work_t *w, int status) {
    server *s = w->data;
    s->loading = false;
    if (status < 0 || s->failed) {
        s->failed = true;
        SL_LOG(SL_LOG_ERROR, "serve", "%s: %s", s->o.model, s->err[0] ? s->err : "loading cancelled");
        begin_shutdown(s);
        return;
    }
    sl_api_engine e;
    sl_api_engine_wrap(&e, s->engine);
    /* the API's max_model_len is known only now */
    sl_api_set_model(s->api, &e, s->tok, s->chat, s->model->hp.n_vocab, s->max_model_len);
    const int cpu = s->be && !strcmp(s->be->name, "cpu");
    printf("sluice: ready: %s (%s) on %s%s, max_model_len %d, %d KV blocks of %d tokens%s\n", s->o.name,
           s->model->desc, s->be ? s->be->name : "no device (fake model)",
           !cpu ? "" : strcasecmp(s->o.cpu_act, "f32") ? " (int8 activations)" : " (f32 activations)",
           s->max_model_len, s->n_blocks, s->o.block_size, s->chat ? "" : "; chat completions off (no chat template)");
    fflush(stdout);
    if (s->draining) begin_shutdown(s);
}

/* ---- draining and shutdown ----------------------------------------------------------------- */

static void close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_http_closed(void *ctx) {
    server *s = ctx;
    close_handle((uv_handle_t *)&s->wake);
    close_handle((uv_handle_t *)&s->sigterm);
    close_handle((uv_handle_t *)&s->sigint);
    close_handle((uv_handle_t *)&s->drain_timer);
    close_handle((uv_handle_t *)&s->deadline);
}

/* Everything in flight is finished (or the model never loaded): stop the engine, deliver its
 * last events, close every handle. */
static void begin_shutdown(server *s) {
    if (s->stopping || s->loading) return;
    s->stopping = true;
    uv_timer_stop(&s->drain_timer);
    uv_timer_stop(&s->deadline);
    if (s->engine) {
        sl_engine_shutdown(s->engine);
        sl_api_pump(s->api);
    }
    if (s->http) sl_http_server_close(s->http, on_http_closed, s);
    else on_http_closed(s);
}

static void on_drain_tick(uv_timer_t *t) {
    server *s = t->data;
    /* finished responses still on their way out (a slow reader) hold the shutdown too, until
     * the deadline */
    if (sl_api_n_inflight(s->api) == 0 && sl_http_n_active(s->http) == 0 &&
        (s->deadline_passed || sl_http_n_flushing(s->http) == 0))
        begin_shutdown(s);
}

static void on_deadline(uv_timer_t *t) {
    server *s = t->data;
    s->deadline_passed = true;
    SL_LOG(SL_LOG_WARN, "serve", "shutdown timeout: aborting %d requests in flight", sl_api_n_inflight(s->api));
    sl_api_abort_all(s->api);
}

static void on_signal(uv_signal_t *h, int signum) {
    server *s = h->data;
    if (s->draining) {
        SL_LOG(SL_LOG_WARN, "serve", "second signal: aborting %d requests in flight", sl_api_n_inflight(s->api));
        sl_api_abort_all(s->api);
        return;
    }
    s->draining = true;
    SL_LOG(SL_LOG_INFO, "serve", "%s: draining (%d requests in flight)", strsignal(signum), sl_api_n_inflight(s->api));
    sl_api_set_state(s->api, SL_API_DRAINING);
    sl_http_server_stop_accepting(s->http);
    uv_timer_start(&s->drain_timer, on_drain_tick, 0, 20);
    uv_timer_start(&s->deadline, on_deadline, (uint64_t)(s->o.shutdown_timeout * 1000), 0);
}

/* ---- the command --------------------------------------------------------------------------- */

static char *default_name(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcasecmp(base + n - 5, ".gguf")) n -= 5;
    char *s = malloc(n + 1);
    SL_CHECK(s);
    memcpy(s, base, n);
    s[n] = 0;
    return s;
}

int sl_cmd_serve(int argc, char **argv) {
    server *s = sl_xcalloc(1, sizeof *s);
    opts *o = &s->o;
    const cli_opt table[] = {
        {"model", 'm', CLI_STR, NULL, "GGUF model file (required; with --fake-model only its tokenizer and chat template "
                                      "are used)", &o->model},
        {"host", 0, CLI_STR, "127.0.0.1", "address to listen on (0.0.0.0 or :: for every interface)", &o->host},
        {"port", 'p', CLI_INT, "8000", "TCP port (0: any free port, printed at start)", &o->port},
        {"api-key", 0, CLI_STR, NULL, "require 'Authorization: Bearer KEY' on every route but /health", &o->api_key},
        {"served-model-name", 0, CLI_STR, NULL, "the model's name in the API (default: the file name without .gguf)",
         &o->name},
        {"max-num-seqs", 0, CLI_INT, "256", "running sequences at most", &o->max_num_seqs},
        {"max-num-batched-tokens", 0, CLI_INT, "2048", "tokens per engine step at most", &o->max_batched},
        {"max-model-len", 0, CLI_INT, "0", "prompt + output tokens at most (0: the model's context length)",
         &o->max_model_len},
        {"block-size", 0, CLI_INT, "16", "KV cache block size in tokens", &o->block_size},
        {"max-queue", 0, CLI_INT, "1024", "sequences waiting beyond --max-num-seqs before requests get 429",
         &o->max_queue},
        {"chat-template", 0, CLI_STR, NULL, "chat template instead of the model's: a built-in name (llama3, chatml, ...) "
                                            "or Jinja source", &o->chat_template},
        {"threads", 0, CLI_INT, "0", "CPU threads (0: all cores)", &o->threads},
        {"device", 0, CLI_STR, "cpu", "where the model runs: cpu, or cuda (the first GPU; builds with nvcc only)",
         &o->device},
        {"cpu-activations", 0, CLI_STR, "int8", SL_CPU_ACT_HELP, &o->cpu_act},
        {"quantization", 0, CLI_STR, NULL, "quantize F16/BF16/F32 weights at load: int8 or int4", &o->quant},
        {"batch-invariant", 0, CLI_BOOL, NULL, "a token's logits never depend on the batch around it, as on the CPU (on cuda: no f16 GEMM for large steps, one matmul launch plan for every step size "
         "and no split-K attention: slower prefill and long contexts)", &o->batch_invariant},
        {"kv-cache-space", 0, CLI_FLOAT, "4", "KV cache memory in GiB (like vLLM's VLLM_CPU_KVCACHE_SPACE)",
         &o->kv_space_gib},
        {"num-blocks", 0, CLI_INT, "0", "KV cache blocks (0: from --kv-cache-space)", &o->num_blocks},
        {"no-prefix-cache", 0, CLI_BOOL, NULL, "turn automatic prefix caching off", &o->no_prefix_cache},
        {"seed", 0, CLI_INT, "0", "seed of requests that bring none", &o->seed},
        {"shutdown-timeout", 0, CLI_FLOAT, "30", "seconds to let requests finish after SIGTERM", &o->shutdown_timeout},
        {"header-timeout", 0, CLI_FLOAT, "30", "seconds to receive a request's headers (and, again, its body): 408",
         &o->header_timeout},
        {"keep-alive-timeout", 0, CLI_FLOAT, "15", "seconds an idle keep-alive connection stays open",
         &o->keepalive_timeout},
        {"max-body-size", 0, CLI_INT, "33554432", "request body bytes at most: 413", &o->max_body},
        {"max-connections", 0, CLI_INT, "4096", "open connections at most: 503", &o->max_conns},
        {"log-level", 0, CLI_STR, "info", "debug, info, warn or error", &o->log_level},
        {"no-warmup", 0, CLI_BOOL, NULL, "skip the warm-up forward pass at start (on a GPU a step of 256 tokens and a "
                                         "decode step, on the CPU one token): the first request then pays the first "
                                         "launches and reads", &o->no_warmup},
        {"fake-model", 0, CLI_BOOL, NULL, "benchmarking aid: load no weights and run a stand-in whose forward pass costs "
                                          "next to nothing and emits a fixed cycle of plain tokens, so that throughput "
                                          "measures the server itself (HTTP, SSE, scheduling, sampling, detokenizing)",
         &o->fake_model},
    };
    int rc = cli_parse("serve", table, sizeof table / sizeof table[0], argc, argv);
    if (rc) {
        free(s);
        return rc > 0 ? 0 : 2;
    }
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    int lvl = -1;
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(o->log_level, levels[i])) lvl = i;
    const char *bad = !o->model                                         ? "--model is required"
                      : lvl < 0                                         ? "--log-level must be debug, info, warn or error"
                      : o->port < 0 || o->port > 65535                  ? "--port must be in 0..65535"
                      : o->max_num_seqs < 1 || o->max_batched < 1       ? "--max-num-seqs and --max-num-batched-tokens must be >= 1"
                      : o->block_size < 1 || o->block_size > 1024       ? "--block-size must be in 1..1024"
                      : o->max_model_len < 0 || o->max_queue < 0        ? "--max-model-len and --max-queue must be >= 0"
                      : o->num_blocks < 0 || !(o->kv_space_gib > 0)     ? "--num-blocks must be >= 0 and --kv-cache-space > 0"
                      : o->max_body < 1 || o->max_conns < 1             ? "--max-body-size and --max-connections must be >= 1"
                      : !(o->shutdown_timeout >= 0) || !(o->header_timeout > 0) || !(o->keepalive_timeout > 0)
                          ? "timeouts must be positive"
                      : o->quant && strcmp(o->quant, "int8") && strcmp(o->quant, "int4")
                          ? "--quantization must be int8 or int4"
                          : NULL;
    if (bad) {
        fprintf(stderr, "sluice serve: %s\n", bad);
        free(s);
        return 2;
    }
    if ((rc = sl_device_check("serve", o->device, o->cpu_act))) {
        free(s);
        return rc;
    }
    sl_log_level_current = lvl;
    char *name = o->name ? NULL : default_name(o->model);
    if (name) o->name = name;
    signal(SIGPIPE, SIG_IGN);

    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->wake, on_wake);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigint);
    uv_timer_init(&s->loop, &s->drain_timer);
    uv_timer_init(&s->loop, &s->deadline);
    s->wake.data = s->sigterm.data = s->sigint.data = s->drain_timer.data = s->deadline.data = s;

    /* max_model_len for the API is what the loader settles on; until then the option's */
    sl_api_config ac = {.served_model_name = o->name, .model_root = o->model, .api_key = o->api_key,
                        .max_model_len = o->max_model_len > 0 ? o->max_model_len : 1, .max_num_seqs = o->max_num_seqs, .max_queue = o->max_queue,
                        .inline_tokenize_bytes = 16 << 10};
    sl_http_config hc;
    sl_http_config_defaults(&hc);
    hc.host = o->host;
    hc.port = o->port;
    hc.max_body_bytes = (size_t)o->max_body;
    hc.max_conns = o->max_conns;
    hc.header_timeout_ms = hc.body_timeout_ms = (int)(o->header_timeout * 1000);
    hc.keepalive_timeout_ms = (int)(o->keepalive_timeout * 1000);
    hc.error_body = sl_api_error_body;
    int status = 1;
    char err[256];

    /* the API reports the loader's max_model_len once loading is done (sl_api_set_model) */
    sl_api_create(&s->api, &ac, &s->loop);
    s->loading = true;
    s->load.data = s;
    uv_queue_work(&s->loop, &s->load, load_work, load_done);
    if (sl_http_server_create(&s->http, &s->loop, &hc, sl_api_handle, s->api, err, sizeof err) < 0) {
        fprintf(stderr, "sluice serve: %s\n", err);
        s->draining = true; /* load_done shuts down */
        s->http = NULL;
    } else {
        printf("sluice: listening on http://%s%s%s:%d (loading %s)\n", strchr(o->host, ':') ? "[" : "", o->host,
               strchr(o->host, ':') ? "]" : "", sl_http_port(s->http), o->model);
        fflush(stdout);
        uv_signal_start(&s->sigterm, on_signal, SIGTERM);
        uv_signal_start(&s->sigint, on_signal, SIGINT);
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    /* the signal handles are closed: a late signal must not kill the teardown below */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    if (s->http && !s->failed) status = 0;
    if (uv_loop_close(&s->loop) != 0) SL_LOG(SL_LOG_WARN, "serve", "event loop closed with handles open");
    sl_engine_destroy(s->engine);
    sl_api_destroy(s->api);
    sl_http_server_destroy(s->http);
    sl_chat_destroy(s->chat);
    sl_tok_destroy(s->tok);
    sl_model_free(s->model);
    if (s->be) s->be->destroy(s->be);
    free(name);
    free(s);
    if (status == 0) SL_LOG(SL_LOG_INFO, "serve", "stopped");
    return status;
}
