/*
 * keel/password.h - Argon2id password hashing (PHC strings) and keyed token hashing.
 *
 * Module contract: every function here is stateless and callable from any thread at once.
 * Passwords are hashed with Argon2id (RFC 9106) through libargon2 and stored as PHC strings,
 * "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>" with unpadded standard base64, the format
 * argon2-cffi and passlib read and write, so a hash made by either verifies here and the
 * reverse.  A stored hash is untrusted input: parameters are capped (KEEL_PASSWORD_MAX_*) so a
 * hostile hash cannot make a verification consume unbounded memory or CPU.  libargon2's
 * working memory goes through the keel allocator hook.  Every comparison of a secret value is
 * constant-time, and temporary copies of passwords are wiped.  Refresh tokens and other
 * high-entropy secrets are stored as HMAC-SHA256 under a server key (keel_token_hash), which
 * is enough because they cannot be guessed.
 */
#ifndef KEEL_PASSWORD_H
#define KEEL_PASSWORD_H

#include <keel/common.h>
#include <keel/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults: the OWASP Password Storage Cheat Sheet (2023) minimum for Argon2id. */
#define KEEL_PASSWORD_MEMORY_KIB_DEFAULT 19456u /* 19 MiB */
#define KEEL_PASSWORD_ITERATIONS_DEFAULT 2u
#define KEEL_PASSWORD_PARALLELISM_DEFAULT 1u
#define KEEL_PASSWORD_SALT_LEN_DEFAULT 16u
#define KEEL_PASSWORD_HASH_LEN_DEFAULT 32u

/* Caps, applied to parameters given to keel_password_hash() and to every parsed hash. */
#define KEEL_PASSWORD_MAX_MEMORY_KIB (1024u * 1024u) /* 1 GiB */
#define KEEL_PASSWORD_MAX_ITERATIONS 20u
#define KEEL_PASSWORD_MAX_PARALLELISM 16u
#define KEEL_PASSWORD_MIN_SALT_LEN 8u
#define KEEL_PASSWORD_MAX_SALT_LEN 64u
#define KEEL_PASSWORD_MIN_HASH_LEN 16u
#define KEEL_PASSWORD_MAX_HASH_LEN 64u
/** Longest password accepted, in bytes (longer input gives KEEL_ETOOBIG). */
#define KEEL_PASSWORD_MAX_LEN 4096u
/** Buffer size that holds any PHC string keel produces or accepts, plus the NUL. */
#define KEEL_PASSWORD_PHC_SIZE 256u

/** Argon2id cost parameters (the type is always Argon2id, the version always 0x13 = 19). */
typedef struct keel_password_params {
    size_t size;          /* sizeof(keel_password_params); set by keel_password_params_default */
    uint32_t memory_kib;  /* m: memory in KiB, >= 8 * parallelism */
    uint32_t iterations;  /* t: passes over memory, >= 1 */
    uint32_t parallelism; /* p: lanes, >= 1 (computed on one thread) */
    uint32_t salt_len;    /* bytes of random salt */
    uint32_t hash_len;    /* bytes of output */
} keel_password_params;

/** Fill p with the defaults above.
 *  Thread-safety: any thread. Ownership: writes *p only. Errors: none (NULL is a no-op). */
KEEL_API void keel_password_params_default(keel_password_params *p);

/** Hash a password with Argon2id and a fresh random salt, writing a NUL-terminated PHC string.
 *  @param params NULL for the defaults; values outside the caps are refused.
 *  @param pw     the password bytes (need not be NUL-terminated; may be empty).
 *  @param out    receives the PHC string; outsz >= KEEL_PASSWORD_PHC_SIZE always suffices.
 *  @return KEEL_OK; KEEL_EINVAL (NULL pw/out, bad params->size); KEEL_ERANGE (a parameter
 *          outside the caps, or memory_kib < 8 * parallelism); KEEL_ETOOBIG (len >
 *          KEEL_PASSWORD_MAX_LEN or outsz too small); KEEL_ENOMEM; KEEL_ECRYPTO (random/argon2).
 *  Thread-safety: any thread. Ownership: borrows everything; out is caller memory. */
KEEL_API KEEL_NODISCARD keel_err keel_password_hash(const keel_password_params *params,
                                                    const char *pw, size_t len, char *out,
                                                    size_t outsz);

/** Check a password against a stored PHC string (Argon2id, or legacy Argon2i, version 19).
 *  The final comparison is constant-time.
 *  @param diag optional; on KEEL_EPARSE/KEEL_ERANGE/KEEL_EUNSUPPORTED it names the offending
 *         field ("salt", "m", ...) and offset is the byte offset of that field in phc.  The
 *         password never appears in a message.
 *  @return KEEL_OK on a match; KEEL_EDENIED on a mismatch; KEEL_EPARSE malformed string;
 *          KEEL_ERANGE a parameter outside the caps; KEEL_EUNSUPPORTED argon2d or a version
 *          other than 19; KEEL_EINVAL NULL arguments; KEEL_ETOOBIG len > KEEL_PASSWORD_MAX_LEN;
 *          KEEL_ENOMEM; KEEL_ECRYPTO.
 *  Thread-safety: any thread. Ownership: borrows everything. */
KEEL_API KEEL_NODISCARD keel_err keel_password_verify(const char *phc, const char *pw, size_t len,
                                                      keel_diag *diag);

/** Decide whether a stored hash should be recomputed (after a successful verify) because it
 *  is weaker than current: *out = 1 when the type is not Argon2id, or m, t, p, the salt
 *  length or the hash length is below current's; else 0.
 *  @param current NULL for the defaults.
 *  @return KEEL_OK; KEEL_EINVAL (NULL phc/out); or the parse errors of keel_password_verify.
 *  Thread-safety: any thread. Ownership: borrows everything; writes *out. */
KEEL_API KEEL_NODISCARD keel_err keel_password_needs_rehash(const char *phc,
                                                            const keel_password_params *current,
                                                            int *out, keel_diag *diag);

/* ----------------------------------------------------------- token hash -- */

/** Size of a token hash: 64 lower-case hex digits of HMAC-SHA256, plus NUL. */
#define KEEL_TOKEN_HASH_SIZE 65u

/** Keyed hash of a high-entropy token (refresh token, API key) for storage:
 *  lower-case hex HMAC-SHA256(key, token).
 *  @return KEEL_OK; KEEL_EINVAL (NULL or empty key, NULL token with len > 0, NULL out);
 *          KEEL_ECRYPTO.
 *  Thread-safety: any thread. Ownership: borrows key and token; out is caller memory. */
KEEL_API KEEL_NODISCARD keel_err keel_token_hash(const keel_secret *key, const void *token,
                                                 size_t len, char out[KEEL_TOKEN_HASH_SIZE]);

/** Check a token against a stored keel_token_hash() value in constant time.
 *  @return KEEL_OK on a match; KEEL_EDENIED on a mismatch (including a stored value of the
 *          wrong length or case); KEEL_EINVAL / KEEL_ECRYPTO as keel_token_hash.
 *  Thread-safety: any thread. Ownership: borrows everything. */
KEEL_API KEEL_NODISCARD keel_err keel_token_verify(const keel_secret *key, const void *token,
                                                   size_t len, const char *stored_hex);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_PASSWORD_H */
