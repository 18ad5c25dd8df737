/* main.c: fp8d's startup order, shutdown and exit codes; the only place
 * in the tree that ends the process.
 *
 * Exit codes: 0 clean (also after --help, --version, a good --check-config
 * and a drained SIGTERM); 1 start-up failure, a bad --check-config or a
 * forced stop (second signal); 2 invalid configuration or command line. */
#include "config.h"

#include "server/server.h"
#include "kernels/kernels.h"
#include "kernels/kn_base.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_CONFIG = 2 };

static int check_config(const srv_config *cfg, const char *path)
{
    api_service_params p;
    api_service *svc;
    char err[1024];

    api_service_params_default(&p);
    p.model_path = cfg->model;
    if (api_service_new(&svc, &p, err, sizeof(err)) < 0) {
        fprintf(stderr, "fp8d: %s\n", err);
        return EXIT_FAIL;
    }
    api_service_free(svc);
    printf("fp8d: configuration OK (%s)\n", path[0] ? path : "no config file, defaults");
    return EXIT_OK;
}

/* Start-up failed after logging began: tell systemd why, then exit. */
static int fail_start(int rc, const char *err)
{
    char msg[32];

    SRV_LOG(KN_LOG_ERR, "%s", err);
    snprintf(msg, sizeof(msg), "ERRNO=%d", rc < 0 ? -rc : rc);
    srv_notify(msg);
    srv_notify_status("failed: %s", err);
    return EXIT_FAIL;
}

static int serve(srv_config *cfg, const char *path, int argc, char **argv)
{
    api_service_params p;
    api_service *svc = NULL;
    srv_http *http = NULL;
    char err[1024];
    int rc, n_fds, code;

    SRV_LOG(KN_LOG_INFO, "fp8d %s starting: config %s, model %s", PACKAGE_VERSION,
            path[0] ? path : "(none, defaults and flags)", cfg->model);
    srv_notify_status("starting: checking model %s", cfg->model);
    api_service_params_default(&p);
    p.model_path = cfg->model;
    p.threads = (int)cfg->threads;
    p.served_model_name = cfg->served_model_name;
    p.max_queued_requests = (size_t)cfg->max_queued_requests;
    p.max_queued_tokens = (size_t)cfg->max_queued_tokens;
    p.max_running = (size_t)cfg->max_batch;
    p.request_timeout_ms = cfg->request_timeout_ms;
    p.max_tokens_limit = (int)cfg->max_tokens_limit;
    p.max_n = (int)cfg->max_n;
    p.max_prompt_tokens = (size_t)cfg->max_prompt_tokens;
    p.api_keys_file = cfg->api_keys_file;
    p.cors_origins = cfg->cors_origins;
    p.fp8_config = cfg->fp8_config;
    p.state_dir = cfg->state_dir;
    if ((rc = api_service_new(&svc, &p, err, sizeof(err))) < 0)
        return fail_start(rc, err);
    /* The engine thread loads the model while we start listening: probes
     * answer 503 "loading" until the loop sees it ready and sends READY=1. */
    srv_notify_status("loading model %s", cfg->model);
    if ((rc = api_service_start(svc, err, sizeof(err))) < 0) {
        api_service_free(svc);
        return fail_start(rc, err);
    }
    if ((n_fds = srv_listen_fds(err, sizeof(err))) < 0) {
        api_service_free(svc);
        return fail_start(n_fds, err);
    }
    if (n_fds > 1)
        SRV_LOG(KN_LOG_WARN, "socket activation passed %d sockets; serving on the first",
                n_fds);
    if ((rc = srv_http_start(&http, svc, cfg, n_fds > 0 ? 3 : -1, err, sizeof(err))) < 0) {
        api_service_free(svc);
        return fail_start(rc, err);
    }
    if (n_fds > 0)
        SRV_LOG(KN_LOG_INFO, "listening on socket-activated fd 3 (port %d)",
                srv_http_port(http));
    else
        SRV_LOG(KN_LOG_INFO, "listening on http://%s:%d", cfg->host, srv_http_port(http));

    srv_loop_ctx ctx = { .cfg = cfg, .argc = argc, .argv = argv, .svc = svc, .http = http };
    code = srv_loop_run(&ctx);
    /* Engine first: every request waiting on it completes and wakes its
     * connection, so none is left suspended when MHD stops. */
    api_service_stop_engine(svc);
    /* The woken connections still send their answer (a 503 "shutting
     * down" for calls cut short) from MHD's threads: let them finish, for
     * 0.5 s at most (a client stuck mid-upload never will, and the drain
     * already had shutdown_timeout), before MHD closes every socket. */
    for (int i = 0; i < 50 && api_metrics_in_flight(svc) > 0; i++)
        usleep(10 * 1000);
    srv_http_stop(http);
    api_service_free(svc);
    SRV_LOG(KN_LOG_INFO, "stopped (exit status %d)", code);
    return code;
}

int main(int argc, char **argv)
{
    srv_config cfg;
    srv_action action;
    char err[1024], path[4096];
    int code;

    if (srv_config_load(&cfg, argc, argv, &action, path, sizeof(path), err, sizeof(err)) < 0) {
        fprintf(stderr, "fp8d: %s\n", err);
        return action == SRV_CHECK_CONFIG ? EXIT_FAIL : EXIT_CONFIG;
    }
    switch (action) {
    case SRV_HELP:
        srv_config_help(stdout, argv[0]);
        return EXIT_OK;
    case SRV_VERSION:
        printf("fp8d %s\n", PACKAGE_VERSION);
        return EXIT_OK;
    case SRV_CHECK_CONFIG:
        return check_config(&cfg, path);
    case SRV_RUN:
        break;
    }
    /* Before any thread exists: MHD's threads inherit the blocked mask, so
     * only the libuv loop ever takes these signals. */
    signal(SIGPIPE, SIG_IGN);
    srv_signals_block();
    srv_log_init((int)cfg.log_level, (int)cfg.log_format);
    /* The kernel table is filled once, before any thread exists (FP8
     * quantization reads it from the engine thread). */
    if (kn_init(NULL) < 0) {
        SRV_LOG(KN_LOG_ERR, "no usable kernel variant for this CPU");
        return EXIT_FAIL;
    }
    if (srv_systemd_init(err, sizeof(err)) < 0)
        SRV_LOG(KN_LOG_WARN, "systemd notify disabled: %s", err);
    code = serve(&cfg, path, argc, argv);
    srv_systemd_cleanup();
    return code;
}
