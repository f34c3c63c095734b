/* chat_value.h — values and the render context of the Jinja subset, shared by chat_eval.c
 * (statements, expressions) and chat_builtins.c (filters, tests, methods, globals, JSON).
 * Internal to models/chat*.c. */
#ifndef SL_CHAT_VALUE_H
#define SL_CHAT_VALUE_H

#include "chat_internal.h"

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_MACRO, V_FUNC } jtype;

typedef struct jlist jlist;
typedef struct jdict jdict;

typedef struct jv {
    uint8_t t;
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *s; size_t n; } s;
        jlist *l;
        jdict *d;
        const sl__jnode *m; /* V_MACRO: the macro statement */
        int fn;             /* V_FUNC: a global function */
    };
} jv;

struct jlist { jv *v; size_t n, cap; };
struct jdict { jv *k, *v; size_t n, cap; }; /* ordered; keys are strings, numbers, bools or none */

typedef struct frame {
    struct frame *parent;
    jdict *vars;
} frame;

typedef struct rctx {
    sl__jarena arena;
    char *out; /* malloc'd output */
    size_t n, cap;
    long steps;
    int depth;
    int ctl; /* loop control pending: 1 break, 2 continue */
    int code;
    char *err;
    jmp_buf jb;
    frame *root;
} rctx;

/* Raises a render error (longjmp to sl__jinja_render). */
_Noreturn __attribute__((format(printf, 4, 5))) void sl__jerr(rctx *r, int code, int line, const char *fmt, ...);
void *sl__jalloc(rctx *r, size_t n); /* arena, raises past the cap */

static inline jv jv_undef(void) { jv v = {.t = V_UNDEF}; return v; }
static inline jv jv_none(void) { jv v = {.t = V_NONE}; return v; }
static inline jv jv_bool(bool b) { jv v = {.t = V_BOOL}; v.b = b; return v; }
static inline jv jv_int(int64_t i) { jv v = {.t = V_INT}; v.i = i; return v; }
static inline jv jv_float(double f) { jv v = {.t = V_FLOAT}; v.f = f; return v; }
static inline jv jv_str(const char *s, size_t n) { jv v = {.t = V_STR}; v.s.s = s, v.s.n = n; return v; }

jv sl__jstr_copy(rctx *r, const char *s, size_t n);
jv sl__jlist_new(rctx *r, size_t cap);
void sl__jlist_push(rctx *r, jlist *l, jv v);
jv sl__jdict_new(rctx *r);
void sl__jdict_set(rctx *r, jdict *d, const char *k, size_t kn, jv v);
jv *sl__jdict_get(const jdict *d, const char *k, size_t kn); /* NULL when absent */
jv *sl__jdict_getv(const jdict *d, jv key);                  /* any key; NULL when absent */
void sl__jdict_setv(rctx *r, jdict *d, jv key, jv v);

bool sl__jtruthy(jv v);
bool sl__jequal(jv a, jv b);
const char *sl__jtype_name(jv v);
/* The items a for loop or a sequence filter sees: a list itself, a dict's keys, a string's
 * characters (code points), nothing for none/undefined; *ok = false for anything else. */
jv sl__jto_list(rctx *r, jv v, bool *ok);
size_t sl__utf8_len(const char *s, size_t n); /* code points */
/* str(v) as Python's Jinja writes it: None, True, 1.5, ['a'], ... ("" for undefined). */
jv sl__jto_str(rctx *r, jv v);

/* Growable byte buffer in the arena (for building strings). */
typedef struct jbuf { char *s; size_t n, cap; } jbuf;
void sl__jbuf_put(rctx *r, jbuf *b, const char *s, size_t n);

/* Arguments of a built-in call, evaluated: positional then keyword. */
typedef struct jargs {
    jv pos[8];
    int npos;
    struct { const char *s; size_t n; jv v; } kw[8];
    int nkw;
    int line;
} jargs;
/* Positional i or keyword name, else dflt. */
jv sl__jarg(const jargs *a, int i, const char *name, jv dflt);

/* Built-ins (chat_builtins.c). Each raises on a bad argument; found = false when the name is
 * not a built-in of that kind. */
jv sl__jfilter(rctx *r, const char *name, size_t n, jv x, const jargs *a, bool *found);
bool sl__jtest(rctx *r, const char *name, size_t n, jv x, const jargs *a, bool *found);
jv sl__jmethod(rctx *r, jv self, const char *name, size_t n, const jargs *a, bool *found);
int sl__jglobal_id(const char *name, size_t n); /* V_FUNC id or -1 */
jv sl__jglobal_call(rctx *r, int id, const jargs *a);
/* Parses JSON text into a value; raises SL_EFORMAT. */
jv sl__jjson_parse(rctx *r, const char *s, size_t n);

#endif
