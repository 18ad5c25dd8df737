/* kn_fp8mm_avx512.c: AVX-512 (BF16, VBMI) variant of the FP8 weight
 * products.  Reached only through kn__fp8mm_avx512 after kn_fp8mm_usable
 * checked the CPU; nothing here runs at load time.
 *
 * Widening: 64 FP8 codes -> 64 bf16 with two vpermi2b look-ups (high and
 * low byte of the bf16 of the 7-bit magnitude, exact, subnormals
 * included), one vpternlogd for the sign and two byte unpacks; the packed
 * layout (kn_fp8mm-int.h) is permuted so that the unpacks yield plain k
 * order.  Decode (small M): each row's 64-byte line is widened once and
 * dotted with MR activation rows (vdpbf16ps, or vfmadd231ps after a
 * further exact bf16 -> f32 unpack), RG rows at a time so that every
 * activation vector serves several rows; software prefetch keeps enough
 * lines in flight.  Prefill: a pair of panels is
 * widened once to bf16, transposed to [k pair][32 rows], and multiplied
 * with broadcast activation pairs over blocks of rows: no horizontal sums.
 */
#include "config.h"

#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kn_avx512-int.h"
#include "kernels/kn_fp8mm-int.h"

#define AI static inline __attribute__((always_inline))

/* Software prefetch distance in the weight stream (bytes ahead of the
 * line being widened): the widening costs ~8 uops per line, so the
 * out-of-order window alone keeps too few lines in flight for DRAM
 * (perf-anchors.md 6).  Measured, M = 1, 8192x2048 x 48 copies, A/B
 * interleaved: 1 thread 21-23 GB/s without, 26-29 with (4 or 16 KiB);
 * 2 threads 43 vs 51-52 GB/s. */
#define PF_DIST 4096

enum { MODE_F32 = 0, MODE_BF16 = 1, MODE_W8A8 = 2 };

typedef struct tabs {
    __m512i hi0, hi1, lo0, lo1;   /* bf16 bytes of magnitudes 0..63, 64..127 */
} tabs;

static void tabs_build(tabs *t, kn_fp8_format fmt)
{
    const float *dec = kn__fp8_table(fmt);
    uint8_t hi[128], lo[128];
    for (int i = 0; i < 128; i++) {
        uint32_t u;
        memcpy(&u, &dec[i], sizeof(u));   /* exact decode: low 16 bits are zero */
        hi[i] = (uint8_t)(u >> 24);
        lo[i] = (uint8_t)(u >> 16);
    }
    t->hi0 = _mm512_loadu_si512(hi);
    t->hi1 = _mm512_loadu_si512(hi + 64);
    t->lo0 = _mm512_loadu_si512(lo);
    t->lo1 = _mm512_loadu_si512(lo + 64);
}

/* 64 codes (in packed order) -> bf16 of k 0..31 (*w0) and 32..63 (*w1). */
AI void widen(__m512i codes, const tabs *t, __m512i *w0, __m512i *w1)
{
    __m512i h = _mm512_permutex2var_epi8(t->hi0, codes, t->hi1);
    __m512i l = _mm512_permutex2var_epi8(t->lo0, codes, t->lo1);
    /* h | (codes & 0x80): the sign bit lands on bf16 bit 15 */
    h = _mm512_ternarylogic_epi32(h, codes, _mm512_set1_epi8((char)0x80), 0xF8);
    *w0 = _mm512_unpacklo_epi8(l, h);
    *w1 = _mm512_unpackhi_epi8(l, h);
}

AI __m512 dp(__m512 acc, __m512i a, __m512i b)
{
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

/* ---- decode: small M ---------------------------------------------- */

typedef struct dargs {
    float         *y;
    size_t         ldy, M;
    const float   *x;       /* MODE_F32, MODE_BF16 */
    size_t         ldx;
    const uint8_t *xq;      /* MODE_W8A8 */
    size_t         ldq;
    const float   *xs;
    const kn_fp8w *w;
    const float   *bias;
    tabs           wt, xt;  /* weight and activation (W8A8) tables */
    __m512i        xperm;   /* plain k order -> packed order (vpermb) */
    __m512i        idx_a, idx_b;   /* f32 lane order of the widened weights */
} dargs;

/* Activation row m, chunk c, in the form the mode multiplies. */
AI void act_prep(const int MODE, const dargs *a, size_t m, size_t c, __m512 xf[4],
                 __m512i xb[2])
{
    size_t K = a->w->K, k0 = c * KN_FP8W_KCHUNK;
    if (MODE == MODE_W8A8) {
        __mmask64 mk = K - k0 >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (K - k0)) - 1);
        __m512i q = _mm512_maskz_loadu_epi8(mk, a->xq + m * a->ldq + k0);
        widen(_mm512_permutexvar_epi8(a->xperm, q), &a->xt, &xb[0], &xb[1]);
        return;
    }
    const float *xr = a->x + m * a->ldx;
    __m512 v[4];
#pragma GCC unroll 16
    for (int j = 0; j < 4; j++)
        v[j] = _mm512_maskz_loadu_ps(kn__mask16(K, k0 + 16 * j), xr + k0 + 16 * j);
    if (MODE == MODE_BF16) {
        xb[0] = (__m512i)_mm512_cvtne2ps_pbh(v[1], v[0]);
        xb[1] = (__m512i)_mm512_cvtne2ps_pbh(v[3], v[2]);
    } else {
        xf[0] = _mm512_permutex2var_ps(v[0], a->idx_a, v[1]);
        xf[1] = _mm512_permutex2var_ps(v[0], a->idx_b, v[1]);
        xf[2] = _mm512_permutex2var_ps(v[2], a->idx_a, v[3]);
        xf[3] = _mm512_permutex2var_ps(v[2], a->idx_b, v[3]);
    }
}

/* y[m][n] from the 16 partial sums of row n: scales, bias. */
AI void store_one(const int MODE, const int BLK, const dargs *a, size_t m, size_t n, __m512 acc)
{
    const kn_fp8w *w = a->w;
    float v = _mm512_reduce_add_ps(acc);
    float s = w->sk == KN_FP8_SCALE_CHANNEL ? w->scales[n] : w->scales[0];
    if (MODE == MODE_W8A8)
        v = BLK ? v * a->xs[m] : v * a->xs[m] * s;
    else if (!BLK)
        v = v * s;
    a->y[m * a->ldy + n] = v + (a->bias ? a->bias[n] : 0.0f);
}

/* Rows [r0, r0+RG) of panel p times activation rows [m0, m0+MR).  With
 * block scales (BLK) every 128-wide k block is summed apart and added
 * with its scale; RG*MR*(1+BLK) accumulators stay within 16. */
AI void dtile(const int MODE, const int MR, const int RG, const int BLK, const dargs *a,
              size_t p, size_t r0, size_t m0)
{
    const kn_fp8w *w = a->w;
    const size_t nch = w->k_chunks;
    __m512 acc[4][16], bacc[4][16], xf[4][4];
    __m512i xb[4][2];
    const __m512i zero = _mm512_setzero_si512();

#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
        for (int r = 0; r < RG; r++)
            acc[i][r] = bacc[i][r] = _mm512_setzero_ps();
    for (size_t c = 0; c < nch; c++) {
        const uint8_t *wp = kn__fp8w_chunk(w, p, c) + r0 * KN_FP8W_KCHUNK;
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
            act_prep(MODE, a, m0 + i, c, xf[i], xb[i]);
#pragma GCC unroll 16
        for (int r = 0; r < RG; r++) {
            __m512i w0, w1;
            _mm_prefetch((const char *)wp + r * KN_FP8W_KCHUNK + PF_DIST, _MM_HINT_T0);
            widen(_mm512_load_si512(wp + r * KN_FP8W_KCHUNK), &a->wt, &w0, &w1);
            if (MODE == MODE_F32) {
                /* bf16 -> f32 is a 16-bit shift: exact */
                __m512 f0 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, w0));
                __m512 f1 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, w0));
                __m512 f2 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, w1));
                __m512 f3 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, w1));
#pragma GCC unroll 16
                for (int i = 0; i < MR; i++) {
                    __m512 *d = BLK ? &bacc[i][r] : &acc[i][r];
                    *d = _mm512_fmadd_ps(xf[i][0], f0, *d);
                    *d = _mm512_fmadd_ps(xf[i][1], f1, *d);
                    *d = _mm512_fmadd_ps(xf[i][2], f2, *d);
                    *d = _mm512_fmadd_ps(xf[i][3], f3, *d);
                }
            } else {
#pragma GCC unroll 16
                for (int i = 0; i < MR; i++) {
                    __m512 *d = BLK ? &bacc[i][r] : &acc[i][r];
                    *d = dp(*d, w0, xb[i][0]);
                    *d = dp(*d, w1, xb[i][1]);
                }
            }
        }
        if (BLK && ((c & 1) || c + 1 == nch)) {
            /* a 16-row panel lies inside one 128-row block: one scale */
            __m512 s = _mm512_set1_ps(w->scales[(p / 8) * w->kb + c / 2]);
#pragma GCC unroll 16
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
                for (int r = 0; r < RG; r++) {
                    acc[i][r] = _mm512_fmadd_ps(bacc[i][r], s, acc[i][r]);
                    bacc[i][r] = _mm512_setzero_ps();
                }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < RG; r++)
            if (p * KN_FP8W_PANEL + r0 + r < w->N)
                store_one(MODE, BLK, a, m0 + i, p * KN_FP8W_PANEL + r0 + r, acc[i][r]);
}

/* Small M (tiles of 2 or 4 rows): the activations of a slab of SLAB
 * chunks are prepared once into a stack buffer and read as memory
 * operands, instead of once per row group and chunk; the row groups' sums
 * wait in accst between slabs (12 KiB of stack in all).  SLAB is even, so
 * 128-wide scale blocks never straddle slabs. */
#define SLAB 8
AI void stile(const int MODE, const int MR, const int RG, const int BLK, const dargs *a,
              size_t p, size_t m0)
{
    const kn_fp8w *w = a->w;
    const size_t nch = w->k_chunks;
    __m512 xbuf[4][SLAB][4];        /* [row][chunk][vector]: f32, or bf16 in [0..1] */
    __m512 accst[KN_FP8W_PANEL][4]; /* [panel row][activation row] */
    __m512 acc[4][16], bacc[4][16];
    const __m512i zero = _mm512_setzero_si512();

    for (int r = 0; r < KN_FP8W_PANEL; r++)
        for (int i = 0; i < MR; i++)
            accst[r][i] = _mm512_setzero_ps();
    for (size_t c0 = 0; c0 < nch; c0 += SLAB) {
        size_t c1 = c0 + SLAB < nch ? c0 + SLAB : nch;
        for (int i = 0; i < MR; i++)
            for (size_t c = c0; c < c1; c++) {
                __m512i xb[2];
                act_prep(MODE, a, m0 + (size_t)i, c, xbuf[i][c - c0], xb);
                if (MODE != MODE_F32) {
                    xbuf[i][c - c0][0] = _mm512_castsi512_ps(xb[0]);
                    xbuf[i][c - c0][1] = _mm512_castsi512_ps(xb[1]);
                }
            }
        for (size_t r0 = 0; r0 < KN_FP8W_PANEL && p * KN_FP8W_PANEL + r0 < w->N; r0 += RG) {
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
                for (int r = 0; r < RG; r++) {
                    acc[i][r] = accst[r0 + r][i];
                    bacc[i][r] = _mm512_setzero_ps();
                }
            for (size_t c = c0; c < c1; c++) {
                const uint8_t *wp = kn__fp8w_chunk(w, p, c) + r0 * KN_FP8W_KCHUNK;
                const size_t cc = c - c0;
#pragma GCC unroll 16
                for (int r = 0; r < RG; r++) {
                    __m512i w0, w1;
                    _mm_prefetch((const char *)wp + r * KN_FP8W_KCHUNK + PF_DIST, _MM_HINT_T0);
                    widen(_mm512_load_si512(wp + r * KN_FP8W_KCHUNK), &a->wt, &w0, &w1);
                    if (MODE == MODE_F32) {
                        __m512 f0 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, w0));
                        __m512 f1 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, w0));
                        __m512 f2 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, w1));
                        __m512 f3 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, w1));
#pragma GCC unroll 8
                        for (int i = 0; i < MR; i++) {
                            __m512 *d = BLK ? &bacc[i][r] : &acc[i][r];
                            *d = _mm512_fmadd_ps(xbuf[i][cc][0], f0, *d);
                            *d = _mm512_fmadd_ps(xbuf[i][cc][1], f1, *d);
                            *d = _mm512_fmadd_ps(xbuf[i][cc][2], f2, *d);
                            *d = _mm512_fmadd_ps(xbuf[i][cc][3], f3, *d);
                        }
                    } else {
#pragma GCC unroll 8
                        for (int i = 0; i < MR; i++) {
                            __m512 *d = BLK ? &bacc[i][r] : &acc[i][r];
                            *d = dp(*d, w0, _mm512_castps_si512(xbuf[i][cc][0]));
                            *d = dp(*d, w1, _mm512_castps_si512(xbuf[i][cc][1]));
                        }
                    }
                }
                if (BLK && ((c & 1) || c + 1 == nch)) {
                    __m512 sc = _mm512_set1_ps(w->scales[(p / 8) * w->kb + c / 2]);
#pragma GCC unroll 8
                    for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
                        for (int r = 0; r < RG; r++) {
                            acc[i][r] = _mm512_fmadd_ps(bacc[i][r], sc, acc[i][r]);
                            bacc[i][r] = _mm512_setzero_ps();
                        }
                }
            }
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
                for (int r = 0; r < RG; r++)
                    accst[r0 + r][i] = acc[i][r];
        }
    }
    for (int i = 0; i < MR; i++)
        for (size_t r = 0; r < KN_FP8W_PANEL && p * KN_FP8W_PANEL + r < w->N; r++)
            store_one(MODE, BLK, a, m0 + (size_t)i, p * KN_FP8W_PANEL + r, accst[r][i]);
}

#define ROWS(MODE, MR, RG, BLK)                                                   \
    for (size_t r0 = 0; r0 < KN_FP8W_PANEL && p * KN_FP8W_PANEL + r0 < w->N; r0 += RG) \
        dtile(MODE, MR, RG, BLK, a, p, r0, m0)

/* One activation row: a 16-row panel per activation vector (the
 * bandwidth-bound GEMV).  More rows: stile in tiles of 4, then 2 and 1,
 * keeping MR*RG*(1+BLK) accumulators within 16 (tiles of 8 rows x 2
 * weight rows measured slower than two of 4 x 4); each further tile
 * re-reads the panel from L1/L2, not from DRAM. */
AI void decode_t(const int MODE, const dargs *a, size_t p0, size_t p1)
{
    const kn_fp8w *w = a->w;
    const int blk = w->sk == KN_FP8_SCALE_BLOCK;
    KN_ASSERT(p0 <= p1 && p1 <= w->n_panels);
    for (size_t p = p0; p < p1; p++)
        for (size_t m0 = 0; m0 < a->M;) {
            size_t left = a->M - m0, mr = left >= 4 ? 4 : left >= 2 ? 2 : 1;
            switch (mr * 2 + (size_t)blk) {
            case 2: ROWS(MODE, 1, 16, 0); break;
            case 3: ROWS(MODE, 1, 8, 1); break;
            case 4: stile(MODE, 2, 8, 0, a, p, m0); break;
            case 5: stile(MODE, 2, 4, 1, a, p, m0); break;
            case 8: stile(MODE, 4, 4, 0, a, p, m0); break;
            default: stile(MODE, 4, 2, 1, a, p, m0); break;
            }
            m0 += mr;
        }
}

static void dargs_init(dargs *a, float *y, size_t ldy, size_t M, const kn_fp8w *w,
                       const float *bias)
{
    uint8_t perm[64];
    int32_t ia[16], ib[16];

    memset(a, 0, sizeof(*a));
    a->y = y;
    a->ldy = ldy;
    a->M = M;
    a->w = w;
    a->bias = bias;
    tabs_build(&a->wt, w->fmt);
    for (size_t k = 0; k < 64; k++)
        perm[kn__fp8w_pos(k)] = (uint8_t)k;
    a->xperm = _mm512_loadu_si512(perm);
    /* unpack{lo,hi}_epi16 of a widened vector give lane 4q+i = k 8q+i
     * (lo) and 8q+4+i (hi) */
#pragma GCC unroll 16
    for (int q = 0; q < 4; q++)
#pragma GCC unroll 16
        for (int i = 0; i < 4; i++) {
            ia[4 * q + i] = 8 * q + i;
            ib[4 * q + i] = 8 * q + 4 + i;
        }
    a->idx_a = _mm512_loadu_si512(ia);
    a->idx_b = _mm512_loadu_si512(ib);
}

static void avx_linear(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                       const kn_fp8w *w, size_t p0, size_t p1, const float *bias)
{
    dargs a;
    dargs_init(&a, y, ldy, M, w, bias);
    a.x = x;
    a.ldx = ldx;
    decode_t(MODE_F32, &a, p0, p1);
}

static void avx_linear_bf16(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                            const kn_fp8w *w, size_t p0, size_t p1, const float *bias)
{
    dargs a;
    dargs_init(&a, y, ldy, M, w, bias);
    a.x = x;
    a.ldx = ldx;
    decode_t(MODE_BF16, &a, p0, p1);
}

static void avx_linear_w8a8(float *y, size_t ldy, const uint8_t *xq, size_t ldq,
                            kn_fp8_format xfmt, const float *xs, size_t M, const kn_fp8w *w,
                            size_t p0, size_t p1, const float *bias)
{
    dargs a;
    dargs_init(&a, y, ldy, M, w, bias);
    a.xq = xq;
    a.ldq = ldq;
    a.xs = xs;
    tabs_build(&a.xt, xfmt);
    decode_t(MODE_W8A8, &a, p0, p1);
}

/* ---- prefill: large M ---------------------------------------------- */

/* Panels [p, p+np) to bf16, layout wb[k pair][16 * np rows] (dwords). */
static void widen_panels(uint32_t *wb, const kn_fp8w *w, size_t p, int np, const tabs *t)
{
    const size_t stride = 16 * (size_t)np;
    for (size_t c = 0; c < w->k_chunks; c++)
#pragma GCC unroll 16
        for (int v = 0; v < np; v++) {
            __m512i r0[16], r1[16], o[16];
            const uint8_t *src = kn__fp8w_chunk(w, p + (size_t)v, c);
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++)
                widen(_mm512_load_si512(src + r * KN_FP8W_KCHUNK), t, &r0[r], &r1[r]);
            kn__tr16(r0, o);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                _mm512_store_si512(wb + (c * 32 + (size_t)j) * stride + 16 * (size_t)v, o[j]);
            kn__tr16(r1, o);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                _mm512_store_si512(wb + (c * 32 + 16 + (size_t)j) * stride + 16 * (size_t)v, o[j]);
        }
}

/* Activations in the tiled layout the tiles broadcast from: rows in
 * groups of XT, and inside a group k pair by k pair, the XT rows' bf16
 * pairs side by side (dword (t * kk_n + kk) * XT + i is row t * XT + i, k
 * pair kk).  A tile then reaches all its rows from one pointer with
 * constant offsets; with rows kp apart it needed a register per row, and
 * gcc parked three of the twelve in vector registers (a vmovq each per k
 * pair) and the loop bound on the stack. */
#define XT 12

typedef struct pargs {
    float         *y;
    size_t         ldy;
    const float   *xs;      /* W8A8 */
    const kn_fp8w *w;
    const float   *bias;
    const uint32_t *xb;     /* bf16 activation pairs, tiled (see XT) */
    const uint32_t *wb;     /* [kp / 2][16 * np] bf16 pairs */
    size_t         kp;      /* k padded to whole chunks */
} pargs;

/* MR activation rows x NV panels (of 16 rows) over the k pairs [kk0,
 * kk1); mx: first row in xb, m: first row of y, n_valid_m: rows to store.
 * Sums over K longer than one k block pass through y unscaled: 'first'
 * starts from zero instead of y, 'last' applies scales and bias.  pf, pf_n:
 * lines of the next panel pair to prefetch into L2, spread over the tile's
 * k loop (see prefill_panels). */
AI void ptile(const int W8, const int MR, const int NV, const int BLK, const pargs *a,
              size_t mx, size_t m, size_t n_valid_m, size_t p, size_t kk0, size_t kk1,
              bool first, bool last, const char *pf, size_t pf_n)
{
    /* pf_n lines of the next panel pair, one per pf_every k pairs */
    const size_t pf_every = pf_n == 0                 ? kk1 - kk0
                            : (kk1 - kk0) / pf_n > 0 ? (kk1 - kk0) / pf_n
                                                     : 1;
    const kn_fp8w *w = a->w;
    const size_t stride = 16 * (size_t)NV;
    /* row mx + i, k pair kk at xt[kk * XT + i]: one pointer, constant offsets */
    const uint32_t *xt = a->xb + (mx / XT) * (a->kp / 2) * XT + mx % XT;
    __m512 acc[12][2], bacc[12][2];
    __mmask16 mk[2];

#pragma GCC unroll 16
    for (int v = 0; v < NV; v++)
        mk[v] = kn__mask16(w->N, (p + (size_t)v) * KN_FP8W_PANEL);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            bacc[i][v] = _mm512_setzero_ps();
            acc[i][v] = first || (size_t)i >= n_valid_m
                            ? _mm512_setzero_ps()
                            : _mm512_maskz_loadu_ps(mk[v], a->y + (m + (size_t)i) * a->ldy +
                                                               (p + (size_t)v) * KN_FP8W_PANEL);
        }
    /* without block scales the whole range is one "block" */
    const size_t kk_blk = BLK ? KN_FP8W_BLOCK / 2 : kk1 - kk0;
    for (size_t kb0 = kk0; kb0 < kk1; kb0 += kk_blk) {
        size_t kb1 = kb0 + kk_blk < kk1 ? kb0 + kk_blk : kk1;
        for (size_t kg = kb0; kg < kb1; kg += pf_every) {
            size_t kg1 = kg + pf_every < kb1 ? kg + pf_every : kb1;
            if (pf_n) {
                _mm_prefetch(pf, _MM_HINT_T1);
                pf += 64;
                pf_n--;
            }
            for (size_t kk = kg; kk < kg1; kk++) {
                __m512i wv[2];
#pragma GCC unroll 16
                for (int v = 0; v < NV; v++)
                    wv[v] = _mm512_load_si512(a->wb + kk * stride + 16 * (size_t)v);
#pragma GCC unroll 16
                for (int i = 0; i < MR; i++) {
                    __m512i xv = _mm512_set1_epi32((int)xt[kk * XT + (size_t)i]);
#pragma GCC unroll 16
                    for (int v = 0; v < NV; v++) {
                        __m512 *d = BLK ? &bacc[i][v] : &acc[i][v];
                        *d = dp(*d, wv[v], xv);
                    }
                }
            }
        }
        if (BLK) {
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++) {
                size_t blk = ((p + (size_t)v) / 8) * w->kb + kb0 / (KN_FP8W_BLOCK / 2);
                __m512 s = _mm512_set1_ps(w->scales[blk]);
#pragma GCC unroll 16
                for (int i = 0; i < MR; i++) {
                    acc[i][v] = _mm512_fmadd_ps(bacc[i][v], s, acc[i][v]);
                    bacc[i][v] = _mm512_setzero_ps();
                }
            }
        }
    }
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
        size_t n0 = (p + (size_t)v) * KN_FP8W_PANEL;
        if (n0 >= w->N)
            break;
        __m512 sv = w->sk == KN_FP8_SCALE_CHANNEL ? _mm512_loadu_ps(w->scales + n0)
                                                   : _mm512_set1_ps(w->scales[0]);
        __m512 bv = a->bias ? _mm512_maskz_loadu_ps(mk[v], a->bias + n0) : _mm512_setzero_ps();
        for (int i = 0; i < MR && (size_t)i < n_valid_m; i++) {
            __m512 r = acc[i][v];
            if (last) {
                if (W8)
                    r = _mm512_mul_ps(r, _mm512_set1_ps(a->xs[m + (size_t)i]));
                if (!BLK)
                    r = _mm512_mul_ps(r, sv);
                r = _mm512_add_ps(r, bv);
            }
            _mm512_mask_storeu_ps(a->y + (m + (size_t)i) * a->ldy + n0, mk[v], r);
        }
    }
}


/* Rows v[0..XT) (16 k pairs each; v[XT..16) are zero) to the tiled
 * layout at dst = the group's k pair kk0. */
AI void store_tiled(uint32_t *dst, __m512i v[16])
{
    __m512i o[16];
    kn__tr16(v, o);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++)
        _mm512_mask_storeu_epi32(dst + (size_t)j * XT, (__mmask16)((1u << XT) - 1), o[j]);
}

/* Activation rows [0, mb) of x to bf16 in the tiled layout xb (zero past
 * K, and rows up to 'rows', a multiple of XT, zeroed so whole tiles can
 * run). */
static void convert_f32(uint32_t *xb, size_t kp, const float *x, size_t ldx, size_t K,
                        size_t mb, size_t rows)
{
    const size_t kk_n = kp / 2;
    for (size_t t = 0; t < rows; t += XT)
        for (size_t k = 0; k < kp; k += 32) {
            __m512i v[16];
            for (int i = 0; i < 16; i++) {
                __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
                if (i < XT && t + (size_t)i < mb) {
                    const float *r = x + (t + (size_t)i) * ldx;
                    a = _mm512_maskz_loadu_ps(kn__mask16(K, k), r + k);
                    b = _mm512_maskz_loadu_ps(kn__mask16(K, k + 16), r + k + 16);
                }
                v[i] = (__m512i)_mm512_cvtne2ps_pbh(b, a);
            }
            store_tiled(xb + (t / XT * kk_n + k / 2) * XT, v);
        }
}

static void convert_fp8(uint32_t *xb, size_t kp, const uint8_t *xq, size_t ldq, size_t K,
                        size_t mb, size_t rows, const tabs *tb, __m512i perm)
{
    const size_t kk_n = kp / 2;
    for (size_t t = 0; t < rows; t += XT)
        for (size_t k = 0; k < kp; k += 64) {
            __m512i v0[16], v1[16];
            for (int i = 0; i < 16; i++) {
                size_t r = t + (size_t)i;
                __mmask64 mk = i >= XT || r >= mb ? 0
                               : K - k >= 64      ? ~(__mmask64)0
                                                  : (((__mmask64)1 << (K - k)) - 1);
                __m512i q = _mm512_maskz_loadu_epi8(mk, xq + r * ldq + k);
                widen(_mm512_permutexvar_epi8(perm, q), tb, &v0[i], &v1[i]);
            }
            store_tiled(xb + (t / XT * kk_n + k / 2) * XT, v0);
            store_tiled(xb + (t / XT * kk_n + k / 2 + 16) * XT, v1);
        }
}

/* MR = 12 rows x 2 panels = 24 accumulators; block scales need a second
 * set, so 6 rows there.  K is walked in blocks of KK_BLOCK k pairs so that
 * a tile's activations (12 x 4 KiB) and the panel block (128 KiB) stay in
 * L2 while the tiles pass (K = 8192 ran at ~55% of peak without).
 *
 * The FP8 codes of the next panel pair (next, next_len bytes) are
 * prefetched into L2 while this pair's tiles run, a line every few k
 * pairs: widen_panels then reads them from L2 instead of stalling on
 * DRAM.  Measured (2 threads, M = 128, 8 weight copies cycled so that
 * every product reads DRAM, A/B interleaved 3 times): 8192x2048 766 ->
 * 800-815 GFLOP/s, 2048x8192 700-755 -> 760-776, 2048x2048 unchanged
 * (~800); in the Llama-3.2-1B prefill the widening fell from 13% to 6% of
 * the product time.  A burst of prefetches per tile instead did nothing
 * measurable. */
#define KK_BLOCK 1024
AI void prefill_panels(const int W8, const pargs *a, size_t mb, size_t m0, size_t p, int np,
                       const char *next, size_t next_len)
{
    const int blk = a->w->sk == KN_FP8_SCALE_BLOCK;
    const size_t mr = blk && np == 2 ? 6 : 12, kk_n = a->kp / 2;
    const size_t calls = ((kk_n + KK_BLOCK - 1) / KK_BLOCK) * ((mb + mr - 1) / mr);
    const size_t lines = next_len / 64;
    size_t call = 0;
    for (size_t kk0 = 0; kk0 < kk_n; kk0 += KK_BLOCK) {
        size_t kk1 = kk0 + KK_BLOCK < kk_n ? kk0 + KK_BLOCK : kk_n;
        bool first = kk0 == 0, last = kk1 == kk_n;
        for (size_t i = 0; i < mb; i += mr, call++) {
            size_t l0 = lines * call / calls, l1 = lines * (call + 1) / calls;
            const char *pf = next != NULL ? next + 64 * l0 : NULL;
            size_t pf_n = next != NULL ? l1 - l0 : 0;
            size_t nv = mb - i < mr ? mb - i : mr;
            /* a last tile of up to 4 or 8 rows runs as such, not as 12 */
            int shape = (np * 2 + blk) * 3 + (nv <= 4 ? 0 : nv <= 8 ? 1 : 2);
            switch (shape) {
#define PT(MR, NV, BLK)                                                          \
    ptile(W8, MR, NV, BLK, a, i, m0 + i, nv, p, kk0, kk1, first, last, pf, pf_n); \
    break
            case 6: PT(4, 1, 0);
            case 7: PT(8, 1, 0);
            case 8: PT(12, 1, 0);
            case 9: PT(4, 1, 1);
            case 10: PT(8, 1, 1);
            case 11: PT(12, 1, 1);
            case 12: PT(4, 2, 0);
            case 13: PT(8, 2, 0);
            case 14: PT(12, 2, 0);
            case 15: PT(4, 2, 1);
            default: PT(6, 2, 1);
#undef PT
            }
        }
    }
}

AI void prefill_t(const int W8, float *y, size_t ldy, const float *x, size_t ldx,
                  const uint8_t *xq, size_t ldq, kn_fp8_format xfmt, const float *xs, size_t M,
                  const kn_fp8w *w, size_t p0, size_t p1, const float *bias, void *scratch,
                  bool x_ready)
{
    const size_t kp = w->k_chunks * KN_FP8W_KCHUNK;
    uint32_t *xb = scratch;
    uint32_t *wb = xb + KN_FP8MM_MBLOCK * kp / 2;
    pargs a = {y, ldy, xs, w, bias, xb, wb, kp};
    tabs wt, xt;
    uint8_t perm[64];

    KN_ASSERT(((uintptr_t)scratch & 63) == 0);
    KN_ASSERT(p0 <= p1 && p1 <= w->n_panels);
    tabs_build(&wt, w->fmt);
    if (W8) {
        tabs_build(&xt, xfmt);
        for (size_t k = 0; k < 64; k++)
            perm[kn__fp8w_pos(k)] = (uint8_t)k;
    }
    for (size_t m0 = 0; m0 < M; m0 += KN_FP8MM_MBLOCK) {
        size_t mb = M - m0 < KN_FP8MM_MBLOCK ? M - m0 : KN_FP8MM_MBLOCK;
        size_t rows = (mb + XT - 1) / XT * XT;   /* whole tiles of 12 (and 6) */
        /* with x_ready the caller's previous call left these rows in xb */
        bool convert = !x_ready || M > KN_FP8MM_MBLOCK;
        if (convert && W8)
            convert_fp8(xb, kp, xq + m0 * ldq, ldq, w->K, mb, rows, &xt,
                        _mm512_loadu_si512(perm));
        else if (convert)
            convert_f32(xb, kp, x + m0 * ldx, ldx, w->K, mb, rows);
        for (size_t p = p0; p < p1;) {
            int np = p + 1 < p1 ? 2 : 1;
            /* the pair widened next: this block's, or the next block's first */
            size_t pn = p + (size_t)np < p1 ? p + (size_t)np : m0 + mb < M ? p0 : p1;
            size_t nn = pn >= p1 ? 0 : pn + 1 < p1 ? 2 : 1;
            widen_panels(wb, w, p, np, &wt);
            prefill_panels(W8, &a, mb, m0, p, np,
                           nn ? (const char *)kn__fp8w_chunk(w, pn, 0) : NULL,
                           nn * KN_FP8W_PANEL * kp);
            p += (size_t)np;
        }
    }
}

static void avx_prefill_bf16(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                             const kn_fp8w *w, size_t p0, size_t p1, const float *bias,
                             void *scratch, bool x_ready)
{
    prefill_t(0, y, ldy, x, ldx, NULL, 0, KN_FP8_E4M3, NULL, M, w, p0, p1, bias, scratch,
              x_ready);
}

static void avx_prefill_w8a8(float *y, size_t ldy, const uint8_t *xq, size_t ldq,
                             kn_fp8_format xfmt, const float *xs, size_t M, const kn_fp8w *w,
                             size_t p0, size_t p1, const float *bias, void *scratch,
                             bool x_ready)
{
    prefill_t(1, y, ldy, NULL, 0, xq, ldq, xfmt, xs, M, w, p0, p1, bias, scratch, x_ready);
}

const kn_fp8mm_ops kn__fp8mm_avx512 = {"avx512", avx_linear, avx_linear_bf16, avx_linear_w8a8,
                                       avx_prefill_bf16, avx_prefill_w8a8};
