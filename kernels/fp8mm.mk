# kernels/: FP8 weight matrix products (decode GEMV, small-M GEMM, prefill panels).
# The packed weight object and the reference (the specification) build with
# base flags; the AVX-512 variant gets its own library for KN_AVX512_FLAGS.
noinst_LIBRARIES += kernels/libknfp8mm.a
kernels_libknfp8mm_a_SOURCES = kernels/kn_fp8mm.h kernels/kn_fp8mm-int.h kernels/kn_fp8w.c \
                               kernels/kn_fp8mm_ref.c
KN_ISA_LIBS += kernels/libknfp8mm.a
# Both libraries call back into libkernels.a (kn_alloc, the codec tables,
# kn_assert_fail): list it once more after them (see kernels/kernels.mk).
KN_ISA_LIBS += kernels/libkernels.a
