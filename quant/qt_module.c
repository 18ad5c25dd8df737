/* qt_module.c: quantizer state of a model's modules (issue 5's prepare):
 * one qt_module per selected module, keyed by its state-dict name, with
 * input/weight/output slots holding the INC running maxima (per tensor or
 * per channel), optional delayed-scaling history, and the static descales
 * computed by a scale method.  Lookup is a linear scan: it runs at load
 * and at file boundaries only, never per token. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant-int.h"

#define QT_MAX_IN 3
#define QT_MAX_OUT 2

typedef struct qt_tensor {
    _Atomic uint32_t maxabs;      /* bits of a float >= 0: atomic max */
    atomic_bool      observed;
    _Atomic uint64_t n_nan;
    float           *ch;          /* [n_ch] per-channel maxima, or NULL */
    size_t           n_ch;
    float           *descale;     /* [n_descale] static scales, or NULL */
    size_t           n_descale;
} qt_tensor;

struct qt_module {
    char        *name;
    qt_mod_type  type;
    size_t       w_rows, w_cols;  /* Linear weight [out, in] */
    size_t       n_ch_in;
    bool         per_channel;     /* Linear under maxabs_per_channel */
    bool         measure_output;
    qt_tensor    in[QT_MAX_IN];
    qt_tensor    w;
    qt_tensor    out[QT_MAX_OUT];
    qt_history  *hist;            /* slots: inputs, weight, outputs; or NULL */
};

struct qt_modset {
    qt_module **mods;
    size_t      n, cap;
    qt_observer observer;
    bool        measure_output[QT_MOD_COUNT];
    bool        have_recipe;
    qt_recipe   recipe;
};

qt_modset *qt_modset_new(const qt_config *c, const qt_recipe *recipe)
{
    qt_modset *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->observer = qt_config_observer(c);
    for (int t = 0; t < QT_MOD_COUNT; t++)
        s->measure_output[t] = qt_config_measures_output(c, (qt_mod_type)t);
    if (recipe != NULL) {
        s->have_recipe = true;
        s->recipe = *recipe;
    }
    return s;
}

static void tensor_cleanup(qt_tensor *t)
{
    free(t->ch);
    free(t->descale);
}

static void module_free(qt_module *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < QT_MAX_IN; i++)
        tensor_cleanup(&m->in[i]);
    for (int i = 0; i < QT_MAX_OUT; i++)
        tensor_cleanup(&m->out[i]);
    tensor_cleanup(&m->w);
    qt_history_free(m->hist);
    free(m->name);
    free(m);
}

void qt_modset_free(qt_modset *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        module_free(s->mods[i]);
    free(s->mods);
    free(s);
}

static qt_tensor *slot_tensor(qt_module *m, qt_slot slot, int idx)
{
    switch (slot) {
    case QT_SLOT_INPUT:
        return idx >= 0 && idx < qt_mod_type_inputs(m->type) ? &m->in[idx] : NULL;
    case QT_SLOT_WEIGHT:
        return idx == 0 && qt_mod_type_has_weight(m->type) ? &m->w : NULL;
    case QT_SLOT_OUTPUT:
        return idx >= 0 && idx < qt_mod_type_outputs(m->type) ? &m->out[idx] : NULL;
    }
    return NULL;
}

static const qt_tensor *slot_tensor_c(const qt_module *m, qt_slot slot, int idx)
{
    return slot_tensor((qt_module *)m, slot, idx);
}

size_t qt__module_expected_len(const qt_module *m, qt_slot slot, int idx)
{
    (void)idx;
    if (!m->per_channel)
        return 1;
    switch (slot) {
    case QT_SLOT_INPUT: return m->n_ch_in;
    case QT_SLOT_WEIGHT: return m->w_rows;
    case QT_SLOT_OUTPUT: return m->w_rows;
    }
    return 0;
}

static int tensor_alloc_ch(qt_tensor *t, size_t n_ch)
{
    if (n_ch == 0)
        return -EINVAL;
    if ((t->ch = calloc(n_ch, sizeof(float))) == NULL)
        return -ENOMEM;
    t->n_ch = n_ch;
    return 0;
}

int qt_modset_add(qt_modset *s, const char *name, qt_mod_type t, size_t w_rows, size_t w_cols,
                  size_t n_ch_in, qt_module **out, char *err, size_t errlen)
{
    qt_module *m = NULL;
    int rc = -ENOMEM;

    if (out != NULL)
        *out = NULL;
    if ((unsigned)t >= QT_MOD_COUNT || name == NULL || name[0] == '\0') {
        kn_errf(err, errlen, "module \"%s\": bad type or empty name", name ? name : "");
        return -EINVAL;
    }
    if (qt_mod_type_has_weight(t) && (w_rows == 0 || w_cols == 0)) {
        kn_errf(err, errlen, "module \"%s\": Linear needs a weight shape, got %zux%zu", name,
                w_rows, w_cols);
        return -EINVAL;
    }
    if (qt_modset_find(s, name) != NULL) {
        kn_errf(err, errlen, "module \"%s\": registered twice", name);
        return QT_E_DUPLICATE;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        qt_module **mods = realloc(s->mods, cap * sizeof(*mods));
        if (mods == NULL)
            return -ENOMEM;
        s->mods = mods;
        s->cap = cap;
    }
    if ((m = calloc(1, sizeof(*m))) == NULL || (m->name = strdup(name)) == NULL)
        goto fail;
    m->type = t;
    m->w_rows = w_rows;
    m->w_cols = w_cols;
    m->n_ch_in = n_ch_in;
    m->measure_output = s->measure_output[t];
    /* INC's per-channel axes (§4.5) need the channel counts; we keep
     * them for Linear, where they are known from the weight. */
    m->per_channel = s->observer == QT_OBS_MAXABS_PER_CHANNEL && t == QT_MOD_LINEAR;
    if (m->per_channel) {
        if (n_ch_in == 0)
            n_ch_in = m->n_ch_in = w_cols;
        if ((rc = tensor_alloc_ch(&m->in[0], n_ch_in)) < 0 ||
            (rc = tensor_alloc_ch(&m->w, w_rows)) < 0 ||
            (rc = tensor_alloc_ch(&m->out[0], w_rows)) < 0)
            goto fail;
    }
    if (s->have_recipe) {
        int n_slots = qt_mod_type_inputs(t) + (qt_mod_type_has_weight(t) ? 1 : 0) +
                      qt_mod_type_outputs(t);
        float fmax[QT_MAX_IN + 1 + QT_MAX_OUT];
        for (int i = 0; i < n_slots; i++)
            fmax[i] = qt_format_max_fwd(s->recipe.fp8_format);
        rc = -ENOMEM;
        if ((m->hist = qt_history_new(n_slots, s->recipe.amax_history_len, fmax)) == NULL)
            goto fail;
    }
    s->mods[s->n++] = m;
    if (out != NULL)
        *out = m;
    return 0;

fail:
    module_free(m);
    return rc;
}

qt_module *qt_modset_find(const qt_modset *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->mods[i]->name, name) == 0)
            return s->mods[i];
    return NULL;
}

size_t qt_modset_count(const qt_modset *s) { return s->n; }
qt_module *qt_modset_at(const qt_modset *s, size_t i) { return i < s->n ? s->mods[i] : NULL; }

static void tensor_reset(qt_tensor *t)
{
    atomic_store(&t->maxabs, 0u);
    atomic_store(&t->observed, false);
    atomic_store(&t->n_nan, 0u);
    if (t->ch != NULL)
        memset(t->ch, 0, t->n_ch * sizeof(float));
}

void qt_modset_reset_measurements(qt_modset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        qt_module *m = s->mods[i];
        for (int k = 0; k < QT_MAX_IN; k++)
            tensor_reset(&m->in[k]);
        for (int k = 0; k < QT_MAX_OUT; k++)
            tensor_reset(&m->out[k]);
        tensor_reset(&m->w);
    }
}

const char *qt_module_name(const qt_module *m) { return m->name; }
qt_mod_type qt_module_type(const qt_module *m) { return m->type; }
qt_history *qt_module_history(qt_module *m) { return m->hist; }
bool qt__module_per_channel(const qt_module *m) { return m->per_channel; }
bool qt__module_measures_output(const qt_module *m) { return m->measure_output; }

int qt__module_n_tensors(const qt_module *m, qt_slot slot)
{
    switch (slot) {
    case QT_SLOT_INPUT: return qt_mod_type_inputs(m->type);
    case QT_SLOT_WEIGHT: return qt_mod_type_has_weight(m->type) ? 1 : 0;
    case QT_SLOT_OUTPUT: return m->measure_output ? qt_mod_type_outputs(m->type) : 0;
    }
    return 0;
}

static void atomic_max_f(_Atomic uint32_t *dst, float v)
{
    uint32_t want, have = atomic_load_explicit(dst, memory_order_relaxed);
    memcpy(&want, &v, 4);
    while (want > have &&
           !atomic_compare_exchange_weak_explicit(dst, &have, want, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

static float load_f(const _Atomic uint32_t *src)
{
    uint32_t u = atomic_load_explicit((_Atomic uint32_t *)src, memory_order_relaxed);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int hist_slot(const qt_module *m, qt_slot slot, int idx)
{
    int n_in = qt_mod_type_inputs(m->type), w = qt_mod_type_has_weight(m->type) ? 1 : 0;
    return slot == QT_SLOT_INPUT ? idx : slot == QT_SLOT_WEIGHT ? n_in : n_in + w + idx;
}

void qt_module_record_amax(qt_module *m, qt_slot slot, int idx, float amax)
{
    qt_tensor *t = slot_tensor(m, slot, idx);
    KN_ASSERT(t != NULL);
    if (m->hist != NULL)
        qt_history_record(m->hist, hist_slot(m, slot, idx), amax);
    if (slot == QT_SLOT_OUTPUT && !m->measure_output)
        return;
    if (isnan(amax)) {
        atomic_fetch_add_explicit(&t->n_nan, 1, memory_order_relaxed);
        return;
    }
    atomic_max_f(&t->maxabs, fabsf(amax));
    atomic_store_explicit(&t->observed, true, memory_order_relaxed);
}

int qt_module_observe(qt_module *m, qt_slot slot, int idx, const float *x, size_t n)
{
    qt_tensor *t = slot_tensor(m, slot, idx);
    size_t nan = 0;

    if (t == NULL)
        return -EINVAL;
    if (slot == QT_SLOT_OUTPUT && !m->measure_output)
        return 0;
    if (slot == QT_SLOT_WEIGHT && n != m->w_rows * m->w_cols)
        return -EINVAL;
    if (t->ch != NULL && n % t->n_ch != 0)
        return -EINVAL;
    /* This call's amax feeds the running maximum and the step's history
     * accumulator; the per-channel state is a second pass. */
    float a = qt_observe_maxabs(x, n, &nan);
    if (t->ch != NULL) {
        /* weight: axis 0 of [out, in]; inputs/outputs: axis -1. */
        if (slot == QT_SLOT_WEIGHT)
            (void)qt_observe_maxabs_channels(t->ch, x, 1, t->n_ch, m->w_cols);
        else
            (void)qt_observe_maxabs_channels(t->ch, x, n / t->n_ch, t->n_ch, 1);
    }
    atomic_max_f(&t->maxabs, a);
    atomic_fetch_add_explicit(&t->n_nan, nan, memory_order_relaxed);
    atomic_store_explicit(&t->observed, true, memory_order_relaxed);
    if (m->hist != NULL)
        qt_history_record(m->hist, hist_slot(m, slot, idx), a);
    return 0;
}

float qt_module_measured(const qt_module *m, qt_slot slot, int idx)
{
    const qt_tensor *t = slot_tensor_c(m, slot, idx);
    if (t == NULL || !atomic_load(&t->observed))
        return NAN;
    return load_f(&t->maxabs);
}

uint64_t qt_module_nan_count(const qt_module *m, qt_slot slot, int idx)
{
    const qt_tensor *t = slot_tensor_c(m, slot, idx);
    return t == NULL ? 0 : atomic_load(&t->n_nan);
}

bool qt_module_was_observed(const qt_module *m)
{
    for (int i = 0; i < qt_mod_type_inputs(m->type); i++)
        if (atomic_load(&m->in[i].observed))
            return true;
    return false;
}

const float *qt__module_measured_vec(const qt_module *m, qt_slot slot, int idx, size_t *n,
                                     float *scalar)
{
    const qt_tensor *t = slot_tensor_c(m, slot, idx);

    if (t == NULL || !atomic_load(&t->observed))
        return NULL;
    if (t->ch != NULL) {
        *n = t->n_ch;
        return t->ch;
    }
    *scalar = load_f(&t->maxabs);
    *n = 1;
    return scalar;
}

int qt__module_set_measured(qt_module *m, qt_slot slot, int idx, const float *vals, size_t n,
                            char *err, size_t errlen)
{
    qt_tensor *t = slot_tensor(m, slot, idx);
    size_t want = qt__module_expected_len(m, slot, idx);
    static const char *const names[] = {"inputs", "params.weight", "outputs"};

    if (t == NULL) {
        kn_errf(err, errlen, "module \"%s\": %s has no tensor %d", m->name, names[slot], idx);
        return QT_E_SHAPE;
    }
    if (n != want) {
        kn_errf(err, errlen, "module \"%s\": %s[%d] has %zu values, expected [%zu,1]",
                m->name, names[slot], idx, n, want);
        return QT_E_SHAPE;
    }
    float mx = 0.0f;
    for (size_t i = 0; i < n; i++)
        mx = fmaxf(mx, vals[i]);
    if (t->ch != NULL)
        memcpy(t->ch, vals, n * sizeof(float));
    uint32_t u;
    memcpy(&u, &mx, 4);
    atomic_store(&t->maxabs, u);
    atomic_store(&t->observed, true);
    return 0;
}

static int set_descales(qt_tensor *t, const float *v, size_t n)
{
    float *d = malloc(n * sizeof(float));
    if (d == NULL)
        return -ENOMEM;
    memcpy(d, v, n * sizeof(float));
    free(t->descale);
    t->descale = d;
    t->n_descale = n;
    return 0;
}

static int set_descale1(qt_tensor *t, float v)
{
    return set_descales(t, &v, 1);
}

/* The activation scale of one measured tensor; QT_E_NO_MEASURE if it
 * is needed and missing. */
static int act_scale(const qt_module *m, const qt_scale_params *p, qt_slot slot, int idx,
                     float *out, int *n_degen, char *err, size_t errlen)
{
    static const char *const names[] = {"inputs", "params.weight", "outputs"};
    bool degen = false;
    float mx = qt_module_measured(m, slot, idx);

    if (isnan(mx) && p->method != QT_SM_UNIT_SCALE &&
        p->method != QT_SM_HW_ALIGNED_SINGLE_SCALE) {
        kn_errf(err, errlen, "module \"%s\": %s[%d] was never measured (scale method %s needs "
                "it)", m->name, names[slot], idx, qt_scale_method_name(p->method));
        return QT_E_NO_MEASURE;
    }
    *out = qt_scale_act(p, mx, &degen);
    *n_degen += degen;
    return 0;
}

int qt_module_compute_scales(qt_module *m, const qt_scale_params *p_in, const float *w,
                             char *err, size_t errlen)
{
    float s[QT_MAX_IN + QT_MAX_OUT];
    int n_degen = 0, rc;
    int n_in = qt_mod_type_inputs(m->type);
    qt_scale_params pk = *p_in;
    const qt_scale_params *p = &pk;

    /* INC stores the KV cache in E4M3 whatever fp8_config says (§4.2),
     * so its scale maps onto E4M3's full scale. */
    if (m->type == QT_MOD_KV_CACHE)
        pk.fmt = KN_FP8_E4M3;

    if (m->type == QT_MOD_SOFTMAX) {
        /* No input quantization; the output scale comes from the
         * measured output (§4.7 maxabs_hw row). */
        if ((rc = set_descale1(&m->in[0], 1.0f)) < 0 ||
            (rc = act_scale(m, p, QT_SLOT_OUTPUT, 0, &s[0], &n_degen, err, errlen)) < 0 ||
            (rc = set_descale1(&m->out[0], s[0])) < 0)
            return rc;
        return n_degen;
    }
    for (int i = 0; i < n_in; i++) {
        if ((rc = act_scale(m, p, QT_SLOT_INPUT, i, &s[i], &n_degen, err, errlen)) < 0 ||
            (rc = set_descale1(&m->in[i], s[i])) < 0)
            return rc;
    }
    switch (m->type) {
    case QT_MOD_LINEAR: {
        size_t n_w = qt_scale_method_per_channel(p->method) ? m->w_rows : 1;
        float *sw;
        if (w == NULL) {
            kn_errf(err, errlen, "module \"%s\": Linear scales need the weight tensor", m->name);
            return -EINVAL;
        }
        if ((sw = malloc(m->w_rows * sizeof(float))) == NULL)
            return -ENOMEM;
        /* INC takes the weight maxabs from the weight itself, not from
         * the measurement file (§4.7). */
        if ((rc = qt_scale_weight(p, w, m->w_rows, m->w_cols, sw)) < 0) {
            free(sw);
            return rc;
        }
        n_degen += rc;
        rc = set_descales(&m->w, sw, n_w);
        /* Output scale = s_in * s_w (per channel for per-channel weights):
         * recorded only; the GEMM output is high precision. */
        for (size_t o = 0; rc == 0 && o < n_w; o++)
            sw[o] *= s[0];
        if (rc == 0)
            rc = set_descales(&m->out[0], sw, n_w);
        free(sw);
        return rc < 0 ? rc : n_degen;
    }
    case QT_MOD_MATMUL:
        rc = set_descale1(&m->out[0], s[0] * s[1]);
        break;
    case QT_MOD_KV_CACHE:
        rc = set_descale1(&m->out[0], s[0]);   /* reads dequantize with the input scale */
        break;
    case QT_MOD_FUSED_SDPA:
        /* outputs[0]: attention output; outputs[1]: the softmax amax,
         * whose scale is INC's 4th input scale. */
        for (int j = 0; j < 2; j++) {
            if ((rc = act_scale(m, p, QT_SLOT_OUTPUT, j, &s[n_in + j], &n_degen, err,
                                errlen)) < 0 ||
                (rc = set_descale1(&m->out[j], s[n_in + j])) < 0)
                return rc;
        }
        break;
    default:
        rc = -EINVAL;
        break;
    }
    return rc < 0 ? rc : n_degen;
}

const float *qt_module_descales(const qt_module *m, qt_slot slot, int idx, size_t *n)
{
    const qt_tensor *t = slot_tensor_c(m, slot, idx);
    if (t == NULL || t->descale == NULL) {
        if (n != NULL)
            *n = 0;
        return NULL;
    }
    if (n != NULL)
        *n = t->n_descale;
    return t->descale;
}
