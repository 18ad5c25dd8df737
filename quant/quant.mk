# quant/: FP8 formats policy, DelayedScaling, FP8Config, scale methods, measurements.
noinst_LIBRARIES += quant/libquant.a
quant_libquant_a_SOURCES = quant/quant.h
quant_libquant_a_CFLAGS  = $(AM_CFLAGS) $(JANSSON_CFLAGS)
