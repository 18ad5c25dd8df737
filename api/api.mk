# api/: the HTTP/JSON contract without sockets.
noinst_LIBRARIES += api/libapi.a
api_libapi_a_SOURCES = api/api.h
api_libapi_a_CFLAGS  = $(AM_CFLAGS) $(JANSSON_CFLAGS)
