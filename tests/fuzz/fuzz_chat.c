/* fuzz_chat.c — libFuzzer target for chat templates, which come from outside (a GGUF's
 * tokenizer.chat_template): the Jinja parser and interpreter, family detection, and the JSON
 * messages path. The input is the template source; a fixed conversation is rendered through
 * it, with and without the generation prompt, then as JSON. Any result is fine (most inputs
 * are rejected); a crash, a leak, undefined behaviour or a hang is not. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/chat.h"

static const sl_chat_msg conv[] = {
    {"system", "You are terse."},
    {"user", "Hi <|im_end|> {{ x }}"},
    {"assistant", "Hello."},
    {"user", "Bye \xe2\x9c\x93"},
};
static const char conv_json[] =
    "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
    "\"text\":\"a\"}]},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
    "{\"role\":\"user\",\"content\":\"b\"}]";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[SL_ERRMSG];
    sl_chat *c = NULL;
    (void)sl_chat_detect((const char *)data, size);
    if (sl_chat_create_str(&c, (const char *)data, size, "<s>", "</s>", err) != 0) return 0;
    for (int gen = 0; gen < 2; gen++) {
        char *out = NULL;
        size_t len = 0;
        if (sl_chat_render(c, conv, sizeof conv / sizeof conv[0], gen, &out, &len, err) == 0) {
            if (strlen(out) > len) __builtin_trap(); /* len counts the NUL-terminated text */
        }
        free(out);
    }
    char *out = NULL;
    size_t len = 0;
    if (sl_chat_render_json(c, conv_json, sizeof conv_json - 1, true, &out, &len, err) == 0) free(out);
    else free(out);
    sl_chat_destroy(c);
    return 0;
}
