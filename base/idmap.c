/* idmap.c — see idmap.h. */
#include "idmap.h"

#include <stdlib.h>

#include "base.h"

static size_t slot_of(const sl_idmap *m, uint64_t id) {
    id ^= id >> 33; /* murmur3's finalizer: sequential ids spread over every bucket */
    id *= 0xff51afd7ed558ccdull;
    id ^= id >> 33;
    return (size_t)id & m->mask;
}

void sl_idmap_init(sl_idmap *m) {
    m->mask = 63;
    m->slots = sl_xcalloc(m->mask + 1, sizeof *m->slots);
    m->n = 0;
}

void sl_idmap_free(sl_idmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->mask = 0;
    m->n = 0;
}

sl_idmap_node *sl_idmap_find(const sl_idmap *m, uint64_t id) {
    sl_idmap_node *p = m->slots[slot_of(m, id)];
    while (p && p->id != id) p = p->next;
    return p;
}

void sl_idmap_insert(sl_idmap *m, sl_idmap_node *node) {
    SL_CHECK(!sl_idmap_find(m, node->id));
    if (m->n >= m->mask + 1) { /* grow: per record added, never on a lookup */
        const size_t old = m->mask + 1;
        sl_idmap_node **os = m->slots;
        m->mask = old * 2 - 1;
        m->slots = sl_xcalloc(old * 2, sizeof *m->slots);
        for (size_t i = 0; i < old; i++)
            for (sl_idmap_node *x = os[i], *nx; x; x = nx) {
                nx = x->next;
                const size_t k = slot_of(m, x->id);
                x->next = m->slots[k];
                m->slots[k] = x;
            }
        free(os);
    }
    const size_t k = slot_of(m, node->id);
    node->next = m->slots[k];
    m->slots[k] = node;
    m->n++;
}

void sl_idmap_remove(sl_idmap *m, sl_idmap_node *node) {
    sl_idmap_node **p = &m->slots[slot_of(m, node->id)];
    while (*p && *p != node) p = &(*p)->next;
    SL_CHECK(*p == node);
    *p = node->next;
    node->next = NULL;
    m->n--;
}

void sl_idmap_each(const sl_idmap *m, void (*fn)(sl_idmap_node *node, void *ctx), void *ctx) {
    for (size_t i = 0; i <= m->mask; i++)
        for (sl_idmap_node *x = m->slots[i], *nx; x; x = nx) {
            nx = x->next;
            fn(x, ctx);
        }
}
