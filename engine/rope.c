/* rope.c: rotary-embedding frequencies for the rotate-half convention and
 * the scaling variants of model-formats.md §2.5 (default, linear, dynamic,
 * llama3, yarn).
 *
 * Choice for "dynamic": HF rescales the base only once a sequence grows
 * past max_position_embeddings; we cap every sequence at that length (see
 * eng_seq_new), so within it dynamic equals default, exactly as in HF.
 * As in HF, inv_freq = 1 / base^(2i/R) is formed in float32, and the angle
 * float(pos) * inv_freq is a float32 product; cos and sin of that angle are
 * rounded to float32 and multiplied by the attention factor (yarn). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "engine/engine-int.h"

static double yarn_mscale(double s, double k)
{
    return s <= 1.0 ? 1.0 : 0.1 * k * log(s) + 1.0;
}

static void rope_llama3(const eng_model_config *c, float *inv, int half)
{
    double L0 = c->rope_orig_max_pos, lf = c->rope_low_freq, hf = c->rope_high_freq;
    double s = c->rope_factor, low_wl = L0 / lf, high_wl = L0 / hf;
    for (int i = 0; i < half; i++) {
        double f = inv[i], wl = 2.0 * M_PI / f;
        if (wl < high_wl)
            continue;
        if (wl > low_wl) {
            inv[i] = (float)(f / s);
        } else {
            double t = (L0 / wl - lf) / (hf - lf);
            inv[i] = (float)((1.0 - t) * f / s + t * f);
        }
    }
}

static float rope_yarn(const eng_model_config *c, float *inv, int R)
{
    double base = c->rope_theta, s = c->rope_factor, L0 = c->rope_orig_max_pos;
    double lo = R * log(L0 / (c->rope_beta_fast * 2 * M_PI)) / (2 * log(base));
    double hi = R * log(L0 / (c->rope_beta_slow * 2 * M_PI)) / (2 * log(base));
    if (c->rope_truncate) {
        lo = floor(lo);
        hi = ceil(hi);
    }
    lo = lo > 0 ? lo : 0;
    hi = hi < R - 1 ? hi : R - 1;
    if (lo == hi)
        hi += 0.001;
    for (int i = 0; i < R / 2; i++) {
        double ramp = (i - lo) / (hi - lo);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double w_ex = 1.0 - ramp, f = inv[i];
        inv[i] = (float)((f / s) * (1.0 - w_ex) + f * w_ex);
    }
    if (c->rope_attn_factor > 0)
        return (float)c->rope_attn_factor;
    if (c->rope_mscale != 0 && c->rope_mscale_all_dim != 0)
        return (float)(yarn_mscale(s, c->rope_mscale) / yarn_mscale(s, c->rope_mscale_all_dim));
    return (float)yarn_mscale(s, 1.0);
}

int eng__rope_init(eng_model *m, char *err, size_t errlen)
{
    const eng_model_config *c = &m->cfg;
    int R = (int)(c->head_size * c->partial_rotary);

    R -= R % 2;
    if (R < 2) {
        kn_errf(err, errlen, "%s: rotary dimension %d (head_dim %d x partial_rotary_factor "
                "%g) is too small", c->arch_name, R, c->head_size, (double)c->partial_rotary);
        return ENG_E_FORMAT;
    }
    if (R > 1024) {   /* forward.c keeps one position's cos/sin on the stack */
        kn_errf(err, errlen, "%s: rotary dimension %d is larger than the supported 1024",
                c->arch_name, R);
        return ENG_E_UNSUPPORTED;
    }
    m->rot_dim = R;
    if ((m->inv_freq = malloc(sizeof(float) * (size_t)(R / 2))) == NULL)
        return -ENOMEM;
    for (int i = 0; i < R / 2; i++)
        m->inv_freq[i] = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)R);
    m->attn_factor = 1.0f;
    switch (c->rope_type) {
    case ENG_ROPE_LINEAR:
        for (int i = 0; i < R / 2; i++)
            m->inv_freq[i] = (float)(m->inv_freq[i] / c->rope_factor);
        break;
    case ENG_ROPE_LLAMA3:
        rope_llama3(c, m->inv_freq, R / 2);
        break;
    case ENG_ROPE_YARN:
        m->attn_factor = rope_yarn(c, m->inv_freq, R);
        break;
    default:   /* default; dynamic within max_position_embeddings (see top) */
        break;
    }
    return 0;
}

void eng__rope_cos_sin(const eng_model *m, int pos, float *cos_out, float *sin_out)
{
    for (int i = 0; i < m->rot_dim / 2; i++) {
        float ang = (float)pos * m->inv_freq[i];
        cos_out[i] = (float)cos((double)ang) * m->attn_factor;
        sin_out[i] = (float)sin((double)ang) * m->attn_factor;
    }
}
