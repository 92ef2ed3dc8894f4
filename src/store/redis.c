/*
 * redis.c - Redis client over hiredis (blocking API): a pool of connections, transparent
 * reconnect, EVALSHA with a SCRIPT LOAD fallback, and a command duration histogram.
 *
 * A keel_redis_reply is a redisReply seen through an opaque type: the pointer is never
 * dereferenced as anything else, so replies and their elements cost no copy.  hiredis 0.14
 * has no allocator hook, so reply memory comes from malloc and is released with
 * freeReplyObject(); everything keel allocates goes through keel_malloc & co.
 */
#include "keel_int.h"
#include <keel/redis.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#define REDIS_DEFAULT_PORT 6379
#define REDIS_NAME_MAX 20 /* longest command name given its own metrics series */

typedef struct rconn {
    redisContext *c; /* NULL until (re)connected */
    struct rconn *next;
} rconn;

typedef struct cmd_series {
    char name[REDIS_NAME_MAX + 1];
    keel_series *s;
} cmd_series;

struct keel_redis {
    keel_redis_config cfg;
    char *host;
    int port;
    long db;
    char *user;        /* ACL user name or NULL */
    keel_secret *pass; /* NULL when the URL has no password */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    rconn *slots; /* cfg.pool_size entries */
    rconn *idle;  /* free list, most recently used first */

    keel_metric *hist;
    pthread_mutex_t mmu; /* guards cmds/ncmds */
    cmd_series cmds[KEEL_REDIS_METRIC_COMMANDS];
    unsigned ncmds;
    keel_series *other;
};

struct keel_redis_script {
    keel_redis *r;
    char *body;
    size_t len;
    char sha[41];
};

void keel_redis_config_default(keel_redis_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->pool_size = 8;
    cfg->connect_timeout_ms = 1000;
    cfg->command_timeout_ms = 1000;
    cfg->checkout_timeout_ms = 1000;
}

/* ------------------------------------------------------------------ URL parsing -- */

/* Percent-decode s[0..n) into a fresh keel_malloc'd buffer; *outlen gets the length.
 * Returns NULL on a malformed escape (*bad set) or OOM. */
static char *pct_decode(const char *s, size_t n, size_t *outlen, bool *bad)
{
    char *o = keel_malloc(n + 1);
    size_t j = 0;
    *bad = false;
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? keel__hex_value(s[i + 1]) : -1;
            int lo = i + 2 < n ? keel__hex_value(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                keel__wipe(o, n + 1);
                keel_free(o);
                *bad = true;
                return NULL;
            }
            o[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            o[j++] = s[i];
        }
    }
    o[j] = '\0';
    *outlen = j;
    return o;
}

/* Parse "redis://[[user]:password@]host[:port][/db]" into r.  The diag never quotes the
 * URL, which may hold a password. */
static keel_err parse_url(keel_redis *r, const char *url, keel_diag *diag)
{
    if (strncmp(url, "rediss://", 9) == 0)
        return keel_diag_set(diag, KEEL_EUNSUPPORTED, 0,
                             "REDIS_URL: rediss:// (TLS) is not supported: this build's "
                             "hiredis has no TLS; use redis:// over a trusted network");
    if (strncmp(url, "redis://", 8) != 0) {
        if (strstr(url, "://") != NULL)
            return keel_diag_set(diag, KEEL_EUNSUPPORTED, 0,
                                 "REDIS_URL: unsupported scheme (expected redis://)");
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "REDIS_URL: expected redis://[[user]:password@]host[:port][/db]");
    }
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?#");
    if (*end == '?' || *end == '#')
        return keel_diag_set(diag, KEEL_EINVAL, 0, "REDIS_URL: query strings are not supported");
    /* userinfo: everything up to the last '@' of the authority */
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL)
            return keel_diag_set(diag, KEEL_EINVAL, 0,
                                 "REDIS_URL: user name without a password (use :password@)");
        bool bad = false;
        size_t n = 0;
        if (colon > p) {
            r->user = pct_decode(p, (size_t)(colon - p), &n, &bad);
            if (r->user == NULL)
                return keel_diag_set(diag, bad ? KEEL_EINVAL : KEEL_ENOMEM, 0,
                                     bad ? "REDIS_URL: bad %%-escape in the user name"
                                         : "out of memory");
        }
        if (at > colon + 1) {
            char *pw = pct_decode(colon + 1, (size_t)(at - colon - 1), &n, &bad);
            if (pw == NULL)
                return keel_diag_set(diag, bad ? KEEL_EINVAL : KEEL_ENOMEM, 0,
                                     bad ? "REDIS_URL: bad %%-escape in the password"
                                         : "out of memory");
            keel_err rc = keel_secret_create(&r->pass, pw, n);
            keel__wipe(pw, n);
            keel_free(pw);
            if (rc != KEEL_OK)
                return keel_diag_set(diag, rc, 0, "out of memory");
        }
        p = at + 1;
    }
    /* host: "[v6]" or up to ':' */
    const char *hs = p, *he;
    const char *after;
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (he == NULL)
            return keel_diag_set(diag, KEEL_EINVAL, 0, "REDIS_URL: unterminated '[' in host");
        after = he + 1;
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (he == NULL)
            he = end;
        after = he;
    }
    if (he == hs)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "REDIS_URL: missing host");
    r->host = keel_strndup(hs, (size_t)(he - hs));
    if (r->host == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    r->port = REDIS_DEFAULT_PORT;
    if (after < end) {
        if (*after != ':' || after + 1 == end)
            return keel_diag_set(diag, KEEL_EINVAL, 0, "REDIS_URL: malformed port");
        long port = 0;
        for (const char *q = after + 1; q < end; q++) {
            if (*q < '0' || *q > '9' || port > 65535)
                return keel_diag_set(diag, KEEL_EINVAL, 0, "REDIS_URL: malformed port");
            port = port * 10 + (*q - '0');
        }
        if (port < 1 || port > 65535)
            return keel_diag_set(diag, KEEL_EINVAL, 0, "REDIS_URL: port out of range");
        r->port = (int)port;
    }
    r->db = 0;
    if (*end == '/' && end[1] != '\0') {
        long db = 0;
        for (const char *q = end + 1; *q != '\0'; q++) {
            if (*q < '0' || *q > '9' || db > 1000000)
                return keel_diag_set(diag, KEEL_EINVAL, 0,
                                     "REDIS_URL: database must be a number (/0, /1, ...)");
            db = db * 10 + (*q - '0');
        }
        r->db = db;
    }
    return KEEL_OK;
}

/* ----------------------------------------------------------------- connections -- */

static struct timeval ms_tv(uint32_t ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000u);
    tv.tv_usec = (suseconds_t)((ms % 1000u) * 1000u);
    return tv;
}

/* A failed hiredis call: was it a timeout?  hiredis reports both read timeouts (EAGAIN from
 * SO_RCVTIMEO) and connect timeouts (ETIMEDOUT) as REDIS_ERR_IO with strerror text. */
static bool ctx_timed_out(const redisContext *c, int saved_errno)
{
    if (c->err != REDIS_ERR_IO)
        return false;
    if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT)
        return true;
    return strstr(c->errstr, "temporarily unavailable") != NULL ||
           strstr(c->errstr, "timed out") != NULL;
}

static keel_err ctx_error(const redisContext *c, int saved_errno)
{
    if (ctx_timed_out(c, saved_errno))
        return KEEL_ETIMEOUT;
    if (c->err == REDIS_ERR_OOM)
        return KEEL_ENOMEM;
    return KEEL_EIO;
}

/* Copy a server error reply into diag, dropping the argument values that Redis 7 appends to
 * some messages ("..., with args beginning with: 'x'"). */
static keel_err reply_error(const redisReply *rep, const char *what, keel_diag *diag)
{
    size_t n = rep->str != NULL ? rep->len : 0;
    const char *cut = rep->str != NULL ? strstr(rep->str, ", with args beginning with") : NULL;
    if (cut != NULL)
        n = (size_t)(cut - rep->str);
    if (n > 120)
        n = 120;
    return keel_diag_set(diag, KEEL_EINVAL, 0, "redis%s: %.*s", what, (int)n,
                         rep->str != NULL ? rep->str : "");
}

/* Run one command during connection setup (AUTH, SELECT); consumes nothing. */
static keel_err setup_cmd(redisContext *c, int argc, const char **argv, const size_t *lens,
                          const char *what, keel_diag *diag)
{
    errno = 0;
    redisReply *rep = redisCommandArgv(c, argc, argv, lens);
    int e = errno;
    if (rep == NULL)
        return keel_diag_set(diag, ctx_error(c, e), 0, "redis %s: %s", what, c->errstr);
    keel_err rc = KEEL_OK;
    if (rep->type == REDIS_REPLY_ERROR) {
        char w[24];
        snprintf(w, sizeof(w), " %s", what);
        rc = reply_error(rep, w, diag);
    }
    freeReplyObject(rep);
    return rc;
}

static keel_err conn_open(keel_redis *r, redisContext **out, keel_diag *diag)
{
    redisContext *c;
    errno = 0;
    if (r->cfg.connect_timeout_ms > 0)
        c = redisConnectWithTimeout(r->host, r->port, ms_tv(r->cfg.connect_timeout_ms));
    else
        c = redisConnect(r->host, r->port);
    int e = errno;
    if (c == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    if (c->err != 0) {
        keel_err rc = ctx_error(c, e);
        keel_diag_set(diag, rc == KEEL_ENOMEM ? KEEL_EIO : rc, 0,
                      "redis: cannot connect to %s:%d: %s", r->host, r->port, c->errstr);
        redisFree(c);
        return rc == KEEL_ENOMEM ? KEEL_EIO : rc;
    }
    if (r->cfg.command_timeout_ms > 0 &&
        redisSetTimeout(c, ms_tv(r->cfg.command_timeout_ms)) != REDIS_OK) {
        redisFree(c);
        return keel_diag_set(diag, KEEL_EIO, 0, "redis: cannot set the command timeout");
    }
    keel_err rc = KEEL_OK;
    if (r->pass != NULL) {
        const char *argv[3];
        size_t lens[3];
        int argc = 0;
        argv[argc] = "AUTH";
        lens[argc++] = 4;
        if (r->user != NULL) {
            argv[argc] = r->user;
            lens[argc++] = strlen(r->user);
        }
        argv[argc] = (const char *)keel__secret_bytes(r->pass);
        lens[argc++] = keel_secret_len(r->pass);
        rc = setup_cmd(c, argc, argv, lens, "AUTH", diag);
    }
    if (rc == KEEL_OK && r->db != 0) {
        char num[24];
        int n = snprintf(num, sizeof(num), "%ld", r->db);
        const char *argv[2] = {"SELECT", num};
        size_t lens[2] = {6, (size_t)n};
        rc = setup_cmd(c, 2, argv, lens, "SELECT", diag);
    }
    if (rc != KEEL_OK) {
        redisFree(c);
        return rc;
    }
    *out = c;
    return KEEL_OK;
}

/* ------------------------------------------------------------------------ pool -- */

static keel_err checkout(keel_redis *r, rconn **out, keel_diag *diag)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    uint64_t ns = (uint64_t)deadline.tv_nsec + (uint64_t)r->cfg.checkout_timeout_ms * 1000000u;
    deadline.tv_sec += (time_t)(ns / 1000000000u);
    deadline.tv_nsec = (long)(ns % 1000000000u);

    pthread_mutex_lock(&r->mu);
    while (r->idle == NULL) {
        if (r->cfg.checkout_timeout_ms == 0) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        int w = pthread_cond_timedwait(&r->cv, &r->mu, &deadline);
        if (w == ETIMEDOUT && r->idle == NULL) {
            pthread_mutex_unlock(&r->mu);
            return keel_diag_set(diag, KEEL_ETIMEOUT, 0,
                                 "redis: no connection free after %u ms (pool %u)",
                                 (unsigned)r->cfg.checkout_timeout_ms, r->cfg.pool_size);
        }
    }
    rconn *k = r->idle;
    r->idle = k->next;
    k->next = NULL;
    pthread_mutex_unlock(&r->mu);
    *out = k;
    return KEEL_OK;
}

static void checkin(keel_redis *r, rconn *k)
{
    pthread_mutex_lock(&r->mu);
    k->next = r->idle;
    r->idle = k;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---------------------------------------------------------------------- metrics -- */

static const double redis_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   2.5};

static keel_err metrics_init(keel_redis *r, keel_diag *diag)
{
    if (r->cfg.metrics == NULL)
        return KEEL_OK;
    static const char *const labels[] = {"command", NULL};
    keel_err rc = keel_metrics_histogram(
        r->cfg.metrics, "redis_command_duration_seconds",
        "Duration of one Redis command (including a reconnect and retry)", labels, redis_buckets,
        KEEL_ARRAY_LEN(redis_buckets), &r->hist);
    if (rc == KEEL_OK) {
        const char *const other[] = {"OTHER", NULL};
        rc = keel_metric_series(r->hist, other, &r->other);
    }
    if (rc != KEEL_OK)
        return keel_diag_set(diag, rc, 0, "redis: cannot register metrics: %s",
                             keel_strerror(rc));
    return KEEL_OK;
}

/* The series for a command name: its own for the first KEEL_REDIS_METRIC_COMMANDS names made
 * of letters only, "OTHER" for the rest, so values can never blow up the cardinality. */
static keel_series *series_for(keel_redis *r, const char *name, size_t len)
{
    char up[REDIS_NAME_MAX + 1];
    if (len == 0 || len > REDIS_NAME_MAX)
        return r->other;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!(c >= 'A' && c <= 'Z'))
            return r->other;
        up[i] = c;
    }
    up[len] = '\0';
    keel_series *s = r->other;
    pthread_mutex_lock(&r->mmu);
    unsigned i;
    for (i = 0; i < r->ncmds; i++)
        if (strcmp(r->cmds[i].name, up) == 0)
            break;
    if (i < r->ncmds) {
        s = r->cmds[i].s;
    } else if (r->ncmds < KEEL_REDIS_METRIC_COMMANDS) {
        const char *const vals[] = {up, NULL};
        keel_series *ns = NULL;
        if (keel_metric_series(r->hist, vals, &ns) == KEEL_OK) {
            memcpy(r->cmds[r->ncmds].name, up, len + 1);
            r->cmds[r->ncmds].s = ns;
            r->ncmds++;
            s = ns;
        }
    }
    pthread_mutex_unlock(&r->mmu);
    return s;
}

/* -------------------------------------------------------------------- commands -- */

/* Check a connection out, run argv on it and give it back.  A server error reply is returned
 * as KEEL_OK with a REDIS_REPLY_ERROR reply (callers decide).  A connection error on a
 * connection that sat idle in the pool is retried once on a fresh connection. */
static keel_err exec_argv(keel_redis *r, int argc, const char **argv, const size_t *lens,
                          redisReply **out, keel_diag *diag)
{
    *out = NULL;
    rconn *k = NULL;
    keel_err rc = checkout(r, &k, diag);
    if (rc != KEEL_OK)
        return rc;
    uint64_t t0 = keel_time_mono_ns();
    for (int attempt = 0;; attempt++) {
        bool fresh = false;
        if (k->c == NULL) {
            rc = conn_open(r, &k->c, diag);
            if (rc != KEEL_OK)
                break;
            fresh = true;
        }
        errno = 0;
        redisReply *rep = redisCommandArgv(k->c, argc, argv, lens);
        int e = errno;
        if (rep != NULL) {
            *out = rep;
            rc = KEEL_OK;
            break;
        }
        int kind = k->c->err;
        bool timeout = ctx_timed_out(k->c, e);
        rc = ctx_error(k->c, e);
        keel_diag_set(diag, rc, 0, "redis: %s", k->c->errstr);
        redisFree(k->c);
        k->c = NULL;
        if (attempt == 0 && !fresh && !timeout &&
            (kind == REDIS_ERR_IO || kind == REDIS_ERR_EOF))
            continue;
        break;
    }
    if (r->hist != NULL) {
        size_t n0 = lens != NULL ? lens[0] : strlen(argv[0]);
        double secs = (double)(keel_time_mono_ns() - t0) / 1e9;
        keel_series_observe(series_for(r, argv[0], n0), secs);
    }
    checkin(r, k);
    return rc;
}

/* Turn a top-level error reply into KEEL_EINVAL; hand anything else to the caller. */
static keel_err finish(redisReply *rep, keel_redis_reply **out, keel_diag *diag)
{
    if (rep->type == REDIS_REPLY_ERROR) {
        keel_err rc = reply_error(rep, "", diag);
        freeReplyObject(rep);
        return rc;
    }
    *out = (keel_redis_reply *)(void *)rep;
    return KEEL_OK;
}

keel_err keel_redis_cmd(keel_redis *r, keel_redis_reply **out, size_t argc,
                        const char *const *argv, const size_t *argvlen, keel_diag *diag)
{
    if (out != NULL)
        *out = NULL;
    if (r == NULL || out == NULL || argc == 0 || argc > INT_MAX || argv == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_redis_cmd: invalid arguments");
    for (size_t i = 0; i < argc; i++)
        if (argv[i] == NULL)
            return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_redis_cmd: NULL argument %zu", i);
    /* hiredis takes `const char **` but only reads the vector; the cast through uintptr_t
     * drops the inner const that its prototype lacks. */
    const char **v = (const char **)(uintptr_t)argv;
    redisReply *rep;
    keel_err rc = exec_argv(r, (int)argc, v, argvlen, &rep, diag);
    if (rc != KEEL_OK)
        return rc;
    return finish(rep, out, diag);
}

keel_err keel_redis_ping(void *redis, char *detail, size_t detail_len)
{
    keel_redis *r = redis;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_redis_reply *rep = NULL;
    const char *argv[] = {"PING"};
    keel_err rc = keel_redis_cmd(r, &rep, 1, argv, NULL, &d);
    if (rc == KEEL_OK) {
        size_t n = 0;
        const char *s = keel_redis_reply_str(rep, &n);
        if (keel_redis_reply_type(rep) != KEEL_REDIS_STATUS || n != 4 || memcmp(s, "PONG", 4))
            rc = keel_diag_set(&d, KEEL_EIO, 0, "redis: unexpected PING reply");
        keel_redis_reply_free(rep);
    }
    if (detail != NULL && detail_len > 0)
        snprintf(detail, detail_len, "%s", rc == KEEL_OK ? "ok" : d.msg);
    return rc;
}

/* ------------------------------------------------------------------ open/close -- */

static void redis_free(keel_redis *r)
{
    if (r->slots != NULL) {
        for (unsigned i = 0; i < r->cfg.pool_size; i++)
            if (r->slots[i].c != NULL)
                redisFree(r->slots[i].c);
        keel_free(r->slots);
    }
    keel_free(r->host);
    keel_free(r->user);
    keel_secret_destroy(r->pass);
    keel_free(r);
}

keel_err keel_redis_open(keel_redis **out, const keel_redis_config *cfg, keel_diag *diag)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || cfg == NULL || cfg->url == NULL || cfg->size == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_redis_open: invalid arguments");
    keel_redis *r = keel__new(keel_redis);
    if (r == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    keel_redis_config_default(&r->cfg);
    memcpy(&r->cfg, cfg, KEEL_MIN(cfg->size, sizeof(r->cfg)));
    r->cfg.size = sizeof(r->cfg);
    r->cfg.url = NULL; /* not kept: it may hold a password */
    if (r->cfg.pool_size == 0 || r->cfg.pool_size > 1024) {
        keel_free(r);
        return keel_diag_set(diag, KEEL_EINVAL, 0, "redis: pool_size must be 1..1024");
    }
    keel_err rc = parse_url(r, cfg->url, diag);
    if (rc == KEEL_OK) {
        r->slots = keel_calloc(r->cfg.pool_size, sizeof(rconn));
        if (r->slots == NULL)
            rc = keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    }
    if (rc == KEEL_OK)
        rc = metrics_init(r, diag);
    /* one connection now, so a bad URL or a server that is down fails at startup */
    if (rc == KEEL_OK)
        rc = conn_open(r, &r->slots[0].c, diag);
    if (rc != KEEL_OK) {
        redis_free(r);
        return rc;
    }
    /* free list: slot 0 (connected) first */
    for (unsigned i = r->cfg.pool_size; i-- > 0;) {
        r->slots[i].next = r->idle;
        r->idle = &r->slots[i];
    }
    pthread_condattr_t ca;
    bool ok = false;
    if (pthread_mutex_init(&r->mu, NULL) == 0) {
        if (pthread_mutex_init(&r->mmu, NULL) == 0) {
            if (pthread_condattr_init(&ca) == 0) {
                ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                     pthread_cond_init(&r->cv, &ca) == 0;
                pthread_condattr_destroy(&ca);
            }
            if (!ok)
                pthread_mutex_destroy(&r->mmu);
        }
        if (!ok)
            pthread_mutex_destroy(&r->mu);
    }
    if (!ok) {
        redis_free(r);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "redis: cannot create the pool lock");
    }
    *out = r;
    return KEEL_OK;
}

void keel_redis_close(keel_redis *r)
{
    if (r == NULL)
        return;
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->mmu);
    redis_free(r);
}

/* --------------------------------------------------------------------- replies -- */

static const redisReply *rr(const keel_redis_reply *reply)
{
    return (const redisReply *)(const void *)reply;
}

void keel_redis_reply_free(keel_redis_reply *reply)
{
    if (reply != NULL)
        freeReplyObject(reply);
}

keel_redis_type keel_redis_reply_type(const keel_redis_reply *reply)
{
    if (reply == NULL)
        return KEEL_REDIS_NIL;
    switch (rr(reply)->type) {
    case REDIS_REPLY_INTEGER:
        return KEEL_REDIS_INT;
    case REDIS_REPLY_STRING:
        return KEEL_REDIS_STR;
    case REDIS_REPLY_STATUS:
        return KEEL_REDIS_STATUS;
    case REDIS_REPLY_ARRAY:
        return KEEL_REDIS_ARRAY;
    case REDIS_REPLY_ERROR:
        return KEEL_REDIS_ERROR;
    default:
        return KEEL_REDIS_NIL;
    }
}

int64_t keel_redis_reply_int(const keel_redis_reply *reply)
{
    if (reply == NULL || rr(reply)->type != REDIS_REPLY_INTEGER)
        return 0;
    return (int64_t)rr(reply)->integer;
}

const char *keel_redis_reply_str(const keel_redis_reply *reply, size_t *len)
{
    if (len != NULL)
        *len = 0;
    if (reply == NULL)
        return NULL;
    int t = rr(reply)->type;
    if (t != REDIS_REPLY_STRING && t != REDIS_REPLY_STATUS && t != REDIS_REPLY_ERROR)
        return NULL;
    if (len != NULL)
        *len = rr(reply)->len;
    return rr(reply)->str;
}

size_t keel_redis_reply_count(const keel_redis_reply *reply)
{
    if (reply == NULL || rr(reply)->type != REDIS_REPLY_ARRAY)
        return 0;
    return rr(reply)->elements;
}

const keel_redis_reply *keel_redis_reply_at(const keel_redis_reply *reply, size_t i)
{
    if (reply == NULL || rr(reply)->type != REDIS_REPLY_ARRAY || i >= rr(reply)->elements)
        return NULL;
    return (const keel_redis_reply *)(const void *)rr(reply)->element[i];
}

/* --------------------------------------------------------------------- scripts -- */

keel_err keel_redis_script_create(keel_redis *r, const char *lua, keel_redis_script **out)
{
    if (out != NULL)
        *out = NULL;
    if (r == NULL || lua == NULL || out == NULL)
        return KEEL_EINVAL;
    keel_redis_script *s = keel__new(keel_redis_script);
    if (s == NULL)
        return KEEL_ENOMEM;
    s->r = r;
    s->len = strlen(lua);
    s->body = keel_strndup(lua, s->len);
    if (s->body == NULL) {
        keel_free(s);
        return KEEL_ENOMEM;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(s->body, s->len, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
        keel_redis_script_destroy(s);
        return KEEL_ECRYPTO;
    }
    keel__hex_encode(md, 20, s->sha);
    *out = s;
    return KEEL_OK;
}

void keel_redis_script_destroy(keel_redis_script *s)
{
    if (s == NULL)
        return;
    keel_free(s->body);
    keel_free(s);
}

const char *keel_redis_script_sha(const keel_redis_script *s)
{
    return s != NULL ? s->sha : NULL;
}

static bool is_noscript(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ERROR && rep->str != NULL && rep->len >= 8 &&
           memcmp(rep->str, "NOSCRIPT", 8) == 0;
}

keel_err keel_redis_eval(keel_redis_script *s, keel_redis_reply **out, size_t nkeys,
                         const char *const *keys, size_t nargs, const char *const *args,
                         keel_diag *diag)
{
    if (out != NULL)
        *out = NULL;
    if (s == NULL || out == NULL || (nkeys > 0 && keys == NULL) || (nargs > 0 && args == NULL) ||
        nkeys > (size_t)INT_MAX / 2 || nargs > (size_t)INT_MAX / 2 - 3)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_redis_eval: invalid arguments");
    size_t argc = 3 + nkeys + nargs;
    const char **argv = keel_calloc(argc, sizeof(*argv));
    if (argv == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    char num[24];
    snprintf(num, sizeof(num), "%zu", nkeys);
    argv[0] = "EVALSHA";
    argv[1] = s->sha;
    argv[2] = num;
    keel_err rc = KEEL_OK;
    for (size_t i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i];
        if (keys[i] == NULL)
            rc = KEEL_EINVAL;
    }
    for (size_t i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i];
        if (args[i] == NULL)
            rc = KEEL_EINVAL;
    }
    if (rc != KEEL_OK) {
        keel_free(argv);
        return keel_diag_set(diag, rc, 0, "keel_redis_eval: NULL key or argument");
    }
    redisReply *rep = NULL;
    rc = exec_argv(s->r, (int)argc, argv, NULL, &rep, diag);
    if (rc == KEEL_OK && is_noscript(rep)) {
        /* the server lost its script cache (restart, SCRIPT FLUSH): load and retry once */
        freeReplyObject(rep);
        rep = NULL;
        const char *load[3] = {"SCRIPT", "LOAD", s->body};
        size_t lens[3] = {6, 4, s->len};
        redisReply *lr = NULL;
        rc = exec_argv(s->r, 3, load, lens, &lr, diag);
        if (rc == KEEL_OK) {
            if (lr->type == REDIS_REPLY_ERROR)
                rc = reply_error(lr, " SCRIPT LOAD", diag);
            freeReplyObject(lr);
        }
        if (rc == KEEL_OK)
            rc = exec_argv(s->r, (int)argc, argv, NULL, &rep, diag);
    }
    keel_free(argv);
    if (rc != KEEL_OK)
        return rc;
    return finish(rep, out, diag);
}
