/* kn_fp8w.c: the packed FP8 weight object: building it from row-major
 * codes and scales, reading elements back, and splitting panels between
 * threads.  The layout is described in kn_fp8mm-int.h. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/kernels.h"
#include "kernels/kn_fp8mm-int.h"

size_t kn_fp8_scale_count(kn_fp8_scale_kind sk, size_t N, size_t K)
{
    switch (sk) {
    case KN_FP8_SCALE_TENSOR:  return 1;
    case KN_FP8_SCALE_CHANNEL: return N;
    case KN_FP8_SCALE_BLOCK:
        return ((N + KN_FP8W_BLOCK - 1) / KN_FP8W_BLOCK) *
               ((K + KN_FP8W_BLOCK - 1) / KN_FP8W_BLOCK);
    }
    return 0;
}

static int check_args(size_t N, size_t K, kn_fp8_format fmt, kn_fp8_scale_kind sk,
                      const float *scales, char *err, size_t errlen)
{
    if (N == 0 || K == 0) {
        kn_errf(err, errlen, "fp8 weight: empty shape %zux%zu", N, K);
        return -EINVAL;
    }
    if (fmt != KN_FP8_E4M3 && fmt != KN_FP8_E5M2) {
        kn_errf(err, errlen, "fp8 weight: unknown format %d", (int)fmt);
        return -EINVAL;
    }
    size_t ns = kn_fp8_scale_count(sk, N, K);
    if (ns == 0) {
        kn_errf(err, errlen, "fp8 weight: unknown scale kind %d", (int)sk);
        return -EINVAL;
    }
    for (size_t i = 0; i < ns; i++)
        if (!isfinite(scales[i])) {
            kn_errf(err, errlen, "fp8 weight %zux%zu: scale %zu of %zu is not finite (%g)", N,
                    K, i, ns, (double)scales[i]);
            return -EINVAL;
        }
    return 0;
}

/* Code storage: large matrices on 2 MiB boundaries with a transparent
 * huge page hint (THP is 'madvise' on our machines): a decode step streams
 * every weight once, and 4 KiB pages would cost a TLB miss every 4 KiB.
 * Freed with free(), as kn_free does. */
#define HUGE_ALIGN ((size_t)2 << 20)
static void *codes_alloc(size_t size)
{
    void *p = NULL;
    if (size < 2 * HUGE_ALIGN)
        return kn_alloc(size);
    size = (size + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN;
    if (posix_memalign(&p, HUGE_ALIGN, size) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, size, MADV_HUGEPAGE);   /* a hint: failure changes nothing */
#endif
    return p;
}

static void pack_codes(kn_fp8w *p, const uint8_t *w)
{
    /* Padding must read as +0: the kernels run whole chunks and panels. */
    memset(p->data, 0, p->n_panels * p->k_chunks * KN_FP8W_PANEL * KN_FP8W_KCHUNK);
    for (size_t n = 0; n < p->N; n++) {
        const uint8_t *src = w + n * p->K;
        for (size_t c = 0; c < p->k_chunks; c++) {
            uint8_t *dst = (uint8_t *)kn__fp8w_chunk(p, n / KN_FP8W_PANEL, c) +
                           (n % KN_FP8W_PANEL) * KN_FP8W_KCHUNK;
            size_t k_end = (c + 1) * KN_FP8W_KCHUNK < p->K ? (c + 1) * KN_FP8W_KCHUNK : p->K;
            for (size_t k = c * KN_FP8W_KCHUNK; k < k_end; k++)
                dst[kn__fp8w_pos(k)] = src[k];
        }
    }
}

int kn_fp8w_new(kn_fp8w **out, const uint8_t *w, size_t N, size_t K, kn_fp8_format fmt,
                kn_fp8_scale_kind sk, const float *scales, char *err, size_t errlen)
{
    kn_fp8w *p = NULL;
    int rc;

    *out = NULL;
    if ((rc = check_args(N, K, fmt, sk, scales, err, errlen)) < 0)
        return rc;
    if ((p = kn_calloc(1, sizeof(*p))) == NULL)
        goto nomem;
    p->N = N;
    p->K = K;
    p->fmt = fmt;
    p->sk = sk;
    p->n_panels = (N + KN_FP8W_PANEL - 1) / KN_FP8W_PANEL;
    p->k_chunks = (K + KN_FP8W_KCHUNK - 1) / KN_FP8W_KCHUNK;
    p->kb = (K + KN_FP8W_BLOCK - 1) / KN_FP8W_BLOCK;
    p->n_scales = kn_fp8_scale_count(sk, N, K);
    /* CHANNEL scales padded to whole panels so kernels load 16 at once. */
    size_t n_alloc = sk == KN_FP8_SCALE_CHANNEL ? p->n_panels * KN_FP8W_PANEL : p->n_scales;
    if ((p->scales = kn_calloc(n_alloc, sizeof(float))) == NULL)
        goto nomem;
    memcpy(p->scales, scales, p->n_scales * sizeof(float));
    p->data = codes_alloc(p->n_panels * p->k_chunks * KN_FP8W_PANEL * KN_FP8W_KCHUNK);
    if (p->data == NULL)
        goto nomem;
    pack_codes(p, w);
    *out = p;
    return 0;

nomem:
    kn_errf(err, errlen, "fp8 weight %zux%zu: out of memory", N, K);
    kn_fp8w_free(p);
    return -ENOMEM;
}

void kn_fp8w_free(kn_fp8w *w)
{
    if (w == NULL)
        return;
    free(w->data);   /* codes_alloc: kn_alloc or posix_memalign, both free() */
    kn_free(w->scales);
    kn_free(w);
}

size_t kn_fp8w_rows(const kn_fp8w *w) { return w->N; }
size_t kn_fp8w_cols(const kn_fp8w *w) { return w->K; }
size_t kn_fp8w_panels(const kn_fp8w *w) { return w->n_panels; }
kn_fp8_format kn_fp8w_format(const kn_fp8w *w) { return w->fmt; }
kn_fp8_scale_kind kn_fp8w_scale_kind(const kn_fp8w *w) { return w->sk; }
const float *kn_fp8w_scales(const kn_fp8w *w) { return w->scales; }

size_t kn_fp8w_size(const kn_fp8w *w)
{
    return w->n_panels * w->k_chunks * KN_FP8W_PANEL * KN_FP8W_KCHUNK +
           w->n_scales * sizeof(float) + sizeof(*w);
}

uint8_t kn_fp8w_code(const kn_fp8w *w, size_t n, size_t k)
{
    KN_ASSERT(n < w->N && k < w->K);
    return kn__fp8w_chunk(w, n / KN_FP8W_PANEL, k / KN_FP8W_KCHUNK)
        [(n % KN_FP8W_PANEL) * KN_FP8W_KCHUNK + kn__fp8w_pos(k)];
}

float kn_fp8w_scale_at(const kn_fp8w *w, size_t n, size_t k)
{
    KN_ASSERT(n < w->N && k < w->K);
    switch (w->sk) {
    case KN_FP8_SCALE_CHANNEL: return w->scales[n];
    case KN_FP8_SCALE_BLOCK:   return w->scales[(n / KN_FP8W_BLOCK) * w->kb + k / KN_FP8W_BLOCK];
    default:                   return w->scales[0];
    }
}

void kn_fp8w_unpack(const kn_fp8w *w, uint8_t *dst)
{
    for (size_t n = 0; n < w->N; n++)
        for (size_t k = 0; k < w->K; k++)
            dst[n * w->K + k] = kn_fp8w_code(w, n, k);
}

void kn_fp8w_split(const kn_fp8w *w, int ith, int nth, size_t *p0, size_t *p1)
{
    KN_ASSERT(nth > 0 && ith >= 0 && ith < nth);
    /* Split in pairs of panels (the prefill kernels' unit); an odd last
     * panel goes to the last thread. */
    size_t pairs = w->n_panels / 2, odd = w->n_panels % 2;
    size_t a = pairs * (size_t)ith / (size_t)nth, b = pairs * (size_t)(ith + 1) / (size_t)nth;
    *p0 = 2 * a;
    *p1 = 2 * b + (ith == nth - 1 ? odd : 0);
}
