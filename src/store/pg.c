/* pg.c - the PostgreSQL backend behind keel/store.h (see store_int.h), on libpq.  Talks to
 * the engine only: pooling, transactions, caching and metrics live in store.c.
 *
 * Statements are server-side prepared statements named "k<n>" (unique per connection).
 * Parameters travel in text format (int64/double formatted here, text copied) except blobs,
 * which are sent in binary format so NUL bytes need no escaping.  Results come back in text
 * format; a bytea column is decoded from its hex text form (the connection sets
 * bytea_output = hex) when read with col_blob.  One PGresult holds the whole result set and
 * step walks its rows.
 *
 * libpq connections are used by one thread at a time (store.c guarantees it). */
#include "keel_int.h"

#include "store_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <libpq-fe.h>

#define PG_BOOLOID 16
#define PG_BYTEAOID 17

typedef struct pg_conn {
    PGconn *pq;
    unsigned long long next_id; /* statement name counter */
} pg_conn;

typedef struct pg_stmt {
    pg_conn *c;
    char name[32];
    int nparams;
    char **vals;   /* [nparams]; NULL = SQL NULL */
    int *lens;     /* [nparams] */
    int *fmts;     /* [nparams]: 0 text, 1 binary */
    PGresult *res; /* current result, NULL before the first step */
    int nrows;
    int row;       /* current row, -1 before the first */
    bool executed;
    int64_t changes;
    unsigned char **blobs; /* [nfields] decoded bytea of the current row, lazily */
    size_t *bloblens;
    int nblobs;
} pg_stmt;

/* ------------------------------------------------------------------ errors -- */

/* Map a SQLSTATE (5 characters) to a keel_err. */
static keel_err map_sqlstate(const char *st)
{
    if (st == NULL || strlen(st) != 5)
        return KEEL_EIO;
    if (strcmp(st, "23505") == 0)
        return KEEL_EEXIST;
    if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "55P03") == 0)
        return KEEL_EBUSY;
    if (strcmp(st, "57014") == 0)
        return KEEL_ETIMEOUT;
    if (strncmp(st, "57P", 3) == 0)
        return KEEL_EIO;
    if (strncmp(st, "23", 2) == 0)
        return KEEL_ECONSTRAINT;
    if (strncmp(st, "42", 2) == 0)
        return KEEL_EPARSE;
    if (strncmp(st, "08", 2) == 0 || strncmp(st, "53", 2) == 0 || strncmp(st, "58", 2) == 0)
        return KEEL_EIO;
    if (strncmp(st, "22", 2) == 0)
        return KEEL_EINVAL;
    if (strcmp(st, "25006") == 0) /* read_only_sql_transaction: a standby or a read-only db */
        return KEEL_EIO;
    if (strncmp(st, "25", 2) == 0)
        return KEEL_ESTATE;
    if (strncmp(st, "54", 2) == 0)
        return KEEL_ETOOBIG;
    if (strncmp(st, "0A", 2) == 0)
        return KEEL_EUNSUPPORTED;
    return KEEL_EIO;
}

/* Copy msg into out (one line: newlines and tabs become spaces, trailing space trimmed). */
static void one_line(char *out, size_t outlen, const char *msg)
{
    size_t n = 0;
    for (const char *p = msg != NULL ? msg : ""; *p != '\0' && n + 1 < outlen; p++) {
        char ch = *p;
        if (ch == '\n' || ch == '\t' || ch == '\r')
            ch = ' ';
        if (ch == ' ' && (n == 0 || out[n - 1] == ' '))
            continue;
        out[n++] = ch;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* Map a failed result (res may be NULL) and describe it in diag.  Only the primary message
 * is used: DETAIL lines repeat row values.  Data exceptions (class 22) quote the offending
 * input in the primary message too, so for those only the SQLSTATE is reported. */
static keel_err fail(PGconn *pq, const PGresult *res, keel_diag *diag)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    keel_err e = map_sqlstate(state);
    if (PQstatus(pq) == CONNECTION_BAD)
        e = KEEL_EIO;
    char msg[sizeof(((keel_diag *)0)->msg)];
    if (state != NULL && strncmp(state, "22", 2) == 0) {
        snprintf(msg, sizeof(msg), "invalid value");
    } else {
        const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        one_line(msg, sizeof(msg), primary != NULL ? primary : PQerrorMessage(pq));
        if (msg[0] == '\0')
            snprintf(msg, sizeof(msg), "%s", keel_strerror(e));
    }
    if (state != NULL)
        keel_diag_set(diag, e, 0, "postgres: %s (SQLSTATE %s)", msg, state);
    else
        keel_diag_set(diag, e, 0, "postgres: %s", msg);
    return e;
}

/* ------------------------------------------------------------- connections -- */

static keel_err pg_exec(void *conn, const char *sql, keel_diag *diag)
{
    pg_conn *c = conn;
    /* store.c is engine-independent; SQLite's "take the write lock now" spelling has no
     * PostgreSQL equivalent (row locks are taken per statement), so it is plain BEGIN. */
    if (strcmp(sql, "BEGIN IMMEDIATE") == 0)
        sql = "BEGIN";
    PGresult *res = PQexec(c->pq, sql);
    ExecStatusType st = PQresultStatus(res);
    if (res != NULL &&
        (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY)) {
        PQclear(res);
        return KEEL_OK;
    }
    keel_err e;
    if (res != NULL && (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)) {
        /* COPY needs a data stream this interface does not have: end it (abort COPY FROM,
         * discard COPY TO output) so the session, and its prepared statements, stay usable. */
        PQclear(res);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_BOTH)
            (void)PQputCopyEnd(c->pq, "COPY is not supported by keel_db_exec");
        if (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            char *row = NULL;
            while (PQgetCopyData(c->pq, &row, 0) > 0) {
                PQfreemem(row);
                row = NULL;
            }
        }
        while ((res = PQgetResult(c->pq)) != NULL)
            PQclear(res);
        return keel_diag_set(diag, KEEL_EUNSUPPORTED, 0, "postgres: COPY is not supported");
    }
    e = fail(c->pq, res, diag);
    PQclear(res);
    return e;
}

static void pg_disconnect(void *conn)
{
    pg_conn *c = conn;
    if (c == NULL)
        return;
    PQfinish(c->pq);
    keel_free(c);
}

/* Server notices (NOTICE, WARNING) would go to stderr by default; they are informational
 * and may quote data, so they are dropped. */
static void ignore_notice(void *arg, const char *message)
{
    KEEL_UNUSED(arg);
    KEEL_UNUSED(message);
}

/* The password of a connection string, or NULL (caller frees with PQconninfoFree on opts). */
static const char *url_password(PQconninfoOption *opts)
{
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val != NULL && o->val[0] != '\0')
            return o->val;
    return NULL;
}

static keel_err pg_connect(const char *target, const keel_store_config *cfg, void **conn,
                           keel_diag *diag)
{
    *conn = NULL;
    /* Parse first: libpq's URI syntax errors quote the URI, which may hold a password. */
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(target, &perr);
    if (opts == NULL) {
        if (perr != NULL)
            PQfreemem(perr);
        return keel_diag_set(diag, KEEL_EINVAL, 0, "DATABASE_URL: malformed PostgreSQL URL");
    }

    pg_conn *c = keel__new(pg_conn);
    if (c == NULL) {
        PQconninfoFree(opts);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    }
    uint32_t secs = cfg->checkout_timeout_ms / 1000u;
    if (secs < 1)
        secs = 1;
    char tmo[16];
    snprintf(tmo, sizeof(tmo), "%u", (unsigned)secs);
    /* Later keywords win: the URL (dbname, expanded) may override our defaults. */
    const char *const keys[] = {"client_encoding", "connect_timeout", "dbname", NULL};
    const char *const vals[] = {"UTF8", tmo, target, NULL};
    c->pq = PQconnectdbParams(keys, vals, 1);
    if (c->pq == NULL) {
        PQconninfoFree(opts);
        keel_free(c);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    }
    if (PQstatus(c->pq) != CONNECTION_OK) {
        char msg[sizeof(((keel_diag *)0)->msg)];
        one_line(msg, sizeof(msg), PQerrorMessage(c->pq));
        const char *pw = url_password(opts);
        if (pw != NULL && strstr(msg, pw) != NULL)
            snprintf(msg, sizeof(msg), "connection failed");
        keel_diag_set(diag, KEEL_EIO, 0, "cannot connect to PostgreSQL: %s", msg);
        PQconninfoFree(opts);
        pg_disconnect(c);
        return KEEL_EIO;
    }
    PQconninfoFree(opts);
    PQsetNoticeProcessor(c->pq, ignore_notice, NULL);

    char setup[96];
    if (cfg->query_timeout_ms > 0)
        snprintf(setup, sizeof(setup), "SET bytea_output = hex; SET statement_timeout = %lu",
                 (unsigned long)cfg->query_timeout_ms);
    else
        snprintf(setup, sizeof(setup), "SET bytea_output = hex");
    keel_err e = pg_exec(c, setup, diag);
    if (e != KEEL_OK) {
        pg_disconnect(c);
        return e;
    }
    *conn = c;
    return KEEL_OK;
}

static keel_err pg_ping(void *conn, keel_diag *diag)
{
    pg_conn *c = conn;
    if (PQstatus(c->pq) != CONNECTION_OK)
        return keel_diag_set(diag, KEEL_EIO, 0, "postgres: connection lost");
    keel_err e = pg_exec(c, "SELECT 1", diag);
    if (e != KEEL_OK && PQstatus(c->pq) != CONNECTION_OK)
        e = KEEL_EIO;
    return e;
}

/* -------------------------------------------------------------- statements -- */

static void free_blobs(pg_stmt *st)
{
    for (int i = 0; i < st->nblobs; i++)
        keel_free(st->blobs[i]);
    keel_free(st->blobs);
    keel_free(st->bloblens);
    st->blobs = NULL;
    st->bloblens = NULL;
    st->nblobs = 0;
}

static void clear_bindings(pg_stmt *st)
{
    for (int i = 0; i < st->nparams; i++) {
        keel_free(st->vals[i]);
        st->vals[i] = NULL;
        st->lens[i] = 0;
        st->fmts[i] = 0;
    }
}

static void pg_reset(void *stmt)
{
    pg_stmt *st = stmt;
    free_blobs(st);
    PQclear(st->res);
    st->res = NULL;
    st->executed = false;
    st->nrows = 0;
    st->row = -1;
    clear_bindings(st);
}

static void pg_finalize(void *stmt)
{
    pg_stmt *st = stmt;
    if (st == NULL)
        return;
    pg_reset(st);
    /* Free the server side too, unless the connection is gone or inside a failed
     * transaction (where DEALLOCATE would fail; the statement dies with the session). */
    PGTransactionStatusType ts = PQtransactionStatus(st->c->pq);
    if (PQstatus(st->c->pq) == CONNECTION_OK && (ts == PQTRANS_IDLE || ts == PQTRANS_INTRANS)) {
        char sql[48];
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", st->name);
        PQclear(PQexec(st->c->pq, sql));
    }
    keel_free(st->vals);
    keel_free(st->lens);
    keel_free(st->fmts);
    keel_free(st);
}

static keel_err pg_prepare(void *conn, const char *sql, void **out, keel_diag *diag)
{
    pg_conn *c = conn;
    *out = NULL;
    pg_stmt *st = keel__new(pg_stmt);
    if (st == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    st->c = c;
    st->row = -1;
    snprintf(st->name, sizeof(st->name), "k%llu", ++c->next_id);

    PGresult *res = PQprepare(c->pq, st->name, sql, 0, NULL);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        keel_err e = fail(c->pq, res, diag);
        PQclear(res);
        keel_free(st);
        return e;
    }
    PQclear(res);
    res = PQdescribePrepared(c->pq, st->name);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        keel_err e = fail(c->pq, res, diag);
        PQclear(res);
        pg_finalize(st);
        return e;
    }
    st->nparams = PQnparams(res);
    PQclear(res);
    if (st->nparams > 0) {
        size_t n = (size_t)st->nparams;
        st->vals = keel_calloc(n, sizeof(*st->vals));
        st->lens = keel_calloc(n, sizeof(*st->lens));
        st->fmts = keel_calloc(n, sizeof(*st->fmts));
        if (st->vals == NULL || st->lens == NULL || st->fmts == NULL) {
            st->nparams = 0; /* nothing to free inside the arrays */
            pg_finalize(st);
            return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
        }
    }
    *out = st;
    return KEEL_OK;
}

/* Store a copy of v (len bytes, NUL-terminated in the copy) as parameter idx. */
static keel_err set_param(pg_stmt *st, int idx, const void *v, size_t len, int fmt)
{
    if (idx < 1 || idx > st->nparams)
        return KEEL_ERANGE;
    if (len >= INT_MAX)
        return KEEL_ETOOBIG;
    char *copy = NULL;
    if (v != NULL) {
        copy = keel_malloc(len + 1);
        if (copy == NULL)
            return KEEL_ENOMEM;
        if (len > 0)
            memcpy(copy, v, len);
        copy[len] = '\0';
    }
    keel_free(st->vals[idx - 1]);
    st->vals[idx - 1] = copy;
    st->lens[idx - 1] = (int)len;
    st->fmts[idx - 1] = fmt;
    return KEEL_OK;
}

static keel_err pg_bind_int64(void *stmt, int idx, int64_t v)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%lld", (long long)v);
    return set_param(stmt, idx, buf, (size_t)n, 0);
}

static keel_err pg_bind_double(void *stmt, int idx, double v)
{
    char buf[40];
    int n = snprintf(buf, sizeof(buf), "%.17g", v); /* PostgreSQL reads "inf", "nan" too */
    return set_param(stmt, idx, buf, (size_t)n, 0);
}

static keel_err pg_bind_text(void *stmt, int idx, const char *v, size_t len)
{
    if (v != NULL && memchr(v, '\0', len) != NULL)
        return KEEL_EINVAL; /* PostgreSQL text cannot hold NUL */
    return set_param(stmt, idx, v, len, 0);
}

static keel_err pg_bind_blob(void *stmt, int idx, const void *v, size_t len)
{
    if (v == NULL || len == 0)
        return set_param(stmt, idx, "", 0, 1);
    return set_param(stmt, idx, v, len, 1);
}

static keel_err pg_bind_null(void *stmt, int idx)
{
    return set_param(stmt, idx, NULL, 0, 0);
}

static int pg_step(void *stmt, keel_diag *diag)
{
    pg_stmt *st = stmt;
    free_blobs(st);
    if (!st->executed) {
        PQclear(st->res);
        st->res = PQexecPrepared(st->c->pq, st->name, st->nparams,
                                 (const char *const *)st->vals, st->lens, st->fmts, 0);
        ExecStatusType rs = PQresultStatus(st->res);
        if (st->res == NULL ||
            (rs != PGRES_TUPLES_OK && rs != PGRES_COMMAND_OK && rs != PGRES_EMPTY_QUERY)) {
            keel_err e = fail(st->c->pq, st->res, diag);
            PQclear(st->res);
            st->res = NULL;
            return (int)e; /* not executed: re-runnable */
        }
        st->executed = true;
        st->row = -1;
        st->nrows = rs == PGRES_TUPLES_OK ? PQntuples(st->res) : 0;
        const char *ct = PQcmdTuples(st->res);
        if (ct != NULL && ct[0] != '\0')
            st->changes = (int64_t)strtoll(ct, NULL, 10);
    }
    if (st->row + 1 < st->nrows) {
        st->row++;
        return 1;
    }
    st->row = st->nrows;
    return 0;
}

static int64_t pg_changes(void *stmt)
{
    return ((pg_stmt *)stmt)->changes;
}

static bool on_row(const pg_stmt *st)
{
    return st->res != NULL && st->row >= 0 && st->row < st->nrows;
}

static int pg_columns(void *stmt)
{
    pg_stmt *st = stmt;
    return on_row(st) ? PQnfields(st->res) : 0;
}

static bool valid(const pg_stmt *st, int col)
{
    return on_row(st) && col >= 0 && col < PQnfields(st->res);
}

static int pg_is_null(void *stmt, int col)
{
    pg_stmt *st = stmt;
    return valid(st, col) ? PQgetisnull(st->res, st->row, col) : 1;
}

static int64_t pg_col_int64(void *stmt, int col)
{
    pg_stmt *st = stmt;
    if (!valid(st, col) || PQgetisnull(st->res, st->row, col))
        return 0;
    const char *p = PQgetvalue(st->res, st->row, col);
    if (PQftype(st->res, col) == PG_BOOLOID)
        return p[0] == 't' ? 1 : 0;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end != NULL && (*end == '.' || *end == 'e' || *end == 'E' || *end == 'I' || *end == 'N')) {
        double d = strtod(p, NULL); /* numeric/float column: truncate like SQLite */
        if (d != d)
            return 0;
        if (d >= 9223372036854775807.0)
            return INT64_MAX;
        if (d <= -9223372036854775808.0)
            return INT64_MIN;
        return (int64_t)d;
    }
    return (int64_t)v;
}

static double pg_col_double(void *stmt, int col)
{
    pg_stmt *st = stmt;
    if (!valid(st, col) || PQgetisnull(st->res, st->row, col))
        return 0.0;
    const char *p = PQgetvalue(st->res, st->row, col);
    if (PQftype(st->res, col) == PG_BOOLOID)
        return p[0] == 't' ? 1.0 : 0.0;
    return strtod(p, NULL);
}

static const char *pg_col_text(void *stmt, int col, size_t *len)
{
    pg_stmt *st = stmt;
    if (!valid(st, col) || PQgetisnull(st->res, st->row, col)) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    int n = PQgetlength(st->res, st->row, col);
    if (len != NULL)
        *len = n > 0 ? (size_t)n : 0;
    return PQgetvalue(st->res, st->row, col);
}

/* Decode a bytea text value ("\x" hex, or the legacy escape format) into a keel buffer. */
static unsigned char *decode_bytea(const char *p, size_t n, size_t *outlen)
{
    unsigned char *buf;
    if (n >= 2 && p[0] == '\\' && p[1] == 'x') {
        size_t m = (n - 2) / 2;
        buf = keel_malloc(m + 1);
        if (buf == NULL)
            return NULL;
        for (size_t i = 0; i < m; i++) {
            int hi = keel__hex_value(p[2 + 2 * i]), lo = keel__hex_value(p[3 + 2 * i]);
            if (hi < 0 || lo < 0) {
                keel_free(buf);
                return NULL;
            }
            buf[i] = (unsigned char)(hi << 4 | lo);
        }
        *outlen = m;
        return buf;
    }
    size_t m = 0;
    unsigned char *un = PQunescapeBytea((const unsigned char *)p, &m);
    if (un == NULL)
        return NULL;
    buf = keel_malloc(m + 1);
    if (buf != NULL) {
        if (m > 0)
            memcpy(buf, un, m);
        *outlen = m;
    }
    PQfreemem(un);
    return buf;
}

static const void *pg_col_blob(void *stmt, int col, size_t *len)
{
    pg_stmt *st = stmt;
    if (len != NULL)
        *len = 0;
    if (!valid(st, col) || PQgetisnull(st->res, st->row, col))
        return NULL;
    const char *p = PQgetvalue(st->res, st->row, col);
    int n = PQgetlength(st->res, st->row, col);
    if (PQftype(st->res, col) != PG_BYTEAOID) {
        if (len != NULL)
            *len = n > 0 ? (size_t)n : 0;
        return p;
    }
    if (st->blobs == NULL) {
        int nf = PQnfields(st->res);
        st->blobs = keel_calloc((size_t)nf, sizeof(*st->blobs));
        st->bloblens = keel_calloc((size_t)nf, sizeof(*st->bloblens));
        if (st->blobs == NULL || st->bloblens == NULL) {
            free_blobs(st);
            return NULL;
        }
        st->nblobs = nf;
    }
    if (st->blobs[col] == NULL) {
        size_t m = 0;
        st->blobs[col] = decode_bytea(p, n > 0 ? (size_t)n : 0, &m);
        if (st->blobs[col] == NULL)
            return NULL;
        st->bloblens[col] = m;
    }
    if (len != NULL)
        *len = st->bloblens[col];
    return st->blobs[col];
}

const keel__store_backend keel__store_pg = {
    .name = "postgres",
    .engine = KEEL_STORE_POSTGRES,
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .ping = pg_ping,
    .exec = pg_exec,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .reset = pg_reset,
    .bind_int64 = pg_bind_int64,
    .bind_double = pg_bind_double,
    .bind_text = pg_bind_text,
    .bind_blob = pg_bind_blob,
    .bind_null = pg_bind_null,
    .step = pg_step,
    .changes = pg_changes,
    .columns = pg_columns,
    .is_null = pg_is_null,
    .col_int64 = pg_col_int64,
    .col_double = pg_col_double,
    .col_text = pg_col_text,
    .col_blob = pg_col_blob,
};
