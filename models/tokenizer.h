/* tokenizer.h — text ↔ token ids from a GGUF file's tokenizer metadata, identical to llama.cpp.
 *
 * Metadata (../shared/FORMATS.md §5): tokenizer.ggml.model selects the algorithm:
 *   1. "llama": SentencePiece BPE. Spaces become U+2581 ("▁"), a space is prepended to text that
 *      starts the input or follows a special token (add_space_prefix, default on), adjacent
 *      symbols (UTF-8 characters) are merged best score first (tokenizer.ggml.scores; ties: the
 *      leftmost pair), and a character that is no token falls back to byte tokens "<0xXX>".
 *   2. "gpt2": byte-level BPE. The text is split into pieces by the pre-tokenizer regexes that
 *      tokenizer.ggml.pre names (llama3 family, qwen2, smollm, gpt2, default; an unknown name is
 *      an error, as in llama.cpp); each piece's bytes are mapped to printable code points
 *      (GPT-2's bytes↔unicode table) and merged by rank (tokenizer.ggml.merges, "A B" entries,
 *      lowest index first; ties: the leftmost pair). The llama3 family emits a piece that is
 *      already a token whole (ignore_merges).
 * Before either, special tokens are cut out of the text: user-defined tokens always, control
 * and unknown tokens only with SL_TOK_PARSE_SPECIAL; longer token texts are matched first.
 * tokenizer.ggml.token_type gives each token's kind (1 normal, 2 unknown, 3 control,
 * 4 user-defined, 5 unused, 6 byte); tokens named like end-of-turn markers ("<|eot_id|>",
 * "<|im_end|>", "<|endoftext|>", "</s>", ...) are treated as control tokens whatever their type.
 *
 * Decoding maps each token back to its bytes: "▁" → " " and byte tokens to their byte (SPM),
 * the inverse byte table (BPE); control and unknown tokens render as "" unless
 * SL_TOK_RENDER_SPECIAL. With add_space_prefix the first token's leading space is dropped.
 * BPE vocabularies except qwen2/smollm also "clean spaces" like llama.cpp (" ?" → "?",
 * " 's" → "'s", ...).
 *
 * Input text may be any bytes: invalid UTF-8 reaches the BPE pre-tokenizer as U+FFFD.
 * Known differences from llama.cpp, all outside real text: code points assigned after Unicode
 * 14 (PCRE2 10.42's tables; llama.cpp uses 15.1) are not letters here; overlong and surrogate
 * UTF-8 encodings become U+FFFD; llama.cpp's per-model token attributes chosen by
 * general.name (phi-3 rstrip, jina lstrip) are not applied.
 *
 * Thread-safety: a loaded sl_tok is immutable; any number of threads may encode and decode
 * with it at once. An sl_tok_stream belongs to one thread.
 */
#ifndef SL_TOKENIZER_H
#define SL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"
#include "gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_tok sl_tok;

typedef enum { SL_TOK_SPM = 1, SL_TOK_BPE = 2 } sl_tok_type;

/* Token attributes (bit set; llama.cpp's llama_token_attr values). */
enum {
    SL_TOKA_UNKNOWN = 1 << 0, SL_TOKA_UNUSED = 1 << 1, SL_TOKA_NORMAL = 1 << 2,
    SL_TOKA_CONTROL = 1 << 3, SL_TOKA_USER_DEFINED = 1 << 4, SL_TOKA_BYTE = 1 << 5,
};

/* Builds the tokenizer from g's tokenizer.* keys (g may be closed afterwards: everything is
 * copied). *out is freed with sl_tok_destroy; NULL on failure. Errors, with a message naming
 * the key and item: SL_ENOTFOUND (no tokenizer.ggml.model / tokens, gpt2 without merges),
 * SL_EUNSUPPORTED (another tokenizer model, unknown pre-tokenizer), SL_EFORMAT (wrong value
 * types, arrays shorter than the token list, duplicate or invalid UTF-8 token texts, a byte
 * token that is not "<0xXX>", a malformed merge, an empty vocabulary). */
int sl_tok_create(sl_tok **out, const sl_gguf *g, char err[SL_ERRMSG]);
void sl_tok_destroy(sl_tok *t);

sl_tok_type sl_tok_kind(const sl_tok *t);
const char *sl_tok_pre(const sl_tok *t);    /* pre-tokenizer group: "llama3", "qwen2", ... */
int32_t sl_tok_n_vocab(const sl_tok *t);
int32_t sl_tok_bos(const sl_tok *t);        /* -1 when none */
int32_t sl_tok_eos(const sl_tok *t);        /* -1 when none */
bool sl_tok_add_bos(const sl_tok *t);       /* what SL_TOK_ADD_SPECIAL adds */
bool sl_tok_add_eos(const sl_tok *t);
/* End of generation: eos, eot, eom and the tokens named like them. False out of range. */
bool sl_tok_is_eog(const sl_tok *t, int32_t id);
unsigned sl_tok_attr(const sl_tok *t, int32_t id); /* SL_TOKA_* bits; 0 out of range */
/* The token's text as stored in the vocabulary (not decoded); NULL out of range. */
const char *sl_tok_text(const sl_tok *t, int32_t id, size_t *len);
/* Exact lookup of a token text; -1 when absent. */
int32_t sl_tok_find(const sl_tok *t, const char *text, size_t len);

/* ---- encoding ------------------------------------------------------------------------- */
enum {
    SL_TOK_ADD_SPECIAL = 1 << 0,   /* add BOS / EOS as the metadata says */
    SL_TOK_PARSE_SPECIAL = 1 << 1, /* control/unknown token text in the input becomes that token */
};

/* A growable id list. The caller zero-initializes it and frees it with sl_tok_ids_free. */
typedef struct sl_tok_ids {
    int32_t *v;
    size_t n, cap;
} sl_tok_ids;
void sl_tok_ids_free(sl_tok_ids *ids);

/* Appends the tokens of text[0..len) to out. 0, or SL_ENOMEM when len > 1 GiB. */
int sl_tok_encode(const sl_tok *t, const char *text, size_t len, unsigned flags, sl_tok_ids *out);

/* ---- decoding ------------------------------------------------------------------------- */
enum {
    SL_TOK_RENDER_SPECIAL = 1 << 0, /* control and unknown tokens render as their text */
    SL_TOK_REMOVE_SPECIAL = 1 << 1, /* drop a leading BOS / trailing EOS that add_bos/add_eos add */
};

/* Decodes ids into a malloc'd, NUL-terminated buffer *text (its length in *len, the bytes
 * as llama_detokenize gives them, not necessarily valid UTF-8); the caller frees it.
 * SL_ERANGE (with nothing allocated) when an id is out of range. */
int sl_tok_decode(const sl_tok *t, const int32_t *ids, size_t n, unsigned flags, char **text,
                  size_t *len);

/* Incremental decoder for streaming. Concatenating its outputs gives sl_tok_decode's text
 * (flags without SL_TOK_REMOVE_SPECIAL) whenever that text is valid UTF-8; each output is
 * valid UTF-8 on its own: an incomplete sequence is held until it completes, and bytes that
 * cannot start or continue a sequence come out as U+FFFD. Clean-spaces vocabularies hold a
 * trailing " ", " '" or " 'r" until the next token decides it. No allocation. */
typedef struct sl_tok_stream {
    const sl_tok *t;
    unsigned flags;
    bool first;
    uint8_t p1, p2, p3;        /* clean-spaces pass states */
    char p3x;                  /* pass 3: the held 'r' or 'v' */
    uint8_t u8[4], u8n, u8need; /* incomplete UTF-8 sequence */
} sl_tok_stream;

void sl_tok_stream_init(sl_tok_stream *s, const sl_tok *t, unsigned flags);
/* Bytes one put or finish may write at most: size the caller's buffer with this. */
size_t sl_tok_stream_bound(const sl_tok *t);
/* Decodes one token; writes up to sl_tok_stream_bound(t) bytes to out and their count to *n.
 * SL_ERANGE when id is out of range (the stream is unchanged). */
int sl_tok_stream_put(sl_tok_stream *s, int32_t id, char *out, size_t *n);
/* Ends the stream: writes what is held (an incomplete sequence as U+FFFD). */
void sl_tok_stream_finish(sl_tok_stream *s, char *out, size_t *n);

#ifdef __cplusplus
}
#endif
#endif
