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

#ifdef __cplusplus
}
#endif
#endif /* KEEL_CACHE_H */
