/* store.c - the front-end of keel/store.h: URL parsing, the connection pool, nested
 * transactions, the per-connection statement cache, the dialect rewrite and the metrics.
 * Engines are reached only through a keel__store_backend (store_int.h). */
#include "keel_int.h"

#include <stdatomic.h>

#include "store_int.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define STMT_CACHE_MAX 64
#define SQL_REWRITE_MAX (1024u * 1024u)

enum { OP_SELECT, OP_INSERT, OP_UPDATE, OP_DELETE, OP_OTHER, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"SELECT", "INSERT", "UPDATE", "DELETE", "OTHER"};

struct keel_stmt {
    keel_db *db;
    void *h;          /* backend statement */
    char *sql;        /* cache key: the portable SQL as given */
    uint64_t used;    /* LRU tick */
    uint64_t t0_ns;   /* start of the running execution */
    int op;           /* OP_* from the first keyword */
    bool running;     /* stepped at least once since the last reset */
};

struct keel_db {
    keel_store *s;
    void *conn;
    unsigned depth;
    bool io_error;    /* the backend reported KEEL_EIO since acquire */
    keel_stmt *cache[STMT_CACHE_MAX];
    size_t ncache;
    uint64_t tick;
    keel_db *next;    /* idle list */
};

struct keel_store {
    const keel__store_backend *be;
    char *target;
    keel_store_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    keel_db *idle;
    unsigned nidle;
    unsigned nopen;   /* connections open (idle + checked out + being opened) */
    unsigned nout;    /* checked out */
    keel_series *g_size, *g_out, *g_over;
    keel_series *h_op[OP_COUNT];
    /* Wall ms of the last write the database refused with an I/O error (disk full,
     * read-only) and no successful write since; 0 = writes are fine.  Readiness reads it. */
    _Atomic int64_t write_failed_ms;
};

/* A write or commit came back: remember a refusal, forget it on success. */
static void note_write(keel_store *s, int rc)
{
    if (rc == KEEL_EIO)
        atomic_store_explicit(&s->write_failed_ms, keel_time_wall_ms(), memory_order_relaxed);
    else if (rc >= 0 && atomic_load_explicit(&s->write_failed_ms, memory_order_relaxed) != 0)
        atomic_store_explicit(&s->write_failed_ms, 0, memory_order_relaxed);
}

void keel_store_config_default(keel_store_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->url = "sqlite:./var/keel.db";
    cfg->pool_size = 8;
    cfg->pool_overflow = 4;
    cfg->checkout_timeout_ms = 5000;
    cfg->busy_timeout_ms = 5000;
    cfg->query_timeout_ms = 0;
    cfg->tx_retries = 3;
    cfg->metrics = NULL;
}

/* ------------------------------------------------------------------ helpers -- */

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* mkdir -p of the directory part of path (mode 0750). */
static keel_err make_parent_dirs(const char *path, keel_diag *diag)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path)
        return KEEL_OK;
    char *dir = keel_strndup(path, (size_t)(slash - path));
    if (dir == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    keel_err rc = KEEL_OK;
    size_t n = strlen(dir);
    for (size_t i = 1; i <= n; i++) {
        if (dir[i] != '/' && dir[i] != '\0')
            continue;
        char saved = dir[i];
        dir[i] = '\0';
        if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
            rc = keel_diag_set(diag, KEEL_EIO, 0, "cannot create directory %s: %s", dir,
                               strerror(errno));
            dir[i] = saved;
            break;
        }
        dir[i] = saved;
    }
    if (rc == KEEL_OK) {
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = keel_diag_set(diag, KEEL_EIO, 0, "cannot create directory %s: not a directory",
                               dir);
    }
    keel_free(dir);
    return rc;
}

/* Operation label from the first keyword (comments and whitespace skipped). */
static int sql_op(const char *sql)
{
    const char *p = sql;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '(')
            p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p != '\0' && *p != '\n')
                p++;
            continue;
        }
        if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            p = e != NULL ? e + 2 : p + strlen(p);
            continue;
        }
        break;
    }
    static const char *const kw[] = {"SELECT", "INSERT", "UPDATE", "DELETE"};
    for (int i = 0; i < 4; i++) {
        size_t n = strlen(kw[i]);
        if (strncasecmp(p, kw[i], n) == 0) {
            char c = p[n];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_'))
                return i;
        }
    }
    return OP_OTHER;
}

static void update_gauges(keel_store *s)
{
    if (s->g_out != NULL)
        keel_series_set(s->g_out, (double)s->nout);
    if (s->g_over != NULL)
        keel_series_set(s->g_over,
                        s->nopen > s->cfg.pool_size ? (double)(s->nopen - s->cfg.pool_size) : 0.0);
}

static keel_err register_metrics(keel_store *s)
{
    keel_metrics *m = s->cfg.metrics;
    if (m == NULL)
        return KEEL_OK;
    char name[96];
    keel_metric *f;
    keel_err rc;
    const char *eng = s->be->name;

    snprintf(name, sizeof(name), "db_%s_poolsize", eng);
    if ((rc = keel_metrics_gauge(m, name, "Configured connection pool size", NULL, &f)) != 0 ||
        (rc = keel_metric_series(f, NULL, &s->g_size)) != 0)
        return rc;
    snprintf(name, sizeof(name), "db_%s_pool_checked_out", eng);
    if ((rc = keel_metrics_gauge(m, name, "Connections currently checked out", NULL, &f)) != 0 ||
        (rc = keel_metric_series(f, NULL, &s->g_out)) != 0)
        return rc;
    snprintf(name, sizeof(name), "db_%s_pool_overflow", eng);
    if ((rc = keel_metrics_gauge(m, name, "Connections open beyond the pool size", NULL, &f)) !=
            0 ||
        (rc = keel_metric_series(f, NULL, &s->g_over)) != 0)
        return rc;
    snprintf(name, sizeof(name), "db_%s_query_duration_seconds", eng);
    static const char *const labels[] = {"operation", NULL};
    if ((rc = keel_metrics_histogram(m, name, "Duration of one statement execution", labels,
                                     NULL, 0, &f)) != 0)
        return rc;
    for (int i = 0; i < OP_COUNT; i++) {
        const char *vals[] = {op_names[i], NULL};
        if ((rc = keel_metric_series(f, vals, &s->h_op[i])) != 0)
            return rc;
    }
    keel_series_set(s->g_size, (double)s->cfg.pool_size);
    update_gauges(s);
    return KEEL_OK;
}

/* ------------------------------------------------------------------ open/close -- */

keel_err keel_store_open(keel_store **out, const keel_store_config *cfg, keel_diag *diag)
{
    if (out == NULL || cfg == NULL || cfg->size < sizeof(keel_store_config))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_store_open: invalid arguments");
    *out = NULL;
    const char *url = cfg->url;
    if (url == NULL || *url == '\0')
        return keel_diag_set(diag, KEEL_EINVAL, 0, "DATABASE_URL: not set");

    const keel__store_backend *be = NULL;
    const char *target = NULL;
    bool memory = false;
    if (has_prefix(url, "sqlite:")) {
        be = &keel__store_sqlite;
        target = url + strlen("sqlite:");
        if (target[0] == '/' && target[1] == '/') /* sqlite:///abs/path, sqlite://rel/path */
            target += 2;
        if (*target == '\0')
            return keel_diag_set(diag, KEEL_EINVAL, 0, "DATABASE_URL: missing SQLite path");
        memory = strcmp(target, ":memory:") == 0;
    } else if (has_prefix(url, "postgres://") || has_prefix(url, "postgresql://")) {
        be = &keel__store_pg;
        target = url; /* libpq parses the whole URI */
    } else {
        /* Name only the scheme: the rest of a URL may hold a password. */
        const char *colon = strchr(url, ':');
        size_t n = colon != NULL ? (size_t)(colon - url) : 0;
        if (n > 32)
            n = 32;
        return keel_diag_set(diag, KEEL_EINVAL, 0, "DATABASE_URL: unsupported scheme '%.*s'",
                             (int)n, url);
    }

    keel_store *s = keel__new(keel_store);
    if (s == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    s->be = be;
    s->cfg = *cfg;
    s->cfg.size = sizeof(s->cfg);
    s->cfg.url = NULL; /* not kept: it may hold credentials */
    if (s->cfg.pool_size == 0)
        s->cfg.pool_size = 1;
    if (memory) { /* a memory database exists per connection */
        s->cfg.pool_size = 1;
        s->cfg.pool_overflow = 0;
    }
    s->target = keel_strdup(target);
    if (s->target == NULL) {
        keel_free(s);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    }
    pthread_condattr_t ca;
    bool mu_ok = false, cv_ok = false;
    if (pthread_mutex_init(&s->mu, NULL) == 0) {
        mu_ok = true;
        if (pthread_condattr_init(&ca) == 0) {
            if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                pthread_cond_init(&s->cv, &ca) == 0)
                cv_ok = true;
            pthread_condattr_destroy(&ca);
        }
    }
    keel_err rc = KEEL_OK;
    if (!cv_ok)
        rc = keel_diag_set(diag, KEEL_ENOMEM, 0, "cannot create pool lock");
    if (rc == KEEL_OK && !memory && be == &keel__store_sqlite)
        rc = make_parent_dirs(s->target, diag);
    if (rc == KEEL_OK) {
        rc = register_metrics(s);
        if (rc != KEEL_OK)
            keel_diag_set(diag, rc, 0, "cannot register db_%s_* metrics", be->name);
    }
    /* Open the first connection now so a bad path fails at startup, not on first use. */
    if (rc == KEEL_OK) {
        void *conn = NULL;
        rc = be->connect(s->target, &s->cfg, &conn, diag);
        if (rc == KEEL_OK) {
            keel_db *db = keel__new(keel_db);
            if (db == NULL) {
                be->disconnect(conn);
                rc = keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
            } else {
                db->s = s;
                db->conn = conn;
                s->idle = db;
                s->nidle = 1;
                s->nopen = 1;
                update_gauges(s);
            }
        }
    }
    if (rc != KEEL_OK) {
        if (cv_ok)
            pthread_cond_destroy(&s->cv);
        if (mu_ok)
            pthread_mutex_destroy(&s->mu);
        keel_free(s->target);
        keel_free(s);
        return rc;
    }
    *out = s;
    return KEEL_OK;
}

static void cache_clear(keel_db *db)
{
    for (size_t i = 0; i < db->ncache; i++) {
        db->s->be->finalize(db->cache[i]->h);
        keel_free(db->cache[i]->sql);
        keel_free(db->cache[i]);
    }
    db->ncache = 0;
}

static void conn_close(keel_db *db)
{
    cache_clear(db);
    db->s->be->disconnect(db->conn);
    keel_free(db);
}

void keel_store_close(keel_store *s)
{
    if (s == NULL)
        return;
    KEEL_ASSERT(s->nout == 0);
    keel_db *db = s->idle;
    while (db != NULL) {
        keel_db *next = db->next;
        conn_close(db);
        db = next;
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    keel_free(s->target);
    keel_free(s);
}

keel_store_engine keel_store_engine_of(const keel_store *s)
{
    return s != NULL ? s->be->engine : KEEL_STORE_SQLITE;
}

/* ------------------------------------------------------------------------ pool -- */

keel_err keel_db_acquire(keel_store *s, keel_db **out, keel_diag *diag)
{
    if (s == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_db_acquire: invalid arguments");
    *out = NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    uint64_t ns = (uint64_t)deadline.tv_nsec + (uint64_t)s->cfg.checkout_timeout_ms * 1000000u;
    deadline.tv_sec += (time_t)(ns / 1000000000u);
    deadline.tv_nsec = (long)(ns % 1000000000u);

    unsigned limit = s->cfg.pool_size + s->cfg.pool_overflow;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->idle != NULL) {
            keel_db *db = s->idle;
            s->idle = db->next;
            s->nidle--;
            db->next = NULL;
            s->nout++;
            update_gauges(s);
            pthread_mutex_unlock(&s->mu);
            *out = db;
            return KEEL_OK;
        }
        if (s->nopen < limit) {
            s->nopen++;
            s->nout++;
            update_gauges(s);
            pthread_mutex_unlock(&s->mu);
            keel_err rc;
            void *conn = NULL;
            keel_db *db = keel__new(keel_db);
            if (db == NULL)
                rc = keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
            else
                rc = s->be->connect(s->target, &s->cfg, &conn, diag);
            if (rc != KEEL_OK) {
                keel_free(db);
                pthread_mutex_lock(&s->mu);
                s->nopen--;
                s->nout--;
                update_gauges(s);
                pthread_cond_signal(&s->cv);
                pthread_mutex_unlock(&s->mu);
                return rc;
            }
            db->s = s;
            db->conn = conn;
            *out = db;
            return KEEL_OK;
        }
        int w = pthread_cond_timedwait(&s->cv, &s->mu, &deadline);
        if (w == ETIMEDOUT && s->idle == NULL && s->nopen >= limit) {
            pthread_mutex_unlock(&s->mu);
            return keel_diag_set(diag, KEEL_ETIMEOUT, 0,
                                 "no database connection free after %u ms (pool %u + %u)",
                                 (unsigned)s->cfg.checkout_timeout_ms, s->cfg.pool_size,
                                 s->cfg.pool_overflow);
        }
    }
}

void keel_db_release(keel_db *db)
{
    if (db == NULL)
        return;
    keel_store *s = db->s;
    const keel__store_backend *be = s->be;
    for (size_t i = 0; i < db->ncache; i++) {
        be->reset(db->cache[i]->h);
        db->cache[i]->running = false;
    }
    if (db->depth > 0) {
        if (be->exec(db->conn, "ROLLBACK", NULL) == KEEL_EIO)
            db->io_error = true;
        db->depth = 0;
    }
    bool drop = false;
    if (db->io_error) {
        drop = be->ping(db->conn, NULL) != KEEL_OK;
        db->io_error = false;
    }
    pthread_mutex_lock(&s->mu);
    s->nout--;
    if (drop || s->nidle >= s->cfg.pool_size) {
        s->nopen--;
        update_gauges(s);
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        conn_close(db);
        return;
    }
    db->next = s->idle;
    s->idle = db;
    s->nidle++;
    update_gauges(s);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static keel_err db_exec_raw(keel_db *db, const char *sql, keel_diag *diag);

/* After a refused write, readiness asks the database to take one: a one-row table written in
 * a transaction.  Success clears the refusal (the disk has room again, the database is
 * writable again); failure keeps the instance out of rotation. */
static keel_err write_probe(keel_db *db, keel_diag *d)
{
    keel_err rc = db_exec_raw(db,
                              "CREATE TABLE IF NOT EXISTS keel_health (id INTEGER PRIMARY KEY, "
                              "at_ms BIGINT NOT NULL)",
                              d);
    if (rc != KEEL_OK || (rc = keel_db_begin(db)) != KEEL_OK)
        return rc;
    keel_stmt *st;
    if ((rc = keel_db_prepare(db,
                              "INSERT INTO keel_health (id, at_ms) VALUES (1, ?) "
                              "ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
                              &st, d)) == KEEL_OK &&
        (rc = keel_stmt_bind_int64(st, 1, keel_time_wall_ms())) == KEEL_OK) {
        int r;
        while ((r = keel_stmt_step(st, d)) == 1) {
        }
        rc = r < 0 ? (keel_err)r : KEEL_OK;
    }
    if (rc == KEEL_OK)
        rc = keel_db_commit(db);
    if (rc != KEEL_OK)
        (void)keel_db_rollback(db);
    return rc;
}

keel_err keel_store_ping(void *store, char *detail, size_t detail_len)
{
    keel_store *s = store;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_db *db = NULL;
    int writes_refused = 0;
    keel_err rc = keel_db_acquire(s, &db, &d);
    if (rc == KEEL_OK) {
        rc = s->be->ping(db->conn, &d);
        if (rc == KEEL_EIO)
            db->io_error = true;
        if (rc == KEEL_OK &&
            atomic_load_explicit(&s->write_failed_ms, memory_order_relaxed) != 0) {
            rc = write_probe(db, &d);
            if (rc != KEEL_OK) {
                writes_refused = 1;
                rc = KEEL_EIO;
            }
        }
        keel_db_release(db);
    }
    if (detail != NULL && detail_len > 0) {
        if (writes_refused)
            snprintf(detail, detail_len, "database refuses writes (disk full or read-only)");
        else
            snprintf(detail, detail_len, "%s", rc == KEEL_OK ? "ok" : d.msg);
    }
    return rc;
}

/* ---------------------------------------------------------------- transactions -- */

static keel_err db_exec_raw(keel_db *db, const char *sql, keel_diag *diag)
{
    keel_err rc = db->s->be->exec(db->conn, sql, diag);
    if (rc == KEEL_EIO)
        db->io_error = true;
    return rc;
}

keel_err keel_db_begin(keel_db *db)
{
    if (db == NULL)
        return KEEL_EINVAL;
    char sql[48];
    if (db->depth == 0)
        snprintf(sql, sizeof(sql), "%s",
                 db->s->be->engine == KEEL_STORE_SQLITE ? "BEGIN IMMEDIATE" : "BEGIN");
    else
        snprintf(sql, sizeof(sql), "SAVEPOINT keel_sp_%u", db->depth);
    keel_err rc = db_exec_raw(db, sql, NULL);
    if (rc == KEEL_OK)
        db->depth++;
    return rc;
}

keel_err keel_db_commit(keel_db *db)
{
    if (db == NULL)
        return KEEL_EINVAL;
    if (db->depth == 0)
        return KEEL_ESTATE;
    char sql[48];
    if (db->depth == 1)
        snprintf(sql, sizeof(sql), "COMMIT");
    else
        snprintf(sql, sizeof(sql), "RELEASE keel_sp_%u", db->depth - 1);
    keel_err rc = db_exec_raw(db, sql, NULL);
    if (db->depth == 1)
        note_write(db->s, rc);
    if (rc == KEEL_OK)
        db->depth--;
    return rc;
}

keel_err keel_db_rollback(keel_db *db)
{
    if (db == NULL)
        return KEEL_EINVAL;
    if (db->depth == 0)
        return KEEL_ESTATE;
    char sql[80];
    if (db->depth == 1)
        snprintf(sql, sizeof(sql), "ROLLBACK");
    else
        snprintf(sql, sizeof(sql), "ROLLBACK TO keel_sp_%u; RELEASE keel_sp_%u", db->depth - 1,
                 db->depth - 1);
    keel_err rc = db_exec_raw(db, sql, NULL);
    /* The level is gone either way: an engine that already aborted the transaction
     * reports an error here, and the caller cannot do better than forget it. */
    db->depth--;
    return rc;
}

unsigned keel_db_depth(const keel_db *db)
{
    return db != NULL ? db->depth : 0;
}

keel_err keel_db_exec(keel_db *db, const char *sql, keel_diag *diag)
{
    if (db == NULL || sql == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_db_exec: invalid arguments");
    return db_exec_raw(db, sql, diag);
}

static void backoff_sleep(void)
{
    unsigned char r = 0;
    if (keel_random_bytes(&r, 1) != KEEL_OK)
        r = 128;
    long ms = 1 + (long)(r % 20u);
    struct timespec ts = {0, ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

keel_err keel_store_tx(keel_store *s, keel_tx_fn fn, void *ud, keel_diag *diag)
{
    if (s == NULL || fn == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_store_tx: invalid arguments");
    for (unsigned attempt = 0;; attempt++) {
        keel_db *db = NULL;
        keel_err rc = keel_db_acquire(s, &db, diag);
        if (rc != KEEL_OK)
            return rc;
        rc = keel_db_begin(db);
        if (rc != KEEL_OK) {
            keel_diag_set(diag, rc, 0, "cannot begin transaction: %s", keel_strerror(rc));
        } else {
            rc = fn(db, ud);
            if (rc == KEEL_OK) {
                rc = keel_db_commit(db);
                if (rc != KEEL_OK)
                    keel_diag_set(diag, rc, 0, "cannot commit transaction: %s",
                                  keel_strerror(rc));
            }
            if (rc != KEEL_OK) {
                while (db->depth > 0)
                    (void)keel_db_rollback(db);
            }
        }
        keel_db_release(db);
        if (rc != KEEL_EBUSY || attempt >= s->cfg.tx_retries)
            return rc;
        backoff_sleep();
    }
}

/* ------------------------------------------------------------------ statements -- */

keel_err keel_db_prepare(keel_db *db, const char *sql, keel_stmt **out, keel_diag *diag)
{
    if (db == NULL || sql == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_db_prepare: invalid arguments");
    *out = NULL;
    const keel__store_backend *be = db->s->be;
    for (size_t i = 0; i < db->ncache; i++) {
        keel_stmt *st = db->cache[i];
        if (strcmp(st->sql, sql) == 0) {
            be->reset(st->h);
            st->running = false;
            st->used = ++db->tick;
            *out = st;
            return KEEL_OK;
        }
    }

    keel_buf b;
    keel_buf_init(&b, SQL_REWRITE_MAX);
    int nparams = 0;
    keel_err rc = keel_store_dialect_sql(be->engine, sql, &b, &nparams, diag);
    if (rc != KEEL_OK) {
        keel_buf_cleanup(&b);
        return rc;
    }
    keel_stmt *st = keel__new(keel_stmt);
    char *key = keel_strdup(sql);
    if (st == NULL || key == NULL) {
        keel_free(st);
        keel_free(key);
        keel_buf_cleanup(&b);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    }
    void *h = NULL;
    rc = be->prepare(db->conn, b.ptr != NULL ? b.ptr : "", &h, diag);
    keel_buf_cleanup(&b);
    if (rc != KEEL_OK) {
        if (rc == KEEL_EIO)
            db->io_error = true;
        keel_free(st);
        keel_free(key);
        return rc;
    }
    if (db->ncache == STMT_CACHE_MAX) { /* evict the least recently prepared */
        size_t lru = 0;
        for (size_t i = 1; i < db->ncache; i++)
            if (db->cache[i]->used < db->cache[lru]->used)
                lru = i;
        keel_stmt *old = db->cache[lru];
        be->finalize(old->h);
        keel_free(old->sql);
        keel_free(old);
        db->cache[lru] = db->cache[--db->ncache];
    }
    st->db = db;
    st->h = h;
    st->sql = key;
    st->op = sql_op(sql);
    st->used = ++db->tick;
    db->cache[db->ncache++] = st;
    *out = st;
    return KEEL_OK;
}

keel_err keel_stmt_bind_int64(keel_stmt *st, int idx, int64_t v)
{
    if (st == NULL)
        return KEEL_EINVAL;
    return st->db->s->be->bind_int64(st->h, idx, v);
}

keel_err keel_stmt_bind_double(keel_stmt *st, int idx, double v)
{
    if (st == NULL)
        return KEEL_EINVAL;
    return st->db->s->be->bind_double(st->h, idx, v);
}

keel_err keel_stmt_bind_text(keel_stmt *st, int idx, const char *v, size_t len)
{
    if (st == NULL)
        return KEEL_EINVAL;
    if (v != NULL && len == SIZE_MAX)
        len = strlen(v);
    return st->db->s->be->bind_text(st->h, idx, v, len);
}

keel_err keel_stmt_bind_blob(keel_stmt *st, int idx, const void *v, size_t len)
{
    if (st == NULL || (v == NULL && len > 0))
        return KEEL_EINVAL;
    return st->db->s->be->bind_blob(st->h, idx, v, len);
}

keel_err keel_stmt_bind_null(keel_stmt *st, int idx)
{
    if (st == NULL)
        return KEEL_EINVAL;
    return st->db->s->be->bind_null(st->h, idx);
}

int keel_stmt_step(keel_stmt *st, keel_diag *diag)
{
    if (st == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_stmt_step: NULL statement");
    if (!st->running) {
        st->running = true;
        st->t0_ns = keel_time_mono_ns();
    }
    int rc = st->db->s->be->step(st->h, diag);
    if (rc <= 0) {
        keel_series *h = st->db->s->h_op[st->op];
        if (h != NULL)
            keel_series_observe(h, (double)(keel_time_mono_ns() - st->t0_ns) / 1e9);
        st->running = false;
        if (rc == KEEL_EIO)
            st->db->io_error = true;
        /* Inside a transaction the commit decides; in autocommit the statement does. */
        if (st->op != OP_SELECT && (rc == KEEL_EIO || st->db->depth == 0))
            note_write(st->db->s, rc);
    }
    return rc;
}

int64_t keel_stmt_changes(const keel_stmt *st)
{
    return st != NULL ? st->db->s->be->changes(st->h) : 0;
}

int keel_stmt_columns(const keel_stmt *st)
{
    return st != NULL ? st->db->s->be->columns(st->h) : 0;
}

int keel_stmt_is_null(const keel_stmt *st, int col)
{
    return st != NULL ? st->db->s->be->is_null(st->h, col) : 1;
}

int64_t keel_stmt_int64(const keel_stmt *st, int col)
{
    return st != NULL ? st->db->s->be->col_int64(st->h, col) : 0;
}

double keel_stmt_double(const keel_stmt *st, int col)
{
    return st != NULL ? st->db->s->be->col_double(st->h, col) : 0.0;
}

const char *keel_stmt_text(const keel_stmt *st, int col, size_t *len)
{
    if (st == NULL) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    return st->db->s->be->col_text(st->h, col, len);
}

const void *keel_stmt_blob(const keel_stmt *st, int col, size_t *len)
{
    if (st == NULL) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    return st->db->s->be->col_blob(st->h, col, len);
}
