/* In-process tests of src/http/server.c through the public API: an ephemeral port, readiness
 * probes, drain, inline vs worker routes, and a chain layer that short-circuits. */
#define _GNU_SOURCE 1
#include "test.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keel/keel.h>

static int probe_ok = 0;

static keel_err probe(void *ud, char *detail, size_t n)
{
    (void)ud;
    if (probe_ok)
        return KEEL_OK;
    snprintf(detail, n, "database unreachable");
    return KEEL_EIO;
}

static keel_err slow(keel_ctx *cx, void *ud)
{
    (void)ud;
    usleep(300000);
    return keel_resp_success(cx, 200, json_pack("{s:b}", "slow", 1), NULL);
}

static keel_err thread_name(keel_ctx *cx, void *ud)
{
    (void)ud;
    char name[32] = "";
    pthread_getname_np(pthread_self(), name, sizeof(name));
    return keel_resp_success(cx, 200, json_pack("{s:s}", "thread", name), NULL);
}

/* A layer that refuses requests carrying "X-Deny" without calling the rest of the chain. */
static keel_err deny_call(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    (void)self;
    keel_ctx *cx = vcx;
    if (keel_req_header(cx, "X-Deny") != NULL)
        return keel_resp_problem(cx, 403, NULL, "Denied by test layer.", NULL);
    return keel_chain_next(cur, cx);
}

static char last_body[512];

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    (void)ud;
    size_t have = strlen(last_body), k = s * n;
    if (have + k < sizeof(last_body)) {
        memcpy(last_body + have, p, k);
        last_body[have + k] = '\0';
    }
    return s * n;
}

static long get(uint16_t port, const char *path, const char *header)
{
    last_body[0] = '\0';
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    struct curl_slist *h = header ? curl_slist_append(NULL, header) : NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

typedef struct bg {
    uint16_t port;
    long status;
} bg;

static void *bg_get(void *p)
{
    bg *b = p;
    b->status = get(b->port, "/slow", NULL);
    return NULL;
}

static void test_probes_drain_and_layers(void **state)
{
    (void)state;
    keel_router *r;
    keel_metrics *m;
    keel_chain *chain;
    keel_server *s;
    keel_diag d = {0};
    ASSERT_OK(keel_router_create(&r));
    ASSERT_OK(keel_metrics_create(&m));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/slow", slow, NULL, 0, &d));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/where", thread_name, NULL, 0, &d));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/where-inline", thread_name, NULL,
                              KEEL_ROUTE_INLINE, &d));
    keel_http_chain_config hc;
    keel_http_chain_config_default(&hc);
    hc.metrics = m;
    hc.access_log = 0;
    static keel_layer deny = {"deny", deny_call, NULL};
    hc.auth = &deny;
    ASSERT_OK(keel_http_chain_build(&hc, &chain));
    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.port = 0;
    sc.workers = 2;
    ASSERT_OK(keel_server_create(&s, &sc, r, chain, m, &d));
    ASSERT_OK(keel_server_add_probe(s, "db", probe, NULL));
    ASSERT_OK(keel_server_start(s, &d));
    uint16_t port = keel_server_port(s);
    assert_true(port > 0);

    assert_int_equal(503, get(port, "/health/ready", NULL)); /* not started yet */
    keel_server_set_ready(s, 1);
    assert_int_equal(503, get(port, "/health/ready", NULL)); /* probe failing */
    probe_ok = 1;
    assert_int_equal(200, get(port, "/health/ready", NULL));
    assert_int_equal(200, get(port, "/health/live", NULL));
    assert_int_equal(403, get(port, "/health/live", "X-Deny: 1")); /* layer answered */

    /* worker routes run on worker threads, inline routes on the event loop */
    assert_int_equal(200, get(port, "/where", NULL));
    assert_non_null(strstr(last_body, "\"thread\":\"keel-worker\""));
    assert_int_equal(200, get(port, "/where-inline", NULL));
    assert_null(strstr(last_body, "keel-worker"));
    assert_non_null(strstr(last_body, "\"thread\":\"MHD"));

    /* drain waits for the in-flight slow request, which completes normally */
    bg b = {port, 0};
    pthread_t t;
    pthread_create(&t, NULL, bg_get, &b);
    usleep(100000);
    assert_int_equal(1, keel_server_inflight(s));
    ASSERT_OK(keel_server_drain(s, 5000));
    pthread_join(t, NULL);
    assert_int_equal(200, b.status);
    assert_int_equal(0, keel_server_inflight(s));
    /* the listening socket is closed: new connections fail */
    assert_int_equal(-1, get(port, "/health/live", NULL));
    keel_server_destroy(s);
    keel_router_destroy(r);
    keel_metrics_destroy(m);
}

/* keel_ctx_defer(): callbacks run once per request, newest first, after the response. */
static char g_defer_log[64];
static pthread_mutex_t g_defer_mu = PTHREAD_MUTEX_INITIALIZER;

static void defer_note(void *arg)
{
    pthread_mutex_lock(&g_defer_mu);
    strncat(g_defer_log, arg, sizeof(g_defer_log) - strlen(g_defer_log) - 1);
    pthread_mutex_unlock(&g_defer_mu);
}

static keel_err deferring(keel_ctx *cx, void *ud)
{
    (void)ud;
    assert_int_equal(KEEL_EINVAL, keel_ctx_defer(cx, NULL, NULL));
    ASSERT_OK(keel_ctx_defer(cx, defer_note, "1"));
    ASSERT_OK(keel_ctx_defer(cx, defer_note, "2"));
    /* nothing has run while the handler is still working */
    pthread_mutex_lock(&g_defer_mu);
    size_t n = strlen(g_defer_log) % 2;
    pthread_mutex_unlock(&g_defer_mu);
    return keel_resp_success(cx, 200, json_pack("{s:i}", "pending", (int)n), NULL);
}

static void test_defer(void **state)
{
    (void)state;
    keel_router *r;
    keel_server *s;
    keel_diag d = {0};
    ASSERT_OK(keel_router_create(&r));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/defer", deferring, NULL, 0, &d));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/defer-inline", deferring, NULL,
                              KEEL_ROUTE_INLINE, &d));
    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.port = 0;
    sc.workers = 2;
    ASSERT_OK(keel_server_create(&s, &sc, r, NULL, NULL, &d));
    ASSERT_OK(keel_server_start(s, &d));
    keel_server_set_ready(s, 1);
    uint16_t port = keel_server_port(s);
    assert_int_equal(KEEL_EINVAL, keel_ctx_defer(NULL, defer_note, "x"));
    const char *paths[] = {"/defer", "/defer-inline", "/defer"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(200, get(port, paths[i], NULL));
        assert_non_null(strstr(last_body, "\"pending\":0"));
    }
    /* completion runs after the response went out: wait for the last one */
    char want[] = "212121";
    for (int tries = 0; tries < 200; tries++) {
        pthread_mutex_lock(&g_defer_mu);
        int done = strcmp(g_defer_log, want) == 0;
        pthread_mutex_unlock(&g_defer_mu);
        if (done)
            break;
        usleep(10000);
    }
    assert_string_equal(want, g_defer_log);
    keel_server_destroy(s);
    keel_router_destroy(r);
}

static void test_bad_host(void **state)
{
    (void)state;
    keel_router *r;
    keel_server *s;
    keel_diag d = {0};
    ASSERT_OK(keel_router_create(&r));
    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.host = "localhost"; /* not numeric */
    sc.port = 0;
    ASSERT_OK(keel_server_create(&s, &sc, r, NULL, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_server_start(s, &d));
    assert_non_null(strstr(d.msg, "numeric"));
    keel_server_destroy(s);
    keel_router_destroy(r);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probes_drain_and_layers),
        cmocka_unit_test(test_bad_host),
        cmocka_unit_test(test_defer),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
