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

# Tests of the codec.  check_kernels runs in 'make check' on the compact
# vectors in tests/data/fp8; conf_fp8 runs the full sets in
# ../shared/testdata/fp8 under 'make conformance'.  tests/tests.mk sets
# CONFORMANCE_TESTS with '=' after this file is included, so appending to
# it here is an automake error (and would be overwritten): conf_fp8 hooks
# into that target through a prerequisite instead.
if HAVE_CHECK
check_PROGRAMS += tests/check_kernels tests/conf_fp8
TESTS += tests/check_kernels
tests_check_kernels_SOURCES = tests/check_kernels.c tests/fp8_vectors.c tests/fp8_vectors.h
tests_check_kernels_CFLAGS  = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_kernels_LDADD   = $(KN_LIBS) $(CHECK_LIBS) $(DEP_LIBS)
tests_conf_fp8_SOURCES = tests/conf_fp8.c tests/fp8_vectors.c tests/fp8_vectors.h
tests_conf_fp8_CFLAGS  = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_conf_fp8_LDADD   = $(KN_LIBS) $(CHECK_LIBS) $(DEP_LIBS)
conformance-kernels: tests/conf_fp8
	@echo "== tests/conf_fp8"; $(AM_TESTS_ENVIRONMENT) ./tests/conf_fp8
else
conformance-kernels:
	@echo "SKIP: tests/conf_fp8 needs check (libcheck), not found by configure"
endif
conformance: conformance-kernels

.PHONY: conformance-kernels

# fp8ctl cast against hand-derived bytes (needs server/fp8ctl, built by
# 'make all' before 'make check' runs its tests).
TESTS      += tests/fp8ctl_cast.sh
EXTRA_DIST += tests/fp8ctl_cast.sh

# 'make bench': the codec's GB/s per variant beside read/copy bandwidth.
# tests/tests.mk sets BENCH_TESTS and EXTRA_PROGRAMS with '=' after this
# file (see above), so bench_codec is a check program (built, never run,
# by 'make check') and hooks into 'bench' through a prerequisite.
check_PROGRAMS += tests/bench_codec
tests_bench_codec_SOURCES = tests/bench_codec.c
tests_bench_codec_CFLAGS  = $(AM_CFLAGS) $(OPENMP_CFLAGS)
tests_bench_codec_LDADD   = $(KN_LIBS) $(DEP_LIBS)
bench: bench-kernels
bench-kernels: tests/bench_codec
	@echo "== tests/bench_codec"; ./tests/bench_codec
.PHONY: bench-kernels
