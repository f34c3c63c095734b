/* cuda.h — the C seam of the CUDA backend: devices and device memory (extern "C" entry points
 * defined in .cu files). The ops are declared in ops.h.
 *
 * Built where nvcc is found (SL_HAVE_CUDA, library sluice_cuda), and for tests through the CUDA
 * emulator (library sluice_emu, kernels/emu/), which runs the same .cu files on the CPU and
 * reports one device, "sluice CUDA emulator".
 *
 * Memory functions act on the current device and the default stream; a CUDA failure aborts with
 * the failing statement and file:line (common.cuh's reporter). One thread drives the device (the
 * engine thread), as for every backend.
 */
#ifndef SL_CUDA_H
#define SL_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "../qw.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opens cuBLAS (kernels/cuda/blas.cuh: loaded at first use, not linked) without needing a
 * device: NULL when its entry points are found, else why not. */
const char *sl_cuda_blas_open(void);

/* Number of usable CUDA devices; 0 when there is no driver or no device (never aborts). */
int sl_cuda_device_count(void);
/* Fills name/cc/memory for device i; returns 0, or -1 if it cannot be queried. */
int sl_cuda_device_info(int i, char *name, size_t name_len, int *cc_major, int *cc_minor,
                        size_t *total_mem);

/* Device memory of `bytes` bytes (256-byte aligned), or NULL when out of memory (or bytes == 0).
 * The caller frees it with sl_cuda_free. */
void *sl_cuda_malloc(size_t bytes);
void sl_cuda_free(void *dev);
/* Synchronous copies between host and device memory. */
void sl_cuda_upload(void *dev_dst, const void *host_src, size_t bytes);
void sl_cuda_download(void *host_dst, const void *dev_src, size_t bytes);
/* Sets `bytes` bytes of device memory to `byte`. */
void sl_cuda_memset(void *dev, int byte, size_t bytes);
/* Waits until every op issued so far has finished; aborts on an asynchronous kernel error. */
void sl_cuda_sync(void);

/* A weight in device memory, for now in the logical layout of kernels/qw.h unchanged (codes,
 * f32 scales and offsets); the physical repack of the matmul kernels replaces it later. Every
 * pointer is device memory, NULL where the format has none. */
typedef struct sl_cuda_weight {
    sl_wfmt fmt;
    int64_t rows, cols;
    int32_t group;  /* QW8/QW4 only */
    void *data;     /* F32: float, F16/BF16: uint16_t; [rows][cols] */
    void *codes;    /* QW8: int8 [rows][cols]; QW4: uint8 [rows][cols/2] (qw.h nibble order) */
    float *scales;  /* QW8/QW4: [rows][cols/group] */
    float *offsets; /* QW8/QW4: [rows][cols/group], or NULL (symmetric) */
} sl_cuda_weight;

/* Uploads the logical weight w (host memory, only read during the call) into *dw. Returns 0,
 * or -1 when device memory runs out (then nothing stays allocated and *dw is zeroed). An
 * invalid w aborts. The caller frees it with sl_cuda_weight_deinit. */
int sl_cuda_weight_init(sl_cuda_weight *dw, const sl_qw *w);
/* Frees the device memory of dw and zeroes it; a zeroed dw is a no-op. */
void sl_cuda_weight_deinit(sl_cuda_weight *dw);

#ifdef __cplusplus
}
#endif
#endif
