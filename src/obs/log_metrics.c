/* log_metrics.c - publish the logger's counters (drops above all) as metrics.
 * Lives in obs because obs may depend on core's logger, never the reverse. */
#include "keel_int.h"

#include <pthread.h>

#include <keel/log.h>
#include <keel/metrics.h>

typedef struct log_collector {
    pthread_mutex_t mu;
    keel_series *written, *dropped, *filtered, *errors, *depth;
} log_collector;

static log_collector g_lc = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL, NULL, NULL};

/* Counters mirror monotonic totals kept by the logger: add the difference. */
static void mirror(keel_series *s, uint64_t total)
{
    double now = (double)total, cur = keel_series_value(s);
    if (now > cur)
        keel_series_add(s, now - cur);
}

static void collect(keel_metrics *m, void *ud)
{
    log_collector *lc = ud;
    KEEL_UNUSED(m);
    keel_log_stats st;
    keel_log_stats_get(&st);
    pthread_mutex_lock(&lc->mu);
    mirror(lc->written, st.written);
    mirror(lc->dropped, st.dropped);
    mirror(lc->filtered, st.filtered);
    mirror(lc->errors, st.write_errors);
    keel_series_set(lc->depth, (double)st.queued);
    pthread_mutex_unlock(&lc->mu);
}

static keel_err one(keel_metrics *m, int counter, const char *name, const char *help,
                    keel_series **out)
{
    keel_metric *f;
    keel_err e = counter ? keel_metrics_counter(m, name, help, NULL, &f)
                         : keel_metrics_gauge(m, name, help, NULL, &f);
    return e != KEEL_OK ? e : keel_metric_series(f, NULL, out);
}

keel_err keel_metrics_add_log_collector(keel_metrics *m)
{
    keel_err e;
    log_collector *lc = &g_lc; /* the logger is process-global, so is its collector */
    if ((e = one(m, 1, "keel_log_records_written_total", "Log records written to the sinks",
                 &lc->written)) ||
        (e = one(m, 1, "keel_log_records_dropped_total",
                 "Log records dropped because the queue was full", &lc->dropped)) ||
        (e = one(m, 1, "keel_log_records_filtered_total", "Log records dropped by the hook",
                 &lc->filtered)) ||
        (e = one(m, 1, "keel_log_write_errors_total", "Failed log writes, opens or rotations",
                 &lc->errors)) ||
        (e = one(m, 0, "keel_log_queue_depth", "Log records waiting for the writer thread",
                 &lc->depth)))
        return e;
    return keel_metrics_add_collector(m, collect, lc);
}
