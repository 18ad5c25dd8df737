/* check_fp8engine.c: the FP8 engine (issue 5) on committed data.
 *
 * References are independent of the code under test: the torch logits of
 * the two FP8 checkpoints (tests/data/fp8models, subsets of
 * ../shared/testdata/models/reference), plain products computed here from
 * decoded FP8 values, and values derived by hand.  Nothing is compared
 * with an earlier output of the engine itself except where the claim is
 * identity (OFF after QUANTIZE equals a fresh load; an export reloads to
 * the same logits). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"

static const char *g_data;   /* $FP8D_TEST_DATA */
static char g_tmp[256];      /* per-test scratch directory */
static char g_err[1024];

/* ---- helpers -------------------------------------------------------------- */

static eng_model *load_dir(const char *dir)
{
    eng_model *m = NULL;
    eng_model_opts o;
    eng_model_opts_default(&o);
    o.n_threads = 2;
    int rc = eng_model_load(&m, dir, &o, g_err, sizeof(g_err));
    ck_assert_msg(rc == 0, "load %s: %d %s", dir, rc, g_err);
    return m;
}

static eng_model *load_fp8model(const char *name)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/fp8models/%s", g_data, name);
    return load_dir(dir);
}

static eng_st_file *load_ref(const char *name)
{
    char path[512];
    eng_st_file *f = NULL;
    snprintf(path, sizeof(path), "%s/fp8models/%s", g_data, name);
    ck_assert_msg(eng_st_open(&f, path, g_err, sizeof(g_err)) == 0, "%s", g_err);
    return f;
}

static const eng_tensor *ref_t(const eng_st_file *f, const char *name)
{
    const eng_tensor *t = eng_st_find(f, name);
    ck_assert_msg(t != NULL, "reference tensor %s missing", name);
    return t;
}

/* All-position logits [n][V] of ids through a fresh sequence (malloc'd). */
static float *run_logits(eng_model *m, const int32_t *ids, size_t n)
{
    size_t V = (size_t)eng_model_get_config(m)->vocab_size;
    float *lg = malloc(n * V * sizeof(float));
    eng_seq *s = eng_seq_new(m, n + 1);
    eng_batch_item it = {s, ids, n, true, lg};
    ck_assert(lg != NULL && s != NULL);
    ck_assert_msg(eng_forward(m, &it, 1, g_err, sizeof(g_err)) == 0, "%s", g_err);
    eng_seq_free(s);
    return lg;
}

static int32_t *run_greedy(eng_model *m, const int32_t *ids, size_t n, size_t n_gen)
{
    eng_gen_params gp;
    int32_t *out = NULL;
    size_t n_out = 0;
    eng_stop_reason why;
    eng_gen_params_default(&gp);
    gp.max_tokens = (int)n_gen;
    ck_assert_msg(eng_generate(m, NULL, ids, n, &gp, NULL, NULL, &out, &n_out, NULL, NULL, &why,
                               g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_uint_eq(n_out, n_gen);
    return out;
}

typedef struct diff_stats {
    double max_abs;
    double frac_within;   /* share of elements within 1e-3 */
} diff_stats;

static diff_stats diff(const float *a, const float *b, size_t n)
{
    diff_stats d = {0, 0};
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d.max_abs))
            d.max_abs = e;
        ok += e <= 1e-3;
    }
    d.frac_within = (double)ok / (double)n;
    return d;
}

/* The prompts whose logits are committed (prompt3's are left out for
 * size; its greedy ids are kept). */
#define N_LOGIT_PROMPTS 3
#define N_PROMPTS 4

/* Logits of each committed prompt vs kind ("weight_only"/"static_act"). */
static void check_logits(eng_model *m, const eng_st_file *ref, const char *kind, bool tight)
{
    char name[96];
    for (int k = 0; k < N_LOGIT_PROMPTS; k++) {
        snprintf(name, sizeof(name), "prompt%d_ids", k);
        const eng_tensor *ids = ref_t(ref, name);
        snprintf(name, sizeof(name), "prompt%d_logits_%s", k, kind);
        const eng_tensor *want = ref_t(ref, name);
        float *got = run_logits(m, ids->data, ids->n_elem);
        diff_stats d = diff(got, want->data, want->n_elem);
        if (tight)
            ck_assert_msg(d.max_abs <= 1e-3, "prompt %d %s: max |diff| %g > 1e-3", k, kind,
                          d.max_abs);
        else
            ck_assert_msg(d.max_abs <= 2e-2 && d.frac_within >= 0.99,
                          "prompt %d %s: max |diff| %g (<= 2e-2), within 1e-3: %.4f (>= 0.99)",
                          k, kind, d.max_abs, d.frac_within);
        printf("  %s prompt %d: max |diff| %.3g, within 1e-3 %.4f\n", kind, k, d.max_abs,
               d.frac_within);
        free(got);
    }
}

/* Greedy ids exact; with exact_only false a divergence is accepted when
 * the reference's margin at that step is below 1e-2 (tolerances table). */
static void check_greedy(eng_model *m, const eng_st_file *ref, const char *kind, bool exact_only)
{
    char name[96];
    for (int k = 0; k < N_PROMPTS; k++) {
        snprintf(name, sizeof(name), "prompt%d_ids", k);
        const eng_tensor *ids = ref_t(ref, name);
        snprintf(name, sizeof(name), "prompt%d_greedy_ids_%s", k, kind);
        const eng_tensor *want = ref_t(ref, name);
        snprintf(name, sizeof(name), "prompt%d_greedy_margin_%s", k, kind);
        const eng_tensor *margin = ref_t(ref, name);
        int32_t *got = run_greedy(m, ids->data, ids->n_elem, want->n_elem);
        const int32_t *w = want->data;
        for (size_t i = 0; i < want->n_elem; i++)
            if (got[i] != w[i]) {
                float mg = ((const float *)margin->data)[i];
                ck_assert_msg(!exact_only && mg < 1e-2f, "prompt %d %s: greedy step %zu: %d, "
                              "want %d (margin %g)", k, kind, i, got[i], w[i], (double)mg);
                break;
            }
        free(got);
    }
}

static void make_tmp(void)
{
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/check_fp8engine.XXXXXX");
    ck_assert(mkdtemp(g_tmp) != NULL);
}

static void rm_tmp(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_tmp);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    ck_assert_msg(f != NULL, "open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = 0;
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "create %s", path);
    ck_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* Replaces the first occurrence of from by to (same length or not). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    ck_assert_msg(p != NULL, "'%s' not found", from);
    size_t a = (size_t)(p - s), n = strlen(s) - strlen(from) + strlen(to);
    char *r = malloc(n + 1);
    memcpy(r, s, a);
    strcpy(r + a, to);
    strcat(r + a, p + strlen(from));
    return r;
}

/* A model directory in g_tmp/sub from a config text and a weights file. */
static const char *make_dir(const char *sub, const char *config, const char *weights_path)
{
    static char dir[512];
    char p[600];
    snprintf(dir, sizeof(dir), "%s/%s", g_tmp, sub);
    ck_assert(mkdir(dir, 0755) == 0);
    snprintf(p, sizeof(p), "%s/config.json", dir);
    write_file(p, config, strlen(config));
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    ck_assert(symlink(weights_path, p) == 0);
    return dir;
}

/* ---- import ---------------------------------------------------------------- */

START_TEST(test_ct_weight_only)
{
    eng_model *m = load_fp8model("llama_tiny_fp8_ct");
    eng_st_file *ref = load_ref("llama_tiny_fp8_ct_ref.safetensors");
    eng_fp8_opts o;

    /* Loaded straight into QUANTIZE; weight-only = f32 activations
     * through the FP8 kernels. */
    ck_assert_int_eq(eng_fp8_mode(m), QT_MODE_QUANTIZE);
    eng_fp8_opts_default(&o);
    o.act = ENG_FP8_ACT_NONE;
    ck_assert(eng_fp8_set_opts(m, &o, g_err, sizeof(g_err)) == 0);
    check_logits(m, ref, "weight_only", true);
    check_greedy(m, ref, "weight_only", true);
    /* OFF: the dequantized high-precision weights, the same numbers. */
    ck_assert(eng_fp8_set_mode(m, QT_MODE_OFF, g_err, sizeof(g_err)) == 0);
    check_logits(m, ref, "weight_only", true);
    eng_st_close(ref);
    eng_model_free(m);
}
END_TEST

START_TEST(test_ct_static_act)
{
    eng_model *m = load_fp8model("llama_tiny_fp8_ct");
    eng_st_file *ref = load_ref("llama_tiny_fp8_ct_ref.safetensors");
    /* The checkpoint declares static input scales: W8A8 by default. */
    check_logits(m, ref, "static_act", false);
    check_greedy(m, ref, "static_act", false);
    eng_st_close(ref);
    eng_model_free(m);
}
END_TEST

START_TEST(test_block_weight_only)
{
    eng_model *m = load_fp8model("llama_tiny_fp8_block");
    eng_st_file *ref = load_ref("llama_tiny_fp8_block_ref.safetensors");
    /* Dynamic activations declared: weight-only (W8A16) by default. */
    check_logits(m, ref, "weight_only", true);
    check_greedy(m, ref, "weight_only", true);
    eng_st_close(ref);
    eng_model_free(m);
}
END_TEST

static void expect_load_fails(const char *dir, int want_rc, const char *frag1, const char *frag2)
{
    eng_model *m = NULL;
    g_err[0] = 0;
    int rc = eng_model_load(&m, dir, NULL, g_err, sizeof(g_err));
    ck_assert_msg(rc == want_rc && m == NULL, "load %s: rc %d, want %d (%s)", dir, rc, want_rc,
                  g_err);
    ck_assert_msg(strstr(g_err, frag1) != NULL, "'%s' not in: %s", frag1, g_err);
    ck_assert_msg(frag2 == NULL || strstr(g_err, frag2) != NULL, "'%s' not in: %s", frag2, g_err);
}

START_TEST(test_import_refusals)
{
    char ct[512], blk[512], p[600], wpath[600];

    snprintf(ct, sizeof(ct), "%s/fp8models/llama_tiny_fp8_ct", g_data);
    snprintf(blk, sizeof(blk), "%s/fp8models/llama_tiny_fp8_block", g_data);
    snprintf(p, sizeof(p), "%s/config.json", ct);
    char *cfg = read_file(p, NULL), *bad;
    snprintf(p, sizeof(p), "%s/config.json", blk);
    char *bcfg = read_file(p, NULL);
    char ctw[1024], blkw[1024], cwd[400] = "";
    /* symlinks need absolute targets */
    if (g_data[0] != '/')
        ck_assert(getcwd(cwd, sizeof(cwd)) != NULL);
    snprintf(ctw, sizeof(ctw), "%s%s%s/model.safetensors", cwd, cwd[0] ? "/" : "", ct);
    snprintf(blkw, sizeof(blkw), "%s%s%s/model.safetensors", cwd, cwd[0] ? "/" : "", blk);

    /* Other quantization methods are refused by name. */
    bad = replace(cfg, "\"quant_method\": \"compressed-tensors\"", "\"quant_method\": \"gptq\"");
    expect_load_fails(make_dir("gptq", bad, ctw), ENG_E_UNSUPPORTED, "gptq", "config.json");
    free(bad);
    bad = replace(cfg, "\"float-quantized\"", "\"int-quantized\"");
    expect_load_fails(make_dir("int", bad, ctw), ENG_E_UNSUPPORTED, "int-quantized", NULL);
    free(bad);
    bad = replace(bcfg, "128,\n      128", "64,\n      64");
    expect_load_fails(make_dir("blk64", bad, blkw), ENG_E_UNSUPPORTED, "weight_block_size",
                      NULL);
    free(bad);
    /* Block scales under a config that declares per-channel weights. */
    expect_load_fails(make_dir("mixed", cfg, blkw), ENG_E_FORMAT, "weight_scale_inv",
                      "per-channel");
    /* An FP8 weight whose scale is missing (renamed in the header). */
    size_t n;
    char *st = read_file(ctw, &n);
    char *hit = memmem(st, n, "layers.0.mlp.down_proj.weight_scale\"", 36);
    ck_assert(hit != NULL);
    memcpy(hit + 23, "wXight_scale", 12);
    snprintf(wpath, sizeof(wpath), "%s/noscale.safetensors", g_tmp);
    write_file(wpath, st, n);
    expect_load_fails(make_dir("noscale", cfg, wpath), ENG_E_FORMAT,
                      "model.layers.0.mlp.down_proj.weight_scale", "is FP8");
    free(st);
    free(cfg);
    free(bcfg);
}
END_TEST

/* ---- suite --------------------------------------------------------------- */

static Suite *fp8engine_suite(void)
{
    Suite *s = suite_create("fp8engine");
    TCase *tc = tcase_create("import");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, make_tmp, rm_tmp);
    tcase_add_test(tc, test_ct_weight_only);
    tcase_add_test(tc, test_ct_static_act);
    tcase_add_test(tc, test_block_weight_only);
    tcase_add_test(tc, test_import_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    char probe[512];
    SRunner *sr;
    int nf;

    g_data = getenv("FP8D_TEST_DATA");
    if (g_data == NULL)
        g_data = "tests/data";
    snprintf(probe, sizeof(probe), "%s/fp8models/llama_tiny_fp8_ct/config.json", g_data);
    if (access(probe, R_OK) != 0) {
        printf("SKIP: %s not found\n", probe);
        return 0;
    }
    kn_init(NULL);
    kn_log_set_level(KN_LOG_WARN);
    sr = srunner_create(fp8engine_suite());
    srunner_run_all(sr, CK_NORMAL);
    nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    return nf == 0 ? 0 : 1;
}
