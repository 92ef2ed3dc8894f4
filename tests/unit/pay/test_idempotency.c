/* Tests for the idempotency policy (src/pay/idempotency.c) and its three stores: memory,
 * SQL (SQLite always; PostgreSQL when KEEL_TEST_PG_DSN is set) and Redis (KEEL_TEST_REDIS_URL).
 * The same semantic suite runs against every store; time is a manual wall clock. */
#define _GNU_SOURCE 1
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keel/idempotency.h>
#include <keel/keel.h>
#include <keel/payment.h>

/* ------------------------------------------------------------ fixtures -- */

typedef struct req {
    const char *scope, *key, *payload;
    keel_err outcome;      /* what the operation returns */
    char result[64];       /* the operation's result (or the replayed one) */
    keel_err replayed_err; /* set by replay() */
    int replayed;
    atomic_int *executions;
    keel_idem *self_call;  /* when set, the operation calls the policy again (in-flight test) */
    keel_chain *chain;
} req;

static int64_t now_ms = 1700000000000;
static int64_t wall(void *ud)
{
    (void)ud;
    return now_ms;
}

static keel_str b_scope(const keel_call *c, void *ud)
{
    (void)ud;
    return keel_str_c(((req *)c->user)->scope);
}
static keel_str b_key(const keel_call *c, void *ud)
{
    (void)ud;
    const req *r = c->user;
    return r->key ? keel_str_c(r->key) : KEEL_STR_NULL;
}
static keel_str b_payload(const keel_call *c, void *ud)
{
    (void)ud;
    return keel_str_c(((req *)c->user)->payload);
}
static keel_err b_save(const keel_call *c, keel_err e, keel_buf *out, void *ud)
{
    (void)ud;
    const req *r = c->user;
    return e == KEEL_OK ? keel_buf_append_str(out, r->result)
                        : keel_buf_appendf(out, "failed:%s", keel_pay_err_type(e));
}
static keel_err b_replay(keel_call *c, keel_err e, keel_str stored, void *ud)
{
    (void)ud;
    req *r = c->user;
    r->replayed = 1;
    r->replayed_err = e;
    snprintf(r->result, sizeof(r->result), "%.*s", (int)stored.len, stored.ptr);
    return e;
}

static atomic_int op_counter;

static keel_err operation(void *cx, void *ud)
{
    (void)ud;
    keel_call *c = cx;
    req *r = c->user;
    int n = atomic_fetch_add(r->executions, 1) + 1;
    if (r->outcome == KEEL_OK)
        snprintf(r->result, sizeof(r->result), "ch_%d_%d", n, atomic_fetch_add(&op_counter, 1));
    if (r->chain != NULL) {
        /* A second request with the same key arrives while this one is in flight. */
        req inner = *r;
        inner.chain = NULL;
        keel_call ic;
        keel_call_init(&ic, "charge", &inner);
        keel_err ie = keel_chain_run(r->chain, &ic, operation, NULL);
        assert_int_equal(KEEL_EPAY_IN_FLIGHT, ie);
        assert_int_equal(1000, ic.wait_ms);
    }
    return r->outcome;
}

typedef struct env {
    keel_idem_store *store;
    keel_idem *policy;
    keel_chain *chain;
    atomic_int executions;
} env;

static void env_init(env *v, keel_idem_store *store)
{
    memset(v, 0, sizeof(*v));
    v->store = store;
    keel_idem_binding b = {b_scope, b_key, b_payload, b_save, b_replay, NULL};
    keel_idem_config cfg;
    keel_idem_config_default(&cfg);
    cfg.wall_ms = wall;
    cfg.ttl_ms = 86400000;
    cfg.in_flight_timeout_ms = 90000;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    ASSERT_OK(keel_idem_create(&v->policy, store, &b, &cfg, &d));
    ASSERT_OK(keel_chain_create(&v->chain));
    keel_layer *l;
    ASSERT_OK(keel_idem_layer(v->policy, &l));
    ASSERT_OK(keel_chain_add_take(v->chain, l));
}

static void env_free(env *v)
{
    keel_chain_destroy(v->chain);
    keel_idem_destroy(v->policy);
    keel_idem_store_destroy(v->store);
}

static keel_err run(env *v, req *r)
{
    r->executions = &v->executions;
    r->replayed = 0;
    keel_call c;
    keel_call_init(&c, "charge", r);
    return keel_chain_run(v->chain, &c, operation, NULL);
}

static char unique[32];

/* ------------------------------------------------------ semantic suite -- */

static void suite(keel_idem_store *store)
{
    env v;
    env_init(&v, store);
    char k1[64], k2[64], k3[64], k4[64], k5[64];
    snprintf(k1, sizeof(k1), "%s-success", unique);
    snprintf(k2, sizeof(k2), "%s-decline", unique);
    snprintf(k3, sizeof(k3), "%s-network", unique);
    snprintf(k4, sizeof(k4), "%s-inflight", unique);
    snprintf(k5, sizeof(k5), "%s-takeover", unique);

    /* First call executes and stores; the same key + payload replays without executing. */
    req a = {"user_1", k1, "{\"amount\":100,\"card\":\"tok_x\"}", KEEL_OK, "", 0, 0, NULL, NULL, NULL};
    ASSERT_OK(run(&v, &a));
    assert_int_equal(1, v.executions);
    assert_int_equal(0, a.replayed);
    char first[64];
    snprintf(first, sizeof(first), "%s", a.result);
    req a2 = a;
    memset(a2.result, 0, sizeof(a2.result));
    ASSERT_OK(run(&v, &a2));
    assert_int_equal(1, v.executions);
    assert_int_equal(1, a2.replayed);
    assert_string_equal(first, a2.result);

    /* Same key, different payload: conflict, nothing runs. */
    req a3 = a;
    a3.payload = "{\"amount\":200,\"card\":\"tok_x\"}";
    assert_int_equal(KEEL_EPAY_IDEMPOTENCY_CONFLICT, run(&v, &a3));
    assert_int_equal(1, v.executions);
    assert_int_equal(422, keel_pay_err_http_status(KEEL_EPAY_IDEMPOTENCY_CONFLICT));

    /* Keys are scoped per caller: another user's identical key is a new request. */
    req b = a;
    b.scope = "user_2";
    ASSERT_OK(run(&v, &b));
    assert_int_equal(2, v.executions);
    assert_int_equal(0, b.replayed);

    /* A terminal failure is stored and replayed as the same error, without re-executing. */
    req d = {"user_1", k2, "{\"amount\":100}", KEEL_EPAY_DECLINED, "", 0, 0, NULL, NULL, NULL};
    assert_int_equal(KEEL_EPAY_DECLINED, run(&v, &d));
    assert_int_equal(3, v.executions);
    d.outcome = KEEL_OK; /* even if the card would now pass, the answer stays */
    assert_int_equal(KEEL_EPAY_DECLINED, run(&v, &d));
    assert_int_equal(3, v.executions);
    assert_int_equal(1, d.replayed);
    assert_string_equal("failed:card_declined", d.result);

    /* A retriable failure clears the slot: the retry runs again and can succeed. */
    req n = {"user_1", k3, "{\"amount\":100}", KEEL_EPAY_NETWORK, "", 0, 0, NULL, NULL, NULL};
    assert_int_equal(KEEL_EPAY_NETWORK, run(&v, &n));
    assert_int_equal(4, v.executions);
    n.outcome = KEEL_OK;
    ASSERT_OK(run(&v, &n));
    assert_int_equal(5, v.executions);
    assert_int_equal(0, n.replayed);

    /* Same key while the first is still in flight: 409-style refusal (checked inside). */
    req f = {"user_1", k4, "{\"amount\":1}", KEEL_OK, "", 0, 0, NULL, NULL, v.chain};
    ASSERT_OK(run(&v, &f));
    assert_int_equal(6, v.executions);

    /* TTL: after 24 h the key is forgotten and a reuse executes again (Stripe). */
    now_ms += 86400000;
    req a4 = a;
    ASSERT_OK(run(&v, &a4));
    assert_int_equal(7, v.executions);
    assert_int_equal(0, a4.replayed);

    /* An IN_FLIGHT record abandoned by a crashed process frees itself after the lock
     * timeout, and the crashed owner can no longer write over the new owner's record. */
    keel_idem_record rec, ex;
    memset(&rec, 0, sizeof(rec));
    memset(&ex, 0, sizeof(ex));
    snprintf(rec.owner, sizeof(rec.owner), "%s", "0123456789abcdef0123456789abcdef");
    rec.state = KEEL_IDEM_IN_FLIGHT;
    ASSERT_OK(keel_idem_hash(keel_str_c("{}"), rec.payload_hash));
    rec.created_ms = now_ms;
    rec.expires_ms = now_ms + 90000;
    keel_str sc = keel_str_c("user_1"), kk = keel_str_c(k5);
    ASSERT_OK(store->vt->set_if_absent(store->self, sc, kk, &rec, now_ms, &ex, NULL));
    req t = {"user_1", k5, "{}", KEEL_OK, "", 0, 0, NULL, NULL, NULL};
    assert_int_equal(KEEL_EPAY_IN_FLIGHT, run(&v, &t));
    now_ms += 90000;
    ASSERT_OK(run(&v, &t)); /* taken over */
    assert_int_equal(8, v.executions);
    rec.state = KEEL_IDEM_COMPLETED;
    rec.expires_ms = now_ms + 1000;
    assert_int_equal(KEEL_ESTATE, store->vt->update(store->self, sc, kk, &rec, now_ms, NULL));
    assert_int_equal(KEEL_ESTATE, store->vt->clear(store->self, sc, kk, rec.owner, NULL));
    /* ...and the new owner's result is what replays. */
    req t2 = t;
    ASSERT_OK(run(&v, &t2));
    assert_int_equal(1, t2.replayed);
    assert_string_equal(t.result, t2.result);

    /* No key: the layer steps aside. */
    req nk = {"user_1", NULL, "{}", KEEL_OK, "", 0, 0, NULL, NULL, NULL};
    ASSERT_OK(run(&v, &nk));
    ASSERT_OK(run(&v, &nk));
    assert_int_equal(10, v.executions);

    /* Bad keys never reach the store. */
    req bad = {"user_1", "has space", "{}", KEEL_OK, "", 0, 0, NULL, NULL, NULL};
    assert_int_equal(KEEL_EINVAL, run(&v, &bad));
    assert_int_equal(10, v.executions);

    keel_idem_stats st;
    keel_idem_get_stats(v.policy, &st);
    assert_int_equal(8, st.executed); /* a, b, d, n twice, f, a4, t (no-key calls bypass) */
    assert_int_equal(1, st.conflicts);
    assert_int_equal(3, st.replayed);  /* a2, the decline, t2 */
    assert_int_equal(2, st.in_flight); /* f's inner request, t before the takeover */
    assert_int_equal(1, st.released);  /* the network error */
    assert_int_equal(0, st.store_errors);
    env_free(&v);
}

/* 64 threads send the same request at once: exactly one executes; the others either replay
 * its result or are told it is in flight. */
typedef struct racer {
    env *v;
    pthread_barrier_t *bar;
    keel_err e;
    char result[64];
    int replayed;
} racer;

static keel_err slow_operation(void *cx, void *ud)
{
    usleep(20000); /* widen the window; correctness does not depend on it */
    return operation(cx, ud);
}

static void *race(void *arg)
{
    racer *rc = arg;
    req r = {"racer", unique, "{\"amount\":4200}", KEEL_OK, "", 0, 0, NULL, NULL, NULL};
    r.executions = &rc->v->executions;
    keel_call c;
    keel_call_init(&c, "charge", &r);
    pthread_barrier_wait(rc->bar);
    rc->e = keel_chain_run(rc->v->chain, &c, slow_operation, NULL);
    snprintf(rc->result, sizeof(rc->result), "%s", r.result);
    rc->replayed = r.replayed;
    return NULL;
}

static void concurrent(keel_idem_store *store)
{
    enum { N = 64 };
    env v;
    env_init(&v, store);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N);
    pthread_t th[N];
    racer rc[N];
    for (int i = 0; i < N; i++) {
        memset(&rc[i], 0, sizeof(rc[i]));
        rc[i].v = &v;
        rc[i].bar = &bar;
        assert_int_equal(0, pthread_create(&th[i], NULL, race, &rc[i]));
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    assert_int_equal(1, v.executions);
    int ok = 0;
    const char *winner = NULL;
    for (int i = 0; i < N; i++) {
        if (rc[i].e == KEEL_OK) {
            ok++;
            if (winner == NULL)
                winner = rc[i].result;
            assert_string_equal(winner, rc[i].result);
        } else {
            assert_int_equal(KEEL_EPAY_IN_FLIGHT, rc[i].e);
        }
    }
    assert_true(ok >= 1);
    /* After the dust settles every retry replays the one result. */
    req r = {"racer", unique, "{\"amount\":4200}", KEEL_OK, "", 0, 0, NULL, NULL, NULL};
    ASSERT_OK(run(&v, &r));
    assert_int_equal(1, r.replayed);
    assert_string_equal(winner, r.result);
    assert_int_equal(1, v.executions);
    env_free(&v);
}

/* --------------------------------------------------------------- stores -- */

static void test_memory(void **state)
{
    (void)state;
    keel_idem_store *s;
    ASSERT_OK(keel_idem_store_memory(&s, 1000));
    suite(s);
    ASSERT_OK(keel_idem_store_memory(&s, 1000));
    concurrent(s);
}

static void test_memory_bound(void **state)
{
    (void)state;
    keel_idem_store *s;
    assert_int_equal(KEEL_EINVAL, keel_idem_store_memory(&s, 0));
    ASSERT_OK(keel_idem_store_memory(&s, 2));
    keel_idem_record rec;
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.owner, sizeof(rec.owner), "%s", "ffffffffffffffffffffffffffffffff");
    rec.state = KEEL_IDEM_IN_FLIGHT;
    rec.expires_ms = 100;
    ASSERT_OK(s->vt->set_if_absent(s->self, keel_str_c(""), keel_str_c("a"), &rec, 0, NULL, NULL));
    ASSERT_OK(s->vt->set_if_absent(s->self, keel_str_c(""), keel_str_c("b"), &rec, 0, NULL, NULL));
    assert_int_equal(KEEL_EFULL, s->vt->set_if_absent(s->self, keel_str_c(""), keel_str_c("c"),
                                                      &rec, 50, NULL, NULL));
    /* Once expired, records are reclaimed for room. */
    rec.expires_ms = 1000;
    ASSERT_OK(s->vt->set_if_absent(s->self, keel_str_c(""), keel_str_c("c"), &rec, 100, NULL, NULL));
    uint64_t removed = 0;
    ASSERT_OK(s->vt->purge(s->self, 2000, &removed, NULL));
    assert_int_equal(1, removed);
    keel_idem_store_destroy(s);
}

static keel_store *open_store(const char *url)
{
    keel_store_config cfg;
    keel_store_config_default(&cfg);
    cfg.url = url;
    cfg.pool_size = 8;
    keel_store *st = NULL;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    if (keel_store_open(&st, &cfg, &d) != KEEL_OK)
        fail_msg("open %s: %s", url, d.msg);
    return st;
}

static void sql_suite(keel_store *db)
{
    keel_idem_store *s;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_idem_store_sql(&s, db, &d);
    if (e != KEEL_OK)
        fail_msg("sql store: %s", d.msg);
    suite(s);
    ASSERT_OK(keel_idem_store_sql(&s, db, &d)); /* migration is idempotent */
    concurrent(s);
    /* purge removes what expired. */
    ASSERT_OK(keel_idem_store_sql(&s, db, &d));
    uint64_t removed = 0;
    ASSERT_OK(s->vt->purge(s->self, now_ms + 10LL * 86400000, &removed, NULL));
    assert_true(removed >= 5);
    keel_idem_store_destroy(s);
}

static void test_sqlite(void **state)
{
    (void)state;
    char path[512], url[600];
    snprintf(path, sizeof(path), "%s/idemXXXXXX", KEEL_TEST_TMP);
    assert_non_null(mkdtemp(path));
    snprintf(url, sizeof(url), "sqlite:%s/keel.db", path);
    keel_store *db = open_store(url);
    sql_suite(db);
    keel_store_close(db);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    assert_int_equal(0, system(cmd));
}

/* The business write and the COMPLETED record commit - or roll back - together. */
static void test_sql_same_transaction(void **state)
{
    (void)state;
    keel_store *st = open_store("sqlite::memory:");
    keel_idem_store *s;
    ASSERT_OK(keel_idem_store_sql(&s, st, NULL));
    keel_db *db;
    ASSERT_OK(keel_db_acquire(st, &db, NULL));
    ASSERT_OK(keel_db_exec(db, "CREATE TABLE charges (id TEXT)", NULL));
    keel_idem_record rec, ex;
    memset(&rec, 0, sizeof(rec));
    memset(&ex, 0, sizeof(ex));
    snprintf(rec.owner, sizeof(rec.owner), "%s", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    rec.state = KEEL_IDEM_IN_FLIGHT;
    rec.expires_ms = now_ms + 1000;
    keel_str sc = keel_str_c("u"), k = keel_str_c("tx-key");

    ASSERT_OK(keel_db_begin(db));
    ASSERT_OK(keel_idem_sql_set_if_absent(db, sc, k, &rec, now_ms, &ex, NULL));
    ASSERT_OK(keel_db_exec(db, "INSERT INTO charges VALUES ('ch_1')", NULL));
    rec.state = KEEL_IDEM_COMPLETED;
    rec.result = (char *)"ch_1";
    rec.result_len = 4;
    ASSERT_OK(keel_idem_sql_update(db, sc, k, &rec, NULL));
    rec.result = NULL;
    ASSERT_OK(keel_db_rollback(db));
    /* Rolled back: neither the charge nor the key exists, so the slot can be claimed. */
    rec.state = KEEL_IDEM_IN_FLIGHT;
    ASSERT_OK(keel_idem_sql_set_if_absent(db, sc, k, &rec, now_ms, &ex, NULL));
    assert_int_equal(KEEL_EEXIST, keel_idem_sql_set_if_absent(db, sc, k, &rec, now_ms, &ex, NULL));
    assert_int_equal(KEEL_IDEM_IN_FLIGHT, ex.state);
    keel_idem_record_clear(&ex);
    keel_db_release(db);
    keel_idem_store_destroy(s);
    keel_store_close(st);
}

static void test_postgres(void **state)
{
    (void)state;
    const char *dsn = getenv("KEEL_TEST_PG_DSN");
    if (dsn == NULL || *dsn == '\0')
        skip();
    keel_store *db = open_store(dsn);
    sql_suite(db);
    keel_store_close(db);
}

static void test_redis(void **state)
{
    (void)state;
    const char *url = getenv("KEEL_TEST_REDIS_URL");
    if (url == NULL || *url == '\0')
        skip();
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    cfg.url = url;
    cfg.pool_size = 16;
    keel_redis *r;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    if (keel_redis_open(&r, &cfg, &d) != KEEL_OK)
        fail_msg("redis: %s", d.msg);
    keel_idem_store *s;
    /* Redis expires records on its own clock, so the time-travel part of the suite uses a
     * clock that matches it. */
    now_ms = keel_time_wall_ms();
    ASSERT_OK(keel_idem_store_redis(&s, r, "keel:test:idem:"));
    env v;
    env_init(&v, s);
    req a = {"u", unique, "{\"amount\":1}", KEEL_OK, "", 0, 0, NULL, NULL, NULL};
    ASSERT_OK(run(&v, &a));
    req a2 = a;
    ASSERT_OK(run(&v, &a2));
    assert_int_equal(1, a2.replayed);
    assert_string_equal(a.result, a2.result);
    req a3 = a;
    a3.payload = "{\"amount\":2}";
    assert_int_equal(KEEL_EPAY_IDEMPOTENCY_CONFLICT, run(&v, &a3));
    char k2[64];
    snprintf(k2, sizeof(k2), "%s-decl", unique);
    req dcl = {"u", k2, "{}", KEEL_EPAY_DECLINED, "", 0, 0, NULL, NULL, NULL};
    assert_int_equal(KEEL_EPAY_DECLINED, run(&v, &dcl));
    assert_int_equal(KEEL_EPAY_DECLINED, run(&v, &dcl));
    assert_int_equal(1, dcl.replayed);
    snprintf(k2, sizeof(k2), "%s-net", unique);
    req net = {"u", k2, "{}", KEEL_EPAY_NETWORK, "", 0, 0, NULL, NULL, NULL};
    assert_int_equal(KEEL_EPAY_NETWORK, run(&v, &net));
    net.outcome = KEEL_OK;
    ASSERT_OK(run(&v, &net));
    assert_int_equal(0, net.replayed);
    snprintf(k2, sizeof(k2), "%s-fly", unique);
    req f = {"u", k2, "{}", KEEL_OK, "", 0, 0, NULL, NULL, v.chain};
    ASSERT_OK(run(&v, &f));
    assert_int_equal(5, v.executions);
    /* Binary results survive the round trip. */
    keel_idem_record rec, ex;
    memset(&rec, 0, sizeof(rec));
    memset(&ex, 0, sizeof(ex));
    snprintf(rec.owner, sizeof(rec.owner), "%s", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    rec.state = KEEL_IDEM_COMPLETED;
    rec.error = KEEL_OK;
    rec.result = (char *)"a\0b";
    rec.result_len = 3;
    rec.created_ms = now_ms;
    rec.expires_ms = now_ms + 60000;
    snprintf(k2, sizeof(k2), "%s-bin", unique);
    ASSERT_OK(s->vt->set_if_absent(s->self, keel_str_c("u"), keel_str_c(k2), &rec, now_ms, NULL, NULL));
    assert_int_equal(KEEL_EEXIST, s->vt->set_if_absent(s->self, keel_str_c("u"), keel_str_c(k2),
                                                       &rec, now_ms, &ex, NULL));
    assert_int_equal(3, ex.result_len);
    assert_memory_equal("a\0b", ex.result, 3);
    assert_string_equal(rec.owner, ex.owner);
    keel_idem_record_clear(&ex);
    env_free(&v);

    ASSERT_OK(keel_idem_store_redis(&s, r, "keel:test:idem:"));
    snprintf(unique + strlen(unique) - 1, 2, "R");
    concurrent(s);
    keel_redis_close(r);
}


static void test_keys_and_config(void **state)
{
    (void)state;
    keel_str k;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    ASSERT_OK(keel_idem_key_parse(keel_str_c("8e03978e-40d5-43e8-bc93-6894a57f9324"), &k, &d));
    assert_int_equal(36, k.len);
    ASSERT_OK(keel_idem_key_parse(keel_str_c("\"abc\""), &k, &d)); /* IETF sf-string */
    assert_int_equal(3, k.len);
    assert_memory_equal("abc", k.ptr, 3);
    assert_int_equal(KEEL_EINVAL, keel_idem_key_parse(keel_str_c(""), &k, &d));
    assert_int_equal(KEEL_EINVAL, keel_idem_key_parse(keel_str_c("\"\""), &k, &d));
    assert_int_equal(KEEL_EINVAL, keel_idem_key_parse(keel_str_c("a b"), &k, &d));
    assert_non_null(strstr(d.msg, "position 2"));
    assert_int_equal(KEEL_EINVAL, keel_idem_key_parse(KEEL_STR_NULL, &k, &d));
    char longkey[300];
    memset(longkey, 'k', sizeof(longkey));
    longkey[255] = '\0';
    ASSERT_OK(keel_idem_key_parse(keel_str_c(longkey), &k, &d));
    longkey[255] = 'k';
    longkey[256] = '\0';
    assert_int_equal(KEEL_EINVAL, keel_idem_key_parse(keel_str_c(longkey), &k, &d));
    assert_non_null(strstr(d.msg, "255"));

    /* SHA-256 known answer ("abc", FIPS 180-2). */
    uint8_t h[32];
    ASSERT_OK(keel_idem_hash(keel_str_c("abc"), h));
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                    0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    assert_memory_equal(abc, h, 32);

    keel_idem_store *s;
    ASSERT_OK(keel_idem_store_memory(&s, 10));
    keel_idem_binding b = {b_scope, b_key, b_payload, b_save, b_replay, NULL};
    keel_idem_config cfg;
    keel_idem_config_default(&cfg);
    keel_idem *p;
    cfg.ttl_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_idem_create(&p, s, &b, &cfg, &d));
    assert_non_null(strstr(d.msg, "ttl_ms"));
    keel_idem_config_default(&cfg);
    cfg.in_flight_timeout_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_idem_create(&p, s, &b, &cfg, &d));
    assert_non_null(strstr(d.msg, "in_flight_timeout_ms"));
    b.save = NULL;
    assert_int_equal(KEEL_EINVAL, keel_idem_create(&p, s, &b, NULL, &d));
    keel_idem_store_destroy(s);
}

int main(void)
{
    uint8_t rnd[8];
    if (keel_random_bytes(rnd, sizeof(rnd)) != KEEL_OK)
        return 1;
    snprintf(unique, sizeof(unique), "k%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
             rnd[4], rnd[5]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_and_config),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_memory_bound),
        cmocka_unit_test(test_sqlite),
        cmocka_unit_test(test_sql_same_transaction),
        cmocka_unit_test(test_postgres),
        cmocka_unit_test(test_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
