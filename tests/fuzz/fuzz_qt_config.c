/* fuzz_qt_config.c: qt_config_parse (INC's FP8Config JSON) on arbitrary
 * bytes.  An accepted config must answer every getter, select names with
 * the regexes it compiled (a few names of each module type), and give
 * scale parameters whose activation descale for a finite amax is finite
 * and positive (quant.h: degenerate cases fall back to 1.0). */
#include "config.h"

#include "kernels/kn_base.h"
#include "quant/quant.h"
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static const char *const k_names[] = {
    "lm_head", "model.layers.0.mlp.down_proj", "model.layers.11.self_attn.q_proj",
    "model.layers.3.self_attn.matmul_qk", "model.layers.3.self_attn.softmax", "",
};

static void quiet(int level, const char *module, const char *msg, void *ud)
{
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    kn_log_set(quiet, NULL, 0);    /* one warning per INC-only key would flood */
    return 0;
}

static void check_config(const qt_config *c)
{
    qt_scale_params p;
    unsigned sel = 0;

    (void)qt_config_mode(c);
    (void)qt_config_resolve_mode(c);
    FUZZ_CHECK(qt_config_dump_stats_path(c) != NULL, "no dump_stats_path");
    FUZZ_CHECK(qt_config_warning_count(c) >= 0, "negative warning count");
    for (int t = 0; t < QT_MOD_COUNT; t++) {
        (void)qt_config_measures_output(c, (qt_mod_type)t);
        for (size_t i = 0; i < sizeof(k_names) / sizeof(k_names[0]); i++)
            sel += qt_config_selects(c, k_names[i], (qt_mod_type)t);
    }
    __asm__ volatile("" : : "r"(sel));
    qt_scale_params_of(&p, c);
    for (float m = 1e-3f; m < 1e6f; m *= 31.0f) {
        float s = qt_scale_act(&p, m, NULL);
        FUZZ_CHECK(isfinite(s) && s > 0, "scale_act(%s, amax %g) = %g",
                   qt_scale_method_name(p.method), (double)m, (double)s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size), err[512] = "";
    qt_config *c = NULL;
    int rc = qt_config_parse(&c, text, "fp8_config.json", err, sizeof(err));

    FUZZ_CHECK((rc == 0) == (c != NULL), "rc %d with config %p", rc, (void *)c);
    if (rc == 0)
        check_config(c);
    else
        FUZZ_CHECK(rc == -ENOMEM || err[0] != '\0', "rc %d with an empty error message", rc);
    qt_config_free(c);
    free(text);
    return 0;
}
