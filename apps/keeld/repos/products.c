/* products.c - the products repository: each function is one bound statement. */
#include "products.h"

#include <stdio.h>
#include <string.h>

static void copy_text(const keel_stmt *st, int col, char *out, size_t cap)
{
    size_t n = 0;
    const char *t = keel_stmt_text(st, col, &n);
    if (t == NULL)
        n = 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(out, t, n);
    out[n] = '\0';
}

static void read_row(const keel_stmt *st, product *p)
{
    copy_text(st, 0, p->id, sizeof(p->id));
    copy_text(st, 1, p->name, sizeof(p->name));
    p->price_minor = keel_stmt_int64(st, 2);
    copy_text(st, 3, p->currency, sizeof(p->currency));
    p->created_at_ms = keel_stmt_int64(st, 4);
}

#define COLUMNS "id, name, price_minor, currency, created_at_ms"

keel_err products_get(keel_db *db, const char *id, product *out, keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, "SELECT " COLUMNS " FROM products WHERE id = ?", &st, diag);
    if (e != KEEL_OK || (e = keel_stmt_bind_text(st, 1, id, SIZE_MAX)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    if (r < 0)
        return (keel_err)r;
    if (r == 0)
        return KEEL_ENOTFOUND;
    read_row(st, out);
    return KEEL_OK;
}

keel_err products_list(keel_db *db, int64_t skip, int64_t limit, product *out, size_t *n,
                       keel_diag *diag)
{
    keel_stmt *st;
    *n = 0;
    keel_err e = keel_db_prepare(
        db, "SELECT " COLUMNS " FROM products ORDER BY created_at_ms, id LIMIT ? OFFSET ?", &st,
        diag);
    if (e != KEEL_OK || (e = keel_stmt_bind_int64(st, 1, limit)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 2, skip)) != KEEL_OK)
        return e;
    int r;
    while ((r = keel_stmt_step(st, diag)) == 1 && *n < (size_t)limit)
        read_row(st, &out[(*n)++]);
    return r < 0 ? (keel_err)r : KEEL_OK;
}

keel_err products_create(keel_db *db, product *p, keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_uuid4(p->id);
    if (e != KEEL_OK)
        return e;
    p->created_at_ms = keel_time_wall_ms();
    if ((e = keel_db_prepare(db,
                             "INSERT INTO products (" COLUMNS ") VALUES (?, ?, ?, ?, ?)", &st,
                             diag)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 1, p->id, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 2, p->name, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 3, p->price_minor)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 4, p->currency, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 5, p->created_at_ms)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    return r < 0 ? (keel_err)r : KEEL_OK;
}

keel_err products_delete(keel_db *db, const char *id, keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, "DELETE FROM products WHERE id = ?", &st, diag);
    if (e != KEEL_OK || (e = keel_stmt_bind_text(st, 1, id, SIZE_MAX)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    if (r < 0)
        return (keel_err)r;
    return keel_stmt_changes(st) > 0 ? KEEL_OK : KEEL_ENOTFOUND;
}
