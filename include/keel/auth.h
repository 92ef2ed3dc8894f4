/*
 * keel/auth.h - bearer-token authentication for the HTTP chain's auth slot (RFC 6750), role and
 * scope checks for handlers, and the JWKS document of a keyset (RFC 7517).
 *
 * Module contract: the auth layer is built once (keel_mw_auth) and put in
 * keel_http_chain_config.auth; it then runs on any number of threads at once.  For every
 * request whose path is not excluded (and that is not a CORS preflight) it reads
 * `Authorization: Bearer <token>`, verifies the token with keel_jwt_verify() under the
 * configured policy (algorithm pinned, iss/aud/type/exp/nbf checked), builds a keel_principal
 * in the request arena, asks the optional session check (through a small TTL cache), binds
 * the principal to the request context and the subject to the log context, and runs the
 * inner layers.  Every failure is answered without running the inner layers:
 *
 *   no Authorization header, or another scheme   401, `WWW-Authenticate: Bearer realm="keel"`
 *   malformed, too long, invalid, expired, wrong  401, `WWW-Authenticate: Bearer realm="keel",
 *   type/iss/aud, revoked or expired session       error="invalid_token", error_description=
 *                                                  "The access token is invalid or expired"`
 *   session store error                           503 (no challenge)
 *
 * Problem bodies (RFC 9457) use fixed texts only: the token and the reason a verification
 * failed never reach the client (RFC 8725: do not help an attacker); the reason is logged at
 * debug level by class ("expired", "bad signature"...), never with the token.
 */
#ifndef KEEL_AUTH_H
#define KEEL_AUTH_H

#include <jansson.h>

#include <keel/chain.h>
#include <keel/common.h>
#include <keel/http.h>
#include <keel/jwt.h>
#include <keel/policy.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Limits. */
#define KEEL_AUTH_TOKEN_MAX (8u * 1024u) /* longest bearer token accepted (bytes) */
#define KEEL_AUTH_MAX_ROLES 64u          /* more roles in a token: the token is rejected */
#define KEEL_AUTH_MAX_SCOPES 64u         /* more scopes in a token: the token is rejected */
#define KEEL_AUTH_REALM_MAX 64u          /* longest realm */

/** The authenticated caller.  Everything is borrowed from the request arena and valid until
 *  the request ends, except claims (see below). */
typedef struct keel_principal {
    const char *sub;           /* "sub" claim: non-empty string (required) */
    const char *sid;           /* "sid" claim, or NULL when absent */
    const char *jti;           /* "jti" claim, or NULL when absent */
    const char *const *roles;  /* "roles": array of strings (nroles entries; none when absent) */
    size_t nroles;
    const char *const *scopes; /* "scopes" array of strings and/or the OAuth space-separated */
    size_t nscopes;            /* "scope" string, both merged (nscopes entries) */
    const json_t *claims;      /* every verified claim (borrowed): valid while the inner layers
                                  and the handler run; NULL once the auth layer has returned */
} keel_principal;

/** Session check: is the session p->sid (p->sid may be NULL when the token has none) still
 *  valid?  Return KEEL_OK (valid), KEEL_EDENIED (revoked or expired: 401 invalid_token), or any
 *  other error (the store could not answer: 503, never cached).  Called on the request's
 *  thread (a worker; it may block), concurrently with itself. */
typedef keel_err (*keel_auth_session_fn)(const keel_principal *p, void *ud);

/** Auth layer configuration.  Fill with keel_auth_config_default() then override. */
typedef struct keel_auth_config {
    size_t size;                   /* sizeof(keel_auth_config) */
    const keel_jwt_keyset *keys;   /* required; borrowed, must outlive the layer */
    const keel_jwt_policy *policy; /* required; copied (its strings are borrowed and must
                                      outlive the layer).  policy->type NULL means "access" */
    const char *const *exclude;    /* NULL-terminated (or NULL); copied.  Exact paths, or
                                      prefixes ending in '*': "/health/" followed by '*'
                                      matches "/health/" and everything below it */
    keel_auth_session_fn session_check; /* NULL = no session check */
    void *session_ud;
    uint32_t session_cache_ms;     /* how long verdicts per sid are cached, positive and
                                      negative alike (default 5000; 0 = no cache) */
    const char *realm;             /* WWW-Authenticate realm (default "keel"; copied; 1..64
                                      printable ASCII characters, no '"' or '\\') */
    size_t session_cache_max;      /* most sids cached (default 10000) */
    const keel_clock *clock;       /* session cache time; NULL = system clock; borrowed */
    int routed_only;               /* 1: requests that matched no route pass through, so the
                                      router answers 404/405 (nothing there to protect);
                                      0 (default): they need credentials like any path */
} keel_auth_config;

/** Defaults: no keys/policy (both must be set), no exclusions, no session check,
 *  session_cache_ms 5000, realm "keel", session_cache_max 10000, system clock.
 *  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_auth_config_default(keel_auth_config *cfg);

/** Build the auth layer (name "auth"; context keel_ctx *).
 *  @return KEEL_OK, KEEL_EINVAL (NULL cfg/out, bad size, no keys or policy, invalid policy,
 *  bad realm or exclude entry; diag says which), KEEL_ENOMEM.
 *  Thread-safety: any thread; the layer runs concurrently on any number of threads.
 *  Ownership: *out is the caller's until handed to a chain (keel_http_chain_config.auth),
 *  which disposes it. */
KEEL_API KEEL_NODISCARD keel_err keel_mw_auth(const keel_auth_config *cfg, keel_layer **out,
                                              keel_diag *diag);

/** The principal bound by the auth layer, or NULL when the request is unauthenticated
 *  (excluded path, no auth layer).  Thread-safety: the request's thread.
 *  Ownership: borrowed; valid until the request ends. */
KEEL_API const keel_principal *keel_ctx_principal(const keel_ctx *cx);

/** 1 if p holds role / scope (exact, case-sensitive), else 0 (also for NULL arguments).
 *  Thread-safety: any thread. */
KEEL_API int keel_principal_has_role(const keel_principal *p, const char *role);
KEEL_API int keel_principal_has_scope(const keel_principal *p, const char *scope);

/** Require one of the roles any_of (NULL-terminated; NULL or empty = authentication only).
 *  @return KEEL_OK; otherwise the response is already set and KEEL_EDENIED is returned (the
 *  handler should return KEEL_OK): 401 problem with a Bearer challenge when there is no
 *  principal, 403 problem when none of the roles is held.  KEEL_ENOMEM when the response
 *  could not be built.  Thread-safety: the request's thread. */
KEEL_API keel_err keel_auth_require_roles(keel_ctx *cx, const char *const *any_of);
/** Require every scope of all_of (NULL-terminated; NULL or empty = authentication only).
 *  Same answers as keel_auth_require_roles(); the 403 carries
 *  `WWW-Authenticate: Bearer realm=..., error="insufficient_scope", scope="<all_of>"`
 *  (RFC 6750 §3.1; the scope attribute is left out if a name is not a scope-token). */
KEEL_API keel_err keel_auth_require_scopes(keel_ctx *cx, const char *const *all_of);

/** Drop the cached verdict of session sid (call it at logout or revocation so that the next
 *  request rechecks at once).  No-op when auth_layer is NULL or not an auth layer, sid is
 *  NULL, or there is no cache.  Thread-safety: any thread, concurrently with requests. */
KEEL_API void keel_auth_forget_session(keel_layer *auth_layer, const char *sid);

/** Extract the token of an Authorization header value of the form
 *  `Bearer 1*SP token68 *(SP / HTAB)` (scheme case-insensitive; RFC 6750 §2.1).
 *  @return KEEL_OK with *token pointing into value; KEEL_ENOTFOUND (value NULL or empty, or
 *  another scheme); KEEL_EPARSE (Bearer, but the rest is not one token68); KEEL_ETOOBIG
 *  (token longer than KEEL_AUTH_TOKEN_MAX); KEEL_EINVAL (token NULL).
 *  Thread-safety: any thread.  Ownership: *token borrows value. */
KEEL_API keel_err keel_auth_parse_bearer(const char *value, keel_str *token);

/** The JWK Set of ks's public keys: {"keys":[...]} with, per RS256/ES256 key,
 *  {"kty":"RSA","n","e"} or {"kty":"EC","crv":"P-256","x","y"} (base64url, RFC 7518 §6), plus
 *  "use":"sig", "alg", and "kid" when the key has one.  Private parts and HMAC keys never
 *  appear.  Keys appear in the order they were added.
 *  @return KEEL_OK with *out a new reference (json_decref()), KEEL_EINVAL (NULL argument),
 *  KEEL_ECRYPTO (a key's parameters could not be read), KEEL_ENOMEM.
 *  Thread-safety: any thread, like keel_jwt_verify(). */
KEEL_API KEEL_NODISCARD keel_err keel_jwt_keyset_jwks(const keel_jwt_keyset *ks, json_t **out);

/** 1 when running auth_layer (made by keel_mw_auth) on this request needs no I/O: the path is
 *  excluded, the credentials are missing or invalid (answered at once), there is no session
 *  check, or the token's session verdict is in the cache; 0 otherwise (or when auth_layer is
 *  not an auth layer).  On 1, sub_out (if not NULL) receives the verified subject, "" when
 *  there is none.  Costs one JWT verification.  Meant for a server's inline check
 *  (keel_server_config.inline_check): requests whose data is all in memory can be answered
 *  on the event loop instead of a worker thread.  Thread-safety: any thread. */
KEEL_API int keel_auth_ready_inline(keel_layer *auth_layer, keel_ctx *cx, char *sub_out,
                                    size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_AUTH_H */
