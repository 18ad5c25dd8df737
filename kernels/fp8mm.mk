# kernels/: FP8 weight matrix products (decode GEMV, small-M GEMM, prefill panels).
# The packed weight object and the reference (the specification) build with
# base flags; the AVX-512 variant gets its own library for KN_AVX512_FLAGS.
noinst_LIBRARIES += kernels/libknfp8mm.a
kernels_libknfp8mm_a_SOURCES = kernels/kn_fp8mm.h kernels/kn_fp8mm-int.h kernels/kn_fp8w.c \
                               kernels/kn_fp8mm_ref.c
KN_ISA_LIBS += kernels/libknfp8mm.a
# Both libraries call back into libkernels.a (kn_alloc, the codec tables,
# kn_assert_fail): list it once more after them (see kernels/kernels.mk).
if KN_AVX512
noinst_LIBRARIES += kernels/libknfp8mm_avx512.a
kernels_libknfp8mm_avx512_a_SOURCES = kernels/kn_fp8mm_avx512.c kernels/kn_fp8mm-int.h
kernels_libknfp8mm_avx512_a_CFLAGS  = $(AM_CFLAGS) $(KN_AVX512_FLAGS)
KN_ISA_LIBS += kernels/libknfp8mm_avx512.a kernels/libknfp8mm.a
endif
KN_ISA_LIBS += kernels/libkernels.a

# Every variant of the products against a double-precision product
# computed in the test (make check).
if HAVE_CHECK
check_PROGRAMS += tests/check_fp8mm
TESTS += tests/check_fp8mm
tests_check_fp8mm_SOURCES = tests/check_fp8mm.c
tests_check_fp8mm_CFLAGS  = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_fp8mm_LDADD   = $(KN_LIBS) $(CHECK_LIBS) $(DEP_LIBS)
endif

# 'make bench': read bandwidth, FP8/BF16 GEMV GB/s and prefill GFLOP/s in
# one run.  A check program (built, never run, by 'make check') hooked
# into 'bench' through a prerequisite, as kernels/kernels.mk does.
check_PROGRAMS += tests/bench_fp8mm
tests_bench_fp8mm_SOURCES = tests/bench_fp8mm.c
tests_bench_fp8mm_CFLAGS  = $(AM_CFLAGS) $(OPENMP_CFLAGS)
tests_bench_fp8mm_LDADD   = $(KN_LIBS) $(DEP_LIBS)
bench: bench-fp8mm
bench-fp8mm: tests/bench_fp8mm
	@echo "== tests/bench_fp8mm"; ./tests/bench_fp8mm
.PHONY: bench-fp8mm
