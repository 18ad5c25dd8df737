/* check_server.c: server/ pieces: the config table (defaults, good files,
 * every kind of bad file and flag, flags over file, the shipped example),
 * the systemd notify datagrams and socket-activation variables, the 413
 * refusal before any body byte, and the notify sequence of the real
 * server/fp8d process (start, SIGHUP good and bad, SIGTERM) captured on a
 * test AF_UNIX datagram socket.  Expected values are written by hand. */
#include "config.h"

#include "server/server.h"

#include <check.h>
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_dir[64];      /* scratch directory per test */

static void setup(void)
{
    strcpy(g_dir, "/tmp/check_server.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

static void teardown(void)
{
    char cmd[128];

    srv_systemd_cleanup();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *scratch(const char *name)
{
    static char path[4][160];
    static int i;
    i = (i + 1) % 4;
    snprintf(path[i], sizeof(path[i]), "%s/%s", g_dir, name);
    return path[i];
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* ---- config ----------------------------------------------------------- */

START_TEST(test_defaults_are_the_documented_ones)
{
    srv_config c;

    srv_config_defaults(&c);
    ck_assert_str_eq(c.host, "127.0.0.1");
    ck_assert_int_eq(c.port, 8080);
    ck_assert_str_eq(c.model, FP8D_DATADIR "/models/shakespeare-tiny-bf16");
    ck_assert_int_eq(c.threads, 0);
    ck_assert_int_eq(c.http_threads, 2);
    ck_assert_int_eq(c.max_connections, 256);
    ck_assert_int_eq(c.connection_timeout, 60);
    ck_assert_int_eq(c.log_level, 6);               /* syslog LOG_INFO */
    ck_assert_int_eq(c.log_format, SRV_LOG_TEXT);
    ck_assert_int_eq(c.shutdown_timeout, 30);
    ck_assert_int_eq(c.max_body_bytes, 1048576);
}
END_TEST

START_TEST(test_good_file_sets_every_type)
{
    const char *path = scratch("good.json");
    srv_config c;
    char err[512];

    write_file(path, "{\"host\": \"0.0.0.0\", \"port\": 0, \"model\": \"/m\",\n"
                     " \"log_level\": \"debug\", \"log_format\": \"json\",\n"
                     " \"max_body_bytes\": 0, \"shutdown_timeout\": 3600}\n");
    srv_config_defaults(&c);
    ck_assert_msg(srv_config_load_file(&c, path, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(c.host, "0.0.0.0");
    ck_assert_int_eq(c.port, 0);                 /* lower bound is valid */
    ck_assert_str_eq(c.model, "/m");
    ck_assert_int_eq(c.log_level, 7);
    ck_assert_int_eq(c.log_format, SRV_LOG_JSON);
    ck_assert_int_eq(c.max_body_bytes, 0);
    ck_assert_int_eq(c.shutdown_timeout, 3600);  /* upper bound is valid */
    ck_assert_int_eq(c.http_threads, 2);         /* absent keys keep their value */
}
END_TEST

/* Each bad file: its text and words the error must contain besides the path. */
static const struct {
    const char *text, *want1, *want2;
} bad_files[] = {
    { "{\"port\": 8080,,}",              "line 1", NULL },             /* malformed */
    { "",                                "config file", NULL },        /* empty */
    { "[1, 2]",                          "must be a JSON object", "an array" },
    { "{\"prot\": 1}",                   "\"prot\"", "unknown key" },
    { "{\"port\": \"8080\"}",            "\"port\"", "expected an integer, got a string" },
    { "{\"port\": 80.5}",                "\"port\"", "with a fraction" },
    { "{\"port\": true}",                "\"port\"", "a boolean" },
    { "{\"port\": 70000}",               "\"port\"", "out of range 0..65535" },
    { "{\"port\": -1}",                  "\"port\"", "out of range" },
    { "{\"http_threads\": 0}",           "\"http_threads\"", "out of range 1..256" },
    { "{\"host\": 127}",                 "\"host\"", "expected a string, got an integer" },
    { "{\"host\": \"\"}",                "\"host\"", "must not be empty" },
    { "{\"host\": null}",                "\"host\"", "got null" },
    { "{\"model\": \"a\\u0000b\"}",      "line 1", "\\u0000" },       /* NUL in a string */
    { "{\"log_level\": \"loud\"}",       "\"log_level\"", "error, warn, info, debug" },
    { "{\"log_format\": 1}",             "\"log_format\"", "expected a string" },
    { "{\"port\": 1, \"port\": 2}",      "duplicate", NULL },
    { "{\"max_body_bytes\": 99999999999999999999}", "line 1", NULL },  /* overflow */
};

START_TEST(test_bad_file_names_file_key_and_reason)
{
    const char *path = scratch("bad.json");
    srv_config c;
    char err[512];

    write_file(path, bad_files[_i].text);
    srv_config_defaults(&c);
    err[0] = '\0';
    ck_assert_int_eq(srv_config_load_file(&c, path, err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, path) != NULL, "case %d: no path in: %s", _i, err);
    ck_assert_msg(strstr(err, bad_files[_i].want1) != NULL, "case %d: no '%s' in: %s", _i,
                  bad_files[_i].want1, err);
    if (bad_files[_i].want2 != NULL)
        ck_assert_msg(strstr(err, bad_files[_i].want2) != NULL, "case %d: no '%s' in: %s",
                      _i, bad_files[_i].want2, err);
}
END_TEST

START_TEST(test_long_string_refused)
{
    const char *path = scratch("long.json");
    static char text[6000];
    srv_config c;
    char err[512];

    memcpy(text, "{\"host\": \"", 10);
    memset(text + 10, 'a', 300);                 /* host holds 255 bytes */
    strcpy(text + 310, "\"}");
    write_file(path, text);
    srv_config_defaults(&c);
    ck_assert_int_eq(srv_config_load_file(&c, path, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "longer than 255 bytes"));
}
END_TEST

START_TEST(test_missing_or_unreadable_file)
{
    srv_config c;
    char err[512];
    const char *dir = scratch("adir");

    srv_config_defaults(&c);
    ck_assert_int_eq(srv_config_load_file(&c, scratch("absent.json"), err, sizeof(err)),
                     -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "absent.json"));
    ck_assert_ptr_nonnull(strstr(err, "No such file"));
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_lt(srv_config_load_file(&c, dir, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, dir));
}
END_TEST

static int load_args(srv_config *c, srv_action *a, char *err, size_t errlen, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;

    argv[argc++] = "fp8d";
    va_start(ap, errlen);
    for (char *s; (s = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = s;
    va_end(ap);
    argv[argc] = NULL;
    return srv_config_load(c, argc, argv, a, NULL, 0, err, errlen);
}

START_TEST(test_flags_override_file)
{
    const char *path = scratch("f.json");
    char cfgflag[200];
    srv_config c;
    srv_action a;
    char err[512];

    write_file(path, "{\"port\": 8081, \"log_level\": \"warn\", \"threads\": 3}");
    snprintf(cfgflag, sizeof(cfgflag), "--config=%s", path);
    ck_assert_msg(load_args(&c, &a, err, sizeof(err), "--port", "9000", cfgflag,
                            "--log-level=error", "--max-body-bytes", "10", NULL) == 0,
                  "%s", err);
    ck_assert_int_eq(a, SRV_RUN);
    ck_assert_int_eq(c.port, 9000);              /* flag before --config still wins */
    ck_assert_int_eq(c.log_level, 3);
    ck_assert_int_eq(c.threads, 3);              /* from the file */
    ck_assert_int_eq(c.max_body_bytes, 10);
}
END_TEST

START_TEST(test_bad_flags)
{
    static const struct { const char *a, *b, *want; } cases[] = {
        { "--prot", "1", "unknown option --prot" },
        { "--port", NULL, "--port: missing value" },
        { "--port", "80x", "--port: \"80x\" is not an integer" },
        { "--port=", NULL, "is not an integer" },
        { "--port", "65536", "--port: 65536 is out of range 0..65535" },
        { "--log-format", "xml", "--log-format: \"xml\" is not one of text, json" },
        { "serve", NULL, "unexpected argument \"serve\"" },
        { "--config", "/nonexistent/fp8d.json", "/nonexistent/fp8d.json: No such file" },
    };
    srv_config c;
    srv_action a;
    char err[512];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        ck_assert_int_lt(load_args(&c, &a, err, sizeof(err), cases[i].a, cases[i].b, NULL), 0);
        ck_assert_msg(strstr(err, cases[i].want) != NULL, "%s: got '%s'", cases[i].a, err);
    }
}
END_TEST

START_TEST(test_actions)
{
    srv_config c;
    srv_action a;
    char err[512];

    /* --help wins even over a broken file or flag. */
    ck_assert_int_eq(load_args(&c, &a, err, sizeof(err), "--prot", "--help", NULL), 0);
    ck_assert_int_eq(a, SRV_HELP);
    ck_assert_int_eq(load_args(&c, &a, err, sizeof(err), "-V", NULL), 0);
    ck_assert_int_eq(a, SRV_VERSION);
    ck_assert_int_eq(load_args(&c, &a, err, sizeof(err), "--check-config", "--model", "/x",
                               NULL), 0);
    ck_assert_int_eq(a, SRV_CHECK_CONFIG);
    ck_assert_str_eq(c.model, "/x");
}
END_TEST

START_TEST(test_help_lists_every_key_with_default)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    static const char *flags[] = { "--host ADDR", "--port N", "--model DIR", "--threads N",
                                   "--http-threads N", "--max-connections N",
                                   "--connection-timeout SEC", "--log-level LEVEL",
                                   "--log-format FMT", "--shutdown-timeout SEC",
                                   "--max-body-bytes N", "--config PATH", "--version",
                                   "--check-config" };

    srv_config_help(f, "fp8d");
    fclose(f);
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        ck_assert_msg(strstr(buf, flags[i]) != NULL, "--help lacks %s", flags[i]);
    ck_assert_ptr_nonnull(strstr(buf, "(default 8080; 0..65535; needs a restart)"));
    ck_assert_ptr_nonnull(strstr(buf, "(default info; reloaded on SIGHUP)"));
    free(buf);
}
END_TEST

static int n_calls, n_reloadable;
static char seen[256];
static void on_diff(const char *key, bool reloadable, void *ud)
{
    n_calls++;
    n_reloadable += reloadable;
    strncat(seen, key, sizeof(seen) - strlen(seen) - 2);
    strcat(seen, " ");
}

START_TEST(test_diff_marks_reloadable_keys)
{
    srv_config a, b;

    srv_config_defaults(&a);
    b = a;
    ck_assert_int_eq(srv_config_diff(&a, &b, on_diff, NULL), 0);
    b.port = 1;
    b.log_level = 7;
    b.max_body_bytes = 5;
    strcpy(b.model, "/other");
    ck_assert_int_eq(srv_config_diff(&a, &b, on_diff, NULL), 4);
    ck_assert_int_eq(n_calls, 4);
    ck_assert_int_eq(n_reloadable, 2);           /* log_level, max_body_bytes */
    ck_assert_str_eq(seen, "port model log_level max_body_bytes ");
}
END_TEST

/* examples/fp8d.json must list every key with its default (README says
 * so): loaded over sentinel values, nothing may keep a sentinel, and only
 * "model" (whose default depends on the install prefix) may differ. */
START_TEST(test_example_config_lists_every_default)
{
    const char *top = getenv("FP8D_TOP_SRCDIR");
    char path[4096], err[512];
    srv_config def, c;

    if (top == NULL) {
        fprintf(stderr, "SKIP: FP8D_TOP_SRCDIR not set\n");
        return;
    }
    snprintf(path, sizeof(path), "%s/examples/fp8d.json", top);
    srv_config_defaults(&def);
    memset(&c, 0, sizeof(c));
    c.port = c.threads = c.http_threads = c.max_connections = c.connection_timeout = -7;
    c.log_level = c.log_format = c.shutdown_timeout = c.max_body_bytes = -7;
    ck_assert_msg(srv_config_load_file(&c, path, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(c.model, "/usr/local/share/fp8d/models/shakespeare-tiny-bf16");
    strcpy(c.model, def.model);
    n_calls = 0;
    seen[0] = '\0';
    ck_assert_msg(srv_config_diff(&def, &c, on_diff, NULL) == 0, "differs: %s", seen);
}
END_TEST

/* ---- systemd notify ----------------------------------------------------- */

static int bind_dgram(const char *path, bool abstract)
{
    struct sockaddr_un a;
    socklen_t len;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct timeval tv = { .tv_sec = 3 };

    ck_assert_int_ge(fd, 0);
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, path);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    if (abstract)
        a.sun_path[0] = '\0';
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, len), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Next datagram as a string; "" on timeout. */
static const char *recv_msg(int fd)
{
    static char buf[1024];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static uint64_t mono_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

START_TEST(test_notify_messages_on_datagram_socket)
{
    const char *path = scratch("notify.sock");
    int fd = bind_dgram(path, false);
    char err[256];
    const char *m;
    unsigned long long mono;
    uint64_t t0, t1;

    setenv("NOTIFY_SOCKET", path, 1);
    ck_assert_int_eq(srv_systemd_init(err, sizeof(err)), 0);
    ck_assert_ptr_null(getenv("NOTIFY_SOCKET"));   /* not inherited by children */
    ck_assert_int_eq(srv_notify_status("loading %s", "m"), 0);
    ck_assert_str_eq(recv_msg(fd), "STATUS=loading m");
    ck_assert_int_eq(srv_notify("READY=1"), 0);
    ck_assert_str_eq(recv_msg(fd), "READY=1");
    t0 = mono_usec();
    ck_assert_int_eq(srv_notify_reloading(), 0);
    t1 = mono_usec();
    m = recv_msg(fd);
    ck_assert_int_eq(sscanf(m, "RELOADING=1\nMONOTONIC_USEC=%llu", &mono), 1);
    ck_assert_msg(mono >= t0 && mono <= t1, "MONOTONIC_USEC %llu not in [%llu, %llu]", mono,
                  (unsigned long long)t0, (unsigned long long)t1);
    ck_assert_int_eq(srv_notify("STOPPING=1"), 0);
    ck_assert_str_eq(recv_msg(fd), "STOPPING=1");
    close(fd);
}
END_TEST

START_TEST(test_notify_abstract_socket)
{
    char name[64], err[256];
    int fd;

    snprintf(name, sizeof(name), "@fp8d-check-%d", (int)getpid());
    fd = bind_dgram(name, true);
    setenv("NOTIFY_SOCKET", name, 1);
    ck_assert_int_eq(srv_systemd_init(err, sizeof(err)), 0);
    ck_assert_int_eq(srv_notify("WATCHDOG=1"), 0);
    ck_assert_str_eq(recv_msg(fd), "WATCHDOG=1");
    close(fd);
}
END_TEST

START_TEST(test_notify_noop_and_bad_variables)
{
    char err[256];

    ck_assert_int_eq(srv_systemd_init(err, sizeof(err)), 0);
    ck_assert_int_eq(srv_notify("READY=1"), 0);          /* not under systemd: no-op */
    ck_assert_int_eq(srv_watchdog_usec(), 0);

    setenv("NOTIFY_SOCKET", "relative/path", 1);
    ck_assert_int_eq(srv_systemd_init(err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "NOTIFY_SOCKET"));
    unsetenv("NOTIFY_SOCKET");

    setenv("WATCHDOG_USEC", "20000000", 1);
    ck_assert_int_eq(srv_systemd_init(err, sizeof(err)), 0);
    ck_assert_int_eq(srv_watchdog_usec(), 20000000);
    setenv("WATCHDOG_PID", "1", 1);                       /* meant for another process */
    ck_assert_int_eq(srv_systemd_init(err, sizeof(err)), 0);
    ck_assert_int_eq(srv_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "12x", 1);
    ck_assert_int_eq(srv_systemd_init(err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "WATCHDOG_USEC"));
}
END_TEST

START_TEST(test_listen_fds_protocol)
{
    char pid[24], err_bad[256], err[256];
    int s = socket(AF_INET, SOCK_STREAM, 0);
    /* check reports through its own channel, which may be fd 3: save it,
     * run every step without asserting while fd 3 is ours, restore, then
     * assert (a passing assert writes to that channel too). */
    int saved = dup(3), rc_none, rc_other, rc_bad, rc_ok, cloexec;
    bool unset;

    ck_assert_int_ge(s, 0);
    ck_assert_int_ge(saved, 0);
    rc_none = srv_listen_fds(err, sizeof(err));                  /* no variables */
    dup2(s, 3);
    setenv("LISTEN_PID", "1", 1);
    setenv("LISTEN_FDS", "1", 1);
    rc_other = srv_listen_fds(err, sizeof(err));                 /* someone else's */
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "one", 1);
    rc_bad = srv_listen_fds(err_bad, sizeof(err_bad));
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "api", 1);
    rc_ok = srv_listen_fds(err, sizeof(err));
    cloexec = fcntl(3, F_GETFD) & FD_CLOEXEC;
    unset = !getenv("LISTEN_PID") && !getenv("LISTEN_FDS") && !getenv("LISTEN_FDNAMES");
    dup2(saved, 3);
    close(saved);
    close(s);

    ck_assert_int_eq(rc_none, 0);
    ck_assert_int_eq(rc_other, 0);
    ck_assert_int_eq(rc_bad, -EINVAL);
    ck_assert_ptr_nonnull(strstr(err_bad, "LISTEN_FDS=\"one\""));
    ck_assert_int_eq(rc_ok, 1);
    ck_assert_int_eq(cloexec, FD_CLOEXEC);
    ck_assert(unset);
}
END_TEST

/* ---- transport: 413 before the body ------------------------------------ */

static void make_model_dir(const char *dir)
{
    char path[256];

    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    write_file(path, "{\"model_type\": \"llama\"}");
}

START_TEST(test_http_refuses_large_body_before_reading_it)
{
    const char *model = scratch("model");
    api_service_params p;
    api_service *svc;
    srv_http *http;
    srv_config cfg;
    struct sockaddr_in a = { .sin_family = AF_INET };
    struct timeval tv = { .tv_sec = 5 };
    char err[512], buf[2048];
    const char *req = "POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n";
    ssize_t n, got = 0;
    int fd;

    make_model_dir(model);
    api_service_params_default(&p);
    p.model_path = model;
    ck_assert_int_eq(api_service_new(&svc, &p, err, sizeof(err)), 0);
    srv_config_defaults(&cfg);
    cfg.port = 0;
    cfg.max_body_bytes = 100;
    ck_assert_msg(srv_http_start(&http, svc, &cfg, -1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_gt(srv_http_port(http), 0);

    fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_port = htons((uint16_t)srv_http_port(http));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    /* Headers only: the 1000 announced bytes are never sent. */
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    while ((n = read(fd, buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
        got += n;
    buf[got] = '\0';
    ck_assert_msg(strncmp(buf, "HTTP/1.1 413", 12) == 0, "got: %s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "\"code\":\"request_too_large\""));
    ck_assert_ptr_nonnull(strstr(buf, "(100 bytes)"));
    close(fd);
    srv_http_stop(http);
    ck_assert_int_eq(api_metrics_in_flight(svc), 0);
    api_service_free(svc);
}
END_TEST

/* ---- the real daemon's notify sequence ---------------------------------- */

/* Next message that is not a watchdog ping; counts the pings. */
static const char *next_non_watchdog(int fd, int *n_watchdog)
{
    for (;;) {
        const char *m = recv_msg(fd);
        if (strcmp(m, "WATCHDOG=1") != 0)
            return m;
        ++*n_watchdog;
    }
}

static void expect_prefix(const char *got, const char *prefix)
{
    ck_assert_msg(strncmp(got, prefix, strlen(prefix)) == 0, "expected '%s...', got '%s'",
                  prefix, got);
}

START_TEST(test_daemon_notify_sequence)
{
    const char *build = getenv("FP8D_TOP_BUILDDIR");
    const char *sock = scratch("n.sock"), *conf = scratch("fp8d.json");
    const char *model = scratch("model");
    char exe[4096], confjson[512];
    int fd, status, n_wd = 0;
    pid_t pid;

    if (build == NULL) {
        fprintf(stderr, "SKIP: FP8D_TOP_BUILDDIR not set (run through make check)\n");
        return;
    }
    const char *top = getenv("FP8D_TOP_SRCDIR");
    if (top == NULL) {
        fprintf(stderr, "SKIP: FP8D_TOP_SRCDIR not set (run through make check)\n");
        return;
    }
    (void)model;
    snprintf(exe, sizeof(exe), "%s/server/fp8d", build);
    /* The daemon loads the model now: the bundled one loads in ms. */
    snprintf(confjson, sizeof(confjson), "{\"port\": 0, \"model\": "
             "\"%s/examples/models/shakespeare-tiny-bf16\", \"threads\": 1, "
             "\"log_level\": \"warn\"}", top);
    write_file(conf, confjson);
    fd = bind_dgram(sock, false);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char me[24];
        /* If this test fails and its process exits, take the daemon along. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        snprintf(me, sizeof(me), "%d", (int)getpid());
        setenv("NOTIFY_SOCKET", sock, 1);
        setenv("WATCHDOG_USEC", "200000", 1);   /* ping every 100 ms */
        setenv("WATCHDOG_PID", me, 1);
        execl(exe, exe, "--config", conf, (char *)NULL);
        _exit(127);
    }
    expect_prefix(next_non_watchdog(fd, &n_wd), "STATUS=starting");
    expect_prefix(next_non_watchdog(fd, &n_wd), "STATUS=loading model ");
    ck_assert_str_eq(next_non_watchdog(fd, &n_wd), "READY=1");
    expect_prefix(next_non_watchdog(fd, &n_wd), "STATUS=ready: serving on port ");
    /* At least two pings in ~300 ms at a 100 ms period. */
    usleep(300000);
    kill(pid, SIGHUP);
    expect_prefix(next_non_watchdog(fd, &n_wd), "RELOADING=1\nMONOTONIC_USEC=");
    expect_prefix(next_non_watchdog(fd, &n_wd), "STATUS=reloading");
    ck_assert_str_eq(next_non_watchdog(fd, &n_wd), "READY=1");
    expect_prefix(next_non_watchdog(fd, &n_wd), "STATUS=ready");
    ck_assert_int_ge(n_wd, 2);
    /* A broken file on reload: same sequence, and the daemon keeps running. */
    write_file(conf, "{\"port\": ");
    kill(pid, SIGHUP);
    expect_prefix(next_non_watchdog(fd, &n_wd), "RELOADING=1\nMONOTONIC_USEC=");
    expect_prefix(next_non_watchdog(fd, &n_wd), "STATUS=reloading");
    ck_assert_str_eq(next_non_watchdog(fd, &n_wd), "READY=1");
    expect_prefix(next_non_watchdog(fd, &n_wd), "STATUS=ready");
    ck_assert_int_eq(waitpid(pid, &status, WNOHANG), 0);
    kill(pid, SIGTERM);
    ck_assert_str_eq(next_non_watchdog(fd, &n_wd), "STOPPING=1");
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    close(fd);
}
END_TEST

static Suite *server_suite(void)
{
    Suite *s = suite_create("server");
    TCase *config = tcase_create("config"), *sd = tcase_create("systemd");
    TCase *http = tcase_create("http"), *daemon = tcase_create("daemon");

    tcase_add_checked_fixture(config, setup, teardown);
    tcase_add_test(config, test_defaults_are_the_documented_ones);
    tcase_add_test(config, test_good_file_sets_every_type);
    tcase_add_loop_test(config, test_bad_file_names_file_key_and_reason, 0,
                        sizeof(bad_files) / sizeof(bad_files[0]));
    tcase_add_test(config, test_long_string_refused);
    tcase_add_test(config, test_missing_or_unreadable_file);
    tcase_add_test(config, test_flags_override_file);
    tcase_add_test(config, test_bad_flags);
    tcase_add_test(config, test_actions);
    tcase_add_test(config, test_help_lists_every_key_with_default);
    tcase_add_test(config, test_diff_marks_reloadable_keys);
    tcase_add_test(config, test_example_config_lists_every_default);
    suite_add_tcase(s, config);

    tcase_add_checked_fixture(sd, setup, teardown);
    tcase_add_test(sd, test_notify_messages_on_datagram_socket);
    tcase_add_test(sd, test_notify_abstract_socket);
    tcase_add_test(sd, test_notify_noop_and_bad_variables);
    tcase_add_test(sd, test_listen_fds_protocol);
    suite_add_tcase(s, sd);

    tcase_add_checked_fixture(http, setup, teardown);
    tcase_add_test(http, test_http_refuses_large_body_before_reading_it);
    tcase_set_timeout(http, 10);
    suite_add_tcase(s, http);

    tcase_add_checked_fixture(daemon, setup, teardown);
    tcase_add_test(daemon, test_daemon_notify_sequence);
    tcase_set_timeout(daemon, 20);
    suite_add_tcase(s, daemon);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(server_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
