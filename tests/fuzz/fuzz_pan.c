/* fuzz_pan.c - card numbers handed to the tokenizer (untrusted: they come from a client).
 *
 * Invariants: keel_card_pan_validate accepts exactly 13-19 ASCII digits that pass Luhn (an
 * independent reference check here); its rejection message never echoes four or more digits
 * in a row (no part of a PAN leaks into an error); brand detection never reads past the
 * input; an accepted PAN tokenizes, and tokenizing it again gives the same token and last4. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/tokenizer.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int reference_ok(const char *p, size_t n)
{
    if (n < 13 || n > 19)
        return 0;
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[n - 1 - i];
        if (c < '0' || c > '9')
            return 0;
        int d = c - '0';
        if (i % 2 == 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return sum % 10 == 0;
}

static keel_tokenizer *tk;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (tk == NULL && keel_tokenizer_ephemeral_create(&tk, NULL, NULL) != KEEL_OK)
        abort();
    char *pan = malloc(size ? size : 1);
    if (pan == NULL)
        return 0;
    memcpy(pan, data, size);
    keel_str s = {pan, size};
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_card_pan_validate(s, &d);
    if ((e == KEEL_OK) != reference_ok(pan, size))
        abort();
    if (e != KEEL_OK) {
        /* Numbers in the message may only be lengths or offsets (at most size, no
         * leading zero); a PAN is 13-19 digits, so its fragments cannot pass for those. */
        for (const char *m = d.msg; *m;) {
            size_t run = strspn(m, "0123456789");
            if (run >= 4) {
                if (m[0] == '0' || run > 19 || strtoull(m, NULL, 10) > size)
                    abort();
            }
            m += run ? run : 1;
        }
    }
    (void)keel_card_brand_detect(s);
    (void)keel_card_luhn_valid(s);
    if (e == KEEL_OK) {
        keel_card_token a, b;
        if (keel_tokenizer_tokenize(tk, s, &a, NULL) == KEEL_OK &&
            keel_tokenizer_tokenize(tk, s, &b, NULL) == KEEL_OK &&
            (strcmp(a.token, b.token) != 0 || strcmp(a.last4, b.last4) != 0 ||
             memcmp(a.last4, pan + size - 4, 4) != 0))
            abort();
        if (keel_tokenizer_forget(tk, a.token) != KEEL_OK)
            abort();
    }
    free(pan);
    return 0;
}
