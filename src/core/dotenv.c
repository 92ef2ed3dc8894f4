/* dotenv.c - the .env parser (keel/config.h).
 *
 * Input is "untrusted-ish": a file an operator wrote, possibly by hand, in
 * an editor that saves CRLF.  The parser must never crash, read out of bounds
 * or loop: every step of the main loop consumes at least one byte, and the
 * scratch buffer is sized once from the input length (unescaping never makes
 * a value longer than its source), so there is no growth at all.
 */
#include "keel_int.h"

#include <keel/config.h>

/* Longest part of a key quoted in a message. */
#define KEY_SHOWN 48

typedef struct dp {
    const char *p;
    const char *end;
    size_t line;
    char *scratch; /* key '\0' value '\0' of the current assignment */
    size_t scratch_cap;
    keel_diag *diag;
} dp;

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int is_key_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_key_char(char c)
{
    return is_key_start(c) || (c >= '0' && c <= '9');
}

static void skip_blanks(dp *d)
{
    while (d->p < d->end && is_blank(*d->p))
        d->p++;
}

/* At a line end: "\n", "\r\n", a lone "\r" at the end of input, or the end. */
static int at_eol(const dp *d)
{
    if (d->p == d->end || *d->p == '\n')
        return 1;
    return *d->p == '\r' && (d->p + 1 == d->end || d->p[1] == '\n');
}

/* Consume a line end (at_eol() must hold). */
static void eat_eol(dp *d)
{
    if (d->p < d->end && *d->p == '\r')
        d->p++;
    if (d->p < d->end && *d->p == '\n') {
        d->p++;
        d->line++;
    }
}

/* Skip a comment up to (not including) the line end; NUL bytes are errors there too. */
static keel_err skip_comment(dp *d)
{
    while (d->p < d->end && *d->p != '\n') {
        if (*d->p == '\0')
            return keel_diag_set(d->diag, KEEL_EPARSE, d->line, "line %zu: NUL byte in input",
                                 d->line);
        d->p++;
    }
    return KEEL_OK;
}

/* Describe a byte for a message: 'x' if printable, else 0xNN. */
static void show_byte(char c, char out[8])
{
    unsigned char u = (unsigned char)c;
    if (u >= 0x20 && u < 0x7f) {
        out[0] = '\'';
        out[1] = c;
        out[2] = '\'';
        out[3] = '\0';
    } else {
        static const char hex[] = "0123456789abcdef";
        out[0] = 'b';
        out[1] = 'y';
        out[2] = 't';
        out[3] = 'e';
        out[4] = ' ';
        out[5] = hex[u >> 4];
        out[6] = hex[u & 15];
        out[7] = '\0';
    }
}

static keel_err bad_byte(dp *d, const char *where, const char *key, size_t klen)
{
    if (*d->p == '\0')
        return keel_diag_set(d->diag, KEEL_EPARSE, d->line, "line %zu: NUL byte in input", d->line);
    char b[8];
    show_byte(*d->p, b);
    if (key == NULL)
        return keel_diag_set(d->diag, KEEL_EPARSE, d->line, "line %zu: unexpected %s %s", d->line,
                             b, where);
    return keel_diag_set(d->diag, KEEL_EPARSE, d->line, "line %zu: unexpected %s %s '%.*s'",
                         d->line, b, where, (int)KEEL_MIN(klen, KEY_SHOWN), key);
}

/* Read a quoted value starting at the opening quote into out; *olen is its length. */
static keel_err read_quoted(dp *d, char *out, size_t *olen, const char *key, size_t klen)
{
    char q = *d->p++;
    size_t start_line = d->line, n = 0;
    for (;;) {
        if (d->p == d->end)
            return keel_diag_set(d->diag, KEEL_EPARSE, start_line,
                                 "line %zu: unterminated %s-quoted value for key '%.*s'",
                                 start_line, q == '"' ? "double" : "single",
                                 (int)KEEL_MIN(klen, KEY_SHOWN), key);
        char c = *d->p;
        if (c == '\0')
            return keel_diag_set(d->diag, KEEL_EPARSE, d->line, "line %zu: NUL byte in input",
                                 d->line);
        if (c == q) {
            d->p++;
            break;
        }
        if (c == '\r' && d->p + 1 < d->end && d->p[1] == '\n') {
            d->p++; /* CRLF inside a value becomes LF */
            continue;
        }
        if (c == '\n')
            d->line++;
        if (q == '"' && c == '\\' && d->p + 1 < d->end) {
            char e = d->p[1];
            char r = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
            if (e == 'n' || e == 't' || e == 'r' || e == '\\' || e == '"') {
                out[n++] = r;
                d->p += 2;
                continue;
            }
            /* Unknown escape: keep the backslash; the next byte is read normally. */
        }
        out[n++] = c;
        d->p++;
    }
    *olen = n;
    return KEEL_OK;
}

/* Read an unquoted value up to the line end (not consumed) into out. */
static keel_err read_unquoted(dp *d, const char *after_eq, char *out, size_t *olen)
{
    const char *vs = d->p, *ve = NULL;
    while (d->p < d->end && *d->p != '\n') {
        char c = *d->p;
        if (c == '\0')
            return keel_diag_set(d->diag, KEEL_EPARSE, d->line, "line %zu: NUL byte in input",
                                 d->line);
        if (ve == NULL && c == '#' && d->p > after_eq && is_blank(d->p[-1]))
            ve = d->p;
        d->p++;
    }
    if (ve == NULL)
        ve = d->p;
    while (ve > vs && (is_blank(ve[-1]) || ve[-1] == '\r' || ve[-1] == '\f' || ve[-1] == '\v'))
        ve--;
    size_t n = (size_t)(ve - vs);
    if (n)
        memcpy(out, vs, n);
    *olen = n;
    return KEEL_OK;
}

/* One pass over the input; cb NULL means validate only. */
static keel_err parse_pass(dp *d, keel_dotenv_cb cb, void *ud)
{
    for (;;) {
        skip_blanks(d);
        if (d->p == d->end)
            return KEEL_OK;
        if (at_eol(d)) {
            eat_eol(d);
            continue;
        }
        if (*d->p == '#') {
            keel_err e = skip_comment(d);
            if (e != KEEL_OK)
                return e;
            continue;
        }
        /* "export KEY=..." ("export=1" and "export = 1" assign a variable named export). */
        if (d->end - d->p > 7 && memcmp(d->p, "export", 6) == 0 && is_blank(d->p[6])) {
            const char *q = d->p + 6;
            while (q < d->end && is_blank(*q))
                q++;
            if (q < d->end && is_key_start(*q))
                d->p = q;
        }
        if (!is_key_start(*d->p))
            return bad_byte(d, "where a variable name should start", NULL, 0);

        const char *key = d->p;
        while (d->p < d->end && is_key_char(*d->p))
            d->p++;
        size_t klen = (size_t)(d->p - key), line = d->line;
        const char *kend = d->p;
        skip_blanks(d);
        if (d->p == d->end || *d->p != '=') {
            if (d->p == kend && d->p < d->end && !at_eol(d) && *d->p != '#')
                return bad_byte(d, "in variable name", key, klen);
            return keel_diag_set(d->diag, KEEL_EPARSE, line,
                                 "line %zu: missing '=' after key '%.*s'", line,
                                 (int)KEEL_MIN(klen, KEY_SHOWN), key);
        }
        d->p++;
        const char *after_eq = d->p;
        skip_blanks(d);

        /* klen + 1 + vlen + 1 <= input length + 2 = scratch_cap: key and value come from
         * disjoint parts of the input and unescaping only shrinks. */
        KEEL_ASSERT(klen + 2 <= d->scratch_cap);
        memcpy(d->scratch, key, klen);
        d->scratch[klen] = '\0';
        char *val = d->scratch + klen + 1;
        size_t vlen = 0;
        keel_err e;
        if (d->p < d->end && (*d->p == '"' || *d->p == '\'')) {
            e = read_quoted(d, val, &vlen, key, klen);
            if (e != KEEL_OK)
                return e;
            skip_blanks(d);
            if (d->p < d->end && *d->p == '#') {
                e = skip_comment(d);
                if (e != KEEL_OK)
                    return e;
            } else if (!at_eol(d)) {
                return bad_byte(d, "after the closing quote of key", key, klen);
            }
        } else {
            e = read_unquoted(d, after_eq, val, &vlen);
            if (e != KEEL_OK)
                return e;
        }
        KEEL_ASSERT(klen + vlen + 2 <= d->scratch_cap);
        val[vlen] = '\0';
        if (cb != NULL) {
            e = cb(d->scratch, klen, val, vlen, ud);
            if (e != KEEL_OK)
                return keel_diag_set(d->diag, e, line,
                                     "line %zu: assignment of '%.*s' rejected: %s", line,
                                     (int)KEEL_MIN(klen, KEY_SHOWN), d->scratch, keel_strerror(e));
        }
        eat_eol(d);
    }
}

static void dp_start(dp *d, const char *text, size_t len)
{
    d->p = text;
    d->end = text + len;
    d->line = 1;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        d->p += 3;
}

keel_err keel_dotenv_parse(const char *text, size_t len, keel_dotenv_cb cb, void *ud,
                           keel_diag *diag)
{
    if (text == NULL && len > 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "no input text");
    if (len > KEEL_DOTENV_MAX_BYTES)
        return keel_diag_set(diag, KEEL_ETOOBIG, 0,
                             "input is %zu bytes, larger than the %u-byte limit", len,
                             (unsigned)KEEL_DOTENV_MAX_BYTES);
    if (len == 0)
        return KEEL_OK;
    dp d;
    d.diag = diag;
    d.scratch_cap = len + 2;
    d.scratch = keel_malloc(d.scratch_cap);
    if (d.scratch == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    /* Validate everything first so that a broken file assigns nothing. */
    dp_start(&d, text, len);
    keel_err e = parse_pass(&d, NULL, NULL);
    if (e == KEEL_OK && cb != NULL) {
        dp_start(&d, text, len);
        e = parse_pass(&d, cb, ud);
    }
    keel__wipe(d.scratch, d.scratch_cap); /* values may be secrets */
    keel_free(d.scratch);
    return e;
}
