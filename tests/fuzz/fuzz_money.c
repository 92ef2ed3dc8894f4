/* fuzz_money.c - amounts and currencies from untrusted input (API bodies, CSV reports).
 *
 * Input layout: the first 3 bytes name the currency (looked up like a client's "usd"), the
 * rest is the amount text, copied into an exact-size heap block so ASan sees any overread.
 * Invariants: only the documented codes come back; a parsed amount formats to a string that
 * parses back to the same value (exactness, no rounding); the formatted form is canonical
 * (formatting it again gives the same bytes); without KEEL_MONEY_ALLOW_NEGATIVE no negative
 * value is ever returned. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/payment.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    const keel_currency *cur = keel_currency_find((keel_str){(const char *)data, 3});
    if (cur == NULL)
        cur = keel_currency_find(KEEL_STR_LIT("USD"));
    size_t n = size - 3;
    char *text = malloc(n ? n : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data + 3, n);
    for (unsigned flags = 0; flags <= KEEL_MONEY_ALLOW_NEGATIVE; flags++) {
        int64_t v = 0;
        keel_diag d;
        keel_err e = keel_money_parse((keel_str){text, n}, cur, flags, &v, &d);
        if (e != KEEL_OK && e != KEEL_EPARSE && e != KEEL_ERANGE)
            abort();
        if (e != KEEL_OK) {
            if (v != 0 || d.msg[0] == '\0' || d.offset > n)
                abort();
            continue;
        }
        if (!(flags & KEEL_MONEY_ALLOW_NEGATIVE) && v < 0)
            abort();
        char buf[KEEL_MONEY_STR_MAX + 1], again[KEEL_MONEY_STR_MAX + 1];
        size_t len = keel_money_format(v, cur, buf, sizeof(buf));
        if (len == 0)
            abort();
        int64_t back = 0;
        if (keel_money_parse((keel_str){buf, len}, cur, KEEL_MONEY_ALLOW_NEGATIVE, &back, NULL) !=
                KEEL_OK ||
            back != v)
            abort();
        if (keel_money_format(back, cur, again, sizeof(again)) != len || memcmp(buf, again, len))
            abort();
    }
    free(text);
    return 0;
}
