/* velocity.c - sliding-window event counters for the fraud velocity rule (keel/fraud.h):
 * an in-memory tracker and a Redis tracker with the same semantics.
 *
 * Window: an event at time t counts at time now while now - window < t <= now, i.e. events
 * with t <= now - window have expired (both trackers remove exactly those). */
#include "keel_int.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <keel/fraud.h>
#include <keel/policy.h>
#include <keel/redis.h>

#define VEL_PREFIX_MAX 128

/* -------------------------------------------------------------- interface -- */

static keel_err check_args(keel_velocity *v, keel_str key, uint64_t window_ms, uint64_t *count)
{
    if (count != NULL)
        *count = 0;
    if (v == NULL || v->ops == NULL || count == NULL || key.ptr == NULL || key.len == 0 ||
        key.len > KEEL_VELOCITY_KEY_MAX || window_ms == 0)
        return KEEL_EINVAL;
    return KEEL_OK;
}

keel_err keel_velocity_hit(keel_velocity *v, keel_str key, uint64_t window_ms, uint64_t *count)
{
    keel_err e = check_args(v, key, window_ms, count);
    if (e != KEEL_OK || v->ops->hit == NULL)
        return e != KEEL_OK ? e : KEEL_EUNSUPPORTED;
    return v->ops->hit(v, key, window_ms, count);
}

keel_err keel_velocity_count(keel_velocity *v, keel_str key, uint64_t window_ms, uint64_t *count)
{
    keel_err e = check_args(v, key, window_ms, count);
    if (e != KEEL_OK || v->ops->count == NULL)
        return e != KEEL_OK ? e : KEEL_EUNSUPPORTED;
    return v->ops->count(v, key, window_ms, count);
}

void keel_velocity_destroy(keel_velocity *v)
{
    if (v != NULL && v->ops != NULL && v->ops->destroy != NULL)
        v->ops->destroy(v);
}

/* ------------------------------------------------------------------ memory -- */

typedef struct vm_node {
    struct vm_node *next;     /* hash chain */
    struct vm_node *lru_prev; /* towards the most recently used */
    struct vm_node *lru_next; /* towards the least recently used */
    uint64_t hash;
    uint64_t window_ms; /* of the last use, for expiry-based eviction */
    uint64_t *ts;       /* ring of timestamps, oldest at head */
    size_t head, len, cap;
    size_t keylen;
    char key[]; /* keylen bytes */
} vm_node;

typedef struct vm_tracker {
    keel_velocity v; /* first member: the interface */
    pthread_mutex_t mu;
    keel_velocity_memory_config cfg;
    vm_node **buckets;
    size_t nbuckets, nkeys;
    vm_node *lru_head; /* most recently used */
    vm_node *lru_tail; /* least recently used */
} vm_tracker;

static const keel_velocity_ops MEMORY_OPS;

static uint64_t key_hash(keel_str k)
{
    return keel__fnv1a(KEEL__FNV1A_INIT, k.ptr, k.len);
}

static void lru_unlink(vm_tracker *t, vm_node *n)
{
    if (n->lru_prev != NULL)
        n->lru_prev->lru_next = n->lru_next;
    else
        t->lru_head = n->lru_next;
    if (n->lru_next != NULL)
        n->lru_next->lru_prev = n->lru_prev;
    else
        t->lru_tail = n->lru_prev;
    n->lru_prev = n->lru_next = NULL;
}

static void lru_push_front(vm_tracker *t, vm_node *n)
{
    n->lru_prev = NULL;
    n->lru_next = t->lru_head;
    if (t->lru_head != NULL)
        t->lru_head->lru_prev = n;
    t->lru_head = n;
    if (t->lru_tail == NULL)
        t->lru_tail = n;
}

static void node_remove(vm_tracker *t, vm_node *n)
{
    vm_node **pp = &t->buckets[n->hash & (t->nbuckets - 1)];
    while (*pp != NULL && *pp != n)
        pp = &(*pp)->next;
    if (KEEL_ALWAYS(*pp == n))
        *pp = n->next;
    lru_unlink(t, n);
    t->nkeys--;
    keel_free(n->ts);
    keel_free(n);
}

static vm_node *node_find(const vm_tracker *t, keel_str key, uint64_t h)
{
    for (vm_node *n = t->buckets[h & (t->nbuckets - 1)]; n != NULL; n = n->next)
        if (n->hash == h && n->keylen == key.len && memcmp(n->key, key.ptr, key.len) == 0)
            return n;
    return NULL;
}

static keel_err grow_buckets(vm_tracker *t)
{
    size_t nb = t->nbuckets * 2;
    vm_node **b = keel_calloc(nb, sizeof(*b));
    if (b == NULL)
        return KEEL_ENOMEM;
    for (size_t i = 0; i < t->nbuckets; i++) {
        vm_node *n = t->buckets[i];
        while (n != NULL) {
            vm_node *next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
            n = next;
        }
    }
    keel_free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
    return KEEL_OK;
}

/* Drop the events of n that left the window ending at now. */
static void prune(vm_node *n, uint64_t now, uint64_t window_ms)
{
    if (now < window_ms)
        return; /* nothing can be that old */
    uint64_t cutoff = now - window_ms;
    while (n->len > 0 && n->ts[n->head] <= cutoff) {
        n->head = (n->head + 1) % n->cap;
        n->len--;
    }
}

static uint64_t newest(const vm_node *n)
{
    return n->ts[(n->head + n->len - 1) % n->cap];
}

/* Evict least recently used keys whose events have all expired (a little work per call keeps
 * memory proportional to the active keys). */
static void evict_expired(vm_tracker *t, uint64_t now)
{
    for (int i = 0; i < 2 && t->lru_tail != NULL; i++) {
        vm_node *n = t->lru_tail;
        if (n->len > 0 && (now < n->window_ms || newest(n) > now - n->window_ms))
            return;
        node_remove(t, n);
    }
}

static keel_err push(vm_tracker *t, vm_node *n, uint64_t now)
{
    if (n->len == n->cap && n->cap < t->cfg.max_events) {
        size_t nc = n->cap ? n->cap * 2 : 4;
        if (nc > t->cfg.max_events)
            nc = t->cfg.max_events;
        uint64_t *ts = keel_malloc(nc * sizeof(*ts));
        if (ts == NULL)
            return KEEL_ENOMEM;
        for (size_t i = 0; i < n->len; i++)
            ts[i] = n->ts[(n->head + i) % n->cap];
        keel_free(n->ts);
        n->ts = ts;
        n->head = 0;
        n->cap = nc;
    }
    if (n->len == n->cap) { /* full at max_events: the oldest goes, the count saturates */
        n->head = (n->head + 1) % n->cap;
        n->len--;
    }
    n->ts[(n->head + n->len) % n->cap] = now;
    n->len++;
    return KEEL_OK;
}

static keel_err vm_hit(keel_velocity *v, keel_str key, uint64_t window_ms, uint64_t *count)
{
    vm_tracker *t = (vm_tracker *)v;
    uint64_t h = key_hash(key);
    keel_err e = KEEL_OK;
    pthread_mutex_lock(&t->mu);
    uint64_t now = keel_clock_now_ms(t->cfg.clock);
    evict_expired(t, now);
    vm_node *n = node_find(t, key, h);
    if (n == NULL) {
        if (t->nkeys >= t->cfg.max_keys)
            node_remove(t, t->lru_tail); /* full: the least recently used key goes */
        if (t->nkeys >= t->nbuckets && t->nbuckets < (size_t)1 << 24) {
            e = grow_buckets(t);
            if (e != KEEL_OK)
                goto out;
        }
        n = keel_calloc(1, sizeof(*n) + key.len);
        if (n == NULL) {
            e = KEEL_ENOMEM;
            goto out;
        }
        n->hash = h;
        n->keylen = key.len;
        memcpy(n->key, key.ptr, key.len);
        n->next = t->buckets[h & (t->nbuckets - 1)];
        t->buckets[h & (t->nbuckets - 1)] = n;
        t->nkeys++;
    } else {
        lru_unlink(t, n);
    }
    lru_push_front(t, n);
    n->window_ms = window_ms;
    prune(n, now, window_ms);
    e = push(t, n, now);
    *count = n->len;
out:
    pthread_mutex_unlock(&t->mu);
    return e;
}

static keel_err vm_count(keel_velocity *v, keel_str key, uint64_t window_ms, uint64_t *count)
{
    vm_tracker *t = (vm_tracker *)v;
    uint64_t h = key_hash(key);
    pthread_mutex_lock(&t->mu);
    uint64_t now = keel_clock_now_ms(t->cfg.clock);
    vm_node *n = node_find(t, key, h);
    if (n != NULL) {
        prune(n, now, window_ms);
        *count = n->len;
    }
    pthread_mutex_unlock(&t->mu);
    return KEEL_OK;
}

static void vm_destroy(keel_velocity *v)
{
    vm_tracker *t = (vm_tracker *)v;
    while (t->lru_head != NULL)
        node_remove(t, t->lru_head);
    keel_free(t->buckets);
    pthread_mutex_destroy(&t->mu);
    keel_free(t);
}

static const keel_velocity_ops MEMORY_OPS = {"memory", vm_hit, vm_count, vm_destroy};

void keel_velocity_memory_config_default(keel_velocity_memory_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->clock = NULL;
    cfg->max_keys = 100000;
    cfg->max_events = 1000;
}

keel_err keel_velocity_memory_create(keel_velocity **out, const keel_velocity_memory_config *cfg,
                                     keel_diag *diag)
{
    keel_velocity_memory_config c;
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "out: NULL");
    *out = NULL;
    keel_velocity_memory_config_default(&c);
    if (cfg != NULL) {
        if (cfg->size != sizeof(*cfg))
            return keel_diag_set(diag, KEEL_EINVAL, 0,
                                 "size: not sizeof(keel_velocity_memory_config); use "
                                 "keel_velocity_memory_config_default()");
        c = *cfg;
    }
    if (c.max_keys == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "max_keys: must be > 0");
    if (c.max_events == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "max_events: must be > 0");
    vm_tracker *t = keel__new(vm_tracker);
    if (t == NULL)
        return KEEL_ENOMEM;
    t->nbuckets = 64;
    t->buckets = keel_calloc(t->nbuckets, sizeof(*t->buckets));
    if (t->buckets == NULL || pthread_mutex_init(&t->mu, NULL) != 0) {
        keel_free(t->buckets);
        keel_free(t);
        return KEEL_ENOMEM;
    }
    t->v.ops = &MEMORY_OPS;
    t->cfg = c;
    *out = &t->v;
    return KEEL_OK;
}

size_t keel_velocity_memory_keys(const keel_velocity *v)
{
    if (v == NULL || v->ops != &MEMORY_OPS)
        return 0;
    const vm_tracker *t = (const vm_tracker *)v;
    pthread_mutex_t *mu = (pthread_mutex_t *)(uintptr_t)&t->mu;
    pthread_mutex_lock(mu);
    size_t n = t->nkeys;
    pthread_mutex_unlock(mu);
    return n;
}

/* ------------------------------------------------------------------- Redis -- */

/* KEYS[1] = the sorted set; ARGV = window_ms, now_ms (-1: use the server's TIME), add (1/0),
 * member, max_events.  Returns the events in the window after the update.  Times are
 * formatted with %d so that large values never reach Redis in exponent notation. */
static const char VELOCITY_LUA[] =
    "local key = KEYS[1]\n"
    "local window = tonumber(ARGV[1])\n"
    "local now = tonumber(ARGV[2])\n"
    "if now < 0 then\n"
    "  local t = redis.call('TIME')\n"
    "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "end\n"
    "redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - window))\n"
    "if ARGV[3] == '1' then\n"
    "  redis.call('ZADD', key, string.format('%d', now), ARGV[4])\n"
    "  local n = redis.call('ZCARD', key)\n"
    "  local cap = tonumber(ARGV[5])\n"
    "  if n > cap then redis.call('ZREMRANGEBYRANK', key, 0, n - cap - 1) end\n"
    "  redis.call('PEXPIRE', key, ARGV[1])\n"
    "end\n"
    "return redis.call('ZCARD', key)\n";

typedef struct vr_tracker {
    keel_velocity v; /* first member: the interface */
    keel_redis_script *script;
    const keel_clock *clock;
    size_t max_events;
    char prefix[VEL_PREFIX_MAX + 1];
    size_t prefix_len;
    char instance[17]; /* random id: members stay unique across instances */
    atomic_uint_fast64_t seq;
} vr_tracker;

static keel_err vr_run(keel_velocity *v, keel_str key, uint64_t window_ms, int add,
                       uint64_t *count)
{
    vr_tracker *t = (vr_tracker *)v;
    char k[VEL_PREFIX_MAX + KEEL_VELOCITY_KEY_MAX + 1];
    if (memchr(key.ptr, '\0', key.len) != NULL)
        return KEEL_EINVAL; /* keys travel NUL-terminated */
    memcpy(k, t->prefix, t->prefix_len);
    memcpy(k + t->prefix_len, key.ptr, key.len);
    k[t->prefix_len + key.len] = '\0';
    char window[24], now[24], member[64], cap[24];
    snprintf(window, sizeof(window), "%" PRIu64, window_ms);
    if (t->clock != NULL)
        snprintf(now, sizeof(now), "%" PRIu64, keel_clock_now_ms(t->clock));
    else
        snprintf(now, sizeof(now), "-1");
    uint64_t seq = (uint64_t)atomic_fetch_add(&t->seq, 1);
    snprintf(member, sizeof(member), "%s:%" PRIu64, t->instance, seq);
    snprintf(cap, sizeof(cap), "%zu", t->max_events);
    const char *keys[] = {k};
    const char *args[] = {window, now, add ? "1" : "0", member, cap};
    keel_redis_reply *rep = NULL;
    keel_err e = keel_redis_eval(t->script, &rep, 1, keys, 5, args, NULL);
    if (e != KEEL_OK)
        return e;
    if (keel_redis_reply_type(rep) != KEEL_REDIS_INT || keel_redis_reply_int(rep) < 0) {
        keel_redis_reply_free(rep);
        return KEEL_EIO;
    }
    *count = (uint64_t)keel_redis_reply_int(rep);
    keel_redis_reply_free(rep);
    return KEEL_OK;
}

static keel_err vr_hit(keel_velocity *v, keel_str key, uint64_t window_ms, uint64_t *count)
{
    return vr_run(v, key, window_ms, 1, count);
}

static keel_err vr_count(keel_velocity *v, keel_str key, uint64_t window_ms, uint64_t *count)
{
    return vr_run(v, key, window_ms, 0, count);
}

static void vr_destroy(keel_velocity *v)
{
    vr_tracker *t = (vr_tracker *)v;
    keel_redis_script_destroy(t->script);
    keel_free(t);
}

static const keel_velocity_ops REDIS_OPS = {"redis", vr_hit, vr_count, vr_destroy};

void keel_velocity_redis_config_default(keel_velocity_redis_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->prefix = "keel:velocity:";
    cfg->max_events = 1000;
}

keel_err keel_velocity_redis_create(keel_velocity **out, const keel_velocity_redis_config *cfg,
                                    keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "out: NULL");
    *out = NULL;
    if (cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cfg: NULL (redis is required)");
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "size: not sizeof(keel_velocity_redis_config); use "
                             "keel_velocity_redis_config_default()");
    if (cfg->redis == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "redis: NULL");
    const char *prefix = cfg->prefix != NULL ? cfg->prefix : "";
    size_t plen = strnlen(prefix, VEL_PREFIX_MAX + 1);
    if (plen > VEL_PREFIX_MAX)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "prefix: longer than %d bytes",
                             VEL_PREFIX_MAX);
    if (cfg->max_events == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "max_events: must be > 0");
    vr_tracker *t = keel__new(vr_tracker);
    if (t == NULL)
        return KEEL_ENOMEM;
    unsigned char id[8];
    keel_err e = keel_random_bytes(id, sizeof(id));
    if (e == KEEL_OK)
        e = keel_redis_script_create(cfg->redis, VELOCITY_LUA, &t->script);
    if (e != KEEL_OK) {
        keel_free(t);
        return keel_diag_set(diag, e, 0, "velocity: cannot prepare the Redis script");
    }
    keel__hex_encode(id, sizeof(id), t->instance);
    memcpy(t->prefix, prefix, plen);
    t->prefix[plen] = '\0';
    t->prefix_len = plen;
    t->clock = cfg->clock;
    t->max_events = cfg->max_events;
    atomic_init(&t->seq, 0);
    t->v.ops = &REDIS_OPS;
    *out = &t->v;
    return KEEL_OK;
}
