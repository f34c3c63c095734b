/* test_tokenizer.c — tokenizers built from toy GGUF vocabularies, with hand-checked results;
 * malformed metadata; the streaming decoder on split UTF-8 sequences. Agreement with llama.cpp
 * on real vocabularies is tests/oracle/test_tokenizer.mjs. */
#include <stdlib.h>
#include <string.h>

#include "../../models/gguf.h"
#include "../../models/tokenizer.h"
#include "../test.h"

typedef struct vocab {
    const char *tok[300];
    float score[300];
    int32_t type[300];
    int n;
} vocab;

static int add(vocab *v, const char *s, float score, int32_t type) {
    v->tok[v->n] = s, v->score[v->n] = score, v->type[v->n] = type;
    return v->n++;
}

/* Writes v (plus extra keys via the callback) to memory and builds the tokenizer. */
typedef void (*extra_fn)(sl_gguf_writer *w);

static int make(const char *model, const char *pre, const vocab *v, const char *const *merges, int nm,
                extra_fn extra, sl_tok **t, sl_gguf **g, uint8_t **mem, char *err) {
    sl_gguf_writer *w = sl_gguf_writer_create();
    sl_gguf_w_str(w, "general.architecture", "llama");
    if (model) sl_gguf_w_str(w, "tokenizer.ggml.model", model);
    if (pre) sl_gguf_w_str(w, "tokenizer.ggml.pre", pre);
    sl_gguf_w_arr_str(w, "tokenizer.ggml.tokens", v->tok, (uint64_t)v->n);
    sl_gguf_w_arr_f32(w, "tokenizer.ggml.scores", v->score, (uint64_t)v->n);
    sl_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", v->type, (uint64_t)v->n);
    if (merges) sl_gguf_w_arr_str(w, "tokenizer.ggml.merges", merges, (uint64_t)nm);
    if (extra) extra(w);
    size_t size;
    ASSERT_EQ(sl_gguf_writer_to_mem(w, mem, &size), 0);
    sl_gguf_writer_destroy(w);
    *t = NULL;
    int rc = sl_gguf_open_mem(g, *mem, size, err);
    if (rc) return rc;
    return sl_tok_create(t, *g, err);
}

static void release(sl_tok *t, sl_gguf *g, uint8_t *mem) {
    sl_tok_destroy(t);
    sl_gguf_close(g);
    free(mem);
}

static void expect_ids(const sl_tok *t, const char *text, unsigned flags, const int32_t *want, size_t n) {
    sl_tok_ids ids = {0};
    ASSERT_EQ(sl_tok_encode(t, text, strlen(text), flags, &ids), 0);
    if (ids.n != n) {
        fprintf(stderr, "'%s': %zu tokens:", text, ids.n);
        for (size_t i = 0; i < ids.n; i++) fprintf(stderr, " %d", ids.v[i]);
        fprintf(stderr, "\n");
    }
    ASSERT_EQ(ids.n, n);
    for (size_t i = 0; i < n; i++) ASSERT_EQ(ids.v[i], want[i]);
    sl_tok_ids_free(&ids);
}

static void expect_text(const sl_tok *t, const int32_t *ids, size_t n, unsigned flags, const char *want) {
    char *text;
    size_t len;
    ASSERT_EQ(sl_tok_decode(t, ids, n, flags, &text, &len), 0);
    if (len != strlen(want) || memcmp(text, want, len)) fprintf(stderr, "decoded '%s', want '%s'\n", text, want);
    ASSERT_EQ(len, strlen(want));
    ASSERT(!memcmp(text, want, len));
    free(text);
}

/* ---- SentencePiece --------------------------------------------------------------------- */
static char g_bytes[256][8];
enum { SPM_SP = 259, SPM_A, SPM_B, SPM_AB, SPM_SP_AB, SPM_SP_A, SPM_BA, SPM_TOOL, SPM_E_ACUTE };

static void spm_vocab(vocab *v) {
    v->n = 0;
    add(v, "<unk>", 0, 2), add(v, "<s>", 0, 3), add(v, "</s>", 0, 3);
    for (int b = 0; b < 256; b++) {
        snprintf(g_bytes[b], sizeof g_bytes[b], "<0x%02X>", b);
        add(v, g_bytes[b], 0, 6);
    }
    add(v, "\xe2\x96\x81", -10, 1);         /* ▁ */
    add(v, "a", -10, 1), add(v, "b", -10, 1);
    add(v, "ab", -1, 1);
    add(v, "\xe2\x96\x81" "ab", -2, 1);
    add(v, "\xe2\x96\x81" "a", -3, 1);
    add(v, "ba", -4, 1);
    add(v, "<tool>", 0, 4);                  /* user-defined: always matched */
    add(v, "\xc3\xa9", -5, 1);               /* é */
}

static void test_spm(void) {
    vocab v;
    spm_vocab(&v);
    sl_tok *t;
    sl_gguf *g;
    uint8_t *mem;
    char err[SL_ERRMSG] = "";
    ASSERT_EQ(make("llama", NULL, &v, NULL, 0, NULL, &t, &g, &mem, err), 0);
    ASSERT_EQ(sl_tok_kind(t), SL_TOK_SPM);
    ASSERT_EQ(sl_tok_bos(t), 1);
    ASSERT_EQ(sl_tok_eos(t), 2);
    ASSERT(sl_tok_add_bos(t) && !sl_tok_add_eos(t));
    ASSERT(sl_tok_is_eog(t, 2) && !sl_tok_is_eog(t, 1));

    /* "▁ab": (a,b) scores -1 beats (▁,a) -3; then (▁,ab) -2 */
    expect_ids(t, "ab", 0, (int32_t[]){SPM_SP_AB}, 1);
    /* "▁ba": no "▁b": (b,a) -4, and "▁ba" is no token */
    expect_ids(t, "ba", 0, (int32_t[]){SPM_SP, SPM_BA}, 2);
    /* "▁ab▁ab": spaces become ▁ */
    expect_ids(t, "ab ab", 0, (int32_t[]){SPM_SP_AB, SPM_SP_AB}, 2);
    /* unknown characters fall back to their bytes */
    expect_ids(t, "c", 0, (int32_t[]){SPM_SP, 3 + 'c'}, 2);
    expect_ids(t, "\xc3\xa9", 0, (int32_t[]){SPM_SP, SPM_E_ACUTE}, 2);
    expect_ids(t, "\xe4\xb8\xad", 0, (int32_t[]){SPM_SP, 3 + 0xe4, 3 + 0xb8, 3 + 0xad}, 4);
    /* control text is plain text unless parsed; BOS only with ADD_SPECIAL */
    expect_ids(t, "<s>ab", 0, (int32_t[]){SPM_SP, 3 + '<', 3 + 's', 3 + '>', SPM_AB}, 5);
    expect_ids(t, "<s>ab", SL_TOK_ADD_SPECIAL | SL_TOK_PARSE_SPECIAL, (int32_t[]){1, 1, SPM_SP_AB}, 3);
    expect_ids(t, "", SL_TOK_ADD_SPECIAL, (int32_t[]){1}, 1);
    expect_ids(t, "", 0, NULL, 0);
    /* user-defined tokens are always cut out; the text after them gets the space prefix */
    expect_ids(t, "a<tool>b", 0, (int32_t[]){SPM_SP_A, SPM_TOOL, SPM_SP, SPM_B}, 4);

    /* decoding: ▁ → space, the first token's leading space dropped, control tokens hidden */
    expect_text(t, (int32_t[]){SPM_SP_AB, SPM_SP_AB}, 2, 0, "ab ab");
    expect_text(t, (int32_t[]){1, SPM_SP_AB}, 2, 0, " ab");
    expect_text(t, (int32_t[]){1, SPM_SP_AB}, 2, SL_TOK_RENDER_SPECIAL, "<s> ab");
    /* llama.cpp keeps the space when it removes the BOS */
    expect_text(t, (int32_t[]){1, SPM_SP_AB, 2}, 3, SL_TOK_REMOVE_SPECIAL | SL_TOK_RENDER_SPECIAL, " ab</s>");
    expect_text(t, (int32_t[]){3 + 0xc3, 3 + 0xa9, SPM_TOOL}, 3, 0, "\xc3\xa9<tool>");
    char *text;
    size_t len;
    ASSERT_EQ(sl_tok_decode(t, (int32_t[]){5, 99999}, 2, 0, &text, &len), SL_ERANGE);

    /* streaming: a split sequence is held until complete; nothing broken ever comes out */
    char out[256];
    size_t n;
    ASSERT(sl_tok_stream_bound(t) <= sizeof out);
    sl_tok_stream s;
    sl_tok_stream_init(&s, t, 0);
    ASSERT_EQ(sl_tok_stream_put(&s, SPM_SP_A, out, &n), 0);
    ASSERT_EQ(n, 1);
    ASSERT(out[0] == 'a');
    static const uint8_t emoji[4] = {0xf0, 0x9f, 0x99, 0x82}; /* 🙂 */
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(sl_tok_stream_put(&s, 3 + emoji[i], out, &n), 0);
        ASSERT_EQ(n, 0);
    }
    ASSERT_EQ(sl_tok_stream_put(&s, 3 + emoji[3], out, &n), 0);
    ASSERT_EQ(n, 4);
    ASSERT(!memcmp(out, emoji, 4));
    /* a lead byte followed by no continuation: U+FFFD, then the next text */
    ASSERT_EQ(sl_tok_stream_put(&s, 3 + 0xc3, out, &n), 0);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(sl_tok_stream_put(&s, SPM_SP_AB, out, &n), 0);
    ASSERT_EQ(n, 6);
    ASSERT(!memcmp(out, "\xef\xbf\xbd ab", 6));
    /* a stray continuation byte, and an incomplete sequence at the end */
    ASSERT_EQ(sl_tok_stream_put(&s, 3 + 0xa9, out, &n), 0);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(sl_tok_stream_put(&s, 3 + 0xe4, out, &n), 0);
    ASSERT_EQ(sl_tok_stream_put(&s, 3 + 0xb8, out, &n), 0);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(sl_tok_stream_put(&s, -1, out, &n), SL_ERANGE);
    sl_tok_stream_finish(&s, out, &n);
    ASSERT_EQ(n, 3);
    ASSERT(!memcmp(out, "\xef\xbf\xbd", 3));
    /* the first token's leading space goes, as in the whole decode */
    sl_tok_stream_init(&s, t, 0);
    ASSERT_EQ(sl_tok_stream_put(&s, SPM_SP_AB, out, &n), 0);
    ASSERT_EQ(n, 2);
    release(t, g, mem);
}

/* ---- byte-level BPE ---------------------------------------------------------------------- */
enum { B_H, B_E, B_L, B_O, B_SP, B_Q, B_APOS, B_S, B_HE, B_LL, B_HELL, B_HELLO, B_HO, B_EOT, B_THINK, B_C3, B_A9 };

static void bpe_vocab(vocab *v) {
    v->n = 0;
    add(v, "h", 0, 1), add(v, "e", 0, 1), add(v, "l", 0, 1), add(v, "o", 0, 1);
    add(v, "\xc4\xa0", 0, 1); /* Ġ: the byte-encoded space */
    add(v, "?", 0, 1), add(v, "'", 0, 1), add(v, "s", 0, 1);
    add(v, "he", 0, 1), add(v, "ll", 0, 1), add(v, "hell", 0, 1), add(v, "hello", 0, 1);
    add(v, "ho", 0, 1); /* a token no merge produces */
    add(v, "<|im_end|>", 0, 1); /* named like an end of turn: becomes control */
    add(v, "<think>", 0, 4);
    add(v, "\xc3\x83", 0, 1), add(v, "\xc2\xa9", 0, 1); /* bytes 0xC3 and 0xA9 (é) */
}
static const char *const k_merges[] = {"h e", "l l", "he ll", "hell o"};

static void test_bpe(void) {
    vocab v;
    bpe_vocab(&v);
    sl_tok *t;
    sl_gguf *g;
    uint8_t *mem;
    char err[SL_ERRMSG] = "";
    ASSERT_EQ(make("gpt2", "gpt-2", &v, k_merges, 4, NULL, &t, &g, &mem, err), 0);
    ASSERT_EQ(sl_tok_kind(t), SL_TOK_BPE);
    ASSERT(!strcmp(sl_tok_pre(t), "gpt2"));
    ASSERT(!sl_tok_add_bos(t));
    ASSERT(sl_tok_attr(t, B_EOT) & SL_TOKA_CONTROL);
    ASSERT(sl_tok_is_eog(t, B_EOT));

    expect_ids(t, "hello", 0, (int32_t[]){B_HELLO}, 1);
    /* " hello" is one piece; Ġ has no merge with "hello" */
    expect_ids(t, "hello hello", 0, (int32_t[]){B_HELLO, B_SP, B_HELLO}, 3);
    /* merges by rank: "hel" = (h e)(l); "ho" is never merged without ignore_merges */
    expect_ids(t, "hel", 0, (int32_t[]){B_HE, B_L}, 2);
    expect_ids(t, "ho", 0, (int32_t[]){B_H, B_O}, 2);
    /* a character with no token is dropped (llama.cpp does the same) */
    expect_ids(t, "hxe", 0, (int32_t[]){B_H, B_E}, 2);
    /* "'s" is a piece of its own; bytes of é */
    expect_ids(t, "he's", 0, (int32_t[]){B_HE, B_APOS, B_S}, 3);
    expect_ids(t, "\xc3\xa9", 0, (int32_t[]){B_C3, B_A9}, 2);
    /* control vs user-defined */
    expect_ids(t, "<think>", 0, (int32_t[]){B_THINK}, 1);
    expect_ids(t, "o<|im_end|>", SL_TOK_PARSE_SPECIAL, (int32_t[]){B_O, B_EOT}, 2);

    /* decoding: the byte table inverted, and llama.cpp's clean_spaces */
    expect_text(t, (int32_t[]){B_HELLO, B_SP, B_HELLO}, 3, 0, "hello hello");
    expect_text(t, (int32_t[]){B_HE, B_SP, B_Q}, 3, 0, "he?");
    expect_text(t, (int32_t[]){B_HE, B_SP, B_APOS, B_S}, 4, 0, "he's");
    expect_text(t, (int32_t[]){B_HE, B_SP, B_APOS, B_SP, B_O}, 5, 0, "he'o");
    expect_text(t, (int32_t[]){B_HE, B_EOT}, 2, 0, "he");
    expect_text(t, (int32_t[]){B_HE, B_EOT}, 2, SL_TOK_RENDER_SPECIAL, "he<|im_end|>");

    /* the stream holds " " and " '" until the next token decides them */
    char out[256];
    size_t n;
    sl_tok_stream s;
    sl_tok_stream_init(&s, t, 0);
    ASSERT_EQ(sl_tok_stream_put(&s, B_HE, out, &n), 0);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(sl_tok_stream_put(&s, B_SP, out, &n), 0);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(sl_tok_stream_put(&s, B_APOS, out, &n), 0);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(sl_tok_stream_put(&s, B_S, out, &n), 0);
    ASSERT_EQ(n, 2);
    ASSERT(!memcmp(out, "'s", 2));
    ASSERT_EQ(sl_tok_stream_put(&s, B_SP, out, &n), 0);
    ASSERT_EQ(n, 0);
    sl_tok_stream_finish(&s, out, &n);
    ASSERT_EQ(n, 1);
    ASSERT(out[0] == ' ');

    /* stream == whole decode on random sequences (all tokens here decode to valid UTF-8
     * except the two bytes of é, which come in order) */
    sl_rng r;
    sl_rng_seed(&r, 7);
    for (int it = 0; it < 2000; it++) {
        int32_t ids[12];
        int k = 1 + (int)(sl_rng_u64(&r) % 12);
        for (int i = 0; i < k; i++) {
            ids[i] = (int32_t)(sl_rng_u64(&r) % (uint64_t)v.n);
            if (ids[i] == B_C3 || ids[i] == B_A9) ids[i] = B_SP;
        }
        unsigned flags = it & 1 ? SL_TOK_RENDER_SPECIAL : 0;
        char *whole;
        size_t wl, total = 0;
        ASSERT_EQ(sl_tok_decode(t, ids, (size_t)k, flags, &whole, &wl), 0);
        char buf[1024];
        sl_tok_stream_init(&s, t, flags);
        for (int i = 0; i < k; i++) {
            ASSERT_EQ(sl_tok_stream_put(&s, ids[i], buf + total, &n), 0);
            total += n;
        }
        sl_tok_stream_finish(&s, buf + total, &n);
        total += n;
        ASSERT_EQ(total, wl);
        ASSERT(!memcmp(buf, whole, wl));
        free(whole);
    }
    release(t, g, mem);

    /* the llama3 family emits a piece that is a token whole (ignore_merges) and adds BOS */
    ASSERT_EQ(make("gpt2", "llama-bpe", &v, k_merges, 4, NULL, &t, &g, &mem, err), 0);
    expect_ids(t, "ho", 0, (int32_t[]){B_HO}, 1);
    ASSERT(sl_tok_add_bos(t));
    release(t, g, mem);
}

/* ---- malformed metadata -------------------------------------------------------------------- */
static void bad_bos(sl_gguf_writer *w) { sl_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 4000); }
static void bad_scores(sl_gguf_writer *w) { sl_gguf_w_arr_f32(w, "tokenizer.ggml.scores", (float[]){0, 0}, 2); }
static void bad_types(sl_gguf_writer *w) {
    int32_t ty[17] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 1, 1};
    sl_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", ty, 17);
}
static void bad_merge(sl_gguf_writer *w) {
    const char *m[] = {"h e", "hello"};
    sl_gguf_w_arr_str(w, "tokenizer.ggml.merges", m, 2);
}
static void merges_not_strings(sl_gguf_writer *w) { sl_gguf_w_u32(w, "tokenizer.ggml.merges", 3); }

static void expect_error(const char *model, const char *pre, vocab *v, bool merges, extra_fn extra, int code,
                         const char *msg) {
    sl_tok *t;
    sl_gguf *g = NULL;
    uint8_t *mem;
    char err[SL_ERRMSG] = "";
    int rc = make(model, pre, v, merges ? k_merges : NULL, merges ? 4 : 0, extra, &t, &g, &mem, err);
    if (rc != code) fprintf(stderr, "got %d (%s), want %d\n", rc, err, code);
    ASSERT_EQ(rc, code);
    ASSERT(t == NULL);
    ASSERT_STR_CONTAINS(err, msg);
    release(t, g, mem);
}

static void test_malformed(void) {
    vocab v;
    bpe_vocab(&v);
    expect_error("gpt2", "gpt-2", &v, false, NULL, SL_ENOTFOUND, "tokenizer.ggml.merges is missing");
    expect_error("gpt2", "gpt-2", &v, false, merges_not_strings, SL_EFORMAT, "merges is not an array of strings");
    expect_error("gpt2", "gpt-2", &v, false, bad_merge, SL_EFORMAT, "merges[1]");
    expect_error("gpt2", "gpt-2", &v, true, bad_bos, SL_EFORMAT, "bos_token_id = 4000 is out of range");
    expect_error("gpt2", "gpt-2", &v, true, bad_scores, SL_EFORMAT, "scores has 2 entries");
    expect_error("gpt2", "gpt-2", &v, true, bad_types, SL_EFORMAT, "token_type[14] = 9");
    expect_error("gpt2", "nonesuch", &v, true, NULL, SL_EUNSUPPORTED, "'nonesuch'");
    expect_error("bert", NULL, &v, true, NULL, SL_EUNSUPPORTED, "'bert' is not supported");
    expect_error(NULL, NULL, &v, true, NULL, SL_ENOTFOUND, "tokenizer.ggml.model is missing");
    v.tok[3] = "h"; /* duplicate of token 0 */
    expect_error("gpt2", "gpt-2", &v, true, NULL, SL_EFORMAT, "tokens[3] repeats token 0");
    bpe_vocab(&v);
    v.type[4] = 6; /* byte type, but not <0xXX> */
    expect_error("gpt2", "gpt-2", &v, true, NULL, SL_EFORMAT, "tokens[4] has type byte");
    bpe_vocab(&v);
    v.tok[5] = "\xff\xfe"; /* invalid UTF-8: the GGUF reader names the key */
    expect_error("gpt2", "gpt-2", &v, true, NULL, SL_EFORMAT, "tokenizer.ggml.tokens");
}

int main(void) {
    test_spm();
    test_bpe();
    test_malformed();
    printf("test_tokenizer: ok\n");
    return 0;
}
