/* Integration: `keel password hash|verify` as a user runs it (password on stdin). */
#define _GNU_SOURCE 1
#include "test.h"

#include <keel/password.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* An argon2-cffi 21.1 hash of "hunter2" (m=19456, t=2, p=1), from tests/data/password. */
#define CFFI_HUNTER2                                                                               \
    "$argon2id$v=19$m=19456,t=2,p=1$970hLEBLIf+Bi+RV4oT2gQ$52Dz/N8tY2oYNciso9m0bLWkmVO8nXa2CEQ8Jjmg" \
    "b+0"

/* Run `keel args...` with in (n bytes) on stdin; stdout+stderr into out. */
static int keel(const char *in, size_t n, char *out, size_t cap, const char *const *args)
{
    const char *argv[16] = {"keel"};
    for (size_t i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    keel_test_run_opts o = {.in = in, .in_len = n};
    return keel_test_run(KEEL_TEST_CLI, argv, &o, out, cap);
}

#define IN(s) (s), (sizeof(s) - 1)

static void test_hash_then_verify(void **state)
{
    (void)state;
    char out[4096], hash[512];
    const char *h[] = {"password", "hash", NULL};
    assert_int_equal(0, keel(IN("hunter2\n"), out, sizeof(out), h));
    const char *prefix = "$argon2id$v=19$m=19456,t=2,p=1$";
    assert_int_equal(0, strncmp(out, prefix, strlen(prefix)));
    size_t len = strlen(out);
    assert_true(len > 1 && out[len - 1] == '\n');
    assert_null(strchr(out, ' '));
    out[len - 1] = '\0';
    assert_true(len < sizeof(hash));
    memcpy(hash, out, len);

    const char *v[] = {"password", "verify", hash, NULL};
    assert_int_equal(0, keel(IN("hunter2\n"), out, sizeof(out), v));
    assert_string_equal("", out);
    assert_int_equal(0, keel(IN("hunter2\r\n"), out, sizeof(out), v));
    assert_int_equal(0, keel(IN("hunter2"), out, sizeof(out), v));
    assert_int_equal(1, keel(IN("hunter3\n"), out, sizeof(out), v));
    assert_string_equal("keel password verify: password does not match\n", out);
    assert_int_equal(1, keel(IN("hunter2\n\n"), out, sizeof(out), v)); /* only one newline goes */

    /* custom parameters */
    const char *hc[] = {"password", "hash", "--memory-kib", "64", "--iterations", "1",
                        "--parallelism", "2", NULL};
    assert_int_equal(0, keel(IN("pw"), out, sizeof(out), hc));
    assert_int_equal(0, strncmp(out, "$argon2id$v=19$m=64,t=1,p=2$", 28));
}

static void test_verify_argon2_cffi_hash(void **state)
{
    (void)state;
    char out[4096];
    const char *v[] = {"password", "verify", CFFI_HUNTER2, NULL};
    assert_int_equal(0, keel(IN("hunter2\n"), out, sizeof(out), v));
    assert_int_equal(1, keel(IN("Hunter2\n"), out, sizeof(out), v));
    assert_null(strstr(out, "unter2")); /* the password never appears in output */
}

static void test_malformed_hash(void **state)
{
    (void)state;
    char out[4096];
    const char *missing[] = {"password", "verify", "$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JX9B4EA85$",
                             NULL};
    assert_int_equal(2, keel(IN("x\n"), out, sizeof(out), missing));
    assert_string_equal("keel password verify: malformed hash: hash: missing (at offset 45)\n", out);
    const char *caps[] = {"password", "verify",
                          "$argon2id$v=19$m=4194304,t=1,p=2$0A3Y7m6JX9B4EA85$"
                          "Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
                          NULL};
    assert_int_equal(2, keel(IN("x\n"), out, sizeof(out), caps));
    assert_non_null(strstr(out, "m: 4194304 outside 16..1048576 KiB"));
    const char *d[] = {"password", "verify",
                       "$argon2d$v=19$m=1024,t=2,p=1$gU2MZj4q/lVr50ZYnD/FYA$Z8E/OVTZVIjnZe0AVRZEfg",
                       NULL};
    assert_int_equal(2, keel(IN("data-dep\n"), out, sizeof(out), d));
    assert_non_null(strstr(out, "argon2d is not accepted"));
    const char *junk[] = {"password", "verify", "not-a-hash", NULL};
    assert_int_equal(2, keel(IN("x\n"), out, sizeof(out), junk));
    assert_non_null(strstr(out, "no leading '$'"));
}

static void test_usage_errors(void **state)
{
    (void)state;
    char out[8192];
    const char *none[] = {"password", NULL};
    assert_int_equal(2, keel(IN(""), out, sizeof(out), none));
    assert_non_null(strstr(out, "usage: keel password hash"));
    const char *help[] = {"password", "--help", NULL};
    assert_int_equal(0, keel(IN(""), out, sizeof(out), help));
    assert_non_null(strstr(out, "keel password verify HASH"));
    const char *frob[] = {"password", "frob", NULL};
    assert_int_equal(2, keel(IN(""), out, sizeof(out), frob));
    assert_non_null(strstr(out, "unknown subcommand 'frob'"));
    const char *noarg[] = {"password", "verify", NULL};
    assert_int_equal(2, keel(IN("x"), out, sizeof(out), noarg));
    assert_non_null(strstr(out, "expected exactly one argument"));
    const char *badnum[] = {"password", "hash", "--memory-kib", "lots", NULL};
    assert_int_equal(2, keel(IN("x"), out, sizeof(out), badnum));
    assert_non_null(strstr(out, "--memory-kib: not a number: 'lots'"));
    const char *range[] = {"password", "hash", "--iterations", "21", NULL};
    assert_int_equal(2, keel(IN("x"), out, sizeof(out), range));
    assert_non_null(strstr(out, "parameters out of range"));
    const char *opt[] = {"password", "hash", "--salt", NULL};
    assert_int_equal(2, keel(IN("x"), out, sizeof(out), opt));
    assert_non_null(strstr(out, "unknown or incomplete option '--salt'"));
    const char *h[] = {"password", "hash", NULL};
    assert_int_equal(2, keel(IN("\n"), out, sizeof(out), h));
    assert_non_null(strstr(out, "empty password"));
    static char big[KEEL_PASSWORD_MAX_LEN + 2];
    memset(big, 'a', sizeof(big));
    assert_int_equal(2, keel(big, sizeof(big), out, sizeof(out), h));
    assert_non_null(strstr(out, "password longer than 4096 bytes"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_then_verify),
        cmocka_unit_test(test_verify_argon2_cffi_hash),
        cmocka_unit_test(test_malformed_hash),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
