/* test_chat.c — chat templates: every built-in format on hand-written expected prompts, family
 * detection, the Jinja subset (syntax, whitespace control, scoping, filters, tests, methods,
 * errors and limits), templates read from a GGUF with overrides and errors, the BOS handling of
 * sl_chat_encode, and a mutation fuzz of templates (no crash, no leak; run under ASan).
 * Agreement with llama.cpp on real templates is tests/oracle/test_chat.mjs. */
#include <stdlib.h>
#include <string.h>

#include "../../models/chat.h"
#include "../../models/gguf.h"
#include "../../models/tokenizer.h"
#include "../test.h"

#define ASSERT_STR_EQ(got, want)                                                                 \
    do {                                                                                         \
        const char *_g = (got), *_w = (want);                                                    \
        if (!_g || strcmp(_g, _w)) {                                                             \
            fprintf(stderr, "%s:%d: rendered\n  got:  \"%s\"\n  want: \"%s\"\n", __FILE__,       \
                    __LINE__, _g ? _g : "(null)", _w);                                           \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

static const sl_chat_msg SYS_USER[] = {{"system", "You are terse."}, {"user", "Hi"}};
static const sl_chat_msg MULTI[] = {{"system", "S"}, {"user", "Q1"}, {"assistant", " A1 "}, {"user", "Q2"}};
static const sl_chat_msg USER_ONLY[] = {{"user", "Hello"}};

/* Renders with template text (a built-in name or Jinja source); returns the malloc'd prompt. */
static char *render(const char *tmpl, const sl_chat_msg *m, size_t n, bool add_gen) {
    sl_chat *c;
    char err[SL_ERRMSG] = "";
    int rc = sl_chat_create_str(&c, tmpl, strlen(tmpl), "<s>", "</s>", err);
    if (rc) fprintf(stderr, "create '%s': %s\n", tmpl, err);
    ASSERT_EQ(rc, 0);
    char *out;
    size_t len;
    rc = sl_chat_render(c, m, n, add_gen, &out, &len, err);
    if (rc) fprintf(stderr, "render '%s': %s\n", tmpl, err);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(strlen(out), len);
    sl_chat_destroy(c);
    return out;
}

static void expect(const char *tmpl, const sl_chat_msg *m, size_t n, bool add_gen, const char *want) {
    char *out = render(tmpl, m, n, add_gen);
    ASSERT_STR_EQ(out, want);
    free(out);
}

/* Expects rendering to fail with code and a message containing needle. */
static void expect_error(const char *tmpl, const sl_chat_msg *m, size_t n, int code, const char *needle) {
    sl_chat *c;
    char err[SL_ERRMSG] = "";
    int rc = sl_chat_create_str(&c, tmpl, strlen(tmpl), "<s>", "</s>", err);
    if (!rc) {
        char *out = NULL;
        size_t len;
        rc = sl_chat_render(c, m, n, true, &out, &len, err);
        if (!rc) fprintf(stderr, "'%s' rendered \"%s\"\n", tmpl, out);
        free(out);
        sl_chat_destroy(c);
    }
    if (rc != code) fprintf(stderr, "'%s': rc %d (%s), want %d\n", tmpl, rc, err, code);
    ASSERT_EQ(rc, code);
    ASSERT_STR_CONTAINS(err, needle);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_builtins(void) {
    expect("chatml", MULTI, N(MULTI), true,
           "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n A1 <|im_end|>\n"
           "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n");
    expect("chatml", USER_ONLY, 1, false, "<|im_start|>user\nHello<|im_end|>\n");
    expect("llama3", MULTI, N(MULTI), true,
           "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect("llama4", USER_ONLY, 1, true, "<|header_start|>user<|header_end|>\n\nHello<|eot|><|header_start|>assistant<|header_end|>\n\n");
    /* Llama 2: BOS before the first [INST] comes from the tokenizer, later ones per variant */
    expect("llama2", MULTI, N(MULTI), true, "[INST] S\nQ1 [/INST] A1 </s>[INST] Q2 [/INST]");
    expect("llama2-sys", MULTI, N(MULTI), true, "[INST] <<SYS>>\nS\n<</SYS>>\n\nQ1 [/INST] A1 </s>[INST] Q2 [/INST]");
    expect("llama2-sys-bos", MULTI, N(MULTI), true, "[INST] <<SYS>>\nS\n<</SYS>>\n\nQ1 [/INST] A1 </s><s>[INST] Q2 [/INST]");
    expect("llama2-sys-strip", MULTI, N(MULTI), true, "[INST] <<SYS>>\nS\n<</SYS>>\n\nQ1 [/INST]A1</s>[INST] Q2 [/INST]");
    /* Mistral: v1 spaces around [INST], v3 trims answers, v3-tekken no spaces, v7 system blocks */
    expect("mistral-v1", MULTI, N(MULTI), true, " [INST] S\n\nQ1 [/INST]  A1 </s> [INST] Q2 [/INST]");
    expect("mistral-v3", MULTI, N(MULTI), true, "[INST] S\n\nQ1[/INST] A1</s>[INST] Q2[/INST]");
    expect("mistral-v3-tekken", MULTI, N(MULTI), true, "[INST]S\n\nQ1[/INST] A1 </s>[INST]Q2[/INST]");
    expect("mistral-v7", MULTI, N(MULTI), true, "[SYSTEM_PROMPT] S[/SYSTEM_PROMPT][INST] Q1[/INST]  A1 </s>[INST] Q2[/INST]");
    expect("mistral-v7-tekken", MULTI, N(MULTI), true, "[SYSTEM_PROMPT]S[/SYSTEM_PROMPT][INST]Q1[/INST] A1 </s>[INST]Q2[/INST]");
    expect("phi3", SYS_USER, 2, true, "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n");
    expect("phi4", SYS_USER, 2, true,
           "<|im_start|>system<|im_sep|>You are terse.<|im_end|><|im_start|>user<|im_sep|>Hi<|im_end|><|im_start|>assistant<|im_sep|>");
    expect("zephyr", SYS_USER, 2, true, "<|system|>\nYou are terse.<|endoftext|>\n<|user|>\nHi<|endoftext|>\n<|assistant|>\n");
    expect("falcon3", SYS_USER, 2, true, "<|system|>\nYou are terse.\n<|user|>\nHi\n<|assistant|>\n");
    /* Gemma: no system role; the system text opens the first user turn; assistant is "model" */
    expect("gemma", MULTI, N(MULTI), true,
           "<start_of_turn>user\nS\n\nQ1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n<start_of_turn>user\nQ2<end_of_turn>\n"
           "<start_of_turn>model\n");
    expect("deepseek", MULTI, N(MULTI), true,
           "S### Instruction:\nQ1\n### Response:\n A1 \n<|EOT|>\n### Instruction:\nQ2\n### Response:\n");
    expect("deepseek2", SYS_USER, 2, true, "You are terse.\n\nUser: Hi\n\nAssistant:");
    expect("deepseek3", MULTI, N(MULTI), true,
           "S\n\n<\xef\xbd\x9cUser\xef\xbd\x9c>Q1<\xef\xbd\x9c" "Assistant\xef\xbd\x9c> A1 <\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
           "<\xef\xbd\x9cUser\xef\xbd\x9c>Q2<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>");
    expect("command-r", SYS_USER, 2, true,
           "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are terse.<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi"
           "<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
    expect("vicuna", SYS_USER, 2, true, "You are terse.\n\nUSER: Hi\nASSISTANT:");
    expect("vicuna-orca", SYS_USER, 2, true, "SYSTEM: You are terse.\nUSER: Hi\nASSISTANT:");
    expect("openchat", SYS_USER, 2, true, "You are terse.<|end_of_turn|>GPT4 Correct User: Hi<|end_of_turn|>GPT4 Correct Assistant:");
    expect("monarch", SYS_USER, 2, true, "system\nYou are terse.</s>\n<s>user\nHi</s>\n<s>assistant\n");
    expect("orion", SYS_USER, 2, true, "Human: You are terse.\n\nHi\n\nAssistant: </s>");
    expect("granite", SYS_USER, 2, true,
           "<|start_of_role|>system<|end_of_role|>You are terse.<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>Hi<|end_of_text|>\n"
           "<|start_of_role|>assistant<|end_of_role|>");
    expect("exaone3", SYS_USER, 2, true, "[|system|]You are terse.[|endofturn|]\n[|user|]Hi\n[|assistant|]");
    expect("megrez", USER_ONLY, 1, true, "<|role_start|>user<|role_end|>Hello<|turn_end|><|role_start|>assistant<|role_end|>");
    expect("bailing", SYS_USER, 2, true, "<role>SYSTEM</role>You are terse.<role>HUMAN</role>Hi<role>ASSISTANT</role>");
    expect("chatglm4", USER_ONLY, 1, true, "[gMASK]<sop><|user|>\nHello<|assistant|>\n");
    expect("rwkv-world", SYS_USER, 2, true, "System: You are terse.\n\nUser: Hi\n\nAssistant:");
    expect("smolvlm", SYS_USER, 2, true, "<|im_start|>You are terse.\n\nUser: Hi<end_of_utterance>\nAssistant:");
    /* every listed name renders */
    for (const char *const *n = sl_chat_builtin_names(); *n; n++) free(render(*n, MULTI, N(MULTI), true));
}

static void test_detect(void) {
    struct { const char *tmpl, *family; } cases[] = {
        {"{{ '<|im_start|>' + m.role }}", "chatml"},
        {"<|im_start|>{{ x }}<|im_sep|>", "phi4"},
        {"{{ '<|start_header_id|>' }}{{ '<|end_header_id|>' }}", "llama3"},
        {"{{ '[INST] ' }}", "llama2"},
        {"<<SYS>> [INST]", "llama2-sys"},
        {"{{ bos_token + '[INST] ' }} <<SYS>>", "llama2-sys-bos"},
        {"[INST] {{ content.strip() }}", "llama2-sys-strip"},
        {"[INST] [SYSTEM_PROMPT]", "mistral-v7"},
        {"{{ ' [INST] ' + system_message }}", "mistral-v1"},
        {"{{ \"[INST]\" }}[AVAILABLE_TOOLS]", "mistral-v3-tekken"},
        {"{{ '[INST]' }}[AVAILABLE_TOOLS]", "mistral-v3"},
        {"<|assistant|><|end|>", "phi3"},
        {"<|user|><|assistant|></s>", "falcon3"},
        {"<|user|>{{ x }}<|endoftext|>", "zephyr"},
        {"<start_of_turn>", "gemma"},
        {"### Instruction:<|EOT|>", "deepseek"},
        {"<\xef\xbd\x9cUser\xef\xbd\x9c><\xef\xbd\x9c" "Assistant\xef\xbd\x9c><\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "deepseek3"},
        {"<|START_OF_TURN_TOKEN|><|USER_TOKEN|>", "command-r"},
        {"<|start_of_role|>", "granite"},
        {"USER: ASSISTANT: ", "vicuna"},
        {"gemma", "gemma"}, /* a built-in name is its own family */
    };
    for (size_t i = 0; i < N(cases); i++) {
        const char *f = sl_chat_detect(cases[i].tmpl, strlen(cases[i].tmpl));
        if (!f || strcmp(f, cases[i].family)) fprintf(stderr, "detect '%s': %s, want %s\n", cases[i].tmpl, f ? f : "NULL", cases[i].family);
        ASSERT(f && !strcmp(f, cases[i].family));
    }
    ASSERT(!sl_chat_detect("{{ messages }}", 14));
}

static const sl_chat_msg THREE[] = {{"user", "a"}, {"assistant", "b"}, {"user", "c"}};

static void test_jinja(void) {
    /* whitespace: trim_blocks, lstrip_blocks, '-' control, one trailing newline dropped */
    expect("{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}\n", THREE, 3, false, "[a]\n[c]\n");
    expect("{%- for m in messages -%}  {{- m.content -}}  {%- endfor %}", THREE, 3, false, "abc");
    expect("x  {#- comment -#}  y\n{# c #}\nz", THREE, 3, false, "xy\nz");
    expect("a\r\nb\n\n", NULL, 0, false, "a\nb\n");
    expect("  {%+ if true %}x{% endif %}", NULL, 0, false, "  x");
    /* loop variables, filters, else branch, break/continue */
    expect("{% for m in messages %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}", THREE, 3, false, "1/3,2/3,3/3");
    expect("{% for m in messages if m.role == 'user' %}{{ loop.index0 }}{{ m.content }}{% endfor %}", THREE, 3, false, "0a1c");
    expect("{% for x in [] %}x{% else %}empty{% endfor %}", NULL, 0, false, "empty");
    expect("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}", NULL, 0, false, "013");
    expect("{% for k, v in {'a': 1, 'b': [2]}.items() %}{{ k }}={{ v }};{% endfor %}", NULL, 0, false, "a=1;b=[2];");
    /* scoping: set inside a loop stays there; namespaces carry out */
    expect("{% set x = 1 %}{% for m in messages %}{% set x = 2 %}{% endfor %}{{ x }}", THREE, 3, false, "1");
    expect("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", THREE, 3, false, "3");
    expect("{% set a, b = 1, 'two' %}{{ b }}{{ a }}", NULL, 0, false, "two1");
    expect("{% set blk %}in {{ 'block' }}{% endset %}[{{ blk }}]", NULL, 0, false, "[in block]");
    expect("{% filter upper %}shout {{ 'this' }}{% endfilter %}", NULL, 0, false, "SHOUT THIS");
    expect("{% macro tag(name, v='x') %}<{{ name }}:{{ v }}>{% endmacro %}{{ tag('a') }}{{ tag('b', v='y') }}", NULL, 0, false, "<a:x><b:y>");
    expect("{% generation %}kept{% endgeneration %}", NULL, 0, false, "kept");
    /* expressions */
    expect("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }}", NULL, 0, false,
           "3 -4 1 2 3.5 1024 7 9");
    expect("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 10 / 4 }}", NULL, 0, false, "1.0 0.30000000000000004 1e+20 1.5e-07 2.5");
    expect("{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1] + [2] }}", NULL, 0, false, "a1NoneTrue ababab [1, 2]");
    expect("{{ 'x' if false else 'y' }}{{ 'z' if true }}{{ 'w' if false }}", NULL, 0, false, "yz");
    expect("{{ 1 < 2 and 'b' > 'a' }} {{ not 1 == 1 }} {{ 'ell' in 'hello' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }}", NULL, 0, false,
           "True False True True True");
    expect("{{ messages[0].content }}{{ messages[-1]['content'] }}{{ messages[9] is defined }}", THREE, 3, false, "acFalse");
    expect("{{ 'héllo'[1] }}{{ 'héllo'[1:3] }}{{ 'abc'[::-1] }}{{ [1, 2, 3, 4][1:] }}{{ [1, 2, 3][-2:] }}", NULL, 0, false, "éélcba[2, 3, 4][2, 3]");
    expect("{{ {'a': 'x', 1: 'y'}[1] }}{{ {'q': \"it's\"} }}", NULL, 0, false, "y{'q': \"it's\"}");
    expect("{{ 'a' 'b' }}{{ \"\\n\\t\\\\\\u00e9\" }}", NULL, 0, false, "ab\n\t\\\xc3\xa9");
    /* filters */
    expect("{{ '  x  ' | trim }}|{{ 'hello world' | title }}|{{ 'AbC' | lower }}{{ 'abc' | upper }}|{{ 'héllo' | length }}", NULL, 0, false,
           "x|Hello World|abcABC|5");
    expect("{{ messages | map(attribute='content') | join(', ') }}", THREE, 3, false, "a, b, c");
    expect("{{ messages | selectattr('role', 'equalto', 'user') | list | length }}{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='content') | first }}",
           THREE, 3, false, "2b");
    expect("{{ undefined_name | default('dflt') }}{{ '' | default('e', true) }}{{ none | string }}{{ [3, 1, 2] | sort | join }}{{ [1, 1, 2] | unique | list }}",
           NULL, 0, false, "dflteNone123[1, 2]");
    expect("{{ {'b': 1, 'a': [true, none, 1.5, \"q\\\"\"]} | tojson }}", NULL, 0, false, "{\"b\": 1, \"a\": [true, null, 1.5, \"q\\\"\"]}");
    expect("{{ {'a': [1, {}], 'b': {'c': 'd'}} | tojson(indent=2) }}", NULL, 0, false,
           "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": {\n    \"c\": \"d\"\n  }\n}");
    expect("{{ 'aXbXc' | replace('X', '-') }}{{ '12' | int + 1 }}{{ 'x' | int }}{{ -3 | abs }}{{ {'b': 2, 'a': 1} | dictsort }}", NULL, 0, false,
           "a-b-c1303[['a', 1], ['b', 2]]");
    expect("{{ 'l1\nl2' | indent(2) }}|{{ [1, 2, 3] | reverse | list }}|{{ 'abc' | reverse }}|{{ 'a b' | list }}", NULL, 0, false,
           "l1\n  l2|[3, 2, 1]|cba|['a', ' ', 'b']");
    /* tests */
    expect("{{ x is defined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ {} is mapping }}{{ [] is iterable }}{{ 3 is odd }}"
           "{{ 4 is divisibleby 2 }}{{ 'x' is not string }}{{ 1 is eq(1) }}",
           NULL, 0, false, "FalseTrueTrueTrueTrueTrueTrueTrueFalseTrue");
    /* methods */
    expect("{{ ' x '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}", NULL, 0, false,
           "x|axx|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']");
    expect("{{ 'a b c'.rsplit(' ', 1) }}|{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('x', 'lo')) }}|{{ 'ab'.upper() }}|{{ '-'.join(['a', 'b']) }}"
           "|{{ 'abcabc'.find('c') }}{{ 'abcabc'.rfind('c') }}{{ 'abcabc'.count('bc') }}|{{ '{} and {x}'.format(1, x='y') }}",
           NULL, 0, false, "['a b', 'c']|TrueTrue|AB|a-b|252|1 and y");
    expect("{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('b', 'no') }}{{ {'a': 1}.keys() | list }}{% set l = [1] %}{{ l.append(2) or '' }}{{ l }}{{ l.pop() }}",
           NULL, 0, false, "1no['a'][1, 2]2");
    expect("{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}", NULL, 0, true, "<s></s>True");
    /* leniency that llama.cpp's engine has: none iterates as empty, undefined + string */
    expect("{% for x in none %}x{% endfor %}{{ none | selectattr('a') | list }}{{ 'a' + undefined_name }}", NULL, 0, false, "[]a");
}

static void test_jinja_errors(void) {
    expect_error("{{ raise_exception('roles must alternate') }}", NULL, 0, SL_EINVAL, "roles must alternate");
    expect_error("{{ 1 + 'a' }}", NULL, 0, SL_EINVAL, "line 1: unsupported operand types for +: int and string");
    expect_error("{{ 1 // 0 }}", NULL, 0, SL_EINVAL, "division or modulo by zero");
    expect_error("{{ 9223372036854775807 + 1 }}", NULL, 0, SL_ERANGE, "integer overflow");
    expect_error("line\n{{ x | nosuchfilter }}", NULL, 0, SL_EUNSUPPORTED, "line 2: unknown filter 'nosuchfilter'");
    expect_error("{{ 'a'.nosuchmethod() }}", NULL, 0, SL_EUNSUPPORTED, "string has no method 'nosuchmethod'");
    expect_error("{{ nosuchfunc() }}", NULL, 0, SL_EUNSUPPORTED, "'nosuchfunc' is not a function");
    /* syntax and unsupported statements: not parseable and no family → SL_EUNSUPPORTED at create */
    expect_error("{% if x %}", NULL, 0, SL_EUNSUPPORTED, "'if' is never closed");
    expect_error("{{ x ", NULL, 0, SL_EUNSUPPORTED, "unclosed {{ tag");
    expect_error("{{ 'abc }}", NULL, 0, SL_EUNSUPPORTED, "unterminated string");
    expect_error("{% endfor %}", NULL, 0, SL_EUNSUPPORTED, "unexpected 'endfor'");
    expect_error("{% include 'x' %}", NULL, 0, SL_EUNSUPPORTED, "'{% include %}' is not supported");
    expect_error("{{ a + }}", NULL, 0, SL_EUNSUPPORTED, "expected an expression");
    /* limits: all fail cleanly */
    expect_error("{% for i in range(100000000) %}{% endfor %}", NULL, 0, SL_ENOMEM, "range of more than a million");
    expect_error("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", NULL, 0, SL_ENOMEM, "nested deeper");
    expect_error("{% set r = range(1000000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", NULL, 0, SL_ENOMEM, "steps");
    expect_error("{% set s = namespace(v='x') %}{% for i in range(40) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v }}", NULL, 0, SL_ENOMEM,
                 "");
    expect_error("{{ 'x' * 100000000000 }}", NULL, 0, SL_ENOMEM, "repetition");
    char deep[4000];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 1000; i++) deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 1000; i++) deep[k++] = ')';
    snprintf(deep + k, sizeof deep - k, " }}");
    expect_error(deep, NULL, 0, SL_EUNSUPPORTED, "nesting deeper");
}

/* A toy SentencePiece vocabulary (BOS, EOS, bytes) with an optional chat template. */
static void make_gguf(const char *tmpl, bool add_bos, sl_gguf **g, sl_tok **t, uint8_t **mem) {
    const char *tok[259];
    float score[259];
    int32_t type[259];
    static char bytes[256][7];
    tok[0] = "<unk>", tok[1] = "<s>", tok[2] = "</s>";
    type[0] = 2, type[1] = type[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tok[3 + b] = bytes[b], type[3 + b] = 6;
    }
    for (int i = 0; i < 259; i++) score[i] = 0;
    sl_gguf_writer *w = sl_gguf_writer_create();
    sl_gguf_w_str(w, "tokenizer.ggml.model", "llama");
    sl_gguf_w_arr_str(w, "tokenizer.ggml.tokens", tok, 259);
    sl_gguf_w_arr_f32(w, "tokenizer.ggml.scores", score, 259);
    sl_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", type, 259);
    sl_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    if (tmpl) sl_gguf_w_str(w, "tokenizer.chat_template", tmpl);
    size_t size;
    ASSERT_EQ(sl_gguf_writer_to_mem(w, mem, &size), 0);
    sl_gguf_writer_destroy(w);
    char err[SL_ERRMSG];
    ASSERT_EQ(sl_gguf_open_mem(g, *mem, size, err), 0);
    ASSERT_EQ(sl_tok_create(t, *g, err), 0);
}

static void test_gguf(void) {
    const char *tmpl = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
                       "{% if add_generation_prompt %}<assistant>{% endif %}";
    sl_gguf *g;
    sl_tok *t;
    uint8_t *mem;
    char err[SL_ERRMSG] = "", *out;
    size_t len;
    make_gguf(tmpl, true, &g, &t, &mem);
    sl_chat *c;
    ASSERT_EQ(sl_chat_create(&c, g, t, NULL, err), 0);
    ASSERT(sl_chat_is_jinja(c));
    ASSERT(!sl_chat_family(c));
    ASSERT_EQ(sl_chat_render(c, SYS_USER, 2, true, &out, &len, err), 0);
    ASSERT_STR_EQ(out, "<s><system>You are terse.</s><user>Hi</s><assistant>");
    /* encode: the template's BOS text is dropped because the tokenizer adds BOS itself */
    sl_tok_ids ids = {0}, plain = {0};
    ASSERT_EQ(sl_chat_encode(t, out, len, &ids), 0);
    ASSERT_EQ(sl_tok_encode(t, out + 3, len - 3, SL_TOK_ADD_SPECIAL | SL_TOK_PARSE_SPECIAL, &plain), 0);
    ASSERT_EQ(ids.n, plain.n);
    ASSERT(!memcmp(ids.v, plain.v, ids.n * sizeof *ids.v));
    ASSERT_EQ(ids.v[0], 1);
    ASSERT(ids.v[1] != 1);
    sl_tok_ids_free(&ids);
    sl_tok_ids_free(&plain);
    free(out);
    /* messages as JSON: any fields reach the template */
    sl_chat_destroy(c);
    const char *json_tmpl = "{% for m in messages %}{{ m.role }}:{% if m.content is string %}{{ m.content }}{% else %}"
                            "{% for p in m.content %}[{{ p.text }}]{% endfor %}{% endif %}{{ m.tool_calls | tojson if m.tool_calls }};{% endfor %}";
    ASSERT_EQ(sl_chat_create(&c, g, t, json_tmpl, err), 0);
    const char *json = "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\\u00e9\"},{\"type\":\"text\",\"text\":\"\\ud83d\\ude00\"}]},"
                       " {\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"name\":\"f\",\"args\":{\"x\":-1.5e2}}]}]";
    ASSERT_EQ(sl_chat_render_json(c, json, strlen(json), false, &out, &len, err), 0);
    ASSERT_STR_EQ(out, "user:[a\xc3\xa9][\xf0\x9f\x98\x80];assistant:[{\"name\": \"f\", \"args\": {\"x\": -150.0}}];");
    free(out);
    ASSERT_EQ(sl_chat_render_json(c, "[{\"role\":1}", 11, false, &out, &len, err), SL_EFORMAT);
    ASSERT_EQ(sl_chat_render_json(c, "{}", 2, false, &out, &len, err), SL_EFORMAT);
    ASSERT_STR_CONTAINS(err, "expected a JSON array");
    sl_chat_destroy(c);
    /* built-in override, with JSON messages */
    ASSERT_EQ(sl_chat_create(&c, g, t, "chatml", err), 0);
    ASSERT(!sl_chat_is_jinja(c));
    ASSERT_STR_EQ(sl_chat_family(c), "chatml");
    const char *hey = "[{\"role\":\"user\",\"content\":\"hey\"}]", *parts = "[{\"role\":\"user\",\"content\":[]}]";
    ASSERT_EQ(sl_chat_render_json(c, hey, strlen(hey), true, &out, &len, err), 0);
    ASSERT_STR_EQ(out, "<|im_start|>user\nhey<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    ASSERT_EQ(sl_chat_render_json(c, parts, strlen(parts), true, &out, &len, err), SL_EFORMAT);
    sl_chat_destroy(c);
    /* unknown override name; errors list the built-ins */
    ASSERT_EQ(sl_chat_create(&c, g, t, "llama-3", err), SL_EINVAL);
    ASSERT_STR_CONTAINS(err, "unknown chat template name 'llama-3'");
    ASSERT_STR_CONTAINS(err, "llama3");
    sl_tok_destroy(t);
    sl_gguf_close(g);
    free(mem);

    /* no template in the file */
    make_gguf(NULL, true, &g, &t, &mem);
    ASSERT_EQ(sl_chat_create(&c, g, t, NULL, err), SL_ENOTFOUND);
    ASSERT_STR_CONTAINS(err, "--chat-template");
    ASSERT_EQ(sl_chat_create(&c, g, t, "zephyr", err), 0);
    ASSERT_STR_EQ(sl_chat_family(c), "zephyr");
    sl_chat_destroy(c);
    sl_tok_destroy(t);
    sl_gguf_close(g);
    free(mem);

    /* a template outside the subset: an error unless its family is recognized */
    make_gguf("{% raw %}x{% endraw %}", false, &g, &t, &mem);
    ASSERT_EQ(sl_chat_create(&c, g, t, NULL, err), SL_EUNSUPPORTED);
    ASSERT_STR_CONTAINS(err, "'{% raw %}' is not supported");
    ASSERT_STR_CONTAINS(err, "--chat-template NAME");
    ASSERT_EQ(sl_chat_create(&c, g, t, "llama3", err), 0);
    sl_chat_destroy(c);
    sl_tok_destroy(t);
    sl_gguf_close(g);
    free(mem);
    make_gguf("{% raw %}<|im_start|>{% endraw %}", false, &g, &t, &mem);
    ASSERT_EQ(sl_chat_create(&c, g, t, NULL, err), 0);
    ASSERT(!sl_chat_is_jinja(c));
    ASSERT_STR_EQ(sl_chat_family(c), "chatml");
    ASSERT_EQ(sl_chat_render(c, USER_ONLY, 1, true, &out, &len, err), 0);
    ASSERT_STR_EQ(out, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    /* add_bos off: the BOS text stays and parses to the BOS token */
    sl_tok_ids ids2 = {0};
    ASSERT_EQ(sl_chat_encode(t, "<s>x", 4, &ids2), 0);
    ASSERT_EQ(ids2.v[0], 1);
    sl_tok_ids_free(&ids2);
    sl_chat_destroy(c);
    sl_tok_destroy(t);
    sl_gguf_close(g);
    free(mem);
}

/* Mutated templates (random cuts, splices and Jinja fragments) must render or fail cleanly. */
static void test_fuzz(void) {
    static const char *const seeds[] = {
        "{%- for m in messages %}{% if loop.first and m.role == 'system' %}{{ m.content | trim }}{% else %}<{{ m.role }}>{{ m.content }}{% endif %}{% endfor %}",
        "{% set ns = namespace(a=[], b=0) %}{% for m in messages[::-1] %}{% set ns.b = ns.b + loop.index %}{{ m.content.split(' ')[-1] }}{% endfor %}{{ ns | tojson }}",
        "{% macro f(x, y=2) %}{{ x * y }}{% endmacro %}{{ f(3) }}{{ {'a': [1, 2.5, none]} | tojson(indent=1) }}{{ 'a{}b'.format(range(3) | list) }}",
        "{% for k, v in {'x': 1, 'y': 'z'} | dictsort %}{{ k ~ v }}{% else %}{% endfor %}{{ messages | selectattr('role', 'eq', 'user') | map(attribute='content') | join(',') }}",
    };
    static const char *const frags[] = {"{{", "}}", "{%", "%}", "{#", "#}", "-", "'", "\"", "(", ")", "[", "]", "{", "}", ".", "|", ",", ":",
                                        " if ", " for ", " in ", " endfor ", " endif ", " else ", " set ", " macro ", " not ", "loop",
                                        "messages", "range(99)", "*", "**", "~", " is ", "none", "\\", "\n", "0", "-1", "9999999999999999999"};
    for (size_t i = 0; i < N(seeds); i++) free(render(seeds[i], MULTI, N(MULTI), true)); /* the seeds themselves render */
    sl_rng rng;
    sl_rng_seed(&rng, 1234);
    char buf[1024];
    int ok = 0, errors = 0;
    for (int it = 0; it < 4000; it++) {
        const char *s = seeds[sl_rng_u64(&rng) % N(seeds)];
        size_t k = strlen(s);
        memcpy(buf, s, k);
        for (int m = 1 + (int)(sl_rng_u64(&rng) % 3); m > 0; m--) {
            size_t at = (size_t)(sl_rng_u64(&rng) % (k + 1));
            switch (sl_rng_u64(&rng) % 4) {
            case 0: /* drop a few bytes */
                if (at < k) {
                    size_t d = 1 + (size_t)(sl_rng_u64(&rng) % 4);
                    if (d > k - at) d = k - at;
                    memmove(buf + at, buf + at + d, k - at - d), k -= d;
                }
                break;
            case 1: case 2: { /* insert a fragment */
                const char *f = frags[sl_rng_u64(&rng) % N(frags)];
                size_t fl = strlen(f);
                if (k + fl < sizeof buf) memmove(buf + at + fl, buf + at, k - at), memcpy(buf + at, f, fl), k += fl;
                break;
            }
            default: /* a random byte */
                if (at < k) buf[at] = (char)(sl_rng_u64(&rng) & 0xFF);
            }
        }
        sl_chat *c;
        char err[SL_ERRMSG];
        if (sl_chat_create_str(&c, buf, k, "<s>", "</s>", err)) {
            errors++;
            continue;
        }
        char *out = NULL;
        size_t len;
        int rc = sl_chat_render(c, MULTI, N(MULTI), true, &out, &len, err);
        if (!rc) {
            ASSERT_EQ(strlen(out), len);
            ok++;
        } else {
            ASSERT(!out);
            errors++;
        }
        free(out);
        sl_chat_destroy(c);
    }
    fprintf(stderr, "fuzz: %d rendered, %d rejected\n", ok, errors);
    ASSERT(ok > 100 && errors > 100);

    /* mutated JSON messages */
    sl_chat *c;
    char err[SL_ERRMSG];
    const char *t = "{% for m in messages %}{{ m.role }}={{ m.content | tojson }};{% endfor %}";
    ASSERT_EQ(sl_chat_create_str(&c, t, strlen(t), "", "", err), 0);
    const char *json = "[{\"role\": \"user\", \"content\": \"h\\u00e9\\n\"}, {\"role\": \"x\", \"content\": [1, -2.5e3, true, null, {\"k\": \"v\"}]}]";
    ok = errors = 0;
    for (int it = 0; it < 4000; it++) {
        size_t k = strlen(json);
        memcpy(buf, json, k);
        for (int m = 1 + (int)(sl_rng_u64(&rng) % 2); m > 0; m--) {
            size_t at = (size_t)(sl_rng_u64(&rng) % k);
            static const char set[] = "[]{}\",:\\u0-e9 ";
            if (sl_rng_u64(&rng) & 1) buf[at] = set[sl_rng_u64(&rng) % (sizeof set - 1)];
            else memmove(buf + at, buf + at + 1, k - at - 1), k--;
        }
        char *out = NULL;
        size_t len;
        if (!sl_chat_render_json(c, buf, k, false, &out, &len, err)) ok++;
        else errors++;
        free(out);
    }
    fprintf(stderr, "json fuzz: %d rendered, %d rejected\n", ok, errors);
    ASSERT(ok > 100 && errors > 100);
    sl_chat_destroy(c);
}

int main(void) {
    test_builtins();
    test_detect();
    test_jinja();
    test_jinja_errors();
    test_gguf();
    test_fuzz();
    printf("test_chat: ok\n");
    return 0;
}
