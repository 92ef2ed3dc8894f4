/* cache_redis.c - keel_cache entries kept in Redis (one string per entry, SET ... PX for the
 * ttl) behind the same keel_cache interface (cache_int.h).  cache.c validates arguments,
 * applies the default ttl and counts hits and misses; this file only talks to Redis.
 * Semantics and failure handling are documented in include/keel/cache.h. */
#include "keel_int.h"

#include <stdatomic.h>
#include <stdio.h>

#include <keel/cache.h>
#include <keel/metrics.h>
#include <keel/redis.h>

#include "cache_int.h"

#define MAX_TTL_MS ((uint64_t)1 << 44) /* about 557 years: now + ttl never overflows in Redis */
#define KEY_STACK 512                  /* prefixed keys up to this size avoid an allocation */
#define CLEAR_BATCH "500"              /* SCAN COUNT hint of keel_cache_clear() */

typedef struct cache_redis {
    keel_redis *redis;
    char *prefix;
    size_t prefix_len;
    char *pattern; /* the prefix with glob characters escaped, then "*" */
    size_t max_bytes;
    keel_series *errors_series;
    _Atomic uint64_t errors;
} cache_redis;

static void cr_destroy(void *impl)
{
    cache_redis *b = impl;
    if (b == NULL)
        return;
    keel_free(b->prefix);
    keel_free(b->pattern);
    keel_free(b);
}

/* Count one failed Redis command. */
static void cr_failed(cache_redis *b)
{
    atomic_fetch_add_explicit(&b->errors, 1, memory_order_relaxed);
    if (b->errors_series != NULL)
        keel_series_add(b->errors_series, 1);
}

/* The error a caller sees for a failed command: timeouts and OOM as they are, everything
 * else (unreachable, lost connection, an error reply such as OOM under maxmemory) KEEL_EIO. */
static keel_err cr_error(keel_err e)
{
    return e == KEEL_ETIMEOUT || e == KEEL_ENOMEM ? e : KEEL_EIO;
}

/* prefix + key, in stack (KEY_STACK bytes) when it fits, else on the heap; NULL on OOM. */
static char *full_key(const cache_redis *b, keel_str key, char *stack, size_t *len)
{
    if (key.len > SIZE_MAX - b->prefix_len - 1)
        return NULL;
    size_t n = b->prefix_len + key.len;
    char *k = n < KEY_STACK ? stack : keel_malloc(n + 1);
    if (k == NULL)
        return NULL;
    memcpy(k, b->prefix, b->prefix_len);
    if (key.len > 0)
        memcpy(k + b->prefix_len, key.ptr, key.len);
    k[n] = '\0';
    *len = n;
    return k;
}

static void free_key(char *k, const char *stack)
{
    if (k != stack)
        keel_free(k);
}

/* Run a command on the full key of key: argv[1] is replaced by it. */
static keel_err cmd_on_key(cache_redis *b, keel_str key, size_t argc, const char **argv,
                           size_t *lens, keel_redis_reply **rep)
{
    char stack[KEY_STACK];
    size_t klen = 0;
    char *k = full_key(b, key, stack, &klen);
    if (k == NULL)
        return KEEL_ENOMEM;
    argv[1] = k;
    lens[1] = klen;
    keel_err e = keel_redis_cmd(b->redis, rep, argc, argv, lens, NULL);
    free_key(k, stack);
    if (e != KEEL_OK)
        cr_failed(b);
    return e;
}

static keel_err cr_get(void *impl, keel_str key, keel_buf *out)
{
    cache_redis *b = impl;
    const char *argv[2] = {"GET", NULL};
    size_t lens[2] = {3, 0};
    keel_redis_reply *rep = NULL;
    if (cmd_on_key(b, key, 2, argv, lens, &rep) != KEEL_OK)
        return KEEL_ENOTFOUND; /* unreachable: run uncached */
    keel_err rc = KEEL_ENOTFOUND;
    keel_redis_type t = keel_redis_reply_type(rep);
    if (t == KEEL_REDIS_STR) {
        size_t n = 0;
        const char *v = keel_redis_reply_str(rep, &n);
        rc = keel_buf_append(out, v, n);
    } else if (t != KEEL_REDIS_NIL) {
        cr_failed(b); /* not a reply GET gives */
    }
    keel_redis_reply_free(rep);
    return rc;
}

static keel_err cr_del(void *impl, keel_str key)
{
    cache_redis *b = impl;
    const char *argv[2] = {"UNLINK", NULL};
    size_t lens[2] = {6, 0};
    keel_redis_reply *rep = NULL;
    keel_err e = cmd_on_key(b, key, 2, argv, lens, &rep);
    if (e != KEEL_OK)
        return cr_error(e);
    keel_err rc = KEEL_ENOTFOUND;
    if (keel_redis_reply_type(rep) != KEEL_REDIS_INT) {
        cr_failed(b);
        rc = KEEL_EIO;
    } else if (keel_redis_reply_int(rep) > 0) {
        rc = KEEL_OK;
    }
    keel_redis_reply_free(rep);
    return rc;
}

static keel_err cr_set(void *impl, keel_str key, keel_str value, uint64_t ttl_ms)
{
    cache_redis *b = impl;
    if (b->max_bytes > 0 && (key.len > b->max_bytes || value.len > b->max_bytes - key.len)) {
        keel_err de = cr_del(b, key); /* as the in-memory cache: the old entry goes */
        KEEL_UNUSED(de);
        return KEEL_ETOOBIG;
    }
    char px[24];
    snprintf(px, sizeof(px), "%llu", (unsigned long long)KEEL_MIN(ttl_ms, MAX_TTL_MS));
    const char *argv[5] = {"SET", NULL, value.ptr != NULL ? value.ptr : "", "PX", px};
    size_t lens[5] = {3, 0, value.len, 2, strlen(px)};
    keel_redis_reply *rep = NULL;
    keel_err e = cmd_on_key(b, key, 5, argv, lens, &rep);
    if (e != KEEL_OK)
        return cr_error(e);
    keel_redis_type t = keel_redis_reply_type(rep);
    keel_redis_reply_free(rep);
    if (t != KEEL_REDIS_STATUS) {
        cr_failed(b);
        return KEEL_EIO;
    }
    return KEEL_OK;
}

/* UNLINK the keys of one SCAN page (an array of strings). */
static keel_err unlink_page(cache_redis *b, const keel_redis_reply *keys)
{
    size_t n = keel_redis_reply_count(keys);
    if (n == 0)
        return KEEL_OK;
    if (n > SIZE_MAX / sizeof(char *) - 1)
        return KEEL_ENOMEM;
    const char **argv = keel_calloc(n + 1, sizeof(char *));
    size_t *lens = keel_calloc(n + 1, sizeof(size_t));
    if (argv == NULL || lens == NULL) {
        keel_free(argv);
        keel_free(lens);
        return KEEL_ENOMEM;
    }
    argv[0] = "UNLINK";
    lens[0] = 6;
    size_t argc = 1;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *k = keel_redis_reply_str(keel_redis_reply_at(keys, i), &len);
        if (k == NULL)
            continue;
        argv[argc] = k;
        lens[argc] = len;
        argc++;
    }
    keel_err e = KEEL_OK;
    if (argc > 1) {
        keel_redis_reply *rep = NULL;
        e = keel_redis_cmd(b->redis, &rep, argc, argv, lens, NULL);
        keel_redis_reply_free(rep);
    }
    keel_free(argv);
    keel_free(lens);
    return e;
}

static void cr_clear(void *impl)
{
    cache_redis *b = impl;
    char cursor[32] = "0";
    do {
        const char *argv[6] = {"SCAN", cursor, "MATCH", b->pattern, "COUNT", CLEAR_BATCH};
        keel_redis_reply *rep = NULL;
        keel_err e = keel_redis_cmd(b->redis, &rep, 6, argv, NULL, NULL);
        if (e != KEEL_OK) {
            cr_failed(b);
            return;
        }
        size_t clen = 0;
        const char *next = NULL;
        const keel_redis_reply *keys = NULL;
        if (keel_redis_reply_type(rep) == KEEL_REDIS_ARRAY && keel_redis_reply_count(rep) == 2) {
            next = keel_redis_reply_str(keel_redis_reply_at(rep, 0), &clen);
            keys = keel_redis_reply_at(rep, 1);
        }
        if (next == NULL || clen == 0 || clen >= sizeof(cursor) ||
            keel_redis_reply_type(keys) != KEEL_REDIS_ARRAY) {
            keel_redis_reply_free(rep);
            cr_failed(b);
            return;
        }
        memcpy(cursor, next, clen);
        cursor[clen] = '\0';
        e = unlink_page(b, keys);
        keel_redis_reply_free(rep);
        if (e != KEEL_OK) {
            cr_failed(b);
            return;
        }
    } while (strcmp(cursor, "0") != 0);
}

static const keel__cache_backend redis_backend = {cr_get, cr_set, cr_del, cr_clear, cr_destroy};

void keel_cache_redis_config_default(keel_cache_redis_config *rcfg)
{
    if (rcfg == NULL)
        return;
    memset(rcfg, 0, sizeof(*rcfg));
    rcfg->size = sizeof(*rcfg);
    rcfg->redis = NULL;
    rcfg->prefix = NULL;
}

static keel_err validate_redis(const keel_cache_redis_config *rc, keel_diag *d)
{
    if (rc->size != sizeof(*rc))
        return keel_diag_set(d, KEEL_EINVAL, 0,
                             "cache: size must be sizeof(keel_cache_redis_config)");
    if (rc->redis == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "cache: redis must not be NULL");
    if (rc->prefix != NULL) {
        size_t n = strlen(rc->prefix);
        if (n == 0 || n > KEEL_CACHE_REDIS_PREFIX_MAX)
            return keel_diag_set(d, KEEL_EINVAL, 0,
                                 "cache: prefix must be 1..%d bytes long, got %zu",
                                 KEEL_CACHE_REDIS_PREFIX_MAX, n);
    }
    return KEEL_OK;
}

/* prefix with the glob characters of SCAN MATCH escaped, then "*". */
static char *match_pattern(const char *prefix, size_t n)
{
    char *p = keel_malloc(2 * n + 2);
    if (p == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = prefix[i];
        if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\')
            p[j++] = '\\';
        p[j++] = ch;
    }
    p[j++] = '*';
    p[j] = '\0';
    return p;
}

keel_err keel_cache_redis_create(const keel_cache_config *cfg,
                                 const keel_cache_redis_config *rcfg, keel_cache **out,
                                 keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cache: out must not be NULL");
    *out = NULL;
    if (cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cache: config must not be NULL");
    if (rcfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cache: redis config must not be NULL");
    keel_err e = validate_redis(rcfg, diag);
    if (e != KEEL_OK)
        return e;
    cache_redis *b = keel__new(cache_redis);
    if (b == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "cache: out of memory");
    atomic_init(&b->errors, 0);
    keel_cache *c = NULL;
    e = keel__cache_create_backend(cfg, &redis_backend, b, &c, diag);
    if (e != KEEL_OK) {
        cr_destroy(b);
        return e;
    }
    /* from here on c owns b: keel_cache_destroy(c) frees it */
    b->redis = rcfg->redis;
    b->max_bytes = cfg->max_bytes;
    const char *name = keel__cache_name(c);
    if (rcfg->prefix != NULL) {
        b->prefix = keel_strdup(rcfg->prefix);
    } else {
        keel_buf p;
        keel_buf_init(&p, KEEL_CACHE_REDIS_PREFIX_MAX);
        e = keel_buf_appendf(&p, "keel:cache:%s:", name);
        if (e == KEEL_OK)
            b->prefix = keel_buf_take(&p, NULL);
        keel_buf_cleanup(&p);
        if (e == KEEL_ETOOBIG)
            e = keel_diag_set(diag, KEEL_EINVAL, 0,
                              "cache: name must be at most %d bytes long when prefix is NULL, "
                              "got %zu",
                              KEEL_CACHE_REDIS_PREFIX_MAX - 12, strlen(name));
    }
    if (e == KEEL_OK && b->prefix != NULL) {
        b->prefix_len = strlen(b->prefix);
        b->pattern = match_pattern(b->prefix, b->prefix_len);
    }
    if (e == KEEL_OK && (b->prefix == NULL || b->pattern == NULL))
        e = keel_diag_set(diag, KEEL_ENOMEM, 0, "cache: out of memory");
    if (e == KEEL_OK && cfg->metrics != NULL) {
        static const char *const labels[] = {"cache", NULL};
        keel_metric *f = NULL;
        e = keel_metrics_counter(cfg->metrics, "keel_cache_backend_errors_total",
                                 "Cache commands that could not reach their backend.", labels,
                                 &f);
        if (e == KEEL_OK) {
            const char *values[] = {name, NULL};
            e = keel_metric_series(f, values, &b->errors_series);
        }
        if (e != KEEL_OK)
            e = keel_diag_set(diag, e, 0, "cache: cannot register metrics: %s",
                              keel_strerror(e));
    }
    if (e != KEEL_OK) {
        keel_cache_destroy(c);
        return e;
    }
    *out = c;
    return KEEL_OK;
}

uint64_t keel_cache_redis_errors(const keel_cache *c)
{
    cache_redis *b = keel__cache_backend_impl(c, &redis_backend);
    return b != NULL ? atomic_load_explicit(&b->errors, memory_order_relaxed) : 0;
}
