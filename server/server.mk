# server/: the fp8d process (libuv loop, libmicrohttpd, config, systemd
# notify), plus what 'make install' puts beside it: the systemd units, a
# default config, the --help text and the bundled model.

# Everything but main.c is a library so tests/check_server links the same code.
noinst_LIBRARIES += server/libsrv.a
server_libsrv_a_SOURCES = server/server.h server/srv_config.c server/srv_log.c \
                          server/srv_systemd.c server/srv_http.c server/srv_loop.c
server_libsrv_a_CFLAGS  = $(AM_CFLAGS) $(MHD_CFLAGS) $(UV_CFLAGS) $(JANSSON_CFLAGS)
SRV_LIBS = server/libsrv.a $(API_LIBS)

bin_PROGRAMS += server/fp8d
server_fp8d_SOURCES = server/main.c
server_fp8d_CFLAGS  = $(AM_CFLAGS) $(MHD_CFLAGS) $(UV_CFLAGS) $(JANSSON_CFLAGS)
server_fp8d_LDADD   = $(SRV_LIBS) $(DEP_LIBS) $(MHD_LIBS) $(UV_LIBS)

# Units: install paths are substituted by make, not configure (at configure
# time @bindir@ still holds a literal ${exec_prefix}).
systemdsystemunit_DATA = systemd/fp8d.service systemd/fp8d@.service
dist_systemdsystemunit_DATA = systemd/fp8d.socket
SRV_SUBST = sed -e 's|@bindir[@]|$(bindir)|g' -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
                -e 's|@docdir[@]|$(docdir)|g'
systemd/fp8d.service: $(srcdir)/systemd/fp8d.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) systemd && \
	$(SRV_SUBST) $(srcdir)/systemd/fp8d.service.in > $@.tmp && mv $@.tmp $@
systemd/fp8d@.service: $(srcdir)/systemd/fp8d@.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) systemd && \
	$(SRV_SUBST) $(srcdir)/systemd/fp8d@.service.in > $@.tmp && mv $@.tmp $@

# The default config: examples/fp8d.json with the model path of this prefix.
server/fp8d.json: $(srcdir)/examples/fp8d.json Makefile
	$(AM_V_GEN)$(MKDIR_P) server && \
	sed -e 's|/usr/local/share/fp8d|$(pkgdatadir)|g' $(srcdir)/examples/fp8d.json > $@.tmp && \
	mv $@.tmp $@

# The --help text stands in for a man page.
fp8dhelpdir = $(docdir)
fp8dhelp_DATA = server/fp8d-help.txt
server/fp8d-help.txt: server/fp8d$(EXEEXT)
	$(AM_V_GEN)./server/fp8d$(EXEEXT) --help | sed -e 's|^Usage: [^ ]*|Usage: fp8d|' > $@

# The bundled model, so a fresh install serves something.
fp8dmodeldir = $(pkgdatadir)/models/shakespeare-tiny-bf16
dist_fp8dmodel_DATA = examples/models/shakespeare-tiny-bf16/config.json \
                      examples/models/shakespeare-tiny-bf16/generation_config.json \
                      examples/models/shakespeare-tiny-bf16/model.safetensors \
                      examples/models/shakespeare-tiny-bf16/tokenizer.json \
                      examples/models/shakespeare-tiny-bf16/tokenizer_config.json
fp8dmodelsdir = $(pkgdatadir)/models
dist_fp8dmodels_DATA = examples/models/PROVENANCE.md

# The config is installed only when absent: an operator's edits survive a
# reinstall; uninstall removes it only while it is still the default.
noinst_DATA = server/fp8d.json
install-data-local: server/fp8d.json
	$(MKDIR_P) '$(DESTDIR)$(sysconfdir)/fp8d'
	@if test -f '$(DESTDIR)$(sysconfdir)/fp8d/fp8d.json'; then \
	    echo "keeping existing $(DESTDIR)$(sysconfdir)/fp8d/fp8d.json"; \
	else \
	    echo " $(INSTALL_DATA) server/fp8d.json '$(DESTDIR)$(sysconfdir)/fp8d/fp8d.json'"; \
	    $(INSTALL_DATA) server/fp8d.json '$(DESTDIR)$(sysconfdir)/fp8d/fp8d.json'; \
	fi
uninstall-local:
	@if cmp -s server/fp8d.json '$(DESTDIR)$(sysconfdir)/fp8d/fp8d.json'; then \
	    rm -f '$(DESTDIR)$(sysconfdir)/fp8d/fp8d.json'; \
	fi

CLEANFILES += systemd/fp8d.service systemd/fp8d@.service server/fp8d.json \
              server/fp8d-help.txt
EXTRA_DIST += systemd/fp8d.service.in systemd/fp8d@.service.in examples/fp8d.json \
              examples/health.sh examples/metrics.sh examples/completions.sh \
              examples/chat.sh examples/models.sh examples/errors.sh examples/calibrate.sh
