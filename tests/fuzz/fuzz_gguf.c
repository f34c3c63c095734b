/* fuzz_gguf.c — libFuzzer target for the GGUF reader (scripts/fuzz.sh builds and runs it).
 *
 * Opens the input with sl_gguf_open_mem; on success walks every key through the lookup and
 * every getter, every array element, and every tensor's data, trapping on any inconsistency
 * (ASan/UBSan catch out-of-bounds reads and undefined behaviour). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "models/gguf.h"

#define REQUIRE(x)                                                                               \
    do {                                                                                         \
        if (!(x)) __builtin_trap();                                                              \
    } while (0)

static volatile uint64_t sink;

static void walk_kv(const sl_gguf *g, const sl_gguf_kv *kv) {
    char err[SL_ERRMSG];
    uint32_t u;
    float f;
    bool b;
    const char *s;
    uint64_t len, acc = 0;
    REQUIRE(sl_gguf_find(g, kv->key) == kv);
    int rc = sl_gguf_get_u32(g, kv->key, &u, err);
    REQUIRE(rc == 0 || (rc == SL_EFORMAT && strstr(err, kv->key)));
    if (rc == 0) acc += u;
    rc = sl_gguf_get_f32(g, kv->key, &f, err);
    REQUIRE(rc == 0 || rc == SL_EFORMAT);
    REQUIRE((rc == 0) == (kv->type == SL_GGUF_F32 || kv->type == SL_GGUF_F64));
    rc = sl_gguf_get_bool(g, kv->key, &b, err);
    REQUIRE((rc == 0) == (kv->type == SL_GGUF_BOOL));
    rc = sl_gguf_get_str(g, kv->key, &s, &len, err);
    REQUIRE((rc == 0) == (kv->type == SL_GGUF_STRING));
    if (rc == 0) {
        REQUIRE((const uint8_t *)s >= g->base && len <= g->size);
        REQUIRE((const uint8_t *)s + len <= g->base + g->size);
        for (uint64_t i = 0; i < len; i++) acc += (uint8_t)s[i];
    }
    if (kv->type != SL_GGUF_ARRAY) {
        REQUIRE(kv->n == 1);
        sink += acc;
        return;
    }
    for (uint64_t i = 0; i < kv->n; i++) {
        switch (kv->arr_type) {
        case SL_GGUF_STRING:
            sl_gguf_arr_str(kv, i, &s, &len);
            REQUIRE((const uint8_t *)s + len <= g->base + g->size);
            if (len) acc += (uint8_t)s[0] + (uint8_t)s[len - 1];
            break;
        case SL_GGUF_F32:
        case SL_GGUF_F64: acc += (uint64_t)(sl_gguf_arr_f32(kv, i) != 0.0f); break;
        case SL_GGUF_BOOL: REQUIRE(kv->value[i] <= 1); break;
        default: acc += (uint64_t)sl_gguf_arr_int(kv, i); break;
        }
    }
    sink += acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[SL_ERRMSG];
    err[0] = 0;
    sl_gguf *g = (sl_gguf *)&err; /* must be reset to NULL on failure */
    int rc = sl_gguf_open_mem(&g, data, size, err);
    if (rc != 0) {
        REQUIRE(rc < 0 && g == NULL && err[0] != 0 && memchr(err, 0, SL_ERRMSG));
        return 0;
    }
    REQUIRE(g->version == 2 || g->version == 3);
    REQUIRE(g->alignment && !(g->alignment & (g->alignment - 1)));
    REQUIRE(g->data_offset <= size);
    for (uint64_t i = 0; i < g->n_kv; i++) walk_kv(g, &g->kv[i]);
    uint64_t expect = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const sl_gguf_tensor *t = &g->tensors[i];
        REQUIRE(sl_gguf_tensor_find(g, t->name) == t);
        REQUIRE(strlen(t->name) > 0 && strlen(t->name) < 64);
        REQUIRE(t->n_dims >= 1 && t->n_dims <= 4);
        int blk = sl_ggml_blck(t->type);
        REQUIRE(blk > 0 && t->ne[0] % blk == 0);
        uint64_t nbytes = (uint64_t)(t->ne[0] / blk) * (uint64_t)sl_ggml_type_bytes(t->type);
        for (int d = 1; d < 4; d++) nbytes *= (uint64_t)t->ne[d];
        REQUIRE(nbytes == t->nbytes && t->offset == expect);
        expect += (nbytes + g->alignment - 1) / g->alignment * g->alignment;
        const uint8_t *p = t->data;
        REQUIRE(p == data + g->data_offset + t->offset && p + t->nbytes <= data + size);
        uint64_t acc = 0;
        for (uint64_t k = 0; k < t->nbytes; k++) acc += p[k];
        sink += acc;
    }
    REQUIRE(sl_gguf_find(g, "") == NULL && sl_gguf_tensor_find(g, "") == NULL);
    sl_gguf_close(g);
    return 0;
}
