/* Tests for src/obs/trace_otlp.c: OTLP/HTTP JSON export to a collector played by a keel server
 * started in the test (POST /v1/traces), batching, the bounded queue, flush and shutdown. */
#define _GNU_SOURCE 1
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "keel_int.h"

#include <keel/trace.h>

#include "obs/trace_int.h"

/* ------------------------------------------------------------ collector -- */

#define MAX_POSTS 64

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char *g_posts[MAX_POSTS];
static char g_ctype[MAX_POSTS][64];
static size_t g_nposts;
static int g_answer = 200;

static keel_err on_traces(keel_ctx *cx, void *ud)
{
    (void)ud;
    keel_str b = keel_req_body(cx);
    const char *ct = keel_req_header(cx, "Content-Type");
    pthread_mutex_lock(&g_mu);
    if (g_nposts < MAX_POSTS) {
        g_posts[g_nposts] = strndup(b.ptr ? b.ptr : "", b.len);
        snprintf(g_ctype[g_nposts], sizeof g_ctype[0], "%s", ct ? ct : "");
        g_nposts++;
    }
    int answer = g_answer;
    pthread_mutex_unlock(&g_mu);
    return keel_resp_body(cx, answer, "application/json", "{}", 2);
}

static keel_server *g_srv;
static keel_router *g_router;
static char g_endpoint[64];

static int setup(void **state)
{
    (void)state;
    keel_diag d = {0};
    if (keel_router_create(&g_router) != KEEL_OK ||
        keel_router_add(g_router, KEEL_METHOD_POST, "/v1/traces", on_traces, NULL, 0, &d) !=
            KEEL_OK)
        return -1;
    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.port = 0;
    sc.workers = 2;
    sc.max_body = 8u * 1024u * 1024u;
    if (keel_server_create(&g_srv, &sc, g_router, NULL, NULL, &d) != KEEL_OK ||
        keel_server_start(g_srv, &d) != KEEL_OK)
        return -1;
    snprintf(g_endpoint, sizeof g_endpoint, "http://127.0.0.1:%u", keel_server_port(g_srv));
    g_answer = 200;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keel_trace_stop();
    keel_server_destroy(g_srv);
    keel_router_destroy(g_router);
    for (size_t i = 0; i < g_nposts; i++)
        free(g_posts[i]);
    g_nposts = 0;
    return 0;
}

static size_t nposts(void)
{
    pthread_mutex_lock(&g_mu);
    size_t n = g_nposts;
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* POST i parsed as JSON; its spans array in *spans (borrowed from the result). */
static json_t *post_json(size_t i, json_t **spans)
{
    assert_true(i < nposts());
    json_error_t err;
    json_t *root = json_loads(g_posts[i], 0, &err);
    if (root == NULL)
        fail_msg("collector got invalid JSON: %s", err.text);
    json_t *rs = json_object_get(root, "resourceSpans");
    assert_int_equal(1, json_array_size(rs));
    json_t *ss = json_object_get(json_array_get(rs, 0), "scopeSpans");
    assert_int_equal(1, json_array_size(ss));
    *spans = json_object_get(json_array_get(ss, 0), "spans");
    assert_true(json_is_array(*spans));
    return root;
}

static json_t *span_named(json_t *spans, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach(spans, i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "name")), name) == 0)
            return s;
    }
    fail_msg("no span named %s", name);
    return NULL;
}

/* The AnyValue of attribute key in a KeyValue list; fails when absent. */
static json_t *attr_value(json_t *attrs, const char *key)
{
    size_t i;
    json_t *kv;
    json_array_foreach(attrs, i, kv)
    {
        if (strcmp(json_string_value(json_object_get(kv, "key")), key) == 0)
            return json_object_get(kv, "value");
    }
    fail_msg("no attribute %s", key);
    return NULL;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static uint64_t jnano(json_t *o, const char *key)
{
    const char *s = jstr(o, key);
    assert_non_null(s); /* 64-bit integers travel as strings */
    assert_true(strspn(s, "0123456789") == strlen(s) && strlen(s) > 0);
    return strtoull(s, NULL, 10);
}

static keel_trace_config otlp_config(void)
{
    keel_trace_config c;
    keel_trace_config_default(&c);
    c.service_name = "test-svc";
    c.service_version = "1.2.3";
    c.environment = "test";
    c.log_spans = 0;
    c.otlp_endpoint = g_endpoint;
    c.otlp_interval_ms = 60000; /* only flush and full batches send */
    return c;
}

/* An ended span for the exporter tests that drive keel__otlp directly. */
static keel_span *ended_span(const char *name)
{
    keel_span *sp;
    ASSERT_OK(keel_span_start(&sp, name, KEEL_SPAN_INTERNAL));
    sp->end_unix_ns = sp->start_unix_ns + 1000;
    return sp;
}

static keel__otlp_config direct_config(char *url_out, size_t n)
{
    snprintf(url_out, n, "%s/v1/traces", g_endpoint);
    keel__otlp_config oc;
    memset(&oc, 0, sizeof oc);
    oc.url = url_out;
    oc.service_name = "direct";
    oc.queue_capacity = 3;
    oc.batch_size = 2;
    oc.interval_ms = 60000;
    oc.timeout_ms = 10000;
    oc.shutdown_ms = 10000;
    return oc;
}

/* --------------------------------------------------------------- tests -- */

static void test_traces_url(void **state)
{
    (void)state;
    char *u = keel__otlp_traces_url("http://collector:4318");
    assert_string_equal("http://collector:4318/v1/traces", u);
    keel_free(u);
    u = keel__otlp_traces_url("https://collector:4318/");
    assert_string_equal("https://collector:4318/v1/traces", u);
    keel_free(u);
    assert_null(keel__otlp_traces_url(NULL));
}

static void test_export_structure(void **state)
{
    (void)state;
    keel_trace_config c = otlp_config();
    ASSERT_OK(keel_trace_start(&c, NULL));
    keel_span_context remote;
    ASSERT_OK(keel_traceparent_parse(
        keel_str_c("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), &remote, NULL));
    keel_span *srv, *ch;
    ASSERT_OK(keel_span_start_with_parent(&srv, "GET /items/{id}", KEEL_SPAN_SERVER, &remote,
                                          "congo=t61rcWkgMzE"));
    ASSERT_OK(keel_span_push(srv));
    ASSERT_OK(keel_span_start(&ch, "db query \"items\"", KEEL_SPAN_CLIENT));
    ASSERT_OK(keel_span_set_str(ch, "db.system", "sqlite"));
    ASSERT_OK(keel_span_set_int(ch, "db.rows", -42));
    ASSERT_OK(keel_span_set_double(ch, "ratio", 0.1));
    ASSERT_OK(keel_span_set_double(ch, "bad", 0.0 / 0.0));
    ASSERT_OK(keel_span_set_bool(ch, "cached", 0));
    keel_trace_attr ea[1] = {KEEL_TA_STR("note", "caf\xc3\xa9 \x01")};
    ASSERT_OK(keel_span_add_event(ch, "cache miss", ea, 1));
    ASSERT_OK(keel_span_record_error(ch, KEEL_EIO, "disk full"));
    keel_span_context chc, srvc;
    keel_span_get_context(ch, &chc);
    keel_span_get_context(srv, &srvc);
    keel_span_end(ch);
    keel_span_set_status(srv, KEEL_SPAN_STATUS_OK, NULL);
    keel_span_end(srv);
    ASSERT_OK(keel_trace_flush(20000));
    assert_int_equal(1, nposts());
    assert_string_equal("application/json", g_ctype[0]);

    json_t *spans;
    json_t *root = post_json(0, &spans);
    json_t *res = json_object_get(json_array_get(json_object_get(root, "resourceSpans"), 0),
                                  "resource");
    json_t *rattrs = json_object_get(res, "attributes");
    assert_string_equal("test-svc", jstr(attr_value(rattrs, "service.name"), "stringValue"));
    assert_string_equal("1.2.3", jstr(attr_value(rattrs, "service.version"), "stringValue"));
    assert_string_equal("test", jstr(attr_value(rattrs, "deployment.environment"),
                                     "stringValue"));
    json_t *scope = json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(root, "resourceSpans"), 0),
                                       "scopeSpans"),
                       0),
        "scope");
    assert_string_equal("keel", jstr(scope, "name"));
    assert_int_equal(2, json_array_size(spans));

    char hex[33];
    json_t *s = span_named(spans, "GET /items/{id}");
    assert_string_equal("4bf92f3577b34da6a3ce929d0e0e4736", jstr(s, "traceId"));
    assert_string_equal("00f067aa0ba902b7", jstr(s, "parentSpanId"));
    keel_span_id_hex(&srvc, hex);
    assert_string_equal(hex, jstr(s, "spanId"));
    assert_string_equal("congo=t61rcWkgMzE", jstr(s, "traceState"));
    assert_int_equal(2, json_integer_value(json_object_get(s, "kind")));
    assert_int_equal(1, json_integer_value(json_object_get(json_object_get(s, "status"), "code")));
    uint64_t st = jnano(s, "startTimeUnixNano"), en = jnano(s, "endTimeUnixNano");
    assert_true(en >= st);
    assert_true(st > 1600000000ull * 1000000000ull); /* a real Unix time in ns */
    assert_int_equal(0, json_array_size(json_object_get(s, "events")));

    json_t *c2 = span_named(spans, "db query \"items\"");
    assert_string_equal("4bf92f3577b34da6a3ce929d0e0e4736", jstr(c2, "traceId"));
    keel_span_id_hex(&chc, hex);
    assert_string_equal(hex, jstr(c2, "spanId"));
    keel_span_id_hex(&srvc, hex);
    assert_string_equal(hex, jstr(c2, "parentSpanId"));
    assert_string_equal("congo=t61rcWkgMzE", jstr(c2, "traceState")); /* from the local parent */
    assert_int_equal(3, json_integer_value(json_object_get(c2, "kind")));
    json_t *at = json_object_get(c2, "attributes");
    assert_int_equal(5, json_array_size(at));
    assert_string_equal("sqlite", jstr(attr_value(at, "db.system"), "stringValue"));
    assert_string_equal("-42", jstr(attr_value(at, "db.rows"), "intValue"));
    assert_true(json_real_value(json_object_get(attr_value(at, "ratio"), "doubleValue")) == 0.1);
    assert_string_equal("NaN", jstr(attr_value(at, "bad"), "doubleValue"));
    assert_true(json_is_false(json_object_get(attr_value(at, "cached"), "boolValue")));
    json_t *evs = json_object_get(c2, "events");
    assert_int_equal(2, json_array_size(evs));
    json_t *e0 = json_array_get(evs, 0), *e1 = json_array_get(evs, 1);
    assert_string_equal("cache miss", jstr(e0, "name"));
    uint64_t et = jnano(e0, "timeUnixNano");
    assert_true(et >= jnano(c2, "startTimeUnixNano") && et <= jnano(c2, "endTimeUnixNano"));
    assert_string_equal("caf\xc3\xa9 \x01",
                        jstr(attr_value(json_object_get(e0, "attributes"), "note"),
                             "stringValue"));
    assert_string_equal("exception", jstr(e1, "name"));
    json_t *ea1 = json_object_get(e1, "attributes");
    assert_string_equal("KEEL_EIO", jstr(attr_value(ea1, "exception.type"), "stringValue"));
    assert_string_equal("disk full", jstr(attr_value(ea1, "exception.message"), "stringValue"));
    assert_string_equal("-7", jstr(attr_value(ea1, "keel.error_code"), "intValue"));
    json_t *status = json_object_get(c2, "status");
    assert_int_equal(2, json_integer_value(json_object_get(status, "code")));
    assert_string_equal("disk full", jstr(status, "message"));
    json_decref(root);

    keel_trace_stats ts;
    keel_trace_stats_get(&ts);
    assert_int_equal(2, ts.otlp_queued);
    assert_int_equal(2, ts.otlp_exported);
    assert_int_equal(0, ts.otlp_dropped);
    assert_int_equal(0, ts.otlp_failed);
    keel_trace_stop();
    /* counters survive the exporter */
    keel_trace_stats_get(&ts);
    assert_int_equal(2, ts.otlp_exported);
}

static void test_queue_full_and_batches(void **state)
{
    (void)state;
    char url[128];
    keel__otlp_config oc = direct_config(url, sizeof url);
    keel__otlp *x;
    ASSERT_OK(keel__otlp_create(&x, &oc, 0)); /* no thread yet: nothing drains */
    const char *names[5] = {"s0", "s1", "s2", "s3", "s4"};
    for (int i = 0; i < 5; i++) {
        keel_err e = keel__otlp_enqueue(x, ended_span(names[i]));
        assert_int_equal(i < 3 ? KEEL_OK : KEEL_EFULL, e);
    }
    keel__otlp_stats st;
    keel__otlp_stats_get(x, &st);
    assert_int_equal(3, st.queued);
    assert_int_equal(2, st.dropped);
    assert_int_equal(0, st.exported);
    /* a flush without a thread cannot finish */
    assert_int_equal(KEEL_ETIMEOUT, keel__otlp_flush(x, 0));
    ASSERT_OK(keel__otlp_start_thread(x));
    assert_int_equal(KEEL_ESTATE, keel__otlp_start_thread(x));
    ASSERT_OK(keel__otlp_flush(x, 20000));
    keel__otlp_stats_get(x, &st);
    assert_int_equal(3, st.exported);
    /* batch_size 2: three spans went out in two POSTs of 2 and 1 */
    assert_int_equal(2, nposts());
    json_t *spans;
    json_t *r0 = post_json(0, &spans);
    assert_int_equal(2, json_array_size(spans));
    assert_string_equal("s0", jstr(json_array_get(spans, 0), "name"));
    assert_string_equal("s1", jstr(json_array_get(spans, 1), "name"));
    json_decref(r0);
    json_t *r1 = post_json(1, &spans);
    assert_int_equal(1, json_array_size(spans));
    assert_string_equal("s2", jstr(json_array_get(spans, 0), "name"));
    json_decref(r1);
    keel__otlp_destroy(x, &st);
    assert_int_equal(3, st.exported);
    assert_int_equal(2, st.dropped);
}

static void test_flush_on_shutdown(void **state)
{
    (void)state;
    char url[128];
    keel__otlp_config oc = direct_config(url, sizeof url);
    oc.queue_capacity = 100;
    oc.batch_size = 50;
    keel__otlp *x;
    ASSERT_OK(keel__otlp_create(&x, &oc, 1));
    for (int i = 0; i < 4; i++)
        ASSERT_OK(keel__otlp_enqueue(x, ended_span("late")));
    /* the interval is a minute and the batch is not full: only shutdown sends them */
    keel__otlp_stats st;
    keel__otlp_destroy(x, &st);
    assert_int_equal(4, st.exported);
    assert_int_equal(0, st.dropped);
    assert_int_equal(1, nposts());
    json_t *spans;
    json_t *r = post_json(0, &spans);
    assert_int_equal(4, json_array_size(spans));
    json_decref(r);

    /* the same through the tracer: keel_trace_stop() sends what is queued */
    keel_trace_config c = otlp_config();
    ASSERT_OK(keel_trace_start(&c, NULL));
    keel_span *sp;
    ASSERT_OK(keel_span_start(&sp, "at-exit", KEEL_SPAN_INTERNAL));
    keel_span_end(sp);
    keel_trace_stop();
    assert_int_equal(2, nposts());
    r = post_json(1, &spans);
    assert_string_equal("at-exit", jstr(json_array_get(spans, 0), "name"));
    json_decref(r);
}

static void test_failures_counted(void **state)
{
    (void)state;
    keel_trace_stats before, after;
    keel_trace_stats_get(&before);
    g_answer = 503;
    keel_trace_config c = otlp_config();
    ASSERT_OK(keel_trace_start(&c, NULL));
    keel_span *sp;
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(keel_span_start(&sp, "rejected", KEEL_SPAN_INTERNAL));
        keel_span_end(sp);
    }
    ASSERT_OK(keel_trace_flush(20000)); /* done, even though it failed */
    keel_trace_stats_get(&after);
    assert_int_equal(3, after.otlp_failed - before.otlp_failed);
    assert_int_equal(1, after.otlp_requests_failed - before.otlp_requests_failed);
    assert_int_equal(0, after.otlp_exported - before.otlp_exported);
    keel_trace_stop();
    g_answer = 200;

    /* nobody listening: a transport failure, counted, never blocking the caller */
    char url[128];
    keel__otlp_config oc = direct_config(url, sizeof url);
    snprintf(url, sizeof url, "http://127.0.0.1:1/v1/traces");
    oc.timeout_ms = 2000;
    keel__otlp *x;
    ASSERT_OK(keel__otlp_create(&x, &oc, 1));
    ASSERT_OK(keel__otlp_enqueue(x, ended_span("lost")));
    ASSERT_OK(keel__otlp_flush(x, 20000));
    keel__otlp_stats st;
    keel__otlp_destroy(x, &st);
    assert_int_equal(1, st.failed);
    assert_int_equal(1, st.requests_failed);
    assert_int_equal(0, st.exported);
}

static void test_unsampled_not_exported(void **state)
{
    (void)state;
    keel_trace_config c = otlp_config();
    c.sampler = KEEL_TRACE_SAMPLE_ALWAYS_OFF;
    ASSERT_OK(keel_trace_start(&c, NULL));
    keel_span *sp;
    ASSERT_OK(keel_span_start(&sp, "dark", KEEL_SPAN_INTERNAL));
    keel_span_end(sp);
    ASSERT_OK(keel_trace_flush(20000));
    keel_trace_stop();
    assert_int_equal(0, nposts());
}

static void test_encode_limit(void **state)
{
    (void)state;
    keel__otlp_config oc;
    memset(&oc, 0, sizeof oc);
    oc.service_name = "x";
    keel_span *sp = ended_span("big");
    size_t len = 0;
    char *body = keel__otlp_encode(&oc, sp, 1, 64, &len); /* far too small */
    assert_null(body);
    body = keel__otlp_encode(&oc, sp, 1, 1u << 20, &len);
    assert_non_null(body);
    assert_int_equal(strlen(body), len);
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    json_decref(j);
    keel_free(body);
    keel__span_free(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traces_url),
        cmocka_unit_test_setup_teardown(test_export_structure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full_and_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_on_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsampled_not_exported, setup, teardown),
        cmocka_unit_test(test_encode_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
