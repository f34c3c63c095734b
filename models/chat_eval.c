/* chat_eval.c — renders a parsed template (chat_internal.h): values, scopes, statements and
 * expressions. Filters, tests, methods and globals are in chat_builtins.c.
 *
 * Errors unwind with longjmp to sl__jinja_render; all values live in the render's arena and
 * the output buffer is freed there, so an unwind leaks nothing. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_value.h"

_Noreturn void sl__jerr(rctx *r, int code, int line, const char *fmt, ...) {
    char msg[SL_ERRMSG - 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) sl_fail(r->err, code, "chat template line %d: %s", line, msg);
    else sl_fail(r->err, code, "chat template: %s", msg);
    r->code = code;
    longjmp(r->jb, 1);
}

void *sl__jalloc(rctx *r, size_t n) {
    void *p = sl__ja_alloc(&r->arena, n);
    if (!p) sl__jerr(r, SL_ENOMEM, 0, "rendering needs more than %d MiB", SL__JIN_MAX_ARENA >> 20);
    return p;
}

jv sl__jstr_copy(rctx *r, const char *s, size_t n) {
    char *o = sl__jalloc(r, n + 1);
    if (n) memcpy(o, s, n);
    return jv_str(o, n);
}

jv sl__jlist_new(rctx *r, size_t cap) {
    jv v = {.t = V_LIST};
    v.l = sl__jalloc(r, sizeof *v.l);
    if (cap) v.l->v = sl__jalloc(r, cap * sizeof(jv)), v.l->cap = cap;
    return v;
}

void sl__jlist_push(rctx *r, jlist *l, jv v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        jv *nv = sl__jalloc(r, cap * sizeof *nv);
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv, l->cap = cap;
    }
    l->v[l->n++] = v;
}

jv sl__jdict_new(rctx *r) {
    jv v = {.t = V_DICT};
    v.d = sl__jalloc(r, sizeof *v.d);
    return v;
}

jv *sl__jdict_get(const jdict *d, const char *k, size_t kn) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == V_STR && d->k[i].s.n == kn && !memcmp(d->k[i].s.s, k, kn)) return &d->v[i];
    return NULL;
}

jv *sl__jdict_getv(const jdict *d, jv key) {
    if (key.t == V_STR) return sl__jdict_get(d, key.s.s, key.s.n);
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t != V_STR && sl__jequal(d->k[i], key)) return &d->v[i];
    return NULL;
}

void sl__jdict_set(rctx *r, jdict *d, const char *k, size_t kn, jv v) { sl__jdict_setv(r, d, jv_str(k, kn), v); }

void sl__jdict_setv(rctx *r, jdict *d, jv key, jv v) {
    jv *slot = sl__jdict_getv(d, key);
    if (slot) {
        *slot = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        jv *nk = sl__jalloc(r, cap * sizeof *nk), *nv = sl__jalloc(r, cap * sizeof *nv);
        if (d->n) memcpy(nk, d->k, d->n * sizeof *nk), memcpy(nv, d->v, d->n * sizeof *nv);
        d->k = nk, d->v = nv, d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n++] = v;
}

bool sl__jtruthy(jv v) {
    switch (v.t) {
    case V_BOOL: return v.b;
    case V_INT: return v.i != 0;
    case V_FLOAT: return v.f != 0;
    case V_STR: return v.s.n > 0;
    case V_LIST: return v.l->n > 0;
    case V_DICT: return v.d->n > 0;
    case V_MACRO: case V_FUNC: return true;
    default: return false;
    }
}

static bool is_num(jv v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static double num(jv v) { return v.t == V_FLOAT ? v.f : v.t == V_INT ? (double)v.i : v.b; }

bool sl__jequal(jv a, jv b) {
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT) return (a.t == V_INT ? a.i : a.b) == (b.t == V_INT ? b.i : b.b);
        return num(a) == num(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case V_UNDEF: case V_NONE: return true;
    case V_STR: return a.s.n == b.s.n && !memcmp(a.s.s, b.s.s, a.s.n);
    case V_LIST:
        if (a.l->n != b.l->n) return false;
        for (size_t i = 0; i < a.l->n; i++)
            if (!sl__jequal(a.l->v[i], b.l->v[i])) return false;
        return true;
    case V_DICT:
        if (a.d->n != b.d->n) return false;
        for (size_t i = 0; i < a.d->n; i++) {
            jv *o = sl__jdict_getv(b.d, a.d->k[i]);
            if (!o || !sl__jequal(a.d->v[i], *o)) return false;
        }
        return true;
    case V_MACRO: return a.m == b.m;
    case V_FUNC: return a.fn == b.fn;
    default: return false;
    }
}

const char *sl__jtype_name(jv v) {
    static const char *const names[] = {"undefined", "none", "bool", "int", "float", "string", "list", "dict", "macro", "function"};
    return names[v.t];
}

size_t sl__utf8_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

void sl__jbuf_put(rctx *r, jbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) {
            if (cap > SL__JIN_MAX_OUT) sl__jerr(r, SL_ENOMEM, 0, "a string longer than %d MiB", SL__JIN_MAX_OUT >> 20);
            cap *= 2;
        }
        char *ns = sl__jalloc(r, cap);
        if (b->n) memcpy(ns, b->s, b->n);
        b->s = ns, b->cap = cap;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

/* Python's repr of a float: the shortest digits that read back exactly. */
static void float_repr(double f, char *o, size_t cap) {
    if (isnan(f)) { snprintf(o, cap, "nan"); return; }
    if (isinf(f)) { snprintf(o, cap, f < 0 ? "-inf" : "inf"); return; }
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e = [-]d[.ddd]e±XX */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *q = e + neg;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    int exp = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    size_t k = 0;
    if (neg) o[k++] = '-';
    if (exp < -4 || exp >= 16) {
        o[k++] = digits[0];
        if (nd > 1) {
            o[k++] = '.';
            for (int i = 1; i < nd; i++) o[k++] = digits[i];
        }
        snprintf(o + k, cap - k, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        return;
    }
    if (exp < 0) {
        o[k++] = '0', o[k++] = '.';
        for (int i = 0; i < -exp - 1; i++) o[k++] = '0';
        for (int i = 0; i < nd; i++) o[k++] = digits[i];
    } else {
        for (int i = 0; i <= exp; i++) o[k++] = i < nd ? digits[i] : '0';
        o[k++] = '.';
        if (nd > exp + 1)
            for (int i = exp + 1; i < nd; i++) o[k++] = digits[i];
        else o[k++] = '0';
    }
    o[k] = 0;
}

static void repr(rctx *r, jbuf *b, jv v, int depth);

static void str_into(rctx *r, jbuf *b, jv v, int depth) {
    char num_buf[48];
    switch (v.t) {
    case V_UNDEF: return;
    case V_NONE: sl__jbuf_put(r, b, "None", 4); return;
    case V_BOOL: v.b ? sl__jbuf_put(r, b, "True", 4) : sl__jbuf_put(r, b, "False", 5); return;
    case V_INT: snprintf(num_buf, sizeof num_buf, "%lld", (long long)v.i); break;
    case V_FLOAT: float_repr(v.f, num_buf, sizeof num_buf); break;
    case V_STR: sl__jbuf_put(r, b, v.s.s, v.s.n); return;
    case V_LIST: case V_DICT: repr(r, b, v, depth); return;
    default: snprintf(num_buf, sizeof num_buf, "<%s>", sl__jtype_name(v)); break;
    }
    sl__jbuf_put(r, b, num_buf, strlen(num_buf));
}

/* Python repr: strings quoted, containers recursively. */
static void repr(rctx *r, jbuf *b, jv v, int depth) {
    if (depth > SL__JIN_MAX_DEPTH) sl__jerr(r, SL_ENOMEM, 0, "value nested too deeply");
    if (v.t == V_STR) {
        bool dq = memchr(v.s.s, '\'', v.s.n) && !memchr(v.s.s, '"', v.s.n);
        char q = dq ? '"' : '\'';
        sl__jbuf_put(r, b, &q, 1);
        for (size_t i = 0; i < v.s.n; i++) {
            unsigned char c = (unsigned char)v.s.s[i];
            char esc[8];
            if (c == '\\' || c == (unsigned char)q) esc[0] = '\\', esc[1] = (char)c, esc[2] = 0;
            else if (c == '\n') strcpy(esc, "\\n");
            else if (c == '\r') strcpy(esc, "\\r");
            else if (c == '\t') strcpy(esc, "\\t");
            else if (c < 0x20 || c == 0x7F) snprintf(esc, sizeof esc, "\\x%02x", c);
            else esc[0] = (char)c, esc[1] = 0;
            sl__jbuf_put(r, b, esc, strlen(esc));
        }
        sl__jbuf_put(r, b, &q, 1);
    } else if (v.t == V_LIST) {
        sl__jbuf_put(r, b, "[", 1);
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) sl__jbuf_put(r, b, ", ", 2);
            repr(r, b, v.l->v[i], depth + 1);
        }
        sl__jbuf_put(r, b, "]", 1);
    } else if (v.t == V_DICT) {
        sl__jbuf_put(r, b, "{", 1);
        for (size_t i = 0; i < v.d->n; i++) {
            if (i) sl__jbuf_put(r, b, ", ", 2);
            repr(r, b, v.d->k[i], depth + 1);
            sl__jbuf_put(r, b, ": ", 2);
            repr(r, b, v.d->v[i], depth + 1);
        }
        sl__jbuf_put(r, b, "}", 1);
    } else {
        str_into(r, b, v, depth);
    }
}

jv sl__jto_str(rctx *r, jv v) {
    if (v.t == V_STR) return v;
    if (v.t == V_UNDEF) return jv_str("", 0);
    jbuf b = {0};
    str_into(r, &b, v, 0);
    return b.s ? jv_str(b.s, b.n) : jv_str("", 0);
}

jv sl__jarg(const jargs *a, int i, const char *name, jv dflt) {
    if (i >= 0 && i < a->npos) return a->pos[i];
    for (int k = 0; k < a->nkw; k++)
        if (name && a->kw[k].n == strlen(name) && !memcmp(a->kw[k].s, name, a->kw[k].n)) return a->kw[k].v;
    return dflt;
}

/* ---- output ---------------------------------------------------------------------------------- */
static void emit(rctx *r, const char *s, size_t n) {
    if (r->n + n + 1 > r->cap) {
        if (r->n + n > SL__JIN_MAX_OUT) sl__jerr(r, SL_ENOMEM, 0, "output longer than %d MiB", SL__JIN_MAX_OUT >> 20);
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->n + n + 1) cap *= 2;
        char *no = realloc(r->out, cap);
        if (!no) sl__jerr(r, SL_ENOMEM, 0, "out of memory");
        r->out = no, r->cap = cap;
    }
    if (n) memcpy(r->out + r->n, s, n);
    r->n += n;
}

/* ---- scopes ---------------------------------------------------------------------------------- */
static frame *frame_new(rctx *r, frame *parent) {
    frame *f = sl__jalloc(r, sizeof *f);
    f->parent = parent;
    f->vars = sl__jdict_new(r).d;
    return f;
}

static jv lookup(rctx *r, frame *f, const char *s, size_t n) {
    for (; f; f = f->parent) {
        jv *v = sl__jdict_get(f->vars, s, n);
        if (v) return *v;
    }
    int id = sl__jglobal_id(s, n);
    if (id >= 0) {
        jv v = {.t = V_FUNC};
        v.fn = id;
        return v;
    }
    (void)r;
    return jv_undef();
}

static void step(rctx *r, int line) {
    if (++r->steps > SL__JIN_MAX_STEPS) sl__jerr(r, SL_ENOMEM, line, "rendering takes more than %d steps", SL__JIN_MAX_STEPS);
}

/* ---- expressions ------------------------------------------------------------------------- */
static jv eval(rctx *r, const sl__jnode *x, frame *f);
static void exec(rctx *r, const sl__jnode *s, frame *f);

static void eval_args(rctx *r, const sl__jnode *args, frame *f, jargs *a, int line) {
    a->npos = a->nkw = 0;
    a->line = line;
    for (const sl__jnode *x = args; x; x = x->next) {
        if (x->s) {
            if (a->nkw == 8) sl__jerr(r, SL_EUNSUPPORTED, line, "more than 8 keyword arguments");
            a->kw[a->nkw].s = x->s, a->kw[a->nkw].n = x->n;
            a->kw[a->nkw++].v = eval(r, x->a, f);
        } else {
            if (a->npos == 8) sl__jerr(r, SL_EUNSUPPORTED, line, "more than 8 arguments");
            a->pos[a->npos++] = eval(r, x->a, f);
        }
    }
}

/* Byte offset of code point k of s (k <= length). */
static size_t cp_off(const char *s, size_t n, size_t k) {
    size_t i = 0;
    while (k && i < n) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
        k--;
    }
    return i;
}

static int64_t as_index(rctx *r, jv v, int line) {
    if (v.t == V_INT) return v.i;
    if (v.t == V_BOOL) return v.b;
    sl__jerr(r, SL_EINVAL, line, "index must be an integer, not %s", sl__jtype_name(v));
}

static jv subscript(rctx *r, jv obj, jv key, int line) {
    if (obj.t == V_DICT) {
        jv *v = sl__jdict_getv(obj.d, key);
        return v ? *v : jv_undef();
    }
    if (obj.t == V_LIST || obj.t == V_STR) {
        if (key.t == V_STR) return jv_undef();
        int64_t i = as_index(r, key, line);
        int64_t len = obj.t == V_LIST ? (int64_t)obj.l->n : (int64_t)sl__utf8_len(obj.s.s, obj.s.n);
        if (i < 0) i += len;
        if (i < 0 || i >= len) return jv_undef();
        if (obj.t == V_LIST) return obj.l->v[i];
        size_t a = cp_off(obj.s.s, obj.s.n, (size_t)i), b = cp_off(obj.s.s, obj.s.n, (size_t)i + 1);
        return jv_str(obj.s.s + a, b - a);
    }
    return jv_undef(); /* undefined, none, numbers: lenient, like a missing key */
}

static jv slice(rctx *r, jv obj, const sl__jnode *x, frame *f) {
    int64_t len;
    if (obj.t == V_LIST) len = (int64_t)obj.l->n;
    else if (obj.t == V_STR) len = (int64_t)sl__utf8_len(obj.s.s, obj.s.n);
    else sl__jerr(r, SL_EINVAL, x->line, "cannot slice %s", sl__jtype_name(obj));
    int64_t stepv = x->d ? as_index(r, eval(r, x->d, f), x->line) : 1;
    if (stepv == 0) sl__jerr(r, SL_EINVAL, x->line, "slice step cannot be zero");
    jv bv = x->b ? eval(r, x->b, f) : jv_none(), cv = x->c ? eval(r, x->c, f) : jv_none();
    int64_t lo, hi;
    if (stepv > 0) {
        lo = bv.t == V_NONE ? 0 : as_index(r, bv, x->line);
        hi = cv.t == V_NONE ? len : as_index(r, cv, x->line);
        if (lo < 0) lo = lo + len < 0 ? 0 : lo + len;
        if (hi < 0) hi = hi + len < 0 ? 0 : hi + len;
        if (lo > len) lo = len;
        if (hi > len) hi = len;
    } else {
        lo = bv.t == V_NONE ? len - 1 : as_index(r, bv, x->line);
        hi = cv.t == V_NONE ? -1 : as_index(r, cv, x->line);
        if (lo < 0) lo = lo + len < 0 ? -1 : lo + len;
        if (lo >= len) lo = len - 1;
        if (cv.t != V_NONE && hi < 0) hi = hi + len < 0 ? -1 : hi + len;
        if (hi >= len) hi = len - 1;
    }
    if (obj.t == V_LIST) {
        jv out = sl__jlist_new(r, 0);
        for (int64_t i = lo; stepv > 0 ? i < hi : i > hi; i += stepv) sl__jlist_push(r, out.l, obj.l->v[i]);
        return out;
    }
    jbuf b = {0};
    for (int64_t i = lo; stepv > 0 ? i < hi : i > hi; i += stepv) {
        size_t a = cp_off(obj.s.s, obj.s.n, (size_t)i), e = cp_off(obj.s.s, obj.s.n, (size_t)i + 1);
        sl__jbuf_put(r, &b, obj.s.s + a, e - a);
    }
    return b.s ? jv_str(b.s, b.n) : jv_str("", 0);
}

static jv arith(rctx *r, int op, jv a, jv b, int line) {
    if (op == JOP_CONCAT) {
        jbuf o = {0};
        jv sa = sl__jto_str(r, a), sb = sl__jto_str(r, b);
        sl__jbuf_put(r, &o, sa.s.s, sa.s.n);
        sl__jbuf_put(r, &o, sb.s.s, sb.s.n);
        return jv_str(o.s, o.n);
    }
    /* llama.cpp's engine (the reference) reads an undefined operand of string + as "" */
    if (op == JOP_ADD && ((a.t == V_STR && b.t == V_UNDEF) || (a.t == V_UNDEF && b.t == V_STR))) return a.t == V_STR ? a : b;
    if (op == JOP_ADD && a.t == V_STR && b.t == V_STR) {
        jbuf o = {0};
        sl__jbuf_put(r, &o, a.s.s, a.s.n);
        sl__jbuf_put(r, &o, b.s.s, b.s.n);
        return jv_str(o.s, o.n);
    }
    if (op == JOP_ADD && a.t == V_LIST && b.t == V_LIST) {
        jv out = sl__jlist_new(r, a.l->n + b.l->n);
        for (size_t i = 0; i < a.l->n; i++) sl__jlist_push(r, out.l, a.l->v[i]);
        for (size_t i = 0; i < b.l->n; i++) sl__jlist_push(r, out.l, b.l->v[i]);
        return out;
    }
    if (op == JOP_MUL && ((a.t == V_STR && b.t == V_INT) || (a.t == V_INT && b.t == V_STR))) {
        jv s = a.t == V_STR ? a : b;
        int64_t k = a.t == V_INT ? a.i : b.i;
        jbuf o = {0};
        if (k > 0 && s.s.n && (uint64_t)k > (uint64_t)SL__JIN_MAX_OUT / s.s.n)
            sl__jerr(r, SL_ENOMEM, line, "string repetition too long");
        for (int64_t i = 0; i < k; i++) sl__jbuf_put(r, &o, s.s.s, s.s.n);
        return o.s ? jv_str(o.s, o.n) : jv_str("", 0);
    }
    if (!is_num(a) || !is_num(b)) {
        static const char *const sym[] = {"", "+", "-", "*", "/", "//", "%", "**"};
        sl__jerr(r, SL_EINVAL, line, "unsupported operand types for %s: %s and %s", sym[op], sl__jtype_name(a), sl__jtype_name(b));
    }
    if (a.t != V_FLOAT && b.t != V_FLOAT && op != JOP_DIV) {
        int64_t x = a.t == V_INT ? a.i : a.b, y = b.t == V_INT ? b.i : b.b, z = 0;
        bool ovf = false;
        switch (op) {
        case JOP_ADD: ovf = __builtin_add_overflow(x, y, &z); break;
        case JOP_SUB: ovf = __builtin_sub_overflow(x, y, &z); break;
        case JOP_MUL: ovf = __builtin_mul_overflow(x, y, &z); break;
        case JOP_FLOORDIV: case JOP_MOD:
            if (y == 0) sl__jerr(r, SL_EINVAL, line, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) ovf = true;
            else {
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) q--, m += y;
                z = op == JOP_FLOORDIV ? q : m;
            }
            break;
        case JOP_POW:
            if (y < 0) return jv_float(pow((double)x, (double)y));
            z = 1;
            for (int64_t k = 0; k < y && !ovf; k++) {
                ovf = __builtin_mul_overflow(z, x, &z);
                if (z == 0 || z == 1) break;
            }
            if (!ovf && x == -1 && (y & 1)) z = -1;
            break;
        }
        if (ovf) sl__jerr(r, SL_ERANGE, line, "integer overflow");
        return jv_int(z);
    }
    double x = num(a), y = num(b);
    switch (op) {
    case JOP_ADD: return jv_float(x + y);
    case JOP_SUB: return jv_float(x - y);
    case JOP_MUL: return jv_float(x * y);
    case JOP_DIV:
        if (y == 0) sl__jerr(r, SL_EINVAL, line, "division by zero");
        return jv_float(x / y);
    case JOP_FLOORDIV:
        if (y == 0) sl__jerr(r, SL_EINVAL, line, "division by zero");
        return jv_float(floor(x / y));
    case JOP_MOD:
        if (y == 0) sl__jerr(r, SL_EINVAL, line, "modulo by zero");
        return jv_float(x - floor(x / y) * y);
    default: return jv_float(pow(x, y));
    }
}

static bool contains(rctx *r, jv hay, jv needle, int line) {
    if (hay.t == V_STR) {
        if (needle.t != V_STR) sl__jerr(r, SL_EINVAL, line, "'in <string>' needs a string, not %s", sl__jtype_name(needle));
        if (!needle.s.n) return true;
        return memmem(hay.s.s, hay.s.n, needle.s.s, needle.s.n) != NULL;
    }
    if (hay.t == V_LIST) {
        for (size_t i = 0; i < hay.l->n; i++)
            if (sl__jequal(hay.l->v[i], needle)) return true;
        return false;
    }
    if (hay.t == V_DICT) return sl__jdict_getv(hay.d, needle) != NULL;
    if (hay.t == V_UNDEF) return false;
    sl__jerr(r, SL_EINVAL, line, "'in' needs a string, list or dict, not %s", sl__jtype_name(hay));
}

static int cmp(rctx *r, jv a, jv b, int line) {
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        return x < y ? -1 : x > y;
    }
    if (a.t == V_STR && b.t == V_STR) {
        int c = memcmp(a.s.s, b.s.s, a.s.n < b.s.n ? a.s.n : b.s.n);
        return c ? c : a.s.n < b.s.n ? -1 : a.s.n > b.s.n;
    }
    sl__jerr(r, SL_EINVAL, line, "cannot compare %s with %s", sl__jtype_name(a), sl__jtype_name(b));
}

static jv call_macro(rctx *r, jv m, const jargs *a, int line) {
    const sl__jnode *def = m.m;
    frame *f = frame_new(r, r->root);
    int i = 0;
    for (const sl__jnode *p = def->args; p; p = p->next, i++) {
        jv v = sl__jarg(a, i, NULL, jv_undef());
        for (int k = 0; k < a->nkw; k++)
            if (a->kw[k].n == p->n && !memcmp(a->kw[k].s, p->s, p->n)) v = a->kw[k].v;
        if (v.t == V_UNDEF && p->a) v = eval(r, p->a, r->root);
        sl__jdict_set(r, f->vars, p->s, p->n, v);
    }
    if (a->npos > i) sl__jerr(r, SL_EINVAL, line, "macro '%.*s' takes %d arguments, got %d", (int)def->n, def->s, i, a->npos);
    if (++r->depth > SL__JIN_MAX_DEPTH) sl__jerr(r, SL_ENOMEM, line, "macro calls nested deeper than %d", SL__JIN_MAX_DEPTH);
    size_t mark = r->n;
    int ctl = r->ctl;
    exec(r, def->body, f);
    r->ctl = ctl;
    r->depth--;
    jv out = sl__jstr_copy(r, r->out ? r->out + mark : "", r->n - mark);
    r->n = mark;
    return out;
}

static jv eval_call(rctx *r, const sl__jnode *x, frame *f) {
    jargs a;
    if (x->a->kind == JN_ATTR) {
        jv self = eval(r, x->a->a, f);
        if (self.t == V_STR || self.t == V_LIST || self.t == V_DICT) {
            bool found = false;
            if (self.t != V_DICT || !sl__jdict_get(self.d, x->a->s, x->a->n)) {
                eval_args(r, x->args, f, &a, x->line);
                jv v = sl__jmethod(r, self, x->a->s, x->a->n, &a, &found);
                if (found) return v;
                sl__jerr(r, SL_EUNSUPPORTED, x->line, "%s has no method '%.*s'", sl__jtype_name(self), (int)x->a->n, x->a->s);
            }
        }
    }
    jv fn = eval(r, x->a, f);
    eval_args(r, x->args, f, &a, x->line);
    if (fn.t == V_MACRO) return call_macro(r, fn, &a, x->line);
    if (fn.t == V_FUNC) return sl__jglobal_call(r, fn.fn, &a);
    if (x->a->kind == JN_NAME)
        sl__jerr(r, SL_EUNSUPPORTED, x->line, "'%.*s' is not a function", (int)x->a->n, x->a->s);
    sl__jerr(r, SL_EINVAL, x->line, "%s is not callable", sl__jtype_name(fn));
}

static jv eval(rctx *r, const sl__jnode *x, frame *f) {
    step(r, x->line);
    if (++r->depth > SL__JIN_MAX_DEPTH) sl__jerr(r, SL_ENOMEM, x->line, "expression nested deeper than %d", SL__JIN_MAX_DEPTH);
    jv v;
    switch (x->kind) {
    case JN_STR: v = jv_str(x->s, x->n); break;
    case JN_INT: v = jv_int(x->i); break;
    case JN_FLOAT: v = jv_float(x->f); break;
    case JN_BOOL: v = jv_bool(x->i != 0); break;
    case JN_NONE: v = jv_none(); break;
    case JN_NAME: v = lookup(r, f, x->s, x->n); break;
    case JN_ATTR: {
        jv o = eval(r, x->a, f);
        v = o.t == V_DICT ? subscript(r, o, jv_str(x->s, x->n), x->line) : jv_undef();
        break;
    }
    case JN_INDEX: {
        jv o = eval(r, x->a, f);
        v = subscript(r, o, eval(r, x->b, f), x->line);
        break;
    }
    case JN_SLICE: v = slice(r, eval(r, x->a, f), x, f); break;
    case JN_CALL: v = eval_call(r, x, f); break;
    case JN_FILTER: {
        jv o = eval(r, x->a, f);
        jargs a;
        eval_args(r, x->args, f, &a, x->line);
        bool found = false;
        v = sl__jfilter(r, x->s, x->n, o, &a, &found);
        if (!found) sl__jerr(r, SL_EUNSUPPORTED, x->line, "unknown filter '%.*s'", (int)x->n, x->s);
        break;
    }
    case JN_TEST: {
        jv o = eval(r, x->a, f);
        jargs a;
        eval_args(r, x->args, f, &a, x->line);
        bool found = false;
        bool b = sl__jtest(r, x->s, x->n, o, &a, &found);
        if (!found) sl__jerr(r, SL_EUNSUPPORTED, x->line, "unknown test '%.*s'", (int)x->n, x->s);
        v = jv_bool(b != x->neg);
        break;
    }
    case JN_BIN: {
        jv a = eval(r, x->a, f), b = eval(r, x->b, f);
        switch (x->op) {
        case JOP_EQ: v = jv_bool(sl__jequal(a, b)); break;
        case JOP_NE: v = jv_bool(!sl__jequal(a, b)); break;
        case JOP_LT: v = jv_bool(cmp(r, a, b, x->line) < 0); break;
        case JOP_GT: v = jv_bool(cmp(r, a, b, x->line) > 0); break;
        case JOP_LE: v = jv_bool(cmp(r, a, b, x->line) <= 0); break;
        case JOP_GE: v = jv_bool(cmp(r, a, b, x->line) >= 0); break;
        case JOP_IN: v = jv_bool(contains(r, b, a, x->line)); break;
        case JOP_NOTIN: v = jv_bool(!contains(r, b, a, x->line)); break;
        default: v = arith(r, x->op, a, b, x->line);
        }
        break;
    }
    case JN_AND: {
        jv a = eval(r, x->a, f);
        v = sl__jtruthy(a) ? eval(r, x->b, f) : a;
        break;
    }
    case JN_OR: {
        jv a = eval(r, x->a, f);
        v = sl__jtruthy(a) ? a : eval(r, x->b, f);
        break;
    }
    case JN_NOT: v = jv_bool(!sl__jtruthy(eval(r, x->a, f))); break;
    case JN_NEG: case JN_POS: {
        jv a = eval(r, x->a, f);
        if (a.t == V_BOOL) a = jv_int(a.b);
        if (a.t == V_INT && x->kind == JN_NEG) {
            if (a.i == INT64_MIN) sl__jerr(r, SL_ERANGE, x->line, "integer overflow");
            a.i = -a.i;
        } else if (a.t == V_FLOAT && x->kind == JN_NEG) a.f = -a.f;
        else if (a.t != V_INT && a.t != V_FLOAT)
            sl__jerr(r, SL_EINVAL, x->line, "bad operand type for unary %c: %s", x->kind == JN_NEG ? '-' : '+', sl__jtype_name(a));
        v = a;
        break;
    }
    case JN_COND: v = sl__jtruthy(eval(r, x->a, f)) ? eval(r, x->b, f) : x->c ? eval(r, x->c, f) : jv_undef(); break;
    case JN_LIST: case JN_TUPLE: {
        v = sl__jlist_new(r, 0);
        for (const sl__jnode *y = x->args; y; y = y->next) sl__jlist_push(r, v.l, eval(r, y, f));
        break;
    }
    case JN_DICT: {
        v = sl__jdict_new(r);
        for (const sl__jnode *y = x->args; y; y = y->next) {
            jv k = eval(r, y->a, f);
            if (k.t == V_LIST || k.t == V_DICT || k.t == V_UNDEF || k.t == V_MACRO || k.t == V_FUNC)
                sl__jerr(r, SL_EINVAL, y->line, "%s cannot be a dict key", sl__jtype_name(k));
            sl__jdict_setv(r, v.d, k, eval(r, y->b, f));
        }
        break;
    }
    default: sl__jerr(r, SL_EINVAL, x->line, "not an expression");
    }
    r->depth--;
    return v;
}

/* ---- statements -------------------------------------------------------------------------- */
static void bind(rctx *r, frame *f, const sl__jnode *names, jv v, int line) {
    if (!names->next) {
        sl__jdict_set(r, f->vars, names->s, names->n, v);
        return;
    }
    size_t k = 0;
    for (const sl__jnode *y = names; y; y = y->next) k++;
    if (v.t != V_LIST || v.l->n != k) sl__jerr(r, SL_EINVAL, line, "cannot unpack %s into %zu names", sl__jtype_name(v), k);
    k = 0;
    for (const sl__jnode *y = names; y; y = y->next) sl__jdict_set(r, f->vars, y->s, y->n, v.l->v[k++]);
}

jv sl__jto_list(rctx *r, jv v, bool *ok) {
    *ok = true;
    if (v.t == V_LIST) return v;
    jv out = sl__jlist_new(r, 0);
    if (v.t == V_DICT) {
        for (size_t i = 0; i < v.d->n; i++) sl__jlist_push(r, out.l, v.d->k[i]);
    } else if (v.t == V_STR) {
        for (size_t i = 0; i < v.s.n;) {
            size_t j = i + 1;
            while (j < v.s.n && ((unsigned char)v.s.s[j] & 0xC0) == 0x80) j++;
            sl__jlist_push(r, out.l, jv_str(v.s.s + i, j - i));
            i = j;
        }
    } else if (v.t != V_UNDEF && v.t != V_NONE) { /* none iterates as empty, as in llama.cpp */
        *ok = false;
    }
    return out;
}

static jv iterable(rctx *r, jv v, int line) {
    bool ok;
    jv out = sl__jto_list(r, v, &ok);
    if (!ok) sl__jerr(r, SL_EINVAL, line, "%s is not iterable", sl__jtype_name(v));
    return out;
}

/* One scope and one `loop` object for the whole loop, updated in place each iteration (as
 * Jinja2's LoopContext): a loop allocates nothing per iteration. */
static void exec_for(rctx *r, const sl__jnode *s, frame *f) {
    jv items = iterable(r, eval(r, s->a, f), s->line);
    frame *t = frame_new(r, f);
    if (s->b) { /* the loop filter runs first: loop.index counts the kept items */
        jv kept = sl__jlist_new(r, 0);
        for (size_t i = 0; i < items.l->n; i++) {
            step(r, s->line);
            bind(r, t, s->args, items.l->v[i], s->line);
            if (sl__jtruthy(eval(r, s->b, t))) sl__jlist_push(r, kept.l, items.l->v[i]);
        }
        items = kept;
    }
    size_t n = items.l->n;
    if (!n) {
        exec(r, s->else_body, f);
        return;
    }
    static const char *const keys[] = {"index", "index0", "revindex", "revindex0", "first", "last", "length", "previtem", "nextitem"};
    jv loop = sl__jdict_new(r);
    for (size_t k = 0; k < 9; k++) sl__jdict_set(r, loop.d, keys[k], strlen(keys[k]), jv_undef());
    sl__jdict_set(r, t->vars, "loop", 4, loop);
    jv *lv = loop.d->v; /* in the order of keys[] */
    for (size_t i = 0; i < n; i++) {
        step(r, s->line);
        bind(r, t, s->args, items.l->v[i], s->line);
        lv[0] = jv_int((int64_t)i + 1), lv[1] = jv_int((int64_t)i);
        lv[2] = jv_int((int64_t)(n - i)), lv[3] = jv_int((int64_t)(n - i - 1));
        lv[4] = jv_bool(i == 0), lv[5] = jv_bool(i + 1 == n), lv[6] = jv_int((int64_t)n);
        lv[7] = i ? items.l->v[i - 1] : jv_undef(), lv[8] = i + 1 < n ? items.l->v[i + 1] : jv_undef();
        exec(r, s->body, t);
        int ctl = r->ctl;
        r->ctl = 0;
        if (ctl == 1) break;
    }
}

static void exec(rctx *r, const sl__jnode *s, frame *f) {
    if (++r->depth > SL__JIN_MAX_DEPTH) sl__jerr(r, SL_ENOMEM, s ? s->line : 0, "statements nested deeper than %d", SL__JIN_MAX_DEPTH);
    for (; s && !r->ctl; s = s->next) {
        step(r, s->line);
        switch (s->kind) {
        case JN_TEXT: emit(r, s->s, s->n); break;
        case JN_OUT: {
            jv v = sl__jto_str(r, eval(r, s->a, f));
            emit(r, v.s.s, v.s.n);
            break;
        }
        case JN_IF: exec(r, sl__jtruthy(eval(r, s->a, f)) ? s->body : s->else_body, f); break;
        case JN_FOR: exec_for(r, s, f); break;
        case JN_SET:
            if (s->a) { /* ns.attr = value */
                jv ns = eval(r, s->a, f);
                if (ns.t != V_DICT) sl__jerr(r, SL_EINVAL, s->line, "cannot set an attribute of %s", sl__jtype_name(ns));
                sl__jdict_set(r, ns.d, s->s, s->n, eval(r, s->b, f));
            } else {
                bind(r, f, s->args, eval(r, s->b, f), s->line);
            }
            break;
        case JN_SETBLOCK: {
            size_t mark = r->n;
            exec(r, s->body, f);
            jv v = sl__jstr_copy(r, r->out ? r->out + mark : "", r->n - mark);
            r->n = mark;
            sl__jdict_set(r, f->vars, s->s, s->n, v);
            break;
        }
        case JN_FILTERBLOCK: {
            size_t mark = r->n;
            exec(r, s->body, f);
            jv v = sl__jstr_copy(r, r->out ? r->out + mark : "", r->n - mark);
            r->n = mark;
            jargs a;
            eval_args(r, s->args, f, &a, s->line);
            bool found = false;
            v = sl__jto_str(r, sl__jfilter(r, s->s, s->n, v, &a, &found));
            if (!found) sl__jerr(r, SL_EUNSUPPORTED, s->line, "unknown filter '%.*s'", (int)s->n, s->s);
            emit(r, v.s.s, v.s.n);
            break;
        }
        case JN_MACRO: {
            jv m = {.t = V_MACRO};
            m.m = s;
            sl__jdict_set(r, f->vars, s->s, s->n, m);
            break;
        }
        case JN_BREAK: r->ctl = 1; break;
        case JN_CONTINUE: r->ctl = 2; break;
        default: sl__jerr(r, SL_EINVAL, s->line, "not a statement");
        }
    }
    r->depth--;
}

/* ---- entry --------------------------------------------------------------------------------- */
int sl__jinja_render(const sl__jtmpl *t, const sl__jin_input *in, char **out, size_t *len, char err[SL_ERRMSG]) {
    *out = NULL, *len = 0;
    rctx *r = calloc(1, sizeof *r);
    if (!r) return sl_fail(err, SL_ENOMEM, "out of memory");
    r->arena.cap = SL__JIN_MAX_ARENA;
    r->err = err;
    if (setjmp(r->jb)) {
        int code = r->code;
        free(r->out);
        sl__ja_free(&r->arena);
        free(r);
        return code;
    }
    r->root = frame_new(r, NULL);
    jv msgs;
    if (in->json) {
        msgs = sl__jjson_parse(r, in->json, in->json_len);
        if (msgs.t != V_LIST) sl__jerr(r, SL_EFORMAT, 0, "messages: expected a JSON array, got %s", sl__jtype_name(msgs));
        for (size_t i = 0; i < msgs.l->n; i++)
            if (msgs.l->v[i].t != V_DICT) sl__jerr(r, SL_EFORMAT, 0, "messages[%zu]: expected an object", i);
    } else {
        msgs = sl__jlist_new(r, in->n_msgs);
        for (size_t i = 0; i < in->n_msgs; i++) {
            jv m = sl__jdict_new(r);
            const char *role = in->msgs[i].role ? in->msgs[i].role : "", *content = in->msgs[i].content ? in->msgs[i].content : "";
            sl__jdict_set(r, m.d, "role", 4, jv_str(role, strlen(role)));
            sl__jdict_set(r, m.d, "content", 7, jv_str(content, strlen(content)));
            sl__jlist_push(r, msgs.l, m);
        }
    }
    jdict *g = r->root->vars;
    sl__jdict_set(r, g, "messages", 8, msgs);
    sl__jdict_set(r, g, "add_generation_prompt", 21, jv_bool(in->add_generation_prompt));
    sl__jdict_set(r, g, "bos_token", 9, jv_str(in->bos ? in->bos : "", in->bos ? strlen(in->bos) : 0));
    sl__jdict_set(r, g, "eos_token", 9, jv_str(in->eos ? in->eos : "", in->eos ? strlen(in->eos) : 0));
    exec(r, t->root, r->root);
    emit(r, "", 0);
    r->out[r->n] = 0;
    *out = r->out, *len = r->n;
    sl__ja_free(&r->arena);
    free(r);
    return 0;
}

int sl__jinja_json_msgs(const char *json, size_t n, sl_chat_msg **out, size_t *n_out, char err[SL_ERRMSG]) {
    *out = NULL, *n_out = 0;
    rctx *r = calloc(1, sizeof *r);
    if (!r) return sl_fail(err, SL_ENOMEM, "out of memory");
    r->arena.cap = SL__JIN_MAX_ARENA;
    r->err = err;
    sl_chat_msg *volatile m = NULL; /* assigned after setjmp, freed after longjmp */
    if (setjmp(r->jb)) {
        int code = r->code;
        free(m);
        sl__ja_free(&r->arena);
        free(r);
        return code;
    }
    jv v = sl__jjson_parse(r, json, n);
    if (v.t != V_LIST) sl__jerr(r, SL_EFORMAT, 0, "messages: expected a JSON array, got %s", sl__jtype_name(v));
    size_t total = v.l->n * sizeof *m;
    for (size_t i = 0; i < v.l->n; i++) {
        jv d = v.l->v[i], *role = d.t == V_DICT ? sl__jdict_get(d.d, "role", 4) : NULL;
        jv *content = d.t == V_DICT ? sl__jdict_get(d.d, "content", 7) : NULL;
        if (!role || role->t != V_STR || (content && content->t != V_STR && content->t != V_NONE))
            sl__jerr(r, SL_EFORMAT, 0, "messages[%zu]: expected an object with string role and content", i);
        total += role->s.n + 1 + (content && content->t == V_STR ? content->s.n : 0) + 1;
    }
    m = malloc(total ? total : 1);
    if (!m) sl__jerr(r, SL_ENOMEM, 0, "out of memory");
    char *p = (char *)(m + v.l->n);
    for (size_t i = 0; i < v.l->n; i++) {
        jv d = v.l->v[i], *role = sl__jdict_get(d.d, "role", 4), *content = sl__jdict_get(d.d, "content", 7);
        m[i].role = p;
        memcpy(p, role->s.s, role->s.n), p += role->s.n, *p++ = 0;
        m[i].content = p;
        if (content && content->t == V_STR) memcpy(p, content->s.s, content->s.n), p += content->s.n;
        *p++ = 0;
    }
    *out = m, *n_out = v.l->n;
    sl__ja_free(&r->arena);
    free(r);
    return 0;
}
