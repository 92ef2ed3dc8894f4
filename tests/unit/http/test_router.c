/* Tests for src/http/router.c: templates, parameters, precedence, 405 data, versioning. */
#include "test.h"

#include <string.h>

#include "http/http_int.h"

static keel_err h1(keel_ctx *cx, void *ud)
{
    (void)cx;
    (void)ud;
    return KEEL_OK;
}
static keel_err h2(keel_ctx *cx, void *ud)
{
    (void)cx;
    (void)ud;
    return KEEL_OK;
}

static keel_route_match match(const keel_router *r, keel_method m, const char *path)
{
    keel_route_match rm;
    keel_router_match(r, m, keel_str_c(path), &rm);
    return rm;
}

static void test_params_and_precedence(void **state)
{
    (void)state;
    keel_router *r;
    ASSERT_OK(keel_router_create(&r));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/api/v1/products/{id}", h1, NULL, 0, NULL));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/api/v1/products/featured", h2, NULL, 0, NULL));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_POST | KEEL_METHOD_DELETE,
                              "/api/v1/orders/{order_id}/items/{item_id}", h1, (void *)r,
                              KEEL_ROUTE_INLINE, NULL));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/", h2, NULL, 0, NULL));

    keel_route_match m = match(r, KEEL_METHOD_GET, "/api/v1/products/42");
    assert_true(m.found);
    assert_ptr_equal(h1, m.fn);
    assert_string_equal("/api/v1/products/{id}", m.route);
    assert_int_equal(1, m.nparams);
    assert_true(keel_str_eq(KEEL_STR_LIT("id"), m.names[0]));
    assert_true(keel_str_eq(KEEL_STR_LIT("42"), m.values[0]));

    m = match(r, KEEL_METHOD_GET, "/api/v1/products/featured");
    assert_true(m.found);
    assert_ptr_equal(h2, m.fn);
    assert_int_equal(0, m.nparams);

    m = match(r, KEEL_METHOD_HEAD, "/api/v1/products/7"); /* GET implies HEAD */
    assert_true(m.found);

    m = match(r, KEEL_METHOD_DELETE, "/api/v1/orders/o-1/items/i-2");
    assert_true(m.found);
    assert_ptr_equal(r, m.ud);
    assert_int_equal(KEEL_ROUTE_INLINE, m.flags);
    assert_int_equal(2, m.nparams);
    assert_true(keel_str_eq(KEEL_STR_LIT("o-1"), m.values[0]));
    assert_true(keel_str_eq(KEEL_STR_LIT("item_id"), m.names[1]));
    assert_true(keel_str_eq(KEEL_STR_LIT("i-2"), m.values[1]));

    /* 405 data: path exists, method not routed */
    m = match(r, KEEL_METHOD_GET, "/api/v1/orders/o-1/items/i-2");
    assert_false(m.found);
    assert_int_equal(KEEL_METHOD_POST | KEEL_METHOD_DELETE, m.allowed);
    assert_string_equal("/api/v1/orders/{order_id}/items/{item_id}", m.route);

    /* 404 data */
    m = match(r, KEEL_METHOD_GET, "/api/v1/products");
    assert_false(m.found);
    assert_int_equal(0, m.allowed);
    m = match(r, KEEL_METHOD_GET, "/api/v1/products/");    /* empty segment: no param */
    assert_false(m.found);
    m = match(r, KEEL_METHOD_GET, "/api/v1/products/1/x"); /* too deep */
    assert_false(m.found);
    m = match(r, KEEL_METHOD_GET, "relative");
    assert_false(m.found);
    m = match(r, KEEL_METHOD_GET, "/");
    assert_true(m.found);
    assert_ptr_equal(h2, m.fn);
    keel_router_destroy(r);
}

static void test_backtracking(void **state)
{
    (void)state;
    keel_router *r;
    ASSERT_OK(keel_router_create(&r));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/a/b/d", h1, NULL, 0, NULL));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/a/{x}/c", h2, NULL, 0, NULL));
    keel_route_match m = match(r, KEEL_METHOD_GET, "/a/b/c");
    assert_true(m.found);
    assert_ptr_equal(h2, m.fn);
    assert_true(keel_str_eq(KEEL_STR_LIT("b"), m.values[0]));
    keel_router_destroy(r);
}

static void test_bad_patterns(void **state)
{
    (void)state;
    keel_router *r;
    keel_diag d;
    ASSERT_OK(keel_router_create(&r));
    assert_int_equal(KEEL_EINVAL, keel_router_add(r, KEEL_METHOD_GET, "nope", h1, NULL, 0, &d));
    assert_non_null(strstr(d.msg, "must start with '/'"));
    assert_int_equal(KEEL_EINVAL, keel_router_add(r, KEEL_METHOD_GET, "/a//b", h1, NULL, 0, &d));
    assert_non_null(strstr(d.msg, "empty segment"));
    assert_int_equal(KEEL_EINVAL, keel_router_add(r, KEEL_METHOD_GET, "/a/{id", h1, NULL, 0, &d));
    assert_int_equal(KEEL_EINVAL, keel_router_add(r, KEEL_METHOD_GET, "/a/{1x}", h1, NULL, 0, &d));
    assert_int_equal(KEEL_EINVAL,
                     keel_router_add(r, KEEL_METHOD_GET, "/a/{x}/{x}", h1, NULL, 0, &d));
    assert_non_null(strstr(d.msg, "duplicate"));
    assert_int_equal(KEEL_EINVAL, keel_router_add(r, 0, "/a", h1, NULL, 0, &d));
    assert_int_equal(KEEL_EINVAL, keel_router_add(r, KEEL_METHOD_GET, "/a b", h1, NULL, 0, &d));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/p/{id}", h1, NULL, 0, &d));
    assert_int_equal(KEEL_EINVAL, keel_router_add(r, KEEL_METHOD_POST, "/p/{other}", h1, NULL, 0, &d));
    assert_non_null(strstr(d.msg, "conflicts"));
    assert_int_equal(KEEL_EEXIST, keel_router_add(r, KEEL_METHOD_GET, "/p/{id}", h2, NULL, 0, &d));
    keel_router_destroy(r);
}

static void test_version_rewrite(void **state)
{
    (void)state;
    keel_router *r;
    keel_arena *a;
    ASSERT_OK(keel_router_create(&r));
    ASSERT_OK(keel_arena_create(&a, 0));
    ASSERT_OK(keel_router_version(r, "/api", "1"));
    assert_string_equal("/api/v1/items", keel__router_version_rewrite(r, "/api/items", NULL, a));
    assert_string_equal("/api/v2/items", keel__router_version_rewrite(r, "/api/items", "2", a));
    assert_string_equal("/api/v3/items", keel__router_version_rewrite(r, "/api/items", "v3", a));
    assert_string_equal("/api/v2/items", keel__router_version_rewrite(r, "/api/v2/items", "5", a));
    assert_string_equal("/apix/items", keel__router_version_rewrite(r, "/apix/items", "2", a));
    assert_string_equal("/other", keel__router_version_rewrite(r, "/other", "2", a));
    assert_null(keel__router_version_rewrite(r, "/api/items", "two", a));
    assert_null(keel__router_version_rewrite(r, "/api/items", "v", a));
    assert_int_equal(KEEL_EINVAL, keel_router_version(r, "/api", "x"));
    keel_arena_destroy(a);
    keel_router_destroy(r);
}

static void test_methods(void **state)
{
    (void)state;
    assert_int_equal(KEEL_METHOD_PATCH, keel_method_parse(KEEL_STR_LIT("PATCH")));
    assert_int_equal(0, keel_method_parse(KEEL_STR_LIT("get")));
    assert_string_equal("OPTIONS", keel_method_name(KEEL_METHOD_OPTIONS));
    assert_string_equal("", keel_method_name((keel_method)3));
    assert_string_equal("Content Too Large", keel_http_reason(413));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_and_precedence), cmocka_unit_test(test_backtracking),
        cmocka_unit_test(test_bad_patterns),          cmocka_unit_test(test_version_rewrite),
        cmocka_unit_test(test_methods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
