/* idem_int.h - shared between the idempotency policy and its stores (private). */
#ifndef KEEL_PAY_IDEM_INT_H
#define KEEL_PAY_IDEM_INT_H

#include <keel/idempotency.h>

/* Deep copy (result duplicated, NUL-terminated).  KEEL_OK or KEEL_ENOMEM. */
keel_err keel__idem_record_copy(keel_idem_record *dst, const keel_idem_record *src);
/* 1 if key is 1..255 printable non-space ASCII and scope 0..128 printable ASCII. */
int keel__idem_valid_scope_key(keel_str scope, keel_str key);
/* Box a backend in a keel_idem_store (NULL on OOM; the caller then frees self). */
keel_idem_store *keel__idem_store_wrap(const keel_idem_store_vt *vt, void *self);

/* The Redis store's value encoding (idem_redis.c), exposed for the fuzz target:
 * encode -> keel_malloc'd text or NULL (OOM); decode -> KEEL_OK, KEEL_EPARSE (corrupt value,
 * *out empty) or KEEL_ENOMEM. */
char *keel__idem_redis_encode(const keel_idem_record *rec);
keel_err keel__idem_redis_decode(const char *v, size_t len, keel_idem_record *out,
                                keel_diag *diag);

#endif
