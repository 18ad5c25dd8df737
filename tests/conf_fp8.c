/* conf_fp8.c: FP8 codec conformance ('make conformance').
 * Every usable variant against the full torch vectors in
 * $FP8D_SHARED_TESTDATA/fp8 (1,048,576 f32 inputs and all 65,536 bf16
 * patterns, four columns each, and both decode tables; README test rule:
 * exact bytes for non-NaN inputs, any NaN code for NaN inputs), then each
 * vector variant against the reference over the f32 bit space: by default
 * 2^24 patterns (every top-24-bit prefix, low 8 bits varied), with
 * FP8D_CONF_EXHAUSTIVE=1 all 2^32 (minutes per variant).
 * Prints "SKIP: ... not found" and passes when the shared data is absent. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tests/fp8_vectors.h"

static char g_dir[4096];
static int g_have_data;

static void *load_or_fail(const char *name, size_t expect, size_t *size)
{
    char err[512];
    void *p;
    int rc = fv_load(g_dir, name, 4, expect, &p, size, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    return p;
}

START_TEST(test_full_vectors)
{
    const kn_ops *v = kn_variant(_i);
    size_t n, m;
    char what[64];

    if (!g_have_data) {
        fprintf(stderr, "SKIP: %s not found\n", g_dir);
        return;
    }
    if (!kn_variant_usable(v)) {
        fprintf(stderr, "SKIP %s: not supported by this CPU\n", v->name);
        return;
    }
    /* Through the forced selection, as fp8d does with FP8D_KERNELS. */
    ck_assert_int_eq(kn_init(v->name), 0);
    ck_assert_ptr_eq(kn_active(), v);
    snprintf(what, sizeof(what), "[%s]", v->name);

    float *in = load_or_fail("f32_inputs.f32", 1048576 * 4, &n);
    uint8_t *out = load_or_fail("f32_to_fp8.u8", 1048576 * 4, &m);
    ck_assert_uint_eq(fv_check_f32(v, in, out, 1048576, what), 0);
    free(in);
    free(out);
    uint8_t *bf = load_or_fail("bf16_to_fp8.u8", 65536 * 4, &n);
    ck_assert_uint_eq(fv_check_bf16_all(v, bf, what), 0);
    free(bf);
    float *t4 = load_or_fail("e4m3fn_decode.f32", 1024, &n);
    float *t5 = load_or_fail("e5m2_decode.f32", 1024, &n);
    ck_assert_uint_eq(fv_check_decode(v, t4, KN_FP8_E4M3, what), 0);
    ck_assert_uint_eq(fv_check_decode(v, t5, KN_FP8_E5M2, what), 0);
    free(t4);
    free(t5);
    fprintf(stderr, "%s: 1,048,576 f32 x 4 + 65,536 bf16 x 4 + 2 x 256 decodes match\n", what);
}
END_TEST

/* Variant vs reference over the f32 bit space, 4 columns, in chunks. */
START_TEST(test_f32_space_vs_ref)
{
    enum { CHUNK = 1 << 20 };
    const kn_ops *v = kn_variant(_i), *ref = kn_variant(0);
    const char *ex = getenv("FP8D_CONF_EXHAUSTIVE");
    int exhaustive = ex != NULL && strcmp(ex, "1") == 0;
    uint64_t total = exhaustive ? (1ull << 32) : (1ull << 24), done = 0;
    uint32_t *x = malloc(CHUNK * sizeof(*x));
    uint8_t *a = malloc(CHUNK), *b = malloc(CHUNK);
    uint32_t lcg = 12345;

    ck_assert(x != NULL && a != NULL && b != NULL);
    if (!kn_variant_usable(v)) {
        fprintf(stderr, "SKIP %s: not supported by this CPU\n", v->name);
        goto out;
    }
    for (; done < total; done += CHUNK) {
        for (uint32_t k = 0; k < CHUNK; k++) {
            uint64_t idx = done + k;
            if (exhaustive) {
                x[k] = (uint32_t)idx;
            } else {
                lcg = lcg * 1664525u + 1013904223u;
                x[k] = (uint32_t)(idx << 8) | (lcg >> 24);
            }
        }
        for (int col = 0; col < 4; col++) {
            const fv_column *c = &fv_columns[col];
            ref->f32_to_fp8(a, (const float *)x, CHUNK, c->fmt, 1.0f, c->flags);
            v->f32_to_fp8(b, (const float *)x, CHUNK, c->fmt, 1.0f, c->flags);
            if (memcmp(a, b, CHUNK) != 0)
                for (uint32_t k = 0; k < CHUNK; k++)
                    ck_assert_msg(a[k] == b[k], "%s %s: f32 bits 0x%08X: got 0x%02X, ref 0x%02X",
                                  v->name, c->label, x[k], b[k], a[k]);
        }
    }
    fprintf(stderr, "[%s] f32 bit space: %llu patterns x 4 columns equal to ref%s\n", v->name,
            (unsigned long long)total, exhaustive ? " (exhaustive)" : "");
out:
    free(x);
    free(a);
    free(b);
}
END_TEST

int main(void)
{
    const char *base = getenv("FP8D_SHARED_TESTDATA");
    char probe[4200];
    FILE *f;
    int failed, nv = kn_variant_count();

    kn_log_set_level(KN_LOG_WARN);
    snprintf(g_dir, sizeof(g_dir), "%s/fp8", base != NULL ? base : "../shared/testdata");
    snprintf(probe, sizeof(probe), "%s/f32_inputs.f32", g_dir);
    if ((f = fopen(probe, "rb")) != NULL) {
        g_have_data = 1;
        fclose(f);
    } else {
        fprintf(stderr, "SKIP: %s not found (FP8D_SHARED_TESTDATA)\n", probe);
    }
    fprintf(stderr, "kernel variants:");
    for (int i = 0; i < nv; i++)
        fprintf(stderr, " %s (%s)", kn_variant(i)->name,
                kn_variant_usable(kn_variant(i)) ? "tested" : "SKIP: CPU lacks it");
    fprintf(stderr, "\n");

    Suite *s = suite_create("conf_fp8");
    TCase *tc = tcase_create("fp8_conformance");
    tcase_set_timeout(tc, 3600);
    tcase_add_loop_test(tc, test_full_vectors, 0, nv);
    tcase_add_loop_test(tc, test_f32_space_vs_ref, 1, nv);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
