/* test_gguf.c — GGUF reader and writer: round trips (v3 and v2), a corpus of broken files
 * each checked for its exact error, getters, and random mutations.
 *
 * `test_gguf --write-seeds DIR` writes valid GGUF files of several shapes into DIR (the
 * fuzzer's seed corpus, see scripts/fuzz.sh) and exits. */
#include "models/gguf.h"
#include "tests/test.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- raw byte builder for hand-made (often invalid) files ------------------------------ */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_put(bb *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ASSERT(b->p);
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_strn(bb *b, const char *s, size_t n) { bb_u64(b, n), bb_put(b, s, n); }
static void bb_str(bb *b, const char *s) { bb_strn(b, s, strlen(s)); }
static void bb_zeros(bb *b, size_t n) {
    for (size_t i = 0; i < n; i++) bb_u8(b, 0);
}
static void bb_pad(bb *b, size_t align) {
    while (b->n % align) bb_u8(b, 0);
}
static void bb_hdr(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void bb_kv_u32(bb *b, const char *key, uint32_t v) {
    bb_str(b, key), bb_u32(b, SL_GGUF_U32), bb_u32(b, v);
}
static void bb_kv_str(bb *b, const char *key, const char *v) {
    bb_str(b, key), bb_u32(b, SL_GGUF_STRING), bb_str(b, v);
}
static void bb_tinfo(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t offset) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) bb_u64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, offset);
}
/* A file with one tensor (and no keys) whose data section holds data_len zero bytes. */
static void bb_one_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                          uint32_t type, uint64_t offset, size_t data_len) {
    bb_hdr(b, 3, 1, 0);
    bb_tinfo(b, name, n_dims, ne, type, offset);
    bb_pad(b, 32);
    bb_zeros(b, data_len);
}

static void expect_fail(const bb *b, int code, const char *msg) {
    char err[SL_ERRMSG] = "";
    sl_gguf *g = (sl_gguf *)1;
    int rc = sl_gguf_open_mem(&g, b->p, b->n, err);
    if (rc != code || !strstr(err, msg))
        fprintf(stderr, "expected %d \"%s\", got %d \"%s\"\n", code, msg, rc, err);
    ASSERT_EQ(rc, code);
    ASSERT(g == NULL);
    ASSERT_STR_CONTAINS(err, msg);
}

static sl_gguf *expect_ok(const void *p, size_t n) {
    char err[SL_ERRMSG] = "";
    sl_gguf *g = NULL;
    int rc = sl_gguf_open_mem(&g, p, n, err);
    if (rc) fprintf(stderr, "unexpected failure: %s\n", err);
    ASSERT_EQ(rc, 0);
    ASSERT(g);
    return g;
}

/* ---- the writer round trip ----------------------------------------------------------- */
static const char *const TOKENS[] = {"<unk>", "", "héllo", "▁the", "\xf0\x9f\x98\x80", "a b"};
#define N_TOKENS (sizeof TOKENS / sizeof TOKENS[0])
static const float FARR[] = {1.5f, -2.25f, 0.0f, 3e-7f};
static const int32_t IARR[] = {-1, 0, 7, INT32_MIN, INT32_MAX};
static const uint32_t UARR[] = {0, 1, UINT32_MAX};

typedef struct {
    const char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[4];
} tspec;

static const tspec TSPECS[] = {
    {"token_embd.weight", SL_GGML_F32, 2, {8, 3, 1, 1}},
    {"blk.0.f16", SL_GGML_F16, 1, {5, 1, 1, 1}},
    {"blk.0.bf16", SL_GGML_BF16, 3, {2, 3, 4, 1}},
    {"blk.0.q8_0", SL_GGML_Q8_0, 2, {64, 3, 1, 1}},
    {"blk.0.q4_0", SL_GGML_Q4_0, 4, {32, 2, 1, 2}},
    {"blk.0.q4_1", SL_GGML_Q4_1, 1, {96, 1, 1, 1}},
    {"blk.0.q5_0", SL_GGML_Q5_0, 2, {32, 1, 1, 1}},
    {"blk.0.q5_1", SL_GGML_Q5_1, 2, {32, 5, 1, 1}},
    {"blk.0.q4_k", SL_GGML_Q4_K, 2, {256, 2, 1, 1}},
    {"blk.0.q5_k", SL_GGML_Q5_K, 1, {512, 1, 1, 1}},
    {"blk.0.q6_k", SL_GGML_Q6_K, 2, {256, 1, 1, 1}},
    {"output_norm.weight", SL_GGML_F32, 1, {8, 1, 1, 1}}, /* 32 bytes: no trailing padding */
};
#define N_TSPECS (sizeof TSPECS / sizeof TSPECS[0])

static uint64_t spec_nbytes(const tspec *s) {
    uint64_t n = (uint64_t)s->ne[0] / (uint64_t)sl_ggml_blck(s->type) *
                 (uint64_t)sl_ggml_type_bytes(s->type);
    return n * (uint64_t)(s->ne[1] * s->ne[2] * s->ne[3]);
}

static void spec_data(const tspec *s, size_t k, uint8_t *dst) {
    uint64_t n = spec_nbytes(s);
    for (uint64_t i = 0; i < n; i++) dst[i] = (uint8_t)(i * 31 + k * 7 + 1);
}

static sl_gguf_writer *make_writer(uint32_t alignment) {
    sl_gguf_writer *w = sl_gguf_writer_create();
    sl_gguf_w_str(w, "general.architecture", "llama");
    sl_gguf_w_u32(w, "llama.block_count", 99); /* overwritten below: keeps position 1 */
    if (alignment) sl_gguf_w_u32(w, "general.alignment", alignment);
    sl_gguf_w_u32(w, "llama.block_count", 2);
    sl_gguf_w_i32(w, "test.i32", -12345);
    sl_gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    sl_gguf_w_bool(w, "test.true", true);
    sl_gguf_w_bool(w, "test.false", false);
    sl_gguf_w_str(w, "test.empty", "");
    sl_gguf_w_str(w, "test.utf8", "naïve ☃");
    sl_gguf_w_arr_str(w, "tokenizer.ggml.tokens", TOKENS, N_TOKENS);
    sl_gguf_w_arr_f32(w, "tokenizer.ggml.scores", FARR, 4);
    sl_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", IARR, 5);
    sl_gguf_w_arr_u32(w, "test.u32s", UARR, 3);
    sl_gguf_w_arr_str(w, "test.no_strings", NULL, 0);
    sl_gguf_w_arr_f32(w, "test.no_floats", NULL, 0);
    for (size_t k = 0; k < N_TSPECS; k++) {
        uint8_t buf[4096];
        ASSERT(spec_nbytes(&TSPECS[k]) <= sizeof buf);
        spec_data(&TSPECS[k], k, buf);
        sl_gguf_w_tensor(w, TSPECS[k].name, TSPECS[k].type, TSPECS[k].n_dims, TSPECS[k].ne, buf);
    }
    return w;
}

static void check_str(const char *s, uint64_t len, const char *want) {
    ASSERT_EQ(len, strlen(want));
    ASSERT(memcmp(s, want, len) == 0);
}

static void check_written(const sl_gguf *g, uint32_t version, uint32_t alignment) {
    char err[SL_ERRMSG];
    ASSERT_EQ(g->version, version);
    ASSERT_EQ(g->alignment, alignment);
    ASSERT_EQ(g->n_kv, alignment != 32 ? 15 : 14);
    ASSERT(!strcmp(g->kv[0].key, "general.architecture"));
    ASSERT(!strcmp(g->kv[1].key, "llama.block_count"));
    for (uint64_t i = 0; i < g->n_kv; i++) ASSERT(sl_gguf_find(g, g->kv[i].key) == &g->kv[i]);
    ASSERT(sl_gguf_find(g, "missing") == NULL);
    ASSERT(sl_gguf_find(g, "") == NULL);

    const char *s;
    uint64_t len;
    uint32_t u;
    float f;
    bool b;
    ASSERT_EQ(sl_gguf_get_str(g, "general.architecture", &s, &len, err), 0);
    check_str(s, len, "llama");
    ASSERT_EQ(sl_gguf_get_str(g, "test.empty", &s, &len, err), 0);
    ASSERT_EQ(len, 0);
    ASSERT_EQ(sl_gguf_get_str(g, "test.utf8", &s, &len, err), 0);
    check_str(s, len, "naïve ☃");
    ASSERT_EQ(sl_gguf_get_u32(g, "llama.block_count", &u, err), 0);
    ASSERT_EQ(u, 2);
    ASSERT_EQ(sl_gguf_find(g, "test.i32")->type, SL_GGUF_I32);
    int32_t i32;
    memcpy(&i32, sl_gguf_find(g, "test.i32")->value, 4);
    ASSERT_EQ(i32, -12345);
    ASSERT_EQ(sl_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f, err), 0);
    ASSERT(f == 1e-5f);
    ASSERT_EQ(sl_gguf_get_bool(g, "test.true", &b, err), 0);
    ASSERT(b);
    ASSERT_EQ(sl_gguf_get_bool(g, "test.false", &b, err), 0);
    ASSERT(!b);
    if (alignment != 32) {
        ASSERT_EQ(sl_gguf_get_u32(g, "general.alignment", &u, err), 0);
        ASSERT_EQ(u, alignment);
    }

    const sl_gguf_kv *kv = sl_gguf_find(g, "tokenizer.ggml.tokens");
    ASSERT(kv && kv->type == SL_GGUF_ARRAY && kv->arr_type == SL_GGUF_STRING);
    ASSERT_EQ(kv->n, N_TOKENS);
    for (uint64_t i = N_TOKENS; i-- > 0;) { /* backwards: access is random, not sequential */
        sl_gguf_arr_str(kv, i, &s, &len);
        check_str(s, len, TOKENS[i]);
    }
    kv = sl_gguf_find(g, "tokenizer.ggml.scores");
    ASSERT(kv && kv->arr_type == SL_GGUF_F32 && kv->n == 4);
    for (uint64_t i = 0; i < 4; i++) ASSERT(sl_gguf_arr_f32(kv, i) == FARR[i]);
    kv = sl_gguf_find(g, "tokenizer.ggml.token_type");
    ASSERT(kv && kv->arr_type == SL_GGUF_I32 && kv->n == 5);
    for (uint64_t i = 0; i < 5; i++) ASSERT_EQ(sl_gguf_arr_int(kv, i), IARR[i]);
    kv = sl_gguf_find(g, "test.u32s");
    ASSERT(kv && kv->arr_type == SL_GGUF_U32 && kv->n == 3);
    for (uint64_t i = 0; i < 3; i++) ASSERT_EQ(sl_gguf_arr_int(kv, i), UARR[i]);
    kv = sl_gguf_find(g, "test.no_strings");
    ASSERT(kv && kv->arr_type == SL_GGUF_STRING && kv->n == 0);
    kv = sl_gguf_find(g, "test.no_floats");
    ASSERT(kv && kv->arr_type == SL_GGUF_F32 && kv->n == 0);

    ASSERT_EQ(g->n_tensors, N_TSPECS);
    ASSERT_EQ(g->data_offset % alignment, 0);
    uint64_t expect = 0;
    for (size_t k = 0; k < N_TSPECS; k++) {
        const tspec *sp = &TSPECS[k];
        const sl_gguf_tensor *t = &g->tensors[k];
        ASSERT(!strcmp(t->name, sp->name));
        ASSERT(sl_gguf_tensor_find(g, sp->name) == t);
        ASSERT_EQ(t->type, sp->type);
        ASSERT_EQ(t->n_dims, sp->n_dims);
        for (int d = 0; d < 4; d++) ASSERT_EQ(t->ne[d], sp->ne[d]);
        ASSERT_EQ(t->nbytes, spec_nbytes(sp));
        ASSERT_EQ(t->offset, expect);
        expect += (t->nbytes + alignment - 1) / alignment * alignment;
        ASSERT((const uint8_t *)t->data == g->base + g->data_offset + t->offset);
        uint8_t buf[4096];
        spec_data(sp, k, buf);
        ASSERT(memcmp(t->data, buf, t->nbytes) == 0);
    }
    ASSERT(sl_gguf_tensor_find(g, "nope") == NULL);
}

static char g_tmp[64];

static const char *tmp_path(void) {
    strcpy(g_tmp, "test_gguf_XXXXXX");
    int fd = mkstemp(g_tmp);
    ASSERT(fd >= 0);
    close(fd);
    return g_tmp;
}

static void test_round_trip(uint32_t alignment) {
    uint32_t al = alignment ? alignment : 32;
    sl_gguf_writer *w = make_writer(alignment);
    uint8_t *buf;
    size_t n;
    ASSERT_EQ(sl_gguf_writer_to_mem(w, &buf, &n), 0);
    ASSERT_EQ(n % al, 0); /* the writer pads the last tensor too */

    sl_gguf *g = expect_ok(buf, n);
    check_written(g, 3, al);
    sl_gguf_close(g);

    /* from a file, through mmap */
    const char *path = tmp_path();
    ASSERT_EQ(sl_gguf_writer_save(w, path), 0);
    char err[SL_ERRMSG];
    ASSERT_EQ(sl_gguf_open(&g, path, err), 0);
    ASSERT_EQ(g->size, n);
    ASSERT(memcmp(g->base, buf, n) == 0);
    check_written(g, 3, al);
    sl_gguf_close(g);
    unlink(path);

    /* v2 parses identically */
    buf[4] = 2;
    g = expect_ok(buf, n);
    check_written(g, 2, al);
    sl_gguf_close(g);

    /* the file may end right after the last tensor's data (no trailing padding) */
    buf[4] = 3;
    g = expect_ok(buf, n);
    const sl_gguf_tensor *last = &g->tensors[g->n_tensors - 1];
    size_t end = (size_t)(g->data_offset + last->offset + last->nbytes);
    sl_gguf_close(g);
    ASSERT(end <= n && n - end < al);
    sl_gguf_close(expect_ok(buf, end));
    bb cut = {0};
    bb_put(&cut, buf, end - 1);
    expect_fail(&cut, SL_EFORMAT, "tensor output_norm.weight: data runs past end of file");
    free(cut.p);

    free(buf);
    sl_gguf_writer_destroy(w);
}

/* Every value type through a hand-made file, and the integer getter's conversions. */
static void make_all_types(bb *b, uint32_t version) {
    bb_hdr(b, version, 1, 17);
    bb_str(b, "t.u8"), bb_u32(b, SL_GGUF_U8), bb_u8(b, 200);
    bb_str(b, "t.i8"), bb_u32(b, SL_GGUF_I8), bb_u8(b, (uint8_t)-5);
    bb_str(b, "t.u16"), bb_u32(b, SL_GGUF_U16), bb_put(b, &(uint16_t){60000}, 2);
    bb_str(b, "t.i16"), bb_u32(b, SL_GGUF_I16), bb_put(b, &(int16_t){-300}, 2);
    bb_str(b, "t.u32"), bb_u32(b, SL_GGUF_U32), bb_u32(b, 4000000000u);
    bb_str(b, "t.i32"), bb_u32(b, SL_GGUF_I32), bb_u32(b, (uint32_t)-7);
    bb_str(b, "t.f32"), bb_u32(b, SL_GGUF_F32), bb_put(b, &(float){0.25f}, 4);
    bb_str(b, "t.bool"), bb_u32(b, SL_GGUF_BOOL), bb_u8(b, 1);
    bb_kv_str(b, "t.str", "s");
    bb_str(b, "t.u64"), bb_u32(b, SL_GGUF_U64), bb_u64(b, 1ull << 40);
    bb_str(b, "t.u64small"), bb_u32(b, SL_GGUF_U64), bb_u64(b, 77);
    bb_str(b, "t.i64"), bb_u32(b, SL_GGUF_I64), bb_u64(b, (uint64_t)-9);
    bb_str(b, "t.f64"), bb_u32(b, SL_GGUF_F64), bb_put(b, &(double){-2.5}, 8);
    bb_str(b, "a.i8"), bb_u32(b, SL_GGUF_ARRAY), bb_u32(b, SL_GGUF_I8), bb_u64(b, 3);
    bb_u8(b, 1), bb_u8(b, 0x80), bb_u8(b, 0x7f);
    bb_str(b, "a.u64"), bb_u32(b, SL_GGUF_ARRAY), bb_u32(b, SL_GGUF_U64), bb_u64(b, 2);
    bb_u64(b, 5), bb_u64(b, 1ull << 50);
    bb_str(b, "a.f64"), bb_u32(b, SL_GGUF_ARRAY), bb_u32(b, SL_GGUF_F64), bb_u64(b, 1);
    bb_put(b, &(double){0.5}, 8);
    bb_str(b, "a.bool"), bb_u32(b, SL_GGUF_ARRAY), bb_u32(b, SL_GGUF_BOOL), bb_u64(b, 3);
    bb_u8(b, 1), bb_u8(b, 0), bb_u8(b, 1);
    bb_tinfo(b, "w", 1, (uint64_t[]){4}, SL_GGML_F32, 0);
    bb_pad(b, 32);
    bb_put(b, (float[]){1, 2, 3, 4}, 16);
}

static void test_all_types(void) {
    for (uint32_t version = 2; version <= 3; version++) {
        bb b = {0};
        make_all_types(&b, version);
        sl_gguf *g = expect_ok(b.p, b.n);
        char err[SL_ERRMSG];
        uint32_t u;
        float f;
        bool bo;
        ASSERT_EQ(g->version, version);
        ASSERT_EQ(g->n_kv, 17);
        for (uint32_t t = 0; t <= SL_GGUF_F64; t++) {
            if (t == SL_GGUF_ARRAY) continue;
            bool seen = false;
            for (uint64_t i = 0; i < g->n_kv; i++) seen |= g->kv[i].type == t;
            ASSERT(seen);
        }
        ASSERT_EQ(sl_gguf_get_u32(g, "t.u8", &u, err), 0); ASSERT_EQ(u, 200);
        ASSERT_EQ(sl_gguf_get_u32(g, "t.u16", &u, err), 0); ASSERT_EQ(u, 60000);
        ASSERT_EQ(sl_gguf_get_u32(g, "t.u32", &u, err), 0); ASSERT_EQ(u, 4000000000u);
        ASSERT_EQ(sl_gguf_get_u32(g, "t.u64small", &u, err), 0); ASSERT_EQ(u, 77);
        ASSERT_EQ(sl_gguf_get_f32(g, "t.f32", &f, err), 0); ASSERT(f == 0.25f);
        ASSERT_EQ(sl_gguf_get_f32(g, "t.f64", &f, err), 0); ASSERT(f == -2.5f);
        ASSERT_EQ(sl_gguf_get_bool(g, "t.bool", &bo, err), 0); ASSERT(bo);
        const sl_gguf_kv *kv = sl_gguf_find(g, "a.i8");
        ASSERT(kv && kv->n == 3);
        ASSERT_EQ(sl_gguf_arr_int(kv, 0), 1);
        ASSERT_EQ(sl_gguf_arr_int(kv, 1), -128);
        ASSERT_EQ(sl_gguf_arr_int(kv, 2), 127);
        kv = sl_gguf_find(g, "a.u64");
        ASSERT_EQ(sl_gguf_arr_int(kv, 1), 1ll << 50);
        ASSERT(sl_gguf_arr_f32(sl_gguf_find(g, "a.f64"), 0) == 0.5f);
        kv = sl_gguf_find(g, "a.bool");
        ASSERT(kv && kv->arr_type == SL_GGUF_BOOL && kv->value[0] == 1 && kv->value[1] == 0);
        const sl_gguf_tensor *t = sl_gguf_tensor_find(g, "w");
        ASSERT(t && t->nbytes == 16 && ((const float *)t->data)[3] == 4.0f);
        sl_gguf_close(g);
        free(b.p);
    }
}

/* (3) getters with wrong types, values that do not fit, missing keys */
static void test_getter_errors(void) {
    bb b = {0};
    make_all_types(&b, 3);
    sl_gguf *g = expect_ok(b.p, b.n);
    char err[SL_ERRMSG];
    uint32_t u = 123;
    float f;
    bool bo;
    const char *s;
    uint64_t len;
    ASSERT_EQ(sl_gguf_get_u32(g, "t.i8", &u, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "key t.i8: value -5 does not fit in UINT32");
    ASSERT_EQ(sl_gguf_get_u32(g, "t.i64", &u, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "value -9 does not fit");
    ASSERT_EQ(sl_gguf_get_u32(g, "t.u64", &u, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "key t.u64: value 1099511627776 does not fit in UINT32");
    ASSERT_EQ(u, 123); /* untouched on failure */
    ASSERT_EQ(sl_gguf_get_u32(g, "t.str", &u, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "key t.str: expected an integer, got STRING");
    ASSERT_EQ(sl_gguf_get_u32(g, "t.f32", &u, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "got FLOAT32");
    ASSERT_EQ(sl_gguf_get_u32(g, "t.bool", &u, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "got BOOL");
    ASSERT_EQ(sl_gguf_get_u32(g, "a.u64", &u, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "key a.u64: expected an integer, got ARRAY");
    ASSERT_EQ(sl_gguf_get_u32(g, "t.missing", &u, err), SL_ENOTFOUND);
    ASSERT_STR_CONTAINS(err, "key t.missing: not found");
    ASSERT_EQ(sl_gguf_get_u32(g, "t.missing", &u, NULL), SL_ENOTFOUND); /* err may be NULL */
    ASSERT_EQ(sl_gguf_get_f32(g, "t.u32", &f, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "key t.u32: expected FLOAT32, got UINT32");
    ASSERT_EQ(sl_gguf_get_f32(g, "t.missing", &f, err), SL_ENOTFOUND);
    ASSERT_EQ(sl_gguf_get_bool(g, "t.u8", &bo, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "key t.u8: expected BOOL, got UINT8");
    ASSERT_EQ(sl_gguf_get_bool(g, "a.bool", &bo, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "got ARRAY");
    ASSERT_EQ(sl_gguf_get_bool(g, "t.missing", &bo, NULL), SL_ENOTFOUND);
    ASSERT_EQ(sl_gguf_get_str(g, "t.i16", &s, &len, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "key t.i16: expected STRING, got INT16");
    ASSERT_EQ(sl_gguf_get_str(g, "t.missing", &s, &len, err), SL_ENOTFOUND);
    sl_gguf_close(g);
    free(b.p);
}

static void test_types(void) {
    ASSERT_EQ(sl_ggml_blck(SL_GGML_Q4_K), 256);
    ASSERT_EQ(sl_ggml_type_bytes(SL_GGML_Q6_K), 210);
    ASSERT_EQ(sl_ggml_type_bytes(SL_GGML_Q5_1), 24);
    ASSERT_EQ(sl_ggml_blck(SL_GGML_BF16), 1);
    ASSERT_EQ(sl_ggml_blck(9), 0); /* Q8_1: not stored */
    ASSERT_EQ(sl_ggml_type_bytes(4), 0);
    ASSERT(!strcmp(sl_ggml_type_name(SL_GGML_Q4_K), "Q4_K"));
    ASSERT(!strcmp(sl_ggml_type_name(1000), "?"));
    ASSERT_EQ(sl_ggml_type_from_name("q4_k"), SL_GGML_Q4_K);
    ASSERT_EQ(sl_ggml_type_from_name("Bf16"), SL_GGML_BF16);
    ASSERT_EQ(sl_ggml_type_from_name("F32"), SL_GGML_F32);
    ASSERT_EQ(sl_ggml_type_from_name("Q4"), -1);
    ASSERT_EQ(sl_ggml_type_from_name("Q4_KK"), -1);
    ASSERT_EQ(sl_ggml_type_from_name(""), -1);
    for (uint32_t t = 0; t < 64; t++)
        if (sl_ggml_blck(t)) ASSERT_EQ(sl_ggml_type_from_name(sl_ggml_type_name(t)), (int)t);
}

/* ---- (2) broken files ------------------------------------------------------------------ */
static void test_header_errors(void) {
    bb b = {0};
    expect_fail(&b, SL_EFORMAT, "truncated file: 0 bytes");
    bb_put(&b, "GGU", 3);
    expect_fail(&b, SL_EFORMAT, "truncated file");
    bb_hdr(&b, 3, 0, 0);
    b.p[3] = 'X';
    expect_fail(&b, SL_EFORMAT, "not a GGUF file (bad magic 47 47 55 58)");
    bb_hdr(&b, 3, 0, 0);
    b.n = 23;
    expect_fail(&b, SL_EFORMAT, "truncated file: 23 bytes, a GGUF header needs 24");
    bb_hdr(&b, 1, 0, 0);
    expect_fail(&b, SL_EUNSUPPORTED, "unsupported GGUF version 1");
    bb_hdr(&b, 0, 0, 0);
    expect_fail(&b, SL_EUNSUPPORTED, "unsupported GGUF version 0");
    bb_hdr(&b, 4, 0, 0);
    expect_fail(&b, SL_EUNSUPPORTED, "unsupported GGUF version 4");
    bb_hdr(&b, 0x03000000, 0, 0);
    expect_fail(&b, SL_EUNSUPPORTED, "big-endian GGUF files are not supported");
    bb_hdr(&b, 3, 0, 1ull << 60);
    bb_kv_u32(&b, "a", 1);
    expect_fail(&b, SL_EFORMAT, "header declares 1152921504606846976 metadata keys");
    bb_hdr(&b, 3, UINT64_MAX, 0);
    bb_zeros(&b, 100);
    expect_fail(&b, SL_EFORMAT, "18446744073709551615 tensors");
    bb_hdr(&b, 3, 2, 1); /* each count fits alone, not together */
    bb_zeros(&b, 70);
    expect_fail(&b, SL_EFORMAT, "1 metadata keys and 2 tensors, only 70 bytes follow");
    bb_hdr(&b, 3, 0, 0); /* the smallest valid file */
    sl_gguf *g = expect_ok(b.p, b.n);
    ASSERT_EQ(g->n_kv + g->n_tensors, 0);
    sl_gguf_close(g);
    char err[SL_ERRMSG];
    ASSERT_EQ(sl_gguf_open_mem(&g, NULL, 0, err), SL_EFORMAT);
    free(b.p);
}

static void test_kv_errors(void) {
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, ""), bb_u32(&b, SL_GGUF_U8), bb_u8(&b, 0), bb_zeros(&b, 8);
    expect_fail(&b, SL_EFORMAT, "metadata key 0: empty key");
    bb_hdr(&b, 3, 0, 2);
    bb_kv_u32(&b, "a.b", 1);
    bb_u64(&b, 70000), bb_zeros(&b, 70000);
    expect_fail(&b, SL_EFORMAT, "metadata key 1: key length 70000 exceeds the limit 65535");
    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 1000), bb_put(&b, "abc", 3), bb_zeros(&b, 20);
    expect_fail(&b, SL_EFORMAT, "truncated file: metadata key 0 runs past end of file");
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "k\xc3\xa9y", 1);
    expect_fail(&b, SL_EFORMAT, "metadata key 0: key is not printable ASCII (byte 0xc3)");
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "k\ny", 1);
    expect_fail(&b, SL_EFORMAT, "not printable ASCII (byte 0x0a)");
    bb_hdr(&b, 3, 0, 3);
    bb_kv_u32(&b, "a.b", 1), bb_kv_u32(&b, "a.c", 2), bb_kv_str(&b, "a.b", "x");
    expect_fail(&b, SL_EFORMAT, "duplicate key a.b");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "a.b"), bb_u32(&b, 13), bb_u64(&b, 0);
    expect_fail(&b, SL_EFORMAT, "key a.b: unknown value type 13");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "a.b"), bb_u32(&b, SL_GGUF_BOOL), bb_u8(&b, 2);
    expect_fail(&b, SL_EFORMAT, "key a.b: bool value 2 is not 0 or 1");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "a.b"), bb_u32(&b, SL_GGUF_ARRAY), bb_u32(&b, SL_GGUF_BOOL), bb_u64(&b, 3);
    bb_u8(&b, 0), bb_u8(&b, 1), bb_u8(&b, 255);
    expect_fail(&b, SL_EFORMAT, "key a.b: element 2: bool value 255 is not 0 or 1");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "a.b"), bb_u32(&b, SL_GGUF_ARRAY), bb_u32(&b, SL_GGUF_ARRAY), bb_u64(&b, 1);
    bb_u32(&b, SL_GGUF_U8), bb_u64(&b, 1), bb_u8(&b, 0);
    expect_fail(&b, SL_EUNSUPPORTED, "key a.b: nested arrays are not supported");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "a.b"), bb_u32(&b, SL_GGUF_ARRAY), bb_u32(&b, 99), bb_u64(&b, 0);
    expect_fail(&b, SL_EFORMAT, "key a.b: unknown array element type 99");
    bb_hdr(&b, 3, 0, 1); /* huge string length */
    bb_str(&b, "a.b"), bb_u32(&b, SL_GGUF_STRING), bb_u64(&b, 1ull << 40), bb_zeros(&b, 16);
    expect_fail(&b, SL_EFORMAT, "key a.b: string length 1099511627776 exceeds the limit");
    bb_hdr(&b, 3, 0, 1); /* string length past the end */
    bb_str(&b, "a.b"), bb_u32(&b, SL_GGUF_STRING), bb_u64(&b, 100), bb_zeros(&b, 16);
    expect_fail(&b, SL_EFORMAT, "truncated file: metadata key 0 (a.b) runs past end of file");
    bb_hdr(&b, 3, 0, 1); /* huge array count */
    bb_str(&b, "a.b"), bb_u32(&b, SL_GGUF_ARRAY), bb_u32(&b, SL_GGUF_U8), bb_u64(&b, 1ull << 40);
    expect_fail(&b, SL_EFORMAT, "key a.b: array of 1099511627776 elements exceeds the limit");
    bb_hdr(&b, 3, 0, 1); /* array count past the end: strings take at least 8 bytes each */
    bb_str(&b, "a.b"), bb_u32(&b, SL_GGUF_ARRAY), bb_u32(&b, SL_GGUF_STRING), bb_u64(&b, 1000);
    bb_zeros(&b, 7999);
    expect_fail(&b, SL_EFORMAT, "truncated file: metadata key 0 (a.b) runs past end of file");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "a.b"), bb_u32(&b, SL_GGUF_ARRAY), bb_u32(&b, SL_GGUF_U64), bb_u64(&b, 10);
    bb_zeros(&b, 79);
    expect_fail(&b, SL_EFORMAT, "truncated file: metadata key 0 (a.b) runs past end of file");
    static const char *const bad_utf8[] = {"\xc3\x28",         "\xc0\xaf", "\xed\xa0\x80",
                                           "\xf4\x90\x80\x80", "ab\xe2\x82", "\x80", "\xff"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++) {
        bb_hdr(&b, 3, 0, 1);
        bb_kv_str(&b, "a.b", bad_utf8[i]);
        expect_fail(&b, SL_EFORMAT, "key a.b: string is not valid UTF-8");
    }
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "tok"), bb_u32(&b, SL_GGUF_ARRAY), bb_u32(&b, SL_GGUF_STRING), bb_u64(&b, 3);
    bb_str(&b, "ok"), bb_str(&b, "é"), bb_str(&b, "\xe9");
    expect_fail(&b, SL_EFORMAT, "key tok: element 2 string is not valid UTF-8");
    bb_hdr(&b, 3, 0, 1); /* a NUL inside a string value is valid UTF-8 */
    bb_str(&b, "a.b"), bb_u32(&b, SL_GGUF_STRING), bb_strn(&b, "a\0b", 3);
    sl_gguf_close(expect_ok(b.p, b.n));

    /* general.alignment */
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 48);
    expect_fail(&b, SL_EFORMAT, "key general.alignment: must be a power of two, got 48");
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 0);
    expect_fail(&b, SL_EFORMAT, "key general.alignment: must be a power of two, got 0");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "general.alignment"), bb_u32(&b, SL_GGUF_I32), bb_u32(&b, 32);
    expect_fail(&b, SL_EFORMAT, "key general.alignment: must be of type UINT32, got INT32");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "general.alignment"), bb_u32(&b, SL_GGUF_U64), bb_u64(&b, 32);
    expect_fail(&b, SL_EFORMAT, "must be of type UINT32, got UINT64");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "general.alignment"), bb_u32(&b, SL_GGUF_ARRAY), bb_u32(&b, SL_GGUF_U32);
    bb_u64(&b, 1), bb_u32(&b, 32);
    expect_fail(&b, SL_EFORMAT, "must be of type UINT32, got ARRAY");
    free(b.p);
}

static void test_tensor_errors(void) {
    bb b = {0};
    uint64_t ne4[4] = {4, 1, 1, 1};
    bb_one_tensor(&b, "", 1, ne4, SL_GGML_F32, 0, 16);
    expect_fail(&b, SL_EFORMAT, "tensor info 0: empty name");
    char longname[65];
    memset(longname, 'x', 64), longname[64] = 0;
    bb_one_tensor(&b, longname, 1, ne4, SL_GGML_F32, 0, 16);
    expect_fail(&b, SL_EFORMAT, "tensor info 0: name is 64 bytes, the limit is 63");
    longname[63] = 0; /* 63 bytes is fine */
    bb_one_tensor(&b, longname, 1, ne4, SL_GGML_F32, 0, 16);
    sl_gguf_close(expect_ok(b.p, b.n));
    bb_one_tensor(&b, "w\xff", 1, ne4, SL_GGML_F32, 0, 16);
    expect_fail(&b, SL_EFORMAT, "tensor info 0: name is not valid UTF-8");
    bb_hdr(&b, 3, 1, 0);
    bb_strn(&b, "a\0b", 3), bb_u32(&b, 1), bb_u64(&b, 4), bb_u32(&b, 0), bb_u64(&b, 0);
    bb_pad(&b, 32), bb_zeros(&b, 16);
    expect_fail(&b, SL_EFORMAT, "tensor info 0: name contains a NUL byte");
    bb_hdr(&b, 3, 2, 0);
    bb_tinfo(&b, "w", 1, ne4, SL_GGML_F32, 0);
    bb_tinfo(&b, "w", 1, ne4, SL_GGML_F32, 32);
    bb_pad(&b, 32), bb_zeros(&b, 64);
    expect_fail(&b, SL_EFORMAT, "duplicate tensor name w");
    bb_one_tensor(&b, "w", 0, ne4, SL_GGML_F32, 0, 16);
    expect_fail(&b, SL_EFORMAT, "tensor w: n_dims 0 is out of range 1..4");
    bb_one_tensor(&b, "w", 5, (uint64_t[]){4, 1, 1, 1, 1}, SL_GGML_F32, 0, 16);
    expect_fail(&b, SL_EFORMAT, "tensor w: n_dims 5 is out of range 1..4");
    bb_one_tensor(&b, "w", 2, (uint64_t[]){4, 0}, SL_GGML_F32, 0, 16);
    expect_fail(&b, SL_EFORMAT, "tensor w: ne[1] is 0, must be at least 1");
    bb_one_tensor(&b, "w", 1, (uint64_t[]){1ull << 63}, SL_GGML_F32, 0, 16);
    expect_fail(&b, SL_EFORMAT, "tensor w: ne[0] = 9223372036854775808 is too large");
    bb_one_tensor(&b, "w", 3, (uint64_t[]){1ull << 32, 1ull << 20, 1ull << 11}, SL_GGML_F32, 0, 16);
    expect_fail(&b, SL_EFORMAT, "tensor w: element count overflows");
    bb_one_tensor(&b, "w", 2, (uint64_t[]){1ull << 31, 1ull << 31}, SL_GGML_F32, 0, 16);
    expect_fail(&b, SL_EFORMAT, "tensor w: byte size overflows");
    bb_one_tensor(&b, "w", 1, ne4, 9, 0, 16);
    expect_fail(&b, SL_EUNSUPPORTED, "tensor w: unsupported tensor type 9");
    bb_one_tensor(&b, "w", 1, ne4, 1000, 0, 16);
    expect_fail(&b, SL_EUNSUPPORTED, "tensor w: unsupported tensor type 1000");
    bb_one_tensor(&b, "w", 2, (uint64_t[]){33, 2}, SL_GGML_Q4_0, 0, 64);
    expect_fail(&b, SL_EFORMAT, "tensor w: ne[0] = 33 is not a multiple of the Q4_0 block size 32");
    bb_one_tensor(&b, "w", 1, (uint64_t[]){128}, SL_GGML_Q6_K, 0, 256);
    expect_fail(&b, SL_EFORMAT, "ne[0] = 128 is not a multiple of the Q6_K block size 256");
    bb_one_tensor(&b, "w", 1, ne4, SL_GGML_F32, 8, 32);
    expect_fail(&b, SL_EFORMAT, "tensor w: offset 8 is not a multiple of the alignment 32");
    bb_one_tensor(&b, "w", 1, ne4, SL_GGML_F32, 32, 64);
    expect_fail(&b, SL_EFORMAT, "tensor w: offset 32, expected 0");
    bb_hdr(&b, 3, 2, 0); /* second tensor leaves a gap */
    bb_tinfo(&b, "a", 1, ne4, SL_GGML_F32, 0);
    bb_tinfo(&b, "b", 1, ne4, SL_GGML_F32, 64);
    bb_pad(&b, 32), bb_zeros(&b, 96);
    expect_fail(&b, SL_EFORMAT, "tensor b: offset 64, expected 32");
    bb_hdr(&b, 3, 2, 0); /* second tensor overlaps the first */
    bb_tinfo(&b, "a", 1, (uint64_t[]){16}, SL_GGML_F32, 0);
    bb_tinfo(&b, "b", 1, ne4, SL_GGML_F32, 32);
    bb_pad(&b, 32), bb_zeros(&b, 96);
    expect_fail(&b, SL_EFORMAT, "tensor b: offset 32, expected 64");
    bb_one_tensor(&b, "blk.3.attn_q.weight", 1, (uint64_t[]){16}, SL_GGML_F32, 0, 63);
    expect_fail(&b, SL_EFORMAT, "tensor blk.3.attn_q.weight: data runs past end of file");
    bb_one_tensor(&b, "w", 1, (uint64_t[]){16}, SL_GGML_F32, 0, 64);
    sl_gguf_close(expect_ok(b.p, b.n));
    bb_one_tensor(&b, "w", 2, (uint64_t[]){1ull << 30, 1ull << 30}, SL_GGML_F32, 0, 64);
    expect_fail(&b, SL_EFORMAT, "tensor w: data runs past end of file");
    bb_hdr(&b, 3, 1, 0); /* the header padding itself is missing */
    bb_tinfo(&b, "w", 1, ne4, SL_GGML_F32, 0);
    expect_fail(&b, SL_EFORMAT, "tensor w: data runs past end of file");
    bb_hdr(&b, 3, 1, 0);
    bb_str(&b, "w"), bb_u32(&b, 4), bb_u64(&b, 4), bb_u64(&b, 1), bb_u64(&b, 1), bb_zeros(&b, 5);
    expect_fail(&b, SL_EFORMAT, "truncated file: tensor info 0 (w) runs past end of file");

    /* general.alignment = 64 moves the data section and the offsets */
    bb_hdr(&b, 3, 2, 1);
    bb_kv_u32(&b, "general.alignment", 64);
    bb_tinfo(&b, "a", 1, ne4, SL_GGML_F32, 0);
    bb_tinfo(&b, "b", 1, ne4, SL_GGML_F32, 32);
    bb_pad(&b, 64), bb_zeros(&b, 96);
    expect_fail(&b, SL_EFORMAT, "tensor b: offset 32 is not a multiple of the alignment 64");
    bb_hdr(&b, 3, 2, 1);
    bb_kv_u32(&b, "general.alignment", 64);
    bb_tinfo(&b, "a", 1, ne4, SL_GGML_F32, 0);
    bb_tinfo(&b, "b", 1, ne4, SL_GGML_F32, 64);
    bb_pad(&b, 64);
    size_t data_at = b.n;
    bb_zeros(&b, 80);
    sl_gguf *g = expect_ok(b.p, b.n);
    ASSERT_EQ(g->alignment, 64);
    ASSERT_EQ(g->data_offset, data_at);
    ASSERT((const uint8_t *)sl_gguf_tensor_find(g, "b")->data == b.p + data_at + 64);
    sl_gguf_close(g);
    free(b.p);
}

/* Every proper prefix of a valid file fails with a truncation message. */
static void test_truncation(void) {
    sl_gguf_writer *w = make_writer(0);
    uint8_t *buf;
    size_t n;
    ASSERT_EQ(sl_gguf_writer_to_mem(w, &buf, &n), 0);
    sl_gguf_writer_destroy(w);
    for (size_t len = 0; len < n; len++) {
        uint8_t *cut = malloc(len ? len : 1); /* own allocation: ASan sees any over-read */
        memcpy(cut, buf, len);
        char err[SL_ERRMSG] = "";
        sl_gguf *g = NULL;
        int rc = sl_gguf_open_mem(&g, cut, len, err);
        if (rc != SL_EFORMAT || !(strstr(err, "truncated file") || strstr(err, "past end of file")))
            fprintf(stderr, "prefix %zu of %zu: rc %d \"%s\"\n", len, n, rc, err);
        ASSERT_EQ(rc, SL_EFORMAT);
        ASSERT(g == NULL);
        ASSERT(strstr(err, "truncated file") || strstr(err, "past end of file"));
        free(cut);
    }
    sl_gguf_close(expect_ok(buf, n));
    free(buf);
}

/* Random byte mutations of a valid file never crash; results are consistent. */
static void test_mutations(void) {
    sl_gguf_writer *w = make_writer(0);
    uint8_t *buf;
    size_t n;
    ASSERT_EQ(sl_gguf_writer_to_mem(w, &buf, &n), 0);
    sl_gguf_writer_destroy(w);
    uint8_t *m = malloc(n);
    sl_rng rng;
    sl_rng_seed(&rng, 42);
    int n_ok = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(m, buf, n);
        int flips = 1 + (int)(sl_rng_u64(&rng) % 4);
        size_t hdr = 600; /* most of the interest is in the metadata and tensor infos */
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(sl_rng_u64(&rng) % (it % 2 ? n : hdr));
            m[at] = (uint8_t)sl_rng_u64(&rng);
        }
        size_t len = it % 5 == 0 ? (size_t)(sl_rng_u64(&rng) % n) : n;
        char err[SL_ERRMSG] = "";
        sl_gguf *g = NULL;
        int rc = sl_gguf_open_mem(&g, m, len, err);
        if (rc) {
            ASSERT(rc < 0 && g == NULL && err[0]);
            continue;
        }
        n_ok++;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const sl_gguf_tensor *t = &g->tensors[i];
            ASSERT(sl_gguf_tensor_find(g, t->name) == t);
            ASSERT((const uint8_t *)t->data + t->nbytes <= m + len);
        }
        for (uint64_t i = 0; i < g->n_kv; i++) ASSERT(sl_gguf_find(g, g->kv[i].key) == &g->kv[i]);
        sl_gguf_close(g);
    }
    ASSERT(n_ok > 0);
    free(m);
    free(buf);
}

static void test_open_errors(void) {
    char err[SL_ERRMSG];
    sl_gguf *g = (sl_gguf *)1;
    ASSERT_EQ(sl_gguf_open(&g, "/nonexistent/dir/x.gguf", err), SL_EIO);
    ASSERT(g == NULL);
    ASSERT_STR_CONTAINS(err, "cannot open /nonexistent/dir/x.gguf");
    ASSERT_EQ(sl_gguf_open(&g, ".", err), SL_EIO);
    ASSERT_STR_CONTAINS(err, "not a regular file");
    const char *path = tmp_path(); /* empty file */
    ASSERT_EQ(sl_gguf_open(&g, path, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "truncated file: 0 bytes");
    FILE *f = fopen(path, "wb");
    ASSERT(f);
    fwrite("GGUF\x01\0\0\0", 1, 8, f);
    fwrite((uint64_t[]){0, 0}, 8, 2, f);
    fclose(f);
    ASSERT_EQ(sl_gguf_open(&g, path, err), SL_EUNSUPPORTED);
    ASSERT_STR_CONTAINS(err, "unsupported GGUF version 1");
    unlink(path);
    sl_gguf_writer *w = make_writer(0);
    ASSERT_EQ(sl_gguf_writer_save(w, "/nonexistent/dir/x.gguf"), SL_EIO);
    sl_gguf_writer_destroy(w);
}

/* ---- seed corpus for the fuzzer -------------------------------------------------------- */
static void write_file(const char *dir, const char *name, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ASSERT(f);
    ASSERT_EQ(fwrite(p, 1, n, f), n);
    ASSERT_EQ(fclose(f), 0);
}

static void write_writer(const char *dir, const char *name, sl_gguf_writer *w) {
    uint8_t *buf;
    size_t n;
    ASSERT_EQ(sl_gguf_writer_to_mem(w, &buf, &n), 0);
    sl_gguf_close(expect_ok(buf, n));
    write_file(dir, name, buf, n);
    free(buf);
    sl_gguf_writer_destroy(w);
}

static int write_seeds(const char *dir) {
    mkdir(dir, 0777);
    write_writer(dir, "full.gguf", make_writer(0));
    write_writer(dir, "align64.gguf", make_writer(64));
    bb b = {0};
    make_all_types(&b, 3);
    write_file(dir, "all_types_v3.gguf", b.p, b.n);
    make_all_types(&b, 2);
    write_file(dir, "all_types_v2.gguf", b.p, b.n);
    bb_hdr(&b, 3, 0, 0);
    write_file(dir, "empty.gguf", b.p, b.n);
    free(b.p);
    /* one small file per tensor type, with a few model-like keys */
    for (size_t k = 0; k < N_TSPECS; k++) {
        sl_gguf_writer *w = sl_gguf_writer_create();
        sl_gguf_w_str(w, "general.architecture", k % 2 ? "qwen2" : "llama");
        sl_gguf_w_u32(w, "llama.embedding_length", (uint32_t)TSPECS[k].ne[0]);
        uint8_t data[4096];
        spec_data(&TSPECS[k], k, data);
        sl_gguf_w_tensor(w, TSPECS[k].name, TSPECS[k].type, TSPECS[k].n_dims, TSPECS[k].ne, data);
        sl_gguf_w_tensor(w, "x", SL_GGML_F32, 1, (int64_t[]){3}, (float[]){1, 2, 3});
        char name[64];
        snprintf(name, sizeof name, "type_%s.gguf", sl_ggml_type_name(TSPECS[k].type));
        write_writer(dir, name, w);
    }
    /* a tokenizer-like file: many strings */
    sl_gguf_writer *w = sl_gguf_writer_create();
    char toks[300][8];
    const char *tp[300];
    for (int i = 0; i < 300; i++) snprintf(toks[i], sizeof toks[i], "t%d", i), tp[i] = toks[i];
    sl_gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    sl_gguf_w_arr_str(w, "tokenizer.ggml.tokens", tp, 300);
    sl_gguf_w_arr_str(w, "tokenizer.ggml.merges", tp, 100);
    sl_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1);
    write_writer(dir, "tokenizer.gguf", w);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-seeds")) return write_seeds(argv[2]);
    test_types();
    test_round_trip(0);
    test_round_trip(64);
    test_round_trip(128);
    test_all_types();
    test_getter_errors();
    test_header_errors();
    test_kv_errors();
    test_tensor_errors();
    test_truncation();
    test_mutations();
    test_open_errors();
    printf("test_gguf: ok\n");
    return 0;
}
