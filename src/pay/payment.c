/* payment.c - payment error taxonomy and exact money arithmetic (keel/payment.h). */
#include "keel_int.h"

#include <stdarg.h>
#include <stdio.h>

#include <keel/payment.h>

/* --------------------------------------------------------------- errors -- */

typedef struct pay_err_info {
    keel_err code;
    const char *type;
    int retriable;
    int http_status;
} pay_err_info;

static const pay_err_info PAY_ERRS[] = {
    {KEEL_EPAY_NETWORK, "network_error", 1, 502},
    {KEEL_EPAY_GATEWAY_TIMEOUT, "gateway_timeout", 1, 504},
    {KEEL_EPAY_RATE_LIMITED, "rate_limited", 1, 429},
    {KEEL_EPAY_DECLINED, "card_declined", 0, 402},
    {KEEL_EPAY_INSUFFICIENT_FUNDS, "insufficient_funds", 0, 402},
    {KEEL_EPAY_FRAUD_BLOCKED, "fraud_blocked", 0, 402},
    {KEEL_EPAY_AUTH_REQUIRED, "authentication_required", 0, 402},
    {KEEL_EPAY_IDEMPOTENCY_CONFLICT, "idempotency_conflict", 0, 422},
    {KEEL_EPAY_IN_FLIGHT, "idempotency_in_flight", 0, 409},
    {KEEL_EPAY_COMPENSATION, "saga_compensation_failed", 0, 502},
    {KEEL_EPAY_GATEWAY, "gateway_error", 0, 502},
};

static const pay_err_info *pay_err_find(keel_err e)
{
    for (size_t i = 0; i < sizeof(PAY_ERRS) / sizeof(PAY_ERRS[0]); i++)
        if (PAY_ERRS[i].code == e)
            return &PAY_ERRS[i];
    return NULL;
}

int keel_pay_err_is_payment(keel_err e)
{
    return pay_err_find(e) != NULL;
}

int keel_pay_err_retriable(keel_err e)
{
    const pay_err_info *i = pay_err_find(e);
    return i != NULL && i->retriable;
}

const char *keel_pay_err_type(keel_err e)
{
    const pay_err_info *i = pay_err_find(e);
    return i ? i->type : NULL;
}

keel_err keel_pay_err_from_type(keel_str type)
{
    for (size_t i = 0; i < sizeof(PAY_ERRS) / sizeof(PAY_ERRS[0]); i++)
        if (keel_str_eq(type, keel_str_c(PAY_ERRS[i].type)))
            return PAY_ERRS[i].code;
    return KEEL_OK;
}

int keel_pay_err_http_status(keel_err e)
{
    const pay_err_info *i = pay_err_find(e);
    return i ? i->http_status : 0;
}

keel_err keel_pay_fail(keel_pay_failure *f, keel_err code, const char *decline_code,
                       const char *fmt, ...)
{
    if (f == NULL)
        return code;
    memset(f, 0, sizeof(*f));
    f->code = code;
    if (decline_code != NULL)
        snprintf(f->decline_code, sizeof(f->decline_code), "%s", decline_code);
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->message, sizeof(f->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---------------------------------------------------------------- money -- */

/* Active ISO 4217 codes with their minor-unit exponent, sorted by code (bsearch).  Fund and
 * precious-metal codes without a minor unit (XAU, XDR, XTS...) are deliberately absent. */
static const keel_currency CURRENCIES[] = {
    {"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"ANG", 2}, {"AOA", 2}, {"ARS", 2}, {"AUD", 2},
    {"AWG", 2}, {"AZN", 2}, {"BAM", 2}, {"BBD", 2}, {"BDT", 2}, {"BGN", 2}, {"BHD", 3}, {"BIF", 0},
    {"BMD", 2}, {"BND", 2}, {"BOB", 2}, {"BOV", 2}, {"BRL", 2}, {"BSD", 2}, {"BTN", 2}, {"BWP", 2},
    {"BYN", 2}, {"BZD", 2}, {"CAD", 2}, {"CDF", 2}, {"CHE", 2}, {"CHF", 2}, {"CHW", 2}, {"CLF", 4},
    {"CLP", 0}, {"CNY", 2}, {"COP", 2}, {"COU", 2}, {"CRC", 2}, {"CUC", 2}, {"CUP", 2}, {"CVE", 2},
    {"CZK", 2}, {"DJF", 0}, {"DKK", 2}, {"DOP", 2}, {"DZD", 2}, {"EGP", 2}, {"ERN", 2}, {"ETB", 2},
    {"EUR", 2}, {"FJD", 2}, {"FKP", 2}, {"GBP", 2}, {"GEL", 2}, {"GHS", 2}, {"GIP", 2}, {"GMD", 2},
    {"GNF", 0}, {"GTQ", 2}, {"GYD", 2}, {"HKD", 2}, {"HNL", 2}, {"HTG", 2}, {"HUF", 2}, {"IDR", 2},
    {"ILS", 2}, {"INR", 2}, {"IQD", 3}, {"IRR", 2}, {"ISK", 0}, {"JMD", 2}, {"JOD", 3}, {"JPY", 0},
    {"KES", 2}, {"KGS", 2}, {"KHR", 2}, {"KMF", 0}, {"KPW", 2}, {"KRW", 0}, {"KWD", 3}, {"KYD", 2},
    {"KZT", 2}, {"LAK", 2}, {"LBP", 2}, {"LKR", 2}, {"LRD", 2}, {"LSL", 2}, {"LYD", 3}, {"MAD", 2},
    {"MDL", 2}, {"MGA", 2}, {"MKD", 2}, {"MMK", 2}, {"MNT", 2}, {"MOP", 2}, {"MRU", 2}, {"MUR", 2},
    {"MVR", 2}, {"MWK", 2}, {"MXN", 2}, {"MXV", 2}, {"MYR", 2}, {"MZN", 2}, {"NAD", 2}, {"NGN", 2},
    {"NIO", 2}, {"NOK", 2}, {"NPR", 2}, {"NZD", 2}, {"OMR", 3}, {"PAB", 2}, {"PEN", 2}, {"PGK", 2},
    {"PHP", 2}, {"PKR", 2}, {"PLN", 2}, {"PYG", 0}, {"QAR", 2}, {"RON", 2}, {"RSD", 2}, {"RUB", 2},
    {"RWF", 0}, {"SAR", 2}, {"SBD", 2}, {"SCR", 2}, {"SDG", 2}, {"SEK", 2}, {"SGD", 2}, {"SHP", 2},
    {"SLE", 2}, {"SOS", 2}, {"SRD", 2}, {"SSP", 2}, {"STN", 2}, {"SVC", 2}, {"SYP", 2}, {"SZL", 2},
    {"THB", 2}, {"TJS", 2}, {"TMT", 2}, {"TND", 3}, {"TOP", 2}, {"TRY", 2}, {"TTD", 2}, {"TWD", 2},
    {"TZS", 2}, {"UAH", 2}, {"UGX", 0}, {"USD", 2}, {"USN", 2}, {"UYI", 0}, {"UYU", 2}, {"UYW", 4},
    {"UZS", 2}, {"VED", 2}, {"VES", 2}, {"VND", 0}, {"VUV", 0}, {"WST", 2}, {"XAF", 0}, {"XCD", 2},
    {"XCG", 2}, {"XOF", 0}, {"XPF", 0}, {"YER", 2}, {"ZAR", 2}, {"ZMW", 2}, {"ZWG", 2},
};

static int cmp_currency(const void *key, const void *elem)
{
    return memcmp(key, ((const keel_currency *)elem)->code, 3);
}

const keel_currency *keel_currency_find(keel_str code)
{
    if (code.ptr == NULL || code.len != 3)
        return NULL;
    char up[3];
    for (size_t i = 0; i < 3; i++) {
        char c = code.ptr[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c < 'A' || c > 'Z')
            return NULL;
        up[i] = c;
    }
    return bsearch(up, CURRENCIES, sizeof(CURRENCIES) / sizeof(CURRENCIES[0]),
                   sizeof(CURRENCIES[0]), cmp_currency);
}

keel_err keel_money_parse(keel_str text, const keel_currency *cur, unsigned flags, int64_t *out,
                          keel_diag *diag)
{
    if (out != NULL)
        *out = 0;
    if (cur == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_money_parse: invalid argument");
    const char *p = text.ptr;
    size_t n = text.ptr ? text.len : 0, i = 0;
    int neg = 0;
    if (n == 0)
        return keel_diag_set(diag, KEEL_EPARSE, 0, "empty amount");
    if (p[0] == '-') {
        neg = 1;
        i = 1;
    }
    /* Accumulate the magnitude as a negative number so INT64_MIN minor units fit. */
    int64_t acc = 0;
    size_t int_digits = 0, frac_digits = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, int_digits++) {
        int d = p[i] - '0';
        if (acc < (INT64_MIN + d) / 10)
            return keel_diag_set(diag, KEEL_ERANGE, i, "amount too large");
        acc = acc * 10 - d;
    }
    if (int_digits == 0)
        return keel_diag_set(diag, KEEL_EPARSE, i,
                             "amount must start with a digit (after an optional '-')");
    if (i < n && p[i] == '.') {
        i++;
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, frac_digits++) {
            int d = p[i] - '0';
            if (frac_digits >= cur->exponent) {
                if (d != 0)
                    return keel_diag_set(diag, KEEL_ERANGE, i,
                                         "amount has more decimal places than %s allows (%u)",
                                         cur->code, (unsigned)cur->exponent);
                continue;
            }
            if (acc < (INT64_MIN + d) / 10)
                return keel_diag_set(diag, KEEL_ERANGE, i, "amount too large");
            acc = acc * 10 - d;
        }
        if (frac_digits == 0)
            return keel_diag_set(diag, KEEL_EPARSE, i, "digits expected after '.'");
    }
    if (i < n)
        return keel_diag_set(diag, KEEL_EPARSE, i, "unexpected character in amount");
    for (size_t k = frac_digits; k < cur->exponent; k++) {
        if (acc < INT64_MIN / 10)
            return keel_diag_set(diag, KEEL_ERANGE, 0, "amount too large");
        acc *= 10;
    }
    if (neg) {
        if (!(flags & KEEL_MONEY_ALLOW_NEGATIVE) && acc != 0)
            return keel_diag_set(diag, KEEL_ERANGE, 0, "negative amount not allowed");
        *out = acc;
        return KEEL_OK;
    }
    if (acc == INT64_MIN)
        return keel_diag_set(diag, KEEL_ERANGE, 0, "amount too large");
    *out = -acc;
    return KEEL_OK;
}

size_t keel_money_format(int64_t minor, const keel_currency *cur, char *buf, size_t cap)
{
    if (cap > 0)
        buf[0] = '\0';
    if (cur == NULL || buf == NULL)
        return 0;
    char tmp[KEEL_MONEY_STR_MAX + 1];
    size_t pos = sizeof(tmp);
    /* Work on the magnitude as uint64 so INT64_MIN needs no special case. */
    uint64_t mag = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
    unsigned frac = 0;
    tmp[--pos] = '\0';
    do {
        if (frac == cur->exponent && cur->exponent > 0)
            tmp[--pos] = '.';
        tmp[--pos] = (char)('0' + (int)(mag % 10));
        mag /= 10;
        frac++;
    } while (mag > 0 || frac <= cur->exponent);
    if (minor < 0)
        tmp[--pos] = '-';
    size_t len = sizeof(tmp) - 1 - pos;
    if (len + 1 > cap)
        return 0;
    memcpy(buf, tmp + pos, len + 1);
    return len;
}

keel_err keel_money_add(int64_t a, int64_t b, int64_t *out)
{
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b))
        return KEEL_ERANGE;
    *out = a + b;
    return KEEL_OK;
}
