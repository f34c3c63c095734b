/* Block manager and prefix cache: exhaustion without partial allocation, refcounts, prefix
 * hits and their limits, duplicate registration, LRU eviction order (oldest prefix first,
 * deepest block first), collisions that must not hit, the cache switched off. The full
 * consistency check runs after every operation. */
#include "scheduler/block.h"
#include "tests/test.h"

enum { BS = 4 };

static sl_block_mgr *bm;
static sl_block_table *live[16];
static int n_live;

static void check(void) {
    char err[SL_ERRMSG] = "";
    int rc = sl_block_mgr_check(bm, (const sl_block_table *const *)live, n_live, err);
    if (rc) fprintf(stderr, "invariant: %s\n", err);
    ASSERT_EQ(rc, 0);
}

static void setup(int n_blocks, bool cache, uint64_t (*hash_fn)(uint64_t, const int32_t *, int)) {
    sl_block_opts o = {.n_blocks = n_blocks, .block_size = BS, .prefix_cache = cache, .hash_fn = hash_fn};
    ASSERT_EQ(sl_block_mgr_create(&bm, &o), 0);
    n_live = 0;
    check();
}

static sl_block_table *table(int cap) {
    sl_block_table *bt = malloc(sizeof *bt);
    sl_block_table_init(bt, cap);
    live[n_live++] = bt;
    return bt;
}

static void drop(sl_block_table *bt) {
    sl_block_release(bm, bt);
    sl_block_table_deinit(bt);
    for (int i = 0; i < n_live; i++)
        if (live[i] == bt) live[i] = live[--n_live];
    free(bt);
    check();
}

static void teardown(void) {
    while (n_live) drop(live[0]);
    sl_block_stats st;
    sl_block_get_stats(bm, &st);
    ASSERT_EQ(st.n_referenced, 0);
    ASSERT_EQ(st.n_free + st.n_cached, st.n_blocks);
    sl_block_mgr_destroy(bm);
    bm = NULL;
}

/* A sequence that computes n tokens: allocate, then register its full blocks. */
static sl_block_table *run_seq(const int32_t *tok, int n) {
    sl_block_table *bt = table(16);
    int hit = sl_block_match(bm, bt, tok, n, (n - 1) / BS);
    (void)hit;
    ASSERT_EQ(sl_block_alloc(bm, bt, (n + BS - 1) / BS), 0);
    sl_block_commit(bm, bt, tok, n);
    check();
    return bt;
}

static void test_alloc_exhaustion(void) {
    setup(9, false, NULL); /* 8 usable */
    ASSERT_EQ(sl_block_num_free(bm), 8);
    sl_block_table *a = table(16), *b = table(16);
    ASSERT_EQ(sl_block_alloc(bm, a, 5), 0);
    check();
    for (int i = 0; i < 5; i++) ASSERT(a->blocks[i] >= 1 && a->blocks[i] < 9);
    ASSERT_EQ(sl_block_alloc(bm, b, 4), SL_ENOMEM); /* 3 left: nothing taken */
    ASSERT_EQ(b->n, 0);
    ASSERT_EQ(sl_block_num_free(bm), 3);
    ASSERT_EQ(sl_block_alloc(bm, b, 3), 0);
    ASSERT_EQ(sl_block_num_free(bm), 0);
    ASSERT_EQ(sl_block_alloc(bm, a, 6), SL_ENOMEM);
    ASSERT_EQ(a->n, 5);
    ASSERT_EQ(sl_block_alloc(bm, a, 5), 0); /* already there */
    ASSERT_EQ(sl_block_alloc(bm, a, 17), SL_ERANGE);
    check();
    drop(b);
    ASSERT_EQ(sl_block_num_free(bm), 3);
    ASSERT_EQ(sl_block_alloc(bm, a, 8), 0);
    check();
    /* the null block is never handed out */
    for (int i = 0; i < 8; i++) ASSERT(a->blocks[i] != 0);
    teardown();
    sl_block_opts bad = {.n_blocks = 1, .block_size = BS};
    sl_block_mgr *x;
    ASSERT_EQ(sl_block_mgr_create(&x, &bad), SL_EINVAL);
}

static void test_prefix_hits(void) {
    setup(33, true, NULL);
    int32_t p[14], q[14];
    for (int i = 0; i < 14; i++) p[i] = q[i] = 100 + i;
    /* A computes 14 tokens: 3 full blocks registered, the 4th (2 tokens) not */
    sl_block_table *a = run_seq(p, 14);
    ASSERT_EQ(a->n, 4);
    ASSERT_EQ(a->n_reg, 3);
    sl_block_stats st;
    sl_block_get_stats(bm, &st);
    ASSERT_EQ(st.n_registered, 3);
    /* B with the same prompt while A runs: shares 3 blocks (refcount 2) */
    sl_block_table *b = table(16);
    ASSERT_EQ(sl_block_match(bm, b, q, 14, 3), 3);
    for (int i = 0; i < 3; i++) ASSERT_EQ(b->blocks[i], a->blocks[i]);
    check();
    /* the match limit: a 12-token prompt may take only 2 blocks (one token must be computed) */
    sl_block_table *c = table(16);
    ASSERT_EQ(sl_block_match(bm, c, q, 12, (12 - 1) / BS), 2);
    check();
    drop(c);
    /* differing in the second block: one hit; in the first: none */
    q[5] = 7;
    c = table(16);
    ASSERT_EQ(sl_block_match(bm, c, q, 14, 3), 1);
    check();
    drop(c);
    q[5] = p[5];
    q[0] = 7;
    c = table(16);
    ASSERT_EQ(sl_block_match(bm, c, q, 14, 3), 0);
    drop(c);
    /* the same tokens shifted by a block boundary do not hit: the chain names the prefix */
    c = table(16);
    ASSERT_EQ(sl_block_match(bm, c, p + 4, 10, 2), 0);
    drop(c);
    /* after A and B finish, their full blocks stay cached and still hit */
    drop(a);
    drop(b);
    sl_block_get_stats(bm, &st);
    ASSERT_EQ(st.n_cached, 3);
    ASSERT_EQ(st.n_referenced, 0);
    c = table(16);
    ASSERT_EQ(sl_block_match(bm, c, p, 14, 3), 3);
    check();
    /* generated tokens extend the chain: computing 16 tokens registers the 4th block */
    int32_t r[16];
    for (int i = 0; i < 16; i++) r[i] = i < 14 ? p[i] : 55;
    ASSERT_EQ(sl_block_alloc(bm, c, 4), 0);
    sl_block_commit(bm, c, r, 15);
    ASSERT_EQ(c->n_reg, 3);
    sl_block_commit(bm, c, r, 16);
    ASSERT_EQ(c->n_reg, 4);
    check();
    drop(c);
    c = table(16);
    ASSERT_EQ(sl_block_match(bm, c, r, 16, 4), 4);
    drop(c);
    teardown();
}

static void test_duplicate_commit(void) {
    setup(17, true, NULL);
    int32_t p[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    /* two identical prompts computed in the same step: neither could hit the other */
    sl_block_table *a = table(8), *b = table(8);
    ASSERT_EQ(sl_block_alloc(bm, a, 3), 0);
    ASSERT_EQ(sl_block_alloc(bm, b, 3), 0);
    ASSERT_EQ(sl_block_num_free(bm), 10);
    sl_block_commit(bm, a, p, 9);
    int32_t b2 = b->blocks[2];
    sl_block_commit(bm, b, p, 9);
    /* b now shares a's two full blocks; its own copies are free again */
    ASSERT_EQ(b->blocks[0], a->blocks[0]);
    ASSERT_EQ(b->blocks[1], a->blocks[1]);
    ASSERT_EQ(b->blocks[2], b2);
    ASSERT_EQ(sl_block_num_free(bm), 12);
    check();
    teardown();
}

static void test_lru_eviction(void) {
    setup(9, true, NULL); /* 8 usable */
    int32_t x[9], y[9];
    for (int i = 0; i < 9; i++) x[i] = 10 + i, y[i] = 50 + i;
    sl_block_table *a = run_seq(x, 9); /* 3 blocks, 2 registered */
    drop(a);
    sl_block_table *b = run_seq(y, 9);
    drop(b);
    sl_block_stats st;
    sl_block_get_stats(bm, &st);
    ASSERT_EQ(st.n_cached, 4);
    ASSERT_EQ(st.n_free, 4);
    /* 5 fresh blocks: the 4 free ones, then one eviction — x's deepest block (oldest prefix) */
    sl_block_table *c = table(16);
    ASSERT_EQ(sl_block_alloc(bm, c, 5), 0);
    sl_block_get_stats(bm, &st);
    ASSERT_EQ(st.n_evictions, 1);
    check();
    sl_block_table *d = table(16);
    ASSERT_EQ(sl_block_match(bm, d, x, 9, 2), 1); /* x's first block survives */
    drop(d);
    d = table(16);
    ASSERT_EQ(sl_block_match(bm, d, y, 9, 2), 2); /* y untouched */
    drop(d);
    /* a hit refreshes: touch x's first block, then evict two more: y's pair goes first */
    d = table(16);
    ASSERT_EQ(sl_block_match(bm, d, x, 9, 2), 1);
    drop(d);
    ASSERT_EQ(sl_block_alloc(bm, c, 7), 0);
    d = table(16);
    ASSERT_EQ(sl_block_match(bm, d, y, 9, 2), 0);
    drop(d);
    d = table(16);
    ASSERT_EQ(sl_block_match(bm, d, x, 9, 2), 1);
    drop(d);
    /* everything: the pool is c's 7 blocks + x's first; asking for 8 evicts it */
    ASSERT_EQ(sl_block_alloc(bm, c, 8), 0);
    ASSERT_EQ(sl_block_alloc(bm, c, 9), SL_ENOMEM);
    sl_block_get_stats(bm, &st);
    ASSERT_EQ(st.n_registered, 0);
    check();
    teardown();
}

/* parent hash with every token collapsed: every block of every prefix collides */
static uint64_t bad_hash(uint64_t parent, const int32_t *t, int n) {
    (void)parent, (void)t, (void)n;
    return 42;
}

static void test_collisions(void) {
    setup(33, true, bad_hash);
    int32_t x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 0}, y[9] = {1, 2, 3, 4, 9, 9, 9, 9, 0}, z[9] = {5, 6, 7, 8, 5, 6, 7, 8, 0};
    sl_block_table *a = run_seq(x, 9), *b = run_seq(y, 9), *c = run_seq(z, 9);
    ASSERT_EQ(b->blocks[0], a->blocks[0]); /* same first block: truly shared */
    ASSERT(b->blocks[1] != a->blocks[1]);
    ASSERT(c->blocks[0] != a->blocks[0]);
    /* z's second block has x's second block's tokens but another parent: no hit */
    sl_block_table *d = table(16);
    int32_t w[9] = {5, 6, 7, 8, 5, 6, 7, 8, 0};
    ASSERT_EQ(sl_block_match(bm, d, w, 9, 2), 2);
    ASSERT_EQ(d->blocks[1], c->blocks[1]);
    drop(d);
    d = table(16);
    int32_t v[9] = {9, 9, 9, 9, 5, 6, 7, 8, 0};
    ASSERT_EQ(sl_block_match(bm, d, v, 9, 2), 0);
    drop(d);
    drop(a);
    drop(b);
    drop(c);
    teardown();
    setup(4, true, bad_hash); /* 3 usable */
    int32_t p[9] = {1, 1, 1, 1, 2, 2, 2, 2, 0};
    a = run_seq(p, 9); /* blocks 1111 <- 2222 */
    drop(a);
    /* evict both, then register 1111 <- 3333: all three blocks carry hash 42 */
    b = table(16);
    ASSERT_EQ(sl_block_alloc(bm, b, 3), 0); /* all three: P0 and P1 evicted */
    sl_block_stats st;
    sl_block_get_stats(bm, &st);
    ASSERT_EQ(st.n_registered, 0);
    drop(b);
    int32_t q[9] = {1, 1, 1, 1, 3, 3, 3, 3, 0};
    c = run_seq(q, 9);
    drop(c);
    d = table(16);
    ASSERT_EQ(sl_block_match(bm, d, p, 9, 2), 1); /* 1111 hits, 2222 is gone */
    drop(d);
    teardown();
}

static void test_cache_off(void) {
    setup(17, false, NULL);
    int32_t p[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    sl_block_table *a = run_seq(p, 9);
    ASSERT_EQ(a->n_reg, 0);
    drop(a);
    sl_block_stats st;
    sl_block_get_stats(bm, &st);
    ASSERT_EQ(st.n_cached, 0);
    ASSERT_EQ(st.n_free, 16);
    sl_block_table *b = table(16);
    ASSERT_EQ(sl_block_match(bm, b, p, 9, 2), 0);
    drop(b);
    teardown();
}

/* The checker itself must catch a corrupted state. */
static void test_checker_catches(void) {
    setup(9, true, NULL);
    sl_block_table *a = table(8);
    ASSERT_EQ(sl_block_alloc(bm, a, 2), 0);
    char err[SL_ERRMSG] = "";
    /* claim a has no blocks: the refcounts no longer match */
    int n = a->n;
    a->n = 1;
    ASSERT_EQ(sl_block_mgr_check(bm, (const sl_block_table *const *)live, n_live, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "refcount");
    a->n = n;
    check();
    /* two tables holding the same block without a shared reference */
    sl_block_table *b = table(8);
    ASSERT_EQ(sl_block_alloc(bm, b, 1), 0);
    int32_t keep = b->blocks[0];
    b->blocks[0] = a->blocks[0];
    ASSERT_EQ(sl_block_mgr_check(bm, (const sl_block_table *const *)live, n_live, err), SL_EFORMAT);
    b->blocks[0] = keep;
    check();
    teardown();
}

static void test_hash(void) {
    int32_t t[4] = {1, 2, 3, 4}, u[4] = {1, 2, 4, 3};
    uint64_t h = sl_block_hash(SL_BLOCK_HASH_ROOT, t, 4);
    ASSERT(h == sl_block_hash(SL_BLOCK_HASH_ROOT, t, 4));
    ASSERT(h != sl_block_hash(SL_BLOCK_HASH_ROOT, u, 4));
    ASSERT(h != sl_block_hash(SL_BLOCK_HASH_ROOT + 1, t, 4));
    ASSERT(h != sl_block_hash(SL_BLOCK_HASH_ROOT, t, 3));
    /* a single-bit change of one token flips about half the output bits */
    int flips = 0, trials = 0;
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 31; b++) {
            int32_t v[4] = {1, 2, 3, 4};
            v[i] ^= 1 << b;
            flips += __builtin_popcountll(h ^ sl_block_hash(SL_BLOCK_HASH_ROOT, v, 4));
            trials++;
        }
    double avg = (double)flips / trials;
    ASSERT(avg > 28 && avg < 36);
}

int main(void) {
    test_hash();
    test_alloc_exhaustion();
    test_prefix_hits();
    test_duplicate_commit();
    test_lru_eviction();
    test_collisions();
    test_cache_off();
    test_checker_catches();
    printf("test_block: ok\n");
    return 0;
}
