#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "base.h"

/* Workers spin on the job generation for a short while before sleeping on the condvar: a
 * forward step issues several pool jobs per layer, microseconds apart, and a condvar wake-up
 * costs tens of microseconds each time. The spin is bounded so an idle pool sleeps (and does
 * not steal the cores from other processes, e.g. a benchmark's reference run). */
enum { SPIN_ITERS = 20000 };

struct sl_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    atomic_uint_fast64_t generation; /* bumped per job; workers wait for a new one */
    atomic_int pending;              /* workers still running the current job */
    atomic_int sleepers;             /* workers blocked on `start` */
    atomic_int quit;
    sl_pool_fn fn;
    void *ctx;
    int64_t n_items, chunk;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_chunk(sl_pool *p, int tid) {
    int64_t b = (int64_t)tid * p->chunk, e = b + p->chunk;
    if (e > p->n_items) e = p->n_items;
    if (b < e) p->fn(p->ctx, b, e, tid);
}

typedef struct { sl_pool *p; int tid; } worker_arg;

static void *worker(void *arg) {
    sl_pool *p = ((worker_arg *)arg)->p;
    int tid = ((worker_arg *)arg)->tid;
    free(arg);
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->quit) && spins < SPIN_ITERS) {
            cpu_relax();
            spins++;
        }
        if (g == seen && !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->start, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = g;
        run_chunk(p, tid);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

sl_pool *sl_pool_create(int n_threads) {
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads <= 0) n_threads = 1;
    sl_pool *p = sl_xcalloc(1, sizeof *p);
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = sl_xcalloc((size_t)n_threads, sizeof *p->threads);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *a = sl_xmalloc(sizeof *a);
        *a = (worker_arg){p, i};
        SL_CHECK(pthread_create(&p->threads[i], NULL, worker, a) == 0);
    }
    return p;
}

void sl_pool_destroy(sl_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int sl_pool_threads(const sl_pool *p) { return p->n; }

void sl_pool_run(sl_pool *p, sl_pool_fn fn, void *ctx, int64_t n, int64_t min_chunk) {
    if (n <= 0) return;
    if (min_chunk < 1) min_chunk = 1;
    int64_t chunk = (n + p->n - 1) / p->n;
    if (chunk < min_chunk) chunk = min_chunk;
    if (p->n == 1 || chunk >= n) {
        fn(ctx, 0, n, 0);
        return;
    }
    /* the job fields are published by the seq_cst increment of generation below */
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n;
    p->chunk = chunk;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->start);
        pthread_mutex_unlock(&p->mu);
    }
    run_chunk(p, 0);
    int spins = 0;
    while (atomic_load(&p->pending) > 0 && spins < SPIN_ITERS) {
        cpu_relax();
        spins++;
    }
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
