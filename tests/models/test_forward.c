/* The forward pass over ragged batches: the logits of every position are bit for bit the same
 * whether a sequence runs alone in one prefill, or chunked and mixed with other sequences
 * (prefill chunks beside decode tokens) over scattered KV blocks. Every architecture, GQA, the
 * quantized types (QW8, QW4 with offsets, QW4 without). And the warm-up pass leaves nothing
 * behind. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "models/mkmodel.h"
#include "models/model.h"
#include "tests/test.h"

enum { BS = 4, NSEQ = 3, MAXB = 16 };

static const int plen[NSEQ] = {21, 7, 34};

static int32_t tok_of(int s, int i, int V) { return (int32_t)(3 + (s * 131 + i * 17 + i * i) % (V - 3)); }

/* Reference: sequence s alone, in one prefill, blocks 1.. in order; logits at every position. */
static float *run_alone(sl_model *m, int s) {
    int V = m->hp.n_vocab, P = plen[s];
    sl_kv_cache kv;
    ASSERT_EQ(sl_kv_cache_init(&kv, m, MAXB + 1, BS), 0);
    int32_t tok[64], pos[64], slot[64], lidx[64], bt[MAXB];
    for (int b = 0; b < MAXB; b++) bt[b] = b + 1;
    for (int i = 0; i < P; i++) {
        tok[i] = tok_of(s, i, V);
        pos[i] = i;
        slot[i] = bt[i / BS] * BS + i % BS;
        lidx[i] = i;
    }
    int32_t qs = 0, ql = P, cl = P;
    sl_batch b = {.n_tokens = P, .tokens = tok, .pos = pos, .slot_mapping = slot, .n_seqs = 1, .max_blocks = MAXB,
                  .q_start = &qs, .q_len = &ql, .ctx_len = &cl, .block_tables = bt, .n_logits = P, .logit_idx = lidx};
    float *out = malloc((size_t)P * V * sizeof(float));
    ASSERT_EQ(sl_forward(m, &kv, &b, out), 0);
    sl_kv_cache_deinit(&kv, m);
    return out;
}

static void check_model(const char *path) {
    sl_backend *be = sl_cpu_backend_create(2);
    sl_model *m;
    char err[SL_ERRMSG] = "";
    int rc = sl_model_load(&m, path, be, NULL, err);
    if (rc) fprintf(stderr, "load %s: %s\n", path, err);
    ASSERT_EQ(rc, 0);
    /* the warm-up (sl_model_warmup): a cache and workspace of its own, freed after */
    ASSERT_EQ(sl_model_warmup(m, 0), SL_EINVAL);
    ASSERT_EQ(sl_model_warmup(m, 16), 0); /* the decoded token in a second block */
    ASSERT(m->ws == NULL);
    ASSERT_EQ(sl_model_reserve(m, 64, NSEQ, MAXB, 64), 0);
    int V = m->hp.n_vocab;
    float *ref[NSEQ];
    for (int s = 0; s < NSEQ; s++) ref[s] = run_alone(m, s);
    /* ... and it changes nothing a forward reads: the same bits after another one */
    ASSERT_EQ(sl_model_warmup(m, 15), 0); /* one block, full */
    ASSERT_EQ(sl_model_reserve(m, 64, NSEQ, MAXB, 64), 0);
    float *again = run_alone(m, 2);
    ASSERT(memcmp(again, ref[2], (size_t)plen[2] * V * sizeof(float)) == 0);
    free(again);

    /* Mixed: blocks handed out interleaved (seq s gets blocks s+1, s+1+NSEQ, ...), and the
     * prompts fed in uneven chunks so that every step mixes prefill chunks of different
     * sizes (including single tokens, like decode). */
    sl_kv_cache kv;
    ASSERT_EQ(sl_kv_cache_init(&kv, m, NSEQ * MAXB + 1, BS), 0);
    int32_t bt[NSEQ][MAXB];
    for (int s = 0; s < NSEQ; s++)
        for (int b = 0; b < MAXB; b++) bt[s][b] = 1 + s + b * NSEQ;
    int done[NSEQ] = {0};
    static const int chunks[][NSEQ] = {{5, 7, 1}, {1, 0, 13}, {9, 0, 1}, {1, 0, 1}, {5, 0, 19}};
    float *out = malloc((size_t)64 * V * sizeof(float));
    for (size_t step = 0; step < sizeof chunks / sizeof chunks[0]; step++) {
        int32_t tok[64], pos[64], slot[64], lidx[64], qs[NSEQ], ql[NSEQ], cl[NSEQ], tabs[NSEQ * MAXB];
        int T = 0, S = 0, owner[64], opos[64];
        for (int s = 0; s < NSEQ; s++) {
            int n = chunks[step][s];
            if (done[s] + n > plen[s]) n = plen[s] - done[s];
            if (n <= 0) continue;
            qs[S] = T;
            ql[S] = n;
            cl[S] = done[s] + n;
            for (int b = 0; b < MAXB; b++) tabs[S * MAXB + b] = bt[s][b];
            for (int i = 0; i < n; i++) {
                int p = done[s] + i;
                tok[T] = tok_of(s, p, V);
                pos[T] = p;
                slot[T] = bt[s][p / BS] * BS + p % BS;
                lidx[T] = T;
                owner[T] = s;
                opos[T] = p;
                T++;
            }
            done[s] += n;
            S++;
        }
        if (!T) continue;
        sl_batch b = {.n_tokens = T, .tokens = tok, .pos = pos, .slot_mapping = slot, .n_seqs = S,
                      .max_blocks = MAXB, .q_start = qs, .q_len = ql, .ctx_len = cl, .block_tables = tabs,
                      .n_logits = T, .logit_idx = lidx};
        ASSERT_EQ(sl_forward(m, &kv, &b, out), 0);
        for (int t = 0; t < T; t++) {
            const float *a = out + (size_t)t * V, *r = ref[owner[t]] + (size_t)opos[t] * V;
            /* batch invariance: the same bits, not just close */
            for (int v = 0; v < V; v++) {
                uint32_t ab, rb;
                memcpy(&ab, &a[v], 4);
                memcpy(&rb, &r[v], 4);
                if (ab != rb)
                    fprintf(stderr, "step %zu token %d (seq %d pos %d) logit %d: %.9g (0x%08x), alone %.9g (0x%08x)\n",
                            step, t, owner[t], opos[t], v, a[v], ab, r[v], rb);
                ASSERT_EQ(ab, rb);
            }
        }
    }
    for (int s = 0; s < NSEQ; s++) ASSERT_EQ(done[s], plen[s]);
    /* an out-of-range token is refused, not read */
    int32_t bad = V, p0 = 0, sl0 = BS, q0 = 0, q1 = 1, li = 0, t0[MAXB];
    for (int i = 0; i < MAXB; i++) t0[i] = i + 1;
    sl_batch bb = {.n_tokens = 1, .tokens = &bad, .pos = &p0, .slot_mapping = &sl0, .n_seqs = 1, .max_blocks = MAXB,
                   .q_start = &q0, .q_len = &q1, .ctx_len = &q1, .block_tables = t0, .n_logits = 1, .logit_idx = &li};
    ASSERT_EQ(sl_forward(m, &kv, &bb, out), SL_ERANGE);
    free(out);
    for (int s = 0; s < NSEQ; s++) free(ref[s]);
    sl_kv_cache_deinit(&kv, m);
    sl_model_free(m);
    be->destroy(be);
}

int main(void) {
    struct { sl_arch arch; uint32_t type; int heads, kv_heads, dim, ff; bool tied, rope_freqs; } cases[] = {
        {SL_ARCH_LLAMA, SL_GGML_F32, 4, 2, 64, 96, false, true},
        {SL_ARCH_QWEN2, SL_GGML_F16, 4, 1, 64, 96, true, false},
        {SL_ARCH_QWEN3, SL_GGML_Q8_0, 4, 4, 64, 96, false, false},
        {SL_ARCH_LLAMA, SL_GGML_Q4_K, 8, 2, 256, 256, false, false},
        {SL_ARCH_LLAMA, SL_GGML_Q4_0, 4, 2, 128, 192, false, false},
        {SL_ARCH_LLAMA, SL_GGML_BF16, 4, 2, 64, 96, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_mkmodel_opts o;
        sl_mkmodel_defaults(&o);
        o.arch = cases[i].arch;
        o.type = cases[i].type;
        o.heads = cases[i].heads;
        o.kv_heads = cases[i].kv_heads;
        o.dim = cases[i].dim;
        o.ff = cases[i].ff;
        o.tied = cases[i].tied;
        o.rope_freqs = cases[i].rope_freqs;
        o.vocab = 300;
        o.seed = 10 + i;
        char path[64], err[SL_ERRMSG] = "";
        snprintf(path, sizeof path, "test_forward_%zu.gguf", i);
        int rc = sl_mkmodel(&o, path, err);
        if (rc) fprintf(stderr, "mkmodel: %s\n", err);
        ASSERT_EQ(rc, 0);
        check_model(path);
        remove(path);
        printf("test_forward: case %zu (%s %s GQA %d) ok\n", i, sl_arch_name(o.arch), sl_ggml_type_name(o.type),
               o.heads / o.kv_heads);
    }
    return 0;
}
