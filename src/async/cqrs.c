/*
 * cqrs.c - command and query buses (seed 001 section 6).
 *
 * Two registries (commands, queries), each a growable array of (name, hash, handler, ud)
 * capped at max_handlers and searched linearly by hash then name: registries hold tens of
 * names, registered at startup, so a hash table would buy nothing.  A read-write lock lets
 * dispatches look up concurrently; the handler is copied out and called without the lock.
 */
#include "keel_int.h"

#include <keel/cqrs.h>

#include <pthread.h>

#define CQRS_MAX_HANDLERS ((size_t)1 << 16)

typedef struct entry {
    char *name;
    uint64_t hash;
    keel_command_fn cmd;
    keel_query_fn query;
    void *ud;
} entry;

typedef struct registry {
    entry *v;
    size_t n, cap;
} registry;

struct keel_cqrs {
    keel_cqrs_config cfg;
    pthread_rwlock_t lock;
    registry reg[2]; /* [0] commands, [1] queries */
};

void keel_cqrs_config_default(keel_cqrs_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->max_handlers = 256;
    cfg->chain = NULL;
}

keel_err keel_cqrs_create(keel_cqrs **out, const keel_cqrs_config *cfg, keel_diag *d)
{
    if (out == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "out: must not be NULL");
    *out = NULL;
    keel_cqrs_config def;
    keel_cqrs_config_default(&def);
    if (cfg == NULL)
        cfg = &def;
    if (cfg->size < sizeof(keel_cqrs_config))
        return keel_diag_set(d, KEEL_EINVAL, 0, "size: set it with keel_cqrs_config_default()");
    if (cfg->max_handlers == 0 || cfg->max_handlers > CQRS_MAX_HANDLERS)
        return keel_diag_set(d, KEEL_EINVAL, 0, "max_handlers: must be 1..%zu",
                             CQRS_MAX_HANDLERS);
    keel_cqrs *c = keel__new(keel_cqrs);
    if (c == NULL)
        return keel_diag_set(d, KEEL_ENOMEM, 0, "out of memory");
    c->cfg = *cfg;
    c->cfg.size = sizeof(c->cfg);
    int rc = pthread_rwlock_init(&c->lock, NULL);
    if (rc != 0) {
        keel_free(c);
        return keel_diag_set(d, rc == ENOMEM || rc == EAGAIN ? KEEL_ENOMEM : KEEL_EINTERNAL, 0,
                             "cannot initialise the registry lock");
    }
    *out = c;
    return KEEL_OK;
}

/* 1 if name is 1..KEEL_CQRS_NAME_MAX printable ASCII bytes without spaces. */
static int name_valid(const char *s, size_t *len)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if (n >= KEEL_CQRS_NAME_MAX || s[n] < 0x21 || s[n] > 0x7e)
            return 0;
    *len = n;
    return 1;
}

/* Index of name in r, or r->n (lock held). */
static size_t find(const registry *r, const char *name, uint64_t h)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].hash == h && strcmp(r->v[i].name, name) == 0)
            return i;
    return r->n;
}

static const char *kind_name(keel_cqrs_kind k)
{
    return k == KEEL_CQRS_COMMAND ? "command" : "query";
}

static keel_err reg_add(keel_cqrs *c, keel_cqrs_kind kind, const char *name, keel_command_fn cf,
                        keel_query_fn qf, void *ud, keel_diag *d)
{
    size_t len = 0;
    if (c == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "cqrs: must not be NULL");
    if (!name_valid(name, &len))
        return keel_diag_set(d, KEEL_EINVAL, 0,
                             "name: 1..%d printable ASCII characters without spaces required",
                             KEEL_CQRS_NAME_MAX);
    if (cf == NULL && qf == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "fn: a %s handler is required",
                             kind_name(kind));
    uint64_t h = keel__fnv1a(KEEL__FNV1A_INIT, name, len);
    char *copy = keel_strndup(name, len);
    if (copy == NULL)
        return keel_diag_set(d, KEEL_ENOMEM, 0, "out of memory");
    registry *r = &c->reg[kind == KEEL_CQRS_COMMAND ? 0 : 1];
    keel_err e = KEEL_OK;
    pthread_rwlock_wrlock(&c->lock);
    if (find(r, name, h) != r->n) {
        e = keel_diag_set(d, KEEL_EEXIST, 0, "%s '%s' already has a handler", kind_name(kind),
                          name);
    } else if (r->n == c->cfg.max_handlers) {
        e = keel_diag_set(d, KEEL_EFULL, 0, "%s registry full (max_handlers %zu)",
                          kind_name(kind), c->cfg.max_handlers);
    } else if (r->n == r->cap) {
        size_t ncap = r->cap == 0 ? 8 : r->cap * 2;
        if (ncap > c->cfg.max_handlers)
            ncap = c->cfg.max_handlers;
        entry *nv = keel_realloc(r->v, ncap * sizeof(entry));
        if (nv == NULL) {
            e = keel_diag_set(d, KEEL_ENOMEM, 0, "out of memory");
        } else {
            r->v = nv;
            r->cap = ncap;
        }
    }
    if (e == KEEL_OK) {
        entry *en = &r->v[r->n++];
        en->name = copy;
        en->hash = h;
        en->cmd = cf;
        en->query = qf;
        en->ud = ud;
        copy = NULL;
    }
    pthread_rwlock_unlock(&c->lock);
    keel_free(copy);
    return e;
}

keel_err keel_cqrs_register_command(keel_cqrs *c, const char *name, keel_command_fn fn, void *ud,
                                    keel_diag *d)
{
    if (fn == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "fn: a command handler is required");
    return reg_add(c, KEEL_CQRS_COMMAND, name, fn, NULL, ud, d);
}

keel_err keel_cqrs_register_query(keel_cqrs *c, const char *name, keel_query_fn fn, void *ud,
                                  keel_diag *d)
{
    if (fn == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "fn: a query handler is required");
    return reg_add(c, KEEL_CQRS_QUERY, name, NULL, fn, ud, d);
}

/* Copy the entry for name out of the registry.  KEEL_ENOTFOUND with a diag if absent. */
static keel_err lookup(keel_cqrs *c, keel_cqrs_kind kind, const char *name, entry *out,
                       keel_diag *d)
{
    size_t len = 0;
    if (!name_valid(name, &len))
        return keel_diag_set(d, KEEL_ENOTFOUND, 0, "no %s handler for an invalid type name",
                             kind_name(kind));
    uint64_t h = keel__fnv1a(KEEL__FNV1A_INIT, name, len);
    const registry *r = &c->reg[kind == KEEL_CQRS_COMMAND ? 0 : 1];
    pthread_rwlock_rdlock(&c->lock);
    size_t i = find(r, name, h);
    bool found = i != r->n;
    if (found)
        *out = r->v[i];
    pthread_rwlock_unlock(&c->lock);
    if (!found)
        return keel_diag_set(d, KEEL_ENOTFOUND, 0, "no %s handler registered for '%s'",
                             kind_name(kind), name);
    return KEEL_OK;
}

/* The chain's terminal: run the handler found by the dispatcher. */
static keel_err terminal(void *cx, void *ud)
{
    keel_cqrs_ctx *ctx = cx;
    const entry *en = ud;
    if (ctx->kind == KEEL_CQRS_COMMAND)
        return en->cmd(ctx->payload, en->ud, ctx->diag);
    json_t *res = NULL;
    keel_err e = en->query(ctx->payload, &res, en->ud, ctx->diag);
    if (e != KEEL_OK) {
        json_decref(res);
        return e;
    }
    json_decref(ctx->result); /* a retrying layer may run the terminal twice */
    ctx->result = res != NULL ? res : json_null();
    return KEEL_OK;
}

static keel_err dispatch(keel_cqrs *c, keel_cqrs_kind kind, const char *name,
                         const json_t *payload, json_t **result, void *user, keel_diag *d)
{
    entry en;
    keel_err e = lookup(c, kind, name, &en, d);
    if (e != KEEL_OK)
        return e;
    keel_cqrs_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.size = sizeof(ctx);
    ctx.kind = kind;
    ctx.name = name;
    ctx.payload = payload != NULL ? payload : json_null();
    ctx.diag = d;
    ctx.user = user;
    e = keel_chain_run(c->cfg.chain, &ctx, terminal, &en);
    if (result != NULL && e == KEEL_OK) {
        *result = ctx.result != NULL ? ctx.result : json_null();
        ctx.result = NULL;
    }
    json_decref(ctx.result);
    return e;
}

keel_err keel_cqrs_execute(keel_cqrs *c, const char *name, const json_t *cmd, void *user,
                           keel_diag *d)
{
    if (c == NULL || name == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "%s: must not be NULL",
                             c == NULL ? "cqrs" : "name");
    return dispatch(c, KEEL_CQRS_COMMAND, name, cmd, NULL, user, d);
}

keel_err keel_cqrs_query(keel_cqrs *c, const char *name, const json_t *query, json_t **result,
                         void *user, keel_diag *d)
{
    if (result != NULL)
        *result = NULL;
    if (c == NULL || name == NULL || result == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "%s: must not be NULL",
                             c == NULL ? "cqrs" : name == NULL ? "name" : "result");
    return dispatch(c, KEEL_CQRS_QUERY, name, query, result, user, d);
}

int keel_cqrs_has(keel_cqrs *c, keel_cqrs_kind kind, const char *name)
{
    size_t len = 0;
    if (c == NULL || !name_valid(name, &len))
        return 0;
    uint64_t h = keel__fnv1a(KEEL__FNV1A_INIT, name, len);
    const registry *r = &c->reg[kind == KEEL_CQRS_COMMAND ? 0 : 1];
    pthread_rwlock_rdlock(&c->lock);
    int found = find(r, name, h) != r->n;
    pthread_rwlock_unlock(&c->lock);
    return found;
}

void keel_cqrs_destroy(keel_cqrs *c)
{
    if (c == NULL)
        return;
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < c->reg[k].n; i++)
            keel_free(c->reg[k].v[i].name);
        keel_free(c->reg[k].v);
    }
    pthread_rwlock_destroy(&c->lock);
    keel_free(c);
}
