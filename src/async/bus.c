/*
 * bus.c - in-process event bus (seed 000 section 10A, seed 001 section 4).
 *
 * Subscribers live in an immutable snapshot: an array of pointers to reference-counted
 * subscription records.  subscribe/unsubscribe build a new snapshot under the bus mutex and
 * swap it in; a delivery takes a reference on the current snapshot (under the mutex, a few
 * instructions) and walks it without any lock.  The old snapshot is freed by whoever drops
 * its last reference, so a delivery in progress never reads freed memory.
 *
 * Unsubscribe must also guarantee that the handler is not running any more when it returns,
 * or its ud could be freed under a running handler.  Each record has an `active` flag and an
 * `inflight` count, both seq_cst atomics: a delivery increments inflight and then reads
 * active; unsubscribe clears active and then reads inflight.  Either the delivery sees the
 * flag cleared (and skips the call) or unsubscribe sees the count (and waits on unsub_cv until
 * it drops to zero).  A thread that is itself inside a handler of the bus must not wait (it
 * could be waiting for itself), which a thread-local stack of delivery frames detects.
 *
 * ASYNC mode adds a ring buffer of events and a worker pool.  `inflight` on the bus counts
 * events accepted and not yet fully delivered (queued or in a handler, in both modes); drain
 * and stop wait for it to reach zero.
 */
#include "keel_int.h"

#include <keel/bus.h>
#include <keel/log.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#define BUS_MAX_MIDDLEWARE 32
#define BUS_MAX_WORKERS 64u
#define BUS_MAX_QUEUE ((size_t)1 << 20)
#define BUS_MAX_SUBSCRIBERS ((size_t)1 << 16)
/* Longest single wait: "no limit" in practice, and far from timespec overflow. */

/* ------------------------------------------------------------------ events -- */

struct keel_event {
    char type[KEEL_EVENT_TYPE_MAX + 1];
    char id[KEEL_UUID_SIZE];
    int64_t ts_ms;
    json_t *data;
    json_t *meta;
};

/* 1 if s is a valid type name: 1..KEEL_EVENT_TYPE_MAX bytes of printable ASCII without
 * spaces.  The wildcard is accepted only when allow_any is set. */
static int type_valid(const char *s, int allow_any)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (n >= KEEL_EVENT_TYPE_MAX || s[n] < 0x21 || s[n] > 0x7e)
            return 0;
    }
    if (strcmp(s, KEEL_BUS_ANY) == 0)
        return allow_any;
    return 1;
}

keel_err keel_event_create(keel_event **out, const char *type, json_t *data)
{
    if (out == NULL || !type_valid(type, 0)) {
        json_decref(data);
        if (out != NULL)
            *out = NULL;
        return KEEL_EINVAL;
    }
    *out = NULL;
    keel_event *ev = keel__new(keel_event);
    if (ev == NULL) {
        json_decref(data);
        return KEEL_ENOMEM;
    }
    ev->data = data != NULL ? data : json_null();
    ev->meta = json_object();
    if (ev->meta == NULL) {
        keel_event_destroy(ev);
        return KEEL_ENOMEM;
    }
    keel_err e = keel_uuid4(ev->id);
    if (e != KEEL_OK) {
        keel_event_destroy(ev);
        return e;
    }
    memcpy(ev->type, type, strlen(type) + 1);
    ev->ts_ms = keel_time_wall_ms();
    *out = ev;
    return KEEL_OK;
}

void keel_event_destroy(keel_event *ev)
{
    if (ev == NULL)
        return;
    json_decref(ev->data);
    json_decref(ev->meta);
    keel_free(ev);
}

const char *keel_event_type(const keel_event *ev)
{
    return ev != NULL ? ev->type : "";
}

const char *keel_event_id(const keel_event *ev)
{
    return ev != NULL ? ev->id : "";
}

int64_t keel_event_timestamp_ms(const keel_event *ev)
{
    return ev != NULL ? ev->ts_ms : 0;
}

json_t *keel_event_data(const keel_event *ev)
{
    return ev != NULL ? ev->data : NULL;
}

json_t *keel_event_metadata(const keel_event *ev)
{
    return ev != NULL ? ev->meta : NULL;
}

keel_err keel_event_set_data(keel_event *ev, json_t *data)
{
    if (ev == NULL) {
        json_decref(data);
        return KEEL_EINVAL;
    }
    json_decref(ev->data);
    ev->data = data != NULL ? data : json_null();
    return KEEL_OK;
}

json_t *keel_event_to_json(const keel_event *ev)
{
    if (ev == NULL)
        return NULL;
    char ts[KEEL_TIME_ISO8601_SIZE];
    keel_time_iso8601(ev->ts_ms, ts);
    return json_pack("{s:s, s:s, s:s, s:I, s:O, s:O}", "id", ev->id, "type", ev->type,
                     "timestamp", ts, "timestamp_ms", (json_int_t)ev->ts_ms, "data", ev->data,
                     "metadata", ev->meta);
}

/* ----------------------------------------------------------- subscriptions -- */

typedef struct sub {
    atomic_uint refs; /* one per snapshot holding it, plus temporary holders */
    atomic_bool active;
    atomic_uint inflight; /* handler calls in progress (or about to check `active`) */
    uint64_t id;
    bool any;
    char *type;
    keel_bus_handler_fn fn;
    void *ud;
} sub;

/* An immutable list of subscriptions, in subscription order. */
typedef struct snapshot {
    atomic_uint refs;
    size_t n;
    sub *subs[]; /* flexible array member (C99), n entries */
} snapshot;

static void sub_ref(sub *s)
{
    atomic_fetch_add(&s->refs, 1u);
}

static void sub_unref(sub *s)
{
    if (atomic_fetch_sub(&s->refs, 1u) == 1u) {
        keel_free(s->type);
        keel_free(s);
    }
}

static snapshot *snapshot_new(size_t n)
{
    snapshot *s = keel_malloc(sizeof(snapshot) + n * sizeof(sub *));
    if (s == NULL)
        return NULL;
    atomic_init(&s->refs, 1u);
    s->n = n;
    return s;
}

static void snapshot_unref(snapshot *s)
{
    if (s == NULL)
        return;
    if (atomic_fetch_sub(&s->refs, 1u) == 1u) {
        for (size_t i = 0; i < s->n; i++)
            sub_unref(s->subs[i]);
        keel_free(s);
    }
}

/* ---------------------------------------------------------------- the bus -- */

typedef enum bus_state { BUS_RUNNING = 0, BUS_STOPPING, BUS_STOPPED } bus_state;

typedef struct mw {
    keel_bus_middleware_fn fn;
    void *ud;
} mw;

struct keel_bus {
    keel_bus_config cfg;
    keel_logger *log;
    keel_metric *m_published, *m_failures, *m_dropped; /* NULL without a registry */

    pthread_mutex_t mu;
    pthread_cond_t not_empty; /* queue gained an event, or the state changed */
    pthread_cond_t not_full;  /* queue lost an event, or the state changed */
    pthread_cond_t idle;      /* inflight reached 0, or a worker exited */
    pthread_cond_t unsub_cv;  /* a deactivated subscription's inflight reached 0 */

    snapshot *snap; /* current subscriber list (mu) */
    uint64_t next_id;

    mw mws[BUS_MAX_MIDDLEWARE];
    size_t nmw;
    atomic_bool sealed; /* set by the first publish: no more middleware */

    _Atomic int state; /* bus_state; written under mu */
    keel_event **q;    /* ring buffer (ASYNC) */
    size_t qhead, qlen;
    size_t inflight; /* accepted, not yet fully delivered (mu) */
    pthread_t *threads;
    unsigned nthreads; /* started */
    size_t alive;      /* workers still in their loop (mu) */
    bool joined;

    atomic_uint_fast64_t published, delivered, calls, failures, dropped;
};

/* Deliveries running on this thread, innermost first: lets unsubscribe/stop know they are
 * called from a handler of a bus (and must not wait for it). */
typedef struct frame {
    const keel_bus *bus;
    const struct frame *prev;
} frame;
static _Thread_local const frame *tl_frames;
static _Thread_local const keel_bus *tl_worker_of; /* this thread is a worker of that bus */

static int in_handler_of(const keel_bus *b)
{
    for (const frame *f = tl_frames; f != NULL; f = f->prev)
        if (f->bus == b)
            return 1;
    return 0;
}

void keel_bus_config_default(keel_bus_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->mode = KEEL_BUS_SYNC;
    cfg->workers = 2;
    cfg->queue_capacity = 1024;
    cfg->overflow = KEEL_BUS_OVERFLOW_REJECT;
    cfg->block_timeout_ms = 1000;
    cfg->max_subscribers = 1024;
    cfg->metrics = NULL;
}

/* Absolute CLOCK_MONOTONIC deadline ms from now; 0 means "no limit" (capped far away). */
static struct timespec deadline_after(uint64_t ms)
{
    return keel__mono_deadline(ms == 0 ? UINT64_MAX : ms); /* 0: no limit */
}

static void count_drop(keel_bus *b, const char *reason)
{
    atomic_fetch_add(&b->dropped, 1u);
    if (b->m_dropped != NULL) {
        const char *const v[] = {reason};
        (void)keel_metric_add(b->m_dropped, v, 1.0); /* best effort */
    }
}

static void count_published(keel_bus *b, const char *type)
{
    atomic_fetch_add(&b->published, 1u);
    if (b->m_published != NULL) {
        const char *const v[] = {type};
        (void)keel_metric_add(b->m_published, v, 1.0);
    }
}

static void count_failure(keel_bus *b, const keel_event *ev, const sub *s, keel_err e)
{
    atomic_fetch_add(&b->failures, 1u);
    if (b->m_failures != NULL) {
        const char *const v[] = {ev->type};
        (void)keel_metric_add(b->m_failures, v, 1.0);
    }
    keel_log_field f[4] = {
        KEEL_LF_STR("event_type", ev->type),
        KEEL_LF_STR("event_id", ev->id),
        KEEL_LF_INT("subscription_id", s->id),
        KEEL_LF_STR("error", keel_err_name(e)),
    };
    KEEL_LOG_FIELDS(b->log, KEEL_LOG_LEVEL_WARNING, f, 4, "event handler failed: %s",
                    keel_strerror(e));
}

/* Run every matching handler of the current snapshot for ev, in order. */
static void deliver(keel_bus *b, const keel_event *ev)
{
    pthread_mutex_lock(&b->mu);
    snapshot *s = b->snap;
    atomic_fetch_add(&s->refs, 1u);
    pthread_mutex_unlock(&b->mu);

    frame fr = {b, tl_frames};
    tl_frames = &fr;
    for (size_t i = 0; i < s->n; i++) {
        sub *su = s->subs[i];
        if (!su->any && strcmp(su->type, ev->type) != 0)
            continue;
        atomic_fetch_add(&su->inflight, 1u);
        if (atomic_load(&su->active)) {
            atomic_fetch_add(&b->calls, 1u);
            keel_err e = su->fn(ev, su->ud);
            if (e != KEEL_OK)
                count_failure(b, ev, su, e);
        }
        if (atomic_fetch_sub(&su->inflight, 1u) == 1u && !atomic_load(&su->active)) {
            pthread_mutex_lock(&b->mu);
            pthread_cond_broadcast(&b->unsub_cv);
            pthread_mutex_unlock(&b->mu);
        }
    }
    tl_frames = fr.prev;
    snapshot_unref(s);
    atomic_fetch_add(&b->delivered, 1u);
}

/* One event fewer in flight (mu held). */
static void inflight_done_locked(keel_bus *b)
{
    KEEL_ASSERT(b->inflight > 0);
    b->inflight--;
    if (b->inflight == 0)
        pthread_cond_broadcast(&b->idle);
}

static void *worker_main(void *arg)
{
    keel_bus *b = arg;
    tl_worker_of = b;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (b->qlen == 0 && atomic_load(&b->state) == BUS_RUNNING)
            pthread_cond_wait(&b->not_empty, &b->mu);
        if (b->qlen == 0)
            break; /* stopping, and everything accepted has been taken */
        keel_event *ev = b->q[b->qhead];
        b->q[b->qhead] = NULL;
        b->qhead = (b->qhead + 1) % b->cfg.queue_capacity;
        b->qlen--;
        pthread_cond_signal(&b->not_full);
        pthread_mutex_unlock(&b->mu);
        deliver(b, ev);
        keel_event_destroy(ev);
        pthread_mutex_lock(&b->mu);
        inflight_done_locked(b);
    }
    b->alive--;
    pthread_cond_broadcast(&b->idle);
    pthread_mutex_unlock(&b->mu);
    tl_worker_of = NULL;
    return NULL;
}

static keel_err check_config(const keel_bus_config *c, keel_diag *d)
{
    if (c->size < sizeof(keel_bus_config))
        return keel_diag_set(d, KEEL_EINVAL, 0, "size: set it with keel_bus_config_default()");
    if (c->mode != KEEL_BUS_SYNC && c->mode != KEEL_BUS_ASYNC)
        return keel_diag_set(d, KEEL_EINVAL, 0, "mode: must be KEEL_BUS_SYNC or KEEL_BUS_ASYNC");
    if (c->max_subscribers == 0 || c->max_subscribers > BUS_MAX_SUBSCRIBERS)
        return keel_diag_set(d, KEEL_EINVAL, 0, "max_subscribers: must be 1..%zu",
                             BUS_MAX_SUBSCRIBERS);
    if (c->mode == KEEL_BUS_ASYNC) {
        if (c->workers == 0 || c->workers > BUS_MAX_WORKERS)
            return keel_diag_set(d, KEEL_EINVAL, 0, "workers: must be 1..%u", BUS_MAX_WORKERS);
        if (c->queue_capacity == 0 || c->queue_capacity > BUS_MAX_QUEUE)
            return keel_diag_set(d, KEEL_EINVAL, 0, "queue_capacity: must be 1..%zu",
                                 BUS_MAX_QUEUE);
        if (c->overflow != KEEL_BUS_OVERFLOW_REJECT && c->overflow != KEEL_BUS_OVERFLOW_BLOCK)
            return keel_diag_set(d, KEEL_EINVAL, 0,
                                 "overflow: must be KEEL_BUS_OVERFLOW_REJECT or _BLOCK");
    }
    return KEEL_OK;
}

static keel_err metrics_get(keel_bus *b, keel_metrics *m)
{
    static const char *const type_l[] = {"type", NULL};
    static const char *const reason_l[] = {"reason", NULL};
    keel_err e = keel_metrics_counter(m, "keel_bus_events_published_total",
                                      "Events accepted by the event bus", type_l,
                                      &b->m_published);
    if (e == KEEL_OK)
        e = keel_metrics_counter(m, "keel_bus_handler_failures_total",
                                 "Event handler invocations that failed", type_l,
                                 &b->m_failures);
    if (e == KEEL_OK)
        e = keel_metrics_counter(m, "keel_bus_events_dropped_total",
                                 "Events the bus did not deliver", reason_l, &b->m_dropped);
    return e;
}

/* Stop and join the workers started so far (creation failure path, and stop). */
static void join_workers(keel_bus *b)
{
    if (b->joined)
        return;
    for (unsigned i = 0; i < b->nthreads; i++)
        pthread_join(b->threads[i], NULL);
    b->joined = true;
}

static keel_err start_workers(keel_bus *b)
{
    b->threads = keel_calloc(b->cfg.workers, sizeof(pthread_t));
    if (b->threads == NULL)
        return KEEL_ENOMEM;
    keel_err e = KEEL_OK;
    for (unsigned i = 0; i < b->cfg.workers; i++) {
        pthread_mutex_lock(&b->mu);
        b->alive++;
        pthread_mutex_unlock(&b->mu);
        if (keel__thread_start(&b->threads[i], worker_main, b, "bus") != 0) {
            pthread_mutex_lock(&b->mu);
            b->alive--;
            pthread_mutex_unlock(&b->mu);
            e = KEEL_ENOMEM;
            break;
        }
        b->nthreads++;
    }
    if (e != KEEL_OK) {
        pthread_mutex_lock(&b->mu);
        atomic_store(&b->state, BUS_STOPPED);
        pthread_cond_broadcast(&b->not_empty);
        pthread_mutex_unlock(&b->mu);
        join_workers(b);
    }
    return e;
}

static keel_err sync_init(keel_bus *b)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return KEEL_ENOMEM;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int stage = 0;
    if (rc == 0 && (rc = pthread_mutex_init(&b->mu, NULL)) == 0)
        stage = 1;
    pthread_cond_t *cvs[4] = {&b->not_empty, &b->not_full, &b->idle, &b->unsub_cv};
    for (int i = 0; rc == 0 && i < 4; i++) {
        if ((rc = pthread_cond_init(cvs[i], &ca)) == 0)
            stage = 2 + i;
    }
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        for (int i = stage - 2; i >= 0; i--)
            pthread_cond_destroy(cvs[i]);
        if (stage >= 1)
            pthread_mutex_destroy(&b->mu);
        return rc == ENOMEM || rc == EAGAIN ? KEEL_ENOMEM : KEEL_EINTERNAL;
    }
    return KEEL_OK;
}

static void sync_cleanup(keel_bus *b)
{
    pthread_cond_destroy(&b->unsub_cv);
    pthread_cond_destroy(&b->idle);
    pthread_cond_destroy(&b->not_full);
    pthread_cond_destroy(&b->not_empty);
    pthread_mutex_destroy(&b->mu);
}

keel_err keel_bus_create(keel_bus **out, const keel_bus_config *cfg, keel_diag *d)
{
    if (out == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "out: must not be NULL");
    *out = NULL;
    keel_bus_config def;
    keel_bus_config_default(&def);
    if (cfg == NULL)
        cfg = &def;
    keel_err e = check_config(cfg, d);
    if (e != KEEL_OK)
        return e;
    keel_bus *b = keel__new(keel_bus);
    if (b == NULL)
        return keel_diag_set(d, KEEL_ENOMEM, 0, "out of memory");
    b->cfg = *cfg;
    b->cfg.size = sizeof(b->cfg);
    b->log = keel_logger_get("keel.async.bus");
    b->next_id = 1;
    atomic_init(&b->state, BUS_RUNNING);
    if (cfg->metrics != NULL && (e = metrics_get(b, cfg->metrics)) != KEEL_OK) {
        keel_free(b);
        return keel_diag_set(d, e, 0, "metrics: cannot register the keel_bus_* families: %s",
                             keel_strerror(e));
    }
    b->snap = snapshot_new(0);
    if (b->snap == NULL) {
        keel_free(b);
        return keel_diag_set(d, KEEL_ENOMEM, 0, "out of memory");
    }
    if ((e = sync_init(b)) != KEEL_OK) {
        keel_free(b->snap);
        keel_free(b);
        return keel_diag_set(d, e, 0, "cannot initialise the bus mutex");
    }
    if (cfg->mode == KEEL_BUS_ASYNC) {
        b->q = keel_calloc(cfg->queue_capacity, sizeof(keel_event *));
        e = b->q == NULL ? KEEL_ENOMEM : start_workers(b);
        if (e != KEEL_OK) {
            keel_free(b->threads);
            keel_free(b->q);
            sync_cleanup(b);
            keel_free(b->snap);
            keel_free(b);
            return keel_diag_set(d, e, 0, "cannot start the bus workers");
        }
    } else {
        b->joined = true;
    }
    *out = b;
    return KEEL_OK;
}

keel_err keel_bus_add_middleware(keel_bus *b, keel_bus_middleware_fn fn, void *ud)
{
    if (b == NULL || fn == NULL)
        return KEEL_EINVAL;
    if (atomic_load(&b->sealed))
        return KEEL_ESTATE;
    if (b->nmw == BUS_MAX_MIDDLEWARE)
        return KEEL_EFULL;
    b->mws[b->nmw].fn = fn;
    b->mws[b->nmw].ud = ud;
    b->nmw++;
    return KEEL_OK;
}

keel_err keel_bus_subscribe(keel_bus *b, const char *type, keel_bus_handler_fn handler,
                            void *ud, uint64_t *id)
{
    if (id != NULL)
        *id = 0;
    if (b == NULL || handler == NULL || !type_valid(type, 1))
        return KEEL_EINVAL;
    sub *s = keel__new(sub);
    if (s == NULL)
        return KEEL_ENOMEM;
    s->type = keel_strdup(type);
    if (s->type == NULL) {
        keel_free(s);
        return KEEL_ENOMEM;
    }
    atomic_init(&s->refs, 1u); /* the new snapshot's */
    atomic_init(&s->active, true);
    atomic_init(&s->inflight, 0u);
    s->any = strcmp(type, KEEL_BUS_ANY) == 0;
    s->fn = handler;
    s->ud = ud;

    pthread_mutex_lock(&b->mu);
    snapshot *old = b->snap;
    if (old->n >= b->cfg.max_subscribers) {
        pthread_mutex_unlock(&b->mu);
        sub_unref(s);
        return KEEL_EFULL;
    }
    snapshot *ns = snapshot_new(old->n + 1);
    if (ns == NULL) {
        pthread_mutex_unlock(&b->mu);
        sub_unref(s);
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < old->n; i++) {
        sub_ref(old->subs[i]);
        ns->subs[i] = old->subs[i];
    }
    s->id = b->next_id++;
    ns->subs[old->n] = s;
    b->snap = ns;
    pthread_mutex_unlock(&b->mu);
    snapshot_unref(old);
    if (id != NULL)
        *id = s->id;
    return KEEL_OK;
}

keel_err keel_bus_unsubscribe(keel_bus *b, uint64_t id)
{
    if (b == NULL)
        return KEEL_EINVAL;
    pthread_mutex_lock(&b->mu);
    snapshot *old = b->snap;
    size_t at = old->n;
    for (size_t i = 0; i < old->n; i++) {
        if (old->subs[i]->id == id) {
            at = i;
            break;
        }
    }
    if (id == 0 || at == old->n) {
        pthread_mutex_unlock(&b->mu);
        return KEEL_ENOTFOUND;
    }
    snapshot *ns = snapshot_new(old->n - 1);
    if (ns == NULL) {
        pthread_mutex_unlock(&b->mu);
        return KEEL_ENOMEM;
    }
    for (size_t i = 0, j = 0; i < old->n; i++) {
        if (i == at)
            continue;
        sub_ref(old->subs[i]);
        ns->subs[j++] = old->subs[i];
    }
    sub *s = old->subs[at];
    sub_ref(s); /* keep it alive while waiting below */
    atomic_store(&s->active, false);
    b->snap = ns;
    pthread_mutex_unlock(&b->mu);
    snapshot_unref(old);

    if (!in_handler_of(b)) {
        pthread_mutex_lock(&b->mu);
        while (atomic_load(&s->inflight) > 0)
            pthread_cond_wait(&b->unsub_cv, &b->mu);
        pthread_mutex_unlock(&b->mu);
    }
    sub_unref(s);
    return KEEL_OK;
}

/* Run the middleware chain.  Returns 1 to deliver, 0 if dropped. */
static int run_middleware(keel_bus *b, keel_event *ev)
{
    for (size_t i = 0; i < b->nmw; i++) {
        if (b->mws[i].fn(ev, b->mws[i].ud) != KEEL_BUS_PASS) {
            count_drop(b, "middleware");
            KEEL_LOG_DEBUG(b->log, "event %s (%s) dropped by middleware %zu", ev->id, ev->type,
                           i);
            return 0;
        }
    }
    return 1;
}

static keel_err publish_sync(keel_bus *b, keel_event *ev)
{
    pthread_mutex_lock(&b->mu);
    if (atomic_load(&b->state) != BUS_RUNNING) {
        pthread_mutex_unlock(&b->mu);
        count_drop(b, "closed");
        keel_event_destroy(ev);
        return KEEL_ECLOSED;
    }
    b->inflight++;
    pthread_mutex_unlock(&b->mu);
    count_published(b, ev->type);
    deliver(b, ev);
    keel_event_destroy(ev);
    pthread_mutex_lock(&b->mu);
    inflight_done_locked(b);
    pthread_mutex_unlock(&b->mu);
    return KEEL_OK;
}

static keel_err publish_async(keel_bus *b, keel_event *ev)
{
    keel_err e = KEEL_OK;
    const char *reason = NULL;
    pthread_mutex_lock(&b->mu);
    struct timespec deadline = {0, 0};
    bool have_deadline = false;
    while (atomic_load(&b->state) == BUS_RUNNING && b->qlen == b->cfg.queue_capacity) {
        if (b->cfg.overflow == KEEL_BUS_OVERFLOW_REJECT || tl_worker_of == b) {
            e = KEEL_EFULL;
            break;
        }
        if (!have_deadline) {
            deadline = deadline_after(b->cfg.block_timeout_ms);
            have_deadline = true;
        }
        if (pthread_cond_timedwait(&b->not_full, &b->mu, &deadline) == ETIMEDOUT &&
            b->qlen == b->cfg.queue_capacity) {
            e = KEEL_ETIMEOUT;
            break;
        }
    }
    if (e == KEEL_OK && atomic_load(&b->state) != BUS_RUNNING)
        e = KEEL_ECLOSED;
    if (e == KEEL_OK) {
        b->q[(b->qhead + b->qlen) % b->cfg.queue_capacity] = ev;
        b->qlen++;
        b->inflight++;
        pthread_cond_signal(&b->not_empty);
        count_published(b, ev->type); /* before unlock: ev may be freed right after */
    } else {
        reason = e == KEEL_ECLOSED ? "closed" : "queue_full";
    }
    pthread_mutex_unlock(&b->mu);
    if (reason != NULL) {
        count_drop(b, reason);
        keel_event_destroy(ev);
    }
    return e;
}

keel_err keel_bus_publish_take(keel_bus *b, keel_event *ev)
{
    if (b == NULL || ev == NULL) {
        keel_event_destroy(ev);
        return KEEL_EINVAL;
    }
    atomic_store(&b->sealed, true);
    if (atomic_load(&b->state) != BUS_RUNNING) {
        count_drop(b, "closed");
        keel_event_destroy(ev);
        return KEEL_ECLOSED;
    }
    if (!run_middleware(b, ev)) {
        keel_event_destroy(ev);
        return KEEL_OK;
    }
    return b->cfg.mode == KEEL_BUS_ASYNC ? publish_async(b, ev) : publish_sync(b, ev);
}

keel_err keel_bus_publish(keel_bus *b, const char *type, json_t *data, char id_out[KEEL_UUID_SIZE])
{
    if (id_out != NULL)
        id_out[0] = '\0';
    if (b == NULL) {
        json_decref(data);
        return KEEL_EINVAL;
    }
    keel_event *ev;
    keel_err e = keel_event_create(&ev, type, data);
    if (e != KEEL_OK)
        return e;
    if (id_out != NULL)
        memcpy(id_out, ev->id, KEEL_UUID_SIZE);
    return keel_bus_publish_take(b, ev);
}

/* Wait (mu held) until nothing is in flight (and, if asked, every worker has left its
 * loop), or until timeout_ms passes (0 = no limit). */
static keel_err wait_idle_locked(keel_bus *b, uint64_t timeout_ms, int want_workers_gone)
{
    struct timespec deadline = deadline_after(timeout_ms);
    while (b->inflight > 0 || (want_workers_gone && b->alive > 0)) {
        if (pthread_cond_timedwait(&b->idle, &b->mu, &deadline) == ETIMEDOUT &&
            (b->inflight > 0 || (want_workers_gone && b->alive > 0)))
            return KEEL_ETIMEOUT;
    }
    return KEEL_OK;
}

keel_err keel_bus_drain(keel_bus *b, uint64_t timeout_ms)
{
    if (b == NULL)
        return KEEL_EINVAL;
    if (tl_worker_of == b || in_handler_of(b))
        return KEEL_EBUSY;
    pthread_mutex_lock(&b->mu);
    keel_err e = wait_idle_locked(b, timeout_ms, 0);
    pthread_mutex_unlock(&b->mu);
    return e;
}

keel_err keel_bus_stop(keel_bus *b, uint64_t timeout_ms)
{
    if (b == NULL)
        return KEEL_EINVAL;
    if (tl_worker_of == b || in_handler_of(b))
        return KEEL_EBUSY;
    pthread_mutex_lock(&b->mu);
    if (atomic_load(&b->state) == BUS_STOPPED && b->joined) {
        pthread_mutex_unlock(&b->mu);
        return KEEL_OK;
    }
    atomic_store(&b->state, BUS_STOPPING);
    pthread_cond_broadcast(&b->not_empty);
    pthread_cond_broadcast(&b->not_full);
    keel_err e = wait_idle_locked(b, timeout_ms, 1);
    pthread_mutex_unlock(&b->mu);
    if (e != KEEL_OK)
        return e;
    join_workers(b);
    pthread_mutex_lock(&b->mu);
    atomic_store(&b->state, BUS_STOPPED);
    pthread_mutex_unlock(&b->mu);
    return KEEL_OK;
}

void keel_bus_stats_get(keel_bus *b, keel_bus_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    if (b == NULL)
        return;
    out->published = atomic_load(&b->published);
    out->delivered = atomic_load(&b->delivered);
    out->handler_calls = atomic_load(&b->calls);
    out->handler_failures = atomic_load(&b->failures);
    out->dropped = atomic_load(&b->dropped);
    pthread_mutex_lock(&b->mu);
    out->queued = b->qlen;
    pthread_mutex_unlock(&b->mu);
}

void keel_bus_destroy(keel_bus *b)
{
    if (b == NULL)
        return;
    keel_err e = keel_bus_stop(b, 0);
    KEEL_ASSERT(e == KEEL_OK);
    KEEL_UNUSED(e);
    KEEL_ASSERT(b->qlen == 0);
    snapshot_unref(b->snap);
    keel_free(b->threads);
    keel_free(b->q);
    sync_cleanup(b);
    keel_free(b);
}
