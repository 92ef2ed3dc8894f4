/* Tests for src/http/auth.c: a real server on an ephemeral port with the auth layer in
 * the standard chain; HS256 tokens signed by keel_jwt_sign(); a session store double whose
 * verdicts are cached on a manual clock; every failure class of RFC 6750 / RFC 8725. */
#define _GNU_SOURCE 1
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/auth.h>
#include <keel/jwt.h>

#define SECRET "keel-test-auth-secret-0123456789abcdef"
#define OTHER_SECRET "another-secret-that-is-long-enough-0123"
#define ISS "https://auth.keel.test"
#define AUD "keel-clients"
#define CHAL_MISSING "Bearer realm=\"keel\""
#define CHAL_INVALID                                                                               \
    "Bearer realm=\"keel\", error=\"invalid_token\", error_description=\"The access token is "    \
    "invalid or expired.\""

/* ----------------------------------------------------------- session store -- */

static atomic_int g_checks;       /* session_check calls */
static atomic_int g_revoked;      /* 1: sid "s-revoked" and "s-1" are revoked */
static atomic_int g_store_down;   /* 1: the store errors */

static keel_err session_check(const keel_principal *p, void *ud)
{
    (void)ud;
    atomic_fetch_add(&g_checks, 1);
    if (atomic_load(&g_store_down))
        return KEEL_EIO;
    if (p->sid == NULL)
        return KEEL_OK;
    if (strcmp(p->sid, "s-revoked") == 0 || (atomic_load(&g_revoked) && strcmp(p->sid, "s-1") == 0))
        return KEEL_EDENIED;
    return KEEL_OK;
}

/* ---------------------------------------------------------------- handlers -- */

static json_t *strv_json(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* Echo the principal and the log context as seen by the handler. */
static keel_err me_handler(keel_ctx *cx, void *ud)
{
    (void)ud;
    const keel_principal *p = keel_ctx_principal(cx);
    if (p == NULL)
        return keel_resp_success(cx, 200, json_pack("{s:b}", "anonymous", 1), NULL);
    const char *uid = keel_log_context_user_id();
    char thread[32] = "";
    pthread_getname_np(pthread_self(), thread, sizeof(thread));
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:o, s:o, s:s?, s:b, s:s?, s:s}", "sub", p->sub,
                          "sid", p->sid, "jti", p->jti, "roles", strv_json(p->roles, p->nroles),
                          "scopes", strv_json(p->scopes, p->nscopes), "user_id", uid,
                          "has_claims", p->claims != NULL, "claim_iss",
                          p->claims ? json_string_value(json_object_get(p->claims, "iss")) : NULL,
                          "thread", thread);
    return keel_resp_success(cx, 200, o, NULL);
}

static keel_err admin_handler(keel_ctx *cx, void *ud)
{
    (void)ud;
    static const char *const roles[] = {"admin", "owner", NULL};
    if (keel_auth_require_roles(cx, roles) != KEEL_OK)
        return KEEL_OK;
    return keel_resp_success(cx, 200, json_pack("{s:b}", "admin", 1), NULL);
}

static keel_err orders_handler(keel_ctx *cx, void *ud)
{
    (void)ud;
    static const char *const scopes[] = {"orders:read", "orders:write", NULL};
    if (keel_auth_require_scopes(cx, scopes) != KEEL_OK)
        return KEEL_OK;
    return keel_resp_success(cx, 200, json_pack("{s:b}", "orders", 1), NULL);
}

/* ----------------------------------------------------------------- fixture -- */

typedef struct fixture {
    keel_manual_clock mc;
    keel_jwt_keyset *ks;
    keel_jwt_keyset *other;
    keel_jwt_policy pol;
    keel_router *r;
    keel_server *s;
    keel_layer *auth; /* borrowed from the chain */
    keel_test_server ts;
} fixture;

/* When set, start() appends a per-user rate-limit layer after auth (innermost). */
static keel_limiter *g_user_limiter;
/* When set, start() builds the auth layer with routed_only. */
static int g_routed_only;
/* When set, start() gives the server an inline check built on keel_auth_ready_inline(). */
static int g_inline;

static int inline_check(keel_ctx *cx, void *ud)
{
    char sub[64];
    return keel_auth_ready_inline(ud, cx, sub, sizeof(sub));
}

static void start(fixture *f, int with_session)
{
    keel_diag d = {0};
    memset(f, 0, sizeof(*f));
    atomic_store(&g_checks, 0);
    atomic_store(&g_revoked, 0);
    atomic_store(&g_store_down, 0);
    keel_manual_clock_init(&f->mc, 1000);
    ASSERT_OK(keel_jwt_keyset_create(&f->ks));
    ASSERT_OK(keel_jwt_keyset_add_hmac(f->ks, "k1", SECRET, strlen(SECRET),
                                       KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY));
    ASSERT_OK(keel_jwt_keyset_create(&f->other));
    ASSERT_OK(keel_jwt_keyset_add_hmac(f->other, "k1", OTHER_SECRET, strlen(OTHER_SECRET),
                                       KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY));
    keel_jwt_policy_default(&f->pol);
    f->pol.alg = KEEL_JWT_HS256;
    f->pol.iss = ISS;
    f->pol.aud = AUD;
    f->pol.type = "access";

    ASSERT_OK(keel_router_create(&f->r));
    ASSERT_OK(keel_router_add(f->r, KEEL_METHOD_GET, "/api/me", me_handler, NULL, 0, &d));
    ASSERT_OK(keel_router_add(f->r, KEEL_METHOD_GET, "/api/admin", admin_handler, NULL, 0, &d));
    ASSERT_OK(keel_router_add(f->r, KEEL_METHOD_GET, "/api/orders", orders_handler, NULL, 0, &d));
    ASSERT_OK(keel_router_add(f->r, KEEL_METHOD_GET, "/public", me_handler, NULL, 0, &d));
    ASSERT_OK(keel_router_add(f->r, KEEL_METHOD_GET, "/public/x", me_handler, NULL, 0, &d));
    ASSERT_OK(keel_router_add(f->r, KEEL_METHOD_GET, "/open/admin", admin_handler, NULL, 0, &d));
    ASSERT_OK(keel_router_add(f->r, KEEL_METHOD_GET, "/open/orders", orders_handler, NULL, 0,
                              &d));

    static const char *const exclude[] = {"/health/*", "/public", "/open/*", NULL};
    keel_auth_config ac;
    keel_auth_config_default(&ac);
    ac.keys = f->ks;
    ac.policy = &f->pol;
    ac.exclude = exclude;
    ac.clock = &f->mc.clock;
    ac.routed_only = g_routed_only;
    if (with_session) {
        ac.session_check = session_check;
        ac.session_cache_ms = 5000;
    }
    ASSERT_OK(keel_mw_auth(&ac, &f->auth, &d));
    assert_string_equal("auth", f->auth->name);

    static const char *const any[] = {"*", NULL};
    keel_cors_config cors;
    keel_cors_config_default(&cors);
    cors.origins = any;
    cors.methods = any;
    cors.headers = any;
    keel_http_chain_config hc;
    keel_http_chain_config_default(&hc);
    hc.cors = &cors;
    hc.access_log = 0;
    hc.auth = f->auth;
    keel_chain *chain;
    ASSERT_OK(keel_http_chain_build(&hc, &chain));
    if (g_user_limiter != NULL) {
        keel_mw_rate_limit_config rc;
        keel_mw_rate_limit_config_default(&rc);
        rc.limiter = g_user_limiter;
        rc.key_user = 1;
        keel_layer *rl;
        ASSERT_OK(keel_mw_rate_limit(&rc, &rl));
        ASSERT_OK(keel_chain_add_take(chain, rl));
    }

    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.port = 0;
    sc.workers = 2;
    if (g_inline) {
        sc.inline_check = inline_check;
        sc.inline_ud = f->auth;
    }
    ASSERT_OK(keel_server_create(&f->s, &sc, f->r, chain, NULL, &d));
    ASSERT_OK(keel_server_start(f->s, &d));
    keel_server_set_ready(f->s, 1);
    f->ts.port = keel_server_port(f->s);
    snprintf(f->ts.base_url, sizeof(f->ts.base_url), "http://127.0.0.1:%u", f->ts.port);
}

static void stop(fixture *f)
{
    keel_server_destroy(f->s);
    keel_router_destroy(f->r);
    keel_jwt_keyset_destroy(f->ks);
    keel_jwt_keyset_destroy(f->other);
}

static uint64_t now_s(void)
{
    return (uint64_t)(keel_time_wall_ms() / 1000);
}

/* Sign claims (stolen) with ks; caller frees with keel_free(). */
static char *sign(const keel_jwt_keyset *ks, json_t *claims)
{
    assert_non_null(claims);
    char *tok = NULL;
    ASSERT_OK(keel_jwt_sign(ks, claims, &tok));
    json_decref(claims);
    return tok;
}

/* A valid access token for sub "u-42", sid, with extra members merged in (borrowed). */
static char *access_token(const fixture *f, const char *sid, const json_t *extra)
{
    json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:[ss], s:[s]}", "sub", "u-42", "iss",
                          ISS, "aud", AUD, "type", "access", "iat", (json_int_t)now_s(), "exp",
                          (json_int_t)(now_s() + 600), "roles", "user", "editor", "scopes",
                          "orders:read");
    if (sid != NULL)
        json_object_set_new(c, "sid", json_string(sid));
    if (extra != NULL)
        json_object_update(c, (json_t *)(uintptr_t)extra);
    return sign(f->ks, c);
}

static long get(fixture *f, const char *path, const char *authz, keel_test_resp *out)
{
    char *h = NULL;
    const char *hdrs[2] = {NULL, NULL};
    if (authz != NULL) {
        size_t n = strlen(authz) + 32;
        h = malloc(n);
        assert_non_null(h);
        snprintf(h, n, "Authorization: %s", authz);
        hdrs[0] = h;
    }
    assert_int_equal(0, keel_test_http(&f->ts, "GET", path, hdrs, NULL, 0, out));
    free(h);
    return out->status;
}

static char *bearer(const char *tok)
{
    size_t n = strlen(tok) + 8;
    char *b = malloc(n);
    assert_non_null(b);
    snprintf(b, n, "Bearer %s", tok);
    return b;
}

static void expect_header(const keel_test_resp *r, const char *name, const char *value)
{
    char v[1024];
    assert_true(keel_test_resp_header(r, name, v, sizeof(v)));
    assert_string_equal(value, v);
}

static json_t *body_json(const keel_test_resp *r)
{
    json_error_t err;
    json_t *doc = json_loads(r->body, 0, &err);
    assert_non_null(doc);
    return doc;
}

/* A 401/403/503 problem with the given detail and challenge (NULL: no challenge). */
static void expect_problem(const keel_test_resp *r, long status, const char *detail,
                           const char *challenge)
{
    assert_int_equal(status, r->status);
    expect_header(r, "Content-Type", "application/problem+json");
    json_t *doc = body_json(r);
    assert_int_equal(status, json_integer_value(json_object_get(doc, "status")));
    assert_string_equal(detail, json_string_value(json_object_get(doc, "detail")));
    json_decref(doc);
    if (challenge != NULL)
        expect_header(r, "WWW-Authenticate", challenge);
    else
        assert_false(keel_test_resp_header(r, "WWW-Authenticate", NULL, 0));
}

/* 401 invalid_token, and the token is nowhere in the response. */
static void expect_invalid(fixture *f, const char *authz, const char *token)
{
    keel_test_resp r;
    get(f, "/api/me", authz, &r);
    expect_problem(&r, 401, "The access token is invalid or expired.", CHAL_INVALID);
    if (token != NULL && strlen(token) >= 8) {
        assert_null(strstr(r.body, token));
        assert_null(strstr(r.headers, token));
    }
    keel_test_resp_free(&r);
}

static void expect_invalid_token(fixture *f, const char *tok)
{
    char *b = bearer(tok);
    expect_invalid(f, b, tok);
    free(b);
}

/* ------------------------------------------------------------------- tests -- */

static void test_valid_token(void **state)
{
    (void)state;
    fixture f;
    start(&f, 1);
    json_t *extra = json_pack("{s:s}", "jti", "j-1");
    char *tok = access_token(&f, "s-1", extra);
    json_decref(extra);
    char *b = bearer(tok);
    keel_test_resp r;
    assert_int_equal(200, get(&f, "/api/me", b, &r));
    assert_false(keel_test_resp_header(&r, "WWW-Authenticate", NULL, 0));
    json_t *doc = body_json(&r);
    json_t *data = json_object_get(doc, "data");
    assert_string_equal("u-42", json_string_value(json_object_get(data, "sub")));
    assert_string_equal("s-1", json_string_value(json_object_get(data, "sid")));
    assert_string_equal("j-1", json_string_value(json_object_get(data, "jti")));
    assert_string_equal("u-42", json_string_value(json_object_get(data, "user_id")));
    assert_true(json_is_true(json_object_get(data, "has_claims")));
    assert_string_equal(ISS, json_string_value(json_object_get(data, "claim_iss")));
    json_t *want_roles = json_pack("[ss]", "user", "editor");
    json_t *want_scopes = json_pack("[s]", "orders:read");
    assert_true(json_equal(want_roles, json_object_get(data, "roles")));
    assert_true(json_equal(want_scopes, json_object_get(data, "scopes")));
    json_decref(want_roles);
    json_decref(want_scopes);
    json_decref(doc);
    keel_test_resp_free(&r);
    assert_int_equal(1, atomic_load(&g_checks));

    /* scheme case-insensitive, several spaces, trailing whitespace */
    size_t n = strlen(tok) + 16;
    char *alt = malloc(n);
    snprintf(alt, n, "bEaReR   %s  ", tok);
    assert_int_equal(200, get(&f, "/api/me", alt, &r));
    keel_test_resp_free(&r);
    free(alt);
    /* the valid verdict for s-1 was cached: still one session check */
    assert_int_equal(1, atomic_load(&g_checks));
    free(b);
    keel_free(tok);
    stop(&f);
}

static void test_missing_and_wrong_scheme(void **state)
{
    (void)state;
    fixture f;
    start(&f, 0);
    keel_test_resp r;
    get(&f, "/api/me", NULL, &r);
    expect_problem(&r, 401, "Authentication is required.", CHAL_MISSING);
    keel_test_resp_free(&r);
    get(&f, "/api/me", "Basic dXNlcjpwYXNzd29yZA==", &r);
    expect_problem(&r, 401, "Authentication is required.", CHAL_MISSING);
    keel_test_resp_free(&r);
    get(&f, "/api/me", "Bearerx abc", &r);
    expect_problem(&r, 401, "Authentication is required.", CHAL_MISSING);
    keel_test_resp_free(&r);
    /* unrouted paths are behind auth too (no route probing without a token) */
    get(&f, "/api/nowhere", NULL, &r);
    expect_problem(&r, 401, "Authentication is required.", CHAL_MISSING);
    keel_test_resp_free(&r);
    stop(&f);
}

static void test_malformed(void **state)
{
    (void)state;
    fixture f;
    start(&f, 0);
    expect_invalid(&f, "Bearer", NULL);
    expect_invalid(&f, "Bearer ", NULL);
    expect_invalid(&f, "Bearer abc.def.ghi jkl", "abc.def.ghi");
    expect_invalid(&f, "Bearer not-a-jwt-at-all", "not-a-jwt-at-all");
    expect_invalid(&f, "Bearer a=b.c.d", NULL);
    expect_invalid(&f, "Bearer x.y.z, realm=\"x\"", NULL);
    expect_invalid(&f, "Bearer eyJhbGciOiJIUzI1NiJ9.e30.%%%%", NULL);
    stop(&f);
}

static void test_claim_failures(void **state)
{
    (void)state;
    fixture f;
    start(&f, 0);
    char *tok;

    /* expired (beyond the 30 s leeway) */
    tok = sign(f.ks, json_pack("{s:s, s:s, s:s, s:s, s:I}", "sub", "u-42", "iss", ISS, "aud", AUD,
                               "type", "access", "exp", (json_int_t)(now_s() - 3600)));
    expect_invalid_token(&f, tok);
    keel_free(tok);
    /* a refresh token presented as an access token */
    tok = sign(f.ks, json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "sub", "u-42", "iss", ISS, "aud",
                               AUD, "type", "refresh", "exp", (json_int_t)(now_s() + 600), "jti",
                               "r-1"));
    expect_invalid_token(&f, tok);
    keel_free(tok);
    /* no type at all */
    tok = sign(f.ks, json_pack("{s:s, s:s, s:s, s:I}", "sub", "u-42", "iss", ISS, "aud", AUD,
                               "exp", (json_int_t)(now_s() + 600)));
    expect_invalid_token(&f, tok);
    keel_free(tok);
    /* wrong audience, wrong issuer */
    tok = sign(f.ks, json_pack("{s:s, s:s, s:s, s:s, s:I}", "sub", "u-42", "iss", ISS, "aud",
                               "someone-else", "type", "access", "exp",
                               (json_int_t)(now_s() + 600)));
    expect_invalid_token(&f, tok);
    keel_free(tok);
    tok = sign(f.ks, json_pack("{s:s, s:s, s:s, s:s, s:I}", "sub", "u-42", "iss",
                               "https://evil.test", "aud", AUD, "type", "access", "exp",
                               (json_int_t)(now_s() + 600)));
    expect_invalid_token(&f, tok);
    keel_free(tok);
    /* no sub, empty sub, non-string sub */
    tok = sign(f.ks, json_pack("{s:s, s:s, s:s, s:I}", "iss", ISS, "aud", AUD, "type", "access",
                               "exp", (json_int_t)(now_s() + 600)));
    expect_invalid_token(&f, tok);
    keel_free(tok);
    json_t *x = json_pack("{s:s}", "sub", "");
    tok = access_token(&f, NULL, x);
    json_decref(x);
    expect_invalid_token(&f, tok);
    keel_free(tok);
    x = json_pack("{s:i}", "sub", 42);
    tok = access_token(&f, NULL, x);
    json_decref(x);
    expect_invalid_token(&f, tok);
    keel_free(tok);
    /* roles not an array of strings */
    x = json_pack("{s:[si]}", "roles", "user", 7);
    tok = access_token(&f, NULL, x);
    json_decref(x);
    expect_invalid_token(&f, tok);
    keel_free(tok);
    x = json_pack("{s:s}", "roles", "admin");
    tok = access_token(&f, NULL, x);
    json_decref(x);
    expect_invalid_token(&f, tok);
    keel_free(tok);
    /* more roles than KEEL_AUTH_MAX_ROLES */
    json_t *many = json_array();
    for (unsigned i = 0; i <= KEEL_AUTH_MAX_ROLES; i++) {
        char name[16];
        snprintf(name, sizeof(name), "r%u", i);
        json_array_append_new(many, json_string(name));
    }
    x = json_pack("{s:o}", "roles", many);
    tok = access_token(&f, NULL, x);
    json_decref(x);
    expect_invalid_token(&f, tok);
    keel_free(tok);
    stop(&f);
}

static void test_signature_failures(void **state)
{
    (void)state;
    fixture f;
    start(&f, 0);
    /* signed with another secret under the same kid */
    char *tok = sign(f.other, json_pack("{s:s, s:s, s:s, s:s, s:I}", "sub", "u-42", "iss", ISS,
                                        "aud", AUD, "type", "access", "exp",
                                        (json_int_t)(now_s() + 600)));
    expect_invalid_token(&f, tok);
    keel_free(tok);

    /* tampered payload: a valid token with the roles rewritten, signature kept */
    tok = access_token(&f, NULL, NULL);
    char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
    const char *evil = "{\"sub\":\"u-42\",\"iss\":\"" ISS "\",\"aud\":\"" AUD
                       "\",\"type\":\"access\",\"exp\":9999999999,\"roles\":[\"admin\"]}";
    char payload[512];
    keel__b64_encode(1, (const unsigned char *)evil, strlen(evil), payload);
    char forged[2048];
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(dot1 - tok), tok, payload, dot2);
    expect_invalid_token(&f, forged);

    /* alg "none" with an empty signature, and with the original signature */
    const char *none_hdr = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    char hdr[128];
    keel__b64_encode(1, (const unsigned char *)none_hdr, strlen(none_hdr), hdr);
    snprintf(forged, sizeof(forged), "%s.%s.", hdr, payload);
    expect_invalid_token(&f, forged);
    snprintf(forged, sizeof(forged), "%s.%s%s", hdr, payload, dot2);
    expect_invalid_token(&f, forged);
    /* alg switched to RS256 on an HS256 policy */
    const char *rs_hdr = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    keel__b64_encode(1, (const unsigned char *)rs_hdr, strlen(rs_hdr), hdr);
    snprintf(forged, sizeof(forged), "%s%s", hdr, dot1);
    expect_invalid_token(&f, forged);
    keel_free(tok);
    stop(&f);
}

static void test_size_cap(void **state)
{
    (void)state;
    fixture f;
    start(&f, 0);
    size_t n = KEEL_AUTH_TOKEN_MAX + 1;
    char *big = malloc(n + 8);
    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'a', n);
    big[7 + n] = '\0';
    expect_invalid(&f, big, NULL);
    free(big);
    stop(&f);
}

static void test_session_revocation_cached(void **state)
{
    (void)state;
    fixture f;
    start(&f, 1);
    keel_test_resp r;

    /* a revoked session: 401, and the negative verdict is cached */
    char *tok = access_token(&f, "s-revoked", NULL);
    expect_invalid_token(&f, tok);
    assert_int_equal(1, atomic_load(&g_checks));
    expect_invalid_token(&f, tok);
    assert_int_equal(1, atomic_load(&g_checks));
    keel_free(tok);

    /* s-1 valid, cached; revoked in the store: still accepted until the entry expires */
    tok = access_token(&f, "s-1", NULL);
    char *b = bearer(tok);
    assert_int_equal(200, get(&f, "/api/me", b, &r));
    keel_test_resp_free(&r);
    assert_int_equal(2, atomic_load(&g_checks));
    atomic_store(&g_revoked, 1);
    keel_manual_clock_advance(&f.mc, 4999);
    assert_int_equal(200, get(&f, "/api/me", b, &r));
    keel_test_resp_free(&r);
    assert_int_equal(2, atomic_load(&g_checks));
    /* at session_cache_ms the verdict is rechecked: now revoked, and that is cached */
    keel_manual_clock_advance(&f.mc, 1);
    expect_invalid(&f, b, tok);
    assert_int_equal(3, atomic_load(&g_checks));
    expect_invalid(&f, b, tok);
    assert_int_equal(3, atomic_load(&g_checks));
    /* un-revoked in the store; the cached negative verdict holds until it expires... */
    atomic_store(&g_revoked, 0);
    keel_manual_clock_advance(&f.mc, 4999);
    expect_invalid(&f, b, tok);
    assert_int_equal(3, atomic_load(&g_checks));
    /* ...or until it is forgotten */
    keel_auth_forget_session(f.auth, "s-1");
    assert_int_equal(200, get(&f, "/api/me", b, &r));
    keel_test_resp_free(&r);
    assert_int_equal(4, atomic_load(&g_checks));
    /* forget on a layer that is not auth, or a NULL sid: no effect, no crash */
    keel_auth_forget_session(NULL, "s-1");
    keel_auth_forget_session(f.auth, NULL);
    keel_layer *other = NULL;
    ASSERT_OK(keel_mw_request_id(&other));
    keel_auth_forget_session(other, "s-1");
    other->dispose(other);
    assert_int_equal(200, get(&f, "/api/me", b, &r));
    keel_test_resp_free(&r);
    assert_int_equal(4, atomic_load(&g_checks));

    /* revocation seen after forget (logout) */
    atomic_store(&g_revoked, 1);
    keel_auth_forget_session(f.auth, "s-1");
    expect_invalid(&f, b, tok);
    assert_int_equal(5, atomic_load(&g_checks));
    free(b);
    keel_free(tok);
    stop(&f);
}

static void test_session_store_error(void **state)
{
    (void)state;
    fixture f;
    start(&f, 1);
    atomic_store(&g_store_down, 1);
    char *tok = access_token(&f, "s-2", NULL);
    char *b = bearer(tok);
    keel_test_resp r;
    get(&f, "/api/me", b, &r);
    expect_problem(&r, 503, "The session store is unavailable; try again later.", NULL);
    keel_test_resp_free(&r);
    /* never cached: the store is asked again, and its recovery is seen at once */
    atomic_store(&g_store_down, 0);
    assert_int_equal(200, get(&f, "/api/me", b, &r));
    keel_test_resp_free(&r);
    assert_int_equal(2, atomic_load(&g_checks));
    free(b);
    keel_free(tok);
    stop(&f);
}

static void test_excluded_paths(void **state)
{
    (void)state;
    fixture f;
    start(&f, 1);
    keel_test_resp r;
    assert_int_equal(200, get(&f, "/health/live", NULL, &r));
    keel_test_resp_free(&r);
    assert_int_equal(200, get(&f, "/health/ready", "Bearer garbage", &r));
    keel_test_resp_free(&r);
    /* exact entry: the path itself, untouched even with a token (no principal bound) */
    char *tok = access_token(&f, "s-3", NULL);
    char *b = bearer(tok);
    assert_int_equal(200, get(&f, "/public", b, &r));
    json_t *doc = body_json(&r);
    assert_true(json_is_true(json_object_get(json_object_get(doc, "data"), "anonymous")));
    json_decref(doc);
    keel_test_resp_free(&r);
    assert_int_equal(0, atomic_load(&g_checks));
    /* ...but not below it */
    get(&f, "/public/x", NULL, &r);
    expect_problem(&r, 401, "Authentication is required.", CHAL_MISSING);
    keel_test_resp_free(&r);
    /* "/health/*" does not cover "/health" itself */
    get(&f, "/health", NULL, &r);
    assert_int_equal(401, r.status);
    keel_test_resp_free(&r);
    /* a CORS preflight never needs credentials */
    static const char *const pre[] = {"Origin: https://app.example",
                                      "Access-Control-Request-Method: GET", NULL};
    assert_int_equal(0, keel_test_http(&f.ts, "OPTIONS", "/api/me", pre, NULL, 0, &r));
    assert_int_equal(204, r.status);
    keel_test_resp_free(&r);
    free(b);
    keel_free(tok);
    stop(&f);
}

static void test_roles_and_scopes(void **state)
{
    (void)state;
    fixture f;
    start(&f, 0);
    keel_test_resp r;

    /* no principal (excluded path): 401 with a bare challenge */
    get(&f, "/open/admin", NULL, &r);
    expect_problem(&r, 401, "Authentication is required.", CHAL_MISSING);
    keel_test_resp_free(&r);
    get(&f, "/open/orders", NULL, &r);
    expect_problem(&r, 401, "Authentication is required.", CHAL_MISSING);
    keel_test_resp_free(&r);

    /* roles user+editor: 403 on admin, no challenge */
    char *tok = access_token(&f, NULL, NULL);
    char *b = bearer(tok);
    get(&f, "/api/admin", b, &r);
    expect_problem(&r, 403, "The caller lacks a required role.", NULL);
    keel_test_resp_free(&r);
    /* scopes orders:read only: 403 insufficient_scope naming what is required */
    get(&f, "/api/orders", b, &r);
    expect_problem(&r, 403, "The access token lacks a required scope.",
                   "Bearer realm=\"keel\", error=\"insufficient_scope\", error_description=\"The "
                   "access token lacks a required scope.\", scope=\"orders:read orders:write\"");
    keel_test_resp_free(&r);
    free(b);
    keel_free(tok);

    /* "owner" is one of the roles accepted; scopes from the OAuth "scope" string */
    json_t *x = json_pack("{s:[s], s:s}", "roles", "owner", "scope", "orders:write  orders:read");
    tok = access_token(&f, NULL, x);
    json_decref(x);
    b = bearer(tok);
    assert_int_equal(200, get(&f, "/api/admin", b, &r));
    keel_test_resp_free(&r);
    assert_int_equal(200, get(&f, "/api/orders", b, &r));
    keel_test_resp_free(&r);
    assert_int_equal(200, get(&f, "/api/me", b, &r));
    json_t *doc = body_json(&r);
    json_t *want = json_pack("[sss]", "orders:read", "orders:write", "orders:read");
    assert_true(json_equal(want, json_object_get(json_object_get(doc, "data"), "scopes")));
    json_decref(want);
    json_decref(doc);
    keel_test_resp_free(&r);
    free(b);
    keel_free(tok);
    stop(&f);
}

static void test_parse_bearer(void **state)
{
    (void)state;
    keel_str t;
    ASSERT_OK(keel_auth_parse_bearer("Bearer abc", &t));
    assert_int_equal(3, t.len);
    assert_memory_equal("abc", t.ptr, 3);
    ASSERT_OK(keel_auth_parse_bearer("BEARER  a.b-c_d~e+f/g==  \t", &t));
    assert_int_equal(15, t.len);
    assert_memory_equal("a.b-c_d~e+f/g==", t.ptr, 15);
    assert_int_equal(KEEL_ENOTFOUND, keel_auth_parse_bearer(NULL, &t));
    assert_null(t.ptr);
    assert_int_equal(KEEL_ENOTFOUND, keel_auth_parse_bearer("", &t));
    assert_int_equal(KEEL_ENOTFOUND, keel_auth_parse_bearer("Basic abc", &t));
    assert_int_equal(KEEL_ENOTFOUND, keel_auth_parse_bearer("Bearers abc", &t));
    assert_int_equal(KEEL_ENOTFOUND, keel_auth_parse_bearer(" Bearer abc", &t));
    assert_int_equal(KEEL_EPARSE, keel_auth_parse_bearer("Bearer", &t));
    assert_int_equal(KEEL_EPARSE, keel_auth_parse_bearer("Bearer ", &t));
    assert_int_equal(KEEL_EPARSE, keel_auth_parse_bearer("Bearer\tabc", &t));
    assert_int_equal(KEEL_EPARSE, keel_auth_parse_bearer("Bearer a b", &t));
    assert_int_equal(KEEL_EPARSE, keel_auth_parse_bearer("Bearer a=b", &t));
    assert_int_equal(KEEL_EPARSE, keel_auth_parse_bearer("Bearer =", &t));
    assert_int_equal(KEEL_EPARSE, keel_auth_parse_bearer("Bearer a,b", &t));
    assert_int_equal(KEEL_EPARSE, keel_auth_parse_bearer("Bearer a\x01", &t));
    assert_int_equal(KEEL_EPARSE, keel_auth_parse_bearer("Bearer a\xc3\xa9", &t));
    assert_int_equal(KEEL_EINVAL, keel_auth_parse_bearer("Bearer a", NULL));

    /* the cap: KEEL_AUTH_TOKEN_MAX characters pass, one more does not */
    size_t n = KEEL_AUTH_TOKEN_MAX;
    char *v = malloc(n + 16);
    memcpy(v, "Bearer ", 7);
    memset(v + 7, 'x', n);
    v[7 + n] = '\0';
    ASSERT_OK(keel_auth_parse_bearer(v, &t));
    assert_int_equal(n, t.len);
    v[7 + n - 1] = '=';
    ASSERT_OK(keel_auth_parse_bearer(v, &t));
    v[7 + n] = '='; /* padding counts too */
    v[8 + n] = '\0';
    assert_int_equal(KEEL_ETOOBIG, keel_auth_parse_bearer(v, &t));
    v[7 + n - 1] = 'x';
    v[7 + n] = 'x';
    assert_int_equal(KEEL_ETOOBIG, keel_auth_parse_bearer(v, &t));
    free(v);
}

static void test_config(void **state)
{
    (void)state;
    keel_jwt_keyset *ks;
    ASSERT_OK(keel_jwt_keyset_create(&ks));
    keel_jwt_policy pol;
    keel_jwt_policy_default(&pol);
    keel_auth_config ac;
    keel_auth_config_default(&ac);
    assert_int_equal(sizeof(ac), ac.size);
    assert_int_equal(5000, ac.session_cache_ms);
    assert_string_equal("keel", ac.realm);
    keel_layer *l = (keel_layer *)1;
    keel_diag d;
    assert_int_equal(KEEL_EINVAL, keel_mw_auth(&ac, &l, &d)); /* no keys, no policy */
    assert_null(l);
    ac.keys = ks;
    ac.policy = &pol;
    assert_int_equal(KEEL_EINVAL, keel_mw_auth(NULL, &l, &d));
    assert_int_equal(KEEL_EINVAL, keel_mw_auth(&ac, NULL, &d));
    ac.realm = "bad\"realm";
    assert_int_equal(KEEL_EINVAL, keel_mw_auth(&ac, &l, &d));
    ac.realm = "";
    assert_int_equal(KEEL_EINVAL, keel_mw_auth(&ac, &l, &d));
    ac.realm = "shop";
    static const char *const bad1[] = {"/a/*/b", NULL};
    static const char *const bad2[] = {"", NULL};
    ac.exclude = bad1;
    assert_int_equal(KEEL_EINVAL, keel_mw_auth(&ac, &l, &d));
    ac.exclude = bad2;
    assert_int_equal(KEEL_EINVAL, keel_mw_auth(&ac, &l, &d));
    ac.exclude = NULL;
    ac.size = sizeof(ac) - 1;
    assert_int_equal(KEEL_EINVAL, keel_mw_auth(&ac, &l, &d));
    ac.size = sizeof(ac);
    ac.session_check = session_check;
    ASSERT_OK(keel_mw_auth(&ac, &l, &d));
    l->dispose(l);
    keel_jwt_keyset_destroy(ks);
}

/* A realm of one's own, and a policy without "type" that still means "access". */
static void test_realm_and_default_type(void **state)
{
    (void)state;
    keel_diag d = {0};
    keel_jwt_keyset *ks;
    ASSERT_OK(keel_jwt_keyset_create(&ks));
    ASSERT_OK(keel_jwt_keyset_add_hmac(ks, NULL, SECRET, strlen(SECRET),
                                       KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY));
    keel_jwt_policy pol;
    keel_jwt_policy_default(&pol);
    keel_auth_config ac;
    keel_auth_config_default(&ac);
    ac.keys = ks;
    ac.policy = &pol;
    ac.realm = "shop api";
    keel_layer *auth;
    ASSERT_OK(keel_mw_auth(&ac, &auth, &d));
    keel_router *r;
    ASSERT_OK(keel_router_create(&r));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/api/me", me_handler, NULL, 0, &d));
    keel_http_chain_config hc;
    keel_http_chain_config_default(&hc);
    hc.access_log = 0;
    hc.auth = auth;
    keel_chain *chain;
    ASSERT_OK(keel_http_chain_build(&hc, &chain));
    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.port = 0;
    sc.workers = 1;
    fixture f;
    memset(&f, 0, sizeof(f));
    ASSERT_OK(keel_server_create(&f.s, &sc, r, chain, NULL, &d));
    ASSERT_OK(keel_server_start(f.s, &d));
    f.ts.port = keel_server_port(f.s);
    snprintf(f.ts.base_url, sizeof(f.ts.base_url), "http://127.0.0.1:%u", f.ts.port);

    keel_test_resp resp;
    get(&f, "/api/me", NULL, &resp);
    expect_problem(&resp, 401, "Authentication is required.", "Bearer realm=\"shop api\"");
    keel_test_resp_free(&resp);
    char *tok = sign(ks, json_pack("{s:s, s:s, s:I}", "sub", "u-1", "type", "refresh", "exp",
                                   (json_int_t)(now_s() + 60)));
    char *b = bearer(tok);
    get(&f, "/api/me", b, &resp);
    expect_problem(&resp, 401, "The access token is invalid or expired.",
                   "Bearer realm=\"shop api\", error=\"invalid_token\", error_description=\"The "
                   "access token is invalid or expired.\"");
    keel_test_resp_free(&resp);
    free(b);
    keel_free(tok);
    tok = sign(ks, json_pack("{s:s, s:s, s:I}", "sub", "u-1", "type", "access", "exp",
                             (json_int_t)(now_s() + 60)));
    b = bearer(tok);
    assert_int_equal(200, get(&f, "/api/me", b, &resp));
    keel_test_resp_free(&resp);
    free(b);
    keel_free(tok);
    keel_server_destroy(f.s);
    keel_router_destroy(r);
    keel_jwt_keyset_destroy(ks);
}

/* Rate limits per user: the budget follows the token's subject, not the client address (both
 * users below come from the same loopback IP). */
static void test_per_user_rate_limit(void **state)
{
    (void)state;
    keel_limiter_config lc;
    keel_limiter_config_default(&lc);
    lc.algorithm = KEEL_LIMIT_SLIDING_LOG;
    lc.limit = 2;
    lc.window_ms = 60000;
    ASSERT_OK(keel_limiter_create(&lc, &g_user_limiter, NULL));
    fixture f;
    start(&f, 0);
    char *t42 = access_token(&f, NULL, NULL);
    json_t *other = json_pack("{s:s}", "sub", "u-7");
    char *t7 = access_token(&f, NULL, other);
    json_decref(other);
    char *b42 = bearer(t42), *b7 = bearer(t7);
    keel_test_resp r;
    assert_int_equal(200, get(&f, "/api/me", b42, &r));
    keel_test_resp_free(&r);
    assert_int_equal(200, get(&f, "/api/me", b42, &r));
    keel_test_resp_free(&r);
    assert_int_equal(429, get(&f, "/api/me", b42, &r));
    char ra[16];
    assert_int_equal(1, keel_test_resp_header(&r, "retry-after", ra, sizeof(ra)));
    keel_test_resp_free(&r);
    assert_int_equal(200, get(&f, "/api/me", b7, &r)); /* another user: own budget */
    keel_test_resp_free(&r);
    free(b42);
    free(b7);
    keel_free(t42);
    keel_free(t7);
    stop(&f);
    keel_limiter_destroy(g_user_limiter);
    g_user_limiter = NULL;
}

/* routed_only: a path no route matches is the router's 404 (or 405), not a 401; routed
 * paths still need credentials.  Without it an unknown path needs credentials too. */
static void test_routed_only(void **state)
{
    (void)state;
    fixture f;
    keel_test_resp r;
    start(&f, 0);
    assert_int_equal(401, get(&f, "/no/such/route", NULL, &r));
    keel_test_resp_free(&r);
    stop(&f);

    g_routed_only = 1;
    start(&f, 0);
    assert_int_equal(404, get(&f, "/no/such/route", NULL, &r));
    keel_test_resp_free(&r);
    assert_int_equal(401, get(&f, "/api/me", NULL, &r));
    keel_test_resp_free(&r);
    char *tok = access_token(&f, NULL, NULL);
    char *b = bearer(tok);
    assert_int_equal(200, get(&f, "/api/me", b, &r));
    keel_test_resp_free(&r);
    free(b);
    keel_free(tok);
    stop(&f);
    g_routed_only = 0;
}

/* The data of a 200 from /api/me with authz (a new reference). */
static json_t *me_data(fixture *f, const char *authz)
{
    keel_test_resp r;
    assert_int_equal(200, get(f, "/api/me", authz, &r));
    json_t *doc = body_json(&r);
    json_t *data = json_incref(json_object_get(doc, "data"));
    json_decref(doc);
    keel_test_resp_free(&r);
    return data;
}

/* keel_auth_ready_inline() as a server's inline check: a request whose session verdict is
 * cached runs on the event loop, and the layer takes the claims the check verified (the
 * principal is whole, the session is not checked again); everything else is unchanged. */
static void test_inline_handover(void **state)
{
    (void)state;
    fixture f;
    g_inline = 1;
    start(&f, 1);
    char *tok = access_token(&f, "s-1", NULL);
    char *b = bearer(tok);
    /* first request: no cached verdict, so a worker runs it and the verdict is cached */
    json_t *d1 = me_data(&f, b);
    assert_string_equal("keel-worker", json_string_value(json_object_get(d1, "thread")));
    assert_int_equal(1, atomic_load(&g_checks));
    /* then: on the event loop, the principal as complete as before */
    for (int i = 0; i < 3; i++) {
        json_t *d2 = me_data(&f, b);
        assert_non_null(strstr(json_string_value(json_object_get(d2, "thread")), "MHD"));
        json_object_del(d1, "thread");
        json_object_del(d2, "thread");
        assert_true(json_equal(d1, d2));
        json_decref(d2);
    }
    json_decref(d1);
    assert_int_equal(1, atomic_load(&g_checks));

    /* a revoked session: the cached "denied" verdict is answered inline, still 401 */
    char *rt = access_token(&f, "s-revoked", NULL);
    char *rb = bearer(rt);
    for (int i = 0; i < 2; i++)
        expect_invalid(&f, rb, rt);
    assert_int_equal(2, atomic_load(&g_checks));
    free(rb);
    keel_free(rt);

    /* a token that fails verification is answered 401 (not handed over) */
    char *bad = keel_strdup(tok);
    bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'A' ? 'B' : 'A';
    expect_invalid_token(&f, bad);
    keel_free(bad);
    /* no credentials: 401 missing */
    keel_test_resp r;
    get(&f, "/api/me", NULL, &r);
    expect_problem(&r, 401, "Authentication is required.", CHAL_MISSING);
    keel_test_resp_free(&r);
    free(b);
    keel_free(tok);
    stop(&f);
    g_inline = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_bearer),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_valid_token),
        cmocka_unit_test(test_missing_and_wrong_scheme),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_claim_failures),
        cmocka_unit_test(test_signature_failures),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_session_revocation_cached),
        cmocka_unit_test(test_session_store_error),
        cmocka_unit_test(test_excluded_paths),
        cmocka_unit_test(test_roles_and_scopes),
        cmocka_unit_test(test_realm_and_default_type),
        cmocka_unit_test(test_per_user_rate_limit),
        cmocka_unit_test(test_routed_only),
        cmocka_unit_test(test_inline_handover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
