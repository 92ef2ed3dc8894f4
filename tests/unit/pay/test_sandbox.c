/* Tests for src/pay/sandbox.c: every test token, every fault, idempotent replays and
 * conflicts, capture/void/refund state rules, call recording, deterministic ids, the manual
 * clock for slow calls, and thread safety. */
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <keel/gateway.h>
#include <keel/payment.h>
#include <keel/policy.h>

static const keel_currency *usd(void)
{
    const keel_currency *c = keel_currency_find(KEEL_STR_LIT("USD"));
    assert_non_null(c);
    return c;
}

static keel_sandbox *sandbox(void)
{
    keel_sandbox *sb = NULL;
    ASSERT_OK(keel_sandbox_create(&sb, NULL, NULL));
    return sb;
}

static keel_charge_request charge(const char *token, const char *key, int64_t amount)
{
    keel_charge_request r;
    memset(&r, 0, sizeof(r));
    r.amount = amount;
    r.currency = usd();
    r.payment_token = token;
    r.idempotency_key = key;
    r.customer_id = "cus_1";
    r.customer_email = "buyer@example.com";
    r.description = "order 42";
    return r;
}

static void authorize_ok(keel_gateway *gw, const char *token, const char *key, int64_t amount,
                         keel_charge_result *out)
{
    keel_charge_request r = charge(token, key, amount);
    keel_pay_failure f;
    keel_err e = keel_gateway_authorize(gw, &r, out, &f);
    if (e != KEEL_OK)
        fprintf(stderr, "authorize: %s %s\n", keel_err_name(e), f.message);
    assert_int_equal(KEEL_OK, e);
}

/* ---------------------------------------------------------------- tokens -- */

static void test_success_tokens(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    assert_string_equal("sandbox", keel_gateway_name(gw));
    keel_charge_result r;
    authorize_ok(gw, "tok_visa", "k1", 1999, &r);
    assert_string_equal("ch_sandbox_000001", r.charge_id);
    assert_string_equal("sbx_ref_000001", r.gateway_reference);
    assert_int_equal(KEEL_CHARGE_AUTHORIZED, r.status);
    assert_int_equal(1999, r.amount);
    assert_int_equal(0, r.amount_captured);
    assert_ptr_equal(usd(), r.currency);
    assert_int_equal('Y', r.avs_result);
    assert_int_equal('M', r.cvv_result);
    assert_int_equal(0, r.replayed);

    authorize_ok(gw, "tok_mastercard", "k2", 500, &r);
    assert_string_equal("ch_sandbox_000002", r.charge_id);
    assert_int_equal('Y', r.avs_result);

    authorize_ok(gw, "tok_avsFail", "k3", 500, &r);
    assert_string_equal("ch_sandbox_000003", r.charge_id);
    assert_int_equal(KEEL_AVS_NO_MATCH, r.avs_result);
    assert_int_equal(KEEL_CVV_MATCH, r.cvv_result);

    authorize_ok(gw, "tok_cvcFail", "k4", 500, &r);
    assert_int_equal(KEEL_AVS_MATCH, r.avs_result);
    assert_int_equal(KEEL_CVV_NO_MATCH, r.cvv_result);
    assert_int_equal(4, keel_sandbox_charges(sb));
    keel_sandbox_destroy(sb);
}

static void expect_fail(keel_gateway *gw, const char *token, keel_err want, const char *code)
{
    keel_charge_request r = charge(token, token, 1000);
    keel_charge_result out;
    keel_pay_failure f;
    assert_int_equal(want, keel_gateway_authorize(gw, &r, &out, &f));
    assert_int_equal(want, f.code);
    assert_string_equal(code, f.decline_code);
    assert_true(f.message[0] != '\0');
    assert_int_equal(KEEL_CHARGE_NONE, out.status);
    assert_string_equal("", out.charge_id);
}

static void test_failing_tokens(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    expect_fail(gw, "tok_chargeDeclined", KEEL_EPAY_DECLINED, "generic_decline");
    expect_fail(gw, "tok_insufficientFunds", KEEL_EPAY_INSUFFICIENT_FUNDS, "insufficient_funds");
    expect_fail(gw, "tok_threeDSecureRequired", KEEL_EPAY_AUTH_REQUIRED,
                "authentication_required");
    expect_fail(gw, "tok_doesNotExist", KEEL_EPAY_GATEWAY, "resource_missing");

    keel_pay_failure f;
    keel_charge_request r = charge("tok_unknown2", "kx", 1000);
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_authorize(gw, &r, NULL, &f));
    assert_string_equal("no such token", f.message);
    assert_null(strstr(f.message, "tok_unknown2")); /* tokens are not echoed */
    /* Declines are not retriable; the policy layer must not retry them. */
    assert_int_equal(0, keel_pay_err_retriable(KEEL_EPAY_DECLINED));
    assert_int_equal(0, keel_sandbox_charges(sb));
    assert_int_equal(5, keel_sandbox_count(sb, KEEL_GATEWAY_AUTHORIZE));
    keel_sandbox_destroy(sb);
}

static void test_add_token_alias(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    ASSERT_OK(keel_sandbox_add_token(sb, "tok_AbCdEf0123456789AbCdEf01", "tok_cvcFail"));
    keel_charge_result r;
    authorize_ok(gw, "tok_AbCdEf0123456789AbCdEf01", "k", 100, &r);
    assert_int_equal('N', r.cvv_result);
    assert_int_equal(KEEL_EINVAL, keel_sandbox_add_token(sb, "tok_x", "tok_nope"));
    assert_int_equal(KEEL_EINVAL, keel_sandbox_add_token(sb, "", "tok_visa"));
    keel_sandbox_destroy(sb);
}

/* ---------------------------------------------------------------- faults -- */

static void test_network_error_then_success(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    keel_sandbox_fault fault = {KEEL_SANDBOX_NETWORK_ERROR, 2, 0, 0, 0};
    ASSERT_OK(keel_sandbox_inject(sb, KEEL_GATEWAY_AUTHORIZE, &fault));
    keel_charge_request r = charge("tok_visa", "order-1", 2500);
    keel_charge_result out;
    keel_pay_failure f;
    assert_int_equal(KEEL_EPAY_NETWORK, keel_gateway_authorize(gw, &r, &out, &f));
    assert_int_equal(KEEL_EPAY_NETWORK, f.code);
    assert_int_equal(1, keel_pay_err_retriable(f.code));
    assert_int_equal(KEEL_EPAY_NETWORK, keel_gateway_authorize(gw, &r, &out, &f));
    /* Third attempt with the same key: the fault is used up, the charge happens once. */
    ASSERT_OK(keel_gateway_authorize(gw, &r, &out, &f));
    assert_string_equal("ch_sandbox_000001", out.charge_id);
    assert_int_equal(0, out.replayed);
    assert_int_equal(KEEL_OK, f.code);
    assert_string_equal("", f.message);
    assert_int_equal(3, keel_sandbox_count(sb, KEEL_GATEWAY_AUTHORIZE));
    assert_int_equal(1, keel_sandbox_charges(sb));

    keel_sandbox_call c;
    ASSERT_OK(keel_sandbox_call_at(sb, 0, &c));
    assert_int_equal(KEEL_EPAY_NETWORK, c.outcome);
    assert_int_equal(1, c.fault);
    assert_string_equal("", c.charge_id);
    ASSERT_OK(keel_sandbox_call_at(sb, 2, &c));
    assert_int_equal(KEEL_OK, c.outcome);
    assert_int_equal(0, c.fault);
    assert_string_equal("ch_sandbox_000001", c.charge_id);
    keel_sandbox_destroy(sb);
}

static void test_decline_and_insufficient_faults(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    keel_sandbox_fault fault = {KEEL_SANDBOX_DECLINE, 0, 0, 0, 0}; /* until cleared */
    ASSERT_OK(keel_sandbox_inject(sb, KEEL_GATEWAY_AUTHORIZE, &fault));
    keel_pay_failure f;
    for (int i = 0; i < 3; i++) {
        char key[16];
        snprintf(key, sizeof(key), "d%d", i);
        keel_charge_request r = charge("tok_visa", key, 100);
        assert_int_equal(KEEL_EPAY_DECLINED, keel_gateway_authorize(gw, &r, NULL, &f));
        assert_string_equal("generic_decline", f.decline_code);
    }
    fault.kind = KEEL_SANDBOX_INSUFFICIENT_FUNDS;
    fault.times = 1;
    ASSERT_OK(keel_sandbox_inject(sb, KEEL_GATEWAY_AUTHORIZE, &fault));
    keel_charge_request r = charge("tok_visa", "i1", 100);
    assert_int_equal(KEEL_EPAY_INSUFFICIENT_FUNDS, keel_gateway_authorize(gw, &r, NULL, &f));
    r.idempotency_key = "i2";
    ASSERT_OK(keel_gateway_authorize(gw, &r, NULL, &f));

    /* Faults are per operation: a capture fault does not touch authorize. */
    fault.kind = KEEL_SANDBOX_DECLINE;
    fault.times = 0;
    ASSERT_OK(keel_sandbox_inject(sb, KEEL_GATEWAY_CAPTURE, &fault));
    r.idempotency_key = "i3";
    ASSERT_OK(keel_gateway_authorize(gw, &r, NULL, &f));
    keel_capture_request cr = {"ch_sandbox_000002", 0, NULL};
    assert_int_equal(KEEL_EPAY_DECLINED, keel_gateway_capture(gw, &cr, NULL, &f));
    keel_sandbox_clear_faults(sb);
    ASSERT_OK(keel_gateway_capture(gw, &cr, NULL, &f));
    keel_sandbox_destroy(sb);
}

static void test_timeout_not_performed(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    keel_sandbox_fault fault = {KEEL_SANDBOX_TIMEOUT, 1, 0, 0, 0};
    ASSERT_OK(keel_sandbox_inject(sb, KEEL_GATEWAY_AUTHORIZE, &fault));
    keel_charge_request r = charge("tok_visa", "t1", 700);
    keel_charge_result out;
    keel_pay_failure f;
    assert_int_equal(KEEL_EPAY_GATEWAY_TIMEOUT, keel_gateway_authorize(gw, &r, &out, &f));
    assert_int_equal(0, keel_sandbox_charges(sb));
    ASSERT_OK(keel_gateway_authorize(gw, &r, &out, &f));
    assert_int_equal(0, out.replayed); /* nothing was saved: the retry ran the charge */
    assert_int_equal(1, keel_sandbox_charges(sb));
    keel_sandbox_destroy(sb);
}

/* The "unknown outcome" case: the gateway charged, the answer was lost.  A retry with the
 * same idempotency key finds the charge instead of creating a second one. */
static void test_timeout_after_performing(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    keel_sandbox_fault fault = {KEEL_SANDBOX_TIMEOUT, 1, 1, 0, 0};
    ASSERT_OK(keel_sandbox_inject(sb, KEEL_GATEWAY_AUTHORIZE, &fault));
    keel_charge_request r = charge("tok_visa", "t1", 700);
    keel_charge_result out;
    keel_pay_failure f;
    assert_int_equal(KEEL_EPAY_GATEWAY_TIMEOUT, keel_gateway_authorize(gw, &r, &out, &f));
    assert_int_equal(1, keel_pay_err_retriable(f.code));
    assert_string_equal("", out.charge_id); /* the caller does not learn the id */
    assert_int_equal(1, keel_sandbox_charges(sb));
    ASSERT_OK(keel_gateway_authorize(gw, &r, &out, &f));
    assert_int_equal(1, out.replayed);
    assert_string_equal("ch_sandbox_000001", out.charge_id);
    assert_int_equal(1, keel_sandbox_charges(sb));
    assert_int_equal(1, keel_sandbox_replays(sb, KEEL_GATEWAY_AUTHORIZE));

    /* The same on capture: captured although the caller saw a timeout. */
    ASSERT_OK(keel_sandbox_inject(sb, KEEL_GATEWAY_CAPTURE, &fault));
    keel_capture_request cr = {"ch_sandbox_000001", 0, "cap-1"};
    assert_int_equal(KEEL_EPAY_GATEWAY_TIMEOUT, keel_gateway_capture(gw, &cr, &out, &f));
    keel_charge_result now;
    ASSERT_OK(keel_sandbox_charge(sb, "ch_sandbox_000001", &now));
    assert_int_equal(KEEL_CHARGE_CAPTURED, now.status);
    ASSERT_OK(keel_gateway_capture(gw, &cr, &out, &f));
    assert_int_equal(1, out.replayed);
    assert_int_equal(KEEL_CHARGE_CAPTURED, out.status);
    keel_sandbox_destroy(sb);
}

static void test_slow_uses_the_clock(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1000);
    keel_sandbox_config cfg;
    keel_sandbox_config_default(&cfg);
    cfg.clock = &mc.clock;
    keel_sandbox *sb = NULL;
    ASSERT_OK(keel_sandbox_create(&sb, &cfg, NULL));
    keel_sandbox_fault fault = {KEEL_SANDBOX_SLOW, 1, 0, 2500, 0};
    ASSERT_OK(keel_sandbox_inject(sb, KEEL_GATEWAY_AUTHORIZE, &fault));
    keel_charge_result out;
    authorize_ok(keel_sandbox_gateway(sb), "tok_visa", "s1", 100, &out);
    assert_int_equal(KEEL_CHARGE_AUTHORIZED, out.status);
    assert_int_equal(3500, mc.now);
    assert_int_equal(1, mc.sleeps);
    assert_int_equal(2500, mc.slept_total);
    authorize_ok(keel_sandbox_gateway(sb), "tok_visa", "s2", 100, &out); /* used up */
    assert_int_equal(1, mc.sleeps);
    keel_sandbox_destroy(sb);
}

static void test_rate_limited(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    keel_sandbox_fault fault = {KEEL_SANDBOX_RATE_LIMITED, 1, 0, 0, 1500};
    ASSERT_OK(keel_sandbox_inject(sb, KEEL_GATEWAY_REFUND, &fault));
    keel_charge_result out;
    authorize_ok(gw, "tok_visa", "a", 1000, &out);
    keel_pay_failure f;
    keel_capture_request cr = {out.charge_id, 0, NULL};
    ASSERT_OK(keel_gateway_capture(gw, &cr, NULL, &f));
    keel_refund_request rr = {out.charge_id, 100, "requested_by_customer", "r1"};
    keel_refund_result ref;
    assert_int_equal(KEEL_EPAY_RATE_LIMITED, keel_gateway_refund(gw, &rr, &ref, &f));
    assert_int_equal(1500, f.retry_after_ms);
    assert_string_equal("rate_limit", f.decline_code);
    assert_int_equal(1, keel_pay_err_retriable(f.code));
    ASSERT_OK(keel_gateway_refund(gw, &rr, &ref, &f));
    assert_int_equal(0, ref.replayed);
    assert_int_equal(100, ref.amount);
    assert_int_equal(0, f.retry_after_ms);
    keel_sandbox_destroy(sb);
}

static void test_inject_rejects_bad_arguments(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_sandbox_fault fault = {KEEL_SANDBOX_DECLINE, 0, 0, 0, 0};
    assert_int_equal(KEEL_EINVAL, keel_sandbox_inject(sb, KEEL_GATEWAY_OP_COUNT, &fault));
    assert_int_equal(KEEL_EINVAL, keel_sandbox_inject(sb, KEEL_GATEWAY_AUTHORIZE, NULL));
    fault.kind = (keel_sandbox_fault_kind)42;
    assert_int_equal(KEEL_EINVAL, keel_sandbox_inject(sb, KEEL_GATEWAY_AUTHORIZE, &fault));
    keel_sandbox_config cfg;
    keel_sandbox_config_default(&cfg);
    cfg.max_charges = 0;
    keel_sandbox *bad = NULL;
    keel_diag d;
    assert_int_equal(KEEL_EINVAL, keel_sandbox_create(&bad, &cfg, &d));
    assert_non_null(strstr(d.msg, "max_charges"));
    assert_null(bad);
    keel_sandbox_destroy(sb);
}

/* ----------------------------------------------------------- idempotency -- */

static void test_idempotent_replay(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    keel_charge_result a, b;
    authorize_ok(gw, "tok_visa", "idem-1", 4200, &a);
    authorize_ok(gw, "tok_visa", "idem-1", 4200, &b);
    assert_string_equal(a.charge_id, b.charge_id);
    assert_int_equal(0, a.replayed);
    assert_int_equal(1, b.replayed);
    assert_int_equal(1, keel_sandbox_charges(sb));
    assert_int_equal(2, keel_sandbox_count(sb, KEEL_GATEWAY_AUTHORIZE));
    assert_int_equal(1, keel_sandbox_replays(sb, KEEL_GATEWAY_AUTHORIZE));
    keel_sandbox_call c;
    ASSERT_OK(keel_sandbox_call_at(sb, 1, &c));
    assert_int_equal(1, c.replay);
    assert_string_equal("idem-1", c.idempotency_key);
    assert_string_equal(a.charge_id, c.charge_id);

    /* Same key, different amount: conflict, nothing charged. */
    keel_charge_request r = charge("tok_visa", "idem-1", 9999);
    keel_pay_failure f;
    assert_int_equal(KEEL_EPAY_IDEMPOTENCY_CONFLICT, keel_gateway_authorize(gw, &r, NULL, &f));
    assert_string_equal("idempotency_error", f.decline_code);
    assert_int_equal(1, keel_sandbox_charges(sb));

    /* A new key is a new charge. */
    authorize_ok(gw, "tok_visa", "idem-2", 4200, &b);
    assert_string_equal("ch_sandbox_000002", b.charge_id);

    /* A declined request replays its decline (Stripe saves executed failures too). */
    keel_charge_request d = charge("tok_chargeDeclined", "idem-3", 100);
    assert_int_equal(KEEL_EPAY_DECLINED, keel_gateway_authorize(gw, &d, NULL, &f));
    assert_int_equal(KEEL_EPAY_DECLINED, keel_gateway_authorize(gw, &d, &b, &f));
    assert_string_equal("generic_decline", f.decline_code);
    assert_int_equal(0, b.replayed);
    assert_int_equal(2, keel_sandbox_replays(sb, KEEL_GATEWAY_AUTHORIZE));
    /* Keys are per operation: the same string on capture is a different key. */
    keel_capture_request cr = {"ch_sandbox_000001", 0, "idem-1"};
    ASSERT_OK(keel_gateway_capture(gw, &cr, &b, &f));
    assert_int_equal(0, b.replayed);
    keel_sandbox_destroy(sb);
}

/* ------------------------------------------------------------ state rules -- */

static void test_capture_void_refund_rules(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    keel_charge_result a, out;
    keel_pay_failure f;
    authorize_ok(gw, "tok_visa", "c1", 10000, &a);

    /* Refund before capture: refused. */
    keel_refund_request rr = {a.charge_id, 0, NULL, NULL};
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_refund(gw, &rr, NULL, &f));
    assert_string_equal("charge_not_refundable", f.decline_code);

    /* Capture more than authorized: refused. */
    keel_capture_request cr = {a.charge_id, 10001, NULL};
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_capture(gw, &cr, NULL, &f));
    assert_string_equal("amount_too_large", f.decline_code);

    /* Partial capture. */
    cr.amount = 8000;
    ASSERT_OK(keel_gateway_capture(gw, &cr, &out, &f));
    assert_int_equal(KEEL_CHARGE_CAPTURED, out.status);
    assert_int_equal(8000, out.amount_captured);
    assert_int_equal(10000, out.amount);

    /* Capture twice, void after capture: refused. */
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_capture(gw, &cr, NULL, &f));
    assert_string_equal("charge_already_captured", f.decline_code);
    keel_void_request vr = {a.charge_id, NULL};
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_void(gw, &vr, NULL, &f));
    assert_string_equal("charge_already_captured", f.decline_code);

    /* Refunds up to captured minus refunded. */
    keel_refund_result ref;
    rr.amount = 3000;
    ASSERT_OK(keel_gateway_refund(gw, &rr, &ref, &f));
    assert_string_equal("re_sandbox_000001", ref.refund_id);
    assert_string_equal(a.charge_id, ref.charge_id);
    assert_int_equal(3000, ref.amount);
    assert_int_equal(KEEL_CHARGE_PARTIALLY_REFUNDED, ref.charge_status);
    assert_int_equal(3000, ref.charge_amount_refunded);
    rr.amount = 5001;
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_refund(gw, &rr, NULL, &f));
    assert_string_equal("amount_too_large", f.decline_code);
    rr.amount = 0; /* the rest */
    ASSERT_OK(keel_gateway_refund(gw, &rr, &ref, &f));
    assert_string_equal("re_sandbox_000002", ref.refund_id);
    assert_int_equal(5000, ref.amount);
    assert_int_equal(KEEL_CHARGE_REFUNDED, ref.charge_status);
    assert_int_equal(8000, ref.charge_amount_refunded);
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_refund(gw, &rr, NULL, &f));
    assert_string_equal("charge_already_refunded", f.decline_code);

    /* Void an authorized charge; then it can be neither voided again nor captured. */
    authorize_ok(gw, "tok_visa", "c2", 500, &a);
    vr.charge_id = a.charge_id;
    ASSERT_OK(keel_gateway_void(gw, &vr, &out, &f));
    assert_int_equal(KEEL_CHARGE_VOIDED, out.status);
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_void(gw, &vr, NULL, &f));
    assert_string_equal("charge_already_voided", f.decline_code);
    cr.charge_id = a.charge_id;
    cr.amount = 0;
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_capture(gw, &cr, NULL, &f));
    assert_string_equal("charge_not_capturable", f.decline_code);
    rr.charge_id = a.charge_id;
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_refund(gw, &rr, NULL, &f));
    assert_string_equal("charge_not_refundable", f.decline_code);

    /* Unknown charge ids. */
    const char *bad[] = {"ch_sandbox_000099", "ch_sandbox_", "ch_other_000001", "ch_sandbox_0x1",
                         "ch_sandbox_000000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        keel_void_request v2 = {bad[i], NULL};
        assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_void(gw, &v2, NULL, &f));
        assert_string_equal("resource_missing", f.decline_code);
    }
    assert_int_equal(KEEL_ENOTFOUND, keel_sandbox_charge(sb, "ch_sandbox_000099", &out));
    keel_sandbox_destroy(sb);
}

static void test_refund_idempotency(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    keel_gateway *gw = keel_sandbox_gateway(sb);
    keel_charge_result a;
    keel_pay_failure f;
    authorize_ok(gw, "tok_visa", "c1", 1000, &a);
    keel_capture_request cr = {a.charge_id, 0, NULL};
    ASSERT_OK(keel_gateway_capture(gw, &cr, NULL, &f));
    keel_refund_request rr = {a.charge_id, 400, "duplicate", "rf-1"};
    keel_refund_result r1, r2;
    ASSERT_OK(keel_gateway_refund(gw, &rr, &r1, &f));
    ASSERT_OK(keel_gateway_refund(gw, &rr, &r2, &f));
    assert_string_equal(r1.refund_id, r2.refund_id);
    assert_int_equal(1, r2.replayed);
    keel_charge_result now;
    ASSERT_OK(keel_sandbox_charge(sb, a.charge_id, &now));
    assert_int_equal(400, now.amount_refunded); /* refunded once */
    rr.amount = 500;
    assert_int_equal(KEEL_EPAY_IDEMPOTENCY_CONFLICT, keel_gateway_refund(gw, &rr, NULL, &f));
    keel_sandbox_destroy(sb);
}

/* -------------------------------------------------------------- recording -- */

static void test_call_recording(void **state)
{
    (void)state;
    keel_sandbox_config cfg;
    keel_sandbox_config_default(&cfg);
    cfg.max_recorded_calls = 3;
    keel_sandbox *sb = NULL;
    ASSERT_OK(keel_sandbox_create(&sb, &cfg, NULL));
    keel_gateway *gw = keel_sandbox_gateway(sb);
    keel_charge_result a;
    keel_pay_failure f;
    authorize_ok(gw, "tok_mastercard", "rec-1", 1234, &a);
    keel_capture_request cr = {a.charge_id, 1000, "cap-key"};
    ASSERT_OK(keel_gateway_capture(gw, &cr, NULL, &f));
    keel_refund_request rr = {a.charge_id, 0, NULL, NULL};
    ASSERT_OK(keel_gateway_refund(gw, &rr, NULL, &f));
    keel_void_request vr = {a.charge_id, NULL};
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_void(gw, &vr, NULL, &f));

    keel_sandbox_call c;
    ASSERT_OK(keel_sandbox_call_at(sb, 0, &c));
    assert_int_equal(KEEL_GATEWAY_AUTHORIZE, c.op);
    assert_string_equal("rec-1", c.idempotency_key);
    assert_int_equal(1234, c.amount);
    assert_ptr_equal(usd(), c.currency);
    assert_string_equal("tok_mastercard", c.token);
    assert_string_equal("ch_sandbox_000001", c.charge_id);
    assert_int_equal(KEEL_OK, c.outcome);
    ASSERT_OK(keel_sandbox_call_at(sb, 1, &c));
    assert_int_equal(KEEL_GATEWAY_CAPTURE, c.op);
    assert_string_equal("cap-key", c.idempotency_key);
    assert_int_equal(1000, c.amount);
    assert_string_equal("", c.token);
    assert_string_equal("ch_sandbox_000001", c.charge_id);
    ASSERT_OK(keel_sandbox_call_at(sb, 2, &c));
    assert_int_equal(KEEL_GATEWAY_REFUND, c.op);
    assert_string_equal("", c.idempotency_key);
    /* The fourth call is past max_recorded_calls: counted, not stored. */
    assert_int_equal(KEEL_ENOTFOUND, keel_sandbox_call_at(sb, 3, &c));
    assert_int_equal(4, keel_sandbox_count(sb, KEEL_GATEWAY_OP_COUNT));
    assert_int_equal(1, keel_sandbox_count(sb, KEEL_GATEWAY_VOID));
    assert_int_equal(1, keel_sandbox_count(sb, KEEL_GATEWAY_REFUND));
    assert_int_equal(0, keel_sandbox_replays(sb, KEEL_GATEWAY_OP_COUNT));
    assert_int_equal(KEEL_EINVAL, keel_sandbox_call_at(sb, 0, NULL));
    keel_sandbox_destroy(sb);
}

static void test_max_charges(void **state)
{
    (void)state;
    keel_sandbox_config cfg;
    keel_sandbox_config_default(&cfg);
    cfg.max_charges = 2;
    keel_sandbox *sb = NULL;
    ASSERT_OK(keel_sandbox_create(&sb, &cfg, NULL));
    keel_gateway *gw = keel_sandbox_gateway(sb);
    keel_charge_result a;
    authorize_ok(gw, "tok_visa", "m1", 1, &a);
    authorize_ok(gw, "tok_visa", "m2", 1, &a);
    keel_charge_request r = charge("tok_visa", "m3", 1);
    keel_pay_failure f;
    assert_int_equal(KEEL_EPAY_GATEWAY, keel_gateway_authorize(gw, &r, NULL, &f));
    assert_string_equal("sandbox_full", f.decline_code);
    keel_sandbox_destroy(sb);
}

/* --------------------------------------------------------------- threads -- */

#define THREADS 4
#define PER_THREAD 200

static void *hammer(void *arg)
{
    keel_gateway *gw = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char key[32];
        /* Half the keys are shared between threads: each must charge exactly once. */
        snprintf(key, sizeof(key), "shared-%d", i % (PER_THREAD / 2));
        keel_charge_request r = charge("tok_visa", key, 100);
        keel_pay_failure f;
        if (keel_gateway_authorize(gw, &r, NULL, &f) != KEEL_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    keel_sandbox *sb = sandbox();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(0, pthread_create(&th[i], NULL, hammer, keel_sandbox_gateway(sb)));
    for (int i = 0; i < THREADS; i++) {
        void *rv = NULL;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    assert_int_equal(PER_THREAD / 2, keel_sandbox_charges(sb));
    assert_int_equal(THREADS * PER_THREAD, keel_sandbox_count(sb, KEEL_GATEWAY_AUTHORIZE));
    assert_int_equal(THREADS * PER_THREAD - PER_THREAD / 2,
                     keel_sandbox_replays(sb, KEEL_GATEWAY_AUTHORIZE));
    keel_gateway_destroy(keel_sandbox_gateway(sb)); /* destroy through the interface */
}

/* ----------------------------------------------------------------- OOM -- */

static void test_oom(void **state)
{
    (void)state;
    for (int n = 0; n < 40; n++) {
        keel_test_failalloc_install();
        keel_test_failalloc_arm(n);
        keel_sandbox *sb = NULL;
        keel_err e = keel_sandbox_create(&sb, NULL, NULL);
        if (e == KEEL_OK) {
            keel_charge_request r = charge("tok_visa", "oom", 100);
            keel_pay_failure f;
            e = keel_gateway_authorize(keel_sandbox_gateway(sb), &r, NULL, &f);
            assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
            /* After an OOM nothing was saved: the retry charges once. */
            keel_test_failalloc_arm(-1);
            keel_charge_result out;
            ASSERT_OK(keel_gateway_authorize(keel_sandbox_gateway(sb), &r, &out, &f));
            assert_int_equal(1, keel_sandbox_charges(sb));
            assert_int_equal(e == KEEL_OK, out.replayed);
            keel_sandbox_destroy(sb);
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
        }
        keel_test_failalloc_remove();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success_tokens),
        cmocka_unit_test(test_failing_tokens),
        cmocka_unit_test(test_add_token_alias),
        cmocka_unit_test(test_network_error_then_success),
        cmocka_unit_test(test_decline_and_insufficient_faults),
        cmocka_unit_test(test_timeout_not_performed),
        cmocka_unit_test(test_timeout_after_performing),
        cmocka_unit_test(test_slow_uses_the_clock),
        cmocka_unit_test(test_rate_limited),
        cmocka_unit_test(test_inject_rejects_bad_arguments),
        cmocka_unit_test(test_idempotent_replay),
        cmocka_unit_test(test_capture_void_refund_rules),
        cmocka_unit_test(test_refund_idempotency),
        cmocka_unit_test(test_call_recording),
        cmocka_unit_test(test_max_charges),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
