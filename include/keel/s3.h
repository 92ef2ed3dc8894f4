/*
 * keel/s3.h - an instrumented S3 client (seed 003 "S3 Wrapper"): PutObject, GetObject,
 * DeleteObject and ListObjectsV2 on one bucket, signed with AWS Signature V4 by libcurl
 * (CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3"), over the keel HTTP client (keel/client.h), so
 * transient failures (network errors, 429, 502, 503, 504) are retried with jittered backoff
 * and a circuit breaker named "s3" guards the endpoint.
 *
 * Module contract: a keel_s3 is immutable after create and may be used from any number of
 * threads at once.  URLs are path-style (<endpoint>/<bucket>/<key>), which works with AWS
 * and with local S3-compatible servers alike.
 *
 * Metrics (when a registry is given), one update per operation (retries included):
 *     s3_requests_total{operation,status}             counter; status is the
 *                                                     keel_http_client_classify() class
 *     s3_request_duration_seconds{operation}          histogram
 *     s3_bytes_transferred_total{operation,direction} counter; direction "upload" (PutObject
 *                                                     bodies) or "download" (GetObject bodies)
 * operation is "PutObject", "GetObject", "DeleteObject" or "ListObjectsV2".
 *
 * Errors: 404 -> KEEL_ENOTFOUND, 403 -> KEEL_EDENIED, 5xx and 429 (after the retries) ->
 * KEEL_EAGAIN (transient), other 4xx -> KEEL_EINVAL, network errors -> KEEL_EIO or
 * KEEL_ETIMEOUT, an open breaker -> KEEL_EOPEN.  Failures are logged at ERROR on logger
 * "app.s3" ("S3 operation failed": operation, bucket, key, status_code, error code from the
 * S3 error document).  Credentials never appear in logs or diagnostics.
 */
#ifndef KEEL_S3_H
#define KEEL_S3_H

#include <keel/client.h>
#include <keel/common.h>
#include <keel/config.h>
#include <keel/metrics.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Longest object key accepted, in bytes (the S3 limit). */
#define KEEL_S3_KEY_MAX 1024
/** Default cap on a GetObject body (64 MiB). */
#define KEEL_S3_DEFAULT_MAX_OBJECT (64u * 1024u * 1024u)

typedef struct keel_s3 keel_s3;

/** S3 configuration.  Fill with keel_s3_config_default(), then override. */
typedef struct keel_s3_config {
    size_t size;             /* set by _config_default() */
    const char *endpoint;    /* "http://127.0.0.1:9000"; NULL = https://s3.<region>.amazonaws.com */
    const char *region;      /* default "us-east-1" */
    const char *bucket;      /* required: 3..63 characters of [a-z0-9.-] */
    const char *access_key;  /* required */
    const char *secret_key;  /* required; held in a keel_secret */
    uint32_t connect_timeout_ms; /* default 3000 */
    uint32_t timeout_ms;     /* per attempt, default 30000; S3_TIMEOUT_MS when settings given */
    const keel_settings *settings; /* optional, borrowed during create */
    size_t max_object_bytes; /* GetObject/list body cap (default 64 MiB) */
    unsigned max_attempts;   /* default 3 (1 = no retry) */
    uint64_t retry_base_delay_ms; /* default 200 */
    keel_metrics *metrics;   /* optional; borrowed, must outlive the client */
    const keel_clock *clock; /* retry waits and breaker time; NULL = system; borrowed */
} keel_s3_config;

/** One entry of a listing. */
typedef struct keel_s3_object {
    char *key;      /* NUL-terminated, unescaped */
    uint64_t size;
    char etag[80];  /* without the quotes; "" when absent */
} keel_s3_object;

/** One page of ListObjectsV2.  Release with keel_s3_list_cleanup(). */
typedef struct keel_s3_list {
    keel_s3_object *objects;
    size_t count;
    int truncated;     /* 1 when more keys follow: pass next_token to the next call */
    char *next_token;  /* NUL-terminated continuation token, or NULL */
} keel_s3_list;

/** Fill cfg with the defaults.  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_s3_config_default(keel_s3_config *cfg);

/** Create a client.  Misconfiguration gives KEEL_EINVAL with a diag naming the field
 *  ("s3: bucket must not be empty", "s3: timeout_ms must be >= 1, got 0").
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM, KEEL_EEXIST (metric names taken), KEEL_EIO.
 *  Thread-safety: any thread. Ownership: copies cfg; destroy *out with keel_s3_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_s3_create(keel_s3 **out, const keel_s3_config *cfg,
                                                keel_diag *diag);
/** Free the client.  NULL is a no-op.  Thread-safety: not while operations run. */
KEEL_API void keel_s3_destroy(keel_s3 *s3);

/** PutObject: store len bytes at key (1..1024 bytes, no control characters).
 *  content_type may be NULL ("application/octet-stream").
 *  @return KEEL_OK or an error as in the module comment.  Thread-safety: any thread.
 *  Ownership: borrows everything. */
KEEL_API KEEL_NODISCARD keel_err keel_s3_put(keel_s3 *s3, const char *key, const void *data,
                                             size_t len, const char *content_type,
                                             keel_diag *diag);

/** GetObject: the object's bytes in *data (NUL-terminated for convenience, the terminator
 *  not counted in *len).  @return KEEL_OK, KEEL_ENOTFOUND, KEEL_ETOOBIG (over
 *  max_object_bytes), ...  Ownership: caller frees *data with keel_free(); *data is NULL on
 *  error.  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_s3_get(keel_s3 *s3, const char *key, char **data,
                                             size_t *len, keel_diag *diag);

/** DeleteObject.  S3 answers 204 whether or not the key existed, so does this: KEEL_OK.
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_s3_delete(keel_s3 *s3, const char *key, keel_diag *diag);

/** ListObjectsV2: up to max_keys (1..1000; 0 = 1000) keys starting with prefix (NULL or "" =
 *  all), in the server's (lexicographic) order, continuing from token (NULL = from the start).
 *  @return KEEL_OK, KEEL_EPARSE (malformed listing), ... .  Ownership: *out is overwritten;
 *  release it with keel_s3_list_cleanup(), also after an error.  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_s3_list_objects(keel_s3 *s3, const char *prefix,
                                                      const char *token, unsigned max_keys,
                                                      keel_s3_list *out, keel_diag *diag);
/** Free a listing and zero it.  NULL is a no-op. */
KEEL_API void keel_s3_list_cleanup(keel_s3_list *l);

/** Map an S3 HTTP status to a keel_err (KEEL_OK for 2xx): 404 KEEL_ENOTFOUND, 403
 *  KEEL_EDENIED, 429/5xx KEEL_EAGAIN, other 4xx KEEL_EINVAL, anything else KEEL_EIO.
 *  Thread-safety: any thread. Errors: none. */
KEEL_API keel_err keel_s3_status_error(long status);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_S3_H */
