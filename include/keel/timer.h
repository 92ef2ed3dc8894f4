/*
 * keel/timer.h - the timing / execution-logging policy (seed 004 @timer and @log_execution):
 * a chain layer that measures the rest of the chain with a keel_clock, records the duration
 * in the histogram keel_call_duration_seconds{name,outcome} and, when asked, writes one
 * audit record per call on the logger "app.audit".
 *
 * outcome is "ok" for KEEL_OK, else keel_err_name() of the result ("KEEL_ETIMEOUT").
 * name is call->name.  The audit record (level INFO, message "call finished") carries the
 * fields name (string), outcome (string), duration_ms (integer) and attempt (integer,
 * call->attempt).
 *
 * Module contract: a timer holds no mutable state; every function is thread-safe.
 */
#ifndef KEEL_TIMER_H
#define KEEL_TIMER_H

#include <keel/common.h>
#include <keel/metrics.h>
#include <keel/policy.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_timer keel_timer; /* opaque */

/** Timer configuration.  Fill with keel_timer_config_default() then override. */
typedef struct keel_timer_config {
    size_t size;             /* sizeof(keel_timer_config) */
    const keel_clock *clock; /* NULL = system clock; borrowed, must outlive the timer */
    keel_metrics *metrics;   /* NULL = no histogram */
    const double *buckets;   /* histogram bounds in seconds (copied by the registry);
                                NULL = the registry's default buckets */
    size_t nbuckets;
    int audit_log;           /* 1 = one "app.audit" record per call; default 0 */
} keel_timer_config;

/** Defaults (see the field comments).  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_timer_config_default(keel_timer_config *cfg);

/** Create a timer.
 *  @return KEEL_OK, KEEL_EINVAL (NULL out/cfg, bad size, nbuckets without buckets, bad
 *  buckets; diag names the field), KEEL_EEXIST (histogram name taken by another family),
 *  KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: caller destroys *out with keel_timer_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_timer_create(keel_timer **out, const keel_timer_config *cfg,
                                                   keel_diag *diag);
/** Free the timer.  NULL is a no-op.  Thread-safety: no layer of it may be running. */
KEEL_API void keel_timer_destroy(keel_timer *t);

/** Record one finished call by hand (what the layer does after the inner chain returns):
 *  observe duration_ms / 1000 seconds and write the audit record if enabled.
 *  Thread-safety: any thread.  Errors: none (a metrics failure is ignored). */
KEEL_API void keel_timer_record(keel_timer *t, const keel_call *call, keel_err result,
                                uint64_t duration_ms);

/** Wrap t as a chain layer (name "timer") whose cx is a keel_call *: read the clock, run the
 *  rest of the chain, read the clock again, keel_timer_record(), return the inner result.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM.  Thread-safety: the layer may run on any number
 *  of threads at once.  Ownership: the layer borrows t; dispose frees only the layer. */
KEEL_API KEEL_NODISCARD keel_err keel_timer_layer(keel_timer *t, keel_layer **out);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_TIMER_H */
