/* kn_math_avx512.c: AVX-512 variant of the linear kernel (and dot/axpy,
 * silu_mul, attention).
 * Register tiles of 4 input rows x 4 weight rows (16 accumulators) walk K
 * 16 lanes at a time; BF16 is widened by a 16-bit shift, F16 by vcvtph2ps,
 * both exact.  Tails of K use masked loads, so any shape works. */
#include "config.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

#define AI static inline __attribute__((always_inline))

AI __m512 wload(const void *w, kn_wtype wt, size_t i, __mmask16 mk)
{
    if (wt == KN_W_BF16) {
        __m256i h = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + i);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    if (wt == KN_W_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + i));
    return _mm512_maskz_loadu_ps(mk, (const float *)w + i);
}

/* y[i][n+j] for i < MR, j < NR; MR, NR and wt are constants after inlining. */
AI void tile(float *y, size_t ldy, const float *x, size_t ldx, const void *w, kn_wtype wt,
             size_t K, size_t n, const float *bias, const int MR, const int NR)
{
    __m512 acc[4][4], wv[4];
    size_t k = 0;

#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++)
            acc[i][j] = _mm512_setzero_ps();
    for (; k + 16 <= K; k += 16) {
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++)
            wv[j] = wload(w, wt, (n + j) * K + k, 0xFFFF);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            __m512 xv = _mm512_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++)
                acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (k < K) {
        __mmask16 mk = (__mmask16)((1u << (K - k)) - 1);
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++)
            wv[j] = wload(w, wt, (n + j) * K + k, mk);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(mk, x + i * ldx + k);
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++)
                acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++)
            y[i * ldy + n + j] = _mm512_reduce_add_ps(acc[i][j]) + (bias ? bias[n + j] : 0.0f);
}

AI void linear_t(float *y, size_t ldy, const float *x, size_t ldx, size_t M, const void *w,
                 kn_wtype wt, size_t K, size_t n0, size_t n1, const float *bias)
{
    size_t n = n0;
    /* Weight rows outer: a 4-row panel stays in L1 while every input row passes. */
    for (; n + 4 <= n1; n += 4) {
        size_t m = 0;
        for (; m + 4 <= M; m += 4)
            tile(y + m * ldy, ldy, x + m * ldx, ldx, w, wt, K, n, bias, 4, 4);
        for (; m < M; m++)
            tile(y + m * ldy, ldy, x + m * ldx, ldx, w, wt, K, n, bias, 1, 4);
    }
    for (; n < n1; n++) {
        size_t m = 0;
        for (; m + 4 <= M; m += 4)
            tile(y + m * ldy, ldy, x + m * ldx, ldx, w, wt, K, n, bias, 4, 1);
        for (; m < M; m++)
            tile(y + m * ldy, ldy, x + m * ldx, ldx, w, wt, K, n, bias, 1, 1);
    }
}

static void avx_linear(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                       const void *w, kn_wtype wt, size_t K, size_t n0, size_t n1,
                       const float *bias)
{
    switch (wt) {
    case KN_W_BF16: linear_t(y, ldy, x, ldx, M, w, KN_W_BF16, K, n0, n1, bias); break;
    case KN_W_F16:  linear_t(y, ldy, x, ldx, M, w, KN_W_F16, K, n0, n1, bias); break;
    default:        linear_t(y, ldy, x, ldx, M, w, KN_W_F32, K, n0, n1, bias); break;
    }
}

/* Packed panels: rows of x broadcast one k at a time against 32 weights
 * (two vectors); MR rows x 2 vectors of accumulators, 12 for MR = 6. */
AI void ptile(float *y, size_t ldy, const float *x, size_t ldx, const void *wp, kn_wtype wt,
              size_t K, size_t n_valid, const float *bias, const int MR)
{
    __m512 acc[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        __m512 w0 = wload(wp, wt, k * KN_PANEL, 0xFFFF);
        __m512 w1 = wload(wp, wt, k * KN_PANEL + 16, 0xFFFF);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m512 xb = _mm512_set1_ps(x[i * ldx + k]);
            acc[i][0] = _mm512_fmadd_ps(xb, w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(xb, w1, acc[i][1]);
        }
    }
    __mmask16 m0 = n_valid >= 16 ? 0xFFFF : (__mmask16)((1u << n_valid) - 1);
    __mmask16 m1 = n_valid >= 32 ? 0xFFFF : n_valid <= 16 ? 0 : (__mmask16)((1u << (n_valid - 16)) - 1);
    __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        _mm512_mask_storeu_ps(y + i * ldy, m0, _mm512_add_ps(acc[i][0], b0));
        _mm512_mask_storeu_ps(y + i * ldy + 16, m1, _mm512_add_ps(acc[i][1], b1));
    }
}

AI void linear_packed_t(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                        const void *wp, kn_wtype wt, size_t K, size_t N, size_t p0, size_t p1,
                        const float *bias)
{
    size_t es = wt == KN_W_F32 ? 4 : 2;
    for (size_t p = p0; p < p1; p++) {
        const void *w = (const char *)wp + p * K * KN_PANEL * es;
        size_t n0 = p * KN_PANEL, nv = N - n0 < KN_PANEL ? N - n0 : KN_PANEL, m = 0;
        const float *b = bias ? bias + n0 : NULL;
        for (; m + 6 <= M; m += 6)
            ptile(y + m * ldy + n0, ldy, x + m * ldx, ldx, w, wt, K, nv, b, 6);
        switch (M - m) {
        case 5: ptile(y + m * ldy + n0, ldy, x + m * ldx, ldx, w, wt, K, nv, b, 5); break;
        case 4: ptile(y + m * ldy + n0, ldy, x + m * ldx, ldx, w, wt, K, nv, b, 4); break;
        case 3: ptile(y + m * ldy + n0, ldy, x + m * ldx, ldx, w, wt, K, nv, b, 3); break;
        case 2: ptile(y + m * ldy + n0, ldy, x + m * ldx, ldx, w, wt, K, nv, b, 2); break;
        case 1: ptile(y + m * ldy + n0, ldy, x + m * ldx, ldx, w, wt, K, nv, b, 1); break;
        default: break;
        }
    }
}

static void avx_linear_packed(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                              const void *wp, kn_wtype wt, size_t K, size_t N, size_t p0,
                              size_t p1, const float *bias)
{
    switch (wt) {
    case KN_W_BF16: linear_packed_t(y, ldy, x, ldx, M, wp, KN_W_BF16, K, N, p0, p1, bias); break;
    case KN_W_F16:  linear_packed_t(y, ldy, x, ldx, M, wp, KN_W_F16, K, N, p0, p1, bias); break;
    default:        linear_packed_t(y, ldy, x, ldx, M, wp, KN_W_F32, K, N, p0, p1, bias); break;
    }
}

static float avx_dot(const float *a, const float *b, size_t n)
{
    __m512 acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    if (i < n) {
        __mmask16 mk = (__mmask16)((1u << (n - i)) - 1);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a + i), _mm512_maskz_loadu_ps(mk, b + i), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

static void avx_axpy(float *y, float a, const float *x, size_t n)
{
    __m512 av = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 mk = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, mk, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(mk, x + i),
                                                          _mm512_maskz_loadu_ps(mk, y + i)));
    }
}

/* Lanes of a 16-float vector at offset c of n values (0 past the end). */
AI __mmask16 tail16(size_t n, size_t c)
{
    return c >= n ? 0 : n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
}

/* exp(x), 16 lanes: x = n ln2 + r with |r| <= ln2/2 (Cody-Waite: ln2 in
 * two parts, the high one exact for |n| < 2^10), e^r by its Taylor series
 * to degree 7 (truncation under 2^-27 relative), 2^n applied by vscalefps
 * (which gives 0 and inf past the range without a branch).  Relative error
 * about 2 ulp; x is clamped to [-104, 89] first (e^-104 underflows to 0,
 * e^89 overflows), which also keeps n small. */
AI __m512 exp16(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* g / (1 + e^-g) * u; NaN in g stays NaN (the clamp drops it from the
 * exp, the numerator keeps it), g = -inf gives NaN as in the reference. */
static void avx_silu_mul(float *g, const float *u, size_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 mk = tail16(n, i);
        __m512 gv = _mm512_maskz_loadu_ps(mk, g + i), uv = _mm512_maskz_loadu_ps(mk, u + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(g + i, mk, _mm512_mul_ps(s, uv));
    }
}

/* Running state of one (row, head) of avx_attention. */
typedef struct att_run {
    float m, l;   /* largest score so far, sum of exp(score - m) */
} att_run;

/* One (row, head) against the 16 keys whose transpose is kt ([hs][16]):
 * scores in one vector (no horizontal sums but the max and the sum), the
 * running sums rescaled by exp(m_old - m_new), then 16 value rows added. */
AI void att_block(float *o, const float *qv, const float *kt, const float *vb, size_t ldkv,
                  size_t hs, __mmask16 valid, float scale, att_run *st)
{
    /* four independent FMA chains: one would wait 4 cycles per d */
    __m512 s4[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                    _mm512_setzero_ps()};
    float p[16];
    size_t d = 0;
    for (; d + 4 <= hs; d += 4)
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++)
            s4[e] = _mm512_fmadd_ps(_mm512_set1_ps(qv[d + e]), _mm512_load_ps(kt + (d + e) * 16),
                                    s4[e]);
    for (; d < hs; d++)
        s4[0] = _mm512_fmadd_ps(_mm512_set1_ps(qv[d]), _mm512_load_ps(kt + d * 16), s4[0]);
    __m512 sv = _mm512_add_ps(_mm512_add_ps(s4[0], s4[1]), _mm512_add_ps(s4[2], s4[3]));
    sv = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid,
                            _mm512_mul_ps(sv, _mm512_set1_ps(scale)));
    float mnew = _mm512_reduce_max_ps(sv);
    mnew = mnew > st->m ? mnew : st->m;
    float corr = expf(st->m - mnew);   /* 0 for the first block (m = -inf) */
    __m512 pv = _mm512_maskz_mov_ps(valid, exp16(_mm512_sub_ps(sv, _mm512_set1_ps(mnew))));
    st->l = st->l * corr + _mm512_reduce_add_ps(pv);
    st->m = mnew;
    _mm512_storeu_ps(p, pv);
    const __m512 cv = _mm512_set1_ps(corr);
    /* 64 output values (4 vectors, 4 independent chains) per pass */
    for (size_t c0 = 0; c0 < hs; c0 += 64) {
        __m512 acc[4];
        __mmask16 mk[4];
        /* unrolled, so that acc[] stays in registers */
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++) {
            size_t c = c0 + 16 * (size_t)e;
            mk[e] = tail16(hs, c);
            acc[e] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[e], o + c), cv);
        }
        for (int j = 0; j < 16; j++) {
            if (!(valid & (1u << j)))
                continue;
            const __m512 pj = _mm512_set1_ps(p[j]);
#pragma GCC unroll 4
            for (int e = 0; e < 4; e++)
                acc[e] = _mm512_fmadd_ps(
                    pj, _mm512_maskz_loadu_ps(mk[e], vb + (size_t)j * ldkv + c0 + 16 * e), acc[e]);
        }
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++)
            _mm512_mask_storeu_ps(o + c0 + 16 * (size_t)e, mk[e], acc[e]);
    }
}

/* Blocks of 16 keys, each transposed once into kt and used by every
 * (row, head) of the call (one GQA group, a few rows): an online softmax
 * (flash-attention style) whose state is the output rows themselves plus
 * (m, l) per (row, head); out is divided by l at the end. */
static void avx_attention(float *out, size_t ldo, const float *q, size_t ldq, size_t nq,
                          size_t nh, const float *k, const float *v, size_t ldkv, size_t hs,
                          const size_t *lo, const size_t *hi, float scale)
{
    float kt[KN_ATTN_MAX_HS * 16] __attribute__((aligned(64)));
    att_run st[KN_ATTN_MAX_Q];
    size_t tmin = SIZE_MAX, tmax = 0;

    KN_ASSERT(hs <= KN_ATTN_MAX_HS && nq * nh <= KN_ATTN_MAX_Q);
    for (size_t i = 0; i < nq; i++) {
        KN_ASSERT(hi[i] > lo[i]);
        tmin = lo[i] < tmin ? lo[i] : tmin;
        tmax = hi[i] > tmax ? hi[i] : tmax;
        for (size_t h = 0; h < nh; h++) {
            st[i * nh + h] = (att_run){-INFINITY, 0.0f};
            memset(out + i * ldo + h * hs, 0, hs * sizeof(float));
        }
    }
    for (size_t t = tmin; t < tmax; t += 16) {
        size_t nk = tmax - t < 16 ? tmax - t : 16;
        for (size_t d = 0; d < hs; d++)
            for (size_t j = 0; j < 16; j++)
                kt[d * 16 + j] = j < nk ? k[(t + j) * ldkv + d] : 0.0f;
        for (size_t i = 0; i < nq; i++) {
            if (t >= hi[i] || t + 16 <= lo[i])
                continue;
            /* lanes j with lo <= t + j < hi */
            size_t a = lo[i] > t ? lo[i] - t : 0, b = hi[i] - t < 16 ? hi[i] - t : 16;
            __mmask16 valid = (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
            for (size_t h = 0; h < nh; h++)
                att_block(out + i * ldo + h * hs, q + i * ldq + h * hs, kt, v + t * ldkv, ldkv,
                          hs, valid, scale, &st[i * nh + h]);
        }
    }
    for (size_t i = 0; i < nq; i++)
        for (size_t h = 0; h < nh; h++) {
            float *o = out + i * ldo + h * hs;
            const __m512 inv = _mm512_set1_ps(1.0f / st[i * nh + h].l);
            for (size_t c = 0; c < hs; c += 16)
                _mm512_mask_storeu_ps(o + c, tail16(hs, c),
                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(tail16(hs, c), o + c), inv));
        }
}

const kn_math_ops kn__math_avx512 = {"avx512", avx_linear, avx_linear_packed, avx_dot, avx_axpy,
                                     avx_silu_mul, avx_attention};
