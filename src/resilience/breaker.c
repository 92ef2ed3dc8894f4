/* breaker.c - circuit breaker with resilience4j semantics (reference.md section 3.1). */
#include "keel_int.h"

#include <inttypes.h>
#include <pthread.h>

#include <keel/breaker.h>

#include "breaker_int.h"

#define BREAKER_MAX_COUNT_WINDOW 1000000u
#define BREAKER_MAX_TIME_WINDOW 86400u
#define BREAKER_EVENT_CAP 64u

enum { OUT_SUCCESS, OUT_FAILURE, OUT_SLOW, OUT_IGNORED, OUT_NOT_PERMITTED, OUT_COUNT };
static const char *const outcome_names[OUT_COUNT] = {"success", "failure", "slow", "ignored",
                                                     "not_permitted"};

#define ENTRY_FAILED 1u
#define ENTRY_SLOW 2u

typedef struct sec_bucket {
    uint64_t sec; /* epoch second (now_ms / 1000) the counts belong to */
    uint32_t total, failed, slow;
} sec_bucket;

typedef struct transition {
    keel_breaker_state from, to;
} transition;

struct keel_breaker {
    keel_breaker_config cfg;
    char *name;
    keel_breaker_listener listeners[KEEL_BREAKER_MAX_LISTENERS];
    size_t nlisteners;
    pthread_mutex_t mu;

    keel_breaker_state state;
    uint64_t open_until; /* OPEN: first instant a call may go half-open */

    /* COUNT_BASED: ring of flag bytes with running totals */
    uint8_t *ring;
    uint32_t ring_fill, ring_pos;
    uint32_t c_total, c_failed, c_slow;
    /* TIME_BASED: one bucket per second, index sec % size */
    sec_bucket *buckets;
    uint64_t latest_sec; /* newest second recorded: late records count in it */

    /* HALF_OPEN probes */
    uint32_t ho_permits, ho_calls, ho_failed, ho_slow;

    uint64_t not_permitted;

    /* transitions waiting for delivery to listeners (outside the lock) */
    transition events[BREAKER_EVENT_CAP];
    unsigned ev_head, ev_count;
    bool draining;

    keel_series *state_gauge;
    keel_series *calls[OUT_COUNT];

    /* another backend (breaker_int.h) consulted first, or NULL for the local breaker only */
    const keel__breaker_backend *be;
    void *be_impl;
};

typedef struct breaker_layer {
    keel_layer base;
    keel_breaker *b;
} breaker_layer;

void keel_breaker_config_default(keel_breaker_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->name = "breaker";
    cfg->window_type = KEEL_BREAKER_COUNT_BASED;
    cfg->sliding_window_size = 100;
    cfg->minimum_number_of_calls = 100;
    cfg->failure_rate_threshold = 50.0;
    cfg->slow_call_rate_threshold = 100.0;
    cfg->slow_call_duration_ms = 60000;
    cfg->wait_duration_in_open_ms = 60000;
    cfg->permitted_calls_in_half_open = 10;
}

keel_err keel_breaker_config_validate(const keel_breaker_config *cfg, keel_diag *diag)
{
    if (cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "breaker: config is NULL");
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "breaker: size must be sizeof(keel_breaker_config) (%zu), got %zu "
                             "(use keel_breaker_config_default)",
                             sizeof(*cfg), cfg->size);
    if (cfg->window_type != KEEL_BREAKER_COUNT_BASED &&
        cfg->window_type != KEEL_BREAKER_TIME_BASED)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "breaker: window_type must be COUNT_BASED or TIME_BASED, got %d",
                             (int)cfg->window_type);
    uint32_t maxw = cfg->window_type == KEEL_BREAKER_COUNT_BASED ? BREAKER_MAX_COUNT_WINDOW
                                                                 : BREAKER_MAX_TIME_WINDOW;
    if (cfg->sliding_window_size < 1 || cfg->sliding_window_size > maxw)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "breaker: sliding_window_size must be in [1, %" PRIu32
                             "], got %" PRIu32,
                             maxw, cfg->sliding_window_size);
    if (cfg->minimum_number_of_calls < 1)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "breaker: minimum_number_of_calls must be >= 1, got %" PRIu32,
                             cfg->minimum_number_of_calls);
    if (!(cfg->failure_rate_threshold > 0.0 && cfg->failure_rate_threshold <= 100.0))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "breaker: failure_rate_threshold must be in (0, 100], got %g",
                             cfg->failure_rate_threshold);
    if (!(cfg->slow_call_rate_threshold > 0.0 && cfg->slow_call_rate_threshold <= 100.0))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "breaker: slow_call_rate_threshold must be in (0, 100], got %g",
                             cfg->slow_call_rate_threshold);
    if (cfg->slow_call_duration_ms < 1)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "breaker: slow_call_duration_ms must be >= 1, got 0");
    if (cfg->wait_duration_in_open_ms < 1)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "breaker: wait_duration_in_open_ms must be >= 1, got 0");
    if (cfg->permitted_calls_in_half_open < 1)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "breaker: permitted_calls_in_half_open must be >= 1, got 0");
    if (cfg->nlisteners > KEEL_BREAKER_MAX_LISTENERS)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "breaker: nlisteners must be <= %d, got %zu",
                             KEEL_BREAKER_MAX_LISTENERS, cfg->nlisteners);
    if (cfg->nlisteners > 0 && cfg->listeners == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "breaker: listeners is NULL but nlisteners is %zu", cfg->nlisteners);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].fn == NULL)
            return keel_diag_set(diag, KEEL_EINVAL, 0, "breaker: listeners[%zu].fn is NULL", i);
    return KEEL_OK;
}

static keel_err register_metrics(keel_breaker *b, keel_diag *diag)
{
    keel_metrics *m = b->cfg.metrics;
    static const char *const gauge_labels[] = {"name", NULL};
    static const char *const calls_labels[] = {"name", "outcome", NULL};
    keel_metric *g, *c;
    keel_err e = keel_metrics_gauge(m, "keel_breaker_state",
                                    "Circuit breaker state (0 closed, 1 open, 2 half_open, "
                                    "3 disabled, 4 forced_open).",
                                    gauge_labels, &g);
    if (e == KEEL_OK)
        e = keel_metrics_counter(m, "keel_breaker_calls_total",
                                 "Calls seen by a circuit breaker, by outcome.", calls_labels, &c);
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "breaker: cannot register metrics: %s",
                             keel_strerror(e));
    const char *gv[] = {b->name, NULL};
    e = keel_metric_series(g, gv, &b->state_gauge);
    for (int i = 0; e == KEEL_OK && i < OUT_COUNT; i++) {
        const char *cv[] = {b->name, outcome_names[i], NULL};
        e = keel_metric_series(c, cv, &b->calls[i]);
    }
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "breaker: cannot create metric series: %s",
                             keel_strerror(e));
    keel_series_set(b->state_gauge, (double)KEEL_BREAKER_CLOSED);
    return KEEL_OK;
}

keel_err keel_breaker_create(keel_breaker **out, const keel_breaker_config *cfg, keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "breaker: out is NULL");
    *out = NULL;
    keel_err e = keel_breaker_config_validate(cfg, diag);
    if (e != KEEL_OK)
        return e;
    keel_breaker *b = keel__new(keel_breaker);
    if (b == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "breaker: out of memory");
    b->cfg = *cfg;
    b->name = keel_strdup(cfg->name != NULL && cfg->name[0] != '\0' ? cfg->name : "breaker");
    if (b->name == NULL)
        goto oom;
    b->cfg.name = b->name;
    b->cfg.listeners = NULL;
    b->nlisteners = cfg->nlisteners;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        b->listeners[i] = cfg->listeners[i];
    if (cfg->window_type == KEEL_BREAKER_COUNT_BASED) {
        b->ring = keel_calloc(cfg->sliding_window_size, 1);
        if (b->ring == NULL)
            goto oom;
    } else {
        b->buckets = keel_calloc(cfg->sliding_window_size, sizeof(sec_bucket));
        if (b->buckets == NULL)
            goto oom;
    }
    if (cfg->metrics != NULL) {
        e = register_metrics(b, diag);
        if (e != KEEL_OK) {
            keel_free(b->ring);
            keel_free(b->buckets);
            keel_free(b->name);
            keel_free(b);
            return e;
        }
    }
    if (pthread_mutex_init(&b->mu, NULL) != 0)
        goto oom;
    b->state = KEEL_BREAKER_CLOSED;
    *out = b;
    return KEEL_OK;
oom:
    keel_free(b->ring);
    keel_free(b->buckets);
    keel_free(b->name);
    keel_free(b);
    return keel_diag_set(diag, KEEL_ENOMEM, 0, "breaker: out of memory");
}

void keel_breaker_destroy(keel_breaker *b)
{
    if (b == NULL)
        return;
    if (b->be != NULL && b->be->destroy != NULL)
        b->be->destroy(b->be_impl);
    pthread_mutex_destroy(&b->mu);
    keel_free(b->ring);
    keel_free(b->buckets);
    keel_free(b->name);
    keel_free(b);
}

const char *keel_breaker_state_name(keel_breaker_state s)
{
    switch (s) {
    case KEEL_BREAKER_CLOSED:
        return "closed";
    case KEEL_BREAKER_OPEN:
        return "open";
    case KEEL_BREAKER_HALF_OPEN:
        return "half_open";
    case KEEL_BREAKER_DISABLED:
        return "disabled";
    case KEEL_BREAKER_FORCED_OPEN:
        return "forced_open";
    }
    return "?";
}

/* ------------------------------------------------------------ window -- */

static void window_clear(keel_breaker *b)
{
    if (b->ring != NULL)
        memset(b->ring, 0, b->cfg.sliding_window_size);
    if (b->buckets != NULL)
        memset(b->buckets, 0, (size_t)b->cfg.sliding_window_size * sizeof(sec_bucket));
    b->ring_fill = b->ring_pos = 0;
    b->c_total = b->c_failed = b->c_slow = 0;
    b->latest_sec = 0;
}

static void window_add(keel_breaker *b, int failed, int slow, uint64_t now_ms)
{
    uint32_t n = b->cfg.sliding_window_size;
    if (b->ring != NULL) {
        if (b->ring_fill == n) {
            uint8_t old = b->ring[b->ring_pos];
            b->c_total--;
            if (old & ENTRY_FAILED)
                b->c_failed--;
            if (old & ENTRY_SLOW)
                b->c_slow--;
        } else {
            b->ring_fill++;
        }
        b->ring[b->ring_pos] = (uint8_t)((failed ? ENTRY_FAILED : 0u) | (slow ? ENTRY_SLOW : 0u));
        b->ring_pos = (b->ring_pos + 1) % n;
        b->c_total++;
        b->c_failed += failed ? 1u : 0u;
        b->c_slow += slow ? 1u : 0u;
        return;
    }
    /* A record stamped a little before the newest one (threads race between reading the
     * clock and taking the lock) counts in the newest second instead of wiping its bucket. */
    uint64_t sec = now_ms / 1000;
    if (sec < b->latest_sec)
        sec = b->latest_sec;
    else
        b->latest_sec = sec;
    sec_bucket *bk = &b->buckets[sec % n];
    if (bk->sec != sec || bk->total == 0) {
        memset(bk, 0, sizeof(*bk));
        bk->sec = sec;
    }
    bk->total++;
    bk->failed += failed ? 1u : 0u;
    bk->slow += slow ? 1u : 0u;
}

/* Totals over the window as of now_ms (time-based: buckets of the last N seconds). */
static void window_totals(const keel_breaker *b, uint64_t now_ms, uint32_t *total,
                          uint32_t *failed, uint32_t *slow)
{
    if (b->ring != NULL) {
        *total = b->c_total;
        *failed = b->c_failed;
        *slow = b->c_slow;
        return;
    }
    uint64_t sec = KEEL_MAX(now_ms / 1000, b->latest_sec), n = b->cfg.sliding_window_size;
    uint32_t t = 0, f = 0, s = 0;
    for (uint64_t i = 0; i < n; i++) {
        const sec_bucket *bk = &b->buckets[i];
        if (bk->total == 0 || bk->sec > sec || sec - bk->sec >= n)
            continue;
        t += bk->total;
        f += bk->failed;
        s += bk->slow;
    }
    *total = t;
    *failed = f;
    *slow = s;
}

static int over_threshold(const keel_breaker *b, uint32_t total, uint32_t failed, uint32_t slow)
{
    double fr = (double)failed * 100.0 / (double)total;
    double sr = (double)slow * 100.0 / (double)total;
    return fr >= b->cfg.failure_rate_threshold || sr >= b->cfg.slow_call_rate_threshold;
}

static uint32_t min_calls(const keel_breaker *b)
{
    if (b->cfg.window_type == KEEL_BREAKER_COUNT_BASED)
        return KEEL_MIN(b->cfg.minimum_number_of_calls, b->cfg.sliding_window_size);
    return b->cfg.minimum_number_of_calls;
}

/* --------------------------------------------------------- transitions -- */

/* Change state under the lock; queue the event.  Returns 1 if an event was queued. */
static int transition_to(keel_breaker *b, keel_breaker_state to, uint64_t now_ms)
{
    keel_breaker_state from = b->state;
    if (from == to)
        return 0;
    b->state = to;
    switch (to) {
    case KEEL_BREAKER_OPEN:
        b->open_until = now_ms + b->cfg.wait_duration_in_open_ms;
        break;
    case KEEL_BREAKER_HALF_OPEN:
        b->ho_permits = b->ho_calls = b->ho_failed = b->ho_slow = 0;
        break;
    case KEEL_BREAKER_CLOSED:
        window_clear(b);
        break;
    case KEEL_BREAKER_DISABLED:
    case KEEL_BREAKER_FORCED_OPEN:
        break;
    }
    if (b->state_gauge != NULL)
        keel_series_set(b->state_gauge, (double)to);
    if (b->nlisteners == 0)
        return 0;
    if (b->ev_count == BREAKER_EVENT_CAP) { /* listeners far behind: drop the oldest */
        b->ev_head = (b->ev_head + 1) % BREAKER_EVENT_CAP;
        b->ev_count--;
    }
    b->events[(b->ev_head + b->ev_count) % BREAKER_EVENT_CAP] = (transition){from, to};
    b->ev_count++;
    return 1;
}

/* Deliver queued transitions, in order, outside the lock.  Only one thread delivers at a
 * time; a thread (or a listener re-entering the breaker) that finds delivery in progress
 * leaves its events to the deliverer. */
static void deliver_events(keel_breaker *b)
{
    pthread_mutex_lock(&b->mu);
    if (b->draining) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    b->draining = true;
    while (b->ev_count > 0) {
        transition ev = b->events[b->ev_head];
        b->ev_head = (b->ev_head + 1) % BREAKER_EVENT_CAP;
        b->ev_count--;
        pthread_mutex_unlock(&b->mu);
        for (size_t i = 0; i < b->nlisteners; i++)
            b->listeners[i].fn(b, b->name, ev.from, ev.to, b->listeners[i].ud);
        pthread_mutex_lock(&b->mu);
    }
    b->draining = false;
    pthread_mutex_unlock(&b->mu);
}

static void count(keel_breaker *b, int which)
{
    if (b->calls[which] != NULL)
        keel_series_add(b->calls[which], 1.0);
}

/* ---------------------------------------------------------------- API -- */

keel_err keel_breaker_allow(keel_breaker *b, uint64_t now_ms, uint64_t *wait_ms)
{
    if (wait_ms != NULL)
        *wait_ms = 0;
    if (b == NULL)
        return KEEL_EINVAL;
    keel_err e = KEEL_OK;
    uint64_t wait = 0;
    int queued = 0;
    if (b->be != NULL) {
        e = b->be->allow(b->be_impl, b, now_ms, &wait);
        deliver_events(b);
        if (e != KEEL_EAGAIN) {
            if (e != KEEL_OK) {
                pthread_mutex_lock(&b->mu);
                b->not_permitted++;
                pthread_mutex_unlock(&b->mu);
                count(b, OUT_NOT_PERMITTED);
            }
            if (wait_ms != NULL)
                *wait_ms = wait;
            return e;
        }
        e = KEEL_OK;
        wait = 0;
    }
    pthread_mutex_lock(&b->mu);
    switch (b->state) {
    case KEEL_BREAKER_CLOSED:
    case KEEL_BREAKER_DISABLED:
        break;
    case KEEL_BREAKER_FORCED_OPEN:
        e = KEEL_EOPEN;
        break;
    case KEEL_BREAKER_OPEN:
        if (now_ms < b->open_until) {
            wait = b->open_until - now_ms;
            e = KEEL_EOPEN;
        } else {
            queued = transition_to(b, KEEL_BREAKER_HALF_OPEN, now_ms);
        }
        break;
    case KEEL_BREAKER_HALF_OPEN:
        break;
    }
    if (e == KEEL_OK && b->state == KEEL_BREAKER_HALF_OPEN) { /* take a probe permit */
        if (b->ho_permits < b->cfg.permitted_calls_in_half_open)
            b->ho_permits++;
        else
            e = KEEL_EOPEN;
    }
    if (e != KEEL_OK)
        b->not_permitted++;
    pthread_mutex_unlock(&b->mu);
    if (e != KEEL_OK)
        count(b, OUT_NOT_PERMITTED);
    if (queued)
        deliver_events(b);
    if (wait_ms != NULL)
        *wait_ms = wait;
    return e;
}

keel_err keel_breaker_record(keel_breaker *b, keel_breaker_outcome outcome, uint64_t duration_ms,
                             uint64_t now_ms)
{
    if (b == NULL || (outcome != KEEL_BREAKER_SUCCESS && outcome != KEEL_BREAKER_FAILURE &&
                      outcome != KEEL_BREAKER_IGNORED))
        return KEEL_EINVAL;
    int failed = outcome == KEEL_BREAKER_FAILURE;
    int slow = duration_ms > b->cfg.slow_call_duration_ms;
    int queued = 0;
    if (b->be != NULL) {
        keel_err be = b->be->record(b->be_impl, b, outcome, slow, now_ms);
        deliver_events(b);
        if (be != KEEL_EAGAIN) {
            count(b, outcome == KEEL_BREAKER_IGNORED ? OUT_IGNORED
                     : failed                        ? OUT_FAILURE
                     : slow                          ? OUT_SLOW
                                                     : OUT_SUCCESS);
            return KEEL_OK;
        }
    }
    pthread_mutex_lock(&b->mu);
    if (outcome == KEEL_BREAKER_IGNORED) {
        if (b->state == KEEL_BREAKER_HALF_OPEN && b->ho_permits > b->ho_calls)
            b->ho_permits--; /* give the probe permit back */
    } else if (b->state == KEEL_BREAKER_CLOSED) {
        window_add(b, failed, slow, now_ms);
        uint32_t t, f, s;
        window_totals(b, now_ms, &t, &f, &s);
        if (t >= min_calls(b) && over_threshold(b, t, f, s))
            queued = transition_to(b, KEEL_BREAKER_OPEN, now_ms);
    } else if (b->state == KEEL_BREAKER_HALF_OPEN) {
        b->ho_calls++;
        b->ho_failed += failed ? 1u : 0u;
        b->ho_slow += slow ? 1u : 0u;
        if (b->ho_calls >= b->cfg.permitted_calls_in_half_open) {
            if (over_threshold(b, b->ho_calls, b->ho_failed, b->ho_slow))
                queued = transition_to(b, KEEL_BREAKER_OPEN, now_ms);
            else
                queued = transition_to(b, KEEL_BREAKER_CLOSED, now_ms);
        }
    }
    pthread_mutex_unlock(&b->mu);
    count(b, outcome == KEEL_BREAKER_IGNORED ? OUT_IGNORED
             : failed                        ? OUT_FAILURE
             : slow                          ? OUT_SLOW
                                             : OUT_SUCCESS);
    if (queued)
        deliver_events(b);
    return KEEL_OK;
}

keel_breaker_state keel_breaker_state_get(keel_breaker *b)
{
    if (b == NULL)
        return KEEL_BREAKER_CLOSED;
    pthread_mutex_lock(&b->mu);
    keel_breaker_state s = b->state;
    pthread_mutex_unlock(&b->mu);
    return s;
}

keel_err keel_breaker_stats_get(keel_breaker *b, uint64_t now_ms, keel_breaker_stats *out)
{
    if (b == NULL || out == NULL)
        return KEEL_EINVAL;
    memset(out, 0, sizeof(*out));
    uint32_t t, f, s, minc;
    if (b->be != NULL && b->be->stats(b->be_impl, b, now_ms, out) == KEEL_OK) {
        deliver_events(b);
        pthread_mutex_lock(&b->mu);
        out->not_permitted = b->not_permitted;
        pthread_mutex_unlock(&b->mu);
        return KEEL_OK;
    }
    deliver_events(b);
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&b->mu);
    out->state = b->state;
    if (b->state == KEEL_BREAKER_HALF_OPEN) {
        t = b->ho_calls;
        f = b->ho_failed;
        s = b->ho_slow;
        minc = b->cfg.permitted_calls_in_half_open;
    } else {
        window_totals(b, now_ms, &t, &f, &s);
        minc = min_calls(b);
    }
    out->not_permitted = b->not_permitted;
    pthread_mutex_unlock(&b->mu);
    out->calls = t;
    out->failed = f;
    out->slow = s;
    out->failure_rate = t >= minc && t > 0 ? (double)f * 100.0 / (double)t : -1.0;
    out->slow_rate = t >= minc && t > 0 ? (double)s * 100.0 / (double)t : -1.0;
    return KEEL_OK;
}

static keel_err manual_transition(keel_breaker *b, keel_breaker_state to)
{
    if (b == NULL)
        return KEEL_EINVAL;
    if (b->be != NULL) {
        keel_err e = b->be->manual(b->be_impl, b, to);
        deliver_events(b);
        if (e != KEEL_EAGAIN)
            return KEEL_OK;
    }
    pthread_mutex_lock(&b->mu);
    int queued = transition_to(b, to, 0);
    if (to == KEEL_BREAKER_CLOSED)
        window_clear(b);
    pthread_mutex_unlock(&b->mu);
    if (queued)
        deliver_events(b);
    return KEEL_OK;
}

keel_err keel_breaker_force_open(keel_breaker *b)
{
    return manual_transition(b, KEEL_BREAKER_FORCED_OPEN);
}

keel_err keel_breaker_disable(keel_breaker *b)
{
    return manual_transition(b, KEEL_BREAKER_DISABLED);
}

keel_err keel_breaker_reset(keel_breaker *b)
{
    return manual_transition(b, KEEL_BREAKER_CLOSED);
}

/* ------------------------------------------------ backend hook (int.h) -- */

keel_err keel__breaker_create_backend(const keel_breaker_config *cfg,
                                      const keel__breaker_backend *be, void *impl,
                                      keel_breaker **out, keel_diag *diag)
{
    if (be == NULL || be->allow == NULL || be->record == NULL || be->manual == NULL ||
        be->stats == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "breaker: invalid backend arguments");
    keel_err e = keel_breaker_create(out, cfg, diag);
    if (e == KEEL_OK) {
        (*out)->be = be;
        (*out)->be_impl = impl;
    }
    return e;
}

void *keel__breaker_backend_impl(const keel_breaker *b, const keel__breaker_backend *be)
{
    return b != NULL && be != NULL && b->be == be ? b->be_impl : NULL;
}

const keel_breaker_config *keel__breaker_config(const keel_breaker *b)
{
    return &b->cfg;
}

void keel__breaker_adopt(keel_breaker *b, keel_breaker_state from, keel_breaker_state to,
                         uint64_t now_ms)
{
    pthread_mutex_lock(&b->mu);
    if (b->state != from && from != to)
        (void)transition_to(b, from, now_ms);
    (void)transition_to(b, to, now_ms);
    pthread_mutex_unlock(&b->mu);
}

/* -------------------------------------------------------------- layer -- */

static keel_err layer_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    keel_breaker *b = ((breaker_layer *)self)->b;
    keel_call *call = cx;
    if (call == NULL)
        return KEEL_EINVAL;
    const keel_clock *clk = b->cfg.clock;
    uint64_t start = keel_clock_now_ms(clk), wait = 0;
    if (keel_breaker_allow(b, start, &wait) != KEEL_OK) {
        call->refused_by = b->name;
        call->wait_ms = wait;
        if (b->cfg.fallback != NULL)
            return b->cfg.fallback(call, KEEL_EOPEN, b->cfg.fallback_ud);
        return KEEL_EOPEN;
    }
    keel_err e = keel_chain_next(cur, call);
    uint64_t end = keel_clock_now_ms(clk);
    keel_breaker_outcome oc = KEEL_BREAKER_SUCCESS;
    if (e != KEEL_OK) {
        int fail = b->cfg.is_failure != NULL ? b->cfg.is_failure(call, e, b->cfg.is_failure_ud)
                                             : keel_policy_is_transient(call, e);
        oc = fail ? KEEL_BREAKER_FAILURE : KEEL_BREAKER_IGNORED;
    }
    (void)keel_breaker_record(b, oc, end > start ? end - start : 0, end);
    return e;
}

keel_err keel_breaker_layer(keel_breaker *b, keel_layer **out)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    if (b == NULL)
        return KEEL_EINVAL;
    breaker_layer *l = keel__layer_new(sizeof(*l), b->name, layer_call);
    if (l == NULL)
        return KEEL_ENOMEM;
    l->b = b;
    *out = &l->base;
    return KEEL_OK;
}
