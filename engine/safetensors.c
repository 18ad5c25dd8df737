/* safetensors.c: mmap and strict validation of .safetensors files, single
 * or sharded through model.safetensors.index.json (model-formats.md §1).
 *
 * Every rule of §1.4 is checked before any tensor is handed out: header
 * size limit, UTF-8 JSON object with no duplicate keys, exactly the three
 * members per tensor, known dtype, shape x dtype size == byte length,
 * tensors packed back to back from 0 to the end of the file (no hole, no
 * overlap, no trailing bytes).  Tensors the file placed unaligned for their
 * element size are copied, so callers may cast data to the element type.
 *
 * Each file stays open, with its identity at open (device, inode, size,
 * mtime), for the engine's later reads (engine-int.h, eng__st_*): the
 * mapping is MAP_PRIVATE and read-only, so pages the engine has copied can
 * be dropped (they come back from the page cache if touched), and a file
 * changed in place is detected through the kept descriptor before anything
 * reads it again (a file truncated under a mapping raises SIGBUS on
 * access; pread() only comes back short).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine-int.h"

typedef struct st_map {
    char  *path;
    void  *base;
    size_t size;
    int    fd;            /* kept open for checks and pread; -1 if none */
    struct stat id;       /* fstat at open: st_dev, st_ino, st_size, st_mtim */
} st_map;

struct eng_st_file {
    st_map     *maps;
    size_t      n_maps;
    eng_tensor *tensors;      /* sorted by name */
    size_t      n_tensors;
    void      **copies;       /* aligned copies of unaligned tensors */
    size_t      n_copies;
};

static const struct {
    const char *name;
    unsigned    bits;
} g_dtypes[ENG_DT_COUNT] = {
    [ENG_DT_BOOL] = {"BOOL", 8},       [ENG_DT_U8] = {"U8", 8},
    [ENG_DT_I8] = {"I8", 8},           [ENG_DT_I16] = {"I16", 16},
    [ENG_DT_U16] = {"U16", 16},        [ENG_DT_F16] = {"F16", 16},
    [ENG_DT_BF16] = {"BF16", 16},      [ENG_DT_I32] = {"I32", 32},
    [ENG_DT_U32] = {"U32", 32},        [ENG_DT_F32] = {"F32", 32},
    [ENG_DT_F64] = {"F64", 64},        [ENG_DT_I64] = {"I64", 64},
    [ENG_DT_U64] = {"U64", 64},        [ENG_DT_C64] = {"C64", 64},
    [ENG_DT_F8_E4M3] = {"F8_E4M3", 8}, [ENG_DT_F8_E5M2] = {"F8_E5M2", 8},
    [ENG_DT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8}, [ENG_DT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [ENG_DT_F8_E8M0] = {"F8_E8M0", 8},
};

const char *eng_dtype_name(eng_dtype dt)
{
    return (unsigned)dt < ENG_DT_COUNT ? g_dtypes[dt].name : "?";
}

size_t eng_dtype_size(eng_dtype dt)
{
    return (unsigned)dt < ENG_DT_COUNT ? g_dtypes[dt].bits / 8 : 0;
}

static int dtype_parse(const char *s, eng_dtype *out)
{
    for (int i = 0; i < ENG_DT_COUNT; i++)
        if (strcmp(s, g_dtypes[i].name) == 0) {
            *out = (eng_dtype)i;
            return 0;
        }
    return -1;
}

/* Sub-byte types of the format that we refuse by name rather than as unknown. */
static bool dtype_is_subbyte(const char *s)
{
    return strcmp(s, "F4") == 0 || strcmp(s, "F6_E2M3") == 0 || strcmp(s, "F6_E3M2") == 0;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], need;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { need = 1; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { need = 2; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { need = 3; cp = c & 0x07; }
        else return false;
        if (n - i <= need)
            return false;
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += need + 1;
    }
    return true;
}

/* Non-negative JSON integer <= 2^48-1 (the schema's cap). */
static bool json_uint48(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v))
        return false;
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > ((1ull << 48) - 1))
        return false;
    *out = (uint64_t)x;
    return true;
}

void eng_st_close(eng_st_file *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n_tensors; i++)
        free((char *)f->tensors[i].name);
    free(f->tensors);
    for (size_t i = 0; i < f->n_copies; i++)
        kn_free(f->copies[i]);
    free(f->copies);
    for (size_t i = 0; i < f->n_maps; i++) {
        if (f->maps[i].base != NULL && f->maps[i].size > 0)
            munmap(f->maps[i].base, f->maps[i].size);
        if (f->maps[i].fd >= 0)
            close(f->maps[i].fd);
        free(f->maps[i].path);
    }
    free(f->maps);
    free(f);
}

size_t eng_st_count(const eng_st_file *f)
{
    return f->n_tensors;
}

const eng_tensor *eng_st_at(const eng_st_file *f, size_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const eng_tensor *)a)->name, ((const eng_tensor *)b)->name);
}

const eng_tensor *eng_st_find(const eng_st_file *f, const char *name)
{
    eng_tensor key = {.name = name};
    if (f == NULL || f->n_tensors == 0)
        return NULL;
    return bsearch(&key, f->tensors, f->n_tensors, sizeof(key), cmp_name);
}

/* One parsed entry before placement. */
typedef struct st_entry {
    eng_tensor t;
    uint64_t   begin, end;
} st_entry;

static int cmp_offsets(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* Validates one member "name": {dtype, shape, data_offsets} into e. */
static int parse_entry(st_entry *e, const char *path, const char *name, json_t *v,
                       char *err, size_t errlen)
{
    json_t *jd, *js, *jo;
    uint64_t nelem = 1, nbits;

    if (name[0] == '\0' || strncmp(name, "__", 2) == 0) {
        kn_errf(err, errlen, "%s: tensor name \"%s\" is empty or reserved", path, name);
        return ENG_E_FORMAT;
    }
    if (!json_is_object(v) || json_object_size(v) != 3 ||
        (jd = json_object_get(v, "dtype")) == NULL || (js = json_object_get(v, "shape")) == NULL ||
        (jo = json_object_get(v, "data_offsets")) == NULL) {
        kn_errf(err, errlen, "%s: tensor \"%s\": want an object with exactly dtype, shape, "
                "data_offsets", path, name);
        return ENG_E_FORMAT;
    }
    if (!json_is_string(jd)) {
        kn_errf(err, errlen, "%s: tensor \"%s\": dtype is not a string", path, name);
        return ENG_E_FORMAT;
    }
    if (dtype_is_subbyte(json_string_value(jd))) {
        kn_errf(err, errlen, "%s: tensor \"%s\": dtype %s (sub-byte) is not supported", path,
                name, json_string_value(jd));
        return ENG_E_UNSUPPORTED;
    }
    if (dtype_parse(json_string_value(jd), &e->t.dtype) < 0) {
        kn_errf(err, errlen, "%s: tensor \"%s\": unknown dtype \"%.32s\"", path, name,
                json_string_value(jd));
        return ENG_E_FORMAT;
    }
    if (!json_is_array(js) || json_array_size(js) > ENG_MAX_DIMS) {
        kn_errf(err, errlen, "%s: tensor \"%s\": shape is not an array of at most %d dims",
                path, name, ENG_MAX_DIMS);
        return ENG_E_FORMAT;
    }
    e->t.n_dims = (int)json_array_size(js);
    for (int d = 0; d < e->t.n_dims; d++) {
        uint64_t x;
        if (!json_uint48(json_array_get(js, d), &x)) {
            kn_errf(err, errlen, "%s: tensor \"%s\": shape[%d] is not an integer in [0, 2^48)",
                    path, name, d);
            return ENG_E_FORMAT;
        }
        e->t.shape[d] = (int64_t)x;
        if (x != 0 && nelem > UINT64_MAX / x) {
            kn_errf(err, errlen, "%s: tensor \"%s\": element count overflows", path, name);
            return ENG_E_FORMAT;
        }
        nelem *= x;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_uint48(json_array_get(jo, 0), &e->begin) ||
        !json_uint48(json_array_get(jo, 1), &e->end) || e->begin > e->end) {
        kn_errf(err, errlen, "%s: tensor \"%s\": data_offsets must be [BEGIN, END] integers with "
                "BEGIN <= END", path, name);
        return ENG_E_FORMAT;
    }
    unsigned bits = g_dtypes[e->t.dtype].bits;
    if (nelem > UINT64_MAX / bits) {
        kn_errf(err, errlen, "%s: tensor \"%s\": byte size overflows", path, name);
        return ENG_E_FORMAT;
    }
    nbits = nelem * bits;
    if (nbits % 8 != 0 || e->end - e->begin != nbits / 8) {
        kn_errf(err, errlen, "%s: tensor \"%s\": %s shape needs %llu bytes, data_offsets "
                "span %llu", path, name, g_dtypes[e->t.dtype].name,
                (unsigned long long)(nbits / 8), (unsigned long long)(e->end - e->begin));
        return ENG_E_FORMAT;
    }
    e->t.n_elem = (size_t)nelem;
    e->t.size = (size_t)(nbits / 8);
    return 0;
}

static int check_metadata(json_t *meta, const char *path, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    if (!json_is_object(meta)) {
        kn_errf(err, errlen, "%s: __metadata__ is not an object", path);
        return ENG_E_FORMAT;
    }
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v)) {
            kn_errf(err, errlen, "%s: __metadata__ value \"%s\" is not a string", path, k);
            return ENG_E_FORMAT;
        }
    }
    return 0;
}

/* Appends the validated entries to f: names copied, data pointing into
 * the map (or into an aligned copy when the file placed it unaligned). */
static int place_tensors(eng_st_file *f, const st_map *mp, const unsigned char *base,
                         const st_entry *ents, size_t n_ents)
{
    eng_tensor *nt = realloc(f->tensors, (f->n_tensors + n_ents + 1) * sizeof(*nt));
    void **nc = realloc(f->copies, (f->n_copies + n_ents + 1) * sizeof(*nc));
    if (nt != NULL)
        f->tensors = nt;
    if (nc != NULL)
        f->copies = nc;
    if (nt == NULL || nc == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n_ents; i++) {
        eng_tensor t = ents[i].t;
        const unsigned char *d = base + ents[i].begin;
        size_t al = eng_dtype_size(t.dtype);
        if ((t.name = strdup(t.name)) == NULL)
            return -ENOMEM;
        t.file = mp->path;
        if (al > 1 && ((uintptr_t)d % al) != 0) {
            void *c = kn_alloc(t.size);
            if (c == NULL) {
                free((char *)t.name);
                return -ENOMEM;
            }
            memcpy(c, d, t.size);
            f->copies[f->n_copies++] = c;
            d = c;
        }
        t.data = d;
        f->tensors[f->n_tensors++] = t;
    }
    return 0;
}

/* Parses the header of a mapped file and appends its tensors to f. */
static int parse_header(eng_st_file *f, const st_map *mp, char *err, size_t errlen)
{
    const unsigned char *p = mp->base;
    uint64_t n = 0;
    json_error_t jerr;
    json_t *root = NULL, *v;
    st_entry *ents = NULL;
    size_t n_ents = 0;
    const char *key;
    int rc = ENG_E_FORMAT;

    if (mp->size < 8) {
        kn_errf(err, errlen, "%s: file is %zu bytes, shorter than the 8-byte header length",
                mp->path, mp->size);
        return ENG_E_FORMAT;
    }
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | p[i];
    if (n > ENG_ST_MAX_HEADER) {
        kn_errf(err, errlen, "%s: header length %llu exceeds the limit of %u bytes", mp->path,
                (unsigned long long)n, ENG_ST_MAX_HEADER);
        return ENG_E_FORMAT;
    }
    if (n > mp->size - 8) {
        kn_errf(err, errlen, "%s: header length %llu runs past the end of the %zu-byte file "
                "(truncated?)", mp->path, (unsigned long long)n, mp->size);
        return ENG_E_FORMAT;
    }
    if (n < 2 || p[8] != '{' || !utf8_valid(p + 8, (size_t)n)) {
        kn_errf(err, errlen, "%s: header is not a UTF-8 JSON object starting with '{'", mp->path);
        return ENG_E_FORMAT;
    }
    root = json_loadb((const char *)p + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        kn_errf(err, errlen, "%s: header JSON: %s (line %d, column %d)", mp->path,
                root == NULL ? jerr.text : "not an object", jerr.line, jerr.column);
        goto out;
    }
    ents = calloc(json_object_size(root) + 1, sizeof(*ents));
    if (ents == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = check_metadata(v, mp->path, err, errlen)) < 0)
                goto out;
            continue;
        }
        if ((rc = parse_entry(&ents[n_ents], mp->path, key, v, err, errlen)) < 0)
            goto out;
        ents[n_ents].t.name = key;   /* borrowed from root until copied below */
        n_ents++;
    }
    qsort(ents, n_ents, sizeof(*ents), cmp_offsets);
    uint64_t data_len = mp->size - 8 - n, pos = 0;
    for (size_t i = 0; i < n_ents; i++) {
        if (ents[i].begin != pos) {
            kn_errf(err, errlen, "%s: tensor \"%s\": data_offsets [%llu, %llu] %s the previous "
                    "tensor's end %llu", mp->path, ents[i].t.name,
                    (unsigned long long)ents[i].begin, (unsigned long long)ents[i].end,
                    ents[i].begin < pos ? "overlap" : "leave a hole after",
                    (unsigned long long)pos);
            rc = ENG_E_FORMAT;
            goto out;
        }
        if (ents[i].end > data_len) {
            kn_errf(err, errlen, "%s: tensor \"%s\": data_offsets end %llu is past the data "
                    "buffer (%llu bytes; truncated file?)", mp->path, ents[i].t.name,
                    (unsigned long long)ents[i].end, (unsigned long long)data_len);
            rc = ENG_E_FORMAT;
            goto out;
        }
        pos = ents[i].end;
    }
    if (pos != data_len) {
        kn_errf(err, errlen, "%s: %llu trailing bytes after the last tensor", mp->path,
                (unsigned long long)(data_len - pos));
        rc = ENG_E_FORMAT;
        goto out;
    }
    rc = place_tensors(f, mp, p + 8 + n, ents, n_ents);
out:
    free(ents);
    json_decref(root);
    return rc;
}

static int map_file(st_map *mp, const char *path, char *err, size_t errlen)
{
    int fd, rc;

    memset(mp, 0, sizeof(*mp));
    mp->fd = -1;
    if ((mp->path = strdup(path)) == NULL)
        return -ENOMEM;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = -errno;
        kn_errf(err, errlen, "%s: open: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &mp->id) < 0 || !S_ISREG(mp->id.st_mode)) {
        rc = S_ISREG(mp->id.st_mode) ? -errno : -EINVAL;
        kn_errf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return rc;
    }
    mp->fd = fd;
    mp->size = (size_t)mp->id.st_size;
    if (mp->size > 0) {
        mp->base = mmap(NULL, mp->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (mp->base == MAP_FAILED) {
            rc = -errno;
            mp->base = NULL;
            kn_errf(err, errlen, "%s: mmap: %s", path, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* Maps path and appends its tensors to f. */
static int add_file(eng_st_file *f, const char *path, char *err, size_t errlen)
{
    st_map *nm = realloc(f->maps, (f->n_maps + 1) * sizeof(*nm));
    int rc;
    if (nm == NULL)
        return -ENOMEM;
    f->maps = nm;
    rc = map_file(&f->maps[f->n_maps], path, err, errlen);
    f->n_maps++;     /* counted even on failure so close frees its path */
    if (rc < 0)
        return rc;
    /* An empty file has no mapping; parse_header rejects it by size first. */
    return parse_header(f, &f->maps[f->n_maps - 1], err, errlen);
}

/* Sorts by name and rejects a name present twice (two shards). */
static int finish(eng_st_file *f, char *err, size_t errlen)
{
    qsort(f->tensors, f->n_tensors, sizeof(eng_tensor), cmp_name);
    for (size_t i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            kn_errf(err, errlen, "tensor \"%s\" is present in both %s and %s",
                    f->tensors[i].name, f->tensors[i - 1].file, f->tensors[i].file);
            return ENG_E_FORMAT;
        }
    return 0;
}

int eng_st_open(eng_st_file **out, const char *path, char *err, size_t errlen)
{
    eng_st_file *f = calloc(1, sizeof(*f));
    int rc;

    *out = NULL;
    if (f == NULL)
        return -ENOMEM;
    if ((rc = add_file(f, path, err, errlen)) < 0 || (rc = finish(f, err, errlen)) < 0) {
        eng_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* Shards named by the index: bare file names only. */
static bool shard_name_ok(const char *s)
{
    return s[0] != '\0' && strchr(s, '/') == NULL && strstr(s, "..") == NULL;
}

static int open_index(eng_st_file *f, const char *dir, const char *ipath, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &jerr), *wm, *v;
    const char **files = NULL;
    size_t n_files = 0;
    const char *key;
    char path[PATH_MAX];
    int rc = ENG_E_FORMAT;

    if (root == NULL) {
        kn_errf(err, errlen, "%s: %s (line %d)", ipath, jerr.text, jerr.line);
        return ENG_E_FORMAT;
    }
    wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        kn_errf(err, errlen, "%s: weight_map is missing or not a non-empty object", ipath);
        goto out;
    }
    if ((files = calloc(json_object_size(wm), sizeof(*files))) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    json_object_foreach(wm, key, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            kn_errf(err, errlen, "%s: weight_map[\"%s\"] is not a bare shard file name", ipath, key);
            goto out;
        }
        size_t j;
        for (j = 0; j < n_files; j++)
            if (strcmp(files[j], json_string_value(v)) == 0)
                break;
        if (j == n_files)
            files[n_files++] = json_string_value(v);
    }
    for (size_t j = 0; j < n_files; j++) {
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, files[j]) >= sizeof(path)) {
            kn_errf(err, errlen, "%s: shard path too long", ipath);
            goto out;
        }
        if ((rc = add_file(f, path, err, errlen)) < 0)
            goto out;
    }
    if ((rc = finish(f, err, errlen)) < 0)
        goto out;
    json_object_foreach(wm, key, v) {
        const eng_tensor *t = eng_st_find(f, key);
        const char *want = json_string_value(v), *base;
        base = t ? strrchr(t->file, '/') : NULL;
        base = base ? base + 1 : (t ? t->file : NULL);
        if (t == NULL || strcmp(base, want) != 0) {
            kn_errf(err, errlen, "%s: tensor \"%s\" is not in its shard %s", ipath, key, want);
            rc = ENG_E_FORMAT;
            goto out;
        }
    }
    if (eng_st_count(f) != json_object_size(wm))
        ENG_LOG(KN_LOG_WARN, "%s: %zu tensors in the shards are not in weight_map", ipath,
                eng_st_count(f) - json_object_size(wm));
    rc = 0;
out:
    free(files);
    json_decref(root);
    return rc;
}

int eng_st_open_dir(eng_st_file **out, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    eng_st_file *f;
    int rc;

    *out = NULL;
    if ((size_t)snprintf(path, sizeof(path), "%s/model.safetensors", dir) >= sizeof(path)) {
        kn_errf(err, errlen, "%s: path too long", dir);
        return -ENAMETOOLONG;
    }
    if (access(path, F_OK) == 0)
        return eng_st_open(out, path, err, errlen);
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    if (access(path, F_OK) != 0) {
        kn_errf(err, errlen, "%s: neither model.safetensors nor model.safetensors.index.json "
                "found", dir);
        return -ENOENT;
    }
    if ((f = calloc(1, sizeof(*f))) == NULL)
        return -ENOMEM;
    if ((rc = open_index(f, dir, path, err, errlen)) < 0) {
        eng_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

/* ---- reads after open (engine-int.h) -------------------------------------- */

static const st_map *file_of(const eng_st_file *f, const eng_tensor *t)
{
    for (size_t i = 0; i < f->n_maps; i++)
        if (f->maps[i].path == t->file)
            return &f->maps[i];
    return NULL;
}

/* The map that holds t's bytes; NULL for a tensor copied at open. */
static const st_map *map_of(const eng_st_file *f, const eng_tensor *t)
{
    const st_map *mp = file_of(f, t);
    const char *b = mp != NULL ? mp->base : NULL, *d = t->data;
    if (b == NULL || d < b || d + t->size > b + mp->size)
        return NULL;
    return mp;
}

static int check_map(const st_map *mp, char *err, size_t errlen)
{
    struct stat st;
    int rc;

    if (fstat(mp->fd, &st) < 0) {
        rc = -errno;
        kn_errf(err, errlen, "%s: fstat: %s", mp->path, strerror(-rc));
        return rc;
    }
    if (st.st_dev != mp->id.st_dev || st.st_ino != mp->id.st_ino ||
        st.st_size != mp->id.st_size || st.st_mtim.tv_sec != mp->id.st_mtim.tv_sec ||
        st.st_mtim.tv_nsec != mp->id.st_mtim.tv_nsec) {
        kn_errf(err, errlen, "%s: changed on disk since load (%lld bytes then, %lld now); "
                "reload the model", mp->path, (long long)mp->id.st_size, (long long)st.st_size);
        return -ESTALE;
    }
    return 0;
}

int eng__st_check(const eng_st_file *f, const eng_tensor *t, char *err, size_t errlen)
{
    const st_map *mp = file_of(f, t);
    return mp != NULL && mp->fd >= 0 ? check_map(mp, err, errlen) : 0;
}

int eng__st_check_all(const eng_st_file *f, char *err, size_t errlen)
{
    int rc;
    for (size_t i = 0; i < f->n_maps; i++)
        if (f->maps[i].fd >= 0 && (rc = check_map(&f->maps[i], err, errlen)) < 0)
            return rc;
    return 0;
}

/* madvise is advice: when it fails the pages stay resident and nothing
 * else changes, so its result is deliberately not an error. */
static void drop_pages(const void *p, size_t len)
{
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), b = ((uintptr_t)p + len) & ~(pg - 1);
    if (b > a)
        (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

void eng__st_release_range(const eng_st_file *f, const eng_tensor *t, size_t off, size_t len)
{
    KN_ASSERT(off <= t->size && len <= t->size - off);
    if (map_of(f, t) != NULL)
        drop_pages((const char *)t->data + off, len);
}

void eng__st_release(const eng_st_file *f, const eng_tensor *t)
{
    eng__st_release_range(f, t, 0, t->size);
}

void eng__st_release_all(const eng_st_file *f)
{
    for (size_t i = 0; i < f->n_maps; i++)
        if (f->maps[i].base != NULL)
            drop_pages(f->maps[i].base, f->maps[i].size);
}

int eng__st_read(const eng_st_file *f, const eng_tensor *t, size_t off, void *dst, size_t len,
                 char *err, size_t errlen)
{
    const st_map *mp = map_of(f, t);
    size_t done = 0;
    off_t pos;
    int rc;

    KN_ASSERT(off <= t->size && len <= t->size - off);
    if (mp == NULL || mp->fd < 0) {          /* an aligned copy made at open */
        memcpy(dst, (const char *)t->data + off, len);
        return 0;
    }
    if ((rc = check_map(mp, err, errlen)) < 0)
        return rc;
    pos = (off_t)((const char *)t->data - (const char *)mp->base) + (off_t)off;
    while (done < len) {
        ssize_t n = pread(mp->fd, (char *)dst + done, len - done, pos + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            kn_errf(err, errlen, "%s: tensor \"%s\": read of %zu bytes at %lld: %s", mp->path,
                    t->name, len, (long long)pos, n < 0 ? strerror(-rc)
                                                        : "end of file (truncated since load?)");
            return rc;
        }
        done += (size_t)n;
    }
    return 0;
}
