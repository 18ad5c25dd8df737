/* srv_loop.c: the libuv loop on the main thread: signals, the watchdog
 * timer, the reload and the drain.  Nothing here runs on MHD's threads.
 *
 * Reload: SIGHUP re-reads the configuration (the reloadable keys apply at
 * once), then reloads the model when the files of its directory changed:
 * the new one loads beside the running one, which keeps serving, and
 * takes over only once loaded; a model that fails to load is logged and
 * the running one stays (api_engine.c).
 *
 * Shutdown: the first SIGTERM/SIGINT sends STOPPING=1, turns readiness to
 * "stopping" (probes answer 503), stops accepting connections and polls the
 * in-flight count every DRAIN_POLL_MS until it is 0 or shutdown_timeout
 * has passed; the exit status is 0 either way.  A second signal during the
 * drain stops at once with status 1, so an operator's double Ctrl-C works. */
#include "config.h"

#include "server/server.h"
#include "kernels/kn_base.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <uv.h>

#define DRAIN_POLL_MS 50

typedef struct loop_state {
    uv_loop_t     loop;
    uv_signal_t   sig_term, sig_int, sig_hup;
    uv_timer_t    watchdog, drain, load, model_reload;
    uint64_t      watchdog_ms;
    srv_loop_ctx *ctx;
    bool          draining;
    uint64_t      drain_deadline_ms;    /* uv_now() value */
    int           exit_code;
} loop_state;

static void stop_loop(loop_state *ls, int code)
{
    ls->exit_code = code;
    uv_stop(&ls->loop);
}

static void on_drain_tick(uv_timer_t *t)
{
    loop_state *ls = t->data;
    int64_t n = api_metrics_in_flight(ls->ctx->svc);

    if (n <= 0) {
        SRV_LOG(KN_LOG_INFO, "drain complete: no request in flight, exiting");
        stop_loop(ls, 0);
    } else if (uv_now(&ls->loop) >= ls->drain_deadline_ms) {
        SRV_LOG(KN_LOG_WARN, "shutdown_timeout (%lld s) reached with %lld request(s) in "
                "flight: closing them", (long long)ls->ctx->cfg->shutdown_timeout,
                (long long)n);
        stop_loop(ls, 0);
    }
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    loop_state *ls = s->data;

    if (ls->draining) {
        SRV_LOG(KN_LOG_WARN, "second %s during the drain: exiting now", strsignal(signum));
        stop_loop(ls, 1);
        return;
    }
    ls->draining = true;
    SRV_LOG(KN_LOG_INFO, "%s: draining %lld in-flight request(s), up to %lld s",
            strsignal(signum), (long long)api_metrics_in_flight(ls->ctx->svc),
            (long long)ls->ctx->cfg->shutdown_timeout);
    srv_notify("STOPPING=1");
    api_service_set_state(ls->ctx->svc, API_STATE_STOPPING);
    srv_http_quiesce(ls->ctx->http);
    ls->drain_deadline_ms = uv_now(&ls->loop) + (uint64_t)ls->ctx->cfg->shutdown_timeout * 1000;
    uv_timer_start(&ls->drain, on_drain_tick, 0, DRAIN_POLL_MS);
}

static void log_changed_key(const char *key, bool reloadable, void *ud)
{
    if (reloadable)
        SRV_LOG(KN_LOG_INFO, "reload: \"%s\" changed, applied", key);
    else
        SRV_LOG(KN_LOG_WARN, "reload: \"%s\" changed but needs a restart; the running "
                "value stays", key);
}

static void reload(loop_state *ls)
{
    srv_loop_ctx *ctx = ls->ctx;
    srv_config next;
    srv_action action;
    char err[512], path[4096];

    if (srv_config_load(&next, ctx->argc, ctx->argv, &action, path, sizeof(path), err,
                        sizeof(err)) < 0) {
        SRV_LOG(KN_LOG_ERR, "reload failed, keeping the running configuration: %s", err);
        return;
    }
    if (srv_config_diff(ctx->cfg, &next, log_changed_key, NULL) == 0)
        SRV_LOG(KN_LOG_INFO, "reload: %s: nothing changed", path[0] ? path : "(no file)");
    /* Only the rows marked reloadable in srv_config.c are copied. */
    ctx->cfg->log_level = next.log_level;
    ctx->cfg->log_format = next.log_format;
    ctx->cfg->shutdown_timeout = next.shutdown_timeout;
    ctx->cfg->max_body_bytes = next.max_body_bytes;
    srv_log_reconfigure((int)next.log_level, (int)next.log_format);
    srv_http_set_max_body(ctx->http, next.max_body_bytes);
}

/* Follows a model reload until the new model serves or has failed, and
 * until the engine it replaced has finished its requests and is freed. */
static void on_model_reload_tick(uv_timer_t *t)
{
    loop_state *ls = t->data;
    char err[1024] = "";
    int rc = api_service_reload_poll(ls->ctx->svc, err, sizeof(err));

    if (rc > 0)
        SRV_LOG(KN_LOG_INFO, "reload: model %s loaded: new requests go to it, the previous "
                "one finishes those it holds", ls->ctx->cfg->model);
    else if (rc < 0)
        SRV_LOG(KN_LOG_ERR, "reload: loading model %s failed, keeping the running model: %s",
                ls->ctx->cfg->model, err);
    if (rc != 0 && !ls->draining)
        srv_notify_status("ready: serving on port %d", srv_http_port(ls->ctx->http));
    if (!api_service_reload_pending(ls->ctx->svc))
        uv_timer_stop(&ls->model_reload);
}

static void reload_model(loop_state *ls)
{
    char err[1024] = "";
    int rc = api_service_reload(ls->ctx->svc, err, sizeof(err));

    if (rc == 0) {
        SRV_LOG(KN_LOG_INFO, "reload: the files of model %s are unchanged since the last "
                "load: the model stays", ls->ctx->cfg->model);
    } else if (rc < 0) {
        SRV_LOG(rc == -EBUSY ? KN_LOG_WARN : KN_LOG_ERR, "reload: model %s not reloaded, "
                "keeping the running model: %s", ls->ctx->cfg->model, err);
    } else {
        SRV_LOG(KN_LOG_INFO, "reload: the files of model %s changed: loading it beside the "
                "running one", ls->ctx->cfg->model);
        srv_notify_status("ready: serving on port %d; loading the changed model",
                          srv_http_port(ls->ctx->http));
        uv_timer_start(&ls->model_reload, on_model_reload_tick, 20, 20);
    }
}

static void on_hup(uv_signal_t *s, int signum)
{
    loop_state *ls = s->data;

    if (ls->draining) {
        SRV_LOG(KN_LOG_INFO, "SIGHUP ignored: shutting down");
        return;
    }
    srv_notify_reloading();
    srv_notify_status("reloading configuration");
    reload(ls);
    reload_model(ls);
    /* READY=1 even after a failed reload: the old config still serves,
     * and the running model serves while a changed one loads. */
    srv_notify("READY=1");
    srv_notify_status("ready: serving on port %d", srv_http_port(ls->ctx->http));
}

/* Pings only while the engine thread shows life (style.md section 7): a
 * wedged engine stops the pings and systemd restarts the service. */
static void on_watchdog(uv_timer_t *t)
{
    loop_state *ls = t->data;
    uint64_t max_age = ls->watchdog_ms * 2 > 1000 ? ls->watchdog_ms * 2 : 1000;

    if (api_service_alive(ls->ctx->svc, max_age))
        srv_notify("WATCHDOG=1");
    else
        SRV_LOG(KN_LOG_ERR, "engine heartbeat older than %llu ms: withholding WATCHDOG=1",
                (unsigned long long)max_age);
}

/* Watches the engine's model load: READY=1 once loaded, exit 1 if it failed. */
static void on_load_tick(uv_timer_t *t)
{
    loop_state *ls = t->data;
    char err[1024] = "";
    int rc = api_service_poll(ls->ctx->svc, err, sizeof(err));

    if (rc == 0)
        return;
    uv_timer_stop(&ls->load);
    if (rc < 0) {
        SRV_LOG(KN_LOG_ERR, "model load failed: %s", err);
        srv_notify_status("failed: %s", err);
        stop_loop(ls, 1);
        return;
    }
    if (ls->draining)
        return;
    SRV_LOG(KN_LOG_INFO, "model loaded: ready");
    srv_notify("READY=1");
    srv_notify_status("ready: serving on port %d", srv_http_port(ls->ctx->http));
}

static int start_handles(loop_state *ls)
{
    uint64_t wd = srv_watchdog_usec();
    int rc;

    ls->sig_term.data = ls->sig_int.data = ls->sig_hup.data = ls;
    ls->watchdog.data = ls->drain.data = ls->load.data = ls->model_reload.data = ls;
    if ((rc = uv_signal_init(&ls->loop, &ls->sig_term)) < 0 ||
        (rc = uv_signal_init(&ls->loop, &ls->sig_int)) < 0 ||
        (rc = uv_signal_init(&ls->loop, &ls->sig_hup)) < 0 ||
        (rc = uv_timer_init(&ls->loop, &ls->watchdog)) < 0 ||
        (rc = uv_timer_init(&ls->loop, &ls->drain)) < 0 ||
        (rc = uv_timer_init(&ls->loop, &ls->load)) < 0 ||
        (rc = uv_timer_init(&ls->loop, &ls->model_reload)) < 0)
        return rc;
    if ((rc = uv_timer_start(&ls->load, on_load_tick, 0, 20)) < 0)
        return rc;
    if ((rc = uv_signal_start(&ls->sig_term, on_stop_signal, SIGTERM)) < 0 ||
        (rc = uv_signal_start(&ls->sig_int, on_stop_signal, SIGINT)) < 0 ||
        (rc = uv_signal_start(&ls->sig_hup, on_hup, SIGHUP)) < 0)
        return rc;
    /* main.c blocked these before any thread started (so MHD's threads
     * never take them); the loop's handlers are in place now, so a signal
     * that arrived meanwhile is delivered here, not lost or fatal. */
    srv_signals_unblock();
    if (wd > 0) {
        /* systemd wants a ping at least every WATCHDOG_USEC; half leaves slack. */
        uint64_t ms = wd / 2000 > 0 ? wd / 2000 : 1;
        ls->watchdog_ms = ms;
        SRV_LOG(KN_LOG_INFO, "watchdog: pinging systemd every %llu ms", (unsigned long long)ms);
        if ((rc = uv_timer_start(&ls->watchdog, on_watchdog, 0, ms)) < 0)
            return rc;
    }
    return 0;
}

static void close_cb(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int srv_loop_run(srv_loop_ctx *ctx)
{
    loop_state ls;
    int rc;

    memset(&ls, 0, sizeof(ls));
    ls.ctx = ctx;
    if ((rc = uv_loop_init(&ls.loop)) < 0) {
        SRV_LOG(KN_LOG_ERR, "libuv: loop init: %s", uv_strerror(rc));
        return 1;
    }
    if ((rc = start_handles(&ls)) < 0) {
        SRV_LOG(KN_LOG_ERR, "libuv: signals/timers: %s", uv_strerror(rc));
        ls.exit_code = 1;
    } else {
        uv_run(&ls.loop, UV_RUN_DEFAULT);
    }
    /* Close every handle and let the loop run their close callbacks. */
    uv_walk(&ls.loop, close_cb, NULL);
    uv_run(&ls.loop, UV_RUN_DEFAULT);
    uv_loop_close(&ls.loop);
    return ls.exit_code;
}

static void set_stop_signals(int how)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(how, &set, NULL);
}

void srv_signals_block(void)
{
    set_stop_signals(SIG_BLOCK);
}

void srv_signals_unblock(void)
{
    set_stop_signals(SIG_UNBLOCK);
}
