/* Crash test for src/async/jobs.c: a worker process is SIGKILLed inside the handler; the job
 * is neither lost nor run twice concurrently - it is re-claimed once its lease expires and
 * completes exactly once more (attempt 2).  SQLite (a file under KEEL_TEST_TMP) and, when
 * KEEL_TEST_PG_DSN is set, PostgreSQL. */
#define _GNU_SOURCE 1
#include "test.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <keel/jobs.h>

static const char *pg_dsn;
static int use_pg;
static char url[512];
static char sqlite_path[400];

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

static keel_store *open_store(void)
{
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    keel_store *s = NULL;
    if (keel_store_open(&s, &cfg, NULL) != KEEL_OK)
        return NULL;
    if (keel_jobs_migrate(s, NULL) != KEEL_OK) {
        keel_store_close(s);
        return NULL;
    }
    return s;
}

static int crash_pipe = -1;

/* Child's handler: report the attempt, then hang until killed. */
static keel_err h_hang(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)result;
    (void)err;
    (void)ud;
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "%s %u\n", ctx->id, ctx->attempt);
    if (write(crash_pipe, msg, (size_t)n) != n)
        _exit(3);
    for (;;)
        pause();
}

static void child_worker(const char *queue)
{
    keel_store *s = open_store();
    if (s == NULL)
        _exit(2);
    keel_jobs_pool_config cfg;
    keel_jobs_pool_config_default(&cfg);
    cfg.store = s;
    cfg.queue = queue;
    cfg.threads = 1;
    cfg.lease_ms = 300;
    cfg.poll_ms = 20;
    keel_jobs_pool *p;
    if (keel_jobs_pool_create(&p, &cfg, NULL) != KEEL_OK ||
        keel_jobs_register(p, "crash", h_hang, NULL) != KEEL_OK ||
        keel_jobs_pool_start(p) != KEEL_OK)
        _exit(2);
    for (;;)
        pause();
}

static int parent_runs;
static keel_err h_done(keel_job_ctx *ctx, json_t **result, keel_diag *err, void *ud)
{
    (void)err;
    (void)ud;
    parent_runs++;
    *result = json_integer((json_int_t)ctx->attempt);
    return KEEL_OK;
}

static void test_worker_killed_mid_job(void **state)
{
    (void)state;
    if (use_pg) {
        snprintf(url, sizeof(url), "%s", pg_dsn);
    } else {
        snprintf(sqlite_path, sizeof(sqlite_path), "%s/jobs_crash_%ld.db", KEEL_TEST_TMP,
                 (long)getpid());
        unlink(sqlite_path);
        snprintf(url, sizeof(url), "sqlite:%s", sqlite_path);
    }
    char q[96];
    snprintf(q, sizeof(q), "crash_%ld_%d", (long)getpid(), use_pg);
    keel_store *s = open_store();
    assert_non_null(s);
    char id[KEEL_UUID_SIZE];
    json_t *pl = json_pack("{ss}", "k", "v");
    ASSERT_OK(keel_jobs_enqueue(s, q, "crash", pl, NULL, id, NULL));
    json_decref(pl);
    keel_store_close(s); /* nothing shared with the child */

    int fds[2];
    assert_int_equal(0, pipe(fds));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        crash_pipe = fds[1];
        child_worker(q);
        _exit(0);
    }
    close(fds[1]);
    struct pollfd pfd = {fds[0], POLLIN, 0};
    assert_int_equal(1, poll(&pfd, 1, 60000));
    char line[128] = "";
    ssize_t n = read(fds[0], line, sizeof(line) - 1);
    assert_true(n > 0);
    line[n] = '\0';
    char want[64];
    snprintf(want, sizeof(want), "%s 1\n", id);
    assert_string_equal(want, line); /* the child runs attempt 1 of our job */
    assert_int_equal(0, kill(pid, SIGKILL));
    int wst = 0;
    assert_int_equal(pid, waitpid(pid, &wst, 0));
    assert_true(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
    close(fds[0]);

    s = open_store();
    assert_non_null(s);
    keel_job_status st;
    ASSERT_OK(keel_jobs_status(s, id, &st, NULL));
    assert_int_equal(KEEL_JOB_STARTED, st.state); /* claimed by the dead worker */
    assert_int_equal(1, st.attempts);
    keel_job_status_cleanup(&st);

    keel_jobs_pool_config cfg;
    keel_jobs_pool_config_default(&cfg);
    cfg.store = s;
    cfg.queue = q;
    cfg.threads = 1;
    keel_jobs_pool *p;
    ASSERT_OK(keel_jobs_pool_create(&p, &cfg, NULL));
    ASSERT_OK(keel_jobs_register(p, "crash", h_done, NULL));
    parent_runs = 0;
    int ran = 0;
    /* Not before the dead worker's lease (300 ms) expires; then exactly once. */
    for (int i = 0; i < 1000 && !ran; i++) {
        ASSERT_OK(keel_jobs_run_once(p, &ran, NULL));
        if (!ran) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(1, ran);
    for (int i = 0; i < 5; i++) {
        ASSERT_OK(keel_jobs_run_once(p, &ran, NULL));
        assert_int_equal(0, ran);
    }
    assert_int_equal(1, parent_runs);
    ASSERT_OK(keel_jobs_status(s, id, &st, NULL));
    assert_int_equal(KEEL_JOB_SUCCESS, st.state);
    assert_int_equal(2, st.attempts);
    assert_int_equal(2, json_integer_value(st.result));
    assert_null(st.error);
    keel_job_status_cleanup(&st);
    keel_jobs_pool_destroy(p);
    keel_store_close(s);
    if (!use_pg)
        unlink(sqlite_path);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    pg_dsn = getenv("KEEL_TEST_PG_DSN");
    if (pg_dsn != NULL && pg_dsn[0] == '\0')
        pg_dsn = NULL;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_worker_killed_mid_job)};
    int failed = cmocka_run_group_tests_name("jobs_crash_sqlite", tests, setup_sqlite, NULL);
    if (pg_dsn != NULL)
        failed += cmocka_run_group_tests_name("jobs_crash_postgres", tests, setup_pg, NULL);
    else
        fprintf(stderr, "KEEL_TEST_PG_DSN not set: PostgreSQL half skipped\n");
    return failed;
}
