# kernels/: forward-pass math (linear, norms, rope, softmax): a reference
# library and, when the compiler takes the flags, the AVX-512 variant in its
# own library (automake has no per-file flags).
noinst_LIBRARIES += kernels/libknmath.a
kernels_libknmath_a_SOURCES = kernels/kn_math.h kernels/kn_math_ref.c
KN_ISA_LIBS += kernels/libknmath.a
if KN_AVX512
noinst_LIBRARIES += kernels/libknmath_avx512.a
kernels_libknmath_avx512_a_SOURCES = kernels/kn_math_avx512.c
kernels_libknmath_avx512_a_CFLAGS  = $(AM_CFLAGS) $(KN_AVX512_FLAGS)
KN_ISA_LIBS += kernels/libknmath_avx512.a
endif
