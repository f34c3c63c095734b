/* cpu.h — the CPU backend: the embedded default and the reference for every CUDA kernel.
 *
 * Host memory, f32 activations, weights in the logical formats of kernels/qw.h (F32, F16,
 * BF16, QW8, QW4; no repack, but for int8 activations below). Ops run synchronously, multithreaded over an sl_pool, with
 * AVX2/FMA (and AVX-512 VNNI) paths chosen at run time where the CPU has them and scalar code
 * otherwise. With int8 activations (sl_cpu_backend_set_int8_activations, what the commands
 * use unless `--cpu-activations f32`), QW4/QW8 matmuls quantize each token's activations per
 * 32 columns and run integer dot products over weights kept in 8-row panels, as llama.cpp does
 * for its quantized types; f32 activations stay the exact reference.
 */
#ifndef SL_CPU_H
#define SL_CPU_H

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* n_threads <= 0: all online CPUs. Free with be->destroy(be). */
sl_backend *sl_cpu_backend_create(int n_threads);
/* on = 1: matmuls with the QW4/QW8 weights created from now on quantize each token's
 * activations to int8 per 32 columns and sum in integers, as llama.cpp does (faster; each
 * result is the product with the rounded activations); on = 0 (the default, the reference):
 * f32 activations. Other weights and shapes the int8 kernels do not cover keep f32. Returns
 * the previous setting. */
int sl_cpu_backend_set_int8_activations(sl_backend *be, int on);

#ifdef __cplusplus
}
#endif
#endif
