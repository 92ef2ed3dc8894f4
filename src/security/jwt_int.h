/* jwt_int.h - private helpers of src/security/jwt.c, exposed for the unit tests. */
#ifndef KEEL_JWT_INT_H
#define KEEL_JWT_INT_H

#include <stddef.h>

#include <keel/jwt.h>

/* Length of the unpadded base64url encoding of n bytes. */
size_t keel__b64url_encoded_len(size_t n);
/* Encode n bytes into out (room for keel__b64url_encoded_len(n) + 1); NUL-terminates.
 * Returns the encoded length. */
size_t keel__b64url_encode(const unsigned char *in, size_t n, char *out);
/* Strict decode of unpadded base64url (no '=', no whitespace, unused trailing bits zero).
 * out needs room for (len * 3) / 4 + 1 bytes.  Returns 0 and sets *out_len, or -1. */
int keel__b64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len);

/* Key i of ks (0-based, in the order added): its algorithm, kid (NULL if none), usage mask
 * and, for RS256/ES256, its EVP_PKEY (NULL for HS256: the HMAC secret is never exposed).
 * Borrowed.  Returns 0, or -1 when i is past the last key.  Used by jwks.c. */
#define KEEL__JWT_KEY_ACCESSOR 1
struct evp_pkey_st;
int keel__jwt_keyset_key(const keel_jwt_keyset *ks, size_t i, keel_jwt_alg *alg,
                         const char **kid, unsigned *usage, const struct evp_pkey_st **pkey);

#endif
