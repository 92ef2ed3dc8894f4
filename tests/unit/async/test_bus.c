/* Tests for src/async/bus.c: events, ordering, wildcard, middleware transform/drop, failing
 * subscriber isolation and counters, async delivery after stop, queue-full behaviour,
 * unsubscribe guarantees, concurrent subscribe/unsubscribe while publishing, config errors. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keel_int.h"

#include <keel/bus.h>
#include <keel/metrics.h>

/* ------------------------------------------------------------------ helpers -- */

/* A log of handler calls: "name:type:n" entries joined by spaces. */
typedef struct rec {
    pthread_mutex_t mu;
    char log[2048];
    int calls;
} rec;

typedef struct sub_ud {
    rec *r;
    const char *name;
    keel_err ret;
} sub_ud;

static void rec_init(rec *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
}

static keel_err record(const keel_event *ev, void *ud)
{
    sub_ud *s = ud;
    json_t *n = json_object_get(keel_event_data(ev), "n");
    pthread_mutex_lock(&s->r->mu);
    size_t len = strlen(s->r->log);
    snprintf(s->r->log + len, sizeof(s->r->log) - len, "%s%s:%s:%lld", len ? " " : "", s->name,
             keel_event_type(ev), n != NULL ? (long long)json_integer_value(n) : -1LL);
    s->r->calls++;
    pthread_mutex_unlock(&s->r->mu);
    return s->ret;
}

static json_t *num(int n)
{
    return json_pack("{s:i}", "n", n);
}

static keel_bus *sync_bus(keel_metrics *m)
{
    keel_bus_config c;
    keel_bus_config_default(&c);
    c.metrics = m;
    keel_bus *b;
    ASSERT_OK(keel_bus_create(&b, &c, NULL));
    return b;
}

static double counter(keel_metrics *m, const char *name, const char *label, const char *value)
{
    const char *const labels[] = {label, NULL};
    keel_metric *f;
    const char *help = strcmp(name, "keel_bus_events_published_total") == 0
                           ? "Events accepted by the event bus"
                       : strcmp(name, "keel_bus_handler_failures_total") == 0
                           ? "Event handler invocations that failed"
                           : "Events the bus did not deliver";
    ASSERT_OK(keel_metrics_counter(m, name, help, labels, &f));
    const char *const v[] = {value};
    keel_series *s;
    ASSERT_OK(keel_metric_series(f, v, &s));
    return keel_series_value(s);
}

/* ------------------------------------------------------------------- events -- */

static void test_event_basics(void **state)
{
    (void)state;
    keel_event *ev;
    ASSERT_OK(keel_event_create(&ev, "user.created", json_pack("{s:i}", "user_id", 123)));
    assert_string_equal("user.created", keel_event_type(ev));
    assert_true(keel_uuid_valid(keel_str_c(keel_event_id(ev))));
    assert_int_equal('4', keel_event_id(ev)[14]);
    assert_true(keel_event_timestamp_ms(ev) > 1600000000000LL);
    assert_int_equal(123, json_integer_value(json_object_get(keel_event_data(ev), "user_id")));
    assert_true(json_is_object(keel_event_metadata(ev)));
    assert_int_equal(0, json_object_size(keel_event_metadata(ev)));

    json_t *j = keel_event_to_json(ev);
    assert_non_null(j);
    assert_string_equal(keel_event_id(ev), json_string_value(json_object_get(j, "id")));
    assert_string_equal("user.created", json_string_value(json_object_get(j, "type")));
    assert_int_equal(24, strlen(json_string_value(json_object_get(j, "timestamp"))));
    assert_int_equal(keel_event_timestamp_ms(ev),
                     json_integer_value(json_object_get(j, "timestamp_ms")));
    assert_int_equal(123, json_integer_value(json_object_get(json_object_get(j, "data"),
                                                             "user_id")));
    json_decref(j);

    ASSERT_OK(keel_event_set_data(ev, NULL));
    assert_true(json_is_null(keel_event_data(ev)));
    keel_event_destroy(ev);

    /* Two events never share an id. */
    keel_event *a, *b;
    ASSERT_OK(keel_event_create(&a, "x", NULL));
    ASSERT_OK(keel_event_create(&b, "x", NULL));
    assert_string_not_equal(keel_event_id(a), keel_event_id(b));
    assert_true(json_is_null(keel_event_data(a)));
    keel_event_destroy(a);
    keel_event_destroy(b);

    /* Invalid types; the data reference is stolen even then (ASan would flag a leak). */
    assert_int_equal(KEEL_EINVAL, keel_event_create(&ev, "*", json_object()));
    assert_null(ev);
    assert_int_equal(KEEL_EINVAL, keel_event_create(&ev, "", NULL));
    assert_int_equal(KEEL_EINVAL, keel_event_create(&ev, "has space", NULL));
    assert_int_equal(KEEL_EINVAL, keel_event_create(&ev, NULL, json_string("x")));
    char longname[KEEL_EVENT_TYPE_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(KEEL_EINVAL, keel_event_create(&ev, longname, NULL));
    longname[KEEL_EVENT_TYPE_MAX] = '\0'; /* exactly the maximum is fine */
    ASSERT_OK(keel_event_create(&ev, longname, NULL));
    keel_event_destroy(ev);
}

/* ------------------------------------------------------------- sync delivery -- */

static void test_sync_order_and_wildcard(void **state)
{
    (void)state;
    rec r;
    rec_init(&r);
    keel_bus *b = sync_bus(NULL);
    sub_ud a = {&r, "a", KEEL_OK}, w = {&r, "w", KEEL_OK}, c = {&r, "c", KEEL_OK},
           o = {&r, "o", KEEL_OK};
    uint64_t ida, idw, idc, ido;
    ASSERT_OK(keel_bus_subscribe(b, "user.created", record, &a, &ida));
    ASSERT_OK(keel_bus_subscribe(b, KEEL_BUS_ANY, record, &w, &idw));
    ASSERT_OK(keel_bus_subscribe(b, "user.created", record, &c, &idc));
    ASSERT_OK(keel_bus_subscribe(b, "order.paid", record, &o, &ido));
    assert_true(ida != 0 && ida != idw && idw != idc && idc != ido);

    char id[KEEL_UUID_SIZE];
    ASSERT_OK(keel_bus_publish(b, "user.created", num(1), id));
    assert_true(keel_uuid_valid(keel_str_c(id)));
    ASSERT_OK(keel_bus_publish(b, "order.paid", num(2), NULL));
    ASSERT_OK(keel_bus_publish(b, "nobody.listens", num(3), NULL));
    assert_string_equal("a:user.created:1 w:user.created:1 c:user.created:1 "
                        "w:order.paid:2 o:order.paid:2 w:nobody.listens:3",
                        r.log);

    /* Unsubscribe removes exactly that handler; unknown ids are ENOTFOUND. */
    ASSERT_OK(keel_bus_unsubscribe(b, idw));
    assert_int_equal(KEEL_ENOTFOUND, keel_bus_unsubscribe(b, idw));
    assert_int_equal(KEEL_ENOTFOUND, keel_bus_unsubscribe(b, 0));
    r.log[0] = '\0';
    ASSERT_OK(keel_bus_publish(b, "user.created", num(4), NULL));
    assert_string_equal("a:user.created:4 c:user.created:4", r.log);

    keel_bus_stats st;
    keel_bus_stats_get(b, &st);
    assert_int_equal(4, st.published);
    assert_int_equal(4, st.delivered);
    assert_int_equal(8, st.handler_calls);
    assert_int_equal(0, st.handler_failures);
    assert_int_equal(0, st.dropped);

    /* After stop: ECLOSED, nothing delivered, counted as dropped. */
    ASSERT_OK(keel_bus_stop(b, 0));
    ASSERT_OK(keel_bus_stop(b, 0));
    assert_int_equal(KEEL_ECLOSED, keel_bus_publish(b, "user.created", num(5), NULL));
    assert_string_equal("a:user.created:4 c:user.created:4", r.log);
    keel_bus_stats_get(b, &st);
    assert_int_equal(1, st.dropped);
    keel_bus_destroy(b);
    pthread_mutex_destroy(&r.mu);
}

/* Middleware: the first stamps metadata and rewrites the payload, the second drops
 * events marked "drop". */
static keel_bus_verdict mw_stamp(keel_event *ev, void *ud)
{
    atomic_int *calls = ud;
    atomic_fetch_add(calls, 1);
    json_object_set_new(keel_event_metadata(ev), "stamped", json_true());
    json_t *n = json_object_get(keel_event_data(ev), "n");
    if (n != NULL)
        (void)keel_event_set_data(ev, num((int)json_integer_value(n) * 10));
    return KEEL_BUS_PASS;
}

static keel_bus_verdict mw_drop(keel_event *ev, void *ud)
{
    (void)ud;
    return strcmp(keel_event_type(ev), "drop") == 0 ? KEEL_BUS_DROP : KEEL_BUS_PASS;
}

static keel_err check_stamped(const keel_event *ev, void *ud)
{
    atomic_int *ok = ud;
    if (json_is_true(json_object_get(keel_event_metadata(ev), "stamped")))
        atomic_fetch_add(ok, 1);
    return KEEL_OK;
}

static void test_middleware_transform_and_drop(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    rec r;
    rec_init(&r);
    keel_bus *b = sync_bus(m);
    atomic_int mw_calls = 0, stamped = 0;
    ASSERT_OK(keel_bus_add_middleware(b, mw_stamp, &mw_calls));
    ASSERT_OK(keel_bus_add_middleware(b, mw_drop, NULL));
    assert_int_equal(KEEL_EINVAL, keel_bus_add_middleware(b, NULL, NULL));
    sub_ud s = {&r, "s", KEEL_OK};
    ASSERT_OK(keel_bus_subscribe(b, KEEL_BUS_ANY, record, &s, NULL));
    ASSERT_OK(keel_bus_subscribe(b, KEEL_BUS_ANY, check_stamped, &stamped, NULL));

    ASSERT_OK(keel_bus_publish(b, "keep", num(7), NULL));
    ASSERT_OK(keel_bus_publish(b, "drop", num(8), NULL)); /* a drop is not an error */
    ASSERT_OK(keel_bus_publish(b, "keep", num(9), NULL));
    assert_string_equal("s:keep:70 s:keep:90", r.log);
    assert_int_equal(3, atomic_load(&mw_calls));
    assert_int_equal(2, atomic_load(&stamped));

    keel_bus_stats st;
    keel_bus_stats_get(b, &st);
    assert_int_equal(2, st.published);
    assert_int_equal(1, st.dropped);
    assert_int_equal(2.0, counter(m, "keel_bus_events_published_total", "type", "keep"));
    assert_int_equal(0.0, counter(m, "keel_bus_events_published_total", "type", "drop"));
    assert_int_equal(1.0, counter(m, "keel_bus_events_dropped_total", "reason", "middleware"));

    /* Middleware is setup-time only. */
    assert_int_equal(KEEL_ESTATE, keel_bus_add_middleware(b, mw_drop, NULL));
    keel_bus_destroy(b);
    keel_metrics_destroy(m);
    pthread_mutex_destroy(&r.mu);
}

static void test_failing_subscriber_isolated(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    rec r;
    rec_init(&r);
    keel_bus *b = sync_bus(m);
    sub_ud a = {&r, "a", KEEL_OK}, bad = {&r, "bad", KEEL_EIO}, c = {&r, "c", KEEL_OK};
    ASSERT_OK(keel_bus_subscribe(b, "t", record, &a, NULL));
    ASSERT_OK(keel_bus_subscribe(b, "t", record, &bad, NULL));
    ASSERT_OK(keel_bus_subscribe(b, "t", record, &c, NULL));
    ASSERT_OK(keel_bus_publish(b, "t", num(1), NULL));
    ASSERT_OK(keel_bus_publish(b, "t", num(2), NULL));
    assert_string_equal("a:t:1 bad:t:1 c:t:1 a:t:2 bad:t:2 c:t:2", r.log);

    keel_bus_stats st;
    keel_bus_stats_get(b, &st);
    assert_int_equal(2, st.published);
    assert_int_equal(6, st.handler_calls);
    assert_int_equal(2, st.handler_failures);
    assert_int_equal(2.0, counter(m, "keel_bus_handler_failures_total", "type", "t"));
    assert_int_equal(2.0, counter(m, "keel_bus_events_published_total", "type", "t"));
    keel_bus_destroy(b);
    keel_metrics_destroy(m);
    pthread_mutex_destroy(&r.mu);
}

/* A handler that unsubscribes itself and subscribes another during a sync publish. */
typedef struct self_unsub {
    keel_bus *b;
    uint64_t id;
    rec *r;
    sub_ud late;
    int calls;
} self_unsub;

static keel_err unsub_self(const keel_event *ev, void *ud)
{
    (void)ev;
    self_unsub *s = ud;
    s->calls++;
    assert_int_equal(KEEL_OK, keel_bus_unsubscribe(s->b, s->id));
    assert_int_equal(KEEL_OK, keel_bus_subscribe(s->b, "t", record, &s->late, NULL));
    return KEEL_OK;
}

static void test_subscribe_from_handler(void **state)
{
    (void)state;
    rec r;
    rec_init(&r);
    keel_bus *b = sync_bus(NULL);
    self_unsub s = {b, 0, &r, {&r, "late", KEEL_OK}, 0};
    ASSERT_OK(keel_bus_subscribe(b, "t", unsub_self, &s, &s.id));
    ASSERT_OK(keel_bus_publish(b, "t", num(1), NULL));
    /* The snapshot taken for event 1 did not include "late". */
    assert_string_equal("", r.log);
    ASSERT_OK(keel_bus_publish(b, "t", num(2), NULL));
    assert_int_equal(1, s.calls);
    assert_string_equal("late:t:2", r.log);
    keel_bus_destroy(b);
    pthread_mutex_destroy(&r.mu);
}

/* ------------------------------------------------------------ async delivery -- */

/* A gate handlers can be held at, to make "the queue is full" deterministic. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    int waiting; /* handlers parked at the gate */
    int passed;
} gate;

static void gate_init(gate *g)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

static void gate_destroy(gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static keel_err gated(const keel_event *ev, void *ud)
{
    (void)ev;
    gate *g = ud;
    pthread_mutex_lock(&g->mu);
    g->waiting++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    g->waiting--;
    g->passed++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return KEEL_OK;
}

static void gate_wait_parked(gate *g, int n)
{
    pthread_mutex_lock(&g->mu);
    while (g->waiting < n)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static keel_bus *async_bus(unsigned workers, size_t cap, keel_bus_overflow ov, uint64_t block_ms,
                           keel_metrics *m)
{
    keel_bus_config c;
    keel_bus_config_default(&c);
    c.mode = KEEL_BUS_ASYNC;
    c.workers = workers;
    c.queue_capacity = cap;
    c.overflow = ov;
    c.block_timeout_ms = block_ms;
    c.metrics = m;
    keel_bus *b;
    ASSERT_OK(keel_bus_create(&b, &c, NULL));
    return b;
}

static void test_async_delivers_all_after_stop(void **state)
{
    (void)state;
    rec r;
    rec_init(&r);
    gate g;
    gate_init(&g);
    /* One worker: delivery order is publish order. */
    keel_bus *b = async_bus(1, 64, KEEL_BUS_OVERFLOW_REJECT, 0, NULL);
    sub_ud s = {&r, "s", KEEL_OK};
    ASSERT_OK(keel_bus_subscribe(b, "hold", gated, &g, NULL));
    ASSERT_OK(keel_bus_subscribe(b, KEEL_BUS_ANY, record, &s, NULL));
    ASSERT_OK(keel_bus_publish(b, "hold", num(0), NULL));
    gate_wait_parked(&g, 1); /* the worker is busy: everything below stays queued */
    for (int i = 1; i <= 20; i++)
        ASSERT_OK(keel_bus_publish(b, "e", num(i), NULL));
    keel_bus_stats st;
    keel_bus_stats_get(b, &st);
    assert_int_equal(20, st.queued);
    assert_int_equal(21, st.published);
    assert_int_equal(KEEL_ETIMEOUT, keel_bus_drain(b, 5));

    gate_open(&g);
    ASSERT_OK(keel_bus_stop(b, 0)); /* delivers everything accepted */
    assert_int_equal(KEEL_ECLOSED, keel_bus_publish(b, "e", num(99), NULL));
    char want[2048];
    size_t len = (size_t)snprintf(want, sizeof(want), "s:hold:0");
    for (int i = 1; i <= 20; i++)
        len += (size_t)snprintf(want + len, sizeof(want) - len, " s:e:%d", i);
    assert_string_equal(want, r.log);
    keel_bus_stats_get(b, &st);
    assert_int_equal(21, st.delivered);
    assert_int_equal(0, st.queued);
    assert_int_equal(1, st.dropped);
    keel_bus_destroy(b);
    gate_destroy(&g);
    pthread_mutex_destroy(&r.mu);
}

static void test_async_queue_full_reject(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    gate g;
    gate_init(&g);
    keel_bus *b = async_bus(1, 2, KEEL_BUS_OVERFLOW_REJECT, 0, m);
    ASSERT_OK(keel_bus_subscribe(b, "e", gated, &g, NULL));
    ASSERT_OK(keel_bus_publish(b, "e", NULL, NULL));
    gate_wait_parked(&g, 1);
    ASSERT_OK(keel_bus_publish(b, "e", NULL, NULL));
    ASSERT_OK(keel_bus_publish(b, "e", NULL, NULL));
    assert_int_equal(KEEL_EFULL, keel_bus_publish(b, "e", json_object(), NULL));
    assert_int_equal(KEEL_EFULL, keel_bus_publish(b, "e", NULL, NULL));
    assert_int_equal(2.0, counter(m, "keel_bus_events_dropped_total", "reason", "queue_full"));
    assert_int_equal(3.0, counter(m, "keel_bus_events_published_total", "type", "e"));
    gate_open(&g);
    ASSERT_OK(keel_bus_drain(b, 0));
    pthread_mutex_lock(&g.mu);
    assert_int_equal(3, g.passed);
    pthread_mutex_unlock(&g.mu);
    /* Space again after the drain. */
    ASSERT_OK(keel_bus_publish(b, "e", NULL, NULL));
    keel_bus_destroy(b);
    pthread_mutex_lock(&g.mu);
    assert_int_equal(4, g.passed);
    pthread_mutex_unlock(&g.mu);
    keel_metrics_destroy(m);
    gate_destroy(&g);
}

typedef struct blocked_pub {
    keel_bus *b;
    keel_err result;
} blocked_pub;

static void *publish_thread(void *arg)
{
    blocked_pub *p = arg;
    p->result = keel_bus_publish(p->b, "e", NULL, NULL);
    return NULL;
}

static void test_async_queue_full_block(void **state)
{
    (void)state;
    gate g;
    gate_init(&g);
    /* Short timeout first: the publisher gives up with ETIMEOUT. */
    keel_bus *b = async_bus(1, 1, KEEL_BUS_OVERFLOW_BLOCK, 5, NULL);
    ASSERT_OK(keel_bus_subscribe(b, "e", gated, &g, NULL));
    ASSERT_OK(keel_bus_publish(b, "e", NULL, NULL));
    gate_wait_parked(&g, 1);
    ASSERT_OK(keel_bus_publish(b, "e", NULL, NULL));
    assert_int_equal(KEEL_ETIMEOUT, keel_bus_publish(b, "e", NULL, NULL));
    keel_bus_stats st;
    keel_bus_stats_get(b, &st);
    assert_int_equal(1, st.dropped);
    gate_open(&g);
    keel_bus_destroy(b);
    gate_destroy(&g);

    /* No limit: the publisher waits until the worker frees a slot, then succeeds. */
    gate_init(&g);
    b = async_bus(1, 1, KEEL_BUS_OVERFLOW_BLOCK, 0, NULL);
    ASSERT_OK(keel_bus_subscribe(b, "e", gated, &g, NULL));
    ASSERT_OK(keel_bus_publish(b, "e", NULL, NULL));
    gate_wait_parked(&g, 1);
    ASSERT_OK(keel_bus_publish(b, "e", NULL, NULL));
    blocked_pub p = {b, KEEL_EINTERNAL};
    pthread_t t;
    assert_int_equal(0, pthread_create(&t, NULL, publish_thread, &p));
    struct timespec ts = {0, 2 * 1000000L}; /* let it reach the wait (either way it succeeds) */
    nanosleep(&ts, NULL);
    gate_open(&g);
    pthread_join(t, NULL);
    ASSERT_OK(p.result);
    keel_bus_destroy(b);
    assert_int_equal(3, g.passed);
    gate_destroy(&g);
}

/* A handler on a worker that publishes to its own full BLOCK bus must not wait for itself
 * (one worker: nobody else would ever make room), and must not drain its own bus. */
typedef struct nested {
    keel_bus *b;
    atomic_int results[3];
} nested;

static keel_err publish_from_worker(const keel_event *ev, void *ud)
{
    nested *n = ud;
    if (strcmp(keel_event_type(ev), "outer") != 0)
        return KEEL_OK;
    atomic_store(&n->results[0], keel_bus_publish(n->b, "inner", NULL, NULL)); /* fills it */
    atomic_store(&n->results[1], keel_bus_publish(n->b, "inner", NULL, NULL)); /* full */
    atomic_store(&n->results[2], keel_bus_drain(n->b, 0));
    return KEEL_OK;
}

static void test_async_worker_never_waits_for_itself(void **state)
{
    (void)state;
    keel_bus *b = async_bus(1, 1, KEEL_BUS_OVERFLOW_BLOCK, 0, NULL);
    nested n = {b, {1, 1, 1}};
    ASSERT_OK(keel_bus_subscribe(b, KEEL_BUS_ANY, publish_from_worker, &n, NULL));
    ASSERT_OK(keel_bus_publish(b, "outer", NULL, NULL));
    ASSERT_OK(keel_bus_drain(b, 0));
    assert_int_equal(KEEL_OK, atomic_load(&n.results[0]));
    assert_int_equal(KEEL_EFULL, atomic_load(&n.results[1]));
    assert_int_equal(KEEL_EBUSY, atomic_load(&n.results[2]));
    keel_bus_stats st;
    keel_bus_stats_get(b, &st);
    assert_int_equal(2, st.published);
    assert_int_equal(2, st.delivered);
    assert_int_equal(1, st.dropped);
    keel_bus_destroy(b);
}

/* ------------------------------------------------------ unsubscribe guarantee -- */

typedef struct slow_sub {
    gate *g;
    atomic_int after_unsub; /* calls that started after unsubscribe returned */
    atomic_int unsubscribed;
} slow_sub;

static keel_err slow_handler(const keel_event *ev, void *ud)
{
    slow_sub *s = ud;
    if (atomic_load(&s->unsubscribed))
        atomic_fetch_add(&s->after_unsub, 1);
    return gated(ev, s->g);
}

typedef struct unsub_arg {
    keel_bus *b;
    uint64_t id;
    slow_sub *s;
    atomic_int done;
} unsub_arg;

static void *unsub_thread(void *arg)
{
    unsub_arg *u = arg;
    keel_err e = keel_bus_unsubscribe(u->b, u->id);
    assert_int_equal(KEEL_OK, e);
    atomic_store(&u->s->unsubscribed, 1);
    atomic_store(&u->done, 1);
    return NULL;
}

static void test_unsubscribe_waits_for_running_handler(void **state)
{
    (void)state;
    gate g;
    gate_init(&g);
    keel_bus *b = async_bus(1, 8, KEEL_BUS_OVERFLOW_REJECT, 0, NULL);
    slow_sub s = {&g, 0, 0};
    uint64_t id;
    ASSERT_OK(keel_bus_subscribe(b, "e", slow_handler, &s, &id));
    ASSERT_OK(keel_bus_publish(b, "e", NULL, NULL));
    gate_wait_parked(&g, 1);
    unsub_arg u = {b, id, &s, 0};
    pthread_t t;
    assert_int_equal(0, pthread_create(&t, NULL, unsub_thread, &u));
    /* The handler is still running: unsubscribe must not have returned.  Give the
     * unsubscriber a moment to reach its wait (no timing assertion: it can only be early). */
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(0, atomic_load(&u.done));
    ASSERT_OK(keel_bus_publish(b, "e", NULL, NULL)); /* queued behind the running call */
    gate_open(&g);
    pthread_join(t, NULL);
    assert_int_equal(1, atomic_load(&u.done));
    ASSERT_OK(keel_bus_drain(b, 0));
    assert_int_equal(0, atomic_load(&s.after_unsub));
    /* The queued event reaches the handler only if its snapshot was taken before the
     * unsubscriber got to run at all. */
    assert_true(g.passed == 1 || g.passed == 2);
    keel_bus_destroy(b);
    gate_destroy(&g);
}

/* ------------------------------------------------------------- concurrency -- */

#define CONC_THREADS 4
#define CONC_EVENTS 2000

typedef struct conc {
    keel_bus *b;
    atomic_int stop;
    atomic_long calls;
    atomic_int published;
} conc;

static keel_err conc_handler(const keel_event *ev, void *ud)
{
    (void)ev;
    /* ud points at a heap counter freed right after unsubscribe: ASan catches any call
     * made after unsubscribe returned. */
    atomic_fetch_add((atomic_long *)ud, 1);
    return KEEL_OK;
}

static keel_err conc_count(const keel_event *ev, void *ud)
{
    (void)ev;
    atomic_fetch_add(&((conc *)ud)->calls, 1);
    return KEEL_OK;
}

static void *conc_publisher(void *arg)
{
    conc *c = arg;
    for (int i = 0; i < CONC_EVENTS; i++) {
        if (keel_bus_publish(c->b, (i & 1) ? "odd" : "even", num(i), NULL) == KEEL_OK)
            atomic_fetch_add(&c->published, 1);
    }
    return NULL;
}

static void *conc_subscriber(void *arg)
{
    conc *c = arg;
    while (!atomic_load(&c->stop)) {
        atomic_long *counter_p = keel_malloc(sizeof(atomic_long));
        assert_non_null(counter_p);
        atomic_init(counter_p, 0);
        uint64_t id;
        assert_int_equal(KEEL_OK, keel_bus_subscribe(c->b, "odd", conc_handler, counter_p, &id));
        assert_int_equal(KEEL_OK, keel_bus_unsubscribe(c->b, id));
        keel_free(counter_p);
    }
    return NULL;
}

static void run_concurrent(keel_bus *b)
{
    conc c;
    memset(&c, 0, sizeof(c));
    c.b = b;
    ASSERT_OK(keel_bus_subscribe(b, KEEL_BUS_ANY, conc_count, &c, NULL));
    pthread_t pub[CONC_THREADS], sub[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(0, pthread_create(&sub[i], NULL, conc_subscriber, &c));
    for (int i = 0; i < CONC_THREADS; i++)
        assert_int_equal(0, pthread_create(&pub[i], NULL, conc_publisher, &c));
    for (int i = 0; i < CONC_THREADS; i++)
        pthread_join(pub[i], NULL);
    atomic_store(&c.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(sub[i], NULL);
    ASSERT_OK(keel_bus_drain(b, 0));
    assert_int_equal(CONC_THREADS * CONC_EVENTS, atomic_load(&c.published));
    assert_int_equal(CONC_THREADS * CONC_EVENTS, atomic_load(&c.calls));
    keel_bus_stats st;
    keel_bus_stats_get(b, &st);
    assert_int_equal(CONC_THREADS * CONC_EVENTS, st.published);
    assert_int_equal(CONC_THREADS * CONC_EVENTS, st.delivered);
}

static void test_concurrent_subscribe_while_publishing_sync(void **state)
{
    (void)state;
    keel_bus *b = sync_bus(NULL);
    run_concurrent(b);
    keel_bus_destroy(b);
}

static void test_concurrent_subscribe_while_publishing_async(void **state)
{
    (void)state;
    keel_bus *b = async_bus(3, 256, KEEL_BUS_OVERFLOW_BLOCK, 0, NULL);
    run_concurrent(b);
    keel_bus_destroy(b);
}

/* ------------------------------------------------------------------ config -- */

static void test_config_errors(void **state)
{
    (void)state;
    keel_bus_config c;
    keel_bus *b = (keel_bus *)&c;
    keel_diag d;

    keel_bus_config_default(&c);
    c.mode = KEEL_BUS_ASYNC;
    c.workers = 0;
    assert_int_equal(KEEL_EINVAL, keel_bus_create(&b, &c, &d));
    assert_null(b);
    assert_non_null(strstr(d.msg, "workers"));

    keel_bus_config_default(&c);
    c.mode = KEEL_BUS_ASYNC;
    c.queue_capacity = 0;
    assert_int_equal(KEEL_EINVAL, keel_bus_create(&b, &c, &d));
    assert_non_null(strstr(d.msg, "queue_capacity"));

    keel_bus_config_default(&c);
    c.max_subscribers = 0;
    assert_int_equal(KEEL_EINVAL, keel_bus_create(&b, &c, &d));
    assert_non_null(strstr(d.msg, "max_subscribers"));

    keel_bus_config_default(&c);
    c.mode = (keel_bus_mode)7;
    assert_int_equal(KEEL_EINVAL, keel_bus_create(&b, &c, &d));
    assert_non_null(strstr(d.msg, "mode"));

    keel_bus_config_default(&c);
    c.mode = KEEL_BUS_ASYNC;
    c.overflow = (keel_bus_overflow)9;
    assert_int_equal(KEEL_EINVAL, keel_bus_create(&b, &c, &d));
    assert_non_null(strstr(d.msg, "overflow"));

    keel_bus_config_default(&c);
    c.size = 0;
    assert_int_equal(KEEL_EINVAL, keel_bus_create(&b, &c, &d));
    assert_non_null(strstr(d.msg, "size"));

    /* SYNC ignores the async-only fields. */
    keel_bus_config_default(&c);
    c.workers = 0;
    c.queue_capacity = 0;
    c.max_subscribers = 2;
    ASSERT_OK(keel_bus_create(&b, &c, &d));
    assert_int_equal(KEEL_EINVAL, keel_bus_subscribe(b, "t", NULL, NULL, NULL));
    assert_int_equal(KEEL_EINVAL, keel_bus_subscribe(b, "bad type", record, NULL, NULL));
    uint64_t id = 42;
    assert_int_equal(KEEL_EINVAL, keel_bus_subscribe(b, "", record, NULL, &id));
    assert_int_equal(0, id);
    ASSERT_OK(keel_bus_subscribe(b, "t", record, NULL, NULL));
    ASSERT_OK(keel_bus_subscribe(b, "*", record, NULL, NULL));
    assert_int_equal(KEEL_EFULL, keel_bus_subscribe(b, "t", record, NULL, NULL));
    assert_int_equal(KEEL_EINVAL, keel_bus_publish_take(b, NULL));
    assert_int_equal(KEEL_EINVAL, keel_bus_publish_take(NULL, NULL));
    assert_int_equal(KEEL_EINVAL, keel_bus_publish(NULL, "t", json_object(), NULL));
    assert_int_equal(KEEL_EINVAL, keel_bus_publish(b, "*", json_object(), NULL));
    ASSERT_OK(keel_bus_drain(b, 0));
    keel_bus_destroy(b);
    keel_bus_destroy(NULL);

    /* Defaults (cfg NULL) work. */
    ASSERT_OK(keel_bus_create(&b, NULL, NULL));
    keel_bus_destroy(b);
}

/* Allocation failures never crash or leak. */
static keel_err noop(const keel_event *ev, void *ud)
{
    (void)ev;
    (void)ud;
    return KEEL_OK;
}

static void test_oom(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    for (int n = 0; n < 40; n++) {
        keel_test_failalloc_arm(n);
        keel_bus_config c;
        keel_bus_config_default(&c);
        c.mode = (n & 1) ? KEEL_BUS_ASYNC : KEEL_BUS_SYNC;
        c.workers = 1;
        keel_bus *b;
        if (keel_bus_create(&b, &c, NULL) != KEEL_OK)
            continue;
        uint64_t id;
        keel_err e = keel_bus_subscribe(b, "t", noop, NULL, &id);
        if (e == KEEL_OK)
            e = keel_bus_unsubscribe(b, id);
        assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
        e = keel_bus_publish(b, "t", NULL, NULL);
        assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
        keel_bus_destroy(b);
    }
    keel_test_failalloc_remove();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_basics),
        cmocka_unit_test(test_sync_order_and_wildcard),
        cmocka_unit_test(test_middleware_transform_and_drop),
        cmocka_unit_test(test_failing_subscriber_isolated),
        cmocka_unit_test(test_subscribe_from_handler),
        cmocka_unit_test(test_async_delivers_all_after_stop),
        cmocka_unit_test(test_async_queue_full_reject),
        cmocka_unit_test(test_async_queue_full_block),
        cmocka_unit_test(test_async_worker_never_waits_for_itself),
        cmocka_unit_test(test_unsubscribe_waits_for_running_handler),
        cmocka_unit_test(test_concurrent_subscribe_while_publishing_sync),
        cmocka_unit_test(test_concurrent_subscribe_while_publishing_async),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
