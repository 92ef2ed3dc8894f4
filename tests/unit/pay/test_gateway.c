/* Tests for src/pay/gateway.c: request validation (every limit, the field named in the
 * message, tokens never echoed), dispatch through the ops table, output clearing, failure
 * completion, and the name helpers. */
#include "test.h"

#include <string.h>

#include <keel/gateway.h>
#include <keel/payment.h>

/* A minimal gateway that records what reached it and answers as told. */
typedef struct fake_gw {
    keel_gateway gw;
    int calls[4];
    keel_err answer;
    int fill_message;
    int destroyed;
} fake_gw;

static keel_err fake_answer(fake_gw *g, keel_pay_failure *fail)
{
    if (g->answer != KEEL_OK && g->fill_message)
        return keel_pay_fail(fail, g->answer, "do_not_honor", "fake says no");
    if (g->answer == KEEL_EPAY_RATE_LIMITED && fail != NULL)
        fail->retry_after_ms = 777;
    return g->answer;
}

static keel_err fake_authorize(keel_gateway *gw, const keel_charge_request *req,
                               keel_charge_result *out, keel_pay_failure *fail)
{
    fake_gw *g = (fake_gw *)gw;
    g->calls[0]++;
    /* The helper hands over zeroed outputs. */
    assert_int_equal(KEEL_CHARGE_NONE, out->status);
    assert_string_equal("", out->charge_id);
    if (g->answer == KEEL_OK) {
        memcpy(out->charge_id, "ch_fake", 8);
        out->status = KEEL_CHARGE_AUTHORIZED;
        out->amount = req->amount;
    }
    return fake_answer(g, fail);
}

static keel_err fake_capture(keel_gateway *gw, const keel_capture_request *req,
                             keel_charge_result *out, keel_pay_failure *fail)
{
    (void)req;
    (void)out;
    fake_gw *g = (fake_gw *)gw;
    g->calls[1]++;
    return fake_answer(g, fail);
}

static keel_err fake_void(keel_gateway *gw, const keel_void_request *req,
                          keel_charge_result *out, keel_pay_failure *fail)
{
    (void)req;
    (void)out;
    fake_gw *g = (fake_gw *)gw;
    g->calls[2]++;
    return fake_answer(g, fail);
}

static keel_err fake_refund(keel_gateway *gw, const keel_refund_request *req,
                            keel_refund_result *out, keel_pay_failure *fail)
{
    (void)req;
    (void)out;
    fake_gw *g = (fake_gw *)gw;
    g->calls[3]++;
    return fake_answer(g, fail);
}

static void fake_destroy(keel_gateway *gw)
{
    ((fake_gw *)gw)->destroyed++;
}

static const keel_gateway_ops FAKE_OPS = {"fake",      fake_authorize, fake_capture,
                                          fake_void,   fake_refund,    fake_destroy};

static keel_charge_request good(void)
{
    keel_charge_request r;
    memset(&r, 0, sizeof(r));
    r.amount = 1000;
    r.currency = keel_currency_find(KEEL_STR_LIT("EUR"));
    r.payment_token = "tok_secretish_123";
    r.idempotency_key = "3f1c7a52-6a0e-4b8e-9a57-1d1f0e3b2c11";
    return r;
}

static void expect_invalid(const keel_charge_request *r, const char *field)
{
    keel_diag d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(KEEL_EINVAL, keel_charge_request_validate(r, &d));
    assert_int_equal(KEEL_EINVAL, d.code);
    if (strncmp(d.msg, field, strlen(field)) != 0)
        fail_msg("expected a message about %s, got \"%s\"", field, d.msg);
    assert_null(strstr(d.msg, "tok_secretish"));
}

static void test_charge_validation(void **state)
{
    (void)state;
    keel_charge_request r = good();
    ASSERT_OK(keel_charge_request_validate(&r, NULL));

    r.amount = 0;
    expect_invalid(&r, "amount");
    r.amount = -5;
    expect_invalid(&r, "amount");
    r = good();
    r.currency = NULL;
    expect_invalid(&r, "currency");
    r = good();
    r.payment_token = NULL;
    expect_invalid(&r, "payment_token");
    r.payment_token = "";
    expect_invalid(&r, "payment_token");
    r.payment_token = "tok_secretish with space";
    expect_invalid(&r, "payment_token");

    char long_id[KEEL_GATEWAY_ID_MAX + 1];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    r = good();
    r.payment_token = long_id; /* 64 bytes: one too many */
    expect_invalid(&r, "payment_token");
    long_id[KEEL_GATEWAY_ID_MAX - 1] = '\0'; /* 63: fits */
    r.payment_token = long_id;
    ASSERT_OK(keel_charge_request_validate(&r, NULL));

    r = good();
    r.idempotency_key = NULL;
    expect_invalid(&r, "idempotency_key");
    char key[KEEL_GATEWAY_IDEM_KEY_MAX + 1];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    r.idempotency_key = key; /* 256 */
    expect_invalid(&r, "idempotency_key");
    key[255] = '\0'; /* 255, Stripe's maximum */
    ASSERT_OK(keel_charge_request_validate(&r, NULL));

    r = good();
    r.customer_id = long_id;
    ASSERT_OK(keel_charge_request_validate(&r, NULL));
    r.customer_id = "bad\nid";
    expect_invalid(&r, "customer_id");

    char email[KEEL_GATEWAY_EMAIL_MAX + 2];
    memset(email, 'e', sizeof(email) - 1);
    email[sizeof(email) - 1] = '\0';
    r = good();
    r.customer_email = email;
    expect_invalid(&r, "customer_email");

    char desc[KEEL_GATEWAY_DESC_MAX + 1];
    memset(desc, 'd', sizeof(desc) - 1);
    desc[sizeof(desc) - 1] = '\0';
    r = good();
    r.description = desc;
    expect_invalid(&r, "description");
    r.description = "Two socks, one blue (the other also blue)";
    ASSERT_OK(keel_charge_request_validate(&r, NULL));

    keel_gateway_meta meta[KEEL_GATEWAY_META_MAX + 1];
    for (size_t i = 0; i < KEEL_GATEWAY_META_MAX + 1; i++) {
        meta[i].key = "order_id";
        meta[i].value = "42";
    }
    r = good();
    r.metadata = meta;
    r.metadata_len = KEEL_GATEWAY_META_MAX;
    ASSERT_OK(keel_charge_request_validate(&r, NULL));
    r.metadata_len = KEEL_GATEWAY_META_MAX + 1;
    expect_invalid(&r, "metadata");
    r.metadata_len = 1;
    r.metadata = NULL;
    expect_invalid(&r, "metadata");
    meta[0].key = "a_key_that_is_much_longer_than_forty_bytes_in_total";
    r.metadata = meta;
    expect_invalid(&r, "metadata.key");
    meta[0].key = "k";
    meta[0].value = NULL;
    expect_invalid(&r, "metadata.value");

    keel_diag d;
    assert_int_equal(KEEL_EINVAL, keel_charge_request_validate(NULL, &d));
}

static void test_other_validation(void **state)
{
    (void)state;
    keel_diag d;
    keel_capture_request c = {"ch_1", 0, NULL};
    ASSERT_OK(keel_capture_request_validate(&c, &d));
    c.amount = -1;
    assert_int_equal(KEEL_EINVAL, keel_capture_request_validate(&c, &d));
    assert_non_null(strstr(d.msg, "amount"));
    c.amount = 0;
    c.charge_id = NULL;
    assert_int_equal(KEEL_EINVAL, keel_capture_request_validate(&c, &d));
    assert_non_null(strstr(d.msg, "charge_id"));

    keel_void_request v = {"ch_1", "key with space"};
    assert_int_equal(KEEL_EINVAL, keel_void_request_validate(&v, &d));
    assert_non_null(strstr(d.msg, "idempotency_key"));
    v.idempotency_key = NULL;
    ASSERT_OK(keel_void_request_validate(&v, &d));

    keel_refund_request r = {"ch_1", -3, NULL, NULL};
    assert_int_equal(KEEL_EINVAL, keel_refund_request_validate(&r, &d));
    assert_non_null(strstr(d.msg, "amount"));
    r.amount = 0;
    r.reason = "requested_by_customer";
    ASSERT_OK(keel_refund_request_validate(&r, &d));
    assert_int_equal(KEEL_EINVAL, keel_refund_request_validate(NULL, &d));
}

static void test_dispatch(void **state)
{
    (void)state;
    fake_gw g;
    memset(&g, 0, sizeof(g));
    g.gw.ops = &FAKE_OPS;
    keel_charge_request r = good();
    keel_charge_result out;
    keel_pay_failure f;
    memset(&out, 0x5a, sizeof(out));
    memset(&f, 0x5a, sizeof(f));
    ASSERT_OK(keel_gateway_authorize(&g.gw, &r, &out, &f));
    assert_string_equal("ch_fake", out.charge_id);
    assert_int_equal(1000, out.amount);
    assert_int_equal(KEEL_OK, f.code);
    assert_string_equal("", f.message);
    assert_int_equal(1, g.calls[0]);

    /* Invalid requests never reach the gateway; the failure names the field. */
    r.amount = 0;
    assert_int_equal(KEEL_EINVAL, keel_gateway_authorize(&g.gw, &r, &out, &f));
    assert_int_equal(KEEL_EINVAL, f.code);
    assert_non_null(strstr(f.message, "amount"));
    assert_int_equal(1, g.calls[0]);
    assert_string_equal("", out.charge_id);

    /* A gateway that leaves the failure empty still gets one described. */
    r = good();
    g.answer = KEEL_EPAY_DECLINED;
    assert_int_equal(KEEL_EPAY_DECLINED, keel_gateway_authorize(&g.gw, &r, NULL, &f));
    assert_int_equal(KEEL_EPAY_DECLINED, f.code);
    assert_string_equal("card declined", f.message);
    g.answer = KEEL_EPAY_RATE_LIMITED;
    assert_int_equal(KEEL_EPAY_RATE_LIMITED, keel_gateway_authorize(&g.gw, &r, NULL, &f));
    assert_int_equal(777, f.retry_after_ms); /* kept while the message is filled in */
    g.fill_message = 1;
    g.answer = KEEL_EPAY_DECLINED;
    assert_int_equal(KEEL_EPAY_DECLINED, keel_gateway_authorize(&g.gw, &r, NULL, NULL));
    assert_int_equal(KEEL_EPAY_DECLINED, keel_gateway_authorize(&g.gw, &r, NULL, &f));
    assert_string_equal("do_not_honor", f.decline_code);
    assert_string_equal("fake says no", f.message);

    g.answer = KEEL_OK;
    keel_capture_request c = {"ch_fake", 0, NULL};
    ASSERT_OK(keel_gateway_capture(&g.gw, &c, NULL, &f));
    keel_void_request v = {"ch_fake", NULL};
    ASSERT_OK(keel_gateway_void(&g.gw, &v, NULL, &f));
    keel_refund_request rf = {"ch_fake", 0, NULL, NULL};
    ASSERT_OK(keel_gateway_refund(&g.gw, &rf, NULL, &f));
    assert_int_equal(1, g.calls[1]);
    assert_int_equal(1, g.calls[2]);
    assert_int_equal(1, g.calls[3]);
    c.charge_id = "";
    assert_int_equal(KEEL_EINVAL, keel_gateway_capture(&g.gw, &c, NULL, &f));
    assert_int_equal(1, g.calls[1]);

    assert_string_equal("fake", keel_gateway_name(&g.gw));
    keel_gateway_destroy(&g.gw);
    assert_int_equal(1, g.destroyed);
    keel_gateway_destroy(NULL);

    assert_int_equal(KEEL_EINVAL, keel_gateway_authorize(NULL, &r, NULL, &f));
    assert_int_equal(KEEL_EINVAL, f.code);
    keel_gateway_ops partial = FAKE_OPS;
    partial.refund = NULL;
    g.gw.ops = &partial;
    assert_int_equal(KEEL_EINVAL, keel_gateway_refund(&g.gw, &rf, NULL, &f));
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal("authorized", keel_charge_status_name(KEEL_CHARGE_AUTHORIZED));
    assert_string_equal("captured", keel_charge_status_name(KEEL_CHARGE_CAPTURED));
    assert_string_equal("voided", keel_charge_status_name(KEEL_CHARGE_VOIDED));
    assert_string_equal("refunded", keel_charge_status_name(KEEL_CHARGE_REFUNDED));
    assert_string_equal("partially_refunded",
                        keel_charge_status_name(KEEL_CHARGE_PARTIALLY_REFUNDED));
    assert_string_equal("none", keel_charge_status_name(KEEL_CHARGE_NONE));
    assert_string_equal("unknown", keel_charge_status_name((keel_charge_status)99));
    assert_string_equal("authorize", keel_gateway_op_name(KEEL_GATEWAY_AUTHORIZE));
    assert_string_equal("capture", keel_gateway_op_name(KEEL_GATEWAY_CAPTURE));
    assert_string_equal("void", keel_gateway_op_name(KEEL_GATEWAY_VOID));
    assert_string_equal("refund", keel_gateway_op_name(KEEL_GATEWAY_REFUND));
    assert_string_equal("unknown", keel_gateway_op_name(KEEL_GATEWAY_OP_COUNT));
    assert_string_equal("", keel_gateway_name(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_charge_validation),
        cmocka_unit_test(test_other_validation),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
