/* gguf.h — GGUF v2/v3 reader (memory-mapped, fully validated) and writer.
 *
 * File layout (little-endian; ../shared/FORMATS.md §1):
 *   1. magic "GGUF", u32 version (2 or 3), u64 tensor_count, u64 kv_count
 *   2. kv_count pairs: string key, u32 value type, value (string = u64 length + bytes;
 *      array = u32 element type, u64 count, elements; no nested arrays)
 *   3. tensor_count infos: string name, u32 n_dims (1..4), u64 ne[n_dims], u32 ggml type,
 *      u64 offset (relative to the data section, a multiple of ALIGN)
 *   4. zero padding to ALIGN (general.alignment, u32 power of two, default 32), then data.
 *
 * sl_gguf_open validates everything before use: bounds of every read, counts against the
 * bytes that remain, UTF-8 and key rules, duplicate keys/tensors, types, shapes, overflow,
 * offsets (the running sum of ALIGN-padded sizes) and data against the file end. On failure
 * it returns a negative sl_err and writes one message naming the problem into err.
 * Never crashes, hangs or allocates more than O(file size) on hostile input.
 *
 * Thread-safety: an opened sl_gguf is immutable; readers may share it.
 */
#ifndef SL_GGUF_H
#define SL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ggml tensor type ids (FORMATS.md §2) */
enum {
    SL_GGML_F32 = 0, SL_GGML_F16 = 1, SL_GGML_Q4_0 = 2, SL_GGML_Q4_1 = 3, SL_GGML_Q5_0 = 6,
    SL_GGML_Q5_1 = 7, SL_GGML_Q8_0 = 8, SL_GGML_Q4_K = 12, SL_GGML_Q5_K = 13, SL_GGML_Q6_K = 14,
    SL_GGML_BF16 = 30,
};

/* metadata value types */
enum {
    SL_GGUF_U8 = 0, SL_GGUF_I8, SL_GGUF_U16, SL_GGUF_I16, SL_GGUF_U32, SL_GGUF_I32, SL_GGUF_F32,
    SL_GGUF_BOOL, SL_GGUF_STRING, SL_GGUF_ARRAY, SL_GGUF_U64, SL_GGUF_I64, SL_GGUF_F64,
};

typedef struct sl_gguf_kv {
    const char *key;       /* NUL-terminated copy */
    uint32_t type;         /* SL_GGUF_* */
    uint32_t arr_type;     /* element type when type == SL_GGUF_ARRAY */
    uint64_t n;            /* element count for arrays, else 1 */
    const uint8_t *value;  /* into the mapping: the raw value (for arrays: the first element) */
    const uint64_t *str_offsets; /* string arrays: byte offset of element i from `value` */
} sl_gguf_kv;

typedef struct sl_gguf_tensor {
    const char *name;      /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[4];         /* missing dims are 1 */
    uint32_t type;         /* SL_GGML_* */
    uint64_t offset;       /* relative to the data section */
    uint64_t nbytes;
    const void *data;      /* into the mapping */
} sl_gguf_tensor;

typedef struct sl_gguf {
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv, n_tensors;
    sl_gguf_kv *kv;
    sl_gguf_tensor *tensors;
    const uint8_t *base;   /* mapping of the whole file */
    uint64_t size;
    uint64_t data_offset;  /* file offset of the data section */
    void *priv;
} sl_gguf;

/* Block size (elements) and bytes per block of a supported ggml type; 0 if unsupported. */
int sl_ggml_blck(uint32_t type);
int sl_ggml_type_bytes(uint32_t type);
const char *sl_ggml_type_name(uint32_t type); /* "Q4_K", or "?" */
/* Parses "F32", "q4_k", ... (case-insensitive); -1 if unknown. */
int sl_ggml_type_from_name(const char *name);

/* Maps and validates path. *out is freed with sl_gguf_close; it is NULL on failure. Error
 * messages name the problem and the item, e.g. "tensor blk.3.attn_q.weight: data runs past end
 * of file", "truncated file: metadata key 5 runs past end of file" (SL_EFORMAT), "unsupported
 * GGUF version 1" or "tensor x: unsupported tensor type 9" (SL_EUNSUPPORTED); SL_EIO when the
 * file cannot be opened or mapped. Keys must be printable ASCII (at most 65535 bytes), strings
 * valid UTF-8 (at most 2^30 bytes), arrays at most 2^30 elements, tensor names < 64 bytes. */
int sl_gguf_open(sl_gguf **out, const char *path, char err[SL_ERRMSG]);
/* Same over a caller buffer (not copied; must outlive *out). Used by the fuzzer and tests. */
int sl_gguf_open_mem(sl_gguf **out, const void *data, size_t size, char err[SL_ERRMSG]);
void sl_gguf_close(sl_gguf *g);

/* Lookups: NULL when absent. O(log n) (sorted index built at open). */
const sl_gguf_kv *sl_gguf_find(const sl_gguf *g, const char *key);
const sl_gguf_tensor *sl_gguf_tensor_find(const sl_gguf *g, const char *name);

/* Typed getters. Return 0, SL_ENOTFOUND when absent, or SL_EFORMAT on a wrong type (with a
 * message naming the key; err may be NULL); *out is untouched on failure. Integer getters
 * accept any integer type whose value fits (a value that does not fit is SL_EFORMAT too);
 * sl_gguf_get_f32 accepts FLOAT32 and FLOAT64. */
int sl_gguf_get_u32(const sl_gguf *g, const char *key, uint32_t *out, char *err);
int sl_gguf_get_f32(const sl_gguf *g, const char *key, float *out, char *err);
int sl_gguf_get_bool(const sl_gguf *g, const char *key, bool *out, char *err);
/* String: pointer into the mapping (not NUL-terminated) and its length. */
int sl_gguf_get_str(const sl_gguf *g, const char *key, const char **s, uint64_t *len, char *err);

/* Array element access (kv must be an array of the right element type and i < kv->n, else
 * abort through SL_CHECK: check kv->arr_type first). O(1), strings included. arr_f32 also
 * reads FLOAT64 arrays; arr_int any integer type (UINT64 above INT64_MAX wraps). */
void sl_gguf_arr_str(const sl_gguf_kv *kv, uint64_t i, const char **s, uint64_t *len);
float sl_gguf_arr_f32(const sl_gguf_kv *kv, uint64_t i);
int64_t sl_gguf_arr_int(const sl_gguf_kv *kv, uint64_t i); /* any integer element type */

/* ---- writer (tests, mkmodel) --------------------------------------------------------- */
/* Keys are written in first-set order; setting a key again replaces its value. Tensors are
 * written in call order, offsets the running sum of ALIGN-padded sizes, data zero-padded.
 * Invalid tensor arguments abort (SL_CHECK); keys and general.alignment are not validated,
 * so tests can write files the reader must reject (an invalid alignment lays out with 32). */
typedef struct sl_gguf_writer sl_gguf_writer;
sl_gguf_writer *sl_gguf_writer_create(void);
void sl_gguf_writer_destroy(sl_gguf_writer *w);
void sl_gguf_w_u32(sl_gguf_writer *w, const char *key, uint32_t v);
void sl_gguf_w_i32(sl_gguf_writer *w, const char *key, int32_t v);
void sl_gguf_w_f32(sl_gguf_writer *w, const char *key, float v);
void sl_gguf_w_bool(sl_gguf_writer *w, const char *key, bool v);
void sl_gguf_w_str(sl_gguf_writer *w, const char *key, const char *v);
void sl_gguf_w_arr_str(sl_gguf_writer *w, const char *key, const char *const *v, uint64_t n);
void sl_gguf_w_arr_f32(sl_gguf_writer *w, const char *key, const float *v, uint64_t n);
void sl_gguf_w_arr_i32(sl_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
void sl_gguf_w_arr_u32(sl_gguf_writer *w, const char *key, const uint32_t *v, uint64_t n);
/* Copies a key and its value, as read from an opened file, unchanged. */
void sl_gguf_w_copy_kv(sl_gguf_writer *w, const sl_gguf_kv *kv);
/* Adds a tensor; data (nbytes computed from type and ne) is copied. ne[0] is contiguous. */
void sl_gguf_w_tensor(sl_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                      const int64_t *ne, const void *data);
/* Writes the file (v3, alignment 32 unless general.alignment was set). 0 or SL_EIO. */
int sl_gguf_writer_save(sl_gguf_writer *w, const char *path);
/* Serializes into a malloc'd buffer the caller frees. */
int sl_gguf_writer_to_mem(sl_gguf_writer *w, uint8_t **out, size_t *size);

#ifdef __cplusplus
}
#endif
#endif
