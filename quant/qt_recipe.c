/* qt_recipe.c: FP8 formats (§2.1), the DelayedScaling recipe defaults
 * (§2.2), the scale rule with its guards (§2.6, §6.1) and the amax history
 * of a scaling group (§2.4): select, roll, clear, IPEX row-order export.
 * The recipe's JSON form lives in qt_recipe_json.c. */
#include "config.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant-int.h"

kn_fp8_format qt_format_tensor(qt_format fmt, bool forward)
{
    /* IPEX get_fp8_dtype: E4M3 if the format is E4M3, or HYBRID and the
     * tensor is a forward tensor; otherwise E5M2. */
    if (fmt == QT_FORMAT_E4M3 || (fmt == QT_FORMAT_HYBRID && forward))
        return KN_FP8_E4M3;
    return KN_FP8_E5M2;
}

float qt_format_max_fwd(qt_format fmt)
{
    return qt_format_tensor(fmt, true) == KN_FP8_E4M3 ? 448.0f : 57344.0f;
}

float qt_format_max_bwd(qt_format fmt)
{
    return qt_format_tensor(fmt, false) == KN_FP8_E4M3 ? 448.0f : 57344.0f;
}

const char *qt_format_name(qt_format fmt)
{
    switch (fmt) {
    case QT_FORMAT_E4M3: return "E4M3";
    case QT_FORMAT_E5M2: return "E5M2";
    case QT_FORMAT_HYBRID: return "HYBRID";
    }
    return "?";
}

void qt_recipe_default(qt_recipe *r)
{
    /* TE 1.x / IPEX DelayedScaling() defaults; scale_rule POW2_DOWN is
     * IPEX's (§6.2.2). */
    r->margin = 0;
    r->interval = 1;
    r->fp8_format = QT_FORMAT_HYBRID;
    r->amax_history_len = 1024;
    r->amax_compute_algo = QT_AMAX_MAX;
    r->scale_rule = QT_SCALE_POW2_DOWN;
    r->reduce_amax = true;
}

float qt_recipe_mult(const qt_recipe *r, float amax, float fmax, float old_mult)
{
    /* TE's guard: a step that saw nothing (0), or a poisoned amax (NaN,
     * inf), keeps the old scale.  IPEX inverts the old scale on inf; we
     * do not copy that (§2.6). */
    if (!(amax > 0.0f) || !isfinite(amax))
        return old_mult;
    float ratio = fmax / amax;       /* f32, as TE and IPEX compute it */
    if (r->scale_rule == QT_SCALE_EXACT) {
        float m = ratio / ldexpf(1.0f, r->margin);
        if (isinf(m))
            return FLT_MAX;          /* tiny amax: TE PR #786 */
        if (m < FLT_MIN)
            return FLT_MIN;          /* not in TE; keeps descale finite */
        return m;
    }
    /* floor(log2(ratio)) exactly: frexpf gives ratio = f * 2^e with f in
     * [0.5, 1), so floor(log2 ratio) = e - 1 (no log2f rounding). */
    int e;
    if (isinf(ratio)) {
        e = 128;
    } else {
        (void)frexpf(ratio, &e);
        e -= 1;
    }
    e -= r->margin;
    if (e > 127)
        e = 127;                     /* IPEX would return inf here */
    if (e < -126)
        e = -126;                    /* keep 1/mult finite */
    return ldexpf(1.0f, e);
}

/* ------------------------------------------------------------ history */

struct qt_history {
    int               n;           /* slots */
    int               len;         /* L: rows including the accumulator */
    int               head;        /* ring index of the oldest completed value */
    _Atomic uint32_t *cur;         /* [n] accumulator, bits of a float >= 0 */
    float            *ring;        /* [(len-1) * n], ring row k = ring + k*n */
    float            *fmax;        /* [n] */
    float            *mult;        /* [n] */
    float            *descale;     /* [n] */
    _Atomic uint64_t *n_nan;       /* [n] */
    _Atomic uint64_t *n_inf;       /* [n] */
};

qt_history *qt_history_new(int n_slots, int len, const float *fmax)
{
    qt_history *h;

    if (n_slots < 1 || len < 1 || fmax == NULL)
        return NULL;
    if ((h = calloc(1, sizeof(*h))) == NULL)
        return NULL;
    h->n = n_slots;
    h->len = len;
    h->cur = calloc((size_t)n_slots, sizeof(*h->cur));
    h->ring = calloc((size_t)(len - 1) * (size_t)n_slots + 1, sizeof(float));
    h->fmax = malloc((size_t)n_slots * sizeof(float));
    h->mult = malloc((size_t)n_slots * sizeof(float));
    h->descale = malloc((size_t)n_slots * sizeof(float));
    h->n_nan = calloc((size_t)n_slots, sizeof(*h->n_nan));
    h->n_inf = calloc((size_t)n_slots, sizeof(*h->n_inf));
    if (!h->cur || !h->ring || !h->fmax || !h->mult || !h->descale || !h->n_nan || !h->n_inf) {
        qt_history_free(h);
        return NULL;
    }
    for (int i = 0; i < n_slots; i++) {
        atomic_init(&h->cur[i], 0u);
        atomic_init(&h->n_nan[i], 0u);
        atomic_init(&h->n_inf[i], 0u);
        h->fmax[i] = fmax[i];
        h->mult[i] = 1.0f;
        h->descale[i] = 1.0f;
    }
    return h;
}

void qt_history_free(qt_history *h)
{
    if (h == NULL)
        return;
    free(h->cur);
    free(h->ring);
    free(h->fmax);
    free(h->mult);
    free(h->descale);
    free(h->n_nan);
    free(h->n_inf);
    free(h);
}

int qt_history_len(const qt_history *h) { return h->len; }
int qt_history_slots(const qt_history *h) { return h->n; }

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

void qt_history_record(qt_history *h, int slot, float amax)
{
    KN_ASSERT(slot >= 0 && slot < h->n);
    if (isnan(amax)) {
        atomic_fetch_add_explicit(&h->n_nan[slot], 1, memory_order_relaxed);
        return;
    }
    if (isinf(amax))
        atomic_fetch_add_explicit(&h->n_inf[slot], 1, memory_order_relaxed);
    /* For floats >= 0 the bit patterns order like the values, so an
     * unsigned compare-and-swap max is a float max (TE's atomic max). */
    uint32_t want = f2u(fabsf(amax));
    uint32_t have = atomic_load_explicit(&h->cur[slot], memory_order_relaxed);
    while (want > have &&
           !atomic_compare_exchange_weak_explicit(&h->cur[slot], &have, want,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

static float *ring_row(const qt_history *h, int k)   /* k: 0 = oldest */
{
    return h->ring + (size_t)((h->head + k) % (h->len - 1)) * (size_t)h->n;
}

int qt_history_update(qt_history *h, const qt_recipe *r, float *amax_sel)
{
    if (r->amax_history_len != h->len)
        return -EINVAL;
    for (int i = 0; i < h->n; i++) {
        /* Copy the accumulator before clearing it: IPEX zeroes row 0
         * through a view and selects 0 when L = 1 (§2.4). */
        float cur = u2f(atomic_exchange_explicit(&h->cur[i], 0u, memory_order_relaxed));
        float sel = cur;
        if (r->amax_compute_algo == QT_AMAX_MAX)
            for (int k = 0; k < h->len - 1; k++)
                sel = fmaxf(sel, ring_row(h, k)[i]);
        if (amax_sel != NULL)
            amax_sel[i] = sel;
        if (h->len > 1)
            ring_row(h, 0)[i] = cur;     /* overwrite the oldest; see head below */
        float m = qt_recipe_mult(r, sel, h->fmax[i], h->mult[i]);
        h->mult[i] = m;
        h->descale[i] = 1.0f / m;
    }
    /* The row just written becomes the newest: advance the oldest mark. */
    if (h->len > 1)
        h->head = (h->head + 1) % (h->len - 1);
    return 0;
}

void qt_history_export(const qt_history *h, float *rows)
{
    for (int i = 0; i < h->n; i++)
        rows[i] = u2f(atomic_load_explicit(&h->cur[i], memory_order_relaxed));
    for (int k = 0; k < h->len - 1; k++)
        memcpy(rows + (size_t)(k + 1) * (size_t)h->n, ring_row(h, k), (size_t)h->n * sizeof(float));
}

int qt_history_import(qt_history *h, const float *rows, char *err, size_t errlen)
{
    for (size_t j = 0; j < (size_t)h->len * (size_t)h->n; j++) {
        if (isnan(rows[j]) || rows[j] < 0.0f) {
            kn_errf(err, errlen, "amax history row %zu slot %zu: %g is not a valid amax",
                    j / (size_t)h->n, j % (size_t)h->n, (double)rows[j]);
            return -EINVAL;
        }
    }
    h->head = 0;
    for (int i = 0; i < h->n; i++)
        atomic_store_explicit(&h->cur[i], f2u(rows[i]), memory_order_relaxed);
    if (h->len > 1)
        memcpy(h->ring, rows + h->n, (size_t)(h->len - 1) * (size_t)h->n * sizeof(float));
    return 0;
}

float qt_history_mult(const qt_history *h, int slot) { return h->mult[slot]; }
float qt_history_descale(const qt_history *h, int slot) { return h->descale[slot]; }

int qt_history_set_mult(qt_history *h, int slot, float mult)
{
    if (slot < 0 || slot >= h->n || !(mult > 0.0f) || !isfinite(mult) || !isfinite(1.0f / mult))
        return -EINVAL;
    h->mult[slot] = mult;
    h->descale[slot] = 1.0f / mult;
    return 0;
}

uint64_t qt_history_nan_count(const qt_history *h, int slot)
{
    return atomic_load_explicit(&h->n_nan[slot], memory_order_relaxed);
}

uint64_t qt_history_inf_count(const qt_history *h, int slot)
{
    return atomic_load_explicit(&h->n_inf[slot], memory_order_relaxed);
}
