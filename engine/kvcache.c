/* kvcache.c: eng_seq, one sequence's key/value cache.  Keys are stored
 * after RoPE, f32, [n_layers][n_ctx][n_kv_heads * head_size]; the whole
 * context is allocated at creation so the forward pass never allocates. */
#include "config.h"

#include <stdlib.h>

#include "engine/engine-int.h"

eng_seq *eng_seq_new(const eng_model *m, size_t n_ctx)
{
    const eng_model_config *c = &m->cfg;
    eng_seq *s;

    if (n_ctx == 0)
        n_ctx = (size_t)c->max_pos;
    /* Positions beyond max_position_embeddings are refused: see rope.c. */
    if (n_ctx > (size_t)c->max_pos)
        return NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return NULL;
    s->m = m;
    s->n_ctx = n_ctx;
    s->kv_dim = (size_t)c->n_kv_heads * c->head_size;
    s->k = kn_alloc((size_t)c->n_layers * n_ctx * s->kv_dim * sizeof(float));
    s->v = kn_alloc((size_t)c->n_layers * n_ctx * s->kv_dim * sizeof(float));
    if (s->k == NULL || s->v == NULL) {
        eng_seq_free(s);
        return NULL;
    }
    return s;
}

void eng_seq_free(eng_seq *s)
{
    if (s == NULL)
        return;
    kn_free(s->k);
    kn_free(s->v);
    free(s);
}

size_t eng_seq_len(const eng_seq *s)
{
    return s->len;
}

size_t eng_seq_ctx(const eng_seq *s)
{
    return s->n_ctx;
}

void eng_seq_truncate(eng_seq *s, size_t n)
{
    if (n < s->len)
        s->len = n;
}
