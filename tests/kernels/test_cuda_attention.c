/* test_cuda_attention.c — paged decode attention (kernels/cuda/attention.h) against the CPU
 * backend's attention (test_cuda_harness.h: emulated in CI, natively on a GPU).
 *
 * Every case builds a ragged batch (decode tokens, q_len 1, mixed with prefill chunks), gives
 * each sequence shuffled blocks of a cache whose unused slots hold NaN (so a row read from the
 * wrong block or past the context shows up in the output) and whose unused block-table entries
 * are −1 (read: the kernel traps), and compares with the CPU reference reading the same values
 * (the f16 cache converted to f32). Both launcher paths run: one block per (token, KV head)
 * and the context split over chunks (forced through the test hook, since the emulator reports
 * few SMs), plus the heuristic's own choice. Tolerance: f32 sums in another order, exp2 of a
 * pre-scaled q, and the GPU's exp2f (2 ulp): far below any indexing or masking error, which
 * moves outputs by ~1e-2. */
#include "kernels/cuda/attention.h"
#include "tests/kernels/test_cuda_harness.h"

static sl_backend *g_cpu;
static double g_max_err; /* largest |got − ref| / (1e-6 + |ref|) seen, for the log */

typedef struct seq_spec {
    int q_len, ctx_len;
} seq_spec;

/* forced: chunks forced by the hook (0: the heuristic), ws: workspace bytes (-1: the query's
 * size); gap: a batch token owned by no sequence (its output row must stay untouched) */
static void attn_case(int f16, int H, int Hkv, int D, int bs, const seq_spec *seqs, int n_seqs,
                      float qmag, int forced, long ws, int gap, int check_repeat) {
    /* the batch: sequence s owns tokens q_start[s] .. + q_len[s]; a gap token sits in front of
     * the last sequence */
    int32_t *q_start = sl_xmalloc((size_t)n_seqs * 4), *q_len = sl_xmalloc((size_t)n_seqs * 4);
    int32_t *ctx_len = sl_xmalloc((size_t)n_seqs * 4);
    int n_tok = 0, max_ctx = 0, max_blocks = 1, total_blocks = 1; /* block 0: the null block */
    for (int s = 0; s < n_seqs; s++) {
        if (gap && s == n_seqs - 1) n_tok++;
        q_start[s] = n_tok;
        q_len[s] = seqs[s].q_len;
        ctx_len[s] = seqs[s].ctx_len;
        n_tok += seqs[s].q_len;
        if (ctx_len[s] > max_ctx) max_ctx = ctx_len[s];
        int nb = (ctx_len[s] + bs - 1) / bs;
        total_blocks += nb;
        if (nb + 1 > max_blocks) max_blocks = nb + 1; /* a spare column, −1 */
    }
    total_blocks += 3; /* blocks nobody owns (NaN) */
    int32_t *perm = sl_xmalloc((size_t)total_blocks * 4);
    for (int i = 0; i < total_blocks - 1; i++) perm[i] = i + 1;
    for (int i = total_blocks - 2; i > 0; i--) {
        int j = rnd_int(i + 1), x = perm[i];
        perm[i] = perm[j], perm[j] = x;
    }
    int32_t *bt = sl_xmalloc((size_t)n_seqs * max_blocks * 4);
    const int64_t kvd = (int64_t)Hkv * D, n_cache = (int64_t)total_blocks * bs * kvd;
    float *kref = sl_xmalloc((size_t)n_cache * 4), *vref = sl_xmalloc((size_t)n_cache * 4);
    uint16_t *k16 = NULL, *v16 = NULL;
    memset(kref, 0xff, (size_t)n_cache * 4);
    memset(vref, 0xff, (size_t)n_cache * 4);
    if (f16) {
        k16 = sl_xmalloc((size_t)n_cache * 2 + 4);
        v16 = sl_xmalloc((size_t)n_cache * 2 + 4);
        memset(k16, 0xff, (size_t)n_cache * 2 + 4);
        memset(v16, 0xff, (size_t)n_cache * 2 + 4);
    }
    for (int s = 0, next = 0; s < n_seqs; s++) {
        int nb = (ctx_len[s] + bs - 1) / bs;
        for (int i = 0; i < max_blocks; i++) bt[s * max_blocks + i] = i < nb ? perm[next++] : -1;
        for (int p = 0; p < ctx_len[s]; p++) {
            int64_t row = ((int64_t)bt[s * max_blocks + p / bs] * bs + p % bs) * kvd;
            for (int64_t i = 0; i < kvd; i++) {
                float kx = rnd(), vx = rnd();
                if (f16) {
                    k16[row + i] = sl_f32_to_fp16(kx);
                    v16[row + i] = sl_f32_to_fp16(vx);
                    kx = sl_fp16_to_f32(k16[row + i]);
                    vx = sl_fp16_to_f32(v16[row + i]);
                }
                kref[row + i] = kx;
                vref[row + i] = vx;
            }
        }
    }
    const int64_t n_q = (int64_t)n_tok * H * D;
    float *q = rnd_vec(n_q, qmag), *ref = sl_xmalloc((size_t)n_q * 4);
    memset(ref, 0xff, (size_t)n_q * 4);
    const float scale = 1.0f / sqrtf((float)D);
    sl_attn_batch hb = {n_seqs, max_blocks, q_start, q_len, ctx_len, bt, 0, 0};
    g_cpu->attention(g_cpu, q, kref, vref, ref, &hb, H, Hkv, D, bs, scale);

    /* device */
    const int64_t cache_words = f16 ? (n_cache + 1) / 2 : n_cache;
    dbuf dq = dev_from(q, n_q, 0), dout = dev_alloc(n_q, 0);
    dbuf dk = dev_from(f16 ? (void *)k16 : (void *)kref, cache_words, 0);
    dbuf dv = dev_from(f16 ? (void *)v16 : (void *)vref, cache_words, 0);
    dbuf dqs = dev_from(q_start, n_seqs, 0), dql = dev_from(q_len, n_seqs, 0);
    dbuf dcl = dev_from(ctx_len, n_seqs, 0), dbt = dev_from(bt, (int64_t)n_seqs * max_blocks, 0);
    size_t ws_bytes = ws < 0 ? sl_cuda_attention_workspace_bytes(D) : (size_t)ws;
    dbuf dws = {0};
    if (ws_bytes) dws = dev_alloc((int64_t)(ws_bytes / 4), 0);
    sl_attn_batch db = {n_seqs, max_blocks, (const int32_t *)dqs.p, (const int32_t *)dql.p,
                        (const int32_t *)dcl.p, (const int32_t *)dbt.p, 0, 0};
    sl__cuda_attention_force_splits(forced);
    if (f16)
        sl_cuda_attention_f16(dq.p, (const uint16_t *)dk.p, (const uint16_t *)dv.p, dout.p, &db,
                              n_tok, max_ctx, H, Hkv, D, bs, scale, dws.p, ws_bytes, NULL);
    else
        sl_cuda_attention(dq.p, dk.p, dv.p, dout.p, &db, n_tok, max_ctx, H, Hkv, D, bs, scale,
                          dws.p, ws_bytes, NULL);

    char what[200];
    snprintf(what, sizeof what,
             "attention%s H=%d Hkv=%d D=%d bs=%d seqs=%d tok=%d max_ctx=%d q×%g splits=%d ws=%zu",
             f16 ? "_f16" : "", H, Hkv, D, bs, n_seqs, n_tok, max_ctx, (double)qmag, forced,
             ws_bytes);
    float *got = sl_xmalloc((size_t)n_q * 4);
    dev_get(&dout, got);
    for (int s = 0; s < n_seqs; s++) {
        const int64_t r0 = (int64_t)q_start[s] * H * D, n = (int64_t)q_len[s] * H * D;
        check_close(what, got + r0, ref + r0, n, 2e-6, 2e-5);
        for (int64_t i = r0; i < r0 + n; i++) {
            double e = fabs((double)got[i] - ref[i]) / (1e-6 + fabs((double)ref[i]));
            if (e > g_max_err) g_max_err = e;
        }
    }
    if (gap) /* the token nobody owns: untouched */
        check_bits(what, got + (int64_t)q_start[n_seqs - 1] * H * D - (int64_t)H * D,
                   ref + (int64_t)q_start[n_seqs - 1] * H * D - (int64_t)H * D, (int64_t)H * D,
                   4);
    dev_check_guards(&dout, what);
    if (ws_bytes) dev_check_guards(&dws, what);
    if (check_repeat) { /* the same launch again: the same bits (fixed reduction order) */
        float *again = sl_xmalloc((size_t)n_q * 4);
        sl_cuda_memset(dout.p, 0xff, (size_t)n_q * 4);
        if (f16)
            sl_cuda_attention_f16(dq.p, (const uint16_t *)dk.p, (const uint16_t *)dv.p, dout.p,
                                  &db, n_tok, max_ctx, H, Hkv, D, bs, scale, dws.p, ws_bytes,
                                  NULL);
        else
            sl_cuda_attention(dq.p, dk.p, dv.p, dout.p, &db, n_tok, max_ctx, H, Hkv, D, bs,
                              scale, dws.p, ws_bytes, NULL);
        dev_get(&dout, again);
        check_bits(what, again, got, n_q, 4);
        free(again);
    }
    sl__cuda_attention_force_splits(0);

    dev_free(&dq), dev_free(&dout), dev_free(&dk), dev_free(&dv), dev_free(&dqs);
    dev_free(&dql), dev_free(&dcl), dev_free(&dbt);
    if (ws_bytes) dev_free(&dws);
    free(q_start), free(q_len), free(ctx_len), free(perm), free(bt), free(kref), free(vref);
    free(k16), free(v16), free(q), free(ref), free(got);
}

/* every GQA ratio, head size, block size and cache type on a short ragged batch, through the
 * one-block path and the split path (chunks not a multiple of the block size) */
static int test_shapes(void) {
    static const seq_spec seqs[] = {{1, 1}, {1, 37}, {5, 70}, {1, 300}, {3, 3}};
    static const int ratios[] = {1, 2, 4, 8};
    int cases = 0;
    for (int f16 = 0; f16 < 2; f16++)
        for (int r = 0; r < 4; r++)
            for (int D = 64; D <= 128; D *= 2)
                for (int bs = 16; bs <= 32; bs *= 2) {
                    const int G = ratios[r], split = (cases % 2) ? 3 : 1;
                    attn_case(f16, 2 * G, 2, D, bs, seqs, 5, cases % 3 ? 1.0f : 6.0f, split,
                              1 << 20, cases % 4 == 1, 0);
                    cases++;
                }
    return cases;
}

/* contexts of thousands of positions, decode and a prefill chunk at the end, both paths */
static int test_long(void) {
    static const seq_spec a[] = {{1, 2900}, {4, 1503}, {1, 129}};
    static const seq_spec b[] = {{1, 3100}, {1, 2048}};
    attn_case(1, 4, 1, 128, 16, a, 3, 4.0f, 1, 0, 0, 0);
    attn_case(1, 4, 1, 128, 16, a, 3, 4.0f, 7, 1 << 22, 0, 1);
    attn_case(0, 8, 1, 64, 32, b, 2, 8.0f, 5, 1 << 22, 1, 0);
    attn_case(1, 2, 1, 128, 32, b, 2, 2.0f, 64, 1 << 22, 0, 0);
    return 4;
}

/* odd shapes: head groups not a power of two (3, 7), more than 8 heads per KV head (12, 16),
 * head_dim 256, block sizes 24 (a division) and 1, a workspace too small to split */
static int test_odd(void) {
    static const seq_spec s1[] = {{2, 40}, {1, 200}, {1, 17}};
    static const seq_spec s2[] = {{1, 260}};
    attn_case(1, 6, 2, 128, 16, s1, 3, 3.0f, 2, 1 << 20, 0, 0);  /* G = 3 */
    attn_case(0, 7, 1, 64, 24, s1, 3, 3.0f, 4, 1 << 20, 0, 0);   /* G = 7, block 24 */
    attn_case(1, 24, 2, 64, 16, s1, 3, 3.0f, 1, 0, 1, 0);        /* G = 12: groups of 8 + 4 */
    attn_case(0, 16, 1, 128, 32, s1, 3, 3.0f, 3, 1 << 20, 0, 0); /* G = 16 */
    attn_case(1, 4, 2, 256, 16, s1, 3, 5.0f, 2, 1 << 20, 0, 0);  /* head_dim 256 */
    attn_case(0, 2, 1, 256, 32, s1, 3, 5.0f, 1, 0, 0, 0);
    attn_case(1, 2, 2, 64, 1, s1, 3, 2.0f, 3, 1 << 20, 0, 0);    /* block_size 1 */
    attn_case(1, 4, 1, 128, 16, s2, 1, 2.0f, 8, 4000, 0, 0);     /* room for 3 chunks only */
    attn_case(1, 4, 1, 128, 16, s2, 1, 2.0f, 8, 0, 0, 0);        /* no workspace: no split */
    attn_case(1, 8, 1, 128, 16, s2, 1, 2.0f, 0, -1, 0, 1);       /* the heuristic's split */
    return 10;
}

/* a larger ragged batch: decode tokens and prefill chunks over random contexts, with the
 * heuristic's split and a forced one */
static int test_batch(void) {
    seq_spec seqs[24];
    for (int i = 0; i < 24; i++) {
        seqs[i].ctx_len = 1 + rnd_int(i % 5 == 0 ? 2500 : 400);
        seqs[i].q_len = i % 4 == 3 ? 1 + rnd_int(seqs[i].ctx_len < 6 ? seqs[i].ctx_len : 6) : 1;
    }
    attn_case(1, 16, 4, 128, 16, seqs, 24, 4.0f, 0, -1, 1, 0);
    attn_case(1, 16, 4, 128, 16, seqs, 24, 4.0f, 5, 1 << 24, 0, 1);
    attn_case(0, 8, 2, 64, 32, seqs, 24, 4.0f, 0, -1, 0, 0);
    return 3;
}

/* nothing to do: nothing touched */
static void test_empty(void) {
    dbuf dq = dev_alloc(256, 0), dk = dev_alloc(256, 0), dout = dev_alloc(256, 0);
    dbuf di = dev_alloc(4, 0);
    const int32_t *ip = (const int32_t *)di.p;
    sl_attn_batch none = {0, 1, ip, ip, ip, ip, 0, 0};
    sl_cuda_attention(dq.p, dk.p, dk.p, dout.p, &none, 4, 16, 2, 1, 64, 16, 0.125f, NULL, 0, NULL);
    sl_attn_batch one = {1, 1, ip, ip, ip, ip, 0, 0};
    sl_cuda_attention_f16(dq.p, (const uint16_t *)dk.p, (const uint16_t *)dk.p, dout.p, &one, 0,
                          16, 2, 1, 64, 16, 0.125f, NULL, 0, NULL);
    uint32_t h[256];
    dev_get(&dout, h);
    for (int i = 0; i < 256; i++) ASSERT_EQ(h[i], 0xffffffffu);
    dev_free(&dq), dev_free(&dk), dev_free(&dout), dev_free(&di);
}

int main(void) {
    int skip = harness_begin("test_cuda_attention", 20250308);
    if (skip) return skip;
    double t0 = sl_time_s();
    g_cpu = sl_cpu_backend_create(1);
    int n = test_shapes();
    printf("attention shapes: %d cases ok (%.1f s)\n", n, sl_time_s() - t0);
    n = test_long();
    printf("attention long contexts: %d cases ok (%.1f s)\n", n, sl_time_s() - t0);
    n = test_odd();
    printf("attention odd shapes: %d cases ok (%.1f s)\n", n, sl_time_s() - t0);
    n = test_batch();
    printf("attention ragged batches: %d cases ok (%.1f s)\n", n, sl_time_s() - t0);
    test_empty();
    g_cpu->destroy(g_cpu);
    printf("test_cuda_attention: ok (%ld checks, max rel err %.3g, %.1f s)\n", g_checks,
           g_max_err, sl_time_s() - t0);
    return 0;
}
