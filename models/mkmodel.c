#include "mkmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant.h"

void sl_mkmodel_defaults(sl_mkmodel_opts *o) {
    memset(o, 0, sizeof *o);
    o->arch = SL_ARCH_LLAMA;
    o->type = SL_GGML_F32;
    o->dim = 128;
    o->layers = 2;
    o->heads = 4;
    o->kv_heads = 2;
    o->ff = 256;
    o->vocab = 512;
    o->ctx = 2048;
    o->eps = 1e-5f;
    o->seed = 1;
}

typedef struct mk {
    const sl_mkmodel_opts *o;
    sl_gguf_writer *w, *twin;
    sl_rng rng;
} mk;

/* A matrix of `rows` rows × `cols` (ne = [cols, rows]) in the chosen type, random weights in
 * about ±amp; the twin gets the dequantized f32 values. */
static void add_matrix(mk *k, const char *name, int64_t cols, int64_t rows, float amp) {
    uint32_t type = k->o->type;
    int blk = sl_ggml_blck(type), bytes = sl_ggml_type_bytes(type);
    int64_t nblocks = rows * cols / blk;
    void *buf = sl_xmalloc((size_t)(nblocks * bytes));
    sl_quant_random(type, &k->rng, buf, nblocks, amp);
    int64_t ne[2] = {cols, rows};
    sl_gguf_w_tensor(k->w, name, type, 2, ne, buf);
    if (k->twin) {
        float *f = sl_xmalloc((size_t)(rows * cols) * sizeof(float));
        sl_dequant_row(type, buf, f, rows * cols);
        sl_gguf_w_tensor(k->twin, name, SL_GGML_F32, 2, ne, f);
        free(f);
    }
    free(buf);
}

/* An F32 vector: center + spread·normal. */
static void add_vector(mk *k, const char *name, int64_t n, float center, float spread) {
    float *f = sl_xmalloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) f[i] = center + spread * sl_rng_normal(&k->rng);
    sl_gguf_w_tensor(k->w, name, SL_GGML_F32, 1, &n, f);
    if (k->twin) sl_gguf_w_tensor(k->twin, name, SL_GGML_F32, 1, &n, f);
    free(f);
}

static void both_u32(mk *k, const char *key, uint32_t v) {
    sl_gguf_w_u32(k->w, key, v);
    if (k->twin) sl_gguf_w_u32(k->twin, key, v);
}
static void both_f32(mk *k, const char *key, float v) {
    sl_gguf_w_f32(k->w, key, v);
    if (k->twin) sl_gguf_w_f32(k->twin, key, v);
}
static void both_str(mk *k, const char *key, const char *v) {
    sl_gguf_w_str(k->w, key, v);
    if (k->twin) sl_gguf_w_str(k->twin, key, v);
}

static void toy_vocab(sl_gguf_writer *w, int n) {
    char **tok = sl_xmalloc((size_t)n * sizeof(char *));
    float *score = sl_xmalloc((size_t)n * sizeof(float));
    int32_t *type = sl_xmalloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        char buf[32];
        if (i == 0) snprintf(buf, sizeof buf, "<unk>");
        else if (i == 1) snprintf(buf, sizeof buf, "<s>");
        else if (i == 2) snprintf(buf, sizeof buf, "</s>");
        else if (i < 259) snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else snprintf(buf, sizeof buf, "\xe2\x96\x81t%d", i); /* "▁t<i>" */
        tok[i] = strdup(buf);
        score[i] = i < 259 ? 0.0f : -(float)(i - 259);
        type[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    sl_gguf_w_str(w, "tokenizer.ggml.model", "llama");
    sl_gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, (uint64_t)n);
    sl_gguf_w_arr_f32(w, "tokenizer.ggml.scores", score, (uint64_t)n);
    sl_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", type, (uint64_t)n);
    sl_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1);
    sl_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2);
    sl_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    for (int i = 0; i < n; i++) free(tok[i]);
    free(tok);
    free(score);
    free(type);
}

/* Copies every tokenizer.* key of src into w. Returns the token count, or a negative error. */
static int copy_vocab(sl_gguf_writer *w, const sl_gguf *src, char *err) {
    const sl_gguf_kv *toks = sl_gguf_find(src, "tokenizer.ggml.tokens");
    if (!toks || toks->type != SL_GGUF_ARRAY || toks->arr_type != SL_GGUF_STRING || toks->n < 1 || toks->n > INT32_MAX)
        return sl_fail(err, SL_ENOTFOUND, "vocabulary file has no tokenizer.ggml.tokens");
    for (uint64_t i = 0; i < src->n_kv; i++)
        if (!strncmp(src->kv[i].key, "tokenizer.", 10)) sl_gguf_w_copy_kv(w, &src->kv[i]);
    return (int)toks->n;
}

static int check_dims(const sl_mkmodel_opts *o, int hd, char *err) {
    int blk = sl_ggml_blck(o->type);
    if (!blk) return sl_fail(err, SL_EUNSUPPORTED, "unsupported tensor type %u", o->type);
    if (o->dim < 2 || o->layers < 1 || o->heads < 1 || o->kv_heads < 1 || o->ff < 1 || o->vocab < 259 || o->ctx < 1)
        return sl_fail(err, SL_EINVAL, "mkmodel: dims must be positive (vocab >= 259 for the toy vocabulary)");
    if (o->heads % o->kv_heads) return sl_fail(err, SL_EINVAL, "mkmodel: kv heads %d must divide heads %d", o->kv_heads, o->heads);
    if (hd < 2 || hd % 2) return sl_fail(err, SL_EINVAL, "mkmodel: head size %d must be even", hd);
    if (o->arch == SL_ARCH_QWEN2 && hd * o->heads != o->dim)
        return sl_fail(err, SL_EINVAL, "mkmodel: qwen2 needs head size × heads == dim");
    int64_t cols[] = {o->dim, (int64_t)o->heads * hd, o->ff};
    for (int i = 0; i < 3; i++)
        if (cols[i] % blk)
            return sl_fail(err, SL_EINVAL, "mkmodel: type %s needs row lengths that are multiples of %d (dim, heads×head size, ff); got %lld",
                           sl_ggml_type_name(o->type), blk, (long long)cols[i]);
    return 0;
}

int sl_mkmodel(const sl_mkmodel_opts *o, const char *path, char err[SL_ERRMSG]) {
    int hd = o->head_dim ? o->head_dim : (o->heads ? o->dim / o->heads : 0);
    int rc = check_dims(o, hd, err);
    if (rc) return rc;
    mk k = {.o = o, .w = sl_gguf_writer_create(), .twin = o->twin ? sl_gguf_writer_create() : NULL};
    sl_rng_seed(&k.rng, o->seed);
    int vocab = o->vocab;
    if (o->vocab_from) {
        sl_gguf *src;
        if ((rc = sl_gguf_open(&src, o->vocab_from, err))) goto out;
        rc = copy_vocab(k.w, src, err);
        if (rc > 0 && k.twin) copy_vocab(k.twin, src, err);
        sl_gguf_close(src);
        if (rc < 0) goto out;
        vocab = rc;
    } else {
        toy_vocab(k.w, vocab);
        if (k.twin) toy_vocab(k.twin, vocab);
    }

    const char *an = sl_arch_name(o->arch);
    char key[128];
    both_str(&k, "general.architecture", an);
    both_str(&k, "general.name", "sluice random test model");
#define HP_U32(suffix, v) (snprintf(key, sizeof key, "%s." suffix, an), both_u32(&k, key, (uint32_t)(v)))
#define HP_F32(suffix, v) (snprintf(key, sizeof key, "%s." suffix, an), both_f32(&k, key, (v)))
    HP_U32("context_length", o->ctx);
    HP_U32("embedding_length", o->dim);
    HP_U32("block_count", o->layers);
    HP_U32("feed_forward_length", o->ff);
    HP_U32("attention.head_count", o->heads);
    HP_U32("attention.head_count_kv", o->kv_heads);
    if (o->head_dim) {
        HP_U32("attention.key_length", hd);
        HP_U32("attention.value_length", hd);
    }
    HP_U32("rope.dimension_count", hd);
    HP_F32("attention.layer_norm_rms_epsilon", o->eps > 0 ? o->eps : 1e-5f);
    float base = o->rope_base > 0 ? o->rope_base : (o->arch == SL_ARCH_LLAMA ? 10000.0f : 1000000.0f);
    HP_F32("rope.freq_base", base);
#undef HP_U32
#undef HP_F32

    int64_t E = o->dim, F = o->ff, QD = (int64_t)o->heads * hd, KD = (int64_t)o->kv_heads * hd;
    /* The embedding is normalized before use, so its scale only matters when it doubles as
     * the output projection (tied): give both the output's scale, which keeps logits in the
     * range of real models (a larger one makes every softmax nearly one-hot). */
    add_matrix(&k, "token_embd.weight", E, vocab, 4.0f / sqrtf((float)E));
    add_vector(&k, "output_norm.weight", E, 1.0f, 0.1f);
    if (!o->tied) add_matrix(&k, "output.weight", E, vocab, 4.0f / sqrtf((float)E));
    if (o->rope_freqs && o->arch == SL_ARCH_LLAMA) {
        /* shaped like Llama 3.1's: 1 for high frequencies, 8 for low ones, smooth between */
        int64_t n = hd / 2;
        float *f = sl_xmalloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) {
            float t = (float)i / (float)(n > 1 ? n - 1 : 1);
            f[i] = t < 0.25f ? 1.0f : t > 0.75f ? 8.0f : 1.0f + 7.0f * (t - 0.25f) * 2.0f;
        }
        sl_gguf_w_tensor(k.w, "rope_freqs.weight", SL_GGML_F32, 1, &n, f);
        if (k.twin) sl_gguf_w_tensor(k.twin, "rope_freqs.weight", SL_GGML_F32, 1, &n, f);
        free(f);
    }
    char name[96];
    for (int l = 0; l < o->layers; l++) {
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s, l), name)
        add_vector(&k, NAME("attn_norm.weight"), E, 1.0f, 0.1f);
        add_matrix(&k, NAME("attn_q.weight"), E, QD, 1.7f / sqrtf((float)E));
        add_matrix(&k, NAME("attn_k.weight"), E, KD, 1.7f / sqrtf((float)E));
        add_matrix(&k, NAME("attn_v.weight"), E, KD, 1.7f / sqrtf((float)E));
        if (o->arch == SL_ARCH_QWEN2) {
            add_vector(&k, NAME("attn_q.bias"), QD, 0.0f, 0.2f);
            add_vector(&k, NAME("attn_k.bias"), KD, 0.0f, 0.2f);
            add_vector(&k, NAME("attn_v.bias"), KD, 0.0f, 0.2f);
        }
        if (o->arch == SL_ARCH_QWEN3) {
            add_vector(&k, NAME("attn_q_norm.weight"), hd, 1.0f, 0.1f);
            add_vector(&k, NAME("attn_k_norm.weight"), hd, 1.0f, 0.1f);
        }
        add_matrix(&k, NAME("attn_output.weight"), QD, E, 1.7f / sqrtf((float)QD));
        add_vector(&k, NAME("ffn_norm.weight"), E, 1.0f, 0.1f);
        add_matrix(&k, NAME("ffn_gate.weight"), E, F, 1.7f / sqrtf((float)E));
        add_matrix(&k, NAME("ffn_up.weight"), E, F, 1.7f / sqrtf((float)E));
        add_matrix(&k, NAME("ffn_down.weight"), F, E, 1.7f / sqrtf((float)F));
#undef NAME
    }
    rc = sl_gguf_writer_save(k.w, path);
    if (rc) {
        sl_fail(err, rc, "cannot write %s", path);
        goto out;
    }
    if (k.twin && (rc = sl_gguf_writer_save(k.twin, o->twin))) sl_fail(err, rc, "cannot write %s", o->twin);
out:
    sl_gguf_writer_destroy(k.w);
    if (k.twin) sl_gguf_writer_destroy(k.twin);
    return rc;
}
