/* saga_int.h - private helpers shared by saga.c and saga_log.c.  Never installed. */
#ifndef KEEL_PAY_SAGA_INT_H
#define KEEL_PAY_SAGA_INT_H

#include <keel/saga.h>

/* Component name of the saga tables in keel_schema_migrations. */
#define KEEL__SAGA_COMPONENT "keel.pay.saga"

/* Default instance name of this process, "<hostname>:<pid>:<8 hex>" (recomputed after fork).
 * Copies it into out (at least KEEL_SAGA_OWNER_MAX + 1 bytes). */
void keel__saga_default_owner(char *out, size_t cap);

/* 1 if s is 1..max bytes of 0x21..0x7e. */
int keel__saga_name_ok(const char *s, size_t max);

/* Serialise a context (compact, sorted keys) into a fresh NUL-terminated string capped at
 * KEEL_SAGA_CONTEXT_MAX.  Caller frees with keel_free().  KEEL_ETOOBIG, KEEL_ENOMEM,
 * KEEL_EINVAL (not an object). */
keel_err keel__saga_ctx_dump(const json_t *ctx, char **out, keel_diag *diag);
/* Parse a stored context (must be an object).  KEEL_EPARSE (with the saga id), KEEL_ENOMEM. */
keel_err keel__saga_ctx_load(const char *s, size_t len, const char *saga_id, json_t **out,
                             keel_diag *diag);

/* Copy plain fields of src into dst and take a new reference on (deep copy of, when deep) the
 * context.  KEEL_ENOMEM on a failed deep copy (dst->context NULL then). */
keel_err keel__saga_record_copy(keel_saga_record *dst, const keel_saga_record *src, int deep);

#endif
