# engine/: model loading, forward pass, generation.
noinst_LIBRARIES += engine/libengine.a
engine_libengine_a_SOURCES = engine/engine.h
engine_libengine_a_CFLAGS  = $(AM_CFLAGS) $(OPENMP_CFLAGS) $(JANSSON_CFLAGS) $(PCRE2_CFLAGS) $(UTF8PROC_CFLAGS)
