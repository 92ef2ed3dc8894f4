/* breaker_int.h - private backend hook of keel_breaker (not installed).
 *
 * A keel_breaker normally decides everything from its own in-memory state machine
 * (breaker.c).  A backend (breaker_redis.c) keeps the state elsewhere: breaker.c then asks the
 * backend first at every decision point (allow, record, manual transitions, stats) and runs
 * its own logic only when the backend answers KEEL_EAGAIN ("not handled": the backend is
 * unreachable and the call falls back to the local breaker).  The local state field stays a
 * mirror of what the backend last reported (keel__breaker_adopt()), so listeners, the state
 * gauge, keel_breaker_state_get() and the fallback all start from the shared state. */
#ifndef KEEL_BREAKER_INT_H
#define KEEL_BREAKER_INT_H

#include <keel/breaker.h>

typedef struct keel__breaker_backend {
    /* Decide a permission: KEEL_OK or KEEL_EOPEN (with *wait_ms), KEEL_EAGAIN = not handled. */
    keel_err (*allow)(void *impl, keel_breaker *b, uint64_t now_ms, uint64_t *wait_ms);
    /* Record an outcome (already validated): KEEL_OK, or KEEL_EAGAIN = not handled. */
    keel_err (*record)(void *impl, keel_breaker *b, keel_breaker_outcome outcome, int slow,
                       uint64_t now_ms);
    /* force_open / disable / reset: KEEL_OK, or KEEL_EAGAIN = not handled. */
    keel_err (*manual)(void *impl, keel_breaker *b, keel_breaker_state to);
    /* Counters of the shared window (out->not_permitted is filled by breaker.c):
     * KEEL_OK, or KEEL_EAGAIN = not handled. */
    keel_err (*stats)(void *impl, keel_breaker *b, uint64_t now_ms, keel_breaker_stats *out);
    /* Free impl (called by keel_breaker_destroy()). */
    void (*destroy)(void *impl);
} keel__breaker_backend;

/* Create a breaker whose decisions go to be/impl first.  cfg is validated as by
 * keel_breaker_create().  On success the breaker owns impl (be->destroy runs on destroy);
 * on failure the caller still owns it. */
keel_err keel__breaker_create_backend(const keel_breaker_config *cfg,
                                      const keel__breaker_backend *be, void *impl,
                                      keel_breaker **out, keel_diag *diag);

/* impl of b if b was created with backend be, else NULL. */
void *keel__breaker_backend_impl(const keel_breaker *b, const keel__breaker_backend *be);

/* The validated config of b (name, thresholds); borrowed. */
const keel_breaker_config *keel__breaker_config(const keel_breaker *b);

/* Make the local mirror follow a state learned from the backend: when the backend performed
 * (or saw) from -> to and the mirror is not at from, the mirror first moves to from (a
 * transition made elsewhere), then to to.  Each move sets the gauge and queues listener
 * events; breaker.c delivers them after the backend call returns, outside every lock.  Must
 * not be called with b's lock held (the backend never has it). */
void keel__breaker_adopt(keel_breaker *b, keel_breaker_state from, keel_breaker_state to,
                         uint64_t now_ms);

#endif /* KEEL_BREAKER_INT_H */
