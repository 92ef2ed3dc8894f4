/* cache_int.h - private backend hook of keel_cache (not installed).
 *
 * A keel_cache normally holds its entries in the hash table + LRU list of cache.c.  A
 * backend (cache_redis.c) holds them elsewhere: cache.c then validates the config and the
 * arguments of every call, forwards get / set / delete / clear to the backend, and keeps
 * counting hits and misses (stats and keel_cache_requests_total) itself, so the chain layer
 * keel_cache_layer() and every other keel_cache_* function work unchanged with either.  The
 * local table of a backed cache stays empty: stats report 0 entries and 0 bytes, and
 * keel_cache_purge() returns 0 (the backend expires entries itself). */
#ifndef KEEL_CACHE_INT_H
#define KEEL_CACHE_INT_H

#include <keel/cache.h>

typedef struct keel__cache_backend {
    /* Look key up and append the value to out: KEEL_OK (hit), KEEL_ENOTFOUND (miss, or the
     * backend failed: the call then runs uncached), KEEL_ETOOBIG / KEEL_ENOMEM (the value did
     * not fit in out; counted as a hit).  Arguments are already checked. */
    keel_err (*get)(void *impl, keel_str key, keel_buf *out);
    /* Store key = value for ttl_ms (>= 1, the default already applied). */
    keel_err (*set)(void *impl, keel_str key, keel_str value, uint64_t ttl_ms);
    /* Remove key: KEEL_OK, KEEL_ENOTFOUND, or the backend's error. */
    keel_err (*del)(void *impl, keel_str key);
    /* Remove every entry of this cache. */
    void (*clear)(void *impl);
    /* Free impl (called by keel_cache_destroy()). */
    void (*destroy)(void *impl);
} keel__cache_backend;

/* Create a cache whose entries live in be/impl.  cfg is validated as by keel_cache_create()
 * (max_entries is ignored; max_bytes stays readable for the layer's store cap).  On success
 * the cache owns impl (be->destroy runs on destroy); on failure the caller still owns it. */
keel_err keel__cache_create_backend(const keel_cache_config *cfg, const keel__cache_backend *be,
                                    void *impl, keel_cache **out, keel_diag *diag);

/* impl of c if c was created with backend be, else NULL. */
void *keel__cache_backend_impl(const keel_cache *c, const keel__cache_backend *be);

/* The cache's name (the metrics label; borrowed, lives as long as c). */
const char *keel__cache_name(const keel_cache *c);

#endif /* KEEL_CACHE_INT_H */
