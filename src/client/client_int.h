/* client_int.h - private declarations of the client module (never installed). */
#ifndef KEEL_CLIENT_INT_H
#define KEEL_CLIENT_INT_H

#include <keel/s3.h>

/* Parse a ListObjectsV2 ListBucketResult document of n bytes into *out (zeroed first; on
 * error it is left empty).  Returns KEEL_OK, KEEL_EPARSE or KEEL_ENOMEM (s3.c). */
keel_err keel__s3_parse_list(const char *xml, size_t n, keel_s3_list *out);

#endif /* KEEL_CLIENT_INT_H */
