/* block.c — KV block manager and prefix cache; see block.h for the contract. */
#include "block.h"

#include <stdlib.h>
#include <string.h>

enum { L_NONE = 0, L_FREE, L_LRU };

typedef struct blk {
    int32_t ref;
    int32_t list;           /* L_NONE while referenced (or the null block) */
    int32_t prev, next;     /* links in the free or LRU list; -1 ends */
    int32_t hnext;          /* next block in the same hash bucket; -1 ends */
    int32_t parent;         /* registered: parent block id, -1 for a first block */
    /* Bumped whenever the block leaves the cache. Since a table releases its blocks last
     * first, a parent always re-enters the LRU after its children and is never evicted
     * before them; the epoch keeps hits exact even if an eviction policy broke that. */
    uint32_t epoch;
    uint32_t parent_epoch;  /* registered: the parent's epoch at registration */
    uint64_t hash;          /* registered: chain hash */
    bool registered;
} blk;

typedef struct list {
    int32_t head, tail, n;
} list;

struct sl_block_mgr {
    int n_blocks, bs;
    bool prefix_cache;
    uint64_t (*hash_fn)(uint64_t, const int32_t *, int);
    blk *b;                 /* [n_blocks] */
    int32_t *tok;           /* [n_blocks][bs] tokens of registered blocks, to verify hits */
    int32_t *bucket;        /* [n_buckets] first block of each hash bucket, -1 when empty */
    uint64_t bucket_mask;
    list free_l, lru;
    int n_registered;
    uint64_t n_evictions;
};

/* ---- hash ----------------------------------------------------------------------------- */
static inline uint64_t mix(uint64_t x) {
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

uint64_t sl_block_hash(uint64_t parent, const int32_t *tokens, int n) {
    uint64_t h = mix(parent ^ 0x9e3779b97f4a7c15ull) + (uint64_t)n;
    for (int i = 0; i < n; i++) h = mix(h + ((uint64_t)(uint32_t)tokens[i] + 1) * 0xff51afd7ed558ccdull);
    return h;
}

/* ---- lists ---------------------------------------------------------------------------- */
static void list_push_back(sl_block_mgr *bm, list *l, int tag, int32_t id) {
    blk *x = &bm->b[id];
    x->list = tag;
    x->prev = l->tail;
    x->next = -1;
    if (l->tail >= 0) bm->b[l->tail].next = id;
    else l->head = id;
    l->tail = id;
    l->n++;
}

static void list_remove(sl_block_mgr *bm, list *l, int32_t id) {
    blk *x = &bm->b[id];
    if (x->prev >= 0) bm->b[x->prev].next = x->next;
    else l->head = x->next;
    if (x->next >= 0) bm->b[x->next].prev = x->prev;
    else l->tail = x->prev;
    x->prev = x->next = -1;
    x->list = L_NONE;
    l->n--;
}

/* ---- hash index ----------------------------------------------------------------------- */
static int32_t *bucket_of(sl_block_mgr *bm, uint64_t h) { return &bm->bucket[h & bm->bucket_mask]; }

static int32_t lookup(sl_block_mgr *bm, uint64_t h, int32_t parent, uint32_t parent_epoch, const int32_t *tokens) {
    for (int32_t id = *bucket_of(bm, h); id >= 0; id = bm->b[id].hnext) {
        const blk *x = &bm->b[id];
        if (x->hash == h && x->parent == parent && x->parent_epoch == parent_epoch &&
            !memcmp(bm->tok + (size_t)id * bm->bs, tokens, (size_t)bm->bs * sizeof *tokens))
            return id;
    }
    return -1;
}

static void unregister(sl_block_mgr *bm, int32_t id) {
    blk *x = &bm->b[id];
    int32_t *p = bucket_of(bm, x->hash);
    while (*p != id) {
        SL_CHECK(*p >= 0);
        p = &bm->b[*p].hnext;
    }
    *p = x->hnext;
    x->hnext = -1;
    x->registered = false;
    x->epoch++;
    bm->n_registered--;
}

/* ---- refcounting ---------------------------------------------------------------------- */
static void acquire(sl_block_mgr *bm, int32_t id) {
    blk *x = &bm->b[id];
    if (x->ref++ == 0) {
        SL_CHECK(x->list == L_LRU);
        list_remove(bm, &bm->lru, id);
    }
}

static void release(sl_block_mgr *bm, int32_t id) {
    blk *x = &bm->b[id];
    SL_CHECK(x->ref > 0);
    if (--x->ref == 0) {
        if (x->registered) list_push_back(bm, &bm->lru, L_LRU, id);
        else list_push_back(bm, &bm->free_l, L_FREE, id);
    }
}

/* A fresh block with refcount 1: a free one, else the least recently used cached one. */
static int32_t take_fresh(sl_block_mgr *bm) {
    int32_t id;
    if (bm->free_l.n) {
        id = bm->free_l.head;
        list_remove(bm, &bm->free_l, id);
    } else {
        id = bm->lru.head;
        SL_CHECK(id >= 0);
        list_remove(bm, &bm->lru, id);
        unregister(bm, id);
        bm->n_evictions++;
    }
    bm->b[id].ref = 1;
    return id;
}

/* ---- public --------------------------------------------------------------------------- */
int sl_block_mgr_create(sl_block_mgr **out, const sl_block_opts *o) {
    *out = NULL;
    if (!o || o->n_blocks < 2 || o->block_size < 1 || o->block_size > (1 << 20) || o->n_blocks > (1 << 28))
        return SL_EINVAL;
    sl_block_mgr *bm = sl_xcalloc(1, sizeof *bm);
    bm->n_blocks = o->n_blocks;
    bm->bs = o->block_size;
    bm->prefix_cache = o->prefix_cache;
    bm->hash_fn = o->hash_fn ? o->hash_fn : sl_block_hash;
    bm->b = sl_xcalloc((size_t)o->n_blocks, sizeof *bm->b);
    if (o->prefix_cache) {
        size_t nb = 16;
        while (nb < (size_t)o->n_blocks) nb <<= 1;
        bm->bucket = sl_xmalloc(nb * sizeof *bm->bucket);
        memset(bm->bucket, 0xff, nb * sizeof *bm->bucket);
        bm->bucket_mask = nb - 1;
        bm->tok = sl_xmalloc((size_t)o->n_blocks * o->block_size * sizeof *bm->tok);
    }
    bm->free_l = bm->lru = (list){-1, -1, 0};
    for (int32_t i = 0; i < o->n_blocks; i++) {
        bm->b[i].prev = bm->b[i].next = bm->b[i].hnext = bm->b[i].parent = -1;
        if (i > 0) list_push_back(bm, &bm->free_l, L_FREE, i);
    }
    *out = bm;
    return SL_OK;
}

void sl_block_mgr_destroy(sl_block_mgr *bm) {
    if (!bm) return;
    free(bm->b);
    free(bm->tok);
    free(bm->bucket);
    free(bm);
}

int sl_block_size(const sl_block_mgr *bm) { return bm->bs; }
bool sl_block_prefix_cache(const sl_block_mgr *bm) { return bm->prefix_cache; }
int sl_block_num_free(const sl_block_mgr *bm) { return bm->free_l.n + bm->lru.n; }

void sl_block_get_stats(const sl_block_mgr *bm, sl_block_stats *st) {
    st->n_blocks = bm->n_blocks - 1;
    st->n_free = bm->free_l.n;
    st->n_cached = bm->lru.n;
    st->n_referenced = st->n_blocks - st->n_free - st->n_cached;
    st->n_registered = bm->n_registered;
    st->n_evictions = bm->n_evictions;
}

void sl_block_table_init(sl_block_table *bt, int cap) {
    SL_CHECK(cap >= 0);
    memset(bt, 0, sizeof *bt);
    bt->cap = cap;
    bt->blocks = sl_xmalloc((size_t)(cap ? cap : 1) * sizeof *bt->blocks);
    bt->hashes = sl_xmalloc((size_t)(cap ? cap : 1) * sizeof *bt->hashes);
}

void sl_block_table_deinit(sl_block_table *bt) {
    SL_CHECK(bt->n == 0); /* blocks must be released first */
    free(bt->blocks);
    free(bt->hashes);
    memset(bt, 0, sizeof *bt);
}

/* Chain hashes of the first n_full full blocks of tokens. */
static void ensure_hashes(const sl_block_mgr *bm, sl_block_table *bt, const int32_t *tokens, int n_full) {
    SL_CHECK(n_full <= bt->cap);
    for (int i = bt->n_hashes; i < n_full; i++)
        bt->hashes[i] = bm->hash_fn(i ? bt->hashes[i - 1] : SL_BLOCK_HASH_ROOT, tokens + (size_t)i * bm->bs, bm->bs);
    if (n_full > bt->n_hashes) bt->n_hashes = n_full;
}

static void parent_of(const sl_block_mgr *bm, const sl_block_table *bt, int i, int32_t *parent, uint32_t *epoch) {
    *parent = i ? bt->blocks[i - 1] : -1;
    *epoch = i ? bm->b[bt->blocks[i - 1]].epoch : 0;
}

int sl_block_match(sl_block_mgr *bm, sl_block_table *bt, const int32_t *tokens, int n_tokens, int max_blocks) {
    SL_CHECK(bt->n == 0);
    if (!bm->prefix_cache) return 0;
    int n_full = n_tokens / bm->bs;
    if (n_full > max_blocks) n_full = max_blocks;
    if (n_full > bt->cap) n_full = bt->cap;
    for (int i = 0; i < n_full; i++) {
        ensure_hashes(bm, bt, tokens, i + 1);
        int32_t parent;
        uint32_t pe;
        parent_of(bm, bt, i, &parent, &pe);
        int32_t id = lookup(bm, bt->hashes[i], parent, pe, tokens + (size_t)i * bm->bs);
        if (id < 0) break;
        acquire(bm, id);
        bt->blocks[bt->n++] = id;
        bt->n_reg = bt->n;
    }
    return bt->n;
}

int sl_block_alloc(sl_block_mgr *bm, sl_block_table *bt, int n_total) {
    if (n_total > bt->cap) return SL_ERANGE;
    int need = n_total - bt->n;
    if (need <= 0) return SL_OK;
    if (need > sl_block_num_free(bm)) return SL_ENOMEM;
    while (bt->n < n_total) bt->blocks[bt->n++] = take_fresh(bm);
    return SL_OK;
}

void sl_block_commit(sl_block_mgr *bm, sl_block_table *bt, const int32_t *tokens, int n_computed) {
    if (!bm->prefix_cache) return;
    int n_full = n_computed / bm->bs;
    if (n_full > bt->n) n_full = bt->n;
    if (n_full <= bt->n_reg) return;
    ensure_hashes(bm, bt, tokens, n_full);
    for (int i = bt->n_reg; i < n_full; i++) {
        const int32_t *t = tokens + (size_t)i * bm->bs;
        int32_t parent, id = bt->blocks[i];
        uint32_t pe;
        parent_of(bm, bt, i, &parent, &pe);
        SL_CHECK(!bm->b[id].registered);
        int32_t dup = lookup(bm, bt->hashes[i], parent, pe, t);
        if (dup >= 0) {
            /* the same prefix was computed twice (e.g. two identical prompts in one step):
             * keep the cached block, give ours back */
            acquire(bm, dup);
            release(bm, id);
            bt->blocks[i] = dup;
            continue;
        }
        blk *x = &bm->b[id];
        x->registered = true;
        x->hash = bt->hashes[i];
        x->parent = parent;
        x->parent_epoch = pe;
        memcpy(bm->tok + (size_t)id * bm->bs, t, (size_t)bm->bs * sizeof *t);
        int32_t *head = bucket_of(bm, x->hash);
        x->hnext = *head;
        *head = id;
        bm->n_registered++;
    }
    bt->n_reg = n_full;
}

void sl_block_release(sl_block_mgr *bm, sl_block_table *bt) {
    for (int i = bt->n - 1; i >= 0; i--) release(bm, bt->blocks[i]);
    bt->n = bt->n_reg = 0;
}

/* ---- consistency check ---------------------------------------------------------------- */
int sl_block_mgr_check(const sl_block_mgr *bm, const sl_block_table *const *tables, int n_tables,
                       char err[SL_ERRMSG]) {
    const int N = bm->n_blocks;
    int32_t *cnt = sl_xcalloc((size_t)N, sizeof *cnt);
    uint8_t *seen = sl_xcalloc((size_t)N, 1);
    int rc = SL_OK;
#define FAIL(...)                                                                                \
    do {                                                                                         \
        rc = sl_fail(err, SL_EFORMAT, __VA_ARGS__);                                              \
        goto done;                                                                               \
    } while (0)
    for (int t = 0; t < n_tables; t++) {
        const sl_block_table *bt = tables[t];
        if (bt->n < 0 || bt->n > bt->cap || bt->n_reg < 0 || bt->n_reg > bt->n)
            FAIL("table %d: n %d, n_reg %d, cap %d", t, bt->n, bt->n_reg, bt->cap);
        if (!bm->prefix_cache && bt->n_reg) FAIL("table %d: %d registered blocks with the cache off", t, bt->n_reg);
        for (int i = 0; i < bt->n; i++) {
            int32_t id = bt->blocks[i];
            if (id < 1 || id >= N) FAIL("table %d: block %d has id %d", t, i, id);
            for (int j = 0; j < i; j++)
                if (bt->blocks[j] == id) FAIL("table %d: block %d appears twice", t, id);
            cnt[id]++;
            if (i < bt->n_reg) {
                const blk *x = &bm->b[id];
                if (!x->registered) FAIL("table %d: block %d (#%d) should be registered", t, id, i);
                if (i >= bt->n_hashes || x->hash != bt->hashes[i]) FAIL("table %d: block %d hash differs", t, id);
                int32_t parent = i ? bt->blocks[i - 1] : -1;
                uint32_t pe = i ? bm->b[parent].epoch : 0;
                if (x->parent != parent || x->parent_epoch != pe)
                    FAIL("table %d: block %d (#%d) is chained to %d, not %d", t, id, i, x->parent, parent);
            }
        }
    }
    const blk *z = &bm->b[0];
    if (z->ref || z->list != L_NONE || z->registered) FAIL("null block 0 is in use");
    int n_ref = 0, n_reg = 0;
    for (int id = 1; id < N; id++) {
        const blk *x = &bm->b[id];
        if (x->ref != cnt[id]) FAIL("block %d: refcount %d but %d holders", id, x->ref, cnt[id]);
        if (x->ref > 0 && x->list != L_NONE) FAIL("block %d: referenced but on list %d", id, x->list);
        if (x->ref == 0 && x->list != (x->registered ? L_LRU : L_FREE))
            FAIL("block %d: unreferenced, registered %d, on list %d", id, x->registered, x->list);
        n_ref += x->ref > 0;
        n_reg += x->registered;
    }
    const list *ls[2] = {&bm->free_l, &bm->lru};
    for (int k = 0; k < 2; k++) {
        int n = 0;
        int32_t prev = -1;
        for (int32_t id = ls[k]->head; id >= 0; id = bm->b[id].next) {
            if (id < 1 || id >= N || seen[id]) FAIL("list %d: bad or repeated block %d", k, id);
            if (bm->b[id].prev != prev) FAIL("list %d: broken back link at %d", k, id);
            if (bm->b[id].list != (k ? L_LRU : L_FREE)) FAIL("list %d: block %d has tag %d", k, id, bm->b[id].list);
            seen[id] = 1;
            prev = id;
            n++;
        }
        if (prev != ls[k]->tail || n != ls[k]->n) FAIL("list %d: count %d/%d or tail wrong", k, n, ls[k]->n);
    }
    if (n_ref + bm->free_l.n + bm->lru.n != N - 1)
        FAIL("%d referenced + %d free + %d cached != %d blocks", n_ref, bm->free_l.n, bm->lru.n, N - 1);
    if (n_reg != bm->n_registered) FAIL("%d registered blocks, counter says %d", n_reg, bm->n_registered);
    if (bm->prefix_cache) {
        int n_idx = 0;
        memset(seen, 0, (size_t)N);
        for (uint64_t k = 0; k <= bm->bucket_mask; k++)
            for (int32_t id = bm->bucket[k]; id >= 0; id = bm->b[id].hnext) {
                if (id < 1 || id >= N || seen[id]) FAIL("hash bucket %llu: bad or repeated block %d", (unsigned long long)k, id);
                seen[id] = 1;
                if (!bm->b[id].registered || (bm->b[id].hash & bm->bucket_mask) != k)
                    FAIL("hash bucket %llu: block %d does not belong", (unsigned long long)k, id);
                n_idx++;
            }
        if (n_idx != n_reg) FAIL("hash index holds %d blocks, %d registered", n_idx, n_reg);
    } else if (n_reg) {
        FAIL("%d registered blocks with the cache off", n_reg);
    }
#undef FAIL
done:
    free(cnt);
    free(seen);
    return rc;
}
