/* Integration: start a real keeld on a free loopback port and drive it over HTTP. */
#define _GNU_SOURCE 1
#include "test.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static keel_test_server srv;

static int setup(void **state)
{
    (void)state;
    static const char *const env[] = {"CORS_ALLOW_ORIGINS=https://shop.example,https://admin.example",
                                      "CORS_ALLOW_METHODS=GET,POST",
                                      "CORS_ALLOW_HEADERS=Content-Type,Authorization",
                                      "HTTP_MAX_BODY_BYTES=4096", "HTTP_WORKERS=4",
                                      "TRACE_LOG_SPANS=true", NULL};
    return keel_test_server_start(&srv, env);
}

static int teardown(void **state)
{
    (void)state;
    keel_test_server_stop(&srv, SIGTERM, 10000);
    return 0;
}

static json_t *body_json(const keel_test_resp *r)
{
    json_error_t err;
    json_t *v = json_loads(r->body, 0, &err);
    if (v == NULL)
        fail_msg("response body is not JSON (%s): %s", err.text, r->body);
    return v;
}

static void assert_header(const keel_test_resp *r, const char *name, const char *want)
{
    char v[512];
    if (!keel_test_resp_header(r, name, v, sizeof(v)))
        fail_msg("missing header %s in:\n%s", name, r->headers);
    if (want)
        assert_string_equal(want, v);
}

static void assert_problem(const keel_test_resp *r, long status)
{
    assert_int_equal(status, r->status);
    assert_header(r, "content-type", "application/problem+json");
    json_t *p = body_json(r);
    assert_int_equal(status, json_integer_value(json_object_get(p, "status")));
    assert_true(json_is_string(json_object_get(p, "type")));
    assert_true(json_is_string(json_object_get(p, "title")));
    assert_true(json_is_string(json_object_get(p, "instance")));
    assert_true(json_is_array(json_object_get(p, "errors")));
    json_t *meta = json_object_get(p, "meta");
    assert_true(json_is_false(json_object_get(meta, "success")));
    assert_true(json_is_string(json_object_get(meta, "timestamp")));
    char rid[128];
    assert_true(keel_test_resp_header(r, "x-request-id", rid, sizeof(rid)));
    assert_string_equal(rid, json_string_value(json_object_get(meta, "request_id")));
    json_decref(p);
}

static void test_root_and_envelope(void **state)
{
    (void)state;
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    json_t *v = body_json(&r);
    assert_string_equal("keel", json_string_value(json_object_get(v, "name")));
    assert_string_equal("ok", json_string_value(json_object_get(v, "status")));
    assert_string_equal("test", json_string_value(json_object_get(v, "environment")));
    assert_string_equal(keel_version(), json_string_value(json_object_get(v, "version")));
    json_decref(v);
    keel_test_resp_free(&r);

    ASSERT_OK(keel_test_http(&srv, "GET", "/health/live", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    assert_header(&r, "content-type", "application/json");
    v = body_json(&r);
    assert_string_equal("alive",
                        json_string_value(json_object_get(json_object_get(v, "data"), "status")));
    json_t *meta = json_object_get(v, "meta");
    assert_true(json_is_true(json_object_get(meta, "success")));
    const char *ts = json_string_value(json_object_get(meta, "timestamp"));
    assert_non_null(ts);
    assert_int_equal(24, strlen(ts));
    assert_int_equal('Z', ts[23]);
    char rid[128];
    assert_true(keel_test_resp_header(&r, "x-request-id", rid, sizeof(rid)));
    assert_true(keel_uuid_valid(keel_str_c(rid)));
    assert_string_equal(rid, json_string_value(json_object_get(meta, "request_id")));
    json_decref(v);
    /* seed 002 security headers and X-Process-Time on every response */
    assert_header(&r, "strict-transport-security", NULL);
    assert_header(&r, "x-content-type-options", "nosniff");
    assert_header(&r, "x-frame-options", "DENY");
    assert_header(&r, "referrer-policy", "strict-origin-when-cross-origin");
    assert_header(&r, "x-process-time", NULL);
    keel_test_resp_free(&r);
}

static void test_request_id(void **state)
{
    (void)state;
    keel_test_resp r;
    const char *h1[] = {"X-Request-ID: client-req.42:abc_DEF", NULL};
    ASSERT_OK(keel_test_http(&srv, "GET", "/health/live", h1, NULL, 0, &r));
    assert_header(&r, "x-request-id", "client-req.42:abc_DEF");
    keel_test_resp_free(&r);
    /* not sane: spaces/quotes, or too long -> replaced by a generated UUID */
    const char *h2[] = {"X-Request-ID: bad id\"<script>", NULL};
    ASSERT_OK(keel_test_http(&srv, "GET", "/nope", h2, NULL, 0, &r));
    char rid[128];
    assert_true(keel_test_resp_header(&r, "x-request-id", rid, sizeof(rid)));
    assert_true(keel_uuid_valid(keel_str_c(rid)));
    assert_problem(&r, 404);
    keel_test_resp_free(&r);
    char longid[200];
    memset(longid, 'a', sizeof(longid));
    memcpy(longid, "X-Request-ID: ", 14);
    longid[199] = '\0';
    const char *h3[] = {longid, NULL};
    ASSERT_OK(keel_test_http(&srv, "GET", "/health/live", h3, NULL, 0, &r));
    assert_true(keel_test_resp_header(&r, "x-request-id", rid, sizeof(rid)));
    assert_true(keel_uuid_valid(keel_str_c(rid)));
    keel_test_resp_free(&r);
}

static void test_404_405_head_options(void **state)
{
    (void)state;
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/does/not/exist", NULL, NULL, 0, &r));
    assert_problem(&r, 404);
    json_t *p = body_json(&r);
    assert_string_equal("Not Found", json_string_value(json_object_get(p, "title")));
    assert_string_equal("/does/not/exist", json_string_value(json_object_get(p, "instance")));
    json_decref(p);
    keel_test_resp_free(&r);

    ASSERT_OK(keel_test_http(&srv, "POST", "/health/live", NULL, "", 0, &r));
    assert_problem(&r, 405);
    assert_header(&r, "allow", "GET, HEAD, OPTIONS");
    keel_test_resp_free(&r);

    ASSERT_OK(keel_test_http(&srv, "HEAD", "/health/live", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    assert_int_equal(0, r.body_len);
    keel_test_resp_free(&r);

    ASSERT_OK(keel_test_http(&srv, "OPTIONS", "/api/v1/_test/items/7", NULL, NULL, 0, &r));
    assert_int_equal(204, r.status);
    assert_header(&r, "allow", "GET, HEAD, DELETE, OPTIONS");
    keel_test_resp_free(&r);

    /* unknown method -> 501 problem */
    ASSERT_OK(keel_test_http(&srv, "BREW", "/", NULL, NULL, 0, &r));
    assert_problem(&r, 501);
    keel_test_resp_free(&r);
}

static void test_versioning(void **state)
{
    (void)state;
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v2/_test/items/abc", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    json_t *v = body_json(&r);
    json_t *d = json_object_get(v, "data");
    assert_int_equal(2, json_integer_value(json_object_get(d, "version")));
    assert_string_equal("abc", json_string_value(json_object_get(d, "id")));
    json_decref(v);
    keel_test_resp_free(&r);

    const char *h[] = {"X-API-Version: 2", NULL};
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/_test/items/9", h, NULL, 0, &r));
    v = body_json(&r);
    assert_int_equal(2, json_integer_value(json_object_get(json_object_get(v, "data"), "version")));
    json_decref(v);
    keel_test_resp_free(&r);

    ASSERT_OK(keel_test_http(&srv, "GET", "/api/_test/items/9", NULL, NULL, 0, &r));
    v = body_json(&r);
    assert_int_equal(1, json_integer_value(json_object_get(json_object_get(v, "data"), "version")));
    json_decref(v);
    keel_test_resp_free(&r);

    const char *bad[] = {"X-API-Version: banana", NULL};
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/_test/items/9", bad, NULL, 0, &r));
    assert_problem(&r, 400);
    keel_test_resp_free(&r);
    const char *v9[] = {"X-API-Version: 9", NULL};
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/_test/items/9", v9, NULL, 0, &r));
    assert_problem(&r, 404);
    keel_test_resp_free(&r);
}

static void test_json_bodies(void **state)
{
    (void)state;
    keel_test_resp r;
    const char *ct[] = {"Content-Type: application/json", NULL};
    const char *ok = "{\"name\":\"Widget\",\"quantity\":3,\"currency\":\"EUR\"}";
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/_test/echo", ct, ok, strlen(ok), &r));
    assert_int_equal(201, r.status);
    json_t *v = body_json(&r);
    assert_int_equal(3, json_integer_value(json_object_get(json_object_get(v, "data"), "quantity")));
    json_decref(v);
    keel_test_resp_free(&r);

    /* 422 lists every field error */
    const char *bad = "{\"quantity\":0,\"email\":\"nope\",\"currency\":\"XXX\",\"extra\":1}";
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/_test/echo", ct, bad, strlen(bad), &r));
    assert_problem(&r, 422);
    v = body_json(&r);
    json_t *errs = json_object_get(v, "errors");
    assert_int_equal(5, json_array_size(errs));
    int seen_missing = 0, seen_extra = 0, seen_min = 0;
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        json_t *loc = json_object_get(e, "loc");
        assert_true(json_is_array(loc));
        assert_string_equal("body", json_string_value(json_array_get(loc, 0)));
        assert_true(json_is_string(json_object_get(e, "msg")));
        if (strcmp(type, "missing") == 0) {
            seen_missing = 1;
            assert_string_equal("name", json_string_value(json_array_get(loc, 1)));
        }
        if (strcmp(type, "extra_forbidden") == 0)
            seen_extra = 1;
        if (strcmp(type, "greater_than_equal") == 0)
            seen_min = 1;
    }
    assert_true(seen_missing && seen_extra && seen_min);
    json_decref(v);
    keel_test_resp_free(&r);

    /* malformed JSON -> 400; wrong content type -> 415; invalid UTF-8 -> 400 */
    const char *broken = "{\"name\": \"x\",";
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/_test/echo", ct, broken, strlen(broken), &r));
    assert_problem(&r, 400);
    keel_test_resp_free(&r);
    const char *txt[] = {"Content-Type: text/plain", NULL};
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/_test/echo", txt, ok, strlen(ok), &r));
    assert_problem(&r, 415);
    keel_test_resp_free(&r);
    const char utf8[] = "{\"name\":\"\xff\xfe\",\"quantity\":1}";
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/_test/echo", ct, utf8, sizeof(utf8) - 1, &r));
    assert_problem(&r, 400);
    keel_test_resp_free(&r);

    /* 413: body larger than HTTP_MAX_BODY_BYTES (4096 here) */
    size_t big = 10000;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/_test/echo", ct, huge, big, &r));
    assert_problem(&r, 413);
    keel_test_resp_free(&r);
    /* the same body sent chunked (no Content-Length) is cut off while reading */
    const char *chunked[] = {"Content-Type: application/json", "Transfer-Encoding: chunked", NULL};
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/_test/echo", chunked, huge, big, &r));
    assert_problem(&r, 413);
    keel_test_resp_free(&r);
    free(huge);
}

static void test_handler_failure_is_500(void **state)
{
    (void)state;
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/_test/fail", NULL, NULL, 0, &r));
    assert_problem(&r, 500);
    json_t *v = body_json(&r);
    assert_string_equal("Internal Server Error", json_string_value(json_object_get(v, "title")));
    json_decref(v);
    keel_test_resp_free(&r);
}

static void test_cors(void **state)
{
    (void)state;
    keel_test_resp r;
    const char *pre[] = {"Origin: https://shop.example", "Access-Control-Request-Method: POST",
                         "Access-Control-Request-Headers: content-type", NULL};
    ASSERT_OK(keel_test_http(&srv, "OPTIONS", "/api/v1/_test/echo", pre, NULL, 0, &r));
    assert_int_equal(204, r.status);
    assert_header(&r, "access-control-allow-origin", "https://shop.example");
    assert_header(&r, "access-control-allow-methods", "GET, POST");
    assert_header(&r, "access-control-allow-headers", "content-type");
    assert_header(&r, "access-control-allow-credentials", "true");
    assert_header(&r, "access-control-max-age", NULL);
    assert_header(&r, "vary", "Origin");
    assert_header(&r, "x-request-id", NULL);
    assert_header(&r, "x-frame-options", "DENY");
    keel_test_resp_free(&r);

    const char *evil[] = {"Origin: https://evil.example", "Access-Control-Request-Method: POST",
                          NULL};
    ASSERT_OK(keel_test_http(&srv, "OPTIONS", "/api/v1/_test/echo", evil, NULL, 0, &r));
    assert_problem(&r, 400);
    assert_false(keel_test_resp_header(&r, "access-control-allow-origin", NULL, 0));
    keel_test_resp_free(&r);

    const char *badm[] = {"Origin: https://shop.example", "Access-Control-Request-Method: DELETE",
                          NULL};
    ASSERT_OK(keel_test_http(&srv, "OPTIONS", "/api/v1/_test/echo", badm, NULL, 0, &r));
    assert_problem(&r, 400);
    keel_test_resp_free(&r);

    const char *simple[] = {"Origin: https://admin.example", NULL};
    ASSERT_OK(keel_test_http(&srv, "GET", "/health/live", simple, NULL, 0, &r));
    assert_int_equal(200, r.status);
    assert_header(&r, "access-control-allow-origin", "https://admin.example");
    keel_test_resp_free(&r);
    const char *other[] = {"Origin: https://evil.example", NULL};
    ASSERT_OK(keel_test_http(&srv, "GET", "/health/live", other, NULL, 0, &r));
    assert_false(keel_test_resp_header(&r, "access-control-allow-origin", NULL, 0));
    keel_test_resp_free(&r);
}

/* Every line of the exposition matches the text-format grammar (reference.md section 6). */
static void test_metrics_exposition(void **state)
{
    (void)state;
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/_test/items/123", NULL, NULL, 0, &r));
    keel_test_resp_free(&r);
    ASSERT_OK(keel_test_http(&srv, "GET", "/metrics", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    assert_header(&r, "content-type", "text/plain; version=0.0.4; charset=utf-8");
    assert_true(r.body_len > 0);
    assert_int_equal('\n', r.body[r.body_len - 1]);
    regex_t help, type, sample;
    assert_int_equal(0, regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$", REG_EXTENDED));
    assert_int_equal(0, regcomp(&type,
                                "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* "
                                "(counter|gauge|histogram|summary|untyped)$",
                                REG_EXTENDED));
    assert_int_equal(0, regcomp(&sample,
                                "^[a-zA-Z_:][a-zA-Z0-9_:]*"
                                "(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\""
                                "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\")*,?)?\\})?"
                                " ([-+]?[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?|NaN|[-+]Inf)"
                                "( -?[0-9]+)?$",
                                REG_EXTENDED));
    char *text = strdup(r.body);
    int lines = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        lines++;
        int ok = regexec(&help, line, 0, NULL, 0) == 0 || regexec(&type, line, 0, NULL, 0) == 0 ||
                 regexec(&sample, line, 0, NULL, 0) == 0;
        if (!ok)
            fail_msg("line %d does not match the exposition grammar: %s", lines, line);
    }
    assert_true(lines > 20);
    free(text);
    regfree(&help);
    regfree(&type);
    regfree(&sample);
    /* the endpoint label is the route template, never the raw path */
    assert_non_null(strstr(r.body, "endpoint=\"/api/v1/_test/items/{id}\""));
    assert_null(strstr(r.body, "/items/123"));
    assert_non_null(strstr(r.body, "# TYPE app_request_latency_seconds histogram"));
    assert_non_null(strstr(r.body, "process_resident_memory_bytes"));
    assert_non_null(strstr(r.body, "system_cpu_usage_percentage"));
    assert_non_null(strstr(r.body, "background_job_runs_total{job_name=\"update_system_metrics\"}"));
    assert_non_null(strstr(r.body, "keel_log_records_dropped_total"));
    /* the failing handler of test_handler_failure_is_500 is counted with its error name */
    assert_non_null(strstr(r.body, "app_errors_total{endpoint=\"/_test/fail\",exception_type=\"KEEL_EINTERNAL\"} 1"));
    keel_test_resp_free(&r);

    ASSERT_OK(keel_test_http(&srv, "GET", "/metrics/process_", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    assert_non_null(strstr(r.body, "process_cpu_seconds_total"));
    assert_null(strstr(r.body, "app_requests_total"));
    keel_test_resp_free(&r);
}

static void test_protocol_garbage(void **state)
{
    (void)state;
    char *reply = NULL;
    const char junk[] = "GARBAGE\x01\x02 / HTTP/9.9\r\n\r\n";
    long n = keel_test_raw(&srv, junk, sizeof(junk) - 1, 2000, &reply);
    /* libmicrohttpd answers protocol garbage itself (no problem body: the request never
     * reached keel) and closes; it never crashes the server */
    assert_true(n > 0);
    assert_true(strncmp(reply, "HTTP/1.1 505", 12) == 0 || strncmp(reply, "HTTP/1.1 400", 12) == 0);
    free(reply);
    /* a header line without a colon */
    const char nocolon[] = "GET /health/live HTTP/1.1\r\nHost: x\r\nThisIsNotAHeader\r\n\r\n";
    n = keel_test_raw(&srv, nocolon, sizeof(nocolon) - 1, 2000, &reply);
    assert_true(n > 0);
    assert_true(strncmp(reply, "HTTP/1.1 400", 12) == 0);
    free(reply);
    /* a request line with an absurd version */
    const char badver[] = "GET / HTTP/7.3\r\nHost: x\r\n\r\n";
    n = keel_test_raw(&srv, badver, sizeof(badver) - 1, 2000, &reply);
    assert_true(n > 0);
    assert_true(strncmp(reply, "HTTP/1.1 505", 12) == 0);
    free(reply);
    /* oversized header block (> connection memory) */
    size_t big = 200 * 1024;
    char *req = malloc(big + 64);
    int off = snprintf(req, 64, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + off, 'a', big);
    memcpy(req + off + big, "\r\n\r\n", 4);
    n = keel_test_raw(&srv, req, (size_t)off + big + 4, 3000, &reply);
    assert_true(n > 0);
    assert_true(strncmp(reply, "HTTP/1.1 431", 12) == 0);
    free(reply);
    free(req);
    /* pipelined requests are answered in order on one connection */
    const char pipe2[] = "GET /api/v1/_test/items/first HTTP/1.1\r\nHost: x\r\n\r\n"
                         "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
                         "GET /api/v1/_test/items/third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    n = keel_test_raw(&srv, pipe2, sizeof(pipe2) - 1, 3000, &reply);
    assert_true(n > 0);
    char *a = strstr(reply, "\"first\""), *b = strstr(reply, "alive"), *c = strstr(reply, "\"third\"");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    free(reply);
    /* the server still serves everyone else */
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/health/live", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    keel_test_resp_free(&r);
}

static void test_access_log_file(void **state)
{
    (void)state;
    keel_test_resp r;
    const char *h[] = {"X-Request-ID: log-check-777", NULL};
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/_test/items/xyz", h, NULL, 0, &r));
    keel_test_resp_free(&r);
    char path[400];
    snprintf(path, sizeof(path), "%s/logs/app.json", srv.dir);
    int found = 0, span = 0;
    for (int tries = 0; tries < 100 && !(found && span); tries++) {
        FILE *f = fopen(path, "r");
        char line[8192];
        found = span = 0;
        while (f && fgets(line, sizeof(line), f)) {
            if (strstr(line, "log-check-777") == NULL)
                continue;
            json_error_t err;
            json_t *v = json_loads(line, 0, &err);
            assert_non_null(v);
            const char *logger = json_string_value(json_object_get(v, "logger"));
            if (logger != NULL && strcmp(logger, "keel.trace") == 0) {
                /* keeld's tracing layer: one server span per routed request */
                json_t *x = json_object_get(v, "extra");
                assert_string_equal("GET /api/v1/_test/items/{id}",
                                    json_string_value(json_object_get(x, "name")));
                assert_int_equal(32, strlen(json_string_value(json_object_get(x, "trace_id"))));
                json_decref(v);
                span = 1;
                continue;
            }
            assert_string_equal("app.http.access", logger);
            assert_string_equal("log-check-777", json_string_value(json_object_get(v, "request_id")));
            json_t *x = json_object_get(v, "extra");
            assert_string_equal("GET", json_string_value(json_object_get(x, "method")));
            assert_string_equal("/api/v1/_test/items/xyz", json_string_value(json_object_get(x, "path")));
            assert_int_equal(200, json_integer_value(json_object_get(x, "status")));
            assert_true(json_is_number(json_object_get(x, "duration_ms")));
            json_decref(v);
            found = 1;
        }
        if (f)
            fclose(f);
        if (!(found && span))
            usleep(50000);
    }
    assert_true(found);
    assert_true(span);
}

/* ----------------------------------------------------- lifecycle tests -- */

typedef struct slow_arg {
    keel_test_server *s;
    keel_test_resp r;
    int rc;
} slow_arg;

static void *slow_request(void *p)
{
    slow_arg *a = p;
    a->rc = keel_test_http(a->s, "GET", "/_test/sleep?ms=1500", NULL, NULL, 0, &a->r);
    return NULL;
}

/* Wait (up to 10 s) until a /_test/sleep handler is running in s. */
static void wait_sleeping(keel_test_server *s)
{
    for (int i = 0; i < 500; i++) {
        keel_test_resp r;
        if (keel_test_http(s, "GET", "/_test/sleeping", NULL, NULL, 0, &r) == 0) {
            int busy = r.status == 200 && strstr(r.body, "\"sleeping\":0") == NULL;
            keel_test_resp_free(&r);
            if (busy)
                return;
        }
        usleep(20000);
    }
    fail_msg("the slow request never reached its handler");
}

static int connect_port(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int status_on(int fd, const char *path)
{
    char req[256], buf[4096];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0)
        return -1;
    ssize_t r = recv(fd, buf, sizeof(buf) - 1, 0);
    if (r < 12)
        return -1;
    buf[r] = '\0';
    return atoi(buf + 9);
}

static void test_sigterm_drains(void **state)
{
    (void)state;
    keel_test_server s2;
    const char *env[] = {"SHUTDOWN_TIMEOUT_SECONDS=20", NULL};
    ASSERT_OK(keel_test_server_start(&s2, env));
    int fd = connect_port(s2.port);
    assert_true(fd >= 0);
    assert_int_equal(200, status_on(fd, "/health/ready"));

    slow_arg a = {&s2, {0}, -1};
    pthread_t t;
    pthread_create(&t, NULL, slow_request, &a);
    wait_sleeping(&s2); /* the slow request is in its handler */
    kill(s2.pid, SIGTERM);
    usleep(200000);
    /* draining: readiness fails on an existing keep-alive connection */
    assert_int_equal(503, status_on(fd, "/health/ready"));
    close(fd);
    pthread_join(t, NULL);
    /* the in-flight request completed normally */
    assert_int_equal(0, a.rc);
    assert_int_equal(200, a.r.status);
    assert_non_null(strstr(a.r.body, "\"slept_ms\":1500"));
    keel_test_resp_free(&a.r);
    /* and the process exits 0 */
    int status = -1;
    for (int i = 0; i < 500; i++) {
        pid_t w = waitpid(s2.pid, &status, WNOHANG);
        if (w == s2.pid)
            break;
        usleep(20000);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(0, WEXITSTATUS(status));
    s2.pid = 0;
}

/* A second signal during the drain exits at once (status 1) instead of waiting. */
static void test_second_signal_exits_now(void **state)
{
    (void)state;
    keel_test_server s4;
    const char *env[] = {"SHUTDOWN_TIMEOUT_SECONDS=60", NULL};
    ASSERT_OK(keel_test_server_start(&s4, env));
    slow_arg a = {&s4, {0}, -1};
    pthread_t t;
    pthread_create(&t, NULL, slow_request, &a); /* 1.5 s handler */
    wait_sleeping(&s4);
    kill(s4.pid, SIGTERM);
    usleep(200000);
    int status = -1;
    assert_int_equal(0, waitpid(s4.pid, &status, WNOHANG)); /* still draining */
    kill(s4.pid, SIGTERM);
    pid_t w = 0;
    for (int i = 0; i < 50 && w != s4.pid; i++) { /* well under the 1.5 s handler */
        usleep(10000);
        w = waitpid(s4.pid, &status, WNOHANG);
    }
    assert_int_equal(s4.pid, w);
    assert_true(WIFEXITED(status));
    assert_int_equal(1, WEXITSTATUS(status));
    s4.pid = 0;
    pthread_join(t, NULL);
    assert_int_not_equal(200, a.r.status); /* the in-flight request was cut off */
    keel_test_resp_free(&a.r);
}

static void test_bad_config_exits_2(void **state)
{
    (void)state;
    char out[4096] = "";
    static const char *const env[] = {"PORT=notaport", "LOG_LEVEL=loud", "ENVIRONMENT=production",
                                      "ACCESS_TOKEN_SIGNING_KEY=changeme", NULL};
    static const char *const unset[] = {"REFRESH_TOKEN_SIGNING_KEY", NULL};
    const char *argv[] = {"keeld", NULL};
    keel_test_run_opts o = {.env = env, .unset = unset};
    /* (stdout and stderr together: the error list goes to stderr) */
    assert_int_equal(2, keel_test_run(KEEL_TEST_KEELD, argv, &o, out, sizeof(out)));
    assert_non_null(strstr(out, "PORT"));
    assert_non_null(strstr(out, "LOG_LEVEL"));
    assert_non_null(strstr(out, "ACCESS_TOKEN_SIGNING_KEY"));
    assert_non_null(strstr(out, "REFRESH_TOKEN_SIGNING_KEY"));
    assert_null(strstr(out, "changeme")); /* secrets never printed */
}

/* Slow clients are dropped after HTTP_CONNECTION_TIMEOUT_SECONDS; the per-IP connection limit
 * refuses extra connections; in both cases everyone else keeps being served. */
static void test_slow_client_and_per_ip_limit(void **state)
{
    (void)state;
    keel_test_server s3;
    const char *env[] = {"HTTP_CONNECTION_TIMEOUT_SECONDS=1", "HTTP_MAX_CONNECTIONS_PER_IP=3",
                         NULL};
    ASSERT_OK(keel_test_server_start(&s3, env));
    /* a client that sends half a request line and stalls */
    int slow = connect_port(s3.port);
    assert_true(slow >= 0);
    assert_int_equal(9, send(slow, "GET /heal", 9, MSG_NOSIGNAL));
    struct pollfd p = {slow, POLLIN, 0};
    assert_int_equal(1, poll(&p, 1, 5000)); /* woken by the close, well before 5 s */
    char buf[256];
    ssize_t r = recv(slow, buf, sizeof(buf), 0);
    assert_true(r <= 0 || strncmp(buf, "HTTP/1.1 4", 10) == 0);
    close(slow);

    /* per-IP limit: 3 idle connections are held, a 4th is refused (closed at once) */
    int held[3];
    for (int i = 0; i < 3; i++) {
        held[i] = connect_port(s3.port);
        assert_true(held[i] >= 0);
    }
    usleep(100000);
    int extra = connect_port(s3.port);
    assert_true(extra >= 0);
    assert_true(status_on(extra, "/health/live") < 0);
    close(extra);
    for (int i = 0; i < 3; i++)
        close(held[i]);
    usleep(100000);
    keel_test_resp rr;
    ASSERT_OK(keel_test_http(&s3, "GET", "/health/live", NULL, NULL, 0, &rr));
    assert_int_equal(200, rr.status);
    keel_test_resp_free(&rr);
    assert_int_equal(0, keel_test_server_stop(&s3, SIGTERM, 10000));
}

int main(void)
{
    const struct CMUnitTest served[] = {
        cmocka_unit_test(test_root_and_envelope),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_404_405_head_options),
        cmocka_unit_test(test_versioning),
        cmocka_unit_test(test_json_bodies),
        cmocka_unit_test(test_handler_failure_is_500),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_metrics_exposition),
        cmocka_unit_test(test_protocol_garbage),
        cmocka_unit_test(test_access_log_file),
    };
    const struct CMUnitTest lifecycle[] = {
        cmocka_unit_test(test_sigterm_drains),
        cmocka_unit_test(test_bad_config_exits_2),
        cmocka_unit_test(test_slow_client_and_per_ip_limit),
        cmocka_unit_test(test_second_signal_exits_now),
    };
    int rc = cmocka_run_group_tests_name("served", served, setup, teardown);
    rc |= cmocka_run_group_tests_name("lifecycle", lifecycle, NULL, NULL);
    return rc;
}
