/* Tests for src/store/sqlite.c through the public API: every bind/column type, RETURNING,
 * upsert, error mapping (unique, check, foreign key, syntax), pagination.  Real SQLite
 * files in a mkdtemp directory. */
#define _GNU_SOURCE 1
#include "test.h"

#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store_int.h"

static char tmpdir[64];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

typedef struct fx {
    keel_store *s;
    keel_db *db;
} fx;

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/keel-sqlite-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    char url[128];
    snprintf(url, sizeof(url), "sqlite:%s/t.db", tmpdir);
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    fx *f = calloc(1, sizeof(*f));
    keel_diag d;
    if (keel_store_open(&f->s, &cfg, &d) != KEEL_OK) {
        fprintf(stderr, "open: %s\n", d.msg);
        return -1;
    }
    if (keel_db_acquire(f->s, &f->db, &d) != KEEL_OK)
        return -1;
    if (keel_db_exec(f->db,
                     "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
                     " qty INTEGER CHECK (qty >= 0), price REAL, data BLOB, note TEXT);"
                     "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
                     "CREATE TABLE child(id INTEGER PRIMARY KEY,"
                     " parent_id INTEGER NOT NULL REFERENCES parent(id));",
                     &d) != KEEL_OK) {
        fprintf(stderr, "exec: %s\n", d.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    keel_db_release(f->db);
    keel_store_close(f->s);
    free(f);
    nftw(tmpdir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static keel_err insert_item(keel_db *db, const char *name, int64_t qty, keel_diag *d)
{
    keel_stmt *st;
    keel_err rc = keel_db_prepare(db, "INSERT INTO item(name, qty) VALUES (?, ?)", &st, d);
    if (rc != KEEL_OK)
        return rc;
    if ((rc = keel_stmt_bind_text(st, 1, name, SIZE_MAX)) != KEEL_OK ||
        (rc = keel_stmt_bind_int64(st, 2, qty)) != KEEL_OK)
        return rc;
    int r = keel_stmt_step(st, d);
    return r < 0 ? (keel_err)r : KEEL_OK;
}

static void test_crud_all_types(void **state)
{
    fx *f = *state;
    keel_diag d;
    keel_stmt *st;
    static const char blob[] = {'a', '\0', 'b', '\0', '\xff'};
    const char *utf8 = "na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80"; /* naïve € 😀 */
    ASSERT_OK(keel_db_prepare(f->db,
                              "INSERT INTO item(name, qty, price, data, note)"
                              " VALUES (?, ?, ?, ?, ?) RETURNING id",
                              &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, utf8, SIZE_MAX));
    ASSERT_OK(keel_stmt_bind_int64(st, 2, INT64_C(9007199254740993)));
    ASSERT_OK(keel_stmt_bind_double(st, 3, 12.5));
    ASSERT_OK(keel_stmt_bind_blob(st, 4, blob, sizeof(blob)));
    ASSERT_OK(keel_stmt_bind_null(st, 5));
    assert_int_equal(1, keel_stmt_step(st, &d));
    int64_t id = keel_stmt_int64(st, 0);
    assert_int_equal(1, id);
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(1, keel_stmt_changes(st));

    ASSERT_OK(keel_db_prepare(f->db, "SELECT id, name, qty, price, data, note FROM item WHERE id = ?",
                              &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, id));
    assert_int_equal(1, keel_stmt_step(st, &d));
    assert_int_equal(6, keel_stmt_columns(st));
    size_t n;
    const char *name = keel_stmt_text(st, 1, &n);
    assert_int_equal(strlen(utf8), n);
    assert_memory_equal(utf8, name, n);
    assert_true(INT64_C(9007199254740993) == keel_stmt_int64(st, 2));
    assert_true(keel_stmt_double(st, 3) == 12.5);
    const void *b = keel_stmt_blob(st, 4, &n);
    assert_int_equal(sizeof(blob), n);
    assert_memory_equal(blob, b, n);
    assert_int_equal(1, keel_stmt_is_null(st, 5));
    assert_int_equal(0, keel_stmt_is_null(st, 4));
    assert_null(keel_stmt_text(st, 5, &n));
    assert_int_equal(0, n);
    assert_int_equal(0, keel_stmt_int64(st, 5));
    assert_int_equal(0, keel_stmt_step(st, &d));

    /* update with an explicit length (prefix of a longer buffer) */
    ASSERT_OK(keel_db_prepare(f->db, "UPDATE item SET note = ? WHERE id = ?", &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, "hello world", 5));
    ASSERT_OK(keel_stmt_bind_int64(st, 2, id));
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(1, keel_stmt_changes(st));
    ASSERT_OK(keel_db_prepare(f->db, "SELECT note FROM item WHERE id = ?", &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, id));
    assert_int_equal(1, keel_stmt_step(st, &d));
    assert_string_equal("hello", keel_stmt_text(st, 0, NULL));

    /* delete, then the row is gone */
    ASSERT_OK(keel_db_prepare(f->db, "DELETE FROM item WHERE id = ?", &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, id));
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(1, keel_stmt_changes(st));
    ASSERT_OK(keel_db_prepare(f->db, "SELECT note FROM item WHERE id = ?", &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, id));
    assert_int_equal(0, keel_stmt_step(st, &d));
}

static void test_cache_resets_bindings(void **state)
{
    fx *f = *state;
    keel_diag d;
    keel_stmt *a, *b;
    ASSERT_OK(keel_db_prepare(f->db, "SELECT ?", &a, &d));
    ASSERT_OK(keel_stmt_bind_int64(a, 1, 42));
    assert_int_equal(1, keel_stmt_step(a, &d)); /* left mid-result on purpose */
    ASSERT_OK(keel_db_prepare(f->db, "SELECT ?", &b, &d));
    assert_ptr_equal(a, b); /* cached */
    assert_int_equal(1, keel_stmt_step(b, &d));
    assert_int_equal(1, keel_stmt_is_null(b, 0)); /* bindings cleared */
    /* more statements than the cache holds still work */
    for (int i = 0; i < 100; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %d + ?", i);
        ASSERT_OK(keel_db_prepare(f->db, sql, &a, &d));
        ASSERT_OK(keel_stmt_bind_int64(a, 1, 1));
        assert_int_equal(1, keel_stmt_step(a, &d));
        assert_int_equal(i + 1, keel_stmt_int64(a, 0));
    }
}

static void test_upsert(void **state)
{
    fx *f = *state;
    keel_diag d;
    keel_stmt *st;
    const char *sql = "INSERT INTO item(name, qty) VALUES (?, ?)"
                      " ON CONFLICT(name) DO UPDATE SET qty = qty + excluded.qty RETURNING qty";
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(keel_db_prepare(f->db, sql, &st, &d));
        ASSERT_OK(keel_stmt_bind_text(st, 1, "widget", SIZE_MAX));
        ASSERT_OK(keel_stmt_bind_int64(st, 2, 5));
        assert_int_equal(1, keel_stmt_step(st, &d));
        assert_int_equal(5 * (i + 1), keel_stmt_int64(st, 0));
        assert_int_equal(0, keel_stmt_step(st, &d));
    }
    ASSERT_OK(keel_db_prepare(f->db,
                              "INSERT INTO item(name, qty) VALUES (?, 1) ON CONFLICT DO NOTHING",
                              &st, &d));
    ASSERT_OK(keel_stmt_bind_text(st, 1, "widget", SIZE_MAX));
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(0, keel_stmt_changes(st));
}

static void test_constraint_mapping(void **state)
{
    fx *f = *state;
    keel_diag d;
    ASSERT_OK(insert_item(f->db, "a", 1, &d));
    memset(&d, 0, sizeof(d));
    assert_int_equal(KEEL_EEXIST, insert_item(f->db, "a", 2, &d));
    assert_int_equal(KEEL_EEXIST, d.code);
    assert_non_null(strstr(d.msg, "UNIQUE constraint failed: item.name"));
    assert_int_equal(KEEL_ECONSTRAINT, insert_item(f->db, "b", -1, &d));
    assert_non_null(strstr(d.msg, "CHECK constraint failed"));
    /* bound values never reach the message */
    assert_int_equal(KEEL_EEXIST, insert_item(f->db, "a", 12345, &d));
    assert_null(strstr(d.msg, "12345"));

    /* primary key duplicate is EEXIST too; NOT NULL is ECONSTRAINT */
    keel_stmt *st;
    ASSERT_OK(keel_db_prepare(f->db, "INSERT INTO parent(id) VALUES (?)", &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, 7));
    assert_int_equal(0, keel_stmt_step(st, &d));
    ASSERT_OK(keel_db_prepare(f->db, "INSERT INTO parent(id) VALUES (?)", &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, 7));
    assert_int_equal(KEEL_EEXIST, keel_stmt_step(st, &d));
    ASSERT_OK(keel_db_prepare(f->db, "INSERT INTO item(name) VALUES (?)", &st, &d));
    ASSERT_OK(keel_stmt_bind_null(st, 1));
    assert_int_equal(KEEL_ECONSTRAINT, keel_stmt_step(st, &d));

    /* the statement is usable again after an error */
    ASSERT_OK(keel_db_prepare(f->db, "INSERT INTO parent(id) VALUES (?)", &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, 8));
    assert_int_equal(0, keel_stmt_step(st, &d));
}

static void test_foreign_keys(void **state)
{
    fx *f = *state;
    keel_diag d;
    keel_stmt *st;
    ASSERT_OK(keel_db_prepare(f->db, "INSERT INTO child(parent_id) VALUES (?)", &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, 99));
    assert_int_equal(KEEL_ECONSTRAINT, keel_stmt_step(st, &d));
    assert_non_null(strstr(d.msg, "FOREIGN KEY constraint failed"));
    ASSERT_OK(keel_db_exec(f->db, "INSERT INTO parent(id) VALUES (99)", &d));
    ASSERT_OK(keel_db_prepare(f->db, "INSERT INTO child(parent_id) VALUES (?)", &st, &d));
    ASSERT_OK(keel_stmt_bind_int64(st, 1, 99));
    assert_int_equal(0, keel_stmt_step(st, &d));
    assert_int_equal(KEEL_ECONSTRAINT, keel_db_exec(f->db, "DELETE FROM parent WHERE id = 99", &d));
}

static void test_pagination(void **state)
{
    fx *f = *state;
    keel_diag d;
    for (int i = 0; i < 25; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%02d", i);
        ASSERT_OK(insert_item(f->db, name, i, &d));
    }
    const char *sql = "SELECT qty FROM item ORDER BY id LIMIT ? OFFSET ?";
    int64_t seen = 0, pages = 0;
    for (int64_t skip = 0;; skip += 10) {
        keel_stmt *st;
        ASSERT_OK(keel_db_prepare(f->db, sql, &st, &d));
        ASSERT_OK(keel_stmt_bind_int64(st, 1, 10));
        ASSERT_OK(keel_stmt_bind_int64(st, 2, skip));
        int rows = 0, r;
        while ((r = keel_stmt_step(st, &d)) == 1) {
            assert_int_equal(seen, keel_stmt_int64(st, 0));
            seen++;
            rows++;
        }
        assert_int_equal(0, r);
        if (rows == 0)
            break;
        pages++;
    }
    assert_int_equal(25, seen);
    assert_int_equal(3, pages);
}

static void test_sql_errors(void **state)
{
    fx *f = *state;
    keel_diag d;
    keel_stmt *st = NULL;
    assert_int_equal(KEEL_EPARSE, keel_db_prepare(f->db, "SELEC 1", &st, &d));
    assert_null(st);
    assert_non_null(strstr(d.msg, "syntax error"));
    assert_int_equal(KEEL_EPARSE, keel_db_prepare(f->db, "SELECT * FROM nope", &st, &d));
    assert_non_null(strstr(d.msg, "no such table: nope"));
    assert_int_equal(KEEL_EINVAL, keel_db_prepare(f->db, "SELECT 1; SELECT 2", &st, &d));
    assert_int_equal(KEEL_EPARSE, keel_db_exec(f->db, "CREATE TABLE", &d));
    ASSERT_OK(keel_db_prepare(f->db, "SELECT ?", &st, &d));
    assert_int_equal(KEEL_ERANGE, keel_stmt_bind_int64(st, 2, 1));
}

static void test_unopenable_paths_are_eio(void **state)
{
    (void)state;
    char dir[64], url[160], path[128];
    snprintf(dir, sizeof(dir), "/tmp/keel-eio-XXXXXX");
    assert_non_null(mkdtemp(dir));
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    keel_store *s = NULL;
    keel_diag d;

    /* the database path is a directory: SQLite cannot open it */
    snprintf(path, sizeof(path), "%s/isdir", dir);
    assert_int_equal(0, mkdir(path, 0700));
    snprintf(url, sizeof(url), "sqlite:%s", path);
    cfg.url = url;
    assert_int_equal(KEEL_EIO, keel_store_open(&s, &cfg, &d));
    assert_null(s);
    char want[200];
    snprintf(want, sizeof(want), "cannot open %s: ", path);
    assert_true(strncmp(d.msg, want, strlen(want)) == 0);

    /* a parent component is a regular file: the directory cannot be created */
    snprintf(path, sizeof(path), "%s/file", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(url, sizeof(url), "sqlite:%s/sub/x.db", path);
    assert_int_equal(KEEL_EIO, keel_store_open(&s, &cfg, &d));
    snprintf(want, sizeof(want), "cannot create directory %s/sub: ", path);
    assert_true(strncmp(d.msg, want, strlen(want)) == 0);
    nftw(dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crud_all_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_resets_bindings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upsert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_constraint_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sql_errors, setup, teardown),
        cmocka_unit_test(test_unopenable_paths_are_eio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
