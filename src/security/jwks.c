/* jwks.c - the JWK Set (RFC 7517 §5) of a keyset's public keys, for a /.well-known/jwks.json
 * endpoint: RSA {n, e} and EC P-256 {crv, x, y} members per RFC 7518 §6.  HMAC secrets and
 * private key parts never appear. */
#include "keel_int.h"

#include <keel/auth.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "jwt_int.h"


/* Base64urlUInt of a BIGNUM parameter: big-endian bytes, the minimum number of them
 * (RFC 7518 §2) when pad is 0, exactly pad bytes otherwise (EC coordinates, §6.2.1.2). */
static keel_err bn_member(json_t *jwk, const char *member, const EVP_PKEY *pkey,
                          const char *param, int pad)
{
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1 || bn == NULL)
        return KEEL_ECRYPTO;
    int n = pad ? pad : BN_num_bytes(bn);
    if (n <= 0)
        n = 1; /* zero is one 0x00 octet */
    keel_err e = KEEL_ENOMEM;
    unsigned char *raw = keel_malloc((size_t)n);
    char *text = keel_malloc(keel__b64_encoded_len((size_t)n) + 1);
    if (raw != NULL && text != NULL) {
        if (BN_bn2binpad(bn, raw, n) != n) {
            e = KEEL_ECRYPTO;
        } else {
            keel__b64_encode(1, raw, (size_t)n, text);
            e = json_object_set_new(jwk, member, json_string(text)) == 0 ? KEEL_OK : KEEL_ENOMEM;
        }
    }
    keel_free(raw);
    keel_free(text);
    BN_free(bn);
    return e;
}

static keel_err key_jwk(keel_jwt_alg alg, const char *kid, const EVP_PKEY *pkey, json_t **out)
{
    json_t *jwk = json_object();
    if (jwk == NULL)
        return KEEL_ENOMEM;
    keel_err e = KEEL_OK;
    if (alg == KEEL_JWT_RS256) {
        if (json_object_set_new(jwk, "kty", json_string("RSA")) != 0)
            e = KEEL_ENOMEM;
        if (e == KEEL_OK)
            e = bn_member(jwk, "n", pkey, OSSL_PKEY_PARAM_RSA_N, 0);
        if (e == KEEL_OK)
            e = bn_member(jwk, "e", pkey, OSSL_PKEY_PARAM_RSA_E, 0);
    } else {
        if (json_object_set_new(jwk, "kty", json_string("EC")) != 0 ||
            json_object_set_new(jwk, "crv", json_string("P-256")) != 0)
            e = KEEL_ENOMEM;
        if (e == KEEL_OK)
            e = bn_member(jwk, "x", pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        if (e == KEEL_OK)
            e = bn_member(jwk, "y", pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    }
    if (e == KEEL_OK && (json_object_set_new(jwk, "use", json_string("sig")) != 0 ||
                         json_object_set_new(jwk, "alg", json_string(keel_jwt_alg_name(alg))) !=
                             0 ||
                         (kid != NULL && json_object_set_new(jwk, "kid", json_string(kid)) != 0)))
        e = KEEL_ENOMEM;
    if (e != KEEL_OK) {
        json_decref(jwk);
        return e;
    }
    *out = jwk;
    return KEEL_OK;
}

keel_err keel_jwt_keyset_jwks(const keel_jwt_keyset *ks, json_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (ks == NULL || out == NULL)
        return KEEL_EINVAL;
    json_t *keys = json_array();
    json_t *doc = json_object();
    if (keys == NULL || doc == NULL || json_object_set(doc, "keys", keys) != 0) {
        json_decref(keys);
        json_decref(doc);
        return KEEL_ENOMEM;
    }
    json_decref(keys); /* doc holds it */
    keel_jwt_alg alg;
    const char *kid;
    unsigned usage;
    const struct evp_pkey_st *pkey;
    for (size_t i = 0; keel__jwt_keyset_key(ks, i, &alg, &kid, &usage, &pkey) == 0; i++) {
        (void)usage; /* signing and verification keys alike: both verify our tokens */
        if ((alg != KEEL_JWT_RS256 && alg != KEEL_JWT_ES256) || pkey == NULL)
            continue; /* HMAC secrets are never published */
        json_t *jwk = NULL;
        keel_err e = key_jwk(alg, kid, pkey, &jwk);
        if (e == KEEL_OK && json_array_append_new(keys, jwk) != 0)
            e = KEEL_ENOMEM;
        if (e != KEEL_OK) {
            json_decref(doc);
            return e;
        }
    }
    *out = doc;
    return KEEL_OK;
}

