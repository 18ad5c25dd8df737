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
#include "kernels/kn_avx512-int.h"

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
 * (two vectors); MR rows x 2 vectors of accumulators, 24 for MR = 12, so
 * that each widened weight pair serves up to 12 rows (with 6, a batch of
 * 8 decode rows read and widened every panel twice). */
AI void ptile(float *y, size_t ldy, const float *x, size_t ldx, const void *wp, kn_wtype wt,
              size_t K, size_t n_valid, const float *bias, const int MR)
{
    __m512 acc[12][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        __m512 w0 = wload(wp, wt, k * KN_PANEL, 0xFFFF);
        __m512 w1 = wload(wp, wt, k * KN_PANEL + 16, 0xFFFF);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 xb = _mm512_set1_ps(x[i * ldx + k]);
            acc[i][0] = _mm512_fmadd_ps(xb, w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(xb, w1, acc[i][1]);
        }
    }
    __mmask16 m0 = kn__mask16(n_valid, 0), m1 = kn__mask16(n_valid, 16);
    __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 12
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
        for (; m + 12 <= M; m += 12)
            ptile(y + m * ldy + n0, ldy, x + m * ldx, ldx, w, wt, K, nv, b, 12);
        switch (M - m) {
#define PT(MR)                                                                   \
    case MR: ptile(y + m * ldy + n0, ldy, x + m * ldx, ldx, w, wt, K, nv, b, MR); break
        PT(11); PT(10); PT(9); PT(8); PT(7); PT(6); PT(5); PT(4); PT(3); PT(2); PT(1);
#undef PT
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
        __mmask16 mk = kn__mask16(n, i);
        __m512 gv = _mm512_maskz_loadu_ps(mk, g + i), uv = _mm512_maskz_loadu_ps(mk, u + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(g + i, mk, _mm512_mul_ps(s, uv));
    }
}

/* The reference's sum of squares, each square exact in double, in four
 * chains of 8 lanes: the scalar chain was latency-bound (~4 cycles an
 * element), ~1% of a Llama-3.2-1B prefill.  The rest is the reference's
 * f32 arithmetic in its order. */
static void avx_rmsnorm(float *y, const float *x, const float *w, size_t n, float eps)
{
    __m512d s[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(),
                    _mm512_setzero_pd()};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8 * (size_t)j));
            s[j] = _mm512_fmadd_pd(v, v, s[j]);
        }
    for (; i < n; i += 8) {
        __mmask8 mk = (__mmask8)kn__mask16(n, i);   /* its low 8 lanes */
        __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mk, x + i));
        s[0] = _mm512_fmadd_pd(v, v, s[0]);
    }
    double ss = _mm512_reduce_add_pd(
        _mm512_add_pd(_mm512_add_pd(s[0], s[1]), _mm512_add_pd(s[2], s[3])));
    __m512 r = _mm512_set1_ps((float)(1.0 / sqrt(ss / (double)n + eps)));
    for (i = 0; i < n; i += 16) {
        __mmask16 mk = kn__mask16(n, i);
        __m512 v = _mm512_maskz_loadu_ps(mk, x + i), wv = _mm512_maskz_loadu_ps(mk, w + i);
        _mm512_mask_storeu_ps(y + i, mk, _mm512_mul_ps(wv, _mm512_mul_ps(v, r)));
    }
}

/* avx_attention works on passes of up to 64 (row, head) pairs, the pairs
 * in the 16 lanes of a vector: q transposed once per pass (qt[d][pair]),
 * each key's values broadcast straight from the cache, so the scores of
 * 4 keys x 64 pairs are 16 independent FMA chains with no transposition
 * of keys and no horizontal sums.  The online softmax state (max, sum)
 * is one lane per pair, so the block maximum and the rescaling are
 * vertical.  P.V then runs on 4 pairs x 64 output columns (16
 * accumulators) with the probabilities broadcast from the score tile. */
#define ATT_KB 32   /* keys per block: the score tile is ATT_KB x pairs */
#define ATT_QT 4096 /* floats of transposed q per pass (16 KB of stack) */

/* State of one pass, on the stack (about 50 KB); arrays are indexed by
 * the pass's pairs (lane j of vector j / 16), padded to a whole vector. */
typedef struct att_pass {
    size_t   np, npv, nh, hs;   /* pairs, vectors of pairs, heads per row, head size */
    size_t   hsp;               /* hs rounded up to 16: the rows of ob */
    float    scale;
    int32_t  lo[KN_ATTN_MAX_Q] __attribute__((aligned(64)));   /* keys of each pair, */
    int32_t  hi[KN_ATTN_MAX_Q] __attribute__((aligned(64)));   /* from tmin; 0, 0 in padding */
    float    m[KN_ATTN_MAX_Q] __attribute__((aligned(64)));    /* running max of the scores */
    float    l[KN_ATTN_MAX_Q] __attribute__((aligned(64)));    /* sum of exp(score - m) */
    float    corr[KN_ATTN_MAX_Q] __attribute__((aligned(64))); /* exp(m_old - m) of a block */
    float    bmax[KN_ATTN_MAX_Q] __attribute__((aligned(64))); /* max score of a block */
    float    st[ATT_KB * KN_ATTN_MAX_Q] __attribute__((aligned(64))); /* scores, then p */
    float    qt[ATT_QT] __attribute__((aligned(64)));
    /* unnormalised outputs, ob[pair][hsp]: contiguous, where the output
     * rows are ldo apart (8 KB for Llama-3.2-1B) and 16 of them would
     * share a few L1 sets */
    float    ob[ATT_QT] __attribute__((aligned(64)));
    /* values of one block, 64 columns: contiguous for the same reason
     * (cache rows are ldkv apart) as every pair tile reads them again */
    float    vp[ATT_KB * 64] __attribute__((aligned(64)));
    float   *orow[KN_ATTN_MAX_Q];   /* output row of each pair */
} att_pass;

/* Scores of 4 keys (acc[kk][j], unscaled) stored to st scaled, -inf
 * outside each pair's [lo, hi) (key kk is tb + kk from tmin), and the
 * block maximum raised: done here, while the scores are in registers. */
AI void att_scores_put(att_pass *ap, float *st, __m512 acc[4][4], int32_t tb, const int PV)
{
    const size_t ld = (size_t)PV * 16;
    const __m512 scale = _mm512_set1_ps(ap->scale), ninf = _mm512_set1_ps(-INFINITY);

#pragma GCC unroll 4
    for (int j = 0; j < PV; j++) {
        const __m512i lo = _mm512_load_si512(ap->lo + 16 * j);
        const __m512i hi = _mm512_load_si512(ap->hi + 16 * j);
        __m512        mx = _mm512_load_ps(ap->bmax + 16 * j);
#pragma GCC unroll 4
        for (int kk = 0; kk < 4; kk++) {
            const __m512i tt = _mm512_set1_epi32(tb + kk);
            __mmask16 ok = _mm512_cmp_epi32_mask(lo, tt, _MM_CMPINT_LE) &
                           _mm512_cmp_epi32_mask(tt, hi, _MM_CMPINT_LT);
            __m512 sv = _mm512_mask_mul_ps(ninf, ok, acc[kk][j], scale);
            _mm512_store_ps(st + kk * ld + 16 * j, sv);
            mx = _mm512_max_ps(mx, sv);
        }
        _mm512_store_ps(ap->bmax + 16 * j, mx);
    }
}

/* Scores of keys kp[0..3] (rows of the cache, the first tb from tmin)
 * for PV vectors of pairs into st (PV vectors a key); qt rows are PV
 * vectors long. */
AI void att_scores4(att_pass *ap, float *st, const float *const kp[4], int32_t tb, const int PV)
{
    const float *qt = ap->qt;
    __m512       acc[4][4];

#pragma GCC unroll 4
    for (int kk = 0; kk < 4; kk++)
#pragma GCC unroll 4
        for (int j = 0; j < PV; j++)
            acc[kk][j] = _mm512_setzero_ps();
    for (size_t d = 0; d < ap->hs; d++) {
        __m512 qv[4];
#pragma GCC unroll 4
        for (int j = 0; j < PV; j++)
            qv[j] = _mm512_load_ps(qt + d * (size_t)PV * 16 + 16 * j);
#pragma GCC unroll 4
        for (int kk = 0; kk < 4; kk++) {
            const __m512 kb = _mm512_set1_ps(kp[kk][d]);
#pragma GCC unroll 4
            for (int j = 0; j < PV; j++)
                acc[kk][j] = _mm512_fmadd_ps(kb, qv[j], acc[kk][j]);
        }
    }
    att_scores_put(ap, st, acc, tb, PV);
}

/* Masked, scaled scores of keys [t, t + nk) (tb from tmin) into ap->st
 * and their maximum into ap->bmax, 4 keys at a time.  A short block is
 * the last one, so a group past nk repeats the last key rather than read
 * past the cache: its positions are past every hi, hence masked. */
AI void att_block_scores(att_pass *ap, const float *k, size_t ldkv, size_t t, int32_t tb,
                         size_t nk, const int PV)
{
    for (int j = 0; j < PV; j++)
        _mm512_store_ps(ap->bmax + 16 * j, _mm512_set1_ps(-INFINITY));
    for (size_t t4 = 0; t4 < nk; t4 += 4) {
        const float *kp[4];
        for (size_t kk = 0; kk < 4; kk++)
            kp[kk] = k + (t + (t4 + kk < nk ? t4 + kk : nk - 1)) * ldkv;
        att_scores4(ap, ap->st + t4 * (size_t)PV * 16, kp, tb + (int32_t)t4, PV);
    }
}

/* Online softmax over the block's nk keys: the running max raised to the
 * block's, st turned into exp(score - m) (0 where masked), corr =
 * exp(m_old - m) for the sums so far (0 before the first valid key). */
static void att_block_softmax(att_pass *ap, size_t nk)
{
    const size_t ld = ap->npv * 16;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);

    for (size_t j = 0; j < ap->npv; j++) {
        const __m512 mold = _mm512_load_ps(ap->m + 16 * j);
        const __m512 mnew = _mm512_max_ps(mold, _mm512_load_ps(ap->bmax + 16 * j));
        /* a pair with no valid key yet keeps m = -inf; 0 in its place
         * keeps -inf - -inf (NaN) out of the exps */
        const __m512 mu = _mm512_mask_mov_ps(mnew, _mm512_cmp_ps_mask(mnew, ninf, _CMP_EQ_OQ),
                                             _mm512_setzero_ps());
        const __m512 corr = exp16(_mm512_sub_ps(mold, mu));
        __m512 sum = _mm512_setzero_ps();
        for (size_t t = 0; t < nk; t++) {
            float *s = ap->st + t * ld + 16 * j;
            const __m512 sv = _mm512_load_ps(s);
            const __m512 p = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(sv, ninf, _CMP_NEQ_OQ),
                                                 exp16(_mm512_sub_ps(sv, mu)));
            _mm512_store_ps(s, p);
            sum = _mm512_add_ps(sum, p);
        }
        _mm512_store_ps(ap->m + 16 * j, mnew);
        _mm512_store_ps(ap->corr + 16 * j, corr);
        _mm512_store_ps(ap->l + 16 * j, _mm512_fmadd_ps(_mm512_load_ps(ap->l + 16 * j), corr, sum));
    }
}

/* Rows of ob (R pairs from pair p, columns [c0, c0 + 64)) rescaled by
 * corr and given sum_t p[t] * v_t, v_t = vb + t * ldv (packed or not). */
AI void att_pv_tile(att_pass *ap, size_t p, const float *vb, size_t ldv, size_t nk, size_t c0,
                    const int R)
{
    const size_t ld = ap->npv * 16;
    float       *o = ap->ob + p * ap->hsp + c0;
    __m512       acc[4][4];
    __mmask16    mk[4];

#pragma GCC unroll 4
    for (int e = 0; e < 4; e++)
        mk[e] = kn__mask16(ap->hs, c0 + 16 * (size_t)e);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const __m512 cv = _mm512_set1_ps(ap->corr[p + (size_t)r]);
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++)
            acc[r][e] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[e], o + r * ap->hsp + 16 * e), cv);
    }
    for (size_t t = 0; t < nk; t++) {
        __m512 vv[4];
        const float *pt = ap->st + t * ld + p;
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++)
            vv[e] = _mm512_maskz_loadu_ps(mk[e], vb + t * ldv + 16 * e);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512 pb = _mm512_set1_ps(pt[r]);
#pragma GCC unroll 4
            for (int e = 0; e < 4; e++)
                acc[r][e] = _mm512_fmadd_ps(pb, vv[e], acc[r][e]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++)
            _mm512_mask_storeu_ps(o + r * ap->hsp + 16 * e, mk[e], acc[r][e]);
}

/* Columns [c0, c0 + 64) of the block's values into vp (0 past hs). */
static void att_pack_v(att_pass *ap, const float *vb, size_t ldkv, size_t nk, size_t c0)
{
    for (size_t t = 0; t < nk; t++)
        for (size_t e = 0; e < 4; e++) {
            size_t c = c0 + 16 * e;
            _mm512_store_ps(ap->vp + t * 64 + 16 * e,
                            _mm512_maskz_loadu_ps(kn__mask16(ap->hs, c), vb + t * ldkv + c));
        }
}

/* P.V of the block for every pair of the pass, 4 pairs at a time; the
 * values are packed first unless a single tile reads them (decode). */
static void att_block_pv(att_pass *ap, const float *vb, size_t ldkv, size_t nk)
{
    for (size_t c0 = 0; c0 < ap->hs; c0 += 64) {
        const float *vt = vb + c0;
        size_t       ldv = ldkv;
        if (ap->np > 4) {
            att_pack_v(ap, vb, ldkv, nk, c0);
            vt = ap->vp, ldv = 64;
        }
        for (size_t p = 0; p < ap->np; p += 4)
            switch (ap->np - p < 4 ? ap->np - p : 4) {
            case 4:  att_pv_tile(ap, p, vt, ldv, nk, c0, 4); break;
            case 3:  att_pv_tile(ap, p, vt, ldv, nk, c0, 3); break;
            case 2:  att_pv_tile(ap, p, vt, ldv, nk, c0, 2); break;
            default: att_pv_tile(ap, p, vt, ldv, nk, c0, 1); break;
            }
    }
}

/* qt[d][16 jb ..] for the 16 pairs of vector jb: 16 values of q at a
 * time, transposed in registers (zero for padding pairs). */
static void att_load_qt(att_pass *ap, const float *const qrow[16], size_t jb)
{
    const size_t ld = ap->npv * 16;

    for (size_t d0 = 0; d0 < ap->hs; d0 += 16) {
        const __mmask16 mk = kn__mask16(ap->hs, d0);
        __m512i r[16], o[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            r[j] = qrow[j] ? _mm512_castps_si512(_mm512_maskz_loadu_ps(mk, qrow[j] + d0))
                           : _mm512_setzero_si512();
        kn__tr16(r, o);   /* o[c]: value c of every row */
        for (size_t c = 0; c < 16 && d0 + c < ap->hs; c++)
            _mm512_store_ps(ap->qt + (d0 + c) * ld + 16 * jb, _mm512_castsi512_ps(o[c]));
    }
}

/* q of pairs [p0, p0 + np) transposed into qt, their output rows and
 * key ranges relative to tmin (0, 0 in the padding lanes), fresh softmax
 * state and zeroed sums in ob. */
static void att_pass_init(att_pass *ap, float *out, size_t ldo, const float *q, size_t ldq,
                          size_t p0, const size_t *lo, const size_t *hi, size_t tmin)
{
    for (size_t jb = 0; jb < ap->npv; jb++) {
        const float *qrow[16];
        for (size_t jj = 0; jj < 16; jj++) {
            size_t j = 16 * jb + jj, pair = p0 + j, i = pair / ap->nh, h = pair % ap->nh;
            bool   real = j < ap->np;
            ap->lo[j] = real ? (int32_t)(lo[i] - tmin) : 0;
            ap->hi[j] = real ? (int32_t)(hi[i] - tmin) : 0;
            ap->m[j] = -INFINITY;
            ap->l[j] = 0.0f;
            qrow[jj] = real ? q + i * ldq + h * ap->hs : NULL;
            if (real)
                ap->orow[j] = out + i * ldo + h * ap->hs;
        }
        att_load_qt(ap, qrow, jb);
    }
    memset(ap->ob, 0, ap->np * ap->hsp * sizeof(float));
}

/* One block of keys [t, t + nk) for the pass: PV (vectors of pairs) is
 * a constant after inlining, so the score accumulators stay in registers. */
AI void att_block_t(att_pass *ap, const float *k, const float *v, size_t ldkv, size_t t,
                    size_t nk, size_t tmin, const int PV)
{
    att_block_scores(ap, k, ldkv, t, (int32_t)(t - tmin), nk, PV);
    att_block_softmax(ap, nk);
    att_block_pv(ap, v + t * ldkv, ldkv, nk);
}

static void att_run_pass(att_pass *ap, const float *k, const float *v, size_t ldkv, size_t tmin,
                         size_t tmax)
{
    for (size_t t = tmin; t < tmax; t += ATT_KB) {
        size_t nk = tmax - t < ATT_KB ? tmax - t : ATT_KB;
        switch (ap->npv) {
        case 4:  att_block_t(ap, k, v, ldkv, t, nk, tmin, 4); break;
        case 3:  att_block_t(ap, k, v, ldkv, t, nk, tmin, 3); break;
        case 2:  att_block_t(ap, k, v, ldkv, t, nk, tmin, 2); break;
        default: att_block_t(ap, k, v, ldkv, t, nk, tmin, 1); break;
        }
    }
    for (size_t p = 0; p < ap->np; p++) {
        const float *ob = ap->ob + p * ap->hsp;
        const __m512 inv = _mm512_set1_ps(1.0f / ap->l[p]);
        for (size_t c = 0; c < ap->hs; c += 16)
            _mm512_mask_storeu_ps(ap->orow[p] + c, kn__mask16(ap->hs, c),
                                  _mm512_mul_ps(_mm512_load_ps(ob + c), inv));
    }
}

/* Pairs are row-major ((row, head) -> row * nh + head, the order of the
 * output); a pass takes as many as fit ATT_QT floats of transposed q
 * (all 64 up to hs = 64, 16 at hs = 256), rounded down to whole vectors. */
static void avx_attention(float *out, size_t ldo, const float *q, size_t ldq, size_t nq,
                          size_t nh, const float *k, const float *v, size_t ldkv, size_t hs,
                          const size_t *lo, const size_t *hi, float scale)
{
    att_pass ap;
    size_t tmin = SIZE_MAX, tmax = 0, npairs = nq * nh, hsp = (hs + 15) / 16 * 16;
    size_t per = ATT_QT / hsp / 16 * 16;

    KN_ASSERT(hs <= KN_ATTN_MAX_HS && npairs <= KN_ATTN_MAX_Q);
    for (size_t i = 0; i < nq; i++) {
        KN_ASSERT(hi[i] > lo[i]);
        tmin = lo[i] < tmin ? lo[i] : tmin;
        tmax = hi[i] > tmax ? hi[i] : tmax;
    }
    KN_ASSERT(tmax - tmin < INT32_MAX);
    ap.nh = nh, ap.hs = hs, ap.hsp = hsp, ap.scale = scale;
    for (size_t p0 = 0; p0 < npairs; p0 += per) {
        ap.np = npairs - p0 < per ? npairs - p0 : per;
        ap.npv = (ap.np + 15) / 16;
        att_pass_init(&ap, out, ldo, q, ldq, p0, lo, hi, tmin);
        att_run_pass(&ap, k, v, ldkv, tmin, tmax);
    }
}

const kn_math_ops kn__math_avx512 = {"avx512",     avx_linear,  avx_linear_packed, avx_dot,
                                     avx_axpy,     avx_silu_mul, avx_rmsnorm,       avx_attention};
