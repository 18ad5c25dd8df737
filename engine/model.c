/* model.c: eng_model_load: config, mapped weights bound by state-dict path
 * (model-formats.md §2.2), per-Linear records named like the state dict
 * (the FP8 hook points), and the model's lifetime.  Norm weights and
 * biases (small) are widened to f32 copies owned by the model.
 *
 * DESIGN (memory, issue 7): a weight is resident once.  A high-precision
 * Linear is packed at load into panels owned by the model and its mapped
 * pages are released; the mapping stays the source for re-packing,
 * widening and export, always behind a check that the file is unchanged
 * (eng__st_check).  While QUANTIZE runs a Linear from FP8 weights its
 * panels are freed (eng__packed_sync); an FP8 weight of the checkpoint
 * exists only as FP8.  The embedding is never read from the mapping: a
 * row comes from the tied lm_head's panels or from the file by pread(). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "engine/fp8-int.h"

#define ENG_ERR_MSG_(name, val, msg) case name: return msg;
const char *eng_strerror(int rc)
{
    switch (rc) {
    ENG_ERROR_LIST(ENG_ERR_MSG_)
    default: return kn_strerror(rc);
    }
}
#undef ENG_ERR_MSG_

void eng_model_opts_default(eng_model_opts *o)
{
    memset(o, 0, sizeof(*o));
}

/* Binding state: which tensors of the file have been claimed. */
typedef struct binder {
    eng_model *m;
    bool      *used;     /* [eng_st_count] */
    char      *err;
    size_t     errlen;
} binder;

static const eng_tensor *claim(binder *b, const char *name, int64_t d0, int64_t d1, bool optional,
                               int *rc)
{
    const eng_tensor *t = eng_st_find(b->m->st, name);
    int nd = d1 > 0 ? 2 : 1;
    *rc = 0;
    if (t == NULL) {
        if (!optional) {
            kn_errf(b->err, b->errlen, "%s: tensor \"%s\" is missing", b->m->cfg.arch_name, name);
            *rc = ENG_E_FORMAT;
        }
        return NULL;
    }
    b->used[t - eng_st_at(b->m->st, 0)] = true;
    if (t->n_dims != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        char want[48], have[48];
        if (nd == 2)
            snprintf(want, sizeof(want), "[%lld, %lld]", (long long)d0, (long long)d1);
        else
            snprintf(want, sizeof(want), "[%lld]", (long long)d0);
        if (t->n_dims == 2)
            snprintf(have, sizeof(have), "[%lld, %lld]", (long long)t->shape[0],
                     (long long)t->shape[1]);
        else if (t->n_dims == 1)
            snprintf(have, sizeof(have), "[%lld]", (long long)t->shape[0]);
        else
            snprintf(have, sizeof(have), "%d dims", t->n_dims);
        kn_errf(b->err, b->errlen, "%s: tensor \"%s\": expected shape %s, file has %s", t->file,
                name, want, have);
        *rc = ENG_E_FORMAT;
        return NULL;
    }
    if (t->dtype != ENG_DT_F32 && t->dtype != ENG_DT_BF16 && t->dtype != ENG_DT_F16) {
        kn_errf(b->err, b->errlen, "%s: tensor \"%s\": dtype %s is not supported here (F32, "
                "BF16, F16)", t->file, name, eng_dtype_name(t->dtype));
        *rc = ENG_E_UNSUPPORTED;
        return NULL;
    }
    return t;
}

static kn_wtype wtype_of(eng_dtype dt)
{
    return dt == ENG_DT_BF16 ? KN_W_BF16 : dt == ENG_DT_F16 ? KN_W_F16 : KN_W_F32;
}

/* A widened f32 copy of a 1-D tensor, owned by the model. */
static int bind_vec(binder *b, const char *name, int n, bool optional, const float **out)
{
    int rc;
    const eng_tensor *t = claim(b, name, n, 0, optional, &rc);
    float *v, **nb;
    *out = NULL;
    if (t == NULL)
        return rc;
    if ((v = malloc(sizeof(float) * (size_t)n)) == NULL)
        return -ENOMEM;
    nb = realloc(b->m->f32_bufs, (b->m->n_f32_bufs + 1) * sizeof(*nb));
    if (nb == NULL) {
        free(v);
        return -ENOMEM;
    }
    b->m->f32_bufs = nb;
    nb[b->m->n_f32_bufs++] = v;
    kn_widen(v, t->data, wtype_of(t->dtype), (size_t)n);
    *out = v;
    return 0;
}

static int bind_linear(binder *b, eng_linear *l, const char *prefix, int n_out, int n_in,
                       bool bias)
{
    char name[128];
    const eng_tensor *t;
    int rc;

    snprintf(l->name, sizeof(l->name), "%s", prefix);
    l->n_in = n_in;
    l->n_out = n_out;
    snprintf(name, sizeof(name), "%s.weight", prefix);
    t = eng_st_find(b->m->st, name);
    if (t != NULL && (t->dtype == ENG_DT_F8_E4M3 || t->dtype == ENG_DT_F8_E5M2) &&
        t->n_dims == 2 && t->shape[0] == n_out && t->shape[1] == n_in) {
        /* FP8 checkpoint: weights, scales and input scale (fp8_import.c). */
        b->used[t - eng_st_at(b->m->st, 0)] = true;
        if ((rc = eng__fp8_bind_linear(b->m, l, t, b->used, b->err, b->errlen)) < 0)
            return rc;
    } else {
        if ((t = claim(b, name, n_out, n_in, false, &rc)) == NULL)
            return rc;
        l->w = t->data;
        l->wtype = wtype_of(t->dtype);
    }
    l->src = t;
    if (bias) {
        snprintf(name, sizeof(name), "%s.bias", prefix);
        if ((rc = bind_vec(b, name, n_out, false, &l->bias)) < 0)
            return rc;
    }
    eng_linear **nl = realloc(b->m->linears, (b->m->n_linears + 1) * sizeof(*nl));
    if (nl == NULL)
        return -ENOMEM;
    b->m->linears = nl;
    nl[b->m->n_linears++] = l;
    return 0;
}

/* Output rows packed between two releases of the mapped pages read: a
 * multiple of KN_PANEL, so that each run is whole panels (a few MB). */
#define PACK_ROWS (64 * KN_PANEL)

/* Packs l from the mapping (after checking that its file is unchanged),
 * a run of panels at a time, releasing the mapped pages each run read:
 * the largest matrix (a tied lm_head) is never resident twice. */
static int pack_one(eng_model *m, eng_linear *l, char *err, size_t errlen)
{
    size_t N = (size_t)l->n_out, K = (size_t)l->n_in, esz = l->wtype == KN_W_F32 ? 4 : 2;
    size_t sz = kn_packed_size(l->wtype, N, K);
    int rc;

    if ((rc = eng__st_check(m->st, l->src, err, errlen)) < 0)
        return rc;
    if ((l->packed = kn_alloc(sz)) == NULL) {
        kn_errf(err, errlen, "%s: out of memory packing %zu bytes", l->name, sz);
        return -ENOMEM;
    }
    /* panels are independent: rows [n, n + r) land at panel n / KN_PANEL */
    for (size_t n = 0; n < N; n += PACK_ROWS) {
        size_t r = N - n < PACK_ROWS ? N - n : PACK_ROWS;
        kn_pack_weights((char *)l->packed + n * K * esz, (const char *)l->w + n * K * esz,
                        l->wtype, r, K);
        eng__st_release_range(m->st, l->src, n * K * esz, r * K * esz);
    }
    eng__st_release(m->st, l->src);   /* the pages the runs' edges shared */
    return 0;
}

/* Whether l computes from FP8 weights in mode (forward.c then never reads
 * its panels: fp8_linear.c takes it). */
static bool runs_fp8(const eng_linear *l, qt_mode mode)
{
    const eng_fp8lin *fl = l->fp8;
    return l->w == NULL || (mode == QT_MODE_QUANTIZE && fl != NULL && fl->w8 != NULL);
}

static void drop_packed(eng_model *m, qt_mode mode)
{
    for (size_t i = 0; i < m->n_linears; i++) {
        eng_linear *l = m->linears[i];
        if (l->packed != NULL && runs_fp8(l, mode)) {
            kn_free(l->packed);
            l->packed = NULL;
        }
    }
}

int eng__packed_sync(eng_model *m, qt_mode mode, char *err, size_t errlen)
{
    qt_mode cur = m->fp8 != NULL ? m->fp8->mode : QT_MODE_OFF;
    int rc;

    if (m->ops->linear_packed == NULL)
        return 0;
    for (size_t i = 0; i < m->n_linears; i++) {
        eng_linear *l = m->linears[i];
        if (l->packed == NULL && !runs_fp8(l, mode) && (rc = pack_one(m, l, err, errlen)) < 0) {
            /* the copies made above are exactly those cur does not use */
            drop_packed(m, cur);
            return rc;
        }
    }
    drop_packed(m, mode);
    return 0;
}

/* f32(code) * scale per run of KN_FP8W_BLOCK columns (one scale per run
 * for every scale kind): the references' weight-only arithmetic, one f32
 * product per element. */
static int widen_fp8(const eng_linear *l, float *w, char *err, size_t errlen)
{
    const eng_fp8lin *fl = l->fp8;
    size_t N = (size_t)l->n_out, K = (size_t)l->n_in;
    uint8_t *codes;

    if (fl == NULL || fl->w8 == NULL) {
        kn_errf(err, errlen, "%s: the FP8 weight is not bound", l->name);
        return -EINVAL;
    }
    if ((codes = malloc(N * K)) == NULL) {
        kn_errf(err, errlen, "%s: out of memory decoding %zu FP8 weights", l->name, N * K);
        return -ENOMEM;
    }
    kn_fp8w_unpack(fl->w8, codes);
    for (size_t n = 0; n < N; n++)
        for (size_t k = 0; k < K; k += KN_FP8W_BLOCK) {
            size_t len = K - k < KN_FP8W_BLOCK ? K - k : KN_FP8W_BLOCK;
            kn_active()->fp8_to_f32(w + n * K + k, codes + n * K + k, len,
                                    kn_fp8w_format(fl->w8), kn_fp8w_scale_at(fl->w8, n, k));
        }
    free(codes);
    return 0;
}

int eng__linear_widen(const eng_model *m, const eng_linear *l, float **out, char *err,
                      size_t errlen)
{
    size_t n = (size_t)l->n_out * (size_t)l->n_in;
    float *w;
    int rc = 0;

    *out = NULL;
    if (l->w != NULL && (rc = eng__st_check(m->st, l->src, err, errlen)) < 0)
        return rc;
    if ((w = malloc(n * sizeof(float))) == NULL) {
        kn_errf(err, errlen, "%s: out of memory widening %zu weights", l->name, n);
        return -ENOMEM;
    }
    if (l->w == NULL) {
        rc = widen_fp8(l, w, err, errlen);
    } else {
        kn_widen(w, l->w, l->wtype, n);
        eng__st_release(m->st, l->src);
    }
    if (rc < 0) {
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void eng__heap_trim(void)
{
#ifdef __GLIBC__
    (void)malloc_trim(0);   /* its result only says whether anything was returned */
#endif
}

int eng__embed_row(eng_model *m, int32_t tok, float *dst, char *err, size_t errlen)
{
    size_t d = (size_t)m->cfg.dim, esz = m->embed_type == KN_W_F32 ? 4 : 2;
    int rc;

    /* Tied: the same bytes, resident already (a gather of d values). */
    if (m->cfg.tie_embeddings && m->lm_head.packed != NULL) {
        kn_packed_row(dst, m->lm_head.packed, m->lm_head.wtype, d, (size_t)tok);
        return 0;
    }
    if ((rc = eng__st_read(m->st, m->embed_t, (size_t)tok * d * esz, m->embed_row, d * esz,
                           err, errlen)) < 0)
        return rc;
    kn_widen(dst, m->embed_row, m->embed_type, d);
    return 0;
}

static int bind_layer(binder *b, int i)
{
    eng_model *m = b->m;
    const eng_model_config *c = &m->cfg;
    eng_layer *L = &m->layers[i];
    int qd = c->n_heads * c->head_size, kvd = c->n_kv_heads * c->head_size, rc;
    char p[96], n[128];

#define PFX(s) (snprintf(p, sizeof(p), "model.layers.%d.%s", i, s), p)
#define NAM(s) (snprintf(n, sizeof(n), "model.layers.%d.%s", i, s), n)
    if ((rc = bind_vec(b, NAM("input_layernorm.weight"), c->dim, false, &L->attn_norm)) < 0 ||
        (rc = bind_vec(b, NAM("post_attention_layernorm.weight"), c->dim, false,
                       &L->ffn_norm)) < 0 ||
        (rc = bind_linear(b, &L->q, PFX("self_attn.q_proj"), qd, c->dim, c->attn_bias)) < 0 ||
        (rc = bind_linear(b, &L->k, PFX("self_attn.k_proj"), kvd, c->dim, c->attn_bias)) < 0 ||
        (rc = bind_linear(b, &L->v, PFX("self_attn.v_proj"), kvd, c->dim, c->attn_bias)) < 0 ||
        (rc = bind_linear(b, &L->o, PFX("self_attn.o_proj"), c->dim, qd, c->attn_out_bias)) < 0 ||
        (rc = bind_linear(b, &L->gate, PFX("mlp.gate_proj"), c->hidden_dim, c->dim,
                          c->mlp_bias)) < 0 ||
        (rc = bind_linear(b, &L->up, PFX("mlp.up_proj"), c->hidden_dim, c->dim, c->mlp_bias)) < 0 ||
        (rc = bind_linear(b, &L->down, PFX("mlp.down_proj"), c->dim, c->hidden_dim,
                          c->mlp_bias)) < 0)
        return rc;
    if (c->qk_norm &&
        ((rc = bind_vec(b, NAM("self_attn.q_norm.weight"), c->head_size, false, &L->q_norm)) < 0 ||
         (rc = bind_vec(b, NAM("self_attn.k_norm.weight"), c->head_size, false, &L->k_norm)) < 0))
        return rc;
#undef PFX
#undef NAM
    L->window = c->layer_sliding[i] ? c->sliding_window : 0;
    return 0;
}

/* Old conversions saved RoPE buffers; they are derived, never weights. */
static bool ignorable(const char *name)
{
    return strstr(name, ".rotary_emb.") != NULL;
}

static int bind_all(eng_model *m, char *err, size_t errlen)
{
    const eng_model_config *c = &m->cfg;
    binder b = {m, NULL, err, errlen};
    const eng_tensor *t;
    int rc;

    if ((b.used = calloc(eng_st_count(m->st) + 1, 1)) == NULL)
        return -ENOMEM;
    if ((m->layers = calloc((size_t)c->n_layers, sizeof(*m->layers))) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if ((t = claim(&b, "model.embed_tokens.weight", c->vocab_size, c->dim, false, &rc)) == NULL)
        goto out;
    m->embed = t->data;
    m->embed_t = t;
    m->embed_type = wtype_of(t->dtype);
    if ((m->embed_row = malloc(t->size / (size_t)c->vocab_size)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < c->n_layers; i++)
        if ((rc = bind_layer(&b, i)) < 0)
            goto out;
    if ((rc = bind_vec(&b, "model.norm.weight", c->dim, false, &m->final_norm)) < 0)
        goto out;
    if (c->tie_embeddings) {
        snprintf(m->lm_head.name, sizeof(m->lm_head.name), "lm_head");
        m->lm_head.w = m->embed;
        m->lm_head.wtype = m->embed_type;
        m->lm_head.src = m->embed_t;
        m->lm_head.n_in = c->dim;
        m->lm_head.n_out = c->vocab_size;
        if (eng_st_find(m->st, "lm_head.weight") != NULL) {
            b.used[eng_st_find(m->st, "lm_head.weight") - eng_st_at(m->st, 0)] = true;
            ENG_LOG(KN_LOG_WARN, "tie_word_embeddings is true: lm_head.weight in the "
                    "checkpoint is ignored");
        }
        eng_linear **nl = realloc(m->linears, (m->n_linears + 1) * sizeof(*nl));
        if (nl == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        m->linears = nl;
        nl[m->n_linears++] = &m->lm_head;
    } else if ((rc = bind_linear(&b, &m->lm_head, "lm_head", c->vocab_size, c->dim, false)) < 0) {
        goto out;
    }
    if ((rc = eng__fp8_bind_kv(m, b.used, err, errlen)) < 0)
        goto out;
    for (size_t i = 0; i < eng_st_count(m->st); i++) {
        t = eng_st_at(m->st, i);
        if (!b.used[i] && !ignorable(t->name)) {
            kn_errf(err, errlen, "%s: tensor \"%s\" is not used by %s (wrong architecture?)",
                    t->file, t->name, c->arch_name);
            rc = ENG_E_FORMAT;
            goto out;
        }
    }
    rc = 0;
out:
    free(b.used);
    return rc;
}

int eng_model_load(eng_model **out, const char *dir, const eng_model_opts *opts,
                   char *err, size_t errlen)
{
    eng_model_opts defaults;
    char path[PATH_MAX];
    eng_model *m;
    int rc;

    *out = NULL;
    if (opts == NULL) {
        eng_model_opts_default(&defaults);
        opts = &defaults;
    }
    if ((m = calloc(1, sizeof(*m))) == NULL)
        return -ENOMEM;
    m->n_threads = opts->n_threads;
    /* $FP8D_KERNELS forces a variant as it does for the codec (kn_init). */
    const char *kernels = opts->kernels ? opts->kernels : getenv("FP8D_KERNELS");
    if ((m->ops = kn_math_select(kernels)) == NULL) {
        kn_errf(err, errlen, "kernels \"%s\": unknown or not usable on this CPU",
                kernels ? kernels : "(best)");
        rc = -EINVAL;
        goto fail;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/config.json", dir) >= sizeof(path)) {
        kn_errf(err, errlen, "%s: path too long", dir);
        rc = -ENAMETOOLONG;
        goto fail;
    }
    if ((rc = eng_model_config_load(&m->cfg, path, err, errlen)) < 0 ||
        (rc = eng_st_open_dir(&m->st, dir, err, errlen)) < 0 ||
        (rc = eng__fp8_load_begin(m, dir, err, errlen)) < 0 ||
        (rc = bind_all(m, err, errlen)) < 0 ||
        (rc = eng__packed_sync(m, QT_MODE_OFF, err, errlen)) < 0 ||
        (rc = eng__rope_init(m, err, errlen)) < 0 ||
        (rc = eng__fp8_load_end(m, dir, err, errlen)) < 0)
        goto fail;
    /* what binding read (headers, norms, scales, page edges) goes too */
    eng__st_release_all(m->st);
    ENG_LOG(KN_LOG_INFO, "model=%s arch=%s layers=%d dim=%d heads=%d/%d vocab=%d kernels=%s",
            dir, m->cfg.arch_name, m->cfg.n_layers, m->cfg.dim, m->cfg.n_heads,
            m->cfg.n_kv_heads, m->cfg.vocab_size, m->ops->name);
    *out = m;
    return 0;
fail:
    eng_model_free(m);
    return rc;
}

void eng_model_free(eng_model *m)
{
    if (m == NULL)
        return;
    eng__scratch_free(&m->s);
    eng__fp8_free(m);
    for (size_t i = 0; i < m->n_linears; i++)
        kn_free(m->linears[i]->packed);
    for (size_t i = 0; i < m->n_f32_bufs; i++)
        free(m->f32_bufs[i]);
    free(m->f32_bufs);
    free(m->linears);
    free(m->layers);
    free(m->inv_freq);
    free(m->embed_row);
    eng_st_close(m->st);
    eng_model_config_cleanup(&m->cfg);
    free(m);
}

const eng_model_config *eng_model_get_config(const eng_model *m)
{
    return &m->cfg;
}

size_t eng_model_n_linears(const eng_model *m)
{
    return m->n_linears;
}

const char *eng_model_linear_name(const eng_model *m, size_t i)
{
    return i < m->n_linears ? m->linears[i]->name : NULL;
}
