/* fp8_linear.c: the FP8 hooks of the forward pass.  A Linear in MEASURE
 * records its input (and output, unless measure_exclude drops it) and
 * runs in high precision; in QUANTIZE it multiplies its FP8 weights by
 * f32 activations (weight-only) or by FP8 activations quantized with a
 * static or per-token scale: products of FP8 values are exact in f32, the
 * sums are f32, the descale comes last (kernels/kn_fp8mm.h).  Attention
 * hooks observe q/k/v for the Matmul and KVCache modules and round k/v
 * through E4M3 for the FP8 KV cache. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fp8-int.h"

/* The FP8 product's work below which one thread runs it (forward.c's
 * PAR_MIN_WORK: a parallel region costs more than a small product). */
#define FP8_PAR_MIN_WORK (1L << 18)
/* Rows from which the prefill kernels beat the small-M tiles
 * (kernels/kn_fp8mm.h: they cross over near M = 10). */
#define FP8_PREFILL_ROWS 8

static int n_threads(const eng_model *m)
{
    return m->n_threads > 0 ? m->n_threads : omp_get_max_threads();
}

static void observe_rows(qt_module *mod, qt_slot slot, const float *x, size_t ld, size_t n,
                         size_t rows)
{
    if (ld == n) {
        qt_module_observe(mod, slot, 0, x, rows * n);
        return;
    }
    for (size_t r = 0; r < rows; r++)
        qt_module_observe(mod, slot, 0, x + r * ld, n);
}

static int reserve_act(eng_fp8 *f, size_t nq, size_t ns)
{
    if (nq > f->xq_cap) {
        kn_free(f->xq);
        f->xq_cap = 0;
        if ((f->xq = kn_alloc(nq)) == NULL)
            return -ENOMEM;
        f->xq_cap = nq;
    }
    if (ns > f->xs_cap) {
        kn_free(f->xs);
        f->xs_cap = 0;
        if ((f->xs = kn_alloc(ns * sizeof(float))) == NULL)
            return -ENOMEM;
        f->xs_cap = ns;
    }
    return 0;
}

static int reserve_scratch(eng_fp8 *f, const kn_fp8w *w, int nth)
{
    size_t each = (kn_fp8mm_scratch_size(w) + 63) & ~(size_t)63;
    if (each <= f->mm_scratch_each && (size_t)nth <= f->mm_scratch_n)
        return 0;
    if (each < f->mm_scratch_each)
        each = f->mm_scratch_each;
    kn_free(f->mm_scratch);
    f->mm_scratch_each = f->mm_scratch_n = 0;
    if ((f->mm_scratch = kn_alloc(each * (size_t)nth)) == NULL)
        return -ENOMEM;
    f->mm_scratch_each = each;
    f->mm_scratch_n = (size_t)nth;
    return 0;
}

bool eng__fp8_linear(eng_model *m, float *y, size_t ldy, const float *x, size_t ldx,
                     size_t rows, const eng_linear *l)
{
    eng_fp8 *f = m->fp8;
    eng_fp8lin *fl = l->fp8;
    size_t K = (size_t)l->n_in;
    const float *sscale = NULL;
    bool w8a8;
    int nth = n_threads(m);

    if (f == NULL || fl == NULL)
        return false;
    if (f->mode == QT_MODE_MEASURE && fl->mod != NULL)
        observe_rows(fl->mod, QT_SLOT_INPUT, x, ldx, K, rows);
    /* An FP8 weight of the checkpoint has no other form (l->w NULL): OFF
     * and MEASURE run it with f32 activations (the exact 'linear'). */
    if (fl->w8 == NULL || (f->mode != QT_MODE_QUANTIZE && l->w != NULL))
        return false;

    w8a8 = f->mode == QT_MODE_QUANTIZE &&
           (f->opts.act == ENG_FP8_ACT_DYNAMIC ||
            (f->opts.act == ENG_FP8_ACT_STATIC && fl->in_scale > 0.0f));
    if (f->opts.act == ENG_FP8_ACT_STATIC)
        sscale = &fl->in_scale;
    if (w8a8 && reserve_act(f, rows * K, rows) < 0)
        w8a8 = false;   /* out of memory: weight-only still gives an answer */
    if (w8a8 && rows > FP8_PREFILL_ROWS && reserve_scratch(f, fl->w8, nth) < 0)
        w8a8 = false;
    if (w8a8)
        kn_fp8_act_quantize(f->xq, K, f->xs, x, ldx, rows, K, f->fmt, sscale);

    long work = (long)rows * l->n_out * l->n_in;
#pragma omp parallel num_threads(nth) if (work >= FP8_PAR_MIN_WORK)
    {
        size_t p0, p1;
        int ith = omp_get_thread_num(), nt = omp_get_num_threads();
        kn_fp8w_split(fl->w8, ith, nt, &p0, &p1);
        if (p1 > p0) {
            if (!w8a8)
                f->mm->linear(y, ldy, x, ldx, rows, fl->w8, p0, p1, l->bias);
            else if (rows <= FP8_PREFILL_ROWS)
                f->mm->linear_w8a8(y, ldy, f->xq, K, f->fmt, f->xs, rows, fl->w8, p0, p1,
                                   l->bias);
            else
                f->mm->prefill_w8a8(y, ldy, f->xq, K, f->fmt, f->xs, rows, fl->w8, p0, p1,
                                    l->bias,
                                    (char *)f->mm_scratch + (size_t)ith * f->mm_scratch_each);
        }
    }
    eng__fp8_linear_out(m, y, ldy, rows, l);   /* MEASURE (forward.c skips it here) */
    return true;
}

void eng__fp8_linear_out(eng_model *m, const float *y, size_t ldy, size_t rows,
                         const eng_linear *l)
{
    eng_fp8 *f = m->fp8;
    eng_fp8lin *fl = l->fp8;

    if (f != NULL && fl != NULL && fl->mod != NULL && f->mode == QT_MODE_MEASURE)
        observe_rows(fl->mod, QT_SLOT_OUTPUT, y, ldy, (size_t)l->n_out, rows);
}

void eng__fp8_round(float *x, size_t n, float s, kn_fp8_format fmt)
{
    uint8_t buf[256];
    for (size_t i = 0; i < n; i += sizeof(buf)) {
        size_t c = n - i < sizeof(buf) ? n - i : sizeof(buf);
        kn_active()->f32_to_fp8(buf, x + i, c, fmt, s, KN_FP8_SATURATE | KN_FP8_DIVIDE);
        kn_active()->fp8_to_f32(x + i, buf, c, fmt, s);
    }
}

static void round_e4m3(float *x, size_t n, float s)
{
    eng__fp8_round(x, n, s, KN_FP8_E4M3);
}

void eng__fp8_attn(eng_model *m, int li, float *q, float *k, float *v, size_t rows)
{
    eng_fp8 *f = m->fp8;
    const eng_model_config *c = &m->cfg;
    size_t qd = (size_t)c->n_heads * c->head_size, kvd = (size_t)c->n_kv_heads * c->head_size;

    if (f == NULL)
        return;
    if (f->mode == QT_MODE_MEASURE) {
        qt_module *qk = f->mm_mod[2 * li], *av = f->mm_mod[2 * li + 1];
        qt_module *kc = f->kv_mod[2 * li], *vc = f->kv_mod[2 * li + 1];
        if (qk != NULL) {
            qt_module_observe(qk, QT_SLOT_INPUT, 0, q, rows * qd);
            qt_module_observe(qk, QT_SLOT_INPUT, 1, k, rows * kvd);
        }
        if (av != NULL)
            qt_module_observe(av, QT_SLOT_INPUT, 1, v, rows * kvd);
        if (kc != NULL) {
            qt_module_observe(kc, QT_SLOT_INPUT, 0, k, rows * kvd);
            qt_module_observe(kc, QT_SLOT_OUTPUT, 0, k, rows * kvd);
        }
        if (vc != NULL) {
            qt_module_observe(vc, QT_SLOT_INPUT, 0, v, rows * kvd);
            qt_module_observe(vc, QT_SLOT_OUTPUT, 0, v, rows * kvd);
        }
        return;
    }
    if (f->mode == QT_MODE_QUANTIZE && f->opts.kv_fp8) {
        if (f->k_scale[li] > 0.0f)
            round_e4m3(k, rows * kvd, f->k_scale[li]);
        if (f->v_scale[li] > 0.0f)
            round_e4m3(v, rows * kvd, f->v_scale[li]);
    }
    /* matmul_qk's q operand (its k operand is rounded where attention
     * reads the cache: after the cache's own rounding, as INC does). */
    if (f->mode == QT_MODE_QUANTIZE && f->qk_scale[2 * li] > 0.0f)
        eng__fp8_round(q, rows * qd, f->qk_scale[2 * li], f->fmt);
}

bool eng__fp8_kv_cache(const eng_model *m)
{
    const eng_fp8 *f = m->fp8;
    if (f == NULL || f->mode != QT_MODE_QUANTIZE || !f->opts.kv_fp8 ||
        m->cfg.head_size > ENG_FP8_KV_MAX_HS)
        return false;
    for (int i = 0; i < m->cfg.n_layers; i++)
        if (!(f->k_scale[i] > 0.0f) || !(f->v_scale[i] > 0.0f))
            return false;
    return true;
}

void eng__fp8_kv_scales(const eng_model *m, float *dst)
{
    for (int i = 0; i < m->cfg.n_layers; i++) {
        dst[2 * i] = m->fp8->k_scale[i];
        dst[2 * i + 1] = m->fp8->v_scale[i];
    }
}
