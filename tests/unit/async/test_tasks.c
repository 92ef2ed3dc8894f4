/* Tests for src/async/tasks.c: periodic runs, prompt stop, failure metrics,
 * stop timeout with a run in progress, lifecycle errors, keel_tasks_run_tracked. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* nanosleep under -std=c11 */
#endif
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keel_int.h"

#include <keel/metrics.h>
#include <keel/tasks.h>

static const char *const JOB_LABELS[] = {"job_name", NULL};

/* Value of background_job_<what>{job_name=job}: runs / failures counters, or the
 * observation count of the duration histogram. */
static double job_metric(keel_metrics *m, const char *what, const char *job)
{
    keel_metric *f;
    if (strcmp(what, "runs") == 0)
        ASSERT_OK(keel_metrics_counter(m, "background_job_runs_total",
                                       "Background job execution count", JOB_LABELS, &f));
    else if (strcmp(what, "failures") == 0)
        ASSERT_OK(keel_metrics_counter(m, "background_job_failures_total",
                                       "Background job failure count", JOB_LABELS, &f));
    else
        ASSERT_OK(keel_metrics_histogram(m, "background_job_duration_seconds",
                                         "Background job duration", JOB_LABELS, NULL, 0, &f));
    const char *values[] = {job};
    keel_series *s;
    ASSERT_OK(keel_metric_series(f, values, &s));
    return keel_series_value(s);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait (bounded, so a broken implementation fails instead of hanging) until *c >= n. */
static int wait_for(atomic_int *c, int n)
{
    for (int i = 0; i < 30000; i++) {
        if (atomic_load(c) >= n)
            return 1;
        sleep_ms(1);
    }
    return 0;
}

static keel_err count_ok(void *ud)
{
    atomic_fetch_add((atomic_int *)ud, 1);
    return KEEL_OK;
}

static keel_err count_fail(void *ud)
{
    atomic_fetch_add((atomic_int *)ud, 1);
    return KEEL_EIO;
}

static void test_periodic_runs(void **state)
{
    (void)state;
    keel_metrics *m;
    keel_tasks *t;
    atomic_int n = 0;
    ASSERT_OK(keel_metrics_create(&m));
    ASSERT_OK(keel_tasks_create(&t, m));
    ASSERT_OK(keel_tasks_add_periodic(t, "tick", 10, count_ok, &n));
    ASSERT_OK(keel_tasks_start(t));
    assert_true(wait_for(&n, 4));
    ASSERT_OK(keel_tasks_stop(t, 0));
    int runs = atomic_load(&n);
    assert_true(runs >= 4);
    assert_true(job_metric(m, "runs", "tick") == (double)runs);
    assert_true(job_metric(m, "failures", "tick") == 0.0);
    assert_true(job_metric(m, "duration", "tick") == (double)runs);
    sleep_ms(30);
    assert_int_equal(runs, atomic_load(&n)); /* stopped means stopped */
    keel_tasks_destroy(t);
    keel_metrics_destroy(m);
}

static void test_stop_wakes_long_sleep(void **state)
{
    (void)state;
    keel_metrics *m;
    keel_tasks *t;
    atomic_int a = 0, b = 0;
    ASSERT_OK(keel_metrics_create(&m));
    ASSERT_OK(keel_tasks_create(&t, m));
    ASSERT_OK(keel_tasks_add_periodic(t, "hourly", 3600u * 1000u, count_ok, &a));
    ASSERT_OK(keel_tasks_add_periodic(t, "forever", UINT64_MAX, count_ok, &b));
    ASSERT_OK(keel_tasks_start(t));
    assert_true(wait_for(&a, 1)); /* first run is immediate */
    assert_true(wait_for(&b, 1));
    /* Both threads now sleep for an hour or more; stop must wake them (a hang here is
     * caught by the ctest timeout). */
    ASSERT_OK(keel_tasks_stop(t, 0));
    assert_int_equal(1, atomic_load(&a));
    assert_int_equal(1, atomic_load(&b));
    assert_true(job_metric(m, "runs", "hourly") == 1.0);
    ASSERT_OK(keel_tasks_stop(t, 0)); /* second stop: no-op */
    keel_tasks_destroy(t);
    keel_metrics_destroy(m);
}

static void test_failures_counted(void **state)
{
    (void)state;
    keel_metrics *m;
    keel_tasks *t;
    atomic_int n = 0;
    ASSERT_OK(keel_metrics_create(&m));
    ASSERT_OK(keel_tasks_create(&t, m));
    ASSERT_OK(keel_tasks_add_periodic(t, "flaky", 10, count_fail, &n));
    ASSERT_OK(keel_tasks_start(t));
    assert_true(wait_for(&n, 3));
    ASSERT_OK(keel_tasks_stop(t, 0));
    int runs = atomic_load(&n);
    assert_true(job_metric(m, "runs", "flaky") == (double)runs);
    assert_true(job_metric(m, "failures", "flaky") == (double)runs);

    keel_buf out;
    keel_buf_init(&out, 1 << 16);
    ASSERT_OK(keel_metrics_expose(m, "background_job_failures_total", &out));
    char want[96];
    snprintf(want, sizeof(want), "background_job_failures_total{job_name=\"flaky\"} %d\n", runs);
    assert_non_null(strstr(out.ptr, want));
    keel_buf_cleanup(&out);
    keel_tasks_destroy(t);
    keel_metrics_destroy(m);
}

static void test_run_tracked(void **state)
{
    (void)state;
    keel_metrics *m;
    atomic_int n = 0;
    ASSERT_OK(keel_metrics_create(&m));
    ASSERT_OK(keel_tasks_run_tracked(m, "send_emails", count_ok, &n));
    assert_int_equal(KEEL_EIO, keel_tasks_run_tracked(m, "send_emails", count_fail, &n));
    ASSERT_OK(keel_tasks_run_tracked(m, "send_emails", count_ok, &n));
    assert_int_equal(3, atomic_load(&n));
    assert_true(job_metric(m, "runs", "send_emails") == 3.0);
    assert_true(job_metric(m, "failures", "send_emails") == 1.0);
    assert_true(job_metric(m, "duration", "send_emails") == 3.0);

    keel_buf out;
    keel_buf_init(&out, 1 << 16);
    ASSERT_OK(keel_metrics_expose(m, "background_job_", &out));
    assert_non_null(strstr(out.ptr, "background_job_runs_total{job_name=\"send_emails\"} 3\n"));
    assert_non_null(
        strstr(out.ptr, "background_job_failures_total{job_name=\"send_emails\"} 1\n"));
    assert_non_null(
        strstr(out.ptr, "background_job_duration_seconds_count{job_name=\"send_emails\"} 3\n"));
    assert_non_null(strstr(out.ptr, "# TYPE background_job_duration_seconds histogram\n"));
    keel_buf_cleanup(&out);

    /* no registry: the job still runs and its result comes back */
    assert_int_equal(KEEL_EIO, keel_tasks_run_tracked(NULL, "x", count_fail, &n));
    assert_int_equal(4, atomic_load(&n));
    assert_int_equal(KEEL_EINVAL, keel_tasks_run_tracked(m, "", count_ok, &n));
    assert_int_equal(KEEL_EINVAL, keel_tasks_run_tracked(m, NULL, count_ok, &n));
    assert_int_equal(KEEL_EINVAL, keel_tasks_run_tracked(m, "x", NULL, &n));
    assert_int_equal(4, atomic_load(&n));
    keel_metrics_destroy(m);
}

/* A task that blocks inside its run until the test opens the gate. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    atomic_int entered;
    atomic_int finished;
} gate;

static keel_err gated(void *ud)
{
    gate *g = ud;
    atomic_fetch_add(&g->entered, 1);
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    atomic_fetch_add(&g->finished, 1);
    return KEEL_OK;
}

static void test_stop_lets_run_finish(void **state)
{
    (void)state;
    gate g;
    memset(&g, 0, sizeof(g));
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    keel_metrics *m;
    keel_tasks *t;
    ASSERT_OK(keel_metrics_create(&m));
    ASSERT_OK(keel_tasks_create(&t, m));
    ASSERT_OK(keel_tasks_add_periodic(t, "slow", 10, gated, &g));
    ASSERT_OK(keel_tasks_start(t));
    assert_true(wait_for(&g.entered, 1));
    /* The run cannot finish while the gate is shut, so the wait must time out. */
    assert_int_equal(KEEL_ETIMEOUT, keel_tasks_stop(t, 5));
    assert_int_equal(0, atomic_load(&g.finished));
    pthread_mutex_lock(&g.mu);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    ASSERT_OK(keel_tasks_stop(t, 0));
    assert_int_equal(1, atomic_load(&g.entered)); /* no new run after the stop request */
    assert_int_equal(1, atomic_load(&g.finished));
    assert_true(job_metric(m, "runs", "slow") == 1.0);
    assert_true(job_metric(m, "duration", "slow") == 1.0);
    keel_tasks_destroy(t);
    keel_metrics_destroy(m);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
}

static void test_lifecycle_errors(void **state)
{
    (void)state;
    keel_tasks *t;
    atomic_int n = 0;
    assert_int_equal(KEEL_EINVAL, keel_tasks_create(NULL, NULL));
    ASSERT_OK(keel_tasks_create(&t, NULL)); /* no metrics */
    ASSERT_OK(keel_tasks_stop(t, 0));       /* never started: no-op */
    assert_int_equal(KEEL_EINVAL, keel_tasks_add_periodic(t, "a", 0, count_ok, &n));
    assert_int_equal(KEEL_EINVAL, keel_tasks_add_periodic(t, "", 10, count_ok, &n));
    assert_int_equal(KEEL_EINVAL, keel_tasks_add_periodic(t, NULL, 10, count_ok, &n));
    assert_int_equal(KEEL_EINVAL, keel_tasks_add_periodic(t, "a", 10, NULL, &n));
    assert_int_equal(KEEL_EINVAL, keel_tasks_add_periodic(NULL, "a", 10, count_ok, &n));
    ASSERT_OK(keel_tasks_add_periodic(t, "a", 10, count_ok, &n));
    assert_int_equal(KEEL_EEXIST, keel_tasks_add_periodic(t, "a", 20, count_ok, &n));
    ASSERT_OK(keel_tasks_start(t));
    assert_int_equal(KEEL_ESTATE, keel_tasks_start(t));
    assert_int_equal(KEEL_ESTATE, keel_tasks_add_periodic(t, "b", 10, count_ok, &n));
    assert_true(wait_for(&n, 2));
    ASSERT_OK(keel_tasks_stop(t, 0));
    assert_int_equal(KEEL_ESTATE, keel_tasks_start(t)); /* one-shot lifecycle */
    assert_int_equal(KEEL_EINVAL, keel_tasks_start(NULL));
    assert_int_equal(KEEL_EINVAL, keel_tasks_stop(NULL, 0));
    keel_tasks_destroy(t);
    keel_tasks_destroy(NULL);

    /* start with no tasks, destroy while running */
    ASSERT_OK(keel_tasks_create(&t, NULL));
    ASSERT_OK(keel_tasks_start(t));
    keel_tasks_destroy(t);
    atomic_store(&n, 0);
    ASSERT_OK(keel_tasks_create(&t, NULL));
    ASSERT_OK(keel_tasks_add_periodic(t, "a", 3600000, count_ok, &n));
    ASSERT_OK(keel_tasks_start(t));
    assert_true(wait_for(&n, 1));
    keel_tasks_destroy(t); /* stops the sleeping task */
    assert_int_equal(1, atomic_load(&n));
}

static void test_task_cap(void **state)
{
    (void)state;
    keel_tasks *t;
    atomic_int n = 0;
    char name[16];
    ASSERT_OK(keel_tasks_create(&t, NULL));
    for (int i = 0; i < KEEL_TASKS_MAX; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        ASSERT_OK(keel_tasks_add_periodic(t, name, 3600000, count_ok, &n));
    }
    assert_int_equal(KEEL_EFULL, keel_tasks_add_periodic(t, "one-more", 10, count_ok, &n));
    ASSERT_OK(keel_tasks_start(t));
    assert_true(wait_for(&n, KEEL_TASKS_MAX)); /* every task ran once */
    ASSERT_OK(keel_tasks_stop(t, 0));
    assert_int_equal(KEEL_TASKS_MAX, atomic_load(&n));
    keel_tasks_destroy(t);
}

static void test_metric_name_conflict(void **state)
{
    (void)state;
    keel_metrics *m;
    keel_metric *f;
    keel_tasks *t = (keel_tasks *)&f;
    ASSERT_OK(keel_metrics_create(&m));
    ASSERT_OK(keel_metrics_gauge(m, "background_job_runs_total", "taken", NULL, &f));
    assert_int_equal(KEEL_EEXIST, keel_tasks_create(&t, m));
    assert_null(t);
    /* run_tracked still runs the job when its metrics cannot be registered */
    atomic_int n = 0;
    ASSERT_OK(keel_tasks_run_tracked(m, "j", count_ok, &n));
    assert_int_equal(1, atomic_load(&n));
    keel_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_periodic_runs),
        cmocka_unit_test(test_stop_wakes_long_sleep),
        cmocka_unit_test(test_failures_counted),
        cmocka_unit_test(test_run_tracked),
        cmocka_unit_test(test_stop_lets_run_finish),
        cmocka_unit_test(test_lifecycle_errors),
        cmocka_unit_test(test_task_cap),
        cmocka_unit_test(test_metric_name_conflict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
