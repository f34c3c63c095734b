/* test_emu.c — the CUDA emulator's self-tests (kernels in emu_selftest.cu).
 *
 * 1. Every intrinsic and runtime call against values worked out on the host.
 * 2. A block sum without its __syncthreads reads poisoned (NaN) shared memory; with it, is right.
 * 3. A cp.async destination read before its wait_group reads poisoned (NaN) shared memory.
 * 4. Each bug of the table below, run in a child process, must make the emulator report it —
 *    with the kernel's source line — and abort. Out-of-bounds accesses are AddressSanitizer's
 *    to find, so those cases run only in the ASan build.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"
#include "kernels/emu/emu.h"
#include "tests/test.h"

int sl_emu_selftest_run(void);
void sl_emu_selftest_block_sum(int barrier, int blocks, float *out);
int sl_emu_selftest_bad(int which, int run);
void sl_emu_selftest_cp_async(int wait, float *out);

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#else
#define HAVE_ASAN 0
#endif

typedef struct bad_case {
    const char *name;
    const char *expect[3]; /* in the report, besides "emu_selftest.cu:<line>" */
    int asan_only;
} bad_case;

/* the order of sl_emu_selftest_bad's cases */
static const bad_case g_bad[] = {
    {"a thread exits before __syncthreads", {"divergent __syncthreads", "sluice-emu: error"}, 0},
    {"__syncthreads on two different lines", {"divergent __syncthreads", "sluice-emu: error"}, 0},
    {"two warp masks at once", {"mismatched warp collectives", "sluice-emu: error"}, 0},
    {"a shuffle from an exited lane", {"which has exited", "sluice-emu: error"}, 0},
    {"a mask without the calling lane", {"does not include the calling lane"}, 0},
    {"__syncthreads against __syncwarp", {"deadlock", "waiting at __syncwarp"}, 0},
    {"a spin loop nobody ends", {"hung kernel", "bad_hang"}, 0},
    {"a global read past the allocation", {"heap-buffer-overflow", "bad_out_of_bounds"}, 1},
    {"a shared read past the array", {"use-after-poison", "bad_shared_out_of_bounds"}, 1},
    {"more than 48 KiB of static shared memory", {"shared memory: big"}, 0},
    {"__trap()", {"__trap()"}, 0},
    {"a host pointer as kernel argument", {"is not device memory"}, 0},
    {"mma.sync after a lane returned", {"mma.sync", "lane 3 of warp 0 has exited"}, 0},
    {"ldmatrix at a misaligned row", {"ldmatrix", "not 16-byte aligned"}, 0},
    {"ldmatrix from global memory", {"ldmatrix", "the block's shared memory"}, 0},
    {"a 16-byte cp.async into a uint16_t array", {"cp.async", "not 16-byte aligned"}, 0},
    {"cp.async past the end of an allocation", {"cp.async", "16 bytes of device memory"}, 0},
    {"embed: a token past the table", {"__trap()", "embed_kernel"}, 0},
    {"kv_write: a negative slot", {"__trap()", "kv_write_kernel"}, 0},
    {"cuBLAS on a host matrix", {"cublasSgemm", "does not lie in device memory"}, 0},
    {"static + dynamic shared memory past 48 KiB without the opt-in",
     {"shared memory: st", "without cudaFuncSetAttribute"}, 0},
    {"an L2 prefetch past the end of an allocation", {"cp.async.bulk.prefetch", "32 bytes of device memory"}, 0},
};
#define N_BAD (int)(sizeof g_bad / sizeof *g_bad)

/* Runs bad case i in a child; returns its stderr (caller frees) and sets *status. */
static char *run_child(int i, int *status) {
    int fd[2];
    ASSERT(pipe(fd) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        sl_emu_set_timeout(i == 6 ? 0.5 : 30.0);
        sl_emu_selftest_bad(i, 1);
        fprintf(stderr, "bad case %d returned: not caught\n", i);
        _exit(3);
    }
    close(fd[1]);
    size_t cap = 1 << 16, len = 0;
    char *out = sl_xmalloc(cap);
    for (;;) {
        struct pollfd p = {fd[0], POLLIN, 0};
        int r = poll(&p, 1, 60000);
        if (r == 0) { /* the emulator's own watchdog should have fired long before */
            kill(pid, SIGKILL);
            fprintf(stderr, "bad case %d: child still running after 60 s\n", i);
            abort();
        }
        if (len + 4096 > cap) out = realloc(out, cap *= 2);
        ASSERT(out != NULL);
        ssize_t n = read(fd[0], out + len, cap - len - 1);
        if (n <= 0) break;
        len += (size_t)n;
    }
    out[len] = 0;
    close(fd[0]);
    ASSERT(waitpid(pid, status, 0) == pid);
    return out;
}

static void test_bad_kernels(void) {
    int ran = 0;
    for (int i = 0; i < N_BAD; i++) {
        const bad_case *c = &g_bad[i];
        if (c->asan_only && !HAVE_ASAN) {
            printf("  skipped (needs ASan): %s\n", c->name);
            continue;
        }
        int status = 0;
        char *out = run_child(i, &status);
        int aborted = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0 &&
                                              WEXITSTATUS(status) != 3);
        int ok = aborted;
        for (int k = 0; k < 3 && c->expect[k]; k++) ok = ok && strstr(out, c->expect[k]);
        int line = sl_emu_selftest_bad(i, 0);
        char where[64];
        snprintf(where, sizeof where, "emu_selftest.cu:%d", line);
        if (line) ok = ok && strstr(out, where);
        if (!ok) {
            fprintf(stderr,
                    "bad case %d (%s) was not reported as expected (%s, expecting \"%s\"):\n"
                    "---- its stderr ----\n%s---- end ----\n",
                    i, c->name, aborted ? "aborted" : "did not abort", line ? where : "", out);
            abort();
        }
        /* the first line of the report, as an example of what a kernel author sees */
        const char *first = strstr(out, "ERROR: AddressSanitizer");
        if (!first) first = strstr(out, "sluice-emu: ");
        int flen = first ? (int)strcspn(first, "\n") : 0;
        printf("  caught: %s\n    %.*s\n", c->name, flen > 160 ? 160 : flen, first ? first : "");
        free(out);
        ran++;
    }
    printf("bad kernels: %d caught\n", ran);
}

static void test_missing_barrier(void) {
    enum { BLOCKS = 4 };
    float out[BLOCKS];
    sl_emu_selftest_block_sum(1, BLOCKS, out);
    for (int b = 0; b < BLOCKS; b++) ASSERT_NEAR(out[b], 256.0, 0, 0);
    sl_emu_selftest_block_sum(0, BLOCKS, out);
    int nan = 0;
    for (int b = 0; b < BLOCKS; b++) nan += out[b] != out[b];
    ASSERT(nan > 0); /* blocks of both thread orders ran: at least one read unwritten partials */
    printf("missing __syncthreads: %d of %d blocks read poisoned shared memory\n", nan, BLOCKS);
}

/* Reading a cp.async destination before the wait sees the poisoned shared memory. */
static void test_missing_wait(void) {
    float out[64];
    sl_emu_selftest_cp_async(1, out);
    for (int t = 0; t < 64; t++) ASSERT_NEAR(out[t], 4.0 * (t ^ 32) + 3.0, 0, 0);
    sl_emu_selftest_cp_async(0, out);
    int nan = 0;
    for (int t = 0; t < 64; t++) nan += out[t] != out[t];
    ASSERT(nan > 0);
    printf("missing cp.async wait: %d of 64 threads read poisoned shared memory\n", nan);
}

int main(void) {
    double t0 = sl_time_s();
    test_bad_kernels(); /* first: the children fork a process that has not started the pool */
    test_missing_barrier();
    test_missing_wait();
    int failures = sl_emu_selftest_run();
    ASSERT_EQ(failures, 0);
    printf("test_emu: ok (%d pool threads, %.1f s)\n", sl_emu_threads(), sl_time_s() - t0);
    return 0;
}
