/* ctl_model.c: 'fp8ctl perplexity' and 'fp8ctl generate': run a model
 * directory without the server.
 *
 * perplexity follows the windows of ../shared/testdata/README.md (the
 * llama.cpp-style anchor): the whole text is encoded without BOS, cut into
 * consecutive non-overlapping windows of ctx-1 tokens (the remainder is
 * dropped); each window is fed as BOS + its tokens and all ctx-1 tokens are
 * scored, the first from BOS alone; perplexity = exp(total NLL / scored).
 * A tokenizer without BOS gets windows of ctx tokens with ctx-1 scored.
 * Exit: 0 ok, 1 failure, 2 usage. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "server/fp8ctl.h"

typedef struct ctl_opts {
    const char *model, *text, *prompt;
    long        ctx, threads, batch, max_windows;
    const char *kernels;
    eng_gen_params gen;
    const char *stop[8];
    bool        no_bos;
} ctl_opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int num_arg(const char *cmd, const char *name, const char *v, double lo, double hi,
                   double *out)
{
    char *end;
    double x;
    if (v == NULL) {
        fprintf(stderr, "fp8ctl %s: %s needs a value\n", cmd, name);
        return -1;
    }
    errno = 0;
    x = strtod(v, &end);
    if (errno != 0 || *end != '\0' || end == v || !(x >= lo && x <= hi)) {
        fprintf(stderr, "fp8ctl %s: %s '%s' is not a number in [%g, %g]\n", cmd, name, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* Parses the options both subcommands share; returns 0, 1 (--help), -1. */
static int parse_opts(const char *cmd, int argc, char **argv, ctl_opts *o, const char *usage)
{
    eng_gen_params_default(&o->gen);
    o->ctx = 512;
    o->batch = 4;
    o->gen.stop = o->stop;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        int used = 1;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 1;
        } else if (strcmp(a, "--model") == 0 && v) {
            o->model = v;
        } else if (strcmp(a, "--text") == 0 && v) {
            o->text = v;
        } else if (strcmp(a, "--prompt") == 0 && v) {
            o->prompt = v;
        } else if (strcmp(a, "--kernels") == 0 && v) {
            o->kernels = v;
        } else if (strcmp(a, "--stop") == 0 && v) {
            if (o->gen.n_stop == sizeof(o->stop) / sizeof(o->stop[0])) {
                fprintf(stderr, "fp8ctl %s: at most 8 --stop strings\n", cmd);
                return -1;
            }
            o->stop[o->gen.n_stop++] = v;
        } else if (strcmp(a, "--no-bos") == 0) {
            o->no_bos = true;
            used = 0;
        } else if (strcmp(a, "--ignore-eos") == 0) {
            o->gen.ignore_eos = true;
            used = 0;
        } else if (strcmp(a, "--ctx") == 0) {
            if (num_arg(cmd, a, v, 2, 1 << 20, &x) < 0) return -1;
            o->ctx = (long)x;
        } else if (strcmp(a, "--threads") == 0) {
            if (num_arg(cmd, a, v, 1, 1024, &x) < 0) return -1;
            o->threads = (long)x;
        } else if (strcmp(a, "--batch") == 0) {
            if (num_arg(cmd, a, v, 1, 64, &x) < 0) return -1;
            o->batch = (long)x;
        } else if (strcmp(a, "--max-windows") == 0) {
            if (num_arg(cmd, a, v, 1, 1e9, &x) < 0) return -1;
            o->max_windows = (long)x;
        } else if (strcmp(a, "--max-tokens") == 0) {
            if (num_arg(cmd, a, v, 1, 1 << 20, &x) < 0) return -1;
            o->gen.max_tokens = (int)x;
        } else if (strcmp(a, "--temperature") == 0) {
            if (num_arg(cmd, a, v, 0, 100, &x) < 0) return -1;
            o->gen.sample.temperature = (float)x;
        } else if (strcmp(a, "--top-k") == 0) {
            if (num_arg(cmd, a, v, 0, 1 << 24, &x) < 0) return -1;
            o->gen.sample.top_k = (int)x;
        } else if (strcmp(a, "--top-p") == 0) {
            if (num_arg(cmd, a, v, 1e-9, 1, &x) < 0) return -1;
            o->gen.sample.top_p = (float)x;
        } else if (strcmp(a, "--min-p") == 0) {
            if (num_arg(cmd, a, v, 0, 1, &x) < 0) return -1;
            o->gen.sample.min_p = (float)x;
        } else if (strcmp(a, "--seed") == 0) {
            if (num_arg(cmd, a, v, 0, 1.8e19, &x) < 0) return -1;
            o->gen.sample.seed = (uint64_t)x;
        } else {
            fprintf(stderr, "fp8ctl %s: unknown or incomplete option '%s'\n%s", cmd, a, usage);
            return -1;
        }
        i += used;
    }
    if (o->model == NULL) {
        fprintf(stderr, "fp8ctl %s: --model DIR is required\n%s", cmd, usage);
        return -1;
    }
    return 0;
}

static int load_both(const char *cmd, const ctl_opts *o, eng_model **m, eng_tokenizer **tok)
{
    eng_model_opts mo;
    char err[512] = "";
    int rc;

    eng_model_opts_default(&mo);
    mo.n_threads = (int)o->threads;
    mo.kernels = o->kernels;
    if ((rc = eng_model_load(m, o->model, &mo, err, sizeof(err))) < 0) {
        fprintf(stderr, "fp8ctl %s: %s\n", cmd, err[0] ? err : eng_strerror(rc));
        return rc;
    }
    if ((rc = eng_tokenizer_load(tok, o->model, err, sizeof(err))) < 0) {
        fprintf(stderr, "fp8ctl %s: %s\n", cmd, err[0] ? err : eng_strerror(rc));
        eng_model_free(*m);
        *m = NULL;
        return rc;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
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
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

/* Sum over t of -log softmax(row t)[ids[t+1]], in double. */
static double window_nll(const float *lg, const int32_t *ids, size_t n, int V)
{
    double nll = 0;
    for (size_t t = 0; t + 1 < n; t++) {
        const float *row = lg + t * (size_t)V;
        double mx = row[0], s = 0;
        for (int v = 1; v < V; v++)
            mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++)
            s += exp((double)row[v] - mx);
        nll += mx + log(s) - row[ids[t + 1]];
    }
    return nll;
}

static const char g_ppl_usage[] =
    "usage: fp8ctl perplexity --model DIR --text FILE [--ctx N] [--threads T]\n"
    "                         [--batch B] [--max-windows W] [--kernels ref|avx512]\n"
    "Windows of ctx-1 tokens, each fed after BOS, all scored (testdata README);\n"
    "B windows per forward call (default 4); ctx defaults to 512.\n";

/* Runs the windows; fills *nll_sum, *n_scored; scored ids go to scored (for bytes). */
static int ppl_run(eng_model *m, const int32_t *ids, size_t n_win, size_t span, int32_t bos,
                   const ctl_opts *o, double *nll_sum)
{
    size_t ctx = span + (bos >= 0), B = (size_t)o->batch;
    int V = eng_model_get_config(m)->vocab_size;
    float *lg = malloc(B * ctx * (size_t)V * sizeof(float));
    int32_t *win = malloc(B * ctx * sizeof(int32_t));
    eng_seq *seqs[64] = {0};
    char err[512] = "";
    int rc = 0;

    for (size_t b = 0; b < B; b++)
        if ((seqs[b] = eng_seq_new(m, ctx)) == NULL)
            rc = -ENOMEM;
    if (lg == NULL || win == NULL || rc < 0) {
        fprintf(stderr, "fp8ctl perplexity: out of memory (or --ctx beyond the model's context)\n");
        rc = -ENOMEM;
        goto out;
    }
    *nll_sum = 0;
    for (size_t w0 = 0; w0 < n_win; w0 += B) {
        eng_batch_item it[64];
        size_t nb = n_win - w0 < B ? n_win - w0 : B;
        for (size_t b = 0; b < nb; b++) {
            int32_t *dst = win + b * ctx;
            if (bos >= 0)
                *dst++ = bos;
            memcpy(dst, ids + (w0 + b) * span, span * sizeof(int32_t));
            eng_seq_truncate(seqs[b], 0);
            it[b] = (eng_batch_item){seqs[b], win + b * ctx, ctx, true, lg + b * ctx * V};
        }
        if ((rc = eng_forward(m, it, nb, err, sizeof(err))) < 0) {
            fprintf(stderr, "fp8ctl perplexity: %s\n", err);
            goto out;
        }
        for (size_t b = 0; b < nb; b++)
            *nll_sum += window_nll(it[b].logits, it[b].tokens, ctx, V);
    }
out:
    for (size_t b = 0; b < B; b++)
        eng_seq_free(seqs[b]);
    free(win);
    free(lg);
    return rc;
}

int ctl_perplexity_main(int argc, char **argv)
{
    ctl_opts o = {0};
    eng_model *m = NULL;
    eng_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0, len = 0, text_bytes = 0;
    char *text = NULL, *scored = NULL;
    int rc = parse_opts("perplexity", argc, argv, &o, g_ppl_usage), status = 1;
    double nll = 0, t0, dt;

    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (o.text == NULL) {
        fprintf(stderr, "fp8ctl perplexity: --text FILE is required\n%s", g_ppl_usage);
        return 2;
    }
    if ((text = read_file(o.text, &len)) == NULL) {
        fprintf(stderr, "fp8ctl perplexity: %s: %s\n", o.text, strerror(errno ? errno : EIO));
        return 1;
    }
    if (load_both("perplexity", &o, &m, &tok) < 0)
        goto out;
    if ((size_t)o.ctx > (size_t)eng_model_get_config(m)->max_pos) {
        fprintf(stderr, "fp8ctl perplexity: --ctx %ld exceeds the model's context of %d\n",
                o.ctx, eng_model_get_config(m)->max_pos);
        goto out;
    }
    if (eng_tokenizer_encode(tok, text, len, false, &ids, &n_ids) < 0) {
        fprintf(stderr, "fp8ctl perplexity: %s: could not tokenize (not UTF-8?)\n", o.text);
        goto out;
    }
    int32_t bos = o.no_bos ? -1 : eng_tokenizer_bos(tok);
    size_t span = (size_t)o.ctx - (bos >= 0), n_win = n_ids / span, scored_per = (size_t)o.ctx - 1;
    if (o.max_windows > 0 && (size_t)o.max_windows < n_win)
        n_win = (size_t)o.max_windows;
    if (n_win == 0) {
        fprintf(stderr, "fp8ctl perplexity: %s has %zu tokens, fewer than one window of %zu\n",
                o.text, n_ids, span);
        goto out;
    }
    t0 = now_s();
    if (ppl_run(m, ids, n_win, span, bos, &o, &nll) < 0)
        goto out;
    dt = now_s() - t0;
    /* bytes of the scored text: every window token when BOS leads, else all but the first */
    for (size_t w = 0; w < n_win; w++) {
        size_t first = w * span + (bos >= 0 ? 0 : 1), cnt = scored_per, bl = 0;
        if (eng_tokenizer_decode(tok, ids + first, cnt, false, &scored, &bl) == 0)
            text_bytes += bl;
        free(scored);
        scored = NULL;
    }
    double n_scored = (double)n_win * scored_per;
    printf("perplexity %.4f  (nll/token %.6f, %.4f bits/byte)\n", exp(nll / n_scored),
           nll / n_scored, nll / log(2.0) / (double)text_bytes);
    printf("windows %zu x %zu scored tokens (ctx %ld, %s), %zu of %zu tokens used, %zu bytes\n",
           n_win, scored_per, o.ctx, bos >= 0 ? "BOS first" : "no BOS", n_win * span, n_ids,
           text_bytes);
    printf("time %.2f s, %.1f tokens/s\n", dt, n_win * (double)o.ctx / dt);
    status = 0;
out:
    free(ids);
    free(text);
    eng_tokenizer_free(tok);
    eng_model_free(m);
    return status;
}

static const char g_gen_usage[] =
    "usage: fp8ctl generate --model DIR --prompt TEXT [--max-tokens N] [--temperature T]\n"
    "                       [--top-k K] [--top-p P] [--min-p M] [--seed S] [--stop STR]...\n"
    "                       [--threads T] [--no-bos] [--ignore-eos] [--kernels ref|avx512]\n"
    "Greedy unless --temperature > 0.  Streams the text to stdout; statistics to stderr.\n";

typedef struct gen_stats {
    double t0, t_first;
    size_t n;
} gen_stats;

static int on_token(int32_t id, const char *text, size_t len, void *ud)
{
    gen_stats *g = ud;
    (void)id;
    if (g->n++ == 0)
        g->t_first = now_s();
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int ctl_generate_main(int argc, char **argv)
{
    ctl_opts o = {0};
    eng_model *m = NULL;
    eng_tokenizer *tok = NULL;
    int32_t *ids = NULL, *out = NULL;
    size_t n_ids = 0, n_out = 0, tl = 0;
    char *text = NULL, err[512] = "";
    eng_stop_reason why;
    gen_stats st = {0};
    int rc = parse_opts("generate", argc, argv, &o, g_gen_usage), status = 1;
    static const char *const reasons[] = {"length", "eos", "stop string", "callback"};

    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (o.prompt == NULL) {
        fprintf(stderr, "fp8ctl generate: --prompt TEXT is required\n%s", g_gen_usage);
        return 2;
    }
    if (load_both("generate", &o, &m, &tok) < 0)
        goto out;
    if (eng_tokenizer_encode(tok, o.prompt, strlen(o.prompt), !o.no_bos, &ids, &n_ids) < 0 ||
        n_ids == 0) {
        fprintf(stderr, "fp8ctl generate: the prompt could not be tokenized (or is empty)\n");
        goto out;
    }
    fputs(o.prompt, stdout);
    st.t0 = now_s();
    rc = eng_generate(m, tok, ids, n_ids, &o.gen, on_token, &st, &out, &n_out, &text, &tl, &why,
                      err, sizeof(err));
    double t1 = now_s();
    if (rc < 0) {
        fprintf(stderr, "\nfp8ctl generate: %s\n", err[0] ? err : eng_strerror(rc));
        goto out;
    }
    printf("\n");
    fprintf(stderr, "prompt %zu tokens in %.3f s (%.1f tokens/s incl. first sample); generated "
            "%zu tokens, %.1f tokens/s after the first; stop: %s\n", n_ids, st.t_first - st.t0,
            n_ids / (st.t_first - st.t0), n_out,
            n_out > 1 ? (n_out - 1) / (t1 - st.t_first) : 0.0, reasons[why]);
    status = 0;
out:
    free(ids);
    free(out);
    free(text);
    eng_tokenizer_free(tok);
    eng_model_free(m);
    return status;
}
