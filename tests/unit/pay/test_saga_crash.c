/* Crash tests for the saga orchestrator and its durable log (src/pay/saga.c, saga_log.c).
 *
 * For every step boundary of the seed's 4-step checkout (reserve_inventory/release,
 * authorize_payment/void, capture_payment, create_shipment) a fork()ed child runs the saga on
 * a SQLite file store (and on PostgreSQL when KEEL_TEST_PG_DSN is set) and dies with SIGKILL:
 * right after "saga started" was written, right after "step k started" was written (before
 * the action runs), inside step k before and after its side effect, right after "step k
 * completed" was written (= before step k+1 starts), and during compensation.  The parent
 * reopens the store, runs keel_saga_recover() and checks the final state and the side
 * effects, which the steps write to a separate table of the same database in their own
 * transactions: the saga either completed with every effect exactly once, or every
 * reservation was released and every authorization voided, compensations ran in reverse
 * order, and no compensation wrote anything for a step that never ran (compensations are
 * idempotent and turn "nothing to undo" into a no-op, as keel/saga.h requires).  The RESUME
 * policy is covered too: recovery completes the saga and idempotent steps never repeat an
 * effect. */
#include "test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keel_int.h"

#include <keel/payment.h>
#include <keel/saga.h>

#define NSTEPS 4
static const char *const FWD[NSTEPS] = {"reserve", "authorize", "capture", "ship"};
static const char *const CMP[NSTEPS] = {"release", "void", NULL, NULL};
static const char *const STEP_NAMES[NSTEPS] = {"reserve_inventory", "authorize_payment",
                                               "capture_payment", "create_shipment"};

typedef enum point {
    P_SAGA_STARTED_REC = 1, /* killed right after "saga started" was written */
    P_STEP_STARTED_REC,     /* ... after "step k started" was written, before the action */
    P_INSIDE_BEFORE,        /* inside step k, before its side effect */
    P_INSIDE_AFTER,         /* inside step k, after its side effect committed */
    P_STEP_COMPLETED_REC,   /* after "step k completed" was written (= before k+1 starts) */
    P_STEP_FAILED_REC,      /* after "step k failed" was written */
    P_COMP_INSIDE_AFTER,    /* inside compensation k, after its side effect committed */
    P_COMP_COMPLETED_REC    /* after "compensation k completed" was written */
} point;

typedef struct scenario {
    point p;
    int k;
    int fail_step; /* the action of this step fails with KEEL_EPAY_DECLINED (-1 none) */
    keel_saga_recovery policy;
} scenario;

/* Globals shared by the step functions (in the child and in the parent). */
static const char *pg_dsn;
static scenario g_sc;
static int g_in_child;
static keel_store *g_store;
static char g_table[64];
static char g_sql_count[256], g_sql_insert[256], g_sql_list[256], g_sql_ddl[256];
static int g_comp_calls[NSTEPS]; /* compensation calls made by recovery (parent) */

static int quiet_hook(keel_log_record *rec, void *ud)
{
    (void)ud;
    return strcmp(keel_log_record_logger(rec), "keel.pay.saga") == 0;
}

/* ------------------------------------------------------------- effects -- */

typedef struct eff {
    const char *saga_id;
    const char *op;
    const char *requires; /* insert only if this op exists (NULL: no condition) */
    int once;             /* insert only if op does not exist yet */
} eff;

static keel_err count_op(keel_db *db, const char *saga_id, const char *op, int64_t *n)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, g_sql_count, &st, NULL);
    if (e != KEEL_OK)
        return e;
    if ((e = keel_stmt_bind_text(st, 1, saga_id, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 2, op, SIZE_MAX)) != KEEL_OK)
        return e;
    int rc = keel_stmt_step(st, NULL);
    if (rc != 1)
        return rc < 0 ? (keel_err)rc : KEEL_EINTERNAL;
    *n = keel_stmt_int64(st, 0);
    return KEEL_OK;
}

static keel_err eff_fn(keel_db *db, void *ud)
{
    const eff *f = ud;
    int64_t n = 0;
    keel_err e;
    if (f->requires != NULL) {
        if ((e = count_op(db, f->saga_id, f->requires, &n)) != KEEL_OK)
            return e;
        if (n == 0)
            return KEEL_OK; /* nothing to undo */
    }
    if (f->once) {
        if ((e = count_op(db, f->saga_id, f->op, &n)) != KEEL_OK)
            return e;
        if (n > 0)
            return KEEL_OK; /* already done */
    }
    keel_stmt *st;
    if ((e = keel_db_prepare(db, g_sql_insert, &st, NULL)) != KEEL_OK)
        return e;
    if ((e = keel_stmt_bind_text(st, 1, f->saga_id, SIZE_MAX)) != KEEL_OK ||
        (e = keel_stmt_bind_text(st, 2, f->op, SIZE_MAX)) != KEEL_OK)
        return e;
    int rc = keel_stmt_step(st, NULL);
    return rc < 0 ? (keel_err)rc : KEEL_OK;
}

static void die_if(point p, int k)
{
    if (g_in_child && g_sc.p == p && g_sc.k == k)
        raise(SIGKILL);
}

static keel_err act(const keel_saga_call *c, json_t *ctx, void *ud)
{
    (void)ud;
    int k = (int)c->step;
    die_if(P_INSIDE_BEFORE, k);
    if (k == g_sc.fail_step)
        return KEEL_EPAY_DECLINED;
    /* under RESUME a step may run twice: it is idempotent */
    eff f = {c->saga_id, FWD[k], NULL, g_sc.policy == KEEL_SAGA_RECOVER_RESUME};
    keel_err e = keel_store_tx(g_store, eff_fn, &f, NULL);
    if (e != KEEL_OK)
        return e;
    json_object_set_new(ctx, FWD[k], json_true());
    die_if(P_INSIDE_AFTER, k);
    return KEEL_OK;
}

/* Idempotent, and a no-op when the step it undoes never took effect. */
static keel_err comp(const keel_saga_call *c, json_t *ctx, void *ud)
{
    (void)ctx;
    (void)ud;
    int k = (int)c->step;
    if (!g_in_child)
        g_comp_calls[k]++;
    eff f = {c->saga_id, CMP[k], FWD[k], 1};
    keel_err e = keel_store_tx(g_store, eff_fn, &f, NULL);
    if (e != KEEL_OK)
        return e;
    die_if(P_COMP_INSIDE_AFTER, k);
    return KEEL_OK;
}

static keel_saga_def *make_def(void)
{
    keel_saga_config cfg;
    keel_saga_config_default(&cfg);
    cfg.owner = "crash-child";
    cfg.recovery = g_sc.policy;
    cfg.compensation_base_delay_ms = 0;
    keel_saga_def *d = NULL;
    if (keel_saga_def_create(&d, "checkout", &cfg) != KEEL_OK)
        return NULL;
    for (int i = 0; i < NSTEPS; i++)
        if (keel_saga_def_add_step(d, STEP_NAMES[i], act, CMP[i] ? comp : NULL, NULL) !=
            KEEL_OK) {
            keel_saga_def_destroy(d);
            return NULL;
        }
    return d;
}

/* --------------------------------------------------------- killing log -- */

typedef struct kill_log {
    keel_saga_log base;
    keel_saga_log *inner;
} kill_log;

static keel_err kl_record(keel_saga_log *self, const keel_saga_event *ev, keel_diag *diag)
{
    kill_log *l = (kill_log *)self;
    keel_err e = l->inner->record(l->inner, ev, diag);
    if (e != KEEL_OK)
        return e;
    point p = 0;
    switch (ev->kind) {
    case KEEL_SAGA_EV_STARTED: p = P_SAGA_STARTED_REC; break;
    case KEEL_SAGA_EV_STEP_STARTED: p = P_STEP_STARTED_REC; break;
    case KEEL_SAGA_EV_STEP_COMPLETED: p = P_STEP_COMPLETED_REC; break;
    case KEEL_SAGA_EV_STEP_FAILED: p = P_STEP_FAILED_REC; break;
    case KEEL_SAGA_EV_COMP_COMPLETED: p = P_COMP_COMPLETED_REC; break;
    default: break;
    }
    if (p != 0)
        die_if(p, ev->step);
    return KEEL_OK;
}

/* The child: run the saga until it is killed.  Never returns into cmocka. */
static void child_main(const char *url, const char *id)
{
    g_in_child = 1;
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    if (keel_store_open(&g_store, &cfg, NULL) != KEEL_OK)
        _exit(4);
    keel_saga_log *log = NULL;
    if (keel_saga_log_sql_create(&log, g_store, NULL) != KEEL_OK)
        _exit(5);
    kill_log kl;
    memset(&kl, 0, sizeof(kl));
    kl.base.name = "kill";
    kl.base.record = kl_record;
    kl.inner = log;
    keel_saga_def *def = make_def();
    if (def == NULL)
        _exit(6);
    json_t *ctx = json_pack("{s:s, s:i}", "order_id", id, "amount", 5000);
    keel_saga_exec *x = NULL;
    keel_err e = keel_saga_execute(def, &kl.base, id, ctx, &x, NULL);
    _exit(e == KEEL_OK ? 3 : 7); /* not killed: the scenario is wrong */
}

/* ------------------------------------------------------------- checking -- */

typedef struct seen {
    int n;
    keel_saga_state state;
    int failed_step;
    keel_err error;
} seen;

static void on_rec(const keel_saga_exec *x, void *ud)
{
    seen *s = ud;
    s->n++;
    s->state = keel_saga_exec_state(x);
    s->failed_step = keel_saga_exec_failed_step(x);
    s->error = keel_saga_exec_error(x);
}

static void effects_of(const char *id, char *out, size_t n)
{
    keel_db *db = NULL;
    ASSERT_OK(keel_db_acquire(g_store, &db, NULL));
    keel_stmt *st;
    ASSERT_OK(keel_db_prepare(db, g_sql_list, &st, NULL));
    ASSERT_OK(keel_stmt_bind_text(st, 1, id, SIZE_MAX));
    out[0] = '\0';
    int rc;
    while ((rc = keel_stmt_step(st, NULL)) == 1) {
        size_t len = strlen(out);
        snprintf(out + len, n - len, "%s%s", len ? "," : "", keel_stmt_text(st, 0, NULL));
    }
    assert_int_equal(0, rc);
    keel_db_release(db);
}

static int pos_of(const char *list, const char *op)
{
    int i = 0, found = -1;
    size_t oplen = strlen(op);
    for (const char *t = list; *t != '\0'; i++) {
        const char *end = strchr(t, ',');
        size_t len = end ? (size_t)(end - t) : strlen(t);
        if (len == oplen && memcmp(t, op, len) == 0) {
            assert_int_equal(-1, found); /* every effect at most once */
            found = i;
        }
        t += len;
        if (*t == ',')
            t++;
    }
    return found;
}

/* Invariants that hold whatever the scenario. */
static void check_consistent(const char *eff, keel_saga_state st)
{
    int p[NSTEPS], c[NSTEPS];
    for (int i = 0; i < NSTEPS; i++) {
        p[i] = pos_of(eff, FWD[i]);
        c[i] = CMP[i] ? pos_of(eff, CMP[i]) : -1;
    }
    for (int i = 1; i < NSTEPS; i++)
        if (p[i] >= 0)
            assert_true(p[i - 1] >= 0 && p[i - 1] < p[i]); /* steps in order */
    if (st == KEEL_SAGA_COMPLETED) {
        assert_string_equal("reserve,authorize,capture,ship", eff);
        return;
    }
    assert_int_equal(KEEL_SAGA_COMPENSATED, st);
    for (int i = 0; i < NSTEPS; i++) {
        if (CMP[i] == NULL)
            continue;
        assert_int_equal(p[i] >= 0, c[i] >= 0); /* undone iff it took effect */
        for (int j = 0; j < NSTEPS; j++)
            if (c[i] >= 0 && p[j] >= 0)
                assert_true(c[i] > p[j]); /* compensations after every step */
    }
    if (c[0] >= 0 && c[1] >= 0)
        assert_true(c[1] < c[0]); /* reverse order: void before release */
}

/* What the scenario must end with. */
static void expected(const scenario *sc, char *eff, size_t n, keel_saga_state *st,
                     int comp_calls[NSTEPS], int *failed_step, keel_err *error)
{
    int fwd, last_comp; /* forward effects written; first step recovery compensates */
    memset(comp_calls, 0, sizeof(int) * NSTEPS);
    *error = KEEL_ESTATE;
    switch (sc->p) {
    case P_SAGA_STARTED_REC: fwd = 0; last_comp = -1; *failed_step = 0; break;
    case P_STEP_STARTED_REC:
    case P_INSIDE_BEFORE: fwd = sc->k; last_comp = sc->k; *failed_step = sc->k; break;
    case P_INSIDE_AFTER: fwd = sc->k + 1; last_comp = sc->k; *failed_step = sc->k; break;
    case P_STEP_COMPLETED_REC: fwd = sc->k + 1; last_comp = sc->k; *failed_step = sc->k + 1;
        break;
    default: /* compensation scenarios: step 3 failed, comp k..0 were pending or redone */
        fwd = 3;
        last_comp = sc->p == P_COMP_COMPLETED_REC ? sc->k - 1
                    : sc->p == P_STEP_FAILED_REC  ? 2
                                                  : sc->k;
        *failed_step = 3;
        *error = KEEL_EPAY_DECLINED;
        break;
    }
    eff[0] = '\0';
    if (sc->policy == KEEL_SAGA_RECOVER_RESUME && sc->fail_step < 0) {
        snprintf(eff, n, "reserve,authorize,capture,ship");
        *st = KEEL_SAGA_COMPLETED;
        *failed_step = -1;
        *error = KEEL_OK;
        return;
    }
    if (sc->p == P_STEP_COMPLETED_REC && sc->k == NSTEPS - 1) {
        snprintf(eff, n, "reserve,authorize,capture,ship");
        *st = KEEL_SAGA_COMPLETED;
        *failed_step = -1;
        *error = KEEL_OK;
        return;
    }
    *st = KEEL_SAGA_COMPENSATED;
    for (int i = 0; i < fwd; i++) {
        size_t len = strlen(eff);
        snprintf(eff + len, n - len, "%s%s", len ? "," : "", FWD[i]);
    }
    for (int j = last_comp; j >= 0; j--) {
        if (CMP[j] == NULL)
            continue;
        comp_calls[j] = 1;
        if (j < fwd) {
            size_t len = strlen(eff);
            snprintf(eff + len, n - len, ",%s", CMP[j]);
        }
    }
    /* effects the child already wrote while compensating */
    if (sc->p == P_COMP_INSIDE_AFTER || sc->p == P_COMP_COMPLETED_REC) {
        eff[0] = '\0';
        snprintf(eff, n, "reserve,authorize,capture,void,release");
    }
}

static const char *point_name(point p)
{
    static const char *const n[] = {"?",
                                    "after saga_started",
                                    "after step_started",
                                    "inside step, before effect",
                                    "inside step, after effect",
                                    "after step_completed",
                                    "after step_failed",
                                    "inside compensation, after effect",
                                    "after compensation_completed"};
    return n[p];
}

static void run_scenario(const char *url, const scenario *sc, int idx)
{
    g_sc = *sc;
    char id[96];
    snprintf(id, sizeof(id), "crash_%ld_%02d_%s_", (long)getpid(), idx,
             url[0] == 's' ? "lite" : "pg");
    fprintf(stderr, "scenario %2d: %s k=%d fail=%d %s\n", idx, point_name(sc->p), sc->k,
            sc->fail_step, sc->policy == KEEL_SAGA_RECOVER_RESUME ? "RESUME" : "COMPENSATE");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_main(url, id);
    int status = 0;
    assert_int_equal(pid, waitpid(pid, &status, 0));
    if (!WIFSIGNALED(status))
        fprintf(stderr, "child exited with %d\n", WEXITSTATUS(status));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(SIGKILL, WTERMSIG(status));

    /* the parent: reopen, look at what the crash left, recover */
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    keel_diag d = {KEEL_OK, 0, ""};
    ASSERT_OK(keel_store_open(&g_store, &cfg, &d));
    keel_saga_def *def = make_def();
    assert_non_null(def);
    memset(g_comp_calls, 0, sizeof(g_comp_calls));
    seen s;
    memset(&s, 0, sizeof(s));
    keel_saga_recover_config rc;
    keel_saga_recover_config_default(&rc);
    rc.reclaim_owner = "crash-child";
    rc.id_prefix = id;
    rc.on_recovered = on_rec;
    rc.on_recovered_ud = &s;
    keel_saga_recover_report rep;
    const keel_saga_def *defs[1] = {def};
    keel_err e = keel_saga_recover(g_store, defs, 1, &rc, &rep, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "recover: %s\n", d.msg);
    ASSERT_OK(e);
    assert_int_equal(1, rep.found);
    assert_int_equal(1, rep.recovered);
    assert_int_equal(1, s.n);

    char want[256], got[256];
    keel_saga_state want_st;
    int want_calls[NSTEPS], want_failed;
    keel_err want_err;
    expected(sc, want, sizeof(want), &want_st, want_calls, &want_failed, &want_err);
    effects_of(id, got, sizeof(got));
    if (strcmp(want, got) != 0)
        fprintf(stderr, "effects: want %s, got %s\n", want, got);
    assert_string_equal(want, got);
    check_consistent(got, s.state);
    assert_int_equal(want_st, s.state);
    assert_int_equal(want_failed, s.failed_step);
    assert_int_equal(want_err, s.error);
    for (int i = 0; i < NSTEPS; i++)
        assert_int_equal(want_calls[i], g_comp_calls[i]);

    keel_saga_log *log = NULL;
    ASSERT_OK(keel_saga_log_sql_create(&log, g_store, &d));
    keel_saga_record r;
    ASSERT_OK(keel_saga_log_load(log, id, &r, &d));
    assert_int_equal(want_st, r.state);
    assert_string_equal(id, json_string_value(json_object_get(r.context, "order_id")));
    keel_saga_record_cleanup(&r);
    /* nothing left to recover */
    ASSERT_OK(keel_saga_recover(g_store, defs, 1, &rc, &rep, &d));
    assert_int_equal(0, rep.found);
    keel_saga_log_destroy(log);
    keel_saga_def_destroy(def);
    keel_store_close(g_store);
    g_store = NULL;
}

/* Every scenario: all boundaries under COMPENSATE, a RESUME subset, compensation crashes. */
static size_t all_scenarios(scenario *out, size_t cap)
{
    size_t n = 0;
    const keel_saga_recovery C = KEEL_SAGA_RECOVER_COMPENSATE, R = KEEL_SAGA_RECOVER_RESUME;
    out[n++] = (scenario){P_SAGA_STARTED_REC, -1, -1, C};
    for (int k = 0; k < NSTEPS; k++) {
        out[n++] = (scenario){P_STEP_STARTED_REC, k, -1, C};
        out[n++] = (scenario){P_INSIDE_BEFORE, k, -1, C};
        out[n++] = (scenario){P_INSIDE_AFTER, k, -1, C};
        out[n++] = (scenario){P_STEP_COMPLETED_REC, k, -1, C};
    }
    out[n++] = (scenario){P_STEP_STARTED_REC, 0, -1, R};
    out[n++] = (scenario){P_INSIDE_AFTER, 1, -1, R};
    out[n++] = (scenario){P_INSIDE_BEFORE, 2, -1, R};
    out[n++] = (scenario){P_STEP_COMPLETED_REC, 2, -1, R};
    out[n++] = (scenario){P_STEP_FAILED_REC, 3, 3, C};
    out[n++] = (scenario){P_COMP_INSIDE_AFTER, 1, 3, C};
    out[n++] = (scenario){P_COMP_COMPLETED_REC, 1, 3, C};
    out[n++] = (scenario){P_COMP_INSIDE_AFTER, 0, 3, C};
    assert_true(n <= cap);
    return n;
}

static void setup_sql(const char *url, int pg)
{
    snprintf(g_table, sizeof(g_table), "saga_crash_effects_%ld", (long)getpid());
    snprintf(g_sql_ddl, sizeof(g_sql_ddl),
             pg ? "CREATE TABLE IF NOT EXISTS %s (seq BIGSERIAL PRIMARY KEY, saga_id TEXT NOT "
                  "NULL, op TEXT NOT NULL)"
                : "CREATE TABLE IF NOT EXISTS %s (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                  "saga_id TEXT NOT NULL, op TEXT NOT NULL)",
             g_table);
    snprintf(g_sql_count, sizeof(g_sql_count),
             "SELECT COUNT(*) FROM %s WHERE saga_id = ? AND op = ?", g_table);
    snprintf(g_sql_insert, sizeof(g_sql_insert), "INSERT INTO %s (saga_id, op) VALUES (?, ?)",
             g_table);
    snprintf(g_sql_list, sizeof(g_sql_list), "SELECT op FROM %s WHERE saga_id = ? ORDER BY seq",
             g_table);
    /* tables (effects, saga log) exist before the first child starts */
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_store *s = NULL;
    ASSERT_OK(keel_store_open(&s, &cfg, &d));
    keel_db *db = NULL;
    ASSERT_OK(keel_db_acquire(s, &db, &d));
    ASSERT_OK(keel_db_exec(db, g_sql_ddl, &d));
    keel_db_release(db);
    keel_saga_log *log = NULL;
    ASSERT_OK(keel_saga_log_sql_create(&log, s, &d));
    keel_saga_log_destroy(log);
    keel_store_close(s);
}

static void drop_table(const char *url)
{
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    keel_store *s = NULL;
    if (keel_store_open(&s, &cfg, NULL) != KEEL_OK)
        return;
    keel_db *db = NULL;
    if (keel_db_acquire(s, &db, NULL) == KEEL_OK) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", g_table);
        if (keel_db_exec(db, sql, NULL) != KEEL_OK)
            fprintf(stderr, "cannot drop %s\n", g_table);
        keel_db_release(db);
    }
    keel_store_close(s);
}

static void test_crash_sqlite(void **state)
{
    (void)state;
    char path[512], url[600], p[600];
    snprintf(path, sizeof(path), "%s/saga_crash_%ld.db", KEEL_TEST_TMP, (long)getpid());
    snprintf(url, sizeof(url), "sqlite:%s", path);
    remove(path);
    setup_sql(url, 0);
    scenario sc[40];
    size_t n = all_scenarios(sc, 40);
    for (size_t i = 0; i < n; i++)
        run_scenario(url, &sc[i], (int)i);
    remove(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    remove(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    remove(p);
}

static void test_crash_pg(void **state)
{
    (void)state;
    if (pg_dsn == NULL) {
        fprintf(stderr, "KEEL_TEST_PG_DSN not set: skipping\n");
        skip();
    }
    setup_sql(pg_dsn, 1);
    scenario sc[40];
    size_t n = all_scenarios(sc, 40);
    for (size_t i = 0; i < n; i++)
        run_scenario(pg_dsn, &sc[i], (int)i);
    drop_table(pg_dsn);
}

int main(void)
{
    pg_dsn = getenv("KEEL_TEST_PG_DSN");
    if (pg_dsn != NULL && *pg_dsn == '\0')
        pg_dsn = NULL;
    (void)keel_log_set_hook(quiet_hook, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_sqlite),
        cmocka_unit_test(test_crash_pg),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    (void)keel_log_set_hook(NULL, NULL);
    return rc;
}
