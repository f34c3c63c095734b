/* test_cuda_backend.c — the CUDA backend (kernels/cuda/cuda_backend.h) against the CPU backend:
 * first its own ops and weight paths one by one, then whole models (models/forward.c) over a
 * ragged batch — several sequences, prefill chunks beside decode steps, scattered KV blocks —
 * and greedy decoding (test_cuda_harness.h: emulated in CI, natively on a GPU).
 *
 * Tolerances. add, add_bias, gather_rows and embed are exact (bit for bit) against the CPU
 * backend. A matmul is checked against Σ w·x summed in double from the dequantized weights
 * (sl_qw_dequant_row), from which it differs by the rounding of its inputs: each product w·x
 * of the QW and F16 paths is within u = 2^-11 relative (x rounded to f16; the f16 fallback of
 * a QW weight rounds w too: 2u), BF16 within 2^-8, F32 not at all; f32 sums in any order add
 * at most K·2^-24 relative of Σ|w·x| (the bound takes twice that). So output i is checked
 * against
 *     |y − y_ref| <= (u_in + 2K·2^-24) · Σ_k |w_ik · x_k| + K·2^-25
 * (the last term: f16 subnormals round to 2^-25 absolute), a bound that holds on any GPU.
 * Through a model the errors of every matmul mix and grow with
 * depth; the logits are checked with an error normalized by the row's scale,
 *     max_v |l_v − l_ref,v| <= tol · max(1, max_v |l_ref,v|),
 * tol = 16·u for the f16-rounded paths (two layers of seven matmuls, each within about u of
 * its output's magnitude, mixed by the norms and the residual adds; the fp16 KV cache rounds K
 * and V within u as well), 16·2^-8 for BF16, 1e-4 for F32 (f32 sums in other orders only, on
 * an f32 cache). Each case prints the largest normalized error it
 * saw against its tol: 1/7 to 1/20 of it in the emulator. The activations' rounding, the bulk of
 * the error, is the same on a GPU (round to nearest even); only the f32 sums' order differs.
 */
#include <unistd.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/matmul.h"
#include "kernels/qw.h"
#include "models/gguf.h"
#include "models/quant.h"
#include "models/mkmodel.h"
#include "models/model.h"
#include "scheduler/engine.h"
#include "scheduler/sampling.h"
#include "tests/kernels/test_cuda_harness.h"

static sl_backend *g_cpu, *g_gpu;

#define U16 (1.0 / 2048)  /* f16 unit roundoff */
#define UBF (1.0 / 256)   /* bf16 unit roundoff */

/* ---- helpers --------------------------------------------------------------------------- */

/* A backend buffer on be holding n floats (or int32s) of host; the caller frees it on be. */
static void *to_be(sl_backend *be, const void *host, int64_t n) {
    void *p = be->alloc(be, (size_t)n * 4);
    ASSERT(p != NULL);
    be->upload(be, p, host, (size_t)n * 4);
    return p;
}
static void from_be(sl_backend *be, void *host, const void *p, int64_t n) {
    be->download(be, host, p, (size_t)n * 4);
    be->sync(be);
}

/* A random logical weight (host): codes uniform over the format's range, scales ±[0.1, 1)/8. */
static int g_scale_kind = -1; /* rnd_weight's scales: -1 in turn, else that kind (below) */

static void rnd_weight(sl_qw *w, sl_wfmt fmt, int64_t rows, int64_t cols, int group, int offs) {
    int q = fmt == SL_WF_QW8 || fmt == SL_WF_QW4;
    sl_qw_alloc(w, fmt, rows, cols, q ? group : 0, offs);
    int64_t n = rows * cols;
    if (fmt == SL_WF_F32)
        for (int64_t i = 0; i < n; i++) ((float *)w->data)[i] = rnd() * 0.2f;
    if (fmt == SL_WF_F16)
        for (int64_t i = 0; i < n; i++) ((uint16_t *)w->data)[i] = sl_f32_to_fp16(rnd() * 0.2f);
    if (fmt == SL_WF_BF16)
        for (int64_t i = 0; i < n; i++) ((uint16_t *)w->data)[i] = sl_f32_to_bf16(rnd() * 0.2f);
    if (!q) return;
    int64_t bytes = fmt == SL_WF_QW8 ? n : n / 2;
    for (int64_t i = 0; i < bytes; i++) ((uint8_t *)w->codes)[i] = (uint8_t)sl_rng_u64(&g_rng);
    /* in turn, scales and offsets of any f32 value, exactly f16 values (as GGUF's Q4_0/Q8_0
     * give) and two-level ones (an f16 factor per row and 256 columns times an int8, as the
     * K-quants give): the CUDA backend keeps each in its own width where the layout allows
     * (matmul.h), so every width goes through its readers */
    static int calls;
    const int kind = g_scale_kind >= 0 ? g_scale_kind : calls++ % 3;
    float fs = 0, fo = 0;
    for (int64_t i = 0; i < n / group; i++) {
        w->scales[i] = rnd() / (fmt == SL_WF_QW8 ? 1024 : 64);
        if (offs) w->offsets[i] = rnd() * 0.1f;
        if (kind == 1) {
            w->scales[i] = sl_fp16_to_f32(sl_f32_to_fp16(w->scales[i]));
            if (offs) w->offsets[i] = sl_fp16_to_f32(sl_f32_to_fp16(w->offsets[i]));
        } else if (kind == 2) {
            if ((i * group) % cols % 256 < group) { /* each row's 256 columns: new factors */
                const float u = (float)(1 + rnd_int(7)); /* 1.3·u: products not f16 */
                fs = sl_fp16_to_f32(sl_f32_to_fp16(1.3f * u / (fmt == SL_WF_QW8 ? 1048576 : 65536)));
                fo = sl_fp16_to_f32(sl_f32_to_fp16(0.1f * u / 1024));
            }
            /* QW4's multipliers 0..127 (qmm_kernel.cuh), the offsets' factor negative as Q4_K's */
            const int q4 = fmt == SL_WF_QW4;
            w->scales[i] = fs * (float)(q4 ? rnd_int(128) : rnd_int(256) - 128);
            if (offs) w->offsets[i] = (q4 ? -fo : fo) * (float)(q4 ? rnd_int(128) : rnd_int(256) - 128);
        }
    }
}

/* The GGUF K-quants get two-level scales on the CUDA backend (Q4_K 0.578 bytes per weight, not
 * 0.75 with f32 scales), Q4_0 and Q8_0 f16 ones; the round trip keeps every value. */
static void test_kquant_scales(void) {
    static const struct { uint32_t type; int bytes; } cases[] = {
        {SL_GGML_Q4_K, 1}, {SL_GGML_Q5_K, 1}, {SL_GGML_Q6_K, 1}, {SL_GGML_Q4_0, 2}, {SL_GGML_Q8_0, 2}};
    const int64_t rows = 20, cols = 512;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const int64_t blocks = rows * cols / (cases[c].type >= SL_GGML_Q4_K ? 256 : 32);
        void *raw = sl_xmalloc((size_t)blocks * 256); /* more than any block type needs */
        sl_quant_random(cases[c].type, &g_rng, raw, blocks, 0.5f);
        sl_qw w, back;
        ASSERT_EQ(sl_repack(cases[c].type, raw, rows, cols, -1, 32, 0, &w), SL_OK);
        sl_cuda_qmat q;
        ASSERT_EQ(sl_cuda_qmat_pack_host(&q, &w), 0);
        ASSERT_EQ(q.scale_bytes, cases[c].bytes);
        sl_qw_alloc(&back, w.fmt, rows, cols, w.group, w.offsets != NULL);
        sl_cuda_qmat_unpack_host(&q, &back);
        const int64_t ng = rows * cols / w.group;
        check_bits("K-quant scales", back.scales, w.scales, ng, 4);
        if (w.offsets) check_bits("K-quant offsets", back.offsets, w.offsets, ng, 4);
        sl_cuda_qmat_host_free(&q);
        sl_qw_free(&w), sl_qw_free(&back);
        free(raw);
    }
    printf("K-quant scales: %zu types ok\n", sizeof cases / sizeof *cases);
}

/* ---- add, add_bias, gather_rows, embed: exact ------------------------------------------- */

static void test_elementwise(void) {
    static const int sizes[][2] = {{1, 1}, {3, 7}, {5, 64}, {17, 300}, {64, 1000}};
    for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
        int T = sizes[c][0], N = sizes[c][1];
        int64_t n = (int64_t)T * N;
        float *x = rnd_vec(n, 1), *y = rnd_vec(n, 1), *b = rnd_vec(N, 1);
        float *ref = copy_vec(x, n), *got = sl_xmalloc((size_t)n * 4);
        float *dx = to_be(g_gpu, x, n), *dy = to_be(g_gpu, y, n), *db = to_be(g_gpu, b, N);
        g_cpu->add(g_cpu, ref, y, n);
        g_gpu->add(g_gpu, dx, dy, n);
        from_be(g_gpu, got, dx, n);
        check_bits("add", got, ref, n, 4);
        g_cpu->add_bias(g_cpu, ref, b, T, N);
        g_gpu->add_bias(g_gpu, dx, db, T, N);
        from_be(g_gpu, got, dx, n);
        check_bits("add_bias", got, ref, n, 4);

        /* rows picked with repeats, in any order */
        int m = T + 2;
        int32_t *idx = sl_xmalloc((size_t)m * 4);
        for (int i = 0; i < m; i++) idx[i] = rnd_int(T);
        float *gref = sl_xmalloc((size_t)m * N * 4), *ggot = sl_xmalloc((size_t)m * N * 4);
        int32_t *didx = to_be(g_gpu, idx, m);
        float *dg = g_gpu->alloc(g_gpu, (size_t)m * N * 4);
        g_cpu->gather_rows(g_cpu, ref, idx, gref, m, N);
        g_gpu->gather_rows(g_gpu, dx, didx, dg, m, N);
        from_be(g_gpu, ggot, dg, (int64_t)m * N);
        check_bits("gather_rows", ggot, gref, (int64_t)m * N, 4);

        g_gpu->free(g_gpu, dx), g_gpu->free(g_gpu, dy), g_gpu->free(g_gpu, db);
        g_gpu->free(g_gpu, didx), g_gpu->free(g_gpu, dg);
        free(x), free(y), free(b), free(ref), free(got), free(idx), free(gref), free(ggot);
    }
    printf("add, add_bias, gather_rows: ok\n");
}

/* The weight cases of the op tests: every path of weight_create. */
typedef struct wcase {
    sl_wfmt fmt;
    int group, offs;
    double u_in; /* relative rounding of each product (see the file comment) */
} wcase;
static const wcase g_wcases[] = {
    {SL_WF_F32, 0, 0, 0},      {SL_WF_F16, 0, 0, U16},    {SL_WF_BF16, 0, 0, UBF},
    {SL_WF_QW8, 32, 0, U16},   {SL_WF_QW8, 16, 1, U16},   {SL_WF_QW8, 128, 0, U16},
    {SL_WF_QW4, 32, 0, U16},   {SL_WF_QW4, 32, 1, U16},   {SL_WF_QW4, 64, 0, U16},
    {SL_WF_QW4, 16, 1, U16},   {SL_WF_QW8, 24, 1, 2 * U16}, {SL_WF_QW4, 8, 0, 2 * U16},
};

/* matmul_multi (q/k/v, gate/up): runs of weights of one QW format share a launch, the rest
 * take matmul; each output within the matmul bound against Σ w·x in double */
static void test_matmul_multi(void) {
    static const struct { sl_wfmt fmt; int group, offs; } trio[][3] = {
        {{SL_WF_QW4, 32, 0}, {SL_WF_QW4, 32, 0}, {SL_WF_QW4, 32, 0}}, /* one launch */
        {{SL_WF_QW4, 32, 1}, {SL_WF_QW4, 32, 1}, {SL_WF_QW8, 16, 0}}, /* Q4_K_M: q+k, then v */
        {{SL_WF_F16, 0, 0}, {SL_WF_QW8, 32, 0}, {SL_WF_QW8, 32, 0}},  /* f16, then k+v */
        {{SL_WF_QW4, 32, 0}, {SL_WF_QW8, 32, 0}, {SL_WF_QW4, 32, 0}}, /* nothing shared */
    };
    static const int rows[3] = {48, 20, 33}, cols = 256, Ts[] = {1, 9, 33};
    int cases = 0;
    for (size_t c = 0; c < sizeof trio / sizeof *trio; c++)
        for (int n = 2; n <= 3; n++)
            for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++, cases++) {
                const int T = Ts[ti];
                sl_qw w[3];
                sl_bweight *bw[3];
                float *dy[3];
                float *x = rnd_vec((int64_t)T * cols, 1), *dx = to_be(g_gpu, x, (int64_t)T * cols);
                for (int i = 0; i < n; i++) {
                    rnd_weight(&w[i], trio[c][i].fmt, rows[i], cols, trio[c][i].group, trio[c][i].offs);
                    ASSERT_EQ(g_gpu->weight_create(g_gpu, &w[i], 0, &bw[i]), 0);
                    dy[i] = g_gpu->alloc(g_gpu, (size_t)T * rows[i] * 4);
                }
                g_gpu->matmul_multi(g_gpu, (const sl_bweight *const *)bw, n, dx, dy, T);
                for (int i = 0; i < n; i++) {
                    float *got = sl_xmalloc((size_t)T * rows[i] * 4);
                    float *wf = sl_xmalloc((size_t)rows[i] * cols * 4);
                    from_be(g_gpu, got, dy[i], (int64_t)T * rows[i]);
                    for (int64_t r = 0; r < rows[i]; r++) sl_qw_dequant_row(&w[i], r, wf + r * cols);
                    for (int t = 0; t < T; t++)
                        for (int r = 0; r < rows[i]; r++) {
                            double ref = 0, mag = 0;
                            for (int k = 0; k < cols; k++) {
                                const double p = (double)wf[r * cols + k] * x[t * cols + k];
                                ref += p, mag += fabs(p);
                            }
                            const double tol = (U16 + 2.0 * cols / 16777216.0) * mag + cols * 3e-8;
                            g_checks++;
                            if (!(fabs((double)got[t * rows[i] + r] - ref) <= tol)) {
                                fprintf(stderr, "matmul_multi case %zu n=%d weight %d T=%d: token "
                                        "%d row %d: got %.9g, want %.9g\n", c, n, i, T, t, r,
                                        got[t * rows[i] + r], ref);
                                abort();
                            }
                        }
                    free(got), free(wf);
                    g_gpu->free(g_gpu, dy[i]);
                    g_gpu->weight_destroy(g_gpu, bw[i]);
                    sl_qw_free(&w[i]);
                }
                g_gpu->free(g_gpu, dx);
                free(x);
            }
    printf("matmul_multi: %d cases ok\n", cases);
}

static void test_embed_matmul(void) {
    /* rows not a multiple of 16 and columns not of the 64/32-column tiles: the padding; the
     * last with two-level scales (rnd_weight's kind 2) where the format takes them */
    static const int shapes[][3] = {{37, 96, -1}, {16, 256, -1}, {70, 160, -1}, {19, 512, 2}};
    /* 17: qmm's 32-token kernel; 35: two of qmm's launches of 32; 70: the f16 GEMM of prefill-sized steps (dequantized 16
     * rows at a time here, so that most weights take several blocks, the last one short) */
    static const int Ts[] = {1, 5, 17, 35, 70};
    sl_cuda_backend_set_gemm(g_gpu, 64, 16);
    int cases = 0;
    for (size_t c = 0; c < sizeof g_wcases / sizeof *g_wcases; c++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            const wcase *wc = &g_wcases[c];
            int64_t rows = shapes[s][0], cols = shapes[s][1];
            if (wc->group && cols % wc->group) continue;
            sl_qw w;
            g_scale_kind = shapes[s][2];
            rnd_weight(&w, wc->fmt, rows, cols, wc->group, wc->offs);
            g_scale_kind = -1;
            sl_bweight *bc, *bg;
            ASSERT_EQ(g_cpu->weight_create(g_cpu, &w, 0, &bc), 0);
            ASSERT_EQ(g_gpu->weight_create(g_gpu, &w, 0, &bg), 0);
            char what[96];
            snprintf(what, sizeof what, "%s/%d%s %lldx%lld", sl_wfmt_name(wc->fmt), wc->group,
                     wc->offs ? "+offsets" : "", (long long)rows, (long long)cols);

            /* embed: every row, once, in a shuffled order; exact except the f16 fallback */
            int32_t *tok = sl_xmalloc((size_t)rows * 4);
            for (int i = 0; i < rows; i++) tok[i] = (int32_t)((i * 7 + 3) % rows);
            float *eref = sl_xmalloc((size_t)(rows * cols) * 4);
            float *egot = sl_xmalloc((size_t)(rows * cols) * 4);
            int32_t *dtok = to_be(g_gpu, tok, rows);
            float *dy = g_gpu->alloc(g_gpu, (size_t)(rows * cols) * 4);
            g_cpu->embed(g_cpu, bc, tok, eref, (int)rows);
            g_gpu->embed(g_gpu, bg, dtok, dy, (int)rows);
            from_be(g_gpu, egot, dy, rows * cols);
            if (wc->u_in == 2 * U16) /* f16 rounding, 2^-25 absolute in the subnormals */
                check_close(what, egot, eref, rows * cols, 3e-8, U16);
            else check_bits(what, egot, eref, rows * cols, 4);
            g_gpu->free(g_gpu, dy);
            g_gpu->free(g_gpu, dtok);
            free(tok), free(eref), free(egot);

            /* matmul against Σ w·x in double from the dequantized weights (sl_qw_dequant_row,
             * the reference of every backend), within the bound of the file comment */
            float *wf = sl_xmalloc((size_t)(rows * cols) * 4);
            for (int64_t r = 0; r < rows; r++) sl_qw_dequant_row(&w, r, wf + r * cols);
            for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++, cases++) {
                int T = Ts[ti];
                float *x = rnd_vec((int64_t)T * cols, 1);
                float *ygot = sl_xmalloc((size_t)(T * rows) * 4);
                float *dx = to_be(g_gpu, x, (int64_t)T * cols);
                float *dyy = g_gpu->alloc(g_gpu, (size_t)(T * rows) * 4);
                g_gpu->matmul(g_gpu, bg, dx, dyy, T);
                from_be(g_gpu, ygot, dyy, (int64_t)T * rows);
                for (int t = 0; t < T; t++)
                    for (int64_t r = 0; r < rows; r++) {
                        double ref = 0, mag = 0;
                        for (int64_t k = 0; k < cols; k++) {
                            double p = (double)wf[r * cols + k] * x[(int64_t)t * cols + k];
                            ref += p, mag += fabs(p);
                        }
                        /* + the f16 subnormal floor, 2^-25 per product (|w|, |x| < 1 here);
                         * the GEMM path rounds a QW weight to f16 too */
                        const double u_in = wc->group && T >= 64 ? 2 * U16 : wc->u_in;
                        double tol = (u_in + 2.0 * cols / 16777216.0) * mag + cols * 3e-8;
                        float got = ygot[t * rows + r];
                        g_checks++;
                        if (!(fabs((double)got - ref) <= tol)) {
                            fprintf(stderr, "matmul %s T=%d: token %d row %lld: got %.9g, want "
                                    "%.9g (diff %.3g, bound %.3g)\n", what, T, t, (long long)r,
                                    got, ref, fabs((double)got - ref), tol);
                            abort();
                        }
                    }
                g_gpu->free(g_gpu, dx), g_gpu->free(g_gpu, dyy);
                free(x), free(ygot);
            }
            free(wf);
            g_cpu->weight_destroy(g_cpu, bc);
            g_gpu->weight_destroy(g_gpu, bg);
            sl_qw_free(&w);
        }
    sl_cuda_backend_set_gemm(g_gpu, 256, 0); /* the default */
    printf("embed, matmul: %d cases ok (every weight path)\n", cases);
}

/* ---- whole models ------------------------------------------------------------------------ */

/* MAXT is the largest step (26 tokens): the reserve is exactly full in that step, where the
 * attention's row bound (the rows of q's buffer, cuda_backend.h) is then exact */
enum { BS = 16, NSEQ = 3, MAXB = 16, MAXT = 26 };

typedef struct side {
    sl_backend *be;
    sl_model *m;
    sl_kv_cache kv;
} side;

static void side_open(side *s, sl_backend *be, const char *path, const sl_model_opts *opts) {
    char err[SL_ERRMSG] = "";
    s->be = be;
    int rc = sl_model_load(&s->m, path, be, opts, err);
    if (rc) fprintf(stderr, "load %s on %s: %s\n", path, be->name, err);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(sl_model_reserve(s->m, MAXT, NSEQ, MAXB, MAXT), 0);
    ASSERT_EQ(sl_kv_cache_init(&s->kv, s->m, NSEQ * MAXB + 1, BS), 0);
}
static void side_close(side *s) {
    sl_kv_cache_deinit(&s->kv, s->m);
    sl_model_free(s->m);
}

/* A step: n[s] new tokens of sequence s (0: it sits out), tokens from hist[s], whose first
 * done[s] already ran. Blocks are interleaved between sequences (seq s: 1 + s + b·NSEQ).
 * Returns the step's token count; logits of every token of the step go to out. */
static int run_step(side *sd, const int *n, int32_t hist[NSEQ][MAXB * BS], int *done,
                    float *out) {
    int32_t tok[MAXT], pos[MAXT], slot[MAXT], lidx[MAXT], qs[NSEQ], ql[NSEQ], cl[NSEQ];
    int32_t tabs[NSEQ * MAXB];
    int T = 0, S = 0;
    for (int s = 0; s < NSEQ; s++) {
        if (!n[s]) continue;
        qs[S] = T, ql[S] = n[s], cl[S] = done[s] + n[s];
        for (int b = 0; b < MAXB; b++) tabs[S * MAXB + b] = 1 + s + b * NSEQ;
        for (int i = 0; i < n[s]; i++, T++) {
            int p = done[s] + i;
            ASSERT(T < MAXT && p < MAXB * BS);
            tok[T] = hist[s][p], pos[T] = p, lidx[T] = T;
            slot[T] = (1 + s + (p / BS) * NSEQ) * BS + p % BS;
        }
        S++;
    }
    sl_batch b = {.n_tokens = T, .tokens = tok, .pos = pos, .slot_mapping = slot, .n_seqs = S,
                  .max_blocks = MAXB, .q_start = qs, .q_len = ql, .ctx_len = cl,
                  .block_tables = tabs, .n_logits = T, .logit_idx = lidx};
    ASSERT_EQ(sl_forward(sd->m, &sd->kv, &b, out), 0);
    return T;
}

/* max_v |a − r| / max(1, max_v |r|) over one row of V logits */
static double row_err(const float *a, const float *r, int V) {
    double scale = 1, d = 0;
    for (int v = 0; v < V; v++) scale = fmax(scale, fabs(r[v]));
    for (int v = 0; v < V; v++) {
        if (!isfinite(a[v])) return INFINITY;
        d = fmax(d, fabs((double)a[v] - r[v]));
    }
    return d / scale;
}

static int argmax(const float *l, int V) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (l[v] > l[best]) best = v;
    return best;
}

typedef struct mcase {
    const char *name;
    sl_arch arch;
    uint32_t type;
    int quant_to, group; /* sl_model_opts: -1 keeps the file's type */
    int dim, heads, kv_heads, head_dim, ff;
    bool tied, rope_freqs;
    double tol;
    int greedy; /* greedy steps compared (0: none) */
} mcase;

/* Prefill chunks (ragged; over 16 tokens: qmm's 4 column tiles of 8) beside decode steps:
 * steps of 19, 26, 15, 2 and 3 tokens. */
static const int g_chunks[][NSEQ] = {{13, 6, 0}, {8, 1, 17}, {1, 1, 13}, {1, 0, 1}, {1, 1, 1}};

static void check_model(const mcase *mc, int idx) {
    double t0 = sl_time_s();
    sl_mkmodel_opts o;
    sl_mkmodel_defaults(&o);
    o.arch = mc->arch, o.type = mc->type, o.dim = mc->dim, o.heads = mc->heads;
    o.kv_heads = mc->kv_heads, o.head_dim = mc->head_dim, o.ff = mc->ff, o.tied = mc->tied;
    o.rope_freqs = mc->rope_freqs, o.vocab = 320, o.seed = 100 + (uint64_t)idx;
    char path[64], err[SL_ERRMSG] = "";
    snprintf(path, sizeof path, "test_cuda_backend_%d.gguf", idx);
    int rc = sl_mkmodel(&o, path, err);
    if (rc) fprintf(stderr, "mkmodel: %s\n", err);
    ASSERT_EQ(rc, 0);
    sl_model_opts mo = {.quant_to = mc->quant_to, .group = mc->group};
    side c, g;
    side_open(&c, g_cpu, path, &mo);
    /* the f32 twin checks f32 sums only (tol 1e-4): its cache stays f32; every other case runs
     * on the backend's default fp16 cache, whose rounding the f16 tolerance covers */
    const bool kv32 = mc->type == SL_GGML_F32 && mc->quant_to < 0;
    g_gpu->kv_f16 = !kv32;
    /* odd cases: steps of 17 tokens and more (19 and 26 here) through the f16 GEMM of QW weights */
    const bool gemm = idx % 2 == 1;
    sl_cuda_backend_set_gemm(g_gpu, gemm ? 17 : 256, 0);
    side_open(&g, g_gpu, path, &mo);
    remove(path);
    const int V = c.m->hp.n_vocab;
    float *lc = sl_xmalloc((size_t)MAXT * V * 4), *lg = sl_xmalloc((size_t)MAXT * V * 4);

    /* ragged batches: logits of every token of every step */
    int32_t hist[NSEQ][MAXB * BS];
    int done[NSEQ] = {0};
    for (int s = 0; s < NSEQ; s++)
        for (int i = 0; i < MAXB * BS; i++)
            hist[s][i] = (int32_t)(3 + (s * 131 + i * 17 + i * i) % (V - 3));
    double worst = 0;
    int rows = 0;
    for (size_t st = 0; st < sizeof g_chunks / sizeof *g_chunks; st++) {
        int T = run_step(&c, g_chunks[st], hist, done, lc);
        ASSERT_EQ(run_step(&g, g_chunks[st], hist, done, lg), T);
        for (int s = 0; s < NSEQ; s++) done[s] += g_chunks[st][s];
        for (int t = 0; t < T; t++, rows++) {
            double e = row_err(lg + (size_t)t * V, lc + (size_t)t * V, V);
            worst = fmax(worst, e);
            if (!(e <= mc->tol)) {
                fprintf(stderr, "%s: step %zu token %d: logits differ by %.3g of the row's "
                        "scale (tol %.3g)\n", mc->name, st, t, e, mc->tol);
                abort();
            }
        }
    }

    /* greedy: sequence 0 goes on, each side feeding back its own choice; the choices must
     * agree unless the reference's best two are within the tolerance (then either is right,
     * and the sequences part: the comparison ends there) */
    int agreed = 0;
    for (int k = 0; k < mc->greedy; k++) {
        int n[NSEQ] = {1, 0, 0};
        run_step(&c, n, hist, done, lc);
        run_step(&g, n, hist, done, lg);
        int a = argmax(lc, V), b = argmax(lg, V);
        if (a != b) {
            double scale = 1;
            for (int v = 0; v < V; v++) scale = fmax(scale, fabs(lc[v]));
            double gap = (lc[a] - lc[b]) / scale;
            if (!(gap <= 2 * mc->tol)) {
                fprintf(stderr, "%s: greedy step %d: token %d on the GPU, %d on the CPU (gap %.3g "
                        "of the scale, tol %.3g)\n", mc->name, k, b, a, gap, mc->tol);
                abort();
            }
            printf("  %s: greedy near-tie at step %d (gap %.3g): stopped\n", mc->name, k, gap);
            break;
        }
        hist[0][++done[0]] = a; /* the next step feeds it */
        agreed++;
    }
    printf("%s, %s KV%s: %d logit rows, worst error %.3g of tol %.3g; greedy %d/%d tokens agree (%.1f s)\n",
           mc->name, kv32 ? "f32" : "f16", gemm ? ", GEMM from 17 tokens" : "", rows, worst, mc->tol, agreed, mc->greedy, sl_time_s() - t0);
    if (mc->greedy && mc->type == SL_GGML_F32) ASSERT_EQ(agreed, mc->greedy);
    free(lc), free(lg);
    side_close(&c);
    side_close(&g);
    g_gpu->kv_f16 = 1;
    sl_cuda_backend_set_gemm(g_gpu, 256, 0); /* the default */
}

static void test_models(void) {
    static const mcase cases[] = {
        /* name, arch, type, quant_to, group, dim, heads, kv, head_dim, ff, tied, freqs, tol, greedy */
        {"llama F32 (Sgemm)", SL_ARCH_LLAMA, SL_GGML_F32, -1, 0, 128, 4, 2, 64, 192, false, true, 1e-4, 16},
        {"qwen2 F16 tied (cuBLAS f16, biases)", SL_ARCH_QWEN2, SL_GGML_F16, -1, 0, 128, 2, 1, 64, 160, true, false, 16 * U16, 0},
        {"llama BF16 (cuBLAS bf16)", SL_ARCH_LLAMA, SL_GGML_BF16, -1, 0, 128, 2, 2, 64, 128, false, false, 16 * UBF, 0},
        {"qwen3 Q8_0 tied (QW8/32, q/k norms)", SL_ARCH_QWEN3, SL_GGML_Q8_0, -1, 0, 128, 4, 2, 64, 192, true, false, 16 * U16, 16},
        {"llama Q4_0 (QW4/32)", SL_ARCH_LLAMA, SL_GGML_Q4_0, -1, 0, 128, 2, 1, 64, 128, true, false, 16 * U16, 0},
        {"llama Q4_K (QW4/32 + offsets)", SL_ARCH_LLAMA, SL_GGML_Q4_K, -1, 0, 256, 4, 4, 64, 256, false, false, 16 * U16, 0},
        {"qwen2 F32 → QW4/128 at load", SL_ARCH_QWEN2, SL_GGML_F32, SL_WF_QW4, 128, 128, 1, 1, 128, 256, false, false, 16 * U16, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_model(&cases[i], (int)i);
}

/* The f16 copy beside a producer's output serves only the op right after it: a matmul of the
 * producer's output takes it (no conversion), one after any other op, of another size, or
 * of another array converts its x; each result bit for bit the backend's without copies. */
static void test_f16_beside(void) {
    const int T = 5, D = 256, N = 96;
    sl_qw q;
    rnd_weight(&q, SL_WF_QW4, N, D, 32, 1);
    sl_bweight *w = NULL;
    ASSERT_EQ(g_gpu->weight_create(g_gpu, &q, 0, &w), 0);
    float *x = rnd_vec((int64_t)T * D, 1), *g = rnd_vec(D, 1);
    float *dx = to_be(g_gpu, x, (int64_t)T * D), *dg = to_be(g_gpu, g, D);
    float *dh = g_gpu->alloc(g_gpu, (size_t)T * D * 4), *dy = g_gpu->alloc(g_gpu, (size_t)T * N * 4);
    float *got = sl_xmalloc((size_t)T * N * 4), *want = sl_xmalloc((size_t)T * N * 4);
    static const char *names[] = {"matmul right after rmsnorm", "after rmsnorm, then add",
                                  "of fewer rows", "of another array", "after swiglu"};
    for (int c = 0; c < 5; c++) {
        for (int beside = 1; beside >= 0; beside--) {
            sl__cuda_backend_set_f16_beside(g_gpu, beside);
            const unsigned long long hits = sl__cuda_f16_beside_hits();
            if (c == 4) g_gpu->swiglu(g_gpu, dx, dg, dh, D); /* one row of D */
            else g_gpu->rmsnorm(g_gpu, dx, dg, dh, T, D, 1e-5f);
            if (c == 1) g_gpu->add(g_gpu, dh, dx, (int64_t)T * D);
            g_gpu->matmul(g_gpu, w, c == 3 ? dx : dh, dy, c == 2 ? T - 1 : c == 4 ? 1 : T);
            from_be(g_gpu, beside ? got : want, dy, (int64_t)(c == 2 ? T - 1 : c == 4 ? 1 : T) * N);
            const unsigned long long served = sl__cuda_f16_beside_hits() - hits;
            if (served != (unsigned long long)(beside && (c == 0 || c == 4))) {
                fprintf(stderr, "f16 beside, %s: %llu conversions served by a copy\n", names[c],
                        served);
                abort();
            }
        }
        check_bits(names[c], got, want, (int64_t)(c == 2 ? T - 1 : c == 4 ? 1 : T) * N, 4);
    }
    sl__cuda_backend_set_f16_beside(g_gpu, 1);
    g_gpu->free(g_gpu, dx), g_gpu->free(g_gpu, dg), g_gpu->free(g_gpu, dh), g_gpu->free(g_gpu, dy);
    g_gpu->weight_destroy(g_gpu, w);
    sl_qw_free(&q);
    free(x), free(g), free(got), free(want);
    printf("f16 copies beside: served right after their producer only (5 cases)\n");
}

/* The launches the CUDA backend saves, each against the path without it: the fused residual
 * add + RMSNorm (add_rmsnorm; unset: forward.c's add then rmsnorm) and the f16 copies that
 * rmsnorm, add_rmsnorm and swiglu write beside their outputs for the matmul next
 * (sl__cuda_backend_set_f16_beside; off: each matmul converts its x). The same logits bit for
 * bit over ragged prefill and decode steps of a QW4-with-offsets llama (its steps of 19 and 26
 * tokens through the f16 GEMM) and an F16 qwen2 with biases; the copies must serve
 * conversions. */
static void test_fused_norm(void) {
    struct { sl_arch arch; uint32_t type; } ms[] = {{SL_ARCH_LLAMA, SL_GGML_Q4_K},
                                                    {SL_ARCH_QWEN2, SL_GGML_F16}};
    ASSERT(g_gpu->add_rmsnorm != NULL);
    int rows = 0;
    for (size_t k = 0; k < sizeof ms / sizeof *ms; k++) {
        sl_mkmodel_opts o;
        sl_mkmodel_defaults(&o);
        o.arch = ms[k].arch, o.type = ms[k].type, o.dim = 256, o.heads = 4, o.kv_heads = 2;
        o.head_dim = 64, o.ff = 256, o.vocab = 320, o.seed = 500 + (uint64_t)k;
        const char *path = "test_cuda_backend_fused.gguf";
        char err[SL_ERRMSG] = "";
        const int rc = sl_mkmodel(&o, path, err);
        if (rc) fprintf(stderr, "mkmodel: %s\n", err);
        ASSERT_EQ(rc, 0);
        sl_model_opts mo = {.quant_to = -1};
        side a, b;
        side_open(&a, g_gpu, path, &mo);
        side_open(&b, g_gpu, path, &mo);
        remove(path);
        const int V = a.m->hp.n_vocab;
        float *la = sl_xmalloc((size_t)MAXT * V * 4), *lb = sl_xmalloc((size_t)MAXT * V * 4);
        int32_t hist[NSEQ][MAXB * BS];
        int done_a[NSEQ] = {0}, done_b[NSEQ] = {0};
        for (int s = 0; s < NSEQ; s++)
            for (int i = 0; i < MAXB * BS; i++) hist[s][i] = (int32_t)(3 + (s * 29 + i * 7) % (V - 3));
        void (*fused)(sl_backend *, float *, const float *, const float *, float *, int, int,
                      float) = g_gpu->add_rmsnorm;
        sl_cuda_backend_set_gemm(g_gpu, 17, 0);
        for (size_t st = 0; st < sizeof g_chunks / sizeof *g_chunks; st++) {
            const unsigned long long hits = sl__cuda_f16_beside_hits();
            const int T = run_step(&a, g_chunks[st], hist, done_a, la);
            /* q/k/v, gate/up, down (at least one each: a launch of several weights converts
             * once) and the output */
            ASSERT(sl__cuda_f16_beside_hits() - hits >= 3u * (unsigned)a.m->hp.n_layer + 1u);
            g_gpu->add_rmsnorm = NULL;
            sl__cuda_backend_set_f16_beside(g_gpu, 0);
            ASSERT_EQ(run_step(&b, g_chunks[st], hist, done_b, lb), T);
            g_gpu->add_rmsnorm = fused;
            sl__cuda_backend_set_f16_beside(g_gpu, 1);
            for (int s = 0; s < NSEQ; s++) done_a[s] += g_chunks[st][s], done_b[s] += g_chunks[st][s];
            check_bits("fused add_rmsnorm: logits", la, lb, (int64_t)T * V, 4);
            rows += T;
        }
        sl_cuda_backend_set_gemm(g_gpu, 256, 0); /* the default */
        free(la), free(lb);
        side_close(&a);
        side_close(&b);
    }
    printf("fused add + rmsnorm, f16 copies beside: %d logit rows identical to add, then "
           "rmsnorm, each matmul converting its x\n", rows);
}

/* ---- sampling on the backend (sl_forward_sample) ------------------------------------------ */

/* Decode steps of NSEQ sequences, each sampled twice from the same GPU logits: by the host
 * sampler on the downloaded row (sl_forward) and on the device (sl_forward_sample, the same
 * step again: the same logits), from twin samplers with one seed. Tokens must be equal and
 * logprobs agree; both samplers take the token, so histories and RNGs stay in step. */
/* A small random Q8_0 llama (QW8 on the device: qmm, batch-invariant) of a vocabulary of vocab
 * tokens written to path. */
static void small_model(const char *path, uint64_t seed, int vocab) {
    sl_mkmodel_opts o;
    sl_mkmodel_defaults(&o);
    o.arch = SL_ARCH_LLAMA, o.type = SL_GGML_Q8_0, o.dim = 128, o.heads = 2, o.kv_heads = 1;
    o.head_dim = 64, o.ff = 192, o.vocab = vocab, o.seed = seed;
    char err[SL_ERRMSG] = "";
    int rc = sl_mkmodel(&o, path, err);
    if (rc) fprintf(stderr, "mkmodel: %s\n", err);
    ASSERT_EQ(rc, 0);
}

/* small_model's file opened on the GPU backend (the file then removed) */
static void open_small(side *g, const char *path, uint64_t seed, int vocab) {
    small_model(path, seed, vocab);
    sl_model_opts mo = {.quant_to = -1};
    side_open(g, g_gpu, path, &mo);
    remove(path);
}

static void test_device_sampling(void) {
    double t0 = sl_time_s();
    side g;
    open_small(&g, "test_cuda_backend_sample.gguf", 77, 320);
    ASSERT(sl_model_device_sampling(g.m));
    const int V = g.m->hp.n_vocab;
    float *logits = sl_xmalloc((size_t)NSEQ * V * 4);
    sl_sample_ws ws;
    sl_sample_ws_init(&ws, V);

    /* temperature, top_k, top_p, min_p, repetition, frequency, presence, logprobs, top */
    static const sl_logit_bias bias[] = {{5, 3.0f}, {7, -100.0f}, {9, 1.5f}, {300, 8.0f}};
    struct { float temp, top_p, min_p; int top_k; float rep, freq, pres; int nb, lp, top; } set[] = {
        {0.0f, 1.0f, 0.0f, 0, 1.0f, 0.0f, 0.0f, 0, 1, 5},    /* greedy, logprobs */
        {0.8f, 1.0f, 0.0f, 20, 1.0f, 0.0f, 0.0f, 0, 0, 0},   /* top_k */
        {1.2f, 0.9f, 0.05f, 0, 1.0f, 0.0f, 0.0f, 0, 1, 3},   /* top_p + min_p */
        {1.0f, 1.0f, 0.0f, 0, 1.3f, 0.5f, 0.3f, 4, 1, 20},   /* penalties + bias */
        {0.7f, 0.95f, 0.0f, 40, 1.1f, 0.0f, 0.8f, 0, 0, 0},  /* penalties, truncation */
        {0.0f, 1.0f, 0.0f, 0, 1.5f, 0.0f, 0.0f, 3, 1, 1},    /* greedy over penalties + bias */
    };
    const int n_set = (int)(sizeof set / sizeof *set);
    int draws = 0;
    for (int round = 0; round < n_set / NSEQ; round++) {
        sl_sampling_params sp[NSEQ];
        sl_sampler host[NSEQ], dev[NSEQ];
        int32_t hist[NSEQ][MAXB * BS];
        int done[NSEQ] = {0}, len[NSEQ];
        for (int s = 0; s < NSEQ; s++) {
            const int k = round * NSEQ + s;
            sl_sampling_params_defaults(&sp[s]);
            sp[s].temperature = set[k].temp, sp[s].top_p = set[k].top_p, sp[s].min_p = set[k].min_p;
            sp[s].top_k = set[k].top_k, sp[s].repetition_penalty = set[k].rep;
            sp[s].frequency_penalty = set[k].freq, sp[s].presence_penalty = set[k].pres;
            sp[s].logit_bias = bias, sp[s].n_logit_bias = set[k].nb;
            sp[s].logprobs = set[k].lp, sp[s].top_logprobs = set[k].top;
            sp[s].max_tokens = 40;
            len[s] = 5 + 3 * s;
            for (int i = 0; i < len[s]; i++) hist[s][i] = (int32_t)(3 + (s * 37 + i * 11) % (V - 3));
            sl_sampler_init(&host[s], &sp[s], 900 + (uint64_t)k, hist[s], len[s], V);
            sl_sampler_init(&dev[s], &sp[s], 900 + (uint64_t)k, hist[s], len[s], V);
        }
        for (int step = 0; step < 24; step++) {
            /* the step: each sequence's tokens not yet run, one logit row at its last */
            int32_t tok[MAXT], pos[MAXT], slot[MAXT], lidx[NSEQ], qs[NSEQ], ql[NSEQ], cl[NSEQ];
            int32_t tabs[NSEQ * MAXB];
            int T = 0;
            for (int s = 0; s < NSEQ; s++) {
                qs[s] = T, ql[s] = len[s] - done[s], cl[s] = len[s];
                for (int b = 0; b < MAXB; b++) tabs[s * MAXB + b] = 1 + s + b * NSEQ;
                for (int p = done[s]; p < len[s]; p++, T++)
                    tok[T] = hist[s][p], pos[T] = p, slot[T] = (1 + s + (p / BS) * NSEQ) * BS + p % BS;
                lidx[s] = T - 1;
            }
            sl_batch b = {.n_tokens = T, .tokens = tok, .pos = pos, .slot_mapping = slot,
                          .n_seqs = NSEQ, .max_blocks = MAXB, .q_start = qs, .q_len = ql,
                          .ctx_len = cl, .block_tables = tabs, .n_logits = NSEQ, .logit_idx = lidx};
            ASSERT_EQ(sl_forward(g.m, &g.kv, &b, logits), 0);
            sl_sample_result want[NSEQ];
            for (int s = 0; s < NSEQ; s++) sl_sampler_sample(&host[s], logits + (size_t)s * V, &ws, &want[s]);
            sl_bsample_row rows[NSEQ];
            sl_bsample_adj adj[NSEQ][160];
            for (int s = 0; s < NSEQ; s++) {
                ASSERT(sl_sampler_adj_max(&dev[s]) <= 160);
                sl_sampler_device_row(&dev[s], adj[s], &rows[s]);
            }
            sl_bsample_out got[NSEQ];
            ASSERT_EQ(sl_forward_sample(g.m, &g.kv, &b, rows, got), 0);
            for (int s = 0; s < NSEQ; s++, draws++) {
                if (got[s].token != want[s].token)
                    fprintf(stderr, "setting %d step %d: device token %d, host %d\n",
                            round * NSEQ + s, step, got[s].token, want[s].token);
                ASSERT_EQ(got[s].token, want[s].token);
                ASSERT_EQ(got[s].n_top, want[s].n_top);
                ASSERT_NEAR(got[s].logprob, want[s].logprob, 2e-5, 1e-5);
                for (int j = 0; j < got[s].n_top; j++) {
                    ASSERT_EQ(got[s].top_ids[j], want[s].top_ids[j]);
                    ASSERT_NEAR(got[s].top_lps[j], want[s].top_lps[j], 2e-5, 1e-5);
                }
                sl_sampler_accept(&host[s], want[s].token);
                sl_sampler_accept(&dev[s], got[s].token);
                done[s] = len[s];
                hist[s][len[s]++] = got[s].token;
            }
        }
        for (int s = 0; s < NSEQ; s++) sl_sampler_deinit(&host[s]), sl_sampler_deinit(&dev[s]);
    }
    printf("device sampling: %d draws over %d settings identical to the host sampler's (%.1f s)\n",
           draws, n_set, sl_time_s() - t0);
    sl_sample_ws_deinit(&ws);
    free(logits);
    side_close(&g);
}

/* sl_model_warmup on the CUDA backend (what `serve` runs at start: a step through the f16 GEMM
 * path here, then a decode step sampled on the device): it succeeds, frees what it took, and a
 * step after it gives the bits it gave before. */
static void test_warmup(void) {
    side g;
    open_small(&g, "test_cuda_backend_warm.gguf", 80, 320);
    const int V = g.m->hp.n_vocab;
    int32_t hist[NSEQ][MAXB * BS];
    for (int s = 0; s < NSEQ; s++)
        for (int i = 0; i < MAXB * BS; i++) hist[s][i] = (int32_t)(3 + (s * 37 + i * 11) % (V - 3));
    float *before = sl_xmalloc((size_t)MAXT * V * 4), *after = sl_xmalloc((size_t)MAXT * V * 4);
    int done[NSEQ] = {0}, n[NSEQ] = {20, 0, 0};
    ASSERT_EQ(run_step(&g, n, hist, done, before), 20);
    const int gemm = sl_cuda_backend_gemm_min_tokens(g_gpu);
    sl_cuda_backend_set_gemm(g_gpu, 17, 0);
    ASSERT_EQ(sl_model_warmup(g.m, 40), 0);
    sl_cuda_backend_set_gemm(g_gpu, gemm, 0);
    ASSERT(g.m->ws == NULL);
    ASSERT_EQ(sl_model_reserve(g.m, MAXT, NSEQ, MAXB, MAXT), 0);
    ASSERT_EQ(run_step(&g, n, hist, done, after), 20);
    ASSERT(memcmp(before, after, (size_t)20 * V * 4) == 0);
    side_close(&g);
    free(before), free(after);
    printf("warm-up: 40 tokens through the GEMM path and a sampled decode step; the next step's bits unchanged\n");
}

/* Batch invariance on the CUDA backend (sl_cuda_backend_set_batch_invariant): sequence 0's
 * decode logits are the same bits alone, beside two longer sequences (another step size
 * and another longest context, which change the attention's split-K without the mode) and in a
 * step of 13 tokens (qmm's plan), over contexts up to 243 tokens. */
static void test_batch_invariance(void) {
    sl_cuda_backend_set_batch_invariant(g_gpu, 1);
    side g;
    open_small(&g, "test_cuda_backend_inv.gguf", 79, 1088);
    const int V = g.m->hp.n_vocab, len[NSEQ] = {150, 240, 13 * BS};
    int32_t hist[NSEQ][MAXB * BS];
    for (int s = 0; s < NSEQ; s++)
        for (int i = 0; i < MAXB * BS; i++) hist[s][i] = (int32_t)(3 + (s * 71 + i * 13) % (V - 3));
    float *alone = sl_xmalloc((size_t)MAXT * V * 4), *batched = sl_xmalloc((size_t)MAXT * V * 4);
    int checked = 0;
    for (int step = 0; step < 4; step++) {
        /* contexts: prefill everything before the last position, in chunks of MAXT tokens */
        int done[NSEQ] = {0};
        for (int s = 0; s < NSEQ; s++) {
            const int end = len[s] + step - 1;
            while (done[s] < end) {
                int n[NSEQ] = {0};
                n[s] = end - done[s] < MAXT ? end - done[s] : MAXT;
                run_step(&g, n, hist, done, batched);
                done[s] += n[s];
            }
        }
        /* the last position of sequence 0: alone, then with the others' last positions */
        int one[NSEQ] = {1, 0, 0}, all[NSEQ] = {1, 1, 1};
        run_step(&g, one, hist, done, alone);
        run_step(&g, all, hist, done, batched);
        ASSERT(memcmp(alone, batched, (size_t)V * 4) == 0);
        /* and beside 12 positions of sequence 1 again (a step past 8 tokens, where without the
         * mode qmm's default plan is another than for 1 token: the output's 68 row tiles are
         * "large" past 8 tokens on the emulator's 2 to 16 SMs, "short" up to 8 tokens on a GPU
         * of more than 68) */
        int wide[NSEQ] = {1, 12, 0};
        done[1] -= 11;
        run_step(&g, wide, hist, done, batched);
        done[1] += 11;
        ASSERT(memcmp(alone, batched, (size_t)V * 4) == 0);
        checked++;
    }
    sl_cuda_backend_set_batch_invariant(g_gpu, 0);
    side_close(&g);
    free(alone), free(batched);
    printf("batch invariance: sequence 0's logits bit-identical alone and in a batch of 3, %d steps\n", checked);
}

/* The engine on the CUDA backend, sampling on the device and (host_sampling) on the host:
 * seeded requests of every kind of sampling give the same tokens and logprobs. The per-token
 * logits do not depend on the batch (batch-invariant mode), so how the engine happens to batch
 * the requests in either run does not matter. */
enum { ENG_REQ = 6, ENG_GEN = 12 };
typedef struct eng_out {
    int32_t tok[ENG_REQ][ENG_GEN];
    float lp[ENG_REQ][ENG_GEN];
    int n[ENG_REQ];
} eng_out;

static void engine_run(sl_model *m, bool host_sampling, eng_out *r) {
    sl_engine_config c = {.model = m, .seed = 5, .host_sampling = host_sampling};
    sl_sched_config_defaults(&c.sched);
    c.sched.n_blocks = 64, c.sched.block_size = BS, c.sched.max_num_seqs = 4;
    c.sched.max_num_batched_tokens = 24, c.sched.max_model_len = 256;
    sl_engine *e;
    char err[SL_ERRMSG] = "";
    int rc = sl_engine_create(&e, &c, err);
    if (rc) fprintf(stderr, "engine: %s\n", err);
    ASSERT_EQ(rc, 0);
    static const sl_logit_bias bias[] = {{11, 4.0f}, {12, -100.0f}};
    int32_t prompt[ENG_REQ][40];
    memset(r, 0, sizeof *r);
    for (int i = 0; i < ENG_REQ; i++) {
        const int np = 7 + 5 * i;
        for (int j = 0; j < np; j++) prompt[i][j] = (int32_t)(3 + (i * 53 + j * 29) % 300);
        sl_engine_req q = {.prompt = prompt[i], .n_prompt = np, .user = (void *)(intptr_t)i};
        sl_sampling_params_defaults(&q.sp);
        q.sp.max_tokens = ENG_GEN, q.sp.ignore_eos = true, q.sp.has_seed = true, q.sp.seed = 40 + (uint64_t)i;
        q.sp.temperature = i == 0 ? 0.0f : 0.6f + 0.2f * (float)i;
        q.sp.top_k = i == 2 ? 30 : 0, q.sp.top_p = i == 3 ? 0.85f : 1.0f, q.sp.min_p = i == 4 ? 0.02f : 0.0f;
        q.sp.repetition_penalty = i == 5 ? 1.2f : 1.0f, q.sp.presence_penalty = i == 5 ? 0.4f : 0.0f;
        q.sp.logit_bias = bias, q.sp.n_logit_bias = i == 4 ? 2 : 0;
        q.sp.logprobs = i % 2 == 0, q.sp.top_logprobs = i % 2 == 0 ? 2 : 0;
        uint64_t id;
        ASSERT_EQ(sl_engine_submit(e, &q, &id), 0);
    }
    int finished = 0;
    double t_end = sl_time_s() + 120;
    while (finished < ENG_REQ) {
        ASSERT(sl_time_s() < t_end);
        sl_engine_event *list = sl_engine_poll(e);
        if (!list) {
            usleep(1000);
            continue;
        }
        for (sl_engine_event *ev = list; ev; ev = ev->next) {
            const int i = (int)(intptr_t)ev->user;
            ASSERT(ev->finish != SL_FINISH_ERROR && ev->finish != SL_FINISH_ABORT);
            if (ev->token >= 0) {
                ASSERT(r->n[i] < ENG_GEN);
                r->tok[i][r->n[i]] = ev->token, r->lp[i][r->n[i]] = ev->logprob;
                r->n[i]++;
            }
            if (ev->done) finished++;
        }
        sl_engine_release(e, list);
    }
    sl_engine_destroy(e);
}

static void test_engine_sampling(void) {
    double t0 = sl_time_s();
    const char *path = "test_cuda_backend_engine.gguf";
    small_model(path, 78, 320);
    char err[SL_ERRMSG] = "";
    sl_model *m;
    sl_model_opts mo = {.quant_to = -1};
    ASSERT_EQ(sl_model_load(&m, path, g_gpu, &mo, err), 0);
    remove(path);
    static eng_out dev, host;
    /* the two runs may batch the requests differently: batch-invariant logits */
    sl_cuda_backend_set_batch_invariant(g_gpu, 1);
    engine_run(m, false, &dev);
    engine_run(m, true, &host);
    sl_cuda_backend_set_batch_invariant(g_gpu, 0);
    int n = 0;
    for (int i = 0; i < ENG_REQ; i++) {
        ASSERT_EQ(dev.n[i], ENG_GEN);
        ASSERT_EQ(host.n[i], ENG_GEN);
        for (int k = 0; k < ENG_GEN; k++, n++) {
            if (dev.tok[i][k] != host.tok[i][k])
                fprintf(stderr, "engine: request %d token %d: %d sampled on the device, %d on the host\n",
                        i, k, dev.tok[i][k], host.tok[i][k]);
            ASSERT_EQ(dev.tok[i][k], host.tok[i][k]);
            ASSERT_NEAR(dev.lp[i][k], host.lp[i][k], 2e-5, 1e-5);
        }
    }
    sl_model_free(m);
    printf("engine: %d tokens of %d seeded requests the same sampled on the device and on the host (%.1f s)\n",
           n, ENG_REQ, sl_time_s() - t0);
}

int main(void) {
    /* cuBLAS is opened at first use, not linked: it must be found with or without a device */
    const char *blas_err = sl_cuda_blas_open();
    if (blas_err) fprintf(stderr, "test_cuda_backend: cuBLAS: %s\n", blas_err);
    ASSERT(blas_err == NULL);
    int skip = harness_begin("test_cuda_backend", 20250601);
    if (skip) return skip;
    double t0 = sl_time_s();
    g_cpu = sl_cpu_backend_create(1);
    g_gpu = sl_cuda_backend_create(0);
    ASSERT(g_gpu != NULL);
    ASSERT(sl_cuda_backend_create(sl_cuda_device_count()) == NULL); /* no such device */
    test_elementwise();
    test_kquant_scales();
    test_embed_matmul();
    test_matmul_multi();
    test_models();
    test_f16_beside();
    test_fused_norm();
    test_device_sampling();
    test_warmup();
    test_batch_invariance();
    test_engine_sampling();
    g_gpu->destroy(g_gpu);
    g_cpu->destroy(g_cpu);
    printf("test_cuda_backend: ok (%ld checks, %.1f s)\n", g_checks, sl_time_s() - t0);
    return 0;
}
