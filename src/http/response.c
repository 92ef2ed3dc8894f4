/* response.c - request accessors, response building, the success envelope and
 * RFC 9457 problem details. */
#include "ctx.h"

#include <stdio.h>

/* ------------------------------------------------------------- request -- */

keel_method keel_req_method(const keel_ctx *cx)
{
    return cx->method;
}

const char *keel_req_method_name(const keel_ctx *cx)
{
    return cx->method_name;
}

const char *keel_req_path(const keel_ctx *cx)
{
    return cx->path;
}

const char *keel_req_route(const keel_ctx *cx)
{
    return cx->match.route ? cx->match.route : "<unmatched>";
}

const char *keel_req_header(const keel_ctx *cx, const char *name)
{
    return cx->conn ? MHD_lookup_connection_value(cx->conn, MHD_HEADER_KIND, name) : NULL;
}

const char *keel_req_query(const keel_ctx *cx, const char *name)
{
    if (cx->conn == NULL)
        return NULL;
    const char *v = MHD_lookup_connection_value(cx->conn, MHD_GET_ARGUMENT_KIND, name);
    if (v == NULL) {
        /* Present without a value ("?flag") is reported by MHD as a NULL value. */
        const char *out = NULL;
        if (MHD_lookup_connection_value_n(cx->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name),
                                          &out, NULL) == MHD_YES)
            return out ? out : "";
    }
    return v;
}

const char *keel_req_param(const keel_ctx *cx, const char *name)
{
    keel_str n = keel_str_c(name);
    for (size_t i = 0; i < cx->match.nparams; i++) {
        if (keel_str_eq(cx->match.names[i], n)) {
            /* Parameters are slices of the path; copy on first use into the arena. */
            keel_ctx *m = (keel_ctx *)(uintptr_t)cx;
            return keel_arena_strndup(m->arena, cx->match.values[i].ptr,
                                      cx->match.values[i].len);
        }
    }
    return NULL;
}

keel_str keel_req_body(const keel_ctx *cx)
{
    keel_str s = {cx->body.ptr ? cx->body.ptr : "", cx->body.len};
    return s;
}

const char *keel_req_client_ip(const keel_ctx *cx)
{
    return cx->client_ip;
}

const char *keel_req_id(const keel_ctx *cx)
{
    return cx->request_id;
}

uint64_t keel_req_start_ns(const keel_ctx *cx)
{
    return cx->start_ns;
}

int keel_req_is_preflight(const keel_ctx *cx)
{
    return cx->preflight;
}

keel_arena *keel_ctx_arena(keel_ctx *cx)
{
    return cx->arena;
}

keel_err keel_ctx_set(keel_ctx *cx, const void *key, void *value)
{
    for (size_t i = 0; i < KEEL__CTX_SLOTS; i++) {
        if (cx->slot_keys[i] == key || cx->slot_keys[i] == NULL) {
            cx->slot_keys[i] = key;
            cx->slot_vals[i] = value;
            return KEEL_OK;
        }
    }
    return KEEL_EFULL;
}

void *keel_ctx_get(const keel_ctx *cx, const void *key)
{
    for (size_t i = 0; i < KEEL__CTX_SLOTS && cx->slot_keys[i]; i++)
        if (cx->slot_keys[i] == key)
            return cx->slot_vals[i];
    return NULL;
}

keel_err keel_ctx_defer(keel_ctx *cx, void (*fn)(void *arg), void *arg)
{
    if (cx == NULL || fn == NULL)
        return KEEL_EINVAL;
    ctx_defer *d = keel_arena_alloc(cx->arena, sizeof(*d), _Alignof(ctx_defer));
    if (d == NULL)
        return KEEL_ENOMEM;
    d->fn = fn;
    d->arg = arg;
    d->next = cx->defers;
    cx->defers = d;
    return KEEL_OK;
}

void keel__ctx_run_defers(keel_ctx *cx)
{
    while (cx->defers != NULL) {
        ctx_defer *d = cx->defers;
        cx->defers = d->next; /* a callback may defer more: they run too */
        d->fn(d->arg);
    }
}

/* [A-Za-z0-9._:-] */
static const unsigned char id_char[256] = {
    ['-'] = 1, ['.'] = 1, [':'] = 1, ['_'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

int keel__request_id_sane(const char *s)
{
    size_t n = 0;
    while (n <= KEEL__REQUEST_ID_MAX && id_char[(unsigned char)s[n]])
        n++;
    return n > 0 && n <= KEEL__REQUEST_ID_MAX && s[n] == '\0';
}

keel_err keel_ctx_set_request_id(keel_ctx *cx, const char *id)
{
    if (id == NULL || !keel__request_id_sane(id))
        return KEEL_EINVAL;
    size_t n = strlen(id);
    memcpy(cx->request_id, id, n + 1);
    return KEEL_OK;
}

/* ------------------------------------------------------------ response -- */

void keel_resp_status(keel_ctx *cx, int status)
{
    cx->status = status;
}

int keel_resp_get_status(const keel_ctx *cx)
{
    return cx->status;
}

static int header_safe(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return 0;
    return 1;
}

keel_err keel_resp_header(keel_ctx *cx, const char *name, const char *value)
{
    if (name == NULL || value == NULL || name[0] == '\0' || !header_safe(name) ||
        !header_safe(value) || strchr(name, ':') != NULL)
        return KEEL_EINVAL;
    resp_header *h = keel_arena_alloc(cx->arena, sizeof(*h), 0);
    if (h == NULL || (h->name = keel_arena_strdup(cx->arena, name)) == NULL ||
        (h->value = keel_arena_strdup(cx->arena, value)) == NULL)
        return KEEL_ENOMEM;
    h->next = cx->headers;
    cx->headers = h;
    return KEEL_OK;
}

keel_err keel__resp_header_static(keel_ctx *cx, const char *name, const char *value)
{
    resp_header *h = keel_arena_alloc(cx->arena, sizeof(*h), 0);
    if (h == NULL)
        return KEEL_ENOMEM;
    h->name = name;
    h->value = value;
    h->next = cx->headers;
    cx->headers = h;
    return KEEL_OK;
}

static void header_remove(keel_ctx *cx, const char *name)
{
    for (resp_header **pp = &cx->headers; *pp;) {
        if (strcasecmp((*pp)->name, name) == 0)
            *pp = (*pp)->next;
        else
            pp = &(*pp)->next;
    }
}

keel_err keel__resp_header_set_static(keel_ctx *cx, const char *name, const char *value)
{
    header_remove(cx, name);
    return keel__resp_header_static(cx, name, value);
}

keel_err keel_resp_header_set(keel_ctx *cx, const char *name, const char *value)
{
    header_remove(cx, name);
    return keel_resp_header(cx, name, value);
}

const char *keel_resp_get_header(const keel_ctx *cx, const char *name)
{
    for (const resp_header *h = cx->headers; h; h = h->next)
        if (strcasecmp(h->name, name) == 0)
            return h->value;
    return NULL;
}

keel_str keel_resp_get_body(const keel_ctx *cx, const char **content_type)
{
    if (content_type != NULL)
        *content_type = cx ? cx->content_type : NULL;
    if (cx == NULL || cx->body_ptr == NULL)
        return (keel_str){"", 0};
    return (keel_str){cx->body_ptr, cx->body_len};
}

keel_err keel_resp_body(keel_ctx *cx, int status, const char *content_type, const void *data,
                        size_t len)
{
    char *copy = keel_arena_alloc(cx->arena, len ? len : 1, 1);
    const char *ct = content_type ? keel_arena_strdup(cx->arena, content_type) : NULL;
    if (copy == NULL || (content_type != NULL && ct == NULL))
        return KEEL_ENOMEM;
    if (len)
        memcpy(copy, data, len);
    cx->body_ptr = copy;
    cx->body_len = len;
    cx->content_type = ct;
    cx->status = status;
    return KEEL_OK;
}

/* Serialise v compactly into arena memory. */
static keel_err dump_json(keel_ctx *cx, const json_t *v, char **out, size_t *len)
{
    size_t guess = 256;
    char *buf = keel_arena_alloc(cx->arena, guess, 1);
    if (buf == NULL)
        return KEEL_ENOMEM;
    size_t n = json_dumpb(v, buf, guess, JSON_COMPACT | JSON_ENCODE_ANY);
    if (n == 0)
        return KEEL_EINVAL;
    if (n > guess) {
        if ((buf = keel_arena_alloc(cx->arena, n, 1)) == NULL)
            return KEEL_ENOMEM;
        if (json_dumpb(v, buf, n, JSON_COMPACT | JSON_ENCODE_ANY) != n)
            return KEEL_EINVAL;
    }
    *out = buf;
    *len = n;
    return KEEL_OK;
}

keel_err keel_resp_json(keel_ctx *cx, int status, json_t *value)
{
    char *s;
    size_t n;
    keel_err e = value ? dump_json(cx, value, &s, &n) : KEEL_EINVAL;
    json_decref(value);
    if (e != KEEL_OK)
        return e;
    cx->body_ptr = s;
    cx->body_len = n;
    cx->content_type = "application/json";
    cx->status = status;
    return KEEL_OK;
}

static json_t *meta_object(const keel_ctx *cx, int success)
{
    char ts[KEEL_TIME_ISO8601_SIZE];
    keel_time_iso8601(keel_time_wall_ms(), ts);
    return json_pack("{s:s, s:b, s:s?}", "timestamp", ts, "success", success, "request_id",
                     cx->request_id[0] ? cx->request_id : NULL);
}

static char *put(char *w, const char *s, size_t n)
{
    memcpy(w, s, n);
    return w + n;
}

static keel_err envelope(keel_ctx *cx, int status, const char *ds, size_t dn,
                         const json_t *meta_ext);

keel_err keel_resp_success(keel_ctx *cx, int status, json_t *data, const json_t *meta_ext)
{
    if (data == NULL)
        data = json_null();
    char *ds;
    size_t dn;
    keel_err e = dump_json(cx, data, &ds, &dn);
    json_decref(data);
    if (e != KEEL_OK)
        return e;
    return envelope(cx, status, ds, dn, meta_ext);
}

keel_err keel_resp_success_raw(keel_ctx *cx, int status, const char *json, size_t len)
{
    if (json == NULL || len == 0)
        return KEEL_EINVAL;
    return envelope(cx, status, json, len, NULL);
}

static keel_err envelope(keel_ctx *cx, int status, const char *ds, size_t dn,
                         const json_t *meta_ext)
{
    keel_err e;
    char *meta;
    size_t mn;
    char ts[KEEL_TIME_ISO8601_SIZE];
    if (meta_ext == NULL) {
        /* The hot path: the request id is restricted to [A-Za-z0-9._:-] by the request-id
         * layer and the timestamp is fixed-format, so no escaping is needed. */
        keel_time_iso8601(keel_time_wall_ms(), ts);
        size_t idn = strlen(cx->request_id);
        meta = keel_arena_alloc(cx->arena, 96 + idn, 1);
        if (meta == NULL)
            return KEEL_ENOMEM;
        char *w = meta;
        w = put(w, "{\"timestamp\":\"", 14);
        w = put(w, ts, 24);
        w = put(w, "\",\"success\":true,\"request_id\":", 30);
        if (idn) {
            *w++ = '"';
            w = put(w, cx->request_id, idn);
            *w++ = '"';
        } else {
            w = put(w, "null", 4);
        }
        *w++ = '}';
        mn = (size_t)(w - meta);
    } else {
        json_t *m = meta_object(cx, 1);
        if (m == NULL)
            return KEEL_ENOMEM;
        json_object_update(m, (json_t *)(uintptr_t)meta_ext);
        e = dump_json(cx, m, &meta, &mn);
        json_decref(m);
        if (e != KEEL_OK)
            return e;
    }
    size_t n = 8 + dn + 8 + mn + 1;
    char *body = keel_arena_alloc(cx->arena, n, 1);
    if (body == NULL)
        return KEEL_ENOMEM;
    char *w = put(body, "{\"data\":", 8);
    w = put(w, ds, dn);
    w = put(w, ",\"meta\":", 8);
    w = put(w, meta, mn);
    *w++ = '}';
    KEEL_ASSERT((size_t)(w - body) == n);
    cx->body_ptr = body;
    cx->body_len = n;
    cx->content_type = "application/json";
    cx->status = status;
    return KEEL_OK;
}

keel_err keel_resp_problem_typed(keel_ctx *cx, int status, const char *type, const char *title,
                                 const char *detail, json_t *errors)
{
    if (type == NULL) {
        json_decref(errors);
        return KEEL_EINVAL;
    }
    json_t *meta = meta_object(cx, 0);
    if (errors == NULL)
        errors = json_array();
    /* json_pack fails on OOM and on strings that are not UTF-8 (a caller bug: title and
     * detail are ours, never client bytes); the "o" arguments are released either way. */
    json_t *p = json_pack("{s:s, s:s, s:i, s:s?, s:s, s:o, s:o}", "type", type, "title",
                          title ? title : keel_http_reason(status), "status", status, "detail",
                          detail, "instance", cx->path ? cx->path : "", "errors", errors, "meta",
                          meta);
    if (p == NULL)
        return KEEL_EINVAL;
    char *s;
    size_t n;
    keel_err e = dump_json(cx, p, &s, &n);
    json_decref(p);
    if (e != KEEL_OK)
        return e;
    cx->body_ptr = s;
    cx->body_len = n;
    cx->content_type = "application/problem+json";
    cx->status = status;
    return KEEL_OK;
}

keel_err keel_resp_problem(keel_ctx *cx, int status, const char *title, const char *detail,
                           json_t *errors)
{
    char type[48];
    snprintf(type, sizeof(type), "https://httpstatuses.io/%d", status);
    return keel_resp_problem_typed(cx, status, type, title, detail, errors);
}

const char *keel_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
