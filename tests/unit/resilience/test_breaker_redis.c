/* Tests for src/resilience/breaker_redis.c against the throwaway Redis of
 * scripts/test-services.sh (KEEL_TEST_REDIS_URL; exit 77 when unset): a Redis breaker makes
 * exactly the decisions of the in-memory breaker for the same sequence; two instances (and
 * two processes) sharing a key see one breaker - failures on A open B, exactly the permitted
 * number of half-open probes pass across both, a success closes both, forced-open on one is
 * seen by the other, listeners fire on both; the cache delays what another instance sees by
 * at most refresh_ms; an unreachable or broken Redis falls back to the local breaker and
 * recovers; bad configuration is refused naming the field.  Time comes from the now_ms
 * arguments (KEEL_BREAKER_TIME_CLIENT), so every result is exact. */
#include "keel_int.h"

#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <keel/breaker.h>
#include <keel/metrics.h>
#include <keel/redis.h>

static const char *redis_url;
static char run_prefix[96];

#define T0 1700000000000ull

static void key_for(char *out, size_t n, const char *test)
{
    snprintf(out, n, "%s{%s}", run_prefix, test);
}

/* ------------------------------------------------------------ listeners -- */

typedef struct ev_log {
    keel_breaker_state from[32], to[32];
    int n;
} ev_log;

static void on_change(keel_breaker *b, const char *name, keel_breaker_state from,
                      keel_breaker_state to, void *ud)
{
    (void)b;
    (void)name;
    ev_log *l = ud;
    if (l->n < 32) {
        l->from[l->n] = from;
        l->to[l->n] = to;
    }
    l->n++;
}

static void expect_ev(const ev_log *l, int i, keel_breaker_state from, keel_breaker_state to)
{
    assert_true(i < l->n);
    assert_int_equal(from, l->from[i]);
    assert_int_equal(to, l->to[i]);
}

static keel_breaker *make(keel_breaker_config *c, keel_redis *r, const char *key,
                          uint32_t refresh_ms, ev_log *log)
{
    keel_breaker_listener li = {on_change, log};
    if (log != NULL) {
        c->listeners = &li;
        c->nlisteners = 1;
    } else {
        c->listeners = NULL;
        c->nlisteners = 0;
    }
    keel_breaker_redis_config rc;
    keel_breaker_redis_config_default(&rc);
    rc.redis = r;
    rc.key = key;
    rc.time = KEEL_BREAKER_TIME_CLIENT;
    rc.refresh_ms = refresh_ms;
    keel_breaker *b = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_breaker_redis_create(&b, c, &rc, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "breaker: %s\n", d.msg);
    assert_int_equal(KEEL_OK, e);
    c->listeners = NULL;
    c->nlisteners = 0;
    return b;
}

static void small_config(keel_breaker_config *c)
{
    keel_breaker_config_default(c);
    c->name = "pay";
    c->sliding_window_size = 4;
    c->minimum_number_of_calls = 4;
    c->failure_rate_threshold = 50;
    c->wait_duration_in_open_ms = 1000;
    c->permitted_calls_in_half_open = 2;
}

/* allow + record one outcome */
static void call(keel_breaker *b, keel_breaker_outcome oc, uint64_t now)
{
    ASSERT_OK(keel_breaker_allow(b, now, NULL));
    ASSERT_OK(keel_breaker_record(b, oc, 1, now));
}

/* ------------------------------------------------------- two instances -- */

static void test_two_instances_one_breaker(void **state)
{
    (void)state;
    keel_redis *ra = keel_test_redis_open(redis_url, 4), *rb = keel_test_redis_open(redis_url, 4);
    char key[160];
    key_for(key, sizeof(key), "two");
    keel_breaker_config c;
    small_config(&c);
    ev_log la = {0}, lb = {0};
    keel_breaker *a = make(&c, ra, key, 0, &la);
    keel_breaker *b = make(&c, rb, key, 0, &lb);
    uint64_t now = T0, wait = 0;

    /* three calls on A: 2 failures of 3, below minimum_number_of_calls */
    call(a, KEEL_BREAKER_FAILURE, now);
    call(a, KEEL_BREAKER_SUCCESS, now);
    call(a, KEEL_BREAKER_FAILURE, now);
    ASSERT_OK(keel_breaker_allow(b, now, NULL));
    keel_breaker_stats st;
    ASSERT_OK(keel_breaker_stats_get(b, now, &st));
    assert_int_equal(KEEL_BREAKER_CLOSED, st.state);
    assert_int_equal(3, st.calls);
    assert_int_equal(2, st.failed);
    assert_true(st.failure_rate == -1.0);
    /* the fourth outcome (B's call) reaches 2/4 = 50%: open, for both */
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 1, now));
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    now += 300;
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(a, now, &wait));
    assert_int_equal(700, wait);
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(a));
    ASSERT_OK(keel_breaker_stats_get(a, now, &st));
    assert_int_equal(KEEL_BREAKER_OPEN, st.state);
    assert_int_equal(4, st.calls);
    assert_int_equal(2, st.failed);
    assert_true(st.failure_rate == 50.0);
    assert_int_equal(1, st.not_permitted);
    /* B performed CLOSED -> OPEN, A observed it */
    assert_int_equal(1, lb.n);
    expect_ev(&lb, 0, KEEL_BREAKER_CLOSED, KEEL_BREAKER_OPEN);
    assert_int_equal(1, la.n);
    expect_ev(&la, 0, KEEL_BREAKER_CLOSED, KEEL_BREAKER_OPEN);

    /* wait over: exactly 2 probes across both instances */
    now += 700;
    ASSERT_OK(keel_breaker_allow(a, now, &wait));
    assert_int_equal(0, wait);
    ASSERT_OK(keel_breaker_allow(b, now, NULL));
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(a, now, &wait));
    assert_int_equal(0, wait);
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, now, NULL));
    assert_int_equal(KEEL_BREAKER_HALF_OPEN, keel_breaker_state_get(a));
    assert_int_equal(KEEL_BREAKER_HALF_OPEN, keel_breaker_state_get(b));
    /* one ignored probe gives its permit back, to whichever instance asks next */
    ASSERT_OK(keel_breaker_record(a, KEEL_BREAKER_IGNORED, 1, now));
    ASSERT_OK(keel_breaker_allow(b, now, NULL));
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(a, now, NULL));
    /* two successful probes close the breaker for both */
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 1, now));
    ASSERT_OK(keel_breaker_stats_get(a, now, &st));
    assert_int_equal(KEEL_BREAKER_HALF_OPEN, st.state);
    assert_int_equal(1, st.calls);
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 1, now));
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    ASSERT_OK(keel_breaker_allow(a, now, NULL));
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(a));
    ASSERT_OK(keel_breaker_stats_get(a, now, &st));
    assert_int_equal(0, st.calls); /* a fresh window */

    expect_ev(&la, 1, KEEL_BREAKER_OPEN, KEEL_BREAKER_HALF_OPEN); /* performed by A */
    expect_ev(&la, 2, KEEL_BREAKER_HALF_OPEN, KEEL_BREAKER_CLOSED); /* observed */
    assert_int_equal(3, la.n);
    expect_ev(&lb, 1, KEEL_BREAKER_OPEN, KEEL_BREAKER_HALF_OPEN); /* observed */
    expect_ev(&lb, 2, KEEL_BREAKER_HALF_OPEN, KEEL_BREAKER_CLOSED); /* performed by B */
    assert_int_equal(3, lb.n);

    /* a failing probe round reopens for both */
    for (int i = 0; i < 4; i++)
        call(i % 2 ? a : b, KEEL_BREAKER_FAILURE, now);
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(a, now, NULL));
    now += 1000;
    ASSERT_OK(keel_breaker_allow(a, now, NULL));
    ASSERT_OK(keel_breaker_allow(b, now, NULL));
    ASSERT_OK(keel_breaker_record(a, KEEL_BREAKER_FAILURE, 1, now));
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 1, now)); /* 1/2 failed: >= 50% */
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(a, now, &wait));
    assert_int_equal(1000, wait);
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(a));

    keel_breaker_destroy(a);
    keel_breaker_destroy(b);
    keel_redis_close(ra);
    keel_redis_close(rb);
}

/* Many threads on two instances race for the half-open permits: exactly the permitted
 * number get one. */
typedef struct racer {
    keel_breaker *b;
    uint64_t now;
    atomic_int *granted;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    for (int i = 0; i < 20; i++)
        if (keel_breaker_allow(r->b, r->now, NULL) == KEEL_OK)
            atomic_fetch_add(r->granted, 1);
    return NULL;
}

static void test_half_open_permits_exact_under_race(void **state)
{
    (void)state;
    keel_redis *ra = keel_test_redis_open(redis_url, 4), *rb = keel_test_redis_open(redis_url, 4);
    char key[160];
    key_for(key, sizeof(key), "race");
    keel_breaker_config c;
    small_config(&c);
    c.permitted_calls_in_half_open = 3;
    keel_breaker *a = make(&c, ra, key, 0, NULL);
    keel_breaker *b = make(&c, rb, key, 0, NULL);
    ASSERT_OK(keel_breaker_force_open(a));
    ASSERT_OK(keel_breaker_reset(a));
    for (int i = 0; i < 4; i++)
        call(a, KEEL_BREAKER_FAILURE, T0);
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, T0, NULL));
    atomic_int granted;
    atomic_init(&granted, 0);
    pthread_t th[4];
    racer rs[4];
    for (int i = 0; i < 4; i++) {
        rs[i] = (racer){i % 2 ? a : b, T0 + 1000, &granted};
        assert_int_equal(0, pthread_create(&th[i], NULL, race, &rs[i]));
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(3, atomic_load(&granted));
    keel_breaker_destroy(a);
    keel_breaker_destroy(b);
    keel_redis_close(ra);
    keel_redis_close(rb);
}

static void test_forced_open_and_disabled_shared(void **state)
{
    (void)state;
    keel_redis *ra = keel_test_redis_open(redis_url, 4), *rb = keel_test_redis_open(redis_url, 4);
    char key[160];
    key_for(key, sizeof(key), "forced");
    keel_breaker_config c;
    small_config(&c);
    ev_log la = {0}, lb = {0};
    keel_breaker *a = make(&c, ra, key, 0, &la);
    keel_breaker *b = make(&c, rb, key, 0, &lb);
    ASSERT_OK(keel_breaker_allow(b, T0, NULL));
    ASSERT_OK(keel_breaker_force_open(a));
    assert_int_equal(KEEL_BREAKER_FORCED_OPEN, keel_breaker_state_get(a));
    uint64_t wait = 99;
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, T0 + 100000, &wait));
    assert_int_equal(0, wait);
    assert_int_equal(KEEL_BREAKER_FORCED_OPEN, keel_breaker_state_get(b));
    expect_ev(&la, 0, KEEL_BREAKER_CLOSED, KEEL_BREAKER_FORCED_OPEN);
    expect_ev(&lb, 0, KEEL_BREAKER_CLOSED, KEEL_BREAKER_FORCED_OPEN);
    /* disabled via B: A lets everything through and never trips */
    ASSERT_OK(keel_breaker_disable(b));
    for (int i = 0; i < 10; i++)
        call(a, KEEL_BREAKER_FAILURE, T0 + 100000);
    assert_int_equal(KEEL_BREAKER_DISABLED, keel_breaker_state_get(a));
    keel_breaker_stats st;
    ASSERT_OK(keel_breaker_stats_get(b, T0 + 100000, &st));
    assert_int_equal(KEEL_BREAKER_DISABLED, st.state);
    assert_int_equal(0, st.calls);
    /* reset via A: CLOSED with an empty window everywhere */
    ASSERT_OK(keel_breaker_reset(a));
    ASSERT_OK(keel_breaker_allow(b, T0 + 100000, NULL));
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    assert_int_equal(3, la.n);
    expect_ev(&la, 1, KEEL_BREAKER_FORCED_OPEN, KEEL_BREAKER_DISABLED);
    expect_ev(&la, 2, KEEL_BREAKER_DISABLED, KEEL_BREAKER_CLOSED);
    assert_int_equal(3, lb.n);
    expect_ev(&lb, 1, KEEL_BREAKER_FORCED_OPEN, KEEL_BREAKER_DISABLED);
    expect_ev(&lb, 2, KEEL_BREAKER_DISABLED, KEEL_BREAKER_CLOSED);
    keel_breaker_destroy(a);
    keel_breaker_destroy(b);
    keel_redis_close(ra);
    keel_redis_close(rb);
}

/* KEEL_BREAKER_TIME_REDIS (the default): the scripts use the server's clock, so instances
 * whose own clocks are unrelated (here 5 and 10^9) still share the OPEN wait. */
static void test_redis_time(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 4);
    char key[160];
    key_for(key, sizeof(key), "rtime");
    keel_breaker_config c;
    small_config(&c);
    c.wait_duration_in_open_ms = 60000;
    keel_breaker_redis_config rc;
    keel_breaker_redis_config_default(&rc);
    rc.redis = r;
    rc.key = key;
    rc.refresh_ms = 0;
    keel_breaker *a = NULL, *b = NULL;
    ASSERT_OK(keel_breaker_redis_create(&a, &c, &rc, NULL));
    ASSERT_OK(keel_breaker_redis_create(&b, &c, &rc, NULL));
    for (int i = 0; i < 4; i++)
        call(a, KEEL_BREAKER_FAILURE, 5);
    uint64_t wait = 0;
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, 1000000000ull, &wait));
    assert_true(wait > 0 && wait <= 60000);
    assert_int_equal(0, keel_breaker_redis_errors(b));
    keel_breaker_destroy(a);
    keel_breaker_destroy(b);
    keel_redis_close(r);
}

/* --------------------------------------------------- caching and batching -- */

static int64_t redis_hget_int(keel_redis *r, const char *key, const char *field)
{
    const char *argv[] = {"HGET", key, field};
    keel_redis_reply *rep = NULL;
    ASSERT_OK(keel_redis_cmd(r, &rep, 3, argv, NULL, NULL));
    size_t len = 0;
    const char *s = keel_redis_reply_str(rep, &len);
    int64_t v = s != NULL ? strtoll(s, NULL, 10) : -1;
    keel_redis_reply_free(rep);
    return v;
}

static void test_refresh_bounds_staleness(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 4);
    char name[160], key[200];
    snprintf(name, sizeof(name), "%scache", run_prefix);
    snprintf(key, sizeof(key), "keel:cb:{%s}", name); /* the default key */
    keel_breaker_config c;
    small_config(&c);
    c.name = name;
    keel_breaker *a = make(&c, r, NULL, 100, NULL);
    keel_breaker *b = make(&c, r, NULL, 100, NULL);
    uint64_t now = T0;
    ASSERT_OK(keel_breaker_allow(b, now, NULL)); /* B reads CLOSED, cached until T0 + 100 */
    /* A: outcomes wait in a batch until refresh_ms has passed since the last round trip */
    call(a, KEEL_BREAKER_FAILURE, now);
    call(a, KEEL_BREAKER_FAILURE, now + 50);
    call(a, KEEL_BREAKER_FAILURE, now + 60);
    call(a, KEEL_BREAKER_FAILURE, now + 99);
    assert_int_equal(-1, redis_hget_int(r, key, "wt")); /* nothing written yet */
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(a));
    /* the batch goes out with the first call after refresh_ms, and opens */
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(a, now + 100, NULL));
    assert_int_equal(4, redis_hget_int(r, key, "wt"));
    assert_int_equal(4, redis_hget_int(r, key, "wf"));
    assert_int_equal(KEEL_BREAKER_OPEN, redis_hget_int(r, key, "st"));
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(a));
    /* B's cache is still fresh at T0 + 99: stale by design; at T0 + 100 it reads OPEN */
    ASSERT_OK(keel_breaker_allow(b, now + 99, NULL));
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    uint64_t wait = 0;
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, now + 100, &wait));
    assert_int_equal(1000, wait);
    /* refusals in OPEN come from the cache: no Redis call needed to refuse */
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, now + 150, &wait));
    assert_int_equal(950, wait);
    keel_breaker_destroy(a);
    keel_breaker_destroy(b);
    keel_redis_close(r);
}

/* ------------------------------------------------------------ equivalence -- */

static uint64_t rng_state;
static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

/* The same random sequence on an in-memory breaker and a Redis one (refresh 0): every
 * decision, wait, state and counter must match. */
static void equivalence(keel_breaker_window wt, uint32_t wsize, const char *tag)
{
    keel_breaker_config c;
    keel_breaker_config_default(&c);
    c.name = tag;
    c.window_type = wt;
    c.sliding_window_size = wsize;
    c.minimum_number_of_calls = 5;
    c.failure_rate_threshold = 40;
    c.slow_call_rate_threshold = 60;
    c.slow_call_duration_ms = 100;
    c.wait_duration_in_open_ms = 2000;
    c.permitted_calls_in_half_open = 3;
    keel_breaker *mem = NULL;
    ASSERT_OK(keel_breaker_create(&mem, &c, NULL));
    keel_redis *r = keel_test_redis_open(redis_url, 4);
    char key[160];
    key_for(key, sizeof(key), tag);
    keel_breaker *red = make(&c, r, key, 0, NULL);
    static const uint64_t adv[] = {0,   0,    0,    1,    10,   100,  400,
                                    999, 1000, 1500, 2000, 5000, 30000, 70000};
    uint64_t now = T0;
    rng_state = 0x9E3779B97F4A7C15ull ^ (uint64_t)wt ^ ((uint64_t)wsize << 32);
    int opened = 0, closed_again = 0;
    for (int i = 0; i < 1500; i++) {
        uint64_t x = rng();
        now += adv[(x >> 4) % (sizeof(adv) / sizeof(adv[0]))];
        unsigned what = (unsigned)((x >> 12) % 100);
        if (what < 45) {
            uint64_t wm = 7, wr = 7;
            keel_err em = keel_breaker_allow(mem, now, &wm);
            keel_err er = keel_breaker_allow(red, now, &wr);
            assert_int_equal(em, er);
            assert_int_equal(wm, wr);
        } else if (what < 97) {
            keel_breaker_outcome oc = (keel_breaker_outcome)((x >> 20) % 3);
            if ((x >> 24) % 3 != 0)
                oc = (x >> 26) % 2 ? KEEL_BREAKER_SUCCESS : KEEL_BREAKER_FAILURE;
            uint64_t dur = (x >> 30) % 4 == 0 ? 150 : 5;
            ASSERT_OK(keel_breaker_record(mem, oc, dur, now));
            ASSERT_OK(keel_breaker_record(red, oc, dur, now));
        } else if (what < 98) {
            ASSERT_OK(keel_breaker_reset(mem));
            ASSERT_OK(keel_breaker_reset(red));
        } else if (what < 99) {
            ASSERT_OK(keel_breaker_force_open(mem));
            ASSERT_OK(keel_breaker_force_open(red));
        } else {
            ASSERT_OK(keel_breaker_disable(mem));
            ASSERT_OK(keel_breaker_disable(red));
        }
        keel_breaker_stats sm, sr;
        ASSERT_OK(keel_breaker_stats_get(mem, now, &sm));
        ASSERT_OK(keel_breaker_stats_get(red, now, &sr));
        if (sm.state != sr.state || sm.calls != sr.calls || sm.failed != sr.failed ||
            sm.slow != sr.slow)
            fprintf(stderr, "%s step %d: mem %d %u/%u/%u redis %d %u/%u/%u\n", tag, i,
                    sm.state, sm.calls, sm.failed, sm.slow, sr.state, sr.calls, sr.failed,
                    sr.slow);
        assert_int_equal(sm.state, sr.state);
        assert_int_equal(sm.calls, sr.calls);
        assert_int_equal(sm.failed, sr.failed);
        assert_int_equal(sm.slow, sr.slow);
        assert_true(sm.failure_rate == sr.failure_rate);
        assert_true(sm.slow_rate == sr.slow_rate);
        assert_int_equal(sm.not_permitted, sr.not_permitted);
        assert_int_equal(sm.state, keel_breaker_state_get(red));
        if (sm.state == KEEL_BREAKER_OPEN)
            opened++;
        if (sm.state == KEEL_BREAKER_CLOSED && opened > 0)
            closed_again++;
    }
    assert_true(opened > 0 && closed_again > 0); /* the sequence visits the states */
    keel_breaker_destroy(mem);
    keel_breaker_destroy(red);
    keel_redis_close(r);
}

static void test_equivalence_count_based(void **state)
{
    (void)state;
    equivalence(KEEL_BREAKER_COUNT_BASED, 10, "eqcount");
}

static void test_equivalence_time_based(void **state)
{
    (void)state;
    equivalence(KEEL_BREAKER_TIME_BASED, 3, "eqtime");
    equivalence(KEEL_BREAKER_TIME_BASED, 120, "eqtime120"); /* gaps > 64 s: the scan path */
}

/* ----------------------------------------------------------- two processes -- */

static void sync_parent(int to_parent, int from_parent)
{
    char c = 1;
    if (write(to_parent, &c, 1) != 1 || read(from_parent, &c, 1) != 1)
        _exit(3);
}

/* Each child: 10 permitted calls, barrier, 10 failures recorded, barrier, one more allow
 * (reported).  Every allow of phase one precedes every record, so all 20 are permitted. */
static int child_run(const char *key, int to_parent, int from_parent)
{
    keel_redis_config rc;
    keel_redis_config_default(&rc);
    rc.url = redis_url;
    keel_redis *r = NULL;
    if (keel_redis_open(&r, &rc, NULL) != KEEL_OK)
        return 10;
    keel_breaker_config c;
    keel_breaker_config_default(&c);
    c.name = "fork";
    c.sliding_window_size = 20;
    c.minimum_number_of_calls = 20;
    keel_breaker_redis_config brc;
    keel_breaker_redis_config_default(&brc);
    brc.redis = r;
    brc.key = key;
    brc.time = KEEL_BREAKER_TIME_CLIENT;
    brc.refresh_ms = 0;
    keel_breaker *b = NULL;
    if (keel_breaker_redis_create(&b, &c, &brc, NULL) != KEEL_OK)
        return 11;
    for (int i = 0; i < 10; i++)
        if (keel_breaker_allow(b, T0, NULL) != KEEL_OK)
            return 12;
    sync_parent(to_parent, from_parent);
    for (int i = 0; i < 10; i++)
        if (keel_breaker_record(b, KEEL_BREAKER_FAILURE, 1, T0) != KEEL_OK)
            return 13;
    sync_parent(to_parent, from_parent);
    int rc2 = keel_breaker_allow(b, T0 + 1, NULL) == KEEL_EOPEN ? 0 : 14;
    if (keel_breaker_redis_errors(b) != 0)
        rc2 = 15;
    keel_breaker_destroy(b);
    keel_redis_close(r);
    return rc2;
}

static void test_two_processes_open_together(void **state)
{
    (void)state;
    char key[160];
    key_for(key, sizeof(key), "fork");
    int up[2][2], down[2][2];
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(0, pipe(up[i]));
        assert_int_equal(0, pipe(down[i]));
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(child_run(key, up[i][1], down[i][0]));
        close(up[i][1]);
        close(down[i][0]);
    }
    for (int phase = 0; phase < 2; phase++) {
        char ch;
        for (int i = 0; i < 2; i++)
            assert_int_equal(1, read(up[i][0], &ch, 1));
        for (int i = 0; i < 2; i++)
            assert_int_equal(1, write(down[i][1], &ch, 1));
    }
    for (int i = 0; i < 2; i++) {
        int st = 0;
        assert_int_equal(pids[i], waitpid(pids[i], &st, 0));
        assert_true(WIFEXITED(st));
        assert_int_equal(0, WEXITSTATUS(st));
        close(up[i][0]);
        close(down[i][1]);
    }
    /* the parent, a third instance, sees the same breaker */
    keel_redis *r = keel_test_redis_open(redis_url, 4);
    keel_breaker_config c;
    keel_breaker_config_default(&c);
    c.name = "fork";
    c.sliding_window_size = 20;
    c.minimum_number_of_calls = 20;
    keel_breaker *b = make(&c, r, key, 0, NULL);
    uint64_t wait = 0;
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, T0 + 1000, &wait));
    assert_int_equal(59000, wait);
    keel_breaker_stats st;
    ASSERT_OK(keel_breaker_stats_get(b, T0 + 1000, &st));
    assert_int_equal(20, st.calls);
    assert_int_equal(20, st.failed);
    keel_breaker_destroy(b);
    keel_redis_close(r);
}

/* ---------------------------------------------------------- Redis failures -- */

static void test_unavailable_falls_back_locally(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_vanishing();
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_breaker_config c;
    small_config(&c);
    c.name = "down";
    ev_log log = {0};
    keel_breaker_listener li = {on_change, &log};
    c.listeners = &li;
    c.nlisteners = 1;
    keel_breaker_redis_config rc;
    keel_breaker_redis_config_default(&rc);
    rc.redis = r;
    rc.time = KEEL_BREAKER_TIME_CLIENT;
    rc.retry_ms = 1000;
    rc.metrics = m;
    keel_breaker *b = NULL;
    ASSERT_OK(keel_breaker_redis_create(&b, &c, &rc, NULL));
    assert_int_equal(0, keel_breaker_redis_degraded(b));
    /* the first call fails over; the local breaker decides and trips on its own */
    for (int i = 0; i < 4; i++)
        call(b, KEEL_BREAKER_FAILURE, T0 + (uint64_t)i);
    assert_int_equal(1, keel_breaker_redis_errors(b)); /* no retry within retry_ms */
    assert_int_equal(1, keel_breaker_redis_degraded(b));
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    assert_int_equal(1, log.n);
    expect_ev(&log, 0, KEEL_BREAKER_CLOSED, KEEL_BREAKER_OPEN);
    uint64_t wait = 0;
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, T0 + 500, &wait));
    assert_int_equal(503, wait);
    assert_int_equal(1, keel_breaker_redis_errors(b));
    /* after retry_ms one call tries Redis again (and fails again) */
    ASSERT_OK(keel_breaker_allow(b, T0 + 1003, NULL)); /* local: half-open probe */
    assert_int_equal(2, keel_breaker_redis_errors(b));
    assert_int_equal(KEEL_BREAKER_HALF_OPEN, keel_breaker_state_get(b));
    /* manual transitions still work, locally */
    ASSERT_OK(keel_breaker_force_open(b));
    assert_int_equal(KEEL_BREAKER_FORCED_OPEN, keel_breaker_state_get(b));
    keel_buf out;
    keel_buf_init(&out, 1 << 20);
    ASSERT_OK(keel_metrics_expose(m, "", &out));
    assert_non_null(strstr(out.ptr, "keel_breaker_backend_errors_total{name=\"down\"} 2"));
    keel_buf_cleanup(&out);
    keel_breaker_destroy(b);
    keel_redis_close(r);
    keel_metrics_destroy(m);
}

/* A key of the wrong type makes every script fail with an error reply: local fallback;
 * once the key is fixed the breaker adopts the shared state again. */
static void test_error_reply_fallback_and_recovery(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 4);
    char key[160];
    key_for(key, sizeof(key), "broken");
    const char *set[] = {"SET", key, "not-a-hash"};
    keel_redis_reply *rep = NULL;
    ASSERT_OK(keel_redis_cmd(r, &rep, 3, set, NULL, NULL));
    keel_redis_reply_free(rep);
    keel_breaker_config c;
    small_config(&c);
    ev_log log = {0};
    keel_breaker_listener li = {on_change, &log};
    c.listeners = &li;
    c.nlisteners = 1;
    keel_breaker_redis_config rc;
    keel_breaker_redis_config_default(&rc);
    rc.redis = r;
    rc.key = key;
    rc.time = KEEL_BREAKER_TIME_CLIENT;
    rc.retry_ms = 100;
    rc.refresh_ms = 0;
    keel_breaker *b = NULL;
    ASSERT_OK(keel_breaker_redis_create(&b, &c, &rc, NULL));
    for (int i = 0; i < 4; i++)
        call(b, KEEL_BREAKER_FAILURE, T0);
    assert_int_equal(1, keel_breaker_redis_errors(b));
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b)); /* local */
    /* repair the key: the shared breaker is CLOSED, and the next retry adopts it */
    const char *del[] = {"DEL", key};
    ASSERT_OK(keel_redis_cmd(r, &rep, 2, del, NULL, NULL));
    keel_redis_reply_free(rep);
    ASSERT_OK(keel_breaker_allow(b, T0 + 100, NULL));
    assert_int_equal(0, keel_breaker_redis_degraded(b));
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    assert_int_equal(1, keel_breaker_redis_errors(b));
    assert_int_equal(2, log.n);
    expect_ev(&log, 0, KEEL_BREAKER_CLOSED, KEEL_BREAKER_OPEN);
    expect_ev(&log, 1, KEEL_BREAKER_OPEN, KEEL_BREAKER_CLOSED);
    keel_breaker_destroy(b);
    keel_redis_close(r);
}

/* ------------------------------------------------------------- bad config -- */

static void expect_bad(const keel_breaker_config *c, const keel_breaker_redis_config *rc,
                       const char *needle)
{
    keel_breaker *b = (keel_breaker *)(uintptr_t)1;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_EINVAL, keel_breaker_redis_create(&b, c, rc, &d));
    assert_null(b);
    if (strstr(d.msg, needle) == NULL)
        fprintf(stderr, "diag '%s' lacks '%s'\n", d.msg, needle);
    assert_non_null(strstr(d.msg, needle));
}

static void test_bad_config(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 4);
    keel_breaker_config c;
    keel_breaker_config_default(&c);
    keel_breaker_redis_config rc;
    keel_breaker_redis_config_default(&rc);
    assert_int_equal(KEEL_BREAKER_TIME_REDIS, rc.time);
    assert_int_equal(100, rc.refresh_ms);
    assert_int_equal(1000, rc.retry_ms);
    expect_bad(&c, &rc, "breaker: redis must not be NULL");
    rc.redis = r;
    expect_bad(&c, NULL, "breaker: redis config must not be NULL");
    rc.size = 8;
    expect_bad(&c, &rc, "breaker: size must be sizeof(keel_breaker_redis_config)");
    rc.size = sizeof(rc);
    rc.refresh_ms = 70000;
    expect_bad(&c, &rc, "breaker: refresh_ms must be at most 60000, got 70000");
    rc.refresh_ms = 100;
    rc.retry_ms = 60001;
    expect_bad(&c, &rc, "breaker: retry_ms must be at most 60000, got 60001");
    rc.retry_ms = 1000;
    rc.time = (keel_breaker_time)7;
    expect_bad(&c, &rc, "breaker: time must be a KEEL_BREAKER_TIME_* value, got 7");
    rc.time = KEEL_BREAKER_TIME_REDIS;
    rc.key = "";
    expect_bad(&c, &rc, "breaker: key must be 1 to 256 bytes long, got 0");
    char longkey[300];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    rc.key = longkey;
    expect_bad(&c, &rc, "breaker: key must be 1 to 256 bytes long, got 299");
    rc.key = NULL;
    c.name = longkey;
    expect_bad(&c, &rc, "breaker: name must be at most 246 bytes long when key is NULL");
    c.name = "ok";
    c.failure_rate_threshold = 0;
    expect_bad(&c, &rc, "breaker: failure_rate_threshold must be in (0, 100], got 0");
    c.failure_rate_threshold = 50;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_EINVAL, keel_breaker_redis_create(NULL, &c, &rc, &d));
    assert_non_null(strstr(d.msg, "breaker: out must not be NULL"));
    /* an in-memory breaker has no backend counters */
    keel_breaker *mem = NULL;
    ASSERT_OK(keel_breaker_create(&mem, &c, NULL));
    assert_int_equal(0, keel_breaker_redis_errors(mem));
    assert_int_equal(0, keel_breaker_redis_degraded(mem));
    assert_int_equal(0, keel_breaker_redis_errors(NULL));
    keel_breaker_destroy(mem);
    keel_redis_close(r);
}

static void test_create_oom(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 4);
    keel_breaker_config c;
    keel_breaker_config_default(&c);
    keel_breaker_redis_config rc;
    keel_breaker_redis_config_default(&rc);
    rc.redis = r;
    keel_test_failalloc_install();
    int ok = 0;
    for (int n = 0; n < 200 && !ok; n++) {
        keel_breaker *b = NULL;
        keel_test_failalloc_arm(n);
        keel_err e = keel_breaker_redis_create(&b, &c, &rc, NULL);
        keel_test_failalloc_arm(-1);
        if (e == KEEL_OK) {
            ok = 1;
            keel_breaker_destroy(b);
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
            assert_null(b);
        }
    }
    keel_test_failalloc_remove();
    assert_true(ok);
    keel_redis_close(r);
}

int main(void)
{
    redis_url = getenv("KEEL_TEST_REDIS_URL");
    if (redis_url == NULL || redis_url[0] == '\0') {
        fprintf(stderr, "KEEL_TEST_REDIS_URL not set: skipping\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(run_prefix, sizeof(run_prefix), "keeltest:cb:%ld:%ld:", (long)getpid(),
             (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_instances_one_breaker),
        cmocka_unit_test(test_half_open_permits_exact_under_race),
        cmocka_unit_test(test_forced_open_and_disabled_shared),
        cmocka_unit_test(test_redis_time),
        cmocka_unit_test(test_refresh_bounds_staleness),
        cmocka_unit_test(test_equivalence_count_based),
        cmocka_unit_test(test_equivalence_time_based),
        cmocka_unit_test(test_two_processes_open_together),
        cmocka_unit_test(test_unavailable_falls_back_locally),
        cmocka_unit_test(test_error_reply_fallback_and_recovery),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_create_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
