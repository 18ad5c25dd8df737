# tests/server.mk: the server/ and api/ tests.  Unit suites (check) plus
# integration scripts that start the real server/fp8d on 127.0.0.1 with an
# ephemeral port and talk to it with curl.
if HAVE_CHECK
check_PROGRAMS += tests/check_api tests/check_server tests/check_sched
TESTS          += tests/check_api tests/check_server tests/check_sched
tests_check_sched_SOURCES  = tests/check_sched.c
tests_check_sched_CFLAGS   = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_sched_LDADD    = $(ENG_LIBS) $(DEP_LIBS) $(CHECK_LIBS)
tests_check_api_SOURCES    = tests/check_api.c
tests_check_api_CFLAGS     = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS)
tests_check_api_LDADD      = $(API_LIBS) $(DEP_LIBS) $(CHECK_LIBS)
tests_check_server_SOURCES = tests/check_server.c
tests_check_server_CFLAGS  = $(AM_CFLAGS) $(CHECK_CFLAGS) $(MHD_CFLAGS) $(UV_CFLAGS) \
                             $(JANSSON_CFLAGS)
tests_check_server_LDADD   = $(SRV_LIBS) $(DEP_LIBS) $(MHD_LIBS) $(UV_LIBS) $(CHECK_LIBS)
endif

SRV_IT = tests/integration/http.sh tests/integration/config.sh \
         tests/integration/signals.sh tests/integration/socket_activation.sh \
         tests/integration/systemd_units.sh tests/integration/openai.sh \
         tests/integration/limits.sh tests/integration/auth.sh tests/integration/calib.sh
TESTS      += $(SRV_IT)
EXTRA_DIST += $(SRV_IT) tests/integration/lib.sh

# The official OpenAI Node SDK against the daemon (npm installs the
# "openai" package once into a cache directory outside the trees; skipped
# without node/npm or registry access).
TESTS      += tests/openai/sdk.sh
EXTRA_DIST += tests/openai/sdk.sh tests/openai/sdk.mjs
