/* Tests for src/pay/velocity.c: the in-memory tracker (exact sliding-window boundaries,
 * peeking, per-key caps, LRU and expiry eviction, threads, allocation failures) and the Redis
 * tracker against the throwaway Redis of scripts/test-services.sh (KEEL_TEST_REDIS_URL): the
 * same semantics, key prefix and expiry, two instances sharing one count, the server clock,
 * and a velocity rule enforced across two engines.  The memory tests always run; the file
 * then exits 77 (skipped) when KEEL_TEST_REDIS_URL is unset. */
#define _GNU_SOURCE 1
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keel/fraud.h>
#include <keel/policy.h>
#include <keel/redis.h>

static keel_velocity *memory(keel_manual_clock *mc, size_t max_keys, size_t max_events)
{
    keel_velocity_memory_config c;
    keel_velocity_memory_config_default(&c);
    c.clock = mc != NULL ? &mc->clock : NULL;
    if (max_keys)
        c.max_keys = max_keys;
    if (max_events)
        c.max_events = max_events;
    keel_velocity *v = NULL;
    ASSERT_OK(keel_velocity_memory_create(&v, &c, NULL));
    return v;
}

static uint64_t hit(keel_velocity *v, const char *key, uint64_t window)
{
    uint64_t n = 99;
    ASSERT_OK(keel_velocity_hit(v, keel_str_c(key), window, &n));
    return n;
}

static uint64_t peek(keel_velocity *v, const char *key, uint64_t window)
{
    uint64_t n = 99;
    ASSERT_OK(keel_velocity_count(v, keel_str_c(key), window, &n));
    return n;
}

/* The sliding-window contract both trackers share. */
static void window_semantics(keel_velocity *v, keel_manual_clock *mc, const char *key)
{
    mc->now = 1000;
    assert_int_equal(0, peek(v, key, 500));
    assert_int_equal(1, hit(v, key, 500));
    mc->now = 1200;
    assert_int_equal(2, hit(v, key, 500));
    assert_int_equal(2, peek(v, key, 500)); /* peeking records nothing */
    mc->now = 1499;                         /* 1000 is still inside (1499 - 500, 1499] */
    assert_int_equal(2, peek(v, key, 500));
    mc->now = 1500; /* 1000 <= 1500 - 500: expired */
    assert_int_equal(1, peek(v, key, 500));
    assert_int_equal(2, hit(v, key, 500));
    mc->now = 1700; /* 1200 expired; 1500 stays */
    assert_int_equal(1, peek(v, key, 500));
    mc->now = 5000;
    assert_int_equal(0, peek(v, key, 500));
    assert_int_equal(1, hit(v, key, 500));
}

/* ---------------------------------------------------------------- memory -- */

static void test_memory_window(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_velocity *v = memory(&mc, 0, 0);
    window_semantics(v, &mc, "user:1");
    /* Keys are independent and binary-safe by length. */
    assert_int_equal(1, hit(v, "user:2", 500));
    uint64_t n = 0;
    ASSERT_OK(keel_velocity_hit(v, (keel_str){"user:2\0x", 8}, 500, &n));
    assert_int_equal(1, n);
    assert_int_equal(2, hit(v, "user:2", 500));
    assert_int_equal(3, keel_velocity_memory_keys(v));
    keel_velocity_destroy(v);
}

static void test_memory_events_cap(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 100);
    keel_velocity *v = memory(&mc, 0, 3);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal((uint64_t)i, hit(v, "k", 10000));
        mc.now++;
    }
    assert_int_equal(3, hit(v, "k", 10000)); /* saturates at max_events */
    assert_int_equal(3, hit(v, "k", 10000));
    /* The oldest were dropped: the log holds t=102, 103, 103. */
    mc.now = 102 + 10000; /* t=102 expires */
    assert_int_equal(2, peek(v, "k", 10000));
    mc.now = 103 + 10000;
    assert_int_equal(0, peek(v, "k", 10000));
    keel_velocity_destroy(v);
}

static void test_memory_eviction(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_velocity *v = memory(&mc, 2, 0);
    hit(v, "a", 1000);
    hit(v, "b", 1000);
    hit(v, "a", 1000); /* a is now the most recently used */
    hit(v, "c", 1000); /* full: b, the least recently used, goes */
    assert_int_equal(2, keel_velocity_memory_keys(v));
    assert_int_equal(0, peek(v, "b", 1000));
    assert_int_equal(2, peek(v, "a", 1000));
    assert_int_equal(1, peek(v, "c", 1000));
    keel_velocity_destroy(v);

    /* Keys whose events all expired are dropped as other keys are hit. */
    v = memory(&mc, 100, 0);
    mc.now = 0;
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof(k), "k%d", i);
        hit(v, k, 100);
    }
    assert_int_equal(10, keel_velocity_memory_keys(v));
    mc.now = 1000;
    for (int i = 0; i < 6; i++)
        hit(v, "live", 100);
    assert_int_equal(1, keel_velocity_memory_keys(v)); /* two evictions per hit */
    assert_int_equal(6, peek(v, "live", 100));
    keel_velocity_destroy(v);
}

static void test_memory_args(void **state)
{
    (void)state;
    keel_velocity *v = memory(NULL, 0, 0); /* system clock */
    uint64_t n = 7;
    assert_int_equal(KEEL_EINVAL, keel_velocity_hit(v, KEEL_STR_LIT(""), 100, &n));
    assert_int_equal(0, n);
    assert_int_equal(KEEL_EINVAL, keel_velocity_hit(v, KEEL_STR_LIT("k"), 0, &n));
    assert_int_equal(KEEL_EINVAL, keel_velocity_hit(v, KEEL_STR_LIT("k"), 100, NULL));
    assert_int_equal(KEEL_EINVAL, keel_velocity_hit(NULL, KEEL_STR_LIT("k"), 100, &n));
    char big[KEEL_VELOCITY_KEY_MAX + 1];
    memset(big, 'k', sizeof(big));
    assert_int_equal(KEEL_EINVAL, keel_velocity_hit(v, (keel_str){big, sizeof(big)}, 100, &n));
    ASSERT_OK(keel_velocity_hit(v, (keel_str){big, sizeof(big) - 1}, 100, &n));
    assert_int_equal(1, n);
    assert_int_equal(1, hit(v, "real-clock", 3600000));
    keel_velocity_destroy(v);
    keel_velocity_destroy(NULL);

    keel_velocity_memory_config c;
    keel_diag d;
    keel_velocity *bad = NULL;
    keel_velocity_memory_config_default(&c);
    assert_int_equal(100000, c.max_keys);
    assert_int_equal(1000, c.max_events);
    c.max_keys = 0;
    assert_int_equal(KEEL_EINVAL, keel_velocity_memory_create(&bad, &c, &d));
    assert_non_null(strstr(d.msg, "max_keys"));
    keel_velocity_memory_config_default(&c);
    c.max_events = 0;
    assert_int_equal(KEEL_EINVAL, keel_velocity_memory_create(&bad, &c, &d));
    assert_non_null(strstr(d.msg, "max_events"));
    c.size = 0;
    assert_int_equal(KEEL_EINVAL, keel_velocity_memory_create(&bad, &c, &d));
    assert_non_null(strstr(d.msg, "size"));
    assert_null(bad);
    assert_int_equal(0, keel_velocity_memory_keys(NULL));
}

#define THREADS 4
#define HITS 500

static void *hammer(void *arg)
{
    keel_velocity *v = arg;
    for (int i = 0; i < HITS; i++) {
        uint64_t n;
        char k[16];
        snprintf(k, sizeof(k), "t%d", i % 3);
        if (keel_velocity_hit(v, keel_str_c(k), 3600000, &n) != KEEL_OK)
            return (void *)1;
        if (keel_velocity_hit(v, KEEL_STR_LIT("shared"), 3600000, &n) != KEEL_OK)
            return (void *)1;
    }
    return NULL;
}

static void run_threads(keel_velocity *v)
{
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(0, pthread_create(&th[i], NULL, hammer, v));
    for (int i = 0; i < THREADS; i++) {
        void *rv = NULL;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
}

static void test_memory_threads(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 10);
    keel_velocity *v = memory(&mc, 0, 100000);
    run_threads(v);
    assert_int_equal(THREADS * HITS, peek(v, "shared", 3600000));
    keel_velocity_destroy(v);
}

static void test_memory_oom(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    for (int n = 0; n < 30; n++) {
        keel_test_failalloc_install();
        keel_test_failalloc_arm(n);
        keel_velocity_memory_config c;
        keel_velocity_memory_config_default(&c);
        c.clock = &mc.clock;
        keel_velocity *v = NULL;
        keel_err e = keel_velocity_memory_create(&v, &c, NULL);
        if (e == KEEL_OK) {
            for (int i = 0; i < 80; i++) {
                char k[16];
                uint64_t cnt = 0;
                snprintf(k, sizeof(k), "k%d", i % 70);
                e = keel_velocity_hit(v, keel_str_c(k), 1000, &cnt);
                assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
            }
            keel_velocity_destroy(v);
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
        }
        keel_test_failalloc_remove();
    }
}

/* ------------------------------------------------------------------- Redis -- */

static const char *redis_url;
static char prefix[96];
static keel_redis *pool;

static int redis_setup(void **state)
{
    (void)state;
    keel_redis_config c;
    keel_redis_config_default(&c);
    c.url = redis_url;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_redis_open(&pool, &c, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "redis open: %s\n", d.msg);
    return e == KEEL_OK ? 0 : -1;
}

static int redis_teardown(void **state)
{
    (void)state;
    keel_redis_close(pool);
    pool = NULL;
    return 0;
}

static keel_velocity *redis_tracker(const char *sub, keel_manual_clock *mc, size_t max_events)
{
    char p[160];
    snprintf(p, sizeof(p), "%s%s:", prefix, sub);
    keel_velocity_redis_config c;
    keel_velocity_redis_config_default(&c);
    c.redis = pool;
    c.prefix = p; /* copied */
    c.clock = mc != NULL ? &mc->clock : NULL;
    if (max_events)
        c.max_events = max_events;
    keel_velocity *v = NULL;
    keel_diag d;
    keel_err e = keel_velocity_redis_create(&v, &c, &d);
    if (e != KEEL_OK)
        fail_msg("redis tracker: %s", d.msg);
    return v;
}

static int64_t redis_int(const char *cmd, const char *key)
{
    const char *argv[] = {cmd, key};
    keel_redis_reply *rep = NULL;
    ASSERT_OK(keel_redis_cmd(pool, &rep, 2, argv, NULL, NULL));
    int64_t v = keel_redis_reply_int(rep);
    keel_redis_reply_free(rep);
    return v;
}

static void test_redis_window(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_velocity *v = redis_tracker("window", &mc, 0);
    window_semantics(v, &mc, "user:1");
    char k[256];
    snprintf(k, sizeof(k), "%swindow:user:1", prefix);
    /* One sorted set per key, under the prefix, expiring with the window. */
    assert_int_equal(1, redis_int("EXISTS", k));
    assert_int_equal(1, redis_int("ZCARD", k));
    int64_t ttl = redis_int("PTTL", k);
    assert_true(ttl > 0 && ttl <= 500);
    uint64_t n;
    assert_int_equal(KEEL_EINVAL, keel_velocity_hit(v, (keel_str){"a\0b", 3}, 500, &n));
    keel_velocity_destroy(v);
}

static void test_redis_shared_between_instances(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1700000000000ull); /* epoch-sized times stay exact */
    keel_velocity *a = redis_tracker("shared", &mc, 0);
    keel_velocity *b = redis_tracker("shared", &mc, 0);
    assert_int_equal(1, hit(a, "card:f00d", 60000));
    assert_int_equal(2, hit(b, "card:f00d", 60000));
    mc.now += 10;
    assert_int_equal(3, hit(a, "card:f00d", 60000));
    assert_int_equal(3, peek(b, "card:f00d", 60000));
    mc.now += 60000 - 10; /* the first two leave the window */
    assert_int_equal(1, peek(a, "card:f00d", 60000));
    /* Another prefix is another namespace. */
    keel_velocity *c = redis_tracker("other", &mc, 0);
    assert_int_equal(0, peek(c, "card:f00d", 60000));
    keel_velocity_destroy(a);
    keel_velocity_destroy(b);
    keel_velocity_destroy(c);
}

static void test_redis_server_clock_and_cap(void **state)
{
    (void)state;
    keel_velocity *v = redis_tracker("srvclock", NULL, 3);
    /* The server's clock; an hour-long window cannot expire during the test. */
    for (uint64_t i = 1; i <= 3; i++)
        assert_int_equal(i, hit(v, "ip:198.51.100.1", 3600000));
    assert_int_equal(3, hit(v, "ip:198.51.100.1", 3600000)); /* capped at max_events */
    assert_int_equal(3, peek(v, "ip:198.51.100.1", 3600000));
    keel_velocity_destroy(v);
}

static void test_redis_threads(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1000);
    keel_velocity *v = redis_tracker("threads", &mc, 100000);
    run_threads(v);
    assert_int_equal(THREADS * HITS, peek(v, "shared", 3600000));
    keel_velocity_destroy(v);
}

static void test_redis_config_errors(void **state)
{
    (void)state;
    keel_velocity_redis_config c;
    keel_velocity *v = NULL;
    keel_diag d;
    keel_velocity_redis_config_default(&c);
    assert_string_equal("keel:velocity:", c.prefix);
    assert_int_equal(1000, c.max_events);
    assert_int_equal(KEEL_EINVAL, keel_velocity_redis_create(&v, &c, &d));
    assert_non_null(strstr(d.msg, "redis"));
    c.redis = pool;
    c.max_events = 0;
    assert_int_equal(KEEL_EINVAL, keel_velocity_redis_create(&v, &c, &d));
    assert_non_null(strstr(d.msg, "max_events"));
    c.max_events = 10;
    char longp[200];
    memset(longp, 'p', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    c.prefix = longp;
    assert_int_equal(KEEL_EINVAL, keel_velocity_redis_create(&v, &c, &d));
    assert_non_null(strstr(d.msg, "prefix"));
    assert_int_equal(KEEL_EINVAL, keel_velocity_redis_create(&v, NULL, &d));
    assert_null(v);
}

/* Two keeld instances, two engines, one Redis: the limit holds across them. */
static void test_redis_rule_across_engines(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1700000000000ull);
    keel_velocity *ta = redis_tracker("engines", &mc, 0);
    keel_velocity *tb = redis_tracker("engines", &mc, 0);
    keel_fraud_engine *ea = NULL, *eb = NULL;
    ASSERT_OK(keel_fraud_engine_create(&ea, NULL, NULL));
    ASSERT_OK(keel_fraud_engine_create(&eb, NULL, NULL));
    keel_fraud_velocity_config vc;
    keel_fraud_velocity_config_default(&vc);
    vc.key = KEEL_FRAUD_KEY_CARD_FINGERPRINT;
    vc.max_count = 3;
    vc.tracker = ta;
    ASSERT_OK(keel_fraud_add_velocity(ea, "card_hourly", &vc, NULL));
    vc.tracker = tb;
    ASSERT_OK(keel_fraud_add_velocity(eb, "card_hourly", &vc, NULL));
    keel_fraud_context cx;
    memset(&cx, 0, sizeof(cx));
    cx.card_fingerprint = "8ec2e23bb8316b60";
    keel_fraud_result r;
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(keel_fraud_evaluate(i % 2 ? eb : ea, &cx, &r));
        assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    }
    ASSERT_OK(keel_fraud_evaluate(eb, &cx, &r));
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    assert_string_equal("card_hourly", r.blocked_by);
    keel_fraud_engine_destroy(ea);
    keel_fraud_engine_destroy(eb);
    keel_velocity_destroy(ta);
    keel_velocity_destroy(tb);
}

int main(void)
{
    const struct CMUnitTest memory_tests[] = {
        cmocka_unit_test(test_memory_window),   cmocka_unit_test(test_memory_events_cap),
        cmocka_unit_test(test_memory_eviction), cmocka_unit_test(test_memory_args),
        cmocka_unit_test(test_memory_threads),  cmocka_unit_test(test_memory_oom),
    };
    int failed = cmocka_run_group_tests_name("velocity_memory", memory_tests, NULL, NULL);
    if (failed != 0)
        return failed;
    redis_url = getenv("KEEL_TEST_REDIS_URL");
    if (redis_url == NULL || redis_url[0] == '\0') {
        fprintf(stderr, "KEEL_TEST_REDIS_URL not set: Redis tracker tests skipped\n");
        return 77;
    }
    snprintf(prefix, sizeof(prefix), "keeltest:velocity:%ld:%ld:", (long)getpid(),
             (long)time(NULL));
    const struct CMUnitTest redis_tests[] = {
        cmocka_unit_test(test_redis_window),
        cmocka_unit_test(test_redis_shared_between_instances),
        cmocka_unit_test(test_redis_server_clock_and_cap),
        cmocka_unit_test(test_redis_threads),
        cmocka_unit_test(test_redis_config_errors),
        cmocka_unit_test(test_redis_rule_across_engines),
    };
    return cmocka_run_group_tests_name("velocity_redis", redis_tests, redis_setup,
                                       redis_teardown);
}
