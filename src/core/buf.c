/* buf.c - growable byte buffer with a hard cap (the curl dynbuf idea). */
#include "keel_int.h"

#include <stdarg.h>
#include <stdio.h>

void keel_buf_init(keel_buf *b, size_t max)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static keel_err buf_reserve(keel_buf *b, size_t extra)
{
    if (extra > b->max - b->len || b->len > b->max)
        return KEEL_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return KEEL_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = keel_realloc(b->ptr, cap);
    if (p == NULL)
        return KEEL_ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return KEEL_OK;
}

keel_err keel_buf_append(keel_buf *b, const void *p, size_t n)
{
    keel_err e = buf_reserve(b, n);
    if (e != KEEL_OK)
        return e;
    if (n)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return KEEL_OK;
}

keel_err keel_buf_append_str(keel_buf *b, const char *s)
{
    return keel_buf_append(b, s, strlen(s));
}

keel_err keel_buf_append_char(keel_buf *b, char c)
{
    return keel_buf_append(b, &c, 1);
}

keel_err keel_buf_vappendf(keel_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    keel_err e;
    if (n < 0) {
        e = KEEL_EINVAL;
    } else if ((size_t)n < sizeof(small)) {
        e = keel_buf_append(b, small, (size_t)n);
    } else if ((e = buf_reserve(b, (size_t)n)) == KEEL_OK) {
        vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
    return e;
}

keel_err keel_buf_appendf(keel_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    keel_err e = keel_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return e;
}

void keel_buf_reset(keel_buf *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = '\0';
}

void keel_buf_cleanup(keel_buf *b)
{
    keel_free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

char *keel_buf_take(keel_buf *b, size_t *len)
{
    char *p = b->ptr;
    if (p == NULL) {
        p = keel_malloc(1);
        if (p == NULL)
            return NULL;
        p[0] = '\0';
    }
    if (len)
        *len = b->len;
    b->ptr = NULL;
    b->len = b->cap = 0;
    return p;
}
