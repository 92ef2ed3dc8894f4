/* trace.c - W3C Trace Context, spans, the per-thread current-span stack,
 * sampling and the JSON log export of ended spans (seed 000 section 9A). */
#include "keel_int.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include <keel/log.h>
#include <keel/trace.h>

#include "log_int.h"
#include "trace_int.h"

/* ====================================================== trace context == */

/* Value of a lower-case hex digit, -1 for anything else (upper case included: W3C
 * Trace Context allows lower case only). */
static int lhex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode n bytes from 2n lower-case hex digits at p.  Returns the offset of the first bad
 * digit, or (size_t)-1 when all are good. */
static size_t lhex_decode(const char *p, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = lhex((unsigned char)p[2 * i]), lo = lhex((unsigned char)p[2 * i + 1]);
        if (hi < 0)
            return 2 * i;
        if (lo < 0)
            return 2 * i + 1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (size_t)-1;
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Layout of the first four fields (shared by every version):
 *   0..1 version, 2 '-', 3..34 trace-id, 35 '-', 36..51 parent-id, 52 '-', 53..54 flags,
 *   then end of value (version 00: required) or '-' (higher versions). */
keel_err keel_traceparent_parse(keel_str s, keel_span_context *out, keel_diag *diag)
{
    if (out == NULL || (s.ptr == NULL && s.len > 0))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "traceparent: NULL argument");
    size_t lead = 0;
    while (lead < s.len && (s.ptr[lead] == ' ' || s.ptr[lead] == '\t'))
        lead++;
    const char *p = s.ptr + lead;
    size_t n = s.len - lead;
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n > KEEL_TRACEPARENT_MAX)
        return keel_diag_set(diag, KEEL_EPARSE, lead, "traceparent: longer than %d bytes",
                             KEEL_TRACEPARENT_MAX);
    if (n < 55)
        return keel_diag_set(diag, KEEL_EPARSE, lead + n, "traceparent: shorter than 55 bytes");
    uint8_t version;
    size_t bad = lhex_decode(p, &version, 1);
    if (bad != (size_t)-1)
        return keel_diag_set(diag, KEEL_EPARSE, lead + bad,
                             "traceparent: version is not lower-case hex");
    if (version == 0xff)
        return keel_diag_set(diag, KEEL_EPARSE, lead, "traceparent: version ff is invalid");
    static const size_t dashes[3] = {2, 35, 52};
    for (size_t i = 0; i < 3; i++)
        if (p[dashes[i]] != '-')
            return keel_diag_set(diag, KEEL_EPARSE, lead + dashes[i],
                                 "traceparent: expected '-'");
    keel_span_context c;
    memset(&c, 0, sizeof c);
    if ((bad = lhex_decode(p + 3, c.trace_id, KEEL_TRACE_ID_LEN)) != (size_t)-1)
        return keel_diag_set(diag, KEEL_EPARSE, lead + 3 + bad,
                             "traceparent: trace-id is not 32 lower-case hex digits");
    if ((bad = lhex_decode(p + 36, c.span_id, KEEL_SPAN_ID_LEN)) != (size_t)-1)
        return keel_diag_set(diag, KEEL_EPARSE, lead + 36 + bad,
                             "traceparent: parent-id is not 16 lower-case hex digits");
    if ((bad = lhex_decode(p + 53, &c.flags, 1)) != (size_t)-1)
        return keel_diag_set(diag, KEEL_EPARSE, lead + 53 + bad,
                             "traceparent: trace-flags are not 2 lower-case hex digits");
    if (version == 0 && n != 55)
        return keel_diag_set(diag, KEEL_EPARSE, lead + 55,
                             "traceparent: version 00 has trailing data");
    if (n > 55 && p[55] != '-')
        return keel_diag_set(diag, KEEL_EPARSE, lead + 55,
                             "traceparent: expected '-' after trace-flags");
    if (all_zero(c.trace_id, KEEL_TRACE_ID_LEN))
        return keel_diag_set(diag, KEEL_EPARSE, lead + 3, "traceparent: trace-id is all zeros");
    if (all_zero(c.span_id, KEEL_SPAN_ID_LEN))
        return keel_diag_set(diag, KEEL_EPARSE, lead + 36, "traceparent: parent-id is all zeros");
    c.remote = 1;
    *out = c;
    return KEEL_OK;
}

size_t keel_traceparent_format(const keel_span_context *sc, char out[KEEL_TRACEPARENT_SIZE])
{
    if (sc == NULL || out == NULL)
        return 0;
    out[0] = '0';
    out[1] = '0';
    out[2] = '-';
    keel__hex_encode(sc->trace_id, KEEL_TRACE_ID_LEN, out + 3);
    out[35] = '-';
    keel__hex_encode(sc->span_id, KEEL_SPAN_ID_LEN, out + 36);
    out[52] = '-';
    keel__hex_encode(&sc->flags, 1, out + 53);
    out[55] = '\0';
    return 55;
}

int keel_span_context_valid(const keel_span_context *sc)
{
    return sc != NULL && !all_zero(sc->trace_id, KEEL_TRACE_ID_LEN) &&
           !all_zero(sc->span_id, KEEL_SPAN_ID_LEN);
}

int keel_tracestate_valid(keel_str s)
{
    if (s.ptr == NULL || s.len > KEEL_TRACESTATE_MAX)
        return 0;
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.ptr[i] < 0x20 || (unsigned char)s.ptr[i] > 0x7e)
            return 0;
    return 1;
}

void keel_trace_id_hex(const keel_span_context *sc, char out[KEEL_TRACE_ID_HEX_SIZE])
{
    if (sc != NULL && out != NULL)
        keel__hex_encode(sc->trace_id, KEEL_TRACE_ID_LEN, out);
}

void keel_span_id_hex(const keel_span_context *sc, char out[KEEL_SPAN_ID_HEX_SIZE])
{
    if (sc != NULL && out != NULL)
        keel__hex_encode(sc->span_id, KEEL_SPAN_ID_LEN, out);
}

/* ============================================================= tracer == */

/* The tracer settings and the exporter.  Span start and end take the read lock (they only
 * read the settings and enqueue, which the exporter synchronises itself); start/stop take
 * the write lock, so the exporter is never destroyed under a span that is enqueueing. */
static pthread_rwlock_t g_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct {
    int started;
    keel_trace_sampler sampler;
    double ratio;
    int parent_based;
    int log_spans;
    keel_log_level log_level;
    keel__otlp *otlp;
    char *url, *service_name, *service_version, *environment;
} g = {0, KEEL_TRACE_SAMPLE_ALWAYS_ON, 1.0, 1, 1, KEEL_LOG_LEVEL_INFO, NULL,
       NULL, NULL, NULL, NULL};

static _Atomic uint64_t st_started, st_ended, st_unsampled, st_logged;
/* Counters of exporters already destroyed, so stats survive keel_trace_stop(). */
static keel__otlp_stats st_otlp_past;

static _Thread_local keel_span *tls_current;

void keel_trace_config_default(keel_trace_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->size = sizeof *cfg;
    cfg->service_name = "keel";
    cfg->sampler = KEEL_TRACE_SAMPLE_ALWAYS_ON;
    cfg->ratio = 1.0;
    cfg->parent_based = 1;
    cfg->log_spans = 1;
    cfg->log_level = KEEL_LOG_LEVEL_INFO;
    cfg->otlp_queue_capacity = 2048;
    cfg->otlp_batch_size = 512;
    cfg->otlp_interval_ms = 1000;
    cfg->otlp_timeout_ms = 10000;
    cfg->otlp_shutdown_ms = 5000;
}

static void free_strings(void)
{
    keel_free(g.url);
    keel_free(g.service_name);
    keel_free(g.service_version);
    keel_free(g.environment);
    g.url = g.service_name = g.service_version = g.environment = NULL;
}

static keel_err dup_opt(const char *in, char **out)
{
    *out = NULL;
    if (in == NULL)
        return KEEL_OK;
    *out = keel_strdup(in);
    return *out ? KEEL_OK : KEEL_ENOMEM;
}

static keel_err check_config(const keel_trace_config *c, keel_diag *diag)
{
    if (c->size < sizeof *c)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "trace config: size not set");
    if (c->service_name == NULL || c->service_name[0] == '\0')
        return keel_diag_set(diag, KEEL_EINVAL, 0, "trace config: service_name is empty");
    if (c->sampler != KEEL_TRACE_SAMPLE_ALWAYS_ON && c->sampler != KEEL_TRACE_SAMPLE_ALWAYS_OFF &&
        c->sampler != KEEL_TRACE_SAMPLE_RATIO)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "trace config: unknown sampler");
    if (!(c->ratio >= 0.0 && c->ratio <= 1.0))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "trace config: ratio must be in 0..1");
    if (c->otlp_endpoint == NULL)
        return KEEL_OK;
    if (strncmp(c->otlp_endpoint, "http://", 7) != 0 &&
        strncmp(c->otlp_endpoint, "https://", 8) != 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "trace config: otlp_endpoint must start with http:// or https://");
    if (c->otlp_queue_capacity < 1 || c->otlp_queue_capacity > 1048576)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "trace config: otlp_queue_capacity must be in 1..1048576");
    if (c->otlp_batch_size < 1 || c->otlp_batch_size > 65536)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "trace config: otlp_batch_size must be in 1..65536");
    if (c->otlp_interval_ms == 0 || c->otlp_timeout_ms == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "trace config: otlp_interval_ms and otlp_timeout_ms must be > 0");
    return KEEL_OK;
}

keel_err keel_trace_start(const keel_trace_config *cfg, keel_diag *diag)
{
    keel_trace_config def;
    if (cfg == NULL) {
        keel_trace_config_default(&def);
        cfg = &def;
    }
    keel_err e = check_config(cfg, diag);
    if (e != KEEL_OK)
        return e;
    pthread_rwlock_wrlock(&g_lock);
    if (g.started) {
        pthread_rwlock_unlock(&g_lock);
        return keel_diag_set(diag, KEEL_ESTATE, 0, "tracer already started");
    }
    if ((e = dup_opt(cfg->service_name, &g.service_name)) != KEEL_OK ||
        (e = dup_opt(cfg->service_version, &g.service_version)) != KEEL_OK ||
        (e = dup_opt(cfg->environment, &g.environment)) != KEEL_OK)
        goto fail;
    if (cfg->otlp_endpoint != NULL) {
        if ((g.url = keel__otlp_traces_url(cfg->otlp_endpoint)) == NULL) {
            e = KEEL_ENOMEM;
            goto fail;
        }
        keel__otlp_config oc;
        oc.url = g.url;
        oc.service_name = g.service_name;
        oc.service_version = g.service_version;
        oc.environment = g.environment;
        oc.queue_capacity = cfg->otlp_queue_capacity;
        oc.batch_size = cfg->otlp_batch_size;
        oc.interval_ms = cfg->otlp_interval_ms;
        oc.timeout_ms = cfg->otlp_timeout_ms;
        oc.shutdown_ms = cfg->otlp_shutdown_ms;
        if ((e = keel__otlp_create(&g.otlp, &oc, 1)) != KEEL_OK) {
            keel_diag_set(diag, e, 0, "trace: cannot start the OTLP exporter");
            goto fail;
        }
    }
    g.sampler = cfg->sampler;
    g.ratio = cfg->ratio;
    g.parent_based = cfg->parent_based ? 1 : 0;
    g.log_spans = cfg->log_spans ? 1 : 0;
    g.log_level = cfg->log_level;
    g.started = 1;
    pthread_rwlock_unlock(&g_lock);
    return KEEL_OK;
fail:
    free_strings();
    pthread_rwlock_unlock(&g_lock);
    return e;
}

static void add_otlp_stats(keel__otlp_stats *acc, const keel__otlp_stats *s)
{
    acc->queued += s->queued;
    acc->exported += s->exported;
    acc->dropped += s->dropped;
    acc->failed += s->failed;
    acc->requests_failed += s->requests_failed;
}

void keel_trace_stop(void)
{
    pthread_rwlock_wrlock(&g_lock);
    keel__otlp *x = g.otlp;
    /* The exporter borrows these strings: keep them until it is gone. */
    char *strs[4] = {g.url, g.service_name, g.service_version, g.environment};
    g.url = g.service_name = g.service_version = g.environment = NULL;
    g.otlp = NULL;
    g.started = 0;
    g.sampler = KEEL_TRACE_SAMPLE_ALWAYS_ON;
    g.ratio = 1.0;
    g.parent_based = 1;
    g.log_spans = 1;
    g.log_level = KEEL_LOG_LEVEL_INFO;
    pthread_rwlock_unlock(&g_lock);
    /* Drain outside the lock: spans ending meanwhile see no exporter and are logged only. */
    if (x != NULL) {
        keel__otlp_stats fin;
        memset(&fin, 0, sizeof fin);
        keel__otlp_destroy(x, &fin);
        pthread_rwlock_wrlock(&g_lock);
        add_otlp_stats(&st_otlp_past, &fin);
        pthread_rwlock_unlock(&g_lock);
    }
    for (size_t i = 0; i < KEEL_ARRAY_LEN(strs); i++)
        keel_free(strs[i]);
}

keel_err keel_trace_flush(uint64_t timeout_ms)
{
    pthread_rwlock_rdlock(&g_lock);
    keel_err e = g.otlp ? keel__otlp_flush(g.otlp, timeout_ms) : KEEL_OK;
    pthread_rwlock_unlock(&g_lock);
    return e;
}

void keel_trace_stats_get(keel_trace_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    out->started = atomic_load(&st_started);
    out->ended = atomic_load(&st_ended);
    out->unsampled = atomic_load(&st_unsampled);
    out->logged = atomic_load(&st_logged);
    keel__otlp_stats s;
    memset(&s, 0, sizeof s);
    pthread_rwlock_rdlock(&g_lock);
    add_otlp_stats(&s, &st_otlp_past);
    if (g.otlp != NULL) {
        keel__otlp_stats cur;
        keel__otlp_stats_get(g.otlp, &cur);
        add_otlp_stats(&s, &cur);
    }
    pthread_rwlock_unlock(&g_lock);
    out->otlp_queued = s.queued;
    out->otlp_exported = s.exported;
    out->otlp_dropped = s.dropped;
    out->otlp_failed = s.failed;
    out->otlp_requests_failed = s.requests_failed;
}

/* ============================================================== spans == */

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Random bytes that are not all zero (an all-zero id is invalid). */
static keel_err random_id(uint8_t *p, size_t n)
{
    for (int tries = 0; tries < 4; tries++) {
        keel_err e = keel__random_pooled(p, n);
        if (e != KEEL_OK)
            return e;
        if (!all_zero(p, n))
            return KEEL_OK;
    }
    return KEEL_ECRYPTO;
}

/* Root sampling decision (caller holds the read lock).  The ratio sampler compares the low
 * 8 bytes of the trace id, read big-endian, with ratio * 2^64, so every service that uses
 * the same ratio decides alike for a trace. */
static int root_sampled(const uint8_t trace_id[KEEL_TRACE_ID_LEN])
{
    switch (g.sampler) {
    case KEEL_TRACE_SAMPLE_ALWAYS_OFF: return 0;
    case KEEL_TRACE_SAMPLE_RATIO: {
        if (g.ratio >= 1.0)
            return 1;
        if (g.ratio <= 0.0)
            return 0;
        uint64_t v = 0;
        for (size_t i = 8; i < KEEL_TRACE_ID_LEN; i++)
            v = v << 8 | trace_id[i];
        return (double)v < ldexp(g.ratio, 64);
    }
    case KEEL_TRACE_SAMPLE_ALWAYS_ON:
    default: return 1;
    }
}

static char *dup_capped(const char *s, size_t cap)
{
    if (s == NULL)
        s = "";
    return keel_strndup(s, strnlen(s, cap));
}

static keel_err span_begin(keel_span **out, const char *name, keel_span_kind kind,
                           const keel_span_context *parent, const char *tracestate)
{
    if (out == NULL || name == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    keel_span *sp = keel__new(keel_span);
    if (sp == NULL)
        return KEEL_ENOMEM;
    if ((sp->name = dup_capped(name, KEEL_SPAN_STR_MAX)) == NULL) {
        keel_free(sp);
        return KEEL_ENOMEM;
    }
    if (tracestate != NULL && keel_tracestate_valid(keel_str_c(tracestate)) &&
        tracestate[0] != '\0' && (sp->tracestate = keel_strdup(tracestate)) == NULL) {
        keel__span_free(sp);
        return KEEL_ENOMEM;
    }
    sp->kind = (kind >= KEEL_SPAN_INTERNAL && kind <= KEEL_SPAN_CONSUMER) ? kind
                                                                           : KEEL_SPAN_INTERNAL;
    keel_err e = KEEL_OK;
    int have_parent = keel_span_context_valid(parent);
    if (have_parent) {
        memcpy(sp->ctx.trace_id, parent->trace_id, KEEL_TRACE_ID_LEN);
        memcpy(sp->parent_id, parent->span_id, KEEL_SPAN_ID_LEN);
        sp->has_parent = 1;
    } else {
        e = random_id(sp->ctx.trace_id, KEEL_TRACE_ID_LEN);
    }
    if (e == KEEL_OK)
        e = random_id(sp->ctx.span_id, KEEL_SPAN_ID_LEN);
    if (e != KEEL_OK) {
        keel__span_free(sp);
        return e;
    }
    pthread_rwlock_rdlock(&g_lock);
    int sampled = (have_parent && g.parent_based) ? (parent->flags & KEEL_TRACE_FLAG_SAMPLED) != 0
                                                  : root_sampled(sp->ctx.trace_id);
    pthread_rwlock_unlock(&g_lock);
    sp->ctx.flags = sampled ? KEEL_TRACE_FLAG_SAMPLED : 0;
    sp->recording = sampled;
    sp->start_mono_ns = keel_time_mono_ns();
    sp->start_unix_ns = wall_ns();
    atomic_fetch_add(&st_started, 1);
    if (!sampled)
        atomic_fetch_add(&st_unsampled, 1);
    *out = sp;
    return KEEL_OK;
}

keel_err keel_span_start(keel_span **out, const char *name, keel_span_kind kind)
{
    keel_span *cur = tls_current;
    return span_begin(out, name, kind, cur ? &cur->ctx : NULL, cur ? cur->tracestate : NULL);
}

keel_err keel_span_start_with_parent(keel_span **out, const char *name, keel_span_kind kind,
                                     const keel_span_context *parent, const char *tracestate)
{
    return span_begin(out, name, kind, parent, keel_span_context_valid(parent) ? tracestate
                                                                               : NULL);
}

void keel_span_get_context(const keel_span *sp, keel_span_context *out)
{
    if (sp == NULL || out == NULL)
        return;
    *out = sp->ctx;
    out->remote = 0;
}

int keel_span_is_recording(const keel_span *sp)
{
    return sp != NULL && sp->recording;
}

size_t keel_span_traceparent(const keel_span *sp, char out[KEEL_TRACEPARENT_SIZE])
{
    return sp ? keel_traceparent_format(&sp->ctx, out) : 0;
}

const char *keel_span_tracestate(const keel_span *sp)
{
    return sp ? sp->tracestate : NULL;
}

/* ---------------------------------------------------------- attributes -- */

static void tattr_clear(keel__tattr *a)
{
    keel_free(a->key);
    if (a->type == KEEL_TRACE_ATTR_STR)
        keel_free(a->v.s);
    memset(a, 0, sizeof *a);
}

/* Copy the value of in into *a (key untouched). */
static keel_err tattr_set_value(keel__tattr *a, const keel_trace_attr *in)
{
    char *s = NULL;
    if (in->type == KEEL_TRACE_ATTR_STR && (s = dup_capped(in->v.s, KEEL_SPAN_STR_MAX)) == NULL)
        return KEEL_ENOMEM;
    if (a->type == KEEL_TRACE_ATTR_STR)
        keel_free(a->v.s);
    a->type = in->type;
    switch (in->type) {
    case KEEL_TRACE_ATTR_STR: a->v.s = s; break;
    case KEEL_TRACE_ATTR_INT: a->v.i = in->v.i; break;
    case KEEL_TRACE_ATTR_DOUBLE: a->v.d = in->v.d; break;
    case KEEL_TRACE_ATTR_BOOL: a->v.b = in->v.b ? 1 : 0; break;
    }
    return KEEL_OK;
}

static int attr_ok(const keel_trace_attr *a)
{
    return a->key != NULL && a->type >= KEEL_TRACE_ATTR_STR && a->type <= KEEL_TRACE_ATTR_BOOL;
}

/* A new attribute (key and value copied) into *a, which is zeroed. */
static keel_err tattr_init(keel__tattr *a, const keel_trace_attr *in)
{
    memset(a, 0, sizeof *a);
    if ((a->key = dup_capped(in->key, KEEL_SPAN_KEY_MAX)) == NULL)
        return KEEL_ENOMEM;
    keel_err e = tattr_set_value(a, in);
    if (e != KEEL_OK) {
        keel_free(a->key);
        a->key = NULL;
    }
    return e;
}

static keel_err span_set_one(keel_span *sp, const keel_trace_attr *in)
{
    size_t klen = strnlen(in->key, KEEL_SPAN_KEY_MAX);
    for (uint32_t i = 0; i < sp->nattrs; i++)
        if (strlen(sp->attrs[i].key) == klen && memcmp(sp->attrs[i].key, in->key, klen) == 0)
            return tattr_set_value(&sp->attrs[i], in);
    if (sp->nattrs >= KEEL_SPAN_ATTRS_MAX) {
        sp->dropped_attrs++;
        return KEEL_EFULL;
    }
    if (sp->nattrs == sp->attrs_cap) {
        uint32_t cap = sp->attrs_cap ? sp->attrs_cap * 2 : 8;
        if (cap > KEEL_SPAN_ATTRS_MAX)
            cap = KEEL_SPAN_ATTRS_MAX;
        keel__tattr *na = keel_realloc(sp->attrs, cap * sizeof *na);
        if (na == NULL)
            return KEEL_ENOMEM;
        sp->attrs = na;
        sp->attrs_cap = cap;
    }
    keel_err e = tattr_init(&sp->attrs[sp->nattrs], in);
    if (e == KEEL_OK)
        sp->nattrs++;
    return e;
}

keel_err keel_span_set_attrs(keel_span *sp, const keel_trace_attr *attrs, size_t n)
{
    if (sp == NULL || (attrs == NULL && n > 0))
        return KEEL_EINVAL;
    if (!sp->recording)
        return KEEL_OK;
    keel_err first = KEEL_OK;
    for (size_t i = 0; i < n; i++) {
        keel_err e = attr_ok(&attrs[i]) ? span_set_one(sp, &attrs[i]) : KEEL_EINVAL;
        if (e == KEEL_ENOMEM)
            return e;
        if (e != KEEL_OK && first == KEEL_OK)
            first = e;
    }
    return first;
}

keel_err keel_span_set_str(keel_span *sp, const char *key, const char *value)
{
    keel_trace_attr a = KEEL_TA_STR(key, value);
    return keel_span_set_attrs(sp, &a, 1);
}

keel_err keel_span_set_int(keel_span *sp, const char *key, int64_t value)
{
    keel_trace_attr a = KEEL_TA_INT(key, value);
    return keel_span_set_attrs(sp, &a, 1);
}

keel_err keel_span_set_double(keel_span *sp, const char *key, double value)
{
    keel_trace_attr a = KEEL_TA_DOUBLE(key, value);
    return keel_span_set_attrs(sp, &a, 1);
}

keel_err keel_span_set_bool(keel_span *sp, const char *key, int value)
{
    keel_trace_attr a = KEEL_TA_BOOL(key, value);
    return keel_span_set_attrs(sp, &a, 1);
}

/* -------------------------------------------------------------- events -- */

static void event_clear(keel__tevent *ev)
{
    for (uint32_t i = 0; i < ev->nattrs; i++)
        tattr_clear(&ev->attrs[i]);
    keel_free(ev->attrs);
    keel_free(ev->name);
}

keel_err keel_span_add_event(keel_span *sp, const char *name, const keel_trace_attr *attrs,
                             size_t n)
{
    if (sp == NULL || name == NULL || (attrs == NULL && n > 0))
        return KEEL_EINVAL;
    if (!sp->recording)
        return KEEL_OK;
    if (sp->nevents >= KEEL_SPAN_EVENTS_MAX) {
        sp->dropped_events++;
        return KEEL_EFULL;
    }
    if (sp->nevents == sp->events_cap) {
        uint32_t cap = sp->events_cap ? sp->events_cap * 2 : 4;
        if (cap > KEEL_SPAN_EVENTS_MAX)
            cap = KEEL_SPAN_EVENTS_MAX;
        keel__tevent *ne = keel_realloc(sp->events, cap * sizeof *ne);
        if (ne == NULL)
            return KEEL_ENOMEM;
        sp->events = ne;
        sp->events_cap = cap;
    }
    keel__tevent ev;
    memset(&ev, 0, sizeof ev);
    ev.time_unix_ns = sp->start_unix_ns + (keel_time_mono_ns() - sp->start_mono_ns);
    if ((ev.name = dup_capped(name, KEEL_SPAN_STR_MAX)) == NULL)
        return KEEL_ENOMEM;
    size_t keep = 0;
    for (size_t i = 0; i < n; i++)
        keep += attr_ok(&attrs[i]);
    if (keep > KEEL_SPAN_EVENT_ATTRS_MAX) {
        ev.dropped_attrs = (uint32_t)(keep - KEEL_SPAN_EVENT_ATTRS_MAX);
        keep = KEEL_SPAN_EVENT_ATTRS_MAX;
    }
    if (keep > 0 && (ev.attrs = keel_calloc(keep, sizeof *ev.attrs)) == NULL) {
        event_clear(&ev);
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < n && ev.nattrs < keep; i++) {
        if (!attr_ok(&attrs[i]))
            continue;
        if (tattr_init(&ev.attrs[ev.nattrs], &attrs[i]) != KEEL_OK) {
            event_clear(&ev);
            return KEEL_ENOMEM;
        }
        ev.nattrs++;
    }
    sp->events[sp->nevents++] = ev;
    return KEEL_OK;
}

/* -------------------------------------------------------------- status -- */

void keel_span_set_status(keel_span *sp, keel_span_status status, const char *message)
{
    if (sp == NULL || !sp->recording || status == KEEL_SPAN_STATUS_UNSET ||
        sp->status == KEEL_SPAN_STATUS_OK)
        return;
    if (status != KEEL_SPAN_STATUS_OK && status != KEEL_SPAN_STATUS_ERROR)
        return;
    keel_free(sp->status_msg);
    sp->status_msg = NULL;
    sp->status = status;
    if (status == KEEL_SPAN_STATUS_ERROR && message != NULL)
        sp->status_msg = dup_capped(message, KEEL_SPAN_STR_MAX);
}

keel_err keel_span_record_error(keel_span *sp, keel_err err, const char *message)
{
    if (sp == NULL)
        return KEEL_EINVAL;
    if (!sp->recording)
        return KEEL_OK;
    const char *msg = message ? message : keel_strerror(err);
    const char *type = keel_err_name(err);
    keel_trace_attr a[3] = {KEEL_TA_STR("exception.type", type),
                            KEEL_TA_STR("exception.message", msg),
                            KEEL_TA_INT("keel.error_code", (int)err)};
    keel_err e = keel_span_add_event(sp, "exception", a, KEEL_ARRAY_LEN(a));
    if (sp->status == KEEL_SPAN_STATUS_UNSET)
        keel_span_set_status(sp, KEEL_SPAN_STATUS_ERROR, msg);
    keel_buf b;
    keel_buf_init(&b, KEEL_SPAN_STR_MAX);
    if (keel_buf_appendf(&b, "%s: ", type) == KEEL_OK &&
        keel_buf_append(&b, msg, strnlen(msg, KEEL_SPAN_STR_MAX - b.len)) == KEEL_OK) {
        char *s = keel_buf_take(&b, NULL);
        if (s != NULL) {
            keel_free(sp->exception);
            sp->exception = s;
        }
    }
    keel_buf_cleanup(&b);
    return e;
}

/* ------------------------------------------------------ current spans -- */

keel_err keel_span_push(keel_span *sp)
{
    if (sp == NULL)
        return KEEL_EINVAL;
    if (sp->pushed)
        return KEEL_EBUSY;
    sp->cur_prev = tls_current;
    sp->pushed = 1;
    tls_current = sp;
    return KEEL_OK;
}

void keel_span_pop(keel_span *sp)
{
    if (sp == NULL || !sp->pushed)
        return;
    /* Unlink sp wherever it sits in this thread's stack; a span pushed on another thread is
     * not found here and stays as it is (a caller bug the docs rule out). */
    keel_span **pp = &tls_current;
    while (*pp != NULL && *pp != sp)
        pp = &(*pp)->cur_prev;
    if (*pp == NULL)
        return;
    *pp = sp->cur_prev;
    sp->cur_prev = NULL;
    sp->pushed = 0;
}

keel_span *keel_span_current(void)
{
    return tls_current;
}

/* ---------------------------------------------------------------- free -- */

void keel__span_free(keel_span *sp)
{
    if (sp == NULL)
        return;
    for (uint32_t i = 0; i < sp->nattrs; i++)
        tattr_clear(&sp->attrs[i]);
    keel_free(sp->attrs);
    for (uint32_t i = 0; i < sp->nevents; i++)
        event_clear(&sp->events[i]);
    keel_free(sp->events);
    keel_free(sp->name);
    keel_free(sp->tracestate);
    keel_free(sp->status_msg);
    keel_free(sp->exception);
    keel_free(sp);
}

/* ---------------------------------------------------------- log export -- */

static const char *const kind_names[] = {"unspecified", "internal", "server",
                                         "client",      "producer", "consumer"};
static const char *const status_names[] = {"UNSET", "OK", "ERROR"};

/* Field keys the record itself uses: attributes with these keys get an "attr." prefix. */
static int reserved_key(const char *k)
{
    static const char *const r[] = {"trace_id", "span_id",        "parent_span_id",
                                    "name",     "kind",           "duration_ms",
                                    "status",   "status_message", "events",
                                    "exception", "tracestate"};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(r); i++)
        if (strcmp(k, r[i]) == 0)
            return 1;
    return 0;
}

static void put_u64(keel__lbuf *b, uint64_t v)
{
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    keel__lbuf_put(b, p, (size_t)(end - p));
}

static void put_attr_value(keel__lbuf *b, const keel__tattr *a)
{
    char tmp[40];
    switch (a->type) {
    case KEEL_TRACE_ATTR_STR: keel__lbuf_json_str(b, a->v.s, strlen(a->v.s)); break;
    case KEEL_TRACE_ATTR_INT:
        if (a->v.i < 0) {
            keel__lbuf_putc(b, '-');
            put_u64(b, (uint64_t)0 - (uint64_t)a->v.i);
        } else {
            put_u64(b, (uint64_t)a->v.i);
        }
        break;
    case KEEL_TRACE_ATTR_DOUBLE:
        if (!isfinite(a->v.d)) {
            keel__lbuf_puts(b, "null");
        } else {
            snprintf(tmp, sizeof tmp, "%.17g", a->v.d);
            keel__lbuf_puts(b, tmp);
        }
        break;
    case KEEL_TRACE_ATTR_BOOL: keel__lbuf_puts(b, a->v.b ? "true" : "false"); break;
    }
}

/* The events as a JSON array text:
 * [{"name":"...","timestamp":"<ISO-8601>","attributes":{...}},...].  Events that would make
 * the text longer than max are left out, so the result is always complete JSON. */
static void events_json(const keel_span *sp, keel__lbuf *b)
{
    keel__lbuf_putc(b, '[');
    for (uint32_t i = 0; i < sp->nevents && !b->err; i++) {
        const keel__tevent *ev = &sp->events[i];
        size_t mark = b->len;
        if (i > 0)
            keel__lbuf_putc(b, ',');
        keel__lbuf_puts(b, "{\"name\":");
        keel__lbuf_json_str(b, ev->name, strlen(ev->name));
        char iso[KEEL_TIME_ISO8601_SIZE];
        keel_time_iso8601((int64_t)(ev->time_unix_ns / 1000000u), iso);
        keel__lbuf_puts(b, ",\"timestamp\":\"");
        keel__lbuf_puts(b, iso);
        keel__lbuf_puts(b, "\",\"attributes\":{");
        for (uint32_t j = 0; j < ev->nattrs; j++) {
            if (j > 0)
                keel__lbuf_putc(b, ',');
            keel__lbuf_json_str(b, ev->attrs[j].key, strlen(ev->attrs[j].key));
            keel__lbuf_putc(b, ':');
            put_attr_value(b, &ev->attrs[j]);
        }
        keel__lbuf_puts(b, "}}");
        if (b->err == KEEL_ETOOBIG || (!b->err && b->len >= b->max)) {
            /* keep room for the closing bracket */
            b->len = mark;
            b->err = 0;
            break;
        }
    }
    keel__lbuf_putc(b, ']');
}

static void log_span(const keel_span *sp, keel_log_level lv)
{
    static _Atomic(keel_logger *) lg;
    keel_logger *l = atomic_load(&lg);
    if (l == NULL) {
        l = keel_logger_get("keel.trace"); /* interned: racing threads store the same value */
        atomic_store(&lg, l);
    }
    if (sp->status == KEEL_SPAN_STATUS_ERROR && lv < KEEL_LOG_LEVEL_ERROR)
        lv = KEEL_LOG_LEVEL_ERROR;
    if (!keel_log_enabled(l, lv))
        return;
    char tid[KEEL_TRACE_ID_HEX_SIZE], sid[KEEL_SPAN_ID_HEX_SIZE], pid[KEEL_SPAN_ID_HEX_SIZE];
    keel__hex_encode(sp->ctx.trace_id, KEEL_TRACE_ID_LEN, tid);
    keel__hex_encode(sp->ctx.span_id, KEEL_SPAN_ID_LEN, sid);
    keel__hex_encode(sp->parent_id, KEEL_SPAN_ID_LEN, pid);
    uint64_t dns = sp->end_unix_ns - sp->start_unix_ns;
    double ms = (double)((dns + 500) / 1000) / 1000.0; /* rounded to the microsecond */
    keel_log_field f[KEEL_LOG_FIELDS_MAX];
    size_t n = 0;
    f[n++] = KEEL_LF_STR("trace_id", tid);
    f[n++] = KEEL_LF_STR("span_id", sid);
    f[n++] = KEEL_LF_STR("parent_span_id", sp->has_parent ? pid : NULL);
    f[n++] = KEEL_LF_STR("name", sp->name);
    f[n++] = KEEL_LF_STR("kind", kind_names[sp->kind]);
    f[n++] = KEEL_LF_DOUBLE("duration_ms", ms);
    f[n++] = KEEL_LF_STR("status", status_names[sp->status]);
    if (sp->status_msg != NULL)
        f[n++] = KEEL_LF_STR("status_message", sp->status_msg);
    if (sp->tracestate != NULL)
        f[n++] = KEEL_LF_STR("tracestate", sp->tracestate);
    keel__lbuf ev;
    keel__lbuf_init(&ev, KEEL_LOG_FIELD_STR_MAX - 8);
    if (sp->nevents > 0) {
        events_json(sp, &ev);
        if (!ev.err)
            f[n++] = KEEL_LF_STRN("events", ev.p, ev.len);
    }
    if (sp->exception != NULL)
        f[n++] = KEEL_LF_EXCEPTION(sp->exception);
    /* Attributes fill the remaining fields; "attr." keys are built in keys[]. */
    char keys[KEEL_LOG_FIELDS_MAX][KEEL_LOG_KEY_MAX + 1];
    for (uint32_t i = 0; i < sp->nattrs && n < KEEL_LOG_FIELDS_MAX; i++) {
        const keel__tattr *a = &sp->attrs[i];
        const char *k = a->key;
        if (reserved_key(k)) {
            snprintf(keys[n], sizeof keys[n], "attr.%s", k);
            k = keys[n];
        }
        switch (a->type) {
        case KEEL_TRACE_ATTR_STR: f[n] = KEEL_LF_STR(k, a->v.s); break;
        case KEEL_TRACE_ATTR_INT: f[n] = KEEL_LF_INT(k, a->v.i); break;
        case KEEL_TRACE_ATTR_DOUBLE: f[n] = KEEL_LF_DOUBLE(k, a->v.d); break;
        case KEEL_TRACE_ATTR_BOOL: f[n] = KEEL_LF_BOOL(k, a->v.b); break;
        }
        n++;
    }
    keel_log_write(l, lv, __FILE__, __LINE__, __func__, f, n, "%s", sp->name);
    keel__lbuf_free(&ev);
    atomic_fetch_add(&st_logged, 1);
}

void keel_span_end(keel_span *sp)
{
    if (sp == NULL)
        return;
    keel_span_pop(sp);
    sp->end_unix_ns = sp->start_unix_ns + (keel_time_mono_ns() - sp->start_mono_ns);
    atomic_fetch_add(&st_ended, 1);
    if (!sp->recording) {
        keel__span_free(sp);
        return;
    }
    pthread_rwlock_rdlock(&g_lock);
    if (g.log_spans)
        log_span(sp, g.log_level);
    if (g.otlp != NULL)
        (void)keel__otlp_enqueue(g.otlp, sp); /* taken even when the queue is full */
    else
        keel__span_free(sp);
    pthread_rwlock_unlock(&g_lock);
}
