# engine/: model loading, forward pass, generation.
noinst_LIBRARIES += engine/libengine.a
engine_libengine_a_SOURCES = engine/engine.h engine/engine-int.h \
                             engine/safetensors.c engine/model_config.c engine/model.c \
                             engine/rope.c engine/kvcache.c engine/forward.c \
                             engine/sampler.c engine/stop.c engine/generate.c \
                             engine/fp8-int.h engine/fp8_import.c engine/fp8_linear.c \
                             engine/fp8_mode.c engine/fp8_state.c engine/fp8_export.c \
                             engine/st_write.h engine/st_write.c
engine_libengine_a_CFLAGS  = $(AM_CFLAGS) $(OPENMP_CFLAGS) $(JANSSON_CFLAGS) $(PCRE2_CFLAGS) $(UTF8PROC_CFLAGS)

# check_engine runs in 'make check' on tests/data/models; conf_models runs
# every logits and perplexity reference of ../shared/testdata under 'make
# conformance'.  tests/tests.mk sets CONFORMANCE_TESTS with '=' after this
# file is included, so (as kernels.mk and tokenizer.mk do) conf_models
# hooks into that target through a prerequisite.
if HAVE_CHECK
check_PROGRAMS += tests/check_engine tests/conf_models
TESTS          += tests/check_engine
tests_check_engine_SOURCES = tests/check_engine.c
tests_check_engine_CFLAGS  = $(AM_CFLAGS) $(CHECK_CFLAGS) $(OPENMP_CFLAGS)
tests_check_engine_LDADD   = $(ENG_LIBS) $(DEP_LIBS) $(CHECK_LIBS)
tests_conf_models_SOURCES  = tests/conf_models.c
tests_conf_models_CFLAGS   = $(AM_CFLAGS) $(CHECK_CFLAGS) $(OPENMP_CFLAGS)
tests_conf_models_LDADD    = $(ENG_LIBS) $(DEP_LIBS) $(CHECK_LIBS)
conformance-engine: tests/conf_models
	@echo "== tests/conf_models"; $(AM_TESTS_ENVIRONMENT) ./tests/conf_models
else
conformance-engine:
	@echo "SKIP: tests/conf_models needs check (libcheck), not found by configure"
endif
conformance: conformance-engine

.PHONY: conformance-engine

# fp8ctl perplexity/generate end to end on tests/data (server/fp8ctl is
# built by 'make all', which 'make check' runs first).
TESTS      += tests/ctl_model.sh
EXTRA_DIST += tests/ctl_model.sh

# bench_engine: prefill/decode tokens/s on shakespeare-small (F32, BF16), 1
# and 2 threads; 'make bench' only.  A check program (built, never run by
# 'make check') hooked in through a prerequisite like the conformance run.
if HAVE_CHECK
check_PROGRAMS += tests/bench_engine
endif
tests_bench_engine_SOURCES = tests/bench_engine.c
tests_bench_engine_CFLAGS  = $(AM_CFLAGS) $(OPENMP_CFLAGS)
tests_bench_engine_LDADD   = $(ENG_LIBS) $(DEP_LIBS)
bench: bench-engine
bench-engine: tests/bench_engine
	@echo "== tests/bench_engine"; $(AM_TESTS_ENVIRONMENT) ./tests/bench_engine
.PHONY: bench-engine

# FP8 engine (issue 5): check_fp8engine on tests/data/fp8models (the two
# FP8 checkpoints of llama_tiny and subsets of their torch references).
if HAVE_CHECK
check_PROGRAMS += tests/check_fp8engine
TESTS          += tests/check_fp8engine
endif
tests_check_fp8engine_SOURCES = tests/check_fp8engine.c
tests_check_fp8engine_CFLAGS  = $(AM_CFLAGS) $(CHECK_CFLAGS) $(OPENMP_CFLAGS)
tests_check_fp8engine_LDADD   = $(ENG_LIBS) $(DEP_LIBS) $(CHECK_LIBS)

# scheduler (issue 6): the engine thread, its queue and requests.
engine_libengine_a_SOURCES += engine/queue.c

# 'make quality': the FP8 quality table on shakespeare-small (perplexity,
# KL and top-1 vs F32; ../shared/testdata, SKIP without it).  Not part of
# 'make check'.  QUALITY_WINDOWS=244 runs every eval window (default 20, ~3.5 min on 2 cores).
EXTRA_PROGRAMS += tests/quality_report
tests_quality_report_SOURCES = tests/quality_report.c
tests_quality_report_CFLAGS  = $(AM_CFLAGS) $(OPENMP_CFLAGS)
tests_quality_report_LDADD   = $(ENG_LIBS) $(DEP_LIBS)
QUALITY_WINDOWS ?= 20
quality: quality-fp8
quality-fp8: tests/quality_report
	@echo "== tests/quality_report"; $(AM_TESTS_ENVIRONMENT) ./tests/quality_report --windows $(QUALITY_WINDOWS)
.PHONY: quality quality-fp8

# conf_fp8models: the FP8 checkpoints against every prompt of their shared
# references, and 'fp8ctl convert' of shakespeare-small (perplexity within
# 1% of torch F32); 'make conformance' only.
check_PROGRAMS    += tests/conf_fp8models
CONFORMANCE_TESTS += tests/conf_fp8models
tests_conf_fp8models_SOURCES = tests/conf_fp8models.c
tests_conf_fp8models_CFLAGS  = $(AM_CFLAGS) $(OPENMP_CFLAGS)
tests_conf_fp8models_LDADD   = $(ENG_LIBS) $(DEP_LIBS)
