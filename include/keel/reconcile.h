/*
 * keel/reconcile.h - daily reconciliation of an internal ledger against a gateway report
 * (seed 004, "Daily reconciliation").
 *
 * Records on both sides are matched by transaction id.  A record is an id, an amount in
 * integer minor units, a currency and a status string.  Each id present on one side only, or
 * present on both with different values, is one discrepancy:
 *
 *   KEEL_RECON_MISSING_INTERNAL  the gateway has the id, the internal side does not
 *   KEEL_RECON_MISSING_GATEWAY   the internal side has the id, the gateway does not
 *   KEEL_RECON_AMOUNT_MISMATCH   amount or currency differ (also when the status differs too:
 *                                an id is one discrepancy at most, and amount wins)
 *   KEEL_RECON_STATUS_MISMATCH   amount and currency equal, status differs
 *
 * Statuses and ids compare byte for byte: case-sensitive, no trimming ("Settled" and
 * "settled" differ).  Currencies compare by ISO 4217 code.
 *
 * Flow: keel_recon_create(), keel_recon_on() for each handler, feed every internal record
 * (keel_recon_add_internal or keel_recon_feed_csv with KEEL_RECON_INTERNAL), then every
 * gateway record, then keel_recon_finish(), then keel_recon_summary() / keel_recon_stats().
 * The internal side is indexed in a hash table (memory proportional to its record count); the
 * gateway side is streamed against the index, so it may be of any length: only gateway ids
 * unknown to the internal side are remembered (to detect duplicates).  Time is linear in the
 * input size.
 *
 * Handler order is deterministic: discrepancies found while streaming the gateway side fire
 * in gateway order as each gateway record arrives (missing_internal, amount_mismatch,
 * status_mismatch); keel_recon_finish() then fires missing_gateway in internal order.
 *
 * Summary (exactly the seed's form):
 *   "1248/1251 matched, 3 discrepancies: 2 missing_internal, 1 status_mismatch"
 * The denominator is the number of distinct ids across both sides, the numerator the ids
 * present on both sides with equal amount, currency and status.  Types are listed in the
 * order missing_internal, missing_gateway, amount_mismatch, status_mismatch with zero counts
 * omitted; a clean run reads "N/N matched, 0 discrepancies" ("0/0 matched, 0 discrepancies"
 * when both sides are empty).  The word is always "discrepancies", also for 1: the line is a
 * stable, machine-greppable format, as in the seed.
 *
 * CSV input (keel_recon_feed_csv*): RFC 4180 - comma separated, fields optionally in double
 * quotes with "" for a quote; commas, CR and LF are data inside quotes.  Lines end in LF or
 * CRLF, and the two may be mixed within a file; a CR not followed by LF outside quotes is an
 * error.  A UTF-8 byte order mark at the start is skipped.  The first line is a header naming
 * at least the columns id, amount, currency and status, in any order, matched ASCII
 * case-insensitively after trimming spaces and tabs; other columns are ignored; each of the
 * four may appear once.  Every later row must have as many fields as the header.  Data fields
 * are taken verbatim (never trimmed).  id must be non-empty; currency is an ISO 4217 code
 * (case-insensitive, keel_currency_find); amount is a decimal in major units ("12.34",
 * "-5.00" for a refund: negative amounts are allowed), parsed exactly with keel_money_parse.
 * Empty lines at the end of the file are ignored; an empty line followed by more data is an
 * error.  A record may hold at most KEEL_RECON_RECORD_MAX bytes and KEEL_RECON_FIELDS_MAX
 * fields.  A file with no header line at all is an error; a header alone is an empty side.
 *
 * Errors name the input and the line, and the column where useful, in diag->msg
 * ("gateway.csv:12:7: ..."); diag->offset holds the 1-based line number (0 when none).  The
 * input name is the one passed to the feed call, or "internal" / "gateway".
 *
 * Thread-safety: a keel_recon is not thread-safe; use it from one thread at a time.
 * keel_recon_type_name is callable from any thread.
 */
#ifndef KEEL_RECONCILE_H
#define KEEL_RECONCILE_H

#include <keel/common.h>
#include <keel/payment.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Discrepancy types, in summary order. */
typedef enum keel_recon_type {
    KEEL_RECON_MISSING_INTERNAL = 0,
    KEEL_RECON_MISSING_GATEWAY = 1,
    KEEL_RECON_AMOUNT_MISMATCH = 2,
    KEEL_RECON_STATUS_MISMATCH = 3
} keel_recon_type;
#define KEEL_RECON_TYPE_COUNT 4

/** The two inputs. */
typedef enum keel_recon_side { KEEL_RECON_INTERNAL = 0, KEEL_RECON_GATEWAY = 1 } keel_recon_side;

/** Largest CSV record in bytes (raw, including quotes and separators). */
#define KEEL_RECON_RECORD_MAX (64u * 1024u)
/** Most fields in one CSV record. */
#define KEEL_RECON_FIELDS_MAX 1024u
/** Most handlers per discrepancy type. */
#define KEEL_RECON_HANDLERS_MAX 8u
/** Buffer size that always holds keel_recon_summary()'s text and its NUL. */
#define KEEL_RECON_SUMMARY_MAX 256u
/** The progress callback fires every this many records (both sides counted). */
#define KEEL_RECON_PROGRESS_EVERY 65536u

/** One transaction as seen by one side.  A value: the strings are borrowed. */
typedef struct keel_recon_record {
    keel_str id;                   /* transaction id, non-empty */
    int64_t amount;                /* minor units of currency; negative for refunds */
    const keel_currency *currency; /* from keel_currency_find, never NULL */
    keel_str status;               /* compared exactly */
    uint64_t line;                 /* 1-based source line for messages; 0 = record ordinal */
} keel_recon_record;

/** What a handler receives.  internal is NULL for MISSING_INTERNAL, gateway is NULL for
 *  MISSING_GATEWAY; both are set for the mismatches.  Everything (records and their strings)
 *  is borrowed and valid only during the call. */
typedef struct keel_recon_discrepancy {
    keel_recon_type type;
    keel_str id;
    const keel_recon_record *internal;
    const keel_recon_record *gateway;
} keel_recon_discrepancy;

/** Discrepancy handler.  Return KEEL_OK to go on; any other code stops the run: the add /
 *  feed / finish call that triggered it returns that code and the reconciler is failed. */
typedef keel_err (*keel_recon_handler)(const keel_recon_discrepancy *d, void *ud);

/** Progress callback: total records read so far across both sides. */
typedef void (*keel_recon_progress_fn)(uint64_t records, void *ud);

/** Reconciler settings; keel_recon_config_default() first, then override. */
typedef struct keel_recon_config {
    size_t size;                     /* sizeof(keel_recon_config) */
    uint64_t expected_records;       /* hint: internal records to presize for (0 = grow) */
    uint64_t max_records;            /* cap on records kept (internal + gateway-only ids);
                                        default 100,000,000 */
    uint64_t max_bytes;              /* cap on record storage (a 40-byte header + id +
                                        status per record, 8-aligned); default 8 GiB,
                                        at most 32 GiB */
    keel_recon_progress_fn progress; /* optional, every KEEL_RECON_PROGRESS_EVERY records */
    void *progress_ud;
} keel_recon_config;

/** Counts for a run (valid after keel_recon_finish; partial before). */
typedef struct keel_recon_stats {
    uint64_t matched;                     /* ids on both sides with equal values */
    uint64_t total;                       /* distinct ids across both sides */
    uint64_t discrepancies;               /* sum of count[] */
    uint64_t count[KEEL_RECON_TYPE_COUNT]; /* indexed by keel_recon_type */
    uint64_t internal_records;
    uint64_t gateway_records;
} keel_recon_stats;

/** An opaque reconciler. */
typedef struct keel_recon keel_recon;

/** Fill cfg with defaults (size set, caps at their defaults, no hint, no progress).
 *  Thread-safety: any thread.  Ownership: writes *cfg.  Errors: none (NULL is ignored). */
KEEL_API void keel_recon_config_default(keel_recon_config *cfg);

/** Create a reconciler.  cfg may be NULL (defaults).
 *  @return KEEL_OK; KEEL_EINVAL (out NULL, cfg->size too small, zero caps); KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: caller destroys *out with keel_recon_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_recon_create(keel_recon **out, const keel_recon_config *cfg);

/** Free the reconciler and everything it stored.  NULL is a no-op.
 *  Thread-safety: not while another call on r runs.  Ownership: consumes r.  Errors: none. */
KEEL_API void keel_recon_destroy(keel_recon *r);

/** Register fn for one discrepancy type (the seed's reconciler.on(type, fn)).  Several
 *  handlers per type are called in registration order, each once per discrepancy.
 *  @return KEEL_OK; KEEL_EINVAL (bad type or NULL fn); KEEL_EFULL (more than
 *  KEEL_RECON_HANDLERS_MAX for the type); KEEL_ESTATE (records already added).
 *  Thread-safety: one thread per reconciler; handlers run on the caller's thread, inside the
 *  add / feed / finish call.  Ownership: ud is borrowed until destroy. */
KEEL_API KEEL_NODISCARD keel_err keel_recon_on(keel_recon *r, keel_recon_type type,
                                               keel_recon_handler fn, void *ud);

/** Add one internal record (copied).  All internal records come before any gateway record.
 *  @return KEEL_OK; KEEL_EEXIST (duplicate id); KEEL_EINVAL (empty id, NULL currency);
 *  KEEL_ETOOBIG (max_records / max_bytes); KEEL_ENOMEM; KEEL_ESTATE (gateway side started,
 *  finished, or failed).  Any error but KEEL_EINVAL/KEEL_ESTATE fails the reconciler.
 *  Thread-safety: one thread per reconciler.  Ownership: rec and its strings are borrowed for
 *  the call (copied); diag (nullable) receives the message, offset = line. */
KEEL_API KEEL_NODISCARD keel_err keel_recon_add_internal(keel_recon *r,
                                                         const keel_recon_record *rec,
                                                         keel_diag *diag);

/** Match one gateway record against the internal index; handlers for missing_internal,
 *  amount_mismatch and status_mismatch fire from inside this call.
 *  The gateway record is not copied unless its id is unknown to the internal side (then the
 *  id alone is kept, to detect duplicates).
 *  @return as keel_recon_add_internal, plus a handler's error code.
 *  Thread-safety: one thread per reconciler.  Ownership: as keel_recon_add_internal. */
KEEL_API KEEL_NODISCARD keel_err keel_recon_add_gateway(keel_recon *r,
                                                        const keel_recon_record *rec,
                                                        keel_diag *diag);

/** Read function for keel_recon_feed_csv: copy up to cap bytes into buf and return the
 *  count, 0 at end of input, or a negative value on a read error. */
typedef long (*keel_recon_read_fn)(void *ud, char *buf, size_t cap);

/** Stream one CSV input (format in the header comment) into side, one record at a time
 *  through a fixed buffer; the input is never held in memory as a whole.  name (may be NULL:
 *  "internal"/"gateway") labels diagnostics.
 *  @return KEEL_OK; KEEL_EPARSE (CSV syntax, missing column, wrong field count, empty line
 *  inside the data, empty id, non-numeric amount); KEEL_ERANGE (amount not representable);
 *  KEEL_ENOTFOUND (unknown currency); KEEL_EEXIST (duplicate id in this input);
 *  KEEL_ETOOBIG (record or field count over the caps, or max_records/max_bytes); KEEL_EIO
 *  (read error); KEEL_ENOMEM; KEEL_ESTATE (order); a handler's code.  Every error but
 *  KEEL_EINVAL/KEEL_ESTATE fails the reconciler.
 *  Thread-safety: one thread per reconciler.  Ownership: read/ud/name are borrowed for the
 *  call; diag (nullable) receives the message, offset = line. */
KEEL_API KEEL_NODISCARD keel_err keel_recon_feed_csv(keel_recon *r, keel_recon_side side,
                                                     keel_recon_read_fn read, void *ud,
                                                     const char *name, keel_diag *diag);

/** keel_recon_feed_csv over a file (named by its path in diagnostics).  For the internal
 *  side the index is presized from the file size.
 *  @return as keel_recon_feed_csv; KEEL_EIO when the file cannot be opened.
 *  Thread-safety and ownership: as keel_recon_feed_csv (path borrowed for the call). */
KEEL_API KEEL_NODISCARD keel_err keel_recon_feed_csv_file(keel_recon *r, keel_recon_side side,
                                                          const char *path, keel_diag *diag);

/** keel_recon_feed_csv over len bytes in memory (read in place, not copied).
 *  @return as keel_recon_feed_csv; KEEL_EINVAL when data is NULL with len > 0.
 *  Thread-safety and ownership: as keel_recon_feed_csv (data borrowed for the call). */
KEEL_API KEEL_NODISCARD keel_err keel_recon_feed_csv_mem(keel_recon *r, keel_recon_side side,
                                                         const void *data, size_t len,
                                                         const char *name, keel_diag *diag);

/** End the run: fire missing_gateway for every internal id the gateway never mentioned, in
 *  internal order.  Afterwards only summary/stats/destroy are valid.
 *  @return KEEL_OK; KEEL_ESTATE (already finished or failed); KEEL_EINVAL (r NULL); a
 *  handler's code (the reconciler is then failed).
 *  Thread-safety: one thread per reconciler.  Ownership: borrows r. */
KEEL_API KEEL_NODISCARD keel_err keel_recon_finish(keel_recon *r);

/** Counts so far (final after keel_recon_finish; all zero for a NULL r).
 *  Thread-safety: one thread per reconciler.  Ownership: writes *out.  Errors: none. */
KEEL_API void keel_recon_stats_get(const keel_recon *r, keel_recon_stats *out);

/** Write the summary line (see the header comment) into buf, NUL-terminated and truncated to
 *  cap; KEEL_RECON_SUMMARY_MAX always suffices.  @return the length of the full line.
 *  Thread-safety: one thread per reconciler.  Ownership: writes buf.  Errors: none. */
KEEL_API size_t keel_recon_summary(const keel_recon *r, char *buf, size_t cap);

/** Format a summary from counts (same text as keel_recon_summary; NULL s = all zero).
 *  Uses matched, total, discrepancies and count[].  Thread-safety: any thread.
 *  Ownership: writes buf.  Errors: none; @return the length of the full line. */
KEEL_API size_t keel_recon_summary_format(const keel_recon_stats *s, char *buf, size_t cap);

/** "missing_internal", "missing_gateway", "amount_mismatch", "status_mismatch"; NULL for
 *  other values.  Thread-safety: any thread.  Ownership: static string. */
KEEL_API const char *keel_recon_type_name(keel_recon_type t);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_RECONCILE_H */
