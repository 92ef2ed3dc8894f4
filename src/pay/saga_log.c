/* saga_log.c - saga logs: in memory (tests, single-process tools) and durable SQL on a
 * keel_store (SQLite / PostgreSQL).  See keel/saga.h for the contract of each operation. */
#include "keel_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <keel/saga.h>

#include "saga_int.h"

static int is_active(keel_saga_state s)
{
    return s == KEEL_SAGA_RUNNING || s == KEEL_SAGA_COMPENSATING;
}

static keel_err not_found(keel_diag *diag, const char *id)
{
    return keel_diag_set(diag, KEEL_ENOTFOUND, 0, "saga '%.128s' not found", id);
}

static keel_err lost_claim(keel_diag *diag, const char *id)
{
    return keel_diag_set(diag, KEEL_EBUSY, 0,
                         "saga '%.128s' is finished or owned by another process (claim lost)",
                         id);
}

static int64_t lease_i64(uint64_t ms)
{
    return ms > (uint64_t)INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)ms;
}

/* ================================================================ memory == */

/* Caps: the memory log is for tests and small tools. */
#define MEM_MAX_SAGAS 100000u
#define MEM_MAX_EVENTS 10000u

typedef struct mem_event {
    keel_saga_entry e;
    char *step_name;
} mem_event;

typedef struct mem_saga {
    keel_saga_record rec; /* rec.context: private deep copy */
    mem_event *ev;
    size_t nev, capev;
} mem_saga;

typedef struct mem_log {
    keel_saga_log base;
    pthread_mutex_t mu;
    const keel_clock *clock;
    mem_saga **sagas;
    size_t n, cap;
} mem_log;

static int64_t mem_now(const mem_log *m)
{
    return (int64_t)keel_clock_now_ms(m->clock);
}

static mem_saga *mem_find(mem_log *m, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->sagas[i]->rec.id, id) == 0)
            return m->sagas[i];
    return NULL;
}

static keel_err mem_append(mem_saga *s, keel_saga_event_kind kind, int step,
                           const char *step_name, keel_err err, unsigned attempt)
{
    if (s->nev == s->capev) {
        if (s->capev >= MEM_MAX_EVENTS)
            return KEEL_EFULL;
        size_t nc = s->capev ? s->capev * 2 : 16;
        if (nc > MEM_MAX_EVENTS)
            nc = MEM_MAX_EVENTS;
        mem_event *p = keel_realloc(s->ev, nc * sizeof(*p));
        if (p == NULL)
            return KEEL_ENOMEM;
        s->ev = p;
        s->capev = nc;
    }
    char *nm = NULL;
    if (step_name != NULL && (nm = keel_strdup(step_name)) == NULL)
        return KEEL_ENOMEM;
    mem_event *e = &s->ev[s->nev++];
    e->step_name = nm;
    e->e = (keel_saga_entry){(int64_t)s->nev, kind, step, nm, err, attempt, s->rec.state,
                             keel_time_wall_ms()};
    s->rec.seq = (int64_t)s->nev;
    return KEEL_OK;
}

static void mem_saga_free(mem_saga *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nev; i++)
        keel_free(s->ev[i].step_name);
    keel_free(s->ev);
    keel_saga_record_cleanup(&s->rec);
    keel_free(s);
}

/* Copy the transition's new state into the stored record (keeping the bookkeeping fields). */
static keel_err mem_apply(mem_log *m, mem_saga *s, const keel_saga_event *ev)
{
    const keel_saga_record *src = ev->saga;
    json_t *ctx = NULL;
    if (ev->context_changed && src->context != NULL) {
        ctx = json_deep_copy(src->context);
        if (ctx == NULL)
            return KEEL_ENOMEM;
    }
    keel_saga_record *r = &s->rec;
    r->state = src->state;
    r->next_step = src->next_step;
    r->in_step = src->in_step;
    r->comp_next = src->comp_next;
    r->failed_step = src->failed_step;
    r->error = src->error;
    r->comp_failures = src->comp_failures;
    if (ctx != NULL) {
        json_decref(r->context);
        r->context = ctx;
    }
    int64_t now = mem_now(m);
    r->updated_at_ms = now;
    r->lease_until_ms = now + lease_i64(ev->lease_ms);
    return KEEL_OK;
}

static keel_err mem_record(keel_saga_log *self, const keel_saga_event *ev, keel_diag *diag)
{
    mem_log *m = (mem_log *)self;
    if (ev == NULL || ev->saga == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "saga log: invalid event");
    const keel_saga_record *src = ev->saga;
    keel_err e = KEEL_OK;
    pthread_mutex_lock(&m->mu);
    mem_saga *s = mem_find(m, src->id);
    if (ev->kind == KEEL_SAGA_EV_STARTED) {
        if (s != NULL) {
            e = keel_diag_set(diag, KEEL_EEXIST, 0, "saga id '%.128s' already exists", src->id);
            goto out;
        }
        if (m->n >= MEM_MAX_SAGAS) {
            e = keel_diag_set(diag, KEEL_EFULL, 0, "in-memory saga log is full");
            goto out;
        }
        if (m->n == m->cap) {
            size_t nc = m->cap ? m->cap * 2 : 16;
            mem_saga **p = keel_realloc(m->sagas, nc * sizeof(*p));
            if (p == NULL) {
                e = keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
                goto out;
            }
            m->sagas = p;
            m->cap = nc;
        }
        s = keel__new(mem_saga);
        if (s == NULL || (e = keel__saga_record_copy(&s->rec, src, 1)) != KEEL_OK) {
            mem_saga_free(s);
            e = keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
            goto out;
        }
        int64_t now = mem_now(m);
        s->rec.created_at_ms = s->rec.updated_at_ms = now;
        s->rec.lease_until_ms = now + lease_i64(ev->lease_ms);
        if ((e = mem_append(s, ev->kind, -1, NULL, KEEL_OK, 0)) != KEEL_OK) {
            mem_saga_free(s);
            e = keel_diag_set(diag, e, 0, "cannot record the saga start");
            goto out;
        }
        m->sagas[m->n++] = s;
        goto out;
    }
    if (s == NULL) {
        e = not_found(diag, src->id);
        goto out;
    }
    if (!is_active(s->rec.state) || strcmp(s->rec.claim, src->claim) != 0) {
        e = lost_claim(diag, src->id);
        goto out;
    }
    /* Append first so that a full or failed append leaves the state untouched. */
    keel_saga_state prev = s->rec.state;
    s->rec.state = src->state;
    e = mem_append(s, ev->kind, ev->step, ev->step_name, ev->error, ev->attempt);
    s->rec.state = prev;
    if (e != KEEL_OK) {
        e = keel_diag_set(diag, e, 0, "saga '%.128s': cannot record the event", src->id);
        goto out;
    }
    if ((e = mem_apply(m, s, ev)) != KEEL_OK) {
        /* Undo the append: the transition did not happen. */
        s->nev--;
        keel_free(s->ev[s->nev].step_name);
        s->rec.seq = (int64_t)s->nev;
        e = keel_diag_set(diag, e, 0, "out of memory");
    }
out:
    pthread_mutex_unlock(&m->mu);
    return e;
}

static keel_err mem_load(keel_saga_log *self, const char *id, keel_saga_record *out,
                         keel_diag *diag)
{
    mem_log *m = (mem_log *)self;
    keel_err e;
    pthread_mutex_lock(&m->mu);
    mem_saga *s = mem_find(m, id);
    if (s == NULL)
        e = not_found(diag, id);
    else if ((e = keel__saga_record_copy(out, &s->rec, 1)) != KEEL_OK)
        e = keel_diag_set(diag, e, 0, "out of memory");
    pthread_mutex_unlock(&m->mu);
    return e;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static keel_err mem_list_active(keel_saga_log *self, const char *prefix, const char *after,
                                char (*ids)[KEEL_SAGA_ID_MAX + 1], size_t cap, size_t *n,
                                keel_diag *diag)
{
    KEEL_UNUSED(diag);
    mem_log *m = (mem_log *)self;
    size_t plen = strlen(prefix);
    *n = 0;
    if (cap == 0)
        return KEEL_OK;
    pthread_mutex_lock(&m->mu);
    /* Keep the cap smallest ids above `after`: a bounded selection, then a sort. */
    for (size_t i = 0; i < m->n; i++) {
        const keel_saga_record *r = &m->sagas[i]->rec;
        if (!is_active(r->state) || strcmp(r->id, after) <= 0 || strncmp(r->id, prefix, plen))
            continue;
        if (*n < cap) {
            snprintf(ids[*n], sizeof(ids[0]), "%s", r->id);
            (*n)++;
            continue;
        }
        size_t worst = 0;
        for (size_t j = 1; j < *n; j++)
            if (strcmp(ids[j], ids[worst]) > 0)
                worst = j;
        if (strcmp(r->id, ids[worst]) < 0)
            snprintf(ids[worst], sizeof(ids[0]), "%s", r->id);
    }
    pthread_mutex_unlock(&m->mu);
    qsort(ids, *n, sizeof(ids[0]), cmp_id);
    return KEEL_OK;
}

static keel_err mem_claim(keel_saga_log *self, const keel_saga_claim *c, keel_diag *diag)
{
    mem_log *m = (mem_log *)self;
    keel_err e = KEEL_OK;
    pthread_mutex_lock(&m->mu);
    mem_saga *s = mem_find(m, c->saga_id);
    int64_t now = mem_now(m);
    if (s == NULL) {
        e = not_found(diag, c->saga_id);
    } else if (!is_active(s->rec.state) || strcmp(s->rec.claim, c->observed_claim) != 0 ||
               !(s->rec.lease_until_ms <= now ||
                 (c->reclaim_owner != NULL && strcmp(s->rec.owner, c->reclaim_owner) == 0))) {
        e = keel_diag_set(diag, KEEL_EBUSY, 0, "saga '%.128s' is not claimable", c->saga_id);
    } else if ((e = mem_append(s, KEEL_SAGA_EV_CLAIMED, -1, NULL, KEEL_OK, 0)) != KEEL_OK) {
        e = keel_diag_set(diag, e, 0, "saga '%.128s': cannot record the claim", c->saga_id);
    } else {
        snprintf(s->rec.claim, sizeof(s->rec.claim), "%s", c->new_claim);
        snprintf(s->rec.owner, sizeof(s->rec.owner), "%s", c->owner);
        s->rec.lease_until_ms = now + lease_i64(c->lease_ms);
        s->rec.updated_at_ms = now;
    }
    pthread_mutex_unlock(&m->mu);
    return e;
}

static keel_err mem_history(keel_saga_log *self, const char *id, keel_saga_entry_fn fn, void *ud,
                            keel_diag *diag)
{
    mem_log *m = (mem_log *)self;
    pthread_mutex_lock(&m->mu);
    mem_saga *s = mem_find(m, id);
    if (s == NULL) {
        pthread_mutex_unlock(&m->mu);
        return not_found(diag, id);
    }
    for (size_t i = 0; i < s->nev; i++)
        fn(&s->ev[i].e, ud);
    pthread_mutex_unlock(&m->mu);
    return KEEL_OK;
}

static void mem_destroy(keel_saga_log *self)
{
    mem_log *m = (mem_log *)self;
    for (size_t i = 0; i < m->n; i++)
        mem_saga_free(m->sagas[i]);
    keel_free(m->sagas);
    pthread_mutex_destroy(&m->mu);
    keel_free(m);
}

keel_err keel_saga_log_memory_create(keel_saga_log **out, const keel_clock *clock)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    mem_log *m = keel__new(mem_log);
    if (m == NULL)
        return KEEL_ENOMEM;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        keel_free(m);
        return KEEL_ENOMEM;
    }
    m->base = (keel_saga_log){"memory",        mem_record,  mem_load, mem_list_active,
                              mem_claim,       mem_history, mem_destroy};
    m->clock = clock;
    *out = &m->base;
    return KEEL_OK;
}

/* =================================================================== SQL == */

/* The saga tables.  One row per saga (its current state, rewritten by every transition) and
 * an append-only event table.  On PostgreSQL the id uses the "C" collation so that the
 * recoverer's keyset pagination and prefix filter follow byte order. */
static const keel_migration SAGA_MIGRATIONS[] = {
    {1, "saga_log",
     "CREATE TABLE keel_sagas ("
     " id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL,"
     " next_step INTEGER NOT NULL, in_step INTEGER NOT NULL, comp_next INTEGER NOT NULL,"
     " failed_step INTEGER NOT NULL, error INTEGER NOT NULL, comp_failures INTEGER NOT NULL,"
     " context TEXT NOT NULL, owner TEXT NOT NULL, claim TEXT NOT NULL,"
     " lease_until_ms INTEGER NOT NULL, seq INTEGER NOT NULL,"
     " created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL);"
     "CREATE INDEX keel_sagas_state ON keel_sagas (state, id);"
     "CREATE TABLE keel_saga_events ("
     " saga_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, step INTEGER NOT NULL,"
     " step_name TEXT, error INTEGER NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL,"
     " at_ms INTEGER NOT NULL, PRIMARY KEY (saga_id, seq));",
     "CREATE TABLE keel_sagas ("
     " id TEXT COLLATE \"C\" PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL,"
     " next_step INTEGER NOT NULL, in_step INTEGER NOT NULL, comp_next INTEGER NOT NULL,"
     " failed_step INTEGER NOT NULL, error INTEGER NOT NULL, comp_failures INTEGER NOT NULL,"
     " context TEXT NOT NULL, owner TEXT NOT NULL, claim TEXT NOT NULL,"
     " lease_until_ms BIGINT NOT NULL, seq BIGINT NOT NULL,"
     " created_at_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL);"
     "CREATE INDEX keel_sagas_state ON keel_sagas (state, id);"
     "CREATE TABLE keel_saga_events ("
     " saga_id TEXT COLLATE \"C\" NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL,"
     " step INTEGER NOT NULL, step_name TEXT, error INTEGER NOT NULL, attempt INTEGER NOT NULL,"
     " state TEXT NOT NULL, at_ms BIGINT NOT NULL, PRIMARY KEY (saga_id, seq));"},
};

typedef struct sql_log {
    keel_saga_log base;
    keel_store *store;
} sql_log;

/* Bind helpers: stop at the first error. */
typedef struct binder {
    keel_stmt *st;
    int idx;
    keel_err err;
} binder;

static void b_text(binder *b, const char *s)
{
    if (b->err == KEEL_OK)
        b->err = s != NULL ? keel_stmt_bind_text(b->st, ++b->idx, s, SIZE_MAX)
                           : keel_stmt_bind_null(b->st, ++b->idx);
    else
        ++b->idx;
}

static void b_int(binder *b, int64_t v)
{
    if (b->err == KEEL_OK)
        b->err = keel_stmt_bind_int64(b->st, ++b->idx, v);
    else
        ++b->idx;
}

/* Run a prepared, bound statement that returns no row. */
static keel_err run_done(keel_stmt *st, keel_diag *diag)
{
    int rc = keel_stmt_step(st, diag);
    if (rc < 0)
        return (keel_err)rc;
    return KEEL_OK;
}

/* The current seq and state of a saga inside the transaction (after its update). */
static keel_err read_seq(keel_db *db, const char *id, int64_t *seq, keel_saga_state *state,
                         keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db, "SELECT seq, state FROM keel_sagas WHERE id = ?", &st, diag);
    if (e != KEEL_OK)
        return e;
    if ((e = keel_stmt_bind_text(st, 1, id, SIZE_MAX)) != KEEL_OK)
        return e;
    int rc = keel_stmt_step(st, diag);
    if (rc < 0)
        return (keel_err)rc;
    if (rc == 0)
        return not_found(diag, id);
    *seq = keel_stmt_int64(st, 0);
    const char *s = keel_stmt_text(st, 1, NULL);
    if (state != NULL && (s == NULL || keel_saga_state_parse(s, state) != KEEL_OK))
        return keel_diag_set(diag, KEEL_EPARSE, 0, "saga '%.128s': bad stored state", id);
    return KEEL_OK;
}

static keel_err insert_event(keel_db *db, const char *id, int64_t seq,
                             keel_saga_event_kind kind, int step, const char *step_name,
                             keel_err err, unsigned attempt, keel_saga_state state,
                             keel_diag *diag)
{
    keel_stmt *st;
    keel_err e = keel_db_prepare(db,
                                 "INSERT INTO keel_saga_events (saga_id, seq, kind, step, "
                                 "step_name, error, attempt, state, at_ms) VALUES (?, ?, ?, ?, "
                                 "?, ?, ?, ?, {now_ms})",
                                 &st, diag);
    if (e != KEEL_OK)
        return e;
    binder b = {st, 0, KEEL_OK};
    b_text(&b, id);
    b_int(&b, seq);
    b_text(&b, keel_saga_event_kind_name(kind));
    b_int(&b, step);
    b_text(&b, step_name);
    b_int(&b, err);
    b_int(&b, attempt);
    b_text(&b, keel_saga_state_name(state));
    if (b.err != KEEL_OK)
        return b.err;
    return run_done(st, diag);
}

/* keel_store_tx retries a unit of work that fails with KEEL_EBUSY (lock contention), so a lost
 * claim leaves the callbacks as KEEL_ESTATE with `lost` set and is mapped back outside. */
typedef struct record_tx {
    const keel_saga_event *ev;
    const char *ctx_json; /* NULL: unchanged */
    int lost;
    keel_diag d;
} record_tx;

static keel_err record_fn(keel_db *db, void *ud)
{
    record_tx *t = ud;
    const keel_saga_event *ev = t->ev;
    const keel_saga_record *r = ev->saga;
    keel_diag *diag = &t->d;
    keel_stmt *st;
    keel_err e;
    int64_t lease = lease_i64(ev->lease_ms);
    if (ev->kind == KEEL_SAGA_EV_STARTED) {
        e = keel_db_prepare(db,
                            "INSERT INTO keel_sagas (id, name, state, next_step, in_step, "
                            "comp_next, failed_step, error, comp_failures, context, owner, "
                            "claim, lease_until_ms, seq, created_at_ms, updated_at_ms) VALUES "
                            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {now_ms} + ?, 1, {now_ms}, "
                            "{now_ms})",
                            &st, diag);
        if (e != KEEL_OK)
            return e;
        binder b = {st, 0, KEEL_OK};
        b_text(&b, r->id);
        b_text(&b, r->name);
        b_text(&b, keel_saga_state_name(r->state));
        b_int(&b, r->next_step);
        b_int(&b, r->in_step);
        b_int(&b, r->comp_next);
        b_int(&b, r->failed_step);
        b_int(&b, r->error);
        b_int(&b, r->comp_failures);
        b_text(&b, t->ctx_json != NULL ? t->ctx_json : "{}");
        b_text(&b, r->owner);
        b_text(&b, r->claim);
        b_int(&b, lease);
        if (b.err != KEEL_OK)
            return b.err;
        if ((e = run_done(st, diag)) != KEEL_OK)
            return e;
        return insert_event(db, r->id, 1, ev->kind, -1, NULL, KEEL_OK, 0, r->state, diag);
    }
    e = keel_db_prepare(db,
                        "UPDATE keel_sagas SET state = ?, next_step = ?, in_step = ?, "
                        "comp_next = ?, failed_step = ?, error = ?, comp_failures = ?, "
                        "context = COALESCE(?, context), seq = seq + 1, updated_at_ms = "
                        "{now_ms}, lease_until_ms = {now_ms} + ? WHERE id = ? AND claim = ? AND "
                        "state IN ('RUNNING', 'COMPENSATING')",
                        &st, diag);
    if (e != KEEL_OK)
        return e;
    binder b = {st, 0, KEEL_OK};
    b_text(&b, keel_saga_state_name(r->state));
    b_int(&b, r->next_step);
    b_int(&b, r->in_step);
    b_int(&b, r->comp_next);
    b_int(&b, r->failed_step);
    b_int(&b, r->error);
    b_int(&b, r->comp_failures);
    b_text(&b, t->ctx_json);
    b_int(&b, lease);
    b_text(&b, r->id);
    b_text(&b, r->claim);
    if (b.err != KEEL_OK)
        return b.err;
    if ((e = run_done(st, diag)) != KEEL_OK)
        return e;
    int64_t seq = 0;
    if (keel_stmt_changes(st) != 1) {
        e = read_seq(db, r->id, &seq, NULL, diag);
        if (e != KEEL_OK)
            return e;
        t->lost = 1;
        return KEEL_ESTATE;
    }
    if ((e = read_seq(db, r->id, &seq, NULL, diag)) != KEEL_OK)
        return e;
    return insert_event(db, r->id, seq, ev->kind, ev->step, ev->step_name, ev->error,
                        ev->attempt, r->state, diag);
}

static keel_err sql_record(keel_saga_log *self, const keel_saga_event *ev, keel_diag *diag)
{
    sql_log *l = (sql_log *)self;
    if (ev == NULL || ev->saga == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "saga log: invalid event");
    record_tx t = {ev, NULL, 0, {KEEL_OK, 0, ""}};
    char *json = NULL;
    keel_err e;
    if (ev->context_changed || ev->kind == KEEL_SAGA_EV_STARTED) {
        if (ev->saga->context != NULL) {
            if ((e = keel__saga_ctx_dump(ev->saga->context, &json, diag)) != KEEL_OK)
                return e;
        }
        t.ctx_json = json;
    }
    keel_diag d = {KEEL_OK, 0, ""};
    e = keel_store_tx(l->store, record_fn, &t, &d);
    keel_free(json);
    if (e == KEEL_EEXIST && ev->kind == KEEL_SAGA_EV_STARTED)
        return keel_diag_set(diag, KEEL_EEXIST, 0, "saga id '%.128s' already exists",
                             ev->saga->id);
    if (t.lost)
        return lost_claim(diag, ev->saga->id);
    if (t.d.msg[0] != '\0' && d.msg[0] == '\0')
        d = t.d;
    if (e == KEEL_ENOTFOUND)
        return not_found(diag, ev->saga->id);
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "saga '%.128s': cannot record %s: %s", ev->saga->id,
                             keel_saga_event_kind_name(ev->kind),
                             d.msg[0] ? d.msg : keel_strerror(e));
    return KEEL_OK;
}

static keel_err sql_load(keel_saga_log *self, const char *id, keel_saga_record *out,
                         keel_diag *diag)
{
    sql_log *l = (sql_log *)self;
    keel_db *db = NULL;
    keel_err e = keel_db_acquire(l->store, &db, diag);
    if (e != KEEL_OK)
        return e;
    keel_stmt *st;
    e = keel_db_prepare(db,
                        "SELECT name, state, next_step, in_step, comp_next, failed_step, error, "
                        "comp_failures, context, owner, claim, lease_until_ms, seq, "
                        "created_at_ms, updated_at_ms FROM keel_sagas WHERE id = ?",
                        &st, diag);
    if (e == KEEL_OK)
        e = keel_stmt_bind_text(st, 1, id, SIZE_MAX);
    if (e != KEEL_OK)
        goto out;
    int rc = keel_stmt_step(st, diag);
    if (rc < 0) {
        e = (keel_err)rc;
        goto out;
    }
    if (rc == 0) {
        e = not_found(diag, id);
        goto out;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", id);
    const char *s = keel_stmt_text(st, 0, NULL);
    snprintf(out->name, sizeof(out->name), "%s", s ? s : "");
    s = keel_stmt_text(st, 1, NULL);
    if (s == NULL || keel_saga_state_parse(s, &out->state) != KEEL_OK) {
        e = keel_diag_set(diag, KEEL_EPARSE, 0, "saga '%.128s': bad stored state", id);
        goto out;
    }
    out->next_step = (int)keel_stmt_int64(st, 2);
    out->in_step = (int)keel_stmt_int64(st, 3);
    out->comp_next = (int)keel_stmt_int64(st, 4);
    out->failed_step = (int)keel_stmt_int64(st, 5);
    out->error = (keel_err)keel_stmt_int64(st, 6);
    out->comp_failures = (int)keel_stmt_int64(st, 7);
    size_t clen = 0;
    s = keel_stmt_text(st, 8, &clen);
    if ((e = keel__saga_ctx_load(s ? s : "{}", s ? clen : 2, id, &out->context, diag)) !=
        KEEL_OK)
        goto out;
    s = keel_stmt_text(st, 9, NULL);
    snprintf(out->owner, sizeof(out->owner), "%s", s ? s : "");
    s = keel_stmt_text(st, 10, NULL);
    snprintf(out->claim, sizeof(out->claim), "%s", s ? s : "");
    out->lease_until_ms = keel_stmt_int64(st, 11);
    out->seq = keel_stmt_int64(st, 12);
    out->created_at_ms = keel_stmt_int64(st, 13);
    out->updated_at_ms = keel_stmt_int64(st, 14);
    /* Shape checks: a record recovery would misread is reported, not driven. */
    if (out->next_step < 0 || out->next_step > KEEL_SAGA_STEPS_MAX || out->in_step < 0 ||
        out->in_step > 1 || out->comp_next < -1 || out->comp_next >= KEEL_SAGA_STEPS_MAX) {
        keel_saga_record_cleanup(out);
        e = keel_diag_set(diag, KEEL_EPARSE, 0, "saga '%.128s': inconsistent stored record", id);
    }
out:
    keel_db_release(db);
    return e;
}

static keel_err sql_list_active(keel_saga_log *self, const char *prefix, const char *after,
                                char (*ids)[KEEL_SAGA_ID_MAX + 1], size_t cap, size_t *n,
                                keel_diag *diag)
{
    sql_log *l = (sql_log *)self;
    *n = 0;
    keel_db *db = NULL;
    keel_err e = keel_db_acquire(l->store, &db, diag);
    if (e != KEEL_OK)
        return e;
    keel_stmt *st;
    e = keel_db_prepare(db,
                        "SELECT id FROM keel_sagas WHERE state IN ('RUNNING', 'COMPENSATING') "
                        "AND id > ? AND substr(id, 1, ?) = ? ORDER BY id LIMIT ?",
                        &st, diag);
    if (e == KEEL_OK) {
        binder b = {st, 0, KEEL_OK};
        b_text(&b, after);
        b_int(&b, (int64_t)strlen(prefix));
        b_text(&b, prefix);
        b_int(&b, (int64_t)cap);
        e = b.err;
    }
    while (e == KEEL_OK) {
        int rc = keel_stmt_step(st, diag);
        if (rc < 0)
            e = (keel_err)rc;
        if (rc <= 0)
            break;
        const char *s = keel_stmt_text(st, 0, NULL);
        if (s != NULL && *n < cap) {
            snprintf(ids[*n], sizeof(ids[0]), "%s", s);
            (*n)++;
        }
    }
    keel_db_release(db);
    return e;
}

typedef struct claim_tx {
    const keel_saga_claim *c;
    int lost;
    keel_diag d;
} claim_tx;

static keel_err claim_fn(keel_db *db, void *ud)
{
    claim_tx *t = ud;
    const keel_saga_claim *c = t->c;
    keel_diag *diag = &t->d;
    keel_stmt *st;
    keel_err e = keel_db_prepare(db,
                                 "UPDATE keel_sagas SET owner = ?, claim = ?, lease_until_ms = "
                                 "{now_ms} + ?, seq = seq + 1, updated_at_ms = {now_ms} WHERE "
                                 "id = ? AND claim = ? AND state IN ('RUNNING', 'COMPENSATING') "
                                 "AND (lease_until_ms <= {now_ms} OR owner = ?)",
                                 &st, diag);
    if (e != KEEL_OK)
        return e;
    binder b = {st, 0, KEEL_OK};
    b_text(&b, c->owner);
    b_text(&b, c->new_claim);
    b_int(&b, lease_i64(c->lease_ms));
    b_text(&b, c->saga_id);
    b_text(&b, c->observed_claim);
    b_text(&b, c->reclaim_owner);
    if (b.err != KEEL_OK)
        return b.err;
    if ((e = run_done(st, diag)) != KEEL_OK)
        return e;
    if (keel_stmt_changes(st) != 1) {
        t->lost = 1;
        return KEEL_ESTATE;
    }
    int64_t seq = 0;
    keel_saga_state state = KEEL_SAGA_RUNNING;
    if ((e = read_seq(db, c->saga_id, &seq, &state, diag)) != KEEL_OK)
        return e;
    return insert_event(db, c->saga_id, seq, KEEL_SAGA_EV_CLAIMED, -1, NULL, KEEL_OK, 0, state,
                        diag);
}

static keel_err sql_claim(keel_saga_log *self, const keel_saga_claim *c, keel_diag *diag)
{
    sql_log *l = (sql_log *)self;
    claim_tx t = {c, 0, {KEEL_OK, 0, ""}};
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_store_tx(l->store, claim_fn, &t, &d);
    if (t.lost)
        return keel_diag_set(diag, KEEL_EBUSY, 0, "saga '%.128s' is not claimable", c->saga_id);
    if (t.d.msg[0] != '\0' && d.msg[0] == '\0')
        d = t.d;
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "saga '%.128s': claim failed: %s", c->saga_id,
                             d.msg[0] ? d.msg : keel_strerror(e));
    return KEEL_OK;
}

static keel_err sql_history(keel_saga_log *self, const char *id, keel_saga_entry_fn fn, void *ud,
                            keel_diag *diag)
{
    sql_log *l = (sql_log *)self;
    keel_db *db = NULL;
    keel_err e = keel_db_acquire(l->store, &db, diag);
    if (e != KEEL_OK)
        return e;
    keel_stmt *st;
    size_t rows = 0;
    e = keel_db_prepare(db,
                        "SELECT seq, kind, step, step_name, error, attempt, state, at_ms FROM "
                        "keel_saga_events WHERE saga_id = ? ORDER BY seq",
                        &st, diag);
    if (e == KEEL_OK)
        e = keel_stmt_bind_text(st, 1, id, SIZE_MAX);
    while (e == KEEL_OK) {
        int rc = keel_stmt_step(st, diag);
        if (rc < 0)
            e = (keel_err)rc;
        if (rc <= 0)
            break;
        keel_saga_entry en;
        memset(&en, 0, sizeof(en));
        en.seq = keel_stmt_int64(st, 0);
        const char *k = keel_stmt_text(st, 1, NULL);
        for (int i = 1; i <= (int)KEEL_SAGA_EV_CLAIMED; i++)
            if (k != NULL && strcmp(k, keel_saga_event_kind_name((keel_saga_event_kind)i)) == 0)
                en.kind = (keel_saga_event_kind)i;
        en.step = (int)keel_stmt_int64(st, 2);
        en.step_name = keel_stmt_text(st, 3, NULL);
        en.error = (keel_err)keel_stmt_int64(st, 4);
        en.attempt = (unsigned)keel_stmt_int64(st, 5);
        const char *s = keel_stmt_text(st, 6, NULL);
        if (s == NULL || keel_saga_state_parse(s, &en.state) != KEEL_OK)
            en.state = (keel_saga_state)0;
        en.at_ms = keel_stmt_int64(st, 7);
        rows++;
        fn(&en, ud);
    }
    keel_db_release(db);
    if (e == KEEL_OK && rows == 0)
        return not_found(diag, id);
    return e;
}

static void sql_destroy(keel_saga_log *self)
{
    keel_free(self);
}

keel_err keel_saga_log_sql_create(keel_saga_log **out, keel_store *store, keel_diag *diag)
{
    if (out == NULL || store == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_saga_log_sql_create: invalid argument");
    *out = NULL;
    keel_err e = keel_store_migrate_component(store, KEEL__SAGA_COMPONENT, SAGA_MIGRATIONS,
                                              KEEL_ARRAY_LEN(SAGA_MIGRATIONS), diag);
    if (e != KEEL_OK)
        return e;
    sql_log *l = keel__new(sql_log);
    if (l == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    l->base = (keel_saga_log){"sql",     sql_record,  sql_load,   sql_list_active,
                              sql_claim, sql_history, sql_destroy};
    l->store = store;
    *out = &l->base;
    return KEEL_OK;
}
