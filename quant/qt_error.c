/* qt_error.c: messages of quant/'s error codes (-2000 range) and the
 * case-insensitive string <-> enum tables every config parser uses. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "quant/quant-int.h"

const char *qt_strerror(int rc)
{
    switch (rc) {
#define QT_ERR_CASE_(name, val, msg) case (val): return (msg);
        QT_ERROR_LIST(QT_ERR_CASE_)
#undef QT_ERR_CASE_
    default:
        return kn_strerror(rc);
    }
}

int qt__enum_lookup(const qt__enum_name *tab, const char *s)
{
    for (; tab->name != NULL; tab++)
        if (strcasecmp(tab->name, s) == 0)
            return tab->value;
    return -1;
}

const char *qt__enum_label(const qt__enum_name *tab, int value)
{
    for (; tab->name != NULL; tab++)
        if (tab->value == value)
            return tab->name;
    return NULL;
}

void qt__enum_list(const qt__enum_name *tab, char *buf, size_t buf_size)
{
    size_t used = 0;

    if (buf_size == 0)
        return;
    buf[0] = '\0';
    for (const qt__enum_name *t = tab; t->name != NULL && used < buf_size; t++) {
        int k = snprintf(buf + used, buf_size - used, "%s%s", t == tab ? "" : ", ", t->name);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}
