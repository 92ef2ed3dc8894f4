/* trace_mw.c - the HTTP tracing layer: one SERVER span per request, continuing
 * the caller's W3C trace when a valid traceparent arrives. */
#include "keel_int.h"

#include <keel/http.h>
#include <keel/trace.h>

#include "trace_int.h"

typedef struct trace_layer {
    keel_layer base;
    keel_trace_mw_config cfg;
} trace_layer;

void keel_trace_mw_config_default(keel_trace_mw_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->size = sizeof *cfg;
    cfg->trust_incoming = 1;
    cfg->echo_traceparent = 1;
    static const char *const probes[] = {"/health/live", "/health/ready", "/metrics",
                                         "/metrics/{prefix}", NULL};
    cfg->skip_routes = probes;
}

static int skipped(const trace_layer *tl, const char *route)
{
    if (tl->cfg.skip_routes == NULL || route == NULL)
        return 0;
    for (const char *const *r = tl->cfg.skip_routes; *r != NULL; r++)
        if (strcmp(*r, route) == 0)
            return 1;
    return 0;
}

/* Tracing must never fail a request: when the span cannot be created (out of memory, no
 * randomness) the rest of the chain runs untraced. */
static keel_err trace_call(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    trace_layer *tl = (trace_layer *)self;
    keel_ctx *cx = vcx;
    if (skipped(tl, keel_req_route(cx)))
        return keel_chain_next(cur, cx);
    keel_span_context parent;
    int have_parent = 0;
    const char *tracestate = NULL;
    if (tl->cfg.trust_incoming) {
        const char *tp = keel_req_header(cx, "traceparent");
        if (tp != NULL && keel_traceparent_parse(keel_str_c(tp), &parent, NULL) == KEEL_OK) {
            have_parent = 1;
            /* W3C: tracestate is only meaningful together with a valid traceparent */
            tracestate = keel_req_header(cx, "tracestate");
        }
    }
    const char *method = keel_req_method_name(cx);
    const char *route = keel_req_route(cx);
    const char *name = keel_arena_sprintf(keel_ctx_arena(cx), "%s %s", method, route);
    keel_span *sp = NULL;
    if (keel_span_start_with_parent(&sp, name ? name : method, KEEL_SPAN_SERVER,
                                    have_parent ? &parent : NULL, tracestate) != KEEL_OK)
        return keel_chain_next(cur, cx);
    (void)keel_span_set_str(sp, "http.method", method);
    (void)keel_span_set_str(sp, "http.route", route);
    (void)keel_span_push(sp);

    keel_err e = keel_chain_next(cur, cx);

    int status = keel_resp_get_status(cx);
    if (status == 0 && e != KEEL_OK)
        status = 500; /* what the server will answer */
    (void)keel_span_set_int(sp, "http.status_code", status);
    const char *rid = keel_req_id(cx);
    if (rid != NULL && rid[0] != '\0')
        (void)keel_span_set_str(sp, "http.request_id", rid);
    if (e != KEEL_OK)
        (void)keel_span_record_error(sp, e, NULL);
    else if (status >= 500)
        keel_span_set_status(sp, KEEL_SPAN_STATUS_ERROR, keel_http_reason(status));
    keel_err h = KEEL_OK;
    if (tl->cfg.echo_traceparent) {
        char tp[KEEL_TRACEPARENT_SIZE];
        keel_span_traceparent(sp, tp);
        h = keel_resp_header_set(cx, "traceparent", tp);
    }
    keel_span_end(sp); /* also pops it from this thread's current-span stack */
    return e != KEEL_OK ? e : h;
}

keel_err keel_mw_trace(const keel_trace_mw_config *cfg, keel_layer **out)
{
    if (out == NULL)
        return KEEL_EINVAL;
    trace_layer *tl = keel__layer_new(sizeof(*tl), "trace", trace_call);
    if (tl == NULL)
        return KEEL_ENOMEM;
    if (cfg != NULL && cfg->size >= sizeof tl->cfg)
        tl->cfg = *cfg;
    else
        keel_trace_mw_config_default(&tl->cfg);
    *out = &tl->base;
    return KEEL_OK;
}
