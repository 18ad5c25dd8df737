/* forward.c: the decoder forward pass over a batch of sequences
 * (model-formats.md §2.3), llama2.c-readable.
 *
 * All new tokens of all batch items are stacked into one matrix of rows,
 * so every Linear runs once per layer over the whole batch (prefill of
 * many tokens and one-token decode are the same code).  Attention is the
 * only step that looks at sequences: a row attends to its own sequence's
 * cache up to its own position.  Past the last layer's caches only the
 * rows whose logits are asked for go on (keep_rows).  Activations, norms,
 * RoPE and softmax are f32; weights are widened inside the kernels.
 * OpenMP lives here only: the kernels get ranges of output rows.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fp8-int.h"

/* Output rows per OpenMP chunk of a Linear: a multiple of the kernel's
 * 4-row tile, small enough that decode (one input row) splits evenly. */
#define LIN_CHUNK 16
/* Work (multiply-adds) below which a step runs on one thread: a parallel
 * region and its barrier cost microseconds unloaded and milliseconds when
 * the cores are oversubscribed (measured: 2-thread decode of
 * shakespeare-small fell from 450 to 50 tokens/s on a loaded machine). */
#define PAR_MIN_WORK (1L << 18)

static int n_threads_of(const eng_model *m)
{
    return m->n_threads > 0 ? m->n_threads : omp_get_max_threads();
}

void eng__scratch_free(eng_scratch *s)
{
    kn_free(s->x);
    kn_free(s->xb);
    kn_free(s->q);
    kn_free(s->k);
    kn_free(s->v);
    kn_free(s->att_out);
    kn_free(s->hb);
    kn_free(s->hb2);
    kn_free(s->att);
    kn_free(s->logits);
    free(s->kept);
    free(s->row_pos);
    free(s->row_item);
    memset(s, 0, sizeof(*s));
}

int eng__scratch_reserve(eng_model *m, size_t rows, size_t max_ctx)
{
    eng_scratch *s = &m->s;
    const eng_model_config *c = &m->cfg;
    size_t qd = (size_t)c->n_heads * c->head_size, kvd = (size_t)c->n_kv_heads * c->head_size;
    size_t nt = (size_t)n_threads_of(m), att = nt * (max_ctx + 16);

    if (rows > s->cap_rows) {
        eng_scratch ns = {0};
        ns.att = s->att;
        ns.att_cap = s->att_cap;
        eng_scratch old = *s;
        old.att = NULL;
        eng__scratch_free(&old);
        ns.cap_rows = rows;
        ns.x = kn_alloc(rows * c->dim * sizeof(float));
        ns.xb = kn_alloc(rows * c->dim * sizeof(float));
        ns.q = kn_alloc(rows * qd * sizeof(float));
        ns.k = kn_alloc(rows * kvd * sizeof(float));
        ns.v = kn_alloc(rows * kvd * sizeof(float));
        ns.att_out = kn_alloc(rows * qd * sizeof(float));
        ns.hb = kn_alloc(rows * c->hidden_dim * sizeof(float));
        ns.hb2 = kn_alloc(rows * c->hidden_dim * sizeof(float));
        ns.row_pos = malloc(rows * sizeof(int));
        ns.row_item = malloc(rows * sizeof(int));
        *s = ns;
        if (!ns.x || !ns.xb || !ns.q || !ns.k || !ns.v || !ns.att_out || !ns.hb || !ns.hb2 ||
            !ns.row_pos || !ns.row_item) {
            eng__scratch_free(s);
            return -ENOMEM;
        }
    }
    if (att > s->att_cap) {
        kn_free(s->att);
        s->att_cap = 0;
        if ((s->att = kn_alloc(att * sizeof(float))) == NULL)
            return -ENOMEM;
        s->att_cap = att;
    }
    return 0;
}

/* Chunk ch of job j's output rows: whole panels when the weights are
 * packed, else LIN_CHUNK rows. */
static void lin_chunk(const eng_model *m, const eng_lin_job *job, const float *x, size_t ldx,
                      size_t rows, size_t ch)
{
    const kn_math_ops *ops = m->ops;
    const eng_linear *l = job->l;
    size_t n0 = ch * LIN_CHUNK, n1 = n0 + LIN_CHUNK;

    if (l->packed != NULL && ops->linear_packed != NULL) {
        ops->linear_packed(job->y, job->ldy, x, ldx, rows, l->packed, l->wtype, (size_t)l->n_in,
                           (size_t)l->n_out, ch, ch + 1, l->bias);
        return;
    }
    if (n1 > (size_t)l->n_out)
        n1 = (size_t)l->n_out;
    ops->linear(job->y, job->ldy, x, ldx, rows, l->w, l->wtype, (size_t)l->n_in, n0, n1,
                l->bias);
}

/* jobs[j].y[rows, ldy] = x[rows, ldx] . W_j^T (+b) for Linears that read
 * the same input (q/k/v, gate/up, or one alone): one parallel region for
 * all of them, each thread taking its share of every member's output
 * rows, so a group costs one fork/join and its small members (k, v) do
 * not leave a thread idle.  FP8 products run in fp8_linear.c (QUANTIZE);
 * MEASURE observes inputs there and outputs here. */
static void par_linears(eng_model *m, const float *x, size_t ldx, size_t rows,
                        const eng_lin_job *jobs, int n)
{
    bool done[ENG_LIN_GROUP_MAX];
    long n_chunks[ENG_LIN_GROUP_MAX], total = 0, work = 0;

    eng__fp8_linears(m, x, ldx, rows, jobs, n, done);
    for (int j = 0; j < n; j++) {
        const eng_linear *l = jobs[j].l;
        long chunk = l->packed != NULL && m->ops->linear_packed != NULL ? KN_PANEL : LIN_CHUNK;
        n_chunks[j] = done[j] ? 0 : (l->n_out + chunk - 1) / chunk;
        total += n_chunks[j];
        work += done[j] ? 0 : (long)rows * l->n_out * l->n_in;
    }
#pragma omp parallel for schedule(static) num_threads(n_threads_of(m)) if (work >= PAR_MIN_WORK)
    for (long c = 0; c < total; c++) {
        int j = 0;
        long ch = c;
        while (ch >= n_chunks[j])
            ch -= n_chunks[j++];
        lin_chunk(m, &jobs[j], x, ldx, rows, (size_t)ch);
    }
    for (int j = 0; m->fp8 != NULL && j < n; j++)
        eng__fp8_linear_out(m, jobs[j].y, jobs[j].ldy, rows, jobs[j].l);
}

static void par_linear(eng_model *m, float *y, size_t ldy, const float *x, size_t ldx,
                       size_t rows, const eng_linear *l)
{
    eng_lin_job job = {l, y, ldy};
    par_linears(m, x, ldx, rows, &job, 1);
}

static void par_rmsnorm(const eng_model *m, float *y, const float *x, const float *w, size_t rows)
{
    size_t d = (size_t)m->cfg.dim;
#pragma omp parallel for schedule(static) num_threads(n_threads_of(m)) \
    if ((long)(rows * d) >= PAR_MIN_WORK / 16)
    for (size_t r = 0; r < rows; r++)
        m->ops->rmsnorm(y + r * d, x + r * d, w, d, m->cfg.rms_eps);
}

/* Qwen3 q/k norm, then RoPE at each row's position, on q and k in place. */
static void qk_rotate(const eng_model *m, const eng_layer *L, size_t rows)
{
    const eng_model_config *c = &m->cfg;
    const eng_scratch *s = &m->s;
    size_t hs = (size_t)c->head_size;
#pragma omp parallel for schedule(static) num_threads(n_threads_of(m)) \
    if ((long)rows * (c->n_heads + c->n_kv_heads) * (long)hs >= PAR_MIN_WORK / 16)
    for (size_t r = 0; r < rows; r++) {
        float cs[512], sn[512];   /* rot_dim <= 1024: refused above that in rope.c */
        float *q = s->q + r * c->n_heads * hs, *k = s->k + r * c->n_kv_heads * hs;
        eng__rope_cos_sin(m, s->row_pos[r], cs, sn);
        for (int h = 0; h < c->n_heads; h++) {
            if (L->q_norm)
                m->ops->rmsnorm(q + h * hs, q + h * hs, L->q_norm, hs, c->rms_eps);
            kn_rope_half(q + h * hs, cs, sn, (size_t)m->rot_dim);
        }
        for (int h = 0; h < c->n_kv_heads; h++) {
            if (L->k_norm)
                m->ops->rmsnorm(k + h * hs, k + h * hs, L->k_norm, hs, c->rms_eps);
            kn_rope_half(k + h * hs, cs, sn, (size_t)m->rot_dim);
        }
    }
}

/* Appends this layer's new keys and values to each item's cache. */
static void cache_store(const eng_model *m, int layer, const eng_batch_item *items,
                        size_t n_items)
{
    const eng_scratch *s = &m->s;
    size_t r = 0;
    for (size_t i = 0; i < n_items; i++) {
        eng_seq *q = items[i].seq;
        size_t kvd = q->kv_dim, base = (size_t)layer * q->n_ctx * kvd;
        size_t n = items[i].n_tokens * kvd;
        if (q->k8 != NULL) {   /* FP8 KV cache: E4M3 codes with the layer's scales */
            kn_active()->f32_to_fp8(q->k8 + base + q->len * kvd, s->k + r * kvd, n, KN_FP8_E4M3,
                                    q->kv_scale[2 * layer], KN_FP8_DIVIDE | KN_FP8_SATURATE);
            kn_active()->f32_to_fp8(q->v8 + base + q->len * kvd, s->v + r * kvd, n, KN_FP8_E4M3,
                                    q->kv_scale[2 * layer + 1], KN_FP8_DIVIDE | KN_FP8_SATURATE);
        } else {
            memcpy(q->k + base + q->len * kvd, s->k + r * kvd, n * sizeof(float));
            memcpy(q->v + base + q->len * kvd, s->v + r * kvd, n * sizeof(float));
        }
        r += items[i].n_tokens;
    }
}

/* Query rows per attention unit: a unit is one item's block of rows times
 * one GQA group, so that each key block is transposed once for all of
 * them (kn_math_ops.attention); at most KN_ATTN_MAX_Q (row, head) pairs. */
#define ATT_ROWS 16

/* Rows [r0, r0 + nq) of item it (its first row is rb), kv head g, through
 * ops->attention: keys [lo, p + 1) of each row's position p. */
static void attend_unit(const eng_model *m, int layer, const eng_layer *L, const eng_seq *sq,
                        size_t r0, size_t nq, int g)
{
    const eng_model_config *c = &m->cfg;
    const eng_scratch *s = &m->s;
    size_t hs = (size_t)c->head_size, qd = (size_t)c->n_heads * hs;
    size_t group = (size_t)(c->n_heads / c->n_kv_heads), kvd = sq->kv_dim;
    size_t base = (size_t)layer * sq->n_ctx * kvd + (size_t)g * hs, lo[ATT_ROWS], hi[ATT_ROWS];

    for (size_t i = 0; i < nq; i++) {
        size_t p = (size_t)s->row_pos[r0 + i];
        hi[i] = p + 1;
        lo[i] = L->window > 0 && p + 1 > (size_t)L->window ? p + 1 - (size_t)L->window : 0;
    }
    m->ops->attention(s->att_out + r0 * qd + (size_t)g * group * hs, qd,
                      s->q + r0 * qd + (size_t)g * group * hs, qd, nq, group, sq->k + base,
                      sq->v + base, kvd, hs, lo, hi, 1.0f / sqrtf((float)hs));
}

/* The blocked attention when it applies: every item's cache in f32, no
 * FP8 rounding of the keys (kq), head size and group within the kernel's
 * bounds.  Units: per item, per kv head, blocks of rows; dynamic, as the
 * causal work grows with the row. */
static bool attention_blocked(const eng_model *m, int layer, const eng_layer *L,
                              const eng_batch_item *items, size_t n_items, long macs, float kq)
{
    const eng_model_config *c = &m->cfg;
    size_t group = (size_t)(c->n_heads / c->n_kv_heads), rb = KN_ATTN_MAX_Q / group;
    long n_units = 0;

    if (m->ops->attention == NULL || kq > 0.0f || (size_t)c->head_size > KN_ATTN_MAX_HS ||
        group > KN_ATTN_MAX_Q)
        return false;
    rb = rb < ATT_ROWS ? rb : ATT_ROWS;
    for (size_t i = 0; i < n_items; i++) {
        if (items[i].seq->k8 != NULL)
            return false;
        n_units += (long)((items[i].n_tokens + rb - 1) / rb) * c->n_kv_heads;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads_of(m)) \
    if (macs >= PAR_MIN_WORK)
    for (long u = 0; u < n_units; u++) {
        size_t i = 0, r0 = 0, left = (size_t)u, per;
        while (left >= (per = (items[i].n_tokens + rb - 1) / rb * (size_t)c->n_kv_heads)) {
            left -= per;
            r0 += items[i++].n_tokens;
        }
        size_t blk = left / (size_t)c->n_kv_heads, g = left % (size_t)c->n_kv_heads;
        size_t nq = items[i].n_tokens - blk * rb < rb ? items[i].n_tokens - blk * rb : rb;
        attend_unit(m, layer, L, items[i].seq, r0 + blk * rb, nq, (int)g);
    }
    return true;
}

/* Causal (optionally sliding-window) GQA attention for every (row, head). */
static void attention(const eng_model *m, int layer, const eng_layer *L,
                      const eng_batch_item *items, size_t n_items, size_t rows)
{
    const eng_model_config *c = &m->cfg;
    const eng_scratch *s = &m->s;
    const kn_math_ops *ops = m->ops;
    size_t hs = (size_t)c->head_size, qd = (size_t)c->n_heads * hs;
    int group = c->n_heads / c->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hs);
    size_t att_stride = s->att_cap / (size_t)n_threads_of(m);
    long n_work = (long)(rows * (size_t)c->n_heads);
    long macs = n_work * (long)hs * 2 * (long)(s->row_pos[rows - 1] + 1);
    /* FP8 matmul_qk: keys rounded through FP8 as they are read */
    const eng_fp8 *f8 = m->fp8;
    float kq = f8 != NULL && f8->mode == QT_MODE_QUANTIZE ? f8->qk_scale[2 * layer + 1] : 0.0f;
    kn_fp8_format kq_fmt = f8 != NULL ? f8->fmt : KN_FP8_E4M3;

    if (attention_blocked(m, layer, L, items, n_items, macs, kq))
        return;
    /* per (row, head): the FP8 KV cache or FP8 keys of q.k^T */
#pragma omp parallel for schedule(dynamic, 4) num_threads(n_threads_of(m)) \
    if (macs >= PAR_MIN_WORK)
    for (long wi = 0; wi < n_work; wi++) {
        size_t r = (size_t)wi / c->n_heads;
        int h = (int)(wi % c->n_heads), g = h / group;
        const eng_seq *q = items[s->row_item[r]].seq;
        size_t kvd = q->kv_dim, base = (size_t)layer * q->n_ctx * kvd;
        const float *qv = s->q + r * qd + h * hs;
        float *out = s->att_out + r * qd + h * hs;
        float *att = s->att + (size_t)omp_get_thread_num() * att_stride;
        size_t p = (size_t)s->row_pos[r], t0 = 0;

        if (L->window > 0 && p + 1 > (size_t)L->window)
            t0 = p + 1 - (size_t)L->window;       /* W keys including itself */
        if (q->k8 != NULL) {
            /* FP8 KV cache: each key/value decoded exactly (code * scale) */
            const uint8_t *kc = q->k8 + base + g * hs, *vc = q->v8 + base + g * hs;
            float ks = q->kv_scale[2 * layer], vs = q->kv_scale[2 * layer + 1];
            float buf[ENG_FP8_KV_MAX_HS];
            for (size_t t = t0; t <= p; t++) {
                kn_active()->fp8_to_f32(buf, kc + t * kvd, hs, KN_FP8_E4M3, ks);
                if (kq > 0.0f)
                    eng__fp8_round(buf, hs, kq, kq_fmt);
                att[t - t0] = ops->dot(qv, buf, hs) * scale;
            }
            kn_softmax(att, p + 1 - t0);
            memset(out, 0, hs * sizeof(float));
            for (size_t t = t0; t <= p; t++) {
                kn_active()->fp8_to_f32(buf, vc + t * kvd, hs, KN_FP8_E4M3, vs);
                ops->axpy(out, att[t - t0], buf, hs);
            }
            continue;
        }
        const float *kc = q->k + base + g * hs, *vc = q->v + base + g * hs;
        if (kq > 0.0f) {
            float buf[ENG_FP8_KV_MAX_HS];
            for (size_t t = t0; t <= p; t++) {
                memcpy(buf, kc + t * kvd, hs * sizeof(float));
                eng__fp8_round(buf, hs, kq, kq_fmt);
                att[t - t0] = ops->dot(qv, buf, hs) * scale;
            }
        } else {
            for (size_t t = t0; t <= p; t++)
                att[t - t0] = ops->dot(qv, kc + t * kvd, hs) * scale;
        }
        kn_softmax(att, p + 1 - t0);
        memset(out, 0, hs * sizeof(float));
        for (size_t t = t0; t <= p; t++)
            ops->axpy(out, att[t - t0], vc + t * kvd, hs);
    }
}

static void add_rows(const eng_model *m, float *x, const float *d, size_t n)
{
#pragma omp parallel for schedule(static) num_threads(n_threads_of(m)) \
    if ((long)n >= PAR_MIN_WORK / 4)
    for (size_t i = 0; i < n; i++)
        x[i] += d[i];
}

static void mlp(eng_model *m, const eng_layer *L, size_t rows)
{
    const eng_scratch *s = &m->s;
    size_t d = (size_t)m->cfg.dim, hd = (size_t)m->cfg.hidden_dim;

    par_rmsnorm(m, s->xb, s->x, L->ffn_norm, rows);
    par_linears(m, s->xb, d, rows, (eng_lin_job[]){{&L->gate, s->hb, hd}, {&L->up, s->hb2, hd}},
                2);
#pragma omp parallel for schedule(static) num_threads(n_threads_of(m)) \
    if ((long)(rows * hd) >= PAR_MIN_WORK / 16)
    for (size_t r = 0; r < rows; r++)
        m->ops->silu_mul(s->hb + r * hd, s->hb2 + r * hd, hd);
    par_linear(m, s->xb, d, s->hb, hd, rows, &L->down);
    add_rows(m, s->x, s->xb, rows * d);
}

/* The rows the last layer still needs once its keys and values are in
 * the caches: those whose logits are asked for (every row of an
 * all_logits item, the last row of the others, none of an item without
 * logits), as llama.cpp prunes with its inp_out_ids.  A 128-token prompt
 * then runs the last layer's attention, o and MLP on one row instead of
 * 128 (~5% of the prefill's multiply-adds at the Llama-3.2-1B shape).
 * Moves the kept rows of x, q, row_pos and row_item to the front, in
 * order, and describes them in s->kept (each item with n_tokens = its
 * kept rows); returns their count. */
static size_t keep_rows(eng_model *m, const eng_batch_item *items, size_t n_items)
{
    eng_scratch *s = &m->s;
    size_t d = (size_t)m->cfg.dim, qd = (size_t)m->cfg.n_heads * m->cfg.head_size;
    size_t r = 0, n = 0;

    for (size_t i = 0; i < n_items; i++) {
        const eng_batch_item *it = &items[i];
        size_t k = it->logits == NULL || it->n_tokens == 0 ? 0
                   : it->all_logits                        ? it->n_tokens
                                                           : 1;
        size_t from = r + it->n_tokens - k;
        for (size_t j = 0; j < k && from != n; j++) {   /* from > n: rows only move down */
            memcpy(s->x + (n + j) * d, s->x + (from + j) * d, d * sizeof(float));
            memcpy(s->q + (n + j) * qd, s->q + (from + j) * qd, qd * sizeof(float));
            s->row_pos[n + j] = s->row_pos[from + j];
            s->row_item[n + j] = s->row_item[from + j];
        }
        s->kept[i] = *it;
        s->kept[i].n_tokens = k;
        n += k;
        r += it->n_tokens;
    }
    return n;
}

/* One layer over rows; with prune (the last layer, see keep_rows) only
 * the kept rows go on past the caches, described by s->kept. */
static void layer_forward(eng_model *m, int li, const eng_batch_item *items, size_t n_items,
                          size_t rows, bool prune)
{
    const eng_model_config *c = &m->cfg;
    const eng_layer *L = &m->layers[li];
    eng_scratch *s = &m->s;
    size_t d = (size_t)c->dim, qd = (size_t)c->n_heads * c->head_size;
    size_t kvd = (size_t)c->n_kv_heads * c->head_size;

    par_rmsnorm(m, s->xb, s->x, L->attn_norm, rows);
    par_linears(m, s->xb, d, rows,
                (eng_lin_job[]){{&L->q, s->q, qd}, {&L->k, s->k, kvd}, {&L->v, s->v, kvd}}, 3);
    qk_rotate(m, L, rows);
    if (m->fp8 != NULL)
        eng__fp8_attn(m, li, s->q, s->k, s->v, rows);
    cache_store(m, li, items, n_items);
    if (prune) {
        rows = keep_rows(m, items, n_items);
        items = s->kept;
        if (rows == 0)
            return;
    }
    attention(m, li, L, items, n_items, rows);
    par_linear(m, s->xb, d, s->att_out, qd, rows, &L->o);
    add_rows(m, s->x, s->xb, rows * d);
    mlp(m, L, rows);
}

/* Items whose last row's logits one pass of lm_head computes together
 * (decode batches).  The head is the largest matrix; read once per item,
 * a batch of 8 cost as much as 8 single steps (Llama-3.2-1B: 105 vs 11
 * ms). */
#define LOGITS_GROUP 16

/* Final norm and lm_head for rows src[0..n) of the batch into dst[j]:
 * gathered into xb and computed in one product through s->logits; row by
 * row when n is 1 or that buffer cannot be had. */
static void logits_group(eng_model *m, const size_t *src, float *const *dst, size_t n)
{
    eng_scratch *s = &m->s;
    size_t d = (size_t)m->cfg.dim, V = (size_t)m->cfg.vocab_size;

    if (n > 1 && s->logits == NULL)   /* kept with the scratch; its size never changes */
        s->logits = kn_alloc(LOGITS_GROUP * V * sizeof(float));
    if (n == 1 || s->logits == NULL) {
        for (size_t j = 0; j < n; j++) {
            par_rmsnorm(m, s->xb + src[j] * d, s->x + src[j] * d, m->final_norm, 1);
            par_linear(m, dst[j], V, s->xb + src[j] * d, d, 1, &m->lm_head);
        }
        return;
    }
    for (size_t j = 0; j < n; j++)
        m->ops->rmsnorm(s->xb + j * d, s->x + src[j] * d, m->final_norm, d, m->cfg.rms_eps);
    par_linear(m, s->logits, V, s->xb, d, n, &m->lm_head);
    for (size_t j = 0; j < n; j++)
        memcpy(dst[j], s->logits + j * V, V * sizeof(float));
}

/* Final norm and lm_head for the rows each item asked logits for: every
 * row of an all_logits item straight into its buffer, the last rows of
 * the others LOGITS_GROUP at a time. */
static void logits_out(eng_model *m, const eng_batch_item *items, size_t n_items)
{
    eng_scratch *s = &m->s;
    size_t d = (size_t)m->cfg.dim, V = (size_t)m->cfg.vocab_size, r = 0, n = 0;
    size_t src[LOGITS_GROUP];
    float *dst[LOGITS_GROUP];

    for (size_t i = 0; i < n_items; i++) {
        const eng_batch_item *it = &items[i];
        size_t first = r;
        r += it->n_tokens;
        if (it->logits == NULL || it->n_tokens == 0)
            continue;
        if (it->all_logits) {
            par_rmsnorm(m, s->xb + first * d, s->x + first * d, m->final_norm, it->n_tokens);
            par_linear(m, it->logits, V, s->xb + first * d, d, it->n_tokens, &m->lm_head);
            continue;
        }
        src[n] = r - 1;
        dst[n++] = it->logits;
        if (n == LOGITS_GROUP) {
            logits_group(m, src, dst, n);
            n = 0;
        }
    }
    if (n > 0)
        logits_group(m, src, dst, n);
}

static int check_batch(const eng_model *m, const eng_batch_item *items, size_t n_items,
                       size_t *rows, size_t *max_ctx, char *err, size_t errlen)
{
    *rows = 0;
    *max_ctx = 0;
    for (size_t i = 0; i < n_items; i++) {
        const eng_batch_item *it = &items[i];
        if (it->seq == NULL || it->seq->m != m || (it->n_tokens > 0 && it->tokens == NULL)) {
            kn_errf(err, errlen, "batch item %zu: no sequence of this model or no tokens", i);
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (items[j].seq == it->seq) {
                kn_errf(err, errlen, "batch items %zu and %zu share one sequence", j, i);
                return -EINVAL;
            }
        if (it->n_tokens > it->seq->n_ctx - it->seq->len) {
            kn_errf(err, errlen, "batch item %zu: %zu cached + %zu new tokens exceed the "
                    "sequence's context of %zu", i, it->seq->len, it->n_tokens, it->seq->n_ctx);
            return ENG_E_CONTEXT;
        }
        for (size_t t = 0; t < it->n_tokens; t++)
            if (it->tokens[t] < 0 || it->tokens[t] >= m->cfg.vocab_size) {
                kn_errf(err, errlen, "batch item %zu: token %zu = %d is outside the vocabulary "
                        "[0, %d)", i, t, (int)it->tokens[t], m->cfg.vocab_size);
                return -EINVAL;
            }
        *rows += it->n_tokens;
        if (it->seq->len + it->n_tokens > *max_ctx)
            *max_ctx = it->seq->len + it->n_tokens;
    }
    return 0;
}

int eng_forward(eng_model *m, eng_batch_item *items, size_t n_items, char *err, size_t errlen)
{
    eng_scratch *s = &m->s;
    size_t rows, max_ctx, d = (size_t)m->cfg.dim, r = 0;
    int rc;

    if ((rc = check_batch(m, items, n_items, &rows, &max_ctx, err, errlen)) < 0)
        return rc;
    if (rows == 0)
        return 0;
    if ((rc = eng__scratch_reserve(m, rows, max_ctx)) < 0) {
        kn_errf(err, errlen, "forward: out of memory for %zu rows", rows);
        return rc;
    }
    for (size_t i = 0; i < n_items; i++)
        for (size_t t = 0; t < items[i].n_tokens; t++, r++) {
            s->row_pos[r] = (int)(items[i].seq->len + t);
            s->row_item[r] = (int)i;
            if ((rc = eng__embed_row(m, items[i].tokens[t], s->x + r * d, err, errlen)) < 0)
                return rc;
        }
    /* MEASURE keeps every row: its observers calibrate on all of them */
    bool prune = m->fp8 == NULL || m->fp8->mode != QT_MODE_MEASURE;
    if (prune && n_items > s->kept_cap) {
        eng_batch_item *k = realloc(s->kept, n_items * sizeof(*k));
        if (k == NULL)
            prune = false;   /* out of memory: every row still gives the answer */
        else
            s->kept = k, s->kept_cap = n_items;
    }
    for (int li = 0; li < m->cfg.n_layers; li++)
        layer_forward(m, li, items, n_items, rows, prune && li == m->cfg.n_layers - 1);
    logits_out(m, prune ? s->kept : items, n_items);
    if (m->fp8 != NULL)
        eng__fp8_step_end(m);
    for (size_t i = 0; i < n_items; i++)
        items[i].seq->len += items[i].n_tokens;
    return 0;
}
