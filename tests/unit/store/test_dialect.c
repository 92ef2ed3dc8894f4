/* Tests for src/store/dialect.c: keel_store_dialect_sql on both engines. */
#include "test.h"

#include <string.h>

#include "keel_int.h"

#include <keel/store.h>

#define NOW_SQLITE "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
#define NOW_PG "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint"

/* Rewrite sql for engine with a 4 KiB cap; expect success and return the text (static). */
static const char *rw(keel_store_engine eng, const char *sql, int *np)
{
    static char res[4096];
    keel_buf b;
    keel_buf_init(&b, sizeof(res) - 1);
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_store_dialect_sql(eng, sql, &b, np, &d);
    if (e != KEEL_OK)
        fail_msg("rewrite of <%s> failed: %s (%s)", sql, keel_err_name(e), d.msg);
    assert_non_null(b.ptr);
    assert_int_equal(strlen(b.ptr), b.len);
    memcpy(res, b.ptr, b.len + 1);
    keel_buf_cleanup(&b);
    return res;
}

/* Expect failure code; returns diag for inspection. */
static keel_diag rw_fail(keel_store_engine eng, const char *sql, keel_err want, size_t cap)
{
    keel_buf b;
    keel_buf_init(&b, cap);
    keel_diag d;
    memset(&d, 0, sizeof(d));
    int np = 77;
    assert_int_equal(want, keel_store_dialect_sql(eng, sql, &b, &np, &d));
    assert_int_equal(want, d.code);
    assert_int_equal(0, np);
    keel_buf_cleanup(&b);
    return d;
}

static void test_placeholders(void **state)
{
    (void)state;
    int n = -1;
    assert_string_equal("SELECT a FROM t WHERE a = ? AND b IN (?, ?)",
                        rw(KEEL_STORE_SQLITE, "SELECT a FROM t WHERE a = ? AND b IN (?, ?)", &n));
    assert_int_equal(3, n);
    assert_string_equal("SELECT a FROM t WHERE a = $1 AND b IN ($2, $3)",
                        rw(KEEL_STORE_POSTGRES, "SELECT a FROM t WHERE a = ? AND b IN (?, ?)", &n));
    assert_int_equal(3, n);
    /* ten and more */
    assert_string_equal("VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                        rw(KEEL_STORE_POSTGRES, "VALUES(?,?,?,?,?,?,?,?,?,?,?)", &n));
    assert_int_equal(11, n);
    /* nparams may be NULL; no placeholders */
    assert_string_equal("SELECT 1", rw(KEEL_STORE_POSTGRES, "SELECT 1", NULL));
    assert_string_equal("", rw(KEEL_STORE_SQLITE, "", &n));
    assert_int_equal(0, n);
}

static void test_quoted_and_comments_untouched(void **state)
{
    (void)state;
    int n = -1;
    const char *sql = "SELECT '?', 'it''s ? {x}', \"we\"\"ird?{y}\" FROM t -- what? {z}\n"
                      "WHERE a = ? /* why? {w} ' \" */ AND b = ?";
    assert_string_equal("SELECT '?', 'it''s ? {x}', \"we\"\"ird?{y}\" FROM t -- what? {z}\n"
                        "WHERE a = $1 /* why? {w} ' \" */ AND b = $2",
                        rw(KEEL_STORE_POSTGRES, sql, &n));
    assert_int_equal(2, n);
    assert_string_equal(sql, rw(KEEL_STORE_SQLITE, sql, &n));
    assert_int_equal(2, n);
    /* line comment at end of input without newline */
    assert_string_equal("SELECT $1 -- ?", rw(KEEL_STORE_POSTGRES, "SELECT ? -- ?", &n));
    assert_int_equal(1, n);
    /* empty literal, adjacent literals, '-' and '/' alone */
    assert_string_equal("SELECT '' || '''' , 4-$1/2", rw(KEEL_STORE_POSTGRES,
                                                         "SELECT '' || '''' , 4-?/2", &n));
    assert_int_equal(1, n);
    /* casts survive */
    assert_string_equal("SELECT $1::text", rw(KEEL_STORE_POSTGRES, "SELECT ?::text", &n));
}

static void test_tokens(void **state)
{
    (void)state;
    int n = -1;
    assert_string_equal("UPDATE t SET at = " NOW_SQLITE " WHERE id = ?",
                        rw(KEEL_STORE_SQLITE, "UPDATE t SET at = {now_ms} WHERE id = ?", &n));
    assert_int_equal(1, n);
    assert_string_equal("UPDATE t SET at = " NOW_PG " WHERE id = $1",
                        rw(KEEL_STORE_POSTGRES, "UPDATE t SET at = {now_ms} WHERE id = ?", &n));
    assert_int_equal(1, n);
    assert_string_equal("SELECT id FROM jobs WHERE run_at <= $1 LIMIT 1 FOR UPDATE SKIP LOCKED",
                        rw(KEEL_STORE_POSTGRES,
                           "SELECT id FROM jobs WHERE run_at <= ? LIMIT 1 {skip_locked}", &n));
    assert_string_equal("SELECT id FROM jobs WHERE run_at <= ? LIMIT 1 ",
                        rw(KEEL_STORE_SQLITE,
                           "SELECT id FROM jobs WHERE run_at <= ? LIMIT 1 {skip_locked}", &n));
    assert_string_equal(NOW_PG NOW_PG, rw(KEEL_STORE_POSTGRES, "{now_ms}{now_ms}", &n));
    assert_int_equal(0, n);
}

static void test_errors_with_offsets(void **state)
{
    (void)state;
    keel_diag d = rw_fail(KEEL_STORE_SQLITE, "SELECT {nope} FROM t", KEEL_EPARSE, 4096);
    assert_int_equal(7, d.offset);
    assert_non_null(strstr(d.msg, "{nope}"));
    assert_non_null(strstr(d.msg, "byte 7"));
    d = rw_fail(KEEL_STORE_POSTGRES, "SELECT ? , {NOW_MS}", KEEL_EPARSE, 4096);
    assert_int_equal(11, d.offset);
    d = rw_fail(KEEL_STORE_SQLITE, "SELECT {now_ms", KEEL_EPARSE, 4096);
    assert_int_equal(7, d.offset);
    d = rw_fail(KEEL_STORE_SQLITE, "SELECT {}", KEEL_EPARSE, 4096);
    assert_int_equal(7, d.offset);
    d = rw_fail(KEEL_STORE_SQLITE, "SELECT 'abc''", KEEL_EPARSE, 4096);
    assert_int_equal(7, d.offset);
    assert_non_null(strstr(d.msg, "string literal"));
    d = rw_fail(KEEL_STORE_POSTGRES, "SELECT ? FROM \"t", KEEL_EPARSE, 4096);
    assert_int_equal(14, d.offset);
    assert_non_null(strstr(d.msg, "identifier"));
    d = rw_fail(KEEL_STORE_POSTGRES, "SELECT 1 /* ? *", KEEL_EPARSE, 4096);
    assert_int_equal(9, d.offset);
    assert_non_null(strstr(d.msg, "block comment"));
    d = rw_fail(KEEL_STORE_POSTGRES, "SELECT ?1", KEEL_EPARSE, 4096);
    assert_int_equal(7, d.offset);
    /* bad engine */
    keel_buf b;
    keel_buf_init(&b, 64);
    assert_int_equal(KEEL_EINVAL, keel_store_dialect_sql((keel_store_engine)9, "x", &b, NULL,
                                                         NULL));
    assert_int_equal(KEEL_EPARSE, keel_store_dialect_sql(KEEL_STORE_SQLITE, "{x}", &b, NULL,
                                                         NULL)); /* diag may be NULL */
    keel_buf_cleanup(&b);
}

static void test_cap(void **state)
{
    (void)state;
    /* "SELECT $1" is 9 bytes: fits exactly in 9, not in 8 */
    keel_buf b;
    keel_buf_init(&b, 9);
    int n = 0;
    ASSERT_OK(keel_store_dialect_sql(KEEL_STORE_POSTGRES, "SELECT ?", &b, &n, NULL));
    assert_string_equal("SELECT $1", b.ptr);
    keel_buf_cleanup(&b);
    rw_fail(KEEL_STORE_POSTGRES, "SELECT ?", KEEL_ETOOBIG, 8);
    rw_fail(KEEL_STORE_POSTGRES, "SELECT {now_ms}", KEEL_ETOOBIG, 20);
    rw_fail(KEEL_STORE_SQLITE, "SELECT 1234567890", KEEL_ETOOBIG, 10);
    /* appends to existing content */
    keel_buf_init(&b, 64);
    ASSERT_OK(keel_buf_append_str(&b, "-- x\n"));
    ASSERT_OK(keel_store_dialect_sql(KEEL_STORE_POSTGRES, "SELECT ?", &b, &n, NULL));
    assert_string_equal("-- x\nSELECT $1", b.ptr);
    keel_buf_cleanup(&b);
}

static void test_oom(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    keel_test_failalloc_arm(0);
    keel_buf b;
    keel_buf_init(&b, 4096);
    keel_diag d;
    assert_int_equal(KEEL_ENOMEM,
                     keel_store_dialect_sql(KEEL_STORE_POSTGRES, "SELECT ?", &b, NULL, &d));
    assert_int_equal(KEEL_ENOMEM, d.code);
    keel_test_failalloc_remove();
    keel_buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placeholders),
        cmocka_unit_test(test_quoted_and_comments_untouched),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_errors_with_offsets),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
