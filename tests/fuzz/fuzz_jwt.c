/* fuzz_jwt.c - arbitrary bytes as a token into keel_jwt_verify() against a fixed HS256
 * keyset and policy (and, when the bytes happen to verify, a second pass that must agree).
 * Checks: no crash/hang/leak; on error no claims are returned and diag.msg is terminated;
 * on success the claims are an object and re-verifying gives the same claims.
 * Inputs that parse as a JSON object are also signed as claims and verified, which drives
 * the claim checks (exp/nbf/iss/aud/type): that must give OK or EDENIED, never EPARSE. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/jwt.h>
#include <keel/keel.h>

#define SECRET "keel-test-hs256-secret-0123456789abcdef"

static keel_jwt_keyset *keyset(void)
{
    static keel_jwt_keyset *ks;
    if (ks == NULL) {
        if (keel_jwt_keyset_create(&ks) != KEEL_OK ||
            keel_jwt_keyset_add_hmac(ks, "hs1", SECRET, strlen(SECRET),
                                     KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY) != KEEL_OK ||
            keel_jwt_keyset_add_hmac(ks, NULL, SECRET "-2", strlen(SECRET) + 2,
                                     KEEL_JWT_KEY_VERIFY) != KEEL_OK)
            abort();
    }
    return ks;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keel_jwt_policy p;
    keel_jwt_policy_default(&p);
    p.iss = "https://auth.keel.test";
    p.aud = "keel-api";
    p.type = "access";
    p.require_exp = 0; /* let more inputs reach the claim checks */
    json_t *obj = json_loadb((const char *)data, size, 0, NULL);
    if (json_is_object(obj)) {
        char *tok = NULL;
        keel_jwt_policy sp = p;
        sp.max_len = KEEL_JWT_MAX_LEN_LIMIT;
        if (keel_jwt_sign(keyset(), obj, &tok) == KEEL_OK) {
            json_t *out = NULL;
            keel_err se = keel_jwt_verify(keyset(), &sp, tok, strlen(tok), 1700000100u, &out, NULL);
            if ((se != KEEL_OK && se != KEEL_EDENIED) || (se == KEEL_OK) != (out != NULL) ||
                (out != NULL && !json_equal(out, obj)))
                abort();
            json_decref(out);
            keel_free(tok);
        }
    }
    json_decref(obj);
    keel_diag d;
    json_t *claims = NULL;
    keel_err e = keel_jwt_verify(keyset(), &p, (const char *)data, size, 1700000100u, &claims, &d);
    if (e != KEEL_OK) {
        if (claims != NULL || memchr(d.msg, '\0', sizeof(d.msg)) == NULL || d.code != e)
            abort();
        return 0;
    }
    if (!json_is_object(claims))
        abort();
    json_t *again = NULL;
    if (keel_jwt_verify(keyset(), &p, (const char *)data, size, 1700000100u, &again, NULL) !=
            KEEL_OK ||
        !json_equal(claims, again))
        abort();
    json_decref(again);
    json_decref(claims);
    return 0;
}
