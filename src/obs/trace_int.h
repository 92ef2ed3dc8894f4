/*
 * trace_int.h - private definitions shared by the tracer (trace.c), the OTLP
 * exporter (trace_otlp.c) and the HTTP layer (trace_mw.c).  Never installed.
 *
 * An ended, sampled span is immutable: keel_span_end() writes its log record
 * and then hands the struct itself to the exporter queue (linked through
 * qnext), so export needs no copy.  Whoever holds an ended span frees it with
 * keel__span_free().
 */
#ifndef KEEL_TRACE_INT_H
#define KEEL_TRACE_INT_H

#include "keel_int.h"

#include <keel/trace.h>

/* One stored attribute (key and string value owned). */
typedef struct keel__tattr {
    char *key;
    keel_trace_attr_type type;
    union {
        char *s;
        int64_t i;
        double d;
        int b;
    } v;
} keel__tattr;

typedef struct keel__tevent {
    char *name;
    uint64_t time_unix_ns;
    keel__tattr *attrs;
    uint32_t nattrs;
    uint32_t dropped_attrs;
} keel__tevent;

struct keel_span {
    keel_span_context ctx;
    uint8_t parent_id[KEEL_SPAN_ID_LEN];
    int has_parent;
    int recording;
    keel_span_kind kind;
    char *name;
    char *tracestate;
    uint64_t start_unix_ns;
    uint64_t end_unix_ns;
    uint64_t start_mono_ns;

    keel__tattr *attrs;
    uint32_t nattrs, attrs_cap, dropped_attrs;
    keel__tevent *events;
    uint32_t nevents, events_cap, dropped_events;

    keel_span_status status;
    char *status_msg;
    char *exception; /* last recorded error, "KEEL_EIO: message", for the log record */

    /* current-span stack of the thread that pushed it */
    keel_span *cur_prev;
    int pushed;
    /* exporter queue */
    keel_span *qnext;
};

/* Free an ended (or never-started) span and everything it owns.  NULL is a no-op. */
void keel__span_free(keel_span *sp);

/* ---------------------------------------------------------------- OTLP -- */

typedef struct keel__otlp keel__otlp;

typedef struct keel__otlp_config {
    const char *url; /* full URL, ".../v1/traces" */
    const char *service_name;
    const char *service_version; /* NULL = omitted */
    const char *environment;     /* NULL = omitted */
    size_t queue_capacity;
    size_t batch_size;
    uint32_t interval_ms;
    uint32_t timeout_ms;
    uint32_t shutdown_ms;
} keel__otlp_config;

typedef struct keel__otlp_stats {
    uint64_t queued, exported, dropped, failed, requests_failed;
} keel__otlp_stats;

/* Create an exporter (config copied).  start_thread 0 leaves the queue undrained until
 * keel__otlp_start_thread() (tests use it to fill the queue deterministically).
 * KEEL_OK, KEEL_ENOMEM, KEEL_EIO (thread or libcurl). */
keel_err keel__otlp_create(keel__otlp **out, const keel__otlp_config *cfg, int start_thread);
keel_err keel__otlp_start_thread(keel__otlp *x);
/* Queue an ended span (taken in every case: freed when dropped).  KEEL_OK or KEEL_EFULL. */
keel_err keel__otlp_enqueue(keel__otlp *x, keel_span *sp);
/* Wait until everything queued before the call is done.  KEEL_OK, KEEL_ETIMEOUT. */
keel_err keel__otlp_flush(keel__otlp *x, uint64_t timeout_ms);
/* Drain within shutdown_ms (the rest is dropped), join the thread, store the final counters
 * in *final (may be NULL) and free.  NULL x: no-op. */
void keel__otlp_destroy(keel__otlp *x, keel__otlp_stats *final);
void keel__otlp_stats_get(const keel__otlp *x, keel__otlp_stats *out);

/* Serialise spans (a qnext-linked list of n) as an ExportTraceServiceRequest JSON body.
 * Returns a keel_malloc'd NUL-terminated string (caller keel_free()s it) and its length,
 * or NULL on OOM or past max bytes. */
char *keel__otlp_encode(const keel__otlp_config *cfg, const keel_span *head, size_t n,
                        size_t max, size_t *len);

/* Build the traces URL from an OTEL_EXPORTER_OTLP_ENDPOINT value ("/v1/traces" appended).
 * keel_malloc'd; NULL on OOM. */
char *keel__otlp_traces_url(const char *endpoint);

#endif /* KEEL_TRACE_INT_H */
