/*
 * keel/jwt.h - JSON Web Tokens (JWS compact serialization, RFC 7515/7519) with the
 * RFC 8725 best current practice: the algorithm is pinned by configuration, never
 * taken from the token; "none" is never produced or accepted.
 *
 * Module contract: a keel_jwt_keyset is built once (create, add keys) and then only
 * read; keel_jwt_sign() and keel_jwt_verify() on a keyset that is no longer modified
 * may run concurrently from any thread.  Adding keys is not thread-safe.
 *
 * Each key belongs to exactly one algorithm (HS256, RS256 or ES256).  A keyset holds
 * at most one signing key and any number of verification keys, so keys can be rotated:
 * add the new key for signing and keep the old one for verification until the tokens it
 * signed have expired.  Access and refresh tokens use separate keysets (separate keys)
 * and a distinct "type" claim, so one can never validate as the other (RFC 8725 §3.12).
 */
#ifndef KEEL_JWT_H
#define KEEL_JWT_H

#include <jansson.h>
#include <keel/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Supported JWS algorithms.  0 is deliberately not an algorithm ("none" does not exist). */
typedef enum keel_jwt_alg {
    KEEL_JWT_ALG_INVALID = 0,
    KEEL_JWT_HS256 = 1, /* HMAC-SHA-256, secret of at least 32 bytes */
    KEEL_JWT_RS256 = 2, /* RSASSA-PKCS1-v1_5 SHA-256, RSA key of at least 2048 bits */
    KEEL_JWT_ES256 = 3  /* ECDSA P-256 SHA-256, raw R||S signature */
} keel_jwt_alg;

/** Key usage flags for keel_jwt_keyset_add_*(). */
#define KEEL_JWT_KEY_VERIFY 1u
#define KEEL_JWT_KEY_SIGN 2u

/** Limits. */
#define KEEL_JWT_KID_MAX 128u                  /* longest accepted "kid" */
#define KEEL_JWT_HS_MIN_SECRET 32u             /* RFC 7518 §3.2: at least 256 bits */
#define KEEL_JWT_LEEWAY_DEFAULT 30u            /* seconds */
#define KEEL_JWT_LEEWAY_MAX 300u               /* seconds */
#define KEEL_JWT_MAX_LEN_DEFAULT (8u * 1024u)  /* bytes of compact token */
#define KEEL_JWT_MAX_LEN_LIMIT (64u * 1024u)   /* the largest max_len accepted */

/** Parse "HS256"/"RS256"/"ES256" (exact, case-sensitive) into *out.
 *  @return KEEL_OK, KEEL_EUNSUPPORTED for any other name (including "none"), KEEL_EINVAL
 *  on NULL.  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_jwt_alg_parse(const char *name, keel_jwt_alg *out);
/** Name of an algorithm ("HS256"...), or NULL for an invalid value.
 *  Thread-safety: any thread. Ownership: static string. */
KEEL_API const char *keel_jwt_alg_name(keel_jwt_alg alg);

/* ---------------------------------------------------------------- keyset -- */

/** A set of signing/verification keys.  Opaque. */
typedef struct keel_jwt_keyset keel_jwt_keyset;

/** Create an empty keyset.
 *  @return KEEL_OK, KEEL_EINVAL (out NULL), KEEL_ENOMEM.
 *  Thread-safety: any thread. Ownership: caller destroys with keel_jwt_keyset_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_jwt_keyset_create(keel_jwt_keyset **out);
/** Destroy a keyset, wiping HMAC secrets.  NULL is a no-op.
 *  Thread-safety: no concurrent use of ks. */
KEEL_API void keel_jwt_keyset_destroy(keel_jwt_keyset *ks);

/** Add an HS256 secret (copied; at least KEEL_JWT_HS_MIN_SECRET bytes).  kid may be NULL
 *  (no "kid" header).  usage is a mask of KEEL_JWT_KEY_SIGN / KEEL_JWT_KEY_VERIFY; a new
 *  signing key replaces the previous one for signing (the previous one keeps verifying if
 *  it was added with KEEL_JWT_KEY_VERIFY).
 *  @return KEEL_OK, KEEL_EINVAL (short secret, bad usage, kid too long or not printable
 *  ASCII), KEEL_EEXIST (a verification key with the same alg and kid), KEEL_ENOMEM.
 *  Thread-safety: not while ks is in use. Ownership: copies secret and kid. */
KEEL_API KEEL_NODISCARD keel_err keel_jwt_keyset_add_hmac(keel_jwt_keyset *ks, const char *kid,
                                                          const void *secret, size_t len,
                                                          unsigned usage);
/** Add an RS256 or ES256 key from PEM text (a private key, or a public key for
 *  verification only).  The key type must match alg (RSA >= 2048 bits; EC on P-256).
 *  @return KEEL_OK, KEEL_EINVAL (wrong alg/usage, SIGN with a public key, kid), KEEL_EPARSE
 *  (not a PEM key), KEEL_EUNSUPPORTED (key type or size does not fit alg), KEEL_EEXIST,
 *  KEEL_ENOMEM.  Thread-safety: not while ks is in use. Ownership: copies everything. */
KEEL_API KEEL_NODISCARD keel_err keel_jwt_keyset_add_pem(keel_jwt_keyset *ks, keel_jwt_alg alg,
                                                         const char *kid, const char *pem,
                                                         size_t len, unsigned usage);
/** Same as keel_jwt_keyset_add_pem() with the PEM read from a file (at most 64 KiB).
 *  @return as keel_jwt_keyset_add_pem(), plus KEEL_EIO (cannot read), KEEL_ETOOBIG. */
KEEL_API KEEL_NODISCARD keel_err keel_jwt_keyset_add_pem_file(keel_jwt_keyset *ks,
                                                              keel_jwt_alg alg, const char *kid,
                                                              const char *path, unsigned usage);

/* ------------------------------------------------------------------ sign -- */

/** Sign claims (a JSON object) with the keyset's signing key.  The header is
 *  {"alg":..., "typ":"JWT"} plus "kid" when the key has one.
 *  @return KEEL_OK, KEEL_EINVAL (claims not an object, NULL args), KEEL_ESTATE (no signing
 *  key), KEEL_ECRYPTO, KEEL_ENOMEM.
 *  Thread-safety: any thread, concurrently with other sign/verify calls on ks.
 *  Ownership: borrows claims; *out_token is NUL-terminated, caller frees with keel_free(). */
KEEL_API KEEL_NODISCARD keel_err keel_jwt_sign(const keel_jwt_keyset *ks, const json_t *claims,
                                               char **out_token);

/* ---------------------------------------------------------------- verify -- */

/** What a token must satisfy.  Transparent; fill with keel_jwt_policy_default(). */
typedef struct keel_jwt_policy {
    size_t size;       /* sizeof(keel_jwt_policy) */
    keel_jwt_alg alg;  /* pinned algorithm (default HS256); the header must name it exactly */
    const char *iss;   /* required "iss" (exact), NULL = not checked */
    const char *aud;   /* required member of "aud" (string or array), NULL = not checked */
    const char *type;  /* required "type" claim ("access"/"refresh"), NULL = not checked */
    uint32_t leeway_s; /* clock skew allowed on exp/nbf (default 30, at most 300) */
    int require_exp;   /* 1 (default): a token without "exp" is rejected */
    size_t max_len;    /* longest token accepted (default 8 KiB, at most 64 KiB) */
} keel_jwt_policy;

/** Fill p with the defaults above.  Thread-safety: any thread. */
KEEL_API void keel_jwt_policy_default(keel_jwt_policy *p);

/** Verify a compact JWS token at time now_s (seconds since the Unix epoch).
 *
 *  Order: size and character set; header (JSON object, no duplicate keys); header "alg"
 *  equals policy->alg exactly; no "crit"; keys: every verification key of the pinned alg
 *  whose kid equals the token's "kid", plus those added without a kid (a token without
 *  "kid" tries every key of the pinned alg); signature (HMAC compared in constant
 *  time); payload (JSON object, no duplicates); exp (rejected when now >= exp + leeway),
 *  nbf (rejected when now + leeway < nbf); iss; aud; type.
 *
 *  @return KEEL_OK with *out_claims set; KEEL_EPARSE for a malformed token (segments,
 *  characters, base64url, JSON, non-object, duplicate keys, longer than max_len);
 *  KEEL_EDENIED for a well-formed token that must not be accepted ("alg mismatch",
 *  "unknown kid", "bad signature", "token expired", "token not yet valid", "issuer
 *  mismatch", "audience mismatch", "type mismatch", invalid claim types...); KEEL_EINVAL
 *  for bad arguments or policy; KEEL_ENOMEM; KEEL_ECRYPTO.  diag (nullable) names the
 *  reason; it never contains key material.
 *  Thread-safety: any thread, concurrently with other sign/verify calls on ks.
 *  Ownership: borrows everything; *out_claims (on success only) is a new reference,
 *  release with json_decref(). */
KEEL_API KEEL_NODISCARD keel_err keel_jwt_verify(const keel_jwt_keyset *ks,
                                                 const keel_jwt_policy *policy,
                                                 const char *token, size_t len, uint64_t now_s,
                                                 json_t **out_claims, keel_diag *diag);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_JWT_H */
