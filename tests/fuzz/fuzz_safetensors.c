/* fuzz_safetensors.c: eng_st_open on arbitrary bytes (the input is the
 * whole .safetensors file, through a memfd).  On success the promises of
 * engine/engine.h must hold: tensors sorted by name and found by name,
 * size = n_elem x element size = product of the shape, data aligned to the
 * element size, and the data buffer exactly covered (no hole, no overlap).
 * Every byte of every tensor is read, so a pointer past the mapping
 * faults. */
#include "config.h"

#include "engine/engine.h"
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static void check_tensor(const eng_st_file *f, const eng_tensor *t, size_t i)
{
    uint64_t n = 1;
    unsigned sum = 0;
    const unsigned char *d = t->data;

    FUZZ_CHECK(t->name != NULL && t->name[0] != '\0', "tensor %zu has no name", i);
    FUZZ_CHECK(eng_st_find(f, t->name) == t, "eng_st_find(\"%s\") misses it", t->name);
    if (i > 0)
        FUZZ_CHECK(strcmp(eng_st_at(f, i - 1)->name, t->name) < 0, "not sorted at %zu", i);
    FUZZ_CHECK(t->dtype >= 0 && t->dtype < ENG_DT_COUNT, "dtype %d", (int)t->dtype);
    FUZZ_CHECK(t->n_dims >= 0 && t->n_dims <= ENG_MAX_DIMS, "n_dims %d", t->n_dims);
    for (int k = 0; k < t->n_dims; k++) {
        FUZZ_CHECK(t->shape[k] >= 0, "\"%s\" shape[%d] = %lld", t->name, k,
                   (long long)t->shape[k]);
        n *= (uint64_t)t->shape[k];
    }
    FUZZ_CHECK(n == t->n_elem, "\"%s\": n_elem %zu, shape says %llu", t->name, t->n_elem,
               (unsigned long long)n);
    FUZZ_CHECK(t->size == t->n_elem * eng_dtype_size(t->dtype), "\"%s\": size %zu", t->name,
               t->size);
    FUZZ_CHECK(t->size == 0 || (uintptr_t)d % eng_dtype_size(t->dtype) == 0,
               "\"%s\": data not aligned to %zu", t->name, eng_dtype_size(t->dtype));
    for (size_t k = 0; k < t->size; k++)
        sum += d[k];
    /* The sum only keeps the loads from being optimized away. */
    __asm__ volatile("" : : "r"(sum));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512] = "";
    eng_st_file *f = NULL;
    int fd = fuzz_memfd(data, size, path, sizeof(path));
    int rc = eng_st_open(&f, path, err, sizeof(err));

    close(fd);
    FUZZ_CHECK((rc == 0) == (f != NULL), "rc %d with f %p", rc, (void *)f);
    if (rc < 0) {
        FUZZ_CHECK(rc == -ENOMEM || err[0] != '\0', "rc %d with an empty error message", rc);
        return 0;
    }
    size_t total = 0, hdr = 0;
    for (int i = 7; i >= 0; i--)
        hdr = (hdr << 8) | data[i];
    for (size_t i = 0; i < eng_st_count(f); i++) {
        check_tensor(f, eng_st_at(f, i), i);
        total += eng_st_at(f, i)->size;
    }
    FUZZ_CHECK(total == size - 8 - hdr, "tensors cover %zu of %zu data bytes", total,
               size - 8 - hdr);
    FUZZ_CHECK(eng_st_at(f, eng_st_count(f)) == NULL, "eng_st_at past the end");
    eng_st_close(f);
    return 0;
}
