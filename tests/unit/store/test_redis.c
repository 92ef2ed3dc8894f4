/* Tests for src/store/redis.c against the throwaway Redis of scripts/test-services.sh
 * (KEEL_TEST_REDIS_URL): binary round trips, reply types, error replies, EVALSHA with the
 * NOSCRIPT fallback, transparent reconnect across a server restart, pool exhaustion,
 * concurrency, metrics, URL handling and password hygiene.  Exits 77 when the URL is unset. */
#define _GNU_SOURCE 1
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <keel/redis.h>

static const char *redis_url;
static char prefix[64];

static void key(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s%s", prefix, name);
}

static keel_redis *open_pool(keel_redis_config *cfg)
{
    keel_redis *r = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    cfg->url = redis_url;
    keel_err rc = keel_redis_open(&r, cfg, &d);
    if (rc != KEEL_OK)
        fprintf(stderr, "open: %s\n", d.msg);
    assert_int_equal(KEEL_OK, rc);
    return r;
}

static keel_redis *open_default(void)
{
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    return open_pool(&cfg);
}

/* Run a command of NUL-terminated arguments; returns the reply (asserting success). */
static keel_redis_reply *cmd(keel_redis *r, size_t argc, const char *const *argv)
{
    keel_redis_reply *rep = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err rc = keel_redis_cmd(r, &rep, argc, argv, NULL, &d);
    if (rc != KEEL_OK)
        fprintf(stderr, "%s: %s\n", argv[0], d.msg);
    assert_int_equal(KEEL_OK, rc);
    assert_non_null(rep);
    return rep;
}

static int64_t cmd_int(keel_redis *r, size_t argc, const char *const *argv)
{
    keel_redis_reply *rep = cmd(r, argc, argv);
    assert_int_equal(KEEL_REDIS_INT, keel_redis_reply_type(rep));
    int64_t v = keel_redis_reply_int(rep);
    keel_redis_reply_free(rep);
    return v;
}

/* ------------------------------------------------------------------ basics -- */

static void test_defaults(void **state)
{
    (void)state;
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    assert_int_equal(sizeof(cfg), cfg.size);
    assert_int_equal(8, cfg.pool_size);
    assert_int_equal(1000, cfg.connect_timeout_ms);
    assert_int_equal(1000, cfg.command_timeout_ms);
    assert_int_equal(1000, cfg.checkout_timeout_ms);
    assert_null(cfg.url);
    assert_null(cfg.metrics);
}

static void test_binary_roundtrip(void **state)
{
    (void)state;
    keel_redis *r = open_default();
    char k[96];
    key(k, sizeof(k), "bin");
    static const char val[] = {'a', '\0', 'b', '\r', '\n', '\0', 'z'};
    const char *set[] = {"SET", k, val};
    size_t setlen[] = {3, strlen(k), sizeof(val)};
    keel_redis_reply *rep = NULL;
    ASSERT_OK(keel_redis_cmd(r, &rep, 3, set, setlen, NULL));
    size_t n = 0;
    const char *s = keel_redis_reply_str(rep, &n);
    assert_int_equal(KEEL_REDIS_STATUS, keel_redis_reply_type(rep));
    assert_int_equal(2, n);
    assert_memory_equal("OK", s, 2);
    keel_redis_reply_free(rep);

    const char *get[] = {"GET", k};
    rep = cmd(r, 2, get);
    assert_int_equal(KEEL_REDIS_STR, keel_redis_reply_type(rep));
    s = keel_redis_reply_str(rep, &n);
    assert_int_equal(sizeof(val), n);
    assert_memory_equal(val, s, sizeof(val));
    assert_int_equal(0, keel_redis_reply_int(rep));
    assert_int_equal(0, keel_redis_reply_count(rep));
    keel_redis_reply_free(rep);

    char c[96];
    key(c, sizeof(c), "counter");
    const char *incr[] = {"incr", c}; /* lower case works too */
    assert_int_equal(1, cmd_int(r, 2, incr));
    assert_int_equal(2, cmd_int(r, 2, incr));
    const char *incrby[] = {"INCRBY", c, "40"};
    assert_int_equal(42, cmd_int(r, 3, incrby));

    const char *del[] = {"DEL", k, c};
    assert_int_equal(2, cmd_int(r, 3, del));
    assert_int_equal(0, cmd_int(r, 3, del));
    keel_redis_close(r);
}

static void test_nil_and_arrays(void **state)
{
    (void)state;
    keel_redis *r = open_default();
    char k[96], l[96];
    key(k, sizeof(k), "missing");
    key(l, sizeof(l), "list");
    const char *get[] = {"GET", k};
    keel_redis_reply *rep = cmd(r, 2, get);
    assert_int_equal(KEEL_REDIS_NIL, keel_redis_reply_type(rep));
    size_t n = 99;
    assert_null(keel_redis_reply_str(rep, &n));
    assert_int_equal(0, n);
    keel_redis_reply_free(rep);

    const char *push[] = {"RPUSH", l, "one", "two", "three"};
    assert_int_equal(3, cmd_int(r, 5, push));
    const char *range[] = {"LRANGE", l, "0", "-1"};
    rep = cmd(r, 4, range);
    assert_int_equal(KEEL_REDIS_ARRAY, keel_redis_reply_type(rep));
    assert_int_equal(3, keel_redis_reply_count(rep));
    const char *want[] = {"one", "two", "three"};
    for (size_t i = 0; i < 3; i++) {
        const keel_redis_reply *e = keel_redis_reply_at(rep, i);
        assert_int_equal(KEEL_REDIS_STR, keel_redis_reply_type(e));
        const char *s = keel_redis_reply_str(e, &n);
        assert_int_equal(strlen(want[i]), n);
        assert_memory_equal(want[i], s, n);
    }
    assert_null(keel_redis_reply_at(rep, 3));
    keel_redis_reply_free(rep);

    /* MGET: a string and a nil */
    char k2[96];
    key(k2, sizeof(k2), "present");
    const char *set[] = {"SET", k2, "v"};
    keel_redis_reply_free(cmd(r, 3, set));
    const char *mget[] = {"MGET", k2, k};
    rep = cmd(r, 3, mget);
    assert_int_equal(2, keel_redis_reply_count(rep));
    assert_int_equal(KEEL_REDIS_STR, keel_redis_reply_type(keel_redis_reply_at(rep, 0)));
    assert_int_equal(KEEL_REDIS_NIL, keel_redis_reply_type(keel_redis_reply_at(rep, 1)));
    keel_redis_reply_free(rep);

    const char *del[] = {"DEL", l, k2};
    assert_int_equal(2, cmd_int(r, 3, del));
    keel_redis_close(r);
}

static void test_error_reply(void **state)
{
    (void)state;
    keel_redis *r = open_default();
    char l[96];
    key(l, sizeof(l), "wrongtype");
    const char *push[] = {"RPUSH", l, "x"};
    assert_int_equal(1, cmd_int(r, 3, push));
    const char *incr[] = {"INCR", l};
    keel_redis_reply *rep = (keel_redis_reply *)(uintptr_t)1;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_EINVAL, keel_redis_cmd(r, &rep, 2, incr, NULL, &d));
    assert_null(rep);
    assert_int_equal(KEEL_EINVAL, d.code);
    assert_non_null(strstr(d.msg, "WRONGTYPE"));

    /* an unknown command: Redis echoes the arguments, the diag must not */
    const char *bogus[] = {"NOSUCHCMD", "topsecretvalue"};
    assert_int_equal(KEEL_EINVAL, keel_redis_cmd(r, &rep, 2, bogus, NULL, &d));
    assert_non_null(strstr(d.msg, "unknown command"));
    assert_null(strstr(d.msg, "topsecretvalue"));

    /* the connection is still usable after error replies */
    const char *del[] = {"DEL", l};
    assert_int_equal(1, cmd_int(r, 2, del));

    /* argument checks */
    assert_int_equal(KEEL_EINVAL, keel_redis_cmd(r, &rep, 0, incr, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_redis_cmd(NULL, &rep, 2, incr, NULL, &d));
    keel_redis_close(r);
}

/* ----------------------------------------------------------------- scripts -- */

static void test_script_noscript_fallback(void **state)
{
    (void)state;
    keel_redis *r = open_default();
    keel_redis_script *s = NULL;
    ASSERT_OK(keel_redis_script_create(
        r, "return redis.call('INCRBY', KEYS[1], ARGV[1]) * 10 + #ARGV", &s));
    /* SHA1 computed locally must match the server's */
    const char *load[] = {"SCRIPT", "LOAD",
                          "return redis.call('INCRBY', KEYS[1], ARGV[1]) * 10 + #ARGV"};
    keel_redis_reply *rep = cmd(r, 3, load);
    size_t n = 0;
    const char *sha = keel_redis_reply_str(rep, &n);
    assert_int_equal(40, n);
    assert_string_equal(sha, keel_redis_script_sha(s));
    keel_redis_reply_free(rep);

    char k[96];
    key(k, sizeof(k), "script");
    const char *keys[] = {k};
    const char *args[] = {"5", "x"};
    keel_diag d = {KEEL_OK, 0, ""};
    ASSERT_OK(keel_redis_eval(s, &rep, 1, keys, 2, args, &d));
    assert_int_equal(52, keel_redis_reply_int(rep)); /* 5 * 10 + 2 */
    keel_redis_reply_free(rep);

    /* flush the server's script cache: EVALSHA gets NOSCRIPT, load + retry succeeds */
    const char *flush[] = {"SCRIPT", "FLUSH"};
    keel_redis_reply_free(cmd(r, 2, flush));
    ASSERT_OK(keel_redis_eval(s, &rep, 1, keys, 2, args, &d));
    assert_int_equal(102, keel_redis_reply_int(rep)); /* 10 * 10 + 2 */
    keel_redis_reply_free(rep);

    /* a Lua runtime error is KEEL_EINVAL with the message */
    keel_redis_script *bad = NULL;
    ASSERT_OK(keel_redis_script_create(r, "return redis.call('NOSUCH')", &bad));
    assert_int_equal(KEEL_EINVAL, keel_redis_eval(bad, &rep, 0, NULL, 0, NULL, &d));
    assert_null(rep);
    assert_true(strlen(d.msg) > 0);
    keel_redis_script_destroy(bad);

    const char *del[] = {"DEL", k};
    assert_int_equal(1, cmd_int(r, 2, del));
    keel_redis_script_destroy(s);
    keel_redis_close(r);
}

/* ---------------------------------------------------------------- reconnect -- */

static void test_restart_reconnects(void **state)
{
    (void)state;
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    cfg.pool_size = 2;
    keel_redis *r = open_pool(&cfg);
    const char *ping[] = {"PING"};
    keel_redis_reply_free(cmd(r, 1, ping));

    int st = system(KEEL_TEST_DATA "/../../scripts/test-services.sh restart-redis >/dev/null");
    assert_int_equal(0, st);

    /* wait (up to 5 s) until the new server accepts, using a separate pool, so that the
     * command below is the first use of the old pool's dead connection */
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err rc = KEEL_EIO;
    for (int i = 0; i < 50; i++) {
        keel_redis *probe = NULL;
        rc = keel_redis_open(&probe, &cfg, &d);
        keel_redis_close(probe);
        if (rc == KEEL_OK)
            break;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(KEEL_OK, rc);

    /* the pooled connection is dead; the next command reconnects transparently */
    char k[96];
    key(k, sizeof(k), "afterrestart");
    const char *set[] = {"SET", k, "1"};
    keel_redis_reply *rep = NULL;
    rc = keel_redis_cmd(r, &rep, 3, set, NULL, &d);
    if (rc != KEEL_OK)
        fprintf(stderr, "after restart: %s\n", d.msg);
    assert_int_equal(KEEL_OK, rc);
    assert_int_equal(KEEL_REDIS_STATUS, keel_redis_reply_type(rep));
    keel_redis_reply_free(rep);
    char detail[64];
    ASSERT_OK(keel_redis_ping(r, detail, sizeof(detail)));
    assert_string_equal("ok", detail);
    const char *del[] = {"DEL", k};
    assert_int_equal(1, cmd_int(r, 2, del));
    keel_redis_close(r);
}

static uint16_t closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(0, bind(fd, (struct sockaddr *)&a, sizeof(a)));
    socklen_t len = sizeof(a);
    assert_int_equal(0, getsockname(fd, (struct sockaddr *)&a, &len));
    close(fd); /* nobody listens there now */
    return ntohs(a.sin_port);
}

static void test_unreachable(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%u", (unsigned)closed_port());
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    cfg.url = url;
    keel_redis *r = (keel_redis *)(uintptr_t)1;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_EIO, keel_redis_open(&r, &cfg, &d));
    assert_null(r);
    assert_non_null(strstr(d.msg, "cannot connect"));
}

static void test_urls(void **state)
{
    (void)state;
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    keel_redis *r = NULL;
    keel_diag d = {KEEL_OK, 0, ""};

    cfg.url = "rediss://:pw@127.0.0.1:6380";
    assert_int_equal(KEEL_EUNSUPPORTED, keel_redis_open(&r, &cfg, &d));
    assert_non_null(strstr(d.msg, "TLS"));
    assert_null(strstr(d.msg, "pw@"));
    cfg.url = "http://127.0.0.1:6379";
    assert_int_equal(KEEL_EUNSUPPORTED, keel_redis_open(&r, &cfg, &d));
    const char *bad[] = {"127.0.0.1:6379",      "redis://",          "redis://h:0",
                         "redis://h:99999",     "redis://h:12x",     "redis://h:1/x",
                         "redis://user@h:1",    "redis://:p%zz@h:1", "redis://[::1:1",
                         "redis://h:1/0?tls=1", "redis://h:"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.url = bad[i];
        keel_err rc = keel_redis_open(&r, &cfg, &d);
        if (rc != KEEL_EINVAL)
            fprintf(stderr, "url %s: %s\n", bad[i], keel_err_name(rc));
        assert_int_equal(KEEL_EINVAL, rc);
        assert_null(r);
    }
    cfg.url = NULL;
    assert_int_equal(KEEL_EINVAL, keel_redis_open(&r, &cfg, &d));
    cfg.url = redis_url;
    cfg.pool_size = 0;
    assert_int_equal(KEEL_EINVAL, keel_redis_open(&r, &cfg, &d));
}

static void test_password_never_in_diag(void **state)
{
    (void)state;
    /* the test server has no password: AUTH is refused, and the diag must not echo it */
    const char *hostport = strstr(redis_url, "://");
    assert_non_null(hostport);
    char url[160];
    snprintf(url, sizeof(url), "redis://:Sup3r%%53ecretPw@%s", hostport + 3);
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    cfg.url = url;
    keel_redis *r = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_EINVAL, keel_redis_open(&r, &cfg, &d));
    assert_null(r);
    assert_non_null(strstr(d.msg, "AUTH"));
    assert_null(strstr(d.msg, "Secret"));
    assert_null(strstr(d.msg, "Sup3r"));

    /* user name and password (Redis 6 ACL form): WRONGPASS, password not echoed */
    snprintf(url, sizeof(url), "redis://nosuchuser:An0therPw@%s", hostport + 3);
    assert_int_equal(KEEL_EINVAL, keel_redis_open(&r, &cfg, &d));
    assert_null(r);
    assert_non_null(strstr(d.msg, "AUTH"));
    assert_null(strstr(d.msg, "An0therPw"));
}

static void test_select_db(void **state)
{
    (void)state;
    char url[160];
    const char *auth = strstr(redis_url, "://") + 3;
    size_t base = (size_t)(auth - redis_url) + strcspn(auth, "/");
    snprintf(url, sizeof(url), "%.*s/3", (int)base, redis_url);
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    keel_redis *r0 = open_default();
    keel_redis *r3 = NULL;
    cfg.url = url;
    keel_diag d = {KEEL_OK, 0, ""};
    ASSERT_OK(keel_redis_open(&r3, &cfg, &d));
    char k[96];
    key(k, sizeof(k), "db3");
    const char *set[] = {"SET", k, "three"};
    keel_redis_reply_free(cmd(r3, 3, set));
    const char *exists[] = {"EXISTS", k};
    assert_int_equal(1, cmd_int(r3, 2, exists));
    assert_int_equal(0, cmd_int(r0, 2, exists));
    const char *del[] = {"DEL", k};
    assert_int_equal(1, cmd_int(r3, 2, del));
    keel_redis_close(r3);
    keel_redis_close(r0);
}

/* --------------------------------------------------------------------- pool -- */

typedef struct blocker {
    keel_redis *r;
    const char *list;
    keel_err rc;
} blocker;

static void *block_thread(void *arg)
{
    blocker *b = arg;
    const char *blpop[] = {"BLPOP", b->list, "10"};
    keel_redis_reply *rep = NULL;
    b->rc = keel_redis_cmd(b->r, &rep, 3, blpop, NULL, NULL);
    keel_redis_reply_free(rep);
    return NULL;
}

static void test_pool_exhaustion(void **state)
{
    (void)state;
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    cfg.pool_size = 1;
    cfg.checkout_timeout_ms = 50;
    cfg.command_timeout_ms = 20000;
    keel_redis *r = open_pool(&cfg);
    keel_redis *other = open_default();
    char l[96];
    key(l, sizeof(l), "blocker");
    blocker b = {r, l, KEEL_EINTERNAL};
    pthread_t t;
    assert_int_equal(0, pthread_create(&t, NULL, block_thread, &b));
    /* until the blocker holds the only connection PING succeeds; then checkout times out */
    const char *ping[] = {"PING"};
    keel_err rc = KEEL_OK;
    keel_diag d = {KEEL_OK, 0, ""};
    for (int i = 0; i < 200 && rc == KEEL_OK; i++) {
        keel_redis_reply *rep = NULL;
        rc = keel_redis_cmd(r, &rep, 1, ping, NULL, &d);
        keel_redis_reply_free(rep);
        if (rc == KEEL_OK) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(KEEL_ETIMEOUT, rc);
    assert_non_null(strstr(d.msg, "no connection free"));
    /* release the blocker through another pool */
    const char *push[] = {"RPUSH", l, "go"};
    assert_int_equal(1, cmd_int(other, 3, push));
    assert_int_equal(0, pthread_join(t, NULL));
    assert_int_equal(KEEL_OK, b.rc);
    keel_redis_reply_free(cmd(r, 1, ping));
    keel_redis_close(other);
    keel_redis_close(r);
}

static void test_command_timeout(void **state)
{
    (void)state;
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    cfg.command_timeout_ms = 100;
    keel_redis *r = open_pool(&cfg);
    char l[96];
    key(l, sizeof(l), "never");
    const char *blpop[] = {"BLPOP", l, "2"};
    keel_redis_reply *rep = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    assert_int_equal(KEEL_ETIMEOUT, keel_redis_cmd(r, &rep, 3, blpop, NULL, &d));
    assert_null(rep);
    /* the timed-out connection was dropped; the next command uses a fresh one */
    const char *ping[] = {"PING"};
    keel_redis_reply_free(cmd(r, 1, ping));
    keel_redis_close(r);
}

typedef struct incr_arg {
    keel_redis *r;
    const char *key;
    int fails;
} incr_arg;

static void *incr_thread(void *arg)
{
    incr_arg *a = arg;
    const char *incr[] = {"INCR", a->key};
    for (int i = 0; i < 1000; i++) {
        keel_redis_reply *rep = NULL;
        if (keel_redis_cmd(a->r, &rep, 2, incr, NULL, NULL) != KEEL_OK)
            a->fails++;
        keel_redis_reply_free(rep);
    }
    return NULL;
}

static void test_concurrent_incr_and_metrics(void **state)
{
    (void)state;
    keel_metrics *m = NULL;
    ASSERT_OK(keel_metrics_create(&m));
    keel_redis_config cfg;
    keel_redis_config_default(&cfg);
    cfg.pool_size = 3; /* fewer connections than threads: checkouts wait */
    cfg.metrics = m;
    cfg.checkout_timeout_ms = 10000;
    keel_redis *r = open_pool(&cfg);
    char k[96];
    key(k, sizeof(k), "concurrent");
    pthread_t t[4];
    incr_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (incr_arg){r, k, 0};
        assert_int_equal(0, pthread_create(&t[i], NULL, incr_thread, &a[i]));
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(0, pthread_join(t[i], NULL));
        assert_int_equal(0, a[i].fails);
    }
    const char *get[] = {"GET", k};
    keel_redis_reply *rep = cmd(r, 2, get);
    size_t n = 0;
    const char *s = keel_redis_reply_str(rep, &n);
    assert_int_equal(4, n);
    assert_memory_equal("4000", s, 4);
    keel_redis_reply_free(rep);

    /* more than 16 distinct command names: the rest are counted as OTHER */
    const char *names[] = {"PING", "ECHO", "EXISTS", "TYPE", "TTL",     "PTTL",    "STRLEN",
                           "LLEN", "SCARD", "HLEN", "ZCARD", "DBSIZE",  "TIME",    "LASTSAVE",
                           "ROLE", "DUMP"};
    char none[96];
    key(none, sizeof(none), "nothing"); /* absent: every one of these reads it fine */
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *argv[] = {names[i], none};
        size_t argc = (strcmp(names[i], "PING") == 0 || strcmp(names[i], "DBSIZE") == 0 ||
                       strcmp(names[i], "TIME") == 0 || strcmp(names[i], "LASTSAVE") == 0 ||
                       strcmp(names[i], "ROLE") == 0)
                          ? 1
                          : 2;
        keel_redis_reply_free(cmd(r, argc, argv));
    }

    keel_buf out;
    keel_buf_init(&out, 1 << 20);
    ASSERT_OK(keel_metrics_expose(m, "redis_", &out));
    assert_non_null(strstr(out.ptr, "redis_command_duration_seconds_bucket{command=\"INCR\""));
    assert_non_null(strstr(out.ptr, "redis_command_duration_seconds_count{command=\"INCR\"} 4000"));
    assert_non_null(strstr(out.ptr, "redis_command_duration_seconds_count{command=\"GET\"} 1"));
    /* INCR, GET + 16 names: the first 14 of the list fit, ROLE and DUMP are OTHER */
    assert_non_null(strstr(out.ptr, "command=\"LASTSAVE\""));
    assert_null(strstr(out.ptr, "command=\"ROLE\""));
    assert_non_null(strstr(out.ptr, "redis_command_duration_seconds_count{command=\"OTHER\"} 2"));
    keel_buf_cleanup(&out);

    const char *del[] = {"DEL", k};
    assert_int_equal(1, cmd_int(r, 2, del));
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
    snprintf(prefix, sizeof(prefix), "keeltest:redis:%ld:%ld:", (long)getpid(), (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_binary_roundtrip),
        cmocka_unit_test(test_nil_and_arrays),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_script_noscript_fallback),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_password_never_in_diag),
        cmocka_unit_test(test_select_db),
        cmocka_unit_test(test_pool_exhaustion),
        cmocka_unit_test(test_command_timeout),
        cmocka_unit_test(test_concurrent_incr_and_metrics),
        cmocka_unit_test(test_restart_reconnects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
