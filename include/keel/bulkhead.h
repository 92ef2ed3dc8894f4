/*
 * keel/bulkhead.h - a semaphore bulkhead: at most max_concurrent calls run at once, up to
 * max_queue more wait (first in, first admitted) for at most max_wait_ms, the rest are
 * refused with KEEL_EFULL (resilience4j SemaphoreBulkhead with a bounded FIFO queue).
 *
 * Module contract: thread-safe (one mutex and condition variable per bulkhead).  Waiting
 * is a real condition-variable wait on CLOCK_MONOTONIC: it is the one policy whose waiting
 * cannot use an injected keel_clock, because another thread's release must wake it.
 */
#ifndef KEEL_BULKHEAD_H
#define KEEL_BULKHEAD_H

#include <keel/common.h>
#include <keel/metrics.h>
#include <keel/policy.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_bulkhead keel_bulkhead; /* opaque */

/** Bulkhead configuration.  Fill with keel_bulkhead_config_default() then override. */
typedef struct keel_bulkhead_config {
    size_t size;             /* sizeof(keel_bulkhead_config) */
    const char *name;        /* metrics label and call->refused_by (copied); default "bulkhead" */
    unsigned max_concurrent; /* >= 1; default 10 */
    unsigned max_queue;      /* callers allowed to wait; 0 = refuse at once (default) */
    uint64_t max_wait_ms;    /* longest wait of a queued caller; 0 = no limit; default 1000 */
    keel_metrics *metrics;   /* NULL = none; else keel_bulkhead_available{name} (gauge) and
                                keel_bulkhead_rejected_total{name} (counter) */
} keel_bulkhead_config;

/** Defaults (see the field comments).  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_bulkhead_config_default(keel_bulkhead_config *cfg);

/** Create a bulkhead.
 *  @return KEEL_OK, KEEL_EINVAL (NULL out/cfg, bad size, max_concurrent 0; diag names the
 *  field), KEEL_EEXIST (metric name taken by another type), KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: caller destroys *out with keel_bulkhead_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_bulkhead_create(keel_bulkhead **out,
                                                      const keel_bulkhead_config *cfg,
                                                      keel_diag *diag);
/** Free the bulkhead.  NULL is a no-op.
 *  Thread-safety: no caller may hold or wait for a permit.  Ownership: frees b. */
KEEL_API void keel_bulkhead_destroy(keel_bulkhead *b);

/** Take a permit: at once if one is free and nobody is queued, else wait in FIFO order if
 *  the queue has room.  Every KEEL_OK must be paired with one keel_bulkhead_release().
 *  @return KEEL_OK, KEEL_EFULL (queue full, or the wait exceeded max_wait_ms), KEEL_EINVAL.
 *  Thread-safety: any thread; may block up to max_wait_ms (or without limit if 0). */
KEEL_API KEEL_NODISCARD keel_err keel_bulkhead_acquire(keel_bulkhead *b);
/** Take a permit only if one is free now and nobody is queued.
 *  @return KEEL_OK, KEEL_EFULL, KEEL_EINVAL.  Thread-safety: any thread; never blocks. */
KEEL_API KEEL_NODISCARD keel_err keel_bulkhead_try_acquire(keel_bulkhead *b);
/** Return a permit; the oldest waiter, if any, is admitted with it.
 *  Thread-safety: any thread (need not be the acquiring one). Errors: none. */
KEEL_API void keel_bulkhead_release(keel_bulkhead *b);
/** Free permits now (max_concurrent - running).  Thread-safety: any thread. */
KEEL_API unsigned keel_bulkhead_available(keel_bulkhead *b);
/** Callers waiting now.  Thread-safety: any thread. */
KEEL_API unsigned keel_bulkhead_queued(keel_bulkhead *b);
/** Refusals so far (queue full or wait timed out).  Thread-safety: any thread. */
KEEL_API uint64_t keel_bulkhead_rejected(keel_bulkhead *b);

/** Wrap b as a chain layer (name "bulkhead") whose cx is a keel_call *: acquire, run the
 *  rest of the chain, release.  A refusal returns KEEL_EFULL without running the rest and
 *  sets call->refused_by to the bulkhead's name.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM.  Thread-safety: the layer may run on any
 *  number of threads at once.  Ownership: the layer borrows b (which must outlive it);
 *  dispose frees only the layer. */
KEEL_API KEEL_NODISCARD keel_err keel_bulkhead_layer(keel_bulkhead *b, keel_layer **out);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_BULKHEAD_H */
