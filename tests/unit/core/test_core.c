/* Tests for src/core: errors, allocator, arena, buf, clocks, uuid, secrets, chain. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

static void test_strerror_covers_every_code(void **state)
{
    (void)state;
    assert_string_equal("success", keel_strerror(KEEL_OK));
    assert_string_equal("out of memory", keel_strerror(KEEL_ENOMEM));
    assert_string_equal("KEEL_ETOOBIG", keel_err_name(KEEL_ETOOBIG));
    assert_string_equal("unknown error", keel_strerror(-9999));
    assert_string_equal("KEEL_E?", keel_err_name(12345));
#define X(name, value, msg)                                                                        \
    assert_int_equal(value, KEEL_E##name);                                                         \
    assert_string_equal(msg, keel_strerror(value));
    KEEL_ERR_MAP(X)
#undef X
}

static void test_arena_cap_and_reset(void **state)
{
    (void)state;
    keel_arena *a;
    ASSERT_OK(keel_arena_create(&a, 64 * 1024));
    char *s = keel_arena_strdup(a, "hello");
    assert_string_equal("hello", s);
    void *p = keel_arena_alloc(a, 100, 64);
    assert_non_null(p);
    assert_int_equal(0, (uintptr_t)p % 64);
    for (int i = 0; i < 100; i++)
        assert_non_null(keel_arena_alloc(a, 500, 0));
    assert_null(keel_arena_alloc(a, 64 * 1024, 0)); /* over the cap */
    char *f = keel_arena_sprintf(a, "%d-%s", 42, "x");
    assert_string_equal("42-x", f);
    keel_arena_reset(a);
    assert_int_equal(0, keel_arena_used(a));
    assert_non_null(keel_arena_alloc(a, 1000, 0));
    assert_null(keel_arena_alloc(a, 1, 3)); /* alignment not a power of two */
    keel_arena_destroy(a);
}

static void test_buf_cap(void **state)
{
    (void)state;
    keel_buf b;
    keel_buf_init(&b, 10);
    ASSERT_OK(keel_buf_append_str(&b, "01234"));
    ASSERT_OK(keel_buf_appendf(&b, "%d", 5678));
    assert_int_equal(KEEL_ETOOBIG, keel_buf_append_str(&b, "9ab"));
    assert_string_equal("012345678", b.ptr);
    ASSERT_OK(keel_buf_append_char(&b, '9'));
    assert_int_equal(10, b.len);
    assert_int_equal(KEEL_ETOOBIG, keel_buf_append_char(&b, 'x'));
    size_t n;
    char *t = keel_buf_take(&b, &n);
    assert_int_equal(10, n);
    assert_string_equal("0123456789", t);
    keel_free(t);
    assert_null(b.ptr);
    /* long formatted output goes through the second vsnprintf path */
    keel_buf_init(&b, 4096);
    ASSERT_OK(keel_buf_appendf(&b, "%0300d", 7));
    assert_int_equal(300, b.len);
    keel_buf_cleanup(&b);
}

static void test_iso8601(void **state)
{
    (void)state;
    char ts[KEEL_TIME_ISO8601_SIZE];
    assert_int_equal(24, keel_time_iso8601(1700000000123, ts));
    assert_string_equal("2023-11-14T22:13:20.123Z", ts);
    keel_time_iso8601(0, ts);
    assert_string_equal("1970-01-01T00:00:00.000Z", ts);
    uint64_t a = keel_time_mono_ns(), b = keel_time_mono_ns();
    assert_true(b >= a);
    assert_true(keel_time_wall_ms() > 1700000000000);
}

static void test_uuid4(void **state)
{
    (void)state;
    char a[KEEL_UUID_SIZE], b[KEEL_UUID_SIZE];
    ASSERT_OK(keel_uuid4(a));
    ASSERT_OK(keel_uuid4(b));
    assert_int_equal(36, strlen(a));
    assert_true(keel_uuid_valid(keel_str_c(a)));
    assert_int_equal('4', a[14]);
    assert_true(strchr("89ab", a[19]) != NULL);
    assert_string_not_equal(a, b);
    assert_false(keel_uuid_valid(KEEL_STR_LIT("not-a-uuid")));
    assert_false(keel_uuid_valid(KEEL_STR_LIT("123e4567-e89b-12d3-a456-42661417400g")));
    assert_true(keel_uuid_valid(KEEL_STR_LIT("123E4567-e89b-12d3-a456-426614174000")));
}

static void test_secret(void **state)
{
    (void)state;
    keel_secret *s;
    ASSERT_OK(keel_secret_create(&s, "k3y", 3));
    assert_int_equal(3, keel_secret_len(s));
    assert_true(keel_secret_equals(s, "k3y", 3));
    assert_false(keel_secret_equals(s, "k3z", 3));
    assert_false(keel_secret_equals(s, "k3", 2));
    keel_secret_destroy(s);
    keel_secret_destroy(NULL);
}

/* chain: layers record their order; one short-circuits; one retries. */
typedef struct rec_layer {
    keel_layer base;
    char tag;
    int mode; /* 0 pass, 1 answer without next, 2 call next twice */
} rec_layer;

static keel_err rec_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    rec_layer *l = (rec_layer *)self;
    keel_buf *trace = cx;
    keel_err e = keel_buf_append_char(trace, l->tag);
    if (e)
        return e;
    if (l->mode == 1)
        return KEEL_EDENIED;
    e = keel_chain_next(cur, cx);
    if (l->mode == 2)
        e = keel_chain_next(cur, cx);
    return keel_buf_append_char(trace, (char)(l->tag - 32)) ? KEEL_ENOMEM : e;
}

static int disposed;
static void rec_dispose(keel_layer *self)
{
    disposed++;
    keel_free(self);
}

static keel_err terminal(void *cx, void *ud)
{
    (void)ud;
    return keel_buf_append_char(cx, '*');
}

static rec_layer *mk(char tag, int mode)
{
    rec_layer *l = keel_calloc(1, sizeof(*l));
    l->base.name = "rec";
    l->base.call = rec_call;
    l->base.dispose = rec_dispose;
    l->tag = tag;
    l->mode = mode;
    return l;
}

static void test_chain_order_shortcircuit_retry(void **state)
{
    (void)state;
    keel_chain *c;
    keel_buf t;
    keel_buf_init(&t, 256);
    ASSERT_OK(keel_chain_create(&c));
    ASSERT_OK(keel_chain_run(c, &t, terminal, NULL));
    assert_string_equal("*", t.ptr);
    ASSERT_OK(keel_chain_add_take(c, &mk('a', 0)->base));
    ASSERT_OK(keel_chain_add_take(c, &mk('b', 2)->base));
    ASSERT_OK(keel_chain_add_take(c, &mk('c', 0)->base));
    assert_int_equal(3, keel_chain_len(c));
    keel_buf_reset(&t);
    ASSERT_OK(keel_chain_run(c, &t, terminal, NULL));
    assert_string_equal("abc*Cc*CBA", t.ptr);
    keel_chain_destroy(c);
    assert_int_equal(3, disposed);

    ASSERT_OK(keel_chain_create(&c));
    ASSERT_OK(keel_chain_add_take(c, &mk('x', 0)->base));
    ASSERT_OK(keel_chain_add_take(c, &mk('y', 1)->base));
    keel_buf_reset(&t);
    assert_int_equal(KEEL_EDENIED, keel_chain_run(c, &t, terminal, NULL));
    assert_string_equal("xyX", t.ptr);
    assert_int_equal(KEEL_EINVAL, keel_chain_add_take(c, NULL));
    keel_chain_destroy(c);
    keel_buf_cleanup(&t);
}

/* allocator hook: failing allocator makes functions return ENOMEM, not crash */

static void test_oom_injection(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    for (int n = 0; n < 4; n++) {
        keel_test_failalloc_arm(n);
        keel_arena *a = NULL;
        keel_err e = keel_arena_create(&a, 0);
        if (e == KEEL_OK) {
            void *p = keel_arena_alloc(a, 10, 0);
            (void)p;
            keel_arena_destroy(a);
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
        }
        keel_test_failalloc_arm(n);
        keel_chain *c = NULL;
        e = keel_chain_create(&c);
        if (e == KEEL_OK) {
            rec_layer l = {{"s", rec_call, NULL}, 's', 0};
            e = keel_chain_add_take(c, &l.base);
            assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
            keel_chain_destroy(c);
        }
    }
    keel_test_failalloc_arm(-1);
    ASSERT_OK(keel_set_allocator(NULL));
    keel_allocator bad = {NULL, NULL, NULL, NULL};
    assert_int_equal(KEEL_EINVAL, keel_set_allocator(&bad));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_covers_every_code),
        cmocka_unit_test(test_arena_cap_and_reset),
        cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_uuid4),
        cmocka_unit_test(test_secret),
        cmocka_unit_test(test_chain_order_shortcircuit_retry),
        cmocka_unit_test(test_oom_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
