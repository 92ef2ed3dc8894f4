/*
 * jobs.c - the durable job queue (keel/jobs.h): the keel_jobs table, enqueue, status, and a
 * pool of worker threads that claim due jobs with a renewed lease and a fenced completion.
 *
 * Claim.  One short transaction per attempt: (1) jobs whose lease expired on their last
 * attempt become FAILURE; (2) the oldest due row is selected (PostgreSQL locks it with FOR
 * UPDATE SKIP LOCKED so concurrent claimers take different rows; SQLite runs the transaction
 * under its single write lock, BEGIN IMMEDIATE); (3) it is marked STARTED with attempts + 1,
 * our owner id and a lease.  The attempt number is the fencing token: the heartbeat and the
 * completion update the row only "WHERE id = ? AND attempts = ? AND state = 'STARTED'", so a
 * worker whose lease was lost (and whose job someone else re-claimed) changes nothing.
 *
 * Heartbeat.  Worker threads publish the job they run in a slot; the housekeeping thread
 * renews each slot's lease to min(now + lease_ms, deadline) every lease_ms / 4, and marks the
 * slot lost when the row no longer matches.  It also refreshes the queue depth gauge.
 */
#include "keel_int.h"

#include "async_int.h"

#include <keel/jobs.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define JOBS_COMPONENT "keel.async.jobs"
#define JOBS_LOST_ERROR "lease expired: the worker died or the job outlived its time limit"

/* ================================================================ helpers == */

static const char *const STATE_NAMES[] = {NULL, "PENDING", "STARTED", "RETRY", "SUCCESS",
                                          "FAILURE"};

const char *keel_job_state_name(keel_job_state s)
{
    if ((int)s >= KEEL_JOB_PENDING && (int)s <= KEEL_JOB_FAILURE)
        return STATE_NAMES[s];
    return "UNKNOWN";
}

static int state_parse(const char *s, keel_job_state *out)
{
    for (int i = KEEL_JOB_PENDING; i <= KEEL_JOB_FAILURE; i++) {
        if (s != NULL && strcmp(s, STATE_NAMES[i]) == 0) {
            *out = (keel_job_state)i;
            return 1;
        }
    }
    return 0;
}

/* Queue names and job types: 1..KEEL_JOBS_NAME_MAX printable, non-space ASCII bytes. */
static int name_ok(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > KEEL_JOBS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

static json_t *json_from_text(const char *s)
{
    if (s == NULL)
        return NULL;
    return json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static char *dup_col(const keel_stmt *st, int col)
{
    const char *s = keel_stmt_text(st, col, NULL);
    return keel_strdup(s != NULL ? s : "");
}

/* ============================================================== schema == */

static const keel_migration JOBS_MIGRATIONS[] = {
    {1, "jobs",
     "CREATE TABLE keel_jobs ("
     " id TEXT PRIMARY KEY, queue TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL,"
     " state TEXT NOT NULL, attempts INTEGER NOT NULL, max_retries INTEGER NOT NULL,"
     " time_limit_ms INTEGER NOT NULL, run_at_ms INTEGER NOT NULL,"
     " locked_until_ms INTEGER NOT NULL, owner TEXT, result TEXT, error TEXT,"
     " created_at_ms INTEGER NOT NULL, started_at_ms INTEGER NOT NULL,"
     " finished_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL);"
     "CREATE INDEX keel_jobs_due ON keel_jobs (queue, state, run_at_ms);",
     "CREATE TABLE keel_jobs ("
     " id TEXT PRIMARY KEY, queue TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL,"
     " state TEXT NOT NULL, attempts INTEGER NOT NULL, max_retries INTEGER NOT NULL,"
     " time_limit_ms BIGINT NOT NULL, run_at_ms BIGINT NOT NULL,"
     " locked_until_ms BIGINT NOT NULL, owner TEXT, result TEXT, error TEXT,"
     " created_at_ms BIGINT NOT NULL, started_at_ms BIGINT NOT NULL,"
     " finished_at_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL);"
     "CREATE INDEX keel_jobs_due ON keel_jobs (queue, state, run_at_ms);"},
};

keel_err keel_jobs_migrate(keel_store *s, keel_diag *diag)
{
    if (s == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_migrate: store is NULL");
    return keel_store_migrate_component(s, JOBS_COMPONENT, JOBS_MIGRATIONS,
                                        KEEL_ARRAY_LEN(JOBS_MIGRATIONS), diag);
}

/* ============================================================= enqueue == */

void keel_job_opts_default(keel_job_opts *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
    o->max_retries = 3;
}

typedef struct enqueue_args {
    const char *queue, *type;
    const char *payload; /* serialised */
    keel_job_opts opts;
    int64_t now;
    char id[KEEL_UUID_SIZE];
} enqueue_args;

static keel_err enqueue_prepare(const char *queue, const char *type, const json_t *payload,
                                const keel_job_opts *opts, enqueue_args *a, char **text,
                                keel_diag *diag)
{
    *text = NULL;
    if (!name_ok(queue))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "job queue name must be 1-%d printable ASCII bytes",
                             KEEL_JOBS_NAME_MAX);
    if (!name_ok(type))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "job type must be 1-%d printable ASCII bytes", KEEL_JOBS_NAME_MAX);
    keel_job_opts_default(&a->opts);
    if (opts != NULL) {
        if (opts->size < sizeof(keel_job_opts))
            return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_job_opts: size not set");
        a->opts = *opts;
    }
    if (a->opts.max_retries > 1000)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_job_opts: max_retries above 1000");
    keel_err e = keel__async_json_text(payload, KEEL_JOBS_PAYLOAD_MAX, text);
    if (e == KEEL_ETOOBIG)
        return keel_diag_set(diag, e, 0, "job payload larger than %u bytes",
                             (unsigned)KEEL_JOBS_PAYLOAD_MAX);
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "job payload cannot be serialised as JSON");
    if ((e = keel_uuid4(a->id)) != KEEL_OK) {
        keel_free(*text);
        *text = NULL;
        return keel_diag_set(diag, e, 0, "no randomness for the job id");
    }
    a->queue = queue;
    a->type = type;
    a->payload = *text;
    return KEEL_OK;
}

static keel_err insert_job(keel_db *db, const enqueue_args *a, keel_diag *diag)
{
    keel__binder b;
    if (keel__bind_prepare(db,
             "INSERT INTO keel_jobs (id, queue, type, payload, state, attempts, max_retries, "
             "time_limit_ms, run_at_ms, locked_until_ms, owner, result, error, created_at_ms, "
             "started_at_ms, finished_at_ms, updated_at_ms) VALUES "
             "(?, ?, ?, ?, 'PENDING', 0, ?, ?, ?, 0, NULL, NULL, NULL, ?, 0, 0, ?)",
             &b, diag) != KEEL_OK)
        return b.err;
    keel__bind_text(&b, a->id);
    keel__bind_text(&b, a->queue);
    keel__bind_text(&b, a->type);
    keel__bind_text(&b, a->payload);
    keel__bind_int(&b, (int64_t)a->opts.max_retries);
    keel__bind_int(&b, keel__async_ms(a->opts.time_limit_ms));
    keel__bind_int(&b, a->now + keel__async_ms(a->opts.delay_ms));
    keel__bind_int(&b, a->now);
    keel__bind_int(&b, a->now);
    return keel__bind_run(&b, NULL, diag);
}

static keel_err enqueue_tx(keel_db *db, void *ud)
{
    return insert_job(db, ud, NULL);
}

keel_err keel_jobs_enqueue(keel_store *s, const char *queue, const char *type,
                           const json_t *payload, const keel_job_opts *opts,
                           char id_out[KEEL_UUID_SIZE], keel_diag *diag)
{
    if (s == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_enqueue: store is NULL");
    enqueue_args a;
    char *text;
    keel_err e = enqueue_prepare(queue, type, payload, opts, &a, &text, diag);
    if (e != KEEL_OK)
        return e;
    a.now = keel_time_wall_ms();
    e = keel_store_tx(s, enqueue_tx, &a, diag);
    keel_free(text);
    if (e == KEEL_OK && id_out != NULL)
        memcpy(id_out, a.id, KEEL_UUID_SIZE);
    return e;
}

keel_err keel_jobs_enqueue_db(keel_db *db, const char *queue, const char *type,
                              const json_t *payload, const keel_job_opts *opts,
                              char id_out[KEEL_UUID_SIZE], keel_diag *diag)
{
    if (db == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_enqueue_db: db is NULL");
    enqueue_args a;
    char *text;
    keel_err e = enqueue_prepare(queue, type, payload, opts, &a, &text, diag);
    if (e != KEEL_OK)
        return e;
    a.now = keel_time_wall_ms();
    e = insert_job(db, &a, diag);
    keel_free(text);
    if (e == KEEL_OK && id_out != NULL)
        memcpy(id_out, a.id, KEEL_UUID_SIZE);
    return e;
}

/* ============================================================== status == */

void keel_job_status_cleanup(keel_job_status *st)
{
    if (st == NULL)
        return;
    json_decref(st->payload);
    json_decref(st->result);
    keel_free(st->error);
    memset(st, 0, sizeof(*st));
}

static void copy_name(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? src : "");
}

keel_err keel_jobs_status(keel_store *s, const char *id, keel_job_status *out, keel_diag *diag)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (s == NULL || id == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_status: NULL argument");
    if (!keel_uuid_valid(keel_str_c(id)))
        return keel_diag_set(diag, KEEL_ENOTFOUND, 0, "job id is not a UUID: no such job");
    keel_db *db;
    keel_err e = keel_db_acquire(s, &db, diag);
    if (e != KEEL_OK)
        return e;
    keel__binder b;
    if (keel__bind_prepare(db,
             "SELECT queue, type, state, attempts, max_retries, payload, result, error, "
             "created_at_ms, started_at_ms, finished_at_ms, run_at_ms FROM keel_jobs "
             "WHERE id = ?",
             &b, diag) != KEEL_OK) {
        keel_db_release(db);
        return b.err;
    }
    keel__bind_text(&b, id);
    int rc = b.err != KEEL_OK ? b.err : keel_stmt_step(b.st, diag);
    if (rc < 0) {
        e = (keel_err)rc;
    } else if (rc == 0) {
        e = keel_diag_set(diag, KEEL_ENOTFOUND, 0, "job '%s' not found", id);
    } else {
        memcpy(out->id, id, KEEL_UUID_SIZE);
        copy_name(out->queue, sizeof(out->queue), keel_stmt_text(b.st, 0, NULL));
        copy_name(out->type, sizeof(out->type), keel_stmt_text(b.st, 1, NULL));
        if (!state_parse(keel_stmt_text(b.st, 2, NULL), &out->state))
            e = keel_diag_set(diag, KEEL_EPARSE, 0, "job '%s': bad stored state", id);
        out->attempts = (unsigned)keel_stmt_int64(b.st, 3);
        out->max_retries = (unsigned)keel_stmt_int64(b.st, 4);
        if (e == KEEL_OK) {
            out->payload = json_from_text(keel_stmt_text(b.st, 5, NULL));
            if (out->payload == NULL)
                e = keel_diag_set(diag, KEEL_EPARSE, 0, "job '%s': stored payload unreadable",
                                  id);
        }
        if (e == KEEL_OK && out->state == KEEL_JOB_SUCCESS) {
            out->result = keel_stmt_is_null(b.st, 6) ? json_null()
                                                     : json_from_text(keel_stmt_text(b.st, 6, NULL));
            if (out->result == NULL)
                e = keel_diag_set(diag, KEEL_EPARSE, 0, "job '%s': stored result unreadable",
                                  id);
        }
        if (e == KEEL_OK && !keel_stmt_is_null(b.st, 7) && out->state != KEEL_JOB_SUCCESS &&
            out->state != KEEL_JOB_PENDING) {
            out->error = dup_col(b.st, 7);
            if (out->error == NULL)
                e = KEEL_ENOMEM;
        }
        out->created_at_ms = keel_stmt_int64(b.st, 8);
        out->started_at_ms = keel_stmt_int64(b.st, 9);
        out->finished_at_ms = keel_stmt_int64(b.st, 10);
        out->run_at_ms = keel_stmt_int64(b.st, 11);
    }
    keel_db_release(db);
    if (e != KEEL_OK)
        keel_job_status_cleanup(out);
    return e;
}

keel_err keel_jobs_queue_depth(keel_store *s, const char *queue, int64_t *out, keel_diag *diag)
{
    if (s == NULL || !name_ok(queue) || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_queue_depth: bad argument");
    *out = 0;
    keel_db *db;
    keel_err e = keel_db_acquire(s, &db, diag);
    if (e != KEEL_OK)
        return e;
    keel__binder b;
    if (keel__bind_prepare(db,
             "SELECT COUNT(*) FROM keel_jobs WHERE queue = ? AND state IN ('PENDING', "
             "'RETRY', 'STARTED')",
             &b, diag) == KEEL_OK) {
        keel__bind_text(&b, queue);
        int rc = b.err != KEEL_OK ? b.err : keel_stmt_step(b.st, diag);
        if (rc == 1)
            *out = keel_stmt_int64(b.st, 0);
        else
            e = rc < 0 ? (keel_err)rc : KEEL_EINTERNAL;
    } else {
        e = b.err;
    }
    keel_db_release(db);
    return e;
}

/* ================================================================ pool == */

typedef enum pool_state { POOL_IDLE = 0, POOL_RUNNING, POOL_STOPPING, POOL_STOPPED } pool_state;

typedef struct handler {
    char *type;
    keel_job_fn fn;
    void *ud;
} handler;

/* The job a worker thread is running, for the heartbeat.  Guarded by the pool mutex. */
typedef struct slot {
    int active;
    char id[KEEL_UUID_SIZE];
    int64_t attempt;
    int64_t deadline;
    atomic_int lost;
} slot;

typedef struct worker {
    keel_jobs_pool *pool;
    slot *slot;
    pthread_t thread;
    bool started;
} worker;

struct keel_jobs_pool {
    keel_store *store;
    char *queue;
    char *owner;
    unsigned nthreads;
    uint64_t lease_ms, poll_ms, default_limit_ms, backoff_base_ms, backoff_max_ms;
    int jitter;
    int64_t (*now_ms)(void *ud);
    void *now_ud;

    keel_metrics *m;
    keel_metric *runs, *fails, *dur, *depth;

    handler handlers[KEEL_JOBS_HANDLERS_MAX];
    size_t nhandlers;

    pthread_mutex_t mu;
    pthread_cond_t wake;   /* new work, or stop */
    pthread_cond_t exited; /* a worker left its loop */
    pool_state state;
    unsigned alive;        /* workers still in their loop */
    atomic_int stopping;
    int hk_quit;
    bool hk_started, hk_joined;
    pthread_t hk;
    worker workers[KEEL_JOBS_THREADS_MAX];
    slot slots[KEEL_JOBS_THREADS_MAX];

    atomic_uint_fast64_t st_claimed, st_succeeded, st_retried, st_failed, st_released, st_lost;
};

/* The context handed to handlers, with the slot behind it. */
typedef struct run_ctx {
    keel_job_ctx pub;
    slot *slot;
} run_ctx;

static int64_t pool_now(const keel_jobs_pool *p)
{
    return p->now_ms != NULL ? p->now_ms(p->now_ud) : keel_time_wall_ms();
}

void keel_jobs_pool_config_default(keel_jobs_pool_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->threads = 4;
    cfg->lease_ms = 30000;
    cfg->poll_ms = 1000;
    cfg->default_time_limit_ms = 300000;
    cfg->backoff_base_ms = 1000;
    cfg->backoff_max_ms = 3600000;
}

int keel_job_should_stop(const keel_job_ctx *ctx)
{
    if (ctx == NULL || ctx->pool == NULL)
        return 0;
    const run_ctx *rc = (const run_ctx *)(const void *)ctx;
    if (atomic_load(&ctx->pool->stopping))
        return 1;
    return rc->slot != NULL && atomic_load(&rc->slot->lost);
}

void keel_jobs_pool_stats_get(keel_jobs_pool *p, keel_jobs_pool_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    if (p == NULL)
        return;
    out->claimed = atomic_load(&p->st_claimed);
    out->succeeded = atomic_load(&p->st_succeeded);
    out->retried = atomic_load(&p->st_retried);
    out->failed = atomic_load(&p->st_failed);
    out->released = atomic_load(&p->st_released);
    out->lost = atomic_load(&p->st_lost);
}

static keel_err metrics_get(keel_jobs_pool *p)
{
    static const char *const job_labels[] = {"job_name", NULL};
    static const char *const q_labels[] = {"queue", NULL};
    keel_err e = keel_metrics_counter(p->m, "background_job_runs_total",
                                      "Background job execution count", job_labels, &p->runs);
    if (e == KEEL_OK)
        e = keel_metrics_counter(p->m, "background_job_failures_total",
                                 "Background job failure count", job_labels, &p->fails);
    if (e == KEEL_OK)
        e = keel_metrics_histogram(p->m, "background_job_duration_seconds",
                                   "Background job duration", job_labels, NULL, 0, &p->dur);
    if (e == KEEL_OK)
        e = keel_metrics_gauge(p->m, "background_job_queue_depth",
                               "Jobs waiting, retrying or running in a durable queue", q_labels,
                               &p->depth);
    return e;
}

keel_err keel_jobs_pool_create(keel_jobs_pool **out, const keel_jobs_pool_config *cfg,
                               keel_diag *diag)
{
    if (out == NULL || cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_pool_create: NULL argument");
    *out = NULL;
    if (cfg->size < sizeof(keel_jobs_pool_config))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_pool_config: size not set");
    if (cfg->store == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_pool_config: store is NULL");
    if (!name_ok(cfg->queue))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_pool_config: bad queue name");
    if (cfg->threads == 0 || cfg->threads > KEEL_JOBS_THREADS_MAX)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_pool_config: threads must be 1-%d",
                             KEEL_JOBS_THREADS_MAX);
    if (cfg->lease_ms < 20 || cfg->poll_ms == 0 || cfg->default_time_limit_ms == 0 ||
        cfg->backoff_max_ms < cfg->backoff_base_ms)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "keel_jobs_pool_config: lease_ms >= 20, poll_ms > 0, "
                             "default_time_limit_ms > 0 and backoff_max_ms >= backoff_base_ms "
                             "required");
    if (cfg->worker_id != NULL && (cfg->worker_id[0] == '\0' || strlen(cfg->worker_id) > 200))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_pool_config: bad worker_id");
    keel_err e = keel_jobs_migrate(cfg->store, diag);
    if (e != KEEL_OK)
        return e;
    keel_jobs_pool *p = keel__new(keel_jobs_pool);
    if (p == NULL)
        return KEEL_ENOMEM;
    p->store = cfg->store;
    p->nthreads = cfg->threads;
    p->lease_ms = cfg->lease_ms;
    p->poll_ms = cfg->poll_ms;
    p->default_limit_ms = cfg->default_time_limit_ms;
    p->backoff_base_ms = cfg->backoff_base_ms;
    p->backoff_max_ms = cfg->backoff_max_ms;
    p->jitter = cfg->jitter;
    p->now_ms = cfg->now_ms;
    p->now_ud = cfg->now_ud;
    p->m = cfg->metrics;
    p->queue = keel_strdup(cfg->queue);
    if (cfg->worker_id != NULL) {
        p->owner = keel_strdup(cfg->worker_id);
        e = p->owner == NULL ? KEEL_ENOMEM : KEEL_OK;
    } else {
        e = keel__async_owner(&p->owner);
    }
    if (e == KEEL_OK && p->queue == NULL)
        e = KEEL_ENOMEM;
    if (e == KEEL_OK && p->m != NULL && (e = metrics_get(p)) != KEEL_OK)
        keel_diag_set(diag, e, 0, "background_job_* metrics cannot be registered");
    if (e != KEEL_OK) {
        keel_free(p->queue);
        keel_free(p->owner);
        keel_free(p);
        return e;
    }
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (rc == 0 && (rc = pthread_mutex_init(&p->mu, NULL)) == 0) {
            if ((rc = pthread_cond_init(&p->wake, &ca)) == 0) {
                if ((rc = pthread_cond_init(&p->exited, &ca)) != 0)
                    pthread_cond_destroy(&p->wake);
            }
            if (rc != 0)
                pthread_mutex_destroy(&p->mu);
        }
        pthread_condattr_destroy(&ca);
    }
    if (rc != 0) {
        keel_free(p->queue);
        keel_free(p->owner);
        keel_free(p);
        return KEEL_ENOMEM;
    }
    for (unsigned i = 0; i < KEEL_JOBS_THREADS_MAX; i++)
        atomic_init(&p->slots[i].lost, 0);
    atomic_init(&p->stopping, 0);
    *out = p;
    return KEEL_OK;
}

keel_err keel_jobs_register(keel_jobs_pool *p, const char *type, keel_job_fn fn, void *ud)
{
    if (p == NULL || !name_ok(type) || fn == NULL)
        return KEEL_EINVAL;
    if (p->state != POOL_IDLE)
        return KEEL_ESTATE;
    for (size_t i = 0; i < p->nhandlers; i++)
        if (strcmp(p->handlers[i].type, type) == 0)
            return KEEL_EEXIST;
    if (p->nhandlers == KEEL_JOBS_HANDLERS_MAX)
        return KEEL_EFULL;
    char *t = keel_strdup(type);
    if (t == NULL)
        return KEEL_ENOMEM;
    p->handlers[p->nhandlers].type = t;
    p->handlers[p->nhandlers].fn = fn;
    p->handlers[p->nhandlers].ud = ud;
    p->nhandlers++;
    return KEEL_OK;
}

static const handler *find_handler(const keel_jobs_pool *p, const char *type)
{
    for (size_t i = 0; i < p->nhandlers; i++)
        if (strcmp(p->handlers[i].type, type) == 0)
            return &p->handlers[i];
    return NULL;
}

/* ---------------------------------------------------------------- claim -- */

typedef struct claimed {
    char id[KEEL_UUID_SIZE];
    char *type;
    char *payload;
    int64_t attempt; /* the new attempt number: our fencing token */
    int64_t max_retries;
    int64_t deadline;
} claimed;

static void claimed_cleanup(claimed *c)
{
    keel_free(c->type);
    keel_free(c->payload);
    memset(c, 0, sizeof(*c));
}

typedef struct claim_tx {
    keel_jobs_pool *p;
    int64_t now;
    int found;
    int64_t reaped;
    claimed c;
} claim_tx;

static keel_err claim_fn(keel_db *db, void *ud)
{
    claim_tx *t = ud;
    keel_jobs_pool *p = t->p;
    t->found = 0;
    t->reaped = 0;
    claimed_cleanup(&t->c);

    /* (1) Jobs whose lease expired on their last allowed attempt. */
    keel__binder b;
    if (keel__bind_prepare(db,
             "UPDATE keel_jobs SET state = 'FAILURE', error = ?, owner = NULL, "
             "locked_until_ms = 0, finished_at_ms = ?, updated_at_ms = ? WHERE queue = ? AND "
             "state = 'STARTED' AND locked_until_ms <= ? AND attempts > max_retries",
             &b, NULL) != KEEL_OK)
        return b.err;
    keel__bind_text(&b, JOBS_LOST_ERROR);
    keel__bind_int(&b, t->now);
    keel__bind_int(&b, t->now);
    keel__bind_text(&b, p->queue);
    keel__bind_int(&b, t->now);
    keel_err e = keel__bind_run(&b, &t->reaped, NULL);
    if (e != KEEL_OK)
        return e;

    /* (2) The oldest due job: waiting, retrying, or started with an expired lease. */
    if (keel__bind_prepare(db,
             "SELECT id, attempts, time_limit_ms, type, payload, max_retries FROM keel_jobs "
             "WHERE queue = ? AND ((state IN ('PENDING', 'RETRY') AND run_at_ms <= ?) OR "
             "(state = 'STARTED' AND locked_until_ms <= ?)) "
             "ORDER BY run_at_ms, created_at_ms LIMIT 1 {skip_locked}",
             &b, NULL) != KEEL_OK)
        return b.err;
    keel__bind_text(&b, p->queue);
    keel__bind_int(&b, t->now);
    keel__bind_int(&b, t->now);
    if (b.err != KEEL_OK)
        return b.err;
    int rc = keel_stmt_step(b.st, NULL);
    if (rc <= 0)
        return (keel_err)rc; /* 0: nothing due */
    const char *id = keel_stmt_text(b.st, 0, NULL);
    if (id == NULL || strlen(id) != KEEL_UUID_SIZE - 1)
        return KEEL_EPARSE;
    memcpy(t->c.id, id, KEEL_UUID_SIZE);
    int64_t prev = keel_stmt_int64(b.st, 1);
    int64_t limit = keel_stmt_int64(b.st, 2);
    t->c.type = dup_col(b.st, 3);
    t->c.payload = dup_col(b.st, 4);
    t->c.max_retries = keel_stmt_int64(b.st, 5);
    if (t->c.type == NULL || t->c.payload == NULL)
        return KEEL_ENOMEM;
    if (limit <= 0)
        limit = keel__async_ms(p->default_limit_ms);
    t->c.attempt = prev + 1;
    t->c.deadline = t->now + limit;
    int64_t lease = KEEL_MIN(keel__async_ms(p->lease_ms), limit);

    /* (3) Take it: STARTED, next attempt, our lease.  A lease-expired row records why. */
    if (keel__bind_prepare(db,
             "UPDATE keel_jobs SET error = CASE WHEN state = 'STARTED' THEN ? ELSE error END, "
             "state = 'STARTED', attempts = ?, owner = ?, locked_until_ms = ?, "
             "started_at_ms = ?, updated_at_ms = ? WHERE id = ? AND attempts = ?",
             &b, NULL) != KEEL_OK)
        return b.err;
    keel__bind_text(&b, JOBS_LOST_ERROR);
    keel__bind_int(&b, t->c.attempt);
    keel__bind_text(&b, p->owner);
    keel__bind_int(&b, t->now + lease);
    keel__bind_int(&b, t->now);
    keel__bind_int(&b, t->now);
    keel__bind_text(&b, t->c.id);
    keel__bind_int(&b, prev);
    int64_t changes = 0;
    if ((e = keel__bind_run(&b, &changes, NULL)) != KEEL_OK)
        return e;
    t->found = changes == 1;
    return KEEL_OK;
}

/* ----------------------------------------------------------- completion -- */

typedef enum outcome { OUT_SUCCESS, OUT_RETRY, OUT_FAILURE, OUT_RELEASE } outcome;

typedef struct finish_tx {
    const keel_jobs_pool *p;
    const claimed *c;
    outcome out;
    const char *result; /* SUCCESS: serialised result */
    const char *error;  /* RETRY/FAILURE */
    int64_t now;
    int64_t run_at;
    int64_t changes;
} finish_tx;

static keel_err finish_fn(keel_db *db, void *ud)
{
    finish_tx *t = ud;
    keel__binder b;
    keel_err e;
    switch (t->out) {
    case OUT_SUCCESS:
        e = keel__bind_prepare(db,
                 "UPDATE keel_jobs SET state = 'SUCCESS', result = ?, error = NULL, owner = NULL, "
                 "locked_until_ms = 0, finished_at_ms = ?, updated_at_ms = ? WHERE id = ? AND "
                 "attempts = ? AND state = 'STARTED'",
                 &b, NULL);
        keel__bind_text(&b, t->result);
        keel__bind_int(&b, t->now);
        keel__bind_int(&b, t->now);
        break;
    case OUT_FAILURE:
        e = keel__bind_prepare(db,
                 "UPDATE keel_jobs SET state = 'FAILURE', error = ?, owner = NULL, "
                 "locked_until_ms = 0, finished_at_ms = ?, updated_at_ms = ? WHERE id = ? AND "
                 "attempts = ? AND state = 'STARTED'",
                 &b, NULL);
        keel__bind_text(&b, t->error);
        keel__bind_int(&b, t->now);
        keel__bind_int(&b, t->now);
        break;
    case OUT_RETRY:
        e = keel__bind_prepare(db,
                 "UPDATE keel_jobs SET state = 'RETRY', error = ?, owner = NULL, "
                 "locked_until_ms = 0, run_at_ms = ?, updated_at_ms = ? WHERE id = ? AND "
                 "attempts = ? AND state = 'STARTED'",
                 &b, NULL);
        keel__bind_text(&b, t->error);
        keel__bind_int(&b, t->run_at);
        keel__bind_int(&b, t->now);
        break;
    default: /* OUT_RELEASE: give the attempt back */
        e = keel__bind_prepare(db,
                 "UPDATE keel_jobs SET state = CASE WHEN attempts > 1 THEN 'RETRY' ELSE "
                 "'PENDING' END, attempts = attempts - 1, owner = NULL, locked_until_ms = 0, "
                 "run_at_ms = ?, updated_at_ms = ? WHERE id = ? AND attempts = ? AND "
                 "state = 'STARTED'",
                 &b, NULL);
        keel__bind_int(&b, t->now);
        keel__bind_int(&b, t->now);
        break;
    }
    if (e != KEEL_OK)
        return e;
    keel__bind_text(&b, t->c->id);
    keel__bind_int(&b, t->c->attempt);
    return keel__bind_run(&b, &t->changes, NULL);
}

/* Retry delay after failed attempt number `attempt` (1-based). */
static int64_t backoff_ms(const keel_jobs_pool *p, int64_t attempt)
{
    uint64_t d = p->backoff_base_ms;
    for (int64_t i = 1; i < attempt && d < p->backoff_max_ms; i++)
        d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
    if (d > p->backoff_max_ms)
        d = p->backoff_max_ms;
    if (p->jitter && d > 1) {
        uint64_t r = 0;
        if (keel_random_bytes(&r, sizeof(r)) == KEEL_OK)
            d = d - d / 2 + r % (d / 2 + 1); /* uniform in [d - d/2, d] */
    }
    return keel__async_ms(d);
}

/* Record the outcome, retrying a few times on transient store errors: an outcome that cannot
 * be recorded is not lost - the lease expires and the job runs again - but that costs a run. */
static void finish(keel_jobs_pool *p, finish_tx *f)
{
    keel_err e = KEEL_EIO;
    for (int i = 0; i < 3 && e != KEEL_OK; i++) {
        f->changes = 0;
        e = keel_store_tx(p->store, finish_fn, f, NULL);
        if (e == KEEL_EINVAL || e == KEEL_EPARSE || e == KEEL_ENOMEM)
            break;
    }
    if (e != KEEL_OK || f->changes != 1) {
        atomic_fetch_add(&p->st_lost, 1);
        return;
    }
    switch (f->out) {
    case OUT_SUCCESS:
        atomic_fetch_add(&p->st_succeeded, 1);
        break;
    case OUT_RETRY:
        atomic_fetch_add(&p->st_retried, 1);
        break;
    case OUT_FAILURE:
        atomic_fetch_add(&p->st_failed, 1);
        break;
    default:
        atomic_fetch_add(&p->st_released, 1);
        break;
    }
}

/* The error text of a failed attempt: "KEEL_EIO: message". */
static void error_text(char *buf, size_t cap, keel_err e, const keel_diag *d)
{
    const char *msg = d->msg[0] != '\0' ? d->msg : keel_strerror(e);
    snprintf(buf, cap, "%s: %s", keel_err_name(e), msg);
}

/* Run claimed job c on this thread and record its outcome.  s: the heartbeat slot or NULL. */
static void run_claimed(keel_jobs_pool *p, claimed *c, slot *s)
{
    finish_tx f;
    memset(&f, 0, sizeof(f));
    f.p = p;
    f.c = c;
    char errbuf[KEEL_JOBS_ERROR_MAX];
    const handler *h = find_handler(p, c->type);
    json_t *payload = h != NULL ? json_from_text(c->payload) : NULL;
    if (h == NULL || payload == NULL) {
        if (h == NULL)
            snprintf(errbuf, sizeof(errbuf), "KEEL_ENOTFOUND: no handler for job type '%s'",
                     c->type);
        else
            snprintf(errbuf, sizeof(errbuf), "KEEL_EPARSE: stored payload is not JSON");
        f.out = OUT_FAILURE;
        f.error = errbuf;
        f.now = pool_now(p);
        finish(p, &f);
        return;
    }
    const char *vals[] = {c->type, NULL};
    if (p->runs != NULL)
        (void)keel_metric_add(p->runs, vals, 1.0);

    run_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.pub.id = c->id;
    ctx.pub.queue = p->queue;
    ctx.pub.type = c->type;
    ctx.pub.payload = payload;
    ctx.pub.attempt = (unsigned)c->attempt;
    ctx.pub.max_retries = (unsigned)c->max_retries;
    ctx.pub.deadline_ms = c->deadline;
    ctx.pub.pool = p;
    ctx.slot = s;
    json_t *result = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    uint64_t t0 = keel_time_mono_ns();
    keel_err e = h->fn(&ctx.pub, &result, &d, h->ud);
    uint64_t t1 = keel_time_mono_ns();
    json_decref(payload);
    if (p->dur != NULL)
        (void)keel_metric_observe(p->dur, vals, (double)(t1 - t0) / 1e9);
    if (e != KEEL_OK && p->fails != NULL)
        (void)keel_metric_add(p->fails, vals, 1.0);

    char *rtext = NULL;
    f.now = pool_now(p);
    if (e == KEEL_OK) {
        keel_err je = keel__async_json_text(result, KEEL_JOBS_PAYLOAD_MAX, &rtext);
        if (je == KEEL_OK) {
            f.out = OUT_SUCCESS;
            f.result = rtext;
        } else {
            /* A result we cannot store: the run succeeded, so do not run it again. */
            snprintf(errbuf, sizeof(errbuf), "%s: the job's result cannot be stored",
                     keel_err_name(je));
            f.out = OUT_FAILURE;
            f.error = errbuf;
        }
    } else if (e == KEEL_ECLOSED && atomic_load(&p->stopping)) {
        f.out = OUT_RELEASE;
    } else {
        error_text(errbuf, sizeof(errbuf), e, &d);
        f.error = errbuf;
        if (ctx.pub.no_retry || c->attempt > c->max_retries) {
            f.out = OUT_FAILURE;
        } else {
            f.out = OUT_RETRY;
            f.run_at = f.now + backoff_ms(p, c->attempt);
        }
    }
    json_decref(result);
    finish(p, &f);
    keel_free(rtext);
}

/* Claim one job; 1 when c holds one, 0 when none was due, < 0 on error. */
static int claim(keel_jobs_pool *p, claimed *c, keel_diag *diag)
{
    claim_tx t;
    memset(&t, 0, sizeof(t));
    t.p = p;
    t.now = pool_now(p);
    keel_err e = keel_store_tx(p->store, claim_fn, &t, diag);
    if (t.reaped > 0 && e == KEEL_OK)
        atomic_fetch_add(&p->st_failed, (uint_fast64_t)t.reaped);
    if (e != KEEL_OK || !t.found) {
        claimed_cleanup(&t.c);
        return e != KEEL_OK ? e : 0;
    }
    atomic_fetch_add(&p->st_claimed, 1);
    *c = t.c;
    return 1;
}

keel_err keel_jobs_run_once(keel_jobs_pool *p, int *ran, keel_diag *diag)
{
    if (ran != NULL)
        *ran = 0;
    if (p == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_jobs_run_once: pool is NULL");
    claimed c;
    memset(&c, 0, sizeof(c));
    int rc = claim(p, &c, diag);
    if (rc <= 0)
        return (keel_err)rc;
    if (ran != NULL)
        *ran = 1;
    run_claimed(p, &c, NULL);
    claimed_cleanup(&c);
    return KEEL_OK;
}

/* -------------------------------------------------------------- threads -- */

static void *worker_main(void *arg)
{
    worker *w = arg;
    keel_jobs_pool *p = w->pool;
    for (;;) {
        if (atomic_load(&p->stopping))
            break;
        claimed c;
        memset(&c, 0, sizeof(c));
        int rc = claim(p, &c, NULL);
        if (rc == 1) {
            pthread_mutex_lock(&p->mu);
            w->slot->active = 1;
            memcpy(w->slot->id, c.id, KEEL_UUID_SIZE);
            w->slot->attempt = c.attempt;
            w->slot->deadline = c.deadline;
            atomic_store(&w->slot->lost, 0);
            pthread_mutex_unlock(&p->mu);
            run_claimed(p, &c, w->slot);
            pthread_mutex_lock(&p->mu);
            w->slot->active = 0;
            pthread_mutex_unlock(&p->mu);
            claimed_cleanup(&c);
            continue; /* there may be more due right away */
        }
        /* Nothing due (or a store error): wait for a wake-up or the next poll. */
        pthread_mutex_lock(&p->mu);
        struct timespec dl = keel__mono_deadline(p->poll_ms);
        if (!atomic_load(&p->stopping))
            (void)pthread_cond_timedwait(&p->wake, &p->mu, &dl);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    p->alive--;
    pthread_cond_broadcast(&p->exited);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Renew one running job's lease; marks the slot lost when the row is no longer ours. */
static void heartbeat_one(keel_jobs_pool *p, const char *id, int64_t attempt, int64_t deadline,
                          slot *s)
{
    keel_db *db;
    if (keel_db_acquire(p->store, &db, NULL) != KEEL_OK)
        return;
    int64_t now = pool_now(p);
    int64_t until = KEEL_MIN(now + keel__async_ms(p->lease_ms), deadline);
    keel__binder b;
    if (keel__bind_prepare(db,
             "UPDATE keel_jobs SET locked_until_ms = ? WHERE id = ? AND attempts = ? AND "
             "state = 'STARTED' AND locked_until_ms > ?",
             &b, NULL) == KEEL_OK) {
        keel__bind_int(&b, until);
        keel__bind_text(&b, id);
        keel__bind_int(&b, attempt);
        keel__bind_int(&b, now);
        int64_t changes = 0;
        if (keel__bind_run(&b, &changes, NULL) == KEEL_OK && changes == 0)
            atomic_store(&s->lost, 1);
    }
    keel_db_release(db);
}

static void *housekeeping_main(void *arg)
{
    keel_jobs_pool *p = arg;
    uint64_t period = p->lease_ms / 4;
    uint64_t last_depth = 0;
    pthread_mutex_lock(&p->mu);
    while (!p->hk_quit) {
        /* Snapshot the running jobs, then renew outside the lock. */
        struct {
            char id[KEEL_UUID_SIZE];
            int64_t attempt, deadline;
            slot *s;
        } snap[KEEL_JOBS_THREADS_MAX];
        unsigned n = 0;
        for (unsigned i = 0; i < p->nthreads; i++) {
            slot *s = &p->slots[i];
            if (s->active && !atomic_load(&s->lost)) {
                memcpy(snap[n].id, s->id, KEEL_UUID_SIZE);
                snap[n].attempt = s->attempt;
                snap[n].deadline = s->deadline;
                snap[n].s = s;
                n++;
            }
        }
        pthread_mutex_unlock(&p->mu);
        for (unsigned i = 0; i < n; i++)
            heartbeat_one(p, snap[i].id, snap[i].attempt, snap[i].deadline, snap[i].s);
        uint64_t mono = keel_time_mono_ms();
        if (p->depth != NULL && (last_depth == 0 || mono - last_depth >= p->poll_ms)) {
            int64_t depth;
            if (keel_jobs_queue_depth(p->store, p->queue, &depth, NULL) == KEEL_OK) {
                const char *vals[] = {p->queue, NULL};
                (void)keel_metric_set(p->depth, vals, (double)depth);
            }
            last_depth = mono;
        }
        pthread_mutex_lock(&p->mu);
        struct timespec dl = keel__mono_deadline(period);
        if (!p->hk_quit)
            (void)pthread_cond_timedwait(&p->wake, &p->mu, &dl);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void join_hk(keel_jobs_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->hk_quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    if (p->hk_started && !p->hk_joined) {
        pthread_join(p->hk, NULL);
        p->hk_joined = true;
    }
}

static void join_workers(keel_jobs_pool *p)
{
    for (unsigned i = 0; i < p->nthreads; i++) {
        if (p->workers[i].started) {
            pthread_join(p->workers[i].thread, NULL);
            p->workers[i].started = false;
        }
    }
}

keel_err keel_jobs_pool_start(keel_jobs_pool *p)
{
    if (p == NULL)
        return KEEL_EINVAL;
    if (p->state != POOL_IDLE)
        return KEEL_ESTATE;
    p->state = POOL_RUNNING;
    int rc = 0;
    for (unsigned i = 0; i < p->nthreads && rc == 0; i++) {
        worker *w = &p->workers[i];
        w->pool = p;
        w->slot = &p->slots[i];
        pthread_mutex_lock(&p->mu);
        p->alive++;
        pthread_mutex_unlock(&p->mu);
        rc = keel__thread_start(&w->thread, worker_main, w, "jobs");
        if (rc == 0) {
            w->started = true;
        } else {
            pthread_mutex_lock(&p->mu);
            p->alive--;
            pthread_mutex_unlock(&p->mu);
        }
    }
    if (rc == 0) {
        rc = keel__thread_start(&p->hk, housekeeping_main, p, "jobs-hk");
        p->hk_started = rc == 0;
    }
    if (rc != 0) {
        atomic_store(&p->stopping, 1);
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
        join_workers(p);
        join_hk(p);
        p->state = POOL_STOPPED;
        return KEEL_ENOMEM;
    }
    return KEEL_OK;
}

void keel_jobs_pool_wake(keel_jobs_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
}

keel_err keel_jobs_pool_stop(keel_jobs_pool *p, uint64_t timeout_ms)
{
    if (p == NULL)
        return KEEL_EINVAL;
    if (p->state == POOL_IDLE || p->state == POOL_STOPPED)
        return KEEL_OK;
    p->state = POOL_STOPPING;
    atomic_store(&p->stopping, 1);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake);
    struct timespec dl = keel__mono_deadline(timeout_ms);
    keel_err e = KEEL_OK;
    while (p->alive > 0) {
        if (timeout_ms == 0) {
            pthread_cond_wait(&p->exited, &p->mu);
        } else if (pthread_cond_timedwait(&p->exited, &p->mu, &dl) == ETIMEDOUT &&
                   p->alive > 0) {
            e = KEEL_ETIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    /* Either way the heartbeat stops: on a timeout, the jobs still running lose their lease
     * in at most lease_ms and other workers take them over. */
    join_hk(p);
    if (e != KEEL_OK)
        return e;
    join_workers(p);
    p->state = POOL_STOPPED;
    return KEEL_OK;
}

void keel_jobs_pool_destroy(keel_jobs_pool *p)
{
    if (p == NULL)
        return;
    keel_err ignored = keel_jobs_pool_stop(p, 0); /* no limit: always KEEL_OK */
    KEEL_UNUSED(ignored);
    for (size_t i = 0; i < p->nhandlers; i++)
        keel_free(p->handlers[i].type);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->exited);
    pthread_mutex_destroy(&p->mu);
    keel_free(p->queue);
    keel_free(p->owner);
    keel_free(p);
}
