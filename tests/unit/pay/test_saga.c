/* Tests for src/pay/saga.c: definitions, execution in order, compensation in reverse with
 * linear backoff on a manual clock, FAILED_COMPENSATION, the transitions recorded in the
 * in-memory log, validation, and the recovery rules (unknown outcome, COMPENSATING
 * continues, RESUME, unknown definitions, leases, reclaim, concurrent recoverers). */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "keel_int.h"

#include <keel/payment.h>
#include <keel/saga.h>

/* ------------------------------------------------------------- fixture -- */

#define NSTEPS 4

typedef struct fx {
    char trace[512];              /* "a0 a1 c0 " ... */
    int fail_step;                /* action of this step fails (-1 none) */
    keel_err fail_err;
    unsigned comp_fail[NSTEPS];   /* compensation attempts that fail before one succeeds */
    int resume_idempotent;        /* actions skip when ctx already has their key */
} fx;

static void fx_init(fx *f)
{
    memset(f, 0, sizeof(*f));
    f->fail_step = -1;
    f->fail_err = KEEL_EPAY_DECLINED;
}

static void tr(fx *f, char kind, size_t step)
{
    size_t n = strlen(f->trace);
    snprintf(f->trace + n, sizeof(f->trace) - n, "%c%zu ", kind, step);
}

static keel_err act(const keel_saga_call *c, json_t *ctx, void *ud)
{
    fx *f = ud;
    char key[32];
    snprintf(key, sizeof(key), "done_%zu", c->step);
    if (f->resume_idempotent && json_object_get(ctx, key) != NULL)
        return KEEL_OK;
    tr(f, 'a', c->step);
    if ((int)c->step == f->fail_step)
        return f->fail_err;
    json_object_set_new(ctx, key, json_integer((json_int_t)c->step));
    if (c->step == 1)
        json_object_set_new(ctx, "charge_id", json_string("ch_123"));
    return KEEL_OK;
}

static keel_err comp(const keel_saga_call *c, json_t *ctx, void *ud)
{
    fx *f = ud;
    (void)ctx;
    tr(f, 'c', c->step);
    if (f->comp_fail[c->step] > 0) {
        f->comp_fail[c->step]--;
        return KEEL_EPAY_NETWORK;
    }
    return KEEL_OK;
}

/* A definition of NSTEPS steps; mask bit i = step i has a compensation. */
static keel_saga_def *make_def(const char *name, fx *f, unsigned mask, keel_saga_config *cfg)
{
    static const char *const names[NSTEPS] = {"reserve_inventory", "authorize_payment",
                                              "capture_payment", "create_shipment"};
    keel_saga_def *d = NULL;
    ASSERT_OK(keel_saga_def_create(&d, name, cfg));
    for (int i = 0; i < NSTEPS; i++)
        ASSERT_OK(keel_saga_def_add_step(d, names[i], act, (mask >> i) & 1u ? comp : NULL, f));
    return d;
}

/* History as "kind:step:attempt ..." with short kind names. */
typedef struct hist {
    char s[2048];
    int n;
    keel_saga_state last_state;
} hist;

static void hist_cb(const keel_saga_entry *e, void *ud)
{
    static const char *const k[] = {"?",  "S",  "ss", "sc", "sf", "ab",
                                    "cs", "cc", "cf", "F",  "CL"};
    hist *h = ud;
    size_t n = strlen(h->s);
    assert_int_equal(h->n + 1, e->seq);
    h->n++;
    h->last_state = e->state;
    if (e->step >= 0 && e->attempt > 0)
        snprintf(h->s + n, sizeof(h->s) - n, "%s%d.%u ", k[e->kind], e->step, e->attempt);
    else if (e->step >= 0)
        snprintf(h->s + n, sizeof(h->s) - n, "%s%d ", k[e->kind], e->step);
    else
        snprintf(h->s + n, sizeof(h->s) - n, "%s ", k[e->kind]);
}

static void history(keel_saga_log *log, const char *id, hist *h)
{
    memset(h, 0, sizeof(*h));
    keel_diag d;
    ASSERT_OK(keel_saga_log_history(log, id, hist_cb, h, &d));
}

/* ------------------------------------------------------------ execution -- */

static void test_success_path(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
    keel_saga_def *def = make_def("checkout", &f, 0x3, NULL);
    assert_string_equal("checkout", keel_saga_def_name(def));
    assert_int_equal(NSTEPS, keel_saga_def_nsteps(def));
    json_t *ctx = json_pack("{s:s, s:i}", "order_id", "ord_123", "amount", 5000);
    keel_saga_exec *x = NULL;
    keel_diag d;
    ASSERT_OK(keel_saga_execute(def, log, "saga_ord_123", ctx, &x, &d));
    assert_int_equal(KEEL_SAGA_COMPLETED, keel_saga_exec_state(x));
    assert_int_equal(KEEL_OK, keel_saga_assert_succeeded(x));
    assert_string_equal("saga_ord_123", keel_saga_exec_id(x));
    assert_string_equal("checkout", keel_saga_exec_name(x));
    assert_int_equal(-1, keel_saga_exec_failed_step(x));
    assert_int_equal(KEEL_OK, keel_saga_exec_error(x));
    assert_int_equal(0, keel_saga_exec_recovered(x));
    assert_string_equal("a0 a1 a2 a3 ", f.trace);
    /* the steps modified the caller's object in place */
    assert_ptr_equal(ctx, keel_saga_exec_context(x));
    assert_string_equal("ch_123", json_string_value(json_object_get(ctx, "charge_id")));
    assert_int_equal(NSTEPS, keel_saga_exec_nsteps(x));
    for (size_t i = 0; i < NSTEPS; i++) {
        const keel_saga_step_result *r = keel_saga_exec_step(x, i);
        assert_int_equal(KEEL_SAGA_STEP_COMPLETED, r->status);
        assert_int_equal(0, r->comp_attempts);
    }
    assert_string_equal("create_shipment", keel_saga_exec_step(x, 3)->name);
    assert_null(keel_saga_exec_step(x, NSTEPS));
    assert_int_equal(0, keel_saga_exec_ncompensation_failures(x));
    assert_int_equal(-1, keel_saga_exec_compensation_failure(x, 0));

    hist h;
    history(log, "saga_ord_123", &h);
    assert_string_equal("S ss0 sc0 ss1 sc1 ss2 sc2 ss3 sc3 F ", h.s);
    assert_int_equal(KEEL_SAGA_COMPLETED, h.last_state);
    keel_saga_record rec;
    ASSERT_OK(keel_saga_log_load(log, "saga_ord_123", &rec, &d));
    assert_int_equal(KEEL_SAGA_COMPLETED, rec.state);
    assert_int_equal(4, rec.next_step);
    assert_int_equal(10, rec.seq);
    assert_string_equal("ch_123", json_string_value(json_object_get(rec.context, "charge_id")));
    assert_int_equal(5000, json_integer_value(json_object_get(rec.context, "amount")));
    keel_saga_record_cleanup(&rec);

    keel_saga_exec_destroy(x);
    json_decref(ctx);
    /* the result outlives the definition; a NULL log and a generated id work */
    fx_init(&f);
    ASSERT_OK(keel_saga_execute(def, NULL, NULL, NULL, &x, &d));
    keel_saga_def_destroy(def);
    assert_int_equal(1, keel_uuid_valid(keel_str_c(keel_saga_exec_id(x))));
    assert_int_equal(KEEL_SAGA_COMPLETED, keel_saga_exec_state(x));
    assert_string_equal("reserve_inventory", keel_saga_exec_step(x, 0)->name);
    assert_int_equal(0, json_integer_value(json_object_get(keel_saga_exec_context(x), "done_0")));
    keel_saga_exec_destroy(x);
    keel_saga_log_destroy(log);
}

static void test_failure_at_each_step_compensates_in_reverse(void **state)
{
    (void)state;
    static const char *const traces[NSTEPS] = {
        "a0 ", "a0 a1 c0 ", "a0 a1 a2 c1 c0 ", "a0 a1 a2 a3 c2 c1 c0 "};
    static const char *const hists[NSTEPS] = {
        "S ss0 sf0 F ",
        "S ss0 sc0 ss1 sf1 cs0.1 cc0.1 F ",
        "S ss0 sc0 ss1 sc1 ss2 sf2 cs1.1 cc1.1 cs0.1 cc0.1 F ",
        "S ss0 sc0 ss1 sc1 ss2 sc2 ss3 sf3 cs2.1 cc2.1 cs1.1 cc1.1 cs0.1 cc0.1 F "};
    for (int k = 0; k < NSTEPS; k++) {
        fx f;
        fx_init(&f);
        f.fail_step = k;
        keel_saga_log *log;
        ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
        keel_saga_def *def = make_def("checkout", &f, 0xf, NULL);
        keel_saga_exec *x = NULL;
        keel_diag d;
        ASSERT_OK(keel_saga_execute(def, log, "s1", NULL, &x, &d));
        assert_int_equal(KEEL_SAGA_COMPENSATED, keel_saga_exec_state(x));
        assert_int_equal(KEEL_EPAY_DECLINED, keel_saga_assert_succeeded(x));
        assert_int_equal(k, keel_saga_exec_failed_step(x));
        assert_int_equal(KEEL_EPAY_DECLINED, keel_saga_exec_error(x));
        assert_string_equal(traces[k], f.trace);
        for (int i = 0; i < NSTEPS; i++) {
            const keel_saga_step_result *r = keel_saga_exec_step(x, (size_t)i);
            keel_saga_step_status want = i < k    ? KEEL_SAGA_STEP_COMPENSATED
                                         : i == k ? KEEL_SAGA_STEP_FAILED
                                                  : KEEL_SAGA_STEP_PENDING;
            assert_int_equal(want, r->status);
            assert_int_equal(i < k ? 1 : 0, r->comp_attempts);
        }
        assert_int_equal(KEEL_EPAY_DECLINED, keel_saga_exec_step(x, (size_t)k)->error);
        hist h;
        history(log, "s1", &h);
        assert_string_equal(hists[k], h.s);
        assert_int_equal(KEEL_SAGA_COMPENSATED, h.last_state);
        keel_saga_exec_destroy(x);
        keel_saga_def_destroy(def);
        keel_saga_log_destroy(log);
    }
}

/* The seed's checkout: capture and shipment have no compensation and are skipped. */
static void test_steps_without_compensation_are_skipped(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    f.fail_step = 3;
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
    keel_saga_def *def = make_def("checkout", &f, 0x3, NULL);
    keel_saga_exec *x = NULL;
    keel_diag d;
    ASSERT_OK(keel_saga_execute(def, log, "s2", NULL, &x, &d));
    assert_int_equal(KEEL_SAGA_COMPENSATED, keel_saga_exec_state(x));
    assert_string_equal("a0 a1 a2 a3 c1 c0 ", f.trace);
    assert_int_equal(KEEL_SAGA_STEP_COMPLETED, keel_saga_exec_step(x, 2)->status);
    assert_int_equal(0, keel_saga_exec_step(x, 2)->comp_attempts);
    assert_int_equal(KEEL_SAGA_STEP_COMPENSATED, keel_saga_exec_step(x, 1)->status);
    hist h;
    history(log, "s2", &h);
    assert_string_equal(
        "S ss0 sc0 ss1 sc1 ss2 sc2 ss3 sf3 cs1.1 cc1.1 cs0.1 cc0.1 F ", h.s);
    keel_saga_exec_destroy(x);
    keel_saga_def_destroy(def);
    keel_saga_log_destroy(log);
}

static void test_compensation_retry_then_success(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    f.fail_step = 2;
    f.comp_fail[1] = 1;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1000);
    keel_saga_config cfg;
    keel_saga_config_default(&cfg);
    assert_int_equal(3, cfg.compensation_retries);
    assert_int_equal(100, cfg.compensation_base_delay_ms);
    cfg.clock = &mc.clock;
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, &mc.clock));
    keel_saga_def *def = make_def("checkout", &f, 0xf, &cfg);
    keel_saga_exec *x = NULL;
    keel_diag d;
    ASSERT_OK(keel_saga_execute(def, log, "s3", NULL, &x, &d));
    assert_int_equal(KEEL_SAGA_COMPENSATED, keel_saga_exec_state(x));
    assert_int_equal(KEEL_EPAY_DECLINED, keel_saga_assert_succeeded(x));
    assert_string_equal("a0 a1 a2 c1 c1 c0 ", f.trace);
    assert_int_equal(2, keel_saga_exec_step(x, 1)->comp_attempts);
    assert_int_equal(KEEL_SAGA_STEP_COMPENSATED, keel_saga_exec_step(x, 1)->status);
    assert_int_equal(1, mc.sleeps);
    assert_int_equal(100, mc.slept_total);
    assert_int_equal(1100, mc.now);
    assert_int_equal(0, keel_saga_exec_ncompensation_failures(x));
    hist h;
    history(log, "s3", &h);
    assert_string_equal("S ss0 sc0 ss1 sc1 ss2 sf2 cs1.1 cf1.1 cs1.2 cc1.2 cs0.1 cc0.1 F ", h.s);
    keel_saga_exec_destroy(x);
    keel_saga_def_destroy(def);
    keel_saga_log_destroy(log);
}

static void test_compensation_fails_permanently(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    f.fail_step = 3;
    f.comp_fail[1] = 1000;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_saga_config cfg;
    keel_saga_config_default(&cfg);
    cfg.clock = &mc.clock;
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, &mc.clock));
    keel_saga_def *def = make_def("checkout", &f, 0x3, &cfg);
    keel_saga_exec *x = NULL;
    keel_diag d;
    ASSERT_OK(keel_saga_execute(def, log, "s4", NULL, &x, &d));
    assert_int_equal(KEEL_SAGA_FAILED_COMPENSATION, keel_saga_exec_state(x));
    assert_int_equal(KEEL_EPAY_COMPENSATION, keel_saga_assert_succeeded(x));
    assert_int_equal(3, keel_saga_exec_failed_step(x));
    assert_int_equal(KEEL_EPAY_DECLINED, keel_saga_exec_error(x));
    /* three attempts, waits 100 and 200; step 0 is still compensated afterwards */
    assert_string_equal("a0 a1 a2 a3 c1 c1 c1 c0 ", f.trace);
    assert_int_equal(2, mc.sleeps);
    assert_int_equal(300, mc.slept_total);
    const keel_saga_step_result *r1 = keel_saga_exec_step(x, 1);
    assert_int_equal(KEEL_SAGA_STEP_COMPENSATION_FAILED, r1->status);
    assert_int_equal(KEEL_EPAY_NETWORK, r1->error);
    assert_int_equal(3, r1->comp_attempts);
    assert_int_equal(KEEL_SAGA_STEP_COMPENSATED, keel_saga_exec_step(x, 0)->status);
    assert_int_equal(1, keel_saga_exec_ncompensation_failures(x));
    assert_int_equal(1, keel_saga_exec_compensation_failure(x, 0));
    hist h;
    history(log, "s4", &h);
    assert_string_equal("S ss0 sc0 ss1 sc1 ss2 sc2 ss3 sf3 cs1.1 cf1.1 cs1.2 cf1.2 cs1.3 cf1.3 "
                        "cs0.1 cc0.1 F ",
                        h.s);
    assert_int_equal(KEEL_SAGA_FAILED_COMPENSATION, h.last_state);
    keel_saga_record rec;
    ASSERT_OK(keel_saga_log_load(log, "s4", &rec, &d));
    assert_int_equal(1, rec.comp_failures);
    assert_int_equal(-1, rec.comp_next);
    keel_saga_record_cleanup(&rec);
    keel_saga_exec_destroy(x);
    keel_saga_def_destroy(def);

    /* five attempts, base 10: waits 10 + 20 + 30 + 40 */
    fx_init(&f);
    f.fail_step = 1;
    f.comp_fail[0] = 1000;
    keel_manual_clock_init(&mc, 0);
    cfg.compensation_retries = 5;
    cfg.compensation_base_delay_ms = 10;
    def = make_def("checkout", &f, 0x3, &cfg);
    ASSERT_OK(keel_saga_execute(def, log, "s5", NULL, &x, &d));
    assert_int_equal(KEEL_SAGA_FAILED_COMPENSATION, keel_saga_exec_state(x));
    assert_int_equal(4, mc.sleeps);
    assert_int_equal(100, mc.slept_total);
    assert_int_equal(5, keel_saga_exec_step(x, 0)->comp_attempts);
    keel_saga_exec_destroy(x);
    keel_saga_def_destroy(def);
    keel_saga_log_destroy(log);
}

static void test_validation_and_lookups(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    keel_saga_def *def = NULL;
    assert_int_equal(KEEL_EINVAL, keel_saga_def_create(&def, "", NULL));
    assert_int_equal(KEEL_EINVAL, keel_saga_def_create(&def, "check out", NULL));
    keel_saga_config cfg;
    keel_saga_config_default(&cfg);
    cfg.compensation_retries = 0;
    assert_int_equal(KEEL_EINVAL, keel_saga_def_create(&def, "x", &cfg));
    assert_null(def);
    ASSERT_OK(keel_saga_def_create(&def, "x", NULL));
    assert_int_equal(KEEL_EINVAL, keel_saga_def_add_step(def, "s", NULL, comp, &f));
    ASSERT_OK(keel_saga_def_add_step(def, "s", act, comp, &f));
    assert_int_equal(KEEL_EINVAL, keel_saga_def_add_step(def, "s", act, comp, &f));
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
    keel_saga_exec *x = (keel_saga_exec *)1;
    keel_diag d;
    char big[KEEL_SAGA_ID_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(KEEL_EINVAL, keel_saga_execute(def, log, big, NULL, &x, &d));
    assert_null(x);
    big[KEEL_SAGA_ID_MAX] = '\0';
    assert_int_equal(1, keel_saga_id_valid(big));
    assert_int_equal(0, keel_saga_id_valid(""));
    assert_int_equal(0, keel_saga_id_valid("a b"));
    assert_int_equal(0, keel_saga_id_valid("caf\xc3\xa9"));
    assert_int_equal(KEEL_EINVAL, keel_saga_execute(def, log, "", NULL, &x, &d));
    json_t *arr = json_array();
    assert_int_equal(KEEL_EINVAL, keel_saga_execute(def, log, "ok", arr, &x, &d));
    json_decref(arr);
    ASSERT_OK(keel_saga_execute(def, log, big, NULL, &x, &d));
    keel_saga_exec_destroy(x);
    /* duplicate ids are refused by the log; nothing runs */
    f.trace[0] = '\0';
    assert_int_equal(KEEL_EEXIST, keel_saga_execute(def, log, big, NULL, &x, &d));
    assert_null(x);
    assert_string_equal("", f.trace);
    /* the definition is frozen once used */
    assert_int_equal(KEEL_ESTATE, keel_saga_def_add_step(def, "t", act, NULL, &f));
    /* unknown ids: KEEL_ENOTFOUND naming the id */
    keel_saga_record rec;
    assert_int_equal(KEEL_ENOTFOUND, keel_saga_log_load(log, "saga_nope_42", &rec, &d));
    assert_non_null(strstr(d.msg, "saga_nope_42"));
    hist h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(KEEL_ENOTFOUND, keel_saga_log_history(log, "saga_gone_7", hist_cb, &h, &d));
    assert_non_null(strstr(d.msg, "saga_gone_7"));
    assert_int_equal(KEEL_ENOTFOUND, keel_saga_log_load(log, "bad id", &rec, &d));
    assert_non_null(strstr(d.msg, "bad id"));
    /* names */
    assert_string_equal("FAILED_COMPENSATION",
                        keel_saga_state_name(KEEL_SAGA_FAILED_COMPENSATION));
    assert_string_equal("?", keel_saga_state_name((keel_saga_state)9));
    keel_saga_state st;
    ASSERT_OK(keel_saga_state_parse("COMPENSATING", &st));
    assert_int_equal(KEEL_SAGA_COMPENSATING, st);
    assert_int_equal(KEEL_EPARSE, keel_saga_state_parse("running", &st));
    assert_string_equal("compensation_failed",
                        keel_saga_event_kind_name(KEEL_SAGA_EV_COMP_FAILED));
    assert_int_equal(KEEL_EINVAL, keel_saga_assert_succeeded(NULL));
    keel_saga_log_destroy(log);
    keel_saga_def_destroy(def);
}

/* ------------------------------------------------------ failing log -- */

/* Delegates to an inner log; fails (KEEL_EIO) the first record of (kind, step).  A failure
 * after the transition was stored (after = 1) models a crash right after the write. */
typedef struct fail_log {
    keel_saga_log base;
    keel_saga_log *inner;
    keel_saga_event_kind kind;
    int step;
    int after;
    int fired;
} fail_log;

static keel_err fl_record(keel_saga_log *self, const keel_saga_event *ev, keel_diag *diag)
{
    fail_log *l = (fail_log *)self;
    int hit = !l->fired && ev->kind == l->kind && ev->step == l->step;
    if (hit && !l->after) {
        l->fired = 1;
        return keel_diag_set(diag, KEEL_EIO, 0, "injected log failure");
    }
    keel_err e = l->inner->record(l->inner, ev, diag);
    if (e == KEEL_OK && hit) {
        l->fired = 1;
        return keel_diag_set(diag, KEEL_EIO, 0, "injected failure after the write");
    }
    return e;
}
static keel_err fl_load(keel_saga_log *s, const char *id, keel_saga_record *o, keel_diag *d)
{
    return ((fail_log *)s)->inner->load(((fail_log *)s)->inner, id, o, d);
}
static keel_err fl_list(keel_saga_log *s, const char *p, const char *a,
                        char (*ids)[KEEL_SAGA_ID_MAX + 1], size_t cap, size_t *n, keel_diag *d)
{
    return ((fail_log *)s)->inner->list_active(((fail_log *)s)->inner, p, a, ids, cap, n, d);
}
static keel_err fl_claim(keel_saga_log *s, const keel_saga_claim *c, keel_diag *d)
{
    return ((fail_log *)s)->inner->claim(((fail_log *)s)->inner, c, d);
}
static keel_err fl_history(keel_saga_log *s, const char *id, keel_saga_entry_fn fn, void *ud,
                           keel_diag *d)
{
    return ((fail_log *)s)->inner->history(((fail_log *)s)->inner, id, fn, ud, d);
}
static void fl_destroy(keel_saga_log *s)
{
    (void)s;
}

static void fail_log_init(fail_log *l, keel_saga_log *inner, keel_saga_event_kind kind, int step,
                          int after)
{
    memset(l, 0, sizeof(*l));
    l->base = (keel_saga_log){"fail", fl_record, fl_load, fl_list, fl_claim, fl_history,
                              fl_destroy};
    l->inner = inner;
    l->kind = kind;
    l->step = step;
    l->after = after;
}

/* Run def until the injected failure; the executor must stop with KEEL_EIO. */
static void run_until_failure(keel_saga_def *def, keel_saga_log *inner, const char *id,
                              keel_saga_event_kind kind, int step, int after)
{
    fail_log fl;
    fail_log_init(&fl, inner, kind, step, after);
    keel_saga_exec *x = (keel_saga_exec *)1;
    keel_diag d;
    assert_int_equal(KEEL_EIO, keel_saga_execute(def, &fl.base, id, NULL, &x, &d));
    assert_null(x);
    assert_int_equal(1, fl.fired);
}

typedef struct seen {
    int n;
    keel_saga_state state;
    int failed_step;
    keel_err error;
    int recovered;
    keel_saga_step_status st[NSTEPS];
} seen;

static void on_rec(const keel_saga_exec *x, void *ud)
{
    seen *s = ud;
    s->n++;
    s->state = keel_saga_exec_state(x);
    s->failed_step = keel_saga_exec_failed_step(x);
    s->error = keel_saga_exec_error(x);
    s->recovered = keel_saga_exec_recovered(x);
    for (size_t i = 0; i < NSTEPS; i++)
        s->st[i] = keel_saga_exec_step(x, i)->status;
}

/* Recover everything owned by the dead instance "dead". */
static keel_err recover(keel_saga_log *log, keel_saga_def *def, seen *s,
                        keel_saga_recover_report *rep, keel_diag *d)
{
    keel_saga_recover_config rc;
    keel_saga_recover_config_default(&rc);
    rc.reclaim_owner = "dead";
    rc.on_recovered = on_rec;
    rc.on_recovered_ud = s;
    const keel_saga_def *defs[1] = {def};
    memset(s, 0, sizeof(*s));
    return keel_saga_recover_log(log, defs, def != NULL ? 1 : 0, &rc, rep, d);
}

static void dead_cfg(keel_saga_config *cfg)
{
    keel_saga_config_default(cfg);
    cfg->owner = "dead";
}

/* ------------------------------------------------------------- recovery -- */

static void test_recovery_unknown_outcome_compensates_that_step(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    keel_saga_config cfg;
    dead_cfg(&cfg);
    keel_saga_def *def = make_def("checkout", &f, 0x3, &cfg);
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
    /* step 1 ran, but its completion was never recorded: the log says "step 1 started" */
    run_until_failure(def, log, "r1", KEEL_SAGA_EV_STEP_COMPLETED, 1, 0);
    assert_string_equal("a0 a1 ", f.trace);
    keel_saga_record rec;
    keel_diag d;
    ASSERT_OK(keel_saga_log_load(log, "r1", &rec, &d));
    assert_int_equal(KEEL_SAGA_RUNNING, rec.state);
    assert_int_equal(1, rec.next_step);
    assert_int_equal(1, rec.in_step);
    keel_saga_record_cleanup(&rec);

    f.trace[0] = '\0';
    seen s;
    keel_saga_recover_report rep;
    ASSERT_OK(recover(log, def, &s, &rep, &d));
    assert_string_equal("c1 c0 ", f.trace);
    assert_int_equal(1, rep.found);
    assert_int_equal(1, rep.recovered);
    assert_int_equal(1, rep.compensated);
    assert_int_equal(0, rep.busy);
    assert_int_equal(1, s.n);
    assert_int_equal(1, s.recovered);
    assert_int_equal(KEEL_SAGA_COMPENSATED, s.state);
    assert_int_equal(1, s.failed_step);
    assert_int_equal(KEEL_ESTATE, s.error);
    assert_int_equal(KEEL_SAGA_STEP_COMPENSATED, s.st[0]);
    assert_int_equal(KEEL_SAGA_STEP_COMPENSATED, s.st[1]);
    assert_int_equal(KEEL_SAGA_STEP_PENDING, s.st[2]);
    hist h;
    history(log, "r1", &h);
    assert_string_equal("S ss0 sc0 ss1 CL ab1 cs1.1 cc1.1 cs0.1 cc0.1 F ", h.s);
    /* a second run finds nothing to do */
    f.trace[0] = '\0';
    ASSERT_OK(recover(log, def, &s, &rep, &d));
    assert_int_equal(0, rep.found);
    assert_string_equal("", f.trace);
    keel_saga_def_destroy(def);
    keel_saga_log_destroy(log);
}

static void test_recovery_rules(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    keel_saga_config cfg;
    dead_cfg(&cfg);
    keel_saga_def *def = make_def("checkout", &f, 0xf, &cfg);
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
    keel_diag d;
    seen s;
    keel_saga_recover_report rep;
    hist h;

    /* before step 2 started: 1 and 0 are compensated, never 2 */
    run_until_failure(def, log, "b2", KEEL_SAGA_EV_STEP_STARTED, 2, 0);
    assert_string_equal("a0 a1 ", f.trace);
    f.trace[0] = '\0';
    ASSERT_OK(recover(log, def, &s, &rep, &d));
    assert_string_equal("c1 c0 ", f.trace);
    assert_int_equal(2, s.failed_step);
    assert_int_equal(KEEL_SAGA_STEP_PENDING, s.st[2]);
    history(log, "b2", &h);
    assert_string_equal("S ss0 sc0 ss1 sc1 CL ab2 cs1.1 cc1.1 cs0.1 cc0.1 F ", h.s);

    /* every step completed, "finished" lost: COMPLETED, nothing compensated */
    f.trace[0] = '\0';
    run_until_failure(def, log, "fin", KEEL_SAGA_EV_FINISHED, -1, 0);
    f.trace[0] = '\0';
    ASSERT_OK(recover(log, def, &s, &rep, &d));
    assert_string_equal("", f.trace);
    assert_int_equal(KEEL_SAGA_COMPLETED, s.state);
    assert_int_equal(1, rep.completed);

    /* crash while compensating, after c2 completed: continue with c1, c0 only */
    f.trace[0] = '\0';
    f.fail_step = 3;
    run_until_failure(def, log, "cmp", KEEL_SAGA_EV_COMP_STARTED, 1, 0);
    assert_string_equal("a0 a1 a2 a3 c2 ", f.trace);
    f.trace[0] = '\0';
    ASSERT_OK(recover(log, def, &s, &rep, &d));
    assert_string_equal("c1 c0 ", f.trace);
    assert_int_equal(KEEL_SAGA_COMPENSATED, s.state);
    assert_int_equal(3, s.failed_step);
    assert_int_equal(KEEL_EPAY_DECLINED, s.error); /* the original failure is kept */
    assert_int_equal(KEEL_SAGA_STEP_FAILED, s.st[3]);
    assert_int_equal(KEEL_SAGA_STEP_COMPENSATED, s.st[2]);

    /* crash after c1 ran but before its completion was recorded: c1 runs again */
    f.trace[0] = '\0';
    run_until_failure(def, log, "cmp2", KEEL_SAGA_EV_COMP_COMPLETED, 1, 0);
    assert_string_equal("a0 a1 a2 a3 c2 c1 ", f.trace);
    f.trace[0] = '\0';
    ASSERT_OK(recover(log, def, &s, &rep, &d));
    assert_string_equal("c1 c0 ", f.trace);
    history(log, "cmp2", &h);
    assert_string_equal("S ss0 sc0 ss1 sc1 ss2 sc2 ss3 sf3 cs2.1 cc2.1 cs1.1 CL cs1.1 cc1.1 "
                        "cs0.1 cc0.1 F ",
                        h.s);

    /* crash right after "saga started": nothing ran, nothing to undo */
    f.trace[0] = '\0';
    f.fail_step = -1;
    run_until_failure(def, log, "st", KEEL_SAGA_EV_STARTED, -1, 1);
    assert_string_equal("", f.trace);
    ASSERT_OK(recover(log, def, &s, &rep, &d));
    assert_string_equal("", f.trace);
    assert_int_equal(KEEL_SAGA_COMPENSATED, s.state);
    assert_int_equal(0, s.failed_step);

    keel_saga_def_destroy(def);
    keel_saga_log_destroy(log);
}

static void test_recovery_resume_policy(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    f.resume_idempotent = 1;
    keel_saga_config cfg;
    dead_cfg(&cfg);
    cfg.recovery = KEEL_SAGA_RECOVER_RESUME;
    keel_saga_def *def = make_def("checkout", &f, 0x3, &cfg);
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
    keel_diag d;
    seen s;
    keel_saga_recover_report rep;
    /* step 1 ran, completion lost: resume re-runs step 1, then 2 and 3 */
    run_until_failure(def, log, "res", KEEL_SAGA_EV_STEP_COMPLETED, 1, 0);
    assert_string_equal("a0 a1 ", f.trace);
    f.trace[0] = '\0';
    ASSERT_OK(recover(log, def, &s, &rep, &d));
    /* step 1's effect is in the context only if its completion was recorded: it runs again */
    assert_string_equal("a1 a2 a3 ", f.trace);
    assert_int_equal(KEEL_SAGA_COMPLETED, s.state);
    assert_int_equal(1, rep.completed);
    hist h;
    history(log, "res", &h);
    assert_string_equal("S ss0 sc0 ss1 CL ss1 sc1 ss2 sc2 ss3 sc3 F ", h.s);
    keel_saga_record rec;
    ASSERT_OK(keel_saga_log_load(log, "res", &rec, &d));
    assert_string_equal("ch_123", json_string_value(json_object_get(rec.context, "charge_id")));
    keel_saga_record_cleanup(&rec);

    /* a step failing during resumption is compensated as usual */
    f.trace[0] = '\0';
    run_until_failure(def, log, "res2", KEEL_SAGA_EV_STEP_STARTED, 2, 0);
    f.trace[0] = '\0';
    f.fail_step = 3;
    ASSERT_OK(recover(log, def, &s, &rep, &d));
    assert_string_equal("a2 a3 c1 c0 ", f.trace);
    assert_int_equal(KEEL_SAGA_COMPENSATED, s.state);
    assert_int_equal(KEEL_EPAY_DECLINED, s.error);
    keel_saga_def_destroy(def);
    keel_saga_log_destroy(log);
}

static void test_recovery_unknown_definition_and_leases(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 5000);
    keel_saga_config cfg;
    dead_cfg(&cfg);
    cfg.lease_ms = 30000;
    keel_saga_def *def = make_def("checkout", &f, 0x3, &cfg);
    keel_saga_def *other = make_def("refund", &f, 0x3, &cfg);
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, &mc.clock));
    run_until_failure(def, log, "u1", KEEL_SAGA_EV_STEP_STARTED, 1, 0);
    keel_saga_record before;
    keel_diag d;
    ASSERT_OK(keel_saga_log_load(log, "u1", &before, &d));

    /* no definition for "checkout": reported with the id, left untouched */
    seen s;
    keel_saga_recover_report rep;
    f.trace[0] = '\0';
    assert_int_equal(KEEL_ENOTFOUND, recover(log, other, &s, &rep, &d));
    assert_non_null(strstr(d.msg, "u1"));
    assert_non_null(strstr(d.msg, "checkout"));
    assert_int_equal(1, rep.unknown);
    assert_string_equal("u1", rep.first_unknown);
    assert_int_equal(0, rep.recovered);
    assert_string_equal("", f.trace);
    keel_saga_record after;
    ASSERT_OK(keel_saga_log_load(log, "u1", &after, &d));
    assert_int_equal(before.seq, after.seq);
    assert_string_equal(before.claim, after.claim);
    assert_int_equal(KEEL_SAGA_RUNNING, after.state);
    keel_saga_record_cleanup(&after);
    keel_saga_record_cleanup(&before);

    /* the lease still runs and the owner is not declared dead: busy, untouched */
    keel_saga_recover_config rc;
    keel_saga_recover_config_default(&rc);
    const keel_saga_def *defs[2] = {other, def};
    ASSERT_OK(keel_saga_recover_log(log, defs, 2, &rc, &rep, &d));
    assert_int_equal(1, rep.found);
    assert_int_equal(1, rep.busy);
    assert_int_equal(0, rep.recovered);
    assert_string_equal("", f.trace);
    /* an id prefix that does not match sees nothing */
    keel_manual_clock_advance(&mc, 30000);
    rc.id_prefix = "zz";
    ASSERT_OK(keel_saga_recover_log(log, defs, 2, &rc, &rep, &d));
    assert_int_equal(0, rep.found);
    /* once the lease has expired, any recoverer takes it */
    rc.id_prefix = "u";
    ASSERT_OK(keel_saga_recover_log(log, defs, 2, &rc, &rep, &d));
    assert_int_equal(1, rep.recovered);
    assert_string_equal("c0 ", f.trace);
    keel_saga_def_destroy(def);
    keel_saga_def_destroy(other);
    keel_saga_log_destroy(log);
}

/* A record written by a longer definition is reported, not driven out of bounds. */
static void test_recovery_record_not_fitting_definition(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    keel_saga_config cfg;
    dead_cfg(&cfg);
    keel_saga_def *def = make_def("checkout", &f, 0xf, &cfg);
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
    run_until_failure(def, log, "long", KEEL_SAGA_EV_STEP_COMPLETED, 3, 0);
    keel_saga_def *shorter = NULL;
    ASSERT_OK(keel_saga_def_create(&shorter, "checkout", &cfg));
    ASSERT_OK(keel_saga_def_add_step(shorter, "reserve_inventory", act, comp, &f));
    ASSERT_OK(keel_saga_def_add_step(shorter, "authorize_payment", act, comp, &f));
    f.trace[0] = '\0';
    seen s;
    keel_saga_recover_report rep;
    keel_diag d;
    assert_int_equal(KEEL_ESTATE, recover(log, shorter, &s, &rep, &d));
    assert_non_null(strstr(d.msg, "long"));
    assert_int_equal(1, rep.errors);
    assert_int_equal(0, rep.recovered);
    assert_string_equal("", f.trace);
    /* the right definition recovers it */
    ASSERT_OK(recover(log, def, &s, &rep, &d));
    assert_string_equal("c3 c2 c1 c0 ", f.trace);
    keel_saga_def_destroy(shorter);
    keel_saga_def_destroy(def);
    keel_saga_log_destroy(log);
}

/* ------------------------------------------------ concurrent recovery -- */

#define NCONC 40

static atomic_int g_comp_calls[NCONC];

static keel_err cc_act(const keel_saga_call *c, json_t *ctx, void *ud)
{
    (void)c;
    (void)ctx;
    (void)ud;
    return KEEL_OK;
}

static keel_err cc_comp(const keel_saga_call *c, json_t *ctx, void *ud)
{
    (void)c;
    (void)ud;
    json_int_t i = json_integer_value(json_object_get(ctx, "i"));
    if (c->step == 0 && i >= 0 && i < NCONC)
        atomic_fetch_add(&g_comp_calls[i], 1);
    return KEEL_OK;
}

typedef struct rthread {
    keel_saga_log *log;
    const keel_saga_def *def;
    keel_saga_recover_report rep;
    keel_err rc;
} rthread;

static void *recover_thread(void *p)
{
    rthread *t = p;
    keel_saga_recover_config rc;
    keel_saga_recover_config_default(&rc);
    rc.reclaim_owner = "dead";
    keel_diag d;
    t->rc = keel_saga_recover_log(t->log, &t->def, 1, &rc, &t->rep, &d);
    return NULL;
}

static void test_concurrent_recovery_claims_each_saga_once(void **state)
{
    (void)state;
    keel_saga_config cfg;
    dead_cfg(&cfg);
    keel_saga_def *def = NULL;
    ASSERT_OK(keel_saga_def_create(&def, "conc", &cfg));
    ASSERT_OK(keel_saga_def_add_step(def, "one", cc_act, cc_comp, NULL));
    ASSERT_OK(keel_saga_def_add_step(def, "two", cc_act, cc_comp, NULL));
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
    for (int i = 0; i < NCONC; i++) {
        atomic_init(&g_comp_calls[i], 0);
        fail_log fl;
        fail_log_init(&fl, log, KEEL_SAGA_EV_STEP_COMPLETED, 1, 0);
        char id[32];
        snprintf(id, sizeof(id), "c%03d", i);
        json_t *ctx = json_pack("{s:i}", "i", i);
        keel_saga_exec *x = NULL;
        keel_diag d;
        assert_int_equal(KEEL_EIO, keel_saga_execute(def, &fl.base, id, ctx, &x, &d));
        json_decref(ctx);
    }
    rthread t[2] = {{log, def, {0}, KEEL_OK}, {log, def, {0}, KEEL_OK}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(0, pthread_create(&th[i], NULL, recover_thread, &t[i]));
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    ASSERT_OK(t[0].rc);
    ASSERT_OK(t[1].rc);
    assert_int_equal(NCONC, t[0].rep.recovered + t[1].rep.recovered);
    assert_int_equal(NCONC, t[0].rep.compensated + t[1].rep.compensated);
    for (int i = 0; i < NCONC; i++)
        assert_int_equal(1, atomic_load(&g_comp_calls[i]));
    keel_saga_def_destroy(def);
    keel_saga_log_destroy(log);
}

/* ------------------------------------------------------------- logging -- */

typedef struct logcount {
    int info_transitions; /* INFO records naming a transition */
    int error_failed_comp;/* ERROR records announcing FAILED_COMPENSATION */
    int error_comp;       /* ERROR records for a compensation that failed for good */
    int other;
} logcount;

static logcount *g_lc;

/* Counts (when asked) and drops every keel.pay.saga record, so test output stays quiet. */
static int log_hook(keel_log_record *rec, void *ud)
{
    (void)ud;
    if (strcmp(keel_log_record_logger(rec), "keel.pay.saga") != 0)
        return 0;
    if (g_lc != NULL) {
        keel_str m = keel_log_record_message(rec);
        char msg[512];
        snprintf(msg, sizeof(msg), "%.*s", (int)KEEL_MIN(m.len, sizeof(msg) - 1), m.ptr);
        keel_log_level lv = keel_log_record_level(rec);
        if (lv == KEEL_LOG_LEVEL_INFO && strstr(msg, "step_started") != NULL)
            g_lc->info_transitions++;
        else if (lv == KEEL_LOG_LEVEL_ERROR && strstr(msg, "FAILED_COMPENSATION") != NULL)
            g_lc->error_failed_comp++;
        else if (lv == KEEL_LOG_LEVEL_ERROR && strstr(msg, "compensation of") != NULL)
            g_lc->error_comp++;
        else
            g_lc->other++;
    }
    return 1;
}

static void test_log_levels(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    f.fail_step = 2;
    f.comp_fail[0] = 1000;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_saga_config cfg;
    keel_saga_config_default(&cfg);
    cfg.clock = &mc.clock;
    keel_saga_def *def = make_def("checkout", &f, 0x3, &cfg);
    logcount lc;
    memset(&lc, 0, sizeof(lc));
    g_lc = &lc;
    keel_saga_exec *x = NULL;
    keel_diag d;
    ASSERT_OK(keel_saga_execute(def, NULL, "logged", NULL, &x, &d));
    g_lc = NULL;
    assert_int_equal(KEEL_SAGA_FAILED_COMPENSATION, keel_saga_exec_state(x));
    assert_int_equal(3, lc.info_transitions); /* steps 0, 1, 2 started */
    assert_int_equal(1, lc.error_comp);
    assert_int_equal(1, lc.error_failed_comp);
    assert_true(lc.other > 0);
    keel_saga_exec_destroy(x);
    keel_saga_def_destroy(def);
}

/* ------------------------------------------------------------------ OOM -- */

/* Every allocation failure during execution or recovery surfaces as KEEL_ENOMEM (no crash,
 * no leak under ASan); a saga stopped by one is finished by a later recovery. */
static void test_allocation_failures(void **state)
{
    (void)state;
    int ok = 0, recovered = 0;
    keel_test_failalloc_install();
    for (int n = 0; n < 600; n++) {
        fx f;
        fx_init(&f);
        f.fail_step = 2;
        keel_test_failalloc_arm(-1);
        keel_saga_config cfg;
        dead_cfg(&cfg);
        cfg.compensation_base_delay_ms = 0;
        keel_saga_def *def = make_def("checkout", &f, 0x3, &cfg);
        keel_saga_log *log;
        ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
        keel_saga_exec *x = NULL;
        keel_diag d;
        keel_test_failalloc_arm(n);
        keel_err e = keel_saga_execute(def, log, "oom", NULL, &x, &d);
        keel_test_failalloc_arm(-1);
        if (e == KEEL_OK) {
            assert_int_equal(KEEL_SAGA_COMPENSATED, keel_saga_exec_state(x));
            keel_saga_exec_destroy(x);
            ok++;
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
            assert_null(x);
            /* recovery under allocation failure, then without */
            /* the recoverer reclaims under the dead name, so a claim left behind by the
             * failed first attempt is taken over by the second without waiting for its lease */
            keel_saga_recover_config rc;
            keel_saga_recover_config_default(&rc);
            rc.owner = "dead";
            rc.reclaim_owner = "dead";
            const keel_saga_def *defs[1] = {def};
            keel_saga_recover_report rep;
            keel_test_failalloc_arm(n / 2);
            e = keel_saga_recover_log(log, defs, 1, &rc, &rep, &d);
            keel_test_failalloc_arm(-1);
            assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
            e = keel_saga_recover_log(log, defs, 1, &rc, &rep, &d);
            ASSERT_OK(e);
            keel_saga_record r;
            keel_err le = keel_saga_log_load(log, "oom", &r, &d);
            if (le == KEEL_OK) {
                assert_true(r.state == KEEL_SAGA_COMPENSATED);
                keel_saga_record_cleanup(&r);
                recovered++;
            } else {
                assert_int_equal(KEEL_ENOTFOUND, le); /* the start was never recorded */
            }
        }
        keel_saga_log_destroy(log);
        keel_saga_def_destroy(def);
        if (ok > 3)
            break;
    }
    keel_test_failalloc_remove();
    assert_true(ok > 0);
    assert_true(recovered > 0);
}

int main(void)
{
    (void)keel_log_set_hook(log_hook, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_success_path),
        cmocka_unit_test(test_failure_at_each_step_compensates_in_reverse),
        cmocka_unit_test(test_steps_without_compensation_are_skipped),
        cmocka_unit_test(test_compensation_retry_then_success),
        cmocka_unit_test(test_compensation_fails_permanently),
        cmocka_unit_test(test_validation_and_lookups),
        cmocka_unit_test(test_recovery_unknown_outcome_compensates_that_step),
        cmocka_unit_test(test_recovery_rules),
        cmocka_unit_test(test_recovery_resume_policy),
        cmocka_unit_test(test_recovery_unknown_definition_and_leases),
        cmocka_unit_test(test_recovery_record_not_fitting_definition),
        cmocka_unit_test(test_concurrent_recovery_claims_each_saga_once),
        cmocka_unit_test(test_allocation_failures),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    (void)keel_log_set_hook(NULL, NULL);
    return rc;
}
