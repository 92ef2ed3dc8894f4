/* Tests for src/resilience/bulkhead.c: concurrency cap, FIFO queue, refusals, timeout,
 * metrics and the layer.  Real threads, synchronised by a condvar: no timing assertions. */
#include "test.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "keel_int.h"
#include <keel/bulkhead.h>

static keel_bulkhead *mk(unsigned max_conc, unsigned max_queue, uint64_t wait_ms,
                         keel_metrics *m)
{
    keel_bulkhead_config cfg;
    keel_bulkhead_config_default(&cfg);
    cfg.name = "payments";
    cfg.max_concurrent = max_conc;
    cfg.max_queue = max_queue;
    cfg.max_wait_ms = wait_ms;
    cfg.metrics = m;
    keel_bulkhead *b = NULL;
    ASSERT_OK(keel_bulkhead_create(&b, &cfg, NULL));
    return b;
}

static void test_config_validation(void **state)
{
    (void)state;
    keel_bulkhead_config cfg;
    keel_bulkhead_config_default(&cfg);
    assert_int_equal(10, cfg.max_concurrent);
    assert_int_equal(0, cfg.max_queue);
    cfg.max_concurrent = 0;
    keel_bulkhead *b = NULL;
    keel_diag d;
    assert_int_equal(KEEL_EINVAL, keel_bulkhead_create(&b, &cfg, &d));
    assert_null(b);
    assert_string_equal("bulkhead: max_concurrent must be >= 1, got 0", d.msg);
    keel_bulkhead_config_default(&cfg);
    cfg.size = 1;
    assert_int_equal(KEEL_EINVAL, keel_bulkhead_create(&b, &cfg, &d));
    assert_int_equal(KEEL_EINVAL, keel_bulkhead_acquire(NULL));
}

static void test_single_thread_permits(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_bulkhead *b = mk(2, 0, 0, m);
    assert_int_equal(2, keel_bulkhead_available(b));
    ASSERT_OK(keel_bulkhead_acquire(b));
    ASSERT_OK(keel_bulkhead_try_acquire(b));
    assert_int_equal(0, keel_bulkhead_available(b));
    assert_int_equal(KEEL_EFULL, keel_bulkhead_acquire(b)); /* max_queue 0: refused at once */
    assert_int_equal(KEEL_EFULL, keel_bulkhead_try_acquire(b));
    assert_int_equal(2, keel_bulkhead_rejected(b));
    keel_bulkhead_release(b);
    assert_int_equal(1, keel_bulkhead_available(b));

    keel_buf out;
    keel_buf_init(&out, 1 << 16);
    ASSERT_OK(keel_metrics_expose(m, "keel_bulkhead", &out));
    assert_non_null(strstr(out.ptr, "keel_bulkhead_available{name=\"payments\"} 1\n"));
    assert_non_null(strstr(out.ptr, "keel_bulkhead_rejected_total{name=\"payments\"} 2\n"));
    keel_buf_cleanup(&out);
    keel_bulkhead_release(b);
    assert_int_equal(2, keel_bulkhead_available(b));
    keel_bulkhead_destroy(b);
    keel_metrics_destroy(m);
}

/* ---------------------------------------------- a blocking terminal -- */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;        /* terminals may finish */
    int inside;      /* terminals running now */
    int max_inside;  /* most at once */
    int entered;     /* terminals started so far */
    int order[16];   /* ids in the order they entered */
} gate;

static gate g;

static void gate_reset(void)
{
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    g.open = 0;
    g.inside = g.max_inside = g.entered = 0;
    memset(g.order, 0, sizeof(g.order));
}

static void gate_wait_entered(int n)
{
    pthread_mutex_lock(&g.mu);
    while (g.entered < n)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
}

static void gate_open(void)
{
    pthread_mutex_lock(&g.mu);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
}

static keel_err blocking_terminal(void *cx, void *ud)
{
    (void)ud;
    keel_call *call = cx;
    pthread_mutex_lock(&g.mu);
    if (g.entered < 16)
        g.order[g.entered] = *(int *)call->user;
    g.entered++;
    g.inside++;
    if (g.inside > g.max_inside)
        g.max_inside = g.inside;
    pthread_cond_broadcast(&g.cv);
    while (!g.open)
        pthread_cond_wait(&g.cv, &g.mu);
    g.inside--;
    pthread_mutex_unlock(&g.mu);
    return KEEL_OK;
}

typedef struct worker {
    pthread_t th;
    keel_chain *ch;
    int id;
    keel_err result;
    const char *refused_by;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    keel_call call;
    keel_call_init(&call, "charge", &w->id);
    w->result = keel_chain_run(w->ch, &call, blocking_terminal, NULL);
    w->refused_by = call.refused_by;
    return NULL;
}

static keel_chain *mk_chain(keel_bulkhead *b)
{
    keel_layer *l;
    ASSERT_OK(keel_bulkhead_layer(b, &l));
    assert_string_equal("bulkhead", l->name);
    keel_chain *ch;
    ASSERT_OK(keel_chain_create(&ch));
    ASSERT_OK(keel_chain_add_take(ch, l));
    return ch;
}

static void start(worker *w, keel_chain *ch, int id)
{
    w->ch = ch;
    w->id = id;
    w->result = 1;
    w->refused_by = NULL;
    assert_int_equal(0, pthread_create(&w->th, NULL, worker_main, w));
}

static void wait_queued(keel_bulkhead *b, unsigned n)
{
    /* Spin (yielding) until n callers are queued; no time limit is asserted. */
    while (keel_bulkhead_queued(b) < n)
        sched_yield();
}

static void test_max_concurrent_respected(void **state)
{
    (void)state;
    gate_reset();
    keel_bulkhead *b = mk(3, 8, 0, NULL);
    keel_chain *ch = mk_chain(b);
    worker w[8];
    for (int i = 0; i < 8; i++)
        start(&w[i], ch, i);
    gate_wait_entered(3);
    wait_queued(b, 5);
    pthread_mutex_lock(&g.mu);
    assert_int_equal(3, g.inside);
    pthread_mutex_unlock(&g.mu);
    assert_int_equal(0, keel_bulkhead_available(b));
    gate_open();
    for (int i = 0; i < 8; i++) {
        pthread_join(w[i].th, NULL);
        assert_int_equal(KEEL_OK, w[i].result);
    }
    assert_int_equal(8, g.entered);
    assert_int_equal(3, g.max_inside);
    assert_int_equal(3, keel_bulkhead_available(b));
    assert_int_equal(0, keel_bulkhead_queued(b));
    assert_int_equal(0, keel_bulkhead_rejected(b));
    keel_chain_destroy(ch);
    keel_bulkhead_destroy(b);
}

static void test_fifo_queue_and_reject_when_full(void **state)
{
    (void)state;
    gate_reset();
    keel_bulkhead *b = mk(1, 2, 0, NULL);
    keel_chain *ch = mk_chain(b);
    /* Hold the only permit ourselves so the order of the queue is under our control. */
    ASSERT_OK(keel_bulkhead_acquire(b));
    worker w[3];
    start(&w[0], ch, 10);
    wait_queued(b, 1);
    start(&w[1], ch, 11);
    wait_queued(b, 2);
    start(&w[2], ch, 12); /* queue full: refused at once */
    pthread_join(w[2].th, NULL);
    assert_int_equal(KEEL_EFULL, w[2].result);
    assert_string_equal("payments", w[2].refused_by);
    assert_int_equal(1, keel_bulkhead_rejected(b));
    assert_int_equal(KEEL_EFULL, keel_bulkhead_try_acquire(b)); /* no barging past the queue */
    gate_open();
    keel_bulkhead_release(b); /* hands the permit to 10, then 10 hands it to 11 */
    pthread_join(w[0].th, NULL);
    pthread_join(w[1].th, NULL);
    assert_int_equal(KEEL_OK, w[0].result);
    assert_int_equal(KEEL_OK, w[1].result);
    assert_null(w[0].refused_by);
    assert_int_equal(2, g.entered);
    assert_int_equal(10, g.order[0]);
    assert_int_equal(11, g.order[1]);
    assert_int_equal(1, g.max_inside);
    assert_int_equal(1, keel_bulkhead_available(b));
    keel_chain_destroy(ch);
    keel_bulkhead_destroy(b);
}

static void test_queued_caller_times_out(void **state)
{
    (void)state;
    gate_reset();
    keel_bulkhead *b = mk(1, 1, 50, NULL); /* a real 50 ms wait; only the result is asserted */
    keel_chain *ch = mk_chain(b);
    ASSERT_OK(keel_bulkhead_acquire(b));
    worker w;
    start(&w, ch, 1);
    pthread_join(w.th, NULL);
    assert_int_equal(KEEL_EFULL, w.result);
    assert_string_equal("payments", w.refused_by);
    assert_int_equal(0, g.entered);
    assert_int_equal(0, keel_bulkhead_queued(b));
    assert_int_equal(1, keel_bulkhead_rejected(b));
    keel_bulkhead_release(b);
    assert_int_equal(1, keel_bulkhead_available(b));
    keel_chain_destroy(ch);
    keel_bulkhead_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_single_thread_permits),
        cmocka_unit_test(test_max_concurrent_respected),
        cmocka_unit_test(test_fifo_queue_and_reject_when_full),
        cmocka_unit_test(test_queued_caller_times_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
