/*
 * keel/policy.h - what every resilience policy shares: the call context a policy layer sees,
 * an injectable clock, and the outcome classification.
 *
 * A policy (retry, circuit breaker, rate limiter, cache, bulkhead, timeout) is a keel_layer
 * (keel/chain.h) whose context pointer is a keel_call *.  A chain of policies wraps a
 * terminal function - the protected operation - and the order is the caller's (seed 004:
 * idempotency outermost makes retry safe):
 *
 *     keel_call call;
 *     keel_call_init(&call, "stripe.charge", &my_request);
 *     keel_err e = keel_chain_run(policies, &call, charge_card, &gateway);
 *
 * The terminal returns KEEL_OK or an error, and may set call.retriable / call.retry_after_ms
 * (a server's Retry-After) to guide the retry layer.  Policies that answer without calling
 * further in (an open breaker, a rate limit, a full bulkhead) return their own error
 * (KEEL_EOPEN, KEEL_EAGAIN, KEEL_EFULL) and set call.wait_ms when waiting would help.
 *
 * Time comes from a keel_clock so every policy is testable without sleeping.
 */
#ifndef KEEL_POLICY_H
#define KEEL_POLICY_H

#include <keel/chain.h>
#include <keel/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A monotonic clock and a way to wait.  NULL members mean the real ones. */
typedef struct keel_clock {
    uint64_t (*now_ms)(void *ud);        /* monotonic milliseconds */
    void (*sleep_ms)(void *ud, uint64_t ms);
    void *ud;
} keel_clock;

/** The real clock (CLOCK_MONOTONIC, nanosleep). */
KEEL_API const keel_clock *keel_clock_system(void);
/** Read / wait on a clock (NULL = the system clock). */
KEEL_API uint64_t keel_clock_now_ms(const keel_clock *c);
KEEL_API void keel_clock_sleep_ms(const keel_clock *c, uint64_t ms);

/** A manual clock for tests: now only moves when told to; sleeping advances it. */
typedef struct keel_manual_clock {
    keel_clock clock; /* pass &mc.clock to policies */
    uint64_t now;
    uint64_t slept_total;
    unsigned sleeps;
} keel_manual_clock;
KEEL_API void keel_manual_clock_init(keel_manual_clock *mc, uint64_t start_ms);
KEEL_API void keel_manual_clock_advance(keel_manual_clock *mc, uint64_t ms);

/** The call context seen by policy layers.  Transparent; fill with keel_call_init(). */
typedef struct keel_call {
    size_t size;
    const char *name;        /* operation name, for metrics and logs (borrowed) */
    void *user;              /* the application's own context */
    int retriable;           /* set by the terminal: -1 unknown (default), 0 no, 1 yes */
    uint64_t retry_after_ms; /* set by the terminal from a server's Retry-After (0 = none) */
    uint64_t wait_ms;        /* set by a refusing policy: how long until a retry may pass */
    unsigned attempt;        /* set by the retry layer: 1 for the first attempt */
    const char *refused_by;  /* name of the policy that refused the call, if any */
} keel_call;

KEEL_API void keel_call_init(keel_call *call, const char *name, void *user);

/** Default outcome classification: which errors count as a failure of the protected
 *  dependency (for breakers) and which are worth retrying.  KEEL_OK is never a failure.
 *  Transient: KEEL_ETIMEOUT, KEEL_EIO, KEEL_EBUSY, KEEL_EAGAIN and the retriable payment
 *  errors (KEEL_EPAY_NETWORK, KEEL_EPAY_GATEWAY_TIMEOUT, KEEL_EPAY_RATE_LIMITED; keel/payment.h).
 *  Permanent: the rest - a card decline is never retried.
 *  call->retriable, when set by the terminal (0 or 1), overrides the default. */
KEEL_API int keel_policy_is_transient(const keel_call *call, keel_err e);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_POLICY_H */
