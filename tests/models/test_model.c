/* Model loading: every architecture loads; a missing or inconsistent hyperparameter, a
 * missing, misshaped or unexpected tensor, an unsupported architecture or rope scaling each
 * gives its own clear error (the broken files are made here from a valid one). */
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu.h"
#include "models/gguf.h"
#include "models/mkmodel.h"
#include "models/model.h"
#include "tests/test.h"

typedef struct edit {
    const char *drop_key;      /* remove this key */
    const char *drop_tensor;   /* remove this tensor */
    const char *set_u32_key;   /* set (or add) this key to set_u32 */
    uint32_t set_u32;
    const char *set_str_key;   /* set (or add) this key to set_str */
    const char *set_str;
    const char *shrink_tensor; /* write this tensor with one row less */
    const char *extra_tensor;  /* add a small F32 tensor of this name */
} edit;

/* Rewrites src into dst with one edit. */
static void rewrite(const char *src, const char *dst, const edit *e) {
    sl_gguf *g;
    char err[SL_ERRMSG];
    ASSERT_EQ(sl_gguf_open(&g, src, err), 0);
    sl_gguf_writer *w = sl_gguf_writer_create();
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!e->drop_key || strcmp(g->kv[i].key, e->drop_key)) sl_gguf_w_copy_kv(w, &g->kv[i]);
    if (e->set_u32_key) sl_gguf_w_u32(w, e->set_u32_key, e->set_u32);
    if (e->set_str_key) sl_gguf_w_str(w, e->set_str_key, e->set_str);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const sl_gguf_tensor *t = &g->tensors[i];
        if (e->drop_tensor && !strcmp(t->name, e->drop_tensor)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (e->shrink_tensor && !strcmp(t->name, e->shrink_tensor)) ne[t->n_dims - 1]--;
        sl_gguf_w_tensor(w, t->name, t->type, (int)t->n_dims, ne, t->data);
    }
    if (e->extra_tensor) {
        float v[32] = {0};
        int64_t n = 32;
        sl_gguf_w_tensor(w, e->extra_tensor, SL_GGML_F32, 1, &n, v);
    }
    ASSERT_EQ(sl_gguf_writer_save(w, dst), 0);
    sl_gguf_writer_destroy(w);
    sl_gguf_close(g);
}

static int try_load(sl_backend *be, const char *path, char *err) {
    sl_model *m = NULL;
    int rc = sl_model_load(&m, path, be, NULL, err);
    if (rc == 0) sl_model_free(m);
    else ASSERT(m == NULL);
    return rc;
}

static void make(const char *path, sl_arch arch, uint32_t type, bool tied) {
    sl_mkmodel_opts o;
    sl_mkmodel_defaults(&o);
    o.arch = arch;
    o.type = type;
    o.tied = tied;
    o.dim = 64;
    o.ff = 64;
    o.vocab = 260;
    o.layers = 2;
    o.rope_freqs = arch == SL_ARCH_LLAMA;
    char err[SL_ERRMSG] = "";
    int rc = sl_mkmodel(&o, path, err);
    if (rc) fprintf(stderr, "mkmodel: %s\n", err);
    ASSERT_EQ(rc, 0);
}

/* Logits of a short prompt at every position (host [P][V], caller frees). */
static float *prompt_logits(sl_model *m, int P) {
    int V = m->hp.n_vocab;
    ASSERT_EQ(sl_model_reserve(m, P, 1, 4, P), 0);
    sl_kv_cache kv;
    ASSERT_EQ(sl_kv_cache_init(&kv, m, 5, 16), 0);
    int32_t tok[64], pos[64], slot[64], lidx[64], bt[4] = {1, 2, 3, 4}, qs = 0, ql = P, cl = P;
    for (int i = 0; i < P; i++) tok[i] = 3 + (i * 37) % (V - 3), pos[i] = i, slot[i] = 16 + i, lidx[i] = i;
    sl_batch b = {.n_tokens = P, .tokens = tok, .pos = pos, .slot_mapping = slot, .n_seqs = 1, .max_blocks = 4,
                  .q_start = &qs, .q_len = &ql, .ctx_len = &cl, .block_tables = bt, .n_logits = P, .logit_idx = lidx};
    float *out = malloc((size_t)P * V * sizeof(float));
    ASSERT_EQ(sl_forward(m, &kv, &b, out), 0);
    sl_kv_cache_deinit(&kv, m);
    return out;
}

/* --quantization int8|int4: F32 weights quantized at load stay close to the F32 model; int4
 * further than int8 (and neither is a no-op). */
static void test_load_quantization(sl_backend *be, const char *path) {
    enum { P = 24 };
    char err[SL_ERRMSG];
    double rms[3] = {0};
    float *ref = NULL;
    const int fmts[3] = {-1, SL_WF_QW8, SL_WF_QW4};
    for (int q = 0; q < 3; q++) {
        sl_model_opts o = {.quant_to = fmts[q], .group = 32};
        sl_model *m;
        ASSERT_EQ(sl_model_load(&m, path, be, &o, err), 0);
        int V = m->hp.n_vocab;
        float *l = prompt_logits(m, P);
        if (!ref) {
            ref = l;
        } else {
            double se = 0, sr = 0;
            for (int i = 0; i < P * V; i++) se += (l[i] - ref[i]) * (double)(l[i] - ref[i]), sr += ref[i] * (double)ref[i];
            rms[q] = sqrt(se / sr);
            free(l);
        }
        sl_model_free(m);
    }
    free(ref);
    printf("test_model: relative rms logit error int8 %.2e, int4 %.2e\n", rms[1], rms[2]);
    /* Expected from the step sizes: RTN adds a relative weight error of ~0.4% (int8, absmax/127)
     * and ~6.7% (int4, range/15) per matmul, ~15 matmuls deep here: ~1.5% and ~26%. */
    ASSERT(rms[1] > 0 && rms[1] < 0.04);
    ASSERT(rms[2] > 4 * rms[1] && rms[2] < 0.5);
    sl_model_opts bad = {.quant_to = SL_WF_F16};
    sl_model *m;
    ASSERT_EQ(sl_model_load(&m, path, be, &bad, err), SL_EINVAL);
}

int main(void) {
    sl_backend *be = sl_cpu_backend_create(1);
    char err[SL_ERRMSG];
    const char *good = "test_model_good.gguf", *bad = "test_model_bad.gguf";

    /* every architecture loads, tied and untied, with what the metadata says */
    sl_arch archs[] = {SL_ARCH_LLAMA, SL_ARCH_QWEN2, SL_ARCH_QWEN3};
    for (int a = 0; a < 3; a++)
        for (int tied = 0; tied < 2; tied++) {
            make(good, archs[a], SL_GGML_Q8_0, tied);
            sl_model *m;
            int rc = sl_model_load(&m, good, be, NULL, err);
            if (rc) fprintf(stderr, "%s\n", err);
            ASSERT_EQ(rc, 0);
            ASSERT_EQ(m->hp.arch, archs[a]);
            ASSERT_EQ(m->hp.n_layer, 2);
            ASSERT_EQ(m->hp.n_embd, 64);
            ASSERT_EQ(m->hp.n_head, 4);
            ASSERT_EQ(m->hp.n_head_kv, 2);
            ASSERT_EQ(m->hp.head_dim, 16);
            ASSERT_EQ(m->hp.n_vocab, 260);
            ASSERT_EQ(m->hp.tied_output, tied);
            ASSERT_EQ(m->hp.rope.mode, archs[a] == SL_ARCH_LLAMA ? SL_ROPE_NORM : SL_ROPE_NEOX);
            ASSERT_EQ(m->rope_freqs != NULL, archs[a] == SL_ARCH_LLAMA);
            ASSERT_EQ(m->layers[0].bq != NULL, archs[a] == SL_ARCH_QWEN2);
            ASSERT_EQ(m->layers[1].k_norm != NULL, archs[a] == SL_ARCH_QWEN3);
            ASSERT_EQ(m->hp.eos_id, 2);
            sl_model_free(m);
        }

    make(good, SL_ARCH_LLAMA, SL_GGML_F32, false);
    test_load_quantization(be, good);
    struct { edit e; int code; const char *msg; } cases[] = {
        {{.drop_key = "llama.block_count"}, SL_ENOTFOUND, "missing metadata key llama.block_count"},
        {{.drop_key = "llama.attention.layer_norm_rms_epsilon"}, SL_ENOTFOUND, "llama.attention.layer_norm_rms_epsilon"},
        {{.drop_key = "general.architecture"}, SL_ENOTFOUND, "general.architecture"},
        {{.set_str_key = "general.architecture", .set_str = "gpt-neox"}, SL_EUNSUPPORTED, "unsupported architecture 'gpt-neox'"},
        {{.set_u32_key = "llama.attention.head_count_kv", .set_u32 = 3}, SL_EFORMAT, "head_count_kv 3 must divide"},
        {{.set_u32_key = "llama.rope.dimension_count", .set_u32 = 8}, SL_EUNSUPPORTED, "rope.dimension_count 8"},
        {{.set_u32_key = "llama.embedding_length", .set_u32 = 0}, SL_ERANGE, "embedding_length 0"},
        {{.set_str_key = "llama.rope.scaling.type", .set_str = "yarn"}, SL_EUNSUPPORTED, "rope scaling type 'yarn'"},
        {{.drop_tensor = "blk.1.ffn_down.weight"}, SL_ENOTFOUND, "missing tensor blk.1.ffn_down.weight"},
        {{.drop_tensor = "output_norm.weight"}, SL_ENOTFOUND, "missing tensor output_norm.weight"},
        {{.shrink_tensor = "blk.0.attn_k.weight"}, SL_EFORMAT, "tensor blk.0.attn_k.weight: shape"},
        {{.shrink_tensor = "token_embd.weight"}, SL_EFORMAT, "tokenizer.ggml.tokens has 260 tokens but token_embd.weight has 259"},
        {{.extra_tensor = "blk.2.attn_norm.weight"}, SL_EFORMAT, "unexpected tensor blk.2.attn_norm.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rewrite(good, bad, &cases[i].e);
        err[0] = 0;
        int rc = try_load(be, bad, err);
        if (rc != cases[i].code || !strstr(err, cases[i].msg))
            fprintf(stderr, "case %zu: got %d '%s', want %d '%s'\n", i, rc, err, cases[i].code, cases[i].msg);
        ASSERT_EQ(rc, cases[i].code);
        ASSERT_STR_CONTAINS(err, cases[i].msg);
    }
    /* qwen2 needs its QKV biases */
    make(good, SL_ARCH_QWEN2, SL_GGML_F32, false);
    edit nob = {.drop_tensor = "blk.0.attn_v.bias"};
    rewrite(good, bad, &nob);
    ASSERT_EQ(try_load(be, bad, err), SL_ENOTFOUND);
    ASSERT_STR_CONTAINS(err, "missing tensor blk.0.attn_v.bias");
    /* qwen3 needs its q/k norms */
    make(good, SL_ARCH_QWEN3, SL_GGML_F32, false);
    edit nonorm = {.drop_tensor = "blk.1.attn_q_norm.weight"};
    rewrite(good, bad, &nonorm);
    ASSERT_EQ(try_load(be, bad, err), SL_ENOTFOUND);
    ASSERT_STR_CONTAINS(err, "missing tensor blk.1.attn_q_norm.weight");
    /* a file that is not there */
    ASSERT_EQ(try_load(be, "no-such-file.gguf", err), SL_EIO);
    remove(good);
    remove(bad);
    be->destroy(be);
    printf("test_model: ok\n");
    return 0;
}
