/* Integration: `keel reconcile` as a user runs it, on CSV files written to a private
 * directory under KEEL_TEST_TMP.  KEEL_TEST_CLI_BIN in the environment overrides the binary. */
#define _GNU_SOURCE 1
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

static char dir[512];

static const char *bin(void)
{
    return getenv("KEEL_TEST_CLI_BIN") ? getenv("KEEL_TEST_CLI_BIN") : KEEL_TEST_CLI;
}

/* Run `keel reconcile args...` in dir with optional stdin; stdout+stderr into out. */
static int recon(char *out, size_t cap, const char *in, const char *const *args)
{
    const char *argv[24] = {"keel", "reconcile"};
    for (size_t i = 0; args[i] && i < 21; i++)
        argv[i + 2] = args[i];
    keel_test_run_opts o = {.dir = dir, .in = in, .in_len = in ? strlen(in) : 0};
    return keel_test_run(bin(), argv, &o, out, cap);
}

static void put(const char *name, const char *text)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(0, fclose(f));
}

static int setup(void **state)
{
    (void)state;
    mkdir(KEEL_TEST_TMP, 0700);
    snprintf(dir, sizeof(dir), "%s/recon_cli_%d", KEEL_TEST_TMP, (int)getpid());
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    put("in.csv", "id,amount,currency,status\n"
                  "txn_1,12.34,USD,settled\n"
                  "txn_2,5.00,USD,settled\n"
                  "txn_4,7,JPY,settled\n"
                  "txn_5,1.00,EUR,settled\n");
    put("gw.csv", "ID,Status,Amount,Currency,Fee\r\n"
                  "txn_2,refunded,5,usd,0.30\r\n"
                  "txn_3,settled,12.34,USD,0.30\r\n"
                  "txn_4,settled,7,JPY,0\r\n"
                  "txn_5,failed,1.00,GBP,0\r\n");
    put("clean.csv", "id,amount,currency,status\ntxn_1,1,USD,ok\n");
    put("empty.csv", "id,amount,currency,status\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    const char *names[] = {"in.csv", "gw.csv", "clean.csv", "empty.csv", "dup.csv", "odd.csv",
                           "odd_gw.csv", "big.csv", "bad.csv"};
    char path[700];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

static void test_text(void **state)
{
    (void)state;
    char out[4096];
    const char *a[] = {"--internal", "in.csv", "--gateway", "gw.csv", NULL};
    assert_int_equal(0, recon(out, sizeof(out), NULL, a));
    assert_string_equal(
        "1/5 matched, 4 discrepancies: 1 missing_internal, 1 missing_gateway, 1 amount_mismatch, "
        "1 status_mismatch\n"
        "status_mismatch txn_2 internal=5.00 USD settled gateway=5.00 USD refunded\n"
        "missing_internal txn_3 gateway=12.34 USD settled\n"
        "amount_mismatch txn_5 internal=1.00 EUR settled gateway=1.00 GBP failed\n"
        "missing_gateway txn_1 internal=12.34 USD settled\n",
        out);
    /* --exit-code: 1 with discrepancies, 0 without; the output is the same. */
    const char *b[] = {"--exit-code", "--internal", "in.csv", "--gateway", "gw.csv", NULL};
    assert_int_equal(1, recon(out, sizeof(out), NULL, b));
    assert_non_null(strstr(out, "missing_gateway txn_1 internal=12.34 USD settled\n"));
    const char *c[] = {"--internal", "clean.csv", "--gateway", "clean.csv", "--exit-code", NULL};
    assert_int_equal(0, recon(out, sizeof(out), NULL, c));
    assert_string_equal("1/1 matched, 0 discrepancies\n", out);
    const char *e[] = {"--internal", "empty.csv", "--gateway", "empty.csv", "--exit-code", NULL};
    assert_int_equal(0, recon(out, sizeof(out), NULL, e));
    assert_string_equal("0/0 matched, 0 discrepancies\n", out);
    /* stdin as one side. */
    const char *s[] = {"--internal", "-", "--gateway", "clean.csv", NULL};
    assert_int_equal(0, recon(out, sizeof(out), "id,amount,currency,status\ntxn_1,1.00,usd,ok\n",
                              s));
    assert_string_equal("1/1 matched, 0 discrepancies\n", out);
}

static void test_json(void **state)
{
    (void)state;
    char out[8192];
    const char *a[] = {"--internal", "in.csv", "--gateway", "gw.csv", "--format", "json",
                       "--exit-code", NULL};
    assert_int_equal(1, recon(out, sizeof(out), NULL, a));
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", jerr.text, out);
    assert_string_equal("1/5 matched, 4 discrepancies: 1 missing_internal, 1 missing_gateway, "
                        "1 amount_mismatch, 1 status_mismatch",
                        json_string_value(json_object_get(j, "summary")));
    assert_int_equal(1, json_integer_value(json_object_get(j, "matched")));
    assert_int_equal(5, json_integer_value(json_object_get(j, "total")));
    json_t *counts = json_object_get(j, "counts");
    assert_int_equal(4, json_object_size(counts));
    assert_int_equal(1, json_integer_value(json_object_get(counts, "missing_internal")));
    assert_int_equal(1, json_integer_value(json_object_get(counts, "missing_gateway")));
    assert_int_equal(1, json_integer_value(json_object_get(counts, "amount_mismatch")));
    assert_int_equal(1, json_integer_value(json_object_get(counts, "status_mismatch")));
    json_t *ds = json_object_get(j, "discrepancies");
    assert_int_equal(4, json_array_size(ds));
    json_t *d0 = json_array_get(ds, 0);
    assert_string_equal("status_mismatch", json_string_value(json_object_get(d0, "type")));
    assert_string_equal("txn_2", json_string_value(json_object_get(d0, "id")));
    json_t *g = json_object_get(d0, "gateway");
    assert_string_equal("5.00", json_string_value(json_object_get(g, "amount")));
    assert_int_equal(500, json_integer_value(json_object_get(g, "amount_minor")));
    assert_string_equal("USD", json_string_value(json_object_get(g, "currency")));
    assert_string_equal("refunded", json_string_value(json_object_get(g, "status")));
    assert_int_equal(2, json_integer_value(json_object_get(g, "line")));
    assert_int_equal(3, json_integer_value(json_object_get(json_object_get(d0, "internal"),
                                                           "line")));
    json_t *d1 = json_array_get(ds, 1);
    assert_string_equal("missing_internal", json_string_value(json_object_get(d1, "type")));
    assert_true(json_is_null(json_object_get(d1, "internal")));
    json_t *d3 = json_array_get(ds, 3);
    assert_string_equal("missing_gateway", json_string_value(json_object_get(d3, "type")));
    assert_true(json_is_null(json_object_get(d3, "gateway")));
    assert_int_equal(1234, json_integer_value(json_object_get(json_object_get(d3, "internal"),
                                                              "amount_minor")));
    json_decref(j);

    const char *e[] = {"--internal", "empty.csv", "--gateway", "empty.csv", "--format", "json",
                       NULL};
    assert_int_equal(0, recon(out, sizeof(out), NULL, e));
    assert_string_equal("{\"summary\": \"0/0 matched, 0 discrepancies\", \"matched\": 0, "
                        "\"total\": 0, \"counts\": {\"missing_internal\": 0, "
                        "\"missing_gateway\": 0, \"amount_mismatch\": 0, "
                        "\"status_mismatch\": 0}, \"discrepancies\": []}\n",
                        out);
}

static void test_odd_values(void **state)
{
    (void)state;
    /* Ids and statuses with spaces, quotes, newlines and invalid UTF-8. */
    put("odd.csv", "id,amount,currency,status\n"
                   "\"a b\",1,USD,\"in \"\"q\"\"\"\n"
                   "\"x\ny\",-2.5,USD,refund\n"
                   "caf\xC3\xA9,3,USD,\"\"\n"
                   "bad\xFF,4,USD,ok\n");
    put("odd_gw.csv", "id,amount,currency,status\n");
    char out[4096];
    const char *a[] = {"--internal", "odd.csv", "--gateway", "odd_gw.csv", NULL};
    assert_int_equal(0, recon(out, sizeof(out), NULL, a));
    assert_string_equal("0/4 matched, 4 discrepancies: 4 missing_gateway\n"
                        "missing_gateway \"a b\" internal=1.00 USD \"in \\\"q\\\"\"\n"
                        "missing_gateway \"x\\ny\" internal=-2.50 USD refund\n"
                        "missing_gateway caf\xC3\xA9 internal=3.00 USD \"\"\n"
                        "missing_gateway bad\xFF internal=4.00 USD ok\n",
                        out);
    const char *b[] = {"--internal", "odd.csv", "--gateway", "odd_gw.csv", "--format", "json",
                       NULL};
    assert_int_equal(0, recon(out, sizeof(out), NULL, b));
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    json_t *ds = json_object_get(j, "discrepancies");
    assert_string_equal("a b", json_string_value(json_object_get(json_array_get(ds, 0), "id")));
    assert_string_equal("in \"q\"", json_string_value(json_object_get(
                                        json_object_get(json_array_get(ds, 0), "internal"),
                                        "status")));
    assert_string_equal("x\ny", json_string_value(json_object_get(json_array_get(ds, 1), "id")));
    assert_string_equal("caf\xC3\xA9",
                        json_string_value(json_object_get(json_array_get(ds, 2), "id")));
    assert_string_equal("bad\xEF\xBF\xBD",
                        json_string_value(json_object_get(json_array_get(ds, 3), "id")));
    json_decref(j);
}

static void test_usage_and_input_errors(void **state)
{
    (void)state;
    char out[8192];
    const char *none[] = {NULL};
    assert_int_equal(2, recon(out, sizeof(out), NULL, none));
    assert_non_null(strstr(out, "keel reconcile: missing --internal FILE\nusage: keel reconcile"));
    const char *help[] = {"--help", NULL};
    assert_int_equal(0, recon(out, sizeof(out), NULL, help));
    assert_memory_equal("usage: keel reconcile --internal FILE --gateway FILE", out, 52);
    assert_non_null(strstr(out, "missing_internal ID gateway=AMOUNT CUR STATUS"));
    const char *nogw[] = {"--internal", "in.csv", NULL};
    assert_int_equal(2, recon(out, sizeof(out), NULL, nogw));
    assert_non_null(strstr(out, "keel reconcile: missing --gateway FILE\n"));
    const char *fmt[] = {"--internal", "in.csv", "--gateway", "gw.csv", "--format", "xml", NULL};
    assert_int_equal(2, recon(out, sizeof(out), NULL, fmt));
    assert_string_equal("keel reconcile: --format must be text or json, not 'xml'\n", out);
    const char *unk[] = {"--internal", "in.csv", "--gateway", "gw.csv", "--fast", NULL};
    assert_int_equal(2, recon(out, sizeof(out), NULL, unk));
    assert_non_null(strstr(out, "keel reconcile: unknown or incomplete option '--fast'\n"));
    const char *dash[] = {"--internal", "-", "--gateway", "-", NULL};
    assert_int_equal(2, recon(out, sizeof(out), NULL, dash));

    const char *missing[] = {"--internal", "in.csv", "--gateway", "nope.csv", NULL};
    assert_int_equal(2, recon(out, sizeof(out), NULL, missing));
    assert_string_equal(
        "keel reconcile: cannot open gateway file 'nope.csv': No such file or directory\n", out);

    /* Input errors name the file and line; nothing goes to stdout. */
    put("dup.csv", "id,amount,currency,status\nA,1,USD,s\nB,1,USD,s\nA,2,USD,s\n");
    const char *dup[] = {"--internal", "dup.csv", "--gateway", "gw.csv", "--exit-code", NULL};
    assert_int_equal(2, recon(out, sizeof(out), NULL, dup));
    assert_string_equal("keel reconcile: dup.csv:4: duplicate id 'A' (first at line 2)\n", out);
    put("bad.csv", "id,amount,currency,status\nA,1,USD,s\nB,1.0x,USD,s\n");
    const char *bad[] = {"--internal", "in.csv", "--gateway", "bad.csv", NULL};
    assert_int_equal(2, recon(out, sizeof(out), NULL, bad));
    assert_string_equal("keel reconcile: bad.csv:3:6: bad amount '1.0x': unexpected character "
                        "in amount\n",
                        out);
    put("bad.csv", "id,amount,currency,status\nA,1,USD,s\nB,1,XYZ,s\n");
    assert_int_equal(2, recon(out, sizeof(out), NULL, bad));
    assert_string_equal("keel reconcile: bad.csv:3:5: unknown currency 'XYZ'\n", out);
    put("bad.csv", "id,amount\nA,1\n");
    assert_int_equal(2, recon(out, sizeof(out), NULL, bad));
    assert_string_equal("keel reconcile: bad.csv:1: header lacks column 'currency' (needs "
                        "id,amount,currency,status)\n",
                        out);
    put("bad.csv", "id,amount,currency,status\nA,1,USD,\"s\n");
    assert_int_equal(2, recon(out, sizeof(out), NULL, bad));
    assert_string_equal("keel reconcile: bad.csv:2:9: unterminated quoted field\n", out);
    const char *sin[] = {"--internal", "-", "--gateway", "gw.csv", NULL};
    assert_int_equal(2, recon(out, sizeof(out), "id,amount,currency,status\nA,1,USD,s,x\n", sin));
    assert_string_equal(
        "keel reconcile: <stdin>:2: expected 4 fields (as in the header), found 5\n", out);
}

/* A > 8 MiB input: no progress line when stderr is not a terminal, one when it is. */
static void write_big(void)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/big.csv", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("id,amount,currency,status,padding\n", f);
    for (unsigned i = 0; i < 160000; i++)
        fprintf(f, "txn_%08u,%u.%02u,USD,settled,xxxxxxxxxxxxxxxxxxxxxxxx\n", i, i / 100, i % 100);
    assert_int_equal(0, fclose(f));
    struct stat st;
    assert_int_equal(0, stat(path, &st));
    assert_true(st.st_size > 4 * 1024 * 1024); /* both sides together exceed 8 MiB */
}

static void test_progress(void **state)
{
    (void)state;
    write_big();
    char out[4096];
    const char *a[] = {"--internal", "big.csv", "--gateway", "big.csv", NULL};
    assert_int_equal(0, recon(out, sizeof(out), NULL, a));
    assert_string_equal("160000/160000 matched, 0 discrepancies\n", out);

    /* On a pseudo-terminal the progress line appears (on stderr, cleared afterwards). */
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        if (chdir(dir) != 0)
            _exit(127);
        execl(bin(), "keel", "reconcile", "--internal", "big.csv", "--gateway", "big.csv",
              (char *)NULL);
        _exit(127);
    }
    static char tty[1 << 16];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(master, tty + n, sizeof(tty) - 1 - n);
        if (r <= 0)
            break; /* EIO once the child is gone */
        n += (size_t)r;
        if (n >= sizeof(tty) - 1)
            break;
    }
    tty[n] = '\0';
    close(master);
    int status;
    assert_int_equal(pid, waitpid(pid, &status, 0));
    assert_true(WIFEXITED(status));
    assert_int_equal(0, WEXITSTATUS(status));
    assert_non_null(strstr(tty, "\rkeel reconcile: 65536 rows processed"));
    assert_non_null(strstr(tty, "160000/160000 matched, 0 discrepancies"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_odd_values),
        cmocka_unit_test(test_usage_and_input_errors),
        cmocka_unit_test(test_progress),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
