/* users.c - the users repository: each function is one bound statement. */
#include "users.h"

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

#define COLUMNS "id, email, name, password_hash, roles, created_at_ms, updated_at_ms"

static void read_row(const keel_stmt *st, user *u)
{
    copy_text(st, 0, u->id, sizeof(u->id));
    copy_text(st, 1, u->email, sizeof(u->email));
    copy_text(st, 2, u->name, sizeof(u->name));
    copy_text(st, 3, u->password_hash, sizeof(u->password_hash));
    copy_text(st, 4, u->roles, sizeof(u->roles));
    u->created_at_ms = keel_stmt_int64(st, 5);
    u->updated_at_ms = keel_stmt_int64(st, 6);
}

static keel_err get_one(keel_db *db, const char *sql, const char *arg, user *out,
                        keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, sql, &st, diag);
    if (e != KEEL_OK || (e = keel_stmt_bind_text(st, 1, arg, SIZE_MAX)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    if (r < 0)
        return (keel_err)r;
    if (r == 0)
        return KEEL_ENOTFOUND;
    read_row(st, out);
    return KEEL_OK;
}

keel_err users_get_by_email(keel_db *db, const char *email, user *out, keel_diag *diag)
{
    return get_one(db, "SELECT " COLUMNS " FROM users WHERE email = ?", email, out, diag);
}

keel_err users_get(keel_db *db, const char *id, user *out, keel_diag *diag)
{
    return get_one(db, "SELECT " COLUMNS " FROM users WHERE id = ?", id, out, diag);
}

keel_err users_create(keel_db *db, user *u, keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_uuid4(u->id);
    if (e != KEEL_OK)
        return e;
    if (u->roles[0] == '\0')
        snprintf(u->roles, sizeof(u->roles), "[\"user\"]");
    u->created_at_ms = u->updated_at_ms = keel_time_wall_ms();
    if ((e = keel_db_prepare(db, "INSERT INTO users (" COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?)",
                             &st, diag)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 1, u->id, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 2, u->email, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 3, u->name, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 4, u->password_hash, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 5, u->roles, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 6, u->created_at_ms)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 7, u->updated_at_ms)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    return r < 0 ? (keel_err)r : KEEL_OK;
}

static keel_err set_text(keel_db *db, const char *sql, const char *id, const char *v,
                         keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, sql, &st, diag);
    if (e != KEEL_OK || (e = keel_stmt_bind_text(st, 1, v, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 2, keel_time_wall_ms())) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 3, id, SIZE_MAX)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    if (r < 0)
        return (keel_err)r;
    return keel_stmt_changes(st) > 0 ? KEEL_OK : KEEL_ENOTFOUND;
}

keel_err users_set_password_hash(keel_db *db, const char *id, const char *phc, keel_diag *diag)
{
    return set_text(db, "UPDATE users SET password_hash = ?, updated_at_ms = ? WHERE id = ?", id,
                    phc, diag);
}

keel_err users_set_roles(keel_db *db, const char *id, const char *roles_json, keel_diag *diag)
{
    return set_text(db, "UPDATE users SET roles = ?, updated_at_ms = ? WHERE id = ?", id,
                    roles_json, diag);
}

keel_err users_list(keel_db *db, int64_t skip, size_t cap, user *out, size_t *n,
                    keel_diag *diag)
{
    keel_stmt *st;
    *n = 0;
    keel_err e = keel_db_prepare(
        db, "SELECT " COLUMNS " FROM users ORDER BY created_at_ms, id LIMIT ? OFFSET ?", &st,
        diag);
    if (e != KEEL_OK || (e = keel_stmt_bind_int64(st, 1, (int64_t)cap)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 2, skip)) != KEEL_OK)
        return e;
    int r = 0;
    while (*n < cap && (r = keel_stmt_step(st, diag)) == 1)
        read_row(st, &out[(*n)++]);
    return r < 0 ? (keel_err)r : KEEL_OK;
}
