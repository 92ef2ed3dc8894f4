/* trace_otlp.c - OTLP/HTTP JSON export of ended spans: a bounded queue drained
 * by one background thread that POSTs ExportTraceServiceRequest bodies to
 * <endpoint>/v1/traces with libcurl.
 *
 * The queue is an intrusive list through keel_span.qnext, so enqueueing never
 * allocates; a full queue drops the span and counts it.  The thread sends a
 * batch when batch_size spans are waiting, when the oldest waiting span is
 * interval_ms old, on keel__otlp_flush() and on shutdown.  Failed POSTs are
 * logged (logger "keel.trace", never with the URL or the body) and counted;
 * they are not retried, so a collector outage costs spans, never memory or
 * caller latency. */
#include "keel_int.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <curl/curl.h>

#include <keel/log.h>
#include <keel/trace.h>
#include <keel/version.h>

#include "log_int.h"
#include "trace_int.h"

/* Largest request body built; a batch that does not fit fails (and is counted). */
#define OTLP_BODY_MAX (32u * 1024u * 1024u)
/* Bytes of a collector response kept (for nothing but draining the socket). */
#define OTLP_RESPONSE_MAX 4096u

struct keel__otlp {
    keel__otlp_config cfg; /* strings owned (copied) */
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* to the thread: work, flush, stop */
    pthread_cond_t done_cv; /* to flushers: done_seq moved */
    keel_span *head, *tail;
    size_t count;
    uint64_t first_ms;     /* monotonic ms when the queue last became non-empty */
    uint64_t accepted_seq; /* spans ever accepted */
    uint64_t done_seq;     /* accepted spans finished (sent, failed or dropped at shutdown) */
    uint64_t flush_target; /* a flusher waits for done_seq >= this */
    int stopping;
    uint64_t stop_deadline_ms;
    int thread_started;
    pthread_t thread;
    keel__otlp_stats st;
    CURL *curl;
    struct curl_slist *headers;
};

/* ===================================================================== JSON == */

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

/* A uint64 as a JSON string (proto3 JSON encodes 64-bit integers as strings). */
static void put_u64_str(keel__lbuf *b, uint64_t v)
{
    keel__lbuf_putc(b, '"');
    put_u64(b, v);
    keel__lbuf_putc(b, '"');
}

static void put_i64_str(keel__lbuf *b, int64_t v)
{
    keel__lbuf_putc(b, '"');
    if (v < 0) {
        keel__lbuf_putc(b, '-');
        put_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(b, (uint64_t)v);
    }
    keel__lbuf_putc(b, '"');
}

/* Shortest of %.15g / %.17g that reads back exactly; proto3 JSON spells the non-finite
 * values as the strings "NaN", "Infinity" and "-Infinity". */
static void put_double(keel__lbuf *b, double d)
{
    if (isnan(d)) {
        keel__lbuf_puts(b, "\"NaN\"");
        return;
    }
    if (isinf(d)) {
        keel__lbuf_puts(b, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.15g", d);
    if (strtod(tmp, NULL) != d)
        snprintf(tmp, sizeof tmp, "%.17g", d);
    keel__lbuf_puts(b, tmp);
}

static void put_str(keel__lbuf *b, const char *s)
{
    keel__lbuf_json_str(b, s, strlen(s));
}

static void put_hex(keel__lbuf *b, const uint8_t *p, size_t n)
{
    char hex[2 * KEEL_TRACE_ID_LEN + 1];
    KEEL_ASSERT(n <= KEEL_TRACE_ID_LEN);
    keel__hex_encode(p, n, hex);
    keel__lbuf_putc(b, '"');
    keel__lbuf_put(b, hex, 2 * n);
    keel__lbuf_putc(b, '"');
}

/* {"key":"k","value":{"stringValue":"v"}} and friends. */
static void put_kv(keel__lbuf *b, const keel__tattr *a)
{
    keel__lbuf_puts(b, "{\"key\":");
    put_str(b, a->key);
    keel__lbuf_puts(b, ",\"value\":{");
    switch (a->type) {
    case KEEL_TRACE_ATTR_STR:
        keel__lbuf_puts(b, "\"stringValue\":");
        put_str(b, a->v.s);
        break;
    case KEEL_TRACE_ATTR_INT:
        keel__lbuf_puts(b, "\"intValue\":");
        put_i64_str(b, a->v.i);
        break;
    case KEEL_TRACE_ATTR_DOUBLE:
        keel__lbuf_puts(b, "\"doubleValue\":");
        put_double(b, a->v.d);
        break;
    case KEEL_TRACE_ATTR_BOOL:
        keel__lbuf_puts(b, "\"boolValue\":");
        keel__lbuf_puts(b, a->v.b ? "true" : "false");
        break;
    }
    keel__lbuf_puts(b, "}}");
}

static void put_attrs(keel__lbuf *b, const keel__tattr *a, uint32_t n)
{
    keel__lbuf_puts(b, "\"attributes\":[");
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0)
            keel__lbuf_putc(b, ',');
        put_kv(b, &a[i]);
    }
    keel__lbuf_putc(b, ']');
}

static void put_str_kv(keel__lbuf *b, const char *key, const char *value)
{
    keel__tattr a;
    memset(&a, 0, sizeof a);
    a.key = (char *)(uintptr_t)key; /* put_kv only reads */
    a.type = KEEL_TRACE_ATTR_STR;
    a.v.s = (char *)(uintptr_t)value;
    put_kv(b, &a);
}

static void put_span(keel__lbuf *b, const keel_span *sp)
{
    keel__lbuf_puts(b, "{\"traceId\":");
    put_hex(b, sp->ctx.trace_id, KEEL_TRACE_ID_LEN);
    keel__lbuf_puts(b, ",\"spanId\":");
    put_hex(b, sp->ctx.span_id, KEEL_SPAN_ID_LEN);
    if (sp->has_parent) {
        keel__lbuf_puts(b, ",\"parentSpanId\":");
        put_hex(b, sp->parent_id, KEEL_SPAN_ID_LEN);
    }
    if (sp->tracestate != NULL) {
        keel__lbuf_puts(b, ",\"traceState\":");
        put_str(b, sp->tracestate);
    }
    keel__lbuf_puts(b, ",\"name\":");
    put_str(b, sp->name);
    keel__lbuf_puts(b, ",\"kind\":");
    put_u64(b, (uint64_t)sp->kind);
    keel__lbuf_puts(b, ",\"startTimeUnixNano\":");
    put_u64_str(b, sp->start_unix_ns);
    keel__lbuf_puts(b, ",\"endTimeUnixNano\":");
    put_u64_str(b, sp->end_unix_ns);
    keel__lbuf_putc(b, ',');
    put_attrs(b, sp->attrs, sp->nattrs);
    if (sp->dropped_attrs > 0) {
        keel__lbuf_puts(b, ",\"droppedAttributesCount\":");
        put_u64(b, sp->dropped_attrs);
    }
    keel__lbuf_puts(b, ",\"events\":[");
    for (uint32_t i = 0; i < sp->nevents; i++) {
        const keel__tevent *ev = &sp->events[i];
        if (i > 0)
            keel__lbuf_putc(b, ',');
        keel__lbuf_puts(b, "{\"timeUnixNano\":");
        put_u64_str(b, ev->time_unix_ns);
        keel__lbuf_puts(b, ",\"name\":");
        put_str(b, ev->name);
        keel__lbuf_putc(b, ',');
        put_attrs(b, ev->attrs, ev->nattrs);
        if (ev->dropped_attrs > 0) {
            keel__lbuf_puts(b, ",\"droppedAttributesCount\":");
            put_u64(b, ev->dropped_attrs);
        }
        keel__lbuf_putc(b, '}');
    }
    keel__lbuf_putc(b, ']');
    if (sp->dropped_events > 0) {
        keel__lbuf_puts(b, ",\"droppedEventsCount\":");
        put_u64(b, sp->dropped_events);
    }
    keel__lbuf_puts(b, ",\"status\":{");
    if (sp->status != KEEL_SPAN_STATUS_UNSET) {
        keel__lbuf_puts(b, "\"code\":");
        put_u64(b, (uint64_t)sp->status);
        if (sp->status_msg != NULL) {
            keel__lbuf_puts(b, ",\"message\":");
            put_str(b, sp->status_msg);
        }
    }
    keel__lbuf_puts(b, "}}");
}

char *keel__otlp_encode(const keel__otlp_config *cfg, const keel_span *head, size_t n,
                        size_t max, size_t *len)
{
    keel__lbuf b;
    keel__lbuf_init(&b, max);
    keel__lbuf_puts(&b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    put_str_kv(&b, "service.name", cfg->service_name ? cfg->service_name : "keel");
    if (cfg->service_version != NULL) {
        keel__lbuf_putc(&b, ',');
        put_str_kv(&b, "service.version", cfg->service_version);
    }
    if (cfg->environment != NULL) {
        keel__lbuf_putc(&b, ',');
        put_str_kv(&b, "deployment.environment", cfg->environment);
    }
    keel__lbuf_putc(&b, ',');
    put_str_kv(&b, "telemetry.sdk.name", "keel");
    keel__lbuf_putc(&b, ',');
    put_str_kv(&b, "telemetry.sdk.language", "c");
    keel__lbuf_putc(&b, ',');
    put_str_kv(&b, "telemetry.sdk.version", KEEL_VERSION_STRING);
    keel__lbuf_puts(&b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"keel\",\"version\":\"" KEEL_VERSION_STRING
                        "\"},\"spans\":[");
    size_t i = 0;
    for (const keel_span *sp = head; sp != NULL && i < n; sp = sp->qnext, i++) {
        if (i > 0)
            keel__lbuf_putc(&b, ',');
        put_span(&b, sp);
    }
    keel__lbuf_puts(&b, "]}]}]}");
    if (b.err || b.p == NULL) {
        keel__lbuf_free(&b);
        return NULL;
    }
    if (len != NULL)
        *len = b.len;
    return b.p; /* NUL-terminated, keel_malloc'd */
}

char *keel__otlp_traces_url(const char *endpoint)
{
    if (endpoint == NULL)
        return NULL;
    size_t n = strlen(endpoint);
    keel_buf b;
    keel_buf_init(&b, n + 16);
    keel_err e = keel_buf_append(&b, endpoint, n);
    if (e == KEEL_OK)
        e = keel_buf_append_str(&b, (n > 0 && endpoint[n - 1] == '/') ? "v1/traces"
                                                                        : "/v1/traces");
    char *s = e == KEEL_OK ? keel_buf_take(&b, NULL) : NULL;
    keel_buf_cleanup(&b);
    return s;
}

/* ================================================================= export == */

static keel_logger *trace_logger(void)
{
    static _Atomic(keel_logger *) lg;
    keel_logger *l = atomic_load(&lg);
    if (l == NULL) {
        l = keel_logger_get("keel.trace");
        atomic_store(&lg, l);
    }
    return l;
}

static uint64_t mono_ms(void)
{
    return keel_time_mono_ms();
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    KEEL_UNUSED(p);
    size_t *seen = ud;
    *seen += size * n;
    return *seen > OTLP_RESPONSE_MAX ? 0 : size * n; /* 0 aborts an absurd response */
}

/* POST one batch (the thread, no lock held).  Returns 1 when the collector took it. */
static int post_batch(keel__otlp *x, const keel_span *head, size_t n, uint32_t timeout_ms)
{
    size_t len = 0;
    char *body = keel__otlp_encode(&x->cfg, head, n, OTLP_BODY_MAX, &len);
    if (body == NULL) {
        KEEL_LOG_WARNING(trace_logger(), "OTLP export of %zu spans failed: body not built", n);
        return 0;
    }
    size_t seen = 0;
    CURL *c = x->curl;
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &seen);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    keel_free(body);
    if (rc != CURLE_OK) {
        KEEL_LOG_WARNING(trace_logger(), "OTLP export of %zu spans failed: %s", n,
                         curl_easy_strerror(rc));
        return 0;
    }
    if (status < 200 || status > 299) {
        KEEL_LOG_WARNING(trace_logger(), "OTLP export of %zu spans failed: HTTP %ld", n, status);
        return 0;
    }
    return 1;
}

static void free_list(keel_span *sp)
{
    while (sp != NULL) {
        keel_span *next = sp->qnext;
        keel__span_free(sp);
        sp = next;
    }
}

/* Wait on cv until the absolute monotonic millisecond deadline. */
static void wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t deadline_ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_ms / 1000u);
    ts.tv_nsec = (long)(deadline_ms % 1000u) * 1000000L;
    pthread_cond_timedwait(cv, mu, &ts);
}

/* Should the thread send now?  Called with the lock held. */
static int batch_due(const keel__otlp *x)
{
    if (x->count == 0)
        return 0;
    return x->stopping || x->count >= x->cfg.batch_size || x->flush_target > x->done_seq ||
           mono_ms() >= x->first_ms + x->cfg.interval_ms;
}

static void *otlp_main(void *arg)
{
    keel__otlp *x = arg;
    pthread_mutex_lock(&x->mu);
    for (;;) {
        while (!batch_due(x) && !(x->stopping && x->count == 0)) {
            if (x->count == 0)
                pthread_cond_wait(&x->work_cv, &x->mu);
            else
                wait_until(&x->work_cv, &x->mu, x->first_ms + x->cfg.interval_ms);
        }
        if (x->count == 0)
            break; /* stopping and drained */
        uint32_t timeout = x->cfg.timeout_ms;
        if (x->stopping) {
            uint64_t now = mono_ms();
            if (now >= x->stop_deadline_ms) {
                /* shutdown budget spent: drop the rest */
                keel_span *rest = x->head;
                x->st.dropped += x->count;
                x->done_seq += x->count;
                x->head = x->tail = NULL;
                x->count = 0;
                pthread_cond_broadcast(&x->done_cv);
                pthread_mutex_unlock(&x->mu);
                free_list(rest);
                pthread_mutex_lock(&x->mu);
                break;
            }
            if (x->stop_deadline_ms - now < timeout)
                timeout = (uint32_t)(x->stop_deadline_ms - now);
        }
        /* take one batch */
        keel_span *batch = x->head, *last = x->head;
        size_t n = 1;
        while (n < x->cfg.batch_size && last->qnext != NULL) {
            last = last->qnext;
            n++;
        }
        x->head = last->qnext;
        if (x->head == NULL)
            x->tail = NULL;
        last->qnext = NULL;
        x->count -= n;
        if (x->count > 0)
            x->first_ms = mono_ms(); /* the leftovers wait at most another interval */
        pthread_mutex_unlock(&x->mu);

        int ok = post_batch(x, batch, n, timeout);
        free_list(batch);

        pthread_mutex_lock(&x->mu);
        if (ok) {
            x->st.exported += n;
        } else {
            x->st.failed += n;
            x->st.requests_failed++;
        }
        x->done_seq += n;
        pthread_cond_broadcast(&x->done_cv);
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* ============================================================ lifecycle == */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void free_cfg_strings(keel__otlp_config *c)
{
    keel_free((void *)(uintptr_t)c->url);
    keel_free((void *)(uintptr_t)c->service_name);
    keel_free((void *)(uintptr_t)c->service_version);
    keel_free((void *)(uintptr_t)c->environment);
}

static keel_err copy_str(const char *in, const char **out)
{
    *out = NULL;
    if (in == NULL)
        return KEEL_OK;
    char *s = keel_strdup(in);
    *out = s;
    return s ? KEEL_OK : KEEL_ENOMEM;
}

static void otlp_free(keel__otlp *x)
{
    if (x->headers)
        curl_slist_free_all(x->headers);
    if (x->curl)
        curl_easy_cleanup(x->curl);
    pthread_cond_destroy(&x->work_cv);
    pthread_cond_destroy(&x->done_cv);
    pthread_mutex_destroy(&x->mu);
    free_cfg_strings(&x->cfg);
    keel_free(x);
}

keel_err keel__otlp_create(keel__otlp **out, const keel__otlp_config *cfg, int start_thread)
{
    if (out == NULL || cfg == NULL || cfg->url == NULL || cfg->queue_capacity == 0 ||
        cfg->batch_size == 0)
        return KEEL_EINVAL;
    *out = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return KEEL_EIO;
    keel__otlp *x = keel__new(keel__otlp);
    if (x == NULL)
        return KEEL_ENOMEM;
    if (pthread_mutex_init(&x->mu, NULL) != 0) {
        keel_free(x);
        return KEEL_ENOMEM;
    }
    if (keel__cond_init_mono(&x->work_cv) != 0) {
        pthread_mutex_destroy(&x->mu);
        keel_free(x);
        return KEEL_ENOMEM;
    }
    if (keel__cond_init_mono(&x->done_cv) != 0) {
        pthread_cond_destroy(&x->work_cv);
        pthread_mutex_destroy(&x->mu);
        keel_free(x);
        return KEEL_ENOMEM;
    }
    x->cfg = *cfg;
    x->cfg.url = x->cfg.service_name = x->cfg.service_version = x->cfg.environment = NULL;
    keel_err e;
    if ((e = copy_str(cfg->url, &x->cfg.url)) != KEEL_OK ||
        (e = copy_str(cfg->service_name, &x->cfg.service_name)) != KEEL_OK ||
        (e = copy_str(cfg->service_version, &x->cfg.service_version)) != KEEL_OK ||
        (e = copy_str(cfg->environment, &x->cfg.environment)) != KEEL_OK) {
        otlp_free(x);
        return e;
    }
    x->curl = curl_easy_init();
    x->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (x->curl == NULL || x->headers == NULL) {
        otlp_free(x);
        return KEEL_ENOMEM;
    }
    CURL *c = x->curl;
    curl_easy_setopt(c, CURLOPT_URL, x->cfg.url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "keel/" KEEL_VERSION_STRING);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    if (start_thread && (e = keel__otlp_start_thread(x)) != KEEL_OK) {
        otlp_free(x);
        return e;
    }
    *out = x;
    return KEEL_OK;
}

keel_err keel__otlp_start_thread(keel__otlp *x)
{
    if (x == NULL)
        return KEEL_EINVAL;
    pthread_mutex_lock(&x->mu);
    keel_err e = KEEL_OK;
    if (x->thread_started)
        e = KEEL_ESTATE;
    else if (keel__thread_start(&x->thread, otlp_main, x, "otlp") != 0)
        e = KEEL_EIO;
    else
        x->thread_started = 1;
    pthread_mutex_unlock(&x->mu);
    return e;
}

keel_err keel__otlp_enqueue(keel__otlp *x, keel_span *sp)
{
    if (x == NULL || sp == NULL) {
        keel__span_free(sp);
        return KEEL_EINVAL;
    }
    sp->qnext = NULL;
    pthread_mutex_lock(&x->mu);
    if (x->count >= x->cfg.queue_capacity || x->stopping) {
        x->st.dropped++;
        pthread_mutex_unlock(&x->mu);
        keel__span_free(sp);
        return KEEL_EFULL;
    }
    if (x->tail)
        x->tail->qnext = sp;
    else
        x->head = sp;
    x->tail = sp;
    x->count++;
    x->accepted_seq++;
    x->st.queued++;
    if (x->count == 1)
        x->first_ms = mono_ms();
    /* wake the thread when it must start its interval timer or a batch is full */
    if (x->count == 1 || x->count == x->cfg.batch_size)
        pthread_cond_signal(&x->work_cv);
    pthread_mutex_unlock(&x->mu);
    return KEEL_OK;
}

keel_err keel__otlp_flush(keel__otlp *x, uint64_t timeout_ms)
{
    if (x == NULL)
        return KEEL_OK;
    uint64_t deadline = mono_ms() + timeout_ms;
    pthread_mutex_lock(&x->mu);
    uint64_t target = x->accepted_seq;
    if (x->flush_target < target)
        x->flush_target = target;
    pthread_cond_signal(&x->work_cv);
    keel_err e = KEEL_OK;
    while (x->done_seq < target) {
        if (mono_ms() >= deadline) {
            e = KEEL_ETIMEOUT;
            break;
        }
        wait_until(&x->done_cv, &x->mu, deadline);
    }
    pthread_mutex_unlock(&x->mu);
    return e;
}

void keel__otlp_stats_get(const keel__otlp *x, keel__otlp_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    if (x == NULL)
        return;
    keel__otlp *m = (keel__otlp *)(uintptr_t)x; /* the mutex is not part of the value */
    pthread_mutex_lock(&m->mu);
    *out = m->st;
    pthread_mutex_unlock(&m->mu);
}

void keel__otlp_destroy(keel__otlp *x, keel__otlp_stats *final)
{
    if (x == NULL)
        return;
    pthread_mutex_lock(&x->mu);
    x->stopping = 1;
    x->stop_deadline_ms = mono_ms() + x->cfg.shutdown_ms;
    pthread_cond_signal(&x->work_cv);
    int started = x->thread_started;
    pthread_mutex_unlock(&x->mu);
    if (started) {
        pthread_join(x->thread, NULL);
    } else {
        /* nobody to send: what is queued is dropped */
        x->st.dropped += x->count;
        x->done_seq += x->count;
        free_list(x->head);
        x->head = x->tail = NULL;
        x->count = 0;
    }
    if (final != NULL)
        *final = x->st;
    otlp_free(x);
}
