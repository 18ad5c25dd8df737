/* tok_bpe.c: the BPE model applied to one pre-tokenized word
 * (model-formats.md 4.9), in HF's order: ignore_merges shortcut, one
 * symbol per character (byte fallback, unk, fuse_unk), then repeatedly the
 * lowest-rank adjacent pair, leftmost first, through a min-heap keyed by
 * (rank, position) whose stale entries are skipped when popped
 * (tokenizers word.rs merge_all).  O(n log n) per word. */
#include "config.h"

#include "engine/tok-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct tok_sym { int32_t id, prev, next, len; };      /* len 0: merged away */
struct tok_merge { int32_t rank, pos, id; };

struct tok_bpe_scratch {
    struct tok_sym *sym;     size_t n_sym, cap_sym;
    struct tok_merge *heap;  size_t n_heap, cap_heap;
    char *tmp;               size_t cap_tmp;
};

int eng__ids_push(tok_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

tok_bpe_scratch *eng__bpe_scratch_new(void)
{
    return calloc(1, sizeof(tok_bpe_scratch));
}

void eng__bpe_scratch_free(tok_bpe_scratch *s)
{
    if (s == NULL)
        return;
    free(s->sym);
    free(s->heap);
    free(s->tmp);
    free(s);
}

static int reserve(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (q == NULL)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int sym_push(tok_bpe_scratch *s, int32_t id, int32_t len)
{
    int rc = reserve((void **)&s->sym, &s->cap_sym, s->n_sym + 1, sizeof(*s->sym));
    if (rc < 0)
        return rc;
    int32_t i = (int32_t)s->n_sym++;
    s->sym[i] = (struct tok_sym){ id, i - 1, -1, len };
    if (i > 0)
        s->sym[i - 1].next = i;
    return 0;
}

static bool merge_less(const struct tok_merge *a, const struct tok_merge *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(tok_bpe_scratch *s, struct tok_merge m)
{
    int rc = reserve((void **)&s->heap, &s->cap_heap, s->n_heap + 1, sizeof(*s->heap));
    if (rc < 0)
        return rc;
    size_t i = s->n_heap++;
    while (i > 0 && merge_less(&m, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = m;
    return 0;
}

static struct tok_merge heap_pop(tok_bpe_scratch *s)
{
    struct tok_merge top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && merge_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!merge_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0)
        s->heap[i] = last;
    return top;
}

static int push_pair(const eng_tokenizer *t, tok_bpe_scratch *s, int32_t pos)
{
    int32_t rank, id, next = s->sym[pos].next;
    if (next < 0 || !eng__pairmap_get(&t->merges, s->sym[pos].id, s->sym[next].id, &rank, &id))
        return 0;
    return heap_push(s, (struct tok_merge){ rank, pos, id });
}

/* One character (with the subword prefix/suffix options) to symbols. */
static int add_char(const eng_tokenizer *t, tok_bpe_scratch *s, const char *c, size_t clen,
                    bool first, bool last, bool *prev_unk)
{
    size_t plen = (!first && t->cont_prefix) ? strlen(t->cont_prefix) : 0;
    size_t slen = (last && t->eow_suffix) ? strlen(t->eow_suffix) : 0;
    int32_t id;
    int rc;

    if ((rc = reserve((void **)&s->tmp, &s->cap_tmp, plen + clen + slen, 1)) < 0)
        return rc;
    memcpy(s->tmp, t->cont_prefix ? t->cont_prefix : "", plen);
    memcpy(s->tmp + plen, c, clen);
    memcpy(s->tmp + plen + clen, t->eow_suffix ? t->eow_suffix : "", slen);
    size_t n = plen + clen + slen;

    if ((id = eng__strmap_get(&t->vocab, s->tmp, n)) >= 0) {
        *prev_unk = false;
        return sym_push(s, id, 1);
    }
    if (t->byte_fallback) {
        size_t k;
        for (k = 0; k < n && t->byte_ids[(uint8_t)s->tmp[k]] >= 0; k++)
            ;
        if (k == n) {
            *prev_unk = false;
            for (k = 0; k < n; k++)
                if ((rc = sym_push(s, t->byte_ids[(uint8_t)s->tmp[k]], 1)) < 0)
                    return rc;
            return 0;
        }
    }
    if (t->unk_id < 0)
        return 0;      /* no unk token: HF drops the character */
    if (t->fuse_unk && *prev_unk) {
        s->sym[s->n_sym - 1].len++;
        return 0;
    }
    *prev_unk = true;
    return sym_push(s, t->unk_id, 1);
}

int eng__bpe_word(const eng_tokenizer *t, tok_bpe_scratch *s, const char *w, size_t len,
                  tok_ids *out)
{
    bool prev_unk = false;
    int32_t id;
    size_t i;
    int rc;

    if (len == 0)
        return 0;
    if (t->ignore_merges && (id = eng__strmap_get(&t->vocab, w, len)) >= 0)
        return eng__ids_push(out, id);
    s->n_sym = 0;
    s->n_heap = 0;
    for (i = 0; i < len;) {
        uint32_t cp;
        size_t k = eng__utf8_next(w + i, len - i, &cp);
        if (k == 0)
            k = 1;     /* cannot happen: input was validated; stay safe */
        if ((rc = add_char(t, s, w + i, k, i == 0, i + k == len, &prev_unk)) < 0)
            return rc;
        i += k;
    }
    for (i = 0; i + 1 < s->n_sym; i++)
        if ((rc = push_pair(t, s, (int32_t)i)) < 0)
            return rc;
    while (s->n_heap > 0) {
        struct tok_merge m = heap_pop(s);
        struct tok_sym *a = &s->sym[m.pos];
        int32_t rank, nid;
        if (a->len == 0 || a->next < 0)
            continue;
        struct tok_sym *b = &s->sym[a->next];
        /* Stale: one side was merged since this entry was pushed. */
        if (!eng__pairmap_get(&t->merges, a->id, b->id, &rank, &nid) || nid != m.id)
            continue;
        a->id = m.id;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (a->next >= 0)
            s->sym[a->next].prev = m.pos;
        if (a->prev >= 0 && (rc = push_pair(t, s, a->prev)) < 0)
            return rc;
        if ((rc = push_pair(t, s, m.pos)) < 0)
            return rc;
    }
    for (int32_t p = s->n_sym > 0 ? 0 : -1; p >= 0; p = s->sym[p].next)
        if ((rc = eng__ids_push(out, s->sym[p].id)) < 0)
            return rc;
    return 0;
}
