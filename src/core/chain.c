/* chain.c - ordered layers around a terminal call (design.md section 3). */
#include "keel_int.h"

struct keel_chain {
    keel_layer **layers;
    size_t len;
    size_t cap;
};

keel_err keel_chain_create(keel_chain **out)
{
    keel_chain *c = keel__new(keel_chain);
    if (c == NULL)
        return KEEL_ENOMEM;
    *out = c;
    return KEEL_OK;
}

keel_err keel_chain_add_take(keel_chain *c, keel_layer *layer)
{
    if (c == NULL || layer == NULL || layer->call == NULL)
        return KEEL_EINVAL;
    if (c->len == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        keel_layer **l = keel_realloc(c->layers, cap * sizeof(*l));
        if (l == NULL)
            return KEEL_ENOMEM;
        c->layers = l;
        c->cap = cap;
    }
    c->layers[c->len++] = layer;
    return KEEL_OK;
}

size_t keel_chain_len(const keel_chain *c)
{
    return c ? c->len : 0;
}

keel_layer *keel_chain_at(const keel_chain *c, size_t i)
{
    return (c && i < c->len) ? c->layers[i] : NULL;
}

keel_err keel_chain_next(keel_chain_cursor *cur, void *cx)
{
    const keel_chain *c = cur->chain;
    size_t i = cur->index;
    if (c == NULL || i >= c->len)
        return cur->terminal ? cur->terminal(cx, cur->terminal_ud) : KEEL_OK;
    /* Each layer sees its own cursor position, so a layer that calls next twice
     * (retry) re-runs exactly the layers inside it. */
    keel_chain_cursor inner = {c, i + 1, cur->terminal, cur->terminal_ud};
    return c->layers[i]->call(c->layers[i], cx, &inner);
}

keel_err keel_chain_run(const keel_chain *c, void *cx, keel_chain_terminal_fn terminal, void *ud)
{
    keel_chain_cursor cur = {c, 0, terminal, ud};
    return keel_chain_next(&cur, cx);
}

void keel_chain_destroy(keel_chain *c)
{
    if (c == NULL)
        return;
    for (size_t i = c->len; i-- > 0;)
        if (c->layers[i]->dispose)
            c->layers[i]->dispose(c->layers[i]);
    keel_free(c->layers);
    keel_free(c);
}

static void layer_free(keel_layer *self)
{
    keel_free(self);
}

void *keel__layer_new(size_t size, const char *name,
                      keel_err (*call)(keel_layer *self, void *cx, keel_chain_cursor *cur))
{
    KEEL_ASSERT(size >= sizeof(keel_layer));
    keel_layer *l = keel_calloc(1, size);
    if (l != NULL) {
        l->name = name;
        l->call = call;
        l->dispose = layer_free;
    }
    return l;
}
