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
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fp8-int.h"

/* The FP8 product's work below which one thread runs it (forward.c's
 * PAR_MIN_WORK: a parallel region costs more than a small product). */
#define FP8_PAR_MIN_WORK (1L << 18)
/* Rows above which the activations are quantized inside the product's
 * parallel region (each thread its share, then a barrier) instead of
 * before it. */
#define FP8_PREFILL_ROWS 8

/* Whether the prefill kernels beat the small-M tiles for rows x K.
 * Measured (W8A8, 2 threads, weights from DRAM, GFLOP/s prefill vs
 * small-M): K = 2048, M = 6: 335 vs 291, M = 8: 439 vs 352; K = 8192,
 * M = 8: 316 vs 383, M = 10: 364 vs 358.  Long rows favour the small-M
 * tiles (likely the prefill kernels' k blocks, whose sums pass through y,
 * and a 512 KiB widened pair, which few rows do not amortise). */
static bool prefill_pays(size_t rows, size_t K)
{
    return rows >= (K <= 4096 ? 6 : 10);
}

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

static int reserve_scratch(eng_fp8 *f, size_t each, int nth)
{
    each = (each + 63) & ~(size_t)63;
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

/* How a group runs: which members are FP8 products here, which of those
 * read the shared FP8 activations f->xq, and which kernels the row count
 * takes. */
typedef struct grp {
    bool         bf16;                    /* weight-only members round x to bf16 */
    const eng_lin_job *jobs;
    int          n;
    const kn_fp8w *w[ENG_LIN_GROUP_MAX];  /* NULL: not computed here */
    bool         w8a8[ENG_LIN_GROUP_MAX]; /* else f32 activations (weight-only) */
    const float *x;
    size_t       ldx, K, rows;
    bool         prefill;                 /* large-M kernels, with f->mm_scratch */
    size_t       units;                   /* panel pairs of the FP8 members */
    /* prefill: the work is claimed in chunks of 'chunk' panel pairs, row
     * block by row block (kn_fp8mm_mblock rows), from the counter 'next' */
    size_t       chunk, per_block, n_chunks;
    atomic_size_t next;
} grp;

/* Panel pairs of w, the prefill kernels' unit (an odd last panel is a
 * unit of its own).  A group's members share K, so all units cost the
 * same and a split in units balances the threads. */
static size_t units_of(const kn_fp8w *w)
{
    return (kn_fp8w_panels(w) + 1) / 2;
}

/* Few rows (decode): thread ith of nt takes its share of the group's
 * units, member after member (q, k and v, or gate and up, in one
 * parallel region), with the small-M kernels. */
static void grp_run(const eng_fp8 *f, const grp *g, int ith, int nt)
{
    size_t u0 = g->units * (size_t)ith / (size_t)nt;
    size_t u1 = g->units * (size_t)(ith + 1) / (size_t)nt, base = 0;

    for (int j = 0; j < g->n && base < u1; j++) {
        const kn_fp8w *w = g->w[j];
        if (w == NULL)
            continue;
        const float *bias = g->jobs[j].l->bias;
        float *y = g->jobs[j].y;
        size_t ldy = g->jobs[j].ldy, nu = units_of(w), np = kn_fp8w_panels(w);
        size_t a = u0 > base ? u0 - base : 0, b = u1 - base < nu ? u1 - base : nu;
        base += nu;
        if (a >= b)
            continue;
        size_t p0 = 2 * a, p1 = 2 * b < np ? 2 * b : np;
        if (g->w8a8[j])
            f->mm->linear_w8a8(y, ldy, f->xq, g->K, f->fmt, f->xs, g->rows, w, p0, p1, bias);
        else if (!g->bf16)
            f->mm->linear(y, ldy, g->x, g->ldx, g->rows, w, p0, p1, bias);
        else
            f->mm->linear_bf16(y, ldy, g->x, g->ldx, g->rows, w, p0, p1, bias);
    }
}

/* Chunks of the member with jobs index j. */
static size_t chunks_of(const grp *g, int j)
{
    return (units_of(g->w[j]) + g->chunk - 1) / g->chunk;
}

/* Prefill: chunks of panel pairs claimed from g->next until none is left,
 * so that a thread that runs slower (the other vCPU busy, a host
 * interrupt) takes fewer instead of keeping the other waiting at the end
 * of the region.  Chunks are numbered row block by row block, member by
 * member; a thread's claims only grow, so it converts each row block of
 * activations once for all members (x_ready) instead of once per call. */
static void grp_run_chunks(const eng_fp8 *f, grp *g, int ith)
{
    void *scratch = (char *)f->mm_scratch + (size_t)ith * f->mm_scratch_each;
    size_t rb = kn_fp8mm_mblock(), have = SIZE_MAX;   /* row block now in scratch */
    bool have_w8 = false;

    for (;;) {
        size_t c = atomic_fetch_add_explicit(&g->next, 1, memory_order_relaxed);
        if (c >= g->n_chunks)
            return;
        size_t b = c / g->per_block, u = c % g->per_block;
        int j = 0;
        for (; j < g->n; j++) {
            if (g->w[j] == NULL)
                continue;
            if (u < chunks_of(g, j))
                break;
            u -= chunks_of(g, j);
        }
        KN_ASSERT(j < g->n);
        const kn_fp8w *w = g->w[j];
        const eng_lin_job *job = &g->jobs[j];
        size_t np = kn_fp8w_panels(w), p0 = 2 * u * g->chunk;
        size_t p1 = p0 + 2 * g->chunk < np ? p0 + 2 * g->chunk : np;
        size_t m0 = b * rb, mr = g->rows - m0 < rb ? g->rows - m0 : rb;
        float *y = job->y + m0 * job->ldy;
        if (g->w8a8[j]) {
            f->mm->prefill_w8a8(y, job->ldy, f->xq + m0 * g->K, g->K, f->fmt, f->xs + m0, mr, w,
                                p0, p1, job->l->bias, scratch, have == b && have_w8);
            have = b, have_w8 = true;
        } else if (g->bf16) {
            f->mm->prefill_bf16(y, job->ldy, g->x + m0 * g->ldx, g->ldx, mr, w, p0, p1,
                                job->l->bias, scratch, have == b && !have_w8);
            have = b, have_w8 = false;
        } else {
            f->mm->linear(y, job->ldy, g->x + m0 * g->ldx, g->ldx, mr, w, p0, p1, job->l->bias);
        }
    }
}

/* Rows [r0, r1) of the shared activations (kn_fp8_act_quantize). */
static void grp_quantize(eng_fp8 *f, const grp *g, const float *sscale, size_t r0, size_t r1)
{
    int rc = kn_fp8_act_quantize(f->xq + r0 * g->K, g->K, f->xs + r0, g->x + r0 * g->ldx,
                                 g->ldx, r1 - r0, g->K, f->fmt, sscale);
    KN_ASSERT(rc == 0);   /* its only error is a bad static scale, refused before */
}

/* A member's static input scale, 0 when it has none usable (it then
 * runs weight-only). */
static float static_scale(const eng_lin_job *job)
{
    const eng_fp8lin *fl = job->l->fp8;
    float v = fl != NULL && fl->w8 != NULL ? fl->in_scale : 0.0f;
    return isfinite(v) && v > 0.0f ? v : 0.0f;
}

/* The static input scale the FP8 members share; 0 when none has one, -1
 * when two differ (the group then runs member by member). */
static float shared_static_scale(const eng_lin_job *jobs, int n)
{
    float s = 0.0f;
    for (int j = 0; j < n; j++) {
        float v = static_scale(&jobs[j]);
        if (v > 0.0f && s > 0.0f && v != s)
            return -1.0f;
        if (v > 0.0f)
            s = v;
    }
    return s;
}

/* Fills g; false when no member is an FP8 product.  Outside QUANTIZE
 * only the FP8 weights of a checkpoint (which have no other form, l->w
 * NULL) are products here: exact, f32 activations. */
static bool grp_plan(eng_model *m, grp *g, int nth)
{
    eng_fp8 *f = m->fp8;
    bool any_w8a8 = false, quantize = f->mode == QT_MODE_QUANTIZE;
    const kn_fp8w *w0 = NULL;

    for (int j = 0; j < g->n; j++) {
        const eng_fp8lin *fl = g->jobs[j].l->fp8;
        g->w[j] = fl != NULL && (quantize || g->jobs[j].l->w == NULL) ? fl->w8 : NULL;
        if (g->w[j] == NULL)
            continue;
        g->units += units_of(g->w[j]);
        w0 = g->w[j];
        if (!quantize)
            continue;
        g->w8a8[j] = f->opts.act == ENG_FP8_ACT_DYNAMIC ||
                     (f->opts.act == ENG_FP8_ACT_STATIC && static_scale(&g->jobs[j]) > 0.0f);
        any_w8a8 |= g->w8a8[j];
    }
    if (w0 == NULL)
        return false;
    if (any_w8a8 && reserve_act(f, g->rows * g->K, g->rows) < 0) {
        memset(g->w8a8, 0, sizeof(g->w8a8));   /* out of memory: weight-only still answers */
        any_w8a8 = false;
    }
    /* bf16 activations only when asked for, in QUANTIZE: in every other
     * mode an FP8 weight of a checkpoint stands for its exact f32 value. */
    g->bf16 = quantize && f->opts.bf16_act;
    /* Large M: the prefill kernels for W8A8 and bf16 products (the exact
     * f32 product has none); without their scratch the small-M kernels
     * still give the answer. */
    g->prefill = (any_w8a8 || g->bf16) && prefill_pays(g->rows, g->K) &&
                 reserve_scratch(f, kn_fp8mm_scratch_size(w0), nth) == 0;
    if (g->prefill) {
        /* about 8 chunks per thread and row block: small enough to even
         * out the threads, large enough to keep the per-call cost (the
         * first pair's weights not prefetched) under a few percent */
        size_t rb = kn_fp8mm_mblock();
        atomic_init(&g->next, 0);
        g->chunk = g->units / ((size_t)nth * 8);
        g->chunk = g->chunk > 0 ? g->chunk : 1;
        for (int j = 0; j < g->n; j++)
            g->per_block += g->w[j] != NULL ? chunks_of(g, j) : 0;
        g->n_chunks = (g->rows + rb - 1) / rb * g->per_block;
    }
    return true;
}

int eng__fp8_linears(eng_model *m, const float *x, size_t ldx, size_t rows,
                     const eng_lin_job *jobs, int n, bool *done)
{
    eng_fp8 *f = m->fp8;
    grp g = {.jobs = jobs, .n = n, .x = x, .ldx = ldx, .rows = rows};
    float sscale = 0.0f;
    bool quant = false;
    long work = 0;
    int nth = n_threads(m), n_done = 0;

    KN_ASSERT(n >= 1 && n <= ENG_LIN_GROUP_MAX);
    g.K = (size_t)jobs[0].l->n_in;
    for (int j = 0; j < n; j++) {
        KN_ASSERT((size_t)jobs[j].l->n_in == g.K);
        done[j] = false;
    }
    if (f == NULL)
        return 0;
    if (f->mode == QT_MODE_MEASURE)
        for (int j = 0; j < n; j++) {
            const eng_fp8lin *fl = jobs[j].l->fp8;
            if (fl != NULL && fl->mod != NULL)
                observe_rows(fl->mod, QT_SLOT_INPUT, x, ldx, g.K, rows);
        }
    if (f->mode == QT_MODE_QUANTIZE && f->opts.act == ENG_FP8_ACT_STATIC &&
        (sscale = shared_static_scale(jobs, n)) < 0.0f) {
        for (int j = 0; j < n; j++)   /* different input scales: one quantization each */
            n_done += eng__fp8_linears(m, x, ldx, rows, jobs + j, 1, done + j);
        return n_done;
    }
    if (!grp_plan(m, &g, nth))
        return 0;
    for (int j = 0; j < n; j++) {
        if (g.w[j] == NULL)
            continue;
        quant |= g.w8a8[j];
        work += (long)rows * jobs[j].l->n_out * jobs[j].l->n_in;
        done[j] = true;
        n_done++;
    }
    const float *sp = sscale > 0.0f ? &sscale : NULL;
    /* Few rows (decode): quantized here, which saves the region a barrier. */
    bool quant_inside = quant && rows > FP8_PREFILL_ROWS;
    if (quant && !quant_inside)
        grp_quantize(f, &g, sp, 0, rows);
#pragma omp parallel num_threads(nth) if (work >= FP8_PAR_MIN_WORK)
    {
        int ith = omp_get_thread_num(), nt = omp_get_num_threads();
        if (quant_inside) {
            /* each thread quantizes its rows, once for every member */
            grp_quantize(f, &g, sp, rows * (size_t)ith / (size_t)nt,
                         rows * (size_t)(ith + 1) / (size_t)nt);
#pragma omp barrier
        }
        if (g.prefill)
            grp_run_chunks(f, &g, ith);
        else
            grp_run(f, &g, ith, nt);
    }
    return n_done;
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
