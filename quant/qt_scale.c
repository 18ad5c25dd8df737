/* qt_scale.c: INC's scale methods (§4.7) in its divisor convention:
 * q = fp8(x / s).  Full scale by format and device, the pow2 and
 * Gaudi hardware-aligned roundings, activation scales from a measured
 * maxabs, weight scales per tensor or per output channel, with the MSE
 * searches.  Scales are computed in f32 (§6.1), not in hp_dtype. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "quant/quant-int.h"

static const char *const k_enum_names[QT_SM_COUNT] = {
    [QT_SM_UNIT_SCALE] = "UNIT_SCALE",
    [QT_SM_MAXABS_HW] = "MAXABS_HW",
    [QT_SM_MAXABS_POW2] = "MAXABS_POW2",
    [QT_SM_MAXABS_ARBITRARY] = "MAXABS_ARBITRARY",
    [QT_SM_MAXABS_HW_OPT_WEIGHT] = "MAXABS_HW_OPT_WEIGHT",
    [QT_SM_MAXABS_POW2_OPT_WEIGHT] = "MAXABS_POW2_OPT_WEIGHT",
    [QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2] = "ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2",
    [QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_OPT_POW2] = "ACT_MAXABS_HW_WEIGHTS_PCS_OPT_POW2",
    [QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_MAXABS_POW2] = "ACT_MAXABS_POW2_WEIGHTS_PCS_MAXABS_POW2",
    [QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_OPT_POW2] = "ACT_MAXABS_POW2_WEIGHTS_PCS_OPT_POW2",
    [QT_SM_HW_ALIGNED_SINGLE_SCALE] = "HW_ALIGNED_SINGLE_SCALE",
};

const char *qt_scale_method_enum_name(qt_scale_method m)
{
    return (unsigned)m < QT_SM_COUNT ? k_enum_names[m] : "?";
}

bool qt_scale_method_per_channel(qt_scale_method m)
{
    return m == QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2 ||
           m == QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_OPT_POW2 ||
           m == QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_MAXABS_POW2 ||
           m == QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_OPT_POW2;
}

void qt_scale_params_of(qt_scale_params *p, const qt_config *c)
{
    p->method = qt_config_scale_method(c);
    p->fmt = qt_config_fp8_format(c);
    p->device = qt_config_device(c);
    p->input_backoff = qt_config_input_backoff(c);
    p->weight_backoff = qt_config_weight_backoff(c);
}

float qt_fullscale(kn_fp8_format fmt, qt_device dev)
{
    if (fmt == KN_FP8_E5M2)
        return 57344.0f;
    /* Gaudi2's E4M3 is the fnuz type: max 240 (INC >= 3.1, §4.7). */
    return dev == QT_DEV_GAUDI2 ? 240.0f : 448.0f;
}

float qt_pow2up(float s)
{
    int e;

    if (isnan(s) || isinf(s))
        return s;
    if (!(s > 0.0f))
        return 0.0f;
    float f = frexpf(s, &e);          /* s = f * 2^e, f in [0.5, 1) */
    return f == 0.5f ? s : ldexpf(1.0f, e);
}

/* Exponent range and step of the Gaudi E4M3 scale sets (§4.7): Gaudi2
 * biases {3,7,11,15} -> 2^4, 2^0, 2^-4, 2^-8; Gaudi3 biases 0..62 ->
 * 2^7 .. 2^-55, every power of two. */
static void hw_range(qt_device dev, int *lo, int *hi, int *step)
{
    if (dev == QT_DEV_GAUDI2) {
        *lo = -8; *hi = 4; *step = 4;
    } else {
        *lo = -55; *hi = 7; *step = 1;
    }
}

float qt_hw_align(float s, qt_device dev)
{
    int lo, hi, k, e;

    hw_range(dev, &lo, &hi, &k);
    if (isnan(s))
        return s;
    float sp = qt_pow2up(s);
    if (sp == 0.0f)
        return ldexpf(1.0f, lo);
    if (isinf(sp))
        return ldexpf(1.0f, hi);
    e = ilogbf(sp);                   /* exact: sp is a power of two */
    int q = e / k;                    /* ceil(e / k) for either sign */
    if (q * k < e)
        q++;
    e = q * k;
    if (e < lo) e = lo;
    if (e > hi) e = hi;
    return ldexpf(1.0f, e);
}

typedef enum { R_ID, R_POW2, R_HW } rounding;

static rounding act_rounding(qt_scale_method m)
{
    switch (m) {
    case QT_SM_MAXABS_HW:
    case QT_SM_MAXABS_HW_OPT_WEIGHT:
    case QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2:
    case QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_OPT_POW2:
        return R_HW;
    case QT_SM_MAXABS_POW2:
    case QT_SM_MAXABS_POW2_OPT_WEIGHT:
    case QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_MAXABS_POW2:
    case QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_OPT_POW2:
        return R_POW2;
    default:
        return R_ID;
    }
}

static float round_scale(rounding r, float s, qt_device dev)
{
    return r == R_HW ? qt_hw_align(s, dev) : r == R_POW2 ? qt_pow2up(s) : s;
}

static float single_scale(qt_device dev)
{
    /* INC >= 3.1 hw_aligned_single_scale: the first HW scale (16 on
     * Gaudi2, 128 on Gaudi3), not 1.0. */
    int lo, hi, k;
    hw_range(dev, &lo, &hi, &k);
    return ldexpf(1.0f, hi);
}

/* maxabs_scale(m, b) = m / (F * b), rounded; 1.0 where INC would give a
 * zero, NaN or infinite scale (§6.2.5). */
static float maxabs_scale(rounding r, float m, float fullscale, float backoff, qt_device dev,
                          bool *degenerate)
{
    if (!(m > 0.0f) || !isfinite(m)) {
        if (degenerate != NULL)
            *degenerate = true;
        return 1.0f;
    }
    float s = round_scale(r, m / (fullscale * backoff), dev);
    if (!(s > 0.0f) || !isfinite(s) || !isfinite(1.0f / s)) {
        if (degenerate != NULL)
            *degenerate = true;
        return 1.0f;
    }
    return s;
}

float qt_scale_act(const qt_scale_params *p, float m, bool *degenerate)
{
    if (degenerate != NULL)
        *degenerate = false;
    if (p->method == QT_SM_UNIT_SCALE)
        return 1.0f;
    if (p->method == QT_SM_HW_ALIGNED_SINGLE_SCALE)
        return single_scale(p->device);
    return maxabs_scale(act_rounding(p->method), m, qt_fullscale(p->fmt, p->device),
                        p->input_backoff, p->device, degenerate);
}

/* Squared error of x[n] quantized with descale c: sum (x - deq(q(x/c))*c)^2,
 * the cast saturating like the device cast.  q/d: scratch [n]. */
static double sq_error(const float *x, size_t n, float c, kn_fp8_format fmt, uint8_t *q,
                       float *d)
{
    const kn_ops *ops = kn_active();
    double e = 0.0;

    ops->f32_to_fp8(q, x, n, fmt, 1.0f / c, KN_FP8_SATURATE);
    ops->fp8_to_f32(d, q, n, fmt, c);
    for (size_t i = 0; i < n; i++) {
        double t = (double)x[i] - (double)d[i];
        e += t * t;
    }
    return e;
}

/* Per-tensor MSE search; ties go to the later candidate (INC's <=). */
static float opt_tensor(const qt_scale_params *p, const float *w, size_t rows, size_t cols,
                        const float *cand, size_t n_cand, uint8_t *q, float *d)
{
    double best_err = INFINITY;
    float best = cand[0];

    for (size_t k = 0; k < n_cand; k++) {
        double e = 0.0;
        for (size_t r = 0; r < rows; r++)
            e += sq_error(w + r * cols, cols, cand[k], p->fmt, q, d);
        if (e <= best_err) {
            best_err = e;
            best = cand[k];
        }
    }
    return best;
}

static float row_maxabs(const float *x, size_t n)
{
    return qt_observe_maxabs(x, n, NULL);
}

int qt_scale_weight(const qt_scale_params *p, const float *w, size_t rows, size_t cols,
                    float *scales)
{
    const float F = qt_fullscale(p->fmt, p->device);
    const float b = p->weight_backoff;
    uint8_t *q = NULL;
    float *d = NULL, cand[64];
    size_t n_cand = 0;
    bool degen = false;
    int n_degen = 0;

    switch (p->method) {
    case QT_SM_UNIT_SCALE:
        scales[0] = 1.0f;
        return 0;
    case QT_SM_HW_ALIGNED_SINGLE_SCALE:
        scales[0] = single_scale(p->device);
        return 0;
    case QT_SM_MAXABS_HW:
    case QT_SM_MAXABS_POW2:
    case QT_SM_MAXABS_ARBITRARY: {
        rounding r = p->method == QT_SM_MAXABS_HW ? R_HW
                   : p->method == QT_SM_MAXABS_POW2 ? R_POW2 : R_ID;
        scales[0] = maxabs_scale(r, row_maxabs(w, rows * cols), F, b, p->device, &degen);
        return degen ? 1 : 0;
    }
    case QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2:
    case QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_MAXABS_POW2:
        for (size_t o = 0; o < rows; o++) {
            degen = false;
            scales[o] = maxabs_scale(R_POW2, row_maxabs(w + o * cols, cols), F, b, p->device,
                                     &degen);
            n_degen += degen;
        }
        return n_degen;
    default:
        break;
    }

    /* The MSE searches. */
    if ((q = malloc(cols + 1)) == NULL || (d = malloc((cols + 1) * sizeof(float))) == NULL) {
        free(q);
        return -ENOMEM;
    }
    if (p->method == QT_SM_MAXABS_HW_OPT_WEIGHT || p->method == QT_SM_MAXABS_POW2_OPT_WEIGHT) {
        if (p->method == QT_SM_MAXABS_HW_OPT_WEIGHT) {
            /* The device's HW scales, in INC's order (bias ascending,
             * so the scale descends). */
            int lo, hi, k;
            hw_range(p->device, &lo, &hi, &k);
            for (int e = hi; e >= lo; e -= k)
                cand[n_cand++] = ldexpf(1.0f, e);
        } else {
            for (int e = -10; e <= 9; e++)       /* INC: 2^-10 .. 2^9 */
                cand[n_cand++] = ldexpf(1.0f, e);
        }
        scales[0] = opt_tensor(p, w, rows, cols, cand, n_cand, q, d);
    } else {
        /* Per output channel: reference r = pow2up(max|W[o,:]| / (F b)),
         * candidates r * 2^-3 .. r * 2^4, least squared error over the
         * row, ties to the earlier candidate (INC's <). */
        for (size_t o = 0; o < rows; o++) {
            const float *x = w + o * cols;
            degen = false;
            float ref = maxabs_scale(R_POW2, row_maxabs(x, cols), F, b, p->device, &degen);
            if (degen) {
                scales[o] = 1.0f;
                n_degen++;
                continue;
            }
            double best_err = INFINITY;
            float best = ref;
            for (int j = -3; j <= 4; j++) {
                float c = ldexpf(ref, j);
                if (!(c > 0.0f) || !isfinite(c) || !isfinite(1.0f / c))
                    continue;
                double e = sq_error(x, cols, c, p->fmt, q, d);
                if (e < best_err) {
                    best_err = e;
                    best = c;
                }
            }
            scales[o] = qt_pow2up(best);
        }
    }
    free(q);
    free(d);
    return n_degen;
}
