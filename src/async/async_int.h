/* async_int.h - helpers shared by the job queue and the outbox (private to src/async). */
#ifndef KEEL_ASYNC_INT_H
#define KEEL_ASYNC_INT_H

#include <time.h>

#include <jansson.h>

#include <keel/store.h>

/* Compact JSON of v (NULL = null) in a keel_malloc'd string of at most max bytes, written by
 * json_dumpb into keel's own buffer.  KEEL_EINVAL unserialisable, KEEL_ETOOBIG, KEEL_ENOMEM. */
keel_err keel__async_json_text(const json_t *v, size_t max, char **out);
/* Milliseconds as int64, clamped to 2^52 so sums of durations cannot overflow. */
int64_t keel__async_ms(uint64_t ms);
/* "<host>:<pid>:<8 hex>" for claims and leases, keel_malloc'd. */
keel_err keel__async_owner(char **out);

/* Bind parameters one after another; the first error sticks and later calls do nothing. */
typedef struct keel__binder {
    keel_stmt *st;
    int idx;
    keel_err err;
} keel__binder;
keel_err keel__bind_prepare(keel_db *db, const char *sql, keel__binder *b, keel_diag *diag);
void keel__bind_text(keel__binder *b, const char *s); /* NULL binds NULL */
void keel__bind_int(keel__binder *b, int64_t v);
/* Step a bound statement that returns no row; *changes (may be NULL) gets the row count. */
keel_err keel__bind_run(keel__binder *b, int64_t *changes, keel_diag *diag);

#endif
