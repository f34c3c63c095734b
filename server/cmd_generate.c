/* cmd_generate.c — `sluice generate`: one sequence, prompt given as token ids, greedy or
 * sampled, with optional log-probabilities of generated (and, with --echo, prompt) tokens. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpu/cpu.h"
#include "../models/model.h"
#include "../models/sample.h"
#include "cli.h"
#include "commands.h"

enum { PREFILL_CHUNK = 256 };

typedef struct lp_entry {
    int32_t token;
    float logprob;
    int32_t top_ids[64];
    float top_lps[64];
} lp_entry;

/* Parses "1,2,3" into a malloc'd array; -1 on a malformed list. */
static int parse_ids(const char *s, int32_t **out, int *n) {
    int cap = 16, k = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            free(v);
            return -1;
        }
        if (k == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[k++] = (int32_t)x;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) {
            free(v);
            return -1;
        }
    }
    *out = v;
    *n = k;
    return 0;
}

static void fill_lp(lp_entry *e, const float *logits, int n_vocab, int32_t token, int k) {
    e->token = token;
    e->logprob = sl_logprob(logits, n_vocab, token);
    if (k > 0) sl_top_logprobs(logits, n_vocab, k, e->top_ids, e->top_lps);
}

/* JSON has no NaN or infinity: a non-finite log-probability prints as null. */
static void print_num(float x) {
    if (isfinite(x)) printf("%.7g", x);
    else printf("null");
}

static void print_lp(const lp_entry *e, int k) {
    printf("{\"token\":%d,\"logprob\":", e->token);
    print_num(e->logprob);
    printf(",\"top\":[");
    for (int i = 0; i < k; i++) {
        printf("%s[%d,", i ? "," : "", e->top_ids[i]);
        print_num(e->top_lps[i]);
        printf("]");
    }
    printf("]}");
}

int sl_cmd_generate(int argc, char **argv) {
    const char *model_path, *prompt_s, *quant;
    int n_predict, top_k, logprobs, echo, json, threads, seed, block_size, ignore_eos;
    float temperature, top_p;
    const cli_opt opts[] = {
        {"model", 'm', CLI_STR, NULL, "GGUF model file (required)", &model_path},
        {"prompt-tokens", 0, CLI_STR, NULL, "prompt as comma-separated token ids (required)", &prompt_s},
        {"n-predict", 'n', CLI_INT, "16", "tokens to generate", &n_predict},
        {"temperature", 0, CLI_FLOAT, "0", "sampling temperature (0: greedy)", &temperature},
        {"top-k", 0, CLI_INT, "0", "sample from the k most likely tokens (0: all)", &top_k},
        {"top-p", 0, CLI_FLOAT, "1", "nucleus sampling mass (1: off)", &top_p},
        {"seed", 0, CLI_INT, "0", "sampling seed", &seed},
        {"logprobs", 0, CLI_INT, "0", "print the top-K log-probabilities of each generated token (K <= 64)", &logprobs},
        {"echo", 0, CLI_BOOL, NULL, "also give log-probabilities of every prompt position", &echo},
        {"ignore-eos", 0, CLI_BOOL, NULL, "keep generating after end-of-sequence tokens", &ignore_eos},
        {"json", 0, CLI_BOOL, NULL, "print one JSON object", &json},
        {"threads", 0, CLI_INT, "0", "CPU threads (0: all cores)", &threads},
        {"quantization", 0, CLI_STR, NULL, "quantize F16/BF16/F32 weights at load: int8 or int4", &quant},
        {"block-size", 0, CLI_INT, "16", "KV cache block size in tokens", &block_size},
    };
    int rc = cli_parse("generate", opts, sizeof opts / sizeof opts[0], argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    if (!model_path || !prompt_s) {
        fprintf(stderr, "sluice generate: --model and --prompt-tokens are required\n");
        return 2;
    }
    sl_model_opts mo = {.quant_to = -1, .group = 32};
    if (quant && !strcmp(quant, "int8")) mo.quant_to = SL_WF_QW8;
    else if (quant && !strcmp(quant, "int4")) mo.quant_to = SL_WF_QW4;
    else if (quant) {
        fprintf(stderr, "sluice generate: --quantization must be int8 or int4\n");
        return 2;
    }
    if (n_predict < 0 || logprobs < 0 || logprobs > 64 || block_size < 1 || block_size > 1024 || top_k < 0 ||
        !(top_p > 0 && top_p <= 1) || temperature < 0) {
        fprintf(stderr, "sluice generate: invalid option value (n >= 0, 0 <= logprobs <= 64, 0 < top-p <= 1, ...)\n");
        return 2;
    }
    int32_t *prompt;
    int P;
    if (parse_ids(prompt_s, &prompt, &P) || P == 0) {
        fprintf(stderr, "sluice generate: --prompt-tokens must be a non-empty list of token ids like 1,2,3\n");
        return 2;
    }

    sl_backend *be = sl_cpu_backend_create(threads);
    sl_model *m = NULL;
    char err[SL_ERRMSG] = "";
    int status = 1;
    float *logits = NULL;
    lp_entry *plp = NULL, *glp = NULL;
    int32_t *out = NULL, *blocks = NULL, *pos = NULL, *slots = NULL, *lidx = NULL;
    uint64_t *keys = NULL;
    float *probs = NULL;
    sl_kv_cache kv = {0};
    if ((rc = sl_model_load(&m, model_path, be, &mo, err))) {
        fprintf(stderr, "sluice generate: %s: %s\n", model_path, err);
        goto done;
    }
    const int V = m->hp.n_vocab;
    for (int i = 0; i < P; i++)
        if (prompt[i] >= V) {
            fprintf(stderr, "sluice generate: prompt token %d is out of range (vocabulary of %d)\n", prompt[i], V);
            status = 2;
            goto done;
        }
    const int total = P + n_predict;
    if (m->hp.n_ctx_train > 0 && total > m->hp.n_ctx_train) {
        fprintf(stderr, "sluice generate: prompt (%d) + n (%d) exceeds the model's context length %d\n", P, n_predict,
                m->hp.n_ctx_train);
        status = 2;
        goto done;
    }
    const int n_blocks = (total + block_size - 1) / block_size;
    const int chunk = P < PREFILL_CHUNK ? P : PREFILL_CHUNK;
    if (sl_model_reserve(m, chunk, 1, n_blocks, echo ? chunk : 1) ||
        sl_kv_cache_init(&kv, m, n_blocks + 1, block_size)) {
        fprintf(stderr, "sluice generate: out of memory for the KV cache or activations\n");
        goto done;
    }
    blocks = malloc((size_t)n_blocks * sizeof *blocks);
    for (int i = 0; i < n_blocks; i++) blocks[i] = i + 1; /* block 0 is the null block */
    pos = malloc((size_t)(chunk > 1 ? chunk : 1) * sizeof *pos);
    slots = malloc((size_t)(chunk > 1 ? chunk : 1) * sizeof *slots);
    lidx = malloc((size_t)(chunk > 1 ? chunk : 1) * sizeof *lidx);
    logits = malloc((size_t)(echo ? chunk : 1) * V * sizeof *logits);
    plp = calloc((size_t)P, sizeof *plp);
    glp = calloc((size_t)(n_predict ? n_predict : 1), sizeof *glp);
    out = malloc((size_t)(n_predict ? n_predict : 1) * sizeof *out);
    keys = malloc((size_t)V * sizeof *keys);
    probs = malloc((size_t)V * sizeof *probs);
    sl_rng rng;
    sl_rng_seed(&rng, (uint64_t)seed);
    sl_sampling sp = {.temperature = temperature, .top_k = top_k, .top_p = top_p};

    /* prefill in chunks; with --echo, logits at every prompt position */
    double t0 = sl_time_s();
    const float *last = NULL;
    for (int c0 = 0; c0 < P; c0 += chunk) {
        int T = P - c0 < chunk ? P - c0 : chunk;
        for (int i = 0; i < T; i++) {
            pos[i] = c0 + i;
            slots[i] = blocks[(c0 + i) / block_size] * block_size + (c0 + i) % block_size;
            lidx[i] = i;
        }
        int nl = echo ? T : (c0 + T == P ? 1 : 0);
        if (!echo) lidx[0] = T - 1;
        int32_t q_start = 0, q_len = T, ctx_len = c0 + T;
        sl_batch b = {.n_tokens = T, .tokens = prompt + c0, .pos = pos, .slot_mapping = slots, .n_seqs = 1,
                      .max_blocks = n_blocks, .q_start = &q_start, .q_len = &q_len, .ctx_len = &ctx_len,
                      .block_tables = blocks, .n_logits = nl, .logit_idx = lidx};
        if ((rc = sl_forward(m, &kv, &b, logits))) {
            fprintf(stderr, "sluice generate: forward failed: %s\n", sl_strerror(rc));
            goto done;
        }
        if (echo)
            for (int i = 0; i < T && c0 + i + 1 < P; i++)
                fill_lp(&plp[c0 + i + 1], logits + (size_t)i * V, V, prompt[c0 + i + 1], logprobs);
        if (nl) last = logits + (size_t)(nl - 1) * V;
    }
    double t1 = sl_time_s();
    int n_out = 0;
    const char *finish = "length";
    for (int i = 0; i < n_predict; i++) {
        int32_t tok = sl_sample(last, V, &sp, &rng, keys, probs);
        if (logprobs) fill_lp(&glp[i], last, V, tok, logprobs);
        out[n_out++] = tok;
        if (!ignore_eos && (tok == m->hp.eos_id || tok == m->hp.eot_id)) {
            finish = "stop";
            break;
        }
        if (i + 1 == n_predict) break;
        int p = P + i;
        int32_t q_start = 0, q_len = 1, ctx_len = p + 1, sl = blocks[p / block_size] * block_size + p % block_size,
                li = 0;
        sl_batch b = {.n_tokens = 1, .tokens = &tok, .pos = &p, .slot_mapping = &sl, .n_seqs = 1,
                      .max_blocks = n_blocks, .q_start = &q_start, .q_len = &q_len, .ctx_len = &ctx_len,
                      .block_tables = blocks, .n_logits = 1, .logit_idx = &li};
        if ((rc = sl_forward(m, &kv, &b, logits))) {
            fprintf(stderr, "sluice generate: forward failed: %s\n", sl_strerror(rc));
            goto done;
        }
        last = logits;
    }
    double t2 = sl_time_s();
    double pms = (t1 - t0) * 1e3, dms = (t2 - t1) * 1e3;
    /* decode timing counts the forward steps after the first generated token */
    int n_dec = n_out > 1 ? n_out - 1 : 0;

    if (json) {
        printf("{\"prompt_tokens\":[");
        for (int i = 0; i < P; i++) printf("%s%d", i ? "," : "", prompt[i]);
        printf("],\"tokens\":[");
        for (int i = 0; i < n_out; i++) printf("%s%d", i ? "," : "", out[i]);
        printf("],\"finish_reason\":\"%s\"", finish);
        if (logprobs) {
            printf(",\"logprobs\":[");
            for (int i = 0; i < n_out; i++) {
                if (i) printf(",");
                print_lp(&glp[i], logprobs);
            }
            printf("]");
        }
        if (echo) {
            printf(",\"prompt_logprobs\":[null");
            for (int i = 1; i < P; i++) {
                printf(",");
                print_lp(&plp[i], logprobs);
            }
            printf("]");
        }
        printf(",\"timings\":{\"prompt_ms\":%.3f,\"prompt_tokens_per_s\":%.2f,\"decode_ms\":%.3f,"
               "\"decode_tokens_per_s\":%.2f}}\n",
               pms, P / (pms / 1e3), dms, n_dec ? n_dec / (dms / 1e3) : 0.0);
    } else {
        for (int i = 0; i < n_out; i++) printf("%s%d", i ? " " : "", out[i]);
        printf("\n");
        fprintf(stderr, "sluice: %s; prompt %d tokens in %.1f ms (%.1f tok/s), %d generated in %.1f ms (%.1f tok/s), finish %s\n",
                m->desc, P, pms, P / (pms / 1e3), n_out, dms, n_dec ? n_dec / (dms / 1e3) : 0.0, finish);
    }
    status = 0;
done:
    if (kv.k) sl_kv_cache_deinit(&kv, m);
    sl_model_free(m);
    be->destroy(be);
    free(prompt);
    free(logits);
    free(plp);
    free(glp);
    free(out);
    free(blocks);
    free(pos);
    free(slots);
    free(lidx);
    free(keys);
    free(probs);
    return status;
}
