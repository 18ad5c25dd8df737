/* st_write.h: a safetensors writer (model-formats.md §1.5), internal to
 * engine/ (the FP8 export).  Tensors are collected, then written as one
 * file: __metadata__ with "format": "pt" plus the caller's strings,
 * tensors sorted by (element size desc, name) and contiguous, header
 * padded with spaces to a multiple of 8; written to a temporary file in
 * the same folder and renamed, so readers never see half a file.
 * Ownership: data added is borrowed until eng_stw_write returns.
 * Thread: one caller per writer. */
#ifndef FP8D_ENGINE_ST_WRITE_H
#define FP8D_ENGINE_ST_WRITE_H

#include "engine/engine.h"

typedef struct eng_stw eng_stw;

eng_stw *eng_stw_new(void);                  /* NULL when out of memory */
void     eng_stw_free(eng_stw *w);           /* NULL ok */
/* Adds a tensor (name copied, data borrowed; size must equal the shape's
 * element count times the dtype size).  -EEXIST for a name added twice,
 * -EINVAL for a bad shape/size, -ENOMEM. */
int eng_stw_add(eng_stw *w, const char *name, eng_dtype dt, int n_dims, const int64_t *shape,
                const void *data, size_t size);
/* A string entry of __metadata__ ("format" is always "pt"). */
int eng_stw_meta(eng_stw *w, const char *key, const char *value);
/* Writes the file; -errno naming path. */
int eng_stw_write(eng_stw *w, const char *path, char *err, size_t errlen);

#endif
