/* Tests for src/store/pg.c through the public API, against the real PostgreSQL named by
 * KEEL_TEST_PG_DSN (exit 77 = skipped when it is unset): every bind/column type, RETURNING,
 * upsert, error mapping, pagination, nested transactions, the unit of work, pool limits,
 * concurrency, statement timeout, connection errors, reconnect after a server restart,
 * migrations and metrics.  Every test uses its own uniquely named tables and drops them. */
#define _GNU_SOURCE 1
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store_int.h"

static const char *dsn;
static unsigned counter;

/* A table name unique to this process and call: "<base>_<pid>_<n>". */
static void uname_(char *out, size_t n, const char *base)
{
    snprintf(out, n, "%s_%ld_%u", base, (long)getpid(), ++counter);
}

static keel_store *open_store(keel_store_config *cfg)
{
    keel_store *s = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err rc = keel_store_open(&s, cfg, &d);
    if (rc != KEEL_OK)
        fprintf(stderr, "open: %s\n", d.msg);
    assert_int_equal(KEEL_OK, rc);
    return s;
}

/* Defaults with the test DSN as url. */
static void pg_config(keel_store_config *cfg)
{
    keel_store_config_default(cfg);
    cfg->url = dsn;
}

static keel_store *open_default(void)
{
    keel_store_config cfg;
    pg_config(&cfg);
    return open_store(&cfg);
}

static void exec_ok(keel_db *db, const char *sql)
{
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err rc = keel_db_exec(db, sql, &d);
    if (rc != KEEL_OK)
        fprintf(stderr, "exec %s: %s\n", sql, d.msg);
    assert_int_equal(KEEL_OK, rc);
}

static void execf(keel_db *db, const char *fmt, const char *name)
{
    char sql[512];
    snprintf(sql, sizeof(sql), fmt, name, name, name);
    exec_ok(db, sql);
}

/* Run a one-row, one-column integer query. */
static int64_t query_int(keel_db *db, const char *sql)
{
    keel_stmt *st;
    keel_diag d;
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    assert_int_equal(1, keel_stmt_step(st, &d));
    int64_t v = keel_stmt_int64(st, 0);
    assert_int_equal(0, keel_stmt_step(st, &d));
    return v;
}

static void test_crud_all_types(void **state)
{
    (void)state;
    keel_store *s = open_default();
    assert_int_equal(KEEL_STORE_POSTGRES, keel_store_engine_of(s));
    keel_db *db;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    char t[64], sql[512];
    uname_(t, sizeof(t), "item");
    execf(db,
          "CREATE TABLE %s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, qty BIGINT,"
          " price DOUBLE PRECISION, data BYTEA, note TEXT)",
          t);

    static const unsigned char blob[] = {0x00, 0x01, 0xff, 0x00, 'x', 0x5c};
    const char *utf8 = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80";
    keel_stmt *st;
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (name, qty, price, data, note) VALUES (?, ?, ?, ?, ?) RETURNING id",
             t);
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, utf8, SIZE_MAX));
    ASSERT_OK(keel_stmt_bind_int64(st, 2, INT64_MAX));
    ASSERT_OK(keel_stmt_bind_double(st, 3, 3.25));
    ASSERT_OK(keel_stmt_bind_blob(st, 4, blob, sizeof(blob)));
    ASSERT_OK(keel_stmt_bind_null(st, 5));
    assert_int_equal(1, keel_stmt_step(st, &d));
    assert_int_equal(1, keel_stmt_columns(st));
    int64_t id1 = keel_stmt_int64(st, 0);
    assert_true(id1 > 0);
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(1, keel_stmt_changes(st));

    /* Same statement again (cache hit): bindings were cleared, so rebind everything. */
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, "second", 6));
    ASSERT_OK(keel_stmt_bind_int64(st, 2, INT64_MIN));
    ASSERT_OK(keel_stmt_bind_double(st, 3, -0.1));
    ASSERT_OK(keel_stmt_bind_blob(st, 4, NULL, 0));
    ASSERT_OK(keel_stmt_bind_text(st, 5, "n", SIZE_MAX));
    assert_int_equal(1, keel_stmt_step(st, &d));
    int64_t id2 = keel_stmt_int64(st, 0);
    assert_int_equal(id1 + 1, id2);
    assert_int_equal(0, keel_stmt_step(st, &d));
    /* Out-of-range index and text with a NUL are rejected. */
    assert_int_equal(KEEL_ERANGE, keel_stmt_bind_int64(st, 6, 1));
    assert_int_equal(KEEL_ERANGE, keel_stmt_bind_int64(st, 0, 1));
    assert_int_equal(KEEL_EINVAL, keel_stmt_bind_text(st, 1, "a\0b", 3));

    snprintf(sql, sizeof(sql),
             "SELECT id, name, qty, price, data, note FROM %s WHERE id >= ? ORDER BY id", t);
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, id1));
    assert_int_equal(1, keel_stmt_step(st, &d));
    assert_int_equal(6, keel_stmt_columns(st));
    assert_int_equal(id1, keel_stmt_int64(st, 0));
    size_t len = 0;
    assert_string_equal(utf8, keel_stmt_text(st, 1, &len));
    assert_int_equal(strlen(utf8), len);
    assert_int_equal(INT64_MAX, keel_stmt_int64(st, 2));
    assert_true(keel_stmt_double(st, 3) == 3.25);
    const unsigned char *b = keel_stmt_blob(st, 4, &len);
    assert_int_equal(sizeof(blob), len);
    assert_memory_equal(blob, b, sizeof(blob));
    assert_int_equal(1, keel_stmt_is_null(st, 5));
    assert_int_equal(0, keel_stmt_is_null(st, 4));
    assert_null(keel_stmt_text(st, 5, &len));
    assert_int_equal(0, len);
    assert_int_equal(0, keel_stmt_int64(st, 5));
    assert_int_equal(1, keel_stmt_step(st, &d));
    assert_string_equal("second", keel_stmt_text(st, 1, NULL));
    assert_int_equal(INT64_MIN, keel_stmt_int64(st, 2));
    assert_true(keel_stmt_double(st, 3) == -0.1);
    b = keel_stmt_blob(st, 4, &len);
    assert_non_null(b);
    assert_int_equal(0, len);
    assert_string_equal("n", keel_stmt_text(st, 5, NULL));
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(0, keel_stmt_columns(st));

    snprintf(sql, sizeof(sql), "UPDATE %s SET qty = ? WHERE id IN (?, ?)", t);
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, 7));
    ASSERT_OK(keel_stmt_bind_int64(st, 2, id1));
    ASSERT_OK(keel_stmt_bind_int64(st, 3, id2));
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(2, keel_stmt_changes(st));
    snprintf(sql, sizeof(sql), "SELECT SUM(qty) FROM %s", t);
    assert_int_equal(14, query_int(db, sql));
    snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE id = ?", t);
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, id1));
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(1, keel_stmt_changes(st));
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", t);
    assert_int_equal(1, query_int(db, sql));

    /* Booleans and numerics read as numbers; a placeholder outside a literal only. */
    ASSERT_OK(keel_db_prepare(db, "SELECT true, 2.75::numeric, '?'::text, ?::bigint + 1", &st,
                              &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, 41));
    assert_int_equal(1, keel_stmt_step(st, &d));
    assert_int_equal(1, keel_stmt_int64(st, 0));
    assert_int_equal(2, keel_stmt_int64(st, 1));
    assert_true(keel_stmt_double(st, 1) == 2.75);
    assert_string_equal("?", keel_stmt_text(st, 2, NULL));
    assert_int_equal(42, keel_stmt_int64(st, 3));
    assert_int_equal(0, keel_stmt_step(st, &d));

    execf(db, "DROP TABLE %s", t);
    keel_db_release(db);
    char detail[64];
    ASSERT_OK(keel_store_ping(s, detail, sizeof(detail)));
    assert_string_equal("ok", detail);
    keel_store_close(s);
}

static void test_upsert_and_errors(void **state)
{
    (void)state;
    keel_store *s = open_default();
    keel_db *db;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    char t[64], sql[512];
    uname_(t, sizeof(t), "inv");
    execf(db,
          "CREATE TABLE %s (name TEXT PRIMARY KEY, qty BIGINT NOT NULL CHECK (qty >= 0))", t);
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (name, qty) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET qty = "
             "%s.qty + excluded.qty RETURNING qty",
             t, t);
    keel_stmt *st;
    for (int i = 1; i <= 3; i++) {
        ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
        ASSERT_OK(keel_stmt_bind_text(st, 1, "apple", SIZE_MAX));
        ASSERT_OK(keel_stmt_bind_int64(st, 2, 5));
        assert_int_equal(1, keel_stmt_step(st, &d));
        assert_int_equal(5 * i, keel_stmt_int64(st, 0));
        assert_int_equal(0, keel_stmt_step(st, &d));
    }
    snprintf(sql, sizeof(sql), "INSERT INTO %s (name, qty) VALUES (?, ?) ON CONFLICT DO NOTHING",
             t);
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, "apple", SIZE_MAX));
    ASSERT_OK(keel_stmt_bind_int64(st, 2, 1));
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(0, keel_stmt_changes(st));

    /* unique -> EEXIST, the value is not in the message */
    snprintf(sql, sizeof(sql), "INSERT INTO %s (name, qty) VALUES (?, ?)", t);
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, "apple", SIZE_MAX));
    ASSERT_OK(keel_stmt_bind_int64(st, 2, 1));
    assert_int_equal(KEEL_EEXIST, keel_stmt_step(st, &d));
    assert_int_equal(KEEL_EEXIST, d.code);
    assert_non_null(strstr(d.msg, "23505"));
    assert_null(strstr(d.msg, "apple"));
    /* check -> ECONSTRAINT; not null -> ECONSTRAINT */
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, "pear", SIZE_MAX));
    ASSERT_OK(keel_stmt_bind_int64(st, 2, -1));
    assert_int_equal(KEEL_ECONSTRAINT, keel_stmt_step(st, &d));
    assert_non_null(strstr(d.msg, "23514"));
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, "pear", SIZE_MAX));
    ASSERT_OK(keel_stmt_bind_null(st, 2));
    assert_int_equal(KEEL_ECONSTRAINT, keel_stmt_step(st, &d));
    /* the failed statement runs again fine */
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, "pear", SIZE_MAX));
    ASSERT_OK(keel_stmt_bind_int64(st, 2, 2));
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(1, keel_stmt_changes(st));

    /* syntax / unknown table -> EPARSE at prepare */
    assert_int_equal(KEEL_EPARSE, keel_db_prepare(db, "SELEC 1", &st, &d));
    assert_int_equal(KEEL_EPARSE, d.code);
    assert_non_null(strstr(d.msg, "42601"));
    assert_int_equal(KEEL_EPARSE, keel_db_prepare(db, "SELECT * FROM no_such_table_x", &st, &d));
    assert_int_equal(KEEL_EPARSE, keel_db_exec(db, "CREATE TABLEX y(a int)", &d));
    /* a bad value: EINVAL, and the value is not echoed */
    ASSERT_OK(keel_db_prepare(db, "SELECT CAST(? AS BIGINT)", &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, "s3cretvalue", SIZE_MAX));
    assert_int_equal(KEEL_EINVAL, keel_stmt_step(st, &d));
    assert_null(strstr(d.msg, "s3cretvalue"));
    assert_non_null(strstr(d.msg, "22P02"));
    /* COPY has no data stream here: refused, and the session (with its prepared
     * statements) stays usable */
    assert_int_equal(1, query_int(db, "SELECT 1"));
    assert_int_equal(KEEL_EUNSUPPORTED, keel_db_exec(db, "COPY (SELECT 1) TO STDOUT", &d));
    assert_int_equal(1, query_int(db, "SELECT 1"));
    char copy[128];
    snprintf(copy, sizeof(copy), "COPY %s FROM STDIN", t);
    assert_int_equal(KEEL_EUNSUPPORTED, keel_db_exec(db, copy, &d));
    assert_int_equal(1, query_int(db, "SELECT 1"));
    /* several statements in exec */
    char multi[256];
    snprintf(multi, sizeof(multi), "UPDATE %s SET qty = 0; UPDATE %s SET qty = qty + 3", t, t);
    exec_ok(db, multi);
    snprintf(sql, sizeof(sql), "SELECT SUM(qty) FROM %s", t);
    assert_int_equal(6, query_int(db, sql));

    execf(db, "DROP TABLE %s", t);
    keel_db_release(db);
    keel_store_close(s);
}

static void test_pagination(void **state)
{
    (void)state;
    keel_store *s = open_default();
    keel_db *db;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    char t[64], sql[256];
    uname_(t, sizeof(t), "page");
    execf(db, "CREATE TABLE %s (n BIGINT PRIMARY KEY)", t);
    snprintf(sql, sizeof(sql), "INSERT INTO %s (n) VALUES (?)", t);
    keel_stmt *st;
    for (int i = 1; i <= 25; i++) {
        ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
        ASSERT_OK(keel_stmt_bind_int64(st, 1, i));
        assert_int_equal(0, keel_stmt_step(st, &d));
    }
    snprintf(sql, sizeof(sql), "SELECT n FROM %s WHERE n > ? ORDER BY n LIMIT ? OFFSET ?", t);
    int64_t seen = 0, sum = 0;
    for (int page = 0;; page++) {
        ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
        ASSERT_OK(keel_stmt_bind_int64(st, 1, 0));
        ASSERT_OK(keel_stmt_bind_int64(st, 2, 10));
        ASSERT_OK(keel_stmt_bind_int64(st, 3, page * 10));
        int rows = 0, rc;
        while ((rc = keel_stmt_step(st, &d)) == 1) {
            int64_t n = keel_stmt_int64(st, 0);
            assert_int_equal(page * 10 + rows + 1, n);
            sum += n;
            rows++;
        }
        assert_int_equal(0, rc);
        seen += rows;
        if (page < 2)
            assert_int_equal(10, rows);
        if (page == 2)
            assert_int_equal(5, rows);
        if (rows == 0) {
            assert_int_equal(3, page);
            break;
        }
    }
    assert_int_equal(25, seen);
    assert_int_equal(325, sum);
    execf(db, "DROP TABLE %s", t);
    keel_db_release(db);
    keel_store_close(s);
}

static void insert_n(keel_db *db, const char *t, int64_t n, keel_err want)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "INSERT INTO %s (n) VALUES (?)", t);
    keel_stmt *st;
    keel_diag d;
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, n));
    assert_int_equal(want, keel_stmt_step(st, &d));
}

static void test_nested_transactions(void **state)
{
    (void)state;
    keel_store *s = open_default();
    keel_db *db;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    char t[64], sql[128];
    uname_(t, sizeof(t), "nest");
    execf(db, "CREATE TABLE %s (n BIGINT PRIMARY KEY)", t);
    snprintf(sql, sizeof(sql), "SELECT COALESCE(SUM(n), 0) FROM %s", t);

    ASSERT_OK(keel_db_begin(db));
    insert_n(db, t, 1, 0);
    ASSERT_OK(keel_db_begin(db));
    assert_int_equal(2, keel_db_depth(db));
    insert_n(db, t, 10, 0);
    ASSERT_OK(keel_db_rollback(db)); /* inner rollback keeps outer work */
    ASSERT_OK(keel_db_begin(db));
    insert_n(db, t, 100, 0);
    ASSERT_OK(keel_db_commit(db));
    /* an error inside a savepoint: roll the savepoint back and carry on */
    ASSERT_OK(keel_db_begin(db));
    insert_n(db, t, 1, KEEL_EEXIST);
    ASSERT_OK(keel_db_rollback(db));
    insert_n(db, t, 1000, 0);
    assert_int_equal(1, keel_db_depth(db));
    ASSERT_OK(keel_db_commit(db));
    assert_int_equal(0, keel_db_depth(db));
    assert_int_equal(1101, query_int(db, sql));
    assert_int_equal(KEEL_ESTATE, keel_db_commit(db));

    /* outer rollback discards everything, including released savepoints */
    ASSERT_OK(keel_db_begin(db));
    ASSERT_OK(keel_db_begin(db));
    insert_n(db, t, 5, 0);
    ASSERT_OK(keel_db_commit(db));
    ASSERT_OK(keel_db_rollback(db));
    assert_int_equal(1101, query_int(db, sql));

    /* release with an open transaction rolls it back */
    ASSERT_OK(keel_db_begin(db));
    insert_n(db, t, 7, 0);
    keel_db_release(db);
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    assert_int_equal(0, keel_db_depth(db));
    assert_int_equal(1101, query_int(db, sql));

    execf(db, "DROP TABLE %s", t);
    keel_db_release(db);
    keel_store_close(s);
}

typedef struct txctx {
    const char *t;
    int64_t n;
    keel_err ret;
} txctx;

static keel_err tx_insert(keel_db *db, void *ud)
{
    txctx *c = ud;
    char sql[128];
    snprintf(sql, sizeof(sql), "INSERT INTO %s (n) VALUES (?)", c->t);
    keel_stmt *st;
    keel_err rc = keel_db_prepare(db, sql, &st, NULL);
    if (rc == KEEL_OK)
        rc = keel_stmt_bind_int64(st, 1, c->n);
    if (rc == KEEL_OK) {
        int r = keel_stmt_step(st, NULL);
        rc = r < 0 ? (keel_err)r : KEEL_OK;
    }
    return rc != KEEL_OK ? rc : c->ret;
}

static void test_store_tx(void **state)
{
    (void)state;
    keel_store *s = open_default();
    keel_db *db;
    keel_diag d;
    char t[64], sql[128];
    uname_(t, sizeof(t), "utx");
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    execf(db, "CREATE TABLE %s (n BIGINT PRIMARY KEY)", t);
    keel_db_release(db);

    txctx c = {t, 1, KEEL_OK};
    ASSERT_OK(keel_store_tx(s, tx_insert, &c, &d));
    c.n = 2;
    c.ret = KEEL_EINVAL; /* callback error: rolled back */
    assert_int_equal(KEEL_EINVAL, keel_store_tx(s, tx_insert, &c, &d));
    c.n = 1;
    c.ret = KEEL_OK; /* engine error: rolled back, reported */
    assert_int_equal(KEEL_EEXIST, keel_store_tx(s, tx_insert, &c, &d));

    ASSERT_OK(keel_db_acquire(s, &db, &d));
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) * 100 + SUM(n) FROM %s", t);
    assert_int_equal(101, query_int(db, sql));
    execf(db, "DROP TABLE %s", t);
    keel_db_release(db);
    keel_store_close(s);
}

static void test_pool_exhaustion(void **state)
{
    (void)state;
    keel_store_config cfg;
    pg_config(&cfg);
    cfg.pool_size = 1;
    cfg.pool_overflow = 1;
    cfg.checkout_timeout_ms = 150;
    keel_store *s = open_store(&cfg);
    keel_db *a, *b, *c = NULL;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &a, &d));
    ASSERT_OK(keel_db_acquire(s, &b, &d));
    assert_int_equal(KEEL_ETIMEOUT, keel_db_acquire(s, &c, &d));
    assert_null(c);
    assert_int_equal(KEEL_ETIMEOUT, d.code);
    keel_db_release(b);
    ASSERT_OK(keel_db_acquire(s, &c, &d));
    keel_db_release(c);
    keel_db_release(a);
    keel_store_close(s);
}

typedef struct incr {
    keel_store *s;
    const char *t;
    int fails;
} incr;

static keel_err tx_incr(keel_db *db, void *ud)
{
    incr *w = ud;
    char sql[128];
    snprintf(sql, sizeof(sql), "UPDATE %s SET n = n + 1 WHERE id = 1", w->t);
    keel_stmt *st;
    keel_err rc = keel_db_prepare(db, sql, &st, NULL);
    if (rc != KEEL_OK)
        return rc;
    int r = keel_stmt_step(st, NULL);
    if (r < 0)
        return (keel_err)r;
    return keel_stmt_changes(st) == 1 ? KEEL_OK : KEEL_ESTATE;
}

static void *incr_thread(void *arg)
{
    incr *w = arg;
    for (int i = 0; i < 100; i++)
        if (keel_store_tx(w->s, tx_incr, w, NULL) != KEEL_OK)
            w->fails++;
    return NULL;
}

static void test_concurrent_increments(void **state)
{
    (void)state;
    keel_store *s = open_default();
    keel_db *db;
    keel_diag d;
    char t[64], sql[128];
    uname_(t, sizeof(t), "ctr");
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    execf(db, "CREATE TABLE %s (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)", t);
    execf(db, "INSERT INTO %s VALUES (1, 0)", t);
    keel_db_release(db);

    pthread_t th[4];
    incr w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (incr){s, t, 0};
        assert_int_equal(0, pthread_create(&th[i], NULL, incr_thread, &w[i]));
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(0, w[i].fails);
    }
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    snprintf(sql, sizeof(sql), "SELECT n FROM %s WHERE id = 1", t);
    assert_int_equal(400, query_int(db, sql));
    execf(db, "DROP TABLE %s", t);
    keel_db_release(db);
    keel_store_close(s);
}

static void test_statement_timeout(void **state)
{
    (void)state;
    keel_store_config cfg;
    pg_config(&cfg);
    cfg.query_timeout_ms = 100;
    keel_store *s = open_store(&cfg);
    keel_db *db;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    keel_stmt *st;
    ASSERT_OK(keel_db_prepare(db, "SELECT pg_sleep(1)", &st, &d));
    assert_int_equal(KEEL_ETIMEOUT, keel_stmt_step(st, &d));
    assert_non_null(strstr(d.msg, "57014"));
    assert_int_equal(KEEL_ETIMEOUT, keel_db_exec(db, "SELECT pg_sleep(1)", &d));
    /* the connection is still usable */
    assert_int_equal(1, query_int(db, "SELECT 1"));
    keel_db_release(db);
    keel_store_close(s);
}

static void test_bad_dsn(void **state)
{
    (void)state;
    keel_store_config cfg;
    pg_config(&cfg);
    cfg.checkout_timeout_ms = 1000;
    keel_store *s = NULL;
    keel_diag d;
    cfg.url = "postgres://keel:Pa55w0rdXYZ@127.0.0.1:1/keel_test";
    assert_int_equal(KEEL_EIO, keel_store_open(&s, &cfg, &d));
    assert_null(s);
    assert_int_equal(KEEL_EIO, d.code);
    assert_non_null(strstr(d.msg, "cannot connect to PostgreSQL"));
    assert_null(strstr(d.msg, "Pa55w0rdXYZ"));
    /* malformed URL: libpq would quote it, we do not */
    cfg.url = "postgresql://keel:Pa55w0rdXYZ@[::1/keel_test";
    assert_int_equal(KEEL_EINVAL, keel_store_open(&s, &cfg, &d));
    assert_null(strstr(d.msg, "Pa55w0rdXYZ"));
    cfg.url = "postgres://keel:Pa55w0rdXYZ@127.0.0.1/keel_test?bogus_option=1";
    assert_int_equal(KEEL_EINVAL, keel_store_open(&s, &cfg, &d));
    assert_null(strstr(d.msg, "Pa55w0rdXYZ"));
}

static keel_err tx_select(keel_db *db, void *ud)
{
    (void)ud;
    keel_stmt *st;
    keel_err rc = keel_db_prepare(db, "SELECT 1", &st, NULL);
    if (rc != KEEL_OK)
        return rc;
    int r = keel_stmt_step(st, NULL);
    return r == 1 ? KEEL_OK : (r < 0 ? (keel_err)r : KEEL_ESTATE);
}

static void test_reconnect_after_restart(void **state)
{
    (void)state;
    keel_store_config cfg;
    pg_config(&cfg);
    cfg.pool_size = 2;
    keel_store *s = open_store(&cfg);
    keel_db *a, *b;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &a, &d));
    ASSERT_OK(keel_db_acquire(s, &b, &d));
    assert_int_equal(1, query_int(a, "SELECT 1"));
    assert_int_equal(1, query_int(b, "SELECT 1"));
    keel_db_release(b);
    keel_db_release(a); /* two idle connections that the restart will break */

    assert_int_equal(0, system(KEEL_TEST_DATA "/../../scripts/test-services.sh restart-pg"
                                              " >/dev/null"));
    keel_err rc = KEEL_EIO;
    int attempts = 0, eio = 0;
    for (; attempts < 100 && rc != KEEL_OK; attempts++) {
        rc = keel_store_tx(s, tx_select, NULL, &d);
        if (rc == KEEL_EIO) {
            eio++;
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        } else {
            assert_int_equal(KEEL_OK, rc);
        }
    }
    assert_int_equal(KEEL_OK, rc);
    /* The idle connections died with the server: the first unit of work hits one (KEEL_EIO),
     * release drops it after a failed ping; each dead connection fails at most once. */
    fprintf(stderr, "reconnect: %d attempts, %d KEEL_EIO\n", attempts, eio);
    assert_true(eio >= 1);
    assert_true(eio <= (int)cfg.pool_size);
    char detail[64];
    ASSERT_OK(keel_store_ping(s, detail, sizeof(detail)));
    keel_store_close(s);
}

/* dsn + "?options=-csearch_path%3D<schema>" (or "&..." if dsn has a query already). */
static void schema_dsn(char *out, size_t n, const char *schema)
{
    snprintf(out, n, "%s%coptions=-csearch_path%%3D%s", dsn, strchr(dsn, '?') ? '&' : '?',
             schema);
}

static void test_migrations(void **state)
{
    (void)state;
    char schema[64], url[512];
    uname_(schema, sizeof(schema), "mig");
    keel_store *admin = open_default();
    keel_db *db;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(admin, &db, &d));
    execf(db, "CREATE SCHEMA %s", schema);
    keel_db_release(db);

    schema_dsn(url, sizeof(url), schema);
    keel_store_config cfg;
    pg_config(&cfg);
    cfg.url = url;
    keel_store *s = open_store(&cfg);
    int64_t v = -1;
    ASSERT_OK(keel_store_schema_version(s, &v));
    assert_int_equal(0, v);
    keel_err rc = keel_store_migrate(s, KEEL_TEST_DATA "/migrations", &d);
    if (rc != KEEL_OK)
        fprintf(stderr, "migrate: %s\n", d.msg);
    assert_int_equal(KEEL_OK, rc);
    ASSERT_OK(keel_store_schema_version(s, &v));
    assert_int_equal(2, v);
    ASSERT_OK(keel_store_migrate(s, KEEL_TEST_DATA "/migrations", &d)); /* idempotent */
    ASSERT_OK(keel_store_schema_version(s, &v));
    assert_int_equal(2, v);

    ASSERT_OK(keel_db_acquire(s, &db, &d));
    assert_int_equal(2, query_int(db, "SELECT COUNT(*) FROM schema_migrations"));
    keel_stmt *st;
    ASSERT_OK(keel_db_prepare(db,
                              "INSERT INTO users (email, created_at_ms) VALUES (?, {now_ms}) "
                              "RETURNING id",
                              &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, "a@example.com", SIZE_MAX));
    assert_int_equal(1, keel_stmt_step(st, &d));
    assert_int_equal(1, keel_stmt_int64(st, 0));
    assert_int_equal(0, keel_stmt_step(st, &d));
    ASSERT_OK(keel_db_prepare(db, "INSERT INTO orders (user_id) VALUES (?) RETURNING note", &st,
                              &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, 1));
    assert_int_equal(1, keel_stmt_step(st, &d));
    assert_string_equal("a;b?", keel_stmt_text(st, 0, NULL));
    assert_int_equal(0, keel_stmt_step(st, &d));
    /* foreign key -> ECONSTRAINT */
    ASSERT_OK(keel_db_prepare(db, "INSERT INTO orders (user_id) VALUES (?) RETURNING note", &st,
                              &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, 999));
    assert_int_equal(KEEL_ECONSTRAINT, keel_stmt_step(st, &d));
    keel_db_release(db);
    keel_store_close(s);

    ASSERT_OK(keel_db_acquire(admin, &db, &d));
    char sql[128];
    snprintf(sql, sizeof(sql),
             "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '%s'", schema);
    assert_int_equal(3, query_int(db, sql));
    execf(db, "DROP SCHEMA %s CASCADE", schema);
    keel_db_release(db);
    keel_store_close(admin);
}

static void test_metrics(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_store_config cfg;
    pg_config(&cfg);
    cfg.pool_size = 3;
    cfg.metrics = m;
    keel_store *s = open_store(&cfg);
    keel_db *db;
    keel_diag d;
    char t[64], sql[128];
    uname_(t, sizeof(t), "met");
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    execf(db, "CREATE TABLE %s (n BIGINT)", t);
    insert_n(db, t, 1, 0);
    insert_n(db, t, 2, 0);
    snprintf(sql, sizeof(sql), "SELECT n FROM %s", t);
    keel_stmt *st;
    ASSERT_OK(keel_db_prepare(db, sql, &st, &d));
    while (keel_stmt_step(st, &d) == 1)
        ;

    keel_buf out;
    keel_buf_init(&out, 1 << 20);
    ASSERT_OK(keel_metrics_expose(m, "db_", &out));
    assert_non_null(strstr(out.ptr, "db_postgres_poolsize 3\n"));
    assert_non_null(strstr(out.ptr, "db_postgres_pool_checked_out 1\n"));
    assert_non_null(strstr(out.ptr, "db_postgres_pool_overflow 0\n"));
    assert_non_null(
        strstr(out.ptr, "db_postgres_query_duration_seconds_bucket{operation=\"INSERT\","));
    assert_non_null(
        strstr(out.ptr, "db_postgres_query_duration_seconds_count{operation=\"INSERT\"} 2\n"));
    assert_non_null(
        strstr(out.ptr, "db_postgres_query_duration_seconds_count{operation=\"SELECT\"} 1\n"));
    keel_buf_cleanup(&out);
    execf(db, "DROP TABLE %s", t);
    keel_db_release(db);
    keel_store_close(s);
    keel_metrics_destroy(m);
}

static void test_backend_exec_begin_immediate(void **state)
{
    (void)state;
    /* store.c is engine-neutral; the backend turns SQLite's BEGIN IMMEDIATE into BEGIN. */
    keel_store_config cfg;
    pg_config(&cfg);
    void *conn = NULL;
    keel_diag d;
    ASSERT_OK(keel__store_pg.connect(dsn, &cfg, &conn, &d));
    ASSERT_OK(keel__store_pg.exec(conn, "BEGIN IMMEDIATE", &d));
    ASSERT_OK(keel__store_pg.exec(conn, "COMMIT", &d));
    ASSERT_OK(keel__store_pg.ping(conn, &d));
    assert_string_equal("postgres", keel__store_pg.name);
    keel__store_pg.disconnect(conn);
}

int main(void)
{
    dsn = getenv("KEEL_TEST_PG_DSN");
    if (dsn == NULL || *dsn == '\0') {
        fprintf(stderr, "KEEL_TEST_PG_DSN not set: skipping PostgreSQL tests\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crud_all_types),
        cmocka_unit_test(test_upsert_and_errors),
        cmocka_unit_test(test_pagination),
        cmocka_unit_test(test_nested_transactions),
        cmocka_unit_test(test_store_tx),
        cmocka_unit_test(test_pool_exhaustion),
        cmocka_unit_test(test_concurrent_increments),
        cmocka_unit_test(test_statement_timeout),
        cmocka_unit_test(test_bad_dsn),
        cmocka_unit_test(test_migrations),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_backend_exec_begin_immediate),
        cmocka_unit_test(test_reconnect_after_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
