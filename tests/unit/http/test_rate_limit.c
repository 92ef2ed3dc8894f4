/* In-process tests of src/http/rate_limit.c: a real server on an ephemeral port with the rate
 * limit layer in the standard chain; a GCRA limiter on a frozen manual clock. */
#define _GNU_SOURCE 1
#include "test.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/limiter.h>

static keel_err ok_handler(keel_ctx *cx, void *ud)
{
    (void)ud;
    return keel_resp_success(cx, 200, json_pack("{s:b}", "ok", 1), NULL);
}

typedef struct fixture {
    keel_manual_clock mc;
    keel_limiter *lim;
    keel_router *r;
    keel_server *s;
    keel_test_server ts; /* only port and base_url are used */
} fixture;

static void start(fixture *f, const char *key_header)
{
    keel_diag d = {0};
    memset(f, 0, sizeof(*f));
    keel_manual_clock_init(&f->mc, 0);
    keel_limiter_config lc;
    keel_limiter_config_default(&lc);
    lc.algorithm = KEEL_LIMIT_GCRA;
    lc.rate = 3;
    lc.period_ms = 60000; /* one every 20 s */
    lc.burst = 2;         /* 3 at once */
    lc.clock = &f->mc.clock;
    ASSERT_OK(keel_limiter_create(&lc, &f->lim, &d));

    ASSERT_OK(keel_router_create(&f->r));
    ASSERT_OK(keel_router_add(f->r, KEEL_METHOD_POST, "/api/auth/login", ok_handler, NULL, 0,
                              &d));
    ASSERT_OK(keel_router_add(f->r, KEEL_METHOD_POST, "/api/auth/register", ok_handler, NULL, 0,
                              &d));
    ASSERT_OK(keel_router_add(f->r, KEEL_METHOD_GET, "/api/other", ok_handler, NULL, 0, &d));

    static const char *const prefixes[] = {"/api/auth/login", "/api/auth/register", NULL};
    keel_mw_rate_limit_config rc;
    keel_mw_rate_limit_config_default(&rc);
    rc.limiter = f->lim;
    rc.path_prefixes = prefixes;
    rc.key_header = key_header;
    keel_layer *layer;
    ASSERT_OK(keel_mw_rate_limit(&rc, &layer));
    assert_string_equal("rate_limit", layer->name);

    static const char *const any[] = {"*", NULL};
    keel_cors_config cors;
    keel_cors_config_default(&cors);
    cors.origins = any;
    cors.methods = any;
    cors.headers = any;
    keel_http_chain_config hc;
    keel_http_chain_config_default(&hc);
    hc.cors = &cors;
    hc.access_log = 0;
    hc.rate_limit = layer;
    keel_chain *chain;
    ASSERT_OK(keel_http_chain_build(&hc, &chain));

    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.port = 0;
    sc.workers = 2;
    ASSERT_OK(keel_server_create(&f->s, &sc, f->r, chain, NULL, &d));
    ASSERT_OK(keel_server_start(f->s, &d));
    f->ts.port = keel_server_port(f->s);
    snprintf(f->ts.base_url, sizeof(f->ts.base_url), "http://127.0.0.1:%u", f->ts.port);
}

static void stop(fixture *f)
{
    keel_server_destroy(f->s);
    keel_router_destroy(f->r);
    keel_limiter_destroy(f->lim);
}

static long request(fixture *f, const char *method, const char *path, const char *const *hdrs,
                    keel_test_resp *out)
{
    const char *body = strcmp(method, "POST") == 0 ? "{}" : NULL;
    assert_int_equal(0, keel_test_http(&f->ts, method, path, hdrs, body, body ? 2 : 0, out));
    return out->status;
}

static void expect_header(const keel_test_resp *r, const char *name, const char *value)
{
    char v[256];
    assert_true(keel_test_resp_header(r, name, v, sizeof(v)));
    assert_string_equal(value, v);
}

static void test_limit_then_429(void **state)
{
    (void)state;
    fixture f;
    start(&f, NULL);
    static const char *const json[] = {"Content-Type: application/json", NULL};
    keel_test_resp r;
    const char *remaining[] = {"\"default\";r=2;t=20", "\"default\";r=1;t=40",
                               "\"default\";r=0;t=60"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(200, request(&f, "POST", "/api/auth/login", json, &r));
        expect_header(&r, "RateLimit-Policy", "\"default\";q=3;w=60");
        expect_header(&r, "RateLimit", remaining[i]);
        assert_false(keel_test_resp_header(&r, "Retry-After", NULL, 0));
        keel_test_resp_free(&r);
    }
    assert_int_equal(429, request(&f, "POST", "/api/auth/login", json, &r));
    expect_header(&r, "Retry-After", "20");
    expect_header(&r, "RateLimit-Policy", "\"default\";q=3;w=60");
    expect_header(&r, "RateLimit", "\"default\";r=0;t=60");
    expect_header(&r, "Content-Type", "application/problem+json");
    json_error_t err;
    json_t *doc = json_loads(r.body, 0, &err);
    assert_non_null(doc);
    assert_int_equal(429, json_integer_value(json_object_get(doc, "status")));
    assert_string_equal("Rate limit exceeded; retry in 20 seconds.",
                        json_string_value(json_object_get(doc, "detail")));
    json_decref(doc);
    keel_test_resp_free(&r);

    /* the same client on the other limited prefix shares the key (client IP) */
    assert_int_equal(429, request(&f, "POST", "/api/auth/register", json, &r));
    keel_test_resp_free(&r);

    /* outside the prefix list: not limited, no RateLimit fields */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(200, request(&f, "GET", "/api/other", NULL, &r));
        assert_false(keel_test_resp_header(&r, "RateLimit", NULL, 0));
        assert_false(keel_test_resp_header(&r, "RateLimit-Policy", NULL, 0));
        keel_test_resp_free(&r);
    }

    /* CORS preflight of a limited path: not limited */
    static const char *const pre[] = {"Origin: https://app.example", 
                                      "Access-Control-Request-Method: POST", NULL};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(204, request(&f, "OPTIONS", "/api/auth/login", pre, &r));
        assert_false(keel_test_resp_header(&r, "Retry-After", NULL, 0));
        keel_test_resp_free(&r);
    }

    /* time moves on 20 s (rounded up from the retry): one more passes */
    keel_manual_clock_advance(&f.mc, 20000);
    assert_int_equal(200, request(&f, "POST", "/api/auth/login", json, &r));
    expect_header(&r, "RateLimit", "\"default\";r=0;t=60");
    keel_test_resp_free(&r);
    assert_int_equal(429, request(&f, "POST", "/api/auth/login", json, &r));
    keel_test_resp_free(&r);
    stop(&f);
}

static void test_header_key(void **state)
{
    (void)state;
    fixture f;
    start(&f, "X-User-Id");
    static const char *const alice[] = {"Content-Type: application/json", "X-User-Id: alice",
                                        NULL};
    static const char *const bob[] = {"Content-Type: application/json", "X-User-Id: bob", NULL};
    keel_test_resp r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(200, request(&f, "POST", "/api/auth/login", alice, &r));
        keel_test_resp_free(&r);
    }
    assert_int_equal(429, request(&f, "POST", "/api/auth/login", alice, &r));
    keel_test_resp_free(&r);
    assert_int_equal(200, request(&f, "POST", "/api/auth/login", bob, &r));
    expect_header(&r, "RateLimit", "\"default\";r=2;t=20");
    keel_test_resp_free(&r);
    assert_int_equal(2, keel_limiter_keys(f.lim));
    stop(&f);
}

static void test_config(void **state)
{
    (void)state;
    keel_layer *l = (keel_layer *)1;
    keel_mw_rate_limit_config rc;
    keel_mw_rate_limit_config_default(&rc);
    assert_int_equal(1, rc.skip_preflight);
    assert_int_equal(KEEL_EINVAL, keel_mw_rate_limit(&rc, &l)); /* no limiter */
    assert_null(l);
    assert_int_equal(KEEL_EINVAL, keel_mw_rate_limit(NULL, &l));
    assert_int_equal(KEEL_EINVAL, keel_mw_rate_limit(&rc, NULL));
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_then_429),
        cmocka_unit_test(test_header_key),
        cmocka_unit_test(test_config),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
