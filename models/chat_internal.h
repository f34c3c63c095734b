/* chat_internal.h — the bounded Jinja subset behind chat.h: parse tree, arena, entry points.
 * Internal to models/chat*.c; nothing else includes it.
 *
 * The subset is what Hugging Face chat templates use, with Hugging Face's environment
 * (trim_blocks, lstrip_blocks, one trailing newline of the source dropped, "\r\n" → "\n"):
 *   statements  {{ e }}, if/elif/else, for x[, y] in e [if c] ... [else] ... endfor, set x = e,
 *               set ns.a = e, set a, b = e, set x %}...{% endset, macro/endmacro, break,
 *               continue, filter f(args)/endfilter, generation/endgeneration (rendered as
 *               is), comments;
 *   expressions literals (str, int, float, true/false/none in either case, lists, tuples,
 *               dicts), names, e.a, e[i], e[a:b:c], calls with keyword arguments, filters,
 *               tests (is [not]), a if c else b, or/and/not, == != < > <= >= in, not in,
 *               + - ~ * / // % **, unary - +.
 * Filters, tests, methods and globals are listed in chat_eval.c. Everything else is a parse or
 * render error with a message naming the line. All memory comes from an arena with a cap, and
 * rendering counts steps and output bytes against limits, so hostile templates fail cleanly.
 */
#ifndef SL_CHAT_INTERNAL_H
#define SL_CHAT_INTERNAL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"
#include "chat.h"

enum {
    SL__JIN_MAX_SRC = 1 << 20,           /* template source bytes */
    SL__JIN_MAX_DEPTH = 200,             /* parser / evaluator nesting */
    SL__JIN_MAX_OUT = 16 << 20,          /* rendered bytes */
    SL__JIN_MAX_ARENA = 256 << 20,       /* arena bytes per parse or render */
    SL__JIN_MAX_STEPS = 20 * 1000 * 1000, /* evaluated nodes per render */
};

/* ---- arena: chunks freed all at once; allocation fails past its cap ---------------------- */
typedef struct sl__jchunk sl__jchunk;
typedef struct sl__jarena {
    sl__jchunk *head;
    size_t used, cap;
} sl__jarena;

void *sl__ja_alloc(sl__jarena *a, size_t n); /* zeroed, 16-byte aligned; NULL past the cap */
void sl__ja_free(sl__jarena *a);

/* ---- parse tree ----------------------------------------------------------------------- */
typedef enum {
    /* statements (linked through next) */
    JN_TEXT, JN_OUT, JN_IF, JN_FOR, JN_SET, JN_SETBLOCK, JN_MACRO, JN_BREAK, JN_CONTINUE, JN_FILTERBLOCK,
    /* expressions */
    JN_STR, JN_INT, JN_FLOAT, JN_BOOL, JN_NONE, JN_NAME, JN_ATTR, JN_INDEX, JN_SLICE, JN_CALL,
    JN_FILTER, JN_TEST, JN_BIN, JN_AND, JN_OR, JN_NOT, JN_NEG, JN_POS, JN_COND, JN_LIST, JN_TUPLE,
    JN_DICT,
    JN_ARG, /* an argument or parameter: s = keyword (NULL when positional), a = value/default */
} sl__jkind;

/* Binary operators of JN_BIN. */
enum { JOP_ADD = 1, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_CONCAT, JOP_EQ,
       JOP_NE, JOP_LT, JOP_GT, JOP_LE, JOP_GE, JOP_IN, JOP_NOTIN };

typedef struct sl__jnode sl__jnode;
struct sl__jnode {
    uint8_t kind, op;
    bool neg;          /* JN_TEST: "is not" */
    int line;
    const char *s;     /* text, name, string literal, attribute, filter/test/macro name */
    size_t n;
    int64_t i;         /* JN_INT, JN_BOOL */
    double f;          /* JN_FLOAT */
    /* JN_BIN/AND/OR: a op b. JN_NOT/NEG/POS: a. JN_ATTR: a.s. JN_INDEX: a[b]. JN_SLICE: a[b:c:d].
     * JN_CALL: a(args). JN_FILTER: a|s(args). JN_TEST: a is s(args). JN_COND: b if a else c.
     * JN_OUT: a. JN_IF: if a then body else else_body. JN_FOR: for args(names) in a if b: body,
     * else_body. JN_SET: args(names) = a, or a.s (namespace attribute) = b when a != NULL.
     * JN_SETBLOCK: s = body. JN_FILTERBLOCK: body|s(args). JN_MACRO: s(args: params) body. JN_LIST/TUPLE: args. JN_DICT:
     * args, each a JN_ARG with a = key, b = value. */
    sl__jnode *a, *b, *c, *d;
    sl__jnode *args, *body, *else_body;
    sl__jnode *next;
};

typedef struct sl__jtmpl {
    sl__jarena arena;
    sl__jnode *root; /* statement list */
} sl__jtmpl;

/* Parses src[0..n). *out is freed with sl__jinja_free. SL_EUNSUPPORTED for a construct outside
 * the subset, SL_EFORMAT for a syntax error, SL_ENOMEM past the limits; err names the line. */
int sl__jinja_parse(sl__jtmpl **out, const char *src, size_t n, char err[SL_ERRMSG]);
void sl__jinja_free(sl__jtmpl *t);

/* What a render sees: messages given either as role/content pairs or as a JSON array. */
typedef struct sl__jin_input {
    const sl_chat_msg *msgs;
    size_t n_msgs;
    const char *json; /* when non-NULL: the messages, a JSON array of objects */
    size_t json_len;
    bool add_generation_prompt;
    const char *bos, *eos; /* NUL-terminated token texts */
} sl__jin_input;

/* Renders into a malloc'd NUL-terminated *out (caller frees). SL_EINVAL for a template error
 * (raise_exception, a type error, an unknown filter), SL_EFORMAT for malformed JSON, SL_ENOMEM
 * past a limit; err says which and where. */
int sl__jinja_render(const sl__jtmpl *t, const sl__jin_input *in, char **out, size_t *len,
                     char err[SL_ERRMSG]);

/* Messages given as JSON → role/content pairs, for the built-in formats: one malloc'd block
 * (*out, strings included; caller frees). SL_EFORMAT unless a JSON array of objects whose role
 * and content are strings (a null content becomes ""). */
int sl__jinja_json_msgs(const char *json, size_t n, sl_chat_msg **out, size_t *n_out, char err[SL_ERRMSG]);

#endif
