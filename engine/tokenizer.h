/* tokenizer.h: the Hugging Face "fast" tokenizer (tokenizer.json), stop
 * tokens and chat templates, without Python or a Jinja engine.
 *
 * eng_tokenizer is built from a model directory: tokenizer.json (required;
 * byte-level BPE as in GPT-2 / Llama 3 / Qwen2, or SentencePiece-style BPE
 * with byte fallback as in Llama 2 / Mistral), plus tokenizer_config.json
 * (BOS/EOS strings, add_bos_token, chat_template), generation_config.json
 * and config.json (eos_token_id, int or list) and chat_template.jinja when
 * present.  The spec is ../shared/docs/model-formats.md sections 4 and 5.
 *
 * Threads: a loaded tokenizer is read-only, so encode, decode, lookups and
 * eng_chat_render may run on any number of threads at once.  A streaming
 * detokenizer (eng_detok) belongs to one request: one thread at a time.
 * Ownership: arrays and strings handed out through `**` parameters are
 * malloc'd and the caller free()s them; `const` results are borrowed and
 * stay valid until the owning object is freed.
 */
#ifndef FP8D_ENG_TOKENIZER_H
#define FP8D_ENG_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eng_tokenizer eng_tokenizer;   /* opaque; engine/tok_load.c */

/* Loads model_dir/tokenizer.json and the optional side files above.  A
 * malformed file is refused with -EINVAL and a sentence in err naming the
 * file and the field; -ENOENT when tokenizer.json is missing; -ENOTSUP for
 * a component type we do not implement (named in err); -ENOMEM.
 * On success *out owns everything it needs (no pointer into the files). */
int  eng_tokenizer_load(eng_tokenizer **out, const char *model_dir, char *err, size_t errlen);
void eng_tokenizer_free(eng_tokenizer *tok);                 /* accepts NULL */

/* Encodes text[0..len) (UTF-8; -EILSEQ if it is not) into *ids (malloc'd,
 * caller free()s; may be non-NULL with *n_ids 0).  add_special: apply the
 * post-processor (BOS per tokenizer_config.json add_bos_token, else the
 * tokenizer.json TemplateProcessing).  Special-token text inside text is
 * parsed as the special token, as HF does.  Returns 0 or -ENOMEM/-EILSEQ. */
int  eng_tokenizer_encode(const eng_tokenizer *tok, const char *text, size_t len,
                          bool add_special, int32_t **ids, size_t *n_ids);

/* As eng_tokenizer_encode; parse_special false treats added-token text
 * ("<|im_start|>") as plain text: use it for user-supplied content. */
int  eng_tokenizer_encode_ex(const eng_tokenizer *tok, const char *text, size_t len,
                             bool add_special, bool parse_special,
                             int32_t **ids, size_t *n_ids);

/* Decodes ids into *text (malloc'd, NUL-terminated, *len bytes without the
 * NUL; always valid UTF-8: invalid byte runs become U+FFFD).  skip_special
 * drops added tokens marked special.  Ids outside the vocabulary are
 * dropped (as HF does).  Returns 0 or -ENOMEM. */
int  eng_tokenizer_decode(const eng_tokenizer *tok, const int32_t *ids, size_t n_ids,
                          bool skip_special, char **text, size_t *len);

/* As eng_tokenizer_decode, plus transformers' clean_up_tokenization_spaces
 * when cleanup is true (" ." -> ".", " n't" -> "n't", ...; model-formats.md
 * 4.11).  It corrupts text such as "x != y", so the server leaves it off;
 * it exists for bit-exact comparison with HF for files that ask for it
 * (eng_tokenizer_cleanup_default).  Streaming never applies it. */
int  eng_tokenizer_decode_ex(const eng_tokenizer *tok, const int32_t *ids, size_t n_ids,
                             bool skip_special, bool cleanup, char **text, size_t *len);

/* tokenizer_config.json clean_up_tokenization_spaces (false if absent). */
bool eng_tokenizer_cleanup_default(const eng_tokenizer *tok);

int32_t eng_tokenizer_bos(const eng_tokenizer *tok);                    /* -1 if none */

/* Stop ids (*ids borrowed): union of generation_config.json and config.json
 * eos_token_id, the tokenizer_config.json eos_token, and the end-of-turn
 * token of the detected chat format (<|eot_id|>, <|im_end|>, ...) when the
 * vocabulary has it.  Sorted, no duplicates. */
size_t  eng_tokenizer_eos(const eng_tokenizer *tok, const int32_t **ids);
bool    eng_tokenizer_is_eos(const eng_tokenizer *tok, int32_t id);

/* Number of ids: one more than the largest id in the vocab or added tokens. */
size_t  eng_tokenizer_vocab_size(const eng_tokenizer *tok);

/* The token string of id (added-token content, else the model vocab entry,
 * in its stored form, e.g. "Ġthe" or "▁the"); NULL for an id with no
 * token.  Borrowed. */
const char *eng_tokenizer_piece(const eng_tokenizer *tok, int32_t id);

/* Id of an exact token string (added tokens first, then the vocab); -1. */
int32_t eng_tokenizer_piece_id(const eng_tokenizer *tok, const char *piece, size_t len);

/* True for added tokens marked "special" (dropped by skip_special). */
bool    eng_tokenizer_is_special(const eng_tokenizer *tok, int32_t id);

/* Strings from tokenizer_config.json, borrowed; NULL when absent/null. */
const char *eng_tokenizer_bos_text(const eng_tokenizer *tok);
const char *eng_tokenizer_eos_text(const eng_tokenizer *tok);
const char *eng_tokenizer_chat_template(const eng_tokenizer *tok);

/* ---- Streaming detokenizer ------------------------------------------- */

/* Turns ids, pushed one at a time, into text, emitting only completed
 * UTF-8 characters (never half of one, never a U+FFFD for a byte sequence
 * that the next token may complete) and keeping SentencePiece leading
 * spaces that a token-by-token decode would lose.  The concatenation of
 * everything push and flush return equals eng_tokenizer_decode of all the
 * ids (HF's DecodeStream algorithm, model-formats.md 4.11).
 * Thread: one at a time; tok must outlive it. */
typedef struct eng_detok eng_detok;

int  eng_detok_new(eng_detok **out, const eng_tokenizer *tok, bool skip_special);
void eng_detok_free(eng_detok *d);                            /* accepts NULL */

/* Pushes one id; *text and *len receive the newly completed bytes (possibly
 * 0 bytes), borrowed until the next call on d.  Returns 0 or -ENOMEM. */
int  eng_detok_push(eng_detok *d, int32_t id, const char **text, size_t *len);

/* At the end of generation: whatever is still held back (an incomplete
 * character becomes U+FFFD, as in the full decode).  Resets d. */
int  eng_detok_flush(eng_detok *d, const char **text, size_t *len);

/* ---- Chat templates --------------------------------------------------- */

typedef struct eng_chat_msg {
    const char *role;      /* "system", "user", "assistant" */
    const char *content;   /* UTF-8, NUL-terminated */
} eng_chat_msg;

/* Formats we render by hand (model-formats.md 5.2).  Names, for
 * template_name: "llama3", "llama3.1", "chatml", "qwen3", "mistral"
 * (v0.1/v0.2 plain), "mistral-v1", "mistral-v3", "mistral-v3-tekken",
 * "mistral-v7", "llama2", "zephyr", "phi3", "gemma". */
typedef enum eng_chat_format {
    ENG_CHAT_UNKNOWN = 0,
    ENG_CHAT_LLAMA3,
    ENG_CHAT_LLAMA31,
    ENG_CHAT_CHATML,
    ENG_CHAT_QWEN3,
    ENG_CHAT_MISTRAL,
    ENG_CHAT_MISTRAL_V1,
    ENG_CHAT_MISTRAL_V3,
    ENG_CHAT_MISTRAL_V3_TEKKEN,
    ENG_CHAT_MISTRAL_V7,
    ENG_CHAT_LLAMA2,
    ENG_CHAT_ZEPHYR,
    ENG_CHAT_PHI3,
    ENG_CHAT_GEMMA,
    ENG_CHAT_FORMAT_COUNT
} eng_chat_format;

/* Format from a name above (ENG_CHAT_UNKNOWN if not one), and back. */
eng_chat_format eng_chat_format_from_name(const char *name);
const char     *eng_chat_format_name(eng_chat_format fmt);

/* Format from the Jinja text of a chat_template by substring rules (5.3);
 * ENG_CHAT_UNKNOWN when nothing matches or text is NULL. */
eng_chat_format eng_chat_detect(const char *template_text);

/* Everything a renderer needs; plain data (strings borrowed by the call). */
typedef struct eng_chat_params {
    const char *template_name;  /* overrides detection; NULL: detect */
    const char *template_text;  /* chat_template source, may be NULL */
    const char *bos_token;      /* NULL: "" */
    const char *eos_token;      /* NULL: "" */
    const char *date_string;    /* llama3.1 "Today Date"; NULL: "26 Jul 2024" */
    int enable_thinking;        /* qwen3: -1 unset, 0 false, 1 true */
} eng_chat_params;

void eng_chat_params_default(eng_chat_params *p);

/* Renders msgs with the format named by p->template_name, or detected from
 * p->template_text.  *text is malloc'd, NUL-terminated (caller frees).  The
 * result is meant for encoding with add_special false: the template writes
 * BOS itself where the real template does.  Errors: -EINVAL for an unknown
 * template name, a bad role or a role order the format forbids (err says
 * which message); -ENOTSUP when no name is given and the template text
 * matches no known format (err says to pass a template name). */
int eng_chat_render_params(const eng_chat_params *p, const eng_chat_msg *msgs, size_t n_msgs,
                           bool add_generation_prompt, char **text, size_t *len,
                           char *err, size_t errlen);

/* Renders with tok's template and encodes the result the way a server
 * should: add_special off (the template writes BOS where the real one
 * does), the template's own special tokens parsed, but special-token text
 * inside message contents encoded as plain text (a user cannot inject
 * "<|im_end|>"; model-formats.md 4.4).  For benign contents the ids equal
 * eng_tokenizer_encode(render, false).  *ids malloc'd, caller frees.
 * Errors as eng_chat_render_params, plus -EILSEQ for invalid UTF-8. */
int eng_chat_encode(const eng_tokenizer *tok, const eng_chat_msg *msgs, size_t n_msgs,
                    bool add_generation_prompt, const char *template_name,
                    int32_t **ids, size_t *n_ids, char *err, size_t errlen);

/* The same with the template text and BOS/EOS strings of tok;
 * template_name may be NULL. */
int eng_chat_render(const eng_tokenizer *tok, const eng_chat_msg *msgs, size_t n_msgs,
                    bool add_generation_prompt, const char *template_name,
                    char **text, size_t *len, char *err, size_t errlen);

#endif
