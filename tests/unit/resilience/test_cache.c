/* Tests for src/resilience/cache.c: TTL, LRU, byte cap, stats, metrics, the cache layer. */
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "keel_int.h"
#include <keel/cache.h>

static keel_cache *mk(keel_manual_clock *mc, size_t max_entries, size_t max_bytes, uint64_t ttl,
                      keel_metrics *m)
{
    keel_cache_config cfg;
    keel_cache_config_default(&cfg);
    cfg.max_entries = max_entries;
    cfg.max_bytes = max_bytes;
    cfg.ttl_ms = ttl;
    cfg.clock = &mc->clock;
    cfg.metrics = m;
    cfg.name = "prices";
    keel_cache *c = NULL;
    ASSERT_OK(keel_cache_create(&c, &cfg, NULL));
    return c;
}

/* Get key; return 1 on a hit with the value equal to want, 0 on a miss. */
static int get_is(keel_cache *c, const char *key, const char *want)
{
    keel_buf b;
    keel_buf_init(&b, 1024);
    keel_err e = keel_cache_get(c, keel_str_c(key), &b);
    int r;
    if (e == KEEL_ENOTFOUND) {
        r = 0;
    } else {
        assert_int_equal(KEEL_OK, e);
        assert_non_null(want);
        assert_int_equal(strlen(want), b.len);
        assert_memory_equal(want, b.len ? b.ptr : "", b.len);
        r = 1;
    }
    keel_buf_cleanup(&b);
    return r;
}

static void set(keel_cache *c, const char *k, const char *v)
{
    ASSERT_OK(keel_cache_set(c, keel_str_c(k), keel_str_c(v)));
}

static void test_config_validation(void **state)
{
    (void)state;
    keel_cache_config cfg;
    keel_cache_config_default(&cfg);
    assert_int_equal(1024, cfg.max_entries);
    assert_int_equal(300000, cfg.ttl_ms);
    assert_int_equal(0, cfg.max_bytes);
    keel_cache *c = (keel_cache *)&cfg;
    keel_diag d;
    cfg.max_entries = 0;
    assert_int_equal(KEEL_EINVAL, keel_cache_create(&c, &cfg, &d));
    assert_null(c);
    assert_string_equal("cache: max_entries must be >= 1, got 0", d.msg);
    keel_cache_config_default(&cfg);
    cfg.ttl_ms = 0;
    assert_int_equal(KEEL_EINVAL, keel_cache_create(&c, &cfg, &d));
    assert_string_equal("cache: ttl_ms must be >= 1, got 0", d.msg);
    keel_cache_config_default(&cfg);
    cfg.size = 3;
    assert_int_equal(KEEL_EINVAL, keel_cache_create(&c, &cfg, &d));
    assert_int_equal(KEEL_EINVAL, keel_cache_create(NULL, &cfg, NULL));
}

static void test_hit_miss_overwrite_delete(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1000);
    keel_cache *c = mk(&mc, 10, 0, 300000, NULL);
    assert_int_equal(0, get_is(c, "a", NULL));
    set(c, "a", "alpha");
    assert_int_equal(1, get_is(c, "a", "alpha"));
    set(c, "a", "ALPHA-2");
    assert_int_equal(1, get_is(c, "a", "ALPHA-2"));
    /* binary key and value with NULs, and an empty value */
    keel_str bk = {"k\0x", 3}, bv = {"v\0\1", 3};
    ASSERT_OK(keel_cache_set(c, bk, bv));
    keel_buf b;
    keel_buf_init(&b, 16);
    ASSERT_OK(keel_cache_get(c, bk, &b));
    assert_int_equal(3, b.len);
    assert_memory_equal("v\0\1", b.ptr, 3);
    keel_buf_cleanup(&b);
    keel_str k2 = {"k\0y", 3};
    assert_int_equal(KEEL_ENOTFOUND, keel_cache_get(c, k2, &b));
    set(c, "empty", "");
    assert_int_equal(1, get_is(c, "empty", ""));

    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(4, st.hits);
    assert_int_equal(2, st.misses);
    assert_int_equal(3, st.entries);
    assert_int_equal(1 + 7 + 3 + 3 + 5 + 0, st.bytes);

    ASSERT_OK(keel_cache_delete(c, keel_str_c("a")));
    assert_int_equal(KEEL_ENOTFOUND, keel_cache_delete(c, keel_str_c("a")));
    assert_int_equal(0, get_is(c, "a", NULL));
    keel_cache_clear(c);
    keel_cache_get_stats(c, &st);
    assert_int_equal(0, st.entries);
    assert_int_equal(0, st.bytes);
    assert_int_equal(4, st.hits); /* counters survive clear */
    assert_int_equal(0, get_is(c, "empty", NULL));
    keel_cache_destroy(c);
}

static void test_ttl_expires_exactly_at_ttl(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 5000);
    keel_cache *c = mk(&mc, 10, 0, 300000, NULL);
    set(c, "k", "v");
    keel_manual_clock_advance(&mc, 299999);
    assert_int_equal(1, get_is(c, "k", "v")); /* a hit does not extend the ttl */
    keel_manual_clock_advance(&mc, 1);          /* now = set time + ttl */
    assert_int_equal(0, get_is(c, "k", NULL));
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(1, st.hits);
    assert_int_equal(1, st.misses);
    assert_int_equal(1, st.expirations);
    assert_int_equal(0, st.entries); /* reclaimed */

    /* per-entry ttl, and purge */
    ASSERT_OK(keel_cache_set_ttl(c, keel_str_c("short"), keel_str_c("1"), 10));
    ASSERT_OK(keel_cache_set_ttl(c, keel_str_c("short2"), keel_str_c("2"), 10));
    set(c, "long", "3");
    keel_manual_clock_advance(&mc, 9);
    assert_int_equal(0, keel_cache_purge(c));
    keel_manual_clock_advance(&mc, 1);
    assert_int_equal(2, keel_cache_purge(c));
    keel_cache_get_stats(c, &st);
    assert_int_equal(1, st.entries);
    assert_int_equal(3, st.expirations);
    assert_int_equal(1, get_is(c, "long", "3"));
    /* overwrite restarts the ttl */
    keel_manual_clock_advance(&mc, 299990);
    set(c, "long", "4");
    keel_manual_clock_advance(&mc, 100);
    assert_int_equal(1, get_is(c, "long", "4"));
    keel_cache_destroy(c);
}

/* keel_cache_get_into(): caller storage, same hits, misses, expiry and LRU as keel_cache_get(). */
static void test_get_into(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 5000);
    keel_cache *c = mk(&mc, 2, 0, 1000, NULL);
    set(c, "a", "alpha");
    set(c, "b", "beta");
    char out[8];
    size_t n = 99;
    memset(out, 'x', sizeof(out));
    ASSERT_OK(keel_cache_get_into(c, keel_str_c("a"), out, sizeof(out), &n));
    assert_int_equal(5, n);
    assert_memory_equal("alphaxxx", out, 8); /* exactly the value, no terminator */
    /* too small: ETOOBIG with the length, storage untouched */
    char tiny[4] = "zzz";
    assert_int_equal(KEEL_ETOOBIG, keel_cache_get_into(c, keel_str_c("a"), tiny, 4, &n));
    assert_int_equal(5, n);
    assert_string_equal("zzz", tiny);
    /* cap 0 with NULL storage asks for the length only */
    assert_int_equal(KEEL_ETOOBIG, keel_cache_get_into(c, keel_str_c("b"), NULL, 0, &n));
    assert_int_equal(4, n);
    assert_int_equal(KEEL_ENOTFOUND, keel_cache_get_into(c, keel_str_c("zz"), out, 8, &n));
    assert_int_equal(0, n);
    /* a hit makes the entry most recent: "a" was read after "b", so "b" is evicted */
    ASSERT_OK(keel_cache_get_into(c, keel_str_c("a"), out, sizeof(out), &n));
    set(c, "c", "gamma");
    assert_int_equal(KEEL_ENOTFOUND, keel_cache_get_into(c, keel_str_c("b"), out, 8, &n));
    assert_int_equal(1, get_is(c, "a", "alpha"));
    /* expiry */
    keel_manual_clock_advance(&mc, 1000);
    assert_int_equal(KEEL_ENOTFOUND, keel_cache_get_into(c, keel_str_c("a"), out, 8, &n));
    assert_int_equal(KEEL_EINVAL, keel_cache_get_into(c, keel_str_c("a"), NULL, 8, &n));
    assert_int_equal(KEEL_EINVAL, keel_cache_get_into(c, keel_str_c("a"), out, 8, NULL));
    assert_int_equal(KEEL_EINVAL, keel_cache_get_into(NULL, keel_str_c("a"), out, 8, &n));
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(5, st.hits); /* a, a (too big), b (length), a, a */
    assert_int_equal(3, st.misses); /* zz, evicted b, expired a */
    /* an empty value fits any storage, even none */
    set(c, "e", "");
    n = 99;
    ASSERT_OK(keel_cache_get_into(c, keel_str_c("e"), NULL, 0, &n));
    assert_int_equal(0, n);
    keel_cache_destroy(c);
}

/* The bucket array grows from 16 as entries arrive; every entry stays reachable. */
static void test_growth(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_cache *c = mk(&mc, 100000, 0, 60000, NULL);
    char k[32], v[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof(k), "key-%d", i);
        snprintf(v, sizeof(v), "value-%d", i);
        set(c, k, v);
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof(k), "key-%d", i);
        snprintf(v, sizeof(v), "value-%d", i);
        assert_int_equal(1, get_is(c, k, v));
    }
    assert_int_equal(0, get_is(c, "key-20000", NULL));
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(20000, st.entries);
    ASSERT_OK(keel_cache_delete(c, keel_str_c("key-7")));
    assert_int_equal(0, get_is(c, "key-7", NULL));
    keel_cache_destroy(c);
}

static void test_lru_order(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_cache *c = mk(&mc, 3, 0, 1000, NULL);
    set(c, "a", "1");
    set(c, "b", "2");
    set(c, "c", "3");
    assert_int_equal(1, get_is(c, "a", "1")); /* order now (MRU..LRU): a c b */
    set(c, "d", "4");                         /* evicts b */
    assert_int_equal(0, get_is(c, "b", NULL));
    assert_int_equal(1, get_is(c, "c", "3")); /* c a d... -> c d a? order: c d a */
    set(c, "a", "1b");                        /* overwrite: a becomes MRU, no eviction */
    set(c, "e", "5");                         /* evicts d */
    assert_int_equal(0, get_is(c, "d", NULL));
    assert_int_equal(1, get_is(c, "a", "1b"));
    assert_int_equal(1, get_is(c, "c", "3"));
    assert_int_equal(1, get_is(c, "e", "5"));
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(2, st.evictions);
    assert_int_equal(0, st.expirations);
    assert_int_equal(3, st.entries);
    /* an expired LRU entry dropped for room counts as an expiration */
    keel_manual_clock_advance(&mc, 1000);
    set(c, "f", "6");
    keel_cache_get_stats(c, &st);
    assert_int_equal(2, st.evictions);
    assert_int_equal(1, st.expirations);
    keel_cache_destroy(c);
}

static void test_byte_cap(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_cache *c = mk(&mc, 100, 10, 1000, NULL); /* bytes = key + value */
    set(c, "a", "1234");                          /* 5 */
    set(c, "b", "1234");                          /* 10 */
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_int_equal(10, st.bytes);
    set(c, "c", "1"); /* 2 more: evicts a */
    assert_int_equal(0, get_is(c, "a", NULL));
    keel_cache_get_stats(c, &st);
    assert_int_equal(7, st.bytes);
    assert_int_equal(1, st.evictions);
    set(c, "d", "123456789"); /* exactly 10: evicts b and c */
    keel_cache_get_stats(c, &st);
    assert_int_equal(10, st.bytes);
    assert_int_equal(1, st.entries);
    assert_int_equal(3, st.evictions);
    /* too big for the cap at all: refused, and the old value of the key removed */
    assert_int_equal(KEEL_ETOOBIG, keel_cache_set(c, keel_str_c("d"), keel_str_c("1234567890")));
    assert_int_equal(0, get_is(c, "d", NULL));
    keel_cache_get_stats(c, &st);
    assert_int_equal(0, st.bytes);
    assert_int_equal(0, st.entries);
    /* a value too large for the caller's buffer */
    set(c, "e", "12345");
    keel_buf b;
    keel_buf_init(&b, 2);
    assert_int_equal(KEEL_ETOOBIG, keel_cache_get(c, keel_str_c("e"), &b));
    keel_buf_cleanup(&b);
    keel_cache_destroy(c);
}

static void test_metrics(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_cache *c = mk(&mc, 4, 0, 1000, m);
    set(c, "x", "1");
    assert_int_equal(1, get_is(c, "x", "1"));
    assert_int_equal(1, get_is(c, "x", "1"));
    assert_int_equal(0, get_is(c, "y", NULL));
    keel_buf out;
    keel_buf_init(&out, 1 << 16);
    ASSERT_OK(keel_metrics_expose(m, "keel_cache", &out));
    assert_non_null(strstr(out.ptr, "keel_cache_requests_total{cache=\"prices\",result=\"hit\"} 2\n"));
    assert_non_null(strstr(out.ptr, "keel_cache_requests_total{cache=\"prices\",result=\"miss\"} 1\n"));
    keel_buf_cleanup(&out);
    keel_cache_destroy(c);
    keel_metrics_destroy(m);
}

/* ------------------------------------------------------------- layer -- */

typedef struct quote {
    const char *sku; /* the key */
    int price;       /* the result */
} quote;

static int terminal_calls;

static keel_err fetch_price(void *cx, void *ud)
{
    (void)ud;
    keel_call *call = cx;
    quote *q = call->user;
    terminal_calls++;
    if (strcmp(q->sku, "bad") == 0)
        return KEEL_EIO;
    q->price = 100 + (int)strlen(q->sku) + terminal_calls * 1000;
    return KEEL_OK;
}

static keel_str q_key(const keel_call *call, void *ud)
{
    (void)ud;
    const quote *q = call->user;
    if (strcmp(q->sku, "nocache") == 0)
        return KEEL_STR_NULL;
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

static keel_err run_quote(keel_chain *ch, const char *sku, int *price)
{
    quote q = {sku, -1};
    keel_call call;
    keel_call_init(&call, "price", &q);
    keel_err e = keel_chain_run(ch, &call, fetch_price, NULL);
    *price = q.price;
    return e;
}

static void test_layer_skips_inner_on_hit(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_cache *c = mk(&mc, 10, 0, 300000, NULL);
    keel_cache_binding b = {q_key, q_load, q_store, NULL};
    keel_layer *l;
    keel_cache_binding bad = {q_key, NULL, q_store, NULL};
    assert_int_equal(KEEL_EINVAL, keel_cache_layer(c, &bad, &l));
    ASSERT_OK(keel_cache_layer(c, &b, &l));
    assert_string_equal("cache", l->name);
    keel_chain *ch;
    ASSERT_OK(keel_chain_create(&ch));
    ASSERT_OK(keel_chain_add_take(ch, l));
    terminal_calls = 0;

    int p;
    ASSERT_OK(run_quote(ch, "abc", &p)); /* miss: terminal runs */
    assert_int_equal(1103, p);
    assert_int_equal(1, terminal_calls);
    ASSERT_OK(run_quote(ch, "abc", &p)); /* hit: replayed, terminal skipped */
    assert_int_equal(1103, p);
    assert_int_equal(1, terminal_calls);
    ASSERT_OK(run_quote(ch, "abcd", &p)); /* another key: miss */
    assert_int_equal(2104, p);
    assert_int_equal(2, terminal_calls);

    /* errors are not cached */
    assert_int_equal(KEEL_EIO, run_quote(ch, "bad", &p));
    assert_int_equal(KEEL_EIO, run_quote(ch, "bad", &p));
    assert_int_equal(4, terminal_calls);
    /* a NULL key bypasses the cache */
    ASSERT_OK(run_quote(ch, "nocache", &p));
    ASSERT_OK(run_quote(ch, "nocache", &p));
    assert_int_equal(6, terminal_calls);

    /* expiry: the terminal runs again */
    keel_manual_clock_advance(&mc, 300000);
    ASSERT_OK(run_quote(ch, "abc", &p));
    assert_int_equal(7103, p);
    assert_int_equal(7, terminal_calls);

    /* an entry load() rejects is dropped and the call runs as a miss */
    ASSERT_OK(keel_cache_set(c, keel_str_c("xy"), keel_str_c("junk-bytes")));
    ASSERT_OK(run_quote(ch, "xy", &p));
    assert_int_equal(8102, p);
    assert_int_equal(8, terminal_calls);
    ASSERT_OK(run_quote(ch, "xy", &p));
    assert_int_equal(8102, p);
    assert_int_equal(8, terminal_calls);

    keel_chain_destroy(ch);
    keel_cache_destroy(c);
}

/* ------------------------------------------------- threads and OOM -- */

typedef struct hammer {
    keel_cache *c;
    int id;
    int bad;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    char k[32], v[32];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(k, sizeof(k), "k%d", (i * 7 + h->id) % 50);
        int m = snprintf(v, sizeof(v), "v%d", (i * 7 + h->id) % 50);
        keel_str ks = {k, (size_t)n}, vs = {v, (size_t)m};
        if (keel_cache_set(h->c, ks, vs) != KEEL_OK)
            h->bad++;
        keel_buf b;
        keel_buf_init(&b, 64);
        keel_err e = keel_cache_get(h->c, ks, &b);
        /* another thread may have evicted it, but a hit always has the matching value */
        if (e == KEEL_OK && (b.len != (size_t)m || memcmp(b.ptr, v, b.len) != 0))
            h->bad++;
        keel_buf_cleanup(&b);
        if (i % 97 == 0) {
            keel_err de = keel_cache_delete(h->c, ks);
            KEEL_UNUSED(de);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    keel_cache_config cfg;
    keel_cache_config_default(&cfg);
    cfg.max_entries = 20;
    keel_cache *c;
    ASSERT_OK(keel_cache_create(&c, &cfg, NULL)); /* system clock: ttl 5 min never passes */
    hammer h[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        h[i].c = c;
        h[i].id = i;
        h[i].bad = 0;
        assert_int_equal(0, pthread_create(&th[i], NULL, hammer_main, &h[i]));
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(0, h[i].bad);
    }
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    assert_true(st.entries <= 20);
    assert_int_equal(8000, st.hits + st.misses);
    keel_cache_destroy(c);
}

static void test_oom(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_cache_config cfg;
    keel_cache_config_default(&cfg);
    cfg.clock = &mc.clock;
    keel_test_failalloc_install();
    for (int n = 0; n < 3; n++) {
        keel_cache *c = NULL;
        keel_test_failalloc_arm(n);
        keel_err e = keel_cache_create(&c, &cfg, NULL);
        keel_test_failalloc_arm(-1);
        if (e == KEEL_OK)
            keel_cache_destroy(c);
        else
            assert_int_equal(KEEL_ENOMEM, e);
    }
    keel_cache *c = NULL;
    ASSERT_OK(keel_cache_create(&c, &cfg, NULL));
    set(c, "a", "old");
    keel_test_failalloc_arm(0);
    assert_int_equal(KEEL_ENOMEM, keel_cache_set(c, keel_str_c("a"), keel_str_c("new")));
    keel_test_failalloc_arm(-1);
    assert_int_equal(1, get_is(c, "a", "old")); /* old entry kept */
    keel_cache_destroy(c);
    keel_test_failalloc_remove();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_hit_miss_overwrite_delete),
        cmocka_unit_test(test_ttl_expires_exactly_at_ttl),
        cmocka_unit_test(test_get_into),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_byte_cap),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_layer_skips_inner_on_hit),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
