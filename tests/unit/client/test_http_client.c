/* Tests for src/client/http_client.c against a scripted HTTP server on a loopback port, run
 * in threads of this process: delays, hangs, connection resets, garbage, 5xx/429 with
 * Retry-After.  Retries, breaker, timeouts, metrics, logs and status classes. */
#define _GNU_SOURCE 1
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "keel_int.h"

#include <keel/client.h>

/* ------------------------------------------------------- scripted server -- */

typedef enum act_kind { ACT_RESP, ACT_HANG, ACT_RESET, ACT_GARBAGE } act_kind;

typedef struct act {
    act_kind kind;
    int status;
    const char *headers; /* extra header lines, each ending in \r\n, or NULL */
    const char *body;    /* NULL = "ok" */
    int delay_ms;
} act;

#define MAX_ACTS 16

typedef struct server {
    int lfd;
    uint16_t port;
    pthread_t thr;
    atomic_int stop;
    atomic_int conns;    /* connections accepted */
    atomic_int requests; /* requests read */
    atomic_int handlers; /* live connection threads */
    pthread_mutex_t mu;
    act script[MAX_ACTS];
    size_t nscript, next;
    char last_head[8192]; /* request line + headers of the last request */
    size_t last_body_len;
    char last_body[256];
} server;

static server srv;

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static act next_act(server *s)
{
    act a = {ACT_RESP, 200, NULL, NULL, 0};
    pthread_mutex_lock(&s->mu);
    if (s->nscript > 0) {
        size_t i = s->next < s->nscript ? s->next : s->nscript - 1;
        a = s->script[i];
        s->next++;
    }
    pthread_mutex_unlock(&s->mu);
    return a;
}

/* Wait up to ms for fd to be readable; 1 readable, 0 not (or stopping). */
static int wait_readable(server *s, int fd, int ms)
{
    while (ms > 0 && !atomic_load(&s->stop)) {
        struct pollfd p = {fd, POLLIN, 0};
        int step = ms < 50 ? ms : 50;
        int r = poll(&p, 1, step);
        if (r > 0)
            return 1;
        ms -= step;
    }
    return 0;
}

static size_t find_content_length(const char *head)
{
    const char *p = head;
    while ((p = strchr(p, '\n')) != NULL) {
        p++;
        if (strncasecmp(p, "content-length:", 15) == 0)
            return (size_t)strtoul(p + 15, NULL, 10);
    }
    return 0;
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    server *s = &srv;
    char buf[65536];
    size_t have = 0;
    for (;;) {
        /* read one request head */
        char *end = NULL;
        while ((end = memmem(buf, have, "\r\n\r\n", 4)) == NULL) {
            if (have == sizeof(buf) || !wait_readable(s, fd, 10000))
                goto done;
            ssize_t n = read(fd, buf + have, sizeof(buf) - have);
            if (n <= 0)
                goto done;
            have += (size_t)n;
        }
        size_t head_len = (size_t)(end - buf) + 4;
        char head[8192];
        size_t hl = head_len < sizeof(head) - 1 ? head_len : sizeof(head) - 1;
        memcpy(head, buf, hl);
        head[hl] = '\0';
        size_t clen = find_content_length(head);
        size_t got = have - head_len, body_total = clen;
        char first[256];
        size_t nfirst = 0;
        size_t take = got < clen ? got : clen;
        nfirst = take < sizeof(first) ? take : sizeof(first);
        memcpy(first, buf + head_len, nfirst);
        size_t rest = have - head_len - take;
        memmove(buf, buf + head_len + take, rest);
        have = rest;
        clen -= take;
        while (clen > 0) { /* drain the rest of the body */
            char tmp[65536];
            if (!wait_readable(s, fd, 10000))
                goto done;
            ssize_t n = read(fd, tmp, clen < sizeof(tmp) ? clen : sizeof(tmp));
            if (n <= 0)
                goto done;
            if (nfirst < sizeof(first)) {
                size_t k = (size_t)n < sizeof(first) - nfirst ? (size_t)n : sizeof(first) - nfirst;
                memcpy(first + nfirst, tmp, k);
                nfirst += k;
            }
            clen -= (size_t)n;
        }
        pthread_mutex_lock(&s->mu);
        memcpy(s->last_head, head, hl + 1);
        s->last_body_len = body_total;
        memcpy(s->last_body, first, nfirst);
        s->last_body[nfirst < sizeof(s->last_body) ? nfirst : sizeof(s->last_body) - 1] = '\0';
        pthread_mutex_unlock(&s->mu);
        atomic_fetch_add(&s->requests, 1);

        act a = next_act(s);
        if (a.delay_ms > 0)
            msleep(a.delay_ms);
        if (a.kind == ACT_HANG) {
            /* say nothing until the client gives up and closes */
            while (wait_readable(s, fd, 10000)) {
                char tmp[512];
                if (read(fd, tmp, sizeof(tmp)) <= 0)
                    break;
            }
            goto done;
        }
        if (a.kind == ACT_RESET) {
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            goto done;
        }
        if (a.kind == ACT_GARBAGE) {
            const char g[] = "this is not HTTP at all\r\n\r\n";
            (void)!write(fd, g, sizeof(g) - 1);
            goto done;
        }
        const char *body = a.body != NULL ? a.body : "ok";
        char out[70000];
        int n = snprintf(out, sizeof(out),
                         "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nX-Test: yes\r\n%s\r\n%s", a.status,
                         strlen(body), a.headers != NULL ? a.headers : "", body);
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t w = write(fd, out + off, (size_t)n - off);
            if (w <= 0)
                goto done;
            off += (size_t)w;
        }
    }
done:
    close(fd);
    atomic_fetch_sub(&s->handlers, 1);
    return NULL;
}

static void *accept_main(void *arg)
{
    server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&s->conns, 1);
        atomic_fetch_add(&s->handlers, 1);
        pthread_t t;
        if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) != 0) {
            close(fd);
            atomic_fetch_sub(&s->handlers, 1);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static void server_start(void)
{
    memset(&srv, 0, sizeof(srv));
    pthread_mutex_init(&srv.mu, NULL);
    srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(srv.lfd >= 0);
    int one = 1;
    setsockopt(srv.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(0, bind(srv.lfd, (struct sockaddr *)&sa, sizeof(sa)));
    assert_int_equal(0, listen(srv.lfd, 64));
    socklen_t sl = sizeof(sa);
    assert_int_equal(0, getsockname(srv.lfd, (struct sockaddr *)&sa, &sl));
    srv.port = ntohs(sa.sin_port);
    assert_int_equal(0, pthread_create(&srv.thr, NULL, accept_main, &srv));
}

static void server_stop(void)
{
    atomic_store(&srv.stop, 1);
    pthread_join(srv.thr, NULL);
    close(srv.lfd);
    for (int i = 0; i < 400 && atomic_load(&srv.handlers) > 0; i++)
        msleep(10);
    pthread_mutex_destroy(&srv.mu);
}

static void script(const act *acts, size_t n)
{
    pthread_mutex_lock(&srv.mu);
    memcpy(srv.script, acts, n * sizeof(*acts));
    srv.nscript = n;
    srv.next = 0;
    pthread_mutex_unlock(&srv.mu);
}

static int setup(void **state)
{
    (void)state;
    server_start();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    server_stop();
    return 0;
}

/* ------------------------------------------------------------- helpers -- */

static char base_url[64];

static keel_http_client_config base_cfg(keel_metrics *m, keel_manual_clock *mc)
{
    keel_http_client_config cfg;
    keel_http_client_config_default(&cfg);
    snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%u/api/", (unsigned)srv.port);
    cfg.service = "payment-api";
    cfg.base_url = base_url;
    cfg.timeout_ms = 5000;
    cfg.metrics = m;
    cfg.clock = mc != NULL ? &mc->clock : NULL;
    cfg.retry.jitter = KEEL_JITTER_NONE;
    cfg.retry.base_delay_ms = 100;
    return cfg;
}

static double counter(keel_metrics *m, const char *method, const char *cls)
{
    keel_metric *f;
    static const char *const rl[] = {"service", "method", "status_class", NULL};
    assert_int_equal(KEEL_OK, keel_metrics_counter(m, "http_client_requests_total",
                                                   "Total outbound HTTP requests", rl, &f));
    keel_series *s;
    const char *v[] = {"payment-api", method, cls};
    assert_int_equal(KEEL_OK, keel_metric_series(f, v, &s));
    return keel_series_value(s);
}

static double duration_count(keel_metrics *m, const char *method)
{
    keel_metric *f;
    static const char *const dl[] = {"service", "method", NULL};
    static const double b[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
    assert_int_equal(KEEL_OK,
                     keel_metrics_histogram(m, "http_client_request_duration_seconds",
                                            "Outbound HTTP request latency", dl, b, 9, &f));
    keel_series *s;
    const char *v[] = {"payment-api", method};
    assert_int_equal(KEEL_OK, keel_metric_series(f, v, &s));
    return keel_series_value(s);
}

/* Log capture: messages from "app.http_client". */
typedef struct logcap {
    pthread_mutex_t mu;
    int timed_out, failed, completed, state_changed;
} logcap;
static logcap lc = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0};

static int log_hook(keel_log_record *r, void *ud)
{
    (void)ud;
    if (strcmp(keel_log_record_logger(r), "app.http_client") != 0)
        return 1; /* drop */
    keel_str m = keel_log_record_message(r);
    pthread_mutex_lock(&lc.mu);
    if (keel_str_eq(m, KEEL_STR_LIT("downstream request timed out")))
        lc.timed_out++;
    else if (keel_str_eq(m, KEEL_STR_LIT("downstream request failed")))
        lc.failed++;
    else if (keel_str_eq(m, KEEL_STR_LIT("downstream request completed")))
        lc.completed++;
    else if (keel_str_eq(m, KEEL_STR_LIT("circuit breaker state changed")))
        lc.state_changed++;
    pthread_mutex_unlock(&lc.mu);
    return 1; /* drop: keep the test output quiet */
}

/* The hook stays installed for the whole run (it also keeps the output quiet); these just
 * reset the counts. */
static void logcap_start(void)
{
    pthread_mutex_lock(&lc.mu);
    lc.timed_out = lc.failed = lc.completed = lc.state_changed = 0;
    pthread_mutex_unlock(&lc.mu);
}

static void logcap_stop(void)
{
}

/* ------------------------------------------------------- pure functions -- */

static void test_classify(void **state)
{
    (void)state;
    assert_string_equal("success", keel_http_client_classify(200, 0));
    assert_string_equal("success", keel_http_client_classify(204, 0));
    assert_string_equal("success", keel_http_client_classify(301, 0));
    assert_string_equal("success", keel_http_client_classify(399, 0));
    assert_string_equal("client_error", keel_http_client_classify(400, 0));
    assert_string_equal("client_error", keel_http_client_classify(404, 0));
    assert_string_equal("rate_limited", keel_http_client_classify(429, 0));
    assert_string_equal("client_error", keel_http_client_classify(499, 0));
    assert_string_equal("server_error", keel_http_client_classify(500, 0));
    assert_string_equal("server_error", keel_http_client_classify(503, 0));
    assert_string_equal("server_error", keel_http_client_classify(100, 0)); /* as the seed */
    assert_string_equal("network_error", keel_http_client_classify(0, 0));
    assert_string_equal("network_error", keel_http_client_classify(200, 1));
}

static void test_parse_retry_after(void **state)
{
    (void)state;
    assert_int_equal(2000, keel_http_client_parse_retry_after(KEEL_STR_LIT("2"), 0));
    assert_int_equal(3000, keel_http_client_parse_retry_after(KEEL_STR_LIT(" 3 "), 0));
    assert_int_equal(0, keel_http_client_parse_retry_after(KEEL_STR_LIT("0"), 0));
    assert_int_equal(-1, keel_http_client_parse_retry_after(KEEL_STR_LIT(""), 0));
    assert_int_equal(-1, keel_http_client_parse_retry_after(KEEL_STR_LIT("1.5"), 0));
    /* A date centuries away is capped at a year like delta-seconds (found by fuzzing: the
     * milliseconds used to overflow). */
    assert_int_equal(INT64_C(86400) * 365 * 1000,
                     keel_http_client_parse_retry_after(
                         KEEL_STR_LIT("Fri, 31 Dec 9999 23:59:59 GMT"), INT64_C(1795455385000)));
    assert_int_equal(-1, keel_http_client_parse_retry_after(KEEL_STR_LIT("soon"), 0));
    /* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
    keel_str d = KEEL_STR_LIT("Wed, 21 Oct 2015 07:28:00 GMT");
    assert_int_equal(5000, keel_http_client_parse_retry_after(d, INT64_C(1445412475000)));
    assert_int_equal(0, keel_http_client_parse_retry_after(d, INT64_C(1445412490000)));
}

/* ---------------------------------------------------------- configuration -- */

static void expect_reject(keel_http_client_config *cfg, const char *field)
{
    keel_http_client *c = (keel_http_client *)1;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(KEEL_EINVAL, keel_http_client_create(&c, cfg, &d));
    assert_null(c);
    if (strstr(d.msg, field) == NULL)
        fail_msg("diag '%s' does not name '%s'", d.msg, field);
}

static void test_config_rejected(void **state)
{
    (void)state;
    keel_http_client_config cfg = base_cfg(NULL, NULL);
    cfg.base_url = "";
    expect_reject(&cfg, "base_url");
    cfg = base_cfg(NULL, NULL);
    cfg.base_url = NULL;
    expect_reject(&cfg, "base_url");
    cfg = base_cfg(NULL, NULL);
    cfg.base_url = "ftp://x";
    expect_reject(&cfg, "base_url");
    cfg = base_cfg(NULL, NULL);
    cfg.timeout_ms = 0;
    expect_reject(&cfg, "timeout_ms must be >= 1, got 0");
    cfg = base_cfg(NULL, NULL);
    cfg.connect_timeout_ms = 0;
    expect_reject(&cfg, "connect_timeout_ms");
    cfg = base_cfg(NULL, NULL);
    cfg.service = "";
    expect_reject(&cfg, "service");
    cfg = base_cfg(NULL, NULL);
    cfg.service = "bad service";
    expect_reject(&cfg, "service");
    cfg = base_cfg(NULL, NULL);
    cfg.retry.max_attempts = 0;
    expect_reject(&cfg, "max_attempts");
    cfg = base_cfg(NULL, NULL);
    cfg.aws_sigv4 = "aws:amz:us-east-1:s3";
    expect_reject(&cfg, "aws_access_key");
    assert_int_equal(KEEL_EINVAL, keel_http_client_create(NULL, &cfg, NULL));
}

static void test_timeout_from_settings(void **state)
{
    (void)state;
    const char *vars[] = {"PAYMENT_API_TIMEOUT_MS=1234", NULL};
    keel_env *env;
    assert_int_equal(KEEL_OK, keel_env_from(&env, vars, NULL, 0, NULL));
    keel_settings *st;
    assert_int_equal(KEEL_OK, keel_settings_load(&st, env, NULL));
    keel_env_destroy(env);
    keel_http_client_config cfg = base_cfg(NULL, NULL);
    cfg.settings = st;
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    assert_int_equal(1234, keel_http_client_timeout_ms(c));
    keel_http_client_destroy(c);
    cfg.service = "other"; /* no OTHER_TIMEOUT_MS: the config value */
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    assert_int_equal(5000, keel_http_client_timeout_ms(c));
    keel_http_client_destroy(c);
    keel_settings_destroy(st);
}

/* ----------------------------------------------------------- exchanges -- */

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static void test_get_headers_traceparent_metrics_reuse(void **state)
{
    (void)state;
    keel_metrics *m;
    assert_int_equal(KEEL_OK, keel_metrics_create(&m));
    logcap_start();
    act a[] = {{ACT_RESP, 200, "Retry-After: 7\r\nX-Multi:  spaced value \r\n", "hello", 0}};
    script(a, 1);
    keel_http_client_config cfg = base_cfg(m, NULL);
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));

    keel_http_client_req req;
    keel_http_client_req_init(&req, "GET", "/v1/charges?limit=5");
    const char *hdrs[] = {"X-Request-ID: r-1", "Accept: application/json", NULL};
    req.headers = hdrs;
    req.traceparent = TP;
    keel_http_client_resp resp;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
        assert_int_equal(200, resp.status);
        assert_string_equal("success", resp.status_class);
        assert_int_equal(5, resp.body_len);
        assert_string_equal("hello", resp.body);
        assert_int_equal(1, resp.attempts);
        keel_str v;
        assert_int_equal(1, keel_http_client_resp_header(&resp, "x-multi", &v));
        assert_true(keel_str_eq(v, KEEL_STR_LIT("spaced value")));
        assert_int_equal(1, keel_http_client_resp_header(&resp, "X-TEST", &v));
        assert_true(keel_str_eq(v, KEEL_STR_LIT("yes")));
        assert_int_equal(0, keel_http_client_resp_header(&resp, "X-Absent", &v));
        assert_int_equal(0, resp.retry_after_ms); /* only read on retryable statuses */
        keel_http_client_resp_cleanup(&resp);
    }
    pthread_mutex_lock(&srv.mu);
    assert_non_null(strstr(srv.last_head, "GET /api/v1/charges?limit=5 HTTP/1.1\r\n"));
    assert_non_null(strstr(srv.last_head, "\r\ntraceparent: " TP "\r\n"));
    assert_non_null(strstr(srv.last_head, "\r\nX-Request-ID: r-1\r\n"));
    assert_non_null(strstr(srv.last_head, "\r\nAccept: application/json\r\n"));
    assert_null(strstr(srv.last_head, "Expect:"));
    pthread_mutex_unlock(&srv.mu);
    assert_int_equal(3, atomic_load(&srv.requests));
    assert_int_equal(1, atomic_load(&srv.conns)); /* one keep-alive connection, reused */

    assert_true(counter(m, "GET", "success") == 3.0);
    assert_true(counter(m, "GET", "server_error") == 0.0);
    assert_true(duration_count(m, "GET") == 3.0);
    assert_int_equal(3, lc.completed);
    assert_int_equal(0, lc.failed);

    keel_http_client_destroy(c);
    logcap_stop();
    keel_metrics_destroy(m);
}

static void test_post_body_and_status_classes(void **state)
{
    (void)state;
    keel_metrics *m;
    assert_int_equal(KEEL_OK, keel_metrics_create(&m));
    act a[] = {{ACT_RESP, 201, NULL, "{\"id\":1}", 0},
               {ACT_RESP, 404, NULL, "nope", 0},
               {ACT_RESP, 500, NULL, "boom", 0}};
    script(a, 3);
    keel_http_client_config cfg = base_cfg(m, NULL);
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    keel_http_client_req req;
    keel_http_client_req_init(&req, "POST", "charges");
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    req.headers = hdrs;
    req.body = "{\"amount\":100}";
    req.body_len = 14;
    keel_http_client_resp resp;
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(201, resp.status);
    assert_string_equal("{\"id\":1}", resp.body);
    keel_http_client_resp_cleanup(&resp);
    pthread_mutex_lock(&srv.mu);
    assert_non_null(strstr(srv.last_head, "POST /api/charges HTTP/1.1\r\n"));
    assert_non_null(strstr(srv.last_head, "Content-Type: application/json\r\n"));
    assert_int_equal(14, srv.last_body_len);
    assert_string_equal("{\"amount\":100}", srv.last_body);
    pthread_mutex_unlock(&srv.mu);

    /* 404: a response, not retried, client_error */
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(404, resp.status);
    assert_string_equal("client_error", resp.status_class);
    assert_int_equal(1, resp.attempts);
    keel_http_client_resp_cleanup(&resp);
    /* 500: not in the retry list (429/502/503/504): one attempt */
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(500, resp.status);
    assert_string_equal("server_error", resp.status_class);
    assert_int_equal(1, resp.attempts);
    assert_string_equal("boom", resp.body);
    keel_http_client_resp_cleanup(&resp);

    /* DELETE without a body; no invented Content-Type */
    keel_http_client_req_init(&req, "DELETE", "/charges/1");
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    keel_http_client_resp_cleanup(&resp);
    pthread_mutex_lock(&srv.mu);
    assert_non_null(strstr(srv.last_head, "DELETE /api/charges/1 HTTP/1.1\r\n"));
    assert_null(strstr(srv.last_head, "Content-Type"));
    pthread_mutex_unlock(&srv.mu);

    assert_true(counter(m, "POST", "success") == 1.0);
    assert_true(counter(m, "POST", "client_error") == 1.0);
    assert_true(counter(m, "POST", "server_error") == 1.0);
    assert_true(counter(m, "DELETE", "server_error") == 1.0); /* the script's last entry */
    assert_int_equal(4, atomic_load(&srv.requests));
    keel_http_client_destroy(c);
    keel_metrics_destroy(m);
}

static void test_retry_503_429_with_retry_after(void **state)
{
    (void)state;
    keel_metrics *m;
    assert_int_equal(KEEL_OK, keel_metrics_create(&m));
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1000);
    act a[] = {{ACT_RESP, 503, "Retry-After: 2\r\n", "busy", 0},
               {ACT_RESP, 429, "Retry-After: 1\r\n", "slow down", 0},
               {ACT_RESP, 200, NULL, "done", 0}};
    script(a, 3);
    keel_http_client_config cfg = base_cfg(m, &mc);
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    keel_http_client_req req;
    keel_http_client_req_init(&req, "GET", "/x");
    keel_http_client_resp resp;
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(200, resp.status);
    assert_string_equal("done", resp.body);
    assert_int_equal(3, resp.attempts);
    keel_http_client_resp_cleanup(&resp);
    /* waits were max(backoff, Retry-After): 2000 then max(200, 1000) */
    assert_int_equal(2, mc.sleeps);
    assert_int_equal(3000, mc.slept_total);
    assert_int_equal(3, atomic_load(&srv.requests));
    assert_true(counter(m, "GET", "server_error") == 1.0);
    assert_true(counter(m, "GET", "rate_limited") == 1.0);
    assert_true(counter(m, "GET", "success") == 1.0);
    assert_true(duration_count(m, "GET") == 3.0);

    /* 502 and 504 are retried too; exhausting the attempts returns the last response */
    act b[] = {{ACT_RESP, 502, NULL, "bad gw", 0}, {ACT_RESP, 504, NULL, "gw timeout", 0}};
    script(b, 2);
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(504, resp.status);
    assert_string_equal("gw timeout", resp.body);
    assert_int_equal(3, resp.attempts);
    keel_http_client_resp_cleanup(&resp);
    /* backoff without jitter: 100, 200 */
    assert_int_equal(3000 + 300, mc.slept_total);

    /* no_retry: one attempt */
    script(b, 1);
    req.no_retry = 1;
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(502, resp.status);
    assert_int_equal(1, resp.attempts);
    keel_http_client_resp_cleanup(&resp);
    keel_http_client_destroy(c);
    keel_metrics_destroy(m);
}

static void test_retry_after_beyond_max_delay(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    act a[] = {{ACT_RESP, 503, "Retry-After: 120\r\n", "later", 0}, {ACT_RESP, 200, NULL, NULL, 0}};
    script(a, 2);
    keel_http_client_config cfg = base_cfg(NULL, &mc);
    cfg.retry.max_delay_ms = 5000;
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    keel_http_client_req req;
    keel_http_client_req_init(&req, "GET", "/x");
    keel_http_client_resp resp;
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(503, resp.status);
    assert_int_equal(1, resp.attempts);
    assert_int_equal(120000, resp.retry_after_ms);
    assert_int_equal(120000, resp.wait_ms); /* reschedule, do not hammer */
    assert_int_equal(0, mc.sleeps);
    keel_http_client_resp_cleanup(&resp);
    keel_http_client_destroy(c);
}

static void test_reset_and_garbage_are_network_errors(void **state)
{
    (void)state;
    keel_metrics *m;
    assert_int_equal(KEEL_OK, keel_metrics_create(&m));
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    logcap_start();
    act a[] = {{ACT_RESET, 0, NULL, NULL, 0},
               {ACT_GARBAGE, 0, NULL, NULL, 0},
               {ACT_RESP, 200, NULL, "fine", 0}};
    script(a, 3);
    keel_http_client_config cfg = base_cfg(m, &mc);
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    keel_http_client_req req;
    keel_http_client_req_init(&req, "GET", "/x");
    keel_http_client_resp resp;
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(200, resp.status);
    assert_int_equal(3, resp.attempts);
    keel_http_client_resp_cleanup(&resp);
    assert_true(counter(m, "GET", "network_error") == 2.0);
    assert_true(counter(m, "GET", "success") == 1.0);
    assert_int_equal(2, lc.failed);
    assert_int_equal(1, lc.completed);

    /* with a single attempt, each surfaces as KEEL_EIO with no status.  A new client: on a
     * reused keep-alive connection curl itself re-sends once when the server drops it. */
    keel_http_client_destroy(c);
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    script(a, 2);
    req.no_retry = 1;
    keel_diag d;
    assert_int_equal(KEEL_EIO, keel_http_client_request(c, &req, &resp, &d));
    assert_int_equal(0, resp.status);
    assert_string_equal("network_error", resp.status_class);
    assert_null(resp.body);
    assert_non_null(strstr(d.msg, "payment-api"));
    keel_http_client_resp_cleanup(&resp);
    assert_int_equal(KEEL_EIO, keel_http_client_request(c, &req, &resp, NULL));
    keel_http_client_resp_cleanup(&resp);
    assert_true(counter(m, "GET", "network_error") == 4.0);
    assert_int_equal(5, atomic_load(&srv.requests));
    keel_http_client_destroy(c);
    logcap_stop();
    keel_metrics_destroy(m);
}

static void test_timeout_bounds_a_hanging_server(void **state)
{
    (void)state;
    keel_metrics *m;
    assert_int_equal(KEEL_OK, keel_metrics_create(&m));
    logcap_start();
    act a[] = {{ACT_HANG, 0, NULL, NULL, 0}};
    script(a, 1);
    keel_http_client_config cfg = base_cfg(m, NULL);
    cfg.timeout_ms = 300;
    cfg.retry.max_attempts = 2;
    cfg.retry.base_delay_ms = 10;
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    keel_http_client_req req;
    keel_http_client_req_init(&req, "GET", "/hang");
    keel_http_client_resp resp;
    uint64_t t0 = keel_time_mono_ms();
    keel_diag d;
    assert_int_equal(KEEL_ETIMEOUT, keel_http_client_request(c, &req, &resp, &d));
    uint64_t took = keel_time_mono_ms() - t0;
    if (took >= 3000) /* generous: 2 x 300 ms plus a 10 ms wait */
        fail_msg("a 300 ms timeout took %llu ms", (unsigned long long)took);
    assert_int_equal(2, resp.attempts);
    assert_int_equal(0, resp.status);
    assert_non_null(strstr(d.msg, "timed out"));
    keel_http_client_resp_cleanup(&resp);
    assert_int_equal(2, lc.timed_out);
    assert_true(counter(m, "GET", "network_error") == 2.0);

    /* a slow-but-in-time answer is fine; a per-request timeout overrides the client's */
    act b[] = {{ACT_RESP, 200, NULL, "late", 150}};
    script(b, 1);
    req.timeout_ms = 3000;
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    assert_string_equal("late", resp.body);
    keel_http_client_resp_cleanup(&resp);
    keel_http_client_destroy(c);
    logcap_stop();
    keel_metrics_destroy(m);
}

typedef struct transitions {
    int n;
    keel_breaker_state from[8], to[8];
} transitions;

static void on_transition(keel_breaker *b, const char *name, keel_breaker_state from,
                          keel_breaker_state to, void *ud)
{
    (void)b;
    transitions *t = ud;
    assert_string_equal("payment-api", name);
    if (t->n < 8) {
        t->from[t->n] = from;
        t->to[t->n] = to;
    }
    t->n++;
}

static void test_breaker_opens_on_5xx(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    logcap_start();
    act a[] = {{ACT_RESP, 429, NULL, "limited", 0}, {ACT_RESP, 500, NULL, "down", 0}};
    script(a, 2);
    transitions t;
    memset(&t, 0, sizeof(t));
    keel_breaker_listener ls[] = {{on_transition, &t}};
    keel_http_client_config cfg = base_cfg(NULL, &mc);
    cfg.retry.max_attempts = 1;
    cfg.breaker.sliding_window_size = 4;
    cfg.breaker.minimum_number_of_calls = 4;
    cfg.breaker.wait_duration_in_open_ms = 30000;
    cfg.breaker.permitted_calls_in_half_open = 1;
    cfg.breaker_listeners = ls;
    cfg.nbreaker_listeners = 1;
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    keel_http_client_req req;
    keel_http_client_req_init(&req, "GET", "/x");
    keel_http_client_resp resp;
    /* a 429 is ignored by the breaker; four 500s fill the window and open it */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
        assert_int_equal(i == 0 ? 429 : 500, resp.status);
        keel_http_client_resp_cleanup(&resp);
    }
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(keel_http_client_breaker(c)));
    assert_int_equal(1, t.n);
    assert_int_equal(KEEL_BREAKER_CLOSED, t.from[0]);
    assert_int_equal(KEEL_BREAKER_OPEN, t.to[0]);
    assert_int_equal(1, lc.state_changed);

    keel_diag d;
    assert_int_equal(KEEL_EOPEN, keel_http_client_request(c, &req, &resp, &d));
    assert_int_equal(0, resp.attempts);
    assert_int_equal(0, resp.status);
    assert_int_equal(30000, resp.wait_ms);
    assert_non_null(strstr(d.msg, "circuit open"));
    keel_http_client_resp_cleanup(&resp);
    assert_int_equal(5, atomic_load(&srv.requests)); /* the refused call never left */

    /* after the wait one probe goes through; a success closes the breaker */
    keel_manual_clock_advance(&mc, 30000);
    act ok[] = {{ACT_RESP, 200, NULL, NULL, 0}};
    script(ok, 1);
    assert_int_equal(KEEL_OK, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(200, resp.status);
    keel_http_client_resp_cleanup(&resp);
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(keel_http_client_breaker(c)));
    assert_int_equal(3, t.n);
    assert_int_equal(KEEL_BREAKER_HALF_OPEN, t.to[1]);
    assert_int_equal(KEEL_BREAKER_CLOSED, t.to[2]);
    keel_http_client_destroy(c);
    logcap_stop();
}

static void test_connection_refused_is_retried(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    /* a port nobody listens on: bind one, note it, close it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(0, bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
    socklen_t sl = sizeof(sa);
    assert_int_equal(0, getsockname(fd, (struct sockaddr *)&sa, &sl));
    close(fd);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    keel_http_client_config cfg = base_cfg(NULL, &mc);
    cfg.base_url = url;
    cfg.breaker_enabled = 0;
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    assert_null(keel_http_client_breaker(c));
    keel_http_client_req req;
    keel_http_client_req_init(&req, "GET", "/x");
    keel_http_client_resp resp;
    assert_int_equal(KEEL_EIO, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(3, resp.attempts);
    assert_int_equal(2, mc.sleeps);
    keel_http_client_resp_cleanup(&resp);
    keel_http_client_destroy(c);
}

static void test_body_cap(void **state)
{
    (void)state;
    act a[] = {{ACT_RESP, 200, NULL, "0123456789abcdef", 0}};
    script(a, 1);
    keel_http_client_config cfg = base_cfg(NULL, NULL);
    cfg.max_response_bytes = 10;
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    keel_http_client_req req;
    keel_http_client_req_init(&req, "GET", "/big");
    keel_http_client_resp resp;
    assert_int_equal(KEEL_ETOOBIG, keel_http_client_request(c, &req, &resp, NULL));
    assert_int_equal(1, resp.attempts); /* not worth retrying */
    assert_null(resp.body);
    keel_http_client_resp_cleanup(&resp);
    keel_http_client_destroy(c);
}

static void test_bad_requests_never_sent(void **state)
{
    (void)state;
    keel_http_client_config cfg = base_cfg(NULL, NULL);
    keel_http_client *c;
    assert_int_equal(KEEL_OK, keel_http_client_create(&c, &cfg, NULL));
    keel_http_client_req req;
    keel_http_client_resp resp;
    keel_diag d;
    keel_http_client_req_init(&req, "get", "/x");
    assert_int_equal(KEEL_EINVAL, keel_http_client_request(c, &req, &resp, &d));
    assert_non_null(strstr(d.msg, "method"));
    keel_http_client_req_init(&req, "GET", "/a b");
    assert_int_equal(KEEL_EINVAL, keel_http_client_request(c, &req, &resp, &d));
    assert_non_null(strstr(d.msg, "path"));
    keel_http_client_req_init(&req, "GET", "/x");
    const char *inj[] = {"X-A: 1\r\nX-Injected: 1", NULL};
    req.headers = inj;
    assert_int_equal(KEEL_EINVAL, keel_http_client_request(c, &req, &resp, &d));
    assert_non_null(strstr(d.msg, "header 0"));
    keel_http_client_req_init(&req, "GET", "/x");
    req.traceparent = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    assert_int_equal(KEEL_EINVAL, keel_http_client_request(c, &req, &resp, &d));
    assert_non_null(strstr(d.msg, "traceparent"));
    req.traceparent = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    assert_int_equal(KEEL_EINVAL, keel_http_client_request(c, &req, &resp, &d));
    req.traceparent = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_int_equal(KEEL_EINVAL, keel_http_client_request(c, &req, &resp, &d));
    keel_http_client_req_init(&req, "POST", "/x");
    req.body_len = 3;
    assert_int_equal(KEEL_EINVAL, keel_http_client_request(c, &req, &resp, &d));
    assert_int_equal(0, atomic_load(&srv.requests));
    keel_http_client_destroy(c);
}

/* Several threads share one client: the pool hands each its own handle. */
static keel_http_client *shared;
static atomic_int shared_ok;

static void *worker(void *arg)
{
    (void)arg;
    keel_http_client_req req;
    keel_http_client_req_init(&req, "GET", "/t");
    for (int i = 0; i < 20; i++) {
        keel_http_client_resp resp;
        if (keel_http_client_request(shared, &req, &resp, NULL) == KEEL_OK && resp.status == 200)
            atomic_fetch_add(&shared_ok, 1);
        keel_http_client_resp_cleanup(&resp);
    }
    return NULL;
}

static void test_threads_share_a_client(void **state)
{
    (void)state;
    act a[] = {{ACT_RESP, 200, NULL, "t", 0}};
    script(a, 1);
    keel_http_client_config cfg = base_cfg(NULL, NULL);
    cfg.max_idle_handles = 2;
    assert_int_equal(KEEL_OK, keel_http_client_create(&shared, &cfg, NULL));
    atomic_store(&shared_ok, 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(0, pthread_create(&t[i], NULL, worker, NULL));
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(80, atomic_load(&shared_ok));
    assert_int_equal(80, atomic_load(&srv.requests));
    keel_http_client_destroy(shared);
}

int main(void)
{
    if (keel_log_set_hook(log_hook, NULL) != KEEL_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_parse_retry_after),
        cmocka_unit_test_setup_teardown(test_config_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_from_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_headers_traceparent_metrics_reuse, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_post_body_and_status_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_503_429_with_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_beyond_max_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_and_garbage_are_network_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_timeout_bounds_a_hanging_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breaker_opens_on_5xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests_never_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_share_a_client, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
