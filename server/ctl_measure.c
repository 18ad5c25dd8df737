/* ctl_measure.c: 'fp8ctl measure merge A.json B.json ... -o OUT.json':
 * INC measurement files (§4.6) merged by element-wise max, as
 * optimum-habana's unify_measurements.py does for per-rank files.  The
 * file format and the merge rules live in quant/qt_measure_io.c; this
 * file is argument handling only.  Exit: 0 ok, 1 bad input, 2 usage. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "server/fp8ctl.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fp8ctl measure merge IN.json [IN.json ...] -o OUT.json\n"
            "\n"
            "Merges INC measurement files (e.g. measure_hooks_maxabs_0_2.json and\n"
            "measure_hooks_maxabs_1_2.json) into one by the element-wise maximum of\n"
            "every input, output and weight entry; every file must list the same\n"
            "modules with the same shapes.  OUT is written atomically, LocalRank -1.\n");
}

static int merge_main(int argc, char **argv)
{
    const char *out_path = NULL;
    const char **inputs = NULL;
    qt_measure **files = NULL, *merged = NULL;
    size_t n_in = 0;
    char err[512];
    int rc, status = 1;
    bool opts = true;

    if ((inputs = calloc((size_t)argc, sizeof(*inputs))) == NULL) {
        fprintf(stderr, "fp8ctl measure merge: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts && (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "fp8ctl measure merge: %s needs a file name\n", a);
                goto usage_error;
            }
            if (out_path != NULL) {
                fprintf(stderr, "fp8ctl measure merge: -o given twice\n");
                goto usage_error;
            }
            out_path = argv[++i];
        } else if (opts && strncmp(a, "--output=", 9) == 0) {
            if (out_path != NULL) {
                fprintf(stderr, "fp8ctl measure merge: -o given twice\n");
                goto usage_error;
            }
            out_path = a + 9;
        } else if (opts && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            usage(stdout);
            free(inputs);
            return 0;
        } else if (opts && strcmp(a, "--") == 0) {
            opts = false;
        } else if (opts && a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "fp8ctl measure merge: unknown option '%s'\n", a);
            goto usage_error;
        } else {
            inputs[n_in++] = a;
        }
    }
    if (n_in == 0 || out_path == NULL || out_path[0] == '\0') {
        fprintf(stderr, "fp8ctl measure merge: %s\n",
                n_in == 0 ? "no input files" : "no output file (-o OUT.json)");
        goto usage_error;
    }

    if ((files = calloc(n_in, sizeof(*files))) == NULL) {
        fprintf(stderr, "fp8ctl measure merge: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < n_in; i++) {
        if ((rc = qt_measure_read(&files[i], inputs[i], err, sizeof(err))) < 0) {
            fprintf(stderr, "fp8ctl: %s\n", err);
            goto done;
        }
    }
    if ((rc = qt_measure_merge(&merged, (const qt_measure *const *)files, n_in, err,
                               sizeof(err))) < 0) {
        fprintf(stderr, "fp8ctl: %s\n", rc == -ENOMEM ? "out of memory" : err);
        goto done;
    }
    if ((rc = qt_measure_write(merged, out_path, err, sizeof(err))) < 0) {
        fprintf(stderr, "fp8ctl: %s\n", err);
        goto done;
    }
    printf("merged %zu file%s (%zu modules) into %s\n", n_in, n_in == 1 ? "" : "s",
           qt_measure_count(merged), out_path);
    status = 0;

done:
    for (size_t i = 0; files != NULL && i < n_in; i++)
        qt_measure_free(files[i]);
    free(files);
    qt_measure_free(merged);
    free(inputs);
    return status;

usage_error:
    usage(stderr);
    free(inputs);
    return 2;
}

int ctl_measure_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "merge") == 0)
        return merge_main(argc - 1, argv + 1);
    fprintf(stderr, "fp8ctl measure: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
