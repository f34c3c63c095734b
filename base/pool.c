#include "pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "base.h"

struct sl_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    uint64_t generation; /* bumped per job; workers wait for a new one */
    int pending;         /* workers still running the current job */
    int quit;
    sl_pool_fn fn;
    void *ctx;
    int64_t n_items, chunk;
};

static void run_chunk(sl_pool *p, int tid) {
    int64_t b = (int64_t)tid * p->chunk, e = b + p->chunk;
    if (e > p->n_items) e = p->n_items;
    if (b < e) p->fn(p->ctx, b, e, tid);
}

static void *worker(void *arg) {
    sl_pool *p = arg;
    int tid;
    pthread_mutex_lock(&p->mu);
    tid = p->pending++; /* creation order gives ids 1..n-1 (see sl_pool_create) */
    pthread_cond_signal(&p->done);
    uint64_t seen = p->generation;
    for (;;) {
        while (p->generation == seen && !p->quit) pthread_cond_wait(&p->start, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_chunk(p, tid);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
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
    p->pending = 1; /* the caller is thread 0 */
    for (int i = 1; i < n_threads; i++) {
        SL_CHECK(pthread_create(&p->threads[i], NULL, worker, p) == 0);
        pthread_mutex_lock(&p->mu);
        while (p->pending != i + 1) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    p->pending = 0;
    return p;
}

void sl_pool_destroy(sl_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n;
    p->chunk = chunk;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    run_chunk(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
