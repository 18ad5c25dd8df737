/* kn_ref.c: the plain C specification of the FP8 codec: encoders from
 * f32, bf16 and f16 (optionally scaled), the table decode and amax.
 * Written for clarity, not speed: every other variant must match it bit
 * for bit (tests/check_kernels.c), and it must match torch's vectors in
 * ../shared/testdata/fp8 (tests/conf_fp8.c).  Semantics follow
 * fp8-semantics.md 1.3-1.5; the numbered steps below refer to 1.3.
 * Assumes the default floating-point environment (round to nearest even,
 * no flush-to-zero), which nothing in fp8d changes. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kn_codec-int.h"

/* Per-format constants (fp8-semantics.md 1.1). */
typedef struct fmt_info {
    int     mbits;          /* mantissa bits: 3 or 2 */
    int     bias;           /* 7 or 15 */
    float   min_normal;     /* 2^-6 or 2^-14 */
    uint8_t max_code;       /* 0x7E (448) or 0x7B (57344) */
    uint8_t overflow_code;  /* non-saturating overflow: NaN 0x7F (e4m3) or inf 0x7C (e5m2) */
} fmt_info;

static const fmt_info kFmt[2] = {
    [KN_FP8_E4M3] = {3, 7, 0x1p-6f, 0x7E, 0x7F},
    [KN_FP8_E5M2] = {2, 15, 0x1p-14f, 0x7B, 0x7C},
};

/* Step 5: whether |v| (finite) rounds past the largest finite value.
 * e4m3: 464 is the tie between 448 (mantissa 110, even) and the missing
 * 480, so it stays; e5m2: 61440 is the tie between 57344 (mantissa 11,
 * odd) and 65536 (even), so it overflows. */
static bool overflows(float a, kn_fp8_format fmt)
{
    return fmt == KN_FP8_E4M3 ? a > 464.0f : a >= 61440.0f;
}

static uint8_t encode_one(float v, kn_fp8_format fmt, bool saturate)
{
    const fmt_info *f = &kFmt[fmt];
    uint32_t bits;
    uint8_t sign;
    float a = fabsf(v);

    memcpy(&bits, &v, sizeof(bits));
    sign = (uint8_t)((bits >> 24) & 0x80);
    if (isnan(v))
        return 0x7F | sign; /* NaN stays NaN in both modes; sign kept as c10 does */
    if (isinf(a) || overflows(a, fmt))
        return (saturate ? f->max_code : f->overflow_code) | sign;
    if (a < f->min_normal) {
        /* Step 3: count units of the smallest subnormal, 2^(1-bias-mbits);
         * the scaling is exact, nearbyintf is the one rounding (RNE).  A
         * result of 2^mbits is the smallest normal code, as it should be. */
        float k = nearbyintf(ldexpf(a, f->bias - 1 + f->mbits));
        return sign | (uint8_t)k;
    }
    /* Step 4: a = fr * 2^e with fr in [0.5, 1); the normal value is
     * 2^(e-1) * (1 + M/2^mbits), so fr * 2^(mbits+1) in [2^mbits, 2^(mbits+1))
     * holds the implicit bit and the mantissa. */
    int e;
    float fr = frexpf(a, &e);
    float q = nearbyintf(ldexpf(fr, f->mbits + 1));
    if (q == ldexpf(1.0f, f->mbits + 1)) { /* mantissa carried into the exponent */
        q = ldexpf(1.0f, f->mbits);
        e++;
    }
    unsigned biased = (unsigned)(e - 1 + f->bias);
    unsigned mant = (unsigned)q - (1u << f->mbits);
    return sign | (uint8_t)((biased << f->mbits) | mant);
}

/* Step 2: the product (or quotient) is rounded to f32 first. */
static inline float apply_scale(float x, float scale, unsigned flags)
{
    return (flags & KN_FP8_DIVIDE) ? x / scale : x * scale;
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16; /* bf16 is the top half of an f32: exact */
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* IEEE binary16 to f32 by its formula; exact (every half is an f32). */
static float f16_to_f32(uint16_t h)
{
    unsigned e = (h >> 10) & 0x1F, m = h & 0x3FF;
    float a;

    if (e == 0x1F)
        a = m != 0 ? NAN : INFINITY;
    else if (e == 0)
        a = ldexpf((float)m, -24);                 /* subnormal: m * 2^-24 */
    else
        a = ldexpf((float)(1024 + m), (int)e - 25); /* (1 + m/1024) * 2^(e-15) */
    return (h & 0x8000) ? -a : a;
}

static void ref_f32_to_fp8(uint8_t *dst, const float *src, size_t n,
                           kn_fp8_format fmt, float scale, unsigned flags)
{
    bool sat = (flags & KN_FP8_SATURATE) != 0;

    KN_ASSERT(fmt == KN_FP8_E4M3 || fmt == KN_FP8_E5M2);
    for (size_t i = 0; i < n; i++)
        dst[i] = encode_one(apply_scale(src[i], scale, flags), fmt, sat);
}

/* Step 1: widen exactly, then one rounding; never via a narrower type. */
static void ref_bf16_to_fp8(uint8_t *dst, const uint16_t *src, size_t n,
                            kn_fp8_format fmt, float scale, unsigned flags)
{
    bool sat = (flags & KN_FP8_SATURATE) != 0;

    KN_ASSERT(fmt == KN_FP8_E4M3 || fmt == KN_FP8_E5M2);
    for (size_t i = 0; i < n; i++)
        dst[i] = encode_one(apply_scale(bf16_to_f32(src[i]), scale, flags), fmt, sat);
}

static void ref_f16_to_fp8(uint8_t *dst, const uint16_t *src, size_t n,
                           kn_fp8_format fmt, float scale, unsigned flags)
{
    bool sat = (flags & KN_FP8_SATURATE) != 0;

    KN_ASSERT(fmt == KN_FP8_E4M3 || fmt == KN_FP8_E5M2);
    for (size_t i = 0; i < n; i++)
        dst[i] = encode_one(apply_scale(f16_to_f32(src[i]), scale, flags), fmt, sat);
}

/* Decode tables: value of every code from the bit layout. */
static float g_table[2][256];
static pthread_once_t g_table_once = PTHREAD_ONCE_INIT;

static float decode_formula(unsigned c, kn_fp8_format fmt)
{
    const fmt_info *f = &kFmt[fmt];
    unsigned ebits = 7 - (unsigned)f->mbits;
    unsigned e = (c >> f->mbits) & ((1u << ebits) - 1), m = c & ((1u << f->mbits) - 1);
    float a;

    if (fmt == KN_FP8_E4M3 && e == 15 && m == 7)
        a = NAN;                              /* e4m3fn: only S.1111.111 is special */
    else if (fmt == KN_FP8_E5M2 && e == 31)
        a = m == 0 ? INFINITY : NAN;          /* IEEE-like top exponent */
    else if (e == 0)
        a = ldexpf((float)m, 1 - f->bias - f->mbits);
    else
        a = ldexpf((float)((1u << f->mbits) + m), (int)e - f->bias - f->mbits);
    return (c & 0x80) ? -a : a;
}

static void build_tables(void)
{
    for (unsigned c = 0; c < 256; c++) {
        g_table[KN_FP8_E4M3][c] = decode_formula(c, KN_FP8_E4M3);
        g_table[KN_FP8_E5M2][c] = decode_formula(c, KN_FP8_E5M2);
    }
}

const float *kn__fp8_table(kn_fp8_format fmt)
{
    KN_ASSERT(fmt == KN_FP8_E4M3 || fmt == KN_FP8_E5M2);
    pthread_once(&g_table_once, build_tables);
    return g_table[fmt];
}

static void ref_fp8_to_f32(float *dst, const uint8_t *src, size_t n,
                           kn_fp8_format fmt, float scale)
{
    const float *t = kn__fp8_table(fmt);
    for (size_t i = 0; i < n; i++)
        dst[i] = t[src[i]] * scale;
}

/* fmaxf semantics (TE and IPEX cast kernels): NaN is skipped, inf counts.
 * fp8-semantics.md 6.2 item 10: ignore and count. */
static float ref_amax_f32(const float *x, size_t n, size_t *n_nan)
{
    float m = 0.0f;
    size_t nan = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i]))
            nan++;
        else if (fabsf(x[i]) > m)
            m = fabsf(x[i]);
    }
    if (n_nan != NULL)
        *n_nan = nan;
    return m;
}

static float ref_amax_bf16(const uint16_t *x, size_t n, size_t *n_nan)
{
    float m = 0.0f;
    size_t nan = 0;
    for (size_t i = 0; i < n; i++) {
        float v = bf16_to_f32(x[i]);
        if (isnan(v))
            nan++;
        else if (fabsf(v) > m)
            m = fabsf(v);
    }
    if (n_nan != NULL)
        *n_nan = nan;
    return m;
}

/* The fused encoders are defined as the two separate passes. */
static float ref_f32_to_fp8_amax(uint8_t *dst, const float *src, size_t n, kn_fp8_format fmt,
                                 float scale, unsigned flags, size_t *n_nan)
{
    ref_f32_to_fp8(dst, src, n, fmt, scale, flags);
    return ref_amax_f32(src, n, n_nan);
}

static float ref_bf16_to_fp8_amax(uint8_t *dst, const uint16_t *src, size_t n,
                                  kn_fp8_format fmt, float scale, unsigned flags, size_t *n_nan)
{
    ref_bf16_to_fp8(dst, src, n, fmt, scale, flags);
    return ref_amax_bf16(src, n, n_nan);
}

const kn_ops kn__ops_ref = {
    .name = "ref",
    .f32_to_fp8 = ref_f32_to_fp8,
    .bf16_to_fp8 = ref_bf16_to_fp8,
    .f16_to_fp8 = ref_f16_to_fp8,
    .fp8_to_f32 = ref_fp8_to_f32,
    .amax_f32 = ref_amax_f32,
    .amax_bf16 = ref_amax_bf16,
    .f32_to_fp8_amax = ref_f32_to_fp8_amax,
    .bf16_to_fp8_amax = ref_bf16_to_fp8_amax,
};

uint8_t kn_fp8_encode(float x, kn_fp8_format fmt, bool saturate)
{
    KN_ASSERT(fmt == KN_FP8_E4M3 || fmt == KN_FP8_E5M2);
    return encode_one(x, fmt, saturate);
}

float kn_fp8_decode(uint8_t code, kn_fp8_format fmt)
{
    return kn__fp8_table(fmt)[code];
}

float kn_fp8_max(kn_fp8_format fmt)
{
    KN_ASSERT(fmt == KN_FP8_E4M3 || fmt == KN_FP8_E5M2);
    return fmt == KN_FP8_E4M3 ? 448.0f : 57344.0f;
}
