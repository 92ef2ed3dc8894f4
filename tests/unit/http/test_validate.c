/* Tests for src/http/validate.c: strict body parsing and pydantic-style validation. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/validate.h>

/* ---------------------------------------------------------------- schema -- */

static const char *const kinds[] = {"card", "bank", NULL};

static const keel_schema_field item_fields[] = {
    {.name = "sku",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SCHEMA_REQUIRED,
     .min_len = 3,
     .max_len = 8},
    {.name = "qty",
     .type = KEEL_SCHEMA_INT,
     .flags = KEEL_SCHEMA_REQUIRED,
     .has_min = 1,
     .min = 1,
     .has_max = 1,
     .max = 100},
};
static const keel_schema item_schema = {item_fields, KEEL_ARRAY_LEN(item_fields), 0};

static const keel_schema_field addr_fields[] = {
    {.name = "city", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 1},
    {.name = "zip", .type = KEEL_SCHEMA_STRING},
};
static const keel_schema addr_schema = {addr_fields, KEEL_ARRAY_LEN(addr_fields), 0};

static const keel_schema_field order_fields[] = {
    {.name = "email",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SCHEMA_REQUIRED,
     .format = KEEL_SCHEMA_FMT_EMAIL},
    {.name = "amount",
     .type = KEEL_SCHEMA_NUMBER,
     .flags = KEEL_SCHEMA_REQUIRED,
     .has_min = 1,
     .min = 0.01},
    {.name = "currency",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SCHEMA_REQUIRED,
     .format = KEEL_SCHEMA_FMT_CURRENCY},
    {.name = "kind", .type = KEEL_SCHEMA_STRING, .one_of = kinds},
    {.name = "note", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_NULLABLE, .max_len = 5},
    {.name = "gift", .type = KEEL_SCHEMA_BOOL},
    {.name = "address", .type = KEEL_SCHEMA_OBJECT, .object = &addr_schema},
    {.name = "items",
     .type = KEEL_SCHEMA_ARRAY,
     .flags = KEEL_SCHEMA_REQUIRED,
     .min_len = 1,
     .max_len = 3,
     .object = &item_schema},
    {.name = "tags", .type = KEEL_SCHEMA_ARRAY, .items = KEEL_SCHEMA_STRING, .max_len = 10},
    {.name = "scores", .type = KEEL_SCHEMA_ARRAY, .items = KEEL_SCHEMA_INT, .has_min = 1, .min = 0},
    {.name = "meta", .type = KEEL_SCHEMA_OBJECT},
    {.name = "extra", .type = KEEL_SCHEMA_ANY},
};
static const keel_schema order_schema = {order_fields, KEEL_ARRAY_LEN(order_fields), 0};

#define VALID_ORDER                                                                                \
    "\"email\":\"a@example.com\",\"amount\":12.5,\"currency\":\"EUR\",\"items\":[{\"sku\":"        \
    "\"abc\",\"qty\":1}]"

/* ---------------------------------------------------------------- helpers -- */

/* Parse json (which must be a valid object), validate it against schema with loc root
 * "body", and compare the error list with the JSON text expected_errors. */
static void expect(const keel_schema *schema, const char *json, keel_err want_rc,
                   const char *expected_errors)
{
    json_t *v = NULL;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err rc = keel_validate_parse_object(json, strlen(json), &v, &d);
    if (rc != KEEL_OK)
        print_error("parse failed for %s: %s\n", json, d.msg);
    assert_int_equal(KEEL_OK, rc);
    json_t *errors = json_array();
    rc = keel_validate_json(v, schema, "body", errors);
    json_error_t jerr;
    json_t *want = json_loads(expected_errors, 0, &jerr);
    if (want == NULL)
        print_error("bad expectation %s: %s\n", expected_errors, jerr.text);
    assert_non_null(want);
    if (!json_equal(want, errors) || rc != want_rc) {
        char *got = json_dumps(errors, JSON_COMPACT);
        print_error("input: %s\n  got  (%d) %s\n  want (%d) %s\n", json, rc, got, want_rc,
                    expected_errors);
        free(got);
    }
    assert_int_equal(want_rc, rc);
    assert_true(json_equal(want, errors));
    json_decref(want);
    json_decref(errors);
    json_decref(v);
}

static void expect_ok(const keel_schema *schema, const char *json)
{
    expect(schema, json, KEEL_OK, "[]");
}

/* -------------------------------------------------------------- validation -- */

static void test_valid_documents(void **state)
{
    (void)state;
    expect_ok(&order_schema, "{" VALID_ORDER "}");
    expect_ok(&order_schema,
              "{" VALID_ORDER ",\"kind\":\"bank\",\"note\":null,\"gift\":false,"
              "\"address\":{\"city\":\"Paris\"},\"tags\":[\"x\",\"\"],\"scores\":[0,5],"
              "\"meta\":{\"anything\":[1,{}]},\"extra\":[null]}");
    /* Integers are numbers; code points, not bytes, are counted. */
    expect_ok(&order_schema, "{\"email\":\"a@b.co\",\"amount\":3,\"currency\":\"USD\","
                             "\"note\":\"h\u00e9llo\",\"items\":[{\"sku\":\"\u00e9\u00e9\u00e9\","
                             "\"qty\":100}]}");
}

static void test_missing_and_extra(void **state)
{
    (void)state;
    expect(&order_schema, "{}", KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"email\"],\"msg\":\"Field required\",\"type\":\"missing\"},"
           "{\"loc\":[\"body\",\"amount\"],\"msg\":\"Field required\",\"type\":\"missing\"},"
           "{\"loc\":[\"body\",\"currency\"],\"msg\":\"Field required\",\"type\":\"missing\"},"
           "{\"loc\":[\"body\",\"items\"],\"msg\":\"Field required\",\"type\":\"missing\"}]");
    expect(&order_schema, "{" VALID_ORDER ",\"is_admin\":true,\"zz\":1}", KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"is_admin\"],\"msg\":\"Extra inputs are not permitted\","
           "\"type\":\"extra_forbidden\"},"
           "{\"loc\":[\"body\",\"zz\"],\"msg\":\"Extra inputs are not permitted\","
           "\"type\":\"extra_forbidden\"}]");
    /* The same schema with allow_unknown accepts them. */
    keel_schema lax = order_schema;
    lax.allow_unknown = 1;
    expect_ok(&lax, "{" VALID_ORDER ",\"is_admin\":true}");
}

static void test_type_errors(void **state)
{
    (void)state;
    /* 1.0 and true are not integers; "1" is not a number; null is not a string. */
    expect(
        &order_schema,
        "{\"email\":null,\"amount\":\"1\",\"currency\":5,\"kind\":null,\"gift\":\"yes\","
        "\"address\":[],\"items\":[{\"sku\":\"abc\",\"qty\":1.0},{\"sku\":\"abc\",\"qty\":true}],"
        "\"tags\":{},\"meta\":\"x\"}",
        KEEL_EINVAL,
        "[{\"loc\":[\"body\",\"email\"],\"msg\":\"Input should be a valid string\","
        "\"type\":\"string_type\"},"
        "{\"loc\":[\"body\",\"amount\"],\"msg\":\"Input should be a valid number\","
        "\"type\":\"float_type\"},"
        "{\"loc\":[\"body\",\"currency\"],\"msg\":\"Input should be a valid string\","
        "\"type\":\"string_type\"},"
        "{\"loc\":[\"body\",\"kind\"],\"msg\":\"Input should be a valid string\","
        "\"type\":\"string_type\"},"
        "{\"loc\":[\"body\",\"gift\"],\"msg\":\"Input should be a valid boolean\","
        "\"type\":\"bool_type\"},"
        "{\"loc\":[\"body\",\"address\"],\"msg\":\"Input should be a valid dictionary\","
        "\"type\":\"dict_type\"},"
        "{\"loc\":[\"body\",\"items\",0,\"qty\"],\"msg\":\"Input should be a valid integer\","
        "\"type\":\"int_type\"},"
        "{\"loc\":[\"body\",\"items\",1,\"qty\"],\"msg\":\"Input should be a valid integer\","
        "\"type\":\"int_type\"},"
        "{\"loc\":[\"body\",\"tags\"],\"msg\":\"Input should be a valid list\","
        "\"type\":\"list_type\"},"
        "{\"loc\":[\"body\",\"meta\"],\"msg\":\"Input should be a valid dictionary\","
        "\"type\":\"dict_type\"}]");
    /* Booleans are not numbers either. */
    expect(&order_schema,
           "{\"email\":\"a@b.co\",\"amount\":true,\"currency\":\"USD\",\"items\":[{\"sku\":\"abc\","
           "\"qty\":2}]}",
           KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"amount\"],\"msg\":\"Input should be a valid number\","
           "\"type\":\"float_type\"}]");
}

static void test_ranges_and_lengths(void **state)
{
    (void)state;
    expect(&order_schema,
           "{\"email\":\"a@b.co\",\"amount\":0,\"currency\":\"USD\",\"note\":\"h\u00e9llo!\","
           "\"address\":{\"city\":\"\"},"
           "\"items\":[{\"sku\":\"ab\",\"qty\":0},{\"sku\":\"abcdefghi\",\"qty\":101}],"
           "\"scores\":[3,-1]}",
           KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"amount\"],\"msg\":\"Input should be greater than or equal to "
           "0.01\",\"type\":\"greater_than_equal\"},"
           "{\"loc\":[\"body\",\"note\"],\"msg\":\"String should have at most 5 characters\","
           "\"type\":\"string_too_long\"},"
           "{\"loc\":[\"body\",\"address\",\"city\"],\"msg\":\"String should have at least 1 "
           "character\",\"type\":\"string_too_short\"},"
           "{\"loc\":[\"body\",\"items\",0,\"sku\"],\"msg\":\"String should have at least 3 "
           "characters\",\"type\":\"string_too_short\"},"
           "{\"loc\":[\"body\",\"items\",0,\"qty\"],\"msg\":\"Input should be greater than or "
           "equal to 1\",\"type\":\"greater_than_equal\"},"
           "{\"loc\":[\"body\",\"items\",1,\"sku\"],\"msg\":\"String should have at most 8 "
           "characters\",\"type\":\"string_too_long\"},"
           "{\"loc\":[\"body\",\"items\",1,\"qty\"],\"msg\":\"Input should be less than or equal "
           "to 100\",\"type\":\"less_than_equal\"},"
           "{\"loc\":[\"body\",\"scores\",1],\"msg\":\"Input should be greater than or equal to "
           "0\",\"type\":\"greater_than_equal\"}]");
    expect(&order_schema, "{\"email\":\"a@b.co\",\"amount\":1,\"currency\":\"USD\",\"items\":[]}",
           KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"items\"],\"msg\":\"List should have at least 1 item after "
           "validation, not 0\",\"type\":\"too_short\"}]");
    expect(&order_schema,
           "{\"email\":\"a@b.co\",\"amount\":1,\"currency\":\"USD\",\"items\":[{\"sku\":\"abc\","
           "\"qty\":1},{\"sku\":\"abc\",\"qty\":1},{\"sku\":\"abc\",\"qty\":1},{\"sku\":\"abc\","
           "\"qty\":1}]}",
           KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"items\"],\"msg\":\"List should have at most 3 items after "
           "validation, not 4\",\"type\":\"too_long\"}]");

    /* Bounds print like pydantic: integers without a point, reals in shortest form. */
    static const keel_schema_field f[] = {
        {.name = "a", .type = KEEL_SCHEMA_NUMBER, .has_max = 1, .max = 2.5},
        {.name = "b", .type = KEEL_SCHEMA_NUMBER, .has_min = 1, .min = -5},
        {.name = "c", .type = KEEL_SCHEMA_NUMBER, .has_max = 1, .max = 1e20},
        {.name = "d", .type = KEEL_SCHEMA_NUMBER, .has_min = 1, .min = 0.1},
    };
    static const keel_schema s = {f, KEEL_ARRAY_LEN(f), 0};
    expect(&s, "{\"a\":2.51,\"b\":-6,\"c\":1e21,\"d\":0.09999}", KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"a\"],\"msg\":\"Input should be less than or equal to 2.5\","
           "\"type\":\"less_than_equal\"},"
           "{\"loc\":[\"body\",\"b\"],\"msg\":\"Input should be greater than or equal to -5\","
           "\"type\":\"greater_than_equal\"},"
           "{\"loc\":[\"body\",\"c\"],\"msg\":\"Input should be less than or equal to 1e+20\","
           "\"type\":\"less_than_equal\"},"
           "{\"loc\":[\"body\",\"d\"],\"msg\":\"Input should be greater than or equal to 0.1\","
           "\"type\":\"greater_than_equal\"}]");
    expect_ok(&s, "{\"a\":2.5,\"b\":-5,\"c\":1e20,\"d\":0.1}");
}

static void test_literals(void **state)
{
    (void)state;
    static const char *const one[] = {"a", NULL};
    static const char *const three[] = {"a", "b", "c", NULL};
    static const keel_schema_field f[] = {
        {.name = "one", .type = KEEL_SCHEMA_STRING, .one_of = one},
        {.name = "three", .type = KEEL_SCHEMA_STRING, .one_of = three},
        {.name = "kind", .type = KEEL_SCHEMA_STRING, .one_of = kinds},
        {.name = "list", .type = KEEL_SCHEMA_ARRAY, .items = KEEL_SCHEMA_STRING, .one_of = kinds},
    };
    static const keel_schema s = {f, KEEL_ARRAY_LEN(f), 0};
    expect_ok(&s, "{\"one\":\"a\",\"three\":\"c\",\"kind\":\"card\",\"list\":[\"bank\"]}");
    expect(
        &s, "{\"one\":\"A\",\"three\":\"d\",\"kind\":\"cash\",\"list\":[\"card\",\"x\"]}",
        KEEL_EINVAL,
        "[{\"loc\":[\"body\",\"one\"],\"msg\":\"Input should be 'a'\",\"type\":\"literal_error\"},"
        "{\"loc\":[\"body\",\"three\"],\"msg\":\"Input should be 'a', 'b' or 'c'\","
        "\"type\":\"literal_error\"},"
        "{\"loc\":[\"body\",\"kind\"],\"msg\":\"Input should be 'card' or 'bank'\","
        "\"type\":\"literal_error\"},"
        "{\"loc\":[\"body\",\"list\",1],\"msg\":\"Input should be 'card' or 'bank'\","
        "\"type\":\"literal_error\"}]");
}

static void test_nested_locations(void **state)
{
    (void)state;
    expect(&order_schema,
           "{\"email\":\"a@b.co\",\"amount\":1,\"currency\":\"USD\","
           "\"address\":{\"zip\":75001,\"street\":\"x\"},"
           "\"items\":[{\"sku\":\"abc\",\"qty\":1,\"price\":3},7,null,{\"qty\":\"2\"}],"
           "\"tags\":[1,\"ok\",null]}",
           KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"address\",\"city\"],\"msg\":\"Field required\","
           "\"type\":\"missing\"},"
           "{\"loc\":[\"body\",\"address\",\"zip\"],\"msg\":\"Input should be a valid string\","
           "\"type\":\"string_type\"},"
           "{\"loc\":[\"body\",\"address\",\"street\"],\"msg\":\"Extra inputs are not permitted\","
           "\"type\":\"extra_forbidden\"},"
           "{\"loc\":[\"body\",\"items\"],\"msg\":\"List should have at most 3 items after "
           "validation, not 4\",\"type\":\"too_long\"},"
           "{\"loc\":[\"body\",\"tags\",0],\"msg\":\"Input should be a valid string\","
           "\"type\":\"string_type\"},"
           "{\"loc\":[\"body\",\"tags\",2],\"msg\":\"Input should be a valid string\","
           "\"type\":\"string_type\"}]");
    /* Within the length bounds, each item is checked. */
    expect(&order_schema,
           "{\"email\":\"a@b.co\",\"amount\":1,\"currency\":\"USD\","
           "\"items\":[{\"sku\":\"abc\",\"qty\":1,\"price\":3},7,{\"qty\":\"2\"}]}",
           KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"items\",0,\"price\"],\"msg\":\"Extra inputs are not "
           "permitted\",\"type\":\"extra_forbidden\"},"
           "{\"loc\":[\"body\",\"items\",1],\"msg\":\"Input should be a valid dictionary\","
           "\"type\":\"dict_type\"},"
           "{\"loc\":[\"body\",\"items\",2,\"sku\"],\"msg\":\"Field required\","
           "\"type\":\"missing\"},"
           "{\"loc\":[\"body\",\"items\",2,\"qty\"],\"msg\":\"Input should be a valid integer\","
           "\"type\":\"int_type\"}]");
    expect(&order_schema,
           "{\"email\":\"a@b.co\",\"amount\":1,\"currency\":\"USD\",\"items\":[null]}", KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"items\",0],\"msg\":\"Input should be a valid dictionary\","
           "\"type\":\"dict_type\"}]");
}

static void test_null_handling(void **state)
{
    (void)state;
    static const keel_schema_field f[] = {
        {.name = "a", .type = KEEL_SCHEMA_ANY},
        {.name = "b", .type = KEEL_SCHEMA_ANY, .flags = KEEL_SCHEMA_NULLABLE},
        {.name = "c",
         .type = KEEL_SCHEMA_INT,
         .flags = KEEL_SCHEMA_REQUIRED | KEEL_SCHEMA_NULLABLE},
        {.name = "d", .type = KEEL_SCHEMA_ARRAY},
        {.name = "e",
         .type = KEEL_SCHEMA_OBJECT,
         .object = &addr_schema,
         .flags = KEEL_SCHEMA_NULLABLE},
    };
    static const keel_schema s = {f, KEEL_ARRAY_LEN(f), 0};
    expect_ok(&s, "{\"b\":null,\"c\":null,\"e\":null}");
    expect(&s, "{\"a\":null,\"d\":null}", KEEL_EINVAL,
           "[{\"loc\":[\"body\",\"a\"],\"msg\":\"Input should not be null\","
           "\"type\":\"null_not_allowed\"},"
           "{\"loc\":[\"body\",\"c\"],\"msg\":\"Field required\",\"type\":\"missing\"},"
           "{\"loc\":[\"body\",\"d\"],\"msg\":\"Input should be a valid list\","
           "\"type\":\"list_type\"}]");
}

/* One string field with the given format: check good and bad values. */
static void check_format(keel_schema_format fmt, const char *const *good, const char *const *bad,
                         const char *type, const char *msg)
{
    keel_schema_field f = {.name = "v", .type = KEEL_SCHEMA_STRING, .format = fmt};
    keel_schema s = {&f, 1, 0};
    char want[512];
    for (size_t i = 0; good[i] != NULL; i++) {
        json_t *o = json_pack("{s:s}", "v", good[i]);
        char *text = json_dumps(o, JSON_COMPACT);
        expect_ok(&s, text);
        free(text);
        json_decref(o);
    }
    snprintf(want, sizeof(want), "[{\"loc\":[\"body\",\"v\"],\"msg\":\"%s\",\"type\":\"%s\"}]", msg,
             type);
    for (size_t i = 0; bad[i] != NULL; i++) {
        json_t *o = json_pack("{s:s}", "v", bad[i]);
        char *text = json_dumps(o, JSON_COMPACT);
        expect(&s, text, KEEL_EINVAL, want);
        free(text);
        json_decref(o);
    }
}

static void test_formats(void **state)
{
    (void)state;
    static const char *const emails_ok[] = {"a@example.com", "first.last+tag@sub.example.co.uk",
                                            "x_y-z@a-b.io", "o'neil@xn--80ak6aa92e.com", NULL};
    static const char *const emails_bad[] = {
        "",          "plain",    "@example.com", "a@",           "a@b",       "a@@b.com",
        "a@b@c.com", ".a@b.com", "a.@b.com",     "a..b@c.com",   "a b@c.com", "a@-b.com",
        "a@b-.com",  "a@b..com", "a@b.123",      "\u00e9@b.com", "a@b.com.",  NULL};
    check_format(KEEL_SCHEMA_FMT_EMAIL, emails_ok, emails_bad, "value_error",
                 "value is not a valid email address");

    static const char *const uuids_ok[] = {"123e4567-e89b-12d3-a456-426614174000",
                                           "00000000-0000-0000-0000-000000000000", NULL};
    static const char *const uuids_bad[] = {"123e4567e89b12d3a456426614174000",
                                            "123e4567-e89b-12d3-a456-42661417400",
                                            "123e4567-e89b-12d3-a456-42661417400g", "", NULL};
    check_format(KEEL_SCHEMA_FMT_UUID, uuids_ok, uuids_bad, "uuid_parsing",
                 "Input should be a valid UUID");

    static const char *const cur_ok[] = {"EUR", "USD", "JPY", NULL};
    static const char *const cur_bad[] = {"eur", "EU", "EURO", "E1R", "", NULL};
    check_format(KEEL_SCHEMA_FMT_CURRENCY, cur_ok, cur_bad, "value_error",
                 "Input should be a valid ISO 4217 currency code");

    static const char *const dt_ok[] = {"2024-02-29T23:59:60Z", "2024-05-01t10:00:00.123456789z",
                                        "2024-05-01 10:00:00+02:00", "1999-12-31T00:00:00-23:59",
                                        NULL};
    static const char *const dt_bad[] = {"2023-02-29T00:00:00Z",
                                         "2024-05-01T10:00:00",
                                         "2024-05-01",
                                         "2024-13-01T00:00:00Z",
                                         "2024-04-31T00:00:00Z",
                                         "2024-05-01T24:00:00Z",
                                         "2024-05-01T10:00:00.Z",
                                         "2024-05-01T10:00:00+2:00",
                                         "2024-05-01T10:00:00+02:60",
                                         "2024-05-01T10:00:00Zjunk",
                                         "2024-05-01T10:00:00.1234567890Z",
                                         "2024-5-01T10:00:00Z",
                                         NULL};
    check_format(KEEL_SCHEMA_FMT_DATE_TIME, dt_ok, dt_bad, "datetime_parsing",
                 "Input should be a valid datetime");

    static const char *const url_ok[] = {
        "https://example.com", "http://a.b:8080/p?q=1#f", "HTTPS://user:pw@example.com/",
        "http://[::1]:80/x",   "https://localhost",       NULL};
    static const char *const url_bad[] = {"example.com",        "https://",
                                          "https:///path",      "http://exa mple.com",
                                          "http://a.com:99999", "http://a.com:x",
                                          "http://[::1",        "//example.com",
                                          "http://a\\b.com",    NULL};
    check_format(KEEL_SCHEMA_FMT_URL, url_ok, url_bad, "url_parsing",
                 "Input should be a valid URL");
    static const char *const none[] = {NULL};
    static const char *const scheme_bad[] = {"ftp://example.com", "javascript://x", NULL};
    check_format(KEEL_SCHEMA_FMT_URL, none, scheme_bad, "url_scheme",
                 "URL scheme should be 'http' or 'https'");
    char long_url[2100];
    memcpy(long_url, "https://a.com/", 14);
    memset(long_url + 14, 'x', sizeof(long_url) - 15);
    long_url[sizeof(long_url) - 1] = '\0';
    static const char *long_bad[] = {NULL, NULL};
    long_bad[0] = long_url;
    check_format(KEEL_SCHEMA_FMT_URL, none, long_bad, "url_too_long",
                 "URL should have at most 2083 characters");
}

static void test_multiple_errors_and_cap(void **state)
{
    (void)state;
    /* 1000 bad scores: only KEEL_VALIDATE_MAX_ERRORS are reported. */
    keel_buf b;
    keel_buf_init(&b, 1 << 20);
    ASSERT_OK(keel_buf_append_str(&b, "{\"scores\":["));
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(keel_buf_append_str(&b, i ? ",-1" : "-1"));
    ASSERT_OK(keel_buf_append_str(&b, "],\"x\":1}"));
    json_t *v = NULL;
    ASSERT_OK(keel_validate_parse_object(b.ptr, b.len, &v, NULL));
    keel_buf_cleanup(&b);
    json_t *errors = json_array();
    assert_int_equal(KEEL_EINVAL, keel_validate_json(v, &order_schema, "body", errors));
    assert_int_equal(KEEL_VALIDATE_MAX_ERRORS, json_array_size(errors));
    /* The first four are the missing fields, then scores in order. */
    json_t *e4 = json_array_get(errors, 4);
    assert_string_equal("greater_than_equal", json_string_value(json_object_get(e4, "type")));
    assert_int_equal(0, json_integer_value(json_array_get(json_object_get(e4, "loc"), 2)));
    json_t *last = json_array_get(errors, KEEL_VALIDATE_MAX_ERRORS - 1);
    assert_int_equal(95, json_integer_value(json_array_get(json_object_get(last, "loc"), 2)));

    /* A nearly full array gets one more; a full one none, but the result is still EINVAL. */
    json_array_remove(errors, 0);
    assert_int_equal(KEEL_EINVAL, keel_validate_json(v, &order_schema, "body", errors));
    assert_int_equal(KEEL_VALIDATE_MAX_ERRORS, json_array_size(errors));
    last = json_array_get(errors, KEEL_VALIDATE_MAX_ERRORS - 1);
    assert_string_equal("missing", json_string_value(json_object_get(last, "type")));
    json_decref(errors);
    json_decref(v);
}

static const keel_schema_field tree_fields[1];
static const keel_schema tree_schema = {tree_fields, 1, 0};
static const keel_schema_field tree_fields[1] = {
    {.name = "child", .type = KEEL_SCHEMA_OBJECT, .object = &tree_schema},
};

static void test_recursion_cap_and_roots(void **state)
{
    (void)state;
    char json[512];
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "{\"child\":");
    n += (size_t)snprintf(json + n, sizeof(json) - n, "{}");
    for (int i = 0; i < 40; i++)
        json[n++] = '}';
    json[n] = '\0';
    json_t *v = NULL;
    ASSERT_OK(keel_validate_parse_object(json, n, &v, NULL));
    json_t *errors = json_array();
    assert_int_equal(KEEL_EINVAL, keel_validate_json(v, &tree_schema, "body", errors));
    assert_int_equal(1, json_array_size(errors));
    json_t *e = json_array_get(errors, 0);
    assert_string_equal("recursion_loop", json_string_value(json_object_get(e, "type")));
    assert_int_equal(1 + KEEL_VALIDATE_MAX_DEPTH + 1, json_array_size(json_object_get(e, "loc")));
    json_decref(errors);
    json_decref(v);

    /* No root: loc starts at the field; a non-object value is a dict_type at the root. */
    errors = json_array();
    v = json_pack("{s:i}", "email", 1);
    assert_int_equal(KEEL_EINVAL, keel_validate_json(v, &addr_schema, NULL, errors));
    json_decref(v);
    v = json_pack("[i]", 1);
    assert_int_equal(KEEL_EINVAL, keel_validate_json(v, &addr_schema, "query", errors));
    json_decref(v);
    json_t *want =
        json_loads("[{\"loc\":[\"city\"],\"msg\":\"Field required\",\"type\":\"missing\"},"
                   "{\"loc\":[\"email\"],\"msg\":\"Extra inputs are not "
                   "permitted\",\"type\":\"extra_forbidden\"},"
                   "{\"loc\":[\"query\"],\"msg\":\"Input should be a valid "
                   "dictionary\",\"type\":\"dict_type\"}]",
                   0, NULL);
    assert_true(json_equal(want, errors));
    json_decref(want);

    /* Bad arguments append nothing. */
    size_t before = json_array_size(errors);
    v = json_object();
    assert_int_equal(KEEL_EINVAL, keel_validate_json(NULL, &addr_schema, "body", errors));
    assert_int_equal(KEEL_EINVAL, keel_validate_json(v, NULL, "body", errors));
    assert_int_equal(KEEL_EINVAL, keel_validate_json(v, &addr_schema, "body", NULL));
    assert_int_equal(KEEL_EINVAL, keel_validate_json(v, &addr_schema, "body", v));
    assert_int_equal(before, json_array_size(errors));
    json_decref(v);
    json_decref(errors);
}

/* ----------------------------------------------------------------- parsing -- */

static void expect_parse_error(const char *body, size_t len, const char *msg, size_t offset)
{
    json_t *v = (json_t *)(uintptr_t)1;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(KEEL_EPARSE, keel_validate_parse_object(body, len, &v, &d));
    assert_null(v);
    assert_int_equal(KEEL_EPARSE, d.code);
    assert_string_equal(msg, d.msg);
    assert_int_equal(offset, d.offset);
}
#define PARSE_ERR(lit, msg, off) expect_parse_error(lit, sizeof(lit) - 1, msg, off)

static void test_parse_errors(void **state)
{
    (void)state;
    PARSE_ERR("{\"a\":1} x", "invalid JSON at line 1 column 9: end of file expected", 9);
    PARSE_ERR("{\"a\":1,\"a\":2}", "invalid JSON at line 1 column 10: duplicate object key", 10);
    PARSE_ERR("{\"a\":\"\xff\"}", "invalid JSON at line 1 column 6: unable to decode byte 0xff", 6);
    PARSE_ERR("{\"a\":\"\xed\xa0\x80\"}", /* UTF-8-encoded surrogate */
              "invalid JSON at line 1 column 6: unable to decode byte 0xed", 6);
    PARSE_ERR("{\"a\":\"\\ud800\"}", "invalid JSON at line 1 column 13: invalid Unicode '\\uD800'",
              13);
    PARSE_ERR("{\"a\":\"\\u0000\"}",
              "invalid JSON at line 1 column 13: escaped NUL (\\u0000) is not allowed", 13);
    PARSE_ERR("{\"a\":\"x\0y\"}", "invalid JSON at line 1 column 8: NUL byte", 7);
    PARSE_ERR("[1,2]", "invalid JSON at line 1 column 1: top-level value must be an object", 0);
    PARSE_ERR("\"str\"", "invalid JSON at line 1 column 1: top-level value must be an object", 0);
    PARSE_ERR("", "invalid JSON at line 1 column 1: empty body", 0);
    PARSE_ERR("  ", "invalid JSON at line 1 column 2: unexpected token", 2);
    PARSE_ERR("{\"n\":99999999999999999999}", "invalid JSON at line 1 column 25: too big integer",
              25);
    PARSE_ERR("{\n  \"a\": 1,\n  \"b\": }", "invalid JSON at line 3 column 8: unexpected token",
              20);
    PARSE_ERR("{\"a\":1,}", "invalid JSON at line 1 column 8: string or '}' expected", 8);
    /* The reason never quotes the input (jansson's " near '...'" is cut). */
    PARSE_ERR("{\"password\":\"hunter2", "invalid JSON at line 1 column 20: premature end of input",
              20);
    keel_diag d;
    json_t *v;
    assert_int_equal(KEEL_EINVAL, keel_validate_parse_object(NULL, 3, &v, &d));
    assert_int_equal(KEEL_EINVAL, keel_validate_parse_object("{}", 2, NULL, &d));
    assert_int_equal(KEEL_EPARSE, keel_validate_parse_object(NULL, 0, &v, NULL));
}

static void test_parse_depth(void **state)
{
    (void)state;
    char buf[256];
    /* {"a": + 63 '[' + 63 ']' + } = 64 levels: accepted. */
    size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"a\":");
    memset(buf + n, '[', 63);
    memset(buf + n + 63, ']', 63);
    n += 126;
    buf[n++] = '}';
    json_t *v = NULL;
    ASSERT_OK(keel_validate_parse_object(buf, n, &v, NULL));
    json_decref(v);
    /* One more level: rejected at the 65th level (byte 68). */
    n = (size_t)snprintf(buf, sizeof(buf), "{\"a\":");
    memset(buf + n, '[', 64);
    memset(buf + n + 64, ']', 64);
    n += 128;
    buf[n++] = '}';
    expect_parse_error(buf, n, "invalid JSON at line 1 column 69: nesting deeper than 64 levels",
                       68);
    /* Brackets inside strings (even after escaped quotes) do not count. */
    n = (size_t)snprintf(buf, sizeof(buf), "{\"a\\\"[\":\"");
    memset(buf + n, '[', 100);
    n += 100;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\\\\\"}");
    ASSERT_OK(keel_validate_parse_object(buf, n, &v, NULL));
    assert_int_equal(101, json_string_length(json_object_get(v, "a\"[")));
    json_decref(v);
}

static void test_validate_body(void **state)
{
    (void)state;
    json_t *errors = json_array();
    json_t *out = (json_t *)(uintptr_t)1;
    const char *ok = "{" VALID_ORDER "}";
    ASSERT_OK(keel_validate_body(ok, strlen(ok), &order_schema, "body", &out, errors, NULL));
    assert_non_null(out);
    assert_string_equal("EUR", json_string_value(json_object_get(out, "currency")));
    json_decref(out);
    assert_int_equal(0, json_array_size(errors));

    keel_diag d;
    assert_int_equal(KEEL_EPARSE,
                     keel_validate_body("{\"a\":1} x", 9, &order_schema, "body", &out, errors, &d));
    assert_null(out);
    assert_int_equal(KEEL_EPARSE,
                     keel_validate_body("[]", 2, &order_schema, "body", &out, errors, NULL));
    assert_int_equal(KEEL_EINVAL,
                     keel_validate_body("{}", 2, &order_schema, "body", &out, errors, NULL));
    assert_null(out);
    json_t *want = json_loads(
        "[{\"loc\":[\"body\",9],\"msg\":\"JSON decode error\",\"type\":\"json_invalid\","
        "\"ctx\":{\"error\":\"end of file expected\"}},"
        "{\"loc\":[\"body\"],\"msg\":\"Input should be a valid "
        "dictionary\",\"type\":\"dict_type\"},"
        "{\"loc\":[\"body\",\"email\"],\"msg\":\"Field required\",\"type\":\"missing\"},"
        "{\"loc\":[\"body\",\"amount\"],\"msg\":\"Field required\",\"type\":\"missing\"},"
        "{\"loc\":[\"body\",\"currency\"],\"msg\":\"Field required\",\"type\":\"missing\"},"
        "{\"loc\":[\"body\",\"items\"],\"msg\":\"Field required\",\"type\":\"missing\"}]",
        0, NULL);
    if (!json_equal(want, errors)) {
        char *got = json_dumps(errors, JSON_COMPACT);
        print_error("got %s\n", got);
        free(got);
    }
    assert_true(json_equal(want, errors));
    json_decref(want);
    assert_int_equal(KEEL_EINVAL, keel_validate_body("{}", 2, NULL, "body", &out, errors, NULL));
    json_decref(errors);
}

/* ---------------------------------------------------- allocation failures -- */

static long alloc_budget = -1;

static void *failing_malloc(size_t n)
{
    if (alloc_budget == 0)
        return NULL;
    if (alloc_budget > 0)
        alloc_budget--;
    return malloc(n);
}

/* jansson's allocations fail after N successes, for every N until the call succeeds:
 * each run must end in KEEL_ENOMEM or the normal result, without leaks (ASan). */
static void test_oom(void **state)
{
    (void)state;
    const char *body = "{\"email\":\"bad\",\"amount\":0,\"currency\":\"usd\",\"items\":"
                       "[{\"sku\":\"a\",\"qty\":0,\"x\":1}],\"zz\":[1,2,{\"q\":null}]}";
    int completed = 0;
    for (long n = 0; n < 2000 && !completed; n++) {
        json_set_alloc_funcs(failing_malloc, free);
        alloc_budget = n;
        json_t *errors = json_array();
        json_t *out = NULL;
        keel_err rc = KEEL_ENOMEM;
        if (errors != NULL)
            rc = keel_validate_body(body, strlen(body), &order_schema, "body", &out, errors, NULL);
        alloc_budget = -1;
        json_set_alloc_funcs(malloc, free);
        assert_true(rc == KEEL_ENOMEM || rc == KEEL_EINVAL);
        assert_null(out);
        if (rc == KEEL_EINVAL && json_array_size(errors) == 7)
            completed = 1;
        json_decref(errors);
    }
    assert_true(completed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents),
        cmocka_unit_test(test_missing_and_extra),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_ranges_and_lengths),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_nested_locations),
        cmocka_unit_test(test_null_handling),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_multiple_errors_and_cap),
        cmocka_unit_test(test_recursion_cap_and_roots),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_depth),
        cmocka_unit_test(test_validate_body),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
