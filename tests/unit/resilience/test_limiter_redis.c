/* Tests for src/resilience/limiter_redis.c against the throwaway Redis of
 * scripts/test-services.sh (KEEL_TEST_REDIS_URL; exit 77 when unset): the four algorithms
 * decide exactly as the in-memory limiter for the same sequence of (key, now, cost); two
 * processes share one budget; keys carry a TTL and vanish; an unreachable server fails open
 * or closed and is counted; bad configuration is refused naming the field; the chain layer
 * and the HTTP middleware work unchanged on a Redis limiter. */
#include "keel_int.h"

#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <keel/limiter.h>
#include <keel/metrics.h>
#include <keel/redis.h>

static const char *redis_url;
static char run_prefix[96];

/* A prefix unique to this run and test, so that runs and tests never share a key. */
static void prefix_for(char *out, size_t n, const char *test)
{
    snprintf(out, n, "%s%s:", run_prefix, test);
}

static keel_limiter *redis_limiter(keel_limiter_config *c, keel_redis *r, const char *prefix,
                                   keel_limiter_on_error on_error, uint32_t extra)
{
    keel_limiter_redis_config rc;
    keel_limiter_redis_config_default(&rc);
    rc.redis = r;
    rc.prefix = prefix;
    rc.on_error = on_error;
    rc.ttl_extra_ms = extra;
    keel_limiter *l = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_limiter_redis_create(c, &rc, &l, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "limiter: %s\n", d.msg);
    assert_int_equal(KEEL_OK, e);
    assert_non_null(l);
    return l;
}

static int64_t redis_int(keel_redis *r, const char *cmd, const char *key)
{
    const char *argv[] = {cmd, key};
    keel_redis_reply *rep = NULL;
    ASSERT_OK(keel_redis_cmd(r, &rep, 2, argv, NULL, NULL));
    assert_int_equal(KEEL_REDIS_INT, keel_redis_reply_type(rep));
    int64_t v = keel_redis_reply_int(rep);
    keel_redis_reply_free(rep);
    return v;
}

/* xorshift64: a fixed pseudo-random sequence, the same on every run */
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

/* ------------------------------------------------------------- equivalence -- */

/* Drive an in-memory and a Redis limiter with the same config, manual clock and sequence
 * of (key, clock advance, cost), and compare every return code and result field. */
static void equivalence(keel_limiter_config *c, uint64_t start_ms, unsigned steps,
                        const char *tag)
{
    static const uint64_t advances[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3, 7, 20, 50, 99,
                                        100, 101, 250, 333, 999, 1000, 1001, 5000, 60000};
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, start_ms);
    c->clock = &mc.clock;
    keel_limiter *mem = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    ASSERT_OK(keel_limiter_create(c, &mem, &d));
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), tag);
    keel_limiter *red = redis_limiter(c, r, prefix, KEEL_LIMITER_FAIL_CLOSED, 1000);
    uint32_t lm, lr;
    uint64_t wm, wr;
    keel_limiter_policy(mem, &lm, &wm);
    keel_limiter_policy(red, &lr, &wr);
    assert_int_equal(lm, lr);
    assert_int_equal(wm, wr);

    uint32_t limit = lm;
    unsigned refused = 0, allowed = 0, waits = 0;
    for (unsigned i = 0; i < steps; i++) {
        uint64_t x = rng();
        static const char *const keys[] = {"alice", "bob", "carol"};
        const char *key = keys[x % 3];
        keel_manual_clock_advance(&mc, advances[(x >> 8) % (sizeof(advances) / 8)]);
        uint32_t cost;
        switch ((x >> 16) % 16) {
        case 0:
            cost = 0;
            break;
        case 1:
            cost = 2;
            break;
        case 2:
            cost = limit;
            break;
        case 3:
            cost = limit + 1;
            break;
        default:
            cost = 1;
        }
        keel_limit_result a, b;
        memset(&a, 0xAA, sizeof(a));
        memset(&b, 0x55, sizeof(b));
        keel_err ea = keel_limiter_take(mem, keel_str_c(key), cost, &a);
        keel_err eb = keel_limiter_take(red, keel_str_c(key), cost, &b);
        if (ea != eb || a.limit != b.limit || a.remaining != b.remaining ||
            a.reset_ms != b.reset_ms || a.retry_after_ms != b.retry_after_ms) {
            fprintf(stderr,
                    "%s step %u key %s now %llu cost %u\n"
                    "  memory: %s limit %u remaining %u reset %llu retry %llu\n"
                    "  redis:  %s limit %u remaining %u reset %llu retry %llu\n",
                    tag, i, key, (unsigned long long)mc.now, cost, keel_err_name(ea), a.limit,
                    a.remaining, (unsigned long long)a.reset_ms,
                    (unsigned long long)a.retry_after_ms, keel_err_name(eb), b.limit,
                    b.remaining, (unsigned long long)b.reset_ms,
                    (unsigned long long)b.retry_after_ms);
            fail();
        }
        if (ea == KEEL_OK)
            allowed++;
        else
            refused++;
        if (ea == KEEL_EAGAIN && a.retry_after_ms != UINT64_MAX)
            waits++;
    }
    if (getenv("RL_DEBUG"))
        fprintf(stderr, "%s: %u allowed, %u refused (%u with a wait)\n", tag, allowed, refused,
                waits);
    /* the sequence exercises every outcome: allowed, refused for now, refused for good */
    assert_true(allowed > steps / 10);
    assert_true(refused > steps / 20);
    assert_true(waits > steps / 50);
    assert_int_equal(0, keel_limiter_redis_errors(red));
    assert_int_equal(0, keel_limiter_redis_errors(mem));
    keel_limiter_destroy(red);
    keel_limiter_destroy(mem);
    keel_redis_close(r);
}

#define STEPS 1500

static void test_equivalence_gcra(void **state)
{
    (void)state;
    static const uint32_t p[][3] = {{10, 1000, 5}, {3, 1000, 0}, {7, 60000, 20}, {1, 1000, 4}};
    for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
        for (int s = 0; s < 2; s++) {
            keel_limiter_config c;
            keel_limiter_config_default(&c);
            c.algorithm = KEEL_LIMIT_GCRA;
            c.rate = p[i][0];
            c.period_ms = p[i][1];
            c.burst = p[i][2];
            char tag[48];
            snprintf(tag, sizeof(tag), "gcra%zu.%d", i, s);
            rng_state = 0x9E3779B97F4A7C15ull + i * 31 + (uint64_t)s;
            equivalence(&c, s ? 1700000000123ull : 0, STEPS, tag);
        }
    }
}

static void test_equivalence_token_bucket(void **state)
{
    (void)state;
    static const uint32_t p[][2] = {{3, 1}, {10, 7}, {1, 1000}, {50, 3}};
    for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
        for (int s = 0; s < 2; s++) {
            keel_limiter_config c;
            keel_limiter_config_default(&c);
            c.algorithm = KEEL_LIMIT_TOKEN_BUCKET;
            c.capacity = p[i][0];
            c.refill_per_s = p[i][1];
            char tag[48];
            snprintf(tag, sizeof(tag), "bucket%zu.%d", i, s);
            rng_state = 0xD1B54A32D192ED03ull + i * 31 + (uint64_t)s;
            equivalence(&c, s ? 1700000000123ull : 5000, STEPS, tag);
        }
    }
}

static void test_equivalence_sliding_log(void **state)
{
    (void)state;
    static const uint32_t p[][2] = {{3, 1000}, {10, 250}, {1, 1}, {20, 5000}};
    for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
        for (int s = 0; s < 2; s++) {
            keel_limiter_config c;
            keel_limiter_config_default(&c);
            c.algorithm = KEEL_LIMIT_SLIDING_LOG;
            c.limit = p[i][0];
            c.window_ms = p[i][1];
            char tag[48];
            snprintf(tag, sizeof(tag), "log%zu.%d", i, s);
            rng_state = 0x2545F4914F6CDD1Dull + i * 31 + (uint64_t)s;
            equivalence(&c, s ? 1700000000123ull : 0, STEPS, tag);
        }
    }
}

static void test_equivalence_sliding_window(void **state)
{
    (void)state;
    static const uint32_t p[][2] = {{10, 1000}, {3, 100}, {7, 333}, {1, 1}};
    for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
        for (int s = 0; s < 2; s++) {
            keel_limiter_config c;
            keel_limiter_config_default(&c);
            c.algorithm = KEEL_LIMIT_SLIDING_WINDOW;
            c.limit = p[i][0];
            c.window_ms = p[i][1];
            char tag[48];
            snprintf(tag, sizeof(tag), "window%zu.%d", i, s);
            rng_state = 0xBF58476D1CE4E5B9ull + i * 31 + (uint64_t)s;
            equivalence(&c, s ? 1700000000123ull : 0, STEPS, tag);
        }
    }
}

/* redis-cell's it_rate_limits vector (reference.md 5.1) through the Redis backend. */
static void test_gcra_redis_cell_vector(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1700000000000ull);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.rate = 1;
    c.period_ms = 1000;
    c.burst = 4;
    c.clock = &mc.clock;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), "cell");
    keel_limiter *l = redis_limiter(&c, r, prefix, KEEL_LIMITER_FAIL_CLOSED, 1000);
    keel_limit_result res;
    keel_str k = KEEL_STR_LIT("k");
    for (uint32_t i = 0; i < 5; i++) {
        ASSERT_OK(keel_limiter_take(l, k, 1, &res));
        assert_int_equal(5, res.limit);
        assert_int_equal(4 - i, res.remaining);
        assert_int_equal(1000 * (i + 1), res.reset_ms);
        assert_int_equal(0, res.retry_after_ms);
    }
    assert_int_equal(KEEL_EAGAIN, keel_limiter_take(l, k, 1, &res));
    assert_int_equal(1000, res.retry_after_ms);
    assert_int_equal(KEEL_EAGAIN, keel_limiter_take(l, k, 6, &res));
    assert_true(res.retry_after_ms == UINT64_MAX);
    keel_manual_clock_advance(&mc, 3000);
    ASSERT_OK(keel_limiter_take(l, k, 1, &res));
    assert_int_equal(2, res.remaining);
    assert_int_equal(3000, res.reset_ms);
    keel_manual_clock_advance(&mc, 100);
    ASSERT_OK(keel_limiter_take(l, k, 1, &res));
    assert_int_equal(1, res.remaining);
    assert_int_equal(3900, res.reset_ms);
    ASSERT_OK(keel_limiter_take(l, k, 0, &res));
    assert_int_equal(1, res.remaining);
    assert_int_equal(3900, res.reset_ms);
    /* bad keys are refused before Redis is asked */
    assert_int_equal(KEEL_EINVAL, keel_limiter_take(l, KEEL_STR_NULL, 1, &res));
    keel_str nul = {"a\0b", 3};
    assert_int_equal(KEEL_EINVAL, keel_limiter_take(l, nul, 1, &res));
    assert_int_equal(0, keel_limiter_keys(l));
    assert_string_equal("limiter", keel_limiter_name(l));
    keel_limiter_destroy(l);
    keel_redis_close(r);
}

/* ------------------------------------------------------ chain layer, names -- */

static keel_err count_terminal(void *cx, void *ud)
{
    (void)cx;
    (*(int *)ud)++;
    return KEEL_OK;
}

static void test_chain_layer_and_default_prefix(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1700000000000ull);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_SLIDING_LOG;
    c.limit = 2;
    c.window_ms = 60000;
    c.clock = &mc.clock;
    char name[160];
    snprintf(name, sizeof(name), "%slayer", run_prefix);
    c.name = name;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    keel_limiter *l = redis_limiter(&c, r, NULL, KEEL_LIMITER_FAIL_OPEN, 1000);
    keel_chain *ch;
    ASSERT_OK(keel_chain_create(&ch));
    keel_layer *layer;
    ASSERT_OK(keel_limiter_layer(l, NULL, NULL, &layer));
    ASSERT_OK(keel_chain_add_take(ch, layer));
    int ran = 0;
    keel_call call;
    for (int i = 0; i < 2; i++) {
        keel_call_init(&call, "op", NULL);
        ASSERT_OK(keel_chain_run(ch, &call, count_terminal, &ran));
    }
    keel_call_init(&call, "op", NULL);
    assert_int_equal(KEEL_EAGAIN, keel_chain_run(ch, &call, count_terminal, &ran));
    assert_int_equal(2, ran);
    assert_int_equal(60000, call.wait_ms);
    assert_string_equal(name, call.refused_by);
    /* the default prefix is keel:rl:<name>: and the log is a list of two times */
    char key[200];
    snprintf(key, sizeof(key), "keel:rl:%s:op", name);
    assert_int_equal(2, redis_int(r, "LLEN", key));
    keel_chain_destroy(ch);
    keel_limiter_destroy(l);
    keel_redis_close(r);
}

/* ------------------------------------------------------ HTTP middleware -- */

static keel_err ok_handler(keel_ctx *cx, void *ud)
{
    (void)ud;
    return keel_resp_success(cx, 200, json_pack("{s:b}", "ok", 1), NULL);
}

static void expect_header(const keel_test_resp *r, const char *name, const char *value)
{
    char v[256];
    assert_true(keel_test_resp_header(r, name, v, sizeof(v)));
    assert_string_equal(value, v);
}

/* keel_mw_rate_limit over a Redis limiter: the same headers and 429 as over memory. */
static void test_http_middleware(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1700000000000ull);
    keel_limiter_config lc;
    keel_limiter_config_default(&lc);
    lc.rate = 3;
    lc.period_ms = 60000; /* one every 20 s */
    lc.burst = 2;         /* 3 at once */
    lc.clock = &mc.clock;
    keel_redis *redis = keel_test_redis_open(redis_url, 2);
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), "http");
    keel_limiter *lim = redis_limiter(&lc, redis, prefix, KEEL_LIMITER_FAIL_OPEN, 1000);
    keel_diag d = {KEEL_OK, 0, ""};
    keel_router *router;
    ASSERT_OK(keel_router_create(&router));
    ASSERT_OK(keel_router_add(router, KEEL_METHOD_GET, "/api/x", ok_handler, NULL, 0, &d));
    keel_mw_rate_limit_config rc;
    keel_mw_rate_limit_config_default(&rc);
    rc.limiter = lim;
    keel_layer *layer;
    ASSERT_OK(keel_mw_rate_limit(&rc, &layer));
    keel_http_chain_config hc;
    keel_http_chain_config_default(&hc);
    hc.access_log = 0;
    hc.rate_limit = layer;
    keel_chain *chain;
    ASSERT_OK(keel_http_chain_build(&hc, &chain));
    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.port = 0;
    sc.workers = 2;
    keel_server *srv;
    ASSERT_OK(keel_server_create(&srv, &sc, router, chain, NULL, &d));
    ASSERT_OK(keel_server_start(srv, &d));
    keel_test_server ts;
    memset(&ts, 0, sizeof(ts));
    ts.port = keel_server_port(srv);
    snprintf(ts.base_url, sizeof(ts.base_url), "http://127.0.0.1:%u", ts.port);

    const char *remaining[] = {"\"default\";r=2;t=20", "\"default\";r=1;t=40",
                               "\"default\";r=0;t=60"};
    keel_test_resp r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(0, keel_test_http(&ts, "GET", "/api/x", NULL, NULL, 0, &r));
        assert_int_equal(200, r.status);
        expect_header(&r, "RateLimit-Policy", "\"default\";q=3;w=60");
        expect_header(&r, "RateLimit", remaining[i]);
        keel_test_resp_free(&r);
    }
    assert_int_equal(0, keel_test_http(&ts, "GET", "/api/x", NULL, NULL, 0, &r));
    assert_int_equal(429, r.status);
    expect_header(&r, "Retry-After", "20");
    expect_header(&r, "RateLimit", "\"default\";r=0;t=60");
    keel_test_resp_free(&r);
    keel_server_destroy(srv);
    keel_router_destroy(router);
    keel_limiter_destroy(lim);
    keel_redis_close(redis);
}

/* -------------------------------------------------------- two processes -- */

/* Each child opens its own pool (hiredis connections do not survive fork) and takes
 * `tries` times on the same key at the same frozen time; it reports its allowed count. */
static int child_takes(const keel_limiter_config *base, const char *prefix, unsigned tries)
{
    keel_redis_config rc;
    keel_redis_config_default(&rc);
    rc.url = redis_url;
    keel_redis *r = NULL;
    if (keel_redis_open(&r, &rc, NULL) != KEEL_OK)
        return -1;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1700000000000ull);
    keel_limiter_config c = *base;
    c.clock = &mc.clock;
    keel_limiter_redis_config lrc;
    keel_limiter_redis_config_default(&lrc);
    lrc.redis = r;
    lrc.prefix = prefix;
    lrc.on_error = KEEL_LIMITER_FAIL_CLOSED;
    keel_limiter *l = NULL;
    if (keel_limiter_redis_create(&c, &lrc, &l, NULL) != KEEL_OK)
        return -1;
    int allowed = 0;
    for (unsigned i = 0; i < tries; i++) {
        keel_err e = keel_limiter_take(l, KEEL_STR_LIT("shared"), 1, NULL);
        if (e == KEEL_OK)
            allowed++;
        else if (e != KEEL_EAGAIN)
            return -1;
    }
    keel_limiter_destroy(l);
    keel_redis_close(r);
    return allowed;
}

static void test_two_processes_share_budget(void **state)
{
    (void)state;
    for (int algo = KEEL_LIMIT_GCRA; algo <= KEEL_LIMIT_SLIDING_WINDOW; algo++) {
        keel_limiter_config c;
        keel_limiter_config_default(&c);
        c.algorithm = (keel_limit_algo)algo;
        c.rate = 1;
        c.period_ms = 3600000;
        c.burst = 49; /* limit 50 */
        c.capacity = 50;
        c.refill_per_s = 1;
        c.limit = 50;
        c.window_ms = 3600000;
        char prefix[160], tag[32];
        snprintf(tag, sizeof(tag), "fork%d", algo);
        prefix_for(prefix, sizeof(prefix), tag);
        int fds[2][2];
        pid_t pids[2];
        for (int i = 0; i < 2; i++) {
            assert_int_equal(0, pipe(fds[i]));
            pids[i] = fork();
            assert_true(pids[i] >= 0);
            if (pids[i] == 0) {
                int n = child_takes(&c, prefix, 80);
                ssize_t w = write(fds[i][1], &n, sizeof(n));
                _exit(w == (ssize_t)sizeof(n) ? 0 : 1);
            }
            close(fds[i][1]);
        }
        int total = 0;
        for (int i = 0; i < 2; i++) {
            int n = -1, st = 0;
            assert_int_equal(sizeof(n), read(fds[i][0], &n, sizeof(n)));
            close(fds[i][0]);
            assert_int_equal(pids[i], waitpid(pids[i], &st, 0));
            assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            assert_true(n >= 0);
            total += n;
        }
        assert_int_equal(50, total); /* 160 tries, one budget of 50 */
    }
}

/* ------------------------------------------------------------------ TTLs -- */

static void test_keys_expire(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    for (int algo = KEEL_LIMIT_GCRA; algo <= KEEL_LIMIT_SLIDING_WINDOW; algo++) {
        keel_manual_clock mc;
        keel_manual_clock_init(&mc, 1700000000000ull); /* a multiple of 100 */
        keel_limiter_config c;
        keel_limiter_config_default(&c);
        c.algorithm = (keel_limit_algo)algo;
        c.rate = 10;
        c.period_ms = 1000;
        c.burst = 1;     /* GCRA: one take leaves a TAT 100 ms ahead */
        c.capacity = 10; /* one token refills in 100 ms */
        c.refill_per_s = 10;
        c.limit = 5;
        c.window_ms = 50; /* log: 50 ms; window: 2 windows = 100 ms */
        c.clock = &mc.clock;
        char prefix[160], tag[32], key[200];
        snprintf(tag, sizeof(tag), "ttl%d", algo);
        prefix_for(prefix, sizeof(prefix), tag);
        snprintf(key, sizeof(key), "%sidle", prefix);
        keel_limiter *l = redis_limiter(&c, r, prefix, KEEL_LIMITER_FAIL_CLOSED, 20);
        /* a peek writes nothing */
        ASSERT_OK(keel_limiter_take(l, KEEL_STR_LIT("idle"), 0, NULL));
        assert_int_equal(0, redis_int(r, "EXISTS", key));
        ASSERT_OK(keel_limiter_take(l, KEEL_STR_LIT("idle"), 1, NULL));
        assert_int_equal(1, redis_int(r, "EXISTS", key));
        int64_t pttl = redis_int(r, "PTTL", key);
        int64_t want = algo == KEEL_LIMIT_SLIDING_LOG ? 70 : 120; /* state life + 20 */
        if (pttl <= 0 || pttl > want)
            fprintf(stderr, "algorithm %d: PTTL %lld, expected (0, %lld]\n", algo,
                    (long long)pttl, (long long)want);
        assert_true(pttl > 0 && pttl <= want);
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
        assert_int_equal(0, redis_int(r, "EXISTS", key));
        keel_limiter_destroy(l);
    }
    keel_redis_close(r);
}

/* ------------------------------------------------------- Redis unavailable -- */

static void test_unavailable_fail_open(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_vanishing();
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_limiter_config c;
    keel_limiter_config_default(&c); /* GCRA 10/s burst 10: limit 11 */
    c.name = "down";
    keel_limiter_redis_config rc;
    keel_limiter_redis_config_default(&rc);
    assert_int_equal(KEEL_LIMITER_FAIL_OPEN, rc.on_error);
    rc.redis = r;
    rc.metrics = m;
    keel_limiter *l = NULL;
    ASSERT_OK(keel_limiter_redis_create(&c, &rc, &l, NULL));
    keel_limit_result res;
    for (int i = 0; i < 3; i++) {
        memset(&res, 0xFF, sizeof(res));
        ASSERT_OK(keel_limiter_take(l, KEEL_STR_LIT("k"), 1, &res));
        assert_int_equal(11, res.limit);
        assert_int_equal(11, res.remaining);
        assert_int_equal(0, res.reset_ms);
        assert_int_equal(0, res.retry_after_ms);
    }
    assert_int_equal(3, keel_limiter_redis_errors(l));
    keel_buf out;
    keel_buf_init(&out, 1 << 20);
    ASSERT_OK(keel_metrics_expose(m, "", &out));
    assert_non_null(strstr(out.ptr, "rate_limiter_backend_errors_total{limiter=\"down\"} 3"));
    keel_buf_cleanup(&out);
    keel_limiter_destroy(l);
    keel_redis_close(r);
    keel_metrics_destroy(m);
}

static void test_unavailable_fail_closed(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_vanishing();
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.algorithm = KEEL_LIMIT_TOKEN_BUCKET;
    keel_limiter *l = redis_limiter(&c, r, "x:", KEEL_LIMITER_FAIL_CLOSED, 1000);
    keel_limit_result res;
    assert_int_equal(KEEL_EIO, keel_limiter_take(l, KEEL_STR_LIT("k"), 1, &res));
    assert_int_equal(10, res.limit);
    /* the chain layer refuses the call without running it */
    keel_chain *ch;
    ASSERT_OK(keel_chain_create(&ch));
    keel_layer *layer;
    ASSERT_OK(keel_limiter_layer(l, NULL, NULL, &layer));
    ASSERT_OK(keel_chain_add_take(ch, layer));
    int ran = 0;
    keel_call call;
    keel_call_init(&call, "op", NULL);
    assert_int_equal(KEEL_EIO, keel_chain_run(ch, &call, count_terminal, &ran));
    assert_int_equal(0, ran);
    assert_int_equal(2, keel_limiter_redis_errors(l));
    keel_chain_destroy(ch);
    keel_limiter_destroy(l);
    keel_redis_close(r);
}

/* ------------------------------------------------------------ Redis TIME -- */

static void test_redis_time(void **state)
{
    (void)state;
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    c.rate = 1;
    c.period_ms = 3600000;
    c.burst = 2;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), "time");
    keel_limiter_redis_config rc;
    keel_limiter_redis_config_default(&rc);
    rc.redis = r;
    rc.prefix = prefix;
    rc.time = KEEL_LIMITER_TIME_REDIS;
    keel_limiter *l = NULL;
    ASSERT_OK(keel_limiter_redis_create(&c, &rc, &l, NULL));
    keel_limit_result res;
    for (uint32_t i = 0; i < 3; i++) {
        ASSERT_OK(keel_limiter_take(l, KEEL_STR_LIT("k"), 1, &res));
        assert_int_equal(2 - i, res.remaining);
    }
    assert_int_equal(KEEL_EAGAIN, keel_limiter_take(l, KEEL_STR_LIT("k"), 1, &res));
    /* one every hour: the next slot is an hour after the first take, less elapsed time */
    assert_true(res.retry_after_ms <= 3600000 && res.retry_after_ms > 3600000 - 60000);
    keel_limiter_destroy(l);
    keel_redis_close(r);
}

/* ------------------------------------------------------------ bad config -- */

static void expect_bad(const keel_limiter_config *c, const keel_limiter_redis_config *rc,
                       const char *field)
{
    keel_limiter *l = (keel_limiter *)(uintptr_t)1;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_EINVAL, keel_limiter_redis_create(c, rc, &l, &d));
    assert_null(l);
    assert_int_equal(KEEL_EINVAL, d.code);
    char want[64];
    snprintf(want, sizeof(want), "limiter: %s ", field);
    if (strstr(d.msg, want) == NULL)
        fprintf(stderr, "diag \"%s\" does not name %s\n", d.msg, field);
    assert_non_null(strstr(d.msg, want));
}

static void test_bad_config(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    keel_limiter_config c;
    keel_limiter_redis_config rc;
#define RESET()                                                                                    \
    do {                                                                                           \
        keel_limiter_config_default(&c);                                                           \
        keel_limiter_redis_config_default(&rc);                                                    \
        rc.redis = r;                                                                              \
    } while (0)
    RESET();
    rc.redis = NULL;
    expect_bad(&c, &rc, "redis");
    RESET();
    rc.size = 0;
    expect_bad(&c, &rc, "size");
    RESET();
    char longp[KEEL_LIMITER_PREFIX_MAX + 2];
    memset(longp, 'p', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    rc.prefix = longp;
    expect_bad(&c, &rc, "prefix");
    RESET();
    rc.time = (keel_limiter_time)9;
    expect_bad(&c, &rc, "time");
    RESET();
    rc.on_error = (keel_limiter_on_error)7;
    expect_bad(&c, &rc, "on_error");
    RESET();
    rc.ttl_extra_ms = 86400001u;
    expect_bad(&c, &rc, "ttl_extra_ms");
    /* the algorithm's own fields, validated as by keel_limiter_create() */
    RESET();
    c.rate = 0;
    expect_bad(&c, &rc, "rate");
    RESET();
    c.algorithm = KEEL_LIMIT_TOKEN_BUCKET;
    c.refill_per_s = 0;
    expect_bad(&c, &rc, "refill_per_s");
    RESET();
    c.algorithm = (keel_limit_algo)42;
    expect_bad(&c, &rc, "algorithm");
    /* Lua's 53-bit arithmetic */
    RESET();
    c.rate = 1;
    c.period_ms = 604800000; /* T = 6.048e11 us; (burst + 1) * T > 2^50 */
    c.burst = 2000;
    expect_bad(&c, &rc, "burst");
    RESET();
    c.algorithm = KEEL_LIMIT_SLIDING_WINDOW;
    c.limit = 4000000000u;
    c.window_ms = 604800000;
    expect_bad(&c, &rc, "limit");
    RESET();
    c.name = NULL; /* default name "limiter" */
    keel_limiter *l = NULL;
    assert_int_equal(KEEL_EINVAL, keel_limiter_redis_create(&c, NULL, &l, NULL));
    assert_int_equal(KEEL_EINVAL, keel_limiter_redis_create(NULL, &rc, &l, NULL));
    assert_int_equal(KEEL_EINVAL, keel_limiter_redis_create(&c, &rc, NULL, NULL));
    ASSERT_OK(keel_limiter_redis_create(&c, &rc, &l, NULL));
    keel_limiter_destroy(l);
#undef RESET
    keel_redis_close(r);
}

/* Allocation failures during create leave nothing behind (ASan checks the leaks). */
static void test_create_oom(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    keel_limiter_config c;
    keel_limiter_config_default(&c);
    keel_limiter_redis_config rc;
    keel_limiter_redis_config_default(&rc);
    rc.redis = r;
    keel_test_failalloc_install();
    int ok = 0;
    for (int n = 0; n < 200 && !ok; n++) {
        keel_limiter *l = NULL;
        keel_test_failalloc_arm(n);
        keel_err e = keel_limiter_redis_create(&c, &rc, &l, NULL);
        keel_test_failalloc_arm(-1);
        if (e == KEEL_OK) {
            ok = 1;
            keel_limiter_destroy(l);
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
            assert_null(l);
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
    snprintf(run_prefix, sizeof(run_prefix), "keeltest:rl:%ld:%ld:", (long)getpid(),
             (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equivalence_gcra),
        cmocka_unit_test(test_equivalence_token_bucket),
        cmocka_unit_test(test_equivalence_sliding_log),
        cmocka_unit_test(test_equivalence_sliding_window),
        cmocka_unit_test(test_gcra_redis_cell_vector),
        cmocka_unit_test(test_chain_layer_and_default_prefix),
        cmocka_unit_test(test_http_middleware),
        cmocka_unit_test(test_two_processes_share_budget),
        cmocka_unit_test(test_keys_expire),
        cmocka_unit_test(test_unavailable_fail_open),
        cmocka_unit_test(test_unavailable_fail_closed),
        cmocka_unit_test(test_redis_time),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_create_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
