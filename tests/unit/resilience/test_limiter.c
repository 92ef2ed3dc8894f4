/* Tests for src/resilience/limiter.c: known answers for GCRA (redis-cell), token bucket,
 * sliding log and sliding window counter on a manual clock; keys, eviction, threads, layer. */
#include "keel_int.h"

#include "test.h"

#include <pthread.h>
#include <stdio.h>

#include <keel/limiter.h>

static keel_manual_clock mc;

static keel_limiter *make(keel_limiter_config *c)
{
    keel_limiter *l = NULL;
    keel_diag d = {0};
    c->clock = &mc.clock;
    assert_int_equal(KEEL_OK, keel_limiter_create(c, &l, &d));
    assert_non_null(l);
    return l;
}

static keel_err take(keel_limiter *l, const char *key, uint32_t cost, keel_limit_result *r)
{
    return keel_limiter_take(l, keel_str_c(key), cost, r);
}

/* Brief: rate 10/s, burst 5: 6 at t=0 allowed, 7th refused retry 100 ms, one more at t=100. */
static void test_gcra_burst(void **state)
{
    (void)state;
    keel_manual_clock_init(&mc, 0);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_GCRA;
    c.rate = 10;
    c.period_ms = 1000;
    c.burst = 5;
    keel_limiter *l = make(&c);
    keel_limit_result r;
    for (uint32_t i = 0; i < 6; i++) {
        ASSERT_OK(take(l, "u", 1, &r));
        assert_int_equal(6, r.limit);
        assert_int_equal(5 - i, r.remaining);
        assert_int_equal(100 * (i + 1), r.reset_ms);
        assert_int_equal(0, r.retry_after_ms);
    }
    assert_int_equal(KEEL_EAGAIN, take(l, "u", 1, &r));
    assert_int_equal(100, r.retry_after_ms);
    assert_int_equal(0, r.remaining);
    assert_int_equal(600, r.reset_ms);
    keel_manual_clock_advance(&mc, 99);
    assert_int_equal(KEEL_EAGAIN, take(l, "u", 1, &r));
    assert_int_equal(1, r.retry_after_ms);
    keel_manual_clock_advance(&mc, 1);
    ASSERT_OK(take(l, "u", 1, &r));
    assert_int_equal(0, r.remaining);
    assert_int_equal(KEEL_EAGAIN, take(l, "u", 1, &r));
    uint32_t q;
    uint64_t w;
    keel_limiter_policy(l, &q, &w);
    assert_int_equal(6, q);
    assert_int_equal(600, w);
    keel_limiter_destroy(l);
}

/* redis-cell it_rate_limits: limit 5 = max_burst 4, 1 per second. */
static void test_gcra_redis_cell_vector(void **state)
{
    (void)state;
    keel_manual_clock_init(&mc, 0);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.rate = 1;
    c.period_ms = 1000;
    c.burst = 4;
    keel_limiter *l = make(&c);
    keel_limit_result r;
    for (uint32_t i = 0; i < 5; i++) {
        ASSERT_OK(take(l, "k", 1, &r));
        assert_int_equal(4 - i, r.remaining);
        assert_int_equal(1000 * (i + 1), r.reset_ms);
    }
    assert_int_equal(KEEL_EAGAIN, take(l, "k", 1, &r));
    assert_int_equal(1000, r.retry_after_ms);
    /* a quantity of 6 can never fit */
    assert_int_equal(KEEL_EAGAIN, take(l, "k", 6, &r));
    assert_true(r.retry_after_ms == UINT64_MAX);
    keel_manual_clock_advance(&mc, 3000);
    ASSERT_OK(take(l, "k", 1, &r));
    assert_int_equal(2, r.remaining);
    assert_int_equal(3000, r.reset_ms);
    keel_manual_clock_advance(&mc, 100);
    ASSERT_OK(take(l, "k", 1, &r));
    assert_int_equal(1, r.remaining);
    assert_int_equal(3900, r.reset_ms);
    /* quantity 0 peeks without changing anything */
    ASSERT_OK(take(l, "k", 0, &r));
    assert_int_equal(1, r.remaining);
    assert_int_equal(3900, r.reset_ms);
    ASSERT_OK(take(l, "k", 0, &r));
    assert_int_equal(1, r.remaining);
    /* cost > 1: two units need two slots */
    assert_int_equal(KEEL_EAGAIN, take(l, "k", 2, &r));
    assert_int_equal(900, r.retry_after_ms);
    ASSERT_OK(take(l, "k", 1, &r));
    assert_int_equal(0, r.remaining);
    keel_limiter_destroy(l);
}

static void test_token_bucket(void **state)
{
    (void)state;
    keel_manual_clock_init(&mc, 5000);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_TOKEN_BUCKET;
    c.capacity = 3;
    c.refill_per_s = 1;
    keel_limiter *l = make(&c);
    keel_limit_result r;
    for (uint32_t i = 0; i < 3; i++) {
        ASSERT_OK(take(l, "a", 1, &r));
        assert_int_equal(3, r.limit);
        assert_int_equal(2 - i, r.remaining);
        assert_int_equal(1000 * (i + 1), r.reset_ms);
    }
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 1, &r));
    assert_int_equal(1000, r.retry_after_ms);
    assert_int_equal(3000, r.reset_ms);
    keel_manual_clock_advance(&mc, 500);
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 1, &r));
    assert_int_equal(500, r.retry_after_ms);
    keel_manual_clock_advance(&mc, 500);
    ASSERT_OK(take(l, "a", 1, &r));
    assert_int_equal(0, r.remaining);
    /* cost 2 after 1.5 s: 1.5 tokens, half a token short */
    keel_manual_clock_advance(&mc, 1500);
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 2, &r));
    assert_int_equal(500, r.retry_after_ms);
    assert_int_equal(1, r.remaining);
    keel_manual_clock_advance(&mc, 500);
    ASSERT_OK(take(l, "a", 2, &r));
    assert_int_equal(0, r.remaining);
    /* never more than capacity, however long the wait */
    keel_manual_clock_advance(&mc, 1000000);
    ASSERT_OK(take(l, "a", 3, &r));
    assert_int_equal(0, r.remaining);
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 4, &r));
    assert_true(r.retry_after_ms == UINT64_MAX);
    keel_limiter_destroy(l);
}

static void test_sliding_log(void **state)
{
    (void)state;
    keel_manual_clock_init(&mc, 0);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_SLIDING_LOG;
    c.limit = 3;
    c.window_ms = 1000;
    keel_limiter *l = make(&c);
    keel_limit_result r;
    ASSERT_OK(take(l, "a", 1, &r)); /* t=0 */
    keel_manual_clock_advance(&mc, 300);
    ASSERT_OK(take(l, "a", 1, &r)); /* t=300 */
    keel_manual_clock_advance(&mc, 300);
    ASSERT_OK(take(l, "a", 1, &r)); /* t=600 */
    assert_int_equal(0, r.remaining);
    assert_int_equal(1000, r.reset_ms);
    keel_manual_clock_advance(&mc, 399); /* t=999: t=0 still counts */
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 1, &r));
    assert_int_equal(1, r.retry_after_ms);
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 2, &r));
    assert_int_equal(301, r.retry_after_ms); /* needs t=0 and t=300 to expire */
    keel_manual_clock_advance(&mc, 1); /* t=1000: t=0 expired */
    ASSERT_OK(take(l, "a", 1, &r));
    assert_int_equal(0, r.remaining);
    assert_int_equal(1000, r.reset_ms);
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 1, &r));
    assert_int_equal(300, r.retry_after_ms);
    keel_manual_clock_advance(&mc, 1000); /* t=2000: everything expired */
    ASSERT_OK(take(l, "a", 3, &r));
    assert_int_equal(0, r.remaining);
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 4, &r));
    assert_true(r.retry_after_ms == UINT64_MAX);
    keel_limiter_destroy(l);
}

static void test_sliding_window(void **state)
{
    (void)state;
    keel_manual_clock_init(&mc, 0);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_SLIDING_WINDOW;
    c.limit = 10;
    c.window_ms = 1000;
    keel_limiter *l = make(&c);
    keel_limit_result r;
    ASSERT_OK(take(l, "a", 8, &r)); /* 8 in window [0, 1000) */
    assert_int_equal(2, r.remaining);
    keel_manual_clock_advance(&mc, 1250); /* 250 ms into [1000, 2000): estimate 8*0.75 = 6 */
    for (uint32_t i = 0; i < 4; i++) {
        ASSERT_OK(take(l, "a", 1, &r));
        assert_int_equal(3 - i, r.remaining);
    }
    assert_int_equal(1750, r.reset_ms);
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 1, &r));
    /* 8*(750 - dt)/1000 + 5 <= 10  <=>  dt >= 125 */
    assert_int_equal(125, r.retry_after_ms);
    keel_manual_clock_advance(&mc, 124);
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 1, &r));
    assert_int_equal(1, r.retry_after_ms);
    keel_manual_clock_advance(&mc, 1);
    ASSERT_OK(take(l, "a", 1, &r)); /* t=1375: 8*0.625 + 5 = 10 */
    assert_int_equal(0, r.remaining);
    /* cost that only fits in the next window: 5 now, 6 more needs t >= 2000 + e2 with
     * 5*(1000 - e2)/1000 + 6 <= 10  <=>  e2 >= 200 */
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 6, &r));
    assert_int_equal(625 + 200, r.retry_after_ms);
    keel_manual_clock_advance(&mc, 825);
    ASSERT_OK(take(l, "a", 6, &r));
    assert_int_equal(0, r.remaining);
    keel_limiter_destroy(l);
}

static void test_independent_keys_and_eviction(void **state)
{
    (void)state;
    keel_manual_clock_init(&mc, 0);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_TOKEN_BUCKET;
    c.capacity = 1;
    c.refill_per_s = 1;
    c.max_keys = 2;
    c.shards = 1;
    keel_limiter *l = make(&c);
    keel_limit_result r;
    ASSERT_OK(take(l, "a", 1, &r));
    ASSERT_OK(take(l, "b", 1, &r));
    assert_int_equal(KEEL_EAGAIN, take(l, "a", 1, &r));
    assert_int_equal(KEEL_EAGAIN, take(l, "b", 1, &r));
    assert_int_equal(2, keel_limiter_keys(l));
    /* "b" was used last: "a" is the least recently used and goes when "c" arrives */
    ASSERT_OK(take(l, "c", 1, &r));
    assert_int_equal(2, keel_limiter_keys(l));
    assert_int_equal(KEEL_EAGAIN, take(l, "b", 1, &r)); /* b kept its state */
    ASSERT_OK(take(l, "a", 1, &r));                     /* a starts afresh (evicted c) */
    assert_int_equal(KEEL_EAGAIN, take(l, "b", 1, &r));
    assert_int_equal(2, keel_limiter_keys(l));
    /* key validation */
    assert_int_equal(KEEL_EINVAL, keel_limiter_take(l, KEEL_STR_NULL, 1, &r));
    char big[KEEL_LIMITER_KEY_MAX + 2];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(KEEL_EINVAL, take(l, big, 1, &r));
    big[KEEL_LIMITER_KEY_MAX] = '\0';
    ASSERT_OK(take(l, big, 1, &r));
    /* keys with embedded prefixes of each other stay apart */
    keel_limiter_destroy(l);

    /* many keys with the default 64 shards: never more than max_keys stored */
    keel_limiter_config_default(&c);
    c.max_keys = 640;
    l = make(&c);
    for (int i = 0; i < 5000; i++) {
        char k[32];
        snprintf(k, sizeof(k), "client-%d", i);
        ASSERT_OK(take(l, k, 1, &r));
    }
    assert_true(keel_limiter_keys(l) <= 640);
    assert_true(keel_limiter_keys(l) > 0);
    keel_limiter_destroy(l);

    /* one shard whose buckets grow from 8 to thousands as keys arrive: every key keeps its own
     * state through the regrowths */
    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_TOKEN_BUCKET;
    c.capacity = 1;
    c.refill_per_s = 1;
    c.max_keys = 20000;
    c.shards = 1;
    l = make(&c);
    for (int i = 0; i < 5000; i++) {
        char k[32];
        snprintf(k, sizeof(k), "grow-%d", i);
        ASSERT_OK(take(l, k, 1, &r));
    }
    assert_int_equal(5000, keel_limiter_keys(l));
    for (int i = 0; i < 5000; i++) {
        char k[32];
        snprintf(k, sizeof(k), "grow-%d", i);
        assert_int_equal(KEEL_EAGAIN, take(l, k, 1, &r)); /* found, not a fresh bucket */
    }
    assert_int_equal(5000, keel_limiter_keys(l));
    keel_limiter_destroy(l);
}

static void test_validation(void **state)
{
    (void)state;
    keel_limiter *l = (keel_limiter *)1;
    keel_diag d = {0};
    keel_limiter_config c;

    keel_limiter_config_default(&c);
    c.rate = 0;
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));
    assert_null(l);
    assert_string_equal("limiter: rate must be > 0, got 0", d.msg);

    keel_limiter_config_default(&c);
    c.period_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));
    assert_non_null(strstr(d.msg, "period_ms"));

    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_TOKEN_BUCKET;
    c.capacity = 0;
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));
    assert_string_equal("limiter: capacity must be > 0, got 0", d.msg);
    c.capacity = 3;
    c.refill_per_s = 0;
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));
    assert_non_null(strstr(d.msg, "refill_per_s"));

    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_SLIDING_LOG;
    c.limit = 0;
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));
    assert_string_equal("limiter: limit must be > 0, got 0", d.msg);
    c.limit = KEEL_LIMITER_LOG_MAX + 1;
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));
    c.limit = 3;
    c.window_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));
    assert_non_null(strstr(d.msg, "window_ms"));

    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_SLIDING_WINDOW;
    c.window_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));
    assert_non_null(strstr(d.msg, "window_ms"));

    keel_limiter_config_default(&c);
    c.max_keys = 0;
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));
    assert_non_null(strstr(d.msg, "max_keys"));

    keel_limiter_config_default(&c);
    c.algorithm = (keel_limit_algo)99;
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));
    assert_non_null(strstr(d.msg, "algorithm"));

    keel_limiter_config_default(&c);
    c.rate = 2000000; /* more than one per microsecond */
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, &l, &d));

    keel_limiter_config_default(&c);
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(&c, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_limiter_create(NULL, &l, NULL));
    keel_limiter_destroy(NULL);
}

typedef struct worker_arg {
    keel_limiter *l;
    int allowed;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    for (int i = 0; i < 20000; i++)
        if (keel_limiter_take(a->l, KEEL_STR_LIT("shared"), 1, NULL) == KEEL_OK)
            a->allowed++;
    return NULL;
}

static void run_threads(keel_limit_algo algo, int expect)
{
    keel_manual_clock_init(&mc, 1000);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.algorithm = algo;
    c.rate = 50;
    c.burst = 99;
    c.capacity = 100;
    c.limit = 100;
    keel_limiter *l = make(&c);
    pthread_t t[2];
    worker_arg a[2] = {{l, 0}, {l, 0}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(0, pthread_create(&t[i], NULL, worker, &a[i]));
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(expect, a[0].allowed + a[1].allowed);
    keel_limiter_destroy(l);
}

static void test_threads_never_exceed(void **state)
{
    (void)state;
    run_threads(KEEL_LIMIT_GCRA, 100);
    run_threads(KEEL_LIMIT_TOKEN_BUCKET, 100);
    run_threads(KEEL_LIMIT_SLIDING_LOG, 100);
    run_threads(KEEL_LIMIT_SLIDING_WINDOW, 100);
}

static int inner_runs;

static keel_err terminal(void *cx, void *ud)
{
    (void)cx;
    (void)ud;
    inner_runs++;
    return KEEL_OK;
}

static keel_str user_key(const keel_call *call, void *ud)
{
    (void)ud;
    return keel_str_c((const char *)call->user);
}

static void test_layer(void **state)
{
    (void)state;
    keel_manual_clock_init(&mc, 0);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.name = "api-quota";
    c.rate = 10;
    c.burst = 1;
    keel_limiter *l = make(&c);
    keel_chain *chain;
    keel_layer *layer;
    ASSERT_OK(keel_chain_create(&chain));
    ASSERT_OK(keel_limiter_layer(l, user_key, NULL, &layer));
    assert_string_equal("api-quota", layer->name);
    ASSERT_OK(keel_chain_add_take(chain, layer));
    inner_runs = 0;
    keel_call call;
    keel_call_init(&call, "charge", (void *)"alice");
    ASSERT_OK(keel_chain_run(chain, &call, terminal, NULL));
    ASSERT_OK(keel_chain_run(chain, &call, terminal, NULL));
    assert_int_equal(KEEL_EAGAIN, keel_chain_run(chain, &call, terminal, NULL));
    assert_int_equal(2, inner_runs);
    assert_int_equal(100, call.wait_ms);
    assert_string_equal("api-quota", call.refused_by);
    keel_call_init(&call, "charge", (void *)"bob"); /* another key */
    ASSERT_OK(keel_chain_run(chain, &call, terminal, NULL));
    assert_int_equal(3, inner_runs);
    assert_null(call.refused_by);
    keel_chain_destroy(chain);
    assert_int_equal(KEEL_EINVAL, keel_limiter_layer(NULL, NULL, NULL, &layer));
    keel_limiter_destroy(l);
}

static void test_oom(void **state)
{
    (void)state;
    keel_manual_clock_init(&mc, 0);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.clock = &mc.clock;
    keel_test_failalloc_install();
    int succeeded = 0;
    for (int n = 0; n < 200 && !succeeded; n++) {
        keel_limiter *l = NULL;
        keel_test_failalloc_arm(n);
        keel_err e = keel_limiter_create(&c, &l, NULL);
        if (e == KEEL_OK) {
            keel_err t = keel_limiter_take(l, KEEL_STR_LIT("x"), 1, NULL);
            assert_true(t == KEEL_OK || t == KEEL_ENOMEM);
            keel_test_failalloc_arm(-1);
            keel_limiter_destroy(l);
            succeeded = t == KEEL_OK;
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
            assert_null(l);
        }
    }
    keel_test_failalloc_remove();
    assert_true(succeeded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcra_burst),
        cmocka_unit_test(test_gcra_redis_cell_vector),
        cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_sliding_log),
        cmocka_unit_test(test_sliding_window),
        cmocka_unit_test(test_independent_keys_and_eviction),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_threads_never_exceed),
        cmocka_unit_test(test_layer),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
