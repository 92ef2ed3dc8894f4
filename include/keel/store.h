/*
 * keel/store.h - SQL storage: one interface over SQLite (embedded default) and PostgreSQL
 * (libpq).  Application code is written once against it.
 *
 * Model.  A keel_store is a pool of connections to one database, opened from a URL
 * ("sqlite:PATH", "postgres://user:pass@host:port/db").  A request or job checks a connection out
 * (keel_db_acquire), runs prepared statements with bound parameters only, and gives it back
 * (keel_db_release).  Transactions nest: the outermost keel_db_begin() starts a transaction,
 * inner ones create savepoints.  keel_store_tx() is the unit of work of seed 004's
 * database_session: it commits when the callback returns KEEL_OK and rolls back on any
 * error, retrying a bounded number of times when the engine reports a transient conflict.
 *
 * SQL.  Write portable SQL with '?' placeholders.  The dialect layer rewrites what differs:
 * placeholders ($1.. on PostgreSQL) and the tokens {now_ms} (current time in Unix
 * milliseconds as an integer expression) and {skip_locked} ("FOR UPDATE SKIP LOCKED" on
 * PostgreSQL, nothing on SQLite, which locks the whole database for writers).  RETURNING and
 * INSERT ... ON CONFLICT ... DO UPDATE/NOTHING are spelled the same on both engines.
 *
 * Thread-safety.  keel_store functions are thread-safe.  A keel_db and its statements belong
 * to the thread that acquired it until keel_db_release().
 *
 * Errors.  Engine errors map to: KEEL_EEXIST (unique violation), KEEL_ECONSTRAINT (other
 * constraint), KEEL_EBUSY (lock contention that outlived the busy timeout), KEEL_ETIMEOUT
 * (pool checkout or statement timeout), KEEL_EIO (I/O error, database unreachable, disk
 * full, read-only), KEEL_EPARSE (SQL the engine rejected), KEEL_ESTATE (misuse, or a database
 * newer than this binary).  The optional keel_diag carries the engine's message; bound values
 * never appear in it.
 */
#ifndef KEEL_STORE_H
#define KEEL_STORE_H

#include <keel/common.h>
#include <keel/core.h>
#include <keel/metrics.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_store keel_store; /* pool */
typedef struct keel_db keel_db;       /* one checked-out connection */
typedef struct keel_stmt keel_stmt;   /* prepared statement, cached per connection */

typedef enum keel_store_engine { KEEL_STORE_SQLITE = 1, KEEL_STORE_POSTGRES = 2 } keel_store_engine;

typedef struct keel_store_config {
    size_t size;
    const char *url;              /* "sqlite:./var/keel.db" (directory created), "sqlite::memory:",
                                     "postgres://user:pass@host:port/db" */
    unsigned pool_size;           /* connections kept open (default 8; SQLite: 1 writer at a time) */
    unsigned pool_overflow;       /* extra connections opened under load, closed when idle (4) */
    uint32_t checkout_timeout_ms; /* keel_db_acquire gives up after this (5000) */
    uint32_t busy_timeout_ms;     /* SQLite: wait this long for a lock (5000) */
    uint32_t query_timeout_ms;    /* statement timeout (PostgreSQL; 0 = none) */
    unsigned tx_retries;          /* keel_store_tx retries on KEEL_EBUSY (3) */
    keel_metrics *metrics;        /* db_<engine>_query_duration_seconds{operation}, pool gauges */
} keel_store_config;

KEEL_API void keel_store_config_default(keel_store_config *cfg);

/** Open the database named by cfg->url.  Errors name the problem in diag ("DATABASE_URL:
 *  unsupported scheme 'mysql'", "cannot open ./var/keel.db: ...").
 *  @return KEEL_OK, KEEL_EINVAL (bad URL), KEEL_EIO (cannot open / connect). */
KEEL_API KEEL_NODISCARD keel_err keel_store_open(keel_store **out, const keel_store_config *cfg,
                                                 keel_diag *diag);
/** Close every connection (all must have been released) and free. NULL is a no-op. */
KEEL_API void keel_store_close(keel_store *s);
KEEL_API keel_store_engine keel_store_engine_of(const keel_store *s);
/** Readiness probe (matches keel_probe_fn): a trivial query on a pooled connection. */
KEEL_API keel_err keel_store_ping(void *store, char *detail, size_t detail_len);

/** Apply the numbered migrations of dir/<engine>/ (NNNN_name.sql, ascending) that the
 *  schema_migrations table does not list yet, each in its own transaction.  Idempotent.
 *  @return KEEL_OK; KEEL_ESTATE if the database holds a version newer than the newest file
 *  (refuse to run an old binary on a newer schema); KEEL_EIO/KEEL_EPARSE with the file name
 *  in diag when a migration fails (nothing of it remains). */
KEEL_API KEEL_NODISCARD keel_err keel_store_migrate(keel_store *s, const char *dir,
                                                    keel_diag *diag);
/** An embedded migration of a library component (keel's own tables: idempotency keys,
 *  webhook events, saga log...).  SQL for each engine; several statements allowed. */
typedef struct keel_migration {
    int64_t version;      /* > 0, ascending within a component */
    const char *name;     /* "idempotency_keys" */
    const char *sqlite;   /* SQL for SQLite */
    const char *postgres; /* SQL for PostgreSQL */
} keel_migration;

/** Apply a component's embedded migrations that are not applied yet, each in its own
 *  transaction, recorded in keel_schema_migrations (component, version) - separate from the
 *  application's schema_migrations, so library and application versions never collide.
 *  Idempotent and safe to run from several processes at once (same locking as
 *  keel_store_migrate).  component: 1-64 chars of [a-z0-9_.] ("keel.pay.idempotency").
 *  @return KEEL_OK; KEEL_EINVAL (bad list); KEEL_ESTATE if the database holds a newer version
 *  of the component than migs lists; the failing statement's error with the migration named
 *  in diag.  Thread-safety: any thread. Ownership: borrows migs for the call. */
KEEL_API KEEL_NODISCARD keel_err keel_store_migrate_component(keel_store *s,
                                                              const char *component,
                                                              const keel_migration *migs,
                                                              size_t n, keel_diag *diag);
/** Highest applied migration version, 0 when none. */
KEEL_API KEEL_NODISCARD keel_err keel_store_schema_version(keel_store *s, int64_t *out);

/* ------------------------------------------------------------ connections -- */

KEEL_API KEEL_NODISCARD keel_err keel_db_acquire(keel_store *s, keel_db **out, keel_diag *diag);
/** Give the connection back; an open transaction is rolled back first. NULL is a no-op. */
KEEL_API void keel_db_release(keel_db *db);

/** Begin a transaction, or a savepoint inside one.  Writers on SQLite take the write lock at
 *  once (BEGIN IMMEDIATE), so conflicts surface here and not half-way through. */
KEEL_API KEEL_NODISCARD keel_err keel_db_begin(keel_db *db);
/** Commit the innermost level (release the savepoint, or commit the transaction). */
KEEL_API KEEL_NODISCARD keel_err keel_db_commit(keel_db *db);
/** Roll back the innermost level. */
KEEL_API keel_err keel_db_rollback(keel_db *db);
/** Transaction depth (0 = none). */
KEEL_API unsigned keel_db_depth(const keel_db *db);

/** Run SQL without parameters or results (DDL, migrations).  Several statements allowed. */
KEEL_API KEEL_NODISCARD keel_err keel_db_exec(keel_db *db, const char *sql, keel_diag *diag);

/** Unit of work: acquire, begin, fn(db, ud), commit on KEEL_OK or roll back on anything else,
 *  release.  Retries the whole unit up to cfg->tx_retries times on KEEL_EBUSY.
 *  @return fn's error, or the commit's. */
typedef keel_err (*keel_tx_fn)(keel_db *db, void *ud);
KEEL_API keel_err keel_store_tx(keel_store *s, keel_tx_fn fn, void *ud, keel_diag *diag);

/* -------------------------------------------------------------- statements -- */

/** Prepare (or fetch from the connection's cache) a statement.  The statement is borrowed:
 *  valid until keel_db_release(); it is reset and its bindings cleared on each prepare. */
KEEL_API KEEL_NODISCARD keel_err keel_db_prepare(keel_db *db, const char *sql, keel_stmt **out,
                                                 keel_diag *diag);
/** Bind parameter idx (1-based).  Text and blobs are copied. */
KEEL_API KEEL_NODISCARD keel_err keel_stmt_bind_int64(keel_stmt *st, int idx, int64_t v);
KEEL_API KEEL_NODISCARD keel_err keel_stmt_bind_double(keel_stmt *st, int idx, double v);
/** len SIZE_MAX means strlen(v). */
KEEL_API KEEL_NODISCARD keel_err keel_stmt_bind_text(keel_stmt *st, int idx, const char *v,
                                                     size_t len);
KEEL_API KEEL_NODISCARD keel_err keel_stmt_bind_blob(keel_stmt *st, int idx, const void *v,
                                                     size_t len);
KEEL_API KEEL_NODISCARD keel_err keel_stmt_bind_null(keel_stmt *st, int idx);

/** Advance: 1 = a row is available, 0 = done, < 0 = keel_err. */
KEEL_API int keel_stmt_step(keel_stmt *st, keel_diag *diag);
/** Rows changed by the last INSERT/UPDATE/DELETE. */
KEEL_API int64_t keel_stmt_changes(const keel_stmt *st);

/** Columns of the current row (0-based).  Text is borrowed until the next step/reset;
 *  NULL values read as 0 / NULL. */
KEEL_API int keel_stmt_columns(const keel_stmt *st);
KEEL_API int keel_stmt_is_null(const keel_stmt *st, int col);
KEEL_API int64_t keel_stmt_int64(const keel_stmt *st, int col);
KEEL_API double keel_stmt_double(const keel_stmt *st, int col);
KEEL_API const char *keel_stmt_text(const keel_stmt *st, int col, size_t *len);
KEEL_API const void *keel_stmt_blob(const keel_stmt *st, int col, size_t *len);

/* ----------------------------------------------------------------- dialect -- */

/** Rewrite portable SQL for an engine into out: '?' placeholders outside string literals,
 *  identifiers and comments, and the {now_ms} / {skip_locked} tokens.  Exposed for tests and
 *  fuzzing.  @return KEEL_OK, KEEL_EPARSE (unterminated literal or unknown {token}),
 *  KEEL_ETOOBIG. */
KEEL_API KEEL_NODISCARD keel_err keel_store_dialect_sql(keel_store_engine engine,
                                                        const char *sql, keel_buf *out,
                                                        int *nparams, keel_diag *diag);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_STORE_H */
