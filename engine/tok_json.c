/* tok_json.c: parses the pipeline components of tokenizer.json
 * (normalizer, pre_tokenizer, decoder, post_processor) into the flat stage
 * arrays of eng_tokenizer.  Nested "Sequence"s are flattened here, so the
 * encoder and decoder only ever walk arrays.  Every type and field is
 * checked; a type we do not implement is refused by name (-ENOTSUP) rather
 * than ignored, because ignoring one silently gives wrong ids. */
#include "config.h"

#include "engine/tok-int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define MAX_DEPTH 8    /* nesting of Sequence inside Sequence */

static const char *jtype(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY:  return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL:   return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default:          return "null";
    }
}

/* Optional string member: *out NULL when absent or null. */
static int opt_str(json_t *o, const char *key, const char **out, size_t *len,
                   const char *path, const char *where, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (len) *len = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        kn_errf(err, errlen, "%s: %s.%s must be a string, not %s", path, where, key, jtype(v));
        return -EINVAL;
    }
    if (json_string_length(v) > TOK_MAX_PATTERN_LEN) {
        kn_errf(err, errlen, "%s: %s.%s is %zu bytes long (limit %d)", path, where, key,
                json_string_length(v), TOK_MAX_PATTERN_LEN);
        return -EINVAL;
    }
    *out = json_string_value(v);
    if (len) *len = json_string_length(v);
    return 0;
}

static int req_str(json_t *o, const char *key, const char **out, size_t *len,
                   const char *path, const char *where, char *err, size_t errlen)
{
    int rc = opt_str(o, key, out, len, path, where, err, errlen);
    if (rc == 0 && *out == NULL) {
        kn_errf(err, errlen, "%s: %s.%s is missing", path, where, key);
        return -EINVAL;
    }
    return rc;
}

static int opt_bool(json_t *o, const char *key, bool dflt, bool *out,
                    const char *path, const char *where, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = dflt;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        kn_errf(err, errlen, "%s: %s.%s must be a boolean, not %s", path, where, key, jtype(v));
        return -EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

static int opt_count(json_t *o, const char *key, size_t dflt, size_t *out,
                     const char *path, const char *where, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = dflt;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000) {
        kn_errf(err, errlen, "%s: %s.%s must be an integer in [0, 1000000]", path, where, key);
        return -EINVAL;
    }
    *out = (size_t)json_integer_value(v);
    return 0;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* A component object with a "type" string. */
static int comp_type(json_t *j, const char **type, const char *path, const char *where,
                     char *err, size_t errlen)
{
    if (!json_is_object(j)) {
        kn_errf(err, errlen, "%s: %s must be an object or null, not %s", path, where, jtype(j));
        return -EINVAL;
    }
    return req_str(j, "type", type, NULL, path, where, err, errlen);
}

/* The array member of a Sequence. */
static int seq_items(json_t *j, const char *key, json_t **arr, const char *path,
                     const char *where, char *err, size_t errlen)
{
    *arr = json_object_get(j, key);
    if (!json_is_array(*arr)) {
        kn_errf(err, errlen, "%s: %s.%s must be an array", path, where, key);
        return -EINVAL;
    }
    return 0;
}

/* "where.key[i]" for error messages; a too deep path is cut short (the
 * depth is limited, so this does not happen with MAX_DEPTH 8). */
static void sub_where(char *dst, size_t n, const char *where, const char *key, size_t i)
{
    int r = snprintf(dst, n, "%s.%s[%zu]", where, key, i);
    if (r < 0 || (size_t)r >= n)
        dst[n - 1] = '\0';
}

/* One component of a pipeline (normalizer, pre-tokenizer, decoder,
 * post-processor): parses j into t.  depth counts nested Sequences. */
typedef int (*comp_fn)(eng_tokenizer *t, json_t *j, const char *path, const char *where,
                       int depth, char *err, size_t errlen);

/* A "Sequence" component: fn over every item of j[key], one level deeper
 * (bounded, so a hostile file cannot recurse without end). */
static int seq_each(eng_tokenizer *t, json_t *j, const char *key, comp_fn fn,
                    const char *path, const char *where, int depth, char *err, size_t errlen)
{
    json_t *arr, *it;
    size_t i;
    int rc;

    if (depth >= MAX_DEPTH) {
        kn_errf(err, errlen, "%s: %s: Sequence nested too deeply", path, where);
        return -EINVAL;
    }
    if ((rc = seq_items(j, key, &arr, path, where, err, errlen)) < 0)
        return rc;
    json_array_foreach(arr, i, it) {
        char sub[256];
        sub_where(sub, sizeof(sub), where, key, i);
        if ((rc = fn(t, it, path, sub, depth + 1, err, errlen)) < 0)
            return rc;
    }
    return 0;
}

static int grow(void **arr, size_t n, size_t elem)
{
    void *p = realloc(*arr, (n + 1) * elem);
    if (p == NULL)
        return -ENOMEM;
    memset((char *)p + n * elem, 0, elem);
    *arr = p;
    return 0;
}

int eng__tok_regex_compile(tok_regex *re, const char *pattern, size_t len, bool literal,
                           const char *path, const char *field, char *err, size_t errlen)
{
    int ec;
    PCRE2_SIZE off;
    uint32_t opts = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;

    re->code = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &ec, &off, NULL);
    if (re->code == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        kn_errf(err, errlen, "%s: %s: regex does not compile at offset %zu: %s",
                path, field, (size_t)off, (const char *)msg);
        return -EINVAL;
    }
    /* JIT is an optimisation only: the interpreter gives the same matches. */
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

void eng__tok_regex_cleanup(tok_regex *re)
{
    pcre2_code_free(re->code);
    re->code = NULL;
}

/* {"String": s} or {"Regex": r}; *is_regex tells which. */
static int parse_pattern(json_t *o, const char **s, size_t *len, bool *is_regex,
                         const char *path, const char *where, char *err, size_t errlen)
{
    json_t *p = json_object_get(o, "pattern");
    int rc;

    if (!json_is_object(p)) {
        kn_errf(err, errlen, "%s: %s.pattern must be an object {\"String\"|\"Regex\": ...}",
                path, where);
        return -EINVAL;
    }
    char field[300];
    snprintf(field, sizeof(field), "%s.pattern", where);
    if ((rc = opt_str(p, "String", s, len, path, field, err, errlen)) < 0)
        return rc;
    *is_regex = false;
    if (*s != NULL)
        return 0;
    if ((rc = opt_str(p, "Regex", s, len, path, field, err, errlen)) < 0)
        return rc;
    *is_regex = true;
    if (*s == NULL) {
        kn_errf(err, errlen, "%s: %s.pattern has neither \"String\" nor \"Regex\"", path, where);
        return -EINVAL;
    }
    return 0;
}

/* ---- normalizers ------------------------------------------------------ */

static int norm_one(eng_tokenizer *t, json_t *j, const char *path, const char *where,
                    int depth, char *err, size_t errlen)
{
    const char *type, *s;
    size_t len;
    bool is_re;
    int rc;
    tok_norm n = { 0 };

    if (json_is_null(j))
        return 0;
    if ((rc = comp_type(j, &type, path, where, err, errlen)) < 0)
        return rc;
    if (strcmp(type, "Sequence") == 0)
        return seq_each(t, j, "normalizers", norm_one, path, where, depth, err, errlen);
    if (strcmp(type, "Prepend") == 0) {
        if ((rc = req_str(j, "prepend", &s, &len, path, where, err, errlen)) < 0)
            return rc;
        n.type = TOK_NORM_PREPEND;
        if ((n.str = dupn(s, len)) == NULL)
            return -ENOMEM;
    } else if (strcmp(type, "Replace") == 0) {
        const char *c;
        size_t clen;
        if ((rc = parse_pattern(j, &s, &len, &is_re, path, where, err, errlen)) < 0 ||
            (rc = req_str(j, "content", &c, &clen, path, where, err, errlen)) < 0)
            return rc;
        n.type = TOK_NORM_REPLACE;
        if ((n.str = dupn(c, clen)) == NULL)
            return -ENOMEM;
        if (len == 0) {
            kn_errf(err, errlen, "%s: %s.pattern is empty", path, where);
            free(n.str);
            return -EINVAL;
        }
        /* Both kinds go through PCRE2 (a String is a literal pattern), so
         * there is one replace loop. */
        char field[300];
        snprintf(field, sizeof(field), "%s.pattern", where);
        if ((rc = eng__tok_regex_compile(&n.re, s, len, !is_re, path, field, err, errlen)) < 0) {
            free(n.str);
            return rc;
        }
    } else if (strcmp(type, "NFC") == 0 || strcmp(type, "NFKC") == 0 ||
               strcmp(type, "NFD") == 0 || strcmp(type, "NFKD") == 0) {
        n.type = TOK_NORM_UNICODE;
        n.utf8proc_opts = UTF8PROC_STABLE |
                          (type[1] == 'F' && type[2] == 'C' ? UTF8PROC_COMPOSE : 0) |
                          (strcmp(type, "NFD") == 0 ? UTF8PROC_DECOMPOSE : 0) |
                          (strcmp(type, "NFKC") == 0 ? UTF8PROC_COMPOSE | UTF8PROC_COMPAT : 0) |
                          (strcmp(type, "NFKD") == 0 ? UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT : 0);
    } else if (strcmp(type, "Precompiled") == 0) {
        /* A SentencePiece charsmap; only an empty one (a no-op) is accepted. */
        json_t *m = json_object_get(j, "precompiled_charsmap");
        if (m == NULL || json_is_null(m) ||
            (json_is_string(m) && json_string_length(m) == 0))
            return 0;
        kn_errf(err, errlen, "%s: %s: a non-empty Precompiled normalizer is not supported",
                path, where);
        return -ENOTSUP;
    } else {
        kn_errf(err, errlen, "%s: %s: normalizer type \"%s\" is not supported", path, where,
                type);
        return -ENOTSUP;
    }
    if ((rc = grow((void **)&t->norms, t->n_norms, sizeof(*t->norms))) < 0) {
        free(n.str);
        eng__tok_regex_cleanup(&n.re);
        return rc;
    }
    t->norms[t->n_norms++] = n;
    return 0;
}

int eng__tok_parse_normalizer(eng_tokenizer *t, json_t *j, const char *path, char *err,
                              size_t errlen)
{
    return j == NULL ? 0 : norm_one(t, j, path, "normalizer", 0, err, errlen);
}

/* ---- pre-tokenizers --------------------------------------------------- */

/* GPT-2's split regex, built into ByteLevel when use_regex is true. */
static const char kGpt2Re[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int parse_scheme(json_t *j, enum tok_prepend_scheme *out, const char *path,
                        const char *where, char *err, size_t errlen)
{
    const char *s;
    bool aps;
    int rc;

    if ((rc = opt_str(j, "prepend_scheme", &s, NULL, path, where, err, errlen)) < 0)
        return rc;
    if (s == NULL) {
        /* Legacy files: add_prefix_space false means "never". */
        if ((rc = opt_bool(j, "add_prefix_space", true, &aps, path, where, err, errlen)) < 0)
            return rc;
        *out = aps ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
        return 0;
    }
    if (strcmp(s, "always") == 0)      *out = TOK_PREPEND_ALWAYS;
    else if (strcmp(s, "first") == 0)  *out = TOK_PREPEND_FIRST;
    else if (strcmp(s, "never") == 0)  *out = TOK_PREPEND_NEVER;
    else {
        kn_errf(err, errlen, "%s: %s.prepend_scheme \"%s\" is not always/first/never",
                path, where, s);
        return -EINVAL;
    }
    return 0;
}

/* Metaspace's replacement: exactly one character. */
static int parse_repl(json_t *j, char *repl, size_t *repl_len, const char *path,
                      const char *where, char *err, size_t errlen)
{
    const char *s;
    size_t len;
    uint32_t cp;
    int rc;

    if ((rc = opt_str(j, "replacement", &s, &len, path, where, err, errlen)) < 0)
        return rc;
    if (s == NULL) {
        s = "\xE2\x96\x81";    /* U+2581 LOWER ONE EIGHTH BLOCK */
        len = 3;
    }
    if (len == 0 || eng__utf8_next(s, len, &cp) != len) {
        kn_errf(err, errlen, "%s: %s.replacement must be exactly one character", path, where);
        return -EINVAL;
    }
    memcpy(repl, s, len);
    *repl_len = len;
    return 0;
}

static int pre_one(eng_tokenizer *t, json_t *j, const char *path, const char *where,
                   int depth, char *err, size_t errlen)
{
    const char *type;
    tok_pre p = { 0 };
    char field[300];
    int rc;

    if (json_is_null(j))
        return 0;
    if ((rc = comp_type(j, &type, path, where, err, errlen)) < 0)
        return rc;
    if (strcmp(type, "Sequence") == 0)
        return seq_each(t, j, "pretokenizers", pre_one, path, where, depth, err, errlen);
    if (strcmp(type, "Split") == 0) {
        static const struct { const char *name; enum tok_split_behavior b; } kBeh[] = {
            { "Removed", TOK_SPLIT_REMOVED }, { "Isolated", TOK_SPLIT_ISOLATED },
            { "MergedWithPrevious", TOK_SPLIT_MERGED_PREV },
            { "MergedWithNext", TOK_SPLIT_MERGED_NEXT }, { "Contiguous", TOK_SPLIT_CONTIGUOUS },
        };
        const char *s, *beh;
        size_t len, k;
        bool is_re;
        if ((rc = parse_pattern(j, &s, &len, &is_re, path, where, err, errlen)) < 0 ||
            (rc = req_str(j, "behavior", &beh, NULL, path, where, err, errlen)) < 0 ||
            (rc = opt_bool(j, "invert", false, &p.invert, path, where, err, errlen)) < 0)
            return rc;
        for (k = 0; k < sizeof(kBeh) / sizeof(kBeh[0]); k++)
            if (strcmp(beh, kBeh[k].name) == 0)
                break;
        if (k == sizeof(kBeh) / sizeof(kBeh[0])) {
            kn_errf(err, errlen, "%s: %s.behavior \"%s\" is unknown", path, where, beh);
            return -EINVAL;
        }
        p.type = TOK_PRE_SPLIT;
        p.behavior = kBeh[k].b;
        snprintf(field, sizeof(field), "%s.pattern", where);
        if ((rc = eng__tok_regex_compile(&p.re, s, len, !is_re, path, field, err, errlen)) < 0)
            return rc;
        p.has_re = true;
    } else if (strcmp(type, "ByteLevel") == 0) {
        bool use_re;
        if ((rc = opt_bool(j, "add_prefix_space", true, &p.add_prefix_space, path, where,
                           err, errlen)) < 0 ||
            (rc = opt_bool(j, "use_regex", true, &use_re, path, where, err, errlen)) < 0)
            return rc;
        p.type = TOK_PRE_BYTELEVEL;
        if (use_re) {
            snprintf(field, sizeof(field), "%s (GPT-2 regex)", where);
            if ((rc = eng__tok_regex_compile(&p.re, kGpt2Re, sizeof(kGpt2Re) - 1, false, path,
                                             field, err, errlen)) < 0)
                return rc;
            p.has_re = true;
        }
    } else if (strcmp(type, "Metaspace") == 0) {
        p.type = TOK_PRE_METASPACE;
        if ((rc = parse_repl(j, p.repl, &p.repl_len, path, where, err, errlen)) < 0 ||
            (rc = parse_scheme(j, &p.scheme, path, where, err, errlen)) < 0 ||
            (rc = opt_bool(j, "split", true, &p.split, path, where, err, errlen)) < 0)
            return rc;
    } else {
        kn_errf(err, errlen, "%s: %s: pre-tokenizer type \"%s\" is not supported", path,
                where, type);
        return -ENOTSUP;
    }
    if ((rc = grow((void **)&t->pres, t->n_pres, sizeof(*t->pres))) < 0) {
        eng__tok_regex_cleanup(&p.re);
        return rc;
    }
    t->pres[t->n_pres++] = p;
    return 0;
}

int eng__tok_parse_pretokenizer(eng_tokenizer *t, json_t *j, const char *path, char *err,
                                size_t errlen)
{
    return j == NULL ? 0 : pre_one(t, j, path, "pre_tokenizer", 0, err, errlen);
}

/* ---- decoders --------------------------------------------------------- */

static int dec_one(eng_tokenizer *t, json_t *j, const char *path, const char *where,
                   int depth, char *err, size_t errlen)
{
    const char *type;
    tok_dec d = { 0 };
    int rc;

    if (json_is_null(j))
        return 0;
    if ((rc = comp_type(j, &type, path, where, err, errlen)) < 0)
        return rc;
    t->has_decoder = true;
    if (strcmp(type, "Sequence") == 0)
        return seq_each(t, j, "decoders", dec_one, path, where, depth, err, errlen);
    if (strcmp(type, "ByteLevel") == 0) {
        d.type = TOK_DEC_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d.type = TOK_DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d.type = TOK_DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        const char *s, *c;
        size_t len, clen;
        bool is_re;
        if ((rc = parse_pattern(j, &s, &len, &is_re, path, where, err, errlen)) < 0 ||
            (rc = req_str(j, "content", &c, &clen, path, where, err, errlen)) < 0)
            return rc;
        if (is_re || len == 0) {
            kn_errf(err, errlen, "%s: %s: only a non-empty String pattern is supported in a "
                    "Replace decoder", path, where);
            return -ENOTSUP;
        }
        d.type = TOK_DEC_REPLACE;
        if ((d.pattern = dupn(s, len)) == NULL || (d.content = dupn(c, clen)) == NULL) {
            free(d.pattern);
            return -ENOMEM;
        }
    } else if (strcmp(type, "Strip") == 0) {
        const char *c;
        size_t clen;
        if ((rc = req_str(j, "content", &c, &clen, path, where, err, errlen)) < 0 ||
            (rc = opt_count(j, "start", 0, &d.start, path, where, err, errlen)) < 0 ||
            (rc = opt_count(j, "stop", 0, &d.stop, path, where, err, errlen)) < 0)
            return rc;
        if (clen == 0 || eng__utf8_next(c, clen, &d.strip_cp) != clen) {
            kn_errf(err, errlen, "%s: %s.content must be exactly one character", path, where);
            return -EINVAL;
        }
        d.type = TOK_DEC_STRIP;
    } else if (strcmp(type, "Metaspace") == 0) {
        d.type = TOK_DEC_METASPACE;
        if ((rc = parse_repl(j, d.repl, &d.repl_len, path, where, err, errlen)) < 0 ||
            (rc = parse_scheme(j, &d.scheme, path, where, err, errlen)) < 0)
            return rc;
    } else {
        kn_errf(err, errlen, "%s: %s: decoder type \"%s\" is not supported", path, where,
                type);
        return -ENOTSUP;
    }
    if ((rc = grow((void **)&t->decs, t->n_decs, sizeof(*t->decs))) < 0) {
        free(d.pattern);
        free(d.content);
        return rc;
    }
    t->decs[t->n_decs++] = d;
    return 0;
}

int eng__tok_parse_decoder(eng_tokenizer *t, json_t *j, const char *path, char *err,
                           size_t errlen)
{
    return j == NULL ? 0 : dec_one(t, j, path, "decoder", 0, err, errlen);
}

/* ---- post-processor --------------------------------------------------- */

static int push_id(int32_t **arr, size_t *n, int32_t id)
{
    int rc = grow((void **)arr, *n, sizeof(**arr));
    if (rc == 0)
        (*arr)[(*n)++] = id;
    return rc;
}

/* TemplateProcessing "single": SpecialToken items before/after $A. */
static int post_template(eng_tokenizer *t, json_t *j, const char *path, const char *where,
                         char *err, size_t errlen)
{
    json_t *single = json_object_get(j, "single");
    json_t *specials = json_object_get(j, "special_tokens");
    json_t *it;
    size_t i;
    bool seen_a = false;
    int rc;

    if (!json_is_array(single)) {
        kn_errf(err, errlen, "%s: %s.single must be an array", path, where);
        return -EINVAL;
    }
    if (specials != NULL && !json_is_object(specials)) {
        kn_errf(err, errlen, "%s: %s.special_tokens must be an object", path, where);
        return -EINVAL;
    }
    json_array_foreach(single, i, it) {
        json_t *st = json_object_get(it, "SpecialToken");
        json_t *sq = json_object_get(it, "Sequence");
        if (json_is_object(sq)) {
            seen_a = true;
            continue;
        }
        const char *name;
        json_t *idsj, *idj;
        size_t k;
        if (!json_is_object(st) || !json_is_string(json_object_get(st, "id"))) {
            kn_errf(err, errlen, "%s: %s.single[%zu] is neither {\"SpecialToken\": {\"id\": "
                    "...}} nor {\"Sequence\": ...}", path, where, i);
            return -EINVAL;
        }
        name = json_string_value(json_object_get(st, "id"));
        idsj = json_object_get(json_object_get(specials, name), "ids");
        if (!json_is_array(idsj)) {
            kn_errf(err, errlen, "%s: %s.special_tokens[\"%.64s\"].ids is missing or not an "
                    "array", path, where, name);
            return -EINVAL;
        }
        json_array_foreach(idsj, k, idj) {
            if (!json_is_integer(idj) || json_integer_value(idj) < 0 ||
                json_integer_value(idj) >= TOK_MAX_ID) {
                kn_errf(err, errlen, "%s: %s.special_tokens[\"%.64s\"].ids[%zu] is not an id "
                        "in [0, %d)", path, where, name, k, TOK_MAX_ID);
                return -EINVAL;
            }
            int32_t id = (int32_t)json_integer_value(idj);
            rc = seen_a ? push_id(&t->post_post, &t->n_post_post, id)
                        : push_id(&t->post_pre, &t->n_post_pre, id);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int post_one(eng_tokenizer *t, json_t *j, const char *path, const char *where,
                    int depth, char *err, size_t errlen)
{
    const char *type;
    int rc;

    if (json_is_null(j))
        return 0;
    if ((rc = comp_type(j, &type, path, where, err, errlen)) < 0)
        return rc;
    if (strcmp(type, "Sequence") == 0)
        return seq_each(t, j, "processors", post_one, path, where, depth, err, errlen);
    if (strcmp(type, "ByteLevel") == 0)
        return 0;      /* only adjusts offsets, which we do not report */
    if (strcmp(type, "TemplateProcessing") == 0)
        return post_template(t, j, path, where, err, errlen);
    kn_errf(err, errlen, "%s: %s: post-processor type \"%s\" is not supported", path, where,
            type);
    return -ENOTSUP;
}

int eng__tok_parse_post(eng_tokenizer *t, json_t *j, const char *path, char *err,
                        size_t errlen)
{
    return j == NULL ? 0 : post_one(t, j, path, "post_processor", 0, err, errlen);
}

void eng__tok_stages_cleanup(eng_tokenizer *t)
{
    for (size_t i = 0; i < t->n_norms; i++) {
        free(t->norms[i].str);
        free(t->norms[i].pattern);
        eng__tok_regex_cleanup(&t->norms[i].re);
    }
    for (size_t i = 0; i < t->n_pres; i++)
        eng__tok_regex_cleanup(&t->pres[i].re);
    for (size_t i = 0; i < t->n_decs; i++) {
        free(t->decs[i].pattern);
        free(t->decs[i].content);
    }
    free(t->norms);
    free(t->pres);
    free(t->decs);
    free(t->post_pre);
    free(t->post_post);
    t->norms = NULL; t->pres = NULL; t->decs = NULL;
    t->post_pre = NULL; t->post_post = NULL;
    t->n_norms = t->n_pres = t->n_decs = t->n_post_pre = t->n_post_post = 0;
}
