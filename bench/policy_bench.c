/* policy_bench.c - cost of keel's resilience policies.
 *
 *  1. Per-call overhead of a six-policy chain (timer, retry, circuit breaker, bulkhead,
 *     GCRA rate limiter, log-execution timer) around a no-op, against calling the no-op
 *     through an empty chain; target <= 1 us per call.
 *  2. In-memory limiter decisions per second from 2 threads (GCRA, one key per thread,
 *     limit high enough never to refuse); target >= 10 M/s.
 *
 * Rounds are interleaved and the median reported, so machine noise hits both sides. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keel/keel.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile uint64_t sink;

static keel_err noop(void *cx, void *ud)
{
    (void)cx;
    (void)ud;
    sink++;
    return KEEL_OK;
}

static keel_str one_key(const keel_call *call, void *ud)
{
    (void)call;
    (void)ud;
    return KEEL_STR_LIT("bench");
}

static double run_chain(const keel_chain *c, unsigned n)
{
    keel_call call;
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        keel_call_init(&call, "bench", NULL);
        if (keel_chain_run(c, &call, noop, NULL) != KEEL_OK) {
            fprintf(stderr, "policy_bench: the chain refused a call\n");
            exit(1);
        }
    }
    return (double)(now_ns() - t0) / n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define CHECK(e)                                                                                   \
    do {                                                                                           \
        keel_err e_ = (e);                                                                         \
        if (e_ != KEEL_OK) {                                                                       \
            fprintf(stderr, "policy_bench: %s: %s\n", #e, keel_strerror(e_));                      \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct lim_arg {
    keel_limiter *l;
    char key[16];
    unsigned n;
    uint64_t ns;
} lim_arg;

static void *lim_thread(void *p)
{
    lim_arg *a = p;
    keel_limit_result r;
    keel_str k = keel_str_c(a->key);
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < a->n; i++)
        if (keel_limiter_take(a->l, k, 1, &r) != KEEL_OK)
            abort();
    a->ns = now_ns() - t0;
    return NULL;
}

int main(void)
{
    unsigned n = getenv("BENCH_CALLS") ? (unsigned)strtoul(getenv("BENCH_CALLS"), NULL, 10) : 2000000;
    keel_metrics *m;
    CHECK(keel_metrics_create(&m));
    keel_diag d;

    keel_timer_config tc;
    keel_timer_config_default(&tc);
    tc.metrics = m;
    keel_timer *timer, *logexec;
    CHECK(keel_timer_create(&timer, &tc, &d));
    CHECK(keel_timer_create(&logexec, &tc, &d));
    keel_retry_config rc;
    keel_retry_config_default(&rc);
    keel_retry *retry;
    CHECK(keel_retry_create(&retry, &rc, &d));
    keel_breaker_config bc;
    keel_breaker_config_default(&bc);
    bc.name = "bench";
    bc.metrics = m;
    keel_breaker *breaker;
    CHECK(keel_breaker_create(&breaker, &bc, &d));
    keel_bulkhead_config hc;
    keel_bulkhead_config_default(&hc);
    hc.max_concurrent = 64;
    keel_bulkhead *bulk;
    CHECK(keel_bulkhead_create(&bulk, &hc, &d));
    keel_limiter_config lc;
    keel_limiter_config_default(&lc);
    lc.algorithm = KEEL_LIMIT_GCRA;
    lc.rate = 1000000u; /* 1 per microsecond: the limiter's resolution; never refuses here */
    lc.period_ms = 1000;
    lc.burst = 1000000000u;
    keel_limiter *lim;
    if (keel_limiter_create(&lc, &lim, &d) != KEEL_OK) {
        fprintf(stderr, "policy_bench: limiter: %s\n", d.msg);
        return 1;
    }

    keel_chain *full, *empty;
    CHECK(keel_chain_create(&full));
    CHECK(keel_chain_create(&empty));
    keel_layer *l;
    CHECK(keel_timer_layer(timer, &l));
    CHECK(keel_chain_add_take(full, l));
    CHECK(keel_retry_layer(retry, &l));
    CHECK(keel_chain_add_take(full, l));
    CHECK(keel_breaker_layer(breaker, &l));
    CHECK(keel_chain_add_take(full, l));
    CHECK(keel_bulkhead_layer(bulk, &l));
    CHECK(keel_chain_add_take(full, l));
    CHECK(keel_limiter_layer(lim, one_key, NULL, &l));
    CHECK(keel_chain_add_take(full, l));
    CHECK(keel_timer_layer(logexec, &l));
    CHECK(keel_chain_add_take(full, l));

    run_chain(full, n / 10); /* warm-up */
    double bare[5], six[5];
    for (int r = 0; r < 5; r++) {
        bare[r] = run_chain(empty, n);
        six[r] = run_chain(full, n);
    }
    qsort(bare, 5, sizeof(double), cmp_double);
    qsort(six, 5, sizeof(double), cmp_double);
    double over = six[2] - bare[2];
    printf("six-policy chain (timer, retry, breaker, bulkhead, GCRA limiter, timer) around a no-op,"
           " %u calls x 5 rounds\n",
           n);
    printf("   empty chain      %8.1f ns/call (median)\n", bare[2]);
    printf("   six policies     %8.1f ns/call (median)\n", six[2]);
    printf("   overhead         %8.1f ns/call   target <= 1000 ns   %s\n", over,
           over <= 1000.0 ? "ok" : "MISSED");

    /* limiter decisions from 2 threads */
    double rates[3];
    for (int r = 0; r < 3; r++) {
        lim_arg a[2] = {{lim, "thread-a", n * 2, 0}, {lim, "thread-b", n * 2, 0}};
        pthread_t t[2];
        uint64_t t0 = now_ns();
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, lim_thread, &a[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        double secs = (double)(now_ns() - t0) / 1e9;
        rates[r] = (double)(a[0].n + a[1].n) / secs;
    }
    qsort(rates, 3, sizeof(double), cmp_double);
    printf("in-memory GCRA limiter, 2 threads (one key each), %u decisions per round x 3\n", n * 4);
    printf("   decisions        %8.2f M/s (median)   target >= 10 M/s   %s\n", rates[1] / 1e6,
           rates[1] >= 10e6 ? "ok" : "MISSED");

    keel_chain_destroy(full);
    keel_chain_destroy(empty);
    keel_limiter_destroy(lim);
    keel_bulkhead_destroy(bulk);
    keel_breaker_destroy(breaker);
    keel_retry_destroy(retry);
    keel_timer_destroy(timer);
    keel_timer_destroy(logexec);
    keel_metrics_destroy(m);
    return 0;
}
