/* api_engine.c: the service's engines: the start, the readiness poll, the
 * watchdog's liveness, the stop, and the model reload of SIGHUP.
 *
 * Reload.  When the files of the model directory changed since the last
 * load (or the last attempt: their names, inodes, sizes and mtimes), a
 * second engine loads them on its own thread while the running one keeps
 * serving.  If the load fails, that engine is freed and the running one
 * stays (the caller logs why).  If it succeeds, the main thread swaps it
 * in under swap_lock held for writing; every handler runs with swap_lock
 * held for reading (api_route.c), so within one handler svc->eng,
 * svc->model_hash and svc->cur do not change.  The engine swapped out is
 * retired: it finishes the requests it already holds (each api_call pins
 * the engine it submitted to until the call is freed), then the main
 * thread stops and frees it.  Its counters move into svc->gone, so the
 * totals of /metrics never go back.  The new engine starts from the
 * fp8_config as at process start: what was calibrated at run time (the
 * measurements in memory, the mode, the epoch) belonged to the old one. */
#include "config.h"

#include "api/api-int.h"
#include "kernels/kn_base.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t k = 0; k < n; k++) {
        h ^= b[k];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* FNV-1a 64 of config.json and the safetensors headers' sizes and names:
 * cheap, and it changes when the weights file set changes. */
static void model_hash(const char *dir, char out[17])
{
    uint64_t h = 0xcbf29ce484222325ull;
    const char *names[] = { "config.json", "model.safetensors", "model.safetensors.index.json" };
    char path[4200];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        FILE *f;
        unsigned char buf[4096];
        size_t n, total = 0;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if ((f = fopen(path, "rb")) == NULL)
            continue;
        /* config.json whole; the others' first 1 MiB (the safetensors
         * header with every tensor's name, dtype, shape and offsets). */
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && total < ((size_t)1 << 20)) {
            h = fnv(h, buf, n);
            total += n;
        }
        fclose(f);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* The identity of the files in dir: each entry's name, device, inode,
 * size and mtime, summed so that the listing order does not matter.  A
 * file replaced by rename (new inode) or rewritten in place (size, mtime)
 * changes it; reading nothing is cheap, whatever the model's size. */
static uint64_t files_id(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint64_t sum = 0;
    char path[4400];

    if (d == NULL)
        return 0x5eed ^ (uint64_t)errno;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        uint64_t h = 0xcbf29ce484222325ull;
        int64_t f[5];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0)
            memset(&st, 0, sizeof(st));
        f[0] = (int64_t)st.st_dev;
        f[1] = (int64_t)st.st_ino;
        f[2] = (int64_t)st.st_size;
        f[3] = (int64_t)st.st_mtim.tv_sec;
        f[4] = (int64_t)st.st_mtim.tv_nsec;
        h = fnv(h, e->d_name, strlen(e->d_name) + 1);
        sum += fnv(h, f, sizeof(f));
    }
    closedir(d);
    return sum;
}

/* Starts an engine loading svc's model directory (its thread does the
 * work).  Main thread. */
static int engine_start(api_service *svc, api__eng **out, char *err, size_t errlen)
{
    eng_engine_params ep;
    api__eng *h = calloc(1, sizeof(*h));
    int rc;

    *out = NULL;
    if (h == NULL) {
        kn_errf(err, errlen, "api service: out of memory");
        return -ENOMEM;
    }
    eng_engine_params_default(&ep);
    ep.model_dir = svc->model_dir;
    ep.model.n_threads = svc->p.threads;
    ep.fp8_config_json = svc->fp8_json;
    if (svc->p.max_queued_requests > 0)
        ep.max_queued_requests = svc->p.max_queued_requests;
    if (svc->p.max_queued_tokens > 0)
        ep.max_queued_tokens = svc->p.max_queued_tokens;
    if (svc->p.max_running > 0)
        ep.max_running = svc->p.max_running;
    svc->files_id = files_id(svc->model_dir);
    model_hash(svc->model_dir, h->hash);
    atomic_init(&h->pins, 0);
    if ((rc = eng_engine_start(&h->eng, &ep, err, errlen)) < 0) {
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

static void engine_free(api__eng *h)
{
    if (h == NULL)
        return;
    eng_engine_free(h->eng);
    free(h);
}

int api_service_start(api_service *svc, char *err, size_t errlen)
{
    int rc = engine_start(svc, &svc->cur, err, errlen);

    if (rc == 0) {
        svc->eng = svc->cur->eng;
        memcpy(svc->model_hash, svc->cur->hash, sizeof(svc->model_hash));
    }
    return rc;
}

int api_service_poll(api_service *svc, char *err, size_t errlen)
{
    eng_engine_state st;

    if (svc->eng == NULL || api_service_state(svc) != API_STATE_LOADING)
        return 0;
    st = eng_engine_get_state(svc->eng, err, errlen);
    if (st == ENG_ENGINE_FAILED)
        return -EIO;
    if (st != ENG_ENGINE_READY)
        return 0;
    api_service_set_state(svc, API_STATE_READY);
    return 1;
}

bool api_service_alive(const api_service *svc, uint64_t max_age_ms)
{
    struct timespec t;
    uint64_t now, hb;

    if (svc->eng == NULL)
        return true;
    if (eng_engine_get_state(svc->eng, NULL, 0) == ENG_ENGINE_LOADING)
        return true;
    clock_gettime(CLOCK_MONOTONIC, &t);
    now = (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
    hb = eng_engine_heartbeat_ms(svc->eng);
    return now < hb || now - hb <= max_age_ms;
}

void api_service_stop_engine(api_service *svc)
{
    if (svc == NULL)
        return;
    /* The one being loaded first: it holds no request. */
    if (svc->loading != NULL)
        eng_engine_stop(svc->loading->eng);
    for (api__eng *h = svc->retired; h != NULL; h = h->next)
        eng_engine_stop(h->eng);
    if (svc->eng != NULL)
        eng_engine_stop(svc->eng);
}

void api__engines_free(api_service *svc)
{
    engine_free(svc->loading);
    while (svc->retired != NULL) {
        api__eng *h = svc->retired;
        svc->retired = h->next;
        engine_free(h);
    }
    engine_free(svc->cur);
    svc->loading = svc->cur = NULL;
    svc->eng = NULL;
}

/* ---- reload --------------------------------------------------------------- */

int api_service_reload(api_service *svc, char *err, size_t errlen)
{
    uint64_t id;
    int rc;

    if (svc->cur == NULL || api_service_state(svc) != API_STATE_READY) {
        kn_errf(err, errlen, "the model is still loading (or the server is stopping)");
        return -EBUSY;
    }
    if (svc->loading != NULL) {
        kn_errf(err, errlen, "a model reload is already in progress");
        return -EBUSY;
    }
    id = files_id(svc->model_dir);
    if (id == svc->files_id)
        return 0;
    if ((rc = engine_start(svc, &svc->loading, err, errlen)) < 0)
        return rc;
    return 1;
}

/* Stops and frees the retired engines nothing pins any more.  Main thread. */
static void reap(api_service *svc)
{
    for (api__eng **pp = &svc->retired, *h; (h = *pp) != NULL;) {
        eng_engine_stats st;
        if (atomic_load(&h->pins) > 0) {
            pp = &h->next;
            continue;
        }
        /* Nothing pins it, so it holds no request: stopping is quick.  It
         * stays listed (and counted by /metrics) until its counters have
         * moved into svc->gone. */
        eng_engine_stop(h->eng);
        eng_engine_get_stats(h->eng, &st);
        pthread_rwlock_wrlock(&svc->swap_lock);
        svc->gone.steps += st.steps;
        svc->gone.prompt_tokens += st.prompt_tokens;
        svc->gone.generated_tokens += st.generated_tokens;
        svc->gone.rejected_full += st.rejected_full;
        svc->gone.cancelled += st.cancelled;
        svc->gone.expired += st.expired;
        *pp = h->next;
        pthread_rwlock_unlock(&svc->swap_lock);
        engine_free(h);
    }
}

int api_service_reload_poll(api_service *svc, char *err, size_t errlen)
{
    eng_engine_state st;
    api__eng *old;

    reap(svc);
    if (svc->loading == NULL)
        return 0;
    st = eng_engine_get_state(svc->loading->eng, err, errlen);
    if (st == ENG_ENGINE_LOADING)
        return 0;
    if (st != ENG_ENGINE_READY) {
        engine_free(svc->loading);
        svc->loading = NULL;
        return -EIO;
    }
    pthread_rwlock_wrlock(&svc->swap_lock);
    old = svc->cur;
    svc->cur = svc->loading;
    svc->eng = svc->cur->eng;
    memcpy(svc->model_hash, svc->cur->hash, sizeof(svc->model_hash));
    old->next = svc->retired;
    svc->retired = old;
    svc->loading = NULL;
    pthread_rwlock_unlock(&svc->swap_lock);
    reap(svc);
    return 1;
}

bool api_service_reload_pending(const api_service *svc)
{
    return svc->loading != NULL || svc->retired != NULL;
}

/* ---- for the handlers (swap_lock held for reading) ------------------------ */

api__eng *api__pin(api_service *svc)
{
    api__eng *h = svc->cur;

    if (h != NULL)
        atomic_fetch_add(&h->pins, 1);
    return h;
}

void api__unpin(api__eng *h)
{
    if (h != NULL)
        atomic_fetch_sub(&h->pins, 1);
}

void api__engine_stats(api_service *svc, eng_engine_stats *st)
{
    eng_engine_stats r;

    memset(st, 0, sizeof(*st));
    if (svc->eng != NULL)
        eng_engine_get_stats(svc->eng, st);
    /* Retired engines still finishing their requests count too. */
    for (api__eng *h = svc->retired; h != NULL; h = h->next) {
        eng_engine_get_stats(h->eng, &r);
        st->queued += r.queued;
        st->queued_tokens += r.queued_tokens;
        st->running += r.running;
        st->kv_used += r.kv_used;
        st->kv_capacity += r.kv_capacity;
        st->steps += r.steps;
        st->prompt_tokens += r.prompt_tokens;
        st->generated_tokens += r.generated_tokens;
        st->rejected_full += r.rejected_full;
        st->cancelled += r.cancelled;
        st->expired += r.expired;
    }
    st->steps += svc->gone.steps;
    st->prompt_tokens += svc->gone.prompt_tokens;
    st->generated_tokens += svc->gone.generated_tokens;
    st->rejected_full += svc->gone.rejected_full;
    st->cancelled += svc->gone.cancelled;
    st->expired += svc->gone.expired;
}
