/*
 * keel/tasks.h - periodic background tasks with run/failure/duration metrics.
 *
 * Module contract: a keel_tasks registry holds named periodic tasks (seed 002
 * "Background Tasks": the system-metrics collector and similar loops).  Tasks
 * are added before keel_tasks_start(), which gives each task its own thread;
 * a task runs once immediately, then again interval_ms after each run ends.
 * keel_tasks_stop() wakes sleeping tasks at once (no waiting out an interval)
 * and lets a run in progress finish (seed 003 graceful shutdown).  Every run
 * is counted in the seed's metrics when a registry is given:
 * background_job_runs_total{job_name}, background_job_failures_total{job_name}
 * and background_job_duration_seconds{job_name} (histogram, default buckets).
 * keel_tasks_run_tracked() is the same instrumentation for a single run (the
 * seed's @track_background_job decorator).
 *
 * The lifecycle functions (add, start, stop, destroy) are meant for one
 * controlling thread; task functions run on the task threads.
 */
#ifndef KEEL_TASKS_H
#define KEEL_TASKS_H

#include <keel/common.h>
#include <keel/metrics.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Most tasks one registry accepts. */
#define KEEL_TASKS_MAX 64

typedef struct keel_tasks keel_tasks;

/** One run of a task.  Any return other than KEEL_OK counts as a failure; the task
 *  keeps its schedule either way.  Runs on a task thread: ud must be safe to use there. */
typedef keel_err (*keel_task_fn)(void *ud);

/** Create an empty task registry.
 *  @param out receives the registry.
 *  @param m metrics registry for the background_job_* metrics, or NULL for none.
 *  @return KEEL_OK, KEEL_EINVAL (out NULL), KEEL_ENOMEM, or an error of keel_metrics_counter()
 *          / keel_metrics_histogram() (KEEL_EEXIST if those names are taken with another shape).
 *  Thread-safety: any thread.  Ownership: caller destroys with keel_tasks_destroy(); m is
 *  borrowed and must outlive the registry. */
KEEL_API KEEL_NODISCARD keel_err keel_tasks_create(keel_tasks **out, keel_metrics *m);

/** Add a periodic task.  Only before keel_tasks_start().
 *  @param name job name (the job_name label value); copied.
 *  @param interval_ms pause between the end of one run and the start of the next (> 0).
 *  @return KEEL_OK, KEEL_EINVAL (NULL/empty name, NULL fn, interval 0), KEEL_EEXIST (name
 *          already added), KEEL_ESTATE (already started), KEEL_EFULL (KEEL_TASKS_MAX tasks),
 *          KEEL_ENOMEM, or an error of keel_metric_series() (KEEL_ETOOBIG).
 *  Thread-safety: controlling thread only.  Ownership: ud is borrowed until the registry is
 *  stopped. */
KEEL_API KEEL_NODISCARD keel_err keel_tasks_add_periodic(keel_tasks *t, const char *name,
                                                         uint64_t interval_ms, keel_task_fn fn,
                                                         void *ud);

/** Start one thread per task; each runs its task immediately.  Starting with no tasks is
 *  allowed.  Task threads block all asynchronous signals, so SIGTERM/SIGINT reach the
 *  application's own threads.  A registry starts once: after a stop it cannot be restarted.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ESTATE (already started or stopped), KEEL_ENOMEM (a
 *          thread could not be created; threads already started are stopped again).
 *  Thread-safety: controlling thread only. */
KEEL_API KEEL_NODISCARD keel_err keel_tasks_start(keel_tasks *t);

/** Stop: wake every sleeping task at once and wait up to timeout_ms (0 = no limit) for runs
 *  in progress to finish, then join the threads.  Runs are never interrupted.
 *  Calling it on a registry never started, or already stopped, is a no-op returning KEEL_OK.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ETIMEOUT (some run still in progress; it will stop
 *          after that run; call keel_tasks_stop() again or keel_tasks_destroy() to wait).
 *  Thread-safety: controlling thread only; never from inside a task function. */
KEEL_API KEEL_NODISCARD keel_err keel_tasks_stop(keel_tasks *t, uint64_t timeout_ms);

/** Stop (waiting without limit for runs in progress) and free the registry.  NULL is a no-op.
 *  Thread-safety: controlling thread only; never from inside a task function. */
KEEL_API void keel_tasks_destroy(keel_tasks *t);

/** Run fn(ud) once, now, on the calling thread, and record it in m (when not NULL):
 *  background_job_runs_total{job_name=name} +1, background_job_duration_seconds observed,
 *  and background_job_failures_total +1 when fn does not return KEEL_OK.  The metrics are
 *  best effort: if they cannot be registered, fn still runs.
 *  @return fn's result, or KEEL_EINVAL (NULL/empty name or NULL fn; fn is not run).
 *  Thread-safety: any thread.  Ownership: borrows everything. */
KEEL_API KEEL_NODISCARD keel_err keel_tasks_run_tracked(keel_metrics *m, const char *name,
                                                        keel_task_fn fn, void *ud);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_TASKS_H */
