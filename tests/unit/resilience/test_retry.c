/* Tests for src/resilience/retry.c: backoff formulas, stop conditions, predicate,
 * Retry-After, hooks and config validation.  Time is a keel_manual_clock; nothing sleeps. */
#include "test.h"

#include <math.h>
#include <string.h>

#include "keel_int.h"

#include <keel/retry.h>

/* ----------------------------------------------------------- fixtures -- */

static const uint64_t SEQ[] = {12345, 987654321, UINT64_C(9223372036854775825), 42, 7777777};

typedef struct seq_rand {
    const uint64_t *v;
    size_t n, i;
} seq_rand;

static uint64_t seq_next(void *ud)
{
    seq_rand *s = ud;
    uint64_t v = s->v[s->i % s->n];
    s->i++;
    return v;
}

/* A terminal scripted with one error per attempt (KEEL_OK ends it), with optional hints. */
typedef struct script {
    keel_err errs[16];
    size_t n;
    int retriable[16];        /* per attempt: 0 leave unset, 1 set retriable=1, -1 set 0 */
    uint64_t retry_after[16]; /* per attempt */
    unsigned calls;
    unsigned bad_reset; /* attempts that did not start with a reset call */
    keel_manual_clock *mc;
    uint64_t work_ms; /* clock advance per attempt */
} script;

static keel_err scripted(keel_call *call, void *ud)
{
    script *s = ud;
    unsigned i = s->calls++;
    if (call->retriable != -1 || call->retry_after_ms != 0 || call->wait_ms != 0 ||
        call->attempt != s->calls)
        s->bad_reset++;
    if (s->mc != NULL)
        keel_manual_clock_advance(s->mc, s->work_ms);
    keel_err e = i < s->n ? s->errs[i] : s->errs[s->n - 1];
    if (i < 16) {
        if (s->retriable[i] != 0)
            call->retriable = s->retriable[i] > 0 ? 1 : 0;
        call->retry_after_ms = s->retry_after[i];
    }
    return e;
}

static keel_err chain_terminal(void *cx, void *ud)
{
    return scripted((keel_call *)cx, ud);
}

typedef struct sleep_log {
    unsigned n;
    unsigned attempts[16];
    uint64_t delays[16];
    keel_err errs[16];
} sleep_log;

static void record_sleep(const keel_call *call, keel_err e, uint64_t delay_ms, void *ud)
{
    sleep_log *l = ud;
    if (l->n < 16) {
        l->attempts[l->n] = call->attempt;
        l->delays[l->n] = delay_ms;
        l->errs[l->n] = e;
    }
    l->n++;
}

static void base_cfg(keel_retry_config *c, keel_manual_clock *mc, sleep_log *sl)
{
    keel_retry_config_default(c);
    c->jitter = KEEL_JITTER_NONE;
    c->base_delay_ms = 100;
    c->max_delay_ms = 10000;
    c->clock = &mc->clock;
    if (sl != NULL) {
        c->before_sleep = record_sleep;
        c->before_sleep_ud = sl;
    }
}

/* --------------------------------------------------- pure delay function -- */

static void test_defaults(void **state)
{
    (void)state;
    keel_retry_config c;
    keel_retry_config_default(&c);
    assert_int_equal(sizeof(c), c.size);
    assert_int_equal(3, c.max_attempts);
    assert_int_equal(0, c.max_elapsed_ms);
    assert_int_equal(100, c.base_delay_ms);
    assert_int_equal(10000, c.max_delay_ms);
    assert_true(c.multiplier == 2.0);
    assert_int_equal(KEEL_JITTER_FULL, c.jitter);
    assert_null(c.should_retry);
    assert_null(c.before_sleep);
    assert_null(c.rand_u64);
    assert_null(c.clock);
    ASSERT_OK(keel_retry_config_validate(&c, NULL));
}

static void test_delay_none(void **state)
{
    (void)state;
    keel_retry_config c;
    keel_retry_config_default(&c);
    c.jitter = KEEL_JITTER_NONE;
    const uint64_t want[] = {100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000};
    for (unsigned a = 1; a <= 9; a++)
        assert_int_equal(want[a - 1], keel_retry_delay_ms(&c, a, 0, 999));
    assert_int_equal(10000, keel_retry_delay_ms(&c, 4000000000u, 0, 0)); /* no overflow */
    assert_int_equal(0, keel_retry_delay_ms(&c, 0, 0, 0));
    assert_int_equal(0, keel_retry_delay_ms(NULL, 1, 0, 0));
    /* non-integer multiplier truncates: 100, 150, 225, 337.5 */
    c.multiplier = 1.5;
    assert_int_equal(100, keel_retry_delay_ms(&c, 1, 0, 0));
    assert_int_equal(150, keel_retry_delay_ms(&c, 2, 0, 0));
    assert_int_equal(225, keel_retry_delay_ms(&c, 3, 0, 0));
    assert_int_equal(337, keel_retry_delay_ms(&c, 4, 0, 0));
    /* multiplier 1 = constant backoff */
    c.multiplier = 1.0;
    assert_int_equal(100, keel_retry_delay_ms(&c, 7, 0, 0));
    /* AWS table (base 100 ms, cap 10 s): attempt index 3 -> 800, 6 -> 6400, 7 -> 10000 */
    c.multiplier = 2.0;
    assert_int_equal(800, keel_retry_delay_ms(&c, 4, 0, 0));
    assert_int_equal(6400, keel_retry_delay_ms(&c, 7, 0, 0));
    assert_int_equal(10000, keel_retry_delay_ms(&c, 8, 0, 0));
}

static void test_delay_full(void **state)
{
    (void)state;
    keel_retry_config c;
    keel_retry_config_default(&c);
    c.jitter = KEEL_JITTER_FULL;
    const uint64_t want[] = {23, 18, 249, 42, 119}; /* rnd % (temp + 1) */
    for (unsigned a = 1; a <= 5; a++)
        assert_int_equal(want[a - 1], keel_retry_delay_ms(&c, a, 0, SEQ[a - 1]));
    /* range ends: [0, temp] */
    assert_int_equal(0, keel_retry_delay_ms(&c, 1, 0, 0));
    assert_int_equal(100, keel_retry_delay_ms(&c, 1, 0, 100));
    assert_int_equal(0, keel_retry_delay_ms(&c, 1, 0, 101));
    assert_int_equal(10000, keel_retry_delay_ms(&c, 30, 0, 10000));
    assert_int_equal(UINT64_MAX % 10001, keel_retry_delay_ms(&c, 30, 0, UINT64_MAX));
}

static void test_delay_equal(void **state)
{
    (void)state;
    keel_retry_config c;
    keel_retry_config_default(&c);
    c.jitter = KEEL_JITTER_EQUAL;
    const uint64_t want[] = {53, 166, 393, 442, 867}; /* temp/2 + rnd % (temp/2 + 1) */
    for (unsigned a = 1; a <= 5; a++)
        assert_int_equal(want[a - 1], keel_retry_delay_ms(&c, a, 0, SEQ[a - 1]));
    /* AWS table: attempt index 0 -> [50, 100]; >= 7 -> [5000, 10000] */
    assert_int_equal(50, keel_retry_delay_ms(&c, 1, 0, 0));
    assert_int_equal(100, keel_retry_delay_ms(&c, 1, 0, 50));
    assert_int_equal(5000, keel_retry_delay_ms(&c, 20, 0, 0));
    assert_int_equal(10000, keel_retry_delay_ms(&c, 20, 0, 5000));
    /* odd temp: [ceil(101/2), 101] = [51, 101] */
    c.base_delay_ms = 101;
    c.multiplier = 1.0;
    assert_int_equal(51, keel_retry_delay_ms(&c, 1, 0, 0));
    assert_int_equal(101, keel_retry_delay_ms(&c, 1, 0, 50));
}

static void test_delay_decorrelated(void **state)
{
    (void)state;
    keel_retry_config c;
    keel_retry_config_default(&c);
    c.jitter = KEEL_JITTER_DECORRELATED;
    /* sleep = min(cap, base + rnd % (prev*3 - base + 1)), prev starts at base */
    const uint64_t want[] = {184, 265, 245, 142, 182};
    uint64_t prev = 0;
    for (unsigned a = 1; a <= 5; a++) {
        uint64_t d = keel_retry_delay_ms(&c, a, prev, SEQ[a - 1]);
        assert_int_equal(want[a - 1], d);
        prev = d;
    }
    c.max_delay_ms = 1000;
    assert_int_equal(119, keel_retry_delay_ms(&c, 1, 0, 1000999));
    assert_int_equal(356, keel_retry_delay_ms(&c, 2, 119, 1000000000));
    assert_int_equal(1000, keel_retry_delay_ms(&c, 3, 356, 968)); /* 1068 capped */
    assert_int_equal(100, keel_retry_delay_ms(&c, 1, 0, 0));
    assert_int_equal(300, keel_retry_delay_ms(&c, 1, 0, 200));
}

/* ----------------------------------------------------------- the layer -- */

static void test_success_on_third_attempt(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1000);
    sleep_log sl = {0};
    keel_retry_config c;
    base_cfg(&c, &mc, &sl);
    c.max_attempts = 5;
    keel_retry *r;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    keel_chain *ch;
    keel_layer *l;
    ASSERT_OK(keel_chain_create(&ch));
    ASSERT_OK(keel_retry_layer(r, &l));
    assert_string_equal("retry", l->name);
    ASSERT_OK(keel_chain_add_take(ch, l));

    script s = {.errs = {KEEL_ETIMEOUT, KEEL_EIO, KEEL_OK}, .n = 3};
    keel_call call;
    keel_call_init(&call, "stripe.charge", NULL);
    ASSERT_OK(keel_chain_run(ch, &call, chain_terminal, &s));
    assert_int_equal(3, call.attempt);
    assert_int_equal(3, s.calls);
    assert_int_equal(0, s.bad_reset);
    assert_int_equal(300, mc.slept_total); /* 100 + 200 */
    assert_int_equal(2, mc.sleeps);
    assert_int_equal(1300, mc.now);
    assert_int_equal(2, sl.n);
    assert_int_equal(1, sl.attempts[0]);
    assert_int_equal(100, sl.delays[0]);
    assert_int_equal(KEEL_ETIMEOUT, sl.errs[0]);
    assert_int_equal(2, sl.attempts[1]);
    assert_int_equal(200, sl.delays[1]);
    assert_int_equal(KEEL_EIO, sl.errs[1]);

    /* first-attempt success: no sleep */
    script ok = {.errs = {KEEL_OK}, .n = 1};
    ASSERT_OK(keel_chain_run(ch, &call, chain_terminal, &ok));
    assert_int_equal(1, call.attempt);
    assert_int_equal(300, mc.slept_total);
    keel_chain_destroy(ch);
    keel_retry_destroy(r);
}

static void test_max_attempts(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_retry_config c;
    sleep_log sl = {0};
    base_cfg(&c, &mc, &sl);
    c.max_attempts = 4;
    keel_retry *r;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    script s = {.errs = {KEEL_EIO}, .n = 1};
    keel_call call;
    keel_call_init(&call, "op", NULL);
    assert_int_equal(KEEL_EIO, keel_retry_run(r, &call, scripted, &s));
    assert_int_equal(4, s.calls);
    assert_int_equal(4, call.attempt);
    assert_int_equal(700, mc.slept_total); /* 100 + 200 + 400 */
    assert_int_equal(3, mc.sleeps);
    keel_retry_destroy(r);

    /* max_attempts 1 = no retry */
    c.max_attempts = 1;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    script s1 = {.errs = {KEEL_EIO}, .n = 1};
    assert_int_equal(KEEL_EIO, keel_retry_run(r, &call, scripted, &s1));
    assert_int_equal(1, s1.calls);
    assert_int_equal(700, mc.slept_total);
    keel_retry_destroy(r);
}

static void test_max_elapsed(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 5000);
    keel_retry_config c;
    base_cfg(&c, &mc, NULL);
    c.max_attempts = 10;
    c.max_elapsed_ms = 1000;
    keel_retry *r;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    /* waits 100 (elapsed 100), 200 (300), 400 (700); 700 + 800 > 1000 -> stop */
    script s = {.errs = {KEEL_EAGAIN}, .n = 1};
    keel_call call;
    keel_call_init(&call, "op", NULL);
    assert_int_equal(KEEL_EAGAIN, keel_retry_run(r, &call, scripted, &s));
    assert_int_equal(4, s.calls);
    assert_int_equal(700, mc.slept_total);

    /* the attempts' own duration counts: 150 ms of work per attempt.
     * a1 ends 150 -> wait 100 (250); a2 ends 400 -> wait 200 (600); a3 ends 750 ->
     * 750 + 400 > 1000 -> stop after 3 attempts, slept 300 */
    keel_manual_clock_init(&mc, 0);
    script w = {.errs = {KEEL_EAGAIN}, .n = 1, .mc = &mc, .work_ms = 150};
    assert_int_equal(KEEL_EAGAIN, keel_retry_run(r, &call, scripted, &w));
    assert_int_equal(3, w.calls);
    assert_int_equal(300, mc.slept_total);
    assert_int_equal(750, mc.now);
    keel_retry_destroy(r);
}

static void test_full_jitter_sequence_through_layer(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_retry_config c;
    sleep_log sl = {0};
    base_cfg(&c, &mc, &sl);
    c.jitter = KEEL_JITTER_FULL;
    c.max_attempts = 6;
    seq_rand sr = {SEQ, 5, 0};
    c.rand_u64 = seq_next;
    c.rand_ud = &sr;
    keel_retry *r;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    script s = {.errs = {KEEL_EBUSY}, .n = 1};
    keel_call call;
    keel_call_init(&call, "op", NULL);
    assert_int_equal(KEEL_EBUSY, keel_retry_run(r, &call, scripted, &s));
    assert_int_equal(6, s.calls);
    assert_int_equal(5, sl.n);
    const uint64_t want[] = {23, 18, 249, 42, 119};
    for (int i = 0; i < 5; i++)
        assert_int_equal(want[i], sl.delays[i]);
    assert_int_equal(451, mc.slept_total);
    assert_int_equal(5, sr.i);
    keel_retry_destroy(r);

    /* decorrelated through the layer feeds the previous delay back */
    keel_manual_clock_init(&mc, 0);
    c.jitter = KEEL_JITTER_DECORRELATED;
    sr.i = 0;
    sl.n = 0;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    script d = {.errs = {KEEL_EBUSY}, .n = 1};
    assert_int_equal(KEEL_EBUSY, keel_retry_run(r, &call, scripted, &d));
    assert_int_equal(184 + 265 + 245 + 142 + 182, mc.slept_total);
    keel_retry_destroy(r);
}

static int only_parse(const keel_call *call, keel_err e, void *ud)
{
    (void)call;
    (*(int *)ud)++;
    return e == KEEL_EPARSE;
}

static void test_predicate_and_retriable_override(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_retry_config c;
    base_cfg(&c, &mc, NULL);
    c.max_attempts = 5;
    keel_retry *r;
    keel_call call;
    keel_call_init(&call, "op", NULL);

    /* default predicate: permanent errors are not retried */
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    script p = {.errs = {KEEL_EINVAL}, .n = 1};
    assert_int_equal(KEEL_EINVAL, keel_retry_run(r, &call, scripted, &p));
    assert_int_equal(1, p.calls);
    /* the terminal says retriable = 1 for a permanent-looking error */
    script p1 = {.errs = {KEEL_EPARSE, KEEL_OK}, .n = 2, .retriable = {1}};
    ASSERT_OK(keel_retry_run(r, &call, scripted, &p1));
    assert_int_equal(2, p1.calls);
    /* the terminal says retriable = 0 for a transient error */
    script p0 = {.errs = {KEEL_EIO}, .n = 1, .retriable = {-1}};
    assert_int_equal(KEEL_EIO, keel_retry_run(r, &call, scripted, &p0));
    assert_int_equal(1, p0.calls);
    assert_int_equal(0, call.retriable);
    keel_retry_destroy(r);

    /* custom predicate */
    int asked = 0;
    c.should_retry = only_parse;
    c.should_retry_ud = &asked;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    script q = {.errs = {KEEL_EPARSE, KEEL_EPARSE, KEEL_OK}, .n = 3};
    ASSERT_OK(keel_retry_run(r, &call, scripted, &q));
    assert_int_equal(3, q.calls);
    assert_int_equal(3, call.attempt);
    assert_int_equal(2, asked);
    script q2 = {.errs = {KEEL_EIO}, .n = 1};
    assert_int_equal(KEEL_EIO, keel_retry_run(r, &call, scripted, &q2));
    assert_int_equal(1, q2.calls);
    assert_int_equal(3, asked);
    /* call->retriable wins over the custom predicate too (predicate not asked) */
    script q3 = {.errs = {KEEL_EIO, KEEL_OK}, .n = 2, .retriable = {1}};
    ASSERT_OK(keel_retry_run(r, &call, scripted, &q3));
    assert_int_equal(2, q3.calls);
    assert_int_equal(3, asked);
    keel_retry_destroy(r);
}

static void test_retry_after(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_retry_config c;
    sleep_log sl = {0};
    base_cfg(&c, &mc, &sl);
    c.max_attempts = 4;
    keel_retry *r;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    keel_call call;
    keel_call_init(&call, "op", NULL);
    /* a1: Retry-After 3000 > backoff 100 -> 3000; a2: Retry-After 50 < backoff 200 -> 200 */
    script s = {.errs = {KEEL_EAGAIN, KEEL_EAGAIN, KEEL_OK},
                .n = 3,
                .retry_after = {3000, 50, 0}};
    ASSERT_OK(keel_retry_run(r, &call, scripted, &s));
    assert_int_equal(3, s.calls);
    assert_int_equal(0, s.bad_reset); /* retry_after reset before each attempt */
    assert_int_equal(3200, mc.slept_total);
    assert_int_equal(3000, sl.delays[0]);
    assert_int_equal(200, sl.delays[1]);

    /* Retry-After beyond max_delay_ms: give up, report the wait to the caller */
    uint64_t slept = mc.slept_total;
    script big = {.errs = {KEEL_EAGAIN}, .n = 1, .retry_after = {20000}};
    assert_int_equal(KEEL_EAGAIN, keel_retry_run(r, &call, scripted, &big));
    assert_int_equal(1, big.calls);
    assert_int_equal(20000, call.wait_ms);
    assert_int_equal(20000, call.retry_after_ms);
    assert_int_equal(slept, mc.slept_total);

    /* exactly max_delay_ms is honoured */
    script edge = {.errs = {KEEL_EAGAIN, KEEL_OK}, .n = 2, .retry_after = {10000}};
    ASSERT_OK(keel_retry_run(r, &call, scripted, &edge));
    assert_int_equal(slept + 10000, mc.slept_total);
    keel_retry_destroy(r);

    /* Retry-After counts against max_elapsed_ms */
    c.max_elapsed_ms = 2000;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    slept = mc.slept_total;
    script el = {.errs = {KEEL_EAGAIN}, .n = 1, .retry_after = {3000}};
    assert_int_equal(KEEL_EAGAIN, keel_retry_run(r, &call, scripted, &el));
    assert_int_equal(1, el.calls);
    assert_int_equal(slept, mc.slept_total);
    keel_retry_destroy(r);
}

/* An inner policy that refuses once with a wait hint (like a rate limiter). */
typedef struct refusing_layer {
    keel_layer base;
    int n;
} refusing_layer;

static keel_err refusing_layer_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    refusing_layer *rl = (refusing_layer *)self;
    keel_call *call = cx;
    if (rl->n++ == 0) {
        call->refused_by = "limiter";
        call->wait_ms = 700;
        return KEEL_EAGAIN;
    }
    return keel_chain_next(cur, cx);
}

static keel_err ok_terminal(void *cx, void *ud)
{
    (void)cx;
    (void)ud;
    return KEEL_OK;
}

static void test_inner_wait_hint_and_chain(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_retry_config c;
    base_cfg(&c, &mc, NULL);
    keel_retry *r;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    keel_chain *ch;
    keel_layer *l;
    ASSERT_OK(keel_chain_create(&ch));
    ASSERT_OK(keel_retry_layer(r, &l));
    ASSERT_OK(keel_chain_add_take(ch, l));
    refusing_layer rl = {{"limiter", refusing_layer_call, NULL}, 0};
    ASSERT_OK(keel_chain_add_take(ch, &rl.base));
    keel_call call;
    keel_call_init(&call, "op", NULL);
    ASSERT_OK(keel_chain_run(ch, &call, ok_terminal, NULL));
    assert_int_equal(2, call.attempt);
    assert_int_equal(700, mc.slept_total);
    assert_null(call.refused_by); /* reset before the successful attempt */
    assert_int_equal(0, call.wait_ms);
    keel_chain_destroy(ch);
    keel_retry_destroy(r);
}

static void test_default_rand_and_log(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_retry_config c;
    base_cfg(&c, &mc, NULL); /* no hook: the default WARNING log runs */
    c.jitter = KEEL_JITTER_EQUAL;
    c.max_attempts = 3;
    c.name = "payments";
    keel_retry *r;
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    for (int i = 0; i < 8; i++) {
        uint64_t before = mc.slept_total;
        script s = {.errs = {KEEL_ETIMEOUT}, .n = 1};
        keel_call call;
        keel_call_init(&call, "op", NULL);
        assert_int_equal(KEEL_ETIMEOUT, keel_retry_run(r, &call, scripted, &s));
        uint64_t d = mc.slept_total - before; /* [50,100] + [100,200] */
        assert_true(d >= 150 && d <= 300);
    }
    keel_retry_destroy(r);
}

static void test_validation(void **state)
{
    (void)state;
    keel_retry_config c;
    keel_diag d;
    keel_retry *r = (keel_retry *)&c;

    keel_retry_config_default(&c);
    c.max_attempts = 0;
    assert_int_equal(KEEL_EINVAL, keel_retry_create(&r, &c, &d));
    assert_null(r);
    assert_int_equal(KEEL_EINVAL, d.code);
    assert_string_equal("retry: max_attempts must be >= 1, got 0", d.msg);

    keel_retry_config_default(&c);
    c.base_delay_ms = 500;
    c.max_delay_ms = 100;
    assert_int_equal(KEEL_EINVAL, keel_retry_create(&r, &c, &d));
    assert_string_equal("retry: max_delay_ms must be >= base_delay_ms (500), got 100", d.msg);

    keel_retry_config_default(&c);
    c.multiplier = 0.5;
    assert_int_equal(KEEL_EINVAL, keel_retry_config_validate(&c, &d));
    assert_string_equal("retry: multiplier must be >= 1.0, got 0.5", d.msg);
    c.multiplier = NAN;
    assert_int_equal(KEEL_EINVAL, keel_retry_config_validate(&c, NULL));

    keel_retry_config_default(&c);
    c.jitter = (keel_jitter)7;
    assert_int_equal(KEEL_EINVAL, keel_retry_config_validate(&c, &d));
    assert_string_equal("retry: jitter must be a keel_jitter value (0..3), got 7", d.msg);

    keel_retry_config_default(&c);
    c.size = 8;
    assert_int_equal(KEEL_EINVAL, keel_retry_config_validate(&c, &d));
    assert_non_null(strstr(d.msg, "retry: size must be sizeof(keel_retry_config)"));

    assert_int_equal(KEEL_EINVAL, keel_retry_config_validate(NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_retry_create(NULL, &c, NULL));
    keel_layer *l = (keel_layer *)&c;
    assert_int_equal(KEEL_EINVAL, keel_retry_layer(NULL, &l));
    assert_null(l);
    keel_call call;
    keel_call_init(&call, "op", NULL);
    assert_int_equal(KEEL_EINVAL, keel_retry_run(NULL, &call, scripted, NULL));
    keel_retry_destroy(NULL);
}

static void test_oom(void **state)
{
    (void)state;
    keel_retry_config c;
    keel_retry_config_default(&c);
    keel_retry *r = NULL;
    keel_test_failalloc_install();
    for (int n = 0; n < 2; n++) {
        keel_test_failalloc_arm(n);
        assert_int_equal(KEEL_ENOMEM, keel_retry_create(&r, &c, NULL));
        assert_null(r);
    }
    keel_test_failalloc_arm(-1);
    ASSERT_OK(keel_retry_create(&r, &c, NULL));
    keel_layer *l;
    keel_test_failalloc_arm(0);
    assert_int_equal(KEEL_ENOMEM, keel_retry_layer(r, &l));
    keel_test_failalloc_arm(-1);
    keel_retry_destroy(r);
    keel_test_failalloc_remove();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_delay_none),
        cmocka_unit_test(test_delay_full),
        cmocka_unit_test(test_delay_equal),
        cmocka_unit_test(test_delay_decorrelated),
        cmocka_unit_test(test_success_on_third_attempt),
        cmocka_unit_test(test_max_attempts),
        cmocka_unit_test(test_max_elapsed),
        cmocka_unit_test(test_full_jitter_sequence_through_layer),
        cmocka_unit_test(test_predicate_and_retriable_override),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_inner_wait_hint_and_chain),
        cmocka_unit_test(test_default_rand_and_log),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
