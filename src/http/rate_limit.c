/* rate_limit.c - HTTP rate-limit layer over a keel_limiter: 429 problem+json with
 * Retry-After, and the IETF RateLimit-Policy / RateLimit fields (reference.md section 5.4). */
#include "keel_int.h"

#include <stdio.h>

#include <keel/auth.h>
#include <keel/limiter.h>

typedef struct rl_layer {
    keel_layer base;
    keel_limiter *lim;
    char *key_header;
    char **prefixes; /* NULL-terminated, may be NULL */
    int key_user;
} rl_layer;

void keel_mw_rate_limit_config_default(keel_mw_rate_limit_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->skip_preflight = 1;
}

static void rl_free(rl_layer *r)
{
    for (size_t i = 0; r->prefixes && r->prefixes[i]; i++)
        keel_free(r->prefixes[i]);
    keel_free(r->prefixes);
    keel_free(r->key_header);
    keel_free(r);
}

static void rl_dispose(keel_layer *self)
{
    rl_free((rl_layer *)self);
}

/* prefix matches whole segments: "/a/b" matches "/a/b", "/a/b/c", not "/a/bc". */
static int prefix_match(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0)
        return 0;
    return path[n] == '\0' || path[n] == '/' || path[n] == '?' || (n > 0 && prefix[n - 1] == '/');
}

static int applies(const rl_layer *r, const char *path)
{
    if (r->prefixes == NULL || r->prefixes[0] == NULL)
        return 1;
    if (path == NULL)
        return 0;
    for (size_t i = 0; r->prefixes[i]; i++)
        if (prefix_match(path, r->prefixes[i]))
            return 1;
    return 0;
}

static uint64_t ms_to_s_ceil(uint64_t ms)
{
    return ms / 1000 + (ms % 1000 != 0);
}

static keel_err set_headers(keel_ctx *cx, const rl_layer *r, const keel_limit_result *res)
{
    uint32_t q;
    uint64_t w_ms;
    keel_limiter_policy(r->lim, &q, &w_ms);
    uint64_t w = ms_to_s_ceil(w_ms);
    if (w == 0)
        w = 1;
    char policy[96], state[96];
    snprintf(policy, sizeof(policy), "\"default\";q=%u;w=%llu", (unsigned)q,
             (unsigned long long)w);
    snprintf(state, sizeof(state), "\"default\";r=%u;t=%llu", (unsigned)res->remaining,
             (unsigned long long)ms_to_s_ceil(res->reset_ms));
    keel_err e = keel_resp_header_set(cx, "RateLimit-Policy", policy);
    if (e == KEEL_OK)
        e = keel_resp_header_set(cx, "RateLimit", state);
    return e;
}

static keel_err rl_call(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    rl_layer *r = (rl_layer *)self;
    keel_ctx *cx = vcx;
    if (!applies(r, keel_req_path(cx)))
        return keel_chain_next(cur, cx);
    const char *key = NULL;
    const keel_principal *who = r->key_user ? keel_ctx_principal(cx) : NULL;
    if (who != NULL && who->sub != NULL && who->sub[0] != '\0')
        key = keel_arena_sprintf(keel_ctx_arena(cx), "user:%s", who->sub);
    if (key == NULL && r->key_header)
        key = keel_req_header(cx, r->key_header);
    if (key == NULL || *key == '\0')
        key = keel_req_client_ip(cx);
    if (key == NULL || *key == '\0')
        key = "unknown";
    keel_str k = keel_str_c(key);
    if (k.len > KEEL_LIMITER_KEY_MAX)
        k.len = KEEL_LIMITER_KEY_MAX;
    keel_limit_result res;
    keel_err e = keel_limiter_take(r->lim, k, 1, &res);
    if (e == KEEL_EAGAIN) {
        uint64_t secs = res.retry_after_ms == UINT64_MAX ? 3600 : ms_to_s_ceil(res.retry_after_ms);
        if (secs == 0)
            secs = 1;
        char ra[32], detail[96];
        snprintf(ra, sizeof(ra), "%llu", (unsigned long long)secs);
        snprintf(detail, sizeof(detail), "Rate limit exceeded; retry in %llu seconds.",
                 (unsigned long long)secs);
        keel_err he = keel_resp_problem(cx, 429, NULL, detail, NULL);
        if (he == KEEL_OK)
            he = keel_resp_header_set(cx, "Retry-After", ra);
        if (he == KEEL_OK)
            he = set_headers(cx, r, &res);
        return he;
    }
    if (e == KEEL_EIO) /* a fail-closed backend (Redis) is unreachable: refuse, retry soon */
        return keel_resp_header_set(cx, "Retry-After", "1") == KEEL_OK
                   ? keel_resp_problem(cx, 503, NULL,
                                       "The rate limiter is unavailable; retry shortly.", NULL)
                   : KEEL_ENOMEM;
    if (e != KEEL_OK) /* fail open: a limiter out of memory must not take the API down */
        return keel_chain_next(cur, cx);
    keel_err ne = keel_chain_next(cur, cx);
    if (set_headers(cx, r, &res) != KEEL_OK && ne == KEEL_OK)
        ne = KEEL_ENOMEM;
    return ne;
}

static keel_err rl_call_skip_preflight(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    if (keel_req_is_preflight(vcx))
        return keel_chain_next(cur, vcx);
    return rl_call(self, vcx, cur);
}

keel_err keel_mw_rate_limit(const keel_mw_rate_limit_config *cfg, keel_layer **out)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    if (cfg == NULL || cfg->size < sizeof(*cfg) || cfg->limiter == NULL)
        return KEEL_EINVAL;
    rl_layer *r = keel__layer_new(sizeof(*r), "rate_limit",
                                  cfg->skip_preflight ? rl_call_skip_preflight : rl_call);
    if (r == NULL)
        return KEEL_ENOMEM;
    r->base.dispose = rl_dispose;
    r->lim = cfg->limiter;
    r->key_user = cfg->key_user;
    if (cfg->key_header && (r->key_header = keel_strdup(cfg->key_header)) == NULL) {
        rl_free(r);
        return KEEL_ENOMEM;
    }
    size_t n = 0;
    while (cfg->path_prefixes && cfg->path_prefixes[n])
        n++;
    if (n > 0) {
        r->prefixes = keel_calloc(n + 1, sizeof(char *));
        if (r->prefixes == NULL) {
            rl_free(r);
            return KEEL_ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
            if ((r->prefixes[i] = keel_strdup(cfg->path_prefixes[i])) == NULL) {
                rl_free(r);
                return KEEL_ENOMEM;
            }
    }
    *out = &r->base;
    return KEEL_OK;
}
