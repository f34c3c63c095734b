/* test_idmap.c — base/idmap: insert, find, remove and iteration against a plain array, through
 * several growths, with sequential ids (the scheduler's) and random 64-bit ones. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../base/base.h"
#include "../../base/idmap.h"
#include "../test.h"

typedef struct rec {
    int payload;
    sl_idmap_node node;
} rec;

static void mark(sl_idmap_node *n, void *ctx) {
    rec *r = SL_IDMAP_ENTRY(n, rec, node);
    int *seen = ctx;
    seen[r->payload]++;
}

static void run(int N, int random_ids, uint64_t seed) {
    sl_rng g;
    sl_rng_seed(&g, seed);
    rec *recs = sl_xcalloc((size_t)N, sizeof *recs);
    int *in = sl_xcalloc((size_t)N, sizeof *in), *seen = sl_xcalloc((size_t)N, sizeof *seen);
    sl_idmap m;
    sl_idmap_init(&m);
    for (int i = 0; i < N; i++) {
        recs[i].payload = i;
        recs[i].node.id = random_ids ? sl_rng_u64(&g) | 1 : (uint64_t)i + 1;
    }
    /* random inserts and removes; the array says what must be there */
    size_t n = 0;
    for (int step = 0; step < 4 * N; step++) {
        int i = (int)(sl_rng_u64(&g) % (uint64_t)N);
        if (in[i]) {
            sl_idmap_remove(&m, &recs[i].node);
            in[i] = 0, n--;
        } else {
            sl_idmap_insert(&m, &recs[i].node);
            in[i] = 1, n++;
        }
        ASSERT_EQ(m.n, n);
    }
    for (int i = 0; i < N; i++) {
        sl_idmap_node *f = sl_idmap_find(&m, recs[i].node.id);
        if (in[i]) {
            ASSERT(f == &recs[i].node);
            ASSERT_EQ(SL_IDMAP_ENTRY(f, rec, node)->payload, i);
        } else {
            ASSERT(f == NULL);
        }
    }
    sl_idmap_each(&m, mark, seen);
    for (int i = 0; i < N; i++) ASSERT_EQ(seen[i], in[i]);
    ASSERT(sl_idmap_find(&m, 0) == NULL); /* never an id here */
    sl_idmap_free(&m);
    free(recs), free(in), free(seen);
}

int main(void) {
    run(10, 0, 1);
    run(5000, 0, 2);   /* sequential ids through several doublings */
    run(5000, 1, 3);   /* random ids */
    run(100000, 1, 4);
    printf("test_idmap: ok\n");
    return 0;
}
