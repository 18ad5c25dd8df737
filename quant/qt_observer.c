/* qt_observer.c: INC's maxabs observers (§4.5) as plain functions over
 * caller buffers: per tensor, and per channel along one axis.  NaN is
 * ignored and counted, not propagated as in INC (§6.2.10); +inf is kept,
 * so the tensor's measurement is later refused or given scale 1. */
#include "config.h"

#include <math.h>

#include "quant/quant-int.h"

float qt_observe_maxabs(const float *x, size_t n, size_t *n_nan)
{
    float m = 0.0f;
    size_t nan = 0;

    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (isnan(a))
            nan++;
        else if (a > m)
            m = a;
    }
    if (n_nan != NULL)
        *n_nan = nan;
    return m;
}

size_t qt_observe_maxabs_channels(float *state, const float *x, size_t outer, size_t n_ch,
                                  size_t inner)
{
    size_t nan = 0;

    for (size_t o = 0; o < outer; o++) {
        for (size_t c = 0; c < n_ch; c++) {
            const float *p = x + (o * n_ch + c) * inner;
            for (size_t i = 0; i < inner; i++) {
                float a = fabsf(p[i]);
                if (isnan(a))
                    nan++;
                else if (a > state[c])
                    state[c] = a;
            }
        }
    }
    return nan;
}
