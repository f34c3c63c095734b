/* cuda.h — the C seam of the CUDA backend (extern "C" entry points defined in .cu files).
 *
 * Built only where nvcc is found (SL_HAVE_CUDA). The kernels and the CUDA backend proper come
 * with the emulator and kernel issues; for now this reports the devices so `sluice info` and
 * the device choice (`--device auto`) can tell whether a GPU is present.
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

#ifdef __cplusplus
}
#endif
#endif
