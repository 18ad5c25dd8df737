/* fuzz_tok.h: what every tokenizer-facing fuzz target checks on a loaded
 * tokenizer (fuzz_tok.c). */
#ifndef FP8D_FUZZ_TOK_H
#define FP8D_FUZZ_TOK_H

#include "engine/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
bool fuzz_utf8_valid(const char *s, size_t n);

/* Loads <srcdir>/rel as a tokenizer; aborts on failure (a harness fault). */
eng_tokenizer *fuzz_tok_load(const char *rel);

/* Encodes text[0..len) and checks the contracts of engine/tokenizer.h:
 * -EILSEQ exactly when text is not UTF-8, ids inside the vocabulary, the
 * decode valid UTF-8, the streaming detokenizer's output equal to the full
 * decode (with and without skip_special), and, when roundtrip is set,
 * decode(encode(text)) == text.  Aborts through FUZZ_CHECK. */
void fuzz_tok_exercise(const eng_tokenizer *tok, const char *text, size_t len,
                       bool add_special, bool parse_special, bool roundtrip);

/* The decode and streaming checks alone, on ids that need not be valid. */
void fuzz_tok_check_decode(const eng_tokenizer *tok, const int32_t *ids, size_t n_ids);

#endif
