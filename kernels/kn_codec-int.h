/* kn_codec-int.h: what the codec files of kernels/ share and nobody
 * outside kernels/ may include: the variant tables, the CPU feature
 * probe and the format constants the reference and the ISA files agree
 * on.  Only declarations and constants here (no inline code), so that a
 * file compiled with -mavx512* cannot hand the linker an AVX-512 copy of
 * a helper that base-ISA code then calls (style.md Part 2 section 8). */
#ifndef FP8D_KN_CODEC_INT_H
#define FP8D_KN_CODEC_INT_H

#include <stdbool.h>

#include "kernels/kernels.h"

/* The variants.  kn__ops_ref is always present; kn__ops_avx512 only when
 * configure found a compiler for it (HAVE_KN_AVX512). */
extern const kn_ops kn__ops_ref;
#ifdef HAVE_KN_AVX512
extern const kn_ops kn__ops_avx512;
#endif

/* Every feature the AVX-512 file is compiled with (KN_AVX512_FLAGS):
 * the compiler may use any of them anywhere in that file, so all must be
 * present before one of its functions may run. */
bool        kn__cpu_has_avx512(void);
/* Space-separated list of the features kn__cpu_has_avx512() checked,
 * each followed by '+' or '-' ("avx512f+ avx512bw+ ..."), for the log.
 * Static storage, filled on first call.  Thread: main (kn_init). */
const char *kn__cpu_avx512_report(void);

/* 256-entry decode tables built from the bit-layout formula
 * (fp8-semantics.md 1.1) on first use; read-only afterwards.
 * Thread: any (pthread_once). */
const float *kn__fp8_table(kn_fp8_format fmt);

#endif
