/* retry.c - retry with exponential backoff and jitter (reference.md section 4). */
#include "keel_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>

#include <keel/retry.h>

struct keel_retry {
    keel_retry_config cfg;
    char *name;
    keel_logger *log;
    _Atomic uint64_t rng_state;
};

typedef struct retry_layer {
    keel_layer base;
    keel_retry *r;
} retry_layer;

#define RETRY_MAX_DELAY_LIMIT (UINT64_C(1) << 52) /* ~142,000 years; keeps doubles exact */

void keel_retry_config_default(keel_retry_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->name = "retry";
    cfg->max_attempts = 3;
    cfg->max_elapsed_ms = 0;
    cfg->base_delay_ms = 100;
    cfg->max_delay_ms = 10000;
    cfg->multiplier = 2.0;
    cfg->jitter = KEEL_JITTER_FULL;
}

keel_err keel_retry_config_validate(const keel_retry_config *cfg, keel_diag *diag)
{
    if (cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "retry: config is NULL");
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "retry: size must be sizeof(keel_retry_config) (%zu), got %zu "
                             "(use keel_retry_config_default)",
                             sizeof(*cfg), cfg->size);
    if (cfg->max_attempts < 1)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "retry: max_attempts must be >= 1, got %u",
                             cfg->max_attempts);
    if (cfg->max_delay_ms > RETRY_MAX_DELAY_LIMIT)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "retry: max_delay_ms must be <= %" PRIu64 ", got %" PRIu64,
                             RETRY_MAX_DELAY_LIMIT, cfg->max_delay_ms);
    if (cfg->max_delay_ms < cfg->base_delay_ms)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "retry: max_delay_ms must be >= base_delay_ms (%" PRIu64
                             "), got %" PRIu64,
                             cfg->base_delay_ms, cfg->max_delay_ms);
    if (!(cfg->multiplier >= 1.0) || !isfinite(cfg->multiplier))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "retry: multiplier must be >= 1.0, got %g",
                             cfg->multiplier);
    switch (cfg->jitter) {
    case KEEL_JITTER_NONE:
    case KEEL_JITTER_FULL:
    case KEEL_JITTER_EQUAL:
    case KEEL_JITTER_DECORRELATED:
        break;
    default:
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "retry: jitter must be a keel_jitter value (0..3), got %d",
                             (int)cfg->jitter);
    }
    return KEEL_OK;
}

/* lo + rnd % (hi - lo + 1): uniform over [lo, hi] (both inclusive). */
static uint64_t random_between(uint64_t lo, uint64_t hi, uint64_t rnd)
{
    if (hi <= lo)
        return lo;
    uint64_t span = hi - lo;
    if (span == UINT64_MAX)
        return lo + rnd;
    return lo + rnd % (span + 1);
}

/* min(cap, base * multiplier^(attempt-1)) without overflow. */
static uint64_t expo(const keel_retry_config *cfg, unsigned attempt)
{
    uint64_t cap = cfg->max_delay_ms;
    double t = (double)cfg->base_delay_ms;
    for (unsigned i = 1; i < attempt && t < (double)cap; i++)
        t *= cfg->multiplier;
    if (t >= (double)cap)
        return cap;
    return (uint64_t)t;
}

uint64_t keel_retry_delay_ms(const keel_retry_config *cfg, unsigned attempt, uint64_t prev_delay,
                             uint64_t rnd)
{
    if (cfg == NULL || attempt == 0)
        return 0;
    uint64_t temp, half, prev, hi, v;
    switch (cfg->jitter) {
    case KEEL_JITTER_FULL:
        return random_between(0, expo(cfg, attempt), rnd);
    case KEEL_JITTER_EQUAL:
        temp = expo(cfg, attempt);
        half = temp / 2;
        return (temp - half) + random_between(0, half, rnd);
    case KEEL_JITTER_DECORRELATED:
        prev = prev_delay != 0 ? prev_delay : cfg->base_delay_ms;
        hi = prev > UINT64_MAX / 3 ? UINT64_MAX : prev * 3;
        if (hi < cfg->base_delay_ms)
            hi = cfg->base_delay_ms;
        v = random_between(cfg->base_delay_ms, hi, rnd);
        return v < cfg->max_delay_ms ? v : cfg->max_delay_ms;
    case KEEL_JITTER_NONE:
    default:
        return expo(cfg, attempt);
    }
}

/* splitmix64 over an atomic counter: lock-free and good enough for jitter. */
static uint64_t default_rand(void *ud)
{
    keel_retry *r = ud;
    uint64_t z = atomic_fetch_add(&r->rng_state, UINT64_C(0x9E3779B97F4A7C15)) +
                 UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

keel_err keel_retry_create(keel_retry **out, const keel_retry_config *cfg, keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "retry: out is NULL");
    *out = NULL;
    keel_err e = keel_retry_config_validate(cfg, diag);
    if (e != KEEL_OK)
        return e;
    keel_retry *r = keel__new(keel_retry);
    if (r == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "retry: out of memory");
    r->cfg = *cfg;
    r->name = keel_strdup(cfg->name != NULL && cfg->name[0] != '\0' ? cfg->name : "retry");
    if (r->name == NULL) {
        keel_free(r);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "retry: out of memory");
    }
    r->cfg.name = r->name;
    uint64_t seed;
    if (keel_random_bytes(&seed, sizeof(seed)) != KEEL_OK)
        seed = keel_time_mono_ns() ^ (uint64_t)(uintptr_t)r;
    atomic_init(&r->rng_state, seed);
    if (r->cfg.before_sleep == NULL)
        r->log = keel_logger_get("app.resilience.retry");
    *out = r;
    return KEEL_OK;
}

void keel_retry_destroy(keel_retry *r)
{
    if (r == NULL)
        return;
    keel_free(r->name);
    keel_free(r);
}

static void log_before_sleep(const keel_retry *r, const keel_call *call, keel_err e,
                             uint64_t delay_ms)
{
    const char *op = call->name != NULL ? call->name : "call";
    keel_log_field f[4] = {
        KEEL_LF_STR("operation", op),
        KEEL_LF_INT("attempt", call->attempt),
        KEEL_LF_INT("delay_ms", delay_ms),
        KEEL_LF_STR("error", keel_err_name(e)),
    };
    KEEL_LOG_FIELDS(r->log, KEEL_LOG_LEVEL_WARNING, f, 4,
                    "%s: retrying %s in %" PRIu64 " ms after attempt %u failed: %s", r->name, op,
                    delay_ms, call->attempt, keel_err_name(e));
}

typedef keel_err (*attempt_fn)(keel_call *call, void *ud);

static keel_err retry_loop(keel_retry *r, keel_call *call, attempt_fn fn, void *ud)
{
    const keel_retry_config *cfg = &r->cfg;
    uint64_t start = keel_clock_now_ms(cfg->clock);
    uint64_t prev = 0;
    for (unsigned attempt = 1;; attempt++) {
        call->attempt = attempt;
        call->retriable = -1;
        call->retry_after_ms = 0;
        call->wait_ms = 0;
        call->refused_by = NULL;
        keel_err e = fn(call, ud);
        if (e == KEEL_OK)
            return KEEL_OK;
        int again;
        if (call->retriable >= 0)
            again = call->retriable;
        else if (cfg->should_retry != NULL)
            again = cfg->should_retry(call, e, cfg->should_retry_ud);
        else
            again = keel_policy_is_transient(call, e);
        if (!again || attempt >= cfg->max_attempts)
            return e;
        uint64_t rnd = cfg->jitter == KEEL_JITTER_NONE ? 0
                       : cfg->rand_u64 != NULL         ? cfg->rand_u64(cfg->rand_ud)
                                                       : default_rand(r);
        uint64_t backoff = keel_retry_delay_ms(cfg, attempt, prev, rnd);
        uint64_t hint = KEEL_MAX(call->retry_after_ms, call->wait_ms);
        if (hint > cfg->max_delay_ms) {
            call->wait_ms = hint; /* the server wants longer than we wait: let the caller */
            return e;
        }
        uint64_t delay = KEEL_MAX(backoff, hint);
        if (cfg->max_elapsed_ms != 0) {
            uint64_t now = keel_clock_now_ms(cfg->clock);
            uint64_t elapsed = now > start ? now - start : 0;
            if (elapsed >= cfg->max_elapsed_ms || delay > cfg->max_elapsed_ms - elapsed)
                return e;
        }
        if (cfg->before_sleep != NULL)
            cfg->before_sleep(call, e, delay, cfg->before_sleep_ud);
        else
            log_before_sleep(r, call, e, delay);
        if (delay > 0)
            keel_clock_sleep_ms(cfg->clock, delay);
        prev = backoff;
    }
}

keel_err keel_retry_run(keel_retry *r, keel_call *call, keel_err (*fn)(keel_call *call, void *ud),
                        void *ud)
{
    if (r == NULL || call == NULL || fn == NULL)
        return KEEL_EINVAL;
    return retry_loop(r, call, fn, ud);
}

static keel_err chain_attempt(keel_call *call, void *ud)
{
    return keel_chain_next((keel_chain_cursor *)ud, call);
}

static keel_err layer_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    retry_layer *l = (retry_layer *)self;
    if (cx == NULL)
        return KEEL_EINVAL;
    return retry_loop(l->r, (keel_call *)cx, chain_attempt, cur);
}

keel_err keel_retry_layer(keel_retry *r, keel_layer **out)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    if (r == NULL)
        return KEEL_EINVAL;
    retry_layer *l = keel__layer_new(sizeof(*l), "retry", layer_call);
    if (l == NULL)
        return KEEL_ENOMEM;
    l->r = r;
    *out = &l->base;
    return KEEL_OK;
}
