/* tok_decode.c: ids -> text through the decoder chain
 * (model-formats.md 4.11), and the streaming detokenizer (HF's
 * DecodeStream: decode a short window of ids before and after the new one
 * and emit the difference only once it no longer ends in U+FFFD). */
#include "config.h"

#include "engine/tok-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char kFFFD[] = "\xEF\xBF\xBD";

/* A list of token strings: ranges of one buffer. */
typedef struct tlist { tok_buf buf; size_t *off, *len; size_t n, cap; } tlist;

static int tl_add(tlist *l, size_t off, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        size_t *o = realloc(l->off, cap * sizeof(*o));
        if (o == NULL)
            return -ENOMEM;
        l->off = o;
        size_t *n = realloc(l->len, cap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        l->len = n;
        l->cap = cap;
    }
    l->off[l->n] = off;
    l->len[l->n++] = len;
    return 0;
}

static int tl_push(tlist *l, const char *s, size_t len)
{
    size_t off = l->buf.len;
    int rc = eng__buf_put(&l->buf, s, len);
    return rc < 0 ? rc : tl_add(l, off, len);
}

static void tl_reset(tlist *l)
{
    l->n = 0;
    l->buf.len = 0;
}

static void tl_cleanup(tlist *l)
{
    eng__buf_cleanup(&l->buf);
    free(l->off);
    free(l->len);
}

#define TOK(l, i) ((l)->buf.p != NULL ? (l)->buf.p + (l)->off[i] : "")  /* only empty tokens */

/* ByteLevel: every token back through the byte table (a token with a
 * character outside it contributes its raw bytes), then lossy UTF-8; the
 * result is one string. */
static int dec_bytelevel(const eng_tokenizer *t, const tlist *in, tlist *out, tok_buf *tmp)
{
    int rc;
    tmp->len = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK(in, i);
        size_t n = in->len[i], start = tmp->len, k;
        bool all = true;
        for (size_t j = 0; j < n && all; j += k) {
            uint32_t cp;
            k = eng__utf8_next(s + j, n - j, &cp);
            if (k == 0 || cp >= 0x144 || t->bl_dec[cp] < 0) {
                all = false;
                break;
            }
            char b = (char)t->bl_dec[cp];
            if ((rc = eng__buf_put(tmp, &b, 1)) < 0)
                return rc;
        }
        if (!all) {
            tmp->len = start;
            if ((rc = eng__buf_put(tmp, s, n)) < 0)
                return rc;
        }
    }
    size_t off = out->buf.len;
    if ((rc = eng__utf8_lossy(&out->buf, tmp->p ? tmp->p : "", tmp->len)) < 0)
        return rc;
    return tl_add(out, off, out->buf.len - off);
}

static int dec_replace(const tok_dec *d, const tlist *in, tlist *out)
{
    size_t plen = strlen(d->pattern), clen = strlen(d->content);
    int rc;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK(in, i);
        size_t n = in->len[i], off = out->buf.len, j = 0;
        while (j < n) {
            if (j + plen <= n && memcmp(s + j, d->pattern, plen) == 0) {
                rc = eng__buf_put(&out->buf, d->content, clen);
                j += plen;
            } else {
                rc = eng__buf_put(&out->buf, s + j, 1);
                j++;
            }
            if (rc < 0)
                return rc;
        }
        if ((rc = tl_add(out, off, out->buf.len - off)) < 0)
            return rc;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xHH>" -> byte, or -1. */
static int byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* A run of byte tokens: its UTF-8 text if valid, else one U+FFFD per byte. */
static int flush_bytes(tlist *out, tok_buf *run)
{
    int rc = 0;
    if (run->len == 0)
        return 0;
    if (eng__utf8_valid(run->p, run->len))
        rc = tl_push(out, run->p, run->len);
    else
        for (size_t k = 0; k < run->len && rc == 0; k++)
            rc = tl_push(out, kFFFD, 3);
    run->len = 0;
    return rc;
}

/* *open is set when the last token is a byte token: the run it ends is
 * still open, and the next token may turn it invalid (then every byte of
 * it, the valid ones before included, becomes U+FFFD). */
static int dec_bytefallback(const tlist *in, tlist *out, tok_buf *run, bool *open)
{
    int rc;
    run->len = 0;
    if (in->n > 0 && byte_token(TOK(in, in->n - 1), in->len[in->n - 1]) >= 0)
        *open = true;
    for (size_t i = 0; i < in->n; i++) {
        int b = byte_token(TOK(in, i), in->len[i]);
        if (b >= 0) {
            char c = (char)b;
            if ((rc = eng__buf_put(run, &c, 1)) < 0)
                return rc;
            continue;
        }
        if ((rc = flush_bytes(out, run)) < 0 || (rc = tl_push(out, TOK(in, i), in->len[i])) < 0)
            return rc;
    }
    return flush_bytes(out, run);
}

static int dec_fuse(const tlist *in, tlist *out)
{
    size_t off = out->buf.len;
    int rc;
    for (size_t i = 0; i < in->n; i++)
        if ((rc = eng__buf_put(&out->buf, TOK(in, i), in->len[i])) < 0)
            return rc;
    return tl_add(out, off, out->buf.len - off);
}

/* keep_start: the first token is a fused window that does not begin the
 * text (streaming), so its leading characters are not the text's. */
static int dec_strip(const tok_dec *d, const tlist *in, tlist *out, bool keep_start)
{
    char c[4];
    size_t clen = eng__utf8_put(c, d->strip_cp);
    int rc;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK(in, i);
        size_t a = 0, b = in->len[i];
        for (size_t k = 0; k < (keep_start && i == 0 ? 0 : d->start) && a + clen <= b && memcmp(s + a, c, clen) == 0; k++)
            a += clen;
        for (size_t k = 0; k < d->stop && b >= a + clen && memcmp(s + b - clen, c, clen) == 0;
             k++)
            b -= clen;
        if ((rc = tl_push(out, s + a, b - a)) < 0)
            return rc;
    }
    return 0;
}

/* Metaspace: the replacement becomes ' ', except in the first token where
 * it is dropped unless prepend_scheme is "never" (tokenizers
 * decoders/metaspace.rs drops every replacement of token 0, not only the
 * leading one; we follow the library). */
static int dec_metaspace(const tok_dec *d, const tlist *in, tlist *out, size_t first_index)
{
    int rc;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK(in, i);
        size_t n = in->len[i], off = out->buf.len, j = 0;
        bool drop = i + first_index == 0 && d->scheme != TOK_PREPEND_NEVER;
        while (j < n) {
            if (j + d->repl_len <= n && memcmp(s + j, d->repl, d->repl_len) == 0) {
                rc = drop ? 0 : eng__buf_put(&out->buf, " ", 1);
                j += d->repl_len;
            } else {
                rc = eng__buf_put(&out->buf, s + j, 1);
                j++;
            }
            if (rc < 0)
                return rc;
        }
        if ((rc = tl_add(out, off, out->buf.len - off)) < 0)
            return rc;
    }
    return 0;
}

/* transformers' clean_up_tokenization: these replacements, in this
 * order, each over the whole string.  Never longer than the input. */
static void cleanup_spaces(char *s, size_t *len)
{
    static const char *const kRep[][2] = {
        { " .", "." }, { " ?", "?" }, { " !", "!" }, { " ,", "," }, { " ' ", "'" },
        { " n't", "n't" }, { " 'm", "'m" }, { " 's", "'s" }, { " 've", "'ve" },
        { " 're", "'re" },
    };
    for (size_t k = 0; k < sizeof(kRep) / sizeof(kRep[0]); k++) {
        size_t fl = strlen(kRep[k][0]), tl = strlen(kRep[k][1]), r = 0, w = 0;
        while (r < *len) {
            if (r + fl <= *len && memcmp(s + r, kRep[k][0], fl) == 0) {
                memmove(s + w, kRep[k][1], tl);
                w += tl;
                r += fl;
            } else {
                s[w++] = s[r++];
            }
        }
        *len = w;
        s[w] = '\0';
    }
}

bool eng_tokenizer_cleanup_default(const eng_tokenizer *t)
{
    return t->cleanup_spaces;
}

int eng_tokenizer_decode_ex(const eng_tokenizer *t, const int32_t *ids, size_t n_ids,
                            bool skip_special, bool cleanup, char **text, size_t *len)
{
    int rc = eng_tokenizer_decode(t, ids, n_ids, skip_special, text, len);
    if (rc == 0 && cleanup)
        cleanup_spaces(*text, len);
    return rc;
}

/* The full decode; *open (when not NULL) tells whether the text of the
 * last tokens may still change with the tokens after them (an unfinished
 * byte-fallback run).  mid: ids is a streaming window that does not begin
 * the text, so the decoders' start-of-text steps (Metaspace dropping the
 * first token's replacement, Strip's start on the fused text) are off. */
static int decode_ids(const eng_tokenizer *t, const int32_t *ids, size_t n_ids,
                      bool skip_special, char **text, size_t *len, bool *open, bool mid)
{
    bool open_ = false, fused = false;
    tlist a = { 0 }, b = { 0 };
    tok_buf tmp = { 0 }, res = { 0 };
    int rc = 0;

    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n_ids && rc == 0; i++) {
        const char *p = eng_tokenizer_piece(t, ids[i]);
        if (p == NULL || (skip_special && eng_tokenizer_is_special(t, ids[i])))
            continue;     /* unknown ids are dropped, as HF does */
        rc = tl_push(&a, p, strlen(p));
    }
    for (size_t k = 0; k < t->n_decs && rc == 0; k++) {
        const tok_dec *d = &t->decs[k];
        tl_reset(&b);
        switch (d->type) {
        case TOK_DEC_BYTELEVEL:    rc = dec_bytelevel(t, &a, &b, &tmp); break;
        case TOK_DEC_REPLACE:      rc = dec_replace(d, &a, &b); break;
        case TOK_DEC_BYTEFALLBACK: rc = dec_bytefallback(&a, &b, &tmp, &open_); break;
        case TOK_DEC_FUSE:         rc = dec_fuse(&a, &b); fused = true; break;
        case TOK_DEC_STRIP:        rc = dec_strip(d, &a, &b, mid && fused); break;
        case TOK_DEC_METASPACE:    rc = dec_metaspace(d, &a, &b, mid ? 1 : 0); break;
        }
        tlist x = a;
        a = b;
        b = x;
    }
    /* Join (with ' ' when the file has no decoder at all); the decoders
     * may have left invalid UTF-8 (a Replace inside a character), so the
     * result is repaired the same lossy way. */
    tmp.len = 0;
    for (size_t i = 0; i < a.n && rc == 0; i++) {
        if (i > 0 && !t->has_decoder)
            rc = eng__buf_put(&tmp, " ", 1);
        if (rc == 0)
            rc = eng__buf_put(&tmp, TOK(&a, i), a.len[i]);
    }
    if (rc == 0)
        rc = eng__utf8_lossy(&res, tmp.p ? tmp.p : "", tmp.len);
    if (rc == 0 && res.p == NULL)
        rc = eng__buf_put(&res, "", 0);
    tl_cleanup(&a);
    tl_cleanup(&b);
    eng__buf_cleanup(&tmp);
    if (rc < 0) {
        eng__buf_cleanup(&res);
        return rc;
    }
    *text = res.p;
    *len = res.len;
    if (open != NULL)
        *open = open_;
    return 0;
}

int eng_tokenizer_decode(const eng_tokenizer *t, const int32_t *ids, size_t n_ids,
                         bool skip_special, char **text, size_t *len)
{
    return decode_ids(t, ids, n_ids, skip_special, text, len, NULL, false);
}

/* ---- streaming -------------------------------------------------------- */

struct eng_detok {
    const eng_tokenizer *tok;
    bool skip_special;
    int32_t *ids;  size_t n_ids, cap_ids;   /* window: prefix ids + pending */
    size_t prefix_index;                    /* ids[0..prefix_index) decode to prefix */
    size_t window_start;                    /* ids emitted before ids[0] (0: text start) */
    char *prefix;  size_t prefix_len;
    char *out;                              /* last returned text (owned) */
};

int eng_detok_new(eng_detok **out, const eng_tokenizer *tok, bool skip_special)
{
    eng_detok *d = calloc(1, sizeof(*d));
    *out = d;
    if (d == NULL)
        return -ENOMEM;
    d->tok = tok;
    d->skip_special = skip_special;
    return 0;
}

void eng_detok_free(eng_detok *d)
{
    if (d == NULL)
        return;
    free(d->ids);
    free(d->prefix);
    free(d->out);
    free(d);
}

static bool ends_fffd(const char *s, size_t n)
{
    return n >= 3 && memcmp(s + n - 3, kFFFD, 3) == 0;
}

/* Hands out s[from..n) as the call's result (d->out keeps it alive). */
static int emit(eng_detok *d, const char *s, size_t from, size_t n, const char **text,
                size_t *len)
{
    char *o = malloc(n - from + 1);
    if (o == NULL)
        return -ENOMEM;
    memcpy(o, s + from, n - from);
    o[n - from] = '\0';
    free(d->out);
    d->out = o;
    *text = o;
    *len = n - from;
    return 0;
}

int eng_detok_push(eng_detok *d, int32_t id, const char **text, size_t *len)
{
    char *s = NULL;
    size_t n;
    bool open = false;
    int rc;

    *text = "";
    *len = 0;
    if (d->n_ids == d->cap_ids) {
        size_t cap = d->cap_ids ? d->cap_ids * 2 : 16;
        int32_t *v = realloc(d->ids, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        d->ids = v;
        d->cap_ids = cap;
    }
    d->ids[d->n_ids++] = id;
    if ((rc = decode_ids(d->tok, d->ids, d->n_ids, d->skip_special, &s, &n, &open,
                         d->window_start > 0)) < 0)
        return rc;
    /* Hold back while the window ends in a byte-fallback run that the next
     * token may still turn invalid (the whole run then becomes U+FFFD, its
     * valid characters included), while the new text is not longer (a
     * dropped special id) or ends in an incomplete character, and while it
     * no longer starts with the prefix (a decoder that looks across
     * tokens): what is emitted is never taken back, so it must already be
     * what the full decode has there. */
    if (open || n <= d->prefix_len || ends_fffd(s, n) ||
        memcmp(s, d->prefix ? d->prefix : "", d->prefix_len) != 0) {
        free(s);
        return 0;
    }
    rc = emit(d, s, d->prefix_len, n, text, len);
    free(s);
    if (rc < 0)
        return rc;
    /* Slide: the ids after the old prefix become the new prefix. */
    size_t keep = d->n_ids - d->prefix_index;
    memmove(d->ids, d->ids + d->prefix_index, keep * sizeof(*d->ids));
    d->window_start += d->prefix_index;
    d->n_ids = keep;
    d->prefix_index = keep;
    free(d->prefix);
    d->prefix = NULL;
    d->prefix_len = 0;
    return decode_ids(d->tok, d->ids, d->n_ids, d->skip_special, &d->prefix, &d->prefix_len,
                      NULL, d->window_start > 0);
}

int eng_detok_flush(eng_detok *d, const char **text, size_t *len)
{
    char *s = NULL;
    size_t n;
    int rc;

    *text = "";
    *len = 0;
    if ((rc = decode_ids(d->tok, d->ids, d->n_ids, d->skip_special, &s, &n, NULL,
                         d->window_start > 0)) < 0)
        return rc;
    size_t from = d->prefix_len;
    if (n < from || memcmp(s, d->prefix ? d->prefix : "", from) != 0) {
        /* Cannot happen with the decoders push knows about; give the rest
         * from where they agree, on a character boundary. */
        ENG_TOK_LOG(KN_LOG_DEBUG, "detok: window decode diverged from its prefix");
        from = 0;
        while (from < n && from < d->prefix_len && s[from] == d->prefix[from])
            from++;
        while (from > 0 && from < n && ((unsigned char)s[from] & 0xC0) == 0x80)
            from--;
    }
    if (n > from)
        rc = emit(d, s, from, n, text, len);
    free(s);
    d->n_ids = 0;
    d->prefix_index = 0;
    d->window_start = 0;
    free(d->prefix);
    d->prefix = NULL;
    d->prefix_len = 0;
    return rc;
}
