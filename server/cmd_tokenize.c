/* cmd_tokenize.c — `sluice tokenize` and `sluice detokenize`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/gguf.h"
#include "../models/tokenizer.h"
#include "cli.h"
#include "commands.h"

/* Splits argv into options (for cli_parse) and positional arguments, using the option table
 * to know which options take a value. "--" ends the options. */
static void split_args(const cli_opt *opts, int nopt, int argc, char **argv, char **optv, int *optc,
                      char **pos, int *posc) {
    *optc = *posc = 0;
    for (int a = 0; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--")) {
            while (++a < argc) pos[(*posc)++] = argv[a];
            break;
        }
        if (arg[0] != '-' || !arg[1]) {
            pos[(*posc)++] = argv[a];
            continue;
        }
        optv[(*optc)++] = argv[a];
        const cli_opt *o = NULL;
        if (arg[1] == '-') {
            const char *name = arg + 2;
            if (strchr(name, '=')) continue;
            for (int i = 0; i < nopt; i++)
                if (!strcmp(opts[i].flag, name)) o = &opts[i];
        } else if (!arg[2]) {
            for (int i = 0; i < nopt; i++)
                if (opts[i].short_name == arg[1]) o = &opts[i];
        }
        if (o && o->kind != CLI_BOOL && a + 1 < argc) optv[(*optc)++] = argv[++a];
    }
}

/* Reads all of f into a malloc'd buffer (NUL-terminated). NULL on failure. */
static char *read_all(FILE *f, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len + 1 < cap) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) free(buf);
        buf = nb;
    }
    if (!buf) return NULL;
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    *n = len;
    return buf;
}

static int open_tokenizer(const char *cmd, const char *path, sl_gguf **g, sl_tok **t) {
    char err[SL_ERRMSG] = "";
    if (!path) {
        fprintf(stderr, "sluice %s: --model is required\n", cmd);
        return 2;
    }
    if (sl_gguf_open(g, path, err) || sl_tok_create(t, *g, err)) {
        fprintf(stderr, "sluice %s: %s: %s\n", cmd, path, err);
        sl_gguf_close(*g);
        return 1;
    }
    return 0;
}

static void print_ids(const sl_tok_ids *ids) {
    putchar('[');
    for (size_t i = 0; i < ids->n; i++) printf(i ? ", %d" : "%d", ids->v[i]);
    puts("]");
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int sl_cmd_tokenize(int argc, char **argv) {
    const char *model;
    int special, batch;
    const cli_opt opts[] = {
        {"model", 'm', CLI_STR, NULL, "GGUF file whose tokenizer to use (required)", &model},
        {"special", 0, CLI_BOOL, NULL, "parse special-token text and add BOS/EOS as the metadata says", &special},
        {"batch", 0, CLI_BOOL, NULL, "read one hex-encoded UTF-8 text per stdin line, print one array per line", &batch},
    };
    int nopt = sizeof opts / sizeof opts[0];
    char **optv = malloc(((size_t)argc + 1) * sizeof *optv), **pos = malloc(((size_t)argc + 1) * sizeof *pos);
    int optc, posc, rc;
    split_args(opts, nopt, argc, argv, optv, &optc, pos, &posc);
    rc = cli_parse("tokenize", opts, nopt, optc, optv);
    if (rc > 0) puts("\narguments:\n  TEXT                         the text (standard input when absent)");
    if (rc) {
        rc = rc > 0 ? 0 : 2;
        goto out;
    }
    if (posc > 1 || (batch && posc)) {
        fprintf(stderr, "sluice tokenize: expected at most one TEXT argument (none with --batch)\n");
        rc = 2;
        goto out;
    }
    sl_gguf *g = NULL;
    sl_tok *t = NULL;
    if ((rc = open_tokenizer("tokenize", model, &g, &t))) goto out;
    unsigned flags = special ? SL_TOK_ADD_SPECIAL | SL_TOK_PARSE_SPECIAL : 0;
    size_t n = 0;
    char *in = posc ? NULL : read_all(stdin, &n);
    if (!posc && !in) {
        fprintf(stderr, "sluice tokenize: cannot read standard input: %s\n", strerror(errno));
        rc = 1;
    } else if (!batch) {
        sl_tok_ids ids = {0};
        const char *text = posc ? pos[0] : in;
        if (sl_tok_encode(t, text, posc ? strlen(text) : n, flags, &ids)) {
            fprintf(stderr, "sluice tokenize: text too long\n");
            rc = 1;
        } else {
            print_ids(&ids);
        }
        sl_tok_ids_free(&ids);
    } else {
        /* each line: hex digits of the text's bytes; decoded in place */
        for (char *line = in; !rc && line < in + n;) {
            char *end = memchr(line, '\n', (size_t)(in + n - line));
            if (!end) end = in + n;
            size_t len = (size_t)(end - line), k = 0;
            if (len && line[len - 1] == '\r') len--;
            for (size_t i = 0; i + 1 < len; i += 2) {
                int h = hexval(line[i]), l = hexval(line[i + 1]);
                if (h < 0 || l < 0) break;
                line[k++] = (char)(h * 16 + l);
            }
            if (len % 2 || k != len / 2) {
                fprintf(stderr, "sluice tokenize: --batch line is not hex\n");
                rc = 1;
                break;
            }
            sl_tok_ids ids = {0};
            if (sl_tok_encode(t, line, k, flags, &ids)) rc = 1;
            else print_ids(&ids);
            sl_tok_ids_free(&ids);
            line = end + 1;
        }
    }
    free(in);
    sl_tok_destroy(t);
    sl_gguf_close(g);
out:
    free(optv), free(pos);
    return rc;
}

static int push_id(sl_tok_ids *ids, int32_t v) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? 2 * ids->cap : 64;
        int32_t *p = realloc(ids->v, cap * sizeof *p);
        if (!p) return -1;
        ids->v = p, ids->cap = cap;
    }
    ids->v[ids->n++] = v;
    return 0;
}

/* Parses "1, 2, 3" or "[1,2,3]" (commas and/or blanks). -1 on a malformed list. */
static int parse_ids(const char *s, size_t n, sl_tok_ids *ids) {
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == ',' || c == '[' || c == ']' || c == '\n' || c == '\r') {
            i++;
            continue;
        }
        long v = 0;
        size_t j = i;
        while (j < n && s[j] >= '0' && s[j] <= '9' && v <= INT32_MAX) v = v * 10 + (s[j++] - '0');
        if (j == i || v > INT32_MAX) return -1;
        if (push_id(ids, (int32_t)v)) return -1;
        i = j;
    }
    return 0;
}

static void print_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", (unsigned char)s[i]);
    putchar('\n');
}

/* Decodes ids whole, or token by token through the streaming decoder. */
static int decode(const sl_tok *t, const sl_tok_ids *ids, unsigned flags, bool stream, char **text, size_t *len) {
    if (!stream) return sl_tok_decode(t, ids->v, ids->n, flags, text, len);
    size_t bound = sl_tok_stream_bound(t), n = 0;
    char *buf = malloc(bound * (ids->n + 1) + 1);
    if (!buf) return SL_ENOMEM;
    sl_tok_stream s;
    sl_tok_stream_init(&s, t, flags);
    for (size_t i = 0; i < ids->n; i++) {
        size_t k;
        if (sl_tok_stream_put(&s, ids->v[i], buf + n, &k)) {
            free(buf);
            return SL_ERANGE;
        }
        n += k;
    }
    size_t k;
    sl_tok_stream_finish(&s, buf + n, &k);
    n += k;
    buf[n] = 0;
    *text = buf, *len = n;
    return 0;
}

int sl_cmd_detokenize(int argc, char **argv) {
    const char *model;
    int special, batch, stream;
    const cli_opt opts[] = {
        {"model", 'm', CLI_STR, NULL, "GGUF file whose tokenizer to use (required)", &model},
        {"special", 0, CLI_BOOL, NULL, "render control tokens (BOS, EOS, ...) as their text", &special},
        {"stream", 0, CLI_BOOL, NULL, "decode token by token as a streaming server does (valid UTF-8 only)", &stream},
        {"batch", 0, CLI_BOOL, NULL, "read one id list per stdin line, print each text hex-encoded on a line", &batch},
    };
    int nopt = sizeof opts / sizeof opts[0];
    char **optv = malloc(((size_t)argc + 1) * sizeof *optv), **pos = malloc(((size_t)argc + 1) * sizeof *pos);
    int optc, posc, rc;
    split_args(opts, nopt, argc, argv, optv, &optc, pos, &posc);
    rc = cli_parse("detokenize", opts, nopt, optc, optv);
    if (rc > 0) puts("\narguments:\n  IDS                          token ids: 1,2,3 or [1, 2, 3] (standard input when absent)");
    if (rc) {
        rc = rc > 0 ? 0 : 2;
        goto out;
    }
    if (batch && posc) {
        fprintf(stderr, "sluice detokenize: no IDS argument with --batch\n");
        rc = 2;
        goto out;
    }
    sl_gguf *g = NULL;
    sl_tok *t = NULL;
    if ((rc = open_tokenizer("detokenize", model, &g, &t))) goto out;
    unsigned flags = special ? SL_TOK_RENDER_SPECIAL : 0;
    size_t n = 0;
    char *in = NULL;
    if (!posc && !(in = read_all(stdin, &n))) {
        fprintf(stderr, "sluice detokenize: cannot read standard input: %s\n", strerror(errno));
        rc = 1;
    }
    if (!rc && posc) { /* the arguments, joined, are one list */
        size_t total = 1;
        for (int i = 0; i < posc; i++) total += strlen(pos[i]) + 1;
        if (!(in = malloc(total))) rc = 1;
        for (int i = 0; !rc && i < posc; i++) {
            size_t l = strlen(pos[i]);
            memcpy(in + n, pos[i], l), n += l;
            in[n++] = ' ';
        }
    }
    /* --batch: one list per line; else the whole input is one list */
    for (char *line = in; !rc && in && line < in + n;) {
        char *end = batch ? memchr(line, '\n', (size_t)(in + n - line)) : NULL;
        if (!end) end = in + n;
        sl_tok_ids ids = {0};
        char *text = NULL;
        size_t len = 0;
        if (parse_ids(line, (size_t)(end - line), &ids)) {
            fprintf(stderr, "sluice detokenize: expected token ids like 1,2,3\n");
            rc = 2;
        } else if ((rc = decode(t, &ids, flags, stream, &text, &len))) {
            fprintf(stderr, "sluice detokenize: %s (vocabulary of %d tokens)\n",
                    rc == SL_ERANGE ? "token id out of range" : sl_strerror(rc), sl_tok_n_vocab(t));
            rc = 1;
        } else if (batch) {
            print_hex(text, len);
        } else {
            fwrite(text, 1, len, stdout);
            putchar('\n');
        }
        free(text);
        sl_tok_ids_free(&ids);
        line = end + 1;
    }
    free(in);
    sl_tok_destroy(t);
    sl_gguf_close(g);
out:
    free(optv), free(pos);
    return rc;
}
