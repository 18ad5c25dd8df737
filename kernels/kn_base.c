/* kn_base.c: log hook, error formatting, assert and aligned allocation.
 * The log level is atomic so SIGHUP can change it while workers log. */
#include "config.h"

#include "kernels/kn_base.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kn_log_fn g_log_fn;
static void *g_log_ud;
static _Atomic int g_log_level = KN_LOG_INFO;

void kn_log_set(kn_log_fn fn, void *ud, int max_level)
{
    g_log_fn = fn;
    g_log_ud = ud;
    atomic_store(&g_log_level, max_level);
}

void kn_log_set_level(int max_level)
{
    atomic_store(&g_log_level, max_level);
}

bool kn_log_enabled(int level)
{
    return level <= atomic_load_explicit(&g_log_level, memory_order_relaxed);
}

static const char *level_name(int level)
{
    switch (level) {
    case KN_LOG_ERR:  return "error";
    case KN_LOG_WARN: return "warn";
    case KN_LOG_INFO: return "info";
    default:          return "debug";
    }
}

void kn_log(int level, const char *module, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!kn_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (g_log_fn != NULL)
        g_log_fn(level, module, msg, g_log_ud);
    else
        fprintf(stderr, "%s %s: %s\n", level_name(level), module, msg);
}

void kn_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

_Noreturn void kn_assert_fail(const char *expr, const char *file, int line,
                              const char *func)
{
    fprintf(stderr, "fp8d: assertion failed: %s (%s:%d, %s)\n", expr, file, line, func);
    abort();
}

void *kn_alloc(size_t size)
{
    void *p = NULL;

    /* Round up so AVX-512 loops may read whole 64-byte lines of the tail. */
    if (size > SIZE_MAX - 63)
        return NULL;
    size = (size + 63) & ~(size_t)63;
    if (size == 0)
        size = 64;
    if (posix_memalign(&p, 64, size) != 0)
        return NULL;
    return p;
}

void *kn_calloc(size_t n, size_t size)
{
    void *p;

    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    p = kn_alloc(n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

void kn_free(void *p)
{
    free(p);
}

const char *kn_strerror(int rc)
{
    if (rc >= 0)
        return "success";
    return strerror(-rc);
}
