/* bm_worker.c: persistent forked children that run one repetition at a
 * time on the parent's word (bm.h).  The modes of a shape each live in a
 * worker of their own, models loaded side by side, and the parent asks
 * them in turn for repetition r: every mode's r-th figure is then taken
 * within the same few seconds of a shared, drifting host, so that the
 * ratios between modes compare like with like.
 *
 * Wire, both ways over a pipe pair: the parent writes a command
 * {op, ti, r}; the child answers with a header {rc, err} and, when rc is
 * 0, the payload (ops->rep_size bytes after a repetition, ops->fin_size
 * after the last command; nothing after open).  A child that dies shows as
 * a short read (EOF): every pipe end of the other workers is closed in a
 * new child, so that only the worker itself holds its write end. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/bench/bm.h"

enum { OP_REP, OP_FINISH };

typedef struct cmd {
    int op, ti, r;
} cmd;

typedef struct hdr {
    int rc;
    char err[256];
} hdr;

struct bm_worker {
    const bm_worker_ops *ops;
    void *state;                /* in process (inproc) only */
    pid_t pid;                  /* 0: in process */
    int to, from;               /* the parent's ends */
    bm_worker *next;            /* every live forked worker: closed in new children */
};

static bm_worker *g_live;

static int read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
    size_t put = 0;
    while (put < len) {
        ssize_t r = write(fd, (const char *)buf + put, len - put);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        put += (size_t)r;
    }
    return 0;
}

/* The child's side: open, then one answer per command until OP_FINISH. */
static void child_main(const bm_worker_ops *ops, const void *ctx, int in, int out)
{
    void *state = NULL, *buf;
    size_t size = ops->rep_size > ops->fin_size ? ops->rep_size : ops->fin_size;
    hdr h = {0};
    cmd c;

    if ((buf = calloc(1, size)) == NULL) {
        h.rc = -ENOMEM;
        snprintf(h.err, sizeof(h.err), "out of memory");
    } else {
        h.rc = ops->open(ctx, &state, h.err, sizeof(h.err));
    }
    if (write_full(out, &h, sizeof(h)) < 0 || h.rc < 0)
        _exit(1);
    while (read_full(in, &c, sizeof(c)) == 0) {
        memset(&h, 0, sizeof(h));
        memset(buf, 0, size);
        if (c.op == OP_FINISH) {
            ops->close(state, buf);
            _exit(write_full(out, &h, sizeof(h)) < 0 ||
                  write_full(out, buf, ops->fin_size) < 0);
        }
        h.rc = ops->rep(state, c.ti, c.r, buf, h.err, sizeof(h.err));
        if (write_full(out, &h, sizeof(h)) < 0 ||
            (h.rc == 0 && write_full(out, buf, ops->rep_size) < 0))
            _exit(1);
    }
    _exit(1);   /* the parent went away */
}

/* Reads one answer; a dead child becomes an error naming how it died. */
static int answer(bm_worker *w, void *out, size_t size, char *err, size_t errlen)
{
    hdr h;
    if (read_full(w->from, &h, sizeof(h)) < 0) {
        int status = 0;
        if (waitpid(w->pid, &status, 0) == w->pid && WIFSIGNALED(status))
            snprintf(err, errlen, "the worker was killed by signal %d (%s)%s",
                     WTERMSIG(status), strsignal(WTERMSIG(status)),
                     WTERMSIG(status) == SIGKILL ? ": out of memory?" : "");
        else
            snprintf(err, errlen, "the worker died (status %d)", WEXITSTATUS(status));
        w->pid = -1;   /* reaped */
        return -ECHILD;
    }
    if (h.rc < 0) {
        snprintf(err, errlen, "%s", h.err);
        return h.rc;
    }
    if (size > 0 && read_full(w->from, out, size) < 0) {
        snprintf(err, errlen, "the worker's answer was cut short");
        return -EIO;
    }
    return 0;
}

int bm_worker_start(bm_worker **out, const bm_worker_ops *ops, const void *ctx, int inproc,
                    char *err, size_t errlen)
{
    bm_worker *w = calloc(1, sizeof(*w));
    int down[2], up[2], rc;

    *out = NULL;
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    w->ops = ops;
    /* A worker that died between two commands must show as EPIPE on the
     * next one, not kill this process with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    if (inproc) {   /* debugging: no fork */
        if ((rc = ops->open(ctx, &w->state, err, errlen)) < 0) {
            free(w);
            return rc;
        }
        *out = w;
        return 0;
    }
    down[0] = down[1] = up[0] = up[1] = -1;
    fflush(stdout);
    fflush(stderr);
    if (pipe(down) < 0 || pipe(up) < 0 || (w->pid = fork()) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot start a worker: %s", strerror(-rc));
        for (int i = 0; i < 2; i++) {
            if (down[i] >= 0)
                close(down[i]);
            if (up[i] >= 0)
                close(up[i]);
        }
        free(w);
        return rc;
    }
    if (w->pid == 0) {
        for (bm_worker *o = g_live; o != NULL; o = o->next) {
            close(o->to);
            close(o->from);
        }
        close(down[1]);
        close(up[0]);
        child_main(ops, ctx, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    w->to = down[1];
    w->from = up[0];
    w->next = g_live;
    g_live = w;
    if ((rc = answer(w, NULL, 0, err, errlen)) < 0) {
        bm_worker_kill(w);
        return rc;
    }
    *out = w;
    return 0;
}

int bm_worker_rep(bm_worker *w, int ti, int r, void *out, char *err, size_t errlen)
{
    cmd c = {OP_REP, ti, r};
    if (w->pid == 0)
        return w->ops->rep(w->state, ti, r, out, err, errlen);
    if (w->pid < 0) {
        snprintf(err, errlen, "the worker is gone");
        return -ECHILD;
    }
    if (write_full(w->to, &c, sizeof(c)) < 0) {
        /* it died since its last answer: its pipe is at EOF, and answer
         * reaps it and says how */
        int rc = answer(w, NULL, 0, err, errlen);
        return rc < 0 ? rc : -EPIPE;
    }
    return answer(w, out, w->ops->rep_size, err, errlen);
}

/* Unlinks w from the live list, closes its ends, frees it. */
static void drop(bm_worker *w)
{
    for (bm_worker **p = &g_live; *p != NULL; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    if (w->pid != 0) {
        close(w->to);
        close(w->from);
    }
    free(w);
}

int bm_worker_finish(bm_worker *w, void *fin, char *err, size_t errlen)
{
    cmd c = {OP_FINISH, 0, 0};
    int rc = 0, status;

    if (w->pid == 0) {
        w->ops->close(w->state, fin);
        drop(w);
        return 0;
    }
    if (w->pid < 0 || write_full(w->to, &c, sizeof(c)) < 0) {
        snprintf(err, errlen, "the worker is gone");
        rc = -ECHILD;
    } else {
        rc = answer(w, fin, w->ops->fin_size, err, errlen);
    }
    if (w->pid > 0)
        waitpid(w->pid, &status, 0);
    drop(w);
    return rc;
}

void bm_worker_kill(bm_worker *w)
{
    int status;
    if (w == NULL)
        return;
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        waitpid(w->pid, &status, 0);
    } else if (w->pid == 0) {
        w->ops->close(w->state, NULL);   /* frees the state; no summary */
    }
    drop(w);
}
