/* idem_redis.c - the idempotency store on Redis.
 *
 * A record is one string value under prefix + scope + ":" + key, with a PX expiry equal to its
 * expires_ms, so Redis reclaims finished and abandoned records by itself.  Encoding (text, so
 * it can travel as a Lua argument):
 *
 *     <owner 32 hex> <state> <payload hash 64 hex> <error> <created_ms> <expires_ms> <base64 result>|-
 *
 * All three operations are Lua scripts, hence atomic: claim = SET NX PX or return the current
 * value; update and clear compare the owner prefix first. */
#include "keel_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <keel/idempotency.h>

#include "idem_int.h"

static const char LUA_CLAIM[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end\n"
    "return redis.call('GET', KEYS[1])\n";
static const char LUA_UPDATE[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v or string.sub(v, 1, 32) ~= ARGV[3] then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return 1\n";
static const char LUA_CLEAR[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v or string.sub(v, 1, 32) ~= ARGV[1] then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "return 1\n";

typedef struct redis_store {
    keel_redis *r;
    keel_redis_script *claim, *update, *clear;
    char prefix[64];
} redis_store;

static char *make_key(const redis_store *s, keel_str scope, keel_str key)
{
    size_t pl = strlen(s->prefix), n = pl + scope.len + 1 + key.len;
    char *k = keel_malloc(n + 1);
    if (k == NULL)
        return NULL;
    memcpy(k, s->prefix, pl);
    if (scope.len)
        memcpy(k + pl, scope.ptr, scope.len);
    k[pl + scope.len] = ':';
    memcpy(k + pl + scope.len + 1, key.ptr, key.len);
    k[n] = '\0';
    return k;
}

char *keel__idem_redis_encode(const keel_idem_record *rec)
{
    size_t b64 = rec->result ? keel__b64_encoded_len(rec->result_len) : 1;
    size_t cap = 32 + 1 + 4 + 64 + 1 + 24 * 3 + 8 + b64 + 1;
    char *v = keel_malloc(cap);
    if (v == NULL)
        return NULL;
    char hash[65];
    keel__hex_encode(rec->payload_hash, 32, hash);
    int n = snprintf(v, cap, "%.32s %d %s %d %lld %lld ", rec->owner, (int)rec->state, hash,
                     (int)rec->error, (long long)rec->created_ms, (long long)rec->expires_ms);
    if (n < 0 || (size_t)n >= cap) {
        keel_free(v);
        return NULL;
    }
    if (rec->result != NULL)
        keel__b64_encode(0, (const unsigned char *)rec->result, rec->result_len, v + n);
    else
        memcpy(v + n, "-", 2);
    return v;
}

/* Parse one space-terminated signed integer at *p. */
static int parse_int(const char **p, const char *end, long long *out)
{
    char buf[24];
    size_t n = 0;
    while (*p < end && **p != ' ' && n < sizeof(buf) - 1)
        buf[n++] = *(*p)++;
    if (n == 0 || *p >= end || **p != ' ')
        return 0;
    (*p)++;
    buf[n] = '\0';
    char *ep;
    errno = 0;
    *out = strtoll(buf, &ep, 10);
    return errno == 0 && *ep == '\0';
}

keel_err keel__idem_redis_decode(const char *v, size_t len, keel_idem_record *out,
                                keel_diag *diag)
{
    memset(out, 0, sizeof(*out));
    const char *p = v, *end = v + len;
    if (len < 32 + 1 + 2 + 65)
        goto corrupt;
    for (size_t i = 0; i < 32; i++)
        if (keel__hex_value(p[i]) < 0)
            goto corrupt; /* owners are 32 hex digits (idempotency.c) */
    memcpy(out->owner, p, 32);
    out->owner[32] = '\0';
    p += 32;
    if (*p++ != ' ')
        goto corrupt;
    long long st, err, created, expires;
    if (!parse_int(&p, end, &st) || end - p < 65)
        goto corrupt;
    for (size_t i = 0; i < 32; i++) {
        int hi = keel__hex_value(p[2 * i]), lo = keel__hex_value(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            goto corrupt;
        out->payload_hash[i] = (uint8_t)(hi << 4 | lo);
    }
    p += 64;
    if (*p++ != ' ' || !parse_int(&p, end, &err) || !parse_int(&p, end, &created) ||
        !parse_int(&p, end, &expires) || st < 1 || st > 3)
        goto corrupt;
    out->state = (keel_idem_state)st;
    out->error = (keel_err)err;
    out->created_ms = created;
    out->expires_ms = expires;
    size_t rest = (size_t)(end - p);
    if (rest == 1 && *p == '-')
        return KEEL_OK;
    out->result = keel_malloc(rest + 1);
    if (out->result == NULL)
        return KEEL_ENOMEM;
    long dn = keel__b64_decode(0, p, rest, (unsigned char *)out->result);
    if (dn < 0) {
        keel_idem_record_clear(out);
        goto corrupt;
    }
    out->result[dn] = '\0';
    out->result_len = (size_t)dn;
    return KEEL_OK;
corrupt:
    return keel_diag_set(diag, KEEL_EPARSE, 0, "corrupt idempotency record in Redis");
}

static keel_err run(keel_redis_script *sc, const char *key, size_t nargs,
                    const char *const *args, keel_redis_reply **reply, keel_diag *diag)
{
    const char *keys[1] = {key};
    return keel_redis_eval(sc, reply, 1, keys, nargs, args, diag);
}

static keel_err rs_set_if_absent(void *self, keel_str scope, keel_str key,
                                 const keel_idem_record *rec, int64_t now_ms,
                                 keel_idem_record *existing, keel_diag *diag)
{
    redis_store *s = self;
    if (!keel__idem_valid_scope_key(scope, key) || rec->expires_ms <= now_ms)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid idempotency scope, key or expiry");
    char *k = make_key(s, scope, key), *v = keel__idem_redis_encode(rec);
    char px[24];
    snprintf(px, sizeof(px), "%lld", (long long)(rec->expires_ms - now_ms));
    keel_err e = KEEL_ENOMEM;
    keel_redis_reply *reply = NULL;
    if (k != NULL && v != NULL) {
        const char *args[2] = {v, px};
        e = run(s->claim, k, 2, args, &reply, diag);
    }
    keel_free(k);
    keel_free(v);
    if (e != KEEL_OK)
        return e;
    if (keel_redis_reply_type(reply) == KEEL_REDIS_INT) {
        keel_redis_reply_free(reply);
        return KEEL_OK;
    }
    size_t len = 0;
    const char *cur = keel_redis_reply_str(reply, &len);
    keel_idem_record ex;
    e = cur ? keel__idem_redis_decode(cur, len, &ex, diag)
            : keel_diag_set(diag, KEEL_EPARSE, 0, "unexpected Redis reply to claim");
    keel_redis_reply_free(reply);
    if (e != KEEL_OK)
        return e;
    if (existing != NULL)
        *existing = ex;
    else
        keel_idem_record_clear(&ex);
    return KEEL_EEXIST;
}

static keel_err rs_update(void *self, keel_str scope, keel_str key, const keel_idem_record *rec,
                          int64_t now_ms, keel_diag *diag)
{
    redis_store *s = self;
    if (!keel__idem_valid_scope_key(scope, key) || rec->expires_ms <= now_ms)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid idempotency scope, key or expiry");
    char *k = make_key(s, scope, key), *v = keel__idem_redis_encode(rec);
    char px[24];
    snprintf(px, sizeof(px), "%lld", (long long)(rec->expires_ms - now_ms));
    keel_err e = KEEL_ENOMEM;
    keel_redis_reply *reply = NULL;
    if (k != NULL && v != NULL) {
        const char *args[3] = {v, px, rec->owner};
        e = run(s->update, k, 3, args, &reply, diag);
    }
    keel_free(k);
    keel_free(v);
    if (e != KEEL_OK)
        return e;
    int ok = keel_redis_reply_int(reply) == 1;
    keel_redis_reply_free(reply);
    return ok ? KEEL_OK : keel_diag_set(diag, KEEL_ESTATE, 0, "idempotency slot no longer held");
}

static keel_err rs_clear(void *self, keel_str scope, keel_str key, const char *owner,
                         keel_diag *diag)
{
    redis_store *s = self;
    if (owner == NULL || !keel__idem_valid_scope_key(scope, key))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid idempotency scope or key");
    char *k = make_key(s, scope, key);
    if (k == NULL)
        return KEEL_ENOMEM;
    keel_redis_reply *reply = NULL;
    const char *args[1] = {owner};
    keel_err e = run(s->clear, k, 1, args, &reply, diag);
    keel_free(k);
    if (e != KEEL_OK)
        return e;
    int ok = keel_redis_reply_int(reply) == 1;
    keel_redis_reply_free(reply);
    return ok ? KEEL_OK : keel_diag_set(diag, KEEL_ESTATE, 0, "idempotency slot no longer held");
}

static void rs_destroy(void *self)
{
    redis_store *s = self;
    keel_redis_script_destroy(s->claim);
    keel_redis_script_destroy(s->update);
    keel_redis_script_destroy(s->clear);
    keel_free(s);
}

static const keel_idem_store_vt REDIS_VT = {rs_set_if_absent, rs_update, rs_clear, NULL,
                                            rs_destroy};

keel_err keel_idem_store_redis(keel_idem_store **out, keel_redis *r, const char *prefix)
{
    if (out != NULL)
        *out = NULL;
    if (prefix == NULL)
        prefix = "keel:idem:";
    if (out == NULL || r == NULL || strlen(prefix) >= 64)
        return KEEL_EINVAL;
    redis_store *s = keel_calloc(1, sizeof(*s));
    if (s == NULL)
        return KEEL_ENOMEM;
    s->r = r;
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    keel_err e;
    if ((e = keel_redis_script_create(r, LUA_CLAIM, &s->claim)) != KEEL_OK ||
        (e = keel_redis_script_create(r, LUA_UPDATE, &s->update)) != KEEL_OK ||
        (e = keel_redis_script_create(r, LUA_CLEAR, &s->clear)) != KEEL_OK) {
        rs_destroy(s);
        return e;
    }
    if ((*out = keel__idem_store_wrap(&REDIS_VT, s)) == NULL) {
        rs_destroy(s);
        return KEEL_ENOMEM;
    }
    return KEEL_OK;
}
