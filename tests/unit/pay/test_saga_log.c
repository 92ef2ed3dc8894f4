/* Tests for src/pay/saga_log.c: the saga log contract (insert, fencing on the claim token,
 * unknown ids, context round trip, history order, active listing with prefix and keyset
 * paging, claim compare-and-set with leases and reclaim) run against the in-memory log, the
 * durable log on a SQLite file under KEEL_TEST_TMP and, when KEEL_TEST_PG_DSN is set, on
 * PostgreSQL; durability across a reopen; recovery through keel_saga_recover(store); and
 * two recoverers with their own store handles claiming each saga exactly once. */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel_int.h"

#include <keel/payment.h>
#include <keel/saga.h>

static const char *pg_dsn;
static char g_prefix[64]; /* unique per process: PostgreSQL tables are shared */

/* Drop saga records from the log (they are dropped in the hook). */
static int quiet_hook(keel_log_record *rec, void *ud)
{
    (void)ud;
    return strcmp(keel_log_record_logger(rec), "keel.pay.saga") == 0;
}

/* ------------------------------------------------------------- helpers -- */

static keel_store *open_url(const char *url)
{
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    keel_store *s = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_store_open(&s, &cfg, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "open %s: %s\n", url, d.msg);
    assert_int_equal(KEEL_OK, e);
    return s;
}

static void sqlite_path(char *out, size_t n, const char *tag)
{
    snprintf(out, n, "%s/saga_log_%s_%ld.db", KEEL_TEST_TMP, tag, (long)getpid());
}

static void sqlite_remove(const char *path)
{
    char p[600];
    remove(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    remove(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    remove(p);
}

static keel_saga_log *sql_log(keel_store *s)
{
    keel_saga_log *log = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_saga_log_sql_create(&log, s, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "saga log: %s\n", d.msg);
    assert_int_equal(KEEL_OK, e);
    return log;
}

static void rec_init(keel_saga_record *r, const char *id, const char *claim, const char *owner)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", id);
    snprintf(r->name, sizeof(r->name), "contract");
    snprintf(r->claim, sizeof(r->claim), "%s", claim);
    snprintf(r->owner, sizeof(r->owner), "%s", owner);
    r->state = KEEL_SAGA_RUNNING;
    r->comp_next = -1;
    r->failed_step = -1;
    r->context = json_pack("{s:i}", "k", 1);
}

static keel_err rec_event(keel_saga_log *log, keel_saga_event_kind kind, const keel_saga_record *r,
                          int step, const char *step_name, int ctx_changed, uint64_t lease,
                          keel_diag *d)
{
    keel_saga_event ev = {kind, r, step, step_name, KEEL_OK, 0, 0, ctx_changed, lease};
    return log->record(log, &ev, d);
}

typedef struct hist {
    char s[2048];
    int n;
} hist;

static void hist_cb(const keel_saga_entry *e, void *ud)
{
    hist *h = ud;
    size_t n = strlen(h->s);
    assert_int_equal(h->n + 1, e->seq);
    assert_true(e->at_ms > 0);
    h->n++;
    snprintf(h->s + n, sizeof(h->s) - n, "%s", keel_saga_event_kind_name(e->kind));
    n = strlen(h->s);
    if (e->step >= 0)
        snprintf(h->s + n, sizeof(h->s) - n, "(%d:%s:%u:%s)", e->step,
                 e->step_name ? e->step_name : "-", e->attempt, keel_err_name(e->error));
    n = strlen(h->s);
    snprintf(h->s + n, sizeof(h->s) - n, "[%s] ", keel_saga_state_name(e->state));
}

static void history(keel_saga_log *log, const char *id, hist *h)
{
    memset(h, 0, sizeof(*h));
    keel_diag d;
    keel_err e = keel_saga_log_history(log, id, hist_cb, h, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "history: %s\n", d.msg);
    ASSERT_OK(e);
}

static void idf(char *out, size_t n, const char *suffix)
{
    snprintf(out, n, "%s%s", g_prefix, suffix);
}

/* ------------------------------------------------------------ contract -- */

static void log_contract(keel_saga_log *log)
{
    char a[96], b[96], c[96];
    idf(a, sizeof(a), "a");
    idf(b, sizeof(b), "b");
    idf(c, sizeof(c), "c");
    keel_diag d;
    keel_saga_record r;
    rec_init(&r, a, "claim-1", "owner-1");
    ASSERT_OK(rec_event(log, KEEL_SAGA_EV_STARTED, &r, -1, NULL, 1, 60000, &d));
    assert_int_equal(KEEL_EEXIST, rec_event(log, KEEL_SAGA_EV_STARTED, &r, -1, NULL, 1, 60000, &d));
    assert_non_null(strstr(d.msg, a));

    r.in_step = 1;
    ASSERT_OK(rec_event(log, KEEL_SAGA_EV_STEP_STARTED, &r, 0, "reserve", 0, 60000, &d));
    /* fencing: another claim token may not write */
    keel_saga_record other;
    rec_init(&other, a, "claim-x", "owner-1");
    assert_int_equal(KEEL_EBUSY,
                     rec_event(log, KEEL_SAGA_EV_STEP_COMPLETED, &other, 0, "reserve", 1, 0, &d));
    keel_saga_record_cleanup(&other);
    /* unknown ids */
    keel_saga_record ghost;
    rec_init(&ghost, "ghost_saga_99", "claim-1", "owner-1");
    assert_int_equal(KEEL_ENOTFOUND,
                     rec_event(log, KEEL_SAGA_EV_STEP_STARTED, &ghost, 0, "x", 0, 0, &d));
    assert_non_null(strstr(d.msg, "ghost_saga_99"));
    keel_saga_record_cleanup(&ghost);
    keel_saga_record l;
    assert_int_equal(KEEL_ENOTFOUND, keel_saga_log_load(log, "ghost_saga_99", &l, &d));
    assert_non_null(strstr(d.msg, "ghost_saga_99"));
    hist h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(KEEL_ENOTFOUND, keel_saga_log_history(log, "ghost_saga_98", hist_cb, &h, &d));
    assert_non_null(strstr(d.msg, "ghost_saga_98"));

    /* completion with a context that must round-trip exactly */
    r.in_step = 0;
    r.next_step = 1;
    json_decref(r.context);
    r.context = json_pack("{s:i, s:s, s:{s:[i,i,s,n,b,f]}}", "k", 1, "charge_id", "ch_1",
                          "nested", "a", 1, -2, "caf\xc3\xa9 \"q\"", 1, 2.5);
    ASSERT_OK(rec_event(log, KEEL_SAGA_EV_STEP_COMPLETED, &r, 0, "reserve", 1, 60000, &d));
    ASSERT_OK(keel_saga_log_load(log, a, &l, &d));
    assert_string_equal(a, l.id);
    assert_string_equal("contract", l.name);
    assert_int_equal(KEEL_SAGA_RUNNING, l.state);
    assert_int_equal(1, l.next_step);
    assert_int_equal(0, l.in_step);
    assert_int_equal(-1, l.comp_next);
    assert_int_equal(-1, l.failed_step);
    assert_int_equal(3, l.seq);
    assert_string_equal("owner-1", l.owner);
    assert_string_equal("claim-1", l.claim);
    assert_true(l.lease_until_ms > l.updated_at_ms);
    assert_true(json_equal(r.context, l.context));
    keel_saga_record_cleanup(&l);
    /* a transition without a context change keeps the stored context */
    r.in_step = 1;
    json_object_set_new(r.context, "not_persisted", json_true());
    ASSERT_OK(rec_event(log, KEEL_SAGA_EV_STEP_STARTED, &r, 1, "authorize", 0, 60000, &d));
    ASSERT_OK(keel_saga_log_load(log, a, &l, &d));
    assert_null(json_object_get(l.context, "not_persisted"));
    assert_string_equal("ch_1", json_string_value(json_object_get(l.context, "charge_id")));
    keel_saga_record_cleanup(&l);
    history(log, a, &h);
    assert_string_equal("saga_started[RUNNING] step_started(0:reserve:0:KEEL_OK)[RUNNING] "
                        "step_completed(0:reserve:0:KEEL_OK)[RUNNING] "
                        "step_started(1:authorize:0:KEEL_OK)[RUNNING] ",
                        h.s);

    /* b: lease 0 (claimable at once); c: finished */
    keel_saga_record rb, rc;
    rec_init(&rb, b, "claim-b", "owner-b");
    ASSERT_OK(rec_event(log, KEEL_SAGA_EV_STARTED, &rb, -1, NULL, 1, 0, &d));
    rec_init(&rc, c, "claim-c", "owner-c");
    ASSERT_OK(rec_event(log, KEEL_SAGA_EV_STARTED, &rc, -1, NULL, 1, 60000, &d));
    rc.state = KEEL_SAGA_COMPLETED;
    ASSERT_OK(rec_event(log, KEEL_SAGA_EV_FINISHED, &rc, -1, NULL, 1, 60000, &d));
    assert_int_equal(KEEL_EBUSY, rec_event(log, KEEL_SAGA_EV_FINISHED, &rc, -1, NULL, 1, 0, &d));

    char ids[4][KEEL_SAGA_ID_MAX + 1];
    size_t n = 0;
    ASSERT_OK(log->list_active(log, g_prefix, "", ids, 4, &n, &d));
    assert_int_equal(2, n);
    assert_string_equal(a, ids[0]);
    assert_string_equal(b, ids[1]);
    ASSERT_OK(log->list_active(log, g_prefix, a, ids, 4, &n, &d));
    assert_int_equal(1, n);
    assert_string_equal(b, ids[0]);
    ASSERT_OK(log->list_active(log, g_prefix, "", ids, 1, &n, &d));
    assert_int_equal(1, n);
    assert_string_equal(a, ids[0]);
    ASSERT_OK(log->list_active(log, "no_such_prefix_", "", ids, 4, &n, &d));
    assert_int_equal(0, n);

    /* claims: compare-and-set on the observed token, lease or reclaim_owner */
    keel_saga_claim cl = {a, "wrong", "claim-2", "recoverer", NULL, 60000};
    assert_int_equal(KEEL_EBUSY, log->claim(log, &cl, &d));
    cl.observed_claim = "claim-1";
    assert_int_equal(KEEL_EBUSY, log->claim(log, &cl, &d)); /* lease still runs */
    cl.reclaim_owner = "someone-else";
    assert_int_equal(KEEL_EBUSY, log->claim(log, &cl, &d));
    cl.reclaim_owner = "owner-1";
    ASSERT_OK(log->claim(log, &cl, &d));
    assert_int_equal(KEEL_EBUSY, log->claim(log, &cl, &d)); /* the token moved on */
    /* the old executor is fenced off, the new claim writes */
    assert_int_equal(KEEL_EBUSY,
                     rec_event(log, KEEL_SAGA_EV_STEP_COMPLETED, &r, 1, "authorize", 1, 0, &d));
    snprintf(r.claim, sizeof(r.claim), "claim-2");
    r.state = KEEL_SAGA_COMPENSATING;
    r.in_step = 0;
    r.failed_step = 1;
    r.error = KEEL_ESTATE;
    r.comp_next = 1;
    keel_saga_event ev = {KEEL_SAGA_EV_ABORTED, &r, 1, "authorize", KEEL_ESTATE, 0, 0, 0, 60000};
    ASSERT_OK(log->record(log, &ev, &d));
    ASSERT_OK(keel_saga_log_load(log, a, &l, &d));
    assert_string_equal("recoverer", l.owner);
    assert_string_equal("claim-2", l.claim);
    assert_int_equal(KEEL_SAGA_COMPENSATING, l.state);
    assert_int_equal(1, l.comp_next);
    assert_int_equal(KEEL_ESTATE, l.error);
    assert_int_equal(6, l.seq);
    keel_saga_record_cleanup(&l);
    history(log, a, &h);
    assert_non_null(strstr(h.s, "step_started(1:authorize:0:KEEL_OK)[RUNNING] "
                                "saga_claimed[RUNNING] "
                                "saga_aborted(1:authorize:0:KEEL_ESTATE)[COMPENSATING] "));
    /* b's lease is 0: claimable by anyone */
    keel_saga_claim clb = {b, "claim-b", "claim-b2", "recoverer", NULL, 60000};
    ASSERT_OK(log->claim(log, &clb, &d));
    /* c is finished: never claimable */
    keel_saga_claim clc = {c, "claim-c", "claim-c2", "recoverer", "owner-c", 0};
    assert_int_equal(KEEL_EBUSY, log->claim(log, &clc, &d));
    clc.saga_id = "ghost_saga_97";
    keel_err ce = log->claim(log, &clc, &d);
    assert_true(ce == KEEL_ENOTFOUND || ce == KEEL_EBUSY);
    keel_saga_record_cleanup(&r);
    keel_saga_record_cleanup(&rb);
    keel_saga_record_cleanup(&rc);
}

static void test_memory_log_contract(void **state)
{
    (void)state;
    keel_saga_log *log;
    ASSERT_OK(keel_saga_log_memory_create(&log, NULL));
    assert_string_equal("memory", log->name);
    log_contract(log);
    keel_saga_log_destroy(log);
}

/* ----------------------------------------------------- full saga on SQL -- */

typedef struct fx {
    char trace[256];
    int fail_step;
    unsigned comp_fail;
} fx;

static void tr(fx *f, char k, size_t step)
{
    size_t n = strlen(f->trace);
    snprintf(f->trace + n, sizeof(f->trace) - n, "%c%zu ", k, step);
}

static keel_err act(const keel_saga_call *c, json_t *ctx, void *ud)
{
    fx *f = ud;
    tr(f, 'a', c->step);
    if ((int)c->step == f->fail_step)
        return KEEL_EPAY_INSUFFICIENT_FUNDS;
    char key[16];
    snprintf(key, sizeof(key), "s%zu", c->step);
    json_object_set_new(ctx, key, json_string(c->step_name));
    return KEEL_OK;
}

static keel_err comp(const keel_saga_call *c, json_t *ctx, void *ud)
{
    fx *f = ud;
    tr(f, 'c', c->step);
    if (c->step == 0 && f->comp_fail > 0) {
        f->comp_fail--;
        return KEEL_EPAY_NETWORK;
    }
    json_object_set_new(ctx, "undone", json_integer((json_int_t)c->step));
    return KEEL_OK;
}

static keel_saga_def *make_def(fx *f, keel_saga_config *cfg)
{
    keel_saga_def *d = NULL;
    ASSERT_OK(keel_saga_def_create(&d, "checkout", cfg));
    ASSERT_OK(keel_saga_def_add_step(d, "reserve_inventory", act, comp, f));
    ASSERT_OK(keel_saga_def_add_step(d, "authorize_payment", act, comp, f));
    ASSERT_OK(keel_saga_def_add_step(d, "capture_payment", act, NULL, f));
    ASSERT_OK(keel_saga_def_add_step(d, "create_shipment", act, NULL, f));
    return d;
}

/* The same saga on the memory log and on log gives the same history. */
static void saga_round_trip(keel_saga_log *log)
{
    fx f;
    memset(&f, 0, sizeof(f));
    f.fail_step = 3;
    f.comp_fail = 1;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_saga_config cfg;
    keel_saga_config_default(&cfg);
    cfg.clock = &mc.clock;
    keel_saga_def *def = make_def(&f, &cfg);
    keel_saga_log *mem;
    ASSERT_OK(keel_saga_log_memory_create(&mem, NULL));
    char id[96];
    idf(id, sizeof(id), "rt");
    keel_saga_exec *x = NULL;
    keel_diag d;
    json_t *ctx = json_pack("{s:s}", "order_id", "ord_1");
    keel_err e = keel_saga_execute(def, log, id, ctx, &x, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "execute: %s\n", d.msg);
    ASSERT_OK(e);
    assert_int_equal(KEEL_SAGA_COMPENSATED, keel_saga_exec_state(x));
    assert_int_equal(KEEL_EPAY_INSUFFICIENT_FUNDS, keel_saga_assert_succeeded(x));
    assert_string_equal("a0 a1 a2 a3 c1 c0 c0 ", f.trace);
    assert_int_equal(100, mc.slept_total);
    keel_saga_exec_destroy(x);
    json_decref(ctx);

    memset(f.trace, 0, sizeof(f.trace));
    f.comp_fail = 1;
    ctx = json_pack("{s:s}", "order_id", "ord_1");
    ASSERT_OK(keel_saga_execute(def, mem, id, ctx, &x, &d));
    keel_saga_exec_destroy(x);
    json_decref(ctx);

    hist h1, h2;
    history(log, id, &h1);
    history(mem, id, &h2);
    assert_string_equal(h2.s, h1.s);
    assert_non_null(strstr(h1.s, "compensation_failed(0:reserve_inventory:1:KEEL_EPAY_NETWORK)"
                                 "[COMPENSATING] compensation_started(0:reserve_inventory:2:"
                                 "KEEL_OK)[COMPENSATING]"));
    keel_saga_record r;
    ASSERT_OK(keel_saga_log_load(log, id, &r, &d));
    assert_int_equal(KEEL_SAGA_COMPENSATED, r.state);
    assert_int_equal(3, r.failed_step);
    assert_int_equal(KEEL_EPAY_INSUFFICIENT_FUNDS, r.error);
    assert_int_equal(3, r.next_step);
    assert_int_equal(-1, r.comp_next);
    assert_int_equal(0, r.comp_failures);
    assert_string_equal("ord_1", json_string_value(json_object_get(r.context, "order_id")));
    assert_string_equal("capture_payment", json_string_value(json_object_get(r.context, "s2")));
    assert_int_equal(0, json_integer_value(json_object_get(r.context, "undone")));
    keel_saga_record_cleanup(&r);
    /* the id is taken */
    assert_int_equal(KEEL_EEXIST, keel_saga_execute(def, log, id, NULL, &x, &d));
    keel_saga_def_destroy(def);
    keel_saga_log_destroy(mem);
}

/* Leave a saga behind (a log failure after "step 1 started" was written), then recover it. */
typedef struct fail_log {
    keel_saga_log base;
    keel_saga_log *inner;
    keel_saga_event_kind kind;
    int step;
} fail_log;

static keel_err fl_record(keel_saga_log *self, const keel_saga_event *ev, keel_diag *diag)
{
    fail_log *l = (fail_log *)self;
    if (ev->kind == l->kind && ev->step == l->step)
        return keel_diag_set(diag, KEEL_EIO, 0, "injected");
    return l->inner->record(l->inner, ev, diag);
}

static void leave_behind(const keel_saga_def *def, keel_saga_log *log, const char *id, int i)
{
    fail_log fl;
    memset(&fl, 0, sizeof(fl));
    /* keel_saga_execute only records, so the other operations are left NULL */
    fl.base.name = "fail";
    fl.base.record = fl_record;
    fl.inner = log;
    fl.kind = KEEL_SAGA_EV_STEP_COMPLETED;
    fl.step = 1;
    keel_saga_exec *x = NULL;
    keel_diag d;
    json_t *ctx = json_pack("{s:i}", "i", i);
    assert_int_equal(KEEL_EIO, keel_saga_execute(def, &fl.base, id, ctx, &x, &d));
    json_decref(ctx);
}

static void recover_store(keel_store *s)
{
    fx f;
    memset(&f, 0, sizeof(f));
    f.fail_step = -1;
    keel_saga_config cfg;
    keel_saga_config_default(&cfg);
    cfg.owner = "dead-instance";
    keel_saga_def *def = make_def(&f, &cfg);
    keel_saga_log *log = sql_log(s);
    char id[96];
    idf(id, sizeof(id), "rec");
    leave_behind(def, log, id, 0);
    assert_string_equal("a0 a1 ", f.trace);
    f.trace[0] = '\0';
    keel_saga_recover_config rc;
    keel_saga_recover_config_default(&rc);
    rc.reclaim_owner = "dead-instance";
    rc.id_prefix = id; /* the contract's sagas (name "contract") stay out of the way */
    keel_saga_recover_report rep;
    keel_diag d;
    const keel_saga_def *defs[1] = {def};
    keel_err e = keel_saga_recover(s, defs, 1, &rc, &rep, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "recover: %s\n", d.msg);
    ASSERT_OK(e);
    assert_int_equal(1, rep.recovered);
    assert_int_equal(1, rep.compensated);
    assert_string_equal("c1 c0 ", f.trace);
    keel_saga_record r;
    ASSERT_OK(keel_saga_log_load(log, id, &r, &d));
    assert_int_equal(KEEL_SAGA_COMPENSATED, r.state);
    assert_int_equal(1, r.failed_step);
    assert_int_equal(KEEL_ESTATE, r.error);
    keel_saga_record_cleanup(&r);
    /* nothing left */
    f.trace[0] = '\0';
    ASSERT_OK(keel_saga_recover(s, defs, 1, &rc, &rep, &d));
    assert_int_equal(0, rep.found);
    keel_saga_log_destroy(log);
    keel_saga_def_destroy(def);
}

/* ------------------------------------------------ concurrent recovery -- */

#define NCONC 24
static atomic_int g_calls[NCONC];

static keel_err cc_act(const keel_saga_call *c, json_t *ctx, void *ud)
{
    (void)c;
    (void)ctx;
    (void)ud;
    return KEEL_OK;
}

static keel_err cc_comp(const keel_saga_call *c, json_t *ctx, void *ud)
{
    (void)ud;
    json_int_t i = json_integer_value(json_object_get(ctx, "i"));
    if (c->step == 0 && i >= 0 && i < NCONC)
        atomic_fetch_add(&g_calls[i], 1);
    return KEEL_OK;
}

typedef struct rthread {
    const char *url;
    const char *prefix;
    const keel_saga_def *def;
    keel_saga_recover_report rep;
    keel_err rc;
    char msg[160];
} rthread;

static void *recover_thread(void *p)
{
    rthread *t = p;
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = t->url;
    keel_store *s = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    t->rc = keel_store_open(&s, &cfg, &d);
    if (t->rc == KEEL_OK) {
        keel_saga_recover_config rc;
        keel_saga_recover_config_default(&rc);
        rc.reclaim_owner = "dead-conc";
        rc.id_prefix = t->prefix;
        t->rc = keel_saga_recover(s, &t->def, 1, &rc, &t->rep, &d);
        keel_store_close(s);
    }
    snprintf(t->msg, sizeof(t->msg), "%s", d.msg);
    return NULL;
}

static void concurrent_recovery(const char *url)
{
    keel_saga_config cfg;
    keel_saga_config_default(&cfg);
    cfg.owner = "dead-conc";
    keel_saga_def *def = NULL;
    ASSERT_OK(keel_saga_def_create(&def, "conc", &cfg));
    ASSERT_OK(keel_saga_def_add_step(def, "one", cc_act, cc_comp, NULL));
    ASSERT_OK(keel_saga_def_add_step(def, "two", cc_act, cc_comp, NULL));
    keel_store *s = open_url(url);
    keel_saga_log *log = sql_log(s);
    char prefix[96];
    idf(prefix, sizeof(prefix), "cc");
    for (int i = 0; i < NCONC; i++) {
        atomic_init(&g_calls[i], 0);
        char id[96], suffix[16];
        snprintf(suffix, sizeof(suffix), "cc%03d", i);
        idf(id, sizeof(id), suffix);
        leave_behind(def, log, id, i);
    }
    keel_saga_log_destroy(log);
    keel_store_close(s);
    rthread t[2];
    memset(t, 0, sizeof(t));
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        t[i].url = url;
        t[i].prefix = prefix;
        t[i].def = def;
        assert_int_equal(0, pthread_create(&th[i], NULL, recover_thread, &t[i]));
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        if (t[i].rc != KEEL_OK)
            fprintf(stderr, "recoverer %d: %s\n", i, t[i].msg);
        ASSERT_OK(t[i].rc);
    }
    assert_int_equal(NCONC, t[0].rep.recovered + t[1].rep.recovered);
    assert_int_equal(0, t[0].rep.errors + t[1].rep.errors);
    for (int i = 0; i < NCONC; i++)
        assert_int_equal(1, atomic_load(&g_calls[i]));
    keel_saga_def_destroy(def);
}

/* -------------------------------------------------------------- SQLite -- */

static void test_sqlite_log(void **state)
{
    (void)state;
    char path[512], url[600];
    sqlite_path(path, sizeof(path), "c");
    sqlite_remove(path);
    snprintf(url, sizeof(url), "sqlite:%s", path);
    keel_store *s = open_url(url);
    keel_saga_log *log = sql_log(s);
    assert_string_equal("sql", log->name);
    keel_saga_log *again = sql_log(s); /* migrations are idempotent */
    keel_saga_log_destroy(again);
    log_contract(log);
    saga_round_trip(log);
    keel_saga_log_destroy(log);
    keel_store_close(s);
    /* durable: reopen and read back */
    s = open_url(url);
    log = sql_log(s);
    keel_saga_record r;
    keel_diag d;
    char id[96];
    idf(id, sizeof(id), "rt");
    ASSERT_OK(keel_saga_log_load(log, id, &r, &d));
    assert_int_equal(KEEL_SAGA_COMPENSATED, r.state);
    assert_string_equal("ord_1", json_string_value(json_object_get(r.context, "order_id")));
    keel_saga_record_cleanup(&r);
    idf(id, sizeof(id), "a");
    ASSERT_OK(keel_saga_log_load(log, id, &r, &d));
    assert_int_equal(KEEL_SAGA_COMPENSATING, r.state);
    keel_saga_record_cleanup(&r);
    keel_saga_log_destroy(log);
    recover_store(s);
    keel_store_close(s);
    sqlite_remove(path);
}

static void test_sqlite_concurrent_recovery(void **state)
{
    (void)state;
    char path[512], url[600];
    sqlite_path(path, sizeof(path), "cc");
    sqlite_remove(path);
    snprintf(url, sizeof(url), "sqlite:%s", path);
    concurrent_recovery(url);
    sqlite_remove(path);
}

/* ---------------------------------------------------------- PostgreSQL -- */

static void test_pg_log(void **state)
{
    (void)state;
    if (pg_dsn == NULL) {
        fprintf(stderr, "KEEL_TEST_PG_DSN not set: skipping\n");
        skip();
    }
    keel_store *s = open_url(pg_dsn);
    keel_saga_log *log = sql_log(s);
    log_contract(log);
    saga_round_trip(log);
    keel_saga_log_destroy(log);
    recover_store(s);
    keel_store_close(s);
}

static void test_pg_concurrent_recovery(void **state)
{
    (void)state;
    if (pg_dsn == NULL)
        skip();
    concurrent_recovery(pg_dsn);
}

int main(void)
{
    pg_dsn = getenv("KEEL_TEST_PG_DSN");
    if (pg_dsn != NULL && *pg_dsn == '\0')
        pg_dsn = NULL;
    unsigned r = 0;
    if (keel_random_bytes(&r, sizeof(r)) != KEEL_OK)
        r = (unsigned)getpid();
    snprintf(g_prefix, sizeof(g_prefix), "t%ld_%08x_", (long)getpid(), r);
    (void)keel_log_set_hook(quiet_hook, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_log_contract),
        cmocka_unit_test(test_sqlite_log),
        cmocka_unit_test(test_sqlite_concurrent_recovery),
        cmocka_unit_test(test_pg_log),
        cmocka_unit_test(test_pg_concurrent_recovery),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    (void)keel_log_set_hook(NULL, NULL);
    return rc;
}
