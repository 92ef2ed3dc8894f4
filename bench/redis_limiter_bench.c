/* redis_limiter_bench.c - Redis-backed rate limiter (src/resilience/limiter_redis.c).
 *
 *  1. The PING round trip to the server, measured in the same run: the floor under any
 *     one-command decision.
 *  2. GCRA decisions per second (one EVALSHA each, no pipelining) from 1 and 2 threads, one
 *     key per thread, limit high enough never to refuse.
 *
 * Needs a Redis: KEEL_TEST_REDIS_URL (bench/policy.sh starts a throwaway one when it is
 * unset).  BENCH_REDIS_CALLS sets the decisions per thread and round (default 20000).
 * Rounds are repeated and the median reported. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keel/keel.h>
#include <keel/limiter.h>
#include <keel/redis.h>

#define ROUNDS 5

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct lim_arg {
    keel_limiter *l;
    char key[64];
    unsigned n;
    int failed;
} lim_arg;

static void *lim_thread(void *p)
{
    lim_arg *a = p;
    keel_str k = keel_str_c(a->key);
    for (unsigned i = 0; i < a->n; i++)
        if (keel_limiter_take(a->l, k, 1, NULL) != KEEL_OK)
            a->failed = 1;
    return NULL;
}

/* Decisions per second from `threads` threads, median of ROUNDS. */
static double decisions(keel_limiter *l, int threads, unsigned n)
{
    double rates[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        lim_arg a[2];
        pthread_t t[2];
        memset(a, 0, sizeof(a));
        for (int i = 0; i < threads; i++) {
            a[i].l = l;
            a[i].n = n;
            snprintf(a[i].key, sizeof(a[i].key), "bench-%d-%d-%ld", threads, i, (long)getpid());
        }
        uint64_t t0 = now_ns();
        for (int i = 0; i < threads; i++)
            pthread_create(&t[i], NULL, lim_thread, &a[i]);
        for (int i = 0; i < threads; i++)
            pthread_join(t[i], NULL);
        double secs = (double)(now_ns() - t0) / 1e9;
        for (int i = 0; i < threads; i++)
            if (a[i].failed) {
                fprintf(stderr, "redis_limiter_bench: a take failed or was refused\n");
                exit(1);
            }
        rates[r] = (double)n * threads / secs;
    }
    qsort(rates, ROUNDS, sizeof(double), cmp_double);
    return rates[ROUNDS / 2];
}

int main(void)
{
    const char *url = getenv("KEEL_TEST_REDIS_URL");
    if (url == NULL || *url == '\0') {
        fprintf(stderr, "redis_limiter_bench: KEEL_TEST_REDIS_URL is not set\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    unsigned n = getenv("BENCH_REDIS_CALLS")
                     ? (unsigned)strtoul(getenv("BENCH_REDIS_CALLS"), NULL, 10)
                     : 20000;
    if (n == 0)
        n = 1;
    keel_redis_config rc;
    keel_redis_config_default(&rc);
    rc.url = url;
    rc.pool_size = 2;
    keel_redis *redis = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    if (keel_redis_open(&redis, &rc, &d) != KEEL_OK) {
        fprintf(stderr, "redis_limiter_bench: %s\n", d.msg);
        return 1;
    }

    /* PING round trip: median of ROUNDS rounds of n sequential PINGs */
    double rtt[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < n; i++)
            if (keel_redis_ping(redis, NULL, 0) != KEEL_OK) {
                fprintf(stderr, "redis_limiter_bench: PING failed\n");
                return 1;
            }
        rtt[r] = (double)(now_ns() - t0) / n / 1000.0;
    }
    qsort(rtt, ROUNDS, sizeof(double), cmp_double);

    keel_limiter_config lc;
    keel_limiter_config_default(&lc);
    lc.algorithm = KEEL_LIMIT_GCRA;
    lc.name = "bench";
    lc.rate = 1000000u; /* 1 per microsecond: never refuses here */
    lc.period_ms = 1000;
    lc.burst = 1000000000u;
    keel_limiter_redis_config lrc;
    keel_limiter_redis_config_default(&lrc);
    lrc.redis = redis;
    lrc.on_error = KEEL_LIMITER_FAIL_CLOSED; /* an error must not pass as a decision */
    lrc.ttl_extra_ms = 60000;
    keel_limiter *lim = NULL;
    if (keel_limiter_redis_create(&lc, &lrc, &lim, &d) != KEEL_OK) {
        fprintf(stderr, "redis_limiter_bench: limiter: %s\n", d.msg);
        return 1;
    }
    if (keel_limiter_take(lim, KEEL_STR_LIT("warm-up"), 1, NULL) != KEEL_OK) { /* loads it */
        fprintf(stderr, "redis_limiter_bench: first take failed\n");
        return 1;
    }
    double one = decisions(lim, 1, n);
    double two = decisions(lim, 2, n);

    printf("Redis GCRA limiter (EVALSHA, no pipelining), %u decisions per thread x %d rounds"
           " (median)\n",
           n, ROUNDS);
    printf("   PING round trip  %8.1f RTT us\n", rtt[ROUNDS / 2]);
    printf("   1 thread         %8.0f decisions/s   (%.1f us each)\n", one, 1e6 / one);
    printf("   2 threads        %8.0f decisions/s\n", two);

    keel_limiter_destroy(lim);
    keel_redis_close(redis);
    return 0;
}
