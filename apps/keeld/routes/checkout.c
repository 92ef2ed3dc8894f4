/* checkout.c - POST /api/v1/checkout: an order paid and shipped by a saga (seed 004).
 *
 * The request runs under the Idempotency-Key protocol (required).  It validates the basket,
 * prices it from the products table (minor units, overflow-checked), writes the order row
 * (pending) and drives the saga "checkout" (id "checkout_<order id>") on the durable SQL saga
 * log:
 *
 *   reserve_inventory   one transaction: reserved += q where on_hand - reserved >= q, for every
 *                       line, and a reservations row per line      / release_inventory
 *   authorize_payment   fraud screening (blocklist, high amount), then the gateway authorize
 *                       through the payments breaker -> retry -> timer chain, idempotency key
 *                       "checkout:<order id>:authorize"            / void_payment (void, or
 *                       refund when captured; tolerates nothing to undo)
 *   capture_payment     gateway capture ("...:capture")
 *   create_shipment     one transaction: shipment row, reserved stock leaves on_hand, order
 *                       completed                                  / cancel_shipment
 *
 * The order row follows the saga: pending -> completed | failed (compensated) |
 * needs_attention (a compensation failed for good: logged at ERROR, page the on-call).
 * Sagas a crash left in flight are compensated by keeld_checkout_recover() at startup and by
 * a periodic task (leases keep a live instance's sagas out of reach).
 *
 * Also: PUT/GET /api/v1/products/{id}/inventory (stock) and GET /api/v1/orders/{id}.
 * With ENVIRONMENT=test: blocked@example.com is on the fraud blocklist,
 * fail-shipment@example.com makes create_shipment fail and hang@example.com makes
 * capture_payment sleep 30 s first (crash-recovery tests). */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <keel/fraud.h>
#include <keel/gateway.h>
#include <keel/idempotency.h>
#include <keel/payment.h>
#include <keel/saga.h>
#include <keel/validate.h>

#include "../repos/products.h"
#include "../routes.h"
#include "payments.h"

#define MAX_LINES 50
#define OUT_OF_STOCK KEEL_ERANGE /* reserve_inventory's error when a line cannot be held */
#define SHIPPING_DOWN KEEL_EIO   /* create_shipment's error when shipping is unavailable */
#define TEST_LEASE_MS 3000u      /* ENVIRONMENT=test: sagas of a killed keeld free up fast */
#define RECOVERY_INTERVAL_MS 60000u

typedef struct checkout {
    keel_store *store;
    keel_saga_log *log;
    keel_saga_def *def;
    keel_fraud_blocklist *blocklist;
    keel_fraud_engine *fraud;
    keel_idem_http *idem;
    int test_env;
} checkout;

static checkout C;

static keel_logger *logger(void)
{
    return keel_logger_get("app.checkout");
}

static const char *ctx_str(const json_t *ctx, const char *key)
{
    return json_string_value(json_object_get(ctx, key));
}

static keel_err ctx_set(json_t *ctx, const char *key, json_t *v)
{
    return json_object_set_new(ctx, key, v) == 0 ? KEEL_OK : KEEL_ENOMEM;
}

/* Run one statement to completion; *changes (may be NULL) receives the rows changed. */
static keel_err exec_stmt(keel_stmt *st, int64_t *changes)
{
    int r;
    while ((r = keel_stmt_step(st, NULL)) == 1) {
    }
    if (r < 0)
        return (keel_err)r;
    if (changes != NULL)
        *changes = keel_stmt_changes(st);
    return KEEL_OK;
}

/* UPDATE orders SET status (and charge_id when not NULL). */
static keel_err order_set(keel_db *db, const char *order_id, const char *status,
                          const char *charge_id)
{
    keel_stmt *st;
    keel_err e;
    if (charge_id != NULL)
        e = keel_db_prepare(db,
                            "UPDATE orders SET charge_id = ?, updated_at_ms = ? WHERE id = ?",
                            &st, NULL);
    else
        e = keel_db_prepare(db, "UPDATE orders SET status = ?, updated_at_ms = ? WHERE id = ?",
                            &st, NULL);
    if (e == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 1, charge_id ? charge_id : status, SIZE_MAX)) == KEEL_OK &&
        (e = keel_stmt_bind_int64(st, 2, keel_time_wall_ms())) == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 3, order_id, SIZE_MAX)) == KEEL_OK)
        e = exec_stmt(st, NULL);
    return e;
}

typedef struct order_update {
    const char *order_id;
    const char *status;
    const char *charge_id;
} order_update;

static keel_err order_update_tx(keel_db *db, void *ud)
{
    const order_update *u = ud;
    return order_set(db, u->order_id, u->status, u->charge_id);
}

static keel_err order_update_now(const char *order_id, const char *status, const char *charge_id)
{
    order_update u = {order_id, status, charge_id};
    keel_diag d;
    memset(&d, 0, sizeof(d));
    return keel_store_tx(C.store, order_update_tx, &u, &d);
}

/* -------------------------------------------------------------- the saga -- */

typedef struct line {
    char product_id[KEEL_UUID_SIZE];
    int64_t quantity;
} line;

/* The order's lines from the saga context (validated when the order was made). */
static size_t ctx_lines(const json_t *ctx, line *out)
{
    json_t *items = json_object_get(ctx, "items");
    size_t n = 0, i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *pid = ctx_str(it, "product_id");
        if (n >= MAX_LINES || pid == NULL)
            break;
        snprintf(out[n].product_id, sizeof(out[n].product_id), "%s", pid);
        out[n].quantity = (int64_t)json_integer_value(json_object_get(it, "quantity"));
        n++;
    }
    return n;
}

typedef struct stock_job {
    const json_t *ctx;
    const char *order_id;
    char short_product[KEEL_UUID_SIZE]; /* reserve: the line that could not be held */
    int changed;                        /* release / cancel: something was undone */
} stock_job;

static keel_err reserve_tx(keel_db *db, void *ud)
{
    stock_job *j = ud;
    line lines[MAX_LINES];
    size_t n = ctx_lines(j->ctx, lines);
    int64_t now = keel_time_wall_ms();
    for (size_t i = 0; i < n; i++) {
        keel_stmt *st;
        int64_t changes = 0;
        keel_err e = keel_db_prepare(db,
                                     "UPDATE inventory SET reserved = reserved + ?, "
                                     "updated_at_ms = ? WHERE product_id = ? AND "
                                     "on_hand - reserved >= ?",
                                     &st, NULL);
        if (e != KEEL_OK || (e = keel_stmt_bind_int64(st, 1, lines[i].quantity)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 2, now)) != KEEL_OK ||
            (e = keel_stmt_bind_text(st, 3, lines[i].product_id, SIZE_MAX)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 4, lines[i].quantity)) != KEEL_OK ||
            (e = exec_stmt(st, &changes)) != KEEL_OK)
            return e;
        if (changes == 0) {
            memcpy(j->short_product, lines[i].product_id, sizeof(j->short_product));
            return OUT_OF_STOCK; /* rolls the whole reservation back */
        }
        if ((e = keel_db_prepare(db,
                                 "INSERT INTO reservations (order_id, product_id, quantity) "
                                 "VALUES (?, ?, ?)",
                                 &st, NULL)) != KEEL_OK ||
            (e = keel_stmt_bind_text(st, 1, j->order_id, SIZE_MAX)) != KEEL_OK ||
            (e = keel_stmt_bind_text(st, 2, lines[i].product_id, SIZE_MAX)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 3, lines[i].quantity)) != KEEL_OK ||
            (e = exec_stmt(st, NULL)) != KEEL_OK)
            return e;
    }
    return KEEL_OK;
}

static keel_err reserve_inventory(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    (void)ud;
    stock_job j;
    memset(&j, 0, sizeof(j));
    j.ctx = ctx;
    j.order_id = ctx_str(ctx, "order_id");
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_store_tx(C.store, reserve_tx, &j, &d);
    if (e == OUT_OF_STOCK)
        return ctx_set(ctx, "out_of_stock", json_string(j.short_product)) == KEEL_OK
                   ? OUT_OF_STOCK
                   : KEEL_ENOMEM;
    if (e != KEEL_OK)
        KEEL_LOG_ERROR(logger(), "order %s: reserve_inventory: %s (%s)", j.order_id,
                       keel_strerror(e), d.msg[0] ? d.msg : "-");
    return e;
}

/* The order's reservation rows (at most MAX_LINES). */
static keel_err load_reservations(keel_db *db, const char *order_id, line *out, size_t *n)
{
    keel_stmt *st;
    *n = 0;
    keel_err e = keel_db_prepare(
        db, "SELECT product_id, quantity FROM reservations WHERE order_id = ?", &st, NULL);
    if (e != KEEL_OK || (e = keel_stmt_bind_text(st, 1, order_id, SIZE_MAX)) != KEEL_OK)
        return e;
    int r;
    while ((r = keel_stmt_step(st, NULL)) == 1) {
        if (*n >= MAX_LINES)
            continue;
        const char *pid = keel_stmt_text(st, 0, NULL);
        snprintf(out[*n].product_id, sizeof(out[*n].product_id), "%s", pid ? pid : "");
        out[*n].quantity = keel_stmt_int64(st, 1);
        (*n)++;
    }
    return r < 0 ? (keel_err)r : KEEL_OK;
}

static keel_err delete_reservations(keel_db *db, const char *order_id)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, "DELETE FROM reservations WHERE order_id = ?", &st, NULL);
    if (e == KEEL_OK && (e = keel_stmt_bind_text(st, 1, order_id, SIZE_MAX)) == KEEL_OK)
        e = exec_stmt(st, NULL);
    return e;
}

/* Idempotent: whatever the order still holds goes back; nothing held is fine. */
static keel_err release_tx(keel_db *db, void *ud)
{
    stock_job *j = ud;
    line held[MAX_LINES];
    size_t n = 0;
    keel_err e = load_reservations(db, j->order_id, held, &n);
    int64_t now = keel_time_wall_ms();
    for (size_t i = 0; e == KEEL_OK && i < n; i++) {
        keel_stmt *st;
        if ((e = keel_db_prepare(db,
                                 "UPDATE inventory SET reserved = CASE WHEN reserved >= ? "
                                 "THEN reserved - ? ELSE 0 END, updated_at_ms = ? "
                                 "WHERE product_id = ?",
                                 &st, NULL)) == KEEL_OK &&
            (e = keel_stmt_bind_int64(st, 1, held[i].quantity)) == KEEL_OK &&
            (e = keel_stmt_bind_int64(st, 2, held[i].quantity)) == KEEL_OK &&
            (e = keel_stmt_bind_int64(st, 3, now)) == KEEL_OK &&
            (e = keel_stmt_bind_text(st, 4, held[i].product_id, SIZE_MAX)) == KEEL_OK)
            e = exec_stmt(st, NULL);
    }
    if (e == KEEL_OK && n > 0)
        e = delete_reservations(db, j->order_id);
    j->changed = n > 0;
    return e;
}

static keel_err release_inventory(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)ud;
    stock_job j;
    memset(&j, 0, sizeof(j));
    j.ctx = ctx;
    j.order_id = ctx_str(ctx, "order_id");
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_store_tx(C.store, release_tx, &j, &d);
    if (e != KEEL_OK)
        KEEL_LOG_WARNING(logger(), "order %s: release_inventory attempt %u: %s (%s)",
                         j.order_id, call->attempt, keel_strerror(e), d.msg[0] ? d.msg : "-");
    else if (j.changed)
        KEEL_LOG_INFO(logger(), "order %s: reserved stock released", j.order_id);
    return e;
}

static keel_err authorize_payment(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    (void)ud;
    const char *order_id = ctx_str(ctx, "order_id");
    const keel_currency *cur = keel_currency_find(keel_str_c(ctx_str(ctx, "currency")));
    int64_t amount = (int64_t)json_integer_value(json_object_get(ctx, "amount"));
    if (cur == NULL || amount <= 0)
        return KEEL_EINVAL;

    /* Fraud screening first: a blocked order never reaches the gateway. */
    keel_fraud_context fc;
    memset(&fc, 0, sizeof(fc));
    fc.email = ctx_str(ctx, "email");
    fc.amount = amount;
    fc.currency = cur;
    keel_fraud_result fr;
    keel_pay_failure fail;
    memset(&fail, 0, sizeof(fail));
    keel_err e = keel_fraud_evaluate(C.fraud, &fc, &fr);
    if (e == KEEL_OK)
        e = keel_fraud_result_err(&fr, &fail);
    if (e == KEEL_OK && fr.decision == KEEL_FRAUD_REVIEW)
        KEEL_LOG_WARNING(logger(), "order %s: flagged for fraud review (score %lld)", order_id,
                         (long long)fr.total_score);
    if (e == KEEL_OK) {
        char key[KEEL_GATEWAY_IDEM_KEY_MAX];
        snprintf(key, sizeof(key), "checkout:%s:authorize", order_id);
        keel_charge_request req;
        memset(&req, 0, sizeof(req));
        req.amount = amount;
        req.currency = cur;
        req.payment_token = ctx_str(ctx, "payment_token");
        req.idempotency_key = key;
        req.customer_email = fc.email;
        req.description = "keeld checkout";
        keel_charge_result res;
        e = keeld_gateway_call(KEEL_GATEWAY_AUTHORIZE, &req, &res, &fail);
        if (e == KEEL_OK) {
            if ((e = ctx_set(ctx, "charge_id", json_string(res.charge_id))) != KEEL_OK)
                return e;
            (void)json_object_del(ctx, "payment_token"); /* not needed any more */
            if (order_update_now(order_id, NULL, res.charge_id) != KEEL_OK)
                KEEL_LOG_WARNING(logger(), "order %s: could not record charge %s", order_id,
                                 res.charge_id);
            return KEEL_OK;
        }
    } else if (e == KEEL_EPAY_FRAUD_BLOCKED || e == KEEL_EPAY_AUTH_REQUIRED) {
        KEEL_LOG_WARNING(logger(), "order %s: fraud screening: %s by rule %s", order_id,
                         keel_fraud_decision_name(fr.decision),
                         fr.blocked_by ? fr.blocked_by : "-");
    }
    /* The failure details travel in the context to the answer. */
    if (ctx_set(ctx, "decline_code", json_string(fail.decline_code)) != KEEL_OK ||
        ctx_set(ctx, "failure", json_string(fail.message)) != KEEL_OK)
        return KEEL_ENOMEM;
    return e;
}

static int declined_with(keel_err e, const keel_pay_failure *f, const char *code)
{
    return e == KEEL_EPAY_GATEWAY && strcmp(f->decline_code, code) == 0;
}

static keel_err refund_charge(const char *order_id, const char *charge_id, keel_pay_failure *f)
{
    char key[KEEL_GATEWAY_IDEM_KEY_MAX];
    snprintf(key, sizeof(key), "checkout:%s:refund", order_id);
    keel_refund_request rr = {charge_id, 0, "requested_by_customer", key};
    return keeld_gateway_call(KEEL_GATEWAY_REFUND, &rr, NULL, f);
}

/* Compensation of authorize_payment: void an authorized charge, refund a captured one.  When
 * the step was interrupted (no charge id recorded), the authorize is replayed with the same
 * gateway idempotency key to learn whether a charge exists - a replay creates nothing new,
 * and a charge the crash prevented is created and voided at once (no money moves). */
static keel_err void_payment(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)ud;
    const char *order_id = ctx_str(ctx, "order_id");
    const char *reversal = ctx_str(ctx, "payment_reversal");
    if (reversal != NULL)
        return KEEL_OK; /* already undone by an earlier attempt */
    keel_pay_failure f;
    memset(&f, 0, sizeof(f));
    keel_err e;
    char charge_id[KEEL_GATEWAY_ID_MAX];
    const char *known = ctx_str(ctx, "charge_id");
    if (known != NULL) {
        snprintf(charge_id, sizeof(charge_id), "%s", known);
    } else {
        const char *token = ctx_str(ctx, "payment_token");
        if (!call->recovering || token == NULL)
            return KEEL_OK; /* the authorize failed: nothing was charged */
        /* An order the fraud screening stops never reached the gateway. */
        keel_fraud_context fc;
        memset(&fc, 0, sizeof(fc));
        fc.email = ctx_str(ctx, "email");
        fc.amount = (int64_t)json_integer_value(json_object_get(ctx, "amount"));
        fc.currency = keel_currency_find(keel_str_c(ctx_str(ctx, "currency")));
        keel_fraud_result fr;
        if (keel_fraud_evaluate(C.fraud, &fc, &fr) == KEEL_OK &&
            keel_fraud_result_err(&fr, NULL) != KEEL_OK)
            return KEEL_OK;
        char key[KEEL_GATEWAY_IDEM_KEY_MAX];
        snprintf(key, sizeof(key), "checkout:%s:authorize", order_id);
        keel_charge_request req;
        memset(&req, 0, sizeof(req));
        req.amount = (int64_t)json_integer_value(json_object_get(ctx, "amount"));
        req.currency = keel_currency_find(keel_str_c(ctx_str(ctx, "currency")));
        req.payment_token = token;
        req.idempotency_key = key;
        req.customer_email = ctx_str(ctx, "email");
        req.description = "keeld checkout";
        keel_charge_result res;
        e = keeld_gateway_call(KEEL_GATEWAY_AUTHORIZE, &req, &res, &f);
        if (e != KEEL_OK && !keel_pay_err_retriable(e) && e != KEEL_EOPEN)
            return KEEL_OK; /* declined / blocked: no charge exists */
        if (e != KEEL_OK)
            return e;
        snprintf(charge_id, sizeof(charge_id), "%s", res.charge_id);
        if ((e = ctx_set(ctx, "charge_id", json_string(charge_id))) != KEEL_OK)
            return e;
    }
    const char *done = "voided";
    if (json_is_true(json_object_get(ctx, "captured"))) {
        e = refund_charge(order_id, charge_id, &f);
        done = "refunded";
    } else {
        char key[KEEL_GATEWAY_IDEM_KEY_MAX];
        snprintf(key, sizeof(key), "checkout:%s:void", order_id);
        keel_void_request vr = {charge_id, key};
        e = keeld_gateway_call(KEEL_GATEWAY_VOID, &vr, NULL, &f);
        if (declined_with(e, &f, "charge_already_captured")) {
            e = refund_charge(order_id, charge_id, &f); /* captured before the crash */
            done = "refunded";
        } else if (declined_with(e, &f, "charge_already_voided")) {
            e = KEEL_OK;
        }
    }
    if (declined_with(e, &f, "resource_missing")) {
        /* The gateway has no such charge (the sandbox restarted empty): nothing holds money. */
        KEEL_LOG_WARNING(logger(), "order %s: charge %s unknown to the gateway; nothing to %s",
                         order_id, charge_id, strcmp(done, "voided") == 0 ? "void" : "refund");
        e = KEEL_OK;
        done = "unknown_to_gateway";
    }
    if (e != KEEL_OK) {
        KEEL_LOG_WARNING(logger(), "order %s: reversing charge %s failed (attempt %u): %s (%s)",
                         order_id, charge_id, call->attempt, keel_err_name(e),
                         f.decline_code[0] ? f.decline_code : "-");
        return e;
    }
    if (strcmp(done, "unknown_to_gateway") != 0)
        KEEL_LOG_INFO(logger(), "order %s: charge %s %s%s", order_id, charge_id, done,
                      call->recovering ? " (recovery)" : "");
    return ctx_set(ctx, "payment_reversal", json_string(done));
}

static keel_err capture_payment(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    (void)ud;
    if (C.test_env && json_is_true(json_object_get(ctx, "test_hang"))) {
        KEEL_LOG_INFO(logger(), "order %s: test hang in capture_payment",
                      ctx_str(ctx, "order_id"));
        struct timespec ts = {30, 0};
        while (nanosleep(&ts, &ts) != 0) {
        }
    }
    char key[KEEL_GATEWAY_IDEM_KEY_MAX];
    snprintf(key, sizeof(key), "checkout:%s:capture", ctx_str(ctx, "order_id"));
    keel_capture_request cr = {ctx_str(ctx, "charge_id"), 0, key};
    keel_pay_failure f;
    keel_err e = keeld_gateway_call(KEEL_GATEWAY_CAPTURE, &cr, NULL, &f);
    if (e != KEEL_OK)
        return e;
    return ctx_set(ctx, "captured", json_true());
}

static keel_err ship_tx(keel_db *db, void *ud)
{
    stock_job *j = ud;
    keel_stmt *st;
    int64_t now = keel_time_wall_ms();
    keel_err e;
    if ((e = keel_db_prepare(db, "INSERT INTO shipments (order_id, created_at_ms) VALUES (?, ?)",
                             &st, NULL)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 1, j->order_id, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 2, now)) != KEEL_OK || (e = exec_stmt(st, NULL)) != KEEL_OK)
        return e;
    /* The reserved stock leaves the warehouse. */
    line held[MAX_LINES];
    size_t n = 0;
    if ((e = load_reservations(db, j->order_id, held, &n)) != KEEL_OK)
        return e;
    for (size_t i = 0; i < n; i++) {
        if ((e = keel_db_prepare(db,
                                 "UPDATE inventory SET on_hand = on_hand - ?, reserved = "
                                 "reserved - ?, updated_at_ms = ? WHERE product_id = ?",
                                 &st, NULL)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 1, held[i].quantity)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 2, held[i].quantity)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 3, now)) != KEEL_OK ||
            (e = keel_stmt_bind_text(st, 4, held[i].product_id, SIZE_MAX)) != KEEL_OK ||
            (e = exec_stmt(st, NULL)) != KEEL_OK)
            return e;
    }
    if ((e = delete_reservations(db, j->order_id)) != KEEL_OK)
        return e;
    return order_set(db, j->order_id, "completed", NULL);
}

static keel_err create_shipment(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    (void)ud;
    stock_job j;
    memset(&j, 0, sizeof(j));
    j.ctx = ctx;
    j.order_id = ctx_str(ctx, "order_id");
    if (C.test_env && json_is_true(json_object_get(ctx, "test_fail_shipment"))) {
        KEEL_LOG_WARNING(logger(), "order %s: shipping unavailable (test)", j.order_id);
        return SHIPPING_DOWN;
    }
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_store_tx(C.store, ship_tx, &j, &d);
    if (e != KEEL_OK)
        KEEL_LOG_ERROR(logger(), "order %s: create_shipment: %s (%s)", j.order_id,
                       keel_strerror(e), d.msg[0] ? d.msg : "-");
    return e;
}

/* Undo a shipment whose outcome a crash left unknown: stock back on hand (idempotent). */
static keel_err unship_tx(keel_db *db, void *ud)
{
    stock_job *j = ud;
    keel_stmt *st;
    int64_t changes = 0;
    keel_err e = keel_db_prepare(db, "DELETE FROM shipments WHERE order_id = ?", &st, NULL);
    if (e != KEEL_OK || (e = keel_stmt_bind_text(st, 1, j->order_id, SIZE_MAX)) != KEEL_OK ||
        (e = exec_stmt(st, &changes)) != KEEL_OK || changes == 0)
        return e;
    j->changed = 1;
    line lines[MAX_LINES];
    size_t n = ctx_lines(j->ctx, lines);
    for (size_t i = 0; i < n; i++) {
        if ((e = keel_db_prepare(db,
                                 "UPDATE inventory SET on_hand = on_hand + ?, updated_at_ms = ? "
                                 "WHERE product_id = ?",
                                 &st, NULL)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 1, lines[i].quantity)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, 2, keel_time_wall_ms())) != KEEL_OK ||
            (e = keel_stmt_bind_text(st, 3, lines[i].product_id, SIZE_MAX)) != KEEL_OK ||
            (e = exec_stmt(st, NULL)) != KEEL_OK)
            return e;
    }
    return KEEL_OK;
}

static keel_err cancel_shipment(const keel_saga_call *call, json_t *ctx, void *ud)
{
    (void)call;
    (void)ud;
    stock_job j;
    memset(&j, 0, sizeof(j));
    j.ctx = ctx;
    j.order_id = ctx_str(ctx, "order_id");
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_store_tx(C.store, unship_tx, &j, &d);
    if (e == KEEL_OK && j.changed)
        KEEL_LOG_INFO(logger(), "order %s: shipment cancelled, stock restored", j.order_id);
    return e;
}

/* Bring the order row in line with the saga's final state. */
static void finish_order(const keel_saga_exec *x)
{
    json_t *ctx = keel_saga_exec_context(x);
    const char *order_id = ctx_str(ctx, "order_id");
    if (order_id == NULL)
        return;
    keel_saga_state s = keel_saga_exec_state(x);
    const char *status = s == KEEL_SAGA_COMPLETED     ? "completed"
                         : s == KEEL_SAGA_COMPENSATED ? "failed"
                                                      : "needs_attention";
    if (s == KEEL_SAGA_FAILED_COMPENSATION) {
        int step = keel_saga_exec_ncompensation_failures(x) > 0
                       ? keel_saga_exec_compensation_failure(x, 0)
                       : -1;
        const keel_saga_step_result *r = step >= 0 ? keel_saga_exec_step(x, (size_t)step) : NULL;
        KEEL_LOG_ERROR(logger(),
                       "order %s: saga %s FAILED_COMPENSATION (%s could not be undone: %s); "
                       "charge %s may still hold money - manual action needed",
                       order_id, keel_saga_exec_id(x), r ? r->name : "?",
                       r ? keel_err_name(r->error) : "?",
                       ctx_str(ctx, "charge_id") ? ctx_str(ctx, "charge_id") : "-");
    }
    keel_err e = order_update_now(order_id, status, NULL);
    if (e != KEEL_OK)
        KEEL_LOG_ERROR(logger(), "order %s: could not set status %s: %s", order_id, status,
                       keel_strerror(e));
}

static void on_recovered(const keel_saga_exec *x, void *ud)
{
    (void)ud;
    KEEL_LOG_WARNING(logger(), "recovered saga %s: %s (interrupted at step %d)",
                     keel_saga_exec_id(x), keel_saga_state_name(keel_saga_exec_state(x)),
                     keel_saga_exec_failed_step(x));
    finish_order(x);
}

keel_err keeld_checkout_recover(keel_diag *diag)
{
    if (C.def == NULL || C.log == NULL)
        return KEEL_ESTATE;
    keel_saga_recover_config rc;
    keel_saga_recover_config_default(&rc);
    rc.id_prefix = "checkout_";
    rc.on_recovered = on_recovered;
    keel_saga_recover_report rep;
    memset(&rep, 0, sizeof(rep));
    const keel_saga_def *defs[1] = {C.def};
    keel_err e = keel_saga_recover_log(C.log, defs, 1, &rc, &rep, diag);
    if (rep.found > 0 || e != KEEL_OK) {
        keel_log_field f[6] = {KEEL_LF_INT("found", (int64_t)rep.found),
                               KEEL_LF_INT("completed", (int64_t)rep.completed),
                               KEEL_LF_INT("compensated", (int64_t)rep.compensated),
                               KEEL_LF_INT("failed_compensation",
                                           (int64_t)rep.failed_compensation),
                               KEEL_LF_INT("busy", (int64_t)rep.busy),
                               KEEL_LF_INT("errors", (int64_t)rep.errors)};
        KEEL_LOG_FIELDS(logger(), e == KEEL_OK ? KEEL_LOG_LEVEL_INFO : KEEL_LOG_LEVEL_ERROR, f,
                        6,
                        "saga recovery: %zu in flight, %zu recovered (%zu completed, %zu "
                        "compensated, %zu failed compensation), %zu busy, %zu errors%s%s",
                        rep.found, rep.recovered, rep.completed, rep.compensated,
                        rep.failed_compensation, rep.busy, rep.errors, e != KEEL_OK ? ": " : "",
                        e != KEEL_OK ? (diag && diag->msg[0] ? diag->msg : keel_strerror(e))
                                     : "");
    }
    return e;
}

static keel_err recovery_task(void *ud)
{
    (void)ud;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    return keeld_checkout_recover(&d);
}

/* ------------------------------------------------------------ requests -- */

static const keel_schema_field item_fields[] = {
    {.name = "product_id", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED,
     .format = KEEL_SCHEMA_FMT_UUID},
    {.name = "quantity", .type = KEEL_SCHEMA_INT, .flags = KEEL_SCHEMA_REQUIRED, .has_min = 1,
     .min = 1, .has_max = 1, .max = 1000},
};
static const keel_schema item_schema = {item_fields, sizeof(item_fields) / sizeof(item_fields[0]),
                                        0};
static const keel_schema_field checkout_fields[] = {
    {.name = "email", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED,
     .format = KEEL_SCHEMA_FMT_EMAIL, .max_len = KEEL_GATEWAY_EMAIL_MAX},
    {.name = "items", .type = KEEL_SCHEMA_ARRAY, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 1,
     .max_len = MAX_LINES, .items = KEEL_SCHEMA_OBJECT, .object = &item_schema},
    {.name = "payment_token", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED,
     .min_len = 1, .max_len = KEEL_GATEWAY_ID_MAX - 1},
    {.name = "currency", .type = KEEL_SCHEMA_STRING, .format = KEEL_SCHEMA_FMT_CURRENCY},
};
static const keel_schema checkout_schema = {
    checkout_fields, sizeof(checkout_fields) / sizeof(checkout_fields[0]), 0};

static keel_err field_problem(keel_ctx *cx, json_t *loc, const char *msg, const char *type)
{
    return keel_resp_problem(cx, 422, NULL, "The request body is invalid.",
                             json_pack("[{s:o, s:s, s:s}]", "loc", loc, "msg", msg, "type",
                                       type));
}

typedef struct basket {
    line lines[MAX_LINES];
    size_t n;
    int64_t amount;
    const keel_currency *currency;
    char order_id[KEEL_UUID_SIZE];
    const char *email;
} basket;

typedef struct order_job {
    basket *b;
    json_t *ctx;
} order_job;

static keel_err insert_order_tx(keel_db *db, void *ud)
{
    const basket *b = ud;
    keel_stmt *st;
    int64_t now = keel_time_wall_ms();
    keel_err e = keel_db_prepare(db,
                                 "INSERT INTO orders (id, email, status, amount_minor, currency, "
                                 "created_at_ms, updated_at_ms) VALUES (?, ?, 'pending', ?, ?, "
                                 "?, ?)",
                                 &st, NULL);
    if (e == KEEL_OK && (e = keel_stmt_bind_text(st, 1, b->order_id, SIZE_MAX)) == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 2, b->email, SIZE_MAX)) == KEEL_OK &&
        (e = keel_stmt_bind_int64(st, 3, b->amount)) == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 4, b->currency->code, SIZE_MAX)) == KEEL_OK &&
        (e = keel_stmt_bind_int64(st, 5, now)) == KEEL_OK &&
        (e = keel_stmt_bind_int64(st, 6, now)) == KEEL_OK)
        e = exec_stmt(st, NULL);
    return e;
}

/* Price the basket from the products table: 422 for unknown products, mixed or mismatched
 * currencies and totals beyond int64.  Returns KEEL_OK with b filled, or KEEL_EINVAL when a
 * problem answer was set. */
static keel_err price_basket(keel_ctx *cx, json_t *body, basket *b)
{
    json_t *items = json_object_get(body, "items");
    size_t i;
    json_t *it;
    /* Merge repeated products into one line. */
    json_array_foreach(items, i, it)
    {
        const char *pid = ctx_str(it, "product_id");
        int64_t q = (int64_t)json_integer_value(json_object_get(it, "quantity"));
        size_t k;
        for (k = 0; k < b->n && strcasecmp(b->lines[k].product_id, pid) != 0; k++) {
        }
        if (k == b->n) {
            snprintf(b->lines[k].product_id, sizeof(b->lines[k].product_id), "%s", pid);
            b->n++;
        }
        b->lines[k].quantity += q;
    }
    const char *want = json_string_value(json_object_get(body, "currency"));
    keel_db *db;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_db_acquire(C.store, &db, &d);
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d) == KEEL_OK ? KEEL_EINVAL : KEEL_ENOMEM;
    json_t *errors = json_array();
    char currency[4] = "";
    b->amount = 0;
    int overflow = 0;
    for (size_t k = 0; k < b->n && e == KEEL_OK; k++) {
        product p;
        e = products_get(db, b->lines[k].product_id, &p, &d);
        if (e == KEEL_ENOTFOUND) {
            e = KEEL_OK;
            json_array_append_new(
                errors, json_pack("{s:[s,s,I,s], s:s, s:s}", "loc", "body", "items",
                                  (json_int_t)k, "product_id", "msg", "Unknown product", "type",
                                  "unknown_product"));
            continue;
        }
        if (e != KEEL_OK)
            break;
        /* products_get returns the canonical (stored) spelling of the id */
        snprintf(b->lines[k].product_id, sizeof(b->lines[k].product_id), "%s", p.id);
        if (currency[0] == '\0')
            snprintf(currency, sizeof(currency), "%s", p.currency);
        else if (strcmp(currency, p.currency) != 0 && json_array_size(errors) == 0)
            json_array_append_new(
                errors, json_pack("{s:[s,s], s:s, s:s}", "loc", "body", "items", "msg",
                                  "All products of an order must share one currency", "type",
                                  "currency_mismatch"));
        int64_t q = b->lines[k].quantity, line_total = 0;
        if (p.price_minor > 0 && q > INT64_MAX / p.price_minor)
            overflow = 1;
        else
            line_total = p.price_minor * q;
        if (!overflow && keel_money_add(b->amount, line_total, &b->amount) != KEEL_OK)
            overflow = 1;
    }
    keel_db_release(db);
    if (e != KEEL_OK) {
        json_decref(errors);
        return keeld_store_problem(cx, e, &d) == KEEL_OK ? KEEL_EINVAL : KEEL_ENOMEM;
    }
    if (json_array_size(errors) > 0)
        return keel_resp_problem(cx, 422, NULL, "The request body is invalid.", errors) ==
                       KEEL_OK
                   ? KEEL_EINVAL
                   : KEEL_ENOMEM;
    json_decref(errors);
    b->currency = keel_currency_find(keel_str_c(currency));
    keel_err pe = KEEL_OK;
    if (b->currency == NULL)
        pe = field_problem(cx, json_pack("[s,s]", "body", "items"),
                           "The products' currency is not supported", "currency");
    else if (want != NULL && strcmp(want, currency) != 0)
        pe = field_problem(cx, json_pack("[s,s]", "body", "currency"),
                           "Currency does not match the products' currency",
                           "currency_mismatch");
    else if (overflow)
        pe = field_problem(cx, json_pack("[s,s]", "body", "items"),
                           "The order total is too large", "amount_too_large");
    else if (b->amount <= 0)
        pe = field_problem(cx, json_pack("[s,s]", "body", "items"),
                           "The order total must be greater than zero", "amount_too_small");
    else
        return KEEL_OK;
    return pe == KEEL_OK ? KEEL_EINVAL : pe;
}

static json_t *order_error(const char *order_id, const char *status)
{
    return json_pack("[{s:s, s:s}]", "order_id", order_id, "order_status", status);
}

/* Answer from the saga's outcome. */
static keel_err answer(keel_ctx *cx, const basket *b, const keel_saga_exec *x)
{
    json_t *ctx = keel_saga_exec_context(x);
    keel_saga_state s = keel_saga_exec_state(x);
    char amt[KEEL_MONEY_STR_MAX + 1];
    keel_money_format(b->amount, b->currency, amt, sizeof(amt));
    if (s == KEEL_SAGA_COMPLETED) {
        char loc[96];
        snprintf(loc, sizeof(loc), "/api/v1/orders/%s", b->order_id);
        keel_err e = keel_resp_header(cx, "Location", loc);
        if (e != KEEL_OK)
            return e;
        return keel_resp_success(
            cx, 201,
            json_pack("{s:s, s:s, s:s?, s:s, s:I, s:s}", "order_id", b->order_id, "status",
                      "completed", "charge_id", ctx_str(ctx, "charge_id"), "amount", amt,
                      "amount_minor", (json_int_t)b->amount, "currency", b->currency->code),
            NULL);
    }
    if (s == KEEL_SAGA_FAILED_COMPENSATION)
        return keel_resp_problem_typed(
            cx, 500, "https://keel.dev/problems/saga_compensation_failed", NULL,
            "The order failed and could not be fully reversed; it needs manual attention.",
            order_error(b->order_id, "needs_attention"));
    int step = keel_saga_exec_failed_step(x);
    keel_err err = keel_saga_exec_error(x);
    if (step == 0 && err == OUT_OF_STOCK)
        return keel_resp_problem_typed(
            cx, 409, "https://keel.dev/problems/out-of-stock", "Out of stock",
            "out of stock",
            json_pack("[{s:s, s:s?, s:s}]", "order_id", b->order_id, "product_id",
                      ctx_str(ctx, "out_of_stock"), "order_status", "failed"));
    if (step == 1) { /* payment errors; breaker open -> 503; anything else -> 500 (logged) */
        keel_pay_failure f;
        memset(&f, 0, sizeof(f));
        f.code = err;
        snprintf(f.decline_code, sizeof(f.decline_code), "%s",
                 ctx_str(ctx, "decline_code") ? ctx_str(ctx, "decline_code") : "");
        snprintf(f.message, sizeof(f.message), "%s",
                 ctx_str(ctx, "failure") ? ctx_str(ctx, "failure") : "");
        return keeld_payment_problem(cx, err, &f);
    }
    if (step <= 1)
        return keeld_store_problem(cx, err == KEEL_OK ? KEEL_EINTERNAL : err, NULL);
    KEEL_LOG_WARNING(logger(), "order %s failed at %s (%s); charges reversed", b->order_id,
                     step == 2 ? "capture_payment" : "create_shipment", keel_err_name(err));
    return keel_resp_problem_typed(cx, 502, "https://keel.dev/problems/order-failed",
                                   "Order failed", "order failed; charges reversed",
                                   order_error(b->order_id, "failed"));
}

static keel_err run_checkout(keel_ctx *cx, json_t *body, basket *b)
{
    keel_err e = price_basket(cx, body, b);
    if (e != KEEL_OK)
        return e == KEEL_EINVAL ? KEEL_OK : e;
    b->email = json_string_value(json_object_get(body, "email"));
    if ((e = keel_uuid4(b->order_id)) != KEEL_OK)
        return e;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    if ((e = keel_store_tx(C.store, insert_order_tx, b, &d)) != KEEL_OK)
        return keeld_store_problem(cx, e, &d);

    json_t *items = json_array();
    for (size_t i = 0; items != NULL && i < b->n; i++)
        json_array_append_new(items, json_pack("{s:s, s:I}", "product_id",
                                               b->lines[i].product_id, "quantity",
                                               (json_int_t)b->lines[i].quantity));
    json_t *ctx = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o?}", "order_id", b->order_id, "email",
                            b->email, "payment_token",
                            json_string_value(json_object_get(body, "payment_token")),
                            "currency", b->currency->code, "amount", (json_int_t)b->amount,
                            "items", items);
    if (ctx == NULL)
        return KEEL_ENOMEM;
    if (C.test_env && strcasecmp(b->email, "fail-shipment@example.com") == 0)
        (void)json_object_set_new(ctx, "test_fail_shipment", json_true());
    if (C.test_env && strcasecmp(b->email, "hang@example.com") == 0)
        (void)json_object_set_new(ctx, "test_hang", json_true());

    char saga_id[KEEL_SAGA_ID_MAX + 1];
    snprintf(saga_id, sizeof(saga_id), "checkout_%s", b->order_id);
    keel_saga_exec *x = NULL;
    e = keel_saga_execute(C.def, C.log, saga_id, ctx, &x, &d);
    json_decref(ctx);
    if (e != KEEL_OK) {
        /* The saga log could not be written (or another instance took the saga over): the
         * saga stopped where it was and recovery will finish it. */
        KEEL_LOG_ERROR(logger(), "order %s: saga %s stopped: %s (%s); left to recovery",
                       b->order_id, saga_id, keel_err_name(e), d.msg[0] ? d.msg : "-");
        (void)keel_resp_header(cx, "Retry-After", "5");
        return keel_resp_problem(cx, 503, NULL,
                                 "The order could not be completed now; it will be reversed "
                                 "automatically.",
                                 order_error(b->order_id, "pending"));
    }
    finish_order(x);
    e = answer(cx, b, x);
    keel_saga_exec_destroy(x);
    return e;
}

static keel_err h_checkout_inner(keel_ctx *cx, void *ud)
{
    (void)ud;
    json_t *body;
    if (keel_req_json(cx, &checkout_schema, &body) != KEEL_OK)
        return KEEL_OK; /* the 4xx problem is already set */
    basket *b = keel_arena_alloc(keel_ctx_arena(cx), sizeof(basket), 0);
    keel_err e = KEEL_ENOMEM;
    if (b != NULL) {
        memset(b, 0, sizeof(*b));
        e = run_checkout(cx, body, b);
    }
    json_decref(body);
    return e;
}

static keel_err h_checkout(keel_ctx *cx, void *ud)
{
    /* One key space until authentication binds the caller (as /api/v1/payments). */
    return keel_idem_http_handle(C.idem, cx, KEEL_STR_NULL, 1, h_checkout_inner, ud);
}

/* ------------------------------------------------------------ inventory -- */

typedef struct stock_row {
    const char *product_id;
    int64_t on_hand, reserved;
    int exists; /* product */
} stock_row;

static keel_err read_stock(keel_db *db, stock_row *s)
{
    product p;
    keel_err e = products_get(db, s->product_id, &p, NULL);
    if (e == KEEL_ENOTFOUND) {
        s->exists = 0;
        return KEEL_OK;
    }
    if (e != KEEL_OK)
        return e;
    s->exists = 1;
    keel_stmt *st;
    if ((e = keel_db_prepare(db, "SELECT on_hand, reserved FROM inventory WHERE product_id = ?",
                             &st, NULL)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 1, s->product_id, SIZE_MAX)) != KEEL_OK)
        return e;
    int r = keel_stmt_step(st, NULL);
    if (r < 0)
        return (keel_err)r;
    s->on_hand = r == 1 ? keel_stmt_int64(st, 0) : 0;
    s->reserved = r == 1 ? keel_stmt_int64(st, 1) : 0;
    return KEEL_OK;
}

static keel_err set_stock_tx(keel_db *db, void *ud)
{
    stock_row *s = ud;
    int64_t want = s->on_hand;
    keel_err e = read_stock(db, s);
    if (e != KEEL_OK || !s->exists)
        return e;
    if (want < s->reserved)
        return KEEL_ECONSTRAINT;
    keel_stmt *st;
    if ((e = keel_db_prepare(db,
                             "INSERT INTO inventory (product_id, on_hand, reserved, "
                             "updated_at_ms) VALUES (?, ?, 0, ?) ON CONFLICT (product_id) DO "
                             "UPDATE SET on_hand = excluded.on_hand, updated_at_ms = "
                             "excluded.updated_at_ms",
                             &st, NULL)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 1, s->product_id, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 2, want)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, 3, keel_time_wall_ms())) != KEEL_OK ||
        (e = exec_stmt(st, NULL)) != KEEL_OK)
        return e;
    s->on_hand = want;
    return KEEL_OK;
}

static keel_err stock_answer(keel_ctx *cx, const stock_row *s)
{
    return keel_resp_success(cx, 200,
                             json_pack("{s:s, s:I, s:I, s:I}", "product_id", s->product_id,
                                       "on_hand", (json_int_t)s->on_hand, "reserved",
                                       (json_int_t)s->reserved, "available",
                                       (json_int_t)(s->on_hand - s->reserved)),
                             NULL);
}

static const keel_schema_field stock_fields[] = {
    {.name = "on_hand", .type = KEEL_SCHEMA_INT, .flags = KEEL_SCHEMA_REQUIRED, .has_min = 1,
     .min = 0, .has_max = 1, .max = 1000000000},
};
static const keel_schema stock_schema = {stock_fields,
                                         sizeof(stock_fields) / sizeof(stock_fields[0]), 0};

static keel_err h_stock(keel_ctx *cx, void *ud)
{
    (void)ud;
    const char *id = keel_req_param(cx, "id");
    if (id == NULL || !keel_uuid_valid(keel_str_c(id)))
        return keel_resp_problem(cx, 404, NULL, "No product with this id.", NULL);
    stock_row s;
    memset(&s, 0, sizeof(s));
    s.product_id = id;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e;
    if (keel_req_method(cx) == KEEL_METHOD_PUT) {
        json_t *body;
        if (keel_req_json(cx, &stock_schema, &body) != KEEL_OK)
            return KEEL_OK;
        s.on_hand = (int64_t)json_integer_value(json_object_get(body, "on_hand"));
        json_decref(body);
        e = keel_store_tx(C.store, set_stock_tx, &s, &d);
    } else {
        keel_db *db;
        if ((e = keel_db_acquire(C.store, &db, &d)) == KEEL_OK) {
            e = read_stock(db, &s);
            keel_db_release(db);
        }
    }
    if (e == KEEL_ECONSTRAINT)
        return keel_resp_problem(cx, 409, NULL,
                                 "on_hand cannot be lower than the stock reserved by orders.",
                                 json_pack("[{s:I}]", "reserved", (json_int_t)s.reserved));
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    if (!s.exists)
        return keel_resp_problem(cx, 404, NULL, "No product with this id.", NULL);
    return stock_answer(cx, &s);
}

static keel_err h_order(keel_ctx *cx, void *ud)
{
    (void)ud;
    const char *id = keel_req_param(cx, "id");
    if (id == NULL || !keel_uuid_valid(keel_str_c(id)))
        return keel_resp_problem(cx, 404, NULL, "No order with this id.", NULL);
    keel_db *db;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_db_acquire(C.store, &db, &d);
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    keel_stmt *st;
    json_t *data = NULL;
    if ((e = keel_db_prepare(db,
                             "SELECT o.id, o.status, o.amount_minor, o.currency, o.charge_id, "
                             "o.created_at_ms, o.updated_at_ms, s.created_at_ms FROM orders o "
                             "LEFT JOIN shipments s ON s.order_id = o.id WHERE o.id = ?",
                             &st, &d)) == KEEL_OK &&
        (e = keel_stmt_bind_text(st, 1, id, SIZE_MAX)) == KEEL_OK) {
        int r = keel_stmt_step(st, &d);
        if (r < 0) {
            e = (keel_err)r;
        } else if (r == 1) {
            const keel_currency *cur = keel_currency_find(keel_str_c(keel_stmt_text(st, 3, NULL)));
            char amt[KEEL_MONEY_STR_MAX + 1] = "";
            if (cur != NULL)
                keel_money_format(keel_stmt_int64(st, 2), cur, amt, sizeof(amt));
            data = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s?, s:b, s:I, s:I}", "order_id",
                             keel_stmt_text(st, 0, NULL), "status", keel_stmt_text(st, 1, NULL),
                             "amount", amt, "amount_minor", (json_int_t)keel_stmt_int64(st, 2),
                             "currency", keel_stmt_text(st, 3, NULL), "charge_id",
                             keel_stmt_is_null(st, 4) ? NULL : keel_stmt_text(st, 4, NULL),
                             "shipped", !keel_stmt_is_null(st, 7), "created_at_ms",
                             (json_int_t)keel_stmt_int64(st, 5), "updated_at_ms",
                             (json_int_t)keel_stmt_int64(st, 6));
            if (data == NULL)
                e = KEEL_ENOMEM;
        }
    }
    keel_db_release(db);
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    if (data == NULL)
        return keel_resp_problem(cx, 404, NULL, "No order with this id.", NULL);
    return keel_resp_success(cx, 200, data, NULL);
}

/* -------------------------------------------------------------- set-up -- */

static keel_err build_fraud(const keeld_app *app, keel_diag *diag)
{
    keel_err e;
    keel_fraud_config fc;
    keel_fraud_config_default(&fc);
    if ((e = keel_fraud_blocklist_create(&C.blocklist)) != KEEL_OK ||
        (e = keel_fraud_engine_create(&C.fraud, &fc, diag)) != KEEL_OK)
        return e;
    if (app->settings->environment == KEEL_ENVIRONMENT_TEST &&
        (e = keel_fraud_blocklist_add(C.blocklist, KEEL_FRAUD_LIST_EMAIL,
                                      "blocked@example.com")) != KEEL_OK)
        return e;
    /* Above 5,000.00 in the major currencies the customer must authenticate (3-D Secure). */
    keel_fraud_amount_limit limits[3] = {
        {keel_currency_find(KEEL_STR_LIT("EUR")), 500000},
        {keel_currency_find(KEEL_STR_LIT("USD")), 500000},
        {keel_currency_find(KEEL_STR_LIT("GBP")), 500000},
    };
    keel_fraud_amount_config ac;
    keel_fraud_amount_config_default(&ac);
    ac.limits = limits;
    ac.nlimits = 3;
    ac.above = KEEL_FRAUD_CHALLENGE;
    if ((e = keel_fraud_add_blocklist(C.fraud, "blocklist", C.blocklist, diag)) != KEEL_OK ||
        (e = keel_fraud_add_high_amount(C.fraud, "high_amount", &ac, diag)) != KEEL_OK)
        return e;
    return KEEL_OK;
}

static keel_err build_saga(const keeld_app *app, keel_diag *diag)
{
    keel_err e;
    if ((e = keel_saga_log_sql_create(&C.log, app->store, diag)) != KEEL_OK)
        return e;
    keel_saga_config sc;
    keel_saga_config_default(&sc);
    if (C.test_env)
        sc.lease_ms = TEST_LEASE_MS;
    if ((e = keel_saga_def_create(&C.def, "checkout", &sc)) != KEEL_OK ||
        (e = keel_saga_def_add_step(C.def, "reserve_inventory", reserve_inventory,
                                    release_inventory, NULL)) != KEEL_OK ||
        (e = keel_saga_def_add_step(C.def, "authorize_payment", authorize_payment, void_payment,
                                    NULL)) != KEEL_OK ||
        (e = keel_saga_def_add_step(C.def, "capture_payment", capture_payment, NULL, NULL)) !=
            KEEL_OK ||
        (e = keel_saga_def_add_step(C.def, "create_shipment", create_shipment, cancel_shipment,
                                    NULL)) != KEEL_OK)
        keel_diag_set(diag, e, 0, "checkout saga definition: %s", keel_strerror(e));
    return e;
}

keel_err keeld_checkout_routes(keel_router *r, const keeld_app *app, keel_diag *diag)
{
    keel_err e;
    memset(&C, 0, sizeof(C));
    C.store = app->store;
    C.test_env = app->settings->environment == KEEL_ENVIRONMENT_TEST;
    if ((e = build_fraud(app, diag)) != KEEL_OK || (e = build_saga(app, diag)) != KEEL_OK)
        return e;
    keel_idem_store *is = keeld_payments_idem_store();
    if (is == NULL)
        return KEEL_ESTATE; /* keeld_payments_routes() first */
    keel_idem_config ic;
    keel_idem_config_default(&ic);
    ic.name = "checkout";
    ic.metrics = app->metrics;
    if ((e = keel_idem_http_create(&C.idem, is, &ic, diag)) != KEEL_OK)
        return e;
    if ((e = keel_router_add(r, KEEL_METHOD_POST, "/api/v1/checkout", h_checkout, NULL, 0,
                             diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET | KEEL_METHOD_PUT,
                             "/api/v1/products/{id}/inventory", h_stock, NULL, 0, diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/api/v1/orders/{id}", h_order, NULL, 0, diag)))
        return e;
    if (app->tasks != NULL &&
        (e = keel_tasks_add_periodic(app->tasks, "recover_checkout_sagas", RECOVERY_INTERVAL_MS,
                                     recovery_task, NULL)) != KEEL_OK)
        return e;
    return KEEL_OK;
}

void keeld_checkout_cleanup(void)
{
    keel_idem_http_destroy(C.idem);
    keel_saga_def_destroy(C.def);
    keel_saga_log_destroy(C.log);
    keel_fraud_engine_destroy(C.fraud);
    keel_fraud_blocklist_destroy(C.blocklist);
    memset(&C, 0, sizeof(C));
}
