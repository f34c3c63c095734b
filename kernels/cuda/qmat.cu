/* qmat.cu — the repack of a logical QW8/QW4 weight (kernels/qw.h) into the CUDA backend's
 * tiled layout (matmul.h, qmat_layout.cuh), its inverse for the round-trip test, and the
 * device copy's lifecycle. The scales take the narrowest width that keeps every value: f16,
 * two-level (int8 multipliers of an f16 factor per row and 256 columns, the K-quants' form),
 * else f32.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common.cuh"
#include "matmul.h"
#include "qmat_layout.cuh"

#include <cuda_fp16.h>

namespace {

int ktile(bool q4) { return sl_qmat_kt(q4); }

/* fn(begin, end) over [0, n), split over the CPUs in chunks of at least min_chunk (a thread
 * that cannot start leaves its share to the caller) */
template <class F> void parallel_for(int64_t n, int64_t min_chunk, const F &fn) {
    const int64_t n_thr = sl_min64(std::thread::hardware_concurrency(), sl_div_up(n, min_chunk));
    const int64_t per = sl_div_up(n, n_thr > 1 ? n_thr : 1);
    std::vector<std::thread> workers;
    int64_t done = sl_min64(per, n);
    for (int64_t b = per; b < n; b += per) {
        try {
            workers.emplace_back(fn, b, sl_min64(b + per, n));
            done = sl_min64(b + per, n);
        } catch (...) {
            break;
        }
    }
    fn(0, sl_min64(per, n));
    if (done < n) fn(done, n);
    for (std::thread &th : workers) th.join();
}

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

/* Where logical element (r, c) lives: the byte offset of its lane's 16 bytes in the codes and
 * its position j there (QW4: nibble, QW8: byte), through qmat_layout.cuh. */
size_t code_pos(const sl_cuda_qmat *q, int64_t r, int64_t c, int *j) {
    const bool q4 = q->fmt == SL_WF_QW4;
    const int kt = ktile(q4);
    int s, kk, lane;
    sl_qmat_step(sl_qmat_spa(q4, q->group), (int)(c % kt), &s, &kk);
    sl_qmat_frag(q4, (int)(r % 16), s, kk, &lane, j);
    return ((size_t)(r / 16) * q->k_tiles + c / kt) * 512 + lane * 16;
}

bool exact_f16(float v) { return __half2float(__float2half_rn(v)) == v; }

void put_scale(void *p, int bytes, int64_t at, float v) {
    if (bytes == 2) static_cast<__half *>(p)[at] = __float2half_rn(v);
    else static_cast<float *>(p)[at] = v;
}

bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Two levels for the n values v: an f16 factor *f and q[i] in lo..hi (within -128..127) with
 * *f · q[i] equal to v[i] bit for bit in f32. The multiplier m of the value of largest
 * magnitude is tried at 63, 127 and -128 first (the K-quants' 6-bit scales reach 63, Q6_K's
 * int8 ones 127 or -128 with a negative d), then at every other; false when none works. */
bool two_level(const float *v, int n, int lo, int hi, float *f, int8_t *q) {
    float vm = v[0]; /* its sign too when all are zeros: -0 = -0 · 0 */
    for (int i = 1; i < n; i++)
        if (fabsf(v[i]) > fabsf(vm)) vm = v[i];
    static const int first[] = {63, 127, -128};
    for (int c = 0; c < 3 + 255; c++) {
        /* then -127, 126, -126, ..., 1, -1, without those tried first */
        const int m = c < 3 ? first[c] : (c - 3) % 2 ? -(127 - (c - 3) / 2) : 127 - (c - 3) / 2;
        if ((c >= 3 && (m == 63 || m == 127)) || m == 0 || m < lo || m > hi) continue;
        const float d = vm / (float)m;
        if (vm != 0.0f && (d == 0.0f || !exact_f16(d))) continue;
        bool ok = true;
        for (int i = 0; i < n && ok; i++) {
            const float r = vm != 0.0f ? rintf(v[i] / d) : 0.0f;
            ok = r >= (float)lo && r <= (float)hi;
            q[i] = ok ? (int8_t)r : 0;
            ok = ok && same_bits(d * (float)q[i], v[i]); /* as the kernel multiplies: 0 is +0 */
        }
        if (ok) {
            *f = d;
            return true;
        }
        if (vm == 0.0f) return false; /* a −0 */
    }
    return false;
}

/* The two-level form of w's scales and offsets (matmul.h), when the layout allows it and every
 * super-block of every row factors: qs/qo the multipliers [rows][cols / group], fs/fo the
 * factors [rows][cols / SL_QMAT_SB] (malloc'ed; qo, fo only with offsets). QW4 needs offsets
 * and multipliers in 0..127 (the kernel scales its codes by them in f16), QW8 -128..127. */
bool two_level_all(const sl_qw *w, int8_t **qs, int8_t **qo, float **fs, float **fo) {
    const bool q4 = w->fmt == SL_WF_QW4;
    const int kt = ktile(q4), lo = q4 ? 0 : -128;
    *qs = *qo = nullptr, *fs = *fo = nullptr;
    if (w->group > kt || w->cols % SL_QMAT_SB || (q4 && !w->offsets)) return false;
    const int64_t gpr = w->cols / w->group, spr = w->cols / SL_QMAT_SB;
    const int per = SL_QMAT_SB / w->group; /* groups per factor */
    *qs = static_cast<int8_t *>(malloc((size_t)(w->rows * gpr)));
    *fs = static_cast<float *>(malloc((size_t)(w->rows * spr) * sizeof(float)));
    if (w->offsets) {
        *qo = static_cast<int8_t *>(malloc((size_t)(w->rows * gpr)));
        *fo = static_cast<float *>(malloc((size_t)(w->rows * spr) * sizeof(float)));
    }
    std::atomic<bool> all(*qs && *fs && (!w->offsets || (*qo && *fo)));
    if (all) /* each row's blocks of 256 columns, over the CPUs */
        parallel_for(w->rows * spr, 4096, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e && all.load(std::memory_order_relaxed); i++) {
                bool ok = two_level(w->scales + i * per, per, lo, 127, *fs + i, *qs + i * per);
                if (ok && w->offsets) ok = two_level(w->offsets + i * per, per, lo, 127, *fo + i, *qo + i * per);
                if (!ok) all = false;
            }
        });
    const bool ok = all;
    if (!ok) {
        free(*qs), free(*qo), free(*fs), free(*fo);
        *qs = *qo = nullptr, *fs = *fo = nullptr;
    }
    return ok;
}

/* The codes of row tiles [rt0, rt1) of w, tile by tile: each lane's 16 bytes built whole in
 * fragment order (matmul.h), each element's column from qmat_layout.cuh's forward map, then
 * stored once. Padding: QW4 code 0, QW8 128 (the stored form of 0). */
struct codes_job {
    const sl_qw *w;
    const sl_cuda_qmat *q;
    unsigned char *codes;
    int col_of[4][16]; /* step s, k index kk: the column within the tile */
};

void place_codes(const codes_job &j, int64_t rt0, int64_t rt1) {
    const sl_qw *w = j.w;
    const bool q4 = w->fmt == SL_WF_QW4;
    const int kt = ktile(q4), steps = kt / 16;
    const int64_t rows = w->rows, cols = w->cols, k_tiles = j.q->k_tiles;
    const unsigned char *c4 = static_cast<const unsigned char *>(w->codes);
    const int8_t *c8 = static_cast<const int8_t *>(w->codes);
    for (int64_t rt = rt0; rt < rt1; rt++)
        for (int64_t kc = 0; kc < k_tiles; kc++)
            for (int lane = 0; lane < 32; lane++) {
                const int g = lane / 4, t = lane % 4;
                uint32_t words[4] = {0, 0, 0, 0};
                for (int st = 0; st < steps; st++)
                    for (int v = 0; v < 8; v++) { /* fragment order: sl_qmat_frag's v */
                        const int kk = 8 * (v / 4) + 2 * t + v % 2, rr = g + 8 * (v / 2 % 2);
                        const int64_t r = rt * 16 + rr, c = kc * kt + j.col_of[st][kk];
                        const bool in = r < rows && c < cols;
                        if (q4) {
                            const unsigned byte = in ? c4[r * (cols / 2) + c / 2] : 0;
                            const unsigned code = c % 2 ? byte >> 4 : byte & 15;
                            words[st] |= code << (4 * (v / 2 + v % 2 * 4));
                        } else {
                            const int jb = st * 8 + v; /* byte of the lane's 16 */
                            const unsigned code = in ? (unsigned)(c8[r * cols + c] + 128) : 128u;
                            words[jb / 4] |= code << (8 * (jb % 4));
                        }
                    }
                memcpy(j.codes + ((size_t)rt * k_tiles + kc) * 512 + lane * 16, words, 16);
            }
}

} // namespace

extern "C" int sl_cuda_qmat_ktile(sl_wfmt fmt) { return ktile(fmt == SL_WF_QW4); }

extern "C" size_t sl_cuda_qmat_factor_bytes(const sl_cuda_qmat *q) {
    if (q->scale_bytes != 1) return 0;
    const int64_t n_sb = q->k_tiles * ktile(q->fmt == SL_WF_QW4) / SL_QMAT_SB;
    return (size_t)(q->row_tiles * n_sb * 16 * (q->offsets ? 2 : 1)) * sizeof(__half);
}

extern "C" int sl_cuda_qmat_pack_host(sl_cuda_qmat *q, const sl_qw *w) {
    *q = sl_cuda_qmat{};
    if (!w || (w->fmt != SL_WF_QW4 && w->fmt != SL_WF_QW8)) return -1;
    if (w->group < 16 || (w->group & (w->group - 1)) || w->cols % w->group || w->rows <= 0)
        return -1;
    if (w->rows > INT32_MAX / 2 || w->cols > INT32_MAX / 2) return -1;
    const bool q4 = w->fmt == SL_WF_QW4;
    const int kt = ktile(q4);
    q->fmt = w->fmt;
    q->rows = w->rows;
    q->cols = w->cols;
    q->group = w->group;
    q->row_tiles = round_up(w->rows, 16) / 16;
    q->k_tiles = round_up(w->cols, kt) / kt;
    q->g_pad = (q->k_tiles * kt + w->group - 1) / w->group;
    const int64_t gpr = w->cols / w->group; /* logical groups per row */
    /* the narrowest scales that change no value: f16, two-level, else f32 */
    bool f16 = true;
    for (int64_t i = 0; i < w->rows * gpr && f16; i++)
        f16 = exact_f16(w->scales[i]) && (!w->offsets || exact_f16(w->offsets[i]));
    int8_t *tq[2] = {nullptr, nullptr};
    float *tf[2] = {nullptr, nullptr};
    const bool tl = !f16 && two_level_all(w, &tq[0], &tq[1], &tf[0], &tf[1]);
    q->scale_bytes = f16 ? 2 : tl ? 1 : 4;
    const size_t code_bytes = (size_t)q->row_tiles * q->k_tiles * 512;
    const size_t sc_n = (size_t)q->row_tiles * q->g_pad * 16;
    const int64_t n_sb = q->k_tiles * kt / SL_QMAT_SB, spr = w->cols / SL_QMAT_SB;
    const size_t f_n = tl ? (size_t)q->row_tiles * n_sb * 16 * (w->offsets ? 2 : 1) : 0;
    unsigned char *codes = static_cast<unsigned char *>(calloc(code_bytes, 1));
    void *scales = calloc(sc_n, q->scale_bytes);
    void *offsets = w->offsets ? calloc(sc_n, q->scale_bytes) : nullptr;
    __half *factors = tl ? static_cast<__half *>(calloc(f_n, sizeof(__half))) : nullptr;
    if (!codes || !scales || (w->offsets && !offsets) || (tl && !factors)) {
        free(codes), free(scales), free(offsets), free(factors);
        free(tq[0]), free(tq[1]), free(tf[0]), free(tf[1]);
        return -1;
    }
    codes_job cj{w, q, codes, {}};
    const int spa = sl_qmat_spa(q4, q->group);
    for (int st = 0; st < kt / 16; st++)
        for (int kk = 0; kk < 16; kk++) cj.col_of[st][kk] = sl_qmat_col(spa, st, kk);
    /* the codes are most of the repack's time: row tiles over the CPUs */
    parallel_for(q->row_tiles, 8, [&](int64_t b, int64_t e) { place_codes(cj, b, e); });
    for (int64_t r = 0; r < w->rows; r++) {
        const int64_t rt = r / 16;
        for (int64_t gi = 0; gi < gpr; gi++) {
            const int64_t at = sl_qmat_scale_at(q4, q->group, q->k_tiles, q->g_pad, rt, gi * q->group, (int)(r % 16));
            if (tl) {
                static_cast<int8_t *>(scales)[at] = tq[0][r * gpr + gi];
                if (offsets) static_cast<int8_t *>(offsets)[at] = tq[1][r * gpr + gi];
                continue;
            }
            put_scale(scales, q->scale_bytes, at, w->scales[r * gpr + gi]);
            if (offsets) put_scale(offsets, q->scale_bytes, at, w->offsets[r * gpr + gi]);
        }
        for (int64_t b = 0; tl && b < spr; b++)
            for (int o = 0; o < (offsets ? 2 : 1); o++) {
                const int64_t at = sl_qmat_factor_at(n_sb, offsets != nullptr, rt, b * SL_QMAT_SB, (int)(r % 16), o);
                factors[at] = __float2half_rn(tf[o][r * spr + b]); /* exact: two_level */
            }
    }
    free(tq[0]), free(tq[1]), free(tf[0]), free(tf[1]);
    q->codes = codes;
    q->scales = scales;
    q->offsets = offsets;
    q->factors = factors;
    return 0;
}

extern "C" void sl_cuda_qmat_unpack_host(const sl_cuda_qmat *q, sl_qw *w) {
    SL_CUDA_REQUIRE(q && w && w->fmt == q->fmt && w->rows == q->rows && w->cols == q->cols);
    SL_CUDA_REQUIRE(w->group == q->group && (!w->offsets) == (!q->offsets));
    const bool q4 = q->fmt == SL_WF_QW4;
    const unsigned char *codes = static_cast<const unsigned char *>(q->codes);
    const int64_t gpr = w->cols / w->group;
    for (int64_t r = 0; r < w->rows; r++) {
        const int64_t rt = r / 16;
        for (int64_t c = 0; c < w->cols; c++) {
            int j;
            const unsigned char *lb = codes + code_pos(q, r, c, &j);
            if (q4) {
                uint32_t v;
                memcpy(&v, lb + (j / 8) * 4, 4);
                const unsigned code = (v >> (4 * (j % 8))) & 15;
                unsigned char *dst = static_cast<unsigned char *>(w->codes) + r * (w->cols / 2) + c / 2;
                *dst = (unsigned char)(c % 2 ? (*dst & 15) | (code << 4) : (*dst & 0xf0) | code);
            } else {
                static_cast<int8_t *>(w->codes)[r * w->cols + c] = (int8_t)(lb[j] - 128);
            }
        }
        for (int64_t gi = 0; gi < gpr; gi++) {
            w->scales[r * gpr + gi] = sl_qmat_value(*q, false, rt, gi * q->group, (int)(r % 16));
            if (w->offsets) w->offsets[r * gpr + gi] = sl_qmat_value(*q, true, rt, gi * q->group, (int)(r % 16));
        }
    }
}

extern "C" void sl_cuda_qmat_host_free(sl_cuda_qmat *q) {
    if (!q) return;
    free(q->codes);
    free(q->scales);
    free(q->offsets);
    free(q->factors);
    *q = sl_cuda_qmat{};
}

extern "C" int sl_cuda_qmat_init(sl_cuda_qmat *q, const sl_qw *w) {
    sl_cuda_qmat h;
    if (sl_cuda_qmat_pack_host(&h, w) != 0) {
        *q = sl_cuda_qmat{};
        return -1;
    }
    *q = h;
    q->codes = nullptr, q->scales = nullptr, q->offsets = nullptr, q->factors = nullptr;
    const size_t code_bytes = (size_t)h.row_tiles * h.k_tiles * 512;
    const size_t sc_bytes = (size_t)h.row_tiles * h.g_pad * 16 * h.scale_bytes;
    const size_t f_bytes = h.factors ? sl_cuda_qmat_factor_bytes(&h) : 0;
    q->codes = sl_cuda_malloc(code_bytes);
    q->scales = sl_cuda_malloc(sc_bytes);
    if (h.offsets) q->offsets = sl_cuda_malloc(sc_bytes);
    if (h.factors) q->factors = sl_cuda_malloc(f_bytes);
    if (!q->codes || !q->scales || (h.offsets && !q->offsets) || (h.factors && !q->factors)) {
        sl_cuda_qmat_deinit(q);
        sl_cuda_qmat_host_free(&h);
        return -2;
    }
    sl_cuda_upload(q->codes, h.codes, code_bytes);
    sl_cuda_upload(q->scales, h.scales, sc_bytes);
    if (h.offsets) sl_cuda_upload(q->offsets, h.offsets, sc_bytes);
    if (h.factors) sl_cuda_upload(q->factors, h.factors, f_bytes);
    sl_cuda_qmat_host_free(&h);
    return 0;
}

extern "C" void sl_cuda_qmat_deinit(sl_cuda_qmat *q) {
    if (!q) return;
    sl_cuda_free(q->codes);
    sl_cuda_free(q->scales);
    sl_cuda_free(q->offsets);
    sl_cuda_free(q->factors);
    *q = sl_cuda_qmat{};
}
