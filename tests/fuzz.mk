# tests/fuzz.mk: fuzz targets of every parser (tests/fuzz/README.md).
# Each tests/fuzz/fuzz_<name>.c is one LLVMFuzzerTestOneInput, built twice:
#   tests/fuzz/replay_<name>  with replay_main.c, by any compiler; 'make check'
#                            runs it over its corpus tests/fuzz/corpus/<name>/
#   tests/fuzz/fuzz_<name>    with libFuzzer: 'make fuzz' in a build configured
#                            with --enable-fuzzing CC=clang (ASan + UBSan)
FUZZ_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) -DFUZZ_TOP_SRCDIR='"$(abs_top_srcdir)"'
FUZZ_COMMON = tests/fuzz/fuzz_util.h tests/fuzz/fuzz_util.c
FUZZ_TOK    = tests/fuzz/fuzz_tok.h tests/fuzz/fuzz_tok.c
FUZZ_NAMES  = safetensors model_config tokenizer_load tokenizer_encode chat qt_config qt_measure srv_config api
FUZZ_REPLAYS = tests/fuzz/replay_safetensors tests/fuzz/replay_model_config tests/fuzz/replay_tokenizer_load tests/fuzz/replay_tokenizer_encode tests/fuzz/replay_chat tests/fuzz/replay_qt_config tests/fuzz/replay_qt_measure tests/fuzz/replay_srv_config tests/fuzz/replay_api
FUZZ_BINS    = tests/fuzz/fuzz_safetensors tests/fuzz/fuzz_model_config tests/fuzz/fuzz_tokenizer_load tests/fuzz/fuzz_tokenizer_encode tests/fuzz/fuzz_chat tests/fuzz/fuzz_qt_config tests/fuzz/fuzz_qt_measure tests/fuzz/fuzz_srv_config tests/fuzz/fuzz_api

check_PROGRAMS += $(FUZZ_REPLAYS)
TESTS          += $(FUZZ_REPLAYS)
EXTRA_DIST     += tests/fuzz/README.md tests/fuzz/corpus

tests_fuzz_replay_safetensors_SOURCES = tests/fuzz/fuzz_safetensors.c $(FUZZ_COMMON) tests/fuzz/replay_main.c
tests_fuzz_replay_safetensors_CFLAGS  = $(FUZZ_CFLAGS) -DFUZZ_NAME='"safetensors"'
tests_fuzz_replay_safetensors_LDADD   = $(ENG_LIBS) $(DEP_LIBS)

tests_fuzz_replay_model_config_SOURCES = tests/fuzz/fuzz_model_config.c $(FUZZ_COMMON) tests/fuzz/replay_main.c
tests_fuzz_replay_model_config_CFLAGS  = $(FUZZ_CFLAGS) -DFUZZ_NAME='"model_config"'
tests_fuzz_replay_model_config_LDADD   = $(ENG_LIBS) $(DEP_LIBS)

tests_fuzz_replay_tokenizer_load_SOURCES = tests/fuzz/fuzz_tokenizer_load.c $(FUZZ_COMMON) $(FUZZ_TOK) tests/fuzz/replay_main.c
tests_fuzz_replay_tokenizer_load_CFLAGS  = $(FUZZ_CFLAGS) -DFUZZ_NAME='"tokenizer_load"'
tests_fuzz_replay_tokenizer_load_LDADD   = $(ENG_LIBS) $(DEP_LIBS)

tests_fuzz_replay_tokenizer_encode_SOURCES = tests/fuzz/fuzz_tokenizer_encode.c $(FUZZ_COMMON) $(FUZZ_TOK) tests/fuzz/replay_main.c
tests_fuzz_replay_tokenizer_encode_CFLAGS  = $(FUZZ_CFLAGS) -DFUZZ_NAME='"tokenizer_encode"'
tests_fuzz_replay_tokenizer_encode_LDADD   = $(ENG_LIBS) $(DEP_LIBS)

tests_fuzz_replay_chat_SOURCES = tests/fuzz/fuzz_chat.c $(FUZZ_COMMON) $(FUZZ_TOK) tests/fuzz/replay_main.c
tests_fuzz_replay_chat_CFLAGS  = $(FUZZ_CFLAGS) -DFUZZ_NAME='"chat"'
tests_fuzz_replay_chat_LDADD   = $(ENG_LIBS) $(DEP_LIBS)

tests_fuzz_replay_qt_config_SOURCES = tests/fuzz/fuzz_qt_config.c $(FUZZ_COMMON) tests/fuzz/replay_main.c
tests_fuzz_replay_qt_config_CFLAGS  = $(FUZZ_CFLAGS) -DFUZZ_NAME='"qt_config"'
tests_fuzz_replay_qt_config_LDADD   = $(QT_LIBS) $(DEP_LIBS)

tests_fuzz_replay_qt_measure_SOURCES = tests/fuzz/fuzz_qt_measure.c $(FUZZ_COMMON) tests/fuzz/replay_main.c
tests_fuzz_replay_qt_measure_CFLAGS  = $(FUZZ_CFLAGS) -DFUZZ_NAME='"qt_measure"'
tests_fuzz_replay_qt_measure_LDADD   = $(QT_LIBS) $(DEP_LIBS)

tests_fuzz_replay_srv_config_SOURCES = tests/fuzz/fuzz_srv_config.c $(FUZZ_COMMON) tests/fuzz/replay_main.c
tests_fuzz_replay_srv_config_CFLAGS  = $(FUZZ_CFLAGS) $(MHD_CFLAGS) $(UV_CFLAGS) -DFUZZ_NAME='"srv_config"'
tests_fuzz_replay_srv_config_LDADD   = $(SRV_LIBS) $(DEP_LIBS) $(MHD_LIBS) $(UV_LIBS)

tests_fuzz_replay_api_SOURCES = tests/fuzz/fuzz_api.c $(FUZZ_COMMON) tests/fuzz/replay_main.c
tests_fuzz_replay_api_CFLAGS  = $(FUZZ_CFLAGS) -DFUZZ_NAME='"api"'
tests_fuzz_replay_api_LDADD   = $(API_LIBS) $(DEP_LIBS)

if FUZZING
EXTRA_PROGRAMS += $(FUZZ_BINS)
CLEANFILES     += $(FUZZ_BINS)

tests_fuzz_fuzz_safetensors_SOURCES = tests/fuzz/fuzz_safetensors.c $(FUZZ_COMMON)
tests_fuzz_fuzz_safetensors_CFLAGS  = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_safetensors_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_safetensors_LDADD   = $(ENG_LIBS) $(DEP_LIBS)

tests_fuzz_fuzz_model_config_SOURCES = tests/fuzz/fuzz_model_config.c $(FUZZ_COMMON)
tests_fuzz_fuzz_model_config_CFLAGS  = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_model_config_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_model_config_LDADD   = $(ENG_LIBS) $(DEP_LIBS)

tests_fuzz_fuzz_tokenizer_load_SOURCES = tests/fuzz/fuzz_tokenizer_load.c $(FUZZ_COMMON) $(FUZZ_TOK)
tests_fuzz_fuzz_tokenizer_load_CFLAGS  = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_tokenizer_load_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_tokenizer_load_LDADD   = $(ENG_LIBS) $(DEP_LIBS)

tests_fuzz_fuzz_tokenizer_encode_SOURCES = tests/fuzz/fuzz_tokenizer_encode.c $(FUZZ_COMMON) $(FUZZ_TOK)
tests_fuzz_fuzz_tokenizer_encode_CFLAGS  = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_tokenizer_encode_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_tokenizer_encode_LDADD   = $(ENG_LIBS) $(DEP_LIBS)

tests_fuzz_fuzz_chat_SOURCES = tests/fuzz/fuzz_chat.c $(FUZZ_COMMON) $(FUZZ_TOK)
tests_fuzz_fuzz_chat_CFLAGS  = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_chat_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_chat_LDADD   = $(ENG_LIBS) $(DEP_LIBS)

tests_fuzz_fuzz_qt_config_SOURCES = tests/fuzz/fuzz_qt_config.c $(FUZZ_COMMON)
tests_fuzz_fuzz_qt_config_CFLAGS  = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_qt_config_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_qt_config_LDADD   = $(QT_LIBS) $(DEP_LIBS)

tests_fuzz_fuzz_qt_measure_SOURCES = tests/fuzz/fuzz_qt_measure.c $(FUZZ_COMMON)
tests_fuzz_fuzz_qt_measure_CFLAGS  = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_qt_measure_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_qt_measure_LDADD   = $(QT_LIBS) $(DEP_LIBS)

tests_fuzz_fuzz_srv_config_SOURCES = tests/fuzz/fuzz_srv_config.c $(FUZZ_COMMON)
tests_fuzz_fuzz_srv_config_CFLAGS  = $(FUZZ_CFLAGS) $(MHD_CFLAGS) $(UV_CFLAGS)
tests_fuzz_fuzz_srv_config_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_srv_config_LDADD   = $(SRV_LIBS) $(DEP_LIBS) $(MHD_LIBS) $(UV_LIBS)

tests_fuzz_fuzz_api_SOURCES = tests/fuzz/fuzz_api.c $(FUZZ_COMMON)
tests_fuzz_fuzz_api_CFLAGS  = $(FUZZ_CFLAGS)
tests_fuzz_fuzz_api_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_api_LDADD   = $(API_LIBS) $(DEP_LIBS)

fuzz: $(FUZZ_BINS)
else
fuzz:
	@echo "make fuzz: configure with --enable-fuzzing CC=clang (tests/fuzz/README.md)"; exit 1
endif
.PHONY: fuzz
