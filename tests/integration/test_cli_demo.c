/* Integration: `keel demo checkout` - seed 004's seven checkout scenarios run end to end by the
 * real binary.  KEEL_TEST_CLI_BIN in the environment overrides the binary under test. */
#define _GNU_SOURCE 1
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#define OUT_CAP (64u * 1024u)

static const char *const titles[7] = {
    "[1] success after transient network errors ... ok\n",
    "[2] idempotent replay, no second gateway call ... ok\n",
    "[3] shipment failure compensated in reverse order ... ok\n",
    "[4] blocklisted e-mail blocked before the gateway ... ok\n",
    "[5] webhook accepted, duplicate deduplicated, tampered rejected ... ok\n",
    "[6] reconciliation finds three discrepancies, on-call paged ... ok\n",
    "[7] card data redacted in the log ... ok\n",
};

static int keel(char *out, size_t cap, const char *const *args)
{
    const char *bin = getenv("KEEL_TEST_CLI_BIN") ? getenv("KEEL_TEST_CLI_BIN") : KEEL_TEST_CLI;
    const char *argv[16] = {"keel"};
    for (size_t i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    keel_test_run_opts o = {0};
    return keel_test_run(bin, argv, &o, out, cap);
}

static void work_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/demo_%ld_%s", KEEL_TEST_TMP, (long)getpid(), name);
}

/* Whole file into a malloc'd NUL-terminated buffer (NULL if unreadable). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4u << 20;
    char *buf = malloc(cap);
    size_t n = buf ? fread(buf, 1, cap - 1, f) : 0;
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    return buf;
}

static void rm_rf(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(0, system(cmd));
}

static void test_checkout_text(void **state)
{
    (void)state;
    char dir[512], log[600];
    work_dir(dir, sizeof dir, "text");
    snprintf(log, sizeof log, "%s/logs/app.json", dir);
    char *out = malloc(OUT_CAP);
    assert_non_null(out);
    const char *args[] = {"demo", "checkout", "--dir", dir, NULL};
    int rc = keel(out, OUT_CAP, args);
    if (rc != 0)
        print_error("keel demo checkout output:\n%s\n", out);
    assert_int_equal(0, rc);

    /* the seven scenario lines, in order, each ok */
    const char *prev = out;
    for (int i = 0; i < 7; i++) {
        const char *p = strstr(out, titles[i]);
        if (p == NULL)
            print_error("missing: %s", titles[i]);
        assert_non_null(p);
        assert_true(p >= prev);
        prev = p;
    }
    assert_null(strstr(out, "FAILED"));
    assert_non_null(strstr(out, "\n7/7 scenarios ok\n"));

    /* details the seed promises */
    assert_non_null(strstr(out, "gateway authorize x3: network_error, network_error, ok"));
    assert_non_null(strstr(out, "gateway authorize calls for key "));
    assert_non_null(strstr(out, ":authorize: 1\n"));
    assert_non_null(strstr(out, "compensation order (saga log): void_payment (authorize_payment)"
                                " -> release_inventory (reserve_inventory)"));
    assert_non_null(strstr(out, "fraud decision: block by rule 'blocklist'"));
    assert_non_null(strstr(out, "gateway calls: 0\n"));
    assert_non_null(strstr(out, "tampered body (amount changed): signature_mismatch -> 400"));
    assert_non_null(strstr(out, "\n    2/5 matched, 3 discrepancies: 1 missing_internal, "
                                "1 missing_gateway, 1 status_mismatch\n"));
    assert_non_null(strstr(out, "on-call paged for missing_gateway: ch_ghost_"));

    /* redaction: the masked line is shown, the PAN never */
    assert_non_null(strstr(out, "    logged: card ************1111 cvv: [REDACTED_CVV]\n"));
    assert_null(strstr(out, "4111-1111-1111-1111"));
    assert_null(strstr(out, "4111111111111111"));

    /* the log file in the work directory holds the redacted record and no card data */
    char *text = slurp(log);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"message\":\"card ************1111 cvv: [REDACTED_CVV]\""));
    assert_null(strstr(text, "4111-1111-1111-1111"));
    assert_null(strstr(text, "4111111111111111"));
    assert_null(strstr(text, "cvv: 999"));
    /* the log-execution layer wrote audit records for the charge attempts */
    assert_non_null(strstr(text, "\"logger\":\"app.audit\""));
    free(text);

    /* the database exists where asked */
    char db[600];
    snprintf(db, sizeof db, "%s/demo.db", dir);
    assert_int_equal(0, access(db, R_OK));

    /* a second run on the same database works too (fresh ids per run) */
    rc = keel(out, OUT_CAP, args);
    if (rc != 0)
        print_error("second run:\n%s\n", out);
    assert_int_equal(0, rc);
    assert_non_null(strstr(out, "\n7/7 scenarios ok\n"));
    free(out);
    rm_rf(dir);
}

static void test_checkout_json_and_db(void **state)
{
    (void)state;
    char dir[512], db[600];
    work_dir(dir, sizeof dir, "json");
    snprintf(db, sizeof db, "%s.db", dir);
    char *out = malloc(OUT_CAP);
    assert_non_null(out);
    const char *args[] = {"demo", "checkout", "--json", "--db", db, NULL};
    assert_int_equal(0, keel(out, OUT_CAP, args));
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    if (j == NULL)
        print_error("not JSON (%s):\n%s\n", jerr.text, out);
    assert_non_null(j);
    assert_int_equal(7, json_integer_value(json_object_get(j, "passed")));
    assert_int_equal(7, json_integer_value(json_object_get(j, "total")));
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_t *sc = json_object_get(j, "scenarios");
    assert_int_equal(7, json_array_size(sc));
    for (size_t i = 0; i < 7; i++) {
        json_t *s = json_array_get(sc, i);
        assert_int_equal((json_int_t)(i + 1), json_integer_value(json_object_get(s, "n")));
        assert_true(json_is_true(json_object_get(s, "ok")));
        size_t nd = json_array_size(json_object_get(s, "details"));
        assert_true(nd >= 1 && nd <= 3);
        assert_null(json_object_get(s, "error"));
    }
    json_decref(j);
    assert_null(strstr(out, "4111-1111-1111-1111"));
    assert_int_equal(0, access(db, R_OK));
    unlink(db);
    free(out);
}

static void test_usage(void **state)
{
    (void)state;
    char out[8192];
    const char *none[] = {"demo", NULL};
    assert_int_equal(2, keel(out, sizeof out, none));
    assert_non_null(strstr(out, "usage: keel demo checkout"));
    const char *help[] = {"demo", "--help", NULL};
    assert_int_equal(0, keel(out, sizeof out, help));
    assert_non_null(strstr(out, "usage: keel demo checkout"));
    const char *help2[] = {"demo", "checkout", "--help", NULL};
    assert_int_equal(0, keel(out, sizeof out, help2));
    const char *unknown[] = {"demo", "refund", NULL};
    assert_int_equal(2, keel(out, sizeof out, unknown));
    assert_non_null(strstr(out, "unknown demo 'refund'"));
    const char *bad[] = {"demo", "checkout", "--bogus", NULL};
    assert_int_equal(2, keel(out, sizeof out, bad));
    const char *missing[] = {"demo", "checkout", "--db", NULL};
    assert_int_equal(2, keel(out, sizeof out, missing));
    const char *top[] = {"--help", NULL};
    assert_int_equal(0, keel(out, sizeof out, top));
    assert_non_null(strstr(out, "  demo "));
}

static void test_setup_failure(void **state)
{
    (void)state;
    char out[8192], dir[512];
    work_dir(dir, sizeof dir, "bad");
    /* a database path whose parent is a regular file cannot be opened: exit 1, not 0 or 2 */
    char file[600], db[700];
    snprintf(file, sizeof file, "%s.file", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(db, sizeof db, "%s/x.db", file);
    const char *args[] = {"demo", "checkout", "--db", db, NULL};
    assert_int_equal(1, keel(out, sizeof out, args));
    assert_non_null(strstr(out, "keel demo checkout: setup failed"));
    unlink(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkout_text),
        cmocka_unit_test(test_checkout_json_and_db),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_setup_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
