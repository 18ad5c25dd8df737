/* tok_encode.c: text -> ids (model-formats.md 4.4-4.6): added tokens are
 * split out of the raw text first, each remaining segment is normalised,
 * searched again for "normalized" added tokens, pre-tokenized into words
 * and each word goes through BPE (tok_bpe.c); the post-processor's ids go
 * around the result.  Segments are processed independently, as in HF, so
 * prefix rules apply per segment. */
#include "config.h"

#include "engine/tok-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Pieces of pre-tokenization: byte ranges of one buffer. */
typedef struct piece { size_t off, len; bool first; } piece;
typedef struct plist { tok_buf buf; piece *v; size_t n, cap; } plist;

/* One encode call's working state (the tokenizer itself is read-only). */
typedef struct enc {
    const eng_tokenizer *t;
    pcre2_match_data *md;
    tok_bpe_scratch *bpe;
    plist a, b;
    tok_ids *out;
    bool parse_special;
    const size_t *prot;      /* [2 * n_prot] raw-text ranges without pass 1 */
    size_t n_prot;
} enc;

/* A range of a match list: [start, end), is_match. */
typedef struct span { size_t start, end; bool match; } span;
typedef struct spans { span *v; size_t n, cap; } spans;

static int spans_push(spans *s, size_t start, size_t end, bool match)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        span *v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (span){ start, end, match };
    return 0;
}

/* Records bytes already in l->buf[off..off+len) as a piece. */
static int plist_add(plist *l, size_t off, size_t len, bool first)
{
    if (len == 0)
        return 0;      /* HF drops empty pieces */
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        piece *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (piece){ off, len, first };
    return 0;
}

static int plist_push(plist *l, const char *s, size_t len, bool first)
{
    size_t off = l->buf.len;
    int rc;
    if (len == 0)
        return 0;
    if ((rc = eng__buf_put(&l->buf, s, len)) < 0)
        return rc;
    return plist_add(l, off, len, first);
}

static void plist_reset(plist *l)
{
    l->n = 0;
    l->buf.len = 0;
}

static void plist_cleanup(plist *l)
{
    eng__buf_cleanup(&l->buf);
    free(l->v);
}

static size_t char_len(const char *s, size_t n)
{
    uint32_t cp;
    size_t k = eng__utf8_next(s, n, &cp);
    return k ? k : 1;
}

/* All non-overlapping regex matches of s as a covering list of spans
 * (tokenizers utils/pattern.rs).  An empty match still cuts the text; the
 * search then moves on by one character, as Oniguruma's find_iter does. */
static int regex_spans(enc *e, const tok_regex *re, const char *s, size_t n, spans *out)
{
    size_t pos = 0, prev = 0;
    int rc;

    out->n = 0;
    while (pos <= n) {
        int m = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (m == PCRE2_ERROR_NOMATCH)
            break;
        if (m < 0 && m != 0)
            return -EIO;   /* match limits: cannot happen for the known patterns */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > prev && (rc = spans_push(out, prev, ms, false)) < 0)
            return rc;
        if ((rc = spans_push(out, ms, me, true)) < 0)
            return rc;
        prev = me;
        if (me == ms) {
            if (me >= n)
                break;
            pos = me + char_len(s + me, n - me);
        } else {
            pos = me;
        }
    }
    if (prev < n && (rc = spans_push(out, prev, n, false)) < 0)
        return rc;
    return 0;
}

/* SplitDelimiterBehavior applied to a match list (normalizer.rs split). */
static void apply_behavior(spans *s, enum tok_split_behavior beh, bool invert)
{
    size_t w = 0;
    bool prev_match = false;

    if (invert)
        for (size_t i = 0; i < s->n; i++)
            s->v[i].match = !s->v[i].match;
    switch (beh) {
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < s->n; i++)
            s->v[i].match = false;
        return;
    case TOK_SPLIT_REMOVED:
        for (size_t i = 0; i < s->n; i++)
            if (!s->v[i].match)
                s->v[w++] = s->v[i];
        s->n = w;
        return;
    case TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < s->n; i++) {
            span x = s->v[i];
            if (x.match && !prev_match && w > 0)
                s->v[w - 1].end = x.end;
            else
                s->v[w++] = (span){ x.start, x.end, false };
            prev_match = x.match;
        }
        s->n = w;
        return;
    case TOK_SPLIT_MERGED_NEXT:
        /* Folded from the right, written back from the right. */
        w = s->n;
        for (size_t i = s->n; i-- > 0;) {
            span x = s->v[i];
            if (x.match && !prev_match && w < s->n)
                s->v[w].start = x.start;
            else
                s->v[--w] = (span){ x.start, x.end, false };
            prev_match = x.match;
        }
        memmove(s->v, s->v + w, (s->n - w) * sizeof(span));
        s->n -= w;
        return;
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < s->n; i++) {
            span x = s->v[i];
            if (x.match == prev_match && w > 0)
                s->v[w - 1].end = x.end;
            else
                s->v[w++] = (span){ x.start, x.end, false };
            prev_match = x.match;
        }
        s->n = w;
        return;
    }
}

static int emit_spans(plist *out, const char *s, const spans *sp, bool first)
{
    int rc;
    for (size_t i = 0; i < sp->n; i++)
        if ((rc = plist_push(out, s + sp->v[i].start, sp->v[i].end - sp->v[i].start,
                             first && sp->v[i].start == 0)) < 0)
            return rc;
    return 0;
}

static int pre_split(enc *e, const tok_pre *p, const char *s, size_t n, bool first,
                     plist *out, spans *sp)
{
    int rc = regex_spans(e, &p->re, s, n, sp);
    if (rc < 0)
        return rc;
    apply_behavior(sp, p->behavior, p->invert);
    return emit_spans(out, s, sp, first);
}

/* ByteLevel: optional prefix space, optional GPT-2 split, then every byte
 * to its stand-in character. */
static int pre_bytelevel(enc *e, const tok_pre *p, const char *s, size_t n, bool first,
                         plist *out, spans *sp, tok_buf *tmp)
{
    const eng_tokenizer *t = e->t;
    int rc;

    tmp->len = 0;
    if (p->add_prefix_space && (n == 0 || s[0] != ' ') && (rc = eng__buf_put(tmp, " ", 1)) < 0)
        return rc;
    if ((rc = eng__buf_put(tmp, s, n)) < 0)
        return rc;
    sp->n = 0;
    if (p->has_re) {
        if ((rc = regex_spans(e, &p->re, tmp->p, tmp->len, sp)) < 0)
            return rc;
    } else if (tmp->len > 0 && (rc = spans_push(sp, 0, tmp->len, false)) < 0) {
        return rc;
    }
    for (size_t i = 0; i < sp->n; i++) {
        size_t start = out->buf.len;
        for (size_t k = sp->v[i].start; k < sp->v[i].end; k++) {
            uint8_t b = (uint8_t)tmp->p[k];
            if ((rc = eng__buf_put(&out->buf, t->bl_enc[b], t->bl_enc_len[b])) < 0)
                return rc;
        }
        if ((rc = plist_add(out, start, out->buf.len - start,
                            first && sp->v[i].start == 0)) < 0)
            return rc;
    }
    return 0;
}

/* Metaspace: ' ' -> replacement, prepend by scheme, split before each
 * replacement (MergedWithNext). */
static int pre_metaspace(const tok_pre *p, const char *s, size_t n, bool first, plist *out,
                         spans *sp, tok_buf *tmp)
{
    int rc;
    bool starts = n >= p->repl_len && memcmp(s, p->repl, p->repl_len) == 0;

    tmp->len = 0;
    /* The prepend check looks at the text after ' ' was replaced. */
    if (!starts && n > 0 && s[0] == ' ')
        starts = true;
    if (!starts && (p->scheme == TOK_PREPEND_ALWAYS || (p->scheme == TOK_PREPEND_FIRST && first)))
        if ((rc = eng__buf_put(tmp, p->repl, p->repl_len)) < 0)
            return rc;
    for (size_t i = 0; i < n; i++) {
        rc = s[i] == ' ' ? eng__buf_put(tmp, p->repl, p->repl_len) : eng__buf_put(tmp, s + i, 1);
        if (rc < 0)
            return rc;
    }
    if (!p->split)
        return plist_push(out, tmp->p, tmp->len, first);
    sp->n = 0;
    size_t prev = 0;
    for (size_t i = 0; i + p->repl_len <= tmp->len;) {
        if (memcmp(tmp->p + i, p->repl, p->repl_len) == 0) {
            if ((i > prev && (rc = spans_push(sp, prev, i, false)) < 0) ||
                (rc = spans_push(sp, i, i + p->repl_len, true)) < 0)
                return rc;
            i += p->repl_len;
            prev = i;
        } else {
            i++;
        }
    }
    if (prev < tmp->len && (rc = spans_push(sp, prev, tmp->len, false)) < 0)
        return rc;
    apply_behavior(sp, TOK_SPLIT_MERGED_NEXT, false);
    return emit_spans(out, tmp->p, sp, first);
}

static int pretokenize(enc *e, spans *sp, tok_buf *tmp)
{
    int rc = 0;
    for (size_t k = 0; k < e->t->n_pres; k++) {
        const tok_pre *p = &e->t->pres[k];
        plist_reset(&e->b);
        for (size_t i = 0; i < e->a.n && rc == 0; i++) {
            const char *s = e->a.buf.p + e->a.v[i].off;
            size_t n = e->a.v[i].len;
            bool first = e->a.v[i].first;
            switch (p->type) {
            case TOK_PRE_SPLIT:     rc = pre_split(e, p, s, n, first, &e->b, sp); break;
            case TOK_PRE_BYTELEVEL: rc = pre_bytelevel(e, p, s, n, first, &e->b, sp, tmp); break;
            case TOK_PRE_METASPACE: rc = pre_metaspace(p, s, n, first, &e->b, sp, tmp); break;
            }
        }
        if (rc < 0)
            return rc;
        plist swap = e->a;
        e->a = e->b;
        e->b = swap;
    }
    return 0;
}

/* ---- normalizers ------------------------------------------------------ */

static int norm_replace(enc *e, const tok_norm *nm, const tok_buf *in, tok_buf *out)
{
    size_t pos = 0, prev = 0;
    int rc;

    out->len = 0;
    while (pos <= in->len) {
        int m = pcre2_match(nm->re.code, (PCRE2_SPTR)in->p, in->len, pos, PCRE2_NO_UTF_CHECK,
                            e->md, NULL);
        if (m == PCRE2_ERROR_NOMATCH)
            break;
        if (m < 0)
            return -EIO;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        if (ov[1] == ov[0]) {     /* an empty match replaces nothing */
            if (ov[0] >= in->len)
                break;
            pos = ov[0] + char_len(in->p + ov[0], in->len - ov[0]);
            continue;
        }
        if ((rc = eng__buf_put(out, in->p + prev, ov[0] - prev)) < 0 ||
            (rc = eng__buf_put(out, nm->str, strlen(nm->str))) < 0)
            return rc;
        pos = prev = ov[1];
    }
    return eng__buf_put(out, in->p + prev, in->len - prev);
}

/* Applies the normalizers to s[0..n) into *res (a or b of the pair). */
static int normalize(enc *e, const char *s, size_t n, tok_buf bufs[2], tok_buf **res)
{
    tok_buf *in = &bufs[0], *out = &bufs[1];
    int rc;

    in->len = 0;
    if ((rc = eng__buf_put(in, s, n)) < 0)
        return rc;
    for (size_t k = 0; k < e->t->n_norms; k++) {
        const tok_norm *nm = &e->t->norms[k];
        out->len = 0;
        switch (nm->type) {
        case TOK_NORM_PREPEND:
            if (in->len == 0)
                continue;
            if ((rc = eng__buf_put(out, nm->str, strlen(nm->str))) < 0 ||
                (rc = eng__buf_put(out, in->p, in->len)) < 0)
                return rc;
            break;
        case TOK_NORM_REPLACE:
            if ((rc = norm_replace(e, nm, in, out)) < 0)
                return rc;
            break;
        case TOK_NORM_UNICODE: {
            utf8proc_uint8_t *d = NULL;
            utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)in->p,
                                              (utf8proc_ssize_t)in->len, &d,
                                              (utf8proc_option_t)nm->utf8proc_opts);
            if (m < 0)
                return m == UTF8PROC_ERROR_NOMEM ? -ENOMEM : -EILSEQ;
            rc = eng__buf_put(out, d, (size_t)m);
            free(d);
            if (rc < 0)
                return rc;
            break;
        }
        }
        tok_buf *x = in;
        in = out;
        out = x;
    }
    *res = in;
    return 0;
}

/* ---- added tokens ----------------------------------------------------- */

static bool is_word_char(const char *s, size_t n)
{
    uint32_t cp;
    if (eng__utf8_next(s, n, &cp) == 0)
        return false;
    if (cp == '_')
        return true;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME) ||
           (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO) ||
           c == UTF8PROC_CATEGORY_PC;
}

static bool is_space_at(const char *s, size_t n, size_t *k)
{
    uint32_t cp;
    *k = eng__utf8_next(s, n, &cp);
    if (*k == 0)
        return false;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return (cp >= 9 && cp <= 13) || cp == 0x85 || c == UTF8PROC_CATEGORY_ZS ||
           c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

/* Start of the UTF-8 character that ends at s[end). */
static size_t prev_char(const char *s, size_t end)
{
    size_t i = end;
    while (i > 0 && ((uint8_t)s[i - 1] & 0xC0) == 0x80)
        i--;
    return i > 0 ? i - 1 : 0;
}

/* Longest added token of this pass at s[pos]; -1 if none.  Tokens are
 * tried by content length, longest first, through the content map. */
static int32_t added_at(const eng_tokenizer *t, const char *s, size_t n, size_t pos,
                        bool normalized_pass)
{
    int32_t best = -1;
    size_t best_len = 0;

    if (!t->added_first[(uint8_t)s[pos]])
        return -1;
    for (size_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        if (a->normalized != normalized_pass || a->len <= best_len || a->len > n - pos)
            continue;
        if (a->special && t->split_special)
            continue;
        if (memcmp(s + pos, a->content, a->len) == 0) {
            best = (int32_t)i;
            best_len = a->len;
        }
    }
    return best;
}

typedef int (*segment_fn)(enc *e, const char *s, size_t n, bool first);

/* Does raw text [a, b) touch a protected (user content) range? */
static bool protected_overlap(const enc *e, size_t a, size_t b)
{
    for (size_t i = 0; i < e->n_prot; i++)
        if (a < e->prot[2 * i + 1] && e->prot[2 * i] < b)
            return true;
    return false;
}

/* Splits s into added tokens (ids out) and text segments (to fn), with
 * the single_word / lstrip / rstrip rules (added_vocabulary.rs). */
static int split_added(enc *e, const char *s, size_t n, bool first, bool normalized_pass,
                       segment_fn fn)
{
    const eng_tokenizer *t = e->t;
    size_t seg = 0, pos = 0, k;
    int rc;

    while (e->parse_special && t->n_added > 0 && pos < n) {
        int32_t ai = added_at(t, s, n, pos, normalized_pass);
        if (ai < 0) {
            pos += char_len(s + pos, n - pos);
            continue;
        }
        const tok_added *a = &t->added[ai];
        size_t ms = pos, me = pos + a->len;
        bool word_ok = !a->single_word ||
            !((ms > 0 && is_word_char(s + prev_char(s, ms), n - prev_char(s, ms))) ||
              (me < n && is_word_char(s + me, n - me)));
        if (!word_ok || (!normalized_pass && protected_overlap(e, ms, me))) {
            pos += char_len(s + pos, n - pos);
            continue;
        }
        if (a->lstrip)
            while (ms > seg && is_space_at(s + prev_char(s, ms), n - prev_char(s, ms), &k))
                ms = prev_char(s, ms);
        if (a->rstrip)
            while (me < n && is_space_at(s + me, n - me, &k))
                me += k;
        if (ms > seg && (rc = fn(e, s + seg, ms - seg, first && seg == 0)) < 0)
            return rc;
        if ((rc = eng__ids_push(e->out, a->id)) < 0)
            return rc;
        pos = seg = me;
    }
    if (n > seg)
        return fn(e, s + seg, n - seg, first && seg == 0);
    return 0;
}

static int bpe_words(enc *e, const char *s, size_t n, bool first)
{
    int rc;
    plist_reset(&e->a);
    if ((rc = plist_push(&e->a, s, n, first)) < 0)
        return rc;
    spans sp = { 0 };
    tok_buf tmp = { 0 };
    rc = pretokenize(e, &sp, &tmp);
    free(sp.v);
    eng__buf_cleanup(&tmp);
    for (size_t i = 0; i < e->a.n && rc == 0; i++)
        rc = eng__bpe_word(e->t, e->bpe, e->a.buf.p + e->a.v[i].off, e->a.v[i].len, e->out);
    return rc;
}

static int text_segment(enc *e, const char *s, size_t n, bool first)
{
    tok_buf bufs[2] = { { 0 }, { 0 } };
    tok_buf *norm = NULL;
    int rc = normalize(e, s, n, bufs, &norm);
    if (rc == 0)
        rc = split_added(e, norm->p, norm->len, first, true, bpe_words);
    eng__buf_cleanup(&bufs[0]);
    eng__buf_cleanup(&bufs[1]);
    return rc;
}

static int push_all(tok_ids *out, const int32_t *v, size_t n)
{
    int rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = eng__ids_push(out, v[i])) < 0)
            return rc;
    return 0;
}

static int encode(const eng_tokenizer *t, const char *text, size_t len, bool add_special,
                  bool parse_special, const size_t *prot, size_t n_prot, int32_t **ids,
                  size_t *n_ids)
{
    tok_ids out = { 0 };
    enc e = { .t = t, .out = &out, .parse_special = parse_special, .prot = prot,
              .n_prot = n_prot };
    int rc;

    *ids = NULL;
    *n_ids = 0;
    if (!eng__utf8_valid(text, len))
        return -EILSEQ;
    e.md = pcre2_match_data_create(1, NULL);
    e.bpe = eng__bpe_scratch_new();
    if (e.md == NULL || e.bpe == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (add_special && (rc = push_all(&out, t->post_pre, t->n_post_pre)) < 0)
        goto out;
    if ((rc = split_added(&e, text, len, true, false, text_segment)) < 0)
        goto out;
    if (add_special && (rc = push_all(&out, t->post_post, t->n_post_post)) < 0)
        goto out;
    if (out.v == NULL && (out.v = malloc(sizeof(int32_t))) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    *ids = out.v;
    *n_ids = out.n;
    out.v = NULL;
out:
    free(out.v);
    pcre2_match_data_free(e.md);
    eng__bpe_scratch_free(e.bpe);
    plist_cleanup(&e.a);
    plist_cleanup(&e.b);
    return rc;
}

int eng_tokenizer_encode_ex(const eng_tokenizer *t, const char *text, size_t len,
                            bool add_special, bool parse_special, int32_t **ids, size_t *n_ids)
{
    return encode(t, text, len, add_special, parse_special, NULL, 0, ids, n_ids);
}

int eng__tok_encode_protected(const eng_tokenizer *t, const char *text, size_t len,
                              const size_t *prot, size_t n_prot, int32_t **ids, size_t *n_ids)
{
    return encode(t, text, len, false, true, prot, n_prot, ids, n_ids);
}

int eng_tokenizer_encode(const eng_tokenizer *t, const char *text, size_t len,
                         bool add_special, int32_t **ids, size_t *n_ids)
{
    return eng_tokenizer_encode_ex(t, text, len, add_special, true, ids, n_ids);
}
