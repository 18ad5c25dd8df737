/* bm_hw.h: this machine's limits as the benchmarks measure them (read
 * bandwidth, the vdpbf16ps peak), this process's memory, and the clock and
 * median every figure goes through (bm_hw.c).  Kernel-level benchmarks
 * (tests/bench_fp8mm.c, tests/bench_codec.c) link bm_hw.c alone; it knows
 * no model.  Figures are never asserted. */
#ifndef FP8D_TESTS_BM_HW_H
#define FP8D_TESTS_BM_HW_H

#include <stddef.h>
#include <stdint.h>

double   bm_now(void);                        /* CLOCK_MONOTONIC seconds */
double   bm_median(double *v, int n);         /* sorts v */

/* ---- this machine (bm_hw.c) -------------------------------------------- */

/* A buffer of len bytes on 2 MiB boundaries (huge page hint), every page
 * touched; NULL when out of memory.  Free with free(). */
uint8_t *bm_bw_buffer(size_t len);
/* GB/s of one pass of nth OpenMP threads reading buf, each its share in
 * streams concurrent streams (4: the 'read4' bound of a GEMV,
 * perf-anchors.md 1). */
double   bm_read_once(const uint8_t *buf, size_t len, int nth, int streams);
/* Medians of 7 passes after a warm-up over a fresh buffer of mb MiB:
 * *rd1 one stream, *rd4 four. */
int      bm_measure_bw(int nth, size_t mb, double *rd1, double *rd4);
/* GFLOP/s of vdpbf16ps on registers with nth threads (the best of 12
 * short passes), or 0 when the CPU has no AVX-512 BF16. */
double   bm_peak_bf16(int nth);
/* /proc/cpuinfo's model name (or "unknown"), and the ISA that matters. */
void     bm_cpu_name(char *buf, size_t len);
/* This process's VmRSS and VmHWM (/proc/self/status), in KiB. */
int      bm_mem_kb(long *rss_kb, long *hwm_kb);

#endif
