/* kn_cpu.c: CPU feature detection for the kernel variants.
 * __builtin_cpu_supports also checks that the OS saves the AVX-512
 * register state (XGETBV), which a bare CPUID test would miss. */
#include "config.h"

#include <cpuid.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kn_codec-int.h"

/* With F16C below, must list every -m flag of KN_AVX512_FLAGS in
 * configure.ac: the compiler is free to use any of them in kn_avx512.c.
 * The names are GCC's spellings for __builtin_cpu_supports. */
#define KN_AVX512_FEATURES(X) \
    X("avx512f") X("avx512bw") X("avx512vl") X("avx512dq") \
    X("avx512bf16") X("avx512vbmi") X("fma")

/* F16C through CPUID leaf 1 (ECX bit 29): clang before 15 (the fuzzing
 * build uses clang 14) does not know "f16c" in __builtin_cpu_supports. */
static bool has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}

bool kn__cpu_has_avx512(void)
{
    bool ok = true;
    __builtin_cpu_init();
#define KN_HAS_(name) ok = ok && __builtin_cpu_supports(name);
    KN_AVX512_FEATURES(KN_HAS_)
#undef KN_HAS_
    return ok && has_f16c();
}

const char *kn__cpu_avx512_report(void)
{
    static char buf[160];
    size_t len = 0;

    __builtin_cpu_init();
#define KN_REPORT_(name)                                                    \
    if (len < sizeof(buf))                                                  \
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s%c",     \
                                len ? " " : "", name,                       \
                                __builtin_cpu_supports(name) ? '+' : '-');
    KN_AVX512_FEATURES(KN_REPORT_)
#undef KN_REPORT_
    if (len < sizeof(buf))
        snprintf(buf + len, sizeof(buf) - len, " f16c%c", has_f16c() ? '+' : '-');
    return buf;
}
