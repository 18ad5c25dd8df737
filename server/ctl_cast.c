/* ctl_cast.c: fp8ctl cast: raw little-endian f32/bf16/f16 on stdin to FP8
 * bytes on stdout, or FP8 bytes to f32 with --decode, through the active
 * kernel variant (FP8D_KERNELS=ref forces the reference).  Streams in
 * fixed chunks, so input of any size works in constant memory; on a
 * trailing partial element everything before it has been written and the
 * exit status is 1. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "server/fp8ctl.h"

enum { CHUNK_ELEMS = 1 << 16 };

typedef enum { FROM_F32, FROM_BF16, FROM_F16 } cast_from;

typedef struct cast_opts {
    kn_fp8_format fmt;
    int           have_fmt;
    unsigned      flags;        /* KN_FP8_SATURATE unless --no-saturate; KN_FP8_DIVIDE */
    float         scale;
    cast_from     from;
    int           decode;
    int           no_saturate;  /* given explicitly, to reject it with --decode */
    int           from_given;
} cast_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fp8ctl cast --format e4m3|e5m2 [--no-saturate] [--scale S] [--divide]\n"
            "                   [--from f32|bf16|f16]  < raw input > fp8 bytes\n"
            "       fp8ctl cast --decode --format e4m3|e5m2 [--scale S]  < fp8 bytes > raw f32\n"
            "\n"
            "Encodes raw little-endian values (default f32) to one FP8 byte each:\n"
            "round to nearest even, subnormals kept, saturating by default (overflow\n"
            "and +-inf become +-max; NaN stays NaN).\n"
            "  --no-saturate  overflow becomes NaN (e4m3) or +-inf (e5m2), as torch's cast\n"
            "  --scale S      encode fp8(x * S) (the product rounded to f32 first);\n"
            "                 with --decode, output decode(b) * S\n"
            "  --divide       encode fp8(x / S) instead (INC's divisor convention)\n"
            "  --decode       FP8 bytes to little-endian f32\n"
            "Exit status: 0 ok, 1 bad input or I/O error, 2 usage error.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "fp8ctl cast: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(fp8ctl cast --help for usage)\n");
    return 2;
}

/* Splits "--name=value" or "--name value"; returns the value or NULL
 * when it is missing.  *i advances past a separate value. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t len = strlen(name);
    if (strncmp(argv[*i], name, len) == 0 && argv[*i][len] == '=')
        return argv[*i] + len + 1;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int is_opt(const char *arg, const char *name)
{
    size_t len = strlen(name);
    return strncmp(arg, name, len) == 0 && (arg[len] == '\0' || arg[len] == '=');
}

static int parse_args(int argc, char **argv, cast_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->scale = 1.0f;
    o->flags = KN_FP8_SATURATE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (is_opt(a, "--format")) {
            if ((v = opt_value(argc, argv, &i, "--format")) == NULL)
                return usage_error("--format needs a value (e4m3 or e5m2)");
            if (strcmp(v, "e4m3") == 0 || strcmp(v, "e4m3fn") == 0)
                o->fmt = KN_FP8_E4M3;
            else if (strcmp(v, "e5m2") == 0)
                o->fmt = KN_FP8_E5M2;
            else
                return usage_error("--format: unknown format '%s' (e4m3 or e5m2)", v);
            o->have_fmt = 1;
        } else if (is_opt(a, "--scale")) {
            char *end;
            if ((v = opt_value(argc, argv, &i, "--scale")) == NULL)
                return usage_error("--scale needs a value");
            errno = 0;
            o->scale = strtof(v, &end);
            if (end == v || *end != '\0' || errno == ERANGE || !isfinite(o->scale) ||
                o->scale <= 0.0f)
                return usage_error("--scale: '%s' is not a positive finite f32 number", v);
        } else if (is_opt(a, "--from")) {
            if ((v = opt_value(argc, argv, &i, "--from")) == NULL)
                return usage_error("--from needs a value (f32, bf16 or f16)");
            if (strcmp(v, "f32") == 0)
                o->from = FROM_F32;
            else if (strcmp(v, "bf16") == 0)
                o->from = FROM_BF16;
            else if (strcmp(v, "f16") == 0)
                o->from = FROM_F16;
            else
                return usage_error("--from: unknown input type '%s' (f32, bf16 or f16)", v);
            o->from_given = 1;
        } else if (strcmp(a, "--no-saturate") == 0) {
            o->flags &= ~(unsigned)KN_FP8_SATURATE;
            o->no_saturate = 1;
        } else if (strcmp(a, "--divide") == 0) {
            o->flags |= KN_FP8_DIVIDE;
        } else if (strcmp(a, "--decode") == 0) {
            o->decode = 1;
        } else {
            return usage_error("unknown argument '%s'", a);
        }
    }
    if (!o->have_fmt)
        return usage_error("--format e4m3|e5m2 is required");
    if (o->decode && (o->from_given || o->no_saturate || (o->flags & KN_FP8_DIVIDE)))
        return usage_error("--decode takes only --format and --scale");
    return 0;
}

/* Reads up to cap bytes, retrying short reads, so that only the last
 * call of a stream returns less than cap. */
static size_t read_full(void *buf, size_t cap, int *io_error)
{
    size_t got = 0;
    while (got < cap) {
        size_t r = fread((char *)buf + got, 1, cap - got, stdin);
        if (r == 0) {
            *io_error = ferror(stdin) != 0;
            break;
        }
        got += r;
    }
    return got;
}

static int run(const cast_opts *o)
{
    const kn_ops *ops = kn_active();
    size_t in_size = o->decode ? 1 : o->from == FROM_F32 ? 4 : 2;
    size_t out_size = o->decode ? 4 : 1;
    const char *type = o->decode ? "fp8" : o->from == FROM_F32 ? "f32" : o->from == FROM_BF16 ? "bf16" : "f16";
    unsigned char *in = malloc(CHUNK_ELEMS * 4), *out = malloc(CHUNK_ELEMS * 4);
    unsigned long long total = 0;
    int rc = 0, io_error = 0;

    if (in == NULL || out == NULL) {
        fprintf(stderr, "fp8ctl cast: out of memory\n");
        rc = 1;
        goto done;
    }
    for (;;) {
        size_t got = read_full(in, CHUNK_ELEMS * in_size, &io_error), n = got / in_size;
        if (io_error) {
            fprintf(stderr, "fp8ctl cast: stdin: read error: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        if (o->decode)
            ops->fp8_to_f32((float *)out, in, n, o->fmt, o->scale);
        else if (o->from == FROM_F32)
            ops->f32_to_fp8(out, (const float *)in, n, o->fmt, o->scale, o->flags);
        else if (o->from == FROM_BF16)
            ops->bf16_to_fp8(out, (const uint16_t *)in, n, o->fmt, o->scale, o->flags);
        else
            ops->f16_to_fp8(out, (const uint16_t *)in, n, o->fmt, o->scale, o->flags);
        if (n > 0 && fwrite(out, out_size, n, stdout) != n) {
            fprintf(stderr, "fp8ctl cast: stdout: write error: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        total += got;
        if (got % in_size != 0) {
            fprintf(stderr,
                    "fp8ctl cast: stdin: %llu bytes is not a multiple of %zu (the size of one "
                    "%s value); the last %zu bytes were not converted\n",
                    total, in_size, type, got % in_size);
            rc = 1;
            break;
        }
        if (got < CHUNK_ELEMS * in_size)
            break;
    }
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "fp8ctl cast: stdout: write error: %s\n", strerror(errno));
        rc = 1;
    }
done:
    free(in);
    free(out);
    return rc;
}

int ctl_cast_main(int argc, char **argv)
{
    cast_opts o;
    int rc;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    if ((rc = parse_args(argc, argv, &o)) != 0)
        return rc;
    return run(&o);
}
