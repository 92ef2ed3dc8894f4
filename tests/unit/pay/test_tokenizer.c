/* Tests for src/pay/tokenizer.c: Luhn and PAN validation (messages never hold the PAN),
 * brand detection for the test PANs of reference.md section 9.1, token format and
 * stability, detokenize/lookup/forget, fingerprints (keyed, stable, instance-specific unless
 * a key is configured), limits, threads and allocation failures. */
#include "test.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <keel/tokenizer.h>

typedef struct test_pan {
    const char *pan;
    keel_card_brand brand;
} test_pan;

/* reference.md section 9.1 */
static const test_pan PANS[] = {
    {"4111111111111111", KEEL_CARD_VISA},       {"4242424242424242", KEEL_CARD_VISA},
    {"4012888888881881", KEEL_CARD_VISA},       {"4222222222222", KEEL_CARD_VISA},
    {"378282246310005", KEEL_CARD_AMEX},        {"371449635398431", KEEL_CARD_AMEX},
    {"30569309025904", KEEL_CARD_DINERS},       {"38520000023237", KEEL_CARD_DINERS},
    {"36227206271667", KEEL_CARD_DINERS},       {"3056930009020004", KEEL_CARD_DINERS},
    {"6011111111111117", KEEL_CARD_DISCOVER},   {"6011000990139424", KEEL_CARD_DISCOVER},
    {"3530111333300000", KEEL_CARD_JCB},        {"3566002020360505", KEEL_CARD_JCB},
    {"5555555555554444", KEEL_CARD_MASTERCARD}, {"5105105105105100", KEEL_CARD_MASTERCARD},
    {"2223003122003222", KEEL_CARD_MASTERCARD}, {"6200000000000005", KEEL_CARD_UNIONPAY},
    {"6205500000000000004", KEEL_CARD_UNIONPAY},
};

static keel_tokenizer *make(void)
{
    keel_tokenizer *tk = NULL;
    ASSERT_OK(keel_tokenizer_ephemeral_create(&tk, NULL, NULL));
    return tk;
}

static void test_luhn_and_brands(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(PANS) / sizeof(PANS[0]); i++) {
        keel_str p = keel_str_c(PANS[i].pan);
        if (!keel_card_luhn_valid(p))
            fail_msg("Luhn rejects test PAN #%zu", i);
        ASSERT_OK(keel_card_pan_validate(p, NULL));
        if (keel_card_brand_detect(p) != PANS[i].brand)
            fail_msg("PAN #%zu: brand %s, want %s", i,
                     keel_card_brand_name(keel_card_brand_detect(p)),
                     keel_card_brand_name(PANS[i].brand));
    }
    assert_int_equal(0, keel_card_luhn_valid(KEEL_STR_LIT("4242424242424241")));
    assert_int_equal(0, keel_card_luhn_valid(KEEL_STR_LIT("")));
    assert_int_equal(0, keel_card_luhn_valid(KEEL_STR_LIT("4242-4242")));
    assert_int_equal(1, keel_card_luhn_valid(KEEL_STR_LIT("0")));
    assert_int_equal(1, keel_card_luhn_valid(KEEL_STR_LIT("18")));
    /* Prefix edges. */
    assert_int_equal(KEEL_CARD_MASTERCARD, keel_card_brand_detect(KEEL_STR_LIT("2720990000")));
    assert_int_equal(KEEL_CARD_UNKNOWN, keel_card_brand_detect(KEEL_STR_LIT("2721000000")));
    assert_int_equal(KEEL_CARD_UNKNOWN, keel_card_brand_detect(KEEL_STR_LIT("2220990000")));
    assert_int_equal(KEEL_CARD_JCB, keel_card_brand_detect(KEEL_STR_LIT("3528000000")));
    assert_int_equal(KEEL_CARD_UNKNOWN, keel_card_brand_detect(KEEL_STR_LIT("3527000000")));
    assert_int_equal(KEEL_CARD_DISCOVER, keel_card_brand_detect(KEEL_STR_LIT("6440000000")));
    assert_int_equal(KEEL_CARD_DISCOVER, keel_card_brand_detect(KEEL_STR_LIT("6500000000")));
    assert_int_equal(KEEL_CARD_DINERS, keel_card_brand_detect(KEEL_STR_LIT("3095000000")));
    assert_int_equal(KEEL_CARD_UNKNOWN, keel_card_brand_detect(KEEL_STR_LIT("3096000000")));
    assert_int_equal(KEEL_CARD_UNKNOWN, keel_card_brand_detect(KEEL_STR_LIT("9999")));
    assert_int_equal(KEEL_CARD_UNKNOWN, keel_card_brand_detect(KEEL_STR_LIT("4x")));
    assert_string_equal("visa", keel_card_brand_name(KEEL_CARD_VISA));
    assert_string_equal("mastercard", keel_card_brand_name(KEEL_CARD_MASTERCARD));
    assert_string_equal("amex", keel_card_brand_name(KEEL_CARD_AMEX));
    assert_string_equal("discover", keel_card_brand_name(KEEL_CARD_DISCOVER));
    assert_string_equal("diners", keel_card_brand_name(KEEL_CARD_DINERS));
    assert_string_equal("jcb", keel_card_brand_name(KEEL_CARD_JCB));
    assert_string_equal("unionpay", keel_card_brand_name(KEEL_CARD_UNIONPAY));
    assert_string_equal("unknown", keel_card_brand_name(KEEL_CARD_UNKNOWN));
}

/* The diag message of a rejected PAN must not contain the PAN nor any run of 4+ of its
 * digits (not even the last four). */
static void assert_no_pan(const char *msg, const char *pan)
{
    if (pan[0] != '\0')
        assert_null(strstr(msg, pan));
    size_t n = strlen(pan);
    for (size_t i = 0; i + 4 <= n; i++) {
        char frag[5];
        memcpy(frag, pan + i, 4);
        frag[4] = '\0';
        int digits = 1;
        for (int k = 0; k < 4; k++)
            digits &= isdigit((unsigned char)frag[k]) != 0;
        if (digits && strstr(msg, frag) != NULL)
            fail_msg("diag \"%s\" leaks digits of the PAN", msg);
    }
}

static void expect_rejected(keel_tokenizer *tk, const char *pan, size_t offset)
{
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_card_token t;
    assert_int_equal(KEEL_EINVAL, keel_tokenizer_tokenize(tk, keel_str_c(pan), &t, &d));
    assert_int_equal(KEEL_EINVAL, d.code);
    assert_int_equal(offset, d.offset);
    assert_true(strncmp(d.msg, "pan: ", 5) == 0);
    assert_no_pan(d.msg, pan);
    assert_string_equal("", t.token);
}

static void test_validation(void **state)
{
    (void)state;
    keel_tokenizer *tk = make();
    expect_rejected(tk, "4242424242424241", 0);     /* bad Luhn */
    expect_rejected(tk, "424242424242", 0);         /* 12 digits: short */
    expect_rejected(tk, "42424242424242424242", 0); /* 20 digits: long */
    expect_rejected(tk, "4242 4242 4242 4242", 4);  /* non-digit */
    expect_rejected(tk, "4242-4242-4242-4242", 4);
    expect_rejected(tk, "4242424242424242x", 16);
    expect_rejected(tk, "", 0);
    keel_diag d;
    keel_card_token t;
    assert_int_equal(KEEL_EINVAL,
                     keel_tokenizer_tokenize(tk, (keel_str){"4242424242424242", 16}, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_tokenizer_tokenize(NULL, KEEL_STR_LIT("4242"), &t, &d));
    assert_int_equal(0, keel_tokenizer_ephemeral_count(tk));
    keel_diag v;
    assert_int_equal(KEEL_EINVAL, keel_card_pan_validate(KEEL_STR_LIT("4242424242424241"), &v));
    assert_string_equal("pan: check digit wrong (Luhn)", v.msg);
    assert_int_equal(KEEL_EINVAL, keel_card_pan_validate(KEEL_STR_LIT("411111111111"), &v));
    assert_string_equal("pan: must be 13 to 19 digits long (is 12)", v.msg);
    keel_tokenizer_destroy(tk);
}

static int token_chars_ok(const char *tok)
{
    if (strlen(tok) != KEEL_CARD_TOKEN_LEN || strncmp(tok, "tok_", 4) != 0)
        return 0;
    for (const char *p = tok + 4; *p; p++)
        if (!isalnum((unsigned char)*p))
            return 0;
    return 1;
}

static void test_tokenize_roundtrip(void **state)
{
    (void)state;
    keel_tokenizer *tk = make();
    keel_card_token a, b, c;
    ASSERT_OK(keel_tokenizer_tokenize(tk, KEEL_STR_LIT("4242424242424242"), &a, NULL));
    assert_true(token_chars_ok(a.token));
    assert_null(strstr(a.token, "4242"));
    assert_string_equal("4242", a.last4);
    assert_int_equal(KEEL_CARD_VISA, a.brand);
    assert_int_equal(KEEL_CARD_FINGERPRINT_LEN, strlen(a.fingerprint));
    for (const char *p = a.fingerprint; *p; p++)
        assert_true(isxdigit((unsigned char)*p) && !isupper((unsigned char)*p));

    /* Stable for the same PAN. */
    ASSERT_OK(keel_tokenizer_tokenize(tk, KEEL_STR_LIT("4242424242424242"), &b, NULL));
    assert_string_equal(a.token, b.token);
    assert_string_equal(a.fingerprint, b.fingerprint);
    assert_int_equal(1, keel_tokenizer_ephemeral_count(tk));

    /* Another PAN: another token and fingerprint. */
    ASSERT_OK(keel_tokenizer_tokenize(tk, KEEL_STR_LIT("378282246310005"), &c, NULL));
    assert_string_not_equal(a.token, c.token);
    assert_string_not_equal(a.fingerprint, c.fingerprint);
    assert_string_equal("0005", c.last4);
    assert_int_equal(KEEL_CARD_AMEX, c.brand);
    assert_int_equal(2, keel_tokenizer_ephemeral_count(tk));

    char pan[KEEL_PAN_SIZE];
    size_t len = 0;
    ASSERT_OK(keel_tokenizer_detokenize(tk, c.token, pan, sizeof(pan), &len));
    assert_string_equal("378282246310005", pan);
    assert_int_equal(15, len);
    assert_int_equal(KEEL_ETOOBIG, keel_tokenizer_detokenize(tk, c.token, pan, 15, &len));
    assert_int_equal(0, len);
    assert_int_equal(KEEL_ENOTFOUND,
                     keel_tokenizer_detokenize(tk, "tok_nope", pan, sizeof(pan), NULL));
    assert_string_equal("", pan);

    keel_card_token l;
    ASSERT_OK(keel_tokenizer_lookup(tk, a.token, &l));
    assert_string_equal(a.token, l.token);
    assert_string_equal("4242", l.last4);
    assert_string_equal(a.fingerprint, l.fingerprint);
    assert_int_equal(KEEL_ENOTFOUND, keel_tokenizer_lookup(tk, "tok_nope", &l));

    /* Forget: the token is gone; tokenizing again gives a new token, same fingerprint. */
    ASSERT_OK(keel_tokenizer_forget(tk, a.token));
    assert_int_equal(KEEL_ENOTFOUND, keel_tokenizer_forget(tk, a.token));
    assert_int_equal(KEEL_ENOTFOUND,
                     keel_tokenizer_detokenize(tk, a.token, pan, sizeof(pan), NULL));
    assert_int_equal(1, keel_tokenizer_ephemeral_count(tk));
    ASSERT_OK(keel_tokenizer_tokenize(tk, KEEL_STR_LIT("4242424242424242"), &b, NULL));
    assert_string_not_equal(a.token, b.token);
    assert_string_equal(a.fingerprint, b.fingerprint);
    ASSERT_OK(keel_tokenizer_detokenize(tk, b.token, pan, sizeof(pan), NULL));
    assert_string_equal("4242424242424242", pan);
    assert_int_equal(KEEL_EINVAL, keel_tokenizer_forget(tk, NULL));
    keel_tokenizer_destroy(tk);
    keel_tokenizer_destroy(NULL);
}

static void test_fingerprint_keys(void **state)
{
    (void)state;
    keel_tokenizer *t1 = make(), *t2 = make();
    keel_card_token a, b;
    ASSERT_OK(keel_tokenizer_tokenize(t1, KEEL_STR_LIT("5555555555554444"), &a, NULL));
    ASSERT_OK(keel_tokenizer_tokenize(t2, KEEL_STR_LIT("5555555555554444"), &b, NULL));
    /* Random keys: both token and fingerprint differ between instances. */
    assert_string_not_equal(a.token, b.token);
    assert_string_not_equal(a.fingerprint, b.fingerprint);
    keel_tokenizer_destroy(t1);
    keel_tokenizer_destroy(t2);

    /* A shared fingerprint key makes fingerprints comparable across instances. */
    keel_secret *key = NULL;
    ASSERT_OK(keel_secret_create(&key, "0123456789abcdef0123456789abcdef", 32));
    keel_tokenizer_config cfg;
    keel_tokenizer_config_default(&cfg);
    cfg.fingerprint_key = key;
    ASSERT_OK(keel_tokenizer_ephemeral_create(&t1, &cfg, NULL));
    ASSERT_OK(keel_tokenizer_ephemeral_create(&t2, &cfg, NULL));
    keel_secret_destroy(key); /* copied */
    ASSERT_OK(keel_tokenizer_tokenize(t1, KEEL_STR_LIT("5555555555554444"), &a, NULL));
    ASSERT_OK(keel_tokenizer_tokenize(t2, KEEL_STR_LIT("5555555555554444"), &b, NULL));
    assert_string_not_equal(a.token, b.token);
    assert_string_equal(a.fingerprint, b.fingerprint);
    /* HMAC-SHA256("0123...cdef" x2, PAN) truncated to 128 bits, computed independently
     * (python3 hmac.new(key, pan, sha256).hexdigest()[:32]). */
    assert_string_equal("75785ef84e25d88f85f7397bd338f887", a.fingerprint);
    keel_tokenizer_destroy(t1);
    keel_tokenizer_destroy(t2);
}

static void test_config_errors(void **state)
{
    (void)state;
    keel_tokenizer *tk = NULL;
    keel_tokenizer_config cfg;
    keel_diag d;
    keel_tokenizer_config_default(&cfg);
    assert_int_equal(10000, cfg.max_cards);
    cfg.max_cards = 0;
    assert_int_equal(KEEL_EINVAL, keel_tokenizer_ephemeral_create(&tk, &cfg, &d));
    assert_non_null(strstr(d.msg, "max_cards"));
    assert_null(tk);
    keel_secret *shortkey = NULL;
    ASSERT_OK(keel_secret_create(&shortkey, "short", 5));
    keel_tokenizer_config_default(&cfg);
    cfg.fingerprint_key = shortkey;
    assert_int_equal(KEEL_EINVAL, keel_tokenizer_ephemeral_create(&tk, &cfg, &d));
    assert_non_null(strstr(d.msg, "fingerprint_key"));
    keel_secret_destroy(shortkey);
    cfg.fingerprint_key = NULL;
    cfg.size = 3;
    assert_int_equal(KEEL_EINVAL, keel_tokenizer_ephemeral_create(&tk, &cfg, &d));
    assert_non_null(strstr(d.msg, "size"));
    assert_int_equal(KEEL_EINVAL, keel_tokenizer_ephemeral_create(NULL, NULL, &d));

    /* max_cards is enforced; forgetting makes room. */
    keel_tokenizer_config_default(&cfg);
    cfg.max_cards = 2;
    ASSERT_OK(keel_tokenizer_ephemeral_create(&tk, &cfg, NULL));
    keel_card_token a, b;
    ASSERT_OK(keel_tokenizer_tokenize(tk, KEEL_STR_LIT("4111111111111111"), &a, NULL));
    ASSERT_OK(keel_tokenizer_tokenize(tk, KEEL_STR_LIT("5105105105105100"), &b, NULL));
    ASSERT_OK(keel_tokenizer_tokenize(tk, KEEL_STR_LIT("4111111111111111"), &a, NULL));
    assert_int_equal(KEEL_EFULL,
                     keel_tokenizer_tokenize(tk, KEEL_STR_LIT("6011111111111117"), &b, &d));
    assert_null(strstr(d.msg, "6011111111111117"));
    ASSERT_OK(keel_tokenizer_forget(tk, a.token));
    ASSERT_OK(keel_tokenizer_tokenize(tk, KEEL_STR_LIT("6011111111111117"), &b, NULL));
    assert_int_equal(KEEL_CARD_DISCOVER, b.brand);
    assert_int_equal(0, keel_tokenizer_ephemeral_count(NULL));
    keel_tokenizer_destroy(tk);
}

/* Many cards: tokens unique, each round-trips (exercises the hash chains). */
static void test_many_cards(void **state)
{
    (void)state;
    keel_tokenizer_config cfg;
    keel_tokenizer_config_default(&cfg);
    cfg.max_cards = 20; /* 32 buckets: chains form */
    keel_tokenizer *tk = NULL;
    ASSERT_OK(keel_tokenizer_ephemeral_create(&tk, &cfg, NULL));
    keel_card_token toks[20];
    char pans[20][17];
    for (int i = 0; i < 20; i++) {
        /* 400000000000000c + Luhn digit: build a valid 16-digit Visa-like PAN. */
        char p[17];
        snprintf(p, sizeof(p), "4000000000%05d", i);
        for (char check = '0'; check <= '9'; check++) {
            p[15] = check;
            p[16] = '\0';
            if (keel_card_luhn_valid(keel_str_c(p)))
                break;
        }
        memcpy(pans[i], p, 17);
        ASSERT_OK(keel_tokenizer_tokenize(tk, keel_str_c(p), &toks[i], NULL));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(toks[i].token, toks[j].token);
    }
    for (int i = 0; i < 20; i += 2)
        ASSERT_OK(keel_tokenizer_forget(tk, toks[i].token));
    for (int i = 1; i < 20; i += 2) {
        char pan[KEEL_PAN_SIZE];
        ASSERT_OK(keel_tokenizer_detokenize(tk, toks[i].token, pan, sizeof(pan), NULL));
        assert_string_equal(pans[i], pan);
    }
    assert_int_equal(10, keel_tokenizer_ephemeral_count(tk));
    keel_tokenizer_destroy(tk);
}

static void *tokenize_loop(void *arg)
{
    keel_tokenizer *tk = arg;
    for (int i = 0; i < 300; i++) {
        keel_card_token t;
        const char *pan = (i % 2) ? "4242424242424242" : "5555555555554444";
        if (keel_tokenizer_tokenize(tk, keel_str_c(pan), &t, NULL) != KEEL_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    keel_tokenizer *tk = make();
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(0, pthread_create(&th[i], NULL, tokenize_loop, tk));
    for (int i = 0; i < 4; i++) {
        void *rv = NULL;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    assert_int_equal(2, keel_tokenizer_ephemeral_count(tk));
    keel_tokenizer_destroy(tk);
}

static void test_oom(void **state)
{
    (void)state;
    for (int n = 0; n < 20; n++) {
        keel_test_failalloc_install();
        keel_test_failalloc_arm(n);
        keel_tokenizer *tk = NULL;
        keel_err e = keel_tokenizer_ephemeral_create(&tk, NULL, NULL);
        if (e == KEEL_OK) {
            keel_card_token t;
            e = keel_tokenizer_tokenize(tk, KEEL_STR_LIT("4242424242424242"), &t, NULL);
            assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
            assert_int_equal(e == KEEL_OK ? 1 : 0, keel_tokenizer_ephemeral_count(tk));
            keel_tokenizer_destroy(tk);
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
        }
        keel_test_failalloc_remove();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_luhn_and_brands),  cmocka_unit_test(test_validation),
        cmocka_unit_test(test_tokenize_roundtrip), cmocka_unit_test(test_fingerprint_keys),
        cmocka_unit_test(test_config_errors),     cmocka_unit_test(test_many_cards),
        cmocka_unit_test(test_threads),           cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
