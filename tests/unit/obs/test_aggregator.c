/* Tests for src/obs/aggregator.c: statistics, retention, lookback, label filters,
 * the max_points cap, names, argument checks, threads and allocation failure. */
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/metrics.h>

static keel_agg_stats stats_of(keel_aggregator *a, const char *name, const keel_label *f,
                               size_t nf, uint64_t lookback, uint64_t now)
{
    keel_agg_stats st;
    ASSERT_OK(keel_aggregator_stats(a, name, f, nf, lookback, now, &st));
    return st;
}

static void test_basic_stats(void **state)
{
    (void)state;
    keel_aggregator *a;
    ASSERT_OK(keel_aggregator_create(&a, 60000, 100));
    ASSERT_OK(keel_aggregator_record(a, "latency", 0.5, NULL, 0, 1000));
    ASSERT_OK(keel_aggregator_record(a, "latency", 2.0, NULL, 0, 2000));
    ASSERT_OK(keel_aggregator_record(a, "latency", 1.5, NULL, 0, 3000));
    ASSERT_OK(keel_aggregator_record(a, "other", 100.0, NULL, 0, 3000));
    keel_agg_stats st = stats_of(a, "latency", NULL, 0, 0, 3000);
    assert_int_equal(3, st.count);
    assert_true(st.min == 0.5);
    assert_true(st.max == 2.0);
    assert_true(st.sum == 4.0);
    assert_true(fabs(st.avg - 4.0 / 3.0) < 1e-12);
    assert_true(st.last == 1.5);
    st = stats_of(a, "other", NULL, 0, 0, 3000);
    assert_int_equal(1, st.count);
    assert_true(st.min == 100.0 && st.max == 100.0 && st.avg == 100.0 && st.last == 100.0);
    keel_aggregator_destroy(a);
}

static void test_retention(void **state)
{
    (void)state;
    keel_aggregator *a;
    ASSERT_OK(keel_aggregator_create(&a, 10000, 100));
    ASSERT_OK(keel_aggregator_record(a, "m", 1.0, NULL, 0, 1000));
    ASSERT_OK(keel_aggregator_record(a, "m", 2.0, NULL, 0, 5000));
    ASSERT_OK(keel_aggregator_record(a, "gone", 9.0, NULL, 0, 5000));
    /* at 11000 the cutoff is 1000: a point exactly at the cutoff is kept */
    keel_agg_stats st = stats_of(a, "m", NULL, 0, 0, 11000);
    assert_int_equal(2, st.count);
    ASSERT_OK(keel_aggregator_record(a, "m", 4.0, NULL, 0, 12000));
    st = stats_of(a, "m", NULL, 0, 0, 12000); /* cutoff 2000: the first point is gone */
    assert_int_equal(2, st.count);
    assert_true(st.sum == 6.0);
    assert_true(st.min == 2.0);
    st = stats_of(a, "m", NULL, 0, 0, 15001); /* cutoff 5001 */
    assert_int_equal(1, st.count);
    assert_true(st.last == 4.0);

    keel_buf b;
    keel_buf_init(&b, 1024);
    ASSERT_OK(keel_aggregator_names(a, &b));
    assert_string_equal("m\n", b.ptr); /* "gone" expired with its only point */
    st = stats_of(a, "m", NULL, 0, 0, 30000);
    assert_int_equal(0, st.count);
    keel_buf_reset(&b);
    ASSERT_OK(keel_aggregator_names(a, &b));
    assert_int_equal(0, b.len);
    keel_buf_cleanup(&b);
    keel_aggregator_destroy(a);
}

static void test_lookback(void **state)
{
    (void)state;
    keel_aggregator *a;
    ASSERT_OK(keel_aggregator_create(&a, 3600000, 100));
    for (uint64_t t = 1; t <= 5; t++)
        ASSERT_OK(keel_aggregator_record(a, "q", (double)t * 10.0, NULL, 0, t * 1000));
    keel_agg_stats st = stats_of(a, "q", NULL, 0, 2500, 5000); /* ts >= 2500 */
    assert_int_equal(3, st.count);
    assert_true(st.min == 30.0);
    assert_true(st.max == 50.0);
    assert_true(st.sum == 120.0);
    assert_true(st.avg == 40.0);
    assert_true(st.last == 50.0);
    st = stats_of(a, "q", NULL, 0, 2000, 5000); /* inclusive: ts >= 3000 */
    assert_int_equal(3, st.count);
    st = stats_of(a, "q", NULL, 0, 0, 5000); /* 0 = everything retained */
    assert_int_equal(5, st.count);
    assert_true(st.sum == 150.0);
    st = stats_of(a, "q", NULL, 0, 100000, 5000); /* lookback longer than uptime */
    assert_int_equal(5, st.count);
    keel_aggregator_destroy(a);
}

static void test_label_filter(void **state)
{
    (void)state;
    keel_aggregator *a;
    ASSERT_OK(keel_aggregator_create(&a, 3600000, 100));
    keel_label get_a[] = {{"method", "GET"}, {"path", "/a"}};
    keel_label post_a[] = {{"method", "POST"}, {"path", "/a"}};
    keel_label get_b[] = {{"path", "/b"}, {"method", "GET"}};
    ASSERT_OK(keel_aggregator_record(a, "req", 1.0, get_a, 2, 100));
    ASSERT_OK(keel_aggregator_record(a, "req", 2.0, post_a, 2, 200));
    ASSERT_OK(keel_aggregator_record(a, "req", 4.0, get_b, 2, 300));
    ASSERT_OK(keel_aggregator_record(a, "req", 8.0, NULL, 0, 400));

    keel_label f_get[] = {{"method", "GET"}};
    keel_agg_stats st = stats_of(a, "req", f_get, 1, 0, 500);
    assert_int_equal(2, st.count);
    assert_true(st.sum == 5.0);
    assert_true(st.last == 4.0);

    keel_label f_get_b[] = {{"method", "GET"}, {"path", "/b"}};
    st = stats_of(a, "req", f_get_b, 2, 0, 500);
    assert_int_equal(1, st.count);
    assert_true(st.sum == 4.0);

    keel_label f_path_a[] = {{"path", "/a"}};
    st = stats_of(a, "req", f_path_a, 1, 0, 500);
    assert_int_equal(2, st.count);
    assert_true(st.min == 1.0 && st.max == 2.0 && st.avg == 1.5);

    keel_label f_put[] = {{"method", "PUT"}};
    st = stats_of(a, "req", f_put, 1, 0, 500);
    assert_int_equal(0, st.count);
    assert_true(st.min == 0.0 && st.max == 0.0 && st.avg == 0.0 && st.sum == 0.0 &&
                st.last == 0.0);

    keel_label f_value_case[] = {{"method", "get"}};
    st = stats_of(a, "req", f_value_case, 1, 0, 500);
    assert_int_equal(0, st.count);

    st = stats_of(a, "req", NULL, 0, 0, 500); /* no filter: all four */
    assert_int_equal(4, st.count);
    assert_true(st.sum == 15.0);
    keel_aggregator_destroy(a);
}

static void test_empty(void **state)
{
    (void)state;
    keel_aggregator *a;
    ASSERT_OK(keel_aggregator_create(&a, 1000, 10));
    keel_agg_stats st;
    memset(&st, 0x5a, sizeof(st));
    ASSERT_OK(keel_aggregator_stats(a, "nothing", NULL, 0, 0, 0, &st));
    assert_int_equal(0, st.count);
    assert_true(st.min == 0.0 && st.max == 0.0 && st.avg == 0.0 && st.sum == 0.0 &&
                st.last == 0.0);
    keel_buf b;
    keel_buf_init(&b, 64);
    ASSERT_OK(keel_aggregator_names(a, &b));
    assert_int_equal(0, b.len);
    keel_buf_cleanup(&b);
    keel_aggregator_destroy(a);
}

static void test_cap_drops_oldest(void **state)
{
    (void)state;
    keel_aggregator *a;
    ASSERT_OK(keel_aggregator_create(&a, 3600000, 3));
    ASSERT_OK(keel_aggregator_record(a, "x", 1.0, NULL, 0, 10));
    ASSERT_OK(keel_aggregator_record(a, "y", 2.0, NULL, 0, 10));
    ASSERT_OK(keel_aggregator_record(a, "x", 3.0, NULL, 0, 10));
    ASSERT_OK(keel_aggregator_record(a, "x", 4.0, NULL, 0, 10)); /* drops x=1 */
    keel_agg_stats st = stats_of(a, "x", NULL, 0, 0, 10);
    assert_int_equal(2, st.count);
    assert_true(st.min == 3.0 && st.sum == 7.0 && st.last == 4.0);
    ASSERT_OK(keel_aggregator_record(a, "x", 5.0, NULL, 0, 10)); /* drops y=2 */
    st = stats_of(a, "y", NULL, 0, 0, 10);
    assert_int_equal(0, st.count);
    st = stats_of(a, "x", NULL, 0, 0, 10);
    assert_int_equal(3, st.count);
    assert_true(st.sum == 12.0);
    keel_buf b;
    keel_buf_init(&b, 64);
    ASSERT_OK(keel_aggregator_names(a, &b));
    assert_string_equal("x\n", b.ptr);
    keel_buf_cleanup(&b);
    keel_aggregator_destroy(a);
}

/* Growth past the initial ring capacity and wrap-around at the cap. */
static void test_growth_and_wrap(void **state)
{
    (void)state;
    keel_aggregator *a;
    ASSERT_OK(keel_aggregator_create(&a, 3600000, 150));
    keel_label l[] = {{"k", "even"}};
    keel_label lo[] = {{"k", "odd"}};
    for (int i = 1; i <= 200; i++)
        ASSERT_OK(keel_aggregator_record(a, "g", (double)i, i % 2 ? lo : l, 1, (uint64_t)i));
    keel_agg_stats st = stats_of(a, "g", NULL, 0, 0, 200);
    assert_int_equal(150, st.count);
    assert_true(st.min == 51.0);
    assert_true(st.max == 200.0);
    assert_true(st.last == 200.0);
    assert_true(st.sum == (51.0 + 200.0) * 150.0 / 2.0);
    st = stats_of(a, "g", lo, 1, 0, 200);
    assert_int_equal(75, st.count);
    assert_true(st.last == 199.0);
    assert_true(st.min == 51.0);
    keel_aggregator_destroy(a);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    keel_aggregator *a = (keel_aggregator *)&a;
    assert_int_equal(KEEL_EINVAL, keel_aggregator_create(&a, 0, 10));
    assert_null(a);
    assert_int_equal(KEEL_EINVAL, keel_aggregator_create(&a, 10, 0));
    assert_int_equal(KEEL_EINVAL, keel_aggregator_create(NULL, 10, 10));
    ASSERT_OK(keel_aggregator_create(&a, 1000, 10));
    assert_int_equal(KEEL_EINVAL, keel_aggregator_record(a, "", 1.0, NULL, 0, 1));
    assert_int_equal(KEEL_EINVAL, keel_aggregator_record(a, NULL, 1.0, NULL, 0, 1));
    assert_int_equal(KEEL_EINVAL, keel_aggregator_record(a, "n", NAN, NULL, 0, 1));
    assert_int_equal(KEEL_EINVAL, keel_aggregator_record(a, "n", INFINITY, NULL, 0, 1));
    assert_int_equal(KEEL_EINVAL, keel_aggregator_record(a, "n", 1.0, NULL, 1, 1));
    keel_label dup[] = {{"a", "1"}, {"a", "2"}};
    assert_int_equal(KEEL_EINVAL, keel_aggregator_record(a, "n", 1.0, dup, 2, 1));
    keel_label nullv[] = {{"a", NULL}};
    assert_int_equal(KEEL_EINVAL, keel_aggregator_record(a, "n", 1.0, nullv, 1, 1));
    keel_label many[KEEL_METRICS_MAX_LABELS + 1];
    char names[KEEL_METRICS_MAX_LABELS + 1][4];
    for (size_t i = 0; i < KEEL_ARRAY_LEN(many); i++) {
        names[i][0] = 'l';
        names[i][1] = (char)('a' + i);
        names[i][2] = '\0';
        many[i].name = names[i];
        many[i].value = "v";
    }
    assert_int_equal(KEEL_EINVAL,
                     keel_aggregator_record(a, "n", 1.0, many, KEEL_ARRAY_LEN(many), 1));
    ASSERT_OK(keel_aggregator_record(a, "n", 1.0, many, KEEL_METRICS_MAX_LABELS, 1));
    keel_agg_stats st;
    assert_int_equal(KEEL_EINVAL, keel_aggregator_stats(a, "n", NULL, 1, 0, 1, &st));
    assert_int_equal(KEEL_EINVAL, keel_aggregator_stats(a, NULL, NULL, 0, 0, 1, &st));
    assert_int_equal(KEEL_EINVAL, keel_aggregator_stats(a, "n", NULL, 0, 0, 1, NULL));
    st = stats_of(a, "n", NULL, 0, 0, 1);
    assert_int_equal(1, st.count); /* the rejected records left nothing behind */
    keel_buf b;
    keel_buf_init(&b, 64);
    assert_int_equal(KEEL_EINVAL, keel_aggregator_names(NULL, &b));
    ASSERT_OK(keel_aggregator_names(a, &b));
    assert_string_equal("n\n", b.ptr);
    keel_buf_cleanup(&b);
    keel_buf_init(&b, 1); /* too small for "n\n" */
    assert_int_equal(KEEL_ETOOBIG, keel_aggregator_names(a, &b));
    keel_buf_cleanup(&b);
    keel_aggregator_destroy(a);
    keel_aggregator_destroy(NULL);
}

static void test_name_cap(void **state)
{
    (void)state;
    keel_aggregator *a;
    ASSERT_OK(keel_aggregator_create(&a, 3600000, 5000));
    char name[32];
    keel_err e = KEEL_OK;
    int i;
    for (i = 0; i < 5000 && e == KEEL_OK; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        e = keel_aggregator_record(a, name, 1.0, NULL, 0, 1);
    }
    assert_int_equal(KEEL_ETOOBIG, e);
    assert_int_equal(1025, i); /* 1024 distinct names fit, the 1025th does not */
    ASSERT_OK(keel_aggregator_record(a, "n0", 2.0, NULL, 0, 1)); /* existing name still fine */
    keel_aggregator_destroy(a);
}

typedef struct thr_arg {
    keel_aggregator *a;
    int id;
} thr_arg;

static void *recorder(void *p)
{
    thr_arg *t = p;
    keel_label l[] = {{"thread", t->id % 2 ? "odd" : "even"}};
    for (int i = 0; i < 1000; i++)
        if (keel_aggregator_record(t->a, "conc", 1.0, l, 1, 100) != KEEL_OK)
            return p;
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    keel_aggregator *a;
    ASSERT_OK(keel_aggregator_create(&a, 3600000, 100000));
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].a = a;
        args[i].id = i;
        assert_int_equal(0, pthread_create(&th[i], NULL, recorder, &args[i]));
    }
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_null(r);
    }
    keel_agg_stats st = stats_of(a, "conc", NULL, 0, 0, 100);
    assert_int_equal(4000, st.count);
    assert_true(st.sum == 4000.0);
    keel_label odd[] = {{"thread", "odd"}};
    st = stats_of(a, "conc", odd, 1, 0, 100);
    assert_int_equal(2000, st.count);
    keel_aggregator_destroy(a);
}

/* Failing allocator: every allocation failure surfaces as KEEL_ENOMEM with no leak. */

static void test_oom(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    keel_label l[] = {{"k", "v"}};
    for (int n = 0; n < 12; n++) {
        keel_test_failalloc_arm(n);
        keel_aggregator *a = NULL;
        keel_err e = keel_aggregator_create(&a, 1000, 100);
        if (e != KEEL_OK) {
            assert_int_equal(KEEL_ENOMEM, e);
            continue;
        }
        uint64_t ok = 0;
        for (int i = 0; i < 4; i++) {
            e = keel_aggregator_record(a, i % 2 ? "a" : "b", 1.0, l, 1, 5);
            if (e == KEEL_OK)
                ok++;
            else
                assert_int_equal(KEEL_ENOMEM, e);
        }
        keel_test_failalloc_arm(-1);
        keel_agg_stats sa = stats_of(a, "a", NULL, 0, 0, 5);
        keel_agg_stats sb = stats_of(a, "b", NULL, 0, 0, 5);
        assert_int_equal(ok, sa.count + sb.count);
        keel_aggregator_destroy(a);
    }
    keel_test_failalloc_arm(-1);
    ASSERT_OK(keel_set_allocator(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_stats),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_lookback),
        cmocka_unit_test(test_label_filter),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_cap_drops_oldest),
        cmocka_unit_test(test_growth_and_wrap),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_name_cap),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
