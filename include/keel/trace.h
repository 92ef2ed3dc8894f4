/*
 * keel/trace.h - distributed tracing (seed 000 section 9A): spans with
 * attributes, events, status and recorded errors; W3C Trace Context
 * propagation (traceparent / tracestate); export of every ended span as one
 * JSON log record and, when an OTLP endpoint is configured, as OTLP/HTTP JSON.
 *
 * Module contract: one process-wide tracer, configured by keel_trace_start()
 * (spans may be started before it: they are then sampled always-on,
 * parent-based, and exported to the log only).  A keel_span belongs to one
 * thread at a time and is not thread-safe; hand it to another thread only
 * together with the responsibility to end it.  keel_span_end() consumes the
 * span.  Every thread has its own stack of current spans (keel_span_push /
 * keel_span_pop); keel_span_start() makes the new span a child of the
 * calling thread's current span.
 *
 * Sampling: the decision is taken once, when a span starts.  With
 * parent_based (the default) a span with a parent inherits the parent's
 * sampled flag; a root span asks the root sampler (always-on by default).
 * An unsampled span still has ids (so that the context propagates with the
 * sampled flag cleared) but records nothing and is never exported.
 *
 * Export never blocks the caller: the log record goes through keel_log_write()
 * (so the log hook, e.g. redaction, applies), and OTLP export queues the span
 * on a bounded queue drained by a background thread (a full queue drops the
 * span and counts it).
 */
#ifndef KEEL_TRACE_H
#define KEEL_TRACE_H

#include <stdint.h>

#include <keel/chain.h>
#include <keel/common.h>
#include <keel/log.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------- trace context -- */

/** Bytes of a trace id and a span id. */
#define KEEL_TRACE_ID_LEN 16
#define KEEL_SPAN_ID_LEN 8
/** Size of a hex trace id / span id plus NUL. */
#define KEEL_TRACE_ID_HEX_SIZE 33
#define KEEL_SPAN_ID_HEX_SIZE 17
/** Size of a formatted version-00 traceparent ("00-<32>-<16>-<2>", 55 bytes) plus NUL. */
#define KEEL_TRACEPARENT_SIZE 56
/** Longest traceparent header value looked at (longer values are rejected). */
#define KEEL_TRACEPARENT_MAX 512
/** Longest tracestate kept (the W3C limit); longer values are dropped, not truncated. */
#define KEEL_TRACESTATE_MAX 512
/** The sampled bit of the trace flags. */
#define KEEL_TRACE_FLAG_SAMPLED 0x01u

/** The propagated part of a span: a transparent value type. */
typedef struct keel_span_context {
    uint8_t trace_id[KEEL_TRACE_ID_LEN];
    uint8_t span_id[KEEL_SPAN_ID_LEN];
    uint8_t flags;  /* trace flags (KEEL_TRACE_FLAG_SAMPLED) */
    uint8_t remote; /* 1 when parsed from a traceparent header */
} keel_span_context;

/** Parse a W3C traceparent header value.  Leading and trailing spaces and tabs are ignored.
 *  Version 00 must be exactly "00-<32 hex>-<16 hex>-<2 hex>" in lower case.  A higher version
 *  (any lower-case hex pair but "ff") is parsed for its first four fields: at least 55 bytes,
 *  and the flags are followed by the end of the value or by '-'.  All-zero trace or parent ids
 *  are invalid.  On success out->remote is 1 and out->flags holds the flags as sent.
 *  @return KEEL_OK; KEEL_EPARSE (malformed; diag->offset is the byte offset of the problem);
 *  KEEL_EINVAL (s.ptr NULL with s.len > 0, or out NULL).
 *  Thread-safety: any thread. Ownership: borrows s; *out is the caller's. Errors: as above. */
KEEL_API KEEL_NODISCARD keel_err keel_traceparent_parse(keel_str s, keel_span_context *out,
                                                        keel_diag *diag);
/** Format sc as a version-00 traceparent (lower-case hex) into out.
 *  @return the length (55), or 0 if sc or out is NULL.
 *  Thread-safety: any thread. Ownership: borrows sc; out is the caller's. Errors: none. */
KEEL_API size_t keel_traceparent_format(const keel_span_context *sc,
                                        char out[KEEL_TRACEPARENT_SIZE]);
/** 1 if sc is not NULL and neither its trace id nor its span id is all zeros.
 *  Thread-safety: any thread. Errors: none. */
KEEL_API int keel_span_context_valid(const keel_span_context *sc);
/** 1 if a tracestate value may be passed through: at most KEEL_TRACESTATE_MAX bytes of
 *  printable ASCII (0x20..0x7e).  The list-members are not parsed further.
 *  Thread-safety: any thread. Errors: none. */
KEEL_API int keel_tracestate_valid(keel_str s);
/** Lower-case hex of sc's trace id / span id.  NULL arguments are ignored.
 *  Thread-safety: any thread. Ownership: out is the caller's. Errors: none. */
KEEL_API void keel_trace_id_hex(const keel_span_context *sc, char out[KEEL_TRACE_ID_HEX_SIZE]);
KEEL_API void keel_span_id_hex(const keel_span_context *sc, char out[KEEL_SPAN_ID_HEX_SIZE]);

/* -------------------------------------------------------------- tracer -- */

/** Root sampler (for spans without a parent, or every span when parent_based is 0). */
typedef enum keel_trace_sampler {
    KEEL_TRACE_SAMPLE_ALWAYS_ON = 0,
    KEEL_TRACE_SAMPLE_ALWAYS_OFF = 1,
    KEEL_TRACE_SAMPLE_RATIO = 2 /* trace-id based: the same trace id always decides alike */
} keel_trace_sampler;

/** Tracer configuration: fill with keel_trace_config_default(), then override fields. */
typedef struct keel_trace_config {
    size_t size;                 /* sizeof(keel_trace_config), set by _default() */
    const char *service_name;    /* resource attribute service.name (default "keel") */
    const char *service_version; /* service.version; NULL = omitted */
    const char *environment;     /* deployment.environment; NULL = omitted */
    keel_trace_sampler sampler;  /* default KEEL_TRACE_SAMPLE_ALWAYS_ON */
    double ratio;                /* KEEL_TRACE_SAMPLE_RATIO: 0.0 .. 1.0 (default 1.0) */
    int parent_based;            /* 1 (default): follow the parent's sampled flag */
    int log_spans;               /* 1 (default): one JSON log record per ended span */
    keel_log_level log_level;    /* level of those records (INFO); status error: ERROR */
    /* OTLP/HTTP JSON export (OTEL_EXPORTER_OTLP_ENDPOINT): NULL = off.  "/v1/traces" is
     * appended, as the OpenTelemetry spec asks for the signal-independent variable. */
    const char *otlp_endpoint;
    size_t otlp_queue_capacity;  /* spans waiting for export (2048, 1 .. 1048576) */
    size_t otlp_batch_size;      /* spans per POST (512, 1 .. 65536) */
    uint32_t otlp_interval_ms;   /* export a partial batch after this long (1000, 1 ..) */
    uint32_t otlp_timeout_ms;    /* per POST, connect included (10000, 1 ..) */
    uint32_t otlp_shutdown_ms;   /* keel_trace_stop(): budget to send what is queued (5000) */
} keel_trace_config;

/** Set cfg to the defaults documented in keel_trace_config (NULL is ignored).
 *  Thread-safety: any thread. Ownership: cfg is the caller's. Errors: none. */
KEEL_API void keel_trace_config_default(keel_trace_config *cfg);

/** Configure the process-wide tracer and, when cfg->otlp_endpoint is set, start the OTLP
 *  exporter thread.  cfg NULL uses the defaults.
 *  @return KEEL_OK; KEEL_ESTATE if already started; KEEL_EINVAL for a bad config
 *  (diag says which field); KEEL_ENOMEM; KEEL_EIO (exporter thread or libcurl init failed).
 *  Thread-safety: meant for main(); spans may be running on other threads meanwhile.
 *  Ownership: copies cfg and its strings. */
KEEL_API KEEL_NODISCARD keel_err keel_trace_start(const keel_trace_config *cfg,
                                                  keel_diag *diag);
/** Stop: send what is queued for OTLP (within otlp_shutdown_ms, the rest is dropped and
 *  counted), join the exporter thread and return to the defaults.  Idempotent.
 *  Thread-safety: any thread (spans ending meanwhile go to the log only). Errors: none. */
KEEL_API void keel_trace_stop(void);
/** Wait until every span queued for OTLP before the call has been sent (or has failed).
 *  @return KEEL_OK (also when no exporter runs), KEEL_ETIMEOUT.
 *  Thread-safety: any thread. Errors: as above. */
KEEL_API KEEL_NODISCARD keel_err keel_trace_flush(uint64_t timeout_ms);

/** Counters since process start. */
typedef struct keel_trace_stats {
    uint64_t started;        /* spans started (sampled or not) */
    uint64_t ended;          /* spans ended */
    uint64_t unsampled;      /* spans started with the sampled flag cleared */
    uint64_t logged;         /* log records written for spans */
    uint64_t otlp_queued;    /* spans accepted by the OTLP queue */
    uint64_t otlp_exported;  /* spans in batches the collector accepted (2xx) */
    uint64_t otlp_dropped;   /* spans lost: queue full or shutdown budget exceeded */
    uint64_t otlp_failed;    /* spans in batches that failed (transport or non-2xx) */
    uint64_t otlp_requests_failed; /* failed POSTs */
} keel_trace_stats;

/** Fill *out with the counters (NULL is ignored).
 *  Thread-safety: any thread (atomic loads). Errors: none. */
KEEL_API void keel_trace_stats_get(keel_trace_stats *out);

/* --------------------------------------------------------------- spans -- */

/** Span kinds (the OTLP SpanKind numbers). */
typedef enum keel_span_kind {
    KEEL_SPAN_INTERNAL = 1,
    KEEL_SPAN_SERVER = 2,
    KEEL_SPAN_CLIENT = 3,
    KEEL_SPAN_PRODUCER = 4,
    KEEL_SPAN_CONSUMER = 5
} keel_span_kind;

/** Span status (the OTLP StatusCode numbers). */
typedef enum keel_span_status {
    KEEL_SPAN_STATUS_UNSET = 0,
    KEEL_SPAN_STATUS_OK = 1,
    KEEL_SPAN_STATUS_ERROR = 2
} keel_span_status;

typedef struct keel_span keel_span;

/** Limits per span; more is dropped and counted (dropped*Count in OTLP). */
#define KEEL_SPAN_ATTRS_MAX 64
#define KEEL_SPAN_EVENTS_MAX 64
#define KEEL_SPAN_EVENT_ATTRS_MAX 16
#define KEEL_SPAN_KEY_MAX 128       /* bytes of a key (longer keys are truncated) */
#define KEEL_SPAN_STR_MAX 4096      /* bytes of a string value (longer values are truncated) */

typedef enum keel_trace_attr_type {
    KEEL_TRACE_ATTR_STR = 1,
    KEEL_TRACE_ATTR_INT = 2,
    KEEL_TRACE_ATTR_DOUBLE = 3,
    KEEL_TRACE_ATTR_BOOL = 4
} keel_trace_attr_type;

/** One attribute: build it with the KEEL_TA_* macros.  A NULL string value is stored as "". */
typedef struct keel_trace_attr {
    const char *key;
    keel_trace_attr_type type;
    union {
        const char *s;
        int64_t i;
        double d;
        int b;
    } v;
} keel_trace_attr;

#define KEEL_TA_STR(k, x) ((keel_trace_attr){(k), KEEL_TRACE_ATTR_STR, {.s = (x)}})
#define KEEL_TA_INT(k, x) ((keel_trace_attr){(k), KEEL_TRACE_ATTR_INT, {.i = (int64_t)(x)}})
#define KEEL_TA_DOUBLE(k, x) ((keel_trace_attr){(k), KEEL_TRACE_ATTR_DOUBLE, {.d = (double)(x)}})
#define KEEL_TA_BOOL(k, x) ((keel_trace_attr){(k), KEEL_TRACE_ATTR_BOOL, {.b = (x) ? 1 : 0}})

/** Start a span that is a child of the calling thread's current span (keel_span_current()),
 *  or the root of a new trace when there is none.  The span is not made current: call
 *  keel_span_push() for that.
 *  @return KEEL_OK; KEEL_EINVAL (out or name NULL); KEEL_ENOMEM; KEEL_ECRYPTO (no random ids).
 *  Thread-safety: any thread. Ownership: the caller ends *out with keel_span_end(). */
KEEL_API KEEL_NODISCARD keel_err keel_span_start(keel_span **out, const char *name,
                                                 keel_span_kind kind);
/** Start a span with an explicit parent: a local span's context (keel_span_get_context()),
 *  or a remote one from keel_traceparent_parse().  parent NULL (or invalid) starts a new trace.
 *  tracestate (may be NULL) is kept and passed on to children when keel_tracestate_valid().
 *  @return as keel_span_start().
 *  Thread-safety: any thread. Ownership: copies parent and tracestate; caller ends *out. */
KEEL_API KEEL_NODISCARD keel_err keel_span_start_with_parent(keel_span **out, const char *name,
                                                             keel_span_kind kind,
                                                             const keel_span_context *parent,
                                                             const char *tracestate);
/** The span's own context (ids and flags; remote is 0).  NULL arguments are ignored.
 *  Thread-safety: the span's thread. Errors: none. */
KEEL_API void keel_span_get_context(const keel_span *sp, keel_span_context *out);
/** 1 if the span is sampled (records and will be exported), 0 otherwise (or sp NULL). */
KEEL_API int keel_span_is_recording(const keel_span *sp);
/** The span's traceparent for an outgoing request.  @return the length (55), 0 if sp NULL. */
KEEL_API size_t keel_span_traceparent(const keel_span *sp, char out[KEEL_TRACEPARENT_SIZE]);
/** The tracestate carried by the span, or NULL.  Borrowed: valid until the span ends. */
KEEL_API const char *keel_span_tracestate(const keel_span *sp);

/** Set attributes (a key set again replaces its value).  No-op on an unsampled span.
 *  @return KEEL_OK; KEEL_EINVAL (sp NULL, attrs NULL with n > 0, a NULL key or bad type:
 *  that attribute is skipped); KEEL_EFULL (past KEEL_SPAN_ATTRS_MAX: dropped and counted);
 *  KEEL_ENOMEM.  Attributes before a failing one are kept.
 *  Thread-safety: the span's thread. Ownership: copies keys and values. */
KEEL_API keel_err keel_span_set_attrs(keel_span *sp, const keel_trace_attr *attrs, size_t n);
/** One-attribute shorthands of keel_span_set_attrs(). */
KEEL_API keel_err keel_span_set_str(keel_span *sp, const char *key, const char *value);
KEEL_API keel_err keel_span_set_int(keel_span *sp, const char *key, int64_t value);
KEEL_API keel_err keel_span_set_double(keel_span *sp, const char *key, double value);
KEEL_API keel_err keel_span_set_bool(keel_span *sp, const char *key, int value);
/** Add a timestamped event with up to KEEL_SPAN_EVENT_ATTRS_MAX attributes (more are dropped).
 *  No-op on an unsampled span.
 *  @return KEEL_OK; KEEL_EINVAL (sp or name NULL, attrs NULL with n > 0); KEEL_EFULL (past
 *  KEEL_SPAN_EVENTS_MAX: dropped and counted); KEEL_ENOMEM.
 *  Thread-safety: the span's thread. Ownership: copies everything. */
KEEL_API keel_err keel_span_add_event(keel_span *sp, const char *name,
                                      const keel_trace_attr *attrs, size_t n);
/** Set the status.  UNSET is ignored; OK is final (later calls are ignored, as OpenTelemetry
 *  asks); the message (may be NULL) is kept for ERROR only.
 *  Thread-safety: the span's thread. Ownership: copies message. Errors: none (OOM drops the
 *  message, the status is still set). */
KEEL_API void keel_span_set_status(keel_span *sp, keel_span_status status, const char *message);
/** Record an error: adds an "exception" event with exception.type = keel_err_name(err) and
 *  exception.message = message (keel_strerror(err) when NULL), and sets the status to ERROR
 *  with that message unless a status was already set.  The log record of the span carries
 *  the last recorded error as its top-level "exception" member.
 *  @return as keel_span_add_event().  Thread-safety: the span's thread. */
KEEL_API keel_err keel_span_record_error(keel_span *sp, keel_err err, const char *message);
/** End the span: fix its end time, remove it from the calling thread's current-span stack if
 *  it is there, write its log record and queue it for OTLP export (when sampled).  NULL is a
 *  no-op.  Thread-safety: the span's thread. Ownership: consumes sp. Errors: none (export
 *  failures are counted in keel_trace_stats). */
KEEL_API void keel_span_end(keel_span *sp);

/** Make sp the calling thread's current span (children started with keel_span_start() use
 *  it as their parent).  A span can be pushed on one thread once at a time.
 *  @return KEEL_OK, KEEL_EINVAL (sp NULL), KEEL_EBUSY (already pushed).
 *  Thread-safety: calling thread only. Ownership: borrows sp until popped or ended. */
KEEL_API keel_err keel_span_push(keel_span *sp);
/** Remove sp from the calling thread's current-span stack (the top one normally; a span
 *  deeper in the stack is unlinked as well).  Not pushed: no-op.
 *  Thread-safety: calling thread only. Errors: none. */
KEEL_API void keel_span_pop(keel_span *sp);
/** The calling thread's current span, or NULL.  Borrowed.
 *  Thread-safety: calling thread only. Errors: none. */
KEEL_API keel_span *keel_span_current(void);

/* ---------------------------------------------------------- middleware -- */

typedef struct keel_trace_mw_config {
    size_t size;
    int trust_incoming;   /* 1 (default): continue an incoming traceparent; 0: always new */
    int echo_traceparent; /* 1 (default): set traceparent (the server span) on the response */
    /* Route templates that get no span (probes and scrapes would drown the traces and the
     * log); NULL-terminated, borrowed.  Default: "/health/live", "/health/ready", "/metrics",
     * "/metrics/{prefix}". */
    const char *const *skip_routes;
} keel_trace_mw_config;

/** Set cfg to the defaults (NULL is ignored).  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_trace_mw_config_default(keel_trace_mw_config *cfg);

/** HTTP layer: for each request continue the incoming traceparent (and tracestate) or start a
 *  new trace, and run the rest of the chain inside a SERVER span named
 *  "<METHOD> <route template>" ("GET <unmatched>" when no route matched) that is the thread's
 *  current span (handlers' keel_span_start() spans become its children).  Attributes:
 *  http.method, http.route, http.status_code and http.request_id (when the request-id layer
 *  set one).  Status ERROR for 5xx answers; a failing chain is recorded with
 *  keel_span_record_error().  With echo_traceparent the response carries the server span's
 *  traceparent (not required by W3C Trace Context; it lets a client find its trace).
 *  Tracing never fails a request: if the span cannot be created the request runs untraced.
 *  Place it inside the request-id layer so that the span's log record carries request_id.
 *  @return KEEL_OK, KEEL_EINVAL (out NULL), KEEL_ENOMEM.  Ownership: copies cfg (NULL or a
 *  too-small size = defaults); give the layer to keel_chain_add_take().
 *  Thread-safety: the layer may run on any number of threads at once. */
KEEL_API KEEL_NODISCARD keel_err keel_mw_trace(const keel_trace_mw_config *cfg,
                                               keel_layer **out);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_TRACE_H */
