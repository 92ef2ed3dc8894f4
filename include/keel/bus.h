/*
 * keel/bus.h - in-process event bus with middleware, synchronous or asynchronous delivery
 * (seed 000 section 10A, seed 001 section 4).
 *
 * Module contract.  An event is a type name ("user.created"), a JSON payload (a jansson
 * value: JSON is what the outbox relays, so the payload is JSON rather than opaque bytes), a
 * JSON metadata object, a random UUIDv4 id and a wall-clock timestamp in milliseconds.
 *
 * Subscribers register for one type or for every type ("*") and get a subscription id.
 * Middleware (an ordered list, added at setup time) sees each event first and may change its
 * payload or metadata in place, or drop it.  Middleware runs on the publishing thread, before
 * the event is delivered (sync) or queued (async), so a dropped event never takes a queue slot.
 *
 * Delivery.  KEEL_BUS_SYNC: keel_bus_publish() runs the handlers in the caller's thread, in
 * subscription order, and returns when they are done.  KEEL_BUS_ASYNC: publish puts the
 * event on a bounded queue and returns at once; a pool of worker threads delivers it (all
 * handlers of one event run on one worker, in subscription order; with one worker events
 * are delivered in publish order).  A full queue either refuses the event (KEEL_EFULL) or
 * makes the publisher wait (KEEL_BUS_OVERFLOW_BLOCK).  keel_bus_drain() waits until every
 * accepted event is delivered; keel_bus_stop() refuses new events and delivers the accepted
 * ones before returning.
 *
 * Failure isolation.  A handler returning an error never prevents the other handlers from
 * running; the failure is logged (logger "keel.async.bus") and counted.  Metrics (when a
 * registry is given): keel_bus_events_published_total{type},
 * keel_bus_handler_failures_total{type} and keel_bus_events_dropped_total{reason} with
 * reason "middleware" (dropped by a middleware), "queue_full" (refused or timed out on a
 * full queue) or "closed" (published after stop).
 *
 * Thread-safety.  Publishing, subscribing and unsubscribing are safe from any thread at any
 * time, also from inside a handler.  The subscriber list is an immutable, reference-counted
 * snapshot replaced on every change, so a publish in progress never sees freed memory.
 * keel_bus_add_middleware() is setup-time only (before the first publish).
 */
#ifndef KEEL_BUS_H
#define KEEL_BUS_H

#include <jansson.h>
#include <keel/common.h>
#include <keel/core.h>
#include <keel/metrics.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Longest event type name, in bytes. */
#define KEEL_EVENT_TYPE_MAX 128
/** The wildcard subscription type: every event. */
#define KEEL_BUS_ANY "*"

/* ----------------------------------------------------------------- events -- */

/** One event.  Opaque; owned by whoever holds it until handed to the bus. */
typedef struct keel_event keel_event;

/** Create an event of the given type carrying data, with a fresh UUIDv4 id, the current wall
 *  time and an empty metadata object.
 *  @param type 1..KEEL_EVENT_TYPE_MAX printable ASCII bytes (no spaces), not "*"; copied.
 *  @param data payload; the reference is stolen (also on error).  NULL means JSON null.
 *  @return KEEL_OK, KEEL_EINVAL (out NULL, bad type), KEEL_ENOMEM, KEEL_ECRYPTO (no random).
 *  Thread-safety: any thread.  Ownership: caller destroys *out with keel_event_destroy() or
 *  hands it to keel_bus_publish_take(). */
KEEL_API KEEL_NODISCARD keel_err keel_event_create(keel_event **out, const char *type,
                                                   json_t *data);
/** Free an event (drops its payload and metadata references).  NULL is a no-op.
 *  Thread-safety: the holder's thread. */
KEEL_API void keel_event_destroy(keel_event *ev);
/** Type name.  Ownership: borrowed, valid while the event lives.  Thread-safety: any thread. */
KEEL_API const char *keel_event_type(const keel_event *ev);
/** Canonical lower-case UUID of the event (KEEL_UUID_SIZE - 1 characters).  Borrowed. */
KEEL_API const char *keel_event_id(const keel_event *ev);
/** Wall-clock creation time, milliseconds since the Unix epoch. */
KEEL_API int64_t keel_event_timestamp_ms(const keel_event *ev);
/** Payload (never NULL: JSON null when created with NULL).  Borrowed; handlers must not
 *  modify it (take a json_deep_copy() to change it). */
KEEL_API json_t *keel_event_data(const keel_event *ev);
/** Metadata object (never NULL).  Middleware may add members; handlers must not.  Borrowed. */
KEEL_API json_t *keel_event_metadata(const keel_event *ev);
/** Replace the payload (middleware transform).  data's reference is stolen; NULL means JSON
 *  null.  @return KEEL_OK, KEEL_EINVAL (ev NULL; data is released).
 *  Thread-safety: the holder's thread (middleware runs on the publisher's thread). */
KEEL_API keel_err keel_event_set_data(keel_event *ev, json_t *data);
/** The event as a new JSON object {"id","type","timestamp" (ISO-8601 UTC),"timestamp_ms",
 *  "data","metadata"}, the form the outbox stores and relays.
 *  @return a new reference (caller json_decref()s it), or NULL on OOM or ev NULL. */
KEEL_API json_t *keel_event_to_json(const keel_event *ev);

/* -------------------------------------------------------------------- bus -- */

typedef struct keel_bus keel_bus;

/** A subscriber.  Runs on the publisher's thread (sync) or a worker (async).  Any return other
 *  than KEEL_OK is a failure: logged and counted, the other handlers still run.
 *  The event is borrowed for the duration of the call only. */
typedef keel_err (*keel_bus_handler_fn)(const keel_event *ev, void *ud);

/** What a middleware decides. */
typedef enum keel_bus_verdict {
    KEEL_BUS_PASS = 0, /* deliver the (possibly modified) event */
    KEEL_BUS_DROP = 1  /* drop it: no handler sees it; counted as dropped{reason="middleware"} */
} keel_bus_verdict;

/** A middleware: may modify ev's payload (keel_event_set_data) or metadata in place, then
 *  pass or drop it.  Runs on the publishing thread. */
typedef keel_bus_verdict (*keel_bus_middleware_fn)(keel_event *ev, void *ud);

typedef enum keel_bus_mode {
    KEEL_BUS_SYNC = 0, /* handlers run in keel_bus_publish*() */
    KEEL_BUS_ASYNC = 1 /* bounded queue + worker pool */
} keel_bus_mode;

typedef enum keel_bus_overflow {
    KEEL_BUS_OVERFLOW_REJECT = 0, /* full queue: KEEL_EFULL at once */
    KEEL_BUS_OVERFLOW_BLOCK = 1   /* full queue: wait up to block_timeout_ms for space */
} keel_bus_overflow;

/** Bus configuration.  Fill with keel_bus_config_default(), then override fields. */
typedef struct keel_bus_config {
    size_t size;                /* sizeof(keel_bus_config) */
    keel_bus_mode mode;         /* default KEEL_BUS_SYNC */
    unsigned workers;           /* ASYNC: worker threads, 1..64 (default 2) */
    size_t queue_capacity;      /* ASYNC: events queued at most, 1..1048576 (default 1024) */
    keel_bus_overflow overflow; /* ASYNC: default KEEL_BUS_OVERFLOW_REJECT */
    uint64_t block_timeout_ms;  /* OVERFLOW_BLOCK: longest wait; 0 = no limit (default 1000) */
    size_t max_subscribers;     /* 1..65536 (default 1024) */
    keel_metrics *metrics;      /* optional; borrowed, must outlive the bus */
} keel_bus_config;

/** Counters of one bus since creation. */
typedef struct keel_bus_stats {
    uint64_t published;        /* events delivered (sync) or accepted on the queue (async) */
    uint64_t delivered;        /* events whose handlers have all run */
    uint64_t handler_calls;    /* handler invocations */
    uint64_t handler_failures; /* handler invocations that returned an error */
    uint64_t dropped;          /* middleware drops + queue-full refusals + publishes after stop */
    uint64_t queued;           /* current queue depth (async) */
} keel_bus_stats;

/** Set cfg to the defaults listed in keel_bus_config.  NULL is ignored.
 *  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_bus_config_default(keel_bus_config *cfg);

/** Create a bus (and, in ASYNC mode, start its workers).  cfg NULL = defaults.
 *  @return KEEL_OK; KEEL_EINVAL for a bad field (d names it: "workers", "queue_capacity",
 *  "max_subscribers", "mode", "overflow", "size"); KEEL_EEXIST (metric names taken with
 *  another shape); KEEL_ENOMEM (also when a thread cannot be started).
 *  Thread-safety: any thread.  Ownership: caller destroys with keel_bus_destroy(); cfg is
 *  copied, cfg->metrics borrowed. */
KEEL_API KEEL_NODISCARD keel_err keel_bus_create(keel_bus **out, const keel_bus_config *cfg,
                                                 keel_diag *d);

/** Append a middleware (runs after those added before it).  Setup time only.
 *  @return KEEL_OK, KEEL_EINVAL (NULL bus or fn), KEEL_ESTATE (an event was already
 *  published), KEEL_EFULL (more than 32 middlewares).
 *  Thread-safety: not concurrent with publishing.  Ownership: ud borrowed for the bus life. */
KEEL_API KEEL_NODISCARD keel_err keel_bus_add_middleware(keel_bus *b, keel_bus_middleware_fn fn,
                                                         void *ud);

/** Subscribe handler to events of type (or KEEL_BUS_ANY).  Events published after the call
 *  returns reach the handler; handlers run in subscription order.
 *  @param id receives the subscription id (never 0); may be NULL.
 *  @return KEEL_OK, KEEL_EINVAL (NULL handler, bad type), KEEL_EFULL (max_subscribers),
 *  KEEL_ENOMEM.
 *  Thread-safety: any thread, also from a handler.  Ownership: type copied, ud borrowed until
 *  unsubscribed (or the bus is destroyed). */
KEEL_API KEEL_NODISCARD keel_err keel_bus_subscribe(keel_bus *b, const char *type,
                                                    keel_bus_handler_fn handler, void *ud,
                                                    uint64_t *id);

/** Remove a subscription.  When it returns (called from outside any handler of this bus) the
 *  handler is not running and will not run again, so ud may be freed.  Called from inside a
 *  handler it does not wait (that could deadlock); the handler will not be called again but
 *  another thread may still be finishing a call.
 *  @return KEEL_OK, KEEL_EINVAL (b NULL), KEEL_ENOTFOUND (unknown or already removed id).
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_bus_unsubscribe(keel_bus *b, uint64_t id);

/** Publish an event (the bus takes it, also on error).  Middleware runs first, on this
 *  thread.  SYNC: delivers and returns.  ASYNC: queues and returns.
 *  @return KEEL_OK (delivered, queued, or dropped by middleware: that is policy, not an
 *  error; see the stats); KEEL_EINVAL (NULL argument); KEEL_ECLOSED (bus stopped);
 *  KEEL_EFULL (queue full with OVERFLOW_REJECT, or with OVERFLOW_BLOCK when called from one of
 *  this bus's workers, which must never wait for themselves); KEEL_ETIMEOUT (OVERFLOW_BLOCK
 *  and no space within block_timeout_ms).
 *  Thread-safety: any thread, also from a handler (a SYNC publish from a handler nests). */
KEEL_API KEEL_NODISCARD keel_err keel_bus_publish_take(keel_bus *b, keel_event *ev);

/** Create an event (keel_event_create) and publish it.  data's reference is stolen, also on
 *  error.  id_out (may be NULL) receives the event id when the event was created.
 *  @return the errors of keel_event_create() and keel_bus_publish_take(). */
KEEL_API KEEL_NODISCARD keel_err keel_bus_publish(keel_bus *b, const char *type, json_t *data,
                                                  char id_out[KEEL_UUID_SIZE]);

/** Wait until no accepted event is queued or being delivered (ASYNC: the queue is empty and
 *  the workers idle; SYNC: publishes running on other threads have finished), so every event
 *  accepted before the call has been delivered.  Under a constant stream of publishes this
 *  may not return before the timeout.  timeout_ms 0 = no limit.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ETIMEOUT, KEEL_EBUSY (called from a worker of this bus).
 *  Thread-safety: any thread except this bus's workers. */
KEEL_API KEEL_NODISCARD keel_err keel_bus_drain(keel_bus *b, uint64_t timeout_ms);

/** Refuse new events (KEEL_ECLOSED), deliver every accepted event and join the workers.
 *  timeout_ms 0 = no limit.  A second call is a no-op returning KEEL_OK.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ETIMEOUT (workers still delivering; call again or
 *  destroy to wait), KEEL_EBUSY (called from a handler of this bus).
 *  Thread-safety: any thread except this bus's handlers. */
KEEL_API KEEL_NODISCARD keel_err keel_bus_stop(keel_bus *b, uint64_t timeout_ms);

/** Fill *out with the bus counters.  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_bus_stats_get(keel_bus *b, keel_bus_stats *out);

/** Stop (delivering every accepted event, no time limit) and free the bus.  NULL is a no-op.
 *  Thread-safety: no other thread may use the bus any more; never from a handler. */
KEEL_API void keel_bus_destroy(keel_bus *b);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_BUS_H */
