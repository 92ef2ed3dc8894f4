/* expose.c - Prometheus text exposition format 0.0.4.
 *
 * The writer walks the registry's family list and each family's series list without taking
 * any lock (both are append-only and published with release stores, see obs_int.h), so a
 * scrape never blocks request threads.  Values are read with relaxed atomic loads; a
 * histogram's buckets are read once into a local snapshot so that the cumulative +Inf bucket
 * and _count printed are the same number.
 */
#include "keel_int.h"

#include <keel/metrics.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "obs_int.h"

/* ------------------------------------------------------------- numbers -- */

static size_t put_lit(char *out, const char *s)
{
    size_t n = strlen(s);
    memcpy(out, s, n + 1);
    return n;
}

static size_t format_u64(uint64_t v, char *out)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

static int is_num_char(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e' || c == 'E';
}

size_t keel__metrics_format_double(double v, char out[KEEL__METRICS_NUM_SIZE])
{
    if (isnan(v))
        return put_lit(out, "NaN");
    if (isinf(v))
        return put_lit(out, v > 0 ? "+Inf" : "-Inf");
    if (v == 0.0)
        return put_lit(out, "0"); /* also -0 */
    /* Integers that a double holds exactly print as integers: "1027", not "1.027e+03". */
    if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(int64_t)v) {
        int64_t i = (int64_t)v;
        if (i < 0) {
            out[0] = '-';
            return 1 + format_u64((uint64_t)(-i), out + 1);
        }
        return format_u64((uint64_t)i, out);
    }
    /* Shortest %g precision that reads back as the same double. */
    char tmp[KEEL__METRICS_NUM_SIZE];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (n > 0 && (size_t)n < sizeof(tmp) && strtod(tmp, NULL) == v)
            break;
    }
    if (n <= 0 || (size_t)n >= sizeof(tmp))
        return put_lit(out, "NaN"); /* cannot happen: %.17g of a finite double fits */
    /* The locale may spell the decimal point differently (even with several bytes); the
     * format wants '.'. */
    size_t o = 0;
    for (size_t i = 0; tmp[i] != '\0';) {
        if (is_num_char(tmp[i])) {
            out[o++] = tmp[i++];
        } else {
            out[o++] = '.';
            while (tmp[i] != '\0' && !is_num_char(tmp[i]))
                i++;
        }
    }
    out[o] = '\0';
    return o;
}

/* ------------------------------------------------------------- writers -- */

/* Append s escaping backslash and newline, and the double quote too when quote is set. */
static keel_err append_escaped(keel_buf *out, const char *s, int quote)
{
    const char *run = s;
    const char *p = s;
    for (; *p != '\0'; p++) {
        const char *rep = NULL;
        if (*p == '\\')
            rep = "\\\\";
        else if (*p == '\n')
            rep = "\\n";
        else if (quote && *p == '"')
            rep = "\\\"";
        if (rep == NULL)
            continue;
        keel_err e = keel_buf_append(out, run, (size_t)(p - run));
        if (e == KEEL_OK)
            e = keel_buf_append(out, rep, 2);
        if (e != KEEL_OK)
            return e;
        run = p + 1;
    }
    return keel_buf_append(out, run, (size_t)(p - run));
}

/* name[suffix]{labels[,le="le"]} value\n */
static keel_err write_sample(keel_buf *out, const keel_metric *f, const keel_series *s,
                             const char *suffix, const char *le, const char *value)
{
    keel_err e = keel_buf_append_str(out, f->name);
    if (e == KEEL_OK && suffix != NULL)
        e = keel_buf_append_str(out, suffix);
    if (e == KEEL_OK && (f->nlabels > 0 || le != NULL)) {
        e = keel_buf_append_char(out, '{');
        for (size_t i = 0; e == KEEL_OK && i < f->nlabels; i++) {
            if (i > 0)
                e = keel_buf_append_char(out, ',');
            if (e == KEEL_OK)
                e = keel_buf_append_str(out, f->labels[i]);
            if (e == KEEL_OK)
                e = keel_buf_append(out, "=\"", 2);
            if (e == KEEL_OK)
                e = append_escaped(out, s->values[i], 1);
            if (e == KEEL_OK)
                e = keel_buf_append_char(out, '"');
        }
        if (e == KEEL_OK && le != NULL) {
            e = keel_buf_append_str(out, f->nlabels > 0 ? ",le=\"" : "le=\"");
            if (e == KEEL_OK)
                e = keel_buf_append_str(out, le);
            if (e == KEEL_OK)
                e = keel_buf_append_char(out, '"');
        }
        if (e == KEEL_OK)
            e = keel_buf_append_char(out, '}');
    }
    if (e == KEEL_OK)
        e = keel_buf_append_char(out, ' ');
    if (e == KEEL_OK)
        e = keel_buf_append_str(out, value);
    if (e == KEEL_OK)
        e = keel_buf_append_char(out, '\n');
    return e;
}

static keel_err write_histogram(keel_buf *out, const keel_metric *f, keel_series *s)
{
    uint64_t counts[KEEL__METRICS_MAX_BUCKETS + 1];
    for (size_t i = 0; i <= f->nbounds; i++)
        counts[i] = atomic_load_explicit(&s->counts[i], memory_order_relaxed);
    double sum = keel__bitsd(atomic_load_explicit(&s->bits, memory_order_relaxed));

    char le[KEEL__METRICS_NUM_SIZE], num[KEEL__METRICS_NUM_SIZE];
    uint64_t cum = 0;
    keel_err e = KEEL_OK;
    for (size_t i = 0; e == KEEL_OK && i <= f->nbounds; i++) {
        cum += counts[i];
        if (i < f->nbounds)
            keel__metrics_format_double(f->bounds[i], le);
        else
            put_lit(le, "+Inf");
        format_u64(cum, num);
        e = write_sample(out, f, s, "_bucket", le, num);
    }
    if (e == KEEL_OK) {
        keel__metrics_format_double(sum, num);
        e = write_sample(out, f, s, "_sum", NULL, num);
    }
    if (e == KEEL_OK) {
        format_u64(cum, num);
        e = write_sample(out, f, s, "_count", NULL, num);
    }
    return e;
}

static const char *type_name(keel_metric_type t)
{
    switch (t) {
    case KEEL_METRIC_COUNTER:
        return "counter";
    case KEEL_METRIC_GAUGE:
        return "gauge";
    case KEEL_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

static keel_err write_family(keel_buf *out, keel_metric *f)
{
    keel_err e = KEEL_OK;
    if (f->help != NULL) {
        e = keel_buf_append_str(out, "# HELP ");
        if (e == KEEL_OK)
            e = keel_buf_append_str(out, f->name);
        if (e == KEEL_OK)
            e = keel_buf_append_char(out, ' ');
        if (e == KEEL_OK)
            e = append_escaped(out, f->help, 0);
        if (e == KEEL_OK)
            e = keel_buf_append_char(out, '\n');
    }
    if (e == KEEL_OK)
        e = keel_buf_appendf(out, "# TYPE %s %s\n", f->name, type_name(f->type));

    keel_series *s = atomic_load_explicit(&f->first, memory_order_acquire);
    for (; e == KEEL_OK && s != NULL; s = atomic_load_explicit(&s->onext, memory_order_acquire)) {
        if (f->type == KEEL_METRIC_HISTOGRAM) {
            e = write_histogram(out, f, s);
        } else {
            char num[KEEL__METRICS_NUM_SIZE];
            keel__metrics_format_double(keel_series_value(s), num);
            e = write_sample(out, f, s, NULL, NULL, num);
        }
    }
    return e;
}

keel_err keel_metrics_expose(keel_metrics *m, const char *prefix, keel_buf *out)
{
    if (m == NULL || out == NULL)
        return KEEL_EINVAL;

    /* Collectors first, under no lock: they may update (and even create) series. */
    keel__collector *c = atomic_load_explicit(&m->collectors, memory_order_acquire);
    for (; c != NULL; c = atomic_load_explicit(&c->next, memory_order_acquire))
        c->fn(m, c->ud);

    size_t start = out->len;
    size_t plen = prefix != NULL ? strlen(prefix) : 0;
    keel_err e = KEEL_OK;
    keel_metric *f = atomic_load_explicit(&m->first, memory_order_acquire);
    for (; e == KEEL_OK && f != NULL; f = atomic_load_explicit(&f->next, memory_order_acquire)) {
        if (plen > 0 && strncmp(f->name, prefix, plen) != 0)
            continue;
        e = write_family(out, f);
    }
    if (e != KEEL_OK) {
        /* Leave no half-written exposition behind. */
        out->len = start;
        if (out->ptr != NULL)
            out->ptr[start] = '\0';
    }
    return e;
}
