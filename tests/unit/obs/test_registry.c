/* Tests for src/obs/registry.c: registration rules, name validation, series lookup,
 * value updates, the cardinality cap, concurrency and allocation failures. */
/* keel_int.h first: it defines _GNU_SOURCE, which obs_int.h needs (pthread_rwlock_t). */
#include "keel_int.h"

#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/metrics.h>

#include "obs/obs_int.h"

static keel_metrics *new_registry(void)
{
    keel_metrics *m = NULL;
    ASSERT_OK(keel_metrics_create(&m));
    assert_non_null(m);
    return m;
}

static void test_create_registers_refused_counter(void **state)
{
    (void)state;
    keel_metrics *m = new_registry();
    keel_metric *f;
    /* Registering it again with the same shape returns the registry's own family. */
    ASSERT_OK(keel_metrics_counter(m, KEEL__METRICS_REFUSED_NAME, "x", NULL, &f));
    assert_ptr_equal(m->refused->family, f);
    assert_true(keel_series_value(m->refused) == 0.0);
    assert_int_equal(KEEL_EEXIST, keel_metrics_gauge(m, KEEL__METRICS_REFUSED_NAME, "x", NULL, &f));
    keel_metrics_destroy(m);
    keel_metrics_destroy(NULL);
    assert_int_equal(KEEL_EINVAL, keel_metrics_create(NULL));
}

static void test_reregistration(void **state)
{
    (void)state;
    keel_metrics *m = new_registry();
    const char *l2[] = {"method", "code", NULL};
    const char *l2b[] = {"code", "method", NULL};
    const char *l1[] = {"method", NULL};
    keel_metric *a, *b;
    ASSERT_OK(keel_metrics_counter(m, "app_requests_total", "Requests.", l2, &a));
    ASSERT_OK(keel_metrics_counter(m, "app_requests_total", "Other help.", l2, &b));
    assert_ptr_equal(a, b);
    b = NULL;
    assert_int_equal(KEEL_EEXIST, keel_metrics_counter(m, "app_requests_total", "", l1, &b));
    assert_null(b); /* untouched on error */
    assert_int_equal(KEEL_EEXIST, keel_metrics_counter(m, "app_requests_total", "", l2b, &b));
    assert_int_equal(KEEL_EEXIST, keel_metrics_counter(m, "app_requests_total", "", NULL, &b));
    assert_int_equal(KEEL_EEXIST, keel_metrics_gauge(m, "app_requests_total", "", l2, &b));
    assert_int_equal(KEEL_EEXIST,
                     keel_metrics_histogram(m, "app_requests_total", "", l2, NULL, 0, &b));

    /* Histograms: same buckets (explicitly or via defaults) match, others do not. */
    const double defaults[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    const double other[] = {0.1, 1};
    keel_metric *h1, *h2;
    ASSERT_OK(keel_metrics_histogram(m, "app_latency_seconds", "L", l1, NULL, 0, &h1));
    ASSERT_OK(keel_metrics_histogram(m, "app_latency_seconds", "L", l1, defaults, 11, &h2));
    assert_ptr_equal(h1, h2);
    assert_int_equal(KEEL_EEXIST,
                     keel_metrics_histogram(m, "app_latency_seconds", "L", l1, other, 2, &h2));
    assert_int_equal(KEEL_EEXIST,
                     keel_metrics_histogram(m, "app_latency_seconds", "L", l1, defaults, 10, &h2));
    assert_int_equal(11, h1->nbounds);

    /* A gauge and an unlabelled counter. */
    ASSERT_OK(keel_metrics_gauge(m, "app_temp", NULL, NULL, &a));
    ASSERT_OK(keel_metrics_gauge(m, "app_temp", "now with help", NULL, &b));
    assert_ptr_equal(a, b);
    keel_metrics_destroy(m);
}

static void test_invalid_names(void **state)
{
    (void)state;
    keel_metrics *m = new_registry();
    keel_metric *f;
    const char *bad_names[] = {"", "1abc", "a-b", "a b", "a.b", "é", "a\n", "a{b}"};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(bad_names); i++) {
        assert_int_equal(KEEL_EINVAL, keel_metrics_counter(m, bad_names[i], "h", NULL, &f));
        assert_int_equal(KEEL_EINVAL, keel_metrics_gauge(m, bad_names[i], "h", NULL, &f));
        assert_int_equal(KEEL_EINVAL,
                         keel_metrics_histogram(m, bad_names[i], "h", NULL, NULL, 0, &f));
    }
    assert_int_equal(KEEL_EINVAL, keel_metrics_counter(m, NULL, "h", NULL, &f));
    assert_int_equal(KEEL_EINVAL, keel_metrics_counter(NULL, "a", "h", NULL, &f));
    assert_int_equal(KEEL_EINVAL, keel_metrics_counter(m, "a", "h", NULL, NULL));
    ASSERT_OK(keel_metrics_gauge(m, ":rule:x_1", "h", NULL, &f));
    ASSERT_OK(keel_metrics_gauge(m, "_x9", "h", NULL, &f));

    const char *bad_labels[][3] = {
        {"__reserved", NULL, NULL}, {"1a", NULL, NULL},  {"a-b", NULL, NULL},
        {"a:b", NULL, NULL},        {"", NULL, NULL},    {"dup", "dup", NULL},
        {"ok", "a b", NULL},
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(bad_labels); i++)
        assert_int_equal(KEEL_EINVAL, keel_metrics_counter(m, "lab_total", "h", bad_labels[i], &f));
    const char *nine[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", NULL};
    assert_int_equal(KEEL_EINVAL, keel_metrics_counter(m, "lab_total", "h", nine, &f));
    ASSERT_OK(keel_metrics_counter(m, "lab_total", "h", nine + 1, &f)); /* exactly 8 */
    assert_int_equal(8, f->nlabels);

    /* "le" is reserved for histograms only; "_x" (single underscore) is fine. */
    const char *le[] = {"le", NULL};
    const char *us[] = {"_x", NULL};
    assert_int_equal(KEEL_EINVAL, keel_metrics_histogram(m, "h_seconds", "h", le, NULL, 0, &f));
    ASSERT_OK(keel_metrics_gauge(m, "g_le", "h", le, &f));
    ASSERT_OK(keel_metrics_gauge(m, "g_us", "h", us, &f));

    /* Buckets: strictly increasing and finite. */
    const double dup[] = {1, 1};
    const double dec[] = {2, 1};
    const double nan_b[] = {1, NAN};
    const double inf_b[] = {1, INFINITY};
    const double neg[] = {-INFINITY, 1};
    const double okb[] = {-1, 0, 0.5};
    assert_int_equal(KEEL_EINVAL, keel_metrics_histogram(m, "b1", "h", NULL, dup, 2, &f));
    assert_int_equal(KEEL_EINVAL, keel_metrics_histogram(m, "b1", "h", NULL, dec, 2, &f));
    assert_int_equal(KEEL_EINVAL, keel_metrics_histogram(m, "b1", "h", NULL, nan_b, 2, &f));
    assert_int_equal(KEEL_EINVAL, keel_metrics_histogram(m, "b1", "h", NULL, inf_b, 2, &f));
    assert_int_equal(KEEL_EINVAL, keel_metrics_histogram(m, "b1", "h", NULL, neg, 2, &f));
    ASSERT_OK(keel_metrics_histogram(m, "b1", "h", NULL, okb, 3, &f));
    assert_int_equal(3, f->nbounds);
    ASSERT_OK(keel_metrics_histogram(m, "b2", "h", NULL, okb, 0, &f)); /* only +Inf */
    assert_int_equal(0, f->nbounds);
    keel_metrics_destroy(m);

    assert_int_equal(1, keel__metrics_valid_name("a:b_C9"));
    assert_int_equal(0, keel__metrics_valid_label("a:b"));
    assert_int_equal(0, keel__metrics_valid_label("__a"));
    assert_int_equal(1, keel__metrics_valid_label("_a"));
}

static void test_series_lookup(void **state)
{
    (void)state;
    keel_metrics *m = new_registry();
    const char *l2[] = {"method", "code", NULL};
    keel_metric *f, *u;
    ASSERT_OK(keel_metrics_counter(m, "req_total", "h", l2, &f));
    ASSERT_OK(keel_metrics_counter(m, "solo_total", "h", NULL, &u));

    char method[8] = "GET";
    const char *v1[] = {method, "200"};
    keel_series *s1, *s2, *s3;
    ASSERT_OK(keel_metric_series(f, v1, &s1));
    memcpy(method, "PUT", 4); /* values were copied */
    const char *v1b[] = {"GET", "200", NULL}; /* a trailing NULL is allowed */
    ASSERT_OK(keel_metric_series(f, v1b, &s2));
    assert_ptr_equal(s1, s2);
    ASSERT_OK(keel_metric_series(f, v1, &s3)); /* now PUT/200 */
    assert_ptr_not_equal(s1, s3);
    assert_string_equal("GET", s1->values[0]);
    assert_string_equal("PUT", s3->values[0]);
    /* "a","bc" and "ab","c" are different series even if they concatenate the same. */
    const char *c1[] = {"a", "bc"};
    const char *c2[] = {"ab", "c"};
    ASSERT_OK(keel_metric_series(f, c1, &s1));
    ASSERT_OK(keel_metric_series(f, c2, &s2));
    assert_ptr_not_equal(s1, s2);
    assert_int_equal(4, f->nseries);

    /* Wrong counts. */
    const char *short1[] = {"GET", NULL};
    assert_int_equal(KEEL_EINVAL, keel_metric_series(f, short1, &s1));
    assert_int_equal(KEEL_EINVAL, keel_metric_series(f, NULL, &s1));
    const char *one[] = {"x", NULL};
    assert_int_equal(KEEL_EINVAL, keel_metric_series(u, one, &s1));
    assert_int_equal(KEEL_EINVAL, keel_metric_series(NULL, NULL, &s1));
    assert_int_equal(KEEL_EINVAL, keel_metric_series(u, NULL, NULL));
    const char *empty[] = {NULL};
    ASSERT_OK(keel_metric_series(u, empty, &s1));
    ASSERT_OK(keel_metric_series(u, NULL, &s2));
    assert_ptr_equal(s1, s2);

    /* Over-long label value. */
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *vb[] = {big, "1"};
    assert_int_equal(KEEL_ETOOBIG, keel_metric_series(f, vb, &s1));
    assert_true(keel_series_value(m->refused) == 0.0);

    /* Many series: the table grows and every one is found again. */
    keel_series *all[3000];
    char a[16], b[16];
    for (int i = 0; i < 3000; i++) {
        snprintf(a, sizeof(a), "m%d", i);
        snprintf(b, sizeof(b), "%d", i % 7);
        const char *v[] = {a, b};
        ASSERT_OK(keel_metric_series(f, v, &all[i]));
        keel_series_add(all[i], (double)i);
    }
    for (int i = 0; i < 3000; i++) {
        snprintf(a, sizeof(a), "m%d", i);
        snprintf(b, sizeof(b), "%d", i % 7);
        const char *v[] = {a, b};
        ASSERT_OK(keel_metric_series(f, v, &s1));
        assert_ptr_equal(all[i], s1);
        assert_true(keel_series_value(s1) == (double)i);
    }
    assert_int_equal(3004, f->nseries);
    assert_true(f->tmask + 1 >= 2048);
    keel_metrics_destroy(m);
}

static void test_values(void **state)
{
    (void)state;
    keel_metrics *m = new_registry();
    keel_metric *c, *g, *h;
    const char *bounds_l[] = {"route", NULL};
    const double b[] = {0.25, 0.5, 1};
    ASSERT_OK(keel_metrics_counter(m, "c_total", "h", NULL, &c));
    ASSERT_OK(keel_metrics_gauge(m, "g", "h", NULL, &g));
    ASSERT_OK(keel_metrics_histogram(m, "h_seconds", "h", bounds_l, b, 3, &h));
    keel_series *cs, *gs, *hs;
    ASSERT_OK(keel_metric_series(c, NULL, &cs));
    ASSERT_OK(keel_metric_series(g, NULL, &gs));
    const char *r[] = {"/v1"};
    ASSERT_OK(keel_metric_series(h, r, &hs));

    keel_series_add(cs, 1);
    keel_series_add(cs, 2.5);
    keel_series_add(cs, -1);  /* ignored */
    keel_series_add(cs, NAN); /* ignored */
    keel_series_add(cs, 0);
    keel_series_set(cs, 100); /* not a gauge: ignored */
    keel_series_observe(cs, 1);
    assert_true(keel_series_value(cs) == 3.5);
    keel_series_add(cs, 1e20); /* too big for the integer part: goes to the double part */
    assert_true(keel_series_value(cs) == 1e20 + 3.5);
    keel__series_set_counter(cs, 42.0);
    assert_true(keel_series_value(cs) == 42.0);

    keel_series_add(gs, -2.5);
    assert_true(keel_series_value(gs) == -2.5);
    keel_series_set(gs, 7);
    keel_series_add(gs, 0.5);
    assert_true(keel_series_value(gs) == 7.5);
    keel__series_set_counter(gs, 3); /* works as a set on gauges */
    assert_true(keel_series_value(gs) == 3.0);
    keel_series_observe(gs, 1); /* ignored */
    assert_true(keel_series_value(gs) == 3.0);

    const double obs[] = {0.125, 0.25, 0.375, 0.75, 4, NAN};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(obs); i++)
        keel_series_observe(hs, obs[i]);
    keel_series_add(hs, 5); /* ignored */
    keel_series_set(hs, 5); /* ignored */
    assert_true(keel_series_value(hs) == 6.0);
    assert_int_equal(2, atomic_load(&hs->counts[0])); /* 0.125, 0.25 (bounds inclusive) */
    assert_int_equal(1, atomic_load(&hs->counts[1])); /* 0.375 */
    assert_int_equal(1, atomic_load(&hs->counts[2])); /* 0.75 */
    assert_int_equal(2, atomic_load(&hs->counts[3])); /* 4, NaN */
    assert_true(isnan(keel__bitsd(atomic_load(&hs->bits))));

    /* NULL series are ignored. */
    keel_series_add(NULL, 1);
    keel_series_set(NULL, 1);
    keel_series_observe(NULL, 1);
    assert_true(keel_series_value(NULL) == 0.0);

    /* Shorthands, with type checks. */
    const char *rv[] = {"/v2"};
    ASSERT_OK(keel_metric_add(c, NULL, 1));
    ASSERT_OK(keel_metric_add(g, NULL, 1));
    ASSERT_OK(keel_metric_set(g, NULL, 10));
    ASSERT_OK(keel_metric_observe(h, rv, 0.3));
    assert_int_equal(KEEL_EINVAL, keel_metric_add(h, rv, 1));
    assert_int_equal(KEEL_EINVAL, keel_metric_set(c, NULL, 1));
    assert_int_equal(KEEL_EINVAL, keel_metric_observe(g, NULL, 1));
    assert_int_equal(KEEL_EINVAL, keel_metric_observe(h, NULL, 1));
    assert_int_equal(KEEL_EINVAL, keel_metric_add(NULL, NULL, 1));
    assert_true(keel_series_value(cs) == 43.0);
    assert_true(keel_series_value(gs) == 10.0);
    ASSERT_OK(keel_metric_series(h, rv, &hs));
    assert_true(keel_series_value(hs) == 1.0);
    assert_true(keel__bitsd(atomic_load(&hs->bits)) == 0.3);
    keel_metrics_destroy(m);
}

static void test_cardinality_cap(void **state)
{
    (void)state;
    keel_metrics *m = new_registry();
    const char *l[] = {"id", NULL};
    keel_metric *f, *other;
    ASSERT_OK(keel_metrics_counter(m, "capped_total", "h", l, &f));
    ASSERT_OK(keel_metrics_counter(m, "other_total", "h", l, &other));
    char v[16];
    const char *vals[] = {v};
    keel_series *s;
    for (int i = 0; i < KEEL_METRICS_MAX_SERIES; i++) {
        snprintf(v, sizeof(v), "%d", i);
        ASSERT_OK(keel_metric_series(f, vals, &s));
    }
    snprintf(v, sizeof(v), "%d", KEEL_METRICS_MAX_SERIES);
    s = NULL;
    assert_int_equal(KEEL_ETOOBIG, keel_metric_series(f, vals, &s));
    assert_null(s);
    assert_true(keel_series_value(m->refused) == 1.0);
    assert_int_equal(KEEL_ETOOBIG, keel_metric_add(f, vals, 1));
    assert_true(keel_series_value(m->refused) == 2.0);
    /* Existing series still work; other families are not affected. */
    snprintf(v, sizeof(v), "%d", 17);
    ASSERT_OK(keel_metric_add(f, vals, 5));
    ASSERT_OK(keel_metric_series(f, vals, &s));
    assert_true(keel_series_value(s) == 5.0);
    ASSERT_OK(keel_metric_add(other, vals, 1));
    assert_int_equal(KEEL_METRICS_MAX_SERIES, f->nseries);
    assert_true(keel_series_value(m->refused) == 2.0);
    keel_metrics_destroy(m);
}

/* ---------------------------------------------------------- concurrency -- */

#define THREADS 4
#define ITERS 100000

typedef struct worker {
    keel_metric *counter, *gauge, *hist, *labelled;
    keel_series *shared_c, *shared_g, *shared_h;
    int id;
    int errors;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    static const char *const codes[] = {"200", "201", "404", "500", "503"};
    for (int i = 0; i < ITERS; i++) {
        keel_series_add(w->shared_c, 1);
        keel_series_add(w->shared_g, 0.5);
        keel_series_observe(w->shared_h, (i % 4) == 0 ? 0.5 : 0.125);
        /* Lookups racing with inserts of the same and other label sets. */
        const char *v[] = {codes[i % 5], (i & 1) ? "a" : "b"};
        if (keel_metric_add(w->labelled, v, 1) != KEEL_OK)
            w->errors++;
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    keel_metrics *m = new_registry();
    const char *l[] = {"code", "x", NULL};
    const double b[] = {0.25, 1};
    worker w[THREADS];
    keel_metric *c, *g, *h, *lab;
    ASSERT_OK(keel_metrics_counter(m, "c_total", "h", NULL, &c));
    ASSERT_OK(keel_metrics_gauge(m, "g", "h", NULL, &g));
    ASSERT_OK(keel_metrics_histogram(m, "h_seconds", "h", NULL, b, 2, &h));
    ASSERT_OK(keel_metrics_counter(m, "lab_total", "h", l, &lab));
    keel_series *cs, *gs, *hs;
    ASSERT_OK(keel_metric_series(c, NULL, &cs));
    ASSERT_OK(keel_metric_series(g, NULL, &gs));
    ASSERT_OK(keel_metric_series(h, NULL, &hs));
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){c, g, h, lab, cs, gs, hs, i, 0};
        assert_int_equal(0, pthread_create(&t[i], NULL, worker_main, &w[i]));
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(0, pthread_join(t[i], NULL));
        assert_int_equal(0, w[i].errors);
    }
    assert_true(keel_series_value(cs) == (double)(THREADS * ITERS));
    assert_true(keel_series_value(gs) == (double)(THREADS * ITERS) * 0.5);
    assert_true(keel_series_value(hs) == (double)(THREADS * ITERS));
    assert_int_equal(THREADS * ITERS / 4, atomic_load(&hs->counts[1]));
    assert_int_equal(THREADS * ITERS * 3 / 4, atomic_load(&hs->counts[0]));
    assert_int_equal(0, atomic_load(&hs->counts[2]));
    assert_true(keel__bitsd(atomic_load(&hs->bits)) ==
                (double)(THREADS * ITERS / 4) * 0.5 + (double)(THREADS * ITERS * 3 / 4) * 0.125);
    /* 10 label sets (code x parity, and code fixes parity for i%5 vs i&1 over 10 steps). */
    assert_int_equal(10, lab->nseries);
    double total = 0;
    for (keel_series *s = atomic_load(&lab->first); s != NULL; s = atomic_load(&s->onext))
        total += keel_series_value(s);
    assert_true(total == (double)(THREADS * ITERS));
    keel_metrics_destroy(m);
}

/* ------------------------------------------------------- allocation failure -- */

static long g_alloc_left; /* allocations allowed before failing; <0 = unlimited */

static void *fail_alloc(void *ctx, size_t n)
{
    (void)ctx;
    if (g_alloc_left == 0)
        return NULL;
    if (g_alloc_left > 0)
        g_alloc_left--;
    return malloc(n);
}

static void *fail_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (g_alloc_left == 0)
        return NULL;
    if (g_alloc_left > 0)
        g_alloc_left--;
    return realloc(p, n);
}

static void plain_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static keel_err oom_scenario(void)
{
    keel_metrics *m;
    keel_err e = keel_metrics_create(&m);
    if (e != KEEL_OK)
        return e;
    const char *l[] = {"a", "b", NULL};
    const char *v[] = {"x", "y"};
    keel_metric *c, *h;
    keel_series *s;
    keel_buf out;
    keel_buf_init(&out, 1 << 20);
    e = keel_metrics_counter(m, "c_total", "help", l, &c);
    if (e == KEEL_OK)
        e = keel_metrics_histogram(m, "h_seconds", "help", NULL, NULL, 0, &h);
    if (e == KEEL_OK)
        e = keel_metric_series(c, v, &s);
    if (e == KEEL_OK)
        e = keel_metric_observe(h, NULL, 0.1);
    if (e == KEEL_OK)
        e = keel_metrics_add_process_collector(m);
    if (e == KEEL_OK)
        e = keel_metrics_expose(m, NULL, &out);
    keel_buf_cleanup(&out);
    keel_metrics_destroy(m);
    return e;
}

static void test_allocation_failures(void **state)
{
    (void)state;
    keel_allocator a = {fail_alloc, fail_realloc, plain_free, NULL};
    ASSERT_OK(keel_set_allocator(&a));
    int completed = 0;
    for (long k = 0; k < 200 && !completed; k++) {
        g_alloc_left = k;
        keel_err e = oom_scenario();
        if (e == KEEL_OK)
            completed = 1;
        else
            assert_int_equal(KEEL_ENOMEM, e);
    }
    g_alloc_left = -1;
    ASSERT_OK(keel_set_allocator(NULL));
    assert_true(completed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_registers_refused_counter),
        cmocka_unit_test(test_reregistration),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_series_lookup),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_cardinality_cap),
        cmocka_unit_test(test_concurrent_updates),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
