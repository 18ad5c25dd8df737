/* kn_base.h: the few zero-dependency helpers every layer uses.
 *
 * The log hook (the server installs the one sink; lower layers write
 * through kn_log), the always-on assert, the error-buffer formatter and
 * 64-byte aligned allocation for AVX-512.  Nothing here knows about
 * models, files or HTTP.  Thread: any, except kn_log_set (main, at start).
 */
#ifndef FP8D_KN_BASE_H
#define FP8D_KN_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Syslog numbers, so a journald sink can prefix <3>, <4>, <6>, <7>. */
enum kn_log_level { KN_LOG_ERR = 3, KN_LOG_WARN = 4, KN_LOG_INFO = 6, KN_LOG_DEBUG = 7 };

/* module: static string ("engine"); msg: one line without '\n', valid
 * only during the call. */
typedef void (*kn_log_fn)(int level, const char *module, const char *msg, void *ud);

/* Installs the sink and the most verbose level it wants.  fn NULL restores
 * the default sink (stderr, "level module: msg").  Thread: main, before
 * other threads start (the level may be changed later: it is atomic). */
void kn_log_set(kn_log_fn fn, void *ud, int max_level);
void kn_log_set_level(int max_level);
bool kn_log_enabled(int level);
void kn_log(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes a formatted one-sentence error into err[0..errlen) (NUL
 * terminated, truncated); err may be NULL.  Returns nothing: callers
 * return their own code. */
void kn_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Always on: for broken invariants that would corrupt memory. */
#define KN_ASSERT(x) \
    ((x) ? (void)0 : kn_assert_fail(#x, __FILE__, __LINE__, __func__))
_Noreturn void kn_assert_fail(const char *expr, const char *file, int line,
                              const char *func);

/* 64-byte aligned allocation; size rounded up internally.  Returns NULL
 * on failure.  Free with kn_free (accepts NULL). */
void *kn_alloc(size_t size);
void *kn_calloc(size_t n, size_t size);
void  kn_free(void *p);

/* Static message for a negative errno-style code; codes this layer does
 * not own fall through to strerror(-rc). */
const char *kn_strerror(int rc);

#endif
