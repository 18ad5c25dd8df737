/* kn_math_ref.c: the reference (specification) of the forward-pass math,
 * the scalar helpers, and variant selection.  Plain C, obvious loop order. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

float kn_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

float kn_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
    float f;
    if (e == 31) {
        u = s | 0x7F800000u | (m << 13);                /* inf / NaN */
    } else if (e != 0) {
        u = s | ((e + 112) << 23) | (m << 13);          /* 112 = 127 - 15 */
    } else {
        f = ldexpf((float)m, -24);                      /* subnormal (or zero): exact */
        return s ? -f : f;
    }
    memcpy(&f, &u, sizeof(f));
    return f;
}

static inline float wload(const void *w, kn_wtype wt, size_t i)
{
    switch (wt) {
    case KN_W_BF16: return kn_bf16_to_f32(((const uint16_t *)w)[i]);
    case KN_W_F16:  return kn_f16_to_f32(((const uint16_t *)w)[i]);
    default:        return ((const float *)w)[i];
    }
}

void kn_widen(float *dst, const void *src, kn_wtype wt, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = wload(src, wt, i);
}

/* sum_k x[k] * w[w0 + k * step] in double, as four partial sums (k mod
 * 4), rounded once by the caller.  With one f32 chain per output, a
 * layer-1 input of check_fp8engine's model ended 45 ulps from its
 * double-precision value (terms cancel), enough to round to the other
 * FP8 neighbour and fail the comparison on CPUs without AVX-512; four
 * independent chains also run ~2.5x faster than one (K = 2048). */
static double dot_d(const float *x, const void *w, kn_wtype wt, size_t w0, size_t step, size_t K)
{
    double a[4] = {0.0, 0.0, 0.0, 0.0};
    size_t k = 0;

    for (; k + 4 <= K; k += 4)
        for (int j = 0; j < 4; j++)
            a[j] += (double)x[k + j] * wload(w, wt, w0 + (k + j) * step);
    for (; k < K; k++)
        a[k % 4] += (double)x[k] * wload(w, wt, w0 + k * step);
    return (a[0] + a[1]) + (a[2] + a[3]);
}

static void ref_linear(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                       const void *w, kn_wtype wt, size_t K, size_t n0, size_t n1,
                       const float *bias)
{
    for (size_t m = 0; m < M; m++)
        for (size_t n = n0; n < n1; n++)
            y[m * ldy + n] = (float)(dot_d(x + m * ldx, w, wt, n * K, 1, K) +
                                     (bias ? bias[n] : 0.0f));
}

static size_t wsize(kn_wtype wt)
{
    return wt == KN_W_F32 ? 4 : 2;
}

size_t kn_packed_size(kn_wtype wt, size_t N, size_t K)
{
    return (N + KN_PANEL - 1) / KN_PANEL * KN_PANEL * K * wsize(wt);
}

void kn_pack_weights(void *dst, const void *w, kn_wtype wt, size_t N, size_t K)
{
    size_t n_pan = (N + KN_PANEL - 1) / KN_PANEL;
    /* rows past N (the last panel's padding) must read as zeros */
    if (N % KN_PANEL != 0)
        memset(dst, 0, kn_packed_size(wt, N, K));
    for (size_t p = 0; p < n_pan; p++)
        for (size_t j = 0; j < KN_PANEL && p * KN_PANEL + j < N; j++) {
            size_t row = p * KN_PANEL + j;
            if (wt == KN_W_F32) {
                float *d = (float *)dst + p * K * KN_PANEL + j;
                const float *s = (const float *)w + row * K;
                for (size_t k = 0; k < K; k++)
                    d[k * KN_PANEL] = s[k];
            } else {
                uint16_t *d = (uint16_t *)dst + p * K * KN_PANEL + j;
                const uint16_t *s = (const uint16_t *)w + row * K;
                for (size_t k = 0; k < K; k++)
                    d[k * KN_PANEL] = s[k];
            }
        }
}

void kn_packed_row(float *dst, const void *wp, kn_wtype wt, size_t K, size_t n)
{
    size_t p = n / KN_PANEL, j = n % KN_PANEL;
    for (size_t k = 0; k < K; k++)
        dst[k] = wload(wp, wt, (p * K + k) * KN_PANEL + j);
}

static void ref_linear_packed(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                              const void *wp, kn_wtype wt, size_t K, size_t N, size_t p0,
                              size_t p1, const float *bias)
{
    for (size_t p = p0; p < p1; p++)
        for (size_t j = 0; j < KN_PANEL && p * KN_PANEL + j < N; j++)
            for (size_t m = 0; m < M; m++)
                y[m * ldy + p * KN_PANEL + j] =
                    (float)(dot_d(x + m * ldx, wp, wt, p * K * KN_PANEL + j, KN_PANEL, K) +
                            (bias ? bias[p * KN_PANEL + j] : 0.0f));
}

static float ref_dot(const float *a, const float *b, size_t n)
{
    return (float)dot_d(a, b, KN_W_F32, 0, 1, n);
}

static void ref_axpy(float *y, float a, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

void kn_rmsnorm(float *y, const float *x, const float *w, size_t n, float eps)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (size_t i = 0; i < n; i++)
        y[i] = w[i] * (x[i] * r);
}

void kn_softmax(float *x, size_t n)
{
    float mx = -INFINITY, sum = 0.0f;
    for (size_t i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (size_t i = 0; i < n; i++)
        x[i] /= sum;
}

void kn_silu_mul(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void kn_rope_half(float *x, const float *cos, const float *sin, size_t rot)
{
    size_t h = rot / 2;
    for (size_t i = 0; i < h; i++) {
        float a = x[i], b = x[i + h];
        x[i]     = a * cos[i] - b * sin[i];
        x[i + h] = b * cos[i] + a * sin[i];
    }
}

/* Two passes per (row, head): the largest score, then the exponentials
 * summed and the values accumulated, divided by the sum at the end. */
static void ref_attention(float *out, size_t ldo, const float *q, size_t ldq, size_t nq,
                          size_t nh, const float *k, const float *v, size_t ldkv, size_t hs,
                          const size_t *lo, const size_t *hi, float scale)
{
    KN_ASSERT(hs <= KN_ATTN_MAX_HS && nq * nh <= KN_ATTN_MAX_Q);
    for (size_t i = 0; i < nq; i++)
        for (size_t h = 0; h < nh; h++) {
            const float *qv = q + i * ldq + h * hs;
            float *o = out + i * ldo + h * hs, mx = -INFINITY, sum = 0.0f;
            KN_ASSERT(hi[i] > lo[i]);
            for (size_t t = lo[i]; t < hi[i]; t++) {
                float sc = scale * ref_dot(qv, k + t * ldkv, hs);
                mx = sc > mx ? sc : mx;
            }
            memset(o, 0, hs * sizeof(float));
            for (size_t t = lo[i]; t < hi[i]; t++) {
                float e = expf(scale * ref_dot(qv, k + t * ldkv, hs) - mx);
                sum += e;
                ref_axpy(o, e, v + t * ldkv, hs);
            }
            for (size_t d = 0; d < hs; d++)
                o[d] /= sum;
        }
}

static const kn_math_ops g_ref = {"ref",    ref_linear,  ref_linear_packed, ref_dot, ref_axpy,
                                  kn_silu_mul, kn_rmsnorm, ref_attention};

#ifdef HAVE_KN_AVX512
extern const kn_math_ops kn__math_avx512;
static const kn_math_ops *const g_variants[] = {&g_ref, &kn__math_avx512};
#else
static const kn_math_ops *const g_variants[] = {&g_ref};
#endif

int kn_math_variant_count(void)
{
    return (int)(sizeof(g_variants) / sizeof(g_variants[0]));
}

const kn_math_ops *kn_math_variant(int i)
{
    return i >= 0 && i < kn_math_variant_count() ? g_variants[i] : NULL;
}

bool kn_math_usable(const kn_math_ops *ops)
{
    if (ops == &g_ref)
        return true;
    if (ops != NULL && strcmp(ops->name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    return false;
}

const kn_math_ops *kn_math_select(const char *name)
{
    for (int i = kn_math_variant_count() - 1; i >= 0; i--) {
        const kn_math_ops *v = g_variants[i];
        if (name != NULL && strcmp(name, v->name) != 0)
            continue;
        if (kn_math_usable(v))
            return v;
        if (name != NULL)
            return NULL;
    }
    return NULL;
}
