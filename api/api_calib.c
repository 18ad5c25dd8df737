/* api_calib.c: live calibration over HTTP (serving-anchors 6.3; admin
 * scope, enforced by the route table): GET /calibrate, POST /calibrate,
 * POST /calibrate/save, POST /calibrate/load.
 *
 * Policy: a switch is queued for the engine thread, which stops admitting
 * new sequences, lets the running ones finish in their old epoch, then
 * switches and bumps the epoch (requests arriving meanwhile wait in the
 * queue, they are not refused).  POST answers 202 with the epoch the
 * switch will produce; GET /calibrate shows "transition": "pending" until
 * it is done, and the last command's error.  409 while a command is
 * pending, or when quantizing/saving with nothing measured; 400 for a bad
 * field (named); 503 while loading.
 *
 * A save runs on the engine thread and its error shows in last_error; a
 * measurement folder that cannot take a file at all (read-only, full) is
 * refused at once instead (500, 507 with the folder and the errno text).
 *
 * Files: every path is under the state directory.  The FP8Config's
 * dump_stats_path is <state_dir>/measure/fp8d unless the operator's
 * fp8_config file sets one; a client may not set it.  Exports go to
 * <state_dir>/exports/<name> with name [A-Za-z0-9._-], not starting
 * with '.'; no symbolic link below the state directory is followed
 * (api_statedir.c).
 *
 * The FP8Config of a request is parsed here (qt_config_parse is a pure
 * function of its text) so a bad field is a 400 naming it, not a failed
 * transition discovered later. */
#include "config.h"

#include "api/api-infer.h"
#include "kernels/kn_base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static int not_ready(api_service *svc, api_response *out)
{
    int rc;

    if (api_service_state(svc) == API_STATE_READY && svc->eng != NULL &&
        eng_engine_model(svc->eng) != NULL)
        return 0;
    rc = api_error_response(out, 503, "the server is loading the model or stopping");
    api_response_add_header(out, "Retry-After", "1");
    return rc < 0 ? rc : 1;
}

/* The FP8Config text for a command: the operator's file (or {}) with the
 * request's "config" object merged over it and dump_stats_path under the
 * state directory.  NULL with *status and msg on error. */
static char *compose_config(api_service *svc, json_t *overrides, int *status, char *msg,
                            size_t msglen)
{
    json_t *base = NULL;
    char *text, dir[2300];
    qt_config *c = NULL;
    int rc;

    base = svc->fp8_json != NULL ? json_loads(svc->fp8_json, 0, NULL) : json_object();
    if (!json_is_object(base)) {
        json_decref(base);
        *status = 500;
        snprintf(msg, msglen, "the fp8_config file is not a JSON object");
        return NULL;
    }
    if (overrides != NULL && !json_is_null(overrides)) {
        if (!json_is_object(overrides)) {
            json_decref(base);
            *status = 400;
            snprintf(msg, msglen, "config must be an FP8Config object");
            return NULL;
        }
        if (json_object_get(overrides, "dump_stats_path") != NULL) {
            json_decref(base);
            *status = 400;
            snprintf(msg, msglen, "config.dump_stats_path cannot be set over HTTP: "
                     "measurements live under the state directory");
            return NULL;
        }
        json_object_update(base, overrides);
    }
    /* The daemon decides the mode of each command itself. */
    json_object_set_new(base, "mode", json_string("MEASURE"));
    if (json_object_get(base, "dump_stats_path") == NULL) {
        if (api__state_subdir(svc->state_dir, "measure", msg, msglen) < 0) {
            json_decref(base);
            *status = 500;
            return NULL;
        }
        snprintf(dir, sizeof(dir), "%s/measure/fp8d", svc->state_dir);
        json_object_set_new(base, "dump_stats_path", json_string(dir));
    }
    text = json_dumps(base, JSON_COMPACT);
    json_decref(base);
    if (text == NULL) {
        *status = 500;
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    if ((rc = qt_config_parse(&c, text, "config", msg, msglen)) < 0) {
        free(text);
        *status = 400;
        return NULL;
    }
    qt_config_free(c);
    return text;
}

int api__calibrate_get(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    eng_calib_status st;
    json_t *o;
    int rc;

    if ((rc = not_ready(svc, out)) != 0)
        return rc < 0 ? rc : 0;
    eng_engine_calib_status(svc->eng, &st);
    o = json_pack("{s:s, s:I, s:o, s:b, s:b, s:{s:I, s:I}, s:I, s:o, s:s, s:s, s:I}",
                  "mode", api__mode_name(st.mode), "epoch", (json_int_t)st.epoch,
                  "transition", st.busy ? json_string("pending") : json_null(),
                  "prepared", st.prepared, "ready_to_quantize", st.measured,
                  "observed", "requests", (json_int_t)st.requests_observed,
                  "tokens", (json_int_t)st.tokens_observed,
                  "transitions", (json_int_t)st.transitions,
                  "last_error", st.last_rc < 0 ? json_string(st.last_err) : json_null(),
                  "config", svc->fp8_json != NULL ? "fp8_config file" : "defaults",
                  "state_dir", svc->state_dir,
                  "modules", (json_int_t)eng_model_n_linears(eng_engine_model(svc->eng)));
    rc = api__json_reply(out, 200, o);
    api__fp8_headers_at(out, st.mode, st.epoch);
    return rc;
}

static int queue_cmd(api_service *svc, const eng_calib_cmd *cmd, api_response *out,
                     json_t *reply)
{
    eng_calib_status st;
    int rc;

    eng_engine_calib_status(svc->eng, &st);
    rc = eng_engine_calibrate(svc->eng, cmd);
    if (rc == -EBUSY) {
        json_decref(reply);
        return api_error_response(out, 409, "a calibration transition is in progress "
                                  "(transition_in_progress); see GET /calibrate");
    }
    if (rc < 0) {
        json_decref(reply);
        return api_error_response(out, rc == -ESHUTDOWN ? 503 : 500,
                                  "cannot queue the calibration command");
    }
    json_object_set_new(reply, "status", json_string("pending"));
    json_object_set_new(reply, "from", json_pack("{s:s, s:I}", "mode", api__mode_name(st.mode),
                                                 "epoch", (json_int_t)st.epoch));
    rc = api__json_reply(out, 202, reply);
    api_response_add_header(out, "Location", "/calibrate");
    return rc;
}

int api__calibrate_post(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    json_error_t e;
    json_t *req = NULL, *mode, *ds, *reset;
    eng_calib_cmd cmd;
    eng_calib_status st;
    char msg[300], *cfg = NULL;
    int32_t **seqs = NULL;
    size_t *lens = NULL, n_ds = 0;
    int status = 400, rc;
    const char *m;

    if ((rc = not_ready(svc, out)) != 0)
        return rc < 0 ? rc : 0;
    memset(&cmd, 0, sizeof(cmd));
    req = body != NULL && body_len > 0 ? json_loadb(body, body_len, 0, &e) : NULL;
    if (!json_is_object(req)) {
        snprintf(msg, sizeof(msg), "request body must be a JSON object with \"mode\"");
        goto fail;
    }
    mode = json_object_get(req, "mode");
    m = json_is_string(mode) ? json_string_value(mode) : "";
    if (strcmp(m, "off") == 0)
        cmd.mode = QT_MODE_OFF;
    else if (strcmp(m, "measure") == 0)
        cmd.mode = QT_MODE_MEASURE;
    else if (strcmp(m, "quantize") == 0)
        cmd.mode = QT_MODE_QUANTIZE;
    else {
        snprintf(msg, sizeof(msg), "mode must be \"off\", \"measure\" or \"quantize\"");
        goto fail;
    }
    reset = json_object_get(req, "reset");
    if (reset != NULL && !json_is_boolean(reset)) {
        snprintf(msg, sizeof(msg), "reset must be true or false");
        goto fail;
    }
    cmd.reset = json_is_true(reset);
    ds = json_object_get(req, "dataset");
    if (ds != NULL && !json_is_null(ds)) {
        const eng_tokenizer *tok = eng_engine_tokenizer(svc->eng);
        size_t ctx = (size_t)eng_model_get_config(eng_engine_model(svc->eng))->max_pos;
        if (cmd.mode != QT_MODE_MEASURE || !json_is_array(ds) || json_array_size(ds) == 0 ||
            json_array_size(ds) > 4096) {
            snprintf(msg, sizeof(msg), "dataset must be a non-empty array of prompt strings "
                     "(at most 4096), with mode \"measure\"");
            goto fail;
        }
        n_ds = json_array_size(ds);
        seqs = calloc(n_ds, sizeof(*seqs));
        lens = calloc(n_ds, sizeof(*lens));
        if (seqs == NULL || lens == NULL) {
            status = 500;
            snprintf(msg, sizeof(msg), "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n_ds; i++) {
            json_t *t = json_array_get(ds, i);
            if (!json_is_string(t) ||
                eng_tokenizer_encode(tok, json_string_value(t), json_string_length(t), true,
                                     &seqs[i], &lens[i]) < 0 || lens[i] == 0 || lens[i] >= ctx) {
                snprintf(msg, sizeof(msg), "dataset[%zu] must be a non-empty UTF-8 string "
                         "shorter than the context (%zu tokens)", i, ctx);
                goto fail;
            }
        }
        cmd.seqs = (const int32_t *const *)seqs;
        cmd.lens = lens;
        cmd.n_seqs = n_ds;
    }
    eng_engine_calib_status(svc->eng, &st);
    if (cmd.mode == QT_MODE_QUANTIZE && !st.measured) {
        status = 409;
        snprintf(msg, sizeof(msg), "nothing measured yet (insufficient_calibration_data): "
                 "run mode \"measure\" on traffic or a dataset first, or POST /calibrate/load");
        goto fail;
    }
    if ((cfg = compose_config(svc, json_object_get(req, "config"), &status, msg,
                              sizeof(msg))) == NULL)
        goto fail;
    if (json_object_get(req, "config") != NULL && st.prepared) {
        status = 409;
        snprintf(msg, sizeof(msg), "config applies when the FP8 state is first prepared; it "
                 "already is (restart the daemon with another fp8_config)");
        goto fail;
    }
    cmd.op = ENG_CALIB_MODE;
    cmd.config_json = cfg;
    rc = queue_cmd(svc, &cmd, out, json_pack("{s:{s:s, s:I}}", "to", "mode", m, "epoch",
                                             (json_int_t)st.epoch + 1));
    goto done;
fail:
    rc = api_error_response(out, status, msg);
done:
    for (size_t i = 0; seqs != NULL && i < n_ds; i++)
        free(seqs[i]);
    free(seqs);
    free(lens);
    free(cfg);
    json_decref(req);
    return rc;
}

/* The composed FP8Config (compose_config, no overrides) and the
 * measurement file it names, as the engine's save and load name it.
 * NULL with *status and msg on error. */
static char *measure_config(api_service *svc, char *path, size_t len, int *status, char *msg,
                            size_t msglen)
{
    qt_config *c = NULL;
    char *cfg = compose_config(svc, NULL, status, msg, msglen);

    if (cfg == NULL)
        return NULL;
    if (qt_config_parse(&c, cfg, "config", msg, msglen) < 0 ||
        qt_measure_path(c, QT_FILE_MEASURE, path, len) < 0) {
        qt_config_free(c);
        free(cfg);
        *status = 500;
        snprintf(msg, msglen, "cannot name the measurement file");
        return NULL;
    }
    qt_config_free(c);
    return cfg;
}

/* The save runs later on the engine thread and reports there (GET
 * /calibrate's last_error).  A folder that cannot take a file at all
 * (read-only, no space left, no permission) is refused now, so the client
 * hears it from this request: 507 for space, 500 otherwise.  Anything
 * else (a folder still to be created) is left to the save itself. */
static int check_writable(const char *file, int *status, char *msg, size_t msglen)
{
    char dir[4096];
    struct statvfs vs;
    int rc = 0;

    snprintf(dir, sizeof(dir), "%s", file);
    if (strrchr(dir, '/') != NULL)
        *strrchr(dir, '/') = '\0';
    if (access(dir, W_OK) != 0)
        rc = -errno;
    else if (statvfs(dir, &vs) == 0 && (geteuid() == 0 ? vs.f_bfree : vs.f_bavail) == 0)
        rc = -ENOSPC;           /* root may use the blocks reserved for it */
    if (rc != -EROFS && rc != -EACCES && rc != -EPERM && rc != -ENOSPC && rc != -EDQUOT)
        return 0;
    *status = rc == -ENOSPC || rc == -EDQUOT ? 507 : 500;
    snprintf(msg, msglen, "cannot save: measurement folder %.200s: %s", dir, strerror(-rc));
    return rc;
}

int api__calibrate_save(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    json_t *req = NULL, *ex;
    json_error_t je;
    eng_calib_cmd cmd;
    eng_calib_status st;
    char dir[2300], msg[300], path[4096], *cfg;
    const char *name = NULL;
    int rc, status = 400;

    if ((rc = not_ready(svc, out)) != 0)
        return rc < 0 ? rc : 0;
    memset(&cmd, 0, sizeof(cmd));
    /* JSON_ALLOW_NUL: a "\u0000" in the name is then refused below,
     * naming the field, instead of failing the whole body. */
    if (body != NULL && body_len > 0)
        req = json_loadb(body, body_len, JSON_ALLOW_NUL, &je);  /* not inside a macro */
    if (body != NULL && body_len > 0 && !json_is_object(req)) {
        if (req == NULL)
            snprintf(msg, sizeof(msg), "request body is not valid JSON: %.200s", je.text);
        else
            snprintf(msg, sizeof(msg), "request body must be a JSON object");
        goto fail;
    }
    ex = json_object_get(req, "export");
    if (ex != NULL && !json_is_null(ex)) {
        size_t len = json_is_string(ex) ? json_string_length(ex) : 0;
        name = json_is_string(ex) ? json_string_value(ex) : "";
        if (len == 0 || len > 64 || name[0] == '.' || strspn(name, "abcdefghijklmnopqrstuvwxyz"
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len) {
            snprintf(msg, sizeof(msg), "export must be a name of 1 to 64 characters "
                     "[A-Za-z0-9._-] not starting with '.' (it becomes "
                     "<state_dir>/exports/<name>)");
            goto fail;
        }
    }
    eng_engine_calib_status(svc->eng, &st);
    if (!st.prepared || !st.measured) {
        status = 409;
        snprintf(msg, sizeof(msg), "nothing measured yet: nothing to save");
        goto fail;
    }
    /* Checks the measurement folder as a command does (no link in it),
     * and that it can take a file at all. */
    if ((cfg = measure_config(svc, path, sizeof(path), &status, msg, sizeof(msg))) == NULL)
        goto fail;
    free(cfg);
    if (check_writable(path, &status, msg, sizeof(msg)) < 0)
        goto fail;
    if (name != NULL) {
        char sub[100];
        snprintf(sub, sizeof(sub), "exports/%s", name);
        if ((rc = api__state_subdir(svc->state_dir, sub, dir, sizeof(dir))) < 0) {
            /* A link or a file in the way is the request's name's problem. */
            status = rc == -ELOOP || rc == -ENOTDIR ? 400 : 500;
            snprintf(msg, sizeof(msg), "export: %.280s", dir);
            goto fail;
        }
        snprintf(dir, sizeof(dir), "%s/exports/%s", svc->state_dir, name);
        cmd.path = dir;
    }
    cmd.op = ENG_CALIB_SAVE;
    rc = queue_cmd(svc, &cmd, out, json_pack("{s:s, s:o}", "state_dir", svc->state_dir,
                                             "export", cmd.path ? json_string(cmd.path)
                                                                : json_null()));
    json_decref(req);
    return rc;
fail:
    json_decref(req);
    return api_error_response(out, status, msg);
}

int api__calibrate_load(api_service *svc, const char *body, size_t body_len, api_response *out)
{
    eng_calib_cmd cmd;
    eng_calib_status st;
    char msg[300], path[4096], *cfg;
    int rc, status = 500;
    struct stat sb;

    if ((rc = not_ready(svc, out)) != 0)
        return rc < 0 ? rc : 0;
    memset(&cmd, 0, sizeof(cmd));
    if ((cfg = measure_config(svc, path, sizeof(path), &status, msg, sizeof(msg))) == NULL)
        return api_error_response(out, status, msg);
    if (stat(path, &sb) != 0) {
        free(cfg);
        snprintf(msg, sizeof(msg), "nothing saved to load: %.200s does not exist (POST "
                 "/calibrate/save first)", path);
        return api_error_response(out, 409, msg);
    }
    eng_engine_calib_status(svc->eng, &st);
    cmd.op = ENG_CALIB_LOAD;
    cmd.config_json = cfg;
    cmd.path = path;
    rc = queue_cmd(svc, &cmd, out, json_pack("{s:s, s:{s:s, s:I}}", "path", path, "to", "mode",
                                             "quantize", "epoch", (json_int_t)st.epoch + 1));
    free(cfg);
    return rc;
}
