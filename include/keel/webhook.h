/*
 * keel/webhook.h - incoming payment webhooks: Stripe-style signature verification
 * (HMAC-SHA256 over "<t>.<raw body>") and delivery deduplication on the event id.
 *
 * Three independent guarantees (seed 004): authenticity (the HMAC), freshness (the
 * timestamp is within a tolerance of now) and at-most-once processing (dedup on the
 * gateway's event id).  A handler does, in this order:
 *
 *     keel_webhook_verify(v, body, len, header, now_s, &d)    -> 400 on error
 *     keel_webhook_event_id(body, len, id, sizeof(id))        -> 400 on error
 *     keel_webhook_is_first_delivery(dd, id, &d)              -> 0: answer 200, do nothing
 *     process; on failure keel_webhook_dedup_forget(dd, id)   -> the gateway's retry runs
 *
 * Always verify the raw request bytes, never re-serialized JSON: one byte of difference
 * breaks the MAC.
 *
 * Header format.  `t=<unix seconds>,v1=<64 hex>[,v1=<64 hex>...][,v0=...]`, parsed as the
 * Stripe SDKs do: items separated by ',', key and value split at the first '=', every `v1`
 * kept, `v0` and unknown keys ignored, and `v1` values that are not exactly 64 hex digits
 * ignored (stripe-go).  Hex digits may be upper or lower case (stripe-go decodes the hex, so
 * case does not matter to it either; Stripe itself sends lower case).  keel is stricter than
 * the SDKs in a few documented places: the header is at most KEEL_WEBHOOK_HEADER_MAX bytes
 * and holds at most KEEL_WEBHOOK_MAX_V1 `v1` entries; `t` must appear exactly once and be
 * plain decimal digits (no sign); empty items, items without '=', and spaces or control
 * characters inside the value are malformed (leading and trailing spaces/tabs of the whole
 * value are trimmed, as HTTP does).  The signed payload uses the decimal value of t, so
 * "t=017" signs as "17." like the SDKs (which re-format the parsed integer).
 *
 * Tolerance.  The timestamp must satisfy |now - t| <= tolerance: a symmetric window, so a
 * timestamp too far in the FUTURE is rejected too.  This is stricter than the Stripe SDKs,
 * which reject only timestamps that are too old.  tolerance 0 disables the age check.
 * The signature is checked before the age (as stripe-python and stripe-node do), so a forged
 * header is always reported as a mismatch.
 *
 * Secrets.  The HMAC key is the secret string's bytes exactly as configured, including the
 * "whsec_" prefix (no base64 decoding).  A verifier holds up to KEEL_WEBHOOK_MAX_SECRETS
 * secrets (current and previous during a rotation); the signature is valid if any `v1`
 * matches any secret.  MACs are compared in constant time (CRYPTO_memcmp over the decoded
 * 32 bytes).  Secrets never appear in diagnostics.
 *
 * Errors of keel_webhook_verify(), one per failure class (keel_webhook_reason_of maps them):
 *   KEEL_ENOTFOUND     header missing or empty
 *   KEEL_EPARSE        header malformed (no t, bad t, item without '=', too long,
 *                      more than 8 v1, bad characters)
 *   KEEL_EUNSUPPORTED  no usable v1 signature (none, or none is 64 hex digits)
 *   KEEL_EDENIED       no v1 signature matches the body for any configured secret
 *   KEEL_ERANGE        timestamp outside the tolerance (too old or in the future)
 * All five should be answered with HTTP 400.
 *
 * Deduplication.  A keel_webhook_dedup remembers event ids for a retention period.  Stripe
 * retries undelivered events for up to three days, hence the default retention
 * KEEL_WEBHOOK_RETENTION_DEFAULT_MS; 30 days (KEEL_WEBHOOK_RETENTION_RECOMMENDED_MS) also
 * covers events replayed by hand from the List Events API, which returns the last 30 days.
 * Backends: memory (one process, bounded), SQL (keel_store: SQLite or PostgreSQL, table
 * keel_webhook_events) and Redis (SET NX PX).  Custom backends plug in through
 * keel_webhook_dedup_ops.
 *
 * Thread-safety.  A verifier is immutable after creation: verify from any thread.  All
 * dedup functions are thread-safe.  The free functions are callable from any thread.
 */
#ifndef KEEL_WEBHOOK_H
#define KEEL_WEBHOOK_H

#include <keel/common.h>
#include <keel/redis.h>
#include <keel/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ limits -- */

#define KEEL_WEBHOOK_HEADER_MAX 4096u         /* longest accepted signature header (bytes) */
#define KEEL_WEBHOOK_MAX_V1 8u                /* most v1 entries in one header */
#define KEEL_WEBHOOK_MAX_SECRETS 8u           /* most secrets in one verifier */
#define KEEL_WEBHOOK_SECRET_MAX 1024u         /* longest secret (bytes) */
#define KEEL_WEBHOOK_TOLERANCE_DEFAULT 300u   /* seconds (Stripe SDK DEFAULT_TOLERANCE) */
#define KEEL_WEBHOOK_SIG_HEX_SIZE 65u         /* 64 lowercase hex digits + NUL */
#define KEEL_WEBHOOK_SIGN_SIZE 96u            /* enough for "t=<int64>,v1=<64 hex>" + NUL */
#define KEEL_WEBHOOK_EVENT_ID_MAX 255u        /* longest accepted event id (bytes) */
#define KEEL_WEBHOOK_RETENTION_DEFAULT_MS (3ull * 24u * 3600u * 1000u)      /* 3 days */
#define KEEL_WEBHOOK_RETENTION_RECOMMENDED_MS (30ull * 24u * 3600u * 1000u) /* 30 days */
#define KEEL_WEBHOOK_MEMORY_MAX_DEFAULT 65536u /* memory backend: ids kept at most */

/* ---------------------------------------------------------------- reasons -- */

/** Failure class of a verification, for HTTP problem details. */
typedef enum keel_webhook_reason {
    KEEL_WEBHOOK_VALID = 0,
    KEEL_WEBHOOK_MISSING_HEADER = 1,     /* KEEL_ENOTFOUND */
    KEEL_WEBHOOK_MALFORMED_HEADER = 2,   /* KEEL_EPARSE */
    KEEL_WEBHOOK_NO_SIGNATURE = 3,       /* KEEL_EUNSUPPORTED */
    KEEL_WEBHOOK_SIGNATURE_MISMATCH = 4, /* KEEL_EDENIED */
    KEEL_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE = 5, /* KEEL_ERANGE */
    KEEL_WEBHOOK_INTERNAL_ERROR = 6      /* anything else (bad arguments, OOM, crypto) */
} keel_webhook_reason;

/** The reason for an error returned by keel_webhook_verify().
 *  Thread-safety: any thread.  Errors: none (unknown codes give INTERNAL_ERROR). */
KEEL_API keel_webhook_reason keel_webhook_reason_of(keel_err e);
/** Stable snake_case slug ("missing_header", "malformed_header", "no_signature",
 *  "signature_mismatch", "timestamp_out_of_tolerance", "internal_error", "valid") for a
 *  problem type URI or a log field.  Ownership: static string. */
KEEL_API const char *keel_webhook_reason_name(keel_webhook_reason r);
/** Short human title ("Webhook signature mismatch").  Ownership: static string. */
KEEL_API const char *keel_webhook_reason_title(keel_webhook_reason r);
/** HTTP status to answer with: 200 valid, 400 for the five verification failures,
 *  500 for INTERNAL_ERROR.  Thread-safety: any thread. */
KEEL_API int keel_webhook_reason_http_status(keel_webhook_reason r);

/* ---------------------------------------------------------------- secrets -- */

/** Split a comma-separated secret list (the WEBHOOK_SECRET format: "whsec_new,whsec_old")
 *  into up to cap slices of list, with spaces and tabs around each entry trimmed.  No
 *  allocation: the slices borrow list.  A secret containing ',' cannot be listed this way;
 *  pass it through keel_webhook_config.secrets instead.
 *  @return KEEL_OK; KEEL_EINVAL (NULL/empty list, an empty entry, an entry longer than
 *  KEEL_WEBHOOK_SECRET_MAX); KEEL_ETOOBIG (more than cap entries).  On error *n is 0.
 *  Thread-safety: any thread.  Ownership: borrows list; out[] points into it. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_secrets_split(const char *list, keel_str *out,
                                                            size_t cap, size_t *n);

/* --------------------------------------------------------------- verifier -- */

typedef struct keel_webhook_verifier keel_webhook_verifier;

typedef struct keel_webhook_config {
    size_t size;              /* sizeof(keel_webhook_config), set by the defaults function */
    const char *secret_list;  /* comma-separated secrets (WEBHOOK_SECRET), or NULL */
    const keel_str *secrets;  /* further secrets as byte strings, or NULL */
    size_t nsecrets;          /* entries in secrets */
    uint32_t tolerance_s;     /* |now - t| <= tolerance_s (300); 0 disables the age check */
} keel_webhook_config;

/** Fill cfg with the defaults (no secrets, tolerance 300 s).
 *  Thread-safety: any thread.  Ownership: writes *cfg only.  Errors: none. */
KEEL_API void keel_webhook_config_default(keel_webhook_config *cfg);

/** Create a verifier holding the secrets of cfg->secret_list followed by cfg->secrets
 *  (1..KEEL_WEBHOOK_MAX_SECRETS in total, each 1..KEEL_WEBHOOK_SECRET_MAX bytes).  The secret
 *  bytes are copied into pre-keyed HMAC contexts; cfg is not referenced afterwards.
 *  @return KEEL_OK; KEEL_EINVAL (NULL argument, bad size, no secret, empty or too long
 *  secret, too many secrets - diag says which, never the secret itself); KEEL_ECRYPTO;
 *  KEEL_ENOMEM.  Thread-safety: any thread.  Ownership: caller destroys *out with
 *  keel_webhook_verifier_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_verifier_create(keel_webhook_verifier **out,
                                                              const keel_webhook_config *cfg,
                                                              keel_diag *diag);
/** Number of secrets the verifier holds.  Thread-safety: any thread. */
KEEL_API size_t keel_webhook_verifier_secret_count(const keel_webhook_verifier *v);
/** Wipe and free.  NULL is a no-op.  Thread-safety: not concurrently with a verify on v.
 *  Ownership: consumes v. */
KEEL_API void keel_webhook_verifier_destroy(keel_webhook_verifier *v);

/** Verify a delivery: header is the Stripe-Signature value (NUL-terminated; NULL = the header
 *  was absent), body the raw request bytes, now_s the current Unix time in seconds (pass
 *  keel_time_wall_ms() / 1000; tests pass a fixed value).
 *  @return KEEL_OK, or the error of the failure class (see the top of this header:
 *  KEEL_ENOTFOUND, KEEL_EPARSE, KEEL_EUNSUPPORTED, KEEL_EDENIED, KEEL_ERANGE) with a
 *  specific message in diag (for EPARSE diag->offset is the byte offset of the offending
 *  item); KEEL_EINVAL (v NULL, or body NULL with body_len > 0); KEEL_ECRYPTO.
 *  Thread-safety: any thread.  Ownership: borrows everything; does not allocate except
 *  inside OpenSSL. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_verify(const keel_webhook_verifier *v,
                                                     const void *body, size_t body_len,
                                                     const char *header, int64_t now_s,
                                                     keel_diag *diag);

/* ----------------------------------------------------------------- signer -- */

/** Compute the v1 signature: lowercase hex of HMAC-SHA256(secret, "<t>." + body).
 *  @return KEEL_OK; KEEL_EINVAL (empty/too long secret, t < 0, NULL out, body NULL with
 *  len > 0); KEEL_ECRYPTO.  Thread-safety: any thread.  Ownership: borrows all. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_signature(keel_str secret, const void *body,
                                                        size_t len, int64_t t,
                                                        char out[KEEL_WEBHOOK_SIG_HEX_SIZE]);
/** Build a test/outgoing header "t=<t>,v1=<hex>" for one secret (NUL-terminated string) into
 *  out_header (cap >= KEEL_WEBHOOK_SIGN_SIZE always suffices).
 *  @return KEEL_OK; KEEL_ETOOBIG (cap too small; out_header is "" if cap > 0); the errors
 *  of keel_webhook_signature().  Thread-safety: any thread.  Ownership: borrows all. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_sign(const char *secret, const void *body,
                                                   size_t len, int64_t t, char *out_header,
                                                   size_t cap);

/* --------------------------------------------------------------- event id -- */

/** 1 if id (len bytes) is a valid event id: 1..KEEL_WEBHOOK_EVENT_ID_MAX bytes of printable
 *  ASCII (0x21..0x7e; no spaces).  Thread-safety: any thread. */
KEEL_API int keel_webhook_event_id_valid(const char *id, size_t len);

/** Extract the top-level "id" string of a JSON object body into out (NUL-terminated).
 *  Duplicate keys are rejected (an ambiguous id must not be deduplicated on).
 *  @return KEEL_OK; KEEL_EPARSE (not JSON, not an object, duplicate keys); KEEL_ENOTFOUND
 *  (no "id" or it is not a string); KEEL_EINVAL (NULL argument, or the id fails
 *  keel_webhook_event_id_valid); KEEL_ETOOBIG (cap too small); KEEL_ENOMEM (jansson reports
 *  most of its allocation failures as syntax errors, so an OOM may also give KEEL_EPARSE).
 *  Thread-safety: any thread.  Ownership: borrows body; writes out. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_event_id(const void *body, size_t len, char *out,
                                                       size_t cap);

/* ------------------------------------------------------------------ dedup -- */

typedef struct keel_webhook_dedup keel_webhook_dedup;

typedef struct keel_webhook_dedup_config {
    size_t size;                   /* sizeof(keel_webhook_dedup_config) */
    uint64_t retention_ms;         /* how long an id is remembered (3 days); > 0 */
    size_t max_entries;            /* memory backend: ids kept at most (65536); when full the
                                      oldest id is forgotten first */
    const char *redis_prefix;      /* Redis backend: key prefix ("keel:webhook:"), copied;
                                      at most 128 bytes */
    int64_t (*now_ms)(void *ud);   /* wall clock in Unix ms; NULL = keel_time_wall_ms */
    void *clock_ud;                /* passed to now_ms */
} keel_webhook_dedup_config;

/** Fill cfg with the defaults above.  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_webhook_dedup_config_default(keel_webhook_dedup_config *cfg);

/** A dedup backend.  self is the backend's state; ids passed in are already validated.
 *  is_first: atomically record id with expiry now_ms + ttl_ms unless a live (unexpired)
 *  record exists; return 1 if recorded, 0 if it already existed, or a negative keel_err.
 *  forget: drop the record (KEEL_OK also when there was none).  purge: delete expired
 *  records and count them in *removed (may be a no-op, e.g. Redis expires keys itself).
 *  destroy: free self.  Every callback must be thread-safe. */
typedef struct keel_webhook_dedup_ops {
    int (*is_first)(void *self, const char *id, size_t len, int64_t now_ms, uint64_t ttl_ms,
                    keel_diag *diag);
    keel_err (*forget)(void *self, const char *id, size_t len, keel_diag *diag);
    keel_err (*purge)(void *self, int64_t now_ms, uint64_t *removed, keel_diag *diag);
    void (*destroy)(void *self);
} keel_webhook_dedup_ops;

/** Wrap a custom backend.  ops must outlive the handle; self is owned by it from now on
 *  (ops->destroy(self) runs on keel_webhook_dedup_destroy, and also here on failure).
 *  @return KEEL_OK, KEEL_EINVAL (NULL ops/callback, bad config), KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: caller destroys *out. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_dedup_create(keel_webhook_dedup **out,
                                                           const keel_webhook_dedup_ops *ops,
                                                           void *self,
                                                           const keel_webhook_dedup_config *cfg);

/** In-process backend: a mutex-protected hash table of at most cfg->max_entries ids, each
 *  forgotten retention_ms after it was recorded (or earlier when the table is full: the
 *  oldest first).  For tests and single-process deployments only - it is lost on restart
 *  and not shared between processes.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM.  Ownership: caller destroys *out. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_dedup_memory_create(
    keel_webhook_dedup **out, const keel_webhook_dedup_config *cfg);

/** SQL backend on a keel_store (SQLite or PostgreSQL).  Creates the table
 *  keel_webhook_events(event_id PRIMARY KEY, received_at_ms, expires_at_ms) through
 *  keel_store_migrate_component (component "keel.pay.webhook") and records ids with one
 *  INSERT ... ON CONFLICT statement (an expired row is taken over, a live one is left alone;
 *  the row count tells which).  Call keel_webhook_dedup_purge() periodically (for example
 *  hourly from a job) to delete expired rows.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM, or the migration's error with diag.
 *  Ownership: borrows store (must outlive the handle); caller destroys *out. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_dedup_sql_create(
    keel_webhook_dedup **out, keel_store *store, const keel_webhook_dedup_config *cfg,
    keel_diag *diag);

/** Redis backend: `SET <prefix><id> 1 NX PX <retention_ms>`; Redis expires the keys.
 *  @return KEEL_OK, KEEL_EINVAL (bad prefix), KEEL_ENOMEM.
 *  Ownership: borrows redis (must outlive the handle); caller destroys *out. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_dedup_redis_create(
    keel_webhook_dedup **out, keel_redis *redis, const keel_webhook_dedup_config *cfg);

/** Record event_id (NUL-terminated) and say whether this is its first delivery within the
 *  retention period.  Exactly one of any number of concurrent calls with the same id gets 1.
 *  @return 1 first delivery (process it), 0 duplicate (acknowledge with 2xx, do nothing),
 *  or a negative keel_err: KEEL_EINVAL (NULL argument or id failing
 *  keel_webhook_event_id_valid), or the backend's error (KEEL_EIO, KEEL_ETIMEOUT,
 *  KEEL_EBUSY... - answer 5xx so the gateway retries).
 *  Thread-safety: any thread.  Ownership: borrows all. */
KEEL_API int keel_webhook_is_first_delivery(keel_webhook_dedup *d, const char *event_id,
                                            keel_diag *diag);
/** Forget event_id, so its next delivery counts as first: call it when processing a first
 *  delivery failed and the gateway's retry should run it again.
 *  @return KEEL_OK (also when unknown), KEEL_EINVAL, or the backend's error.
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_dedup_forget(keel_webhook_dedup *d,
                                                           const char *event_id,
                                                           keel_diag *diag);
/** Delete expired records now; *removed (may be NULL) receives how many.
 *  @return KEEL_OK or the backend's error.  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_webhook_dedup_purge(keel_webhook_dedup *d,
                                                          uint64_t *removed, keel_diag *diag);
/** Free the handle and its backend state (not the borrowed store/redis).  NULL is a no-op.
 *  Thread-safety: not concurrently with other calls on d.  Ownership: consumes d. */
KEEL_API void keel_webhook_dedup_destroy(keel_webhook_dedup *d);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_WEBHOOK_H */
