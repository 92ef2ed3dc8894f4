/* store_int.h - the backend interface behind keel/store.h (cf. curl's vtls/).  store.c owns
 * pooling, transactions, the statement cache, metrics and the dialect rewrite; a backend
 * (sqlite.c, pg.c) only talks to its engine.  Never installed. */
#ifndef KEEL_STORE_INT_H
#define KEEL_STORE_INT_H

#include "keel_int.h"

#include <keel/store.h>

typedef struct keel__store_backend {
    const char *name; /* "sqlite", "postgres": also the metric infix and migrations subdir */
    keel_store_engine engine;

    /* Open one connection for the URL's engine-specific part (for SQLite the path after
     * "sqlite:").  Sets engine options (SQLite: WAL, busy timeout, foreign keys). */
    keel_err (*connect)(const char *target, const keel_store_config *cfg, void **conn,
                        keel_diag *diag);
    void (*disconnect)(void *conn);
    /* Liveness check on an idle connection (used by ping and after errors). */
    keel_err (*ping)(void *conn, keel_diag *diag);
    /* Run parameterless SQL (may hold several statements). */
    keel_err (*exec)(void *conn, const char *sql, keel_diag *diag);

    /* Prepare engine SQL (already rewritten by the dialect layer). */
    keel_err (*prepare)(void *conn, const char *sql, void **stmt, keel_diag *diag);
    void (*finalize)(void *stmt);
    /* Reset to run again and clear bindings. */
    void (*reset)(void *stmt);
    keel_err (*bind_int64)(void *stmt, int idx, int64_t v);
    keel_err (*bind_double)(void *stmt, int idx, double v);
    keel_err (*bind_text)(void *stmt, int idx, const char *v, size_t len);
    keel_err (*bind_blob)(void *stmt, int idx, const void *v, size_t len);
    keel_err (*bind_null)(void *stmt, int idx);
    /* 1 row, 0 done, < 0 keel_err (mapped as described in keel/store.h). */
    int (*step)(void *stmt, keel_diag *diag);
    int64_t (*changes)(void *stmt);
    int (*columns)(void *stmt);
    int (*is_null)(void *stmt, int col);
    int64_t (*col_int64)(void *stmt, int col);
    double (*col_double)(void *stmt, int col);
    const char *(*col_text)(void *stmt, int col, size_t *len);
    const void *(*col_blob)(void *stmt, int col, size_t *len);
} keel__store_backend;

extern const keel__store_backend keel__store_sqlite;
extern const keel__store_backend keel__store_pg;

#endif
