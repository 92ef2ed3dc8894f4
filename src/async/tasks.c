/*
 * tasks.c - periodic background tasks (seed 002 background_tasks.py and
 * @track_background_job; seed 003 graceful shutdown).
 *
 * One thread per task.  A thread runs its task, then sleeps interval_ms on a
 * condition variable bound to CLOCK_MONOTONIC (so wall-clock jumps neither
 * shorten nor stretch the pause), and loops while the registry is RUNNING.
 * keel_tasks_stop() flips the state and broadcasts, so sleeping threads leave
 * at once; a thread inside its task function finishes that run first.  Each
 * thread decrements `alive` and signals `exited` when it leaves its loop, which
 * lets stop() wait with a timeout before joining (pthread_join has none).
 */
#include "keel_int.h"

#include <keel/tasks.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

/* Longest single sleep: a deadline this far out is as good as "never" and keeps
 * the timespec arithmetic far from any overflow. */

typedef enum tasks_state {
    TASKS_IDLE = 0, /* created, accepting tasks */
    TASKS_RUNNING,
    TASKS_STOPPING, /* stop requested; threads may still be finishing a run */
    TASKS_STOPPED
} tasks_state;

typedef struct job_families {
    keel_metric *runs, *fails, *dur;
} job_families;

typedef struct job_series {
    keel_series *runs, *fails, *dur; /* all NULL when there is no registry */
} job_series;

typedef struct task {
    struct keel_tasks *owner;
    char *name;
    uint64_t interval_ms;
    keel_task_fn fn;
    void *ud;
    job_series series;
    pthread_t thread;
    bool thread_started;
} task;

struct keel_tasks {
    keel_metrics *m;
    job_families jf;
    pthread_mutex_t mu;
    pthread_cond_t wake;   /* broadcast when the state leaves RUNNING */
    pthread_cond_t exited; /* broadcast when a thread leaves its loop */
    tasks_state state;
    size_t alive; /* threads still in their loop */
    size_t n;
    task tasks[KEEL_TASKS_MAX];
};

/* ----------------------------------------------------------- metrics -- */

static keel_err job_families_get(keel_metrics *m, job_families *jf)
{
    static const char *const labels[] = {"job_name", NULL};
    keel_err e = keel_metrics_counter(m, "background_job_runs_total",
                                      "Background job execution count", labels, &jf->runs);
    if (e == KEEL_OK)
        e = keel_metrics_counter(m, "background_job_failures_total",
                                 "Background job failure count", labels, &jf->fails);
    if (e == KEEL_OK)
        e = keel_metrics_histogram(m, "background_job_duration_seconds",
                                   "Background job duration", labels, NULL, 0, &jf->dur);
    return e;
}

static keel_err job_series_get(const job_families *jf, const char *name, job_series *js)
{
    const char *const values[] = {name};
    keel_err e = keel_metric_series(jf->runs, values, &js->runs);
    if (e == KEEL_OK)
        e = keel_metric_series(jf->fails, values, &js->fails);
    if (e == KEEL_OK)
        e = keel_metric_series(jf->dur, values, &js->dur);
    return e;
}

/* One instrumented run.  The run is counted when it starts, so a run that hangs
 * still shows up; duration and failure are recorded when it returns. */
static keel_err run_once(const job_series *js, keel_task_fn fn, void *ud)
{
    if (js->runs != NULL)
        keel_series_add(js->runs, 1.0);
    uint64_t t0 = keel_time_mono_ns();
    keel_err e = fn(ud);
    uint64_t t1 = keel_time_mono_ns();
    if (e != KEEL_OK && js->fails != NULL)
        keel_series_add(js->fails, 1.0);
    if (js->dur != NULL)
        keel_series_observe(js->dur, (double)(t1 - t0) / 1e9);
    return e;
}

keel_err keel_tasks_run_tracked(keel_metrics *m, const char *name, keel_task_fn fn, void *ud)
{
    if (name == NULL || name[0] == '\0' || fn == NULL)
        return KEEL_EINVAL;
    job_series js = {NULL, NULL, NULL};
    if (m != NULL) {
        job_families jf;
        /* Best effort: a metrics problem must not stop the job from running. */
        if (job_families_get(m, &jf) != KEEL_OK || job_series_get(&jf, name, &js) != KEEL_OK)
            memset(&js, 0, sizeof(js));
    }
    return run_once(&js, fn, ud);
}

/* ---------------------------------------------------------- registry -- */

keel_err keel_tasks_create(keel_tasks **out, keel_metrics *m)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    job_families jf = {NULL, NULL, NULL};
    keel_err e;
    if (m != NULL && (e = job_families_get(m, &jf)) != KEEL_OK)
        return e;
    keel_tasks *t = keel__new(keel_tasks);
    if (t == NULL)
        return KEEL_ENOMEM;
    t->m = m;
    t->jf = jf;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        keel_free(t);
        return KEEL_ENOMEM;
    }
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0 && (rc = pthread_mutex_init(&t->mu, NULL)) == 0) {
        if ((rc = pthread_cond_init(&t->wake, &ca)) == 0) {
            if ((rc = pthread_cond_init(&t->exited, &ca)) != 0)
                pthread_cond_destroy(&t->wake);
        }
        if (rc != 0)
            pthread_mutex_destroy(&t->mu);
    }
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        keel_free(t);
        return rc == ENOMEM || rc == EAGAIN ? KEEL_ENOMEM : KEEL_EINTERNAL;
    }
    *out = t;
    return KEEL_OK;
}

keel_err keel_tasks_add_periodic(keel_tasks *t, const char *name, uint64_t interval_ms,
                                 keel_task_fn fn, void *ud)
{
    if (t == NULL || name == NULL || name[0] == '\0' || fn == NULL || interval_ms == 0)
        return KEEL_EINVAL;
    if (t->state != TASKS_IDLE)
        return KEEL_ESTATE;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->tasks[i].name, name) == 0)
            return KEEL_EEXIST;
    if (t->n == KEEL_TASKS_MAX)
        return KEEL_EFULL;
    task *tk = &t->tasks[t->n];
    memset(tk, 0, sizeof(*tk));
    if (t->m != NULL) {
        keel_err e = job_series_get(&t->jf, name, &tk->series);
        if (e != KEEL_OK) {
            memset(tk, 0, sizeof(*tk));
            return e;
        }
    }
    tk->name = keel_strdup(name);
    if (tk->name == NULL)
        return KEEL_ENOMEM;
    tk->owner = t;
    tk->interval_ms = interval_ms;
    tk->fn = fn;
    tk->ud = ud;
    t->n++;
    return KEEL_OK;
}

/* Absolute CLOCK_MONOTONIC deadline ms from now. */
static struct timespec deadline_after(uint64_t ms)
{
    return keel__mono_deadline(ms);
}

static void *task_main(void *arg)
{
    task *tk = arg;
    keel_tasks *t = tk->owner;
    pthread_mutex_lock(&t->mu);
    while (t->state == TASKS_RUNNING) {
        pthread_mutex_unlock(&t->mu);
        (void)run_once(&tk->series, tk->fn, tk->ud); /* failures are counted in the metric */
        pthread_mutex_lock(&t->mu);
        struct timespec deadline = deadline_after(tk->interval_ms);
        while (t->state == TASKS_RUNNING) {
            if (pthread_cond_timedwait(&t->wake, &t->mu, &deadline) == ETIMEDOUT)
                break;
        }
    }
    t->alive--;
    pthread_cond_broadcast(&t->exited);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* Join every started thread.  Only called once all of them have left their loop
 * (or are about to), so the joins do not block for long. */
static void join_all(keel_tasks *t)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->tasks[i].thread_started) {
            pthread_join(t->tasks[i].thread, NULL);
            t->tasks[i].thread_started = false;
        }
    }
}

keel_err keel_tasks_start(keel_tasks *t)
{
    if (t == NULL)
        return KEEL_EINVAL;
    pthread_mutex_lock(&t->mu);
    if (t->state != TASKS_IDLE) {
        pthread_mutex_unlock(&t->mu);
        return KEEL_ESTATE;
    }
    t->state = TASKS_RUNNING;
    pthread_mutex_unlock(&t->mu);

    keel_err e = KEEL_OK;
    for (size_t i = 0; i < t->n; i++) {
        task *tk = &t->tasks[i];
        pthread_mutex_lock(&t->mu);
        t->alive++;
        pthread_mutex_unlock(&t->mu);
        if (keel__thread_start(&tk->thread, task_main, tk, tk->name) != 0) {
            pthread_mutex_lock(&t->mu);
            t->alive--;
            pthread_mutex_unlock(&t->mu);
            e = KEEL_ENOMEM;
            break;
        }
        tk->thread_started = true;
    }
    if (e != KEEL_OK) {
        pthread_mutex_lock(&t->mu);
        t->state = TASKS_STOPPING;
        pthread_cond_broadcast(&t->wake);
        pthread_mutex_unlock(&t->mu);
        join_all(t);
        pthread_mutex_lock(&t->mu);
        t->state = TASKS_STOPPED;
        pthread_mutex_unlock(&t->mu);
    }
    return e;
}

keel_err keel_tasks_stop(keel_tasks *t, uint64_t timeout_ms)
{
    if (t == NULL)
        return KEEL_EINVAL;
    pthread_mutex_lock(&t->mu);
    if (t->state == TASKS_IDLE || t->state == TASKS_STOPPED) {
        pthread_mutex_unlock(&t->mu);
        return KEEL_OK;
    }
    t->state = TASKS_STOPPING;
    pthread_cond_broadcast(&t->wake);
    struct timespec deadline = deadline_after(timeout_ms);
    while (t->alive > 0) {
        if (timeout_ms == 0) {
            pthread_cond_wait(&t->exited, &t->mu);
        } else if (pthread_cond_timedwait(&t->exited, &t->mu, &deadline) == ETIMEDOUT &&
                   t->alive > 0) {
            pthread_mutex_unlock(&t->mu);
            return KEEL_ETIMEOUT;
        }
    }
    pthread_mutex_unlock(&t->mu);
    join_all(t);
    pthread_mutex_lock(&t->mu);
    t->state = TASKS_STOPPED;
    pthread_mutex_unlock(&t->mu);
    return KEEL_OK;
}

void keel_tasks_destroy(keel_tasks *t)
{
    if (t == NULL)
        return;
    /* No limit: threads must be gone before the free.  With timeout 0 stop can only
     * return KEEL_OK. */
    keel_err e = keel_tasks_stop(t, 0);
    KEEL_ASSERT(e == KEEL_OK);
    KEEL_UNUSED(e);
    for (size_t i = 0; i < t->n; i++)
        keel_free(t->tasks[i].name);
    pthread_cond_destroy(&t->exited);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->mu);
    keel_free(t);
}
