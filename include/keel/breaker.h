/*
 * keel/breaker.h - circuit breaker with resilience4j semantics (reference.md section 3.1).
 *
 * Module contract: a keel_breaker is thread-safe (one mutex per breaker; the critical sections
 * are O(1) for count-based windows and O(window seconds) for time-based ones).  It never
 * starts threads: the OPEN -> HALF_OPEN transition happens lazily, when a call arrives at or
 * after the end of the wait.  Time comes from the caller (now_ms arguments) or, for the
 * layer, from the config's keel_clock.
 *
 * States: CLOSED counts outcomes in a sliding window (the last N calls, or the calls of the
 * last N seconds in per-second buckets).  Once the window holds at least
 * minimum_number_of_calls (clamped to the window size for count-based windows), the breaker
 * opens when the failure rate >= failure_rate_threshold or the slow-call rate >=
 * slow_call_rate_threshold.  OPEN refuses calls with KEEL_EOPEN for wait_duration_in_open_ms,
 * then lets permitted_calls_in_half_open probes through (HALF_OPEN); when they have all been
 * recorded, the same thresholds over the probes decide OPEN again or CLOSED (with a fresh
 * window).  DISABLED lets everything through and never changes state by itself; FORCED_OPEN
 * refuses everything.  A call is slow when its duration is > slow_call_duration_ms (as in
 * resilience4j); slow failures count as both failed and slow.  Ignored outcomes count nowhere
 * (in HALF_OPEN they give the probe permit back).
 *
 * State-change listeners run outside the breaker's lock, in transition order, one
 * transition at a time; a listener may call back into the breaker (its own transitions are
 * delivered after it returns).
 */
#ifndef KEEL_BREAKER_H
#define KEEL_BREAKER_H

#include <keel/chain.h>
#include <keel/common.h>
#include <keel/metrics.h>
#include <keel/policy.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Breaker states; the values are those of the keel_breaker_state gauge. */
typedef enum keel_breaker_state {
    KEEL_BREAKER_CLOSED = 0,
    KEEL_BREAKER_OPEN = 1,
    KEEL_BREAKER_HALF_OPEN = 2,
    KEEL_BREAKER_DISABLED = 3,
    KEEL_BREAKER_FORCED_OPEN = 4
} keel_breaker_state;

/** Sliding window kinds. */
typedef enum keel_breaker_window {
    KEEL_BREAKER_COUNT_BASED = 0, /* the last sliding_window_size calls */
    KEEL_BREAKER_TIME_BASED = 1   /* the calls of the last sliding_window_size seconds */
} keel_breaker_window;

/** What happened to a permitted call. */
typedef enum keel_breaker_outcome {
    KEEL_BREAKER_SUCCESS = 0, /* slow if duration_ms > slow_call_duration_ms */
    KEEL_BREAKER_FAILURE = 1, /* also slow if duration_ms > slow_call_duration_ms */
    KEEL_BREAKER_IGNORED = 2  /* neither: not counted (ignore has priority over record) */
} keel_breaker_outcome;

typedef struct keel_breaker keel_breaker;

/** State-change listener: called once per transition, outside the breaker lock.
 *  name is the breaker's name (valid while the breaker lives). */
typedef void (*keel_breaker_listener_fn)(keel_breaker *b, const char *name,
                                         keel_breaker_state from, keel_breaker_state to,
                                         void *ud);
typedef struct keel_breaker_listener {
    keel_breaker_listener_fn fn;
    void *ud;
} keel_breaker_listener;

/** Most listeners a breaker takes. */
#define KEEL_BREAKER_MAX_LISTENERS 16

/** Decide whether an error is a failure of the dependency (1) or ignored (0). e != KEEL_OK. */
typedef int (*keel_breaker_predicate_fn)(const keel_call *call, keel_err e, void *ud);
/** Called by the layer instead of failing with KEEL_EOPEN when the call is refused; its
 *  result is the layer's result.  call->refused_by and call->wait_ms are already set. */
typedef keel_err (*keel_breaker_fallback_fn)(keel_call *call, keel_err refused, void *ud);

/** Breaker configuration; defaults are resilience4j's.  Fill with
 *  keel_breaker_config_default(), then override fields. */
typedef struct keel_breaker_config {
    size_t size;                          /* set by _config_default() */
    const char *name;                     /* copied; metrics label and refused_by (default
                                             "breaker") */
    keel_breaker_window window_type;      /* default COUNT_BASED */
    uint32_t sliding_window_size;         /* calls or seconds, 1..1000000 calls / 1..86400 s
                                             (default 100) */
    uint32_t minimum_number_of_calls;     /* >= 1 (default 100) */
    double failure_rate_threshold;        /* percent in (0, 100] (default 50) */
    double slow_call_rate_threshold;      /* percent in (0, 100] (default 100) */
    uint64_t slow_call_duration_ms;       /* >= 1 (default 60000) */
    uint64_t wait_duration_in_open_ms;    /* >= 1 (default 60000) */
    uint32_t permitted_calls_in_half_open; /* >= 1 (default 10) */
    /* Layer: which errors are failures; NULL = keel_policy_is_transient (others ignored). */
    keel_breaker_predicate_fn is_failure;
    void *is_failure_ud;
    /* Layer: run instead of returning KEEL_EOPEN when refused (NULL = none). */
    keel_breaker_fallback_fn fallback;
    void *fallback_ud;
    /* State-change listeners, copied at create (at most KEEL_BREAKER_MAX_LISTENERS). */
    const keel_breaker_listener *listeners;
    size_t nlisteners;
    const keel_clock *clock; /* layer only; NULL = system clock; borrowed */
    /* Optional: gauge keel_breaker_state{name} and counter
     * keel_breaker_calls_total{name,outcome} (success, failure, slow, ignored,
     * not_permitted).  Borrowed; must outlive the breaker. */
    keel_metrics *metrics;
} keel_breaker_config;

/** Counters of the current window (CLOSED/OPEN) or of the half-open probes (HALF_OPEN). */
typedef struct keel_breaker_stats {
    keel_breaker_state state;
    uint32_t calls;        /* buffered calls */
    uint32_t failed;
    uint32_t slow;
    double failure_rate;   /* percent, -1 while below minimum_number_of_calls */
    double slow_rate;      /* percent, -1 while below minimum_number_of_calls */
    uint64_t not_permitted; /* refusals since create */
} keel_breaker_stats;

/** Fill cfg with the defaults.  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_breaker_config_default(keel_breaker_config *cfg);

/** Check a config.  @return KEEL_OK or KEEL_EINVAL with a message naming the field, e.g.
 *  "breaker: failure_rate_threshold must be in (0, 100], got 0".
 *  Thread-safety: any thread. Ownership: borrows cfg. */
KEEL_API KEEL_NODISCARD keel_err keel_breaker_config_validate(const keel_breaker_config *cfg,
                                                              keel_diag *diag);

/** Create a breaker in CLOSED state.
 *  @return KEEL_OK, KEEL_EINVAL (see validate), KEEL_ENOMEM, or an error registering the
 *  metrics (KEEL_EEXIST when the names are taken with other labels).
 *  Ownership: caller destroys *out with keel_breaker_destroy() after its layers are gone. */
KEEL_API KEEL_NODISCARD keel_err keel_breaker_create(keel_breaker **out,
                                                     const keel_breaker_config *cfg,
                                                     keel_diag *diag);
/** Free the breaker.  NULL is a no-op.  Thread-safety: not while calls use it. */
KEEL_API void keel_breaker_destroy(keel_breaker *b);

/** Ask permission for a call at now_ms.  In HALF_OPEN a KEEL_OK consumes one probe permit;
 *  the caller must then keel_breaker_record() the outcome.
 *  @return KEEL_OK, KEEL_EOPEN (refused: OPEN, FORCED_OPEN, or no probe permit left),
 *  KEEL_EINVAL.  wait_ms (may be NULL) receives the time left in OPEN (0 otherwise).
 *  Thread-safety: any thread. */
KEEL_API keel_err keel_breaker_allow(keel_breaker *b, uint64_t now_ms, uint64_t *wait_ms);

/** Record the outcome of a permitted call that took duration_ms, finishing at now_ms.
 *  @return KEEL_OK or KEEL_EINVAL.  Thread-safety: any thread; does not allocate. */
KEEL_API keel_err keel_breaker_record(keel_breaker *b, keel_breaker_outcome outcome,
                                      uint64_t duration_ms, uint64_t now_ms);

/** Current state (an OPEN breaker whose wait is over still reads OPEN until the next
 *  allow()).  Thread-safety: any thread. Errors: NULL gives KEEL_BREAKER_CLOSED. */
KEEL_API keel_breaker_state keel_breaker_state_get(keel_breaker *b);
/** Name of a state: "closed", "open", "half_open", "disabled", "forced_open" ("?" else). */
KEEL_API const char *keel_breaker_state_name(keel_breaker_state s);
/** Snapshot of the counters.  @return KEEL_OK or KEEL_EINVAL. Thread-safety: any thread. */
KEEL_API keel_err keel_breaker_stats_get(keel_breaker *b, uint64_t now_ms,
                                         keel_breaker_stats *out);

/** Go to FORCED_OPEN (refuse everything) until reset().  Listeners are told.
 *  @return KEEL_OK or KEEL_EINVAL. Thread-safety: any thread. */
KEEL_API keel_err keel_breaker_force_open(keel_breaker *b);
/** Go to DISABLED (allow everything, never trip) until reset(). */
KEEL_API keel_err keel_breaker_disable(keel_breaker *b);
/** Go back to CLOSED with an empty window (from any state). */
KEEL_API keel_err keel_breaker_reset(keel_breaker *b);

/** Wrap the breaker as a chain layer (name = breaker name): allow -> next -> record, timing
 *  the call with the config's clock and classifying errors with is_failure.  On refusal sets
 *  call->refused_by to the breaker name and call->wait_ms to the time left in OPEN, then
 *  returns fallback(call, KEEL_EOPEN, ud) if set, else KEEL_EOPEN.
 *  The layer borrows b; dispose frees only the layer.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM. Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_breaker_layer(keel_breaker *b, keel_layer **out);

/* ===================================================== Redis backend (keel issue 4) ===
 * A breaker whose state is shared by every process (and host) that creates one with the
 * same key on the same Redis, so that failures seen by one keeld open the breaker for all.
 * keel_breaker_redis_create() returns an ordinary keel_breaker *: allow(), record(),
 * state_get(), stats_get(), force_open(), disable(), reset(), the chain layer, listeners and
 * metrics work on it unchanged.
 *
 * Shared state.  Two keys (hash-tagged so that they live in one Redis Cluster slot):
 *   "<key>"    a hash: state (st), transition epoch (ep), end of the OPEN wait (ou), half-open
 *              permits taken / probes recorded / failed / slow (hp hc hf hs), the window
 *              totals (wt wf ws) and the window cursor (pos fill for count-based, ls = newest
 *              second for time-based);
 *   "<key>:w"  the window: COUNT_BASED keeps an exact ring of the last sliding_window_size
 *              outcomes as a string of one byte per call ('0' ok, '1' failed, '2' slow, '3'
 *              slow failure - SETRANGE/GETRANGE, at most 1 MB); TIME_BASED keeps one hash
 *              field per second bucket ("sec total failed slow"), evicted with
 *              subtract-on-evict as the window moves.
 * key defaults to "keel:cb:{<name>}"; on Redis Cluster a key given by hand needs a {hash tag}
 * too.  Keys have no TTL (breakers are few and named); DEL both to forget a retired breaker.  Every operation is one Lua script (EVALSHA through
 * keel_redis_eval(), reloaded on NOSCRIPT), so each transition is an atomic compare-and-set:
 * of two instances arriving after the OPEN wait only one moves OPEN -> HALF_OPEN, and across
 * all instances exactly permitted_calls_in_half_open probes get a permit.
 *
 * Semantics versus the in-memory breaker.  Thresholds, minimum calls, slow calls, ignored
 * outcomes, HALF_OPEN probes, FORCED_OPEN and DISABLED decide exactly as keel_breaker does,
 * over the calls of all instances, with two approximations:
 *  - Outcomes recorded in CLOSED are sent in batches (below); a batch is appended to the
 *    count-based ring grouped by kind (successes, slow successes, failures, slow failures)
 *    rather than in call order, and all of it is stamped with the flush time (time-based).
 *    With refresh_ms = 0 every outcome is sent at once, in order.
 *  - Outcomes recorded while the shared state is not the one this instance cached are
 *    judged by the shared state (a CLOSED-era outcome arriving after another instance
 *    opened the breaker is dropped, as the in-memory breaker drops records in OPEN).
 *
 * Caching and staleness.  Each instance caches the shared state for refresh_ms (default
 * 100 ms, measured with the now_ms of its own calls).  While the cache is fresh, allow() in
 * CLOSED, DISABLED, FORCED_OPEN and OPEN-before-the-wait-ends answers without Redis, and
 * record() in CLOSED only adds to a local batch; the first allow() or record() after
 * refresh_ms sends the batch and reads the state back in one script call.  So another
 * instance's transition is seen at most refresh_ms (plus one call) late, opening happens at
 * most refresh_ms after the threshold is crossed, and in steady CLOSED state an instance
 * makes about one Redis call per refresh_ms per breaker, whatever its call rate (measured on
 * loopback: about 0.1 us per allow+record with refresh_ms = 100, against about 70 us - two
 * round trips - with refresh_ms = 0).  Calls
 * that must be exact go to Redis every time: allow() after the OPEN wait or in HALF_OPEN
 * (permits), and record() in HALF_OPEN (probe outcomes).  A HALF_OPEN refusal (no permit
 * left) is cached for refresh_ms.  keel_breaker_state_get() returns the cached state
 * without calling Redis; keel_breaker_stats_get() reads the shared counters.
 *
 * Time.  KEEL_BREAKER_TIME_REDIS (default): the scripts read the server's TIME, so instances
 * on different hosts (whose monotonic clocks, used by the layer, are unrelated) share one
 * clock; now_ms arguments then only drive the local cache and the fallback.
 * KEEL_BREAKER_TIME_CLIENT: the caller's now_ms is passed to the scripts (deterministic
 * tests with a keel_manual_clock, or callers that all pass the wall clock); it must be below
 * 2^43, else the call uses the local breaker.
 *
 * Listeners.  Fired on the instance that performed a transition, and on every instance that
 * observes one made elsewhere (at its next Redis round trip): from the state it last saw to
 * the state it finds, through the "from" state of the last transition when that differs.
 * Intermediate transitions made elsewhere between two round trips are not replayed (an
 * observer may see OPEN -> CLOSED for OPEN -> HALF_OPEN -> CLOSED, or nothing for
 * OPEN -> HALF_OPEN -> OPEN).  The state gauge follows the same rule.
 *
 * Redis unreachable (fail-safe).  When a script call fails (connection, timeout, error
 * reply) the call is decided by the local per-process breaker, which starts from the last
 * shared state seen, with an empty window; the failure is counted
 * (keel_breaker_redis_errors(), keel_breaker_backend_errors_total{name} with metrics) and a
 * warning is logged once per outage on logger "keel.breaker".  For retry_ms (default 1000)
 * the instance stays local without trying Redis; then one call tries again.  On success the
 * instance adopts the shared state again (local transitions made during the outage, and a
 * batch that could not be sent, are not written to Redis); recovery is logged.  Manual
 * transitions made during an outage apply to this instance only.
 */

typedef struct keel_redis keel_redis;

/** Where the breaker scripts get the time from (see above). */
typedef enum keel_breaker_time {
    KEEL_BREAKER_TIME_REDIS = 0,
    KEEL_BREAKER_TIME_CLIENT = 1
} keel_breaker_time;

/** Longest key accepted (bytes). */
#define KEEL_BREAKER_KEY_MAX 256
/** Largest refresh_ms and retry_ms accepted. */
#define KEEL_BREAKER_REFRESH_MAX_MS 60000u

typedef struct keel_breaker_redis_config {
    size_t size;            /* set by _config_default() */
    keel_redis *redis;      /* required; borrowed, must outlive the breaker */
    const char *key;        /* NULL = "keel:cb:{<name>}"; copied; at most 256 bytes */
    keel_breaker_time time; /* KEEL_BREAKER_TIME_REDIS */
    uint32_t refresh_ms;    /* cache lifetime, 0..60000 (100); 0 = Redis on every call */
    uint32_t retry_ms;      /* stay local after a failure, 0..60000 (1000) */
    keel_metrics *metrics;  /* keel_breaker_backend_errors_total{name}; NULL = none;
                               borrowed, must outlive the breaker */
} keel_breaker_redis_config;

/** Fill rcfg with the defaults shown above (redis NULL).
 *  Thread-safety: any thread.  Ownership: writes *rcfg only.  Errors: none. */
KEEL_API void keel_breaker_redis_config_default(keel_breaker_redis_config *rcfg);

/** Create a breaker with the settings of cfg (validated as by keel_breaker_create()) whose
 *  state is shared in Redis as described above.  Nothing is sent to Redis here.  Bad
 *  configuration gives KEEL_EINVAL with a diag naming the field ("breaker: redis must not
 *  be NULL", "breaker: refresh_ms must be at most 60000, got 70000", ...).
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ECRYPTO (script hash), KEEL_ENOMEM, or the metrics
 *  errors of keel_breaker_create().
 *  Thread-safety: any thread; the breaker is thread-safe like any keel_breaker.
 *  Ownership: caller destroys with keel_breaker_destroy() before closing rcfg->redis. */
KEEL_API KEEL_NODISCARD keel_err keel_breaker_redis_create(keel_breaker **out,
                                                           const keel_breaker_config *cfg,
                                                           const keel_breaker_redis_config *rcfg,
                                                           keel_diag *diag);

/** Redis failures seen by a breaker from keel_breaker_redis_create() (each one made a call
 *  fall back to the local breaker); 0 for an in-memory breaker or NULL.
 *  Thread-safety: any thread (atomic read).  Ownership: borrows b.  Errors: none. */
KEEL_API uint64_t keel_breaker_redis_errors(const keel_breaker *b);

/** 1 while a Redis breaker runs on its local fallback (last Redis call failed), else 0.
 *  Thread-safety: any thread.  Ownership: borrows b.  Errors: none (NULL gives 0). */
KEEL_API int keel_breaker_redis_degraded(const keel_breaker *b);

/* ================================================= end of Redis backend (issue 4) === */

#ifdef __cplusplus
}
#endif
#endif /* KEEL_BREAKER_H */
