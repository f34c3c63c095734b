/* chat.h — chat templates: a conversation (system/user/assistant messages) → the prompt text the
 * model was trained on, as llama.cpp renders it.
 *
 * A GGUF carries its template as Jinja source in tokenizer.chat_template (Hugging Face's
 * tokenizer_config.json "chat_template"). sluice renders it two ways:
 *   1. Jinja: the template itself, run by a bounded interpreter of the Jinja subset chat
 *      templates use (chat_internal.h lists it), with Hugging Face's settings (trim_blocks,
 *      lstrip_blocks) and the variables messages, add_generation_prompt, bos_token, eos_token,
 *      plus raise_exception() and strftime_now(). The output is exactly the template's, BOS
 *      text included where the template writes it (sl_chat_encode drops it again when the
 *      tokenizer adds BOS itself, as llama.cpp does).
 *   2. Built-in formats, named as llama.cpp names them ("llama3", "chatml", "mistral-v7", ...;
 *      sl_chat_builtin_names lists them): the format written in C, rendering what llama.cpp's
 *      llama_chat_apply_template renders for that name (no BOS text: the tokenizer adds it).
 *      Used when asked for by name, and as the fallback for a template the interpreter cannot
 *      parse whose family is recognized by its distinctive substrings (sl_chat_detect, the way
 *      llama.cpp recognizes templates).
 * A template that is neither parseable nor recognized is an error unless an override is given.
 *
 * Thread-safety: a created sl_chat is immutable; any number of threads may render with it.
 */
#ifndef SL_CHAT_H
#define SL_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "../base/base.h"
#include "gguf.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One message; role and content are NUL-terminated UTF-8 ("system", "user", "assistant", or
 * any role the template knows, e.g. "tool"). */
typedef struct sl_chat_msg {
    const char *role;
    const char *content;
} sl_chat_msg;

typedef struct sl_chat sl_chat;

/* Builds the chat template of a model. override (may be NULL): a built-in name, or Jinja
 * source to use instead of the GGUF's. Otherwise tokenizer.chat_template is read from g.
 * bos_token / eos_token are the texts of t's BOS / EOS tokens ("" when none).
 * Errors: SL_ENOTFOUND (no template in the file and no override), SL_EUNSUPPORTED (a template
 * the interpreter cannot parse and whose family is not recognized), SL_EFORMAT (wrong value
 * type). err says which and suggests --chat-template. *out is freed with sl_chat_destroy. */
int sl_chat_create(sl_chat **out, const sl_gguf *g, const sl_tok *t, const char *override,
                   char err[SL_ERRMSG]);
/* Same from template text (a built-in name or Jinja source) and explicit BOS/EOS texts. */
int sl_chat_create_str(sl_chat **out, const char *tmpl, size_t len, const char *bos,
                       const char *eos, char err[SL_ERRMSG]);
void sl_chat_destroy(sl_chat *c);

/* The recognized family ("llama3", "chatml", ...; a built-in name) or NULL when unknown. */
const char *sl_chat_family(const sl_chat *c);
/* True when c renders through the Jinja interpreter, false for a built-in format. */
bool sl_chat_is_jinja(const sl_chat *c);

/* Renders msgs[0..n) into a malloc'd NUL-terminated *out (caller frees; length in *len).
 * add_generation_prompt: end with the header of an assistant turn. Errors: SL_EINVAL when the
 * template rejects the conversation (raise_exception, e.g. "roles must alternate") or fails
 * (a type error), SL_ENOMEM past the interpreter's limits; err says why. */
int sl_chat_render(const sl_chat *c, const sl_chat_msg *msgs, size_t n, bool add_generation_prompt,
                   char **out, size_t *len, char err[SL_ERRMSG]);
/* Same with the messages as a JSON array of objects (OpenAI's "messages": any fields, e.g.
 * content parts or tool_calls, reach a Jinja template as they are; built-in formats need string
 * role and content). SL_EFORMAT when json is not such an array. */
int sl_chat_render_json(const sl_chat *c, const char *json, size_t json_len, bool add_generation_prompt,
                        char **out, size_t *len, char err[SL_ERRMSG]);

/* Family of a Jinja template by its distinctive substrings (or a built-in name itself);
 * NULL when unknown. */
const char *sl_chat_detect(const char *tmpl, size_t len);
/* Built-in names, NULL-terminated. */
const char *const *sl_chat_builtin_names(void);

/* Tokenizes a rendered prompt as llama.cpp does: special-token text is parsed, BOS/EOS are
 * added as the metadata says, and a BOS (EOS) text that the template wrote at the start (end)
 * is dropped first when the tokenizer adds BOS (EOS) itself. Appends to out; 0 or SL_ENOMEM. */
int sl_chat_encode(const sl_tok *t, const char *text, size_t len, sl_tok_ids *out);

#ifdef __cplusplus
}
#endif
#endif
