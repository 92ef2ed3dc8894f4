/* Integration: `keel redact [--stats] [FILE...]` as a user runs it.  KEEL_TEST_CLI_BIN in the
 * environment overrides the binary under test. */
#define _GNU_SOURCE 1
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keel/redact.h>

#define SEED_IN "Customer support note: card 4111-1111-1111-1111 cvv: 999 was used\n"
#define SEED_OUT "Customer support note: card ************1111 cvv: [REDACTED_CVV] was used\n"

/* Run `keel args...` with in (n bytes, may be NULL) on stdin; stdout+stderr into out. */
static int keel(const char *in, size_t n, char *out, size_t cap, const char *const *args)
{
    const char *bin = getenv("KEEL_TEST_CLI_BIN") ? getenv("KEEL_TEST_CLI_BIN") : KEEL_TEST_CLI;
    const char *argv[16] = {"keel"};
    for (size_t i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    keel_test_run_opts o = {.in = in, .in_len = n};
    return keel_test_run(bin, argv, &o, out, cap);
}

static void tmp_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/redact_%ld_%s", KEEL_TEST_TMP, (long)getpid(), name);
}

static void write_file(const char *path, const char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(n, fwrite(p, 1, n, f));
    assert_int_equal(0, fclose(f));
}

static void test_stdin(void **state)
{
    (void)state;
    char out[4096];
    const char *a[] = {"redact", NULL};
    assert_int_equal(0, keel(SEED_IN, strlen(SEED_IN), out, sizeof out, a));
    assert_string_equal(SEED_OUT, out);
    const char *dash[] = {"redact", "-", NULL};
    assert_int_equal(0, keel(SEED_IN, strlen(SEED_IN), out, sizeof out, dash));
    assert_string_equal(SEED_OUT, out);
    /* clean text and no trailing newline pass through byte for byte */
    static const char clean[] = "order 1234567890123 at 2024-01-15T12:30:45Z, ending 4242";
    assert_int_equal(0, keel(clean, strlen(clean), out, sizeof out, a));
    assert_string_equal(clean, out);
    assert_int_equal(0, keel(NULL, 0, out, sizeof out, a));
    assert_string_equal("", out);
}

static void test_files_and_stats(void **state)
{
    (void)state;
    char p1[512], p2[512], out[4096];
    tmp_path(p1, sizeof p1, "a.log");
    tmp_path(p2, sizeof p2, "b.json");
    static const char a[] = "{\"track\":\";4111111111111111=28121010000000000000?\"}\n";
    static const char b[] = "pan 3782 822463 10005\n" SEED_IN;
    write_file(p1, a, sizeof a - 1);
    write_file(p2, b, sizeof b - 1);
    const char *args[] = {"redact", "--stats", p1, p2, NULL};
    assert_int_equal(0, keel(NULL, 0, out, sizeof out, args));
    assert_string_equal("{\"track\":\"[REDACTED_TRACK]\"}\n"
                        "pan ***********0005\n" SEED_OUT
                        "keel redact: pans=2 cvvs=1 tracks=1\n",
                        out);
    /* files are independent streams: a number split across two files is not joined */
    write_file(p1, "4111 1111", 9);
    write_file(p2, " 1111 1111\n", 11);
    const char *split[] = {"redact", p1, p2, NULL};
    assert_int_equal(0, keel(NULL, 0, out, sizeof out, split));
    assert_string_equal("4111 1111 1111 1111\n", out);
    /* stdin among files */
    const char *mixed[] = {"redact", "--", p1, "-", NULL};
    assert_int_equal(0, keel(" 1111 1111 cid=123", 18, out, sizeof out, mixed));
    assert_string_equal("4111 1111 1111 1111 cid=[REDACTED_CVV]", out);
    unlink(p1);
    unlink(p2);
}

static void test_usage_and_errors(void **state)
{
    (void)state;
    char out[8192], p1[512], missing[512];
    const char *help[] = {"redact", "--help", NULL};
    assert_int_equal(0, keel(NULL, 0, out, sizeof out, help));
    assert_non_null(strstr(out, "usage: keel redact [--stats] [FILE...]"));
    const char *bad[] = {"redact", "--bogus", NULL};
    assert_int_equal(2, keel(NULL, 0, out, sizeof out, bad));
    assert_non_null(strstr(out, "keel redact: unknown option '--bogus'"));
    assert_non_null(strstr(out, "usage: keel redact"));
    /* an unreadable file: named in the message, exit 2, the other files still done */
    tmp_path(p1, sizeof p1, "ok.log");
    tmp_path(missing, sizeof missing, "missing.log");
    write_file(p1, "cvv=123\n", 8);
    const char *args[] = {"redact", missing, p1, NULL};
    assert_int_equal(2, keel(NULL, 0, out, sizeof out, args));
    char want[1200];
    snprintf(want, sizeof want, "keel redact: %s: No such file or directory\ncvv=[REDACTED_CVV]\n",
             missing);
    assert_string_equal(want, out);
    /* a directory cannot be read either */
    const char *dir[] = {"redact", KEEL_TEST_TMP, NULL};
    assert_int_equal(2, keel(NULL, 0, out, sizeof out, dir));
    assert_non_null(strstr(out, KEEL_TEST_TMP));
    unlink(p1);
}

/* A file of several MiB, with PANs, CVVs and tracks straddling the 64 KiB read boundaries:
 * the output is exactly the one-shot redaction. */
static void test_big_file_matches_one_shot(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "{\"ts\":\"2024-01-15T12:30:45.123Z\",\"level\":\"INFO\",\"msg\":\"charge ok\"}\n",
        "{\"msg\":\"card 4111 1111 1111 1111 cvv: 123\"}\n",
        "swipe %B4111111111111111^DOE/JOHN^28121010000000000000000000000000? done\n",
        ";5555555555554444=28121010000000000000?\n",
        "order 1234567890123 amount 1234.56\n",
    };
    size_t cap = 5u << 20, n = 0;
    char *in = malloc(cap);
    assert_non_null(in);
    for (unsigned k = 1; n + 200 < cap; k = k * 5 + 1) {
        const char *l = lines[k % (sizeof lines / sizeof lines[0])];
        size_t m = strlen(l);
        memcpy(in + n, l, m);
        n += m;
    }
    keel_buf want;
    keel_buf_init(&want, cap * 2);
    keel_redact_stats st;
    ASSERT_OK(keel_redact(in, n, &want, &st));
    assert_true(st.pans > 1000);
    char path[512];
    tmp_path(path, sizeof path, "big.log");
    write_file(path, in, n);
    size_t ocap = want.len + 4096;
    char *out = malloc(ocap);
    assert_non_null(out);
    const char *args[] = {"redact", "--stats", path, NULL};
    assert_int_equal(0, keel(NULL, 0, out, ocap, args));
    assert_memory_equal(want.ptr, out, want.len);
    char tail[128];
    snprintf(tail, sizeof tail, "keel redact: pans=%llu cvvs=%llu tracks=%llu\n",
             (unsigned long long)st.pans, (unsigned long long)st.cvvs,
             (unsigned long long)st.tracks);
    assert_string_equal(tail, out + want.len);
    unlink(path);
    free(out);
    free(in);
    keel_buf_cleanup(&want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stdin),
        cmocka_unit_test(test_files_and_stats),
        cmocka_unit_test(test_usage_and_errors),
        cmocka_unit_test(test_big_file_matches_one_shot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
