/*
 * keel/metrics.h - Prometheus metrics registry and text exposition (format 0.0.4).
 *
 * Module contract: a registry holds metric families (counter, gauge,
 * histogram), each with a fixed list of label names and any number of series
 * (one per label-value set) up to a cardinality cap.  Registering families is
 * done at startup; updating series is the hot path and is safe from any
 * thread: values are C11 atomics and the series lookup takes only a read lock.
 * A keel_series pointer stays valid until the registry is destroyed, so hot
 * code may look a series up once and keep it.
 */
#ifndef KEEL_METRICS_H
#define KEEL_METRICS_H

#include <keel/common.h>
#include <keel/core.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/** Default cap on series per family; past it, new label sets are refused. */
#define KEEL_METRICS_MAX_SERIES 10000
/** Most label names a family may have. */
#define KEEL_METRICS_MAX_LABELS 8

typedef struct keel_metrics keel_metrics; /* registry */
typedef struct keel_metric keel_metric;   /* family */
typedef struct keel_series keel_series;   /* one label-value set of a family */

typedef enum keel_metric_type {
    KEEL_METRIC_COUNTER = 1,
    KEEL_METRIC_GAUGE = 2,
    KEEL_METRIC_HISTOGRAM = 3
} keel_metric_type;

/** Create an empty registry.  Ownership: caller destroys it. */
KEEL_API KEEL_NODISCARD keel_err keel_metrics_create(keel_metrics **out);
/** Free the registry, its families and series.  NULL is a no-op. */
KEEL_API void keel_metrics_destroy(keel_metrics *m);

/** Register (or find) a counter.  labels: NULL-terminated label names, or NULL for none.
 *  Registering the same name again with the same type and labels returns the same family;
 *  a different type or label list gives KEEL_EEXIST.  Invalid metric or label names
 *  (see the exposition format) give KEEL_EINVAL.  *out is borrowed from the registry. */
KEEL_API KEEL_NODISCARD keel_err keel_metrics_counter(keel_metrics *m, const char *name,
                                                      const char *help,
                                                      const char *const *labels,
                                                      keel_metric **out);
KEEL_API KEEL_NODISCARD keel_err keel_metrics_gauge(keel_metrics *m, const char *name,
                                                    const char *help, const char *const *labels,
                                                    keel_metric **out);
/** Histogram with the given strictly increasing upper bounds (+Inf is implicit); buckets NULL
 *  selects KEEL_METRICS_DEFAULT_BUCKETS (0.005 .. 10 seconds, the Prometheus defaults). */
KEEL_API KEEL_NODISCARD keel_err keel_metrics_histogram(keel_metrics *m, const char *name,
                                                        const char *help,
                                                        const char *const *labels,
                                                        const double *buckets, size_t nbuckets,
                                                        keel_metric **out);

/** Get or create the series for the label values (same count as the family's label names;
 *  NULL when the family has none).  Values are copied.
 *  values: one string per label name, in the family's order (a trailing NULL is allowed, a
 *  NULL among the first n gives KEEL_EINVAL).  The hit path takes a read lock and does not
 *  allocate.  Refusals at the cap are counted in keel_metrics_series_refused_total.
 *  @return KEEL_OK, KEEL_EINVAL (wrong count), KEEL_ETOOBIG (cardinality cap, or a value
 *  longer than 1024 bytes), KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: *out is borrowed, valid until the registry is
 *  destroyed. */
KEEL_API KEEL_NODISCARD keel_err keel_metric_series(keel_metric *f, const char *const *values,
                                                    keel_series **out);

/** Counter/gauge: add v (counters ignore negative v and NaN; histograms ignore the call).
 *  Thread-safe, lock-free. */
KEEL_API void keel_series_add(keel_series *s, double v);
/** Gauge: set to v (counters and histograms ignore the call).  Thread-safe, lock-free. */
KEEL_API void keel_series_set(keel_series *s, double v);
/** Histogram: record one observation (bounds are inclusive: v goes in the first bucket
 *  with bound >= v; NaN goes to +Inf).  Other types ignore the call.  Thread-safe, lock-free. */
KEEL_API void keel_series_observe(keel_series *s, double v);
/** Current value of a counter/gauge series, or the observation count of a histogram. */
KEEL_API double keel_series_value(const keel_series *s);

/** Shorthands: look the series up and update it.  Errors are those of keel_metric_series(),
 *  plus KEEL_EINVAL for a family of the wrong type (add: counter/gauge, set: gauge,
 *  observe: histogram). */
KEEL_API keel_err keel_metric_add(keel_metric *f, const char *const *values, double v);
KEEL_API keel_err keel_metric_set(keel_metric *f, const char *const *values, double v);
KEEL_API keel_err keel_metric_observe(keel_metric *f, const char *const *values, double v);

/** A function run at the start of every exposition to refresh values (process_* metrics,
 *  queue depths, log drop counts).  Runs under no registry lock; may update series.
 *  Concurrent expositions run collectors concurrently.  ud is borrowed (must outlive m).
 *  @return KEEL_OK, KEEL_EINVAL (NULL m or fn), KEEL_ENOMEM. */
typedef void (*keel_metrics_collect_fn)(keel_metrics *m, void *ud);
KEEL_API KEEL_NODISCARD keel_err keel_metrics_add_collector(keel_metrics *m,
                                                            keel_metrics_collect_fn fn, void *ud);

/** Write every family whose name starts with prefix (NULL or "" for all) in text format 0.0.4
 *  (HELP and TYPE first, escaped help and label values, cumulative buckets with le="+Inf",
 *  _sum and _count, trailing newline).  Families appear in registration order.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ETOOBIG if out's cap is reached, KEEL_ENOMEM; on error
 *  out is restored to its previous length.
 *  Thread-safety: any thread, concurrently with updates; takes no lock while writing. */
KEEL_API KEEL_NODISCARD keel_err keel_metrics_expose(keel_metrics *m, const char *prefix,
                                                     keel_buf *out);

/** Register the standard process_* metrics (process_cpu_seconds_total,
 *  process_resident_memory_bytes, process_virtual_memory_bytes, process_start_time_seconds,
 *  process_open_fds, process_max_fds, process_threads) read from /proc at exposition time.
 *  A second call is a no-op.  @return KEEL_OK, KEEL_EINVAL, KEEL_EEXIST (a name is taken by
 *  a different family), KEEL_ENOMEM. */
KEEL_API KEEL_NODISCARD keel_err keel_metrics_add_process_collector(keel_metrics *m);

/** Publish the logger's counters: keel_log_records_written_total, _dropped_total,
 *  _filtered_total, keel_log_write_errors_total and the gauge keel_log_queue_depth. */
KEEL_API KEEL_NODISCARD keel_err keel_metrics_add_log_collector(keel_metrics *m);

/* ------------------------------------------------------- system metrics -- */

/** The seed's host gauges: system_cpu_usage_percentage and
 *  system_memory_usage_percentage{type="used"|"free"}, sampled from /proc/stat and
 *  /proc/meminfo.  CPU % is computed between two successive updates. */
typedef struct keel_system_metrics keel_system_metrics;
KEEL_API KEEL_NODISCARD keel_err keel_system_metrics_create(keel_system_metrics **out,
                                                            keel_metrics *m);
/** Take one sample and update the gauges (call every 5 s from a background task). */
KEEL_API KEEL_NODISCARD keel_err keel_system_metrics_update(keel_system_metrics *s);
KEEL_API void keel_system_metrics_destroy(keel_system_metrics *s);

/* ----------------------------------------------------------- aggregator -- */

/** In-memory metrics aggregator (seed 000 section 9B): record named values with labels,
 *  keep them for a retention window, and answer count/min/max/avg/sum/last over a lookback
 *  window with an optional label filter.  Thread-safe (one mutex). */
typedef struct keel_aggregator keel_aggregator;
typedef struct keel_label {
    const char *name;
    const char *value;
} keel_label;
typedef struct keel_agg_stats {
    uint64_t count;
    double min, max, avg, sum, last;
} keel_agg_stats;
/** retention_ms: points older than this are discarded; max_points caps memory (oldest go). */
KEEL_API KEEL_NODISCARD keel_err keel_aggregator_create(keel_aggregator **out,
                                                        uint64_t retention_ms, size_t max_points);
/** Record value for name at now_ms (wall or monotonic, but be consistent) with labels. */
KEEL_API KEEL_NODISCARD keel_err keel_aggregator_record(keel_aggregator *a, const char *name,
                                                        double value, const keel_label *labels,
                                                        size_t nlabels, uint64_t now_ms);
/** Statistics of name's points with timestamp >= now_ms - lookback_ms (lookback 0 = all
 *  retained) whose labels include every filter pair.  count 0 (and zeros) when none match. */
KEEL_API KEEL_NODISCARD keel_err keel_aggregator_stats(keel_aggregator *a, const char *name,
                                                       const keel_label *filter, size_t nfilter,
                                                       uint64_t lookback_ms, uint64_t now_ms,
                                                       keel_agg_stats *out);
/** Names currently held, for listing (appended to out as "name\n"). */
KEEL_API KEEL_NODISCARD keel_err keel_aggregator_names(keel_aggregator *a, keel_buf *out);
KEEL_API void keel_aggregator_destroy(keel_aggregator *a);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_METRICS_H */
