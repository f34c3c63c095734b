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

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif
