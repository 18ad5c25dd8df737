# api/: the HTTP/JSON contract without sockets (no libmicrohttpd, no libuv).
noinst_LIBRARIES += api/libapi.a
api_libapi_a_SOURCES = api/api.h api/api-int.h api/api_service.c api/api_route.c \
                       api/api_error.c api/api_health.c api/api_metrics.c \
                       api/api-infer.h api/api_infer.c api/api_call.c api/api_calib.c
api_libapi_a_CFLAGS  = $(AM_CFLAGS) $(JANSSON_CFLAGS)
