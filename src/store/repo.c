/* repo.c - keel/repo.h: the SQL of one table's get/list/find/insert/update/delete/count,
 * built from a compile-time descriptor.  Identifiers come only from the descriptor (checked
 * against [a-z_][a-z0-9_]* and double-quoted); values are always bound parameters.  The SQL
 * text is rebuilt per call (cheap next to the database round trip) and the prepared
 * statement comes from the connection's cache (keel_db_prepare). */
#include "keel_int.h"

#include <keel/repo.h>

#include <stdio.h>
#include <strings.h>

#define REPO_NAME_MAX 63
#define REPO_SQL_CAP 8192

enum { ALL_FLAGS = KEEL_REPO_KEY | KEEL_REPO_AUTO | KEEL_REPO_IMMUTABLE | KEEL_REPO_NULLABLE };

/* ------------------------------------------------------------- SQL builder -- */

typedef struct sqlb {
    char s[REPO_SQL_CAP];
    size_t n;
    bool over;
} sqlb;

static void sb_init(sqlb *b)
{
    b->s[0] = '\0';
    b->n = 0;
    b->over = false;
}

static void sb_str(sqlb *b, const char *s)
{
    size_t l = strlen(s);
    if (b->over || l >= REPO_SQL_CAP - b->n) {
        b->over = true;
        return;
    }
    memcpy(b->s + b->n, s, l + 1);
    b->n += l;
}

/* A checked identifier, quoted so that names that are also keywords stay names. */
static void sb_ident(sqlb *b, const char *name)
{
    sb_str(b, "\"");
    sb_str(b, name);
    sb_str(b, "\"");
}

static bool is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

static bool ident_ok(const char *s)
{
    if (s == NULL || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 1; s[i] != '\0'; i++) {
        char c = s[i];
        if (i >= REPO_NAME_MAX || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------- descriptor -- */

static keel_err desc_check(const keel_repo *r, keel_diag *diag)
{
    if (r == NULL || r->columns == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo: NULL descriptor or columns");
    if (!ident_ok(r->table))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "keel_repo: table name is not [a-z_][a-z0-9_]* (max 63)");
    if (r->ncolumns == 0 || r->ncolumns > KEEL_REPO_MAX_COLUMNS)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo %s: %zu columns (1..%d allowed)",
                             r->table, r->ncolumns, KEEL_REPO_MAX_COLUMNS);
    size_t nkey = 0;
    for (size_t i = 0; i < r->ncolumns; i++) {
        const keel_repo_column *c = &r->columns[i];
        if (!ident_ok(c->name))
            return keel_diag_set(diag, KEEL_EINVAL, i,
                                 "keel_repo %s: column %zu name is not [a-z_][a-z0-9_]* (max 63)",
                                 r->table, i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->columns[j].name, c->name) == 0)
                return keel_diag_set(diag, KEEL_EINVAL, i, "keel_repo %s: column %s twice",
                                     r->table, c->name);
        bool size_ok;
        switch (c->type) {
        case KEEL_REPO_T_TEXT:
            size_ok = c->size >= 1;
            break;
        case KEEL_REPO_T_INT64:
            size_ok = c->size == sizeof(int64_t);
            break;
        case KEEL_REPO_T_DOUBLE:
            size_ok = c->size == sizeof(double);
            break;
        case KEEL_REPO_T_BOOL:
            size_ok = c->size == sizeof(bool);
            break;
        default:
            return keel_diag_set(diag, KEEL_EINVAL, i, "keel_repo %s: column %s: unknown type",
                                 r->table, c->name);
        }
        if (!size_ok)
            return keel_diag_set(diag, KEEL_EINVAL, i,
                                 "keel_repo %s: column %s: field size %zu does not fit its type",
                                 r->table, c->name, c->size);
        if (c->offset > r->row_size || c->size > r->row_size - c->offset)
            return keel_diag_set(diag, KEEL_EINVAL, i,
                                 "keel_repo %s: column %s: field outside the %zu-byte row",
                                 r->table, c->name, r->row_size);
        if ((c->flags & ~(unsigned)ALL_FLAGS) != 0)
            return keel_diag_set(diag, KEEL_EINVAL, i, "keel_repo %s: column %s: unknown flags",
                                 r->table, c->name);
        if ((c->flags & KEEL_REPO_NULLABLE) &&
            (c->type != KEEL_REPO_T_TEXT || (c->flags & KEEL_REPO_KEY)))
            return keel_diag_set(diag, KEEL_EINVAL, i,
                                 "keel_repo %s: column %s: only non-key text can be NULLABLE",
                                 r->table, c->name);
        if (c->flags & KEEL_REPO_KEY)
            nkey++;
    }
    if (nkey == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo %s: no KEEL_REPO_KEY column",
                             r->table);
    return KEEL_OK;
}

static const keel_repo_column *find_col(const keel_repo *r, const char *name, size_t len)
{
    for (size_t i = 0; i < r->ncolumns; i++) {
        const char *cn = r->columns[i].name;
        if (strncmp(cn, name, len) == 0 && cn[len] == '\0')
            return &r->columns[i];
    }
    return NULL;
}

/* " ORDER BY" from spec ("col [ASC|DESC], ..."; NULL = nothing), then the key columns spec
 * did not name, ascending.  Only descriptor spellings reach the SQL. */
static keel_err sb_order(sqlb *b, const keel_repo *r, const char *spec, keel_diag *diag)
{
    bool named[KEEL_REPO_MAX_COLUMNS] = {false};
    bool first = true;
    sb_str(b, " ORDER BY ");
    const char *p = spec;
    while (p != NULL) { /* one "name [ASC|DESC]" per turn; an empty item is an error */
        while (*p == ' ')
            p++;
        const char *nm = p;
        while (is_word_char(*p))
            p++;
        size_t nlen = (size_t)(p - nm);
        const keel_repo_column *c = nlen > 0 ? find_col(r, nm, nlen) : NULL;
        if (c == NULL)
            return keel_diag_set(diag, KEEL_EINVAL, (size_t)(nm - spec),
                                 "keel_repo %s: order names no column at byte %zu", r->table,
                                 (size_t)(nm - spec));
        while (*p == ' ')
            p++;
        const char *dir = "";
        if (strncasecmp(p, "asc", 3) == 0 && !is_word_char(p[3])) {
            p += 3;
        } else if (strncasecmp(p, "desc", 4) == 0 && !is_word_char(p[4])) {
            dir = " DESC";
            p += 4;
        }
        while (*p == ' ')
            p++;
        if (*p != ',' && *p != '\0')
            return keel_diag_set(diag, KEEL_EINVAL, (size_t)(p - spec),
                                 "keel_repo %s: order: expected ',' at byte %zu", r->table,
                                 (size_t)(p - spec));
        size_t idx = (size_t)(c - r->columns);
        if (named[idx])
            return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo %s: order names %s twice",
                                 r->table, c->name);
        named[idx] = true;
        if (!first)
            sb_str(b, ", ");
        sb_ident(b, c->name);
        sb_str(b, dir);
        first = false;
        p = *p == ',' ? p + 1 : NULL;
    }
    for (size_t i = 0; i < r->ncolumns; i++) {
        if (!(r->columns[i].flags & KEEL_REPO_KEY) || named[i])
            continue;
        if (!first)
            sb_str(b, ", ");
        sb_ident(b, r->columns[i].name);
        first = false;
    }
    return KEEL_OK;
}

keel_err keel_repo_check(const keel_repo *repo, keel_diag *diag)
{
    keel_err e = desc_check(repo, diag);
    if (e != KEEL_OK)
        return e;
    sqlb *b = keel__new(sqlb);
    if (b == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    sb_init(b);
    e = sb_order(b, repo, repo->order, diag);
    keel_free(b);
    return e;
}

/* --------------------------------------------------------------- values -- */

static keel_err bind_field(keel_stmt *st, int idx, const keel_repo_column *c, const void *row,
                           keel_diag *diag)
{
    const char *f = (const char *)row + c->offset;
    switch (c->type) {
    case KEEL_REPO_T_TEXT: {
        size_t len = strnlen(f, c->size);
        if (len == c->size)
            return keel_diag_set(diag, KEEL_ETOOBIG, 0,
                                 "column %s: text field is not NUL-terminated", c->name);
        if (len == 0 && (c->flags & KEEL_REPO_NULLABLE))
            return keel_stmt_bind_null(st, idx);
        return keel_stmt_bind_text(st, idx, f, len);
    }
    case KEEL_REPO_T_INT64: {
        int64_t v;
        memcpy(&v, f, sizeof(v));
        return keel_stmt_bind_int64(st, idx, v);
    }
    case KEEL_REPO_T_DOUBLE: {
        double v;
        memcpy(&v, f, sizeof(v));
        return keel_stmt_bind_double(st, idx, v);
    }
    case KEEL_REPO_T_BOOL: {
        bool v;
        memcpy(&v, f, sizeof(v));
        return keel_stmt_bind_int64(st, idx, v ? 1 : 0);
    }
    }
    return KEEL_EINVAL;
}

static keel_err read_field(const keel_stmt *st, int col, const keel_repo_column *c, void *row,
                           keel_diag *diag)
{
    char *f = (char *)row + c->offset;
    switch (c->type) {
    case KEEL_REPO_T_TEXT: {
        size_t n = 0;
        const char *t = keel_stmt_text(st, col, &n);
        if (t == NULL)
            n = 0;
        if (n >= c->size)
            return keel_diag_set(diag, KEEL_ETOOBIG, 0,
                                 "column %s: stored value of %zu bytes exceeds its %zu-byte field",
                                 c->name, n, c->size);
        if (n > 0)
            memcpy(f, t, n);
        f[n] = '\0';
        return KEEL_OK;
    }
    case KEEL_REPO_T_INT64: {
        int64_t v = keel_stmt_int64(st, col);
        memcpy(f, &v, sizeof(v));
        return KEEL_OK;
    }
    case KEEL_REPO_T_DOUBLE: {
        double v = keel_stmt_double(st, col);
        memcpy(f, &v, sizeof(v));
        return KEEL_OK;
    }
    case KEEL_REPO_T_BOOL: {
        bool v = keel_stmt_int64(st, col) != 0;
        memcpy(f, &v, sizeof(v));
        return KEEL_OK;
    }
    }
    return KEEL_EINVAL;
}

/* All columns of the current row (SELECT lists them in descriptor order). */
static keel_err read_row(const keel_stmt *st, const keel_repo *r, void *row, keel_diag *diag)
{
    for (size_t i = 0; i < r->ncolumns; i++) {
        keel_err e = read_field(st, (int)i, &r->columns[i], row, diag);
        if (e != KEEL_OK)
            return e;
    }
    return KEEL_OK;
}

/* Step to the end so the statement's metrics are recorded and no read stays open. */
static keel_err finish(keel_stmt *st, keel_diag *diag)
{
    int rc;
    while ((rc = keel_stmt_step(st, diag)) == 1)
        ;
    return rc < 0 ? (keel_err)rc : KEEL_OK;
}

/* ------------------------------------------------------------ statements -- */

static void sb_select(sqlb *b, const keel_repo *r)
{
    sb_str(b, "SELECT ");
    for (size_t i = 0; i < r->ncolumns; i++) {
        if (i > 0)
            sb_str(b, ", ");
        sb_ident(b, r->columns[i].name);
    }
    sb_str(b, " FROM ");
    sb_ident(b, r->table);
}

static void sb_where_key(sqlb *b, const keel_repo *r)
{
    bool first = true;
    for (size_t i = 0; i < r->ncolumns; i++) {
        if (!(r->columns[i].flags & KEEL_REPO_KEY))
            continue;
        sb_str(b, first ? " WHERE " : " AND ");
        sb_ident(b, r->columns[i].name);
        sb_str(b, " = ?");
        first = false;
    }
}

static keel_err bind_keys(keel_stmt *st, int *idx, const keel_repo *r, const void *row,
                          keel_diag *diag)
{
    for (size_t i = 0; i < r->ncolumns; i++) {
        if (!(r->columns[i].flags & KEEL_REPO_KEY))
            continue;
        keel_err e = bind_field(st, ++*idx, &r->columns[i], row, diag);
        if (e != KEEL_OK)
            return e;
    }
    return KEEL_OK;
}

static keel_err prepare(keel_db *db, const keel_repo *r, sqlb *b, keel_stmt **st,
                        keel_diag *diag)
{
    if (b->over)
        return keel_diag_set(diag, KEEL_ETOOBIG, 0, "keel_repo %s: SQL exceeds %d bytes",
                             r->table, REPO_SQL_CAP);
    return keel_db_prepare(db, b->s, st, diag);
}

keel_err keel_repo_get(keel_db *db, const keel_repo *repo, void *row, keel_diag *diag)
{
    if (db == NULL || row == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo_get: invalid arguments");
    keel_err e = desc_check(repo, diag);
    if (e != KEEL_OK)
        return e;
    sqlb b;
    sb_init(&b);
    sb_select(&b, repo);
    sb_where_key(&b, repo);
    keel_stmt *st;
    int idx = 0;
    if ((e = prepare(db, repo, &b, &st, diag)) != KEEL_OK ||
        (e = bind_keys(st, &idx, repo, row, diag)) != KEEL_OK)
        return e;
    int rc = keel_stmt_step(st, diag);
    if (rc < 0)
        return (keel_err)rc;
    if (rc == 0)
        return KEEL_ENOTFOUND;
    if ((e = read_row(st, repo, row, diag)) != KEEL_OK)
        return e;
    return finish(st, diag);
}

/* list and find_by: column NULL = no filter. */
static keel_err query_page(keel_db *db, const keel_repo *r, const char *column,
                           const void *probe, const keel_repo_page *page, void *rows,
                           size_t cap, size_t *n, keel_diag *diag)
{
    if (n != NULL)
        *n = 0;
    if (db == NULL || rows == NULL || n == NULL || cap == 0 || (column != NULL && probe == NULL))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo: invalid arguments");
    keel_err e = desc_check(r, diag);
    if (e != KEEL_OK)
        return e;
    int64_t skip = page != NULL ? page->skip : 0;
    int64_t limit = page != NULL ? page->limit : 0;
    const char *order = page != NULL && page->order != NULL ? page->order : r->order;
    if (skip < 0 || limit < 0 || (uint64_t)limit > cap)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "keel_repo %s: page needs skip >= 0 and 0 <= limit <= %zu", r->table,
                             cap);
    if (limit == 0)
        limit = cap > (size_t)INT64_MAX ? INT64_MAX : (int64_t)cap;

    sqlb b;
    sb_init(&b);
    sb_select(&b, r);
    const keel_repo_column *c = NULL;
    bool is_null = false;
    if (column != NULL) {
        c = find_col(r, column, strlen(column));
        if (c == NULL)
            return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo %s: no column named so",
                                 r->table);
        is_null = (c->flags & KEEL_REPO_NULLABLE) &&
                  ((const char *)probe)[c->offset] == '\0';
        sb_str(&b, " WHERE ");
        sb_ident(&b, c->name);
        sb_str(&b, is_null ? " IS NULL" : " = ?");
    }
    if ((e = sb_order(&b, r, order, diag)) != KEEL_OK)
        return e;
    sb_str(&b, " LIMIT ? OFFSET ?");
    keel_stmt *st;
    int idx = 0;
    if ((e = prepare(db, r, &b, &st, diag)) != KEEL_OK)
        return e;
    if (c != NULL && !is_null && (e = bind_field(st, ++idx, c, probe, diag)) != KEEL_OK)
        return e;
    if ((e = keel_stmt_bind_int64(st, ++idx, limit)) != KEEL_OK ||
        (e = keel_stmt_bind_int64(st, ++idx, skip)) != KEEL_OK)
        return e;
    int rc;
    while ((rc = keel_stmt_step(st, diag)) == 1) {
        if (*n >= (size_t)limit)
            continue; /* the engine honours LIMIT; never write past cap regardless */
        if ((e = read_row(st, r, (char *)rows + *n * r->row_size, diag)) != KEEL_OK)
            return e;
        (*n)++;
    }
    return rc < 0 ? (keel_err)rc : KEEL_OK;
}

keel_err keel_repo_list(keel_db *db, const keel_repo *repo, const keel_repo_page *page,
                        void *rows, size_t cap, size_t *n, keel_diag *diag)
{
    return query_page(db, repo, NULL, NULL, page, rows, cap, n, diag);
}

keel_err keel_repo_find_by(keel_db *db, const keel_repo *repo, const char *column,
                           const void *probe, const keel_repo_page *page, void *rows,
                           size_t cap, size_t *n, keel_diag *diag)
{
    if (column == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo_find_by: no column");
    return query_page(db, repo, column, probe, page, rows, cap, n, diag);
}

keel_err keel_repo_find_one(keel_db *db, const keel_repo *repo, const char *column, void *row,
                            keel_diag *diag)
{
    if (column == NULL || row == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo_find_one: invalid arguments");
    /* The probe value is bound (copied) before any row is read into the same struct. */
    keel_repo_page pg = {0, 1, NULL};
    size_t n = 0;
    keel_err e = query_page(db, repo, column, row, &pg, row, 1, &n, diag);
    if (e != KEEL_OK)
        return e;
    return n == 1 ? KEEL_OK : KEEL_ENOTFOUND;
}

keel_err keel_repo_insert(keel_db *db, const keel_repo *repo, void *row, keel_diag *diag)
{
    if (db == NULL || row == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo_insert: invalid arguments");
    keel_err e = desc_check(repo, diag);
    if (e != KEEL_OK)
        return e;
    sqlb b;
    sb_init(&b);
    sb_str(&b, "INSERT INTO ");
    sb_ident(&b, repo->table);
    sb_str(&b, " (");
    size_t nval = 0, nauto = 0;
    for (size_t i = 0; i < repo->ncolumns; i++) {
        if (repo->columns[i].flags & KEEL_REPO_AUTO) {
            nauto++;
            continue;
        }
        if (nval++ > 0)
            sb_str(&b, ", ");
        sb_ident(&b, repo->columns[i].name);
    }
    if (nval == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo %s: every column is AUTO",
                             repo->table);
    sb_str(&b, ") VALUES (");
    for (size_t i = 0; i < nval; i++)
        sb_str(&b, i > 0 ? ", ?" : "?");
    sb_str(&b, ")");
    if (nauto > 0) {
        sb_str(&b, " RETURNING ");
        size_t k = 0;
        for (size_t i = 0; i < repo->ncolumns; i++) {
            if (!(repo->columns[i].flags & KEEL_REPO_AUTO))
                continue;
            if (k++ > 0)
                sb_str(&b, ", ");
            sb_ident(&b, repo->columns[i].name);
        }
    }
    keel_stmt *st;
    if ((e = prepare(db, repo, &b, &st, diag)) != KEEL_OK)
        return e;
    int idx = 0;
    for (size_t i = 0; i < repo->ncolumns; i++) {
        if (repo->columns[i].flags & KEEL_REPO_AUTO)
            continue;
        if ((e = bind_field(st, ++idx, &repo->columns[i], row, diag)) != KEEL_OK)
            return e;
    }
    int rc = keel_stmt_step(st, diag);
    if (rc < 0)
        return (keel_err)rc;
    if (nauto > 0) {
        if (rc == 0)
            return keel_diag_set(diag, KEEL_EINTERNAL, 0,
                                 "keel_repo %s: INSERT ... RETURNING gave no row", repo->table);
        int col = 0;
        for (size_t i = 0; i < repo->ncolumns; i++) {
            if (!(repo->columns[i].flags & KEEL_REPO_AUTO))
                continue;
            if ((e = read_field(st, col++, &repo->columns[i], row, diag)) != KEEL_OK)
                return e;
        }
    }
    return rc == 1 ? finish(st, diag) : KEEL_OK;
}

keel_err keel_repo_update(keel_db *db, const keel_repo *repo, const void *row, keel_diag *diag)
{
    if (db == NULL || row == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo_update: invalid arguments");
    keel_err e = desc_check(repo, diag);
    if (e != KEEL_OK)
        return e;
    const unsigned skip = KEEL_REPO_KEY | KEEL_REPO_AUTO | KEEL_REPO_IMMUTABLE;
    sqlb b;
    sb_init(&b);
    sb_str(&b, "UPDATE ");
    sb_ident(&b, repo->table);
    sb_str(&b, " SET ");
    size_t nset = 0;
    for (size_t i = 0; i < repo->ncolumns; i++) {
        if (repo->columns[i].flags & skip)
            continue;
        if (nset++ > 0)
            sb_str(&b, ", ");
        sb_ident(&b, repo->columns[i].name);
        sb_str(&b, " = ?");
    }
    if (nset == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo %s: no updatable column",
                             repo->table);
    sb_where_key(&b, repo);
    keel_stmt *st;
    if ((e = prepare(db, repo, &b, &st, diag)) != KEEL_OK)
        return e;
    int idx = 0;
    for (size_t i = 0; i < repo->ncolumns; i++) {
        if (repo->columns[i].flags & skip)
            continue;
        if ((e = bind_field(st, ++idx, &repo->columns[i], row, diag)) != KEEL_OK)
            return e;
    }
    if ((e = bind_keys(st, &idx, repo, row, diag)) != KEEL_OK)
        return e;
    int rc = keel_stmt_step(st, diag);
    if (rc < 0)
        return (keel_err)rc;
    return keel_stmt_changes(st) > 0 ? KEEL_OK : KEEL_ENOTFOUND;
}

keel_err keel_repo_delete(keel_db *db, const keel_repo *repo, const void *row, keel_diag *diag)
{
    if (db == NULL || row == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo_delete: invalid arguments");
    keel_err e = desc_check(repo, diag);
    if (e != KEEL_OK)
        return e;
    sqlb b;
    sb_init(&b);
    sb_str(&b, "DELETE FROM ");
    sb_ident(&b, repo->table);
    sb_where_key(&b, repo);
    keel_stmt *st;
    int idx = 0;
    if ((e = prepare(db, repo, &b, &st, diag)) != KEEL_OK ||
        (e = bind_keys(st, &idx, repo, row, diag)) != KEEL_OK)
        return e;
    int rc = keel_stmt_step(st, diag);
    if (rc < 0)
        return (keel_err)rc;
    return keel_stmt_changes(st) > 0 ? KEEL_OK : KEEL_ENOTFOUND;
}

keel_err keel_repo_count(keel_db *db, const keel_repo *repo, int64_t *out, keel_diag *diag)
{
    if (db == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_repo_count: invalid arguments");
    *out = 0;
    keel_err e = desc_check(repo, diag);
    if (e != KEEL_OK)
        return e;
    sqlb b;
    sb_init(&b);
    sb_str(&b, "SELECT COUNT(*) FROM ");
    sb_ident(&b, repo->table);
    keel_stmt *st;
    if ((e = prepare(db, repo, &b, &st, diag)) != KEEL_OK)
        return e;
    int rc = keel_stmt_step(st, diag);
    if (rc < 0)
        return (keel_err)rc;
    if (rc == 0)
        return keel_diag_set(diag, KEEL_EINTERNAL, 0, "keel_repo %s: COUNT gave no row",
                             repo->table);
    *out = keel_stmt_int64(st, 0);
    return finish(st, diag);
}
