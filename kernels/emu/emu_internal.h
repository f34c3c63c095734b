/* emu_internal.h — what emu_exec.cpp and emu_runtime.cpp share; kernels never see it. */
#ifndef SL_EMU_INTERNAL_H
#define SL_EMU_INTERNAL_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include <vector>

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
bool dynamic_smem_optin(const void *fn); /* cudaFuncSetAttribute set its dynamic maximum */
int stream_valid(cudaStream_t s);
/* OS threads of the block pool (the emulated device's multiprocessor count). */
int pool_threads(void);

/* ---- for the PTX instructions (emu_ptx.cpp), called by a CUDA thread ------------------------ */

/* Runs with records[l] = what lane l posted, on the last lane to arrive; file:line is where the
 * first lane called the instruction. */
typedef void (*warp_exec_fn)(void *const *records, const char *file, int line);
/* A warp-wide instruction that every lane of the warp executes together (PTX .sync.aligned):
 * the calling lane posts `record` (its operands and where its results go) and waits; the last
 * lane to arrive runs fn once for the whole warp, then all go on. A lane that has exited (or
 * lies past blockDim) is reported as an error; lanes at different instructions (another fn)
 * are reported as mismatched collectives. `name` appears in the reports. */
void warp_collective(const char *name, warp_exec_fn fn, void *record, const char *file, int line);
/* Reports a bug of the calling CUDA thread (the kernel, its launch, the block and the state of
 * each of its threads) and aborts. */
[[noreturn]] void kernel_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether [p, p + n) lies in the shared memory the calling thread's block has allocated so far
 * (dynamic, then the SL_SHARED variables met). */
bool in_shared(const void *p, size_t n);

/* A CUDA thread's cp.async copies that no wait_group has completed yet. */
struct async_copy {
    void *dst;        /* shared memory */
    const void *src;  /* device memory */
    int bytes, src_bytes; /* bytes past src_bytes are zero-filled */
    int group;        /* its commit group (1, 2, ...), or 0 while not committed */
};
struct async_state {
    std::vector<async_copy> copies; /* in issue order */
    int committed;                  /* commit groups so far */
};
/* The calling CUDA thread's state, emptied when its block starts. */
async_state &thread_async(void);

} /* namespace sl_emu */
#endif
