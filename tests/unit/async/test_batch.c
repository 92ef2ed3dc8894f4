/* Tests for src/async/batch.c: size / interval / manual / shutdown flushes with a manual
 * clock, item release, failures and metrics, backpressure (reject, block with timeout, block
 * until space), the automatic timer, calls from the process function, config errors, OOM. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keel_int.h"

#include <keel/batch.h>
#include <keel/metrics.h>
#include <keel/policy.h>

/* --------------------------------------------------------------- recorder -- */

typedef struct recorder {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char log[4096]; /* "[1,2,3] [4]" */
    int batches;
    keel_err ret;
    /* gate: when closed, process waits (after recording) until opened */
    int closed;
    int parked;
    atomic_int freed;
    keel_batch *self;           /* for calls from inside process */
    keel_err inner_add, inner_flush;
} recorder;

static void rec_init(recorder *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->inner_add = KEEL_EINTERNAL;
    r->inner_flush = KEEL_EINTERNAL;
}

static void rec_destroy(recorder *r)
{
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

static keel_err process(void *const *items, size_t n, void *ud)
{
    recorder *r = ud;
    pthread_mutex_lock(&r->mu);
    size_t len = strlen(r->log);
    len += (size_t)snprintf(r->log + len, sizeof(r->log) - len, "%s[", len ? " " : "");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(r->log + len, sizeof(r->log) - len, "%s%zu", i ? "," : "",
                                (size_t)(uintptr_t)items[i]);
    snprintf(r->log + len, sizeof(r->log) - len, "]");
    r->batches++;
    r->parked++;
    pthread_cond_broadcast(&r->cv);
    while (r->closed)
        pthread_cond_wait(&r->cv, &r->mu);
    r->parked--;
    keel_err ret = r->ret;
    pthread_mutex_unlock(&r->mu);
    return ret;
}

static void count_free(void *item, void *ud)
{
    (void)item;
    atomic_fetch_add(&((recorder *)ud)->freed, 1);
}

static void rec_wait_batches(recorder *r, int n)
{
    pthread_mutex_lock(&r->mu);
    while (r->batches < n)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void rec_open(recorder *r)
{
    pthread_mutex_lock(&r->mu);
    r->closed = 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

#define ITEM(i) ((void *)(uintptr_t)(i))

/* A manual-clock processor: nothing happens by time unless the test ticks. */
static keel_batch *manual_batch(recorder *r, keel_manual_clock *mc, size_t batch_size,
                                uint64_t interval, size_t max_pending, keel_metrics *m)
{
    keel_batch_config c;
    keel_batch_config_default(&c);
    c.name = "test";
    c.batch_size = batch_size;
    c.flush_interval_ms = interval;
    c.max_pending = max_pending;
    c.process = process;
    c.ud = r;
    c.item_free = count_free;
    c.auto_tick = 0;
    c.clock = &mc->clock;
    c.metrics = m;
    keel_batch *b;
    ASSERT_OK(keel_batch_create(&b, &c, NULL));
    r->self = b;
    return b;
}

static double metric(keel_metrics *m, const char *name, const char *reason)
{
    static const char *const reason_l[] = {"reason", NULL};
    keel_metric *f;
    const char *help = strcmp(name, "keel_batch_flushes_total") == 0
                           ? "Batches cut, by reason"
                       : strcmp(name, "keel_batch_items_total") == 0
                           ? "Items handed to batch process functions"
                       : strcmp(name, "keel_batch_failures_total") == 0
                           ? "Batch process calls that failed"
                           : "Items refused by a full batch processor";
    ASSERT_OK(keel_metrics_counter(m, name, help, reason ? reason_l : NULL, &f));
    const char *const v[] = {reason};
    keel_series *s;
    ASSERT_OK(keel_metric_series(f, reason ? v : NULL, &s));
    return keel_series_value(s);
}

/* ---------------------------------------------------------------- flushes -- */

static void test_size_flush(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    recorder r;
    rec_init(&r);
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1000);
    keel_batch *b = manual_batch(&r, &mc, 3, 5000, 100, m);
    for (int i = 1; i <= 7; i++)
        ASSERT_OK(keel_batch_add(b, ITEM(i)));
    ASSERT_OK(keel_batch_drain(b, 0));
    assert_string_equal("[1,2,3] [4,5,6]", r.log);
    keel_batch_stats st;
    keel_batch_stats_get(b, &st);
    assert_int_equal(7, st.added);
    assert_int_equal(6, st.processed);
    assert_int_equal(2, st.batches);
    assert_int_equal(2, st.flushes[KEEL_BATCH_REASON_SIZE]);
    assert_int_equal(0, st.flushes[KEEL_BATCH_REASON_INTERVAL]);
    assert_int_equal(1, st.pending);
    assert_int_equal(6, atomic_load(&r.freed));
    assert_int_equal(2.0, metric(m, "keel_batch_flushes_total", "size"));
    assert_int_equal(6.0, metric(m, "keel_batch_items_total", NULL));

    /* Item 7 waits for the interval (measured from its add at t=1000). */
    ASSERT_OK(keel_batch_tick(b, 5999));
    ASSERT_OK(keel_batch_drain(b, 0));
    assert_string_equal("[1,2,3] [4,5,6]", r.log);
    ASSERT_OK(keel_batch_tick(b, 6000));
    ASSERT_OK(keel_batch_drain(b, 0));
    assert_string_equal("[1,2,3] [4,5,6] [7]", r.log);
    assert_int_equal(1.0, metric(m, "keel_batch_flushes_total", "interval"));
    keel_batch_destroy(b);
    /* Nothing was left for shutdown. */
    assert_int_equal(0.0, metric(m, "keel_batch_flushes_total", "shutdown"));
    assert_int_equal(7, atomic_load(&r.freed));
    keel_metrics_destroy(m);
    rec_destroy(&r);
}

static void test_interval_flush(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_batch *b = manual_batch(&r, &mc, 100, 1000, 1000, NULL);
    ASSERT_OK(keel_batch_add(b, ITEM(1)));
    keel_manual_clock_advance(&mc, 500);
    ASSERT_OK(keel_batch_add(b, ITEM(2)));
    ASSERT_OK(keel_batch_tick(b, 999)); /* the window starts at the oldest item (t=0) */
    ASSERT_OK(keel_batch_drain(b, 0));
    assert_string_equal("", r.log);
    ASSERT_OK(keel_batch_tick(b, 1000));
    ASSERT_OK(keel_batch_drain(b, 0));
    assert_string_equal("[1,2]", r.log);

    /* A new window starts with the next item. */
    keel_manual_clock_advance(&mc, 1000); /* t = 1500 */
    ASSERT_OK(keel_batch_add(b, ITEM(3)));
    ASSERT_OK(keel_batch_tick(b, 2499));
    ASSERT_OK(keel_batch_tick(b, 2000));
    ASSERT_OK(keel_batch_drain(b, 0));
    assert_string_equal("[1,2]", r.log);
    ASSERT_OK(keel_batch_tick(b, 2500));
    ASSERT_OK(keel_batch_drain(b, 0));
    assert_string_equal("[1,2] [3]", r.log);

    /* Ticking with nothing pending does nothing. */
    ASSERT_OK(keel_batch_tick(b, 100000));
    keel_batch_stats st;
    keel_batch_stats_get(b, &st);
    assert_int_equal(2, st.flushes[KEEL_BATCH_REASON_INTERVAL]);
    assert_int_equal(2, st.batches);
    keel_batch_destroy(b);
    rec_destroy(&r);
}

static void test_manual_and_shutdown_flush(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    recorder r;
    rec_init(&r);
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_batch *b = manual_batch(&r, &mc, 10, 1000, 100, m);
    ASSERT_OK(keel_batch_add(b, ITEM(1)));
    ASSERT_OK(keel_batch_add(b, ITEM(2)));
    ASSERT_OK(keel_batch_flush(b, 0)); /* waits: the batch is processed when it returns */
    assert_string_equal("[1,2]", r.log);
    ASSERT_OK(keel_batch_flush(b, 0)); /* nothing pending: no empty batch */
    assert_int_equal(1, r.batches);

    ASSERT_OK(keel_batch_add(b, ITEM(3)));
    ASSERT_OK(keel_batch_add(b, ITEM(4)));
    ASSERT_OK(keel_batch_add(b, ITEM(5)));
    ASSERT_OK(keel_batch_stop(b, 0));
    assert_string_equal("[1,2] [3,4,5]", r.log);
    assert_int_equal(KEEL_ECLOSED, keel_batch_add(b, ITEM(6)));
    ASSERT_OK(keel_batch_stop(b, 0)); /* second stop: no-op */
    keel_batch_stats st;
    keel_batch_stats_get(b, &st);
    assert_int_equal(1, st.flushes[KEEL_BATCH_REASON_MANUAL]);
    assert_int_equal(1, st.flushes[KEEL_BATCH_REASON_SHUTDOWN]);
    assert_int_equal(5, st.processed);
    assert_int_equal(0, st.pending);
    assert_int_equal(5, atomic_load(&r.freed)); /* item 6 was refused: still the caller's */
    assert_int_equal(1.0, metric(m, "keel_batch_flushes_total", "shutdown"));
    assert_int_equal(1.0, metric(m, "keel_batch_flushes_total", "manual"));
    keel_batch_destroy(b);
    keel_metrics_destroy(m);
    rec_destroy(&r);
}

static void test_failures_counted(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    recorder r;
    rec_init(&r);
    r.ret = KEEL_EIO;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_batch *b = manual_batch(&r, &mc, 2, 1000, 10, m);
    for (int i = 1; i <= 5; i++)
        ASSERT_OK(keel_batch_add(b, ITEM(i)));
    ASSERT_OK(keel_batch_flush(b, 0));
    assert_string_equal("[1,2] [3,4] [5]", r.log);
    keel_batch_stats st;
    keel_batch_stats_get(b, &st);
    assert_int_equal(3, st.failures);
    assert_int_equal(3, st.batches);
    assert_int_equal(5, st.processed);
    assert_int_equal(5, atomic_load(&r.freed)); /* released even though processing failed */
    assert_int_equal(3.0, metric(m, "keel_batch_failures_total", NULL));
    /* The processor keeps going after failures. */
    r.ret = KEEL_OK;
    ASSERT_OK(keel_batch_add(b, ITEM(6)));
    ASSERT_OK(keel_batch_flush(b, 0));
    assert_string_equal("[1,2] [3,4] [5] [6]", r.log);
    keel_batch_destroy(b);
    assert_int_equal(3.0, metric(m, "keel_batch_failures_total", NULL));
    keel_metrics_destroy(m);
    rec_destroy(&r);
}

/* ----------------------------------------------------------- backpressure -- */

typedef struct adder {
    keel_batch *b;
    keel_err result;
} adder;

static void *add_thread(void *arg)
{
    adder *a = arg;
    a->result = keel_batch_add(a->b, ITEM(99));
    return NULL;
}

static keel_batch *bp_batch(recorder *r, keel_batch_overflow ov, uint64_t block_ms)
{
    keel_batch_config c;
    keel_batch_config_default(&c);
    c.batch_size = 2;
    c.max_pending = 4;
    c.flush_interval_ms = 1000;
    c.overflow = ov;
    c.block_timeout_ms = block_ms;
    c.process = process;
    c.ud = r;
    c.auto_tick = 0;
    keel_batch *b;
    ASSERT_OK(keel_batch_create(&b, &c, NULL));
    return b;
}

static void test_backpressure_reject(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    r.closed = 1; /* the consumer is slow: stuck on the first batch */
    keel_batch *b = bp_batch(&r, KEEL_BATCH_OVERFLOW_REJECT, 0);
    for (int i = 1; i <= 4; i++)
        ASSERT_OK(keel_batch_add(b, ITEM(i)));
    rec_wait_batches(&r, 1);
    /* Items being processed still count: 4 pending = max_pending. */
    assert_int_equal(KEEL_EFULL, keel_batch_add(b, ITEM(5)));
    assert_int_equal(KEEL_EFULL, keel_batch_add(b, ITEM(5)));
    keel_batch_stats st;
    keel_batch_stats_get(b, &st);
    assert_int_equal(2, st.rejected);
    assert_int_equal(4, st.pending);
    assert_int_equal(4, st.added);
    rec_open(&r);
    ASSERT_OK(keel_batch_drain(b, 0));
    ASSERT_OK(keel_batch_add(b, ITEM(5)));
    keel_batch_destroy(b);
    assert_string_equal("[1,2] [3,4] [5]", r.log);
    rec_destroy(&r);
}

static void test_backpressure_block(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    r.closed = 1;
    keel_batch *b = bp_batch(&r, KEEL_BATCH_OVERFLOW_BLOCK, 5);
    for (int i = 1; i <= 4; i++)
        ASSERT_OK(keel_batch_add(b, ITEM(i)));
    rec_wait_batches(&r, 1);
    assert_int_equal(KEEL_ETIMEOUT, keel_batch_add(b, ITEM(5)));
    keel_batch_stats st;
    keel_batch_stats_get(b, &st);
    assert_int_equal(1, st.rejected);
    rec_open(&r);
    keel_batch_destroy(b);
    assert_string_equal("[1,2] [3,4]", r.log);
    rec_destroy(&r);

    /* No limit: the add waits until the consumer frees slots. */
    rec_init(&r);
    r.closed = 1;
    b = bp_batch(&r, KEEL_BATCH_OVERFLOW_BLOCK, 0);
    for (int i = 1; i <= 4; i++)
        ASSERT_OK(keel_batch_add(b, ITEM(i)));
    rec_wait_batches(&r, 1);
    adder a = {b, KEEL_EINTERNAL};
    pthread_t t;
    assert_int_equal(0, pthread_create(&t, NULL, add_thread, &a));
    struct timespec ts = {0, 2 * 1000000L}; /* let it reach the wait (either way it succeeds) */
    nanosleep(&ts, NULL);
    rec_open(&r);
    pthread_join(t, NULL);
    ASSERT_OK(a.result);
    ASSERT_OK(keel_batch_stop(b, 0));
    assert_string_equal("[1,2] [3,4] [99]", r.log);
    keel_batch_destroy(b);
    rec_destroy(&r);

    /* A blocked add is released by stop with ECLOSED. */
    rec_init(&r);
    r.closed = 1;
    b = bp_batch(&r, KEEL_BATCH_OVERFLOW_BLOCK, 0);
    for (int i = 1; i <= 4; i++)
        ASSERT_OK(keel_batch_add(b, ITEM(i)));
    rec_wait_batches(&r, 1);
    a.b = b;
    a.result = KEEL_EINTERNAL;
    assert_int_equal(0, pthread_create(&t, NULL, add_thread, &a));
    nanosleep(&ts, NULL);
    assert_int_equal(KEEL_ETIMEOUT, keel_batch_stop(b, 1)); /* consumer still stuck */
    rec_open(&r);
    pthread_join(t, NULL);
    /* Whether it was already waiting or arrived after stop began, it is refused. */
    assert_int_equal(KEEL_ECLOSED, a.result);
    ASSERT_OK(keel_batch_stop(b, 0));
    assert_string_equal("[1,2] [3,4]", r.log);
    keel_batch_destroy(b);
    rec_destroy(&r);
}

/* ------------------------------------------------------- process callbacks -- */

static keel_err process_reentrant(void *const *items, size_t n, void *ud)
{
    recorder *r = ud;
    (void)items;
    (void)n;
    r->inner_add = keel_batch_add(r->self, ITEM(42)); /* full: must not wait for itself */
    r->inner_flush = keel_batch_flush(r->self, 0);
    return KEEL_OK;
}

static void test_calls_from_process(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    keel_batch_config c;
    keel_batch_config_default(&c);
    c.batch_size = 1;
    c.max_pending = 1;
    c.overflow = KEEL_BATCH_OVERFLOW_BLOCK;
    c.block_timeout_ms = 0;
    c.process = process_reentrant;
    c.ud = &r;
    c.auto_tick = 0;
    keel_batch *b;
    ASSERT_OK(keel_batch_create(&b, &c, NULL));
    r.self = b;
    ASSERT_OK(keel_batch_add(b, ITEM(1)));
    ASSERT_OK(keel_batch_drain(b, 0));
    assert_int_equal(KEEL_EFULL, r.inner_add);
    assert_int_equal(KEEL_EBUSY, r.inner_flush);
    keel_batch_destroy(b);
    rec_destroy(&r);
}

/* --------------------------------------------------------------- auto tick -- */

static void test_auto_tick(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    keel_batch_config c;
    keel_batch_config_default(&c);
    c.batch_size = 100;
    c.flush_interval_ms = 10;
    c.process = process;
    c.ud = &r;
    keel_batch *b;
    ASSERT_OK(keel_batch_create(&b, &c, NULL));
    ASSERT_OK(keel_batch_add(b, ITEM(1)));
    ASSERT_OK(keel_batch_add(b, ITEM(2)));
    rec_wait_batches(&r, 1); /* the consumer's own timer cuts the batch */
    keel_batch_stats st;
    keel_batch_stats_get(b, &st);
    assert_int_equal(1, st.flushes[KEEL_BATCH_REASON_INTERVAL]);
    keel_batch_destroy(b);
    assert_string_equal("[1,2]", r.log);
    rec_destroy(&r);
}

/* ----------------------------------------------------------------- config -- */

static void test_config_errors(void **state)
{
    (void)state;
    keel_batch_config c;
    keel_batch *b = (keel_batch *)&c;
    keel_diag d;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    recorder r;
    rec_init(&r);

    keel_batch_config_default(&c);
    assert_int_equal(KEEL_EINVAL, keel_batch_create(&b, &c, &d));
    assert_null(b);
    assert_non_null(strstr(d.msg, "process"));

    struct {
        const char *field;
        int which;
    } cases[] = {{"batch_size", 0}, {"flush_interval_ms", 1}, {"max_pending", 2},
                 {"overflow", 3},   {"clock", 4},             {"size", 5},
                 {"batch_size", 6}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        keel_batch_config_default(&c);
        c.process = process;
        c.ud = &r;
        switch (cases[i].which) {
        case 0: c.batch_size = 0; break;
        case 1: c.flush_interval_ms = 0; break;
        case 2: c.max_pending = c.batch_size - 1; break;
        case 3: c.overflow = (keel_batch_overflow)5; break;
        case 4: c.clock = &mc.clock; break; /* auto_tick still 1 */
        case 5: c.size = 3; break;
        default: c.batch_size = ((size_t)1 << 20) + 1; break;
        }
        memset(&d, 0, sizeof(d));
        assert_int_equal(KEEL_EINVAL, keel_batch_create(&b, &c, &d));
        assert_int_equal(KEEL_EINVAL, d.code);
        assert_non_null(strstr(d.msg, cases[i].field));
    }
    assert_int_equal(KEEL_EINVAL, keel_batch_create(&b, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_batch_create(NULL, &c, &d));
    assert_int_equal(KEEL_EINVAL, keel_batch_add(NULL, ITEM(1)));
    assert_int_equal(KEEL_EINVAL, keel_batch_tick(NULL, 1));
    assert_int_equal(KEEL_EINVAL, keel_batch_flush(NULL, 1));
    assert_int_equal(KEEL_EINVAL, keel_batch_stop(NULL, 1));
    keel_batch_destroy(NULL);
    rec_destroy(&r);
}

static void test_oom(void **state)
{
    (void)state;
    recorder r;
    rec_init(&r);
    keel_test_failalloc_install();
    for (int n = 0; n < 12; n++) {
        keel_test_failalloc_arm(n);
        keel_batch_config c;
        keel_batch_config_default(&c);
        c.batch_size = 2;
        c.max_pending = 4;
        c.process = process;
        c.ud = &r;
        c.auto_tick = 0;
        keel_batch *b;
        if (keel_batch_create(&b, &c, NULL) != KEEL_OK)
            continue;
        ASSERT_OK(keel_batch_add(b, ITEM(1))); /* add never allocates */
        keel_batch_destroy(b);
    }
    keel_test_failalloc_remove();
    rec_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_flush),
        cmocka_unit_test(test_interval_flush),
        cmocka_unit_test(test_manual_and_shutdown_flush),
        cmocka_unit_test(test_failures_counted),
        cmocka_unit_test(test_backpressure_reject),
        cmocka_unit_test(test_backpressure_block),
        cmocka_unit_test(test_calls_from_process),
        cmocka_unit_test(test_auto_tick),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
