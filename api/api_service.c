/* api_service.c: the service object: creation (with the model directory
 * check, the keys and the FP8 config), readiness state, teardown.  Its
 * engines (start, reload) are in api_engine.c. */
#include "config.h"

#include "api/api-int.h"
#include "kernels/kn_base.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void api_service_params_default(api_service_params *p)
{
    memset(p, 0, sizeof(*p));
    p->model_path = NULL;
    p->threads = 0;
    p->version = PACKAGE_VERSION;
}

/* A model directory must exist and hold a config.json that is a JSON
 * object; reading the weights is the engine's job (not here yet). */
static int check_model_dir(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    struct stat st;
    json_error_t jerr;
    json_t *cfg;

    if (dir == NULL || dir[0] == '\0') {
        kn_errf(err, errlen, "model: no model directory given (set \"model\" or --model)");
        return -EINVAL;
    }
    if (stat(dir, &st) != 0) {
        int rc = -errno;
        kn_errf(err, errlen, "model directory %s: %s", dir, strerror(-rc));
        return rc;
    }
    if (!S_ISDIR(st.st_mode)) {
        kn_errf(err, errlen, "model directory %s: not a directory", dir);
        return -ENOTDIR;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/config.json", dir) >= sizeof(path)) {
        kn_errf(err, errlen, "model directory %s: path too long", dir);
        return -ENAMETOOLONG;
    }
    if (stat(path, &st) != 0) {
        int rc = -errno;
        kn_errf(err, errlen, "model directory %s: config.json: %s", dir, strerror(-rc));
        return rc;
    }
    cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (cfg == NULL) {
        kn_errf(err, errlen, "%s: line %d column %d: %s", path, jerr.line, jerr.column,
                jerr.text);
        return -EINVAL;
    }
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        kn_errf(err, errlen, "%s: top level is not a JSON object", path);
        return -EINVAL;
    }
    json_decref(cfg);
    return 0;
}

/* Reads "KEY [scope,scope]" lines ('#' comments, blank lines); scopes
 * inference (the default), metrics, admin. */
static int load_keys(api_service *svc, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int lineno = 0;

    if (f == NULL) {
        int rc = -errno;
        kn_errf(err, errlen, "api_keys_file %s: %s", path, strerror(-rc));
        return rc;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *k, *sc, *save = NULL;
        unsigned scopes = 0;
        api_key *nk;
        lineno++;
        /* fgets splits a longer line: the rest would become a key of its own. */
        if (strchr(line, '\n') == NULL && strlen(line) == sizeof(line) - 1) {
            int c = getc(f);
            if (c != EOF) {
                kn_errf(err, errlen, "api_keys_file %s line %d: longer than %zu characters",
                        path, lineno, sizeof(line) - 2);
                fclose(f);
                return -EINVAL;
            }
        }
        line[strcspn(line, "\r\n")] = '\0';
        k = strtok_r(line, " \t", &save);
        if (k == NULL || k[0] == '#')
            continue;
        sc = strtok_r(NULL, " \t", &save);
        if (sc == NULL)
            scopes = API_SCOPE_INFERENCE;
        for (char *t = sc != NULL ? strtok_r(sc, ",", &save) : NULL; t != NULL;
             t = strtok_r(NULL, ",", &save)) {
            if (strcmp(t, "inference") == 0)
                scopes |= API_SCOPE_INFERENCE;
            else if (strcmp(t, "metrics") == 0)
                scopes |= API_SCOPE_METRICS;
            else if (strcmp(t, "admin") == 0)
                scopes |= API_SCOPE_ADMIN;
            else {
                kn_errf(err, errlen, "api_keys_file %s line %d: unknown scope \"%s\" "
                        "(inference, metrics or admin)", path, lineno, t);
                fclose(f);
                return -EINVAL;
            }
        }
        if ((nk = realloc(svc->keys, (svc->n_keys + 1) * sizeof(*nk))) == NULL) {
            fclose(f);
            return -ENOMEM;
        }
        svc->keys = nk;
        if ((nk[svc->n_keys].key = strdup(k)) == NULL) {
            fclose(f);
            return -ENOMEM;
        }
        nk[svc->n_keys].len = strlen(k);
        nk[svc->n_keys].scopes = scopes;
        svc->n_keys++;
    }
    fclose(f);
    if (svc->n_keys == 0) {
        kn_errf(err, errlen, "api_keys_file %s: no key in it", path);
        return -EINVAL;
    }
    return 0;
}

static const double ttft_bounds[] = { 0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25,
                                      0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
                                      2560 };
static const double itl_bounds[] = { 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                                     0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80 };
static const double req_bounds[] = { 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40,
                                      50, 60, 120, 240, 480, 960, 1920, 7680 };
#define NB(a) (sizeof(a) / sizeof(a[0]))

int api_service_new(api_service **out, const api_service_params *p, char *err, size_t errlen)
{
    api_service *svc;
    struct timespec now;
    const char *base;
    int rc;

    *out = NULL;
    if ((rc = check_model_dir(p->model_path, err, errlen)) < 0)
        return rc;
    /* ~24 KiB of counters: calloc zeroes the atomics, which is their valid 0. */
    if ((svc = calloc(1, sizeof(*svc))) == NULL) {
        kn_errf(err, errlen, "api service: out of memory");
        return -ENOMEM;
    }
    atomic_init(&svc->state, API_STATE_LOADING);
    {
        /* Writers first: a reload's swap must not wait behind a steady
         * stream of handlers. */
        pthread_rwlockattr_t a;
        pthread_rwlockattr_init(&a);
        pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&svc->swap_lock, &a);
        pthread_rwlockattr_destroy(&a);
    }
    svc->p = *p;
    svc->version = p->version != NULL ? p->version : PACKAGE_VERSION;
    snprintf(svc->model_dir, sizeof(svc->model_dir), "%s", p->model_path);
    svc->p.model_path = svc->model_dir;
    base = strrchr(svc->model_dir, '/');
    base = base != NULL && base[1] != '\0' ? base + 1 : svc->model_dir;
    snprintf(svc->model_name, sizeof(svc->model_name), "%.255s",
             p->served_model_name != NULL && p->served_model_name[0] != '\0'
             ? p->served_model_name : base);
    svc->p.served_model_name = svc->model_name;
    if (svc->p.request_timeout_ms <= 0)
        svc->p.request_timeout_ms = 600000;
    if (svc->p.max_n <= 0)
        svc->p.max_n = 16;
    svc->ttft = (api_hist){ .bounds = ttft_bounds, .n = NB(ttft_bounds) };
    svc->itl = (api_hist){ .bounds = itl_bounds, .n = NB(itl_bounds) };
    svc->e2e = (api_hist){ .bounds = req_bounds, .n = NB(req_bounds) };
    svc->queue_time = (api_hist){ .bounds = req_bounds, .n = NB(req_bounds) };
    if (p->cors_origins != NULL && p->cors_origins[0] != '\0' &&
        (svc->cors = strdup(p->cors_origins)) == NULL) {
        api_service_free(svc);
        return -ENOMEM;
    }
    svc->p.cors_origins = NULL;
    if (p->api_keys_file != NULL && p->api_keys_file[0] != '\0' &&
        (rc = load_keys(svc, p->api_keys_file, err, errlen)) < 0) {
        api_service_free(svc);
        return rc;
    }
    svc->p.api_keys_file = NULL;
    {
        const char *sd = p->state_dir != NULL && p->state_dir[0] != '\0' ? p->state_dir
                         : getenv("STATE_DIRECTORY") != NULL ? getenv("STATE_DIRECTORY")
                         : "/var/lib/fp8d";
        /* $STATE_DIRECTORY may list several (colon-separated): the first. */
        snprintf(svc->state_dir, sizeof(svc->state_dir), "%.*s", (int)strcspn(sd, ":"), sd);
        svc->p.state_dir = svc->state_dir;
    }
    if (p->fp8_config != NULL && p->fp8_config[0] != '\0') {
        FILE *f = fopen(p->fp8_config, "rb");
        long n;
        if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
            fseek(f, 0, SEEK_SET) != 0 || (svc->fp8_json = calloc(1, (size_t)n + 1)) == NULL ||
            fread(svc->fp8_json, 1, (size_t)n, f) != (size_t)n) {
            rc = f == NULL ? -errno : -EIO;
            kn_errf(err, errlen, "fp8_config %s: %s", p->fp8_config, strerror(-rc));
            if (f != NULL)
                fclose(f);
            api_service_free(svc);
            return rc;
        }
        fclose(f);
    }
    svc->p.fp8_config = NULL;
    clock_gettime(CLOCK_MONOTONIC, &svc->started);
    clock_gettime(CLOCK_REALTIME, &now);
    svc->started_unix = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    *out = svc;
    return 0;
}

void api_service_free(api_service *svc)
{
    if (svc == NULL)
        return;
    api__engines_free(svc);
    pthread_rwlock_destroy(&svc->swap_lock);
    for (size_t i = 0; i < svc->n_keys; i++)
        free(svc->keys[i].key);
    free(svc->keys);
    free(svc->cors);
    free(svc->fp8_json);
    free(svc);
}

void api_service_set_state(api_service *svc, api_state st)
{
    KN_ASSERT(st >= 0 && st < API_STATE_COUNT_);
    atomic_store(&svc->state, (int)st);
}

api_state api_service_state(const api_service *svc)
{
    return (api_state)atomic_load(&((api_service *)svc)->state);
}

const char *api_state_name(api_state st)
{
    switch (st) {
    case API_STATE_LOADING:  return "loading";
    case API_STATE_READY:    return "ready";
    case API_STATE_STOPPING: return "stopping";
    default:                 return "unknown";
    }
}
