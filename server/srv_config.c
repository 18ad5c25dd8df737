/* srv_config.c: the configuration table (redis config.c style) and the
 * three sources layered over it: built-in defaults, the JSON config file,
 * command-line flags.  The parser, the validation, --help and the reload
 * diff all read the same table, so a key is added in exactly one place.
 * File keys use '_' ("max_body_bytes"), flags use '-' (--max-body-bytes). */
#include "config.h"

#include "server/server.h"
#include "kernels/kn_base.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum { T_STRING, T_INT, T_ENUM } row_type;

typedef struct enum_val {
    const char *name;
    int64_t     value;
} enum_val;

typedef struct cfg_row {
    const char     *name;        /* JSON key; the flag is "--" + name with '-' for '_' */
    row_type        type;
    size_t          off;         /* offset of the field in srv_config */
    size_t          size;        /* T_STRING: buffer size */
    int64_t         min, max;    /* T_INT bounds; T_STRING: min length */
    const char     *def;         /* default, parsed like a flag value */
    bool            reloadable;  /* applied by SIGHUP, else "needs restart" */
    const char     *metavar;
    const char     *help;
    const enum_val *enums;       /* T_ENUM: NULL-terminated */
} cfg_row;

static const enum_val log_levels[] = {
    { "error", KN_LOG_ERR }, { "warn", KN_LOG_WARN }, { "info", KN_LOG_INFO },
    { "debug", KN_LOG_DEBUG }, { NULL, 0 },
};
static const enum_val log_formats[] = {
    { "text", SRV_LOG_TEXT }, { "json", SRV_LOG_JSON }, { NULL, 0 },
};

#define OFF(f) offsetof(srv_config, f)
#define STR(f) OFF(f), sizeof(((srv_config *)0)->f)
#define FP8D_DEFAULT_MODEL FP8D_DATADIR "/models/shakespeare-tiny-bf16"

static const cfg_row rows[] = {
    { "host", T_STRING, STR(host), 1, 0, "127.0.0.1", false, "ADDR",
      "IP address or host name to listen on", NULL },
    { "port", T_INT, OFF(port), 0, 0, 65535, "8080", false, "N",
      "TCP port to listen on; 0 picks a free port (logged)", NULL },
    { "model", T_STRING, STR(model), 1, 0, FP8D_DEFAULT_MODEL, false, "DIR",
      "Hugging Face model directory (must hold config.json)", NULL },
    { "threads", T_INT, OFF(threads), 0, 0, 1024, "0", false, "N",
      "engine compute threads; 0 uses every core", NULL },
    { "http_threads", T_INT, OFF(http_threads), 0, 1, 256, "2", false, "N",
      "HTTP worker threads (libmicrohttpd thread pool)", NULL },
    { "max_connections", T_INT, OFF(max_connections), 0, 1, 65536, "256", false, "N",
      "concurrent HTTP connections accepted", NULL },
    { "connection_timeout", T_INT, OFF(connection_timeout), 0, 1, 3600, "60", false, "SEC",
      "seconds an idle HTTP connection is kept open", NULL },
    { "log_level", T_ENUM, OFF(log_level), 0, 0, 0, "info", true, "LEVEL",
      "least severe level logged: error, warn, info or debug", log_levels },
    { "log_format", T_ENUM, OFF(log_format), 0, 0, 0, "text", true, "FMT",
      "log line format on stderr: text or json (one object per line)", log_formats },
    { "shutdown_timeout", T_INT, OFF(shutdown_timeout), 0, 0, 3600, "30", true, "SEC",
      "seconds SIGTERM waits for in-flight requests before closing them", NULL },
    { "max_body_bytes", T_INT, OFF(max_body_bytes), 0, 0, INT64_C(1) << 30, "1048576",
      true, "N", "largest request body accepted; larger ones get 413", NULL },
    { "served_model_name", T_STRING, STR(served_model_name), 0, 0, "", false, "NAME",
      "model id of /v1/models and the \"model\" field; empty = the model directory's name",
      NULL },
    { "max_queued_requests", T_INT, OFF(max_queued_requests), 0, 1, 100000, "64", false, "N",
      "requests waiting for the engine before new ones get 429", NULL },
    { "max_queued_tokens", T_INT, OFF(max_queued_tokens), 0, 1, INT64_C(1) << 32, "1048576",
      false, "N", "prompt tokens waiting for the engine before new requests get 429", NULL },
    { "max_batch", T_INT, OFF(max_batch), 0, 1, 1024, "16", false, "N",
      "sequences the engine decodes together in one step", NULL },
    { "request_timeout_ms", T_INT, OFF(request_timeout_ms), 0, 1, 86400000, "600000", false,
      "MS", "default deadline of a request (body timeout_ms overrides); expiry gives 504",
      NULL },
    { "max_tokens_limit", T_INT, OFF(max_tokens_limit), 0, 0, 1 << 30, "0", false, "N",
      "largest max_tokens a request may ask for; 0 = the model's context", NULL },
    { "max_n", T_INT, OFF(max_n), 0, 1, 64, "16", false, "N",
      "largest n (choices per request)", NULL },
    { "max_prompt_tokens", T_INT, OFF(max_prompt_tokens), 0, 0, 1 << 30, "0", false, "N",
      "longest prompt accepted in tokens; 0 = the model's context - 1", NULL },
    { "api_keys_file", T_STRING, STR(api_keys_file), 0, 0, "", false, "PATH",
      "file of \"KEY [inference,metrics,admin]\" lines; when set, every route but /livez "
      "and /health needs a key", NULL },
    { "cors_origins", T_STRING, STR(cors_origins), 0, 0, "", false, "LIST",
      "comma-separated origins allowed by CORS (\"*\" for any); empty = CORS off", NULL },
    { "fp8_config", T_STRING, STR(fp8_config), 0, 0, "", false, "PATH",
      "FP8Config JSON (INC QUANT_CONFIG) whose mode applies at start, AUTO included; "
      "empty = mode off until POST /calibrate", NULL },
    { "state_dir", T_STRING, STR(state_dir), 0, 0, "", false, "DIR",
      "where calibration measurements and exports are written; empty = $STATE_DIRECTORY, "
      "else /var/lib/fp8d", NULL },
};
#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

static void *field(srv_config *cfg, const cfg_row *r)
{
    return (char *)cfg + r->off;
}

static const void *cfield(const srv_config *cfg, const cfg_row *r)
{
    return (const char *)cfg + r->off;
}

static const cfg_row *row_by_name(const char *name, size_t len)
{
    for (size_t i = 0; i < N_ROWS; i++)
        if (strlen(rows[i].name) == len && memcmp(rows[i].name, name, len) == 0)
            return &rows[i];
    return NULL;
}

/* "where" prefixes every message: the file path or the flag. */
static int set_int(srv_config *cfg, const cfg_row *r, int64_t v, const char *where,
                   char *err, size_t errlen)
{
    if (v < r->min || v > r->max) {
        kn_errf(err, errlen, "%s: %" PRId64 " is out of range %" PRId64 "..%" PRId64,
                where, v, r->min, r->max);
        return -EINVAL;
    }
    *(int64_t *)field(cfg, r) = v;
    return 0;
}

static int set_enum(srv_config *cfg, const cfg_row *r, const char *s, const char *where,
                    char *err, size_t errlen)
{
    char allowed[128] = "";
    size_t used = 0;

    for (const enum_val *e = r->enums; e->name != NULL; e++) {
        if (strcmp(e->name, s) == 0) {
            *(int64_t *)field(cfg, r) = e->value;
            return 0;
        }
        used += (size_t)snprintf(allowed + used, sizeof(allowed) - used, "%s%s",
                                 used ? ", " : "", e->name);
        if (used >= sizeof(allowed))
            used = sizeof(allowed) - 1;
    }
    kn_errf(err, errlen, "%s: \"%.64s\" is not one of %s", where, s, allowed);
    return -EINVAL;
}

static int set_string(srv_config *cfg, const cfg_row *r, const char *s, const char *where,
                      char *err, size_t errlen)
{
    size_t len = strlen(s);

    if ((int64_t)len < r->min) {
        kn_errf(err, errlen, "%s: must not be empty", where);
        return -EINVAL;
    }
    if (len >= r->size) {
        kn_errf(err, errlen, "%s: longer than %zu bytes", where, r->size - 1);
        return -EINVAL;
    }
    memcpy(field(cfg, r), s, len + 1);
    return 0;
}

/* Parses a flag value (or a default) as the row's type. */
static int set_from_text(srv_config *cfg, const cfg_row *r, const char *s, const char *where,
                         char *err, size_t errlen)
{
    char *end;
    long long v;

    switch (r->type) {
    case T_STRING:
        return set_string(cfg, r, s, where, err, errlen);
    case T_ENUM:
        return set_enum(cfg, r, s, where, err, errlen);
    case T_INT:
        errno = 0;
        v = strtoll(s, &end, 10);
        if (s[0] == '\0' || *end != '\0' || errno == ERANGE) {
            kn_errf(err, errlen, "%s: \"%.64s\" is not an integer", where, s);
            return -EINVAL;
        }
        return set_int(cfg, r, v, where, err, errlen);
    }
    return -EINVAL;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:  return "an object";
    case JSON_ARRAY:   return "an array";
    case JSON_STRING:  return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL:    return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:   return "a boolean";
    default:           return "null";
    }
}

static int set_from_json(srv_config *cfg, const cfg_row *r, const json_t *v, const char *where,
                         char *err, size_t errlen)
{
    const char *want = r->type == T_INT ? "an integer" : "a string";

    if ((r->type == T_INT && !json_is_integer(v)) ||
        (r->type != T_INT && !json_is_string(v))) {
        kn_errf(err, errlen, "%s: expected %s, got %s", where, want, json_type_name(v));
        return -EINVAL;
    }
    if (r->type == T_INT)
        return set_int(cfg, r, json_integer_value(v), where, err, errlen);
    return r->type == T_ENUM ? set_enum(cfg, r, json_string_value(v), where, err, errlen)
                             : set_string(cfg, r, json_string_value(v), where, err, errlen);
}

void srv_config_defaults(srv_config *cfg)
{
    char err[256];

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_ROWS; i++) {
        /* The defaults are constants of this file: failing here is a bug. */
        int rc = set_from_text(cfg, &rows[i], rows[i].def, rows[i].name, err, sizeof(err));
        if (rc < 0)
            kn_assert_fail(err, __FILE__, __LINE__, __func__);
    }
}

int srv_config_load_file(srv_config *cfg, const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root, *v;
    const char *key;
    char where[512];
    int rc = 0;

    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (jerr.line < 0 || jerr.position == 0) {
            struct stat st;
            if (stat(path, &st) != 0) {
                rc = -errno;
                kn_errf(err, errlen, "config file %s: %s", path, strerror(-rc));
                return rc;
            }
        }
        if (jerr.line > 0)
            kn_errf(err, errlen, "config file %s: line %d column %d: %s", path, jerr.line,
                    jerr.column, jerr.text);
        else
            kn_errf(err, errlen, "config file %s: %s", path, jerr.text);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        kn_errf(err, errlen, "config file %s: top level must be a JSON object, got %s",
                path, json_type_name(root));
        json_decref(root);
        return -EINVAL;
    }
    json_object_foreach(root, key, v) {
        const cfg_row *r = row_by_name(key, strlen(key));
        snprintf(where, sizeof(where), "config file %s: key \"%.64s\"", path, key);
        if (r == NULL) {
            kn_errf(err, errlen, "%s: unknown key (see fp8d --help for the keys)", where);
            rc = -EINVAL;
            break;
        }
        if ((rc = set_from_json(cfg, r, v, where, err, errlen)) < 0)
            break;
    }
    json_decref(root);
    return rc;
}

const char *srv_config_default_path(void)
{
    return FP8D_SYSCONFDIR "/fp8d/fp8d.json";
}

/* "--max-body-bytes" -> row "max_body_bytes"; n is the length of name
 * (without "--" and without "=value"). */
static const cfg_row *row_by_flag(const char *name, size_t n)
{
    char key[64];

    if (n >= sizeof(key))
        return NULL;
    for (size_t i = 0; i < n; i++)
        key[i] = name[i] == '-' ? '_' : name[i];
    return row_by_name(key, n);
}

/* Splits argv[*i] into flag name and value (from "=value" or argv[*i+1]). */
static int flag_value(int argc, char *const argv[], int *i, const char *name, size_t n,
                      const char **value, char *err, size_t errlen)
{
    if (name[n] == '=') {
        *value = name + n + 1;
        return 0;
    }
    if (*i + 1 >= argc) {
        kn_errf(err, errlen, "--%.*s: missing value", (int)n, name);
        return -EINVAL;
    }
    *value = argv[++*i];
    return 0;
}

/* First pass: actions and --config, which decide what is read at all. */
static int scan_actions(int argc, char *const argv[], srv_action *action,
                        const char **config, char *err, size_t errlen)
{
    *action = SRV_RUN;
    *config = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *action = SRV_HELP;
            return 0;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            *action = SRV_VERSION;
            return 0;
        }
        if (strcmp(a, "--check-config") == 0)
            *action = SRV_CHECK_CONFIG;
        else if (strncmp(a, "--config", 8) == 0 && (a[8] == '\0' || a[8] == '=')) {
            int rc = flag_value(argc, argv, &i, a + 2, 6, config, err, errlen);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Second pass: every other flag over the file's values. */
static int apply_flags(srv_config *cfg, int argc, char *const argv[], char *err, size_t errlen)
{
    char where[96];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *name, *value;
        const cfg_row *r;
        size_t n;
        int rc;

        if (strcmp(a, "--check-config") == 0)
            continue;
        if (strncmp(a, "--", 2) != 0) {
            kn_errf(err, errlen, "unexpected argument \"%.64s\" (see --help)", a);
            return -EINVAL;
        }
        name = a + 2;
        n = strcspn(name, "=");
        if (n == 6 && strncmp(name, "config", 6) == 0) {
            if ((rc = flag_value(argc, argv, &i, name, n, &value, err, errlen)) < 0)
                return rc;
            continue;
        }
        if ((r = row_by_flag(name, n)) == NULL) {
            kn_errf(err, errlen, "unknown option --%.*s (see --help)", (int)(n > 64 ? 64 : n),
                    name);
            return -EINVAL;
        }
        if ((rc = flag_value(argc, argv, &i, name, n, &value, err, errlen)) < 0)
            return rc;
        snprintf(where, sizeof(where), "--%.*s", (int)n, name);
        if ((rc = set_from_text(cfg, r, value, where, err, errlen)) < 0)
            return rc;
    }
    return 0;
}

int srv_config_load(srv_config *cfg, int argc, char *const argv[], srv_action *action,
                    char *config_path, size_t config_path_len, char *err, size_t errlen)
{
    const char *path;
    struct stat st;
    int rc;

    srv_config_defaults(cfg);
    if (config_path != NULL && config_path_len > 0)
        config_path[0] = '\0';
    if ((rc = scan_actions(argc, argv, action, &path, err, errlen)) < 0)
        return rc;
    if (*action == SRV_HELP || *action == SRV_VERSION)
        return 0;
    /* The default file is optional (a development build has none); a file
     * named with --config must exist. */
    if (path == NULL && stat(srv_config_default_path(), &st) == 0)
        path = srv_config_default_path();
    if (path != NULL) {
        if ((rc = srv_config_load_file(cfg, path, err, errlen)) < 0)
            return rc;
        if (config_path != NULL && config_path_len > 0)
            snprintf(config_path, config_path_len, "%s", path);
    }
    return apply_flags(cfg, argc, argv, err, errlen);
}

static void default_text(const cfg_row *r, char *buf, size_t len)
{
    snprintf(buf, len, "%s", r->def[0] != '\0' ? r->def : "\"\"");
}

void srv_config_help(FILE *f, const char *argv0)
{
    char flag[64], def[160];

    fprintf(f, "Usage: %s [OPTION...]\n"
               "fp8d serves an FP8-quantized Llama-family model over an OpenAI-compatible "
               "HTTP API.\n\n"
               "Options override the JSON config file; its keys are the option names with\n"
               "'_' for '-' (for example \"max_body_bytes\").\n\n"
               "  --config PATH            JSON config file (default %s;\n"
               "                           the default file may be absent)\n"
               "  --check-config           validate the configuration and exit (0 ok, 1 bad)\n"
               "  --help, -h               print this help and exit\n"
               "  --version, -V            print the version and exit\n\n",
            argv0, srv_config_default_path());
    for (size_t i = 0; i < N_ROWS; i++) {
        const cfg_row *r = &rows[i];
        size_t n = (size_t)snprintf(flag, sizeof(flag), "--%s %s", r->name, r->metavar);
        for (size_t k = 2; k < n && flag[k] != ' '; k++)
            if (flag[k] == '_')
                flag[k] = '-';
        default_text(r, def, sizeof(def));
        fprintf(f, "  %-24s %s\n  %-24s (default %s", flag, r->help, "", def);
        if (r->type == T_INT)
            fprintf(f, "; %" PRId64 "..%" PRId64, r->min, r->max);
        fprintf(f, "; %s)\n", r->reloadable ? "reloaded on SIGHUP" : "needs a restart");
    }
    fprintf(f, "\nSignals: SIGTERM/SIGINT drain then exit (a second one exits at once), "
               "SIGHUP reloads the config file,\nand the model when the files in its "
               "directory changed (the running model serves until\nthe new one is loaded; "
               "one that fails to load is logged and the running one stays).\n");
}

int srv_config_diff(const srv_config *a, const srv_config *b,
                    void (*fn)(const char *key, bool reloadable, void *ud), void *ud)
{
    int n = 0;

    for (size_t i = 0; i < N_ROWS; i++) {
        const cfg_row *r = &rows[i];
        bool same = r->type == T_STRING
                        ? strcmp(cfield(a, r), cfield(b, r)) == 0
                        : *(const int64_t *)cfield(a, r) == *(const int64_t *)cfield(b, r);
        if (!same) {
            n++;
            if (fn != NULL)
                fn(r->name, r->reloadable, ud);
        }
    }
    return n;
}

const char *srv_log_level_name(int level)
{
    for (const enum_val *e = log_levels; e->name != NULL; e++)
        if (e->value == level)
            return e->name;
    return "unknown";
}
