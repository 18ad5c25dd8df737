/* kernels.h: compute primitives (FP8 codec, reductions, math for the
 * forward pass), a C reference for each and AVX-512 variants chosen at
 * run time.
 *
 * kn_init() fills the ops table once, before other threads start; it is
 * read-only afterwards.  Kernels never open parallel regions: callers
 * (engine/) split work and pass ith/nth where a kernel takes them.
 * Buffers are owned by the caller; kernels never allocate on hot paths.
 * Knows nothing about models, requests or files.
 */
#ifndef FP8D_KERNELS_H
#define FP8D_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kn_base.h"

/* Stable numbering: stored in measurement files; append only. */
typedef enum kn_fp8_format {
    KN_FP8_E4M3 = 0,   /* e4m3fn: bias 7, max 448, no inf, NaN = S.1111.111 */
    KN_FP8_E5M2 = 1,   /* bias 15, max 57344, inf = S.11111.00, NaN = S.11111.xx */
} kn_fp8_format;

/* Flags for the encoders. */
enum {
    KN_FP8_SATURATE = 1u << 0, /* overflow and +-inf clamp to +-max (NaN stays NaN) */
    KN_FP8_DIVIDE   = 1u << 1, /* dst = fp8(src / scale) (one IEEE division) instead
                                * of fp8(src * scale); what compressed-tensors and
                                * the testdata references use */
};

/* The ops table.  Every encoder rounds to nearest, ties to even, with
 * subnormals; the f32 product/quotient with scale is rounded to f32 first
 * (as torch and TransformerEngine do).  scale == 1.0f gives the plain cast.
 * Without KN_FP8_SATURATE: e4m3 overflow/+-inf -> NaN (0x7F|sign), e5m2
 * overflow -> +-inf, as torch's .to(float8_*) does. */
typedef struct kn_ops {
    const char *name;                 /* "ref", "avx512" */
    void (*f32_to_fp8)(uint8_t *dst, const float *src, size_t n,
                       kn_fp8_format fmt, float scale, unsigned flags);
    void (*bf16_to_fp8)(uint8_t *dst, const uint16_t *src, size_t n,
                        kn_fp8_format fmt, float scale, unsigned flags);
    void (*f16_to_fp8)(uint8_t *dst, const uint16_t *src, size_t n,
                       kn_fp8_format fmt, float scale, unsigned flags);
    /* dst[i] = decode(src[i]) * scale (scale == 1.0f: exact table decode). */
    void (*fp8_to_f32)(float *dst, const uint8_t *src, size_t n,
                       kn_fp8_format fmt, float scale);
    /* max |x| over non-NaN elements (0 for n == 0; +inf if any inf);
     * *n_nan (may be NULL) receives the number of NaNs seen. */
    float (*amax_f32)(const float *x, size_t n, size_t *n_nan);
    float (*amax_bf16)(const uint16_t *x, size_t n, size_t *n_nan);
    /* Fused: f32_to_fp8 (or bf16_to_fp8) and amax_f32 (amax_bf16) of the
     * same unscaled src in one pass over memory, for casts that record
     * their amax (DelayedScaling).  Same dst bytes, return value and
     * *n_nan as the two separate calls. */
    float (*f32_to_fp8_amax)(uint8_t *dst, const float *src, size_t n, kn_fp8_format fmt,
                             float scale, unsigned flags, size_t *n_nan);
    float (*bf16_to_fp8_amax)(uint8_t *dst, const uint16_t *src, size_t n, kn_fp8_format fmt,
                              float scale, unsigned flags, size_t *n_nan);
} kn_ops;

/* Selects the fastest usable variant, or the one named by force ("ref",
 * "avx512"); force NULL consults $FP8D_KERNELS.  Returns 0, or -EINVAL for
 * an unknown name, -ENOTSUP when the forced variant cannot run here.
 * Thread: main, before other threads start.  Idempotent. */
int           kn_init(const char *force);
const kn_ops *kn_active(void);            /* never NULL once kn_init() returned 0 */
int           kn_variant_count(void);     /* every variant compiled in; 0 = ref */
const kn_ops *kn_variant(int i);
bool          kn_variant_usable(const kn_ops *ops);

/* Scalar helpers (reference semantics), for code that converts a handful
 * of values. */
uint8_t kn_fp8_encode(float x, kn_fp8_format fmt, bool saturate);
float   kn_fp8_decode(uint8_t code, kn_fp8_format fmt);
float   kn_fp8_max(kn_fp8_format fmt);   /* 448 or 57344 */

/* Math for the forward pass (matmul, norms, rope, softmax, ...). */
#include "kernels/kn_math.h"
#include "kernels/kn_fp8mm.h"

#endif
