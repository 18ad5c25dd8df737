/* kn_dispatch.c: the variant list and the choice of the active ops table.
 * kn_init() runs on the main thread before any other starts, so the
 * globals here need no locks: they are read-only once threads exist. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kn_codec-int.h"

/* Index 0 is the reference (tests rely on it); faster variants follow. */
static const kn_ops *const kVariants[] = {
    &kn__ops_ref,
#ifdef HAVE_KN_AVX512
    &kn__ops_avx512,
#endif
};
#define N_VARIANTS ((int)(sizeof(kVariants) / sizeof(kVariants[0])))

static const kn_ops *g_active;

int kn_variant_count(void)
{
    return N_VARIANTS;
}

const kn_ops *kn_variant(int i)
{
    KN_ASSERT(i >= 0 && i < N_VARIANTS);
    return kVariants[i];
}

bool kn_variant_usable(const kn_ops *ops)
{
    if (ops == &kn__ops_ref)
        return true;
#ifdef HAVE_KN_AVX512
    if (ops == &kn__ops_avx512)
        return kn__cpu_has_avx512();
#endif
    return false;
}

static const kn_ops *find_variant(const char *name)
{
    for (int i = 0; i < N_VARIANTS; i++)
        if (strcmp(kVariants[i]->name, name) == 0)
            return kVariants[i];
    return NULL;
}

int kn_init(const char *force)
{
    const char *why = "fastest usable";
    const kn_ops *pick = NULL;

    if (force == NULL) {
        const char *env = getenv("FP8D_KERNELS");
        if (env != NULL && *env != '\0') {
            force = env;
            why = "FP8D_KERNELS";
        }
    } else {
        why = "kn_init(force)";
    }
    if (force != NULL) {
        /* A name this build knows nothing of is a typo, not a CPU
         * limitation: say so apart from -ENOTSUP. */
        if (strcmp(force, "ref") != 0 && strcmp(force, "avx512") != 0) {
            kn_log(KN_LOG_ERR, "kernels", "%s: unknown kernel variant '%s' (expected ref or avx512)",
                   why, force);
            return -EINVAL;
        }
        pick = find_variant(force);
        if (pick == NULL || !kn_variant_usable(pick)) {
            kn_log(KN_LOG_ERR, "kernels", "%s: kernel variant '%s' cannot run here (%s)", why,
                   force, pick == NULL ? "not compiled in" : kn__cpu_avx512_report());
            return -ENOTSUP;
        }
    } else {
        for (int i = N_VARIANTS - 1; i >= 0 && pick == NULL; i--)
            if (kn_variant_usable(kVariants[i]))
                pick = kVariants[i];
    }
    /* Log once per change: repeated calls (tests, fp8ctl after fp8d code
     * paths) with the same outcome stay quiet. */
    if (pick != g_active)
        kn_log(KN_LOG_INFO, "kernels", "variant=%s reason=\"%s\" cpu=\"%s\"", pick->name, why,
               kn__cpu_avx512_report());
    kn_fp8_decode(0, KN_FP8_E4M3); /* build the decode tables before threads start */
    g_active = pick;
    return 0;
}

const kn_ops *kn_active(void)
{
    return g_active;
}
