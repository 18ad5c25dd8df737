/* quant-int.h: helpers shared by the files of quant/ only (never included
 * from outside quant/).  Log macro, case-insensitive lookup tables. */
#ifndef FP8D_QUANT_INT_H
#define FP8D_QUANT_INT_H

#include "quant/quant.h"

#define QT_LOG(lvl, ...) \
    do { if (kn_log_enabled(lvl)) kn_log((lvl), "quant", __VA_ARGS__); } while (0)

/* One row of a string -> enum table; tables end with name == NULL. */
typedef struct qt__enum_name {
    const char *name;
    int         value;
} qt__enum_name;

/* Case-insensitive lookup; -1 if s is not in the table. */
int qt__enum_lookup(const qt__enum_name *tab, const char *s);
/* The name of value, or NULL. */
const char *qt__enum_label(const qt__enum_name *tab, int value);
/* "a, b, c" list of a table's names into buf (for error messages). */
void qt__enum_list(const qt__enum_name *tab, char *buf, size_t buf_size);

/* Per-module slot counts (qt_module.c), used by qt_measure_io.c. */
int qt__module_n_tensors(const qt_module *m, qt_slot slot);
/* The observed values of a slot: the per-channel maxima (n = n_ch), or
 * the maxabs written to *scalar (n = 1); NULL when not observed. */
const float *qt__module_measured_vec(const qt_module *m, qt_slot slot, int idx, size_t *n,
                                     float *scalar);
/* Replaces the measurement of a slot (from a file); vals[n]. */
int qt__module_set_measured(qt_module *m, qt_slot slot, int idx, const float *vals, size_t n,
                            char *err, size_t errlen);
bool qt__module_per_channel(const qt_module *m);
/* Expected channel count of a slot for the per-channel observer (1 with
 * maxabs; 0 when unknown, i.e. any count accepted). */
size_t qt__module_expected_len(const qt_module *m, qt_slot slot, int idx);
bool qt__module_measures_output(const qt_module *m);

/* Reads a whole file (at most max_len bytes, else -EFBIG) into a
 * malloc'd NUL-terminated buffer (qt_file.c). */
int qt__read_file(const char *path, size_t max_len, char **out, size_t *len,
                  char *err, size_t errlen);
/* Writes data[len] to path atomically: temp file in the same folder,
 * fsync, rename, fsync of the folder.  Creates the folder (last level)
 * when missing. */
int qt__write_file_atomic(const char *path, const char *data, size_t len,
                          char *err, size_t errlen);

/* An allowlist or blocklist (qt_select.c): compiled name regexes and the
 * types listed (a bit per qt_mod_type; INC types we do not have are
 * counted in n_types but set no bit). */
typedef struct qt__filter {
    char   **patterns;   /* [n_names] copies */
    void    *regexes;    /* regex_t[n_names] */
    size_t   n_names;
    unsigned type_bits;  /* 1u << qt_mod_type */
    size_t   n_types;
} qt__filter;

void qt__filter_cleanup(qt__filter *f);
/* Compiles pattern as POSIX ERE; an invalid one is QT_E_CONFIG naming
 * what (e.g. "blocklist.names[2]") and the regerror text. */
int  qt__filter_add_name(qt__filter *f, const char *pattern, const char *what,
                         char *err, size_t errlen);
/* A type name of INC's (ours set a bit); QT_E_CONFIG for names INC does
 * not define. */
int  qt__filter_add_type(qt__filter *f, const char *type, const char *what,
                         char *err, size_t errlen);
bool qt__filter_name_matches(const qt__filter *f, const char *name);
/* Selection rule of §4.3 (main). */
bool qt__select(const qt__filter *allow, const qt__filter *block, const char *name,
                qt_mod_type t);

#endif
