/* Tests for src/security/jwks.c: the JWK Set of RS256 and ES256 keys (tests/data/jwt) against
 * values computed independently (python3 `cryptography` public_numbers(), cross-checked with
 * `openssl rsa -noout -modulus`), HMAC keys never published, no private members. */
#include "test.h"

#include <stdio.h>
#include <string.h>

#include "keel_int.h"

#include <keel/auth.h>
#include <keel/jwt.h>

#include "security/jwt_int.h"

#define SECRET "keel-test-jwks-hs256-secret-0123456789"

/* rs256_private.pem: 2048-bit modulus, e = 65537 */
#define RS_N                                                                                       \
    "j7DWX2lJEaWS42rEUyHGeSZ8ZT5GPdzM0qWIHar7QSHBAMdGe9XSxNoJRJBf9sjfFVmg0POqNH1X6AfuNC8mrml8lLo" \
    "jS2WX_znsuWwaKJBiJooifNFFZLGhboDfg_lXEoX3io-LzazA3T6Qe17gr32VTPb3iKBoGJgvSap3OMK3vobY5Oms" \
    "gEexXKzv-O7EdaBXsDJU04EyO0PVMq4qymIcQLkEZ-QmLh66emBi_fGQEaTU7AMr2yKPK93JZCfZxWFAol9TEkY6zK" \
    "nxvDy8-QCqwHzMrKcLBu_S1mhUphHO6JI2IzCS1ULcRWaSmRx_2ajpKdQPTRdr3fjRTLwZTw"
/* es256_private.pem: P-256 public point */
#define ES_X "TeRGtVfS0MQA3UJq1D9PdK5XiiCi9Qh16yKqABbUdUc"
#define ES_Y "GShLCM6RV9i0R1ZTTmVH1nV-2Wx-6lIBO7hE1B9RVS8"

static void add_pem(keel_jwt_keyset *ks, keel_jwt_alg alg, const char *kid, const char *file,
                    unsigned usage)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/jwt/%s", KEEL_TEST_DATA, file);
    ASSERT_OK(keel_jwt_keyset_add_pem_file(ks, alg, kid, path, usage));
}

static void test_args(void **state)
{
    (void)state;
    json_t *out = (json_t *)1;
    assert_int_equal(KEEL_EINVAL, keel_jwt_keyset_jwks(NULL, &out));
    assert_null(out);
    keel_jwt_keyset *ks;
    ASSERT_OK(keel_jwt_keyset_create(&ks));
    assert_int_equal(KEEL_EINVAL, keel_jwt_keyset_jwks(ks, NULL));
    keel_jwt_keyset_destroy(ks);
}


static void test_rsa_ec_hmac(void **state)
{
    (void)state;
    keel_jwt_keyset *ks;
    ASSERT_OK(keel_jwt_keyset_create(&ks));
    add_pem(ks, KEEL_JWT_RS256, "rs1", "rs256_private.pem",
            KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY);
    ASSERT_OK(keel_jwt_keyset_add_hmac(ks, "hs1", SECRET, strlen(SECRET), KEEL_JWT_KEY_VERIFY));
    add_pem(ks, KEEL_JWT_ES256, "es1", "es256_private.pem", KEEL_JWT_KEY_VERIFY);
    add_pem(ks, KEEL_JWT_RS256, NULL, "rs256_public.pem", KEEL_JWT_KEY_VERIFY);

    json_t *doc = NULL;
    ASSERT_OK(keel_jwt_keyset_jwks(ks, &doc));
    json_t *want = json_pack(
        "{s:[{s:s, s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s, s:s, s:s},"
        " {s:s, s:s, s:s, s:s, s:s}]}",
        "keys", "kty", "RSA", "n", RS_N, "e", "AQAB", "use", "sig", "alg", "RS256", "kid", "rs1",
        "kty", "EC", "crv", "P-256", "x", ES_X, "y", ES_Y, "use", "sig", "alg", "ES256", "kid",
        "es1", "kty", "RSA", "n", RS_N, "e", "AQAB", "use", "sig", "alg", "RS256");
    assert_non_null(want);
    if (!json_equal(want, doc)) {
        char *got = json_dumps(doc, JSON_INDENT(1));
        fprintf(stderr, "got: %s\n", got);
        free(got);
    }
    assert_true(json_equal(want, doc));
    /* the serialised document holds no secret and no private member */
    char *text = json_dumps(doc, JSON_COMPACT);
    assert_non_null(text);
    assert_null(strstr(text, SECRET));
    assert_null(strstr(text, "hs1"));
    assert_null(strstr(text, "\"d\""));
    assert_null(strstr(text, "\"p\""));
    assert_null(strstr(text, "\"k\""));
    assert_null(strstr(text, "oct"));
    free(text);
    json_decref(want);
    json_decref(doc);
    keel_jwt_keyset_destroy(ks);
}

static void test_hmac_only_and_empty(void **state)
{
    (void)state;
    keel_jwt_keyset *ks;
    ASSERT_OK(keel_jwt_keyset_create(&ks));
    json_t *doc = NULL;
    ASSERT_OK(keel_jwt_keyset_jwks(ks, &doc));
    json_t *want = json_pack("{s:[]}", "keys");
    assert_true(json_equal(want, doc));
    json_decref(doc);
    ASSERT_OK(keel_jwt_keyset_add_hmac(ks, "hs1", SECRET, strlen(SECRET),
                                       KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY));
    ASSERT_OK(keel_jwt_keyset_jwks(ks, &doc));
    assert_true(json_equal(want, doc));
    json_decref(doc);
    json_decref(want);
    keel_jwt_keyset_destroy(ks);
}

/* An ES256 public key file gives the same members as its private key. */
static void test_public_pem(void **state)
{
    (void)state;
    keel_jwt_keyset *ks;
    ASSERT_OK(keel_jwt_keyset_create(&ks));
    add_pem(ks, KEEL_JWT_ES256, "pub", "es256_public.pem", KEEL_JWT_KEY_VERIFY);
    json_t *doc = NULL;
    ASSERT_OK(keel_jwt_keyset_jwks(ks, &doc));
    json_t *want = json_pack("{s:[{s:s, s:s, s:s, s:s, s:s, s:s, s:s}]}", "keys", "kty", "EC",
                             "crv", "P-256", "x", ES_X, "y", ES_Y, "use", "sig", "alg", "ES256",
                             "kid", "pub");
    assert_true(json_equal(want, doc));
    json_decref(want);
    json_decref(doc);
    keel_jwt_keyset_destroy(ks);
}

static void test_oom(void **state)
{
    (void)state;
    keel_jwt_keyset *ks;
    ASSERT_OK(keel_jwt_keyset_create(&ks));
    add_pem(ks, KEEL_JWT_RS256, "rs1", "rs256_private.pem", KEEL_JWT_KEY_VERIFY);
    add_pem(ks, KEEL_JWT_ES256, "es1", "es256_private.pem", KEEL_JWT_KEY_VERIFY);
    keel_test_failalloc_install();
    int ok = 0;
    for (int n = 0; n < 200 && !ok; n++) {
        keel_test_failalloc_arm(n);
        json_t *doc = NULL;
        keel_err e = keel_jwt_keyset_jwks(ks, &doc);
        keel_test_failalloc_arm(-1);
        if (e == KEEL_OK) {
            assert_int_equal(2, json_array_size(json_object_get(doc, "keys")));
            json_decref(doc);
            ok = 1;
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
            assert_null(doc);
        }
    }
    keel_test_failalloc_remove();
    assert_true(ok);
    keel_jwt_keyset_destroy(ks);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_rsa_ec_hmac),
        cmocka_unit_test(test_hmac_only_and_empty),
        cmocka_unit_test(test_public_pem),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
