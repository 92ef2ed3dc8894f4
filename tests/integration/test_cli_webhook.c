/* Integration: `keel webhook sign|verify` as a user runs it, with the golden vector of
 * reference.md section 2.  KEEL_TEST_CLI_BIN in the environment overrides the binary. */
#define _GNU_SOURCE 1
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET "whsec_test_secret"
#define OLD_SECRET "whsec_old_secret"
#define BODY "{\"id\":\"evt_test_webhook\",\"object\":\"event\"}"
#define SIG "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
#define OLD_SIG "e016b64cc4263f90e0336f3975e8d4ac9cc185935edc3ebdd405db64ad0bb1c5"
#define HEADER "t=1700000000,v1=" SIG
#define ROTATION "t=1700000000,v1=" OLD_SIG ",v1=" SIG

static char body_path[512], nl_path[512];

/* Run `keel args...` with optional stdin and extra environment; WEBHOOK_SECRET is removed
 * from the inherited environment unless env sets it. */
static int keel_in(char *out, size_t cap, const char *const *args, const char *in,
                   const char *const *env)
{
    const char *bin = getenv("KEEL_TEST_CLI_BIN") ? getenv("KEEL_TEST_CLI_BIN") : KEEL_TEST_CLI;
    const char *argv[24] = {"keel"};
    for (size_t i = 0; args[i] && i < 22; i++)
        argv[i + 1] = args[i];
    static const char *const unset[] = {"WEBHOOK_SECRET", NULL};
    keel_test_run_opts o = {.unset = unset, .env = env, .in = in, .in_len = in ? strlen(in) : 0};
    return keel_test_run(bin, argv, &o, out, cap);
}

static int keel(char *out, size_t cap, const char *const *args)
{
    return keel_in(out, cap, args, NULL, NULL);
}

static void write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(strlen(data), fwrite(data, 1, strlen(data), f));
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(body_path, sizeof(body_path), "%s/webhook_body_%ld.json", KEEL_TEST_TMP,
             (long)getpid());
    snprintf(nl_path, sizeof(nl_path), "%s/webhook_body_nl_%ld.json", KEEL_TEST_TMP,
             (long)getpid());
    write_file(body_path, BODY);
    write_file(nl_path, BODY "\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(body_path);
    unlink(nl_path);
    return 0;
}

static void test_sign_golden(void **state)
{
    (void)state;
    char out[4096];
    const char *a[] = {"webhook", "sign", "--secret", SECRET, "--timestamp", "1700000000",
                       body_path, NULL};
    assert_int_equal(0, keel(out, sizeof(out), a));
    assert_string_equal(HEADER "\n", out);
    /* stdin, explicitly and implicitly */
    const char *b[] = {"webhook", "sign", "--secret", SECRET, "--timestamp", "1700000000", "-",
                       NULL};
    assert_int_equal(0, keel_in(out, sizeof(out), b, BODY, NULL));
    assert_string_equal(HEADER "\n", out);
    const char *c[] = {"webhook", "sign", "--secret", OLD_SECRET "," SECRET, "--timestamp",
                       "1700000000", NULL};
    assert_int_equal(0, keel_in(out, sizeof(out), c, BODY, NULL));
    assert_string_equal(ROTATION "\n", out);
    /* The secret from the environment. */
    const char *env[] = {"WEBHOOK_SECRET=" SECRET, NULL};
    const char *d[] = {"webhook", "sign", "--timestamp", "1700000000", body_path, NULL};
    assert_int_equal(0, keel_in(out, sizeof(out), d, NULL, env));
    assert_string_equal(HEADER "\n", out);
    /* The trailing newline is part of the body. */
    const char *e[] = {"webhook", "sign", "--secret", SECRET, "--timestamp", "1700000000",
                       nl_path, NULL};
    assert_int_equal(0, keel(out, sizeof(out), e));
    assert_string_not_equal(HEADER "\n", out);
    assert_int_equal(0, strncmp(out, "t=1700000000,v1=", 16));
    assert_int_equal(strlen(HEADER "\n"), strlen(out));
    /* Without --timestamp: the current time. */
    const char *f[] = {"webhook", "sign", "--secret", SECRET, body_path, NULL};
    assert_int_equal(0, keel(out, sizeof(out), f));
    assert_int_equal(0, strncmp(out, "t=1", 3));
    out[strcspn(out, "\n")] = '\0';
    const char *g[] = {"webhook", "verify", "--secret", SECRET, "--header", out, body_path, NULL};
    char out2[4096];
    assert_int_equal(0, keel(out2, sizeof(out2), g));
    assert_string_equal("valid\n", out2);
}

static void test_verify(void **state)
{
    (void)state;
    char out[4096];
    const char *ok[] = {"webhook", "verify", "--secret", SECRET, "--header", HEADER, "--now",
                        "1700000300", body_path, NULL};
    assert_int_equal(0, keel(out, sizeof(out), ok));
    assert_string_equal("valid\n", out);
    const char *old[] = {"webhook", "verify", "--secret", SECRET, "--header", HEADER, "--now",
                         "1700000301", body_path, NULL};
    assert_int_equal(1, keel(out, sizeof(out), old));
    assert_string_equal("keel webhook verify: timestamp_out_of_tolerance: timestamp is 301 s "
                        "old; tolerance is 300 s\n",
                        out);
    const char *future[] = {"webhook", "verify", "--secret", SECRET, "--header", HEADER, "--now",
                            "1699999699", body_path, NULL};
    assert_int_equal(1, keel(out, sizeof(out), future));
    assert_non_null(strstr(out, "in the future"));
    const char *tol0[] = {"webhook", "verify", "--secret", SECRET, "--header", HEADER,
                          "--tolerance", "0", "--now", "1", body_path, NULL};
    assert_int_equal(0, keel(out, sizeof(out), tol0));
    const char *tol10[] = {"webhook", "verify", "--secret", SECRET, "--header", HEADER,
                           "--tolerance", "10", "--now", "1700000011", body_path, NULL};
    assert_int_equal(1, keel(out, sizeof(out), tol10));

    /* Rotation: the two-signature header verifies with either secret. */
    const char *r1[] = {"webhook", "verify", "--secret", OLD_SECRET, "--header", ROTATION,
                        "--now", "1700000000", body_path, NULL};
    assert_int_equal(0, keel(out, sizeof(out), r1));
    const char *r2[] = {"webhook", "verify", "--secret", "whsec_x," SECRET, "--header", HEADER,
                        "--now", "1700000000", body_path, NULL};
    assert_int_equal(0, keel(out, sizeof(out), r2));
    const char *env[] = {"WEBHOOK_SECRET=" OLD_SECRET "," SECRET, NULL};
    const char *r3[] = {"webhook", "verify", "--header", HEADER, "--now", "1700000000", NULL};
    assert_int_equal(0, keel_in(out, sizeof(out), r3, BODY, env));
    assert_string_equal("valid\n", out);

    /* A different body (one trailing newline) is rejected. */
    const char *nl[] = {"webhook", "verify", "--secret", SECRET, "--header", HEADER, "--now",
                        "1700000000", nl_path, NULL};
    assert_int_equal(1, keel(out, sizeof(out), nl));
    assert_string_equal("keel webhook verify: signature_mismatch: no v1 signature matches the "
                        "payload (1 signature, 1 secret tried)\n",
                        out);
    assert_null(strstr(out, SECRET));
    const char *mal[] = {"webhook", "verify", "--secret", SECRET, "--header", "t=abc,v1=x",
                         "--now", "1700000000", body_path, NULL};
    assert_int_equal(1, keel(out, sizeof(out), mal));
    assert_non_null(strstr(out, "malformed_header"));
    const char *nov1[] = {"webhook", "verify", "--secret", SECRET, "--header", "t=1700000000",
                          "--now", "1700000000", body_path, NULL};
    assert_int_equal(1, keel(out, sizeof(out), nov1));
    assert_non_null(strstr(out, "no_signature"));
    const char *empty[] = {"webhook", "verify", "--secret", SECRET, "--header", "", body_path,
                           NULL};
    assert_int_equal(1, keel(out, sizeof(out), empty));
    assert_non_null(strstr(out, "missing_header"));
}

static void test_usage(void **state)
{
    (void)state;
    char out[4096];
    const char *help[] = {"webhook", "--help", NULL};
    assert_int_equal(0, keel(out, sizeof(out), help));
    assert_non_null(strstr(out, "usage: keel webhook sign"));
    assert_non_null(strstr(out, "WEBHOOK_SECRET"));
    const char *shelp[] = {"webhook", "sign", "--help", NULL};
    assert_int_equal(0, keel(out, sizeof(out), shelp));
    const char *vhelp[] = {"webhook", "verify", "--help", NULL};
    assert_int_equal(0, keel(out, sizeof(out), vhelp));
    assert_non_null(strstr(out, "Exit status"));
    const char *none[] = {"webhook", NULL};
    assert_int_equal(2, keel(out, sizeof(out), none));
    const char *bad[] = {"webhook", "frob", NULL};
    assert_int_equal(2, keel(out, sizeof(out), bad));
    const char *nosecret[] = {"webhook", "sign", body_path, NULL};
    assert_int_equal(2, keel(out, sizeof(out), nosecret));
    assert_non_null(strstr(out, "missing --secret"));
    const char *noheader[] = {"webhook", "verify", "--secret", SECRET, body_path, NULL};
    assert_int_equal(2, keel(out, sizeof(out), noheader));
    assert_non_null(strstr(out, "missing --header"));
    const char *nofile[] = {"webhook", "verify", "--secret", SECRET, "--header", HEADER,
                            "/nonexistent/body.json", NULL};
    assert_int_equal(2, keel(out, sizeof(out), nofile));
    assert_non_null(strstr(out, "cannot read the body"));
    const char *badt[] = {"webhook", "sign", "--secret", SECRET, "--timestamp", "-5", body_path,
                          NULL};
    assert_int_equal(2, keel(out, sizeof(out), badt));
    assert_null(strstr(out, SECRET));
    const char *badtol[] = {"webhook", "verify", "--secret", SECRET, "--header", HEADER,
                            "--tolerance", "abc", body_path, NULL};
    assert_int_equal(2, keel(out, sizeof(out), badtol));
    assert_null(strstr(out, SECRET));
    const char *badsecret[] = {"webhook", "verify", "--secret", SECRET ",,x", "--header", HEADER,
                               body_path, NULL};
    assert_int_equal(2, keel(out, sizeof(out), badsecret));
    assert_null(strstr(out, SECRET));
    const char *twofiles[] = {"webhook", "sign", "--secret", SECRET, body_path, body_path, NULL};
    assert_int_equal(2, keel(out, sizeof(out), twofiles));
    const char *dangling[] = {"webhook", "sign", "--secret", NULL};
    assert_int_equal(2, keel(out, sizeof(out), dangling));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_golden),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
