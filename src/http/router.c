/* router.c - path-template router: a segment trie with literal and parameter
 * edges, per-method handlers at the nodes, and header-based API versioning.
 *
 * Matching never allocates: parameters are slices of the path being matched.
 * Literal edges are tried before the parameter edge, with backtracking, so
 * "/products/featured" wins over "/products/{id}" and "/a/{x}/c" still matches
 * when a literal "/a/b" subtree exists but has no "c". */
#include "http_int.h"

#include <stdio.h>

#define ROUTER_METHODS 7

typedef struct handler {
    keel_handler_fn fn;
    void *ud;
    unsigned flags;
} handler;

typedef struct node {
    char *literal;      /* edge label from the parent (NULL for params and root) */
    char *param;        /* parameter name when this node is a {param} edge */
    struct node **kids; /* literal children */
    size_t nkids;
    struct node *param_kid;
    unsigned methods;
    handler h[ROUTER_METHODS];
    char *tmpl; /* route template for metrics and logs */
} node;

typedef struct version_base {
    char *base; /* "/api" */
    char *def;  /* "1" */
} version_base;

struct keel_router {
    node root;
    version_base *versions;
    size_t nversions;
};

static int method_index(keel_method m)
{
    for (int i = 0; i < ROUTER_METHODS; i++)
        if ((unsigned)m == (1u << i))
            return i;
    return -1;
}

keel_err keel_router_create(keel_router **out)
{
    keel_router *r = keel__new(keel_router);
    if (r == NULL)
        return KEEL_ENOMEM;
    *out = r;
    return KEEL_OK;
}

static void node_free(node *n)
{
    for (size_t i = 0; i < n->nkids; i++) {
        node_free(n->kids[i]);
        keel_free(n->kids[i]);
    }
    if (n->param_kid) {
        node_free(n->param_kid);
        keel_free(n->param_kid);
    }
    keel_free(n->kids);
    keel_free(n->literal);
    keel_free(n->param);
    keel_free(n->tmpl);
}

void keel_router_destroy(keel_router *r)
{
    if (r == NULL)
        return;
    node_free(&r->root);
    for (size_t i = 0; i < r->nversions; i++) {
        keel_free(r->versions[i].base);
        keel_free(r->versions[i].def);
    }
    keel_free(r->versions);
    keel_free(r);
}

static int is_name_char(char c, int first)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

/* A literal segment may hold any visible ASCII except the characters that would make the
 * template ambiguous. */
static int literal_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '{' || c == '}' || c == '?' || c == '#')
            return 0;
    }
    return 1;
}

static node *child_literal(node *n, const char *seg, size_t len)
{
    for (size_t i = 0; i < n->nkids; i++) {
        node *k = n->kids[i];
        if (strlen(k->literal) == len && memcmp(k->literal, seg, len) == 0)
            return k;
    }
    return NULL;
}

static keel_err add_literal(node *n, const char *seg, size_t len, node **out)
{
    node *k = child_literal(n, seg, len);
    if (k != NULL) {
        *out = k;
        return KEEL_OK;
    }
    node **kids = keel_realloc(n->kids, (n->nkids + 1) * sizeof(*kids));
    if (kids == NULL)
        return KEEL_ENOMEM;
    n->kids = kids;
    k = keel__new(node);
    if (k == NULL || (k->literal = keel_strndup(seg, len)) == NULL) {
        keel_free(k);
        return KEEL_ENOMEM;
    }
    n->kids[n->nkids++] = k;
    *out = k;
    return KEEL_OK;
}

keel_err keel_router_add(keel_router *r, unsigned methods, const char *pattern, keel_handler_fn fn,
                         void *ud, unsigned flags, keel_diag *diag)
{
    if (r == NULL || pattern == NULL || fn == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "router: NULL argument");
    if (methods == 0 || (methods & ~(unsigned)KEEL_METHOD_ANY) != 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "router: invalid method set 0x%x", methods);
    if (pattern[0] != '/')
        return keel_diag_set(diag, KEEL_EINVAL, 0, "route '%.80s' must start with '/'", pattern);
    if (methods & KEEL_METHOD_GET)
        methods |= KEEL_METHOD_HEAD;

    /* First pass: validate the whole template before touching the trie. */
    size_t nparams = 0;
    const char *names[KEEL__ROUTE_MAX_PARAMS];
    size_t name_lens[KEEL__ROUTE_MAX_PARAMS];
    for (const char *p = pattern + 1;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        size_t off = (size_t)(p - pattern);
        if (len == 0 && end != NULL)
            return keel_diag_set(diag, KEEL_EINVAL, off, "route '%.80s': empty segment",
                                 pattern);
        if (len > 0 && p[0] == '{') {
            if (len < 3 || p[len - 1] != '}')
                return keel_diag_set(diag, KEEL_EINVAL, off,
                                     "route '%.80s': unterminated parameter", pattern);
            for (size_t i = 1; i + 1 < len; i++)
                if (!is_name_char(p[i], i == 1))
                    return keel_diag_set(diag, KEEL_EINVAL, off + i,
                                         "route '%.80s': invalid parameter name", pattern);
            if (nparams == KEEL__ROUTE_MAX_PARAMS)
                return keel_diag_set(diag, KEEL_EINVAL, off,
                                     "route '%.80s': more than %d parameters", pattern,
                                     KEEL__ROUTE_MAX_PARAMS);
            for (size_t i = 0; i < nparams; i++)
                if (name_lens[i] == len - 2 && memcmp(names[i], p + 1, len - 2) == 0)
                    return keel_diag_set(diag, KEEL_EINVAL, off,
                                         "route '%.80s': duplicate parameter", pattern);
            names[nparams] = p + 1;
            name_lens[nparams++] = len - 2;
        } else if (!literal_ok(p, len)) {
            return keel_diag_set(diag, KEEL_EINVAL, off, "route '%.80s': invalid character",
                                 pattern);
        }
        if (end == NULL)
            break;
        p = end + 1;
    }

    /* Second pass: walk/extend the trie. */
    node *n = &r->root;
    if (pattern[1] != '\0') {
        for (const char *p = pattern + 1;;) {
            const char *end = strchr(p, '/');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            keel_err e;
            if (len > 0 && p[0] == '{') {
                if (n->param_kid == NULL) {
                    node *k = keel__new(node);
                    if (k == NULL || (k->param = keel_strndup(p + 1, len - 2)) == NULL) {
                        keel_free(k);
                        return KEEL_ENOMEM;
                    }
                    n->param_kid = k;
                } else if (strlen(n->param_kid->param) != len - 2 ||
                           memcmp(n->param_kid->param, p + 1, len - 2) != 0) {
                    return keel_diag_set(diag, KEEL_EINVAL, (size_t)(p - pattern),
                                         "route '%.80s': parameter name conflicts with '{%s}'",
                                         pattern, n->param_kid->param);
                }
                n = n->param_kid;
            } else if ((e = add_literal(n, p, len, &n)) != KEEL_OK) {
                return e;
            }
            if (end == NULL)
                break;
            p = end + 1;
        }
    }
    if (n->methods & methods)
        return keel_diag_set(diag, KEEL_EEXIST, 0, "route '%.80s': method already routed",
                             pattern);
    if (n->tmpl == NULL && (n->tmpl = keel_strdup(pattern)) == NULL)
        return KEEL_ENOMEM;
    for (int i = 0; i < ROUTER_METHODS; i++) {
        if (methods & (1u << i)) {
            n->h[i].fn = fn;
            n->h[i].ud = ud;
            n->h[i].flags = flags;
        }
    }
    n->methods |= methods;
    return KEEL_OK;
}

/* Recursive descent with backtracking.  Depth is bounded by the trie depth. */
typedef struct match_state {
    int idx;
    keel_route_match *m;
    const node *fallback; /* first node matching the path without the method */
    size_t fb_nparams;
    keel_str fb_names[KEEL__ROUTE_MAX_PARAMS], fb_values[KEEL__ROUTE_MAX_PARAMS];
} match_state;

static int match_node(const node *n, const char *p, const char *end, match_state *st)
{
    if (p == end) {
        if (n->methods == 0)
            return 0;
        if (st->idx >= 0 && (n->methods & (1u << st->idx)))
            return 1;
        if (st->fallback == NULL) {
            st->fallback = n;
            st->fb_nparams = st->m->nparams;
            memcpy(st->fb_names, st->m->names, sizeof(st->fb_names));
            memcpy(st->fb_values, st->m->values, sizeof(st->fb_values));
        }
        return 0;
    }
    if (*p != '/')
        return 0;
    p++;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *segend = slash ? slash : end;
    size_t len = (size_t)(segend - p);
    for (size_t i = 0; i < n->nkids; i++) {
        const node *k = n->kids[i];
        if (strncmp(k->literal, p, len) == 0 && k->literal[len] == '\0' &&
            match_node(k, segend, end, st))
            return 1;
    }
    if (n->param_kid != NULL && len > 0 && st->m->nparams < KEEL__ROUTE_MAX_PARAMS) {
        size_t saved = st->m->nparams;
        st->m->names[saved] = keel_str_c(n->param_kid->param);
        st->m->values[saved] = (keel_str){p, len};
        st->m->nparams = saved + 1;
        if (match_node(n->param_kid, segend, end, st))
            return 1;
        st->m->nparams = saved;
    }
    return 0;
}

static int match_fill(const node *n, const char *p, const char *end, int idx,
                      keel_route_match *m, const node **hit)
{
    if (p == end) {
        if (n->methods != 0 && idx >= 0 && (n->methods & (1u << idx))) {
            *hit = n;
            return 1;
        }
        return 0;
    }
    if (*p != '/')
        return 0;
    p++;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *segend = slash ? slash : end;
    size_t len = (size_t)(segend - p);
    for (size_t i = 0; i < n->nkids; i++) {
        const node *k = n->kids[i];
        if (strncmp(k->literal, p, len) == 0 && k->literal[len] == '\0' &&
            match_fill(k, segend, end, idx, m, hit))
            return 1;
    }
    if (n->param_kid != NULL && len > 0 && m->nparams < KEEL__ROUTE_MAX_PARAMS) {
        size_t saved = m->nparams;
        m->names[saved] = keel_str_c(n->param_kid->param);
        m->values[saved] = (keel_str){p, len};
        m->nparams = saved + 1;
        if (match_fill(n->param_kid, segend, end, idx, m, hit))
            return 1;
        m->nparams = saved;
    }
    return 0;
}

void keel_router_match(const keel_router *r, keel_method method, keel_str path,
                       keel_route_match *m)
{
    memset(m, 0, sizeof(*m));
    if (r == NULL || path.len == 0 || path.ptr[0] != '/')
        return;
    const char *end = path.ptr + path.len;
    /* "/" is the root node itself. */
    if (path.len == 1) {
        const node *n = &r->root;
        m->allowed = n->methods;
        int idx = method_index(method);
        if (idx >= 0 && (n->methods & (1u << idx))) {
            m->found = 1;
            m->fn = n->h[idx].fn;
            m->ud = n->h[idx].ud;
            m->flags = n->h[idx].flags;
            m->route = n->tmpl;
        } else if (n->methods) {
            m->route = n->tmpl;
        }
        return;
    }
    int idx = method_index(method);
    const node *hit = NULL;
    if (idx >= 0 && match_fill(&r->root, path.ptr, end, idx, m, &hit)) {
        m->found = 1;
        m->allowed = hit->methods;
        m->fn = hit->h[idx].fn;
        m->ud = hit->h[idx].ud;
        m->flags = hit->h[idx].flags;
        m->route = hit->tmpl;
        return;
    }
    /* Not routed for this method: does the path exist at all (405 vs 404)? */
    match_state st;
    memset(&st, 0, sizeof(st));
    st.idx = -1;
    st.m = m;
    m->nparams = 0;
    match_node(&r->root, path.ptr, end, &st);
    if (st.fallback != NULL) {
        m->allowed = st.fallback->methods;
        m->route = st.fallback->tmpl;
        m->nparams = st.fb_nparams;
        memcpy(m->names, st.fb_names, sizeof(m->names));
        memcpy(m->values, st.fb_values, sizeof(m->values));
    } else {
        m->nparams = 0;
    }
}

/* ------------------------------------------------------------ versioning -- */

keel_err keel_router_version(keel_router *r, const char *base, const char *default_version)
{
    if (r == NULL || base == NULL || base[0] != '/' || default_version == NULL ||
        default_version[0] == '\0')
        return KEEL_EINVAL;
    for (const char *p = default_version; *p; p++)
        if (*p < '0' || *p > '9')
            return KEEL_EINVAL;
    version_base *v = keel_realloc(r->versions, (r->nversions + 1) * sizeof(*v));
    if (v == NULL)
        return KEEL_ENOMEM;
    r->versions = v;
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/')
        bl--;
    v[r->nversions].base = keel_strndup(base, bl);
    v[r->nversions].def = keel_strdup(default_version);
    if (v[r->nversions].base == NULL || v[r->nversions].def == NULL) {
        keel_free(v[r->nversions].base);
        keel_free(v[r->nversions].def);
        return KEEL_ENOMEM;
    }
    r->nversions++;
    return KEEL_OK;
}

static int is_version_segment(const char *p, size_t len)
{
    if (len < 2 || p[0] != 'v')
        return 0;
    for (size_t i = 1; i < len; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

const char *keel__router_version_rewrite(const keel_router *r, const char *path,
                                         const char *header, keel_arena *a)
{
    for (size_t i = 0; i < r->nversions; i++) {
        const version_base *v = &r->versions[i];
        size_t bl = strlen(v->base);
        if (strncmp(path, v->base, bl) != 0 || (path[bl] != '/' && path[bl] != '\0'))
            continue;
        const char *rest = path + bl;
        const char *seg = rest[0] == '/' ? rest + 1 : rest;
        const char *segend = strchr(seg, '/');
        size_t seglen = segend ? (size_t)(segend - seg) : strlen(seg);
        if (is_version_segment(seg, seglen))
            return path; /* already versioned */
        const char *ver = v->def;
        if (header != NULL && header[0] != '\0') {
            ver = header[0] == 'v' || header[0] == 'V' ? header + 1 : header;
            size_t vl = strlen(ver);
            if (vl == 0 || vl > 6)
                return NULL;
            for (size_t k = 0; k < vl; k++)
                if (ver[k] < '0' || ver[k] > '9')
                    return NULL;
        }
        return keel_arena_sprintf(a, "%s/v%s%s", v->base, ver, rest);
    }
    return path;
}

/* --------------------------------------------------------------- methods -- */

static const char *const method_names[ROUTER_METHODS] = {"GET",   "HEAD",   "POST",   "PUT",
                                                         "PATCH", "DELETE", "OPTIONS"};

const char *keel_method_name(keel_method m)
{
    int i = method_index(m);
    return i >= 0 ? method_names[i] : "";
}

keel_method keel_method_parse(keel_str s)
{
    for (int i = 0; i < ROUTER_METHODS; i++)
        if (keel_str_eq(s, keel_str_c(method_names[i])))
            return (keel_method)(1u << i);
    return (keel_method)0;
}
