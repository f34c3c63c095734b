/* block.h — the KV block manager and the automatic prefix cache (DESIGN.md decision 4).
 *
 * The KV pool holds n_blocks blocks of block_size token slots each; block 0 is the null block
 * and is never handed out. A sequence owns a block table (sl_block_table): the ids of the
 * blocks holding its positions 0, block_size, 2·block_size, ... in order. Blocks are
 * refcounted: a block is referenced by every table that holds it.
 *
 * Every block is in exactly one of three states:
 *   free        refcount 0, holds nothing of value, on the free list;
 *   cached      refcount 0, registered in the prefix cache, on the LRU list (oldest first);
 *   referenced  refcount > 0, held by refcount tables, registered or not.
 * Allocation takes free blocks first, then evicts cached blocks from the LRU head. It is
 * all-or-nothing: a request that does not fit leaves the manager unchanged.
 *
 * Prefix cache. Once every slot of a block has been computed, the block is registered under
 * the chain hash of its contents: hash(block i) = sl_block_hash(hash(block i−1), its tokens),
 * with SL_BLOCK_HASH_ROOT for block 0, so the key names the whole prefix up to the block's end.
 * A lookup trusts no hash: a hit also needs the same parent block (identified by block id and
 * an epoch that changes whenever that block leaves the cache) and the same block_size tokens,
 * so a 64-bit collision can cost a miss, never a wrong hit. A new sequence acquires every
 * cached full block of its tokens (sl_block_match); a registration that finds an identical
 * block already cached switches the table to the cached block and frees its own copy. When a
 * table is released its blocks are released last-first, so the LRU evicts the deepest block
 * of a prefix before its parents. With the cache off nothing is registered and no lookup hits.
 *
 * Ownership: sl_block_mgr_create allocates, sl_block_mgr_destroy frees. A table's arrays are
 * allocated by sl_block_table_init and freed by sl_block_table_deinit; the blocks it holds
 * must be given back with sl_block_release before the manager is destroyed.
 * Thread-safety: none; the engine thread owns the manager and every table.
 */
#ifndef SL_BLOCK_H
#define SL_BLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_BLOCK_HASH_ROOT 0x736c7569636b7631ull /* parent hash of a sequence's first block */

/* 64-bit chain hash of n tokens under a parent hash (seeded multiply–xorshift mixing of each
 * token; every step is a bijection of the state). Stable across runs and machines, so it
 * can also serve as a routing key between replicas. */
uint64_t sl_block_hash(uint64_t parent, const int32_t *tokens, int n);

typedef struct sl_block_opts {
    int n_blocks;      /* pool size including the null block 0; >= 2 */
    int block_size;    /* tokens per block; >= 1 */
    bool prefix_cache; /* register full blocks and serve hits */
    /* For tests only: replaces sl_block_hash (e.g. a constant, to force collisions). */
    uint64_t (*hash_fn)(uint64_t parent, const int32_t *tokens, int n);
} sl_block_opts;

typedef struct sl_block_mgr sl_block_mgr;

/* A sequence's block table. blocks[0..n) hold positions [0, n·block_size); the first n_reg
 * of them are registered in the prefix cache. hashes[i] is the chain hash of the i-th full
 * block of the sequence's tokens, computed lazily (n_hashes so far) and kept across
 * sl_block_release, since the tokens of a sequence never change. */
typedef struct sl_block_table {
    int32_t *blocks;   /* [cap] */
    uint64_t *hashes;  /* [cap] */
    int n, n_reg, n_hashes, cap;
} sl_block_table;

typedef struct sl_block_stats {
    int n_blocks;       /* usable blocks (pool minus the null block) */
    int n_free;         /* free */
    int n_cached;       /* cached, unreferenced (evictable) */
    int n_referenced;   /* held by at least one table */
    int n_registered;   /* in the prefix cache, referenced or not */
    uint64_t n_evictions;
} sl_block_stats;

/* Errors: SL_EINVAL for bad options. */
int sl_block_mgr_create(sl_block_mgr **out, const sl_block_opts *o);
void sl_block_mgr_destroy(sl_block_mgr *bm);
int sl_block_size(const sl_block_mgr *bm);
bool sl_block_prefix_cache(const sl_block_mgr *bm);
/* Blocks an allocation can get now: free plus cached-unreferenced. */
int sl_block_num_free(const sl_block_mgr *bm);
void sl_block_get_stats(const sl_block_mgr *bm, sl_block_stats *st);

/* A table for up to cap blocks (a sequence's largest length / block_size, rounded up). */
void sl_block_table_init(sl_block_table *bt, int cap);
void sl_block_table_deinit(sl_block_table *bt);

/* For a table holding no blocks: acquires the longest run of cached blocks that equals the
 * leading full blocks of tokens[0..n_tokens), at most max_blocks of them, and appends them.
 * Returns the number of blocks acquired (0 with the cache off). */
int sl_block_match(sl_block_mgr *bm, sl_block_table *bt, const int32_t *tokens, int n_tokens, int max_blocks);

/* Grows the table to n_total blocks with fresh blocks. All or nothing: SL_ENOMEM when the
 * pool cannot supply them (the table is unchanged), SL_ERANGE when n_total > cap. */
int sl_block_alloc(sl_block_mgr *bm, sl_block_table *bt, int n_total);

/* Registers the table's blocks that are now full: tokens[0..n_computed) have their KV in the
 * cache. Blocks already registered are skipped; an identical cached block replaces the
 * table's own copy (same KV contents, one block saved). No-op with the cache off. */
void sl_block_commit(sl_block_mgr *bm, sl_block_table *bt, const int32_t *tokens, int n_computed);

/* Releases every block of the table (last first) and empties it. */
void sl_block_release(sl_block_mgr *bm, sl_block_table *bt);

/* Full consistency check against the complete list of live tables (every table that holds
 * blocks must be given): refcounts equal the number of holders, each unreferenced block is on
 * exactly the list of its state, the hash index holds exactly the registered blocks, and each
 * table's registered prefix forms a valid chain. Returns 0, or SL_EFORMAT with a message.
 * O(n_blocks + total table length); allocates scratch memory. For tests and debugging. */
int sl_block_mgr_check(const sl_block_mgr *bm, const sl_block_table *const *tables, int n_tables,
                       char err[SL_ERRMSG]);

#ifdef __cplusplus
}
#endif
#endif
