/* tok_utf8.c: UTF-8 validation and lossy repair, a growable byte buffer,
 * and GPT-2's byte <-> stand-in character table (model-formats.md 4.7). */
#include "config.h"

#include "engine/tok-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int eng__buf_put(tok_buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

void eng__buf_cleanup(tok_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Scans one character.  Returns the number of bytes consumed: the whole
 * character when *ok, else the length of the maximal invalid subpart
 * (Unicode 3.9 "best practice", at least 1), which is what one U+FFFD
 * replaces in Rust's from_utf8_lossy. */
static size_t utf8_scan(const uint8_t *s, size_t n, uint32_t *cp, bool *ok)
{
    uint8_t b0 = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;    /* allowed range of the second byte */
    uint32_t c;

    *ok = false;
    if (b0 < 0x80) {
        *cp = b0;
        *ok = true;
        return 1;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1; c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2; c = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;          /* no overlongs */
        if (b0 == 0xED) hi = 0x9F;          /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3; c = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;          /* <= U+10FFFF */
    } else {
        return 1;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n)
            return i;
        uint8_t b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
            return i;
        c = (c << 6) | (b & 0x3F);
    }
    *cp = c;
    *ok = true;
    return need + 1;
}

size_t eng__utf8_next(const char *s, size_t n, uint32_t *cp)
{
    bool ok;
    size_t k;

    if (n == 0)
        return 0;
    k = utf8_scan((const uint8_t *)s, n, cp, &ok);
    return ok ? k : 0;
}

bool eng__utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    uint32_t cp;

    while (i < n) {
        size_t k = eng__utf8_next(s + i, n - i, &cp);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

size_t eng__utf8_put(char *dst, uint32_t cp)
{
    uint8_t *d = (uint8_t *)dst;
    if (cp < 0x80) {
        d[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (uint8_t)(0xC0 | (cp >> 6));
        d[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (uint8_t)(0xE0 | (cp >> 12));
        d[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (uint8_t)(0xF0 | (cp >> 18));
    d[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

int eng__utf8_lossy(tok_buf *out, const char *s, size_t n)
{
    static const char fffd[] = "\xEF\xBF\xBD";
    size_t i = 0, run = 0;    /* s[run..i) is valid and not yet copied */
    int rc;

    while (i < n) {
        uint32_t cp;
        bool ok;
        size_t k = utf8_scan((const uint8_t *)s + i, n - i, &cp, &ok);
        if (ok) {
            i += k;
            continue;
        }
        if ((rc = eng__buf_put(out, s + run, i - run)) < 0 ||
            (rc = eng__buf_put(out, fffd, 3)) < 0)
            return rc;
        i += k;
        run = i;
    }
    return eng__buf_put(out, s + run, n - run);
}

/* bytes_to_unicode: printable bytes stand for themselves; the other 68,
 * in increasing order, take U+0100, U+0101, ... */
static bool byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t eng__byte_to_cp(uint8_t b)
{
    unsigned k = 0;

    if (byte_is_printable(b))
        return b;
    for (unsigned x = 0; x < b; x++)
        k += !byte_is_printable(x);
    return 0x100 + k;
}

int eng__cp_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return byte_is_printable(cp) ? (int)cp : -1;
    if (cp > 0x143)
        return -1;
    unsigned k = cp - 0x100;
    for (unsigned b = 0; b < 256; b++) {
        if (byte_is_printable(b))
            continue;
        if (k-- == 0)
            return (int)b;
    }
    return -1;
}
