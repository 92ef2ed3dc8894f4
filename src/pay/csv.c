/* csv.c - streaming RFC 4180 reader (see csv_int.h for the contract).
 *
 * A byte-at-a-time state machine over a fixed chunk buffer.  Field content is unescaped into
 * a fixed record buffer as it is read, so a record never needs more than
 * KEEL_RECON_RECORD_MAX bytes however the input is split across reads; the raw-byte count of
 * a record is checked before anything is stored, which bounds the buffer. */
#include "keel_int.h"

#include <stdarg.h>
#include <stdio.h>

#include <keel/reconcile.h>

#include "csv_int.h"

#define NAME_MAX_SHOWN 64

enum { ST_START, ST_UNQ, ST_Q, ST_QQ, ST_CR };

struct keel__csv {
    keel_recon_read_fn read;
    void *ud;
    char name[NAME_MAX_SHOWN + 1];
    char *in; /* KEEL__CSV_CHUNK bytes */
    size_t in_pos, in_len;
    int eof;
    int started;  /* BOM check done */
    char *rec;    /* KEEL_RECON_RECORD_MAX bytes of unescaped field content */
    size_t rec_len;
    keel__csv_field *fields; /* KEEL_RECON_FIELDS_MAX entries */
    size_t nfields;
    uint64_t line;       /* line of the next byte (1-based) */
    uint64_t col;        /* bytes consumed on that line so far */
    uint64_t rec_line;   /* line the current record starts on */
    uint64_t blank_line; /* first empty line seen, 0 if none yet */
};

keel_err keel__csv_create(keel__csv **out, keel_recon_read_fn read, void *ud, const char *name)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    if (read == NULL)
        return KEEL_EINVAL;
    keel__csv *c = keel__new(keel__csv);
    if (c == NULL)
        return KEEL_ENOMEM;
    c->in = keel_malloc(KEEL__CSV_CHUNK);
    c->rec = keel_malloc(KEEL_RECON_RECORD_MAX);
    c->fields = keel_malloc(KEEL_RECON_FIELDS_MAX * sizeof(keel__csv_field));
    if (c->in == NULL || c->rec == NULL || c->fields == NULL) {
        keel__csv_destroy(c);
        return KEEL_ENOMEM;
    }
    c->read = read;
    c->ud = ud;
    c->line = 1;
    /* Long paths keep their tail, which is the informative part. */
    if (name == NULL)
        name = "input";
    size_t n = strlen(name);
    if (n > NAME_MAX_SHOWN) {
        memcpy(c->name, "...", 3);
        memcpy(c->name + 3, name + n - (NAME_MAX_SHOWN - 3), NAME_MAX_SHOWN - 3);
        c->name[NAME_MAX_SHOWN] = '\0';
    } else {
        memcpy(c->name, name, n + 1);
    }
    *out = c;
    return KEEL_OK;
}

void keel__csv_destroy(keel__csv *c)
{
    if (c == NULL)
        return;
    keel_free(c->in);
    keel_free(c->rec);
    keel_free(c->fields);
    keel_free(c);
}

size_t keel__csv_nfields(const keel__csv *c)
{
    return c->nfields;
}

const keel__csv_field *keel__csv_fields(const keel__csv *c)
{
    return c->fields;
}

uint64_t keel__csv_line(const keel__csv *c)
{
    return c->rec_line;
}

const char *keel__csv_name(const keel__csv *c)
{
    return c->name;
}

/* An error at line:col (col 0 = no column). */
static int fail(keel__csv *c, keel_diag *d, keel_err code, uint64_t line, uint64_t col,
                const char *what)
{
    if (col != 0)
        keel_diag_set(d, code, (size_t)line, "%s:%llu:%llu: %s", c->name,
                      (unsigned long long)line, (unsigned long long)col, what);
    else
        keel_diag_set(d, code, (size_t)line, "%s:%llu: %s", c->name, (unsigned long long)line,
                      what);
    return code;
}

/* Make input available: 1 when in[in_pos] is readable, 0 at the end, or a negative error. */
static int fill(keel__csv *c, keel_diag *d)
{
    if (c->in_pos < c->in_len)
        return 1;
    if (c->eof)
        return 0;
    long n = c->read(c->ud, c->in, KEEL__CSV_CHUNK);
    if (n < 0 || (unsigned long)n > KEEL__CSV_CHUNK)
        return fail(c, d, KEEL_EIO, c->line, 0, "read error");
    c->in_pos = 0;
    c->in_len = (size_t)n;
    if (n == 0) {
        c->eof = 1;
        return 0;
    }
    return 1;
}

/* Skip a UTF-8 byte order mark at the very start, reading until 3 bytes or the end. */
static int skip_bom(keel__csv *c, keel_diag *d)
{
    c->started = 1;
    while (c->in_len < 3 && !c->eof) {
        long n = c->read(c->ud, c->in + c->in_len, KEEL__CSV_CHUNK - c->in_len);
        if (n < 0 || (unsigned long)n > KEEL__CSV_CHUNK - c->in_len)
            return fail(c, d, KEEL_EIO, c->line, 0, "read error");
        if (n == 0)
            c->eof = 1;
        c->in_len += (size_t)n;
    }
    if (c->in_len >= 3 && (unsigned char)c->in[0] == 0xEF && (unsigned char)c->in[1] == 0xBB &&
        (unsigned char)c->in[2] == 0xBF)
        c->in_pos = 3;
    return 0;
}

int keel__csv_next(keel__csv *c, keel_diag *d)
{
    if (c == NULL)
        return KEEL_EINVAL;
    if (!c->started) {
        int e = skip_bom(c, d);
        if (e < 0)
            return e;
    }
    for (;;) {
        /* One record (or one empty line). */
        int st = ST_START, any = 0, fquoted = 0;
        size_t raw = 0, fstart = 0;
        uint64_t fline = c->line, fcol = 1, crcol = 0;
        c->nfields = 0;
        c->rec_len = 0;
        c->rec_line = c->line;
        int end_of_record = 0, eof_end = 0;
        while (!end_of_record) {
            int f = fill(c, d);
            if (f < 0)
                return f;
            if (f == 0) {
                if (st == ST_Q)
                    return fail(c, d, KEEL_EPARSE, fline, fcol, "unterminated quoted field");
                if (st == ST_CR)
                    return fail(c, d, KEEL_EPARSE, c->line, crcol,
                                "carriage return not followed by line feed");
                if (!any)
                    return 0;
                eof_end = 1;
                break;
            }
            /* Fast path: a run of ordinary bytes inside an unquoted field. */
            if (st == ST_UNQ) {
                const char *p = c->in + c->in_pos, *e = c->in + c->in_len;
                const char *q = p;
                while (q < e && *q != ',' && *q != '\n' && *q != '\r' && *q != '"')
                    q++;
                size_t n = (size_t)(q - p);
                if (n > 0) {
                    if (raw + n > KEEL_RECON_RECORD_MAX)
                        return fail(c, d, KEEL_ETOOBIG, c->rec_line, 0,
                                    "record longer than 65536 bytes");
                    memcpy(c->rec + c->rec_len, p, n);
                    c->rec_len += n;
                    raw += n;
                    c->col += n;
                    c->in_pos += n;
                    continue;
                }
            }
            char ch = c->in[c->in_pos++];
            if (++raw > KEEL_RECON_RECORD_MAX)
                return fail(c, d, KEEL_ETOOBIG, c->rec_line, 0, "record longer than 65536 bytes");
            c->col++;
            int end_field = 0, newline = 0;
            switch (st) {
            case ST_START:
                fline = c->line;
                fcol = c->col;
                if (ch == '"') {
                    st = ST_Q;
                    fquoted = 1;
                    any = 1;
                } else if (ch == ',') {
                    any = 1;
                    end_field = 1;
                } else if (ch == '\n') {
                    newline = 1;
                    end_field = any;
                } else if (ch == '\r') {
                    st = ST_CR;
                    crcol = c->col;
                } else {
                    any = 1;
                    c->rec[c->rec_len++] = ch;
                    st = ST_UNQ;
                }
                break;
            case ST_UNQ:
                if (ch == ',') {
                    end_field = 1;
                    st = ST_START;
                } else if (ch == '\n') {
                    end_field = newline = 1;
                } else if (ch == '\r') {
                    st = ST_CR;
                    crcol = c->col;
                } else if (ch == '"') {
                    return fail(c, d, KEEL_EPARSE, c->line, c->col,
                                "quote inside an unquoted field");
                } else {
                    c->rec[c->rec_len++] = ch;
                }
                break;
            case ST_Q:
                if (ch == '"') {
                    st = ST_QQ;
                } else {
                    c->rec[c->rec_len++] = ch;
                    if (ch == '\n') {
                        c->line++;
                        c->col = 0;
                    }
                }
                break;
            case ST_QQ:
                if (ch == '"') {
                    c->rec[c->rec_len++] = '"';
                    st = ST_Q;
                } else if (ch == ',') {
                    end_field = 1;
                    st = ST_START;
                } else if (ch == '\n') {
                    end_field = newline = 1;
                } else if (ch == '\r') {
                    st = ST_CR;
                    crcol = c->col;
                } else {
                    return fail(c, d, KEEL_EPARSE, c->line, c->col,
                                "unexpected character after a closing quote");
                }
                break;
            default: /* ST_CR */
                if (ch != '\n')
                    return fail(c, d, KEEL_EPARSE, c->line, crcol,
                                "carriage return not followed by line feed");
                newline = 1;
                end_field = any;
                break;
            }
            if (end_field) {
                if (c->nfields >= KEEL_RECON_FIELDS_MAX)
                    return fail(c, d, KEEL_ETOOBIG, c->rec_line, 0, "more than 1024 fields");
                keel__csv_field *fl = &c->fields[c->nfields++];
                fl->ptr = c->rec + fstart;
                fl->len = c->rec_len - fstart;
                fl->line = fline;
                fl->col = fcol;
                fl->quoted = fquoted;
                fstart = c->rec_len;
                fquoted = 0;
                /* The next field starts at the next byte (an empty last field: here). */
                fline = c->line;
                fcol = c->col + 1;
            }
            if (newline) {
                c->line++;
                c->col = 0;
                end_of_record = 1;
            }
        }
        if (!any) {
            /* An empty line: fine at the end of the input, an error before more data. */
            if (c->blank_line == 0)
                c->blank_line = c->rec_line;
            continue;
        }
        if (eof_end) {
            /* The end of input closed the last field (possibly empty: "a,b," at the end). */
            if (c->nfields >= KEEL_RECON_FIELDS_MAX)
                return fail(c, d, KEEL_ETOOBIG, c->rec_line, 0, "more than 1024 fields");
            keel__csv_field *fl = &c->fields[c->nfields++];
            fl->ptr = c->rec + fstart;
            fl->len = c->rec_len - fstart;
            fl->line = fline;
            fl->col = fcol;
            fl->quoted = fquoted;
        }
        if (c->blank_line != 0)
            return fail(c, d, KEEL_EPARSE, c->blank_line, 0, "empty line inside the data");
        return 1;
    }
}
