/* Tests for src/pay/payment.c: the payment error taxonomy and exact money conversions. */
#include "test.h"

#include <stdio.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/payment.h>
#include <keel/policy.h>

static const keel_currency *cur(const char *code)
{
    const keel_currency *c = keel_currency_find(keel_str_c(code));
    assert_non_null(c);
    return c;
}

static void test_error_taxonomy(void **state)
{
    (void)state;
    /* The seed's retriable set, and nothing else. */
    const keel_err retriable[] = {KEEL_EPAY_NETWORK, KEEL_EPAY_GATEWAY_TIMEOUT,
                                  KEEL_EPAY_RATE_LIMITED};
    const keel_err terminal[] = {KEEL_EPAY_DECLINED,          KEEL_EPAY_INSUFFICIENT_FUNDS,
                                 KEEL_EPAY_FRAUD_BLOCKED,     KEEL_EPAY_AUTH_REQUIRED,
                                 KEEL_EPAY_IDEMPOTENCY_CONFLICT, KEEL_EPAY_IN_FLIGHT,
                                 KEEL_EPAY_COMPENSATION,      KEEL_EPAY_GATEWAY};
    keel_call call;
    keel_call_init(&call, "charge", NULL);
    for (size_t i = 0; i < sizeof(retriable) / sizeof(retriable[0]); i++) {
        assert_true(keel_pay_err_is_payment(retriable[i]));
        assert_int_equal(1, keel_pay_err_retriable(retriable[i]));
        assert_int_equal(1, keel_policy_is_transient(&call, retriable[i]));
    }
    for (size_t i = 0; i < sizeof(terminal) / sizeof(terminal[0]); i++) {
        assert_true(keel_pay_err_is_payment(terminal[i]));
        assert_int_equal(0, keel_pay_err_retriable(terminal[i]));
        /* A decline is never retried by the default retry predicate. */
        assert_int_equal(0, keel_policy_is_transient(&call, terminal[i]));
        const char *type = keel_pay_err_type(terminal[i]);
        assert_non_null(type);
        assert_int_equal(terminal[i], keel_pay_err_from_type(keel_str_c(type)));
        assert_int_not_equal(0, keel_pay_err_http_status(terminal[i]));
    }
    assert_string_equal("card_declined", keel_pay_err_type(KEEL_EPAY_DECLINED));
    assert_string_equal("network_error", keel_pay_err_type(KEEL_EPAY_NETWORK));
    assert_int_equal(402, keel_pay_err_http_status(KEEL_EPAY_DECLINED));
    assert_int_equal(422, keel_pay_err_http_status(KEEL_EPAY_IDEMPOTENCY_CONFLICT));
    assert_int_equal(409, keel_pay_err_http_status(KEEL_EPAY_IN_FLIGHT));
    assert_int_equal(504, keel_pay_err_http_status(KEEL_EPAY_GATEWAY_TIMEOUT));
    assert_false(keel_pay_err_is_payment(KEEL_EIO));
    assert_false(keel_pay_err_retriable(KEEL_EIO));
    assert_null(keel_pay_err_type(KEEL_OK));
    assert_int_equal(KEEL_OK, keel_pay_err_from_type(keel_str_c("no_such_type")));
    assert_string_equal("KEEL_EPAY_DECLINED", keel_err_name(KEEL_EPAY_DECLINED));
    assert_string_equal("card declined", keel_strerror(KEEL_EPAY_DECLINED));

    keel_pay_failure f;
    assert_int_equal(KEEL_EPAY_DECLINED,
                     keel_pay_fail(&f, KEEL_EPAY_DECLINED, "do_not_honor", "declined by %s", "bank"));
    assert_string_equal("do_not_honor", f.decline_code);
    assert_string_equal("declined by bank", f.message);
    assert_int_equal(KEEL_EPAY_NETWORK, keel_pay_fail(NULL, KEEL_EPAY_NETWORK, NULL, "x"));
}

static void test_currency_lookup(void **state)
{
    (void)state;
    assert_int_equal(2, cur("USD")->exponent);
    assert_int_equal(0, cur("JPY")->exponent);
    assert_int_equal(3, cur("BHD")->exponent);
    assert_int_equal(4, cur("CLF")->exponent);
    assert_int_equal(0, cur("KRW")->exponent);
    assert_ptr_equal(cur("USD"), cur("usd")); /* Stripe spells codes in lower case */
    assert_string_equal("EUR", cur("eUr")->code);
    assert_null(keel_currency_find(keel_str_c("XAU"))); /* no minor unit */
    assert_null(keel_currency_find(keel_str_c("ZZZ")));
    assert_null(keel_currency_find(keel_str_c("US")));
    assert_null(keel_currency_find(keel_str_c("USDX")));
    assert_null(keel_currency_find(keel_str_c("U$D")));
    assert_null(keel_currency_find(KEEL_STR_NULL));
}

static int64_t parse_ok(const char *s, const char *code, unsigned flags)
{
    int64_t v = -777;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_money_parse(keel_str_c(s), cur(code), flags, &v, &d);
    if (e != KEEL_OK)
        fail_msg("parse '%s' %s: %s (%s)", s, code, keel_err_name(e), d.msg);
    return v;
}

static void parse_bad(const char *s, const char *code, unsigned flags, keel_err want,
                      size_t offset)
{
    int64_t v = -777;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_money_parse(keel_str_c(s), cur(code), flags, &v, &d);
    if (e != want)
        fail_msg("parse '%s' %s: got %s want %s", s, code, keel_err_name(e), keel_err_name(want));
    assert_int_equal(0, v);
    assert_true(d.msg[0] != '\0');
    if (offset != (size_t)-1)
        assert_int_equal(offset, d.offset);
}

static void test_money_parse(void **state)
{
    (void)state;
    assert_int_equal(1234, parse_ok("12.34", "USD", 0));
    assert_int_equal(1230, parse_ok("12.3", "USD", 0));
    assert_int_equal(1200, parse_ok("12", "USD", 0));
    assert_int_equal(1234, parse_ok("12.340", "USD", 0)); /* exact: trailing zeros */
    assert_int_equal(5, parse_ok("0.05", "USD", 0));
    assert_int_equal(5, parse_ok("000.05", "USD", 0));
    assert_int_equal(500, parse_ok("500", "JPY", 0));
    assert_int_equal(500, parse_ok("500.0", "JPY", 0));
    assert_int_equal(1234, parse_ok("1.234", "BHD", 0));
    assert_int_equal(12345, parse_ok("1.2345", "CLF", 0));
    assert_int_equal(-1234, parse_ok("-12.34", "USD", KEEL_MONEY_ALLOW_NEGATIVE));
    assert_int_equal(0, parse_ok("-0.00", "USD", 0)); /* negative zero is zero */
    /* The int64 edges, exactly. */
    assert_int_equal(INT64_MAX, parse_ok("92233720368547758.07", "USD", 0));
    assert_int_equal(INT64_MIN,
                     parse_ok("-92233720368547758.08", "USD", KEEL_MONEY_ALLOW_NEGATIVE));
    assert_int_equal(INT64_MAX, parse_ok("9223372036854775807", "JPY", 0));

    parse_bad("92233720368547758.08", "USD", 0, KEEL_ERANGE, (size_t)-1);
    parse_bad("9223372036854775808", "JPY", 0, KEEL_ERANGE, (size_t)-1);
    parse_bad("99999999999999999999999", "USD", 0, KEEL_ERANGE, (size_t)-1);
    parse_bad("12.345", "USD", 0, KEEL_ERANGE, 5);
    parse_bad("500.5", "JPY", 0, KEEL_ERANGE, 4);
    parse_bad("-1.00", "USD", 0, KEEL_ERANGE, 0);
    parse_bad("", "USD", 0, KEEL_EPARSE, 0);
    parse_bad("-", "USD", KEEL_MONEY_ALLOW_NEGATIVE, KEEL_EPARSE, 1);
    parse_bad(".5", "USD", 0, KEEL_EPARSE, 0);
    parse_bad("12.", "USD", 0, KEEL_EPARSE, 3);
    parse_bad("+12", "USD", 0, KEEL_EPARSE, 0);
    parse_bad("12a", "USD", 0, KEEL_EPARSE, 2);
    parse_bad(" 12", "USD", 0, KEEL_EPARSE, 0);
    parse_bad("12 ", "USD", 0, KEEL_EPARSE, 2);
    parse_bad("1,234.00", "USD", 0, KEEL_EPARSE, 1);
    parse_bad("1e3", "USD", 0, KEEL_EPARSE, 1);
    parse_bad("12.3.4", "USD", 0, KEEL_EPARSE, 4);
    parse_bad("NaN", "USD", 0, KEEL_EPARSE, 0);

    int64_t v;
    assert_int_equal(KEEL_EINVAL, keel_money_parse(keel_str_c("1"), NULL, 0, &v, NULL));
    /* Embedded NUL is not a terminator: the slice length rules. */
    keel_str withnul = {"12\0" "3", 4};
    assert_int_equal(KEEL_EPARSE, keel_money_parse(withnul, cur("USD"), 0, &v, NULL));
}

static void fmt_is(int64_t minor, const char *code, const char *want)
{
    char buf[KEEL_MONEY_STR_MAX + 1];
    size_t n = keel_money_format(minor, cur(code), buf, sizeof(buf));
    assert_string_equal(want, buf);
    assert_int_equal(strlen(want), n);
    /* Round trip. */
    assert_int_equal(minor, parse_ok(buf, code, KEEL_MONEY_ALLOW_NEGATIVE));
}

static void test_money_format(void **state)
{
    (void)state;
    fmt_is(1234, "USD", "12.34");
    fmt_is(-5, "USD", "-0.05");
    fmt_is(0, "USD", "0.00");
    fmt_is(100, "USD", "1.00");
    fmt_is(500, "JPY", "500");
    fmt_is(0, "JPY", "0");
    fmt_is(1234, "BHD", "1.234");
    fmt_is(7, "BHD", "0.007");
    fmt_is(INT64_MAX, "USD", "92233720368547758.07");
    fmt_is(INT64_MIN, "USD", "-92233720368547758.08");
    fmt_is(INT64_MIN, "CLF", "-922337203685477.5808");
    fmt_is(INT64_MIN, "JPY", "-9223372036854775808");

    char small[5];
    assert_int_equal(0, keel_money_format(1234, cur("USD"), small, sizeof(small)));
    assert_string_equal("", small);
    char buf[8];
    assert_int_equal(0, keel_money_format(1, NULL, buf, sizeof(buf)));

    int64_t out;
    ASSERT_OK(keel_money_add(1, 2, &out));
    assert_int_equal(3, out);
    assert_int_equal(KEEL_ERANGE, keel_money_add(INT64_MAX, 1, &out));
    assert_int_equal(KEEL_ERANGE, keel_money_add(INT64_MIN, -1, &out));
    ASSERT_OK(keel_money_add(INT64_MIN, INT64_MAX, &out));
    assert_int_equal(-1, out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_taxonomy),
        cmocka_unit_test(test_currency_lookup),
        cmocka_unit_test(test_money_parse),
        cmocka_unit_test(test_money_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
