/* fp8_vectors.c: loading and comparing the FP8 codec vectors (see
 * fp8_vectors.h). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fp8_vectors.h"

/* The vector files are little-endian and read as raw arrays. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "fp8 vectors are little-endian");

const fv_column fv_columns[4] = {
    {KN_FP8_E4M3, 0, "e4m3"},
    {KN_FP8_E5M2, 0, "e5m2"},
    {KN_FP8_E4M3, KN_FP8_SATURATE, "e4m3 sat"},
    {KN_FP8_E5M2, KN_FP8_SATURATE, "e5m2 sat"},
};

int fv_load(const char *dir, const char *name, size_t elem_size, size_t expect_size,
            void **out, size_t *out_size, char *err, size_t errlen)
{
    char path[4096];
    FILE *f = NULL;
    void *buf = NULL;
    long len;
    int rc;

    *out = NULL;
    *out_size = 0;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
        kn_errf(err, errlen, "%s/%s: path too long", dir, name);
        return -ENAMETOOLONG;
    }
    if ((f = fopen(path, "rb")) == NULL) {
        rc = -errno;
        kn_errf(err, errlen, "open %s: %s", path, strerror(-rc));
        return rc;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        rc = -EIO;
        kn_errf(err, errlen, "%s: cannot determine its size", path);
        goto fail;
    }
    if ((size_t)len % elem_size != 0 || (expect_size != 0 && (size_t)len != expect_size)) {
        rc = -EINVAL;
        kn_errf(err, errlen, "%s: %ld bytes, expected %zu (elements of %zu bytes)", path, len,
                expect_size, elem_size);
        goto fail;
    }
    if ((buf = malloc(len > 0 ? (size_t)len : 1)) == NULL) {
        rc = -ENOMEM;
        kn_errf(err, errlen, "%s: out of memory for %ld bytes", path, len);
        goto fail;
    }
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
        rc = -EIO;
        kn_errf(err, errlen, "%s: short read", path);
        goto fail;
    }
    fclose(f);
    *out = buf;
    *out_size = (size_t)len;
    return 0;

fail:
    free(buf);
    fclose(f);
    return rc;
}

int fv_is_nan_code(uint8_t b, kn_fp8_format fmt)
{
    return fmt == KN_FP8_E4M3 ? (b & 0x7F) == 0x7F : (b & 0x7F) > 0x7C;
}

/* One column: got[i] against expect[i*4+col]; in_nan[i] says whether the
 * input was NaN (then any NaN code passes). */
static size_t compare_column(const uint8_t *got, const uint8_t *expect, const uint8_t *in_nan,
                             size_t n, int col, const char *what, const float *in_f32)
{
    const fv_column *c = &fv_columns[col];
    size_t bad = 0;

    for (size_t i = 0; i < n; i++) {
        uint8_t want = expect[i * 4 + (size_t)col];
        int ok = in_nan[i] ? fv_is_nan_code(got[i], c->fmt) : got[i] == want;
        if (ok)
            continue;
        if (bad++ < 5) {
            if (in_f32 != NULL)
                fprintf(stderr, "%s %s: row %zu input %a: got 0x%02X, want 0x%02X\n", what,
                        c->label, i, (double)in_f32[i], got[i], want);
            else
                fprintf(stderr, "%s %s: row %zu: got 0x%02X, want 0x%02X\n", what, c->label, i,
                        got[i], want);
        }
    }
    return bad;
}

size_t fv_check_f32(const kn_ops *ops, const float *in, const uint8_t *expect, size_t n,
                    const char *what)
{
    uint8_t *got = malloc(n ? n : 1), *nan = malloc(n ? n : 1);
    size_t bad = 0;

    if (got == NULL || nan == NULL) {
        fprintf(stderr, "%s: out of memory\n", what);
        free(got);
        free(nan);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        nan[i] = isnan(in[i]) != 0;
    for (int col = 0; col < 4; col++) {
        ops->f32_to_fp8(got, in, n, fv_columns[col].fmt, 1.0f, fv_columns[col].flags);
        bad += compare_column(got, expect, nan, n, col, what, in);
    }
    free(got);
    free(nan);
    return bad;
}

size_t fv_check_bf16_all(const kn_ops *ops, const uint8_t *expect, const char *what)
{
    enum { N = 65536 };
    static uint16_t in[N];
    static uint8_t got[N], nan[N];
    size_t bad = 0;

    for (size_t b = 0; b < N; b++) {
        in[b] = (uint16_t)b;
        nan[b] = (b & 0x7FFF) > 0x7F80; /* exponent all ones, mantissa non-zero */
    }
    for (int col = 0; col < 4; col++) {
        ops->bf16_to_fp8(got, in, N, fv_columns[col].fmt, 1.0f, fv_columns[col].flags);
        bad += compare_column(got, expect, nan, N, col, what, NULL);
    }
    return bad;
}

size_t fv_check_decode(const kn_ops *ops, const float *table, kn_fp8_format fmt,
                       const char *what)
{
    uint8_t codes[256];
    float got[256];
    size_t bad = 0;

    for (int c = 0; c < 256; c++)
        codes[c] = (uint8_t)c;
    ops->fp8_to_f32(got, codes, 256, fmt, 1.0f);
    for (int c = 0; c < 256; c++) {
        int ok = isnan(table[c]) ? isnan(got[c]) != 0 : memcmp(&got[c], &table[c], 4) == 0;
        if (!ok && bad++ < 5)
            fprintf(stderr, "%s decode %s: code 0x%02X: got %a, want %a\n", what,
                    fmt == KN_FP8_E4M3 ? "e4m3" : "e5m2", c, (double)got[c], (double)table[c]);
    }
    return bad;
}
