/* Tests for src/store/store.c: URL parsing, pool (exhaustion, overflow), nested
 * transactions, keel_store_tx (rollback on error, retries under concurrent writers),
 * metrics, and OOM injection.  Real SQLite files in a mkdtemp directory. */
#define _GNU_SOURCE 1
#include "test.h"

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store_int.h"

static char tmpdir[64];
static char dburl[160];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/keel-store-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    /* a nested directory that does not exist yet: open must create it */
    snprintf(dburl, sizeof(dburl), "sqlite:%s/var/data/keel.db", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(tmpdir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static keel_store *open_store(keel_store_config *cfg)
{
    keel_store *s = NULL;
    keel_diag d;
    cfg->url = dburl;
    keel_err rc = keel_store_open(&s, cfg, &d);
    if (rc != KEEL_OK)
        fprintf(stderr, "open: %s\n", d.msg);
    assert_int_equal(KEEL_OK, rc);
    return s;
}

static void make_table(keel_store *s)
{
    keel_db *db;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    ASSERT_OK(keel_db_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL)", &d));
    keel_db_release(db);
}

static int64_t count_rows(keel_store *s)
{
    keel_db *db;
    keel_stmt *st;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    ASSERT_OK(keel_db_prepare(db, "SELECT count(*) FROM t", &st, &d));
    assert_int_equal(1, keel_stmt_step(st, &d));
    int64_t n = keel_stmt_int64(st, 0);
    keel_db_release(db);
    return n;
}

static keel_err insert_v(keel_db *db, int64_t v)
{
    keel_stmt *st;
    keel_err rc = keel_db_prepare(db, "INSERT INTO t(v) VALUES (?)", &st, NULL);
    if (rc != KEEL_OK)
        return rc;
    if ((rc = keel_stmt_bind_int64(st, 1, v)) != KEEL_OK)
        return rc;
    int r = keel_stmt_step(st, NULL);
    return r < 0 ? (keel_err)r : KEEL_OK;
}

static void test_open_creates_directory(void **state)
{
    (void)state;
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    assert_int_equal(sizeof(cfg), cfg.size);
    assert_int_equal(8, cfg.pool_size);
    assert_int_equal(4, cfg.pool_overflow);
    assert_int_equal(5000, cfg.checkout_timeout_ms);
    assert_int_equal(5000, cfg.busy_timeout_ms);
    assert_int_equal(3, cfg.tx_retries);
    keel_store *s = open_store(&cfg);
    assert_int_equal(KEEL_STORE_SQLITE, keel_store_engine_of(s));
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/var/data", tmpdir);
    struct stat st;
    assert_int_equal(0, stat(dir, &st));
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(0, st.st_mode & 0007); /* created 0750 (less under a strict umask) */
    assert_int_equal(0700, st.st_mode & 0700);
    char detail[64];
    ASSERT_OK(keel_store_ping(s, detail, sizeof(detail)));
    assert_string_equal("ok", detail);
    /* WAL and foreign keys are on */
    keel_db *db;
    keel_stmt *q;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    ASSERT_OK(keel_db_prepare(db, "PRAGMA journal_mode", &q, &d));
    assert_int_equal(1, keel_stmt_step(q, &d));
    assert_string_equal("wal", keel_stmt_text(q, 0, NULL));
    ASSERT_OK(keel_db_prepare(db, "PRAGMA foreign_keys", &q, &d));
    assert_int_equal(1, keel_stmt_step(q, &d));
    assert_int_equal(1, keel_stmt_int64(q, 0));
    keel_db_release(db);
    keel_store_close(s);
    keel_store_close(NULL);
    keel_db_release(NULL);
}

static void test_bad_urls(void **state)
{
    (void)state;
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    keel_store *s = (keel_store *)&cfg;
    keel_diag d;

    /* PostgreSQL is built in: an unreachable server (port 1 refuses) is KEEL_EIO, and the
     * message never repeats the password. */
    cfg.url = "postgres://user:hunter2@127.0.0.1:1/app";
    assert_int_equal(KEEL_EIO, keel_store_open(&s, &cfg, &d));
    assert_null(s);
    assert_non_null(strstr(d.msg, "cannot connect to PostgreSQL"));
    assert_null(strstr(d.msg, "hunter2"));
    cfg.url = "postgresql://127.0.0.1:1/app";
    assert_int_equal(KEEL_EIO, keel_store_open(&s, &cfg, &d));
    assert_null(s);

    cfg.url = "mysql://root:hunter2@localhost/app";
    assert_int_equal(KEEL_EINVAL, keel_store_open(&s, &cfg, &d));
    assert_string_equal("DATABASE_URL: unsupported scheme 'mysql'", d.msg);
    assert_null(strstr(d.msg, "hunter2"));
    cfg.url = "just-a-path.db";
    assert_int_equal(KEEL_EINVAL, keel_store_open(&s, &cfg, &d));
    assert_string_equal("DATABASE_URL: unsupported scheme ''", d.msg);
    cfg.url = "sqlite:";
    assert_int_equal(KEEL_EINVAL, keel_store_open(&s, &cfg, &d));
    assert_string_equal("DATABASE_URL: missing SQLite path", d.msg);
    cfg.url = NULL;
    assert_int_equal(KEEL_EINVAL, keel_store_open(&s, &cfg, &d));
    assert_string_equal("DATABASE_URL: not set", d.msg);
}

static void test_memory_database(void **state)
{
    (void)state;
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = "sqlite::memory:";
    cfg.checkout_timeout_ms = 50;
    keel_store *s = NULL;
    keel_diag d;
    ASSERT_OK(keel_store_open(&s, &cfg, &d));
    make_table(s);
    keel_db *db, *db2;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    ASSERT_OK(insert_v(db, 1));
    /* one connection only: the same database every time */
    assert_int_equal(KEEL_ETIMEOUT, keel_db_acquire(s, &db2, &d));
    keel_db_release(db);
    assert_int_equal(1, count_rows(s));
    keel_store_close(s);
}

static void test_nested_transactions(void **state)
{
    (void)state;
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    keel_store *s = open_store(&cfg);
    make_table(s);
    keel_db *db;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    assert_int_equal(0, keel_db_depth(db));
    assert_int_equal(KEEL_ESTATE, keel_db_commit(db));
    ASSERT_OK(keel_db_begin(db));
    assert_int_equal(1, keel_db_depth(db));
    ASSERT_OK(insert_v(db, 1));
    ASSERT_OK(keel_db_begin(db));
    assert_int_equal(2, keel_db_depth(db));
    ASSERT_OK(insert_v(db, 2));
    ASSERT_OK(keel_db_begin(db));
    ASSERT_OK(insert_v(db, 3));
    ASSERT_OK(keel_db_commit(db)); /* level 3 folds into level 2 */
    ASSERT_OK(keel_db_rollback(db)); /* drops 2 and 3 */
    assert_int_equal(1, keel_db_depth(db));
    ASSERT_OK(keel_db_begin(db));
    ASSERT_OK(insert_v(db, 4));
    ASSERT_OK(keel_db_commit(db));
    ASSERT_OK(keel_db_commit(db));
    assert_int_equal(0, keel_db_depth(db));
    keel_db_release(db);
    assert_int_equal(2, count_rows(s));

    /* outer rollback drops everything, committed savepoints included */
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    ASSERT_OK(keel_db_begin(db));
    ASSERT_OK(insert_v(db, 5));
    ASSERT_OK(keel_db_begin(db));
    ASSERT_OK(insert_v(db, 6));
    ASSERT_OK(keel_db_commit(db));
    ASSERT_OK(keel_db_rollback(db));
    assert_int_equal(0, keel_db_depth(db));
    keel_db_release(db);
    assert_int_equal(2, count_rows(s));

    /* release with an open transaction rolls it back */
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    ASSERT_OK(keel_db_begin(db));
    ASSERT_OK(keel_db_begin(db));
    ASSERT_OK(insert_v(db, 7));
    keel_db_release(db);
    assert_int_equal(2, count_rows(s));
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    assert_int_equal(0, keel_db_depth(db));
    ASSERT_OK(keel_db_begin(db)); /* no transaction left open on the connection */
    ASSERT_OK(keel_db_commit(db));
    keel_db_release(db);
    keel_store_close(s);
}

static keel_err tx_insert_then_fail(keel_db *db, void *ud)
{
    int *calls = ud;
    (*calls)++;
    keel_err rc = insert_v(db, 42);
    if (rc != KEEL_OK)
        return rc;
    return KEEL_ENOTFOUND;
}

static keel_err tx_insert(keel_db *db, void *ud)
{
    (void)ud;
    return insert_v(db, 43);
}

static void test_store_tx(void **state)
{
    (void)state;
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    keel_store *s = open_store(&cfg);
    make_table(s);
    int calls = 0;
    keel_diag d;
    assert_int_equal(KEEL_ENOTFOUND, keel_store_tx(s, tx_insert_then_fail, &calls, &d));
    assert_int_equal(1, calls); /* not retried: only KEEL_EBUSY is */
    assert_int_equal(0, count_rows(s));
    ASSERT_OK(keel_store_tx(s, tx_insert, NULL, &d));
    assert_int_equal(1, count_rows(s));
    keel_store_close(s);
}

static void test_pool_exhaustion(void **state)
{
    (void)state;
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.pool_size = 1;
    cfg.pool_overflow = 0;
    cfg.checkout_timeout_ms = 100;
    keel_store *s = open_store(&cfg);
    keel_db *a = NULL, *b = NULL;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &a, &d));
    assert_int_equal(KEEL_ETIMEOUT, keel_db_acquire(s, &b, &d));
    assert_null(b);
    keel_db_release(a);
    ASSERT_OK(keel_db_acquire(s, &b, &d));
    assert_ptr_equal(a, b); /* the same pooled connection */
    keel_db_release(b);
    keel_store_close(s);
}

static void test_pool_overflow_and_metrics(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.pool_size = 1;
    cfg.pool_overflow = 1;
    cfg.checkout_timeout_ms = 50;
    cfg.metrics = m;
    keel_store *s = open_store(&cfg);
    make_table(s);
    keel_db *a, *b, *c;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &a, &d));
    ASSERT_OK(keel_db_acquire(s, &b, &d)); /* overflow connection */
    assert_int_equal(KEEL_ETIMEOUT, keel_db_acquire(s, &c, &d));
    ASSERT_OK(insert_v(a, 1));
    ASSERT_OK(insert_v(a, 2));
    keel_stmt *st;
    ASSERT_OK(keel_db_prepare(b, "SELECT v FROM t ORDER BY v", &st, &d));
    while (keel_stmt_step(st, &d) == 1)
        ;

    keel_buf out;
    keel_buf_init(&out, 1 << 20);
    ASSERT_OK(keel_metrics_expose(m, "db_", &out));
    assert_non_null(strstr(out.ptr, "db_sqlite_poolsize 1\n"));
    assert_non_null(strstr(out.ptr, "db_sqlite_pool_checked_out 2\n"));
    assert_non_null(strstr(out.ptr, "db_sqlite_pool_overflow 1\n"));
    assert_non_null(strstr(out.ptr, "db_sqlite_query_duration_seconds_bucket{operation=\"INSERT\","));
    assert_non_null(strstr(out.ptr, "db_sqlite_query_duration_seconds_count{operation=\"INSERT\"} 2\n"));
    /* one observation per execution, not per row */
    assert_non_null(strstr(out.ptr, "db_sqlite_query_duration_seconds_count{operation=\"SELECT\"} 1\n"));
    keel_buf_reset(&out);

    keel_db_release(b);
    keel_db_release(a); /* more idle than pool_size: closed */
    ASSERT_OK(keel_metrics_expose(m, "db_", &out));
    assert_non_null(strstr(out.ptr, "db_sqlite_pool_checked_out 0\n"));
    assert_non_null(strstr(out.ptr, "db_sqlite_pool_overflow 0\n"));
    keel_buf_cleanup(&out);
    keel_store_close(s);
    keel_metrics_destroy(m);
}

typedef struct worker {
    keel_store *s;
    int errors;
    keel_err last;
} worker;

static keel_err tx_increment(keel_db *db, void *ud)
{
    (void)ud;
    keel_stmt *st;
    keel_err rc = keel_db_prepare(db, "SELECT v FROM t WHERE id = 1", &st, NULL);
    if (rc != KEEL_OK)
        return rc;
    int r = keel_stmt_step(st, NULL);
    if (r != 1)
        return r < 0 ? (keel_err)r : KEEL_ENOTFOUND;
    int64_t v = keel_stmt_int64(st, 0);
    if ((rc = keel_db_prepare(db, "UPDATE t SET v = ? WHERE id = 1", &st, NULL)) != KEEL_OK)
        return rc;
    if ((rc = keel_stmt_bind_int64(st, 1, v + 1)) != KEEL_OK)
        return rc;
    r = keel_stmt_step(st, NULL);
    return r < 0 ? (keel_err)r : KEEL_OK;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 200; i++) {
        keel_err rc = keel_store_tx(w->s, tx_increment, NULL, NULL);
        if (rc != KEEL_OK) {
            w->errors++;
            w->last = rc;
        }
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    (void)state;
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    keel_store *s = open_store(&cfg);
    make_table(s);
    keel_db *db;
    keel_diag d;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    ASSERT_OK(keel_db_exec(db, "INSERT INTO t(id, v) VALUES (1, 0)", &d));
    keel_db_release(db);

    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){s, 0, KEEL_OK};
        assert_int_equal(0, pthread_create(&th[i], NULL, worker_main, &w[i]));
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(KEEL_OK, w[i].last);
        assert_int_equal(0, w[i].errors);
    }
    keel_stmt *st;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    ASSERT_OK(keel_db_prepare(db, "SELECT v FROM t WHERE id = 1", &st, &d));
    assert_int_equal(1, keel_stmt_step(st, &d));
    assert_int_equal(800, keel_stmt_int64(st, 0));
    keel_db_release(db);
    keel_store_close(s);
}

/* Open, create, insert, select with every allocation failing in turn: each failure is
 * KEEL_ENOMEM and leaves nothing behind (ASan/LSan checks the leaks). */
static keel_err oom_scenario(void)
{
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = dburl;
    keel_store *s = NULL;
    keel_db *db = NULL;
    keel_stmt *st;
    keel_err rc = keel_store_open(&s, &cfg, NULL);
    if (rc != KEEL_OK)
        return rc;
    if ((rc = keel_db_acquire(s, &db, NULL)) != KEEL_OK)
        goto out;
    if ((rc = keel_db_exec(db, "CREATE TABLE IF NOT EXISTS o(id INTEGER PRIMARY KEY, s TEXT)",
                           NULL)) != KEEL_OK)
        goto out;
    if ((rc = keel_db_prepare(db, "INSERT INTO o(s) VALUES (?)", &st, NULL)) != KEEL_OK)
        goto out;
    if ((rc = keel_stmt_bind_text(st, 1, "x", SIZE_MAX)) != KEEL_OK)
        goto out;
    int r = keel_stmt_step(st, NULL);
    if (r < 0) {
        rc = (keel_err)r;
        goto out;
    }
    if ((rc = keel_db_prepare(db, "SELECT count(*) FROM o WHERE s = ?", &st, NULL)) != KEEL_OK)
        goto out;
    if ((rc = keel_stmt_bind_text(st, 1, "x", SIZE_MAX)) != KEEL_OK)
        goto out;
    r = keel_stmt_step(st, NULL);
    rc = r == 1 ? KEEL_OK : r < 0 ? (keel_err)r : KEEL_EINTERNAL;
out:
    keel_db_release(db);
    keel_store_close(s);
    return rc;
}

static void test_oom(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    int n;
    for (n = 0; n < 200; n++) {
        keel_test_failalloc_arm(n);
        keel_err rc = oom_scenario();
        keel_test_failalloc_arm(-1);
        if (rc == KEEL_OK)
            break;
        assert_int_equal(KEEL_ENOMEM, rc);
    }
    keel_test_failalloc_remove();
    assert_true(n > 3); /* several allocations were exercised */
    assert_true(n < 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_tx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_exhaustion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_overflow_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
