/* s3.c - PutObject/GetObject/DeleteObject/ListObjectsV2 over the keel HTTP client, signed
 * with SigV4 by libcurl, with seed 003 metrics and logs. */
#include "keel_int.h"

#include <keel/client.h>
#include <keel/s3.h>

#include "client_int.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>

#define LIST_MAX 1000

struct keel_s3 {
    keel_http_client *http;
    char *bucket;
    keel_logger *log;
    keel_metric *m_requests;
    keel_metric *m_duration;
    keel_metric *m_bytes;
};

static const double s3_buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0};

keel_err keel_s3_status_error(long status)
{
    if (status >= 200 && status < 300)
        return KEEL_OK;
    if (status == 404)
        return KEEL_ENOTFOUND;
    if (status == 403)
        return KEEL_EDENIED;
    if (status == 429 || (status >= 500 && status < 600))
        return KEEL_EAGAIN;
    if (status >= 400 && status < 500)
        return KEEL_EINVAL;
    return KEEL_EIO;
}

void keel_s3_config_default(keel_s3_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->region = "us-east-1";
    cfg->connect_timeout_ms = 3000;
    cfg->timeout_ms = 30000;
    cfg->max_object_bytes = KEEL_S3_DEFAULT_MAX_OBJECT;
    cfg->max_attempts = 3;
    cfg->retry_base_delay_ms = 200;
}

static int bucket_valid(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = b[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

static int region_valid(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = r[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return 0;
    }
    return 1;
}

static keel_err validate(const keel_s3_config *cfg, keel_diag *diag)
{
    if (cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: config is NULL");
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "s3: size must be sizeof(keel_s3_config) (use keel_s3_config_default)");
    if (cfg->bucket == NULL || cfg->bucket[0] == '\0')
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: bucket must not be empty");
    if (!bucket_valid(cfg->bucket))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "s3: bucket must be 3..63 characters of [a-z0-9.-]");
    if (cfg->region == NULL || !region_valid(cfg->region))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "s3: region must be 1..32 characters of [a-z0-9-]");
    if (cfg->endpoint != NULL && cfg->endpoint[0] == '\0')
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: endpoint must not be empty (NULL = AWS)");
    if (cfg->access_key == NULL || cfg->access_key[0] == '\0')
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: access_key must not be empty");
    if (cfg->secret_key == NULL || cfg->secret_key[0] == '\0')
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: secret_key must not be empty");
    if (cfg->timeout_ms == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: timeout_ms must be >= 1, got 0");
    if (cfg->connect_timeout_ms == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: connect_timeout_ms must be >= 1, got 0");
    if (cfg->max_object_bytes == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: max_object_bytes must be >= 1, got 0");
    if (cfg->max_attempts == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: max_attempts must be >= 1, got 0");
    return KEEL_OK;
}

keel_err keel_s3_create(keel_s3 **out, const keel_s3_config *cfg, keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: out is NULL");
    *out = NULL;
    keel_err e = validate(cfg, diag);
    if (e != KEEL_OK)
        return e;
    keel_s3 *s3 = keel__new(keel_s3);
    if (s3 == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "s3: out of memory");
    s3->log = keel_logger_get("app.s3");
    s3->bucket = keel_strdup(cfg->bucket);
    char aws_url[96], sigv4[64];
    snprintf(aws_url, sizeof(aws_url), "https://s3.%s.amazonaws.com", cfg->region);
    snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", cfg->region);
    if (s3->bucket == NULL) {
        e = keel_diag_set(diag, KEEL_ENOMEM, 0, "s3: out of memory");
        goto fail;
    }

    keel_http_client_config hc;
    keel_http_client_config_default(&hc);
    hc.service = "s3";
    hc.base_url = cfg->endpoint != NULL ? cfg->endpoint : aws_url;
    hc.connect_timeout_ms = cfg->connect_timeout_ms;
    hc.timeout_ms = cfg->timeout_ms;
    hc.settings = cfg->settings;
    hc.max_response_bytes = cfg->max_object_bytes;
    hc.user_agent = "keel-s3";
    hc.retry.max_attempts = cfg->max_attempts;
    hc.retry.base_delay_ms = cfg->retry_base_delay_ms;
    if (hc.retry.max_delay_ms < hc.retry.base_delay_ms)
        hc.retry.max_delay_ms = hc.retry.base_delay_ms;
    hc.clock = cfg->clock;
    hc.aws_sigv4 = sigv4;
    hc.aws_access_key = cfg->access_key;
    hc.aws_secret_key = cfg->secret_key;
    keel_diag hd;
    e = keel_http_client_create(&s3->http, &hc, &hd);
    if (e != KEEL_OK) {
        /* the HTTP client names its own fields; say which S3 field they came from */
        if (strstr(hd.msg, "base_url") != NULL)
            e = keel_diag_set(diag, e, 0, "s3: endpoint is invalid (%s)", hd.msg);
        else
            e = keel_diag_set(diag, e, 0, "s3: %s", hd.msg);
        goto fail;
    }
    if (cfg->metrics != NULL) {
        static const char *const rl[] = {"operation", "status", NULL};
        static const char *const dl[] = {"operation", NULL};
        static const char *const bl[] = {"operation", "direction", NULL};
        e = keel_metrics_counter(cfg->metrics, "s3_requests_total", "Total S3 operations", rl,
                                 &s3->m_requests);
        if (e == KEEL_OK)
            e = keel_metrics_histogram(cfg->metrics, "s3_request_duration_seconds",
                                       "S3 operation latency", dl, s3_buckets,
                                       KEEL_ARRAY_LEN(s3_buckets), &s3->m_duration);
        if (e == KEEL_OK)
            e = keel_metrics_counter(cfg->metrics, "s3_bytes_transferred_total",
                                     "Bytes transferred to/from S3", bl, &s3->m_bytes);
        if (e != KEEL_OK) {
            e = keel_diag_set(diag, e, 0, "s3: cannot register metrics: %s", keel_strerror(e));
            goto fail;
        }
    }
    *out = s3;
    return KEEL_OK;
fail:
    keel_s3_destroy(s3);
    return e;
}

void keel_s3_destroy(keel_s3 *s3)
{
    if (s3 == NULL)
        return;
    keel_http_client_destroy(s3->http);
    keel_free(s3->bucket);
    keel_free(s3);
}

/* ------------------------------------------------------------- encoding -- */

static int unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.' || ch == '~';
}

/* SigV4 URI encoding: everything but the unreserved set (and '/' in paths) as %XX. */
static keel_err uri_encode(keel_buf *b, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        keel_err e;
        if (unreserved(*p) || (keep_slash && *p == '/')) {
            e = keel_buf_append_char(b, (char)*p);
        } else {
            char t[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            e = keel_buf_append(b, t, 3);
        }
        if (e != KEEL_OK)
            return e;
    }
    return KEEL_OK;
}

static int key_valid(const char *key)
{
    if (key == NULL)
        return 0;
    size_t n = strlen(key);
    if (n == 0 || n > KEEL_S3_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return 0;
    return 1;
}

static keel_err sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(data != NULL ? data : "", len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != 32)
        return KEEL_ECRYPTO;
    keel__hex_encode(md, 32, out);
    return KEEL_OK;
}

/* ------------------------------------------------------------ XML bits -- */

/* The text of the first <tag>...</tag> within [p, end), or NULL. */
static const char *xml_find(const char *p, const char *end, const char *tag, size_t *len)
{
    char open[48], close[48];
    int no = snprintf(open, sizeof(open), "<%s>", tag);
    int nc = snprintf(close, sizeof(close), "</%s>", tag);
    if (p == NULL || no <= 0 || nc <= 0)
        return NULL;
    const char *s = memmem(p, (size_t)(end - p), open, (size_t)no);
    if (s == NULL)
        return NULL;
    s += no;
    const char *e = memmem(s, (size_t)(end - s), close, (size_t)nc);
    if (e == NULL)
        return NULL;
    *len = (size_t)(e - s);
    return s;
}

static void put_utf8(keel_buf *b, unsigned long cp, keel_err *e)
{
    char t[4];
    size_t n;
    if (cp < 0x80) {
        t[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        t[0] = (char)(0xC0 | (cp >> 6));
        t[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | (cp >> 12));
        t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        t[0] = (char)(0xF0 | (cp >> 18));
        t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (*e == KEEL_OK)
        *e = keel_buf_append(b, t, n);
}

/* Decode XML character data (the five entities and numeric references) into a new string. */
static keel_err xml_text(const char *s, size_t n, char **out)
{
    keel_buf b;
    keel_buf_init(&b, n + 1);
    keel_err e = keel_buf_append(&b, "", 0);
    for (size_t i = 0; i < n && e == KEEL_OK;) {
        if (s[i] != '&') {
            e = keel_buf_append_char(&b, s[i++]);
            continue;
        }
        const char *semi = memchr(s + i, ';', KEEL_MIN(n - i, (size_t)12));
        if (semi == NULL) {
            e = KEEL_EPARSE;
            break;
        }
        size_t el = (size_t)(semi - (s + i)) + 1;
        keel_str ent = {s + i, el};
        if (keel_str_eq(ent, KEEL_STR_LIT("&amp;")))
            e = keel_buf_append_char(&b, '&');
        else if (keel_str_eq(ent, KEEL_STR_LIT("&lt;")))
            e = keel_buf_append_char(&b, '<');
        else if (keel_str_eq(ent, KEEL_STR_LIT("&gt;")))
            e = keel_buf_append_char(&b, '>');
        else if (keel_str_eq(ent, KEEL_STR_LIT("&quot;")))
            e = keel_buf_append_char(&b, '"');
        else if (keel_str_eq(ent, KEEL_STR_LIT("&apos;")))
            e = keel_buf_append_char(&b, '\'');
        else if (el >= 4 && s[i + 1] == '#') {
            int hexa = s[i + 2] == 'x' || s[i + 2] == 'X';
            unsigned long cp = 0;
            size_t k = i + (hexa ? 3 : 2);
            if (k >= i + el - 1)
                e = KEEL_EPARSE;
            for (; k < i + el - 1 && e == KEEL_OK; k++) {
                int v = hexa ? keel__hex_value(s[k])
                             : (s[k] >= '0' && s[k] <= '9' ? s[k] - '0' : -1);
                if (v < 0)
                    e = KEEL_EPARSE;
                else
                    cp = cp * (hexa ? 16u : 10u) + (unsigned long)v;
            }
            if (e == KEEL_OK && (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)))
                e = KEEL_EPARSE;
            if (e == KEEL_OK)
                put_utf8(&b, cp, &e);
        } else {
            e = KEEL_EPARSE;
        }
        i += el;
    }
    if (e != KEEL_OK) {
        keel_buf_cleanup(&b);
        return e == KEEL_ETOOBIG ? KEEL_EPARSE : e;
    }
    *out = keel_buf_take(&b, NULL);
    return *out != NULL ? KEEL_OK : KEEL_ENOMEM;
}

/* -------------------------------------------------------------- one call -- */

typedef struct op {
    const char *name; /* PutObject, ... */
    const char *method;
    const char *key;  /* for logs; may be NULL */
    const void *body;
    size_t body_len;
    const char *content_type;
} op;

static keel_err run_op(keel_s3 *s3, const op *o, const char *path, keel_http_client_resp *resp,
                       keel_diag *diag)
{
    char sha[65], h_sha[96], h_ct[160];
    keel_err e = sha256_hex(o->body, o->body_len, sha);
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "s3: %s: SHA-256 failed", o->name);
    snprintf(h_sha, sizeof(h_sha), "x-amz-content-sha256: %s", sha);
    const char *hdrs[3] = {h_sha, NULL, NULL};
    if (o->content_type != NULL) {
        snprintf(h_ct, sizeof(h_ct), "Content-Type: %s", o->content_type);
        hdrs[1] = h_ct;
    }
    keel_http_client_req req;
    keel_http_client_req_init(&req, o->method, path);
    req.headers = hdrs;
    req.body = o->body;
    req.body_len = o->body_len;

    uint64_t t0 = keel_time_mono_ns();
    keel_diag hd;
    memset(&hd, 0, sizeof(hd));
    keel_err he = keel_http_client_request(s3->http, &req, resp, &hd);
    double dur = (double)(keel_time_mono_ns() - t0) / 1e9;
    e = he != KEEL_OK ? he : keel_s3_status_error(resp->status);
    const char *cls = keel_http_client_classify(resp->status, he != KEEL_OK);
    if (s3->m_requests != NULL) {
        const char *rv[2] = {o->name, cls};
        (void)keel_metric_add(s3->m_requests, rv, 1.0);
        const char *dv[1] = {o->name};
        (void)keel_metric_observe(s3->m_duration, dv, dur);
        if (e == KEEL_OK && o->body_len > 0) {
            const char *bv[2] = {o->name, "upload"};
            (void)keel_metric_add(s3->m_bytes, bv, (double)o->body_len);
        }
        if (e == KEEL_OK && strcmp(o->name, "GetObject") == 0 && resp->body_len > 0) {
            const char *bv[2] = {o->name, "download"};
            (void)keel_metric_add(s3->m_bytes, bv, (double)resp->body_len);
        }
    }
    if (e == KEEL_OK)
        return KEEL_OK;

    /* S3 error documents: <Error><Code>NoSuchKey</Code>... */
    char code[64] = "";
    size_t cl = 0;
    const char *cs = NULL;
    if (he == KEEL_OK && resp->body != NULL)
        cs = xml_find(resp->body, resp->body + resp->body_len, "Code", &cl);
    if (cs != NULL) {
        size_t k = 0;
        for (size_t i = 0; i < cl && k < sizeof(code) - 1; i++)
            if (cs[i] > 0x20 && cs[i] < 0x7f)
                code[k++] = cs[i];
        code[k] = '\0';
    }
    const char *what = he != KEEL_OK ? keel_err_name(he) : code[0] != '\0' ? code : "-";
    /* A missing object is an answer, not a failure of S3: log it at INFO only. */
    keel_log_level lv = e == KEEL_ENOTFOUND ? KEEL_LOG_LEVEL_INFO : KEEL_LOG_LEVEL_ERROR;
    keel_log_field f[5] = {
        KEEL_LF_STR("operation", o->name), KEEL_LF_STR("bucket", s3->bucket),
        KEEL_LF_STR("key", o->key),        KEEL_LF_INT("status_code", resp->status),
        KEEL_LF_STR("error", what),
    };
    KEEL_LOG_FIELDS(s3->log, lv, f, 5, "%s", he != KEEL_OK ? "S3 operation failed (network)"
                                                          : "S3 operation failed");
    if (he != KEEL_OK)
        return keel_diag_set(diag, e, 0, "s3: %s %s: %s", o->name, o->key != NULL ? o->key : "",
                             hd.msg);
    return keel_diag_set(diag, e, 0, "s3: %s %s: HTTP %ld %s", o->name,
                         o->key != NULL ? o->key : "", resp->status, what);
}

static keel_err object_path(const keel_s3 *s3, const char *key, keel_buf *path, keel_diag *diag)
{
    if (!key_valid(key))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "s3: key must be 1..%d bytes without control characters",
                             KEEL_S3_KEY_MAX);
    keel_err e = keel_buf_append_char(path, '/');
    if (e == KEEL_OK)
        e = keel_buf_append_str(path, s3->bucket);
    if (e == KEEL_OK)
        e = keel_buf_append_char(path, '/');
    if (e == KEEL_OK)
        e = uri_encode(path, key, 1);
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "s3: out of memory");
    return KEEL_OK;
}

keel_err keel_s3_put(keel_s3 *s3, const char *key, const void *data, size_t len,
                     const char *content_type, keel_diag *diag)
{
    if (s3 == NULL || (data == NULL && len > 0))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: NULL argument");
    if (content_type != NULL &&
        (strlen(content_type) > 128 || strpbrk(content_type, "\r\n") != NULL))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "s3: content_type must be at most 128 bytes on one line");
    keel_buf path;
    keel_buf_init(&path, 4 * KEEL_S3_KEY_MAX + 128);
    keel_err e = object_path(s3, key, &path, diag);
    if (e == KEEL_OK) {
        op o = {"PutObject", "PUT", key, data != NULL ? data : "", len,
                content_type != NULL ? content_type : "application/octet-stream"};
        keel_http_client_resp resp;
        e = run_op(s3, &o, path.ptr, &resp, diag);
        keel_http_client_resp_cleanup(&resp);
    }
    keel_buf_cleanup(&path);
    return e;
}

keel_err keel_s3_get(keel_s3 *s3, const char *key, char **data, size_t *len, keel_diag *diag)
{
    if (data != NULL)
        *data = NULL;
    if (len != NULL)
        *len = 0;
    if (s3 == NULL || data == NULL || len == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: NULL argument");
    keel_buf path;
    keel_buf_init(&path, 4 * KEEL_S3_KEY_MAX + 128);
    keel_err e = object_path(s3, key, &path, diag);
    if (e == KEEL_OK) {
        op o = {"GetObject", "GET", key, NULL, 0, NULL};
        keel_http_client_resp resp;
        e = run_op(s3, &o, path.ptr, &resp, diag);
        if (e == KEEL_OK) {
            *data = resp.body;
            *len = resp.body_len;
            resp.body = NULL;
            if (*data == NULL) { /* an empty object: still a valid string */
                *data = keel_strdup("");
                if (*data == NULL)
                    e = keel_diag_set(diag, KEEL_ENOMEM, 0, "s3: out of memory");
            }
        }
        keel_http_client_resp_cleanup(&resp);
    }
    keel_buf_cleanup(&path);
    return e;
}

keel_err keel_s3_delete(keel_s3 *s3, const char *key, keel_diag *diag)
{
    if (s3 == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: NULL argument");
    keel_buf path;
    keel_buf_init(&path, 4 * KEEL_S3_KEY_MAX + 128);
    keel_err e = object_path(s3, key, &path, diag);
    if (e == KEEL_OK) {
        op o = {"DeleteObject", "DELETE", key, NULL, 0, NULL};
        keel_http_client_resp resp;
        e = run_op(s3, &o, path.ptr, &resp, diag);
        keel_http_client_resp_cleanup(&resp);
    }
    keel_buf_cleanup(&path);
    return e;
}

void keel_s3_list_cleanup(keel_s3_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->count; i++)
        keel_free(l->objects[i].key);
    keel_free(l->objects);
    keel_free(l->next_token);
    memset(l, 0, sizeof(*l));
}

static keel_err parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return KEEL_EPARSE;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return KEEL_EPARSE;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return KEEL_EPARSE;
        v = v * 10 + d;
    }
    *out = v;
    return KEEL_OK;
}

/* Parse a ListBucketResult document into out (client_int.h). */
keel_err keel__s3_parse_list(const char *xml, size_t n, keel_s3_list *out)
{
    memset(out, 0, sizeof(*out));
    const char *end = xml + n;
    if (memmem(xml, n, "<ListBucketResult", 17) == NULL)
        return KEEL_EPARSE;
    size_t count = 0;
    for (const char *p = xml; (p = memmem(p, (size_t)(end - p), "<Contents>", 10)) != NULL;
         p += 10)
        count++;
    if (count > LIST_MAX)
        return KEEL_EPARSE;
    if (count > 0) {
        out->objects = keel_calloc(count, sizeof(*out->objects));
        if (out->objects == NULL)
            return KEEL_ENOMEM;
    }
    keel_err e = KEEL_OK;
    const char *p = xml;
    for (size_t i = 0; i < count && e == KEEL_OK; i++) {
        const char *cs = memmem(p, (size_t)(end - p), "<Contents>", 10);
        if (cs == NULL) { /* counted, but swallowed by an earlier (nested) element */
            e = KEEL_EPARSE;
            break;
        }
        p = cs + 10;
        const char *ce = memmem(p, (size_t)(end - p), "</Contents>", 11);
        if (ce == NULL) {
            e = KEEL_EPARSE;
            break;
        }
        keel_s3_object *o = &out->objects[i];
        size_t kl = 0, sl = 0, el = 0;
        const char *k = xml_find(p, ce, "Key", &kl);
        const char *sz = xml_find(p, ce, "Size", &sl);
        const char *et = xml_find(p, ce, "ETag", &el);
        if (k == NULL) {
            e = KEEL_EPARSE;
            break;
        }
        e = xml_text(k, kl, &o->key);
        if (e != KEEL_OK)
            break;
        out->count = i + 1;
        if (sz != NULL && (e = parse_u64(sz, sl, &o->size)) != KEEL_OK)
            break;
        if (et != NULL) {
            char *etag = NULL;
            if ((e = xml_text(et, el, &etag)) != KEEL_OK)
                break;
            const char *t = etag;
            size_t tl = strlen(t);
            if (tl >= 2 && t[0] == '"' && t[tl - 1] == '"') {
                t++;
                tl -= 2;
            }
            if (tl >= sizeof(o->etag))
                tl = sizeof(o->etag) - 1;
            memcpy(o->etag, t, tl);
            o->etag[tl] = '\0';
            keel_free(etag);
        }
        p = ce + 11;
    }
    if (e == KEEL_OK) {
        size_t tl = 0, nl = 0;
        const char *t = xml_find(xml, end, "IsTruncated", &tl);
        out->truncated = t != NULL && keel_str_eq((keel_str){t, tl}, KEEL_STR_LIT("true"));
        const char *nt = xml_find(xml, end, "NextContinuationToken", &nl);
        if (nt != NULL)
            e = xml_text(nt, nl, &out->next_token);
        if (e == KEEL_OK && out->truncated && out->next_token == NULL)
            e = KEEL_EPARSE;
    }
    if (e != KEEL_OK)
        keel_s3_list_cleanup(out);
    return e;
}

keel_err keel_s3_list_objects(keel_s3 *s3, const char *prefix, const char *token,
                              unsigned max_keys, keel_s3_list *out, keel_diag *diag)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (s3 == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: NULL argument");
    if (max_keys > LIST_MAX)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: max_keys must be 0..1000, got %u",
                             max_keys);
    if (prefix != NULL && prefix[0] != '\0' && !key_valid(prefix))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "s3: prefix must be at most %d bytes without control characters",
                             KEEL_S3_KEY_MAX);
    if (token != NULL && (strlen(token) > 4096 || !key_valid(token)))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "s3: continuation token is malformed");
    /* Parameters in sorted order: the SigV4 canonical query string wants them so. */
    keel_buf path;
    keel_buf_init(&path, 4 * (KEEL_S3_KEY_MAX + 4096) + 256);
    keel_err e = keel_buf_appendf(&path, "/%s?", s3->bucket);
    if (e == KEEL_OK && token != NULL) {
        e = keel_buf_append_str(&path, "continuation-token=");
        if (e == KEEL_OK)
            e = uri_encode(&path, token, 0);
        if (e == KEEL_OK)
            e = keel_buf_append_char(&path, '&');
    }
    if (e == KEEL_OK)
        e = keel_buf_appendf(&path, "list-type=2&max-keys=%u", max_keys == 0 ? LIST_MAX : max_keys);
    if (e == KEEL_OK && prefix != NULL && prefix[0] != '\0') {
        e = keel_buf_append_str(&path, "&prefix=");
        if (e == KEEL_OK)
            e = uri_encode(&path, prefix, 0);
    }
    if (e != KEEL_OK) {
        keel_buf_cleanup(&path);
        return keel_diag_set(diag, e, 0, "s3: out of memory");
    }
    op o = {"ListObjectsV2", "GET", prefix, NULL, 0, NULL};
    keel_http_client_resp resp;
    e = run_op(s3, &o, path.ptr, &resp, diag);
    if (e == KEEL_OK) {
        e = keel__s3_parse_list(resp.body != NULL ? resp.body : "", resp.body_len, out);
        if (e != KEEL_OK)
            e = keel_diag_set(diag, e, 0, "s3: ListObjectsV2: %s",
                              e == KEEL_ENOMEM ? "out of memory" : "malformed listing");
    }
    keel_http_client_resp_cleanup(&resp);
    keel_buf_cleanup(&path);
    return e;
}
