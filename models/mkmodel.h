/* mkmodel.h — writes small GGUF models with seeded random weights, for tests and demos.
 *
 * Every architecture (llama, qwen2, qwen3) and every tensor type of models/quant.h: matrices
 * get random but valid blocks of the chosen type (K-quants need no quantizer); norms, biases
 * and rope_freqs stay F32. The vocabulary is a toy SentencePiece one (<unk>, <s>, </s>, the
 * 256 byte tokens <0x00>..<0xFF>, then filler pieces) unless the tokenizer of another GGUF
 * file is copied in. The F32 "twin" holds exactly the dequantized weights of the same model,
 * so a backend computing with f32 activations can be compared tightly against llama.cpp.
 */
#ifndef SL_MKMODEL_H
#define SL_MKMODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/base.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_mkmodel_opts {
    sl_arch arch;
    uint32_t type;           /* SL_GGML_* of the weight matrices */
    int dim, layers, heads, kv_heads, head_dim, ff, vocab, ctx;
    bool tied, rope_freqs;
    float eps, rope_base;
    uint64_t seed;
    const char *vocab_from;  /* copy tokenizer.* keys from this GGUF (vocab = its token count) */
    const char *twin;        /* also write the F32 twin here (or NULL) */
} sl_mkmodel_opts;

/* Defaults: llama F32, dim 128, 2 layers, 4 heads, 2 kv heads, ff 256, vocab 512, ctx 2048. */
void sl_mkmodel_defaults(sl_mkmodel_opts *o);
/* Writes path (and o->twin). Errors (bad dims for the type, I/O) come with a message. */
int sl_mkmodel(const sl_mkmodel_opts *o, const char *path, char err[SL_ERRMSG]);

#ifdef __cplusplus
}
#endif
#endif
