/* Tests for src/obs/system.c: the /proc/stat and /proc/meminfo parsers on fixed
 * sample text, the CPU/memory arithmetic, the gauges, and one real sample. */
#include "test.h"

#include <math.h>
#include <string.h>

#include "keel_int.h"

#include <keel/metrics.h>

#include "obs/obs_sys_int.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* A real-looking /proc/stat head (Linux 6.1). */
static const char STAT_SAMPLE[] = "cpu  4705 356 584 3699 23 23 0 0 0 0\n"
                                  "cpu0 1393 280 290 1899 10 11 0 0 0 0\n"
                                  "cpu1 3312 76 294 1800 13 12 0 0 0 0\n"
                                  "intr 114930548 113199788 3 0 5 263 0 0 0\n"
                                  "ctxt 1990473\n";

static const char MEMINFO_SAMPLE[] = "MemTotal:       16000000 kB\n"
                                     "MemFree:         1000000 kB\n"
                                     "MemAvailable:    4000000 kB\n"
                                     "Buffers:          500000 kB\n"
                                     "Cached:          2500000 kB\n"
                                     "SwapCached:            0 kB\n"
                                     "HugePages_Total:       0\n"
                                     "Hugepagesize:       2048 kB\n";

static void test_parse_stat(void **state)
{
    (void)state;
    keel__cpu_times t;
    ASSERT_OK(keel__sys_parse_stat(S(STAT_SAMPLE), &t));
    /* user+nice+system+idle+iowait+irq+softirq+steal = 4705+356+584+3699+23+23+0+0 */
    assert_int_equal(9390, t.total);
    assert_int_equal(9390 - 3699 - 23, t.busy);

    ASSERT_OK(keel__sys_parse_stat(S("cpu 10 20 30 40"), &t)); /* oldest kernels: 4 fields */
    assert_int_equal(100, t.total);
    assert_int_equal(60, t.busy);

    ASSERT_OK(keel__sys_parse_stat(S("cpu 10 20 30 40 5\r\n"), &t));
    assert_int_equal(105, t.total);
    assert_int_equal(60, t.busy);

    /* guest and guest_nice are not added again */
    ASSERT_OK(keel__sys_parse_stat(S("cpu 1 1 1 1 1 1 1 1 100 100"), &t));
    assert_int_equal(8, t.total);
    assert_int_equal(6, t.busy);

    /* the text need not be NUL-terminated: only len bytes are read */
    const char *cut = "cpu 1 2 3 4 999";
    ASSERT_OK(keel__sys_parse_stat(cut, 11, &t));
    assert_int_equal(10, t.total);

    ASSERT_OK(keel__sys_parse_stat(S("cpu 18446744073709551615 0 0 0"), &t));
    assert_int_equal(UINT64_MAX, t.total);
}

static void test_parse_stat_malformed(void **state)
{
    (void)state;
    keel__cpu_times t = {7, 7};
    static const char *const bad[] = {
        "",
        "cpu",
        "cpu ",
        "cpu 1 2 3",                                /* too few fields */
        "cpu0 1 2 3 4",                             /* per-core line first */
        "cpux 1 2 3 4",
        "intr 1 2 3 4",
        " cpu 1 2 3 4",
        "cpu 1 2 x 4",
        "cpu 1 2 3 4x",
        "cpu 1 -2 3 4",
        "cpu 1 2 3 4 5 6 7 8 9 10 11",              /* more than ten fields */
        "cpu 18446744073709551616 0 0 0",           /* overflows a field */
        "cpu 18446744073709551615 1 0 0",           /* overflows the sum */
        "cpu 99999999999999999999999999999 1 2 3",
        "\ncpu 1 2 3 4",
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        keel_err e = keel__sys_parse_stat(bad[i], strlen(bad[i]), &t);
        if (e != KEEL_EPARSE)
            fail_msg("case %zu \"%s\": %s", i, bad[i], keel_err_name(e));
    }
    assert_int_equal(7, t.total); /* untouched on failure */
    assert_int_equal(KEEL_EINVAL, keel__sys_parse_stat(NULL, 0, &t));
    assert_int_equal(KEEL_EINVAL, keel__sys_parse_stat("cpu 1 2 3 4", 11, NULL));
}

static void test_parse_meminfo(void **state)
{
    (void)state;
    keel__meminfo mi;
    ASSERT_OK(keel__sys_parse_meminfo(S(MEMINFO_SAMPLE), &mi));
    assert_int_equal(16000000, mi.total_kb);
    assert_int_equal(4000000, mi.available_kb);
    assert_true(keel__sys_mem_used_percent(&mi) == 75.0);

    /* Without MemAvailable: MemFree + Buffers + Cached = 1000000 + 500000 + 2500000 */
    ASSERT_OK(keel__sys_parse_meminfo(S("MemTotal: 16000000 kB\n"
                                        "MemFree: 1000000 kB\n"
                                        "Buffers: 500000 kB\n"
                                        "Cached: 2500000 kB\n"),
                                      &mi));
    assert_int_equal(4000000, mi.available_kb);
    assert_true(keel__sys_mem_used_percent(&mi) == 75.0);

    /* last line without newline, no unit, CRLF */
    ASSERT_OK(keel__sys_parse_meminfo(S("MemAvailable: 1\r\nMemTotal: 8"), &mi));
    assert_int_equal(8, mi.total_kb);
    assert_int_equal(1, mi.available_kb);
    assert_true(keel__sys_mem_used_percent(&mi) == 87.5);

    /* "Cached" must not match "SwapCached" and vice versa; unrelated garbage lines ignored */
    ASSERT_OK(keel__sys_parse_meminfo(S("garbage line\nSwapCached: zz\nMemTotal: 10 kB\n"
                                        "MemAvailable: 10 kB\n"),
                                      &mi));
    assert_true(keel__sys_mem_used_percent(&mi) == 0.0);
}

static void test_parse_meminfo_malformed(void **state)
{
    (void)state;
    keel__meminfo mi = {3, 3};
    static const char *const bad[] = {
        "",
        "MemAvailable: 10 kB\n",                           /* no MemTotal */
        "MemTotal: 0 kB\nMemAvailable: 0 kB\n",            /* zero total */
        "MemTotal: abc kB\nMemAvailable: 1 kB\n",
        "MemTotal: 100 kB junk\nMemAvailable: 1 kB\n",
        "MemTotal: 100 MB\nMemAvailable: 1 kB\n",
        "MemTotal:\nMemAvailable: 1 kB\n",
        "MemTotal: 100 kB\n",                              /* no availability at all */
        "MemTotal: 100 kB\nMemFree: 1 kB\n",               /* fallback incomplete */
        "MemTotal: 100 kB\nMemAvailable: 101 kB\n",        /* more available than total */
        "MemTotal: 99999999999999999999999 kB\nMemAvailable: 1 kB\n",
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        keel_err e = keel__sys_parse_meminfo(bad[i], strlen(bad[i]), &mi);
        if (e != KEEL_EPARSE)
            fail_msg("case %zu \"%s\": %s", i, bad[i], keel_err_name(e));
    }
    assert_int_equal(3, mi.total_kb);
    assert_int_equal(KEEL_EINVAL, keel__sys_parse_meminfo(NULL, 0, &mi));
}

static void test_cpu_percent(void **state)
{
    (void)state;
    keel__cpu_times a = {100, 1000}, b = {350, 2000};
    assert_true(keel__sys_cpu_percent(&a, &b) == 25.0);
    assert_true(keel__sys_cpu_percent(&a, &a) == 0.0); /* no time passed */
    assert_true(keel__sys_cpu_percent(&b, &a) == 0.0); /* counters went backwards */
    keel__cpu_times c = {100, 1000}, d = {1500, 1500};  /* busy grew faster than total */
    assert_true(keel__sys_cpu_percent(&c, &d) == 100.0);
    keel__cpu_times e = {100, 1000}, f = {100, 1100};
    assert_true(keel__sys_cpu_percent(&e, &f) == 0.0);
}

static keel_series *gauge_series(keel_metrics *m, const char *name, const char *type)
{
    static const char *const labels[] = {"type", NULL};
    keel_metric *f;
    keel_series *s;
    ASSERT_OK(keel_metrics_gauge(m, name,
                                 type ? "System memory usage %" : "System CPU usage %",
                                 type ? labels : NULL, &f));
    const char *vals[] = {type};
    ASSERT_OK(keel_metric_series(f, type ? vals : NULL, &s));
    return s;
}

static void test_gauges_from_samples(void **state)
{
    (void)state;
    keel_metrics *m;
    keel_system_metrics *sm;
    ASSERT_OK(keel_metrics_create(&m));
    ASSERT_OK(keel_system_metrics_create(&sm, m));
    keel_series *cpu = gauge_series(m, "system_cpu_usage_percentage", NULL);
    keel_series *used = gauge_series(m, "system_memory_usage_percentage", "used");
    keel_series *freev = gauge_series(m, "system_memory_usage_percentage", "free");

    /* total 1000, busy 200: the first sample only primes */
    ASSERT_OK(keel__system_metrics_apply(sm, S("cpu 100 0 100 700 100 0 0 0\n"),
                                         S(MEMINFO_SAMPLE)));
    assert_true(keel_series_value(cpu) == 0.0);
    assert_true(keel_series_value(used) == 75.0);
    assert_true(keel_series_value(freev) == 25.0);

    /* total 2000, busy 500: 100 * 300 / 1000 */
    ASSERT_OK(keel__system_metrics_apply(sm, S("cpu 300 0 200 1300 200 0 0 0\n"), NULL, 0));
    assert_true(keel_series_value(cpu) == 30.0);

    /* malformed text: KEEL_EPARSE, gauges keep their values */
    assert_int_equal(KEEL_EPARSE, keel__system_metrics_apply(sm, S("cpu 1 2\n"),
                                                             S("MemTotal: x\n")));
    assert_true(keel_series_value(cpu) == 30.0);
    assert_true(keel_series_value(used) == 75.0);

    /* one part bad, the other still applied */
    assert_int_equal(KEEL_EPARSE,
                     keel__system_metrics_apply(sm, S("cpu 400 0 200 1400 200 0 0 0\n"),
                                                S("MemTotal: 10 kB\n")));
    assert_true(keel_series_value(cpu) == 50.0); /* 100 busy of 200 */
    assert_true(keel_series_value(used) == 75.0);

    keel_buf out;
    keel_buf_init(&out, 1 << 16);
    ASSERT_OK(keel_metrics_expose(m, "system_", &out));
    assert_non_null(strstr(out.ptr, "# TYPE system_cpu_usage_percentage gauge\n"));
    assert_non_null(strstr(out.ptr, "system_memory_usage_percentage{type=\"used\"} 75"));
    assert_non_null(strstr(out.ptr, "system_memory_usage_percentage{type=\"free\"} 25"));
    keel_buf_cleanup(&out);

    assert_int_equal(KEEL_EINVAL, keel__system_metrics_apply(NULL, NULL, 0, NULL, 0));
    keel_system_metrics_destroy(sm);
    keel_metrics_destroy(m);
}

static void test_real_proc(void **state)
{
    (void)state;
    keel_metrics *m;
    keel_system_metrics *sm;
    ASSERT_OK(keel_metrics_create(&m));
    assert_int_equal(KEEL_EINVAL, keel_system_metrics_create(&sm, NULL));
    assert_int_equal(KEEL_EINVAL, keel_system_metrics_create(NULL, m));
    ASSERT_OK(keel_system_metrics_create(&sm, m));
    ASSERT_OK(keel_system_metrics_update(sm));
    ASSERT_OK(keel_system_metrics_update(sm));
    keel_series *cpu = gauge_series(m, "system_cpu_usage_percentage", NULL);
    keel_series *used = gauge_series(m, "system_memory_usage_percentage", "used");
    keel_series *freev = gauge_series(m, "system_memory_usage_percentage", "free");
    double c = keel_series_value(cpu), u = keel_series_value(used);
    assert_true(c >= 0.0 && c <= 100.0);
    assert_true(u > 0.0 && u < 100.0);
    assert_true(fabs(u + keel_series_value(freev) - 100.0) < 1e-9);
    assert_int_equal(KEEL_EINVAL, keel_system_metrics_update(NULL));
    keel_system_metrics_destroy(sm);
    keel_system_metrics_destroy(NULL);
    keel_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat),
        cmocka_unit_test(test_parse_stat_malformed),
        cmocka_unit_test(test_parse_meminfo),
        cmocka_unit_test(test_parse_meminfo_malformed),
        cmocka_unit_test(test_cpu_percent),
        cmocka_unit_test(test_gauges_from_samples),
        cmocka_unit_test(test_real_proc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
