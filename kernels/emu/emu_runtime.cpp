/* emu_runtime.cpp — the CUDA runtime calls the project uses, on the CPU: one emulated device
 * ("sluice CUDA emulator", compute capability 9.0) whose memory is host memory.
 *
 * The prototypes are the CUDA toolkit's own (cuda_runtime_api.h), so the .cu files compile
 * against the real declarations; only emulated programs link this file (never with libcudart).
 * Work is synchronous: a launch, copy or memset has finished when the call returns, so streams
 * and events only need to exist and be valid. Device allocations are filled with 0xff bytes
 * (NaN as f32, f16 and bf16; -1 as integers) so that reading memory nobody wrote shows up.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <mutex>
#include <set>

#include "emu_internal.h"

struct CUstream_st {
    unsigned magic;
};
struct CUevent_st {
    double ms;
    int recorded;
};

namespace sl_emu {
namespace {

std::mutex m;                              /* guards everything below */
std::map<uintptr_t, size_t> allocs;        /* device allocations: start -> bytes */
std::set<const void *> streams, events;
std::map<const void *, size_t> dyn_smem;   /* kernel -> max dynamic shared memory */
thread_local cudaError_t last_error = cudaSuccess;

cudaError_t fail(cudaError_t e) {
    last_error = e;
    return e;
}

double now_ms(void) {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

/* Is [p, p + n) inside one device allocation? */
bool device_range(const void *p, size_t n) {
    int64_t avail = device_bytes_from(p);
    return avail >= 0 && (uint64_t)avail >= n;
}

size_t host_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && size > 0 ? (size_t)pages * (size_t)size : (size_t)16 << 30;
}

} /* namespace */

int64_t device_bytes_from(const void *p) {
    std::lock_guard<std::mutex> lk(m);
    uintptr_t a = (uintptr_t)p;
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin()) return -1;
    --it;
    if (a > it->first + it->second) return -1;
    return (int64_t)(it->first + it->second - a);
}

void set_error(cudaError_t e) { last_error = e; }

size_t max_dynamic_smem(const void *fn) {
    std::lock_guard<std::mutex> lk(m);
    auto it = dyn_smem.find(fn);
    return it == dyn_smem.end() ? SMEM_DYNAMIC_DEFAULT : it->second;
}

bool dynamic_smem_optin(const void *fn) {
    std::lock_guard<std::mutex> lk(m);
    return dyn_smem.count(fn) != 0;
}

int stream_valid(cudaStream_t s) {
    if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return 1;
    std::lock_guard<std::mutex> lk(m);
    return streams.count(s) != 0;
}

} /* namespace sl_emu */

using namespace sl_emu;

/* ---- errors ---------------------------------------------------------------------------------- */

cudaError_t cudaGetLastError(void) {
    cudaError_t e = sl_emu::last_error;
    sl_emu::last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return sl_emu::last_error; }

namespace {
struct err_text {
    cudaError_t e;
    const char *name, *text;
};
const err_text errors[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration",
     "invalid configuration argument"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle",
     "invalid resource handle"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection",
     "invalid copy direction for memcpy"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
};
} /* namespace */

const char *cudaGetErrorName(cudaError_t e) {
    for (const err_text &t : errors)
        if (t.e == e) return t.name;
    return "cudaErrorUnknown";
}
const char *cudaGetErrorString(cudaError_t e) {
    for (const err_text &t : errors)
        if (t.e == e) return t.text;
    return "unknown error";
}

/* ---- device ---------------------------------------------------------------------------------- */

cudaError_t cudaGetDeviceCount(int *count) {
    if (!count) return fail(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device) {
    if (!device) return fail(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
    return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    if (!p) return fail(cudaErrorInvalidValue);
    if (device != 0) return fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    strncpy(p->name, "sluice CUDA emulator", sizeof p->name - 1);
    p->totalGlobalMem = host_memory();
    p->sharedMemPerBlock = SMEM_STATIC_MAX;
    p->sharedMemPerBlockOptin = SMEM_OPTIN;
    p->sharedMemPerMultiprocessor = 228 * 1024;
    p->regsPerBlock = 65536;
    p->regsPerMultiprocessor = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024;
    p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = 65535;
    p->maxGridSize[2] = 65535;
    p->totalConstMem = 64 * 1024;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = pool_threads();
    p->maxThreadsPerMultiProcessor = 2048;
    p->maxBlocksPerMultiProcessor = 32;
    p->l2CacheSize = 50 << 20;
    p->memoryBusWidth = 5120;
    p->concurrentKernels = 1;
    p->unifiedAddressing = 1;
    p->cooperativeLaunch = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
    if (!value) return fail(cudaErrorInvalidValue);
    if (device != 0) return fail(cudaErrorInvalidDevice);
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)p.sharedMemPerBlockOptin; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    default: return fail(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value) {
    if (!func) return fail(cudaErrorInvalidValue);
    switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
        if (value < 0 || (size_t)value > SMEM_OPTIN) return fail(cudaErrorInvalidValue);
        {
            std::lock_guard<std::mutex> lk(sl_emu::m);
            sl_emu::dyn_smem[func] = (size_t)value;
        }
        return cudaSuccess;
    case cudaFuncAttributePreferredSharedMemoryCarveout:
        return value >= -1 && value <= 100 ? cudaSuccess : fail(cudaErrorInvalidValue);
    default: return fail(cudaErrorInvalidValue);
    }
}

/* ---- memory ---------------------------------------------------------------------------------- */

cudaError_t cudaMalloc(void **ptr, size_t size) {
    if (!ptr) return fail(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (size == 0) return cudaSuccess;
    void *p = nullptr;
    /* exactly `size` bytes: under ASan, the byte past the end is a redzone */
    if (posix_memalign(&p, 256, size) != 0) return fail(cudaErrorMemoryAllocation);
    memset(p, 0xff, size);
    std::lock_guard<std::mutex> lk(sl_emu::m);
    sl_emu::allocs[(uintptr_t)p] = size;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
    if (!ptr) return cudaSuccess;
    {
        std::lock_guard<std::mutex> lk(sl_emu::m);
        auto it = sl_emu::allocs.find((uintptr_t)ptr);
        if (it == sl_emu::allocs.end()) return fail(cudaErrorInvalidValue);
        sl_emu::allocs.erase(it);
    }
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t size) {
    if (!ptr) return fail(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (posix_memalign(ptr, 256, size ? size : 1) != 0) return fail(cudaErrorMemoryAllocation);
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *ptr) {
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
    if (!free_bytes || !total) return fail(cudaErrorInvalidValue);
    *total = host_memory();
    std::lock_guard<std::mutex> lk(sl_emu::m);
    size_t used = 0;
    for (const auto &a : sl_emu::allocs) used += a.second;
    *free_bytes = used < *total ? *total - used : 0;
    return cudaSuccess;
}

/* Stricter than CUDA on purpose: the device side of a copy must lie inside one allocation,
 * and the host side must not be device memory (swapped arguments). */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
    if (count == 0) return cudaSuccess;
    if (!dst || !src) return fail(cudaErrorInvalidValue);
    bool dd = device_bytes_from(dst) >= 0, sd = device_bytes_from(src) >= 0;
    bool want_dd, want_sd;
    switch (kind) {
    case cudaMemcpyHostToHost: want_dd = false, want_sd = false; break;
    case cudaMemcpyHostToDevice: want_dd = true, want_sd = false; break;
    case cudaMemcpyDeviceToHost: want_dd = false, want_sd = true; break;
    case cudaMemcpyDeviceToDevice: want_dd = true, want_sd = true; break;
    case cudaMemcpyDefault: want_dd = dd, want_sd = sd; break;
    default: return fail(cudaErrorInvalidMemcpyDirection);
    }
    if (want_dd != dd || want_sd != sd) return fail(cudaErrorInvalidValue);
    if ((dd && !device_range(dst, count)) || (sd && !device_range(src, count)))
        return fail(cudaErrorInvalidValue);
    memmove(dst, src, count);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
    if (!stream_valid(stream)) return fail(cudaErrorInvalidResourceHandle);
    return cudaMemcpy(dst, src, count, kind);
}

cudaError_t cudaMemset(void *dst, int value, size_t count) {
    if (count == 0) return cudaSuccess;
    if (!device_range(dst, count)) return fail(cudaErrorInvalidValue);
    memset(dst, value, count);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t count, cudaStream_t stream) {
    if (!stream_valid(stream)) return fail(cudaErrorInvalidResourceHandle);
    return cudaMemset(dst, value, count);
}

/* ---- streams and events ---------------------------------------------------------------------- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
    (void)flags;
    if (!stream) return fail(cudaErrorInvalidValue);
    cudaStream_t s = new CUstream_st{0x5157};
    std::lock_guard<std::mutex> lk(sl_emu::m);
    sl_emu::streams.insert(s);
    *stream = s;
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    {
        std::lock_guard<std::mutex> lk(sl_emu::m);
        if (!sl_emu::streams.erase(stream)) return fail(cudaErrorInvalidResourceHandle);
    }
    delete stream;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    return stream_valid(stream) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaStreamQuery(cudaStream_t stream) { return cudaStreamSynchronize(stream); }

namespace {
bool event_valid(cudaEvent_t e) {
    std::lock_guard<std::mutex> lk(sl_emu::m);
    return sl_emu::events.count(e) != 0;
}
} /* namespace */

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
    (void)flags;
    if (!stream_valid(stream) || !event_valid(event))
        return fail(cudaErrorInvalidResourceHandle);
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
    (void)flags;
    if (!event) return fail(cudaErrorInvalidValue);
    cudaEvent_t e = new CUevent_st{0, 0};
    std::lock_guard<std::mutex> lk(sl_emu::m);
    sl_emu::events.insert(e);
    *event = e;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
    {
        std::lock_guard<std::mutex> lk(sl_emu::m);
        if (!sl_emu::events.erase(event)) return fail(cudaErrorInvalidResourceHandle);
    }
    delete event;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    if (!stream_valid(stream) || !event_valid(event))
        return fail(cudaErrorInvalidResourceHandle);
    event->ms = now_ms();
    event->recorded = 1;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    return event_valid(event) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!ms) return fail(cudaErrorInvalidValue);
    if (!event_valid(start) || !event_valid(end)) return fail(cudaErrorInvalidResourceHandle);
    if (!start->recorded || !end->recorded) return fail(cudaErrorInvalidResourceHandle);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}
