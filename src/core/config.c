/* config.c - the environment view (keel_env), typed getters and keel_settings.
 *
 * A keel_env is a sorted array of "NAME\0VALUE" strings built once from the
 * process environment and a .env file, then only read.  Precedence is decided
 * at build time: every candidate carries a rank (lower wins), the array is
 * sorted by (name, rank) and only the first entry of each name is kept.
 */
#include "keel_int.h"

#include <keel/config.h>

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ========================================================== env view ===== */

typedef struct env_ent {
    char *kv;    /* name '\0' value '\0', one allocation */
    size_t nlen; /* strlen(name) */
    size_t vlen;
    size_t rank; /* lower wins; only used while building */
} env_ent;

struct keel_env {
    env_ent *v;
    size_t n;
    size_t cap;
};

static void env_ent_free(env_ent *x)
{
    keel__wipe(x->kv, x->nlen + 1 + x->vlen);
    keel_free(x->kv);
}

void keel_env_destroy(keel_env *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n; i++)
        env_ent_free(&e->v[i]);
    keel_free(e->v);
    keel_free(e);
}

static keel_err env_push(keel_env *e, const char *name, size_t nlen, const char *val, size_t vlen,
                         size_t rank)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof(env_ent))
            return KEEL_ENOMEM;
        env_ent *v = keel_realloc(e->v, cap * sizeof(env_ent));
        if (v == NULL)
            return KEEL_ENOMEM;
        e->v = v;
        e->cap = cap;
    }
    char *kv = keel_malloc(nlen + vlen + 2);
    if (kv == NULL)
        return KEEL_ENOMEM;
    memcpy(kv, name, nlen);
    kv[nlen] = '\0';
    if (vlen)
        memcpy(kv + nlen + 1, val, vlen);
    kv[nlen + 1 + vlen] = '\0';
    e->v[e->n].kv = kv;
    e->v[e->n].nlen = nlen;
    e->v[e->n].vlen = vlen;
    e->v[e->n].rank = rank;
    e->n++;
    return KEEL_OK;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, KEEL_MIN(alen, blen));
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int ent_cmp(const void *pa, const void *pb)
{
    const env_ent *a = pa, *b = pb;
    int c = name_cmp(a->kv, a->nlen, b->kv, b->nlen);
    if (c != 0)
        return c;
    return a->rank < b->rank ? -1 : a->rank > b->rank ? 1 : 0;
}

/* Sort and keep the best-ranked entry of each name. */
static void env_finish(keel_env *e)
{
    if (e->n == 0)
        return;
    qsort(e->v, e->n, sizeof(env_ent), ent_cmp);
    size_t w = 1;
    for (size_t r = 1; r < e->n; r++) {
        if (name_cmp(e->v[r].kv, e->v[r].nlen, e->v[w - 1].kv, e->v[w - 1].nlen) == 0)
            env_ent_free(&e->v[r]);
        else
            e->v[w++] = e->v[r];
    }
    e->n = w;
}

typedef struct dotenv_collect {
    keel_env *env;
    size_t seq;
} dotenv_collect;

/* Real environment entries get ranks 0..n-1 (first wins, like getenv()); .env
 * entries rank after all of them, later lines first (the last assignment wins). */
static keel_err collect_cb(const char *key, size_t klen, const char *value, size_t vlen, void *ud)
{
    dotenv_collect *c = ud;
    c->seq++;
    return env_push(c->env, key, klen, value, vlen, SIZE_MAX - c->seq);
}

static keel_err env_build(keel_env **out, const char *const *vars, const char *text, size_t len,
                          keel_diag *diag, const char *path)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "out is NULL");
    *out = NULL;
    keel_env *e = keel__new(keel_env);
    if (e == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    keel_err err = KEEL_OK;
    for (size_t i = 0; vars != NULL && vars[i] != NULL && err == KEEL_OK; i++) {
        const char *eq = strchr(vars[i], '=');
        if (eq == NULL || eq == vars[i])
            continue;
        err = env_push(e, vars[i], (size_t)(eq - vars[i]), eq + 1, strlen(eq + 1), i);
        if (err != KEEL_OK)
            keel_diag_set(diag, err, 0, "out of memory");
    }
    if (err == KEEL_OK && text != NULL) {
        dotenv_collect c = {e, 0};
        keel_diag d;
        err = keel_dotenv_parse(text, len, collect_cb, &c, &d);
        if (err != KEEL_OK) {
            if (path != NULL)
                keel_diag_set(diag, err, d.offset, "%.60s: %s", path, d.msg);
            else if (diag != NULL)
                *diag = d;
        }
    }
    if (err != KEEL_OK) {
        keel_env_destroy(e);
        return err;
    }
    env_finish(e);
    *out = e;
    return KEEL_OK;
}

keel_err keel_env_from(keel_env **out, const char *const *vars, const char *dotenv_text, size_t len,
                       keel_diag *diag)
{
    return env_build(out, vars, dotenv_text, len, diag, NULL);
}

/* Read a whole file into b (capped); KEEL_ENOTFOUND when it does not exist. */
static keel_err read_file(const char *path, keel_buf *b, keel_diag *diag)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT)
            return KEEL_ENOTFOUND;
        return keel_diag_set(diag, KEEL_EIO, 0, "%.60s: cannot open: %s", path, strerror(errno));
    }
    keel_err e = KEEL_OK;
    char chunk[4096];
    for (;;) {
        size_t n = fread(chunk, 1, sizeof(chunk), f);
        if (n > 0) {
            e = keel_buf_append(b, chunk, n);
            if (e == KEEL_ETOOBIG)
                keel_diag_set(diag, e, 0, "%.60s: larger than the %u-byte limit", path,
                              (unsigned)KEEL_DOTENV_MAX_BYTES);
            else if (e != KEEL_OK)
                keel_diag_set(diag, e, 0, "out of memory");
            if (e != KEEL_OK)
                break;
        }
        if (n < sizeof(chunk)) {
            if (ferror(f))
                e = keel_diag_set(diag, KEEL_EIO, 0, "%.60s: read error", path);
            break;
        }
    }
    keel__wipe(chunk, sizeof(chunk));
    fclose(f);
    return e;
}

keel_err keel_env_load(keel_env **out, const char *dotenv_path, keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "out is NULL");
    *out = NULL;
    const char *path = dotenv_path != NULL ? dotenv_path : "./.env";
    keel_buf b;
    keel_buf_init(&b, KEEL_DOTENV_MAX_BYTES);
    keel_err e = read_file(path, &b, diag);
    if (e == KEEL_OK || e == KEEL_ENOTFOUND) {
        /* A file that exists but is empty still yields b.ptr == NULL: parse "" then. */
        const char *text = e == KEEL_OK ? (b.ptr != NULL ? b.ptr : "") : NULL;
        e = env_build(out, (const char *const *)environ, text, b.len, diag, path);
    }
    if (b.ptr != NULL)
        keel__wipe(b.ptr, b.cap);
    keel_buf_cleanup(&b);
    return e;
}

static const env_ent *env_find(const keel_env *e, const char *name)
{
    if (e == NULL || name == NULL)
        return NULL;
    size_t nlen = strlen(name), lo = 0, hi = e->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(name, nlen, e->v[mid].kv, e->v[mid].nlen);
        if (c == 0)
            return &e->v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *keel_env_get(const keel_env *e, const char *name)
{
    const env_ent *x = env_find(e, name);
    return x != NULL ? x->kv + x->nlen + 1 : NULL;
}

size_t keel_env_count(const keel_env *e)
{
    return e != NULL ? e->n : 0;
}

/* ====================================================== typed getters ===== */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* The trimmed value of name as a slice; ptr NULL when unset or blank. */
static keel_str trimmed(const keel_env *e, const char *name)
{
    const char *v = keel_env_get(e, name);
    if (v == NULL)
        return KEEL_STR_NULL;
    size_t n = strlen(v);
    while (n > 0 && is_space(*v)) {
        v++;
        n--;
    }
    while (n > 0 && is_space(v[n - 1]))
        n--;
    if (n == 0)
        return KEEL_STR_NULL;
    return (keel_str){v, n};
}

/* A value made safe to quote in a message: at most 48 bytes, control bytes as '?'. */
#define SHOWN_MAX 48
typedef struct shown {
    char s[SHOWN_MAX + 4];
} shown;

static shown show(keel_str v)
{
    shown r;
    size_t n = KEEL_MIN(v.len, (size_t)SHOWN_MAX), i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        r.s[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (v.len > SHOWN_MAX) {
        r.s[i++] = '.';
        r.s[i++] = '.';
        r.s[i++] = '.';
    }
    r.s[i] = '\0';
    return r;
}

/* Parse a decimal integer filling the whole slice; 0 on success. */
static int parse_ll(keel_str v, long long *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < v.len && (v.ptr[i] == '+' || v.ptr[i] == '-'))
        neg = v.ptr[i++] == '-';
    if (i == v.len)
        return -1;
    unsigned long long acc = 0, lim = neg ? (unsigned long long)LLONG_MAX + 1ull : LLONG_MAX;
    for (; i < v.len; i++) {
        char c = v.ptr[i];
        if (c < '0' || c > '9')
            return -1;
        unsigned d = (unsigned)(c - '0');
        if (acc > (lim - d) / 10)
            return -1;
        acc = acc * 10 + d;
    }
    if (neg)
        *out = acc == (unsigned long long)LLONG_MAX + 1ull ? LLONG_MIN : -(long long)acc;
    else
        *out = (long long)acc;
    return 0;
}

keel_err keel_env_get_int(const keel_env *e, const char *name, long long def, long long min,
                          long long max, long long *out, keel_diag *diag)
{
    if (name == NULL || out == NULL || min > max)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_env_get_int: invalid arguments");
    keel_str v = trimmed(e, name);
    if (v.ptr == NULL) {
        *out = def;
        return KEEL_OK;
    }
    long long x = 0;
    int bad = parse_ll(v, &x);
    if (bad || x < min || x > max)
        return keel_diag_set(diag, bad ? KEEL_EINVAL : KEEL_ERANGE, 0,
                             "%s: must be an integer in %lld..%lld, got '%s'", name, min, max,
                             show(v).s);
    *out = x;
    return KEEL_OK;
}

keel_err keel_env_get_bool(const keel_env *e, const char *name, bool def, bool *out,
                           keel_diag *diag)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    if (name == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_env_get_bool: invalid arguments");
    keel_str v = trimmed(e, name);
    if (v.ptr == NULL) {
        *out = def;
        return KEEL_OK;
    }
    for (size_t i = 0; i < KEEL_ARRAY_LEN(yes); i++) {
        if (keel_str_ieq(v, keel_str_c(yes[i]))) {
            *out = true;
            return KEEL_OK;
        }
        if (keel_str_ieq(v, keel_str_c(no[i]))) {
            *out = false;
            return KEEL_OK;
        }
    }
    return keel_diag_set(diag, KEEL_EINVAL, 0,
                         "%s: must be a boolean (true/false, 1/0, yes/no, on/off), got '%s'", name,
                         show(v).s);
}

keel_err keel_env_get_str(const keel_env *e, const char *name, const char *def, const char **out)
{
    if (name == NULL || out == NULL)
        return KEEL_EINVAL;
    const char *v = keel_env_get(e, name);
    *out = v != NULL ? v : def;
    return KEEL_OK;
}

keel_err keel_env_get_choice(const keel_env *e, const char *name, const char *const *choices,
                             size_t n, size_t def_index, size_t *out, keel_diag *diag)
{
    if (name == NULL || choices == NULL || out == NULL || n == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_env_get_choice: invalid arguments");
    keel_str v = trimmed(e, name);
    if (v.ptr == NULL) {
        *out = def_index;
        return KEEL_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (keel_str_ieq(v, keel_str_c(choices[i]))) {
            *out = i;
            return KEEL_OK;
        }
    }
    /* "NAME: must be one of a, b, c, got 'x'", cut to what the diag holds. */
    char list[120];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && used < sizeof(list); i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", choices[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return keel_diag_set(diag, KEEL_EINVAL, 0, "%s: must be one of %s, got '%s'", name, list,
                         show(v).s);
}

/* Split s (len bytes) at commas into a single-allocation NULL-terminated array. */
static keel_err split_list(const char *s, size_t len, const char *name, char ***out, size_t *count,
                           keel_diag *diag)
{
    size_t items = 0, bytes = 0;
    const char *p = s, *end = s + len;
    for (int pass = 0; pass < 2; pass++) {
        char **arr = NULL;
        char *data = NULL;
        if (pass == 1) {
            if (items > KEEL_ENV_LIST_MAX)
                return keel_diag_set(diag, KEEL_ETOOBIG, 0, "%s: more than %d items", name,
                                     KEEL_ENV_LIST_MAX);
            size_t head = (items + 1) * sizeof(char *);
            arr = keel_malloc(head + bytes);
            if (arr == NULL)
                return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
            data = (char *)arr + head;
            items = 0;
        }
        p = s;
        for (;;) {
            const char *c = p;
            while (c < end && *c != ',')
                c++;
            const char *a = p, *b = c;
            while (a < b && is_space(*a))
                a++;
            while (b > a && is_space(b[-1]))
                b--;
            if (b > a) {
                size_t n = (size_t)(b - a);
                if (pass == 0) {
                    bytes += n + 1;
                } else {
                    memcpy(data, a, n);
                    data[n] = '\0';
                    arr[items] = data;
                    data += n + 1;
                }
                items++;
            }
            if (c == end)
                break;
            p = c + 1;
        }
        if (pass == 1) {
            arr[items] = NULL;
            *out = arr;
            *count = items;
        }
    }
    return KEEL_OK;
}

keel_err keel_env_get_list(const keel_env *e, const char *name, const char *def, char ***out,
                           size_t *count, keel_diag *diag)
{
    if (name == NULL || out == NULL || count == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_env_get_list: invalid arguments");
    keel_str v = trimmed(e, name);
    if (v.ptr == NULL)
        v = keel_str_c(def);
    return split_list(v.ptr != NULL ? v.ptr : "", v.len, name, out, count, diag);
}

/* =========================================================== settings ===== */

typedef struct dep_timeout {
    const char *name; /* "STRIPE_TIMEOUT_MS" */
    uint32_t ms;
} dep_timeout;

/* The public struct plus what it owns.  pub must stay first. */
typedef struct settings_impl {
    keel_settings pub;
    keel_arena *arena; /* strings and small arrays */
    char **lists[3];   /* CORS lists from keel_env_get_list() */
    keel_secret **webhooks;
    dep_timeout *deps;
    size_t ndeps;
} settings_impl;

typedef struct lctx {
    const keel_env *env;
    keel_buf *errors;
    settings_impl *si;
    bool invalid;
    keel_err fatal; /* ENOMEM / ECRYPTO: abort the load */
} lctx;

static void bad(lctx *c, const char *fmt, ...) KEEL_PRINTF(2, 3);
static void bad(lctx *c, const char *fmt, ...)
{
    c->invalid = true;
    if (c->errors == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    keel_err e = keel_buf_vappendf(c->errors, fmt, ap);
    va_end(ap);
    if (e == KEEL_OK)
        e = keel_buf_append_char(c->errors, '\n');
    (void)e; /* lines past the caller's cap are dropped */
}

static void set_fatal(lctx *c, keel_err e)
{
    if (c->fatal == KEEL_OK)
        c->fatal = e;
}

static const char *arena_dup(lctx *c, keel_str v)
{
    char *s = keel_arena_strndup(c->si->arena, v.ptr, v.len);
    if (s == NULL)
        set_fatal(c, KEEL_ENOMEM);
    return s;
}

static long long rd_int(lctx *c, const char *name, long long def, long long min, long long max)
{
    long long v = def;
    keel_diag d;
    if (keel_env_get_int(c->env, name, def, min, max, &v, &d) != KEEL_OK) {
        bad(c, "%s", d.msg);
        v = def;
    }
    return v;
}

static bool rd_bool(lctx *c, const char *name, bool def)
{
    bool v = def;
    keel_diag d;
    if (keel_env_get_bool(c->env, name, def, &v, &d) != KEEL_OK) {
        bad(c, "%s", d.msg);
        v = def;
    }
    return v;
}

static size_t rd_choice(lctx *c, const char *name, const char *const *choices, size_t n, size_t def)
{
    size_t v = def;
    keel_diag d;
    if (keel_env_get_choice(c->env, name, choices, n, def, &v, &d) != KEEL_OK) {
        bad(c, "%s", d.msg);
        v = def;
    }
    return v;
}

/* Trimmed string or def; copied into the arena. */
static const char *rd_str(lctx *c, const char *name, const char *def)
{
    keel_str v = trimmed(c->env, name);
    if (v.ptr == NULL) {
        if (def == NULL)
            return NULL;
        v = keel_str_c(def);
    }
    return arena_dup(c, v);
}

static bool has_prefix(keel_str v, const char *prefix)
{
    size_t n = strlen(prefix);
    return v.len > n && keel_str_ieq((keel_str){v.ptr, n}, (keel_str){prefix, n});
}

/* A URL for messages loses its credentials: "user:password@" before the host becomes
 * "***@", since DATABASE_URL and REDIS_URL usually carry a password. */
static shown show_url(keel_str v)
{
    const char *sep = NULL, *at = NULL;
    for (size_t i = 0; i + 2 < v.len; i++) {
        if (v.ptr[i] == ':' && v.ptr[i + 1] == '/' && v.ptr[i + 2] == '/') {
            sep = v.ptr + i + 3;
            break;
        }
    }
    if (sep != NULL) {
        const char *end = v.ptr + v.len;
        for (const char *p = sep; p < end && *p != '/'; p++)
            if (*p == '@')
                at = p;
    }
    if (at == NULL)
        return show(v);
    char tmp[SHOWN_MAX + 8];
    size_t head = KEEL_MIN((size_t)(sep - v.ptr), (size_t)SHOWN_MAX / 2);
    size_t n = 0;
    memcpy(tmp, v.ptr, head);
    n = head;
    memcpy(tmp + n, "***", 3);
    n += 3;
    size_t tail = KEEL_MIN((size_t)(v.ptr + v.len - at), sizeof(tmp) - n);
    memcpy(tmp + n, at, tail);
    n += tail;
    return show((keel_str){tmp, n});
}

/* Optional or defaulted URL that must start with one of prefixes (and have more after it). */
static const char *rd_url(lctx *c, const char *name, const char *def, const char *const *prefixes,
                          size_t n, const char *expect)
{
    keel_str v = trimmed(c->env, name);
    if (v.ptr == NULL)
        return def != NULL ? arena_dup(c, keel_str_c(def)) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (has_prefix(v, prefixes[i])) {
            for (size_t j = 0; j < v.len; j++) {
                unsigned char ch = (unsigned char)v.ptr[j];
                if (ch <= 0x20 || ch == 0x7f) {
                    bad(c, "%s: must not contain blanks or control characters, got '%s'", name,
                        show_url(v).s);
                    return NULL;
                }
            }
            return arena_dup(c, v);
        }
    }
    bad(c, "%s: must start with %s, got '%s'", name, expect, show_url(v).s);
    return NULL;
}

static char **rd_list(lctx *c, const char *name, const char *def, size_t *count)
{
    char **arr = NULL;
    keel_diag d;
    keel_err e = keel_env_get_list(c->env, name, def, &arr, count, &d);
    if (e == KEEL_ENOMEM)
        set_fatal(c, e);
    else if (e != KEEL_OK)
        bad(c, "%s", d.msg);
    if (e != KEEL_OK)
        *count = 0;
    return arr;
}

/* ---------------------------------------------------- signing keys ------ */

static bool is_placeholder(keel_str v)
{
    static const char *const exact[] = {"changeme",
                                        "change-me",
                                        "change_me",
                                        "secret",
                                        "secret-key",
                                        "secret_key",
                                        "secretkey",
                                        "supersecret",
                                        "placeholder",
                                        "your-secret-key",
                                        "your_secret_key",
                                        "yoursecretkey",
                                        "dev",
                                        "development",
                                        "test",
                                        "testing",
                                        "password",
                                        "default",
                                        "example",
                                        "insecure",
                                        "key",
                                        "jwt-secret",
                                        "jwt_secret",
                                        "jwtsecret",
                                        "todo",
                                        "xxx",
                                        "none",
                                        "null",
                                        "mysecret",
                                        "my-secret",
                                        "access-secret",
                                        "refresh-secret",
                                        "s3cr3t",
                                        "12345678",
                                        "123456"};
    static const char *const prefix[] = {"change",   "your-",       "your_", "replace",
                                         "insecure", "placeholder", "dummy", "example"};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(exact); i++)
        if (keel_str_ieq(v, keel_str_c(exact[i])))
            return true;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(prefix); i++) {
        size_t n = strlen(prefix[i]);
        if (v.len >= n && keel_str_ieq((keel_str){v.ptr, n}, (keel_str){prefix[i], n}))
            return true;
    }
    return false;
}

/* Production checks on one key.  Messages never contain the value.  Returns true if bad. */
static bool key_bad(lctx *c, const char *name, keel_str v, const char *alg)
{
    if (v.ptr == NULL) {
        bad(c, "%s: required when ENVIRONMENT=production", name);
        return true;
    }
    if (is_placeholder(v)) {
        bad(c,
            "%s: is a well-known placeholder; set a random value "
            "(e.g. openssl rand -base64 48)",
            name);
        return true;
    }
    if (alg[0] == 'H' && v.len < KEEL_SETTINGS_MIN_HMAC_KEY) {
        bad(c, "%s: must be at least %d bytes for %s in production (got %zu)", name,
            KEEL_SETTINGS_MIN_HMAC_KEY, alg, v.len);
        return true;
    }
    return false;
}

static keel_secret *make_secret(lctx *c, keel_str v)
{
    keel_secret *s = NULL;
    if (keel_secret_create(&s, v.ptr, v.len) != KEEL_OK) {
        set_fatal(c, KEEL_ENOMEM);
        return NULL;
    }
    return s;
}

static keel_secret *random_secret(lctx *c)
{
    unsigned char k[32];
    keel_secret *s = NULL;
    keel_err e = keel_random_bytes(k, sizeof(k));
    if (e != KEEL_OK)
        set_fatal(c, e);
    else if (keel_secret_create(&s, k, sizeof(k)) != KEEL_OK)
        set_fatal(c, KEEL_ENOMEM);
    keel__wipe(k, sizeof(k));
    return s;
}

static void load_keys(lctx *c, bool production)
{
    keel_settings *s = &c->si->pub;
    keel_str ak = trimmed(c->env, "ACCESS_TOKEN_SIGNING_KEY");
    keel_str rk = trimmed(c->env, "REFRESH_TOKEN_SIGNING_KEY");
    if (production) {
        bool abad = key_bad(c, "ACCESS_TOKEN_SIGNING_KEY", ak, s->jwt_algorithm);
        bool rbad = key_bad(c, "REFRESH_TOKEN_SIGNING_KEY", rk, s->jwt_algorithm);
        if (!abad && !rbad && ak.len == rk.len && keel_ct_equal(ak.ptr, rk.ptr, ak.len))
            bad(c, "REFRESH_TOKEN_SIGNING_KEY: must differ from ACCESS_TOKEN_SIGNING_KEY");
        if (c->invalid)
            return;
    }
    s->access_token_signing_key = ak.ptr != NULL ? make_secret(c, ak) : random_secret(c);
    s->refresh_token_signing_key = rk.ptr != NULL ? make_secret(c, rk) : random_secret(c);
    s->signing_keys_generated = ak.ptr == NULL || rk.ptr == NULL;
}

static void load_webhooks(lctx *c)
{
    settings_impl *si = c->si;
    size_t n = 0;
    char **items = rd_list(c, "WEBHOOK_SECRET", NULL, &n);
    if (items != NULL && n > 0) {
        si->webhooks = keel_calloc(n, sizeof(keel_secret *));
        if (si->webhooks == NULL)
            set_fatal(c, KEEL_ENOMEM);
        for (size_t i = 0; si->webhooks != NULL && i < n; i++) {
            si->webhooks[i] = make_secret(c, keel_str_c(items[i]));
            if (si->webhooks[i] == NULL)
                break;
            si->pub.webhook_secrets_len = i + 1;
        }
        if (si->webhooks != NULL && si->pub.environment == KEEL_ENVIRONMENT_PRODUCTION) {
            for (size_t i = 0; i < n; i++) {
                if (is_placeholder(keel_str_c(items[i]))) {
                    bad(c, "WEBHOOK_SECRET: item %zu is a well-known placeholder", i + 1);
                    break;
                }
            }
        }
        si->pub.webhook_secrets = si->webhooks;
    }
    for (size_t i = 0; items != NULL && i < n; i++)
        keel__wipe(items[i], strlen(items[i]));
    keel_free(items);
}

/* -------------------------------------------------- dependency timeouts -- */

#define TIMEOUT_SUFFIX "_TIMEOUT_MS"
#define TIMEOUT_MS_MAX 600000

static void load_dep_timeouts(lctx *c)
{
    settings_impl *si = c->si;
    const keel_env *e = c->env;
    const size_t sl = sizeof(TIMEOUT_SUFFIX) - 1;
    size_t n = 0;
    for (size_t pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (n == 0)
                return;
            si->deps = keel_arena_alloc(si->arena, n * sizeof(dep_timeout), 0);
            if (si->deps == NULL) {
                set_fatal(c, KEEL_ENOMEM);
                return;
            }
        }
        for (size_t i = 0; e != NULL && i < e->n; i++) {
            const env_ent *x = &e->v[i];
            if (x->nlen <= sl || memcmp(x->kv + x->nlen - sl, TIMEOUT_SUFFIX, sl) != 0)
                continue;
            if (pass == 0) {
                n++;
                continue;
            }
            long long v = rd_int(c, x->kv, 0, 1, TIMEOUT_MS_MAX);
            if (v <= 0)
                continue; /* blank (unset) or invalid (already reported) */
            si->deps[si->ndeps].name = arena_dup(c, (keel_str){x->kv, x->nlen});
            si->deps[si->ndeps].ms = (uint32_t)v;
            if (si->deps[si->ndeps].name == NULL)
                return;
            si->ndeps++;
        }
    }
}

uint32_t keel_settings_dep_timeout_ms(const keel_settings *s, const char *dep, uint32_t def)
{
    if (s == NULL || dep == NULL)
        return def;
    const settings_impl *si = (const settings_impl *)s;
    char name[128];
    size_t n = strlen(dep);
    if (n == 0 || n + sizeof(TIMEOUT_SUFFIX) > sizeof(name))
        return def;
    for (size_t i = 0; i < n; i++) {
        char ch = dep[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        else if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
            ch = '_';
        name[i] = ch;
    }
    memcpy(name + n, TIMEOUT_SUFFIX, sizeof(TIMEOUT_SUFFIX));
    for (size_t i = 0; i < si->ndeps; i++)
        if (strcmp(si->deps[i].name, name) == 0)
            return si->deps[i].ms;
    return def;
}

/* ------------------------------------------------------------- loading -- */

static const char *const ENVIRONMENTS[] = {"development", "production", "test"};
static const char *const LOG_LEVELS[] = {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"};
static const int LOG_LEVEL_NUMS[] = {10, 20, 30, 30, 40, 50};
static const char *const OVERFLOWS[] = {"drop", "block"};
static const char *const CONSOLES[] = {"auto", "text", "json", "off"};
static const char *const JWT_ALGS[] = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                                       "ES256", "ES384", "PS256", "PS384", "PS512", "EdDSA"};

static void load_jwt_alg(lctx *c)
{
    keel_settings *s = &c->si->pub;
    s->jwt_algorithm = JWT_ALGS[0];
    keel_str v = trimmed(c->env, "JWT_ALGORITHM");
    if (v.ptr == NULL)
        return;
    if (keel_str_ieq(v, KEEL_STR_LIT("none"))) {
        bad(c, "JWT_ALGORITHM: 'none' (unsigned tokens) is not allowed; see RFC 8725 "
               "section 3.1");
        return;
    }
    for (size_t i = 0; i < KEEL_ARRAY_LEN(JWT_ALGS); i++) {
        if (keel_str_ieq(v, keel_str_c(JWT_ALGS[i]))) {
            s->jwt_algorithm = JWT_ALGS[i];
            return;
        }
    }
    bad(c,
        "JWT_ALGORITHM: must be one of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, "
        "PS256, PS384, PS512, EdDSA, got '%s'",
        show(v).s);
}

static void load_host(lctx *c)
{
    keel_settings *s = &c->si->pub;
    keel_str v = trimmed(c->env, "HOST");
    if (v.ptr == NULL) {
        s->host = arena_dup(c, KEEL_STR_LIT("127.0.0.1"));
        return;
    }
    bool ok = v.len <= 255;
    for (size_t i = 0; ok && i < v.len; i++) {
        unsigned char ch = (unsigned char)v.ptr[i];
        ok = ch > 0x20 && ch != 0x7f;
    }
    if (!ok) {
        bad(c,
            "HOST: must be a host name or IP address without blanks (at most 255 bytes), "
            "got '%s'",
            show(v).s);
        return;
    }
    s->host = arena_dup(c, v);
}

static uint32_t default_workers(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    long w = cpus > 64 ? 256 : 4 * cpus;
    return (uint32_t)KEEL_MAX(2L, KEEL_MIN(256L, w));
}

static void load_all(lctx *c)
{
    settings_impl *si = c->si;
    keel_settings *s = &si->pub;
    size_t i;

    i = rd_choice(c, "ENVIRONMENT", ENVIRONMENTS, KEEL_ARRAY_LEN(ENVIRONMENTS), 0);
    s->environment = (keel_environment)i;
    s->environment_name = ENVIRONMENTS[i];
    bool production = s->environment == KEEL_ENVIRONMENT_PRODUCTION;
    s->project_name = rd_str(c, "PROJECT_NAME", "keel");
    s->project_version = rd_str(c, "PROJECT_VERSION", KEEL_VERSION_STRING);

    load_host(c);
    s->port = (uint16_t)rd_int(c, "PORT", 8080, 1, 65535);

    i = rd_choice(c, "LOG_LEVEL", LOG_LEVELS, KEEL_ARRAY_LEN(LOG_LEVELS), 1);
    s->log_level = LOG_LEVEL_NUMS[i];
    s->log_dir = rd_str(c, "LOG_DIR", "logs");
    s->log_queue_size = (uint32_t)rd_int(c, "LOG_QUEUE_SIZE", 4096, 16, 1048576);
    s->log_overflow_block = rd_choice(c, "LOG_OVERFLOW", OVERFLOWS, 2, 0) == 1;
    s->log_console = (uint32_t)rd_choice(c, "LOG_CONSOLE", CONSOLES, KEEL_ARRAY_LEN(CONSOLES), 0);

    static const char *const db[] = {"sqlite:", "postgres://", "postgresql://"};
    s->database_url = rd_url(c, "DATABASE_URL", "sqlite:./var/keel.db", db, 3,
                             "'sqlite:', 'postgres://' or 'postgresql://'");
    static const char *const redis[] = {"redis://", "rediss://"};
    s->redis_url = rd_url(c, "REDIS_URL", NULL, redis, 2, "'redis://' or 'rediss://'");

    load_jwt_alg(c);
    s->access_token_expire_minutes =
        (uint32_t)rd_int(c, "ACCESS_TOKEN_EXPIRE_MINUTES", 15, 1, 1440);
    s->refresh_token_expire_days = (uint32_t)rd_int(c, "REFRESH_TOKEN_EXPIRE_DAYS", 60, 1, 3650);
    s->session_expire_days = (uint32_t)rd_int(c, "SESSION_EXPIRE_DAYS", 180, 1, 3650);
    /* Limits match keel_password_hash's bounds for untrusted PHC strings (password.c). */
    s->password_hash_memory_kib =
        (uint32_t)rd_int(c, "PASSWORD_HASH_MEMORY_KIB", 19456, 8, 1048576);
    s->password_hash_iterations = (uint32_t)rd_int(c, "PASSWORD_HASH_ITERATIONS", 2, 1, 20);
    s->password_hash_parallelism = (uint32_t)rd_int(c, "PASSWORD_HASH_PARALLELISM", 1, 1, 16);
    if (s->password_hash_memory_kib < 8u * s->password_hash_parallelism)
        bad(c, "PASSWORD_HASH_MEMORY_KIB: must be at least 8 x PASSWORD_HASH_PARALLELISM (%u KiB)",
            8u * s->password_hash_parallelism);

    si->lists[0] = rd_list(c, "CORS_ALLOW_ORIGINS", "*", &s->cors_allow_origins_len);
    si->lists[1] = rd_list(c, "CORS_ALLOW_METHODS", "*", &s->cors_allow_methods_len);
    si->lists[2] = rd_list(c, "CORS_ALLOW_HEADERS", "*", &s->cors_allow_headers_len);
    s->cors_allow_origins = (const char *const *)si->lists[0];
    s->cors_allow_methods = (const char *const *)si->lists[1];
    s->cors_allow_headers = (const char *const *)si->lists[2];
    s->cors_allow_credentials = rd_bool(c, "CORS_ALLOW_CREDENTIALS", true);
    if (production && s->cors_allow_credentials) {
        for (size_t k = 0; k < s->cors_allow_origins_len; k++)
            if (strcmp(s->cors_allow_origins[k], "*") == 0)
                s->cors_wildcard_with_credentials = true;
    }

    s->shutdown_timeout_seconds = (uint32_t)rd_int(c, "SHUTDOWN_TIMEOUT_SECONDS", 30, 0, 3600);
    static const char *const otel[] = {"http://", "https://"};
    s->otel_exporter_otlp_endpoint =
        rd_url(c, "OTEL_EXPORTER_OTLP_ENDPOINT", NULL, otel, 2, "'http://' or 'https://'");
    s->trace_log_spans = rd_bool(c, "TRACE_LOG_SPANS", false);

    s->http_workers = (uint32_t)rd_int(c, "HTTP_WORKERS", default_workers(), 1, 1024);
    s->http_max_body_bytes = (size_t)rd_int(c, "HTTP_MAX_BODY_BYTES", 1048576, 1, 1073741824);
    s->http_max_connections = (uint32_t)rd_int(c, "HTTP_MAX_CONNECTIONS", 1024, 1, 1048576);
    s->http_max_connections_per_ip =
        (uint32_t)rd_int(c, "HTTP_MAX_CONNECTIONS_PER_IP", 0, 0, 1048576);
    s->http_connection_timeout_seconds =
        (uint32_t)rd_int(c, "HTTP_CONNECTION_TIMEOUT_SECONDS", 30, 1, 3600);
    s->http_connection_memory_limit =
        (uint32_t)rd_int(c, "HTTP_CONNECTION_MEMORY_LIMIT", 16384, 8192, 1073741824);

    load_webhooks(c);
    load_dep_timeouts(c);
    /* Last: production key rules look at everything reported so far only for their own lines,
     * and no key material is created when the load already failed. */
    if (c->fatal == KEEL_OK)
        load_keys(c, production);
}

keel_err keel_settings_load(keel_settings **out, const keel_env *env, keel_buf *errors)
{
    if (out == NULL || env == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    settings_impl *si = keel__new(settings_impl);
    if (si == NULL)
        return KEEL_ENOMEM;
    si->pub.size = sizeof(keel_settings);
    if (keel_arena_create(&si->arena, 0) != KEEL_OK) {
        keel_free(si);
        return KEEL_ENOMEM;
    }
    lctx c = {env, errors, si, false, KEEL_OK};
    load_all(&c);
    if (c.fatal != KEEL_OK || c.invalid) {
        keel_settings_destroy(&si->pub);
        return c.fatal != KEEL_OK ? c.fatal : KEEL_EINVAL;
    }
    *out = &si->pub;
    return KEEL_OK;
}

void keel_settings_destroy(keel_settings *s)
{
    if (s == NULL)
        return;
    settings_impl *si = (settings_impl *)s;
    keel_secret_destroy(s->access_token_signing_key);
    keel_secret_destroy(s->refresh_token_signing_key);
    for (size_t i = 0; si->webhooks != NULL && i < s->webhook_secrets_len; i++)
        keel_secret_destroy(si->webhooks[i]);
    keel_free(si->webhooks);
    for (size_t i = 0; i < KEEL_ARRAY_LEN(si->lists); i++)
        keel_free(si->lists[i]);
    keel_arena_destroy(si->arena);
    keel_free(si);
}
