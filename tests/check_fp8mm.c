/* check_fp8mm.c: the FP8 weight products of kernels/kn_fp8mm.h.
 * Every compiled-in variant (the reference included) against a plain
 * double-precision product computed here from weights decoded by this
 * file's own bit-layout decoder, on random data of odd sizes, both
 * formats, the three scale kinds, with and without bias, over panel
 * ranges that split the rows; the pack/unpack round trip; the activation
 * quantiser; a W8A8 case worked by hand. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* (N, K) pairs: every size of {1, 3, 17, 63, 64, 65, 127, 128, 129, 300}
 * appears as N and as K, around the 16-row panel, the 64-byte chunk and
 * the 128 block; K = 2200 passes the prefill kernels' k blocking (2048 k
 * per pass in the AVX-512 variant: partial sums through y). */
static const size_t kShapes[][2] = {
    {1, 1},     {3, 17},    {17, 3},  {63, 64},  {64, 65},   {65, 63}, {127, 128}, {128, 127},
    {129, 300}, {300, 129}, {1, 300}, {300, 1},  {128, 129}, {17, 64}, {33, 2200},
};
#define N_SHAPES (sizeof(kShapes) / sizeof(kShapes[0]))
static const size_t kM[] = {1, 2, 5, 8, 33, 3, 4, 6, 7};
#define N_M (sizeof(kM) / sizeof(kM[0]))
#define U32 0x1p-24   /* f32 unit roundoff */

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd32(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (uint32_t)((g_rng * 0x2545F4914F6CDD1Dull) >> 32);
}

static double unif(double lo, double hi)
{
    return lo + (hi - lo) * (rnd32() / 4294967296.0);
}

/* The test's own decoder, from the bit layouts (fp8-semantics.md 1.1). */
static double dec(uint8_t c, kn_fp8_format fmt)
{
    int s = c >> 7;
    double v;
    if (fmt == KN_FP8_E4M3) {
        int e = (c >> 3) & 15, m = c & 7;
        v = e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
    } else {
        int e = (c >> 2) & 31, m = c & 3;
        v = e == 0 ? ldexp(m, -16) : ldexp(4 + m, e - 17);
    }
    return s ? -v : v;
}

/* A random finite code: no NaN (E4M3 S.1111.111) nor inf/NaN (E5M2
 * exponent 31). */
static uint8_t rnd_code(kn_fp8_format fmt)
{
    for (;;) {
        uint8_t c = (uint8_t)rnd32();
        if (fmt == KN_FP8_E4M3 ? (c & 0x7F) != 0x7F : ((c >> 2) & 31) != 31)
            return c;
    }
}

/* bf16 rounding by arithmetic (not bit tricks): 8 significant bits,
 * nearest even (rint under the default rounding mode). */
static double round_bf16(float x)
{
    if (x == 0.0f || !isfinite(x))
        return x;
    int e;
    double f = frexp(x, &e);   /* |f| in [0.5, 1) */
    return ldexp(rint(ldexp(f, 8)), e - 8);
}

/* One test case: codes, scales, activations, bias and the outputs. */
typedef struct tcase_data {
    size_t N, K, M, ldy, ldx;
    kn_fp8_format fmt, xfmt;   /* of the weights, of xq */
    kn_fp8_scale_kind sk;
    uint8_t *w, *xq;
    float *scales, *x, *xs, *bias, *y;
    kn_fp8w *pw;
} tcase_data;

static double scale_of(const tcase_data *t, size_t n, size_t k)
{
    size_t kb = (t->K + 127) / 128;
    switch (t->sk) {
    case KN_FP8_SCALE_CHANNEL: return t->scales[n];
    case KN_FP8_SCALE_BLOCK:   return t->scales[(n / 128) * kb + k / 128];
    default:                   return t->scales[0];
    }
}

static void td_make(tcase_data *t, size_t N, size_t K, size_t M, kn_fp8_format fmt,
                    kn_fp8_scale_kind sk, bool with_bias, kn_fp8_format xfmt)
{
    char err[200] = "";
    memset(t, 0, sizeof(*t));
    t->N = N, t->K = K, t->M = M, t->fmt = fmt, t->sk = sk, t->xfmt = xfmt;
    t->ldx = K + 5;      /* strides wider than the rows: kernels must use them */
    t->ldy = N + 3;
    size_t ns = kn_fp8_scale_count(sk, N, K);
    t->w = malloc(N * K);
    t->scales = malloc(ns * sizeof(float));
    t->x = malloc(M * t->ldx * sizeof(float));
    t->xq = malloc(M * t->ldx);
    t->xs = malloc(M * sizeof(float));
    t->y = malloc(M * t->ldy * sizeof(float));
    t->bias = with_bias ? malloc(N * sizeof(float)) : NULL;
    ck_assert(t->w && t->scales && t->x && t->xq && t->xs && t->y);
    for (size_t i = 0; i < N * K; i++)
        t->w[i] = rnd_code(fmt);
    /* E5M2 codes reach 57344: keep products in a sane range either way */
    for (size_t i = 0; i < ns; i++)
        t->scales[i] = (float)(unif(0.5, 2.0) * (fmt == KN_FP8_E5M2 ? 0x1p-12 : 0x1p-6));
    for (size_t i = 0; i < M * t->ldx; i++) {
        t->x[i] = (float)unif(-2.0, 2.0);
        t->xq[i] = rnd_code(xfmt);
    }
    for (size_t m = 0; m < M; m++)
        t->xs[m] = (float)(unif(0.01, 0.1) * (xfmt == KN_FP8_E5M2 ? 0x1p-7 : 1.0));
    for (size_t n = 0; with_bias && n < N; n++)
        t->bias[n] = (float)unif(-1.0, 1.0);
    ck_assert_int_eq(kn_fp8w_new(&t->pw, t->w, N, K, fmt, sk, t->scales, err, sizeof(err)), 0);
}

static void td_free(tcase_data *t)
{
    kn_fp8w_free(t->pw);
    free(t->w), free(t->scales), free(t->x), free(t->xq), free(t->xs), free(t->y), free(t->bias);
}

enum family { F_LINEAR, F_BF16, F_W8A8, F_PRE_BF16, F_PRE_W8A8 };

/* Runs the family over three panel ranges (kn_fp8w_split with nth = 3,
 * or a split at an odd panel), y prefilled with a sentinel.  x_ready: the
 * prefill families' second and third calls reuse the first call's
 * converted activations (the same scratch). */
static void run(const kn_fp8mm_ops *v, enum family f, tcase_data *t, bool odd_split,
                bool x_ready)
{
    bool converted = false;
    size_t np = kn_fp8w_panels(t->pw), cuts[4];
    void *scratch = NULL;
    if (f == F_PRE_BF16 || f == F_PRE_W8A8) {
        scratch = kn_alloc(kn_fp8mm_scratch_size(t->pw));
        ck_assert_ptr_nonnull(scratch);
    }
    for (size_t i = 0; i < t->M * t->ldy; i++)
        t->y[i] = -12345.0f;
    if (odd_split) {
        cuts[0] = 0, cuts[1] = np > 1 ? 1 : np, cuts[2] = np > 4 ? 4 : np, cuts[3] = np;
    } else {
        size_t p0, p1;
        for (int i = 0; i < 3; i++) {
            kn_fp8w_split(t->pw, i, 3, &p0, &p1);
            cuts[i] = p0;
            ck_assert(i == 0 || p0 == cuts[i]);
            cuts[i + 1] = p1;
        }
        ck_assert_uint_eq(cuts[3], np);
    }
    for (int i = 0; i < 3; i++) {
        size_t p0 = cuts[i], p1 = cuts[i + 1];
        if (p0 == p1)
            continue;
        switch (f) {
        case F_LINEAR: v->linear(t->y, t->ldy, t->x, t->ldx, t->M, t->pw, p0, p1, t->bias); break;
        case F_BF16:
            v->linear_bf16(t->y, t->ldy, t->x, t->ldx, t->M, t->pw, p0, p1, t->bias);
            break;
        case F_W8A8:
            v->linear_w8a8(t->y, t->ldy, t->xq, t->ldx, t->xfmt, t->xs, t->M, t->pw, p0, p1,
                           t->bias);
            break;
        case F_PRE_BF16:
            v->prefill_bf16(t->y, t->ldy, t->x, t->ldx, t->M, t->pw, p0, p1, t->bias, scratch,
                            x_ready && converted);
            break;
        case F_PRE_W8A8:
            v->prefill_w8a8(t->y, t->ldy, t->xq, t->ldx, t->xfmt, t->xs, t->M, t->pw, p0,
                            p1, t->bias, scratch, x_ready && converted);
            break;
        }
        converted = true;
    }
    kn_free(scratch);
}

/* Compares y with the double product.  Tolerance (f32 accumulation of K
 * terms, plus the roundings of the scale and bias):
 *   |y - ref| <= 2 (K + 4) u S + 4 u |ref|,  S = sum |x w s|,  u = 2^-24;
 * the factor 2 covers the variants' different summation orders.  For the
 * bf16 families the reference uses bf16-rounded x (rounded here by
 * arithmetic), so the same bound applies; 'loose' adds the bf16 rounding
 * of x against the unrounded product: 2^-8 S (8 significant bits). */
static void verify(enum family f, const tcase_data *t, const char *what)
{
    bool w8 = f == F_W8A8 || f == F_PRE_W8A8, rb = f == F_BF16 || f == F_PRE_BF16;
    for (size_t m = 0; m < t->M; m++) {
        for (size_t n = 0; n < t->N; n++) {
            double ref = 0.0, ref_x = 0.0, S = 0.0;
            for (size_t k = 0; k < t->K; k++) {
                double wv = dec(t->w[n * t->K + k], t->fmt) * scale_of(t, n, k);
                double xv = w8 ? dec(t->xq[m * t->ldx + k], t->xfmt) * t->xs[m]
                               : rb ? round_bf16(t->x[m * t->ldx + k]) : t->x[m * t->ldx + k];
                ref += xv * wv;
                ref_x += (double)t->x[m * t->ldx + k] * wv;
                S += fabs(xv * wv);
            }
            double b = t->bias ? t->bias[n] : 0.0;
            double got = t->y[m * t->ldy + n];
            double tol = 2.0 * (double)(t->K + 4) * U32 * S +
                         4.0 * U32 * (fabs(ref) + fabs(b)) + 1e-30;
            if (!(fabs(got - (ref + b)) <= tol))
                ck_abort_msg("%s: N=%zu K=%zu M=%zu fmt=%d xfmt=%d sk=%d bias=%d y[%zu][%zu]=%.9g, "
                             "double %.9g, |diff| %.3g > tol %.3g",
                             what, t->N, t->K, t->M, (int)t->fmt, (int)t->xfmt, (int)t->sk,
                             t->bias != NULL, m, n, got, ref + b, fabs(got - (ref + b)), tol);
            if (rb && !(fabs(got - (ref_x + b)) <= tol + 0x1p-8 * S))
                ck_abort_msg("%s: y[%zu][%zu] off the unrounded product by more than the bf16 "
                             "bound", what, m, n);
        }
        for (size_t n = t->N; n < t->ldy; n++)   /* rows past N never written */
            ck_assert_float_eq(t->y[m * t->ldy + n], -12345.0f);
    }
}

static void family_test(int vi, enum family f, const char *fname, bool big_m)
{
    const kn_fp8mm_ops *v = kn_fp8mm_variant(vi);
    char what[64];
    if (!kn_fp8mm_usable(v)) {
        fprintf(stderr, "SKIP fp8mm %s %s: not supported by this CPU\n", v->name, fname);
        return;
    }
    snprintf(what, sizeof(what), "%s %s", v->name, fname);
    size_t idx = 0;
    for (size_t s = 0; s < N_SHAPES; s++)
        for (int fmt = 0; fmt < 2; fmt++)
            for (int sk = 0; sk < 3; sk++, idx++) {
                tcase_data t;
                size_t M = kM[idx % N_M];
                /* prefill: also a block taller than KN_FP8MM_MBLOCK rows,
                 * and the 6-9 rows of decode batches the engine gives it
                 * (engine/fp8_linear.c, prefill_pays) */
                if (big_m)
                    M = s == 9 && fmt == 0 && sk == 2 ? 150
                        : idx % 5 == 4               ? 6 + idx % 4
                                                     : kM[idx % 3] * 13 + 1;
                /* activations of W8A8 in E5M2 for one case in four
                 * (HYBRID-style mixed formats) */
                td_make(&t, kShapes[s][0], kShapes[s][1], M, (kn_fp8_format)fmt,
                        (kn_fp8_scale_kind)sk, idx % 2 == 0,
                        idx % 4 == 3 ? KN_FP8_E5M2 : KN_FP8_E4M3);
                /* x_ready also where M exceeds a pass (it must be ignored) */
                run(v, f, &t, idx % 3 == 1, idx % 2 == 1 || M > kn_fp8mm_mblock());
                verify(f, &t, what);
                td_free(&t);
            }
}

START_TEST(test_linear_matches_double) { family_test(_i, F_LINEAR, "linear", false); }
END_TEST
START_TEST(test_linear_bf16_matches_double) { family_test(_i, F_BF16, "linear_bf16", false); }
END_TEST
START_TEST(test_w8a8_matches_double) { family_test(_i, F_W8A8, "linear_w8a8", false); }
END_TEST
START_TEST(test_prefill_bf16_matches_double) { family_test(_i, F_PRE_BF16, "prefill_bf16", true); }
END_TEST
START_TEST(test_prefill_w8a8_matches_double) { family_test(_i, F_PRE_W8A8, "prefill_w8a8", true); }
END_TEST

/* Codes and scales come back as given, for every element. */
START_TEST(test_pack_unpack_round_trip)
{
    for (size_t s = 0; s < N_SHAPES; s++)
        for (int sk = 0; sk < 3; sk++) {
            tcase_data t;
            td_make(&t, kShapes[s][0], kShapes[s][1], 1, KN_FP8_E5M2, (kn_fp8_scale_kind)sk, false,
                    KN_FP8_E4M3);
            uint8_t *back = malloc(t.N * t.K);
            kn_fp8w_unpack(t.pw, back);
            ck_assert_mem_eq(back, t.w, t.N * t.K);
            for (size_t n = 0; n < t.N; n++)
                for (size_t k = 0; k < t.K; k += 7) {
                    ck_assert_uint_eq(kn_fp8w_code(t.pw, n, k), t.w[n * t.K + k]);
                    ck_assert_float_eq(kn_fp8w_scale_at(t.pw, n, k), (float)scale_of(&t, n, k));
                }
            ck_assert_uint_eq(kn_fp8w_rows(t.pw), t.N);
            ck_assert_uint_eq(kn_fp8w_cols(t.pw), t.K);
            ck_assert_uint_eq(kn_fp8w_panels(t.pw), (t.N + 15) / 16);
            ck_assert_int_eq(kn_fp8w_scale_kind(t.pw), sk);
            ck_assert(kn_fp8w_size(t.pw) >= t.N * t.K);
            free(back);
            td_free(&t);
        }
}
END_TEST

START_TEST(test_new_rejects_bad_input)
{
    uint8_t w[4] = {0};
    float bad[2] = {1.0f, NAN};
    char err[200] = "";
    kn_fp8w *p = (kn_fp8w *)1;
    ck_assert_int_eq(kn_fp8w_new(&p, w, 2, 2, KN_FP8_E4M3, KN_FP8_SCALE_CHANNEL, bad, err,
                                 sizeof(err)), -EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(err, "scale 1 of 2") != NULL, "err: %s", err);
    ck_assert_int_eq(kn_fp8w_new(&p, w, 0, 2, KN_FP8_E4M3, KN_FP8_SCALE_TENSOR, bad, err,
                                 sizeof(err)), -EINVAL);
    ck_assert_int_eq(kn_fp8w_new(&p, w, 2, 2, (kn_fp8_format)7, KN_FP8_SCALE_TENSOR, bad, err,
                                 sizeof(err)), -EINVAL);
    kn_fp8w_free(NULL);
}
END_TEST

/* By hand: W (E4M3) = [[1, 2, -0.5], [0.25, 3, 448]] = codes
 * [[0x38, 0x40, 0xB0], [0x28, 0x44, 0x7E]], channel scales [0.5, 2];
 * x = [2, -1, 4] with static input scale 2 -> x/2 = [1, -0.5, 2] exactly
 * = codes [0x38, 0xB0, 0x40].  Row 0: 1 - 1 - 1 = -1, * 2 * 0.5 = -1,
 * + 0.25 = -0.75.  Row 1: 0.25 - 1.5 + 896 = 894.75, * 2 * 2 = 3579,
 * - 1 = 3578.  Every step is exact in f32. */
START_TEST(test_w8a8_by_hand)
{
    const uint8_t w[6] = {0x38, 0x40, 0xB0, 0x28, 0x44, 0x7E};
    const float sc[2] = {0.5f, 2.0f}, x[3] = {2.0f, -1.0f, 4.0f}, bias[2] = {0.25f, -1.0f};
    const float in_scale = 2.0f;
    uint8_t xq[3];
    float xs, y[2];
    kn_fp8w *p;
    char err[100];

    ck_assert_int_eq(kn_fp8w_new(&p, w, 2, 3, KN_FP8_E4M3, KN_FP8_SCALE_CHANNEL, sc, err,
                                 sizeof(err)), 0);
    ck_assert_int_eq(kn_fp8_act_quantize(xq, 3, &xs, x, 3, 1, 3, KN_FP8_E4M3, &in_scale), 0);
    ck_assert_uint_eq(xq[0], 0x38);
    ck_assert_uint_eq(xq[1], 0xB0);
    ck_assert_uint_eq(xq[2], 0x40);
    ck_assert_float_eq(xs, 2.0f);
    void *scratch = kn_alloc(kn_fp8mm_scratch_size(p));
    for (int i = 0; i < kn_fp8mm_variant_count(); i++) {
        const kn_fp8mm_ops *v = kn_fp8mm_variant(i);
        if (!kn_fp8mm_usable(v)) {
            fprintf(stderr, "SKIP fp8mm %s w8a8 by hand: not supported by this CPU\n", v->name);
            continue;
        }
        y[0] = y[1] = 0.0f;
        v->linear_w8a8(y, 2, xq, 3, KN_FP8_E4M3, &xs, 1, p, 0, 1, bias);
        ck_assert_float_eq(y[0], -0.75f);
        ck_assert_float_eq(y[1], 3578.0f);
        y[0] = y[1] = 0.0f;
        v->prefill_w8a8(y, 2, xq, 3, KN_FP8_E4M3, &xs, 1, p, 0, 1, bias, scratch, false);
        ck_assert_float_eq(y[0], -0.75f);
        ck_assert_float_eq(y[1], 3578.0f);
    }
    kn_free(scratch);
    kn_fp8w_free(p);
}
END_TEST

/* Dynamic rows: xs = amax / 448, the amax element lands on +-448, every
 * value within half an E4M3 step (relative 2^-4, or 2^-10 * xs absolute
 * among the subnormals) of x / xs; an all-zero row gets 1.0. */
START_TEST(test_act_quantize_dynamic)
{
    enum { M = 3, K = 77 };
    float x[M * K], xs[M];
    uint8_t xq[M * K];
    for (size_t i = 0; i < M * K; i++)
        x[i] = i / K == 2 ? 0.0f : (float)unif(-3.0, 3.0);
    x[10] = 5.0f;
    ck_assert_int_eq(kn_fp8_act_quantize(xq, K, xs, x, K, M, K, KN_FP8_E4M3, NULL), 0);
    ck_assert_float_eq(xs[0], 5.0f / 448.0f);
    ck_assert_uint_eq(xq[10], 0x7E);
    ck_assert_float_eq(xs[2], 1.0f);
    for (size_t m = 0; m < 2; m++)
        for (size_t k = 0; k < K; k++) {
            double want = x[m * K + k] / xs[m], got = dec(xq[m * K + k], KN_FP8_E4M3);
            ck_assert(fabs(got - want) <= fmax(fabs(want) * 0x1p-4, 0x1p-10));
        }
    float bad = 0.0f;
    ck_assert_int_eq(kn_fp8_act_quantize(xq, K, xs, x, K, M, K, KN_FP8_E4M3, &bad), -EINVAL);
}
END_TEST

static Suite *fp8mm_suite(void)
{
    Suite *s = suite_create("fp8mm");
    int nv = kn_fp8mm_variant_count();
    TCase *tc = tcase_create("kn_fp8w");
    tcase_add_test(tc, test_pack_unpack_round_trip);
    tcase_add_test(tc, test_new_rejects_bad_input);
    tcase_add_test(tc, test_act_quantize_dynamic);
    tcase_add_test(tc, test_w8a8_by_hand);
    suite_add_tcase(s, tc);
    tc = tcase_create("products");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_linear_matches_double, 0, nv);
    tcase_add_loop_test(tc, test_linear_bf16_matches_double, 0, nv);
    tcase_add_loop_test(tc, test_w8a8_matches_double, 0, nv);
    tcase_add_loop_test(tc, test_prefill_bf16_matches_double, 0, nv);
    tcase_add_loop_test(tc, test_prefill_w8a8_matches_double, 0, nv);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    kn_log_set_level(KN_LOG_WARN);
    if (kn_init(NULL) < 0)
        return EXIT_FAILURE;
    fprintf(stderr, "fp8mm variants:");
    for (int i = 0; i < kn_fp8mm_variant_count(); i++)
        fprintf(stderr, " %s (%s)", kn_fp8mm_variant(i)->name,
                kn_fp8mm_usable(kn_fp8mm_variant(i)) ? "tested" : "SKIP: CPU lacks it");
    fprintf(stderr, "\n");
    sr = srunner_create(fp8mm_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
