/* Tests for src/resilience/breaker.c: resilience4j transitions, slow calls, time windows,
 * ignored errors, listeners, forced/disabled states, fallback, metrics, concurrency.
 * Time is passed explicitly or comes from a keel_manual_clock; nothing sleeps. */
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "keel_int.h"

#include <keel/breaker.h>

/* ----------------------------------------------------------- fixtures -- */

typedef struct ev {
    int who;
    keel_breaker_state from, to;
} ev;

typedef struct ev_log {
    ev e[64];
    int n;
    keel_breaker *reenter_on_open; /* if set, reset the breaker from inside the listener */
} ev_log;

static void listener_a(keel_breaker *b, const char *name, keel_breaker_state from,
                       keel_breaker_state to, void *ud)
{
    ev_log *l = ud;
    assert_non_null(name);
    if (l->n < 64)
        l->e[l->n] = (ev){1, from, to};
    l->n++;
    if (l->reenter_on_open != NULL && to == KEEL_BREAKER_OPEN) {
        assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
        ASSERT_OK(keel_breaker_reset(b)); /* delivered after this listener returns */
    }
}

static void listener_b(keel_breaker *b, const char *name, keel_breaker_state from,
                       keel_breaker_state to, void *ud)
{
    (void)b;
    (void)name;
    ev_log *l = ud;
    if (l->n < 64)
        l->e[l->n] = (ev){2, from, to};
    l->n++;
}

static void expect_ev(const ev_log *l, int i, int who, keel_breaker_state from,
                      keel_breaker_state to)
{
    assert_int_equal(who, l->e[i].who);
    assert_int_equal(from, l->e[i].from);
    assert_int_equal(to, l->e[i].to);
}

/* resilience4j docs example: count window 10, minimum 10, failure threshold 50 %. */
static void r4j_cfg(keel_breaker_config *c)
{
    keel_breaker_config_default(c);
    c->name = "payments";
    c->sliding_window_size = 10;
    c->minimum_number_of_calls = 10;
    c->failure_rate_threshold = 50;
    c->wait_duration_in_open_ms = 60000;
    c->permitted_calls_in_half_open = 3;
}

static void rec(keel_breaker *b, keel_breaker_outcome o, uint64_t now)
{
    ASSERT_OK(keel_breaker_allow(b, now, NULL));
    ASSERT_OK(keel_breaker_record(b, o, 5, now));
}

/* -------------------------------------------------------------- tests -- */

static void test_defaults(void **state)
{
    (void)state;
    keel_breaker_config c;
    keel_breaker_config_default(&c);
    assert_int_equal(sizeof(c), c.size);
    assert_int_equal(KEEL_BREAKER_COUNT_BASED, c.window_type);
    assert_int_equal(100, c.sliding_window_size);
    assert_int_equal(100, c.minimum_number_of_calls);
    assert_true(c.failure_rate_threshold == 50.0);
    assert_true(c.slow_call_rate_threshold == 100.0);
    assert_int_equal(60000, c.slow_call_duration_ms);
    assert_int_equal(60000, c.wait_duration_in_open_ms);
    assert_int_equal(10, c.permitted_calls_in_half_open);
    ASSERT_OK(keel_breaker_config_validate(&c, NULL));
    assert_string_equal("closed", keel_breaker_state_name(KEEL_BREAKER_CLOSED));
    assert_string_equal("open", keel_breaker_state_name(KEEL_BREAKER_OPEN));
    assert_string_equal("half_open", keel_breaker_state_name(KEEL_BREAKER_HALF_OPEN));
    assert_string_equal("disabled", keel_breaker_state_name(KEEL_BREAKER_DISABLED));
    assert_string_equal("forced_open", keel_breaker_state_name(KEEL_BREAKER_FORCED_OPEN));
    assert_string_equal("?", keel_breaker_state_name((keel_breaker_state)9));
}

static void test_validation(void **state)
{
    (void)state;
    keel_breaker_config c;
    keel_diag d;
    keel_breaker *b = (keel_breaker *)&c;

    keel_breaker_config_default(&c);
    c.failure_rate_threshold = 0;
    assert_int_equal(KEEL_EINVAL, keel_breaker_create(&b, &c, &d));
    assert_null(b);
    assert_string_equal("breaker: failure_rate_threshold must be in (0, 100], got 0", d.msg);
    c.failure_rate_threshold = 100.5;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: failure_rate_threshold must be in (0, 100], got 100.5", d.msg);
    c.failure_rate_threshold = NAN;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, NULL));

    keel_breaker_config_default(&c);
    c.slow_call_rate_threshold = -1;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: slow_call_rate_threshold must be in (0, 100], got -1", d.msg);

    keel_breaker_config_default(&c);
    c.sliding_window_size = 0;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: sliding_window_size must be in [1, 1000000], got 0", d.msg);
    c.window_type = KEEL_BREAKER_TIME_BASED;
    c.sliding_window_size = 86401;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: sliding_window_size must be in [1, 86400], got 86401", d.msg);

    keel_breaker_config_default(&c);
    c.minimum_number_of_calls = 0;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: minimum_number_of_calls must be >= 1, got 0", d.msg);

    keel_breaker_config_default(&c);
    c.wait_duration_in_open_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: wait_duration_in_open_ms must be >= 1, got 0", d.msg);

    keel_breaker_config_default(&c);
    c.slow_call_duration_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: slow_call_duration_ms must be >= 1, got 0", d.msg);

    keel_breaker_config_default(&c);
    c.permitted_calls_in_half_open = 0;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: permitted_calls_in_half_open must be >= 1, got 0", d.msg);

    keel_breaker_config_default(&c);
    c.window_type = (keel_breaker_window)5;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: window_type must be COUNT_BASED or TIME_BASED, got 5", d.msg);

    keel_breaker_config_default(&c);
    c.nlisteners = 2;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: listeners is NULL but nlisteners is 2", d.msg);
    keel_breaker_listener ls[2] = {{listener_b, NULL}, {NULL, NULL}};
    c.listeners = ls;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_string_equal("breaker: listeners[1].fn is NULL", d.msg);
    c.nlisteners = KEEL_BREAKER_MAX_LISTENERS + 1;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));

    keel_breaker_config_default(&c);
    c.size = 4;
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(&c, &d));
    assert_int_equal(KEEL_EINVAL, keel_breaker_config_validate(NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_breaker_create(NULL, &c, NULL));

    assert_int_equal(KEEL_EINVAL, keel_breaker_allow(NULL, 0, NULL));
    assert_int_equal(KEEL_EINVAL, keel_breaker_record(NULL, KEEL_BREAKER_SUCCESS, 0, 0));
    assert_int_equal(KEEL_EINVAL, keel_breaker_force_open(NULL));
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(NULL));
    keel_layer *l = (keel_layer *)&c;
    assert_int_equal(KEEL_EINVAL, keel_breaker_layer(NULL, &l));
    assert_null(l);
    keel_breaker_destroy(NULL);
}

/* The resilience4j example: opens at 5 failures of 10, not before 10 calls. */
static void test_r4j_closed_to_open(void **state)
{
    (void)state;
    keel_breaker_config c;
    r4j_cfg(&c);
    keel_breaker *b;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    keel_breaker_stats st;

    /* 9 calls, all failed: below the minimum, stays CLOSED */
    for (int i = 0; i < 9; i++)
        rec(b, KEEL_BREAKER_FAILURE, 1000);
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    ASSERT_OK(keel_breaker_stats_get(b, 1000, &st));
    assert_int_equal(9, st.calls);
    assert_int_equal(9, st.failed);
    assert_true(st.failure_rate == -1.0);
    /* the 10th call (a success) makes 9/10 = 90 % -> OPEN */
    rec(b, KEEL_BREAKER_SUCCESS, 1000);
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    keel_breaker_destroy(b);

    /* 5 successes then 4 failures: 9 calls, CLOSED; the 5th failure -> 5/10 = 50 % -> OPEN */
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    for (int i = 0; i < 5; i++)
        rec(b, KEEL_BREAKER_SUCCESS, 0);
    for (int i = 0; i < 4; i++)
        rec(b, KEEL_BREAKER_FAILURE, 0);
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    rec(b, KEEL_BREAKER_FAILURE, 0);
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    ASSERT_OK(keel_breaker_stats_get(b, 0, &st));
    assert_int_equal(10, st.calls);
    assert_int_equal(5, st.failed);
    assert_true(st.failure_rate == 50.0);
    keel_breaker_destroy(b);

    /* 4 failures in the last 10 (the ring evicts old ones): 40 % stays CLOSED */
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    for (int i = 0; i < 4; i++)
        rec(b, KEEL_BREAKER_FAILURE, 0);
    for (int i = 0; i < 10; i++)
        rec(b, KEEL_BREAKER_SUCCESS, 0); /* pushes the 4 failures out */
    for (int i = 0; i < 4; i++)
        rec(b, KEEL_BREAKER_FAILURE, 0);
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    ASSERT_OK(keel_breaker_stats_get(b, 0, &st));
    assert_int_equal(10, st.calls);
    assert_int_equal(4, st.failed);
    assert_true(st.failure_rate == 40.0);
    keel_breaker_destroy(b);

    /* minimum_number_of_calls is clamped to the count window size */
    c.sliding_window_size = 4;
    c.minimum_number_of_calls = 100;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    for (int i = 0; i < 3; i++)
        rec(b, KEEL_BREAKER_FAILURE, 0);
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    rec(b, KEEL_BREAKER_SUCCESS, 0);
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    keel_breaker_destroy(b);
}

static void test_open_half_open_cycle(void **state)
{
    (void)state;
    keel_breaker_config c;
    r4j_cfg(&c);
    ev_log log = {0};
    keel_breaker_listener ls[2] = {{listener_a, &log}, {listener_b, &log}};
    c.listeners = ls;
    c.nlisteners = 2;
    keel_breaker *b;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    for (int i = 0; i < 10; i++)
        rec(b, KEEL_BREAKER_FAILURE, 10000); /* opens at t = 10000 */
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    assert_int_equal(2, log.n);

    uint64_t wait = 1;
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, 10000, &wait));
    assert_int_equal(60000, wait);
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, 25000, &wait));
    assert_int_equal(45000, wait);
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, 69999, &wait));
    assert_int_equal(1, wait);
    keel_breaker_stats st;
    ASSERT_OK(keel_breaker_stats_get(b, 69999, &st));
    assert_int_equal(3, st.not_permitted);
    assert_int_equal(KEEL_BREAKER_OPEN, st.state);

    /* wait over: the next call moves to HALF_OPEN and takes a permit */
    ASSERT_OK(keel_breaker_allow(b, 70000, &wait));
    assert_int_equal(0, wait);
    assert_int_equal(KEEL_BREAKER_HALF_OPEN, keel_breaker_state_get(b));
    ASSERT_OK(keel_breaker_allow(b, 70000, NULL));
    ASSERT_OK(keel_breaker_allow(b, 70000, NULL));
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, 70000, &wait)); /* 3 permits used */
    assert_int_equal(0, wait);
    /* 2 failures of 3 = 66.7 % >= 50 -> OPEN again, new wait from now */
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_FAILURE, 5, 70010));
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 5, 70010));
    assert_int_equal(KEEL_BREAKER_HALF_OPEN, keel_breaker_state_get(b));
    ASSERT_OK(keel_breaker_stats_get(b, 70010, &st));
    assert_int_equal(2, st.calls);
    assert_int_equal(1, st.failed);
    assert_true(st.failure_rate == -1.0);
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_FAILURE, 5, 70020));
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, 70020, &wait));
    assert_int_equal(60000, wait);

    /* second half-open: an ignored probe gives its permit back; 1 failure of 3 -> CLOSED */
    ASSERT_OK(keel_breaker_allow(b, 130020, NULL));
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_IGNORED, 5, 130020));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(keel_breaker_allow(b, 130020, NULL));
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, 130020, NULL));
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 5, 130030));
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_FAILURE, 5, 130030));
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 5, 130030));
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    /* CLOSED starts with an empty window */
    ASSERT_OK(keel_breaker_stats_get(b, 130030, &st));
    assert_int_equal(0, st.calls);
    for (int i = 0; i < 9; i++)
        rec(b, KEEL_BREAKER_FAILURE, 130040);
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));

    /* every transition exactly once, in order, each to listener a then b */
    assert_int_equal(10, log.n);
    const keel_breaker_state seq[][2] = {{KEEL_BREAKER_CLOSED, KEEL_BREAKER_OPEN},
                                         {KEEL_BREAKER_OPEN, KEEL_BREAKER_HALF_OPEN},
                                         {KEEL_BREAKER_HALF_OPEN, KEEL_BREAKER_OPEN},
                                         {KEEL_BREAKER_OPEN, KEEL_BREAKER_HALF_OPEN},
                                         {KEEL_BREAKER_HALF_OPEN, KEEL_BREAKER_CLOSED}};
    for (int i = 0; i < 5; i++) {
        expect_ev(&log, 2 * i, 1, seq[i][0], seq[i][1]);
        expect_ev(&log, 2 * i + 1, 2, seq[i][0], seq[i][1]);
    }
    keel_breaker_destroy(b);
}

static void test_slow_calls(void **state)
{
    (void)state;
    keel_breaker_config c;
    keel_breaker_config_default(&c);
    c.sliding_window_size = 4;
    c.minimum_number_of_calls = 4;
    c.slow_call_rate_threshold = 50;
    c.slow_call_duration_ms = 1000;
    keel_breaker *b;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    /* duration == threshold is not slow (resilience4j: slow when duration > threshold) */
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 1000, 0));
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 1001, 0));
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 10, 0));
    keel_breaker_stats st;
    ASSERT_OK(keel_breaker_stats_get(b, 0, &st));
    assert_int_equal(3, st.calls);
    assert_int_equal(1, st.slow);
    assert_int_equal(0, st.failed);
    assert_int_equal(KEEL_BREAKER_CLOSED, st.state);
    /* a slow failure counts as both failed and slow: 2/4 slow = 50 % -> OPEN */
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_FAILURE, 5000, 0));
    ASSERT_OK(keel_breaker_stats_get(b, 0, &st));
    assert_int_equal(KEEL_BREAKER_OPEN, st.state);
    assert_int_equal(2, st.slow);
    assert_int_equal(1, st.failed);
    assert_true(st.slow_rate == 50.0);
    assert_true(st.failure_rate == 25.0);
    keel_breaker_destroy(b);

    /* slow successes alone (failure rate 0) open the breaker */
    c.slow_call_rate_threshold = 75;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 2000, 0));
    ASSERT_OK(keel_breaker_record(b, KEEL_BREAKER_SUCCESS, 1, 0));
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    keel_breaker_destroy(b);
}

static void test_time_based_window(void **state)
{
    (void)state;
    keel_breaker_config c;
    keel_breaker_config_default(&c);
    c.window_type = KEEL_BREAKER_TIME_BASED;
    c.sliding_window_size = 10; /* seconds */
    c.minimum_number_of_calls = 4;
    c.failure_rate_threshold = 50;
    keel_breaker *b;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    keel_breaker_stats st;
    rec(b, KEEL_BREAKER_FAILURE, 100000); /* second 100 */
    rec(b, KEEL_BREAKER_FAILURE, 100999);
    rec(b, KEEL_BREAKER_SUCCESS, 109999); /* second 109: second 100 still inside */
    ASSERT_OK(keel_breaker_stats_get(b, 109999, &st));
    assert_int_equal(3, st.calls);
    assert_int_equal(2, st.failed);
    /* second 110: second 100 has left the window (and its bucket is reused) */
    rec(b, KEEL_BREAKER_SUCCESS, 110000);
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    ASSERT_OK(keel_breaker_stats_get(b, 110000, &st));
    assert_int_equal(2, st.calls);
    assert_int_equal(0, st.failed);
    /* minimum not clamped to the window size for time windows; 2 failures -> 2/4 -> OPEN */
    rec(b, KEEL_BREAKER_FAILURE, 110500);
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    rec(b, KEEL_BREAKER_FAILURE, 110500);
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    /* a late record (older timestamp) counts in the newest second, wiping nothing */
    ASSERT_OK(keel_breaker_reset(b));
    rec(b, KEEL_BREAKER_SUCCESS, 200000);
    rec(b, KEEL_BREAKER_SUCCESS, 190000); /* same bucket index as second 200 */
    ASSERT_OK(keel_breaker_stats_get(b, 200000, &st));
    assert_int_equal(2, st.calls);
    ASSERT_OK(keel_breaker_stats_get(b, 150000, &st)); /* an older "now" reads the newest */
    assert_int_equal(2, st.calls);
    /* much later everything has expired */
    ASSERT_OK(keel_breaker_stats_get(b, 500000, &st));
    assert_int_equal(0, st.calls);
    keel_breaker_destroy(b);
}

static void test_forced_and_disabled(void **state)
{
    (void)state;
    keel_breaker_config c;
    r4j_cfg(&c);
    ev_log log = {0};
    keel_breaker_listener ls[1] = {{listener_b, &log}};
    c.listeners = ls;
    c.nlisteners = 1;
    keel_breaker *b;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    ASSERT_OK(keel_breaker_force_open(b));
    assert_int_equal(KEEL_BREAKER_FORCED_OPEN, keel_breaker_state_get(b));
    uint64_t wait = 9;
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, 0, &wait));
    assert_int_equal(0, wait);
    assert_int_equal(KEEL_EOPEN, keel_breaker_allow(b, UINT64_C(1) << 40, &wait)); /* forever */
    ASSERT_OK(keel_breaker_force_open(b)); /* no second event */

    ASSERT_OK(keel_breaker_disable(b));
    assert_int_equal(KEEL_BREAKER_DISABLED, keel_breaker_state_get(b));
    for (int i = 0; i < 50; i++)
        rec(b, KEEL_BREAKER_FAILURE, 0);
    assert_int_equal(KEEL_BREAKER_DISABLED, keel_breaker_state_get(b));

    ASSERT_OK(keel_breaker_reset(b));
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    keel_breaker_stats st;
    ASSERT_OK(keel_breaker_stats_get(b, 0, &st));
    assert_int_equal(0, st.calls);
    assert_int_equal(2, st.not_permitted);

    /* reset from OPEN clears the window */
    for (int i = 0; i < 10; i++)
        rec(b, KEEL_BREAKER_FAILURE, 0);
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    ASSERT_OK(keel_breaker_reset(b));
    ASSERT_OK(keel_breaker_allow(b, 1, NULL));
    ASSERT_OK(keel_breaker_stats_get(b, 1, &st));
    assert_int_equal(0, st.calls);

    assert_int_equal(5, log.n);
    expect_ev(&log, 0, 2, KEEL_BREAKER_CLOSED, KEEL_BREAKER_FORCED_OPEN);
    expect_ev(&log, 1, 2, KEEL_BREAKER_FORCED_OPEN, KEEL_BREAKER_DISABLED);
    expect_ev(&log, 2, 2, KEEL_BREAKER_DISABLED, KEEL_BREAKER_CLOSED);
    expect_ev(&log, 3, 2, KEEL_BREAKER_CLOSED, KEEL_BREAKER_OPEN);
    expect_ev(&log, 4, 2, KEEL_BREAKER_OPEN, KEEL_BREAKER_CLOSED);
    keel_breaker_destroy(b);
}

static void test_reentrant_listener(void **state)
{
    (void)state;
    keel_breaker_config c;
    r4j_cfg(&c);
    ev_log log = {0};
    keel_breaker_listener ls[2] = {{listener_a, &log}, {listener_b, &log}};
    c.listeners = ls;
    c.nlisteners = 2;
    keel_breaker *b;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    log.reenter_on_open = b;
    for (int i = 0; i < 10; i++)
        rec(b, KEEL_BREAKER_FAILURE, 0);
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    assert_int_equal(4, log.n);
    expect_ev(&log, 0, 1, KEEL_BREAKER_CLOSED, KEEL_BREAKER_OPEN);
    expect_ev(&log, 1, 2, KEEL_BREAKER_CLOSED, KEEL_BREAKER_OPEN);
    expect_ev(&log, 2, 1, KEEL_BREAKER_OPEN, KEEL_BREAKER_CLOSED);
    expect_ev(&log, 3, 2, KEEL_BREAKER_OPEN, KEEL_BREAKER_CLOSED);
    keel_breaker_destroy(b);
}

/* ------------------------------------------------------------- layer -- */

typedef struct term {
    keel_manual_clock *mc;
    uint64_t work_ms;
    keel_err result;
    int calls;
} term;

static keel_err terminal(void *cx, void *ud)
{
    (void)cx;
    term *t = ud;
    t->calls++;
    if (t->mc != NULL)
        keel_manual_clock_advance(t->mc, t->work_ms);
    return t->result;
}

static keel_err cached_fallback(keel_call *call, keel_err refused, void *ud)
{
    int *n = ud;
    (*n)++;
    assert_int_equal(KEEL_EOPEN, refused);
    assert_string_equal("payments", call->refused_by);
    return KEEL_OK; /* e.g. a cached answer */
}

static double series_value(keel_metric *f, const char *const *values)
{
    keel_series *s;
    ASSERT_OK(keel_metric_series(f, values, &s));
    return keel_series_value(s);
}

static void test_layer_metrics_and_fallback(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_breaker_config c;
    r4j_cfg(&c);
    c.clock = &mc.clock;
    c.metrics = m;
    c.slow_call_duration_ms = 2000;
    keel_breaker *b;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    keel_chain *ch;
    keel_layer *l;
    ASSERT_OK(keel_chain_create(&ch));
    ASSERT_OK(keel_breaker_layer(b, &l));
    assert_string_equal("payments", l->name);
    ASSERT_OK(keel_chain_add_take(ch, l));
    keel_call call;
    keel_call_init(&call, "charge", NULL);

    term ok = {&mc, 10, KEEL_OK, 0};
    term slow = {&mc, 2500, KEEL_OK, 0};
    term perm = {&mc, 10, KEEL_EINVAL, 0};
    term io = {&mc, 10, KEEL_EIO, 0};
    for (int i = 0; i < 20; i++) /* permanent errors are ignored by default */
        assert_int_equal(KEEL_EINVAL, keel_chain_run(ch, &call, terminal, &perm));
    keel_breaker_stats st;
    ASSERT_OK(keel_breaker_stats_get(b, mc.now, &st));
    assert_int_equal(0, st.calls);
    for (int i = 0; i < 4; i++)
        ASSERT_OK(keel_chain_run(ch, &call, terminal, &ok));
    ASSERT_OK(keel_chain_run(ch, &call, terminal, &slow));
    for (int i = 0; i < 4; i++)
        assert_int_equal(KEEL_EIO, keel_chain_run(ch, &call, terminal, &io));
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    /* call->retriable = 0 makes an EIO ignored (the terminal's verdict) */
    call.retriable = 0;
    assert_int_equal(KEEL_EIO, keel_chain_run(ch, &call, terminal, &io));
    call.retriable = -1;
    assert_int_equal(KEEL_BREAKER_CLOSED, keel_breaker_state_get(b));
    assert_int_equal(KEEL_EIO, keel_chain_run(ch, &call, terminal, &io)); /* 5/10 -> OPEN */
    assert_int_equal(KEEL_BREAKER_OPEN, keel_breaker_state_get(b));
    uint64_t opened = mc.now;

    keel_manual_clock_advance(&mc, 1500);
    int before = ok.calls;
    assert_int_equal(KEEL_EOPEN, keel_chain_run(ch, &call, terminal, &ok));
    assert_int_equal(before, ok.calls);
    assert_string_equal("payments", call.refused_by);
    assert_int_equal(60000 - 1500, call.wait_ms);
    assert_int_equal(opened + 60000 - 1500, opened + call.wait_ms);

    static const char *const g[] = {"payments", NULL};
    keel_metric *gauge, *calls;
    static const char *const gl[] = {"name", NULL};
    static const char *const cl[] = {"name", "outcome", NULL};
    ASSERT_OK(keel_metrics_gauge(m, "keel_breaker_state", "x", gl, &gauge));
    ASSERT_OK(keel_metrics_counter(m, "keel_breaker_calls_total", "x", cl, &calls));
    assert_true(series_value(gauge, g) == 1.0);
    const char *v_success[] = {"payments", "success", NULL};
    const char *v_failure[] = {"payments", "failure", NULL};
    const char *v_slow[] = {"payments", "slow", NULL};
    const char *v_ignored[] = {"payments", "ignored", NULL};
    const char *v_np[] = {"payments", "not_permitted", NULL};
    assert_true(series_value(calls, v_success) == 4.0);
    assert_true(series_value(calls, v_failure) == 5.0);
    assert_true(series_value(calls, v_slow) == 1.0);
    assert_true(series_value(calls, v_ignored) == 21.0);
    assert_true(series_value(calls, v_np) == 1.0);
    keel_chain_destroy(ch);
    keel_breaker_destroy(b);
    keel_metrics_destroy(m);

    /* with a fallback the refusal becomes the fallback's answer */
    int fb = 0;
    c.fallback = cached_fallback;
    c.fallback_ud = &fb;
    c.metrics = NULL;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    ASSERT_OK(keel_chain_create(&ch));
    ASSERT_OK(keel_breaker_layer(b, &l));
    ASSERT_OK(keel_chain_add_take(ch, l));
    ASSERT_OK(keel_breaker_force_open(b));
    keel_call_init(&call, "charge", NULL);
    before = ok.calls;
    ASSERT_OK(keel_chain_run(ch, &call, terminal, &ok));
    assert_int_equal(1, fb);
    assert_int_equal(before, ok.calls);
    assert_int_equal(0, call.wait_ms);
    keel_chain_destroy(ch);
    keel_breaker_destroy(b);
}

static void test_metrics_gauge_transitions(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_breaker_config c;
    r4j_cfg(&c);
    c.name = "db";
    c.metrics = m;
    keel_breaker *b;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    keel_metric *gauge;
    static const char *const gl[] = {"name", NULL};
    static const char *const g[] = {"db", NULL};
    ASSERT_OK(keel_metrics_gauge(m, "keel_breaker_state", "x", gl, &gauge));
    assert_true(series_value(gauge, g) == 0.0);
    for (int i = 0; i < 10; i++)
        rec(b, KEEL_BREAKER_FAILURE, 0);
    assert_true(series_value(gauge, g) == 1.0);
    ASSERT_OK(keel_breaker_allow(b, 60000, NULL));
    assert_true(series_value(gauge, g) == 2.0);
    ASSERT_OK(keel_breaker_disable(b));
    assert_true(series_value(gauge, g) == 3.0);
    ASSERT_OK(keel_breaker_force_open(b));
    assert_true(series_value(gauge, g) == 4.0);
    ASSERT_OK(keel_breaker_reset(b));
    assert_true(series_value(gauge, g) == 0.0);
    keel_buf out;
    keel_buf_init(&out, 1 << 16);
    ASSERT_OK(keel_metrics_expose(m, "keel_breaker", &out));
    assert_non_null(strstr(out.ptr, "keel_breaker_state{name=\"db\"} 0\n"));
    assert_non_null(strstr(out.ptr, "keel_breaker_calls_total{name=\"db\",outcome=\"failure\"} 10\n"));
    keel_buf_cleanup(&out);
    keel_breaker_destroy(b);
    keel_metrics_destroy(m);
}

/* ------------------------------------------------------- concurrency -- */

typedef struct conc {
    keel_chain *ch;
    atomic_int terminal_calls;
    atomic_int results[3]; /* ok, eio, eopen */
} conc;

static keel_err conc_terminal(void *cx, void *ud)
{
    keel_call *call = cx;
    conc *c = ud;
    int n = atomic_fetch_add(&c->terminal_calls, 1);
    (void)call;
    return n % 3 == 0 ? KEEL_EIO : KEEL_OK;
}

static void *conc_worker(void *arg)
{
    conc *c = arg;
    for (int i = 0; i < 2000; i++) {
        keel_call call;
        keel_call_init(&call, "op", NULL);
        keel_err e = keel_chain_run(c->ch, &call, conc_terminal, c);
        int k = e == KEEL_OK ? 0 : e == KEEL_EIO ? 1 : 2;
        atomic_fetch_add(&c->results[k], 1);
    }
    return NULL;
}

static int transitions_seen;
static void count_listener(keel_breaker *b, const char *name, keel_breaker_state from,
                           keel_breaker_state to, void *ud)
{
    (void)b;
    (void)name;
    (void)from;
    (void)to;
    (void)ud;
    transitions_seen++; /* listeners are delivered one at a time */
}

static void test_concurrency_smoke(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_breaker_config c;
    keel_breaker_config_default(&c);
    c.name = "conc";
    c.sliding_window_size = 20;
    c.minimum_number_of_calls = 20;
    c.failure_rate_threshold = 30; /* about 1 failure in 3: trips now and then */
    c.wait_duration_in_open_ms = 1;
    c.permitted_calls_in_half_open = 2;
    c.metrics = m;
    keel_breaker_listener ls[1] = {{count_listener, NULL}};
    c.listeners = ls;
    c.nlisteners = 1;
    keel_breaker *b;
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    conc cc;
    memset(&cc, 0, sizeof(cc));
    ASSERT_OK(keel_chain_create(&cc.ch));
    keel_layer *l;
    ASSERT_OK(keel_breaker_layer(b, &l));
    ASSERT_OK(keel_chain_add_take(cc.ch, l));
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(0, pthread_create(&th[i], NULL, conc_worker, &cc));
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    int ok = atomic_load(&cc.results[0]), eio = atomic_load(&cc.results[1]),
        eopen = atomic_load(&cc.results[2]);
    assert_int_equal(8000, ok + eio + eopen);
    assert_int_equal(ok + eio, atomic_load(&cc.terminal_calls));
    keel_metric *calls;
    static const char *const cl[] = {"name", "outcome", NULL};
    ASSERT_OK(keel_metrics_counter(m, "keel_breaker_calls_total", "x", cl, &calls));
    const char *v_success[] = {"conc", "success", NULL};
    const char *v_failure[] = {"conc", "failure", NULL};
    const char *v_slow[] = {"conc", "slow", NULL};
    const char *v_np[] = {"conc", "not_permitted", NULL};
    double s = series_value(calls, v_success) + series_value(calls, v_slow);
    assert_true(s == (double)ok);
    assert_true(series_value(calls, v_failure) == (double)eio);
    assert_true(series_value(calls, v_np) == (double)eopen);
    keel_breaker_stats st;
    ASSERT_OK(keel_breaker_stats_get(b, 0, &st));
    assert_true(st.not_permitted == (uint64_t)eopen);
    keel_chain_destroy(cc.ch);
    keel_breaker_destroy(b);
    keel_metrics_destroy(m);
}

static void test_oom(void **state)
{
    (void)state;
    keel_breaker_config c;
    r4j_cfg(&c);
    keel_breaker *b = NULL;
    keel_test_failalloc_install();
    for (int n = 0; n < 3; n++) {
        keel_test_failalloc_arm(n);
        assert_int_equal(KEEL_ENOMEM, keel_breaker_create(&b, &c, NULL));
        assert_null(b);
    }
    keel_test_failalloc_arm(-1);
    ASSERT_OK(keel_breaker_create(&b, &c, NULL));
    keel_layer *l;
    keel_test_failalloc_arm(0);
    assert_int_equal(KEEL_ENOMEM, keel_breaker_layer(b, &l));
    keel_test_failalloc_arm(-1);
    keel_breaker_destroy(b);
    keel_test_failalloc_remove();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_r4j_closed_to_open),
        cmocka_unit_test(test_open_half_open_cycle),
        cmocka_unit_test(test_slow_calls),
        cmocka_unit_test(test_time_based_window),
        cmocka_unit_test(test_forced_and_disabled),
        cmocka_unit_test(test_reentrant_listener),
        cmocka_unit_test(test_layer_metrics_and_fallback),
        cmocka_unit_test(test_metrics_gauge_transitions),
        cmocka_unit_test(test_concurrency_smoke),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
