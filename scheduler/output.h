/* output.h — a sequence's text output: incremental detokenization and stop strings.
 *
 * Each generated token is decoded with the tokenizer's streaming decoder (special tokens
 * render as "", like vLLM's skip_special_tokens) and appended to the text not yet released.
 * Stop strings are matched on that text, across token boundaries: as soon as the text
 * contains one (of those completed by the same token: the earliest, then the longest), the
 * text is cut there, the stop string and everything after it are dropped, and the sequence is
 * over. So that no
 * released text ever has to be taken back, the last (longest stop string − 1) bytes stay
 * held back until the next token or the end (moved to a UTF-8 character boundary, so every
 * released piece is valid UTF-8 on its own when the decoder's output is). Without stop
 * strings every byte is released at once.
 *
 * The text of a token that ends the sequence by a stop token id (EOS included) is not added
 * (vLLM's default: include_stop_str_in_output off).
 *
 * Ownership: sl_output_init allocates, sl_output_deinit frees; the tokenizer and the stop
 * strings are borrowed and must outlive the output. Thread-safety: none (one sequence).
 */
#ifndef SL_OUTPUT_H
#define SL_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../models/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_output {
    sl_tok_stream st;
    const char *const *stop;     /* [n_stop], borrowed */
    int n_stop;
    size_t hold;                 /* bytes held back: longest stop string − 1 */
    char *buf;                   /* [cap] decoded text; [rel, n) not yet released */
    size_t n, rel, cap;
    char *piece;                 /* [sl_tok_stream_bound] one token's decoded bytes */
    bool ended;
} sl_output;

void sl_output_init(sl_output *o, const sl_tok *tok, const char *const *stop, int n_stop);
void sl_output_deinit(sl_output *o);

/* Feeds one generated token. add_text: whether its text counts (false for a token that stops
 * the sequence by id). last: the sequence ends with it (for whatever reason): everything held
 * is released. Returns the index of the stop string that ended the text, or -1; once one did
 * (or after last), the output is ended and further calls release nothing. *text and *len
 * give the bytes released by this call, valid until the next call. SL_ERANGE is not possible:
 * tokens outside the vocabulary decode as "". */
int sl_output_feed(sl_output *o, int32_t token, bool add_text, bool last, const char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
