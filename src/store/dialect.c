/* dialect.c - portable SQL to engine SQL (keel_store_dialect_sql).
 *
 * One left-to-right pass.  Text inside 'string literals' ('' escapes a quote), "quoted
 * identifiers" ("" escapes), -- line comments and non-nesting block comments is copied
 * verbatim.  Outside them:
 *   ?            -> '?' on SQLite, $1, $2, ... on PostgreSQL (counted in *nparams)
 *   {now_ms}     -> current Unix time in milliseconds as an integer expression
 *   {skip_locked}-> "FOR UPDATE SKIP LOCKED" on PostgreSQL, nothing on SQLite
 *   any other {  -> KEEL_EPARSE
 * Not understood (write portable SQL instead): PostgreSQL E'...' backslash escapes,
 * $$dollar quoting$$, nested block comments, the jsonb '?' / '?|' / '?&' operators (use
 * jsonb_exists()), and numbered placeholders '?NNN' (rejected, KEEL_EPARSE).
 */
#include "keel_int.h"

#include <limits.h>
#include <stdio.h>

#include "store_int.h"

#define NOW_MS_SQLITE "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
#define NOW_MS_PG "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint"
#define SKIP_LOCKED_PG "FOR UPDATE SKIP LOCKED"

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

static keel_err out_err(keel_err e, size_t off, keel_diag *diag)
{
    if (e == KEEL_ETOOBIG)
        return keel_diag_set(diag, e, off, "rewritten SQL exceeds the buffer limit at byte %zu",
                             off);
    return keel_diag_set(diag, e, off, "out of memory rewriting SQL");
}

/* Index just past the closing quote of a literal/identifier opened at sql[i], or 0 if
 * unterminated.  A doubled quote is an escaped quote. */
static size_t skip_quoted(const char *sql, size_t i, char q)
{
    size_t j = i + 1;
    for (;;) {
        if (sql[j] == '\0')
            return 0;
        if (sql[j] == q) {
            if (sql[j + 1] == q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j++;
    }
}

keel_err keel_store_dialect_sql(keel_store_engine engine, const char *sql, keel_buf *out,
                                int *nparams, keel_diag *diag)
{
    if (nparams != NULL)
        *nparams = 0;
    if (sql == NULL || out == NULL ||
        (engine != KEEL_STORE_SQLITE && engine != KEEL_STORE_POSTGRES))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_store_dialect_sql: invalid argument");
    const bool pg = engine == KEEL_STORE_POSTGRES;
    int count = 0;
    size_t run = 0; /* start of the pending verbatim run */
    size_t i = 0;
    keel_err e;

    while (sql[i] != '\0') {
        char c = sql[i];
        if (c == '\'' || c == '"') {
            size_t end = skip_quoted(sql, i, c);
            if (end == 0)
                return keel_diag_set(diag, KEEL_EPARSE, i, "unterminated %s starting at byte %zu",
                                     c == '\'' ? "string literal" : "quoted identifier", i);
            i = end;
            continue;
        }
        if (c == '-' && sql[i + 1] == '-') {
            i += 2;
            while (sql[i] != '\0' && sql[i] != '\n')
                i++;
            continue;
        }
        if (c == '/' && sql[i + 1] == '*') {
            const char *close = strstr(sql + i + 2, "*/");
            if (close == NULL)
                return keel_diag_set(diag, KEEL_EPARSE, i,
                                     "unterminated block comment starting at byte %zu", i);
            i = (size_t)(close - sql) + 2;
            continue;
        }
        if (c != '?' && c != '{') {
            i++;
            continue;
        }

        /* A substitution: flush the verbatim run first. */
        if (i > run && (e = keel_buf_append(out, sql + run, i - run)) != KEEL_OK)
            return out_err(e, run, diag);
        if (c == '?') {
            if (sql[i + 1] >= '0' && sql[i + 1] <= '9')
                return keel_diag_set(diag, KEEL_EPARSE, i,
                                     "numbered placeholder at byte %zu: use plain '?'", i);
            if (count == INT_MAX)
                return keel_diag_set(diag, KEEL_ETOOBIG, i, "too many placeholders");
            count++;
            e = pg ? keel_buf_appendf(out, "$%d", count) : keel_buf_append_char(out, '?');
            if (e != KEEL_OK)
                return out_err(e, i, diag);
            i++;
            run = i;
            continue;
        }
        /* '{' token */
        size_t j = i + 1;
        while (is_name_char(sql[j]))
            j++;
        size_t nlen = j - i - 1;
        if (sql[j] != '}' || nlen == 0)
            return keel_diag_set(diag, KEEL_EPARSE, i, "malformed {token} at byte %zu", i);
        const char *name = sql + i + 1;
        const char *rep;
        if (nlen == 6 && memcmp(name, "now_ms", 6) == 0)
            rep = pg ? NOW_MS_PG : NOW_MS_SQLITE;
        else if (nlen == 11 && memcmp(name, "skip_locked", 11) == 0)
            rep = pg ? SKIP_LOCKED_PG : "";
        else
            return keel_diag_set(diag, KEEL_EPARSE, i, "unknown token '{%.*s}' at byte %zu",
                                 (int)KEEL_MIN(nlen, (size_t)48), name, i);
        if ((e = keel_buf_append_str(out, rep)) != KEEL_OK)
            return out_err(e, i, diag);
        i = j + 1;
        run = i;
    }
    if (i > run && (e = keel_buf_append(out, sql + run, i - run)) != KEEL_OK)
        return out_err(e, run, diag);
    if (out->ptr == NULL && (e = keel_buf_append(out, "", 0)) != KEEL_OK)
        return out_err(e, 0, diag);
    if (nparams != NULL)
        *nparams = count;
    return KEEL_OK;
}
