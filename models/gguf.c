/* gguf.c — GGUF reader (validates every field before use) and writer. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian fields with memcpy; big-endian hosts need byte swaps"
#endif

#define MAX_STR (1ull << 30)  /* llama.cpp's caps on string lengths and array counts */
#define MAX_ARR (1ull << 30)
#define MAX_KEY 65535         /* spec limit on key length */
#define MAX_NAME 64           /* GGML_MAX_NAME, including the NUL */
#define DEFAULT_ALIGN 32
#define MIN_KV_BYTES 14       /* key length 8 + one key byte + type 4 + one value byte */
#define MIN_TENSOR_BYTES 33   /* name 8+1, n_dims 4, ne[0] 8, type 4, offset 8 */

/* ---- ggml types ------------------------------------------------------------------------ */
static const struct {
    uint32_t id;
    int blck, bytes;
    const char *name;
} TYPES[] = {
    {SL_GGML_F32, 1, 4, "F32"},       {SL_GGML_F16, 1, 2, "F16"},
    {SL_GGML_BF16, 1, 2, "BF16"},     {SL_GGML_Q8_0, 32, 34, "Q8_0"},
    {SL_GGML_Q4_0, 32, 18, "Q4_0"},   {SL_GGML_Q4_1, 32, 20, "Q4_1"},
    {SL_GGML_Q5_0, 32, 22, "Q5_0"},   {SL_GGML_Q5_1, 32, 24, "Q5_1"},
    {SL_GGML_Q4_K, 256, 144, "Q4_K"}, {SL_GGML_Q5_K, 256, 176, "Q5_K"},
    {SL_GGML_Q6_K, 256, 210, "Q6_K"},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static int type_index(uint32_t type) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (TYPES[i].id == type) return (int)i;
    return -1;
}

int sl_ggml_blck(uint32_t type) {
    int i = type_index(type);
    return i < 0 ? 0 : TYPES[i].blck;
}

int sl_ggml_type_bytes(uint32_t type) {
    int i = type_index(type);
    return i < 0 ? 0 : TYPES[i].bytes;
}

const char *sl_ggml_type_name(uint32_t type) {
    int i = type_index(type);
    return i < 0 ? "?" : TYPES[i].name;
}

int sl_ggml_type_from_name(const char *name) {
    if (!name) return -1;
    for (size_t i = 0; i < N_TYPES; i++) {
        const char *a = name, *b = TYPES[i].name;
        while (*a && *b) {
            char c = *a >= 'a' && *a <= 'z' ? (char)(*a - 'a' + 'A') : *a;
            if (c != *b) break;
            a++, b++;
        }
        if (!*a && !*b) return (int)TYPES[i].id;
    }
    return -1;
}

/* Bytes of ne[0..3] elements of a supported type; -1 on overflow or an invalid shape. */
static int tensor_nbytes(uint32_t type, const int64_t ne[4], uint64_t *out) {
    int blk = sl_ggml_blck(type);
    if (blk == 0 || ne[0] < 1 || ne[0] % blk) return -1;
    uint64_t n;
    if (sl_mul_u64((uint64_t)(ne[0] / blk), (uint64_t)sl_ggml_type_bytes(type), &n)) return -1;
    for (int d = 1; d < 4; d++)
        if (ne[d] < 1 || sl_mul_u64(n, (uint64_t)ne[d], &n)) return -1;
    *out = n;
    return 0;
}

static int align_up(uint64_t x, uint64_t align, uint64_t *out) {
    if (sl_add_u64(x, align - 1, out)) return -1;
    *out &= ~(align - 1);
    return 0;
}

/* ---- metadata value types -------------------------------------------------------------- */
static const char *const VTYPE_NAMES[] = {"UINT8",  "INT8",    "UINT16", "INT16", "UINT32",
                                          "INT32",  "FLOAT32", "BOOL",   "STRING", "ARRAY",
                                          "UINT64", "INT64",   "FLOAT64"};
static const uint8_t VTYPE_SIZE[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}; /* 0: variable */

static const char *vtype_name(uint32_t t) { return t <= SL_GGUF_F64 ? VTYPE_NAMES[t] : "?"; }

/* Reads an integer of value type t at p as sign + magnitude; false if t is not an integer. */
static bool read_int(const uint8_t *p, uint32_t t, bool *neg, uint64_t *mag) {
    int64_t s;
    uint64_t u;
    switch (t) {
    case SL_GGUF_U8: u = p[0]; goto unsig;
    case SL_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); u = v; goto unsig; }
    case SL_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); u = v; goto unsig; }
    case SL_GGUF_U64: memcpy(&u, p, 8); goto unsig;
    case SL_GGUF_I8: s = (int8_t)p[0]; goto sig;
    case SL_GGUF_I16: { int16_t v; memcpy(&v, p, 2); s = v; goto sig; }
    case SL_GGUF_I32: { int32_t v; memcpy(&v, p, 4); s = v; goto sig; }
    case SL_GGUF_I64: memcpy(&s, p, 8); goto sig;
    default: return false;
    }
unsig:
    *neg = false, *mag = u;
    return true;
sig:
    *neg = s < 0, *mag = s < 0 ? 0 - (uint64_t)s : (uint64_t)s;
    return true;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const uint8_t *s, uint64_t n) {
    uint64_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        uint64_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return false;
        if (n - i < len) return false;
        for (uint64_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

/* ---- name index (sorted; used for duplicate detection and lookups) ---------------------- */
typedef struct {
    const char *name;
    size_t idx;
} name_ent;

/* Merge sort: O(n log n) whatever the input (a hostile file cannot make it quadratic). */
static void sort_names(name_ent *a, name_ent *tmp, size_t n) {
    if (n < 2) return;
    size_t h = n / 2, i = 0, j = h, k = 0;
    sort_names(a, tmp, h);
    sort_names(a + h, tmp, n - h);
    while (i < h && j < n) tmp[k++] = strcmp(a[j].name, a[i].name) < 0 ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

/* Builds the sorted index of n names; returns the first duplicate name through *dup. */
static int build_index(name_ent **out, size_t n, const char *(*get)(const sl_gguf *, size_t),
                       const sl_gguf *g, const char **dup) {
    *dup = NULL;
    name_ent *a = malloc((n ? n : 1) * sizeof *a), *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!a || !tmp) {
        free(a), free(tmp);
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) a[i] = (name_ent){get(g, i), i};
    sort_names(a, tmp, n);
    free(tmp);
    for (size_t i = 1; i < n && !*dup; i++)
        if (!strcmp(a[i - 1].name, a[i].name)) *dup = a[i].name;
    *out = a;
    return 0;
}

static const name_ent *index_find(const name_ent *a, size_t n, const char *name) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(a[mid].name, name);
        if (c == 0) return &a[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static const char *kv_name(const sl_gguf *g, size_t i) { return g->kv[i].key; }
static const char *tensor_name(const sl_gguf *g, size_t i) { return g->tensors[i].name; }

/* ---- reader ------------------------------------------------------------------------------ */
typedef struct {
    void *map;          /* mmap'd region, or NULL for sl_gguf_open_mem */
    size_t map_len;
    name_ent *kv_index; /* sorted by key */
    name_ent *t_index;  /* sorted by tensor name */
} gguf_priv;

typedef struct {
    const uint8_t *p;
    uint64_t size, pos;
    char *err;
    char where[160]; /* the item being read, for truncation messages */
    char item[112];  /* the item named in other messages: "key general.name", "tensor x" */
} reader;

/* Copies at most 64 bytes of a name for a message, control bytes replaced by '?'. */
static void sanitize(char *dst, size_t cap, const char *src) {
    size_t i = 0;
    for (; src[i] && i < 64 && i + 1 < cap; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
    dst[i] = 0;
    if (src[i] && cap > 4 && i + 4 < cap) strcpy(dst + i, "...");
}

static int truncated(reader *r) {
    return sl_fail(r->err, SL_EFORMAT, "truncated file: %s runs past end of file", r->where);
}

static bool have(const reader *r, uint64_t n) { return n <= r->size - r->pos; }

static int rd_u32(reader *r, uint32_t *v) {
    if (!have(r, 4)) return truncated(r);
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(reader *r, uint64_t *v) {
    if (!have(r, 8)) return truncated(r);
    memcpy(v, r->p + r->pos, 8);
    r->pos += 8;
    return 0;
}

/* Reads a gguf_string's length (capped at `cap`, named `what` in the message) and checks
 * that its bytes are in the file; leaves pos at the first byte. */
static int rd_strlen(reader *r, uint64_t *len, uint64_t cap, const char *what) {
    int rc = rd_u64(r, len);
    if (rc) return rc;
    if (*len > cap)
        return sl_fail(r->err, SL_EFORMAT, "%s: %s length %llu exceeds the limit %llu", r->item,
                       what, (unsigned long long)*len, (unsigned long long)cap);
    return have(r, *len) ? 0 : truncated(r);
}

static char *copy_name(const uint8_t *s, uint64_t len) {
    char *c = malloc(len + 1);
    if (c) memcpy(c, s, len), c[len] = 0;
    return c;
}

/* Validates `count` values of type t starting at pos (a scalar when !is_arr) and moves past
 * them. String arrays get kv->str_offsets. */
static int read_values(reader *r, sl_gguf_kv *kv, uint32_t t, uint64_t count, bool is_arr) {
    uint64_t rem = r->size - r->pos, start = r->pos;
    char elem[48] = "";
    if (t == SL_GGUF_STRING) {
        if (count > rem / 8) return truncated(r);
        uint64_t *offs = NULL;
        if (is_arr && count) {
            offs = malloc(count * sizeof *offs); /* count <= file size / 8 */
            if (!offs) return sl_fail(r->err, SL_ENOMEM, "%s: out of memory", r->item);
            kv->str_offsets = offs;
        }
        for (uint64_t i = 0; i < count; i++) {
            if (offs) offs[i] = r->pos - start;
            uint64_t len = 0;
            int rc = rd_strlen(r, &len, MAX_STR, is_arr ? "string element" : "string");
            if (rc) return rc;
            if (!utf8_valid(r->p + r->pos, len)) {
                if (is_arr) snprintf(elem, sizeof elem, "element %llu ", (unsigned long long)i);
                return sl_fail(r->err, SL_EFORMAT, "%s: %sstring is not valid UTF-8", r->item,
                               elem);
            }
            r->pos += len;
        }
        return 0;
    }
    uint64_t sz = VTYPE_SIZE[t];
    if (count > rem / sz) return truncated(r);
    if (t == SL_GGUF_BOOL)
        for (uint64_t i = 0; i < count; i++) {
            unsigned b = r->p[r->pos + i];
            if (b <= 1) continue;
            if (is_arr) snprintf(elem, sizeof elem, "element %llu: ", (unsigned long long)i);
            return sl_fail(r->err, SL_EFORMAT, "%s: %sbool value %u is not 0 or 1", r->item, elem,
                           b);
        }
    r->pos += count * sz;
    return 0;
}

static int read_kv(reader *r, sl_gguf *g, uint64_t i) {
    sl_gguf_kv *kv = &g->kv[i];
    snprintf(r->where, sizeof r->where, "metadata key %llu", (unsigned long long)i);
    snprintf(r->item, sizeof r->item, "metadata key %llu", (unsigned long long)i);
    uint64_t len = 0;
    int rc = rd_strlen(r, &len, MAX_KEY, "key");
    if (rc) return rc;
    if (len == 0) return sl_fail(r->err, SL_EFORMAT, "%s: empty key", r->item);
    const uint8_t *s = r->p + r->pos;
    for (uint64_t k = 0; k < len; k++)
        if (s[k] < 0x20 || s[k] > 0x7e)
            return sl_fail(r->err, SL_EFORMAT, "%s: key is not printable ASCII (byte 0x%02x)",
                           r->item, s[k]);
    if (!(kv->key = copy_name(s, len))) return sl_fail(r->err, SL_ENOMEM, "out of memory");
    r->pos += len;
    char name[72];
    sanitize(name, sizeof name, kv->key);
    snprintf(r->where, sizeof r->where, "metadata key %llu (%s)", (unsigned long long)i, name);
    snprintf(r->item, sizeof r->item, "key %s", name);

    uint32_t t = 0;
    if ((rc = rd_u32(r, &t))) return rc;
    if (t > SL_GGUF_F64)
        return sl_fail(r->err, SL_EFORMAT, "%s: unknown value type %u", r->item, t);
    kv->type = t;
    kv->n = 1;
    if (t == SL_GGUF_ARRAY) {
        uint32_t et = 0;
        if ((rc = rd_u32(r, &et))) return rc;
        if (et == SL_GGUF_ARRAY)
            return sl_fail(r->err, SL_EUNSUPPORTED, "%s: nested arrays are not supported", r->item);
        if (et > SL_GGUF_F64)
            return sl_fail(r->err, SL_EFORMAT, "%s: unknown array element type %u", r->item, et);
        if ((rc = rd_u64(r, &kv->n))) return rc;
        if (kv->n > MAX_ARR)
            return sl_fail(r->err, SL_EFORMAT, "%s: array of %llu elements exceeds the limit %llu",
                           r->item, (unsigned long long)kv->n, (unsigned long long)MAX_ARR);
        kv->arr_type = et;
        kv->value = r->p + r->pos;
        if ((rc = read_values(r, kv, et, kv->n, true))) return rc;
    } else {
        kv->value = r->p + r->pos;
        if ((rc = read_values(r, kv, t, 1, false))) return rc;
    }
    if (!strcmp(kv->key, "general.alignment")) {
        if (t != SL_GGUF_U32)
            return sl_fail(r->err, SL_EFORMAT, "%s: must be of type UINT32, got %s", r->item,
                           vtype_name(t));
        uint32_t a;
        memcpy(&a, kv->value, 4);
        if (a == 0 || (a & (a - 1)))
            return sl_fail(r->err, SL_EFORMAT, "%s: must be a power of two, got %u", r->item, a);
        g->alignment = a;
    }
    return 0;
}

static int read_tensor_info(reader *r, sl_gguf *g, uint64_t i) {
    sl_gguf_tensor *t = &g->tensors[i];
    snprintf(r->where, sizeof r->where, "tensor info %llu", (unsigned long long)i);
    snprintf(r->item, sizeof r->item, "tensor info %llu", (unsigned long long)i);
    uint64_t len = 0;
    int rc = rd_strlen(r, &len, MAX_STR, "name");
    if (rc) return rc;
    if (len == 0) return sl_fail(r->err, SL_EFORMAT, "%s: empty name", r->item);
    if (len >= MAX_NAME)
        return sl_fail(r->err, SL_EFORMAT, "%s: name is %llu bytes, the limit is %d", r->item,
                       (unsigned long long)len, MAX_NAME - 1);
    const uint8_t *s = r->p + r->pos;
    if (memchr(s, 0, len))
        return sl_fail(r->err, SL_EFORMAT, "%s: name contains a NUL byte", r->item);
    if (!utf8_valid(s, len))
        return sl_fail(r->err, SL_EFORMAT, "%s: name is not valid UTF-8", r->item);
    if (!(t->name = copy_name(s, len))) return sl_fail(r->err, SL_ENOMEM, "out of memory");
    r->pos += len;
    char name[72];
    sanitize(name, sizeof name, t->name);
    snprintf(r->where, sizeof r->where, "tensor info %llu (%s)", (unsigned long long)i, name);
    snprintf(r->item, sizeof r->item, "tensor %s", name);

    if ((rc = rd_u32(r, &t->n_dims))) return rc;
    if (t->n_dims < 1 || t->n_dims > 4)
        return sl_fail(r->err, SL_EFORMAT, "%s: n_dims %u is out of range 1..4", r->item,
                       t->n_dims);
    uint64_t elems = 1;
    for (int d = 0; d < 4; d++) {
        uint64_t v = 1;
        if ((uint32_t)d < t->n_dims && (rc = rd_u64(r, &v))) return rc;
        if (v == 0)
            return sl_fail(r->err, SL_EFORMAT, "%s: ne[%d] is 0, must be at least 1", r->item, d);
        if (v >= 1ull << 63)
            return sl_fail(r->err, SL_EFORMAT, "%s: ne[%d] = %llu is too large", r->item, d,
                           (unsigned long long)v);
        if (sl_mul_u64(elems, v, &elems) || elems >= 1ull << 63)
            return sl_fail(r->err, SL_EFORMAT, "%s: element count overflows", r->item);
        t->ne[d] = (int64_t)v;
    }
    if ((rc = rd_u32(r, &t->type))) return rc;
    int blk = sl_ggml_blck(t->type);
    if (blk == 0)
        return sl_fail(r->err, SL_EUNSUPPORTED, "%s: unsupported tensor type %u", r->item, t->type);
    if (t->ne[0] % blk)
        return sl_fail(r->err, SL_EFORMAT,
                       "%s: ne[0] = %lld is not a multiple of the %s block size %d", r->item,
                       (long long)t->ne[0], sl_ggml_type_name(t->type), blk);
    if (tensor_nbytes(t->type, t->ne, &t->nbytes))
        return sl_fail(r->err, SL_EFORMAT, "%s: byte size overflows", r->item);
    return rd_u64(r, &t->offset);
}

/* Checks offsets (multiples of ALIGN, the running sum of padded sizes) and data bounds. */
static int place_tensors(reader *r, sl_gguf *g) {
    uint64_t expect = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        sl_gguf_tensor *t = &g->tensors[i];
        char name[72];
        sanitize(name, sizeof name, t->name);
        if (t->offset % g->alignment)
            return sl_fail(r->err, SL_EFORMAT,
                           "tensor %s: offset %llu is not a multiple of the alignment %u", name,
                           (unsigned long long)t->offset, g->alignment);
        if (t->offset != expect)
            return sl_fail(r->err, SL_EFORMAT,
                           "tensor %s: offset %llu, expected %llu (tensors must follow each other "
                           "in order, each padded to %u bytes)",
                           name, (unsigned long long)t->offset, (unsigned long long)expect,
                           g->alignment);
        uint64_t end, padded;
        if (sl_add_u64(g->data_offset, t->offset, &end) || sl_add_u64(end, t->nbytes, &end) ||
            end > g->size)
            return sl_fail(r->err, SL_EFORMAT, "tensor %s: data runs past end of file", name);
        if (align_up(t->nbytes, g->alignment, &padded) || sl_add_u64(expect, padded, &expect))
            return sl_fail(r->err, SL_EFORMAT, "tensor %s: data runs past end of file", name);
        t->data = g->base + g->data_offset + t->offset;
    }
    return 0;
}

static int parse(sl_gguf *g, char *err) {
    gguf_priv *pv = g->priv;
    reader rr = {.p = g->base, .size = g->size, .err = err}, *r = &rr;
    snprintf(r->where, sizeof r->where, "header");
    if (g->size >= 4 && memcmp(g->base, "GGUF", 4))
        return sl_fail(err, SL_EFORMAT, "not a GGUF file (bad magic %02x %02x %02x %02x)",
                       g->base[0], g->base[1], g->base[2], g->base[3]);
    if (g->size < 24)
        return sl_fail(err, SL_EFORMAT, "truncated file: %llu bytes, a GGUF header needs 24",
                       (unsigned long long)g->size);
    r->pos = 4;
    uint64_t nt = 0, nkv = 0;
    rd_u32(r, &g->version);
    rd_u64(r, &nt);
    rd_u64(r, &nkv);
    if (g->version != 0 && (g->version & 0xFFFF) == 0)
        return sl_fail(err, SL_EUNSUPPORTED,
                       "big-endian GGUF files are not supported (version field 0x%08x)",
                       g->version);
    if (g->version < 2 || g->version > 3)
        return sl_fail(err, SL_EUNSUPPORTED, "unsupported GGUF version %u (need 2 or 3)",
                       g->version);
    uint64_t rem = g->size - r->pos;
    if (nkv > rem / MIN_KV_BYTES)
        return sl_fail(err, SL_EFORMAT,
                       "truncated file: header declares %llu metadata keys, only %llu bytes follow",
                       (unsigned long long)nkv, (unsigned long long)rem);
    if (nt > rem / MIN_TENSOR_BYTES || nkv * MIN_KV_BYTES + nt * MIN_TENSOR_BYTES > rem)
        return sl_fail(err, SL_EFORMAT,
                       "truncated file: header declares %llu metadata keys and %llu tensors, only "
                       "%llu bytes follow",
                       (unsigned long long)nkv, (unsigned long long)nt, (unsigned long long)rem);
    g->alignment = DEFAULT_ALIGN;
    /* Allocations proportional to the counts: bounded by the file size checked above. */
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return sl_fail(err, SL_ENOMEM, "out of memory");
    int rc;
    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv = i + 1; /* so that close frees what was read */
        if ((rc = read_kv(r, g, i))) return rc;
    }
    const char *dup;
    if ((rc = build_index(&pv->kv_index, nkv, kv_name, g, &dup)))
        return sl_fail(err, rc, "out of memory");
    if (dup) {
        char name[72];
        sanitize(name, sizeof name, dup);
        return sl_fail(err, SL_EFORMAT, "duplicate key %s", name);
    }
    for (uint64_t i = 0; i < nt; i++) {
        g->n_tensors = i + 1;
        if ((rc = read_tensor_info(r, g, i))) return rc;
    }
    if ((rc = build_index(&pv->t_index, nt, tensor_name, g, &dup)))
        return sl_fail(err, rc, "out of memory");
    if (dup) {
        char name[72];
        sanitize(name, sizeof name, dup);
        return sl_fail(err, SL_EFORMAT, "duplicate tensor name %s", name);
    }
    if (align_up(r->pos, g->alignment, &g->data_offset) || g->data_offset > g->size)
        g->data_offset = g->size; /* then no tensor fits: place_tensors reports it */
    return place_tensors(r, g);
}

/* Takes ownership of map (may be NULL) on every path. */
static int open_common(sl_gguf **out, const uint8_t *base, uint64_t size, void *map,
                       size_t map_len, char err[SL_ERRMSG]) {
    *out = NULL;
    sl_gguf *g = calloc(1, sizeof *g);
    gguf_priv *pv = calloc(1, sizeof *pv);
    if (!g || !pv) {
        free(g), free(pv);
        if (map) munmap(map, map_len);
        return sl_fail(err, SL_ENOMEM, "out of memory");
    }
    pv->map = map, pv->map_len = map_len;
    g->priv = pv, g->base = base, g->size = size;
    int rc = parse(g, err);
    if (rc) {
        sl_gguf_close(g);
        return rc;
    }
    if (err) err[0] = 0;
    *out = g;
    return 0;
}

int sl_gguf_open_mem(sl_gguf **out, const void *data, size_t size, char err[SL_ERRMSG]) {
    static const uint8_t empty[1];
    if (!data) size = 0;
    return open_common(out, data ? data : empty, size, NULL, 0, err);
}

int sl_gguf_open(sl_gguf **out, const char *path, char err[SL_ERRMSG]) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sl_fail(err, SL_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return sl_fail(err, SL_EIO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return sl_fail(err, SL_EIO, "cannot open %s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return sl_fail(err, SL_EIO, "cannot map %s: %s", path, strerror(e));
        }
    }
    close(fd);
    static const uint8_t empty[1];
    return open_common(out, map ? map : empty, len, map, len, err);
}

void sl_gguf_close(sl_gguf *g) {
    if (!g) return;
    gguf_priv *pv = g->priv;
    for (uint64_t i = 0; g->kv && i < g->n_kv; i++) {
        free((void *)g->kv[i].key);
        free((void *)g->kv[i].str_offsets);
    }
    for (uint64_t i = 0; g->tensors && i < g->n_tensors; i++) free((void *)g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    if (pv) {
        free(pv->kv_index);
        free(pv->t_index);
        if (pv->map) munmap(pv->map, pv->map_len);
        free(pv);
    }
    free(g);
}

const sl_gguf_kv *sl_gguf_find(const sl_gguf *g, const char *key) {
    const gguf_priv *pv = g->priv;
    const name_ent *e = index_find(pv->kv_index, g->n_kv, key);
    return e ? &g->kv[e->idx] : NULL;
}

const sl_gguf_tensor *sl_gguf_tensor_find(const sl_gguf *g, const char *name) {
    const gguf_priv *pv = g->priv;
    const name_ent *e = index_find(pv->t_index, g->n_tensors, name);
    return e ? &g->tensors[e->idx] : NULL;
}

/* ---- getters ----------------------------------------------------------------------------- */
static const sl_gguf_kv *find_or_fail(const sl_gguf *g, const char *key, char *err, int *rc) {
    const sl_gguf_kv *kv = sl_gguf_find(g, key);
    *rc = kv ? 0 : sl_fail(err, SL_ENOTFOUND, "key %s: not found", key);
    return kv;
}

int sl_gguf_get_u32(const sl_gguf *g, const char *key, uint32_t *out, char *err) {
    int rc;
    const sl_gguf_kv *kv = find_or_fail(g, key, err, &rc);
    if (!kv) return rc;
    bool neg;
    uint64_t mag;
    if (kv->type == SL_GGUF_ARRAY || !read_int(kv->value, kv->type, &neg, &mag))
        return sl_fail(err, SL_EFORMAT, "key %s: expected an integer, got %s", key,
                       vtype_name(kv->type));
    if (neg || mag > UINT32_MAX)
        return sl_fail(err, SL_EFORMAT, "key %s: value %s%llu does not fit in UINT32", key,
                       neg ? "-" : "", (unsigned long long)mag);
    *out = (uint32_t)mag;
    return 0;
}

int sl_gguf_get_f32(const sl_gguf *g, const char *key, float *out, char *err) {
    int rc;
    const sl_gguf_kv *kv = find_or_fail(g, key, err, &rc);
    if (!kv) return rc;
    if (kv->type == SL_GGUF_F32) {
        memcpy(out, kv->value, 4);
    } else if (kv->type == SL_GGUF_F64) {
        double d;
        memcpy(&d, kv->value, 8);
        *out = (float)d;
    } else {
        return sl_fail(err, SL_EFORMAT, "key %s: expected FLOAT32, got %s", key,
                       vtype_name(kv->type));
    }
    return 0;
}

int sl_gguf_get_bool(const sl_gguf *g, const char *key, bool *out, char *err) {
    int rc;
    const sl_gguf_kv *kv = find_or_fail(g, key, err, &rc);
    if (!kv) return rc;
    if (kv->type != SL_GGUF_BOOL)
        return sl_fail(err, SL_EFORMAT, "key %s: expected BOOL, got %s", key, vtype_name(kv->type));
    *out = kv->value[0] != 0;
    return 0;
}

int sl_gguf_get_str(const sl_gguf *g, const char *key, const char **s, uint64_t *len, char *err) {
    int rc;
    const sl_gguf_kv *kv = find_or_fail(g, key, err, &rc);
    if (!kv) return rc;
    if (kv->type != SL_GGUF_STRING)
        return sl_fail(err, SL_EFORMAT, "key %s: expected STRING, got %s", key,
                       vtype_name(kv->type));
    memcpy(len, kv->value, 8);
    *s = (const char *)kv->value + 8;
    return 0;
}

void sl_gguf_arr_str(const sl_gguf_kv *kv, uint64_t i, const char **s, uint64_t *len) {
    SL_CHECK(kv->type == SL_GGUF_ARRAY && kv->arr_type == SL_GGUF_STRING && i < kv->n);
    const uint8_t *p = kv->value + kv->str_offsets[i];
    memcpy(len, p, 8);
    *s = (const char *)p + 8;
}

float sl_gguf_arr_f32(const sl_gguf_kv *kv, uint64_t i) {
    SL_CHECK(kv->type == SL_GGUF_ARRAY && i < kv->n);
    SL_CHECK(kv->arr_type == SL_GGUF_F32 || kv->arr_type == SL_GGUF_F64);
    if (kv->arr_type == SL_GGUF_F64) {
        double d;
        memcpy(&d, kv->value + 8 * i, 8);
        return (float)d;
    }
    float f;
    memcpy(&f, kv->value + 4 * i, 4);
    return f;
}

int64_t sl_gguf_arr_int(const sl_gguf_kv *kv, uint64_t i) {
    SL_CHECK(kv->type == SL_GGUF_ARRAY && i < kv->n);
    bool neg;
    uint64_t mag;
    SL_CHECK(kv->arr_type <= SL_GGUF_F64 && kv->arr_type != SL_GGUF_BOOL &&
             read_int(kv->value + VTYPE_SIZE[kv->arr_type] * i, kv->arr_type, &neg, &mag));
    return neg ? (int64_t)(0 - mag) : (int64_t)mag; /* UINT64 above INT64_MAX wraps */
}

/* ---- writer ------------------------------------------------------------------------------ */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void wb_put(wbuf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        SL_CHECK(p != NULL);
        b->p = p, b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void wb_u32(wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(wbuf *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_pad(wbuf *b, uint64_t align) {
    static const uint8_t zeros[64];
    while (b->n % align) {
        uint64_t n = align - b->n % align;
        wb_put(b, zeros, n < sizeof zeros ? n : sizeof zeros);
    }
}
static void wb_str(wbuf *b, const char *s) {
    size_t n = strlen(s);
    wb_u64(b, n);
    wb_put(b, s, n);
}

typedef struct {
    char *key;
    uint32_t type;
    wbuf val; /* the encoded value that follows the type id */
} wkv;

typedef struct {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    uint64_t nbytes;
    uint8_t *data;
} wtensor;

struct sl_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(sl_xmalloc(n), s, n);
}

sl_gguf_writer *sl_gguf_writer_create(void) { return sl_xcalloc(1, sizeof(sl_gguf_writer)); }

void sl_gguf_writer_destroy(sl_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) free(w->kv[i].key), free(w->kv[i].val.p);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name), free(w->t[i].data);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Returns the emptied value buffer of key (replacing an earlier value of the same key). */
static wbuf *set_kv(sl_gguf_writer *w, const char *key, uint32_t type) {
    SL_CHECK(key != NULL);
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            w->kv[i].type = type;
            w->kv[i].val.n = 0;
            return &w->kv[i].val;
        }
    if (w->n_kv == w->cap_kv) {
        w->cap_kv = w->cap_kv ? 2 * w->cap_kv : 16;
        w->kv = realloc(w->kv, w->cap_kv * sizeof *w->kv);
        SL_CHECK(w->kv != NULL);
    }
    wkv *kv = &w->kv[w->n_kv++];
    *kv = (wkv){.key = xstrdup(key), .type = type};
    return &kv->val;
}

void sl_gguf_w_u32(sl_gguf_writer *w, const char *key, uint32_t v) {
    wb_u32(set_kv(w, key, SL_GGUF_U32), v);
}
void sl_gguf_w_i32(sl_gguf_writer *w, const char *key, int32_t v) {
    wb_put(set_kv(w, key, SL_GGUF_I32), &v, 4);
}
void sl_gguf_w_f32(sl_gguf_writer *w, const char *key, float v) {
    wb_put(set_kv(w, key, SL_GGUF_F32), &v, 4);
}
void sl_gguf_w_bool(sl_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v;
    wb_put(set_kv(w, key, SL_GGUF_BOOL), &b, 1);
}
void sl_gguf_w_str(sl_gguf_writer *w, const char *key, const char *v) {
    wb_str(set_kv(w, key, SL_GGUF_STRING), v);
}

static wbuf *set_arr(sl_gguf_writer *w, const char *key, uint32_t et, uint64_t n) {
    wbuf *b = set_kv(w, key, SL_GGUF_ARRAY);
    wb_u32(b, et);
    wb_u64(b, n);
    return b;
}
void sl_gguf_w_arr_str(sl_gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    wbuf *b = set_arr(w, key, SL_GGUF_STRING, n);
    for (uint64_t i = 0; i < n; i++) wb_str(b, v[i]);
}
void sl_gguf_w_arr_f32(sl_gguf_writer *w, const char *key, const float *v, uint64_t n) {
    wb_put(set_arr(w, key, SL_GGUF_F32, n), v, n * 4);
}
void sl_gguf_w_arr_i32(sl_gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    wb_put(set_arr(w, key, SL_GGUF_I32, n), v, n * 4);
}
void sl_gguf_w_arr_u32(sl_gguf_writer *w, const char *key, const uint32_t *v, uint64_t n) {
    wb_put(set_arr(w, key, SL_GGUF_U32, n), v, n * 4);
}

void sl_gguf_w_copy_kv(sl_gguf_writer *w, const sl_gguf_kv *kv) {
    static const uint8_t size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (kv->type == SL_GGUF_ARRAY) {
        wbuf *b = set_arr(w, kv->key, kv->arr_type, kv->n);
        if (kv->arr_type != SL_GGUF_STRING) {
            wb_put(b, kv->value, kv->n * size[kv->arr_type]);
        } else if (kv->n) {
            /* strings lie back to back: copy up to the end of the last one */
            const uint8_t *last = kv->value + kv->str_offsets[kv->n - 1];
            uint64_t len;
            memcpy(&len, last, 8);
            wb_put(b, kv->value, (size_t)(last + 8 + len - kv->value));
        }
    } else if (kv->type == SL_GGUF_STRING) {
        uint64_t len;
        memcpy(&len, kv->value, 8);
        wb_put(set_kv(w, kv->key, SL_GGUF_STRING), kv->value, (size_t)(8 + len));
    } else {
        wb_put(set_kv(w, kv->key, kv->type), kv->value, size[kv->type]);
    }
}

void sl_gguf_w_tensor(sl_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                      const int64_t *ne, const void *data) {
    SL_CHECK(name && strlen(name) > 0 && strlen(name) < MAX_NAME);
    SL_CHECK(n_dims >= 1 && n_dims <= 4);
    wtensor t = {.name = xstrdup(name), .type = type, .n_dims = (uint32_t)n_dims,
                 .ne = {1, 1, 1, 1}};
    for (int d = 0; d < n_dims; d++) t.ne[d] = ne[d];
    SL_CHECK(tensor_nbytes(type, t.ne, &t.nbytes) == 0 && t.nbytes <= SIZE_MAX);
    t.data = sl_xmalloc(t.nbytes);
    memcpy(t.data, data, t.nbytes);
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? 2 * w->cap_t : 16;
        w->t = realloc(w->t, w->cap_t * sizeof *w->t);
        SL_CHECK(w->t != NULL);
    }
    w->t[w->n_t++] = t;
}

/* general.alignment when set as a valid UINT32, else 32 (an invalid value is still written,
 * which tests use to make files the reader must reject). */
static uint64_t writer_alignment(const sl_gguf_writer *w) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, "general.alignment") && w->kv[i].type == SL_GGUF_U32) {
            uint32_t a;
            memcpy(&a, w->kv[i].val.p, 4);
            if (a && !(a & (a - 1))) return a;
        }
    return DEFAULT_ALIGN;
}

int sl_gguf_writer_to_mem(sl_gguf_writer *w, uint8_t **out, size_t *size) {
    uint64_t align = writer_alignment(w), off = 0;
    wbuf b = {0};
    wb_put(&b, "GGUF", 4);
    wb_u32(&b, 3);
    wb_u64(&b, w->n_t);
    wb_u64(&b, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        wb_str(&b, w->kv[i].key);
        wb_u32(&b, w->kv[i].type);
        wb_put(&b, w->kv[i].val.p, w->kv[i].val.n);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        wb_str(&b, t->name);
        wb_u32(&b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) wb_u64(&b, (uint64_t)t->ne[d]);
        wb_u32(&b, t->type);
        wb_u64(&b, off);
        off += (t->nbytes + align - 1) & ~(align - 1);
    }
    /* data section (only with tensors): header padding, then each tensor zero-padded */
    for (size_t i = 0; i < w->n_t; i++) {
        wb_pad(&b, align);
        wb_put(&b, w->t[i].data, w->t[i].nbytes);
    }
    if (w->n_t) wb_pad(&b, align);
    *out = b.p ? b.p : sl_xmalloc(1);
    *size = b.n;
    return 0;
}

int sl_gguf_writer_save(sl_gguf_writer *w, const char *path) {
    uint8_t *buf;
    size_t n;
    int rc = sl_gguf_writer_to_mem(w, &buf, &n);
    if (rc) return rc;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return SL_EIO;
    }
    size_t wrote = fwrite(buf, 1, n, f);
    int closed = fclose(f);
    free(buf);
    if (wrote != n || closed) {
        unlink(path);
        return SL_EIO;
    }
    return 0;
}
