/* srv_log.c: the one log sink (style.md section 11).  Lower layers write
 * through kn_log; the server adds srv_log_req for lines about a request.
 * One event per line on stderr, written with a single fwrite so lines from
 * the HTTP threads never interleave.  Under journald ($JOURNAL_STREAM set)
 * each line starts with "<N>", the syslog priority journald records, and
 * carries no timestamp (journald stamps it); on a terminal the line starts
 * with an ISO 8601 UTC timestamp.  --log-format json writes one JSON object
 * per line: {"ts","level","module","request_id","msg"}. */
#include "config.h"

#include "server/server.h"
#include "kernels/kn_base.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic int g_format = SRV_LOG_TEXT;
static int g_journal;   /* set once at init, read-only afterwards */

static void timestamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

static void emit(int level, const char *module, uint64_t req_id, const char *msg)
{
    char line[2048], ts[64], prefix[8] = "";
    int n;

    if (g_journal)
        snprintf(prefix, sizeof(prefix), "<%d>", level);
    timestamp(ts, sizeof(ts));
    if (atomic_load(&g_format) == SRV_LOG_JSON) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level",
                              srv_log_level_name(level), "module", module, "msg", msg);
        char *s;
        if (o != NULL && req_id != 0)
            json_object_set_new(o, "request_id", json_integer((json_int_t)req_id));
        s = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (s == NULL)   /* out of memory: still say something */
            n = snprintf(line, sizeof(line), "%s{\"level\":\"error\",\"msg\":\"log: out of "
                         "memory\"}\n", prefix);
        else
            n = snprintf(line, sizeof(line), "%s%s\n", prefix, s);
        free(s);
    } else if (req_id != 0) {
        n = snprintf(line, sizeof(line), "%s%s%s%s %s: req=%llu %s\n", prefix,
                     g_journal ? "" : ts, g_journal ? "" : " ", srv_log_level_name(level),
                     module, (unsigned long long)req_id, msg);
    } else {
        n = snprintf(line, sizeof(line), "%s%s%s%s %s: %s\n", prefix, g_journal ? "" : ts,
                     g_journal ? "" : " ", srv_log_level_name(level), module, msg);
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {        /* truncated: keep the line a line */
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    fwrite(line, 1, (size_t)n, stderr);
}

static void sink(int level, const char *module, const char *msg, void *ud)
{
    emit(level, module, 0, msg);
}

void srv_log_init(int level, int format)
{
    const char *js = getenv("JOURNAL_STREAM");

    g_journal = js != NULL && js[0] != '\0';
    atomic_store(&g_format, format);
    /* Line-buffered stderr would split our long lines; unbuffered plus one
     * fwrite per line keeps each line whole. */
    setvbuf(stderr, NULL, _IONBF, 0);
    kn_log_set(sink, NULL, level);
}

void srv_log_reconfigure(int level, int format)
{
    atomic_store(&g_format, format);
    kn_log_set_level(level);
}

void srv_log_req(int level, uint64_t req_id, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!kn_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(level, "http", req_id, msg);
}
