/* fp8ctl.c: offline tool beside fp8d: FP8 casts, measurement files,
 * perplexity and generation without the server.  Only dispatch lives
 * here; each subcommand is in its own ctl_*.c file.
 * Unlike fp8d, fp8ctl calls the engine directly: it is a one-shot
 * process with no HTTP and no engine thread. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "server/fp8ctl.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} g_cmds[] = {
    {"cast",       ctl_cast_main,       "cast raw f32/bf16/f16 on stdin to FP8 bytes on stdout (or --decode)"},
    {"measure",    ctl_measure_main,    "measurement files: 'measure merge A.json B.json ... -o OUT.json'"},
    {"perplexity", ctl_perplexity_main, "perplexity of a model on a text file (--model DIR --text FILE --ctx N)"},
    {"generate",   ctl_generate_main,   "generate text from a prompt (--model DIR --prompt TEXT)"},
    {"convert",    ctl_convert_main,    "FP8 directory from a model: calibrate, quantize, export (--model --calib --out)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: fp8ctl COMMAND [ARGS...]\n       fp8ctl COMMAND --help\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(g_cmds) / sizeof(g_cmds[0]); i++)
        fprintf(f, "  %-11s %s\n", g_cmds[i].name, g_cmds[i].help);
}

int main(int argc, char **argv)
{
    int rc;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("fp8ctl %s\n", PACKAGE_VERSION);
        return 0;
    }
    /* A one-shot tool: only warnings and errors unless asked, so the
     * output of a subcommand is not mixed with start-up chatter. */
    kn_log_set(NULL, NULL, getenv("FP8CTL_VERBOSE") != NULL ? KN_LOG_DEBUG : KN_LOG_WARN);
    if ((rc = kn_init(NULL)) < 0) {
        fprintf(stderr, "fp8ctl: kernels: %s\n", kn_strerror(rc));
        return 1;
    }
    for (size_t i = 0; i < sizeof(g_cmds) / sizeof(g_cmds[0]); i++)
        if (strcmp(argv[1], g_cmds[i].name) == 0)
            return g_cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "fp8ctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
