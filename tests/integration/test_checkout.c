/* Integration: keeld's POST /api/v1/checkout over real HTTP - the checkout saga on the real
 * database: stock reserved and shipped, Idempotency-Key replays without a second charge, out
 * of stock (409, nothing charged), declined card and fraud block (402, stock back), shipment
 * failure (charge refunded, stock back, order failed), malformed input (4xx, never 500), and
 * crash recovery: keeld SIGKILLed inside a step, restarted on the same database, compensates
 * the saga at startup.  On SQLite, and on PostgreSQL with KEEL_TEST_PG_DSN. */
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
static char pg_db[64];
static char pg_url[512];
static int key_seq;

static int setup_sqlite(void **state)
{
    (void)state;
    return keel_test_server_start(&srv, NULL);
}

/* A fresh PostgreSQL database per run (scripts/with-services.sh: KEEL_TEST_PG_DSN). */
static int setup_pg(void **state)
{
    (void)state;
    const char *dsn = getenv("KEEL_TEST_PG_DSN");
    if (dsn == NULL)
        return -1;
    snprintf(pg_db, sizeof(pg_db), "keel_co_%d", (int)getpid());
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

static json_t *json_of(const keel_test_resp *r)
{
    json_t *v = json_loads(r->body, 0, NULL);
    if (v == NULL)
        fail_msg("not JSON (%ld): %s", r->status, r->body);
    return v;
}

static const char *const json_ct[] = {"Content-Type: application/json", NULL};

static void create_product(const keel_test_server *s, const char *name, long price,
                           const char *currency, char id[64])
{
    char body[256];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"price_minor\":%ld,\"currency\":\"%s\"}",
             name, price, currency);
    keel_test_resp r;
    ASSERT_OK(keel_test_http(s, "POST", "/api/v1/products", json_ct, body, strlen(body), &r));
    assert_int_equal(201, r.status);
    json_t *v = json_of(&r);
    snprintf(id, 64, "%s", json_string_value(json_object_get(json_object_get(v, "data"), "id")));
    json_decref(v);
    keel_test_resp_free(&r);
}

static void set_stock(const keel_test_server *s, const char *id, long n)
{
    char path[160], body[64];
    snprintf(path, sizeof(path), "/api/v1/products/%s/inventory", id);
    snprintf(body, sizeof(body), "{\"on_hand\":%ld}", n);
    keel_test_resp r;
    ASSERT_OK(keel_test_http(s, "PUT", path, json_ct, body, strlen(body), &r));
    assert_int_equal(200, r.status);
    json_t *v = json_of(&r);
    assert_int_equal(n, json_integer_value(json_object_get(json_object_get(v, "data"), "on_hand")));
    json_decref(v);
    keel_test_resp_free(&r);
}

/* Assert the stock of a product. */
static void expect_stock(const keel_test_server *s, const char *id, long on_hand, long reserved)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/products/%s/inventory", id);
    keel_test_resp r;
    ASSERT_OK(keel_test_http(s, "GET", path, NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    json_t *v = json_of(&r);
    json_t *d = json_object_get(v, "data");
    assert_int_equal(on_hand, json_integer_value(json_object_get(d, "on_hand")));
    assert_int_equal(reserved, json_integer_value(json_object_get(d, "reserved")));
    assert_int_equal(on_hand - reserved, json_integer_value(json_object_get(d, "available")));
    json_decref(v);
    keel_test_resp_free(&r);
}

/* The order's status and whether it shipped. */
static void expect_order(const keel_test_server *s, const char *order_id, const char *status,
                         int shipped)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/orders/%s", order_id);
    keel_test_resp r;
    ASSERT_OK(keel_test_http(s, "GET", path, NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    json_t *v = json_of(&r);
    json_t *d = json_object_get(v, "data");
    assert_string_equal(status, json_string_value(json_object_get(d, "status")));
    assert_int_equal(shipped, json_is_true(json_object_get(d, "shipped")));
    json_decref(v);
    keel_test_resp_free(&r);
}

static json_int_t gw(const keel_test_server *s, const char *what)
{
    keel_test_resp r;
    ASSERT_OK(keel_test_http(s, "GET", "/_test/gateway/calls", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    json_t *v = json_of(&r);
    json_int_t n = json_integer_value(json_object_get(json_object_get(v, "data"), what));
    json_decref(v);
    keel_test_resp_free(&r);
    return n;
}

static void next_key(char *key, size_t cap)
{
    snprintf(key, cap, "co-%d-%d", (int)getpid(), ++key_seq);
}

static void post_checkout(const keel_test_server *s, const char *key, const char *body,
                          keel_test_resp *r)
{
    char kh[300];
    snprintf(kh, sizeof(kh), "Idempotency-Key: %s", key ? key : "");
    const char *hdrs[] = {"Content-Type: application/json", key ? kh : NULL, NULL};
    ASSERT_OK(keel_test_http(s, "POST", "/api/v1/checkout", hdrs, body, strlen(body), r));
}

static void basket(char *out, size_t cap, const char *email, const char *token,
                   const char *pid, int qty)
{
    snprintf(out, cap,
             "{\"email\":\"%s\",\"payment_token\":\"%s\",\"items\":[{\"product_id\":\"%s\","
             "\"quantity\":%d}]}",
             email, token, pid, qty);
}

/* The order id named in a problem's errors[0]. */
static void problem_order(const keel_test_resp *r, char id[64])
{
    json_t *v = json_of(r);
    const char *s =
        json_string_value(json_object_get(json_array_get(json_object_get(v, "errors"), 0),
                                          "order_id"));
    assert_non_null(s);
    snprintf(id, 64, "%s", s);
    json_decref(v);
}

static void test_success_and_replay(void **state)
{
    (void)state;
    char a[64], b[64], key[64], body[512];
    create_product(&srv, "Lamp", 1250, "EUR", a);
    create_product(&srv, "Bulb", 199, "EUR", b);
    set_stock(&srv, a, 10);
    set_stock(&srv, b, 100);
    json_int_t auth0 = gw(&srv, "authorize"), cap0 = gw(&srv, "capture");
    next_key(key, sizeof(key));
    /* two lines for the same product merge into one: 3 lamps, 4 bulbs */
    snprintf(body, sizeof(body),
             "{\"email\":\"ada@example.com\",\"payment_token\":\"tok_visa\",\"currency\":\"EUR\","
             "\"items\":[{\"product_id\":\"%s\",\"quantity\":2},{\"product_id\":\"%s\","
             "\"quantity\":4},{\"product_id\":\"%s\",\"quantity\":1}]}",
             a, b, a);
    keel_test_resp r;
    post_checkout(&srv, key, body, &r);
    assert_int_equal(201, r.status);
    json_t *v = json_of(&r);
    json_t *d = json_object_get(v, "data");
    char order[64], charge[64];
    snprintf(order, sizeof(order), "%s", json_string_value(json_object_get(d, "order_id")));
    snprintf(charge, sizeof(charge), "%s", json_string_value(json_object_get(d, "charge_id")));
    assert_string_equal("completed", json_string_value(json_object_get(d, "status")));
    assert_string_equal("45.46", json_string_value(json_object_get(d, "amount"))); /* 3*12.50+4*1.99 */
    assert_int_equal(4546, json_integer_value(json_object_get(d, "amount_minor")));
    assert_string_equal("EUR", json_string_value(json_object_get(d, "currency")));
    assert_true(strncmp(charge, "ch_", 3) == 0);
    json_decref(v);
    char loc[128], want[128];
    assert_true(keel_test_resp_header(&r, "location", loc, sizeof(loc)));
    snprintf(want, sizeof(want), "/api/v1/orders/%s", order);
    assert_string_equal(want, loc);
    keel_test_resp_free(&r);

    assert_int_equal(auth0 + 1, gw(&srv, "authorize"));
    assert_int_equal(cap0 + 1, gw(&srv, "capture"));
    expect_stock(&srv, a, 7, 0);
    expect_stock(&srv, b, 96, 0);
    expect_order(&srv, order, "completed", 1);

    /* the same key and body: the stored answer, no second authorize */
    post_checkout(&srv, key, body, &r);
    assert_int_equal(201, r.status);
    char h[16];
    assert_int_equal(1, keel_test_resp_header(&r, "idempotent-replayed", h, sizeof(h)));
    v = json_of(&r);
    assert_string_equal(order, json_string_value(json_object_get(json_object_get(v, "data"),
                                                                 "order_id")));
    json_decref(v);
    keel_test_resp_free(&r);
    assert_int_equal(auth0 + 1, gw(&srv, "authorize"));
    expect_stock(&srv, a, 7, 0);

    /* the same key with another body is refused */
    basket(body, sizeof(body), "ada@example.com", "tok_visa", a, 1);
    post_checkout(&srv, key, body, &r);
    assert_int_equal(422, r.status);
    keel_test_resp_free(&r);
    assert_int_equal(auth0 + 1, gw(&srv, "authorize"));
}

static void test_out_of_stock(void **state)
{
    (void)state;
    char a[64], b[64], key[64], body[512], order[64];
    create_product(&srv, "Chair", 5000, "EUR", a);
    create_product(&srv, "Table", 9000, "EUR", b); /* no inventory row: nothing in stock */
    set_stock(&srv, a, 2);
    json_int_t auth0 = gw(&srv, "authorize");
    next_key(key, sizeof(key));
    basket(body, sizeof(body), "bob@example.com", "tok_visa", a, 3);
    keel_test_resp r;
    post_checkout(&srv, key, body, &r);
    assert_int_equal(409, r.status);
    assert_non_null(strstr(r.body, "out of stock"));
    assert_non_null(strstr(r.body, a));
    problem_order(&r, order);
    keel_test_resp_free(&r);
    assert_int_equal(auth0, gw(&srv, "authorize"));
    expect_stock(&srv, a, 2, 0);
    expect_order(&srv, order, "failed", 0);

    /* one line available, one not: the whole reservation rolls back */
    next_key(key, sizeof(key));
    snprintf(body, sizeof(body),
             "{\"email\":\"bob@example.com\",\"payment_token\":\"tok_visa\",\"items\":["
             "{\"product_id\":\"%s\",\"quantity\":1},{\"product_id\":\"%s\",\"quantity\":1}]}",
             a, b);
    post_checkout(&srv, key, body, &r);
    assert_int_equal(409, r.status);
    assert_non_null(strstr(r.body, b));
    keel_test_resp_free(&r);
    expect_stock(&srv, a, 2, 0);
    assert_int_equal(auth0, gw(&srv, "authorize"));

    /* exactly the stock left: fine */
    next_key(key, sizeof(key));
    basket(body, sizeof(body), "bob@example.com", "tok_visa", a, 2);
    post_checkout(&srv, key, body, &r);
    assert_int_equal(201, r.status);
    keel_test_resp_free(&r);
    expect_stock(&srv, a, 0, 0);
}

static void test_declined_card(void **state)
{
    (void)state;
    char a[64], key[64], body[512], order[64];
    create_product(&srv, "Kettle", 3000, "EUR", a);
    set_stock(&srv, a, 5);
    json_int_t auth0 = gw(&srv, "authorize"), void0 = gw(&srv, "void");
    next_key(key, sizeof(key));
    basket(body, sizeof(body), "cy@example.com", "tok_chargeDeclined", a, 2);
    keel_test_resp r;
    post_checkout(&srv, key, body, &r);
    assert_int_equal(402, r.status);
    json_t *v = json_of(&r);
    assert_string_equal("https://keel.dev/problems/card_declined",
                        json_string_value(json_object_get(v, "type")));
    assert_non_null(strstr(r.body, "generic_decline"));
    json_decref(v);
    keel_test_resp_free(&r);
    assert_int_equal(auth0 + 1, gw(&srv, "authorize")); /* a decline is never retried */
    assert_int_equal(void0, gw(&srv, "void"));          /* nothing was authorized */
    expect_stock(&srv, a, 5, 0);                        /* the reservation was released */

    /* replay: the same decline, no second authorize */
    post_checkout(&srv, key, body, &r);
    assert_int_equal(402, r.status);
    keel_test_resp_free(&r);
    assert_int_equal(auth0 + 1, gw(&srv, "authorize"));
    (void)order;
}

static void test_fraud(void **state)
{
    (void)state;
    char a[64], big[64], key[64], body[512], order[64];
    create_product(&srv, "Radio", 2500, "EUR", a);
    create_product(&srv, "Piano", 600000, "EUR", big);
    set_stock(&srv, a, 4);
    set_stock(&srv, big, 1);
    json_int_t all0 = gw(&srv, "authorize") + gw(&srv, "void") + gw(&srv, "capture");
    next_key(key, sizeof(key));
    basket(body, sizeof(body), "Blocked@Example.com", "tok_visa", a, 1);
    keel_test_resp r;
    post_checkout(&srv, key, body, &r);
    assert_int_equal(402, r.status);
    json_t *v = json_of(&r);
    assert_string_equal("https://keel.dev/problems/fraud_blocked",
                        json_string_value(json_object_get(v, "type")));
    json_decref(v);
    keel_test_resp_free(&r);
    expect_stock(&srv, a, 4, 0);

    /* above 5,000.00: authentication required, still before the gateway */
    next_key(key, sizeof(key));
    basket(body, sizeof(body), "dee@example.com", "tok_visa", big, 1);
    post_checkout(&srv, key, body, &r);
    assert_int_equal(402, r.status);
    v = json_of(&r);
    assert_string_equal("https://keel.dev/problems/authentication_required",
                        json_string_value(json_object_get(v, "type")));
    json_decref(v);
    keel_test_resp_free(&r);
    expect_stock(&srv, big, 1, 0);
    assert_int_equal(all0, gw(&srv, "authorize") + gw(&srv, "void") + gw(&srv, "capture"));
    (void)order;
}

static void test_shipment_failure(void **state)
{
    (void)state;
    char a[64], key[64], body[512], order[64];
    create_product(&srv, "Sofa", 40000, "EUR", a);
    set_stock(&srv, a, 3);
    json_int_t auth0 = gw(&srv, "authorize"), cap0 = gw(&srv, "capture"),
               ref0 = gw(&srv, "refund");
    next_key(key, sizeof(key));
    basket(body, sizeof(body), "fail-shipment@example.com", "tok_visa", a, 2);
    keel_test_resp r;
    post_checkout(&srv, key, body, &r);
    assert_int_equal(502, r.status);
    assert_non_null(strstr(r.body, "order failed; charges reversed"));
    assert_non_null(strstr(r.body, "\"order_status\":\"failed\""));
    problem_order(&r, order);
    keel_test_resp_free(&r);
    assert_int_equal(auth0 + 1, gw(&srv, "authorize"));
    assert_int_equal(cap0 + 1, gw(&srv, "capture"));
    assert_int_equal(ref0 + 1, gw(&srv, "refund")); /* captured, so refunded */
    expect_stock(&srv, a, 3, 0);
    expect_order(&srv, order, "failed", 0);
}

static void expect_4xx(const char *key, const char *body, long want)
{
    keel_test_resp r;
    post_checkout(&srv, key, body, &r);
    if (r.status != want)
        fail_msg("body %s: status %ld, want %ld: %s", body, r.status, want, r.body);
    json_t *v = json_of(&r);
    assert_int_equal(want, json_integer_value(json_object_get(v, "status")));
    json_decref(v);
    keel_test_resp_free(&r);
}

static void test_bad_input(void **state)
{
    (void)state;
    char a[64], usd[64], key[64], body[1024];
    create_product(&srv, "Mug", 800, "EUR", a);
    create_product(&srv, "Cap", 900, "USD", usd);
    set_stock(&srv, a, 5);
    set_stock(&srv, usd, 5);
    json_int_t auth0 = gw(&srv, "authorize");
    const char *fixed[] = {
        "{}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":{}}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[1]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[{}]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[{\"product_id\":"
        "\"not-a-uuid\",\"quantity\":1}]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[{\"product_id\":"
        "\"00000000-0000-4000-8000-000000000000\",\"quantity\":1}]}",
        "{\"email\":\"nope\",\"payment_token\":\"tok_visa\",\"items\":[{\"product_id\":"
        "\"00000000-0000-4000-8000-000000000000\",\"quantity\":1}]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"\",\"items\":[{\"product_id\":"
        "\"00000000-0000-4000-8000-000000000000\",\"quantity\":1}]}",
        "{\"email\":7,\"payment_token\":true,\"items\":\"x\",\"currency\":\"euro\"}",
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        next_key(key, sizeof(key));
        expect_4xx(key, fixed[i], 422);
    }
    const char *tmpl[] = {
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[{\"product_id\":"
        "\"%s\",\"quantity\":0}]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[{\"product_id\":"
        "\"%s\",\"quantity\":1001}]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[{\"product_id\":"
        "\"%s\",\"quantity\":1.5}]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[{\"product_id\":"
        "\"%s\",\"quantity\":\"2\"}]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"currency\":\"USD\","
        "\"items\":[{\"product_id\":\"%s\",\"quantity\":1}]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[{\"product_id\":"
        "\"%s\",\"quantity\":1,\"color\":\"red\"}]}",
        "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[{\"product_id\":"
        "\"%s\",\"quantity\":9223372036854775807}]}",
    };
    for (size_t i = 0; i < sizeof(tmpl) / sizeof(tmpl[0]); i++) {
        next_key(key, sizeof(key));
        snprintf(body, sizeof(body), tmpl[i], a);
        expect_4xx(key, body, 422);
    }
    /* mixed currencies */
    next_key(key, sizeof(key));
    snprintf(body, sizeof(body),
             "{\"email\":\"x@example.com\",\"payment_token\":\"tok_visa\",\"items\":[{"
             "\"product_id\":\"%s\",\"quantity\":1},{\"product_id\":\"%s\",\"quantity\":1}]}",
             a, usd);
    expect_4xx(key, body, 422);
    /* 51 lines */
    size_t n;
    char *large = malloc(51 * 80 + 200);
    assert_non_null(large);
    n = (size_t)snprintf(large, 200, "{\"email\":\"x@example.com\",\"payment_token\":"
                                     "\"tok_visa\",\"items\":[");
    for (int i = 0; i < 51; i++)
        n += (size_t)snprintf(large + n, 80, "%s{\"product_id\":\"%s\",\"quantity\":1}",
                              i ? "," : "", a);
    snprintf(large + n, 8, "]}");
    next_key(key, sizeof(key));
    expect_4xx(key, large, 422);
    free(large);
    /* malformed JSON, a non-object body, no key */
    next_key(key, sizeof(key));
    expect_4xx(key, "{\"email\":", 400);
    next_key(key, sizeof(key));
    expect_4xx(key, "[1,2]", 400);
    basket(body, sizeof(body), "x@example.com", "tok_visa", a, 1);
    expect_4xx(NULL, body, 400);
    /* a token the gateway does not know: its rejection (502 gateway_error, as
     * /api/v1/payments answers), not a 500; the reservation is released */
    next_key(key, sizeof(key));
    basket(body, sizeof(body), "x@example.com", "tok_nonsense", a, 1);
    keel_test_resp r;
    post_checkout(&srv, key, body, &r);
    assert_int_equal(502, r.status);
    assert_non_null(strstr(r.body, "https://keel.dev/problems/gateway_error"));
    keel_test_resp_free(&r);
    expect_stock(&srv, a, 5, 0);
    assert_int_equal(auth0 + 1, gw(&srv, "authorize")); /* only the unknown token got there */

    /* inventory: bad bodies, unknown product */
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/products/%s/inventory", a);
    const char *inv_bad[] = {"{}", "{\"on_hand\":-1}", "{\"on_hand\":\"3\"}",
                             "{\"on_hand\":1,\"x\":1}"};
    for (size_t i = 0; i < sizeof(inv_bad) / sizeof(inv_bad[0]); i++) {
        ASSERT_OK(keel_test_http(&srv, "PUT", path, json_ct, inv_bad[i], strlen(inv_bad[i]), &r));
        assert_int_equal(422, r.status);
        keel_test_resp_free(&r);
    }
    ASSERT_OK(keel_test_http(&srv, "PUT",
                             "/api/v1/products/00000000-0000-4000-8000-000000000000/inventory",
                             json_ct, "{\"on_hand\":1}", 13, &r));
    assert_int_equal(404, r.status);
    keel_test_resp_free(&r);
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/orders/nope", NULL, NULL, 0, &r));
    assert_int_equal(404, r.status);
    keel_test_resp_free(&r);
}

/* ------------------------------------------------------- crash recovery -- */

static int file_contains(const char *path, const char *needle, char *line_out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, needle) != NULL) {
            found = 1;
            if (line_out != NULL)
                snprintf(line_out, cap, "%s", line);
        }
    fclose(f);
    return found;
}

/* The log reaches stderr through keel's asynchronous writer: poll for up to 10 s. */
static int log_shows(const char *path, const char *needle)
{
    for (int i = 0; i < 200; i++) {
        if (file_contains(path, needle, NULL, 0))
            return 1;
        usleep(50000);
    }
    return 0;
}

static char crash_url[512]; /* "DATABASE_URL=..." shared by both keeld processes */

static int setup_crash_sqlite(void **state)
{
    (void)state;
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/checkout-crash.XXXXXX", KEEL_TEST_TMP);
    mkdir(KEEL_TEST_TMP, 0700);
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(crash_url, sizeof(crash_url), "DATABASE_URL=sqlite:%s/keel.db", dir);
    return 0;
}

static int setup_crash_pg(void **state)
{
    (void)state;
    const char *dsn = getenv("KEEL_TEST_PG_DSN");
    if (dsn == NULL)
        return -1;
    snprintf(pg_db, sizeof(pg_db), "keel_cr_%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "psql -q '%s' -c 'CREATE DATABASE %s' >/dev/null", dsn, pg_db);
    if (system(cmd) != 0)
        return -1;
    const char *slash = strrchr(dsn, '/');
    snprintf(crash_url, sizeof(crash_url), "DATABASE_URL=%.*s/%s", (int)(slash - dsn), dsn,
             pg_db);
    return 0;
}

static keel_test_server crash_a, crash_b;

static int teardown_crash(void **state)
{
    keel_test_server_stop(&crash_a, SIGKILL, 5000);
    keel_test_server_stop(&crash_b, SIGTERM, 10000);
    return teardown(state);
}

static void test_crash_recovery(void **state)
{
    (void)state;
    const char *env[] = {crash_url, NULL};
    assert_int_equal(0, keel_test_server_start(&crash_a, env));

    char pid_[64], key[64], body[512];
    create_product(&crash_a, "Clock", 2000, "EUR", pid_);
    set_stock(&crash_a, pid_, 5);
    next_key(key, sizeof(key));
    basket(body, sizeof(body), "hang@example.com", "tok_visa", pid_, 2);

    /* The request hangs inside capture_payment; a child process waits on it. */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        keel_test_resp r;
        (void)keel_test_http(&crash_a, "POST", "/api/v1/checkout",
                             (const char *const[]){"Content-Type: application/json",
                                                   "Idempotency-Key: crash-1", NULL},
                             body, strlen(body), &r);
        _exit(0);
    }
    char log_a[400], line[2048];
    snprintf(log_a, sizeof(log_a), "%s/stderr.log", crash_a.dir);
    int hung = 0;
    for (int i = 0; i < 400 && !hung; i++) { /* up to 20 s */
        hung = file_contains(log_a, "test hang in capture_payment", line, sizeof(line));
        if (!hung)
            usleep(50000);
    }
    assert_true(hung);
    char order[64] = "";
    const char *at = strstr(line, "order ");
    assert_non_null(at);
    snprintf(order, sizeof(order), "%.36s", at + 6);
    expect_stock(&crash_a, pid_, 5, 2); /* held by the saga in flight */
    expect_order(&crash_a, order, "pending", 0);
    assert_int_equal(1, gw(&crash_a, "authorize"));

    /* Crash: no shutdown, no compensation. */
    keel_test_server_stop(&crash_a, SIGKILL, 5000);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    /* The dead instance's saga lease (3 s in the test environment) runs out. */
    sleep(4);

    assert_int_equal(0, keel_test_server_start(&crash_b, env));
    /* Recovery ran before the server answered: the saga was compensated at startup. */
    char log_b[400];
    snprintf(log_b, sizeof(log_b), "%s/stderr.log", crash_b.dir);
    assert_true(log_shows(log_b, "saga recovery: 1 in flight, 1 recovered (0 completed, 1 "
                                 "compensated"));
    char want[128];
    snprintf(want, sizeof(want), "recovered saga checkout_%s: COMPENSATED", order);
    assert_true(log_shows(log_b, want));
    /* the void was attempted; the restarted sandbox no longer knows the charge */
    assert_int_equal(1, gw(&crash_b, "void"));
    assert_true(log_shows(log_b, "unknown to the gateway"));
    assert_int_equal(0, gw(&crash_b, "authorize"));
    expect_stock(&crash_b, pid_, 5, 0);
    expect_order(&crash_b, order, "failed", 0);

    /* The shop works on after recovery. */
    next_key(key, sizeof(key));
    basket(body, sizeof(body), "eve@example.com", "tok_visa", pid_, 1);
    keel_test_resp r;
    post_checkout(&crash_b, key, body, &r);
    assert_int_equal(201, r.status);
    keel_test_resp_free(&r);
    expect_stock(&crash_b, pid_, 4, 0);
    keel_test_server_stop(&crash_b, SIGTERM, 10000);
}

int main(void)
{
    const struct CMUnitTest served[] = {
        cmocka_unit_test(test_success_and_replay), cmocka_unit_test(test_out_of_stock),
        cmocka_unit_test(test_declined_card),      cmocka_unit_test(test_fraud),
        cmocka_unit_test(test_shipment_failure),   cmocka_unit_test(test_bad_input),
    };
    const struct CMUnitTest crash[] = {
        cmocka_unit_test(test_crash_recovery),
    };
    int rc = cmocka_run_group_tests_name("checkout on sqlite", served, setup_sqlite, teardown);
    if (getenv("KEEL_TEST_PG_DSN") != NULL)
        rc |= cmocka_run_group_tests_name("checkout on postgres", served, setup_pg, teardown);
    else
        fprintf(stderr, "KEEL_TEST_PG_DSN unset: PostgreSQL group not run "
                        "(make test always sets it)\n");
    rc |= cmocka_run_group_tests_name("checkout crash recovery on sqlite", crash,
                                      setup_crash_sqlite, teardown_crash);
    if (getenv("KEEL_TEST_PG_DSN") != NULL)
        rc |= cmocka_run_group_tests_name("checkout crash recovery on postgres", crash,
                                          setup_crash_pg, teardown_crash);
    return rc;
}
