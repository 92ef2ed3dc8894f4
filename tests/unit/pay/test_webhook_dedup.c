/* Tests for src/pay/webhook_dedup.c: first delivery 1 then 0 on every backend (memory,
 * SQLite, and PostgreSQL / Redis when KEEL_TEST_PG_DSN / KEEL_TEST_REDIS_URL are set -
 * those tests are skipped otherwise), expiry with an injected clock, purge, forget, the
 * memory bound, id validation, custom backends, and 8 threads racing on one id (exactly one
 * sees 1). */
#define _GNU_SOURCE 1
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel_int.h"
#include <keel/webhook.h>

#define THREADS 8
#define ROUNDS 10

static const char *pg_dsn;
static const char *redis_url;
static char uniq[64]; /* per-process id prefix, so runs sharing a server never collide */

/* ------------------------------------------------------------ fake clock -- */

static int64_t fake_now(void *ud)
{
    return *(const int64_t *)ud;
}

static void cfg_with_clock(keel_webhook_dedup_config *cfg, int64_t *clock)
{
    keel_webhook_dedup_config_default(cfg);
    cfg->now_ms = fake_now;
    cfg->clock_ud = clock;
}

static int first(keel_webhook_dedup *d, const char *id)
{
    keel_diag diag = {KEEL_OK, 0, ""};
    int r = keel_webhook_is_first_delivery(d, id, &diag);
    if (r < 0)
        fprintf(stderr, "is_first(%s): %s %s\n", id, keel_err_name(r), diag.msg);
    return r;
}

/* ------------------------------------------------------------ concurrency -- */

typedef struct race {
    keel_webhook_dedup *d;
    pthread_barrier_t *bar;
    char id[96];
    int result;
} race;

static void *race_thread(void *arg)
{
    race *r = arg;
    pthread_barrier_wait(r->bar);
    r->result = first(r->d, r->id);
    return NULL;
}

/* ROUNDS times: THREADS threads call is_first on one fresh id at once; exactly one gets 1. */
static void race_check(keel_webhook_dedup *d, const char *tag)
{
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, THREADS);
        race r[THREADS];
        pthread_t th[THREADS];
        for (int i = 0; i < THREADS; i++) {
            r[i].d = d;
            r[i].bar = &bar;
            snprintf(r[i].id, sizeof(r[i].id), "evt_race_%s_%s_%d", tag, uniq, round);
            assert_int_equal(0, pthread_create(&th[i], NULL, race_thread, &r[i]));
        }
        int ones = 0, zeros = 0;
        for (int i = 0; i < THREADS; i++) {
            pthread_join(th[i], NULL);
            ones += r[i].result == 1;
            zeros += r[i].result == 0;
        }
        pthread_barrier_destroy(&bar);
        assert_int_equal(1, ones);
        assert_int_equal(THREADS - 1, zeros);
    }
}

/* Behaviour every backend shares: 1 then 0, distinct ids independent, forget, bad ids. */
static void common_checks(keel_webhook_dedup *d, const char *tag)
{
    char a[96], b[96];
    snprintf(a, sizeof(a), "evt_a_%s_%s", tag, uniq);
    snprintf(b, sizeof(b), "evt_b_%s_%s", tag, uniq);
    assert_int_equal(1, first(d, a));
    assert_int_equal(0, first(d, a));
    assert_int_equal(0, first(d, a));
    assert_int_equal(1, first(d, b));
    assert_int_equal(0, first(d, b));
    ASSERT_OK(keel_webhook_dedup_forget(d, a, NULL));
    ASSERT_OK(keel_webhook_dedup_forget(d, a, NULL)); /* unknown: still OK */
    assert_int_equal(1, first(d, a));
    assert_int_equal(0, first(d, a));
    assert_int_equal(0, first(d, b));

    keel_diag diag;
    char big[300];
    memset(big, 'x', sizeof(big));
    big[256] = '\0';
    const char *bad[] = {"", "evt 1", "evt\t1", "evt\x7f", "evt\xc3\xa9", big};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        assert_int_equal(KEEL_EINVAL, keel_webhook_is_first_delivery(d, bad[i], &diag));
        assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_forget(d, bad[i], NULL));
    }
    assert_int_equal(KEEL_EINVAL, keel_webhook_is_first_delivery(d, NULL, NULL));
    assert_int_equal(KEEL_EINVAL, keel_webhook_is_first_delivery(NULL, "x", NULL));
    big[255] = '\0'; /* 255 bytes: the longest valid id */
    big[0] = tag[0];
    memcpy(big + 1, uniq, strlen(uniq));
    int r = first(d, big);
    assert_true(r == 1 || r == 0);
    assert_int_equal(0, first(d, big));
}

/* ------------------------------------------------------------------ memory -- */

static void test_memory_basic(void **state)
{
    (void)state;
    keel_webhook_dedup_config cfg;
    keel_webhook_dedup_config_default(&cfg);
    assert_int_equal(KEEL_WEBHOOK_RETENTION_DEFAULT_MS, cfg.retention_ms);
    assert_int_equal(3ull * 86400000ull, cfg.retention_ms);
    assert_int_equal(30ull * 86400000ull, KEEL_WEBHOOK_RETENTION_RECOMMENDED_MS);
    keel_webhook_dedup *d = NULL;
    ASSERT_OK(keel_webhook_dedup_memory_create(&d, &cfg));
    common_checks(d, "mem");
    race_check(d, "mem");
    keel_webhook_dedup_destroy(d);
    keel_webhook_dedup_destroy(NULL);

    cfg.max_entries = 0;
    assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_memory_create(&d, &cfg));
    assert_null(d);
    cfg.max_entries = 10;
    cfg.retention_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_memory_create(&d, &cfg));
    cfg.retention_ms = 1000;
    cfg.size = 4;
    assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_memory_create(&d, &cfg));
    assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_memory_create(&d, NULL));
}

static void test_memory_expiry(void **state)
{
    (void)state;
    int64_t now = 1700000000000;
    keel_webhook_dedup_config cfg;
    cfg_with_clock(&cfg, &now);
    cfg.retention_ms = 1000;
    keel_webhook_dedup *d = NULL;
    ASSERT_OK(keel_webhook_dedup_memory_create(&d, &cfg));
    assert_int_equal(1, first(d, "evt_1"));
    now += 500;
    assert_int_equal(1, first(d, "evt_2"));
    now += 499; /* evt_1 is 999 ms old */
    assert_int_equal(0, first(d, "evt_1"));
    now += 1; /* 1000 ms: expired */
    assert_int_equal(1, first(d, "evt_1"));
    assert_int_equal(0, first(d, "evt_2"));
    now += 500; /* evt_2 expires; evt_1 (re-recorded 500 ms ago) lives */
    assert_int_equal(0, first(d, "evt_1"));
    assert_int_equal(1, first(d, "evt_2"));

    /* purge counts the expired ones. */
    assert_int_equal(1, first(d, "evt_3"));
    now += 10000;
    uint64_t removed = 99;
    ASSERT_OK(keel_webhook_dedup_purge(d, &removed, NULL));
    assert_int_equal(3, removed);
    ASSERT_OK(keel_webhook_dedup_purge(d, &removed, NULL));
    assert_int_equal(0, removed);
    assert_int_equal(1, first(d, "evt_1"));

    /* A clock that went backwards: the stored record is newer than now, still a duplicate. */
    now -= 5000;
    assert_int_equal(0, first(d, "evt_1"));
    keel_webhook_dedup_destroy(d);
}

static void test_memory_bound(void **state)
{
    (void)state;
    int64_t now = 1000;
    keel_webhook_dedup_config cfg;
    cfg_with_clock(&cfg, &now);
    cfg.max_entries = 4;
    keel_webhook_dedup *d = NULL;
    ASSERT_OK(keel_webhook_dedup_memory_create(&d, &cfg));
    const char *ids[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(1, first(d, ids[i]));
        now++;
    }
    /* "a" (the oldest) was forgotten to make room for "e". */
    assert_int_equal(0, first(d, "e"));
    assert_int_equal(0, first(d, "b"));
    assert_int_equal(1, first(d, "a")); /* evicts "b" */
    assert_int_equal(1, first(d, "b")); /* evicts "c" */
    assert_int_equal(0, first(d, "d"));
    /* Forgotten slots are reused once they reach the head. */
    ASSERT_OK(keel_webhook_dedup_forget(d, "d", NULL));
    for (int i = 0; i < 50; i++) {
        char id[16];
        snprintf(id, sizeof(id), "x%d", i);
        assert_int_equal(1, first(d, id));
    }
    assert_int_equal(0, first(d, "x49"));
    assert_int_equal(0, first(d, "x46"));
    assert_int_equal(1, first(d, "x45"));
    keel_webhook_dedup_destroy(d);

    /* Many ids through a small table, colliding in its buckets. */
    cfg.max_entries = 100;
    ASSERT_OK(keel_webhook_dedup_memory_create(&d, &cfg));
    for (int i = 0; i < 1000; i++) {
        char id[16];
        snprintf(id, sizeof(id), "evt_%d", i);
        assert_int_equal(1, first(d, id));
        if (i % 7 == 0)
            ASSERT_OK(keel_webhook_dedup_forget(d, id, NULL));
    }
    for (int i = 901; i < 1000; i++) {
        char id[16];
        snprintf(id, sizeof(id), "evt_%d", i);
        assert_int_equal(i % 7 == 0 ? 1 : 0, first(d, id));
    }
    keel_webhook_dedup_destroy(d);
}

static void test_memory_oom(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    int ok = 0;
    for (int n = 0; n < 20 && !ok; n++) {
        keel_test_failalloc_arm(n);
        keel_webhook_dedup_config cfg;
        keel_webhook_dedup_config_default(&cfg);
        cfg.max_entries = 8;
        keel_webhook_dedup *d = NULL;
        keel_err e = keel_webhook_dedup_memory_create(&d, &cfg);
        if (e != KEEL_OK) {
            assert_int_equal(KEEL_ENOMEM, e);
            assert_null(d);
            continue;
        }
        int r = keel_webhook_is_first_delivery(d, "evt_1", NULL);
        if (r == KEEL_ENOMEM) {
            keel_test_failalloc_arm(-1);
            assert_int_equal(1, keel_webhook_is_first_delivery(d, "evt_1", NULL));
        } else {
            assert_int_equal(1, r);
            ok = 1;
        }
        keel_test_failalloc_arm(-1);
        assert_int_equal(0, keel_webhook_is_first_delivery(d, "evt_1", NULL));
        keel_webhook_dedup_destroy(d);
    }
    keel_test_failalloc_arm(-1);
    assert_true(ok);
    keel_test_failalloc_remove();
}

/* ------------------------------------------------------------------ custom -- */

typedef struct custom {
    int calls;
    int destroyed;
    int64_t last_now;
    uint64_t last_ttl;
} custom;

static int c_is_first(void *self, const char *id, size_t len, int64_t now, uint64_t ttl,
                      keel_diag *diag)
{
    (void)id;
    (void)len;
    (void)diag;
    custom *c = self;
    c->last_now = now;
    c->last_ttl = ttl;
    return c->calls++ == 0 ? 1 : 0;
}
static keel_err c_forget(void *self, const char *id, size_t len, keel_diag *diag)
{
    (void)id;
    (void)len;
    (void)diag;
    ((custom *)self)->calls = 0;
    return KEEL_OK;
}
static keel_err c_purge(void *self, int64_t now, uint64_t *removed, keel_diag *diag)
{
    (void)self;
    (void)diag;
    *removed = (uint64_t)now;
    return KEEL_OK;
}
static void c_destroy(void *self)
{
    ((custom *)self)->destroyed++;
}

static void test_custom_backend(void **state)
{
    (void)state;
    static const keel_webhook_dedup_ops ops = {c_is_first, c_forget, c_purge, c_destroy};
    custom c = {0, 0, 0, 0};
    int64_t now = 4242;
    keel_webhook_dedup_config cfg;
    cfg_with_clock(&cfg, &now);
    cfg.retention_ms = 777;
    keel_webhook_dedup *d = NULL;
    ASSERT_OK(keel_webhook_dedup_create(&d, &ops, &c, &cfg));
    assert_int_equal(1, first(d, "evt_1"));
    assert_int_equal(4242, c.last_now);
    assert_int_equal(777, c.last_ttl);
    assert_int_equal(0, first(d, "evt_1"));
    ASSERT_OK(keel_webhook_dedup_forget(d, "evt_1", NULL));
    assert_int_equal(1, first(d, "evt_1"));
    uint64_t removed = 0;
    ASSERT_OK(keel_webhook_dedup_purge(d, &removed, NULL));
    assert_int_equal(4242, removed);
    keel_webhook_dedup_destroy(d);
    assert_int_equal(1, c.destroyed);

    /* A failed create still disposes of self. */
    keel_webhook_dedup_ops half = ops;
    half.forget = NULL;
    assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_create(&d, &half, &c, &cfg));
    assert_null(d);
    assert_int_equal(2, c.destroyed); /* half.destroy is c_destroy: called */
    cfg.retention_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_create(&d, &ops, &c, &cfg));
    assert_int_equal(3, c.destroyed);
}

/* --------------------------------------------------------------------- SQL -- */

static keel_store *open_url(const char *url)
{
    keel_store_config sc;
    keel_store_config_default(&sc);
    sc.url = url;
    keel_store *s = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_store_open(&s, &sc, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "open %s: %s\n", url, d.msg);
    assert_int_equal(KEEL_OK, e);
    return s;
}

static keel_webhook_dedup *sql_dedup(keel_store *s, keel_webhook_dedup_config *cfg)
{
    keel_webhook_dedup *d = NULL;
    keel_diag diag = {KEEL_OK, 0, ""};
    keel_err e = keel_webhook_dedup_sql_create(&d, s, cfg, &diag);
    if (e != KEEL_OK)
        fprintf(stderr, "sql_create: %s\n", diag.msg);
    assert_int_equal(KEEL_OK, e);
    return d;
}

static void exec_id(keel_store *s, const char *sql, const char *id)
{
    keel_db *db = NULL;
    keel_stmt *st = NULL;
    ASSERT_OK(keel_db_acquire(s, &db, NULL));
    ASSERT_OK(keel_db_prepare(db, sql, &st, NULL));
    ASSERT_OK(keel_stmt_bind_text(st, 1, id, SIZE_MAX));
    assert_int_equal(0, keel_stmt_step(st, NULL));
    assert_int_equal(1, keel_stmt_changes(st));
    keel_db_release(db);
}

static int64_t count_id(keel_store *s, const char *id)
{
    keel_db *db = NULL;
    keel_stmt *st = NULL;
    ASSERT_OK(keel_db_acquire(s, &db, NULL));
    ASSERT_OK(keel_db_prepare(db, "SELECT COUNT(*) FROM keel_webhook_events WHERE event_id = ?",
                              &st, NULL));
    ASSERT_OK(keel_stmt_bind_text(st, 1, id, SIZE_MAX));
    assert_int_equal(1, keel_stmt_step(st, NULL));
    int64_t n = keel_stmt_int64(st, 0);
    keel_db_release(db);
    return n;
}

/* Everything the SQL backend must do, on whichever engine s is. */
static void sql_suite(keel_store *s, const char *tag)
{
    keel_webhook_dedup_config cfg;
    keel_webhook_dedup_config_default(&cfg);
    keel_webhook_dedup *d = sql_dedup(s, &cfg);
    keel_webhook_dedup *d2 = sql_dedup(s, &cfg); /* the migration is idempotent */
    common_checks(d, tag);
    /* Two handles on one database share the records. */
    char id[96];
    snprintf(id, sizeof(id), "evt_shared_%s_%s", tag, uniq);
    assert_int_equal(1, first(d, id));
    assert_int_equal(0, first(d2, id));
    assert_int_equal(1, count_id(s, id));
    /* A row whose expiry is in the past is taken over. */
    exec_id(s, "UPDATE keel_webhook_events SET expires_at_ms = 1 WHERE event_id = ?", id);
    assert_int_equal(1, first(d2, id));
    assert_int_equal(0, first(d, id));
    race_check(d, tag);
    keel_webhook_dedup_destroy(d2);
    keel_webhook_dedup_destroy(d);

    /* Injected clock: expiry at exactly retention_ms, and purge. */
    int64_t now = 1000000;
    cfg_with_clock(&cfg, &now);
    cfg.retention_ms = 1000;
    d = sql_dedup(s, &cfg);
    char e1[96], e2[96];
    snprintf(e1, sizeof(e1), "evt_clock1_%s_%s", tag, uniq);
    snprintf(e2, sizeof(e2), "evt_clock2_%s_%s", tag, uniq);
    assert_int_equal(1, first(d, e1));
    now += 999;
    assert_int_equal(0, first(d, e1));
    assert_int_equal(1, first(d, e2));
    now += 1;
    assert_int_equal(1, first(d, e1)); /* expired at 1000 ms */
    assert_int_equal(0, first(d, e2));
    now += 5000;
    uint64_t removed = 0;
    ASSERT_OK(keel_webhook_dedup_purge(d, &removed, NULL));
    assert_true(removed >= 2); /* other runs' rows with fake clocks may go too */
    assert_int_equal(0, count_id(s, e1));
    assert_int_equal(0, count_id(s, e2));
    assert_int_equal(1, first(d, e1));
    keel_webhook_dedup_destroy(d);

    keel_diag diag;
    keel_webhook_dedup *bad = NULL;
    cfg.retention_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_sql_create(&bad, s, &cfg, &diag));
    cfg.retention_ms = 1;
    assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_sql_create(&bad, NULL, &cfg, &diag));
    assert_null(bad);
}

static void test_sqlite(void **state)
{
    (void)state;
    char path[512], url[600];
    snprintf(path, sizeof(path), "%s/webhook_dedup_%ld.db", KEEL_TEST_TMP, (long)getpid());
    unlink(path);
    snprintf(url, sizeof(url), "sqlite:%s", path);
    keel_store *s = open_url(url);
    sql_suite(s, "sqlite");
    keel_store_close(s);
    /* The table survives a reopen: records are durable. */
    s = open_url(url);
    keel_webhook_dedup_config cfg;
    keel_webhook_dedup_config_default(&cfg);
    keel_webhook_dedup *d = sql_dedup(s, &cfg);
    char id[96];
    snprintf(id, sizeof(id), "evt_shared_sqlite_%s", uniq);
    assert_int_equal(0, first(d, id));
    keel_webhook_dedup_destroy(d);
    keel_store_close(s);
    char aux[640];
    unlink(path);
    snprintf(aux, sizeof(aux), "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof(aux), "%s-shm", path);
    unlink(aux);
}

static void test_postgres(void **state)
{
    (void)state;
    if (pg_dsn == NULL) {
        fprintf(stderr, "KEEL_TEST_PG_DSN not set: skipping\n");
        skip();
    }
    keel_store *s = open_url(pg_dsn);
    sql_suite(s, "pg");
    keel_store_close(s);
}

/* ------------------------------------------------------------------- Redis -- */

static void test_redis(void **state)
{
    (void)state;
    if (redis_url == NULL) {
        fprintf(stderr, "KEEL_TEST_REDIS_URL not set: skipping\n");
        skip();
    }
    keel_redis_config rc;
    keel_redis_config_default(&rc);
    rc.url = redis_url;
    keel_redis *r = NULL;
    keel_diag diag = {KEEL_OK, 0, ""};
    keel_err e = keel_redis_open(&r, &rc, &diag);
    if (e != KEEL_OK)
        fprintf(stderr, "redis: %s\n", diag.msg);
    assert_int_equal(KEEL_OK, e);

    char prefix[96];
    snprintf(prefix, sizeof(prefix), "keeltest:webhook:%s:", uniq);
    keel_webhook_dedup_config cfg;
    keel_webhook_dedup_config_default(&cfg);
    cfg.redis_prefix = prefix;
    cfg.retention_ms = 60000;
    keel_webhook_dedup *d = NULL;
    ASSERT_OK(keel_webhook_dedup_redis_create(&d, r, &cfg));
    common_checks(d, "redis");
    race_check(d, "redis");

    /* The key carries the prefix and a PX expiry of retention_ms. */
    assert_int_equal(1, first(d, "evt_ttl"));
    char key[160];
    snprintf(key, sizeof(key), "%sevt_ttl", prefix);
    const char *argv[] = {"PTTL", key};
    keel_redis_reply *rep = NULL;
    ASSERT_OK(keel_redis_cmd(r, &rep, 2, argv, NULL, NULL));
    int64_t pttl = keel_redis_reply_int(rep);
    keel_redis_reply_free(rep);
    assert_true(pttl > 0 && pttl <= 60000);
    /* Expired by Redis (simulated by deleting the key): first again. */
    const char *del[] = {"DEL", key};
    ASSERT_OK(keel_redis_cmd(r, &rep, 2, del, NULL, NULL));
    assert_int_equal(1, keel_redis_reply_int(rep));
    keel_redis_reply_free(rep);
    assert_int_equal(1, first(d, "evt_ttl"));
    uint64_t removed = 9;
    ASSERT_OK(keel_webhook_dedup_purge(d, &removed, NULL));
    assert_int_equal(0, removed);
    keel_webhook_dedup_destroy(d);

    /* Default prefix, and a prefix that is too long. */
    keel_webhook_dedup_config_default(&cfg);
    assert_string_equal("keel:webhook:", cfg.redis_prefix);
    char longp[200];
    memset(longp, 'p', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    cfg.redis_prefix = longp;
    assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_redis_create(&d, r, &cfg));
    assert_int_equal(KEEL_EINVAL, keel_webhook_dedup_redis_create(&d, NULL, &cfg));

    keel_redis_close(r); /* this run's keys expire after retention_ms (60 s) */
}

int main(void)
{
    pg_dsn = getenv("KEEL_TEST_PG_DSN");
    if (pg_dsn != NULL && pg_dsn[0] == '\0')
        pg_dsn = NULL;
    redis_url = getenv("KEEL_TEST_REDIS_URL");
    if (redis_url != NULL && redis_url[0] == '\0')
        redis_url = NULL;
    signal(SIGPIPE, SIG_IGN);
    snprintf(uniq, sizeof(uniq), "%ld_%ld", (long)getpid(), (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_basic),  cmocka_unit_test(test_memory_expiry),
        cmocka_unit_test(test_memory_bound),  cmocka_unit_test(test_memory_oom),
        cmocka_unit_test(test_custom_backend), cmocka_unit_test(test_sqlite),
        cmocka_unit_test(test_postgres),      cmocka_unit_test(test_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
