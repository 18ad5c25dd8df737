/* tok-int.h: private to the tokenizer files (engine/tok_*.c, chat_*.c).
 *
 * The tokenizer is a pipeline of flattened stages, each parsed once from
 * tokenizer.json into a small tagged struct: normalizers, pre-tokenizers,
 * the BPE model, the post-processor (reduced to BOS/EOS id lists) and the
 * decoders.  Nothing here is visible outside engine/.
 */
#ifndef FP8D_ENG_TOK_INT_H
#define FP8D_ENG_TOK_INT_H

#include "engine/tokenizer.h"
#include "kernels/kn_base.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define ENG_TOK_LOG(lvl, ...) \
    do { if (kn_log_enabled(lvl)) kn_log((lvl), "tokenizer", __VA_ARGS__); } while (0)

/* Limits on untrusted files: far above any real tokenizer (Llama 3 has
 * 128,256 ids and a 9 MB tokenizer.json), low enough to refuse garbage. */
#define TOK_MAX_FILE_SIZE   (256u << 20)   /* bytes of one JSON file */
#define TOK_MAX_ID          (1 << 24)      /* ids are below this */
#define TOK_MAX_PIECE_LEN   4096           /* bytes of one vocab / added token */
#define TOK_MAX_PATTERN_LEN 8192           /* bytes of one regex */

/* ---- hash maps (tok_map.c) ------------------------------------------- */

/* String -> id.  Keys are borrowed: they must outlive the map. */
typedef struct tok_strmap {
    struct tok_strslot { const char *key; uint32_t len; uint32_t hash; int32_t val; } *slots;
    uint32_t cap;   /* power of two, or 0 */
    uint32_t n;
} tok_strmap;

int     eng__strmap_init(tok_strmap *m, size_t expect);
void    eng__strmap_cleanup(tok_strmap *m);
/* Inserts or overwrites.  Returns 0 or -ENOMEM. */
int     eng__strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val);
int32_t eng__strmap_get(const tok_strmap *m, const char *key, size_t len);  /* -1 */

/* (left id, right id) -> (rank, merged id). */
typedef struct tok_pairmap {
    struct tok_pairslot { uint64_t key; int32_t rank; int32_t id; } *slots;  /* key 0 = empty */
    uint32_t cap;
    uint32_t n;
} tok_pairmap;

int  eng__pairmap_init(tok_pairmap *m, size_t expect);
void eng__pairmap_cleanup(tok_pairmap *m);
int  eng__pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
bool eng__pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id);

/* ---- growable byte buffer (tok_utf8.c) -------------------------------- */

typedef struct tok_buf { char *p; size_t len, cap; } tok_buf;

int  eng__buf_put(tok_buf *b, const void *s, size_t n);   /* keeps p NUL-terminated */
void eng__buf_cleanup(tok_buf *b);

/* ---- UTF-8 and the GPT-2 byte table (tok_utf8.c) ---------------------- */

/* Length of the valid UTF-8 character at s[0..n), or 0 if it is invalid
 * (overlong, surrogate, > U+10FFFF, truncated). *cp receives it. */
size_t eng__utf8_next(const char *s, size_t n, uint32_t *cp);
bool   eng__utf8_valid(const char *s, size_t n);
size_t eng__utf8_put(char *dst, uint32_t cp);              /* 1..4 bytes */
/* Appends s with every maximal invalid subpart replaced by U+FFFD (the
 * rule of Rust's String::from_utf8_lossy, which HF decoders use). */
int    eng__utf8_lossy(tok_buf *out, const char *s, size_t n);

/* GPT-2 bytes_to_unicode: byte -> stand-in code point, and back (-1). */
uint32_t eng__byte_to_cp(uint8_t b);
int      eng__cp_to_byte(uint32_t cp);

/* ---- pipeline stages (tok_json.c parses them) ------------------------- */

typedef struct tok_regex {
    pcre2_code *code;      /* owned */
    bool jit;
} tok_regex;

enum tok_norm_type { TOK_NORM_PREPEND, TOK_NORM_REPLACE, TOK_NORM_UNICODE };
typedef struct tok_norm {
    enum tok_norm_type type;
    char *str;             /* PREPEND: prepend; REPLACE: content */
    char *pattern;         /* REPLACE with a String pattern (else NULL) */
    tok_regex re;          /* REPLACE with a Regex pattern */
    int utf8proc_opts;     /* UNICODE: NFC / NFKC / NFD / NFKD options */
} tok_norm;

enum tok_split_behavior {
    TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT, TOK_SPLIT_CONTIGUOUS
};
enum tok_pre_type { TOK_PRE_SPLIT, TOK_PRE_BYTELEVEL, TOK_PRE_METASPACE };
enum tok_prepend_scheme { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER };
typedef struct tok_pre {
    enum tok_pre_type type;
    tok_regex re;                    /* SPLIT; BYTELEVEL with use_regex (GPT-2) */
    bool has_re;
    enum tok_split_behavior behavior;
    bool invert;
    bool add_prefix_space;           /* BYTELEVEL */
    char repl[8];                    /* METASPACE replacement character, UTF-8 */
    size_t repl_len;
    enum tok_prepend_scheme scheme;  /* METASPACE */
    bool split;                      /* METASPACE */
} tok_pre;

enum tok_dec_type {
    TOK_DEC_BYTELEVEL, TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE,
    TOK_DEC_STRIP, TOK_DEC_METASPACE
};
typedef struct tok_dec {
    enum tok_dec_type type;
    char *pattern, *content;        /* REPLACE (String patterns only) */
    uint32_t strip_cp;              /* STRIP content character */
    size_t start, stop;             /* STRIP */
    char repl[8];                   /* METASPACE */
    size_t repl_len;
    enum tok_prepend_scheme scheme; /* METASPACE */
} tok_dec;

typedef struct tok_added {
    int32_t id;
    char *content;
    size_t len;
    bool special, normalized, lstrip, rstrip, single_word;
} tok_added;

struct eng_tokenizer {
    /* model: BPE */
    size_t n_ids;                 /* vocab size: max id + 1 */
    char **vocab_piece;           /* [n_ids] model vocab string or NULL (owned) */
    uint32_t *vocab_len;          /* [n_ids] */
    tok_strmap vocab;             /* model vocab string -> id */
    tok_pairmap merges;
    int32_t unk_id;               /* -1 */
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256];        /* "<0xHH>" ids for byte fallback, -1 */
    char *cont_prefix;            /* continuing_subword_prefix or NULL */
    char *eow_suffix;             /* end_of_word_suffix or NULL */
    char bl_enc[256][3];          /* GPT-2 byte -> stand-in char, UTF-8 */
    uint8_t bl_enc_len[256];
    int16_t bl_dec[0x144];        /* stand-in code point -> byte, -1 */

    /* added tokens */
    tok_added *added;             /* [n_added] */
    size_t n_added;
    int32_t *added_index;         /* [n_ids] index into added[], -1 */
    tok_strmap added_map;         /* content -> id */
    uint8_t added_first[256];     /* first bytes of added tokens (a filter) */
    bool split_special;           /* tokenizer_config split_special_tokens */
    bool cleanup_spaces;          /* tokenizer_config clean_up_tokenization_spaces */

    /* pipeline */
    tok_norm *norms;   size_t n_norms;
    tok_pre  *pres;    size_t n_pres;
    tok_dec  *decs;    size_t n_decs;
    bool has_decoder;             /* no decoder: tokens joined with " " */

    /* post-processor, reduced to ids around $A */
    int32_t *post_pre;  size_t n_post_pre;
    int32_t *post_post; size_t n_post_post;

    /* side files */
    int32_t bos_id;
    int32_t *eos_ids;   size_t n_eos;
    char *bos_text, *eos_text, *chat_template;
};

/* tok_json.c: stage parsers.  path names the file for messages. */
int eng__tok_parse_normalizer(eng_tokenizer *t, json_t *j, const char *path, char *err, size_t errlen);
int eng__tok_parse_pretokenizer(eng_tokenizer *t, json_t *j, const char *path, char *err, size_t errlen);
int eng__tok_parse_decoder(eng_tokenizer *t, json_t *j, const char *path, char *err, size_t errlen);
int eng__tok_parse_post(eng_tokenizer *t, json_t *j, const char *path, char *err, size_t errlen);
int eng__tok_regex_compile(tok_regex *re, const char *pattern, size_t len, bool literal,
                           const char *path, const char *field, char *err, size_t errlen);
void eng__tok_regex_cleanup(tok_regex *re);
void eng__tok_stages_cleanup(eng_tokenizer *t);

/* tok_bpe.c: BPE of one pre-tokenized word, appending ids. */
typedef struct tok_ids { int32_t *v; size_t n, cap; } tok_ids;
int eng__ids_push(tok_ids *ids, int32_t id);
typedef struct tok_bpe_scratch tok_bpe_scratch;
tok_bpe_scratch *eng__bpe_scratch_new(void);
void eng__bpe_scratch_free(tok_bpe_scratch *s);
int eng__bpe_word(const eng_tokenizer *t, tok_bpe_scratch *s, const char *w, size_t len, tok_ids *out);

/* tok_encode.c: encode with pass-1 added-token matching disabled inside
 * the byte ranges prot[2i]..prot[2i+1] (message contents of a chat). */
int eng__tok_encode_protected(const eng_tokenizer *t, const char *text, size_t len,
                              const size_t *prot, size_t n_prot, int32_t **ids, size_t *n_ids);

/* chat_template.c: render, also returning the content spans (malloc'd
 * pairs [start, end) of byte offsets; *spans may be NULL when none). */
int eng__chat_render_spans(const eng_chat_params *p, const eng_chat_msg *msgs, size_t n_msgs,
                           bool gen, char **text, size_t *len, size_t **spans,
                           size_t *n_spans, char *err, size_t errlen);

/* tok_config.c: tokenizer_config.json, generation_config.json, config.json,
 * chat_template.jinja. */
int eng__tok_load_side_files(eng_tokenizer *t, const char *dir, char *err, size_t errlen);
json_t *eng__tok_json_load(const char *path, bool required, char *err, size_t errlen, int *rc);

#endif
