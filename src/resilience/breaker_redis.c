/* breaker_redis.c - keel_breaker state shared in Redis (keel issue 4), behind the backend
 * hook of breaker_int.h.  The design and its approximations are documented in
 * include/keel/breaker.h ("Redis backend").
 *
 * One Lua script does every operation, so each one - flush a batch and maybe open, acquire
 * a permit and maybe go half-open, record a probe and maybe close or reopen, a manual
 * transition, a stats read - is atomic in Redis.  The script is a transcription of the
 * transitions of breaker.c (same comparisons, in doubles on both sides), over a window that
 * lives in Redis.
 *
 * On the C side each breaker keeps a small cache (state, epoch, when it was read, the end of
 * the OPEN wait, a batch of CLOSED outcomes not sent yet) under its own mutex.  The epoch
 * grows with every shared transition; a reply older than the cached epoch (two threads'
 * round trips finishing out of order) is used for its own call's decision but not adopted. */
#include "keel_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <keel/breaker.h>
#include <keel/log.h>
#include <keel/metrics.h>
#include <keel/redis.h>

#include "breaker_int.h"

#define MAX_NOW_MS (1ull << 43)

/* KEYS[1] state hash, KEYS[2] window.  ARGV: 1 op, 2 now (ms, -1 = server TIME), 3 window
 * type (0 count, 1 time), 4 window size, 5 minimum calls (already clamped), 6 failure rate
 * threshold, 7 slow rate threshold, 8 wait in open (ms), 9 permitted half-open calls,
 * 10..13 op arguments.
 * ops: 's' flush ARGV[10..13] (counts of outcome codes 0..3) into the CLOSED window;
 *      'a' the same, then acquire a permission;
 *      'p' record one outcome code ARGV[10] (4 = ignored) in the current state;
 *      'm' manual transition to state ARGV[10];
 *      'q' read.
 * Returns {state, epoch, wait_ms, permitted, state_before, calls, failed, slow} where the
 * counters are the half-open probes in HALF_OPEN, else the window. */
static const char LUA_HEAD[] = /* split in two: ISO C caps string literals at 4095 bytes */
    "local function num(x) return string.format('%.0f', x) end\n"
    "local op = ARGV[1]\n"
    "local now = tonumber(ARGV[2])\n"
    "if now < 0 then\n"
    "  local t = redis.call('TIME')\n"
    "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "end\n"
    "local wtype, wsize, minc = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local fthr, sthr = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local waitd, permits = tonumber(ARGV[8]), tonumber(ARGV[9])\n"
    "local K, W = KEYS[1], KEYS[2]\n"
    "local h = redis.call('HMGET', K, 'st', 'ep', 'ou', 'hp', 'hc', 'hf', 'hs', 'wt', 'wf',\n"
    "                     'ws', 'pos', 'fill', 'ls')\n"
    "local function n(i) return tonumber(h[i]) or 0 end\n"
    "local st, ep, ou = n(1), n(2), n(3)\n"
    "local hp, hc, hf, hs = n(4), n(5), n(6), n(7)\n"
    "local wt, wf, ws, pos, fill, ls = n(8), n(9), n(10), n(11), n(12), n(13)\n"
    "local before = st\n"
    "local dirty = false\n"
    "local function over(t, f, s)\n"
    "  return f * 100.0 / t >= fthr or s * 100.0 / t >= sthr\n"
    "end\n"
    "local function clear_window()\n"
    "  redis.call('DEL', W)\n"
    "  wt, wf, ws, pos, fill, ls = 0, 0, 0, 0, 0, 0\n"
    "  dirty = true\n"
    "end\n"
    "local function go(to)\n"
    "  if to == st then return end\n"
    "  st = to\n"
    "  ep = ep + 1\n"
    "  dirty = true\n"
    "  if to == 1 then ou = now + waitd\n"
    "  elseif to == 2 then hp, hc, hf, hs = 0, 0, 0, 0\n"
    "  elseif to == 0 then clear_window() end\n"
    "end\n"
    /* time-based: move the window to end at second sec (subtract-on-evict) */
    "local function tw_advance(sec)\n"
    "  if sec <= ls then return end\n"
    "  if wt == 0 or sec - ls >= wsize then\n"
    "    if wt > 0 or fill > 0 then redis.call('DEL', W) end\n"
    "    wt, wf, ws, fill = 0, 0, 0, 0\n"
    "  elseif sec - ls > 64 then\n"
    "    local all = redis.call('HGETALL', W)\n"
    "    for i = 1, #all, 2 do\n"
    "      local bs, bt, bf, bl = string.match(all[i + 1], '(%d+) (%d+) (%d+) (%d+)')\n"
    "      if tonumber(bs) + wsize <= sec then\n"
    "        wt = wt - tonumber(bt); wf = wf - tonumber(bf); ws = ws - tonumber(bl)\n"
    "        redis.call('HDEL', W, all[i])\n"
    "      end\n"
    "    end\n"
    "  else\n"
    "    for s = ls + 1, sec do\n"
    "      local idx = s % wsize\n"
    "      local v = redis.call('HGET', W, idx)\n"
    "      if v then\n"
    "        local bs, bt, bf, bl = string.match(v, '(%d+) (%d+) (%d+) (%d+)')\n"
    "        wt = wt - tonumber(bt); wf = wf - tonumber(bf); ws = ws - tonumber(bl)\n"
    "        redis.call('HDEL', W, idx)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  ls = sec\n"
    "  dirty = true\n"
    "end\n";
static const char LUA_TAIL[] =
    "local function tw_add(c0, c1, c2, c3)\n"
    "  local sec = math.max(math.floor(now / 1000), ls)\n"
    "  tw_advance(sec)\n"
    "  local idx = sec % wsize\n"
    "  local bt, bf, bl = 0, 0, 0\n"
    "  local v = redis.call('HGET', W, idx)\n"
    "  if v then\n"
    "    local bs, t1, f1, l1 = string.match(v, '(%d+) (%d+) (%d+) (%d+)')\n"
    "    bt, bf, bl = tonumber(t1), tonumber(f1), tonumber(l1)\n"
    "  end\n"
    "  local t, f, s = c0 + c1 + c2 + c3, c1 + c3, c2 + c3\n"
    "  redis.call('HSET', W, idx, num(sec) .. ' ' .. num(bt + t) .. ' ' .. num(bf + f) ..\n"
    "             ' ' .. num(bl + s))\n"
    "  wt, wf, ws, fill = wt + t, wf + f, ws + s, 1\n"
    "end\n"
    /* count-based: append codes to the ring string (only the last wsize matter) */
    "local function cw_add(c0, c1, c2, c3)\n"
    "  local s = string.rep('0', c0) .. string.rep('2', c2) .. string.rep('1', c1) ..\n"
    "            string.rep('3', c3)\n"
    "  if #s > wsize then s = string.sub(s, #s - wsize + 1) end\n"
    "  local i = 1\n"
    "  while i <= #s do\n"
    "    local len = math.min(#s - i + 1, wsize - pos)\n"
    "    local chunk = string.sub(s, i, i + len - 1)\n"
    "    if fill == wsize then\n"
    "      local old = redis.call('GETRANGE', W, pos, pos + len - 1)\n"
    "      local _, o1 = string.gsub(old, '1', '')\n"
    "      local _, o2 = string.gsub(old, '2', '')\n"
    "      local _, o3 = string.gsub(old, '3', '')\n"
    "      wt = wt - #old; wf = wf - o1 - o3; ws = ws - o2 - o3\n"
    "    else\n"
    "      fill = math.min(wsize, fill + len)\n"
    "    end\n"
    "    redis.call('SETRANGE', W, pos, chunk)\n"
    "    local _, n1 = string.gsub(chunk, '1', '')\n"
    "    local _, n2 = string.gsub(chunk, '2', '')\n"
    "    local _, n3 = string.gsub(chunk, '3', '')\n"
    "    wt = wt + len; wf = wf + n1 + n3; ws = ws + n2 + n3\n"
    "    pos = (pos + len) % wsize\n"
    "    i = i + len\n"
    "  end\n"
    "end\n"
    "local function closed_add(c0, c1, c2, c3)\n"
    "  if st ~= 0 or c0 + c1 + c2 + c3 == 0 then return end\n"
    "  if wtype == 0 then cw_add(c0, c1, c2, c3) else tw_add(c0, c1, c2, c3) end\n"
    "  dirty = true\n"
    "  if wt >= minc and over(wt, wf, ws) then go(1) end\n"
    "end\n"
    "if wtype == 1 then tw_advance(math.max(math.floor(now / 1000), ls)) end\n"
    "local ok = 0\n"
    "local a1, a2, a3, a4 = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]),\n"
    "                       tonumber(ARGV[13])\n"
    "if op == 's' or op == 'a' then\n"
    "  closed_add(a1, a2, a3, a4)\n"
    "  if op == 'a' then\n"
    "    if st == 1 and now >= ou then go(2) end\n"
    "    if st == 0 or st == 3 then ok = 1\n"
    "    elseif st == 2 and hp < permits then hp = hp + 1; ok = 1; dirty = true end\n"
    "  end\n"
    "elseif op == 'p' then\n"
    "  if a1 == 4 then\n"
    "    if st == 2 and hp > hc then hp = hp - 1; dirty = true end\n"
    "  elseif st == 2 then\n"
    "    hc = hc + 1\n"
    "    if a1 == 1 or a1 == 3 then hf = hf + 1 end\n"
    "    if a1 >= 2 then hs = hs + 1 end\n"
    "    dirty = true\n"
    "    if hc >= permits then\n"
    "      if over(hc, hf, hs) then go(1) else go(0) end\n"
    "    end\n"
    "  elseif st == 0 then\n"
    "    local c = {0, 0, 0, 0}\n"
    "    c[a1 + 1] = 1\n"
    "    closed_add(c[1], c[2], c[3], c[4])\n"
    "  end\n"
    "elseif op == 'm' then\n"
    "  go(a1)\n"
    "  if a1 == 0 and wt + fill + pos + ls > 0 then clear_window() end\n"
    "end\n"
    "if dirty then\n"
    "  redis.call('HSET', K, 'st', num(st), 'ep', num(ep), 'ou', num(ou), 'hp', num(hp),\n"
    "             'hc', num(hc), 'hf', num(hf), 'hs', num(hs), 'wt', num(wt), 'wf', num(wf),\n"
    "             'ws', num(ws), 'pos', num(pos), 'fill', num(fill), 'ls', num(ls))\n"
    "end\n"
    "local wait = 0\n"
    "if st == 1 and ou > now then wait = ou - now end\n"
    "if st == 2 then return {st, ep, wait, ok, before, hc, hf, hs} end\n"
    "return {st, ep, wait, ok, before, wt, wf, ws}\n";

/* outcome codes, as in the ring */
enum { CODE_OK = 0, CODE_FAILED = 1, CODE_SLOW = 2, CODE_SLOW_FAILED = 3, CODE_IGNORED = 4 };

typedef struct reply {
    keel_breaker_state state, before;
    uint64_t epoch, wait;
    int permitted;
    uint32_t calls, failed, slow;
} reply;

typedef struct cb_redis {
    keel_redis_script *script;
    char *key, *wkey;
    keel_breaker_time time;
    uint32_t refresh_ms, retry_ms;
    char params[7][32]; /* ARGV[3..9] */
    keel_logger *log;
    keel_series *errors_series;
    _Atomic uint64_t errors;
    _Atomic int degraded;

    pthread_mutex_t mu;
    /* cache */
    keel_breaker_state state;
    uint64_t epoch;
    int synced;           /* a reply has been adopted since create or the last failure */
    uint64_t gen;         /* number of replies adopted (orders replies, see adopt()) */
    uint64_t fetched_at;  /* caller time of the last adopted reply */
    uint64_t open_until;  /* caller time the cached OPEN wait ends */
    int no_permit;        /* HALF_OPEN and the last acquire was refused */
    int syncing;          /* a refresh is in flight */
    uint64_t retry_at;    /* degraded: caller time of the next Redis attempt */
    uint64_t last_now;    /* newest caller time seen (manual ops in CLIENT mode) */
    uint32_t pending[4];  /* CLOSED outcomes not sent yet, by code */
    uint64_t flushed_at;  /* caller time of the last flush */
} cb_redis;

static void cb_destroy(void *impl)
{
    cb_redis *r = impl;
    if (r == NULL)
        return;
    keel_redis_script_destroy(r->script);
    pthread_mutex_destroy(&r->mu);
    keel_free(r->key);
    keel_free(r->wkey);
    keel_free(r);
}

static int fresh(const cb_redis *r, uint64_t now)
{
    return r->synced && now >= r->fetched_at && now - r->fetched_at < r->refresh_ms;
}

/* Under r->mu: may this call use Redis?  0 while degraded and before retry_at; 2 for the
 * first caller after retry_at, which claims the retry and must go to Redis; 1 normally. */
static int redis_usable(cb_redis *r, uint64_t now)
{
    if (!atomic_load(&r->degraded))
        return 1;
    if (now < r->retry_at)
        return 0;
    r->retry_at = now + r->retry_ms;
    return 2;
}

static void note_now(cb_redis *r, uint64_t now)
{
    if (now > r->last_now)
        r->last_now = now;
}

/* Count a failed script call and enter (or stay in) the local fallback. */
static void failed(cb_redis *r, keel_breaker *b, keel_err e, uint64_t now)
{
    atomic_fetch_add_explicit(&r->errors, 1, memory_order_relaxed);
    if (r->errors_series != NULL)
        keel_series_add(r->errors_series, 1);
    pthread_mutex_lock(&r->mu);
    int was = atomic_exchange(&r->degraded, 1);
    r->retry_at = now + r->retry_ms;
    memset(r->pending, 0, sizeof(r->pending)); /* a batch that could not be sent is lost */
    r->syncing = 0;
    r->synced = 0; /* the cache is no longer trusted: the retry goes to Redis */
    pthread_mutex_unlock(&r->mu);
    if (!was)
        KEEL_LOG_WARNING(r->log,
                         "breaker %s: Redis unavailable (%s); deciding locally, retrying "
                         "every %u ms",
                         keel__breaker_config(b)->name, keel_strerror(e),
                         (unsigned)r->retry_ms);
}

static int64_t reply_int(const keel_redis_reply *rep, size_t i)
{
    const keel_redis_reply *el = keel_redis_reply_at(rep, i);
    return keel_redis_reply_type(el) == KEEL_REDIS_INT ? keel_redis_reply_int(el) : -1;
}

/* Run the script.  Returns KEEL_OK with *out, or the error (already counted and logged). */
static keel_err run(cb_redis *r, keel_breaker *b, char op, uint64_t now, const uint32_t a[4],
                    reply *out)
{
    char op_s[2] = {op, '\0'}, now_s[24], a_s[4][16];
    if (r->time == KEEL_BREAKER_TIME_REDIS)
        memcpy(now_s, "-1", 3);
    else
        snprintf(now_s, sizeof(now_s), "%llu", (unsigned long long)now);
    for (int i = 0; i < 4; i++)
        snprintf(a_s[i], sizeof(a_s[i]), "%u", (unsigned)a[i]);
    const char *args[13] = {op_s,         now_s,        r->params[0], r->params[1], r->params[2],
                            r->params[3], r->params[4], r->params[5], r->params[6], a_s[0],
                            a_s[1],       a_s[2],       a_s[3]};
    const char *keys[2] = {r->key, r->wkey};
    keel_redis_reply *rep = NULL;
    keel_err e = keel_redis_eval(r->script, &rep, 2, keys, 13, args, NULL);
    int64_t v[8];
    if (e == KEEL_OK) {
        if (keel_redis_reply_type(rep) != KEEL_REDIS_ARRAY || keel_redis_reply_count(rep) != 8)
            e = KEEL_EIO;
        for (size_t i = 0; e == KEEL_OK && i < 8; i++) {
            v[i] = reply_int(rep, i);
            if (v[i] < 0 || (i != 1 && i != 2 && v[i] > UINT32_MAX))
                e = KEEL_EIO;
        }
        if (e == KEEL_OK && (v[0] > KEEL_BREAKER_FORCED_OPEN || v[4] > KEEL_BREAKER_FORCED_OPEN))
            e = KEEL_EIO;
    }
    keel_redis_reply_free(rep);
    if (e != KEEL_OK) {
        failed(r, b, e, now);
        return e;
    }
    out->state = (keel_breaker_state)v[0];
    out->epoch = (uint64_t)v[1];
    out->wait = (uint64_t)v[2];
    out->permitted = v[3] != 0;
    out->before = (keel_breaker_state)v[4];
    out->calls = (uint32_t)v[5];
    out->failed = (uint32_t)v[6];
    out->slow = (uint32_t)v[7];
    if (atomic_exchange(&r->degraded, 0))
        KEEL_LOG_INFO(r->log, "breaker %s: Redis reachable again; using the shared state",
                      keel__breaker_config(b)->name);
    return KEEL_OK;
}

/* Take the reply into the cache and the breaker's mirror (listeners are queued; breaker.c
 * delivers them).  gen is r->gen when the call was sent.  A reply with an epoch below the
 * cached one is stale (another thread's later round trip was adopted first) unless nothing
 * was adopted since this call was sent: then it ran in Redis after the cached reply, and the
 * lower epoch means the key was deleted and started again. */
static void adopt(cb_redis *r, keel_breaker *b, const reply *rp, char op, uint64_t gen,
                  uint64_t now)
{
    pthread_mutex_lock(&r->mu);
    if (op != 'p')
        r->syncing = 0;
    if (!r->synced || rp->epoch >= r->epoch || gen == r->gen) {
        r->synced = 1;
        r->gen++;
        r->epoch = rp->epoch;
        r->state = rp->state;
        r->fetched_at = now;
        r->open_until = now + rp->wait;
        r->no_permit = op == 'a' && rp->state == KEEL_BREAKER_HALF_OPEN && !rp->permitted;
        keel__breaker_adopt(b, rp->before, rp->state, now);
    }
    pthread_mutex_unlock(&r->mu);
}

static const uint32_t NONE[4] = {0, 0, 0, 0};

static keel_err cb_allow(void *impl, keel_breaker *b, uint64_t now, uint64_t *wait_ms)
{
    cb_redis *r = impl;
    if (r->time == KEEL_BREAKER_TIME_CLIENT && now >= MAX_NOW_MS)
        return KEEL_EAGAIN;
    pthread_mutex_lock(&r->mu);
    note_now(r, now);
    int usable = redis_usable(r, now);
    if (usable == 0) {
        pthread_mutex_unlock(&r->mu);
        return KEEL_EAGAIN;
    }
    if (usable == 1 && (fresh(r, now) || (r->syncing && r->state != KEEL_BREAKER_OPEN &&
                                          r->state != KEEL_BREAKER_HALF_OPEN))) {
        keel_err e = KEEL_EAGAIN;
        switch (r->state) {
        case KEEL_BREAKER_CLOSED:
        case KEEL_BREAKER_DISABLED:
            e = KEEL_OK;
            break;
        case KEEL_BREAKER_FORCED_OPEN:
            e = KEEL_EOPEN;
            break;
        case KEEL_BREAKER_OPEN:
            if (now < r->open_until) {
                *wait_ms = r->open_until - now;
                e = KEEL_EOPEN;
            }
            break;
        case KEEL_BREAKER_HALF_OPEN:
            if (r->no_permit)
                e = KEEL_EOPEN;
            break;
        }
        if (e != KEEL_EAGAIN) {
            pthread_mutex_unlock(&r->mu);
            return e;
        }
    }
    /* to Redis: flush the batch and acquire in one round trip */
    uint32_t batch[4];
    memcpy(batch, r->pending, sizeof(batch));
    memset(r->pending, 0, sizeof(r->pending));
    r->flushed_at = now;
    r->syncing = 1;
    uint64_t gen = r->gen;
    pthread_mutex_unlock(&r->mu);
    reply rp;
    if (run(r, b, 'a', now, batch, &rp) != KEEL_OK)
        return KEEL_EAGAIN;
    adopt(r, b, &rp, 'a', gen, now);
    if (rp.permitted)
        return KEEL_OK;
    *wait_ms = rp.state == KEEL_BREAKER_OPEN ? rp.wait : 0;
    return KEEL_EOPEN;
}

static keel_err cb_record(void *impl, keel_breaker *b, keel_breaker_outcome outcome, int slow,
                          uint64_t now)
{
    cb_redis *r = impl;
    if (r->time == KEEL_BREAKER_TIME_CLIENT && now >= MAX_NOW_MS)
        return KEEL_EAGAIN;
    int code = outcome == KEEL_BREAKER_IGNORED ? CODE_IGNORED
                                               : (outcome == KEEL_BREAKER_FAILURE ? 1 : 0) |
                                                     (slow ? 2 : 0);
    pthread_mutex_lock(&r->mu);
    note_now(r, now);
    int usable = redis_usable(r, now);
    if (usable == 0) {
        pthread_mutex_unlock(&r->mu);
        return KEEL_EAGAIN;
    }
    char op;
    uint32_t a[4] = {0, 0, 0, 0};
    if (r->state == KEEL_BREAKER_HALF_OPEN) {
        op = 'p'; /* probes are counted exactly, one call each */
        a[0] = (uint32_t)code;
    } else if (r->state == KEEL_BREAKER_CLOSED) {
        if (code == CODE_IGNORED) {
            pthread_mutex_unlock(&r->mu);
            return KEEL_OK;
        }
        if (r->pending[code] < UINT32_MAX)
            r->pending[code]++;
        int due = usable == 2 || now < r->flushed_at || now - r->flushed_at >= r->refresh_ms;
        if (!due || (r->syncing && usable == 1)) {
            pthread_mutex_unlock(&r->mu);
            return KEEL_OK;
        }
        op = 's';
        memcpy(a, r->pending, sizeof(a));
        memset(r->pending, 0, sizeof(r->pending));
        r->flushed_at = now;
        r->syncing = 1;
    } else if (usable == 2) {
        op = 's'; /* the retry after an outage: refresh only */
        r->syncing = 1;
    } else {
        /* OPEN, FORCED_OPEN, DISABLED: outcomes count nowhere (as in breaker.c) */
        pthread_mutex_unlock(&r->mu);
        return KEEL_OK;
    }
    uint64_t gen = r->gen;
    pthread_mutex_unlock(&r->mu);
    reply rp;
    if (run(r, b, op, now, a, &rp) != KEEL_OK)
        return KEEL_EAGAIN;
    adopt(r, b, &rp, op, gen, now);
    return KEEL_OK;
}

static keel_err cb_manual(void *impl, keel_breaker *b, keel_breaker_state to)
{
    cb_redis *r = impl;
    pthread_mutex_lock(&r->mu);
    uint64_t now = r->last_now;
    int usable = redis_usable(r, now);
    if (usable)
        memset(r->pending, 0, sizeof(r->pending));
    uint64_t gen = r->gen;
    pthread_mutex_unlock(&r->mu);
    if (!usable)
        return KEEL_EAGAIN;
    uint32_t a[4] = {(uint32_t)to, 0, 0, 0};
    reply rp;
    if (run(r, b, 'm', now, a, &rp) != KEEL_OK)
        return KEEL_EAGAIN;
    adopt(r, b, &rp, 'm', gen, now);
    return KEEL_OK;
}

static keel_err cb_stats(void *impl, keel_breaker *b, uint64_t now, keel_breaker_stats *out)
{
    cb_redis *r = impl;
    if (r->time == KEEL_BREAKER_TIME_CLIENT && now >= MAX_NOW_MS)
        return KEEL_EAGAIN;
    pthread_mutex_lock(&r->mu);
    note_now(r, now);
    int usable = redis_usable(r, now);
    uint64_t gen = r->gen;
    pthread_mutex_unlock(&r->mu);
    if (!usable)
        return KEEL_EAGAIN;
    reply rp;
    if (run(r, b, 'q', now, NONE, &rp) != KEEL_OK)
        return KEEL_EAGAIN;
    adopt(r, b, &rp, 'q', gen, now);
    const keel_breaker_config *c = keel__breaker_config(b);
    uint32_t minc = rp.state == KEEL_BREAKER_HALF_OPEN ? c->permitted_calls_in_half_open
                    : c->window_type == KEEL_BREAKER_COUNT_BASED
                        ? KEEL_MIN(c->minimum_number_of_calls, c->sliding_window_size)
                        : c->minimum_number_of_calls;
    out->state = rp.state;
    out->calls = rp.calls;
    out->failed = rp.failed;
    out->slow = rp.slow;
    int rated = rp.calls >= minc && rp.calls > 0;
    out->failure_rate = rated ? (double)rp.failed * 100.0 / (double)rp.calls : -1.0;
    out->slow_rate = rated ? (double)rp.slow * 100.0 / (double)rp.calls : -1.0;
    return KEEL_OK;
}

static const keel__breaker_backend redis_backend = {cb_allow, cb_record, cb_manual, cb_stats,
                                                    cb_destroy};

/* ------------------------------------------------------------------- config -- */

void keel_breaker_redis_config_default(keel_breaker_redis_config *rcfg)
{
    if (rcfg == NULL)
        return;
    memset(rcfg, 0, sizeof(*rcfg));
    rcfg->size = sizeof(*rcfg);
    rcfg->time = KEEL_BREAKER_TIME_REDIS;
    rcfg->refresh_ms = 100;
    rcfg->retry_ms = 1000;
}

static keel_err bad(keel_diag *d, const char *field, const char *rule, uint64_t got)
{
    return keel_diag_set(d, KEEL_EINVAL, 0, "breaker: %s must be %s, got %llu", field, rule,
                         (unsigned long long)got);
}

static keel_err validate_redis(const keel_breaker_redis_config *rc, keel_diag *d)
{
    if (rc->size != sizeof(*rc))
        return bad(d, "size", "sizeof(keel_breaker_redis_config) (use "
                              "keel_breaker_redis_config_default)",
                   rc->size);
    if (rc->redis == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "breaker: redis must not be NULL");
    if (rc->key != NULL && (rc->key[0] == '\0' || strlen(rc->key) > KEEL_BREAKER_KEY_MAX))
        return bad(d, "key", "1 to 256 bytes long", strlen(rc->key));
    if (rc->time != KEEL_BREAKER_TIME_REDIS && rc->time != KEEL_BREAKER_TIME_CLIENT)
        return bad(d, "time", "a KEEL_BREAKER_TIME_* value", (uint64_t)rc->time);
    if (rc->refresh_ms > KEEL_BREAKER_REFRESH_MAX_MS)
        return bad(d, "refresh_ms", "at most 60000", rc->refresh_ms);
    if (rc->retry_ms > KEEL_BREAKER_REFRESH_MAX_MS)
        return bad(d, "retry_ms", "at most 60000", rc->retry_ms);
    return KEEL_OK;
}

static char *concat(const char *a, const char *b, const char *c)
{
    keel_buf p;
    keel_buf_init(&p, sizeof(LUA_HEAD) + sizeof(LUA_TAIL) + 3 * KEEL_BREAKER_KEY_MAX);
    keel_err e = keel_buf_appendf(&p, "%s%s%s", a, b, c);
    char *s = e == KEEL_OK ? keel_buf_take(&p, NULL) : NULL;
    keel_buf_cleanup(&p);
    return s;
}

keel_err keel_breaker_redis_create(keel_breaker **out, const keel_breaker_config *cfg,
                                   const keel_breaker_redis_config *rcfg, keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "breaker: out must not be NULL");
    *out = NULL;
    if (rcfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "breaker: redis config must not be NULL");
    keel_err e = keel_breaker_config_validate(cfg, diag);
    if (e != KEEL_OK)
        return e;
    e = validate_redis(rcfg, diag);
    if (e != KEEL_OK)
        return e;
    const char *name = cfg->name != NULL && cfg->name[0] != '\0' ? cfg->name : "breaker";
    if (rcfg->key == NULL && strlen(name) > KEEL_BREAKER_KEY_MAX - 10)
        return bad(diag, "name", "at most 246 bytes long when key is NULL", strlen(name));
    cb_redis *r = keel__new(cb_redis);
    if (r == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "breaker: out of memory");
    atomic_init(&r->errors, 0);
    atomic_init(&r->degraded, 0);
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        keel_free(r);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "breaker: out of memory");
    }
    r->time = rcfg->time;
    r->refresh_ms = rcfg->refresh_ms;
    r->retry_ms = rcfg->retry_ms;
    r->state = KEEL_BREAKER_CLOSED;
    r->log = keel_logger_get("keel.breaker");
    r->key = rcfg->key != NULL ? keel_strdup(rcfg->key) : concat("keel:cb:{", name, "}");
    r->wkey = r->key != NULL ? concat(r->key, ":w", "") : NULL;
    uint32_t minc = cfg->window_type == KEEL_BREAKER_COUNT_BASED
                        ? KEEL_MIN(cfg->minimum_number_of_calls, cfg->sliding_window_size)
                        : cfg->minimum_number_of_calls;
    snprintf(r->params[0], sizeof(r->params[0]), "%d",
             cfg->window_type == KEEL_BREAKER_COUNT_BASED ? 0 : 1);
    snprintf(r->params[1], sizeof(r->params[1]), "%u", (unsigned)cfg->sliding_window_size);
    snprintf(r->params[2], sizeof(r->params[2]), "%u", (unsigned)minc);
    snprintf(r->params[3], sizeof(r->params[3]), "%.17g", cfg->failure_rate_threshold);
    snprintf(r->params[4], sizeof(r->params[4]), "%.17g", cfg->slow_call_rate_threshold);
    snprintf(r->params[5], sizeof(r->params[5]), "%llu",
             (unsigned long long)KEEL_MIN(cfg->wait_duration_in_open_ms, MAX_NOW_MS));
    snprintf(r->params[6], sizeof(r->params[6]), "%u",
             (unsigned)cfg->permitted_calls_in_half_open);
    if (r->key == NULL || r->wkey == NULL) {
        cb_destroy(r);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "breaker: out of memory");
    }
    char *lua = concat(LUA_HEAD, LUA_TAIL, "");
    e = lua != NULL ? keel_redis_script_create(rcfg->redis, lua, &r->script) : KEEL_ENOMEM;
    keel_free(lua);
    if (e != KEEL_OK) {
        cb_destroy(r);
        return keel_diag_set(diag, e, 0, "breaker: cannot register the Lua script: %s",
                             keel_strerror(e));
    }
    if (rcfg->metrics != NULL) {
        static const char *const labels[] = {"name", NULL};
        keel_metric *m = NULL;
        e = keel_metrics_counter(rcfg->metrics, "keel_breaker_backend_errors_total",
                                 "Circuit-breaker calls that could not reach the shared state "
                                 "and were decided locally.",
                                 labels, &m);
        if (e == KEEL_OK) {
            const char *values[] = {name, NULL};
            e = keel_metric_series(m, values, &r->errors_series);
        }
        if (e != KEEL_OK) {
            cb_destroy(r);
            return keel_diag_set(diag, e, 0, "breaker: metrics: %s", keel_strerror(e));
        }
    }
    keel_breaker *b = NULL;
    e = keel__breaker_create_backend(cfg, &redis_backend, r, &b, diag);
    if (e != KEEL_OK) {
        cb_destroy(r);
        return e;
    }
    *out = b;
    return KEEL_OK;
}

uint64_t keel_breaker_redis_errors(const keel_breaker *b)
{
    cb_redis *r = keel__breaker_backend_impl(b, &redis_backend);
    return r != NULL ? atomic_load_explicit(&r->errors, memory_order_relaxed) : 0;
}

int keel_breaker_redis_degraded(const keel_breaker *b)
{
    cb_redis *r = keel__breaker_backend_impl(b, &redis_backend);
    return r != NULL ? atomic_load(&r->degraded) : 0;
}
