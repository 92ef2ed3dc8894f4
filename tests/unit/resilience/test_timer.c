/* Tests for src/resilience/timer.c: histogram sum equals manual-clock time, outcome labels,
 * the "app.audit" record. */
#include "test.h"

#include <string.h>

#include "keel_int.h"
#include <keel/timer.h>

static keel_manual_clock mc;

typedef struct step {
    uint64_t advance_ms;
    keel_err result;
} step;

static keel_err terminal(void *cx, void *ud)
{
    (void)cx;
    const step *s = ud;
    keel_manual_clock_advance(&mc, s->advance_ms);
    return s->result;
}

static keel_err run(keel_chain *ch, const char *name, unsigned attempt, uint64_t ms, keel_err r)
{
    keel_call call;
    keel_call_init(&call, name, NULL);
    call.attempt = attempt;
    step s = {ms, r};
    return keel_chain_run(ch, &call, terminal, &s);
}

static keel_chain *mk_chain(keel_timer *t)
{
    keel_layer *l;
    ASSERT_OK(keel_timer_layer(t, &l));
    assert_string_equal("timer", l->name);
    keel_chain *ch;
    ASSERT_OK(keel_chain_create(&ch));
    ASSERT_OK(keel_chain_add_take(ch, l));
    return ch;
}

static void expect_line(const keel_buf *b, const char *line)
{
    if (strstr(b->ptr, line) == NULL)
        fail_msg("missing line %s in:\n%s", line, b->ptr);
}

static void test_config_validation(void **state)
{
    (void)state;
    keel_timer_config cfg;
    keel_timer_config_default(&cfg);
    assert_int_equal(0, cfg.audit_log);
    cfg.nbuckets = 3;
    keel_timer *t = NULL;
    keel_diag d;
    assert_int_equal(KEEL_EINVAL, keel_timer_create(&t, &cfg, &d));
    assert_null(t);
    assert_string_equal("timer: buckets must not be NULL when nbuckets is 3", d.msg);
    keel_timer_config_default(&cfg);
    cfg.size = 0;
    assert_int_equal(KEEL_EINVAL, keel_timer_create(&t, &cfg, &d));
    /* a histogram that is not increasing is refused by the registry */
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    static const double bad[] = {1.0, 0.5};
    keel_timer_config_default(&cfg);
    cfg.metrics = m;
    cfg.buckets = bad;
    cfg.nbuckets = 2;
    assert_int_equal(KEEL_EINVAL, keel_timer_create(&t, &cfg, &d));
    keel_metrics_destroy(m);
}

static void test_histogram_sum_and_outcomes(void **state)
{
    (void)state;
    keel_manual_clock_init(&mc, 1000);
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    static const double buckets[] = {0.1, 0.5, 1.0};
    keel_timer_config cfg;
    keel_timer_config_default(&cfg);
    cfg.clock = &mc.clock;
    cfg.metrics = m;
    cfg.buckets = buckets;
    cfg.nbuckets = 3;
    keel_timer *t;
    ASSERT_OK(keel_timer_create(&t, &cfg, NULL));
    keel_chain *ch = mk_chain(t);

    ASSERT_OK(run(ch, "stripe.charge", 1, 250, KEEL_OK));
    ASSERT_OK(run(ch, "stripe.charge", 1, 500, KEEL_OK));
    assert_int_equal(KEEL_ETIMEOUT, run(ch, "stripe.charge", 2, 1500, KEEL_ETIMEOUT));
    assert_int_equal(KEEL_EIO, run(ch, "ledger.post", 1, 0, KEEL_EIO));
    assert_int_equal(1000 + 250 + 500 + 1500, mc.now);

    keel_buf out;
    keel_buf_init(&out, 1 << 16);
    ASSERT_OK(keel_metrics_expose(m, "keel_call_duration", &out));
    expect_line(&out, "keel_call_duration_seconds_bucket{name=\"stripe.charge\",outcome=\"ok\","
                      "le=\"0.1\"} 0\n");
    expect_line(&out, "keel_call_duration_seconds_bucket{name=\"stripe.charge\",outcome=\"ok\","
                      "le=\"0.5\"} 2\n");
    expect_line(&out, "keel_call_duration_seconds_sum{name=\"stripe.charge\",outcome=\"ok\"} 0.75\n");
    expect_line(&out, "keel_call_duration_seconds_count{name=\"stripe.charge\",outcome=\"ok\"} 2\n");
    expect_line(&out, "keel_call_duration_seconds_sum{name=\"stripe.charge\","
                      "outcome=\"KEEL_ETIMEOUT\"} 1.5\n");
    expect_line(&out, "keel_call_duration_seconds_bucket{name=\"stripe.charge\","
                      "outcome=\"KEEL_ETIMEOUT\",le=\"1\"} 0\n");
    expect_line(&out, "keel_call_duration_seconds_sum{name=\"ledger.post\",outcome=\"KEEL_EIO\"} 0\n");
    expect_line(&out, "keel_call_duration_seconds_count{name=\"ledger.post\",outcome=\"KEEL_EIO\"} 1\n");
    keel_buf_cleanup(&out);

    /* keel_timer_record by hand adds to the same series */
    keel_call call;
    keel_call_init(&call, "ledger.post", NULL);
    keel_timer_record(t, &call, KEEL_EIO, 40);
    keel_buf_init(&out, 1 << 16);
    ASSERT_OK(keel_metrics_expose(m, "keel_call_duration", &out));
    expect_line(&out, "keel_call_duration_seconds_sum{name=\"ledger.post\",outcome=\"KEEL_EIO\"} 0.04\n");
    expect_line(&out, "keel_call_duration_seconds_count{name=\"ledger.post\",outcome=\"KEEL_EIO\"} 2\n");
    keel_buf_cleanup(&out);

    keel_chain_destroy(ch);
    keel_timer_destroy(t);
    keel_metrics_destroy(m);
}

/* -------------------------------------------------------- audit log -- */

typedef struct seen {
    int n;
    char logger[64];
    char msg[64];
    char name[64];
    char outcome[64];
    int64_t duration_ms;
    int64_t attempt;
    size_t nfields;
} seen;

static void copy_str(char *dst, size_t n, keel_str s)
{
    size_t k = s.len < n - 1 ? s.len : n - 1;
    if (k)
        memcpy(dst, s.ptr, k);
    dst[k] = '\0';
}

static int hook(keel_log_record *r, void *ud)
{
    seen *s = ud;
    s->n++;
    copy_str(s->logger, sizeof(s->logger), keel_str_c(keel_log_record_logger(r)));
    copy_str(s->msg, sizeof(s->msg), keel_log_record_message(r));
    s->nfields = keel_log_record_nfields(r);
    for (size_t i = 0; i < s->nfields; i++) {
        keel_str k = keel_log_record_field_key(r, i);
        if (keel_str_eq(k, KEEL_STR_LIT("name")))
            copy_str(s->name, sizeof(s->name), keel_log_record_field_str(r, i));
        else if (keel_str_eq(k, KEEL_STR_LIT("outcome")))
            copy_str(s->outcome, sizeof(s->outcome), keel_log_record_field_str(r, i));
        else if (keel_str_eq(k, KEEL_STR_LIT("duration_ms")))
            s->duration_ms = keel_log_record_field_int(r, i);
        else if (keel_str_eq(k, KEEL_STR_LIT("attempt")))
            s->attempt = keel_log_record_field_int(r, i);
    }
    return 1; /* drop: nothing reaches stderr */
}

static void test_audit_record(void **state)
{
    (void)state;
    keel_manual_clock_init(&mc, 0);
    seen s;
    memset(&s, 0, sizeof(s));
    ASSERT_OK(keel_log_set_hook(hook, &s));

    keel_timer_config cfg;
    keel_timer_config_default(&cfg);
    cfg.clock = &mc.clock;
    cfg.audit_log = 1; /* no metrics: audit only */
    keel_timer *t;
    ASSERT_OK(keel_timer_create(&t, &cfg, NULL));
    keel_chain *ch = mk_chain(t);

    assert_int_equal(KEEL_EOPEN, run(ch, "stripe.refund", 3, 1234, KEEL_EOPEN));
    assert_int_equal(1, s.n);
    assert_string_equal("app.audit", s.logger);
    assert_string_equal("call finished", s.msg);
    assert_int_equal(4, s.nfields);
    assert_string_equal("stripe.refund", s.name);
    assert_string_equal("KEEL_EOPEN", s.outcome);
    assert_int_equal(1234, s.duration_ms);
    assert_int_equal(3, s.attempt);

    ASSERT_OK(run(ch, "stripe.refund", 1, 7, KEEL_OK));
    assert_int_equal(2, s.n);
    assert_string_equal("ok", s.outcome);
    assert_int_equal(7, s.duration_ms);
    assert_int_equal(1, s.attempt);
    keel_chain_destroy(ch);
    keel_timer_destroy(t);

    /* audit off: no record */
    keel_timer_config_default(&cfg);
    cfg.clock = &mc.clock;
    ASSERT_OK(keel_timer_create(&t, &cfg, NULL));
    ch = mk_chain(t);
    ASSERT_OK(run(ch, "x", 1, 5, KEEL_OK));
    assert_int_equal(2, s.n);
    keel_chain_destroy(ch);
    keel_timer_destroy(t);
    ASSERT_OK(keel_log_set_hook(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_histogram_sum_and_outcomes),
        cmocka_unit_test(test_audit_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
