/*
 * keel/jobs.h - a durable job queue in the SQL store (seed 001 section 9: background tasks with
 * retries and status by id; seed 004 example 3: a pool of workers processing jobs).
 *
 * Model.  A job is a row in keel_jobs (library-owned table, component "keel.async.jobs",
 * created by keel_jobs_migrate()): a queue name, a type (which handler runs it), a JSON
 * payload and a state.  keel_jobs_enqueue() inserts a PENDING job and returns its id (a UUIDv4);
 * keel_jobs_enqueue_db() does the same on the caller's connection, so a job enqueued inside
 * the caller's transaction exists only if that transaction commits.
 *
 * Workers.  A keel_jobs_pool serves one queue of one store with N worker threads.  A worker
 * claims the oldest due job in a short transaction (PostgreSQL: SELECT ... FOR UPDATE SKIP
 * LOCKED, so several keeld instances share a queue without blocking each other; SQLite: the
 * same statements under the database write lock), marks it STARTED with a lease
 * (locked_until_ms) and increments its attempt number, commits, then runs the handler outside
 * any transaction.  A housekeeping thread renews the leases of running jobs (heartbeat) every
 * lease_ms / 4, never past the job's deadline.  A job whose lease expires - its worker died,
 * or the handler outlived its time limit - is due again and is claimed by the next worker.
 * Every completion is fenced: it only applies while the row still carries this worker's
 * attempt number and is STARTED; otherwise the outcome is discarded (counted as lost).
 *
 * Guarantees.  At-least-once: a job is never lost once its enqueue committed, but it may run
 * more than once (a worker that dies after the handler's side effects and before recording
 * SUCCESS; a handler that ignores its deadline).  Handlers must therefore be idempotent - key
 * side effects on the job id.  Within those rules a job is never run by two workers at the
 * same time: the second claim needs the first lease to have expired, and the lease is renewed
 * only while the handler runs and only up to its deadline (started + time limit).  A handler
 * that keeps running past its deadline breaks this, which is why it receives the deadline.
 *
 * Retries.  A handler that returns an error fails the attempt.  The job goes to RETRY, due
 * again after min(backoff_base_ms * 2^(attempt-1), backoff_max_ms) (optionally jittered to
 * [d/2, d]), until it has failed max_retries + 1 attempts; then it is FAILURE.  An expired
 * lease consumes an attempt too.  A handler can make its failure permanent (ctx->no_retry).
 *
 * Time.  Due times, leases and timestamps are wall-clock milliseconds taken from the pool's
 * clock (default keel_time_wall_ms()); hosts sharing a queue need synchronised clocks (NTP),
 * with a skew well below lease_ms.
 *
 * Metrics (optional registry): background_job_runs_total{job_name},
 * background_job_failures_total{job_name}, background_job_duration_seconds{job_name} - the
 * same families as keel/tasks.h, job_name being the job type - and
 * background_job_queue_depth{queue} (jobs due or waiting to retry, refreshed by the
 * housekeeping thread).
 *
 * Thread-safety.  The store-level functions (migrate, enqueue, status, depth) are callable from
 * any thread.  A pool's lifecycle functions (register, start, stop, destroy) belong to one
 * controlling thread; keel_jobs_pool_wake() and keel_jobs_run_once() may be called from any.
 */
#ifndef KEEL_JOBS_H
#define KEEL_JOBS_H

#include <jansson.h>
#include <keel/common.h>
#include <keel/core.h>
#include <keel/metrics.h>
#include <keel/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Longest queue name and job type (bytes). */
#define KEEL_JOBS_NAME_MAX 64
/** Largest serialised payload or result (bytes). */
#define KEEL_JOBS_PAYLOAD_MAX (1024u * 1024u)
/** Longest stored error text (bytes; longer messages are truncated). */
#define KEEL_JOBS_ERROR_MAX 1024
/** Most handlers one pool accepts. */
#define KEEL_JOBS_HANDLERS_MAX 64
/** Most worker threads in one pool. */
#define KEEL_JOBS_THREADS_MAX 64

/** Job states, as stored (keel_job_state_name gives the text). */
typedef enum keel_job_state {
    KEEL_JOB_PENDING = 1, /* enqueued, never started */
    KEEL_JOB_STARTED,     /* claimed by a worker, lease held */
    KEEL_JOB_RETRY,       /* an attempt failed; due again at run_at_ms */
    KEEL_JOB_SUCCESS,     /* finished; result holds the handler's JSON (or null) */
    KEEL_JOB_FAILURE      /* gave up; error holds the last error */
} keel_job_state;

/** "PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE"; "UNKNOWN" for other values.
 *  Thread-safety: any thread.  Ownership: static string.  Errors: none. */
KEEL_API const char *keel_job_state_name(keel_job_state s);

/** Per-job options of an enqueue.  Fill with keel_job_opts_default(). */
typedef struct keel_job_opts {
    size_t size;
    unsigned max_retries;   /* retries after the first attempt (default 3) */
    uint64_t delay_ms;      /* first run no earlier than now + delay_ms (default 0) */
    uint64_t time_limit_ms; /* handler deadline, 0 = the pool's default_time_limit_ms */
} keel_job_opts;

/** Defaults: max_retries 3, no delay, the pool's time limit.
 *  Thread-safety: any thread.  Ownership: fills *o.  Errors: none. */
KEEL_API void keel_job_opts_default(keel_job_opts *o);

/** Create the keel_jobs table if needed (component "keel.async.jobs").  Idempotent.
 *  @return KEEL_OK or an error of keel_store_migrate_component() (diag names it).
 *  Thread-safety: any thread.  Ownership: borrows s. */
KEEL_API KEEL_NODISCARD keel_err keel_jobs_migrate(keel_store *s, keel_diag *diag);

/** Enqueue a job in its own transaction.
 *  @param queue queue name (1..KEEL_JOBS_NAME_MAX bytes).
 *  @param type job type, selects the handler (1..KEEL_JOBS_NAME_MAX bytes).
 *  @param payload any JSON value (NULL = JSON null); serialised, at most KEEL_JOBS_PAYLOAD_MAX.
 *  @param opts NULL for the defaults.
 *  @param id_out receives the job id (a UUIDv4); may be NULL.
 *  @return KEEL_OK, KEEL_EINVAL (bad name or opts), KEEL_ETOOBIG (payload), KEEL_ENOMEM,
 *          KEEL_ECRYPTO (no randomness), or a store error.
 *  Thread-safety: any thread.  Ownership: borrows everything. */
KEEL_API KEEL_NODISCARD keel_err keel_jobs_enqueue(keel_store *s, const char *queue,
                                                   const char *type, const json_t *payload,
                                                   const keel_job_opts *opts,
                                                   char id_out[KEEL_UUID_SIZE], keel_diag *diag);

/** Enqueue on the caller's connection: inside the caller's transaction (keel_db_begin or
 *  keel_store_tx) the job commits or rolls back with the business write.  Due times use the
 *  wall clock (keel_time_wall_ms()).  Same parameters and errors as keel_jobs_enqueue().
 *  Thread-safety: the thread that owns db.  Ownership: borrows everything. */
KEEL_API KEEL_NODISCARD keel_err keel_jobs_enqueue_db(keel_db *db, const char *queue,
                                                      const char *type, const json_t *payload,
                                                      const keel_job_opts *opts,
                                                      char id_out[KEEL_UUID_SIZE],
                                                      keel_diag *diag);

/** What keel_jobs_status() reports about one job. */
typedef struct keel_job_status {
    char id[KEEL_UUID_SIZE];
    char queue[KEEL_JOBS_NAME_MAX + 1];
    char type[KEEL_JOBS_NAME_MAX + 1];
    keel_job_state state;
    unsigned attempts;     /* attempts started so far */
    unsigned max_retries;
    json_t *payload;       /* owned: release with keel_job_status_cleanup() */
    json_t *result;        /* SUCCESS: the handler's result (JSON null when it gave none) */
    char *error;           /* RETRY/FAILURE: the last error text; else NULL */
    int64_t created_at_ms; /* wall-clock milliseconds; 0 when not reached yet */
    int64_t started_at_ms; /* start of the latest attempt */
    int64_t finished_at_ms;
    int64_t run_at_ms;     /* PENDING/RETRY: when the job is due */
} keel_job_status;

/** Read a job's status by id.
 *  @return KEEL_OK; KEEL_ENOTFOUND (no such job, or id is not a UUID; diag names the id);
 *          KEEL_EINVAL (NULL argument); KEEL_EPARSE (stored JSON unreadable); KEEL_ENOMEM;
 *          a store error.
 *  Thread-safety: any thread.  Ownership: *out owns payload/result/error; release with
 *  keel_job_status_cleanup() (also after an error, which leaves *out zeroed). */
KEEL_API KEEL_NODISCARD keel_err keel_jobs_status(keel_store *s, const char *id,
                                                  keel_job_status *out, keel_diag *diag);
/** Release what a status owns and zero it.  NULL is a no-op.
 *  Thread-safety: the owner's thread.  Errors: none. */
KEEL_API void keel_job_status_cleanup(keel_job_status *st);

/** Jobs of a queue that are PENDING or RETRY (due or not) plus STARTED ones.
 *  @return KEEL_OK, KEEL_EINVAL, a store error.  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_jobs_queue_depth(keel_store *s, const char *queue,
                                                       int64_t *out, keel_diag *diag);

/* ------------------------------------------------------------------ pool -- */

typedef struct keel_jobs_pool keel_jobs_pool;

/** What a handler sees of the job it runs.  Everything is borrowed for the call. */
typedef struct keel_job_ctx {
    const char *id;
    const char *queue;
    const char *type;
    const json_t *payload;
    unsigned attempt;     /* 1 for the first attempt */
    unsigned max_retries;
    int64_t deadline_ms;  /* wall-clock ms: finish (or give up) before this */
    int no_retry;         /* set to 1 with an error return: fail permanently (no retry) */
    keel_jobs_pool *pool; /* for keel_job_should_stop() */
} keel_job_ctx;

/** A job handler.  Return KEEL_OK for success, optionally setting *result to a JSON value
 *  (a reference the pool takes); return any error to fail the attempt, with a message in
 *  *err (stored as the job's error text; never put secrets there).  Returning KEEL_ECLOSED
 *  while keel_job_should_stop() is true gives the job back without using an attempt.
 *  Runs on a worker thread. */
typedef keel_err (*keel_job_fn)(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud);

/** 1 when the pool is stopping (or the job's lease was lost): a long handler should wind up.
 *  Thread-safety: the handler's thread.  Errors: none. */
KEEL_API int keel_job_should_stop(const keel_job_ctx *ctx);

typedef struct keel_jobs_pool_config {
    size_t size;
    keel_store *store;              /* required; borrowed, must outlive the pool */
    const char *queue;              /* required; copied */
    unsigned threads;               /* worker threads (default 4, 1..KEEL_JOBS_THREADS_MAX) */
    uint64_t lease_ms;              /* claim lease, renewed by the heartbeat (30000) */
    uint64_t poll_ms;               /* idle workers look for due jobs this often (1000) */
    uint64_t default_time_limit_ms; /* for jobs enqueued without one (300000) */
    uint64_t backoff_base_ms;       /* first retry delay (1000) */
    uint64_t backoff_max_ms;        /* cap on the retry delay (3600000) */
    int jitter;                     /* 1: retry delay uniform in [d/2, d] (default 0) */
    keel_metrics *metrics;          /* optional; borrowed, must outlive the pool */
    const char *worker_id;          /* owner recorded on claims; NULL = "<host>:<pid>:<rand>" */
    int64_t (*now_ms)(void *ud);    /* wall clock; NULL = keel_time_wall_ms() */
    void *now_ud;
} keel_jobs_pool_config;

/** Defaults as listed in keel_jobs_pool_config.  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_jobs_pool_config_default(keel_jobs_pool_config *cfg);

/** Create a pool (not started).  Runs keel_jobs_migrate().
 *  @return KEEL_OK, KEEL_EINVAL (diag names the field), KEEL_ENOMEM, a migration error, a
 *          metrics registration error (KEEL_EEXIST if the names are taken with another shape).
 *  Thread-safety: any thread.  Ownership: caller destroys with keel_jobs_pool_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_jobs_pool_create(keel_jobs_pool **out,
                                                       const keel_jobs_pool_config *cfg,
                                                       keel_diag *diag);

/** Register the handler of a job type.  Before keel_jobs_pool_start() only.  A claimed job
 *  whose type has no handler fails permanently ("no handler for type ...").
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_EEXIST (type registered), KEEL_ESTATE (started),
 *          KEEL_EFULL (KEEL_JOBS_HANDLERS_MAX), KEEL_ENOMEM.
 *  Thread-safety: controlling thread.  Ownership: type copied; ud borrowed while running. */
KEEL_API KEEL_NODISCARD keel_err keel_jobs_register(keel_jobs_pool *p, const char *type,
                                                    keel_job_fn fn, void *ud);

/** Start the worker threads and the housekeeping (heartbeat, queue depth) thread.  Threads
 *  block asynchronous signals.  A pool starts once.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ESTATE (started before), KEEL_ENOMEM (threads already
 *          started are stopped again).  Thread-safety: controlling thread. */
KEEL_API KEEL_NODISCARD keel_err keel_jobs_pool_start(keel_jobs_pool *p);

/** Wake idle workers now (after an enqueue) instead of at their next poll.
 *  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_jobs_pool_wake(keel_jobs_pool *p);

/** Graceful stop: workers claim nothing more; running handlers see keel_job_should_stop()
 *  and are waited for up to timeout_ms (0 = no limit); their leases keep being renewed
 *  meanwhile.  Then the threads are joined.  A no-op on a pool never started or stopped.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ETIMEOUT (handlers still running: their leases are no
 *          longer renewed, so other workers take the jobs over once they expire; call again or
 *          destroy to wait for the threads).  Thread-safety: controlling thread, never from
 *          a handler. */
KEEL_API KEEL_NODISCARD keel_err keel_jobs_pool_stop(keel_jobs_pool *p, uint64_t timeout_ms);

/** Stop (waiting without limit) and free.  NULL is a no-op.
 *  Thread-safety: controlling thread, never from a handler. */
KEEL_API void keel_jobs_pool_destroy(keel_jobs_pool *p);

/** Claim one due job of the pool's queue and run it on the calling thread (no heartbeat:
 *  the lease is lease_ms or the job's time limit, whichever is shorter).  For tests, and for
 *  driving the queue from a periodic task instead of the pool's threads.
 *  @param ran set to 1 when a job was claimed (whatever its outcome), 0 when none was due.
 *  @return KEEL_OK (whatever the handler returned), KEEL_EINVAL, or a store error.
 *  Thread-safety: any thread; may run alongside the pool's workers. */
KEEL_API KEEL_NODISCARD keel_err keel_jobs_run_once(keel_jobs_pool *p, int *ran,
                                                    keel_diag *diag);

/** Counters of this pool since creation (for tests and diagnostics). */
typedef struct keel_jobs_pool_stats {
    uint64_t claimed;   /* attempts started */
    uint64_t succeeded; /* SUCCESS recorded */
    uint64_t retried;   /* RETRY recorded */
    uint64_t failed;    /* FAILURE recorded (incl. leases expired on the last attempt) */
    uint64_t released;  /* given back on shutdown */
    uint64_t lost;      /* completions discarded: the claim had been lost */
} keel_jobs_pool_stats;

/** Copy the pool's counters.  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_jobs_pool_stats_get(keel_jobs_pool *p, keel_jobs_pool_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_JOBS_H */
