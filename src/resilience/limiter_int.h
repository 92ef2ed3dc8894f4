/* limiter_int.h - private backend hook of keel_limiter (not installed).
 *
 * A keel_limiter normally keeps its state in the sharded in-memory table of limiter.c.  A
 * backend (limiter_redis.c) keeps it elsewhere: limiter.c then validates the config, computes
 * the advertised limit and window, and forwards every keel_limiter_take() to the backend's
 * take function, so the chain layer, the HTTP middleware, keel_limiter_policy() and
 * keel_limiter_name() work unchanged with either. */
#ifndef KEEL_LIMITER_INT_H
#define KEEL_LIMITER_INT_H

#include <keel/limiter.h>

typedef struct keel__limiter_backend {
    /* Decide for key (already checked: 1..KEEL_LIMITER_KEY_MAX bytes).  r is zeroed except
     * r->limit.  Same return values as keel_limiter_take(), plus whatever the backend
     * documents (the Redis backend: KEEL_EIO when failing closed). */
    keel_err (*take)(void *impl, keel_str key, uint32_t cost, keel_limit_result *r);
    /* Free impl (called by keel_limiter_destroy()). */
    void (*destroy)(void *impl);
} keel__limiter_backend;

/* Create a limiter whose takes go to be/impl.  cfg is validated as by keel_limiter_create()
 * (max_keys and shards are ignored).  On success the limiter owns impl (be->destroy runs on
 * destroy); on failure the caller still owns it. */
keel_err keel__limiter_create_backend(const keel_limiter_config *cfg,
                                      const keel__limiter_backend *be, void *impl,
                                      keel_limiter **out, keel_diag *diag);

/* impl of l if l was created with backend be, else NULL. */
void *keel__limiter_backend_impl(const keel_limiter *l, const keel__limiter_backend *be);

#endif /* KEEL_LIMITER_INT_H */
