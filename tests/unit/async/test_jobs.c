/* Tests for src/async/jobs.c: enqueue/claim/complete, status by id, retries with exponential
 * backoff on a manual clock, max retries -> FAILURE, permanent failures, enqueue inside the
 * caller's transaction, lease expiry with fenced completion, heartbeat, graceful stop with
 * released claims, metrics, and two worker pools sharing one database never running a job
 * twice.  Every test runs on SQLite (a file under KEEL_TEST_TMP) and, when KEEL_TEST_PG_DSN is
 * set, on PostgreSQL (queues are named per process and test, so leftovers never interfere). */
#define _GNU_SOURCE 1
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keel/jobs.h>

static const char *pg_dsn;
static int use_pg; /* the backend of the group being run */
static unsigned counter;
static char url[512];
static char sqlite_path[400];

/* ------------------------------------------------------------- fixture -- */

static int setup_sqlite(void **state)
{
    (void)state;
    use_pg = 0;
    return 0;
}

static int setup_pg(void **state)
{
    (void)state;
    use_pg = 1;
    return 0;
}

/* A fresh database URL (SQLite: a new file) for one test. */
static void new_url(void)
{
    counter++;
    if (use_pg) {
        snprintf(url, sizeof(url), "%s", pg_dsn);
    } else {
        snprintf(sqlite_path, sizeof(sqlite_path), "%s/jobs_%ld_%u.db", KEEL_TEST_TMP,
                 (long)getpid(), counter);
        unlink(sqlite_path);
        snprintf(url, sizeof(url), "sqlite:%s", sqlite_path);
    }
}

static keel_store *open_store(void)
{
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    keel_store *s = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_store_open(&s, &cfg, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "open %s: %s\n", use_pg ? "postgres" : url, d.msg);
    assert_int_equal(KEEL_OK, e);
    ASSERT_OK(keel_jobs_migrate(s, &d));
    return s;
}

static void close_store(keel_store *s)
{
    keel_store_close(s);
    if (!use_pg) {
        char p[450];
        unlink(sqlite_path);
        snprintf(p, sizeof(p), "%s-wal", sqlite_path);
        unlink(p);
        snprintf(p, sizeof(p), "%s-shm", sqlite_path);
        unlink(p);
    }
}

static void queue_name(char *out, size_t n, const char *base)
{
    snprintf(out, n, "%s_%ld_%u", base, (long)getpid(), counter);
}

/* Manual wall clock shared by a test's pools. */
static _Atomic int64_t clock_now;
static int64_t manual_now(void *ud)
{
    (void)ud;
    return atomic_load(&clock_now);
}

static keel_jobs_pool *make_pool(keel_store *s, const char *queue, int manual,
                                 keel_metrics *m)
{
    keel_jobs_pool_config cfg;
    keel_jobs_pool_config_default(&cfg);
    cfg.store = s;
    cfg.queue = queue;
    cfg.threads = 1;
    cfg.lease_ms = 10000;
    cfg.backoff_base_ms = 1000;
    cfg.backoff_max_ms = 3000;
    cfg.metrics = m;
    if (manual)
        cfg.now_ms = manual_now;
    keel_jobs_pool *p = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_jobs_pool_create(&p, &cfg, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "pool: %s\n", d.msg);
    assert_int_equal(KEEL_OK, e);
    return p;
}

static int run1(keel_jobs_pool *p)
{
    int ran = -1;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_jobs_run_once(p, &ran, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "run_once: %s\n", d.msg);
    assert_int_equal(KEEL_OK, e);
    return ran;
}

static void status_of(keel_store *s, const char *id, keel_job_status *st)
{
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_jobs_status(s, id, st, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "status: %s\n", d.msg);
    assert_int_equal(KEEL_OK, e);
}

static double series_value(keel_metrics *m, const char *name, int histogram,
                           const char *job)
{
    static const char *const labels[] = {"job_name", NULL};
    keel_metric *f;
    if (histogram)
        ASSERT_OK(keel_metrics_histogram(m, name, "Background job duration", labels, NULL, 0,
                                         &f));
    else
        ASSERT_OK(keel_metrics_counter(m, name, "x", labels, &f));
    const char *vals[] = {job, NULL};
    keel_series *sr;
    ASSERT_OK(keel_metric_series(f, vals, &sr));
    return keel_series_value(sr);
}

/* ------------------------------------------------------------ handlers -- */

/* Returns {"echo": payload, "attempt": n}. */
static keel_err h_echo(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)err;
    (void)ud;
    *result = json_pack("{sOsi}", "echo", (json_t *)(uintptr_t)ctx->payload, "attempt",
                        (int)ctx->attempt);
    return *result != NULL ? KEEL_OK : KEEL_ENOMEM;
}

static keel_err h_fail(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)ctx;
    (void)result;
    (void)ud;
    return keel_diag_set(err, KEEL_EIO, 0, "boom");
}

/* Fails the first attempt, succeeds afterwards. */
static keel_err h_flaky(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)ud;
    if (ctx->attempt == 1)
        return keel_diag_set(err, KEEL_ETIMEOUT, 0, "upstream slow");
    *result = json_integer(42);
    return KEEL_OK;
}

static keel_err h_permanent(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)result;
    (void)ud;
    ctx->no_retry = 1;
    return keel_diag_set(err, KEEL_EINVAL, 0, "bad input");
}

/* ---------------------------------------------------------------- tests -- */

static void test_enqueue_claim_complete(void **state)
{
    (void)state;
    new_url();
    keel_store *s = open_store();
    char q[96], other[96];
    queue_name(q, sizeof(q), "basic");
    queue_name(other, sizeof(other), "other");
    keel_jobs_pool *p = make_pool(s, q, 0, NULL);
    ASSERT_OK(keel_jobs_register(p, "echo", h_echo, NULL));
    assert_int_equal(KEEL_EEXIST, keel_jobs_register(p, "echo", h_echo, NULL));

    char id[KEEL_UUID_SIZE], id2[KEEL_UUID_SIZE];
    json_t *payload = json_pack("{si}", "n", 7);
    keel_diag d;
    ASSERT_OK(keel_jobs_enqueue(s, q, "echo", payload, NULL, id, &d));
    ASSERT_OK(keel_jobs_enqueue(s, other, "echo", payload, NULL, id2, &d));
    assert_int_equal(1, keel_uuid_valid(keel_str_c(id)));
    assert_int_equal('4', id[14]);

    keel_job_status st;
    status_of(s, id, &st);
    assert_int_equal(KEEL_JOB_PENDING, st.state);
    assert_string_equal("PENDING", keel_job_state_name(st.state));
    assert_string_equal(q, st.queue);
    assert_string_equal("echo", st.type);
    assert_int_equal(0, st.attempts);
    assert_int_equal(3, st.max_retries);
    assert_true(json_equal(payload, st.payload));
    assert_null(st.result);
    assert_null(st.error);
    assert_true(st.created_at_ms > 0);
    assert_int_equal(0, st.finished_at_ms);
    keel_job_status_cleanup(&st);

    int64_t depth;
    ASSERT_OK(keel_jobs_queue_depth(s, q, &depth, &d));
    assert_int_equal(1, depth);

    assert_int_equal(1, run1(p));
    assert_int_equal(0, run1(p)); /* the other queue's job is not ours */

    status_of(s, id, &st);
    assert_int_equal(KEEL_JOB_SUCCESS, st.state);
    assert_int_equal(1, st.attempts);
    json_t *want = json_pack("{sOsi}", "echo", payload, "attempt", 1);
    assert_true(json_equal(want, st.result));
    json_decref(want);
    assert_null(st.error);
    assert_true(st.started_at_ms >= st.created_at_ms);
    assert_true(st.finished_at_ms >= st.started_at_ms);
    keel_job_status_cleanup(&st);
    ASSERT_OK(keel_jobs_queue_depth(s, q, &depth, &d));
    assert_int_equal(0, depth);

    status_of(s, id2, &st);
    assert_int_equal(KEEL_JOB_PENDING, st.state);
    keel_job_status_cleanup(&st);

    keel_jobs_pool_stats ps;
    keel_jobs_pool_stats_get(p, &ps);
    assert_int_equal(1, ps.claimed);
    assert_int_equal(1, ps.succeeded);
    assert_int_equal(0, ps.lost);

    json_decref(payload);
    keel_jobs_pool_destroy(p);
    close_store(s);
}

static void test_status_unknown_and_invalid(void **state)
{
    (void)state;
    new_url();
    keel_store *s = open_store();
    keel_job_status st;
    keel_diag d = {KEEL_OK, 0, ""};
    const char *unknown = "0b6c2f4e-8a1d-4c3b-9e5f-1a2b3c4d5e6f";
    assert_int_equal(KEEL_ENOTFOUND, keel_jobs_status(s, unknown, &st, &d));
    assert_non_null(strstr(d.msg, unknown));
    assert_int_equal(KEEL_JOB_PENDING - 1, (int)st.state); /* zeroed */
    assert_int_equal(KEEL_ENOTFOUND, keel_jobs_status(s, "not-a-uuid", &st, &d));
    assert_int_equal(KEEL_EINVAL, keel_jobs_status(s, NULL, &st, &d));
    keel_job_status_cleanup(&st);

    char q[96];
    queue_name(q, sizeof(q), "inval");
    assert_int_equal(KEEL_EINVAL, keel_jobs_enqueue(s, "", "t", NULL, NULL, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_jobs_enqueue(s, q, "has space", NULL, NULL, NULL, &d));
    keel_job_opts o;
    keel_job_opts_default(&o);
    o.size = 0;
    assert_int_equal(KEEL_EINVAL, keel_jobs_enqueue(s, q, "t", NULL, &o, NULL, &d));
    size_t big = KEEL_JOBS_PAYLOAD_MAX + 10;
    char *blob = malloc(big + 1);
    assert_non_null(blob);
    memset(blob, 'a', big);
    blob[big] = '\0';
    json_t *jb = json_string(blob);
    free(blob);
    assert_int_equal(KEEL_ETOOBIG, keel_jobs_enqueue(s, q, "t", jb, NULL, NULL, &d));
    json_decref(jb);
    int64_t depth;
    ASSERT_OK(keel_jobs_queue_depth(s, q, &depth, &d));
    assert_int_equal(0, depth);
    close_store(s);
}

static void test_retries_backoff_then_failure(void **state)
{
    (void)state;
    new_url();
    keel_store *s = open_store();
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    char q[96];
    queue_name(q, sizeof(q), "retry");
    int64_t t0 = keel_time_wall_ms() + 10;
    atomic_store(&clock_now, t0);
    keel_jobs_pool *p = make_pool(s, q, 1, m);
    ASSERT_OK(keel_jobs_register(p, "fail", h_fail, NULL));
    char id[KEEL_UUID_SIZE];
    keel_diag d;
    ASSERT_OK(keel_jobs_enqueue(s, q, "fail", NULL, NULL, id, &d));

    /* Attempt n fails -> due again after 1000 * 2^(n-1) ms, capped at 3000. */
    const int64_t delays[] = {1000, 2000, 3000};
    keel_job_status st;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(1, run1(p));
        status_of(s, id, &st);
        assert_int_equal(KEEL_JOB_RETRY, st.state);
        assert_int_equal(i + 1, st.attempts);
        assert_string_equal("KEEL_EIO: boom", st.error);
        assert_int_equal(atomic_load(&clock_now) + delays[i], st.run_at_ms);
        keel_job_status_cleanup(&st);
        assert_int_equal(0, run1(p)); /* not due yet */
        atomic_fetch_add(&clock_now, delays[i] - 1);
        assert_int_equal(0, run1(p)); /* one millisecond early */
        atomic_fetch_add(&clock_now, 1);
    }
    assert_int_equal(1, run1(p)); /* 4th attempt = max_retries (3) + 1 */
    status_of(s, id, &st);
    assert_int_equal(KEEL_JOB_FAILURE, st.state);
    assert_int_equal(4, st.attempts);
    assert_string_equal("KEEL_EIO: boom", st.error);
    assert_int_equal(atomic_load(&clock_now), st.finished_at_ms);
    assert_null(st.result);
    keel_job_status_cleanup(&st);
    atomic_fetch_add(&clock_now, 100000);
    assert_int_equal(0, run1(p));

    assert_true(series_value(m, "background_job_runs_total", 0, "fail") == 4.0);
    assert_true(series_value(m, "background_job_failures_total", 0, "fail") == 4.0);
    assert_true(series_value(m, "background_job_duration_seconds", 1, "fail") == 4.0);
    keel_jobs_pool_stats ps;
    keel_jobs_pool_stats_get(p, &ps);
    assert_int_equal(4, ps.claimed);
    assert_int_equal(3, ps.retried);
    assert_int_equal(1, ps.failed);
    keel_jobs_pool_destroy(p);
    keel_metrics_destroy(m);
    close_store(s);
}

static void test_retry_then_success_and_permanent(void **state)
{
    (void)state;
    new_url();
    keel_store *s = open_store();
    char q[96];
    queue_name(q, sizeof(q), "flaky");
    atomic_store(&clock_now, keel_time_wall_ms() + 10);
    keel_jobs_pool *p = make_pool(s, q, 1, NULL);
    ASSERT_OK(keel_jobs_register(p, "flaky", h_flaky, NULL));
    ASSERT_OK(keel_jobs_register(p, "perm", h_permanent, NULL));
    char a[KEEL_UUID_SIZE], b[KEEL_UUID_SIZE], c[KEEL_UUID_SIZE], z[KEEL_UUID_SIZE];
    keel_diag d;
    keel_job_opts o;
    keel_job_opts_default(&o);
    o.max_retries = 5;
    ASSERT_OK(keel_jobs_enqueue(s, q, "flaky", NULL, &o, a, &d));
    ASSERT_OK(keel_jobs_enqueue(s, q, "perm", NULL, &o, b, &d));
    ASSERT_OK(keel_jobs_enqueue(s, q, "nobody", NULL, &o, c, &d));
    o.delay_ms = 60000;
    ASSERT_OK(keel_jobs_enqueue(s, q, "flaky", NULL, &o, z, &d));

    assert_int_equal(1, run1(p));
    assert_int_equal(1, run1(p));
    assert_int_equal(1, run1(p));
    assert_int_equal(0, run1(p)); /* flaky is backing off, z is delayed */
    atomic_fetch_add(&clock_now, 1000);
    assert_int_equal(1, run1(p));
    assert_int_equal(0, run1(p));

    keel_job_status st;
    status_of(s, a, &st);
    assert_int_equal(KEEL_JOB_SUCCESS, st.state);
    assert_int_equal(2, st.attempts);
    assert_int_equal(5, st.max_retries);
    assert_int_equal(42, json_integer_value(st.result));
    assert_null(st.error);
    keel_job_status_cleanup(&st);
    status_of(s, b, &st);
    assert_int_equal(KEEL_JOB_FAILURE, st.state);
    assert_int_equal(1, st.attempts);
    assert_string_equal("KEEL_EINVAL: bad input", st.error);
    keel_job_status_cleanup(&st);
    status_of(s, c, &st);
    assert_int_equal(KEEL_JOB_FAILURE, st.state);
    assert_string_equal("KEEL_ENOTFOUND: no handler for job type 'nobody'", st.error);
    keel_job_status_cleanup(&st);
    status_of(s, z, &st);
    assert_int_equal(KEEL_JOB_PENDING, st.state);
    keel_job_status_cleanup(&st);
    atomic_fetch_add(&clock_now, 60000);
    assert_int_equal(1, run1(p)); /* delayed job now due: first attempt fails */
    keel_jobs_pool_destroy(p);
    close_store(s);
}

typedef struct tx_ud {
    const char *queue;
    char id[KEEL_UUID_SIZE];
    keel_err ret;
} tx_ud;

static keel_err enqueue_in_tx(keel_db *db, void *ud)
{
    tx_ud *t = ud;
    json_t *pl = json_pack("{ss}", "order", "A-1");
    keel_err e = keel_jobs_enqueue_db(db, t->queue, "echo", pl, NULL, t->id, NULL);
    json_decref(pl);
    return e != KEEL_OK ? e : t->ret;
}

static void test_enqueue_in_caller_transaction(void **state)
{
    (void)state;
    new_url();
    keel_store *s = open_store();
    char q[96];
    queue_name(q, sizeof(q), "tx");
    tx_ud rolled = {q, "", KEEL_ECONSTRAINT};
    assert_int_equal(KEEL_ECONSTRAINT, keel_store_tx(s, enqueue_in_tx, &rolled, NULL));
    tx_ud committed = {q, "", KEEL_OK};
    ASSERT_OK(keel_store_tx(s, enqueue_in_tx, &committed, NULL));
    keel_job_status st;
    keel_diag d;
    assert_int_equal(KEEL_ENOTFOUND, keel_jobs_status(s, rolled.id, &st, &d));
    status_of(s, committed.id, &st);
    assert_int_equal(KEEL_JOB_PENDING, st.state);
    keel_job_status_cleanup(&st);
    keel_jobs_pool *p = make_pool(s, q, 0, NULL);
    ASSERT_OK(keel_jobs_register(p, "echo", h_echo, NULL));
    assert_int_equal(1, run1(p));
    assert_int_equal(0, run1(p));
    status_of(s, committed.id, &st);
    assert_int_equal(KEEL_JOB_SUCCESS, st.state);
    keel_job_status_cleanup(&st);
    keel_jobs_pool_destroy(p);
    close_store(s);
}

/* Lease expiry, in one process and deterministically: pool A's handler moves the clock past
 * the lease and lets pool B run the same job; B's completion counts, A's is fenced off. */
typedef struct lease_ud {
    keel_jobs_pool *other;
    int other_ran;
    int64_t advance;
} lease_ud;

static keel_err h_slow_a(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)err;
    lease_ud *l = ud;
    atomic_fetch_add(&clock_now, l->advance);
    ASSERT_OK(keel_jobs_run_once(l->other, &l->other_ran, NULL));
    *result = json_string("from A");
    (void)ctx;
    return KEEL_OK;
}

static keel_err h_fast_b(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)err;
    (void)ud;
    *result = json_pack("{sssi}", "from", "B", "attempt", (int)ctx->attempt);
    return KEEL_OK;
}

static void test_lease_expiry_fenced_completion(void **state)
{
    (void)state;
    new_url();
    keel_store *s = open_store();
    char q[96];
    queue_name(q, sizeof(q), "lease");
    atomic_store(&clock_now, keel_time_wall_ms() + 10);
    keel_jobs_pool *a = make_pool(s, q, 1, NULL);
    keel_jobs_pool *b = make_pool(s, q, 1, NULL);
    lease_ud l = {b, -1, 9999};
    ASSERT_OK(keel_jobs_register(a, "slow", h_slow_a, &l));
    ASSERT_OK(keel_jobs_register(b, "slow", h_fast_b, NULL));
    char id[KEEL_UUID_SIZE];
    keel_diag d;
    ASSERT_OK(keel_jobs_enqueue(s, q, "slow", NULL, NULL, id, &d));

    /* Lease 10000 ms: 9999 ms later the job is still held; B finds nothing. */
    assert_int_equal(1, run1(a));
    assert_int_equal(0, l.other_ran);
    keel_job_status st;
    status_of(s, id, &st);
    assert_int_equal(KEEL_JOB_SUCCESS, st.state);
    assert_string_equal("from A", json_string_value(st.result));
    keel_job_status_cleanup(&st);

    /* Lease expired: B re-claims (attempt 2) and records SUCCESS; A's late completion is
     * discarded. */
    ASSERT_OK(keel_jobs_enqueue(s, q, "slow", NULL, NULL, id, &d));
    l.advance = 10000;
    assert_int_equal(1, run1(a));
    assert_int_equal(1, l.other_ran);
    status_of(s, id, &st);
    assert_int_equal(KEEL_JOB_SUCCESS, st.state);
    assert_int_equal(2, st.attempts);
    assert_string_equal("B", json_string_value(json_object_get(st.result, "from")));
    keel_job_status_cleanup(&st);
    keel_jobs_pool_stats ps;
    keel_jobs_pool_stats_get(a, &ps);
    assert_int_equal(1, ps.lost);
    assert_int_equal(1, ps.succeeded);

    /* max_retries 0: an expired lease was the last attempt -> FAILURE, not run again. */
    keel_job_opts o;
    keel_job_opts_default(&o);
    o.max_retries = 0;
    ASSERT_OK(keel_jobs_enqueue(s, q, "slow", NULL, &o, id, &d));
    assert_int_equal(1, run1(a));
    assert_int_equal(0, l.other_ran);
    status_of(s, id, &st);
    assert_int_equal(KEEL_JOB_FAILURE, st.state);
    assert_int_equal(1, st.attempts);
    assert_non_null(strstr(st.error, "lease expired"));
    keel_job_status_cleanup(&st);
    keel_jobs_pool_stats_get(a, &ps);
    assert_int_equal(2, ps.lost);
    keel_jobs_pool_stats_get(b, &ps);
    assert_int_equal(1, ps.failed);

    keel_jobs_pool_destroy(a);
    keel_jobs_pool_destroy(b);
    close_store(s);
}

/* ------------------------------------------------ concurrent worker pools -- */

#define CONC_JOBS 40

typedef struct conc {
    atomic_int running[CONC_JOBS];
    atomic_int runs[CONC_JOBS];
    atomic_int overlaps;
} conc;

static keel_err h_count(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)result;
    (void)err;
    conc *c = ud;
    int i = (int)json_integer_value(json_object_get(ctx->payload, "i"));
    if (i < 0 || i >= CONC_JOBS)
        return KEEL_EINVAL;
    if (atomic_fetch_add(&c->running[i], 1) != 0)
        atomic_fetch_add(&c->overlaps, 1);
    atomic_fetch_add(&c->runs[i], 1);
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_fetch_sub(&c->running[i], 1);
    return KEEL_OK;
}

static keel_jobs_pool *threaded_pool(keel_store *s, const char *q, unsigned threads,
                                     uint64_t lease_ms, keel_metrics *m)
{
    keel_jobs_pool_config cfg;
    keel_jobs_pool_config_default(&cfg);
    cfg.store = s;
    cfg.queue = q;
    cfg.threads = threads;
    cfg.poll_ms = 20;
    cfg.lease_ms = lease_ms;
    cfg.metrics = m;
    keel_jobs_pool *p = NULL;
    keel_diag d;
    ASSERT_OK(keel_jobs_pool_create(&p, &cfg, &d));
    return p;
}

static void wait_depth_zero(keel_store *s, const char *q)
{
    for (int i = 0; i < 3000; i++) {
        int64_t depth = -1;
        ASSERT_OK(keel_jobs_queue_depth(s, q, &depth, NULL));
        if (depth == 0)
            return;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("queue %s never drained", q);
}

static void test_two_pools_never_run_a_job_twice(void **state)
{
    (void)state;
    new_url();
    keel_store *s1 = open_store();
    keel_store *s2 = open_store();
    char q[96];
    queue_name(q, sizeof(q), "conc");
    conc *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    char ids[CONC_JOBS][KEEL_UUID_SIZE];
    keel_diag d;
    for (int i = 0; i < CONC_JOBS; i++) {
        json_t *pl = json_pack("{si}", "i", i);
        ASSERT_OK(keel_jobs_enqueue(s1, q, "count", pl, NULL, ids[i], &d));
        json_decref(pl);
    }
    keel_jobs_pool *a = threaded_pool(s1, q, 3, 10000, NULL);
    keel_jobs_pool *b = threaded_pool(s2, q, 3, 10000, NULL);
    ASSERT_OK(keel_jobs_register(a, "count", h_count, c));
    ASSERT_OK(keel_jobs_register(b, "count", h_count, c));
    ASSERT_OK(keel_jobs_pool_start(a));
    ASSERT_OK(keel_jobs_pool_start(b));
    assert_int_equal(KEEL_ESTATE, keel_jobs_pool_start(a));
    wait_depth_zero(s1, q);
    ASSERT_OK(keel_jobs_pool_stop(a, 10000));
    ASSERT_OK(keel_jobs_pool_stop(b, 10000));
    ASSERT_OK(keel_jobs_pool_stop(b, 10000)); /* again: a no-op */

    assert_int_equal(0, atomic_load(&c->overlaps));
    for (int i = 0; i < CONC_JOBS; i++) {
        assert_int_equal(1, atomic_load(&c->runs[i]));
        keel_job_status st;
        status_of(s1, ids[i], &st);
        assert_int_equal(KEEL_JOB_SUCCESS, st.state);
        assert_int_equal(1, st.attempts);
        keel_job_status_cleanup(&st);
    }
    keel_jobs_pool_stats sa, sb;
    keel_jobs_pool_stats_get(a, &sa);
    keel_jobs_pool_stats_get(b, &sb);
    assert_int_equal(CONC_JOBS, sa.claimed + sb.claimed);
    assert_int_equal(CONC_JOBS, sa.succeeded + sb.succeeded);
    assert_int_equal(0, sa.lost + sb.lost);
    keel_jobs_pool_destroy(a);
    keel_jobs_pool_destroy(b);
    free(c);
    keel_store_close(s2);
    close_store(s1);
}

/* A handler that runs for several lease periods: the heartbeat keeps the lease, so the
 * second pool, polling all the while, never takes the job over. */
static atomic_int long_runs;
static keel_err h_long(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)result;
    (void)err;
    (void)ud;
    (void)ctx;
    atomic_fetch_add(&long_runs, 1);
    struct timespec ts = {1, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return KEEL_OK;
}

static void test_heartbeat_keeps_the_lease(void **state)
{
    (void)state;
    new_url();
    keel_store *s1 = open_store();
    keel_store *s2 = open_store();
    char q[96];
    queue_name(q, sizeof(q), "hb");
    atomic_store(&long_runs, 0);
    char id[KEEL_UUID_SIZE];
    keel_diag d;
    ASSERT_OK(keel_jobs_enqueue(s1, q, "long", NULL, NULL, id, &d));
    keel_jobs_pool *a = threaded_pool(s1, q, 1, 400, NULL);
    ASSERT_OK(keel_jobs_register(a, "long", h_long, NULL));
    ASSERT_OK(keel_jobs_pool_start(a));
    /* Wait until a has it, then start b. */
    keel_job_status st;
    for (int i = 0; i < 500; i++) {
        status_of(s1, id, &st);
        keel_job_state stt = st.state;
        keel_job_status_cleanup(&st);
        if (stt != KEEL_JOB_PENDING)
            break;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    keel_jobs_pool *b = threaded_pool(s2, q, 2, 400, NULL);
    ASSERT_OK(keel_jobs_register(b, "long", h_long, NULL));
    ASSERT_OK(keel_jobs_pool_start(b));
    wait_depth_zero(s1, q);
    ASSERT_OK(keel_jobs_pool_stop(a, 0));
    ASSERT_OK(keel_jobs_pool_stop(b, 0));
    assert_int_equal(1, atomic_load(&long_runs));
    status_of(s1, id, &st);
    assert_int_equal(KEEL_JOB_SUCCESS, st.state);
    assert_int_equal(1, st.attempts);
    keel_job_status_cleanup(&st);
    keel_jobs_pool_destroy(a);
    keel_jobs_pool_destroy(b);
    keel_store_close(s2);
    close_store(s1);
}

/* Graceful stop: a handler that winds up when asked gives its job back unconsumed. */
static atomic_int stop_seen;
static keel_err h_until_stop(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)result;
    (void)err;
    (void)ud;
    atomic_store(&stop_seen, 1); /* started */
    while (!keel_job_should_stop(ctx)) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&stop_seen, 2);
    return KEEL_ECLOSED;
}

static void test_graceful_stop_releases_the_claim(void **state)
{
    (void)state;
    new_url();
    keel_store *s = open_store();
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    char q[96];
    queue_name(q, sizeof(q), "stop");
    char id[KEEL_UUID_SIZE], later[KEEL_UUID_SIZE];
    keel_diag d;
    ASSERT_OK(keel_jobs_enqueue(s, q, "wait", NULL, NULL, id, &d));
    keel_job_opts o;
    keel_job_opts_default(&o);
    o.delay_ms = 3600000;
    ASSERT_OK(keel_jobs_enqueue(s, q, "wait", NULL, &o, later, &d));
    atomic_store(&stop_seen, 0);
    keel_jobs_pool *p = threaded_pool(s, q, 2, 2000, m);
    ASSERT_OK(keel_jobs_register(p, "wait", h_until_stop, NULL));
    ASSERT_OK(keel_jobs_pool_start(p));
    while (atomic_load(&stop_seen) == 0) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* The depth gauge counts the running job and the delayed one. */
    static const char *const ql[] = {"queue", NULL};
    keel_metric *g;
    ASSERT_OK(keel_metrics_gauge(m, "background_job_queue_depth",
                                 "Jobs waiting, retrying or running in a durable queue", ql, &g));
    const char *qv[] = {q, NULL};
    keel_series *gs;
    ASSERT_OK(keel_metric_series(g, qv, &gs));
    for (int i = 0; i < 500 && keel_series_value(gs) != 2.0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_true(keel_series_value(gs) == 2.0);

    ASSERT_OK(keel_jobs_pool_stop(p, 10000));
    assert_int_equal(2, atomic_load(&stop_seen));
    keel_job_status st;
    status_of(s, id, &st);
    assert_int_equal(KEEL_JOB_PENDING, st.state);
    assert_int_equal(0, st.attempts);
    keel_job_status_cleanup(&st);
    keel_jobs_pool_stats ps;
    keel_jobs_pool_stats_get(p, &ps);
    assert_int_equal(1, ps.released);
    keel_jobs_pool_destroy(p);

    /* Another pool picks it up at once and completes it. */
    keel_jobs_pool *p2 = make_pool(s, q, 0, NULL);
    ASSERT_OK(keel_jobs_register(p2, "wait", h_echo, NULL));
    assert_int_equal(1, run1(p2));
    status_of(s, id, &st);
    assert_int_equal(KEEL_JOB_SUCCESS, st.state);
    assert_int_equal(1, st.attempts);
    keel_job_status_cleanup(&st);
    keel_jobs_pool_destroy(p2);
    keel_metrics_destroy(m);
    close_store(s);
}

static void test_pool_config_validation(void **state)
{
    (void)state;
    new_url();
    keel_store *s = open_store();
    keel_jobs_pool_config cfg;
    keel_jobs_pool_config_default(&cfg);
    keel_jobs_pool *p = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_EINVAL, keel_jobs_pool_create(&p, &cfg, &d)); /* no store */
    cfg.store = s;
    cfg.queue = "q";
    cfg.threads = 0;
    assert_int_equal(KEEL_EINVAL, keel_jobs_pool_create(&p, &cfg, &d));
    assert_non_null(strstr(d.msg, "threads"));
    cfg.threads = 1;
    ASSERT_OK(keel_jobs_pool_create(&p, &cfg, &d));
    assert_int_equal(KEEL_EINVAL, keel_jobs_register(p, "", h_echo, NULL));
    assert_int_equal(KEEL_EINVAL, keel_jobs_register(p, "x", NULL, NULL));
    ASSERT_OK(keel_jobs_pool_stop(p, 0)); /* never started: no-op */
    keel_jobs_pool_destroy(p);
    keel_jobs_pool_destroy(NULL);
    close_store(s);
}

#define JOB_TESTS(prefix)                                                                        \
    cmocka_unit_test(test_enqueue_claim_complete),                                               \
        cmocka_unit_test(test_status_unknown_and_invalid),                                       \
        cmocka_unit_test(test_retries_backoff_then_failure),                                     \
        cmocka_unit_test(test_retry_then_success_and_permanent),                                 \
        cmocka_unit_test(test_enqueue_in_caller_transaction),                                    \
        cmocka_unit_test(test_lease_expiry_fenced_completion),                                   \
        cmocka_unit_test(test_two_pools_never_run_a_job_twice),                                  \
        cmocka_unit_test(test_heartbeat_keeps_the_lease),                                        \
        cmocka_unit_test(test_graceful_stop_releases_the_claim),                                 \
        cmocka_unit_test(test_pool_config_validation)

int main(void)
{
    pg_dsn = getenv("KEEL_TEST_PG_DSN");
    if (pg_dsn != NULL && pg_dsn[0] == '\0')
        pg_dsn = NULL;
    const struct CMUnitTest tests[] = {JOB_TESTS(x)};
    int failed = cmocka_run_group_tests_name("jobs_sqlite", tests, setup_sqlite, NULL);
    if (pg_dsn != NULL)
        failed += cmocka_run_group_tests_name("jobs_postgres", tests, setup_pg, NULL);
    else
        fprintf(stderr, "KEEL_TEST_PG_DSN not set: PostgreSQL half skipped\n");
    return failed;
}
