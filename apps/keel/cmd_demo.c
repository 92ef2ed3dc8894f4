/* cmd_demo.c - `keel demo checkout`: seed 004's e-commerce checkout, seven scenarios run end to
 * end on libkeel's real modules, each checking its own expectations.
 *
 * Wiring (everything below is the library; only the inventory, the ledger and the shipping
 * "service" are toy stand-ins that live in this file):
 *
 *   store      SQLite in a temporary directory (or --db PATH / --dir DIR)
 *   gateway    the sandbox gateway (keel/gateway.h), with injected faults
 *   charge     keel_gateway_authorize wrapped in the seed's six-decorator stack, a keel_chain:
 *              idempotency (SQL store) -> circuit breaker -> retry (retriable payment errors
 *              only, 500 ms x2 backoff) -> rate limit (100/min, sliding log) -> timer
 *              (histogram) -> log execution (audit record per attempt)
 *   checkout   a keel saga with the durable SQL saga log: reserve_inventory/release_inventory,
 *              authorize_payment/void_payment (fraud screening first, then the charge stack),
 *              capture_payment, create_shipment
 *   webhooks   keel_webhook_sign / keel_webhook_verify and the SQL dedup store
 *   recon      keel_recon over the internal ledger and the sandbox's charges
 *   logging    keel_log to DIR/logs/app.json with the PCI redaction hook installed first
 *
 * All policies share one keel_manual_clock: retry backoff and saga compensation backoff advance
 * it instead of sleeping, so the whole demo takes milliseconds. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <keel/keel.h>
#include <keel/fraud.h>
#include <keel/gateway.h>
#include <keel/reconcile.h>
#include <keel/redact.h>
#include <keel/saga.h>
#include <keel/webhook.h>

#include "cli.h"

#define NSCEN 7
#define NDETAIL 4
#define LINE_MAX_ 320
#define STOCK_START 10
#define LEDGER_MAX 16
#define DEMO_PATH_MAX 1024

#define WEBHOOK_SECRET "whsec_keel_demo_0123456789abcdef"
#define SEED_LOG_LINE "card 4111-1111-1111-1111 cvv: 999"
#define SEED_REDACTED "card ************1111 cvv: [REDACTED_CVV]"
#define BLOCKED_EMAIL "fraudster@example.com"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: keel demo checkout [--db PATH] [--dir DIR] [--json]\n"
            "\n"
            "Run seed 004's e-commerce checkout end to end on libkeel's payment modules and\n"
            "check seven scenarios:\n"
            "  1 success after two transient network errors (retry recovers, saga completes)\n"
            "  2 idempotent replay: same key and payload, no second gateway call\n"
            "  3 shipment failure: payment voided and inventory released, in reverse order\n"
            "  4 blocklisted e-mail blocked by fraud screening before any gateway call\n"
            "  5 webhook accepted, duplicate deduplicated, tampered body rejected\n"
            "  6 reconciliation with three discrepancies, on-call paged for missing_gateway\n"
            "  7 a card number and CVV written to the log come out redacted\n"
            "\n"
            "The gateway is the in-memory sandbox; idempotency records, the saga log and webhook\n"
            "ids go to SQLite.  Work files (demo.db, logs/app.json) live in a temporary directory\n"
            "removed at exit, or in DIR (--dir, created if needed and kept).  --db puts the\n"
            "database at PATH instead.  Backoff waits run on a manual clock: nothing sleeps.\n"
            "--json prints one JSON object instead of text.\n"
            "\n"
            "Exit status: 0 every scenario behaved as the seed says, 1 one did not (or setup\n"
            "failed), 2 usage error.\n");
}

/* ------------------------------------------------------------- results -- */

typedef struct scen {
    const char *title;
    int ok;
    size_t ndetail;
    char detail[NDETAIL][LINE_MAX_];
    char why[LINE_MAX_];
} scen;

static void detail(scen *s, const char *fmt, ...) KEEL_PRINTF(2, 3);
static void detail(scen *s, const char *fmt, ...)
{
    if (s->ndetail >= NDETAIL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->detail[s->ndetail++], LINE_MAX_, fmt, ap);
    va_end(ap);
}

/* Record why the scenario failed (first reason wins); returns 0. */
static int fail(scen *s, const char *fmt, ...) KEEL_PRINTF(2, 3);
static int fail(scen *s, const char *fmt, ...)
{
    if (s->ok) {
        s->ok = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->why, sizeof s->why, fmt, ap);
        va_end(ap);
    }
    return 0;
}

#define CHECK(s, cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fail((s), __VA_ARGS__);                                                         \
    } while (0)

/* ---------------------------------------------------------------- state -- */

typedef struct ledger_entry {
    char id[KEEL_GATEWAY_ID_MAX];
    int64_t amount;
    char status[24];
} ledger_entry;

typedef struct order {
    char order_id[48];
    const char *user_id;
    const char *email;
    const char *token;
    int64_t amount; /* cents, USD */
    int quantity;
    int simulate_shipment_failure;
} order;

typedef struct demo {
    char run[8];
    char dir[DEMO_PATH_MAX - 64];
    int own_dir;
    char db_path[DEMO_PATH_MAX];
    char log_dir[DEMO_PATH_MAX];
    int log_started;

    keel_manual_clock mc;
    const keel_currency *usd;
    keel_store *store;
    keel_metrics *metrics;
    keel_sandbox *sb;
    keel_gateway *gw;

    keel_idem_store *idem_store;
    keel_idem *idem;
    keel_breaker *breaker;
    keel_retry *retry;
    keel_limiter *limiter;
    keel_timer *timer;
    keel_timer *audit;
    keel_chain *charge_stack;

    keel_fraud_blocklist *blocklist;
    keel_velocity *velocity;
    keel_fraud_engine *fraud;
    keel_fraud_result last_fraud;

    keel_saga_log *saga_log;
    keel_saga_def *checkout;

    keel_webhook_verifier *wh;
    keel_webhook_dedup *dedup;
    int webhooks_processed;

    int stock;
    ledger_entry ledger[LEDGER_MAX];
    size_t nledger;
    char comp_ran[4][32];
    size_t ncomp;
    char charge1[KEEL_GATEWAY_ID_MAX]; /* scenario 1's charge, for webhooks and recon */
} demo;

static const char *err_label(keel_err e)
{
    if (e == KEEL_OK)
        return "ok";
    const char *t = keel_pay_err_type(e);
    return t != NULL ? t : keel_err_name(e);
}

static ledger_entry *ledger_find(demo *d, const char *id)
{
    for (size_t i = 0; i < d->nledger; i++)
        if (strcmp(d->ledger[i].id, id) == 0)
            return &d->ledger[i];
    return NULL;
}

static void ledger_set(demo *d, const char *id, int64_t amount, const char *status)
{
    ledger_entry *e = ledger_find(d, id);
    if (e == NULL) {
        if (d->nledger >= LEDGER_MAX)
            return;
        e = &d->ledger[d->nledger++];
        snprintf(e->id, sizeof e->id, "%s", id);
        e->amount = amount;
    }
    snprintf(e->status, sizeof e->status, "%s", status);
}

static void comp_ran(demo *d, const char *name)
{
    if (d->ncomp < 4)
        snprintf(d->comp_ran[d->ncomp++], sizeof d->comp_ran[0], "%s", name);
}

/* ------------------------------------------------------- charge stack -- */

/* One charge attempt as seen by the policy chain (keel_call.user). */
typedef struct charge_op {
    keel_charge_request req;
    char payload[512]; /* canonical request bytes bound to the idempotency key */
    keel_charge_result res;
    keel_pay_failure fail;
    int replayed; /* answered by the idempotency layer */
} charge_op;

static void charge_op_init(charge_op *op, demo *d, int64_t amount, const char *token,
                           const char *key, const char *customer, const char *email)
{
    memset(op, 0, sizeof *op);
    op->req.amount = amount;
    op->req.currency = d->usd;
    op->req.payment_token = token;
    op->req.idempotency_key = key;
    op->req.customer_id = customer;
    op->req.customer_email = email;
    op->req.description = "keel demo checkout";
    snprintf(op->payload, sizeof op->payload, "amount=%lld&currency=USD&customer=%s&token=%s",
             (long long)amount, customer, token);
}

static keel_str bind_scope(const keel_call *call, void *ud)
{
    (void)ud;
    const charge_op *op = call->user;
    return keel_str_c(op->req.customer_id);
}

static keel_str bind_key(const keel_call *call, void *ud)
{
    (void)ud;
    const charge_op *op = call->user;
    return op->req.idempotency_key ? keel_str_c(op->req.idempotency_key) : KEEL_STR_NULL;
}

static keel_str bind_payload(const keel_call *call, void *ud)
{
    (void)ud;
    const charge_op *op = call->user;
    return keel_str_c(op->payload);
}

/* Stored outcome: "charge_id amount status" on success, "decline_code" on a terminal error. */
static keel_err bind_save(const keel_call *call, keel_err e, keel_buf *out, void *ud)
{
    (void)ud;
    const charge_op *op = call->user;
    if (e == KEEL_OK)
        return keel_buf_appendf(out, "%s %lld %d", op->res.charge_id, (long long)op->res.amount,
                                (int)op->res.status);
    return keel_buf_appendf(out, "%s", op->fail.decline_code);
}

static keel_err bind_replay(keel_call *call, keel_err e, keel_str stored, void *ud)
{
    (void)ud;
    charge_op *op = call->user;
    char buf[256];
    size_t n = stored.len < sizeof buf - 1 ? stored.len : sizeof buf - 1;
    memcpy(buf, stored.ptr, n);
    buf[n] = '\0';
    op->replayed = 1;
    if (e != KEEL_OK) {
        (void)keel_pay_fail(&op->fail, e, buf[0] ? buf : NULL, "replayed: %s", keel_strerror(e));
        return e;
    }
    long long amount = 0;
    int status = 0;
    char id[KEEL_GATEWAY_ID_MAX];
    if (sscanf(buf, "%63s %lld %d", id, &amount, &status) != 3)
        return KEEL_EPARSE;
    snprintf(op->res.charge_id, sizeof op->res.charge_id, "%s", id);
    op->res.amount = amount;
    op->res.status = (keel_charge_status)status;
    op->res.currency = op->req.currency;
    op->res.replayed = 1;
    return KEEL_OK;
}

/* The protected operation: one authorize at the gateway. */
static keel_err charge_terminal(void *cx, void *ud)
{
    keel_call *call = cx;
    demo *d = ud;
    charge_op *op = call->user;
    keel_err e = keel_gateway_authorize(d->gw, &op->req, &op->res, &op->fail);
    if (e != KEEL_OK && op->fail.retry_after_ms > 0)
        call->retry_after_ms = op->fail.retry_after_ms;
    return e;
}

/* charge_customer(): the seed's hero, through the six-layer stack. */
static keel_err charge_customer(demo *d, charge_op *op)
{
    keel_call call;
    keel_call_init(&call, "charge_customer", op);
    return keel_chain_run(d->charge_stack, &call, charge_terminal, d);
}

static int retriable_only(const keel_call *call, keel_err e, void *ud)
{
    (void)call;
    (void)ud;
    return keel_pay_err_retriable(e);
}

static keel_err add_layer(keel_chain *c, keel_err made, keel_layer *l)
{
    if (made != KEEL_OK)
        return made;
    keel_err e = keel_chain_add_take(c, l);
    if (e != KEEL_OK && l->dispose != NULL)
        l->dispose(l);
    return e;
}

static keel_err build_charge_stack(demo *d, keel_diag *diag)
{
    keel_err e;
    keel_idem_binding b = {bind_scope, bind_key, bind_payload, bind_save, bind_replay, d};
    keel_idem_config ic;
    keel_idem_config_default(&ic);
    ic.name = "charge";
    if ((e = keel_idem_store_sql(&d->idem_store, d->store, diag)) != KEEL_OK ||
        (e = keel_idem_create(&d->idem, d->idem_store, &b, &ic, diag)) != KEEL_OK)
        return e;

    /* @circuit_breaker(failure_threshold=5, recovery_timeout=30.0) */
    keel_breaker_config bc;
    keel_breaker_config_default(&bc);
    bc.name = "gateway";
    bc.sliding_window_size = 5;
    bc.minimum_number_of_calls = 5;
    bc.failure_rate_threshold = 100.0;
    bc.wait_duration_in_open_ms = 30000;
    bc.clock = &d->mc.clock;
    if ((e = keel_breaker_create(&d->breaker, &bc, diag)) != KEEL_OK)
        return e;

    /* @retry(max_attempts=3, delay=0.5, backoff=2.0, exceptions=(NetworkError,)) */
    keel_retry_config rc;
    keel_retry_config_default(&rc);
    rc.name = "charge";
    rc.max_attempts = 3;
    rc.base_delay_ms = 500;
    rc.multiplier = 2.0;
    rc.jitter = KEEL_JITTER_NONE;
    rc.should_retry = retriable_only;
    rc.clock = &d->mc.clock;
    if ((e = keel_retry_create(&d->retry, &rc, diag)) != KEEL_OK)
        return e;

    /* @rate_limit(max_calls=100, period=timedelta(minutes=1)) */
    keel_limiter_config lc;
    keel_limiter_config_default(&lc);
    lc.name = "gateway_rate";
    lc.algorithm = KEEL_LIMIT_SLIDING_LOG;
    lc.limit = 100;
    lc.window_ms = 60000;
    lc.clock = &d->mc.clock;
    if ((e = keel_limiter_create(&lc, &d->limiter, diag)) != KEEL_OK)
        return e;

    /* @timer(metric_name="charge_duration") and @log_execution */
    keel_timer_config tc;
    keel_timer_config_default(&tc);
    tc.clock = &d->mc.clock;
    tc.metrics = d->metrics;
    if ((e = keel_timer_create(&d->timer, &tc, diag)) != KEEL_OK)
        return e;
    keel_timer_config_default(&tc);
    tc.clock = &d->mc.clock;
    tc.audit_log = 1;
    if ((e = keel_timer_create(&d->audit, &tc, diag)) != KEEL_OK)
        return e;

    if ((e = keel_chain_create(&d->charge_stack)) != KEEL_OK)
        return e;
    keel_layer *l = NULL;
    e = keel_idem_layer(d->idem, &l);
    e = add_layer(d->charge_stack, e, l);
    if (e == KEEL_OK) {
        e = keel_breaker_layer(d->breaker, &l);
        e = add_layer(d->charge_stack, e, l);
    }
    if (e == KEEL_OK) {
        e = keel_retry_layer(d->retry, &l);
        e = add_layer(d->charge_stack, e, l);
    }
    if (e == KEEL_OK) {
        e = keel_limiter_layer(d->limiter, NULL, NULL, &l);
        e = add_layer(d->charge_stack, e, l);
    }
    if (e == KEEL_OK) {
        e = keel_timer_layer(d->timer, &l);
        e = add_layer(d->charge_stack, e, l);
    }
    if (e == KEEL_OK) {
        e = keel_timer_layer(d->audit, &l);
        e = add_layer(d->charge_stack, e, l);
    }
    if (e != KEEL_OK)
        keel_diag_set(diag, e, 0, "charge stack: %s", keel_strerror(e));
    return e;
}

/* ----------------------------------------------------------- the saga -- */

static const char *ctx_str(json_t *ctx, const char *key)
{
    return json_string_value(json_object_get(ctx, key));
}

static keel_err reserve_inventory(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    demo *d = ud;
    int qty = (int)json_integer_value(json_object_get(ctx, "quantity"));
    if (qty <= 0 || qty > d->stock)
        return KEEL_EFULL;
    d->stock -= qty;
    char id[80];
    snprintf(id, sizeof id, "res_%s", ctx_str(ctx, "order_id"));
    return json_object_set_new(ctx, "reservation_id", json_string(id)) == 0 ? KEEL_OK
                                                                             : KEEL_ENOMEM;
}

/* Idempotent: releases a reservation once, and tolerates "nothing reserved". */
static keel_err release_inventory(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    demo *d = ud;
    comp_ran(d, "release_inventory");
    if (json_object_get(ctx, "reservation_id") == NULL ||
        json_is_true(json_object_get(ctx, "reservation_released")))
        return KEEL_OK;
    d->stock += (int)json_integer_value(json_object_get(ctx, "quantity"));
    return json_object_set_new(ctx, "reservation_released", json_true()) == 0 ? KEEL_OK
                                                                               : KEEL_ENOMEM;
}

static keel_err authorize_payment(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    demo *d = ud;
    const char *order_id = ctx_str(ctx, "order_id");
    int64_t amount = json_integer_value(json_object_get(ctx, "amount"));

    /* Fraud screening first: a blocked order never reaches the gateway. */
    keel_fraud_context fc;
    memset(&fc, 0, sizeof fc);
    fc.user_id = ctx_str(ctx, "user_id");
    fc.email = ctx_str(ctx, "email");
    fc.ip = "203.0.113.7";
    fc.amount = amount;
    fc.currency = d->usd;
    fc.card_country = "US";
    fc.billing_country = "US";
    fc.ip_country = "US";
    keel_err e = keel_fraud_evaluate(d->fraud, &fc, &d->last_fraud);
    if (e != KEEL_OK)
        return e;
    if ((e = keel_fraud_result_err(&d->last_fraud, NULL)) != KEEL_OK)
        return e;

    char key[96];
    snprintf(key, sizeof key, "%s:authorize", order_id);
    charge_op op;
    charge_op_init(&op, d, amount, ctx_str(ctx, "token"), key, fc.user_id, fc.email);
    if ((e = charge_customer(d, &op)) != KEEL_OK)
        return e;
    ledger_set(d, op.res.charge_id, amount, "authorized");
    return json_object_set_new(ctx, "charge_id", json_string(op.res.charge_id)) == 0
               ? KEEL_OK
               : KEEL_ENOMEM;
}

/* Compensation of authorize_payment: undo the charge.  A charge still authorized is voided;
 * one captured before the failure can no longer be voided at a gateway, so it is refunded in
 * full.  Idempotent through the gateway's idempotency keys. */
static keel_err void_payment(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    demo *d = ud;
    comp_ran(d, "void_payment");
    const char *charge_id = ctx_str(ctx, "charge_id");
    if (charge_id == NULL)
        return KEEL_OK; /* nothing was authorized */
    char key[96];
    keel_err e;
    if (json_is_true(json_object_get(ctx, "captured"))) {
        snprintf(key, sizeof key, "%s:refund", ctx_str(ctx, "order_id"));
        keel_refund_request rr = {charge_id, 0, "requested_by_customer", key};
        e = keel_gateway_refund(d->gw, &rr, NULL, NULL);
        if (e == KEEL_OK)
            ledger_set(d, charge_id, 0, "refunded");
    } else {
        snprintf(key, sizeof key, "%s:void", ctx_str(ctx, "order_id"));
        keel_void_request vr = {charge_id, key};
        e = keel_gateway_void(d->gw, &vr, NULL, NULL);
        if (e == KEEL_OK)
            ledger_set(d, charge_id, 0, "voided");
    }
    return e;
}

static keel_err capture_payment(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    demo *d = ud;
    const char *charge_id = ctx_str(ctx, "charge_id");
    char key[96];
    snprintf(key, sizeof key, "%s:capture", ctx_str(ctx, "order_id"));
    keel_capture_request cr = {charge_id, 0, key};
    keel_err e = keel_gateway_capture(d->gw, &cr, NULL, NULL);
    if (e != KEEL_OK)
        return e;
    ledger_set(d, charge_id, 0, "captured");
    return json_object_set_new(ctx, "captured", json_true()) == 0 ? KEEL_OK : KEEL_ENOMEM;
}

static keel_err create_shipment(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    (void)ud;
    if (json_is_true(json_object_get(ctx, "simulate_shipment_failure")))
        return KEEL_EIO; /* the shipping service is down */
    char id[80];
    snprintf(id, sizeof id, "shp_%s", ctx_str(ctx, "order_id"));
    return json_object_set_new(ctx, "shipment_id", json_string(id)) == 0 ? KEEL_OK
                                                                          : KEEL_ENOMEM;
}

static keel_err build_checkout(demo *d, keel_diag *diag)
{
    keel_err e;
    if ((e = keel_saga_log_sql_create(&d->saga_log, d->store, diag)) != KEEL_OK)
        return e;
    keel_saga_config sc;
    keel_saga_config_default(&sc);
    sc.clock = &d->mc.clock;
    sc.owner = "keel-demo";
    if ((e = keel_saga_def_create(&d->checkout, "checkout", &sc)) != KEEL_OK ||
        (e = keel_saga_def_add_step(d->checkout, "reserve_inventory", reserve_inventory,
                                    release_inventory, d)) != KEEL_OK ||
        (e = keel_saga_def_add_step(d->checkout, "authorize_payment", authorize_payment,
                                    void_payment, d)) != KEEL_OK ||
        (e = keel_saga_def_add_step(d->checkout, "capture_payment", capture_payment, NULL, d)) !=
            KEEL_OK ||
        (e = keel_saga_def_add_step(d->checkout, "create_shipment", create_shipment, NULL, d)) !=
            KEEL_OK)
        keel_diag_set(diag, e, 0, "saga definition: %s", keel_strerror(e));
    return e;
}

static void order_init(order *o, demo *d, int n, const char *user, const char *email,
                       int64_t amount)
{
    memset(o, 0, sizeof *o);
    snprintf(o->order_id, sizeof o->order_id, "ord_%s_%d", d->run, n);
    o->user_id = user;
    o->email = email;
    o->token = "tok_visa";
    o->amount = amount;
    o->quantity = 1;
}

/* Run the checkout saga for o.  *x is set on KEEL_OK. */
static keel_err checkout(demo *d, const order *o, keel_saga_exec **x, keel_diag *diag)
{
    json_t *ctx = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:i, s:b}", "order_id", o->order_id,
                            "user_id", o->user_id, "email", o->email, "token", o->token,
                            "amount", (json_int_t)o->amount, "currency", "USD", "quantity",
                            o->quantity, "simulate_shipment_failure",
                            o->simulate_shipment_failure);
    if (ctx == NULL)
        return KEEL_ENOMEM;
    char id[80];
    snprintf(id, sizeof id, "saga_%s", o->order_id);
    d->ncomp = 0;
    keel_err e = keel_saga_execute(d->checkout, d->saga_log, id, ctx, x, diag);
    json_decref(ctx);
    return e;
}

/* Gateway calls whose idempotency key starts with prefix (all operations). */
static size_t gateway_calls(demo *d, const char *prefix, keel_sandbox_call *first, size_t cap)
{
    size_t total = keel_sandbox_count(d->sb, KEEL_GATEWAY_OP_COUNT), n = 0;
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < total; i++) {
        keel_sandbox_call c;
        if (keel_sandbox_call_at(d->sb, i, &c) != KEEL_OK)
            continue;
        if (strncmp(c.idempotency_key, prefix, plen) != 0)
            continue;
        if (first != NULL && n < cap)
            first[n] = c;
        n++;
    }
    return n;
}

/* Value of the keel_call_duration_seconds_count series for outcome (0 when absent). */
static double timer_count(demo *d, const char *outcome)
{
    keel_buf b;
    keel_buf_init(&b, 1u << 20);
    double v = 0;
    if (keel_metrics_expose(d->metrics, "keel_call_duration_seconds", &b) == KEEL_OK &&
        b.ptr != NULL) {
        char pat[160];
        snprintf(pat, sizeof pat,
                 "keel_call_duration_seconds_count{name=\"charge_customer\",outcome=\"%s\"} ",
                 outcome);
        const char *p = strstr(b.ptr, pat);
        if (p != NULL)
            v = strtod(p + strlen(pat), NULL);
    }
    keel_buf_cleanup(&b);
    return v;
}

/* ---------------------------------------------------------- scenarios -- */

/* [1] @retry recovers from two NetworkErrors; the saga completes. */
static int scenario_success_after_retry(demo *d, scen *s)
{
    order o;
    order_init(&o, d, 1, "u_1001", "alice@example.com", 5000);
    keel_sandbox_fault f = {KEEL_SANDBOX_NETWORK_ERROR, 2, 0, 0, 0};
    CHECK(s, keel_sandbox_inject(d->sb, KEEL_GATEWAY_AUTHORIZE, &f) == KEEL_OK,
          "cannot inject the network fault");
    uint64_t slept0 = d->mc.slept_total;
    unsigned sleeps0 = d->mc.sleeps;
    double ok0 = timer_count(d, "ok"), net0 = timer_count(d, "KEEL_EPAY_NETWORK");
    int stock0 = d->stock;

    keel_saga_exec *x = NULL;
    keel_diag diag = {0};
    keel_err e = checkout(d, &o, &x, &diag);
    keel_sandbox_clear_faults(d->sb);
    CHECK(s, e == KEEL_OK, "saga did not run: %s %s", keel_err_name(e), diag.msg);
    keel_saga_state st = keel_saga_exec_state(x);
    keel_err se = keel_saga_exec_error(x);
    const char *charge = ctx_str(keel_saga_exec_context(x), "charge_id");
    snprintf(d->charge1, sizeof d->charge1, "%s", charge ? charge : "");
    char saga_id[KEEL_SAGA_ID_MAX + 1];
    snprintf(saga_id, sizeof saga_id, "%s", keel_saga_exec_id(x));
    size_t nsteps = keel_saga_exec_nsteps(x);
    keel_err asserted = keel_saga_assert_succeeded(x);
    keel_saga_exec_destroy(x);
    CHECK(s, st == KEEL_SAGA_COMPLETED && asserted == KEEL_OK,
          "saga ended %s (%s), expected COMPLETED", keel_saga_state_name(st), err_label(se));

    char prefix[80];
    snprintf(prefix, sizeof prefix, "%s:authorize", o.order_id);
    keel_sandbox_call calls[4];
    size_t n = gateway_calls(d, prefix, calls, 4);
    CHECK(s, n == 3, "expected 3 authorize calls at the gateway, saw %zu", n);
    CHECK(s,
          calls[0].outcome == KEEL_EPAY_NETWORK && calls[1].outcome == KEEL_EPAY_NETWORK &&
              calls[2].outcome == KEEL_OK,
          "authorize outcomes %s, %s, %s; expected network_error, network_error, ok",
          err_label(calls[0].outcome), err_label(calls[1].outcome), err_label(calls[2].outcome));
    keel_charge_result cr;
    CHECK(s, d->charge1[0] && keel_sandbox_charge(d->sb, d->charge1, &cr) == KEEL_OK,
          "the gateway does not know charge '%s'", d->charge1);
    CHECK(s, cr.status == KEEL_CHARGE_CAPTURED && cr.amount_captured == o.amount,
          "charge %s is %s, expected captured", d->charge1, keel_charge_status_name(cr.status));
    uint64_t slept = d->mc.slept_total - slept0;
    unsigned sleeps = d->mc.sleeps - sleeps0;
    CHECK(s, sleeps == 2 && slept == 1500,
          "retry waited %u times, %llu ms in total; expected 2 waits, 500 + 1000 ms", sleeps,
          (unsigned long long)slept);
    double ok1 = timer_count(d, "ok") - ok0, net1 = timer_count(d, "KEEL_EPAY_NETWORK") - net0;
    CHECK(s, ok1 == 1.0 && net1 == 2.0,
          "timer recorded %.0f ok and %.0f network attempts, expected 1 and 2", ok1, net1);
    keel_saga_record rec;
    memset(&rec, 0, sizeof rec);
    keel_err le = keel_saga_log_load(d->saga_log, saga_id, &rec, &diag);
    keel_saga_state durable = rec.state;
    int64_t events = rec.seq;
    keel_saga_record_cleanup(&rec);
    CHECK(s, le == KEEL_OK && durable == KEEL_SAGA_COMPLETED,
          "the SQL saga log says %s (%s), expected COMPLETED", keel_saga_state_name(durable),
          le == KEEL_OK ? "loaded" : diag.msg);
    keel_breaker_state bs = keel_breaker_state_get(d->breaker);
    CHECK(s, bs == KEEL_BREAKER_CLOSED, "breaker is %s", keel_breaker_state_name(bs));
    CHECK(s, d->stock == stock0 - o.quantity, "inventory %d, expected %d", d->stock,
          stock0 - o.quantity);

    detail(s, "gateway authorize x3: network_error, network_error, ok -> %s captured",
           d->charge1);
    detail(s, "retry waited 500 + 1000 ms on the manual clock (no real sleep); timer saw 3 "
              "attempts; breaker %s",
           keel_breaker_state_name(bs));
    detail(s, "saga %s: %s (%zu/%zu steps; %lld transitions in the SQL saga log)", saga_id,
           keel_saga_state_name(st), nsteps, nsteps, (long long)events);
    return 1;
}

/* [2] Same key + same payload returns the stored charge; the gateway is not called again. */
static int scenario_idempotent_replay(demo *d, scen *s)
{
    char key[96];
    snprintf(key, sizeof key, "ord_%s_2:authorize", d->run);
    keel_idem_stats st0, st1;
    keel_idem_get_stats(d->idem, &st0);
    charge_op a, b, c;
    charge_op_init(&a, d, 2500, "tok_visa", key, "u_1002", "bob@example.com");
    charge_op_init(&b, d, 2500, "tok_visa", key, "u_1002", "bob@example.com");
    charge_op_init(&c, d, 2600, "tok_visa", key, "u_1002", "bob@example.com");
    keel_err ea = charge_customer(d, &a);
    CHECK(s, ea == KEEL_OK, "first charge failed: %s", err_label(ea));
    ledger_set(d, a.res.charge_id, 2500, "authorized");
    keel_err eb = charge_customer(d, &b);
    CHECK(s, eb == KEEL_OK, "replayed charge failed: %s", err_label(eb));
    CHECK(s, strcmp(a.res.charge_id, b.res.charge_id) == 0,
          "replay returned charge %s, the first call %s", b.res.charge_id, a.res.charge_id);
    CHECK(s, !a.replayed && b.replayed, "expected the second call (only) to be a replay");
    keel_err ec = charge_customer(d, &c);
    CHECK(s, ec == KEEL_EPAY_IDEMPOTENCY_CONFLICT,
          "same key with another payload gave %s, expected idempotency_conflict",
          err_label(ec));
    keel_idem_get_stats(d->idem, &st1);
    CHECK(s,
          st1.executed - st0.executed == 1 && st1.replayed - st0.replayed == 1 &&
              st1.conflicts - st0.conflicts == 1,
          "idempotency layer counted executed %llu, replayed %llu, conflicts %llu (want 1 each)",
          (unsigned long long)(st1.executed - st0.executed),
          (unsigned long long)(st1.replayed - st0.replayed),
          (unsigned long long)(st1.conflicts - st0.conflicts));
    keel_sandbox_call calls[4];
    size_t n = gateway_calls(d, key, calls, 4);
    CHECK(s, n == 1 && calls[0].op == KEEL_GATEWAY_AUTHORIZE && !calls[0].replay,
          "expected exactly one authorize call for key %s, saw %zu", key, n);

    detail(s, "first call: %s authorized; second call: %s replayed from the SQL idempotency "
              "store",
           a.res.charge_id, b.res.charge_id);
    detail(s, "gateway authorize calls for key %s: %zu", key, n);
    detail(s, "same key, different payload: %s (HTTP %d), no gateway call", err_label(ec),
           keel_pay_err_http_status(ec));
    return 1;
}

typedef struct comp_log {
    char names[4][32];
    size_t n;
} comp_log;

static void collect_comp(const keel_saga_entry *e, void *ud)
{
    comp_log *c = ud;
    if (e->kind == KEEL_SAGA_EV_COMP_COMPLETED && c->n < 4)
        snprintf(c->names[c->n++], sizeof c->names[0], "%s", e->step_name ? e->step_name : "?");
}

static const char *comp_name_of(const char *step)
{
    if (strcmp(step, "authorize_payment") == 0)
        return "void_payment";
    if (strcmp(step, "reserve_inventory") == 0)
        return "release_inventory";
    return step;
}

/* [3] Shipment fails after authorize + capture: void_payment, then release_inventory. */
static int scenario_shipment_failure(demo *d, scen *s)
{
    order o;
    order_init(&o, d, 3, "u_1003", "carol@example.com", 7500);
    o.simulate_shipment_failure = 1;
    int stock0 = d->stock;
    keel_saga_exec *x = NULL;
    keel_diag diag = {0};
    keel_err e = checkout(d, &o, &x, &diag);
    CHECK(s, e == KEEL_OK, "saga did not run: %s %s", keel_err_name(e), diag.msg);
    keel_saga_state st = keel_saga_exec_state(x);
    int failed = keel_saga_exec_failed_step(x);
    keel_err ferr = keel_saga_exec_error(x);
    keel_saga_step_status ss[4];
    for (size_t i = 0; i < 4; i++) {
        const keel_saga_step_result *r = keel_saga_exec_step(x, i);
        ss[i] = r ? r->status : KEEL_SAGA_STEP_PENDING;
    }
    char charge[KEEL_GATEWAY_ID_MAX], saga_id[KEEL_SAGA_ID_MAX + 1];
    const char *cid = ctx_str(keel_saga_exec_context(x), "charge_id");
    snprintf(charge, sizeof charge, "%s", cid ? cid : "");
    snprintf(saga_id, sizeof saga_id, "%s", keel_saga_exec_id(x));
    keel_saga_exec_destroy(x);

    CHECK(s, st == KEEL_SAGA_COMPENSATED, "saga ended %s, expected COMPENSATED",
          keel_saga_state_name(st));
    CHECK(s, failed == 3 && ferr == KEEL_EIO,
          "failed step %d (%s), expected create_shipment (KEEL_EIO)", failed, err_label(ferr));
    CHECK(s,
          ss[0] == KEEL_SAGA_STEP_COMPENSATED && ss[1] == KEEL_SAGA_STEP_COMPENSATED &&
              ss[2] == KEEL_SAGA_STEP_COMPLETED && ss[3] == KEEL_SAGA_STEP_FAILED,
          "step statuses %d %d %d %d, expected compensated, compensated, completed, failed",
          (int)ss[0], (int)ss[1], (int)ss[2], (int)ss[3]);

    comp_log cl = {0};
    e = keel_saga_log_history(d->saga_log, saga_id, collect_comp, &cl, &diag);
    CHECK(s, e == KEEL_OK, "cannot read the saga log: %s", diag.msg);
    CHECK(s,
          cl.n == 2 && strcmp(cl.names[0], "authorize_payment") == 0 &&
              strcmp(cl.names[1], "reserve_inventory") == 0,
          "saga log shows %zu compensations (%s, %s), expected authorize_payment then "
          "reserve_inventory",
          cl.n, cl.n > 0 ? cl.names[0] : "-", cl.n > 1 ? cl.names[1] : "-");
    CHECK(s,
          d->ncomp == 2 && strcmp(d->comp_ran[0], "void_payment") == 0 &&
              strcmp(d->comp_ran[1], "release_inventory") == 0,
          "compensations ran in the wrong order");
    keel_charge_result cr;
    CHECK(s, charge[0] && keel_sandbox_charge(d->sb, charge, &cr) == KEEL_OK,
          "the gateway does not know charge '%s'", charge);
    CHECK(s, cr.status == KEEL_CHARGE_REFUNDED && cr.amount_refunded == o.amount,
          "charge %s is %s after compensation, expected refunded in full", charge,
          keel_charge_status_name(cr.status));
    CHECK(s, d->stock == stock0, "inventory %d after compensation, expected %d", d->stock,
          stock0);

    detail(s, "saga %s: %s after create_shipment failed (%s)", saga_id,
           keel_saga_state_name(st), err_label(ferr));
    detail(s, "compensation order (saga log): %s (%s) -> %s (%s)", comp_name_of(cl.names[0]),
           cl.names[0], comp_name_of(cl.names[1]), cl.names[1]);
    detail(s, "%s already captured, so void_payment refunded it in full; inventory back to %d",
           charge, d->stock);
    return 1;
}

/* [4] Blocklisted e-mail: fraud screening refuses before any gateway call. */
static int scenario_fraud_block(demo *d, scen *s)
{
    order o;
    order_init(&o, d, 4, "u_1004", BLOCKED_EMAIL, 4200);
    int stock0 = d->stock;
    size_t total0 = keel_sandbox_count(d->sb, KEEL_GATEWAY_OP_COUNT);
    keel_saga_exec *x = NULL;
    keel_diag diag = {0};
    keel_err e = checkout(d, &o, &x, &diag);
    CHECK(s, e == KEEL_OK, "saga did not run: %s %s", keel_err_name(e), diag.msg);
    keel_saga_state st = keel_saga_exec_state(x);
    int failed = keel_saga_exec_failed_step(x);
    keel_err ferr = keel_saga_exec_error(x);
    const keel_saga_step_result *r0 = keel_saga_exec_step(x, 0);
    keel_saga_step_status s0 = r0 ? r0->status : KEEL_SAGA_STEP_PENDING;
    char saga_id[KEEL_SAGA_ID_MAX + 1];
    snprintf(saga_id, sizeof saga_id, "%s", keel_saga_exec_id(x));
    keel_saga_exec_destroy(x);

    CHECK(s, st == KEEL_SAGA_COMPENSATED, "saga ended %s, expected COMPENSATED",
          keel_saga_state_name(st));
    CHECK(s, failed == 1 && ferr == KEEL_EPAY_FRAUD_BLOCKED,
          "failed step %d (%s), expected authorize_payment (fraud_blocked)", failed,
          err_label(ferr));
    CHECK(s,
          d->last_fraud.decision == KEEL_FRAUD_BLOCK && d->last_fraud.blocked_by != NULL &&
              strcmp(d->last_fraud.blocked_by, "blocklist") == 0,
          "fraud decision %s, expected block by 'blocklist'",
          keel_fraud_decision_name(d->last_fraud.decision));
    char prefix[80];
    snprintf(prefix, sizeof prefix, "%s:", o.order_id);
    size_t n = gateway_calls(d, prefix, NULL, 0);
    size_t total = keel_sandbox_count(d->sb, KEEL_GATEWAY_OP_COUNT) - total0;
    CHECK(s, n == 0 && total == 0, "the gateway was called %zu times", total);
    CHECK(s, s0 == KEEL_SAGA_STEP_COMPENSATED && d->ncomp == 1 &&
                 strcmp(d->comp_ran[0], "release_inventory") == 0,
          "the reservation was not compensated");
    CHECK(s, d->stock == stock0, "inventory %d, expected %d", d->stock, stock0);

    detail(s, "fraud decision: %s by rule '%s' -> %s (HTTP %d); gateway calls: %zu",
           keel_fraud_decision_name(d->last_fraud.decision), d->last_fraud.blocked_by,
           err_label(ferr), keel_pay_err_http_status(ferr), total);
    detail(s, "saga %s: %s; release_inventory ran, inventory back to %d", saga_id,
           keel_saga_state_name(st), d->stock);
    return 1;
}

/* The seed's handle_webhook(): verify, dedup, process.  Returns the HTTP status; *what says
 * what happened ("accepted", "duplicate" or the failure reason). */
static int handle_webhook(demo *d, const char *body, const char *header, int64_t now_s,
                          const char **what)
{
    keel_diag diag = {0};
    keel_err e = keel_webhook_verify(d->wh, body, strlen(body), header, now_s, &diag);
    if (e != KEEL_OK) {
        keel_webhook_reason r = keel_webhook_reason_of(e);
        *what = keel_webhook_reason_name(r);
        return keel_webhook_reason_http_status(r);
    }
    char id[KEEL_WEBHOOK_EVENT_ID_MAX + 1];
    if (keel_webhook_event_id(body, strlen(body), id, sizeof id) != KEEL_OK) {
        *what = "no event id";
        return 400;
    }
    int first = keel_webhook_is_first_delivery(d->dedup, id, &diag);
    if (first < 0) {
        *what = "dedup store error";
        return 500;
    }
    if (first == 0) {
        *what = "duplicate";
        return 200;
    }
    d->webhooks_processed++;
    *what = "accepted";
    return 200;
}

/* [5] Valid signature accepted, redelivery deduplicated, tampered body rejected. */
static int scenario_webhooks(demo *d, scen *s)
{
    char body[512], tampered[512], header[KEEL_WEBHOOK_SIGN_SIZE];
    char evt[64];
    snprintf(evt, sizeof evt, "evt_%s_1", d->run);
    snprintf(body, sizeof body,
             "{\"id\":\"%s\",\"type\":\"charge.captured\",\"data\":{\"object\":"
             "{\"id\":\"%s\",\"amount\":5000,\"currency\":\"usd\"}}}",
             evt, d->charge1[0] ? d->charge1 : "ch_unknown");
    snprintf(tampered, sizeof tampered,
             "{\"id\":\"%s\",\"type\":\"charge.captured\",\"data\":{\"object\":"
             "{\"id\":\"%s\",\"amount\":500000,\"currency\":\"usd\"}}}",
             evt, d->charge1[0] ? d->charge1 : "ch_unknown");
    int64_t now_s = keel_time_wall_ms() / 1000;
    keel_err e = keel_webhook_sign(WEBHOOK_SECRET, body, strlen(body), now_s, header,
                                   sizeof header);
    CHECK(s, e == KEEL_OK, "cannot sign the event: %s", keel_err_name(e));
    int processed0 = d->webhooks_processed;

    const char *w1 = "", *w2 = "", *w3 = "";
    int h1 = handle_webhook(d, body, header, now_s, &w1);
    int h2 = handle_webhook(d, body, header, now_s, &w2);
    int h3 = handle_webhook(d, tampered, header, now_s, &w3);
    CHECK(s, h1 == 200 && strcmp(w1, "accepted") == 0, "first delivery: %d %s", h1, w1);
    CHECK(s, h2 == 200 && strcmp(w2, "duplicate") == 0, "redelivery: %d %s", h2, w2);
    CHECK(s, h3 == 400 && strcmp(w3, "signature_mismatch") == 0, "tampered body: %d %s", h3,
          w3);
    CHECK(s, d->webhooks_processed - processed0 == 1, "processed %d events, expected 1",
          d->webhooks_processed - processed0);

    detail(s, "%s signed t=%lld: signature valid, first delivery -> %d, processed", evt,
           (long long)now_s, h1);
    detail(s, "%s redelivered: duplicate in the SQL dedup store -> %d, not processed again",
           evt, h2);
    detail(s, "tampered body (amount changed): %s -> %d", w3, h3);
    return 1;
}

typedef struct recon_seen {
    char paged[4][KEEL_GATEWAY_ID_MAX];
    size_t npaged;
    char missing_internal[KEEL_GATEWAY_ID_MAX];
    char status_mismatch[KEEL_GATEWAY_ID_MAX];
} recon_seen;

static void copy_id(char *dst, size_t cap, keel_str id)
{
    size_t n = id.len < cap - 1 ? id.len : cap - 1;
    memcpy(dst, id.ptr, n);
    dst[n] = '\0';
}

/* reconciler.on(MISSING_GATEWAY, page_oncall) */
static keel_err page_oncall(const keel_recon_discrepancy *dsc, void *ud)
{
    recon_seen *rs = ud;
    if (rs->npaged < 4)
        copy_id(rs->paged[rs->npaged++], sizeof rs->paged[0], dsc->id);
    return KEEL_OK;
}

static keel_err note_other(const keel_recon_discrepancy *dsc, void *ud)
{
    recon_seen *rs = ud;
    if (dsc->type == KEEL_RECON_MISSING_INTERNAL)
        copy_id(rs->missing_internal, sizeof rs->missing_internal, dsc->id);
    else if (dsc->type == KEEL_RECON_STATUS_MISMATCH)
        copy_id(rs->status_mismatch, sizeof rs->status_mismatch, dsc->id);
    return KEEL_OK;
}

/* [6] Ledger vs gateway after three kinds of drift. */
static int scenario_reconcile(demo *d, scen *s)
{
    /* Drift 1: a refund issued through the gateway dashboard; the ledger never hears of it. */
    CHECK(s, d->charge1[0] != '\0', "scenario 1 left no charge to refund");
    keel_refund_request rr = {d->charge1, 0, "requested_by_customer", "dashboard:refund:1"};
    keel_err e = keel_gateway_refund(d->gw, &rr, NULL, NULL);
    CHECK(s, e == KEEL_OK, "dashboard refund failed: %s", err_label(e));
    /* Drift 2: a charge made at the gateway outside checkout (a missed webhook). */
    keel_charge_request cq;
    memset(&cq, 0, sizeof cq);
    cq.amount = 1500;
    cq.currency = d->usd;
    cq.payment_token = "tok_mastercard";
    cq.idempotency_key = "dashboard:charge:1";
    keel_charge_result dash;
    e = keel_gateway_authorize(d->gw, &cq, &dash, NULL);
    CHECK(s, e == KEEL_OK, "dashboard charge failed: %s", err_label(e));
    /* Drift 3: the ledger believes in a charge the gateway never saw. */
    char ghost[KEEL_GATEWAY_ID_MAX];
    snprintf(ghost, sizeof ghost, "ch_ghost_%s", d->run);
    ledger_set(d, ghost, 1999, "captured");

    keel_recon *r = NULL;
    recon_seen rs;
    memset(&rs, 0, sizeof rs);
    e = keel_recon_create(&r, NULL);
    CHECK(s, e == KEEL_OK, "keel_recon_create: %s", keel_err_name(e));
    if ((e = keel_recon_on(r, KEEL_RECON_MISSING_GATEWAY, page_oncall, &rs)) != KEEL_OK ||
        (e = keel_recon_on(r, KEEL_RECON_MISSING_INTERNAL, note_other, &rs)) != KEEL_OK ||
        (e = keel_recon_on(r, KEEL_RECON_STATUS_MISMATCH, note_other, &rs)) != KEEL_OK) {
        keel_recon_destroy(r);
        return fail(s, "keel_recon_on: %s", keel_err_name(e));
    }
    keel_diag diag = {0};
    for (size_t i = 0; i < d->nledger && e == KEEL_OK; i++) {
        keel_recon_record rec = {keel_str_c(d->ledger[i].id), d->ledger[i].amount, d->usd,
                                 keel_str_c(d->ledger[i].status), i + 1};
        e = keel_recon_add_internal(r, &rec, &diag);
    }
    size_t ncharges = keel_sandbox_charges(d->sb);
    for (size_t i = 1; i <= ncharges && e == KEEL_OK; i++) {
        char id[KEEL_GATEWAY_ID_MAX];
        snprintf(id, sizeof id, "ch_sandbox_%06zu", i);
        keel_charge_result cr;
        if ((e = keel_sandbox_charge(d->sb, id, &cr)) != KEEL_OK)
            break;
        keel_recon_record rec = {keel_str_c(cr.charge_id), cr.amount,
                                 cr.currency ? cr.currency : d->usd,
                                 keel_str_c(keel_charge_status_name(cr.status)), i};
        e = keel_recon_add_gateway(r, &rec, &diag);
    }
    if (e == KEEL_OK)
        e = keel_recon_finish(r);
    keel_recon_stats st;
    keel_recon_stats_get(r, &st);
    char summary[KEEL_RECON_SUMMARY_MAX];
    keel_recon_summary(r, summary, sizeof summary);
    keel_recon_destroy(r);
    CHECK(s, e == KEEL_OK, "reconciliation failed: %s %s", keel_err_name(e), diag.msg);
    CHECK(s,
          st.discrepancies == 3 && st.count[KEEL_RECON_MISSING_INTERNAL] == 1 &&
              st.count[KEEL_RECON_MISSING_GATEWAY] == 1 &&
              st.count[KEEL_RECON_STATUS_MISMATCH] == 1,
          "got \"%s\", expected one missing_internal, one missing_gateway and one "
          "status_mismatch",
          summary);
    CHECK(s, rs.npaged == 1 && strcmp(rs.paged[0], ghost) == 0,
          "on-call paged %zu times, expected once for %s", rs.npaged, ghost);
    CHECK(s, strcmp(rs.missing_internal, dash.charge_id) == 0,
          "missing_internal was %s, expected the dashboard charge %s", rs.missing_internal,
          dash.charge_id);
    CHECK(s, strcmp(rs.status_mismatch, d->charge1) == 0,
          "status_mismatch was %s, expected %s", rs.status_mismatch, d->charge1);

    detail(s, "%s", summary);
    detail(s, "on-call paged for missing_gateway: %s (in the ledger, unknown to the gateway)",
           rs.paged[0]);
    detail(s, "missing_internal: %s (dashboard charge); status_mismatch: %s (dashboard refund)",
           rs.missing_internal, rs.status_mismatch);
    return 1;
}

/* Read up to cap - 1 bytes of path; returns the length or -1. */
static long slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return -1;
    buf[n] = '\0';
    return (long)n;
}

/* [7] A PAN and CVV written through keel's logger come out redacted in the log file. */
static int scenario_redaction(demo *d, scen *s)
{
    keel_logger *lg = keel_logger_get("app.support");
    KEEL_LOG_INFO(lg, "%s", SEED_LOG_LINE);
    keel_err e = keel_log_flush(5000);
    CHECK(s, e == KEEL_OK, "log flush: %s", keel_err_name(e));

    char path[DEMO_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/app.json", d->log_dir);
    size_t cap = 4u << 20;
    char *text = malloc(cap);
    CHECK(s, text != NULL, "out of memory");
    long n = slurp(path, text, cap);
    if (n < 0) {
        free(text);
        return fail(s, "cannot read %s", path);
    }
    int leaked = strstr(text, "4111-1111-1111-1111") != NULL ||
                 strstr(text, "4111111111111111") != NULL || strstr(text, "cvv: 999") != NULL;
    char message[256] = "";
    size_t records = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        records++;
        json_t *j = json_loads(line, 0, NULL);
        const char *lgname = json_string_value(json_object_get(j, "logger"));
        const char *msg = json_string_value(json_object_get(j, "message"));
        if (lgname && msg && strcmp(lgname, "app.support") == 0)
            snprintf(message, sizeof message, "%s", msg);
        json_decref(j);
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    free(text);
    CHECK(s, !leaked, "card data found unredacted in %s", path);
    CHECK(s, message[0] != '\0', "the support record is missing from %s", path);
    CHECK(s, strcmp(message, SEED_REDACTED) == 0, "logged message is \"%s\", expected \"%s\"",
          message, SEED_REDACTED);

    detail(s, "logged: %s", message);
    detail(s, "logs/app.json: %zu records, no PAN or CVV anywhere (redaction hook on every "
              "record)",
           records);
    return 1;
}

/* -------------------------------------------------------- setup/teardown -- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void demo_teardown(demo *d)
{
    keel_chain_destroy(d->charge_stack);
    keel_idem_destroy(d->idem);
    keel_idem_store_destroy(d->idem_store);
    keel_breaker_destroy(d->breaker);
    keel_retry_destroy(d->retry);
    keel_limiter_destroy(d->limiter);
    keel_timer_destroy(d->timer);
    keel_timer_destroy(d->audit);
    keel_saga_def_destroy(d->checkout);
    keel_saga_log_destroy(d->saga_log);
    keel_fraud_engine_destroy(d->fraud);
    keel_velocity_destroy(d->velocity);
    keel_fraud_blocklist_destroy(d->blocklist);
    keel_webhook_dedup_destroy(d->dedup);
    keel_webhook_verifier_destroy(d->wh);
    keel_sandbox_destroy(d->sb);
    keel_store_close(d->store);
    keel_metrics_destroy(d->metrics);
    if (d->log_started) {
        keel_log_stop();
        (void)keel_log_set_hook(NULL, NULL);
    }
    if (d->own_dir)
        nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int mkdir_p(const char *path)
{
    char tmp[DEMO_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static keel_err demo_setup(demo *d, const char *dir, const char *db, keel_diag *diag)
{
    keel_err e;
    uint8_t rnd[3];
    if ((e = keel_random_bytes(rnd, sizeof rnd)) != KEEL_OK)
        return keel_diag_set(diag, e, 0, "random: %s", keel_strerror(e));
    snprintf(d->run, sizeof d->run, "%02x%02x%02x", rnd[0], rnd[1], rnd[2]);

    if (dir != NULL) {
        if (strlen(dir) >= sizeof d->dir || mkdir_p(dir) != 0)
            return keel_diag_set(diag, KEEL_EIO, 0, "cannot create directory '%s'", dir);
        snprintf(d->dir, sizeof d->dir, "%s", dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) >= sizeof d->dir - 32)
            tmp = "/tmp";
        snprintf(d->dir, sizeof d->dir, "%s/keel-demo-XXXXXX", tmp);
        if (mkdtemp(d->dir) == NULL)
            return keel_diag_set(diag, KEEL_EIO, 0, "cannot create a temporary directory: %s",
                                 strerror(errno));
        d->own_dir = 1;
    }
    snprintf(d->log_dir, sizeof d->log_dir, "%s/logs", d->dir);
    if (db != NULL)
        snprintf(d->db_path, sizeof d->db_path, "%s", db);
    else
        snprintf(d->db_path, sizeof d->db_path, "%s/demo.db", d->dir);

    /* Redaction before any payment code runs (the seed's production checklist). */
    if ((e = keel_redact_install_log_hook()) != KEEL_OK)
        return keel_diag_set(diag, e, 0, "redaction hook: %s", keel_strerror(e));
    keel_log_config lc;
    keel_log_config_default(&lc);
    lc.dir = d->log_dir;
    lc.console = KEEL_LOG_CONSOLE_OFF;
    lc.level = KEEL_LOG_LEVEL_INFO;
    lc.overflow = KEEL_LOG_OVERFLOW_BLOCK;
    if ((e = keel_log_start(&lc)) != KEEL_OK)
        return keel_diag_set(diag, e, 0, "cannot start the logger in %s: %s", d->log_dir,
                             keel_strerror(e));
    d->log_started = 1;

    keel_manual_clock_init(&d->mc, 1000000);
    d->usd = keel_currency_find(keel_str_c("USD"));
    d->stock = STOCK_START;
    if (d->usd == NULL)
        return keel_diag_set(diag, KEEL_EINTERNAL, 0, "USD unknown");

    char url[DEMO_PATH_MAX + 16];
    snprintf(url, sizeof url, "sqlite:%s", d->db_path);
    keel_store_config sc;
    keel_store_config_default(&sc);
    sc.url = url;
    sc.pool_size = 2;
    if ((e = keel_store_open(&d->store, &sc, diag)) != KEEL_OK)
        return e;
    if ((e = keel_metrics_create(&d->metrics)) != KEEL_OK)
        return keel_diag_set(diag, e, 0, "metrics: %s", keel_strerror(e));

    keel_sandbox_config sbc;
    keel_sandbox_config_default(&sbc);
    sbc.clock = &d->mc.clock;
    if ((e = keel_sandbox_create(&d->sb, &sbc, diag)) != KEEL_OK)
        return e;
    d->gw = keel_sandbox_gateway(d->sb);

    if ((e = build_charge_stack(d, diag)) != KEEL_OK)
        return e;

    /* Fraud engine: the seed's rules. */
    keel_fraud_config fc;
    keel_fraud_config_default(&fc);
    fc.review_threshold = 50;
    keel_velocity_memory_config vmc;
    keel_velocity_memory_config_default(&vmc);
    vmc.clock = &d->mc.clock;
    keel_fraud_velocity_config vc;
    keel_fraud_velocity_config_default(&vc);
    vc.key = KEEL_FRAUD_KEY_USER_ID;
    vc.max_count = 5;
    vc.window_ms = 3600000;
    keel_fraud_amount_limit lim = {d->usd, 200000};
    keel_fraud_amount_config ac;
    keel_fraud_amount_config_default(&ac);
    ac.limits = &lim;
    ac.nlimits = 1;
    if ((e = keel_fraud_blocklist_create(&d->blocklist)) != KEEL_OK ||
        (e = keel_fraud_blocklist_add(d->blocklist, KEEL_FRAUD_LIST_EMAIL, BLOCKED_EMAIL)) !=
            KEEL_OK ||
        (e = keel_velocity_memory_create(&d->velocity, &vmc, diag)) != KEEL_OK ||
        (e = keel_fraud_engine_create(&d->fraud, &fc, diag)) != KEEL_OK)
        return keel_diag_set(diag, e, 0, "fraud engine: %s", keel_strerror(e));
    vc.tracker = d->velocity;
    if ((e = keel_fraud_add_blocklist(d->fraud, "blocklist", d->blocklist, diag)) != KEEL_OK ||
        (e = keel_fraud_add_velocity(d->fraud, "user_hourly", &vc, diag)) != KEEL_OK ||
        (e = keel_fraud_add_country_mismatch(d->fraud, "country_mismatch", NULL, diag)) !=
            KEEL_OK ||
        (e = keel_fraud_add_high_amount(d->fraud, "high_amount", &ac, diag)) != KEEL_OK)
        return e;

    if ((e = build_checkout(d, diag)) != KEEL_OK)
        return e;

    keel_webhook_config wc;
    keel_webhook_config_default(&wc);
    wc.secret_list = WEBHOOK_SECRET;
    keel_webhook_dedup_config dc;
    keel_webhook_dedup_config_default(&dc);
    if ((e = keel_webhook_verifier_create(&d->wh, &wc, diag)) != KEEL_OK ||
        (e = keel_webhook_dedup_sql_create(&d->dedup, d->store, &dc, diag)) != KEEL_OK)
        return e;
    return KEEL_OK;
}

/* --------------------------------------------------------------- output -- */

static void print_text(const scen *sc, size_t n, size_t passed)
{
    for (size_t i = 0; i < n; i++) {
        printf("[%zu] %s ... %s\n", i + 1, sc[i].title, sc[i].ok ? "ok" : "FAILED");
        for (size_t k = 0; k < sc[i].ndetail; k++)
            printf("    %s\n", sc[i].detail[k]);
        if (!sc[i].ok)
            printf("    failed: %s\n", sc[i].why);
    }
    printf("%zu/%zu scenarios ok\n", passed, n);
}

static int print_json(const scen *sc, size_t n, size_t passed)
{
    json_t *arr = json_array();
    json_t *root = json_pack("{s:o, s:I, s:I, s:b}", "scenarios", arr, "passed",
                             (json_int_t)passed, "total", (json_int_t)n, "ok", passed == n);
    if (root == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *det = json_array();
        for (size_t k = 0; k < sc[i].ndetail; k++)
            json_array_append_new(det, json_string(sc[i].detail[k]));
        json_t *o = json_pack("{s:I, s:s, s:b, s:o}", "n", (json_int_t)(i + 1), "name",
                              sc[i].title, "ok", sc[i].ok, "details", det);
        if (o != NULL && !sc[i].ok)
            json_object_set_new(o, "error", json_string(sc[i].why));
        json_array_append_new(arr, o);
    }
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (s == NULL)
        return -1;
    printf("%s\n", s);
    free(s);
    return 0;
}

int keel_cmd_demo(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "checkout") != 0) {
        fprintf(stderr, "keel demo: unknown demo '%s' (only 'checkout')\n", argv[1]);
        usage(stderr);
        return 2;
    }
    const char *db = NULL, *dir = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if ((strcmp(argv[i], "--db") == 0 || strcmp(argv[i], "--dir") == 0) &&
                   i + 1 < argc && argv[i + 1][0] != '\0') {
            if (strcmp(argv[i], "--db") == 0)
                db = argv[++i];
            else
                dir = argv[++i];
        } else {
            fprintf(stderr, "keel demo checkout: bad argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    demo *d = calloc(1, sizeof *d);
    if (d == NULL) {
        fprintf(stderr, "keel demo checkout: out of memory\n");
        return 1;
    }
    keel_diag diag = {0};
    keel_err e = demo_setup(d, dir, db, &diag);
    if (e != KEEL_OK) {
        fprintf(stderr, "keel demo checkout: setup failed: %s (%s)\n",
                diag.msg[0] ? diag.msg : keel_strerror(e), keel_err_name(e));
        demo_teardown(d);
        free(d);
        return 1;
    }

    static const struct {
        const char *title;
        int (*fn)(demo *d, scen *s);
    } plan[NSCEN] = {
        {"success after transient network errors", scenario_success_after_retry},
        {"idempotent replay, no second gateway call", scenario_idempotent_replay},
        {"shipment failure compensated in reverse order", scenario_shipment_failure},
        {"blocklisted e-mail blocked before the gateway", scenario_fraud_block},
        {"webhook accepted, duplicate deduplicated, tampered rejected", scenario_webhooks},
        {"reconciliation finds three discrepancies, on-call paged", scenario_reconcile},
        {"card data redacted in the log", scenario_redaction},
    };
    scen sc[NSCEN];
    size_t passed = 0;
    for (size_t i = 0; i < NSCEN; i++) {
        memset(&sc[i], 0, sizeof sc[i]);
        sc[i].title = plan[i].title;
        sc[i].ok = 1;
        plan[i].fn(d, &sc[i]);
        passed += sc[i].ok ? 1u : 0u;
    }
    if (json) {
        if (print_json(sc, NSCEN, passed) != 0)
            fprintf(stderr, "keel demo checkout: out of memory\n");
    } else {
        print_text(sc, NSCEN, passed);
    }
    if (!d->own_dir)
        fprintf(stderr, "keel demo checkout: files kept in %s\n", d->dir);
    demo_teardown(d);
    free(d);
    return passed == NSCEN ? 0 : 1;
}
