/* Tests for src/core/base64.c: RFC 4648 section 10 vectors (unpadded), both alphabets, and
 * the strict decoder's refusals. */
#include "test.h"

#include <string.h>

#include "keel_int.h"

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const want[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char out[16];
        unsigned char back[16];
        size_t n = strlen(in[i]);
        assert_int_equal(strlen(want[i]), keel__b64_encoded_len(n));
        assert_int_equal(strlen(want[i]), keel__b64_encode(0, (const unsigned char *)in[i], n, out));
        assert_string_equal(want[i], out);
        assert_int_equal((long)n, keel__b64_decode(0, out, strlen(out), back));
        assert_memory_equal(in[i], back, n);
    }
}

static void test_alphabets(void **state)
{
    (void)state;
    const unsigned char bytes[] = {0xfb, 0xff, 0xbf};
    char out[8];
    keel__b64_encode(0, bytes, 3, out);
    assert_string_equal("+/+/", out);
    keel__b64_encode(1, bytes, 3, out);
    assert_string_equal("-_-_", out);
    unsigned char back[8];
    assert_int_equal(-1, keel__b64_decode(1, "+/+/", 4, back)); /* std chars in url mode */
    assert_int_equal(-1, keel__b64_decode(0, "-_-_", 4, back));
    assert_int_equal(3, keel__b64_decode(1, "-_-_", 4, back));
    assert_memory_equal(bytes, back, 3);
}

static void test_strict_decode(void **state)
{
    (void)state;
    unsigned char out[16];
    assert_int_equal(-2, keel__b64_decode(0, "Zm9vY", 5, out)); /* impossible length */
    assert_int_equal(-3, keel__b64_decode(0, "Zh", 2, out));    /* 'h' leaves non-zero bits */
    assert_int_equal(-1, keel__b64_decode(0, "Zg==", 4, out));  /* no padding accepted */
    assert_int_equal(-1, keel__b64_decode(0, "Zm 9", 4, out));  /* no whitespace */
    assert_int_equal(62, keel__b64_value('+', 0));
    assert_int_equal(-1, keel__b64_value('+', 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_alphabets),
        cmocka_unit_test(test_strict_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
