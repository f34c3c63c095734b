/* cmd_model.c — `sluice mkmodel` and `sluice info`. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../kernels/cpu/cpu.h"
#include "../models/mkmodel.h"
#include "cli.h"
#include "commands.h"
#ifdef SL_HAVE_CUDA
#include "../kernels/cuda/cuda.h"
#endif

int sl_cmd_mkmodel(int argc, char **argv) {
    const char *out, *arch, *type, *twin, *vocab_from;
    int dim, layers, heads, kv_heads, head_dim, ff, vocab, ctx, tied, rope_freqs, seed;
    float eps, rope_base;
    const cli_opt opts[] = {
        {"out", 'o', CLI_STR, NULL, "output GGUF path (required)", &out},
        {"arch", 0, CLI_STR, "llama", "architecture: llama, qwen2, qwen3", &arch},
        {"type", 't', CLI_STR, "F32", "weight type: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K", &type},
        {"dim", 0, CLI_INT, "128", "embedding size", &dim},
        {"layers", 0, CLI_INT, "2", "number of layers", &layers},
        {"heads", 0, CLI_INT, "4", "attention heads", &heads},
        {"kv-heads", 0, CLI_INT, "2", "key/value heads (GQA)", &kv_heads},
        {"head-dim", 0, CLI_INT, "0", "head size (0: dim / heads)", &head_dim},
        {"ff", 0, CLI_INT, "256", "feed-forward size", &ff},
        {"vocab", 0, CLI_INT, "512", "toy vocabulary size (>= 259)", &vocab},
        {"vocab-from", 0, CLI_STR, NULL, "copy the tokenizer (tokenizer.* keys) of this GGUF instead", &vocab_from},
        {"ctx", 0, CLI_INT, "2048", "training context length written to the file", &ctx},
        {"tied", 0, CLI_BOOL, NULL, "tie the output projection to the embeddings", &tied},
        {"rope-freqs", 0, CLI_BOOL, NULL, "llama: add a Llama-3.1-style rope_freqs tensor", &rope_freqs},
        {"eps", 0, CLI_FLOAT, "1e-5", "RMSNorm epsilon", &eps},
        {"rope-base", 0, CLI_FLOAT, "0", "rope frequency base (0: 10000 for llama, 1e6 for qwen)", &rope_base},
        {"seed", 's', CLI_INT, "1", "random seed", &seed},
        {"twin", 0, CLI_STR, NULL, "also write the F32 twin (dequantized weights) here", &twin},
    };
    int rc = cli_parse("mkmodel", opts, sizeof opts / sizeof opts[0], argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    if (!out) {
        fprintf(stderr, "sluice mkmodel: --out is required\n");
        return 2;
    }
    sl_mkmodel_opts o;
    sl_mkmodel_defaults(&o);
    if (!strcasecmp(arch, "llama")) o.arch = SL_ARCH_LLAMA;
    else if (!strcasecmp(arch, "qwen2")) o.arch = SL_ARCH_QWEN2;
    else if (!strcasecmp(arch, "qwen3")) o.arch = SL_ARCH_QWEN3;
    else {
        fprintf(stderr, "sluice mkmodel: unknown architecture '%s' (llama, qwen2, qwen3)\n", arch);
        return 2;
    }
    int t = sl_ggml_type_from_name(type);
    if (t < 0 || !sl_ggml_blck((uint32_t)t)) {
        fprintf(stderr, "sluice mkmodel: unknown tensor type '%s'\n", type);
        return 2;
    }
    o.type = (uint32_t)t;
    o.dim = dim, o.layers = layers, o.heads = heads, o.kv_heads = kv_heads, o.head_dim = head_dim;
    o.ff = ff, o.vocab = vocab, o.ctx = ctx, o.tied = tied, o.rope_freqs = rope_freqs;
    o.eps = eps, o.rope_base = rope_base, o.seed = (uint64_t)seed, o.twin = twin, o.vocab_from = vocab_from;
    char err[SL_ERRMSG] = "";
    rc = sl_mkmodel(&o, out, err);
    if (rc) {
        fprintf(stderr, "sluice mkmodel: %s\n", err);
        return 1;
    }
    return 0;
}

int sl_cmd_info(int argc, char **argv) {
    const char *model;
    const cli_opt opts[] = {{"model", 'm', CLI_STR, NULL, "GGUF model to describe", &model}};
    int rc = cli_parse("info", opts, 1, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
#ifdef SL_HAVE_CUDA
    int nd = sl_cuda_device_count();
    printf("CUDA devices: %d\n", nd);
    for (int i = 0; i < nd; i++) {
        char name[256];
        int ma, mi;
        size_t mem;
        if (sl_cuda_device_info(i, name, sizeof name, &ma, &mi, &mem) == 0)
            printf("  %d: %s, compute capability %d.%d, %.1f GiB\n", i, name, ma, mi, mem / 1073741824.0);
    }
#else
    printf("CUDA devices: none (built without CUDA)\n");
#endif
    if (!model) return 0;
    sl_backend *be = sl_cpu_backend_create(1);
    sl_model *m;
    char err[SL_ERRMSG] = "";
    rc = sl_model_load(&m, model, be, NULL, err);
    if (rc) {
        fprintf(stderr, "sluice info: %s: %s\n", model, err);
        be->destroy(be);
        return 1;
    }
    printf("model: %s\n  %s\n  GGUF v%u, %llu tensors, %llu metadata keys, context %d, rope base %g\n", model,
           m->desc, m->gguf->version, (unsigned long long)m->gguf->n_tensors, (unsigned long long)m->gguf->n_kv,
           m->hp.n_ctx_train, m->hp.rope.freq_base);
    sl_model_free(m);
    be->destroy(be);
    return 0;
}
