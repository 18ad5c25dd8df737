# kernels/: FP8 codec, reductions; reference C + AVX-512 (own library for its flags).
noinst_LIBRARIES += kernels/libkernels.a
kernels_libkernels_a_SOURCES = kernels/kernels.h kernels/kn_base.h kernels/kn_base.c \
                               kernels/kn_codec-int.h kernels/kn_ref.c kernels/kn_cpu.c \
                               kernels/kn_dispatch.c
KN_ISA_LIBS =
