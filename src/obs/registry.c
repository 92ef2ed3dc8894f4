/* registry.c - the metrics registry: families, series lookup and lock-free value updates.
 *
 * See obs_int.h for the data layout and the locking rules.  In short: registration takes the
 * registry mutex, a series lookup takes the family's read lock (write lock to insert), and
 * value updates are single atomic operations (or a short CAS loop for doubles).  The hit path
 * of keel_metric_series() does not allocate.
 */
#include "keel_int.h"

#include <keel/metrics.h>

#include <math.h>

#include "obs_int.h"

/* The Prometheus client default buckets, in seconds. */
static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1.0,  2.5,   5.0,  10.0};

/** Longest label value accepted (bytes); longer ones give KEEL_ETOOBIG. */
#define LABEL_VALUE_MAX 1024
/** Initial and largest hash table sizes (chains) of a labelled family. */
#define TABLE_INITIAL 16u
#define TABLE_MAX 16384u

/* ----------------------------------------------------------- validation -- */

static int is_alpha_(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

int keel__metrics_valid_name(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(is_alpha_(c) || c == ':' || (i > 0 && is_digit(c))))
            return 0;
    }
    return 1;
}

int keel__metrics_valid_label(const char *s)
{
    if (s == NULL || s[0] == '\0' || (s[0] == '_' && s[1] == '_'))
        return 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(is_alpha_(c) || (i > 0 && is_digit(c))))
            return 0;
    }
    return 1;
}

/* Count and check a NULL-terminated label-name list.  Returns the count or -1. */
static int check_labels(const char *const *labels, keel_metric_type type)
{
    if (labels == NULL)
        return 0;
    int n = 0;
    for (; labels[n] != NULL; n++) {
        if (n >= KEEL_METRICS_MAX_LABELS || !keel__metrics_valid_label(labels[n]))
            return -1;
        if (type == KEEL_METRIC_HISTOGRAM && strcmp(labels[n], "le") == 0)
            return -1;
        for (int j = 0; j < n; j++)
            if (strcmp(labels[j], labels[n]) == 0)
                return -1;
    }
    return n;
}

static int check_buckets(const double *b, size_t n)
{
    if (n > KEEL__METRICS_MAX_BUCKETS)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(b[i]))
            return 0;
        if (i > 0 && !(b[i] > b[i - 1]))
            return 0;
    }
    return 1;
}

/* --------------------------------------------------------------- series -- */

/* FNV-1a over the values, each followed by a separator byte.  Collisions are harmless:
 * lookups compare the values exactly. */
static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = KEEL__FNV1A_INIT;
    for (size_t i = 0; i < n; i++)
        h = keel__fnv1a(keel__fnv1a(h, values[i], strlen(values[i])), "\xff", 1);
    return h;
}

/* Allocate a series with copies of the values; one block holds everything. */
static keel_series *series_new(keel_metric *f, uint64_t hash, const char *const *values)
{
    size_t ncounts = f->type == KEEL_METRIC_HISTOGRAM ? f->nbounds + 1 : 0;
    size_t size = sizeof(keel_series) + ncounts * sizeof(_Atomic uint64_t);
    size = (size + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
    size_t voff = size;
    size += f->nlabels * sizeof(char *);
    size_t lens[KEEL_METRICS_MAX_LABELS];
    for (size_t i = 0; i < f->nlabels; i++) {
        lens[i] = strlen(values[i]);
        size += lens[i] + 1;
    }
    unsigned char *block = keel_calloc(1, size);
    if (block == NULL)
        return NULL;
    keel_series *s = (keel_series *)(void *)block;
    atomic_init(&s->ival, 0);
    atomic_init(&s->bits, keel__dbits(0.0));
    s->type = f->type;
    s->nbounds = (uint32_t)f->nbounds;
    s->bounds = f->bounds;
    s->family = f;
    s->hnext = NULL;
    atomic_init(&s->onext, NULL);
    s->hash = hash;
    for (size_t i = 0; i < ncounts; i++)
        atomic_init(&s->counts[i], 0);
    const char **vp = (const char **)(void *)(block + voff);
    char *str = (char *)(block + voff + f->nlabels * sizeof(char *));
    for (size_t i = 0; i < f->nlabels; i++) {
        memcpy(str, values[i], lens[i] + 1);
        vp[i] = str;
        str += lens[i] + 1;
    }
    s->values = vp;
    return s;
}

/* Append s to the family's registration-order list (caller holds the write lock, or is the
 * only thread that can see f). */
static void series_publish(keel_metric *f, keel_series *s)
{
    if (f->last != NULL)
        atomic_store_explicit(&f->last->onext, s, memory_order_release);
    else
        atomic_store_explicit(&f->first, s, memory_order_release);
    f->last = s;
}

static keel_series *table_find(const keel_metric *f, uint64_t h, const char *const *values)
{
    for (keel_series *s = f->table[h & f->tmask]; s != NULL; s = s->hnext) {
        if (s->hash != h)
            continue;
        size_t i = 0;
        while (i < f->nlabels && strcmp(s->values[i], values[i]) == 0)
            i++;
        if (i == f->nlabels)
            return s;
    }
    return NULL;
}

/* Double the table when the load factor passes 1.  Failure to grow is not an error: the
 * chains just get longer.  Caller holds the write lock. */
static void table_maybe_grow(keel_metric *f)
{
    size_t n = f->tmask + 1;
    if (f->nseries < n || n >= TABLE_MAX)
        return;
    size_t nn = n * 2;
    keel_series **t = keel_calloc(nn, sizeof(*t));
    if (t == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        keel_series *s = f->table[i];
        while (s != NULL) {
            keel_series *next = s->hnext;
            size_t b = (size_t)(s->hash & (nn - 1));
            s->hnext = t[b];
            t[b] = s;
            s = next;
        }
    }
    keel_free(f->table);
    f->table = t;
    f->tmask = nn - 1;
}

static keel_err check_values(const keel_metric *f, const char *const *values)
{
    if (f->nlabels == 0)
        return (values == NULL || values[0] == NULL) ? KEEL_OK : KEEL_EINVAL;
    if (values == NULL)
        return KEEL_EINVAL;
    for (size_t i = 0; i < f->nlabels; i++)
        if (values[i] == NULL)
            return KEEL_EINVAL;
    return KEEL_OK;
}

keel_err keel_metric_series(keel_metric *f, const char *const *values, keel_series **out)
{
    if (f == NULL || out == NULL)
        return KEEL_EINVAL;
    keel_err e = check_values(f, values);
    if (e != KEEL_OK)
        return e;
    if (f->nlabels == 0) {
        *out = f->solo;
        return KEEL_OK;
    }
    uint64_t h = hash_values(values, f->nlabels);

    /* Hit path: read lock only, no allocation. */
    if (pthread_rwlock_rdlock(&f->lock) != 0)
        return KEEL_EAGAIN;
    keel_series *s = table_find(f, h, values);
    pthread_rwlock_unlock(&f->lock);
    if (s != NULL) {
        *out = s;
        return KEEL_OK;
    }

    for (size_t i = 0; i < f->nlabels; i++)
        if (strlen(values[i]) > LABEL_VALUE_MAX)
            return KEEL_ETOOBIG;
    if (pthread_rwlock_wrlock(&f->lock) != 0)
        return KEEL_EAGAIN;
    s = table_find(f, h, values); /* another thread may have inserted it meanwhile */
    if (s == NULL) {
        if (f->nseries >= KEEL_METRICS_MAX_SERIES) {
            pthread_rwlock_unlock(&f->lock);
            if (f->reg->refused != NULL)
                keel_series_add(f->reg->refused, 1.0);
            return KEEL_ETOOBIG;
        }
        s = series_new(f, h, values);
        if (s == NULL) {
            pthread_rwlock_unlock(&f->lock);
            return KEEL_ENOMEM;
        }
        f->nseries++;
        table_maybe_grow(f);
        size_t b = (size_t)(h & f->tmask);
        s->hnext = f->table[b];
        f->table[b] = s;
        series_publish(f, s);
    }
    pthread_rwlock_unlock(&f->lock);
    *out = s;
    return KEEL_OK;
}

/* ---------------------------------------------------------------- values -- */

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    for (;;) {
        uint64_t nw = keel__dbits(keel__bitsd(old) + v);
        if (atomic_compare_exchange_weak_explicit(p, &old, nw, memory_order_relaxed,
                                                  memory_order_relaxed))
            return;
    }
}

void keel_series_add(keel_series *s, double v)
{
    if (s == NULL)
        return;
    if (s->type == KEEL_METRIC_COUNTER) {
        if (!(v > 0.0)) /* negative, zero and NaN */
            return;
        if (v < 18446744073709551616.0) {
            uint64_t i = (uint64_t)v;
            if ((double)i == v) {
                atomic_fetch_add_explicit(&s->ival, i, memory_order_relaxed);
                return;
            }
        }
        atomic_add_double(&s->bits, v);
    } else if (s->type == KEEL_METRIC_GAUGE) {
        atomic_add_double(&s->bits, v);
    }
}

void keel_series_set(keel_series *s, double v)
{
    if (s == NULL || s->type != KEEL_METRIC_GAUGE)
        return;
    atomic_store_explicit(&s->bits, keel__dbits(v), memory_order_relaxed);
}

void keel__series_set_counter(keel_series *s, double v)
{
    if (s == NULL)
        return;
    if (s->type == KEEL_METRIC_COUNTER) {
        double i = (double)atomic_load_explicit(&s->ival, memory_order_relaxed);
        atomic_store_explicit(&s->bits, keel__dbits(v - i), memory_order_relaxed);
    } else if (s->type == KEEL_METRIC_GAUGE) {
        atomic_store_explicit(&s->bits, keel__dbits(v), memory_order_relaxed);
    }
}

void keel_series_observe(keel_series *s, double v)
{
    if (s == NULL || s->type != KEEL_METRIC_HISTOGRAM)
        return;
    /* First bound >= v; NaN compares false everywhere and lands in +Inf, as in the
     * Prometheus clients. */
    uint32_t lo = 0, hi = s->nbounds;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v <= s->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&s->counts[lo], 1, memory_order_relaxed);
    atomic_add_double(&s->bits, v);
}

double keel_series_value(const keel_series *s)
{
    if (s == NULL)
        return 0.0;
    keel_series *w = (keel_series *)(uintptr_t)s; /* atomic loads need a non-const object */
    switch (s->type) {
    case KEEL_METRIC_COUNTER:
        return (double)atomic_load_explicit(&w->ival, memory_order_relaxed) +
               keel__bitsd(atomic_load_explicit(&w->bits, memory_order_relaxed));
    case KEEL_METRIC_GAUGE:
        return keel__bitsd(atomic_load_explicit(&w->bits, memory_order_relaxed));
    case KEEL_METRIC_HISTOGRAM: {
        uint64_t n = 0;
        for (uint32_t i = 0; i <= s->nbounds; i++)
            n += atomic_load_explicit(&w->counts[i], memory_order_relaxed);
        return (double)n;
    }
    }
    return 0.0;
}

static keel_err shorthand(keel_metric *f, const char *const *values, keel_series **s,
                          keel_metric_type t1, keel_metric_type t2)
{
    if (f == NULL || (f->type != t1 && f->type != t2))
        return KEEL_EINVAL;
    return keel_metric_series(f, values, s);
}

keel_err keel_metric_add(keel_metric *f, const char *const *values, double v)
{
    keel_series *s;
    keel_err e = shorthand(f, values, &s, KEEL_METRIC_COUNTER, KEEL_METRIC_GAUGE);
    if (e == KEEL_OK)
        keel_series_add(s, v);
    return e;
}

keel_err keel_metric_set(keel_metric *f, const char *const *values, double v)
{
    keel_series *s;
    keel_err e = shorthand(f, values, &s, KEEL_METRIC_GAUGE, KEEL_METRIC_GAUGE);
    if (e == KEEL_OK)
        keel_series_set(s, v);
    return e;
}

keel_err keel_metric_observe(keel_metric *f, const char *const *values, double v)
{
    keel_series *s;
    keel_err e = shorthand(f, values, &s, KEEL_METRIC_HISTOGRAM, KEEL_METRIC_HISTOGRAM);
    if (e == KEEL_OK)
        keel_series_observe(s, v);
    return e;
}

/* -------------------------------------------------------------- families -- */

static void family_free(keel_metric *f)
{
    if (f == NULL)
        return;
    keel_series *s = atomic_load_explicit(&f->first, memory_order_acquire);
    while (s != NULL) {
        keel_series *next = atomic_load_explicit(&s->onext, memory_order_acquire);
        keel_free(s);
        s = next;
    }
    if (f->lock_init)
        pthread_rwlock_destroy(&f->lock);
    keel_free(f->table);
    for (size_t i = 0; i < f->nlabels; i++)
        keel_free(f->labels[i]);
    keel_free(f->bounds);
    keel_free(f->help);
    keel_free(f->name);
    keel_free(f);
}

static int family_matches(const keel_metric *f, keel_metric_type type, size_t nlabels,
                          const char *const *labels, const double *b, size_t nb)
{
    if (f->type != type || f->nlabels != nlabels)
        return 0;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return 0;
    if (type == KEEL_METRIC_HISTOGRAM) {
        if (f->nbounds != nb)
            return 0;
        for (size_t i = 0; i < nb; i++)
            if (f->bounds[i] != b[i])
                return 0;
    }
    return 1;
}

static keel_err family_new(keel_metrics *m, keel_metric_type type, const char *name,
                           const char *help, const char *const *labels, size_t nlabels,
                           const double *b, size_t nb, keel_metric **out)
{
    keel_metric *f = keel__new(keel_metric);
    if (f == NULL)
        return KEEL_ENOMEM;
    f->reg = m;
    f->type = type;
    atomic_init(&f->next, NULL);
    atomic_init(&f->first, NULL);
    f->name = keel_strdup(name);
    if (f->name == NULL)
        goto oom;
    if (help != NULL && help[0] != '\0') {
        f->help = keel_strdup(help);
        if (f->help == NULL)
            goto oom;
    }
    for (size_t i = 0; i < nlabels; i++) {
        f->labels[i] = keel_strdup(labels[i]);
        if (f->labels[i] == NULL)
            goto oom;
        f->nlabels = i + 1;
    }
    if (type == KEEL_METRIC_HISTOGRAM) {
        f->bounds = keel_malloc(nb ? nb * sizeof(double) : 1);
        if (f->bounds == NULL)
            goto oom;
        if (nb > 0)
            memcpy(f->bounds, b, nb * sizeof(double));
        f->nbounds = nb;
    }
    if (nlabels > 0) {
        f->table = keel_calloc(TABLE_INITIAL, sizeof(*f->table));
        if (f->table == NULL)
            goto oom;
        f->tmask = TABLE_INITIAL - 1;
    }

    /* Writer preference: a steady stream of readers on the hot path must not starve the rare
     * insert.  Lookups never nest, so this cannot self-deadlock. */
    pthread_rwlockattr_t attr;
    if (pthread_rwlockattr_init(&attr) != 0)
        goto oom;
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    f->lock_init = pthread_rwlock_init(&f->lock, &attr) == 0;
    pthread_rwlockattr_destroy(&attr);
    if (!f->lock_init)
        goto oom;

    if (nlabels == 0) {
        f->solo = series_new(f, hash_values(NULL, 0), NULL);
        if (f->solo == NULL)
            goto oom;
        series_publish(f, f->solo);
    }
    *out = f;
    return KEEL_OK;
oom:
    family_free(f);
    return KEEL_ENOMEM;
}

/* Register or find a family.  buckets/nbuckets only for histograms. */
static keel_err family_register(keel_metrics *m, keel_metric_type type, const char *name,
                                const char *help, const char *const *labels,
                                const double *buckets, size_t nbuckets, keel_metric **out)
{
    if (m == NULL || out == NULL || !keel__metrics_valid_name(name))
        return KEEL_EINVAL;
    int n = check_labels(labels, type);
    if (n < 0)
        return KEEL_EINVAL;
    if (type == KEEL_METRIC_HISTOGRAM) {
        if (buckets == NULL) {
            buckets = default_buckets;
            nbuckets = KEEL_ARRAY_LEN(default_buckets);
        }
        if (!check_buckets(buckets, nbuckets))
            return KEEL_EINVAL;
    } else {
        buckets = NULL;
        nbuckets = 0;
    }

    keel_err e = KEEL_OK;
    if (pthread_mutex_lock(&m->lock) != 0)
        return KEEL_EAGAIN;
    keel_metric *f = atomic_load_explicit(&m->first, memory_order_acquire);
    for (; f != NULL; f = atomic_load_explicit(&f->next, memory_order_acquire))
        if (strcmp(f->name, name) == 0)
            break;
    if (f != NULL) {
        if (!family_matches(f, type, (size_t)n, labels, buckets, nbuckets))
            e = KEEL_EEXIST;
    } else {
        e = family_new(m, type, name, help, labels, (size_t)n, buckets, nbuckets, &f);
        if (e == KEEL_OK) {
            if (m->last != NULL)
                atomic_store_explicit(&m->last->next, f, memory_order_release);
            else
                atomic_store_explicit(&m->first, f, memory_order_release);
            m->last = f;
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (e == KEEL_OK)
        *out = f;
    return e;
}

keel_err keel_metrics_counter(keel_metrics *m, const char *name, const char *help,
                              const char *const *labels, keel_metric **out)
{
    return family_register(m, KEEL_METRIC_COUNTER, name, help, labels, NULL, 0, out);
}

keel_err keel_metrics_gauge(keel_metrics *m, const char *name, const char *help,
                            const char *const *labels, keel_metric **out)
{
    return family_register(m, KEEL_METRIC_GAUGE, name, help, labels, NULL, 0, out);
}

keel_err keel_metrics_histogram(keel_metrics *m, const char *name, const char *help,
                                const char *const *labels, const double *buckets,
                                size_t nbuckets, keel_metric **out)
{
    return family_register(m, KEEL_METRIC_HISTOGRAM, name, help, labels, buckets, nbuckets,
                           out);
}

/* -------------------------------------------------------------- registry -- */

keel_err keel_metrics_create(keel_metrics **out)
{
    if (out == NULL)
        return KEEL_EINVAL;
    keel_metrics *m = keel__new(keel_metrics);
    if (m == NULL)
        return KEEL_ENOMEM;
    atomic_init(&m->first, NULL);
    atomic_init(&m->collectors, NULL);
    atomic_init(&m->process_registered, 0);
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        keel_free(m);
        return KEEL_ENOMEM;
    }
    keel_metric *f;
    keel_err e = keel_metrics_counter(
        m, KEEL__METRICS_REFUSED_NAME,
        "Label sets refused because a metric family reached its series cap.", NULL, &f);
    if (e != KEEL_OK) {
        keel_metrics_destroy(m);
        return e;
    }
    m->refused = f->solo;
    *out = m;
    return KEEL_OK;
}

void keel_metrics_destroy(keel_metrics *m)
{
    if (m == NULL)
        return;
    keel__collector *c = atomic_load_explicit(&m->collectors, memory_order_acquire);
    while (c != NULL) {
        keel__collector *next = atomic_load_explicit(&c->next, memory_order_acquire);
        if (c->dtor != NULL)
            c->dtor(c->ud);
        keel_free(c);
        c = next;
    }
    keel_metric *f = atomic_load_explicit(&m->first, memory_order_acquire);
    while (f != NULL) {
        keel_metric *next = atomic_load_explicit(&f->next, memory_order_acquire);
        family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&m->lock);
    keel_free(m);
}

keel_err keel__metrics_add_collector_ex(keel_metrics *m, keel_metrics_collect_fn fn, void *ud,
                                        keel__metrics_dtor_fn dtor)
{
    if (m == NULL || fn == NULL)
        return KEEL_EINVAL;
    keel__collector *c = keel__new(keel__collector);
    if (c == NULL)
        return KEEL_ENOMEM;
    c->fn = fn;
    c->ud = ud;
    c->dtor = dtor;
    atomic_init(&c->next, NULL);
    if (pthread_mutex_lock(&m->lock) != 0) {
        keel_free(c);
        return KEEL_EAGAIN;
    }
    if (m->last_collector != NULL)
        atomic_store_explicit(&m->last_collector->next, c, memory_order_release);
    else
        atomic_store_explicit(&m->collectors, c, memory_order_release);
    m->last_collector = c;
    pthread_mutex_unlock(&m->lock);
    return KEEL_OK;
}

keel_err keel_metrics_add_collector(keel_metrics *m, keel_metrics_collect_fn fn, void *ud)
{
    return keel__metrics_add_collector_ex(m, fn, ud, NULL);
}
