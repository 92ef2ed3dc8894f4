/* failalloc.c - the failing allocator used by OOM-injection tests (style.md R17). */
#include "test.h"

#include <stdatomic.h>
#include <stdlib.h>

static atomic_int fail_after = -1;

/* -1: never fail.  0: this and every later allocation fails.  n > 0: n more succeed. */
static int should_fail(void)
{
    int v = atomic_load(&fail_after);
    while (v > 0 && !atomic_compare_exchange_weak(&fail_after, &v, v - 1))
        ;
    return v == 0;
}

static void *f_alloc(void *ctx, size_t n)
{
    (void)ctx;
    return should_fail() ? NULL : malloc(n);
}

static void *f_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return should_fail() ? NULL : realloc(p, n);
}

static void f_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

void keel_test_failalloc_install(void)
{
    static const keel_allocator fa = {f_alloc, f_realloc, f_free, NULL};
    atomic_store(&fail_after, -1);
    if (keel_set_allocator(&fa) != KEEL_OK)
        abort();
}

void keel_test_failalloc_arm(int n)
{
    atomic_store(&fail_after, n);
}

void keel_test_failalloc_remove(void)
{
    atomic_store(&fail_after, -1);
    if (keel_set_allocator(NULL) != KEEL_OK)
        abort();
}
