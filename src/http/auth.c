/* auth.c - the bearer-token authentication layer (RFC 6750) for the HTTP chain's auth slot,
 * the principal it binds to the request, and role/scope checks for handlers. */
#include "keel_int.h"

#include "ctx.h"

#include <keel/auth.h>
#include <keel/cache.h>
#include <keel/log.h>

#include <stdio.h>
#include <string.h>

#define AUTH_DEFAULT_REALM "keel"
#define AUTH_DETAIL_MISSING "Authentication is required."
#define AUTH_DETAIL_INVALID "The access token is invalid or expired."
#define AUTH_DETAIL_STORE "The session store is unavailable; try again later."
#define AUTH_DETAIL_ROLE "The caller lacks a required role."
#define AUTH_DETAIL_SCOPE "The access token lacks a required scope."
#define AUTH_CHALLENGE_MAX 512u

/* Key of the request slot holding the auth_state (compared by address). */
static const char principal_slot = 0;

typedef struct auth_layer {
    keel_layer base;
    const keel_jwt_keyset *keys;
    keel_jwt_policy policy;
    char **exclude; /* NULL-terminated copies */
    keel_auth_session_fn session_check;
    void *session_ud;
    uint32_t cache_ms;
    keel_cache *cache; /* sid -> "1" valid / "0" denied; NULL when off */
    char *realm;
    char *chal_missing; /* Bearer realm="..." */
    char *chal_invalid; /* ... error="invalid_token", error_description="..." */
    keel_logger *log;
    int routed_only;
} auth_layer;

/* Key of the request slot where keel_auth_ready_inline() leaves what it verified, so that the
 * layer does not verify the same token twice. */
static const char verified_slot = 0;

typedef struct verified {
    json_t *claims;     /* the token's verified claims (released when the request ends) */
    int session_cached; /* the session verdict "valid" was in the cache */
} verified;

static void verified_release(void *arg)
{
    verified *v = arg;
    json_decref(v->claims);
    v->claims = NULL;
}

/* What the request slot holds: the public principal plus the layer that made it. */
typedef struct auth_state {
    keel_principal p;
    const auth_layer *layer;
} auth_state;

void keel_auth_config_default(keel_auth_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->session_cache_ms = 5000;
    cfg->realm = AUTH_DEFAULT_REALM;
    cfg->session_cache_max = 10000;
}

/* ------------------------------------------------------------- parsing -- */

/* token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" (RFC 9110 §11.2);
 * a table, because tokens are read on every request and run to hundreds of bytes. */
static const unsigned char token68_tab[256] = {
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,
    ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['-'] = 1, ['.'] = 1,
    ['_'] = 1, ['~'] = 1, ['+'] = 1, ['/'] = 1,
};
#define token68_char(c) (token68_tab[(unsigned char)(c)] != 0)

/* tchar (RFC 9110 §5.6.2), for the auth-scheme name. */
static int tchar(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

keel_err keel_auth_parse_bearer(const char *value, keel_str *token)
{
    if (token == NULL)
        return KEEL_EINVAL;
    *token = KEEL_STR_NULL;
    if (value == NULL || value[0] == '\0')
        return KEEL_ENOTFOUND;
    const unsigned char *s = (const unsigned char *)value;
    size_t i = 0;
    while (tchar(s[i]) && i < 16)
        i++;
    if (i != 6 || !keel_str_ieq((keel_str){value, 6}, KEEL_STR_LIT("Bearer")) ||
        (s[6] != ' ' && s[6] != '\0' && s[6] != '\t'))
        return KEEL_ENOTFOUND; /* another scheme (or a longer scheme name) */
    if (s[6] != ' ')
        return KEEL_EPARSE; /* "Bearer" without credentials, or a tab */
    while (s[i] == ' ')
        i++;
    size_t start = i;
    while (token68_char(s[i])) {
        i++;
        if (i - start > KEEL_AUTH_TOKEN_MAX)
            return KEEL_ETOOBIG;
    }
    if (i == start)
        return KEEL_EPARSE;
    while (s[i] == '=') {
        i++;
        if (i - start > KEEL_AUTH_TOKEN_MAX)
            return KEEL_ETOOBIG;
    }
    size_t end = i;
    while (s[i] == ' ' || s[i] == '\t')
        i++;
    if (s[i] != '\0')
        return KEEL_EPARSE; /* a second token, a parameter list, a control byte... */
    token->ptr = value + start;
    token->len = end - start;
    return KEEL_OK;
}

/* ----------------------------------------------------------- principal -- */

/* A claim that must be a string without NUL bytes, copied into the arena.  Absent: *out NULL
 * (KEEL_EDENIED when required). */
static keel_err str_claim(const json_t *claims, const char *name, int required, keel_arena *a,
                          const char **out)
{
    *out = NULL;
    const json_t *v = json_object_get(claims, name);
    if (v == NULL)
        return required ? KEEL_EDENIED : KEEL_OK;
    if (!json_is_string(v))
        return KEEL_EDENIED;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (strlen(s) != n || (required && n == 0))
        return KEEL_EDENIED;
    *out = keel_arena_strndup(a, s, n);
    return *out ? KEEL_OK : KEEL_ENOMEM;
}

typedef struct strlist {
    const char **v;
    size_t n, max;
} strlist;

static keel_err strlist_add(strlist *l, keel_arena *a, const char *s, size_t n)
{
    if (l->n >= l->max)
        return KEEL_EDENIED; /* more than the cap: refuse the token rather than truncate */
    const char *c = keel_arena_strndup(a, s, n);
    if (c == NULL)
        return KEEL_ENOMEM;
    l->v[l->n++] = c;
    return KEEL_OK;
}

/* A claim holding an array of NUL-free strings (absent = nothing added). */
static keel_err array_claim(const json_t *claims, const char *name, keel_arena *a, strlist *l)
{
    const json_t *arr = json_object_get(claims, name);
    if (arr == NULL)
        return KEEL_OK;
    if (!json_is_array(arr))
        return KEEL_EDENIED;
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v))
            return KEEL_EDENIED;
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (strlen(s) != n)
            return KEEL_EDENIED;
        keel_err e = strlist_add(l, a, s, n);
        if (e != KEEL_OK)
            return e;
    }
    return KEEL_OK;
}

/* The OAuth "scope" claim: space-separated scope tokens (RFC 6749 §3.3, RFC 9068 §2.2.3). */
static keel_err scope_string_claim(const json_t *claims, keel_arena *a, strlist *l)
{
    const json_t *v = json_object_get(claims, "scope");
    if (v == NULL)
        return KEEL_OK;
    if (!json_is_string(v))
        return KEEL_EDENIED;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), i = 0;
    if (strlen(s) != n)
        return KEEL_EDENIED;
    while (i < n) {
        while (i < n && s[i] == ' ')
            i++;
        size_t start = i;
        while (i < n && s[i] != ' ')
            i++;
        if (i > start) {
            keel_err e = strlist_add(l, a, s + start, i - start);
            if (e != KEEL_OK)
                return e;
        }
    }
    return KEEL_OK;
}

/* Fill st->p from verified claims; strings are copied into the arena. */
static keel_err build_principal(const json_t *claims, keel_arena *a, auth_state *st)
{
    keel_principal *p = &st->p;
    keel_err e = str_claim(claims, "sub", 1, a, &p->sub);
    if (e == KEEL_OK)
        e = str_claim(claims, "sid", 0, a, &p->sid);
    if (e == KEEL_OK)
        e = str_claim(claims, "jti", 0, a, &p->jti);
    if (e != KEEL_OK)
        return e;
    strlist roles = {keel_arena_alloc(a, KEEL_AUTH_MAX_ROLES * sizeof(char *), sizeof(char *)),
                     0, KEEL_AUTH_MAX_ROLES};
    strlist scopes = {keel_arena_alloc(a, KEEL_AUTH_MAX_SCOPES * sizeof(char *), sizeof(char *)),
                      0, KEEL_AUTH_MAX_SCOPES};
    if (roles.v == NULL || scopes.v == NULL)
        return KEEL_ENOMEM;
    e = array_claim(claims, "roles", a, &roles);
    if (e == KEEL_OK)
        e = array_claim(claims, "scopes", a, &scopes);
    if (e == KEEL_OK)
        e = scope_string_claim(claims, a, &scopes);
    if (e != KEEL_OK)
        return e;
    p->roles = roles.v;
    p->nroles = roles.n;
    p->scopes = scopes.v;
    p->nscopes = scopes.n;
    p->claims = claims;
    return KEEL_OK;
}

static int strv_has(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

int keel_principal_has_role(const keel_principal *p, const char *role)
{
    return p != NULL && role != NULL && strv_has(p->roles, p->nroles, role);
}

int keel_principal_has_scope(const keel_principal *p, const char *scope)
{
    return p != NULL && scope != NULL && strv_has(p->scopes, p->nscopes, scope);
}

/* --------------------------------------------------------------- layer -- */

static keel_err answer(keel_ctx *cx, int status, const char *detail, const char *challenge)
{
    keel_err e = keel_resp_problem(cx, status, NULL, detail, NULL);
    if (e == KEEL_OK && challenge != NULL)
        e = keel_resp_header_set(cx, "WWW-Authenticate", challenge);
    return e;
}

static int path_excluded(const auth_layer *l, const char *path)
{
    if (path == NULL)
        return 0;
    for (size_t i = 0; l->exclude[i] != NULL; i++) {
        const char *x = l->exclude[i];
        size_t n = strlen(x);
        if (x[n - 1] == '*' ? strncmp(path, x, n - 1) == 0 : strcmp(path, x) == 0)
            return 1;
    }
    return 0;
}

/* The session verdict for p, through the cache: KEEL_OK, KEEL_EDENIED or a store error. */
static keel_err session_verdict(auth_layer *l, const keel_principal *p)
{
    int cacheable = l->cache != NULL && p->sid != NULL;
    if (cacheable) {
        char verdict = '\0';
        size_t n;
        if (keel_cache_get_into(l->cache, keel_str_c(p->sid), &verdict, 1, &n) != KEEL_OK ||
            n != 1)
            verdict = '\0';
        if (verdict == '1')
            return KEEL_OK;
        if (verdict == '0')
            return KEEL_EDENIED;
    }
    keel_err e = l->session_check(p, l->session_ud);
    if (cacheable && (e == KEEL_OK || e == KEEL_EDENIED)) {
        keel_err s = keel_cache_set_ttl(l->cache, keel_str_c(p->sid),
                                        e == KEEL_OK ? KEEL_STR_LIT("1") : KEEL_STR_LIT("0"),
                                        l->cache_ms);
        (void)s; /* not caching only costs a recheck */
    }
    return e;
}

/* Requests the layer lets through untouched: preflights never carry credentials (Fetch: the
 * CORS layer answers them), excluded paths, and - with routed_only - unrouted requests. */
static int passes(const auth_layer *l, const keel_ctx *cx)
{
    return keel_req_is_preflight(cx) || path_excluded(l, keel_req_path(cx)) ||
           (l->routed_only && !cx->match.found);
}

/* The verified claims of cx's bearer token into *claims (a new reference).  KEEL_OK with
 * *claims NULL: the request was answered 401 (missing, malformed or invalid credentials);
 * KEEL_ENOMEM. */
static keel_err verify_credentials(const auth_layer *l, keel_ctx *cx, json_t **claims)
{
    *claims = NULL;
    keel_str token;
    keel_err e = keel_auth_parse_bearer(keel_req_header(cx, "Authorization"), &token);
    if (e == KEEL_ENOTFOUND)
        return answer(cx, 401, AUTH_DETAIL_MISSING, l->chal_missing);
    if (e != KEEL_OK) {
        KEEL_LOG_DEBUG(l->log, "bearer credentials rejected: %s",
                       e == KEEL_ETOOBIG ? "token too long" : "malformed Authorization header");
        return answer(cx, 401, AUTH_DETAIL_INVALID, l->chal_invalid);
    }
    keel_diag d;
    uint64_t now_s = (uint64_t)(keel_time_wall_ms() / 1000);
    e = keel_jwt_verify(l->keys, &l->policy, token.ptr, token.len, now_s, claims, &d);
    if (e == KEEL_ENOMEM)
        return e;
    if (e != KEEL_OK) {
        *claims = NULL;
        /* The reason is a fixed phrase of the jwt module (no token bytes, no key material).
         * A check that could not run (ECRYPTO) still fails closed, but is worth a warning. */
        if (e == KEEL_EPARSE || e == KEEL_EDENIED)
            KEEL_LOG_DEBUG(l->log, "access token rejected: %s", d.msg);
        else
            KEEL_LOG_WARNING(l->log, "access token check failed (%s): %s", keel_err_name(e),
                             d.msg);
        return answer(cx, 401, AUTH_DETAIL_INVALID, l->chal_invalid);
    }
    return KEEL_OK;
}

static keel_err auth_call(keel_layer *self, void *vcx, keel_chain_cursor *cur)
{
    auth_layer *l = (auth_layer *)self;
    keel_ctx *cx = vcx;
    if (passes(l, cx))
        return keel_chain_next(cur, cx);

    json_t *claims = NULL;
    keel_err e;
    const verified *pre = keel_ctx_get(cx, &verified_slot);
    if (pre != NULL && pre->claims != NULL) {
        /* keel_auth_ready_inline() parsed and verified this request's credentials */
        claims = json_incref(pre->claims);
    } else if ((e = verify_credentials(l, cx, &claims)) != KEEL_OK || claims == NULL) {
        return e; /* an error, or answered 401 */
    }

    keel_arena *a = keel_ctx_arena(cx);
    auth_state *st = keel_arena_alloc(a, sizeof(*st), _Alignof(auth_state));
    if (st == NULL) {
        json_decref(claims);
        return KEEL_ENOMEM;
    }
    memset(st, 0, sizeof(*st));
    st->layer = l;
    e = build_principal(claims, a, st);
    if (e != KEEL_OK) {
        json_decref(claims);
        if (e == KEEL_ENOMEM)
            return e;
        KEEL_LOG_DEBUG(l->log, "access token rejected: invalid sub/sid/jti/roles/scope claims");
        return answer(cx, 401, AUTH_DETAIL_INVALID, l->chal_invalid);
    }

    if (l->session_check != NULL && !(pre != NULL && pre->session_cached)) {
        e = session_verdict(l, &st->p);
        if (e != KEEL_OK) {
            json_decref(claims);
            if (e == KEEL_EDENIED) {
                KEEL_LOG_DEBUG(l->log, "access token rejected: session revoked or expired");
                return answer(cx, 401, AUTH_DETAIL_INVALID, l->chal_invalid);
            }
            KEEL_LOG_WARNING(l->log, "session check failed: %s", keel_err_name(e));
            return answer(cx, 503, AUTH_DETAIL_STORE, NULL);
        }
    }

    e = keel_ctx_set(cx, &principal_slot, st);
    if (e != KEEL_OK) {
        json_decref(claims);
        return e;
    }
    keel_log_context saved;
    keel_log_context_save(&saved);
    keel_log_context_set_user_id(st->p.sub);
    e = keel_chain_next(cur, cx);
    keel_log_context_restore(&saved);
    st->p.claims = NULL;
    json_decref(claims);
    return e;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        keel_free(v[i]);
    keel_free(v);
}

static void auth_dispose(keel_layer *self)
{
    auth_layer *l = (auth_layer *)self;
    strv_free(l->exclude);
    keel_cache_destroy(l->cache);
    keel_free(l->realm);
    keel_free(l->chal_missing);
    keel_free(l->chal_invalid);
    keel_free(l);
}

/* A realm goes inside a quoted-string: printable ASCII without '"' or '\'. */
static int realm_valid(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > KEEL_AUTH_REALM_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (r[i] < 0x20 || r[i] > 0x7e || r[i] == '"' || r[i] == '\\')
            return 0;
    return 1;
}

static char *format_dup(const char *fmt, const char *arg)
{
    char buf[AUTH_CHALLENGE_MAX];
    int n = snprintf(buf, sizeof(buf), fmt, arg);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return NULL;
    return keel_strdup(buf);
}

keel_err keel_mw_auth(const keel_auth_config *cfg, keel_layer **out, keel_diag *diag)
{
    if (out != NULL)
        *out = NULL;
    if (cfg == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "config and out are required");
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "config size mismatch");
    if (cfg->keys == NULL || cfg->policy == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keys and policy are required");
    if (cfg->policy->size != sizeof(keel_jwt_policy) ||
        keel_jwt_alg_name(cfg->policy->alg) == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid policy");
    const char *realm = cfg->realm ? cfg->realm : AUTH_DEFAULT_REALM;
    if (!realm_valid(realm))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "realm must be 1..%u printable characters without '\"' or '\\'",
                             KEEL_AUTH_REALM_MAX);
    size_t nx = 0;
    for (; cfg->exclude != NULL && cfg->exclude[nx] != NULL; nx++) {
        const char *x = cfg->exclude[nx];
        const char *star = strchr(x, '*');
        if (x[0] == '\0' || (star != NULL && star[1] != '\0'))
            return keel_diag_set(diag, KEEL_EINVAL, nx,
                                 "exclude[%zu]: empty, or '*' other than at the end", nx);
    }

    auth_layer *l = keel__layer_new(sizeof(*l), "auth", auth_call);
    if (l == NULL)
        return KEEL_ENOMEM;
    l->base.dispose = auth_dispose;
    l->keys = cfg->keys;
    l->policy = *cfg->policy;
    if (l->policy.type == NULL)
        l->policy.type = "access";
    l->session_check = cfg->session_check;
    l->session_ud = cfg->session_ud;
    l->cache_ms = cfg->session_cache_ms;
    l->routed_only = cfg->routed_only;
    l->log = keel_logger_get("app.auth");
    l->realm = keel_strdup(realm);
    l->exclude = keel_calloc(nx + 1, sizeof(char *));
    int oom = l->realm == NULL || l->exclude == NULL;
    for (size_t i = 0; !oom && i < nx; i++)
        oom = (l->exclude[i] = keel_strdup(cfg->exclude[i])) == NULL;
    if (!oom) {
        l->chal_missing = format_dup("Bearer realm=\"%s\"", realm);
        l->chal_invalid = format_dup("Bearer realm=\"%s\", error=\"invalid_token\", "
                                     "error_description=\"" AUTH_DETAIL_INVALID "\"",
                                     realm);
        oom = l->chal_missing == NULL || l->chal_invalid == NULL;
    }
    if (!oom && cfg->session_check != NULL && cfg->session_cache_ms > 0) {
        keel_cache_config cc;
        keel_cache_config_default(&cc);
        cc.name = "auth_session";
        cc.max_entries = cfg->session_cache_max ? cfg->session_cache_max : 10000;
        cc.ttl_ms = cfg->session_cache_ms;
        cc.clock = cfg->clock;
        keel_err e = keel_cache_create(&l->cache, &cc, diag);
        if (e != KEEL_OK) {
            auth_dispose(&l->base);
            return e;
        }
    }
    if (oom) {
        auth_dispose(&l->base);
        return KEEL_ENOMEM;
    }
    *out = &l->base;
    return KEEL_OK;
}

void keel_auth_forget_session(keel_layer *auth_layer_, const char *sid)
{
    if (auth_layer_ == NULL || auth_layer_->call != auth_call || sid == NULL)
        return;
    auth_layer *l = (auth_layer *)auth_layer_;
    if (l->cache != NULL) {
        keel_err e = keel_cache_delete(l->cache, keel_str_c(sid));
        (void)e; /* absent is fine */
    }
}

/* -------------------------------------------------------- role / scope -- */

int keel_auth_ready_inline(keel_layer *auth_layer_, keel_ctx *cx, char *sub_out, size_t cap)
{
    if (sub_out != NULL && cap > 0)
        sub_out[0] = '\0';
    if (auth_layer_ == NULL || auth_layer_->call != auth_call || cx == NULL)
        return 0;
    auth_layer *l = (auth_layer *)auth_layer_;
    if (passes(l, cx))
        return 1;
    keel_str token;
    if (keel_auth_parse_bearer(keel_req_header(cx, "Authorization"), &token) != KEEL_OK)
        return 1; /* answered 401 without I/O */
    json_t *claims = NULL;
    uint64_t now_s = (uint64_t)(keel_time_wall_ms() / 1000);
    if (keel_jwt_verify(l->keys, &l->policy, token.ptr, token.len, now_s, &claims, NULL) !=
        KEEL_OK)
        return 1; /* answered 401 without I/O (or out of memory: the layer will say so) */
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    const char *sid = json_string_value(json_object_get(claims, "sid"));
    char verdict = '\0'; /* the cached session verdict: '1' valid, '0' denied */
    if (l->session_check != NULL && l->cache != NULL && sid != NULL) {
        size_t n;
        if (keel_cache_get_into(l->cache, keel_str_c(sid), &verdict, 1, &n) != KEEL_OK ||
            n != 1)
            verdict = '\0';
    }
    int ready = l->session_check == NULL || verdict != '\0';
    if (ready && sub != NULL && sub_out != NULL && cap > 0)
        snprintf(sub_out, cap, "%s", sub);
    /* Hand the verified claims to the layer (it runs later on this request). */
    verified *v = keel_arena_alloc(keel_ctx_arena(cx), sizeof(*v), _Alignof(verified));
    if (v != NULL && keel_ctx_defer(cx, verified_release, v) == KEEL_OK) {
        v->claims = claims;
        v->session_cached = verdict == '1';
        /* Without a free slot the layer verifies again; the release still runs. */
        (void)keel_ctx_set(cx, &verified_slot, v);
    } else {
        json_decref(claims);
    }
    return ready;
}

const keel_principal *keel_ctx_principal(const keel_ctx *cx)
{
    if (cx == NULL)
        return NULL;
    const auth_state *st = keel_ctx_get(cx, &principal_slot);
    return st ? &st->p : NULL;
}

static keel_err deny_unauthenticated(keel_ctx *cx)
{
    keel_err e = answer(cx, 401, AUTH_DETAIL_MISSING, "Bearer realm=\"" AUTH_DEFAULT_REALM "\"");
    return e == KEEL_OK ? KEEL_EDENIED : e;
}

keel_err keel_auth_require_roles(keel_ctx *cx, const char *const *any_of)
{
    if (cx == NULL)
        return KEEL_EINVAL;
    const keel_principal *p = keel_ctx_principal(cx);
    if (p == NULL)
        return deny_unauthenticated(cx);
    if (any_of == NULL || any_of[0] == NULL)
        return KEEL_OK;
    for (size_t i = 0; any_of[i] != NULL; i++)
        if (keel_principal_has_role(p, any_of[i]))
            return KEEL_OK;
    keel_err e = answer(cx, 403, AUTH_DETAIL_ROLE, NULL);
    return e == KEEL_OK ? KEEL_EDENIED : e;
}

/* scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 §3.3) */
static int scope_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (*s < 0x21 || *s > 0x7e || *s == '"' || *s == '\\')
            return 0;
    return 1;
}

keel_err keel_auth_require_scopes(keel_ctx *cx, const char *const *all_of)
{
    if (cx == NULL)
        return KEEL_EINVAL;
    const keel_principal *p = keel_ctx_principal(cx);
    if (p == NULL)
        return deny_unauthenticated(cx);
    int ok = 1, listable = 1;
    for (size_t i = 0; all_of != NULL && all_of[i] != NULL; i++) {
        if (!keel_principal_has_scope(p, all_of[i]))
            ok = 0;
        if (!scope_token(all_of[i]))
            listable = 0;
    }
    if (ok)
        return KEEL_OK;

    const auth_state *st = (const auth_state *)p;
    keel_buf b;
    keel_buf_init(&b, 4096);
    keel_err e = keel_buf_appendf(&b,
                                  "Bearer realm=\"%s\", error=\"insufficient_scope\", "
                                  "error_description=\"" AUTH_DETAIL_SCOPE "\"",
                                  st->layer->realm);
    if (e == KEEL_OK && listable) {
        size_t mark = b.len;
        e = keel_buf_append_str(&b, ", scope=\"");
        for (size_t i = 0; e == KEEL_OK && all_of[i] != NULL; i++) {
            if (i > 0)
                e = keel_buf_append_char(&b, ' ');
            if (e == KEEL_OK)
                e = keel_buf_append_str(&b, all_of[i]);
        }
        if (e == KEEL_OK)
            e = keel_buf_append_char(&b, '"');
        if (e == KEEL_ETOOBIG) { /* too many names: the challenge goes without them */
            b.len = mark;
            b.ptr[b.len] = '\0';
            e = KEEL_OK;
        }
    }
    if (e == KEEL_OK)
        e = answer(cx, 403, AUTH_DETAIL_SCOPE, b.ptr);
    keel_buf_cleanup(&b);
    if (e == KEEL_ETOOBIG)
        e = KEEL_ENOMEM;
    return e == KEEL_OK ? KEEL_EDENIED : e;
}
