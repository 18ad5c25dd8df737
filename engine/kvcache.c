/* kvcache.c: eng_seq, one sequence's key/value cache.  Keys are stored
 * after RoPE, f32, [n_layers][n_ctx][n_kv_heads * head_size], or as E4M3
 * codes when the model runs QUANTIZE with the FP8 KV cache; the whole
 * context is allocated at creation so the forward pass never allocates. */
#include "config.h"

#include <stdlib.h>

#include "engine/fp8-int.h"

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
    if (eng__fp8_kv_cache(m)) {
        /* FP8 KV cache: one byte per element, scales fixed for its life */
        s->k8 = kn_alloc((size_t)c->n_layers * n_ctx * s->kv_dim);
        s->v8 = kn_alloc((size_t)c->n_layers * n_ctx * s->kv_dim);
        s->kv_scale = malloc(2 * (size_t)c->n_layers * sizeof(float));
        if (s->k8 == NULL || s->v8 == NULL || s->kv_scale == NULL) {
            eng_seq_free(s);
            return NULL;
        }
        eng__fp8_kv_scales(m, s->kv_scale);
        return s;
    }
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
    kn_free(s->k8);
    kn_free(s->v8);
    free(s->kv_scale);
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
