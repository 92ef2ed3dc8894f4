/*
 * csv_int.h - private streaming RFC 4180 reader for the reconciliation module (csv.c).
 *
 * The reader pulls bytes through a read callback into a fixed chunk buffer and assembles one
 * record at a time into a fixed record buffer (KEEL_RECON_RECORD_MAX bytes); memory does not
 * depend on the input size.  Grammar and policies are those of keel/reconcile.h: LF or CRLF
 * per line, "" inside quotes, a leading UTF-8 BOM skipped, empty lines allowed only at the
 * end, a bare CR, a quote inside an unquoted field, garbage after a closing quote and an
 * unterminated quote are errors with line and column.
 */
#ifndef KEEL_PAY_CSV_INT_H
#define KEEL_PAY_CSV_INT_H

#include <keel/reconcile.h>

#define KEEL__CSV_CHUNK (64u * 1024u)

typedef struct keel__csv_field {
    const char *ptr; /* unescaped content inside the record buffer; not NUL-terminated */
    size_t len;
    uint64_t line; /* physical line and 1-based byte column where the field starts */
    uint64_t col;  /* (of the opening quote when quoted) */
    int quoted;
} keel__csv_field;

typedef struct keel__csv keel__csv;

/* Create a reader; name labels diagnostics ("name:line:col: ...") and is copied.
 * KEEL_OK or KEEL_ENOMEM. */
keel_err keel__csv_create(keel__csv **out, keel_recon_read_fn read, void *ud, const char *name);
void keel__csv_destroy(keel__csv *c);

/* Read the next record.  Returns 1 with a record (fields valid until the next call), 0 at the
 * end of input, or a negative keel_err with diag filled (diag->offset = line):
 * KEEL_EPARSE (syntax), KEEL_ETOOBIG (record or field-count cap), KEEL_EIO (read error). */
int keel__csv_next(keel__csv *c, keel_diag *diag);

/* The current record: field count, fields, and the physical line it starts on. */
size_t keel__csv_nfields(const keel__csv *c);
const keel__csv_field *keel__csv_fields(const keel__csv *c);
uint64_t keel__csv_line(const keel__csv *c);
/* The label passed at creation. */
const char *keel__csv_name(const keel__csv *c);

#endif /* KEEL_PAY_CSV_INT_H */
