/* kn_math.h: forward-pass math kernels (included by kernels/kernels.h;
 * include that, not this).
 *
 * The linear kernel comes in variants behind kn_math_ops (a C reference,
 * the specification, and AVX-512); the caller keeps the table it chose, so
 * nothing here holds global state.  Kernels never open parallel regions:
 * the engine splits the output rows [n0, n1) between its threads.  All
 * activations are f32; weights stay in their stored precision and are
 * widened exactly (BF16 bits << 16, F16 per IEEE) inside the kernel.
 * Thread: any; buffers belong to the caller.
 */
#ifndef FP8D_KN_MATH_H
#define FP8D_KN_MATH_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef enum kn_wtype { KN_W_F32 = 0, KN_W_BF16 = 1, KN_W_F16 = 2 } kn_wtype;

typedef struct kn_math_ops {
    const char *name;   /* "ref", "avx512" */
    /* y[m*ldy + n] = sum_k x[m*ldx + k] * W[n*K + k] (+ bias[n]) for
     * m in [0, M), n in [n0, n1).  W: [N, K] row-major of type wt; bias
     * [N] or NULL.  The reference sums in double and rounds once; the
     * variants accumulate in f32 in their own order (results agree to
     * rounding, not bit for bit). */
    void (*linear)(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                   const void *w, kn_wtype wt, size_t K, size_t n0, size_t n1,
                   const float *bias);
    /* The same product from weights packed by kn_pack_weights: output
     * panels [p0, p1) of KN_PANEL rows each (the last one may be partial:
     * N is the true row count).  No horizontal sums, so large M runs near
     * the FMA peak; optional in a table (NULL: use linear). */
    void (*linear_packed)(float *y, size_t ldy, const float *x, size_t ldx, size_t M,
                          const void *wp, kn_wtype wt, size_t K, size_t N, size_t p0,
                          size_t p1, const float *bias);
    float (*dot)(const float *a, const float *b, size_t n);   /* summed as linear's */
    void  (*axpy)(float *y, float a, const float *x, size_t n);  /* y += a * x */
    /* g = silu(g) * u = g / (1 + exp(-g)) * u (the SwiGLU gate); the
     * reference is kn_silu_mul (libm expf), a variant's exp may differ
     * from it by a few ulp (within 2^-20 relative of the exact value). */
    void  (*silu_mul)(float *g, const float *u, size_t n);
    /* kn_rmsnorm: y = w * (x * r), r = 1 / sqrt(mean(x^2) + eps) with the
     * sum of squares in double (the reference is kn_rmsnorm; a variant
     * sums in another order, so r may differ by an ulp).  y may be x. */
    void  (*rmsnorm)(float *y, const float *x, const float *w, size_t n, float eps);
    /* Softmax attention of nq query rows x nh heads that share one key/value
     * head (a GQA group): for row i, head h, with q_ih = q[i*ldq + h*hs ..]
     * (hs values) and keys t in [lo[i], hi[i]) (hi > lo),
     *   out[i*ldo + h*hs + d] = sum_t softmax_t(scale * q_ih . k_t) * v_t[d],
     * k_t = k[t*ldkv ..], v_t = v[t*ldkv ..].  hs <= KN_ATTN_MAX_HS and
     * nq * nh <= KN_ATTN_MAX_Q (broken invariants otherwise: KN_ASSERT).
     * The reference takes the maximum first (two passes over the keys);
     * a variant may run an online softmax over blocks of keys (the running
     * maximum rescales the partial sums), equal up to f32 rounding. */
    void  (*attention)(float *out, size_t ldo, const float *q, size_t ldq, size_t nq,
                       size_t nh, const float *k, const float *v, size_t ldkv, size_t hs,
                       const size_t *lo, const size_t *hi, float scale);
} kn_math_ops;

#define KN_ATTN_MAX_HS 256
#define KN_ATTN_MAX_Q  64

int                kn_math_variant_count(void);        /* 0 = ref */
const kn_math_ops *kn_math_variant(int i);
bool               kn_math_usable(const kn_math_ops *ops);
/* The fastest usable variant, or the one named (NULL = best); NULL when
 * the name is unknown or the variant cannot run on this CPU. */
const kn_math_ops *kn_math_select(const char *name);

/* Packed weight layout: panel p holds rows [p*KN_PANEL, (p+1)*KN_PANEL)
 * of W transposed, k-major: dst[p][k][j] = W[p*KN_PANEL + j][k], zero
 * beyond N, in W's own type (no rounding: BF16 stays BF16).
 * kn_packed_size gives the bytes; dst must be 64-byte aligned. */
#define KN_PANEL 32
size_t kn_packed_size(kn_wtype wt, size_t N, size_t K);
void   kn_pack_weights(void *dst, const void *w, kn_wtype wt, size_t N, size_t K);
/* Row n (< N) of the W packed in wp, widened exactly to f32: dst[k] =
 * W[n][k] for k < K (a gather of K values one panel row apart: what an
 * embedding lookup in a tied lm_head's panels needs). */
void   kn_packed_row(float *dst, const void *wp, kn_wtype wt, size_t K, size_t n);

/* Scalar-path helpers (exact conversions; f32 math in the obvious order). */
float kn_bf16_to_f32(uint16_t h);
float kn_f16_to_f32(uint16_t h);
void  kn_widen(float *dst, const void *src, kn_wtype wt, size_t n);
/* y = w * x / sqrt(mean(x^2) + eps); mean accumulated in double.  y may be x. */
void  kn_rmsnorm(float *y, const float *x, const float *w, size_t n, float eps);
void  kn_softmax(float *x, size_t n);                  /* in place, max-subtracted */
void  kn_silu_mul(float *g, const float *u, size_t n); /* g = silu(g) * u */
/* Rotate-half RoPE on x[0..rot): x[i], x[i+rot/2] by cos[i], sin[i]. */
void  kn_rope_half(float *x, const float *cos, const float *sin, size_t rot);

#endif
