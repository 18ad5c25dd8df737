# engine/: model loading, forward pass, generation.
noinst_LIBRARIES += engine/libengine.a
engine_libengine_a_SOURCES = engine/engine.h engine/engine-int.h \
                             engine/safetensors.c engine/model_config.c engine/model.c \
                             engine/rope.c engine/kvcache.c engine/forward.c \
                             engine/sampler.c engine/stop.c engine/generate.c
engine_libengine_a_CFLAGS  = $(AM_CFLAGS) $(OPENMP_CFLAGS) $(JANSSON_CFLAGS) $(PCRE2_CFLAGS) $(UTF8PROC_CFLAGS)

if HAVE_CHECK
check_PROGRAMS += tests/check_engine tests/conf_models
TESTS          += tests/check_engine
CONFORMANCE_TESTS += tests/conf_models
tests_check_engine_SOURCES = tests/check_engine.c
tests_check_engine_CFLAGS  = $(AM_CFLAGS) $(CHECK_CFLAGS) $(OPENMP_CFLAGS)
tests_check_engine_LDADD   = $(ENG_LIBS) $(DEP_LIBS) $(CHECK_LIBS)
tests_conf_models_SOURCES  = tests/conf_models.c
tests_conf_models_CFLAGS   = $(AM_CFLAGS) $(CHECK_CFLAGS) $(OPENMP_CFLAGS)
tests_conf_models_LDADD    = $(ENG_LIBS) $(DEP_LIBS) $(CHECK_LIBS)
endif
