/* fuzz_webhook_header.c - arbitrary bytes as a Stripe-Signature header into
 * keel_webhook_verify() against a fixed body and two secrets (the golden vector of
 * reference.md section 2), plus sign -> verify round trips with the bytes as the body.
 * Checks: no crash/hang/leak; the result is one of the documented codes with diag.code equal
 * to it, a terminated message that never contains a secret; a header valid under the 300 s
 * tolerance is valid with the check disabled; a signed body always verifies and the same
 * body with one byte flipped never does.  The bytes also go through the secret-list splitter
 * and the event-id extractor. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/webhook.h>

#define SECRET "whsec_test_secret"
#define OLD_SECRET "whsec_old_secret"
#define T0 1700000000
#define BODY "{\"id\":\"evt_test_webhook\",\"object\":\"event\"}"

static keel_webhook_verifier *verifier(uint32_t tol)
{
    static keel_webhook_verifier *v[2];
    keel_webhook_verifier **slot = &v[tol == 0];
    if (*slot == NULL) {
        keel_webhook_config cfg;
        keel_webhook_config_default(&cfg);
        cfg.secret_list = SECRET "," OLD_SECRET;
        cfg.tolerance_s = tol;
        if (keel_webhook_verifier_create(slot, &cfg, NULL) != KEEL_OK)
            abort();
    }
    return *slot;
}

static void check_header(const char *h)
{
    keel_diag d;
    keel_err e = keel_webhook_verify(verifier(300), BODY, strlen(BODY), h, T0, &d);
    if (d.code != e || memchr(d.msg, '\0', sizeof(d.msg)) == NULL ||
        strstr(d.msg, "whsec_") != NULL || strstr(d.msg, "test_secret") != NULL)
        abort();
    switch (e) {
    case KEEL_OK:
    case KEEL_ENOTFOUND:
    case KEEL_EPARSE:
    case KEEL_EUNSUPPORTED:
    case KEEL_EDENIED:
    case KEEL_ERANGE:
        break;
    default:
        abort();
    }
    if (keel_webhook_reason_of(e) == KEEL_WEBHOOK_INTERNAL_ERROR)
        abort();
    keel_err e0 = keel_webhook_verify(verifier(0), BODY, strlen(BODY), h, T0, NULL);
    if ((e == KEEL_OK || e == KEEL_ERANGE) != (e0 == KEEL_OK))
        abort();
    if (e != KEEL_ERANGE && e != e0)
        abort();
}

static void round_trip(const uint8_t *data, size_t size)
{
    uint64_t u = 0;
    for (size_t i = 0; i < size && i < 8; i++)
        u = (u << 8) | data[i];
    int64_t t = (int64_t)(u >> 1); /* any non-negative timestamp */
    char h[KEEL_WEBHOOK_SIGN_SIZE];
    const char *secret = size % 2 ? SECRET : OLD_SECRET;
    if (keel_webhook_sign(secret, data, size, t, h, sizeof(h)) != KEEL_OK)
        abort();
    if (keel_webhook_verify(verifier(300), data, size, h, t, NULL) != KEEL_OK)
        abort();
    if (size > 0) {
        uint8_t *copy = malloc(size);
        if (copy == NULL)
            abort();
        memcpy(copy, data, size);
        copy[size / 2] ^= 0x20;
        if (keel_webhook_verify(verifier(300), copy, size, h, t, NULL) != KEEL_EDENIED)
            abort();
        free(copy);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_header(s);
    round_trip(data, size);

    keel_str parts[KEEL_WEBHOOK_MAX_SECRETS];
    size_t n = 0;
    if (keel_webhook_secrets_split(s, parts, KEEL_WEBHOOK_MAX_SECRETS, &n) == KEEL_OK) {
        if (n == 0 || n > KEEL_WEBHOOK_MAX_SECRETS)
            abort();
        for (size_t i = 0; i < n; i++)
            if (parts[i].len == 0 || parts[i].ptr < s || parts[i].ptr + parts[i].len > s + size)
                abort();
    }

    char id[KEEL_WEBHOOK_EVENT_ID_MAX + 1];
    keel_err e = keel_webhook_event_id(data, size, id, sizeof(id));
    if (e == KEEL_OK && !keel_webhook_event_id_valid(id, strlen(id)))
        abort();
    free(s);
    return 0;
}
