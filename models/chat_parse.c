/* chat_parse.c — arena, lexer and parser of the Jinja subset (chat_internal.h).
 *
 * Errors unwind with longjmp to sl__jinja_parse: every allocation lives in the arena, which is
 * freed in one call, so an unwind leaks nothing and the recursive descent stays readable. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_internal.h"

/* ---- arena ------------------------------------------------------------------------------- */
struct sl__jchunk {
    sl__jchunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

void *sl__ja_alloc(sl__jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!n) n = 16;
    sl__jchunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > (64 << 10) ? n : (64 << 10);
        if (a->used + size > a->cap) return NULL;
        c = malloc(sizeof *c + size);
        if (!c) return NULL;
        c->size = size, c->used = 0;
        c->next = a->head, a->head = c;
        a->used += size;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void sl__ja_free(sl__jarena *a) {
    for (sl__jchunk *c = a->head, *nx; c; c = nx) nx = c->next, free(c);
    a->head = NULL, a->used = 0;
}

/* ---- lexer ------------------------------------------------------------------------------- */
enum { T_EOF, T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };

typedef struct jtok {
    uint8_t t;
    int op; /* T_OP: first char | second char << 8 */
    int line;
    const char *s;
    size_t n;
    int64_t i;
    double f;
} jtok;

#define OP2(a, b) ((a) | ((b) << 8))

typedef struct parser {
    sl__jarena *arena;
    jtok *tok;
    size_t ntok, cap, pos;
    int depth;
    int code;
    char *err;
    jmp_buf jb;
} parser;

_Noreturn __attribute__((format(printf, 4, 5))) static void fail(parser *p, int code, int line, const char *fmt, ...) {
    char msg[SL_ERRMSG - 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sl_fail(p->err, code, "chat template line %d: %s", line, msg);
    p->code = code;
    longjmp(p->jb, 1);
}

static void *palloc(parser *p, size_t n) {
    void *m = sl__ja_alloc(p->arena, n);
    if (!m) fail(p, SL_ENOMEM, 0, "template too large");
    return m;
}

static jtok *push(parser *p, int t, int line) {
    if (p->ntok == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        jtok *nt = palloc(p, cap * sizeof *nt);
        if (p->ntok) memcpy(nt, p->tok, p->ntok * sizeof *nt);
        p->tok = nt, p->cap = cap;
    }
    jtok *k = &p->tok[p->ntok++];
    memset(k, 0, sizeof *k);
    k->t = (uint8_t)t, k->line = line;
    return k;
}

static int count_lines(const char *s, size_t from, size_t to, int line) {
    for (size_t i = from; i < to; i++) line += s[i] == '\n';
    return line;
}

static void put_utf8(char *o, size_t *k, uint32_t c) {
    if (c < 0x80) o[(*k)++] = (char)c;
    else if (c < 0x800) o[(*k)++] = (char)(0xC0 | c >> 6), o[(*k)++] = (char)(0x80 | (c & 63));
    else if (c < 0x10000) {
        o[(*k)++] = (char)(0xE0 | c >> 12), o[(*k)++] = (char)(0x80 | ((c >> 6) & 63));
        o[(*k)++] = (char)(0x80 | (c & 63));
    } else {
        o[(*k)++] = (char)(0xF0 | c >> 18), o[(*k)++] = (char)(0x80 | ((c >> 12) & 63));
        o[(*k)++] = (char)(0x80 | ((c >> 6) & 63)), o[(*k)++] = (char)(0x80 | (c & 63));
    }
}

static int hexdig(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string literal starting at s[i] (the quote); Python escapes. Returns the index after it. */
static size_t lex_string(parser *p, const char *s, size_t n, size_t i, int line, jtok *k) {
    char q = s[i++];
    size_t start = i;
    while (i < n && s[i] != q) i += s[i] == '\\' && i + 1 < n ? 2 : 1;
    if (i >= n) fail(p, SL_EFORMAT, line, "unterminated string");
    char *o = palloc(p, i - start + 1);
    size_t k2 = 0;
    for (size_t j = start; j < i; j++) {
        if (s[j] != '\\') {
            o[k2++] = s[j];
            continue;
        }
        char c = s[++j];
        int nhex = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
        if (nhex) {
            uint32_t v = 0;
            int d = 0;
            while (d < nhex && j + 1 < i && hexdig(s[j + 1]) >= 0) v = v * 16 + (uint32_t)hexdig(s[++j]), d++;
            if (d != nhex || v > 0x10FFFF || (v >= 0xD800 && v < 0xE000))
                fail(p, SL_EFORMAT, line, "bad \\%c escape in a string", c);
            put_utf8(o, &k2, v); /* at most 4 bytes, never more than the escape's own length */
            continue;
        }
        switch (c) {
        case 'n': o[k2++] = '\n'; break;
        case 't': o[k2++] = '\t'; break;
        case 'r': o[k2++] = '\r'; break;
        case 'b': o[k2++] = '\b'; break;
        case 'f': o[k2++] = '\f'; break;
        case 'v': o[k2++] = '\v'; break;
        case 'a': o[k2++] = '\a'; break;
        case '0': o[k2++] = '\0'; break;
        case '\\': case '\'': case '"': o[k2++] = c; break;
        case '\n': break; /* line continuation */
        default: o[k2++] = '\\', o[k2++] = c; /* Python keeps unknown escapes */
        }
    }
    k->t = T_STR, k->s = o, k->n = k2;
    return i + 1;
}

/* Tokens of one tag from s[i]; stops after the closing delimiter. Returns the index after it
 * and whether it ended with '-'. */
static size_t lex_tag(parser *p, const char *s, size_t n, size_t i, bool block, int *line, bool *minus) {
    int depth = 0;
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) *line += s[i++] == '\n';
        if (i >= n) fail(p, SL_EFORMAT, *line, "unclosed %s tag", block ? "{%" : "{{");
        char e = block ? '%' : '}';
        if (depth == 0) {
            if (s[i] == '-' && i + 2 < n && s[i + 1] == e && s[i + 2] == '}') {
                push(p, block ? T_BLOCK_END : T_VAR_END, *line);
                *minus = true;
                return i + 3;
            }
            if (s[i] == e && i + 1 < n && s[i + 1] == '}') {
                push(p, block ? T_BLOCK_END : T_VAR_END, *line);
                *minus = false;
                return i + 2;
            }
        }
        char c = s[i];
        if (isalpha((unsigned char)c) || c == '_') {
            size_t j = i;
            while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_')) j++;
            jtok *k = push(p, T_NAME, *line);
            k->s = s + i, k->n = j - i;
            i = j;
        } else if (isdigit((unsigned char)c)) {
            size_t j = i;
            while (j < n && isdigit((unsigned char)s[j])) j++;
            bool flt = false;
            if (j + 1 < n && s[j] == '.' && isdigit((unsigned char)s[j + 1])) {
                flt = true;
                for (j++; j < n && isdigit((unsigned char)s[j]);) j++;
            }
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                size_t m = j + 1;
                if (m < n && (s[m] == '+' || s[m] == '-')) m++;
                if (m < n && isdigit((unsigned char)s[m])) {
                    flt = true;
                    for (j = m; j < n && isdigit((unsigned char)s[j]);) j++;
                }
            }
            char buf[64];
            if (j - i >= sizeof buf) fail(p, SL_EFORMAT, *line, "number too long");
            memcpy(buf, s + i, j - i), buf[j - i] = 0;
            jtok *k = push(p, flt ? T_FLOAT : T_INT, *line);
            errno = 0;
            if (flt) k->f = strtod(buf, NULL);
            else k->i = strtoll(buf, NULL, 10);
            if (errno) fail(p, SL_EFORMAT, *line, "number out of range: %s", buf);
            i = j;
        } else if (c == '\'' || c == '"') {
            jtok *k = push(p, T_STR, *line);
            int l0 = *line;
            size_t j = lex_string(p, s, n, i, l0, k);
            *line = count_lines(s, i, j, *line);
            i = j;
        } else {
            static const char *two[] = {"==", "!=", "<=", ">=", "//", "**"};
            int op = 0;
            for (size_t t = 0; t < sizeof two / sizeof two[0]; t++)
                if (i + 1 < n && c == two[t][0] && s[i + 1] == two[t][1]) op = OP2(c, s[i + 1]);
            if (!op) {
                if (!strchr("+-*/%~<>=()[]{},.:|", c) || !c)
                    fail(p, SL_EFORMAT, *line, "unexpected character '%c' in a tag", isprint((unsigned char)c) ? c : '?');
                op = c;
                if (c == '(' || c == '[' || c == '{') depth++;
                if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
            }
            jtok *k = push(p, T_OP, *line);
            k->op = op;
            i += op > 255 ? 2 : 1;
        }
    }
}

static void lex(parser *p, const char *src, size_t n0) {
    /* "\r\n" and "\r" → "\n"; one trailing newline dropped (Jinja's keep_trailing_newline=False) */
    char *s = palloc(p, n0 + 1);
    size_t n = 0;
    for (size_t i = 0; i < n0; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < n0 && src[i + 1] == '\n') i++;
        } else s[n++] = src[i];
    }
    if (n && s[n - 1] == '\n') n--;
    size_t pos = 0;
    int line = 1;
    while (pos <= n) {
        size_t q = pos;
        while (q + 1 < n && !(s[q] == '{' && (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#'))) q++;
        if (q + 1 >= n) q = n;
        size_t tend = q;
        bool line_start = pos == 0 || s[pos - 1] == '\n';
        if (q < n) {
            char kind = s[q + 1], sign = q + 2 < n ? s[q + 2] : 0;
            if (sign == '-') {
                while (tend > pos && isspace((unsigned char)s[tend - 1])) tend--;
            } else if ((kind == '%' || kind == '#') && sign != '+') { /* lstrip_blocks */
                size_t l = tend;
                while (l > pos && (s[l - 1] == ' ' || s[l - 1] == '\t')) l--;
                if ((l > pos && s[l - 1] == '\n') || (l == pos && line_start)) tend = l;
            }
        }
        if (tend > pos) {
            jtok *k = push(p, T_TEXT, line);
            k->s = s + pos, k->n = tend - pos;
        }
        line = count_lines(s, pos, q, line);
        if (q >= n) break;
        char kind = s[q + 1];
        size_t i = q + 2;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        bool minus = false;
        if (kind == '#') {
            size_t e = i;
            while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= n) fail(p, SL_EFORMAT, line, "unclosed comment");
            minus = e > i && s[e - 1] == '-';
            line = count_lines(s, q, e, line);
            i = e + 2;
        } else {
            push(p, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, line);
            i = lex_tag(p, s, n, i, kind == '%', &line, &minus);
        }
        if (minus) {
            while (i < n && isspace((unsigned char)s[i])) line += s[i++] == '\n';
        } else if (kind != '{' && i < n && s[i] == '\n') { /* trim_blocks */
            i++, line++;
        }
        pos = i;
    }
    push(p, T_EOF, line);
}

/* ---- parser ------------------------------------------------------------------------------ */
static jtok *cur(parser *p) { return &p->tok[p->pos]; }
static jtok *adv(parser *p) { return p->pos + 1 < p->ntok ? &p->tok[p->pos++] : &p->tok[p->pos]; }
static bool is_op(parser *p, int op) { return cur(p)->t == T_OP && cur(p)->op == op; }
static bool is_name(parser *p, const char *name) {
    jtok *k = cur(p);
    return k->t == T_NAME && k->n == strlen(name) && !memcmp(k->s, name, k->n);
}
static bool eat_op(parser *p, int op) {
    if (!is_op(p, op)) return false;
    adv(p);
    return true;
}
static bool eat_name(parser *p, const char *name) {
    if (!is_name(p, name)) return false;
    adv(p);
    return true;
}

static const char *tokdesc(jtok *k, char *buf, size_t n) {
    switch (k->t) {
    case T_EOF: return "end of template";
    case T_TEXT: return "text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_STR: return "a string";
    case T_INT: case T_FLOAT: return "a number";
    case T_NAME: snprintf(buf, n, "'%.*s'", (int)(k->n < 40 ? k->n : 40), k->s); return buf;
    default:
        if (k->op > 255) snprintf(buf, n, "'%c%c'", k->op & 255, k->op >> 8);
        else snprintf(buf, n, "'%c'", k->op);
        return buf;
    }
}

_Noreturn static void unexpected(parser *p, const char *what) {
    char b[64];
    fail(p, SL_EFORMAT, cur(p)->line, "expected %s, got %s", what, tokdesc(cur(p), b, sizeof b));
}

static void expect_op(parser *p, int op, const char *what) {
    if (!eat_op(p, op)) unexpected(p, what);
}

static sl__jnode *node(parser *p, int kind) {
    sl__jnode *x = palloc(p, sizeof *x);
    x->kind = (uint8_t)kind;
    x->line = cur(p)->line;
    return x;
}

static jtok *expect_name(parser *p) {
    if (cur(p)->t != T_NAME) unexpected(p, "a name");
    return adv(p);
}

static void enter(parser *p) {
    if (++p->depth > SL__JIN_MAX_DEPTH) fail(p, SL_ENOMEM, cur(p)->line, "nesting deeper than %d", SL__JIN_MAX_DEPTH);
}

static sl__jnode *expr(parser *p);
static sl__jnode *or_expr(parser *p);
static sl__jnode *unary(parser *p, bool with_filter);

/* Arguments of a call, after '(': positional and name=value. */
static sl__jnode *call_args(parser *p) {
    sl__jnode *head = NULL, **tail = &head;
    while (!eat_op(p, ')')) {
        if (head) expect_op(p, ',', "',' or ')'");
        if (eat_op(p, ')')) break; /* trailing comma */
        if (is_op(p, '*') || is_op(p, OP2('*', '*'))) fail(p, SL_EUNSUPPORTED, cur(p)->line, "*args and **kwargs are not supported");
        sl__jnode *a = node(p, JN_ARG);
        if (cur(p)->t == T_NAME && p->tok[p->pos + 1].t == T_OP && p->tok[p->pos + 1].op == '=') {
            jtok *k = adv(p);
            a->s = k->s, a->n = k->n;
            adv(p);
        }
        a->a = expr(p);
        *tail = a, tail = &a->next;
    }
    return head;
}

static sl__jnode *primary(parser *p) {
    jtok *k = cur(p);
    sl__jnode *x;
    if (k->t == T_NAME) {
        adv(p);
        const char *s = k->s;
        size_t n = k->n;
#define NAMEIS(lit) (n == sizeof(lit) - 1 && !memcmp(s, lit, n))
        if (NAMEIS("true") || NAMEIS("True") || NAMEIS("false") || NAMEIS("False")) {
            x = node(p, JN_BOOL);
            x->i = s[0] == 't' || s[0] == 'T';
        } else if (NAMEIS("none") || NAMEIS("None")) {
            x = node(p, JN_NONE);
        } else {
            x = node(p, JN_NAME);
            x->s = s, x->n = n;
        }
#undef NAMEIS
        return x;
    }
    if (k->t == T_STR) {
        /* adjacent literals concatenate */
        size_t total = 0, j = p->pos;
        while (p->tok[j].t == T_STR) total += p->tok[j++].n;
        char *o = palloc(p, total + 1);
        size_t off = 0;
        while (cur(p)->t == T_STR) {
            memcpy(o + off, cur(p)->s, cur(p)->n);
            off += cur(p)->n;
            adv(p);
        }
        x = node(p, JN_STR);
        x->s = o, x->n = total;
        return x;
    }
    if (k->t == T_INT || k->t == T_FLOAT) {
        adv(p);
        x = node(p, k->t == T_INT ? JN_INT : JN_FLOAT);
        x->i = k->i, x->f = k->f;
        return x;
    }
    if (eat_op(p, '(')) {
        if (eat_op(p, ')')) return node(p, JN_TUPLE);
        sl__jnode *e = expr(p);
        if (eat_op(p, ')')) return e;
        x = node(p, JN_TUPLE);
        sl__jnode **tail = &x->args;
        *tail = e, tail = &e->next;
        while (eat_op(p, ',')) {
            if (is_op(p, ')')) break;
            sl__jnode *y = expr(p);
            *tail = y, tail = &y->next;
        }
        expect_op(p, ')', "')'");
        return x;
    }
    if (eat_op(p, '[')) {
        x = node(p, JN_LIST);
        sl__jnode **tail = &x->args;
        while (!eat_op(p, ']')) {
            if (x->args) expect_op(p, ',', "',' or ']'");
            if (eat_op(p, ']')) break;
            sl__jnode *y = expr(p);
            *tail = y, tail = &y->next;
        }
        return x;
    }
    if (eat_op(p, '{')) {
        x = node(p, JN_DICT);
        sl__jnode **tail = &x->args;
        while (!eat_op(p, '}')) {
            if (x->args) expect_op(p, ',', "',' or '}'");
            if (eat_op(p, '}')) break;
            sl__jnode *a = node(p, JN_ARG);
            a->a = expr(p);
            expect_op(p, ':', "':'");
            a->b = expr(p);
            *tail = a, tail = &a->next;
        }
        return x;
    }
    unexpected(p, "an expression");
}

static sl__jnode *postfix(parser *p, sl__jnode *x) {
    for (;;) {
        if (eat_op(p, '.')) {
            sl__jnode *y;
            if (cur(p)->t == T_INT) { /* x.0 is x[0] */
                y = node(p, JN_INDEX);
                y->b = node(p, JN_INT);
                y->b->i = adv(p)->i;
            } else {
                jtok *k = expect_name(p);
                y = node(p, JN_ATTR);
                y->s = k->s, y->n = k->n;
            }
            y->a = x;
            x = y;
        } else if (eat_op(p, '[')) {
            sl__jnode *parts[3] = {NULL, NULL, NULL};
            int np = 0;
            bool slice = false;
            for (;;) {
                if (!is_op(p, ':') && !is_op(p, ']')) parts[np] = expr(p);
                if (eat_op(p, ':')) {
                    slice = true;
                    if (++np > 2) unexpected(p, "']'");
                    continue;
                }
                break;
            }
            expect_op(p, ']', "']'");
            sl__jnode *y = node(p, slice ? JN_SLICE : JN_INDEX);
            y->a = x, y->b = parts[0], y->c = parts[1], y->d = parts[2];
            if (!slice && !y->b) unexpected(p, "an index");
            x = y;
        } else if (eat_op(p, '(')) {
            sl__jnode *y = node(p, JN_CALL);
            y->a = x;
            y->args = call_args(p);
            x = y;
        } else return x;
    }
}

static sl__jnode *filters(parser *p, sl__jnode *x) {
    for (;;) {
        if (eat_op(p, '|')) {
            jtok *k = expect_name(p);
            sl__jnode *y = node(p, JN_FILTER);
            y->s = k->s, y->n = k->n, y->a = x;
            if (eat_op(p, '(')) y->args = call_args(p);
            x = y;
        } else if (eat_name(p, "is")) {
            sl__jnode *y = node(p, JN_TEST);
            y->neg = eat_name(p, "not");
            jtok *k = expect_name(p);
            y->s = k->s, y->n = k->n, y->a = x;
            jtok *c = cur(p);
            if (eat_op(p, '(')) {
                y->args = call_args(p);
            } else if ((c->t == T_NAME || c->t == T_STR || c->t == T_INT || c->t == T_FLOAT || is_op(p, '[') ||
                        is_op(p, '{')) &&
                       !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and")) {
                sl__jnode *a = node(p, JN_ARG);
                a->a = postfix(p, primary(p));
                y->args = a;
            }
            x = y;
        } else if (eat_op(p, '(')) {
            sl__jnode *y = node(p, JN_CALL);
            y->a = x;
            y->args = call_args(p);
            x = y;
        } else return x;
    }
}

static sl__jnode *unary(parser *p, bool with_filter) {
    enter(p);
    sl__jnode *x;
    if (is_op(p, '-') || is_op(p, '+')) {
        int neg = is_op(p, '-');
        adv(p);
        x = node(p, neg ? JN_NEG : JN_POS);
        x->a = unary(p, false);
    } else {
        x = primary(p);
    }
    x = postfix(p, x);
    if (with_filter) x = filters(p, x);
    p->depth--;
    return x;
}

static sl__jnode *binop(parser *p, int op, sl__jnode *a, sl__jnode *b) {
    sl__jnode *x = node(p, JN_BIN);
    x->op = (uint8_t)op, x->a = a, x->b = b;
    return x;
}

static sl__jnode *pow_expr(parser *p) {
    sl__jnode *x = unary(p, true);
    while (eat_op(p, OP2('*', '*'))) x = binop(p, JOP_POW, x, unary(p, true));
    return x;
}

static sl__jnode *math2(parser *p) {
    sl__jnode *x = pow_expr(p);
    for (;;) {
        int op = is_op(p, '*') ? JOP_MUL : is_op(p, '/') ? JOP_DIV : is_op(p, OP2('/', '/')) ? JOP_FLOORDIV
                                                                   : is_op(p, '%') ? JOP_MOD : 0;
        if (!op) return x;
        adv(p);
        x = binop(p, op, x, pow_expr(p));
    }
}

static sl__jnode *concat(parser *p) {
    sl__jnode *x = math2(p);
    while (eat_op(p, '~')) x = binop(p, JOP_CONCAT, x, math2(p));
    return x;
}

static sl__jnode *math1(parser *p) {
    sl__jnode *x = concat(p);
    for (;;) {
        int op = is_op(p, '+') ? JOP_ADD : is_op(p, '-') ? JOP_SUB : 0;
        if (!op) return x;
        adv(p);
        x = binop(p, op, x, concat(p));
    }
}

static sl__jnode *compare(parser *p) {
    sl__jnode *x = math1(p);
    for (;;) {
        int op = is_op(p, OP2('=', '=')) ? JOP_EQ : is_op(p, OP2('!', '=')) ? JOP_NE : is_op(p, '<') ? JOP_LT
               : is_op(p, '>') ? JOP_GT : is_op(p, OP2('<', '=')) ? JOP_LE : is_op(p, OP2('>', '=')) ? JOP_GE
               : is_name(p, "in") ? JOP_IN : 0;
        if (!op && is_name(p, "not") && p->tok[p->pos + 1].t == T_NAME && p->tok[p->pos + 1].n == 2 &&
            !memcmp(p->tok[p->pos + 1].s, "in", 2)) {
            adv(p);
            op = JOP_NOTIN;
        }
        if (!op) return x;
        adv(p);
        x = binop(p, op, x, math1(p));
    }
}

static sl__jnode *not_expr(parser *p) {
    if (eat_name(p, "not")) {
        enter(p);
        sl__jnode *x = node(p, JN_NOT);
        x->a = not_expr(p);
        p->depth--;
        return x;
    }
    return compare(p);
}

static sl__jnode *and_expr(parser *p) {
    sl__jnode *x = not_expr(p);
    while (eat_name(p, "and")) {
        sl__jnode *y = node(p, JN_AND);
        y->a = x, y->b = not_expr(p);
        x = y;
    }
    return x;
}

static sl__jnode *or_expr(parser *p) {
    sl__jnode *x = and_expr(p);
    while (eat_name(p, "or")) {
        sl__jnode *y = node(p, JN_OR);
        y->a = x, y->b = and_expr(p);
        x = y;
    }
    return x;
}

static sl__jnode *expr(parser *p) {
    enter(p);
    sl__jnode *x = or_expr(p);
    while (eat_name(p, "if")) {
        sl__jnode *y = node(p, JN_COND);
        y->b = x;
        y->a = or_expr(p);
        if (eat_name(p, "else")) y->c = expr(p);
        x = y;
    }
    p->depth--;
    return x;
}

/* ---- statements -------------------------------------------------------------------------- */
static void expect_block_end(parser *p) {
    if (cur(p)->t != T_BLOCK_END) unexpected(p, "'%}'");
    adv(p);
}

/* At "{%" NAME where NAME is one of ends? */
static bool at_end(parser *p, const char *const *ends) {
    if (cur(p)->t != T_BLOCK_BEGIN || !ends) return false;
    jtok *k = &p->tok[p->pos + 1];
    if (k->t != T_NAME) return false;
    for (; *ends; ends++)
        if (k->n == strlen(*ends) && !memcmp(k->s, *ends, k->n)) return true;
    return false;
}

static sl__jnode *body(parser *p, const char *const *ends, const char *opener, int line);

/* After "{% NAME": consumes the end tag named want ("endif", ...). */
static void end_tag(parser *p, const char *want) {
    adv(p); /* {% */
    if (!eat_name(p, want)) unexpected(p, want);
    expect_block_end(p);
}

/* After a block's body, at the tag that ended it: an optional {% else %} body (named what in
 * errors), then {% end %} — "endif" or "endfor". */
static void else_and_end(parser *p, sl__jnode *x, const char *end, const char *what, int line) {
    if (eat_name(p, "else")) {
        const char *const e2[] = {end, NULL};
        expect_block_end(p);
        x->else_body = body(p, e2, what, line);
        adv(p);
    }
    if (!eat_name(p, end)) {
        char quoted[16];
        snprintf(quoted, sizeof quoted, "'%s'", end);
        unexpected(p, quoted);
    }
    expect_block_end(p);
}

static sl__jnode *stmt_if(parser *p) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    sl__jnode *x = node(p, JN_IF);
    int line = cur(p)->line;
    x->a = expr(p);
    expect_block_end(p);
    x->body = body(p, ends, "if", line);
    adv(p); /* {% */
    if (eat_name(p, "elif")) {
        x->else_body = stmt_if(p); /* consumes through endif */
        return x;
    }
    else_and_end(p, x, "endif", "else", line);
    return x;
}

static sl__jnode *name_list(parser *p) {
    sl__jnode *head = NULL, **tail = &head;
    bool paren = eat_op(p, '(');
    do {
        jtok *k = expect_name(p);
        sl__jnode *y = node(p, JN_NAME);
        y->s = k->s, y->n = k->n;
        *tail = y, tail = &y->next;
    } while (eat_op(p, ','));
    if (paren) expect_op(p, ')', "')'");
    return head;
}

static sl__jnode *stmt_for(parser *p) {
    static const char *const ends[] = {"else", "endfor", NULL};
    int line = cur(p)->line;
    sl__jnode *x = node(p, JN_FOR);
    x->args = name_list(p);
    if (!eat_name(p, "in")) unexpected(p, "'in'");
    x->a = or_expr(p); /* no conditional expression: "if" starts the loop filter */
    if (is_op(p, ',')) { /* for x in a, b */
        sl__jnode *t = node(p, JN_TUPLE), **tail = &t->args;
        *tail = x->a, tail = &x->a->next;
        while (eat_op(p, ',')) {
            sl__jnode *y = or_expr(p);
            *tail = y, tail = &y->next;
        }
        x->a = t;
    }
    if (eat_name(p, "if")) x->b = or_expr(p);
    if (is_name(p, "recursive")) fail(p, SL_EUNSUPPORTED, cur(p)->line, "recursive loops are not supported");
    expect_block_end(p);
    x->body = body(p, ends, "for", line);
    adv(p);
    else_and_end(p, x, "endfor", "for", line);
    return x;
}

static sl__jnode *stmt_set(parser *p) {
    int line = cur(p)->line;
    sl__jnode *x = node(p, JN_SET);
    jtok *k = expect_name(p);
    if (eat_op(p, '.')) { /* namespace attribute */
        jtok *attr = expect_name(p);
        x->a = node(p, JN_NAME);
        x->a->s = k->s, x->a->n = k->n;
        x->s = attr->s, x->n = attr->n;
        expect_op(p, '=', "'='");
        x->b = expr(p);
        expect_block_end(p);
        return x;
    }
    x->args = node(p, JN_NAME);
    x->args->s = k->s, x->args->n = k->n;
    sl__jnode **tail = &x->args->next;
    while (eat_op(p, ',')) {
        jtok *k2 = expect_name(p);
        sl__jnode *y = node(p, JN_NAME);
        y->s = k2->s, y->n = k2->n;
        *tail = y, tail = &y->next;
    }
    if (cur(p)->t == T_BLOCK_END && !x->args->next) { /* {% set x %}...{% endset %} */
        static const char *const ends[] = {"endset", NULL};
        adv(p);
        x->kind = JN_SETBLOCK;
        x->s = k->s, x->n = k->n;
        x->args = NULL;
        x->body = body(p, ends, "set", line);
        end_tag(p, "endset");
        return x;
    }
    expect_op(p, '=', "'='");
    x->b = expr(p);
    if (is_op(p, ',')) { /* set a = 1, 2 */
        sl__jnode *t = node(p, JN_TUPLE), **tt = &t->args;
        *tt = x->b, tt = &x->b->next;
        while (eat_op(p, ',')) {
            sl__jnode *y = expr(p);
            *tt = y, tt = &y->next;
        }
        x->b = t;
    }
    expect_block_end(p);
    return x;
}

static sl__jnode *stmt_macro(parser *p) {
    static const char *const ends[] = {"endmacro", NULL};
    int line = cur(p)->line;
    sl__jnode *x = node(p, JN_MACRO);
    jtok *k = expect_name(p);
    x->s = k->s, x->n = k->n;
    expect_op(p, '(', "'('");
    sl__jnode **tail = &x->args;
    while (!eat_op(p, ')')) {
        if (x->args) expect_op(p, ',', "',' or ')'");
        if (eat_op(p, ')')) break;
        jtok *pk = expect_name(p);
        sl__jnode *a = node(p, JN_ARG);
        a->s = pk->s, a->n = pk->n;
        if (eat_op(p, '=')) a->a = expr(p);
        *tail = a, tail = &a->next;
    }
    expect_block_end(p);
    x->body = body(p, ends, "macro", line);
    end_tag(p, "endmacro");
    return x;
}

/* One "{% ... %}" statement; NULL when it renders nothing by itself (handled inline). */
static sl__jnode *statement(parser *p, sl__jnode ***tail) {
    int line = cur(p)->line;
    adv(p); /* {% */
    jtok *k = expect_name(p);
#define KW(lit) (k->n == sizeof(lit) - 1 && !memcmp(k->s, lit, k->n))
    sl__jnode *x = NULL;
    if (KW("if")) x = stmt_if(p);
    else if (KW("for")) x = stmt_for(p);
    else if (KW("set")) x = stmt_set(p);
    else if (KW("macro")) x = stmt_macro(p);
    else if (KW("break") || KW("continue")) {
        x = node(p, KW("break") ? JN_BREAK : JN_CONTINUE);
        expect_block_end(p);
    } else if (KW("filter")) {
        static const char *const ends[] = {"endfilter", NULL};
        x = node(p, JN_FILTERBLOCK);
        jtok *f = expect_name(p);
        x->s = f->s, x->n = f->n;
        if (eat_op(p, '(')) x->args = call_args(p);
        expect_block_end(p);
        x->body = body(p, ends, "filter", line);
        end_tag(p, "endfilter");
    } else if (KW("generation")) { /* Hugging Face's assistant-mask marker: render the body */
        static const char *const ends[] = {"endgeneration", NULL};
        expect_block_end(p);
        sl__jnode *b = body(p, ends, "generation", line);
        end_tag(p, "endgeneration");
        for (; b; b = b->next) **tail = b, *tail = &b->next;
        return NULL;
    } else {
        fail(p, SL_EUNSUPPORTED, line, "'{%% %.*s %%}' is not supported", (int)(k->n < 40 ? k->n : 40), k->s);
    }
#undef KW
    return x;
}

static sl__jnode *body(parser *p, const char *const *ends, const char *opener, int line) {
    enter(p);
    sl__jnode *head = NULL, **tail = &head;
    for (;;) {
        jtok *k = cur(p);
        if (k->t == T_EOF) {
            if (ends) fail(p, SL_EFORMAT, line, "'%s' is never closed", opener);
            break;
        }
        if (at_end(p, ends)) break;
        sl__jnode *x = NULL;
        if (k->t == T_TEXT) {
            x = node(p, JN_TEXT);
            x->s = k->s, x->n = k->n;
            adv(p);
        } else if (k->t == T_VAR_BEGIN) {
            adv(p);
            x = node(p, JN_OUT);
            x->a = expr(p);
            if (cur(p)->t != T_VAR_END) unexpected(p, "'}}'");
            adv(p);
        } else if (k->t == T_BLOCK_BEGIN) {
            jtok *nk = &p->tok[p->pos + 1];
            if (nk->t == T_NAME) {
                static const char *const stray[] = {"endif", "endfor", "else", "elif", "endmacro", "endset", "endfilter",
                                                   "endgeneration", NULL};
                for (const char *const *s = stray; *s; s++)
                    if (nk->n == strlen(*s) && !memcmp(nk->s, *s, nk->n))
                        fail(p, SL_EFORMAT, nk->line, "unexpected '%s'", *s);
            }
            x = statement(p, &tail);
        } else {
            unexpected(p, "text or a tag");
        }
        if (x) *tail = x, tail = &x->next;
    }
    p->depth--;
    return head;
}

int sl__jinja_parse(sl__jtmpl **out, const char *src, size_t n, char err[SL_ERRMSG]) {
    *out = NULL;
    if (n > SL__JIN_MAX_SRC) return sl_fail(err, SL_ENOMEM, "chat template of %zu bytes (limit %d)", n, SL__JIN_MAX_SRC);
    sl__jtmpl *t = calloc(1, sizeof *t);
    if (!t) return sl_fail(err, SL_ENOMEM, "out of memory");
    t->arena.cap = SL__JIN_MAX_ARENA;
    parser p = {.arena = &t->arena, .err = err};
    if (setjmp(p.jb)) {
        sl__jinja_free(t);
        return p.code;
    }
    lex(&p, src, n);
    t->root = body(&p, NULL, NULL, 1);
    *out = t;
    return 0;
}

void sl__jinja_free(sl__jtmpl *t) {
    if (!t) return;
    sl__ja_free(&t->arena);
    free(t);
}
