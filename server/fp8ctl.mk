# fp8ctl: the offline command-line tool installed beside fp8d.  Each
# subcommand lives in its own server/ctl_*.c file.
bin_PROGRAMS += server/fp8ctl
server_fp8ctl_SOURCES = server/fp8ctl.h server/fp8ctl.c server/ctl_cast.c \
                        server/ctl_measure.c server/ctl_model.c
server_fp8ctl_SOURCES += server/ctl_convert.c
server_fp8ctl_CFLAGS  = $(AM_CFLAGS) $(JANSSON_CFLAGS)
server_fp8ctl_LDADD   = $(ENG_LIBS) $(DEP_LIBS)
