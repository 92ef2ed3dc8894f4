/* migrate.c - numbered SQL migrations (keel_store_migrate, keel_store_schema_version).
 *
 * Written against the public store API only.  Layout: dir/<engine>/NNNN_description.sql
 * (4+ digits, '_', [a-z0-9_]+, ".sql").  Files whose name does not start with a digit
 * (README.md, .gitkeep) are ignored; a name that starts with a digit but does not match is
 * an error, so a typo never silently skips a migration.
 *
 * Each pending file runs in its own transaction together with its schema_migrations row, so
 * a failing file leaves nothing behind (both engines have transactional DDL).  The
 * "already applied?" check is repeated inside that transaction; on SQLite the transaction
 * holds the write lock (BEGIN IMMEDIATE), on PostgreSQL a transaction-scoped advisory lock
 * serialises concurrent migrators.
 */
#include "keel_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keel/store.h>

#define MIGRATION_MAX_BYTES (4u * 1024u * 1024u)
#define MIGRATION_MAX_FILES 100000u
#define MIGRATION_MAX_DIGITS 18u
#define MIGRATION_PATH_MAX 4096u
/* pg_advisory_xact_lock key: "keel" in ASCII. */
#define MIGRATION_PG_LOCK_KEY 0x6b65656cLL

typedef struct migration {
    int64_t version;
    char *name; /* file name, owned */
} migration;

typedef struct migration_list {
    migration *v;
    size_t n, cap;
} migration_list;

static const char *engine_dir(const keel_store *s)
{
    return keel_store_engine_of(s) == KEEL_STORE_POSTGRES ? "postgres" : "sqlite";
}

static void list_free(migration_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        keel_free(l->v[i].name);
    keel_free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/* 1 and *version set if name is NNNN_[a-z0-9_]+.sql; 0 otherwise. */
static int parse_name(const char *name, int64_t *version)
{
    size_t i = 0;
    int64_t v = 0;
    while (name[i] >= '0' && name[i] <= '9') {
        if (i >= MIGRATION_MAX_DIGITS)
            return 0;
        v = v * 10 + (name[i] - '0');
        i++;
    }
    if (i < 4 || name[i] != '_')
        return 0;
    i++;
    size_t start = i;
    while ((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
           name[i] == '_')
        i++;
    if (i == start || strcmp(name + i, ".sql") != 0)
        return 0;
    *version = v;
    return 1;
}

static int cmp_migration(const void *a, const void *b)
{
    const migration *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Collect and sort the migrations in path (which exists).  Rejects malformed names and
 * duplicate versions. */
static keel_err list_dir(const char *path, const char *eng, migration_list *l, keel_diag *diag)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return keel_diag_set(diag, KEEL_EIO, 0, "cannot open migrations directory %s: %s", path,
                             strerror(errno));
    keel_err e = KEEL_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (name[0] < '0' || name[0] > '9')
            continue;
        int64_t v;
        if (!parse_name(name, &v)) {
            e = keel_diag_set(diag, KEEL_EINVAL, 0,
                              "bad migration file name %s/%s (want NNNN_name.sql, "
                              "name in [a-z0-9_])",
                              eng, name);
            break;
        }
        if (l->n == l->cap) {
            if (l->cap >= MIGRATION_MAX_FILES) {
                e = keel_diag_set(diag, KEEL_ETOOBIG, 0, "too many migration files in %s", path);
                break;
            }
            size_t ncap = l->cap ? l->cap * 2 : 16;
            migration *nv = keel_realloc(l->v, ncap * sizeof(*nv));
            if (nv == NULL) {
                e = keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory listing migrations");
                break;
            }
            l->v = nv;
            l->cap = ncap;
        }
        char *dup = keel_strdup(name);
        if (dup == NULL) {
            e = keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory listing migrations");
            break;
        }
        l->v[l->n].version = v;
        l->v[l->n].name = dup;
        l->n++;
    }
    closedir(d);
    if (e != KEEL_OK)
        return e;
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), cmp_migration);
    for (size_t i = 1; i < l->n; i++)
        if (l->v[i].version == l->v[i - 1].version)
            return keel_diag_set(diag, KEEL_EINVAL, 0,
                                 "duplicate migration version %lld: %s/%s and %s/%s",
                                 (long long)l->v[i].version, eng, l->v[i - 1].name, eng,
                                 l->v[i].name);
    return KEEL_OK;
}

/* Read a whole migration file (capped) as a NUL-terminated string; caller frees. */
static keel_err read_file(const char *path, const char *label, char **out, keel_diag *diag)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return keel_diag_set(diag, KEEL_EIO, 0, "cannot open %s: %s", label, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return keel_diag_set(diag, KEEL_EIO, 0, "%s is not a readable regular file", label);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > MIGRATION_MAX_BYTES) {
        close(fd);
        return keel_diag_set(diag, KEEL_ETOOBIG, 0, "%s is larger than %u bytes", label,
                             MIGRATION_MAX_BYTES);
    }
    size_t want = (size_t)st.st_size, len = 0;
    char *buf = keel_malloc(want + 1);
    if (buf == NULL) {
        close(fd);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory reading %s", label);
    }
    while (len < want) {
        ssize_t r = read(fd, buf + len, want - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int err = errno;
            close(fd);
            keel_free(buf);
            return keel_diag_set(diag, KEEL_EIO, 0, "cannot read %s: %s", label, strerror(err));
        }
        if (r == 0)
            break; /* shrank under us: use what we have */
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        keel_free(buf);
        return keel_diag_set(diag, KEEL_EINVAL, 0, "%s contains a NUL byte", label);
    }
    *out = buf;
    return KEEL_OK;
}

/* Run a prepared statement to completion; *first gets column 0 of the first row (if any
 * and first != NULL). */
static keel_err run_stmt(keel_db *db, const char *sql, int nbind, const int64_t *binds,
                         int64_t *first, keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, sql, &st, diag);
    if (e != KEEL_OK)
        return e;
    for (int i = 0; i < nbind; i++)
        if ((e = keel_stmt_bind_int64(st, i + 1, binds[i])) != KEEL_OK)
            return keel_diag_set(diag, e, 0, "cannot bind migration query parameter");
    int rows = 0, r;
    while ((r = keel_stmt_step(st, diag)) == 1) {
        if (rows++ == 0 && first != NULL)
            *first = keel_stmt_int64(st, 0);
    }
    return r < 0 ? (keel_err)r : KEEL_OK;
}

static keel_err table_exists(keel_store *s, keel_db *db, int *exists, keel_diag *diag)
{
    const char *sql =
        keel_store_engine_of(s) == KEEL_STORE_POSTGRES
            ? "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = "
              "'schema_migrations' AND table_schema = current_schema()"
            : "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = "
              "'schema_migrations'";
    int64_t n = 0;
    keel_err e = run_stmt(db, sql, 0, NULL, &n, diag);
    *exists = n > 0;
    return e;
}

static keel_err max_version(keel_db *db, int64_t *v, keel_diag *diag)
{
    *v = 0;
    return run_stmt(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", 0, NULL, v,
                    diag);
}

/* Where a migration comes from and where it is recorded: the application's files (component
 * NULL, table schema_migrations) or a library component's embedded SQL (table
 * keel_schema_migrations, keyed by component). */
typedef struct migration_src {
    const char *component; /* NULL: application */
    int64_t version;
    const char *name;    /* file or migration name */
    const char *dirpath; /* application: directory holding name */
    const char *sql;     /* component: the SQL itself */
} migration_src;

/* Run "... WHERE [component = ? AND] version = ?" style statements: binds the component (if
 * any) then the int64 values. */
static keel_err run_src_stmt(keel_db *db, const char *sql, const char *component,
                             const int64_t *binds, int nbind, int64_t *first, keel_diag *diag)
{
    if (component == NULL)
        return run_stmt(db, sql, nbind, binds, first, diag);
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, sql, &st, diag);
    if (e != KEEL_OK)
        return e;
    if ((e = keel_stmt_bind_text(st, 1, component, SIZE_MAX)) != KEEL_OK)
        return keel_diag_set(diag, e, 0, "cannot bind migration query parameter");
    for (int i = 0; i < nbind; i++)
        if ((e = keel_stmt_bind_int64(st, i + 2, binds[i])) != KEEL_OK)
            return keel_diag_set(diag, e, 0, "cannot bind migration query parameter");
    int rows = 0, r;
    while ((r = keel_stmt_step(st, diag)) == 1) {
        if (rows++ == 0 && first != NULL)
            *first = keel_stmt_int64(st, 0);
    }
    return r < 0 ? (keel_err)r : KEEL_OK;
}

/* Apply one migration if still missing, in its own transaction. */
static keel_err apply_one(keel_store *s, keel_db *db, const char *eng, const migration_src *m,
                          int *applied, keel_diag *diag)
{
    char path[MIGRATION_PATH_MAX], label[320];
    if (m->component == NULL) {
        int n = snprintf(path, sizeof(path), "%s/%s", m->dirpath, m->name);
        if (n < 0 || (size_t)n >= sizeof(path))
            return keel_diag_set(diag, KEEL_EINVAL, 0, "migration path too long: %s", m->name);
        snprintf(label, sizeof(label), "%s/%s", eng, m->name);
    } else {
        snprintf(label, sizeof(label), "%s %04lld_%s (%s)", m->component, (long long)m->version,
                 m->name, eng);
    }
    *applied = 0;

    keel_diag ed;
    memset(&ed, 0, sizeof(ed));
    keel_err e = keel_db_begin(db);
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "migration %s: cannot begin transaction: %s", label,
                             keel_strerror(e));
    char *sql = NULL;
    int64_t present = 0;
    if (keel_store_engine_of(s) == KEEL_STORE_POSTGRES) {
        const int64_t key = MIGRATION_PG_LOCK_KEY;
        e = run_stmt(db, "SELECT pg_advisory_xact_lock(?)", 1, &key, NULL, &ed);
        if (e != KEEL_OK)
            goto fail;
    }
    e = run_src_stmt(db,
                     m->component ? "SELECT COUNT(*) FROM keel_schema_migrations WHERE "
                                    "component = ? AND version = ?"
                                  : "SELECT COUNT(*) FROM schema_migrations WHERE version = ?",
                     m->component, &m->version, 1, &present, &ed);
    if (e != KEEL_OK)
        goto fail;
    if (present > 0) {
        e = keel_db_commit(db);
        if (e != KEEL_OK)
            goto fail;
        return KEEL_OK;
    }
    if (m->component == NULL) {
        if ((e = read_file(path, label, &sql, diag)) != KEEL_OK) {
            (void)keel_db_rollback(db);
            return e;
        }
    }
    if ((e = keel_db_exec(db, sql ? sql : m->sql, &ed)) != KEEL_OK)
        goto fail;
    {
        keel_stmt *st;
        int base = m->component ? 2 : 1;
        if ((e = keel_db_prepare(db,
                                 m->component
                                     ? "INSERT INTO keel_schema_migrations (component, version, "
                                       "name, applied_at_ms) VALUES (?, ?, ?, ?)"
                                     : "INSERT INTO schema_migrations (version, name, "
                                       "applied_at_ms) VALUES (?, ?, ?)",
                                 &st, &ed)) != KEEL_OK)
            goto fail;
        if ((m->component && (e = keel_stmt_bind_text(st, 1, m->component, SIZE_MAX)) != KEEL_OK) ||
            (e = keel_stmt_bind_int64(st, base, m->version)) != KEEL_OK ||
            (e = keel_stmt_bind_text(st, base + 1, m->name, SIZE_MAX)) != KEEL_OK ||
            (e = keel_stmt_bind_int64(st, base + 2, keel_time_wall_ms())) != KEEL_OK)
            goto fail;
        int r;
        while ((r = keel_stmt_step(st, &ed)) == 1) {
        }
        if (r < 0) {
            e = (keel_err)r;
            goto fail;
        }
    }
    if ((e = keel_db_commit(db)) != KEEL_OK)
        goto fail;
    keel_free(sql);
    *applied = 1;
    return KEEL_OK;

fail:
    (void)keel_db_rollback(db);
    keel_free(sql);
    return keel_diag_set(diag, e, 0, "migration %s failed: %s", label,
                         ed.msg[0] ? ed.msg : keel_strerror(e));
}

keel_err keel_store_migrate(keel_store *s, const char *dir, keel_diag *diag)
{
    if (s == NULL || dir == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_store_migrate: invalid argument");
    const char *eng = engine_dir(s);
    struct stat st;
    if (stat(dir, &st) != 0)
        return keel_diag_set(diag, KEEL_EIO, 0, "migrations directory %s: %s", dir,
                             strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return keel_diag_set(diag, KEEL_EIO, 0, "migrations directory %s: not a directory", dir);
    char sub[MIGRATION_PATH_MAX];
    int n = snprintf(sub, sizeof(sub), "%s/%s", dir, eng);
    if (n < 0 || (size_t)n >= sizeof(sub))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "migrations directory path too long");
    if (stat(sub, &st) != 0) {
        if (errno == ENOENT)
            return KEEL_OK; /* no migrations for this engine */
        return keel_diag_set(diag, KEEL_EIO, 0, "migrations directory %s: %s", sub,
                             strerror(errno));
    }

    migration_list l = {NULL, 0, 0};
    keel_err e = list_dir(sub, eng, &l, diag);
    if (e != KEEL_OK) {
        list_free(&l);
        return e;
    }
    int64_t newest = l.n ? l.v[l.n - 1].version : 0;

    keel_db *db = NULL;
    if ((e = keel_db_acquire(s, &db, diag)) != KEEL_OK) {
        list_free(&l);
        return e;
    }
    const char *ddl = keel_store_engine_of(s) == KEEL_STORE_POSTGRES
                          ? "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT "
                            "PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)"
                          : "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER "
                            "PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)";
    int64_t current = 0;
    if ((e = keel_db_exec(db, ddl, diag)) != KEEL_OK ||
        (e = max_version(db, &current, diag)) != KEEL_OK)
        goto out;
    if (current > newest) {
        e = keel_diag_set(diag, KEEL_ESTATE, 0,
                          "database schema version %lld is newer than this binary knows (%lld); "
                          "refusing to start",
                          (long long)current, (long long)newest);
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        int applied;
        migration_src src = {NULL, l.v[i].version, l.v[i].name, sub, NULL};
        if ((e = apply_one(s, db, eng, &src, &applied, diag)) != KEEL_OK)
            goto out;
    }
out:
    keel_db_release(db);
    list_free(&l);
    return e;
}

keel_err keel_store_schema_version(keel_store *s, int64_t *out)
{
    if (out != NULL)
        *out = 0;
    if (s == NULL || out == NULL)
        return KEEL_EINVAL;
    keel_db *db = NULL;
    keel_err e = keel_db_acquire(s, &db, NULL);
    if (e != KEEL_OK)
        return e;
    int exists = 0;
    if ((e = table_exists(s, db, &exists, NULL)) == KEEL_OK && exists)
        e = max_version(db, out, NULL);
    keel_db_release(db);
    return e;
}

/* Component names are identifiers: they end up in diagnostics and as keys, never in SQL. */
static int component_ok(const char *c)
{
    size_t n = 0;
    for (; c[n] != '\0'; n++) {
        char ch = c[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.'))
            return 0;
    }
    return n > 0 && n <= 64;
}

keel_err keel_store_migrate_component(keel_store *s, const char *component,
                                      const keel_migration *migs, size_t n, keel_diag *diag)
{
    if (s == NULL || component == NULL || (migs == NULL && n > 0))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "keel_store_migrate_component: invalid argument");
    if (!component_ok(component))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "migration component name must be 1-64 chars of [a-z0-9_.]");
    int pg = keel_store_engine_of(s) == KEEL_STORE_POSTGRES;
    int64_t newest = 0;
    for (size_t i = 0; i < n; i++) {
        if (migs[i].version <= newest || migs[i].name == NULL ||
            (pg ? migs[i].postgres : migs[i].sqlite) == NULL)
            return keel_diag_set(diag, KEEL_EINVAL, 0,
                                 "%s: migration %zu must have a name, SQL for this engine and "
                                 "a version above the previous one",
                                 component, i);
        newest = migs[i].version;
    }
    keel_db *db = NULL;
    keel_err e = keel_db_acquire(s, &db, diag);
    if (e != KEEL_OK)
        return e;
    const char *ddl = pg ? "CREATE TABLE IF NOT EXISTS keel_schema_migrations (component TEXT "
                           "NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL, applied_at_ms "
                           "BIGINT NOT NULL, PRIMARY KEY (component, version))"
                         : "CREATE TABLE IF NOT EXISTS keel_schema_migrations (component TEXT "
                           "NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, "
                           "applied_at_ms INTEGER NOT NULL, PRIMARY KEY (component, version))";
    int64_t current = 0;
    if ((e = keel_db_exec(db, ddl, diag)) != KEEL_OK)
        goto out;
    if ((e = run_src_stmt(db,
                          "SELECT COALESCE(MAX(version), 0) FROM keel_schema_migrations WHERE "
                          "component = ?",
                          component, NULL, 0, &current, diag)) != KEEL_OK)
        goto out;
    if (current > newest) {
        e = keel_diag_set(diag, KEEL_ESTATE, 0,
                          "%s schema version %lld is newer than this binary knows (%lld); "
                          "refusing to start",
                          component, (long long)current, (long long)newest);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        int applied;
        migration_src src = {component, migs[i].version, migs[i].name, NULL,
                             pg ? migs[i].postgres : migs[i].sqlite};
        if ((e = apply_one(s, db, pg ? "postgres" : "sqlite", &src, &applied, diag)) != KEEL_OK)
            goto out;
    }
out:
    keel_db_release(db);
    return e;
}
