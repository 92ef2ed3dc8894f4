/* webhook.c - Stripe-style webhook signature verification and signing, reasons, secret
 * lists and event-id extraction (keel/webhook.h).  Deduplication is in webhook_dedup.c. */
#include "keel_int.h"

#include <stdio.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <keel/webhook.h>

#define MAC_LEN 32u /* SHA-256 */

/* ---------------------------------------------------------------- reasons -- */

keel_webhook_reason keel_webhook_reason_of(keel_err e)
{
    switch (e) {
    case KEEL_OK:
        return KEEL_WEBHOOK_VALID;
    case KEEL_ENOTFOUND:
        return KEEL_WEBHOOK_MISSING_HEADER;
    case KEEL_EPARSE:
        return KEEL_WEBHOOK_MALFORMED_HEADER;
    case KEEL_EUNSUPPORTED:
        return KEEL_WEBHOOK_NO_SIGNATURE;
    case KEEL_EDENIED:
        return KEEL_WEBHOOK_SIGNATURE_MISMATCH;
    case KEEL_ERANGE:
        return KEEL_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE;
    default:
        return KEEL_WEBHOOK_INTERNAL_ERROR;
    }
}

const char *keel_webhook_reason_name(keel_webhook_reason r)
{
    switch (r) {
    case KEEL_WEBHOOK_VALID:
        return "valid";
    case KEEL_WEBHOOK_MISSING_HEADER:
        return "missing_header";
    case KEEL_WEBHOOK_MALFORMED_HEADER:
        return "malformed_header";
    case KEEL_WEBHOOK_NO_SIGNATURE:
        return "no_signature";
    case KEEL_WEBHOOK_SIGNATURE_MISMATCH:
        return "signature_mismatch";
    case KEEL_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE:
        return "timestamp_out_of_tolerance";
    case KEEL_WEBHOOK_INTERNAL_ERROR:
    default:
        return "internal_error";
    }
}

const char *keel_webhook_reason_title(keel_webhook_reason r)
{
    switch (r) {
    case KEEL_WEBHOOK_VALID:
        return "Webhook signature valid";
    case KEEL_WEBHOOK_MISSING_HEADER:
        return "Missing webhook signature header";
    case KEEL_WEBHOOK_MALFORMED_HEADER:
        return "Malformed webhook signature header";
    case KEEL_WEBHOOK_NO_SIGNATURE:
        return "No webhook signature with the expected scheme";
    case KEEL_WEBHOOK_SIGNATURE_MISMATCH:
        return "Webhook signature mismatch";
    case KEEL_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE:
        return "Webhook timestamp outside the tolerance";
    case KEEL_WEBHOOK_INTERNAL_ERROR:
    default:
        return "Webhook verification failed";
    }
}

int keel_webhook_reason_http_status(keel_webhook_reason r)
{
    switch (r) {
    case KEEL_WEBHOOK_VALID:
        return 200;
    case KEEL_WEBHOOK_MISSING_HEADER:
    case KEEL_WEBHOOK_MALFORMED_HEADER:
    case KEEL_WEBHOOK_NO_SIGNATURE:
    case KEEL_WEBHOOK_SIGNATURE_MISMATCH:
    case KEEL_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE:
        return 400;
    case KEEL_WEBHOOK_INTERNAL_ERROR:
    default:
        return 500;
    }
}

/* ---------------------------------------------------------------- secrets -- */

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

keel_err keel_webhook_secrets_split(const char *list, keel_str *out, size_t cap, size_t *n)
{
    if (n != NULL)
        *n = 0;
    if (list == NULL || n == NULL || (out == NULL && cap > 0))
        return KEEL_EINVAL;
    size_t count = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        while (len > 0 && is_ows(s[0])) {
            s++;
            len--;
        }
        while (len > 0 && is_ows(s[len - 1]))
            len--;
        if (len == 0 || len > KEEL_WEBHOOK_SECRET_MAX)
            return KEEL_EINVAL;
        if (count == cap)
            return KEEL_ETOOBIG;
        out[count].ptr = s;
        out[count].len = len;
        count++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    *n = count;
    return KEEL_OK;
}

/* ------------------------------------------------------------------- HMAC -- */

/* A context keyed once; each MAC works on a duplicate (as jwt.c does), so the verifier is
 * read-only during verification and can be shared between threads. */
static EVP_MAC_CTX *hmac_keyed(const void *key, size_t len)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (ctx != NULL && EVP_MAC_init(ctx, key, len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* Decimal form of a non-negative t into buf (at least 21 bytes); returns the length. */
static size_t fmt_t(int64_t t, char *buf, size_t cap)
{
    int k = snprintf(buf, cap, "%lld", (long long)t);
    return k > 0 ? (size_t)k : 0;
}

/* mac = HMAC(base key, "<t>." + body). Returns 1 on success. */
static int mac_payload(const EVP_MAC_CTX *base, int64_t t, const void *body, size_t len,
                       unsigned char mac[MAC_LEN])
{
    char ts[32];
    size_t tl = fmt_t(t, ts, sizeof(ts));
    /* EVP_MAC_CTX_dup takes a const context in OpenSSL 3. */
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(base);
    size_t out = 0;
    int ok = c != NULL && EVP_MAC_update(c, (const unsigned char *)ts, tl) == 1 &&
             EVP_MAC_update(c, (const unsigned char *)".", 1) == 1 &&
             (len == 0 || EVP_MAC_update(c, body, len) == 1) &&
             EVP_MAC_final(c, mac, &out, MAC_LEN) == 1 && out == MAC_LEN;
    EVP_MAC_CTX_free(c);
    return ok;
}

/* Decode exactly 2 * MAC_LEN hex digits (either case). Returns 1 on success. */
static int hex_decode_mac(const char *s, size_t len, unsigned char out[MAC_LEN])
{
    if (len != 2 * MAC_LEN)
        return 0;
    for (size_t i = 0; i < MAC_LEN; i++) {
        int hi = keel__hex_value(s[2 * i]), lo = keel__hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

/* ----------------------------------------------------------------- signer -- */

keel_err keel_webhook_signature(keel_str secret, const void *body, size_t len, int64_t t,
                                char out[KEEL_WEBHOOK_SIG_HEX_SIZE])
{
    if (out == NULL)
        return KEEL_EINVAL;
    out[0] = '\0';
    if (secret.ptr == NULL || secret.len == 0 || secret.len > KEEL_WEBHOOK_SECRET_MAX ||
        t < 0 || (body == NULL && len > 0))
        return KEEL_EINVAL;
    EVP_MAC_CTX *ctx = hmac_keyed(secret.ptr, secret.len);
    if (ctx == NULL)
        return KEEL_ECRYPTO;
    unsigned char mac[MAC_LEN];
    int ok = mac_payload(ctx, t, body, len, mac);
    EVP_MAC_CTX_free(ctx);
    if (!ok)
        return KEEL_ECRYPTO;
    keel__hex_encode(mac, MAC_LEN, out);
    return KEEL_OK;
}

keel_err keel_webhook_sign(const char *secret, const void *body, size_t len, int64_t t,
                           char *out_header, size_t cap)
{
    if (out_header != NULL && cap > 0)
        out_header[0] = '\0';
    if (secret == NULL || out_header == NULL)
        return KEEL_EINVAL;
    char sig[KEEL_WEBHOOK_SIG_HEX_SIZE];
    keel_err e = keel_webhook_signature(keel_str_c(secret), body, len, t, sig);
    if (e != KEEL_OK)
        return e;
    int k = snprintf(out_header, cap, "t=%lld,v1=%s", (long long)t, sig);
    if (k < 0 || (size_t)k >= cap) {
        if (cap > 0)
            out_header[0] = '\0';
        return KEEL_ETOOBIG;
    }
    return KEEL_OK;
}

/* --------------------------------------------------------------- verifier -- */

struct keel_webhook_verifier {
    size_t n;
    uint32_t tolerance_s;
    EVP_MAC_CTX *mac[KEEL_WEBHOOK_MAX_SECRETS];
};

void keel_webhook_config_default(keel_webhook_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->tolerance_s = KEEL_WEBHOOK_TOLERANCE_DEFAULT;
}

static keel_err add_secret(keel_webhook_verifier *v, const char *p, size_t len, keel_diag *diag)
{
    if (v->n == KEEL_WEBHOOK_MAX_SECRETS)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "more than %u webhook secrets",
                             KEEL_WEBHOOK_MAX_SECRETS);
    if (p == NULL || len == 0 || len > KEEL_WEBHOOK_SECRET_MAX)
        return keel_diag_set(diag, KEEL_EINVAL, v->n,
                             "webhook secret %zu is empty or longer than %u bytes", v->n + 1,
                             KEEL_WEBHOOK_SECRET_MAX);
    EVP_MAC_CTX *c = hmac_keyed(p, len);
    if (c == NULL)
        return keel_diag_set(diag, KEEL_ECRYPTO, 0, "cannot initialise HMAC-SHA256");
    v->mac[v->n++] = c;
    return KEEL_OK;
}

keel_err keel_webhook_verifier_create(keel_webhook_verifier **out, const keel_webhook_config *cfg,
                                      keel_diag *diag)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || cfg == NULL || cfg->size < sizeof(keel_webhook_config) ||
        (cfg->secrets == NULL && cfg->nsecrets > 0))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_webhook_verifier_create: invalid argument");
    keel_webhook_verifier *v = keel__new(keel_webhook_verifier);
    if (v == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    v->tolerance_s = cfg->tolerance_s;
    keel_err e = KEEL_OK;
    if (cfg->secret_list != NULL) {
        keel_str parts[KEEL_WEBHOOK_MAX_SECRETS];
        size_t np = 0;
        e = keel_webhook_secrets_split(cfg->secret_list, parts, KEEL_ARRAY_LEN(parts), &np);
        if (e == KEEL_ETOOBIG)
            e = keel_diag_set(diag, KEEL_EINVAL, 0, "more than %u webhook secrets",
                              KEEL_WEBHOOK_MAX_SECRETS);
        else if (e != KEEL_OK)
            e = keel_diag_set(diag, KEEL_EINVAL, 0,
                              "webhook secret list has an empty entry or one longer than %u "
                              "bytes",
                              KEEL_WEBHOOK_SECRET_MAX);
        for (size_t i = 0; e == KEEL_OK && i < np; i++)
            e = add_secret(v, parts[i].ptr, parts[i].len, diag);
    }
    for (size_t i = 0; e == KEEL_OK && i < cfg->nsecrets; i++)
        e = add_secret(v, cfg->secrets[i].ptr, cfg->secrets[i].len, diag);
    if (e == KEEL_OK && v->n == 0)
        e = keel_diag_set(diag, KEEL_EINVAL, 0, "no webhook secret configured");
    if (e != KEEL_OK) {
        keel_webhook_verifier_destroy(v);
        return e;
    }
    *out = v;
    return KEEL_OK;
}

size_t keel_webhook_verifier_secret_count(const keel_webhook_verifier *v)
{
    return v ? v->n : 0;
}

void keel_webhook_verifier_destroy(keel_webhook_verifier *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->n; i++)
        EVP_MAC_CTX_free(v->mac[i]); /* OpenSSL cleanses the key material */
    keel__wipe(v, sizeof(*v));
    keel_free(v);
}

/* The parsed header: the timestamp and the decoded v1 MACs. */
typedef struct parsed_header {
    int64_t t;
    size_t nv1;    /* v1 items seen (valid or not) */
    size_t nvalid; /* v1 items that decoded to 32 bytes */
    unsigned char sig[KEEL_WEBHOOK_MAX_V1][MAC_LEN];
} parsed_header;

/* Parse t: 1..19 decimal digits, no sign, within int64. */
static int parse_t(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10u + (uint64_t)(s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return 0;
    *out = (int64_t)v;
    return 1;
}

/* Parse header bytes h[0..len) (already trimmed, non-empty, within the size limit). */
static keel_err parse_header(const char *h, size_t len, parsed_header *ph, keel_diag *diag)
{
    int have_t = 0;
    ph->nv1 = ph->nvalid = 0;
    size_t pos = 0;
    for (;;) {
        const char *item = h + pos;
        const char *comma = memchr(item, ',', len - pos);
        size_t ilen = comma ? (size_t)(comma - item) : len - pos;
        if (ilen == 0)
            return keel_diag_set(diag, KEEL_EPARSE, pos, "empty item at offset %zu", pos);
        for (size_t i = 0; i < ilen; i++) {
            unsigned char c = (unsigned char)item[i];
            if (c <= 0x20 || c >= 0x7f)
                return keel_diag_set(diag, KEEL_EPARSE, pos + i,
                                     "invalid character (0x%02x) at offset %zu", c, pos + i);
        }
        const char *eq = memchr(item, '=', ilen);
        if (eq == NULL)
            return keel_diag_set(diag, KEEL_EPARSE, pos, "item without '=' at offset %zu", pos);
        size_t klen = (size_t)(eq - item);
        const char *val = eq + 1;
        size_t vlen = ilen - klen - 1;
        if (klen == 0)
            return keel_diag_set(diag, KEEL_EPARSE, pos, "item with an empty key at offset %zu",
                                 pos);
        if (klen == 1 && item[0] == 't') {
            if (have_t)
                return keel_diag_set(diag, KEEL_EPARSE, pos,
                                     "duplicate timestamp 't' at offset %zu", pos);
            if (!parse_t(val, vlen, &ph->t))
                return keel_diag_set(diag, KEEL_EPARSE, pos,
                                     "timestamp 't' is not a non-negative decimal integer");
            have_t = 1;
        } else if (klen == 2 && item[0] == 'v' && item[1] == '1') {
            if (ph->nv1 == KEEL_WEBHOOK_MAX_V1)
                return keel_diag_set(diag, KEEL_EPARSE, pos, "more than %u v1 signatures",
                                     KEEL_WEBHOOK_MAX_V1);
            ph->nv1++;
            /* Like stripe-go: a v1 value that is not 32 bytes of hex is ignored. */
            if (hex_decode_mac(val, vlen, ph->sig[ph->nvalid]))
                ph->nvalid++;
        }
        /* v0 and unknown schemes are ignored. */
        if (comma == NULL)
            break;
        pos += ilen + 1;
        if (pos == len)
            return keel_diag_set(diag, KEEL_EPARSE, pos, "empty item at offset %zu", pos);
    }
    if (!have_t)
        return keel_diag_set(diag, KEEL_EPARSE, 0, "no timestamp 't' in the signature header");
    return KEEL_OK;
}

keel_err keel_webhook_verify(const keel_webhook_verifier *v, const void *body, size_t body_len,
                             const char *header, int64_t now_s, keel_diag *diag)
{
    if (v == NULL || (body == NULL && body_len > 0))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_webhook_verify: invalid argument");
    if (header == NULL)
        return keel_diag_set(diag, KEEL_ENOTFOUND, 0, "no webhook signature header");
    size_t len = strnlen(header, KEEL_WEBHOOK_HEADER_MAX + 1);
    if (len > KEEL_WEBHOOK_HEADER_MAX)
        return keel_diag_set(diag, KEEL_EPARSE, KEEL_WEBHOOK_HEADER_MAX,
                             "signature header longer than %u bytes", KEEL_WEBHOOK_HEADER_MAX);
    const char *h = header;
    while (len > 0 && is_ows(h[0])) {
        h++;
        len--;
    }
    while (len > 0 && is_ows(h[len - 1]))
        len--;
    if (len == 0)
        return keel_diag_set(diag, KEEL_ENOTFOUND, 0, "empty webhook signature header");

    parsed_header ph;
    keel_err e = parse_header(h, len, &ph, diag);
    if (e != KEEL_OK) {
        if (diag != NULL)
            diag->offset += (size_t)(h - header);
        return e;
    }
    if (ph.nvalid == 0) {
        if (ph.nv1 == 0)
            return keel_diag_set(diag, KEEL_EUNSUPPORTED, 0,
                                 "no v1 signature in the signature header");
        return keel_diag_set(diag, KEEL_EUNSUPPORTED, 0,
                             "no v1 signature is 64 hex digits (%zu ignored)", ph.nv1);
    }

    /* Every secret against every signature, without stopping early. */
    int match = 0;
    for (size_t i = 0; i < v->n; i++) {
        unsigned char mac[MAC_LEN];
        if (!mac_payload(v->mac[i], ph.t, body, body_len, mac))
            return keel_diag_set(diag, KEEL_ECRYPTO, 0, "HMAC-SHA256 failed");
        for (size_t j = 0; j < ph.nvalid; j++)
            match |= CRYPTO_memcmp(mac, ph.sig[j], MAC_LEN) == 0;
        keel__wipe(mac, sizeof(mac));
    }
    if (!match)
        return keel_diag_set(diag, KEEL_EDENIED, 0,
                             "no v1 signature matches the payload (%zu signature%s, %zu "
                             "secret%s tried)",
                             ph.nvalid, ph.nvalid == 1 ? "" : "s", v->n, v->n == 1 ? "" : "s");

    if (v->tolerance_s > 0) {
        /* |now - t| without overflow: the true difference always fits in uint64. */
        int future = ph.t > now_s;
        uint64_t diff = future ? (uint64_t)ph.t - (uint64_t)now_s
                               : (uint64_t)now_s - (uint64_t)ph.t;
        if (diff > v->tolerance_s)
            return keel_diag_set(diag, KEEL_ERANGE, 0,
                                 "timestamp is %llu s %s; tolerance is %u s",
                                 (unsigned long long)diff,
                                 future ? "in the future" : "old", v->tolerance_s);
    }
    return keel_diag_set(diag, KEEL_OK, 0, "valid");
}

/* --------------------------------------------------------------- event id -- */

int keel_webhook_event_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > KEEL_WEBHOOK_EVENT_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)id[i] < 0x21 || (unsigned char)id[i] > 0x7e)
            return 0;
    return 1;
}

keel_err keel_webhook_event_id(const void *body, size_t len, char *out, size_t cap)
{
    if (out != NULL && cap > 0)
        out[0] = '\0';
    if (out == NULL || (body == NULL && len > 0))
        return KEEL_EINVAL;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return json_error_code(&jerr) == json_error_out_of_memory ? KEEL_ENOMEM : KEEL_EPARSE;
    keel_err e = KEEL_OK;
    json_t *id = json_is_object(root) ? json_object_get(root, "id") : NULL;
    if (!json_is_object(root)) {
        e = KEEL_EPARSE;
    } else if (!json_is_string(id)) {
        e = KEEL_ENOTFOUND;
    } else {
        const char *s = json_string_value(id);
        size_t n = json_string_length(id);
        if (!keel_webhook_event_id_valid(s, n))
            e = KEEL_EINVAL;
        else if (n >= cap)
            e = KEEL_ETOOBIG;
        else {
            memcpy(out, s, n);
            out[n] = '\0';
        }
    }
    json_decref(root);
    return e;
}
