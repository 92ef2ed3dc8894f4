/*
 * keel/retry.h - retry with exponential backoff and jitter, as a policy layer.
 *
 * Module contract: a keel_retry is created from a typed config, is immutable afterwards and
 * may be used from any number of threads at once (the default random source is a lock-free
 * atomic PRNG).  keel_retry_layer() wraps it as a keel_layer for a policy chain whose context
 * is a keel_call * (keel/policy.h): the layer re-runs the rest of the chain until it succeeds,
 * the error is not worth retrying, max_attempts is reached or the next wait would pass
 * max_elapsed_ms.  Waiting goes through the config's keel_clock, so tests never sleep.
 *
 * Backoff (AWS Architecture Blog "Exponential Backoff And Jitter"), for the retry after
 * failed attempt n (n = 1 for the first attempt):
 *     temp = min(max_delay_ms, base_delay_ms * multiplier^(n-1))
 *     NONE:         temp
 *     FULL:         random_between(0, temp)
 *     EQUAL:        ceil(temp/2) + random_between(0, floor(temp/2))
 *     DECORRELATED: min(max_delay_ms, random_between(base_delay_ms, prev * 3)), prev = base
 *                   before the first retry
 * random_between(lo, hi) = lo + rnd % (hi - lo + 1) (both ends inclusive, integers).
 *
 * Retry-After: after a failed attempt the wait is max(backoff, hint) where the hint is
 * max(call->retry_after_ms, call->wait_ms) (a server's Retry-After, or a refusing inner policy
 * such as a rate limiter).  The hint is honoured in full, never shortened: when it exceeds
 * max_delay_ms the layer stops retrying and returns the last error with call->wait_ms set to
 * the hint, so the caller can reschedule (reference.md section 4.4).
 */
#ifndef KEEL_RETRY_H
#define KEEL_RETRY_H

#include <keel/chain.h>
#include <keel/common.h>
#include <keel/policy.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Jitter strategies (AWS "Exponential Backoff And Jitter"). */
typedef enum keel_jitter {
    KEEL_JITTER_NONE = 0,
    KEEL_JITTER_FULL = 1,
    KEEL_JITTER_EQUAL = 2,
    KEEL_JITTER_DECORRELATED = 3
} keel_jitter;

/** Decide whether a failed attempt is worth retrying (1 yes, 0 no).  e is never KEEL_OK. */
typedef int (*keel_retry_predicate_fn)(const keel_call *call, keel_err e, void *ud);
/** Called before each wait (seed 003 before_sleep_log); call->attempt is the attempt that
 *  just failed. */
typedef void (*keel_retry_before_sleep_fn)(const keel_call *call, keel_err e, uint64_t delay_ms,
                                           void *ud);
/** A source of uniformly distributed 64-bit values (tests inject a fixed sequence). */
typedef uint64_t (*keel_retry_rand_fn)(void *ud);

/** Retry configuration.  Fill with keel_retry_config_default(), then override fields. */
typedef struct keel_retry_config {
    size_t size;             /* sizeof(keel_retry_config), set by _config_default() */
    const char *name;        /* for logs; copied at create (default "retry") */
    unsigned max_attempts;   /* total attempts including the first, >= 1 (default 3) */
    uint64_t max_elapsed_ms; /* give up rather than wait past this since the first attempt;
                                0 = no limit (default 0) */
    uint64_t base_delay_ms;  /* default 100 */
    uint64_t max_delay_ms;   /* cap on one wait, >= base_delay_ms (default 10000) */
    double multiplier;       /* >= 1.0 (default 2.0) */
    keel_jitter jitter;      /* default KEEL_JITTER_FULL */
    /* Which errors to retry; NULL = keel_policy_is_transient.  When the terminal sets
     * call->retriable to 0 or 1 that verdict wins over the predicate. */
    keel_retry_predicate_fn should_retry;
    void *should_retry_ud;
    /* Before each wait; NULL = log a WARNING on logger "app.resilience.retry" with the
     * operation, attempt, delay_ms and error name. */
    keel_retry_before_sleep_fn before_sleep;
    void *before_sleep_ud;
    /* Random source; NULL = an atomic splitmix64 generator seeded from keel_random_bytes. */
    keel_retry_rand_fn rand_u64;
    void *rand_ud;
    const keel_clock *clock; /* NULL = system clock; borrowed, must outlive the retry */
} keel_retry_config;

typedef struct keel_retry keel_retry;

/** Fill cfg with the defaults listed in keel_retry_config.
 *  Thread-safety: any thread. Ownership: writes *cfg only. Errors: none. */
KEEL_API void keel_retry_config_default(keel_retry_config *cfg);

/** Check a config without creating anything.
 *  @return KEEL_OK, or KEEL_EINVAL with a message naming the field in diag (may be NULL),
 *  e.g. "retry: max_attempts must be >= 1, got 0".
 *  Thread-safety: any thread. Ownership: borrows cfg. */
KEEL_API KEEL_NODISCARD keel_err keel_retry_config_validate(const keel_retry_config *cfg,
                                                            keel_diag *diag);

/** Create a retry policy from cfg (copied; clock and the user-data pointers are borrowed).
 *  @return KEEL_OK, KEEL_EINVAL (see keel_retry_config_validate), KEEL_ENOMEM.
 *  Thread-safety: any thread. Ownership: caller destroys *out with keel_retry_destroy(), after
 *  every layer made from it is gone. */
KEEL_API KEEL_NODISCARD keel_err keel_retry_create(keel_retry **out, const keel_retry_config *cfg,
                                                   keel_diag *diag);

/** Free the policy.  NULL is a no-op.  Thread-safety: not while a call runs through it. */
KEEL_API void keel_retry_destroy(keel_retry *r);

/** Wait before the retry that follows failed attempt `attempt` (1-based), by the formulas
 *  in the module comment.  prev_delay is the previous wait (0 before the first retry; used by
 *  DECORRELATED only); rnd is a uniform random value (ignored by NONE).  Pure function.
 *  @return the delay in milliseconds (0 if cfg is NULL or attempt is 0).
 *  Thread-safety: any thread. Ownership: borrows cfg. Errors: none. */
KEEL_API uint64_t keel_retry_delay_ms(const keel_retry_config *cfg, unsigned attempt,
                                      uint64_t prev_delay, uint64_t rnd);

/** Run fn(call, ud) under the policy without a chain (same semantics as the layer).
 *  @return KEEL_OK or the last attempt's error; KEEL_EINVAL for NULL arguments.
 *  Thread-safety: any thread. Ownership: borrows everything. */
KEEL_API keel_err keel_retry_run(keel_retry *r, keel_call *call,
                                 keel_err (*fn)(keel_call *call, void *ud), void *ud);

/** Wrap the policy as a chain layer (name "retry").  The layer borrows r: destroy the chain
 *  before r.  dispose frees only the layer.
 *  The layer sets call->attempt (1, 2, ...) and, before each attempt, resets
 *  call->retriable (-1), retry_after_ms, wait_ms and refused_by.  It returns KEEL_OK or the
 *  last attempt's error.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM.
 *  Thread-safety: any thread; the layer may run on many threads at once. */
KEEL_API KEEL_NODISCARD keel_err keel_retry_layer(keel_retry *r, keel_layer **out);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_RETRY_H */
