# quant/: FP8 formats policy, DelayedScaling, FP8Config, scale methods, measurements.
noinst_LIBRARIES += quant/libquant.a
quant_libquant_a_SOURCES = quant/quant.h quant/quant-int.h \
                           quant/qt_error.c quant/qt_recipe.c quant/qt_recipe_json.c \
                           quant/qt_config.c quant/qt_select.c quant/qt_scale.c \
                           quant/qt_observer.c quant/qt_module.c quant/qt_file.c \
                           quant/qt_measure_io.c
quant_libquant_a_CFLAGS  = $(AM_CFLAGS) $(JANSSON_CFLAGS)

# Unit tests of quant/ (values derived by hand in the test) and the
# 'fp8ctl measure merge' shell test.
if HAVE_CHECK
check_PROGRAMS += tests/check_quant
TESTS          += tests/check_quant
tests_check_quant_SOURCES = tests/check_quant.c
tests_check_quant_CFLAGS  = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS)
tests_check_quant_LDADD   = $(QT_LIBS) $(DEP_LIBS) $(CHECK_LIBS)
endif
TESTS      += tests/fp8ctl_measure.sh
EXTRA_DIST += tests/fp8ctl_measure.sh examples/fp8-config.json examples/fp8-config-gaudi.json
