/* kn_fp8mm_ref.c: the reference (specification) of the FP8 weight
 * products, the activation quantiser and the variant list.  Plain C in
 * the obvious order: each weight decoded exactly, multiplied by its scale
 * in f32, products and sums in f32. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kn_fp8mm-int.h"

/* f32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN. */
static float round_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0)
        u |= 0x00400000u;
    else
        u += 0x7FFFu + ((u >> 16) & 1u);
    u &= 0xFFFF0000u;
    memcpy(&x, &u, sizeof(x));
    return x;
}

static size_t panel_end_row(const kn_fp8w *w, size_t p1)
{
    size_t n1 = p1 * KN_FP8W_PANEL;
    return n1 < w->N ? n1 : w->N;
}

/* Shared by linear and linear_bf16: round says whether x goes to bf16. */
static void linear_common(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                          const kn_fp8w *w, size_t p0, size_t p1, const float *bias, bool round)
{
    const float *dec = kn__fp8_table(w->fmt);
    KN_ASSERT(p0 <= p1 && p1 <= w->n_panels);
    for (size_t m = 0; m < M; m++)
        for (size_t n = p0 * KN_FP8W_PANEL; n < panel_end_row(w, p1); n++) {
            float acc = 0.0f;
            for (size_t k = 0; k < w->K; k++) {
                float xv = round ? round_bf16(x[m * ldx + k]) : x[m * ldx + k];
                acc += xv * (dec[kn_fp8w_code(w, n, k)] * kn_fp8w_scale_at(w, n, k));
            }
            y[m * ldy + n] = acc + (bias ? bias[n] : 0.0f);
        }
}

static void ref_linear(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                       const kn_fp8w *w, size_t p0, size_t p1, const float *bias)
{
    linear_common(y, ldy, x, ldx, M, w, p0, p1, bias, false);
}

static void ref_linear_bf16(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                            const kn_fp8w *w, size_t p0, size_t p1, const float *bias)
{
    linear_common(y, ldy, x, ldx, M, w, p0, p1, bias, true);
}

static void ref_linear_w8a8(float *y, size_t ldy, const uint8_t *xq, size_t ldq,
                            kn_fp8_format xfmt, const float *xs, size_t M, const kn_fp8w *w,
                            size_t p0, size_t p1, const float *bias)
{
    const float *dw = kn__fp8_table(w->fmt), *dx = kn__fp8_table(xfmt);
    KN_ASSERT(p0 <= p1 && p1 <= w->n_panels);
    for (size_t m = 0; m < M; m++)
        for (size_t n = p0 * KN_FP8W_PANEL; n < panel_end_row(w, p1); n++) {
            float acc = 0.0f, out;
            if (w->sk == KN_FP8_SCALE_BLOCK) {
                for (size_t k0 = 0; k0 < w->K; k0 += KN_FP8W_BLOCK) {
                    float bacc = 0.0f;
                    for (size_t k = k0; k < w->K && k < k0 + KN_FP8W_BLOCK; k++)
                        bacc += dx[xq[m * ldq + k]] * dw[kn_fp8w_code(w, n, k)];
                    acc += bacc * kn_fp8w_scale_at(w, n, k0);
                }
                out = acc * xs[m];
            } else {
                for (size_t k = 0; k < w->K; k++)
                    acc += dx[xq[m * ldq + k]] * dw[kn_fp8w_code(w, n, k)];
                out = acc * xs[m] * kn_fp8w_scale_at(w, n, 0);
            }
            y[m * ldy + n] = out + (bias ? bias[n] : 0.0f);
        }
}

static void ref_prefill_bf16(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                             const kn_fp8w *w, size_t p0, size_t p1, const float *bias,
                             void *scratch, bool x_ready)
{
    (void)scratch, (void)x_ready;   /* nothing converted ahead */
    ref_linear_bf16(y, ldy, x, ldx, M, w, p0, p1, bias);
}

static void ref_prefill_w8a8(float *y, size_t ldy, const uint8_t *xq, size_t ldq,
                             kn_fp8_format xfmt, const float *xs, size_t M, const kn_fp8w *w,
                             size_t p0, size_t p1, const float *bias, void *scratch,
                             bool x_ready)
{
    (void)scratch, (void)x_ready;
    ref_linear_w8a8(y, ldy, xq, ldq, xfmt, xs, M, w, p0, p1, bias);
}

size_t kn_fp8mm_scratch_size(const kn_fp8w *w)
{
    /* activation block in bf16 plus one bf16 copy of a pair of panels */
    size_t kp = w->k_chunks * KN_FP8W_KCHUNK;
    return (KN_FP8MM_MBLOCK + 2 * KN_FP8W_PANEL) * kp * sizeof(uint16_t) + 64;
}

size_t kn_fp8mm_mblock(void)
{
    return KN_FP8MM_MBLOCK;
}

int kn_fp8_act_quantize(uint8_t *xq, size_t ldq, float *xs, const float *x, size_t ldx,
                        size_t M, size_t K, kn_fp8_format fmt, const float *static_scale)
{
    const kn_ops *ops = kn_active() != NULL ? kn_active() : kn_variant(0);

    if (static_scale != NULL && !(isfinite(*static_scale) && *static_scale > 0.0f))
        return -EINVAL;
    for (size_t m = 0; m < M; m++) {
        float s;
        if (static_scale != NULL) {
            s = *static_scale;
        } else {
            /* amax / max(fmt): the row's largest value lands on the largest
             * code (model-formats.md 3.3, dynamic 'token'); an all-zero row
             * (or inf amax) gets 1.0 so the scale stays finite and positive. */
            float amax = ops->amax_f32(x + m * ldx, K, NULL);
            s = amax > 0.0f && isfinite(amax) ? amax / kn_fp8_max(fmt) : 1.0f;
            if (!(s > 0.0f))
                s = 1.0f;   /* amax so small that the quotient underflowed */
        }
        xs[m] = s;
        ops->f32_to_fp8(xq + m * ldq, x + m * ldx, K, fmt, s, KN_FP8_DIVIDE | KN_FP8_SATURATE);
    }
    return 0;
}

static const kn_fp8mm_ops g_ref = {"ref", ref_linear, ref_linear_bf16, ref_linear_w8a8,
                                   ref_prefill_bf16, ref_prefill_w8a8};

#ifdef HAVE_KN_AVX512
extern const kn_fp8mm_ops kn__fp8mm_avx512;
static const kn_fp8mm_ops *const g_variants[] = {&g_ref, &kn__fp8mm_avx512};
#else
static const kn_fp8mm_ops *const g_variants[] = {&g_ref};
#endif

int kn_fp8mm_variant_count(void)
{
    return (int)(sizeof(g_variants) / sizeof(g_variants[0]));
}

const kn_fp8mm_ops *kn_fp8mm_variant(int i)
{
    return i >= 0 && i < kn_fp8mm_variant_count() ? g_variants[i] : NULL;
}

bool kn_fp8mm_usable(const kn_fp8mm_ops *ops)
{
    if (ops == &g_ref)
        return true;
#ifdef HAVE_KN_AVX512
    /* The AVX-512 file is compiled with every flag of KN_AVX512_FLAGS
     * (bf16 and vbmi included): all must be present. */
    if (ops == &kn__fp8mm_avx512)
        return kn__cpu_has_avx512();
#endif
    return false;
}

const kn_fp8mm_ops *kn_fp8mm_select(const char *name)
{
    for (int i = kn_fp8mm_variant_count() - 1; i >= 0; i--) {
        const kn_fp8mm_ops *v = g_variants[i];
        if (name != NULL && strcmp(name, v->name) != 0)
            continue;
        if (kn_fp8mm_usable(v))
            return v;
        if (name != NULL)
            return NULL;
    }
    return NULL;
}
