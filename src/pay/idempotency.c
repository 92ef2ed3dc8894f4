/* idempotency.c - the idempotency policy layer, key validation, payload hashing and the
 * in-memory store (keel/idempotency.h).  The SQL and Redis stores live in idem_sql.c and
 * idem_redis.c. */
#include "keel_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <openssl/evp.h>

#include <keel/idempotency.h>
#include <keel/payment.h>

#include "idem_int.h"

/* ------------------------------------------------------------- records -- */

void keel_idem_record_clear(keel_idem_record *rec)
{
    if (rec == NULL)
        return;
    keel_free(rec->result);
    memset(rec, 0, sizeof(*rec));
}

keel_err keel__idem_record_copy(keel_idem_record *dst, const keel_idem_record *src)
{
    *dst = *src;
    dst->result = NULL;
    dst->result_len = 0;
    if (src->result != NULL) {
        dst->result = keel_malloc(src->result_len + 1);
        if (dst->result == NULL)
            return KEEL_ENOMEM;
        memcpy(dst->result, src->result, src->result_len);
        dst->result[src->result_len] = '\0';
        dst->result_len = src->result_len;
    }
    return KEEL_OK;
}

int keel__idem_valid_scope_key(keel_str scope, keel_str key)
{
    if (key.ptr == NULL || key.len == 0 || key.len > KEEL_IDEM_KEY_MAX ||
        scope.len > KEEL_IDEM_SCOPE_MAX || (scope.len > 0 && scope.ptr == NULL))
        return 0;
    for (size_t i = 0; i < key.len; i++)
        if (key.ptr[i] < 0x21 || key.ptr[i] > 0x7e)
            return 0;
    for (size_t i = 0; i < scope.len; i++)
        if (scope.ptr[i] < 0x20 || scope.ptr[i] > 0x7e)
            return 0;
    return 1;
}

void keel_idem_store_destroy(keel_idem_store *s)
{
    if (s == NULL)
        return;
    if (s->vt != NULL && s->vt->destroy != NULL)
        s->vt->destroy(s->self);
    keel_free(s);
}

keel_idem_store *keel__idem_store_wrap(const keel_idem_store_vt *vt, void *self)
{
    keel_idem_store *s = keel_malloc(sizeof(*s));
    if (s != NULL) {
        s->vt = vt;
        s->self = self;
    }
    return s;
}

/* ----------------------------------------------------------- key, hash -- */

keel_err keel_idem_key_parse(keel_str raw, keel_str *out, keel_diag *diag)
{
    if (out != NULL)
        *out = KEEL_STR_NULL;
    if (out == NULL || raw.ptr == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "Idempotency-Key is missing");
    keel_str k = raw;
    if (k.len >= 2 && k.ptr[0] == '"' && k.ptr[k.len - 1] == '"') {
        k.ptr++;
        k.len -= 2;
    }
    if (k.len == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "Idempotency-Key is empty");
    if (k.len > KEEL_IDEM_KEY_MAX)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "Idempotency-Key is longer than %d characters", KEEL_IDEM_KEY_MAX);
    for (size_t i = 0; i < k.len; i++)
        if (k.ptr[i] < 0x21 || k.ptr[i] > 0x7e)
            return keel_diag_set(diag, KEEL_EINVAL, i,
                                 "Idempotency-Key must be printable ASCII without spaces "
                                 "(bad character at position %zu)",
                                 i + 1);
    *out = k;
    return KEEL_OK;
}

keel_err keel_idem_hash(keel_str payload, uint8_t out[32])
{
    unsigned int n = 0;
    if (EVP_Digest(payload.ptr ? payload.ptr : "", payload.len, out, &n, EVP_sha256(), NULL) !=
            1 ||
        n != 32)
        return KEEL_ECRYPTO;
    return KEEL_OK;
}

/* ---------------------------------------------------------- memory store -- */

typedef struct mem_entry {
    struct mem_entry *next;
    char *id; /* scope '\n' key */
    size_t id_len;
    keel_idem_record rec;
} mem_entry;

typedef struct mem_store {
    pthread_mutex_t mu;
    mem_entry **buckets;
    size_t nbuckets, count, max;
} mem_store;

/* scope '\n' key into buf (both validated: no '\n' in either). */
static size_t mem_id(char *buf, keel_str scope, keel_str key)
{
    if (scope.len)
        memcpy(buf, scope.ptr, scope.len);
    buf[scope.len] = '\n';
    memcpy(buf + scope.len + 1, key.ptr, key.len);
    return scope.len + 1 + key.len;
}

static mem_entry **mem_find(mem_store *m, const char *id, size_t n)
{
    mem_entry **pp = &m->buckets[keel__fnv1a(KEEL__FNV1A_INIT, id, n) % m->nbuckets];
    for (; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->id_len == n && memcmp((*pp)->id, id, n) == 0)
            return pp;
    return pp;
}

static void mem_unlink(mem_store *m, mem_entry **pp)
{
    mem_entry *e = *pp;
    *pp = e->next;
    keel_idem_record_clear(&e->rec);
    keel_free(e->id);
    keel_free(e);
    m->count--;
}

static size_t mem_reclaim(mem_store *m, int64_t now_ms)
{
    size_t removed = 0;
    for (size_t b = 0; b < m->nbuckets; b++) {
        mem_entry **pp = &m->buckets[b];
        while (*pp != NULL) {
            if ((*pp)->rec.expires_ms <= now_ms) {
                mem_unlink(m, pp);
                removed++;
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    return removed;
}

static keel_err mem_set_if_absent(void *self, keel_str scope, keel_str key,
                                  const keel_idem_record *rec, int64_t now_ms,
                                  keel_idem_record *existing, keel_diag *diag)
{
    mem_store *m = self;
    if (!keel__idem_valid_scope_key(scope, key))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid idempotency scope or key");
    char id[KEEL_IDEM_SCOPE_MAX + KEEL_IDEM_KEY_MAX + 2];
    size_t n = mem_id(id, scope, key);
    keel_err e = KEEL_OK;
    pthread_mutex_lock(&m->mu);
    mem_entry **pp = mem_find(m, id, n);
    if (*pp != NULL && (*pp)->rec.expires_ms > now_ms) {
        e = existing ? keel__idem_record_copy(existing, &(*pp)->rec) : KEEL_OK;
        pthread_mutex_unlock(&m->mu);
        return e == KEEL_OK ? KEEL_EEXIST : e;
    }
    if (*pp != NULL) { /* expired: replace in place */
        keel_idem_record copy;
        if ((e = keel__idem_record_copy(&copy, rec)) == KEEL_OK) {
            keel_idem_record_clear(&(*pp)->rec);
            (*pp)->rec = copy;
        }
        pthread_mutex_unlock(&m->mu);
        return e;
    }
    if (m->count >= m->max && mem_reclaim(m, now_ms) == 0) {
        pthread_mutex_unlock(&m->mu);
        return keel_diag_set(diag, KEEL_EFULL, 0, "idempotency store full (%zu records)", m->max);
    }
    pp = mem_find(m, id, n); /* reclaim may have changed the chain */
    mem_entry *ne = keel_calloc(1, sizeof(*ne));
    if (ne == NULL || (ne->id = keel_strndup(id, n)) == NULL ||
        keel__idem_record_copy(&ne->rec, rec) != KEEL_OK) {
        if (ne != NULL) {
            keel_free(ne->id);
            keel_free(ne);
        }
        pthread_mutex_unlock(&m->mu);
        return KEEL_ENOMEM;
    }
    ne->id_len = n;
    *pp = ne;
    m->count++;
    pthread_mutex_unlock(&m->mu);
    return KEEL_OK;
}

static keel_err mem_update(void *self, keel_str scope, keel_str key, const keel_idem_record *rec,
                           int64_t now_ms, keel_diag *diag)
{
    (void)now_ms;
    mem_store *m = self;
    if (!keel__idem_valid_scope_key(scope, key))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid idempotency scope or key");
    char id[KEEL_IDEM_SCOPE_MAX + KEEL_IDEM_KEY_MAX + 2];
    size_t n = mem_id(id, scope, key);
    keel_err e;
    pthread_mutex_lock(&m->mu);
    mem_entry **pp = mem_find(m, id, n);
    if (*pp == NULL || strcmp((*pp)->rec.owner, rec->owner) != 0) {
        e = keel_diag_set(diag, KEEL_ESTATE, 0, "idempotency slot no longer held");
    } else {
        keel_idem_record copy;
        if ((e = keel__idem_record_copy(&copy, rec)) == KEEL_OK) {
            keel_idem_record_clear(&(*pp)->rec);
            (*pp)->rec = copy;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return e;
}

static keel_err mem_clear(void *self, keel_str scope, keel_str key, const char *owner,
                          keel_diag *diag)
{
    mem_store *m = self;
    if (!keel__idem_valid_scope_key(scope, key) || owner == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid idempotency scope or key");
    char id[KEEL_IDEM_SCOPE_MAX + KEEL_IDEM_KEY_MAX + 2];
    size_t n = mem_id(id, scope, key);
    keel_err e = KEEL_OK;
    pthread_mutex_lock(&m->mu);
    mem_entry **pp = mem_find(m, id, n);
    if (*pp == NULL || strcmp((*pp)->rec.owner, owner) != 0)
        e = keel_diag_set(diag, KEEL_ESTATE, 0, "idempotency slot no longer held");
    else
        mem_unlink(m, pp);
    pthread_mutex_unlock(&m->mu);
    return e;
}

static keel_err mem_purge(void *self, int64_t now_ms, uint64_t *removed, keel_diag *diag)
{
    (void)diag;
    mem_store *m = self;
    pthread_mutex_lock(&m->mu);
    size_t r = mem_reclaim(m, now_ms);
    pthread_mutex_unlock(&m->mu);
    if (removed != NULL)
        *removed = r;
    return KEEL_OK;
}

static void mem_destroy(void *self)
{
    mem_store *m = self;
    for (size_t b = 0; b < m->nbuckets; b++)
        while (m->buckets[b] != NULL)
            mem_unlink(m, &m->buckets[b]);
    keel_free(m->buckets);
    pthread_mutex_destroy(&m->mu);
    keel_free(m);
}

static const keel_idem_store_vt MEM_VT = {mem_set_if_absent, mem_update, mem_clear, mem_purge,
                                          mem_destroy};

keel_err keel_idem_store_memory(keel_idem_store **out, size_t max_records)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || max_records == 0)
        return KEEL_EINVAL;
    mem_store *m = keel_calloc(1, sizeof(*m));
    if (m == NULL)
        return KEEL_ENOMEM;
    m->max = max_records;
    m->nbuckets = max_records < 64 ? 64 : (max_records > (1u << 20) ? (1u << 20) : max_records);
    m->buckets = keel_calloc(m->nbuckets, sizeof(*m->buckets));
    if (m->buckets == NULL || pthread_mutex_init(&m->mu, NULL) != 0) {
        keel_free(m->buckets);
        keel_free(m);
        return KEEL_ENOMEM;
    }
    if ((*out = keel__idem_store_wrap(&MEM_VT, m)) == NULL) {
        mem_destroy(m);
        return KEEL_ENOMEM;
    }
    return KEEL_OK;
}

/* --------------------------------------------------------------- policy -- */

struct keel_idem {
    keel_idem_store *store;
    keel_idem_binding b;
    keel_idem_config cfg;
    char name[64];
    keel_series *c_outcome[6];
    atomic_uint_least64_t n[6];
};

enum { OUT_EXECUTED, OUT_REPLAYED, OUT_CONFLICT, OUT_IN_FLIGHT, OUT_RELEASED, OUT_STORE_ERROR };
static const char *const OUTCOME_NAMES[6] = {"executed", "replayed", "conflict",
                                             "in_flight", "released", "store_error"};

void keel_idem_config_default(keel_idem_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->name = "idempotency";
    cfg->ttl_ms = KEEL_IDEM_TTL_MS_DEFAULT;
    cfg->in_flight_timeout_ms = KEEL_IDEM_IN_FLIGHT_MS_DEFAULT;
    cfg->max_result_bytes = 1u << 20;
}

static void count(keel_idem *p, int which)
{
    atomic_fetch_add_explicit(&p->n[which], 1, memory_order_relaxed);
    if (p->c_outcome[which] != NULL)
        keel_series_add(p->c_outcome[which], 1);
}

keel_err keel_idem_create(keel_idem **out, keel_idem_store *store,
                          const keel_idem_binding *binding, const keel_idem_config *cfg,
                          keel_diag *diag)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || store == NULL || store->vt == NULL || binding == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "idempotency: store and binding required");
    if (binding->key == NULL || binding->payload == NULL || binding->save == NULL ||
        binding->replay == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "idempotency: binding.key, .payload, .save and .replay are required");
    keel_idem_config c;
    keel_idem_config_default(&c);
    if (cfg != NULL) {
        if (cfg->size != sizeof(*cfg))
            return keel_diag_set(diag, KEEL_EINVAL, 0, "idempotency: config.size mismatch");
        c = *cfg;
    }
    if (c.ttl_ms == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "idempotency: ttl_ms must be > 0");
    if (c.in_flight_timeout_ms == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "idempotency: in_flight_timeout_ms must be > 0");
    if (c.max_result_bytes == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "idempotency: max_result_bytes must be > 0");
    keel_idem *p = keel_calloc(1, sizeof(*p));
    if (p == NULL)
        return KEEL_ENOMEM;
    p->store = store;
    p->b = *binding;
    p->cfg = c;
    snprintf(p->name, sizeof(p->name), "%s", c.name ? c.name : "idempotency");
    p->cfg.name = p->name;
    if (c.metrics != NULL) {
        static const char *const labels[] = {"name", "outcome", NULL};
        keel_metric *fam = NULL;
        keel_err e = keel_metrics_counter(c.metrics, "keel_idempotency_requests_total",
                                          "Idempotent calls by outcome.", labels, &fam);
        for (int i = 0; i < 6 && e == KEEL_OK; i++) {
            const char *values[] = {p->name, OUTCOME_NAMES[i]};
            e = keel_metric_series(fam, values, &p->c_outcome[i]);
        }
        if (e != KEEL_OK) {
            keel_free(p);
            return keel_diag_set(diag, e, 0, "idempotency: cannot register metrics");
        }
    }
    *out = p;
    return KEEL_OK;
}

void keel_idem_destroy(keel_idem *p)
{
    keel_free(p);
}

void keel_idem_get_stats(keel_idem *p, keel_idem_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    if (p == NULL)
        return;
    out->executed = atomic_load(&p->n[OUT_EXECUTED]);
    out->replayed = atomic_load(&p->n[OUT_REPLAYED]);
    out->conflicts = atomic_load(&p->n[OUT_CONFLICT]);
    out->in_flight = atomic_load(&p->n[OUT_IN_FLIGHT]);
    out->released = atomic_load(&p->n[OUT_RELEASED]);
    out->store_errors = atomic_load(&p->n[OUT_STORE_ERROR]);
}

static int64_t wall_now(const keel_idem *p)
{
    return p->cfg.wall_ms ? p->cfg.wall_ms(p->cfg.clock_ud) : keel_time_wall_ms();
}

static keel_err new_owner(char owner[33])
{
    uint8_t raw[16];
    keel_err e = keel__random_pooled(raw, sizeof(raw)); /* one per request */
    if (e != KEEL_OK)
        return e;
    keel__hex_encode(raw, sizeof(raw), owner);
    return KEEL_OK;
}

typedef struct idem_layer {
    keel_layer base;
    keel_idem *p;
} idem_layer;

/* Replay a stored record (same payload). */
static keel_err replay(keel_idem *p, keel_call *call, const keel_idem_record *ex)
{
    if (ex->state == KEEL_IDEM_IN_FLIGHT) {
        count(p, OUT_IN_FLIGHT);
        call->wait_ms = 1000;
        call->refused_by = "idempotency";
        return KEEL_EPAY_IN_FLIGHT;
    }
    count(p, OUT_REPLAYED);
    keel_err stored = ex->state == KEEL_IDEM_COMPLETED ? KEEL_OK : ex->error;
    if (ex->state == KEEL_IDEM_FAILED && stored == KEEL_OK)
        stored = KEEL_EINTERNAL; /* a FAILED record always carries its error */
    keel_str bytes = {ex->result ? ex->result : "", ex->result ? ex->result_len : 0};
    return p->b.replay(call, stored, bytes, p->b.ud);
}

static keel_err idem_layer_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    keel_idem *p = ((idem_layer *)self)->p;
    keel_call *call = cx;
    keel_str key = p->b.key(call, p->b.ud);
    if (key.ptr == NULL)
        return keel_chain_next(cur, cx);
    keel_str scope = p->b.scope ? p->b.scope(call, p->b.ud) : KEEL_STR_NULL;
    if (!keel__idem_valid_scope_key(scope, key))
        return KEEL_EINVAL;

    keel_idem_record rec, ex;
    memset(&rec, 0, sizeof(rec));
    memset(&ex, 0, sizeof(ex));
    keel_err e;
    if ((e = keel_idem_hash(p->b.payload(call, p->b.ud), rec.payload_hash)) != KEEL_OK ||
        (e = new_owner(rec.owner)) != KEEL_OK)
        return e;
    rec.state = KEEL_IDEM_IN_FLIGHT;
    rec.created_ms = wall_now(p);
    rec.expires_ms = rec.created_ms + (int64_t)p->cfg.in_flight_timeout_ms;

    e = p->store->vt->set_if_absent(p->store->self, scope, key, &rec, rec.created_ms, &ex, NULL);
    if (e == KEEL_EEXIST) {
        if (CRYPTO_memcmp(ex.payload_hash, rec.payload_hash, 32) != 0) {
            keel_idem_record_clear(&ex);
            count(p, OUT_CONFLICT);
            call->refused_by = "idempotency";
            return KEEL_EPAY_IDEMPOTENCY_CONFLICT;
        }
        e = replay(p, call, &ex);
        keel_idem_record_clear(&ex);
        return e;
    }
    if (e != KEEL_OK) {
        count(p, OUT_STORE_ERROR);
        return e; /* fail closed: never run the operation unprotected */
    }

    count(p, OUT_EXECUTED);
    keel_err r = keel_chain_next(cur, cx);
    if (r != KEEL_OK && keel_policy_is_transient(call, r)) {
        /* Retriable: free the slot so the client can try again with the same key. */
        if (p->store->vt->clear(p->store->self, scope, key, rec.owner, NULL) != KEEL_OK)
            count(p, OUT_STORE_ERROR);
        else
            count(p, OUT_RELEASED);
        return r;
    }
    keel_buf out;
    keel_buf_init(&out, p->cfg.max_result_bytes);
    keel_err se = p->b.save(call, r, &out, p->b.ud);
    if (se == KEEL_OK) {
        int64_t now = wall_now(p);
        rec.state = r == KEEL_OK ? KEEL_IDEM_COMPLETED : KEEL_IDEM_FAILED;
        rec.error = r;
        rec.expires_ms = now + (int64_t)p->cfg.ttl_ms;
        rec.result = out.ptr;
        rec.result_len = out.len;
        se = p->store->vt->update(p->store->self, scope, key, &rec, now, NULL);
        rec.result = NULL;
    }
    keel_buf_cleanup(&out);
    if (se != KEEL_OK) {
        /* The outcome could not be recorded.  The operation's own result still goes back to
         * this caller; the IN_FLIGHT record expires after in_flight_timeout_ms and the
         * gateway's own idempotency (the key is forwarded) covers a later retry. */
        count(p, OUT_STORE_ERROR);
        KEEL_LOG_WARNING(keel_logger_get("keel.pay.idempotency"),
                         "could not record the outcome of %s: %s",
                         call->name ? call->name : "call", keel_strerror(se));
    }
    return r;
}

keel_err keel_idem_layer(keel_idem *p, keel_layer **out)
{
    if (out != NULL)
        *out = NULL;
    if (p == NULL || out == NULL)
        return KEEL_EINVAL;
    idem_layer *l = keel__layer_new(sizeof(*l), "idempotency", idem_layer_call);
    if (l == NULL)
        return KEEL_ENOMEM;
    l->p = p;
    *out = &l->base;
    return KEEL_OK;
}
