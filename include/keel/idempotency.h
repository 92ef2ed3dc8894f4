/*
 * keel/idempotency.h - Stripe-style idempotency: a durable store of request outcomes keyed by
 * an idempotency key, and a chain layer that makes the protected operation run at most once
 * per key (seed 004 "Idempotency"; reference.md §1).
 *
 * Model.  A record is (scope, key) -> {owner, state, SHA-256 of the payload, outcome}.
 * States: IN_FLIGHT while the first request runs, then COMPLETED (result stored) or FAILED
 * (terminal error stored).  The layer, outermost in the chain:
 *
 *   - claims the key with set_if_absent (IN_FLIGHT, expiring after in_flight_timeout_ms);
 *   - same key, same payload, COMPLETED  -> replays the stored result, nothing runs again;
 *   - same key, same payload, FAILED     -> returns the stored error (a decline stays a
 *                                           decline; the caller already got its answer);
 *   - same key, same payload, IN_FLIGHT  -> KEEL_EPAY_IN_FLIGHT (HTTP 409, retry later);
 *   - same key, different payload        -> KEEL_EPAY_IDEMPOTENCY_CONFLICT (HTTP 422);
 *   - the operation succeeds             -> COMPLETED with the result, kept ttl_ms (24 h);
 *   - it fails with a retriable error    -> the slot is cleared so the client may retry;
 *   - it fails with a terminal error     -> FAILED with the error, kept ttl_ms.
 *
 * Keys are scoped per caller (user id, API key id): the same key from two callers names two
 * records.  Records past their expiry count as absent, so an IN_FLIGHT record left by a
 * crashed process frees itself after in_flight_timeout_ms (brandur.org's lock timeout, 90 s
 * by default).  The operation should pass the idempotency key on to the gateway (Stripe
 * does its own deduplication) so that such a takeover can never charge twice.  Updates are
 * owner-checked: a request whose slot was taken over cannot overwrite the new owner's record.
 *
 * Stores: memory (tests, one process), SQL on keel_store (SQLite / PostgreSQL, table
 * keel_idempotency_keys, usable inside the caller's own transaction so the business write
 * and the COMPLETED record commit together) and Redis (SET NX PX; atomic Lua for updates).
 *
 * Failure policy: when the store itself fails (database down), the layer fails closed - it
 * returns the store's error and does not run the operation unprotected.
 */
#ifndef KEEL_IDEMPOTENCY_H
#define KEEL_IDEMPOTENCY_H

#include <keel/chain.h>
#include <keel/common.h>
#include <keel/core.h>
#include <keel/http.h>
#include <keel/metrics.h>
#include <keel/policy.h>
#include <keel/redis.h>
#include <keel/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Longest accepted key (Stripe: "up to 255 characters") and scope. */
#define KEEL_IDEM_KEY_MAX 255
#define KEEL_IDEM_SCOPE_MAX 128
/** Default retention of finished records (24 h) and in-flight lock timeout (90 s). */
#define KEEL_IDEM_TTL_MS_DEFAULT (24u * 3600u * 1000u)
#define KEEL_IDEM_IN_FLIGHT_MS_DEFAULT 90000u

typedef enum keel_idem_state {
    KEEL_IDEM_IN_FLIGHT = 1,
    KEEL_IDEM_COMPLETED = 2,
    KEEL_IDEM_FAILED = 3,
} keel_idem_state;

/** One stored record.  result is owned by whoever filled the record (free it with
 *  keel_idem_record_clear()). */
typedef struct keel_idem_record {
    char owner[33];          /* 32 hex chars identifying the request holding the slot */
    keel_idem_state state;
    uint8_t payload_hash[32]; /* SHA-256 of the canonical payload */
    keel_err error;           /* FAILED: the terminal error */
    int64_t created_ms;       /* wall-clock milliseconds */
    int64_t expires_ms;       /* the record counts as absent from this instant on */
    char *result;             /* COMPLETED: result bytes; FAILED: error detail; may be NULL */
    size_t result_len;
} keel_idem_record;

/** Free rec->result and zero the record.  NULL is a no-op. */
KEEL_API void keel_idem_record_clear(keel_idem_record *rec);

/** The store interface: two atomic operations and a release.  Every function is thread-safe
 *  and compares expires_ms with now_ms given by the caller (so tests control time).
 *  set_if_absent: insert rec under (scope, key) unless a live record exists.  KEEL_OK = the
 *      caller owns the slot; KEEL_EEXIST = a live record exists, copied into *existing
 *      (caller clears it); other errors = the store failed.
 *  update: replace the record under (scope, key) if its owner is rec->owner.  KEEL_OK, or
 *      KEEL_ESTATE when the slot is gone or owned by someone else.
 *  clear: delete the record under (scope, key) if its owner is owner (KEEL_OK; KEEL_ESTATE as
 *      above).
 *  purge: delete expired records (optional; NULL when the backend expires by itself);
 *      *removed gets the count.
 *  destroy: free the store. */
typedef struct keel_idem_store_vt {
    keel_err (*set_if_absent)(void *self, keel_str scope, keel_str key,
                              const keel_idem_record *rec, int64_t now_ms,
                              keel_idem_record *existing, keel_diag *diag);
    keel_err (*update)(void *self, keel_str scope, keel_str key, const keel_idem_record *rec,
                       int64_t now_ms, keel_diag *diag);
    keel_err (*clear)(void *self, keel_str scope, keel_str key, const char *owner,
                      keel_diag *diag);
    keel_err (*purge)(void *self, int64_t now_ms, uint64_t *removed, keel_diag *diag);
    void (*destroy)(void *self);
} keel_idem_store_vt;

typedef struct keel_idem_store {
    const keel_idem_store_vt *vt;
    void *self;
} keel_idem_store;

/** Destroy a store made by one of the constructors below.  NULL is a no-op. */
KEEL_API void keel_idem_store_destroy(keel_idem_store *s);

/** In-memory store (one process; tests and development).  max_records bounds memory: when
 *  full, expired records are reclaimed first, then set_if_absent fails with KEEL_EFULL.
 *  @return KEEL_OK, KEEL_EINVAL (max_records 0), KEEL_ENOMEM.
 *  Ownership: caller destroys *out with keel_idem_store_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_idem_store_memory(keel_idem_store **out,
                                                        size_t max_records);

/** SQL store on db (SQLite or PostgreSQL).  Creates its table through the library migration
 *  "keel.pay.idempotency" (keel_store_migrate_component).
 *  @return KEEL_OK, the migration's error, KEEL_ENOMEM.
 *  Ownership: borrows db (which must outlive the store). */
KEEL_API KEEL_NODISCARD keel_err keel_idem_store_sql(keel_idem_store **out, keel_store *db,
                                                     keel_diag *diag);
/** The SQL store's operations on a connection the caller holds, typically inside its own
 *  transaction, so that the business write and the record commit or roll back together
 *  (same contracts as the vtable functions). */
KEEL_API KEEL_NODISCARD keel_err keel_idem_sql_set_if_absent(keel_db *db, keel_str scope,
                                                             keel_str key,
                                                             const keel_idem_record *rec,
                                                             int64_t now_ms,
                                                             keel_idem_record *existing,
                                                             keel_diag *diag);
KEEL_API KEEL_NODISCARD keel_err keel_idem_sql_update(keel_db *db, keel_str scope, keel_str key,
                                                      const keel_idem_record *rec,
                                                      keel_diag *diag);

/** Redis store: records live under prefix + scope + ":" + key with a PX expiry (Redis expires
 *  them itself).  prefix NULL = "keel:idem:".
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ENOMEM.  Ownership: borrows r. */
KEEL_API KEEL_NODISCARD keel_err keel_idem_store_redis(keel_idem_store **out, keel_redis *r,
                                                       const char *prefix);

/* ------------------------------------------------------------------ keys -- */

/** Validate a client key: 1..255 printable ASCII (0x21-0x7e; no spaces).  A value quoted as
 *  an RFC 8941 sf-string ("...", the IETF draft's form) is unquoted first; *out is the bare
 *  key (a slice of raw).  @return KEEL_OK, KEEL_EINVAL with the reason in diag. */
KEEL_API KEEL_NODISCARD keel_err keel_idem_key_parse(keel_str raw, keel_str *out,
                                                     keel_diag *diag);

/** SHA-256 of payload bytes.  Thread-safety: any thread.  @return KEEL_OK or KEEL_ECRYPTO. */
KEEL_API KEEL_NODISCARD keel_err keel_idem_hash(keel_str payload, uint8_t out[32]);

/* ----------------------------------------------------------------- layer -- */

/** How the layer reads a keel_call and captures / replays its outcome.
 *  scope:   the caller's identity (may return an empty slice: one global scope).
 *  key:     the idempotency key; a NULL ptr bypasses the layer for this call.
 *  payload: the canonical request bytes the key is bound to (hashed with SHA-256).  For
 *           JSON, serialise with sorted keys and no whitespace so that semantically equal
 *           bodies hash equally.
 *  save:    capture the outcome e (KEEL_OK or a terminal error) of the operation as bytes
 *           appended to out (the result, or the error's detail).
 *  replay:  give a stored outcome back to the caller: e is KEEL_OK (stored result) or the
 *           stored error, stored the bytes save() produced (borrowed for the call).  Its
 *           return value is what the layer returns (normally e).
 *  ud:      passed to all (borrowed). */
typedef struct keel_idem_binding {
    keel_str (*scope)(const keel_call *call, void *ud);
    keel_str (*key)(const keel_call *call, void *ud);
    keel_str (*payload)(const keel_call *call, void *ud);
    keel_err (*save)(const keel_call *call, keel_err e, keel_buf *out, void *ud);
    keel_err (*replay)(keel_call *call, keel_err e, keel_str stored, void *ud);
    void *ud;
} keel_idem_binding;

typedef struct keel_idem_config {
    size_t size;                   /* sizeof(keel_idem_config) */
    const char *name;              /* label for metrics and logs; default "idempotency" */
    uint64_t ttl_ms;               /* retention of finished records; default 24 h */
    uint64_t in_flight_timeout_ms; /* an IN_FLIGHT record older than this is abandoned; 90 s */
    size_t max_result_bytes;       /* cap on a saved outcome; default 1 MiB */
    int64_t (*wall_ms)(void *ud);  /* wall clock; NULL = keel_time_wall_ms */
    void *clock_ud;
    keel_metrics *metrics;         /* keel_idempotency_requests_total{name,outcome} */
} keel_idem_config;

KEEL_API void keel_idem_config_default(keel_idem_config *cfg);

/** Counters of one layer (outcomes since creation). */
typedef struct keel_idem_stats {
    uint64_t executed;  /* the operation ran (slot claimed) */
    uint64_t replayed;  /* a stored result or error was returned */
    uint64_t conflicts; /* key reused with another payload */
    uint64_t in_flight; /* refused because the first request still runs */
    uint64_t released;  /* retriable failures that cleared the slot */
    uint64_t store_errors;
} keel_idem_stats;

typedef struct keel_idem keel_idem; /* the policy object behind the layer */

/** Create the policy.  @return KEEL_OK, KEEL_EINVAL (NULL store/binding member, ttl 0,
 *  in-flight timeout 0, bad size; diag names the field), KEEL_ENOMEM.
 *  Ownership: borrows store (must outlive the policy); copies cfg and binding. */
KEEL_API KEEL_NODISCARD keel_err keel_idem_create(keel_idem **out, keel_idem_store *store,
                                                  const keel_idem_binding *binding,
                                                  const keel_idem_config *cfg, keel_diag *diag);
KEEL_API void keel_idem_destroy(keel_idem *p);
/** A chain layer (name "idempotency") whose cx is a keel_call *.  Put it outermost.
 *  Ownership: borrows p; the layer's dispose frees only the layer. */
KEEL_API KEEL_NODISCARD keel_err keel_idem_layer(keel_idem *p, keel_layer **out);
KEEL_API void keel_idem_get_stats(keel_idem *p, keel_idem_stats *out);

/* ------------------------------------------------------------------ HTTP -- */

/** The HTTP form: a handler run under the Idempotency-Key header protocol.
 *
 *  The key comes from the `Idempotency-Key` header (bare, as Stripe sends it, or an RFC 8941
 *  quoted string, as the IETF draft does).  The payload bound to it is the method, the route
 *  and the body - canonical JSON (sorted keys, no whitespace) when the body parses as JSON,
 *  else the raw bytes.  What is stored is the handler's whole response: status, content type
 *  and body, 4xx and 500 included (Stripe); a replay sends them back byte for byte with
 *  `Idempotent-Replayed: true`.  Responses 429, 502, 503 and 504, and handler errors that
 *  produced no response, are "try again" answers: the slot is released instead.
 *
 *  Refusals follow the IETF draft (reference.md §1.2): key reused with another payload -> 422
 *  problem (type .../idempotency-key-mismatch); first request still in flight -> 409 with
 *  Retry-After: 1; malformed key -> 400; key missing where required -> 400; the store
 *  unreachable -> 503 (fail closed). */
typedef struct keel_idem_http keel_idem_http;

/** Create the HTTP policy over store (borrowed) with cfg (NULL = defaults).
 *  @return as keel_idem_create(). */
KEEL_API KEEL_NODISCARD keel_err keel_idem_http_create(keel_idem_http **out,
                                                       keel_idem_store *store,
                                                       const keel_idem_config *cfg,
                                                       keel_diag *diag);
KEEL_API void keel_idem_http_destroy(keel_idem_http *h);
/** The policy behind h (for keel_idem_get_stats). */
KEEL_API keel_idem *keel_idem_http_policy(keel_idem_http *h);

/** Run fn(cx, ud) under the protocol.  scope: the caller's identity (user id, API key id; an
 *  empty slice = one global scope).  require_key: answer 400 when the header is absent
 *  (otherwise the handler simply runs unprotected).
 *  @return KEEL_OK when a response was produced (handler's, replayed or a problem), else the
 *  handler's error.  Thread-safety: any thread. */
KEEL_API keel_err keel_idem_http_handle(keel_idem_http *h, keel_ctx *cx, keel_str scope,
                                        int require_key, keel_handler_fn fn, void *ud);
/** Inside the handler run by keel_idem_http_handle(): the request's Idempotency-Key as
 *  parsed (the quotes of the RFC 8941 string form removed), to forward downstream - a gateway
 *  must see the same key whichever form the client sent.  NULL outside such a handler or when
 *  the request had no key.  Valid until the request ends. */
KEEL_API const char *keel_idem_http_key(const keel_ctx *cx);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_IDEMPOTENCY_H */
