/* sessions.c - the login sessions repository: each function is one bound statement. */
#include "sessions.h"

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

#define COLUMNS                                                                                  \
    "id, user_id, refresh_token_hash, previous_token_hash, rotations, device_fingerprint, "     \
    "ip_address, created_at_ms, last_used_at_ms, expires_at_ms, revoked_at_ms, revoke_reason"

keel_err sessions_create(keel_db *db, const session *s, keel_diag *diag)
{
    keel_stmt *st;
    keel_err e;
    if ((e = keel_db_prepare(db,
                             "INSERT INTO sessions (" COLUMNS ") VALUES (?, ?, ?, NULL, 0, ?, ?, "
                             "?, ?, ?, NULL, NULL)",
                             &st, diag)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 1, s->id, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 2, s->user_id, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 3, s->refresh_token_hash, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 4, s->device_fingerprint, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 5, s->ip_address, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 6, s->created_at_ms)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 7, s->last_used_at_ms)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 8, s->expires_at_ms)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    return r < 0 ? (keel_err)r : KEEL_OK;
}

keel_err sessions_get(keel_db *db, const char *id, session *out, keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, "SELECT " COLUMNS " FROM sessions WHERE id = ?", &st, diag);
    if (e != KEEL_OK || (e = keel_stmt_bind_text(st, 1, id, SIZE_MAX)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    if (r < 0)
        return (keel_err)r;
    if (r == 0)
        return KEEL_ENOTFOUND;
    copy_text(st, 0, out->id, sizeof(out->id));
    copy_text(st, 1, out->user_id, sizeof(out->user_id));
    copy_text(st, 2, out->refresh_token_hash, sizeof(out->refresh_token_hash));
    copy_text(st, 3, out->previous_token_hash, sizeof(out->previous_token_hash));
    out->rotations = keel_stmt_int64(st, 4);
    copy_text(st, 5, out->device_fingerprint, sizeof(out->device_fingerprint));
    copy_text(st, 6, out->ip_address, sizeof(out->ip_address));
    out->created_at_ms = keel_stmt_int64(st, 7);
    out->last_used_at_ms = keel_stmt_int64(st, 8);
    out->expires_at_ms = keel_stmt_int64(st, 9);
    out->revoked_at_ms = keel_stmt_is_null(st, 10) ? 0 : keel_stmt_int64(st, 10);
    copy_text(st, 11, out->revoke_reason, sizeof(out->revoke_reason));
    return KEEL_OK;
}

keel_err sessions_rotate(keel_db *db, const char *id, const char *old_hash, const char *new_hash,
                         int64_t now_ms, keel_diag *diag)
{
    keel_stmt *st;
    keel_err e;
    if ((e = keel_db_prepare(db,
                             "UPDATE sessions SET previous_token_hash = refresh_token_hash, "
                             "refresh_token_hash = ?, rotations = rotations + 1, "
                             "last_used_at_ms = ? WHERE id = ? AND refresh_token_hash = ? AND "
                             "revoked_at_ms IS NULL AND expires_at_ms > ?",
                             &st, diag)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 1, new_hash, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 2, now_ms)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 3, id, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 4, old_hash, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 5, now_ms)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    if (r < 0)
        return (keel_err)r;
    return keel_stmt_changes(st) > 0 ? KEEL_OK : KEEL_ESTATE;
}

keel_err sessions_revoke(keel_db *db, const char *id, const char *reason, int64_t now_ms,
                         keel_diag *diag)
{
    keel_stmt *st;
    keel_err e;
    if ((e = keel_db_prepare(db,
                             "UPDATE sessions SET revoked_at_ms = ?, revoke_reason = ? "
                             "WHERE id = ? AND revoked_at_ms IS NULL",
                             &st, diag)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 1, now_ms)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 2, reason, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 3, id, SIZE_MAX)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    if (r < 0)
        return (keel_err)r;
    return keel_stmt_changes(st) > 0 ? KEEL_OK : KEEL_ENOTFOUND;
}

keel_err sessions_check(keel_db *db, const char *id, const char *user_id, int64_t now_ms,
                        keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db,
                                 "SELECT user_id, expires_at_ms, revoked_at_ms FROM sessions "
                                 "WHERE id = ?",
                                 &st, diag);
    if (e != KEEL_OK || (e = keel_stmt_bind_text(st, 1, id, SIZE_MAX)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    if (r < 0)
        return (keel_err)r;
    if (r == 0)
        return KEEL_EDENIED;
    size_t n = 0;
    const char *owner = keel_stmt_text(st, 0, &n);
    if (owner == NULL || user_id == NULL || n != strlen(user_id) || memcmp(owner, user_id, n) != 0)
        return KEEL_EDENIED;
    if (!keel_stmt_is_null(st, 2) || keel_stmt_int64(st, 1) <= now_ms)
        return KEEL_EDENIED;
    return KEEL_OK;
}

keel_err sessions_count_active(keel_db *db, const char *user_id, int64_t now_ms, int64_t *n,
                               keel_diag *diag)
{
    keel_stmt *st;
    *n = 0;
    keel_err e = keel_db_prepare(db,
                                 "SELECT COUNT(*) FROM sessions WHERE user_id = ? AND "
                                 "revoked_at_ms IS NULL AND expires_at_ms > ?",
                                 &st, diag);
    if (e != KEEL_OK || (e = keel_stmt_bind_text(st, 1, user_id, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 2, now_ms)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    if (r < 0)
        return (keel_err)r;
    if (r == 1)
        *n = keel_stmt_int64(st, 0);
    return KEEL_OK;
}
