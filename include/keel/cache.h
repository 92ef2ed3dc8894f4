/*
 * keel/cache.h - a thread-safe TTL + LRU cache of byte strings, and a policy layer that
 * answers keel_call chains from it (seed 004 `cached(ttl_seconds=300)`).
 *
 * Module contract: keys and values are byte strings; the cache copies both.  An entry
 * set at time t with ttl T is a hit while now < t + T and a miss from t + T on (expired
 * entries are reclaimed when touched, when space is needed, or by keel_cache_purge()).
 * When a set would exceed max_entries or max_bytes, least-recently-used entries are
 * evicted first.  The byte size of an entry is key length + value length.  One mutex per
 * cache; every function may be called from any thread.
 */
#ifndef KEEL_CACHE_H
#define KEEL_CACHE_H

#include <keel/common.h>
#include <keel/core.h>
#include <keel/metrics.h>
#include <keel/policy.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_cache keel_cache; /* opaque */

/** Cache configuration.  Fill with keel_cache_config_default() then override. */
typedef struct keel_cache_config {
    size_t size;              /* sizeof(keel_cache_config) */
    const char *name;         /* label value for metrics (copied); default "cache" */
    size_t max_entries;       /* >= 1; default 1024 */
    size_t max_bytes;         /* cap on key+value bytes held; 0 = no byte cap (default) */
    uint64_t ttl_ms;          /* default time to live, >= 1; default 300000 (5 minutes) */
    const keel_clock *clock;  /* NULL = system clock; borrowed, must outlive the cache */
    keel_metrics *metrics;    /* NULL = none; else keel_cache_requests_total{cache,result} */
} keel_cache_config;

/** Counters since creation (or the last keel_cache_clear(), which keeps them). */
typedef struct keel_cache_stats {
    uint64_t hits;
    uint64_t misses;      /* expired lookups included */
    uint64_t evictions;   /* live entries dropped for room (LRU) */
    uint64_t expirations; /* expired entries reclaimed */
    size_t entries;       /* entries held now (expired but not yet reclaimed included) */
    size_t bytes;         /* key+value bytes held now */
} keel_cache_stats;

/** Defaults (see the field comments).  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_cache_config_default(keel_cache_config *cfg);

/** Create a cache.
 *  @return KEEL_OK, KEEL_EINVAL (NULL out/cfg, bad size, max_entries 0, ttl_ms 0; diag names
 *  the field), KEEL_EEXIST (metric name taken by another type), KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: caller destroys *out with keel_cache_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_cache_create(keel_cache **out,
                                                   const keel_cache_config *cfg,
                                                   keel_diag *diag);
/** Free the cache and every entry.  NULL is a no-op.
 *  Thread-safety: no other call on c may run or follow.  Ownership: frees c. */
KEEL_API void keel_cache_destroy(keel_cache *c);

/** Look key up; on a hit append the value to out (out->max applies).
 *  @return KEEL_OK (hit), KEEL_ENOTFOUND (miss or expired), KEEL_EINVAL, KEEL_ETOOBIG /
 *  KEEL_ENOMEM (value did not fit in out; counted as a hit).
 *  Thread-safety: any thread.  Ownership: the value is copied into out. */
KEEL_API KEEL_NODISCARD keel_err keel_cache_get(keel_cache *c, keel_str key, keel_buf *out);
/** Like keel_cache_get(), into caller storage (no allocation for the in-memory cache): on a
 *  hit *len is the value's length and, when it is at most cap, the value is in dst.
 *  @return KEEL_OK (hit, copied), KEEL_ETOOBIG (hit, value longer than cap: dst untouched),
 *  KEEL_ENOTFOUND, KEEL_EINVAL (c, len or, with cap > 0, dst NULL), KEEL_ENOMEM.
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_cache_get_into(keel_cache *c, keel_str key, void *dst,
                                                     size_t cap, size_t *len);
/** Insert or overwrite key with the default ttl.  See keel_cache_set_ttl(). */
KEEL_API KEEL_NODISCARD keel_err keel_cache_set(keel_cache *c, keel_str key, keel_str value);
/** Insert or overwrite key with ttl_ms (0 = the default ttl); the entry becomes the most
 *  recently used; LRU entries are evicted as needed.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ETOOBIG (key+value alone exceed max_bytes; any old
 *  entry for key is removed), KEEL_ENOMEM (old entry kept).
 *  Thread-safety: any thread.  Ownership: key and value are copied. */
KEEL_API KEEL_NODISCARD keel_err keel_cache_set_ttl(keel_cache *c, keel_str key, keel_str value,
                                                    uint64_t ttl_ms);
/** Remove key.  @return KEEL_OK, KEEL_ENOTFOUND (absent or already expired), KEEL_EINVAL.
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_cache_delete(keel_cache *c, keel_str key);
/** Remove every entry (stats counters are kept).  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_cache_clear(keel_cache *c);
/** Reclaim every expired entry now; returns how many were reclaimed.
 *  Thread-safety: any thread (O(entries) under the lock). */
KEEL_API size_t keel_cache_purge(keel_cache *c);
/** Snapshot the counters into out.  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_cache_get_stats(keel_cache *c, keel_cache_stats *out);

/** How the cache layer keys a keel_call and captures / replays its result.
 *  key:   the cache key of the call; KEEL_STR_NULL (ptr NULL) bypasses the cache for this
 *         call.  The bytes must stay valid until the layer returns (e.g. point into
 *         call->user).
 *  load:  on a hit, fill the caller's result from the cached bytes (borrowed, valid only
 *         during the call).  A non-OK return discards the entry and the call runs as a miss.
 *  store: on a miss whose inner chain returned KEEL_OK, serialise the result into out
 *         (cap: max_bytes, or 1 MiB without a byte cap).  A non-OK return skips caching;
 *         the call still returns KEEL_OK.
 *  ud:    passed to all three (borrowed). */
typedef struct keel_cache_binding {
    keel_str (*key)(const keel_call *call, void *ud);
    keel_err (*load)(keel_call *call, keel_str cached, void *ud);
    keel_err (*store)(const keel_call *call, keel_buf *out, void *ud);
    void *ud;
} keel_cache_binding;

/** Wrap c as a chain layer (name "cache") whose cx is a keel_call *.  On a hit the inner
 *  layers and the terminal are skipped and the layer returns load()'s KEEL_OK.
 *  @return KEEL_OK, KEEL_EINVAL (NULL c/binding/out, or a NULL key/load/store), KEEL_ENOMEM.
 *  Thread-safety: the layer may run on any number of threads at once.
 *  Ownership: the layer borrows c (which must outlive it) and copies *binding; the layer's
 *  dispose frees only the layer. */
KEEL_API KEEL_NODISCARD keel_err keel_cache_layer(keel_cache *c, const keel_cache_binding *binding,
                                                  keel_layer **out);

/* ===================================================== Redis backend (keel issue 4) ===
 * The entries kept in Redis, so that every keeld process shares one cache.
 * keel_cache_redis_create() returns an ordinary keel_cache *: keel_cache_get(), _set(),
 * _set_ttl(), _delete(), _clear(), _purge(), _get_stats(), keel_cache_layer() and
 * keel_cache_destroy() work on it unchanged.  A result cached by one process is replayed by
 * the layer in every other process sharing the Redis server and prefix.
 *
 * Keys and values.  Each entry is one Redis string "<prefix><key>" holding the value bytes,
 * prefix defaulting to "keel:cache:<name>:".  Keys and values are binary-safe (they are sent
 * as argument vectors with lengths, so NUL bytes are fine).  Entries are written with
 * SET <key> <value> PX <ttl> (the ttl of keel_cache_set_ttl(), or cfg->ttl_ms; at most 2^44
 * ms, longer ttls are clamped), so Redis expires them on its own clock: cfg->clock is not
 * used, and keel_cache_purge() returns 0.
 *
 * Size bounds.  The LRU bound is Redis's own: cap the server with maxmemory and
 * maxmemory-policy allkeys-lru (or volatile-lru / volatile-ttl), a server setting keel does
 * not change.  keel does not enforce max_entries (ignored) nor a total byte cap; max_bytes,
 * when not 0, is enforced per entry only: a set whose key + value exceeds it returns
 * KEEL_ETOOBIG and removes any old entry for the key, as the in-memory cache does.  It also
 * caps what keel_cache_layer() stores, as for the in-memory cache.
 *
 * Stats.  hits and misses are counted per keel_cache instance (each process sees its own
 * lookups), as is keel_cache_requests_total{cache,result}.  evictions, expirations, entries
 * and bytes are always 0: Redis evicts and expires on its own (its INFO stats evicted_keys /
 * expired_keys report them), and counting the keys under a prefix would need a SCAN of the
 * whole keyspace.
 *
 * Clear.  keel_cache_clear() deletes the keys under this cache's prefix only: SCAN with
 * MATCH "<prefix>*" (glob characters of the prefix escaped) and UNLINK of each batch, never
 * KEYS or FLUSHDB.  Keys written while it runs may survive.  The prefix must not be empty
 * and should not be a prefix of another cache's (clear would remove the other's keys too).
 *
 * Failures.  When Redis cannot be reached or answers an error, keel_cache_get() reports a
 * miss (KEEL_ENOTFOUND: the layer runs the call uncached), keel_cache_set() and
 * keel_cache_set_ttl() return KEEL_EIO / KEEL_ETIMEOUT (the layer ignores a failed store, as
 * it does for the in-memory cache), keel_cache_delete() returns the same, and
 * keel_cache_clear() stops at the first failure.  Each failed command is counted in
 * keel_cache_redis_errors() and, when cfg->metrics is set, in
 * keel_cache_backend_errors_total{cache}.
 */

typedef struct keel_redis keel_redis;

/** Longest key prefix accepted (bytes). */
#define KEEL_CACHE_REDIS_PREFIX_MAX 256

/** Redis backend settings.  Fill with keel_cache_redis_config_default() then override. */
typedef struct keel_cache_redis_config {
    size_t size;        /* sizeof(keel_cache_redis_config) */
    keel_redis *redis;  /* required; borrowed, must outlive the cache */
    const char *prefix; /* NULL = "keel:cache:<name>:"; copied; 1..256 bytes */
} keel_cache_redis_config;

/** Fill rcfg with the defaults shown above (redis NULL, prefix NULL).
 *  Thread-safety: any thread.  Ownership: writes *rcfg only.  Errors: none. */
KEEL_API void keel_cache_redis_config_default(keel_cache_redis_config *rcfg);

/** Create a Redis-backed cache with the settings of cfg (validated as by keel_cache_create();
 *  max_entries and clock are ignored, see above) and the backend settings of rcfg.  Nothing
 *  is sent to Redis here.
 *  @return KEEL_OK; KEEL_EINVAL (NULL argument, bad size, ttl_ms 0, redis NULL, empty or
 *  too long prefix - "cache: redis must not be NULL", "cache: prefix must be ...", "cache:
 *  ttl_ms must be >= 1, got 0"; with a NULL prefix a name too long for the default prefix is
 *  reported as "cache: name ..."); KEEL_EEXIST (a metric name taken by another type);
 *  KEEL_ENOMEM.
 *  Thread-safety: any thread; the cache is thread-safe like any keel_cache.
 *  Ownership: caller destroys *out with keel_cache_destroy() before closing rcfg->redis. */
KEEL_API KEEL_NODISCARD keel_err keel_cache_redis_create(const keel_cache_config *cfg,
                                                         const keel_cache_redis_config *rcfg,
                                                         keel_cache **out, keel_diag *diag);

/** Redis commands of a cache from keel_cache_redis_create() that failed (unreachable
 *  server, timeout, error reply) since creation; 0 for any other cache or NULL.
 *  Thread-safety: any thread.  Ownership: borrows c.  Errors: none. */
KEEL_API uint64_t keel_cache_redis_errors(const keel_cache *c);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_CACHE_H */
