/* bulkhead.c - semaphore bulkhead with a bounded FIFO wait queue. */
#include "keel_int.h"

#include <pthread.h>
#include <time.h>

#include <keel/bulkhead.h>

/* A queued caller; lives on the waiting thread's stack. */
typedef struct waiter {
    struct waiter *next;
    int granted;
} waiter;

struct keel_bulkhead {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned max_concurrent, max_queue;
    uint64_t max_wait_ms;
    unsigned running, queued;
    waiter *qhead, *qtail;
    uint64_t rejected;
    keel_series *m_avail, *m_rejected;
    char *name;
};

void keel_bulkhead_config_default(keel_bulkhead_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->name = "bulkhead";
    cfg->max_concurrent = 10;
    cfg->max_queue = 0;
    cfg->max_wait_ms = 1000;
}

static void free_partial(keel_bulkhead *b)
{
    keel_free(b->name);
    keel_free(b);
}

keel_err keel_bulkhead_create(keel_bulkhead **out, const keel_bulkhead_config *cfg,
                              keel_diag *diag)
{
    if (out == NULL || cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "bulkhead: out and cfg must not be NULL");
    *out = NULL;
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "bulkhead: size must be sizeof(keel_bulkhead_config)");
    if (cfg->max_concurrent < 1)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "bulkhead: max_concurrent must be >= 1, got 0");
    keel_bulkhead *b = keel__new(keel_bulkhead);
    if (b == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "bulkhead: out of memory");
    b->name = keel_strdup(cfg->name ? cfg->name : "bulkhead");
    if (b->name == NULL) {
        free_partial(b);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "bulkhead: out of memory");
    }
    b->max_concurrent = cfg->max_concurrent;
    b->max_queue = cfg->max_queue;
    b->max_wait_ms = cfg->max_wait_ms;
    if (cfg->metrics != NULL) {
        static const char *const labels[] = {"name", NULL};
        const char *vals[] = {b->name, NULL};
        keel_metric *g = NULL, *r = NULL;
        keel_err e = keel_metrics_gauge(cfg->metrics, "keel_bulkhead_available",
                                        "Free permits of the bulkhead.", labels, &g);
        if (e == KEEL_OK)
            e = keel_metrics_counter(cfg->metrics, "keel_bulkhead_rejected_total",
                                     "Calls refused by the bulkhead.", labels, &r);
        if (e == KEEL_OK)
            e = keel_metric_series(g, vals, &b->m_avail);
        if (e == KEEL_OK)
            e = keel_metric_series(r, vals, &b->m_rejected);
        if (e != KEEL_OK) {
            free_partial(b);
            return keel_diag_set(diag, e, 0, "bulkhead: cannot register metrics: %s",
                                 keel_strerror(e));
        }
        keel_series_set(b->m_avail, (double)b->max_concurrent);
    }
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        free_partial(b);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "bulkhead: cannot create condition");
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        free_partial(b);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "bulkhead: cannot create condition");
    }
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        pthread_cond_destroy(&b->cv);
        free_partial(b);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "bulkhead: cannot create mutex");
    }
    *out = b;
    return KEEL_OK;
}

void keel_bulkhead_destroy(keel_bulkhead *b)
{
    if (b == NULL)
        return;
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free_partial(b);
}

/* With b->mu held. */
static void publish_available(keel_bulkhead *b)
{
    if (b->m_avail)
        keel_series_set(b->m_avail, (double)(b->max_concurrent - b->running));
}

static keel_err reject_locked(keel_bulkhead *b)
{
    b->rejected++;
    if (b->m_rejected)
        keel_series_add(b->m_rejected, 1);
    return KEEL_EFULL;
}

static void dequeue(keel_bulkhead *b, waiter *w)
{
    waiter **pp = &b->qhead;
    waiter *prev = NULL;
    while (*pp != NULL && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = w->next;
    if (b->qtail == w)
        b->qtail = prev;
    b->queued--;
}

keel_err keel_bulkhead_try_acquire(keel_bulkhead *b)
{
    if (b == NULL)
        return KEEL_EINVAL;
    keel_err rc = KEEL_OK;
    pthread_mutex_lock(&b->mu);
    if (b->running < b->max_concurrent && b->qhead == NULL) {
        b->running++;
        publish_available(b);
    } else {
        rc = reject_locked(b);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

keel_err keel_bulkhead_acquire(keel_bulkhead *b)
{
    if (b == NULL)
        return KEEL_EINVAL;
    pthread_mutex_lock(&b->mu);
    if (b->running < b->max_concurrent && b->qhead == NULL) {
        b->running++;
        publish_available(b);
        pthread_mutex_unlock(&b->mu);
        return KEEL_OK;
    }
    if (b->queued >= b->max_queue) {
        keel_err rc = reject_locked(b);
        pthread_mutex_unlock(&b->mu);
        return rc;
    }
    waiter w = {NULL, 0};
    if (b->qtail)
        b->qtail->next = &w;
    else
        b->qhead = &w;
    b->qtail = &w;
    b->queued++;

    struct timespec deadline;
    if (b->max_wait_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        uint64_t ms = KEEL_MIN(b->max_wait_ms, (uint64_t)86400000 * 365);
        deadline.tv_sec += (time_t)(ms / 1000);
        deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    while (!w.granted) {
        int rc = b->max_wait_ms > 0 ? pthread_cond_timedwait(&b->cv, &b->mu, &deadline)
                                    : pthread_cond_wait(&b->cv, &b->mu);
        if (rc == ETIMEDOUT && !w.granted) {
            dequeue(b, &w);
            keel_err e = reject_locked(b);
            pthread_mutex_unlock(&b->mu);
            return e;
        }
    }
    /* release() moved the permit to us (running unchanged) and unlinked us. */
    pthread_mutex_unlock(&b->mu);
    return KEEL_OK;
}

void keel_bulkhead_release(keel_bulkhead *b)
{
    if (b == NULL)
        return;
    pthread_mutex_lock(&b->mu);
    if (KEEL_NEVER(b->running == 0)) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    waiter *w = b->qhead;
    if (w != NULL) {
        b->qhead = w->next;
        if (b->qhead == NULL)
            b->qtail = NULL;
        b->queued--;
        w->granted = 1; /* hand the permit over: running stays the same */
        pthread_cond_broadcast(&b->cv);
    } else {
        b->running--;
        publish_available(b);
    }
    pthread_mutex_unlock(&b->mu);
}

unsigned keel_bulkhead_available(keel_bulkhead *b)
{
    if (b == NULL)
        return 0;
    pthread_mutex_lock(&b->mu);
    unsigned n = b->max_concurrent - b->running;
    pthread_mutex_unlock(&b->mu);
    return n;
}

unsigned keel_bulkhead_queued(keel_bulkhead *b)
{
    if (b == NULL)
        return 0;
    pthread_mutex_lock(&b->mu);
    unsigned n = b->queued;
    pthread_mutex_unlock(&b->mu);
    return n;
}

uint64_t keel_bulkhead_rejected(keel_bulkhead *b)
{
    if (b == NULL)
        return 0;
    pthread_mutex_lock(&b->mu);
    uint64_t n = b->rejected;
    pthread_mutex_unlock(&b->mu);
    return n;
}

/* ------------------------------------------------------------- layer -- */

typedef struct bulkhead_layer {
    keel_layer base;
    keel_bulkhead *b;
} bulkhead_layer;

static keel_err bulkhead_layer_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    bulkhead_layer *bl = (bulkhead_layer *)self;
    keel_call *call = cx;
    keel_err e = keel_bulkhead_acquire(bl->b);
    if (e != KEEL_OK) {
        if (call != NULL)
            call->refused_by = bl->b->name;
        return e;
    }
    e = keel_chain_next(cur, cx);
    keel_bulkhead_release(bl->b);
    return e;
}

keel_err keel_bulkhead_layer(keel_bulkhead *b, keel_layer **out)
{
    if (out != NULL)
        *out = NULL;
    if (b == NULL || out == NULL)
        return KEEL_EINVAL;
    bulkhead_layer *bl = keel__layer_new(sizeof(*bl), "bulkhead", bulkhead_layer_call);
    if (bl == NULL)
        return KEEL_ENOMEM;
    bl->b = b;
    *out = &bl->base;
    return KEEL_OK;
}
