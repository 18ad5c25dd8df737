/* check_kernels.c: the kernels/ suite: the FP8 codec, and the
 * math kernels of kn_math_ops (silu_mul, rmsnorm, attention) against double.
 * Every compiled-in variant against the reference bit for bit (random and
 * adversarial data, tail lengths), the committed vectors in
 * tests/data/fp8 through kn_init(<variant>) (the forced-variant path the
 * daemon uses), hand-derived cases from fp8-semantics.md 1.2-1.5, and the
 * round-trip error bound of each format.  The full 1M-row vector set runs
 * in tests/conf_fp8.c (make conformance). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tests/fp8_vectors.h"

static const size_t kLens[] = {0, 1, 15, 16, 17, 63, 64, 65, 1000,
                               2, 31, 33, 127, 129, 255, 257, 4099};
#define N_LENS (sizeof(kLens) / sizeof(kLens[0]))
#define MAX_LEN 4099
#define PAD 8 /* guard bytes after each output, checked untouched */

static const unsigned kFlags[] = {0, KN_FP8_SATURATE, KN_FP8_DIVIDE,
                                  KN_FP8_SATURATE | KN_FP8_DIVIDE};
/* 1: plain cast; powers of two: exact scaling; the rest: the f32
 * product/quotient rounds, so a variant must round it the same way. */
static const float kScales[] = {1.0f, 0.5f, 64.0f, 3.0f, 0.1f, 17.25f, 1e-3f, 7.0e5f};

/* xorshift64*: deterministic, independent of libc's rand(). */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd32(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 0x2545F4914F6CDD1Dull) >> 32);
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

/* Adversarial f32 values: specials, the overflow ties and their
 * neighbours, subnormal ties, f32 subnormals. */
static const float kSpecial[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 448.0f, 464.0f, 480.0f, 57344.0f, 61440.0f,
    65536.0f, 0x1p-9f, 0x1p-10f, 0x3p-10f, 0x5p-10f, 0x1p-16f, 0x1p-17f, 0x3p-17f, 0x1p-6f,
    0x1p-14f, 0x1p-149f, 0x1p-126f, 3.4028235e38f, 0x1.fffffep-7f, 0x1.000002p-6f, 1.0f,
};

/* Fills x with a mix: a third random bit patterns (every class of f32),
 * a third near fp8 grid points and midpoints (+-few ulp), the rest from
 * kSpecial and their f32 neighbours. */
static void fill_f32(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rnd32();
        switch (r % 3) {
        case 0:
            x[i] = bits_f32(rnd32());
            break;
        case 1: {
            kn_fp8_format fmt = (r >> 2) & 1 ? KN_FP8_E5M2 : KN_FP8_E4M3;
            uint8_t c = (uint8_t)(r >> 8);
            float a = kn_fp8_decode(c, fmt), b = kn_fp8_decode((uint8_t)(c + 1), fmt);
            float v = ((r >> 3) & 1) && isfinite(a) && isfinite(b) ? a + (b - a) / 2 : a;
            int32_t d = (int32_t)((r >> 16) % 7) - 3; /* -3..3 ulp */
            x[i] = isfinite(v) ? bits_f32(f32_bits(v) + (uint32_t)d) : v;
            break;
        }
        default: {
            float v = kSpecial[(r >> 4) % (sizeof(kSpecial) / sizeof(kSpecial[0]))];
            int32_t d = (int32_t)((r >> 16) % 3) - 1;
            x[i] = isfinite(v) && v != 0 ? bits_f32(f32_bits(v) + (uint32_t)d) : v;
            break;
        }
        }
    }
}

static void fill_u16(uint16_t *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (uint16_t)rnd32();
}

static int variant_or_skip(int i, const kn_ops **out)
{
    const kn_ops *v = kn_variant(i);
    if (!kn_variant_usable(v)) {
        fprintf(stderr, "SKIP %s: not supported by this CPU\n", v->name);
        return 0;
    }
    *out = v;
    return 1;
}

static void check_guard(const uint8_t *p, size_t n_bytes, const char *what)
{
    for (size_t k = 0; k < PAD; k++)
        ck_assert_msg(p[n_bytes + k] == 0xA5, "%s wrote past its end (n bytes %zu)", what, n_bytes);
}

/* An encoder of one source kind, every format x flags x scale x length,
 * with the source at an odd offset so nothing is aligned. */
typedef void (*enc_fn)(const kn_ops *, uint8_t *, const void *, size_t, kn_fp8_format, float,
                       unsigned);
static void call_f32(const kn_ops *o, uint8_t *d, const void *s, size_t n, kn_fp8_format f,
                     float sc, unsigned fl) { o->f32_to_fp8(d, s, n, f, sc, fl); }
static void call_bf16(const kn_ops *o, uint8_t *d, const void *s, size_t n, kn_fp8_format f,
                      float sc, unsigned fl) { o->bf16_to_fp8(d, s, n, f, sc, fl); }
static void call_f16(const kn_ops *o, uint8_t *d, const void *s, size_t n, kn_fp8_format f,
                     float sc, unsigned fl) { o->f16_to_fp8(d, s, n, f, sc, fl); }

static void compare_encoder(const kn_ops *v, enc_fn call, const void *src, const char *what)
{
    const kn_ops *ref = kn_variant(0);
    static uint8_t want[MAX_LEN + PAD], got[MAX_LEN + 1 + PAD];

    for (int fmt = 0; fmt < 2; fmt++)
        for (size_t f = 0; f < sizeof(kFlags) / sizeof(kFlags[0]); f++)
            for (size_t s = 0; s < sizeof(kScales) / sizeof(kScales[0]); s++)
                for (size_t l = 0; l < N_LENS; l++) {
                    size_t n = kLens[l];
                    memset(got, 0xA5, sizeof(got));
                    call(ref, want, src, n, (kn_fp8_format)fmt, kScales[s], kFlags[f]);
                    call(v, got + 1, src, n, (kn_fp8_format)fmt, kScales[s], kFlags[f]);
                    ck_assert_msg(got[0] == 0xA5, "%s %s wrote before its start", v->name, what);
                    check_guard(got + 1, n, what);
                    for (size_t i = 0; i < n; i++)
                        ck_assert_msg(got[1 + i] == want[i],
                                      "%s %s fmt %d flags %u scale %g n %zu: element %zu: "
                                      "got 0x%02X, ref 0x%02X",
                                      v->name, what, fmt, kFlags[f], (double)kScales[s], n, i,
                                      got[1 + i], want[i]);
                }
}

START_TEST(test_f32_encode_matches_ref)
{
    const kn_ops *v;
    static float buf[MAX_LEN + 1];
    if (!variant_or_skip(_i, &v))
        return;
    fill_f32(buf, MAX_LEN + 1);
    compare_encoder(v, call_f32, buf + 1, "f32_to_fp8");
}
END_TEST

START_TEST(test_bf16_encode_matches_ref)
{
    const kn_ops *v;
    static uint16_t buf[MAX_LEN + 1];
    if (!variant_or_skip(_i, &v))
        return;
    fill_u16(buf, MAX_LEN + 1);
    compare_encoder(v, call_bf16, buf + 1, "bf16_to_fp8");
}
END_TEST

START_TEST(test_f16_encode_matches_ref)
{
    const kn_ops *v;
    static uint16_t buf[MAX_LEN + 1];
    if (!variant_or_skip(_i, &v))
        return;
    fill_u16(buf, MAX_LEN + 1);
    compare_encoder(v, call_f16, buf + 1, "f16_to_fp8");
}
END_TEST

START_TEST(test_decode_matches_ref)
{
    const kn_ops *v, *ref = kn_variant(0);
    static uint8_t codes[MAX_LEN + 1];
    static float want[MAX_LEN], got[MAX_LEN + 4];
    if (!variant_or_skip(_i, &v))
        return;
    for (size_t i = 0; i < MAX_LEN + 1; i++)
        codes[i] = (uint8_t)(i < 256 ? i : rnd32());
    for (int fmt = 0; fmt < 2; fmt++)
        for (size_t s = 0; s < sizeof(kScales) / sizeof(kScales[0]); s++)
            for (size_t l = 0; l < N_LENS; l++) {
                size_t n = kLens[l];
                memset(got, 0xA5, sizeof(got));
                ref->fp8_to_f32(want, codes + 1, n, (kn_fp8_format)fmt, kScales[s]);
                v->fp8_to_f32(got + 1, codes + 1, n, (kn_fp8_format)fmt, kScales[s]);
                check_guard((const uint8_t *)(got + 1), n * sizeof(float), "fp8_to_f32");
                ck_assert_msg(memcmp(got + 1, want, n * sizeof(float)) == 0,
                              "%s fp8_to_f32 fmt %d scale %g n %zu differs from ref", v->name,
                              fmt, (double)kScales[s], n);
            }
}
END_TEST

START_TEST(test_amax_matches_ref)
{
    const kn_ops *v, *ref = kn_variant(0);
    static float x[MAX_LEN + 1];
    static uint16_t h[MAX_LEN + 1];
    if (!variant_or_skip(_i, &v))
        return;
    for (int round = 0; round < 4; round++) {
        fill_f32(x, MAX_LEN + 1);
        fill_u16(h, MAX_LEN + 1);
        if (round == 0) /* no inf, so the max is finite and sits anywhere */
            for (size_t i = 0; i < MAX_LEN + 1; i++)
                if (isinf(x[i]))
                    x[i] = 1.0f;
        for (size_t l = 0; l < N_LENS; l++) {
            size_t n = kLens[l], nan_ref = 7, nan_v = 9;
            float a = ref->amax_f32(x + 1, n, &nan_ref), b = v->amax_f32(x + 1, n, &nan_v);
            ck_assert_msg(f32_bits(a) == f32_bits(b) && nan_ref == nan_v,
                          "%s amax_f32 n %zu: got %a (%zu NaN), ref %a (%zu NaN)", v->name, n,
                          (double)b, nan_v, (double)a, nan_ref);
            a = ref->amax_bf16(h + 1, n, &nan_ref);
            b = v->amax_bf16(h + 1, n, &nan_v);
            ck_assert_msg(f32_bits(a) == f32_bits(b) && nan_ref == nan_v,
                          "%s amax_bf16 n %zu: got %a (%zu NaN), ref %a (%zu NaN)", v->name, n,
                          (double)b, nan_v, (double)a, nan_ref);
            (void)v->amax_f32(x + 1, n, NULL); /* NULL counter accepted */
        }
    }
}
END_TEST

/* The fused encode+amax must equal the reference's two separate passes. */
START_TEST(test_fused_amax_matches_ref)
{
    const kn_ops *v, *ref = kn_variant(0);
    static float x[MAX_LEN + 1];
    static uint16_t h[MAX_LEN + 1];
    static uint8_t want[MAX_LEN], got[MAX_LEN + PAD];
    if (!variant_or_skip(_i, &v))
        return;
    fill_f32(x, MAX_LEN + 1);
    fill_u16(h, MAX_LEN + 1);
    for (int fmt = 0; fmt < 2; fmt++)
        for (size_t f = 0; f < sizeof(kFlags) / sizeof(kFlags[0]); f++)
            for (size_t l = 0; l < N_LENS; l++) {
                size_t n = kLens[l], nan_ref = 7, nan_v = 9;
                float sc = kScales[l % (sizeof(kScales) / sizeof(kScales[0]))];
                memset(got, 0xA5, sizeof(got));
                ref->f32_to_fp8(want, x + 1, n, (kn_fp8_format)fmt, sc, kFlags[f]);
                float a = ref->amax_f32(x + 1, n, &nan_ref);
                float b = v->f32_to_fp8_amax(got, x + 1, n, (kn_fp8_format)fmt, sc, kFlags[f], &nan_v);
                check_guard(got, n, "f32_to_fp8_amax");
                ck_assert_msg(memcmp(got, want, n) == 0 && f32_bits(a) == f32_bits(b) &&
                                  nan_ref == nan_v,
                              "%s f32_to_fp8_amax fmt %d flags %u n %zu differs from ref", v->name,
                              fmt, kFlags[f], n);
                memset(got, 0xA5, sizeof(got));
                ref->bf16_to_fp8(want, h + 1, n, (kn_fp8_format)fmt, sc, kFlags[f]);
                a = ref->amax_bf16(h + 1, n, &nan_ref);
                b = v->bf16_to_fp8_amax(got, h + 1, n, (kn_fp8_format)fmt, sc, kFlags[f], NULL);
                check_guard(got, n, "bf16_to_fp8_amax");
                ck_assert_msg(memcmp(got, want, n) == 0 && f32_bits(a) == f32_bits(b),
                              "%s bf16_to_fp8_amax fmt %d flags %u n %zu differs from ref",
                              v->name, fmt, kFlags[f], n);
            }
    /* By hand: amax of the unscaled input, NaN counted, codes as usual. */
    static const float y[4] = {1.0f, -600.0f, NAN, 2.0f};
    size_t nn = 0;
    ck_assert(v->f32_to_fp8_amax(got, y, 4, KN_FP8_E4M3, 1.0f, KN_FP8_SATURATE, &nn) == 600.0f && nn == 1);
    ck_assert(got[0] == 0x38 && got[1] == 0xFE && got[2] == 0x7F && got[3] == 0x40);
}
END_TEST

/* --- committed vectors, through kn_init(<name>) and kn_active() --- */

static const char *test_data(void)
{
    const char *d = getenv("FP8D_TEST_DATA");
    return d != NULL ? d : "tests/data";
}

static void *load_or_fail(const char *name, size_t elem, size_t expect, size_t *size)
{
    char dir[4096], err[512];
    void *p;
    snprintf(dir, sizeof(dir), "%s/fp8", test_data());
    int rc = fv_load(dir, name, elem, expect, &p, size, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s (tests/data is committed: it must be there)", err);
    return p;
}

START_TEST(test_vectors_forced_variant)
{
    const kn_ops *v = kn_variant(_i), *act;
    size_t n_in, n_out, n;
    char what[64];

    if (!kn_variant_usable(v)) {
        ck_assert_int_eq(kn_init(v->name), -ENOTSUP);
        fprintf(stderr, "SKIP %s: not supported by this CPU\n", v->name);
        return;
    }
    ck_assert_int_eq(kn_init(v->name), 0);
    act = kn_active();
    ck_assert_ptr_eq(act, v);
    snprintf(what, sizeof(what), "[%s]", act->name);

    float *in = load_or_fail("f32_subset_inputs.f32", 4, 0, &n_in);
    uint8_t *out = load_or_fail("f32_subset_to_fp8.u8", 4, 0, &n_out);
    n = n_in / 4;
    ck_assert_msg(n_out == n * 4, "f32_subset_to_fp8.u8: %zu bytes for %zu inputs", n_out, n);
    ck_assert_uint_eq(fv_check_f32(act, in, out, n, what), 0);
    free(in);
    free(out);

    uint8_t *bf = load_or_fail("bf16_to_fp8.u8", 4, 65536 * 4, &n);
    ck_assert_uint_eq(fv_check_bf16_all(act, bf, what), 0);
    free(bf);

    float *t4 = load_or_fail("e4m3fn_decode.f32", 4, 1024, &n);
    float *t5 = load_or_fail("e5m2_decode.f32", 4, 1024, &n);
    ck_assert_uint_eq(fv_check_decode(act, t4, KN_FP8_E4M3, what), 0);
    ck_assert_uint_eq(fv_check_decode(act, t5, KN_FP8_E5M2, what), 0);
    /* The scalar helpers too (they are the reference). */
    for (int c = 0; c < 256; c++) {
        float a = kn_fp8_decode((uint8_t)c, KN_FP8_E4M3), b = kn_fp8_decode((uint8_t)c, KN_FP8_E5M2);
        ck_assert(isnan(t4[c]) ? isnan(a) : f32_bits(a) == f32_bits(t4[c]));
        ck_assert(isnan(t5[c]) ? isnan(b) : f32_bits(b) == f32_bits(t5[c]));
    }
    free(t4);
    free(t5);
}
END_TEST

/* f16 has no torch file; every one of the 65,536 halves must encode as
 * its f32 value does (widening is exact).  The widening here is the
 * IEEE formula written in the test, not the kernels' own. */
static float half_value(uint16_t h)
{
    unsigned e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double a = e == 0x1F ? (m ? NAN : INFINITY)
             : e == 0    ? ldexp(m, -24)
                         : ldexp(1024 + m, (int)e - 25);
    return (float)((h & 0x8000) ? -a : a);
}

START_TEST(test_f16_all_patterns_equal_f32_path)
{
    const kn_ops *v;
    static uint16_t h[65536];
    static float f[65536];
    static uint8_t a[65536], b[65536];
    if (!variant_or_skip(_i, &v))
        return;
    for (size_t i = 0; i < 65536; i++) {
        h[i] = (uint16_t)i;
        f[i] = half_value((uint16_t)i);
    }
    for (int col = 0; col < 4; col++) {
        v->f16_to_fp8(a, h, 65536, fv_columns[col].fmt, 1.0f, fv_columns[col].flags);
        kn_variant(0)->f32_to_fp8(b, f, 65536, fv_columns[col].fmt, 1.0f, fv_columns[col].flags);
        for (size_t i = 0; i < 65536; i++)
            ck_assert_msg(a[i] == b[i], "%s f16 0x%04zX %s: got 0x%02X, f32 path 0x%02X",
                          v->name, i, fv_columns[col].label, a[i], b[i]);
    }
}
END_TEST

/* --- hand-derived cases (fp8-semantics.md 1.2-1.4) on every variant --- */

static uint8_t enc1(const kn_ops *v, float x, kn_fp8_format fmt, float scale, unsigned flags)
{
    uint8_t out[3] = {0xA5, 0xA5, 0xA5};
    v->f32_to_fp8(out + 1, &x, 1, fmt, scale, flags);
    ck_assert(out[0] == 0xA5 && out[2] == 0xA5);
    return out[1];
}

#define E4 KN_FP8_E4M3
#define E5 KN_FP8_E5M2
#define SAT KN_FP8_SATURATE

START_TEST(test_hand_derived_encodes)
{
    const kn_ops *v;
    if (!variant_or_skip(_i, &v))
        return;
    /* 464 is the tie between 448 (mantissa 110, even) and 480: down to 448. */
    ck_assert_uint_eq(enc1(v, 464.0f, E4, 1, SAT), 0x7E);
    ck_assert_uint_eq(enc1(v, 464.0f, E4, 1, 0), 0x7E);
    ck_assert_uint_eq(enc1(v, 0x1.d00002p8f, E4, 1, 0), 0x7F);   /* 464 + 1 ulp: NaN */
    ck_assert_uint_eq(enc1(v, 0x1.d00002p8f, E4, 1, SAT), 0x7E);
    ck_assert_uint_eq(enc1(v, -500.0f, E4, 1, 0), 0xFF);
    ck_assert_uint_eq(enc1(v, -500.0f, E4, 1, SAT), 0xFE);
    ck_assert_uint_eq(enc1(v, INFINITY, E4, 1, SAT), 0x7E);
    ck_assert_uint_eq(enc1(v, -INFINITY, E4, 1, 0), 0xFF);
    ck_assert_uint_eq(enc1(v, NAN, E4, 1, SAT) & 0x7F, 0x7F);     /* NaN stays NaN */
    /* e5m2: 61440 ties 57344 (mantissa 11, odd) and 65536: up, so inf. */
    ck_assert_uint_eq(enc1(v, 61440.0f, E5, 1, 0), 0x7C);
    ck_assert_uint_eq(enc1(v, 61440.0f, E5, 1, SAT), 0x7B);
    ck_assert_uint_eq(enc1(v, 61439.0f, E5, 1, 0), 0x7B);
    ck_assert_uint_eq(enc1(v, -INFINITY, E5, 1, 0), 0xFC);
    ck_assert_uint_eq(enc1(v, -INFINITY, E5, 1, SAT), 0xFB);
    ck_assert_uint_gt(enc1(v, NAN, E5, 1, SAT) & 0x7F, 0x7C);
    ck_assert_uint_eq(enc1(v, 448.0f, E5, 1, 0), 0x5F);          /* 1.75 * 2^8: E=23, M=3 */
    ck_assert_uint_eq(enc1(v, 500.0f, E5, 1, 0), 0x60);          /* nearest is 512 */
    /* Zeros and half the smallest subnormal: ties to the even code 0, sign kept. */
    ck_assert_uint_eq(enc1(v, -0.0f, E4, 1, SAT), 0x80);
    ck_assert_uint_eq(enc1(v, -0.0f, E5, 1, 0), 0x80);
    ck_assert_uint_eq(enc1(v, 0x1p-10f, E4, 1, SAT), 0x00);
    ck_assert_uint_eq(enc1(v, -0x1p-10f, E4, 1, SAT), 0x80);
    ck_assert_uint_eq(enc1(v, -0x1p-17f, E5, 1, SAT), 0x80);
    ck_assert_uint_eq(enc1(v, 0x1.000002p-10f, E4, 1, SAT), 0x01); /* just above the tie */
    /* Subnormal ties: 1.5 and 2.5 units of 2^-9 both go to 2 units. */
    ck_assert_uint_eq(enc1(v, 0x3p-10f, E4, 1, 0), 0x02);
    ck_assert_uint_eq(enc1(v, 0x5p-10f, E4, 1, 0), 0x02);
    ck_assert_uint_eq(enc1(v, 0x1p-14f, E5, 1, 0), 0x04);        /* min normal */
    ck_assert_uint_eq(enc1(v, 0x7p-9f, E4, 1, 0), 0x07);         /* max subnormal */
    ck_assert_uint_eq(enc1(v, 0x1.fp-7f, E4, 1, 0), 0x08);       /* 7.75 units: carries to min normal */
    /* Scaled: the product/quotient is formed in f32 first. */
    ck_assert_uint_eq(enc1(v, 1.0f, E4, 448.0f, SAT), 0x7E);
    ck_assert_uint_eq(enc1(v, 2.0f, E4, 4.0f, KN_FP8_DIVIDE), 0x30); /* 0.5 = 2^-1: E=6 */
    ck_assert_uint_eq(enc1(v, 1.0f, E4, 3.0f, KN_FP8_DIVIDE), 0x2B); /* 1/3 -> 0.34375 = 1.375 * 2^-2 */
    ck_assert_uint_eq(enc1(v, 300.0f, E4, 2.0f, SAT), 0x7E);       /* 600 clamps */
    ck_assert_uint_eq(enc1(v, 300.0f, E4, 2.0f, SAT | KN_FP8_DIVIDE), 0x71); /* 150 = 1.171875 * 2^7 -> 1.125: E=14, M=1 */
    ck_assert_uint_eq(enc1(v, 1e30f, E4, 1e-30f, 0), 0x38);         /* 1e30 * 1e-30 rounds to 1 in f32 */
}
END_TEST

START_TEST(test_hand_derived_16bit_inputs)
{
    const kn_ops *v;
    uint8_t out[8];
    /* bf16: 1.0, -3.0, +inf, a NaN; f16: min subnormal 2^-24, -0, 448, inf */
    static const uint16_t bf[4] = {0x3F80, 0xC040, 0x7F80, 0x7FC1};
    static const uint16_t hf[4] = {0x0001, 0x8000, 0x5F00, 0x7C00};
    if (!variant_or_skip(_i, &v))
        return;
    v->bf16_to_fp8(out, bf, 4, E4, 1.0f, 0);
    ck_assert(out[0] == 0x38 && out[1] == 0xC4 && out[2] == 0x7F && out[3] == 0x7F);
    v->bf16_to_fp8(out, bf, 4, E5, 1.0f, SAT);
    ck_assert(out[0] == 0x3C && out[1] == 0xC2 && out[2] == 0x7B && (out[3] & 0x7F) > 0x7C);
    v->f16_to_fp8(out, hf, 4, E4, 1.0f, SAT);
    ck_assert(out[0] == 0x00 && out[1] == 0x80 && out[2] == 0x7E && out[3] == 0x7E);
    v->f16_to_fp8(out, hf, 4, E5, 1.0f, 0);
    ck_assert(out[0] == 0x00 && out[1] == 0x80 && out[2] == 0x5F && out[3] == 0x7C);
    v->f16_to_fp8(out, hf, 4, E5, 0x1p8f, 0);  /* 2^-24 * 2^8 = 2^-16: min subnormal */
    ck_assert(out[0] == 0x01 && out[1] == 0x80);
}
END_TEST

START_TEST(test_hand_derived_decode_and_amax)
{
    const kn_ops *v;
    static const uint8_t codes[6] = {0x7F, 0xFF, 0x7E, 0x01, 0x80, 0x38};
    float d[6];
    size_t nan = 99;
    if (!variant_or_skip(_i, &v))
        return;
    v->fp8_to_f32(d, codes, 6, E4, 1.0f);
    ck_assert(isnan(d[0]) && isnan(d[1]));
    ck_assert(d[2] == 448.0f && d[3] == 0x1p-9f && d[5] == 1.0f);
    ck_assert(d[4] == 0.0f && signbit(d[4]));
    v->fp8_to_f32(d, codes, 6, E5, 0.25f);
    ck_assert(isnan(d[0]) && isnan(d[1]) && isnan(d[2]));           /* 0x7E: S.11111.10 */
    ck_assert(d[3] == 0x1p-18f && d[5] == 0.125f); /* 2^-16 / 4; 0x38 = 0.01110.00 = 2^-1, / 4 */
    ck_assert(d[4] == 0.0f && signbit(d[4]));
    static const uint8_t e5[3] = {0x7C, 0xFC, 0x7B};
    v->fp8_to_f32(d, e5, 3, E5, 1.0f);
    ck_assert(d[0] == INFINITY && d[1] == -INFINITY && d[2] == 57344.0f);

    static const float x[5] = {1.0f, -3.0f, NAN, 2.0f, -NAN};
    ck_assert(v->amax_f32(x, 5, &nan) == 3.0f && nan == 2);
    static const float y[3] = {NAN, -INFINITY, 5.0f};
    ck_assert(v->amax_f32(y, 3, &nan) == INFINITY && nan == 1);
    ck_assert(v->amax_f32(x, 0, &nan) == 0.0f && nan == 0);
    static const uint16_t hb[4] = {0xC040, 0x7FC1, 0x3F80, 0xFF81}; /* -3, NaN, 1, -NaN */
    ck_assert(v->amax_bf16(hb, 4, &nan) == 3.0f && nan == 2);
}
END_TEST

/* Round trip: decode(encode(x)) is within half a unit in the last place,
 * i.e. relative 2^-4 (e4m3) / 2^-3 (e5m2) in the normal range, absolute
 * half the smallest subnormal below it (fp8-semantics.md 1.1). */
START_TEST(test_round_trip_error_bound)
{
    const kn_ops *v;
    enum { N = 20000 };
    static float x[N], back[N];
    static uint8_t q[N];
    if (!variant_or_skip(_i, &v))
        return;
    for (int fmt = 0; fmt < 2; fmt++) {
        float maxv = kn_fp8_max((kn_fp8_format)fmt);
        float min_normal = fmt == 0 ? 0x1p-6f : 0x1p-14f, min_sub = fmt == 0 ? 0x1p-9f : 0x1p-16f;
        float rel = fmt == 0 ? 0x1p-4f : 0x1p-3f;
        for (size_t i = 0; i < N; i++) {
            float u = (float)(rnd32() >> 8) * 0x1p-24f; /* [0, 1) */
            x[i] = (rnd32() & 1 ? -1 : 1) * min_sub * 0.25f * exp2f(u * log2f(maxv / min_sub * 4));
            if (fabsf(x[i]) > maxv)
                x[i] = copysignf(maxv, x[i]);
        }
        v->f32_to_fp8(q, x, N, (kn_fp8_format)fmt, 1.0f, SAT);
        v->fp8_to_f32(back, q, N, (kn_fp8_format)fmt, 1.0f);
        for (size_t i = 0; i < N; i++) {
            float err = fabsf(back[i] - x[i]);
            float bound = fabsf(x[i]) >= min_normal ? rel * fabsf(x[i]) : min_sub / 2;
            ck_assert_msg(err <= bound, "%s fmt %d: %a -> 0x%02X -> %a (error %a > %a)", v->name,
                          fmt, (double)x[i], q[i], (double)back[i], (double)err, (double)bound);
        }
    }
}
END_TEST

START_TEST(test_init_selection)
{
    ck_assert_int_eq(kn_init("ref"), 0);
    ck_assert_str_eq(kn_active()->name, "ref");
    ck_assert_int_eq(kn_init("nonsense"), -EINVAL);
    ck_assert_str_eq(kn_active()->name, "ref"); /* a failed init keeps the old table */
    setenv("FP8D_KERNELS", "ref", 1);
    ck_assert_int_eq(kn_init(NULL), 0);
    ck_assert_ptr_eq(kn_active(), kn_variant(0));
    setenv("FP8D_KERNELS", "bogus", 1);
    ck_assert_int_eq(kn_init(NULL), -EINVAL);
    unsetenv("FP8D_KERNELS");
    ck_assert_int_eq(kn_init(NULL), 0);
    /* Without a force: the last usable variant, i.e. the fastest. */
    int best = 0;
    for (int i = 0; i < kn_variant_count(); i++)
        if (kn_variant_usable(kn_variant(i)))
            best = i;
    ck_assert_ptr_eq(kn_active(), kn_variant(best));
    ck_assert(kn_fp8_max(E4) == 448.0f && kn_fp8_max(E5) == 57344.0f);
    ck_assert_uint_eq(kn_fp8_encode(464.0f, E4, false), 0x7E);
    ck_assert_uint_eq(kn_fp8_encode(61440.0f, E5, false), 0x7C);
    ck_assert_uint_eq(kn_fp8_encode(61440.0f, E5, true), 0x7B);
}
END_TEST

/* silu_mul of every kn_math variant against the value in double:
 * g / (1 + e^-g) * u within 2^-20 relative (libm's expf and a variant's
 * polynomial exp are within a few ulp, 2^-23 each; the division and the
 * product round once more), on random g across the range where the exp
 * matters, tail lengths, and the special inputs: NaN stays NaN, +inf
 * gives +inf * u, -inf gives NaN (-inf / inf) as in the reference, and
 * large negative g a signed zero or a tiny value. */
START_TEST(test_silu_mul_matches_double)
{
    const kn_math_ops *v = kn_math_variant(_i);
    static float g[MAX_LEN], u[MAX_LEN], g0[MAX_LEN];
    if (!kn_math_usable(v)) {
        fprintf(stderr, "SKIP math %s silu_mul: not supported by this CPU\n", v->name);
        return;
    }
    for (size_t li = 0; li < N_LENS; li++) {
        size_t n = kLens[li];
        for (size_t i = 0; i < n; i++) {
            g0[i] = (float)((rnd32() / 4294967296.0 - 0.5) * 60.0);   /* [-30, 30) */
            u[i] = (float)((rnd32() / 4294967296.0 - 0.5) * 4.0);
        }
        static const float special[] = {NAN, INFINITY, -INFINITY, -100.0f, -88.5f, 0.0f, -0.0f,
                                        1e-30f, 89.0f, 200.0f};
        for (size_t i = 0; i < n && i < sizeof(special) / sizeof(special[0]); i++)
            g0[(i * 7) % n] = special[i];
        memcpy(g, g0, n * sizeof(float));
        v->silu_mul(g, u, n);
        for (size_t i = 0; i < n; i++) {
            double x = g0[i], want = x / (1.0 + exp(-x)) * u[i];
            if (isnan(want) || isinf(want)) {
                ck_assert_msg(isnan(want) ? isnan(g[i]) : g[i] == (float)want,
                              "%s silu_mul(%g) * %g = %g, want %g", v->name, x, (double)u[i],
                              (double)g[i], want);
                continue;
            }
            /* below g = -88.7 e^-g overflows f32 and the value is a signed
             * zero where double still has about 1e-38 * u: the 2^-115 */
            ck_assert_msg(fabs(g[i] - want) <= 0x1p-20 * fabs(want) + 0x1p-115,
                          "%s n=%zu silu_mul(%.9g) * %.9g = %.9g, want %.9g", v->name, n, x,
                          (double)u[i], (double)g[i], want);
        }
    }
}
END_TEST

/* rmsnorm of every kn_math variant against the value in double, y =
 * w * x / sqrt(mean(x^2) + eps): the sum of squares is kept in double by
 * every variant, so only the f32 rounding of r and the two products
 * remain (3 roundings: 2^-22 relative); in place (y = x) as the engine's
 * Qwen3 q/k norms run it.  Lengths up to 4099 with every tail, x spread
 * over 2^-10..2^10 so that the squares span 40 binades, eps 0 and 1e-6. */
START_TEST(test_rmsnorm_matches_double)
{
    const kn_math_ops *v = kn_math_variant(_i);
    static float x[MAX_LEN], w[MAX_LEN], y[MAX_LEN];
    if (!kn_math_usable(v)) {
        fprintf(stderr, "SKIP math %s rmsnorm: not supported by this CPU\n", v->name);
        return;
    }
    for (size_t li = 0; li < N_LENS; li++) {
        size_t n = kLens[li];
        if (n == 0)
            continue;
        for (int e = 0; e < 2; e++) {
            float eps = e ? 1e-6f : 0.0f;
            double ss = 0.0;
            for (size_t i = 0; i < n; i++) {
                double mag = ldexp(1.0 + rnd32() / 4294967296.0, (int)(rnd32() % 21) - 10);
                x[i] = (float)(rnd32() & 1 ? -mag : mag);
                w[i] = (float)(rnd32() / 4294967296.0 * 2.0 - 1.0);
                ss += (double)x[i] * x[i];
            }
            double r = 1.0 / sqrt(ss / (double)n + eps);
            memcpy(y, x, n * sizeof(float));
            v->rmsnorm(y, y, w, n, eps);
            for (size_t i = 0; i < n; i++) {
                double want = (double)w[i] * x[i] * r;
                ck_assert_msg(fabs(y[i] - want) <= 0x1p-22 * fabs(want),
                              "%s n=%zu eps=%g: y[%zu] = %.9g, want %.9g", v->name, n,
                              (double)eps, i, (double)y[i], want);
            }
        }
    }
}
END_TEST

/* attention of every kn_math variant against softmax attention computed
 * here in double.  Shapes: head sizes around the 16-lane vector (1, 17,
 * 64, 80), GQA groups of 1 to 8 heads, 1 to 8 rows; row i attends to
 * keys [lo_i, hi_i): causal (hi grows with the row, key counts not a
 * multiple of 16) with or without a sliding window.  Tolerance: the
 * output is a convex combination of the values, so an error e in the
 * scores moves it by about e * max|v|; f32 dot products of hs terms give
 * e <= (hs + 16) u S (S = scale * sum |q k|, u = 2^-24; the 16 covers
 * exp and the rescaling of an online softmax), doubled for the order of
 * the sums.  A wrong key, mask or scale moves it by ~0.1. */
START_TEST(test_attention_matches_double)
{
    static const size_t kHs[] = {1, 17, 64, 80}, kNh[] = {1, 4, 8}, kNq[] = {1, 3, 8};
    const kn_math_ops *v = kn_math_variant(_i);
    if (!kn_math_usable(v)) {
        fprintf(stderr, "SKIP math %s attention: not supported by this CPU\n", v->name);
        return;
    }
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 3; b++)
            for (size_t c = 0; c < 3; c++)
                for (int win = 0; win < 2; win++) {
                    size_t hs = kHs[a], nh = kNh[b], nq = kNq[c], ldkv = hs * 2 + 3;
                    size_t ldq = nh * hs + 5, ldo = nh * hs + 7, n_keys = 37 + 11 * a + nq;
                    size_t lo[8], hi[8];
                    float *q = malloc(nq * ldq * sizeof(float));
                    float *o = malloc(nq * ldo * sizeof(float));
                    float *k = malloc(n_keys * ldkv * sizeof(float));
                    float *vv = malloc(n_keys * ldkv * sizeof(float));
                    float scale = 1.0f / sqrtf((float)hs);
                    ck_assert(q && o && k && vv);
                    for (size_t i = 0; i < nq * ldq; i++)
                        q[i] = (float)(rnd32() / 2147483648.0 - 1.0) * 2.0f;
                    for (size_t i = 0; i < n_keys * ldkv; i++) {
                        k[i] = (float)(rnd32() / 2147483648.0 - 1.0) * 2.0f;
                        vv[i] = (float)(rnd32() / 2147483648.0 - 1.0);
                    }
                    for (size_t i = 0; i < nq; i++) {
                        hi[i] = n_keys - nq + i + 1;   /* causal: row i sees one more key */
                        lo[i] = win ? hi[i] - (hi[i] > 19 ? 19 : hi[i]) : 0;
                    }
                    for (size_t i = 0; i < nq * ldo; i++)
                        o[i] = -7.0f;   /* sentinel: the gaps between rows stay */
                    v->attention(o, ldo, q, ldq, nq, nh, k, vv, ldkv, hs, lo, hi, scale);
                    for (size_t i = 0; i < nq; i++)
                        for (size_t h = 0; h < nh; h++) {
                            const float *qv = q + i * ldq + h * hs;
                            double mx = -INFINITY, sum = 0.0, smax = 0.0, want[80] = {0};
                            for (size_t t = lo[i]; t < hi[i]; t++) {
                                double sc = 0.0, sa = 0.0;
                                for (size_t d = 0; d < hs; d++) {
                                    sc += (double)qv[d] * k[t * ldkv + d];
                                    sa += fabs((double)qv[d] * k[t * ldkv + d]);
                                }
                                mx = fmax(mx, sc * scale);
                                smax = fmax(smax, sa * scale);
                            }
                            for (size_t t = lo[i]; t < hi[i]; t++) {
                                double sc = 0.0;
                                for (size_t d = 0; d < hs; d++)
                                    sc += (double)qv[d] * k[t * ldkv + d];
                                double e = exp(sc * scale - mx);
                                sum += e;
                                for (size_t d = 0; d < hs; d++)
                                    want[d] += e * vv[t * ldkv + d];
                            }
                            double tol = 2.0 * (double)(hs + 16) * 0x1p-24 * (1.0 + smax);
                            for (size_t d = 0; d < hs; d++) {
                                double got = o[i * ldo + h * hs + d], w = want[d] / sum;
                                ck_assert_msg(fabs(got - w) <= tol,
                                              "%s attention hs=%zu nh=%zu nq=%zu win=%d: "
                                              "out[%zu][%zu][%zu] = %.9g, double %.9g, tol %.3g",
                                              v->name, hs, nh, nq, win, i, h, d, got, w, tol);
                            }
                        }
                    for (size_t i = 0; i < nq; i++)
                        for (size_t e = nh * hs; e < ldo; e++)
                            ck_assert_float_eq(o[i * ldo + e], -7.0f);
                    free(q), free(o), free(k), free(vv);
                }
}
END_TEST

static Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    int nv = kn_variant_count();
    TCase *tc;

    tc = tcase_create("fp8_vs_ref");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_f32_encode_matches_ref, 1, nv);
    tcase_add_loop_test(tc, test_bf16_encode_matches_ref, 1, nv);
    tcase_add_loop_test(tc, test_f16_encode_matches_ref, 1, nv);
    tcase_add_loop_test(tc, test_decode_matches_ref, 1, nv);
    tcase_add_loop_test(tc, test_amax_matches_ref, 1, nv);
    tcase_add_loop_test(tc, test_fused_amax_matches_ref, 0, nv);
    suite_add_tcase(s, tc);

    tc = tcase_create("fp8_vectors");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_vectors_forced_variant, 0, nv);
    tcase_add_loop_test(tc, test_f16_all_patterns_equal_f32_path, 0, nv);
    suite_add_tcase(s, tc);

    tc = tcase_create("fp8_hand");
    tcase_add_loop_test(tc, test_hand_derived_encodes, 0, nv);
    tcase_add_loop_test(tc, test_hand_derived_16bit_inputs, 0, nv);
    tcase_add_loop_test(tc, test_hand_derived_decode_and_amax, 0, nv);
    tcase_add_loop_test(tc, test_round_trip_error_bound, 0, nv);
    tcase_add_test(tc, test_init_selection);
    suite_add_tcase(s, tc);

    tc = tcase_create("math");
    tcase_add_loop_test(tc, test_silu_mul_matches_double, 0, kn_math_variant_count());
    tcase_add_loop_test(tc, test_rmsnorm_matches_double, 0, kn_math_variant_count());
    tcase_add_loop_test(tc, test_attention_matches_double, 0, kn_math_variant_count());
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    kn_log_set_level(KN_LOG_WARN); /* kn_init's choice is printed below instead */
    fprintf(stderr, "kernel variants:");
    for (int i = 0; i < kn_variant_count(); i++)
        fprintf(stderr, " %s (%s)", kn_variant(i)->name,
                kn_variant_usable(kn_variant(i)) ? "tested" : "SKIP: CPU lacks it");
    fprintf(stderr, "\n");
    sr = srunner_create(kernels_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
