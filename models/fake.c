/* fake.c — the weightless stand-in model of sl_model_create_fake (see model.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "tokenizer.h"

typedef struct sl_fake {
    int32_t *cycle; /* [n] the tokens emitted in turn */
    int n;
} sl_fake;

/* A token the stream would show as it is: printable ASCII, nothing held back or dropped. */
static bool plain(const sl_tok *tok, int32_t id) {
    if (sl_tok_is_eog(tok, id) || !(sl_tok_attr(tok, id) & (SL_TOKA_NORMAL | SL_TOKA_BYTE))) return false;
    char *text;
    size_t len;
    if (sl_tok_decode(tok, &id, 1, 0, &text, &len)) return false;
    bool ok = len > 0;
    for (size_t i = 0; i < len && ok; i++) ok = text[i] >= 0x20 && text[i] < 0x7f;
    free(text);
    return ok;
}

int sl_model_create_fake(sl_model **out, sl_gguf *g, sl_backend *be, const sl_tok *tok, char err[SL_ERRMSG]) {
    *out = NULL;
    sl_model *m = sl_xcalloc(1, sizeof *m);
    m->gguf = g;
    m->be = be;
    sl_fake *f = m->fake = sl_xcalloc(1, sizeof *f);
    sl_hparams *hp = &m->hp;
    const int V = sl_tok_n_vocab(tok);
    hp->n_vocab = V;
    const sl_gguf_tensor *te = sl_gguf_tensor_find(g, "token_embd.weight");
    if (te && te->n_dims == 2 && te->ne[1] > V && te->ne[1] <= INT32_MAX) hp->n_vocab = (int)te->ne[1]; /* padded */
    hp->n_ctx_train = 2048;
    const char *arch;
    uint64_t alen;
    if (sl_gguf_get_str(g, "general.architecture", &arch, &alen, NULL) == 0 && alen < 64) {
        char key[96];
        uint32_t ctx;
        snprintf(key, sizeof key, "%.*s.context_length", (int)alen, arch);
        if (sl_gguf_get_u32(g, key, &ctx, NULL) == 0 && ctx > 0 && ctx <= (1u << 24)) hp->n_ctx_train = (int)ctx;
    }
    hp->bos_id = sl_tok_bos(tok);
    hp->eos_id = sl_tok_eos(tok);
    hp->eot_id = -1; /* the engine adds every end-of-generation token of tok */
    hp->eps = 1e-5f;
    f->cycle = sl_xmalloc((size_t)V * sizeof *f->cycle);
    for (int32_t t = 0; t < V; t++)
        if (plain(tok, t)) f->cycle[f->n++] = t;
    if (!f->n) {
        sl_model_free(m);
        return sl_fail(err, SL_EINVAL, "fake model: no token of the vocabulary decodes to plain text");
    }
    snprintf(m->desc, sizeof m->desc, "fake (no weights; emits %d plain tokens in turn) V=%d", f->n, hp->n_vocab);
    *out = m;
    return SL_OK;
}

void sl__fake_free(sl_model *m) {
    if (!m->fake) return;
    free(m->fake->cycle);
    free(m->fake);
    m->fake = NULL;
}

int sl__fake_logits(const sl_model *m, const sl_batch *b, float *logits) {
    const sl_fake *f = m->fake;
    const size_t V = (size_t)m->hp.n_vocab;
    for (int l = 0; l < b->n_logits; l++) {
        const int i = b->logit_idx[l];
        if (i < 0 || i >= b->n_tokens) return SL_ERANGE;
        float *row = logits + (size_t)l * V;
        memset(row, 0, V * sizeof *row);
        row[f->cycle[(uint32_t)(b->pos[i] + 1) % (uint32_t)f->n]] = 50.0f;
    }
    return SL_OK;
}
