/*
 * keel/redact.h - PCI-aware redaction of card data in free text (seed 004 "PCI-aware log
 * redaction"; reference.md section 9).
 *
 * Module contract: the one-shot functions are pure (any thread, no shared state).  A
 * keel_redactor is not thread-safe: use one per stream.  Nothing here ever aborts; memory goes
 * through the keel allocator hook.  Redacted text is never logged or put in error messages.
 *
 * What is redacted (the exact rules; output is the same whatever the input chunking):
 *
 *  1. PAN (primary account number).  A "group" is a maximal run of ASCII digits; a "chain" is
 *     groups joined by exactly one ' ' or one '-' between two digits ("4111 1111-1111 1111").
 *     A candidate starts at a group whose preceding byte is not a digit (letters, punctuation,
 *     '*' and the start of text all count as non-digits, so "abc4111111111111111" and
 *     "**4111111111111111**" are redacted: the conservative choice), takes whole groups only,
 *     and is a PAN when it holds 13 to 19 digits and passes the Luhn check.  Groups are tried
 *     left to right; at a start group the LONGEST valid candidate wins, otherwise the next
 *     group is tried.  So "4111 1111 1111 1111 2028" redacts the 16-digit PAN and keeps
 *     " 2028" (the 20-digit candidate is too long), "12 4111111111111111" keeps "12 ", and a
 *     run of 20 or more digits is left alone entirely (no candidate may split a group).
 *     The PAN becomes one '*' per digit except the last four, which are kept; separators are
 *     dropped: "4111-1111-1111-1111" -> "************1111", "3782 822463 10005" ->
 *     "***********0005".  To keep redaction idempotent (redacting the output again changes
 *     nothing), the four kept digits are then tried as the start of a new candidate together
 *     with the groups chained after the PAN; if that finds another PAN, those four digits are
 *     masked too ("4111 1111 1111 1111 2222 3333 4444", two overlapping valid numbers ->
 *     24 '*' and "4444").
 *     Left alone: card brands, isolated last-4 ("ending 4242"), expiry dates ("12/28",
 *     "2028-12"), digit chains of fewer than 13 or (as single groups) more than 19 digits, and
 *     every 13-19 digit chain that fails Luhn (order ids, timestamps such as 1700000000000).
 *     Dots, slashes, colons and double spaces do not chain groups (amounts, IPs, times).
 *
 *  2. CVV.  A label CVV, CVC, CVV2, CVC2 or CID (ASCII case-insensitive) that starts a word
 *     (the byte before it is not an ASCII letter or digit, so "card_cvv" and "card.cvc" count
 *     but "xcvv" does not), then optionally a closing quote (" or ', possibly backslash-
 *     escaped, for JSON keys and JSON-in-JSON), 0-16 spaces or tabs, ':' or '=', 0-16 spaces or
 *     tabs, optionally an opening quote (same forms), then exactly 3 or 4 digits not followed
 *     by another digit.  The digits become "[REDACTED_CVV]"; label, separator and quotes stay:
 *     "cvv: 999" -> "cvv: [REDACTED_CVV]", "\"cvv\":\"123\"" -> "\"cvv\":\"[REDACTED_CVV]\"".
 *     When those digits also start a PAN (e.g. "cvv: 4111 1111 1111 1111" is 4 digits then a
 *     chain), the PAN rule wins.  "cvn", "security_code" and free-form phrases ("cvv is 123")
 *     are not labels: they are not in the seed's list and would add false positives.
 *
 *  3. Track data (ISO/IEC 7813, reference.md 9.2), from start sentinel to end sentinel
 *     inclusive, becomes "[REDACTED_TRACK]":
 *       Track 1: '%' 'B' PAN(8-19 digits) '^' NAME(0-26 bytes) '^' then more such bytes up
 *                to '?'; at most 79 bytes between the sentinels.  NAME and the rest are
 *                printable ASCII other than '%' '^' '?' and '*' '[' ']': the last three never
 *                occur in real track data but do in this module's replacements, so redacted
 *                output can never form a track on a second pass.
 *       Track 2: ';' PAN(8-19 digits) '=' then bytes from "0123456789=:<>" up to '?';
 *                at most 40 bytes between the sentinels.
 *     (8 is the ISO/IEC 7812 minimum PAN length.)  Longer or malformed track-like text is
 *     not a track, but any PAN in it is still caught by rule 1.
 *
 * Matching is one left-to-right pass; at each position a track sentinel, a CVV label and a PAN
 * start are mutually exclusive, and text replaced by one rule is not examined again.  A
 * decision at a position looks at most KEEL_REDACT_LOOKAHEAD bytes ahead, which is what the
 * streaming redactor holds back between chunks.
 */
#ifndef KEEL_REDACT_H
#define KEEL_REDACT_H

#include <stddef.h>
#include <stdint.h>
#include <keel/common.h>
#include <keel/core.h>
#include <keel/log.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Replacement of a CVV value. */
#define KEEL_REDACT_CVV "[REDACTED_CVV]"
/** Replacement of a whole track, sentinels included. */
#define KEEL_REDACT_TRACK "[REDACTED_TRACK]"
/** Character that replaces each masked PAN digit. */
#define KEEL_REDACT_MASK_CHAR '*'
/** Most bytes any single decision looks ahead; a keel_redactor holds back fewer than this. */
#define KEEL_REDACT_LOOKAHEAD 128
/** Largest message or string field the log hook produces (the log record's own limit). */
#define KEEL_REDACT_LOG_MAX (64 * 1024)

/** Counts of redacted items. */
typedef struct keel_redact_stats {
    uint64_t pans;   /* PANs masked (an idempotence extension counts as one more) */
    uint64_t cvvs;   /* CVV values replaced */
    uint64_t tracks; /* track 1 / track 2 strings replaced */
} keel_redact_stats;

/* ------------------------------------------------------------- one-shot -- */

/** Redact len bytes at in (any bytes; NUL is an ordinary byte).
 *  Fast path: when nothing needs redacting, out is not touched at all (no copy, no allocation)
 *  and every count in *stats is 0: the input is already clean and can be used as is.
 *  Otherwise the whole redacted text is appended to out (which the caller initialised with
 *  keel_buf_init(); its max caps the output).
 *  @param in     input bytes (may be NULL when len is 0)
 *  @param out    receives the redacted text, only when something was redacted
 *  @param stats  nullable; overwritten with the counts of this call
 *  @return KEEL_OK; KEEL_EINVAL (NULL out, or NULL in with len > 0); KEEL_ETOOBIG when the
 *  output would pass out->max, KEEL_ENOMEM (out then holds a partial result: discard it).
 *  Thread-safety: any thread (out is the caller's). Ownership: borrows in; out stays the
 *  caller's. */
KEEL_API KEEL_NODISCARD keel_err keel_redact(const char *in, size_t len, keel_buf *out,
                                             keel_redact_stats *stats);

/** 1 if keel_redact() would change the text, 0 if it is clean.  Never allocates.
 *  Thread-safety: any thread. Ownership: borrows in. Errors: none (NULL in gives 0). */
KEEL_API int keel_redact_needed(const char *in, size_t len);

/** Redacted copy of in, always allocated (NUL-terminated; *out_len, if not NULL, gets its
 *  length).  @return the copy, or NULL on out-of-memory or NULL in.
 *  Thread-safety: any thread. Ownership: caller frees the result with keel_free(). */
KEEL_API char *keel_redact_dup(keel_str in, size_t *out_len);

/* ------------------------------------------------------------ streaming -- */

/** Output callback of a keel_redactor: n bytes at p (borrowed for the call only).
 *  Return KEEL_OK, or a negative keel_err to stop the stream (the redactor then fails). */
typedef keel_err (*keel_redact_write_fn)(void *ud, const char *p, size_t n);

/** A streaming redactor: feed text in chunks of any size; the output (through the sink) is
 *  byte for byte what keel_redact() gives for the concatenated input, whatever the chunking.
 *  Memory is constant: the object plus a tail of fewer than KEEL_REDACT_LOOKAHEAD bytes. */
typedef struct keel_redactor keel_redactor;

/** Create a redactor writing to sink(ud, ...).
 *  @return KEEL_OK (*out set), KEEL_EINVAL (NULL out or sink), KEEL_ENOMEM.
 *  Thread-safety: any thread. Ownership: caller destroys *out with keel_redactor_destroy();
 *  ud is borrowed for the redactor's lifetime. */
KEEL_API KEEL_NODISCARD keel_err keel_redactor_create(keel_redactor **out,
                                                      keel_redact_write_fn sink, void *ud);

/** Feed n bytes.  Everything that can be decided is written to the sink before the call
 *  returns; fewer than KEEL_REDACT_LOOKAHEAD bytes are held back.
 *  @return KEEL_OK; KEEL_EINVAL (NULL r, or NULL p with n > 0); KEEL_ESTATE after
 *  keel_redactor_finish() or a failure (until keel_redactor_reset()); the sink's error
 *  (the redactor has then failed, and the sink may have received part of the output).
 *  Thread-safety: one thread at a time per redactor. Ownership: borrows p for the call. */
KEEL_API KEEL_NODISCARD keel_err keel_redactor_feed(keel_redactor *r, const char *p, size_t n);

/** End of input: redact and write the held-back tail.  Afterwards feed and finish return
 *  KEEL_ESTATE until keel_redactor_reset().
 *  @return KEEL_OK, KEEL_EINVAL (NULL r), KEEL_ESTATE (already finished or failed), or the
 *  sink's error.  Thread-safety: one thread at a time per redactor. */
KEEL_API KEEL_NODISCARD keel_err keel_redactor_finish(keel_redactor *r);

/** Start a new, independent stream on the same sink (drops any held-back bytes without
 *  writing them; the counts are kept).  NULL is a no-op.
 *  Thread-safety: one thread at a time per redactor. Errors: none. */
KEEL_API void keel_redactor_reset(keel_redactor *r);

/** Counts since creation (all streams; items still held back are not counted yet).
 *  Thread-safety: one thread at a time per redactor. Ownership: out is the caller's.
 *  Errors: none (NULL arguments zero *out or do nothing). */
KEEL_API void keel_redactor_stats_get(const keel_redactor *r, keel_redact_stats *out);

/** Free the redactor (held-back bytes are discarded, not written).  NULL is a no-op.
 *  Thread-safety: not while another call on r runs. Errors: none. */
KEEL_API void keel_redactor_destroy(keel_redactor *r);

/* ------------------------------------------------------------- log hook -- */

/** A keel_log hook (keel_log_hook_fn) that redacts the record's message and the value of every
 *  string field (the "exception" field included; field keys are left as they are: the log
 *  API cannot rewrite them).  Records that cannot be redacted (out of memory) are dropped
 *  (return 1; the logger counts them as filtered), never written unredacted.  ud is ignored.
 *  Call it from your own hook to combine redaction with other processing.
 *  Thread-safety: as any keel_log hook (the logger never runs it on two threads at once;
 *  it keeps no state of its own). Ownership: borrows rec for the call. */
KEEL_API int keel_redact_log_hook(keel_log_record *rec, void *ud);

/** Install keel_redact_log_hook() as the process's keel_log hook (the seed's
 *  install_root_redaction_filter()).  keel_log has a single hook: this REPLACES any hook
 *  installed before (keel_log_set_hook() semantics); a program that needs both calls
 *  keel_redact_log_hook() from its own hook instead.  Every record, to every sink (files and
 *  console), is redacted from then on, including the synchronous stderr path used before
 *  keel_log_start().
 *  @return KEEL_OK, or KEEL_EBUSY when called from inside a hook.
 *  Thread-safety: any thread. Ownership: nothing to free; remove with keel_log_set_hook(NULL,
 *  NULL). */
KEEL_API KEEL_NODISCARD keel_err keel_redact_install_log_hook(void);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_REDACT_H */
