/* Tests for src/resilience/cache_redis.c against the throwaway Redis of
 * scripts/test-services.sh (KEEL_TEST_REDIS_URL; exit 77 when unset): get / set / delete and
 * the PX ttl (PTTL checks, one real expiry), binary keys and values, two caches on two pools
 * sharing entries, the chain layer replaying a result cached by another instance, clear
 * removing only its own prefix, an unreachable server giving misses and counted errors, the
 * per-entry max_bytes, bad configuration named in the diag, and allocation failures. */
#include "keel_int.h"

#include "test.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <keel/cache.h>
#include <keel/metrics.h>
#include <keel/redis.h>

static const char *redis_url;
static char run_prefix[96];

/* A prefix unique to this run and test. */
static void prefix_for(char *out, size_t n, const char *test)
{
    snprintf(out, n, "%s%s:", run_prefix, test);
}

static keel_cache *redis_cache(keel_redis *r, const char *prefix, uint64_t ttl_ms,
                               size_t max_bytes, keel_metrics *m, const char *name)
{
    keel_cache_config cfg;
    keel_cache_config_default(&cfg);
    cfg.ttl_ms = ttl_ms;
    cfg.max_bytes = max_bytes;
    cfg.metrics = m;
    cfg.name = name;
    keel_cache_redis_config rc;
    keel_cache_redis_config_default(&rc);
    rc.redis = r;
    rc.prefix = prefix;
    keel_cache *c = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_cache_redis_create(&cfg, &rc, &c, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "cache: %s\n", d.msg);
    assert_int_equal(KEEL_OK, e);
    assert_non_null(c);
    return c;
}

/* Run a command whose arguments are NUL-terminated except argv[1] (klen bytes). */
static keel_redis_reply *raw(keel_redis *r, size_t argc, const char *const *argv, size_t klen)
{
    size_t lens[8];
    assert_true(argc <= 8);
    for (size_t i = 0; i < argc; i++)
        lens[i] = i == 1 ? klen : strlen(argv[i]);
    keel_redis_reply *rep = NULL;
    ASSERT_OK(keel_redis_cmd(r, &rep, argc, argv, lens, NULL));
    return rep;
}

/* An integer command (PTTL, EXISTS, STRLEN) on the raw key prefix + key. */
static int64_t key_int(keel_redis *r, const char *cmd, const char *prefix, const char *key,
                       size_t keylen)
{
    char full[512];
    size_t pl = strlen(prefix);
    assert_true(pl + keylen < sizeof(full));
    memcpy(full, prefix, pl);
    memcpy(full + pl, key, keylen);
    const char *argv[2] = {cmd, full};
    keel_redis_reply *rep = raw(r, 2, argv, pl + keylen);
    assert_int_equal(KEEL_REDIS_INT, keel_redis_reply_type(rep));
    int64_t v = keel_redis_reply_int(rep);
    keel_redis_reply_free(rep);
    return v;
}

/* Get key; 1 on a hit whose value equals want (wlen bytes), 0 on a miss. */
static int get_is(keel_cache *c, keel_str key, const char *want, size_t wlen)
{
    keel_buf b;
    keel_buf_init(&b, 1 << 16);
    keel_err e = keel_cache_get(c, key, &b);
    int hit = 0;
    if (e != KEEL_ENOTFOUND) {
        assert_int_equal(KEEL_OK, e);
        assert_non_null(want);
        assert_int_equal(wlen, b.len);
        assert_memory_equal(want, b.len ? b.ptr : "", wlen);
        hit = 1;
    }
    keel_buf_cleanup(&b);
    return hit;
}

static int get_s(keel_cache *c, const char *key, const char *want)
{
    return get_is(c, keel_str_c(key), want, want ? strlen(want) : 0);
}

/* ------------------------------------------------------ get / set / ttl -- */

static void test_get_set_delete_ttl(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), "basic");
    keel_cache *c = redis_cache(r, prefix, 300000, 0, NULL, "basic");

    assert_int_equal(0, get_s(c, "a", NULL));
    ASSERT_OK(keel_cache_set(c, keel_str_c("a"), keel_str_c("one")));
    assert_int_equal(1, get_s(c, "a", "one"));
    /* the default ttl, as PX */
    int64_t pttl = key_int(r, "PTTL", prefix, "a", 1);
    assert_true(pttl > 300000 - 60000 && pttl <= 300000);
    /* overwrite with an explicit ttl */
    ASSERT_OK(keel_cache_set_ttl(c, keel_str_c("a"), keel_str_c("two"), 1234));
    assert_int_equal(1, get_s(c, "a", "two"));
    pttl = key_int(r, "PTTL", prefix, "a", 1);
    assert_true(pttl > 0 && pttl <= 1234);
    /* a huge ttl is clamped to 2^44 ms */
    ASSERT_OK(keel_cache_set_ttl(c, keel_str_c("h"), keel_str_c("x"), UINT64_MAX));
    pttl = key_int(r, "PTTL", prefix, "h", 1);
    assert_true(pttl > (int64_t)(1ull << 44) - 60000 && pttl <= (int64_t)(1ull << 44));
    /* an empty value is a value */
    ASSERT_OK(keel_cache_set(c, keel_str_c("e"), KEEL_STR_NULL));
    assert_int_equal(1, get_s(c, "e", ""));

    /* delete */
    ASSERT_OK(keel_cache_delete(c, keel_str_c("a")));
    assert_int_equal(KEEL_ENOTFOUND, keel_cache_delete(c, keel_str_c("a")));
    assert_int_equal(0, get_s(c, "a", NULL));
    assert_int_equal(0, key_int(r, "EXISTS", prefix, "a", 1));

    /* a value larger than out: counted as a hit, out untouched beyond its cap */
    ASSERT_OK(keel_cache_set(c, keel_str_c("big"), keel_str_c("0123456789")));
    keel_buf small;
    keel_buf_init(&small, 4);
    assert_int_equal(KEEL_ETOOBIG, keel_cache_get(c, keel_str_c("big"), &small));
    keel_buf_cleanup(&small);
    /* the same into caller storage */
    char into[16];
    size_t n = 0;
    ASSERT_OK(keel_cache_get_into(c, keel_str_c("big"), into, sizeof(into), &n));
    assert_int_equal(10, n);
    assert_memory_equal("0123456789", into, 10);
    assert_int_equal(KEEL_ETOOBIG, keel_cache_get_into(c, keel_str_c("big"), into, 4, &n));
    assert_int_equal(10, n);

    /* stats: local hits and misses; no entries or bytes tracked; purge is a no-op */
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(6, st.hits);   /* one, two, "", big (three times) */
    assert_int_equal(2, st.misses); /* a before set, a after delete */
    assert_int_equal(0, st.evictions);
    assert_int_equal(0, st.expirations);
    assert_int_equal(0, st.entries);
    assert_int_equal(0, st.bytes);
    assert_int_equal(0, keel_cache_purge(c));
    assert_int_equal(0, keel_cache_redis_errors(c));

    /* a real expiry: Redis drops the entry once its PX has passed */
    ASSERT_OK(keel_cache_set_ttl(c, keel_str_c("short"), keel_str_c("v"), 50));
    int gone = 0;
    for (int i = 0; i < 500 && !gone; i++) {
        if (get_s(c, "short", "v") == 0)
            gone = 1;
        else
            usleep(10000);
    }
    assert_int_equal(1, gone);

    keel_cache_clear(c);
    keel_cache_destroy(c);
    keel_redis_close(r);
}

static void test_binary_keys_and_values(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), "bin");
    keel_cache *c = redis_cache(r, prefix, 60000, 0, NULL, "bin");
    static const char k1[] = {'k', '\0', 'x'};
    static const char k2[] = {'k', '\0', 'y'};
    static const char v1[] = {'\0', 'a', '\0', '\r', '\n', (char)0xFF, '\0'};
    static const char v2[] = {'\0'};
    keel_str key1 = {k1, sizeof(k1)}, key2 = {k2, sizeof(k2)}, key0 = {k1, 1};
    ASSERT_OK(keel_cache_set(c, key1, (keel_str){v1, sizeof(v1)}));
    ASSERT_OK(keel_cache_set(c, key2, (keel_str){v2, sizeof(v2)}));
    assert_int_equal(1, get_is(c, key1, v1, sizeof(v1)));
    assert_int_equal(1, get_is(c, key2, v2, sizeof(v2)));
    assert_int_equal(0, get_is(c, key0, NULL, 0)); /* "k" alone is another key */
    /* stored verbatim under prefix + key */
    assert_int_equal((int64_t)sizeof(v1), key_int(r, "STRLEN", prefix, k1, sizeof(k1)));
    assert_int_equal((int64_t)sizeof(v2), key_int(r, "STRLEN", prefix, k2, sizeof(k2)));
    /* a key longer than the stack buffer */
    char longk[1000];
    memset(longk, 'L', sizeof(longk));
    longk[500] = '\0';
    keel_str lk = {longk, sizeof(longk)};
    ASSERT_OK(keel_cache_set(c, lk, keel_str_c("long")));
    assert_int_equal(1, get_is(c, lk, "long", 4));
    ASSERT_OK(keel_cache_delete(c, lk));
    assert_int_equal(0, get_is(c, lk, NULL, 0));
    keel_cache_clear(c);
    keel_cache_destroy(c);
    keel_redis_close(r);
}

/* Two pools (two processes, as far as Redis can tell), one prefix: one cache. */
static void test_two_instances_share(void **state)
{
    (void)state;
    keel_redis *ra = keel_test_redis_open(redis_url, 2), *rb = keel_test_redis_open(redis_url, 2);
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), "share");
    keel_cache *a = redis_cache(ra, prefix, 60000, 0, NULL, "a");
    keel_cache *b = redis_cache(rb, prefix, 60000, 0, NULL, "b");
    ASSERT_OK(keel_cache_set(a, keel_str_c("k"), keel_str_c("from-a")));
    assert_int_equal(1, get_s(b, "k", "from-a"));
    ASSERT_OK(keel_cache_set(b, keel_str_c("k"), keel_str_c("from-b")));
    assert_int_equal(1, get_s(a, "k", "from-b"));
    ASSERT_OK(keel_cache_delete(b, keel_str_c("k")));
    assert_int_equal(0, get_s(a, "k", NULL));
    /* stats are per instance */
    keel_cache_stats sa, sb;
    keel_cache_get_stats(a, &sa);
    keel_cache_get_stats(b, &sb);
    assert_int_equal(1, sa.hits);
    assert_int_equal(1, sa.misses);
    assert_int_equal(1, sb.hits);
    assert_int_equal(0, sb.misses);
    keel_cache_destroy(a);
    keel_cache_destroy(b);
    keel_redis_close(ra);
    keel_redis_close(rb);
}

/* ---------------------------------------------------------------- layer -- */

typedef struct quote {
    const char *sku;
    int price;
} quote;

static int terminal_calls;

static keel_err fetch_price(void *cx, void *ud)
{
    (void)ud;
    keel_call *call = cx;
    quote *q = call->user;
    terminal_calls++;
    q->price = 100 + (int)strlen(q->sku) + terminal_calls * 1000;
    return KEEL_OK;
}

static keel_str q_key(const keel_call *call, void *ud)
{
    (void)ud;
    const quote *q = call->user;
    return keel_str_c(q->sku);
}

static keel_err q_load(keel_call *call, keel_str cached, void *ud)
{
    (void)ud;
    quote *q = call->user;
    if (cached.len != sizeof(int))
        return KEEL_EPARSE;
    memcpy(&q->price, cached.ptr, sizeof(int));
    return KEEL_OK;
}

static keel_err q_store(const keel_call *call, keel_buf *out, void *ud)
{
    (void)ud;
    const quote *q = call->user;
    return keel_buf_append(out, &q->price, sizeof(int));
}

static keel_chain *quote_chain(keel_cache *c)
{
    keel_cache_binding bind = {q_key, q_load, q_store, NULL};
    keel_layer *l = NULL;
    ASSERT_OK(keel_cache_layer(c, &bind, &l));
    keel_chain *ch = NULL;
    ASSERT_OK(keel_chain_create(&ch));
    ASSERT_OK(keel_chain_add_take(ch, l));
    return ch;
}

static keel_err run_quote(keel_chain *ch, const char *sku, int *price)
{
    quote q = {sku, -1};
    keel_call call;
    keel_call_init(&call, "price", &q);
    keel_err e = keel_chain_run(ch, &call, fetch_price, NULL);
    *price = q.price;
    return e;
}

static void test_layer_replays_across_instances(void **state)
{
    (void)state;
    keel_redis *ra = keel_test_redis_open(redis_url, 2), *rb = keel_test_redis_open(redis_url, 2);
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), "layer");
    keel_cache *a = redis_cache(ra, prefix, 60000, 0, NULL, "a");
    keel_cache *b = redis_cache(rb, prefix, 60000, 0, NULL, "b");
    keel_chain *cha = quote_chain(a), *chb = quote_chain(b);
    terminal_calls = 0;
    int p = 0;
    ASSERT_OK(run_quote(cha, "abc", &p)); /* miss on a: runs */
    assert_int_equal(1103, p);
    assert_int_equal(1, terminal_calls);
    ASSERT_OK(run_quote(chb, "abc", &p)); /* hit on b: replayed */
    assert_int_equal(1103, p);
    assert_int_equal(1, terminal_calls);
    ASSERT_OK(run_quote(cha, "abc", &p)); /* and on a */
    assert_int_equal(1103, p);
    assert_int_equal(1, terminal_calls);
    ASSERT_OK(run_quote(chb, "wxyz", &p)); /* another key: runs on b, replayed on a */
    assert_int_equal(2104, p);
    ASSERT_OK(run_quote(cha, "wxyz", &p));
    assert_int_equal(2104, p);
    assert_int_equal(2, terminal_calls);
    /* an entry load() rejects is dropped and the call runs as a miss, then is cached */
    ASSERT_OK(keel_cache_set(a, keel_str_c("xy"), keel_str_c("junk-bytes")));
    ASSERT_OK(run_quote(chb, "xy", &p));
    assert_int_equal(3102, p);
    ASSERT_OK(run_quote(cha, "xy", &p));
    assert_int_equal(3102, p);
    assert_int_equal(3, terminal_calls);
    keel_cache_stats sa, sb;
    keel_cache_get_stats(a, &sa);
    keel_cache_get_stats(b, &sb);
    assert_int_equal(3, sa.hits);
    assert_int_equal(1, sa.misses);
    assert_int_equal(2, sb.hits); /* abc, and the junk xy entry */
    assert_int_equal(1, sb.misses);
    keel_chain_destroy(cha);
    keel_chain_destroy(chb);
    keel_cache_clear(a);
    keel_cache_destroy(a);
    keel_cache_destroy(b);
    keel_redis_close(ra);
    keel_redis_close(rb);
}

/* ---------------------------------------------------------------- clear -- */

static int64_t exists_raw(keel_redis *r, const char *key)
{
    return key_int(r, "EXISTS", "", key, strlen(key));
}

static void set_raw(keel_redis *r, const char *key)
{
    const char *argv[5] = {"SET", key, "v", "PX", "60000"};
    keel_redis_reply *rep = raw(r, 5, argv, strlen(key));
    keel_redis_reply_free(rep);
}

static void test_clear_only_own_prefix(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    /* glob characters in the prefix must be matched literally */
    char prefix[160], near[200], other[200], outside[200];
    prefix_for(prefix, sizeof(prefix), "g[ab]*?\\");
    /* near matches the prefix's glob read unescaped (g [ab] * ? \: *) */
    snprintf(near, sizeof(near), "%sgaxx:k", run_prefix);
    snprintf(other, sizeof(other), "%sg[ab]*?:x", run_prefix); /* no backslash */
    snprintf(outside, sizeof(outside), "%sg[ab]*?\\", run_prefix); /* prefix minus ':' */
    set_raw(r, near);
    set_raw(r, other);
    set_raw(r, outside);
    keel_cache *c = redis_cache(r, prefix, 60000, 0, NULL, "clr");
    /* more keys than one SCAN page */
    enum { N = 1300 };
    char k[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key%d", i);
        ASSERT_OK(keel_cache_set(c, keel_str_c(k), keel_str_c("v")));
    }
    assert_int_equal(1, key_int(r, "EXISTS", prefix, "key0", 4));
    keel_cache_clear(c);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key%d", i);
        assert_int_equal(0, key_int(r, "EXISTS", prefix, k, strlen(k)));
    }
    assert_int_equal(1, exists_raw(r, near));
    assert_int_equal(1, exists_raw(r, other));
    assert_int_equal(1, exists_raw(r, outside));
    assert_int_equal(0, keel_cache_redis_errors(c));
    /* the cache still works after a clear */
    ASSERT_OK(keel_cache_set(c, keel_str_c("again"), keel_str_c("yes")));
    assert_int_equal(1, get_s(c, "again", "yes"));
    keel_cache_clear(c);
    assert_int_equal(0, get_s(c, "again", NULL));
    keel_cache_destroy(c);
    const char *del[4] = {"DEL", near, other, outside};
    size_t lens[4] = {3, strlen(near), strlen(other), strlen(outside)};
    keel_redis_reply *rep = NULL;
    ASSERT_OK(keel_redis_cmd(r, &rep, 4, del, lens, NULL));
    assert_int_equal(3, keel_redis_reply_int(rep));
    keel_redis_reply_free(rep);
    keel_redis_close(r);
}

/* ------------------------------------------------------------- max_bytes -- */

static void test_max_bytes_per_entry(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), "maxb");
    keel_cache *c = redis_cache(r, prefix, 60000, 10, NULL, "maxb");
    ASSERT_OK(keel_cache_set(c, keel_str_c("k"), keel_str_c("123456789"))); /* 1 + 9 = 10 */
    assert_int_equal(1, get_s(c, "k", "123456789"));
    assert_int_equal(KEEL_ETOOBIG,
                     keel_cache_set(c, keel_str_c("k"), keel_str_c("1234567890")));
    assert_int_equal(0, get_s(c, "k", NULL)); /* the old entry went too */
    /* no total cap: many entries of 10 bytes coexist */
    for (int i = 0; i < 5; i++) {
        char k[4] = {'a', (char)('0' + i), 0, 0};
        ASSERT_OK(keel_cache_set(c, keel_str_c(k), keel_str_c("12345678")));
    }
    for (int i = 0; i < 5; i++) {
        char k[4] = {'a', (char)('0' + i), 0, 0};
        assert_int_equal(1, get_s(c, k, "12345678"));
    }
    keel_cache_clear(c);
    keel_cache_destroy(c);
    keel_redis_close(r);
}

/* ------------------------------------------------------- Redis unavailable -- */

static void test_unreachable(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_vanishing();
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_cache *c = redis_cache(r, "down:", 60000, 0, m, "down");
    assert_int_equal(0, get_s(c, "k", NULL));
    assert_int_equal(0, get_s(c, "k", NULL));
    keel_err e = keel_cache_set(c, keel_str_c("k"), keel_str_c("v"));
    assert_true(e == KEEL_EIO || e == KEEL_ETIMEOUT);
    e = keel_cache_delete(c, keel_str_c("k"));
    assert_true(e == KEEL_EIO || e == KEEL_ETIMEOUT);
    keel_cache_clear(c);
    assert_int_equal(5, keel_cache_redis_errors(c));

    /* the layer runs every call uncached and never fails it: a get and a set per call */
    keel_chain *ch = quote_chain(c);
    terminal_calls = 0;
    int p = 0;
    ASSERT_OK(run_quote(ch, "abc", &p));
    assert_int_equal(1103, p);
    ASSERT_OK(run_quote(ch, "abc", &p));
    assert_int_equal(2103, p);
    assert_int_equal(2, terminal_calls);
    assert_int_equal(9, keel_cache_redis_errors(c));
    keel_chain_destroy(ch);

    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(0, st.hits);
    assert_int_equal(4, st.misses);
    keel_buf out;
    keel_buf_init(&out, 1 << 20);
    ASSERT_OK(keel_metrics_expose(m, "", &out));
    assert_non_null(strstr(out.ptr, "keel_cache_backend_errors_total{cache=\"down\"} 9"));
    assert_non_null(strstr(out.ptr, "keel_cache_requests_total{cache=\"down\",result=\"miss\"} 4"));
    keel_buf_cleanup(&out);
    keel_cache_destroy(c);
    keel_redis_close(r);
    keel_metrics_destroy(m);
    /* another cache type reports no Redis errors */
    assert_int_equal(0, keel_cache_redis_errors(NULL));
}

/* ------------------------------------------------------------ bad config -- */

static void expect_bad(const keel_cache_config *cfg, const keel_cache_redis_config *rc,
                       const char *want)
{
    keel_cache *c = (keel_cache *)(uintptr_t)1;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_EINVAL, keel_cache_redis_create(cfg, rc, &c, &d));
    assert_null(c);
    assert_int_equal(KEEL_EINVAL, d.code);
    if (strstr(d.msg, want) == NULL)
        fprintf(stderr, "diag \"%s\" lacks \"%s\"\n", d.msg, want);
    assert_non_null(strstr(d.msg, want));
}

static void test_bad_config(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    keel_cache_config cfg;
    keel_cache_config_default(&cfg);
    keel_cache_redis_config rc;
    keel_cache_redis_config_default(&rc);
    assert_int_equal(sizeof(rc), rc.size);
    assert_null(rc.redis);
    assert_null(rc.prefix);

    expect_bad(&cfg, &rc, "redis must not be NULL");
    rc.redis = r;
    expect_bad(NULL, &rc, "config must not be NULL");
    expect_bad(&cfg, NULL, "redis config must not be NULL");
    assert_int_equal(KEEL_EINVAL, keel_cache_redis_create(&cfg, &rc, NULL, NULL));
    rc.size = 1;
    expect_bad(&cfg, &rc, "size");
    rc.size = sizeof(rc);
    rc.prefix = "";
    expect_bad(&cfg, &rc, "prefix must be 1..256 bytes long, got 0");
    char longp[300];
    memset(longp, 'p', sizeof(longp));
    longp[257] = '\0';
    rc.prefix = longp;
    expect_bad(&cfg, &rc, "prefix must be 1..256 bytes long, got 257");
    longp[256] = '\0'; /* exactly 256 is fine */
    keel_cache *c = NULL;
    ASSERT_OK(keel_cache_redis_create(&cfg, &rc, &c, NULL));
    keel_cache_destroy(c);
    rc.prefix = NULL;
    cfg.ttl_ms = 0;
    expect_bad(&cfg, &rc, "ttl_ms must be >= 1, got 0");
    cfg.ttl_ms = 1000;
    cfg.size = 3;
    expect_bad(&cfg, &rc, "size must be sizeof(keel_cache_config)");
    cfg.size = sizeof(cfg);
    /* max_entries is ignored by the Redis backend */
    cfg.max_entries = 0;
    c = NULL;
    ASSERT_OK(keel_cache_redis_create(&cfg, &rc, &c, NULL));
    keel_cache_destroy(c);
    /* the default prefix is keel:cache:<name>: and limits the name */
    char longn[300];
    memset(longn, 'n', sizeof(longn));
    longn[245] = '\0';
    cfg.name = longn;
    expect_bad(&cfg, &rc, "name must be at most 244 bytes long when prefix is NULL, got 245");
    longn[244] = '\0';
    c = NULL;
    ASSERT_OK(keel_cache_redis_create(&cfg, &rc, &c, NULL));
    keel_cache_destroy(c);

    char name[64];
    snprintf(name, sizeof(name), "dp%ld", (long)getpid());
    cfg.name = name;
    c = NULL;
    ASSERT_OK(keel_cache_redis_create(&cfg, &rc, &c, NULL));
    ASSERT_OK(keel_cache_set(c, keel_str_c("k"), keel_str_c("v")));
    char dprefix[96];
    snprintf(dprefix, sizeof(dprefix), "keel:cache:%s:", name);
    assert_int_equal(1, key_int(r, "EXISTS", dprefix, "k", 1));
    ASSERT_OK(keel_cache_delete(c, keel_str_c("k")));
    keel_cache_destroy(c);
    keel_redis_close(r);
}

/* -------------------------------------------------------------- threads -- */

typedef struct worker {
    keel_cache *c;
    int id;
    int bad;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    char k[32], v[32];
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof(k), "t%d-%d", w->id, i % 20);
        snprintf(v, sizeof(v), "v%d-%d", w->id, i);
        if (keel_cache_set(w->c, keel_str_c(k), keel_str_c(v)) != KEEL_OK)
            w->bad++;
        keel_buf b;
        keel_buf_init(&b, 64);
        if (keel_cache_get(w->c, keel_str_c(k), &b) != KEEL_OK || b.len != strlen(v) ||
            memcmp(b.ptr, v, b.len) != 0)
            w->bad++;
        keel_buf_cleanup(&b);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 2); /* 2 connections for 4 threads: checkouts wait */
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), "thr");
    keel_cache *c = redis_cache(r, prefix, 60000, 0, NULL, "thr");
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){c, i, 0};
        assert_int_equal(0, pthread_create(&t[i], NULL, worker_main, &w[i]));
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(0, pthread_join(t[i], NULL));
        assert_int_equal(0, w[i].bad);
    }
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(800, st.hits);
    assert_int_equal(0, st.misses);
    assert_int_equal(0, keel_cache_redis_errors(c));
    keel_cache_clear(c);
    keel_cache_destroy(c);
    keel_redis_close(r);
}

/* ---------------------------------------------------------------- OOM -- */

static void test_oom(void **state)
{
    (void)state;
    keel_redis *r = keel_test_redis_open(redis_url, 2);
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    char prefix[160];
    prefix_for(prefix, sizeof(prefix), "oom");
    keel_cache_config cfg;
    keel_cache_config_default(&cfg);
    cfg.metrics = m;
    keel_cache_redis_config rc;
    keel_cache_redis_config_default(&rc);
    rc.redis = r;
    keel_test_failalloc_install();
    int ok = 0;
    for (int pass = 0; pass < 2; pass++) {
        rc.prefix = pass == 0 ? NULL : prefix;
        ok = 0;
        for (int n = 0; n < 200 && !ok; n++) {
            keel_cache *c = NULL;
            keel_test_failalloc_arm(n);
            keel_err e = keel_cache_redis_create(&cfg, &rc, &c, NULL);
            keel_test_failalloc_arm(-1);
            if (e == KEEL_OK) {
                ok = 1;
                keel_cache_destroy(c);
            } else {
                assert_int_equal(KEEL_ENOMEM, e);
                assert_null(c);
            }
        }
        assert_true(ok);
    }
    /* a long key needs an allocation: a failed one is a miss on get, ENOMEM on set */
    keel_cache *c = redis_cache(r, prefix, 60000, 0, NULL, "oom");
    char longk[800];
    memset(longk, 'k', sizeof(longk));
    keel_str lk = {longk, sizeof(longk)};
    keel_test_failalloc_arm(0);
    assert_int_equal(KEEL_ENOMEM, keel_cache_set(c, lk, keel_str_c("v")));
    keel_test_failalloc_arm(-1);
    ASSERT_OK(keel_cache_set(c, lk, keel_str_c("v")));
    keel_test_failalloc_arm(0);
    assert_int_equal(0, get_is(c, lk, NULL, 0));
    keel_test_failalloc_arm(-1);
    assert_int_equal(1, get_is(c, lk, "v", 1));
    keel_test_failalloc_remove();
    ASSERT_OK(keel_cache_delete(c, lk));
    keel_cache_destroy(c);
    keel_redis_close(r);
    keel_metrics_destroy(m);
}

int main(void)
{
    redis_url = getenv("KEEL_TEST_REDIS_URL");
    if (redis_url == NULL || redis_url[0] == '\0') {
        fprintf(stderr, "KEEL_TEST_REDIS_URL not set: skipping\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(run_prefix, sizeof(run_prefix), "keeltest:cache:%ld:%ld:", (long)getpid(),
             (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_set_delete_ttl),
        cmocka_unit_test(test_binary_keys_and_values),
        cmocka_unit_test(test_two_instances_share),
        cmocka_unit_test(test_layer_replays_across_instances),
        cmocka_unit_test(test_clear_only_own_prefix),
        cmocka_unit_test(test_max_bytes_per_entry),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
