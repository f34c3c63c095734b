/* cpu_internal.h — private to kernels/cpu (and its tests): the backend state, the weight, the
 * op entry points split across cpu_*.c, and a switch between the SIMD and scalar kernels.
 */
#ifndef SL_CPU_INTERNAL_H
#define SL_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "../../base/pool.h"
#include "cpu.h"

/* Functions compiled for AVX2+FMA+F16C; only called after sl__cpu_simd_available(). */
#define SL_AVX2 __attribute__((target("avx2,fma,f16c")))

typedef struct sl_cpu {
    sl_pool *pool;
    int n_threads;
    int simd;            /* 3: as 2, and the int8 matmul through AVX-512 VNNI; 2: AVX2/FMA/F16C
                          * kernels, some with AVX-512VL's registers; 1: AVX2 only; 0: scalar
                          * kernels (all give the same bits) */
    int act_i8;          /* weights created now take int8 activations (sl_cpu_backend_set_int8_activations) */
    float *tiles;        /* matmul: n_threads dequantization tiles of tile_floats each, 64-aligned */
    size_t tile_floats;  /* grown by weight_create, so matmul never allocates */
    float *xbuf;         /* matmul: activations rearranged for the kernels, grown on demand */
    size_t xbuf_floats;
    float *accb;         /* matmul: the tiled kernel's lane accumulators, grown on demand */
    size_t accb_floats;
    int32_t *tok_list;   /* attention: [tok_cap][2] (token, sequence), grown on demand */
    int64_t tok_cap;
} sl_cpu;

/* The CPU backend keeps the logical format; q.owns says whether destroy frees the arrays.
 * i8: created with int8 activations (sl_cpu.act_i8) for a weight sl__mmq_covers; with a SIMD
 * level the weight is then kept only as 8-row panels (pk; q's arrays point into them, q.owns
 * 0), else in the logical format for the scalar kernel. */
struct sl__mmq_panels;
struct sl_bweight {
    sl_qw q;
    int i8;
    struct sl__mmq_panels *pk;
};

/* 3 when this CPU also has AVX-512F/VL and AVX-512 VNNI, 2 with AVX-512F/VL only, 1 when it
 * runs the SL_AVX2 kernels (AVX2, FMA and F16C), else 0. */
int sl__cpu_simd_available(void);
/* Test hook: on = 0 forces the scalar kernels, on = 1 the AVX2-only kernels, 2 no VNNI, on >= 3
 * the best the CPU has (each capped at what it has). Returns the previous setting. Set it
 * before creating weights: int8 weights created with SIMD are panels, which the scalar level
 * cannot run. */
int sl__cpu_set_simd(sl_backend *be, int on);

/* Floats of one matmul dequantization tile for w (per thread). */
size_t sl__cpu_tile_floats(const sl_qw *w);
/* Grows the per-thread tiles to at least floats each; 0 or SL_ENOMEM. */
int sl__cpu_reserve_tiles(sl_cpu *c, size_t floats);

/* The ops of cpu_matmul.c and cpu_attention.c (arguments as in backend.h). */
void sl__cpu_matmul(sl_cpu *c, const sl_qw *w, const float *x, float *y, int T);
void sl__cpu_attention(sl_cpu *c, const float *q, const float *k_cache, const float *v_cache,
                       float *out, const sl_attn_batch *b, int H, int Hkv, int head_dim,
                       int block_size, float scale);

#endif
