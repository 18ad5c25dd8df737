/* check_quant.c: unit tests of quant/.  Every expected value is derived
 * by hand in the comment next to it (from fp8-semantics.md's formulas and
 * the E4M3 grid), never taken from the code's own earlier output. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "quant/quant.h"

static char g_err[512];

/* ------------------------------------------------------------ helpers */

static char g_log[8192];

static void capture_log(int level, const char *module, const char *msg, void *ud)
{
    (void)ud;
    size_t used = strlen(g_log);
    snprintf(g_log + used, sizeof(g_log) - used, "%d %s: %s\n", level, module, msg);
}

static void log_start(void)
{
    g_log[0] = '\0';
    kn_log_set(capture_log, NULL, KN_LOG_DEBUG);
}

static void make_tmpdir(char *buf, size_t len)
{
    snprintf(buf, len, "%s/check_quant.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(buf));
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1024];
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static qt_config *config_from(const char *text)
{
    qt_config *c = NULL;
    int rc = qt_config_parse(&c, text, "test", g_err, sizeof(g_err));
    ck_assert_msg(rc == 0, "config %s: %s", text, g_err);
    return c;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* ---------------------------------------------------------- recipe */

START_TEST(test_recipe_defaults_match_ipex)
{
    qt_recipe r;
    qt_recipe_default(&r);
    ck_assert_int_eq(r.margin, 0);
    ck_assert_int_eq(r.interval, 1);
    ck_assert_int_eq(r.fp8_format, QT_FORMAT_HYBRID);
    ck_assert_int_eq(r.amax_history_len, 1024);
    ck_assert_int_eq(r.amax_compute_algo, QT_AMAX_MAX);
    ck_assert_int_eq(r.scale_rule, QT_SCALE_POW2_DOWN);
    ck_assert(r.reduce_amax);
    /* HYBRID: E4M3 forward (448), E5M2 backward (57344). */
    ck_assert_float_eq(qt_format_max_fwd(QT_FORMAT_HYBRID), 448.0f);
    ck_assert_float_eq(qt_format_max_bwd(QT_FORMAT_HYBRID), 57344.0f);
    ck_assert_int_eq(qt_format_tensor(QT_FORMAT_HYBRID, false), KN_FP8_E5M2);
    ck_assert_float_eq(qt_format_max_bwd(QT_FORMAT_E4M3), 448.0f);
    ck_assert_float_eq(qt_format_max_fwd(QT_FORMAT_E5M2), 57344.0f);
}
END_TEST

START_TEST(test_pow2_down_scale_for_amax_and_margin)
{
    qt_recipe r;
    qt_recipe_default(&r);
    /* 448/3 = 149.3 -> 2^7 = 128; margin 2 -> 2^5 = 32. */
    ck_assert_float_eq(qt_recipe_mult(&r, 3.0f, 448.0f, 4.0f), 128.0f);
    /* 448/0.02 = 22400 -> 2^14 = 16384. */
    ck_assert_float_eq(qt_recipe_mult(&r, 0.02f, 448.0f, 4.0f), 16384.0f);
    /* 448/1000 = 0.448 -> 2^-2 = 0.25. */
    ck_assert_float_eq(qt_recipe_mult(&r, 1000.0f, 448.0f, 4.0f), 0.25f);
    /* 448/448 = 1 exactly -> 2^0 (an exact power of two stays). */
    ck_assert_float_eq(qt_recipe_mult(&r, 448.0f, 448.0f, 4.0f), 1.0f);
    r.margin = 2;
    ck_assert_float_eq(qt_recipe_mult(&r, 3.0f, 448.0f, 4.0f), 32.0f);
    ck_assert_float_eq(qt_recipe_mult(&r, 0.02f, 448.0f, 4.0f), 4096.0f);
    ck_assert_float_eq(qt_recipe_mult(&r, 1000.0f, 448.0f, 4.0f), 0.0625f);
    ck_assert_float_eq(qt_recipe_mult(&r, 448.0f, 448.0f, 4.0f), 0.25f);
    /* E5M2: 57344/3 = 19114.7 -> 2^14 = 16384, margin 2 -> 4096. */
    ck_assert_float_eq(qt_recipe_mult(&r, 3.0f, 57344.0f, 1.0f), 4096.0f);
}
END_TEST

START_TEST(test_exact_scale_te)
{
    qt_recipe r;
    qt_recipe_default(&r);
    r.scale_rule = QT_SCALE_EXACT;
    ck_assert_float_eq(qt_recipe_mult(&r, 3.0f, 448.0f, 4.0f), 448.0f / 3.0f);
    ck_assert_float_eq(qt_recipe_mult(&r, 1000.0f, 448.0f, 4.0f), 0.448f);
    r.margin = 2;   /* (448/3)/4 = 37.333 */
    ck_assert_float_eq(qt_recipe_mult(&r, 3.0f, 448.0f, 4.0f), (448.0f / 3.0f) / 4.0f);
}
END_TEST

START_TEST(test_scale_guards_keep_old_and_clamp)
{
    qt_recipe r;
    qt_recipe_default(&r);
    for (int rule = 0; rule < 2; rule++) {
        r.scale_rule = (qt_scale_rule)rule;
        /* amax 0 (nothing ran), NaN, +inf: keep the old scale 4 (TE);
         * IPEX would give 0.25 = 1/old on inf. */
        ck_assert_float_eq(qt_recipe_mult(&r, 0.0f, 448.0f, 4.0f), 4.0f);
        ck_assert_float_eq(qt_recipe_mult(&r, NAN, 448.0f, 4.0f), 4.0f);
        ck_assert_float_eq(qt_recipe_mult(&r, INFINITY, 448.0f, 4.0f), 4.0f);
        ck_assert_float_eq(qt_recipe_mult(&r, -1.0f, 448.0f, 4.0f), 4.0f);
    }
    /* Tiny amax: 448/1e-37 overflows f32.  EXACT -> FLT_MAX (TE PR #786);
     * POW2 -> 2^127 (IPEX would give inf). */
    r.scale_rule = QT_SCALE_EXACT;
    ck_assert_float_eq(qt_recipe_mult(&r, 1e-37f, 448.0f, 4.0f), FLT_MAX);
    r.scale_rule = QT_SCALE_POW2_DOWN;
    ck_assert_float_eq(qt_recipe_mult(&r, 1e-37f, 448.0f, 4.0f), ldexpf(1.0f, 127));
    ck_assert(isfinite(1.0f / qt_recipe_mult(&r, 1e-37f, 448.0f, 4.0f)));
}
END_TEST

START_TEST(test_history_order_after_updates)
{
    qt_recipe r;
    float fmax = 448.0f, sel, rows[4];
    qt_recipe_default(&r);
    r.amax_history_len = 4;
    qt_history *h = qt_history_new(1, 4, &fmax);
    ck_assert_ptr_nonnull(h);
    /* IPEX by hand, rows [row0 | oldest .. newest]:
     * rec 1: [1,0,0,0] -> select 1, roll+clear -> [0,0,0,1]
     * rec 2: [2,0,0,1] -> select 2 -> [0,0,1,2]
     * rec 3: [3,0,1,2] -> select 3 -> [0,1,2,3]
     * rec 4: [4,1,2,3] -> select 4 -> [0,2,3,4]   (1 drops out)
     * rec 5: [5,2,3,4]                             (no update yet) */
    const float expect_sel[4] = {1, 2, 3, 4};
    for (int k = 0; k < 4; k++) {
        qt_history_record(h, 0, (float)(k + 1));
        ck_assert_int_eq(qt_history_update(h, &r, &sel), 0);
        ck_assert_float_eq(sel, expect_sel[k]);
    }
    /* After the 4th update: 448/4 = 112 -> 2^6 = 64. */
    ck_assert_float_eq(qt_history_mult(h, 0), 64.0f);
    ck_assert_float_eq(qt_history_descale(h, 0), 1.0f / 64.0f);
    qt_history_record(h, 0, 5.0f);
    qt_history_export(h, rows);
    ck_assert_float_eq(rows[0], 5.0f);
    ck_assert_float_eq(rows[1], 2.0f);
    ck_assert_float_eq(rows[2], 3.0f);
    ck_assert_float_eq(rows[3], 4.0f);
    /* max over [5,2,3,4] = 5; next rows [0,3,4,5]. */
    ck_assert_int_eq(qt_history_update(h, &r, &sel), 0);
    ck_assert_float_eq(sel, 5.0f);
    qt_history_export(h, rows);
    ck_assert_float_eq(rows[0], 0.0f);
    ck_assert_float_eq(rows[1], 3.0f);
    ck_assert_float_eq(rows[3], 5.0f);
    /* A step where nothing ran: select max(0,3,4,5) = 5 and still roll. */
    ck_assert_int_eq(qt_history_update(h, &r, &sel), 0);
    ck_assert_float_eq(sel, 5.0f);
    qt_history_export(h, rows);
    ck_assert_float_eq(rows[1], 4.0f);
    ck_assert_float_eq(rows[3], 0.0f);
    /* Length mismatch with the recipe is refused. */
    r.amax_history_len = 5;
    ck_assert_int_eq(qt_history_update(h, &r, NULL), -EINVAL);
    qt_history_free(h);
}
END_TEST

START_TEST(test_history_most_recent_len1_not_ipex_bug)
{
    qt_recipe r;
    float fmax = 448.0f, sel = -1;
    qt_recipe_default(&r);
    r.amax_history_len = 1;
    r.amax_compute_algo = QT_AMAX_MOST_RECENT;
    qt_history *h = qt_history_new(1, 1, &fmax);
    qt_history_record(h, 0, 5.0f);
    ck_assert_int_eq(qt_history_update(h, &r, &sel), 0);
    /* IPEX selects 0 here (view zeroed first); we copy first: 5, and
     * 448/5 = 89.6 -> 2^6 = 64. */
    ck_assert_float_eq(sel, 5.0f);
    ck_assert_float_eq(qt_history_mult(h, 0), 64.0f);
    qt_history_free(h);

    /* most_recent with history: the older, larger values are ignored. */
    r.amax_history_len = 3;
    h = qt_history_new(1, 3, &fmax);
    qt_history_record(h, 0, 100.0f);
    qt_history_update(h, &r, &sel);
    qt_history_record(h, 0, 7.0f);
    qt_history_update(h, &r, &sel);
    ck_assert_float_eq(sel, 7.0f);
    ck_assert_float_eq(qt_history_mult(h, 0), 64.0f);   /* 448/7 = 64 exactly -> 2^6 */
    qt_history_free(h);
}
END_TEST

START_TEST(test_history_record_accumulates_max_ignores_nan)
{
    qt_recipe r;
    float fmax[2] = {448.0f, 57344.0f}, sel[2], rows[2 * 2];
    qt_recipe_default(&r);
    r.amax_history_len = 2;
    qt_history *h = qt_history_new(2, 2, fmax);
    qt_history_record(h, 0, 3.0f);
    qt_history_record(h, 0, 2.0f);      /* max, not overwrite */
    qt_history_record(h, 0, NAN);       /* ignored, counted */
    qt_history_record(h, 1, -6.0f);     /* |x| */
    qt_history_record(h, 1, INFINITY);  /* recorded and counted */
    ck_assert_uint_eq(qt_history_nan_count(h, 0), 1);
    ck_assert_uint_eq(qt_history_inf_count(h, 1), 1);
    qt_history_export(h, rows);
    ck_assert_float_eq(rows[0], 3.0f);
    ck_assert(isinf(rows[1]));
    qt_history_update(h, &r, sel);
    ck_assert_float_eq(sel[0], 3.0f);
    /* slot 1: amax inf -> keep the old scale 1. */
    ck_assert_float_eq(qt_history_mult(h, 1), 1.0f);
    ck_assert_float_eq(qt_history_mult(h, 0), 128.0f);
    qt_history_free(h);
}
END_TEST

START_TEST(test_history_import_export_roundtrip)
{
    float fmax[3] = {448, 448, 448};
    const float in[3 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float out[9];
    qt_recipe r;
    qt_recipe_default(&r);
    r.amax_history_len = 3;
    qt_history *h = qt_history_new(3, 3, fmax);
    ck_assert_int_eq(qt_history_import(h, in, g_err, sizeof(g_err)), 0);
    qt_history_export(h, out);
    ck_assert_mem_eq(in, out, sizeof(in));
    /* update: slot 0 selects max(1,4,7) = 7; the history becomes
     * [0,0,0 | 7,8,9 | 1,2,3]. */
    float sel[3];
    qt_history_update(h, &r, sel);
    ck_assert_float_eq(sel[0], 7.0f);
    ck_assert_float_eq(sel[2], 9.0f);
    qt_history_export(h, out);
    ck_assert_float_eq(out[3], 7.0f);
    ck_assert_float_eq(out[6], 1.0f);
    float bad[9] = {1, 2, 3, 4, NAN, 6, 7, 8, 9};
    ck_assert_int_eq(qt_history_import(h, bad, g_err, sizeof(g_err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(g_err, "row 1 slot 1"));
    ck_assert_int_eq(qt_history_set_mult(h, 0, 0.0f), -EINVAL);
    ck_assert_int_eq(qt_history_set_mult(h, 0, 8.0f), 0);
    ck_assert_float_eq(qt_history_descale(h, 0), 0.125f);
    qt_history_free(h);
}
END_TEST

START_TEST(test_recipe_json_parse_and_errors)
{
    qt_recipe r, back;
    char buf[512];
    ck_assert_int_eq(qt_recipe_parse(&r, "{\"margin\": 1, \"fp8_format\": \"e4m3\", "
                                     "\"amax_compute_algo\": \"MOST_RECENT\", "
                                     "\"amax_history_len\": 16, \"interval\": 5, "
                                     "\"scale_rule\": \"Exact\"}", g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(r.margin, 1);
    ck_assert_int_eq(r.fp8_format, QT_FORMAT_E4M3);
    ck_assert_int_eq(r.amax_compute_algo, QT_AMAX_MOST_RECENT);
    ck_assert_int_eq(r.amax_history_len, 16);
    ck_assert_int_eq(r.scale_rule, QT_SCALE_EXACT);
    ck_assert_int_gt(qt_recipe_format(&r, buf, sizeof(buf)), 0);
    ck_assert_int_eq(qt_recipe_parse(&back, buf, g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(back.margin, 1);
    ck_assert_int_eq(back.interval, 5);
    ck_assert_int_eq(back.fp8_format, QT_FORMAT_E4M3);
    ck_assert_int_eq(back.amax_history_len, 16);
    ck_assert_int_eq(back.amax_compute_algo, QT_AMAX_MOST_RECENT);
    ck_assert_int_eq(back.scale_rule, QT_SCALE_EXACT);
    ck_assert(back.reduce_amax);
    ck_assert_int_eq(qt_recipe_format(&r, buf, 10), -ENOSPC);

    ck_assert_int_eq(qt_recipe_parse(&r, "{\"margn\": 1}", g_err, sizeof(g_err)),
                     QT_E_UNKNOWN_KEY);
    ck_assert_ptr_nonnull(strstr(g_err, "\"margn\""));
    ck_assert_int_eq(qt_recipe_parse(&r, "{\"fp8_format\": \"E3M4\"}", g_err, sizeof(g_err)),
                     QT_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(g_err, "E3M4"));
    ck_assert_int_eq(qt_recipe_parse(&r, "{\"amax_history_len\": 0}", g_err, sizeof(g_err)),
                     QT_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(g_err, "amax_history_len"));
    ck_assert_int_eq(qt_recipe_parse(&r, "{\"margin\": 1.5}", g_err, sizeof(g_err)),
                     QT_E_CONFIG);
    ck_assert_int_eq(qt_recipe_parse(&r, "{\"reduce_amax\": 1}", g_err, sizeof(g_err)),
                     QT_E_CONFIG);
    ck_assert_int_eq(qt_recipe_parse(&r, "{\"margin\": ", g_err, sizeof(g_err)), -EINVAL);
    ck_assert_int_eq(r.margin, 1);   /* unchanged by the failures */
}
END_TEST

/* ---------------------------------------------------------- config */

START_TEST(test_config_defaults)
{
    qt_config *c = qt_config_new_default();
    ck_assert_int_eq(qt_config_mode(c), QT_MODE_AUTO);
    ck_assert_int_eq(qt_config_fp8_format(c), KN_FP8_E4M3);
    ck_assert_int_eq(qt_config_hp_dtype(c), QT_HP_BF16);
    ck_assert_int_eq(qt_config_observer(c), QT_OBS_MAXABS);
    ck_assert_int_eq(qt_config_measure_exclude(c), QT_EXCL_OUTPUT);
    ck_assert_int_eq(qt_config_scale_method(c), QT_SM_MAXABS_HW);
    ck_assert_int_eq(qt_config_device(c), QT_DEV_GAUDI3);
    ck_assert_str_eq(qt_config_dump_stats_path(c), "./hqt_output/measure");
    ck_assert_float_eq(qt_config_input_backoff(c), 0.25f);
    ck_assert_float_eq(qt_config_weight_backoff(c), 0.5f);
    ck_assert(qt_config_ignore_unmeasured(c));
    ck_assert(!qt_config_measures_output(c, QT_MOD_LINEAR));
    ck_assert(qt_config_measures_output(c, QT_MOD_SOFTMAX));
    ck_assert(qt_config_measures_output(c, QT_MOD_FUSED_SDPA));
    qt_config_free(c);
    /* An empty object gives the same defaults. */
    c = config_from("{}");
    ck_assert_int_eq(qt_config_scale_method(c), QT_SM_MAXABS_HW);
    ck_assert_int_eq(qt_config_warning_count(c), 0);
    qt_config_free(c);
}
END_TEST

START_TEST(test_config_enums_case_insensitive)
{
    qt_config *c = config_from("{\"fp8_config\": \"e5m2\", \"mode\": \"measure\", "
                               "\"scale_method\": \"MAXABS_POW2\", \"hp_dtype\": \"FP32\", "
                               "\"observer\": \"MaxAbs_Per_Channel\", \"measure_exclude\": "
                               "\"none\", \"device_for_scales\": \"Gaudi2\"}");
    ck_assert_int_eq(qt_config_fp8_format(c), KN_FP8_E5M2);
    ck_assert_int_eq(qt_config_mode(c), QT_MODE_MEASURE);
    ck_assert_int_eq(qt_config_scale_method(c), QT_SM_MAXABS_POW2);
    ck_assert_int_eq(qt_config_hp_dtype(c), QT_HP_FP32);
    ck_assert_int_eq(qt_config_observer(c), QT_OBS_MAXABS_PER_CHANNEL);
    ck_assert_int_eq(qt_config_measure_exclude(c), QT_EXCL_NONE);
    ck_assert_int_eq(qt_config_device(c), QT_DEV_GAUDI2);
    ck_assert(qt_config_measures_output(c, QT_MOD_LINEAR));
    qt_config_free(c);
    c = config_from("{\"scale_method\": \"without_scale\", \"mode\": \"NONE\", "
                    "\"scale_params\": {\"input_backoff\": 0.5, \"weight_backoff\": 1}}");
    ck_assert_int_eq(qt_config_scale_method(c), QT_SM_UNIT_SCALE);
    ck_assert_int_eq(qt_config_mode(c), QT_MODE_OFF);
    ck_assert_float_eq(qt_config_input_backoff(c), 0.5f);
    ck_assert_float_eq(qt_config_weight_backoff(c), 1.0f);
    qt_config_free(c);
}
END_TEST

static const struct {
    const char *json;
    int rc;
    const char *needle;     /* must appear in the message */
} k_bad_configs[] = {
    {"{\"fp8_confg\": \"E4M3\"}", QT_E_UNKNOWN_KEY, "\"fp8_confg\""},
    {"{\"fp8_config\": \"E3M4\"}", QT_E_CONFIG, "\"E3M4\""},
    {"{\"fp8_config\": 1}", QT_E_CONFIG, "\"fp8_config\""},
    {"{\"hp_dtype\": \"int8\"}", QT_E_CONFIG, "\"int8\""},
    {"{\"observer\": \"save\"}", QT_E_UNSUPPORTED, "\"save\""},
    {"{\"observer\": \"minmax\"}", QT_E_CONFIG, "\"minmax\""},
    {"{\"mode\": \"SHAPE\"}", QT_E_UNSUPPORTED, "\"SHAPE\""},
    {"{\"mode\": \"TRAIN\"}", QT_E_CONFIG, "\"TRAIN\""},
    {"{\"scale_method\": \"max\"}", QT_E_CONFIG, "\"max\""},
    {"{\"scale_method\": \"smoothquant_opt\"}", QT_E_UNSUPPORTED, "\"smoothquant_opt\""},
    {"{\"scale_method\": {\"activation\": \"maxabs\"}}", QT_E_UNSUPPORTED, "\"scale_method\""},
    {"{\"measure_exclude\": \"WEIGHTS\"}", QT_E_CONFIG, "\"WEIGHTS\""},
    {"{\"device_for_scales\": \"gaudi1\"}", QT_E_CONFIG, "\"gaudi1\""},
    {"{\"allowlist\": {\"names\": [\"(unclosed\"]}}", QT_E_CONFIG, "allowlist.names[0]"},
    {"{\"allowlist\": {\"nams\": []}}", QT_E_UNKNOWN_KEY, "allowlist.nams"},
    /* stacked quantifiers make glibc's regcomp take minutes (fuzzing) */
    {"{\"allowlist\": {\"names\": [\"l0Y+++++++++++++++++++++++++++++++++++++++\"]}}",
     QT_E_CONFIG, "quantifier follows another"},
    {"{\"blocklist\": {\"names\": [\"a*?\"]}}", QT_E_CONFIG, "blocklist.names[0]"},
    {"{\"allowlist\": []}", QT_E_CONFIG, "\"allowlist\""},
    {"{\"blocklist\": {\"types\": [\"Lineer\"]}}", QT_E_CONFIG, "\"Lineer\""},
    {"{\"blocklist\": {\"names\": \"lm_head\"}}", QT_E_CONFIG, "blocklist.names"},
    {"{\"blocklist\": {\"names\": [\"a\", 3]}}", QT_E_CONFIG, "blocklist.names[1]"},
    {"{\"dump_stats_path\": \"\"}", QT_E_CONFIG, "\"dump_stats_path\""},
    {"{\"dump_stats_path\": 7}", QT_E_CONFIG, "\"dump_stats_path\""},
    {"{\"scale_params\": {\"input_backoff\": 0}}", QT_E_CONFIG, "scale_params.input_backoff"},
    {"{\"scale_params\": {\"weight_backoff\": \"x\"}}", QT_E_CONFIG, "weight_backoff"},
    {"{\"scale_params\": {\"gamma\": 1}}", QT_E_UNKNOWN_KEY, "scale_params.gamma"},
    {"{\"scale_params\": 3}", QT_E_CONFIG, "\"scale_params\""},
    {"{\"ignore_modules_wo_measures\": \"yes\"}", QT_E_CONFIG, "ignore_modules_wo_measures"},
    {"{\"mod_dict\": {\"A\": \"B\"}}", QT_E_UNSUPPORTED, "\"mod_dict\""},
    {"{\"allowlist\": {}, \"whitelist\": {}}", QT_E_CONFIG, "\"whitelist\""},
    {"{\"blocklist\": {}, \"blacklist\": {}}", QT_E_CONFIG, "\"blacklist\""},
    {"[1, 2]", QT_E_CONFIG, "top level"},
    {"{\"mode\": \"AUTO\",}", -EINVAL, "line 1"},
    {"{\"mode\": \"AUTO\", \"mode\": \"MEASURE\"}", -EINVAL, "mode"},
};

START_TEST(test_config_error_names_key_and_value)
{
    qt_config *c = (qt_config *)1;
    g_err[0] = '\0';
    int rc = qt_config_parse(&c, k_bad_configs[_i].json, "cfg.json", g_err, sizeof(g_err));
    ck_assert_msg(rc == k_bad_configs[_i].rc, "%s: rc %d (%s), expected %d",
                  k_bad_configs[_i].json, rc, g_err, k_bad_configs[_i].rc);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(g_err, k_bad_configs[_i].needle) != NULL, "%s: message \"%s\" lacks %s",
                  k_bad_configs[_i].json, g_err, k_bad_configs[_i].needle);
    ck_assert_msg(rc == -EINVAL || strstr(g_err, "cfg.json") != NULL,
                  "message \"%s\" does not name the file", g_err);
}
END_TEST

static void example_path(char *buf, size_t len, const char *name)
{
    const char *top = getenv("FP8D_TOP_SRCDIR");
    if (top != NULL)
        snprintf(buf, len, "%s/examples/%s", top, name);
    else
        snprintf(buf, len, "%s/../../examples/%s",
                 getenv("FP8D_TEST_DATA") ? getenv("FP8D_TEST_DATA") : "tests/data", name);
}

START_TEST(test_example_config_is_every_default)
{
    char path[1024];
    qt_config *c = NULL, *d = qt_config_new_default();
    example_path(path, sizeof(path), "fp8-config.json");
    log_start();
    ck_assert_msg(qt_config_load(&c, path, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_int_eq(qt_config_warning_count(c), 0);
    ck_assert_int_eq(qt_config_mode(c), qt_config_mode(d));
    ck_assert_int_eq(qt_config_fp8_format(c), qt_config_fp8_format(d));
    ck_assert_int_eq(qt_config_hp_dtype(c), qt_config_hp_dtype(d));
    ck_assert_int_eq(qt_config_observer(c), qt_config_observer(d));
    ck_assert_int_eq(qt_config_measure_exclude(c), qt_config_measure_exclude(d));
    ck_assert_int_eq(qt_config_scale_method(c), qt_config_scale_method(d));
    ck_assert_int_eq(qt_config_device(c), qt_config_device(d));
    ck_assert_str_eq(qt_config_dump_stats_path(c), qt_config_dump_stats_path(d));
    ck_assert_float_eq(qt_config_input_backoff(c), qt_config_input_backoff(d));
    ck_assert_float_eq(qt_config_weight_backoff(c), qt_config_weight_backoff(d));
    ck_assert(qt_config_ignore_unmeasured(c) == qt_config_ignore_unmeasured(d));
    for (int t = 0; t < QT_MOD_COUNT; t++) {
        ck_assert(qt_config_selects(c, "model.layers.0.mlp.up_proj", (qt_mod_type)t));
        ck_assert(qt_config_selects(d, "model.layers.0.mlp.up_proj", (qt_mod_type)t));
    }
    qt_config_free(c);
    qt_config_free(d);
}
END_TEST

START_TEST(test_example_gaudi_config_accepted_with_warnings)
{
    static const char *const keys[] = {"method", "measure_on_hpu", "scale_format", "use_qdq",
                                       "fake_quant", "recalc_scales", "seperate_measure_files",
                                       "calibration_sample_interval"};
    char path[1024], needle[64];
    qt_config *c = NULL;
    example_path(path, sizeof(path), "fp8-config-gaudi.json");
    log_start();
    ck_assert_msg(qt_config_load(&c, path, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_int_eq(qt_config_warning_count(c), 8);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        snprintf(needle, sizeof(needle), "key \"%s\" ignored", keys[i]);
        ck_assert_msg(strstr(g_log, needle) != NULL, "no warning naming %s in:\n%s", keys[i],
                      g_log);
    }
    ck_assert_ptr_nonnull(strstr(g_log, "fp8-config-gaudi.json"));
    ck_assert_int_eq(qt_config_mode(c), QT_MODE_QUANTIZE);
    ck_assert_int_eq(qt_config_device(c), QT_DEV_GAUDI2);
    /* Empty allowlist lists: every supported type; lm_head blocked. */
    ck_assert(qt_config_selects(c, "model.layers.0.self_attn.q_proj", QT_MOD_LINEAR));
    ck_assert(!qt_config_selects(c, "lm_head", QT_MOD_LINEAR));
    qt_config_free(c);
}
END_TEST

START_TEST(test_config_load_missing_file_names_path)
{
    qt_config *c = NULL;
    ck_assert_int_eq(qt_config_load(&c, "/nonexistent/fp8.json", g_err, sizeof(g_err)),
                     -ENOENT);
    ck_assert_ptr_nonnull(strstr(g_err, "/nonexistent/fp8.json"));
}
END_TEST

/* ---------------------------------------------------------- select */

START_TEST(test_select_allow_block_on_module_names)
{
    qt_config *c = config_from(
        "{\"allowlist\": {\"names\": [\"self_attn\"], \"types\": []},"
        " \"blocklist\": {\"names\": [\"layers\\\\.1\\\\.\", \"lm_head\"], \"types\": []}}");
    ck_assert(qt_config_selects(c, "model.layers.0.self_attn.q_proj", QT_MOD_LINEAR));
    ck_assert(qt_config_selects(c, "model.layers.0.self_attn.matmul_qk", QT_MOD_MATMUL));
    ck_assert(!qt_config_selects(c, "model.layers.0.mlp.down_proj", QT_MOD_LINEAR));
    ck_assert(!qt_config_selects(c, "model.layers.1.self_attn.q_proj", QT_MOD_LINEAR));
    /* "layers\.1\." does not match "layers.11." */
    ck_assert(qt_config_selects(c, "model.layers.11.self_attn.k_proj", QT_MOD_LINEAR));
    ck_assert(!qt_config_selects(c, "lm_head", QT_MOD_LINEAR));
    qt_config_free(c);

    /* Type lists: allow only Linear (with torch's dotted name). */
    c = config_from("{\"allowlist\": {\"names\": [], \"types\": [\"torch.nn.Linear\"]}}");
    ck_assert(qt_config_selects(c, "model.layers.0.mlp.up_proj", QT_MOD_LINEAR));
    ck_assert(!qt_config_selects(c, "model.layers.0.self_attn.k_cache", QT_MOD_KV_CACHE));
    qt_config_free(c);
    c = config_from("{\"blocklist\": {\"types\": [\"Matmul\", \"Conv2d\"]}}");
    ck_assert(!qt_config_selects(c, "model.layers.0.self_attn.matmul_av", QT_MOD_MATMUL));
    ck_assert(qt_config_selects(c, "model.layers.0.self_attn.o_proj", QT_MOD_LINEAR));
    qt_config_free(c);

    /* Blocklist wins over the same allowlist name. */
    c = config_from("{\"allowlist\": {\"names\": [\"q_proj\"], \"types\": []},"
                    " \"blocklist\": {\"names\": [\"q_proj\"]}}");
    ck_assert(!qt_config_selects(c, "model.layers.0.self_attn.q_proj", QT_MOD_LINEAR));
    qt_config_free(c);

    /* An unescaped '.' matches any character (documented difference). */
    c = config_from("{\"allowlist\": {\"names\": [\"layers.1.mlp\"], \"types\": []}}");
    ck_assert(qt_config_selects(c, "model.layers.1.mlp.up_proj", QT_MOD_LINEAR));
    ck_assert(qt_config_selects(c, "model.layers_1_mlp", QT_MOD_LINEAR));
    ck_assert(!qt_config_selects(c, "model.layers.2.mlp.up_proj", QT_MOD_LINEAR));
    qt_config_free(c);

    /* Both allowlist lists empty: everything supported. */
    c = config_from("{\"allowlist\": {\"names\": [], \"types\": []}}");
    ck_assert(qt_config_selects(c, "anything", QT_MOD_FUSED_SDPA));
    qt_config_free(c);

    /* Names with the default (full) type list restrict nothing, with a
     * warning (INC main's rule, §4.3). */
    log_start();
    c = config_from("{\"allowlist\": {\"names\": [\"q_proj\"], \"types\": [\"Linear\", "
                    "\"Matmul\", \"KVCache\", \"Softmax\", \"ModuleFusedSDPA\"]}}");
    ck_assert(qt_config_selects(c, "model.layers.0.mlp.up_proj", QT_MOD_LINEAR));
    ck_assert_ptr_nonnull(strstr(g_log, "allowlist.names has no effect"));
    qt_config_free(c);
}
END_TEST

START_TEST(test_mod_type_names)
{
    qt_mod_type t;
    ck_assert_int_eq(qt_mod_type_parse("torch.nn.Linear", &t), 0);
    ck_assert_int_eq(t, QT_MOD_LINEAR);
    ck_assert_int_eq(qt_mod_type_parse("FusedSDPA", &t), 0);
    ck_assert_int_eq(t, QT_MOD_FUSED_SDPA);
    ck_assert_int_eq(qt_mod_type_parse("kvcache", &t), 0);
    ck_assert_int_eq(t, QT_MOD_KV_CACHE);
    ck_assert_int_eq(qt_mod_type_parse("Conv2d", &t), -EINVAL);
    ck_assert_str_eq(qt_mod_type_name(QT_MOD_FUSED_SDPA), "ModuleFusedSDPA");
    ck_assert_int_eq(qt_mod_type_inputs(QT_MOD_FUSED_SDPA), 3);
    ck_assert_int_eq(qt_mod_type_outputs(QT_MOD_FUSED_SDPA), 2);
}
END_TEST

/* ---------------------------------------------------------- scales */

static qt_scale_params params(qt_scale_method m, qt_device dev)
{
    qt_scale_params p = {m, KN_FP8_E4M3, dev, 0.25f, 0.5f};
    return p;
}

START_TEST(test_fullscale_and_roundings)
{
    ck_assert_float_eq(qt_fullscale(KN_FP8_E4M3, QT_DEV_GAUDI3), 448.0f);
    ck_assert_float_eq(qt_fullscale(KN_FP8_E4M3, QT_DEV_GAUDI2), 240.0f);
    ck_assert_float_eq(qt_fullscale(KN_FP8_E5M2, QT_DEV_GAUDI2), 57344.0f);
    ck_assert_float_eq(qt_pow2up(0.05f), 0.0625f);
    ck_assert_float_eq(qt_pow2up(0.0625f), 0.0625f);     /* exact power stays */
    ck_assert_float_eq(qt_pow2up(3.3333f), 4.0f);
    ck_assert_float_eq(qt_pow2up(0.0f), 0.0f);
    /* Gaudi2 steps of 2^4 in [2^-8, 2^4]: 0.05 -> 2^-4 -> 2^-4;
     * 3.33 -> 2^2 -> ceil(2/4)*4 = 2^4; 0.003 -> 2^-8; 1e-6 -> clamp 2^-8;
     * 0 -> 2^-8 and inf -> 2^4 (INC's rounding alone). */
    ck_assert_float_eq(qt_hw_align(0.05f, QT_DEV_GAUDI2), 0.0625f);
    ck_assert_float_eq(qt_hw_align(3.3333f, QT_DEV_GAUDI2), 16.0f);
    ck_assert_float_eq(qt_hw_align(0.003f, QT_DEV_GAUDI2), 1.0f / 256.0f);
    ck_assert_float_eq(qt_hw_align(1e-6f, QT_DEV_GAUDI2), 1.0f / 256.0f);
    ck_assert_float_eq(qt_hw_align(0.0f, QT_DEV_GAUDI2), 1.0f / 256.0f);
    ck_assert_float_eq(qt_hw_align(INFINITY, QT_DEV_GAUDI2), 16.0f);
    /* 0.2 -> 2^-2 -> ceil(-2/4) = 0 -> 2^0. */
    ck_assert_float_eq(qt_hw_align(0.2f, QT_DEV_GAUDI2), 1.0f);
    /* Gaudi3: every power of two in [2^-55, 2^7]. */
    ck_assert_float_eq(qt_hw_align(0.2f, QT_DEV_GAUDI3), 0.25f);
    ck_assert_float_eq(qt_hw_align(1000.0f, QT_DEV_GAUDI3), 128.0f);
    ck_assert_float_eq(qt_hw_align(0.0f, QT_DEV_GAUDI3), ldexpf(1.0f, -55));
}
END_TEST

START_TEST(test_act_scales_table)
{
    /* Activations: s = m / (F * 0.25); F*0.25 = 112 (448) or 60 (240). */
    static const struct { float m, pow2, hw2, hw3; } rows[] = {
        /* 3/112 = 0.0268 -> 2^-5; 3/60 = 0.05 -> 2^-4 (Gaudi2 set has it) */
        {3.0f, 0.03125f, 0.0625f, 0.03125f},
        /* 200/112 = 1.79 -> 2; 200/60 = 3.33 -> 4 -> 16 on Gaudi2 */
        {200.0f, 2.0f, 16.0f, 2.0f},
        /* 448/112 = 4 exactly; 448/60 = 7.47 -> 8 -> 16 */
        {448.0f, 4.0f, 16.0f, 4.0f},
        /* 1000/112 = 8.93 -> 16; 1000/60 = 16.7 -> 32 -> 2^8 clamp 16 */
        {1000.0f, 16.0f, 16.0f, 16.0f},
    };
    bool degen;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        qt_scale_params p = params(QT_SM_MAXABS_POW2, QT_DEV_GAUDI3);
        ck_assert_float_eq(qt_scale_act(&p, rows[i].m, &degen), rows[i].pow2);
        ck_assert(!degen);
        p = params(QT_SM_MAXABS_HW, QT_DEV_GAUDI2);
        ck_assert_float_eq(qt_scale_act(&p, rows[i].m, &degen), rows[i].hw2);
        p = params(QT_SM_MAXABS_HW, QT_DEV_GAUDI3);
        ck_assert_float_eq(qt_scale_act(&p, rows[i].m, &degen), rows[i].hw3);
    }
    qt_scale_params p = params(QT_SM_MAXABS_ARBITRARY, QT_DEV_GAUDI3);
    ck_assert_float_eq(qt_scale_act(&p, 3.0f, NULL), 3.0f / 112.0f);
    p = params(QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_OPT_POW2, QT_DEV_GAUDI3);
    ck_assert_float_eq(qt_scale_act(&p, 200.0f, NULL), 2.0f);
    p = params(QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2, QT_DEV_GAUDI2);
    ck_assert_float_eq(qt_scale_act(&p, 200.0f, NULL), 16.0f);
    /* E5M2: 200 / (57344 * 0.25) = 0.01395 -> 2^-6 */
    p = params(QT_SM_MAXABS_POW2, QT_DEV_GAUDI3);
    p.fmt = KN_FP8_E5M2;
    ck_assert_float_eq(qt_scale_act(&p, 200.0f, NULL), 0.015625f);
    /* scale_params backoff 0.5: 200/224 = 0.89 -> 1 */
    p = params(QT_SM_MAXABS_POW2, QT_DEV_GAUDI3);
    p.input_backoff = 0.5f;
    ck_assert_float_eq(qt_scale_act(&p, 200.0f, NULL), 1.0f);
    /* unit and single scale */
    p = params(QT_SM_UNIT_SCALE, QT_DEV_GAUDI3);
    ck_assert_float_eq(qt_scale_act(&p, 1000.0f, NULL), 1.0f);
    p = params(QT_SM_HW_ALIGNED_SINGLE_SCALE, QT_DEV_GAUDI2);
    ck_assert_float_eq(qt_scale_act(&p, 3.0f, NULL), 16.0f);
    p = params(QT_SM_HW_ALIGNED_SINGLE_SCALE, QT_DEV_GAUDI3);
    ck_assert_float_eq(qt_scale_act(&p, 3.0f, NULL), 128.0f);
}
END_TEST

START_TEST(test_act_scale_degenerate_is_unit)
{
    static const float bad[] = {0.0f, NAN, INFINITY, -2.0f, 1e-45f};
    for (int m = 0; m < 2; m++) {
        qt_scale_params p = params(m ? QT_SM_MAXABS_HW : QT_SM_MAXABS_POW2, QT_DEV_GAUDI3);
        /* 1e-45/112 underflows to 0: pow2up(0) = 0 has no inverse (unit);
         * the HW rounding clamps it to 2^-55 instead (INC's clamp). */
        size_t n_bad = m ? 4 : 5;
        for (size_t i = 0; i < n_bad; i++) {
            bool degen = false;
            ck_assert_float_eq(qt_scale_act(&p, bad[i], &degen), 1.0f);
            ck_assert_msg(degen, "m = %g not flagged", (double)bad[i]);
        }
    }
    qt_scale_params ph = params(QT_SM_MAXABS_HW, QT_DEV_GAUDI3);
    ck_assert_float_eq(qt_scale_act(&ph, 1e-45f, NULL), ldexpf(1.0f, -55));
    /* Arbitrary: 1e-40/112 is ~9e-43, whose inverse overflows: unit. */
    qt_scale_params p = params(QT_SM_MAXABS_ARBITRARY, QT_DEV_GAUDI3);
    bool degen = false;
    ck_assert_float_eq(qt_scale_act(&p, 1e-40f, &degen), 1.0f);
    ck_assert(degen);
}
END_TEST

START_TEST(test_weight_scale_per_tensor)
{
    const float w[4] = {100.0f, -1.0f, 0.5f, 0.25f};
    float s[2];
    /* max 100 / (448*0.5 = 224) = 0.446 -> pow2 0.5; hw Gaudi3 0.5;
     * Gaudi2 100/120 = 0.83 -> 1 -> 2^0; arbitrary 100/224. */
    qt_scale_params p = params(QT_SM_MAXABS_POW2, QT_DEV_GAUDI3);
    ck_assert_int_eq(qt_scale_weight(&p, w, 2, 2, s), 0);
    ck_assert_float_eq(s[0], 0.5f);
    p = params(QT_SM_MAXABS_HW, QT_DEV_GAUDI2);
    qt_scale_weight(&p, w, 2, 2, s);
    ck_assert_float_eq(s[0], 1.0f);
    p = params(QT_SM_MAXABS_ARBITRARY, QT_DEV_GAUDI3);
    qt_scale_weight(&p, w, 2, 2, s);
    ck_assert_float_eq(s[0], 100.0f / 224.0f);
    const float z[2] = {0, 0};
    p = params(QT_SM_MAXABS_POW2, QT_DEV_GAUDI3);
    ck_assert_int_eq(qt_scale_weight(&p, z, 1, 2, s), 1);   /* degenerate */
    ck_assert_float_eq(s[0], 1.0f);
}
END_TEST

START_TEST(test_weight_scale_mse_hw_gaudi2)
{
    /* W = [100, 0.01], candidates {16, 1, 1/16, 1/256} (E4M3, saturating):
     * c=16:   100/16 = 6.25, tie between 6.0 (mantissa even) and 6.5 -> 6.0,
     *         *16 = 96, err 16; 0.01/16 = 6.25e-4 < half the min subnormal
     *         2^-9 -> 0, err 1e-4.                    total 16.0001
     * c=1:    100 -> tie 96/104 -> 96, err 16; 0.01 = 5.12 * 2^-9 -> 5 units
     *         = 0.009765625, err 5.5e-8.              total 16.000000055
     * c=1/16: 1600 saturates to 448 -> 28, err 72^2 = 5184.
     * c=1/256: worse still.  The MSE choice is 1. */
    const float w[2] = {100.0f, 0.01f};
    float s[1];
    qt_scale_params p = params(QT_SM_MAXABS_HW_OPT_WEIGHT, QT_DEV_GAUDI2);
    ck_assert_int_eq(qt_scale_weight(&p, w, 1, 2, s), 0);
    ck_assert_float_eq(s[0], 1.0f);
}
END_TEST

START_TEST(test_weight_scale_mse_tie_goes_later)
{
    /* W = [3]: 3/c is exact (err 0) for every c in 2^-10 .. 2^9 except
     * where 3/c > 448 (c <= 2^-8: 768 saturates).  3/512 = 3 * 2^-9 is
     * three min subnormals, exact.  Ties go to the later candidate: 2^9. */
    const float w[1] = {3.0f};
    float s[1];
    qt_scale_params p = params(QT_SM_MAXABS_POW2_OPT_WEIGHT, QT_DEV_GAUDI3);
    qt_scale_weight(&p, w, 1, 1, s);
    ck_assert_float_eq(s[0], 512.0f);
}
END_TEST

START_TEST(test_weight_scale_per_channel)
{
    /* Rows: max 100 -> 100/224 = 0.446 -> 0.5; max 0.5 -> 0.00223 ->
     * 2^-8 = 0.00390625; zero row -> degenerate, 1. */
    const float w[6] = {100.0f, 1.0f, 0.5f, -0.25f, 0.0f, 0.0f};
    float s[3];
    qt_scale_params p = params(QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2, QT_DEV_GAUDI3);
    ck_assert(qt_scale_method_per_channel(p.method));
    ck_assert_int_eq(qt_scale_weight(&p, w, 3, 2, s), 1);
    ck_assert_float_eq(s[0], 0.5f);
    ck_assert_float_eq(s[1], 0.00390625f);
    ck_assert_float_eq(s[2], 1.0f);
}
END_TEST

START_TEST(test_weight_scale_per_channel_mse)
{
    /* Row [100, 0.01]: reference pow2up(100/224) = 0.5, candidates 0.5 *
     * 2^-3 .. 2^4 = 1/16 .. 8.
     * 1/16: 1600 -> 448 -> 28 (err 5184); 1/8: 800 -> 448 -> 56 (1936);
     * 1/4: 400 ties 384/416 -> 384 -> 96 (16); 0.04 = 10.24 * 2^-8 -> 10
     *      -> 0.0390625 -> 0.009765625;
     * 1/2: 200 ties 192/208 -> 192 -> 96; 0.02 -> 10 * 2^-9 -> same;
     * 1:   96 and 5 * 2^-9 = 0.009765625 -> the same error again;
     * 2:   50 -> 48 -> 96; 0.005 -> 3 * 2^-9 * 2 = 0.0117, larger error.
     * Minimum at 1/4, 1/2 and 1; per channel ties go to the earlier: 1/4.
     * Row [3, 0]: ref pow2up(3/224 = 0.0134) = 2^-6, candidates 2^-9 ..
     * 2^-2: 3/2^-9 = 1536 and 3/2^-8 = 768 saturate to 448; 3/2^-7 = 384
     * is exact (err 0), as are all later ones; earliest: 2^-7. */
    const float w[4] = {100.0f, 0.01f, 3.0f, 0.0f};
    float s[2];
    qt_scale_params p = params(QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_OPT_POW2, QT_DEV_GAUDI3);
    ck_assert_int_eq(qt_scale_weight(&p, w, 2, 2, s), 0);
    ck_assert_float_eq(s[0], 0.25f);
    ck_assert_float_eq(s[1], 0.0078125f);
}
END_TEST

START_TEST(test_method_names)
{
    ck_assert_str_eq(qt_scale_method_name(QT_SM_MAXABS_HW), "maxabs_hw");
    ck_assert_str_eq(qt_scale_method_name(QT_SM_UNIT_SCALE), "unit_scale");
    ck_assert_str_eq(qt_scale_method_enum_name(QT_SM_ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2),
                     "ACT_MAXABS_HW_WEIGHTS_PCS_MAXABS_POW2");
    ck_assert_str_eq(qt_strerror(QT_E_SHAPE), "measurement shape does not match the module");
    ck_assert_str_eq(qt_strerror(-ENOENT), strerror(ENOENT));
}
END_TEST

/* ---------------------------------------------------------- observers */

START_TEST(test_observer_maxabs)
{
    const float x[5] = {1.0f, -7.5f, NAN, 3.0f, -0.0f};
    size_t n_nan = 9;
    ck_assert_float_eq(qt_observe_maxabs(x, 5, &n_nan), 7.5f);
    ck_assert_uint_eq(n_nan, 1);
    ck_assert_float_eq(qt_observe_maxabs(x, 0, &n_nan), 0.0f);
    ck_assert_uint_eq(n_nan, 0);
}
END_TEST

START_TEST(test_observer_per_channel_axes)
{
    /* x [2,3] row-major: [[1,-5,2],[-4,3,NaN]] */
    const float x[6] = {1, -5, 2, -4, 3, NAN};
    float st[3] = {0, 0, 2.5f};
    /* axis -1 (3 channels): max per column: 4, 5, max(2, 2.5 kept) */
    ck_assert_uint_eq(qt_observe_maxabs_channels(st, x, 2, 3, 1), 1);
    ck_assert_float_eq(st[0], 4.0f);
    ck_assert_float_eq(st[1], 5.0f);
    ck_assert_float_eq(st[2], 2.5f);
    /* axis 0 of a weight [2,3]: max per row: 5, 4 */
    float r[2] = {0, 0};
    qt_observe_maxabs_channels(r, x, 1, 2, 3);
    ck_assert_float_eq(r[0], 5.0f);
    ck_assert_float_eq(r[1], 4.0f);
    /* axis -2 of [2 batches, 1 row... ] as [b=2][ch=1][inner=3]: 5 */
    float one[1] = {0};
    qt_observe_maxabs_channels(one, x, 2, 1, 3);
    ck_assert_float_eq(one[0], 5.0f);
}
END_TEST

/* ---------------------------------------------------------- modules */

/* A small model: q_proj (Linear 2x3), matmul_qk, softmax. */
static qt_modset *small_modset(const qt_config *c, const qt_recipe *r)
{
    qt_modset *s = qt_modset_new(c, r);
    ck_assert_int_eq(qt_modset_add(s, "model.layers.0.self_attn.q_proj", QT_MOD_LINEAR, 2, 3, 0,
                                   NULL, g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(qt_modset_add(s, "model.layers.0.self_attn.matmul_qk", QT_MOD_MATMUL, 0,
                                   0, 0, NULL, g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(qt_modset_add(s, "model.layers.0.self_attn.softmax", QT_MOD_SOFTMAX, 0, 0,
                                   0, NULL, g_err, sizeof(g_err)), 0);
    return s;
}

static const float k_w[6] = {0.4375f, -0.125f, 0.25f, 0.0625f, 0.1f, -0.3f};

static void observe_small(qt_modset *s)
{
    qt_module *q = qt_modset_find(s, "model.layers.0.self_attn.q_proj");
    qt_module *mm = qt_modset_find(s, "model.layers.0.self_attn.matmul_qk");
    qt_module *sm = qt_modset_find(s, "model.layers.0.self_attn.softmax");
    const float x1[3] = {1.0f, -3.53125f, 2.0f}, x2[3] = {0.5f, 3.0f, -1.0f};
    const float a[2] = {12.0f, -1.0f}, b[2] = {9.5f, 2.0f}, p[2] = {30.25f, 1.0f};
    const float y[2] = {0.25f, 1.0f};
    ck_assert_int_eq(qt_module_observe(q, QT_SLOT_INPUT, 0, x1, 3), 0);
    ck_assert_int_eq(qt_module_observe(q, QT_SLOT_INPUT, 0, x2, 3), 0);
    ck_assert_int_eq(qt_module_observe(q, QT_SLOT_WEIGHT, 0, k_w, 6), 0);
    ck_assert_int_eq(qt_module_observe(q, QT_SLOT_OUTPUT, 0, y, 2), 0); /* excluded: ignored */
    ck_assert_int_eq(qt_module_observe(mm, QT_SLOT_INPUT, 0, a, 2), 0);
    ck_assert_int_eq(qt_module_observe(mm, QT_SLOT_INPUT, 1, b, 2), 0);
    ck_assert_int_eq(qt_module_observe(sm, QT_SLOT_INPUT, 0, p, 2), 0);
    ck_assert_int_eq(qt_module_observe(sm, QT_SLOT_OUTPUT, 0, y, 2), 0);
    ck_assert_int_eq(qt_module_observe(mm, QT_SLOT_INPUT, 2, b, 2), -EINVAL);
    const float with_nan[2] = {NAN, 0.5f};
    ck_assert_int_eq(qt_module_observe(sm, QT_SLOT_INPUT, 0, with_nan, 2), 0);
    ck_assert_uint_eq(qt_module_nan_count(sm, QT_SLOT_INPUT, 0), 1);
    ck_assert_int_eq(qt_module_observe(q, QT_SLOT_WEIGHT, 0, k_w, 5), -EINVAL);
}

START_TEST(test_module_measure_and_scales)
{
    qt_config *c = qt_config_new_default();
    qt_modset *s = small_modset(c, NULL);
    observe_small(s);
    qt_module *q = qt_modset_find(s, "model.layers.0.self_attn.q_proj");
    qt_module *mm = qt_modset_find(s, "model.layers.0.self_attn.matmul_qk");
    qt_module *sm = qt_modset_find(s, "model.layers.0.self_attn.softmax");
    ck_assert_float_eq(qt_module_measured(q, QT_SLOT_INPUT, 0), 3.53125f);
    ck_assert_float_eq(qt_module_measured(q, QT_SLOT_WEIGHT, 0), 0.4375f);
    ck_assert(isnan(qt_module_measured(q, QT_SLOT_OUTPUT, 0)));  /* OUTPUT excluded */
    ck_assert_float_eq(qt_module_measured(sm, QT_SLOT_OUTPUT, 0), 1.0f);
    ck_assert_int_eq(qt_modset_add(s, "model.layers.0.self_attn.q_proj", QT_MOD_LINEAR, 2, 3, 0,
                                   NULL, g_err, sizeof(g_err)), QT_E_DUPLICATE);

    size_t n;
    qt_scale_params p = params(QT_SM_MAXABS_POW2, QT_DEV_GAUDI3);
    /* q_proj: in 3.53125/112 = 0.0315 -> 2^-4 = 0.0625 (0.03125 < 0.0315);
     * weight 0.4375/224 = 0.00195 = 2^-9 exactly -> 2^-9; out = product. */
    ck_assert_int_eq(qt_module_compute_scales(q, &p, k_w, g_err, sizeof(g_err)), 0);
    ck_assert_float_eq(qt_module_descales(q, QT_SLOT_INPUT, 0, &n)[0], 0.0625f);
    ck_assert_float_eq(qt_module_descales(q, QT_SLOT_WEIGHT, 0, &n)[0], ldexpf(1.0f, -9));
    ck_assert_uint_eq(n, 1);
    ck_assert_float_eq(qt_module_descales(q, QT_SLOT_OUTPUT, 0, &n)[0], ldexpf(1.0f, -13));
    /* matmul: 12/112 -> 2^-3; 9.5/112 = 0.085 -> 2^-3; out 2^-6. */
    ck_assert_int_eq(qt_module_compute_scales(mm, &p, NULL, g_err, sizeof(g_err)), 0);
    ck_assert_float_eq(qt_module_descales(mm, QT_SLOT_INPUT, 1, &n)[0], 0.125f);
    ck_assert_float_eq(qt_module_descales(mm, QT_SLOT_OUTPUT, 0, &n)[0], 0.015625f);
    /* softmax: input unscaled, output 1/112 -> 2^-6. */
    ck_assert_int_eq(qt_module_compute_scales(sm, &p, NULL, g_err, sizeof(g_err)), 0);
    ck_assert_float_eq(qt_module_descales(sm, QT_SLOT_INPUT, 0, &n)[0], 1.0f);
    ck_assert_float_eq(qt_module_descales(sm, QT_SLOT_OUTPUT, 0, &n)[0], 0.015625f);

    /* Per-channel weights: rows max 0.4375 -> 2^-9, 0.3 -> 0.00134 -> 2^-9;
     * output scales per channel = s_in * s_w[o]. */
    p = params(QT_SM_ACT_MAXABS_POW2_WEIGHTS_PCS_MAXABS_POW2, QT_DEV_GAUDI3);
    ck_assert_int_eq(qt_module_compute_scales(q, &p, k_w, g_err, sizeof(g_err)), 0);
    const float *sw = qt_module_descales(q, QT_SLOT_WEIGHT, 0, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_float_eq(sw[0], ldexpf(1.0f, -9));
    ck_assert_float_eq(sw[1], ldexpf(1.0f, -9));
    ck_assert_ptr_nonnull(qt_module_descales(q, QT_SLOT_OUTPUT, 0, &n));
    ck_assert_uint_eq(n, 2);

    /* KVCache under E5M2: still E4M3's full scale, 12/112 -> 2^-3. */
    qt_module *kv;
    ck_assert_int_eq(qt_modset_add(s, "model.layers.0.self_attn.k_cache", QT_MOD_KV_CACHE, 0, 0,
                                   0, &kv, g_err, sizeof(g_err)), 0);
    const float kx[2] = {-12.0f, 3.0f};
    qt_module_observe(kv, QT_SLOT_INPUT, 0, kx, 2);
    p = params(QT_SM_MAXABS_POW2, QT_DEV_GAUDI3);
    p.fmt = KN_FP8_E5M2;
    ck_assert_int_eq(qt_module_compute_scales(kv, &p, NULL, g_err, sizeof(g_err)), 0);
    ck_assert_float_eq(qt_module_descales(kv, QT_SLOT_INPUT, 0, &n)[0], 0.125f);
    ck_assert_float_eq(qt_module_descales(kv, QT_SLOT_OUTPUT, 0, &n)[0], 0.125f);

    /* A module never measured: error naming it. */
    qt_modset_reset_measurements(s);
    ck_assert_int_eq(qt_module_compute_scales(mm, &p, NULL, g_err, sizeof(g_err)),
                     QT_E_NO_MEASURE);
    ck_assert_ptr_nonnull(strstr(g_err, "matmul_qk"));
    /* ... which unit_scale does not need. */
    p = params(QT_SM_UNIT_SCALE, QT_DEV_GAUDI3);
    ck_assert_int_eq(qt_module_compute_scales(mm, &p, NULL, g_err, sizeof(g_err)), 0);
    ck_assert_float_eq(qt_module_descales(mm, QT_SLOT_OUTPUT, 0, &n)[0], 1.0f);
    qt_modset_free(s);
    qt_config_free(c);
}
END_TEST

START_TEST(test_module_history_from_observations)
{
    qt_config *c = qt_config_new_default();
    qt_recipe r;
    qt_recipe_default(&r);
    r.amax_history_len = 2;
    qt_modset *s = small_modset(c, &r);
    observe_small(s);
    qt_module *q = qt_modset_find(s, "model.layers.0.self_attn.q_proj");
    qt_history *h = qt_module_history(q);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(qt_history_slots(h), 3);        /* input, weight, output */
    float sel[3];
    ck_assert_int_eq(qt_history_update(h, &r, sel), 0);
    /* The step saw inputs 3.53125 and 3 (max 3.53125), weight 0.4375. */
    ck_assert_float_eq(sel[0], 3.53125f);
    ck_assert_float_eq(sel[1], 0.4375f);
    /* 448/3.53125 = 126.9 -> 64; 448/0.4375 = 1024 -> 1024. */
    ck_assert_float_eq(qt_history_mult(h, 0), 64.0f);
    ck_assert_float_eq(qt_history_mult(h, 1), 1024.0f);
    qt_modset_free(s);
    qt_config_free(c);
}
END_TEST

/* ---------------------------------------------------------- files */

START_TEST(test_measure_roundtrip_layout_and_names)
{
    char dir[256], cfg[512], path[600];
    make_tmpdir(dir, sizeof(dir));
    snprintf(cfg, sizeof(cfg), "{\"dump_stats_path\": \"%s/out/measure\"}", dir);
    qt_config *c = config_from(cfg);
    qt_modset *s = small_modset(c, NULL);
    observe_small(s);
    ck_assert_int_gt(qt_measure_path(c, QT_FILE_MEASURE, path, sizeof(path)), 0);
    snprintf(cfg, sizeof(cfg), "%s/out/measure_hooks_maxabs.json", dir);
    ck_assert_str_eq(path, cfg);
    qt_measure_path(c, QT_FILE_MOD_LIST, cfg, sizeof(cfg));
    ck_assert_ptr_nonnull(strstr(cfg, "/out/measure_hooks_maxabs_mod_list.json"));
    qt_measure_path(c, QT_FILE_SCALE, cfg, sizeof(cfg));
    ck_assert_ptr_nonnull(strstr(cfg, "/out/measure_hooks_maxabs_MAXABS_HW.json"));
    ck_assert_int_eq(qt_measure_path(c, QT_FILE_MEASURE, cfg, 8), -ENAMETOOLONG);

    qt_measure *m = qt_measure_from_modset(s);
    ck_assert_int_eq(qt_measure_write(m, path, g_err, sizeof(g_err)), 0);
    qt_measure_free(m);
    /* The folder "out" was created; only the file remains (no temp). */
    snprintf(cfg, sizeof(cfg), "%s/out", dir);
    ck_assert_int_eq(count_entries(cfg), 1);

    /* INC's layout, read with jansson independently of our reader. */
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    ck_assert_ptr_nonnull(root);
    ck_assert(json_is_null(json_object_get(root, "GlobalRank")));
    ck_assert(json_is_null(json_object_get(root, "LocalRank")));
    ck_assert_str_eq(json_string_value(json_object_get(root, "Mode")), "DynamicRange");
    json_t *nodes = json_object_get(root, "Nodes");
    json_t *q = json_object_get(nodes, "model.layers.0.self_attn.q_proj");
    ck_assert_ptr_nonnull(q);
    ck_assert_double_eq(json_real_value(json_array_get(json_array_get(json_array_get(
        json_object_get(q, "inputs"), 0), 0), 0)), 3.53125);
    ck_assert_double_eq(json_real_value(json_array_get(json_array_get(json_object_get(
        json_object_get(q, "params"), "weight"), 0), 0)), 0.4375);
    ck_assert_ptr_null(json_object_get(q, "outputs"));   /* OUTPUT excluded */
    json_t *mm = json_object_get(nodes, "model.layers.0.self_attn.matmul_qk");
    ck_assert_uint_eq(json_array_size(json_object_get(mm, "inputs")), 2);
    ck_assert_ptr_null(json_object_get(mm, "params"));
    json_t *sm = json_object_get(nodes, "model.layers.0.self_attn.softmax");
    ck_assert_ptr_nonnull(json_object_get(sm, "outputs"));
    json_decref(root);

    /* Read back and load into a fresh set. */
    qt_measure *back = NULL;
    ck_assert_msg(qt_measure_read(&back, path, g_err, sizeof(g_err)) == 0, "%s", g_err);
    ck_assert_uint_eq(qt_measure_count(back), 3);
    ck_assert_float_eq(qt_measure_value(back, "model.layers.0.self_attn.matmul_qk",
                                        QT_SLOT_INPUT, 1, 0, NULL), 9.5f);
    qt_modset *s2 = small_modset(c, NULL);
    ck_assert_int_eq(qt_measure_apply(back, s2, false, g_err, sizeof(g_err)), 0);
    qt_module *q2 = qt_modset_find(s2, "model.layers.0.self_attn.q_proj");
    ck_assert_float_eq(qt_module_measured(q2, QT_SLOT_INPUT, 0), 3.53125f);
    ck_assert_float_eq(qt_module_measured(qt_modset_find(s2, "model.layers.0.self_attn.softmax"),
                                          QT_SLOT_OUTPUT, 0), 1.0f);

    /* A set with one more module: missing -> error naming it, or counted. */
    ck_assert_int_eq(qt_modset_add(s2, "model.layers.1.self_attn.q_proj", QT_MOD_LINEAR, 2, 3,
                                   0, NULL, g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(qt_measure_apply(back, s2, false, g_err, sizeof(g_err)), QT_E_NO_MEASURE);
    ck_assert_ptr_nonnull(strstr(g_err, "model.layers.1.self_attn.q_proj"));
    ck_assert_int_eq(qt_measure_apply(back, s2, true, g_err, sizeof(g_err)), 1);

    /* AUTO: the measurement file now exists -> QUANTIZE; elsewhere MEASURE. */
    ck_assert_int_eq(qt_config_resolve_mode(c), QT_MODE_QUANTIZE);
    qt_config *c_empty = config_from("{\"dump_stats_path\": \"/nonexistent/m\"}");
    ck_assert_int_eq(qt_config_resolve_mode(c_empty), QT_MODE_MEASURE);
    qt_config_free(c_empty);
    c_empty = config_from("{\"dump_stats_path\": \"/nonexistent/m\", \"mode\": \"QUANTIZE\"}");
    ck_assert_int_eq(qt_config_resolve_mode(c_empty), QT_MODE_QUANTIZE);
    qt_config_free(c_empty);

    /* mod list */
    qt_measure_path(c, QT_FILE_MOD_LIST, cfg, sizeof(cfg));
    ck_assert_int_eq(qt_measure_write_mod_list(s, cfg, g_err, sizeof(g_err)), 0);
    root = json_load_file(cfg, 0, &je);
    ck_assert_uint_eq(json_array_size(root), 3);
    ck_assert_str_eq(json_string_value(json_array_get(root, 2)),
                     "model.layers.0.self_attn.softmax");
    json_decref(root);

    qt_measure_free(back);
    qt_modset_free(s2);
    qt_modset_free(s);
    qt_config_free(c);
    rm_tree(dir);
}
END_TEST

START_TEST(test_measure_per_channel_roundtrip_and_shape)
{
    char dir[256], path[512];
    make_tmpdir(dir, sizeof(dir));
    qt_config *c = config_from("{\"observer\": \"maxabs_per_channel\"}");
    qt_modset *s = qt_modset_new(c, NULL);
    qt_module *q;
    ck_assert_int_eq(qt_modset_add(s, "model.layers.0.mlp.up_proj", QT_MOD_LINEAR, 2, 3, 0, &q,
                                   g_err, sizeof(g_err)), 0);
    const float x[6] = {1, -5, 2, -4, 3, 0.5f};     /* [2 tokens, 3 channels] */
    qt_module_observe(q, QT_SLOT_INPUT, 0, x, 6);
    qt_module_observe(q, QT_SLOT_WEIGHT, 0, k_w, 6);
    snprintf(path, sizeof(path), "%s/pc.json", dir);
    qt_measure *m = qt_measure_from_modset(s);
    ck_assert_int_eq(qt_measure_write(m, path, g_err, sizeof(g_err)), 0);
    qt_measure_free(m);
    ck_assert_int_eq(qt_measure_read(&m, path, g_err, sizeof(g_err)), 0);
    size_t n;
    /* input channels: max(1,4), max(5,3), max(2,0.5); weight rows 0.4375, 0.3 */
    ck_assert_float_eq(qt_measure_value(m, "model.layers.0.mlp.up_proj", QT_SLOT_INPUT, 0, 1,
                                        &n), 5.0f);
    ck_assert_uint_eq(n, 3);
    ck_assert_float_eq(qt_measure_value(m, "model.layers.0.mlp.up_proj", QT_SLOT_WEIGHT, 0, 1,
                                        &n), 0.3f);
    ck_assert_uint_eq(n, 2);
    qt_measure_free(m);

    /* Per-tensor file into a per-channel set: shape error with sizes. */
    ck_assert_int_eq(qt_measure_parse(&m, "{\"GlobalRank\": null, \"LocalRank\": null, "
                     "\"Mode\": \"DynamicRange\", \"Nodes\": {\"model.layers.0.mlp.up_proj\": "
                     "{\"inputs\": [[[5.0]]], \"params\": {\"weight\": [[0.4375]]}}}}", "t.json",
                     g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(qt_measure_apply(m, s, false, g_err, sizeof(g_err)), QT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(g_err, "[1,1], expected [3,1]"));
    ck_assert_ptr_nonnull(strstr(g_err, "up_proj"));
    qt_measure_free(m);
    qt_modset_free(s);
    qt_config_free(c);
    rm_tree(dir);
}
END_TEST

static const struct {
    const char *json;
    int rc;
    const char *needle;
} k_bad_files[] = {
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {\"a\": {\"inputs\": [[[NaN]]]}}}",
     QT_E_NONFINITE, "NaN"},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {\"a\": {\"inputs\": [[[Infinity]]]}}}",
     QT_E_NONFINITE, "not finite"},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {\"a\": {\"inputs\": [[[-1.0]]]}}}",
     QT_E_NONFINITE, "node \"a\": inputs[0][0]"},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {\"a\": {\"inputs\": [[[1e39]]]}}}",
     QT_E_NONFINITE, "float32"},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {\"a\": {\"inputs\": [[[1.0, 2.0]]]}}}",
     QT_E_SHAPE, "2 columns"},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {\"a\": {\"inputs\": [[]]}}}",
     QT_E_SHAPE, "empty"},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {\"a\": {\"inputs\": [[[\"x\"]]]}}}",
     QT_E_BAD_MEASURE, "expected a number"},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {\"a\": {\"outputs\": [[[1.0]]]}}}",
     QT_E_BAD_MEASURE, "missing \"inputs\""},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {\"a\": {\"inputs\": [], \"extra\": 1}}}",
     QT_E_BAD_MEASURE, "\"extra\""},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {\"a\": {\"inputs\": [], \"params\": {\"bias\": "
     "[[1.0]]}}}}", QT_E_BAD_MEASURE, "params"},
    {"{\"Mode\": \"Shape\", \"Nodes\": {}}", QT_E_BAD_MEASURE, "\"Shape\""},
    {"{\"Nodes\": {}}", QT_E_BAD_MEASURE, "\"Mode\""},
    {"{\"Mode\": \"DynamicRange\"}", QT_E_BAD_MEASURE, "\"Nodes\""},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {}, \"Rank\": 0}", QT_E_BAD_MEASURE, "\"Rank\""},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": {}, \"LocalRank\": \"0\"}", QT_E_BAD_MEASURE,
     "LocalRank"},
    {"{\"Mode\": \"DynamicRange\", \"Nodes\": ", QT_E_BAD_MEASURE, "line 1"},
    {"[]", QT_E_BAD_MEASURE, "top level"},
};

START_TEST(test_measure_bad_files_refused)
{
    qt_measure *m = (qt_measure *)1;
    int rc = qt_measure_parse(&m, k_bad_files[_i].json, "bad.json", g_err, sizeof(g_err));
    ck_assert_msg(rc == k_bad_files[_i].rc, "%s: rc %d (%s)", k_bad_files[_i].json, rc, g_err);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(g_err, k_bad_files[_i].needle) && strstr(g_err, "bad.json"),
                  "%s: message \"%s\" lacks %s", k_bad_files[_i].json, g_err,
                  k_bad_files[_i].needle);
}
END_TEST

START_TEST(test_measure_apply_wrong_tensor_count)
{
    qt_config *c = qt_config_new_default();
    qt_modset *s = small_modset(c, NULL);
    qt_measure *m = NULL;
    /* matmul_qk with one input instead of two. */
    ck_assert_int_eq(qt_measure_parse(&m, "{\"Mode\": \"DynamicRange\", \"Nodes\": {"
        "\"model.layers.0.self_attn.q_proj\": {\"inputs\": [[[1.0]]]},"
        "\"model.layers.0.self_attn.matmul_qk\": {\"inputs\": [[[1.0]]]},"
        "\"model.layers.0.self_attn.softmax\": {\"inputs\": [[[1.0]]], \"outputs\": [[[1.0]]]}"
        "}}", "f.json", g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(qt_measure_apply(m, s, false, g_err, sizeof(g_err)), QT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(g_err, "matmul_qk"));
    ck_assert_ptr_nonnull(strstr(g_err, "has 1 tensors, expected 2"));
    /* Nothing was loaded (validation before any change). */
    ck_assert(isnan(qt_module_measured(qt_modset_find(s, "model.layers.0.self_attn.q_proj"),
                                       QT_SLOT_INPUT, 0)));
    qt_measure_free(m);
    /* softmax without its (always measured) output. */
    ck_assert_int_eq(qt_measure_parse(&m, "{\"Mode\": \"DynamicRange\", \"Nodes\": {"
        "\"model.layers.0.self_attn.q_proj\": {\"inputs\": [[[1.0]]]},"
        "\"model.layers.0.self_attn.matmul_qk\": {\"inputs\": [[[1.0]], [[2.0]]]},"
        "\"model.layers.0.self_attn.softmax\": {\"inputs\": [[[1.0]]]}"
        "}}", "f.json", g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(qt_measure_apply(m, s, false, g_err, sizeof(g_err)), QT_E_SHAPE);
    ck_assert_ptr_nonnull(strstr(g_err, "softmax"));
    ck_assert_ptr_nonnull(strstr(g_err, "outputs"));
    qt_measure_free(m);
    qt_modset_free(s);
    qt_config_free(c);
}
END_TEST

static const char k_file_a[] =
    "{\"GlobalRank\": null, \"LocalRank\": 0, \"Mode\": \"DynamicRange\", \"Nodes\": {"
    "\"model.layers.0.mlp.down_proj\": {\"inputs\": [[[3.5]]], \"params\": {\"weight\": "
    "[[0.4375]]}},"
    "\"model.layers.0.self_attn.matmul_qk\": {\"inputs\": [[[12.0]], [[9.5]]]}}}";
static const char k_file_b[] =
    "{\"GlobalRank\": null, \"LocalRank\": 1, \"Mode\": \"DynamicRange\", \"Nodes\": {"
    "\"model.layers.0.self_attn.matmul_qk\": {\"inputs\": [[[11.0]], [[10.25]]]},"
    "\"model.layers.0.mlp.down_proj\": {\"inputs\": [[[4.0]]], \"params\": {\"weight\": "
    "[[0.25]]}}}}";

START_TEST(test_measure_merge_elementwise_max)
{
    qt_measure *a, *b, *out;
    ck_assert_int_eq(qt_measure_parse(&a, k_file_a, "a.json", g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(qt_measure_parse(&b, k_file_b, "b.json", g_err, sizeof(g_err)), 0);
    const qt_measure *in[2] = {a, b};
    ck_assert_int_eq(qt_measure_merge(&out, in, 2, g_err, sizeof(g_err)), 0);
    ck_assert_float_eq(qt_measure_value(out, "model.layers.0.mlp.down_proj", QT_SLOT_INPUT, 0,
                                        0, NULL), 4.0f);
    ck_assert_float_eq(qt_measure_value(out, "model.layers.0.mlp.down_proj", QT_SLOT_WEIGHT, 0,
                                        0, NULL), 0.4375f);
    ck_assert_float_eq(qt_measure_value(out, "model.layers.0.self_attn.matmul_qk",
                                        QT_SLOT_INPUT, 0, 0, NULL), 12.0f);
    ck_assert_float_eq(qt_measure_value(out, "model.layers.0.self_attn.matmul_qk",
                                        QT_SLOT_INPUT, 1, 0, NULL), 10.25f);
    bool is_null;
    ck_assert_int_eq(qt_measure_local_rank(out, &is_null), -1);
    ck_assert(!is_null);
    qt_measure_free(out);

    /* A node missing in one file. */
    qt_measure *c;
    ck_assert_int_eq(qt_measure_parse(&c, "{\"Mode\": \"DynamicRange\", \"Nodes\": {"
        "\"model.layers.0.mlp.down_proj\": {\"inputs\": [[[1.0]]], \"params\": {\"weight\": "
        "[[0.25]]}}}}", "c.json", g_err, sizeof(g_err)), 0);
    const qt_measure *in2[2] = {a, c};
    ck_assert_int_eq(qt_measure_merge(&out, in2, 2, g_err, sizeof(g_err)), QT_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(g_err, "matmul_qk"));
    ck_assert_ptr_nonnull(strstr(g_err, "c.json"));
    const qt_measure *in3[2] = {c, a};
    ck_assert_int_eq(qt_measure_merge(&out, in3, 2, g_err, sizeof(g_err)), QT_E_MISMATCH);
    qt_measure_free(c);
    /* A shape mismatch. */
    ck_assert_int_eq(qt_measure_parse(&c, "{\"Mode\": \"DynamicRange\", \"Nodes\": {"
        "\"model.layers.0.mlp.down_proj\": {\"inputs\": [[[1.0], [2.0]]], \"params\": "
        "{\"weight\": [[0.25]]}}, \"model.layers.0.self_attn.matmul_qk\": {\"inputs\": "
        "[[[1.0]], [[1.0]]]}}}", "d.json", g_err, sizeof(g_err)), 0);
    const qt_measure *in4[2] = {a, c};
    ck_assert_int_eq(qt_measure_merge(&out, in4, 2, g_err, sizeof(g_err)), QT_E_MISMATCH);
    ck_assert_ptr_nonnull(strstr(g_err, "[2,1]"));
    qt_measure_free(c);
    ck_assert_int_eq(qt_measure_merge(&out, in, 0, g_err, sizeof(g_err)), -EINVAL);
    qt_measure_free(a);
    qt_measure_free(b);
}
END_TEST

START_TEST(test_scale_file_per_channel_dict)
{
    char dir[256], path[512];
    make_tmpdir(dir, sizeof(dir));
    qt_config *c = config_from("{\"scale_method\": \"act_maxabs_pow2_weights_pcs_maxabs_pow2\"}");
    qt_modset *s = small_modset(c, NULL);
    observe_small(s);
    qt_scale_params p;
    qt_scale_params_of(&p, c);
    qt_module *q = qt_modset_find(s, "model.layers.0.self_attn.q_proj");
    ck_assert_int_eq(qt_module_compute_scales(q, &p, k_w, g_err, sizeof(g_err)), 0);
    qt_measure *m = qt_measure_scales_from_modset(s);
    ck_assert_uint_eq(qt_measure_count(m), 1);
    snprintf(path, sizeof(path), "%s/scales.json", dir);
    ck_assert_int_eq(qt_measure_write(m, path, g_err, sizeof(g_err)), 0);
    qt_measure_free(m);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    ck_assert_str_eq(json_string_value(json_object_get(root, "Mode")), "Scale");
    json_t *w = json_object_get(json_object_get(json_object_get(json_object_get(root, "Nodes"),
                                "model.layers.0.self_attn.q_proj"), "params"), "weight");
    ck_assert(json_is_object(w));
    ck_assert_uint_eq(json_array_size(json_object_get(w, "0")), 2);
    json_decref(root);
    ck_assert_int_eq(qt_measure_read(&m, path, g_err, sizeof(g_err)), 0);
    ck_assert_float_eq(qt_measure_value(m, "model.layers.0.self_attn.q_proj", QT_SLOT_WEIGHT, 0,
                                        1, NULL), ldexpf(1.0f, -9));
    /* A Scale file is not a measurement file. */
    ck_assert_int_eq(qt_measure_apply(m, s, true, g_err, sizeof(g_err)), QT_E_BAD_MEASURE);
    qt_measure_free(m);
    qt_modset_free(s);
    qt_config_free(c);
    rm_tree(dir);
}
END_TEST

START_TEST(test_write_errors_name_path)
{
    qt_measure *m;
    ck_assert_int_eq(qt_measure_parse(&m, k_file_a, "a.json", g_err, sizeof(g_err)), 0);
    /* Two missing levels: only the last one is created. */
    ck_assert_int_eq(qt_measure_write(m, "/nonexistent/deeper/x.json", g_err, sizeof(g_err)),
                     -ENOENT);
    ck_assert_ptr_nonnull(strstr(g_err, "/nonexistent/deeper/x.json"));
    qt_measure *none = (qt_measure *)1;
    ck_assert_int_eq(qt_measure_read(&none, "/nonexistent/x.json", g_err, sizeof(g_err)),
                     -ENOENT);
    ck_assert_ptr_null(none);
    ck_assert_ptr_nonnull(strstr(g_err, "/nonexistent/x.json"));
    qt_measure_free(m);
    /* Overwriting an existing file replaces it whole. */
    char dir[256], path[512];
    make_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/m.json", dir);
    write_text(path, "garbage that is longer than nothing at all, and not JSON at all........");
    ck_assert_int_eq(qt_measure_parse(&m, k_file_b, "b.json", g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(qt_measure_write(m, path, g_err, sizeof(g_err)), 0);
    qt_measure_free(m);
    ck_assert_int_eq(qt_measure_read(&m, path, g_err, sizeof(g_err)), 0);
    ck_assert_int_eq(qt_measure_local_rank(m, NULL), 1);
    qt_measure_free(m);
    ck_assert_int_eq(count_entries(dir), 1);
    rm_tree(dir);
}
END_TEST

/* ---------------------------------------------------------- suite */

static Suite *quant_suite(void)
{
    Suite *s = suite_create("quant");
    TCase *tc;

    tc = tcase_create("recipe");
    tcase_add_test(tc, test_recipe_defaults_match_ipex);
    tcase_add_test(tc, test_pow2_down_scale_for_amax_and_margin);
    tcase_add_test(tc, test_exact_scale_te);
    tcase_add_test(tc, test_scale_guards_keep_old_and_clamp);
    tcase_add_test(tc, test_history_order_after_updates);
    tcase_add_test(tc, test_history_most_recent_len1_not_ipex_bug);
    tcase_add_test(tc, test_history_record_accumulates_max_ignores_nan);
    tcase_add_test(tc, test_history_import_export_roundtrip);
    tcase_add_test(tc, test_recipe_json_parse_and_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("config");
    tcase_add_test(tc, test_config_defaults);
    tcase_add_test(tc, test_config_enums_case_insensitive);
    tcase_add_loop_test(tc, test_config_error_names_key_and_value, 0,
                        (int)(sizeof(k_bad_configs) / sizeof(k_bad_configs[0])));
    tcase_add_test(tc, test_example_config_is_every_default);
    tcase_add_test(tc, test_example_gaudi_config_accepted_with_warnings);
    tcase_add_test(tc, test_config_load_missing_file_names_path);
    suite_add_tcase(s, tc);

    tc = tcase_create("select");
    tcase_add_test(tc, test_select_allow_block_on_module_names);
    tcase_add_test(tc, test_mod_type_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("scale");
    tcase_add_test(tc, test_fullscale_and_roundings);
    tcase_add_test(tc, test_act_scales_table);
    tcase_add_test(tc, test_act_scale_degenerate_is_unit);
    tcase_add_test(tc, test_weight_scale_per_tensor);
    tcase_add_test(tc, test_weight_scale_mse_hw_gaudi2);
    tcase_add_test(tc, test_weight_scale_mse_tie_goes_later);
    tcase_add_test(tc, test_weight_scale_per_channel);
    tcase_add_test(tc, test_weight_scale_per_channel_mse);
    tcase_add_test(tc, test_method_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("observer");
    tcase_add_test(tc, test_observer_maxabs);
    tcase_add_test(tc, test_observer_per_channel_axes);
    suite_add_tcase(s, tc);

    tc = tcase_create("module");
    tcase_add_test(tc, test_module_measure_and_scales);
    tcase_add_test(tc, test_module_history_from_observations);
    suite_add_tcase(s, tc);

    tc = tcase_create("measure_io");
    tcase_add_test(tc, test_measure_roundtrip_layout_and_names);
    tcase_add_test(tc, test_measure_per_channel_roundtrip_and_shape);
    tcase_add_loop_test(tc, test_measure_bad_files_refused, 0,
                        (int)(sizeof(k_bad_files) / sizeof(k_bad_files[0])));
    tcase_add_test(tc, test_measure_apply_wrong_tensor_count);
    tcase_add_test(tc, test_measure_merge_elementwise_max);
    tcase_add_test(tc, test_scale_file_per_channel_dict);
    tcase_add_test(tc, test_write_errors_name_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int rc;
    /* The MSE searches cast through the active codec. */
    if ((rc = kn_init(NULL)) < 0) {
        fprintf(stderr, "kn_init: %s\n", kn_strerror(rc));
        return 1;
    }
    printf("quant: codec variant %s\n", kn_active()->name);
    SRunner *sr = srunner_create(quant_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
