/* kn_fp8mm-int.h: what the FP8 matrix-product files of kernels/ share:
 * the packed weight object and its layout.  Declarations, constants and
 * static inline helpers only (style.md Part 2 section 8: an ISA file may
 * include this without handing the linker an AVX-512 copy of anything).
 *
 * Layout of kn_fp8w.data: panel p (rows [16p, 16p+16)), chunk c (k in
 * [64c, 64c+64)), row r of the panel: 64 bytes at
 * ((p * k_chunks + c) * 16 + r) * 64.  Inside a chunk, k = 32h + 8q + t
 * (h < 2, q < 4, t < 8) sits at byte 16q + 8h + t: the order in which
 * the AVX-512 widening (byte unpack per 128-bit lane) yields bf16 words in
 * plain k order.  Rows past N and k past K hold 0x00 (+0).
 */
#ifndef FP8D_KN_FP8MM_INT_H
#define FP8D_KN_FP8MM_INT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "kernels/kn_codec-int.h"   /* kn__fp8_table: exact 256-entry decode */

#define KN_FP8W_KCHUNK 64   /* k per chunk: one cache line per row */
/* Prefill: activation rows converted to bf16 per pass (the panel decode
 * is amortised over this many rows). */
#define KN_FP8MM_MBLOCK 144   /* a multiple of the tile heights 12 and 6 */

struct kn_fp8w {
    size_t            N, K;        /* logical shape: [out][in] */
    size_t            n_panels;    /* ceil(N / 16) */
    size_t            k_chunks;    /* ceil(K / 64) */
    size_t            kb;          /* ceil(K / 128): block-scale columns */
    kn_fp8_format     fmt;
    kn_fp8_scale_kind sk;
    size_t            n_scales;    /* kn_fp8_scale_count(sk, N, K) */
    float            *scales;      /* kn_alloc'd: n_scales as given; CHANNEL is
                                    * padded with 0 to n_panels * 16 */
    uint8_t          *data;        /* kn_alloc'd: n_panels * k_chunks * 16 * 64 */
};

/* Byte position of k inside its chunk. */
static inline size_t kn__fp8w_pos(size_t k)
{
    return ((k >> 3) & 3) * 16 + ((k >> 5) & 1) * 8 + (k & 7);
}

static inline const uint8_t *kn__fp8w_chunk(const kn_fp8w *w, size_t p, size_t c)
{
    return w->data + ((p * w->k_chunks + c) * KN_FP8W_PANEL) * KN_FP8W_KCHUNK;
}

#endif
