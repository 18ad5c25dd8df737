/* loadgen.c: the load driver of tests/integration/load.sh and faults.sh.
 *
 * Keeps --conns connections busy against a running fp8d (libcurl multi,
 * one transfer per connection at a time, keep-alive), for --duration
 * seconds and/or --count requests, mixing POST /v1/completions, streamed
 * POST /v1/chat/completions and GET /health.  Every answer is checked:
 *   200       the body parses (completions: choices[0].text and usage;
 *             streams: every "data: " frame is JSON and the last one is
 *             "data: [DONE]"; health: {"status":"ok"});
 *   429, 503  deliberate refusals: the OpenAI error shape with "status"
 *             equal to the HTTP status (a 429 slot waits Retry-After);
 *   a stream cut by the server (shutdown, deadline) ends with an error
 *             event and then [DONE]: counted as "cut" when its status is
 *             503, otherwise a failure;
 *   anything else (another status, a transport error on a request the
 *             server accepted, a body that does not parse) is a failure.
 * With --abort-pct P the client abandons P% of the inference requests at
 * a random point (streams after a random number of bytes, plain
 * completions after a random time): those count as "aborted", not as
 * failures.  With --drain a refused connection (the daemon stopped
 * listening) counts as "refused" and ends that connection's work.
 *
 * Reports requests by kind and outcome, failures by cause, latency
 * percentiles of the answered requests (and time to first byte of the
 * streams, which the server sends with the first token), and the daemon's
 * VmRSS (--pid) at start, after --warmup seconds, at its peak and at the
 * end.  With --rss-slack PCT the end may exceed the warm-up sample by at
 * most PCT percent.  Timings are printed, never asserted.
 * Exit status: 0 no failure (and RSS within the slack), 1 otherwise,
 * 2 bad usage. */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum kind { K_CMPL, K_STREAM, K_HEALTH, K_COUNT };
static const char *const kind_name[K_COUNT] = { "completion", "chat_stream", "health" };

/* Outcomes of one request; the first four are not failures. */
enum outcome { O_OK, O_REJECTED, O_CUT, O_ABORTED, O_REFUSED, O_FAIL, O_COUNT };
static const char *const outcome_name[O_COUNT] = { "ok", "rejected", "cut", "aborted",
                                                   "refused", "fail" };

/* Failure causes, for the "errors by kind" line. */
enum cause { C_TRANSPORT, C_STATUS, C_JSON, C_SHAPE, C_SSE, C_COUNT };
static const char *const cause_name[C_COUNT] = { "transport", "bad_status", "bad_json",
                                                 "bad_shape", "bad_sse" };

static const char *const prompts[] = {
    "ROMEO:", "JULIET: O Romeo, Romeo!", "KING HENRY:", "To be, or not to be,",
    "First Citizen:\nBefore we proceed any further, hear me speak.", "MENENIUS:",
};
#define N_PROMPTS (sizeof(prompts) / sizeof(prompts[0]))

typedef struct opts {
    const char *url;
    int         conns;
    double      duration, warmup;
    long        count;
    int         mix[K_COUNT];
    int         tok_lo, tok_hi;
    bool        ignore_eos, drain;
    long        pid;
    double      rss_slack;           /* percent; < 0: no check */
    int         abort_pct;
    uint64_t    seed;
} opts;

typedef struct buf {
    char  *s;
    size_t len, cap;
} buf;

typedef struct slot {
    CURL              *h;
    struct curl_slist *hdrs;
    int                id;
    bool               busy;
    enum kind          kind;
    double             t_start, t_first, not_before;
    size_t             abort_after;  /* stream bytes before the client hangs up; 0 = never */
    bool               aborting;
    double             retry_after;  /* seconds, from a 429's Retry-After */
    char               body_out[1024];
    buf                in;
} slot;

typedef struct darr {
    double *v;
    size_t  n, cap;
} darr;

typedef struct stats {
    long outcomes[K_COUNT][O_COUNT];
    long statuses[K_COUNT][600];
    long causes[C_COUNT];
    darr lat[K_COUNT], ttft;
    long started, finished, failures_printed;
} stats;

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: reproducible from --seed. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static int rnd_in(int lo, int hi)
{
    return lo + (int)(rnd() % (uint64_t)(hi - lo + 1));
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die_oom(void)
{
    fprintf(stderr, "loadgen: out of memory\n");
    exit(1);
}

static void darr_push(darr *a, double x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        double *p = realloc(a->v, cap * sizeof(*p));
        if (p == NULL)
            die_oom();
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const darr *a, double p)
{
    size_t k;

    if (a->n == 0)
        return 0.0;
    k = (size_t)(p / 100.0 * (double)a->n + 0.999999);
    k = k == 0 ? 0 : k - 1;
    return a->v[k < a->n ? k : a->n - 1];
}

/* VmRSS of pid in KiB, or -1 when it cannot be read (the daemon is gone). */
static long rss_kb(long pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* ---- answers -------------------------------------------------------------- */

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    slot *s = ud;
    size_t k = sz * n;

    if (s->t_first == 0.0)
        s->t_first = now_s();
    if (s->in.len + k + 1 > s->in.cap) {
        size_t cap = s->in.cap ? s->in.cap * 2 : 4096;
        char *q;
        while (cap < s->in.len + k + 1)
            cap *= 2;
        if ((q = realloc(s->in.s, cap)) == NULL)
            return 0;
        s->in.s = q;
        s->in.cap = cap;
    }
    memcpy(s->in.s + s->in.len, p, k);
    s->in.len += k;
    s->in.s[s->in.len] = '\0';
    if (s->abort_after > 0 && s->in.len >= s->abort_after) {
        s->aborting = true;
        return 0;               /* curl drops the connection: a client hanging up */
    }
    return k;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    slot *s = ud;
    size_t k = sz * n;

    if (k > 12 && strncasecmp(p, "Retry-After:", 12) == 0)
        s->retry_after = atof(p + 12);
    return k;
}

/* The OpenAI error object with "status" equal to the HTTP status. */
static bool error_shape(json_t *o, long status)
{
    json_t *e = json_object_get(o, "error");

    return json_is_object(e) && json_is_string(json_object_get(e, "message")) &&
           json_is_string(json_object_get(e, "type")) &&
           json_is_string(json_object_get(e, "code")) &&
           json_integer_value(json_object_get(e, "status")) == status;
}

static bool completion_shape(json_t *o, int max_tokens)
{
    json_t *ch = json_object_get(o, "choices"), *u = json_object_get(o, "usage");
    json_t *c0 = json_array_get(ch, 0);

    return json_is_array(ch) && json_is_string(json_object_get(c0, "text")) &&
           json_is_string(json_object_get(c0, "finish_reason")) &&
           json_is_integer(json_object_get(u, "completion_tokens")) &&
           json_integer_value(json_object_get(u, "completion_tokens")) <= max_tokens;
}

/* Checks an SSE body: frames "data: ...\n\n", JSON chunks, a final [DONE];
 * an error event may only come last before [DONE].  Returns O_OK, O_CUT
 * (error event with status 503) or O_FAIL with *cause. */
static enum outcome check_sse(const char *b, size_t len, enum cause *cause)
{
    const char *p = b, *end = b + len;
    bool done = false, saw_error = false;
    long err_status = 0;

    *cause = C_SSE;
    while (p < end) {
        const char *q = strstr(p, "\n\n");
        json_t *o, *e;
        if (q == NULL || done || strncmp(p, "data: ", 6) != 0)
            return O_FAIL;          /* a torn frame, or anything after [DONE] */
        if (q - p == 12 && strncmp(p, "data: [DONE]", 12) == 0) {
            done = true;
            p = q + 2;
            continue;
        }
        if (saw_error)
            return O_FAIL;          /* only [DONE] may follow an error event */
        if ((o = json_loadb(p + 6, (size_t)(q - p - 6), 0, NULL)) == NULL) {
            *cause = C_JSON;
            return O_FAIL;
        }
        if ((e = json_object_get(o, "error")) != NULL) {
            saw_error = true;
            err_status = json_integer_value(json_object_get(e, "status"));
            if (!error_shape(o, err_status)) {
                json_decref(o);
                *cause = C_SHAPE;
                return O_FAIL;
            }
        } else if (!json_is_array(json_object_get(o, "choices"))) {
            json_decref(o);
            *cause = C_SHAPE;
            return O_FAIL;
        }
        json_decref(o);
        p = q + 2;
    }
    if (!done)
        return O_FAIL;
    if (saw_error && err_status != 503) {
        *cause = C_SHAPE;
        return O_FAIL;
    }
    return saw_error ? O_CUT : O_OK;
}

/* Classifies a finished transfer. */
static enum outcome judge(const opts *o, slot *s, CURLcode cc, long status, int max_tokens,
                          enum cause *cause)
{
    json_t *j;
    enum outcome out = O_FAIL;

    if (s->aborting || (cc == CURLE_OPERATION_TIMEDOUT && s->abort_after == (size_t)-1))
        return O_ABORTED;
    if (cc == CURLE_COULDNT_CONNECT && o->drain)
        return O_REFUSED;
    if (cc != CURLE_OK) {
        *cause = C_TRANSPORT;
        return O_FAIL;
    }
    if (s->kind == K_STREAM && status == 200)
        return check_sse(s->in.s, s->in.len, cause);
    if ((j = json_loadb(s->in.s != NULL ? s->in.s : "", s->in.len, 0, NULL)) == NULL) {
        *cause = status == 200 || status == 429 || status == 503 ? C_JSON : C_STATUS;
        return O_FAIL;
    }
    *cause = C_SHAPE;
    if (status == 429 || status == 503)
        out = error_shape(j, status) ? O_REJECTED : O_FAIL;
    else if (status != 200)
        *cause = C_STATUS;
    else if (s->kind == K_HEALTH)
        out = json_is_string(json_object_get(j, "status")) &&
              strcmp(json_string_value(json_object_get(j, "status")), "ok") == 0 ? O_OK : O_FAIL;
    else
        out = completion_shape(j, max_tokens) ? O_OK : O_FAIL;
    json_decref(j);
    return out;
}

/* ---- requests ------------------------------------------------------------- */

static enum kind pick_kind(const opts *o)
{
    int total = o->mix[0] + o->mix[1] + o->mix[2], r = rnd_in(0, total - 1);

    for (int k = 0; k < K_COUNT; k++) {
        if (r < o->mix[k])
            return (enum kind)k;
        r -= o->mix[k];
    }
    return K_HEALTH;
}

static int max_tokens_of(const slot *s)
{
    const char *p = strstr(s->body_out, "\"max_tokens\":");

    return p != NULL ? atoi(p + 13) : 0;
}

static void start(const opts *o, CURLM *m, slot *s, stats *st)
{
    char url[512];
    int mt = rnd_in(o->tok_lo, o->tok_hi);
    const char *pr = prompts[rnd() % N_PROMPTS];
    json_t *pj = json_string(pr);
    char *pq = json_dumps(pj, JSON_ENCODE_ANY);
    bool abort_it = o->abort_pct > 0 && rnd_in(1, 100) <= o->abort_pct;

    json_decref(pj);
    if (pq == NULL)
        die_oom();
    s->kind = pick_kind(o);
    s->in.len = 0;
    s->t_first = 0.0;
    s->aborting = false;
    s->abort_after = 0;
    s->retry_after = 0.0;
    curl_easy_reset(s->h);
    if (s->kind == K_HEALTH) {
        snprintf(url, sizeof(url), "%s/health", o->url);
        s->body_out[0] = '\0';
    } else {
        snprintf(url, sizeof(url), "%s%s", o->url,
                 s->kind == K_CMPL ? "/v1/completions" : "/v1/chat/completions");
        if (s->kind == K_CMPL)
            snprintf(s->body_out, sizeof(s->body_out),
                     "{\"prompt\":%s,\"max_tokens\":%d,\"temperature\":0.8,\"seed\":%d%s}", pq,
                     mt, rnd_in(0, 1 << 20), o->ignore_eos ? ",\"ignore_eos\":true" : "");
        else
            snprintf(s->body_out, sizeof(s->body_out),
                     "{\"messages\":[{\"role\":\"user\",\"content\":%s}],\"max_tokens\":%d,"
                     "\"stream\":true,\"temperature\":0.8,\"seed\":%d%s}", pq, mt,
                     rnd_in(0, 1 << 20), o->ignore_eos ? ",\"ignore_eos\":true" : "");
        curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body_out);
        curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdrs);
        if (abort_it && s->kind == K_STREAM)
            s->abort_after = (size_t)rnd_in(1, 3000);
        else if (abort_it) {
            /* A plain completion is abandoned after a random time; the
             * sentinel tells judge() the timeout was ours. */
            s->abort_after = (size_t)-1;
            curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, (long)rnd_in(1, 400));
        }
    }
    free(pq);
    curl_easy_setopt(s->h, CURLOPT_URL, url);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(s->h, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
    curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    s->t_start = now_s();
    s->busy = true;
    st->started++;
    if (curl_multi_add_handle(m, s->h) != CURLM_OK) {
        fprintf(stderr, "loadgen: curl_multi_add_handle failed\n");
        exit(1);
    }
}

static void print_failure(stats *st, const slot *s, CURLcode cc, long status, enum cause c)
{
    if (st->failures_printed++ >= 10)
        return;
    fprintf(stderr, "loadgen: FAIL %s (%s): HTTP %ld, curl %d (%s), %zu bytes: %.300s\n",
            kind_name[s->kind], cause_name[c], status, (int)cc, curl_easy_strerror(cc),
            s->in.len, s->in.s != NULL ? s->in.s : "");
}

static void finish(const opts *o, slot *s, CURLcode cc, stats *st)
{
    long status = 0;
    enum cause cause = C_TRANSPORT;
    enum outcome out;
    double t = now_s();

    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
    out = judge(o, s, cc, status, max_tokens_of(s), &cause);
    s->busy = false;
    st->finished++;
    st->outcomes[s->kind][out]++;
    if (status >= 0 && status < 600)
        st->statuses[s->kind][status]++;
    if (out == O_FAIL) {
        st->causes[cause]++;
        print_failure(st, s, cc, status, cause);
    }
    if (out == O_OK) {
        darr_push(&st->lat[s->kind], t - s->t_start);
        if (s->kind == K_STREAM && s->t_first > 0.0)
            darr_push(&st->ttft, s->t_first - s->t_start);
    }
    /* A refused request is retried no sooner than the server asked. */
    s->not_before = out == O_REJECTED && s->retry_after > 0.0 ? t + s->retry_after : 0.0;
    if (out == O_REFUSED)
        s->not_before = -1.0;   /* the daemon stopped listening: this connection is done */
}

/* ---- report ----------------------------------------------------------------- */

static void report_lat(const char *what, darr *a)
{
    if (a->n > 1)
        qsort(a->v, a->n, sizeof(double), cmp_d);   /* v is NULL while empty */
    printf("loadgen: latency %-14s n=%-6zu p50=%.1f p90=%.1f p99=%.1f max=%.1f ms\n", what, a->n,
           pct(a, 50) * 1e3, pct(a, 90) * 1e3, pct(a, 99) * 1e3,
           a->n ? a->v[a->n - 1] * 1e3 : 0.0);
}

static long report(const opts *o, stats *st, double elapsed)
{
    long fails = 0, total = 0;

    printf("loadgen: %d connections, %.1f s, %ld requests (%.1f/s)\n", o->conns, elapsed,
           st->finished, elapsed > 0 ? (double)st->finished / elapsed : 0.0);
    for (int k = 0; k < K_COUNT; k++) {
        long n = 0;
        for (int x = 0; x < O_COUNT; x++)
            n += st->outcomes[k][x];
        total += n;
        fails += st->outcomes[k][O_FAIL];
        printf("loadgen: %-12s n=%-6ld", kind_name[k], n);
        for (int x = 0; x < O_COUNT; x++)
            printf(" %s=%ld", outcome_name[x], st->outcomes[k][x]);
        printf(" | status");
        for (int c = 0; c < 600; c++)
            if (st->statuses[k][c] > 0)
                printf(" %d:%ld", c, st->statuses[k][c]);
        printf("\n");
    }
    printf("loadgen: errors");
    for (int c = 0; c < C_COUNT; c++)
        printf(" %s=%ld", cause_name[c], st->causes[c]);
    printf("\n");
    for (int k = 0; k < K_COUNT; k++)
        report_lat(kind_name[k], &st->lat[k]);
    report_lat("ttft(stream)", &st->ttft);
    printf("loadgen: total=%ld failures=%ld\n", total, fails);
    return fails;
}

/* ---- main --------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --url http://HOST:PORT [--conns N] [--duration S] [--count N]\n"
            "               [--mix C:S:H] [--max-tokens LO:HI] [--ignore-eos] [--seed N]\n"
            "               [--pid PID] [--warmup S] [--rss-slack PCT] [--abort-pct P] [--drain]\n");
    exit(2);
}

static void parse(opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->conns = 64;
    o->mix[K_CMPL] = 4;
    o->mix[K_STREAM] = 4;
    o->mix[K_HEALTH] = 2;
    o->tok_lo = 8;
    o->tok_hi = 48;
    o->rss_slack = -1.0;
    o->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool flag = strcmp(a, "--ignore-eos") == 0 || strcmp(a, "--drain") == 0;
        if (!flag && v == NULL)
            usage();
        if (strcmp(a, "--url") == 0)
            o->url = v;
        else if (strcmp(a, "--conns") == 0)
            o->conns = atoi(v);
        else if (strcmp(a, "--duration") == 0)
            o->duration = atof(v);
        else if (strcmp(a, "--count") == 0)
            o->count = atol(v);
        else if (strcmp(a, "--warmup") == 0)
            o->warmup = atof(v);
        else if (strcmp(a, "--pid") == 0)
            o->pid = atol(v);
        else if (strcmp(a, "--rss-slack") == 0)
            o->rss_slack = atof(v);
        else if (strcmp(a, "--abort-pct") == 0)
            o->abort_pct = atoi(v);
        else if (strcmp(a, "--seed") == 0)
            o->seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--mix") == 0) {
            if (sscanf(v, "%d:%d:%d", &o->mix[0], &o->mix[1], &o->mix[2]) != 3)
                usage();
        } else if (strcmp(a, "--max-tokens") == 0) {
            if (sscanf(v, "%d:%d", &o->tok_lo, &o->tok_hi) != 2)
                usage();
        } else if (strcmp(a, "--ignore-eos") == 0) {
            o->ignore_eos = true;
            continue;
        } else if (strcmp(a, "--drain") == 0) {
            o->drain = true;
            continue;
        } else
            usage();
        i++;
    }
    if (o->url == NULL || o->conns < 1 || o->conns > 4096 || (o->duration <= 0 && o->count <= 0) ||
        o->mix[0] < 0 || o->mix[1] < 0 || o->mix[2] < 0 || o->mix[0] + o->mix[1] + o->mix[2] <= 0 ||
        o->tok_lo < 1 || o->tok_hi < o->tok_lo || o->abort_pct < 0 || o->abort_pct > 100)
        usage();
    rng_state = o->seed * 0x9E3779B97F4A7C15ull + 1;
}

int main(int argc, char **argv)
{
    opts o;
    stats st;
    slot *slots;
    CURLM *m;
    double t0, t_end, next_rss = 0.0;
    long rss0, rss_warm = -1, rss_max = 0, rss_end, fails;
    int running = 1;
    bool stop = false;

    parse(&o, argc, argv);
    memset(&st, 0, sizeof(st));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (m = curl_multi_init()) == NULL) {
        fprintf(stderr, "loadgen: libcurl init failed\n");
        return 1;
    }
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o.conns);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)o.conns);
    if ((slots = calloc((size_t)o.conns, sizeof(*slots))) == NULL)
        die_oom();
    for (int i = 0; i < o.conns; i++) {
        slots[i].id = i;
        if ((slots[i].h = curl_easy_init()) == NULL)
            die_oom();
        slots[i].hdrs = curl_slist_append(NULL, "Content-Type: application/json");
        slots[i].hdrs = curl_slist_append(slots[i].hdrs, "Expect:");
    }
    rss0 = rss_kb(o.pid);
    t0 = now_s();
    t_end = o.duration > 0 ? t0 + o.duration : 0.0;
    while (running > 0 || !stop) {
        double t = now_s();
        CURLMsg *msg;
        int left;
        if ((t_end > 0 && t >= t_end) || (o.count > 0 && st.started >= o.count))
            stop = true;
        for (int i = 0; i < o.conns && !stop; i++) {
            slot *s = &slots[i];
            if (!s->busy && s->not_before >= 0.0 && t >= s->not_before &&
                (o.count <= 0 || st.started < o.count))
                start(&o, m, s, &st);
        }
        if (t >= next_rss) {
            long r = rss_kb(o.pid);
            if (r > rss_max)
                rss_max = r;
            if (rss_warm < 0 && o.warmup > 0 && t - t0 >= o.warmup)
                rss_warm = r;
            next_rss = t + 0.25;
        }
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            slot *s = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            curl_multi_remove_handle(m, s->h);
            finish(&o, s, msg->data.result, &st);
        }
        /* Every connection refused for good: nothing more can run. */
        if (!stop && running == 0) {
            bool any = false;
            for (int i = 0; i < o.conns; i++)
                any |= slots[i].busy || slots[i].not_before >= 0.0;
            if (!any)
                stop = true;
        }
        if (running > 0 || !stop)
            curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    rss_end = rss_kb(o.pid);
    fails = report(&o, &st, now_s() - t0);
    if (o.pid > 0) {
        printf("loadgen: rss_kb start=%ld warm=%ld (after %.1f s) peak=%ld end=%ld", rss0,
               rss_warm, o.warmup, rss_max, rss_end);
        if (rss_warm > 0 && rss_end > 0)
            printf(" growth_after_warmup=%+.1f%%",
                   100.0 * (double)(rss_end - rss_warm) / (double)rss_warm);
        printf("\n");
        if (o.rss_slack >= 0.0) {
            if (rss_warm <= 0 || rss_end <= 0) {
                printf("loadgen: FAIL: RSS not sampled after warm-up and at the end\n");
                fails++;
            } else if ((double)rss_end > (double)rss_warm * (1.0 + o.rss_slack / 100.0)) {
                printf("loadgen: FAIL: RSS grew past the %.0f%% slack after warm-up\n",
                       o.rss_slack);
                fails++;
            } else {
                printf("loadgen: RSS within the %.0f%% slack after warm-up\n", o.rss_slack);
            }
        }
    }
    for (int i = 0; i < o.conns; i++) {
        curl_easy_cleanup(slots[i].h);
        curl_slist_free_all(slots[i].hdrs);
        free(slots[i].in.s);
    }
    free(slots);
    for (int k = 0; k < K_COUNT; k++)
        free(st.lat[k].v);
    free(st.ttft.v);
    curl_multi_cleanup(m);
    curl_global_cleanup();
    return fails > 0 ? 1 : 0;
}
