/* payments.c - POST /api/v1/payments: charge a payment token through the gateway.
 *
 * The request runs under the Idempotency-Key protocol (required: a payment must never be
 * created twice by a client retry), and the gateway call under the seed's resilience stack:
 * circuit breaker -> retry (retriable payment errors only: a decline is never retried) ->
 * timer.  The gateway is the sandbox gateway (keel/gateway.h): a real adapter (Stripe, Adyen)
 * plugs in through the same keel_gateway interface.  The idempotency key, scoped, is
 * forwarded to the gateway, so even a takeover of an abandoned in-flight key cannot charge
 * twice.  With ENVIRONMENT=test, /_test/gateway lets the integration tests count gateway
 * calls and inject faults. */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/breaker.h>
#include <keel/gateway.h>
#include <keel/idempotency.h>
#include <keel/payment.h>
#include <keel/retry.h>
#include <keel/timer.h>
#include <keel/validate.h>

#include "../routes.h"
#include "payments.h"

typedef struct payments {
    keel_store *store;
    keel_sandbox *sandbox;
    keel_gateway *gw;
    keel_idem_store *idem_store;
    keel_idem_http *idem;
    keel_breaker *breaker;
    keel_retry *retry;
    keel_timer *timer;
    keel_chain *chain;
} payments;

static payments P;

typedef struct charge_call {
    keel_charge_request req;
    keel_charge_result res;
    keel_pay_failure fail;
    int capture;
} charge_call;

/* One capture / void / refund through the chain (keeld_gateway_call). */
typedef struct gateway_op_call {
    keel_gateway_op op;
    const void *req;
    void *out;
    keel_pay_failure *fail;
} gateway_op_call;

/* The protected operation: authorize, then capture unless asked not to.  The capture reuses
 * the idempotency key (suffixed) so a retried capture is deduplicated at the gateway too. */
static keel_err gateway_charge(void *cx, void *ud)
{
    (void)ud;
    keel_call *call = cx;
    charge_call *cc = call->user;
    keel_err e = keel_gateway_authorize(P.gw, &cc->req, &cc->res, &cc->fail);
    if (e == KEEL_OK && cc->capture) {
        char key[KEEL_GATEWAY_IDEM_KEY_MAX + 16];
        snprintf(key, sizeof(key), "%.*s:capture", KEEL_GATEWAY_IDEM_KEY_MAX - 9,
                 cc->req.idempotency_key);
        char charge_id[KEEL_GATEWAY_ID_MAX]; /* the result is cleared before the call */
        memcpy(charge_id, cc->res.charge_id, sizeof(charge_id));
        keel_capture_request cap = {charge_id, 0, key};
        e = keel_gateway_capture(P.gw, &cap, &cc->res, &cc->fail);
    }
    if (e != KEEL_OK && keel_pay_err_is_payment(e)) {
        call->retriable = keel_pay_err_retriable(e);
        call->retry_after_ms = cc->fail.retry_after_ms;
    }
    return e;
}

static keel_err gateway_op(void *cx, void *ud)
{
    (void)ud;
    keel_call *call = cx;
    gateway_op_call *g = call->user;
    keel_err e;
    switch (g->op) {
    case KEEL_GATEWAY_CAPTURE:
        e = keel_gateway_capture(P.gw, g->req, g->out, g->fail);
        break;
    case KEEL_GATEWAY_VOID:
        e = keel_gateway_void(P.gw, g->req, g->out, g->fail);
        break;
    case KEEL_GATEWAY_REFUND:
        e = keel_gateway_refund(P.gw, g->req, g->out, g->fail);
        break;
    default:
        return KEEL_EINVAL;
    }
    if (e != KEEL_OK && keel_pay_err_is_payment(e)) {
        call->retriable = keel_pay_err_retriable(e);
        call->retry_after_ms = g->fail->retry_after_ms;
    }
    return e;
}

keel_err keeld_gateway_call(keel_gateway_op op, const void *req, void *out,
                            keel_pay_failure *fail)
{
    keel_pay_failure scratch;
    if (fail == NULL)
        fail = &scratch;
    memset(fail, 0, sizeof(*fail));
    if (P.chain == NULL || req == NULL)
        return KEEL_ESTATE;
    keel_call call;
    if (op == KEEL_GATEWAY_AUTHORIZE) {
        charge_call cc;
        memset(&cc, 0, sizeof(cc));
        cc.req = *(const keel_charge_request *)req;
        keel_call_init(&call, "payments.authorize", &cc);
        keel_err e = keel_chain_run(P.chain, &call, gateway_charge, NULL);
        if (out != NULL)
            *(keel_charge_result *)out = cc.res;
        *fail = cc.fail;
        return e;
    }
    gateway_op_call g = {op, req, out, fail};
    keel_call_init(&call, op == KEEL_GATEWAY_CAPTURE ? "payments.capture"
                          : op == KEEL_GATEWAY_VOID  ? "payments.void"
                                                     : "payments.refund",
                   &g);
    return keel_chain_run(P.chain, &call, gateway_op, NULL);
}

keel_idem_store *keeld_payments_idem_store(void)
{
    return P.idem_store;
}

static const keel_schema_field charge_fields[] = {
    {.name = "amount", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 1,
     .max_len = 32},
    {.name = "currency", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 3,
     .max_len = 3},
    {.name = "payment_token", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED,
     .min_len = 1, .max_len = KEEL_GATEWAY_ID_MAX - 1},
    {.name = "description", .type = KEEL_SCHEMA_STRING, .max_len = KEEL_GATEWAY_DESC_MAX - 1},
    {.name = "capture", .type = KEEL_SCHEMA_BOOL},
};
static const keel_schema charge_schema = {
    charge_fields, sizeof(charge_fields) / sizeof(charge_fields[0]), 0};

static keel_err field_problem(keel_ctx *cx, const char *field, const char *msg, const char *type)
{
    return keel_resp_problem(cx, 422, NULL, "The request body is invalid.",
                             json_pack("[{s:[s,s], s:s, s:s}]", "loc", "body", field, "msg", msg,
                                       "type", type));
}

keel_err keeld_payment_problem(keel_ctx *cx, keel_err e, const keel_pay_failure *f)
{
    if (e == KEEL_EOPEN || e == KEEL_EAGAIN) {
        (void)keel_resp_header_set(cx, "Retry-After", "30");
        return keel_resp_problem(cx, 503, NULL,
                                 "The payment gateway is unavailable; retry later with the same "
                                 "Idempotency-Key.",
                                 NULL);
    }
    if (!keel_pay_err_is_payment(e)) {
        KEEL_LOG_ERROR(keel_logger_get("app.payments"), "charge failed: %s (%s)",
                       keel_err_name(e), f->message[0] ? f->message : "-");
        return keel_resp_problem(cx, 500, NULL, "The payment could not be processed.", NULL);
    }
    char type[128];
    snprintf(type, sizeof(type), "https://keel.dev/problems/%s", keel_pay_err_type(e));
    json_t *errors = json_array();
    if (f->decline_code[0])
        json_array_append_new(errors, json_pack("{s:s}", "decline_code", f->decline_code));
    if (e == KEEL_EPAY_RATE_LIMITED || keel_pay_err_retriable(e))
        (void)keel_resp_header_set(cx, "Retry-After", "1");
    return keel_resp_problem_typed(cx, keel_pay_err_http_status(e), type, NULL,
                                   keel_strerror(e), errors);
}

static keel_err record_payment(const charge_call *cc, keel_diag *d)
{
    keel_db *db;
    keel_err e = keel_db_acquire(P.store, &db, d);
    if (e != KEEL_OK)
        return e;
    keel_stmt *st;
    const char *desc = cc->req.description;
    if ((e = keel_db_prepare(db,
                             "INSERT INTO payments (charge_id, status, amount_minor, currency, "
                             "description, created_at_ms) VALUES (?, ?, ?, ?, ?, ?) "
                             "ON CONFLICT (charge_id) DO NOTHING",
                             &st, d)) == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 1, cc->res.charge_id, SIZE_MAX)) == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 2, keel_charge_status_name(cc->res.status), SIZE_MAX)) ==
            KEEL_OK &&
        (e = keel_stmt_bind_int64(st, 3, cc->res.amount)) == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 4, cc->req.currency->code, SIZE_MAX)) == KEEL_OK &&
        (e = (desc ? keel_stmt_bind_text(st, 5, desc, SIZE_MAX) : keel_stmt_bind_null(st, 5))) ==
            KEEL_OK &&
        (e = keel_stmt_bind_int64(st, 6, keel_time_wall_ms())) == KEEL_OK) {
        int r;
        while ((r = keel_stmt_step(st, d)) == 1) {
        }
        if (r < 0)
            e = (keel_err)r;
    }
    keel_db_release(db);
    return e;
}

/* Validate the parsed body into cc, charge, record, answer. */
static keel_err charge_body(keel_ctx *cx, json_t *body, charge_call *cc)
{
    const char *amount = json_string_value(json_object_get(body, "amount"));
    const char *currency = json_string_value(json_object_get(body, "currency"));
    json_t *capture = json_object_get(body, "capture");
    cc->capture = capture == NULL || json_is_true(capture);
    cc->req.currency = keel_currency_find(keel_str_c(currency));
    cc->req.payment_token = json_string_value(json_object_get(body, "payment_token"));
    if (cc->req.currency == NULL)
        return field_problem(cx, "currency", "Input should be an ISO 4217 currency code",
                             "currency");
    keel_diag d;
    memset(&d, 0, sizeof(d));
    if (keel_money_parse(keel_str_c(amount), cc->req.currency, 0, &cc->req.amount, &d) !=
            KEEL_OK ||
        cc->req.amount <= 0)
        return field_problem(cx, "amount", d.msg[0] ? d.msg : "amount must be greater than zero",
                             "decimal_parsing");
    char key[KEEL_GATEWAY_IDEM_KEY_MAX];
    const char *ik = keel_idem_http_key(cx); /* the route requires one */
    snprintf(key, sizeof(key), "%s", ik != NULL ? ik : "");
    cc->req.idempotency_key = key;

    keel_call call;
    keel_call_init(&call, "payments.charge", cc);
    keel_err e = keel_chain_run(P.chain, &call, gateway_charge, NULL);
    if (e != KEEL_OK)
        return keeld_payment_problem(cx, e, &cc->fail);
    if ((e = record_payment(cc, &d)) != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    char amt[KEEL_MONEY_STR_MAX + 1];
    keel_money_format(cc->res.amount, cc->req.currency, amt, sizeof(amt));
    char avs[2] = {cc->res.avs_result, 0}, cvv[2] = {cc->res.cvv_result, 0};
    json_t *data = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s?, s:s, s:s}", "id",
                             cc->res.charge_id, "status", keel_charge_status_name(cc->res.status),
                             "amount", amt, "amount_minor", (json_int_t)cc->res.amount,
                             "currency", cc->req.currency->code, "description",
                             cc->req.description, "avs_result", avs, "cvv_result", cvv);
    return keel_resp_success(cx, 201, data, NULL);
}

static keel_err h_charge_inner(keel_ctx *cx, void *ud)
{
    (void)ud;
    json_t *body;
    if (keel_req_json(cx, &charge_schema, &body) != KEEL_OK)
        return KEEL_OK; /* the 4xx problem is already set */
    charge_call cc;
    memset(&cc, 0, sizeof(cc));
    /* Free text from the client is stored and echoed back: a card number typed into it is
     * masked before it goes anywhere (PCI: card data never reaches storage or a response). */
    const char *desc = json_string_value(json_object_get(body, "description"));
    char *masked = desc ? keel_redact_dup(keel_str_c(desc), NULL) : NULL;
    keel_err e = KEEL_ENOMEM;
    if (desc == NULL || masked != NULL) {
        cc.req.description = masked;
        e = charge_body(cx, body, &cc);
    }
    keel_free(masked);
    json_decref(body);
    return e;
}

static keel_err h_charge(keel_ctx *cx, void *ud)
{
    /* Scope: every caller shares one key space until authentication (issue 5) binds the
     * user to the request; then the user id scopes the keys. */
    return keel_idem_http_handle(P.idem, cx, KEEL_STR_NULL, 1, h_charge_inner, ud);
}

/* ------------------------------------------------------------ test-only -- */

static keel_err t_gateway_calls(keel_ctx *cx, void *ud)
{
    (void)ud;
    return keel_resp_success(
        cx, 200,
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "authorize",
                  (json_int_t)keel_sandbox_count(P.sandbox, KEEL_GATEWAY_AUTHORIZE), "capture",
                  (json_int_t)keel_sandbox_count(P.sandbox, KEEL_GATEWAY_CAPTURE), "void",
                  (json_int_t)keel_sandbox_count(P.sandbox, KEEL_GATEWAY_VOID), "refund",
                  (json_int_t)keel_sandbox_count(P.sandbox, KEEL_GATEWAY_REFUND), "charges",
                  (json_int_t)keel_sandbox_charges(P.sandbox), "replays",
                  (json_int_t)keel_sandbox_replays(P.sandbox, KEEL_GATEWAY_AUTHORIZE)),
        NULL);
}

/* POST /_test/gateway/fault {"kind": "network_error", "times": 2} on authorize. */
static keel_err t_gateway_fault(keel_ctx *cx, void *ud)
{
    (void)ud;
    json_t *body;
    if (keel_req_json(cx, NULL, &body) != KEEL_OK)
        return KEEL_OK;
    const char *kind = json_string_value(json_object_get(body, "kind"));
    keel_sandbox_fault f;
    memset(&f, 0, sizeof(f));
    f.times = (unsigned)json_integer_value(json_object_get(body, "times"));
    if (kind != NULL && strcmp(kind, "network_error") == 0)
        f.kind = KEEL_SANDBOX_NETWORK_ERROR;
    else if (kind != NULL && strcmp(kind, "decline") == 0)
        f.kind = KEEL_SANDBOX_DECLINE;
    else
        f.kind = KEEL_SANDBOX_SUCCEED;
    json_decref(body);
    if (keel_sandbox_inject(P.sandbox, KEEL_GATEWAY_AUTHORIZE, &f) != KEEL_OK)
        return keel_resp_problem(cx, 422, NULL, "bad fault", NULL);
    return keel_resp_success(cx, 200, json_pack("{s:b}", "injected", 1), NULL);
}

/* Finished idempotency records are kept 24 h; the database does not expire rows by itself
 * (Redis does), so a maintenance task deletes the expired ones. */
static keel_err purge_idempotency(void *ud)
{
    (void)ud;
    if (P.idem_store == NULL || P.idem_store->vt->purge == NULL)
        return KEEL_OK;
    uint64_t removed = 0;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = P.idem_store->vt->purge(P.idem_store->self, keel_time_wall_ms(), &removed, &d);
    if (e == KEEL_OK && removed > 0)
        KEEL_LOG_INFO(keel_logger_get("app.payments"), "purged %llu expired idempotency keys",
                      (unsigned long long)removed);
    return e;
}

/* -------------------------------------------------------------- set-up -- */

keel_err keeld_payments_routes(keel_router *r, const keeld_app *app, keel_diag *diag)
{
    keel_err e;
    memset(&P, 0, sizeof(P));
    P.store = app->store;
    keel_sandbox_config sbc;
    keel_sandbox_config_default(&sbc);
    if ((e = keel_sandbox_create(&P.sandbox, &sbc, diag)) != KEEL_OK)
        return e;
    P.gw = keel_sandbox_gateway(P.sandbox);

    if (app->redis != NULL)
        e = keel_idem_store_redis(&P.idem_store, app->redis, "keeld:idem:");
    else
        e = keel_idem_store_sql(&P.idem_store, app->store, diag);
    if (e != KEEL_OK)
        return e;
    keel_idem_config ic;
    keel_idem_config_default(&ic);
    ic.name = "payments";
    ic.metrics = app->metrics;
    if ((e = keel_idem_http_create(&P.idem, P.idem_store, &ic, diag)) != KEEL_OK)
        return e;

    keel_breaker_config bc;
    keel_breaker_config_default(&bc);
    bc.name = "gateway";
    bc.sliding_window_size = 20;
    bc.minimum_number_of_calls = 10;
    bc.wait_duration_in_open_ms = 30000;
    bc.metrics = app->metrics;
    keel_retry_config rc;
    keel_retry_config_default(&rc);
    rc.name = "gateway";
    rc.max_attempts = 3;
    rc.base_delay_ms = 50;
    rc.max_delay_ms = 1000;
    keel_timer_config tc;
    keel_timer_config_default(&tc);
    tc.metrics = app->metrics;
    keel_layer *l;
    if ((e = keel_breaker_create(&P.breaker, &bc, diag)) != KEEL_OK ||
        (e = keel_retry_create(&P.retry, &rc, diag)) != KEEL_OK ||
        (e = keel_timer_create(&P.timer, &tc, diag)) != KEEL_OK ||
        (e = keel_chain_create(&P.chain)) != KEEL_OK)
        return e;
    if ((e = keel_breaker_layer(P.breaker, &l)) != KEEL_OK ||
        (e = keel_chain_add_take(P.chain, l)) != KEEL_OK ||
        (e = keel_retry_layer(P.retry, &l)) != KEEL_OK ||
        (e = keel_chain_add_take(P.chain, l)) != KEEL_OK ||
        (e = keel_timer_layer(P.timer, &l)) != KEEL_OK ||
        (e = keel_chain_add_take(P.chain, l)) != KEEL_OK)
        return e;

    if ((e = keel_router_add(r, KEEL_METHOD_POST, "/api/v1/payments", h_charge, NULL, 0, diag)))
        return e;
    if (app->tasks != NULL && app->redis == NULL &&
        (e = keel_tasks_add_periodic(app->tasks, "purge_idempotency_keys", 600000,
                                     purge_idempotency, NULL)) != KEEL_OK)
        return e;
    if (app->settings->environment == KEEL_ENVIRONMENT_TEST &&
        ((e = keel_router_add(r, KEEL_METHOD_GET, "/_test/gateway/calls", t_gateway_calls, NULL,
                              0, diag)) ||
         (e = keel_router_add(r, KEEL_METHOD_POST, "/_test/gateway/fault", t_gateway_fault,
                              NULL, 0, diag))))
        return e;
    return KEEL_OK;
}

void keeld_payments_cleanup(void)
{
    keel_chain_destroy(P.chain);
    keel_timer_destroy(P.timer);
    keel_retry_destroy(P.retry);
    keel_breaker_destroy(P.breaker);
    keel_idem_http_destroy(P.idem);
    keel_idem_store_destroy(P.idem_store);
    keel_sandbox_destroy(P.sandbox);
    memset(&P, 0, sizeof(P));
}
