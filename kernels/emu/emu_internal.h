/* emu_internal.h — what emu_exec.cpp and emu_runtime.cpp share; kernels never see it. */
#ifndef SL_EMU_INTERNAL_H
#define SL_EMU_INTERNAL_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

namespace sl_emu {

constexpr size_t SMEM_STATIC_MAX = 48 * 1024;   /* static shared memory per block */
constexpr size_t SMEM_DYNAMIC_DEFAULT = 48 * 1024; /* dynamic, unless cudaFuncSetAttribute */
constexpr size_t SMEM_OPTIN = 227 * 1024;       /* static + dynamic, sm_90 opt-in limit */

/* Bytes from p to the end of the cudaMalloc allocation holding it (0 at its one-past-end), or
 * -1 when p is not device memory. Thread-safe. */
int64_t device_bytes_from(const void *p);
/* The calling host thread's last error (cudaGetLastError). */
void set_error(cudaError_t e);
/* Dynamic shared memory a launch of fn may use (cudaFuncAttributeMaxDynamicSharedMemorySize). */
size_t max_dynamic_smem(const void *fn);
int stream_valid(cudaStream_t s);
/* OS threads of the block pool (the emulated device's multiprocessor count). */
int pool_threads(void);

} /* namespace sl_emu */
#endif
