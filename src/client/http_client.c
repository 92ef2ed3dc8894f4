/* http_client.c - the instrumented outbound HTTP client on libcurl (seed 003): a pool of easy
 * handles per service, retry and breaker layers composed with keel_chain, metrics, logs and
 * W3C traceparent propagation. */
#include "keel_int.h"

#include <keel/client.h>

#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <time.h>

#define SERVICE_MAX 64
#define METHOD_MAX 16

struct keel_http_client {
    char *service;
    char *base_url; /* without a trailing '/' */
    char *user_agent;
    char *aws_sigv4;
    char *aws_access_key;
    keel_secret *aws_secret; /* NUL-terminated copy inside */
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;
    size_t max_response;
    keel_logger *log;

    keel_metric *m_requests;
    keel_metric *m_duration;

    keel_retry *retry;
    keel_breaker *breaker;
    keel_chain *chain;

    pthread_mutex_t pool_mu;
    CURL **idle;
    size_t nidle;
    size_t max_idle;
};

/* ------------------------------------------------------------ utilities -- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *keel_http_client_classify(long status, int error)
{
    if (error != 0 || status <= 0)
        return "network_error";
    if (status >= 200 && status < 400)
        return "success";
    if (status == 429)
        return "rate_limited";
    if (status >= 400 && status < 500)
        return "client_error";
    return "server_error";
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
}

int64_t keel_http_client_parse_retry_after(keel_str v, int64_t now_wall_ms)
{
    while (v.len > 0 && is_space(v.ptr[0])) {
        v.ptr++;
        v.len--;
    }
    while (v.len > 0 && is_space(v.ptr[v.len - 1]))
        v.len--;
    if (v.ptr == NULL || v.len == 0 || v.len > 64)
        return -1;
    size_t i = 0;
    int64_t secs = 0;
    while (i < v.len && v.ptr[i] >= '0' && v.ptr[i] <= '9') {
        if (secs < INT64_C(86400) * 365)
            secs = secs * 10 + (v.ptr[i] - '0');
        i++;
    }
    if (i == v.len) /* delta-seconds, capped at a year */
        return (secs > INT64_C(86400) * 365 ? INT64_C(86400) * 365 : secs) * 1000;
    if (i != 0)
        return -1;
    char tmp[65];
    memcpy(tmp, v.ptr, v.len);
    tmp[v.len] = '\0';
    time_t t = curl_getdate(tmp, NULL);
    if (t == (time_t)-1)
        return -1;
    /* Compare in seconds first: a date centuries away must not overflow the milliseconds. */
    int64_t wait_s = (int64_t)t - now_wall_ms / 1000;
    if (wait_s > INT64_C(86400) * 365)
        return INT64_C(86400) * 365 * 1000; /* capped at a year, as delta-seconds are */
    int64_t ms = (int64_t)t * 1000 - now_wall_ms;
    return ms > 0 ? ms : 0;
}

int keel_http_client_resp_header(const keel_http_client_resp *resp, const char *name,
                                 keel_str *out)
{
    if (resp == NULL || resp->headers == NULL || name == NULL)
        return 0;
    size_t nlen = strlen(name);
    const char *p = resp->headers, *end = resp->headers + resp->headers_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol != NULL ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon != NULL && (size_t)(colon - p) == nlen) {
            size_t k = 0;
            while (k < nlen && lower((unsigned char)p[k]) == lower((unsigned char)name[k]))
                k++;
            if (k == nlen) {
                const char *vs = colon + 1, *ve = line_end;
                while (ve > vs && (ve[-1] == '\r' || is_space(ve[-1])))
                    ve--;
                while (vs < ve && is_space(*vs))
                    vs++;
                if (out != NULL) {
                    out->ptr = vs;
                    out->len = (size_t)(ve - vs);
                }
                return 1;
            }
        }
        p = line_end + 1;
    }
    return 0;
}

void keel_http_client_resp_cleanup(keel_http_client_resp *resp)
{
    if (resp == NULL)
        return;
    keel_free(resp->body);
    keel_free(resp->headers);
    memset(resp, 0, sizeof(*resp));
}

void keel_http_client_req_init(keel_http_client_req *req, const char *method, const char *path)
{
    if (req == NULL)
        return;
    memset(req, 0, sizeof(*req));
    req->size = sizeof(*req);
    req->method = method;
    req->path = path;
}

static int is_hex_lower(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

/* W3C Trace Context level 1: version-traceid-parentid-flags, lowercase hex; version ff and
 * all-zero ids are invalid. */
static int traceparent_valid(const char *s)
{
    if (strlen(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return 0;
    int nz_trace = 0, nz_parent = 0;
    for (size_t i = 0; i < 55; i++) {
        if (i == 2 || i == 35 || i == 52)
            continue;
        if (!is_hex_lower(s[i]))
            return 0;
        if (i >= 3 && i < 35 && s[i] != '0')
            nz_trace = 1;
        if (i >= 36 && i < 52 && s[i] != '0')
            nz_parent = 1;
    }
    if (s[0] == 'f' && s[1] == 'f')
        return 0;
    return nz_trace && nz_parent;
}

static int service_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SERVICE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

static int method_valid(const char *m)
{
    size_t n = m != NULL ? strlen(m) : 0;
    if (n == 0 || n > METHOD_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (m[i] < 'A' || m[i] > 'Z')
            return 0;
    return 1;
}

static int text_clean(const char *s, int allow_space)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f || (!allow_space && ch == ' '))
            if (!(allow_space && ch == '\t'))
                return 0;
    }
    return 1;
}

/* ------------------------------------------------------------- the pool -- */

static CURL *pool_get(keel_http_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->pool_mu);
    if (c->nidle > 0)
        h = c->idle[--c->nidle];
    pthread_mutex_unlock(&c->pool_mu);
    if (h != NULL) {
        curl_easy_reset(h); /* options go; the connection cache stays */
        return h;
    }
    return curl_easy_init();
}

static void pool_put(keel_http_client *c, CURL *h)
{
    pthread_mutex_lock(&c->pool_mu);
    if (c->nidle < c->max_idle) {
        c->idle[c->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->pool_mu);
    if (h != NULL)
        curl_easy_cleanup(h);
}

/* ------------------------------------------------------------- attempts -- */

typedef struct attempt_ctx {
    keel_http_client *c;
    const keel_http_client_req *req;
    const char *url;
    const char *log_path; /* path without the query */
    size_t log_path_len;
    struct curl_slist *hdrs;
    uint32_t timeout_ms;
    keel_buf body;
    keel_buf headers;
    long status;       /* of the last attempt; 0 = no response */
    int too_big;
    int header_overflow;
    uint64_t retry_after_ms;
    unsigned attempts;
    keel_err last;     /* terminal result of the last attempt */
} attempt_ctx;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    attempt_ctx *a = ud;
    size_t n = size * nmemb;
    keel_err e = keel_buf_append(&a->body, ptr, n);
    if (e == KEEL_ETOOBIG)
        a->too_big = 1;
    return e == KEEL_OK ? n : 0;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    attempt_ctx *a = ud;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) { /* a new response (100-continue, ...) */
        keel_buf_reset(&a->headers);
        return n;
    }
    if (n <= 2 && (n == 0 || ptr[0] == '\r' || ptr[0] == '\n'))
        return n;
    if (keel_buf_append(&a->headers, ptr, n) != KEEL_OK)
        a->header_overflow = 1; /* keep going: the headers kept so far stay usable */
    return n;
}

static keel_err map_curl(CURLcode cc, const attempt_ctx *a)
{
    switch (cc) {
    case CURLE_OK:
        return KEEL_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return KEEL_ETIMEOUT;
    case CURLE_WRITE_ERROR:
        return a->too_big ? KEEL_ETOOBIG : KEEL_EIO;
    case CURLE_FILESIZE_EXCEEDED: /* Content-Length over max_response_bytes */
        return KEEL_ETOOBIG;
    case CURLE_OUT_OF_MEMORY:
        return KEEL_ENOMEM;
    case CURLE_URL_MALFORMAT:
        return KEEL_EINVAL;
    default:
        return KEEL_EIO;
    }
}

static void log_attempt(const keel_http_client *c, const attempt_ctx *a, const keel_call *call,
                        keel_err e, CURLcode cc, double dur_ms, const char *cls)
{
    const char *method = a->req->method;
    if (e == KEEL_OK || a->status > 0) {
        keel_log_field f[7] = {
            KEEL_LF_STR("service", c->service),
            KEEL_LF_STR("method", method),
            KEEL_LF_STRN("path", a->log_path, a->log_path_len),
            KEEL_LF_INT("status_code", a->status),
            KEEL_LF_STR("status_class", cls),
            KEEL_LF_DOUBLE("duration_ms", dur_ms),
            KEEL_LF_INT("attempt", call->attempt),
        };
        KEEL_LOG_FIELDS(c->log, KEEL_LOG_LEVEL_INFO, f, 7, "downstream request completed");
        return;
    }
    keel_log_field f[6] = {
        KEEL_LF_STR("service", c->service),
        KEEL_LF_STR("method", method),
        KEEL_LF_STRN("path", a->log_path, a->log_path_len),
        KEEL_LF_STR("error", curl_easy_strerror(cc)),
        KEEL_LF_DOUBLE("duration_ms", dur_ms),
        KEEL_LF_INT("attempt", call->attempt),
    };
    if (e == KEEL_ETIMEOUT)
        KEEL_LOG_FIELDS(c->log, KEEL_LOG_LEVEL_ERROR, f, 6, "downstream request timed out");
    else
        KEEL_LOG_FIELDS(c->log, KEEL_LOG_LEVEL_ERROR, f, 6, "downstream request failed");
}

static keel_err setup_handle(keel_http_client *c, attempt_ctx *a, CURL *h)
{
    const keel_http_client_req *req = a->req;
    CURLcode cc = CURLE_OK;
#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)
    SETOPT(CURLOPT_URL, a->url);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_TIMEOUT_MS, (long)a->timeout_ms);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)KEEL_MIN(c->connect_timeout_ms, a->timeout_ms));
    SETOPT(CURLOPT_USERAGENT, c->user_agent);
    SETOPT(CURLOPT_HTTPHEADER, a->hdrs);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, a);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, a);
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
    if (strcmp(req->method, "GET") == 0 && req->body == NULL) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "HEAD") == 0) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else {
        if (req->body != NULL || strcmp(req->method, "POST") == 0 ||
            strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0) {
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
            SETOPT(CURLOPT_POSTFIELDS, req->body != NULL ? (const char *)req->body : "");
        }
        SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
    }
    if (c->aws_sigv4 != NULL) {
        SETOPT(CURLOPT_AWS_SIGV4, c->aws_sigv4);
        SETOPT(CURLOPT_USERNAME, c->aws_access_key);
        SETOPT(CURLOPT_PASSWORD, (const char *)keel_secret_data(c->aws_secret));
    }
#undef SETOPT
    if (cc == CURLE_OUT_OF_MEMORY)
        return KEEL_ENOMEM;
    return cc == CURLE_OK ? KEEL_OK : KEEL_EIO;
}

/* The terminal of the chain: one HTTP exchange. */
static keel_err attempt(void *cx, void *ud)
{
    keel_call *call = cx;
    attempt_ctx *a = ud;
    keel_http_client *c = a->c;
    a->attempts++;
    a->status = 0;
    a->too_big = 0;
    a->header_overflow = 0;
    a->retry_after_ms = 0;
    keel_buf_reset(&a->body);
    keel_buf_reset(&a->headers);

    CURL *h = pool_get(c);
    if (h == NULL) {
        call->retriable = 0;
        return a->last = KEEL_ENOMEM;
    }
    keel_err e = setup_handle(c, a, h);
    if (e != KEEL_OK) {
        curl_easy_cleanup(h);
        call->retriable = 0;
        return a->last = e;
    }
    uint64_t t0 = keel_time_mono_ns();
    CURLcode cc = curl_easy_perform(h);
    double dur_s = (double)(keel_time_mono_ns() - t0) / 1e9;
    if (cc == CURLE_OK) {
        long st = 0;
        if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st) == CURLE_OK)
            a->status = st;
    }
    /* A handle whose transfer failed may hold a broken connection: curl discards those
     * itself, so the handle is still fit for reuse. */
    pool_put(c, h);

    e = map_curl(cc, a);
    const char *cls = keel_http_client_classify(a->status, cc != CURLE_OK);
    if (c->m_requests != NULL) {
        const char *lv[3] = {c->service, a->req->method, cls};
        (void)keel_metric_add(c->m_requests, lv, 1.0);
        const char *dv[2] = {c->service, a->req->method};
        (void)keel_metric_observe(c->m_duration, dv, dur_s);
    }
    log_attempt(c, a, call, e, cc, dur_s * 1000.0, cls);

    if (e != KEEL_OK) {
        call->retriable = (e == KEEL_ETIMEOUT || e == KEEL_EIO) && !a->req->no_retry ? 1 : 0;
        return a->last = e;
    }
    long st = a->status;
    if (st == 429 || st == 502 || st == 503 || st == 504) {
        keel_http_client_resp tmp = {0};
        tmp.headers = a->headers.ptr;
        tmp.headers_len = a->headers.len;
        keel_str v;
        if (keel_http_client_resp_header(&tmp, "Retry-After", &v)) {
            int64_t ms = keel_http_client_parse_retry_after(v, keel_time_wall_ms());
            if (ms > 0)
                a->retry_after_ms = (uint64_t)ms;
        }
        call->retriable = a->req->no_retry ? 0 : 1;
        call->retry_after_ms = a->retry_after_ms;
        return a->last = KEEL_EAGAIN;
    }
    if (st >= 500 || st < 200) {
        call->retriable = 0;
        return a->last = KEEL_EIO; /* a failure for the breaker, not retried */
    }
    return a->last = KEEL_OK;
}

/* Breaker predicate: network errors and 5xx are failures; 429 and the rest are ignored. */
static int breaker_is_failure(const keel_call *call, keel_err e, void *ud)
{
    (void)ud;
    const attempt_ctx *a = call->user;
    if (a == NULL)
        return keel_policy_is_transient(call, e);
    if (a->status == 0)
        return e == KEEL_ETIMEOUT || e == KEEL_EIO;
    return a->status >= 500;
}

static int retry_should(const keel_call *call, keel_err e, void *ud)
{
    (void)ud;
    const attempt_ctx *a = call->user;
    if (a != NULL && a->req->no_retry)
        return 0;
    return keel_policy_is_transient(call, e);
}

static void retry_before_sleep(const keel_call *call, keel_err e, uint64_t delay_ms, void *ud)
{
    const keel_http_client *c = ud;
    const attempt_ctx *a = call->user;
    keel_log_field f[6] = {
        KEEL_LF_STR("service", c->service),
        KEEL_LF_STR("method", a != NULL ? a->req->method : ""),
        KEEL_LF_STRN("path", a != NULL ? a->log_path : "", a != NULL ? a->log_path_len : 0),
        KEEL_LF_INT("retry_attempt", call->attempt),
        KEEL_LF_INT("delay_ms", delay_ms),
        KEEL_LF_STR("error", keel_err_name(e)),
    };
    KEEL_LOG_FIELDS(c->log, KEEL_LOG_LEVEL_WARNING, f, 6,
                    "retrying downstream request in %" PRIu64 " ms", delay_ms);
}

static void breaker_log_listener(keel_breaker *b, const char *name, keel_breaker_state from,
                                 keel_breaker_state to, void *ud)
{
    (void)b;
    (void)ud;
    keel_logger *lg = keel_logger_get("app.http_client");
    keel_log_field f[3] = {
        KEEL_LF_STR("breaker", name),
        KEEL_LF_STR("old_state", keel_breaker_state_name(from)),
        KEEL_LF_STR("new_state", keel_breaker_state_name(to)),
    };
    KEEL_LOG_FIELDS(lg, KEEL_LOG_LEVEL_WARNING, f, 3, "circuit breaker state changed");
}

/* ------------------------------------------------------------- requests -- */

static keel_err build_url(const keel_http_client *c, const char *path, keel_buf *url)
{
    keel_err e = keel_buf_append_str(url, c->base_url);
    if (e == KEEL_OK && path[0] != '/' && path[0] != '\0' && path[0] != '?')
        e = keel_buf_append_char(url, '/');
    if (e == KEEL_OK)
        e = keel_buf_append_str(url, path);
    return e;
}

static keel_err build_headers(const keel_http_client_req *req, struct curl_slist **out,
                              keel_diag *diag)
{
    struct curl_slist *l = NULL, *n;
    int have_ct = 0;
    if (req->headers != NULL) {
        for (size_t i = 0; req->headers[i] != NULL; i++) {
            const char *h = req->headers[i];
            const char *colon = strchr(h, ':');
            if (colon == NULL || colon == h || !text_clean(h, 1)) {
                curl_slist_free_all(l);
                return keel_diag_set(diag, KEEL_EINVAL, i,
                                     "http_client: header %zu is not a clean 'Name: value' line",
                                     i);
            }
            if ((size_t)(colon - h) == 12 && strncasecmp(h, "content-type", 12) == 0)
                have_ct = 1;
            if ((n = curl_slist_append(l, h)) == NULL)
                goto oom;
            l = n;
        }
    }
    if (req->traceparent != NULL) {
        if (!traceparent_valid(req->traceparent)) {
            curl_slist_free_all(l);
            return keel_diag_set(diag, KEEL_EINVAL, 0,
                                 "http_client: traceparent is not a W3C traceparent value");
        }
        char tp[80];
        snprintf(tp, sizeof(tp), "traceparent: %s", req->traceparent);
        if ((n = curl_slist_append(l, tp)) == NULL)
            goto oom;
        l = n;
    }
    /* No 100-continue round trip; no form content type invented by curl for bodies. */
    if ((n = curl_slist_append(l, "Expect:")) == NULL)
        goto oom;
    l = n;
    if (!have_ct) {
        if ((n = curl_slist_append(l, "Content-Type:")) == NULL)
            goto oom;
        l = n;
    }
    *out = l;
    return KEEL_OK;
oom:
    curl_slist_free_all(l);
    return keel_diag_set(diag, KEEL_ENOMEM, 0, "http_client: out of memory");
}

keel_err keel_http_client_request(keel_http_client *c, const keel_http_client_req *req,
                                  keel_http_client_resp *resp, keel_diag *diag)
{
    if (resp != NULL)
        memset(resp, 0, sizeof(*resp));
    if (c == NULL || req == NULL || resp == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "http_client: NULL argument");
    if (!method_valid(req->method))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: method must be 1..16 upper-case letters");
    if (req->path == NULL || !text_clean(req->path, 0))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: path must not contain spaces or control characters");
    if (req->body == NULL && req->body_len != 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "http_client: body is NULL but body_len > 0");

    attempt_ctx a;
    memset(&a, 0, sizeof(a));
    a.c = c;
    a.req = req;
    a.timeout_ms = req->timeout_ms != 0 ? req->timeout_ms : c->timeout_ms;
    keel_buf_init(&a.body, c->max_response);
    keel_buf_init(&a.headers, KEEL_HTTP_CLIENT_MAX_HEADERS);
    a.log_path = req->path;
    a.log_path_len = strcspn(req->path, "?#");

    keel_buf url;
    keel_buf_init(&url, 16384);
    keel_err e = build_url(c, req->path, &url);
    if (e != KEEL_OK) {
        keel_buf_cleanup(&url);
        return keel_diag_set(diag, e, 0, "http_client: URL too long or out of memory");
    }
    a.url = url.ptr;
    e = build_headers(req, &a.hdrs, diag);
    if (e != KEEL_OK) {
        keel_buf_cleanup(&url);
        return e;
    }

    keel_call call;
    keel_call_init(&call, c->service, &a);
    a.last = KEEL_OK;
    e = keel_chain_run(c->chain, &call, attempt, &a);

    resp->status = a.status;
    resp->attempts = a.attempts;
    resp->retry_after_ms = a.retry_after_ms;
    resp->wait_ms = call.wait_ms;
    resp->status_class = keel_http_client_classify(a.status, a.status == 0);
    if (a.status > 0 && a.attempts > 0) {
        resp->body = keel_buf_take(&a.body, &resp->body_len);
        resp->headers = keel_buf_take(&a.headers, &resp->headers_len);
        if (resp->body == NULL || resp->headers == NULL) {
            keel_http_client_resp_cleanup(resp);
            e = KEEL_ENOMEM;
        }
    }
    keel_buf_cleanup(&a.body);
    keel_buf_cleanup(&a.headers);
    curl_slist_free_all(a.hdrs);
    keel_buf_cleanup(&url);

    if (e == KEEL_EOPEN) {
        KEEL_LOG_WARNING(c->log, "downstream request to %s refused: circuit open", c->service);
        return keel_diag_set(diag, KEEL_EOPEN, 0, "http_client: %s: circuit open", c->service);
    }
    if (e == KEEL_ENOMEM)
        return keel_diag_set(diag, e, 0, "http_client: out of memory");
    if (a.attempts > 0 && a.last == KEEL_ETOOBIG)
        return keel_diag_set(diag, KEEL_ETOOBIG, 0,
                             "http_client: %s: response body over %zu bytes", c->service,
                             c->max_response);
    if (a.status > 0)
        return KEEL_OK; /* a response arrived; its status tells the rest */
    if (e == KEEL_OK)
        return KEEL_OK;
    return keel_diag_set(diag, e, 0, "http_client: %s: %s", c->service,
                         e == KEEL_ETIMEOUT ? "timed out" : keel_strerror(e));
}

/* ------------------------------------------------------- create, destroy -- */

void keel_http_client_config_default(keel_http_client_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->connect_timeout_ms = KEEL_HTTP_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS;
    cfg->timeout_ms = KEEL_HTTP_CLIENT_DEFAULT_TIMEOUT_MS;
    cfg->max_response_bytes = KEEL_HTTP_CLIENT_DEFAULT_MAX_RESPONSE;
    cfg->max_idle_handles = 8;
    keel_retry_config_default(&cfg->retry);
    cfg->retry.max_attempts = 3;
    cfg->retry.base_delay_ms = 200;
    cfg->retry.max_delay_ms = 10000;
    cfg->retry.multiplier = 2.0;
    cfg->retry.jitter = KEEL_JITTER_FULL;
    cfg->breaker_enabled = 1;
    keel_breaker_config_default(&cfg->breaker);
    cfg->breaker.sliding_window_size = 20;
    cfg->breaker.minimum_number_of_calls = 10;
    cfg->breaker.failure_rate_threshold = 50.0;
    cfg->breaker.wait_duration_in_open_ms = 30000;
    cfg->breaker.permitted_calls_in_half_open = 3;
}

static keel_err validate(const keel_http_client_config *cfg, keel_diag *diag)
{
    if (cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "http_client: config is NULL");
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: size must be sizeof(keel_http_client_config) "
                             "(use keel_http_client_config_default)");
    if (cfg->service == NULL || cfg->service[0] == '\0')
        return keel_diag_set(diag, KEEL_EINVAL, 0, "http_client: service must not be empty");
    if (!service_valid(cfg->service))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: service must be 1..64 characters of [A-Za-z0-9_.-]");
    if (cfg->base_url == NULL || cfg->base_url[0] == '\0')
        return keel_diag_set(diag, KEEL_EINVAL, 0, "http_client: base_url must not be empty");
    if ((strncmp(cfg->base_url, "http://", 7) != 0 || cfg->base_url[7] == '\0') &&
        (strncmp(cfg->base_url, "https://", 8) != 0 || cfg->base_url[8] == '\0'))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: base_url must start with http:// or https://");
    if (!text_clean(cfg->base_url, 0) || strchr(cfg->base_url, '?') != NULL ||
        strchr(cfg->base_url, '#') != NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: base_url must not contain spaces, control "
                             "characters, a query or a fragment");
    if (cfg->timeout_ms == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "http_client: timeout_ms must be >= 1, got 0");
    if (cfg->connect_timeout_ms == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: connect_timeout_ms must be >= 1, got 0");
    if (cfg->max_response_bytes == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: max_response_bytes must be >= 1, got 0");
    if (cfg->nbreaker_listeners > KEEL_BREAKER_MAX_LISTENERS - 1 ||
        (cfg->nbreaker_listeners > 0 && cfg->breaker_listeners == NULL))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: breaker_listeners must hold 0..%d listeners",
                             KEEL_BREAKER_MAX_LISTENERS - 1);
    if (cfg->aws_sigv4 != NULL &&
        (cfg->aws_sigv4[0] == '\0' || cfg->aws_access_key == NULL ||
         cfg->aws_access_key[0] == '\0' || cfg->aws_secret_key == NULL ||
         cfg->aws_secret_key[0] == '\0'))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: aws_sigv4 needs aws_access_key and aws_secret_key");
    if (cfg->user_agent != NULL && !text_clean(cfg->user_agent, 1))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "http_client: user_agent must not contain control characters");
    return KEEL_OK;
}

static const double duration_buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};

static keel_err build_chain(keel_http_client *c, const keel_http_client_config *cfg,
                            keel_diag *diag)
{
    keel_err e;
    keel_retry_config rc = cfg->retry;
    rc.size = sizeof(rc);
    rc.name = c->service;
    rc.should_retry = retry_should;
    rc.should_retry_ud = NULL;
    rc.before_sleep = retry_before_sleep;
    rc.before_sleep_ud = c;
    rc.clock = cfg->clock;
    if ((e = keel_retry_create(&c->retry, &rc, diag)) != KEEL_OK)
        return e;
    if ((e = keel_chain_create(&c->chain)) != KEEL_OK)
        return keel_diag_set(diag, e, 0, "http_client: out of memory");
    keel_layer *l;
    if ((e = keel_retry_layer(c->retry, &l)) != KEEL_OK)
        return keel_diag_set(diag, e, 0, "http_client: out of memory");
    if ((e = keel_chain_add_take(c->chain, l)) != KEEL_OK) {
        l->dispose(l);
        return keel_diag_set(diag, e, 0, "http_client: out of memory");
    }
    if (!cfg->breaker_enabled)
        return KEEL_OK;
    keel_breaker_listener ls[KEEL_BREAKER_MAX_LISTENERS];
    ls[0].fn = breaker_log_listener;
    ls[0].ud = NULL;
    for (size_t i = 0; i < cfg->nbreaker_listeners; i++)
        ls[i + 1] = cfg->breaker_listeners[i];
    keel_breaker_config bc = cfg->breaker;
    bc.size = sizeof(bc);
    bc.name = c->service;
    bc.is_failure = breaker_is_failure;
    bc.is_failure_ud = NULL;
    bc.listeners = ls;
    bc.nlisteners = cfg->nbreaker_listeners + 1;
    bc.clock = cfg->clock;
    if ((e = keel_breaker_create(&c->breaker, &bc, diag)) != KEEL_OK)
        return e;
    if ((e = keel_breaker_layer(c->breaker, &l)) != KEEL_OK)
        return keel_diag_set(diag, e, 0, "http_client: out of memory");
    if ((e = keel_chain_add_take(c->chain, l)) != KEEL_OK) {
        l->dispose(l);
        return keel_diag_set(diag, e, 0, "http_client: out of memory");
    }
    return KEEL_OK;
}

keel_err keel_http_client_create(keel_http_client **out, const keel_http_client_config *cfg,
                                 keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "http_client: out is NULL");
    *out = NULL;
    keel_err e = validate(cfg, diag);
    if (e != KEEL_OK)
        return e;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return keel_diag_set(diag, KEEL_EIO, 0, "http_client: libcurl initialisation failed");

    keel_http_client *c = keel__new(keel_http_client);
    if (c == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "http_client: out of memory");
    if (pthread_mutex_init(&c->pool_mu, NULL) != 0) {
        keel_free(c);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "http_client: mutex init failed");
    }
    c->log = keel_logger_get("app.http_client");
    c->connect_timeout_ms = cfg->connect_timeout_ms;
    c->timeout_ms = cfg->settings != NULL
                        ? keel_settings_dep_timeout_ms(cfg->settings, cfg->service, cfg->timeout_ms)
                        : cfg->timeout_ms;
    if (c->timeout_ms == 0)
        c->timeout_ms = cfg->timeout_ms;
    c->max_response = cfg->max_response_bytes;
    c->max_idle = cfg->max_idle_handles;
    size_t blen = strlen(cfg->base_url);
    while (blen > 0 && cfg->base_url[blen - 1] == '/')
        blen--;
    c->service = keel_strdup(cfg->service);
    c->base_url = keel_strndup(cfg->base_url, blen);
    c->user_agent = keel_strdup(cfg->user_agent != NULL ? cfg->user_agent : "keel-http-client");
    if (c->max_idle > 0)
        c->idle = keel_calloc(c->max_idle, sizeof(CURL *));
    if (c->service == NULL || c->base_url == NULL || c->user_agent == NULL ||
        (c->max_idle > 0 && c->idle == NULL)) {
        e = keel_diag_set(diag, KEEL_ENOMEM, 0, "http_client: out of memory");
        goto fail;
    }
    if (cfg->aws_sigv4 != NULL) {
        c->aws_sigv4 = keel_strdup(cfg->aws_sigv4);
        c->aws_access_key = keel_strdup(cfg->aws_access_key);
        /* keep the terminating NUL inside the secret: curl wants a C string */
        e = keel_secret_create(&c->aws_secret, cfg->aws_secret_key,
                               strlen(cfg->aws_secret_key) + 1);
        if (c->aws_sigv4 == NULL || c->aws_access_key == NULL || e != KEEL_OK) {
            e = keel_diag_set(diag, KEEL_ENOMEM, 0, "http_client: out of memory");
            goto fail;
        }
    }
    if (cfg->metrics != NULL) {
        static const char *const rl[] = {"service", "method", "status_class", NULL};
        static const char *const dl[] = {"service", "method", NULL};
        e = keel_metrics_counter(cfg->metrics, "http_client_requests_total",
                                 "Total outbound HTTP requests", rl, &c->m_requests);
        if (e == KEEL_OK)
            e = keel_metrics_histogram(cfg->metrics, "http_client_request_duration_seconds",
                                       "Outbound HTTP request latency", dl, duration_buckets,
                                       KEEL_ARRAY_LEN(duration_buckets), &c->m_duration);
        if (e != KEEL_OK) {
            e = keel_diag_set(diag, e, 0, "http_client: cannot register metrics: %s",
                              keel_strerror(e));
            goto fail;
        }
    }
    if ((e = build_chain(c, cfg, diag)) != KEEL_OK)
        goto fail;
    *out = c;
    return KEEL_OK;
fail:
    keel_http_client_destroy(c);
    return e;
}

void keel_http_client_destroy(keel_http_client *c)
{
    if (c == NULL)
        return;
    keel_chain_destroy(c->chain);
    keel_breaker_destroy(c->breaker);
    keel_retry_destroy(c->retry);
    for (size_t i = 0; i < c->nidle; i++)
        curl_easy_cleanup(c->idle[i]);
    keel_free(c->idle);
    pthread_mutex_destroy(&c->pool_mu);
    keel_secret_destroy(c->aws_secret);
    keel_free(c->aws_access_key);
    keel_free(c->aws_sigv4);
    keel_free(c->user_agent);
    keel_free(c->base_url);
    keel_free(c->service);
    keel_free(c);
}

keel_breaker *keel_http_client_breaker(keel_http_client *c)
{
    return c != NULL ? c->breaker : NULL;
}

uint32_t keel_http_client_timeout_ms(const keel_http_client *c)
{
    return c != NULL ? c->timeout_ms : 0;
}
