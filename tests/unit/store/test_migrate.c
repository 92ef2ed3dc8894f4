/* Tests for src/store/migrate.c: keel_store_migrate / keel_store_schema_version on SQLite,
 * with the fixtures of tests/data/migrations copied into a fresh temporary directory. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel_int.h"

#include <keel/store.h>

typedef struct fx {
    char tmp[512];  /* temporary directory */
    char mig[600];  /* tmp/mig: the migrations root */
    char sub[640];  /* tmp/mig/sqlite */
    keel_store *s;
} fx;

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(strlen(text), fwrite(text, 1, strlen(text), f));
    assert_int_equal(0, fclose(f));
}

static void copy_fixture(const char *name, const char *to_dir)
{
    char src[1024];
    snprintf(src, sizeof(src), "%s/migrations/sqlite/%s", KEEL_TEST_DATA, name);
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    write_file(to_dir, name, buf);
}

/* Fresh tmp dir with mig/sqlite/ (fixtures copied when with_fixtures) and an open store. */
static void fx_setup(fx *f, int with_fixtures)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->tmp, sizeof(f->tmp), "%s/migrateXXXXXX", KEEL_TEST_TMP);
    assert_non_null(mkdtemp(f->tmp));
    snprintf(f->mig, sizeof(f->mig), "%s/mig", f->tmp);
    snprintf(f->sub, sizeof(f->sub), "%s/sqlite", f->mig);
    assert_int_equal(0, mkdir(f->mig, 0700));
    assert_int_equal(0, mkdir(f->sub, 0700));
    if (with_fixtures) {
        copy_fixture("0001_create_users.sql", f->sub);
        copy_fixture("0002_create_orders.sql", f->sub);
        copy_fixture("README.md", f->sub);
    }
    char url[700];
    snprintf(url, sizeof(url), "sqlite:%s/m.db", f->tmp);
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    cfg.pool_size = 2;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_store_open(&f->s, &cfg, &d);
    if (e != KEEL_OK)
        fail_msg("keel_store_open: %s %s", keel_err_name(e), d.msg);
}

static void fx_teardown(fx *f)
{
    keel_store_close(f->s);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->tmp);
    assert_int_equal(0, system(cmd));
}

/* First column of the first row of a parameterless query as an integer. */
static int64_t query_int(keel_store *s, const char *sql)
{
    keel_db *db;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, sql, &st, &d);
    if (e != KEEL_OK)
        fail_msg("prepare <%s>: %s", sql, d.msg);
    int64_t v = -1;
    int r;
    int rows = 0;
    while ((r = keel_stmt_step(st, &d)) == 1)
        if (rows++ == 0)
            v = keel_stmt_int64(st, 0);
    assert_int_equal(0, r);
    keel_db_release(db);
    return v;
}

static int table_exists(keel_store *s, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'", name);
    return (int)query_int(s, sql);
}

static int64_t version_of(keel_store *s)
{
    int64_t v = -1;
    ASSERT_OK(keel_store_schema_version(s, &v));
    return v;
}

static void migrate_ok(fx *f)
{
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_store_migrate(f->s, f->mig, &d);
    if (e != KEEL_OK)
        fail_msg("keel_store_migrate: %s %s", keel_err_name(e), d.msg);
}

static void test_apply_idempotent_incremental(void **state)
{
    (void)state;
    fx f;
    fx_setup(&f, 1);
    assert_int_equal(0, version_of(f.s)); /* no schema_migrations table yet */
    migrate_ok(&f);
    assert_int_equal(2, version_of(f.s));
    assert_int_equal(1, table_exists(f.s, "users"));
    assert_int_equal(1, table_exists(f.s, "orders"));
    assert_int_equal(2, query_int(f.s, "SELECT COUNT(*) FROM schema_migrations"));
    assert_int_equal(1, query_int(f.s, "SELECT COUNT(*) FROM schema_migrations WHERE "
                                       "version = 2 AND name = '0002_create_orders.sql' AND "
                                       "applied_at_ms > 1600000000000"));
    /* the second statement of 0002 ran, and the literal with ';' and '?' survived */
    assert_int_equal(1, query_int(f.s, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' "
                                       "AND name = 'orders_user'"));
    assert_int_equal(1, query_int(f.s, "SELECT COUNT(*) FROM pragma_table_info('orders') "
                                       "WHERE name = 'note' AND dflt_value = '''a;b?'''"));

    /* idempotent */
    migrate_ok(&f);
    assert_int_equal(2, query_int(f.s, "SELECT COUNT(*) FROM schema_migrations"));
    assert_int_equal(2, version_of(f.s));

    /* a third file: only it is applied */
    write_file(f.sub, "0003_create_items.sql",
               "CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT NOT NULL);\n");
    migrate_ok(&f);
    assert_int_equal(3, query_int(f.s, "SELECT COUNT(*) FROM schema_migrations"));
    assert_int_equal(3, version_of(f.s));
    assert_int_equal(1, table_exists(f.s, "items"));
    fx_teardown(&f);
}

static void test_broken_migration_leaves_no_trace(void **state)
{
    (void)state;
    fx f;
    fx_setup(&f, 1);
    migrate_ok(&f);
    write_file(f.sub, "0003_broken.sql",
               "CREATE TABLE half_done (id INTEGER PRIMARY KEY);\n"
               "CREATE TABLEE oops (id INTEGER PRIMARY KEY);\n");
    keel_diag d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(KEEL_EPARSE, keel_store_migrate(f.s, f.mig, &d));
    assert_int_equal(KEEL_EPARSE, d.code);
    assert_non_null(strstr(d.msg, "sqlite/0003_broken.sql"));
    assert_non_null(strstr(d.msg, "syntax error")); /* the engine's message */
    assert_int_equal(0, table_exists(f.s, "half_done"));
    assert_int_equal(0, table_exists(f.s, "oops"));
    assert_int_equal(2, version_of(f.s));
    assert_int_equal(2, query_int(f.s, "SELECT COUNT(*) FROM schema_migrations"));

    /* fixing the file lets it through, and the next file after it too */
    write_file(f.sub, "0003_broken.sql", "CREATE TABLE half_done (id INTEGER PRIMARY KEY);\n");
    write_file(f.sub, "0004_more.sql", "ALTER TABLE half_done ADD COLUMN x TEXT;\n");
    migrate_ok(&f);
    assert_int_equal(4, version_of(f.s));
    assert_int_equal(1, table_exists(f.s, "half_done"));
    fx_teardown(&f);
}

static void test_newer_database_refused(void **state)
{
    (void)state;
    fx f;
    fx_setup(&f, 1);
    keel_db *db;
    ASSERT_OK(keel_db_acquire(f.s, &db, NULL));
    ASSERT_OK(keel_db_exec(db,
                           "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name "
                           "TEXT NOT NULL, applied_at_ms INTEGER NOT NULL);"
                           "INSERT INTO schema_migrations VALUES (9999, '9999_future.sql', 1);",
                           NULL));
    keel_db_release(db);
    keel_diag d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(KEEL_ESTATE, keel_store_migrate(f.s, f.mig, &d));
    assert_string_equal("database schema version 9999 is newer than this binary knows (2); "
                        "refusing to start",
                        d.msg);
    assert_int_equal(0, table_exists(f.s, "users")); /* nothing applied */
    assert_int_equal(9999, version_of(f.s));
    fx_teardown(&f);
}

static void expect_einval(fx *f, const char *needle1, const char *needle2)
{
    keel_diag d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(KEEL_EINVAL, keel_store_migrate(f->s, f->mig, &d));
    if (strstr(d.msg, needle1) == NULL || (needle2 != NULL && strstr(d.msg, needle2) == NULL))
        fail_msg("diag <%s> does not name %s", d.msg, needle1);
    assert_int_equal(0, table_exists(f->s, "users")); /* rejected before applying anything */
}

static void remove_file(const fx *f, const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", f->sub, name);
    assert_int_equal(0, unlink(path));
}

static void test_bad_file_names(void **state)
{
    (void)state;
    fx f;
    fx_setup(&f, 1);
    static const char *const bad[] = {"12_short.sql", "0003_Upper.sql", "0003_x.txt",
                                      "0003-dash.sql", "0003_.sql", "0003_x.sql.bak",
                                      "0003name.sql"};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        write_file(f.sub, bad[i], "SELECT 1;\n");
        expect_einval(&f, bad[i], NULL);
        remove_file(&f, bad[i]);
    }
    write_file(f.sub, "0002_again.sql", "SELECT 1;\n");
    expect_einval(&f, "0002_again.sql", "0002_create_orders.sql");
    remove_file(&f, "0002_again.sql");
    /* same version, different number of digits */
    write_file(f.sub, "00001_dup.sql", "SELECT 1;\n");
    expect_einval(&f, "00001_dup.sql", "0001_create_users.sql");
    remove_file(&f, "00001_dup.sql");
    /* ignored names; then everything is fine */
    write_file(f.sub, "notes.txt", "x");
    write_file(f.sub, ".hidden.sql", "x");
    migrate_ok(&f);
    assert_int_equal(2, version_of(f.s));
    fx_teardown(&f);
}

static void test_dirs_and_limits(void **state)
{
    (void)state;
    fx f;
    fx_setup(&f, 0);
    keel_diag d;
    memset(&d, 0, sizeof(d));
    char missing[700];
    snprintf(missing, sizeof(missing), "%s/nope", f.tmp);
    assert_int_equal(KEEL_EIO, keel_store_migrate(f.s, missing, &d));
    assert_non_null(strstr(d.msg, missing));
    /* an empty engine directory, and a root without one, both mean "nothing to do" */
    migrate_ok(&f);
    assert_int_equal(0, version_of(f.s));
    assert_int_equal(0, rmdir(f.sub));
    migrate_ok(&f);
    assert_int_equal(0, version_of(f.s));
    /* a file over the size cap */
    assert_int_equal(0, mkdir(f.sub, 0700));
    char path[1024];
    snprintf(path, sizeof(path), "%s/0001_huge.sql", f.sub);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(0, ftruncate(fileno(fp), 5 * 1024 * 1024));
    fclose(fp);
    memset(&d, 0, sizeof(d));
    assert_int_equal(KEEL_ETOOBIG, keel_store_migrate(f.s, f.mig, &d));
    assert_non_null(strstr(d.msg, "0001_huge.sql"));
    assert_int_equal(0, version_of(f.s));
    fx_teardown(&f);
}

/* Library components: embedded SQL, versions tracked per component apart from the app's. */
static void test_component_migrations(void **state)
{
    (void)state;
    fx f;
    fx_setup(&f, 1);
    migrate_ok(&f); /* the application's 0001, 0002 */
    static const keel_migration v1[] = {
        {1, "widgets", "CREATE TABLE keel_widgets (id INTEGER PRIMARY KEY)", "unused"},
    };
    static const keel_migration v2[] = {
        {1, "widgets", "CREATE TABLE keel_widgets (id INTEGER PRIMARY KEY)", "unused"},
        {2, "widget_name", "ALTER TABLE keel_widgets ADD COLUMN name TEXT", "unused"},
    };
    keel_diag d;
    memset(&d, 0, sizeof(d));
    ASSERT_OK(keel_store_migrate_component(f.s, "keel.test", v1, 1, &d));
    ASSERT_OK(keel_store_migrate_component(f.s, "keel.test", v1, 1, &d)); /* idempotent */
    assert_int_equal(1, table_exists(f.s, "keel_widgets"));
    ASSERT_OK(keel_store_migrate_component(f.s, "keel.test", v2, 2, &d));
    assert_int_equal(2, query_int(f.s, "SELECT COUNT(*) FROM keel_schema_migrations WHERE "
                                       "component = 'keel.test'"));
    /* The application's version is untouched by the component's. */
    assert_int_equal(2, version_of(f.s));
    assert_int_equal(0, query_int(f.s, "SELECT COUNT(*) FROM keel_widgets"));
    /* Another component has its own numbering. */
    ASSERT_OK(keel_store_migrate_component(f.s, "keel.other", v1 + 0, 0, &d));
    /* A binary that knows only v1 refuses the database that has v2. */
    assert_int_equal(KEEL_ESTATE, keel_store_migrate_component(f.s, "keel.test", v1, 1, &d));
    assert_non_null(strstr(d.msg, "keel.test schema version 2 is newer"));
    /* A failing migration leaves nothing and names itself. */
    static const keel_migration bad[] = {
        {1, "widgets", "CREATE TABLE keel_widgets (id INTEGER PRIMARY KEY)", "unused"},
        {2, "widget_name", "ALTER TABLE keel_widgets ADD COLUMN name TEXT", "unused"},
        {3, "broken", "CREATE TABLE keel_gizmos (id INTEGER); CREATE TABLE oops (", "unused"},
    };
    assert_int_not_equal(KEEL_OK, keel_store_migrate_component(f.s, "keel.test", bad, 3, &d));
    assert_non_null(strstr(d.msg, "keel.test 0003_broken"));
    assert_int_equal(0, table_exists(f.s, "keel_gizmos"));
    /* Bad lists and names are rejected before touching the database. */
    static const keel_migration unordered[] = {
        {2, "b", "SELECT 1", "SELECT 1"},
        {1, "a", "SELECT 1", "SELECT 1"},
    };
    assert_int_equal(KEEL_EINVAL,
                     keel_store_migrate_component(f.s, "keel.x", unordered, 2, &d));
    assert_int_equal(KEEL_EINVAL, keel_store_migrate_component(f.s, "Bad Name", v1, 1, &d));
    assert_int_equal(KEEL_EINVAL, keel_store_migrate_component(f.s, "", v1, 1, &d));
    fx_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_idempotent_incremental),
        cmocka_unit_test(test_broken_migration_leaves_no_trace),
        cmocka_unit_test(test_newer_database_refused),
        cmocka_unit_test(test_bad_file_names),
        cmocka_unit_test(test_dirs_and_limits),
        cmocka_unit_test(test_component_migrations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
