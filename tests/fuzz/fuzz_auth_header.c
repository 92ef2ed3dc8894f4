/* fuzz_auth_header.c - arbitrary bytes as an Authorization header value (up to the first NUL,
 * as the HTTP server hands it over) through keel_auth_parse_bearer() and, when a token comes
 * out, keel_jwt_verify() under the auth layer's kind of policy.
 * Checks: no crash/hang/leak; the verdict equals a reference parser written independently
 * below; a token lies inside the value, is 1..KEEL_AUTH_TOKEN_MAX token68 characters; the
 * verification reason (the only text the auth layer logs; its problem bodies are fixed
 * strings) never contains the token.  Inputs that parse as a JSON object are also signed as
 * claims and sent as "Bearer <token>": that must parse back to exactly the token. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/auth.h>
#include <keel/jwt.h>
#include <keel/keel.h>

#define SECRET "keel-fuzz-auth-secret-0123456789abcdef"

static keel_jwt_keyset *keyset(void)
{
    static keel_jwt_keyset *ks;
    if (ks == NULL) {
        if (keel_jwt_keyset_create(&ks) != KEEL_OK ||
            keel_jwt_keyset_add_hmac(ks, "k1", SECRET, strlen(SECRET),
                                     KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY) != KEEL_OK)
            abort();
    }
    return ks;
}

static int is_t68(unsigned char c)
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "abcdefghijklmnopqrstuvwxyz0123456789-._~+/";
    return c != '\0' && memchr(set, c, sizeof(set) - 1) != NULL;
}

static int lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* The grammar, restated: "bearer" (any case), then SP..., token68, then optional SP/HTAB. */
static keel_err reference(const char *s, size_t n, size_t *tok_off, size_t *tok_len)
{
    static const char b[] = "bearer";
    if (n < 6)
        return KEEL_ENOTFOUND;
    for (size_t i = 0; i < 6; i++)
        if (lower((unsigned char)s[i]) != b[i])
            return KEEL_ENOTFOUND;
    if (n == 6 || s[6] == '\t')
        return KEEL_EPARSE;
    if (s[6] != ' ')
        return KEEL_ENOTFOUND;
    size_t i = 6;
    while (i < n && s[i] == ' ')
        i++;
    if (i == n || !is_t68((unsigned char)s[i]))
        return KEEL_EPARSE;
    size_t start = i;
    while (i < n && is_t68((unsigned char)s[i]))
        i++;
    while (i < n && s[i] == '=')
        i++;
    if (i - start > KEEL_AUTH_TOKEN_MAX)
        return KEEL_ETOOBIG;
    size_t end = i;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i != n)
        return KEEL_EPARSE;
    *tok_off = start;
    *tok_len = end - start;
    return KEEL_OK;
}

static void check_value(const char *v, size_t n)
{
    keel_str tok;
    keel_err e = keel_auth_parse_bearer(v, &tok);
    size_t ro = 0, rl = 0;
    keel_err want = n == 0 ? KEEL_ENOTFOUND : reference(v, n, &ro, &rl);
    if (e != want)
        abort();
    if (e != KEEL_OK) {
        if (tok.ptr != NULL || tok.len != 0)
            abort();
        return;
    }
    if (tok.ptr != v + ro || tok.len != rl || rl == 0 || rl > KEEL_AUTH_TOKEN_MAX)
        abort();

    keel_jwt_policy p;
    keel_jwt_policy_default(&p);
    p.iss = "https://auth.keel.test";
    p.aud = "keel-api";
    p.type = "access";
    json_t *claims = NULL;
    keel_diag d;
    keel_err ve = keel_jwt_verify(keyset(), &p, tok.ptr, tok.len, 1700000000u, &claims, &d);
    if (ve == KEEL_OK) {
        json_decref(claims);
        return;
    }
    if (claims != NULL || memchr(d.msg, '\0', sizeof(d.msg)) == NULL)
        abort();
    if (tok.len >= 8) {
        char *t = keel_strndup(tok.ptr, tok.len);
        if (t == NULL)
            abort();
        if (strstr(d.msg, t) != NULL)
            abort();
        keel_free(t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, '\0', size);
    size_t n = nul ? (size_t)((const uint8_t *)nul - data) : size;
    char *v = keel_strndup((const char *)data, n);
    if (v == NULL)
        abort();
    check_value(v, n);
    keel_free(v);

    json_t *obj = json_loadb((const char *)data, size, 0, NULL);
    if (json_is_object(obj)) {
        char *tok = NULL;
        if (keel_jwt_sign(keyset(), obj, &tok) == KEEL_OK) {
            size_t tl = strlen(tok);
            char *h = keel_malloc(tl + 8);
            if (h == NULL)
                abort();
            memcpy(h, "Bearer ", 7);
            memcpy(h + 7, tok, tl + 1);
            keel_str got;
            keel_err e = keel_auth_parse_bearer(h, &got);
            if (tl <= KEEL_AUTH_TOKEN_MAX
                    ? (e != KEEL_OK || got.len != tl || memcmp(got.ptr, tok, tl) != 0)
                    : e != KEEL_ETOOBIG)
                abort();
            check_value(h, tl + 7);
            keel_free(h);
            keel_free(tok);
        }
    }
    json_decref(obj);
    return 0;
}
