/* api_service.c: the service object: creation (with the model directory
 * check), readiness state, teardown.  The engine will hang off this object
 * once it exists; until then the service only validates the model path. */
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

int api_service_new(api_service **out, const api_service_params *p, char *err, size_t errlen)
{
    api_service *svc;
    struct timespec now;
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
    svc->version = p->version != NULL ? p->version : PACKAGE_VERSION;
    clock_gettime(CLOCK_MONOTONIC, &svc->started);
    clock_gettime(CLOCK_REALTIME, &now);
    svc->started_unix = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    *out = svc;
    return 0;
}

void api_service_free(api_service *svc)
{
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
