/*
 * obs_int.h - private definitions shared by the metrics registry (registry.c), the text
 * exposition (expose.c) and the process collector (process.c).  Never installed.
 *
 * Data layout and concurrency
 * ---------------------------
 * A registry owns an append-only list of families; a family owns an append-only list of
 * series.  Nothing is removed before keel_metrics_destroy(), so both lists are published
 * with release stores and walked with acquire loads, without any lock: the exposition
 * never blocks a request thread.
 *
 * Registration (families, collectors) is serialised by the registry mutex.  Series lookup
 * goes through a chained hash table per family guarded by a pthread rwlock: the read lock
 * on the hit path, the write lock to insert (and to grow the table).  Series values are C11
 * atomics updated without any lock:
 *   - gauge:     bits  = the double's bit pattern; add() is a CAS loop.
 *   - counter:   ival  = integral increments (one fetch_add, the common "+1" case),
 *                bits  = the non-integral remainder (CAS loop); value = ival + bits.
 *   - histogram: counts[i] = observations in bucket i (non-cumulative, i == nbounds is the
 *                +Inf bucket), bits = the sum.  The observation count is the sum of the
 *                bucket counts, so an exposition always has le="+Inf" == _count.
 */
#ifndef KEEL_OBS_INT_H
#define KEEL_OBS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <keel/metrics.h>

/** Most histogram bounds accepted (excluding the implicit +Inf). */
#define KEEL__METRICS_MAX_BUCKETS 256
/** Size of a buffer that holds any value formatted by keel__metrics_format_double(). */
#define KEEL__METRICS_NUM_SIZE 40
/** Name of the counter every registry registers on itself. */
#define KEEL__METRICS_REFUSED_NAME "keel_metrics_series_refused_total"

struct keel_series {
    /* hot, written by updates */
    _Atomic uint64_t ival;
    _Atomic uint64_t bits;
    /* read-mostly */
    keel_metric_type type;
    uint32_t nbounds;      /* histograms: number of finite bounds */
    const double *bounds;  /* histograms: the family's bounds */
    keel_metric *family;
    keel_series *hnext;                 /* hash chain, under the family rwlock */
    _Atomic(keel_series *) onext;       /* registration order, lock-free readers */
    uint64_t hash;
    const char **values;                /* nlabels strings, same allocation */
    _Atomic uint64_t counts[];          /* histograms: nbounds + 1 */
};

struct keel_metric {
    keel_metrics *reg;
    _Atomic(keel_metric *) next; /* registration order */
    keel_metric_type type;
    char *name;
    char *help; /* may be NULL: no HELP line */
    size_t nlabels;
    char *labels[KEEL_METRICS_MAX_LABELS];
    double *bounds;
    size_t nbounds;

    keel_series *solo; /* the only series of a family without labels */

    pthread_rwlock_t lock;
    int lock_init;       /* lock was initialised (for cleanup after a failed create) */
    keel_series **table; /* tmask + 1 chains */
    size_t tmask;
    size_t nseries;
    _Atomic(keel_series *) first; /* registration order */
    keel_series *last;
};

typedef void (*keel__metrics_dtor_fn)(void *ud);

typedef struct keel__collector {
    keel_metrics_collect_fn fn;
    void *ud;
    keel__metrics_dtor_fn dtor;
    _Atomic(struct keel__collector *) next;
} keel__collector;

struct keel_metrics {
    pthread_mutex_t lock; /* registration of families and collectors */
    _Atomic(keel_metric *) first;
    keel_metric *last;
    _Atomic(keel__collector *) collectors;
    keel__collector *last_collector;
    keel_series *refused;   /* keel_metrics_series_refused_total */
    atomic_int process_registered; /* keel_metrics_add_process_collector() ran */
};

/* Register a collector whose ud the registry frees with dtor (may be NULL) when destroyed;
 * on error dtor is NOT called.  Returns KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM. */
keel_err keel__metrics_add_collector_ex(keel_metrics *m, keel_metrics_collect_fn fn, void *ud,
                                        keel__metrics_dtor_fn dtor);

/* Set a counter series to v: for collectors that mirror an external running total
 * (process_cpu_seconds_total).  Only meaningful when nobody calls keel_series_add() on it.
 * Works on gauges too (same as keel_series_set()). */
void keel__series_set_counter(keel_series *s, double v);

/* Format v so that strtod() gives v back: "NaN", "+Inf", "-Inf", integers below 2^53 without
 * exponent or decimals, others in the shortest %g form that round-trips (always with '.'
 * as the decimal point, whatever the locale).  Returns the length written to out. */
size_t keel__metrics_format_double(double v, char out[KEEL__METRICS_NUM_SIZE]);

/* 1 if s is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), 0 otherwise. */
int keel__metrics_valid_name(const char *s);
/* 1 if s is a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"). */
int keel__metrics_valid_label(const char *s);

/* Double <-> bit pattern, for the atomics. */
static inline uint64_t keel__dbits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    return u;
}
static inline double keel__bitsd(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

#endif /* KEEL_OBS_INT_H */
