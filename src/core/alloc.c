/* alloc.c - the allocator hook.  The only file in src/ allowed to call malloc/free. */
#include "keel_int.h"

#include <stdlib.h>

#include <jansson.h>

static void *std_alloc(void *ctx, size_t n)
{
    KEEL_UNUSED(ctx);
    return malloc(n);
}
static void *std_realloc(void *ctx, void *p, size_t n)
{
    KEEL_UNUSED(ctx);
    return realloc(p, n);
}
static void std_free(void *ctx, void *p)
{
    KEEL_UNUSED(ctx);
    free(p);
}

static keel_allocator g_alloc = {std_alloc, std_realloc, std_free, NULL};

keel_err keel_set_allocator(const keel_allocator *a)
{
    if (a == NULL) {
        g_alloc = (keel_allocator){std_alloc, std_realloc, std_free, NULL};
        json_set_alloc_funcs(malloc, free);
        return KEEL_OK;
    }
    if (a->alloc == NULL || a->realloc == NULL || a->free == NULL)
        return KEEL_EINVAL;
    g_alloc = *a;
    /* JSON values built by keel (and by the application) go through the same hook. */
    json_set_alloc_funcs(keel_malloc, keel_free);
    return KEEL_OK;
}

void *keel_malloc(size_t n)
{
    return g_alloc.alloc(g_alloc.ctx, n ? n : 1);
}

void *keel_calloc(size_t count, size_t n)
{
    if (n != 0 && count > SIZE_MAX / n)
        return NULL;
    size_t total = count * n;
    void *p = keel_malloc(total);
    if (p != NULL && total > 0)
        memset(p, 0, total);
    return p;
}

void *keel_realloc(void *p, size_t n)
{
    return g_alloc.realloc(g_alloc.ctx, p, n ? n : 1);
}

void keel_free(void *p)
{
    if (p == NULL)
        return;
    int saved = errno;
    g_alloc.free(g_alloc.ctx, p);
    errno = saved;
}

char *keel_strndup(const char *s, size_t n)
{
    if (s == NULL)
        return NULL;
    char *d = keel_malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *keel_strdup(const char *s)
{
    return s ? keel_strndup(s, strlen(s)) : NULL;
}
