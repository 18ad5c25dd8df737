/* stop.c: stop-string search on generated text (kept apart from
 * generate.c so it can be used and tested without a tokenizer). */
#include "config.h"

#include <string.h>

#include "engine/engine-int.h"

long eng_stop_find(const char *text, size_t len, const char *const *stop, size_t n_stop)
{
    long best = -1;
    for (size_t i = 0; i < n_stop; i++) {
        size_t sl = stop[i] ? strlen(stop[i]) : 0;
        if (sl == 0 || sl > len)
            continue;
        const char *hit = memmem(text, len, stop[i], sl);
        if (hit != NULL && (best < 0 || hit - text < best))
            best = hit - text;
    }
    return best;
}
