# engine/: tokenizer and chat templates (sources join libengine.a).
engine_libengine_a_SOURCES += engine/tokenizer.h engine/tok-int.h \
                              engine/tok_map.c engine/tok_utf8.c engine/tok_json.c \
                              engine/tok_load.c engine/tok_config.c engine/tok_bpe.c \
                              engine/tok_encode.c engine/tok_decode.c engine/chat_template.c

# check_tokenizer runs in 'make check' on tests/data/tokenizer; conf_tokenizer
# runs the whole-file encodings of ../shared/testdata under 'make
# conformance'.  tests/tests.mk sets CONFORMANCE_TESTS with '=' after this
# file is included, so (as kernels.mk does) conf_tokenizer hooks into that
# target through a prerequisite instead of appending to the variable.
if HAVE_CHECK
check_PROGRAMS += tests/check_tokenizer tests/conf_tokenizer
TESTS          += tests/check_tokenizer
tests_check_tokenizer_SOURCES = tests/check_tokenizer.c
tests_check_tokenizer_CFLAGS  = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS)
tests_check_tokenizer_LDADD   = $(ENG_LIBS) $(DEP_LIBS) $(CHECK_LIBS)
tests_conf_tokenizer_SOURCES  = tests/conf_tokenizer.c
tests_conf_tokenizer_CFLAGS   = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS)
tests_conf_tokenizer_LDADD    = $(ENG_LIBS) $(DEP_LIBS) $(CHECK_LIBS)
conformance-tokenizer: tests/conf_tokenizer
	@echo "== tests/conf_tokenizer"; $(AM_TESTS_ENVIRONMENT) ./tests/conf_tokenizer
else
conformance-tokenizer:
	@echo "SKIP: tests/conf_tokenizer needs check (libcheck), not found by configure"
endif
conformance: conformance-tokenizer

.PHONY: conformance-tokenizer
