# tests/: end-to-end benchmark at real model shapes (issue 7).  A check
# program (built, never run, by 'make check') hooked into 'make bench'
# through a prerequisite, as kernels/fp8mm.mk hooks bench-fp8mm.  Knobs
# (FP8D_BENCH_SHAPES, _MODES, _THREADS, _REPS, _SKIP_F32, ...) are listed
# at the top of tests/bench_model.c.
check_PROGRAMS += tests/bench_model
tests_bench_model_SOURCES = tests/bench_model.c
tests_bench_model_CFLAGS  = $(AM_CFLAGS) $(OPENMP_CFLAGS)
tests_bench_model_LDADD   = $(ENG_LIBS) $(DEP_LIBS)
bench: bench-model
bench-model: tests/bench_model
	@echo "== tests/bench_model"; ./tests/bench_model
.PHONY: bench-model
