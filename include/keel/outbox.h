/*
 * keel/outbox.h - the transactional outbox: events written in the same transaction as the
 * business change, relayed afterwards to a publisher (the event bus, a broker...).
 *
 * Model.  keel_outbox_add() inserts a row into keel_outbox (library-owned table, component
 * "keel.async.outbox", created by keel_outbox_migrate()) on the caller's connection, inside
 * the caller's transaction: the event exists if and only if the business write commits.  Each
 * row gets a dedup id (a UUIDv4) when it is added; every delivery of the row carries that same
 * id, so consumers deduplicate on it.
 *
 * Relay.  A keel_outbox_relay claims unpublished rows in insertion order (a batch per
 * transaction: PostgreSQL SELECT ... FOR UPDATE SKIP LOCKED, SQLite under its write lock) by
 * stamping them with its owner id and a lease, commits, then hands each row to the publish
 * callback in order and marks it published.  If the relay dies after publishing and before
 * marking, the lease expires and the row is published again (with the same id): delivery is
 * at-least-once.  Several relays can run against one database; each row is held by one relay
 * at a time.  A publish error stops the batch: the failed row and the rest of the batch are
 * released at once (the failure is recorded on the row: attempts, last_error), and the relay
 * thread backs off (backoff_base_ms doubling up to backoff_max_ms) before trying again, from
 * the failed row, so one relay preserves order.  Order across several relays, or on PostgreSQL
 * between transactions that commit in a different order than they inserted, is best effort.
 *
 * Retention.  Published rows stay for inspection until keel_outbox_purge() deletes those
 * published more than a given age ago (call it from a periodic task).
 *
 * Time: wall-clock milliseconds from the relay's clock (default keel_time_wall_ms()).
 * Thread-safety: store-level functions from any thread; a relay's lifecycle functions
 * (start, stop, destroy) from one controlling thread; keel_outbox_relay_run_once() and
 * keel_outbox_relay_wake() from any thread.
 */
#ifndef KEEL_OUTBOX_H
#define KEEL_OUTBOX_H

#include <jansson.h>
#include <keel/common.h>
#include <keel/core.h>
#include <keel/metrics.h>
#include <keel/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Longest event type (bytes). */
#define KEEL_OUTBOX_TYPE_MAX 128
/** Largest serialised payload (bytes). */
#define KEEL_OUTBOX_PAYLOAD_MAX (1024u * 1024u)
/** Largest relay batch. */
#define KEEL_OUTBOX_BATCH_MAX 1000

/** Create the keel_outbox table if needed (component "keel.async.outbox").  Idempotent.
 *  @return KEEL_OK or an error of keel_store_migrate_component().
 *  Thread-safety: any thread.  Ownership: borrows s. */
KEEL_API KEEL_NODISCARD keel_err keel_outbox_migrate(keel_store *s, keel_diag *diag);

/** Add an event inside the caller's open transaction on db.
 *  @param type event type ("order.created"; 1..KEEL_OUTBOX_TYPE_MAX printable ASCII bytes).
 *  @param payload any JSON value (NULL = JSON null), at most KEEL_OUTBOX_PAYLOAD_MAX serialised.
 *  @param id_out receives the dedup id (UUIDv4); may be NULL.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ESTATE (db has no open transaction: the point of the
 *          outbox is to commit with the business write), KEEL_ETOOBIG, KEEL_ENOMEM,
 *          KEEL_ECRYPTO, or a store error.
 *  Thread-safety: the thread owning db.  Ownership: borrows everything. */
KEEL_API KEEL_NODISCARD keel_err keel_outbox_add(keel_db *db, const char *type,
                                                 const json_t *payload,
                                                 char id_out[KEEL_UUID_SIZE], keel_diag *diag);

/** Number of unpublished rows.  @return KEEL_OK, KEEL_EINVAL, a store error.
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_outbox_pending(keel_store *s, int64_t *out,
                                                     keel_diag *diag);

/** Delete rows published at or before now - older_than_ms (wall clock).
 *  @param deleted receives the number of rows deleted (may be NULL).
 *  @return KEEL_OK, KEEL_EINVAL, a store error.  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_outbox_purge(keel_store *s, uint64_t older_than_ms,
                                                   int64_t *deleted, keel_diag *diag);

/** The publisher.  Called once per delivery, in order, on the relay's thread; id is the dedup
 *  id (the same on every re-delivery of the row).  Return KEEL_OK once the event is safely
 *  handed over; any error leaves the row unpublished for a later attempt.
 *  Ownership: type, id and payload are borrowed for the call. */
typedef keel_err (*keel_outbox_publish_fn)(const char *type, const char *id,
                                           const json_t *payload, void *ud);

typedef struct keel_outbox_relay_config {
    size_t size;
    keel_store *store;              /* required; borrowed, must outlive the relay */
    keel_outbox_publish_fn publish; /* required */
    void *ud;                       /* passed to publish; borrowed */
    unsigned batch;                 /* rows claimed per transaction (100) */
    uint64_t lease_ms;              /* claim lease; must exceed a batch's publish time (30000) */
    uint64_t poll_ms;               /* the relay thread looks for rows this often (500) */
    uint64_t backoff_base_ms;       /* pause after a publish failure (500), doubling ... */
    uint64_t backoff_max_ms;        /* ... up to this (30000) */
    keel_metrics *metrics;          /* outbox_published_total, outbox_publish_failures_total,
                                       outbox_pending (gauge); optional */
    const char *owner;              /* recorded on claims; NULL = "<host>:<pid>:<rand>" */
    int64_t (*now_ms)(void *ud);    /* wall clock; NULL = keel_time_wall_ms() */
    void *now_ud;
} keel_outbox_relay_config;

typedef struct keel_outbox_relay keel_outbox_relay;

/** Defaults as listed above.  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_outbox_relay_config_default(keel_outbox_relay_config *cfg);

/** Create a relay (not started).  Runs keel_outbox_migrate().
 *  @return KEEL_OK, KEEL_EINVAL (diag names the field), KEEL_ENOMEM, a migration error, or a
 *          metrics registration error.
 *  Thread-safety: any thread.  Ownership: caller destroys with keel_outbox_relay_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_outbox_relay_create(keel_outbox_relay **out,
                                                          const keel_outbox_relay_config *cfg,
                                                          keel_diag *diag);

/** Claim one batch and publish it on the calling thread (use from a periodic task, or in
 *  tests).  @param published receives the rows published (may be NULL).
 *  @return KEEL_OK (also when nothing was pending), the publish callback's error (the batch
 *          stopped at that row, which stays unpublished), or a store error.
 *  Thread-safety: any thread; may run alongside the relay thread and other relays. */
KEEL_API KEEL_NODISCARD keel_err keel_outbox_relay_run_once(keel_outbox_relay *r,
                                                            size_t *published, keel_diag *diag);

/** Start the relay thread (it loops on run_once, sleeping poll_ms when idle and backing off
 *  after failures).  The thread blocks asynchronous signals.  A relay starts once.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ESTATE (started before), KEEL_ENOMEM.
 *  Thread-safety: controlling thread. */
KEEL_API KEEL_NODISCARD keel_err keel_outbox_relay_start(keel_outbox_relay *r);

/** Wake the relay thread now (after a commit that added events).  Thread-safety: any thread. */
KEEL_API void keel_outbox_relay_wake(keel_outbox_relay *r);

/** Stop the relay thread after its current batch (waiting up to timeout_ms, 0 = no limit);
 *  rows of an unfinished batch keep their claims until the lease expires.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ETIMEOUT (still publishing; call again or destroy).
 *  Thread-safety: controlling thread, never from the publish callback. */
KEEL_API KEEL_NODISCARD keel_err keel_outbox_relay_stop(keel_outbox_relay *r,
                                                        uint64_t timeout_ms);

/** Stop (no limit) and free.  NULL is a no-op.  Thread-safety: controlling thread. */
KEEL_API void keel_outbox_relay_destroy(keel_outbox_relay *r);

/** A keel_outbox_publish_fn that publishes each relayed row on the event bus passed as ud
 *  (a keel_bus *, keel/bus.h): an event of the row's type whose data is a copy of the payload
 *  and whose metadata carries "dedup_id": the row's id, identical on every re-delivery.
 *  Set cfg.publish = keel_outbox_publish_to_bus and cfg.ud = bus.
 *  @return the bus's publish result (KEEL_EFULL from a full asynchronous bus makes the relay
 *  retry the row later), KEEL_EINVAL, KEEL_ENOMEM.  Thread-safety: as keel_bus_publish. */
KEEL_API keel_err keel_outbox_publish_to_bus(const char *type, const char *id,
                                             const json_t *payload, void *bus);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_OUTBOX_H */
