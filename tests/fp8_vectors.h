/* fp8_vectors.h: test-only helpers that load the FP8 codec vectors
 * (tests/data/fp8 subset, ../shared/testdata/fp8 full set; layouts in
 * ../shared/testdata/README.md "fp8/") and compare a kernel variant with
 * them under the README's test rule: bytes equal for non-NaN inputs, any
 * NaN code of the target format for NaN inputs.  Used by
 * tests/check_kernels.c and tests/conf_fp8.c; not part of any library. */
#ifndef FP8D_TESTS_FP8_VECTORS_H
#define FP8D_TESTS_FP8_VECTORS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Reads dir/name whole into a malloc'd buffer (free with free()).
 * expect_size 0 accepts any size that is a multiple of elem_size.
 * Returns 0, -ENOENT when the file is absent (caller prints SKIP), or
 * another negative errno with err naming the file and the reason. */
int fv_load(const char *dir, const char *name, size_t elem_size, size_t expect_size,
            void **out, size_t *out_size, char *err, size_t errlen);

/* The four cast columns of the vector files, in file order. */
typedef struct fv_column {
    kn_fp8_format fmt;
    unsigned      flags;
    const char   *label;   /* "e4m3", "e5m2", "e4m3 sat", "e5m2 sat" */
} fv_column;
extern const fv_column fv_columns[4];

/* NaN codes: e4m3fn (b & 0x7F) == 0x7F, e5m2 (b & 0x7F) > 0x7C. */
int fv_is_nan_code(uint8_t b, kn_fp8_format fmt);

/* Each returns the number of mismatching bytes/values and prints the
 * first few to stderr prefixed by what.  expect is [n][4] row-major. */
size_t fv_check_f32(const kn_ops *ops, const float *in, const uint8_t *expect, size_t n,
                    const char *what);
size_t fv_check_bf16_all(const kn_ops *ops, const uint8_t *expect /* [65536][4] */,
                         const char *what);
/* Decodes all 256 codes with fp8_to_f32 (scale 1): non-NaN values
 * bit-identical, NaN where the table has NaN. */
size_t fv_check_decode(const kn_ops *ops, const float *table, kn_fp8_format fmt,
                       const char *what);

#endif
