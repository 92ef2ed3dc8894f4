/* Integration: the keel command-line tool as a user runs it. */
#define _GNU_SOURCE 1
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run `keel args...` in dir, without the environment variables that would pick a database. */
static int keel(const char *dir, char *out, size_t cap, const char *const *args)
{
    const char *argv[16] = {"keel"};
    for (size_t i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    static const char *const unset[] = {"DATABASE_URL", "KEELD_MIGRATIONS_DIR", NULL};
    keel_test_run_opts o = {.dir = dir, .unset = unset};
    return keel_test_run(KEEL_TEST_CLI, argv, &o, out, cap);
}

static void test_help_and_version(void **state)
{
    (void)state;
    char out[4096];
    const char *help[] = {"--help", NULL};
    assert_int_equal(0, keel("/", out, sizeof(out), help));
    assert_non_null(strstr(out, "migrate"));
    const char *version[] = {"version", NULL};
    assert_int_equal(0, keel("/", out, sizeof(out), version));
    assert_non_null(strstr(out, keel_version()));
    const char *unknown[] = {"frobnicate", NULL};
    assert_int_equal(2, keel("/", out, sizeof(out), unknown));
    assert_non_null(strstr(out, "unknown command 'frobnicate'"));
    const char *none[] = {NULL};
    assert_int_equal(2, keel("/", out, sizeof(out), none));
}

static void test_migrate(void **state)
{
    (void)state;
    char dir[256], out[4096];
    snprintf(dir, sizeof(dir), "%s/cli.XXXXXX", KEEL_TEST_TMP);
    assert_non_null(mkdtemp(dir));
    const char *status[] = {"migrate", "--status", NULL};
    assert_int_equal(0, keel(dir, out, sizeof(out), status));
    assert_string_equal("schema version 0\n", out);
    const char *apply[] = {"migrate", NULL};
    assert_int_equal(0, keel(dir, out, sizeof(out), apply));
    assert_string_equal("schema version 4\n", out);
    assert_int_equal(0, keel(dir, out, sizeof(out), apply)); /* idempotent */
    assert_string_equal("schema version 4\n", out);
    assert_int_equal(0, access("var/keel.db", F_OK) == 0 || chdir(dir) == 0 ? 0 : 1);
    const char *bad_url[] = {"migrate", "--database-url", "mysql://u:pw123@h/db", NULL};
    assert_int_equal(2, keel(dir, out, sizeof(out), bad_url));
    assert_non_null(strstr(out, "unsupported scheme 'mysql'"));
    assert_null(strstr(out, "pw123"));
    const char *bad_opt[] = {"migrate", "--nope", NULL};
    assert_int_equal(2, keel(dir, out, sizeof(out), bad_opt));
    assert_non_null(strstr(out, "unknown or incomplete option '--nope'"));
    const char *missing_arg[] = {"migrate", "--dir", NULL};
    assert_int_equal(2, keel(dir, out, sizeof(out), missing_arg));
    const char *missing_dir[] = {"migrate", "--dir", "/nonexistent/keel-migrations", NULL};
    assert_int_equal(1, keel(dir, out, sizeof(out), missing_dir));
    assert_non_null(strstr(out, "/nonexistent/keel-migrations"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_migrate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
