/* cpu_matmul.c — y[T][rows] = x[T][cols] · Wᵀ for every logical weight format.
 *
 * Work is split over tiles of MR output rows; a worker computes every token of its rows, so
 * each weight is read from memory once per call. Three kernels:
 *  - fused (AVX2, T <= 4 for QW8/QW4, T <= 2 for F32/F16/BF16; cpu_matmul_avx2.c): decode a
 *    row in registers and FMA it against the tokens, one row after the other, so each thread
 *    reads one sequential stream. A decode step is bound by decode uops and memory, and this
 *    spends the fewest of both. (Float formats decode cheaply, and beyond 2 tokens their rows of
 *    x no longer stay in L1: the tiled kernel wins there.)
 *  - tiled (AVX2, larger T): decode an MR × kc tile into a per-thread buffer (F32 is read in
 *    place), then a register-blocked kernel (MR rows × 3 tokens) runs every token over it, so
 *    decoding is paid once per weight, not once per token.
 *  - scalar: the tiling in plain C, for CPUs without AVX2 and for shapes the SIMD kernels do not
 *    cover (cols % 8 != 0, unusual groups).
 * All accumulate in f32, over 8 lanes (and per group for QW8/QW4) before the final sum.
 */
#include <stdlib.h>
#include <string.h>

#include "../../base/base.h"
#include "cpu_matmul.h"

#define MR SL_MM_MR
#define KC_TARGET 512 /* columns per decoded tile (a multiple of the group and of 64) */

enum { K_SCALAR, K_FUSED, K_TILED };

typedef struct mm_call {
    sl__mm_job j;
    int kernel;
} mm_call;
typedef sl__mm_job mm_job;

static int is_q(sl_wfmt f) { return f == SL_WF_QW8 || f == SL_WF_QW4; }

static int64_t kc_for(const sl_qw *w) {
    if (w->fmt == SL_WF_F32) return w->cols; /* read in place: no tile, no chunking */
    if (!is_q(w->fmt)) return KC_TARGET;
    int64_t g = w->group;
    return g >= KC_TARGET ? g : g * (KC_TARGET / g);
}

size_t sl__cpu_tile_floats(const sl_qw *w) {
    return w->fmt == SL_WF_F32 ? 0 : (size_t)(MR * kc_for(w));
}

/* y is [T][rows]; the first column chunk stores, later ones accumulate. */
static inline void put(float *y, int64_t k0, float v) { *y = k0 ? *y + v : v; }

/* ---- scalar ----------------------------------------------------------------------------- */

/* Dequantizes elements [k0, k0 + n) of row r into dst (as sl_qw_dequant_row does). */
static void dec_scalar(const sl_qw *w, int64_t r, int64_t k0, int64_t n, float *dst) {
    const int64_t cols = w->cols;
    switch (w->fmt) {
    case SL_WF_F32: memcpy(dst, (const float *)w->data + r * cols + k0, (size_t)n * 4); return;
    case SL_WF_F16: {
        const uint16_t *s = (const uint16_t *)w->data + r * cols + k0;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_fp16_to_f32(s[i]);
        return;
    }
    case SL_WF_BF16: {
        const uint16_t *s = (const uint16_t *)w->data + r * cols + k0;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_bf16_to_f32(s[i]);
        return;
    }
    case SL_WF_QW8:
    case SL_WF_QW4: {
        const int64_t G = w->group, ng = cols / G, e = k0 + n;
        const float *sc = w->scales + r * ng, *of = w->offsets ? w->offsets + r * ng : NULL;
        const int8_t *c8 = (const int8_t *)w->codes + r * cols;
        const uint8_t *c4 = (const uint8_t *)w->codes + r * (cols / 2);
        for (int64_t k = k0; k < e;) {
            int64_t g = k / G, ge = (g + 1) * G < e ? (g + 1) * G : e;
            float s = sc[g], o = of ? of[g] : 0.0f;
            for (; k < ge; k++) {
                float c;
                if (w->fmt == SL_WF_QW8) {
                    c = (float)c8[k];
                } else {
                    int q = (k & 1) ? c4[k >> 1] >> 4 : c4[k >> 1] & 15;
                    c = (float)(of ? q : q - 8);
                }
                dst[k - k0] = of ? s * c + o : s * c;
            }
        }
        return;
    }
    }
}

static float dot_scalar(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    for (; i < n; i++) s[i & 7] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static void mm_scalar(const mm_job *j, int64_t tb, int64_t te, int tid) {
    const sl_qw *w = j->w;
    const int64_t rows = j->rows, cols = j->cols, kc = j->kc;
    float *tile = j->tiles ? j->tiles + (size_t)tid * j->tile_floats : NULL;
    for (int64_t i = tb; i < te; i++) {
        int64_t r0 = i * MR;
        int nr = rows - r0 < MR ? (int)(rows - r0) : MR;
        for (int64_t k0 = 0; k0 < cols; k0 += kc) {
            int64_t n = cols - k0 < kc ? cols - k0 : kc;
            const float *wr[MR];
            for (int r = 0; r < nr; r++) {
                if (w->fmt == SL_WF_F32) {
                    wr[r] = (const float *)w->data + (r0 + r) * cols + k0;
                } else {
                    dec_scalar(w, r0 + r, k0, n, tile + r * kc);
                    wr[r] = tile + r * kc;
                }
            }
            for (int t = 0; t < j->T; t++)
                for (int r = 0; r < nr; r++)
                    put(j->y + (int64_t)t * rows + r0 + r, k0,
                        dot_scalar(wr[r], j->x + (int64_t)t * cols + k0, n));
        }
    }
}

/* ---- dispatch --------------------------------------------------------------------------- */

static void mm_range(void *ctx, int64_t tb, int64_t te, int tid) {
    const mm_call *c = ctx;
    switch (c->kernel) {
    case K_FUSED: sl__mm_fused_avx2(&c->j, tb, te); return;
    case K_TILED: sl__mm_tiled_avx2(&c->j, tb, te, tid); return;
    default: mm_scalar(&c->j, tb, te, tid); return;
    }
}

/* The activations as the SIMD kernels read them (see sl__mm_job): QW4 blocks permuted, the
 * lane sums of those blocks, and the group sums of x when the fused kernel handles offsets.
 * Returns 0 or SL_ENOMEM. */
static int prepare_x(sl_cpu *c, mm_call *m) {
    const sl_qw *w = m->j.w;
    const int64_t T = m->j.T, cols = m->j.cols;
    const int perm = w->fmt == SL_WF_QW4, fused = m->kernel == K_FUSED;
    const int sums = fused && w->offsets, lanes = fused && perm && !w->offsets;
    if (!perm && !sums) return 0;
    const int64_t ng = sums ? cols / w->group : 0, nc = cols / 8;
    size_t need = (size_t)((perm ? T * cols : 0) + T * nc + T * ng);
    if (need > c->xbuf_floats) {
        float *p = NULL;
        size_t n = need + need / 2;
        if (posix_memalign((void **)&p, 64, n * sizeof(float)) != 0) return SL_ENOMEM;
        free(c->xbuf);
        c->xbuf = p;
        c->xbuf_floats = n;
    }
    float *xp = perm ? c->xbuf : NULL, *cs = c->xbuf + (perm ? T * cols : 0), *xg = cs + T * nc;
    for (int64_t t = 0; t < T; t++)
        sl__mm_prep_avx2(m->j.x + t * cols, cols, xp ? xp + t * cols : NULL, cs + t * nc);
    if (perm) m->j.xp = xp;
    if (lanes) m->j.xl = cs;
    if (sums) {
        const int64_t per = w->group / 8; /* chunks of 8 per group */
        for (int64_t t = 0; t < T; t++)
            for (int64_t g = 0; g < ng; g++) {
                double s = 0;
                for (int64_t i = 0; i < per; i++) s += cs[t * nc + g * per + i];
                xg[t * ng + g] = (float)s;
            }
        m->j.xg = xg;
    }
    return 0;
}

void sl__cpu_matmul(sl_cpu *c, const sl_qw *w, const float *x, float *y, int T) {
    SL_CHECK(w && x && y && T >= 0);
    if (T == 0 || w->rows == 0) return;
    mm_call m = {.j = {.w = w, .x = x, .xp = x, .y = y, .T = T, .rows = w->rows,
                       .cols = w->cols, .kc = kc_for(w)}};
    size_t tf = sl__cpu_tile_floats(w);
    if (tf > c->tile_floats) SL_CHECK(sl__cpu_reserve_tiles(c, tf) == 0); /* normally done at weight_create */
    m.j.tiles = c->tiles;
    m.j.tile_floats = c->tile_floats;
    if (!c->simd || !sl__mm_avx2_covers(w)) m.kernel = K_SCALAR;
    else m.kernel = T <= (is_q(w->fmt) ? SL_MM_FUSED_MAX_T : 2) ? K_FUSED : K_TILED;
    if (m.kernel != K_SCALAR) SL_CHECK(prepare_x(c, &m) == 0);
    int64_t ntiles = (w->rows + MR - 1) / MR;
    /* at least ~128K multiply-adds per thread, or waking a worker costs more than it saves */
    int64_t per_tile = (int64_t)MR * w->cols * T;
    sl_pool_run(c->pool, mm_range, &m, ntiles, 1 + (1 << 17) / per_tile);
}
