/* forward.c — the forward pass of llama / qwen2 / qwen3, written once over backend ops.
 * The three architectures differ only in optional pieces (biases, q/k norms, rope mode),
 * which are NULL or set by the loader. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

typedef struct sl_fwd_ws {
    int max_tokens, max_seqs, max_blocks, max_logits;
    /* backend activations */
    float *x, *h;       /* [T][E] */
    float *q, *att;     /* [T][H·Dk] */
    float *k, *v;       /* [T][Hkv·Dk] */
    float *g, *u;       /* [T][F] */
    float *xo;          /* [max_logits][E] */
    float *logits;      /* [max_logits][V] */
    /* the batch description, packed per step (pack_batch) into one host buffer and one upload
     * (a copy from pageable memory to a GPU costs a synchronization each: one, not eight) */
    int32_t *meta;      /* backend [meta_n] */
    int32_t *meta_host; /* host [meta_n] */
    size_t meta_n;      /* 3·max_tokens + max_logits + 3·max_seqs + max_seqs·max_blocks */
} sl_fwd_ws;

/* Where this step's arrays sit in the packed buffer (backend pointers into w->meta). */
typedef struct batch_dev {
    int32_t *tokens, *pos, *slots, *logit_idx, *q_start, *q_len, *ctx_len, *block_tables;
} batch_dev;

/* Packs b's arrays into w->meta_host, uploads them in one copy, and points d into w->meta. */
static void pack_batch(sl_backend *be, sl_fwd_ws *w, const sl_batch *b, batch_dev *d) {
    const size_t T = (size_t)b->n_tokens, S = (size_t)b->n_seqs, L = (size_t)b->n_logits;
    struct { int32_t **dst; const int32_t *src; size_t n; } part[] = {
        {&d->tokens, b->tokens, T},   {&d->pos, b->pos, T},         {&d->slots, b->slot_mapping, T},
        {&d->logit_idx, b->logit_idx, L}, {&d->q_start, b->q_start, S}, {&d->q_len, b->q_len, S},
        {&d->ctx_len, b->ctx_len, S}, {&d->block_tables, b->block_tables, S * (size_t)b->max_blocks},
    };
    size_t at = 0;
    for (size_t k = 0; k < sizeof part / sizeof part[0]; k++) {
        *part[k].dst = w->meta + at;
        if (part[k].n) memcpy(w->meta_host + at, part[k].src, part[k].n * sizeof(int32_t));
        at += part[k].n;
    }
    be->upload(be, w->meta, w->meta_host, at * sizeof(int32_t));
}

/* fake.c: the stand-in of sl_model_create_fake */
void sl__fake_free(sl_model *m);
int sl__fake_logits(const sl_model *m, const sl_batch *b, float *logits);

static void ws_free(sl_model *m) {
    sl_fwd_ws *w = m->ws;
    if (!w) return;
    void *bufs[] = {w->x, w->h, w->q, w->att, w->k, w->v, w->g, w->u, w->xo, w->logits, w->meta};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) m->be->free(m->be, bufs[i]);
    free(w->meta_host);
    free(w);
    m->ws = NULL;
}

void sl_model_free(sl_model *m) {
    if (!m) return;
    sl_backend *be = m->be;
    ws_free(m);
    if (m->layers) {
        for (int l = 0; l < m->hp.n_layer; l++) {
            sl_layer *ly = &m->layers[l];
            sl_bweight *ws[] = {ly->wq, ly->wk, ly->wv, ly->wo, ly->w_gate, ly->w_up, ly->w_down};
            for (size_t i = 0; i < 7; i++)
                if (ws[i]) be->weight_destroy(be, ws[i]);
            float *vs[] = {ly->attn_norm, ly->ffn_norm, ly->bq, ly->bk, ly->bv, ly->bo,
                           ly->b_gate, ly->b_up, ly->b_down, ly->q_norm, ly->k_norm};
            for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++)
                if (vs[i]) be->free(be, vs[i]);
        }
        free(m->layers);
    }
    if (m->output && m->output != m->tok_embd) be->weight_destroy(be, m->output);
    if (m->tok_embd) be->weight_destroy(be, m->tok_embd);
    if (m->output_norm) be->free(be, m->output_norm);
    if (m->rope_freqs) be->free(be, m->rope_freqs);
    sl__fake_free(m);
    sl_gguf_close(m->gguf);
    free(m);
}

int sl_model_reserve(sl_model *m, int max_tokens, int max_seqs, int max_blocks, int max_logits) {
    const sl_hparams *hp = &m->hp;
    if (max_tokens < 1 || max_seqs < 1 || max_blocks < 1 || max_logits < 1) return SL_EINVAL;
    ws_free(m);
    sl_fwd_ws *w = sl_xcalloc(1, sizeof *w);
    m->ws = w;
    w->max_tokens = max_tokens;
    w->max_seqs = max_seqs;
    w->max_blocks = max_blocks;
    w->max_logits = max_logits;
    if (m->fake) return 0; /* it computes nothing: the limits are all it needs */
    size_t T = (size_t)max_tokens, f = sizeof(float), i = sizeof(int32_t);
    w->meta_n = 3 * T + (size_t)max_logits + 3 * (size_t)max_seqs + (size_t)max_seqs * max_blocks;
    w->meta_host = sl_xmalloc(w->meta_n * i);
    size_t QD = (size_t)hp->n_head * hp->head_dim, KD = (size_t)hp->n_head_kv * hp->head_dim;
    struct { void **p; size_t n; } req[] = {
        {(void **)&w->x, T * hp->n_embd * f},     {(void **)&w->h, T * hp->n_embd * f},
        {(void **)&w->q, T * QD * f},             {(void **)&w->att, T * QD * f},
        {(void **)&w->k, T * KD * f},             {(void **)&w->v, T * KD * f},
        {(void **)&w->g, T * hp->n_ff * f},       {(void **)&w->u, T * hp->n_ff * f},
        {(void **)&w->xo, (size_t)max_logits * hp->n_embd * f},
        {(void **)&w->logits, (size_t)max_logits * hp->n_vocab * f},
        {(void **)&w->meta, w->meta_n * i},
    };
    for (size_t k = 0; k < sizeof req / sizeof req[0]; k++) {
        *req[k].p = m->be->alloc(m->be, req[k].n);
        if (!*req[k].p) {
            ws_free(m);
            return SL_ENOMEM;
        }
    }
    return 0;
}

size_t sl_kv_cache_block_bytes(const sl_model *m, int block_size) {
    if (m->fake) return 0;
    return 2 * (size_t)m->hp.n_layer * (size_t)m->hp.n_head_kv * (size_t)m->hp.head_dim * (size_t)block_size *
           (m->be->kv_f16 ? 2 : sizeof(float));
}

int sl_kv_cache_init(sl_kv_cache *kv, const sl_model *m, int n_blocks, int block_size) {
    memset(kv, 0, sizeof *kv);
    if (n_blocks < 2 || block_size < 1) return SL_EINVAL;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->n_layer = m->hp.n_layer;
    kv->kv_dim = m->hp.n_head_kv * m->hp.head_dim;
    kv->k = sl_xcalloc((size_t)kv->n_layer, sizeof(float *));
    kv->v = sl_xcalloc((size_t)kv->n_layer, sizeof(float *));
    /* (the fake model has no layers and no backend) */
    size_t bytes = (size_t)n_blocks * block_size * kv->kv_dim * (m->be && m->be->kv_f16 ? 2 : sizeof(float));
    for (int l = 0; l < kv->n_layer; l++) {
        kv->k[l] = m->be->alloc(m->be, bytes);
        kv->v[l] = m->be->alloc(m->be, bytes);
        if (!kv->k[l] || !kv->v[l]) {
            sl_kv_cache_deinit(kv, m);
            return SL_ENOMEM;
        }
    }
    return 0;
}

void sl_kv_cache_deinit(sl_kv_cache *kv, const sl_model *m) {
    for (int l = 0; kv->k && l < kv->n_layer; l++) {
        if (kv->k[l]) m->be->free(m->be, kv->k[l]);
        if (kv->v[l]) m->be->free(m->be, kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

/* the batch's shape against the reserve and the cache, and its token ids and slots (they come
 * from users: an out-of-range id would read past the embedding table) */
static int check_batch(const sl_model *m, const sl_kv_cache *kv, const sl_batch *b) {
    const sl_fwd_ws *w = m->ws;
    const int T = b->n_tokens;
    if (!w || T < 1 || T > w->max_tokens || b->n_seqs < 1 || b->n_seqs > w->max_seqs || b->max_blocks < 1 ||
        b->max_blocks > w->max_blocks || b->n_logits < 0 || b->n_logits > w->max_logits)
        return SL_EINVAL;
    if (kv->kv_dim != m->hp.n_head_kv * m->hp.head_dim || kv->n_layer != m->hp.n_layer) return SL_EINVAL;
    const int64_t n_slots = (int64_t)kv->n_blocks * kv->block_size;
    for (int t = 0; t < T; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= m->hp.n_vocab || b->slot_mapping[t] < kv->block_size ||
            b->slot_mapping[t] >= n_slots)
            return SL_ERANGE;
    return 0;
}

/* several weights on the same x (q/k/v, gate/up): in one pass where the backend can */
static void matmuls(sl_backend *be, const sl_bweight *const *ws, int n, const float *x,
                    float *const *ys, int T) {
    if (be->matmul_multi) {
        be->matmul_multi(be, ws, n, x, ys, T);
        return;
    }
    for (int i = 0; i < n; i++) be->matmul(be, ws[i], x, ys[i], T);
}

/* x[T][D] += r, then y = rmsnorm(x) · g: one op where the backend fuses them (same bits) */
static void add_norm(sl_backend *be, float *x, const float *r, const float *g, float *y, int T,
                     int D, float eps) {
    if (be->add_rmsnorm) {
        be->add_rmsnorm(be, x, r, g, y, T, D, eps);
        return;
    }
    be->add(be, x, r, (int64_t)T * D);
    be->rmsnorm(be, x, g, y, T, D, eps);
}

/* The forward pass up to the logits, left in the workspace's backend buffer (w->logits):
 * 0, or 1 when there is nothing more to do (no logit rows); errors as sl_forward. */
static int forward_to_logits(sl_model *m, sl_kv_cache *kv, const sl_batch *b) {
    sl_backend *be = m->be;
    const sl_hparams *hp = &m->hp;
    sl_fwd_ws *w = m->ws;
    const int T = b->n_tokens, E = hp->n_embd, F = hp->n_ff, H = hp->n_head, Hkv = hp->n_head_kv;
    const int Dk = hp->head_dim, QD = H * Dk, KD = Hkv * Dk;

    batch_dev d;
    pack_batch(be, w, b, &d);
    int max_ctx = 0;
    for (int s = 0; s < b->n_seqs; s++) max_ctx = b->ctx_len[s] > max_ctx ? b->ctx_len[s] : max_ctx;
    sl_attn_batch ab = {.n_seqs = b->n_seqs, .max_blocks = b->max_blocks, .q_start = d.q_start,
                        .q_len = d.q_len, .ctx_len = d.ctx_len, .block_tables = d.block_tables,
                        .n_tokens = T, .max_ctx = max_ctx};
    const float scale = 1.0f / sqrtf((float)Dk);

    be->embed(be, m->tok_embd, d.tokens, w->x, T);
    if (hp->n_layer > 0) be->rmsnorm(be, w->x, m->layers[0].attn_norm, w->h, T, E, hp->eps);
    for (int l = 0; l < hp->n_layer; l++) {
        const sl_layer *ly = &m->layers[l];
        /* w->h: x normalized by attn_norm (before the loop, or by the previous layer's last
         * add_norm) */
        const sl_bweight *qkv[3] = {ly->wq, ly->wk, ly->wv};
        float *qkv_out[3] = {w->q, w->k, w->v};
        matmuls(be, qkv, 3, w->h, qkv_out, T);
        if (ly->bq) be->add_bias(be, w->q, ly->bq, T, QD);
        if (ly->bk) be->add_bias(be, w->k, ly->bk, T, KD);
        if (ly->bv) be->add_bias(be, w->v, ly->bv, T, KD);
        if (ly->q_norm) be->rmsnorm(be, w->q, ly->q_norm, w->q, T * H, Dk, hp->eps);
        if (ly->k_norm) be->rmsnorm(be, w->k, ly->k_norm, w->k, T * Hkv, Dk, hp->eps);
        be->rope(be, w->q, d.pos, T, H, Dk, &hp->rope);
        be->rope(be, w->k, d.pos, T, Hkv, Dk, &hp->rope);
        be->kv_write(be, kv->k[l], kv->v[l], w->k, w->v, d.slots, T, KD);
        be->attention(be, w->q, kv->k[l], kv->v[l], w->att, &ab, H, Hkv, Dk, kv->block_size, scale);
        be->matmul(be, ly->wo, w->att, w->h, T);
        if (ly->bo) be->add_bias(be, w->h, ly->bo, T, E);
        add_norm(be, w->x, w->h, ly->ffn_norm, w->h, T, E, hp->eps);

        const sl_bweight *gu[2] = {ly->w_gate, ly->w_up};
        float *gu_out[2] = {w->g, w->u};
        matmuls(be, gu, 2, w->h, gu_out, T);
        if (ly->b_gate) be->add_bias(be, w->g, ly->b_gate, T, F);
        if (ly->b_up) be->add_bias(be, w->u, ly->b_up, T, F);
        be->swiglu(be, w->g, w->u, w->g, (int64_t)T * F);
        be->matmul(be, ly->w_down, w->g, w->h, T);
        if (ly->b_down) be->add_bias(be, w->h, ly->b_down, T, E);
        if (l + 1 < hp->n_layer)
            add_norm(be, w->x, w->h, m->layers[l + 1].attn_norm, w->h, T, E, hp->eps);
        else
            be->add(be, w->x, w->h, (int64_t)T * E);
    }
    if (b->n_logits == 0) {
        be->sync(be);
        return 1;
    }
    /* logits only at sampling positions */
    be->gather_rows(be, w->x, d.logit_idx, w->xo, b->n_logits, E);
    be->rmsnorm(be, w->xo, m->output_norm, w->xo, b->n_logits, E, hp->eps);
    be->matmul(be, m->output, w->xo, w->logits, b->n_logits);
    return 0;
}

int sl_forward(sl_model *m, sl_kv_cache *kv, const sl_batch *b, float *logits) {
    int rc = check_batch(m, kv, b);
    if (rc) return rc;
    if (m->fake) return sl__fake_logits(m, b, logits);
    rc = forward_to_logits(m, kv, b);
    if (rc) return rc < 0 ? rc : 0;
    sl_backend *be = m->be;
    be->download(be, logits, m->ws->logits, (size_t)b->n_logits * m->hp.n_vocab * sizeof(float));
    be->sync(be);
    return 0;
}

int sl_model_warmup(sl_model *m, int n_tokens) {
    enum { BS = 16 };
    if (n_tokens < 1 || n_tokens > INT_MAX - BS) return SL_EINVAL;
    const int n = n_tokens + 1, nb = (n + BS - 1) / BS; /* the prompt and the decoded token */
    sl_kv_cache kv;
    int rc = sl_model_reserve(m, n_tokens, 1, nb, 1);
    if (rc || (rc = sl_kv_cache_init(&kv, m, nb + 1, BS))) { /* block 0 is never used */
        ws_free(m);
        return rc;
    }
    const int V = m->hp.n_vocab;
    int32_t *tok = sl_xmalloc((size_t)n * sizeof *tok), *pos = sl_xmalloc((size_t)n * sizeof *pos);
    int32_t *slot = sl_xmalloc((size_t)n * sizeof *slot), *tab = sl_xmalloc((size_t)nb * sizeof *tab);
    float *logits = sl_xmalloc((size_t)V * sizeof *logits);
    for (int i = 0; i < n; i++) tok[i] = V > 1 ? 1 + i % (V - 1) : 0, pos[i] = i, slot[i] = BS + i;
    for (int b = 0; b < nb; b++) tab[b] = 1 + b;
    /* the prompt, then one token at position n_tokens, in blocks 1, 2, ... in order; the decode
     * step samples where the backend does (temperature, top_k, top_p and logprobs: the sampler's
     * list and sorting paths) */
    for (int step = 0; step < 2 && !rc; step++) {
        const int first = step ? n_tokens : 0, len = step ? 1 : n_tokens, ctx = first + len;
        const int32_t qs = 0, ql = len, cl = ctx, last = len - 1;
        sl_batch b = {.n_tokens = len, .tokens = tok + first, .pos = pos + first, .slot_mapping = slot + first,
                      .n_seqs = 1, .max_blocks = nb, .q_start = &qs, .q_len = &ql, .ctx_len = &cl,
                      .block_tables = tab, .n_logits = 1, .logit_idx = &last};
        if (step && sl_model_device_sampling(m)) {
            const sl_bsample_row row = {.u = 0.5, .temperature = 0.8f, .top_p = 0.95f, .top_k = 40,
                                        .repetition_penalty = 1.0f, .logprobs = 1, .top_logprobs = 2};
            sl_bsample_out out;
            rc = sl_forward_sample(m, &kv, &b, &row, &out);
        } else {
            rc = sl_forward(m, &kv, &b, logits);
        }
    }
    free(tok), free(pos), free(slot), free(tab), free(logits);
    sl_kv_cache_deinit(&kv, m);
    ws_free(m);
    return rc;
}

bool sl_model_device_sampling(const sl_model *m) { return !m->fake && m->be->sample; }

int sl_forward_sample(sl_model *m, sl_kv_cache *kv, const sl_batch *b, const sl_bsample_row *rows,
                      sl_bsample_out *out) {
    if (!sl_model_device_sampling(m)) return SL_EINVAL;
    int rc = check_batch(m, kv, b);
    if (rc) return rc;
    rc = forward_to_logits(m, kv, b);
    if (rc) return rc < 0 ? rc : 0;
    m->be->sample(m->be, m->ws->logits, b->n_logits, m->hp.n_vocab, rows, out);
    return 0;
}
