/* idem_http.c - the Idempotency-Key protocol for HTTP handlers (keel_idem_http_*). */
#include "keel_int.h"

#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include <keel/idempotency.h>
#include <keel/payment.h>

struct keel_idem_http {
    keel_idem *policy;
    keel_chain *chain;
};

typedef struct http_call {
    keel_ctx *cx;
    keel_str scope, key;
    keel_buf payload;
    keel_handler_fn fn;
    void *ud;
    keel_err handler_err;
    int replayed;
} http_call;

#define MISMATCH_TYPE "https://keel.dev/problems/idempotency-key-mismatch"

/* Key of the request slot holding the parsed Idempotency-Key (a NUL-terminated arena copy). */
static const char key_slot = 0;

const char *keel_idem_http_key(const keel_ctx *cx)
{
    return cx != NULL ? keel_ctx_get(cx, &key_slot) : NULL;
}

static keel_str h_scope(const keel_call *c, void *ud)
{
    (void)ud;
    return ((const http_call *)c->user)->scope;
}

static keel_str h_key(const keel_call *c, void *ud)
{
    (void)ud;
    return ((const http_call *)c->user)->key;
}

static keel_str h_payload(const keel_call *c, void *ud)
{
    (void)ud;
    const http_call *hc = c->user;
    return (keel_str){hc->payload.ptr ? hc->payload.ptr : "", hc->payload.len};
}

/* Stored form: "<status> <content type or ->\n<body>". */
static keel_err h_save(const keel_call *c, keel_err e, keel_buf *out, void *ud)
{
    (void)ud;
    (void)e;
    const http_call *hc = c->user;
    const char *ct = NULL;
    keel_str body = keel_resp_get_body(hc->cx, &ct);
    keel_err r = keel_buf_appendf(out, "%d %s\n", keel_resp_get_status(hc->cx), ct ? ct : "-");
    return r != KEEL_OK ? r : keel_buf_append(out, body.ptr, body.len);
}

static keel_err h_replay(keel_call *c, keel_err e, keel_str stored, void *ud)
{
    (void)ud;
    http_call *hc = c->user;
    const char *nl = memchr(stored.ptr, '\n', stored.len);
    char head[192];
    size_t hl = nl ? (size_t)(nl - stored.ptr) : 0;
    if (e != KEEL_OK || nl == NULL || hl >= sizeof(head))
        return KEEL_EPARSE;
    memcpy(head, stored.ptr, hl);
    head[hl] = '\0';
    char *sp = strchr(head, ' '), *end;
    long status = strtol(head, &end, 10);
    if (sp == NULL || end != sp || status < 100 || status > 599)
        return KEEL_EPARSE;
    const char *ct = strcmp(sp + 1, "-") == 0 ? NULL : sp + 1;
    keel_err r = keel_resp_body(hc->cx, (int)status, ct, nl + 1,
                                stored.len - hl - 1);
    if (r == KEEL_OK)
        r = keel_resp_header_set(hc->cx, "Idempotent-Replayed", "true");
    hc->replayed = 1;
    return r;
}

static keel_err h_terminal(void *cxv, void *ud)
{
    (void)ud;
    keel_call *c = cxv;
    http_call *hc = c->user;
    hc->handler_err = hc->fn(hc->cx, hc->ud);
    int st = keel_resp_get_status(hc->cx);
    if (hc->handler_err != KEEL_OK || st == 0 || st == 429 || st == 502 || st == 503 ||
        st == 504) {
        c->retriable = 1; /* "try again" answers release the slot */
        return KEEL_EAGAIN;
    }
    c->retriable = 0;
    return KEEL_OK;
}

keel_err keel_idem_http_create(keel_idem_http **out, keel_idem_store *store,
                               const keel_idem_config *cfg, keel_diag *diag)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL)
        return KEEL_EINVAL;
    keel_idem_http *h = keel_calloc(1, sizeof(*h));
    if (h == NULL)
        return KEEL_ENOMEM;
    keel_idem_binding b = {h_scope, h_key, h_payload, h_save, h_replay, NULL};
    keel_layer *l = NULL;
    keel_err e;
    if ((e = keel_idem_create(&h->policy, store, &b, cfg, diag)) != KEEL_OK ||
        (e = keel_chain_create(&h->chain)) != KEEL_OK ||
        (e = keel_idem_layer(h->policy, &l)) != KEEL_OK ||
        (e = keel_chain_add_take(h->chain, l)) != KEEL_OK) {
        keel_idem_http_destroy(h);
        return e;
    }
    *out = h;
    return KEEL_OK;
}

void keel_idem_http_destroy(keel_idem_http *h)
{
    if (h == NULL)
        return;
    keel_chain_destroy(h->chain);
    keel_idem_destroy(h->policy);
    keel_free(h);
}

keel_idem *keel_idem_http_policy(keel_idem_http *h)
{
    return h ? h->policy : NULL;
}

static int append_json(const char *p, size_t n, void *ud)
{
    return keel_buf_append(ud, p, n) == KEEL_OK ? 0 : -1;
}

/* method SP route LF canonical-body */
static keel_err build_payload(keel_ctx *cx, keel_buf *out)
{
    const char *route = keel_req_route(cx);
    keel_err e = keel_buf_appendf(out, "%s %s\n", keel_req_method_name(cx),
                                  route ? route : keel_req_path(cx));
    if (e != KEEL_OK)
        return e;
    keel_str body = keel_req_body(cx);
    if (body.len == 0)
        return KEEL_OK;
    json_t *j = json_loadb(body.ptr, body.len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL) {
        size_t mark = out->len;
        int r = json_dump_callback(j, append_json, out,
                                   JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        json_decref(j);
        if (r == 0)
            return KEEL_OK;
        out->len = mark; /* fall back to the raw bytes */
        if (out->ptr != NULL)
            out->ptr[mark] = '\0';
    }
    return keel_buf_append(out, body.ptr, body.len);
}

keel_err keel_idem_http_handle(keel_idem_http *h, keel_ctx *cx, keel_str scope, int require_key,
                               keel_handler_fn fn, void *ud)
{
    if (h == NULL || cx == NULL || fn == NULL)
        return KEEL_EINVAL;
    const char *raw = keel_req_header(cx, "Idempotency-Key");
    if (raw == NULL) {
        if (require_key)
            return keel_resp_problem(cx, 400, "Idempotency-Key required",
                                     "This operation requires an Idempotency-Key header "
                                     "(1-255 printable ASCII characters).",
                                     NULL);
        return fn(cx, ud);
    }
    http_call hc;
    memset(&hc, 0, sizeof(hc));
    keel_diag d;
    memset(&d, 0, sizeof(d));
    if (keel_idem_key_parse(keel_str_c(raw), &hc.key, &d) != KEEL_OK)
        return keel_resp_problem(cx, 400, "Invalid Idempotency-Key", d.msg, NULL);
    if (scope.len > KEEL_IDEM_SCOPE_MAX)
        return keel_resp_problem(cx, 400, "Invalid caller scope", "caller id too long", NULL);
    /* The handler forwards the parsed key (quotes of the RFC 8941 form removed), not the
     * header, to whatever it calls downstream. */
    char *key = keel_arena_alloc(keel_ctx_arena(cx), hc.key.len + 1, 1);
    if (key == NULL)
        return KEEL_ENOMEM;
    memcpy(key, hc.key.ptr, hc.key.len);
    key[hc.key.len] = '\0';
    keel_err e = keel_ctx_set(cx, &key_slot, key);
    if (e != KEEL_OK)
        return e;
    hc.cx = cx;
    hc.scope = scope;
    hc.fn = fn;
    hc.ud = ud;
    keel_buf_init(&hc.payload, 8u << 20);
    e = build_payload(cx, &hc.payload);
    if (e != KEEL_OK) {
        keel_buf_cleanup(&hc.payload);
        return e;
    }
    keel_call call;
    keel_call_init(&call, "http", &hc);
    e = keel_chain_run(h->chain, &call, h_terminal, NULL);
    keel_buf_cleanup(&hc.payload);
    switch (e) {
    case KEEL_OK:
        return KEEL_OK;
    case KEEL_EAGAIN: /* the handler's own "try again" response, slot released */
        return hc.handler_err;
    case KEEL_EPAY_IDEMPOTENCY_CONFLICT:
        return keel_resp_problem_typed(
            cx, 422, MISMATCH_TYPE, "Idempotency key reused",
            "Keys for idempotent requests can only be used with the same parameters they were "
            "first used with. Use a new key for a different request.",
            NULL);
    case KEEL_EPAY_IN_FLIGHT:
        if ((e = keel_resp_header_set(cx, "Retry-After", "1")) != KEEL_OK)
            return e;
        return keel_resp_problem(cx, 409, "Request in progress",
                                 "A request with the same Idempotency-Key is still being "
                                 "processed; retry later with the same key.",
                                 NULL);
    default:
        if (hc.replayed)
            return e;
        return keel_resp_problem(cx, 503, "Idempotency store unavailable",
                                 "The request was not processed; retry with the same key.",
                                 NULL);
    }
}
