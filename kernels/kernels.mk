# kernels/: FP8 codec, reductions; reference C + AVX-512 (own library for its flags).
noinst_LIBRARIES += kernels/libkernels.a
kernels_libkernels_a_SOURCES = kernels/kernels.h kernels/kn_base.h kernels/kn_base.c \
                               kernels/kn_codec-int.h kernels/kn_ref.c kernels/kn_cpu.c \
                               kernels/kn_dispatch.c
KN_ISA_LIBS =

# The AVX-512 variants get their own library so that only they are
# compiled with KN_AVX512_FLAGS.  It calls back into libkernels.a
# (kn_assert_fail), and KN_LIBS lists libkernels.a before the ISA
# libraries, so libkernels.a is listed once more after it (a static
# library is only searched where it appears on the link line).
if KN_AVX512
noinst_LIBRARIES += kernels/libkn_avx512.a
kernels_libkn_avx512_a_SOURCES = kernels/kn_avx512.c kernels/kn_codec-int.h
kernels_libkn_avx512_a_CFLAGS  = $(AM_CFLAGS) $(KN_AVX512_FLAGS)
KN_ISA_LIBS += kernels/libkn_avx512.a kernels/libkernels.a
endif
