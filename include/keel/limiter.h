/*
 * keel/limiter.h - in-memory rate limiters (reference.md section 5).
 *
 * One interface, four algorithms chosen in the config:
 *   KEEL_LIMIT_GCRA            rate per period + burst (redis-cell / throttled semantics)
 *   KEEL_LIMIT_TOKEN_BUCKET    capacity + refill per second
 *   KEEL_LIMIT_SLIDING_LOG     limit per window, exact; memory per key = limit timestamps
 *   KEEL_LIMIT_SLIDING_WINDOW  limit per window, two-bucket weighted counter
 *
 * State is kept per key (a client IP, a user id, a route) in a sharded hash table: each shard
 * has its own mutex, so takes on different keys rarely contend.  The number of keys is capped
 * (max_keys); when a shard is full its least recently used key is evicted, so memory never grows
 * without bound.  Time comes only from the keel_clock in the config.
 *
 * Module contract: a keel_limiter is thread-safe; keel_limiter_take() may be called from any
 * number of threads at once.
 */
#ifndef KEEL_LIMITER_H
#define KEEL_LIMITER_H

#include <keel/chain.h>
#include <keel/common.h>
#include <keel/policy.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum keel_limit_algo {
    KEEL_LIMIT_GCRA = 1,
    KEEL_LIMIT_TOKEN_BUCKET = 2,
    KEEL_LIMIT_SLIDING_LOG = 3,
    KEEL_LIMIT_SLIDING_WINDOW = 4
} keel_limit_algo;

/** Longest key accepted by keel_limiter_take() (bytes). */
#define KEEL_LIMITER_KEY_MAX 512
/** Largest limit a sliding log accepts (it stores one timestamp per allowed request). */
#define KEEL_LIMITER_LOG_MAX 100000u

typedef struct keel_limiter_config {
    size_t size;
    keel_limit_algo algorithm; /* KEEL_LIMIT_GCRA */
    const char *name;          /* "limiter": copied; shown in keel_call.refused_by */
    /* GCRA: `rate` requests per `period_ms`, plus `burst` extra at once (limit = burst + 1) */
    uint32_t rate;      /* 10 */
    uint64_t period_ms; /* 1000 */
    uint32_t burst;     /* 10 (0 allowed: one request at a time, strictly paced) */
    /* token bucket */
    uint32_t capacity;     /* 10 */
    uint32_t refill_per_s; /* 10 */
    /* sliding log / sliding window counter */
    uint32_t limit;     /* 10 */
    uint64_t window_ms; /* 1000 */
    /* key table */
    size_t max_keys; /* 10000 */
    unsigned shards; /* 64 (rounded up to a power of two, at most 1024) */
    const keel_clock *clock; /* NULL = system clock; borrowed */
} keel_limiter_config;

/** Fill cfg with the defaults shown above.  Thread-safety: any thread. */
KEEL_API void keel_limiter_config_default(keel_limiter_config *cfg);

/** The outcome of one take. */
typedef struct keel_limit_result {
    uint32_t limit;          /* most a key may take at once (GCRA: burst + 1) */
    uint32_t remaining;      /* what is left after this take */
    uint64_t reset_ms;       /* time until the key is back to a full quota */
    uint64_t retry_after_ms; /* 0 when allowed; UINT64_MAX when cost can never fit */
} keel_limit_result;

typedef struct keel_limiter keel_limiter;

/** Create a limiter.  Zero rate/period/capacity/refill/limit/window/max_keys, a cost-free
 *  config or an unknown algorithm gives KEEL_EINVAL with a diag naming the field
 *  ("limiter: rate must be > 0, got 0").
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM.
 *  Ownership: caller destroys with keel_limiter_destroy().  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_limiter_create(const keel_limiter_config *cfg,
                                                     keel_limiter **out, keel_diag *diag);
/** Free the limiter and every key.  No take may be running.  NULL is a no-op. */
KEEL_API void keel_limiter_destroy(keel_limiter *l);

/** Take cost units (0 = peek, never refused, changes nothing) for key.
 *  @return KEEL_OK (allowed), KEEL_EAGAIN (refused: out->retry_after_ms says when to retry,
 *  UINT64_MAX if cost exceeds the limit), KEEL_EINVAL (key empty or longer than
 *  KEEL_LIMITER_KEY_MAX), KEEL_ENOMEM (new key could not be stored).
 *  out may be NULL.  Thread-safety: any thread (the key's shard is locked briefly).
 *  Ownership: the key is copied. */
KEEL_API keel_err keel_limiter_take(keel_limiter *l, keel_str key, uint32_t cost,
                                    keel_limit_result *out);

/** The advertised policy for RateLimit-Policy: quota (limit) and window in ms (GCRA:
 *  period * (burst + 1) / rate; token bucket: time to refill the whole capacity). */
KEEL_API void keel_limiter_policy(const keel_limiter *l, uint32_t *limit, uint64_t *window_ms);
/** Number of keys currently stored (for tests and metrics).  Thread-safety: any thread. */
KEEL_API size_t keel_limiter_keys(keel_limiter *l);
/** Name from the config (borrowed, lives as long as the limiter). */
KEEL_API const char *keel_limiter_name(const keel_limiter *l);

/** Key for a keel_call: returns the key (borrowed, must stay valid until the take returns). */
typedef keel_str (*keel_limiter_key_fn)(const keel_call *call, void *ud);

/** Wrap the limiter as a chain layer for keel_call contexts.  Each call takes 1 unit for
 *  key_fn(call, ud) (key_fn NULL = call->name).  A refused call does not run the inner chain:
 *  call->wait_ms = retry_after_ms, call->refused_by = the limiter name, KEEL_EAGAIN returned.
 *  Ownership: the layer borrows l (which must outlive it); dispose frees only the layer.
 *  @return KEEL_OK, KEEL_EINVAL (l or out NULL), KEEL_ENOMEM. */
KEEL_API KEEL_NODISCARD keel_err keel_limiter_layer(keel_limiter *l, keel_limiter_key_fn key_fn,
                                                    void *ud, keel_layer **out);

/* ---------------------------------------------------- HTTP middleware -- */

typedef struct keel_mw_rate_limit_config {
    size_t size;
    keel_limiter *limiter;            /* required; borrowed, must outlive the layer */
    const char *key_header;           /* NULL = client IP; else this request header (falls
                                         back to the client IP when absent) */
    const char *const *path_prefixes; /* NULL-terminated; NULL or empty = every path */
    int skip_preflight;               /* 1: CORS preflights are never limited */
    /* Per-user limits: key by the authenticated principal's subject (keel/auth.h) when there
     * is one, else by key_header / client IP.  The layer must then sit after the auth layer
     * (e.g. wrap a route's handler chain), since the standard chain puts rate limiting first. */
    int key_user;
} keel_mw_rate_limit_config;

/** Defaults: no limiter, client IP key, every path, skip_preflight = 1. */
KEEL_API void keel_mw_rate_limit_config_default(keel_mw_rate_limit_config *cfg);

/** HTTP rate-limit layer (context keel_ctx *; put it in keel_http_chain_config.rate_limit).
 *  Every limited response carries `RateLimit-Policy: "default";q=<limit>;w=<window_s>` and
 *  `RateLimit: "default";r=<remaining>;t=<reset_s>`; a refused request is answered 429
 *  application/problem+json, detail "Rate limit exceeded; retry in N seconds.", with
 *  `Retry-After: N` (seconds, rounded up).  Prefixes match whole path segments
 *  ("/api/auth/login" matches itself and "/api/auth/login/x", not "/api/auth/loginx").
 *  The config is copied.  @return KEEL_OK, KEEL_EINVAL (no limiter), KEEL_ENOMEM. */
KEEL_API KEEL_NODISCARD keel_err keel_mw_rate_limit(const keel_mw_rate_limit_config *cfg,
                                                    keel_layer **out);


/* ===================================================== Redis backend (keel issue 4) ===
 * The same four algorithms kept in Redis, so that every keeld process shares one budget per
 * key.  Each take is one atomic Lua script (EVALSHA through keel_redis_eval(), reloaded on
 * NOSCRIPT) that makes exactly the decision the in-memory limiter makes for the same
 * parameters and clock, and returns the same keel_limit_result.  keel_limiter_redis_create()
 * returns an ordinary keel_limiter *: keel_limiter_take(), _policy(), _name(), _layer(),
 * keel_mw_rate_limit() and keel_limiter_destroy() work on it unchanged (keel_limiter_keys()
 * reports 0: the keys live in Redis).
 *
 * Keys.  "<prefix><key>", prefix defaulting to "keel:rl:<name>:".  Each key is a string
 * (GCRA), a hash (token bucket, sliding window) or a list (sliding log).  Every write sets
 * PEXPIRE to the time after which the state equals a fresh key, plus ttl_extra_ms (slack for
 * clock skew between processes), so idle keys vanish.  A key must not contain a NUL byte.
 *
 * Time.  KEEL_LIMITER_TIME_CLIENT (default): the caller's clock is passed to the script as an
 * argument - cfg->clock when set (tests: a keel_manual_clock), else the wall clock
 * (keel_time_wall_ms(), not the monotonic one, because processes on different hosts share
 * the keys).  Hosts must then keep their clocks in sync (NTP); skew shifts decisions by the
 * skew.  KEEL_LIMITER_TIME_REDIS: the script reads the server's TIME instead, so every
 * client uses one clock whatever their skew; cfg->clock is ignored (not deterministic).
 * Clock values must be below 2^43 ms (about the year 2248): the scripts compute in Lua
 * doubles, exact below 2^53.
 *
 * Failures.  When Redis cannot be reached or answers an error, the error is counted
 * (keel_limiter_redis_errors(), and rate_limiter_backend_errors_total{limiter} when metrics
 * are given) and on_error decides:
 *   KEEL_LIMITER_FAIL_OPEN (default): the take is allowed (KEEL_OK, remaining = limit).  A
 *     rate limit protects capacity; a Redis outage should not turn into an outage of every
 *     API behind it (Stripe runs its Redis limiters fail-open, reference.md 5.3).  The
 *     counter makes the outage visible.
 *   KEEL_LIMITER_FAIL_CLOSED: the take is refused with KEEL_EIO, for limits where letting
 *     traffic through unchecked is worse than refusing it (login attempts, card testing).
 *     The chain layer then refuses the call with KEEL_EIO.
 */

typedef struct keel_redis keel_redis;
typedef struct keel_metrics keel_metrics;

/** Where the scripts get the time from (see above). */
typedef enum keel_limiter_time {
    KEEL_LIMITER_TIME_CLIENT = 0,
    KEEL_LIMITER_TIME_REDIS = 1
} keel_limiter_time;

/** What a take does when Redis fails (see above). */
typedef enum keel_limiter_on_error {
    KEEL_LIMITER_FAIL_OPEN = 0,
    KEEL_LIMITER_FAIL_CLOSED = 1
} keel_limiter_on_error;

/** Longest key prefix accepted (bytes). */
#define KEEL_LIMITER_PREFIX_MAX 256

typedef struct keel_limiter_redis_config {
    size_t size;
    keel_redis *redis;              /* required; borrowed, must outlive the limiter */
    const char *prefix;             /* NULL = "keel:rl:<name>:"; copied */
    keel_limiter_time time;         /* KEEL_LIMITER_TIME_CLIENT */
    keel_limiter_on_error on_error; /* KEEL_LIMITER_FAIL_OPEN */
    uint32_t ttl_extra_ms;          /* 1000; at most 86400000 */
    keel_metrics *metrics;          /* NULL = none; borrowed, must outlive the limiter */
} keel_limiter_redis_config;

/** Fill rcfg with the defaults shown above (redis NULL).
 *  Thread-safety: any thread.  Ownership: writes *rcfg only.  Errors: none. */
KEEL_API void keel_limiter_redis_config_default(keel_limiter_redis_config *rcfg);

/** Create a Redis-backed limiter with the algorithm and parameters of cfg (validated as by
 *  keel_limiter_create(); max_keys and shards are ignored) and the backend settings of rcfg.
 *  Nothing is sent to Redis here.  Bad configuration gives KEEL_EINVAL with a diag naming
 *  the field ("limiter: redis must not be NULL", "limiter: prefix must be ...", and for
 *  Lua's 53-bit arithmetic "limiter: burst ..." / "limiter: limit ...").
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ECRYPTO (script hash), KEEL_ENOMEM.
 *  Thread-safety: any thread; the limiter is thread-safe like any keel_limiter.
 *  Ownership: caller destroys with keel_limiter_destroy() before closing rcfg->redis. */
KEEL_API KEEL_NODISCARD keel_err keel_limiter_redis_create(const keel_limiter_config *cfg,
                                                           const keel_limiter_redis_config *rcfg,
                                                           keel_limiter **out, keel_diag *diag);

/** Redis failures seen by a limiter from keel_limiter_redis_create() (failed-open and
 *  failed-closed takes alike); 0 for an in-memory limiter or NULL.
 *  Thread-safety: any thread (atomic read).  Ownership: borrows l.  Errors: none. */
KEEL_API uint64_t keel_limiter_redis_errors(const keel_limiter *l);

/* ================================================= end of Redis backend (issue 4) === */

#ifdef __cplusplus
}
#endif
#endif /* KEEL_LIMITER_H */
