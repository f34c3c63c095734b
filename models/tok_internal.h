/* tok_internal.h — what tokenizer.c, tok_merge.c and tok_decode.c share. Not a public header. */
#ifndef SL_TOK_INTERNAL_H
#define SL_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* pre-tokenizer groups (llama.cpp's pre types that matter here) */
enum { TOK_PRE_NONE = 0, TOK_PRE_DEFAULT, TOK_PRE_LLAMA3, TOK_PRE_QWEN2, TOK_PRE_GPT2, TOK_PRE_SMOLLM };

#define TOK_MAX_RE 4

/* Open addressing over ids (slot = id + 1, 0 = empty); keys live elsewhere. */
typedef struct sl__tok_map {
    uint32_t *slot;
    uint64_t mask;
} sl__tok_map;

struct sl_tok {
    sl_tok_type type;
    int pre;
    int32_t n_vocab;
    /* token texts: text + off[i], len[i] bytes, NUL-terminated */
    char *text;
    uint64_t *off;
    uint32_t *len;
    float *score;
    uint8_t *attr;       /* SL_TOKA_* */
    uint8_t *eog;        /* 1: end of generation */
    sl__tok_map ids;     /* text → id */
    /* decoded piece of each token as llama.cpp caches it (special tokens rendered) */
    char *piece;
    uint64_t *poff;
    uint32_t *plen;
    uint32_t max_piece;
    /* BPE merges: entry i is mtext + moff[i], left mleft[i] bytes, a space, then the right */
    char *mtext;
    uint64_t *moff;
    uint32_t *mleft, *mright;
    uint32_t n_merges;
    sl__tok_map merges;  /* (left, right) → rank */
    /* special tokens matched in the input, longest text first */
    int32_t *special;
    int32_t n_special;
    int32_t bos, eos, eot, eom, unk;
    bool add_bos, add_eos, add_space_prefix, clean_spaces, ignore_merges;
    int32_t byte_id[256];   /* SPM byte fallback "<0xXX>" (or the byte itself); -1: none */
    int32_t single_id[256]; /* BPE fallback: the token whose text is that one byte; -1: none */
    void *re[TOK_MAX_RE];   /* compiled pcre2_code * */
    int n_re;
};

uint64_t sl__tok_hash(const void *p, size_t n, uint64_t h);
#define TOK_HASH_SEED 0xcbf29ce484222325ull

/* tok_merge.c */
int sl__tok_pre_init(sl_tok *t, char *err);   /* compiles the pre-tokenizer regexes */
void sl__tok_pre_free(sl_tok *t);
/* Merge lookup: rank of (a, b), or -1. */
int32_t sl__tok_merge_rank(const sl_tok *t, const char *a, size_t na, const char *b, size_t nb);
/* Tokenize one raw-text fragment (no special tokens in it). 0 or SL_ENOMEM. */
int sl__tok_spm(const sl_tok *t, const char *s, size_t n, bool space_prefix, sl_tok_ids *out);
int sl__tok_bpe(const sl_tok *t, const char *s, size_t n, sl_tok_ids *out);
/* GPT-2 byte table: code point of byte b, and byte of code point c (-1 if none). */
uint32_t sl__tok_byte_cp(uint8_t b);
int sl__tok_cp_byte(uint32_t c);

/* tokenizer.c */
int sl__tok_push(sl_tok_ids *out, int32_t id);

#endif
