/* replay_main.c: main() for the replay build of a fuzz target.  Feeds
 * every file of each directory (or each file) named on the command line to
 * LLVMFuzzerTestOneInput, in name order; with no arguments, the target's
 * committed corpus, tests/fuzz/corpus/FUZZ_NAME.  A crash, a sanitizer
 * report or a failed FUZZ_CHECK ends the run with the input's name on
 * stderr; an empty corpus is a failure too (a replay of nothing proves
 * nothing).  'make check' runs one replay program per target. */
#include "config.h"

#include "tests/fuzz/fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Defined by the targets that need one-time setup. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int read_file(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;

    if (f == NULL)
        return -errno;
    for (;;) {
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap = cap ? cap * 2 : 65536);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        return -EIO;
    }
    fclose(f);
    *data = buf;
    *size = n;
    return 0;
}

/* Runs one file; returns 0, or -errno when it cannot be read. */
static int replay_file(const char *path)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int rc = read_file(path, &data, &size);

    if (rc < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(-rc));
        return rc;
    }
    /* Named before the run, so a crash report says which input did it. */
    if (getenv("FUZZ_REPLAY_VERBOSE") != NULL)
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int skip_dot(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* Runs every file of dir (or dir itself when it is a file); counts them. */
static int replay_path(const char *path, size_t *n_run)
{
    struct dirent **names;
    struct stat st;
    int n, rc = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        if ((rc = replay_file(path)) == 0)
            (*n_run)++;
        return rc;
    }
    if ((n = scandir(path, &names, skip_dot, alphasort)) < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    for (int i = 0; i < n; i++) {
        char file[4096];
        if (rc == 0 && (size_t)snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name)
                           < sizeof(file) && (rc = replay_file(file)) == 0)
            (*n_run)++;
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    char corpus[4096];
    size_t n_run = 0;
    int rc = 0;

    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    if (argc < 2) {
        fuzz_path(corpus, sizeof(corpus), "tests/fuzz/corpus/" FUZZ_NAME);
        rc = replay_path(corpus, &n_run);
    }
    for (int i = 1; i < argc && rc == 0; i++)
        rc = replay_path(argv[i], &n_run);
    if (rc == 0 && n_run == 0) {
        fprintf(stderr, "replay " FUZZ_NAME ": no inputs found\n");
        rc = -ENOENT;
    }
    printf("replay " FUZZ_NAME ": %zu inputs, %s\n", n_run, rc == 0 ? "no failure" : "FAILED");
    return rc == 0 ? 0 : 1;
}
