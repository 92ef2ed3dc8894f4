/*
 * keel/batch.h - batch processor: accumulate items, hand them to a process function in
 * batches (seed 004 AsyncBatchProcessor: batch_size=100, flush_interval=5.0).
 *
 * Module contract.  keel_batch_add() appends an item (an opaque pointer) to the pending list.
 * A batch is cut when batch_size items have accumulated (reason "size"), when the oldest
 * item not yet in a batch has waited flush_interval_ms (reason "interval"), on
 * keel_batch_flush() (reason "manual") and on stop (reason "shutdown").  One consumer thread
 * per processor calls the process function with each batch, in order, never two at once, so
 * batches are never larger than batch_size and items keep their add order.
 *
 * Backpressure.  Items count as pending from add until the process function has returned for
 * their batch; at most max_pending are pending.  When a slow consumer lets that fill up,
 * add() either waits for space (KEEL_BATCH_OVERFLOW_BLOCK, up to block_timeout_ms) or
 * refuses at once with KEEL_EFULL (KEEL_BATCH_OVERFLOW_REJECT).
 *
 * Time.  With auto_tick (the default) the consumer thread watches the interval itself on the
 * system monotonic clock.  With auto_tick = 0 nothing happens by time alone: the caller
 * passes the time to keel_batch_tick(), and add() reads the config's keel_clock, which makes
 * tests deterministic with a keel_manual_clock.
 *
 * Failures.  A process function returning an error is logged (logger "keel.async.batch") and
 * counted; the batch is not retried (wrap the work in a keel_retry chain for that) and its
 * items are released with item_free either way.  Metrics (when a registry is given):
 * keel_batch_flushes_total{reason="size"|"interval"|"shutdown"|"manual"},
 * keel_batch_items_total (items handed to the process function), keel_batch_failures_total
 * and keel_batch_rejected_total (adds refused or timed out on a full processor).
 *
 * Thread-safety: every function may be called from any thread, except that the process
 * function must not call keel_batch_flush(), _drain() or _stop() on its own processor.
 */
#ifndef KEEL_BATCH_H
#define KEEL_BATCH_H

#include <keel/common.h>
#include <keel/metrics.h>
#include <keel/policy.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_batch keel_batch;

/** Process one batch: items[0..n-1] in add order, 1 <= n <= batch_size.  Runs on the
 *  processor's consumer thread.  The items stay owned by the processor (released with
 *  item_free after the call).  Any return other than KEEL_OK counts as a failure. */
typedef keel_err (*keel_batch_fn)(void *const *items, size_t n, void *ud);
/** Release one item after its batch was processed (or at destroy if never processed). */
typedef void (*keel_batch_item_free_fn)(void *item, void *ud);

typedef enum keel_batch_overflow {
    KEEL_BATCH_OVERFLOW_BLOCK = 0, /* full: add() waits up to block_timeout_ms */
    KEEL_BATCH_OVERFLOW_REJECT = 1 /* full: add() returns KEEL_EFULL at once */
} keel_batch_overflow;

/** Why a batch was cut. */
typedef enum keel_batch_reason {
    KEEL_BATCH_REASON_SIZE = 0,
    KEEL_BATCH_REASON_INTERVAL = 1,
    KEEL_BATCH_REASON_SHUTDOWN = 2,
    KEEL_BATCH_REASON_MANUAL = 3
} keel_batch_reason;

/** Processor configuration.  Fill with keel_batch_config_default(), then override fields. */
typedef struct keel_batch_config {
    size_t size;                  /* sizeof(keel_batch_config) */
    const char *name;             /* for log records (default "batch"); copied */
    size_t batch_size;            /* items per batch, 1..1048576 (default 100) */
    uint64_t flush_interval_ms;   /* > 0 (default 5000) */
    size_t max_pending;           /* batch_size..16777216 (default 1000) */
    keel_batch_overflow overflow; /* default KEEL_BATCH_OVERFLOW_BLOCK */
    uint64_t block_timeout_ms;    /* OVERFLOW_BLOCK: longest wait, 0 = no limit (default 1000) */
    keel_batch_fn process;        /* required */
    void *ud;                     /* passed to process and item_free; borrowed */
    keel_batch_item_free_fn item_free; /* optional */
    int auto_tick;                /* 1 (default): interval flushes by the consumer thread */
    const keel_clock *clock;      /* auto_tick = 0 only: time of add(); NULL = system clock */
    keel_metrics *metrics;        /* optional; borrowed, must outlive the processor */
} keel_batch_config;

/** Counters of one processor since creation. */
typedef struct keel_batch_stats {
    uint64_t added;          /* items accepted by add() */
    uint64_t rejected;       /* adds refused (KEEL_EFULL) or timed out */
    uint64_t processed;      /* items handed to the process function (and returned) */
    uint64_t batches;        /* process calls */
    uint64_t failures;       /* process calls that returned an error */
    uint64_t flushes[4];     /* batches cut, indexed by keel_batch_reason */
    uint64_t pending;        /* items added and not yet processed */
} keel_batch_stats;

/** Set cfg to the defaults listed in keel_batch_config (process stays NULL).  NULL ignored.
 *  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_batch_config_default(keel_batch_config *cfg);

/** Create a processor and start its consumer thread.
 *  @return KEEL_OK; KEEL_EINVAL for a bad field, named in d ("process", "batch_size",
 *  "flush_interval_ms", "max_pending", "overflow", "clock", "size"); KEEL_EEXIST (metric names
 *  taken with another shape); KEEL_ENOMEM (also when the thread cannot be started).
 *  Thread-safety: any thread.  Ownership: caller destroys with keel_batch_destroy(); cfg
 *  copied (name too), ud / clock / metrics borrowed for the processor's life. */
KEEL_API KEEL_NODISCARD keel_err keel_batch_create(keel_batch **out, const keel_batch_config *cfg,
                                                   keel_diag *d);

/** Add one item.  On KEEL_OK the processor owns it (released with item_free after its batch);
 *  on any error it stays the caller's.
 *  @return KEEL_OK; KEEL_EINVAL (b NULL); KEEL_ECLOSED (stopped or stopping); KEEL_EFULL
 *  (max_pending reached with OVERFLOW_REJECT, or called from the process function, which
 *  must never wait for itself); KEEL_ETIMEOUT (OVERFLOW_BLOCK and no space in time).
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_batch_add(keel_batch *b, void *item);

/** Tell the processor the time is now_ms (same clock as the config's): if the oldest item not
 *  yet in a batch was added flush_interval_ms or longer ago, cut a batch (reason "interval").
 *  Returns without waiting for the batch to be processed (see keel_batch_drain()).  Useful
 *  with auto_tick = 0; harmless with auto_tick = 1.
 *  @return KEEL_OK, KEEL_EINVAL.  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_batch_tick(keel_batch *b, uint64_t now_ms);

/** Cut a batch of whatever is accumulated (reason "manual") and wait until every item added
 *  before the call has been processed.  timeout_ms 0 = no limit.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ETIMEOUT, KEEL_EBUSY (from the process function).
 *  Thread-safety: any thread but the consumer. */
KEEL_API KEEL_NODISCARD keel_err keel_batch_flush(keel_batch *b, uint64_t timeout_ms);

/** Wait until every batch cut before the call has been processed (items not yet in a batch
 *  stay).  timeout_ms 0 = no limit.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ETIMEOUT, KEEL_EBUSY (from the process function).
 *  Thread-safety: any thread but the consumer. */
KEEL_API KEEL_NODISCARD keel_err keel_batch_drain(keel_batch *b, uint64_t timeout_ms);

/** Refuse new items (KEEL_ECLOSED), cut the remainder (reason "shutdown"), wait up to
 *  timeout_ms (0 = no limit) for every item to be processed, and join the consumer.  A second
 *  call is a no-op returning KEEL_OK.
 *  @return KEEL_OK, KEEL_EINVAL, KEEL_ETIMEOUT (call again or destroy to keep waiting),
 *  KEEL_EBUSY (from the process function).  Thread-safety: any thread but the consumer. */
KEEL_API KEEL_NODISCARD keel_err keel_batch_stop(keel_batch *b, uint64_t timeout_ms);

/** Fill *out with the counters.  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_batch_stats_get(keel_batch *b, keel_batch_stats *out);

/** Stop (without a time limit, so every accepted item is processed) and free.  NULL is a
 *  no-op.  Thread-safety: no other thread may use the processor any more. */
KEEL_API void keel_batch_destroy(keel_batch *b);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_BATCH_H */
