/* fuzz_qt_measure.c: qt_measure_parse (INC's measurement / scale JSON) on
 * arbitrary bytes.  An accepted file must hold, as quant.h promises, only
 * finite non-negative numbers: every element of every slot of every node
 * is read back through qt_measure_value and checked. */
#include "config.h"

#include "quant/quant.h"
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDX 8       /* tensors per slot looked at (SDPA has 3 inputs) */

static void check_node(const qt_measure *m, const char *node)
{
    for (int slot = QT_SLOT_INPUT; slot <= QT_SLOT_OUTPUT; slot++)
        for (int idx = 0; idx < MAX_IDX; idx++) {
            size_t n = 0;
            float v = qt_measure_value(m, node, (qt_slot)slot, idx, 0, &n);
            FUZZ_CHECK(n == 0 ? isnan(v) : 1, "node \"%s\" slot %d[%d]: %g with no elements",
                       node, slot, idx, (double)v);
            for (size_t j = 0; j < n; j++) {
                v = qt_measure_value(m, node, (qt_slot)slot, idx, j, NULL);
                FUZZ_CHECK(isfinite(v) && v >= 0, "node \"%s\" slot %d[%d][%zu] = %g", node,
                           slot, idx, j, (double)v);
            }
            FUZZ_CHECK(isnan(qt_measure_value(m, node, (qt_slot)slot, idx, n, NULL)),
                       "node \"%s\" slot %d[%d]: element %zu past the end is not NAN", node,
                       slot, idx, n);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size), err[512] = "";
    qt_measure *m = NULL;
    int rc = qt_measure_parse(&m, text, "measure.json", err, sizeof(err));

    FUZZ_CHECK((rc == 0) == (m != NULL), "rc %d with measure %p", rc, (void *)m);
    if (rc == 0) {
        bool is_null;
        const char *mode = qt_measure_mode(m);
        FUZZ_CHECK(mode != NULL && (strcmp(mode, "DynamicRange") == 0 ||
                                    strcmp(mode, "Scale") == 0), "Mode \"%s\"",
                   mode != NULL ? mode : "(null)");
        (void)qt_measure_local_rank(m, &is_null);
        for (size_t i = 0; i < qt_measure_count(m); i++) {
            const char *node = qt_measure_node_name(m, i);
            FUZZ_CHECK(node != NULL, "node %zu has no name", i);
            check_node(m, node);
        }
    } else {
        FUZZ_CHECK(rc == -ENOMEM || err[0] != '\0', "rc %d with an empty error message", rc);
    }
    qt_measure_free(m);
    free(text);
    return 0;
}
