/* fuzz_util.h: helpers shared by the fuzz targets of tests/fuzz (each
 * target is one LLVMFuzzerTestOneInput, linked either with libFuzzer or
 * with replay_main.c).  Nothing here allocates on behalf of the caller
 * except fuzz_strndup. */
#ifndef FP8D_FUZZ_UTIL_H
#define FP8D_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The libFuzzer entry points every target defines (Initialize optional). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The source tree: $FP8D_TOP_SRCDIR (set by 'make check'), else the
 * directory configure saw (FUZZ_TOP_SRCDIR). */
const char *fuzz_srcdir(void);

/* snprintf of "<srcdir>/<rel>" into buf; aborts when it does not fit. */
const char *fuzz_path(char *buf, size_t len, const char *rel);

/* A NUL-terminated malloc'd copy of data[0..size) (aborts when out of
 * memory: a harness failure, not a finding). */
char *fuzz_strndup(const uint8_t *data, size_t size);

/* Writes data to a memory file (memfd) and puts its "/proc/self/fd/N" name
 * in path.  Returns the fd (the caller closes it); aborts on failure. */
int fuzz_memfd(const uint8_t *data, size_t size, char *path, size_t pathlen);

/* Writes data to dir/name, replacing it; aborts on failure. */
void fuzz_write_file(const char *dir, const char *name, const void *data, size_t size);

/* A fresh temporary directory (removed with its files at exit). */
const char *fuzz_tmpdir(void);

/* An invariant of the code under test: prints what broke and aborts, so
 * libFuzzer records the input and the replay fails. */
#define FUZZ_CHECK(cond, ...)                                           \
    do {                                                                \
        if (!(cond))                                                    \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);          \
    } while (0)

__attribute__((noreturn, format(printf, 4, 5)))
void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...);

#endif
