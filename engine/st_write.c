/* st_write.c: the safetensors writer (st_write.h).  The header is built
 * with jansson, so names and metadata strings are escaped correctly. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "engine/engine-int.h"
#include "engine/st_write.h"

typedef struct stw_tensor {
    char       *name;
    eng_dtype   dt;
    int         n_dims;
    int64_t     shape[ENG_MAX_DIMS];
    const void *data;
    size_t      size;
} stw_tensor;

struct eng_stw {
    stw_tensor *t;
    size_t      n, cap;
    json_t     *meta;
};

eng_stw *eng_stw_new(void)
{
    eng_stw *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->meta = json_object()) == NULL ||
        json_object_set_new(w->meta, "format", json_string("pt")) != 0) {
        eng_stw_free(w);
        return NULL;
    }
    return w;
}

void eng_stw_free(eng_stw *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->t[i].name);
    free(w->t);
    json_decref(w->meta);
    free(w);
}

int eng_stw_add(eng_stw *w, const char *name, eng_dtype dt, int n_dims, const int64_t *shape,
                const void *data, size_t size)
{
    size_t ne = 1;

    if ((unsigned)dt >= ENG_DT_COUNT || n_dims < 0 || n_dims > ENG_MAX_DIMS)
        return -EINVAL;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0)
            return -EINVAL;
        ne *= (size_t)shape[i];
    }
    if (ne * eng_dtype_size(dt) != size)
        return -EINVAL;
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return -EEXIST;
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        stw_tensor *nt = realloc(w->t, nc * sizeof(*nt));
        if (nt == NULL)
            return -ENOMEM;
        w->t = nt;
        w->cap = nc;
    }
    stw_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof(*t));
    if ((t->name = strdup(name)) == NULL)
        return -ENOMEM;
    t->dt = dt;
    t->n_dims = n_dims;
    memcpy(t->shape, shape, (size_t)n_dims * sizeof(int64_t));
    t->data = data;
    t->size = size;
    w->n++;
    return 0;
}

int eng_stw_meta(eng_stw *w, const char *key, const char *value)
{
    if (strcmp(key, "format") == 0)
        return -EINVAL;
    return json_object_set_new(w->meta, key, json_string(value)) == 0 ? 0 : -ENOMEM;
}

/* The reference writer's order: larger alignment first, then by name. */
static int cmp_tensor(const void *a, const void *b)
{
    const stw_tensor *x = a, *y = b;
    size_t ax = eng_dtype_size(x->dt), ay = eng_dtype_size(y->dt);
    if (ax != ay)
        return ax > ay ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int write_all(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : -EIO;
}

int eng_stw_write(eng_stw *w, const char *path, char *err, size_t errlen)
{
    json_t *hdr = json_object();
    char tmp[PATH_MAX], *text = NULL;
    size_t off = 0, hl, pad;
    unsigned char len8[8];
    FILE *f = NULL;
    int rc = -ENOMEM;

    if (hdr == NULL)
        return -ENOMEM;
    qsort(w->t, w->n, sizeof(*w->t), cmp_tensor);
    if (json_object_set(hdr, "__metadata__", w->meta) != 0)
        goto out;
    for (size_t i = 0; i < w->n; i++) {
        const stw_tensor *t = &w->t[i];
        json_t *e = json_object(), *sh = json_array(), *of = json_array();
        if (e == NULL || sh == NULL || of == NULL) {
            json_decref(e);
            json_decref(sh);
            json_decref(of);
            goto out;
        }
        for (int d = 0; d < t->n_dims; d++)
            json_array_append_new(sh, json_integer((json_int_t)t->shape[d]));
        json_array_append_new(of, json_integer((json_int_t)off));
        json_array_append_new(of, json_integer((json_int_t)(off + t->size)));
        json_object_set_new(e, "dtype", json_string(eng_dtype_name(t->dt)));
        json_object_set_new(e, "shape", sh);
        json_object_set_new(e, "data_offsets", of);
        if (json_object_set_new(hdr, t->name, e) != 0)
            goto out;
        off += t->size;
    }
    if ((text = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
        goto out;
    hl = strlen(text);
    pad = (8 - hl % 8) % 8;
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)(hl + pad) >> (8 * i));
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        kn_errf(err, errlen, "%s: path too long", path);
        rc = -ENAMETOOLONG;
        goto out;
    }
    if ((f = fopen(tmp, "wb")) == NULL) {
        rc = -errno;
        kn_errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    rc = write_all(f, len8, 8);
    if (rc == 0)
        rc = write_all(f, text, hl);
    for (size_t i = 0; rc == 0 && i < pad; i++)
        rc = write_all(f, " ", 1);
    for (size_t i = 0; rc == 0 && i < w->n; i++)
        rc = write_all(f, w->t[i].data, w->t[i].size);
    if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        rc = -errno;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    f = NULL;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc < 0) {
        kn_errf(err, errlen, "%s: write failed: %s", path, strerror(-rc));
        unlink(tmp);
    }
out:
    free(text);
    json_decref(hdr);
    return rc;
}
