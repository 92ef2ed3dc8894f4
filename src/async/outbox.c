/*
 * outbox.c - the transactional outbox (keel/outbox.h): keel_outbox rows added in the caller's
 * transaction, and a relay that claims them in order with a lease and publishes them.
 *
 * Claim.  One transaction selects up to `batch` unpublished rows whose lease is free (FOR
 * UPDATE SKIP LOCKED on PostgreSQL), stamps them with a fresh claim token (a UUID), the
 * relay's owner id, attempts + 1 and locked_until_ms, and commits.  Publishing happens
 * outside the transaction.  Marking a row published, or releasing it, is fenced on the claim
 * token: a relay whose lease expired and whose rows another relay re-claimed changes nothing
 * (the other relay publishes them again: at-least-once, same dedup id).
 */
#include "keel_int.h"

#include "async_int.h"

#include <keel/outbox.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define OUTBOX_COMPONENT "keel.async.outbox"
#define OUTBOX_ERROR_MAX 512

/* ================================================================ helpers == */

static int type_ok(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > KEEL_OUTBOX_TYPE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

/* ============================================================== schema == */

static const keel_migration OUTBOX_MIGRATIONS[] = {
    {1, "outbox",
     "CREATE TABLE keel_outbox ("
     " seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
     " payload TEXT NOT NULL, created_at_ms INTEGER NOT NULL, published_at_ms INTEGER,"
     " attempts INTEGER NOT NULL DEFAULT 0, locked_until_ms INTEGER NOT NULL DEFAULT 0,"
     " owner TEXT, claim TEXT, last_error TEXT);"
     "CREATE INDEX keel_outbox_pending ON keel_outbox (seq) WHERE published_at_ms IS NULL;"
     "CREATE INDEX keel_outbox_published ON keel_outbox (published_at_ms);",
     "CREATE TABLE keel_outbox ("
     " seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
     " payload TEXT NOT NULL, created_at_ms BIGINT NOT NULL, published_at_ms BIGINT,"
     " attempts INTEGER NOT NULL DEFAULT 0, locked_until_ms BIGINT NOT NULL DEFAULT 0,"
     " owner TEXT, claim TEXT, last_error TEXT);"
     "CREATE INDEX keel_outbox_pending ON keel_outbox (seq) WHERE published_at_ms IS NULL;"
     "CREATE INDEX keel_outbox_published ON keel_outbox (published_at_ms);"},
};

keel_err keel_outbox_migrate(keel_store *s, keel_diag *diag)
{
    if (s == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_outbox_migrate: store is NULL");
    return keel_store_migrate_component(s, OUTBOX_COMPONENT, OUTBOX_MIGRATIONS,
                                        KEEL_ARRAY_LEN(OUTBOX_MIGRATIONS), diag);
}

/* ================================================================= add == */

keel_err keel_outbox_add(keel_db *db, const char *type, const json_t *payload,
                         char id_out[KEEL_UUID_SIZE], keel_diag *diag)
{
    if (db == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_outbox_add: db is NULL");
    if (!type_ok(type))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "outbox event type must be 1-%d printable ASCII bytes",
                             KEEL_OUTBOX_TYPE_MAX);
    if (keel_db_depth(db) == 0)
        return keel_diag_set(diag, KEEL_ESTATE, 0,
                             "keel_outbox_add needs the caller's open transaction");
    char *text;
    keel_err e = keel__async_json_text(payload, KEEL_OUTBOX_PAYLOAD_MAX, &text);
    if (e == KEEL_ETOOBIG)
        return keel_diag_set(diag, e, 0, "outbox payload larger than %u bytes",
                             (unsigned)KEEL_OUTBOX_PAYLOAD_MAX);
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "outbox payload cannot be serialised as JSON");
    char id[KEEL_UUID_SIZE];
    if ((e = keel_uuid4(id)) != KEEL_OK) {
        keel_free(text);
        return keel_diag_set(diag, e, 0, "no randomness for the outbox id");
    }
    keel__binder b;
    if (keel__bind_prepare(db,
             "INSERT INTO keel_outbox (id, type, payload, created_at_ms, published_at_ms, "
             "attempts, locked_until_ms) VALUES (?, ?, ?, ?, NULL, 0, 0)",
             &b, diag) == KEEL_OK) {
        keel__bind_text(&b, id);
        keel__bind_text(&b, type);
        keel__bind_text(&b, text);
        keel__bind_int(&b, keel_time_wall_ms());
        e = keel__bind_run(&b, NULL, diag);
    } else {
        e = b.err;
    }
    keel_free(text);
    if (e == KEEL_OK && id_out != NULL)
        memcpy(id_out, id, KEEL_UUID_SIZE);
    return e;
}

/* ========================================================= maintenance == */

keel_err keel_outbox_pending(keel_store *s, int64_t *out, keel_diag *diag)
{
    if (s == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_outbox_pending: NULL argument");
    *out = 0;
    keel_db *db;
    keel_err e = keel_db_acquire(s, &db, diag);
    if (e != KEEL_OK)
        return e;
    keel_stmt *st;
    e = keel_db_prepare(db, "SELECT COUNT(*) FROM keel_outbox WHERE published_at_ms IS NULL",
                        &st, diag);
    if (e == KEEL_OK) {
        int rc = keel_stmt_step(st, diag);
        if (rc == 1)
            *out = keel_stmt_int64(st, 0);
        else
            e = rc < 0 ? (keel_err)rc : KEEL_EINTERNAL;
    }
    keel_db_release(db);
    return e;
}

typedef struct purge_tx {
    int64_t before;
    int64_t deleted;
} purge_tx;

static keel_err purge_fn(keel_db *db, void *ud)
{
    purge_tx *t = ud;
    keel__binder b;
    if (keel__bind_prepare(db,
             "DELETE FROM keel_outbox WHERE published_at_ms IS NOT NULL AND "
             "published_at_ms <= ?",
             &b, NULL) != KEEL_OK)
        return b.err;
    keel__bind_int(&b, t->before);
    return keel__bind_run(&b, &t->deleted, NULL);
}

keel_err keel_outbox_purge(keel_store *s, uint64_t older_than_ms, int64_t *deleted,
                           keel_diag *diag)
{
    if (deleted != NULL)
        *deleted = 0;
    if (s == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_outbox_purge: store is NULL");
    purge_tx t = {keel_time_wall_ms() - keel__async_ms(older_than_ms), 0};
    keel_err e = keel_store_tx(s, purge_fn, &t, diag);
    if (e == KEEL_OK && deleted != NULL)
        *deleted = t.deleted;
    return e;
}

/* =============================================================== relay == */

typedef enum relay_state { RELAY_IDLE = 0, RELAY_RUNNING, RELAY_STOPPING, RELAY_STOPPED } relay_state;

struct keel_outbox_relay {
    keel_store *store;
    keel_outbox_publish_fn publish;
    void *ud;
    unsigned batch;
    uint64_t lease_ms, poll_ms, backoff_base_ms, backoff_max_ms;
    char *owner;
    int64_t (*now_ms)(void *ud);
    void *now_ud;
    keel_metric *m_published, *m_failures, *m_pending;
    _Atomic int64_t pending_at_ms; /* when the pending gauge was last counted */

    pthread_mutex_t mu;
    pthread_cond_t wake;
    relay_state state;
    atomic_int stopping;
    bool thread_started, thread_done;
    pthread_t thread;
};

typedef struct row {
    int64_t seq;
    char id[KEEL_UUID_SIZE];
    char *type;
    char *payload;
} row;

static int64_t relay_now(const keel_outbox_relay *r)
{
    return r->now_ms != NULL ? r->now_ms(r->now_ud) : keel_time_wall_ms();
}

void keel_outbox_relay_config_default(keel_outbox_relay_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->batch = 100;
    cfg->lease_ms = 30000;
    cfg->poll_ms = 500;
    cfg->backoff_base_ms = 500;
    cfg->backoff_max_ms = 30000;
}

static void relay_free(keel_outbox_relay *r)
{
    keel_free(r->owner);
    keel_free(r);
}

keel_err keel_outbox_relay_create(keel_outbox_relay **out, const keel_outbox_relay_config *cfg,
                                  keel_diag *diag)
{
    if (out == NULL || cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_outbox_relay_create: NULL argument");
    *out = NULL;
    if (cfg->size < sizeof(keel_outbox_relay_config))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_outbox_relay_config: size not set");
    if (cfg->store == NULL || cfg->publish == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "keel_outbox_relay_config: store and publish are required");
    if (cfg->batch == 0 || cfg->batch > KEEL_OUTBOX_BATCH_MAX || cfg->lease_ms < 20 ||
        cfg->poll_ms == 0 || cfg->backoff_max_ms < cfg->backoff_base_ms)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "keel_outbox_relay_config: batch 1-%d, lease_ms >= 20, poll_ms > 0 "
                             "and backoff_max_ms >= backoff_base_ms required",
                             KEEL_OUTBOX_BATCH_MAX);
    if (cfg->owner != NULL && (cfg->owner[0] == '\0' || strlen(cfg->owner) > 200))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_outbox_relay_config: bad owner");
    keel_err e = keel_outbox_migrate(cfg->store, diag);
    if (e != KEEL_OK)
        return e;
    keel_outbox_relay *r = keel__new(keel_outbox_relay);
    if (r == NULL)
        return KEEL_ENOMEM;
    r->store = cfg->store;
    r->publish = cfg->publish;
    r->ud = cfg->ud;
    r->batch = cfg->batch;
    r->lease_ms = cfg->lease_ms;
    r->poll_ms = cfg->poll_ms;
    r->backoff_base_ms = cfg->backoff_base_ms;
    r->backoff_max_ms = cfg->backoff_max_ms;
    r->now_ms = cfg->now_ms;
    r->now_ud = cfg->now_ud;
    if (cfg->owner != NULL) {
        r->owner = keel_strdup(cfg->owner);
        e = r->owner == NULL ? KEEL_ENOMEM : KEEL_OK;
    } else {
        e = keel__async_owner(&r->owner);
    }
    if (e == KEEL_OK && cfg->metrics != NULL) {
        e = keel_metrics_counter(cfg->metrics, "outbox_published_total",
                                 "Outbox events handed to the publisher", NULL, &r->m_published);
        if (e == KEEL_OK)
            e = keel_metrics_counter(cfg->metrics, "outbox_publish_failures_total",
                                     "Outbox publish attempts that failed", NULL,
                                     &r->m_failures);
        if (e == KEEL_OK)
            e = keel_metrics_gauge(cfg->metrics, "outbox_pending",
                                   "Outbox events not yet published", NULL, &r->m_pending);
        if (e != KEEL_OK)
            keel_diag_set(diag, e, 0, "outbox metrics cannot be registered");
    }
    if (e != KEEL_OK) {
        relay_free(r);
        return e;
    }
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (rc == 0 && (rc = pthread_mutex_init(&r->mu, NULL)) == 0 &&
            (rc = pthread_cond_init(&r->wake, &ca)) != 0)
            pthread_mutex_destroy(&r->mu);
        pthread_condattr_destroy(&ca);
    }
    if (rc != 0) {
        relay_free(r);
        return KEEL_ENOMEM;
    }
    atomic_init(&r->stopping, 0);
    *out = r;
    return KEEL_OK;
}

/* ---------------------------------------------------------------- claim -- */

typedef struct claim_tx {
    keel_outbox_relay *r;
    int64_t now;
    char claim[KEEL_UUID_SIZE];
    row *rows; /* r->batch entries */
    size_t n;
} claim_tx;

static void rows_clear(row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        keel_free(rows[i].type);
        keel_free(rows[i].payload);
        rows[i].type = NULL;
        rows[i].payload = NULL;
    }
}

static keel_err claim_fn(keel_db *db, void *ud)
{
    claim_tx *t = ud;
    rows_clear(t->rows, t->n);
    t->n = 0;
    keel__binder b;
    if (keel__bind_prepare(db,
             "SELECT seq, id, type, payload FROM keel_outbox WHERE published_at_ms IS NULL "
             "AND locked_until_ms <= ? ORDER BY seq LIMIT ? {skip_locked}",
             &b, NULL) != KEEL_OK)
        return b.err;
    keel__bind_int(&b, t->now);
    keel__bind_int(&b, (int64_t)t->r->batch);
    if (b.err != KEEL_OK)
        return b.err;
    int rc = 0;
    while (t->n < t->r->batch && (rc = keel_stmt_step(b.st, NULL)) == 1) {
        row *w = &t->rows[t->n];
        memset(w, 0, sizeof(*w));
        w->seq = keel_stmt_int64(b.st, 0);
        const char *id = keel_stmt_text(b.st, 1, NULL);
        const char *type = keel_stmt_text(b.st, 2, NULL);
        const char *payload = keel_stmt_text(b.st, 3, NULL);
        if (id == NULL || strlen(id) != KEEL_UUID_SIZE - 1)
            return KEEL_EPARSE;
        memcpy(w->id, id, KEEL_UUID_SIZE);
        w->type = keel_strdup(type != NULL ? type : "");
        w->payload = keel_strdup(payload != NULL ? payload : "null");
        t->n++;
        if (w->type == NULL || w->payload == NULL)
            return KEEL_ENOMEM;
    }
    if (t->n < t->r->batch && rc < 0)
        return (keel_err)rc;
    int64_t until = t->now + keel__async_ms(t->r->lease_ms);
    for (size_t i = 0; i < t->n; i++) {
        if (keel__bind_prepare(db,
                 "UPDATE keel_outbox SET owner = ?, claim = ?, locked_until_ms = ?, "
                 "attempts = attempts + 1 WHERE seq = ?",
                 &b, NULL) != KEEL_OK)
            return b.err;
        keel__bind_text(&b, t->r->owner);
        keel__bind_text(&b, t->claim);
        keel__bind_int(&b, until);
        keel__bind_int(&b, t->rows[i].seq);
        keel_err e = keel__bind_run(&b, NULL, NULL);
        if (e != KEEL_OK)
            return e;
    }
    return KEEL_OK;
}

/* ------------------------------------------------------------- settle -- */

typedef struct settle_tx {
    const char *claim;
    int64_t seq;       /* first row */
    int64_t seq_last;  /* release: last row of the range */
    int published;     /* 1: mark published; 0: release */
    const char *error; /* release of a failed row: recorded */
    int64_t now;
    int64_t changes;
} settle_tx;

static keel_err settle_fn(keel_db *db, void *ud)
{
    settle_tx *t = ud;
    keel__binder b;
    if (t->published) {
        if (keel__bind_prepare(db,
                 "UPDATE keel_outbox SET published_at_ms = ?, owner = NULL, claim = NULL, "
                 "locked_until_ms = 0, last_error = NULL WHERE seq = ? AND claim = ? AND "
                 "published_at_ms IS NULL",
                 &b, NULL) != KEEL_OK)
            return b.err;
        keel__bind_int(&b, t->now);
        keel__bind_int(&b, t->seq);
        keel__bind_text(&b, t->claim);
        return keel__bind_run(&b, &t->changes, NULL);
    }
    if (t->error != NULL) {
        /* The failed row keeps its attempt and records why. */
        if (keel__bind_prepare(db,
                 "UPDATE keel_outbox SET owner = NULL, claim = NULL, locked_until_ms = 0, "
                 "last_error = ? WHERE seq = ? AND claim = ?",
                 &b, NULL) != KEEL_OK)
            return b.err;
        keel__bind_text(&b, t->error);
        keel__bind_int(&b, t->seq);
        keel__bind_text(&b, t->claim);
        keel_err e = keel__bind_run(&b, &t->changes, NULL);
        if (e != KEEL_OK || t->seq_last <= t->seq)
            return e;
    }
    /* Rows of the batch never attempted: give the claim (and the attempt) back. */
    if (keel__bind_prepare(db,
             "UPDATE keel_outbox SET owner = NULL, claim = NULL, locked_until_ms = 0, "
             "attempts = attempts - 1 WHERE claim = ? AND seq > ? AND seq <= ?",
             &b, NULL) != KEEL_OK)
        return b.err;
    keel__bind_text(&b, t->claim);
    keel__bind_int(&b, t->error != NULL ? t->seq : t->seq - 1);
    keel__bind_int(&b, t->seq_last);
    return keel__bind_run(&b, NULL, NULL);
}

static keel_err settle(keel_outbox_relay *r, settle_tx *t)
{
    keel_err e = KEEL_EIO;
    for (int i = 0; i < 3 && e != KEEL_OK; i++) {
        t->changes = 0;
        t->now = relay_now(r);
        e = keel_store_tx(r->store, settle_fn, t, NULL);
        if (e == KEEL_EINVAL || e == KEEL_EPARSE || e == KEEL_ENOMEM)
            break;
    }
    return e;
}

keel_err keel_outbox_relay_run_once(keel_outbox_relay *r, size_t *published, keel_diag *diag)
{
    if (published != NULL)
        *published = 0;
    if (r == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_outbox_relay_run_once: relay is NULL");
    claim_tx t;
    memset(&t, 0, sizeof(t));
    t.r = r;
    t.now = relay_now(r);
    keel_err e = keel_uuid4(t.claim);
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "no randomness for the outbox claim");
    t.rows = keel_calloc(r->batch, sizeof(row));
    if (t.rows == NULL)
        return KEEL_ENOMEM;
    e = keel_store_tx(r->store, claim_fn, &t, diag);
    if (e != KEEL_OK) {
        rows_clear(t.rows, t.n);
        keel_free(t.rows);
        return e;
    }
    size_t done = 0;
    for (size_t i = 0; i < t.n; i++) {
        row *w = &t.rows[i];
        if (atomic_load(&r->stopping)) {
            /* Shutting down: release what we have not attempted. */
            settle_tx s = {t.claim, w->seq, t.rows[t.n - 1].seq, 0, NULL, 0, 0};
            (void)settle(r, &s);
            break;
        }
        json_t *payload = json_loads(w->payload, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        keel_err pe;
        char errbuf[OUTBOX_ERROR_MAX];
        if (payload == NULL) {
            pe = KEEL_EPARSE;
            snprintf(errbuf, sizeof(errbuf), "KEEL_EPARSE: stored payload is not JSON");
        } else {
            pe = r->publish(w->type, w->id, payload, r->ud);
            json_decref(payload);
            snprintf(errbuf, sizeof(errbuf), "%s: publish failed: %s", keel_err_name(pe),
                     keel_strerror(pe));
        }
        if (pe != KEEL_OK) {
            if (r->m_failures != NULL)
                (void)keel_metric_add(r->m_failures, NULL, 1.0);
            settle_tx s = {t.claim, w->seq, t.rows[t.n - 1].seq, 0, errbuf, 0, 0};
            (void)settle(r, &s);
            e = keel_diag_set(diag, pe, 0, "outbox event %s (%.128s): %s", w->id, w->type,
                              errbuf);
            break;
        }
        settle_tx s = {t.claim, w->seq, w->seq, 1, NULL, 0, 0};
        /* Not marked (store error or claim lost): the row is published again later, with
         * the same id - the at-least-once contract. */
        if (settle(r, &s) == KEEL_OK && s.changes == 1) {
            done++;
            if (r->m_published != NULL)
                (void)keel_metric_add(r->m_published, NULL, 1.0);
        }
    }
    rows_clear(t.rows, t.n);
    keel_free(t.rows);
    if (published != NULL)
        *published = done;
    if (r->m_pending != NULL) {
        /* The gauge is a COUNT over the unpublished rows: while a backlog drains in full
         * batches it is counted at most once per poll interval, not after every batch. */
        int64_t now = relay_now(r);
        if (t.n < r->batch ||
            now - atomic_load(&r->pending_at_ms) >= (int64_t)r->poll_ms) {
            int64_t pending;
            atomic_store(&r->pending_at_ms, now);
            if (keel_outbox_pending(r->store, &pending, NULL) == KEEL_OK)
                (void)keel_metric_set(r->m_pending, NULL, (double)pending);
        }
    }
    return e;
}

/* -------------------------------------------------------------- thread -- */

static void *relay_main(void *arg)
{
    keel_outbox_relay *r = arg;
    unsigned failures = 0;
    while (!atomic_load(&r->stopping)) {
        size_t n = 0;
        keel_err e = keel_outbox_relay_run_once(r, &n, NULL);
        uint64_t wait;
        if (e != KEEL_OK) {
            failures = failures < 63 ? failures + 1 : failures;
            wait = r->backoff_base_ms;
            for (unsigned i = 1; i < failures && wait < r->backoff_max_ms; i++)
                wait *= 2;
            wait = KEEL_MIN(wait, r->backoff_max_ms);
        } else {
            failures = 0;
            if (n == r->batch)
                continue; /* more may be waiting */
            wait = r->poll_ms;
        }
        pthread_mutex_lock(&r->mu);
        struct timespec dl = keel__mono_deadline(wait);
        if (!atomic_load(&r->stopping))
            (void)pthread_cond_timedwait(&r->wake, &r->mu, &dl);
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_lock(&r->mu);
    r->thread_done = true;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

keel_err keel_outbox_relay_start(keel_outbox_relay *r)
{
    if (r == NULL)
        return KEEL_EINVAL;
    if (r->state != RELAY_IDLE)
        return KEEL_ESTATE;
    int rc = keel__thread_start(&r->thread, relay_main, r, "outbox");
    if (rc != 0) {
        r->state = RELAY_STOPPED;
        return KEEL_ENOMEM;
    }
    r->thread_started = true;
    r->state = RELAY_RUNNING;
    return KEEL_OK;
}

void keel_outbox_relay_wake(keel_outbox_relay *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->mu);
}

keel_err keel_outbox_relay_stop(keel_outbox_relay *r, uint64_t timeout_ms)
{
    if (r == NULL)
        return KEEL_EINVAL;
    if (r->state == RELAY_IDLE || r->state == RELAY_STOPPED)
        return KEEL_OK;
    r->state = RELAY_STOPPING;
    atomic_store(&r->stopping, 1);
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->wake);
    struct timespec dl = keel__mono_deadline(timeout_ms);
    while (!r->thread_done) {
        if (timeout_ms == 0) {
            pthread_cond_wait(&r->wake, &r->mu);
        } else if (pthread_cond_timedwait(&r->wake, &r->mu, &dl) == ETIMEDOUT &&
                   !r->thread_done) {
            pthread_mutex_unlock(&r->mu);
            return KEEL_ETIMEOUT;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (r->thread_started) {
        pthread_join(r->thread, NULL);
        r->thread_started = false;
    }
    r->state = RELAY_STOPPED;
    return KEEL_OK;
}

void keel_outbox_relay_destroy(keel_outbox_relay *r)
{
    if (r == NULL)
        return;
    keel_err ignored = keel_outbox_relay_stop(r, 0); /* no limit: always KEEL_OK */
    KEEL_UNUSED(ignored);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->mu);
    relay_free(r);
}
