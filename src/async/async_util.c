/* async_util.c - helpers shared by jobs.c and outbox.c (async_int.h). */
#include "keel_int.h"

#include <stdio.h>
#include <unistd.h>

#include "async_int.h"

keel_err keel__async_json_text(const json_t *v, size_t max, char **out)
{
    *out = NULL;
    json_t *null_v = NULL;
    if (v == NULL) {
        null_v = json_null();
        v = null_v;
    }
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    size_t n = json_dumpb(v, NULL, 0, flags);
    keel_err e = KEEL_OK;
    if (n == 0)
        e = KEEL_EINVAL; /* unserialisable (NaN, invalid UTF-8 ...) */
    else if (n > max)
        e = KEEL_ETOOBIG;
    char *buf = e == KEEL_OK ? keel_malloc(n + 1) : NULL;
    if (e == KEEL_OK && buf == NULL)
        e = KEEL_ENOMEM;
    if (e == KEEL_OK && json_dumpb(v, buf, n, flags) != n)
        e = KEEL_EINTERNAL;
    json_decref(null_v);
    if (e != KEEL_OK) {
        keel_free(buf);
        return e;
    }
    buf[n] = '\0';
    *out = buf;
    return KEEL_OK;
}

int64_t keel__async_ms(uint64_t ms)
{
    const uint64_t cap = UINT64_C(1) << 52;
    return (int64_t)(ms > cap ? cap : ms);
}

keel_err keel__async_owner(char **out)
{
    char host[128];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    unsigned char r[4];
    keel_err e = keel_random_bytes(r, sizeof(r));
    if (e != KEEL_OK)
        return e;
    char hex[2 * sizeof(r) + 1];
    keel__hex_encode(r, sizeof(r), hex);
    char buf[200];
    snprintf(buf, sizeof(buf), "%.120s:%ld:%s", host, (long)getpid(), hex);
    *out = keel_strdup(buf);
    return *out == NULL ? KEEL_ENOMEM : KEEL_OK;
}

keel_err keel__bind_prepare(keel_db *db, const char *sql, keel__binder *b, keel_diag *diag)
{
    b->st = NULL;
    b->idx = 0;
    b->err = keel_db_prepare(db, sql, &b->st, diag);
    return b->err;
}

void keel__bind_text(keel__binder *b, const char *s)
{
    if (b->err != KEEL_OK)
        return;
    b->idx++;
    b->err = s == NULL ? keel_stmt_bind_null(b->st, b->idx)
                       : keel_stmt_bind_text(b->st, b->idx, s, SIZE_MAX);
}

void keel__bind_int(keel__binder *b, int64_t v)
{
    if (b->err != KEEL_OK)
        return;
    b->idx++;
    b->err = keel_stmt_bind_int64(b->st, b->idx, v);
}

keel_err keel__bind_run(keel__binder *b, int64_t *changes, keel_diag *diag)
{
    if (b->err != KEEL_OK)
        return b->err;
    int rc = keel_stmt_step(b->st, diag);
    if (rc < 0)
        return (keel_err)rc;
    if (changes != NULL)
        *changes = keel_stmt_changes(b->st);
    return KEEL_OK;
}
