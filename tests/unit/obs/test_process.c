/* Tests for src/obs/process.c: /proc parsing and the process_* metrics.  The source is
 * included so that its static parsers can be tested directly (style R17). */
/* process.c first: it includes keel_int.h, which defines _GNU_SOURCE. */
#include "obs/process.c"

#include "test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void test_parse_stat(void **state)
{
    (void)state;
    /* The command name may contain spaces and parentheses; field n holds n * 10. */
    char line[1024];
    size_t o = (size_t)snprintf(line, sizeof(line), "4242 (we (ird) ) name) S");
    for (int field = 4; field <= 52; field++)
        o += (size_t)snprintf(line + o, sizeof(line) - o, " %d", field * 10);
    snprintf(line + o, sizeof(line) - o, "\n");
    proc_stat st;
    assert_int_equal(0, parse_stat(line, &st));
    assert_int_equal(140, st.utime);
    assert_int_equal(150, st.stime);
    assert_int_equal(200, st.num_threads);
    assert_int_equal(220, st.starttime);
    assert_int_equal(230, st.vsize);
    assert_int_equal(240, st.rss);

    assert_int_equal(-1, parse_stat("4242 no parenthesis S 1 2 3", &st));
    assert_int_equal(-1, parse_stat("4242 (x) S 1 2 3 4 5 6 7 8 9 10 11", &st)); /* short */
    assert_int_equal(-1, parse_stat("4242 (x) S 1 2 3 4 5 6 7 8 9 10 x11 12 13 14 15 16 17 18 "
                                    "19 20 21 22 23",
                                    &st));
    /* Exactly up to field 24 is enough. */
    assert_int_equal(0, parse_stat("1 (x) S 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 "
                                   "23 24",
                                   &st));
    assert_int_equal(24, st.rss);
    assert_int_equal(14, st.utime);

    /* The live file parses. */
    assert_int_equal(0, read_self_stat(&st));
    assert_true(st.num_threads >= 1);
    assert_true(st.vsize > 0);
    assert_true(st.rss > 0);
}

static void test_btime_and_fds(void **state)
{
    (void)state;
    uint64_t bt = 0;
    assert_int_equal(0, read_btime(&bt));
    assert_true(bt > 1000000000u);           /* after 2001 */
    assert_true(bt <= (uint64_t)time(NULL)); /* booted in the past */

    long base = count_open_fds();
    assert_true(base >= 1);
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    assert_int_equal(base + 5, count_open_fds());
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    assert_int_equal(base, count_open_fds());
}

/* Value of the unlabelled sample `name` in an exposition. */
static double sample(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(text, key);
    if (p == NULL) {
        print_error("no sample %s in:\n%s\n", name, text);
        fail();
    }
    return strtod(p + strlen(key), NULL);
}

static char *expose_process(keel_metrics *m)
{
    keel_buf out;
    keel_buf_init(&out, 1 << 16);
    ASSERT_OK(keel_metrics_expose(m, "process_", &out));
    char *s = keel_buf_take(&out, NULL);
    assert_non_null(s);
    return s;
}

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_release;

static void *parked(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_mu);
    while (!g_release)
        pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

static void test_process_metrics(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    ASSERT_OK(keel_metrics_add_process_collector(m));
    ASSERT_OK(keel_metrics_add_process_collector(m)); /* idempotent */
    size_t ncollectors = 0;
    for (keel__collector *c = atomic_load(&m->collectors); c != NULL; c = atomic_load(&c->next))
        ncollectors++;
    assert_int_equal(1, ncollectors);

    char *s = expose_process(m);
    /* Every family is there, with HELP and the right TYPE, in this order. */
    const char *order[] = {
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_virtual_memory_bytes gauge\n",
        "# TYPE process_start_time_seconds gauge\n",
        "# TYPE process_open_fds gauge\n",
        "# TYPE process_max_fds gauge\n",
        "# TYPE process_threads gauge\n",
    };
    const char *prev = s;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(order); i++) {
        const char *p = strstr(s, order[i]);
        assert_non_null(p);
        assert_true(p >= prev);
        prev = p;
    }
    assert_non_null(strstr(s, "# HELP process_open_fds Number of open file descriptors.\n"));

    double cpu = sample(s, "process_cpu_seconds_total");
    double rss = sample(s, "process_resident_memory_bytes");
    double vms = sample(s, "process_virtual_memory_bytes");
    double start = sample(s, "process_start_time_seconds");
    double fds = sample(s, "process_open_fds");
    double max_fds = sample(s, "process_max_fds");
    double threads = sample(s, "process_threads");
    double now = (double)time(NULL);
    assert_true(cpu >= 0.0 && cpu < 3600.0);
    assert_true(rss > 0.0);
    assert_true(vms >= rss);
    assert_true(start > now - 3600.0 && start <= now + 60.0);
    assert_true(fds >= 3.0);
    assert_true(max_fds >= fds);
    assert_true(threads >= 1.0);
    keel_free(s);

    /* Values follow the process: two more descriptors, one more thread. */
    int a = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int b = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(a >= 0 && b >= 0);
    pthread_t t;
    g_release = 0;
    assert_int_equal(0, pthread_create(&t, NULL, parked, NULL));
    s = expose_process(m);
    assert_true(sample(s, "process_open_fds") == fds + 2.0);
    /* (>= because a sanitizer runtime may start a helper thread with the first one.) */
    double with_thread = sample(s, "process_threads");
    assert_true(with_thread >= threads + 1.0);
    assert_true(sample(s, "process_start_time_seconds") == start); /* constant */
    assert_true(sample(s, "process_cpu_seconds_total") >= cpu);
    keel_free(s);
    pthread_mutex_lock(&g_mu);
    g_release = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    assert_int_equal(0, pthread_join(t, NULL));
    close(a);
    close(b);
    s = expose_process(m);
    assert_true(sample(s, "process_open_fds") == fds);
    assert_true(sample(s, "process_threads") == with_thread - 1.0);
    keel_free(s);
    keel_metrics_destroy(m);
}

static void test_name_conflict(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_metric *f;
    ASSERT_OK(keel_metrics_counter(m, "process_open_fds", "Not a gauge.", NULL, &f));
    assert_int_equal(KEEL_EEXIST, keel_metrics_add_process_collector(m));
    assert_int_equal(KEEL_EEXIST, keel_metrics_add_process_collector(m)); /* not marked done */
    assert_null(atomic_load(&m->collectors));
    assert_int_equal(KEEL_EINVAL, keel_metrics_add_process_collector(NULL));
    keel_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat),
        cmocka_unit_test(test_btime_and_fds),
        cmocka_unit_test(test_process_metrics),
        cmocka_unit_test(test_name_conflict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
