/* Tests for src/pay/webhook.c: the golden vector of reference.md section 2 (both secrets and
 * the rotation header), tampering, the tolerance boundaries in both directions, every kind of
 * malformed header, the v1 filtering rules, secret lists, reasons, event-id extraction, the
 * signer's limits, OOM and concurrent verification. */
#define _GNU_SOURCE 1
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"
#include <keel/webhook.h>

#define SECRET "whsec_test_secret"
#define OLD_SECRET "whsec_old_secret"
#define T0 1700000000
#define BODY "{\"id\":\"evt_test_webhook\",\"object\":\"event\"}"
#define SIG "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
#define OLD_SIG "e016b64cc4263f90e0336f3975e8d4ac9cc185935edc3ebdd405db64ad0bb1c5"
#define HEADER "t=1700000000,v1=" SIG
#define ROTATION "t=1700000000,v1=" OLD_SIG ",v1=" SIG

static keel_webhook_verifier *make(const char *list, uint32_t tol)
{
    keel_webhook_config cfg;
    keel_webhook_config_default(&cfg);
    cfg.secret_list = list;
    cfg.tolerance_s = tol;
    keel_webhook_verifier *v = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_webhook_verifier_create(&v, &cfg, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "create: %s\n", d.msg);
    assert_int_equal(KEEL_OK, e);
    return v;
}

/* Verify BODY with header at now; the diag must never mention a secret. */
static keel_err check(const keel_webhook_verifier *v, const char *header, int64_t now)
{
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_webhook_verify(v, BODY, strlen(BODY), header, now, &d);
    assert_int_equal(e, d.code);
    assert_null(strstr(d.msg, "whsec_"));
    assert_null(strstr(d.msg, "secret_"));
    return e;
}

static void test_golden_vector(void **state)
{
    (void)state;
    char sig[KEEL_WEBHOOK_SIG_HEX_SIZE];
    ASSERT_OK(keel_webhook_signature(KEEL_STR_LIT(SECRET), BODY, strlen(BODY), T0, sig));
    assert_string_equal(SIG, sig);
    ASSERT_OK(keel_webhook_signature(KEEL_STR_LIT(OLD_SECRET), BODY, strlen(BODY), T0, sig));
    assert_string_equal(OLD_SIG, sig);
    char h[KEEL_WEBHOOK_SIGN_SIZE];
    ASSERT_OK(keel_webhook_sign(SECRET, BODY, strlen(BODY), T0, h, sizeof(h)));
    assert_string_equal(HEADER, h);

    keel_webhook_verifier *v = make(SECRET, 300);
    assert_int_equal(1, keel_webhook_verifier_secret_count(v));
    keel_diag d = {KEEL_OK, 0, ""};
    ASSERT_OK(keel_webhook_verify(v, BODY, strlen(BODY), HEADER, T0, &d));
    ASSERT_OK(keel_webhook_verify(v, BODY, strlen(BODY), HEADER, T0, NULL)); /* diag optional */
    keel_webhook_verifier_destroy(v);
    keel_webhook_verifier_destroy(NULL);
}

static void test_rotation(void **state)
{
    (void)state;
    const char *lists[] = {SECRET, OLD_SECRET, SECRET "," OLD_SECRET,
                           " " OLD_SECRET " ,\t" SECRET " "};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(lists); i++) {
        keel_webhook_verifier *v = make(lists[i], 300);
        ASSERT_OK(check(v, ROTATION, T0));
        keel_webhook_verifier_destroy(v);
    }
    /* The plain header only carries the new secret's signature. */
    keel_webhook_verifier *old = make(OLD_SECRET, 300);
    assert_int_equal(KEEL_EDENIED, check(old, HEADER, T0));
    keel_webhook_verifier_destroy(old);
    keel_webhook_verifier *both = make(OLD_SECRET "," SECRET, 300);
    assert_int_equal(2, keel_webhook_verifier_secret_count(both));
    ASSERT_OK(check(both, HEADER, T0));
    keel_webhook_verifier_destroy(both);
    keel_webhook_verifier *other = make("whsec_other", 300);
    assert_int_equal(KEEL_EDENIED, check(other, ROTATION, T0));
    keel_webhook_verifier_destroy(other);

    /* Secrets given as byte strings, alone or after the list. */
    keel_webhook_config cfg;
    keel_webhook_config_default(&cfg);
    keel_str arr[] = {KEEL_STR_LIT("whsec_x"), KEEL_STR_LIT(SECRET)};
    cfg.secrets = arr;
    cfg.nsecrets = 2;
    keel_webhook_verifier *v = NULL;
    ASSERT_OK(keel_webhook_verifier_create(&v, &cfg, NULL));
    ASSERT_OK(check(v, HEADER, T0));
    keel_webhook_verifier_destroy(v);
    cfg.secret_list = "whsec_a,whsec_b";
    ASSERT_OK(keel_webhook_verifier_create(&v, &cfg, NULL));
    assert_int_equal(4, keel_webhook_verifier_secret_count(v));
    ASSERT_OK(check(v, HEADER, T0));
    keel_webhook_verifier_destroy(v);
}

static void test_whsec_prefix_is_key_bytes(void **state)
{
    (void)state;
    char sig[KEEL_WEBHOOK_SIG_HEX_SIZE];
    ASSERT_OK(keel_webhook_signature(KEEL_STR_LIT("test_secret"), BODY, strlen(BODY), T0, sig));
    assert_string_not_equal(SIG, sig);
    keel_webhook_verifier *v = make("test_secret", 300);
    assert_int_equal(KEEL_EDENIED, check(v, HEADER, T0));
    keel_webhook_verifier_destroy(v);
}

static void test_tampered_body_and_signature(void **state)
{
    (void)state;
    keel_webhook_verifier *v = make(SECRET, 300);
    char body[] = BODY;
    size_t n = strlen(body);
    for (size_t i = 0; i < n; i++) {
        body[i] ^= 0x01;
        assert_int_equal(KEEL_EDENIED, keel_webhook_verify(v, body, n, HEADER, T0, NULL));
        body[i] ^= 0x01;
    }
    ASSERT_OK(keel_webhook_verify(v, body, n, HEADER, T0, NULL));
    /* A trailing newline or a missing last byte is a different body. */
    assert_int_equal(KEEL_EDENIED, keel_webhook_verify(v, BODY "\n", n + 1, HEADER, T0, NULL));
    assert_int_equal(KEEL_EDENIED, keel_webhook_verify(v, body, n - 1, HEADER, T0, NULL));
    assert_int_equal(KEEL_EDENIED, keel_webhook_verify(v, NULL, 0, HEADER, T0, NULL));

    /* Every hex digit of the signature changed in turn. */
    char h[] = HEADER;
    size_t off = strlen("t=1700000000,v1=");
    for (size_t i = off; i < strlen(h); i++) {
        char c = h[i];
        h[i] = c == '0' ? '1' : '0';
        assert_int_equal(KEEL_EDENIED, check(v, h, T0));
        h[i] = c;
    }
    /* Right signature under a different timestamp. */
    assert_int_equal(KEEL_EDENIED, check(v, "t=1700000001,v1=" SIG, T0));
    keel_diag d;
    assert_int_equal(KEEL_EDENIED, keel_webhook_verify(v, BODY, strlen(BODY),
                                                       "t=1700000000,v1=" OLD_SIG, T0, &d));
    assert_string_equal("no v1 signature matches the payload (1 signature, 1 secret tried)",
                        d.msg);
    assert_int_equal(KEEL_WEBHOOK_SIGNATURE_MISMATCH, keel_webhook_reason_of(d.code));
    keel_webhook_verifier_destroy(v);
}

static void test_tolerance_boundaries(void **state)
{
    (void)state;
    keel_webhook_verifier *v = make(SECRET, 300);
    ASSERT_OK(check(v, HEADER, T0 + 300));               /* t = now - 300 accepted */
    assert_int_equal(KEEL_ERANGE, check(v, HEADER, T0 + 301)); /* now - 301 rejected */
    ASSERT_OK(check(v, HEADER, T0 - 300));               /* 300 s in the future: accepted */
    assert_int_equal(KEEL_ERANGE, check(v, HEADER, T0 - 301)); /* symmetric window */
    keel_diag d;
    assert_int_equal(KEEL_ERANGE,
                     keel_webhook_verify(v, BODY, strlen(BODY), HEADER, T0 + 301, &d));
    assert_string_equal("timestamp is 301 s old; tolerance is 300 s", d.msg);
    assert_int_equal(KEEL_ERANGE,
                     keel_webhook_verify(v, BODY, strlen(BODY), HEADER, T0 - 1000, &d));
    assert_string_equal("timestamp is 1000 s in the future; tolerance is 300 s", d.msg);
    /* Extreme clocks do not overflow. */
    assert_int_equal(KEEL_ERANGE, check(v, HEADER, INT64_MIN));
    assert_int_equal(KEEL_ERANGE, check(v, HEADER, INT64_MAX));
    /* A bad signature is reported as such even when the timestamp is also stale. */
    assert_int_equal(KEEL_EDENIED, check(v, "t=1,v1=" SIG, T0));
    keel_webhook_verifier_destroy(v);

    keel_webhook_verifier *v1 = make(SECRET, 1);
    ASSERT_OK(check(v1, HEADER, T0 + 1));
    assert_int_equal(KEEL_ERANGE, check(v1, HEADER, T0 + 2));
    keel_webhook_verifier_destroy(v1);

    keel_webhook_verifier *v0 = make(SECRET, 0); /* age check disabled */
    ASSERT_OK(check(v0, HEADER, T0 + 100000000));
    ASSERT_OK(check(v0, HEADER, 0));
    ASSERT_OK(check(v0, HEADER, INT64_MIN));
    assert_int_equal(KEEL_EDENIED, check(v0, "t=1700000001,v1=" SIG, T0));
    keel_webhook_verifier_destroy(v0);
}

static void test_malformed_headers(void **state)
{
    (void)state;
    keel_webhook_verifier *v = make(SECRET, 300);
    assert_int_equal(KEEL_ENOTFOUND, check(v, NULL, T0));
    assert_int_equal(KEEL_ENOTFOUND, check(v, "", T0));
    assert_int_equal(KEEL_ENOTFOUND, check(v, " \t ", T0));
    const char *bad[] = {
        "t=",
        "t=abc",
        "v1=" SIG,
        "t=1700000000,v1",
        "t=1700000000,v1=" SIG ",",
        ",t=1700000000,v1=" SIG,
        "t=1700000000,,v1=" SIG,
        "t=1700000000, v1=" SIG,
        "t=1700000000 ,v1=" SIG,
        "t = 1700000000,v1=" SIG,
        "t=1700000000,v1=" SIG ",v1 =x",
        "t=-1700000000,v1=" SIG,
        "t=+1700000000,v1=" SIG,
        "t=1.5,v1=" SIG,
        "t=0x10,v1=" SIG,
        "t=99999999999999999999,v1=" SIG,
        "t=9223372036854775808,v1=" SIG,
        "t=1700000000,t=1700000000,v1=" SIG,
        "t=1700000000,=abc,v1=" SIG,
        "t=1700000000,v1=" SIG ",x\x01=1",
        "t=1700000000,v1=" SIG ",x=\xc3\xa9",
        "t=1700000000\tv1=" SIG,
        ",",
        "=",
        "garbage",
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        keel_err e = check(v, bad[i], T0);
        if (e != KEEL_EPARSE)
            fprintf(stderr, "case %zu: %s\n", i, bad[i]);
        assert_int_equal(KEEL_EPARSE, e);
    }
    keel_diag d;
    assert_int_equal(KEEL_EPARSE, keel_webhook_verify(v, BODY, strlen(BODY), "v1=" SIG, T0, &d));
    assert_string_equal("no timestamp 't' in the signature header", d.msg);
    assert_int_equal(KEEL_EPARSE,
                     keel_webhook_verify(v, BODY, strlen(BODY), "t=1700000000,v1", T0, &d));
    assert_string_equal("item without '=' at offset 13", d.msg);
    assert_int_equal(13, d.offset);
    /* Offsets count from the start of the value, trimmed spaces included. */
    assert_int_equal(KEEL_EPARSE,
                     keel_webhook_verify(v, BODY, strlen(BODY), "  t=1,v1", T0, &d));
    assert_int_equal(6, d.offset);

    /* Leading/trailing spaces of the whole value are trimmed like HTTP does. */
    ASSERT_OK(check(v, "  " HEADER " \t", T0));

    /* 8 v1 entries are accepted, 9 are malformed. */
    char h[2048];
    snprintf(h, sizeof(h), "t=1700000000");
    for (int i = 0; i < 7; i++)
        strcat(h, ",v1=" OLD_SIG);
    strcat(h, ",v1=" SIG);
    ASSERT_OK(check(v, h, T0));
    strcat(h, ",v1=" SIG);
    assert_int_equal(KEEL_EPARSE, keel_webhook_verify(v, BODY, strlen(BODY), h, T0, &d));
    assert_string_equal("more than 8 v1 signatures", d.msg);
    /* Invalid v1 values count towards the limit too. */
    snprintf(h, sizeof(h), "t=1700000000,v1=" SIG);
    for (int i = 0; i < 8; i++)
        strcat(h, ",v1=x");
    assert_int_equal(KEEL_EPARSE, check(v, h, T0));

    /* 4 KiB exactly is allowed; 5 KiB is not. */
    size_t big = 5 * 1024;
    char *hb = malloc(big + 1);
    assert_non_null(hb);
    memset(hb, 'a', big);
    hb[big] = '\0';
    memcpy(hb, HEADER ",x=", strlen(HEADER ",x="));
    assert_int_equal(KEEL_EPARSE, keel_webhook_verify(v, BODY, strlen(BODY), hb, T0, &d));
    assert_string_equal("signature header longer than 4096 bytes", d.msg);
    hb[KEEL_WEBHOOK_HEADER_MAX] = '\0';
    ASSERT_OK(check(v, hb, T0));
    hb[KEEL_WEBHOOK_HEADER_MAX] = 'a';
    hb[KEEL_WEBHOOK_HEADER_MAX + 1] = '\0';
    assert_int_equal(KEEL_EPARSE, check(v, hb, T0));
    free(hb);
    keel_webhook_verifier_destroy(v);
}

static void test_v1_filtering(void **state)
{
    (void)state;
    keel_webhook_verifier *v = make(SECRET, 300);
    keel_diag d;
    assert_int_equal(KEEL_EUNSUPPORTED,
                     keel_webhook_verify(v, BODY, strlen(BODY), "t=1700000000", T0, &d));
    assert_string_equal("no v1 signature in the signature header", d.msg);
    assert_int_equal(KEEL_EUNSUPPORTED, check(v, "t=1700000000,v0=" SIG, T0));
    assert_int_equal(KEEL_EUNSUPPORTED, check(v, "t=1700000000,v2=" SIG, T0));
    assert_int_equal(KEEL_EUNSUPPORTED, check(v, "t=1700000000,V1=" SIG, T0));
    assert_int_equal(KEEL_EUNSUPPORTED,
                     keel_webhook_verify(v, BODY, strlen(BODY),
                                         "t=1700000000,v1=zz,v1=" SIG "0,v1=", T0, &d));
    assert_string_equal("no v1 signature is 64 hex digits (3 ignored)", d.msg);
    /* 63 digits, and one non-hex digit among 64. */
    char shortsig[] = "t=1700000000,v1=" SIG;
    shortsig[strlen(shortsig) - 1] = '\0';
    assert_int_equal(KEEL_EUNSUPPORTED, check(v, shortsig, T0));
    char nonhex[] = "t=1700000000,v1=" SIG;
    nonhex[20] = 'g';
    assert_int_equal(KEEL_EUNSUPPORTED, check(v, nonhex, T0));
    /* Invalid v1 values, v0 and unknown keys are ignored when a valid v1 matches. */
    ASSERT_OK(check(v, "t=1700000000,v1=nothex,v0=abc,foo=bar,v1=" SIG ",scheme=x=y", T0));
    ASSERT_OK(check(v, "v1=" SIG ",t=1700000000", T0)); /* order does not matter */
    /* Upper-case hex is accepted (decoded like stripe-go does). */
    char upper[] = "t=1700000000,v1=" SIG;
    for (char *p = upper + strlen("t=1700000000,v1="); *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    ASSERT_OK(check(v, upper, T0));
    /* The signed payload uses the integer value of t, as the SDKs do. */
    ASSERT_OK(check(v, "t=01700000000,v1=" SIG, T0));
    keel_webhook_verifier_destroy(v);
}

static void test_reasons(void **state)
{
    (void)state;
    struct {
        keel_err e;
        keel_webhook_reason r;
        const char *name;
        int status;
    } cases[] = {
        {KEEL_OK, KEEL_WEBHOOK_VALID, "valid", 200},
        {KEEL_ENOTFOUND, KEEL_WEBHOOK_MISSING_HEADER, "missing_header", 400},
        {KEEL_EPARSE, KEEL_WEBHOOK_MALFORMED_HEADER, "malformed_header", 400},
        {KEEL_EUNSUPPORTED, KEEL_WEBHOOK_NO_SIGNATURE, "no_signature", 400},
        {KEEL_EDENIED, KEEL_WEBHOOK_SIGNATURE_MISMATCH, "signature_mismatch", 400},
        {KEEL_ERANGE, KEEL_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE, "timestamp_out_of_tolerance", 400},
        {KEEL_ENOMEM, KEEL_WEBHOOK_INTERNAL_ERROR, "internal_error", 500},
        {KEEL_EINVAL, KEEL_WEBHOOK_INTERNAL_ERROR, "internal_error", 500},
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(cases); i++) {
        assert_int_equal(cases[i].r, keel_webhook_reason_of(cases[i].e));
        assert_string_equal(cases[i].name, keel_webhook_reason_name(cases[i].r));
        assert_int_equal(cases[i].status, keel_webhook_reason_http_status(cases[i].r));
        assert_non_null(keel_webhook_reason_title(cases[i].r));
    }
    assert_string_equal("Webhook signature mismatch",
                        keel_webhook_reason_title(KEEL_WEBHOOK_SIGNATURE_MISMATCH));
}

static void test_secret_lists_and_create_errors(void **state)
{
    (void)state;
    keel_str p[KEEL_WEBHOOK_MAX_SECRETS];
    size_t n = 99;
    ASSERT_OK(keel_webhook_secrets_split("a", p, 8, &n));
    assert_int_equal(1, n);
    assert_true(keel_str_eq(p[0], KEEL_STR_LIT("a")));
    ASSERT_OK(keel_webhook_secrets_split(" whsec_1 ,\twhsec_2,whsec_3 ", p, 8, &n));
    assert_int_equal(3, n);
    assert_true(keel_str_eq(p[0], KEEL_STR_LIT("whsec_1")));
    assert_true(keel_str_eq(p[1], KEEL_STR_LIT("whsec_2")));
    assert_true(keel_str_eq(p[2], KEEL_STR_LIT("whsec_3")));
    const char *bad[] = {"", " ", "a,", ",a", "a,,b", "a, ,b"};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        assert_int_equal(KEEL_EINVAL, keel_webhook_secrets_split(bad[i], p, 8, &n));
        assert_int_equal(0, n);
    }
    assert_int_equal(KEEL_EINVAL, keel_webhook_secrets_split(NULL, p, 8, &n));
    assert_int_equal(KEEL_ETOOBIG, keel_webhook_secrets_split("a,b,c", p, 2, &n));
    assert_int_equal(0, n);
    char *longs = malloc(KEEL_WEBHOOK_SECRET_MAX + 2);
    memset(longs, 'k', KEEL_WEBHOOK_SECRET_MAX + 1);
    longs[KEEL_WEBHOOK_SECRET_MAX + 1] = '\0';
    assert_int_equal(KEEL_EINVAL, keel_webhook_secrets_split(longs, p, 8, &n));
    longs[KEEL_WEBHOOK_SECRET_MAX] = '\0';
    ASSERT_OK(keel_webhook_secrets_split(longs, p, 8, &n));

    keel_webhook_config cfg;
    keel_webhook_config_default(&cfg);
    assert_int_equal(sizeof(cfg), cfg.size);
    assert_int_equal(300, cfg.tolerance_s);
    keel_webhook_verifier *v = (keel_webhook_verifier *)1;
    keel_diag d;
    assert_int_equal(KEEL_EINVAL, keel_webhook_verifier_create(&v, &cfg, &d));
    assert_null(v);
    assert_string_equal("no webhook secret configured", d.msg);
    cfg.secret_list = "whsec_1,whsec_2,whsec_3,whsec_4,whsec_5,whsec_6,whsec_7,whsec_8,whsec_9";
    assert_int_equal(KEEL_EINVAL, keel_webhook_verifier_create(&v, &cfg, &d));
    assert_null(strstr(d.msg, "whsec"));
    cfg.secret_list = "whsec_1,,whsec_2";
    assert_int_equal(KEEL_EINVAL, keel_webhook_verifier_create(&v, &cfg, &d));
    assert_null(strstr(d.msg, "whsec"));
    cfg.secret_list = longs;
    ASSERT_OK(keel_webhook_verifier_create(&v, &cfg, &d));
    keel_webhook_verifier_destroy(v);
    /* 8 from the list + 1 more from the array is one too many. */
    cfg.secret_list = "a,b,c,d,e,f,g,h";
    keel_str extra[] = {KEEL_STR_LIT("i")};
    cfg.secrets = extra;
    cfg.nsecrets = 1;
    assert_int_equal(KEEL_EINVAL, keel_webhook_verifier_create(&v, &cfg, &d));
    keel_str empty[] = {{"", 0}};
    cfg.secret_list = NULL;
    cfg.secrets = empty;
    assert_int_equal(KEEL_EINVAL, keel_webhook_verifier_create(&v, &cfg, &d));
    cfg.secrets = NULL; /* nsecrets 1 with no array */
    assert_int_equal(KEEL_EINVAL, keel_webhook_verifier_create(&v, &cfg, &d));
    cfg.nsecrets = 0;
    cfg.size = 8;
    cfg.secret_list = "a";
    assert_int_equal(KEEL_EINVAL, keel_webhook_verifier_create(&v, &cfg, &d));
    assert_int_equal(KEEL_EINVAL, keel_webhook_verifier_create(NULL, &cfg, &d));
    assert_int_equal(KEEL_EINVAL, keel_webhook_verifier_create(&v, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_webhook_verify(NULL, BODY, 1, HEADER, T0, &d));
    free(longs);

    keel_webhook_verifier *ok = make(SECRET, 300);
    assert_int_equal(KEEL_EINVAL, keel_webhook_verify(ok, NULL, 5, HEADER, T0, &d));
    keel_webhook_verifier_destroy(ok);
}

static void test_sign_limits(void **state)
{
    (void)state;
    char h[KEEL_WEBHOOK_SIGN_SIZE];
    size_t need = strlen(HEADER) + 1;
    ASSERT_OK(keel_webhook_sign(SECRET, BODY, strlen(BODY), T0, h, need));
    assert_string_equal(HEADER, h);
    assert_int_equal(KEEL_ETOOBIG, keel_webhook_sign(SECRET, BODY, strlen(BODY), T0, h, need - 1));
    assert_string_equal("", h);
    assert_int_equal(KEEL_EINVAL, keel_webhook_sign(SECRET, BODY, strlen(BODY), -1, h, sizeof(h)));
    assert_int_equal(KEEL_EINVAL, keel_webhook_sign("", BODY, strlen(BODY), T0, h, sizeof(h)));
    assert_int_equal(KEEL_EINVAL, keel_webhook_sign(NULL, BODY, strlen(BODY), T0, h, sizeof(h)));
    assert_int_equal(KEEL_EINVAL, keel_webhook_sign(SECRET, NULL, 3, T0, h, sizeof(h)));
    /* The largest timestamp fits in KEEL_WEBHOOK_SIGN_SIZE. */
    ASSERT_OK(keel_webhook_sign(SECRET, "", 0, INT64_MAX, h, sizeof(h)));
    assert_int_equal(strlen("t=9223372036854775807,v1=") + 64, strlen(h));
    keel_webhook_verifier *v = make(SECRET, 0);
    ASSERT_OK(keel_webhook_verify(v, "", 0, h, 0, NULL));
    ASSERT_OK(keel_webhook_sign(SECRET, NULL, 0, 0, h, sizeof(h)));
    assert_int_equal(0, strncmp(h, "t=0,v1=", 7));
    ASSERT_OK(keel_webhook_verify(v, NULL, 0, h, 0, NULL));
    keel_webhook_verifier_destroy(v);
    /* Binary bodies with NUL bytes round-trip. */
    const char bin[] = {'\0', '\x01', '\xff', '\0', 'x'};
    ASSERT_OK(keel_webhook_sign(SECRET, bin, sizeof(bin), T0, h, sizeof(h)));
    v = make(SECRET, 300);
    ASSERT_OK(keel_webhook_verify(v, bin, sizeof(bin), h, T0, NULL));
    assert_int_equal(KEEL_EDENIED, keel_webhook_verify(v, bin, sizeof(bin) - 1, h, T0, NULL));
    keel_webhook_verifier_destroy(v);
}

static void test_event_id(void **state)
{
    (void)state;
    char id[KEEL_WEBHOOK_EVENT_ID_MAX + 1];
    ASSERT_OK(keel_webhook_event_id(BODY, strlen(BODY), id, sizeof(id)));
    assert_string_equal("evt_test_webhook", id);
    const char *nested = "{\"data\":{\"object\":{\"id\":\"pi_1\"}},\"id\":\"evt_2\"}";
    ASSERT_OK(keel_webhook_event_id(nested, strlen(nested), id, sizeof(id)));
    assert_string_equal("evt_2", id);
    struct {
        const char *body;
        keel_err e;
    } cases[] = {
        {"", KEEL_EPARSE},
        {"not json", KEEL_EPARSE},
        {"[\"id\"]", KEEL_EPARSE},
        {"\"evt_1\"", KEEL_EPARSE},
        {"{\"id\":\"a\",\"id\":\"b\"}", KEEL_EPARSE},
        {"{\"id\":\"evt_1\"", KEEL_EPARSE},
        {"{}", KEEL_ENOTFOUND},
        {"{\"data\":{\"id\":\"evt_1\"}}", KEEL_ENOTFOUND},
        {"{\"id\":42}", KEEL_ENOTFOUND},
        {"{\"id\":null}", KEEL_ENOTFOUND},
        {"{\"id\":\"\"}", KEEL_EINVAL},
        {"{\"id\":\"evt 1\"}", KEEL_EINVAL},
        {"{\"id\":\"evt\\n1\"}", KEEL_EINVAL},
        {"{\"id\":\"evt\\u00e91\"}", KEEL_EINVAL},
        {"{\"id\":\"evt\\u00001\"}", KEEL_EPARSE}, /* NUL in a string: jansson refuses */
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(cases); i++) {
        keel_err e = keel_webhook_event_id(cases[i].body, strlen(cases[i].body), id, sizeof(id));
        if (e != cases[i].e)
            fprintf(stderr, "case %zu: %s\n", i, cases[i].body);
        assert_int_equal(cases[i].e, e);
        assert_string_equal("", id);
    }
    /* 255 bytes fit, 256 are invalid; cap must hold the NUL. */
    char body[600];
    char longid[257];
    memset(longid, 'e', 256);
    longid[255] = '\0';
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", longid);
    ASSERT_OK(keel_webhook_event_id(body, strlen(body), id, sizeof(id)));
    assert_int_equal(255, strlen(id));
    assert_int_equal(KEEL_ETOOBIG, keel_webhook_event_id(body, strlen(body), id, 255));
    longid[255] = 'e';
    longid[256] = '\0';
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", longid);
    assert_int_equal(KEEL_EINVAL, keel_webhook_event_id(body, strlen(body), id, sizeof(id)));
    assert_int_equal(KEEL_EINVAL, keel_webhook_event_id(BODY, strlen(BODY), NULL, 10));
    assert_int_equal(KEEL_EINVAL, keel_webhook_event_id(NULL, 3, id, sizeof(id)));

    assert_int_equal(1, keel_webhook_event_id_valid("evt_1", 5));
    assert_int_equal(1, keel_webhook_event_id_valid("!~", 2));
    assert_int_equal(0, keel_webhook_event_id_valid("", 0));
    assert_int_equal(0, keel_webhook_event_id_valid(NULL, 3));
    assert_int_equal(0, keel_webhook_event_id_valid("a b", 3));
    assert_int_equal(0, keel_webhook_event_id_valid("a\x7f", 2));
    assert_int_equal(0, keel_webhook_event_id_valid("a\0b", 3));
}

static void test_oom(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    int created = 0, parsed = 0;
    for (int n = 0; n < 40 && !(created && parsed); n++) {
        keel_test_failalloc_arm(n);
        keel_webhook_config cfg;
        keel_webhook_config_default(&cfg);
        cfg.secret_list = SECRET "," OLD_SECRET;
        keel_webhook_verifier *v = NULL;
        keel_err e = keel_webhook_verifier_create(&v, &cfg, NULL);
        if (e == KEEL_OK) {
            created = 1;
            ASSERT_OK(keel_webhook_verify(v, BODY, strlen(BODY), ROTATION, T0, NULL));
            keel_webhook_verifier_destroy(v);
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
            assert_null(v);
        }
        keel_test_failalloc_arm(n);
        char id[64];
        e = keel_webhook_event_id(BODY, strlen(BODY), id, sizeof(id));
        if (e == KEEL_OK) {
            parsed = 1;
            assert_string_equal("evt_test_webhook", id);
        } else {
            /* jansson reports most allocation failures as a syntax error. */
            assert_true(e == KEEL_ENOMEM || e == KEEL_EPARSE);
        }
    }
    keel_test_failalloc_arm(-1);
    assert_true(created);
    assert_true(parsed);
    keel_test_failalloc_remove();
}

/* One verifier shared by several threads. */
static void *verify_thread(void *arg)
{
    const keel_webhook_verifier *v = arg;
    intptr_t bad = 0;
    for (int i = 0; i < 300; i++) {
        bad += keel_webhook_verify(v, BODY, strlen(BODY), ROTATION, T0, NULL) != KEEL_OK;
        bad += keel_webhook_verify(v, BODY, strlen(BODY) - 1, ROTATION, T0, NULL) != KEEL_EDENIED;
    }
    return (void *)bad;
}

static void test_concurrent_verify(void **state)
{
    (void)state;
    keel_webhook_verifier *v = make(OLD_SECRET "," SECRET, 300);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(0, pthread_create(&th[i], NULL, verify_thread, v));
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_int_equal(0, (intptr_t)r);
    }
    keel_webhook_verifier_destroy(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_vector),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_whsec_prefix_is_key_bytes),
        cmocka_unit_test(test_tampered_body_and_signature),
        cmocka_unit_test(test_tolerance_boundaries),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_v1_filtering),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_secret_lists_and_create_errors),
        cmocka_unit_test(test_sign_limits),
        cmocka_unit_test(test_event_id),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_concurrent_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
