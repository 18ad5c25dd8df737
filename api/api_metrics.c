/* api_metrics.c: the HTTP counters and GET /metrics in the Prometheus
 * text format 0.0.4 (serving-anchors 2.7).  Names carry the "fp8d:" prefix
 * the way vLLM's carry "vllm:", so dashboards built for it read naturally.
 * Labels have a fixed set of values (route labels from the route table,
 * status codes 100..599), so the number of series stays bounded. */
#include "config.h"

#include "api/api-int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void api_metrics_request_begin(api_service *svc)
{
    atomic_fetch_add(&svc->in_flight, 1);
}

void api_metrics_request_end(api_service *svc, const char *path, int status)
{
    int route = path != NULL ? api__route_find(path, strcspn(path, "?")) : -1;

    if (route < 0)
        route = (int)api__n_routes;          /* "other" */
    if (status < API_STATUS_MIN || status > API_STATUS_MAX)
        status = 500;                        /* no other value can leave the server */
    atomic_fetch_add(&svc->requests[route][status - API_STATUS_MIN], 1);
    atomic_fetch_sub(&svc->in_flight, 1);
}

void api__hist_observe(api_hist *h, double v)
{
    size_t i = 0;

    while (i < h->n && v > h->bounds[i])
        i++;
    atomic_fetch_add(&h->count[i], 1);
    atomic_fetch_add(&h->sum_us, (uint64_t)(v > 0 ? v * 1e6 : 0));
}

int64_t api_metrics_in_flight(const api_service *svc)
{
    return atomic_load(&((api_service *)svc)->in_flight);
}

/* A growable text buffer; on allocation failure it stops growing and
 * remembers the failure, so callers check once at the end. */
typedef struct textbuf {
    char  *s;
    size_t len, cap;
    int    failed;
} textbuf;

__attribute__((format(printf, 2, 3)))
static void tb_printf(textbuf *tb, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (tb->failed)
        return;
    for (;;) {
        size_t room = tb->cap - tb->len;
        va_start(ap, fmt);
        n = vsnprintf(tb->s != NULL ? tb->s + tb->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            tb->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            tb->len += (size_t)n;
            return;
        }
        size_t cap = tb->cap * 2 + (size_t)n + 256;
        char *p = realloc(tb->s, cap);
        if (p == NULL) {
            tb->failed = 1;
            return;
        }
        tb->s = p;
        tb->cap = cap;
    }
}

static void family(textbuf *tb, const char *name, const char *type, const char *help)
{
    tb_printf(tb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist(textbuf *tb, const char *name, const char *help, const char *model,
                 api_hist *h)
{
    uint64_t cum = 0;

    family(tb, name, "histogram", help);
    for (size_t i = 0; i <= h->n; i++) {
        cum += atomic_load(&h->count[i]);
        if (i < h->n)
            tb_printf(tb, "%s_bucket{model_name=\"%s\",le=\"%g\"} %llu\n", name, model,
                      h->bounds[i], (unsigned long long)cum);
        else
            tb_printf(tb, "%s_bucket{model_name=\"%s\",le=\"+Inf\"} %llu\n", name, model,
                      (unsigned long long)cum);
    }
    tb_printf(tb, "%s_sum{model_name=\"%s\"} %.6f\n", name, model,
              (double)atomic_load(&h->sum_us) / 1e6);
    tb_printf(tb, "%s_count{model_name=\"%s\"} %llu\n", name, model, (unsigned long long)cum);
}

/* The engine and request metrics, vLLM's names with our prefix
 * (serving-anchors 3.1, 3.2). */
static void serving_metrics(textbuf *tb, api_service *svc)
{
    eng_engine_stats st = { 0 };
    const char *m = svc->model_name;
    static const char *fin[] = { "stop", "length", "abort" };
    static const char *canc[] = { "client_disconnect", "deadline", "shutdown" };

    api__engine_stats(svc, &st);
#define GAUGE(n, h, fmt, v) \
    do { family(tb, n, "gauge", h); tb_printf(tb, n "{model_name=\"%s\"} " fmt "\n", m, v); } while (0)
#define COUNTER(n, h, v) \
    do { family(tb, n, "counter", h); \
         tb_printf(tb, n "{model_name=\"%s\"} %llu\n", m, (unsigned long long)(v)); } while (0)
    GAUGE("fp8d:num_requests_running", "Sequences in the running batch of the engine.", "%llu",
          (unsigned long long)st.running);
    GAUGE("fp8d:num_requests_waiting", "Sequences waiting in the queue of the engine.", "%llu",
          (unsigned long long)st.queued);
    GAUGE("fp8d:num_prompt_tokens_waiting", "Prompt tokens waiting in the queue.", "%llu",
          (unsigned long long)st.queued_tokens);
    GAUGE("fp8d:kv_cache_usage_perc", "KV cache positions used over those allocated (0..1).",
          "%.6f", st.kv_capacity ? (double)st.kv_used / (double)st.kv_capacity : 0.0);
    GAUGE("fp8d:kv_cache_tokens", "KV cache positions in use.", "%llu",
          (unsigned long long)st.kv_used);
    COUNTER("fp8d:prompt_tokens_total", "Prompt tokens prefilled.", st.prompt_tokens);
    COUNTER("fp8d:generation_tokens_total", "Tokens generated.", st.generated_tokens);
    COUNTER("fp8d:engine_steps_total", "Forward steps (one batch each).", st.steps);
    family(tb, "fp8d:request_success_total", "counter",
           "Sequences finished, by finish reason (abort: failed).");
    for (int i = 0; i < API_FIN_COUNT_; i++)
        tb_printf(tb, "fp8d:request_success_total{model_name=\"%s\",finished_reason=\"%s\"} "
                  "%llu\n", m, fin[i], (unsigned long long)atomic_load(&svc->finished[i]));
    family(tb, "fp8d:requests_rejected_total", "counter",
           "Requests refused before reaching the engine, by reason.");
    tb_printf(tb, "fp8d:requests_rejected_total{model_name=\"%s\",reason=\"queue_full\"} %llu\n",
              m, (unsigned long long)atomic_load(&svc->rejected_full));
    tb_printf(tb, "fp8d:requests_rejected_total{model_name=\"%s\",reason=\"unavailable\"} "
              "%llu\n", m, (unsigned long long)atomic_load(&svc->rejected_unready));
    family(tb, "fp8d:requests_cancelled_total", "counter",
           "Sequences the engine dropped before they finished, by reason.");
    for (int i = 0; i < API_CANCEL_COUNT_; i++)
        tb_printf(tb, "fp8d:requests_cancelled_total{model_name=\"%s\",reason=\"%s\"} %llu\n",
                  m, canc[i], (unsigned long long)atomic_load(&svc->cancelled[i]));
    hist(tb, "fp8d:time_to_first_token_seconds", "Time from arrival to the first token.", m,
         &svc->ttft);
    hist(tb, "fp8d:inter_token_latency_seconds", "Time between two tokens of a sequence.", m,
         &svc->itl);
    hist(tb, "fp8d:e2e_request_latency_seconds", "Time from arrival to the last token.", m,
         &svc->e2e);
    {
        eng_calib_status cs = { 0 };
        static const char *modes[] = { "off", "measure", "quantize" };
        if (svc->eng != NULL)
            eng_engine_calib_status(svc->eng, &cs);
        family(tb, "fp8d:calibration_mode", "gauge", "FP8 mode; the series of the mode is 1.");
        for (int i = 0; i < 3; i++)
            tb_printf(tb, "fp8d:calibration_mode{model_name=\"%s\",mode=\"%s\"} %d\n", m,
                      modes[i], strcmp(api__mode_name(cs.mode), modes[i]) == 0);
        GAUGE("fp8d:calibration_epoch", "Bumped by every FP8 mode or scale change.", "%llu",
              (unsigned long long)cs.epoch);
        COUNTER("fp8d:calibration_tokens_observed_total",
                "Tokens whose activations fed the measurements since MEASURE was entered.",
                cs.tokens_observed);
        COUNTER("fp8d:calibration_transitions_total", "FP8 mode switches and loads.",
                cs.transitions);
    }
#undef GAUGE
#undef COUNTER
}

static double uptime_seconds(const api_service *svc)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - svc->started.tv_sec) +
           (double)(now.tv_nsec - svc->started.tv_nsec) / 1e9;
}

int api__metrics(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    textbuf tb = { 0 };
    api_state st = api_service_state(svc);

    family(&tb, "fp8d:build_info", "gauge", "Build information; the value is always 1.");
    tb_printf(&tb, "fp8d:build_info{version=\"%s\"} 1\n", svc->version);
    family(&tb, "fp8d:process_start_time_seconds", "gauge",
           "Start time of the service since the Unix epoch, in seconds.");
    tb_printf(&tb, "fp8d:process_start_time_seconds %.3f\n", svc->started_unix);
    family(&tb, "fp8d:uptime_seconds", "gauge", "Seconds since the service started.");
    tb_printf(&tb, "fp8d:uptime_seconds %.3f\n", uptime_seconds(svc));
    family(&tb, "fp8d:server_state", "gauge",
           "Lifecycle state; the series of the current state is 1.");
    for (int s = 0; s < API_STATE_COUNT_; s++)
        tb_printf(&tb, "fp8d:server_state{state=\"%s\"} %d\n", api_state_name((api_state)s),
                  s == (int)st);
    family(&tb, "fp8d:http_requests_in_flight", "gauge",
           "HTTP requests received and not yet answered.");
    tb_printf(&tb, "fp8d:http_requests_in_flight %lld\n",
              (long long)api_metrics_in_flight(svc));
    family(&tb, "fp8d:http_requests_total", "counter",
           "HTTP requests answered, by route and status code.");
    for (size_t r = 0; r <= api__n_routes; r++) {
        const char *label = r < api__n_routes ? api__routes[r].path : "other";
        for (int i = 0; i < API_N_STATUS; i++) {
            uint64_t n = atomic_load(&svc->requests[r][i]);
            if (n != 0)
                tb_printf(&tb, "fp8d:http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                          label, i + API_STATUS_MIN, (unsigned long long)n);
        }
    }
    serving_metrics(&tb, svc);
    if (tb.failed || tb.s == NULL) {
        free(tb.s);
        return api_error_response(out, 500, "out of memory building /metrics");
    }
    out->status = 200;
    out->content_type = "text/plain; version=0.0.4; charset=utf-8";
    out->body = tb.s;
    out->body_len = tb.len;
    return 0;
}
