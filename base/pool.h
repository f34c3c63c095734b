/* pool.h — a fixed pool of worker threads running parallel-for jobs.
 *
 * sl_pool_run(p, fn, ctx, n) calls fn(ctx, i, thread_index) for every i in [0, n), split in
 * contiguous chunks over the workers and the calling thread, and returns when all are done.
 * One job at a time: sl_pool_run is not reentrant and must be called from one thread only.
 * A pool of 1 thread runs everything inline on the caller.
 */
#ifndef SL_POOL_H
#define SL_POOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_pool sl_pool;
/* Range job: process items [begin, end) on worker `tid` (0 .. n_threads-1). */
typedef void (*sl_pool_fn)(void *ctx, int64_t begin, int64_t end, int tid);

/* n_threads <= 0 picks the number of online CPUs. Caller frees with sl_pool_destroy. */
sl_pool *sl_pool_create(int n_threads);
void sl_pool_destroy(sl_pool *p);
int sl_pool_threads(const sl_pool *p);
/* Splits [0, n) into at most n_threads chunks of at least min_chunk items (>= 1). */
void sl_pool_run(sl_pool *p, sl_pool_fn fn, void *ctx, int64_t n, int64_t min_chunk);

#ifdef __cplusplus
}
#endif
#endif
