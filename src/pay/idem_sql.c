/* idem_sql.c - the idempotency store on keel_store (SQLite or PostgreSQL).
 *
 * One table, keel_idempotency_keys, primary key (scope, idem_key).  set_if_absent is a single
 * INSERT ... ON CONFLICT DO UPDATE ... WHERE <existing row expired>: the statement claims the
 * slot when it is free or expired and changes nothing otherwise, atomically on both engines
 * (PostgreSQL makes the second of two concurrent inserts wait for the first to commit, then
 * evaluates the conflict; SQLite serialises writers).  Updates and deletes are guarded by the
 * owner column so a request whose slot was taken over cannot overwrite the new owner. */
#include "keel_int.h"

#include <keel/idempotency.h>

#include "idem_int.h"

static const keel_migration IDEM_MIGRATIONS[] = {
    {1, "idempotency_keys",
     "CREATE TABLE keel_idempotency_keys ("
     " scope TEXT NOT NULL, idem_key TEXT NOT NULL, owner TEXT NOT NULL,"
     " state INTEGER NOT NULL, payload_hash BLOB NOT NULL,"
     " error_code INTEGER NOT NULL DEFAULT 0, result BLOB,"
     " created_at_ms INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL,"
     " PRIMARY KEY (scope, idem_key));"
     "CREATE INDEX keel_idempotency_keys_expires ON keel_idempotency_keys (expires_at_ms);",
     "CREATE TABLE keel_idempotency_keys ("
     " scope TEXT NOT NULL, idem_key TEXT NOT NULL, owner TEXT NOT NULL,"
     " state INTEGER NOT NULL, payload_hash BYTEA NOT NULL,"
     " error_code INTEGER NOT NULL DEFAULT 0, result BYTEA,"
     " created_at_ms BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL,"
     " PRIMARY KEY (scope, idem_key));"
     "CREATE INDEX keel_idempotency_keys_expires ON keel_idempotency_keys (expires_at_ms);"},
};

#define SQL_CLAIM                                                                                  \
    "INSERT INTO keel_idempotency_keys (scope, idem_key, owner, state, payload_hash, "            \
    "error_code, result, created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "        \
    "ON CONFLICT (scope, idem_key) DO UPDATE SET owner = excluded.owner, state = excluded.state, " \
    "payload_hash = excluded.payload_hash, error_code = excluded.error_code, "                    \
    "result = excluded.result, created_at_ms = excluded.created_at_ms, "                          \
    "expires_at_ms = excluded.expires_at_ms WHERE keel_idempotency_keys.expires_at_ms <= ?"
#define SQL_READ                                                                                   \
    "SELECT owner, state, payload_hash, error_code, result, created_at_ms, expires_at_ms "        \
    "FROM keel_idempotency_keys WHERE scope = ? AND idem_key = ?"
#define SQL_UPDATE                                                                                 \
    "UPDATE keel_idempotency_keys SET state = ?, error_code = ?, result = ?, expires_at_ms = ? "  \
    "WHERE scope = ? AND idem_key = ? AND owner = ?"
#define SQL_CLEAR "DELETE FROM keel_idempotency_keys WHERE scope = ? AND idem_key = ? AND owner = ?"
#define SQL_PURGE "DELETE FROM keel_idempotency_keys WHERE expires_at_ms <= ?"

static keel_err bind_result(keel_stmt *st, int idx, const keel_idem_record *rec)
{
    if (rec->result == NULL)
        return keel_stmt_bind_null(st, idx);
    return keel_stmt_bind_blob(st, idx, rec->result, rec->result_len);
}

/* Run a statement that returns no rows; *changes gets the affected row count. */
static keel_err finish(keel_stmt *st, int64_t *changes, keel_diag *diag)
{
    int r;
    while ((r = keel_stmt_step(st, diag)) == 1) {
    }
    if (r < 0)
        return (keel_err)r;
    if (changes != NULL)
        *changes = keel_stmt_changes(st);
    return KEEL_OK;
}

static keel_err read_existing(keel_db *db, keel_str scope, keel_str key, keel_idem_record *out,
                              int *found, keel_diag *diag)
{
    keel_stmt *st;
    keel_err e;
    *found = 0;
    if ((e = keel_db_prepare(db, SQL_READ, &st, diag)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 1, scope.ptr ? scope.ptr : "", scope.len)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 2, key.ptr, key.len)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, diag);
    if (r < 0)
        return (keel_err)r;
    if (r == 0)
        return KEEL_OK;
    keel_idem_record rec;
    memset(&rec, 0, sizeof(rec));
    size_t n = 0;
    const char *owner = keel_stmt_text(st, 0, &n);
    if (owner != NULL && n < sizeof(rec.owner))
        memcpy(rec.owner, owner, n);
    rec.state = (keel_idem_state)keel_stmt_int64(st, 1);
    const void *hash = keel_stmt_blob(st, 2, &n);
    if (hash == NULL || n != sizeof(rec.payload_hash))
        return keel_diag_set(diag, KEEL_EPARSE, 0, "corrupt idempotency record (payload hash)");
    memcpy(rec.payload_hash, hash, n);
    rec.error = (keel_err)keel_stmt_int64(st, 3);
    rec.created_ms = keel_stmt_int64(st, 5);
    rec.expires_ms = keel_stmt_int64(st, 6);
    const void *res = keel_stmt_blob(st, 4, &n);
    if (res != NULL && !keel_stmt_is_null(st, 4)) {
        rec.result = keel_malloc(n + 1);
        if (rec.result == NULL)
            return KEEL_ENOMEM;
        memcpy(rec.result, res, n);
        rec.result[n] = '\0';
        rec.result_len = n;
    }
    while ((r = keel_stmt_step(st, NULL)) == 1) {
    }
    *out = rec;
    *found = 1;
    return KEEL_OK;
}

keel_err keel_idem_sql_set_if_absent(keel_db *db, keel_str scope, keel_str key,
                                     const keel_idem_record *rec, int64_t now_ms,
                                     keel_idem_record *existing, keel_diag *diag)
{
    if (db == NULL || rec == NULL || !keel__idem_valid_scope_key(scope, key))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid idempotency scope or key");
    const char *sc = scope.ptr ? scope.ptr : "";
    /* A row deleted between the claim and the read (a retriable failure released it) is
     * simply claimed again; twice is plenty, a third miss means heavy churn on one key. */
    for (int attempt = 0; attempt < 3; attempt++) {
        keel_stmt *st;
        keel_err e;
        int64_t changes = 0;
        if ((e = keel_db_prepare(db, SQL_CLAIM, &st, diag)) != KEEL_OK ||
            (e = keel_stmt_bind_text(st, 1, sc, scope.len)) != KEEL_OK ||
            (e = keel_stmt_bind_text(st, 2, key.ptr, key.len)) != KEEL_OK ||
            (e = keel_stmt_bind_text(st, 3, rec->owner, SIZE_MAX)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 4, rec->state)) != KEEL_OK ||
            (e = keel_stmt_bind_blob(st, 5, rec->payload_hash, sizeof(rec->payload_hash))) !=
                KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 6, rec->error)) != KEEL_OK ||
            (e = bind_result(st, 7, rec)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 8, rec->created_ms)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 9, rec->expires_ms)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 10, now_ms)) != KEEL_OK ||
            (e = finish(st, &changes, diag)) != KEEL_OK)
            return e;
        if (changes > 0)
            return KEEL_OK;
        keel_idem_record ex;
        int found = 0;
        if ((e = read_existing(db, scope, key, &ex, &found, diag)) != KEEL_OK)
            return e;
        if (!found)
            continue;
        if (existing != NULL)
            *existing = ex;
        else
            keel_idem_record_clear(&ex);
        return KEEL_EEXIST;
    }
    return keel_diag_set(diag, KEEL_EBUSY, 0, "idempotency key is changing too fast to claim");
}

keel_err keel_idem_sql_update(keel_db *db, keel_str scope, keel_str key,
                              const keel_idem_record *rec, keel_diag *diag)
{
    if (db == NULL || rec == NULL || !keel__idem_valid_scope_key(scope, key))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid idempotency scope or key");
    keel_stmt *st;
    keel_err e;
    int64_t changes = 0;
    if ((e = keel_db_prepare(db, SQL_UPDATE, &st, diag)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 1, rec->state)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 2, rec->error)) != KEEL_OK ||
        (e = bind_result(st, 3, rec)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 4, rec->expires_ms)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 5, scope.ptr ? scope.ptr : "", scope.len)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 6, key.ptr, key.len)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 7, rec->owner, SIZE_MAX)) != KEEL_OK ||
        (e = finish(st, &changes, diag)) != KEEL_OK)
        return e;
    return changes > 0 ? KEEL_OK
                       : keel_diag_set(diag, KEEL_ESTATE, 0, "idempotency slot no longer held");
}

typedef struct sql_store {
    keel_store *db;
} sql_store;

static keel_err sql_set_if_absent(void *self, keel_str scope, keel_str key,
                                  const keel_idem_record *rec, int64_t now_ms,
                                  keel_idem_record *existing, keel_diag *diag)
{
    keel_db *db;
    keel_err e = keel_db_acquire(((sql_store *)self)->db, &db, diag);
    if (e != KEEL_OK)
        return e;
    e = keel_idem_sql_set_if_absent(db, scope, key, rec, now_ms, existing, diag);
    keel_db_release(db);
    return e;
}

static keel_err sql_update(void *self, keel_str scope, keel_str key, const keel_idem_record *rec,
                           int64_t now_ms, keel_diag *diag)
{
    (void)now_ms;
    keel_db *db;
    keel_err e = keel_db_acquire(((sql_store *)self)->db, &db, diag);
    if (e != KEEL_OK)
        return e;
    e = keel_idem_sql_update(db, scope, key, rec, diag);
    keel_db_release(db);
    return e;
}

static keel_err sql_clear(void *self, keel_str scope, keel_str key, const char *owner,
                          keel_diag *diag)
{
    if (owner == NULL || !keel__idem_valid_scope_key(scope, key))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid idempotency scope or key");
    keel_db *db;
    keel_err e = keel_db_acquire(((sql_store *)self)->db, &db, diag);
    if (e != KEEL_OK)
        return e;
    keel_stmt *st;
    int64_t changes = 0;
    if ((e = keel_db_prepare(db, SQL_CLEAR, &st, diag)) == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 1, scope.ptr ? scope.ptr : "", scope.len)) == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 2, key.ptr, key.len)) == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 3, owner, SIZE_MAX)) == KEEL_OK)
        e = finish(st, &changes, diag);
    keel_db_release(db);
    if (e == KEEL_OK && changes == 0)
        e = keel_diag_set(diag, KEEL_ESTATE, 0, "idempotency slot no longer held");
    return e;
}

static keel_err sql_purge(void *self, int64_t now_ms, uint64_t *removed, keel_diag *diag)
{
    keel_db *db;
    keel_err e = keel_db_acquire(((sql_store *)self)->db, &db, diag);
    if (e != KEEL_OK)
        return e;
    keel_stmt *st;
    int64_t changes = 0;
    if ((e = keel_db_prepare(db, SQL_PURGE, &st, diag)) == KEEL_OK &&
        (e = keel_stmt_bind_int64(st, 1, now_ms)) == KEEL_OK)
        e = finish(st, &changes, diag);
    keel_db_release(db);
    if (removed != NULL)
        *removed = e == KEEL_OK ? (uint64_t)changes : 0;
    return e;
}

static void sql_destroy(void *self)
{
    keel_free(self);
}

static const keel_idem_store_vt SQL_VT = {sql_set_if_absent, sql_update, sql_clear, sql_purge,
                                          sql_destroy};

keel_err keel_idem_store_sql(keel_idem_store **out, keel_store *db, keel_diag *diag)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || db == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_idem_store_sql: invalid argument");
    keel_err e = keel_store_migrate_component(db, "keel.pay.idempotency", IDEM_MIGRATIONS,
                                              sizeof(IDEM_MIGRATIONS) / sizeof(IDEM_MIGRATIONS[0]),
                                              diag);
    if (e != KEEL_OK)
        return e;
    sql_store *s = keel_calloc(1, sizeof(*s));
    if (s == NULL)
        return KEEL_ENOMEM;
    s->db = db;
    if ((*out = keel__idem_store_wrap(&SQL_VT, s)) == NULL) {
        keel_free(s);
        return KEEL_ENOMEM;
    }
    return KEEL_OK;
}
