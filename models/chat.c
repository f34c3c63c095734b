/* chat.c — chat templates (chat.h): template selection, family detection, the built-in formats
 * and prompt tokenization. The Jinja interpreter is chat_parse.c / chat_eval.c. */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_internal.h"

struct sl_chat {
    sl__jtmpl *jinja; /* NULL: built-in format `fmt` */
    int fmt;
    const char *family;
    char *bos, *eos;
};

/* ---- built-in formats (llama.cpp's names and renderings) ---------------------------------- */
enum {
    F_CHATML, F_LLAMA2, F_LLAMA2_SYS, F_LLAMA2_SYS_BOS, F_LLAMA2_SYS_STRIP, F_MISTRAL_V1, F_MISTRAL_V3,
    F_MISTRAL_V3_TEKKEN, F_MISTRAL_V7, F_MISTRAL_V7_TEKKEN, F_PHI3, F_PHI4, F_FALCON3, F_ZEPHYR, F_MONARCH,
    F_GEMMA, F_ORION, F_OPENCHAT, F_VICUNA, F_VICUNA_ORCA, F_DEEPSEEK, F_DEEPSEEK2, F_DEEPSEEK3, F_COMMAND_R,
    F_LLAMA3, F_CHATGLM3, F_CHATGLM4, F_GLMEDGE, F_MINICPM, F_EXAONE3, F_EXAONE4, F_RWKV_WORLD, F_GRANITE,
    F_MEGREZ, F_BAILING, F_LLAMA4, F_SMOLVLM, F_COUNT
};

static const char *const NAMES[F_COUNT + 1] = {
    "chatml", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1", "mistral-v3",
    "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "phi3", "phi4", "falcon3", "zephyr", "monarch",
    "gemma", "orion", "openchat", "vicuna", "vicuna-orca", "deepseek", "deepseek2", "deepseek3", "command-r",
    "llama3", "chatglm3", "chatglm4", "glmedge", "minicpm", "exaone3", "exaone4", "rwkv-world", "granite",
    "megrez", "bailing", "llama4", "smolvlm", NULL,
};

const char *const *sl_chat_builtin_names(void) { return NAMES; }

static int find_name(const char *s, size_t n) {
    for (int i = 0; i < F_COUNT; i++)
        if (strlen(NAMES[i]) == n && !memcmp(NAMES[i], s, n)) return i;
    return -1;
}

/* Output buffer of the built-in renderers. */
typedef struct obuf { char *s; size_t n, cap; bool oom; } obuf;

static void put(obuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns, b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void puts_(obuf *b, const char *s) { put(b, s, strlen(s)); }

static bool ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* content with surrounding whitespace removed */
static void put_trim(obuf *b, const char *s) {
    size_t a = 0, e = strlen(s);
    while (a < e && ws(s[a])) a++;
    while (e > a && ws(s[e - 1])) e--;
    put(b, s + a, e - a);
}

static void render_builtin(int f, const sl_chat_msg *m, size_t n, bool add_ass, obuf *o) {
    switch (f) {
    case F_CHATML:
        for (size_t i = 0; i < n; i++) {
            puts_(o, "<|im_start|>"), puts_(o, m[i].role), puts_(o, "\n"), puts_(o, m[i].content), puts_(o, "<|im_end|>\n");
        }
        if (add_ass) puts_(o, "<|im_start|>assistant\n");
        break;
    case F_MISTRAL_V7: case F_MISTRAL_V7_TEKKEN: {
        const char *sp = f == F_MISTRAL_V7 ? " " : "";
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) puts_(o, "[SYSTEM_PROMPT]"), puts_(o, sp), puts_(o, m[i].content), puts_(o, "[/SYSTEM_PROMPT]");
            else if (!strcmp(m[i].role, "user")) puts_(o, "[INST]"), puts_(o, sp), puts_(o, m[i].content), puts_(o, "[/INST]");
            else puts_(o, sp), puts_(o, m[i].content), puts_(o, "</s>");
        }
        break;
    }
    case F_MISTRAL_V1: case F_MISTRAL_V3: case F_MISTRAL_V3_TEKKEN: {
        const char *lead = f == F_MISTRAL_V1 ? " " : "", *trail = f == F_MISTRAL_V3_TEKKEN ? "" : " ";
        bool in_turn = false;
        for (size_t i = 0; i < n; i++) {
            if (!in_turn) puts_(o, lead), puts_(o, "[INST]"), puts_(o, trail), in_turn = true;
            if (!strcmp(m[i].role, "system")) puts_(o, m[i].content), puts_(o, "\n\n");
            else if (!strcmp(m[i].role, "user")) puts_(o, m[i].content), puts_(o, lead), puts_(o, "[/INST]");
            else {
                puts_(o, trail);
                if (f == F_MISTRAL_V3) put_trim(o, m[i].content);
                else puts_(o, m[i].content);
                puts_(o, "</s>");
                in_turn = false;
            }
        }
        break;
    }
    case F_LLAMA2: case F_LLAMA2_SYS: case F_LLAMA2_SYS_BOS: case F_LLAMA2_SYS_STRIP: {
        bool in_turn = true; /* the first "[INST] " is written up front; BOS comes from the tokenizer */
        puts_(o, "[INST] ");
        for (size_t i = 0; i < n; i++) {
            if (!in_turn) puts_(o, f == F_LLAMA2_SYS_BOS ? "<s>[INST] " : "[INST] "), in_turn = true;
            obuf c = {0};
            if (f == F_LLAMA2_SYS_STRIP) put_trim(&c, m[i].content);
            else puts_(&c, m[i].content);
            const char *content = c.s ? c.s : "";
            if (!strcmp(m[i].role, "system")) {
                if (f == F_LLAMA2) puts_(o, content), puts_(o, "\n");
                else puts_(o, "<<SYS>>\n"), puts_(o, content), puts_(o, "\n<</SYS>>\n\n");
            } else if (!strcmp(m[i].role, "user")) puts_(o, content), puts_(o, " [/INST]");
            else puts_(o, content), puts_(o, "</s>"), in_turn = false;
            o->oom |= c.oom;
            free(c.s);
        }
        break;
    }
    case F_PHI3: case F_ZEPHYR: case F_FALCON3:
        for (size_t i = 0; i < n; i++) {
            puts_(o, "<|"), puts_(o, m[i].role), puts_(o, "|>\n"), puts_(o, m[i].content);
            puts_(o, f == F_PHI3 ? "<|end|>\n" : f == F_ZEPHYR ? "<|endoftext|>\n" : "\n");
        }
        if (add_ass) puts_(o, "<|assistant|>\n");
        break;
    case F_PHI4:
        for (size_t i = 0; i < n; i++)
            puts_(o, "<|im_start|>"), puts_(o, m[i].role), puts_(o, "<|im_sep|>"), puts_(o, m[i].content), puts_(o, "<|im_end|>");
        if (add_ass) puts_(o, "<|im_start|>assistant<|im_sep|>");
        break;
    case F_MONARCH:
        for (size_t i = 0; i < n; i++) {
            if (i) puts_(o, "<s>");
            puts_(o, m[i].role), puts_(o, "\n"), puts_(o, m[i].content), puts_(o, "</s>\n");
        }
        if (add_ass) puts_(o, "<s>assistant\n");
        break;
    case F_GEMMA: { /* no system role: system text (trimmed) opens the next user turn */
        obuf sys = {0};
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) {
                put_trim(&sys, m[i].content);
                continue;
            }
            bool model = !strcmp(m[i].role, "assistant");
            puts_(o, "<start_of_turn>"), puts_(o, model ? "model" : m[i].role), puts_(o, "\n");
            if (sys.n && !model) put(o, sys.s, sys.n), puts_(o, "\n\n"), sys.n = 0;
            put_trim(o, m[i].content);
            puts_(o, "<end_of_turn>\n");
        }
        if (add_ass) puts_(o, "<start_of_turn>model\n");
        o->oom |= sys.oom;
        free(sys.s);
        break;
    }
    case F_ORION: {
        obuf sys = {0};
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) puts_(&sys, m[i].content);
            else if (!strcmp(m[i].role, "user")) {
                puts_(o, "Human: ");
                if (sys.n) put(o, sys.s, sys.n), puts_(o, "\n\n"), sys.n = 0;
                puts_(o, m[i].content), puts_(o, "\n\nAssistant: </s>");
            } else puts_(o, m[i].content), puts_(o, "</s>");
        }
        o->oom |= sys.oom;
        free(sys.s);
        break;
    }
    case F_OPENCHAT:
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) puts_(o, m[i].content);
            else {
                char first[2] = {m[i].role[0], 0};
                if (first[0] >= 'a' && first[0] <= 'z') first[0] = (char)(first[0] - 'a' + 'A');
                puts_(o, "GPT4 Correct "), puts_(o, first), puts_(o, m[i].role[0] ? m[i].role + 1 : "");
                puts_(o, ": "), puts_(o, m[i].content);
            }
            puts_(o, "<|end_of_turn|>");
        }
        if (add_ass) puts_(o, "GPT4 Correct Assistant:");
        break;
    case F_VICUNA: case F_VICUNA_ORCA:
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) {
                if (f == F_VICUNA_ORCA) puts_(o, "SYSTEM: "), puts_(o, m[i].content), puts_(o, "\n");
                else puts_(o, m[i].content), puts_(o, "\n\n");
            } else if (!strcmp(m[i].role, "user")) puts_(o, "USER: "), puts_(o, m[i].content), puts_(o, "\n");
            else if (!strcmp(m[i].role, "assistant")) puts_(o, "ASSISTANT: "), puts_(o, m[i].content), puts_(o, "</s>\n");
        }
        if (add_ass) puts_(o, "ASSISTANT:");
        break;
    case F_DEEPSEEK:
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) puts_(o, m[i].content);
            else if (!strcmp(m[i].role, "user")) puts_(o, "### Instruction:\n"), puts_(o, m[i].content), puts_(o, "\n");
            else if (!strcmp(m[i].role, "assistant")) puts_(o, "### Response:\n"), puts_(o, m[i].content), puts_(o, "\n<|EOT|>\n");
        }
        if (add_ass) puts_(o, "### Response:\n");
        break;
    case F_DEEPSEEK2: case F_DEEPSEEK3:
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) puts_(o, m[i].content), puts_(o, "\n\n");
            else if (!strcmp(m[i].role, "user")) {
                puts_(o, f == F_DEEPSEEK2 ? "User: " : "<\xef\xbd\x9cUser\xef\xbd\x9c>"), puts_(o, m[i].content);
                if (f == F_DEEPSEEK2) puts_(o, "\n\n");
            } else if (!strcmp(m[i].role, "assistant")) {
                puts_(o, f == F_DEEPSEEK2 ? "Assistant: " : "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"), puts_(o, m[i].content);
                puts_(o, "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
            }
        }
        if (add_ass) puts_(o, f == F_DEEPSEEK2 ? "Assistant:" : "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>");
        break;
    case F_COMMAND_R:
        for (size_t i = 0; i < n; i++) {
            const char *tag = !strcmp(m[i].role, "system") ? "<|SYSTEM_TOKEN|>" : !strcmp(m[i].role, "user") ? "<|USER_TOKEN|>"
                            : !strcmp(m[i].role, "assistant") ? "<|CHATBOT_TOKEN|>" : NULL;
            if (!tag) continue;
            puts_(o, "<|START_OF_TURN_TOKEN|>"), puts_(o, tag), put_trim(o, m[i].content), puts_(o, "<|END_OF_TURN_TOKEN|>");
        }
        if (add_ass) puts_(o, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
        break;
    case F_LLAMA3: case F_LLAMA4: {
        const char *h0 = f == F_LLAMA3 ? "<|start_header_id|>" : "<|header_start|>";
        const char *h1 = f == F_LLAMA3 ? "<|end_header_id|>\n\n" : "<|header_end|>\n\n";
        for (size_t i = 0; i < n; i++) {
            puts_(o, h0), puts_(o, m[i].role), puts_(o, h1), put_trim(o, m[i].content);
            puts_(o, f == F_LLAMA3 ? "<|eot_id|>" : "<|eot|>");
        }
        if (add_ass) puts_(o, h0), puts_(o, "assistant"), puts_(o, h1);
        break;
    }
    case F_CHATGLM3: case F_CHATGLM4: case F_GLMEDGE:
        if (f != F_GLMEDGE) puts_(o, f == F_CHATGLM3 ? "[gMASK]sop" : "[gMASK]<sop>");
        for (size_t i = 0; i < n; i++)
            puts_(o, "<|"), puts_(o, m[i].role), puts_(o, f == F_CHATGLM3 ? "|>\n " : "|>\n"), puts_(o, m[i].content);
        if (add_ass) puts_(o, f == F_CHATGLM4 ? "<|assistant|>\n" : "<|assistant|>");
        break;
    case F_MINICPM:
        for (size_t i = 0; i < n; i++) {
            bool user = !strcmp(m[i].role, "user");
            if (user) puts_(o, "<\xe7\x94\xa8\xe6\x88\xb7>");
            put_trim(o, m[i].content);
            if (user) puts_(o, "<AI>");
        }
        break;
    case F_EXAONE3: case F_EXAONE4:
        for (size_t i = 0; i < n; i++) {
            const char *r = m[i].role;
            if (!strcmp(r, "system")) puts_(o, "[|system|]"), put_trim(o, m[i].content), puts_(o, "[|endofturn|]\n");
            else if (!strcmp(r, "user")) puts_(o, "[|user|]"), put_trim(o, m[i].content), puts_(o, "\n");
            else if (!strcmp(r, "assistant")) puts_(o, "[|assistant|]"), put_trim(o, m[i].content), puts_(o, "[|endofturn|]\n");
            else if (f == F_EXAONE4 && !strcmp(r, "tool")) puts_(o, "[|tool|]"), put_trim(o, m[i].content), puts_(o, "[|endofturn|]\n");
        }
        if (add_ass) puts_(o, "[|assistant|]");
        break;
    case F_RWKV_WORLD:
        for (size_t i = 0; i < n; i++) {
            const char *r = m[i].role;
            if (!strcmp(r, "system")) puts_(o, "System: "), put_trim(o, m[i].content), puts_(o, "\n\n");
            else if (!strcmp(r, "user")) {
                puts_(o, "User: "), put_trim(o, m[i].content), puts_(o, "\n\n");
                if (i + 1 == n) puts_(o, "Assistant:");
            } else if (!strcmp(r, "assistant")) puts_(o, "Assistant: "), put_trim(o, m[i].content), puts_(o, "\n\n");
        }
        break;
    case F_GRANITE:
        for (size_t i = 0; i < n; i++) {
            puts_(o, "<|start_of_role|>"), puts_(o, m[i].role), puts_(o, "<|end_of_role|>");
            if (!strcmp(m[i].role, "assistant_tool_call")) puts_(o, "<|tool_call|>");
            puts_(o, m[i].content), puts_(o, "<|end_of_text|>\n");
        }
        if (add_ass) puts_(o, "<|start_of_role|>assistant<|end_of_role|>");
        break;
    case F_MEGREZ:
        for (size_t i = 0; i < n; i++)
            puts_(o, "<|role_start|>"), puts_(o, m[i].role), puts_(o, "<|role_end|>"), puts_(o, m[i].content), puts_(o, "<|turn_end|>");
        if (add_ass) puts_(o, "<|role_start|>assistant<|role_end|>");
        break;
    case F_BAILING:
        for (size_t i = 0; i < n; i++) {
            puts_(o, "<role>");
            if (!strcmp(m[i].role, "user")) puts_(o, "HUMAN");
            else
                for (const char *p = m[i].role; *p; p++) {
                    char c = *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
                    put(o, &c, 1);
                }
            puts_(o, "</role>"), puts_(o, m[i].content);
        }
        if (add_ass) puts_(o, "<role>ASSISTANT</role>");
        break;
    case F_SMOLVLM:
        puts_(o, "<|im_start|>");
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) puts_(o, m[i].content), puts_(o, "\n\n");
            else if (!strcmp(m[i].role, "user")) puts_(o, "User: "), puts_(o, m[i].content), puts_(o, "<end_of_utterance>\n");
            else puts_(o, "Assistant: "), puts_(o, m[i].content), puts_(o, "<end_of_utterance>\n");
        }
        if (add_ass) puts_(o, "Assistant:");
        break;
    }
}

/* ---- detection --------------------------------------------------------------------------- */
static bool has(const char *t, size_t n, const char *needle) { return memmem(t, n, needle, strlen(needle)) != NULL; }

static int detect(const char *t, size_t n) {
    int named = find_name(t, n);
    if (named >= 0) return named;
    if (has(t, n, "<|im_start|>"))
        return has(t, n, "<|im_sep|>") ? F_PHI4 : has(t, n, "<end_of_utterance>") ? F_SMOLVLM : F_CHATML;
    if ((n >= 7 && !memcmp(t, "mistral", 7)) || has(t, n, "[INST]")) {
        if (has(t, n, "[SYSTEM_PROMPT]")) return F_MISTRAL_V7;
        if (has(t, n, "' [INST] ' + system_message") || has(t, n, "[AVAILABLE_TOOLS]")) {
            if (has(t, n, " [INST]")) return F_MISTRAL_V1;
            if (has(t, n, "\"[INST]\"")) return F_MISTRAL_V3_TEKKEN;
            return F_MISTRAL_V3;
        }
        if (has(t, n, "content.strip()")) return F_LLAMA2_SYS_STRIP;
        if (has(t, n, "bos_token + '[INST]")) return F_LLAMA2_SYS_BOS;
        return has(t, n, "<<SYS>>") ? F_LLAMA2_SYS : F_LLAMA2;
    }
    if (has(t, n, "<|assistant|>") && has(t, n, "<|end|>")) return F_PHI3;
    if (has(t, n, "[gMASK]<sop>")) return F_CHATGLM4;
    if (has(t, n, "<|assistant|>") && has(t, n, "<|user|>")) return has(t, n, "</s>") ? F_FALCON3 : F_GLMEDGE;
    if (has(t, n, "<|{{ item['role'] }}|>") && has(t, n, "<|begin_of_image|>")) return F_GLMEDGE;
    if (has(t, n, "<|user|>") && has(t, n, "<|endoftext|>")) return F_ZEPHYR;
    if (has(t, n, "bos_token + message['role']")) return F_MONARCH;
    if (has(t, n, "<start_of_turn>")) return F_GEMMA;
    if (has(t, n, "'\\n\\nAssistant: ' + eos_token")) return F_ORION;
    if (has(t, n, "GPT4 Correct ")) return F_OPENCHAT;
    if (has(t, n, "USER: ") && has(t, n, "ASSISTANT: ")) return has(t, n, "SYSTEM: ") ? F_VICUNA_ORCA : F_VICUNA;
    if (has(t, n, "### Instruction:") && has(t, n, "<|EOT|>")) return F_DEEPSEEK;
    if (has(t, n, "<|START_OF_TURN_TOKEN|>") && has(t, n, "<|USER_TOKEN|>")) return F_COMMAND_R;
    if (has(t, n, "<|start_header_id|>") && has(t, n, "<|end_header_id|>")) return F_LLAMA3;
    if (has(t, n, "[gMASK]sop")) return F_CHATGLM3;
    if (has(t, n, "<\xe7\x94\xa8\xe6\x88\xb7>")) return F_MINICPM;
    if (has(t, n, "'Assistant: ' + message['content'] + eos_token")) return F_DEEPSEEK2;
    if (has(t, n, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>") && has(t, n, "<\xef\xbd\x9cUser\xef\xbd\x9c>") &&
        has(t, n, "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"))
        return F_DEEPSEEK3;
    if (has(t, n, "[|system|]") && has(t, n, "[|assistant|]") && has(t, n, "[|endofturn|]"))
        return has(t, n, "[|tool|]") ? F_EXAONE4 : F_EXAONE3;
    if (has(t, n, "rwkv-world") || has(t, n, "{{- 'User: ' + message['content']|trim + '\\n\\n' -}}")) return F_RWKV_WORLD;
    if (has(t, n, "<|start_of_role|>")) return F_GRANITE;
    if (has(t, n, "<|role_start|>")) return F_MEGREZ;
    if (has(t, n, "<role>ASSISTANT</role>") && has(t, n, "'HUMAN'")) return F_BAILING;
    if (has(t, n, "<|header_start|>") && has(t, n, "<|header_end|>")) return F_LLAMA4;
    return -1;
}

const char *sl_chat_detect(const char *tmpl, size_t len) {
    int f = detect(tmpl, len);
    return f < 0 ? NULL : NAMES[f];
}

/* ---- creation ---------------------------------------------------------------------------- */
static int make(sl_chat **out, const char *tmpl, size_t len, const char *bos, const char *eos, bool override,
                char err[SL_ERRMSG]) {
    *out = NULL;
    sl_chat *c = calloc(1, sizeof *c);
    if (!c || !(c->bos = strdup(bos ? bos : "")) || !(c->eos = strdup(eos ? eos : ""))) {
        sl_chat_destroy(c);
        return sl_fail(err, SL_ENOMEM, "out of memory");
    }
    c->fmt = find_name(tmpl, len);
    bool jinja_like = has(tmpl, len, "{{") || has(tmpl, len, "{%");
    if (c->fmt < 0 && override && !jinja_like) {
        sl_chat_destroy(c);
        return sl_fail(err, SL_EINVAL, "unknown chat template name '%.*s' (built-in names include llama3, chatml, llama2-sys, "
                       "mistral-v7, gemma, phi3, zephyr, deepseek3; or give Jinja source)", (int)(len < 60 ? len : 60), tmpl);
    }
    if (c->fmt >= 0) {
        c->family = NAMES[c->fmt];
        *out = c;
        return 0;
    }
    char perr[SL_ERRMSG] = "";
    int rc = sl__jinja_parse(&c->jinja, tmpl, len, perr);
    int fam = detect(tmpl, len);
    c->family = fam >= 0 ? NAMES[fam] : NULL;
    if (rc) {
        if (fam < 0 || override) {
            sl_chat_destroy(c);
            return sl_fail(err, SL_EUNSUPPORTED, "%s; the template is not one of the known families either: give "
                           "--chat-template NAME (a built-in format, e.g. chatml or llama3)", perr);
        }
        SL_LOG(SL_LOG_WARN, "chat", "%s; rendering it as the built-in format '%s' it resembles", perr, NAMES[fam]);
        c->fmt = fam;
    }
    *out = c;
    return 0;
}

int sl_chat_create_str(sl_chat **out, const char *tmpl, size_t len, const char *bos, const char *eos, char err[SL_ERRMSG]) {
    return make(out, tmpl, len, bos, eos, false, err);
}

static char *token_text(const sl_tok *t, int32_t id) {
    size_t n = 0;
    const char *s = t && id >= 0 ? sl_tok_text(t, id, &n) : NULL;
    char *o = malloc(n + 1);
    if (o) {
        if (n) memcpy(o, s, n);
        o[n] = 0;
    }
    return o;
}

int sl_chat_create(sl_chat **out, const sl_gguf *g, const sl_tok *t, const char *override, char err[SL_ERRMSG]) {
    *out = NULL;
    const char *src = override;
    uint64_t len = override ? strlen(override) : 0;
    if (!override) {
        int rc = sl_gguf_get_str(g, "tokenizer.chat_template", &src, &len, err);
        if (rc == SL_ENOTFOUND)
            return sl_fail(err, SL_ENOTFOUND, "the model has no chat template (tokenizer.chat_template): give "
                           "--chat-template NAME (a built-in format, e.g. chatml or llama3) or Jinja source");
        if (rc) return rc;
    }
    char *bos = token_text(t, t ? sl_tok_bos(t) : -1), *eos = token_text(t, t ? sl_tok_eos(t) : -1);
    int rc = bos && eos ? make(out, src, (size_t)len, bos, eos, override != NULL, err) : sl_fail(err, SL_ENOMEM, "out of memory");
    free(bos);
    free(eos);
    return rc;
}

void sl_chat_destroy(sl_chat *c) {
    if (!c) return;
    sl__jinja_free(c->jinja);
    free(c->bos);
    free(c->eos);
    free(c);
}

const char *sl_chat_family(const sl_chat *c) { return c->family; }
bool sl_chat_is_jinja(const sl_chat *c) { return c->jinja != NULL && c->fmt < 0; }

/* ---- rendering --------------------------------------------------------------------------- */
static int builtin(const sl_chat *c, const sl_chat_msg *msgs, size_t n, bool add_ass, char **out, size_t *len, char err[SL_ERRMSG]) {
    obuf o = {0};
    puts_(&o, "");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) {
            free(o.s);
            return sl_fail(err, SL_EINVAL, "message %zu: role and content must be strings", i);
        }
    render_builtin(c->fmt, msgs, n, add_ass, &o);
    if (o.oom) {
        free(o.s);
        return sl_fail(err, SL_ENOMEM, "out of memory rendering the chat template");
    }
    *out = o.s, *len = o.n;
    return 0;
}

int sl_chat_render(const sl_chat *c, const sl_chat_msg *msgs, size_t n, bool add_generation_prompt, char **out,
                   size_t *len, char err[SL_ERRMSG]) {
    *out = NULL, *len = 0;
    if (!sl_chat_is_jinja(c)) return builtin(c, msgs, n, add_generation_prompt, out, len, err);
    sl__jin_input in = {.msgs = msgs, .n_msgs = n, .add_generation_prompt = add_generation_prompt, .bos = c->bos, .eos = c->eos};
    return sl__jinja_render(c->jinja, &in, out, len, err);
}

int sl_chat_render_json(const sl_chat *c, const char *json, size_t json_len, bool add_generation_prompt, char **out,
                        size_t *len, char err[SL_ERRMSG]) {
    *out = NULL, *len = 0;
    if (sl_chat_is_jinja(c)) {
        sl__jin_input in = {.json = json, .json_len = json_len, .add_generation_prompt = add_generation_prompt,
                            .bos = c->bos, .eos = c->eos};
        return sl__jinja_render(c->jinja, &in, out, len, err);
    }
    sl_chat_msg *msgs;
    size_t n;
    int rc = sl__jinja_json_msgs(json, json_len, &msgs, &n, err);
    if (rc) return rc;
    rc = builtin(c, msgs, n, add_generation_prompt, out, len, err);
    free(msgs);
    return rc;
}

/* ---- tokenization ------------------------------------------------------------------------ */
int sl_chat_encode(const sl_tok *t, const char *text, size_t len, sl_tok_ids *out) {
    size_t n;
    const char *s;
    if (sl_tok_add_bos(t) && sl_tok_bos(t) >= 0 && (s = sl_tok_text(t, sl_tok_bos(t), &n)) && n && n <= len &&
        !memcmp(text, s, n))
        text += n, len -= n;
    if (sl_tok_add_eos(t) && sl_tok_eos(t) >= 0 && (s = sl_tok_text(t, sl_tok_eos(t), &n)) && n && n <= len &&
        !memcmp(text + len - n, s, n))
        len -= n;
    return sl_tok_encode(t, text, len, SL_TOK_ADD_SPECIAL | SL_TOK_PARSE_SPECIAL, out);
}
