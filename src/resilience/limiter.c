/* limiter.c - in-memory rate limiters: GCRA, token bucket, sliding log and sliding window
 * counter over a sharded, capped key table (reference.md section 5). */
#include "keel_int.h"

#include <pthread.h>

#include <keel/limiter.h>

#include "limiter_int.h"

#define MAX_SHARDS 1024u
#define MAX_BUCKETS 65536u
#define INITIAL_BUCKETS 8u
#define MAX_SPAN_MS (7ull * 24 * 3600 * 1000) /* longest period / window: 7 days */
#define MICRO 1000000ull

typedef struct entry {
    struct entry *hnext;        /* hash chain */
    struct entry *prev, *next;  /* LRU list: head = most recently used */
    uint64_t hash;
    union {
        int64_t tat_us; /* GCRA: theoretical arrival time */
        struct {
            uint64_t micro; /* tokens * 1e6 */
            uint64_t last_ms;
        } tb;
        struct {
            uint32_t head, count; /* ring of timestamps in log[] */
        } lg;
        struct {
            uint64_t widx; /* index of the current window */
            uint32_t cur, prev;
        } sw;
    } s;
    uint32_t klen;
    uint64_t log[]; /* sliding log: `limit` timestamps; the key bytes follow */
} entry;

typedef struct shard {
    pthread_mutex_t mu;
    entry **buckets;
    size_t nbuckets;
    size_t count;
    entry *lru_head, *lru_tail;
} shard;

struct keel_limiter {
    keel_limiter_config cfg;
    char *name;
    const keel_clock *clock;
    shard *shards;
    unsigned nshards;
    size_t per_shard;
    uint64_t seed;
    size_t log_slots; /* timestamps per entry (sliding log) */
    uint32_t limit;   /* advertised quota */
    uint64_t window_ms;
    /* GCRA */
    int64_t t_us, tau_us;
    /* token bucket */
    uint64_t cap_micro, rate_micro_per_ms;
    /* another backend (limiter_int.h), or NULL for the in-memory table */
    const keel__limiter_backend *be;
    void *be_impl;
};

void keel_limiter_config_default(keel_limiter_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->algorithm = KEEL_LIMIT_GCRA;
    cfg->name = "limiter";
    cfg->rate = 10;
    cfg->period_ms = 1000;
    cfg->burst = 10;
    cfg->capacity = 10;
    cfg->refill_per_s = 10;
    cfg->limit = 10;
    cfg->window_ms = 1000;
    cfg->max_keys = 10000;
    cfg->shards = 64;
    cfg->clock = NULL;
}

static keel_err bad(keel_diag *d, const char *field, const char *rule, uint64_t got)
{
    return keel_diag_set(d, KEEL_EINVAL, 0, "limiter: %s must be %s, got %llu", field, rule,
                         (unsigned long long)got);
}

static keel_err validate(const keel_limiter_config *c, keel_diag *d)
{
    if (c->size < sizeof(*c))
        return bad(d, "size", "sizeof(keel_limiter_config)", c->size);
    if (c->max_keys == 0)
        return bad(d, "max_keys", "> 0", 0);
    switch (c->algorithm) {
    case KEEL_LIMIT_GCRA:
        if (c->rate == 0)
            return bad(d, "rate", "> 0", 0);
        if (c->period_ms == 0 || c->period_ms > MAX_SPAN_MS)
            return bad(d, "period_ms", "in [1, 604800000]", c->period_ms);
        if (c->period_ms * 1000u / c->rate == 0)
            return bad(d, "rate", "at most period_ms * 1000", c->rate);
        if ((uint64_t)c->burst + 1 > (uint64_t)(INT64_MAX / 4) / (c->period_ms * 1000u / c->rate))
            return bad(d, "burst", "small enough that period_ms * (burst + 1) / rate fits",
                       c->burst);
        return KEEL_OK;
    case KEEL_LIMIT_TOKEN_BUCKET:
        if (c->capacity == 0)
            return bad(d, "capacity", "> 0", 0);
        if (c->refill_per_s == 0)
            return bad(d, "refill_per_s", "> 0", 0);
        return KEEL_OK;
    case KEEL_LIMIT_SLIDING_LOG:
    case KEEL_LIMIT_SLIDING_WINDOW:
        if (c->limit == 0)
            return bad(d, "limit", "> 0", 0);
        if (c->algorithm == KEEL_LIMIT_SLIDING_LOG && c->limit > KEEL_LIMITER_LOG_MAX)
            return bad(d, "limit", "at most 100000 for a sliding log", c->limit);
        if (c->window_ms == 0 || c->window_ms > MAX_SPAN_MS)
            return bad(d, "window_ms", "in [1, 604800000]", c->window_ms);
        return KEEL_OK;
    }
    return bad(d, "algorithm", "a KEEL_LIMIT_* value", (uint64_t)c->algorithm);
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

keel_err keel_limiter_create(const keel_limiter_config *cfg, keel_limiter **out, keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "limiter: out must not be NULL");
    *out = NULL;
    if (cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "limiter: config must not be NULL");
    keel_err e = validate(cfg, diag);
    if (e != KEEL_OK)
        return e;
    keel_limiter *l = keel__new(keel_limiter);
    if (l == NULL)
        return KEEL_ENOMEM;
    l->cfg = *cfg;
    l->name = keel_strdup(cfg->name ? cfg->name : "limiter");
    l->clock = cfg->clock;
    unsigned want = cfg->shards ? cfg->shards : 64u;
    if (want > MAX_SHARDS)
        want = MAX_SHARDS;
    unsigned n = 1;
    while (n < want)
        n <<= 1;
    l->nshards = n;
    l->per_shard = (size_t)ceil_div(cfg->max_keys, n);
    if (keel_random_bytes(&l->seed, sizeof(l->seed)) != KEEL_OK)
        l->seed = (uint64_t)(uintptr_t)l ^ keel_time_mono_ns();
    switch (cfg->algorithm) {
    case KEEL_LIMIT_GCRA:
        l->t_us = (int64_t)(cfg->period_ms * 1000u / cfg->rate);
        l->tau_us = l->t_us * ((int64_t)cfg->burst + 1);
        l->limit = cfg->burst + 1;
        l->window_ms = ceil_div((uint64_t)l->tau_us, 1000);
        break;
    case KEEL_LIMIT_TOKEN_BUCKET:
        l->cap_micro = (uint64_t)cfg->capacity * MICRO;
        l->rate_micro_per_ms = (uint64_t)cfg->refill_per_s * 1000u;
        l->limit = cfg->capacity;
        l->window_ms = ceil_div(l->cap_micro, l->rate_micro_per_ms);
        break;
    case KEEL_LIMIT_SLIDING_LOG:
        l->log_slots = cfg->limit;
        l->limit = cfg->limit;
        l->window_ms = cfg->window_ms;
        break;
    case KEEL_LIMIT_SLIDING_WINDOW:
        l->limit = cfg->limit;
        l->window_ms = cfg->window_ms;
        break;
    }
    /* Buckets start few and double with the keys seen (grow_buckets), so a limiter sized for
     * 100 000 keys does not hold megabytes of empty buckets from the start. */
    size_t nb = INITIAL_BUCKETS;
    l->shards = keel_calloc(n, sizeof(shard));
    if (l->name == NULL || l->shards == NULL) {
        keel_free(l->shards);
        keel_free(l->name);
        keel_free(l);
        return KEEL_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        shard *s = &l->shards[i];
        s->buckets = keel_calloc(nb, sizeof(entry *));
        if (s->buckets == NULL || pthread_mutex_init(&s->mu, NULL) != 0) {
            keel_free(s->buckets);
            s->buckets = NULL;
            l->nshards = i;
            keel_limiter_destroy(l);
            return KEEL_ENOMEM;
        }
        s->nbuckets = nb;
    }
    *out = l;
    return KEEL_OK;
}

void keel_limiter_destroy(keel_limiter *l)
{
    if (l == NULL)
        return;
    if (l->be != NULL && l->be->destroy != NULL)
        l->be->destroy(l->be_impl);
    for (unsigned i = 0; i < l->nshards; i++) {
        shard *s = &l->shards[i];
        for (entry *e = s->lru_head; e;) {
            entry *next = e->next;
            keel_free(e);
            e = next;
        }
        keel_free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    keel_free(l->shards);
    keel_free(l->name);
    keel_free(l);
}

/* ------------------------------------------------------------ key table -- */

static uint64_t hash_key(uint64_t seed, keel_str k)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < k.len; i++) {
        h ^= (unsigned char)k.ptr[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static const char *entry_key(const keel_limiter *l, const entry *e)
{
    return (const char *)(e->log + l->log_slots);
}

static void lru_unlink(shard *s, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(shard *s, entry *e)
{
    e->prev = NULL;
    e->next = s->lru_head;
    if (s->lru_head)
        s->lru_head->prev = e;
    s->lru_head = e;
    if (s->lru_tail == NULL)
        s->lru_tail = e;
}

static size_t bucket_of(const shard *s, uint64_t h)
{
    return (size_t)(h >> 20) & (s->nbuckets - 1);
}

static void evict_lru(shard *s)
{
    entry *victim = s->lru_tail;
    if (victim == NULL)
        return;
    entry **pp = &s->buckets[bucket_of(s, victim->hash)];
    while (*pp && *pp != victim)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = victim->hnext;
    lru_unlink(s, victim);
    s->count--;
    keel_free(victim);
}

static void init_state(const keel_limiter *l, entry *e, uint64_t now_ms)
{
    switch (l->cfg.algorithm) {
    case KEEL_LIMIT_GCRA:
        e->s.tat_us = (int64_t)(now_ms * 1000u);
        break;
    case KEEL_LIMIT_TOKEN_BUCKET:
        e->s.tb.micro = l->cap_micro;
        e->s.tb.last_ms = now_ms;
        break;
    case KEEL_LIMIT_SLIDING_LOG:
        e->s.lg.head = e->s.lg.count = 0;
        break;
    case KEEL_LIMIT_SLIDING_WINDOW:
        e->s.sw.widx = now_ms / l->cfg.window_ms;
        e->s.sw.cur = e->s.sw.prev = 0;
        break;
    }
}

/* Double the shard's buckets when it holds more keys than buckets (load factor 1), up to the
 * most its key cap needs.  Out of memory leaves the table as it is (chains just get longer). */
static void grow_buckets(const keel_limiter *l, shard *s)
{
    if (s->count < s->nbuckets || s->nbuckets >= MAX_BUCKETS || s->nbuckets >= l->per_shard)
        return;
    size_t nb = s->nbuckets * 2;
    entry **nbk = keel_calloc(nb, sizeof(entry *));
    if (nbk == NULL)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (entry *e = s->buckets[i], *next; e != NULL; e = next) {
            next = e->hnext;
            size_t b = (size_t)(e->hash >> 20) & (nb - 1);
            e->hnext = nbk[b];
            nbk[b] = e;
        }
    }
    keel_free(s->buckets);
    s->buckets = nbk;
    s->nbuckets = nb;
}

/* Find or create the entry for key; the shard is locked by the caller.  NULL on OOM. */
static entry *lookup(keel_limiter *l, shard *s, uint64_t h, keel_str key, uint64_t now_ms)
{
    size_t b = bucket_of(s, h);
    for (entry *e = s->buckets[b]; e; e = e->hnext) {
        if (e->hash == h && e->klen == key.len && memcmp(entry_key(l, e), key.ptr, key.len) == 0) {
            if (s->lru_head != e) {
                lru_unlink(s, e);
                lru_push_front(s, e);
            }
            return e;
        }
    }
    if (s->count >= l->per_shard)
        evict_lru(s);
    entry *e = keel_malloc(sizeof(entry) + l->log_slots * sizeof(uint64_t) + key.len + 1);
    if (e == NULL)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->hash = h;
    e->klen = (uint32_t)key.len;
    char *k = (char *)(e->log + l->log_slots);
    memcpy(k, key.ptr, key.len);
    k[key.len] = '\0';
    init_state(l, e, now_ms);
    grow_buckets(l, s);
    b = bucket_of(s, h);
    e->hnext = s->buckets[b];
    s->buckets[b] = e;
    lru_push_front(s, e);
    s->count++;
    return e;
}

/* ----------------------------------------------------------- algorithms -- */

static uint64_t us_to_ms_ceil(int64_t us)
{
    return us <= 0 ? 0 : ceil_div((uint64_t)us, 1000);
}

/* GCRA as in redis-cell's RateLimiter::rate_limit, in microseconds. */
static keel_err take_gcra(const keel_limiter *l, entry *e, uint64_t now_ms, uint32_t cost,
                          keel_limit_result *r)
{
    int64_t now = (int64_t)(now_ms * 1000u), T = l->t_us, tau = l->tau_us;
    int64_t tat = e->s.tat_us;
    int64_t base = tat > now ? tat : now;
    int64_t ttl;
    keel_err rc = KEEL_OK;
    if (cost > l->limit) {
        rc = KEEL_EAGAIN;
        r->retry_after_ms = UINT64_MAX;
        ttl = base - now;
    } else {
        int64_t new_tat = base + T * (int64_t)cost;
        int64_t diff = now - (new_tat - tau);
        if (diff < 0) {
            rc = KEEL_EAGAIN;
            r->retry_after_ms = us_to_ms_ceil(-diff);
            ttl = base - now;
        } else {
            if (cost > 0)
                e->s.tat_us = new_tat;
            ttl = new_tat - now;
        }
    }
    r->remaining = tau - ttl > 0 ? (uint32_t)((tau - ttl) / T) : 0;
    r->reset_ms = us_to_ms_ceil(ttl);
    return rc;
}

static keel_err take_bucket(const keel_limiter *l, entry *e, uint64_t now_ms, uint32_t cost,
                            keel_limit_result *r)
{
    uint64_t rate = l->rate_micro_per_ms, cap = l->cap_micro;
    if (now_ms > e->s.tb.last_ms) {
        uint64_t elapsed = now_ms - e->s.tb.last_ms;
        if (elapsed >= ceil_div(cap, rate))
            e->s.tb.micro = cap;
        else
            e->s.tb.micro = KEEL_MIN(cap, e->s.tb.micro + elapsed * rate);
        e->s.tb.last_ms = now_ms;
    }
    keel_err rc = KEEL_OK;
    uint64_t need = (uint64_t)cost * MICRO;
    if (cost > l->limit) {
        rc = KEEL_EAGAIN;
        r->retry_after_ms = UINT64_MAX;
    } else if (e->s.tb.micro < need) {
        rc = KEEL_EAGAIN;
        r->retry_after_ms = ceil_div(need - e->s.tb.micro, rate);
    } else {
        e->s.tb.micro -= need;
    }
    r->remaining = (uint32_t)(e->s.tb.micro / MICRO);
    r->reset_ms = ceil_div(cap - e->s.tb.micro, rate);
    return rc;
}

static keel_err take_log(const keel_limiter *l, entry *e, uint64_t now_ms, uint32_t cost,
                         keel_limit_result *r)
{
    uint32_t n = (uint32_t)l->log_slots;
    uint64_t w = l->cfg.window_ms;
    /* a request at ts counts while now < ts + window */
    while (e->s.lg.count > 0 && e->log[e->s.lg.head] + w <= now_ms) {
        e->s.lg.head = (e->s.lg.head + 1) % n;
        e->s.lg.count--;
    }
    keel_err rc = KEEL_OK;
    if (cost > l->limit) {
        rc = KEEL_EAGAIN;
        r->retry_after_ms = UINT64_MAX;
    } else if (e->s.lg.count + cost > n) {
        rc = KEEL_EAGAIN;
        uint32_t need = e->s.lg.count + cost - n; /* oldest entries that must expire */
        uint64_t ts = e->log[(e->s.lg.head + need - 1) % n];
        r->retry_after_ms = ts + w - now_ms;
    } else {
        for (uint32_t i = 0; i < cost; i++) {
            e->log[(e->s.lg.head + e->s.lg.count) % n] = now_ms;
            e->s.lg.count++;
        }
    }
    r->remaining = n - e->s.lg.count;
    if (e->s.lg.count == 0)
        r->reset_ms = 0;
    else
        r->reset_ms = e->log[(e->s.lg.head + e->s.lg.count - 1) % n] + w - now_ms;
    return rc;
}

static keel_err take_window(const keel_limiter *l, entry *e, uint64_t now_ms, uint32_t cost,
                            keel_limit_result *r)
{
    uint64_t W = l->cfg.window_ms, idx = now_ms / W, el = now_ms % W;
    if (idx < e->s.sw.widx) { /* clock went backwards: stay in the stored window */
        idx = e->s.sw.widx;
        el = 0;
    }
    if (idx == e->s.sw.widx + 1) {
        e->s.sw.prev = e->s.sw.cur;
        e->s.sw.cur = 0;
    } else if (idx > e->s.sw.widx + 1) {
        e->s.sw.prev = e->s.sw.cur = 0;
    }
    e->s.sw.widx = idx;
    uint64_t prev = e->s.sw.prev, cur = e->s.sw.cur, lim = (uint64_t)l->limit * W;
    keel_err rc = KEEL_OK;
    /* estimate * W = prev * (W - elapsed) + cur * W */
    uint64_t need = prev * (W - el) + (cur + cost) * W;
    if (cost > l->limit) {
        rc = KEEL_EAGAIN;
        r->retry_after_ms = UINT64_MAX;
    } else if (need > lim) {
        rc = KEEL_EAGAIN;
        uint64_t dt = prev ? ceil_div(need - lim, prev) : UINT64_MAX;
        if (dt < W - el) {
            r->retry_after_ms = dt;
        } else {
            /* next window: prev' = cur, cur' = 0; need cur * (W - e2) + cost * W <= lim */
            uint64_t nx = (cur + cost) * W, e2 = 0;
            if (nx > lim)
                e2 = ceil_div(nx - lim, cur);
            r->retry_after_ms = (W - el) + e2;
        }
    } else {
        e->s.sw.cur += cost;
        cur += cost;
    }
    uint64_t est = prev * (W - el) + cur * W;
    r->remaining = est >= lim ? 0 : (uint32_t)((lim - est) / W);
    if (cur > 0)
        r->reset_ms = 2 * W - el;
    else if (prev > 0)
        r->reset_ms = W - el;
    else
        r->reset_ms = 0;
    return rc;
}

keel_err keel_limiter_take(keel_limiter *l, keel_str key, uint32_t cost, keel_limit_result *out)
{
    keel_limit_result tmp;
    keel_limit_result *r = out ? out : &tmp;
    memset(r, 0, sizeof(*r));
    if (l == NULL || key.len == 0 || key.ptr == NULL || key.len > KEEL_LIMITER_KEY_MAX)
        return KEEL_EINVAL;
    r->limit = l->limit;
    if (l->be != NULL)
        return l->be->take(l->be_impl, key, cost, r);
    uint64_t h = hash_key(l->seed, key);
    shard *s = &l->shards[h & (l->nshards - 1)];
    pthread_mutex_lock(&s->mu);
    uint64_t now = keel_clock_now_ms(l->clock);
    entry *e = lookup(l, s, h, key, now);
    keel_err rc;
    if (e == NULL) {
        rc = KEEL_ENOMEM;
    } else {
        switch (l->cfg.algorithm) {
        case KEEL_LIMIT_GCRA:
            rc = take_gcra(l, e, now, cost, r);
            break;
        case KEEL_LIMIT_TOKEN_BUCKET:
            rc = take_bucket(l, e, now, cost, r);
            break;
        case KEEL_LIMIT_SLIDING_LOG:
            rc = take_log(l, e, now, cost, r);
            break;
        default:
            rc = take_window(l, e, now, cost, r);
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void keel_limiter_policy(const keel_limiter *l, uint32_t *limit, uint64_t *window_ms)
{
    if (limit)
        *limit = l ? l->limit : 0;
    if (window_ms)
        *window_ms = l ? l->window_ms : 0;
}

size_t keel_limiter_keys(keel_limiter *l)
{
    size_t n = 0;
    for (unsigned i = 0; l && i < l->nshards; i++) {
        pthread_mutex_lock(&l->shards[i].mu);
        n += l->shards[i].count;
        pthread_mutex_unlock(&l->shards[i].mu);
    }
    return n;
}

const char *keel_limiter_name(const keel_limiter *l)
{
    return l ? l->name : NULL;
}

/* The backend hook (limiter_int.h): a one-shard, one-key table that stays empty, plus be. */
keel_err keel__limiter_create_backend(const keel_limiter_config *cfg,
                                      const keel__limiter_backend *be, void *impl,
                                      keel_limiter **out, keel_diag *diag)
{
    if (cfg == NULL || be == NULL || be->take == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "limiter: invalid backend arguments");
    keel_limiter_config c = *cfg;
    if (c.size >= sizeof(c)) {
        c.max_keys = 1;
        c.shards = 1;
    }
    keel_err e = keel_limiter_create(&c, out, diag);
    if (e == KEEL_OK) {
        (*out)->be = be;
        (*out)->be_impl = impl;
    }
    return e;
}

void *keel__limiter_backend_impl(const keel_limiter *l, const keel__limiter_backend *be)
{
    return l != NULL && be != NULL && l->be == be ? l->be_impl : NULL;
}

/* ---------------------------------------------------------- chain layer -- */

typedef struct limiter_layer {
    keel_layer base;
    keel_limiter *l;
    keel_limiter_key_fn key_fn;
    void *ud;
} limiter_layer;

static keel_err limiter_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    limiter_layer *ll = (limiter_layer *)self;
    keel_call *call = cx;
    keel_str key = ll->key_fn ? ll->key_fn(call, ll->ud) : keel_str_c(call->name);
    if (key.len == 0)
        key = KEEL_STR_LIT("call");
    keel_limit_result r;
    keel_err e = keel_limiter_take(ll->l, key, 1, &r);
    if (e == KEEL_EAGAIN) {
        call->wait_ms = r.retry_after_ms;
        call->refused_by = ll->l->name;
        return KEEL_EAGAIN;
    }
    if (e != KEEL_OK)
        return e;
    return keel_chain_next(cur, cx);
}

keel_err keel_limiter_layer(keel_limiter *l, keel_limiter_key_fn key_fn, void *ud,
                            keel_layer **out)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    if (l == NULL)
        return KEEL_EINVAL;
    limiter_layer *ll = keel__layer_new(sizeof(*ll), l->name, limiter_call);
    if (ll == NULL)
        return KEEL_ENOMEM;
    ll->l = l;
    ll->key_fn = key_fn;
    ll->ud = ud;
    *out = &ll->base;
    return KEEL_OK;
}
