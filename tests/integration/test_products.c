/* Integration: keeld's products API over real HTTP on its embedded SQLite database. */
#define _GNU_SOURCE 1
#include "test.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static keel_test_server srv;
static const char *const json_ct[] = {"Content-Type: application/json", NULL};
static char pg_db[64];
static char pg_url[512];

static int setup_sqlite(void **state)
{
    (void)state;
    return keel_test_server_start(&srv, NULL);
}

/* The same API on PostgreSQL: a fresh database per run on the server that
 * scripts/with-services.sh started (KEEL_TEST_PG_DSN). */
static int setup_pg(void **state)
{
    (void)state;
    const char *dsn = getenv("KEEL_TEST_PG_DSN");
    if (dsn == NULL)
        return -1;
    snprintf(pg_db, sizeof(pg_db), "keel_it_%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "psql -q '%s' -c 'CREATE DATABASE %s' >/dev/null", dsn, pg_db);
    if (system(cmd) != 0)
        return -1;
    const char *slash = strrchr(dsn, '/');
    snprintf(pg_url, sizeof(pg_url), "DATABASE_URL=%.*s/%s", (int)(slash - dsn), dsn, pg_db);
    const char *env[] = {pg_url, NULL};
    return keel_test_server_start(&srv, env);
}

static int teardown(void **state)
{
    (void)state;
    keel_test_server_stop(&srv, SIGTERM, 10000);
    if (pg_db[0]) {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "psql -q '%s' -c 'DROP DATABASE IF EXISTS %s' >/dev/null",
                 getenv("KEEL_TEST_PG_DSN"), pg_db);
        if (system(cmd) != 0)
            fprintf(stderr, "could not drop %s\n", pg_db);
        pg_db[0] = '\0';
    }
    return 0;
}

static json_t *data_of(const keel_test_resp *r)
{
    json_t *v = json_loads(r->body, 0, NULL);
    if (v == NULL)
        fail_msg("not JSON: %s", r->body);
    return v;
}

static void create(const char *name, int price, char id_out[64])
{
    char body[256];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"price_minor\":%d,\"currency\":\"EUR\"}",
             name, price);
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/products", json_ct, body, strlen(body), &r));
    assert_int_equal(201, r.status);
    json_t *v = data_of(&r);
    json_t *d = json_object_get(v, "data");
    assert_string_equal(name, json_string_value(json_object_get(d, "name")));
    assert_int_equal(price, json_integer_value(json_object_get(d, "price_minor")));
    snprintf(id_out, 64, "%s", json_string_value(json_object_get(d, "id")));
    assert_true(keel_uuid_valid(keel_str_c(id_out)));
    char loc[128], want[128];
    assert_true(keel_test_resp_header(&r, "location", loc, sizeof(loc)));
    snprintf(want, sizeof(want), "/api/v1/products/%s", id_out);
    assert_string_equal(want, loc);
    json_decref(v);
    keel_test_resp_free(&r);
}

static void test_crud_and_pagination(void **state)
{
    (void)state;
    char ids[5][64];
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof(name), "Widget %d", i);
        create(name, 100 * (i + 1), ids[i]);
    }
    keel_test_resp r;
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/products/%s", ids[2]);
    ASSERT_OK(keel_test_http(&srv, "GET", path, NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    json_t *v = data_of(&r);
    assert_string_equal("Widget 2", json_string_value(json_object_get(json_object_get(v, "data"), "name")));
    json_decref(v);
    keel_test_resp_free(&r);

    /* the full list holds the five, oldest first (creation time, then id for ties) */
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/products?limit=100", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    json_t *all = data_of(&r);
    json_t *full = json_object_get(all, "data");
    assert_int_equal(5, json_array_size(full));
    for (int i = 0; i < 5; i++) {
        int found = 0;
        for (size_t k = 0; k < 5; k++)
            found |= strcmp(ids[i], json_string_value(json_object_get(json_array_get(full, k), "id"))) == 0;
        assert_true(found);
    }
    keel_test_resp_free(&r);
    /* a page is the matching slice of that order */
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/products?skip=1&limit=2", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    v = data_of(&r);
    json_t *arr = json_object_get(v, "data");
    assert_int_equal(2, json_array_size(arr));
    assert_string_equal(json_string_value(json_object_get(json_array_get(full, 1), "id")),
                        json_string_value(json_object_get(json_array_get(arr, 0), "id")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(full, 2), "id")),
                        json_string_value(json_object_get(json_array_get(arr, 1), "id")));
    json_decref(all);
    json_t *meta = json_object_get(v, "meta");
    assert_int_equal(2, json_integer_value(json_object_get(meta, "count")));
    assert_true(json_is_true(json_object_get(meta, "success")));
    json_decref(v);
    keel_test_resp_free(&r);

    ASSERT_OK(keel_test_http(&srv, "DELETE", path, NULL, NULL, 0, &r));
    assert_int_equal(204, r.status);
    keel_test_resp_free(&r);
    ASSERT_OK(keel_test_http(&srv, "GET", path, NULL, NULL, 0, &r));
    assert_int_equal(404, r.status);
    keel_test_resp_free(&r);
    ASSERT_OK(keel_test_http(&srv, "DELETE", path, NULL, NULL, 0, &r));
    assert_int_equal(404, r.status);
    keel_test_resp_free(&r);
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/products/not-a-uuid", NULL, NULL, 0, &r));
    assert_int_equal(404, r.status);
    keel_test_resp_free(&r);
}

static void test_bad_input(void **state)
{
    (void)state;
    keel_test_resp r;
    const char *bad = "{\"name\":\"\",\"price_minor\":-5,\"currency\":\"eur\",\"color\":\"red\"}";
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/products", json_ct, bad, strlen(bad), &r));
    assert_int_equal(422, r.status);
    json_t *v = data_of(&r);
    assert_int_equal(4, json_array_size(json_object_get(v, "errors")));
    json_decref(v);
    keel_test_resp_free(&r);
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/products?limit=1000&skip=-1", NULL, NULL, 0, &r));
    assert_int_equal(422, r.status);
    v = data_of(&r);
    assert_int_equal(2, json_array_size(json_object_get(v, "errors")));
    json_decref(v);
    keel_test_resp_free(&r);
}

static void test_readiness_includes_database(void **state)
{
    (void)state;
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/health/ready", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    assert_non_null(strstr(r.body, "\"database\":\"ok\""));
    keel_test_resp_free(&r);
    ASSERT_OK(keel_test_http(&srv, "GET", "/metrics/db_", NULL, NULL, 0, &r));
    const char *engine = pg_db[0] ? "db_postgres" : "db_sqlite";
    char want[128];
    snprintf(want, sizeof(want), "%s_query_duration_seconds_bucket{operation=\"INSERT\"", engine);
    assert_non_null(strstr(r.body, want));
    keel_test_resp_free(&r);
}

/* PostgreSQL goes down under a running keeld: requests get a 503 problem, readiness fails,
 * and both recover on their own when the database returns. */
static void test_database_down_and_back(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/../../scripts/test-services.sh stop-pg", KEEL_TEST_DATA);
    assert_int_equal(0, system(cmd));
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/products", NULL, NULL, 0, &r));
    assert_int_equal(503, r.status);
    json_t *v = data_of(&r);
    assert_int_equal(503, json_integer_value(json_object_get(v, "status")));
    assert_null(strstr(r.body, "postgres")); /* no engine detail leaks to the client */
    json_decref(v);
    keel_test_resp_free(&r);
    ASSERT_OK(keel_test_http(&srv, "GET", "/health/ready", NULL, NULL, 0, &r));
    assert_int_equal(503, r.status);
    assert_non_null(strstr(r.body, "\"check\":\"database\""));
    keel_test_resp_free(&r);

    snprintf(cmd, sizeof(cmd), "%s/../../scripts/test-services.sh start-pg", KEEL_TEST_DATA);
    assert_int_equal(0, system(cmd));
    long status = 0;
    for (int i = 0; i < 50 && status != 200; i++) { /* dead pooled connections are replaced */
        ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/products", NULL, NULL, 0, &r));
        status = r.status;
        keel_test_resp_free(&r);
        if (status != 200)
            usleep(100000);
    }
    assert_int_equal(200, status);
    ASSERT_OK(keel_test_http(&srv, "GET", "/health/ready", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    keel_test_resp_free(&r);
}

/* Run keeld (test environment, console off) with extra environment in dir. */
static int run_keeld(const char *dir, const char *const *env, const char *arg, char *out,
                     size_t cap)
{
    const char *e[8] = {"ENVIRONMENT=test", "LOG_CONSOLE=off"};
    for (size_t i = 0; env && env[i] && i < 5; i++)
        e[i + 2] = env[i];
    const char *argv[] = {"keeld", arg, NULL};
    keel_test_run_opts o = {.dir = dir, .env = e};
    return keel_test_run(KEEL_TEST_KEELD, argv, &o, out, cap);
}

static void test_migrate_only_and_bad_url(void **state)
{
    (void)state;
    char dir[256], out[4096];
    snprintf(dir, sizeof(dir), "%s/migrate.XXXXXX", KEEL_TEST_TMP);
    assert_non_null(mkdtemp(dir));
    assert_int_equal(0, run_keeld(dir, NULL, "--migrate-only", out, sizeof(out)));
    assert_non_null(strstr(out, "schema version 4"));
    struct stat sb;
    char db[300];
    snprintf(db, sizeof(db), "%s/var/keel.db", dir);
    assert_int_equal(0, stat(db, &sb));
    /* idempotent */
    assert_int_equal(0, run_keeld(dir, NULL, "--migrate-only", out, sizeof(out)));
    assert_non_null(strstr(out, "schema version 4"));
    /* an unsupported or malformed DATABASE_URL is a clear startup error (exit 2) */
    const char *mysql[] = {"DATABASE_URL=mysql://u:secretpw@h/db", NULL};
    assert_int_equal(2, run_keeld(dir, mysql, "--migrate-only", out, sizeof(out)));
    assert_non_null(strstr(out, "DATABASE_URL"));
    assert_null(strstr(out, "secretpw"));
    /* an unreachable PostgreSQL is a runtime failure (exit 1) that names the problem */
    const char *pg[] = {"DATABASE_URL=postgres://u:secretpw@127.0.0.1:1/db", NULL};
    assert_int_equal(1, run_keeld(dir, pg, "--migrate-only", out, sizeof(out)));
    assert_non_null(strstr(out, "keeld: database:"));
    assert_null(strstr(out, "secretpw"));
}

int main(void)
{
    const struct CMUnitTest served[] = {
        cmocka_unit_test(test_crud_and_pagination),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_readiness_includes_database),
    };
    const struct CMUnitTest served_pg[] = {
        cmocka_unit_test(test_crud_and_pagination),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_readiness_includes_database),
        cmocka_unit_test(test_database_down_and_back),
    };
    const struct CMUnitTest cli[] = {
        cmocka_unit_test(test_migrate_only_and_bad_url),
    };
    int rc = cmocka_run_group_tests_name("products on sqlite", served, setup_sqlite, teardown);
    if (getenv("KEEL_TEST_PG_DSN") != NULL)
        rc |= cmocka_run_group_tests_name("products on postgres", served_pg, setup_pg, teardown);
    else
        fprintf(stderr, "KEEL_TEST_PG_DSN unset: PostgreSQL group not run "
                        "(make test always sets it)\n");
    rc |= cmocka_run_group_tests_name("startup", cli, NULL, NULL);
    return rc;
}
