/* cpu_backend.c — the CPU backend's op table: memory, weights, threading and the elementwise
 * ops. matmul lives in cpu_matmul.c, attention in cpu_attention.c.
 *
 * Elementwise ops are memory-bound and short; they go to the pool only when a call has enough
 * elements to pay for waking the workers (ELEMS_PER_THREAD).
 */
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/base.h"
#include "cpu_internal.h"
#include "cpu_matmul.h"

#define ALIGN 64
#define ELEMS_PER_THREAD (1 << 15)
#define MAX_ROT 1024 /* largest n_rot */

static sl_cpu *cpu(sl_backend *be) { return (sl_cpu *)be->impl; }

static void *aligned(size_t bytes) {
    void *p = NULL;
    size_t n = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    if (posix_memalign(&p, ALIGN, n ? n : ALIGN) != 0) return NULL;
    return p;
}

/* Items [0, n) of cost `each` elements: chunks of at least ELEMS_PER_THREAD elements. */
static void run(sl_cpu *c, sl_pool_fn fn, void *ctx, int64_t n, int64_t each) {
    if (each < 1) each = 1;
    sl_pool_run(c->pool, fn, ctx, n, 1 + ELEMS_PER_THREAD / each);
}

int sl__cpu_simd_available(void) {
#if defined(__x86_64__) || defined(__i386__)
    /* F16C through cpuid (leaf 1, ECX bit 29): clang 14 has no "f16c" cpu_supports name */
    unsigned a, b, c1, d;
    int f16c = __get_cpuid(1, &a, &b, &c1, &d) && (c1 & (1u << 29));
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)) return 0;
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))) return 1;
    return __builtin_cpu_supports("avx512vnni") ? 3 : 2;
#else
    return 0;
#endif
}

int sl__cpu_set_simd(sl_backend *be, int on) {
    sl_cpu *c = cpu(be);
    int prev = c->simd;
    int have = sl__cpu_simd_available();
    c->simd = on < have ? on : have;
    return prev;
}

int sl__cpu_reserve_tiles(sl_cpu *c, size_t floats) {
    if (floats <= c->tile_floats) return 0;
    floats = (floats + 15) / 16 * 16; /* each thread's tile starts on its own cache line */
    float *t = aligned(floats * (size_t)c->n_threads * sizeof(float));
    if (!t) return SL_ENOMEM;
    free(c->tiles);
    c->tiles = t;
    c->tile_floats = floats;
    return 0;
}

/* ---- memory --------------------------------------------------------------------------- */

static void *cpu_alloc(sl_backend *be, size_t bytes) {
    (void)be;
    return aligned(bytes);
}
static void cpu_free(sl_backend *be, void *p) {
    (void)be;
    free(p);
}
static void cpu_copy(sl_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
}
static void cpu_sync(sl_backend *be) { (void)be; }

/* ---- weights -------------------------------------------------------------------------- */

static int copy_array(void **dst, const void *src, size_t bytes) {
    if (!src) return 0;
    *dst = aligned(bytes);
    if (!*dst) return SL_ENOMEM;
    memcpy(*dst, src, bytes);
    return 0;
}

static int cpu_weight_create(sl_backend *be, const sl_qw *w, int alias, sl_bweight **out) {
    SL_CHECK(w && out && (unsigned)w->fmt <= SL_WF_QW4 && w->rows >= 0 && w->cols > 0);
    int q = w->fmt == SL_WF_QW8 || w->fmt == SL_WF_QW4;
    if (q) SL_CHECK(w->group > 0 && w->cols % w->group == 0 && w->codes && w->scales);
    else SL_CHECK(w->data);
    if (w->fmt == SL_WF_QW4) SL_CHECK(w->cols % 2 == 0);
    *out = NULL;
    sl_cpu *c = cpu(be);
    sl_bweight *b = calloc(1, sizeof *b);
    if (!b) return SL_ENOMEM;
    b->q = *w;
    b->q.owns = 0;
    b->i8 = c->act_i8 && sl__mmq_covers(w);
    if (b->i8 && c->simd) { /* panels only */
        b->pk = calloc(1, sizeof *b->pk);
        if (!b->pk || sl__mmq_pack(w, b->pk, c->pool)) {
            free(b->pk);
            free(b);
            return SL_ENOMEM;
        }
        b->q.data = NULL;
        b->q.codes = b->pk->codes;
        b->q.scales = b->pk->scales;
        b->q.offsets = b->pk->offsets;
        *out = b;
        return 0;
    }
    int err = b->i8 ? 0 : sl__cpu_reserve_tiles(c, sl__cpu_tile_floats(w));
    if (err) {
        free(b);
        return err;
    }
    /* alias only borrowed memory (backend.h): an owning sl_qw is freed by its caller */
    if (!alias || w->owns) {
        b->q.data = b->q.codes = NULL;
        b->q.scales = b->q.offsets = NULL;
        b->q.owns = 1;
        size_t data = (size_t)(w->rows * sl_qw_row_bytes(w));
        size_t groups = q ? (size_t)(w->rows * (w->cols / w->group)) * sizeof(float) : 0;
        if (copy_array(&b->q.data, w->data, data) || copy_array(&b->q.codes, w->codes, data) ||
            copy_array((void **)&b->q.scales, w->scales, groups) ||
            copy_array((void **)&b->q.offsets, w->offsets, groups)) {
            sl_qw_free(&b->q);
            free(b);
            return SL_ENOMEM;
        }
    }
    *out = b;
    return 0;
}

static void cpu_weight_destroy(sl_backend *be, sl_bweight *w) {
    (void)be;
    if (!w) return;
    if (w->pk) sl__mmq_free(w->pk);
    free(w->pk);
    sl_qw_free(&w->q);
    free(w);
}

static void cpu_matmul(sl_backend *be, const sl_bweight *w, const float *x, float *y, int T) {
    SL_CHECK(w);
    if (w->i8) sl__cpu_matmul_i8(cpu(be), &w->q, w->pk, x, y, T);
    else sl__cpu_matmul(cpu(be), &w->q, x, y, T);
}

/* ---- rmsnorm --------------------------------------------------------------------------- */

typedef struct norm_job {
    const float *x, *g;
    float *y;
    int D;
    float eps;
} norm_job;

/* As ggml: Σx² in double, scale = 1/sqrtf(mean + eps) in f32, y = (x·scale)·g. */
static void norm_range(void *ctx, int64_t b, int64_t e, int tid) {
    (void)tid;
    const norm_job *j = ctx;
    const int D = j->D;
    for (int64_t t = b; t < e; t++) {
        const float *x = j->x + t * D;
        float *y = j->y + t * D;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int i = 0;
        for (; i + 4 <= D; i += 4) {
            s0 += (double)(x[i] * x[i]);
            s1 += (double)(x[i + 1] * x[i + 1]);
            s2 += (double)(x[i + 2] * x[i + 2]);
            s3 += (double)(x[i + 3] * x[i + 3]);
        }
        for (; i < D; i++) s0 += (double)(x[i] * x[i]);
        float mean = (float)(((s0 + s1) + (s2 + s3)) / D);
        float scale = 1.0f / sqrtf(mean + j->eps);
        for (i = 0; i < D; i++) y[i] = (x[i] * scale) * j->g[i];
    }
}

static void cpu_rmsnorm(sl_backend *be, const float *x, const float *g, float *y, int T, int D,
                        float eps) {
    SL_CHECK(x && g && y && T >= 0 && D > 0);
    norm_job j = {x, g, y, D, eps};
    run(cpu(be), norm_range, &j, T, D);
}

/* ---- add, add_bias, swiglu ---------------------------------------------------------------- */

typedef struct ew_job {
    float *x, *y;
    const float *a, *b;
    int64_t n; /* add_bias: row length */
} ew_job;

static void add_range(void *ctx, int64_t b, int64_t e, int tid) {
    (void)tid;
    const ew_job *j = ctx;
    for (int64_t i = b; i < e; i++) j->x[i] += j->a[i];
}

static void cpu_add(sl_backend *be, float *x, const float *y, int64_t n) {
    SL_CHECK(x && y && n >= 0);
    ew_job j = {.x = x, .a = y};
    run(cpu(be), add_range, &j, n, 1);
}

static void bias_range(void *ctx, int64_t b, int64_t e, int tid) {
    (void)tid;
    const ew_job *j = ctx;
    for (int64_t t = b; t < e; t++) {
        float *x = j->x + t * j->n;
        for (int64_t i = 0; i < j->n; i++) x[i] += j->a[i];
    }
}

static void cpu_add_bias(sl_backend *be, float *x, const float *b, int T, int N) {
    SL_CHECK(x && b && T >= 0 && N >= 0);
    ew_job j = {.x = x, .a = b, .n = N};
    run(cpu(be), bias_range, &j, T, N);
}

static void swiglu_range(void *ctx, int64_t b, int64_t e, int tid) {
    (void)tid;
    const ew_job *j = ctx;
    for (int64_t i = b; i < e; i++) {
        float g = j->a[i];
        j->y[i] = g / (1.0f + expf(-g)) * j->b[i];
    }
}

static void cpu_swiglu(sl_backend *be, const float *g, const float *u, float *y, int64_t n) {
    SL_CHECK(g && u && y && n >= 0);
    ew_job j = {.y = y, .a = g, .b = u};
    run(cpu(be), swiglu_range, &j, n, 8); /* expf costs several adds */
}

/* ---- rope ------------------------------------------------------------------------------ */

typedef struct rope_job {
    float *x;
    const int32_t *pos;
    int H, D;
    const sl_rope_params *rp;
    float theta_scale;
} rope_job;

/* θ_i exactly as ggml forms it: θ = p, then θ *= base^(−2/n_rot) per pair, divided by the
 * pair's rope_freqs factor and multiplied by freq_scale, all in f32. */
static void rope_range(void *ctx, int64_t b, int64_t e, int tid) {
    (void)tid;
    const rope_job *j = ctx;
    const sl_rope_params *rp = j->rp;
    const int half = rp->n_rot / 2;
    float cs[MAX_ROT / 2], sn[MAX_ROT / 2];
    for (int64_t t = b; t < e; t++) {
        float theta = (float)j->pos[t];
        for (int i = 0; i < half; i++) {
            float ff = rp->freqs ? rp->freqs[i] : 1.0f;
            float th = rp->freq_scale * (theta / ff);
            cs[i] = cosf(th);
            sn[i] = sinf(th);
            theta *= j->theta_scale;
        }
        for (int h = 0; h < j->H; h++) {
            float *x = j->x + (t * j->H + h) * j->D;
            for (int i = 0; i < half; i++) {
                int i0 = rp->mode == SL_ROPE_NORM ? 2 * i : i;
                int i1 = rp->mode == SL_ROPE_NORM ? 2 * i + 1 : i + half;
                float x0 = x[i0], x1 = x[i1];
                x[i0] = x0 * cs[i] - x1 * sn[i];
                x[i1] = x0 * sn[i] + x1 * cs[i];
            }
        }
    }
}

static void cpu_rope(sl_backend *be, float *x, const int32_t *pos, int T, int H, int head_dim,
                     const sl_rope_params *rp) {
    SL_CHECK(x && pos && rp && T >= 0 && H > 0 && head_dim > 0);
    SL_CHECK(rp->n_rot >= 0 && rp->n_rot % 2 == 0 && rp->n_rot <= head_dim &&
             rp->n_rot <= MAX_ROT);
    SL_CHECK(rp->mode == SL_ROPE_NORM || rp->mode == SL_ROPE_NEOX);
    if (rp->n_rot == 0) return;
    rope_job j = {x, pos, H, head_dim, rp, powf(rp->freq_base, -2.0f / (float)rp->n_rot)};
    run(cpu(be), rope_range, &j, T, (int64_t)H * head_dim * 4);
}

/* ---- embed, kv_write, gather_rows ------------------------------------------------------------ */

static void cpu_embed(sl_backend *be, const sl_bweight *table, const int32_t *tok, float *y,
                      int T) {
    (void)be;
    SL_CHECK(table && tok && y && T >= 0);
    const sl_qw *w = &table->q;
    for (int t = 0; t < T; t++) {
        SL_CHECK(tok[t] >= 0 && tok[t] < w->rows);
        if (table->pk) sl__mmq_dequant_row(w, table->pk, tok[t], y + (int64_t)t * w->cols);
        else sl_qw_dequant_row(w, tok[t], y + (int64_t)t * w->cols);
    }
}

static void cpu_kv_write(sl_backend *be, float *k_cache, float *v_cache, const float *k,
                         const float *v, const int32_t *slot_mapping, int T, int kv_dim) {
    (void)be;
    SL_CHECK(k_cache && v_cache && k && v && slot_mapping && T >= 0 && kv_dim > 0);
    for (int t = 0; t < T; t++) {
        SL_CHECK(slot_mapping[t] >= 0);
        int64_t s = (int64_t)slot_mapping[t] * kv_dim, o = (int64_t)t * kv_dim;
        memcpy(k_cache + s, k + o, (size_t)kv_dim * sizeof(float));
        memcpy(v_cache + s, v + o, (size_t)kv_dim * sizeof(float));
    }
}

static void cpu_gather_rows(sl_backend *be, const float *x, const int32_t *idx, float *y, int n,
                            int D) {
    (void)be;
    SL_CHECK(x && idx && y && n >= 0 && D >= 0);
    for (int i = 0; i < n; i++) {
        SL_CHECK(idx[i] >= 0);
        memcpy(y + (int64_t)i * D, x + (int64_t)idx[i] * D, (size_t)D * sizeof(float));
    }
}

static void cpu_attention(sl_backend *be, const float *q, const float *k_cache,
                          const float *v_cache, float *out, const sl_attn_batch *b, int H,
                          int Hkv, int head_dim, int block_size, float scale) {
    sl__cpu_attention(cpu(be), q, k_cache, v_cache, out, b, H, Hkv, head_dim, block_size, scale);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static void cpu_destroy(sl_backend *be) {
    if (!be) return;
    sl_cpu *c = cpu(be);
    sl_pool_destroy(c->pool);
    free(c->tiles);
    free(c->tok_list);
    free(c->xbuf);
    free(c->accb);
    free(c);
    free(be);
}

int sl_cpu_backend_set_int8_activations(sl_backend *be, int on) {
    sl_cpu *c = cpu(be);
    int prev = c->act_i8;
    c->act_i8 = on != 0;
    return prev;
}

sl_backend *sl_cpu_backend_create(int n_threads) {
    sl_backend *be = sl_xcalloc(1, sizeof *be);
    sl_cpu *c = sl_xcalloc(1, sizeof *c);
    c->pool = sl_pool_create(n_threads);
    c->n_threads = sl_pool_threads(c->pool);
    c->simd = sl__cpu_simd_available();
    be->name = "cpu";
    be->impl = c;
    be->destroy = cpu_destroy;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_copy;
    be->download = cpu_copy;
    be->sync = cpu_sync;
    be->weight_create = cpu_weight_create;
    be->weight_destroy = cpu_weight_destroy;
    be->matmul = cpu_matmul;
    be->rmsnorm = cpu_rmsnorm;
    be->add = cpu_add;
    be->add_bias = cpu_add_bias;
    be->rope = cpu_rope;
    be->swiglu = cpu_swiglu;
    be->embed = cpu_embed;
    be->kv_write = cpu_kv_write;
    be->attention = cpu_attention;
    be->gather_rows = cpu_gather_rows;
    return be;
}
