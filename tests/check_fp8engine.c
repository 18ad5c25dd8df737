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
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/fp8-int.h"   /* tests only: the FP8 weights held in memory */

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

/* Linears holding a packed high-precision copy; with fp8_only, only
 * those that also hold FP8 weights (engine-int.h: never both in QUANTIZE). */
static int count_packed(const eng_model *m, bool fp8_only)
{
    int n = 0;
    for (size_t i = 0; i < m->n_linears; i++) {
        const eng_fp8lin *fl = m->linears[i]->fp8;
        n += m->linears[i]->packed != NULL && (!fp8_only || (fl != NULL && fl->w8 != NULL));
    }
    return n;
}

/* Linears holding FP8 weights. */
static int count_fp8(const eng_model *m)
{
    int n = 0;
    for (size_t i = 0; i < m->n_linears; i++) {
        const eng_fp8lin *fl = m->linears[i]->fp8;
        n += fl != NULL && fl->w8 != NULL;
    }
    return n;
}

/* A private copy of a model directory (config.json and the weights) in
 * g_tmp/sub, for tests that change the weights file under a loaded model. */
static const char *copy_model(const char *src, const char *sub)
{
    static char dir[512];
    char p[700];
    size_t n;
    snprintf(dir, sizeof(dir), "%s/%s", g_tmp, sub);
    ck_assert(mkdir(dir, 0755) == 0);
    const char *names[2] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s", src, names[i]);
        char *buf = read_file(p, &n);
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        write_file(p, buf, n);
        free(buf);
    }
    return dir;
}

/* Changes the file in place: one byte at off rewritten (flipped) or, with
 * off < 0, the file cut to half its size.  The mtime is set 100 s ahead
 * because file times tick in jiffies: a write within the same tick as the
 * load would keep the mtime the model saw. */
static void change_in_place(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    struct stat st;
    unsigned char b;
    ck_assert(fd >= 0 && fstat(fd, &st) == 0);
    if (off < 0) {
        ck_assert(ftruncate(fd, st.st_size / 2) == 0);
    } else {
        ck_assert(pread(fd, &b, 1, off) == 1);
        b ^= 0x40;
        ck_assert(pwrite(fd, &b, 1, off) == 1);
    }
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    ts[1].tv_sec += 100;
    ck_assert(futimens(fd, ts) == 0);
    close(fd);
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

/* fbgemm_fp8 (per-row weight_scale [N,1], dynamic activations): the ct
 * checkpoint's tensors under an fbgemm config load weight-only, which is
 * the torch weight-only reference. */
START_TEST(test_fbgemm_config_weight_only)
{
    char ct[512], p[700], w[1100], cwd[400] = "";
    snprintf(ct, sizeof(ct), "%s/fp8models/llama_tiny_fp8_ct", g_data);
    snprintf(p, sizeof(p), "%s/config.json", ct);
    char *cfg = read_file(p, NULL);
    char *a = strstr(cfg, "\"quantization_config\""), *b = strstr(cfg, "\"rms_norm_eps\"");
    ck_assert(a != NULL && b != NULL && a < b);
    char *fb = malloc(strlen(cfg) + 256);
    memcpy(fb, cfg, (size_t)(a - cfg));
    sprintf(fb + (a - cfg), "\"quantization_config\": {\"quant_method\": \"fbgemm_fp8\", "
            "\"activation_scale_ub\": 1200.0, \"modules_to_not_convert\": [\"lm_head\"]},\n  %s", b);
    if (g_data[0] != '/')
        ck_assert(getcwd(cwd, sizeof(cwd)) != NULL);
    snprintf(w, sizeof(w), "%s%s%s/model.safetensors", cwd, cwd[0] ? "/" : "", ct);
    eng_model *m = load_dir(make_dir("fbgemm", fb, w));
    eng_st_file *ref = load_ref("llama_tiny_fp8_ct_ref.safetensors");
    ck_assert_int_eq(eng_fp8_mode(m), QT_MODE_QUANTIZE);
    check_logits(m, ref, "weight_only", true);
    eng_st_close(ref);
    eng_model_free(m);
    free(fb);
    free(cfg);
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

/* ---- a plain reference forward of llama_tiny, written here ---------------
 * f32 values, double dot products, straight from model-formats.md §2.3;
 * each of the 14 layer Linears optionally replaced by its FP8 form built
 * here from hand-derived scales: W_q = decode(fp8(W / s_w)) * s_w, inputs
 * x_q = decode(fp8(x / s_in)) * s_in (static), per-token s = amax / F
 * (dynamic), or x (weight-only); k and v optionally rounded through E4M3. */

#define NL 2          /* llama_tiny: layers */
#define DIM 256
#define HID 384
#define NH 8
#define NKV 4
#define HS 32
#define VOCAB 1024
#define QD (NH * HS)
#define KVD (NKV * HS)

static const char *const k_lin_names[7] = {"self_attn.q_proj", "self_attn.k_proj",
                                           "self_attn.v_proj", "self_attn.o_proj",
                                           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
static const int k_lin_out[7] = {QD, KVD, KVD, DIM, HID, HID, DIM};
static const int k_lin_in[7] = {DIM, DIM, DIM, QD, DIM, DIM, HID};

typedef struct nf_model {
    float *embed, *lm_head, *norm;
    float *attn_norm[NL], *ffn_norm[NL];
    float *w[NL][7];
} nf_model;

typedef struct nf_quant {
    float *wq[NL][7];        /* dequantized FP8 weights, NULL = high precision */
    float in_s[NL][7];       /* > 0 static, < 0 per-token dynamic, 0 weight-only */
    kn_fp8_format fmt;
    float k_s[NL], v_s[NL];  /* > 0: E4M3 KV cache */
    float qk_q[NL], qk_k[NL]; /* > 0: q and k of q.k^T rounded through fmt (matmul_qk) */
} nf_quant;

typedef struct nf_amax {
    float in[NL][7];
    float q[NL], k[NL], v[NL];
} nf_amax;

static float *st_f32(const eng_st_file *st, const char *name, size_t *n)
{
    const eng_tensor *t = eng_st_find(st, name);
    ck_assert_msg(t != NULL, "%s missing", name);
    float *v = malloc(t->n_elem * sizeof(float));
    /* (no ck_assert inside the loop: check reports each one through a pipe) */
    ck_assert(t->dtype == ENG_DT_F32 || t->dtype == ENG_DT_BF16);
    for (size_t i = 0; i < t->n_elem; i++) {
        if (t->dtype == ENG_DT_F32) {
            v[i] = ((const float *)t->data)[i];
        } else {
            uint32_t u = (uint32_t)((const uint16_t *)t->data)[i] << 16;
            memcpy(&v[i], &u, 4);
        }
    }
    if (n)
        *n = t->n_elem;
    return v;
}

static void nf_load(nf_model *nm, const char *dir)
{
    char p[600], n[128];
    eng_st_file *st = NULL;
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    ck_assert_msg(eng_st_open(&st, p, g_err, sizeof(g_err)) == 0, "%s", g_err);
    nm->embed = st_f32(st, "model.embed_tokens.weight", NULL);
    nm->lm_head = st_f32(st, "lm_head.weight", NULL);
    nm->norm = st_f32(st, "model.norm.weight", NULL);
    for (int l = 0; l < NL; l++) {
        snprintf(n, sizeof(n), "model.layers.%d.input_layernorm.weight", l);
        nm->attn_norm[l] = st_f32(st, n, NULL);
        snprintf(n, sizeof(n), "model.layers.%d.post_attention_layernorm.weight", l);
        nm->ffn_norm[l] = st_f32(st, n, NULL);
        for (int j = 0; j < 7; j++) {
            snprintf(n, sizeof(n), "model.layers.%d.%s.weight", l, k_lin_names[j]);
            nm->w[l][j] = st_f32(st, n, NULL);
        }
    }
    eng_st_close(st);
}

static void nf_free(nf_model *nm)
{
    free(nm->embed);
    free(nm->lm_head);
    free(nm->norm);
    for (int l = 0; l < NL; l++) {
        free(nm->attn_norm[l]);
        free(nm->ffn_norm[l]);
        for (int j = 0; j < 7; j++)
            free(nm->w[l][j]);
    }
}

static float amax_of(const float *x, size_t n)
{
    float a = 0;
    for (size_t i = 0; i < n; i++)
        a = fabsf(x[i]) > a ? fabsf(x[i]) : a;
    return a;
}

/* x -> decode(fp8(x / s)) * s, one f32 division, saturating. */
static float qdq(float x, float s, kn_fp8_format fmt)
{
    float d = x / s;
    return kn_fp8_decode(kn_fp8_encode(d, fmt, true), fmt) * s;
}

/* Rounding an activation to FP8 is discontinuous at the midpoints between
 * codes: where the reference's value lies within a few f32 ulps of one,
 * an engine whose sums run in another (equally exact) order may round to
 * the other neighbour, and the difference then reaches every later row
 * through attention.  nf_forward notes the first row where that happens
 * (g_nf_row: the row being computed; g_nf_amb_row: the first ambiguous
 * one) so that the comparison stops before it.  Seen in the "maxabs_pow2"
 * case: with power-of-2 scales an attention output of row 8 divides to
 * exactly -15.5, the midpoint of E4M3 -15 and -16, and the pairs-in-lanes
 * attention kernel (f32, ~1e-7 from the reference kernel) rounded it the
 * other way. */
static int g_nf_row = -1, g_nf_amb_row = INT_MAX;

static float qdq_act(float x, float s, kn_fp8_format fmt)
{
    float d = x / s, ad = fabsf(d);
    uint8_t c = kn_fp8_encode(d, fmt, true);
    float av = fabsf(kn_fp8_decode(c, fmt));
    unsigned mag = c & 0x7Fu;
    if (g_nf_row >= 0 && ad != av && (ad > av || mag > 0)) {
        uint8_t nb = (uint8_t)(ad > av ? mag + 1 : mag - 1);
        float an = fabsf(kn_fp8_decode(nb, fmt));
        double mid = ((double)av + an) / 2;
        /* within about 2 ulps of d (2^-22 relative): the exact ties that
         * power-of-2 scales produce, and the values next to them.  The
         * window is measured, not derived: this model's activations lie
         * either on a midpoint or 3.5 ulps and more from one, and the
         * engine agrees with the reference across 3.5 (the avx512 kernels
         * in f32; the ref kernels sum in double: in one f32 chain they
         * left a value 45 ulps off, kn_math_ref.c). */
        if (isfinite(an) && fabs(ad - mid) <= ldexp(ad, -22) && g_nf_row < g_nf_amb_row)
            g_nf_amb_row = g_nf_row;
    }
    return qdq(x, s, fmt);
}

static void nf_linear(float *y, const float *x, const nf_model *nm, const nf_quant *q,
                      nf_amax *am, int l, int j)
{
    int no = k_lin_out[j], ni = k_lin_in[j];
    float xq[HID];
    const float *w = nm->w[l][j];
    memcpy(xq, x, (size_t)ni * sizeof(float));
    if (am != NULL && amax_of(x, (size_t)ni) > am->in[l][j])
        am->in[l][j] = amax_of(x, (size_t)ni);
    if (q != NULL && q->wq[l][j] != NULL) {
        float s = q->in_s[l][j];
        w = q->wq[l][j];
        if (s < 0)
            s = amax_of(x, (size_t)ni) / kn_fp8_max(q->fmt);
        if (s > 0)
            for (int i = 0; i < ni; i++)
                xq[i] = qdq_act(x[i], s, q->fmt);
    }
    for (int o = 0; o < no; o++) {
        double a = 0;
        for (int i = 0; i < ni; i++)
            a += (double)w[(size_t)o * ni + i] * xq[i];
        y[o] = (float)a;
    }
}

static void nf_rms(float *y, const float *x, const float *w, int n)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float r = (float)(1 / sqrt(ss / n + 1e-5));
    for (int i = 0; i < n; i++)
        y[i] = w[i] * (x[i] * r);
}

static void nf_rope(float *x, int p)
{
    for (int i = 0; i < HS / 2; i++) {
        double a = p / pow(10000.0, 2.0 * i / HS);
        float c = (float)cos(a), s = (float)sin(a), x0 = x[i], x1 = x[i + HS / 2];
        x[i] = x0 * c - x1 * s;
        x[i + HS / 2] = x1 * c + x0 * s;
    }
}

/* logits [T][VOCAB] (may be NULL); am (may be NULL) collects amaxes. */
static void nf_forward(const nf_model *nm, const nf_quant *qz, const int32_t *ids, int T,
                       float *logits, nf_amax *am)
{
    float *x = calloc((size_t)T * DIM, 4), *k = calloc((size_t)T * KVD, 4);
    float *v = calloc((size_t)T * KVD, 4), *q = calloc((size_t)T * QD, 4);
    float a[HID], o[QD], t2[DIM], g[HID], u[HID], *sc = calloc((size_t)T, 4);
    for (int p = 0; p < T; p++)
        memcpy(x + p * DIM, nm->embed + (size_t)ids[p] * DIM, DIM * 4);
    for (int l = 0; l < NL; l++) {
        for (int p = 0; p < T; p++) {
            g_nf_row = p;
            nf_rms(a, x + p * DIM, nm->attn_norm[l], DIM);
            nf_linear(q + p * QD, a, nm, qz, am, l, 0);
            nf_linear(k + p * KVD, a, nm, qz, am, l, 1);
            nf_linear(v + p * KVD, a, nm, qz, am, l, 2);
            for (int h = 0; h < NH; h++)
                nf_rope(q + p * QD + h * HS, p);
            for (int h = 0; h < NKV; h++)
                nf_rope(k + p * KVD + h * HS, p);
            if (am != NULL) {
                am->q[l] = fmaxf(am->q[l], amax_of(q + p * QD, QD));
                am->k[l] = fmaxf(am->k[l], amax_of(k + p * KVD, KVD));
                am->v[l] = fmaxf(am->v[l], amax_of(v + p * KVD, KVD));
            }
            if (qz != NULL && qz->k_s[l] > 0)
                for (int i = 0; i < KVD; i++) {
                    k[p * KVD + i] = qdq_act(k[p * KVD + i], qz->k_s[l], KN_FP8_E4M3);
                    v[p * KVD + i] = qdq_act(v[p * KVD + i], qz->v_s[l], KN_FP8_E4M3);
                }
        }
        for (int p = 0; p < T; p++) {
            g_nf_row = p;
            for (int h = 0; h < NH; h++) {
                int gk = h / (NH / NKV);
                double mx = -1e300, sum = 0;
                for (int t = 0; t <= p; t++) {
                    double dd = 0;
                    for (int i = 0; i < HS; i++) {
                        float qa = q[p * QD + h * HS + i], kb = k[t * KVD + gk * HS + i];
                        if (qz != NULL && qz->qk_q[l] > 0) {
                            qa = qdq_act(qa, qz->qk_q[l], qz->fmt);
                            kb = qdq_act(kb, qz->qk_k[l], qz->fmt);
                        }
                        dd += (double)qa * kb;
                    }
                    sc[t] = (float)(dd / sqrt(HS));
                    mx = sc[t] > mx ? sc[t] : mx;
                }
                for (int t = 0; t <= p; t++)
                    sum += (sc[t] = (float)exp(sc[t] - mx));
                for (int i = 0; i < HS; i++) {
                    double acc = 0;
                    for (int t = 0; t <= p; t++)
                        acc += sc[t] / sum * v[t * KVD + gk * HS + i];
                    o[h * HS + i] = (float)acc;
                }
            }
            nf_linear(t2, o, nm, qz, am, l, 3);
            for (int i = 0; i < DIM; i++)
                x[p * DIM + i] += t2[i];
        }
        for (int p = 0; p < T; p++) {
            g_nf_row = p;
            nf_rms(a, x + p * DIM, nm->ffn_norm[l], DIM);
            nf_linear(g, a, nm, qz, am, l, 4);
            nf_linear(u, a, nm, qz, am, l, 5);
            for (int i = 0; i < HID; i++)
                g[i] = g[i] / (1 + expf(-g[i])) * u[i];
            nf_linear(t2, g, nm, qz, am, l, 6);
            for (int i = 0; i < DIM; i++)
                x[p * DIM + i] += t2[i];
        }
    }
    for (int p = 0; p < T && logits != NULL; p++) {
        nf_rms(a, x + p * DIM, nm->norm, DIM);
        for (int o2 = 0; o2 < VOCAB; o2++) {
            double acc = 0;
            for (int i = 0; i < DIM; i++)
                acc += (double)nm->lm_head[(size_t)o2 * DIM + i] * a[i];
            logits[(size_t)p * VOCAB + o2] = (float)acc;
        }
    }
    free(x); free(k); free(v); free(q); free(sc);
    g_nf_row = -1;
}

/* 2^ceil(log2 s), derived by hand (INC's pow2 rounding of a divisor). */
static float pow2up(float s)
{
    int e;
    float f = frexpf(s, &e);
    return f == 0.5f ? s : ldexpf(1.0f, e);
}

/* The weight scales and FP8 weights of one scheme, by hand. */
typedef enum { SCH_MINMAX_CH, SCH_MINMAX_T, SCH_POW2, SCH_PCS_POW2, SCH_DELAYED } scheme;

/* DelayedScaling POW2_DOWN, margin 0 (§2.6): mult = 2^floor(log2(F / amax)),
 * the descale its inverse. */
static float pow2down_descale(float amax, float F)
{
    int e;
    frexpf(F / amax, &e);   /* F/amax = f * 2^e, f in [0.5, 1): floor(log2) = e - 1 */
    return ldexpf(1.0f, -(e - 1));
}

static void nf_build_quant(nf_quant *qz, const nf_model *nm, const nf_amax *am, scheme sc,
                           kn_fp8_format fmt, int act /* 1 static, -1 dynamic, 0 none */,
                           bool kv, bool qk)
{
    float F = kn_fp8_max(fmt);
    memset(qz, 0, sizeof(*qz));
    qz->fmt = fmt;
    for (int l = 0; l < NL; l++) {
        for (int j = 0; j < 7; j++) {
            int no = k_lin_out[j], ni = k_lin_in[j];
            const float *w = nm->w[l][j];
            float *wq = malloc((size_t)no * ni * sizeof(float)), st = 0;
            if (sc == SCH_MINMAX_T)
                st = amax_of(w, (size_t)no * ni) / F;
            else if (sc == SCH_POW2)   /* maxabs_pow2: weight backoff 0.5 */
                st = pow2up(amax_of(w, (size_t)no * ni) / (F * 0.5f));
            else if (sc == SCH_DELAYED)
                st = pow2down_descale(amax_of(w, (size_t)no * ni), F);
            for (int o = 0; o < no; o++) {
                float s = st, ra = amax_of(w + (size_t)o * ni, (size_t)ni);
                if (sc == SCH_MINMAX_CH)
                    s = ra / F;
                else if (sc == SCH_PCS_POW2)
                    s = pow2up(ra / (F * 0.5f));
                for (int i = 0; i < ni; i++)
                    wq[(size_t)o * ni + i] = qdq(w[(size_t)o * ni + i], s, fmt);
            }
            qz->wq[l][j] = wq;
            if (act < 0)
                qz->in_s[l][j] = -1;
            else if (act > 0)   /* minmax: amax / F; pow2 methods: input backoff 0.25 */
                qz->in_s[l][j] = sc == SCH_MINMAX_CH || sc == SCH_MINMAX_T
                                     ? am->in[l][j] / F
                                 : sc == SCH_DELAYED ? pow2down_descale(am->in[l][j], F)
                                                     : pow2up(am->in[l][j] / (F * 0.25f));
        }
        if (kv) {
            qz->k_s[l] = am->k[l] / 448.0f;
            qz->v_s[l] = am->v[l] / 448.0f;
        }
        if (act > 0 && qk)   /* matmul_qk operands: the same rule as Linear inputs */
            for (int j = 0; j < 2; j++) {
                float a = j == 0 ? am->q[l] : am->k[l];
                float sc2 = sc == SCH_MINMAX_CH || sc == SCH_MINMAX_T ? a / F
                          : sc == SCH_DELAYED ? pow2down_descale(a, F)
                                              : pow2up(a / (F * 0.25f));
                (j == 0 ? qz->qk_q : qz->qk_k)[l] = sc2;
            }
    }
}

static void nf_quant_free(nf_quant *qz)
{
    for (int l = 0; l < NL; l++)
        for (int j = 0; j < 7; j++)
            free(qz->wq[l][j]);
}

/* Calibration and test token ids (deterministic, an LCG). */
#define N_CAL 2
#define T_CAL 24
#define T_TEST 16
static int32_t g_cal[N_CAL][T_CAL], g_test[T_TEST];

static void make_ids(void)
{
    unsigned s = 12345;
    for (int i = 0; i < N_CAL; i++)
        for (int t = 0; t < T_CAL; t++)
            g_cal[i][t] = (int32_t)((s = s * 1103515245u + 12345u) >> 8) % VOCAB;
    for (int t = 0; t < T_TEST; t++)
        g_test[t] = (int32_t)((s = s * 1103515245u + 12345u) >> 8) % VOCAB;
}

/* An FP8Config: mode, blocklist names (a JSON list body), more keys. */
static qt_config *make_config3(const char *mode, const char *block, const char *extra)
{
    char json[1024];
    qt_config *c = NULL;
    snprintf(json, sizeof(json), "{\"mode\": \"%s\", \"dump_stats_path\": \"%s/hqt/measure\","
             " \"blocklist\": {\"names\": [%s], \"types\": []}%s%s}", mode, g_tmp, block,
             extra[0] ? ", " : "", extra);
    ck_assert_msg(qt_config_parse(&c, json, "test", g_err, sizeof(g_err)) == 0, "%s: %s", json,
                  g_err);
    return c;
}

static qt_config *make_config(const char *extra)
{
    return make_config3("MEASURE", "\"lm_head\"", extra);
}

static void calibrate(eng_model *m)
{
    const int32_t *seqs[N_CAL];
    size_t lens[N_CAL];
    for (int i = 0; i < N_CAL; i++) {
        seqs[i] = g_cal[i];
        lens[i] = T_CAL;
    }
    ck_assert_msg(eng_fp8_calibrate(m, seqs, lens, N_CAL, g_err, sizeof(g_err)) == 0, "%s",
                  g_err);
}

static const char *bf16_dir(void)
{
    static char dir[512];
    snprintf(dir, sizeof(dir), "%s/models/llama_tiny_bf16", g_data);
    return dir;
}

/* One QUANTIZE configuration of the engine against the plain reference. */
typedef struct mode_case {
    const char *config_extra;
    eng_fp8_wscale wscale;
    eng_fp8_act act;
    bool kv;
    scheme sch;
    kn_fp8_format fmt;
    int ref_act;
    bool tight;     /* weight-only: <= 1e-3 everywhere */
    const char *recipe;   /* DelayedScaling JSON, or NULL */
} mode_case;

static const mode_case k_cases[] = {
    {"", ENG_FP8_W_MINMAX_CHANNEL, ENG_FP8_ACT_NONE, false, SCH_MINMAX_CH, KN_FP8_E4M3, 0, true, NULL},
    {"", ENG_FP8_W_MINMAX_CHANNEL, ENG_FP8_ACT_STATIC, false, SCH_MINMAX_CH, KN_FP8_E4M3, 1, false, NULL},
    {"", ENG_FP8_W_MINMAX_TENSOR, ENG_FP8_ACT_STATIC, false, SCH_MINMAX_T, KN_FP8_E4M3, 1, false, NULL},
    {"", ENG_FP8_W_MINMAX_TENSOR, ENG_FP8_ACT_DYNAMIC, false, SCH_MINMAX_T, KN_FP8_E4M3, -1, false, NULL},
    {"\"scale_method\": \"maxabs_pow2\"", ENG_FP8_W_CONFIG, ENG_FP8_ACT_STATIC, false, SCH_POW2,
     KN_FP8_E4M3, 1, false, NULL},
    {"\"scale_method\": \"act_maxabs_pow2_weights_pcs_maxabs_pow2\"", ENG_FP8_W_CONFIG,
     ENG_FP8_ACT_STATIC, false, SCH_PCS_POW2, KN_FP8_E4M3, 1, false, NULL},
    {"\"scale_method\": \"maxabs_pow2\", \"fp8_config\": \"E5M2\"", ENG_FP8_W_CONFIG,
     ENG_FP8_ACT_STATIC, false, SCH_POW2, KN_FP8_E5M2, 1, false, NULL},
    {"", ENG_FP8_W_MINMAX_CHANNEL, ENG_FP8_ACT_STATIC, true, SCH_MINMAX_CH, KN_FP8_E4M3, 1, false, NULL},
    /* HYBRID recipe: forward tensors E4M3, scales from the amax history. */
    {"", ENG_FP8_W_CONFIG, ENG_FP8_ACT_STATIC, false, SCH_DELAYED, KN_FP8_E4M3, 1, false,
     "{\"fp8_format\": \"HYBRID\", \"amax_history_len\": 4, \"scale_rule\": \"pow2_down\"}"},
    {"", ENG_FP8_W_CONFIG, ENG_FP8_ACT_STATIC, false, SCH_DELAYED, KN_FP8_E5M2, 1, false,
     "{\"fp8_format\": \"E5M2\", \"amax_history_len\": 16}"},
};

/* Each QUANTIZE scheme vs the plain reference built from hand-derived
 * scales (amaxes measured by the reference's own high-precision run),
 * over the rows before the first whose FP8 rounding is ambiguous in f32
 * (qdq_act); at least half the rows must remain, so that a case cannot
 * pass by comparing little. */
START_TEST(test_quantize_matches_plain_reference)
{
    const mode_case *mc = &k_cases[_i];
    nf_model nm;
    nf_amax am;
    nf_quant qz;
    eng_fp8_opts o;
    float *ref = malloc((size_t)T_TEST * VOCAB * sizeof(float));
    qt_config *c = make_config(mc->config_extra);
    eng_model *m = load_dir(bf16_dir());

    make_ids();
    nf_load(&nm, bf16_dir());
    memset(&am, 0, sizeof(am));
    for (int i = 0; i < N_CAL; i++)
        nf_forward(&nm, NULL, g_cal[i], T_CAL, NULL, &am);
    nf_build_quant(&qz, &nm, &am, mc->sch, mc->fmt, mc->ref_act, mc->kv, false);
    g_nf_amb_row = INT_MAX;
    nf_forward(&nm, &qz, g_test, T_TEST, ref, NULL);
    int rows = g_nf_amb_row < T_TEST ? g_nf_amb_row : T_TEST;
    ck_assert_msg(rows >= T_TEST / 2, "case %d: the reference's FP8 rounding is ambiguous from "
                  "row %d of %d", _i, rows, T_TEST);

    eng_fp8_opts_default(&o);
    o.wscale = mc->wscale;
    o.act = mc->act;
    o.kv_fp8 = mc->kv;
    qt_recipe r;
    if (mc->recipe != NULL)
        ck_assert_msg(qt_recipe_parse(&r, mc->recipe, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_msg(eng_fp8_prepare(m, c, mc->recipe ? &r : NULL, &o, g_err, sizeof(g_err)) == 0,
                  "%s", g_err);
    ck_assert_int_eq(eng_fp8_mode(m), QT_MODE_MEASURE);
    calibrate(m);
    ck_assert_msg(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0, "%s", g_err);
    float *got = run_logits(m, g_test, T_TEST);
    diff_stats d = diff(got, ref, (size_t)rows * VOCAB);
    printf("  case %d: rows %d of %d, max |diff| %.3g, within 1e-3 %.4f\n", _i, rows, T_TEST,
           d.max_abs, d.frac_within);
    if (mc->tight)
        ck_assert_msg(d.max_abs <= 1e-3, "case %d: max |diff| %g", _i, d.max_abs);
    else
        ck_assert_msg(d.max_abs <= 2e-2 && d.frac_within >= 0.99, "case %d: max |diff| %g, "
                      "within 1e-3 %.4f", _i, d.max_abs, d.frac_within);
    if (mc->kv) {   /* the cache really holds one E4M3 byte per element */
        eng_seq *sq = eng_seq_new(m, 8);
        ck_assert(sq != NULL && sq->k8 != NULL && sq->v8 != NULL && sq->k == NULL);
        eng_seq_free(sq);
        ck_assert(eng_fp8_set_mode(m, QT_MODE_OFF, g_err, sizeof(g_err)) == 0);
        sq = eng_seq_new(m, 8);
        ck_assert(sq != NULL && sq->k8 == NULL && sq->k != NULL);
        eng_seq_free(sq);
    }
    /* And it is not the high-precision model: FP8 moves the logits. */
    nf_forward(&nm, NULL, g_test, T_TEST, ref, NULL);
    ck_assert_msg(diff(got, ref, (size_t)T_TEST * VOCAB).max_abs > 1e-3,
                  "case %d: QUANTIZE gave high-precision logits", _i);
    free(got);
    free(ref);
    nf_quant_free(&qz);
    nf_free(&nm);
    eng_model_free(m);
    qt_config_free(c);
}
END_TEST

static double mean_abs(const float *a, const float *b, size_t n)
{
    double s2 = 0;
    for (size_t i = 0; i < n; i++)
        s2 += fabs((double)a[i] - b[i]);
    return s2 / (double)n;
}

/* qk_fp8: q and k of q.k^T rounded through E4M3 with matmul_qk's static
 * scales (amax / 448 with minmax).  A value on an FP8 rounding boundary
 * flips between two f32 implementations and this random model amplifies
 * a flipped score (0.1 in the logits), so the check is comparative: the
 * engine is much nearer the reference with q.k^T rounding than to the
 * one without, and agrees on the top-1 token almost everywhere. */
START_TEST(test_qk_fp8_vs_reference)
{
    nf_model nm;
    nf_amax am;
    nf_quant with, without;
    eng_fp8_opts o;
    size_t n = (size_t)T_TEST * VOCAB;
    float *rq = malloc(n * 4), *r0 = malloc(n * 4);
    qt_config *c = make_config("");
    eng_model *m = load_dir(bf16_dir());

    make_ids();
    nf_load(&nm, bf16_dir());
    memset(&am, 0, sizeof(am));
    for (int i = 0; i < N_CAL; i++)
        nf_forward(&nm, NULL, g_cal[i], T_CAL, NULL, &am);
    nf_build_quant(&with, &nm, &am, SCH_MINMAX_CH, KN_FP8_E4M3, 1, false, true);
    nf_build_quant(&without, &nm, &am, SCH_MINMAX_CH, KN_FP8_E4M3, 1, false, false);
    nf_forward(&nm, &with, g_test, T_TEST, rq, NULL);
    nf_forward(&nm, &without, g_test, T_TEST, r0, NULL);
    eng_fp8_opts_default(&o);
    o.wscale = ENG_FP8_W_MINMAX_CHANNEL;
    o.qk_fp8 = true;
    ck_assert(eng_fp8_prepare(m, c, NULL, &o, g_err, sizeof(g_err)) == 0);
    calibrate(m);
    ck_assert_msg(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0, "%s", g_err);
    float *got = run_logits(m, g_test, T_TEST);
    double dq = mean_abs(got, rq, n), d0 = mean_abs(got, r0, n);
    long agree = 0;
    for (int t = 0; t < T_TEST; t++) {
        int a = 0, b = 0;
        for (int v = 1; v < VOCAB; v++) {
            a = got[t * VOCAB + v] > got[t * VOCAB + a] ? v : a;
            b = rq[t * VOCAB + v] > rq[t * VOCAB + b] ? v : b;
        }
        agree += a == b;
    }
    printf("  qk_fp8: mean |diff| %.3g to the q.k^T-rounded reference, %.3g to the one "
           "without; top-1 %ld/%d; max %.3g\n", dq, d0, agree, T_TEST, diff(got, rq, n).max_abs);
    ck_assert_msg(dq < 0.5 * d0, "engine not nearer the q.k^T-rounded reference (%g vs %g)", dq,
                  d0);
    ck_assert(agree >= T_TEST - 2);
    /* the first positions (before any boundary flip) agree tightly */
    ck_assert(diff(got, rq, 2 * VOCAB).max_abs <= 1e-3);
    free(got);
    free(rq);
    free(r0);
    nf_quant_free(&with);
    nf_quant_free(&without);
    nf_free(&nm);
    qt_config_free(c);
    eng_model_free(m);
}
END_TEST

/* m computes in high precision again: every Linear packed, no FP8
 * weights, and a fresh load's logits want[n] bit for bit. */
static void expect_high_precision(eng_model *m, const float *want, size_t n, const char *what)
{
    ck_assert_int_eq(count_packed(m, false), (int)m->n_linears);
    ck_assert_int_eq(count_fp8(m), 0);
    float *got = run_logits(m, g_test, T_TEST);
    ck_assert_msg(memcmp(got, want, n * 4) == 0, "%s differs from a fresh load", what);
    free(got);
}

/* OFF -> MEASURE -> QUANTIZE -> OFF: OFF (and MEASURE) equal a fresh load
 * bit for bit. */
START_TEST(test_mode_cycle_identity)
{
    eng_model *fresh = load_dir(bf16_dir()), *m = load_dir(bf16_dir());
    qt_config *c = make_config3("NONE", "\"lm_head\"", "");
    float *want, *got;

    make_ids();
    want = run_logits(fresh, g_test, T_TEST);
    ck_assert_msg(eng_fp8_prepare(m, c, NULL, NULL, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_int_eq(eng_fp8_mode(m), QT_MODE_OFF);
    got = run_logits(m, g_test, T_TEST);
    ck_assert(memcmp(got, want, (size_t)T_TEST * VOCAB * 4) == 0);
    free(got);
    ck_assert(eng_fp8_set_mode(m, QT_MODE_MEASURE, g_err, sizeof(g_err)) == 0);
    calibrate(m);
    got = run_logits(m, g_test, T_TEST);
    ck_assert_msg(memcmp(got, want, (size_t)T_TEST * VOCAB * 4) == 0, "MEASURE changed logits");
    free(got);
    ck_assert_msg(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0, "%s", g_err);
    /* the 14 layer Linears run from FP8 and hold no packed copy; the
     * blocklisted lm_head keeps its own */
    ck_assert_int_eq(count_packed(m, true), 0);
    ck_assert_int_eq(count_packed(m, false), 1);
    got = run_logits(m, g_test, T_TEST);
    ck_assert(diff(got, want, (size_t)T_TEST * VOCAB).max_abs > 1e-3);
    free(got);
    ck_assert(eng_fp8_set_mode(m, QT_MODE_OFF, g_err, sizeof(g_err)) == 0);
    /* packed again from the file; the FP8 weights are gone until the
     * next QUANTIZE builds them */
    expect_high_precision(m, want, (size_t)T_TEST * VOCAB, "OFF after QUANTIZE");
    free(want);
    qt_config_free(c);
    eng_model_free(m);
    eng_model_free(fresh);
}
END_TEST

/* A QUANTIZE that fails on its last module (lm_head selected, but the
 * measuring forward asked for no logits, so it never saw an input) after
 * the layer Linears were converted and their packed copies dropped: the
 * model stays in MEASURE with every copy packed again, no FP8 weights,
 * and a fresh load's logits. */
START_TEST(test_failed_quantize_restores)
{
    eng_model *fresh = load_dir(bf16_dir()), *m = load_dir(bf16_dir());
    qt_config *c = make_config3("MEASURE", "", "\"ignore_modules_wo_measures\": false");
    eng_seq *s = NULL;
    float *want;
    int rc;

    make_ids();
    want = run_logits(fresh, g_test, T_TEST);
    ck_assert_msg(eng_fp8_prepare(m, c, NULL, NULL, g_err, sizeof(g_err)) == 0, "%s", g_err);
    s = eng_seq_new(m, T_CAL);
    eng_batch_item it = {s, g_cal[0], T_CAL, false, NULL};
    ck_assert_msg(eng_forward(m, &it, 1, g_err, sizeof(g_err)) == 0, "%s", g_err);
    eng_seq_free(s);
    rc = eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err));
    ck_assert_msg(rc == QT_E_NO_MEASURE && strstr(g_err, "lm_head") != NULL, "rc %d: %s", rc,
                  g_err);
    ck_assert_int_eq(eng_fp8_mode(m), QT_MODE_MEASURE);
    expect_high_precision(m, want, (size_t)T_TEST * VOCAB, "MEASURE after a failed QUANTIZE");
    free(want);
    qt_config_free(c);
    eng_model_free(m);
    eng_model_free(fresh);
}
END_TEST

/* The same cycle on a tied model whose lm_head is quantized too: in
 * QUANTIZE nothing holds the embedding's panels (rows are read from the
 * file); OFF packs lm_head from the embedding again and equals a fresh
 * load bit for bit, and so does QUANTIZE -> MEASURE. */
START_TEST(test_tied_cycle_identity)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/models/qwen2_tiny_bf16", g_data);
    eng_model *fresh = load_dir(dir), *m = load_dir(dir);
    qt_config *c = make_config3("MEASURE", "", "");
    size_t n = (size_t)T_TEST * eng_model_get_config(m)->vocab_size;
    float *want, *got, *q1, *q2;

    make_ids();
    want = run_logits(fresh, g_test, T_TEST);
    ck_assert_msg(eng_fp8_prepare(m, c, NULL, NULL, g_err, sizeof(g_err)) == 0, "%s", g_err);
    calibrate(m);
    ck_assert_msg(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_int_eq(count_packed(m, false), 0);
    ck_assert_int_eq(count_fp8(m), 15);
    q1 = run_logits(m, g_test, T_TEST);
    ck_assert(diff(q1, want, n).max_abs > 1e-3);
    ck_assert(eng_fp8_set_mode(m, QT_MODE_OFF, g_err, sizeof(g_err)) == 0);
    expect_high_precision(m, want, n, "OFF after QUANTIZE");
    /* QUANTIZE again from the same measurements: the same FP8 model */
    ck_assert(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0);
    q2 = run_logits(m, g_test, T_TEST);
    ck_assert_msg(memcmp(q1, q2, n * 4) == 0, "second QUANTIZE differs from the first");
    ck_assert(eng_fp8_set_mode(m, QT_MODE_MEASURE, g_err, sizeof(g_err)) == 0);
    got = run_logits(m, g_test, T_TEST);
    ck_assert_msg(memcmp(got, want, n * 4) == 0, "MEASURE after QUANTIZE differs");
    free(got);
    free(q1);
    free(q2);
    free(want);
    qt_config_free(c);
    eng_model_free(m);
    eng_model_free(fresh);
}
END_TEST

/* Selection on the real module names of llama_tiny. */
START_TEST(test_selection_names)
{
    eng_model *m = load_dir(bf16_dir());
    qt_config *c = make_config3("MEASURE", "\"lm_head\", \"layers\\\\.1\\\\.mlp\", \"k_proj\"",
                                "\"allowlist\": {\"names\": [], \"types\": [\"Linear\", "
                                "\"KVCache\"]}");
    ck_assert_msg(eng_fp8_prepare(m, c, NULL, NULL, g_err, sizeof(g_err)) == 0, "%s", g_err);
    qt_modset *s = eng_fp8_modset(m);
    static const char *const want_in[] = {
        "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
        "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.o_proj",
        "model.layers.0.self_attn.k_cache", "model.layers.1.self_attn.v_cache"};
    static const char *const want_out[] = {
        "lm_head", "model.layers.0.self_attn.k_proj", "model.layers.1.mlp.gate_proj",
        "model.layers.1.mlp.down_proj", "model.layers.0.self_attn.matmul_qk"};
    for (size_t i = 0; i < sizeof(want_in) / sizeof(*want_in); i++)
        ck_assert_msg(qt_modset_find(s, want_in[i]) != NULL, "%s not selected", want_in[i]);
    for (size_t i = 0; i < sizeof(want_out) / sizeof(*want_out); i++)
        ck_assert_msg(qt_modset_find(s, want_out[i]) == NULL, "%s selected", want_out[i]);
    /* 2 layers x 7 Linears, minus k_proj x 2 and layer 1's MLP x 3; KV x 4. */
    ck_assert_uint_eq(qt_modset_count(s), 14 - 2 - 3 + 4);
    qt_config_free(c);
    eng_model_free(m);
}
END_TEST

/* AUTO: no measurement file -> MEASURE; after a dump -> QUANTIZE from the
 * file, with the same logits as the in-memory QUANTIZE run. */
START_TEST(test_auto_mode)
{
    eng_model *m = load_dir(bf16_dir()), *m2 = load_dir(bf16_dir());
    qt_config *c = make_config3("AUTO", "\"lm_head\"", "");
    float *a, *b;

    make_ids();
    ck_assert_msg(eng_fp8_prepare(m, c, NULL, NULL, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_int_eq(eng_fp8_mode(m), QT_MODE_MEASURE);
    calibrate(m);
    ck_assert_msg(eng_fp8_dump_measurements(m, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0);
    a = run_logits(m, g_test, T_TEST);
    ck_assert_msg(eng_fp8_prepare(m2, c, NULL, NULL, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_int_eq(eng_fp8_mode(m2), QT_MODE_QUANTIZE);
    b = run_logits(m2, g_test, T_TEST);
    ck_assert_msg(memcmp(a, b, (size_t)T_TEST * VOCAB * 4) == 0,
                  "QUANTIZE from the file differs from QUANTIZE from memory");
    free(a);
    free(b);
    qt_config_free(c);
    eng_model_free(m);
    eng_model_free(m2);
}
END_TEST

/* Bad measurement files are refused naming the file and the fault. */
START_TEST(test_bad_measurements)
{
    eng_model *m = load_dir(bf16_dir());
    qt_config *c = make_config("");
    char path[600], bad_path[600];
    size_t n;
    char *good, *bad;

    make_ids();
    ck_assert(eng_fp8_prepare(m, c, NULL, NULL, g_err, sizeof(g_err)) == 0);
    calibrate(m);
    ck_assert_msg(eng_fp8_dump_measurements(m, g_err, sizeof(g_err)) == 0, "%s", g_err);
    snprintf(path, sizeof(path), "%s/hqt/measure_hooks_maxabs.json", g_tmp);
    good = read_file(path, &n);
    snprintf(bad_path, sizeof(bad_path), "%s/bad.json", g_tmp);
    /* A missing module: rename one node. */
    bad = replace(good, "\"model.layers.1.mlp.up_proj\"", "\"model.layers.1.mlp.upXproj\"");
    write_file(bad_path, bad, strlen(bad));
    ck_assert(eng_fp8_load_measurements(m, bad_path, g_err, sizeof(g_err)) < 0);
    ck_assert_msg(strstr(g_err, "model.layers.1.mlp.up_proj") != NULL, "%s", g_err);
    free(bad);
    /* NaN */
    const char *q = strstr(good, "\"model.layers.0.self_attn.q_proj\"");
    ck_assert(q != NULL);
    const char *num = strpbrk(strstr(q, "inputs"), "0123456789");
    size_t pre = (size_t)(num - good), len = strspn(num, "0123456789.eE-+");
    bad = malloc(n + 8);
    memcpy(bad, good, pre);
    strcpy(bad + pre, "NaN");
    strcat(bad, num + len);
    write_file(bad_path, bad, strlen(bad));
    ck_assert(eng_fp8_load_measurements(m, bad_path, g_err, sizeof(g_err)) < 0);
    ck_assert_msg(strstr(g_err, "bad.json") != NULL, "%s", g_err);
    free(bad);
    /* Wrong shape: a second value in the q_proj input. */
    bad = malloc(n + 16);
    memcpy(bad, good, pre);
    strcpy(bad + pre, "1.0], [2.0");
    strcat(bad, num + len);
    write_file(bad_path, bad, strlen(bad));
    ck_assert(eng_fp8_load_measurements(m, bad_path, g_err, sizeof(g_err)) < 0);
    ck_assert_msg(strstr(g_err, "model.layers.0.self_attn.q_proj") != NULL, "%s", g_err);
    free(bad);
    /* The good file loads. */
    ck_assert_msg(eng_fp8_load_measurements(m, path, g_err, sizeof(g_err)) == 0, "%s", g_err);
    free(good);
    qt_config_free(c);
    eng_model_free(m);
}
END_TEST

/* MEASURE with a recipe: each forward call is one step; the history rolls
 * (IPEX row order: row 0 the cleared accumulator, then oldest -> newest)
 * and holds each step's input amax, which the plain reference measures. */
START_TEST(test_measure_history_rolls)
{
    eng_model *m = load_dir(bf16_dir());
    qt_config *c = make_config("");
    qt_recipe r;
    nf_model nm;
    ck_assert(qt_recipe_parse(&r, "{\"amax_history_len\": 3}", g_err, sizeof(g_err)) == 0);
    make_ids();
    ck_assert(eng_fp8_prepare(m, c, &r, NULL, g_err, sizeof(g_err)) == 0);
    calibrate(m);   /* two sequences: two steps */
    nf_load(&nm, bf16_dir());
    qt_module *mod = qt_modset_find(eng_fp8_modset(m), "model.layers.1.mlp.down_proj");
    ck_assert(mod != NULL);
    qt_history *h = qt_module_history(mod);
    ck_assert(h != NULL && qt_history_len(h) == 3 && qt_history_slots(h) == 3);
    float rows[9];
    qt_history_export(h, rows);
    ck_assert(rows[0] == 0.0f && rows[1] == 0.0f);   /* accumulator cleared by the roll */
    for (int i = 0; i < N_CAL; i++) {
        nf_amax am;
        memset(&am, 0, sizeof(am));
        nf_forward(&nm, NULL, g_cal[i], T_CAL, NULL, &am);
        float got = rows[(1 + i) * 3 + 0], want = am.in[1][6];
        ck_assert_msg(fabsf(got - want) <= 1e-5f * want, "step %d: input amax %g, reference %g",
                      i, (double)got, (double)want);
        /* the weight amax is recorded every step */
        ck_assert(rows[(1 + i) * 3 + 1] == amax_of(nm.w[1][6], (size_t)DIM * HID));
    }
    nf_free(&nm);
    qt_config_free(c);
    eng_model_free(m);
}
END_TEST

/* ---- export and re-import ---------------------------------------------------- */

/* Every FP8 weight (codes and scales) and static input scale of a equals
 * b's; returns the number of quantized Linears. */
static int same_fp8_weights(eng_model *a, eng_model *b)
{
    int n = 0;
    ck_assert_uint_eq(a->n_linears, b->n_linears);
    for (size_t i = 0; i < a->n_linears; i++) {
        const eng_fp8lin *x = a->linears[i]->fp8, *y = b->linears[i]->fp8;
        if (x == NULL || x->w8 == NULL) {
            ck_assert_msg(y == NULL || y->w8 == NULL, "%s quantized only after reload",
                          a->linears[i]->name);
            continue;
        }
        ck_assert_msg(y != NULL && y->w8 != NULL, "%s not quantized after reload",
                      a->linears[i]->name);
        size_t N = kn_fp8w_rows(x->w8), K = kn_fp8w_cols(x->w8);
        size_t ns = kn_fp8_scale_count(kn_fp8w_scale_kind(x->w8), N, K);
        uint8_t *ca = malloc(N * K), *cb = malloc(N * K);
        kn_fp8w_unpack(x->w8, ca);
        kn_fp8w_unpack(y->w8, cb);
        ck_assert(kn_fp8w_scale_kind(x->w8) == kn_fp8w_scale_kind(y->w8));
        ck_assert_msg(memcmp(ca, cb, N * K) == 0, "%s: codes differ", a->linears[i]->name);
        ck_assert_msg(memcmp(kn_fp8w_scales(x->w8), kn_fp8w_scales(y->w8), ns * 4) == 0,
                      "%s: weight scales differ", a->linears[i]->name);
        /* input scales are part of the checkpoint with static activations */
        ck_assert_msg(a->fp8->opts.act != ENG_FP8_ACT_STATIC || x->in_scale == y->in_scale,
                      "%s: input scale %g vs %g", a->linears[i]->name, (double)x->in_scale,
                      (double)y->in_scale);
        ck_assert(a->fp8->opts.act == b->fp8->opts.act);
        free(ca);
        free(cb);
        n++;
    }
    return n;
}

/* Histories, multipliers and measured maxima of every module of a's set
 * read back equal in b's. */
static void same_module_state(eng_model *a, eng_model *b)
{
    qt_modset *sa = eng_fp8_modset(a), *sb = eng_fp8_modset(b);
    ck_assert(sa != NULL && sb != NULL);
    ck_assert_uint_eq(qt_modset_count(sa), qt_modset_count(sb));
    for (size_t i = 0; i < qt_modset_count(sa); i++) {
        qt_module *x = qt_modset_at(sa, i), *y = qt_modset_find(sb, qt_module_name(x));
        ck_assert_msg(y != NULL, "%s missing after reload", qt_module_name(x));
        ck_assert(qt_module_type(x) == qt_module_type(y));
        for (int sl = 0; sl < 3; sl++) {
            float mx = qt_module_measured(x, (qt_slot)sl, 0), my = qt_module_measured(y, (qt_slot)sl, 0);
            ck_assert_msg((isnan(mx) && isnan(my)) || mx == my, "%s slot %d: measured %g vs %g",
                          qt_module_name(x), sl, (double)mx, (double)my);
        }
        qt_history *hx = qt_module_history(x), *hy = qt_module_history(y);
        ck_assert((hx == NULL) == (hy == NULL));
        if (hx == NULL)
            continue;
        int L = qt_history_len(hx), S = qt_history_slots(hx);
        ck_assert(L == qt_history_len(hy) && S == qt_history_slots(hy));
        float *rx = malloc((size_t)L * S * 4), *ry = malloc((size_t)L * S * 4);
        qt_history_export(hx, rx);
        qt_history_export(hy, ry);
        ck_assert_msg(memcmp(rx, ry, (size_t)L * S * 4) == 0, "%s: history differs",
                      qt_module_name(x));
        for (int s2 = 0; s2 < S; s2++)
            ck_assert(qt_history_mult(hx, s2) == qt_history_mult(hy, s2) &&
                      qt_history_descale(hx, s2) == qt_history_descale(hy, s2));
        free(rx);
        free(ry);
    }
}

typedef struct export_case {
    const char *config_extra;
    const char *recipe;
    eng_fp8_wscale wscale;
    eng_fp8_act act;
    bool kv, qk;
} export_case;

static const export_case k_export[] = {
    {"", NULL, ENG_FP8_W_MINMAX_CHANNEL, ENG_FP8_ACT_STATIC, true, true},
    {"\"scale_method\": \"maxabs_pow2\"", NULL, ENG_FP8_W_CONFIG, ENG_FP8_ACT_STATIC, false, false},
    {"", "{\"fp8_format\": \"HYBRID\", \"amax_history_len\": 8}", ENG_FP8_W_CONFIG,
     ENG_FP8_ACT_STATIC, false, false},
    {"", NULL, ENG_FP8_W_MINMAX_TENSOR, ENG_FP8_ACT_DYNAMIC, false, false},
    {"", NULL, ENG_FP8_W_MINMAX_CHANNEL, ENG_FP8_ACT_NONE, false, false},
};

/* calibrate -> QUANTIZE -> export -> load in a fresh process: identical
 * logits, weights, scales, histories and measurements. */
START_TEST(test_export_reload_identical)
{
    const export_case *ec = &k_export[_i];
    eng_model *m = load_dir(bf16_dir());
    qt_config *c = make_config(ec->config_extra);
    eng_fp8_opts o;
    qt_recipe r;
    char out[400], lpath[400];
    float *want;
    pid_t pid;
    int status;

    make_ids();
    eng_fp8_opts_default(&o);
    o.wscale = ec->wscale;
    o.act = ec->act;
    o.kv_fp8 = ec->kv;
    o.qk_fp8 = ec->qk;
    if (ec->recipe != NULL)
        ck_assert(qt_recipe_parse(&r, ec->recipe, g_err, sizeof(g_err)) == 0);
    ck_assert_msg(eng_fp8_prepare(m, c, ec->recipe ? &r : NULL, &o, g_err, sizeof(g_err)) == 0,
                  "%s", g_err);
    calibrate(m);
    ck_assert_msg(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0, "%s", g_err);
    want = run_logits(m, g_test, T_TEST);
    snprintf(out, sizeof(out), "%s/export", g_tmp);
    ck_assert_msg(eng_fp8_export(m, bf16_dir(), out, false, g_err, sizeof(g_err)) == 0, "%s",
                  g_err);
    /* A fresh process (exec of this program, which only loads the
     * export and writes its logits): */
    snprintf(lpath, sizeof(lpath), "%s/reload.f32", g_tmp);
    fflush(stdout);
    pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "check_fp8engine", "--reload", out, lpath, (char *)NULL);
        _exit(127);
    }
    ck_assert(waitpid(pid, &status, 0) == pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reload process failed "
                  "(status %d)", status);
    size_t ln;
    float *got = (float *)read_file(lpath, &ln);
    ck_assert_uint_eq(ln, (size_t)T_TEST * VOCAB * 4);
    ck_assert_msg(memcmp(got, want, ln) == 0, "reloaded export: logits differ (max %g)",
                  diff(got, want, (size_t)T_TEST * VOCAB).max_abs);
    free(got);
    /* Weights, scales, histories and measurements read back equal. */
    eng_model *b = load_dir(out);
    ck_assert_int_eq(eng_fp8_mode(b), QT_MODE_QUANTIZE);
    ck_assert_int_eq(same_fp8_weights(m, b), 14);
    same_module_state(m, b);
    eng_model_free(b);
    free(want);
    qt_config_free(c);
    eng_model_free(m);
}
END_TEST

/* A tied model whose lm_head is quantized exports untied (lm_head's FP8
 * weight beside the BF16 embedding) and reloads to the same logits. */
START_TEST(test_export_tied_lm_head)
{
    char src[512], out[400];
    snprintf(src, sizeof(src), "%s/models/qwen2_tiny_bf16", g_data);
    eng_model *m = load_dir(src), *b;
    qt_config *c = make_config3("MEASURE", "", "");
    eng_fp8_opts o;
    size_t n = (size_t)T_TEST * eng_model_get_config(m)->vocab_size;
    float *want, *got;

    make_ids();
    eng_fp8_opts_default(&o);
    o.wscale = ENG_FP8_W_MINMAX_CHANNEL;
    ck_assert_msg(eng_fp8_prepare(m, c, NULL, &o, g_err, sizeof(g_err)) == 0, "%s", g_err);
    calibrate(m);
    ck_assert_msg(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert(m->lm_head.fp8 != NULL && ((eng_fp8lin *)m->lm_head.fp8)->w8 != NULL);
    want = run_logits(m, g_test, T_TEST);
    snprintf(out, sizeof(out), "%s/tied", g_tmp);
    ck_assert_msg(eng_fp8_export(m, src, out, false, g_err, sizeof(g_err)) == 0, "%s", g_err);
    b = load_dir(out);
    ck_assert(!eng_model_get_config(b)->tie_embeddings);
    ck_assert_int_eq(same_fp8_weights(m, b), 15);
    got = run_logits(b, g_test, T_TEST);
    ck_assert_msg(memcmp(got, want, n * 4) == 0, "reloaded tied export: logits differ (max %g)",
                  diff(got, want, n).max_abs);
    free(got);
    free(want);
    eng_model_free(b);
    qt_config_free(c);
    eng_model_free(m);
}
END_TEST

/* The block layout: 128x128 scales amax / 448; the reload equals a plain
 * weight-only reference built here from those blocks. */
START_TEST(test_export_block_layout)
{
    eng_model *m = load_dir(bf16_dir()), *b;
    qt_config *c = make_config("");
    eng_fp8_opts o;
    char out[400], p[600];
    eng_st_file *st = NULL;
    nf_model nm;
    nf_quant qz;
    float *ref = malloc((size_t)T_TEST * VOCAB * 4), *got;

    make_ids();
    eng_fp8_opts_default(&o);
    o.wscale = ENG_FP8_W_MINMAX_CHANNEL;
    ck_assert(eng_fp8_prepare(m, c, NULL, &o, g_err, sizeof(g_err)) == 0);
    calibrate(m);
    ck_assert(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0);
    snprintf(out, sizeof(out), "%s/block", g_tmp);
    ck_assert_msg(eng_fp8_export(m, bf16_dir(), out, true, g_err, sizeof(g_err)) == 0, "%s",
                  g_err);
    snprintf(p, sizeof(p), "%s/model.safetensors", out);
    ck_assert(eng_st_open(&st, p, g_err, sizeof(g_err)) == 0);
    const eng_tensor *si = eng_st_find(st, "model.layers.0.mlp.down_proj.weight_scale_inv");
    ck_assert(si != NULL && si->n_dims == 2 && si->shape[0] == 2 && si->shape[1] == 3);
    eng_st_close(st);
    /* reference: blocks by hand */
    nf_load(&nm, bf16_dir());
    memset(&qz, 0, sizeof(qz));
    qz.fmt = KN_FP8_E4M3;
    for (int l = 0; l < NL; l++)
        for (int j = 0; j < 7; j++) {
            int no = k_lin_out[j], ni = k_lin_in[j];
            float *wq = malloc((size_t)no * ni * 4);
            for (int bi = 0; bi < no; bi += 128)
                for (int bj = 0; bj < ni; bj += 128) {
                    float a = 0;
                    for (int r = bi; r < bi + 128 && r < no; r++)
                        for (int k = bj; k < bj + 128 && k < ni; k++)
                            a = fmaxf(a, fabsf(nm.w[l][j][(size_t)r * ni + k]));
                    for (int r = bi; r < bi + 128 && r < no; r++)
                        for (int k = bj; k < bj + 128 && k < ni; k++)
                            wq[(size_t)r * ni + k] = qdq(nm.w[l][j][(size_t)r * ni + k],
                                                         a / 448.0f, KN_FP8_E4M3);
                }
            qz.wq[l][j] = wq;
        }
    nf_forward(&nm, &qz, g_test, T_TEST, ref, NULL);
    b = load_dir(out);
    got = run_logits(b, g_test, T_TEST);
    ck_assert_msg(diff(got, ref, (size_t)T_TEST * VOCAB).max_abs <= 1e-3, "block export: max %g",
                  diff(got, ref, (size_t)T_TEST * VOCAB).max_abs);
    free(got);
    free(ref);
    nf_quant_free(&qz);
    nf_free(&nm);
    eng_model_free(b);
    eng_model_free(m);
    qt_config_free(c);
}
END_TEST

/* Converting llama_tiny_f32 with the testdata recipe (per-channel
 * weight_scale = max|W| / 448, input_scale = calibration amax / 448 over
 * the 4 calib_ids sequences, lm_head left out) reproduces the FP8 bytes
 * and scales of llama_tiny_fp8_ct. */
START_TEST(test_convert_reproduces_fp8_ct)
{
    const char *shared = getenv("FP8D_SHARED_TESTDATA");
    char dir[600], out[400], p[700];
    struct stat sb;
    if (shared == NULL)
        shared = "../shared/testdata";
    snprintf(dir, sizeof(dir), "%s/models/llama_tiny_f32", shared);
    if (stat(dir, &sb) != 0) {
        printf("SKIP: convert reproduces llama_tiny_fp8_ct: %s not found\n", dir);
        return;
    }
    eng_model *m = load_dir(dir);
    eng_st_file *ref = load_ref("llama_tiny_fp8_ct_ref.safetensors"), *got = NULL, *want = NULL;
    const eng_tensor *cal = ref_t(ref, "calib_ids");
    qt_config *c = make_config("");
    eng_fp8_opts o;
    const int32_t *seqs[4];
    size_t lens[4];
    eng_fp8_opts_default(&o);
    o.wscale = ENG_FP8_W_MINMAX_CHANNEL;
    ck_assert(eng_fp8_prepare(m, c, NULL, &o, g_err, sizeof(g_err)) == 0);
    ck_assert(cal->n_dims == 2 && cal->shape[0] == 4 && cal->shape[1] == 64);
    for (int i = 0; i < 4; i++) {
        seqs[i] = (const int32_t *)cal->data + i * 64;
        lens[i] = 64;
    }
    ck_assert_msg(eng_fp8_calibrate(m, seqs, lens, 4, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_msg(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0, "%s", g_err);
    snprintf(out, sizeof(out), "%s/conv", g_tmp);
    ck_assert_msg(eng_fp8_export(m, dir, out, false, g_err, sizeof(g_err)) == 0, "%s", g_err);
    snprintf(p, sizeof(p), "%s/model.safetensors", out);
    ck_assert(eng_st_open(&got, p, g_err, sizeof(g_err)) == 0);
    snprintf(p, sizeof(p), "%s/fp8models/llama_tiny_fp8_ct/model.safetensors", g_data);
    ck_assert(eng_st_open(&want, p, g_err, sizeof(g_err)) == 0);
    int n_cmp = 0, n_ulp = 0;
    double worst_in = 0;
    for (size_t i = 0; i < eng_st_count(want); i++) {
        const eng_tensor *w = eng_st_at(want, i), *g = eng_st_find(got, w->name);
        if (w->dtype != ENG_DT_F8_E4M3 && strstr(w->name, "_scale") == NULL)
            continue;
        ck_assert_msg(g != NULL, "%s missing from the conversion", w->name);
        ck_assert_msg(g->dtype == w->dtype && g->n_elem == w->n_elem && g->n_dims == w->n_dims,
                      "%s: dtype/shape differ", w->name);
        if (w->dtype == ENG_DT_F8_E4M3) {
            ck_assert_msg(memcmp(g->data, w->data, w->size) == 0, "%s: FP8 bytes differ",
                          w->name);
        } else {
            /* weight scales: to f32 rounding (1 ulp); input scales come
             * from activations our f32 forward computes in another order
             * than torch's: a few ulps (relative 1e-6). */
            bool in = strstr(w->name, "input_scale") != NULL;
            for (size_t k = 0; k < w->n_elem; k++) {
                float a = ((const float *)g->data)[k], e = ((const float *)w->data)[k];
                double rel = fabs((double)a - e) / e;
                ck_assert_msg(rel <= (in ? 1e-6 : ldexp(1, -23)), "%s[%zu]: %.9g vs %.9g",
                              w->name, k, (double)a, (double)e);
                n_ulp += a != e;
                if (in && rel > worst_in)
                    worst_in = rel;
            }
        }
        n_cmp++;
    }
    ck_assert_int_eq(n_cmp, 14 * 3);
    printf("  convert: 14 FP8 weights byte-identical; %d scales differ in the last bits "
           "(input scales: max relative %.2g)\n", n_ulp, worst_in);
    eng_st_close(got);
    eng_st_close(want);
    eng_st_close(ref);
    qt_config_free(c);
    eng_model_free(m);
}
END_TEST

/* ---- memory (issue 7) ------------------------------------------------------- */

/* An FP8 checkpoint holds its weights once, as FP8 (no f32 or packed
 * copy); its export writes the checkpoint's own tensors back byte for
 * byte (the BF16 ones re-read from the released mapping); and MEASURE
 * runs the FP8 weights with f32 activations: torch's weight-only logits. */
START_TEST(test_imported_fp8_held_once)
{
    char src[512], out[400], p[700];
    eng_model *m = load_fp8model("llama_tiny_fp8_ct");
    eng_st_file *ref = load_ref("llama_tiny_fp8_ct_ref.safetensors"), *a = NULL, *b = NULL;
    int n_imp = 0;

    for (size_t i = 0; i < m->n_linears; i++) {
        const eng_linear *l = m->linears[i];
        const eng_fp8lin *fl = l->fp8;
        ck_assert(fl != NULL);
        if (!fl->imported) {
            ck_assert_msg(l->packed != NULL, "%s: BF16 Linear not packed", l->name);
            continue;
        }
        ck_assert_msg(l->w == NULL && l->packed == NULL && fl->w8 != NULL,
                      "%s: an FP8 weight held in another form", l->name);
        n_imp++;
    }
    ck_assert_int_eq(n_imp, 14);
    snprintf(src, sizeof(src), "%s/fp8models/llama_tiny_fp8_ct", g_data);
    snprintf(out, sizeof(out), "%s/ct_again", g_tmp);
    ck_assert_msg(eng_fp8_export(m, src, out, false, g_err, sizeof(g_err)) == 0, "%s", g_err);
    snprintf(p, sizeof(p), "%s/model.safetensors", src);
    ck_assert(eng_st_open(&a, p, g_err, sizeof(g_err)) == 0);
    snprintf(p, sizeof(p), "%s/model.safetensors", out);
    ck_assert(eng_st_open(&b, p, g_err, sizeof(g_err)) == 0);
    ck_assert_uint_eq(eng_st_count(a), eng_st_count(b));
    for (size_t i = 0; i < eng_st_count(a); i++) {
        const eng_tensor *x = eng_st_at(a, i), *y = eng_st_find(b, x->name);
        ck_assert_msg(y != NULL, "%s missing from the export", x->name);
        ck_assert_msg(x->dtype == y->dtype && x->n_dims == y->n_dims && x->size == y->size &&
                      memcmp(x->shape, y->shape, sizeof(x->shape)) == 0 &&
                      memcmp(x->data, y->data, x->size) == 0, "%s differs", x->name);
    }
    eng_st_close(a);
    eng_st_close(b);
    qt_config *c = make_config("");
    ck_assert_msg(eng_fp8_prepare(m, c, NULL, NULL, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_int_eq(eng_fp8_mode(m), QT_MODE_MEASURE);
    check_logits(m, ref, "weight_only", true);
    qt_config_free(c);
    eng_st_close(ref);
    eng_model_free(m);
}
END_TEST

/* A weights file cut in place under a QUANTIZE model: leaving QUANTIZE,
 * export and a forward that needs embedding rows from the file fail
 * naming the file (a read of the mapping would have raised SIGBUS and
 * failed the test), and the model stays in QUANTIZE with its state; a
 * model loaded before the cut cannot start measuring either. */
START_TEST(test_changed_file_refused)
{
    const char *dir = copy_model(bf16_dir(), "cut");
    char path[600], out[600];
    eng_model *m = load_dir(dir), *m2 = load_dir(dir);
    qt_config *c = make_config("");
    float *lg = malloc(VOCAB * sizeof(float));
    int rc;

    make_ids();
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    snprintf(out, sizeof(out), "%s/export", g_tmp);
    ck_assert_msg(eng_fp8_prepare(m, c, NULL, NULL, g_err, sizeof(g_err)) == 0, "%s", g_err);
    calibrate(m);
    ck_assert_msg(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0, "%s", g_err);
    change_in_place(path, -1);
    static const qt_mode leave[2] = {QT_MODE_OFF, QT_MODE_MEASURE};
    for (int i = 0; i < 2; i++) {
        g_err[0] = 0;
        rc = eng_fp8_set_mode(m, leave[i], g_err, sizeof(g_err));
        ck_assert_msg(rc == -ESTALE && strstr(g_err, path) != NULL &&
                      strstr(g_err, "changed on disk since load") != NULL, "rc %d: %s", rc, g_err);
        ck_assert_int_eq(eng_fp8_mode(m), QT_MODE_QUANTIZE);
        ck_assert_int_eq(count_packed(m, false), 1);      /* lm_head's, as before */
    }
    ck_assert_int_eq(eng_fp8_export(m, bf16_dir(), out, false, g_err, sizeof(g_err)), -ESTALE);
    ck_assert_msg(strstr(g_err, path) != NULL, "%s", g_err);
    eng_seq *s = eng_seq_new(m, 4);
    eng_batch_item it = {s, g_test, 2, false, lg};
    g_err[0] = 0;
    ck_assert_int_eq(eng_forward(m, &it, 1, g_err, sizeof(g_err)), -ESTALE);
    ck_assert_msg(strstr(g_err, path) != NULL, "%s", g_err);
    ck_assert_uint_eq(eng_seq_len(s), 0);
    eng_seq_free(s);
    rc = eng_fp8_prepare(m2, c, NULL, NULL, g_err, sizeof(g_err));
    ck_assert_msg(rc == -ESTALE && strstr(g_err, path) != NULL, "prepare: rc %d: %s", rc, g_err);
    free(lg);
    qt_config_free(c);
    eng_model_free(m);
    eng_model_free(m2);
}
END_TEST

/* A byte rewritten in place under a tied model whose lm_head stays BF16:
 * the switch back to OFF is refused, and the model keeps serving from
 * what it holds (FP8 layers, embedding rows from lm_head's panels) with
 * exactly the logits it gave before the change. */
START_TEST(test_changed_file_keeps_serving)
{
    char src[512], path[600];
    struct stat st;
    snprintf(src, sizeof(src), "%s/models/qwen2_tiny_bf16", g_data);
    const char *dir = copy_model(src, "flip");
    eng_model *m = load_dir(dir);
    qt_config *c = make_config("");
    size_t n = (size_t)T_TEST * eng_model_get_config(m)->vocab_size;
    float *a, *b;
    int rc;

    make_ids();
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    ck_assert_msg(eng_fp8_prepare(m, c, NULL, NULL, g_err, sizeof(g_err)) == 0, "%s", g_err);
    calibrate(m);
    ck_assert_msg(eng_fp8_set_mode(m, QT_MODE_QUANTIZE, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_int_eq(count_packed(m, false), 1);
    a = run_logits(m, g_test, T_TEST);
    ck_assert(stat(path, &st) == 0);
    change_in_place(path, (long)st.st_size / 2);
    rc = eng_fp8_set_mode(m, QT_MODE_OFF, g_err, sizeof(g_err));
    ck_assert_msg(rc == -ESTALE && strstr(g_err, "changed on disk since load") != NULL,
                  "rc %d: %s", rc, g_err);
    ck_assert_int_eq(eng_fp8_mode(m), QT_MODE_QUANTIZE);
    b = run_logits(m, g_test, T_TEST);
    ck_assert_msg(memcmp(a, b, n * 4) == 0, "logits changed after a refused switch");
    free(a);
    free(b);
    qt_config_free(c);
    eng_model_free(m);
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
    tcase_add_test(tc, test_fbgemm_config_weight_only);
    suite_add_tcase(s, tc);
    tc = tcase_create("modes");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, make_tmp, rm_tmp);
    tcase_add_loop_test(tc, test_quantize_matches_plain_reference, 0,
                        (int)(sizeof(k_cases) / sizeof(*k_cases)));
    tcase_add_test(tc, test_mode_cycle_identity);
    tcase_add_test(tc, test_tied_cycle_identity);
    tcase_add_test(tc, test_failed_quantize_restores);
    tcase_add_test(tc, test_selection_names);
    tcase_add_test(tc, test_auto_mode);
    tcase_add_test(tc, test_bad_measurements);
    tcase_add_test(tc, test_measure_history_rolls);
    tcase_add_test(tc, test_qk_fp8_vs_reference);
    suite_add_tcase(s, tc);
    tc = tcase_create("export");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, make_tmp, rm_tmp);
    tcase_add_loop_test(tc, test_export_reload_identical, 0,
                        (int)(sizeof(k_export) / sizeof(*k_export)));
    tcase_add_test(tc, test_export_block_layout);
    tcase_add_test(tc, test_export_tied_lm_head);
    tcase_add_test(tc, test_convert_reproduces_fp8_ct);
    suite_add_tcase(s, tc);
    tc = tcase_create("memory");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, make_tmp, rm_tmp);
    tcase_add_test(tc, test_imported_fp8_held_once);
    tcase_add_test(tc, test_changed_file_refused);
    tcase_add_test(tc, test_changed_file_keeps_serving);
    suite_add_tcase(s, tc);
    return s;
}

/* --reload DIR OUT: load DIR and write the logits of the test ids to OUT
 * (the fresh process of test_export_reload_identical). */
static int reload_main(const char *dir, const char *out)
{
    eng_model *m = NULL;
    float *lg;
    size_t n = (size_t)T_TEST * VOCAB;
    FILE *f;
    make_ids();
    kn_init(NULL);
    kn_log_set_level(KN_LOG_WARN);
    if (eng_model_load(&m, dir, NULL, g_err, sizeof(g_err)) != 0) {
        fprintf(stderr, "reload %s: %s\n", dir, g_err);
        return 1;
    }
    lg = malloc(n * sizeof(float));
    eng_seq *s = eng_seq_new(m, T_TEST);
    eng_batch_item it = {s, g_test, T_TEST, true, lg};
    if (eng_forward(m, &it, 1, g_err, sizeof(g_err)) != 0 || (f = fopen(out, "wb")) == NULL) {
        fprintf(stderr, "reload %s: %s\n", dir, g_err);
        return 1;
    }
    fwrite(lg, sizeof(float), n, f);
    fclose(f);
    eng_seq_free(s);
    eng_model_free(m);
    free(lg);
    return 0;
}

int main(int argc, char **argv)
{
    char probe[512];
    SRunner *sr;
    int nf;

    if (argc == 4 && strcmp(argv[1], "--reload") == 0)
        return reload_main(argv[2], argv[3]);

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
