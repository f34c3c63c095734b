/* sse_check.h — checks one streamed completion (the dechunked body of a /v1/completions or
 * /v1/chat/completions response with stream and stream_options.include_usage) the way a strict
 * client reads it: every event is one `data: ` line of valid JSON (cJSON, a real parser), the
 * chunks belong to one completion, one choice 0 that finishes exactly once, then the usage
 * chunk, then `data: [DONE]` and nothing after it. Token count: completion_tokens equals
 * max_tokens when the finish is "length", is at most max_tokens when it is "stop" (never with
 * ignore_eos and no stop strings), and no choice has more text chunks than tokens.
 * Shared by test_load.c and test_nginx.c. */
#ifndef SL_TEST_SERVER_SSE_CHECK_H
#define SL_TEST_SERVER_SSE_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

/* SANITIZED: 1 in an AddressSanitizer build (memory limits do not apply there) */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Returns NULL when body is a whole, well-formed stream, else what is wrong (static buffer).
 * *text (if not NULL) gets the concatenated text, malloc'd. */
static const char *sse_check(const char *body, bool chat, int max_tokens, bool ignore_eos, char **text) {
    static _Thread_local char why[512]; /* test_nginx.c calls it from several threads */
    const char *want_obj = chat ? "chat.completion.chunk" : "text_completion";
    char id[128] = "";
    int n_choice_chunks = 0, n_text_chunks = 0, completion_tokens = -1;
    bool finished = false, usage_seen = false, done = false;
    const char *finish = NULL;
    size_t tcap = 1024, tlen = 0;
    char *t = malloc(tcap);
    t[0] = 0;
#define FAIL(...)                                                                                    \
    do {                                                                                             \
        snprintf(why, sizeof why, __VA_ARGS__);                                                      \
        goto fail;                                                                                   \
    } while (0)
    const char *p = body;
    cJSON *j = NULL;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        if (!end) FAIL("event %d not terminated by a blank line: \"%.80s\"", n_choice_chunks, p);
        if (done) FAIL("bytes after data: [DONE]: \"%.80s\"", p);
        if (strncmp(p, "data: ", 6)) FAIL("event is not a data line: \"%.80s\"", p);
        const char *d = p + 6;
        size_t dl = (size_t)(end - d);
        if (memchr(d, '\n', dl)) FAIL("event has more than one line: \"%.80s\"", p);
        p = end + 2;
        if (dl == 6 && !memcmp(d, "[DONE]", 6)) {
            done = true;
            continue;
        }
        const char *jend = NULL;
        char *copy = strndup(d, dl);
        j = cJSON_ParseWithOpts(copy, &jend, true);
        free(copy);
        if (!j || !cJSON_IsObject(j)) FAIL("not a JSON object: \"%.*s\"", (int)(dl < 200 ? dl : 200), d);
        if (cJSON_GetObjectItemCaseSensitive(j, "error")) FAIL("error event: \"%.*s\"", (int)(dl < 300 ? dl : 300), d);
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(j, "id");
        const cJSON *obj = cJSON_GetObjectItemCaseSensitive(j, "object");
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices");
        const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
        if (!cJSON_IsString(jid) || !cJSON_IsString(obj) || strcmp(obj->valuestring, want_obj) || !cJSON_IsArray(ch))
            FAIL("bad chunk head (id, object %s, choices): \"%.*s\"", want_obj, (int)(dl < 200 ? dl : 200), d);
        if (!id[0]) snprintf(id, sizeof id, "%s", jid->valuestring);
        else if (strcmp(id, jid->valuestring)) FAIL("chunk ids differ: %s and %s", id, jid->valuestring);
        if (usage_seen) FAIL("a chunk after the usage chunk");
        int nc = cJSON_GetArraySize(ch);
        if (nc == 0) {
            const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
            const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
            const cJSON *tt = cJSON_GetObjectItemCaseSensitive(usage, "total_tokens");
            if (!finished) FAIL("usage chunk before the finish");
            if (!cJSON_IsNumber(ct) || !cJSON_IsNumber(pt) || !cJSON_IsNumber(tt) ||
                tt->valueint != pt->valueint + ct->valueint || pt->valueint < 1)
                FAIL("bad usage: \"%.*s\"", (int)(dl < 300 ? dl : 300), d);
            completion_tokens = ct->valueint;
            usage_seen = true;
        } else {
            if (nc != 1) FAIL("%d choices in a chunk", nc);
            if (!cJSON_IsNull(usage)) FAIL("usage is not null on a choice chunk");
            if (finished) FAIL("a choice chunk after the finish");
            const cJSON *c0 = cJSON_GetArrayItem(ch, 0);
            const cJSON *idx = cJSON_GetObjectItemCaseSensitive(c0, "index");
            const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
            if (!cJSON_IsNumber(idx) || idx->valueint != 0) FAIL("choice index is not 0");
            const cJSON *piece;
            if (chat) {
                const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c0, "delta");
                if (!cJSON_IsObject(delta)) FAIL("chat chunk without delta");
                const cJSON *role = cJSON_GetObjectItemCaseSensitive(delta, "role");
                if ((n_choice_chunks == 0) != (role != NULL))
                    FAIL("the role delta must come first and once (chunk %d)", n_choice_chunks);
                if (role && (!cJSON_IsString(role) || strcmp(role->valuestring, "assistant"))) FAIL("role not assistant");
                piece = cJSON_GetObjectItemCaseSensitive(delta, "content");
                if (piece && !cJSON_IsString(piece)) FAIL("delta.content not a string");
                if (role) piece = NULL; /* the role chunk carries "" */
            } else {
                piece = cJSON_GetObjectItemCaseSensitive(c0, "text");
                if (!cJSON_IsString(piece)) FAIL("completion chunk without text");
            }
            if (piece && piece->valuestring[0]) {
                size_t k = strlen(piece->valuestring);
                while (tlen + k + 1 > tcap) t = realloc(t, tcap *= 2);
                memcpy(t + tlen, piece->valuestring, k + 1);
                tlen += k;
                n_text_chunks++;
            }
            if (cJSON_IsString(fr)) {
                finished = true;
                finish = !strcmp(fr->valuestring, "length") ? "length" : !strcmp(fr->valuestring, "stop") ? "stop" : NULL;
                if (!finish) FAIL("finish_reason \"%s\"", fr->valuestring);
            } else if (!cJSON_IsNull(fr)) {
                FAIL("finish_reason neither null nor a string");
            }
            n_choice_chunks++;
        }
        cJSON_Delete(j);
        j = NULL;
    }
    if (!done) FAIL("no data: [DONE] at the end (%d choice chunks, finished %d, usage %d)", n_choice_chunks, finished,
                    usage_seen);
    if (!usage_seen) FAIL("no usage chunk");
    if (!strcmp(finish, "length") && completion_tokens != max_tokens)
        FAIL("finish length with %d tokens, max_tokens %d", completion_tokens, max_tokens);
    if (!strcmp(finish, "stop") && (ignore_eos || completion_tokens > max_tokens))
        FAIL("finish stop with %d tokens, max_tokens %d, ignore_eos %d", completion_tokens, max_tokens, ignore_eos);
    if (n_text_chunks > completion_tokens) FAIL("%d text chunks for %d tokens", n_text_chunks, completion_tokens);
    if (text) *text = t;
    else free(t);
    return NULL;
fail:
    cJSON_Delete(j);
    free(t);
    if (text) *text = NULL;
    return why;
#undef FAIL
}

#endif
