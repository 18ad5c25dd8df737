# server/: the fp8d process (libuv loop, libmicrohttpd, config, systemd notify).
bin_PROGRAMS += server/fp8d
server_fp8d_SOURCES = server/main.c
server_fp8d_CFLAGS  = $(AM_CFLAGS) $(MHD_CFLAGS) $(UV_CFLAGS) $(JANSSON_CFLAGS)
server_fp8d_LDADD   = $(API_LIBS) $(DEP_LIBS) $(MHD_LIBS) $(UV_LIBS)
