/* arena.c - per-request region allocator with a hard cap.
 *
 * Blocks are chained; an allocation that does not fit the current block gets
 * a new block of max(request, doubling size).  reset() keeps the first block
 * so a reused arena does not touch the allocator on the common path. */
#include "keel_int.h"

#include <stdarg.h>
#include <stdio.h>

#define ARENA_FIRST_BLOCK 4096u

typedef struct block {
    struct block *next;
    size_t cap;
    size_t used;
    max_align_t data[];
} block;

struct keel_arena {
    block *head;  /* current block (most recent) */
    block *first; /* kept across reset */
    size_t total; /* bytes of block payload allocated */
    size_t handed;
    size_t max;
};

static block *block_new(size_t cap)
{
    block *b = keel_malloc(sizeof(block) + cap);
    if (b != NULL) {
        b->next = NULL;
        b->cap = cap;
        b->used = 0;
    }
    return b;
}

keel_err keel_arena_create(keel_arena **out, size_t max_bytes)
{
    keel_arena *a = keel__new(keel_arena);
    if (a == NULL)
        return KEEL_ENOMEM;
    a->max = max_bytes ? max_bytes : KEEL_ARENA_DEFAULT_MAX;
    *out = a;
    return KEEL_OK;
}

void *keel_arena_alloc(keel_arena *a, size_t n, size_t align)
{
    if (align == 0)
        align = _Alignof(max_align_t);
    if ((align & (align - 1)) != 0 || n > a->max)
        return NULL;
    block *b = a->head;
    if (b != NULL) {
        uintptr_t base = (uintptr_t)b->data;
        uintptr_t p = (base + b->used + (align - 1)) & ~(uintptr_t)(align - 1);
        size_t off = (size_t)(p - base);
        if (off <= b->cap && n <= b->cap - off) {
            b->used = off + n;
            a->handed += n;
            return (void *)p;
        }
    }
    size_t cap = b ? b->cap * 2 : ARENA_FIRST_BLOCK;
    if (cap < n + align)
        cap = n + align;
    if (a->total + cap > a->max) {
        cap = n + align; /* try a tight block before refusing */
        if (a->total + cap > a->max)
            return NULL;
    }
    block *nb = block_new(cap);
    if (nb == NULL)
        return NULL;
    nb->next = b;
    a->head = nb;
    if (a->first == NULL)
        a->first = nb;
    a->total += cap;
    return keel_arena_alloc(a, n, align);
}

char *keel_arena_strndup(keel_arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *d = keel_arena_alloc(a, n + 1, 1);
    if (d != NULL) {
        if (n)
            memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *keel_arena_strdup(keel_arena *a, const char *s)
{
    return s ? keel_arena_strndup(a, s, strlen(s)) : NULL;
}

char *keel_arena_sprintf(keel_arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *d = NULL;
    if (n >= 0 && (d = keel_arena_alloc(a, (size_t)n + 1, 1)) != NULL)
        vsnprintf(d, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return d;
}

size_t keel_arena_used(const keel_arena *a)
{
    return a->handed;
}

void keel_arena_reset(keel_arena *a)
{
    block *b = a->head;
    while (b != NULL && b != a->first) {
        block *next = b->next;
        keel_free(b);
        b = next;
    }
    a->head = a->first;
    a->total = a->first ? a->first->cap : 0;
    if (a->first)
        a->first->used = 0;
    a->handed = 0;
}

void keel_arena_destroy(keel_arena *a)
{
    if (a == NULL)
        return;
    block *b = a->head;
    while (b != NULL) {
        block *next = b->next;
        keel_free(b);
        b = next;
    }
    keel_free(a);
}
