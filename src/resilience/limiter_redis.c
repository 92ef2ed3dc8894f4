/* limiter_redis.c - the four rate-limit algorithms of limiter.c kept in Redis, one atomic Lua
 * script each (EVALSHA with the NOSCRIPT fallback of keel_redis_eval()), behind the same
 * keel_limiter interface (limiter_int.h).
 *
 * Each script is a line-by-line transcription of the matching take_* function of limiter.c
 * in the same units (GCRA in microseconds, token bucket in micro-tokens and milliseconds,
 * the sliding algorithms in milliseconds), so both backends decide alike for the same
 * parameters and clock; tests/unit/resilience/test_limiter_redis.c drives both with the
 * same sequence and compares every result.
 *
 * Two deliberate differences in what is stored, neither of which changes a decision:
 *  - The in-memory limiter creates state for a key on its first take, even a refused one or
 *    a peek; the scripts write only when the state really changes.  A missing key reads as
 *    the fresh state at "now", and refilling / rotating from an older stored state gives
 *    the same result as doing it in two steps (refill is additive and capped, rotation
 *    depends only on the window index).
 *  - Keys expire (PEXPIRE) once their state equals a fresh key, where the in-memory table
 *    evicts by LRU.
 *
 * Lua in Redis computes with doubles: every quantity stays below 2^53 (checked at create
 * time and on the clock), and integer division goes through idiv(), which corrects the
 * rounding of a / b. */
#include "keel_int.h"

#include <stdatomic.h>
#include <stdio.h>

#include <keel/limiter.h>
#include <keel/metrics.h>
#include <keel/redis.h>

#include "limiter_int.h"

#define MICRO 1000000ull
#define MAX_EXTRA_MS 86400000u
#define MAX_NOW_MS (1ull << 43)  /* clock values must stay below this (about year 2248) */
#define MAX_SPAN_US (1ull << 50) /* GCRA tau; sliding window limit * window */

/* ------------------------------------------------------------------ scripts -- */

/* Shared prologue: integer helpers, then ARGV[1] now (ms, or -1 for the server's TIME),
 * ARGV[2] cost, ARGV[3] extra TTL (ms).  Algorithm parameters start at ARGV[4]. */
#define LUA_PROLOGUE                                                                               \
    "local function idiv(a, b)\n"                                                                  \
    "  local q = math.floor(a / b)\n"                                                              \
    "  local r = a - q * b\n"                                                                      \
    "  while r < 0 do q = q - 1; r = r + b end\n"                                                  \
    "  while r >= b do q = q + 1; r = r - b end\n"                                                 \
    "  return q\n"                                                                                 \
    "end\n"                                                                                        \
    "local function cdiv(a, b)\n"                                                                  \
    "  local q = idiv(a, b)\n"                                                                     \
    "  if q * b < a then q = q + 1 end\n"                                                          \
    "  return q\n"                                                                                 \
    "end\n"                                                                                        \
    "local function num(x) return string.format('%.0f', x) end\n"                                 \
    "local now = tonumber(ARGV[1])\n"                                                              \
    "if now < 0 then\n"                                                                            \
    "  local t = redis.call('TIME')\n"                                                             \
    "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                          \
    "end\n"                                                                                        \
    "local cost = tonumber(ARGV[2])\n"                                                             \
    "local extra = tonumber(ARGV[3])\n"                                                            \
    "local K = KEYS[1]\n"

/* take_gcra: ARGV[4] T (us), ARGV[5] tau (us), ARGV[6] limit.  State: the TAT in us. */
static const char LUA_GCRA[] =
    LUA_PROLOGUE
    "local T = tonumber(ARGV[4])\n"
    "local tau = tonumber(ARGV[5])\n"
    "local limit = tonumber(ARGV[6])\n"
    "local nowu = now * 1000\n"
    "local tat = tonumber(redis.call('GET', K) or nowu)\n"
    "local base = math.max(tat, nowu)\n"
    "local rc, retry, ttl = 0, 0, 0\n"
    "if cost > limit then\n"
    "  rc = 1; retry = -1; ttl = base - nowu\n"
    "else\n"
    "  local new_tat = base + T * cost\n"
    "  local diff = nowu - (new_tat - tau)\n"
    "  if diff < 0 then\n"
    "    rc = 1; retry = cdiv(-diff, 1000); ttl = base - nowu\n"
    "  else\n"
    "    if cost > 0 then\n"
    "      redis.call('SET', K, num(new_tat), 'PX', num(cdiv(new_tat - nowu, 1000) + extra))\n"
    "    end\n"
    "    ttl = new_tat - nowu\n"
    "  end\n"
    "end\n"
    "local remaining = 0\n"
    "if tau - ttl > 0 then remaining = idiv(tau - ttl, T) end\n"
    "local reset = 0\n"
    "if ttl > 0 then reset = cdiv(ttl, 1000) end\n"
    "return {rc, remaining, reset, retry}\n";

/* take_bucket: ARGV[4] capacity (micro-tokens), ARGV[5] refill (micro-tokens per ms),
 * ARGV[6] limit.  State: hash m = micro-tokens, t = last refill (ms). */
static const char LUA_BUCKET[] =
    LUA_PROLOGUE
    "local cap = tonumber(ARGV[4])\n"
    "local rate = tonumber(ARGV[5])\n"
    "local limit = tonumber(ARGV[6])\n"
    "local st = redis.call('HMGET', K, 'm', 't')\n"
    "local micro, last = cap, now\n"
    "if st[1] then micro = tonumber(st[1]); last = tonumber(st[2]) end\n"
    "if now > last then\n"
    "  local el = now - last\n"
    "  if el >= cdiv(cap, rate) then micro = cap\n"
    "  else micro = math.min(cap, micro + el * rate) end\n"
    "  last = now\n"
    "end\n"
    "local rc, retry = 0, 0\n"
    "local need = cost * 1000000\n"
    "if cost > limit then\n"
    "  rc = 1; retry = -1\n"
    "elseif micro < need then\n"
    "  rc = 1; retry = cdiv(need - micro, rate)\n"
    "else\n"
    "  micro = micro - need\n"
    "  if cost > 0 then\n"
    "    redis.call('HSET', K, 'm', num(micro), 't', num(last))\n"
    "    redis.call('PEXPIRE', K, num(cdiv(cap - micro, rate) + extra))\n"
    "  end\n"
    "end\n"
    "return {rc, idiv(micro, 1000000), cdiv(cap - micro, rate), retry}\n";

/* take_log: ARGV[4] limit, ARGV[5] window (ms).  State: a list of request times (ms),
 * oldest first - the ring of limiter.c. */
static const char LUA_LOG[] =
    LUA_PROLOGUE
    "local n = tonumber(ARGV[4])\n"
    "local w = tonumber(ARGV[5])\n"
    "local len = redis.call('LLEN', K)\n"
    "while len > 0 do\n"
    "  local h = tonumber(redis.call('LINDEX', K, 0))\n"
    "  if h + w > now then break end\n"
    "  redis.call('LPOP', K)\n"
    "  len = len - 1\n"
    "end\n"
    "local rc, retry = 0, 0\n"
    "if cost > n then\n"
    "  rc = 1; retry = -1\n"
    "elseif len + cost > n then\n"
    "  rc = 1\n"
    "  retry = tonumber(redis.call('LINDEX', K, len + cost - n - 1)) + w - now\n"
    "elseif cost > 0 then\n"
    "  local s, left = num(now), cost\n"
    "  while left > 0 do\n"
    "    local k = math.min(left, 1000)\n"
    "    local batch = {}\n"
    "    for i = 1, k do batch[i] = s end\n"
    "    redis.call('RPUSH', K, unpack(batch))\n"
    "    left = left - k\n"
    "  end\n"
    "  len = len + cost\n"
    "end\n"
    "local reset = 0\n"
    "if len > 0 then\n"
    "  reset = tonumber(redis.call('LINDEX', K, -1)) + w - now\n"
    "  if rc == 0 and cost > 0 then redis.call('PEXPIRE', K, num(reset + extra)) end\n"
    "end\n"
    "return {rc, n - len, reset, retry}\n";

/* take_window: ARGV[4] limit, ARGV[5] window (ms).  State: hash i = window index,
 * c = count in it, p = count in the one before. */
static const char LUA_WINDOW[] =
    LUA_PROLOGUE
    "local limit = tonumber(ARGV[4])\n"
    "local W = tonumber(ARGV[5])\n"
    "local idx = idiv(now, W)\n"
    "local el = now - idx * W\n"
    "local st = redis.call('HMGET', K, 'i', 'c', 'p')\n"
    "local widx, cur, prev, stored = idx, 0, 0, false\n"
    "if st[1] then\n"
    "  widx = tonumber(st[1]); cur = tonumber(st[2]); prev = tonumber(st[3]); stored = true\n"
    "end\n"
    "local old = widx\n"
    "if idx < widx then idx = widx; el = 0 end\n"
    "if idx == widx + 1 then prev = cur; cur = 0\n"
    "elseif idx > widx + 1 then prev = 0; cur = 0 end\n"
    "widx = idx\n"
    "local lim = limit * W\n"
    "local need = prev * (W - el) + (cur + cost) * W\n"
    "local rc, retry = 0, 0\n"
    "if cost > limit then\n"
    "  rc = 1; retry = -1\n"
    "elseif need > lim then\n"
    "  rc = 1\n"
    "  local dt = -1\n"
    "  if prev > 0 then dt = cdiv(need - lim, prev) end\n"
    "  if dt >= 0 and dt < W - el then retry = dt\n"
    "  else\n"
    "    local nx, e2 = (cur + cost) * W, 0\n"
    "    if nx > lim then e2 = cdiv(nx - lim, cur) end\n"
    "    retry = (W - el) + e2\n"
    "  end\n"
    "else\n"
    "  cur = cur + cost\n"
    "end\n"
    "if (rc == 0 and cost > 0) or (stored and widx ~= old) then\n"
    "  if cur == 0 and prev == 0 then redis.call('DEL', K)\n"
    "  else\n"
    "    redis.call('HSET', K, 'i', num(widx), 'c', num(cur), 'p', num(prev))\n"
    "    redis.call('PEXPIRE', K, num((widx + 2) * W - now + extra))\n"
    "  end\n"
    "end\n"
    "local est = prev * (W - el) + cur * W\n"
    "local remaining = 0\n"
    "if est < lim then remaining = idiv(lim - est, W) end\n"
    "local reset = 0\n"
    "if cur > 0 then reset = 2 * W - el elseif prev > 0 then reset = W - el end\n"
    "return {rc, remaining, reset, retry}\n";

/* ------------------------------------------------------------------ limiter -- */

typedef struct rl_redis {
    keel_redis_script *script;
    char *prefix;
    size_t prefix_len;
    const keel_clock *clock;
    keel_limiter_time time;
    keel_limiter_on_error on_error;
    uint32_t limit;
    char params[3][24]; /* ARGV[4..6] */
    size_t nparams;
    char extra[16]; /* ARGV[3] */
    keel_series *errors_series;
    _Atomic uint64_t errors;
} rl_redis;

static void rl_destroy(void *impl)
{
    rl_redis *b = impl;
    if (b == NULL)
        return;
    keel_redis_script_destroy(b->script);
    keel_free(b->prefix);
    keel_free(b);
}

/* Count a Redis failure and apply the failure policy. */
static keel_err rl_failed(rl_redis *b, keel_limit_result *r)
{
    atomic_fetch_add_explicit(&b->errors, 1, memory_order_relaxed);
    if (b->errors_series != NULL)
        keel_series_add(b->errors_series, 1);
    if (b->on_error == KEEL_LIMITER_FAIL_CLOSED)
        return KEEL_EIO;
    r->remaining = b->limit;
    r->reset_ms = 0;
    r->retry_after_ms = 0;
    return KEEL_OK;
}

/* Element i of the script's reply as a non-negative integer, or -1 for "never" (only
 * retry_after uses it); -2 when the reply is not what the script returns. */
static int64_t reply_int(const keel_redis_reply *rep, size_t i)
{
    const keel_redis_reply *e = keel_redis_reply_at(rep, i);
    if (keel_redis_reply_type(e) != KEEL_REDIS_INT)
        return -2;
    int64_t v = keel_redis_reply_int(e);
    return v < -1 ? -2 : v;
}

static keel_err rl_take(void *impl, keel_str key, uint32_t cost, keel_limit_result *r)
{
    rl_redis *b = impl;
    if (memchr(key.ptr, '\0', key.len) != NULL)
        return KEEL_EINVAL;
    char full[KEEL_LIMITER_PREFIX_MAX + KEEL_LIMITER_KEY_MAX + 1];
    memcpy(full, b->prefix, b->prefix_len);
    memcpy(full + b->prefix_len, key.ptr, key.len);
    full[b->prefix_len + key.len] = '\0';

    char now_s[24], cost_s[16];
    if (b->time == KEEL_LIMITER_TIME_REDIS) {
        memcpy(now_s, "-1", 3);
    } else {
        uint64_t now = b->clock != NULL ? keel_clock_now_ms(b->clock)
                                        : (uint64_t)KEEL_MAX(keel_time_wall_ms(), 0);
        if (now >= MAX_NOW_MS)
            return KEEL_ERANGE;
        snprintf(now_s, sizeof(now_s), "%llu", (unsigned long long)now);
    }
    snprintf(cost_s, sizeof(cost_s), "%u", (unsigned)cost);
    const char *args[6] = {now_s, cost_s, b->extra, b->params[0], b->params[1], b->params[2]};
    const char *keys[1] = {full};

    keel_redis_reply *rep = NULL;
    keel_err e = keel_redis_eval(b->script, &rep, 1, keys, 3 + b->nparams, args, NULL);
    if (e != KEEL_OK)
        return rl_failed(b, r);
    int64_t v[4] = {-2, -2, -2, -2};
    if (keel_redis_reply_type(rep) == KEEL_REDIS_ARRAY && keel_redis_reply_count(rep) == 4)
        for (size_t i = 0; i < 4; i++)
            v[i] = reply_int(rep, i);
    keel_redis_reply_free(rep);
    if (v[0] < 0 || v[0] > 1 || v[1] < 0 || v[1] > UINT32_MAX || v[2] < 0 || v[3] < -1)
        return rl_failed(b, r);
    r->remaining = (uint32_t)v[1];
    r->reset_ms = (uint64_t)v[2];
    if (v[0] == 0)
        return KEEL_OK;
    r->retry_after_ms = v[3] == -1 ? UINT64_MAX : (uint64_t)v[3];
    return KEEL_EAGAIN;
}

static const keel__limiter_backend redis_backend = {rl_take, rl_destroy};

void keel_limiter_redis_config_default(keel_limiter_redis_config *rcfg)
{
    memset(rcfg, 0, sizeof(*rcfg));
    rcfg->size = sizeof(*rcfg);
    rcfg->redis = NULL;
    rcfg->prefix = NULL;
    rcfg->time = KEEL_LIMITER_TIME_CLIENT;
    rcfg->on_error = KEEL_LIMITER_FAIL_OPEN;
    rcfg->ttl_extra_ms = 1000;
    rcfg->metrics = NULL;
}

static keel_err bad(keel_diag *d, const char *field, const char *rule, uint64_t got)
{
    return keel_diag_set(d, KEEL_EINVAL, 0, "limiter: %s must be %s, got %llu", field, rule,
                         (unsigned long long)got);
}

static keel_err validate_redis(const keel_limiter_redis_config *rc, keel_diag *d)
{
    if (rc->size < sizeof(*rc))
        return bad(d, "size", "sizeof(keel_limiter_redis_config)", rc->size);
    if (rc->redis == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "limiter: redis must not be NULL");
    if (rc->prefix != NULL && strlen(rc->prefix) > KEEL_LIMITER_PREFIX_MAX)
        return bad(d, "prefix", "at most 256 bytes long", strlen(rc->prefix));
    if (rc->time != KEEL_LIMITER_TIME_CLIENT && rc->time != KEEL_LIMITER_TIME_REDIS)
        return bad(d, "time", "a KEEL_LIMITER_TIME_* value", (uint64_t)rc->time);
    if (rc->on_error != KEEL_LIMITER_FAIL_OPEN && rc->on_error != KEEL_LIMITER_FAIL_CLOSED)
        return bad(d, "on_error", "a KEEL_LIMITER_FAIL_* value", (uint64_t)rc->on_error);
    if (rc->ttl_extra_ms > MAX_EXTRA_MS)
        return bad(d, "ttl_extra_ms", "at most 86400000", rc->ttl_extra_ms);
    return KEEL_OK;
}

/* Fill the script and its parameters for the (already validated) algorithm.  Lua's doubles
 * are exact below 2^53; the bounds below keep every intermediate there. */
static keel_err setup_algorithm(rl_redis *b, const keel_limiter_config *c, keel_redis *redis,
                                keel_diag *d)
{
    const char *lua = NULL;
    switch (c->algorithm) {
    case KEEL_LIMIT_GCRA: {
        uint64_t t_us = c->period_ms * 1000u / c->rate;
        uint64_t tau = t_us * ((uint64_t)c->burst + 1);
        if (tau > MAX_SPAN_US)
            return bad(d, "burst", "small enough that period_ms * 1000 * (burst + 1) / rate <= "
                                   "2^50 (Redis Lua arithmetic)", c->burst);
        b->limit = c->burst + 1;
        snprintf(b->params[0], sizeof(b->params[0]), "%llu", (unsigned long long)t_us);
        snprintf(b->params[1], sizeof(b->params[1]), "%llu", (unsigned long long)tau);
        snprintf(b->params[2], sizeof(b->params[2]), "%u", (unsigned)b->limit);
        b->nparams = 3;
        lua = LUA_GCRA;
        break;
    }
    case KEEL_LIMIT_TOKEN_BUCKET:
        b->limit = c->capacity;
        snprintf(b->params[0], sizeof(b->params[0]), "%llu",
                 (unsigned long long)((uint64_t)c->capacity * MICRO));
        snprintf(b->params[1], sizeof(b->params[1]), "%llu",
                 (unsigned long long)((uint64_t)c->refill_per_s * 1000u));
        snprintf(b->params[2], sizeof(b->params[2]), "%u", (unsigned)b->limit);
        b->nparams = 3;
        lua = LUA_BUCKET;
        break;
    case KEEL_LIMIT_SLIDING_LOG:
    case KEEL_LIMIT_SLIDING_WINDOW:
        if (c->algorithm == KEEL_LIMIT_SLIDING_WINDOW &&
            (uint64_t)c->limit * c->window_ms > MAX_SPAN_US)
            return bad(d, "limit", "small enough that limit * window_ms <= 2^50 (Redis Lua "
                                   "arithmetic)", c->limit);
        b->limit = c->limit;
        snprintf(b->params[0], sizeof(b->params[0]), "%u", (unsigned)c->limit);
        snprintf(b->params[1], sizeof(b->params[1]), "%llu", (unsigned long long)c->window_ms);
        b->nparams = 2;
        lua = c->algorithm == KEEL_LIMIT_SLIDING_LOG ? LUA_LOG : LUA_WINDOW;
        break;
    }
    if (lua == NULL)
        return bad(d, "algorithm", "a KEEL_LIMIT_* value", (uint64_t)c->algorithm);
    keel_err e = keel_redis_script_create(redis, lua, &b->script);
    if (e != KEEL_OK)
        return keel_diag_set(d, e, 0, "limiter: cannot register the Lua script: %s",
                             keel_strerror(e));
    return KEEL_OK;
}

keel_err keel_limiter_redis_create(const keel_limiter_config *cfg,
                                   const keel_limiter_redis_config *rcfg, keel_limiter **out,
                                   keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "limiter: out must not be NULL");
    *out = NULL;
    if (cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "limiter: config must not be NULL");
    if (rcfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "limiter: redis config must not be NULL");
    keel_err e = validate_redis(rcfg, diag);
    if (e != KEEL_OK)
        return e;
    rl_redis *b = keel__new(rl_redis);
    if (b == NULL)
        return KEEL_ENOMEM;
    atomic_init(&b->errors, 0);
    /* the base validation first: setup_algorithm divides by the rates it checks */
    keel_limiter *l = NULL;
    e = keel__limiter_create_backend(cfg, &redis_backend, b, &l, diag);
    if (e != KEEL_OK) {
        rl_destroy(b);
        return e;
    }
    /* from here on l owns b: keel_limiter_destroy(l) frees it */
    b->clock = cfg->clock;
    b->time = rcfg->time;
    b->on_error = rcfg->on_error;
    snprintf(b->extra, sizeof(b->extra), "%u", (unsigned)rcfg->ttl_extra_ms);
    e = setup_algorithm(b, cfg, rcfg->redis, diag);
    if (e == KEEL_OK) {
        if (rcfg->prefix != NULL) {
            b->prefix = keel_strdup(rcfg->prefix);
        } else {
            keel_buf p;
            keel_buf_init(&p, KEEL_LIMITER_PREFIX_MAX);
            e = keel_buf_appendf(&p, "keel:rl:%s:", keel_limiter_name(l));
            if (e == KEEL_OK)
                b->prefix = keel_buf_take(&p, NULL);
            keel_buf_cleanup(&p);
            if (e == KEEL_ETOOBIG)
                e = bad(diag, "name", "at most 247 bytes long when prefix is NULL",
                        strlen(keel_limiter_name(l)));
        }
        if (e == KEEL_OK && b->prefix == NULL)
            e = KEEL_ENOMEM;
    }
    if (e == KEEL_OK)
        b->prefix_len = strlen(b->prefix);
    if (e == KEEL_OK && rcfg->metrics != NULL) {
        static const char *const labels[] = {"limiter", NULL};
        keel_metric *f = NULL;
        e = keel_metrics_counter(rcfg->metrics, "rate_limiter_backend_errors_total",
                                 "Rate-limiter takes that could not reach their backend "
                                 "(failed open or closed)",
                                 labels, &f);
        if (e == KEEL_OK) {
            const char *values[] = {keel_limiter_name(l), NULL};
            e = keel_metric_series(f, values, &b->errors_series);
        }
        if (e != KEEL_OK && e != KEEL_ENOMEM)
            e = keel_diag_set(diag, e, 0, "limiter: metrics: %s", keel_strerror(e));
    }
    if (e != KEEL_OK) {
        keel_limiter_destroy(l);
        return e;
    }
    *out = l;
    return KEEL_OK;
}

uint64_t keel_limiter_redis_errors(const keel_limiter *l)
{
    rl_redis *b = keel__limiter_backend_impl(l, &redis_backend);
    return b != NULL ? atomic_load_explicit(&b->errors, memory_order_relaxed) : 0;
}
