/* idmap.h — an intrusive hash map from 64-bit ids to records: each record embeds an
 * sl_idmap_node (its id and the bucket chain), so inserting allocates nothing but, rarely,
 * a larger bucket array (the map doubles when it holds as many records as buckets).
 * Used by the scheduler (sequences) and the engine (requests). Not thread-safe. */
#ifndef SL_IDMAP_H
#define SL_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_idmap_node {
    uint64_t id;
    struct sl_idmap_node *next;
} sl_idmap_node;

typedef struct sl_idmap {
    sl_idmap_node **slots; /* [mask + 1] */
    size_t mask;
    size_t n;              /* records held */
} sl_idmap;

/* The record holding node p, a member `member` of type T. */
#define SL_IDMAP_ENTRY(p, T, member) ((T *)(void *)((char *)(p) - offsetof(T, member)))

void sl_idmap_init(sl_idmap *m);
void sl_idmap_free(sl_idmap *m);
/* The node of id, or NULL. */
sl_idmap_node *sl_idmap_find(const sl_idmap *m, uint64_t id);
/* Adds node (its id set, not already present: SL_CHECK). */
void sl_idmap_insert(sl_idmap *m, sl_idmap_node *node);
/* Removes node, which must be in the map (SL_CHECK). */
void sl_idmap_remove(sl_idmap *m, sl_idmap_node *node);
/* Calls fn(node, ctx) for every node, in no particular order; fn must not change the map. */
void sl_idmap_each(const sl_idmap *m, void (*fn)(sl_idmap_node *node, void *ctx), void *ctx);

#endif
