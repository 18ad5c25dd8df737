/* kn_avx512-int.h: register-level helpers the AVX-512 files of kernels/
 * share.  Included only by files compiled with the AVX-512 flags
 * (kn_avx512.c, kn_fp8mm_avx512.c, kn_math_avx512.c); every helper is
 * static and always inlined, so no out-of-line AVX-512 copy can reach
 * base-ISA code through the linker (style.md Part 2 section 8). */
#ifndef FP8D_KN_AVX512_INT_H
#define FP8D_KN_AVX512_INT_H

#include <immintrin.h>
#include <stddef.h>

/* The lanes of the 16 values from i that lie below n: all, a prefix, or
 * none.  Tails use masked loads and stores, so callers never pad. */
static inline __attribute__((always_inline)) __mmask16 kn__mask16(size_t n, size_t i)
{
    return i >= n ? 0 : n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
}

/* out[e] = column e of the 16x16 dword matrix in[row] (in and out may not
 * alias): unpack 32, unpack 64, then a 4x4 transpose of 128-bit lanes; 64
 * shuffles for 256 values. */
static inline __attribute__((always_inline)) void kn__tr16(const __m512i in[16],
                                                           __m512i out[16])
{
    __m512i t[16], s[16];
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(in[2 * i], in[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(in[2 * i], in[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {   /* s[4i + c], lane L: rows 4i..4i+3 of column 4L + c */
        s[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        s[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        s[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        s[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
#pragma GCC unroll 16
    for (int c = 0; c < 4; c++) {
        __m512i a = _mm512_shuffle_i32x4(s[c], s[4 + c], 0x88);
        __m512i b = _mm512_shuffle_i32x4(s[c], s[4 + c], 0xDD);
        __m512i d = _mm512_shuffle_i32x4(s[8 + c], s[12 + c], 0x88);
        __m512i e = _mm512_shuffle_i32x4(s[8 + c], s[12 + c], 0xDD);
        out[0 + c] = _mm512_shuffle_i32x4(a, d, 0x88);
        out[8 + c] = _mm512_shuffle_i32x4(a, d, 0xDD);
        out[4 + c] = _mm512_shuffle_i32x4(b, e, 0x88);
        out[12 + c] = _mm512_shuffle_i32x4(b, e, 0xDD);
    }
}

#endif
