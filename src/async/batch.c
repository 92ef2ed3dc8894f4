/*
 * batch.c - batch processor (seed 004 AsyncBatchProcessor).
 *
 * Pending items sit in a ring buffer of max_pending slots, in add order.  The first `cut`
 * of them belong to batches already cut (a FIFO of batch sizes and reasons); the rest are
 * "uncut" and wait for the next cut.  Producers cut by size (in add), tick() cuts by
 * interval, flush() and stop() cut the remainder.  Cutting at exactly batch_size in add()
 * keeps the invariant uncut < batch_size outside add(), so every cut is at most batch_size.
 *
 * The single consumer thread takes the head batch, copies its item pointers into a scratch
 * array (the ring may wrap), runs the process function without the lock, then releases the
 * slots.  Slots are freed only after processing, so max_pending also bounds the items being
 * processed: that is the backpressure.  Flush and drain wait on item sequence numbers
 * (cut_seq: items cut so far, done_seq: items processed so far); with one in-order consumer,
 * done_seq >= the cut_seq seen at the call means every batch cut before the call is done.
 */
#include "keel_int.h"

#include <keel/batch.h>
#include <keel/log.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

#define BATCH_MAX_SIZE ((size_t)1 << 20)
#define BATCH_MAX_PENDING ((size_t)1 << 24)
#define BATCH_MAX_SLEEP_MS (UINT64_C(10) * 365 * 24 * 3600 * 1000)
#define BATCH_NAME_MAX 64

static const char *const REASON_NAMES[4] = {"size", "interval", "shutdown", "manual"};

typedef enum batch_state { BATCH_RUNNING = 0, BATCH_STOPPING, BATCH_STOPPED } batch_state;

typedef struct cut_rec {
    size_t n;
    keel_batch_reason reason;
} cut_rec;

struct keel_batch {
    keel_batch_config cfg;
    char name[BATCH_NAME_MAX + 1];
    keel_logger *log;
    keel_series *m_flush[4], *m_items, *m_fail, *m_rejected; /* NULL without registry */

    pthread_mutex_t mu;
    pthread_cond_t work;     /* a batch was cut, an item arrived, or the state changed */
    pthread_cond_t not_full; /* slots were released, or the state changed */
    pthread_cond_t done;     /* a batch was processed, or the consumer exited */

    void **items; /* ring of max_pending */
    size_t head, len, cut;
    cut_rec *cuts; /* ring of max_pending batch records */
    size_t chead, clen;
    uint64_t first_uncut_at; /* add time of the oldest uncut item (valid when uncut > 0) */
    uint64_t cut_seq, done_seq;
    void **scratch; /* batch_size pointers, consumer only */

    batch_state state;
    bool thread_alive, joined;
    pthread_t thread;
    keel_batch_stats st;
};

static _Thread_local const keel_batch *tl_consumer_of;

void keel_batch_config_default(keel_batch_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->name = "batch";
    cfg->batch_size = 100;
    cfg->flush_interval_ms = 5000;
    cfg->max_pending = 1000;
    cfg->overflow = KEEL_BATCH_OVERFLOW_BLOCK;
    cfg->block_timeout_ms = 1000;
    cfg->auto_tick = 1;
}

static struct timespec deadline_after(uint64_t ms)
{
    return keel__mono_deadline(ms == 0 ? UINT64_MAX : ms); /* 0: no limit */
}

static uint64_t now_ms(const keel_batch *b)
{
    return b->cfg.auto_tick ? keel_time_mono_ms() : keel_clock_now_ms(b->cfg.clock);
}

/* Cut the first n uncut items into a batch (mu held). */
static void cut_locked(keel_batch *b, size_t n, keel_batch_reason reason)
{
    KEEL_ASSERT(n > 0 && n <= b->len - b->cut && n <= b->cfg.batch_size);
    KEEL_ASSERT(b->clen < b->cfg.max_pending);
    cut_rec *c = &b->cuts[(b->chead + b->clen) % b->cfg.max_pending];
    c->n = n;
    c->reason = reason;
    b->clen++;
    b->cut += n;
    b->cut_seq += n;
    b->st.flushes[reason]++;
    if (b->m_flush[reason] != NULL)
        keel_series_add(b->m_flush[reason], 1.0);
    pthread_cond_signal(&b->work);
}

static void cut_rest_locked(keel_batch *b, keel_batch_reason reason)
{
    size_t uncut = b->len - b->cut;
    if (uncut > 0)
        cut_locked(b, uncut, reason);
}

/* Process the head batch: called and returns with mu held, drops it meanwhile. */
static void process_head_locked(keel_batch *b)
{
    cut_rec c = b->cuts[b->chead];
    for (size_t i = 0; i < c.n; i++)
        b->scratch[i] = b->items[(b->head + i) % b->cfg.max_pending];
    pthread_mutex_unlock(&b->mu);

    keel_err e = b->cfg.process(b->scratch, c.n, b->cfg.ud);
    if (e != KEEL_OK) {
        keel_log_field f[4] = {
            KEEL_LF_STR("batch", b->name),
            KEEL_LF_INT("items", c.n),
            KEEL_LF_STR("reason", REASON_NAMES[c.reason]),
            KEEL_LF_STR("error", keel_err_name(e)),
        };
        KEEL_LOG_FIELDS(b->log, KEEL_LOG_LEVEL_ERROR, f, 4, "batch processing failed: %s",
                        keel_strerror(e));
        if (b->m_fail != NULL)
            keel_series_add(b->m_fail, 1.0);
    }
    if (b->m_items != NULL)
        keel_series_add(b->m_items, (double)c.n);
    if (b->cfg.item_free != NULL)
        for (size_t i = 0; i < c.n; i++)
            b->cfg.item_free(b->scratch[i], b->cfg.ud);

    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < c.n; i++)
        b->items[(b->head + i) % b->cfg.max_pending] = NULL;
    b->head = (b->head + c.n) % b->cfg.max_pending;
    b->len -= c.n;
    b->cut -= c.n;
    b->chead = (b->chead + 1) % b->cfg.max_pending;
    b->clen--;
    b->done_seq += c.n;
    b->st.processed += c.n;
    b->st.batches++;
    if (e != KEEL_OK)
        b->st.failures++;
    pthread_cond_broadcast(&b->not_full);
    pthread_cond_broadcast(&b->done);
}

static void *consumer_main(void *arg)
{
    keel_batch *b = arg;
    tl_consumer_of = b;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        if (b->clen > 0) {
            process_head_locked(b);
            continue;
        }
        if (b->state != BATCH_RUNNING)
            break; /* stop cut the remainder; every batch is processed */
        size_t uncut = b->len - b->cut;
        if (b->cfg.auto_tick && uncut > 0) {
            uint64_t now = now_ms(b);
            uint64_t due = b->first_uncut_at + b->cfg.flush_interval_ms;
            if (now >= due) {
                cut_rest_locked(b, KEEL_BATCH_REASON_INTERVAL);
                continue;
            }
            struct timespec dl = deadline_after(due - now);
            pthread_cond_timedwait(&b->work, &b->mu, &dl);
        } else {
            pthread_cond_wait(&b->work, &b->mu);
        }
    }
    b->thread_alive = false;
    pthread_cond_broadcast(&b->done);
    pthread_mutex_unlock(&b->mu);
    tl_consumer_of = NULL;
    return NULL;
}

static keel_err check_config(const keel_batch_config *c, keel_diag *d)
{
    if (c->size < sizeof(keel_batch_config))
        return keel_diag_set(d, KEEL_EINVAL, 0, "size: set it with keel_batch_config_default()");
    if (c->process == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "process: a process function is required");
    if (c->batch_size == 0 || c->batch_size > BATCH_MAX_SIZE)
        return keel_diag_set(d, KEEL_EINVAL, 0, "batch_size: must be 1..%zu", BATCH_MAX_SIZE);
    if (c->flush_interval_ms == 0 || c->flush_interval_ms > BATCH_MAX_SLEEP_MS)
        return keel_diag_set(d, KEEL_EINVAL, 0, "flush_interval_ms: must be > 0");
    if (c->max_pending < c->batch_size || c->max_pending > BATCH_MAX_PENDING)
        return keel_diag_set(d, KEEL_EINVAL, 0, "max_pending: must be batch_size (%zu)..%zu",
                             c->batch_size, BATCH_MAX_PENDING);
    if (c->overflow != KEEL_BATCH_OVERFLOW_BLOCK && c->overflow != KEEL_BATCH_OVERFLOW_REJECT)
        return keel_diag_set(d, KEEL_EINVAL, 0,
                             "overflow: must be KEEL_BATCH_OVERFLOW_BLOCK or _REJECT");
    if (c->auto_tick && c->clock != NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0,
                             "clock: a custom clock needs auto_tick = 0 (drive keel_batch_tick)");
    return KEEL_OK;
}

static keel_err metrics_get(keel_batch *b, keel_metrics *m)
{
    static const char *const reason_l[] = {"reason", NULL};
    keel_metric *flushes, *items, *fails, *rej;
    keel_err e = keel_metrics_counter(m, "keel_batch_flushes_total", "Batches cut, by reason",
                                      reason_l, &flushes);
    if (e == KEEL_OK)
        e = keel_metrics_counter(m, "keel_batch_items_total",
                                 "Items handed to batch process functions", NULL, &items);
    if (e == KEEL_OK)
        e = keel_metrics_counter(m, "keel_batch_failures_total",
                                 "Batch process calls that failed", NULL, &fails);
    if (e == KEEL_OK)
        e = keel_metrics_counter(m, "keel_batch_rejected_total",
                                 "Items refused by a full batch processor", NULL, &rej);
    for (size_t i = 0; e == KEEL_OK && i < 4; i++) {
        const char *const v[] = {REASON_NAMES[i]};
        e = keel_metric_series(flushes, v, &b->m_flush[i]);
    }
    if (e == KEEL_OK)
        e = keel_metric_series(items, NULL, &b->m_items);
    if (e == KEEL_OK)
        e = keel_metric_series(fails, NULL, &b->m_fail);
    if (e == KEEL_OK)
        e = keel_metric_series(rej, NULL, &b->m_rejected);
    return e;
}

static keel_err sync_init(keel_batch *b)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return KEEL_ENOMEM;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int stage = 0;
    if (rc == 0 && (rc = pthread_mutex_init(&b->mu, NULL)) == 0)
        stage = 1;
    pthread_cond_t *cvs[3] = {&b->work, &b->not_full, &b->done};
    for (int i = 0; rc == 0 && i < 3; i++) {
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

static void batch_free(keel_batch *b, bool sync_ready)
{
    if (sync_ready) {
        pthread_cond_destroy(&b->done);
        pthread_cond_destroy(&b->not_full);
        pthread_cond_destroy(&b->work);
        pthread_mutex_destroy(&b->mu);
    }
    keel_free(b->items);
    keel_free(b->cuts);
    keel_free(b->scratch);
    keel_free(b);
}

keel_err keel_batch_create(keel_batch **out, const keel_batch_config *cfg, keel_diag *d)
{
    if (out == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "out: must not be NULL");
    *out = NULL;
    if (cfg == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "cfg: required (process has no default)");
    keel_err e = check_config(cfg, d);
    if (e != KEEL_OK)
        return e;
    keel_batch *b = keel__new(keel_batch);
    if (b == NULL)
        return keel_diag_set(d, KEEL_ENOMEM, 0, "out of memory");
    b->cfg = *cfg;
    b->cfg.size = sizeof(b->cfg);
    snprintf(b->name, sizeof(b->name), "%s",
             cfg->name != NULL && cfg->name[0] != '\0' ? cfg->name : "batch");
    b->cfg.name = b->name;
    b->log = keel_logger_get("keel.async.batch");
    if (cfg->metrics != NULL && (e = metrics_get(b, cfg->metrics)) != KEEL_OK) {
        keel_free(b);
        return keel_diag_set(d, e, 0, "metrics: cannot register the keel_batch_* families: %s",
                             keel_strerror(e));
    }
    b->items = keel_calloc(cfg->max_pending, sizeof(void *));
    b->cuts = keel_calloc(cfg->max_pending, sizeof(cut_rec));
    b->scratch = keel_calloc(cfg->batch_size, sizeof(void *));
    if (b->items == NULL || b->cuts == NULL || b->scratch == NULL) {
        batch_free(b, false);
        return keel_diag_set(d, KEEL_ENOMEM, 0, "out of memory");
    }
    if ((e = sync_init(b)) != KEEL_OK) {
        batch_free(b, false);
        return keel_diag_set(d, e, 0, "cannot initialise the processor mutex");
    }
    b->thread_alive = true;
    int rc = keel__thread_start(&b->thread, consumer_main, b, "batch");
    if (rc != 0) {
        batch_free(b, true);
        return keel_diag_set(d, KEEL_ENOMEM, 0, "cannot start the consumer thread");
    }
    *out = b;
    return KEEL_OK;
}

static void count_rejected_locked(keel_batch *b)
{
    b->st.rejected++;
    if (b->m_rejected != NULL)
        keel_series_add(b->m_rejected, 1.0);
}

keel_err keel_batch_add(keel_batch *b, void *item)
{
    if (b == NULL)
        return KEEL_EINVAL;
    keel_err e = KEEL_OK;
    struct timespec dl = {0, 0};
    bool have_dl = false;
    pthread_mutex_lock(&b->mu);
    while (b->state == BATCH_RUNNING && b->len == b->cfg.max_pending) {
        if (b->cfg.overflow == KEEL_BATCH_OVERFLOW_REJECT || tl_consumer_of == b) {
            e = KEEL_EFULL;
            break;
        }
        if (!have_dl) {
            dl = deadline_after(b->cfg.block_timeout_ms);
            have_dl = true;
        }
        if (pthread_cond_timedwait(&b->not_full, &b->mu, &dl) == ETIMEDOUT &&
            b->len == b->cfg.max_pending) {
            e = KEEL_ETIMEOUT;
            break;
        }
    }
    if (e == KEEL_OK && b->state != BATCH_RUNNING)
        e = KEEL_ECLOSED;
    if (e == KEEL_EFULL || e == KEEL_ETIMEOUT)
        count_rejected_locked(b);
    if (e == KEEL_OK) {
        if (b->len == b->cut)
            b->first_uncut_at = now_ms(b);
        b->items[(b->head + b->len) % b->cfg.max_pending] = item;
        b->len++;
        b->st.added++;
        if (b->len - b->cut >= b->cfg.batch_size)
            cut_locked(b, b->cfg.batch_size, KEEL_BATCH_REASON_SIZE);
        else if (b->len - b->cut == 1 && b->cfg.auto_tick)
            pthread_cond_signal(&b->work); /* the consumer starts the interval timer */
    }
    pthread_mutex_unlock(&b->mu);
    return e;
}

keel_err keel_batch_tick(keel_batch *b, uint64_t now)
{
    if (b == NULL)
        return KEEL_EINVAL;
    pthread_mutex_lock(&b->mu);
    if (b->len > b->cut && now >= b->first_uncut_at &&
        now - b->first_uncut_at >= b->cfg.flush_interval_ms)
        cut_rest_locked(b, KEEL_BATCH_REASON_INTERVAL);
    pthread_mutex_unlock(&b->mu);
    return KEEL_OK;
}

/* Wait (mu held) until done_seq reaches target or the consumer is gone. */
static keel_err wait_done_locked(keel_batch *b, uint64_t target, uint64_t timeout_ms)
{
    struct timespec dl = deadline_after(timeout_ms);
    while (b->done_seq < target && b->thread_alive) {
        if (pthread_cond_timedwait(&b->done, &b->mu, &dl) == ETIMEDOUT &&
            b->done_seq < target && b->thread_alive)
            return KEEL_ETIMEOUT;
    }
    return KEEL_OK;
}

keel_err keel_batch_flush(keel_batch *b, uint64_t timeout_ms)
{
    if (b == NULL)
        return KEEL_EINVAL;
    if (tl_consumer_of == b)
        return KEEL_EBUSY;
    pthread_mutex_lock(&b->mu);
    cut_rest_locked(b, KEEL_BATCH_REASON_MANUAL);
    keel_err e = wait_done_locked(b, b->cut_seq, timeout_ms);
    pthread_mutex_unlock(&b->mu);
    return e;
}

keel_err keel_batch_drain(keel_batch *b, uint64_t timeout_ms)
{
    if (b == NULL)
        return KEEL_EINVAL;
    if (tl_consumer_of == b)
        return KEEL_EBUSY;
    pthread_mutex_lock(&b->mu);
    keel_err e = wait_done_locked(b, b->cut_seq, timeout_ms);
    pthread_mutex_unlock(&b->mu);
    return e;
}

keel_err keel_batch_stop(keel_batch *b, uint64_t timeout_ms)
{
    if (b == NULL)
        return KEEL_EINVAL;
    if (tl_consumer_of == b)
        return KEEL_EBUSY;
    pthread_mutex_lock(&b->mu);
    if (b->state == BATCH_STOPPED) {
        pthread_mutex_unlock(&b->mu);
        return KEEL_OK;
    }
    if (b->state == BATCH_RUNNING) {
        b->state = BATCH_STOPPING;
        cut_rest_locked(b, KEEL_BATCH_REASON_SHUTDOWN);
        pthread_cond_broadcast(&b->work);
        pthread_cond_broadcast(&b->not_full);
    }
    struct timespec dl = deadline_after(timeout_ms);
    while (b->thread_alive) {
        if (pthread_cond_timedwait(&b->done, &b->mu, &dl) == ETIMEDOUT && b->thread_alive) {
            pthread_mutex_unlock(&b->mu);
            return KEEL_ETIMEOUT;
        }
    }
    pthread_mutex_unlock(&b->mu);
    if (!b->joined) {
        pthread_join(b->thread, NULL);
        b->joined = true;
    }
    pthread_mutex_lock(&b->mu);
    b->state = BATCH_STOPPED;
    pthread_mutex_unlock(&b->mu);
    return KEEL_OK;
}

void keel_batch_stats_get(keel_batch *b, keel_batch_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    if (b == NULL)
        return;
    pthread_mutex_lock(&b->mu);
    *out = b->st;
    out->pending = b->len;
    pthread_mutex_unlock(&b->mu);
}

void keel_batch_destroy(keel_batch *b)
{
    if (b == NULL)
        return;
    keel_err e = keel_batch_stop(b, 0);
    KEEL_ASSERT(e == KEEL_OK);
    KEEL_UNUSED(e);
    /* Everything was processed by the consumer before it left; nothing is left to free. */
    KEEL_ASSERT(b->len == 0);
    batch_free(b, true);
}
