/* Tests for src/async/outbox.c: rows exist only when the caller's transaction commits, relay
 * order and dedup ids, publish failures (stable ids, order kept), lease expiry with fenced
 * marking, two relays in parallel delivering each row once, a relay process killed between
 * publish and mark (re-delivered after restart with the same id), and purge.  SQLite (a file
 * under KEEL_TEST_TMP) and, when KEEL_TEST_PG_DSN is set, PostgreSQL (the shared keel_outbox
 * table is emptied first; PostgreSQL tests never overlap, see tests/CMakeLists.txt). */
#define _GNU_SOURCE 1
#include "test.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <keel/outbox.h>

static const char *pg_dsn;
static int use_pg;
static unsigned counter;
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

static keel_store *open_store_raw(void)
{
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    keel_store *s = NULL;
    if (keel_store_open(&s, &cfg, NULL) != KEEL_OK)
        return NULL;
    if (keel_outbox_migrate(s, NULL) != KEEL_OK) {
        keel_store_close(s);
        return NULL;
    }
    return s;
}

/* A fresh, empty outbox for one test. */
static keel_store *fresh_store(void)
{
    counter++;
    if (use_pg) {
        snprintf(url, sizeof(url), "%s", pg_dsn);
    } else {
        snprintf(sqlite_path, sizeof(sqlite_path), "%s/outbox_%ld_%u.db", KEEL_TEST_TMP,
                 (long)getpid(), counter);
        unlink(sqlite_path);
        snprintf(url, sizeof(url), "sqlite:%s", sqlite_path);
    }
    keel_store *s = open_store_raw();
    assert_non_null(s);
    keel_db *db;
    ASSERT_OK(keel_db_acquire(s, &db, NULL));
    ASSERT_OK(keel_db_exec(db, "DELETE FROM keel_outbox", NULL));
    keel_db_release(db);
    return s;
}

static void close_store(keel_store *s)
{
    keel_store_close(s);
    if (!use_pg)
        unlink(sqlite_path);
}

/* Manual wall clock for relays. */
static _Atomic int64_t clock_now;
static int64_t manual_now(void *ud)
{
    (void)ud;
    return atomic_load(&clock_now);
}

/* What the publisher saw. */
#define REC_MAX 512
typedef struct rec {
    pthread_mutex_t mu;
    size_t n;
    char ids[REC_MAX][KEEL_UUID_SIZE];
    char types[REC_MAX][32];
    int values[REC_MAX];
    int fail_at;      /* fail the delivery with this 1-based index once (0 = never) */
    keel_outbox_relay *nested; /* run this relay from inside the callback (lease test) */
    int64_t advance;
    size_t nested_published;
} rec;

static void rec_init(rec *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
}

static keel_err publish(const char *type, const char *id, const json_t *payload, void *ud)
{
    rec *r = ud;
    pthread_mutex_lock(&r->mu);
    size_t i = r->n;
    if (i >= REC_MAX) {
        pthread_mutex_unlock(&r->mu);
        return KEEL_EFULL;
    }
    r->n++;
    snprintf(r->ids[i], KEEL_UUID_SIZE, "%s", id);
    snprintf(r->types[i], sizeof(r->types[i]), "%s", type);
    r->values[i] = (int)json_integer_value(json_object_get(payload, "v"));
    int fail = r->fail_at != 0 && (size_t)r->fail_at == i + 1;
    keel_outbox_relay *nested = r->nested;
    r->nested = NULL;
    pthread_mutex_unlock(&r->mu);
    if (nested != NULL) {
        atomic_fetch_add(&clock_now, r->advance);
        ASSERT_OK(keel_outbox_relay_run_once(nested, &r->nested_published, NULL));
    }
    return fail ? KEEL_EAGAIN : KEEL_OK;
}

static keel_outbox_relay *make_relay(keel_store *s, rec *r, unsigned batch, int manual)
{
    keel_outbox_relay_config cfg;
    keel_outbox_relay_config_default(&cfg);
    cfg.store = s;
    cfg.publish = publish;
    cfg.ud = r;
    cfg.batch = batch;
    cfg.lease_ms = 5000;
    cfg.poll_ms = 10;
    cfg.backoff_base_ms = 10;
    cfg.backoff_max_ms = 50;
    if (manual)
        cfg.now_ms = manual_now;
    keel_outbox_relay *rl = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_outbox_relay_create(&rl, &cfg, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "relay: %s\n", d.msg);
    assert_int_equal(KEEL_OK, e);
    return rl;
}

typedef struct add_ud {
    int first, count;
    keel_err ret;
    char ids[REC_MAX][KEEL_UUID_SIZE];
} add_ud;

static keel_err add_events(keel_db *db, void *ud)
{
    add_ud *a = ud;
    for (int i = 0; i < a->count; i++) {
        json_t *pl = json_pack("{si}", "v", a->first + i);
        keel_err e = keel_outbox_add(db, "order.created", pl, a->ids[i], NULL);
        json_decref(pl);
        if (e != KEEL_OK)
            return e;
    }
    return a->ret;
}

static int64_t pending(keel_store *s)
{
    int64_t n = -1;
    ASSERT_OK(keel_outbox_pending(s, &n, NULL));
    return n;
}

/* ---------------------------------------------------------------- tests -- */

static void test_commit_only_and_order(void **state)
{
    (void)state;
    keel_store *s = fresh_store();
    static rec r;
    rec_init(&r);
    keel_outbox_relay *rl = make_relay(s, &r, 100, 0);

    static add_ud rolled, committed;
    memset(&rolled, 0, sizeof(rolled));
    rolled.first = 100;
    rolled.count = 2;
    rolled.ret = KEEL_ECONSTRAINT;
    assert_int_equal(KEEL_ECONSTRAINT, keel_store_tx(s, add_events, &rolled, NULL));
    size_t n = 99;
    ASSERT_OK(keel_outbox_relay_run_once(rl, &n, NULL));
    assert_int_equal(0, n);
    assert_int_equal(0, r.n); /* rollback: nothing relayed */

    memset(&committed, 0, sizeof(committed));
    committed.first = 1;
    committed.count = 3;
    ASSERT_OK(keel_store_tx(s, add_events, &committed, NULL));
    assert_int_equal(3, pending(s));
    ASSERT_OK(keel_outbox_relay_run_once(rl, &n, NULL));
    assert_int_equal(3, n);
    assert_int_equal(3, r.n);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(committed.ids[i], r.ids[i]); /* dedup id = the id from add */
        assert_int_equal(1, keel_uuid_valid(keel_str_c(r.ids[i])));
        assert_string_equal("order.created", r.types[i]);
        assert_int_equal(i + 1, r.values[i]);
    }
    assert_int_equal(0, pending(s));
    ASSERT_OK(keel_outbox_relay_run_once(rl, &n, NULL));
    assert_int_equal(0, n);
    assert_int_equal(3, r.n);

    /* Outside a transaction: refused. */
    keel_db *db;
    ASSERT_OK(keel_db_acquire(s, &db, NULL));
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_ESTATE, keel_outbox_add(db, "x", NULL, NULL, &d));
    ASSERT_OK(keel_db_begin(db));
    assert_int_equal(KEEL_EINVAL, keel_outbox_add(db, "bad type", NULL, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_outbox_add(db, "", NULL, NULL, &d));
    ASSERT_OK(keel_db_commit(db));
    keel_db_release(db);

    /* Purge: published rows go, unpublished stay. */
    memset(&committed, 0, sizeof(committed));
    committed.first = 10;
    committed.count = 1;
    ASSERT_OK(keel_store_tx(s, add_events, &committed, NULL));
    int64_t deleted = -1;
    ASSERT_OK(keel_outbox_purge(s, 3600000, &deleted, NULL)); /* none older than an hour */
    assert_int_equal(0, deleted);
    ASSERT_OK(keel_outbox_purge(s, 0, &deleted, NULL));
    assert_int_equal(3, deleted);
    assert_int_equal(1, pending(s));
    keel_outbox_relay_destroy(rl);
    pthread_mutex_destroy(&r.mu);
    close_store(s);
}

static void test_publish_failure_keeps_order_and_ids(void **state)
{
    (void)state;
    keel_store *s = fresh_store();
    static rec r;
    rec_init(&r);
    r.fail_at = 2;
    keel_outbox_relay *rl = make_relay(s, &r, 100, 0);
    static add_ud a;
    memset(&a, 0, sizeof(a));
    a.first = 1;
    a.count = 4;
    ASSERT_OK(keel_store_tx(s, add_events, &a, NULL));
    size_t n = 99;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_EAGAIN, keel_outbox_relay_run_once(rl, &n, &d));
    assert_non_null(strstr(d.msg, a.ids[1]));
    assert_int_equal(1, n);
    assert_int_equal(2, r.n);
    assert_int_equal(3, pending(s));
    ASSERT_OK(keel_outbox_relay_run_once(rl, &n, NULL));
    assert_int_equal(3, n);
    assert_int_equal(5, r.n);
    /* Deliveries: 1, 2 (failed), 2, 3, 4 - in order, the same id for both tries of 2. */
    const int want[] = {1, 2, 2, 3, 4};
    for (int i = 0; i < 5; i++)
        assert_int_equal(want[i], r.values[i]);
    assert_string_equal(a.ids[1], r.ids[1]);
    assert_string_equal(a.ids[1], r.ids[2]);
    assert_string_equal(a.ids[3], r.ids[4]);
    /* The failed row counts two attempts and no longer shows an error; the others one. */
    keel_db *db;
    ASSERT_OK(keel_db_acquire(s, &db, NULL));
    keel_stmt *st;
    ASSERT_OK(keel_db_prepare(db, "SELECT attempts, last_error FROM keel_outbox ORDER BY seq",
                              &st, NULL));
    const int64_t attempts[] = {1, 2, 1, 1};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(1, keel_stmt_step(st, NULL));
        assert_int_equal(attempts[i], keel_stmt_int64(st, 0));
        assert_int_equal(1, keel_stmt_is_null(st, 1));
    }
    keel_db_release(db);
    keel_outbox_relay_destroy(rl);
    pthread_mutex_destroy(&r.mu);
    close_store(s);
}

/* Relay A's publish callback outlives the lease: relay B re-claims and publishes the row (same
 * id); A's late mark is fenced off, so the row counts as published once. */
static void test_lease_expiry_redelivers_same_id(void **state)
{
    (void)state;
    keel_store *s = fresh_store();
    static rec r;
    rec_init(&r);
    atomic_store(&clock_now, keel_time_wall_ms() + 10);
    keel_outbox_relay *a = make_relay(s, &r, 1, 1);
    keel_outbox_relay *b = make_relay(s, &r, 1, 1);
    static add_ud ad;
    memset(&ad, 0, sizeof(ad));
    ad.first = 7;
    ad.count = 1;
    ASSERT_OK(keel_store_tx(s, add_events, &ad, NULL));
    r.nested = b;
    r.advance = 5000; /* = lease_ms */
    size_t n = 99;
    ASSERT_OK(keel_outbox_relay_run_once(a, &n, NULL));
    assert_int_equal(0, n);                   /* A's mark lost */
    assert_int_equal(1, r.nested_published);  /* B's counted */
    assert_int_equal(2, r.n);
    assert_string_equal(ad.ids[0], r.ids[0]);
    assert_string_equal(ad.ids[0], r.ids[1]);
    assert_int_equal(0, pending(s));
    keel_outbox_relay_destroy(a);
    keel_outbox_relay_destroy(b);
    pthread_mutex_destroy(&r.mu);
    close_store(s);
}

static void test_two_relays_deliver_each_once(void **state)
{
    (void)state;
    keel_store *s1 = fresh_store();
    keel_store *s2 = open_store_raw();
    assert_non_null(s2);
    static rec r;
    rec_init(&r);
    static add_ud ad;
    memset(&ad, 0, sizeof(ad));
    ad.first = 0;
    ad.count = 200;
    ASSERT_OK(keel_store_tx(s1, add_events, &ad, NULL));
    keel_outbox_relay *a = make_relay(s1, &r, 7, 0);
    keel_outbox_relay *b = make_relay(s2, &r, 7, 0);
    ASSERT_OK(keel_outbox_relay_start(a));
    ASSERT_OK(keel_outbox_relay_start(b));
    assert_int_equal(KEEL_ESTATE, keel_outbox_relay_start(a));
    for (int i = 0; i < 3000 && pending(s1) != 0; i++) {
        keel_outbox_relay_wake(a);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ASSERT_OK(keel_outbox_relay_stop(a, 10000));
    ASSERT_OK(keel_outbox_relay_stop(b, 10000));
    assert_int_equal(0, pending(s1));
    assert_int_equal(200, r.n);
    int seen[200] = {0};
    for (size_t i = 0; i < r.n; i++) {
        assert_true(r.values[i] >= 0 && r.values[i] < 200);
        seen[r.values[i]]++;
        assert_string_equal(ad.ids[r.values[i]], r.ids[i]);
    }
    for (int i = 0; i < 200; i++)
        assert_int_equal(1, seen[i]);
    keel_outbox_relay_destroy(a);
    keel_outbox_relay_destroy(b);
    pthread_mutex_destroy(&r.mu);
    keel_store_close(s2);
    close_store(s1);
}

/* ------------------------------------------------------------ crash -- */

static int crash_fd = -1;

/* Child's publisher: report the id, then die before the relay can mark the row. */
static keel_err publish_and_die(const char *type, const char *id, const json_t *payload,
                                void *ud)
{
    (void)type;
    (void)payload;
    (void)ud;
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "%s\n", id);
    if (write(crash_fd, msg, (size_t)n) != n)
        _exit(3);
    raise(SIGKILL);
    return KEEL_OK;
}

static void test_relay_killed_between_publish_and_mark(void **state)
{
    (void)state;
    keel_store *s = fresh_store();
    static add_ud ad;
    memset(&ad, 0, sizeof(ad));
    ad.first = 1;
    ad.count = 3;
    ASSERT_OK(keel_store_tx(s, add_events, &ad, NULL));
    keel_store_close(s); /* nothing shared with the child */

    int fds[2];
    assert_int_equal(0, pipe(fds));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        crash_fd = fds[1];
        keel_store *cs = open_store_raw();
        if (cs == NULL)
            _exit(2);
        keel_outbox_relay_config cfg;
        keel_outbox_relay_config_default(&cfg);
        cfg.store = cs;
        cfg.publish = publish_and_die;
        cfg.lease_ms = 300;
        keel_outbox_relay *rl;
        if (keel_outbox_relay_create(&rl, &cfg, NULL) != KEEL_OK)
            _exit(2);
        size_t n;
        keel_err ignored = keel_outbox_relay_run_once(rl, &n, NULL);
        (void)ignored;
        _exit(4); /* not reached */
    }
    close(fds[1]);
    struct pollfd pfd = {fds[0], POLLIN, 0};
    assert_int_equal(1, poll(&pfd, 1, 60000));
    char line[128] = "";
    ssize_t got = read(fds[0], line, sizeof(line) - 1);
    assert_true(got > 0);
    line[got] = '\0';
    int wst = 0;
    assert_int_equal(pid, waitpid(pid, &wst, 0));
    assert_true(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
    close(fds[0]);
    char want[64];
    snprintf(want, sizeof(want), "%s\n", ad.ids[0]);
    assert_string_equal(want, line); /* the child published the first event */

    /* Restart: once the dead relay's lease (300 ms) expires everything is relayed, the first
     * event again with the same dedup id. */
    s = open_store_raw();
    assert_non_null(s);
    assert_int_equal(3, pending(s));
    static rec r;
    rec_init(&r);
    keel_outbox_relay *rl = make_relay(s, &r, 100, 0);
    size_t total = 0;
    for (int i = 0; i < 1000 && total < 3; i++) {
        size_t n = 0;
        ASSERT_OK(keel_outbox_relay_run_once(rl, &n, NULL));
        total += n;
        if (total < 3) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(3, total);
    assert_int_equal(3, r.n);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(ad.ids[i], r.ids[i]);
        assert_int_equal(i + 1, r.values[i]);
    }
    assert_int_equal(0, pending(s));
    keel_outbox_relay_destroy(rl);
    pthread_mutex_destroy(&r.mu);
    close_store(s);
}

static void test_relay_config_validation(void **state)
{
    (void)state;
    keel_store *s = fresh_store();
    keel_outbox_relay_config cfg;
    keel_outbox_relay_config_default(&cfg);
    keel_outbox_relay *rl = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_EINVAL, keel_outbox_relay_create(&rl, &cfg, &d));
    cfg.store = s;
    cfg.publish = publish;
    cfg.batch = 0;
    assert_int_equal(KEEL_EINVAL, keel_outbox_relay_create(&rl, &cfg, &d));
    assert_null(rl);
    cfg.batch = 1;
    ASSERT_OK(keel_outbox_relay_create(&rl, &cfg, &d));
    ASSERT_OK(keel_outbox_relay_stop(rl, 0)); /* never started */
    keel_outbox_relay_destroy(rl);
    keel_outbox_relay_destroy(NULL);
    close_store(s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    pg_dsn = getenv("KEEL_TEST_PG_DSN");
    if (pg_dsn != NULL && pg_dsn[0] == '\0')
        pg_dsn = NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_only_and_order),
        cmocka_unit_test(test_publish_failure_keeps_order_and_ids),
        cmocka_unit_test(test_lease_expiry_redelivers_same_id),
        cmocka_unit_test(test_two_relays_deliver_each_once),
        cmocka_unit_test(test_relay_killed_between_publish_and_mark),
        cmocka_unit_test(test_relay_config_validation),
    };
    int failed = cmocka_run_group_tests_name("outbox_sqlite", tests, setup_sqlite, NULL);
    if (pg_dsn != NULL)
        failed += cmocka_run_group_tests_name("outbox_postgres", tests, setup_pg, NULL);
    else
        fprintf(stderr, "KEEL_TEST_PG_DSN not set: PostgreSQL half skipped\n");
    return failed;
}
