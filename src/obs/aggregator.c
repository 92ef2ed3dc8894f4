/*
 * aggregator.c - in-memory metrics aggregator (seed 000 section 9B,
 * MetricsAggregator): record named values with labels, keep them for a
 * retention window, answer count/min/max/avg/sum/last over a lookback window
 * with a label filter.
 *
 * Storage is one FIFO ring of points in record order, shared by all names, so
 * the max_points cap bounds total memory and "drop the oldest" is O(1).  Names
 * are interned with a reference count (one per point), which lets
 * keel_aggregator_names() list exactly the names that still have points.  A
 * query scans the ring; the cap keeps that bounded.  Callers are expected to
 * pass non-decreasing now_ms values: retention pruning pops from the head, and
 * queries additionally skip any point older than the retention cutoff, so an
 * out-of-order timestamp is never reported, only kept a little longer.
 */
#include "keel_int.h"

#include <keel/metrics.h>

#include <math.h>
#include <pthread.h>

/* Cap on distinct names held at once; past it, record() gives KEEL_ETOOBIG
 * (the same cardinality idea as KEEL_METRICS_MAX_SERIES). */
#define AGG_MAX_NAMES 1024
/* Initial ring capacity; grows by doubling up to max_points. */
#define AGG_INITIAL_CAP 64

typedef struct agg_name {
    char *name;
    size_t refs; /* points that reference this name */
} agg_name;

typedef struct agg_point {
    agg_name *name;
    double value;
    uint64_t ts;
    size_t nlabels;
    char *labels; /* nlabels pairs "name\0value\0", NULL when nlabels is 0 */
} agg_point;

struct keel_aggregator {
    pthread_mutex_t mu;
    uint64_t retention_ms;
    size_t max_points;
    agg_point *ring;
    size_t cap, head, count;
    agg_name **names; /* insertion order */
    size_t nnames, names_cap;
};

keel_err keel_aggregator_create(keel_aggregator **out, uint64_t retention_ms, size_t max_points)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    if (retention_ms == 0 || max_points == 0)
        return KEEL_EINVAL;
    keel_aggregator *a = keel__new(keel_aggregator);
    if (a == NULL)
        return KEEL_ENOMEM;
    if (pthread_mutex_init(&a->mu, NULL) != 0) {
        keel_free(a);
        return KEEL_ENOMEM;
    }
    a->retention_ms = retention_ms;
    a->max_points = max_points;
    *out = a;
    return KEEL_OK;
}

/* ------------------------------------------------------------- names -- */

static agg_name *name_find(const keel_aggregator *a, const char *name)
{
    for (size_t i = 0; i < a->nnames; i++)
        if (strcmp(a->names[i]->name, name) == 0)
            return a->names[i];
    return NULL;
}

/* Find or add name (with refs 0).  KEEL_ETOOBIG past AGG_MAX_NAMES. */
static keel_err name_get(keel_aggregator *a, const char *name, agg_name **out)
{
    agg_name *n = name_find(a, name);
    if (n != NULL) {
        *out = n;
        return KEEL_OK;
    }
    if (a->nnames >= AGG_MAX_NAMES)
        return KEEL_ETOOBIG;
    if (a->nnames == a->names_cap) {
        size_t nc = a->names_cap ? a->names_cap * 2 : 16;
        agg_name **nv = keel_realloc(a->names, nc * sizeof(*nv));
        if (nv == NULL)
            return KEEL_ENOMEM;
        a->names = nv;
        a->names_cap = nc;
    }
    n = keel__new(agg_name);
    if (n == NULL)
        return KEEL_ENOMEM;
    n->name = keel_strdup(name);
    if (n->name == NULL) {
        keel_free(n);
        return KEEL_ENOMEM;
    }
    a->names[a->nnames++] = n;
    *out = n;
    return KEEL_OK;
}

/* Remove n from the table if no point references it any more. */
static void name_drop_if_unused(keel_aggregator *a, agg_name *n)
{
    if (n->refs > 0)
        return;
    for (size_t i = 0; i < a->nnames; i++) {
        if (a->names[i] == n) {
            memmove(&a->names[i], &a->names[i + 1], (a->nnames - i - 1) * sizeof(a->names[0]));
            a->nnames--;
            break;
        }
    }
    keel_free(n->name);
    keel_free(n);
}

/* -------------------------------------------------------------- ring -- */

static agg_point *ring_at(const keel_aggregator *a, size_t i)
{
    return &a->ring[(a->head + i) % a->cap];
}

static void ring_pop(keel_aggregator *a)
{
    agg_point *p = ring_at(a, 0);
    keel_free(p->labels);
    p->name->refs--;
    name_drop_if_unused(a, p->name);
    memset(p, 0, sizeof(*p));
    a->head = (a->head + 1) % a->cap;
    a->count--;
}

/* Make room for one more point without exceeding max_points. */
static keel_err ring_reserve(keel_aggregator *a)
{
    if (a->count < a->cap)
        return KEEL_OK;
    if (a->cap >= a->max_points)
        return KEEL_OK; /* full at the cap: the caller pops the oldest */
    size_t nc = a->cap ? a->cap * 2 : AGG_INITIAL_CAP;
    if (nc > a->max_points || nc < a->cap)
        nc = a->max_points;
    if (nc > SIZE_MAX / sizeof(agg_point))
        return KEEL_ENOMEM;
    agg_point *nr = keel_calloc(nc, sizeof(*nr));
    if (nr == NULL)
        return KEEL_ENOMEM;
    for (size_t i = 0; i < a->count; i++)
        nr[i] = *ring_at(a, i);
    keel_free(a->ring);
    a->ring = nr;
    a->cap = nc;
    a->head = 0;
    return KEEL_OK;
}

static uint64_t cutoff_before(uint64_t now_ms, uint64_t window_ms)
{
    return now_ms > window_ms ? now_ms - window_ms : 0;
}

/* Drop points older than the retention window from the head. */
static void prune(keel_aggregator *a, uint64_t now_ms)
{
    uint64_t cutoff = cutoff_before(now_ms, a->retention_ms);
    while (a->count > 0 && ring_at(a, 0)->ts < cutoff)
        ring_pop(a);
}

/* ------------------------------------------------------------ labels -- */

static keel_err check_labels(const keel_label *labels, size_t n)
{
    if (n == 0)
        return KEEL_OK;
    if (labels == NULL || n > KEEL_METRICS_MAX_LABELS)
        return KEEL_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (labels[i].name == NULL || labels[i].name[0] == '\0' || labels[i].value == NULL)
            return KEEL_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i].name, labels[j].name) == 0)
                return KEEL_EINVAL; /* a label set is a map: one value per name */
    }
    return KEEL_OK;
}

/* Pack labels into one allocation of "name\0value\0" pairs. */
static keel_err pack_labels(const keel_label *labels, size_t n, char **out)
{
    *out = NULL;
    if (n == 0)
        return KEEL_OK;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(labels[i].name) + strlen(labels[i].value) + 2;
    char *blob = keel_malloc(total);
    if (blob == NULL)
        return KEEL_ENOMEM;
    char *w = blob;
    for (size_t i = 0; i < n; i++) {
        size_t ln = strlen(labels[i].name) + 1, lv = strlen(labels[i].value) + 1;
        memcpy(w, labels[i].name, ln);
        w += ln;
        memcpy(w, labels[i].value, lv);
        w += lv;
    }
    *out = blob;
    return KEEL_OK;
}

/* 1 if p carries every filter pair (subset match, as the seed's labels.get(k) == v). */
static bool labels_match(const agg_point *p, const keel_label *filter, size_t nfilter)
{
    for (size_t f = 0; f < nfilter; f++) {
        bool found = false;
        const char *r = p->labels;
        for (size_t i = 0; i < p->nlabels && !found; i++) {
            const char *ln = r;
            const char *lv = ln + strlen(ln) + 1;
            r = lv + strlen(lv) + 1;
            found = strcmp(ln, filter[f].name) == 0 && strcmp(lv, filter[f].value) == 0;
        }
        if (!found)
            return false;
    }
    return true;
}

/* --------------------------------------------------------------- API -- */

keel_err keel_aggregator_record(keel_aggregator *a, const char *name, double value,
                                const keel_label *labels, size_t nlabels, uint64_t now_ms)
{
    if (a == NULL || name == NULL || name[0] == '\0' || !isfinite(value))
        return KEEL_EINVAL;
    keel_err e = check_labels(labels, nlabels);
    if (e)
        return e;
    char *blob;
    if ((e = pack_labels(labels, nlabels, &blob)) != KEEL_OK)
        return e;

    pthread_mutex_lock(&a->mu);
    prune(a, now_ms);
    agg_name *n;
    e = name_get(a, name, &n);
    if (e == KEEL_OK) {
        n->refs++; /* pin: ring_pop below must not free the name we are about to use */
        e = ring_reserve(a);
        if (e == KEEL_OK) {
            if (a->count == a->max_points)
                ring_pop(a);
            a->count++;
            agg_point *p = ring_at(a, a->count - 1);
            p->name = n;
            p->value = value;
            p->ts = now_ms;
            p->nlabels = nlabels;
            p->labels = blob;
            blob = NULL;
        } else {
            n->refs--;
            name_drop_if_unused(a, n);
        }
    }
    pthread_mutex_unlock(&a->mu);
    keel_free(blob);
    return e;
}

keel_err keel_aggregator_stats(keel_aggregator *a, const char *name, const keel_label *filter,
                               size_t nfilter, uint64_t lookback_ms, uint64_t now_ms,
                               keel_agg_stats *out)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (a == NULL || name == NULL || out == NULL)
        return KEEL_EINVAL;
    if (nfilter > 0 && filter == NULL)
        return KEEL_EINVAL;
    for (size_t i = 0; i < nfilter; i++)
        if (filter[i].name == NULL || filter[i].value == NULL)
            return KEEL_EINVAL;

    pthread_mutex_lock(&a->mu);
    prune(a, now_ms);
    const agg_name *n = name_find(a, name);
    uint64_t cutoff = cutoff_before(now_ms, a->retention_ms);
    if (lookback_ms > 0)
        cutoff = KEEL_MAX(cutoff, cutoff_before(now_ms, lookback_ms));
    for (size_t i = 0; n != NULL && i < a->count; i++) {
        const agg_point *p = ring_at(a, i);
        if (p->name != n || p->ts < cutoff || !labels_match(p, filter, nfilter))
            continue;
        if (out->count == 0 || p->value < out->min)
            out->min = p->value;
        if (out->count == 0 || p->value > out->max)
            out->max = p->value;
        out->sum += p->value;
        out->last = p->value;
        out->count++;
    }
    pthread_mutex_unlock(&a->mu);
    if (out->count > 0)
        out->avg = out->sum / (double)out->count;
    return KEEL_OK;
}

keel_err keel_aggregator_names(keel_aggregator *a, keel_buf *out)
{
    if (a == NULL || out == NULL)
        return KEEL_EINVAL;
    keel_err e = KEEL_OK;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->nnames && e == KEEL_OK; i++) {
        e = keel_buf_append_str(out, a->names[i]->name);
        if (e == KEEL_OK)
            e = keel_buf_append_char(out, '\n');
    }
    pthread_mutex_unlock(&a->mu);
    return e;
}

void keel_aggregator_destroy(keel_aggregator *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->count; i++)
        keel_free(ring_at(a, i)->labels);
    for (size_t i = 0; i < a->nnames; i++) {
        keel_free(a->names[i]->name);
        keel_free(a->names[i]);
    }
    keel_free(a->names);
    keel_free(a->ring);
    pthread_mutex_destroy(&a->mu);
    keel_free(a);
}
