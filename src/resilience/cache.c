/* cache.c - TTL + LRU byte-string cache (hash chains + a doubly linked LRU list, one mutex)
 * and the cache policy layer. */
#include "keel_int.h"

#include <pthread.h>

#include <keel/cache.h>

#include "cache_int.h"

#define CACHE_MAX_BUCKETS ((size_t)1 << 20)
#define CACHE_LAYER_DEFAULT_MAX ((size_t)1 << 20)

typedef struct entry {
    struct entry *hnext;             /* hash chain */
    struct entry *prev, *next;       /* LRU list: head = most recent */
    uint64_t hash;
    uint64_t expires_at;
    size_t klen, vlen;
    char *key;                       /* klen bytes, then vlen value bytes (one allocation) */
} entry;

struct keel_cache {
    pthread_mutex_t mu;
    entry **buckets;
    size_t nbuckets; /* power of two */
    entry *head, *tail;
    size_t count, bytes;
    size_t max_entries, max_bytes;
    uint64_t ttl_ms;
    const keel_clock *clock;
    uint64_t hits, misses, evictions, expirations;
    keel_series *m_hit, *m_miss;
    char *name;
    /* another backend (cache_int.h), or NULL for the in-memory table */
    const keel__cache_backend *be;
    void *be_impl;
};

void keel_cache_config_default(keel_cache_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->name = "cache";
    cfg->max_entries = 1024;
    cfg->max_bytes = 0;
    cfg->ttl_ms = 300000;
}

static uint64_t hash_bytes(keel_str k)
{
    return keel__fnv1a(KEEL__FNV1A_INIT, k.ptr, k.len);
}

keel_err keel_cache_create(keel_cache **out, const keel_cache_config *cfg, keel_diag *diag)
{
    if (out == NULL || cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cache: out and cfg must not be NULL");
    *out = NULL;
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cache: size must be sizeof(keel_cache_config)");
    if (cfg->max_entries < 1)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cache: max_entries must be >= 1, got 0");
    if (cfg->ttl_ms < 1)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cache: ttl_ms must be >= 1, got 0");
    keel_cache *c = keel__new(keel_cache);
    if (c == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "cache: out of memory");
    /* Few buckets at first, doubled as entries arrive (grow_buckets): a cache sized for many
     * entries does not hold its whole bucket array from the start. */
    size_t nb = 16;
    c->nbuckets = nb;
    c->buckets = keel_calloc(nb, sizeof(entry *));
    c->name = keel_strdup(cfg->name ? cfg->name : "cache");
    if (c->buckets == NULL || c->name == NULL) {
        keel_free(c->buckets);
        keel_free(c->name);
        keel_free(c);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "cache: out of memory");
    }
    c->max_entries = cfg->max_entries;
    c->max_bytes = cfg->max_bytes;
    c->ttl_ms = cfg->ttl_ms;
    c->clock = cfg->clock;
    if (cfg->metrics != NULL) {
        static const char *const labels[] = {"cache", "result", NULL};
        keel_metric *f;
        keel_err e = keel_metrics_counter(cfg->metrics, "keel_cache_requests_total",
                                          "Cache lookups by result.", labels, &f);
        const char *hv[] = {c->name, "hit", NULL};
        const char *mv[] = {c->name, "miss", NULL};
        if (e == KEEL_OK)
            e = keel_metric_series(f, hv, &c->m_hit);
        if (e == KEEL_OK)
            e = keel_metric_series(f, mv, &c->m_miss);
        if (e != KEEL_OK) {
            keel_free(c->buckets);
            keel_free(c->name);
            keel_free(c);
            return keel_diag_set(diag, e, 0, "cache: cannot register metrics: %s",
                                 keel_strerror(e));
        }
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        keel_free(c->buckets);
        keel_free(c->name);
        keel_free(c);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "cache: cannot create mutex");
    }
    *out = c;
    return KEEL_OK;
}

/* ---- internals, all called with c->mu held ---- */

static entry **find_slot(keel_cache *c, keel_str key, uint64_t h)
{
    entry **pp = &c->buckets[h & (c->nbuckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->hnext) {
        entry *e = *pp;
        if (e->hash == h && e->klen == key.len && (key.len == 0 || memcmp(e->key, key.ptr, key.len) == 0))
            return pp;
    }
    return pp;
}

static void lru_unlink(keel_cache *c, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(keel_cache *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

/* Remove e (whose hash-chain slot is *pp) and free it. */
static void remove_at(keel_cache *c, entry **pp)
{
    entry *e = *pp;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->count--;
    c->bytes -= e->klen + e->vlen;
    keel_free(e);
}

static void remove_entry(keel_cache *c, entry *e)
{
    keel_str k = {e->key, e->klen};
    entry **pp = find_slot(c, k, e->hash);
    if (KEEL_ALWAYS(*pp == e))
        remove_at(c, pp);
}

static int expired(const entry *e, uint64_t now)
{
    return now >= e->expires_at;
}

/* Drop the LRU entry: an expiration if it has expired, else an eviction. */
static void drop_tail(keel_cache *c, uint64_t now)
{
    entry *t = c->tail;
    if (expired(t, now))
        c->expirations++;
    else
        c->evictions++;
    remove_entry(c, t);
}

/* Double the buckets once the table holds as many entries as buckets, up to what max_entries
 * needs (caller holds c->mu).  Out of memory keeps the table as it is. */
static void grow_buckets(keel_cache *c)
{
    if (c->count < c->nbuckets || c->nbuckets >= c->max_entries ||
        c->nbuckets >= CACHE_MAX_BUCKETS)
        return;
    size_t nb = c->nbuckets * 2;
    entry **nbk = keel_calloc(nb, sizeof(entry *));
    if (nbk == NULL)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (entry *e = c->buckets[i], *next; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = nbk[e->hash & (nb - 1)];
            nbk[e->hash & (nb - 1)] = e;
        }
    }
    keel_free(c->buckets);
    c->buckets = nbk;
    c->nbuckets = nb;
}

static void free_all(keel_cache *c)
{
    entry *e = c->head;
    while (e != NULL) {
        entry *n = e->next;
        keel_free(e);
        e = n;
    }
    memset(c->buckets, 0, c->nbuckets * sizeof(entry *));
    c->head = c->tail = NULL;
    c->count = 0;
    c->bytes = 0;
}

void keel_cache_destroy(keel_cache *c)
{
    if (c == NULL)
        return;
    if (c->be != NULL && c->be->destroy != NULL)
        c->be->destroy(c->be_impl);
    free_all(c);
    pthread_mutex_destroy(&c->mu);
    keel_free(c->buckets);
    keel_free(c->name);
    keel_free(c);
}

/* The keel_cache_requests_total series of a lookup that returned rc. */
static void count_lookup(keel_cache *c, keel_err rc)
{
    if (rc == KEEL_ENOTFOUND) {
        if (c->m_miss)
            keel_series_add(c->m_miss, 1);
    } else if (c->m_hit) {
        keel_series_add(c->m_hit, 1);
    }
}

/* The live entry for key (expired ones are removed), made most recently used; counts the hit
 * or miss.  Caller holds c->mu. */
static entry *lookup_locked(keel_cache *c, keel_str key, uint64_t h, uint64_t now)
{
    entry **pp = find_slot(c, key, h);
    entry *e = *pp;
    if (e != NULL && expired(e, now)) {
        remove_at(c, pp);
        c->expirations++;
        e = NULL;
    }
    if (e == NULL) {
        c->misses++;
        return NULL;
    }
    c->hits++;
    lru_unlink(c, e);
    lru_push_front(c, e);
    return e;
}

keel_err keel_cache_get(keel_cache *c, keel_str key, keel_buf *out)
{
    if (c == NULL || out == NULL || (key.ptr == NULL && key.len > 0))
        return KEEL_EINVAL;
    if (c->be != NULL) {
        keel_err be_rc = c->be->get(c->be_impl, key, out);
        pthread_mutex_lock(&c->mu);
        if (be_rc == KEEL_ENOTFOUND)
            c->misses++;
        else
            c->hits++;
        pthread_mutex_unlock(&c->mu);
        count_lookup(c, be_rc);
        return be_rc;
    }
    uint64_t h = hash_bytes(key), now = keel_clock_now_ms(c->clock);
    keel_err rc;
    pthread_mutex_lock(&c->mu);
    entry *e = lookup_locked(c, key, h, now);
    if (e == NULL)
        rc = KEEL_ENOTFOUND;
    else
        rc = keel_buf_append(out, e->key + e->klen, e->vlen);
    pthread_mutex_unlock(&c->mu);
    count_lookup(c, rc);
    return rc;
}

keel_err keel_cache_get_into(keel_cache *c, keel_str key, void *dst, size_t cap, size_t *len)
{
    if (c == NULL || len == NULL || (dst == NULL && cap > 0) || (key.ptr == NULL && key.len > 0))
        return KEEL_EINVAL;
    *len = 0;
    if (c->be != NULL) {
        keel_buf b;
        keel_buf_init(&b, SIZE_MAX - 1);
        keel_err rc = keel_cache_get(c, key, &b);
        if (rc == KEEL_OK) {
            *len = b.len;
            if (b.len <= cap) {
                if (b.len > 0)
                    memcpy(dst, b.ptr, b.len);
            }
            else
                rc = KEEL_ETOOBIG;
        }
        keel_buf_cleanup(&b);
        return rc;
    }
    uint64_t h = hash_bytes(key), now = keel_clock_now_ms(c->clock);
    keel_err rc = KEEL_ENOTFOUND;
    pthread_mutex_lock(&c->mu);
    entry *e = lookup_locked(c, key, h, now);
    if (e != NULL) {
        *len = e->vlen;
        rc = KEEL_ETOOBIG;
        if (e->vlen <= cap) {
            if (e->vlen > 0) /* dst may be NULL with cap 0 */
                memcpy(dst, e->key + e->klen, e->vlen);
            rc = KEEL_OK;
        }
    }
    pthread_mutex_unlock(&c->mu);
    count_lookup(c, rc);
    return rc;
}

keel_err keel_cache_set(keel_cache *c, keel_str key, keel_str value)
{
    return keel_cache_set_ttl(c, key, value, 0);
}

keel_err keel_cache_set_ttl(keel_cache *c, keel_str key, keel_str value, uint64_t ttl_ms)
{
    if (c == NULL || (key.ptr == NULL && key.len > 0) || (value.ptr == NULL && value.len > 0))
        return KEEL_EINVAL;
    if (c->be != NULL)
        return c->be->set(c->be_impl, key, value, ttl_ms ? ttl_ms : c->ttl_ms);
    if (key.len > SIZE_MAX / 2 || value.len > SIZE_MAX / 2 - key.len - sizeof(entry))
        return KEEL_ETOOBIG;
    size_t need = key.len + value.len;
    uint64_t h = hash_bytes(key);
    uint64_t now = keel_clock_now_ms(c->clock);
    uint64_t ttl = ttl_ms ? ttl_ms : c->ttl_ms;
    uint64_t exp = now > UINT64_MAX - ttl ? UINT64_MAX : now + ttl;

    if (c->max_bytes > 0 && need > c->max_bytes) {
        pthread_mutex_lock(&c->mu);
        entry **pp = find_slot(c, key, h);
        if (*pp != NULL)
            remove_at(c, pp);
        pthread_mutex_unlock(&c->mu);
        return KEEL_ETOOBIG;
    }
    /* Allocate outside the lock. */
    entry *n = keel_malloc(sizeof(entry) + need + 1);
    if (n == NULL)
        return KEEL_ENOMEM;
    memset(n, 0, sizeof(*n));
    n->key = (char *)(n + 1);
    if (key.len)
        memcpy(n->key, key.ptr, key.len);
    if (value.len)
        memcpy(n->key + key.len, value.ptr, value.len);
    n->key[need] = '\0';
    n->klen = key.len;
    n->vlen = value.len;
    n->hash = h;
    n->expires_at = exp;

    pthread_mutex_lock(&c->mu);
    entry **pp = find_slot(c, key, h);
    if (*pp != NULL)
        remove_at(c, pp);
    while (c->count > 0 &&
           (c->count + 1 > c->max_entries || (c->max_bytes > 0 && c->bytes + need > c->max_bytes)))
        drop_tail(c, now);
    grow_buckets(c);
    pp = &c->buckets[h & (c->nbuckets - 1)];
    n->hnext = *pp;
    *pp = n;
    lru_push_front(c, n);
    c->count++;
    c->bytes += need;
    pthread_mutex_unlock(&c->mu);
    return KEEL_OK;
}

keel_err keel_cache_delete(keel_cache *c, keel_str key)
{
    if (c == NULL || (key.ptr == NULL && key.len > 0))
        return KEEL_EINVAL;
    if (c->be != NULL)
        return c->be->del(c->be_impl, key);
    uint64_t h = hash_bytes(key);
    uint64_t now = keel_clock_now_ms(c->clock);
    keel_err rc = KEEL_ENOTFOUND;
    pthread_mutex_lock(&c->mu);
    entry **pp = find_slot(c, key, h);
    if (*pp != NULL) {
        if (expired(*pp, now))
            c->expirations++;
        else
            rc = KEEL_OK;
        remove_at(c, pp);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void keel_cache_clear(keel_cache *c)
{
    if (c == NULL)
        return;
    if (c->be != NULL) {
        c->be->clear(c->be_impl);
        return;
    }
    pthread_mutex_lock(&c->mu);
    free_all(c);
    pthread_mutex_unlock(&c->mu);
}

size_t keel_cache_purge(keel_cache *c)
{
    if (c == NULL || c->be != NULL) /* a backend expires its entries itself */
        return 0;
    uint64_t now = keel_clock_now_ms(c->clock);
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nbuckets; i++) {
        entry **pp = &c->buckets[i];
        while (*pp != NULL) {
            if (expired(*pp, now)) {
                remove_at(c, pp);
                n++;
            } else {
                pp = &(*pp)->hnext;
            }
        }
    }
    c->expirations += n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void keel_cache_get_stats(keel_cache *c, keel_cache_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->expirations = c->expirations;
    out->entries = c->count;
    out->bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}

/* The backend hook (cache_int.h): an in-memory cache whose table stays empty, plus be. */
keel_err keel__cache_create_backend(const keel_cache_config *cfg, const keel__cache_backend *be,
                                    void *impl, keel_cache **out, keel_diag *diag)
{
    if (cfg == NULL || be == NULL || be->get == NULL || be->set == NULL || be->del == NULL ||
        be->clear == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cache: invalid backend arguments");
    keel_cache_config cc = *cfg;
    if (cc.size == sizeof(cc))
        cc.max_entries = 1;
    keel_err e = keel_cache_create(out, &cc, diag);
    if (e == KEEL_OK) {
        (*out)->be = be;
        (*out)->be_impl = impl;
    }
    return e;
}

void *keel__cache_backend_impl(const keel_cache *c, const keel__cache_backend *be)
{
    return c != NULL && be != NULL && c->be == be ? c->be_impl : NULL;
}

const char *keel__cache_name(const keel_cache *c)
{
    return c != NULL ? c->name : NULL;
}

/* ------------------------------------------------------------- layer -- */

typedef struct cache_layer {
    keel_layer base;
    keel_cache *cache;
    keel_cache_binding b;
} cache_layer;

static keel_err cache_layer_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    cache_layer *cl = (cache_layer *)self;
    keel_call *call = cx;
    keel_str key = cl->b.key(call, cl->b.ud);
    if (key.ptr == NULL)
        return keel_chain_next(cur, cx);
    size_t cap = cl->cache->max_bytes ? cl->cache->max_bytes : CACHE_LAYER_DEFAULT_MAX;
    keel_buf v;
    keel_buf_init(&v, SIZE_MAX - 1);
    keel_err e = keel_cache_get(cl->cache, key, &v);
    if (e == KEEL_OK) {
        keel_str cached = {v.ptr ? v.ptr : "", v.len};
        e = cl->b.load(call, cached, cl->b.ud);
        keel_buf_cleanup(&v);
        if (e == KEEL_OK)
            return KEEL_OK;
        keel_err de = keel_cache_delete(cl->cache, key); /* unusable entry: drop it, run as a miss */
        KEEL_UNUSED(de);
    } else {
        keel_buf_cleanup(&v);
    }
    e = keel_chain_next(cur, cx);
    if (e != KEEL_OK)
        return e;
    keel_buf out;
    keel_buf_init(&out, cap);
    if (cl->b.store(call, &out, cl->b.ud) == KEEL_OK) {
        keel_str val = {out.ptr ? out.ptr : "", out.len};
        keel_err se = keel_cache_set(cl->cache, key, val); /* a failed store never fails the call */
        KEEL_UNUSED(se);
    }
    keel_buf_cleanup(&out);
    return KEEL_OK;
}

keel_err keel_cache_layer(keel_cache *c, const keel_cache_binding *binding, keel_layer **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL || binding == NULL || out == NULL || binding->key == NULL ||
        binding->load == NULL || binding->store == NULL)
        return KEEL_EINVAL;
    cache_layer *cl = keel__layer_new(sizeof(*cl), "cache", cache_layer_call);
    if (cl == NULL)
        return KEEL_ENOMEM;
    cl->cache = c;
    cl->b = *binding;
    *out = &cl->base;
    return KEEL_OK;
}
