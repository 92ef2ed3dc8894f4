/*
 * keel/client.h - the instrumented outbound HTTP client (seed 003 "HTTP Client Wrapper").
 *
 * Module contract: a keel_http_client talks to one service (one base URL).  It is created from
 * a typed config, is immutable afterwards and may be used from any number of threads at once:
 * easy handles (and with them their open connections) are kept in a mutex-protected pool and
 * reused, so consecutive requests to the same service reuse a keep-alive connection.
 *
 * Every request runs through a keel_chain of resilience layers around the libcurl call:
 *
 *     retry (keel/retry.h)  ->  circuit breaker (keel/breaker.h)  ->  curl_easy_perform
 *
 * Retry: network errors (connection refused or reset, timeouts, malformed responses) and the
 * statuses 429, 502, 503 and 504 are retried with jittered exponential backoff; a
 * Retry-After header (seconds or an HTTP date) is honoured through call->retry_after_ms.
 * Breaker: network errors and 5xx responses are failures of the service; 429 is ignored;
 * anything else is a success.  Its state changes are logged (WARNING "circuit breaker state
 * changed" on logger "app.http_client") and passed to the configured listeners.
 *
 * Each attempt is one request as far as the metrics go:
 *     http_client_requests_total{service,method,status_class}         counter
 *     http_client_request_duration_seconds{service,method}            histogram
 * with status_class from keel_http_client_classify().  Each attempt is logged on logger
 * "app.http_client": INFO "downstream request completed" (service, method, path, status_code,
 * status_class, duration_ms, attempt), ERROR "downstream request timed out" or ERROR
 * "downstream request failed" (service, method, path, error, duration_ms, attempt).  The
 * logged path never includes the query string; header values and bodies are never logged.
 *
 * Timeouts: connect_timeout_ms and timeout_ms bound each attempt (curl's CONNECTTIMEOUT and
 * TIMEOUT); a request lasts at most max_attempts * timeout_ms plus the backoff waits.
 */
#ifndef KEEL_CLIENT_H
#define KEEL_CLIENT_H

#include <keel/breaker.h>
#include <keel/common.h>
#include <keel/config.h>
#include <keel/metrics.h>
#include <keel/policy.h>
#include <keel/retry.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Default per-attempt total timeout (ms) when neither the config nor <SERVICE>_TIMEOUT_MS
 *  sets one. */
#define KEEL_HTTP_CLIENT_DEFAULT_TIMEOUT_MS 10000u
/** Default connect timeout (ms). */
#define KEEL_HTTP_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS 3000u
/** Default cap on a response body (bytes). */
#define KEEL_HTTP_CLIENT_DEFAULT_MAX_RESPONSE (8u * 1024u * 1024u)
/** Cap on the response header block kept (bytes). */
#define KEEL_HTTP_CLIENT_MAX_HEADERS (64u * 1024u)

typedef struct keel_http_client keel_http_client;

/** Client configuration.  Fill with keel_http_client_config_default(), then override. */
typedef struct keel_http_client_config {
    size_t size;                 /* sizeof(keel_http_client_config), set by _config_default() */
    const char *service;         /* required: metrics/log label, breaker name and the DEP of
                                    <DEP>_TIMEOUT_MS; [A-Za-z0-9_.-], 1..64 bytes; copied */
    const char *base_url;        /* required: "http://host[:port][/prefix]" or https; copied */
    uint32_t connect_timeout_ms; /* >= 1 (default 3000); clamped to timeout_ms */
    uint32_t timeout_ms;         /* per attempt, >= 1 (default 10000) */
    /* Optional: when set, timeout_ms defaults from <SERVICE>_TIMEOUT_MS
     * (keel_settings_dep_timeout_ms); an explicit timeout_ms is the fallback.  Borrowed
     * only during create. */
    const keel_settings *settings;
    size_t max_response_bytes;   /* body cap, >= 1 (default 8 MiB); larger bodies fail with
                                    KEEL_ETOOBIG */
    size_t max_idle_handles;     /* easy handles (connections) kept for reuse (default 8) */
    const char *user_agent;      /* default "keel-http-client"; copied */
    keel_metrics *metrics;       /* optional; borrowed, must outlive the client */
    /* Retry: max_attempts 1 disables it.  name, should_retry and before_sleep are set by the
     * client (before_sleep logs on "app.http_client"); clock is taken from `clock` below.
     * Defaults: 3 attempts, base 200 ms, max 10000 ms, multiplier 2, FULL jitter. */
    keel_retry_config retry;
    /* Breaker: enabled unless breaker_enabled is 0.  name = service, is_failure, clock and
     * listeners are set by the client (the listeners below are appended to its logging one).
     * Defaults: COUNT_BASED window of 20 calls, minimum 10, failure rate 50 %, 30 s open,
     * 3 half-open probes. */
    int breaker_enabled;
    keel_breaker_config breaker;
    const keel_breaker_listener *breaker_listeners; /* copied; at most 15 */
    size_t nbreaker_listeners;
    const keel_clock *clock;     /* retry waits and breaker time; NULL = system; borrowed */
    /* Optional AWS Signature V4 signing of every request (CURLOPT_AWS_SIGV4), e.g.
     * "aws:amz:us-east-1:s3".  When set, aws_access_key and aws_secret_key are required; the
     * secret is held in a keel_secret and never logged. */
    const char *aws_sigv4;
    const char *aws_access_key;
    const char *aws_secret_key;
} keel_http_client_config;

/** One request.  Fill with keel_http_client_req_init(), then set the optional fields. */
typedef struct keel_http_client_req {
    size_t size;
    const char *method;          /* "GET", "POST", ... : 1..16 characters A-Z */
    const char *path;            /* appended to base_url ("/v1/charges?x=1"); no spaces or
                                    control characters */
    const char *const *headers;  /* NULL-terminated "Name: value" lines, or NULL; no CR/LF */
    const void *body;            /* request body (body_len bytes), or NULL */
    size_t body_len;
    /* W3C Trace Context: a traceparent value ("00-<32 hex>-<16 hex>-<2 hex>") sent as the
     * traceparent header; NULL = none.  Built by the tracing helper. */
    const char *traceparent;
    uint32_t timeout_ms;         /* per-attempt override; 0 = the client's */
    int no_retry;                /* 1: one attempt only (a non-idempotent call) */
} keel_http_client_req;

/** A response.  Zero it (or let the request do it); release with
 *  keel_http_client_resp_cleanup(). */
typedef struct keel_http_client_resp {
    long status;                 /* HTTP status of the last attempt; 0 if none arrived */
    const char *status_class;    /* keel_http_client_classify() of the last attempt (static) */
    char *body;                  /* NUL-terminated (terminator not counted), or NULL */
    size_t body_len;
    char *headers;               /* raw header block of the last response ("Name: value\r\n"
                                    lines, status line excluded), NUL-terminated, or NULL */
    size_t headers_len;
    uint64_t retry_after_ms;     /* from the last response's Retry-After (0 = none) */
    uint64_t wait_ms;            /* when refused (KEEL_EOPEN) or a Retry-After exceeded the
                                    retry's max delay: how long to wait before calling again */
    unsigned attempts;           /* attempts made (0 when refused by the breaker) */
} keel_http_client_resp;

/** Fill cfg with the defaults listed in keel_http_client_config.
 *  Thread-safety: any thread. Ownership: writes *cfg only. Errors: none. */
KEEL_API void keel_http_client_config_default(keel_http_client_config *cfg);

/** Create a client.  Misconfiguration is rejected with KEEL_EINVAL and a diag naming the
 *  field, e.g. "http_client: base_url must not be empty" or
 *  "http_client: timeout_ms must be >= 1, got 0".
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM, KEEL_EEXIST (metric names taken with other
 *  labels), KEEL_EIO (libcurl could not be initialised).
 *  Thread-safety: any thread. Ownership: copies cfg (metrics, clock and listener user data
 *  are borrowed); caller destroys *out with keel_http_client_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_http_client_create(keel_http_client **out,
                                                         const keel_http_client_config *cfg,
                                                         keel_diag *diag);

/** Close the pooled connections and free the client.  NULL is a no-op.
 *  Thread-safety: not while requests run. */
KEEL_API void keel_http_client_destroy(keel_http_client *c);

/** Initialise req for method and path (borrowed), every optional field empty.
 *  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_http_client_req_init(keel_http_client_req *req, const char *method,
                                        const char *path);

/** Perform a request through the retry and breaker layers.
 *  On KEEL_OK an HTTP response arrived (whatever its status: check resp->status or
 *  resp->status_class); after retries it is the last attempt's response.
 *  @return KEEL_OK; KEEL_EINVAL (bad method, path, header or traceparent; diag says which);
 *  KEEL_ETIMEOUT (the last attempt timed out); KEEL_EIO (connection refused or reset,
 *  malformed response); KEEL_EOPEN (the breaker refused; resp->wait_ms is set);
 *  KEEL_ETOOBIG (body over max_response_bytes); KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: borrows req; resp is overwritten (any previous
 *  content is not freed) and must be released with keel_http_client_resp_cleanup(), also
 *  after an error. */
KEEL_API KEEL_NODISCARD keel_err keel_http_client_request(keel_http_client *c,
                                                          const keel_http_client_req *req,
                                                          keel_http_client_resp *resp,
                                                          keel_diag *diag);

/** Value of the response header `name` (case-insensitive; the first occurrence), with
 *  surrounding blanks trimmed.  @return 1 and *out set (borrowed from resp) if found, else 0.
 *  Thread-safety: any thread. Errors: none. */
KEEL_API int keel_http_client_resp_header(const keel_http_client_resp *resp, const char *name,
                                          keel_str *out);

/** Free the body and headers and zero resp.  NULL is a no-op. */
KEEL_API void keel_http_client_resp_cleanup(keel_http_client_resp *resp);

/** Seed 003 classify_status: "network_error" when error is nonzero or status <= 0 (no
 *  response), "success" for 200..399, "rate_limited" for 429, "client_error" for other
 *  400..499, "server_error" for everything else.
 *  Thread-safety: any thread. Ownership: returns a static string. Errors: none. */
KEEL_API const char *keel_http_client_classify(long status, int error);

/** Parse a Retry-After value: delta-seconds or an HTTP date (relative to now_wall_ms).
 *  @return milliseconds to wait (0 for a date in the past), or -1 if v is not valid.
 *  Thread-safety: any thread. Errors: none. */
KEEL_API int64_t keel_http_client_parse_retry_after(keel_str v, int64_t now_wall_ms);

/** The client's circuit breaker (NULL when disabled), for inspection and manual control.
 *  Thread-safety: any thread. Ownership: borrowed, valid until the client is destroyed. */
KEEL_API keel_breaker *keel_http_client_breaker(keel_http_client *c);

/** Effective per-attempt timeout of the client in ms (after <SERVICE>_TIMEOUT_MS).
 *  Thread-safety: any thread. Errors: NULL gives 0. */
KEEL_API uint32_t keel_http_client_timeout_ms(const keel_http_client *c);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_CLIENT_H */
