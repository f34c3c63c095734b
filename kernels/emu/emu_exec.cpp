/* emu_exec.cpp — runs kernel launches on the CPU: a fiber per CUDA thread, one block at a time
 * per OS thread of a pool, barriers and warp collectives between the fibers of a block, shared
 * memory, the watchdog, and the reports of what went wrong, at the kernel's source line.
 *
 * Scheduling: a block's fibers run one after another, each until it waits (barrier, warp
 * collective), yields (atomics, __nanosleep) or exits; the scheduler then goes on to the next
 * ready fiber. Blocks alternate between running their threads in ascending and descending order
 * (by block index and launch count), so that a missing barrier shows up as a read of poisoned
 * (NaN) shared memory in one order or the other.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda_emu.h"
#include "emu.h"
#include "emu_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define SL_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_EMU_ASAN 1
#endif
#endif
#ifdef SL_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* ---- the context switch (x86-64 System V) ------------------------------------------------
 * sl__emu_ctx_switch(save, load) pushes the callee-saved registers and the SSE/x87 control
 * words on the current stack, stores the stack pointer in *save, loads `load` and pops the
 * same from there. A new fiber's stack is laid out as if it had been switched away from, with
 * the return address pointing at sl__emu_ctx_start, which calls r13(r12). No system call: the
 * signal mask is per OS thread and stays as it is (ucontext saves it, hence its cost). */
extern "C" void sl__emu_ctx_switch(void **save_sp, void *load_sp);
extern "C" void sl__emu_ctx_start(void);
__asm__(".text\n"
        ".globl sl__emu_ctx_switch\n"
        ".hidden sl__emu_ctx_switch\n"
        ".type sl__emu_ctx_switch,@function\n"
        "sl__emu_ctx_switch:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  subq $8, %rsp\n"
        "  stmxcsr (%rsp)\n"
        "  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n"
        "  fldcw 4(%rsp)\n"
        "  addq $8, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size sl__emu_ctx_switch, .-sl__emu_ctx_switch\n"
        ".globl sl__emu_ctx_start\n"
        ".hidden sl__emu_ctx_start\n"
        ".type sl__emu_ctx_start,@function\n"
        "sl__emu_ctx_start:\n"
        "  .cfi_startproc\n"
        "  .cfi_undefined rip\n"
        "  movq %r12, %rdi\n"
        "  callq *%r13\n"
        "  ud2\n"
        "  .cfi_endproc\n"
        ".size sl__emu_ctx_start, .-sl__emu_ctx_start\n");

namespace sl_emu {

__thread const thread_view *cur;

namespace {

#ifdef SL_EMU_ASAN
constexpr size_t STACK = 256 << 10;
constexpr size_t REDZONE = 64; /* poisoned gap between shared allocations */
#else
constexpr size_t STACK = 64 << 10;
constexpr size_t REDZONE = 0;
#endif
constexpr size_t GUARD = 64 << 10; /* PROT_NONE below each stack: address space only, wide
                                      enough that a big frame cannot hop into the next stack */
constexpr size_t ARENA = 320 << 10; /* shared memory of one block, with room for redzones */
/* the watchdog's default (emu.h): wall time, so a loaded machine stretches it; under ASan a
 * long sampling launch took over 60 s while the machine also compiled */
#ifdef SL_EMU_ASAN
constexpr double DEFAULT_TIMEOUT = 200.0;
#else
constexpr double DEFAULT_TIMEOUT = 60.0;
#endif

enum class st : uint8_t { ready, bar, warp, done };

struct fiber {
    thread_view view;
    void *sp;
    char *stack; /* lowest usable byte; a PROT_NONE guard lies below */
    st state;
    int lane, warp;
    const char *what, *file; /* what it waits at, or its last yield; where */
    int line;
    int pred, bar_result;
    uint64_t value, result;
    int arg;
    void *fake_stack;
    async_state async; /* cp.async copies not yet waited for (emu_ptx.cpp) */
};

struct pending { /* a warp collective some lanes wait at */
    unsigned mask, arrived;
    int kind, width;
    const char *file;
    int line;
    const char *name;
    warp_exec_fn exec; /* W_EXEC: what the last lane runs */
};

struct launch_rec {
    launch_info li;
    long total;
    uint64_t seq;
    int n_workers;
    std::atomic<long> next{0}, done{0};
};

struct block {
    const launch_rec *L;
    uint3 idx;
    int n, n_done, nwarps;
    fiber *f;
    int bar_arrived, bar_kind;
    const char *bar_file;
    int bar_line;
    std::vector<std::vector<pending>> pend; /* per warp */
    std::vector<unsigned> exited, absent;   /* per warp: lanes done; lanes past blockDim */
    char *smem;
    size_t smem_used, smem_dyn, static_used;
    bool smem_optin; /* cudaFuncSetAttribute(MaxDynamicSharedMemorySize) was called */
    struct tag {
        const void *tag;
        size_t off, bytes;
    };
    std::vector<tag> tags;
};

struct worker {
    int id;
    std::vector<fiber> fibers;
    std::vector<char *> stacks;
    void *sched_sp;
    const void *sched_lo; /* the OS thread's own stack (ASan) */
    size_t sched_size;
    void *sched_fake;
    block b;
    std::atomic<bool> busy{false};
};

struct pool_t {
    std::mutex m, launch_m;
    std::condition_variable cv_work, cv_done;
    std::vector<worker *> ws;
    launch_rec *job = nullptr;
    uint64_t gen = 0, seq = 0;
    int active = 0, want = 0;
    bool started = false;
    double timeout = DEFAULT_TIMEOUT;
};

/* Never freed: worker threads wait on it until the process ends. */
pool_t *P = new pool_t;
pool_t *abandoned; /* a forked child's copy of the parent's pool (its threads are gone) */

__thread worker *tls_w;
__thread fiber *tls_f;

#ifdef SL_EMU_ASAN
void asan_start(void **fake, const void *lo, size_t size) {
    __sanitizer_start_switch_fiber(fake, lo, size);
}
void asan_finish(void *fake, const void **lo, size_t *size) {
    __sanitizer_finish_switch_fiber(fake, lo, size);
}
#else
void asan_start(void **, const void *, size_t) {}
void asan_finish(void *, const void **, size_t *) {}
#endif
void asan_poison(void *p, size_t n) {
#ifdef SL_EMU_ASAN
    ASAN_POISON_MEMORY_REGION(p, n);
#else
    (void)p, (void)n;
#endif
}
void asan_unpoison(void *p, size_t n) {
#ifdef SL_EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
    (void)p, (void)n;
#endif
}

/* ---- reports --------------------------------------------------------------------------------- */

std::mutex report_m; /* the first error report wins; the process aborts after it */

const char *op_name(int kind) {
    static const char *const names[] = {
        "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
        "__ballot_sync", "__any_sync", "__all_sync", "__reduce_add_sync", "__reduce_min_sync",
        "__reduce_max_sync", "__reduce_min_sync", "__reduce_max_sync", "__reduce_and_sync",
        "__reduce_or_sync", "__reduce_xor_sync"};
    return kind >= 0 && kind < (int)(sizeof names / sizeof *names) ? names[kind] : "?";
}
const char *bar_name(int kind) {
    static const char *const names[] = {"__syncthreads", "__syncthreads_count",
                                        "__syncthreads_and", "__syncthreads_or"};
    return names[kind & 3];
}

bool same_loc(const char *f1, int l1, const char *f2, int l2) {
    return l1 == l2 && (f1 == f2 || (f1 && f2 && strcmp(f1, f2) == 0));
}

void print_launch(const launch_rec &L) {
    const launch_info &li = L.li;
    fprintf(stderr,
            "  kernel %s, launched at %s:%d with grid (%u,%u,%u), block (%u,%u,%u), "
            "%zu bytes of dynamic shared memory\n",
            li.kernel, li.file, li.line, li.grid.x, li.grid.y, li.grid.z, li.block.x, li.block.y,
            li.block.z, li.smem);
}

/* One line per run of consecutive threads in the same state at the same place. */
void dump_block(const block &b) {
    fprintf(stderr, "  block (%u,%u,%u): %d of %d threads exited\n", b.idx.x, b.idx.y, b.idx.z,
            b.n_done, b.n);
    int lines = 0;
    for (int i = 0; i < b.n;) {
        const fiber &f = b.f[i];
        int j = i + 1;
        while (j < b.n && b.f[j].state == f.state && b.f[j].what == f.what &&
               same_loc(b.f[j].file, b.f[j].line, f.file, f.line))
            j++;
        if (++lines > 48) {
            fprintf(stderr, "    ...\n");
            break;
        }
        const char *s = f.state == st::ready ? "running, last at" : "waiting at";
        if (j - i == 1)
            fprintf(stderr, "    thread %d (%u,%u,%u)", i, f.view.thread_idx.x, f.view.thread_idx.y,
                    f.view.thread_idx.z);
        else
            fprintf(stderr, "    threads %d-%d", i, j - 1);
        if (f.state == st::done)
            fprintf(stderr, ": exited\n");
        else if (!f.what)
            fprintf(stderr, ": not yet at a barrier, warp collective or atomic\n");
        else
            fprintf(stderr, ": %s %s, %s:%d\n", s, f.what, f.file ? f.file : "?", f.line);
        i = j;
    }
}

[[noreturn]] void fail(const block *b, const fiber *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fail(const block *b, const fiber *f, const char *fmt, ...) {
    report_m.lock(); /* never unlocked: we abort */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sluice-emu: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (b) {
        print_launch(*b->L);
        if (f)
            fprintf(stderr, "  thread (%u,%u,%u) of block (%u,%u,%u), warp %d lane %d\n",
                    f->view.thread_idx.x, f->view.thread_idx.y, f->view.thread_idx.z, b->idx.x,
                    b->idx.y, b->idx.z, f->warp, f->lane);
        dump_block(*b);
    }
    fflush(stderr);
    abort();
}

/* The kernel context of a crash or an ASan report on a worker thread. */
void print_context(const char *headline) {
    worker *w = tls_w;
    if (!w || !w->busy.load()) return;
    const block &b = w->b;
    fprintf(stderr, "sluice-emu: %s\n", headline);
    print_launch(*b.L);
    if (const fiber *f = tls_f) {
        fprintf(stderr, "  thread (%u,%u,%u) of block (%u,%u,%u), ", f->view.thread_idx.x,
                f->view.thread_idx.y, f->view.thread_idx.z, b.idx.x, b.idx.y, b.idx.z);
        if (f->what)
            fprintf(stderr, "last synchronized at %s, %s:%d\n", f->what, f->file ? f->file : "?",
                    f->line);
        else
            fprintf(stderr, "before its first barrier, warp collective or atomic\n");
    }
    fflush(stderr);
}

#ifdef SL_EMU_ASAN
void asan_report(const char *report) {
    (void)report;
    print_context("the AddressSanitizer error above happened in a kernel:");
}
#else
void on_fatal_signal(int sig, siginfo_t *si, void *) {
    char msg[160];
    const fiber *f = tls_f;
    const char *addr = (const char *)si->si_addr;
    if (sig == SIGSEGV && f && addr >= f->stack - GUARD && addr < f->stack)
        snprintf(msg, sizeof msg, "stack overflow: a CUDA thread used more than %zu KiB of stack:",
                 STACK >> 10);
    else
        snprintf(msg, sizeof msg, "fatal signal %d (%s) in a kernel:", sig, strsignal(sig));
    print_context(msg);
    /* SA_RESETHAND restored the default action: the fault recurs and ends the process */
}
#endif

/* ---- fibers ---------------------------------------------------------------------------------- */

void *make_context(char *stack, void (*fn)(void *), void *arg) {
    uintptr_t top = ((uintptr_t)stack + STACK) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 64);
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    sp[0] = mxcsr | ((uint64_t)fpucw << 32);
    sp[1] = 0;                       /* r15 */
    sp[2] = 0;                       /* r14 */
    sp[3] = (uint64_t)(uintptr_t)fn; /* r13 */
    sp[4] = (uint64_t)(uintptr_t)arg; /* r12 */
    sp[5] = 0;                       /* rbx */
    sp[6] = 0;                       /* rbp: ends frame-pointer stack walks */
    sp[7] = (uint64_t)(uintptr_t)&sl__emu_ctx_start;
    return sp;
}

void resume(worker &w, fiber &f) {
    tls_f = &f;
    cur = &f.view;
    asan_start(&w.sched_fake, f.stack, STACK);
    sl__emu_ctx_switch(&w.sched_sp, f.sp);
    asan_finish(w.sched_fake, nullptr, nullptr);
    tls_f = nullptr;
    cur = nullptr;
}

void park(fiber &f) {
    worker &w = *tls_w;
    asan_start(&f.fake_stack, w.sched_lo, w.sched_size);
    sl__emu_ctx_switch(&f.sp, w.sched_sp);
    asan_finish(f.fake_stack, &w.sched_lo, &w.sched_size);
}

bool complete(const block &b, int warp, const pending &p) {
    return ((p.arrived | b.exited[warp] | b.absent[warp]) & p.mask) == p.mask;
}

/* The last lane of a collective computes every lane's result and wakes them. */
void finish(block &b, int warp, size_t pi) {
    pending p = b.pend[warp][pi];
    b.pend[warp].erase(b.pend[warp].begin() + (long)pi);
    fiber *lanes = b.f + warp * 32;
    if (p.kind == W_EXEC) {
        /* .sync.aligned: every lane of the warp executes it, none may have exited */
        const unsigned missing = ~p.arrived;
        if (missing) {
            const int l = __builtin_ctz(missing);
            fiber *t = tls_f;
            fail(&b, t,
                 "%s at %s:%d: lane %d of warp %d %s; every lane of the warp must execute it "
                 "(.sync.aligned)",
                 p.name, p.file, p.line, l, warp,
                 (b.absent[warp] >> l & 1) ? "does not exist (blockDim is not a multiple of 32)"
                                           : "has exited");
        }
        void *records[32];
        for (int l = 0; l < 32; l++) records[l] = (void *)(uintptr_t)lanes[l].value;
        p.exec(records, p.file, p.line);
        for (int l = 0; l < 32; l++) lanes[l].state = st::ready;
        return;
    }
    uint64_t agg = 0;
    bool first = true;
    for (int l = 0; l < 32; l++) {
        if (!(p.arrived >> l & 1)) continue;
        uint64_t v = lanes[l].value;
        uint32_t u = (uint32_t)v;
        switch (p.kind) {
        case W_BALLOT: agg |= (uint64_t)(v != 0) << l; break;
        case W_ANY: agg |= v != 0; break;
        case W_ALL: agg = first ? v != 0 : (agg && v != 0); break;
        case W_RED_ADD: agg = (uint32_t)(agg + u); break;
        case W_RED_MIN_U: agg = first || u < (uint32_t)agg ? u : agg; break;
        case W_RED_MAX_U: agg = first || u > (uint32_t)agg ? u : agg; break;
        case W_RED_MIN_S: agg = first || (int32_t)u < (int32_t)agg ? u : agg; break;
        case W_RED_MAX_S: agg = first || (int32_t)u > (int32_t)agg ? u : agg; break;
        case W_RED_AND: agg = first ? u : (agg & u); break;
        case W_RED_OR: agg |= u; break;
        case W_RED_XOR: agg ^= u; break;
        default: break;
        }
        first = false;
    }
    for (int l = 0; l < 32; l++) {
        if (!(p.arrived >> l & 1)) continue;
        fiber &t = lanes[l];
        int seg = l & ~(p.width - 1), src = l;
        switch (p.kind) {
        case W_SHFL: src = seg + (t.arg & (p.width - 1)); break;
        case W_SHFL_UP: src = t.arg >= 0 && l - t.arg >= seg ? l - t.arg : l; break;
        case W_SHFL_DOWN: src = t.arg >= 0 && l + t.arg < seg + p.width ? l + t.arg : l; break;
        case W_SHFL_XOR: src = (l ^ t.arg) < seg + p.width ? (l ^ t.arg) : l; break;
        default: break;
        }
        if (p.kind >= W_SHFL && p.kind <= W_SHFL_XOR) {
            if (src < 0 || src > 31 || !(p.arrived >> src & 1)) {
                const char *why = src < 0 || src > 31 || (b.absent[warp] >> src & 1)
                                      ? "does not exist (blockDim is not a multiple of 32)"
                                  : (b.exited[warp] >> src & 1) ? "has exited"
                                                                 : "is not in the mask";
                fail(&b, &t, "%s at %s:%d: lane %d reads lane %d, which %s (mask 0x%08x)",
                     op_name(p.kind), t.file, t.line, l, src, why, p.mask);
            }
            t.result = lanes[src].value;
        } else {
            t.result = agg;
        }
        t.state = st::ready;
    }
}

void thread_exit(block &b, fiber &f) {
    f.state = st::done;
    f.what = nullptr;
    b.n_done++;
    if (b.bar_arrived)
        fail(&b, &f,
             "divergent __syncthreads: thread (%u,%u,%u) exited while %d thread(s) wait at %s, "
             "%s:%d; the barrier can never complete",
             f.view.thread_idx.x, f.view.thread_idx.y, f.view.thread_idx.z, b.bar_arrived,
             bar_name(b.bar_kind), b.bar_file, b.bar_line);
    b.exited[f.warp] |= 1u << f.lane;
    auto &pl = b.pend[f.warp];
    for (size_t i = 0; i < pl.size();) {
        if (complete(b, f.warp, pl[i])) finish(b, f.warp, i);
        else i++;
    }
}

void fiber_main(void *arg) {
    fiber &f = *static_cast<fiber *>(arg);
    worker &w = *tls_w;
    asan_finish(nullptr, &w.sched_lo, &w.sched_size);
    w.b.L->li.run(w.b.L->li.job);
    thread_exit(w.b, f);
    asan_start(nullptr, w.sched_lo, w.sched_size); /* this fiber's stack is done with */
    void *unused;
    sl__emu_ctx_switch(&unused, w.sched_sp);
    __builtin_unreachable();
}

/* No thread can move: name the collectives that wait on each other. */
[[noreturn]] void stuck(const block &b) {
    for (int w = 0; w < b.nwarps; w++) {
        const auto &pl = b.pend[(size_t)w];
        for (size_t i = 0; i < pl.size(); i++)
            for (size_t j = i + 1; j < pl.size(); j++)
                if (pl[i].mask & pl[j].mask)
                    fail(&b, nullptr,
                         "mismatched warp collectives in warp %d: lanes 0x%08x wait at %s with "
                         "mask 0x%08x, %s:%d, and lanes 0x%08x at %s with mask 0x%08x, %s:%d",
                         w, pl[i].arrived, pl[i].name, pl[i].mask, pl[i].file,
                         pl[i].line, pl[j].arrived, pl[j].name, pl[j].mask, pl[j].file,
                         pl[j].line);
    }
    fail(&b, nullptr, "deadlock: no thread of the block can proceed (%s)",
         b.bar_arrived ? "threads wait at a block barrier that others cannot reach"
                       : "lanes wait at warp collectives that others cannot reach");
}

void ensure_fibers(worker &w, int n) {
    if ((int)w.stacks.size() < n) {
        size_t per = GUARD + STACK, cnt = (size_t)n - w.stacks.size();
        char *m = (char *)mmap(nullptr, per * cnt, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            fprintf(stderr, "sluice-emu: error: cannot map %zu fiber stacks\n", cnt);
            abort();
        }
        for (size_t i = 0; i < cnt; i++) {
            mprotect(m + i * per, GUARD, PROT_NONE); /* a stack overflow faults here */
            w.stacks.push_back(m + i * per + GUARD);
        }
    }
    if ((int)w.fibers.size() < n) w.fibers.resize((size_t)n);
}

void run_block(worker &w, const launch_rec &L, long linear) {
    const dim3 g = L.li.grid, bd = L.li.block;
    block &b = w.b;
    b.L = &L;
    b.idx = uint3{(unsigned)(linear % g.x), (unsigned)(linear / g.x % g.y),
                  (unsigned)(linear / ((long)g.x * g.y))};
    b.n = (int)(bd.x * bd.y * bd.z);
    b.n_done = 0;
    b.nwarps = (b.n + 31) / 32;
    b.bar_arrived = 0;
    b.pend.resize((size_t)b.nwarps);
    for (auto &p : b.pend) p.clear();
    b.exited.assign((size_t)b.nwarps, 0);
    b.absent.assign((size_t)b.nwarps, 0);
    if (b.n % 32) b.absent[(size_t)b.nwarps - 1] = ~0u << (b.n % 32);

    /* shared memory: the dynamic part first, static SL_SHARED variables after it as met */
    b.smem_dyn = L.li.smem;
    b.smem_optin = dynamic_smem_optin(L.li.fn);
    b.smem_used = b.smem_dyn;
    b.static_used = 0;
    b.tags.clear();
    asan_poison(b.smem, ARENA);
    asan_unpoison(b.smem, b.smem_dyn);
    memset(b.smem, 0xff, b.smem_dyn);

    ensure_fibers(w, b.n);
    b.f = w.fibers.data();
    for (int i = 0; i < b.n; i++) {
        fiber &f = b.f[i];
        f.view.thread_idx = uint3{(unsigned)i % bd.x, (unsigned)i / bd.x % bd.y,
                                  (unsigned)i / (bd.x * bd.y)};
        f.view.block_idx = b.idx;
        f.view.block_dim = bd;
        f.view.grid_dim = g;
        f.state = st::ready;
        f.lane = i % 32;
        f.warp = i / 32;
        f.what = nullptr;
        f.file = nullptr;
        f.line = 0;
        f.fake_stack = nullptr;
        f.async.copies.clear();
        f.async.committed = 0;
        f.stack = w.stacks[(size_t)i];
        /* frames a finished fiber left poisoned sit near the top of its stack */
        asan_unpoison(f.stack + STACK - (32 << 10), 32 << 10);
        f.sp = make_context(f.stack, fiber_main, &f);
    }
    const bool descending = ((uint64_t)linear ^ L.seq) & 1;
    while (b.n_done < b.n) {
        bool ran = false;
        for (int k = 0; k < b.n; k++) {
            fiber &f = b.f[descending ? b.n - 1 - k : k];
            if (f.state != st::ready) continue;
            resume(w, f);
            ran = true;
        }
        if (!ran) stuck(b);
    }
}

/* ---- the pool -------------------------------------------------------------------------------- */

void worker_main(worker *w) {
    tls_w = w;
#ifndef SL_EMU_ASAN
    /* room to report a fiber's stack overflow (the fault lands in a guard page) */
    stack_t ss = {};
    ss.ss_size = 64 << 10;
    ss.ss_sp = malloc(ss.ss_size);
    sigaltstack(&ss, nullptr);
#endif
    w->b.smem = (char *)mmap(nullptr, ARENA, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->b.smem == MAP_FAILED) abort();
    pool_t *p = P;
    uint64_t seen = 0;
    for (;;) {
        launch_rec *L;
        {
            /* a worker the launch does not wait for must not touch it: decide under the lock */
            std::unique_lock<std::mutex> lk(p->m);
            p->cv_work.wait(lk, [&] { return p->gen != seen; });
            seen = p->gen;
            L = p->job;
            if (!L || w->id >= L->n_workers) continue;
        }
        w->busy = true;
        for (long i; (i = L->next.fetch_add(1)) < L->total;) {
            run_block(*w, *L, i);
            L->done.fetch_add(1);
        }
        w->busy = false;
        std::lock_guard<std::mutex> lk(p->m);
        if (--p->active == 0) p->cv_done.notify_all();
    }
}

void child_after_fork(void) {
    abandoned = P;
    P = new pool_t;
    P->want = abandoned->want;
    P->timeout = abandoned->timeout;
}

int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 16 ? 16 : (int)n;
}

void start_pool(void) {
    if (P->started) return;
    static bool once;
    if (!once) {
        once = true;
        pthread_atfork(nullptr, nullptr, child_after_fork);
#ifdef SL_EMU_ASAN
        __asan_set_error_report_callback(asan_report);
#else
        for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) {
            struct sigaction old, sa = {};
            sigaction(sig, nullptr, &old);
            if (old.sa_handler != SIG_DFL) continue; /* the program has its own */
            sa.sa_sigaction = on_fatal_signal;
            sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
            sigaction(sig, &sa, nullptr);
        }
#endif
    }
    int n = P->want > 0 ? P->want : default_threads();
    for (int i = 0; i < n; i++) {
        worker *w = new worker;
        w->id = i;
        P->ws.push_back(w);
        std::thread(worker_main, w).detach();
    }
    P->started = true;
}

[[noreturn]] void hang_report(const launch_rec &L, double timeout) {
    report_m.lock();
    fprintf(stderr,
            "sluice-emu: error: hung kernel: %s did not finish within %.1f s (a spin loop "
            "without an atomic or __nanosleep, or threads waiting on each other)\n",
            L.li.kernel, timeout);
    print_launch(L);
    fprintf(stderr, "  %ld of %ld blocks finished; the running ones:\n", L.done.load(), L.total);
    /* racy reads of the running blocks: good enough for a report before abort */
    for (worker *w : P->ws)
        if (w->busy.load() && w->b.L == &L) dump_block(w->b);
    fflush(stderr);
    abort();
}

} /* namespace */

/* ---- the interface of cuda_emu.h ------------------------------------------------------------- */

int block_barrier(int kind, int pred, const char *file, int line) {
    fiber *fp = tls_f;
    if (!fp) trap(bar_name(kind), file, line);
    fiber &f = *fp;
    block &b = tls_w->b;
    if (b.n_done)
        fail(&b, &f,
             "divergent __syncthreads: %s at %s:%d is reached after %d thread(s) of the block "
             "exited; the barrier can never complete",
             bar_name(kind), file, line, b.n_done);
    if (b.bar_arrived == 0) {
        b.bar_kind = kind;
        b.bar_file = file;
        b.bar_line = line;
    } else if (kind != b.bar_kind || !same_loc(file, line, b.bar_file, b.bar_line)) {
        fail(&b, &f,
             "divergent __syncthreads: thread (%u,%u,%u) reached %s at %s:%d while %d thread(s) "
             "wait at %s, %s:%d",
             f.view.thread_idx.x, f.view.thread_idx.y, f.view.thread_idx.z, bar_name(kind), file,
             line, b.bar_arrived, bar_name(b.bar_kind), b.bar_file, b.bar_line);
    }
    f.pred = pred;
    f.state = st::bar;
    f.what = bar_name(kind);
    f.file = file;
    f.line = line;
    if (++b.bar_arrived < b.n) {
        park(f);
        return f.bar_result;
    }
    int agg = kind == BAR_AND ? 1 : 0;
    for (int i = 0; i < b.n; i++) {
        int p = b.f[i].pred;
        agg = kind == BAR_COUNT ? agg + p : kind == BAR_AND ? (agg && p) : (agg || p);
    }
    if (kind == BAR_SYNC) agg = 1;
    for (int i = 0; i < b.n; i++) {
        b.f[i].bar_result = agg;
        b.f[i].state = st::ready;
    }
    b.bar_arrived = 0;
    return agg;
}

namespace {

uint64_t collective(int kind, unsigned mask, uint64_t value, int arg, int width,
                    const char *name, warp_exec_fn exec, const char *file, int line) {
    fiber *fp = tls_f;
    if (!fp) trap(name, file, line);
    fiber &f = *fp;
    block &b = tls_w->b;
    const unsigned bit = 1u << f.lane;
    if (!(mask & bit))
        fail(&b, &f, "%s at %s:%d: the mask 0x%08x does not include the calling lane %d",
             name, file, line, mask, f.lane);
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail(&b, &f, "%s at %s:%d: width %d is not a power of 2 in [1, 32]", name, file, line,
             width);
    /* join the pending collective of this kind and mask that still waits for this lane; with
     * independent thread scheduling a lane may meet other collectives first (e.g. one half-warp
     * at __syncwarp while the other finishes its own shuffle), so differing masks are only an
     * error once nothing can move (the deadlock report then names them) */
    auto &pl = b.pend[(size_t)f.warp];
    size_t pi = pl.size();
    for (size_t i = 0; i < pl.size() && pi == pl.size(); i++)
        if (pl[i].mask == mask && pl[i].kind == kind && pl[i].width == width &&
            pl[i].exec == exec && !(pl[i].arrived & bit))
            pi = i;
    if (pi == pl.size()) pl.push_back(pending{mask, 0, kind, width, file, line, name, exec});
    f.value = value;
    f.arg = arg;
    f.state = st::warp;
    f.what = name;
    f.file = file;
    f.line = line;
    pl[pi].arrived |= bit;
    if (complete(b, f.warp, pl[pi])) finish(b, f.warp, pi);
    else park(f);
    return f.result;
}

} /* namespace */

uint64_t warp_op(int kind, unsigned mask, uint64_t value, int arg, int width, const char *file,
                 int line) {
    return collective(kind, mask, value, arg, width, op_name(kind), nullptr, file, line);
}

void warp_collective(const char *name, warp_exec_fn fn, void *record, const char *file,
                     int line) {
    collective(W_EXEC, 0xffffffffu, (uint64_t)(uintptr_t)record, 0, 32, name, fn, file, line);
}

void kernel_fail(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    worker *w = tls_w;
    if (!tls_f || !w) fail(nullptr, nullptr, "%s (outside a kernel)", msg);
    fail(&w->b, tls_f, "%s", msg);
}

bool in_shared(const void *p, size_t n) {
    if (!tls_f) return false;
    const block &b = tls_w->b;
    const char *c = (const char *)p;
    return c >= b.smem && c <= b.smem + b.smem_used && n <= (size_t)(b.smem + b.smem_used - c);
}

async_state &thread_async(void) {
    if (!tls_f) trap("cp.async", nullptr, 0);
    return tls_f->async;
}

unsigned active_mask(void) {
    fiber *f = tls_f;
    if (!f) return 0;
    const block &b = tls_w->b;
    return ~(b.exited[(size_t)f->warp] | b.absent[(size_t)f->warp]);
}

void yield(const char *file, int line) {
    fiber *f = tls_f;
    if (!f) return;
    f->what = "an atomic or __nanosleep";
    f->file = file;
    f->line = line;
    park(*f);
}

void *shared_dynamic(void) {
    if (!tls_f) trap("SL_DYNAMIC_SHARED", nullptr, 0);
    return tls_w->b.smem;
}

void *shared_static(const void *tag, size_t bytes, size_t align, const char *name,
                    const char *file, int line) {
    if (!tls_f) trap("SL_SHARED", file, line);
    block &b = tls_w->b;
    for (const block::tag &t : b.tags)
        if (t.tag == tag) return b.smem + t.off;
    /* aligned to its type and, below 16 bytes, deliberately no more (an address that is an odd
     * multiple of align): a GPU guarantees no more either, so a vector access (float4,
     * ldmatrix, cp.async) to an array of a smaller type shows up here, not only on some GPU */
    size_t off = (b.smem_used + REDZONE + 2 * align - 1) / (2 * align) * (2 * align);
    if (align < 16) off += align;
    if (b.static_used + bytes > SMEM_STATIC_MAX ||
        b.smem_dyn + b.static_used + bytes > SMEM_OPTIN || off + bytes > ARENA)
        fail(&b, tls_f,
             "shared memory: %s (%zu bytes) at %s:%d takes the block's static shared memory to "
             "%zu bytes (limit %zu) and its total, with %zu dynamic bytes, past %zu",
             name, bytes, file, line, b.static_used + bytes, SMEM_STATIC_MAX, b.smem_dyn,
             SMEM_OPTIN);
    /* without the opt-in a GPU allows static + dynamic up to 48 KiB in all, and refuses the
     * launch past it (invalid argument): the opt-in is needed whenever the sum passes 48 KiB */
    if (!b.smem_optin && b.smem_dyn + b.static_used + bytes > SMEM_DYNAMIC_DEFAULT)
        fail(&b, tls_f,
             "shared memory: %s (%zu bytes) at %s:%d takes the block's static (%zu bytes) plus "
             "dynamic (%zu bytes) shared memory past %zu without "
             "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize): a GPU refuses "
             "this launch (invalid argument)",
             name, bytes, file, line, b.static_used + bytes, b.smem_dyn, SMEM_DYNAMIC_DEFAULT);
    asan_unpoison(b.smem + off, bytes);
    memset(b.smem + off, 0xff, bytes);
    b.tags.push_back(block::tag{tag, off, bytes});
    b.smem_used = off + bytes;
    b.static_used += bytes;
    return b.smem + off;
}

void trap(const char *what, const char *file, int line) {
    worker *w = tls_w;
    if (!tls_f || !w)
        fail(nullptr, nullptr, "%s at %s:%d called outside a kernel", what, file ? file : "?",
             line);
    fail(&w->b, tls_f, "%s at %s:%d", what, file ? file : "?", line);
}

int pool_threads(void) {
    return P->started ? (int)P->ws.size() : P->want > 0 ? P->want : default_threads();
}

void launch(const launch_info &li) {
    const dim3 g = li.grid, bd = li.block;
    const uint64_t threads = (uint64_t)bd.x * bd.y * bd.z;
    if (!g.x || !g.y || !g.z || !bd.x || !bd.y || !bd.z || threads > 1024 || bd.x > 1024 ||
        bd.y > 1024 || bd.z > 64 || g.x > INT_MAX || g.y > 65535 || g.z > 65535) {
        set_error(cudaErrorInvalidConfiguration);
        return;
    }
    if (li.smem > max_dynamic_smem(li.fn)) {
        set_error(cudaErrorInvalidValue);
        return;
    }
    if (!stream_valid(li.stream)) {
        set_error(cudaErrorInvalidResourceHandle);
        return;
    }
    for (int i = 0; i < li.n_ptrs; i++) {
        if (li.ptrs[i] && device_bytes_from(li.ptrs[i]) < 0) {
            report_m.lock();
            fprintf(stderr,
                    "sluice-emu: error: argument %d of kernel %s (launched at %s:%d) is %p, which "
                    "is not device memory (cudaMalloc) nor NULL\n",
                    li.ptr_index[i] + 1, li.kernel, li.file, li.line, li.ptrs[i]);
            fflush(stderr);
            abort();
        }
    }
    std::lock_guard<std::mutex> one_at_a_time(P->launch_m);
    pool_t *p = P;
    launch_rec L;
    L.li = li;
    L.total = (long)g.x * g.y * g.z;
    {
        std::unique_lock<std::mutex> lk(p->m);
        start_pool();
        L.seq = p->seq++;
        L.n_workers = (int)std::min<long>((long)p->ws.size(), L.total);
        p->job = &L;
        p->active = L.n_workers;
        p->gen++;
        p->cv_work.notify_all();
        auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(p->timeout));
        if (!p->cv_done.wait_until(lk, deadline, [&] { return p->active == 0; }))
            hang_report(L, p->timeout);
        p->job = nullptr;
    }
}

} /* namespace sl_emu */

extern "C" void sl_emu_set_timeout(double seconds) {
    sl_emu::P->timeout = seconds > 0 ? seconds : sl_emu::DEFAULT_TIMEOUT;
}
extern "C" void sl_emu_set_threads(int n) { sl_emu::P->want = n > 0 ? n : 0; }
extern "C" int sl_emu_threads(void) { return sl_emu::pool_threads(); }

#ifdef SL_EMU_ASAN
/* Fibers need this (DESIGN.md); ASAN_OPTIONS set at run time still take precedence. */
extern "C" const char *__asan_default_options(void) { return "detect_stack_use_after_return=0"; }
#endif
