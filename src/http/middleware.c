/* middleware.c - the built-in layers of the seed 002 chain: CORS, metrics,
 * request id, access log, device info and security headers. */
#include "ctx.h"

#include <stdio.h>

#include <keel/device.h>
#include <keel/log.h>

/* "0.000123": seconds with six decimals, without printf (hot path). */
void keel__format_seconds6(uint64_t ns, char out[32])
{
    uint64_t us = (ns + 500) / 1000, whole = us / 1000000u, frac = us % 1000000u;
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole && n < sizeof(tmp));
    size_t o = 0;
    while (n)
        out[o++] = tmp[--n];
    out[o++] = '.';
    for (int i = 5; i >= 0; i--) {
        out[o + (size_t)i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    out[o + 6] = '\0';
}

/* Status code as decimal text (3 digits for valid codes). */
void keel__format_status(int status, char out[8])
{
    if (status < 100 || status > 999) {
        snprintf(out, 8, "%d", status);
        return;
    }
    out[0] = (char)('0' + status / 100);
    out[1] = (char)('0' + status / 10 % 10);
    out[2] = (char)('0' + status % 10);
    out[3] = '\0';
}

/* A layer without state of its own. */
static keel_err stateless_layer(const char *name,
                                keel_err (*call)(keel_layer *, void *, keel_chain_cursor *),
                                keel_layer **out)
{
    keel_layer *l = keel__layer_new(sizeof(*l), name, call);
    if (l == NULL)
        return KEEL_ENOMEM;
    *out = l;
    return KEEL_OK;
}

/* ------------------------------------------------------------------ CORS -- */

typedef struct cors_layer {
    keel_layer base;
    char **origins, **methods, **headers, **expose;
    int any_origin, any_method, any_header;
    int credentials;
    unsigned max_age;
    char *methods_joined; /* for Access-Control-Allow-Methods */
    char *expose_joined;
} cors_layer;

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        keel_free(v[i]);
    keel_free(v);
}

static keel_err strv_copy(const char *const *in, char ***out, int *any)
{
    size_t n = 0;
    while (in && in[n])
        n++;
    char **v = keel_calloc(n + 1, sizeof(char *));
    if (v == NULL)
        return KEEL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(in[i], "*") == 0 && any)
            *any = 1;
        if ((v[i] = keel_strdup(in[i])) == NULL) {
            strv_free(v);
            return KEEL_ENOMEM;
        }
    }
    *out = v;
    return KEEL_OK;
}

static char *strv_join(char **v)
{
    keel_buf b;
    keel_buf_init(&b, 4096);
    for (size_t i = 0; v && v[i]; i++)
        if ((i && keel_buf_append_str(&b, ", ")) || keel_buf_append_str(&b, v[i]))
            break;
    return keel_buf_take(&b, NULL);
}

static int strv_has_ci(char **v, keel_str s)
{
    for (size_t i = 0; v && v[i]; i++)
        if (keel_str_ieq(keel_str_c(v[i]), s))
            return 1;
    return 0;
}

static void cors_dispose(keel_layer *self)
{
    cors_layer *c = (cors_layer *)self;
    strv_free(c->origins);
    strv_free(c->methods);
    strv_free(c->headers);
    strv_free(c->expose);
    keel_free(c->methods_joined);
    keel_free(c->expose_joined);
    keel_free(c);
}

/* Every comma-separated token of a request's Access-Control-Request-Headers must be allowed. */
static int headers_allowed(const cors_layer *c, const char *req)
{
    if (c->any_header || req == NULL)
        return 1;
    static const char *const simple[] = {"accept", "accept-language", "content-language",
                                         "content-type"};
    const char *p = req;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == start)
            continue;
        keel_str tok = {start, (size_t)(end - start)};
        int ok = strv_has_ci(c->headers, tok);
        for (size_t i = 0; !ok && i < KEEL_ARRAY_LEN(simple); i++)
            ok = keel_str_ieq(tok, keel_str_c(simple[i]));
        if (!ok)
            return 0;
    }
    return 1;
}

static keel_err cors_call(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    cors_layer *c = (cors_layer *)self;
    keel_ctx *cx = vcx;
    const char *origin = keel_req_header(cx, "Origin");
    if (origin == NULL)
        return keel_chain_next(cur, cx);
    int origin_ok = c->any_origin || strv_has_ci(c->origins, keel_str_c(origin));
    const char *acrm = keel_req_header(cx, "Access-Control-Request-Method");
    int preflight = cx->method == KEEL_METHOD_OPTIONS && acrm != NULL;
    if (preflight) {
        cx->preflight = 1;
        int method_ok = c->any_method || strv_has_ci(c->methods, keel_str_c(acrm));
        const char *acrh = keel_req_header(cx, "Access-Control-Request-Headers");
        if (!origin_ok) {
            cx->early_status = 400;
            cx->early_detail = "Disallowed CORS origin.";
        } else if (!method_ok) {
            cx->early_status = 400;
            cx->early_detail = "Disallowed CORS method.";
        } else if (!headers_allowed(c, acrh)) {
            cx->early_status = 400;
            cx->early_detail = "Disallowed CORS headers.";
        }
        keel_err e = keel_chain_next(cur, cx);
        if (!origin_ok || cx->early_status)
            return e;
        char age[16];
        snprintf(age, sizeof(age), "%u", c->max_age);
        const char *allow_origin = (c->any_origin && !c->credentials) ? "*" : origin;
        if (keel_resp_header_set(cx, "Access-Control-Allow-Origin", allow_origin) ||
            keel_resp_header_set(cx, "Access-Control-Allow-Methods",
                                 c->any_method ? "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
                                               : c->methods_joined) ||
            (acrh && keel_resp_header_set(cx, "Access-Control-Allow-Headers", acrh)) ||
            keel_resp_header_set(cx, "Access-Control-Max-Age", age) ||
            (c->credentials &&
             keel_resp_header_set(cx, "Access-Control-Allow-Credentials", "true")) ||
            keel_resp_header(cx, "Vary", "Origin"))
            return KEEL_ENOMEM;
        return e;
    }
    keel_err e = keel_chain_next(cur, cx);
    if (!origin_ok)
        return e;
    const char *allow_origin = (c->any_origin && !c->credentials) ? "*" : origin;
    if (keel_resp_header_set(cx, "Access-Control-Allow-Origin", allow_origin) ||
        (c->credentials && keel_resp_header_set(cx, "Access-Control-Allow-Credentials", "true")) ||
        (c->expose_joined && c->expose_joined[0] &&
         keel_resp_header_set(cx, "Access-Control-Expose-Headers", c->expose_joined)) ||
        (strcmp(allow_origin, "*") != 0 && keel_resp_header(cx, "Vary", "Origin")))
        return KEEL_ENOMEM;
    return e;
}

void keel_cors_config_default(keel_cors_config *cfg)
{
    static const char *const any[] = {"*", NULL};
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->origins = any;
    cfg->methods = any;
    cfg->headers = any;
    cfg->expose_headers = NULL;
    cfg->allow_credentials = 1;
    cfg->max_age_s = 600;
}

keel_err keel_mw_cors(const keel_cors_config *cfg, keel_layer **out)
{
    cors_layer *c = keel__layer_new(sizeof(*c), "cors", cors_call);
    if (c == NULL)
        return KEEL_ENOMEM;
    c->base.dispose = cors_dispose;
    c->credentials = cfg->allow_credentials;
    c->max_age = cfg->max_age_s;
    if (strv_copy(cfg->origins, &c->origins, &c->any_origin) ||
        strv_copy(cfg->methods, &c->methods, &c->any_method) ||
        strv_copy(cfg->headers, &c->headers, &c->any_header) ||
        strv_copy(cfg->expose_headers, &c->expose, NULL) ||
        (c->methods_joined = strv_join(c->methods)) == NULL ||
        (c->expose_joined = strv_join(c->expose)) == NULL) {
        cors_dispose(&c->base);
        return KEEL_ENOMEM;
    }
    *out = &c->base;
    return KEEL_OK;
}

/* --------------------------------------------------------------- metrics -- */

typedef struct metrics_layer {
    keel_layer base;
    keel_metric *requests, *latency, *errors;
} metrics_layer;

static keel_err metrics_call(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    metrics_layer *ml = (metrics_layer *)self;
    keel_ctx *cx = vcx;
    keel_err e = keel_chain_next(cur, cx);
    double secs = (double)(keel_time_mono_ns() - cx->start_ns) / 1e9;
    char status[8];
    int st = cx->status ? cx->status : 500;
    keel__format_status(st, status);
    const char *route = keel_req_route(cx);
    const char *l3[3] = {cx->method_name, route, status};
    const char *l2[2] = {cx->method_name, route};
    keel_series *s;
    if (keel_metric_series(ml->requests, l3, &s) == KEEL_OK)
        keel_series_add(s, 1);
    if (keel_metric_series(ml->latency, l2, &s) == KEEL_OK)
        keel_series_observe(s, secs);
    if (st >= 500 || e != KEEL_OK) {
        char kind[32];
        keel_err why = e != KEEL_OK ? e : cx->handler_err;
        if (why != KEEL_OK)
            snprintf(kind, sizeof(kind), "%s", keel_err_name(why));
        else
            snprintf(kind, sizeof(kind), "HTTP%d", st);
        const char *le[2] = {route, kind};
        if (keel_metric_series(ml->errors, le, &s) == KEEL_OK)
            keel_series_add(s, 1);
    }
    return e;
}

keel_err keel_mw_metrics(keel_metrics *m, keel_layer **out)
{
    static const char *const l_req[] = {"method", "endpoint", "status", NULL};
    static const char *const l_lat[] = {"method", "endpoint", NULL};
    static const char *const l_err[] = {"endpoint", "exception_type", NULL};
    metrics_layer *ml = keel__layer_new(sizeof(*ml), "metrics", metrics_call);
    if (ml == NULL)
        return KEEL_ENOMEM;
    keel_err e;
    if ((e = keel_metrics_counter(m, "app_requests_total", "Total HTTP requests", l_req,
                                  &ml->requests)) ||
        (e = keel_metrics_histogram(m, "app_request_latency_seconds", "HTTP request latency",
                                    l_lat, NULL, 0, &ml->latency)) ||
        (e = keel_metrics_counter(m, "app_errors_total", "Total application errors", l_err,
                                  &ml->errors))) {
        keel_free(ml);
        return e;
    }
    *out = &ml->base;
    return KEEL_OK;
}

/* ------------------------------------------------------------ request id -- */

/* An incoming id is accepted when it is 1..64 characters of [A-Za-z0-9._:-]: enough for
 * UUIDs, ULIDs and trace ids, and safe to echo in headers, logs and JSON unescaped. */
static keel_err request_id_call(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    KEEL_UNUSED(self);
    keel_ctx *cx = vcx;
    const char *in = keel_req_header(cx, "X-Request-ID");
    if (in == NULL || keel_ctx_set_request_id(cx, in) != KEEL_OK) {
        char id[KEEL_UUID_SIZE];
        keel_err e = keel_uuid4(id);
        if (e != KEEL_OK)
            return e;
        e = keel_ctx_set_request_id(cx, id);
        KEEL_ASSERT(e == KEEL_OK);
    }
    keel_log_context saved;
    keel_log_context_save(&saved);
    keel_log_context_set_request_id(cx->request_id);
    keel_err e = keel_chain_next(cur, cx);
    keel_err h = keel__resp_header_set_static(cx, "X-Request-ID", cx->request_id);
    keel_log_context_restore(&saved);
    return e != KEEL_OK ? e : h;
}

keel_err keel_mw_request_id(keel_layer **out)
{
    return stateless_layer("request_id", request_id_call, out);
}

/* ------------------------------------------------------------ access log -- */

typedef struct access_layer {
    keel_layer base;
    keel_logger *log;
} access_layer;

static keel_err access_call(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    access_layer *al = (access_layer *)self;
    keel_ctx *cx = vcx;
    keel_err e = keel_chain_next(cur, cx);
    uint64_t ns = keel_time_mono_ns() - cx->start_ns;
    char pt[32];
    keel__format_seconds6(ns, pt);
    keel_err h = keel_resp_header_set(cx, "X-Process-Time", pt);
    int st = cx->status ? cx->status : 500;
    keel_log_level lv = st >= 500 ? KEEL_LOG_LEVEL_ERROR
                        : st >= 400 ? KEEL_LOG_LEVEL_WARNING
                                    : KEEL_LOG_LEVEL_INFO;
    if (keel_log_enabled(al->log, lv)) {
        /* duration rounded to the microsecond, so the formatter prints it without printf */
        double ms = (double)((ns + 500) / 1000) / 1000.0;
        keel_log_field f[5] = {KEEL_LF_STR("method", cx->method_name),
                               KEEL_LF_STR("path", cx->path), KEEL_LF_INT("status", st),
                               KEEL_LF_DOUBLE("duration_ms", ms),
                               KEEL_LF_STR("client_ip", cx->client_ip)};
        /* message "GET /path 200" assembled by hand (cheaper than three conversions) */
        char msg[256];
        size_t ml = strlen(cx->method_name), pl = strnlen(cx->path, sizeof(msg) - ml - 8);
        char *w = msg;
        memcpy(w, cx->method_name, ml);
        w += ml;
        *w++ = ' ';
        memcpy(w, cx->path, pl);
        w += pl;
        *w++ = ' ';
        keel__format_status(st, w);
        keel_log_write(al->log, lv, __FILE__, __LINE__, __func__, f, KEEL_ARRAY_LEN(f), "%s",
                       msg);
    }
    return e != KEEL_OK ? e : h;
}

keel_err keel_mw_access_log(keel_layer **out)
{
    access_layer *al = keel__layer_new(sizeof(*al), "access_log", access_call);
    if (al == NULL)
        return KEEL_ENOMEM;
    al->log = keel_logger_get("app.http.access");
    *out = &al->base;
    return KEEL_OK;
}

/* ----------------------------------------------------------- device info -- */

static const char device_key = 0;

static keel_err device_call(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    KEEL_UNUSED(self);
    keel_ctx *cx = vcx;
    keel_device_info *d = keel_arena_alloc(cx->arena, sizeof(*d), 0);
    if (d == NULL)
        return KEEL_ENOMEM;
    keel_device_headers h;
    h.user_agent = keel_str_c(keel_req_header(cx, "User-Agent"));
    h.sec_ch_ua = keel_str_c(keel_req_header(cx, "Sec-CH-UA"));
    h.sec_ch_ua_platform = keel_str_c(keel_req_header(cx, "Sec-CH-UA-Platform"));
    h.sec_ch_ua_mobile = keel_str_c(keel_req_header(cx, "Sec-CH-UA-Mobile"));
    h.sec_ch_ua_platform_version = keel_str_c(keel_req_header(cx, "Sec-CH-UA-Platform-Version"));
    h.x_app_version = keel_str_c(keel_req_header(cx, "X-App-Version"));
    keel_device_parse(&h, d);
    keel_err e = keel_ctx_set(cx, &device_key, d);
    if (e != KEEL_OK)
        return e;
    return keel_chain_next(cur, cx);
}

const struct keel_device_info *keel_ctx_device(const keel_ctx *cx)
{
    return keel_ctx_get(cx, &device_key);
}

keel_err keel_mw_device_info(keel_layer **out)
{
    return stateless_layer("device_info", device_call, out);
}

/* ------------------------------------------------------ security headers -- */

static keel_err security_call(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    KEEL_UNUSED(self);
    keel_ctx *cx = vcx;
    keel_err e = keel_chain_next(cur, cx);
    static const char *const h[][2] = {
        {"Strict-Transport-Security", "max-age=31536000; includeSubDomains"},
        {"X-Content-Type-Options", "nosniff"},
        {"X-Frame-Options", "DENY"},
        {"Referrer-Policy", "strict-origin-when-cross-origin"}};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(h); i++)
        if (keel_resp_get_header(cx, h[i][0]) == NULL &&
            keel__resp_header_static(cx, h[i][0], h[i][1]))
            return e != KEEL_OK ? e : KEEL_ENOMEM;
    return e;
}

keel_err keel_mw_security_headers(keel_layer **out)
{
    return stateless_layer("security_headers", security_call, out);
}

/* ------------------------------------------------------------- the chain -- */

void keel_http_chain_config_default(keel_http_chain_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->access_log = 1;
}

/* Append the layer that make() produced (or report make's error). */
static keel_err add(keel_chain *c, keel_err made, keel_layer **l)
{
    if (made != KEEL_OK)
        return made;
    keel_err e = keel_chain_add_take(c, *l);
    if (e != KEEL_OK && (*l)->dispose)
        (*l)->dispose(*l);
    *l = NULL;
    return e;
}

keel_err keel_http_chain_build(const keel_http_chain_config *cfg, keel_chain **out)
{
    keel_chain *c = NULL;
    keel_err e = keel_chain_create(&c);
    keel_layer *l = NULL;
    if (e == KEEL_OK && cfg->cors) {
        keel_err made = keel_mw_cors(cfg->cors, &l);
        e = add(c, made, &l);
    }
    if (e == KEEL_OK && cfg->metrics) {
        keel_err made = keel_mw_metrics(cfg->metrics, &l);
        e = add(c, made, &l);
    }
    if (e == KEEL_OK) {
        keel_err made = keel_mw_request_id(&l);
        e = add(c, made, &l);
    }
    if (e == KEEL_OK && cfg->access_log) {
        keel_err made = keel_mw_access_log(&l);
        e = add(c, made, &l);
    }
    if (e == KEEL_OK) {
        keel_err made = keel_mw_device_info(&l);
        e = add(c, made, &l);
    }
    if (e == KEEL_OK) {
        keel_err made = keel_mw_security_headers(&l);
        e = add(c, made, &l);
    }
    /* The slot layers are ours whatever happens: added (add() disposes on failure), or
     * disposed here when an earlier step failed. */
    int rl_handled = 0, auth_handled = 0;
    if (e == KEEL_OK && cfg->rate_limit) {
        l = cfg->rate_limit;
        rl_handled = 1;
        e = add(c, KEEL_OK, &l);
    }
    if (e == KEEL_OK && cfg->auth) {
        l = cfg->auth;
        auth_handled = 1;
        e = add(c, KEEL_OK, &l);
    }
    if (e != KEEL_OK) {
        if (cfg->rate_limit && !rl_handled && cfg->rate_limit->dispose)
            cfg->rate_limit->dispose(cfg->rate_limit);
        if (cfg->auth && !auth_handled && cfg->auth->dispose)
            cfg->auth->dispose(cfg->auth);
        keel_chain_destroy(c);
        return e;
    }
    *out = c;
    return KEEL_OK;
}
