/* tok_map.c: the two open-addressing hash maps of the tokenizer: token
 * string -> id (vocab, added tokens) and id pair -> merge (BPE ranks).
 * Linear probing, load factor at most 1/2, never shrinks, no deletion. */
#include "config.h"

#include "engine/tok-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t cap_for(size_t expect)
{
    uint32_t cap = 16;
    while (cap < expect * 2 + 1 && cap < (1u << 30))
        cap <<= 1;
    return cap;
}

int eng__strmap_init(tok_strmap *m, size_t expect)
{
    m->cap = cap_for(expect);
    m->n = 0;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    return m->slots ? 0 : -ENOMEM;
}

void eng__strmap_cleanup(tok_strmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static int strmap_grow(tok_strmap *m)
{
    tok_strmap g = { .cap = m->cap * 2 };
    if ((g.slots = calloc(g.cap, sizeof(*g.slots))) == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == NULL)
            continue;
        uint32_t j = m->slots[i].hash & (g.cap - 1);
        while (g.slots[j].key != NULL)
            j = (j + 1) & (g.cap - 1);
        g.slots[j] = m->slots[i];
    }
    g.n = m->n;
    free(m->slots);
    *m = g;
    return 0;
}

int eng__strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val)
{
    uint32_t h = fnv1a(key, len);
    int rc;

    if ((m->n + 1) * 2 > m->cap && (rc = strmap_grow(m)) < 0)
        return rc;
    for (uint32_t j = h & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        struct tok_strslot *s = &m->slots[j];
        if (s->key == NULL) {
            *s = (struct tok_strslot){ key, (uint32_t)len, h, val };
            m->n++;
            return 0;
        }
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            s->val = val;
            return 0;
        }
    }
}

int32_t eng__strmap_get(const tok_strmap *m, const char *key, size_t len)
{
    uint32_t h;

    if (m->cap == 0)
        return -1;
    h = fnv1a(key, len);
    for (uint32_t j = h & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        const struct tok_strslot *s = &m->slots[j];
        if (s->key == NULL)
            return -1;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s->val;
    }
}

/* Pair keys are (a+1, b+1) packed so that key 0 can mean "empty". */
static uint64_t pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
}

static uint32_t pair_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

int eng__pairmap_init(tok_pairmap *m, size_t expect)
{
    m->cap = cap_for(expect);
    m->n = 0;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    return m->slots ? 0 : -ENOMEM;
}

void eng__pairmap_cleanup(tok_pairmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static int pairmap_grow(tok_pairmap *m)
{
    tok_pairmap g = { .cap = m->cap * 2 };
    if ((g.slots = calloc(g.cap, sizeof(*g.slots))) == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == 0)
            continue;
        uint32_t j = pair_hash(m->slots[i].key) & (g.cap - 1);
        while (g.slots[j].key != 0)
            j = (j + 1) & (g.cap - 1);
        g.slots[j] = m->slots[i];
    }
    g.n = m->n;
    free(m->slots);
    *m = g;
    return 0;
}

int eng__pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t k = pair_key(a, b);
    int rc;

    if ((m->n + 1) * 2 > m->cap && (rc = pairmap_grow(m)) < 0)
        return rc;
    for (uint32_t j = pair_hash(k) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        struct tok_pairslot *s = &m->slots[j];
        if (s->key == 0) {
            *s = (struct tok_pairslot){ k, rank, id };
            m->n++;
            return 0;
        }
        if (s->key == k) {       /* a repeated pair: the later entry wins */
            s->rank = rank;
            s->id = id;
            return 0;
        }
    }
}

bool eng__pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id)
{
    uint64_t k = pair_key(a, b);

    if (m->cap == 0)
        return false;
    for (uint32_t j = pair_hash(k) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        const struct tok_pairslot *s = &m->slots[j];
        if (s->key == 0)
            return false;
        if (s->key == k) {
            *rank = s->rank;
            *id = s->id;
            return true;
        }
    }
}
