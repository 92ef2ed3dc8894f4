/* err.c - error names and messages, generated from KEEL_ERR_MAP. */
#include "keel_int.h"

#include <stdarg.h>
#include <stdio.h>

const char *keel_strerror(int err)
{
    switch (err) {
    case KEEL_OK:
        return "success";
#define X(name, value, msg)                                                                        \
    case KEEL_E##name:                                                                             \
        return msg;
        KEEL_ERR_MAP(X)
#undef X
    default:
        return "unknown error";
    }
}

const char *keel_err_name(int err)
{
    switch (err) {
    case KEEL_OK:
        return "KEEL_OK";
#define X(name, value, msg)                                                                        \
    case KEEL_E##name:                                                                             \
        return "KEEL_E" #name;
        KEEL_ERR_MAP(X)
#undef X
    default:
        return "KEEL_E?";
    }
}

keel_err keel_diag_set(keel_diag *d, keel_err code, size_t offset, const char *fmt, ...)
{
    if (d != NULL) {
        va_list ap;
        d->code = code;
        d->offset = offset;
        va_start(ap, fmt);
        vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *keel_version(void)
{
    return KEEL_VERSION_STRING;
}

unsigned keel_version_hex(void)
{
    return KEEL_VERSION_HEX;
}

keel_str keel_str_c(const char *s)
{
    keel_str r = {s, s ? strlen(s) : 0};
    if (s == NULL)
        r.ptr = "";
    return r;
}

int keel_str_eq(keel_str a, keel_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

int keel_str_ieq(keel_str a, keel_str b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char)a.ptr[i], y = (unsigned char)b.ptr[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return 0;
    }
    return 1;
}
