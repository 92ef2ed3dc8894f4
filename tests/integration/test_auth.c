/* Integration: keeld's identity routes over real HTTP - register, login, users/me v1 and v2,
 * refresh rotation and reuse detection (the whole session revoked, its access tokens then
 * refused), logout, an admin-only route (403), duplicate email (409), password policy (422),
 * wrong password and unknown email answered alike, malformed input never a 500, JWKS; on
 * SQLite and PostgreSQL (KEEL_TEST_PG_DSN); login/register rate limits per IP and per account,
 * and per account across two keeld processes sharing Redis (KEEL_TEST_REDIS_URL). */
#define _GNU_SOURCE 1
#include "test.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static keel_test_server srv;
static keel_test_server srv2; /* the second process of the Redis group */
static char pg_db[64];
static char pg_url[512];
static char uniq[48];
static int counter;

/* Generous limits for the functional groups: the limit groups set their own. */
#define NO_LIMITS "AUTH_RATE_LIMIT_PER_IP=100000", "AUTH_RATE_LIMIT_PER_ACCOUNT=100000"

static int setup_sqlite(void **state)
{
    (void)state;
    const char *env[] = {NO_LIMITS, NULL};
    return keel_test_server_start(&srv, env);
}

static int setup_pg(void **state)
{
    (void)state;
    const char *dsn = getenv("KEEL_TEST_PG_DSN");
    if (dsn == NULL)
        return -1;
    snprintf(pg_db, sizeof(pg_db), "keel_auth_%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "psql -q '%s' -c 'CREATE DATABASE %s' >/dev/null", dsn, pg_db);
    if (system(cmd) != 0)
        return -1;
    const char *slash = strrchr(dsn, '/');
    snprintf(pg_url, sizeof(pg_url), "DATABASE_URL=%.*s/%s", (int)(slash - dsn), dsn, pg_db);
    const char *env[] = {pg_url, NO_LIMITS, NULL};
    return keel_test_server_start(&srv, env);
}

static int setup_limits(void **state)
{
    (void)state;
    const char *env[] = {"AUTH_RATE_LIMIT_PER_IP=6", "AUTH_RATE_LIMIT_PER_ACCOUNT=3", NULL};
    return keel_test_server_start(&srv, env);
}

static int setup_redis_pair(void **state)
{
    (void)state;
    const char *url = getenv("KEEL_TEST_REDIS_URL");
    if (url == NULL || *url == '\0')
        return -1;
    static char env_redis[512];
    snprintf(env_redis, sizeof(env_redis), "REDIS_URL=%s", url);
    const char *env[] = {env_redis, "AUTH_RATE_LIMIT_PER_IP=100000",
                         "AUTH_RATE_LIMIT_PER_ACCOUNT=4", NULL};
    if (keel_test_server_start(&srv, env) != 0)
        return -1;
    return keel_test_server_start(&srv2, env);
}

static int teardown(void **state)
{
    (void)state;
    keel_test_server_stop(&srv, SIGTERM, 10000);
    if (srv2.pid > 0)
        keel_test_server_stop(&srv2, SIGTERM, 10000);
    memset(&srv2, 0, sizeof(srv2));
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

/* ------------------------------------------------------------------ helpers -- */

static json_t *json_of(const keel_test_resp *r)
{
    json_t *v = json_loads(r->body, 0, NULL);
    if (v == NULL)
        fail_msg("not JSON: %s", r->body);
    return v;
}

/* A fresh address for this run: tests never collide with earlier runs or each other. */
static void new_email(char *out, size_t n, const char *tag)
{
    snprintf(out, n, "%s.%s.%d@example.com", tag, uniq, ++counter);
}

/* Request with an optional JSON body and an optional bearer token. */
static void req(const keel_test_server *s, const char *method, const char *path,
                const char *body, const char *token, keel_test_resp *r)
{
    char auth[9000];
    const char *hdrs[3] = {NULL, NULL, NULL};
    size_t i = 0;
    if (body != NULL)
        hdrs[i++] = "Content-Type: application/json";
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdrs[i++] = auth;
    }
    ASSERT_OK(keel_test_http(s, method, path, hdrs, body, body ? strlen(body) : 0, r));
}

static long status_of(const keel_test_server *s, const char *method, const char *path,
                      const char *body, const char *token)
{
    keel_test_resp r;
    req(s, method, path, body, token, &r);
    long st = r.status;
    keel_test_resp_free(&r);
    return st;
}

static void assert_problem(const keel_test_resp *r, long status)
{
    assert_int_equal(status, r->status);
    char ct[128];
    assert_true(keel_test_resp_header(r, "content-type", ct, sizeof(ct)));
    assert_string_equal("application/problem+json", ct);
    json_t *v = json_of(r);
    assert_int_equal(status, json_integer_value(json_object_get(v, "status")));
    json_decref(v);
}

static void do_register(const char *email, const char *password, const char *name, long want)
{
    char body[1024];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"%s\"}", email,
             password, name);
    keel_test_resp r;
    req(&srv, "POST", "/api/v1/auth/register", body, NULL, &r);
    if (r.status != want)
        fail_msg("register %s: %ld %s", email, r.status, r.body);
    keel_test_resp_free(&r);
}

typedef struct tokens {
    char access[2048];
    char refresh[2048];
} tokens;

static long do_login_on(const keel_test_server *s, const char *email, const char *password,
                        tokens *t, keel_test_resp *keep)
{
    char body[1024];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
    keel_test_resp r;
    req(s, "POST", "/api/v1/auth/login", body, NULL, &r);
    long st = r.status;
    if (st == 200 && t != NULL) {
        json_t *v = json_of(&r);
        json_t *d = json_object_get(v, "data");
        snprintf(t->access, sizeof(t->access), "%s",
                 json_string_value(json_object_get(d, "access_token")));
        snprintf(t->refresh, sizeof(t->refresh), "%s",
                 json_string_value(json_object_get(d, "refresh_token")));
        assert_string_equal("bearer", json_string_value(json_object_get(d, "token_type")));
        assert_int_equal(15 * 60, json_integer_value(json_object_get(d, "expires_in")));
        json_decref(v);
    }
    if (keep != NULL)
        *keep = r;
    else
        keel_test_resp_free(&r);
    return st;
}

static void login_ok(const char *email, const char *password, tokens *t)
{
    assert_int_equal(200, do_login_on(&srv, email, password, t, NULL));
}

/* POST /auth/refresh; on 200 the new pair goes to out. */
static long do_refresh(const char *refresh, tokens *out)
{
    char body[2300];
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", refresh);
    keel_test_resp r;
    req(&srv, "POST", "/api/v1/auth/refresh", body, NULL, &r);
    long st = r.status;
    if (st == 200) {
        json_t *v = json_of(&r);
        json_t *d = json_object_get(v, "data");
        snprintf(out->access, sizeof(out->access), "%s",
                 json_string_value(json_object_get(d, "access_token")));
        snprintf(out->refresh, sizeof(out->refresh), "%s",
                 json_string_value(json_object_get(d, "refresh_token")));
        json_decref(v);
    } else {
        assert_problem(&r, st);
    }
    keel_test_resp_free(&r);
    return st;
}

/* Poll the JSON log of srv for a line holding both needles (records are written async). */
static int log_has(const keel_test_server *s, const char *a, const char *b)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/logs/app.json", s->dir);
    for (int i = 0; i < 50; i++) {
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            char line[8192];
            while (fgets(line, sizeof(line), f))
                if (strstr(line, a) && strstr(line, b)) {
                    fclose(f);
                    return 1;
                }
            fclose(f);
        }
        usleep(100000);
    }
    return 0;
}

/* -------------------------------------------------------------------- tests -- */

static void test_register_login_me(void **state)
{
    (void)state;
    char email[128], upper[128];
    new_email(email, sizeof(email), "Alice");
    keel_test_resp r;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"correct horse battery\",\"name\":\"Alice\"}",
             email);
    req(&srv, "POST", "/api/v1/auth/register", body, NULL, &r);
    assert_int_equal(201, r.status);
    assert_null(strstr(r.body, "password"));
    assert_null(strstr(r.body, "argon2"));
    json_t *v = json_of(&r);
    json_t *d = json_object_get(v, "data");
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(d, "id")));
    assert_true(keel_uuid_valid(keel_str_c(id)));
    char lower[128];
    snprintf(lower, sizeof(lower), "%s", email);
    for (char *p = lower; *p; p++)
        *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    assert_string_equal(lower, json_string_value(json_object_get(d, "email")));
    assert_string_equal("Alice", json_string_value(json_object_get(d, "name")));
    json_decref(v);
    keel_test_resp_free(&r);

    /* the same address in another case is the same account: 409 with the seed's text */
    snprintf(upper, sizeof(upper), "%s", lower);
    for (char *p = upper; *p && *p != '@'; p++)
        *p = (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"another fine pass\",\"name\":\"Mallory\"}", upper);
    req(&srv, "POST", "/api/v1/auth/register", body, NULL, &r);
    assert_problem(&r, 409);
    v = json_of(&r);
    assert_string_equal("Email already registered",
                        json_string_value(json_object_get(v, "detail")));
    json_decref(v);
    keel_test_resp_free(&r);

    tokens t;
    login_ok(upper, "correct horse battery", &t); /* login ignores the case too */

    req(&srv, "GET", "/api/v1/users/me", NULL, t.access, &r);
    assert_int_equal(200, r.status);
    v = json_of(&r);
    d = json_object_get(v, "data");
    assert_string_equal(id, json_string_value(json_object_get(d, "id")));
    assert_string_equal(lower, json_string_value(json_object_get(d, "email")));
    assert_null(json_object_get(d, "roles")); /* v1: id, email, name */
    assert_int_equal(3, json_object_size(d));
    /* again: now from keeld's cache, answered on the event loop (the inline check hands the
     * cached body to the handler) - the same data */
    for (int i = 0; i < 2; i++) {
        keel_test_resp r2;
        req(&srv, "GET", "/api/v1/users/me", NULL, t.access, &r2);
        assert_int_equal(200, r2.status);
        json_t *v2 = json_of(&r2);
        assert_true(json_equal(d, json_object_get(v2, "data")));
        json_decref(v2);
        keel_test_resp_free(&r2);
    }
    json_decref(v);
    keel_test_resp_free(&r);

    req(&srv, "GET", "/api/v2/users/me", NULL, t.access, &r);
    assert_int_equal(200, r.status);
    v = json_of(&r);
    d = json_object_get(v, "data");
    assert_string_equal(id, json_string_value(json_object_get(d, "id")));
    json_t *roles = json_object_get(d, "roles");
    assert_int_equal(1, json_array_size(roles));
    assert_string_equal("user", json_string_value(json_array_get(roles, 0)));
    assert_non_null(json_string_value(json_object_get(d, "created_at")));
    json_t *sess = json_object_get(d, "session");
    assert_true(keel_uuid_valid(keel_str_c(json_string_value(json_object_get(sess, "id")))));
    assert_string_equal("127.0.0.1", json_string_value(json_object_get(sess, "ip_address")));
    assert_int_equal(0, json_integer_value(json_object_get(sess, "rotations")));
    json_decref(v);
    keel_test_resp_free(&r);

    /* header versioning reaches the same v2 route */
    char auth[2100];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", t.access);
    const char *h[] = {auth, "X-API-Version: 2", NULL};
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/users/me", h, NULL, 0, &r));
    assert_int_equal(200, r.status);
    assert_non_null(strstr(r.body, "\"session\""));
    keel_test_resp_free(&r);

    /* without a token: 401 with a Bearer challenge */
    req(&srv, "GET", "/api/v1/users/me", NULL, NULL, &r);
    assert_problem(&r, 401);
    char www[256];
    assert_true(keel_test_resp_header(&r, "www-authenticate", www, sizeof(www)));
    assert_non_null(strstr(www, "Bearer"));
    keel_test_resp_free(&r);
}

static void test_wrong_password_and_unknown_email_alike(void **state)
{
    (void)state;
    char email[128], ghost[128];
    new_email(email, sizeof(email), "bob");
    new_email(ghost, sizeof(ghost), "nobody");
    do_register(email, "bob's secret pass", "Bob", 201);
    keel_test_resp wrong, unknown;
    assert_int_equal(401, do_login_on(&srv, email, "not bob's pass", NULL, &wrong));
    assert_int_equal(401, do_login_on(&srv, ghost, "not bob's pass", NULL, &unknown));
    json_t *a = json_of(&wrong), *b = json_of(&unknown);
    const char *keys[] = {"type", "title", "detail", "status", "errors"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_true(json_equal(json_object_get(a, keys[i]), json_object_get(b, keys[i])));
    assert_string_equal("Incorrect email or password.",
                        json_string_value(json_object_get(a, "detail")));
    char w1[256], w2[256];
    assert_true(keel_test_resp_header(&wrong, "www-authenticate", w1, sizeof(w1)));
    assert_true(keel_test_resp_header(&unknown, "www-authenticate", w2, sizeof(w2)));
    assert_string_equal(w1, w2);
    json_decref(a);
    json_decref(b);
    keel_test_resp_free(&wrong);
    keel_test_resp_free(&unknown);
}

static void expect_policy_422(const char *body, const char *field)
{
    keel_test_resp r;
    req(&srv, "POST", "/api/v1/auth/register", body, NULL, &r);
    assert_problem(&r, 422);
    json_t *v = json_of(&r);
    json_t *err = json_array_get(json_object_get(v, "errors"), 0);
    json_t *loc = json_object_get(err, "loc");
    if (json_array_size(loc) != 2 || strcmp(json_string_value(json_array_get(loc, 1)), field))
        fail_msg("expected an error on %s for %s, got %s", field, body, r.body);
    json_decref(v);
    keel_test_resp_free(&r);
}

static void test_password_policy_and_bad_input(void **state)
{
    (void)state;
    char email[128], body[2048];
    new_email(email, sizeof(email), "carol");
    const char *bad_pw[] = {"short", "aaaaaaaaaaaa", "Password123", "12345678", NULL};
    for (size_t i = 0; bad_pw[i]; i++) {
        snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"C\"}",
                 email, bad_pw[i]);
        expect_policy_422(body, "password");
    }
    /* the password may not be the email address */
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"C\"}", email,
             email);
    expect_policy_422(body, "password");
    /* 129 bytes (43 three-byte characters) is over the 128-byte cap */
    char longpw[400];
    for (int i = 0; i < 43; i++)
        memcpy(longpw + 3 * i, "\xe2\x82\xac", 3);
    longpw[129] = '\0';
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"C\"}", email,
             longpw);
    expect_policy_422(body, "password");
    snprintf(body, sizeof(body), "{\"email\":\"not-an-email\",\"password\":\"fine pass 1\","
                                 "\"name\":\"C\"}");
    expect_policy_422(body, "email");
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"fine pass 1\",\"name\":\"   \"}",
             email);
    expect_policy_422(body, "name");
    char longname[200];
    memset(longname, 'n', 101);
    longname[101] = '\0';
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"fine pass 1\",\"name\":\"%s\"}",
             email, longname);
    expect_policy_422(body, "name");
    /* none of these created the account */
    do_register(email, "fine pass 1", "Carol", 201);

    /* malformed bodies: 400/415/422 problems, never 500 */
    const char *bodies[] = {"{", "[]", "{\"email\":1}", "{\"refresh_token\":\"x\",\"x\":1}", "",
                            NULL};
    const char *paths[] = {"/api/v1/auth/register", "/api/v1/auth/login",
                           "/api/v1/auth/refresh", NULL};
    for (size_t p = 0; paths[p]; p++)
        for (size_t i = 0; bodies[i]; i++) {
            long st = status_of(&srv, "POST", paths[p], bodies[i], NULL);
            if (st != 400 && st != 422)
                fail_msg("%s with %s: %ld", paths[p], bodies[i], st);
        }
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/auth/login", NULL, "{}", 2, &r));
    assert_problem(&r, 415);
    keel_test_resp_free(&r);

    /* malformed Authorization headers and tokens: 401, never 500 */
    static char huge[9000];
    memset(huge, 'A', sizeof(huge) - 1);
    const char *auths[] = {"Authorization: Bearer",
                           "Authorization: Bearer ",
                           "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l",
                           "Authorization: Bearer a.b.c",
                           "Authorization: Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
                           "Authorization: Bearer not a token",
                           "Authorization: Bearer \x01\x02",
                           "Authorization: bearer ..",
                           NULL};
    for (size_t i = 0; auths[i]; i++) {
        const char *h[] = {auths[i], NULL};
        ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/users/me", h, NULL, 0, &r));
        if (r.status != 401 && r.status != 400)
            fail_msg("%s: %ld", auths[i], r.status);
        assert_problem(&r, r.status);
        keel_test_resp_free(&r);
    }
    assert_int_equal(401, status_of(&srv, "GET", "/api/v1/users/me", NULL, huge));
    /* a refresh token is not an access token, and the reverse */
    tokens t;
    login_ok(email, "fine pass 1", &t);
    assert_int_equal(401, status_of(&srv, "GET", "/api/v1/users/me", NULL, t.refresh));
    tokens unused;
    assert_int_equal(401, do_refresh(t.access, &unused));
    assert_int_equal(401, do_refresh("garbage", &unused));
    assert_int_equal(401, do_refresh(huge + sizeof(huge) - 2001, &unused));
    /* a tampered refresh token */
    char tampered[2048];
    snprintf(tampered, sizeof(tampered), "%s", t.refresh);
    char *dot = strchr(tampered, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    assert_int_equal(401, do_refresh(tampered, &unused));
    /* the session is untouched by all of that */
    assert_int_equal(200, status_of(&srv, "GET", "/api/v1/users/me", NULL, t.access));
}

static void test_refresh_rotation_and_reuse(void **state)
{
    (void)state;
    char email[128];
    new_email(email, sizeof(email), "dave");
    do_register(email, "dave's long pass", "Dave", 201);
    tokens t1, t2, t3, unused;
    login_ok(email, "dave's long pass", &t1);
    assert_int_equal(200, do_refresh(t1.refresh, &t2));
    assert_string_not_equal(t1.refresh, t2.refresh);
    assert_string_not_equal(t1.access, t2.access);
    /* rotation keeps the session: every access token of it works */
    assert_int_equal(200, status_of(&srv, "GET", "/api/v1/users/me", NULL, t1.access));
    assert_int_equal(200, status_of(&srv, "GET", "/api/v1/users/me", NULL, t2.access));
    assert_int_equal(200, do_refresh(t2.refresh, &t3));
    keel_test_resp r;
    req(&srv, "GET", "/api/v2/users/me", NULL, t3.access, &r);
    assert_int_equal(200, r.status);
    json_t *v = json_of(&r);
    assert_int_equal(2, json_integer_value(json_object_get(
                            json_object_get(json_object_get(v, "data"), "session"), "rotations")));
    json_decref(v);
    keel_test_resp_free(&r);

    /* t1.refresh was rotated out twice ago: presenting it again revokes the whole session */
    char body[2300];
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", t1.refresh);
    req(&srv, "POST", "/api/v1/auth/refresh", body, NULL, &r);
    assert_problem(&r, 401);
    assert_non_null(strstr(r.body, "revoked"));
    keel_test_resp_free(&r);
    assert_int_equal(401, status_of(&srv, "GET", "/api/v1/users/me", NULL, t3.access));
    assert_int_equal(401, status_of(&srv, "GET", "/api/v1/users/me", NULL, t1.access));
    assert_int_equal(401, do_refresh(t3.refresh, &unused));
    assert_true(log_has(&srv, "\"logger\":\"app.security\"", "refresh_token_reuse"));
    assert_true(log_has(&srv, "\"level\":\"ERROR\"", "refresh token reuse detected"));

    /* another session of the same user is not affected */
    tokens other, other2;
    login_ok(email, "dave's long pass", &other);
    assert_int_equal(200, status_of(&srv, "GET", "/api/v1/users/me", NULL, other.access));
    /* the immediately previous token is detected just the same */
    assert_int_equal(200, do_refresh(other.refresh, &other2));
    assert_int_equal(401, do_refresh(other.refresh, &unused));
    assert_int_equal(401, status_of(&srv, "GET", "/api/v1/users/me", NULL, other2.access));
}

static void test_logout(void **state)
{
    (void)state;
    char email[128];
    new_email(email, sizeof(email), "erin");
    do_register(email, "erin's long pass", "Erin", 201);
    tokens a, b, unused;
    login_ok(email, "erin's long pass", &a);
    login_ok(email, "erin's long pass", &b);
    assert_int_equal(401, status_of(&srv, "POST", "/api/v1/auth/logout", NULL, NULL));
    assert_int_equal(200, status_of(&srv, "GET", "/api/v1/users/me", NULL, a.access));
    assert_int_equal(204, status_of(&srv, "POST", "/api/v1/auth/logout", NULL, a.access));
    assert_int_equal(401, status_of(&srv, "GET", "/api/v1/users/me", NULL, a.access));
    assert_int_equal(401, status_of(&srv, "POST", "/api/v1/auth/logout", NULL, a.access));
    assert_int_equal(401, do_refresh(a.refresh, &unused));
    /* the other session lives on */
    assert_int_equal(200, status_of(&srv, "GET", "/api/v1/users/me", NULL, b.access));
}

static void test_admin_route(void **state)
{
    (void)state;
    char email[128];
    new_email(email, sizeof(email), "frank");
    do_register(email, "frank's long pass", "Frank", 201);
    tokens t, admin;
    login_ok(email, "frank's long pass", &t);
    keel_test_resp r;
    req(&srv, "GET", "/api/v1/admin/users", NULL, t.access, &r);
    assert_problem(&r, 403);
    keel_test_resp_free(&r);
    assert_int_equal(401, status_of(&srv, "GET", "/api/v1/admin/users", NULL, NULL));

    char body[256];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"roles\":[\"user\",\"admin\"]}", email);
    assert_int_equal(200, status_of(&srv, "POST", "/_test/auth/roles", body, NULL));
    /* roles travel in the token: the old one is still a plain user's */
    assert_int_equal(403, status_of(&srv, "GET", "/api/v1/admin/users", NULL, t.access));
    login_ok(email, "frank's long pass", &admin);
    req(&srv, "GET", "/api/v1/admin/users?limit=100", NULL, admin.access, &r);
    assert_int_equal(200, r.status);
    assert_non_null(strstr(r.body, email));
    assert_null(strstr(r.body, "argon2"));
    keel_test_resp_free(&r);
    assert_int_equal(422, status_of(&srv, "GET", "/api/v1/admin/users?limit=0", NULL,
                                    admin.access));
}

static void test_public_routes_and_jwks(void **state)
{
    (void)state;
    keel_test_resp r;
    req(&srv, "GET", "/.well-known/jwks.json", NULL, NULL, &r);
    assert_int_equal(200, r.status);
    json_t *v = json_of(&r);
    /* HS256 (the default): secret keys are never published, the set is empty */
    assert_true(json_is_array(json_object_get(v, "keys")));
    assert_int_equal(0, json_array_size(json_object_get(v, "keys")));
    json_decref(v);
    keel_test_resp_free(&r);
    /* unknown paths stay 404 with or without a token; public routes need none */
    assert_int_equal(404, status_of(&srv, "GET", "/nope", NULL, NULL));
    assert_int_equal(404, status_of(&srv, "GET", "/api/v1/nope", NULL, "garbage"));
    assert_int_equal(200, status_of(&srv, "GET", "/api/v1/products", NULL, NULL));
    assert_int_equal(200, status_of(&srv, "GET", "/health/live", NULL, NULL));
}

/* Per account: 3 attempts per window, then 429 with Retry-After and the wait in the detail;
 * per IP: 6 attempts on login + register together. */
static void test_rate_limits(void **state)
{
    (void)state;
    char a[128], b[128];
    new_email(a, sizeof(a), "limited");
    new_email(b, sizeof(b), "other");
    for (int i = 0; i < 3; i++)
        assert_int_equal(401, do_login_on(&srv, a, "wrong password", NULL, NULL));
    keel_test_resp r;
    assert_int_equal(429, do_login_on(&srv, a, "wrong password", NULL, &r));
    assert_problem(&r, 429);
    char ra[32];
    assert_true(keel_test_resp_header(&r, "retry-after", ra, sizeof(ra)));
    long secs = strtol(ra, NULL, 10);
    assert_true(secs >= 1 && secs <= 60);
    json_t *v = json_of(&r);
    char want[64];
    snprintf(want, sizeof(want), "retry in %ld seconds", secs);
    assert_non_null(strstr(json_string_value(json_object_get(v, "detail")), want));
    json_decref(v);
    keel_test_resp_free(&r);
    /* another account from the same IP: two more attempts fit the IP budget of 6 */
    assert_int_equal(401, do_login_on(&srv, b, "wrong password", NULL, NULL));
    assert_int_equal(401, do_login_on(&srv, b, "wrong password", NULL, NULL));
    assert_int_equal(429, do_login_on(&srv, b, "wrong password", NULL, &r));
    assert_true(keel_test_resp_header(&r, "retry-after", ra, sizeof(ra)));
    assert_non_null(strstr(r.body, "Rate limit exceeded; retry in"));
    keel_test_resp_free(&r);
    /* register shares the IP budget; other routes are not limited */
    char body[256];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"fine pass 1\",\"name\":\"x\"}",
             b);
    assert_int_equal(429, status_of(&srv, "POST", "/api/v1/auth/register", body, NULL));
    assert_int_equal(200, status_of(&srv, "GET", "/api/v1/products", NULL, NULL));
}

/* Two keeld processes with one Redis: attempts on one account split between them are counted
 * together (4 per window), so the fifth is refused whichever process receives it. */
static void test_rate_limit_shared_by_two_processes(void **state)
{
    (void)state;
    char email[128];
    new_email(email, sizeof(email), "shared");
    for (int i = 0; i < 4; i++)
        assert_int_equal(401, do_login_on(i % 2 ? &srv2 : &srv, email, "wrong password", NULL,
                                          NULL));
    keel_test_resp r;
    assert_int_equal(429, do_login_on(&srv, email, "wrong password", NULL, &r));
    assert_problem(&r, 429);
    keel_test_resp_free(&r);
    assert_int_equal(429, do_login_on(&srv2, email, "wrong password", NULL, &r));
    char ra[32];
    assert_true(keel_test_resp_header(&r, "retry-after", ra, sizeof(ra)));
    keel_test_resp_free(&r);
    /* a different account is unaffected on both */
    char other[128];
    new_email(other, sizeof(other), "shared-other");
    assert_int_equal(401, do_login_on(&srv2, other, "wrong password", NULL, NULL));
    assert_int_equal(401, do_login_on(&srv, other, "wrong password", NULL, NULL));
}

/* PASSWORD_HASH_*: new hashes use the configured Argon2id cost; raising it upgrades a stored
 * hash on the next successful login; an impossible combination stops keeld with exit 2. */
static void test_password_cost_settings(void **state)
{
    (void)state;
    char dir[256], dburl[400];
    snprintf(dir, sizeof(dir), "%s/pwcost.XXXXXX", KEEL_TEST_TMP);
    assert_non_null(mkdtemp(dir));
    snprintf(dburl, sizeof(dburl), "DATABASE_URL=sqlite:%s/shared.db", dir);
    const char *cheap[] = {NO_LIMITS, dburl, "PASSWORD_HASH_ITERATIONS=1",
                           "PASSWORD_HASH_MEMORY_KIB=1024", NULL};
    assert_int_equal(0, keel_test_server_start(&srv, cheap));
    char email[128];
    new_email(email, sizeof(email), "cost");
    do_register(email, "correct horse battery", "Cost", 201);
    login_ok(email, "correct horse battery", &(tokens){{0}, {0}});
    keel_test_server_stop(&srv, SIGTERM, 10000);

    const char *dearer[] = {NO_LIMITS, dburl, "PASSWORD_HASH_ITERATIONS=3",
                            "PASSWORD_HASH_MEMORY_KIB=2048", NULL};
    assert_int_equal(0, keel_test_server_start(&srv, dearer));
    tokens t;
    login_ok(email, "correct horse battery", &t);
    assert_true(log_has(&srv, "password hash of user", "upgraded to current parameters"));
    login_ok(email, "correct horse battery", &t); /* the upgraded hash verifies */
    keel_test_server_stop(&srv, SIGTERM, 10000);

    char out[4096];
    const char *argv[] = {KEEL_TEST_KEELD, NULL};
    const char *bad_env[] = {"PASSWORD_HASH_MEMORY_KIB=8", "PASSWORD_HASH_PARALLELISM=2",
                             "PASSWORD_HASH_ITERATIONS=0", "AUTH_RATE_LIMIT_PER_IP=ten",
                             "AUTH_SESSION_CACHE_MS=999999", NULL};
    keel_test_run_opts o = {.dir = dir, .env = bad_env};
    assert_int_equal(2, keel_test_run(KEEL_TEST_KEELD, argv, &o, out, sizeof(out)));
    assert_non_null(strstr(out, "PASSWORD_HASH_MEMORY_KIB"));
    assert_non_null(strstr(out, "PASSWORD_HASH_ITERATIONS"));
    /* keeld's own variables are reported in the same run */
    assert_non_null(strstr(out, "AUTH_RATE_LIMIT_PER_IP"));
    assert_non_null(strstr(out, "AUTH_SESSION_CACHE_MS"));
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(0, system(cmd));
}

int main(void)
{
    snprintf(uniq, sizeof(uniq), "p%d-%lld", (int)getpid(), (long long)time(NULL));
    const struct CMUnitTest served[] = {
        cmocka_unit_test(test_register_login_me),
        cmocka_unit_test(test_wrong_password_and_unknown_email_alike),
        cmocka_unit_test(test_password_policy_and_bad_input),
        cmocka_unit_test(test_refresh_rotation_and_reuse),
        cmocka_unit_test(test_logout),
        cmocka_unit_test(test_admin_route),
        cmocka_unit_test(test_public_routes_and_jwks),
    };
    const struct CMUnitTest limits[] = {
        cmocka_unit_test(test_rate_limits),
    };
    const struct CMUnitTest cost[] = {
        cmocka_unit_test(test_password_cost_settings),
    };
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_rate_limit_shared_by_two_processes),
    };
    int rc = cmocka_run_group_tests_name("auth on sqlite", served, setup_sqlite, teardown);
    if (getenv("KEEL_TEST_PG_DSN") != NULL)
        rc |= cmocka_run_group_tests_name("auth on postgres", served, setup_pg, teardown);
    else
        fprintf(stderr, "KEEL_TEST_PG_DSN unset: PostgreSQL group not run "
                        "(make test always sets it)\n");
    rc |= cmocka_run_group_tests_name("auth rate limits", limits, setup_limits, teardown);
    rc |= cmocka_run_group_tests_name("password cost settings", cost, NULL, NULL);
    if (getenv("KEEL_TEST_REDIS_URL") != NULL)
        rc |= cmocka_run_group_tests_name("auth rate limit over redis", shared, setup_redis_pair,
                                          teardown);
    else
        fprintf(stderr, "KEEL_TEST_REDIS_URL unset: Redis group not run\n");
    return rc;
}
