/* sqlite.c - the SQLite backend behind keel/store.h (see store_int.h).  Talks to the engine
 * only: pooling, transactions, caching and metrics live in store.c.
 *
 * Each connection is opened SQLITE_OPEN_NOMUTEX: store.c guarantees one thread at a time
 * per connection (a keel_db belongs to the thread that acquired it). */
#include "keel_int.h"

#include "store_int.h"

#include <limits.h>
#include <stdio.h>

#include <sqlite3.h>

/* Map an (extended) SQLite result code to a keel_err. */
static keel_err map_rc(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return KEEL_EEXIST;
    default:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return KEEL_OK;
    case SQLITE_CONSTRAINT:
        return KEEL_ECONSTRAINT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return KEEL_EBUSY;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL:
        return KEEL_EIO;
    case SQLITE_NOMEM:
        return KEEL_ENOMEM;
    case SQLITE_ERROR:
        return KEEL_EPARSE;
    case SQLITE_RANGE:
        return KEEL_ERANGE;
    case SQLITE_TOOBIG:
        return KEEL_ETOOBIG;
    case SQLITE_INTERRUPT:
        return KEEL_ETIMEOUT;
    case SQLITE_MISUSE:
    case SQLITE_ABORT:
    case SQLITE_SCHEMA:
        return KEEL_ESTATE;
    case SQLITE_MISMATCH:
        return KEEL_EINVAL;
    default:
        return KEEL_EIO;
    }
}

/* Map the connection's last error and describe it in diag (engine message only: SQLite's
 * messages never contain bound values). */
static keel_err fail(sqlite3 *db, int rc, keel_diag *diag)
{
    int ext = db != NULL ? sqlite3_extended_errcode(db) : rc;
    if ((ext & 0xff) != (rc & 0xff))
        ext = rc;
    keel_err e = map_rc(ext);
    if (e == KEEL_OK)
        e = KEEL_EIO;
    keel_diag_set(diag, e, 0, "sqlite: %s", db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    return e;
}

static keel_err sq_exec(void *conn, const char *sql, keel_diag *diag)
{
    sqlite3 *db = conn;
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail(db, rc, diag);
    return KEEL_OK;
}

static void sq_disconnect(void *conn)
{
    if (conn != NULL)
        sqlite3_close_v2((sqlite3 *)conn);
}

static keel_err sq_connect(const char *target, const keel_store_config *cfg, void **conn,
                           keel_diag *diag)
{
    sqlite3 *db = NULL;
    *conn = NULL;
    int rc = sqlite3_open_v2(target, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        keel_err e = db == NULL ? KEEL_ENOMEM : map_rc(sqlite3_extended_errcode(db));
        if (e == KEEL_OK || e == KEEL_EPARSE)
            e = KEEL_EIO;
        keel_diag_set(diag, e, 0, "cannot open %s: %s", target,
                      db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close_v2(db);
        return e;
    }
    sqlite3_extended_result_codes(db, 1);
    uint32_t bt = cfg->busy_timeout_ms;
    sqlite3_busy_timeout(db, bt > INT_MAX ? INT_MAX : (int)bt);
    keel_err e = sq_exec(db,
                         "PRAGMA journal_mode=WAL;"
                         "PRAGMA synchronous=NORMAL;"
                         "PRAGMA foreign_keys=ON;",
                         diag);
    if (e != KEEL_OK) {
        char msg[sizeof(diag->msg)];
        snprintf(msg, sizeof(msg), "%s", diag != NULL ? diag->msg : "");
        keel_diag_set(diag, e, 0, "cannot open %s: %s", target, msg);
        sqlite3_close_v2(db);
        return e;
    }
    *conn = db;
    return KEEL_OK;
}

static keel_err sq_ping(void *conn, keel_diag *diag)
{
    return sq_exec(conn, "SELECT 1", diag);
}

static keel_err sq_prepare(void *conn, const char *sql, void **out, keel_diag *diag)
{
    sqlite3 *db = conn;
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    *out = NULL;
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    if (rc != SQLITE_OK)
        return fail(db, rc, diag);
    if (st == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "sqlite: empty statement");
    if (tail != NULL) {
        while (*tail == ' ' || *tail == '\t' || *tail == '\n' || *tail == '\r' || *tail == ';')
            tail++;
        if (*tail != '\0') {
            sqlite3_finalize(st);
            return keel_diag_set(diag, KEEL_EINVAL, (size_t)(tail - sql),
                                 "sqlite: more than one statement (use keel_db_exec)");
        }
    }
    *out = st;
    return KEEL_OK;
}

static void sq_finalize(void *stmt)
{
    sqlite3_finalize((sqlite3_stmt *)stmt);
}

static void sq_reset(void *stmt)
{
    sqlite3_reset((sqlite3_stmt *)stmt);
    sqlite3_clear_bindings((sqlite3_stmt *)stmt);
}

static keel_err bind_rc(sqlite3_stmt *st, int rc)
{
    if (rc == SQLITE_OK)
        return KEEL_OK;
    KEEL_UNUSED(st);
    keel_err e = map_rc(rc);
    return e == KEEL_OK ? KEEL_EIO : e;
}

static keel_err sq_bind_int64(void *stmt, int idx, int64_t v)
{
    sqlite3_stmt *st = stmt;
    return bind_rc(st, sqlite3_bind_int64(st, idx, (sqlite3_int64)v));
}

static keel_err sq_bind_double(void *stmt, int idx, double v)
{
    sqlite3_stmt *st = stmt;
    return bind_rc(st, sqlite3_bind_double(st, idx, v));
}

static keel_err sq_bind_text(void *stmt, int idx, const char *v, size_t len)
{
    sqlite3_stmt *st = stmt;
    if (v == NULL)
        return bind_rc(st, sqlite3_bind_null(st, idx));
    return bind_rc(st, sqlite3_bind_text64(st, idx, v, (sqlite3_uint64)len, SQLITE_TRANSIENT,
                                           SQLITE_UTF8));
}

static keel_err sq_bind_blob(void *stmt, int idx, const void *v, size_t len)
{
    sqlite3_stmt *st = stmt;
    if (v == NULL || len == 0)
        return bind_rc(st, sqlite3_bind_zeroblob(st, idx, 0));
    return bind_rc(st, sqlite3_bind_blob64(st, idx, v, (sqlite3_uint64)len, SQLITE_TRANSIENT));
}

static keel_err sq_bind_null(void *stmt, int idx)
{
    sqlite3_stmt *st = stmt;
    return bind_rc(st, sqlite3_bind_null(st, idx));
}

static int sq_step(void *stmt, keel_diag *diag)
{
    sqlite3_stmt *st = stmt;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    sqlite3 *db = sqlite3_db_handle(st);
    keel_err e = fail(db, rc, diag);
    /* Leave the statement re-runnable after an error. */
    sqlite3_reset(st);
    return (int)e;
}

static int64_t sq_changes(void *stmt)
{
    return (int64_t)sqlite3_changes(sqlite3_db_handle((sqlite3_stmt *)stmt));
}

static int sq_columns(void *stmt)
{
    return sqlite3_data_count((sqlite3_stmt *)stmt);
}

static int sq_is_null(void *stmt, int col)
{
    return sqlite3_column_type((sqlite3_stmt *)stmt, col) == SQLITE_NULL;
}

static int64_t sq_col_int64(void *stmt, int col)
{
    return (int64_t)sqlite3_column_int64((sqlite3_stmt *)stmt, col);
}

static double sq_col_double(void *stmt, int col)
{
    return sqlite3_column_double((sqlite3_stmt *)stmt, col);
}

static const char *sq_col_text(void *stmt, int col, size_t *len)
{
    sqlite3_stmt *st = stmt;
    const char *p = (const char *)sqlite3_column_text(st, col);
    int n = p != NULL ? sqlite3_column_bytes(st, col) : 0;
    if (len != NULL)
        *len = n > 0 ? (size_t)n : 0;
    return p;
}

static const void *sq_col_blob(void *stmt, int col, size_t *len)
{
    sqlite3_stmt *st = stmt;
    const void *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (len != NULL)
        *len = n > 0 ? (size_t)n : 0;
    return p;
}

const keel__store_backend keel__store_sqlite = {
    .name = "sqlite",
    .engine = KEEL_STORE_SQLITE,
    .connect = sq_connect,
    .disconnect = sq_disconnect,
    .ping = sq_ping,
    .exec = sq_exec,
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .reset = sq_reset,
    .bind_int64 = sq_bind_int64,
    .bind_double = sq_bind_double,
    .bind_text = sq_bind_text,
    .bind_blob = sq_bind_blob,
    .bind_null = sq_bind_null,
    .step = sq_step,
    .changes = sq_changes,
    .columns = sq_columns,
    .is_null = sq_is_null,
    .col_int64 = sq_col_int64,
    .col_double = sq_col_double,
    .col_text = sq_col_text,
    .col_blob = sq_col_blob,
};
