/* webhook_dedup.c - "is this the first delivery of event X?" behind one small vtable, with
 * memory, SQL (keel_store) and Redis backends (keel/webhook.h). */
#include "keel_int.h"

#include <pthread.h>
#include <stdio.h>

#include <keel/webhook.h>

#define MEMORY_MAX_LIMIT (1u << 24)
#define RETENTION_MAX ((uint64_t)INT64_MAX / 2u)
#define REDIS_PREFIX_MAX 128u
#define REDIS_PREFIX_DEFAULT "keel:webhook:"

struct keel_webhook_dedup {
    const keel_webhook_dedup_ops *ops;
    void *self;
    uint64_t retention_ms;
    int64_t (*now_ms)(void *ud);
    void *clock_ud;
};

void keel_webhook_dedup_config_default(keel_webhook_dedup_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->retention_ms = KEEL_WEBHOOK_RETENTION_DEFAULT_MS;
    cfg->max_entries = KEEL_WEBHOOK_MEMORY_MAX_DEFAULT;
    cfg->redis_prefix = REDIS_PREFIX_DEFAULT;
}

static int config_ok(const keel_webhook_dedup_config *cfg)
{
    return cfg != NULL && cfg->size >= sizeof(keel_webhook_dedup_config) &&
           cfg->retention_ms > 0 && cfg->retention_ms <= RETENTION_MAX;
}

static int64_t now_of(const keel_webhook_dedup *d)
{
    return d->now_ms ? d->now_ms(d->clock_ud) : keel_time_wall_ms();
}

/* now + ttl, saturating. */
static int64_t expiry(int64_t now, uint64_t ttl)
{
    if (now > 0 && (uint64_t)now > (uint64_t)INT64_MAX - ttl)
        return INT64_MAX;
    return now + (int64_t)ttl;
}

keel_err keel_webhook_dedup_create(keel_webhook_dedup **out, const keel_webhook_dedup_ops *ops,
                                   void *self, const keel_webhook_dedup_config *cfg)
{
    if (out != NULL)
        *out = NULL;
    keel_err e = KEEL_OK;
    if (out == NULL || ops == NULL || ops->is_first == NULL || ops->forget == NULL ||
        ops->purge == NULL || ops->destroy == NULL || !config_ok(cfg))
        e = KEEL_EINVAL;
    keel_webhook_dedup *d = e == KEEL_OK ? keel__new(keel_webhook_dedup) : NULL;
    if (e == KEEL_OK && d == NULL)
        e = KEEL_ENOMEM;
    if (e != KEEL_OK) {
        if (ops != NULL && ops->destroy != NULL && self != NULL)
            ops->destroy(self);
        return e;
    }
    d->ops = ops;
    d->self = self;
    d->retention_ms = cfg->retention_ms;
    d->now_ms = cfg->now_ms;
    d->clock_ud = cfg->clock_ud;
    *out = d;
    return KEEL_OK;
}

int keel_webhook_is_first_delivery(keel_webhook_dedup *d, const char *event_id, keel_diag *diag)
{
    if (d == NULL || event_id == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_webhook_is_first_delivery: NULL argument");
    size_t len = strnlen(event_id, KEEL_WEBHOOK_EVENT_ID_MAX + 1);
    if (!keel_webhook_event_id_valid(event_id, len))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "event id must be 1-%u bytes of printable ASCII without spaces",
                             KEEL_WEBHOOK_EVENT_ID_MAX);
    return d->ops->is_first(d->self, event_id, len, now_of(d), d->retention_ms, diag);
}

keel_err keel_webhook_dedup_forget(keel_webhook_dedup *d, const char *event_id, keel_diag *diag)
{
    if (d == NULL || event_id == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_webhook_dedup_forget: NULL argument");
    size_t len = strnlen(event_id, KEEL_WEBHOOK_EVENT_ID_MAX + 1);
    if (!keel_webhook_event_id_valid(event_id, len))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "event id must be 1-%u bytes of printable ASCII without spaces",
                             KEEL_WEBHOOK_EVENT_ID_MAX);
    return d->ops->forget(d->self, event_id, len, diag);
}

keel_err keel_webhook_dedup_purge(keel_webhook_dedup *d, uint64_t *removed, keel_diag *diag)
{
    uint64_t n = 0;
    if (removed != NULL)
        *removed = 0;
    if (d == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_webhook_dedup_purge: NULL argument");
    keel_err e = d->ops->purge(d->self, now_of(d), &n, diag);
    if (removed != NULL)
        *removed = n;
    return e;
}

void keel_webhook_dedup_destroy(keel_webhook_dedup *d)
{
    if (d == NULL)
        return;
    d->ops->destroy(d->self);
    keel_free(d);
}

/* ----------------------------------------------------------------- memory -- */

/* Entries live in a ring in insertion order (which is expiry order while the clock moves
 * forward and the TTL is fixed), indexed by a chained hash table.  Expired entries are
 * dropped from the head of the ring; a full ring drops its oldest entry.  A forgotten entry
 * is unlinked from the hash table at once and its ring slot freed when it reaches the head. */
#define NIL SIZE_MAX

typedef struct mem_entry {
    char *id; /* NULL: forgotten (dead slot) */
    size_t len;
    uint64_t hash;
    int64_t expires_ms;
    size_t next; /* next slot in the bucket chain, NIL at the end */
} mem_entry;

typedef struct mem_store {
    pthread_mutex_t mu;
    mem_entry *ring;
    size_t cap, head, count;
    size_t *buckets;
    size_t mask; /* bucket count - 1 */
} mem_store;

/* Remove slot i from its bucket chain. */
static void mem_unlink(mem_store *m, size_t i)
{
    size_t *pp = &m->buckets[m->ring[i].hash & m->mask];
    while (*pp != NIL && *pp != i)
        pp = &m->ring[*pp].next;
    if (KEEL_ALWAYS(*pp == i))
        *pp = m->ring[i].next;
}

/* Drop the head slot (live or dead). */
static void mem_pop(mem_store *m)
{
    mem_entry *e = &m->ring[m->head];
    if (e->id != NULL) {
        mem_unlink(m, m->head);
        keel_free(e->id);
        e->id = NULL;
    }
    m->head = (m->head + 1) % m->cap;
    m->count--;
}

/* Pop expired and dead slots from the head; returns how many live ones expired. */
static uint64_t mem_expire(mem_store *m, int64_t now)
{
    uint64_t n = 0;
    while (m->count > 0) {
        mem_entry *e = &m->ring[m->head];
        if (e->id != NULL && e->expires_ms > now)
            break;
        n += e->id != NULL;
        mem_pop(m);
    }
    return n;
}

static size_t mem_find(const mem_store *m, const char *id, size_t len, uint64_t h)
{
    for (size_t i = m->buckets[h & m->mask]; i != NIL; i = m->ring[i].next) {
        const mem_entry *e = &m->ring[i];
        if (e->hash == h && e->len == len && memcmp(e->id, id, len) == 0)
            return i;
    }
    return NIL;
}

static int mem_is_first(void *self, const char *id, size_t len, int64_t now, uint64_t ttl,
                        keel_diag *diag)
{
    mem_store *m = self;
    uint64_t h = keel__fnv1a(KEEL__FNV1A_INIT, id, len);
    char *copy = keel_strndup(id, len); /* allocate outside the lock */
    if (copy == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    int rc;
    pthread_mutex_lock(&m->mu);
    mem_expire(m, now);
    size_t i = mem_find(m, id, len, h);
    if (i != NIL) {
        /* Live unless the clock went backwards when it was stored: then it counts as new. */
        rc = m->ring[i].expires_ms <= now;
        if (rc)
            m->ring[i].expires_ms = expiry(now, ttl);
    } else {
        if (m->count == m->cap)
            mem_pop(m); /* full: forget the oldest */
        i = (m->head + m->count) % m->cap;
        mem_entry *e = &m->ring[i];
        e->id = copy;
        copy = NULL;
        e->len = len;
        e->hash = h;
        e->expires_ms = expiry(now, ttl);
        e->next = m->buckets[h & m->mask];
        m->buckets[h & m->mask] = i;
        m->count++;
        rc = 1;
    }
    pthread_mutex_unlock(&m->mu);
    keel_free(copy);
    return rc;
}

static keel_err mem_forget(void *self, const char *id, size_t len, keel_diag *diag)
{
    (void)diag;
    mem_store *m = self;
    uint64_t h = keel__fnv1a(KEEL__FNV1A_INIT, id, len);
    pthread_mutex_lock(&m->mu);
    size_t i = mem_find(m, id, len, h);
    if (i != NIL) {
        mem_unlink(m, i);
        keel_free(m->ring[i].id);
        m->ring[i].id = NULL;
    }
    pthread_mutex_unlock(&m->mu);
    return KEEL_OK;
}

static keel_err mem_purge(void *self, int64_t now, uint64_t *removed, keel_diag *diag)
{
    (void)diag;
    mem_store *m = self;
    pthread_mutex_lock(&m->mu);
    *removed = mem_expire(m, now);
    pthread_mutex_unlock(&m->mu);
    return KEEL_OK;
}

static void mem_destroy(void *self)
{
    mem_store *m = self;
    if (m == NULL)
        return;
    if (m->ring != NULL)
        for (size_t i = 0; i < m->cap; i++)
            keel_free(m->ring[i].id);
    keel_free(m->ring);
    keel_free(m->buckets);
    pthread_mutex_destroy(&m->mu);
    keel_free(m);
}

static const keel_webhook_dedup_ops MEM_OPS = {mem_is_first, mem_forget, mem_purge, mem_destroy};

keel_err keel_webhook_dedup_memory_create(keel_webhook_dedup **out,
                                          const keel_webhook_dedup_config *cfg)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || !config_ok(cfg) || cfg->max_entries == 0 ||
        cfg->max_entries > MEMORY_MAX_LIMIT)
        return KEEL_EINVAL;
    mem_store *m = keel__new(mem_store);
    if (m == NULL)
        return KEEL_ENOMEM;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        keel_free(m);
        return KEEL_ENOMEM;
    }
    size_t nb = 16;
    while (nb < cfg->max_entries)
        nb <<= 1;
    m->cap = cfg->max_entries;
    m->mask = nb - 1;
    m->ring = keel_calloc(m->cap, sizeof(*m->ring));
    m->buckets = keel_malloc(nb * sizeof(*m->buckets));
    if (m->ring == NULL || m->buckets == NULL) {
        mem_destroy(m);
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < nb; i++)
        m->buckets[i] = NIL;
    return keel_webhook_dedup_create(out, &MEM_OPS, m, cfg);
}

/* -------------------------------------------------------------------- SQL -- */

typedef struct sql_store {
    keel_store *s;
} sql_store;

static const keel_migration SQL_MIGRATIONS[] = {
    {1, "webhook_events",
     "CREATE TABLE keel_webhook_events (event_id TEXT NOT NULL PRIMARY KEY, "
     "received_at_ms INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL);"
     "CREATE INDEX keel_webhook_events_expires ON keel_webhook_events (expires_at_ms);",
     "CREATE TABLE keel_webhook_events (event_id TEXT NOT NULL PRIMARY KEY, "
     "received_at_ms BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL);"
     "CREATE INDEX keel_webhook_events_expires ON keel_webhook_events (expires_at_ms);"},
};

/* Insert the id, or take over an expired row; a live row is left alone, so the number of
 * changed rows is 1 exactly for a first delivery.  Both engines serialise concurrent
 * upserts of one key on the primary key, so exactly one caller sees 1. */
static const char SQL_UPSERT[] =
    "INSERT INTO keel_webhook_events (event_id, received_at_ms, expires_at_ms) "
    "VALUES (?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET "
    "received_at_ms = excluded.received_at_ms, expires_at_ms = excluded.expires_at_ms "
    "WHERE keel_webhook_events.expires_at_ms <= ?";
static const char SQL_FORGET[] = "DELETE FROM keel_webhook_events WHERE event_id = ?";
static const char SQL_PURGE[] = "DELETE FROM keel_webhook_events WHERE expires_at_ms <= ?";

/* Run one write statement; *changes receives the changed row count. Binds: text id
 * (may be NULL to skip) then the int64 values. */
static keel_err sql_write(sql_store *q, const char *sql, const char *id, size_t len,
                          const int64_t *vals, int nvals, int64_t *changes, keel_diag *diag)
{
    keel_db *db = NULL;
    keel_err e = keel_db_acquire(q->s, &db, diag);
    if (e != KEEL_OK)
        return e;
    keel_stmt *st = NULL;
    int idx = 1;
    e = keel_db_prepare(db, sql, &st, diag);
    if (e == KEEL_OK && id != NULL)
        e = keel_stmt_bind_text(st, idx++, id, len);
    for (int i = 0; e == KEEL_OK && i < nvals; i++)
        e = keel_stmt_bind_int64(st, idx++, vals[i]);
    if (e == KEEL_OK) {
        int r = keel_stmt_step(st, diag);
        if (r < 0)
            e = (keel_err)r;
        else
            *changes = keel_stmt_changes(st);
    }
    keel_db_release(db);
    return e;
}

static int sql_is_first(void *self, const char *id, size_t len, int64_t now, uint64_t ttl,
                        keel_diag *diag)
{
    int64_t vals[3] = {now, expiry(now, ttl), now};
    int64_t changes = 0;
    keel_err e = sql_write(self, SQL_UPSERT, id, len, vals, 3, &changes, diag);
    if (e != KEEL_OK)
        return e;
    return changes > 0 ? 1 : 0;
}

static keel_err sql_forget(void *self, const char *id, size_t len, keel_diag *diag)
{
    int64_t changes = 0;
    return sql_write(self, SQL_FORGET, id, len, NULL, 0, &changes, diag);
}

static keel_err sql_purge(void *self, int64_t now, uint64_t *removed, keel_diag *diag)
{
    int64_t changes = 0;
    keel_err e = sql_write(self, SQL_PURGE, NULL, 0, &now, 1, &changes, diag);
    *removed = changes > 0 ? (uint64_t)changes : 0;
    return e;
}

static void sql_destroy(void *self)
{
    keel_free(self);
}

static const keel_webhook_dedup_ops SQL_OPS = {sql_is_first, sql_forget, sql_purge, sql_destroy};

keel_err keel_webhook_dedup_sql_create(keel_webhook_dedup **out, keel_store *store,
                                       const keel_webhook_dedup_config *cfg, keel_diag *diag)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || store == NULL || !config_ok(cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "keel_webhook_dedup_sql_create: invalid argument");
    keel_err e = keel_store_migrate_component(store, "keel.pay.webhook", SQL_MIGRATIONS,
                                              KEEL_ARRAY_LEN(SQL_MIGRATIONS), diag);
    if (e != KEEL_OK)
        return e;
    sql_store *q = keel__new(sql_store);
    if (q == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    q->s = store;
    return keel_webhook_dedup_create(out, &SQL_OPS, q, cfg);
}

/* ------------------------------------------------------------------ Redis -- */

typedef struct redis_store {
    keel_redis *r;
    size_t plen;
    char prefix[REDIS_PREFIX_MAX + 1];
} redis_store;

/* key = prefix + id into buf (REDIS_PREFIX_MAX + KEEL_WEBHOOK_EVENT_ID_MAX bytes). */
static size_t redis_key(const redis_store *rs, const char *id, size_t len, char *buf)
{
    memcpy(buf, rs->prefix, rs->plen);
    memcpy(buf + rs->plen, id, len);
    return rs->plen + len;
}

static int redis_is_first(void *self, const char *id, size_t len, int64_t now, uint64_t ttl,
                          keel_diag *diag)
{
    (void)now; /* Redis expires keys on its own clock */
    redis_store *rs = self;
    char key[REDIS_PREFIX_MAX + KEEL_WEBHOOK_EVENT_ID_MAX];
    char px[24];
    int pl = snprintf(px, sizeof(px), "%llu", (unsigned long long)ttl);
    const char *argv[] = {"SET", key, "1", "NX", "PX", px};
    size_t lens[] = {3, redis_key(rs, id, len, key), 1, 2, 2, (size_t)pl};
    keel_redis_reply *rep = NULL;
    keel_err e = keel_redis_cmd(rs->r, &rep, 6, argv, lens, diag);
    if (e != KEEL_OK)
        return e;
    keel_redis_type t = keel_redis_reply_type(rep);
    int rc;
    if (t == KEEL_REDIS_NIL)
        rc = 0;
    else if (t == KEEL_REDIS_STATUS)
        rc = 1; /* "OK" */
    else
        rc = keel_diag_set(diag, KEEL_EIO, 0, "unexpected reply type %d to SET NX", (int)t);
    keel_redis_reply_free(rep);
    return rc;
}

static keel_err redis_forget(void *self, const char *id, size_t len, keel_diag *diag)
{
    redis_store *rs = self;
    char key[REDIS_PREFIX_MAX + KEEL_WEBHOOK_EVENT_ID_MAX];
    const char *argv[] = {"DEL", key};
    size_t lens[] = {3, redis_key(rs, id, len, key)};
    keel_redis_reply *rep = NULL;
    keel_err e = keel_redis_cmd(rs->r, &rep, 2, argv, lens, diag);
    keel_redis_reply_free(rep);
    return e;
}

static keel_err redis_purge(void *self, int64_t now, uint64_t *removed, keel_diag *diag)
{
    (void)self;
    (void)now;
    (void)diag;
    *removed = 0; /* keys carry their own expiry */
    return KEEL_OK;
}

static void redis_destroy(void *self)
{
    keel_free(self);
}

static const keel_webhook_dedup_ops REDIS_OPS = {redis_is_first, redis_forget, redis_purge,
                                                 redis_destroy};

keel_err keel_webhook_dedup_redis_create(keel_webhook_dedup **out, keel_redis *redis,
                                         const keel_webhook_dedup_config *cfg)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || redis == NULL || !config_ok(cfg))
        return KEEL_EINVAL;
    const char *prefix = cfg->redis_prefix ? cfg->redis_prefix : REDIS_PREFIX_DEFAULT;
    size_t plen = strnlen(prefix, REDIS_PREFIX_MAX + 1);
    if (plen > REDIS_PREFIX_MAX)
        return KEEL_EINVAL;
    redis_store *rs = keel__new(redis_store);
    if (rs == NULL)
        return KEEL_ENOMEM;
    rs->r = redis;
    rs->plen = plen;
    memcpy(rs->prefix, prefix, plen);
    return keel_webhook_dedup_create(out, &REDIS_OPS, rs, cfg);
}
