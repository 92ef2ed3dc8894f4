/* Tests for src/resilience/policy.c: clocks, the call context, outcome classification. */
#include "test.h"

#include <keel/policy.h>

static void test_manual_clock(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1000);
    assert_int_equal(1000, keel_clock_now_ms(&mc.clock));
    keel_manual_clock_advance(&mc, 250);
    assert_int_equal(1250, keel_clock_now_ms(&mc.clock));
    keel_clock_sleep_ms(&mc.clock, 40);
    keel_clock_sleep_ms(&mc.clock, 60);
    assert_int_equal(1350, keel_clock_now_ms(&mc.clock));
    assert_int_equal(100, mc.slept_total);
    assert_int_equal(2, mc.sleeps);
}

static void test_system_clock(void **state)
{
    (void)state;
    uint64_t a = keel_clock_now_ms(NULL), b = keel_clock_now_ms(keel_clock_system());
    assert_true(b >= a);
    keel_clock_sleep_ms(NULL, 0);
}

static void test_call_and_classification(void **state)
{
    (void)state;
    keel_call c;
    keel_call_init(&c, NULL, &c);
    assert_string_equal("call", c.name);
    assert_ptr_equal(&c, c.user);
    assert_int_equal(-1, c.retriable);
    assert_int_equal(sizeof(c), c.size);
    assert_false(keel_policy_is_transient(&c, KEEL_OK));
    assert_true(keel_policy_is_transient(&c, KEEL_ETIMEOUT));
    assert_true(keel_policy_is_transient(&c, KEEL_EIO));
    assert_true(keel_policy_is_transient(&c, KEEL_EBUSY));
    assert_true(keel_policy_is_transient(&c, KEEL_EAGAIN));
    assert_false(keel_policy_is_transient(&c, KEEL_EINVAL));
    assert_false(keel_policy_is_transient(&c, KEEL_EEXIST));
    c.retriable = 1; /* the terminal knows better (a payment error marked retriable) */
    assert_true(keel_policy_is_transient(&c, KEEL_EINVAL));
    c.retriable = 0;
    assert_false(keel_policy_is_transient(&c, KEEL_ETIMEOUT));
    assert_false(keel_policy_is_transient(&c, KEEL_OK));
    assert_true(keel_policy_is_transient(NULL, KEEL_EIO));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manual_clock),
        cmocka_unit_test(test_system_clock),
        cmocka_unit_test(test_call_and_classification),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
