/* kn_avx512.c: AVX-512 variants of the FP8 codec (kn__ops_avx512).
 * Compiled with KN_AVX512_FLAGS into its own library; reached only
 * through the ops table after kn_init() has checked every one of those
 * features (kn_cpu.c), so nothing here may run before that: no
 * constructors, no exported helpers.  Bit-exact with kn_ref.c, which is
 * the specification; the encoders use integer rounding tricks (the same
 * idea as c10's fp8 casts) instead of frexp/nearbyint.
 * AVX512_BF16 has no instruction that helps here: bf16 -> f32 is a
 * 16-bit shift, and its converts go the other way (f32 -> bf16). */
#include "config.h"

#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kn_avx512-int.h"
#include "kernels/kn_codec-int.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

enum src_kind { SRC_F32, SRC_BF16, SRC_F16 };

/* Loads 16 elements (lanes outside m read as 0, never touched in memory)
 * and widens them exactly to f32. */
ALWAYS_INLINE __m512 load16(const void *src, size_t i, __mmask16 m, enum src_kind kind)
{
    if (kind == SRC_F32)
        return _mm512_maskz_loadu_ps(m, (const float *)src + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)src + i);
    if (kind == SRC_F16)
        return _mm512_cvtph_ps(h); /* exact, subnormals included */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* f32 -> e4m3 codes in the low byte of each 32-bit lane.
 * Overflow: anything whose |bits| >= bits(480) (finite above the 464 tie,
 * inf, NaN) gives 0x7F; saturation clamps non-NaN magnitudes to 448 first.
 * Subnormal range (|v| < 2^-6): adding 2^14, whose f32 ulp is 2^-9 (the
 * smallest e4m3 subnormal), makes the FPU round |v| to a multiple of 2^-9
 * with RNE; the low mantissa bits are then the code.
 * Normal range: rebias the exponent (7 - 127) and round the 20 dropped
 * mantissa bits to nearest even by adding 0x7FFFF + the lowest kept bit. */
ALWAYS_INLINE __m512i enc_e4m3(__m512 v, int sat)
{
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i u = _mm512_castps_si512(v);
    __m512i sign = _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80));
    __m512i a = _mm512_and_si512(u, abs_mask);

    if (sat) /* vminps returns its second operand when one is NaN: NaN passes */
        a = _mm512_castps_si512(_mm512_min_ps(_mm512_set1_ps(448.0f), _mm512_castsi512_ps(a)));
    __mmask16 over = _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(0x43F00000));  /* 480 */
    __mmask16 small = _mm512_cmplt_epu32_mask(a, _mm512_set1_epi32(121 << 23));  /* 2^-6 */

    __m512 sub = _mm512_add_ps(_mm512_castsi512_ps(a), _mm512_set1_ps(0x1p14f));
    __m512i r_sub = _mm512_sub_epi32(_mm512_castps_si512(sub), _mm512_set1_epi32(141 << 23));

    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(a, 20), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(a, _mm512_set1_epi32((int32_t)(((uint32_t)(7 - 127) << 23) + 0x7FFFF)));
    r = _mm512_srli_epi32(_mm512_add_epi32(r, odd), 20);

    r = _mm512_mask_mov_epi32(r, small, r_sub);
    r = _mm512_mask_mov_epi32(r, over, _mm512_set1_epi32(0x7F));
    return _mm512_or_si512(r, sign);
}

/* f32 -> e5m2, same scheme: overflow from bits(65536) up (the normal
 * path already rounds [61440, 65536) to the inf code 0x7C), NaN -> 0x7F,
 * inf -> 0x7C; subnormal range |v| < 2^-14 rounded by adding 2^7 (ulp
 * 2^-16); normal range drops 21 bits. */
ALWAYS_INLINE __m512i enc_e5m2(__m512 v, int sat)
{
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i u = _mm512_castps_si512(v);
    __m512i sign = _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80));
    __m512i a = _mm512_and_si512(u, abs_mask);

    if (sat) /* NaN passes, as above */
        a = _mm512_castps_si512(_mm512_min_ps(_mm512_set1_ps(57344.0f), _mm512_castsi512_ps(a)));
    __mmask16 over = _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(143 << 23));  /* 65536 */
    __mmask16 small = _mm512_cmplt_epu32_mask(a, _mm512_set1_epi32(113 << 23)); /* 2^-14 */

    __m512 sub = _mm512_add_ps(_mm512_castsi512_ps(a), _mm512_set1_ps(0x1p7f));
    __m512i r_sub = _mm512_sub_epi32(_mm512_castps_si512(sub), _mm512_set1_epi32(134 << 23));

    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(a, 21), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(a, _mm512_set1_epi32((int32_t)(((uint32_t)(15 - 127) << 23) + 0xFFFFF)));
    r = _mm512_srli_epi32(_mm512_add_epi32(r, odd), 21);

    r = _mm512_mask_mov_epi32(r, small, r_sub);
    if (sat) { /* after the clamp only NaN is left above 65536 */
        r = _mm512_mask_mov_epi32(r, over, _mm512_set1_epi32(0x7F));
    } else {
        __mmask16 is_nan = _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7F800000));
        r = _mm512_mask_mov_epi32(r, over, _mm512_set1_epi32(0x7C));
        r = _mm512_mask_mov_epi32(r, is_nan, _mm512_set1_epi32(0x7F));
    }
    return _mm512_or_si512(r, sign);
}

/* Running amax for the fused encoders: max of |bits| over non-NaN lanes
 * (integer order of |bits| is numeric order for non-NaN f32, inf
 * included) and the NaN count; see amax_loop below. */
typedef struct amax_state {
    __m512i acc;
    size_t  nan;
} amax_state;

ALWAYS_INLINE void amax_add(amax_state *st, __m512 v, __mmask16 m)
{
    __m512i a = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
    __mmask16 ok = _mm512_mask_cmple_epu32_mask(m, a, _mm512_set1_epi32(0x7F800000));
    st->nan += (size_t)__builtin_popcount((unsigned)(m & (__mmask16)~ok));
    st->acc = _mm512_mask_max_epu32(st->acc, ok, st->acc, a);
}

ALWAYS_INLINE float amax_result(const amax_state *st, size_t *n_nan)
{
    uint32_t bits = _mm512_reduce_max_epu32(st->acc);
    float r;
    memcpy(&r, &bits, sizeof(r));
    if (n_nan != NULL)
        *n_nan = st->nan;
    return r;
}

ALWAYS_INLINE __m512i enc_f32(__m512 v, kn_fp8_format fmt, int sat, int divide, __m512 scale)
{
    /* One f32 rounding for the scaled value, as in the reference. */
    v = divide ? _mm512_div_ps(v, scale) : _mm512_mul_ps(v, scale);
    return fmt == KN_FP8_E4M3 ? enc_e4m3(v, sat) : enc_e5m2(v, sat);
}

/* st: NULL (a constant after inlining) or the fused amax of the unscaled
 * inputs. */
ALWAYS_INLINE __m512i enc16(const void *src, size_t i, __mmask16 m, enum src_kind kind,
                            kn_fp8_format fmt, int sat, int divide, __m512 scale,
                            amax_state *st)
{
    __m512 v = load16(src, i, m, kind);
    if (st != NULL)
        amax_add(st, v, m);
    return enc_f32(v, fmt, sat, divide, scale);
}

/* 32 bf16 values from one 512-bit load without a widening shuffle: each
 * 32-bit lane holds an even element in its low half and the next odd one
 * in its high half; shifting the low half up, or masking the high half,
 * gives each as an f32 in place.  The two code vectors are merged into
 * 16-bit lanes (even byte first), so each 32-bit lane holds two codes in
 * memory order. */
ALWAYS_INLINE __m512i enc32_bf16(const uint16_t *src, kn_fp8_format fmt, int sat, int divide,
                                 __m512 scale, amax_state *st)
{
    __m512i x = _mm512_loadu_si512((const void *)src);
    __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
    __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32((int32_t)0xFFFF0000u)));
    if (st != NULL) {
        amax_add(st, even, 0xFFFF);
        amax_add(st, odd, 0xFFFF);
    }
    __m512i re = enc_f32(even, fmt, sat, divide, scale);
    __m512i ro = enc_f32(odd, fmt, sat, divide, scale);
    return _mm512_or_si512(re, _mm512_slli_epi32(ro, 8)); /* codes are 0..255 */
}

/* The encoder loop, instantiated per (source, format, saturation, divide)
 * by the constant arguments.  64 elements per step: f32 and f16 as four
 * 16-lane vectors narrowed with two saturating packs (codes are 0..255)
 * and one dword permute that undoes the packs' per-128-bit-lane
 * interleave; bf16 as two enc32_bf16 pair vectors.  The tail goes 16 at
 * a time with masked loads and a masked narrowing store. */
ALWAYS_INLINE void enc_loop(uint8_t *dst, const void *src, size_t n, enum src_kind kind,
                            kn_fp8_format fmt, int sat, int divide, float scale_f,
                            amax_state *st)
{
    const __m512 scale = _mm512_set1_ps(scale_f);
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    size_t i = 0;

    if (kind == SRC_BF16) {
        /* Two pair vectors: one unsigned-saturating pack (values fit in
         * 16 bits) and one qword permute to undo its lane interleave. */
        const __m512i perm64 = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
        for (; i + 64 <= n; i += 64) {
            __m512i p0 = enc32_bf16((const uint16_t *)src + i, fmt, sat, divide, scale, st);
            __m512i p1 = enc32_bf16((const uint16_t *)src + i + 32, fmt, sat, divide, scale, st);
            __m512i p = _mm512_packus_epi32(p0, p1);
            _mm512_storeu_si512((void *)(dst + i), _mm512_permutexvar_epi64(perm64, p));
        }
    }
    for (; i + 64 <= n; i += 64) {
        __m512i r0 = enc16(src, i, 0xFFFF, kind, fmt, sat, divide, scale, st);
        __m512i r1 = enc16(src, i + 16, 0xFFFF, kind, fmt, sat, divide, scale, st);
        __m512i r2 = enc16(src, i + 32, 0xFFFF, kind, fmt, sat, divide, scale, st);
        __m512i r3 = enc16(src, i + 48, 0xFFFF, kind, fmt, sat, divide, scale, st);
        __m512i p = _mm512_packus_epi16(_mm512_packus_epi32(r0, r1), _mm512_packus_epi32(r2, r3));
        _mm512_storeu_si512((void *)(dst + i), _mm512_permutexvar_epi32(perm, p));
    }
    for (; i < n; i += 16) {
        __mmask16 m = kn__mask16(n, i);
        _mm512_mask_cvtepi32_storeu_epi8(dst + i, m, enc16(src, i, m, kind, fmt, sat, divide, scale, st));
    }
}

#define ENC_DISPATCH(dst, src, n, kind, fmt, scale, flags, st)                                    \
    do {                                                                                          \
        int sat_ = ((flags) & KN_FP8_SATURATE) != 0, div_ = ((flags) & KN_FP8_DIVIDE) != 0;       \
        KN_ASSERT((fmt) == KN_FP8_E4M3 || (fmt) == KN_FP8_E5M2);                                  \
        if ((fmt) == KN_FP8_E4M3) {                                                               \
            if (sat_) {                                                                           \
                if (div_) enc_loop(dst, src, n, kind, KN_FP8_E4M3, 1, 1, scale, st);              \
                else      enc_loop(dst, src, n, kind, KN_FP8_E4M3, 1, 0, scale, st);              \
            } else {                                                                              \
                if (div_) enc_loop(dst, src, n, kind, KN_FP8_E4M3, 0, 1, scale, st);              \
                else      enc_loop(dst, src, n, kind, KN_FP8_E4M3, 0, 0, scale, st);              \
            }                                                                                     \
        } else {                                                                                  \
            if (sat_) {                                                                           \
                if (div_) enc_loop(dst, src, n, kind, KN_FP8_E5M2, 1, 1, scale, st);              \
                else      enc_loop(dst, src, n, kind, KN_FP8_E5M2, 1, 0, scale, st);              \
            } else {                                                                              \
                if (div_) enc_loop(dst, src, n, kind, KN_FP8_E5M2, 0, 1, scale, st);              \
                else      enc_loop(dst, src, n, kind, KN_FP8_E5M2, 0, 0, scale, st);              \
            }                                                                                     \
        }                                                                                         \
    } while (0)

static void avx512_f32_to_fp8(uint8_t *dst, const float *src, size_t n,
                              kn_fp8_format fmt, float scale, unsigned flags)
{
    ENC_DISPATCH(dst, src, n, SRC_F32, fmt, scale, flags, NULL);
}

static void avx512_bf16_to_fp8(uint8_t *dst, const uint16_t *src, size_t n,
                               kn_fp8_format fmt, float scale, unsigned flags)
{
    ENC_DISPATCH(dst, src, n, SRC_BF16, fmt, scale, flags, NULL);
}

/* The fused encoders: one pass over src for the codes and its amax. */
static float avx512_f32_to_fp8_amax(uint8_t *dst, const float *src, size_t n, kn_fp8_format fmt,
                                    float scale, unsigned flags, size_t *n_nan)
{
    amax_state st = {_mm512_setzero_si512(), 0};
    ENC_DISPATCH(dst, src, n, SRC_F32, fmt, scale, flags, &st);
    return amax_result(&st, n_nan);
}

static float avx512_bf16_to_fp8_amax(uint8_t *dst, const uint16_t *src, size_t n,
                                     kn_fp8_format fmt, float scale, unsigned flags,
                                     size_t *n_nan)
{
    amax_state st = {_mm512_setzero_si512(), 0};
    ENC_DISPATCH(dst, src, n, SRC_BF16, fmt, scale, flags, &st);
    return amax_result(&st, n_nan);
}

static void avx512_f16_to_fp8(uint8_t *dst, const uint16_t *src, size_t n,
                              kn_fp8_format fmt, float scale, unsigned flags)
{
    ENC_DISPATCH(dst, src, n, SRC_F16, fmt, scale, flags, NULL);
}

/* Decode 16 codes (32-bit lanes) to f32, bit-identical to the reference
 * table, NaN bits included (the table holds the default quiet NaN
 * 0x7FC00000 with the code's sign).
 * e4m3: the 7 magnitude bits placed at f32 bits 20..26 read as an f32
 * whose exponent is EEEE and mantissa MMM (an f32 subnormal when EEEE = 0);
 * times 2^(127-7) that is exactly the e4m3 value, subnormals included.
 * e5m2: the code is the top byte of an IEEE half, so vcvtph2ps decodes it
 * exactly (inf included); only NaN lanes are rewritten. */
ALWAYS_INLINE __m512 dec16(__m512i c, kn_fp8_format fmt)
{
    __m512i sign = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24);
    __m512i mag = _mm512_and_si512(c, _mm512_set1_epi32(0x7F));
    __m512 v;
    __mmask16 nan;

    if (fmt == KN_FP8_E4M3) {
        v = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(mag, 20)), _mm512_set1_ps(0x1p120f));
        nan = _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7F));
    } else {
        v = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_slli_epi32(mag, 8)));
        nan = _mm512_cmpgt_epi32_mask(mag, _mm512_set1_epi32(0x7C));
    }
    v = _mm512_mask_mov_ps(v, nan, _mm512_castsi512_ps(_mm512_set1_epi32(0x7FC00000)));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), sign));
}

ALWAYS_INLINE void dec_loop(float *dst, const uint8_t *src, size_t n, kn_fp8_format fmt,
                            float scale_f)
{
    const __m512 scale = _mm512_set1_ps(scale_f);
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_mul_ps(dec16(c, fmt), scale));
    }
    if (i < n) {
        __mmask16 m = kn__mask16(n, i);
        __m512i c = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, src + i));
        _mm512_mask_storeu_ps(dst + i, m, _mm512_mul_ps(dec16(c, fmt), scale));
    }
}

static void avx512_fp8_to_f32(float *dst, const uint8_t *src, size_t n,
                              kn_fp8_format fmt, float scale)
{
    KN_ASSERT(fmt == KN_FP8_E4M3 || fmt == KN_FP8_E5M2);
    if (fmt == KN_FP8_E4M3)
        dec_loop(dst, src, n, KN_FP8_E4M3, scale);
    else
        dec_loop(dst, src, n, KN_FP8_E5M2, scale);
}

/* amax on the magnitude bits as unsigned integers: for non-NaN f32 the
 * integer order of |bits| is the numeric order of |x|, inf included, and
 * NaN (|bits| > 0x7F800000) is masked out and counted.  Four accumulators
 * keep the max chains independent. */
ALWAYS_INLINE float amax_loop(const void *x, size_t n, size_t *n_nan, enum src_kind kind)
{
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    const __m512i inf = _mm512_set1_epi32(0x7F800000);
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(),
                      _mm512_setzero_si512(), _mm512_setzero_si512()};
    size_t nan = 0, i = 0;

    for (; i + 64 <= n; i += 64) {
        for (int k = 0; k < 4; k++) {
            __m512i a = _mm512_and_si512(_mm512_castps_si512(load16(x, i + 16 * (size_t)k, 0xFFFF, kind)),
                                         abs_mask);
            __mmask16 ok = _mm512_cmple_epu32_mask(a, inf);
            nan += (size_t)__builtin_popcount((unsigned)(__mmask16)~ok);
            acc[k] = _mm512_mask_max_epu32(acc[k], ok, acc[k], a);
        }
    }
    for (; i < n; i += 16) {
        __mmask16 m = kn__mask16(n, i);
        __m512i a = _mm512_and_si512(_mm512_castps_si512(load16(x, i, m, kind)), abs_mask);
        __mmask16 ok = _mm512_mask_cmple_epu32_mask(m, a, inf);
        nan += (size_t)__builtin_popcount((unsigned)(m & (__mmask16)~ok));
        acc[0] = _mm512_mask_max_epu32(acc[0], ok, acc[0], a);
    }
    __m512i all = _mm512_max_epu32(_mm512_max_epu32(acc[0], acc[1]), _mm512_max_epu32(acc[2], acc[3]));
    uint32_t bits = _mm512_reduce_max_epu32(all);
    float r;
    memcpy(&r, &bits, sizeof(r));
    if (n_nan != NULL)
        *n_nan = nan;
    return r;
}

static float avx512_amax_f32(const float *x, size_t n, size_t *n_nan)
{
    return amax_loop(x, n, n_nan, SRC_F32);
}

static float avx512_amax_bf16(const uint16_t *x, size_t n, size_t *n_nan)
{
    return amax_loop(x, n, n_nan, SRC_BF16);
}

const kn_ops kn__ops_avx512 = {
    .name = "avx512",
    .f32_to_fp8 = avx512_f32_to_fp8,
    .bf16_to_fp8 = avx512_bf16_to_fp8,
    .f16_to_fp8 = avx512_f16_to_fp8,
    .fp8_to_f32 = avx512_fp8_to_f32,
    .amax_f32 = avx512_amax_f32,
    .amax_bf16 = avx512_amax_bf16,
    .f32_to_fp8_amax = avx512_f32_to_fp8_amax,
    .bf16_to_fp8_amax = avx512_bf16_to_fp8_amax,
};
