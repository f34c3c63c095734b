/* chat_builtins.c — filters, tests, methods and globals of the Jinja subset, and the JSON
 * reader for messages given as JSON. What each does follows Jinja2 and Python (Hugging Face
 * renders chat templates with them); strings are UTF-8, lengths and indexes count code points,
 * case mapping and whitespace are ASCII.
 *
 *   filters  abs capitalize count d default dictsort first float indent int items join last length
 *            list lower map rejectattr replace reverse round safe select selectattr sort string
 *            title tojson trim unique upper
 *   tests    boolean callable defined divisibleby eq equalto even false float ge gt in integer
 *            iterable le lower lt mapping ne none number odd sameas sequence string true
 *            undefined upper
 *   methods  str: capitalize count endswith find format join lower lstrip replace rfind rsplit rstrip
 *                 split splitlines startswith strip title upper
 *            dict: get items keys values;  list: append count index pop
 *   globals  dict(**kw) namespace(**kw) raise_exception(msg) range([start,] stop[, step])
 *            strftime_now(format)
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat_value.h"

#define NAME_IS(lit) (n == sizeof(lit) - 1 && !memcmp(name, lit, n))

static jv need_str(rctx *r, jv v, const jargs *a, const char *what) {
    if (v.t != V_STR) sl__jerr(r, SL_EINVAL, a->line, "%s expects a string, got %s", what, sl__jtype_name(v));
    return v;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* strip: which 1 left, 2 right, 3 both; chars NULL = whitespace */
static jv strip(jv s, int which, jv chars) {
    const char *p = s.s.s;
    size_t a = 0, b = s.s.n;
    bool ws = chars.t != V_STR;
#define STRIPPABLE(c) (ws ? is_ws(c) : memchr(chars.s.s, (c), chars.s.n) != NULL)
    if (which & 1)
        while (a < b && STRIPPABLE(p[a])) a++;
    if (which & 2)
        while (b > a && STRIPPABLE(p[b - 1])) b--;
#undef STRIPPABLE
    return jv_str(p + a, b - a);
}

static jv map_case(rctx *r, jv s, int mode) { /* 0 lower, 1 upper, 2 title, 3 capitalize */
    char *o = sl__jalloc(r, s.s.n + 1);
    bool word = false;
    for (size_t i = 0; i < s.s.n; i++) {
        unsigned char c = (unsigned char)s.s.s[i];
        bool alpha = isalpha(c) != 0;
        if (mode == 0) c = (unsigned char)tolower(c);
        else if (mode == 1) c = (unsigned char)toupper(c);
        else if (mode == 2) c = (unsigned char)(word ? tolower(c) : toupper(c));
        else c = (unsigned char)(i == 0 ? toupper(c) : tolower(c));
        word = alpha;
        o[i] = (char)c;
    }
    return jv_str(o, s.s.n);
}

static jv replace(rctx *r, jv s, jv from, jv to, int64_t count) {
    jbuf b = {0};
    sl__jbuf_put(r, &b, "", 0);
    size_t i = 0;
    int64_t done = 0;
    if (!from.s.n) { /* Python inserts between every character */
        for (; i <= s.s.n && (count < 0 || done < count); done++) {
            sl__jbuf_put(r, &b, to.s.s, to.s.n);
            if (i == s.s.n) {
                i++;
                break;
            }
            size_t j = i + 1;
            while (j < s.s.n && ((unsigned char)s.s.s[j] & 0xC0) == 0x80) j++;
            sl__jbuf_put(r, &b, s.s.s + i, j - i);
            i = j;
        }
        if (i < s.s.n) sl__jbuf_put(r, &b, s.s.s + i, s.s.n - i);
        return jv_str(b.s, b.n);
    }
    while (i < s.s.n && (count < 0 || done < count)) {
        const char *hit = memmem(s.s.s + i, s.s.n - i, from.s.s, from.s.n);
        if (!hit) break;
        sl__jbuf_put(r, &b, s.s.s + i, (size_t)(hit - s.s.s) - i);
        sl__jbuf_put(r, &b, to.s.s, to.s.n);
        i = (size_t)(hit - s.s.s) + from.s.n;
        done++;
    }
    sl__jbuf_put(r, &b, s.s.s + i, s.s.n - i);
    return jv_str(b.s, b.n);
}

/* str.split / rsplit (sep none: runs of whitespace, no empty items) */
static jv split(rctx *r, jv s, jv sep, int64_t maxsplit, bool from_right) {
    jv out = sl__jlist_new(r, 0);
    const char *p = s.s.s;
    size_t n = s.s.n;
    if (sep.t != V_STR) {
        /* whitespace-separated fields (pointers into s), then maxsplit from the chosen side */
        jv f = sl__jlist_new(r, 0);
        for (size_t i = 0; i < n;) {
            while (i < n && is_ws(p[i])) i++;
            if (i >= n) break;
            size_t j = i;
            while (j < n && !is_ws(p[j])) j++;
            sl__jlist_push(r, f.l, jv_str(p + i, j - i));
            i = j;
        }
        size_t k = f.l->n;
        if (maxsplit < 0 || (size_t)maxsplit + 1 >= k) return f;
        jv *v = f.l->v;
        if (!from_right) {
            for (size_t t = 0; t < (size_t)maxsplit; t++) sl__jlist_push(r, out.l, v[t]);
            const char *a0 = v[maxsplit].s.s, *e = p + n;
            while (e > a0 && is_ws(e[-1])) e--;
            sl__jlist_push(r, out.l, jv_str(a0, (size_t)(e - a0)));
        } else {
            size_t first = k - (size_t)maxsplit - 1;
            const char *b0 = p, *e = v[first].s.s + v[first].s.n;
            while (b0 < e && is_ws(*b0)) b0++;
            sl__jlist_push(r, out.l, jv_str(b0, (size_t)(e - b0)));
            for (size_t t = first + 1; t < k; t++) sl__jlist_push(r, out.l, v[t]);
        }
        return out;
    }
    if (!sep.s.n) sl__jerr(r, SL_EINVAL, 0, "split: empty separator");
    if (!from_right || maxsplit < 0) {
        size_t i = 0;
        int64_t done = 0;
        for (;;) {
            const char *hit = maxsplit < 0 || done < maxsplit ? memmem(p + i, n - i, sep.s.s, sep.s.n) : NULL;
            if (!hit) break;
            sl__jlist_push(r, out.l, jv_str(p + i, (size_t)(hit - p) - i));
            i = (size_t)(hit - p) + sep.s.n;
            done++;
        }
        sl__jlist_push(r, out.l, jv_str(p + i, n - i));
        return out;
    }
    /* rsplit with a limit: find separators from the right */
    jv rev = sl__jlist_new(r, 0);
    size_t end = n;
    int64_t done = 0;
    while (done < maxsplit && end >= sep.s.n) {
        size_t j = end - sep.s.n;
        bool found = false;
        for (;; j--) {
            if (!memcmp(p + j, sep.s.s, sep.s.n)) {
                found = true;
                break;
            }
            if (!j) break;
        }
        if (!found) break;
        sl__jlist_push(r, rev.l, jv_str(p + j + sep.s.n, end - j - sep.s.n));
        end = j;
        done++;
    }
    sl__jlist_push(r, out.l, jv_str(p, end));
    for (size_t t = rev.l->n; t > 0; t--) sl__jlist_push(r, out.l, rev.l->v[t - 1]);
    return out;
}

/* ---- JSON out (Hugging Face's tojson: json.dumps with ensure_ascii=False) ----------------- */
static void json_str(rctx *r, jbuf *b, const char *s, size_t n) {
    sl__jbuf_put(r, b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"') strcpy(e, "\\\"");
        else if (c == '\\') strcpy(e, "\\\\");
        else if (c == '\n') strcpy(e, "\\n");
        else if (c == '\r') strcpy(e, "\\r");
        else if (c == '\t') strcpy(e, "\\t");
        else if (c == '\b') strcpy(e, "\\b");
        else if (c == '\f') strcpy(e, "\\f");
        else if (c < 0x20) snprintf(e, sizeof e, "\\u%04x", c);
        else e[0] = (char)c, e[1] = 0;
        sl__jbuf_put(r, b, e, strlen(e));
    }
    sl__jbuf_put(r, b, "\"", 1);
}

static void newline_indent(rctx *r, jbuf *b, int indent, int level) {
    sl__jbuf_put(r, b, "\n", 1);
    for (int i = 0; i < indent * level; i++) sl__jbuf_put(r, b, " ", 1);
}

static void to_json(rctx *r, jbuf *b, jv v, int indent, int level) {
    if (level > SL__JIN_MAX_DEPTH) sl__jerr(r, SL_ENOMEM, 0, "tojson: value nested too deeply");
    switch (v.t) {
    case V_UNDEF: case V_NONE: sl__jbuf_put(r, b, "null", 4); return;
    case V_BOOL: v.b ? sl__jbuf_put(r, b, "true", 4) : sl__jbuf_put(r, b, "false", 5); return;
    case V_INT: case V_FLOAT: {
        jv s = sl__jto_str(r, v);
        if (v.t == V_FLOAT && !isfinite(v.f)) s = jv_str(isnan(v.f) ? "NaN" : v.f < 0 ? "-Infinity" : "Infinity", isnan(v.f) ? 3 : v.f < 0 ? 9 : 8);
        sl__jbuf_put(r, b, s.s.s, s.s.n);
        return;
    }
    case V_STR: json_str(r, b, v.s.s, v.s.n); return;
    case V_LIST: case V_DICT: {
        bool list = v.t == V_LIST;
        size_t n = list ? v.l->n : v.d->n;
        sl__jbuf_put(r, b, list ? "[" : "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) sl__jbuf_put(r, b, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            if (indent >= 0) newline_indent(r, b, indent, level + 1);
            if (!list) {
                jv k = v.d->k[i].t == V_STR ? v.d->k[i] : v.d->k[i].t == V_NONE ? jv_str("null", 4)
                     : v.d->k[i].t == V_BOOL ? jv_str(v.d->k[i].b ? "true" : "false", v.d->k[i].b ? 4 : 5) : sl__jto_str(r, v.d->k[i]);
                json_str(r, b, k.s.s, k.s.n);
                sl__jbuf_put(r, b, ": ", 2);
            }
            to_json(r, b, list ? v.l->v[i] : v.d->v[i], indent, level + 1);
        }
        if (n && indent >= 0) newline_indent(r, b, indent, level);
        sl__jbuf_put(r, b, list ? "]" : "}", 1);
        return;
    }
    default: sl__jerr(r, SL_EINVAL, 0, "tojson: cannot serialize %s", sl__jtype_name(v));
    }
}

/* ---- helpers over sequences ---------------------------------------------------------------- */
static jv as_list(rctx *r, jv v, const jargs *a, const char *what) {
    bool ok;
    jv out = sl__jto_list(r, v, &ok);
    if (!ok) sl__jerr(r, SL_EINVAL, a->line, "%s expects a sequence, got %s", what, sl__jtype_name(v));
    return out;
}

/* Attribute "a.b.c" of a value (dict keys), undefined when missing. */
static jv get_attr(jv v, jv path) {
    const char *s = path.s.s, *end = s + path.s.n;
    while (s < end) {
        const char *dot = memchr(s, '.', (size_t)(end - s));
        size_t n = dot ? (size_t)(dot - s) : (size_t)(end - s);
        if (v.t != V_DICT) return jv_undef();
        jv *x = sl__jdict_get(v.d, s, n);
        if (!x) return jv_undef();
        v = *x;
        s += n + (dot ? 1 : 0);
    }
    return v;
}

static int cmp_values(const jv *a, const jv *b) {
    if (a->t == V_STR && b->t == V_STR) {
        int c = memcmp(a->s.s, b->s.s, a->s.n < b->s.n ? a->s.n : b->s.n);
        return c ? c : (a->s.n > b->s.n) - (a->s.n < b->s.n);
    }
    double x = a->t == V_FLOAT ? a->f : a->t == V_INT ? (double)a->i : a->t == V_BOOL ? a->b : 0;
    double y = b->t == V_FLOAT ? b->f : b->t == V_INT ? (double)b->i : b->t == V_BOOL ? b->b : 0;
    return (x > y) - (x < y);
}

/* select/reject(attr)(test, args...): items whose (attribute) passes the test. */
static jv select_items(rctx *r, jv seq, const jargs *a, bool by_attr, bool keep) {
    jv items = as_list(r, seq, a, "select");
    jv out = sl__jlist_new(r, 0);
    int first = by_attr ? 1 : 0;
    jv attr = by_attr ? need_str(r, sl__jarg(a, 0, NULL, jv_undef()), a, "selectattr") : jv_undef();
    jv test = sl__jarg(a, first, NULL, jv_undef());
    jargs ta = {.line = a->line};
    for (int i = first + 1; i < a->npos; i++) ta.pos[ta.npos++] = a->pos[i];
    for (size_t i = 0; i < items.l->n; i++) {
        jv x = by_attr ? get_attr(items.l->v[i], attr) : items.l->v[i];
        bool pass;
        if (test.t == V_UNDEF) pass = sl__jtruthy(x);
        else {
            bool found = false;
            need_str(r, test, a, "select test");
            pass = sl__jtest(r, test.s.s, test.s.n, x, &ta, &found);
            if (!found) sl__jerr(r, SL_EUNSUPPORTED, a->line, "unknown test '%.*s'", (int)test.s.n, test.s.s);
        }
        if (pass == keep) sl__jlist_push(r, out.l, items.l->v[i]);
    }
    return out;
}

/* ---- filters --------------------------------------------------------------------------------- */
jv sl__jfilter(rctx *r, const char *name, size_t n, jv x, const jargs *a, bool *found) {
    *found = true;
    if (NAME_IS("trim")) return strip(sl__jto_str(r, x), 3, sl__jarg(a, 0, "chars", jv_undef()));
    if (NAME_IS("length") || NAME_IS("count")) {
        if (x.t == V_STR) return jv_int((int64_t)sl__utf8_len(x.s.s, x.s.n));
        if (x.t == V_LIST) return jv_int((int64_t)x.l->n);
        if (x.t == V_DICT) return jv_int((int64_t)x.d->n);
        if (x.t == V_UNDEF) return jv_int(0);
        sl__jerr(r, SL_EINVAL, a->line, "length of %s", sl__jtype_name(x));
    }
    if (NAME_IS("lower")) return map_case(r, sl__jto_str(r, x), 0);
    if (NAME_IS("upper")) return map_case(r, sl__jto_str(r, x), 1);
    if (NAME_IS("title")) return map_case(r, sl__jto_str(r, x), 2);
    if (NAME_IS("capitalize")) return map_case(r, sl__jto_str(r, x), 3);
    if (NAME_IS("default") || NAME_IS("d")) {
        bool boolean = sl__jtruthy(sl__jarg(a, 1, "boolean", jv_bool(false)));
        if (x.t == V_UNDEF || (boolean && !sl__jtruthy(x))) return sl__jarg(a, 0, "default_value", jv_str("", 0));
        return x;
    }
    if (NAME_IS("string")) return sl__jto_str(r, x);
    if (NAME_IS("safe")) return x;
    if (NAME_IS("tojson")) {
        jv ind = sl__jarg(a, 0, "indent", jv_none());
        int indent = ind.t == V_INT ? (int)(ind.i < 0 ? 0 : ind.i > 64 ? 64 : ind.i) : -1;
        jbuf b = {0};
        to_json(r, &b, x, indent, 0);
        return jv_str(b.s, b.n);
    }
    if (NAME_IS("join")) {
        jv items = as_list(r, x, a, "join"), sep = sl__jarg(a, 0, "d", jv_str("", 0));
        jv attr = sl__jarg(a, 1, "attribute", jv_undef());
        sep = sl__jto_str(r, sep);
        jbuf b = {0};
        sl__jbuf_put(r, &b, "", 0);
        for (size_t i = 0; i < items.l->n; i++) {
            if (i) sl__jbuf_put(r, &b, sep.s.s, sep.s.n);
            jv it = attr.t == V_STR ? get_attr(items.l->v[i], attr) : items.l->v[i];
            jv s = sl__jto_str(r, it);
            sl__jbuf_put(r, &b, s.s.s, s.s.n);
        }
        return jv_str(b.s, b.n);
    }
    if (NAME_IS("first") || NAME_IS("last")) {
        jv items = as_list(r, x, a, "first/last");
        if (!items.l->n) return jv_undef();
        return items.l->v[NAME_IS("first") ? 0 : items.l->n - 1];
    }
    if (NAME_IS("list")) {
        jv items = as_list(r, x, a, "list"), out = sl__jlist_new(r, items.l->n);
        for (size_t i = 0; i < items.l->n; i++) sl__jlist_push(r, out.l, items.l->v[i]);
        return out;
    }
    if (NAME_IS("reverse")) {
        if (x.t == V_STR) {
            jv chars = as_list(r, x, a, "reverse");
            jbuf b = {0};
            sl__jbuf_put(r, &b, "", 0);
            for (size_t i = chars.l->n; i > 0; i--) sl__jbuf_put(r, &b, chars.l->v[i - 1].s.s, chars.l->v[i - 1].s.n);
            return jv_str(b.s, b.n);
        }
        jv items = as_list(r, x, a, "reverse"), out = sl__jlist_new(r, items.l->n);
        for (size_t i = items.l->n; i > 0; i--) sl__jlist_push(r, out.l, items.l->v[i - 1]);
        return out;
    }
    if (NAME_IS("items")) {
        if (x.t == V_UNDEF) return sl__jlist_new(r, 0);
        if (x.t != V_DICT) sl__jerr(r, SL_EINVAL, a->line, "items expects a dict, got %s", sl__jtype_name(x));
        jv out = sl__jlist_new(r, x.d->n);
        for (size_t i = 0; i < x.d->n; i++) {
            jv pair = sl__jlist_new(r, 2);
            sl__jlist_push(r, pair.l, x.d->k[i]);
            sl__jlist_push(r, pair.l, x.d->v[i]);
            sl__jlist_push(r, out.l, pair);
        }
        return out;
    }
    if (NAME_IS("dictsort")) { /* (key, value) pairs by key */
        if (x.t == V_UNDEF || x.t == V_NONE) return sl__jlist_new(r, 0);
        if (x.t != V_DICT) sl__jerr(r, SL_EINVAL, a->line, "dictsort expects a dict, got %s", sl__jtype_name(x));
        bool by_value = sl__jtruthy(sl__jarg(a, 1, "by", jv_str("key", 3))) && sl__jarg(a, 1, "by", jv_str("key", 3)).t == V_STR &&
                        sl__jarg(a, 1, "by", jv_str("key", 3)).s.n == 5;
        jv out = sl__jlist_new(r, x.d->n);
        for (size_t i = 0; i < x.d->n; i++) {
            jv pair = sl__jlist_new(r, 2);
            sl__jlist_push(r, pair.l, x.d->k[i]);
            sl__jlist_push(r, pair.l, x.d->v[i]);
            sl__jlist_push(r, out.l, pair);
        }
        for (size_t i = 1; i < out.l->n; i++)
            for (size_t j = i; j > 0 && cmp_values(&out.l->v[j - 1].l->v[by_value], &out.l->v[j].l->v[by_value]) > 0; j--) {
                jv t = out.l->v[j];
                out.l->v[j] = out.l->v[j - 1], out.l->v[j - 1] = t;
            }
        return out;
    }
    if (NAME_IS("selectattr") || NAME_IS("rejectattr")) return select_items(r, x, a, true, NAME_IS("selectattr"));
    if (NAME_IS("select") || NAME_IS("reject")) return select_items(r, x, a, false, NAME_IS("select"));
    if (NAME_IS("map")) {
        jv items = as_list(r, x, a, "map"), out = sl__jlist_new(r, items.l->n);
        jv attr = sl__jarg(a, -1, "attribute", jv_undef());
        if (attr.t == V_STR) {
            jv dflt = sl__jarg(a, -1, "default", jv_undef());
            for (size_t i = 0; i < items.l->n; i++) {
                jv v = get_attr(items.l->v[i], attr);
                sl__jlist_push(r, out.l, v.t == V_UNDEF ? dflt : v);
            }
            return out;
        }
        jv fname = need_str(r, sl__jarg(a, 0, NULL, jv_undef()), a, "map");
        jargs fa = {.line = a->line};
        for (int i = 1; i < a->npos; i++) fa.pos[fa.npos++] = a->pos[i];
        for (size_t i = 0; i < items.l->n; i++) {
            bool ok = false;
            jv v = sl__jfilter(r, fname.s.s, fname.s.n, items.l->v[i], &fa, &ok);
            if (!ok) sl__jerr(r, SL_EUNSUPPORTED, a->line, "unknown filter '%.*s'", (int)fname.s.n, fname.s.s);
            sl__jlist_push(r, out.l, v);
        }
        return out;
    }
    if (NAME_IS("replace")) {
        jv s = sl__jto_str(r, x);
        jv from = sl__jto_str(r, sl__jarg(a, 0, "old", jv_str("", 0))), to = sl__jto_str(r, sl__jarg(a, 1, "new", jv_str("", 0)));
        jv cnt = sl__jarg(a, 2, "count", jv_none());
        return replace(r, s, from, to, cnt.t == V_INT ? cnt.i : -1);
    }
    if (NAME_IS("int")) {
        if (x.t == V_INT) return x;
        if (x.t == V_BOOL) return jv_int(x.b);
        if (x.t == V_FLOAT && isfinite(x.f) && fabs(x.f) < 9e18) return jv_int((int64_t)x.f);
        if (x.t == V_STR) {
            char buf[32];
            jv t = strip(x, 3, jv_undef());
            if (t.s.n && t.s.n < sizeof buf) {
                memcpy(buf, t.s.s, t.s.n), buf[t.s.n] = 0;
                char *end;
                long long v = strtoll(buf, &end, 10);
                if (!*end) return jv_int(v);
            }
        }
        return sl__jarg(a, 0, "default", jv_int(0));
    }
    if (NAME_IS("float")) {
        if (x.t == V_FLOAT) return x;
        if (x.t == V_INT) return jv_float((double)x.i);
        if (x.t == V_STR) {
            char buf[64];
            jv t = strip(x, 3, jv_undef());
            if (t.s.n && t.s.n < sizeof buf) {
                memcpy(buf, t.s.s, t.s.n), buf[t.s.n] = 0;
                char *end;
                double v = strtod(buf, &end);
                if (!*end) return jv_float(v);
            }
        }
        return sl__jarg(a, 0, "default", jv_float(0));
    }
    if (NAME_IS("abs")) {
        if (x.t == V_INT && x.i != INT64_MIN) return jv_int(x.i < 0 ? -x.i : x.i);
        if (x.t == V_FLOAT) return jv_float(fabs(x.f));
        sl__jerr(r, SL_EINVAL, a->line, "abs of %s", sl__jtype_name(x));
    }
    if (NAME_IS("round")) {
        jv p = sl__jarg(a, 0, "precision", jv_int(0));
        double v = x.t == V_INT ? (double)x.i : x.t == V_FLOAT ? x.f : 0, k = pow(10, p.t == V_INT ? (double)p.i : 0);
        return jv_float(round(v * k) / k);
    }
    if (NAME_IS("unique")) {
        jv items = as_list(r, x, a, "unique"), out = sl__jlist_new(r, 0);
        for (size_t i = 0; i < items.l->n; i++) {
            bool dup = false;
            for (size_t j = 0; j < out.l->n && !dup; j++) dup = sl__jequal(out.l->v[j], items.l->v[i]);
            if (!dup) sl__jlist_push(r, out.l, items.l->v[i]);
        }
        return out;
    }
    if (NAME_IS("sort")) {
        jv items = as_list(r, x, a, "sort"), out = sl__jlist_new(r, items.l->n);
        for (size_t i = 0; i < items.l->n; i++) sl__jlist_push(r, out.l, items.l->v[i]);
        for (size_t i = 1; i < out.l->n; i++) /* insertion sort: stable, lists are short */
            for (size_t j = i; j > 0 && cmp_values(&out.l->v[j - 1], &out.l->v[j]) > 0; j--) {
                jv t = out.l->v[j];
                out.l->v[j] = out.l->v[j - 1], out.l->v[j - 1] = t;
            }
        if (sl__jtruthy(sl__jarg(a, 0, "reverse", jv_bool(false))))
            for (size_t i = 0, j = out.l->n; i + 1 < j; i++, j--) {
                jv t = out.l->v[i];
                out.l->v[i] = out.l->v[j - 1], out.l->v[j - 1] = t;
            }
        return out;
    }
    if (NAME_IS("indent")) {
        jv s = sl__jto_str(r, x), w = sl__jarg(a, 0, "width", jv_int(4));
        bool first = sl__jtruthy(sl__jarg(a, 1, "first", jv_bool(false)));
        int width = w.t == V_INT ? (int)(w.i < 0 ? 0 : w.i > 64 ? 64 : w.i) : 4;
        jbuf b = {0};
        sl__jbuf_put(r, &b, "", 0);
        for (size_t i = 0; i < s.s.n; i++) {
            bool line_start = i == 0 ? first : s.s.s[i - 1] == '\n';
            if (line_start && s.s.s[i] != '\n')
                for (int k = 0; k < width; k++) sl__jbuf_put(r, &b, " ", 1);
            sl__jbuf_put(r, &b, s.s.s + i, 1);
        }
        return jv_str(b.s, b.n);
    }
    *found = false;
    return jv_undef();
}

/* ---- tests ----------------------------------------------------------------------------------- */
bool sl__jtest(rctx *r, const char *name, size_t n, jv x, const jargs *a, bool *found) {
    *found = true;
    jv arg = sl__jarg(a, 0, NULL, jv_undef());
    if (NAME_IS("defined")) return x.t != V_UNDEF;
    if (NAME_IS("undefined")) return x.t == V_UNDEF;
    if (NAME_IS("none")) return x.t == V_NONE;
    if (NAME_IS("string")) return x.t == V_STR;
    if (NAME_IS("number")) return x.t == V_INT || x.t == V_FLOAT;
    if (NAME_IS("integer")) return x.t == V_INT;
    if (NAME_IS("float")) return x.t == V_FLOAT;
    if (NAME_IS("boolean")) return x.t == V_BOOL;
    if (NAME_IS("true")) return x.t == V_BOOL && x.b;
    if (NAME_IS("false")) return x.t == V_BOOL && !x.b;
    if (NAME_IS("mapping")) return x.t == V_DICT;
    if (NAME_IS("iterable")) return x.t == V_LIST || x.t == V_DICT || x.t == V_STR;
    if (NAME_IS("sequence")) return x.t == V_LIST || x.t == V_DICT || x.t == V_STR;
    if (NAME_IS("callable")) return x.t == V_MACRO || x.t == V_FUNC;
    if (NAME_IS("eq") || NAME_IS("equalto") || NAME_IS("sameas")) return sl__jequal(x, arg);
    if (NAME_IS("ne")) return !sl__jequal(x, arg);
    if (NAME_IS("lt") || NAME_IS("gt") || NAME_IS("le") || NAME_IS("ge")) {
        if (!((x.t == V_INT || x.t == V_FLOAT) && (arg.t == V_INT || arg.t == V_FLOAT)) && !(x.t == V_STR && arg.t == V_STR))
            sl__jerr(r, SL_EINVAL, a->line, "cannot compare %s with %s", sl__jtype_name(x), sl__jtype_name(arg));
        int c = cmp_values(&x, &arg);
        return name[0] == 'l' ? (name[1] == 't' ? c < 0 : c <= 0) : (name[1] == 't' ? c > 0 : c >= 0);
    }
    if (NAME_IS("in")) {
        if (arg.t == V_STR) return x.t == V_STR && (!x.s.n || memmem(arg.s.s, arg.s.n, x.s.s, x.s.n));
        if (arg.t == V_LIST) {
            for (size_t i = 0; i < arg.l->n; i++)
                if (sl__jequal(arg.l->v[i], x)) return true;
            return false;
        }
        if (arg.t == V_DICT) return sl__jdict_getv(arg.d, x) != NULL;
        return false;
    }
    if (NAME_IS("odd") || NAME_IS("even")) {
        if (x.t != V_INT) sl__jerr(r, SL_EINVAL, a->line, "odd/even of %s", sl__jtype_name(x));
        return ((x.i & 1) != 0) == (name[0] == 'o');
    }
    if (NAME_IS("divisibleby")) {
        if (x.t != V_INT || arg.t != V_INT || arg.i == 0) sl__jerr(r, SL_EINVAL, a->line, "divisibleby needs non-zero integers");
        return arg.i == -1 || x.i % arg.i == 0;
    }
    if (NAME_IS("lower") || NAME_IS("upper")) {
        if (x.t != V_STR) return false;
        bool cased = false;
        for (size_t i = 0; i < x.s.n; i++) {
            unsigned char c = (unsigned char)x.s.s[i];
            if (name[0] == 'l' ? isupper(c) : islower(c)) return false;
            cased |= isalpha(c) != 0;
        }
        return cased;
    }
    *found = false;
    return false;
}

/* ---- methods --------------------------------------------------------------------------------- */
jv sl__jmethod(rctx *r, jv self, const char *name, size_t n, const jargs *a, bool *found) {
    *found = true;
    jv a0 = sl__jarg(a, 0, NULL, jv_undef()), a1 = sl__jarg(a, 1, NULL, jv_undef());
    if (self.t == V_STR) {
        if (NAME_IS("strip")) return strip(self, 3, a0);
        if (NAME_IS("lstrip")) return strip(self, 1, a0);
        if (NAME_IS("rstrip")) return strip(self, 2, a0);
        if (NAME_IS("lower")) return map_case(r, self, 0);
        if (NAME_IS("upper")) return map_case(r, self, 1);
        if (NAME_IS("title")) return map_case(r, self, 2);
        if (NAME_IS("capitalize")) return map_case(r, self, 3);
        if (NAME_IS("split") || NAME_IS("rsplit")) {
            jv sep = sl__jarg(a, 0, "sep", jv_none()), maxs = sl__jarg(a, 1, "maxsplit", jv_int(-1));
            if (sep.t != V_NONE) need_str(r, sep, a, "split");
            return split(r, self, sep, maxs.t == V_INT ? maxs.i : -1, name[0] == 'r');
        }
        if (NAME_IS("splitlines")) {
            jv out = sl__jlist_new(r, 0);
            size_t i = 0;
            while (i < self.s.n) {
                size_t j = i;
                while (j < self.s.n && self.s.s[j] != '\n' && self.s.s[j] != '\r') j++;
                sl__jlist_push(r, out.l, jv_str(self.s.s + i, j - i));
                if (j < self.s.n && self.s.s[j] == '\r' && j + 1 < self.s.n && self.s.s[j + 1] == '\n') j++;
                i = j + 1;
            }
            return out;
        }
        if (NAME_IS("startswith") || NAME_IS("endswith")) {
            bool start = name[0] == 's';
            jv list = a0.t == V_LIST ? a0 : sl__jlist_new(r, 0);
            if (a0.t != V_LIST) sl__jlist_push(r, list.l, need_str(r, a0, a, "startswith/endswith"));
            for (size_t i = 0; i < list.l->n; i++) {
                jv p = need_str(r, list.l->v[i], a, "startswith/endswith");
                if (p.s.n <= self.s.n && !memcmp(self.s.s + (start ? 0 : self.s.n - p.s.n), p.s.s, p.s.n)) return jv_bool(true);
            }
            return jv_bool(false);
        }
        if (NAME_IS("replace")) {
            jv c = sl__jarg(a, 2, "count", jv_int(-1));
            return replace(r, self, need_str(r, a0, a, "replace"), need_str(r, a1, a, "replace"), c.t == V_INT ? c.i : -1);
        }
        if (NAME_IS("find") || NAME_IS("rfind") || NAME_IS("count")) {
            jv sub = need_str(r, a0, a, "find");
            int64_t hits = 0, at = -1;
            for (size_t i = 0; i + sub.s.n <= self.s.n;) {
                if (!memcmp(self.s.s + i, sub.s.s, sub.s.n)) {
                    if (at < 0 || name[0] == 'r') at = (int64_t)sl__utf8_len(self.s.s, i);
                    hits++;
                    if (name[0] == 'f') break;
                    i += sub.s.n ? sub.s.n : 1;
                } else i++;
            }
            return jv_int(name[0] == 'c' ? hits : at);
        }
        if (NAME_IS("format")) { /* "{}", "{0}", "{name}", "{{", "}}"; no format specs */
            jbuf b = {0};
            sl__jbuf_put(r, &b, "", 0);
            int next = 0;
            for (size_t i = 0; i < self.s.n; i++) {
                char c = self.s.s[i];
                if ((c == '{' || c == '}') && i + 1 < self.s.n && self.s.s[i + 1] == c) {
                    sl__jbuf_put(r, &b, &c, 1), i++;
                    continue;
                }
                if (c != '{') {
                    sl__jbuf_put(r, &b, &c, 1);
                    continue;
                }
                const char *close = memchr(self.s.s + i, '}', self.s.n - i);
                if (!close) sl__jerr(r, SL_EINVAL, a->line, "format: unmatched '{'");
                const char *f = self.s.s + i + 1;
                size_t fl = (size_t)(close - f);
                jv v;
                if (!fl) v = sl__jarg(a, next++, NULL, jv_undef());
                else if (fl < 3 && f[0] >= '0' && f[0] <= '9') v = sl__jarg(a, atoi(f), NULL, jv_undef());
                else {
                    v = jv_undef();
                    for (int k = 0; k < a->nkw; k++)
                        if (a->kw[k].n == fl && !memcmp(a->kw[k].s, f, fl)) v = a->kw[k].v;
                }
                if (v.t == V_UNDEF || memchr(f, ':', fl) || memchr(f, '!', fl))
                    sl__jerr(r, SL_EUNSUPPORTED, a->line, "format: field '{%.*s}' is not supported", (int)(fl < 40 ? fl : 40), f);
                jv sv = sl__jto_str(r, v);
                sl__jbuf_put(r, &b, sv.s.s, sv.s.n);
                i = (size_t)(close - self.s.s);
            }
            return jv_str(b.s, b.n);
        }
        if (NAME_IS("join")) {
            jv items = as_list(r, a0, a, "join");
            jbuf b = {0};
            sl__jbuf_put(r, &b, "", 0);
            for (size_t i = 0; i < items.l->n; i++) {
                if (i) sl__jbuf_put(r, &b, self.s.s, self.s.n);
                jv s = need_str(r, items.l->v[i], a, "join");
                sl__jbuf_put(r, &b, s.s.s, s.s.n);
            }
            return jv_str(b.s, b.n);
        }
    } else if (self.t == V_DICT) {
        if (NAME_IS("get")) {
            jv *v = sl__jdict_getv(self.d, a0);
            return v ? *v : a->npos > 1 ? a1 : jv_none();
        }
        if (NAME_IS("items")) return sl__jfilter(r, "items", 5, self, a, found);
        if (NAME_IS("keys") || NAME_IS("values")) {
            jv out = sl__jlist_new(r, self.d->n);
            for (size_t i = 0; i < self.d->n; i++) sl__jlist_push(r, out.l, name[0] == 'k' ? self.d->k[i] : self.d->v[i]);
            return out;
        }
    } else if (self.t == V_LIST) {
        if (NAME_IS("append")) {
            sl__jlist_push(r, self.l, a0);
            return jv_none();
        }
        if (NAME_IS("pop")) {
            if (!self.l->n) sl__jerr(r, SL_EINVAL, a->line, "pop from an empty list");
            int64_t i = a0.t == V_INT ? a0.i : -1, len = (int64_t)self.l->n;
            if (i < 0) i += len;
            if (i < 0 || i >= len) sl__jerr(r, SL_EINVAL, a->line, "pop index out of range");
            jv v = self.l->v[i];
            memmove(self.l->v + i, self.l->v + i + 1, (size_t)(len - i - 1) * sizeof(jv));
            self.l->n--;
            return v;
        }
        if (NAME_IS("index") || NAME_IS("count")) {
            int64_t hits = 0;
            for (size_t i = 0; i < self.l->n; i++)
                if (sl__jequal(self.l->v[i], a0)) {
                    if (name[0] == 'i') return jv_int((int64_t)i);
                    hits++;
                }
            if (name[0] == 'i') sl__jerr(r, SL_EINVAL, a->line, "index: value not in list");
            return jv_int(hits);
        }
    }
    *found = false;
    return jv_undef();
}

/* ---- globals --------------------------------------------------------------------------------- */
enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME };

int sl__jglobal_id(const char *name, size_t n) {
    if (NAME_IS("range")) return G_RANGE;
    if (NAME_IS("namespace")) return G_NAMESPACE;
    if (NAME_IS("dict")) return G_DICT;
    if (NAME_IS("raise_exception")) return G_RAISE;
    if (NAME_IS("strftime_now")) return G_STRFTIME;
    return -1;
}

jv sl__jglobal_call(rctx *r, int id, const jargs *a) {
    switch (id) {
    case G_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (a->npos < 1 || a->npos > 3) sl__jerr(r, SL_EINVAL, a->line, "range takes 1 to 3 arguments");
        for (int i = 0; i < a->npos; i++) {
            if (a->pos[i].t != V_INT) sl__jerr(r, SL_EINVAL, a->line, "range: integer arguments only");
            v[a->npos == 1 ? 1 : i] = a->pos[i].i;
        }
        if (!v[2]) sl__jerr(r, SL_EINVAL, a->line, "range: step cannot be zero");
        double count = ((double)v[1] - (double)v[0]) / (double)v[2];
        if (count > 1e6) sl__jerr(r, SL_ENOMEM, a->line, "range of more than a million items");
        jv out = sl__jlist_new(r, 0);
        for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) sl__jlist_push(r, out.l, jv_int(i));
        return out;
    }
    case G_NAMESPACE: case G_DICT: {
        jv d = sl__jdict_new(r);
        if (a->npos == 1 && a->pos[0].t == V_DICT)
            for (size_t i = 0; i < a->pos[0].d->n; i++)
                sl__jdict_setv(r, d.d, a->pos[0].d->k[i], a->pos[0].d->v[i]);
        else if (a->npos) sl__jerr(r, SL_EINVAL, a->line, "namespace/dict take keyword arguments");
        for (int i = 0; i < a->nkw; i++) sl__jdict_set(r, d.d, a->kw[i].s, a->kw[i].n, a->kw[i].v);
        return d;
    }
    case G_RAISE: {
        jv m = sl__jto_str(r, sl__jarg(a, 0, NULL, jv_str("raise_exception", 15)));
        sl__jerr(r, SL_EINVAL, a->line, "the template rejects this conversation: %.*s", (int)(m.s.n < 160 ? m.s.n : 160), m.s.s);
    }
    case G_STRFTIME: {
        jv fmt = need_str(r, sl__jarg(a, 0, NULL, jv_undef()), a, "strftime_now");
        char f[128], out[256];
        if (fmt.s.n >= sizeof f) sl__jerr(r, SL_EINVAL, a->line, "strftime_now: format too long");
        memcpy(f, fmt.s.s, fmt.s.n), f[fmt.s.n] = 0;
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t k = strftime(out, sizeof out, f, &tm);
        return sl__jstr_copy(r, out, k);
    }
    }
    sl__jerr(r, SL_EINVAL, a->line, "unknown function");
}

/* ---- JSON in -------------------------------------------------------------------------------- */
typedef struct jsonp { rctx *r; const char *s; size_t n, i; int depth; } jsonp;

_Noreturn static void json_fail(jsonp *p, const char *what) {
    sl__jerr(p->r, SL_EFORMAT, 0, "messages JSON at byte %zu: %s", p->i, what);
}

static void json_ws(jsonp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static uint32_t json_hex4(jsonp *p) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        int c = p->i < p->n ? p->s[p->i++] : 0, d = isxdigit(c) ? (isdigit(c) ? c - '0' : (tolower(c) - 'a' + 10)) : -1;
        if (d < 0) json_fail(p, "bad \\u escape");
        v = v * 16 + (uint32_t)d;
    }
    return v;
}

static jv json_string(jsonp *p) {
    p->i++; /* " */
    jbuf b = {0};
    sl__jbuf_put(p->r, &b, "", 0);
    for (;;) {
        if (p->i >= p->n) json_fail(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') break;
        if (c < 0x20) json_fail(p, "control character in a string");
        if (c != '\\') {
            size_t j = p->i;
            while (j < p->n && p->s[j] != '"' && p->s[j] != '\\' && (unsigned char)p->s[j] >= 0x20) j++;
            sl__jbuf_put(p->r, &b, p->s + p->i, j - p->i);
            p->i = j;
            continue;
        }
        p->i++;
        char e = p->i < p->n ? p->s[p->i++] : 0, o[4];
        size_t k = 0;
        switch (e) {
        case '"': case '\\': case '/': o[k++] = e; break;
        case 'n': o[k++] = '\n'; break;
        case 't': o[k++] = '\t'; break;
        case 'r': o[k++] = '\r'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'u': {
            uint32_t cp = json_hex4(p);
            if (cp >= 0xD800 && cp < 0xDC00 && p->i + 1 < p->n && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
                p->i += 2;
                uint32_t lo = json_hex4(p);
                if (lo < 0xDC00 || lo >= 0xE000) json_fail(p, "bad surrogate pair");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD; /* a lone surrogate cannot be UTF-8 */
            }
            if (cp < 0x80) o[k++] = (char)cp;
            else if (cp < 0x800) o[k++] = (char)(0xC0 | cp >> 6), o[k++] = (char)(0x80 | (cp & 63));
            else if (cp < 0x10000) {
                o[k++] = (char)(0xE0 | cp >> 12), o[k++] = (char)(0x80 | ((cp >> 6) & 63));
                o[k++] = (char)(0x80 | (cp & 63));
            } else {
                o[k++] = (char)(0xF0 | cp >> 18), o[k++] = (char)(0x80 | ((cp >> 12) & 63));
                o[k++] = (char)(0x80 | ((cp >> 6) & 63)), o[k++] = (char)(0x80 | (cp & 63));
            }
            break;
        }
        default: json_fail(p, "bad escape");
        }
        sl__jbuf_put(p->r, &b, o, k);
    }
    p->i++;
    return jv_str(b.s, b.n);
}

static jv json_value(jsonp *p) {
    json_ws(p);
    if (p->i >= p->n) json_fail(p, "unexpected end");
    if (++p->depth > SL__JIN_MAX_DEPTH) json_fail(p, "nested too deeply");
    char c = p->s[p->i];
    jv v;
    if (c == '"') v = json_string(p);
    else if (c == '[' || c == '{') {
        bool obj = c == '{';
        v = obj ? sl__jdict_new(p->r) : sl__jlist_new(p->r, 0);
        p->i++;
        json_ws(p);
        if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) p->i++;
        else
            for (;;) {
                if (obj) {
                    json_ws(p);
                    if (p->i >= p->n || p->s[p->i] != '"') json_fail(p, "expected a key");
                    jv k = json_string(p);
                    json_ws(p);
                    if (p->i >= p->n || p->s[p->i++] != ':') json_fail(p, "expected ':'");
                    sl__jdict_set(p->r, v.d, k.s.s, k.s.n, json_value(p));
                } else {
                    sl__jlist_push(p->r, v.l, json_value(p));
                }
                json_ws(p);
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    continue;
                }
                if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
                    p->i++;
                    break;
                }
                json_fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
            }
    } else if (p->n - p->i >= 4 && !memcmp(p->s + p->i, "true", 4)) v = jv_bool(true), p->i += 4;
    else if (p->n - p->i >= 5 && !memcmp(p->s + p->i, "false", 5)) v = jv_bool(false), p->i += 5;
    else if (p->n - p->i >= 4 && !memcmp(p->s + p->i, "null", 4)) v = jv_none(), p->i += 4;
    else if (c == '-' || isdigit((unsigned char)c)) {
        size_t j = p->i + (c == '-');
        bool flt = false;
        while (j < p->n && (isdigit((unsigned char)p->s[j]) || p->s[j] == '.' || p->s[j] == 'e' || p->s[j] == 'E' ||
                            ((p->s[j] == '+' || p->s[j] == '-') && (p->s[j - 1] == 'e' || p->s[j - 1] == 'E'))))
            flt |= !isdigit((unsigned char)p->s[j++]);
        char buf[64];
        if (j - p->i >= sizeof buf) json_fail(p, "number too long");
        memcpy(buf, p->s + p->i, j - p->i), buf[j - p->i] = 0;
        char *end;
        if (!flt) {
            long long x = strtoll(buf, &end, 10);
            v = *end ? jv_undef() : jv_int(x);
        }
        if (flt || v.t == V_UNDEF) {
            v = jv_float(strtod(buf, &end));
            if (*end) json_fail(p, "bad number");
        }
        p->i = j;
    } else json_fail(p, "unexpected character");
    p->depth--;
    return v;
}

jv sl__jjson_parse(rctx *r, const char *s, size_t n) {
    jsonp p = {.r = r, .s = s, .n = n};
    jv v = json_value(&p);
    json_ws(&p);
    if (p.i != p.n) json_fail(&p, "trailing characters");
    return v;
}
