/* kn_fp8mm.h: products with FP8 weight matrices (included by
 * kernels/kernels.h; include that, not this).
 *
 * A kn_fp8w holds W[N=out][K=in] as FP8 codes (E4M3 or E5M2) plus its
 * dequantisation multipliers ("weight_scale" / "weight_scale_inv": the
 * real weight is decode(code) * scale), re-packed at load into the layout
 * the kernels stream: panels of KN_FP8W_PANEL rows, each panel a run of
 * 64-byte chunks (one per row per 64 k, rows interleaved chunk by chunk),
 * zero-padded to whole panels and chunks.  Memory is about N*K bytes plus
 * the scales, half of BF16.
 *
 * The products come in variants behind kn_fp8mm_ops (index 0 is the C
 * reference, the specification); the caller keeps the table it chose.
 * Every product takes a range of panels [p0, p1) so that the engine can
 * split the output rows between its threads (kn_fp8w_split); kernels
 * never open parallel regions and never allocate.  The caller owns every
 * buffer; kn_fp8w is read-only once built, so any number of threads may
 * run products on it at once.
 *
 * Three families, with their errors (eps = 2^-24, S = sum_k |x*w*scale|):
 *  - linear:      f32 activations, exactly decoded weights, f32 products
 *                 and sums.  |y - exact| <= ~(K+2)*eps*S (order of the sum
 *                 and where the scale is applied differ between variants).
 *  - linear_bf16: activations rounded once to bf16 (RNE), products exact,
 *                 f32 sums.  Against the exact product the bf16 rounding
 *                 adds up to 2^-8*S (bf16 keeps 8 significant bits);
 *                 against the product of the rounded activations the
 *                 bound of 'linear' holds.  Issue 7's fast decode path
 *                 (vdpbf16ps).
 *  - w8a8:        activations already quantised to FP8 (kn_fp8_act_quantize)
 *                 with a dequant multiplier per row; products of FP8 values
 *                 are exact, sums f32, then y = acc * xs[m] * w_scale(n)
 *                 (+ bias); with 128x128 block scales each 128-wide k block
 *                 is summed apart and weighted by its scale.  Error against
 *                 the exact product of the decoded values: ~(K+3)*eps*S.
 * The prefill entries compute linear_bf16 / w8a8 for large M (decode the
 * FP8 panel to bf16 once, reuse it across all rows); same error bounds.
 *
 * Which to call (AVX-512 variant, measured by tests/bench_fp8mm on the
 * project machine): for few rows the linear* entries (M = 1 streams the
 * weights at the read bandwidth with both cores; linear is compute-bound
 * near 40 G weights/s per core, so it needs both cores to reach it), for
 * more the prefill entries (about 80-85% of the vdpbf16ps peak from
 * M = 128; they overtake the small-M tiles at M ~ 6 for K = 2048 and
 * M ~ 10 for K = 8192: engine/fp8_linear.c, prefill_pays).
 */
#ifndef FP8D_KN_FP8MM_H
#define FP8D_KN_FP8MM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KN_FP8W_PANEL 16   /* output rows per packed panel */
#define KN_FP8W_BLOCK 128  /* edge of a block scale (model-formats.md 3.2) */

/* Stable numbering: may be stored; append only. */
typedef enum kn_fp8_scale_kind {
    KN_FP8_SCALE_TENSOR  = 0,  /* 1 float */
    KN_FP8_SCALE_CHANNEL = 1,  /* N floats, one per output row */
    KN_FP8_SCALE_BLOCK   = 2,  /* [ceil(N/128)][ceil(K/128)] row-major; element
                                * (n, k) uses s[n/128][k/128] */
} kn_fp8_scale_kind;

typedef struct kn_fp8w kn_fp8w;   /* opaque; read-only once built */

/* Number of scales a kind takes for an N x K matrix. */
size_t kn_fp8_scale_count(kn_fp8_scale_kind sk, size_t N, size_t K);

/* Packs w (N*K codes, row-major [out][in]) of format fmt with the scales
 * of kind sk (kn_fp8_scale_count of them, each finite; copied).  Neither
 * input is kept.  Returns 0 and *out (free with kn_fp8w_free), -EINVAL
 * (zero dimension, unknown format or kind, a non-finite scale: named in
 * err), -ENOMEM.  Thread: any. */
int  kn_fp8w_new(kn_fp8w **out, const uint8_t *w, size_t N, size_t K, kn_fp8_format fmt,
                 kn_fp8_scale_kind sk, const float *scales, char *err, size_t errlen);
void kn_fp8w_free(kn_fp8w *w);   /* accepts NULL */

size_t            kn_fp8w_rows(const kn_fp8w *w);     /* N */
size_t            kn_fp8w_cols(const kn_fp8w *w);     /* K */
size_t            kn_fp8w_panels(const kn_fp8w *w);   /* ceil(N / KN_FP8W_PANEL) */
kn_fp8_format     kn_fp8w_format(const kn_fp8w *w);
kn_fp8_scale_kind kn_fp8w_scale_kind(const kn_fp8w *w);
/* Bytes held (codes with padding, plus scales). */
size_t            kn_fp8w_size(const kn_fp8w *w);
/* The scales as given (kn_fp8_scale_count of them); borrowed, valid until
 * kn_fp8w_free. */
const float      *kn_fp8w_scales(const kn_fp8w *w);

/* The stored code and the multiplier of element (n, k), n < N, k < K:
 * for export and tests (slow: one element per call). */
uint8_t kn_fp8w_code(const kn_fp8w *w, size_t n, size_t k);
float   kn_fp8w_scale_at(const kn_fp8w *w, size_t n, size_t k);
/* All codes back in row-major [N][K] order into dst (N*K bytes). */
void    kn_fp8w_unpack(const kn_fp8w *w, uint8_t *dst);

/* Thread ith of nth takes panels [*p0, *p1): contiguous, split in pairs
 * of panels (the prefill kernels' unit; sizes differ by at most one pair,
 * an odd last panel goes to the last thread).  Any other split into
 * panel ranges is also valid. */
void kn_fp8w_split(const kn_fp8w *w, int ith, int nth, size_t *p0, size_t *p1);

/* Quantises activations for w8a8: for each row m of x ([M][ldx], K used),
 * xs[m] = *static_scale when static_scale is non-NULL (a per-tensor input
 * scale), else amax(row) / max(fmt) (NaNs are ignored by the amax; 1.0
 * when the amax is 0 or infinite, so the scale stays finite), and xq[m*ldq + k] = fp8(x / xs[m]) with one IEEE
 * division, round to nearest even, saturating (KN_FP8_DIVIDE |
 * KN_FP8_SATURATE; NaN stays NaN).  Returns 0, or -EINVAL when the
 * static scale is not finite and positive.  Uses the active codec table
 * (the reference before kn_init).  Thread: any. */
int kn_fp8_act_quantize(uint8_t *xq, size_t ldq, float *xs, const float *x, size_t ldx,
                        size_t M, size_t K, kn_fp8_format fmt, const float *static_scale);

/* Scratch the prefill entries need per calling thread (bytes, for any
 * M; allocate with kn_alloc for the 64-byte alignment). */
size_t kn_fp8mm_scratch_size(const kn_fp8w *w);
/* Activation rows the prefill entries convert per pass: calls with M up
 * to this many rows can share one conversion (x_ready). */
size_t kn_fp8mm_mblock(void);

/* Common arguments: y[m*ldy + n] for m < M and n in the rows of panels
 * [p0, p1) (rows past N are not written); bias [N] or NULL.  A range
 * outside [0, kn_fp8w_panels) is a broken invariant (KN_ASSERT). */
typedef struct kn_fp8mm_ops {
    const char *name;   /* "ref", "avx512" */
    /* y = sum_k x[m*ldx + k] * decode(W[n][k]) * scale(n, k) (+ bias[n]). */
    void (*linear)(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                   const kn_fp8w *w, size_t p0, size_t p1, const float *bias);
    /* The same with x rounded to bf16 first (see the overview). */
    void (*linear_bf16)(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                        const kn_fp8w *w, size_t p0, size_t p1, const float *bias);
    /* xq: [M][ldq] codes of format xfmt; xs: [M] their multipliers.
     * y = (sum_g s(n, g) * sum_{k in g} decode(xq) * decode(W)) * xs[m]
     *     (+ bias[n]) for block scales, and
     * y = sum_k decode(xq) * decode(W) * xs[m] * s(n) (+ bias[n]) else. */
    void (*linear_w8a8)(float *y, size_t ldy, const uint8_t *xq, size_t ldq,
                        kn_fp8_format xfmt, const float *xs, size_t M, const kn_fp8w *w,
                        size_t p0, size_t p1, const float *bias);
    /* Large-M forms of linear_bf16 and linear_w8a8: scratch is this
     * thread's kn_fp8mm_scratch_size(w) bytes, 64-byte aligned.  They
     * convert the activations into scratch first; x_ready skips that: the
     * caller promises that the previous prefill call of this family on
     * this scratch had the same activations (x or xq, ldx or ldq, xfmt, M
     * and K), so that products of one activation block with several
     * matrices, or with one matrix in several panel ranges, convert it
     * once.  Honoured only when M <= kn_fp8mm_mblock() (larger M is
     * converted block by block, so the scratch holds only the last). */
    void (*prefill_bf16)(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                         const kn_fp8w *w, size_t p0, size_t p1, const float *bias,
                         void *scratch, bool x_ready);
    void (*prefill_w8a8)(float *y, size_t ldy, const uint8_t *xq, size_t ldq,
                         kn_fp8_format xfmt, const float *xs, size_t M, const kn_fp8w *w,
                         size_t p0, size_t p1, const float *bias, void *scratch, bool x_ready);
} kn_fp8mm_ops;

int                 kn_fp8mm_variant_count(void);     /* 0 = ref */
const kn_fp8mm_ops *kn_fp8mm_variant(int i);          /* NULL when out of range */
bool                kn_fp8mm_usable(const kn_fp8mm_ops *ops);
/* The fastest usable variant, or the one named (NULL = best); NULL when
 * the name is unknown or the variant cannot run on this CPU. */
const kn_fp8mm_ops *kn_fp8mm_select(const char *name);

#endif
