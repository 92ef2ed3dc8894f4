/*
 * keel/payment.h - the foundation of the pay module: typed payment errors and money.
 *
 * Errors.  Payment failures are keel_err codes (KEEL_EPAY_*, keel/common.h) so that they flow
 * through the policy chain like any other error, and each carries a fixed `retriable` flag
 * that drives control flow (seed 004 errors.py):
 *
 *   retriable      KEEL_EPAY_NETWORK, KEEL_EPAY_GATEWAY_TIMEOUT, KEEL_EPAY_RATE_LIMITED
 *   not retriable  KEEL_EPAY_DECLINED, KEEL_EPAY_INSUFFICIENT_FUNDS, KEEL_EPAY_FRAUD_BLOCKED,
 *                  KEEL_EPAY_AUTH_REQUIRED, KEEL_EPAY_IDEMPOTENCY_CONFLICT, KEEL_EPAY_IN_FLIGHT,
 *                  KEEL_EPAY_COMPENSATION, KEEL_EPAY_GATEWAY
 *
 * The retry policy's default predicate (keel_policy_is_transient) already retries exactly
 * the retriable ones, so a card decline never becomes three declines.  A gateway's details
 * (decline code, message, Retry-After) travel next to the code in a keel_pay_failure.
 *
 * Money.  Amounts are int64 counts of the currency's minor unit (cents for USD, yen for JPY,
 * fils for BHD) with an ISO 4217 currency giving the exponent.  Decimal strings convert
 * exactly in both directions; no floating point is involved anywhere.
 */
#ifndef KEEL_PAYMENT_H
#define KEEL_PAYMENT_H

#include <keel/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors -- */

/** 1 if e is one of the KEEL_EPAY_* codes.  Thread-safety: any thread. */
KEEL_API int keel_pay_err_is_payment(keel_err e);
/** 1 if a payment error may succeed when tried again (network, gateway timeout, rate limit),
 *  0 for every other code.  Thread-safety: any thread. */
KEEL_API int keel_pay_err_retriable(keel_err e);
/** Stable snake_case type for APIs, logs and stored results: "network_error",
 *  "gateway_timeout", "rate_limited", "card_declined", "insufficient_funds", "fraud_blocked",
 *  "authentication_required", "idempotency_conflict", "idempotency_in_flight",
 *  "saga_compensation_failed", "gateway_error"; NULL for non-payment codes.
 *  Ownership: static string. */
KEEL_API const char *keel_pay_err_type(keel_err e);
/** Inverse of keel_pay_err_type: the code for a type string, or KEEL_OK when unknown. */
KEEL_API keel_err keel_pay_err_from_type(keel_str type);
/** HTTP status an API answers with for a payment error: 402 for declines, insufficient funds,
 *  fraud blocks and required authentication; 422 idempotency conflict; 409 in flight;
 *  429 rate limited; 502 gateway / network / compensation failure; 504 gateway timeout.
 *  0 for non-payment codes. */
KEEL_API int keel_pay_err_http_status(keel_err e);

/** What a gateway said about a failure, next to the keel_err code. */
typedef struct keel_pay_failure {
    keel_err code;           /* a KEEL_EPAY_* code, or KEEL_OK */
    char decline_code[32];   /* the gateway's own reason ("do_not_honor"), may be empty */
    char message[160];       /* human-readable; never holds card data */
    uint64_t retry_after_ms; /* from a rate-limit answer, 0 when none */
} keel_pay_failure;

/** Fill f (if not NULL) and return code.  decline_code may be NULL.  The message is formatted
 *  and truncated to fit.  Thread-safety: any thread. */
KEEL_API keel_err keel_pay_fail(keel_pay_failure *f, keel_err code, const char *decline_code,
                                const char *fmt, ...) KEEL_PRINTF(4, 5);

/* ------------------------------------------------------------------- money -- */

/** An ISO 4217 currency.  Instances are static; compare pointers or codes. */
typedef struct keel_currency {
    char code[4];     /* "USD" */
    uint8_t exponent; /* digits after the decimal point: JPY 0, USD 2, BHD 3, CLF 4 */
} keel_currency;

/** Look up an active ISO 4217 currency by its three-letter code, ASCII case-insensitive
 *  ("usd" as Stripe spells it finds USD).  NULL when unknown (including fund and metal codes
 *  such as XAU, which have no minor unit).  Thread-safety: any thread. */
KEEL_API const keel_currency *keel_currency_find(keel_str code);

/** Largest number of characters keel_money_format writes, NUL excluded. */
#define KEEL_MONEY_STR_MAX 24

/** Flags for keel_money_parse. */
#define KEEL_MONEY_ALLOW_NEGATIVE 0x1u /* accept a leading '-' (refunds, adjustments) */

/** Parse a decimal string in major units into minor units, exactly: "12.34" USD -> 1234,
 *  "12.3" -> 1230, "12" -> 1200, "500" JPY -> 500, "1.234" BHD -> 1234.  Grammar:
 *  ['-'] digit+ ['.' digit+].  Extra fraction digits are accepted only when they are zeros
 *  ("12.340" USD -> 1234); "12.345" USD is KEEL_ERANGE (not representable), never rounded.
 *  No '+', spaces, exponents or thousands separators.
 *  @return KEEL_OK; KEEL_EPARSE (not a number, with the byte offset of the offending
 *  character in diag->offset); KEEL_ERANGE (negative without the flag, too many decimals,
 *  or beyond int64 minor units); KEEL_EINVAL (NULL cur or out).
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_money_parse(keel_str text, const keel_currency *cur,
                                                  unsigned flags, int64_t *out, keel_diag *diag);

/** Format minor units as a decimal string in major units: 1234 USD -> "12.34",
 *  -5 USD -> "-0.05", 500 JPY -> "500", 1234 BHD -> "1.234".  Every int64 value formats.
 *  buf receives at most KEEL_MONEY_STR_MAX + 1 bytes.
 *  @return the length written, or 0 when cap is too small or cur is NULL (buf is then "" if
 *  cap > 0).  Thread-safety: any thread. */
KEEL_API size_t keel_money_format(int64_t minor, const keel_currency *cur, char *buf, size_t cap);

/** Overflow-checked addition of minor-unit amounts.  @return KEEL_OK or KEEL_ERANGE. */
KEEL_API KEEL_NODISCARD keel_err keel_money_add(int64_t a, int64_t b, int64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_PAYMENT_H */
