/* ctl_convert.c: 'fp8ctl convert': a high-precision model directory to an
 * FP8 one, offline: MEASURE over a calibration text, QUANTIZE from the
 * measurements in memory, export (engine/fp8_export.c).
 *
 * The calibration text is encoded without BOS and cut into consecutive
 * windows of ctx-1 tokens, each run after BOS as its own sequence (the
 * perplexity windows of fp8ctl perplexity).  Without --config the FP8Config
 * is INC's default with lm_head blocklisted (model-formats.md §3.8: never
 * quantize the head); weight scales default to the compressed-tensors
 * minmax rule per output channel (max|W|/448) and static input scales
 * amax/448 (the testdata recipe).
 * Exit: 0 ok, 1 failure, 2 usage. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "server/fp8ctl.h"

static const char g_usage[] =
    "usage: fp8ctl convert --model DIR --calib FILE --out DIR [--config fp8.json]\n"
    "                      [--recipe recipe.json] [--scheme minmax-channel|minmax-tensor|config]\n"
    "                      [--act static|dynamic|none] [--kv-fp8] [--qk-fp8] [--block] [--ctx N]\n"
    "                      [--max-seqs N] [--threads T]\n"
    "MEASURE on the calibration text (windows of ctx-1 tokens after BOS, default ctx 256),\n"
    "QUANTIZE from memory, write a compressed-tensors float-quantized directory (--block:\n"
    "block-wise fp8 128x128) with fp8d_state.json.  --scheme config uses the FP8Config's\n"
    "scale_method; --recipe uses DelayedScaling scales from the amax history.\n";

typedef struct conv_opts {
    const char  *model, *calib, *out, *config, *recipe;
    eng_fp8_opts fo;
    bool         block;
    long         ctx, max_seqs, threads;
} conv_opts;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
            if (len)
                *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

static int long_arg(const char *name, const char *v, long lo, long hi, long *out)
{
    char *end;
    long x;
    errno = 0;
    x = v ? strtol(v, &end, 10) : 0;
    if (v == NULL || errno != 0 || *end != '\0' || x < lo || x > hi) {
        fprintf(stderr, "fp8ctl convert: %s '%s' is not an integer in [%ld, %ld]\n", name,
                v ? v : "", lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse(int argc, char **argv, conv_opts *o)
{
    eng_fp8_opts_default(&o->fo);
    o->fo.wscale = ENG_FP8_W_MINMAX_CHANNEL;
    o->ctx = 256;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 1;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(g_usage, stdout);
            return 1;
        } else if (strcmp(a, "--model") == 0 && v) {
            o->model = v;
        } else if (strcmp(a, "--calib") == 0 && v) {
            o->calib = v;
        } else if (strcmp(a, "--out") == 0 && v) {
            o->out = v;
        } else if (strcmp(a, "--config") == 0 && v) {
            o->config = v;
        } else if (strcmp(a, "--recipe") == 0 && v) {
            o->recipe = v;
        } else if (strcmp(a, "--scheme") == 0 && v) {
            if (strcmp(v, "minmax-channel") == 0)
                o->fo.wscale = ENG_FP8_W_MINMAX_CHANNEL;
            else if (strcmp(v, "minmax-tensor") == 0)
                o->fo.wscale = ENG_FP8_W_MINMAX_TENSOR;
            else if (strcmp(v, "config") == 0)
                o->fo.wscale = ENG_FP8_W_CONFIG;
            else {
                fprintf(stderr, "fp8ctl convert: --scheme '%s' is not minmax-channel, "
                        "minmax-tensor or config\n", v);
                return -1;
            }
        } else if (strcmp(a, "--act") == 0 && v) {
            if (strcmp(v, "static") == 0)
                o->fo.act = ENG_FP8_ACT_STATIC;
            else if (strcmp(v, "dynamic") == 0)
                o->fo.act = ENG_FP8_ACT_DYNAMIC;
            else if (strcmp(v, "none") == 0)
                o->fo.act = ENG_FP8_ACT_NONE;
            else {
                fprintf(stderr, "fp8ctl convert: --act '%s' is not static, dynamic or none\n", v);
                return -1;
            }
        } else if (strcmp(a, "--kv-fp8") == 0) {
            o->fo.kv_fp8 = true;
            used = 0;
        } else if (strcmp(a, "--qk-fp8") == 0) {
            o->fo.qk_fp8 = true;
            used = 0;
        } else if (strcmp(a, "--block") == 0) {
            o->block = true;
            used = 0;
        } else if (strcmp(a, "--ctx") == 0) {
            if (long_arg(a, v, 2, 1 << 20, &o->ctx) < 0)
                return -1;
        } else if (strcmp(a, "--max-seqs") == 0) {
            if (long_arg(a, v, 1, 1L << 30, &o->max_seqs) < 0)
                return -1;
        } else if (strcmp(a, "--threads") == 0) {
            if (long_arg(a, v, 1, 1024, &o->threads) < 0)
                return -1;
        } else {
            fprintf(stderr, "fp8ctl convert: unknown or incomplete option '%s'\n%s", a, g_usage);
            return -1;
        }
        i += used;
    }
    if (o->model == NULL || o->calib == NULL || o->out == NULL) {
        fprintf(stderr, "fp8ctl convert: --model, --calib and --out are required\n%s", g_usage);
        return -1;
    }
    return 0;
}

/* The FP8Config: the file given, or the defaults with lm_head blocked. */
static int make_config(const conv_opts *o, qt_config **c, char *err, size_t errlen)
{
    char *text;
    int rc;
    if (o->config == NULL)
        return qt_config_parse(c, "{\"blocklist\": {\"names\": [\"lm_head\"], \"types\": []}}",
                               "(convert default)", err, errlen);
    if ((text = slurp(o->config, NULL)) == NULL) {
        snprintf(err, errlen, "%s: %s", o->config, strerror(errno ? errno : EIO));
        return -EIO;
    }
    rc = qt_config_parse(c, text, o->config, err, errlen);
    free(text);
    return rc;
}

static int calibrate(eng_model *m, eng_tokenizer *tok, const conv_opts *o, char *err,
                     size_t errlen)
{
    size_t len = 0, n_ids = 0;
    char *text = slurp(o->calib, &len);
    int32_t *ids = NULL, bos;
    int rc;

    if (text == NULL) {
        snprintf(err, errlen, "%s: %s", o->calib, strerror(errno ? errno : EIO));
        return -EIO;
    }
    if (eng_tokenizer_encode(tok, text, len, false, &ids, &n_ids) < 0) {
        snprintf(err, errlen, "%s: could not tokenize (not UTF-8?)", o->calib);
        free(text);
        return -EINVAL;
    }
    free(text);
    bos = eng_tokenizer_bos(tok);
    size_t span = (size_t)o->ctx - (bos >= 0), n_win = n_ids / span;
    if (o->max_seqs > 0 && (size_t)o->max_seqs < n_win)
        n_win = (size_t)o->max_seqs;
    if (n_win == 0) {
        snprintf(err, errlen, "%s: %zu tokens, fewer than one window of %zu", o->calib, n_ids,
                 span);
        free(ids);
        return -EINVAL;
    }
    int32_t *win = malloc((size_t)o->ctx * sizeof(int32_t));
    rc = win ? 0 : -ENOMEM;
    for (size_t w = 0; rc == 0 && w < n_win; w++) {
        const int32_t *seq = win;
        size_t sl = (size_t)o->ctx;
        if (bos >= 0)
            win[0] = bos;
        memcpy(win + (bos >= 0), ids + w * span, span * sizeof(int32_t));
        rc = eng_fp8_calibrate(m, &seq, &sl, 1, err, errlen);
    }
    if (rc == 0)
        fprintf(stderr, "fp8ctl convert: calibrated on %zu sequences of %ld tokens from %s\n",
                n_win, o->ctx, o->calib);
    free(win);
    free(ids);
    return rc;
}

int ctl_convert_main(int argc, char **argv)
{
    conv_opts o = {0};
    eng_model_opts mo;
    eng_model *m = NULL;
    eng_tokenizer *tok = NULL;
    qt_config *c = NULL;
    qt_recipe r;
    char err[1024] = "", *rtext = NULL;
    int rc = parse(argc, argv, &o), status = 1;

    if (rc != 0)
        return rc > 0 ? 0 : 2;
    eng_model_opts_default(&mo);
    mo.n_threads = (int)o.threads;
    if ((rc = make_config(&o, &c, err, sizeof(err))) < 0)
        goto out;
    if (o.recipe != NULL) {
        if ((rtext = slurp(o.recipe, NULL)) == NULL) {
            snprintf(err, sizeof(err), "%s: %s", o.recipe, strerror(errno ? errno : EIO));
            goto out;
        }
        if ((rc = qt_recipe_parse(&r, rtext, err, sizeof(err))) < 0)
            goto out;
        o.fo.wscale = ENG_FP8_W_CONFIG;   /* the history decides */
    }
    if ((rc = eng_model_load(&m, o.model, &mo, err, sizeof(err))) < 0 ||
        (rc = eng_tokenizer_load(&tok, o.model, err, sizeof(err))) < 0 ||
        (rc = eng_fp8_prepare(m, c, o.recipe ? &r : NULL, &o.fo, err, sizeof(err))) < 0 ||
        (rc = eng_fp8_set_mode(m, QT_MODE_MEASURE, err, sizeof(err))) < 0 ||
        (rc = calibrate(m, tok, &o, err, sizeof(err))) < 0 ||
        (rc = eng_fp8_set_mode(m, QT_MODE_QUANTIZE, err, sizeof(err))) < 0 ||
        (rc = eng_fp8_export(m, o.model, o.out, o.block, err, sizeof(err))) < 0)
        goto out;
    fprintf(stderr, "fp8ctl convert: wrote %s\n", o.out);
    status = 0;
out:
    if (status != 0)
        fprintf(stderr, "fp8ctl convert: %s\n", err[0] ? err : eng_strerror(rc));
    free(rtext);
    qt_config_free(c);
    eng_tokenizer_free(tok);
    eng_model_free(m);
    return status;
}
