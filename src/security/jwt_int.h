/* jwt_int.h - private helpers of src/security/jwt.c, exposed for the unit tests. */
#ifndef KEEL_JWT_INT_H
#define KEEL_JWT_INT_H

#include <stddef.h>

/* Length of the unpadded base64url encoding of n bytes. */
size_t keel__b64url_encoded_len(size_t n);
/* Encode n bytes into out (room for keel__b64url_encoded_len(n) + 1); NUL-terminates.
 * Returns the encoded length. */
size_t keel__b64url_encode(const unsigned char *in, size_t n, char *out);
/* Strict decode of unpadded base64url (no '=', no whitespace, unused trailing bits zero).
 * out needs room for (len * 3) / 4 + 1 bytes.  Returns 0 and sets *out_len, or -1. */
int keel__b64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len);

#endif
