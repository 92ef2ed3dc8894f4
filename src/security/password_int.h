/*
 * password_int.h - private PHC parsing interface of src/security/password.c, shared with its
 * unit test and fuzz target.  Never installed.
 */
#ifndef KEEL_PASSWORD_INT_H
#define KEEL_PASSWORD_INT_H

#include <keel/password.h>

/* Argon2 variants as they appear in a PHC identifier (values are not libargon2's). */
enum { KEEL__PHC_ARGON2D = 1, KEEL__PHC_ARGON2I = 2, KEEL__PHC_ARGON2ID = 3 };

/* A parsed "$argon2<x>$v=<n>$m=<n>,t=<n>,p=<n>$<salt>$<hash>" string. */
typedef struct keel__phc {
    int type;
    uint32_t version, m, t, p;
    size_t salt_len, hash_len;
    unsigned char salt[KEEL_PASSWORD_MAX_SALT_LEN];
    unsigned char hash[KEEL_PASSWORD_MAX_HASH_LEN];
} keel__phc;

/* Upper bounds on the cost parameters of a parsed string; the public functions use
 * KEEL_PASSWORD_MAX_*.  Tests and the fuzzer pass tiny caps to stay fast. */
typedef struct keel__phc_caps {
    uint32_t max_m, max_t, max_p;
} keel__phc_caps;

/* Parse phc strictly (canonical decimal and base64, fields in order, nothing trailing).
 * Returns KEEL_OK, KEEL_EINVAL, KEEL_EPARSE, KEEL_ERANGE (parameter or length outside the
 * caps) or KEEL_EUNSUPPORTED (another algorithm, or a version other than 19); diag names the
 * field and offset is its byte offset.  caps NULL = the public caps. */
keel_err keel__phc_parse(const char *phc, const keel__phc_caps *caps, keel__phc *out,
                         keel_diag *diag);

/* keel_password_verify() with explicit caps. */
keel_err keel__password_verify_caps(const char *phc, const char *pw, size_t len,
                                    const keel__phc_caps *caps, keel_diag *diag);

#endif /* KEEL_PASSWORD_INT_H */
