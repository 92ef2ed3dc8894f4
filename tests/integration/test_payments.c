/* Integration: keeld's POST /api/v1/payments over real HTTP - the Idempotency-Key protocol
 * (replay with Idempotent-Replayed, 422 mismatch, 409 in flight, 400 missing/malformed),
 * payment errors as problems, retries of transient gateway errors, 64 concurrent identical
 * requests charging once; on the embedded SQLite store and with the idempotency records in
 * Redis (KEEL_TEST_REDIS_URL). */
#define _GNU_SOURCE 1
#include "test.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keel/keel.h>
#include <keel/webhook.h>

static keel_test_server srv;
static char uniq[32];

static int webhooks_enabled;

static int setup_sqlite(void **state)
{
    (void)state;
    /* Two secrets: the current one and the one being rotated out. */
    const char *env[] = {"WEBHOOK_SECRET=whsec_test_secret,whsec_old_secret", NULL};
    webhooks_enabled = 1;
    return keel_test_server_start(&srv, env);
}

static int setup_redis(void **state)
{
    (void)state;
    const char *url = getenv("KEEL_TEST_REDIS_URL");
    if (url == NULL || *url == '\0')
        return -1;
    static char env_redis[512];
    snprintf(env_redis, sizeof(env_redis), "REDIS_URL=%s", url);
    const char *env[] = {env_redis, NULL};
    webhooks_enabled = 0;
    return keel_test_server_start(&srv, env);
}

static int teardown(void **state)
{
    (void)state;
    keel_test_server_stop(&srv, SIGTERM, 10000);
    return 0;
}

/* POST a charge with an Idempotency-Key (NULL = none). */
static void charge(const char *key, const char *body, keel_test_resp *r)
{
    char kh[400];
    snprintf(kh, sizeof(kh), "Idempotency-Key: %s", key ? key : "");
    const char *hdrs[] = {"Content-Type: application/json", key ? kh : NULL, NULL};
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/payments", hdrs, body, strlen(body), r));
}

static json_t *json_of(const keel_test_resp *r)
{
    json_t *v = json_loads(r->body, 0, NULL);
    if (v == NULL)
        fail_msg("not JSON: %s", r->body);
    return v;
}

static json_int_t gateway_count(const char *what)
{
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/_test/gateway/calls", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    json_t *v = json_of(&r);
    json_int_t n = json_integer_value(json_object_get(json_object_get(v, "data"), what));
    json_decref(v);
    keel_test_resp_free(&r);
    return n;
}

static void key_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s-%s", uniq, name);
}

static void test_charge_and_replay(void **state)
{
    (void)state;
    char key[64];
    key_of(key, sizeof(key), "replay");
    const char *body = "{\"amount\":\"12.34\",\"currency\":\"usd\",\"payment_token\":\"tok_visa\"}";
    json_int_t before = gateway_count("authorize");
    keel_test_resp r1, r2;
    charge(key, body, &r1);
    assert_int_equal(201, r1.status);
    json_t *v = json_of(&r1);
    json_t *d = json_object_get(v, "data");
    assert_string_equal("captured", json_string_value(json_object_get(d, "status")));
    assert_string_equal("12.34", json_string_value(json_object_get(d, "amount")));
    assert_int_equal(1234, json_integer_value(json_object_get(d, "amount_minor")));
    assert_string_equal("USD", json_string_value(json_object_get(d, "currency")));
    char h[64];
    assert_int_equal(0, keel_test_resp_header(&r1, "idempotent-replayed", h, sizeof(h)));

    /* Same key, same payload (keys reordered, whitespace): the stored response, byte for
     * byte, flagged as a replay; the gateway is not called again. */
    charge(key, "{ \"payment_token\": \"tok_visa\", \"currency\": \"usd\", \"amount\": \"12.34\" }",
           &r2);
    assert_int_equal(201, r2.status);
    assert_string_equal(r1.body, r2.body);
    assert_int_equal(1, keel_test_resp_header(&r2, "idempotent-replayed", h, sizeof(h)));
    assert_string_equal("true", h);
    assert_int_equal(before + 1, gateway_count("authorize"));
    json_decref(v);
    keel_test_resp_free(&r1);
    keel_test_resp_free(&r2);

    /* Same key, different payload: 422 problem, still no gateway call. */
    keel_test_resp r3;
    charge(key, "{\"amount\":\"99.00\",\"currency\":\"usd\",\"payment_token\":\"tok_visa\"}", &r3);
    assert_int_equal(422, r3.status);
    assert_non_null(strstr(r3.body, "idempotency-key-mismatch"));
    assert_int_equal(before + 1, gateway_count("authorize"));
    keel_test_resp_free(&r3);

    /* The IETF draft's quoted form names the same key. */
    char quoted[80];
    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    keel_test_resp r4;
    charge(quoted, body, &r4);
    assert_int_equal(201, r4.status);
    assert_int_equal(1, keel_test_resp_header(&r4, "idempotent-replayed", h, sizeof(h)));
    keel_test_resp_free(&r4);
}

/* Card data typed into free text never comes back, and never reaches keeld's logs. */
static void test_pan_never_leaks(void **state)
{
    (void)state;
    char key[64];
    key_of(key, sizeof(key), "pan");
    keel_test_resp r;
    charge(key,
           "{\"amount\":\"1.00\",\"currency\":\"USD\",\"payment_token\":\"tok_visa\","
           "\"description\":\"card 4111-1111-1111-1111 cvv: 999\"}",
           &r);
    assert_int_equal(201, r.status);
    assert_null(strstr(r.body, "4111-1111-1111-1111"));
    assert_non_null(strstr(r.body, "card ************1111 cvv: [REDACTED_CVV]"));
    keel_test_resp_free(&r);
    /* A PAN in a URL reaches the access log: redacted there by the log hook. */
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/products/4111111111111111?cvv=123", NULL,
                             NULL, 0, &r));
    keel_test_resp_free(&r);
    /* Stop the server so its logs are flushed, then search them. */
    keel_test_server_stop(&srv, SIGTERM, 10000);
    char cmd[600], out[256];
    snprintf(cmd, sizeof(cmd), "cat '%s'/logs/*.json 2>/dev/null | grep -c -e 4111111111111111 "
             "-e 4111-1111-1111-1111 -e 'cvv: 999' -e 'cvv=123'", srv.dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    pclose(p);
    assert_string_equal("0\n", out);
    snprintf(cmd, sizeof(cmd), "grep -q '************1111' '%s'/logs/app.json", srv.dir);
    assert_int_equal(0, system(cmd));
    const char *env[] = {"WEBHOOK_SECRET=whsec_test_secret,whsec_old_secret", NULL};
    assert_int_equal(0, keel_test_server_start(&srv, env));
}

static void test_declines_and_bad_input(void **state)
{
    (void)state;
    char key[64];
    key_of(key, sizeof(key), "decline");
    keel_test_resp r;
    json_int_t before = gateway_count("authorize");
    const char *body =
        "{\"amount\":\"5.00\",\"currency\":\"EUR\",\"payment_token\":\"tok_chargeDeclined\"}";
    charge(key, body, &r);
    assert_int_equal(402, r.status);
    assert_non_null(strstr(r.body, "card_declined"));
    assert_non_null(strstr(r.body, "generic_decline"));
    keel_test_resp_free(&r);
    /* A decline is terminal: replayed, never retried, never re-sent to the gateway. */
    charge(key, body, &r);
    assert_int_equal(402, r.status);
    char h[16];
    assert_int_equal(1, keel_test_resp_header(&r, "idempotent-replayed", h, sizeof(h)));
    keel_test_resp_free(&r);
    assert_int_equal(before + 1, gateway_count("authorize"));

    /* Missing, empty, over-long and malformed keys: 400 problems. */
    charge(NULL, body, &r);
    assert_int_equal(400, r.status);
    assert_non_null(strstr(r.body, "Idempotency-Key"));
    keel_test_resp_free(&r);
    char longkey[300];
    memset(longkey, 'x', 256);
    longkey[256] = '\0';
    charge(longkey, body, &r);
    assert_int_equal(400, r.status);
    assert_non_null(strstr(r.body, "255"));
    keel_test_resp_free(&r);

    /* Bad amounts and currencies: 422 naming the field; nothing reaches the gateway. */
    const char *bad[] = {
        "{\"amount\":\"-1.00\",\"currency\":\"USD\",\"payment_token\":\"tok_visa\"}",
        "{\"amount\":\"1.234\",\"currency\":\"USD\",\"payment_token\":\"tok_visa\"}",
        "{\"amount\":\"abc\",\"currency\":\"USD\",\"payment_token\":\"tok_visa\"}",
        "{\"amount\":\"0\",\"currency\":\"USD\",\"payment_token\":\"tok_visa\"}",
        "{\"amount\":\"10\",\"currency\":\"ZZZ\",\"payment_token\":\"tok_visa\"}",
        "{\"amount\":10,\"currency\":\"USD\",\"payment_token\":\"tok_visa\"}",
        "{\"currency\":\"USD\",\"payment_token\":\"tok_visa\"}",
        "{\"amount\":\"10\",\"currency\":\"USD\",\"payment_token\":\"tok_visa\"",
    };
    const char *field[] = {"amount", "amount", "amount", "amount", "currency", "amount",
                           "amount", NULL};
    json_int_t before_bad = gateway_count("authorize");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char k[64];
        snprintf(k, sizeof(k), "%s-bad-%zu", uniq, i);
        charge(k, bad[i], &r);
        if (field[i] != NULL) {
            if (r.status != 422)
                fail_msg("case %zu: status %ld body %s", i, r.status, r.body);
            assert_non_null(strstr(r.body, field[i]));
        } else {
            assert_int_equal(400, r.status);
        }
        assert_non_null(strstr(r.body, "\"status\""));
        keel_test_resp_free(&r);
    }
    assert_int_equal(before_bad, gateway_count("authorize"));
}

static void test_transient_errors_retried(void **state)
{
    (void)state;
    keel_test_resp r;
    const char *fault = "{\"kind\":\"network_error\",\"times\":2}";
    const char *ct[] = {"Content-Type: application/json", NULL};
    ASSERT_OK(keel_test_http(&srv, "POST", "/_test/gateway/fault", ct, fault, strlen(fault), &r));
    assert_int_equal(200, r.status);
    keel_test_resp_free(&r);
    json_int_t before = gateway_count("authorize"), charges = gateway_count("charges");
    char key[64];
    key_of(key, sizeof(key), "transient");
    charge(key, "{\"amount\":\"20.00\",\"currency\":\"GBP\",\"payment_token\":\"tok_visa\"}", &r);
    assert_int_equal(201, r.status);
    keel_test_resp_free(&r);
    /* Two network errors then success: three attempts, one charge. */
    assert_int_equal(before + 3, gateway_count("authorize"));
    assert_int_equal(charges + 1, gateway_count("charges"));
}

typedef struct racer {
    const char *key;
    long status;
    char *body;
    int replayed;
} racer;

static void *race(void *arg)
{
    racer *rc = arg;
    keel_test_resp r;
    char kh[128];
    snprintf(kh, sizeof(kh), "Idempotency-Key: %s", rc->key);
    const char *hdrs[] = {"Content-Type: application/json", kh, NULL};
    const char *body = "{\"amount\":\"42.00\",\"currency\":\"USD\",\"payment_token\":\"tok_visa\"}";
    if (keel_test_http(&srv, "POST", "/api/v1/payments", hdrs, body, strlen(body), &r) != 0) {
        rc->status = -1;
        return NULL;
    }
    rc->status = r.status;
    char h[16];
    rc->replayed = keel_test_resp_header(&r, "idempotent-replayed", h, sizeof(h));
    rc->body = strdup(r.body);
    keel_test_resp_free(&r);
    return NULL;
}

/* 64 identical requests at once: exactly one charge; the rest replay it or get 409. */
static void test_concurrent_identical_requests(void **state)
{
    (void)state;
    enum { N = 64 };
    char key[64];
    key_of(key, sizeof(key), "race");
    json_int_t charges = gateway_count("charges");
    pthread_t th[N];
    racer rc[N];
    for (int i = 0; i < N; i++) {
        memset(&rc[i], 0, sizeof(rc[i]));
        rc[i].key = key;
        assert_int_equal(0, pthread_create(&th[i], NULL, race, &rc[i]));
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    int created = 0, conflicts = 0;
    const char *first = NULL;
    for (int i = 0; i < N; i++) {
        if (rc[i].status == 201) {
            created++;
            if (first == NULL)
                first = rc[i].body;
            assert_string_equal(first, rc[i].body);
        } else {
            if (rc[i].status != 409)
                fail_msg("request %d: status %ld: %s", i, rc[i].status, rc[i].body);
            conflicts++;
        }
    }
    assert_int_equal(N, created + conflicts);
    assert_true(created >= 1);
    assert_int_equal(charges + 1, gateway_count("charges"));
    for (int i = 0; i < N; i++)
        free(rc[i].body);
}

static long post_webhook(const char *body, const char *sig, keel_test_resp *r)
{
    char sh[512];
    snprintf(sh, sizeof(sh), "Stripe-Signature: %s", sig ? sig : "");
    const char *hdrs[] = {"Content-Type: application/json", sig ? sh : NULL, NULL};
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/webhooks/payments", hdrs, body,
                             strlen(body), r));
    return r->status;
}

static void test_webhooks(void **state)
{
    (void)state;
    char body[256], hdr[KEEL_WEBHOOK_SIGN_SIZE];
    snprintf(body, sizeof(body),
             "{\"id\":\"evt_%s\",\"type\":\"charge.succeeded\",\"object\":\"event\"}", uniq);
    int64_t now = keel_time_wall_ms() / 1000;
    keel_test_resp r;
    if (!webhooks_enabled) {
        ASSERT_OK(keel_webhook_sign("whsec_test_secret", body, strlen(body), now, hdr,
                                    sizeof(hdr)));
        assert_int_equal(503, post_webhook(body, hdr, &r));
        assert_non_null(strstr(r.body, "WEBHOOK_SECRET"));
        keel_test_resp_free(&r);
        return;
    }
    /* Signed with the secret being rotated out: still accepted. */
    ASSERT_OK(keel_webhook_sign("whsec_old_secret", body, strlen(body), now, hdr, sizeof(hdr)));
    assert_int_equal(200, post_webhook(body, hdr, &r));
    assert_non_null(strstr(r.body, "\"duplicate\":false"));
    keel_test_resp_free(&r);
    /* The same event again (a gateway retry, new signature): acknowledged, not processed. */
    ASSERT_OK(keel_webhook_sign("whsec_test_secret", body, strlen(body), now + 1, hdr,
                                sizeof(hdr)));
    assert_int_equal(200, post_webhook(body, hdr, &r));
    assert_non_null(strstr(r.body, "\"duplicate\":true"));
    keel_test_resp_free(&r);
    /* Tampered body: the signature no longer matches. */
    char tampered[256];
    snprintf(tampered, sizeof(tampered), "%s", body);
    tampered[strlen(tampered) - 3] = 'X';
    assert_int_equal(400, post_webhook(tampered, hdr, &r));
    assert_non_null(strstr(r.body, "signature_mismatch"));
    assert_null(strstr(r.body, "whsec_"));
    keel_test_resp_free(&r);
    /* Too old (replay window 300 s), missing and malformed headers, unknown secret. */
    ASSERT_OK(keel_webhook_sign("whsec_test_secret", body, strlen(body), now - 301, hdr,
                                sizeof(hdr)));
    assert_int_equal(400, post_webhook(body, hdr, &r));
    assert_non_null(strstr(r.body, "tolerance"));
    keel_test_resp_free(&r);
    assert_int_equal(400, post_webhook(body, NULL, &r));
    keel_test_resp_free(&r);
    assert_int_equal(400, post_webhook(body, "t=abc,v1=00", &r));
    keel_test_resp_free(&r);
    ASSERT_OK(keel_webhook_sign("whsec_wrong", body, strlen(body), now, hdr, sizeof(hdr)));
    assert_int_equal(400, post_webhook(body, hdr, &r));
    keel_test_resp_free(&r);
    /* A verified body without an event id is refused, not processed. */
    const char *noid = "{\"type\":\"charge.succeeded\"}";
    ASSERT_OK(keel_webhook_sign("whsec_test_secret", noid, strlen(noid), now, hdr, sizeof(hdr)));
    assert_int_equal(400, post_webhook(noid, hdr, &r));
    keel_test_resp_free(&r);
}

int main(void)
{
    snprintf(uniq, sizeof(uniq), "it%d", (int)getpid());
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test(test_charge_and_replay),
        cmocka_unit_test(test_declines_and_bad_input),
        cmocka_unit_test(test_transient_errors_retried),
        cmocka_unit_test(test_concurrent_identical_requests),
        cmocka_unit_test(test_webhooks),
        cmocka_unit_test(test_pan_never_leaks),
    };
    int rc = cmocka_run_group_tests_name("payments_sqlite", sqlite_tests, setup_sqlite, teardown);
    if (getenv("KEEL_TEST_REDIS_URL") != NULL) {
        const struct CMUnitTest redis_tests[] = {
            cmocka_unit_test(test_charge_and_replay),
            cmocka_unit_test(test_declines_and_bad_input),
            cmocka_unit_test(test_concurrent_identical_requests),
            cmocka_unit_test(test_webhooks),
        };
        rc |= cmocka_run_group_tests_name("payments_redis", redis_tests, setup_redis, teardown);
    }
    return rc;
}
