/* cmd_generate.c — `sluice generate`: one sequence, greedy or sampled, with optional
 * log-probabilities of generated (and, with --echo, prompt) tokens. The prompt is token ids
 * (--prompt-tokens), text (--prompt), or a conversation rendered through the model's chat
 * template (--chat with --prompt and --system, or --messages-json); with a text prompt the
 * generated text is printed as it is produced (the streaming detokenizer). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpu/cpu.h"
#include "../models/chat.h"
#include "../models/model.h"
#include "../models/sample.h"
#include "../scheduler/sampling.h"
#include "../models/tokenizer.h"
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

/* JSON string: quotes, backslashes and control characters escaped; other bytes as they are. */
static void print_json_str(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len + 1 < cap || cap >= ((size_t)64 << 20)) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) free(buf);
        buf = nb;
    }
    if (buf && (ferror(f) || len + 1 >= cap)) { /* a read error, or larger than 64 MiB */
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[len] = 0, *n = len;
    return buf;
}

/* Text prompt → token ids: raw text (--prompt) or a conversation through the chat template.
 * Keeps the tokenizer in *tok for decoding; prints the rendered prompt with --print-prompt.
 * Returns 0, or the exit status. */
static int text_prompt(const char *model_path, const char *prompt, const char *system, const char *messages_path,
                       const char *tmpl, bool chat, bool print_prompt, bool json, sl_tok **tok, int32_t **ids, int *n_ids) {
    char err[SL_ERRMSG] = "";
    sl_gguf *g = NULL;
    sl_chat *c = NULL;
    char *rendered = NULL, *messages = NULL;
    size_t rlen = 0, mlen = 0;
    int rc;
    sl_tok_ids v = {0};
    int status = 1;
    if (sl_gguf_open(&g, model_path, err) || sl_tok_create(tok, g, err)) {
        fprintf(stderr, "sluice generate: %s: %s\n", model_path, err);
        goto out;
    }
    if (!chat) {
        rendered = strdup(prompt);
        rlen = strlen(prompt);
        if (!rendered || sl_tok_encode(*tok, prompt, rlen, SL_TOK_ADD_SPECIAL | SL_TOK_PARSE_SPECIAL, &v)) {
            fprintf(stderr, "sluice generate: prompt too long\n");
            goto out;
        }
    } else {
        if ((rc = sl_chat_create(&c, g, *tok, tmpl, err))) {
            fprintf(stderr, "sluice generate: %s: %s\n", model_path, err);
            if (rc == SL_EINVAL || rc == SL_ENOTFOUND || rc == SL_EUNSUPPORTED) {
                fprintf(stderr, "built-in chat templates:");
                for (const char *const *n = sl_chat_builtin_names(); *n; n++) fprintf(stderr, " %s", *n);
                fprintf(stderr, "\n");
            }
            status = 2;
            goto out;
        }
        if (messages_path) {
            if (!(messages = read_file(messages_path, &mlen))) {
                fprintf(stderr, "sluice generate: cannot read %s (or larger than 64 MiB)\n", messages_path);
                status = 2;
                goto out;
            }
            rc = sl_chat_render_json(c, messages, mlen, true, &rendered, &rlen, err);
        } else {
            sl_chat_msg m[2];
            size_t n = 0;
            if (system) m[n++] = (sl_chat_msg){"system", system};
            m[n++] = (sl_chat_msg){"user", prompt};
            rc = sl_chat_render(c, m, n, true, &rendered, &rlen, err);
        }
        if (rc) {
            fprintf(stderr, "sluice generate: %s\n", err);
            status = rc == SL_ENOMEM ? 1 : 2;
            goto out;
        }
        if (sl_chat_encode(*tok, rendered, rlen, &v)) {
            fprintf(stderr, "sluice generate: prompt too long\n");
            goto out;
        }
    }
    if (print_prompt) {
        if (json) {
            printf("{\"prompt\":");
            print_json_str(rendered, rlen);
            printf(",\"prompt_tokens\":[");
            for (size_t i = 0; i < v.n; i++) printf("%s%d", i ? "," : "", v.v[i]);
            printf("]");
            if (c) {
                const char *fam = sl_chat_family(c);
                printf(",\"template\":\"%s\",\"family\":", sl_chat_is_jinja(c) ? "jinja" : "builtin");
                if (fam) print_json_str(fam, strlen(fam));
                else printf("null");
            }
            printf("}\n");
        } else {
            fwrite(rendered, 1, rlen, stdout);
            putchar('\n');
        }
    }
    *ids = v.v, *n_ids = (int)v.n;
    v.v = NULL;
    status = 0;
out:
    sl_tok_ids_free(&v);
    free(rendered);
    free(messages);
    sl_chat_destroy(c);
    sl_gguf_close(g);
    return status;
}

int sl_cmd_generate(int argc, char **argv) {
    const char *model_path, *prompt_s, *quant, *device, *text, *system, *messages, *tmpl, *cpu_act;
    int n_predict, top_k, logprobs, echo, json, threads, seed, block_size, ignore_eos, chat, print_prompt;
    float temperature, top_p;
    const cli_opt opts[] = {
        {"model", 'm', CLI_STR, NULL, "GGUF model file (required)", &model_path},
        {"prompt-tokens", 0, CLI_STR, NULL, "prompt as comma-separated token ids", &prompt_s},
        {"prompt", 'p', CLI_STR, NULL, "prompt text (with --chat: the user message)", &text},
        {"chat", 0, CLI_BOOL, NULL, "render the prompt through the model's chat template", &chat},
        {"system", 0, CLI_STR, NULL, "system message (implies --chat)", &system},
        {"messages-json", 0, CLI_STR, NULL, "file with the conversation as a JSON array of {role, content} (implies --chat)", &messages},
        {"chat-template", 0, CLI_STR, NULL, "with --chat: the template to use instead of the model's, a built-in name (llama3, chatml, ...) or Jinja source", &tmpl},
        {"print-prompt", 0, CLI_BOOL, NULL, "print the prompt text and its token ids, then stop (the weights are not loaded)", &print_prompt},
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
        {"device", 0, CLI_STR, "cpu", "where the model runs: cpu, or cuda (the first GPU; builds with nvcc only)", &device},
        {"cpu-activations", 0, CLI_STR, "int8", SL_CPU_ACT_HELP, &cpu_act},
        {"quantization", 0, CLI_STR, NULL, "quantize F16/BF16/F32 weights at load: int8 or int4", &quant},
        {"block-size", 0, CLI_INT, "16", "KV cache block size in tokens", &block_size},
    };
    int rc = cli_parse("generate", opts, sizeof opts / sizeof opts[0], argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    if ((rc = sl_device_check("generate", device, cpu_act))) return rc;
    chat = chat || system || messages;
    if (!model_path || (!!prompt_s + !!text + !!messages != 1) || (system && !text) || (prompt_s && (chat || print_prompt))) {
        fprintf(stderr, "sluice generate: --model and one prompt are required: --prompt-tokens IDS, --prompt TEXT "
                        "(with --chat and --system for a conversation), or --messages-json FILE\n");
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
    int32_t *prompt = NULL;
    int P = 0;
    sl_tok *text_tok = NULL;
    char *gen_text = NULL;
    if (prompt_s && (parse_ids(prompt_s, &prompt, &P) || P == 0)) {
        free(prompt);
        fprintf(stderr, "sluice generate: --prompt-tokens must be a non-empty list of token ids like 1,2,3\n");
        return 2;
    }
    if (!prompt_s) {
        rc = text_prompt(model_path, text, system, messages, tmpl, chat, print_prompt, json, &text_tok, &prompt, &P);
        if (rc || print_prompt) {
            sl_tok_destroy(text_tok);
            free(prompt);
            return rc;
        }
        if (P == 0) {
            fprintf(stderr, "sluice generate: the prompt has no tokens\n");
            sl_tok_destroy(text_tok);
            free(prompt);
            return 2;
        }
    }

    sl_backend *be = sl_device_backend(device, threads, 0, cpu_act); /* one sequence */
    if (!be) {
        fprintf(stderr, "sluice generate: --device %s: the backend could not be created\n", device);
        return 1;
    }
    sl_model *m = NULL;
    char err[SL_ERRMSG] = "";
    int status = 1;
    float *logits = NULL;
    lp_entry *plp = NULL, *glp = NULL;
    int32_t *out = NULL, *blocks = NULL, *pos = NULL, *slots = NULL, *lidx = NULL;
    sl_sample_ws ws = {0};
    sl_sampler sampler = {0};
    sl_sampling_params sp;
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
    /* the engine's sampler, so generate draws exactly as a served request with this seed */
    sl_sampling_params_defaults(&sp);
    sp.temperature = temperature;
    sp.top_k = top_k;
    sp.top_p = top_p;
    sp.max_tokens = n_predict > 0 ? n_predict : 1;
    sp.has_seed = true;
    sp.seed = (uint64_t)seed;
    sl_sample_ws_init(&ws, V);
    sl_sampler_init(&sampler, &sp, sp.seed, prompt, P, V);
    /* text mode: generated text through the streaming detokenizer, printed as it comes (or
     * gathered for --json) */
    sl_tok_stream ts;
    size_t tbound = text_tok ? sl_tok_stream_bound(text_tok) : 0, tlen = 0;
    if (text_tok) sl_tok_stream_init(&ts, text_tok, 0);
    gen_text = text_tok ? malloc(tbound * ((size_t)n_predict + 1) + 1) : NULL;

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
        sl_sample_result sr;
        sl_sampler_sample(&sampler, last, &ws, &sr);
        sl_sampler_accept(&sampler, sr.token);
        int32_t tok = sr.token;
        if (logprobs) fill_lp(&glp[i], last, V, tok, logprobs);
        out[n_out++] = tok;
        bool eog = tok == m->hp.eos_id || tok == m->hp.eot_id || (text_tok && sl_tok_is_eog(text_tok, tok));
        if (text_tok && gen_text && !(eog && !ignore_eos)) {
            size_t k = 0;
            if (!sl_tok_stream_put(&ts, tok, gen_text + tlen, &k) && !json) {
                fwrite(gen_text + tlen, 1, k, stdout);
                fflush(stdout);
            }
            tlen += k;
        }
        if (!ignore_eos && eog) {
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
    if (text_tok && gen_text) {
        size_t k = 0;
        sl_tok_stream_finish(&ts, gen_text + tlen, &k);
        if (!json) fwrite(gen_text + tlen, 1, k, stdout);
        tlen += k;
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
        if (text_tok && gen_text) {
            printf(",\"text\":");
            print_json_str(gen_text, tlen);
        }
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
        if (!text_tok)
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
    sl_sampler_deinit(&sampler);
    sl_sample_ws_deinit(&ws);
    free(gen_text);
    sl_tok_destroy(text_tok);
    return status;
}
