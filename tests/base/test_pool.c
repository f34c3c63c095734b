/* The worker pool: every item is processed exactly once, for many sizes and pool widths. */
#include <stdatomic.h>

#include "base/pool.h"
#include "tests/test.h"

typedef struct {
    atomic_int *hits;
    atomic_int calls;
    int n_threads;
} ctx_t;

static void job(void *p, int64_t b, int64_t e, int tid) {
    ctx_t *c = p;
    ASSERT(tid >= 0 && tid < c->n_threads);
    ASSERT(b < e);
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&c->hits[i], 1);
    atomic_fetch_add(&c->calls, 1);
}

int main(void) {
    int widths[] = {1, 2, 3, 7};
    for (int w = 0; w < 4; w++) {
        sl_pool *p = sl_pool_create(widths[w]);
        ASSERT_EQ(sl_pool_threads(p), widths[w]);
        for (int n = 0; n < 300; n += 7) {
            for (int min_chunk = 1; min_chunk <= 64; min_chunk *= 8) {
                atomic_int hits[300];
                for (int i = 0; i < 300; i++) atomic_init(&hits[i], 0);
                ctx_t c = {.hits = hits, .n_threads = widths[w]};
                atomic_init(&c.calls, 0);
                sl_pool_run(p, job, &c, n, min_chunk);
                for (int i = 0; i < 300; i++) ASSERT_EQ(atomic_load(&hits[i]), i < n ? 1 : 0);
                ASSERT(atomic_load(&c.calls) <= widths[w]);
            }
        }
        sl_pool_destroy(p);
    }
    printf("test_pool: ok\n");
    return 0;
}
