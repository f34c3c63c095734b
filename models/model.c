#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

typedef struct loader {
    sl_model *m;
    const sl_model_opts *opts;
    char *err;
    uint8_t *used; /* [n_tensors] tensor consumed by the architecture */
} loader;

const char *sl_arch_name(sl_arch a) {
    static const char *n[] = {"llama", "qwen2", "qwen3"};
    return (unsigned)a < 3 ? n[a] : "?";
}

/* Reads A.<suffix> as u32 (any integer type that fits). Per-layer arrays must hold n_layer
 * equal values: differing per-layer values are beyond our architectures. */
static int get_hp(loader *L, const char *suffix, int required, uint32_t dflt, uint32_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", sl_arch_name(L->m->hp.arch), suffix);
    const sl_gguf_kv *kv = sl_gguf_find(L->m->gguf, key);
    if (!kv) {
        if (required) return sl_fail(L->err, SL_ENOTFOUND, "missing metadata key %s", key);
        *out = dflt;
        return 0;
    }
    if (kv->type == SL_GGUF_ARRAY) {
        uint32_t at = kv->arr_type;
        if (!(at <= SL_GGUF_I32 || at == SL_GGUF_U64 || at == SL_GGUF_I64))
            return sl_fail(L->err, SL_EFORMAT, "key %s: expected integers", key);
        if (L->m->hp.n_layer > 0 && kv->n != (uint64_t)L->m->hp.n_layer)
            return sl_fail(L->err, SL_EFORMAT, "key %s: array of %llu values, expected %d (one per layer)",
                           key, (unsigned long long)kv->n, L->m->hp.n_layer);
        if (kv->n == 0) return sl_fail(L->err, SL_EFORMAT, "key %s: empty array", key);
        int64_t v0 = sl_gguf_arr_int(kv, 0);
        for (uint64_t i = 1; i < kv->n; i++)
            if (sl_gguf_arr_int(kv, i) != v0)
                return sl_fail(L->err, SL_EUNSUPPORTED, "key %s: per-layer values differ (unsupported)", key);
        if (v0 < 0 || v0 > UINT32_MAX) return sl_fail(L->err, SL_ERANGE, "key %s: value %lld out of range", key, (long long)v0);
        *out = (uint32_t)v0;
        return 0;
    }
    return sl_gguf_get_u32(L->m->gguf, key, out, L->err);
}

static int get_hp_f32(loader *L, const char *suffix, int required, float dflt, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", sl_arch_name(L->m->hp.arch), suffix);
    int rc = sl_gguf_get_f32(L->m->gguf, key, out, L->err);
    if (rc == SL_ENOTFOUND) {
        if (required) return sl_fail(L->err, SL_ENOTFOUND, "missing metadata key %s", key);
        *out = dflt;
        return 0;
    }
    return rc;
}

static int32_t get_token_id(const sl_gguf *g, const char *key, int32_t dflt, int n_vocab) {
    uint32_t v;
    if (sl_gguf_get_u32(g, key, &v, NULL) != 0 || v >= (uint32_t)n_vocab) return dflt;
    return (int32_t)v;
}

static int read_hparams(loader *L) {
    sl_model *m = L->m;
    sl_hparams *hp = &m->hp;
    const char *s;
    uint64_t len;
    int rc = sl_gguf_get_str(m->gguf, "general.architecture", &s, &len, L->err);
    if (rc == SL_ENOTFOUND) return sl_fail(L->err, rc, "missing metadata key general.architecture");
    if (rc) return rc;
    if (len == 5 && !memcmp(s, "llama", 5)) hp->arch = SL_ARCH_LLAMA;
    else if (len == 5 && !memcmp(s, "qwen2", 5)) hp->arch = SL_ARCH_QWEN2;
    else if (len == 5 && !memcmp(s, "qwen3", 5)) hp->arch = SL_ARCH_QWEN3;
    else
        return sl_fail(L->err, SL_EUNSUPPORTED, "unsupported architecture '%.*s' (supported: llama, qwen2, qwen3)",
                       (int)(len > 40 ? 40 : len), s);

    uint32_t n_embd, n_layer, n_ff, n_head, n_head_kv, ctx, kl, vl, n_rot;
    hp->n_layer = 0;
    if ((rc = get_hp(L, "block_count", 1, 0, &n_layer))) return rc;
    if (n_layer == 0 || n_layer > 1024) return sl_fail(L->err, SL_ERANGE, "block_count %u out of range", n_layer);
    hp->n_layer = (int)n_layer;
    if ((rc = get_hp(L, "context_length", 1, 0, &ctx))) return rc;
    if ((rc = get_hp(L, "embedding_length", 1, 0, &n_embd))) return rc;
    if ((rc = get_hp(L, "feed_forward_length", 1, 0, &n_ff))) return rc;
    if ((rc = get_hp(L, "attention.head_count", 1, 0, &n_head))) return rc;
    if ((rc = get_hp(L, "attention.head_count_kv", 0, n_head, &n_head_kv))) return rc;
    if (n_embd == 0 || n_embd > (1u << 20)) return sl_fail(L->err, SL_ERANGE, "embedding_length %u out of range", n_embd);
    if (n_ff == 0 || n_ff > (1u << 22)) return sl_fail(L->err, SL_ERANGE, "feed_forward_length %u out of range", n_ff);
    if (n_head == 0 || n_head > 4096) return sl_fail(L->err, SL_ERANGE, "attention.head_count %u out of range", n_head);
    if (n_head_kv == 0 || n_head % n_head_kv)
        return sl_fail(L->err, SL_EFORMAT, "attention.head_count_kv %u must divide attention.head_count %u", n_head_kv, n_head);
    uint32_t dflt_hd = n_embd / n_head;
    if ((rc = get_hp(L, "attention.key_length", 0, dflt_hd, &kl))) return rc;
    if ((rc = get_hp(L, "attention.value_length", 0, dflt_hd, &vl))) return rc;
    if (!kl && n_embd % n_head) return sl_fail(L->err, SL_EFORMAT, "embedding_length %u not divisible by head_count %u", n_embd, n_head);
    if (kl != vl) return sl_fail(L->err, SL_EUNSUPPORTED, "attention.key_length %u != value_length %u", kl, vl);
    if (kl == 0 || kl > 1024 || kl % 2) return sl_fail(L->err, SL_ERANGE, "head size %u out of range (even, 2..1024)", kl);
    if ((rc = get_hp(L, "rope.dimension_count", 0, kl, &n_rot))) return rc;
    if (n_rot != kl)
        return sl_fail(L->err, SL_EUNSUPPORTED, "rope.dimension_count %u != head size %u (partial rotary unsupported)", n_rot, kl);
    if (hp->arch == SL_ARCH_QWEN2 && kl * n_head != n_embd)
        return sl_fail(L->err, SL_EFORMAT, "qwen2: head size %u × heads %u must equal embedding_length %u", kl, n_head, n_embd);
    if ((rc = get_hp_f32(L, "attention.layer_norm_rms_epsilon", 1, 0, &hp->eps))) return rc;
    if (!(hp->eps > 0 && hp->eps < 1)) return sl_fail(L->err, SL_ERANGE, "layer_norm_rms_epsilon %g out of range", hp->eps);
    if ((rc = get_hp_f32(L, "rope.freq_base", 0, 10000.0f, &hp->rope.freq_base))) return rc;
    if (!(hp->rope.freq_base > 1)) return sl_fail(L->err, SL_ERANGE, "rope.freq_base %g out of range", hp->rope.freq_base);

    /* rope scaling: none or linear (YaRN / longrope are not implemented: refuse them) */
    char key[128];
    float factor = 0;
    snprintf(key, sizeof key, "%s.rope.scaling.type", sl_arch_name(hp->arch));
    rc = sl_gguf_get_str(m->gguf, key, &s, &len, L->err);
    if (rc && rc != SL_ENOTFOUND) return rc;
    int linear = 1;
    if (rc == 0) {
        if (len == 4 && !memcmp(s, "none", 4)) linear = 0;
        else if (!(len == 6 && !memcmp(s, "linear", 6)))
            return sl_fail(L->err, SL_EUNSUPPORTED, "rope scaling type '%.*s' is not supported (none, linear)",
                           (int)(len > 32 ? 32 : len), s);
    }
    if ((rc = get_hp_f32(L, "rope.scaling.factor", 0, 0, &factor))) return rc;
    if (factor == 0 && (rc = get_hp_f32(L, "rope.scale_linear", 0, 0, &factor))) return rc;
    if (factor < 0 || !isfinite(factor)) return sl_fail(L->err, SL_ERANGE, "rope scaling factor %g out of range", factor);
    hp->rope.freq_scale = (linear && factor > 0) ? 1.0f / factor : 1.0f;
    hp->rope.mode = hp->arch == SL_ARCH_LLAMA ? SL_ROPE_NORM : SL_ROPE_NEOX;
    hp->rope.n_rot = (int)n_rot;

    hp->n_embd = (int)n_embd;
    hp->n_ff = (int)n_ff;
    hp->n_head = (int)n_head;
    hp->n_head_kv = (int)n_head_kv;
    hp->head_dim = (int)kl;
    hp->n_ctx_train = (int)ctx;

    /* vocabulary size: the token list when present, else token_embd rows */
    const sl_gguf_kv *toks = sl_gguf_find(m->gguf, "tokenizer.ggml.tokens");
    const sl_gguf_tensor *te = sl_gguf_tensor_find(m->gguf, "token_embd.weight");
    if (!te) return sl_fail(L->err, SL_ENOTFOUND, "missing tensor token_embd.weight");
    if (te->n_dims != 2 || te->ne[1] > INT32_MAX) return sl_fail(L->err, SL_EFORMAT, "tensor token_embd.weight: expected 2 dimensions");
    hp->n_vocab = (int)te->ne[1];
    if (toks) {
        if (toks->type != SL_GGUF_ARRAY || toks->arr_type != SL_GGUF_STRING)
            return sl_fail(L->err, SL_EFORMAT, "key tokenizer.ggml.tokens: expected an array of strings");
        if (toks->n != (uint64_t)hp->n_vocab)
            return sl_fail(L->err, SL_EFORMAT, "tokenizer.ggml.tokens has %llu tokens but token_embd.weight has %d rows",
                           (unsigned long long)toks->n, hp->n_vocab);
    }
    const char *tm = NULL;
    uint64_t tml = 0;
    int gpt2 = sl_gguf_get_str(m->gguf, "tokenizer.ggml.model", &tm, &tml, NULL) == 0 && tml == 4 && !memcmp(tm, "gpt2", 4);
    hp->bos_id = get_token_id(m->gguf, "tokenizer.ggml.bos_token_id", gpt2 ? 11 : 1, hp->n_vocab);
    hp->eos_id = get_token_id(m->gguf, "tokenizer.ggml.eos_token_id", gpt2 ? 11 : 2, hp->n_vocab);
    hp->eot_id = get_token_id(m->gguf, "tokenizer.ggml.eot_token_id", -1, hp->n_vocab);
    if (hp->bos_id >= hp->n_vocab) hp->bos_id = -1;
    if (hp->eos_id >= hp->n_vocab) hp->eos_id = -1;
    return 0;
}

/* Finds a tensor and checks its shape (ne[0], ne[1]; ne1 == 0 means a vector). */
static int find(loader *L, const char *name, int64_t ne0, int64_t ne1, int optional,
                const sl_gguf_tensor **out) {
    *out = NULL;
    const sl_gguf_tensor *t = sl_gguf_tensor_find(L->m->gguf, name);
    if (!t) return optional ? 0 : sl_fail(L->err, SL_ENOTFOUND, "missing tensor %s", name);
    int want_dims = ne1 ? 2 : 1;
    int64_t n1 = t->ne[1] * t->ne[2] * t->ne[3];
    if (t->ne[0] != ne0 || (ne1 ? n1 != ne1 || t->ne[2] != 1 || t->ne[3] != 1 : n1 != 1)) {
        if (want_dims == 2)
            return sl_fail(L->err, SL_EFORMAT, "tensor %s: shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", name,
                           (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                           (long long)ne0, (long long)ne1);
        return sl_fail(L->err, SL_EFORMAT, "tensor %s: shape [%lld, %lld, %lld, %lld], expected [%lld]", name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                       (long long)ne0);
    }
    L->used[t - L->m->gguf->tensors] = 1;
    *out = t;
    return 0;
}

static int load_matrix(loader *L, const char *name, int64_t cols, int64_t rows, sl_bweight **out) {
    const sl_gguf_tensor *t;
    int rc = find(L, name, cols, rows, 0, &t);
    if (rc) return rc;
    sl_qw q;
    rc = sl_repack(t->type, t->data, rows, cols, L->opts->quant_to, L->opts->group ? L->opts->group : 32, 1, &q);
    if (rc) return sl_fail(L->err, rc, "tensor %s: cannot repack type %s", name, sl_ggml_type_name(t->type));
    /* a weight kept as is points into the mapping, which lives as long as the model: the
     * backend may alias it; repacked storage is ours and freed below, so it must copy */
    rc = L->m->be->weight_create(L->m->be, &q, !q.owns, out);
    sl_qw_free(&q);
    if (rc) return sl_fail(L->err, rc, "tensor %s: backend cannot hold the weight", name);
    return 0;
}

/* Loads a small vector (norm, bias, rope_freqs) as f32 into a backend buffer. */
static int load_vector(loader *L, const char *name, int64_t n, int optional, float **out) {
    const sl_gguf_tensor *t;
    *out = NULL;
    int rc = find(L, name, n, 0, optional, &t);
    if (rc || !t) return rc;
    float *tmp = sl_xmalloc((size_t)n * sizeof(float));
    sl_dequant_row(t->type, t->data, tmp, n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(tmp[i])) {
            free(tmp);
            return sl_fail(L->err, SL_EFORMAT, "tensor %s: element %lld is not finite", name, (long long)i);
        }
    *out = L->m->be->alloc(L->m->be, (size_t)n * sizeof(float));
    if (!*out) {
        free(tmp);
        return sl_fail(L->err, SL_ENOMEM, "tensor %s: out of backend memory", name);
    }
    L->m->be->upload(L->m->be, *out, tmp, (size_t)n * sizeof(float));
    free(tmp);
    return 0;
}

static int load_tensors(loader *L) {
    sl_model *m = L->m;
    const sl_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, V = hp->n_vocab, F = hp->n_ff, Dk = hp->head_dim;
    int64_t QD = (int64_t)hp->n_head * Dk, KD = (int64_t)hp->n_head_kv * Dk;
    int rc;
    char name[96];
    if ((rc = load_matrix(L, "token_embd.weight", E, V, &m->tok_embd))) return rc;
    if ((rc = load_vector(L, "output_norm.weight", E, 0, &m->output_norm))) return rc;
    if (sl_gguf_tensor_find(m->gguf, "output.weight")) {
        if ((rc = load_matrix(L, "output.weight", E, V, &m->output))) return rc;
    } else {
        m->output = m->tok_embd;
        m->hp.tied_output = true;
    }
    if (hp->arch == SL_ARCH_LLAMA) {
        if ((rc = load_vector(L, "rope_freqs.weight", hp->rope.n_rot / 2, 1, &m->rope_freqs))) return rc;
        m->hp.rope.freqs = m->rope_freqs;
    }
    m->layers = sl_xcalloc((size_t)hp->n_layer, sizeof(sl_layer));
    for (int l = 0; l < hp->n_layer; l++) {
        sl_layer *ly = &m->layers[l];
#define MAT(field, suffix, cols, rows)                                                           \
    snprintf(name, sizeof name, "blk.%d." suffix, l);                                            \
    if ((rc = load_matrix(L, name, cols, rows, &ly->field))) return rc;
#define VEC(field, suffix, n, optional)                                                          \
    snprintf(name, sizeof name, "blk.%d." suffix, l);                                            \
    if ((rc = load_vector(L, name, n, optional, &ly->field))) return rc;
        MAT(wq, "attn_q.weight", E, QD);
        MAT(wk, "attn_k.weight", E, KD);
        MAT(wv, "attn_v.weight", E, KD);
        MAT(wo, "attn_output.weight", QD, E);
        MAT(w_gate, "ffn_gate.weight", E, F);
        MAT(w_up, "ffn_up.weight", E, F);
        MAT(w_down, "ffn_down.weight", F, E);
        VEC(attn_norm, "attn_norm.weight", E, 0);
        VEC(ffn_norm, "ffn_norm.weight", E, 0);
        int qkv_bias_required = hp->arch == SL_ARCH_QWEN2;
        VEC(bq, "attn_q.bias", QD, !qkv_bias_required);
        VEC(bk, "attn_k.bias", KD, !qkv_bias_required);
        VEC(bv, "attn_v.bias", KD, !qkv_bias_required);
        VEC(bo, "attn_output.bias", E, 1);
        VEC(b_gate, "ffn_gate.bias", F, 1);
        VEC(b_up, "ffn_up.bias", F, 1);
        VEC(b_down, "ffn_down.bias", E, 1);
        if (hp->arch == SL_ARCH_QWEN3) {
            VEC(q_norm, "attn_q_norm.weight", Dk, 0);
            VEC(k_norm, "attn_k_norm.weight", Dk, 0);
        }
#undef MAT
#undef VEC
    }
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++)
        if (!L->used[i])
            return sl_fail(L->err, SL_EFORMAT, "unexpected tensor %s for architecture %s", m->gguf->tensors[i].name,
                           sl_arch_name(hp->arch));
    return 0;
}

int sl_model_load_gguf(sl_model **out, sl_gguf *g, sl_backend *be, const sl_model_opts *opts, char err[SL_ERRMSG]) {
    static const sl_model_opts dflt = {.quant_to = -1, .group = 32};
    *out = NULL;
    sl_model *m = sl_xcalloc(1, sizeof *m);
    m->gguf = g;
    m->be = be;
    loader L = {.m = m, .opts = opts ? opts : &dflt, .err = err};
    L.used = sl_xcalloc(g->n_tensors ? g->n_tensors : 1, 1);
    int rc;
    if (L.opts->quant_to != -1 && L.opts->quant_to != SL_WF_QW8 && L.opts->quant_to != SL_WF_QW4) {
        rc = sl_fail(err, SL_EINVAL, "quantization must be int8 or int4");
        goto fail;
    }
    if ((rc = read_hparams(&L))) goto fail;
    if ((rc = load_tensors(&L))) goto fail;
    free(L.used);
    const sl_gguf_tensor *te = sl_gguf_tensor_find(g, "blk.0.ffn_down.weight");
    snprintf(m->desc, sizeof m->desc, "%s %d layers E=%d H=%d Hkv=%d Dk=%d F=%d V=%d %s%s", sl_arch_name(m->hp.arch),
             m->hp.n_layer, m->hp.n_embd, m->hp.n_head, m->hp.n_head_kv, m->hp.head_dim, m->hp.n_ff, m->hp.n_vocab,
             te ? sl_ggml_type_name(te->type) : "?", m->hp.tied_output ? " tied" : "");
    *out = m;
    return 0;
fail:
    free(L.used);
    sl_model_free(m);
    return rc;
}

int sl_model_load(sl_model **out, const char *path, sl_backend *be, const sl_model_opts *opts, char err[SL_ERRMSG]) {
    sl_gguf *g;
    *out = NULL;
    int rc = sl_gguf_open(&g, path, err);
    if (rc) return rc;
    return sl_model_load_gguf(out, g, be, opts, err);
}
