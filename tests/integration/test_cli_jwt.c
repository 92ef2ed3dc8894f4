/* Integration: `keel jwt sign|verify` as a user runs it, against the PyJWT fixtures in
 * tests/data/jwt.  KEEL_TEST_CLI_BIN in the environment overrides the binary under test. */
#define _GNU_SOURCE 1
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOW "1700000100"
#define ISS "https://auth.keel.test"

/* Run `keel args...` in dir; stdout+stderr into out. */
static int keel(const char *dir, char *out, size_t cap, const char *const *args)
{
    const char *bin = getenv("KEEL_TEST_CLI_BIN") ? getenv("KEEL_TEST_CLI_BIN") : KEEL_TEST_CLI;
    const char *argv[24] = {"keel"};
    for (size_t i = 0; args[i] && i < 22; i++)
        argv[i + 1] = args[i];
    keel_test_run_opts o = {.dir = dir};
    return keel_test_run(bin, argv, &o, out, cap);
}

static const char *dir(void)
{
    static char d[512];
    snprintf(d, sizeof(d), "%s/jwt", KEEL_TEST_DATA);
    return d;
}

static char *fixture(const char *name)
{
    static char buf[4096];
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir(), name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void test_verify_fixtures(void **state)
{
    (void)state;
    char out[8192];
    const char *ok[] = {"jwt", "verify", "--alg", "HS256", "--key-file", "hs256.key", "--iss", ISS,
                        "--aud", "keel-api", "--type", "access", "--now", NOW,
                        fixture("hs256_valid.jwt"), NULL};
    assert_int_equal(0, keel(dir(), out, sizeof(out), ok));
    assert_non_null(strstr(out, "\"sub\":\"user-42\""));
    assert_non_null(strstr(out, "\"roles\":[\"admin\",\"user\"]"));

    const char *rs[] = {"jwt", "verify", "--alg", "RS256", "--key-file", "rs256_public.pem",
                        "--now", NOW, fixture("rs256_valid.jwt"), NULL};
    assert_int_equal(0, keel(dir(), out, sizeof(out), rs));
    const char *es[] = {"jwt", "verify", "--alg", "ES256", "--key-file", "es256_public.pem",
                        "--kid", "es1", "--now", NOW, fixture("es256_valid.jwt"), NULL};
    assert_int_equal(0, keel(dir(), out, sizeof(out), es));
    const char *es_kid[] = {"jwt", "verify", "--alg", "ES256", "--key-file", "es256_public.pem",
                            "--kid", "other", "--now", NOW, fixture("es256_valid.jwt"), NULL};
    assert_int_equal(1, keel(dir(), out, sizeof(out), es_kid));
    assert_string_equal("keel jwt verify: unknown kid\n", out);
}

static void test_verify_rejects(void **state)
{
    (void)state;
    char out[8192];
    struct {
        const char *alg, *key, *file, *why;
    } cases[] = {
        {"HS256", "hs256.key", "attack_alg_none.jwt", "alg mismatch"},
        {"RS256", "rs256_public.pem", "attack_hs256_rsa_pubkey.jwt", "alg mismatch"},
        {"HS256", "hs256.key", "attack_tampered.jwt", "bad signature"},
        {"HS256", "hs256.key", "hs256_expired.jwt", "token expired"},
        {"HS256", "hs256.key", "hs256_nbf_future.jwt", "token not yet valid"},
        {"HS256", "hs256.key", "hs256_wrong_aud.jwt", "audience mismatch"},
        {"HS256", "hs256.key", "hs256_wrong_iss.jwt", "issuer mismatch"},
        {"HS256", "hs256.key", "hs256_refresh.jwt", "type mismatch"},
        {"HS256", "hs256.key", "attack_garbage.jwt", "invalid character in token"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[] = {"jwt",      "verify", "--alg", cases[i].alg, "--key-file",
                              cases[i].key, "--iss", ISS,    "--aud",      "keel-api",
                              "--type",   "access", "--now", NOW,          fixture(cases[i].file),
                              NULL};
        assert_int_equal(1, keel(dir(), out, sizeof(out), args));
        char want[256];
        snprintf(want, sizeof(want), "keel jwt verify: %s\n", cases[i].why);
        assert_string_equal(want, out);
    }
    /* leeway: expired at 1700000060; with --leeway 60 and now 1700000100 it passes */
    const char *lw[] = {"jwt",   "verify", "--alg", "HS256", "--key-file", "hs256.key", "--leeway",
                        "60",    "--now",  NOW,     fixture("hs256_expired.jwt"), NULL};
    assert_int_equal(0, keel(dir(), out, sizeof(out), lw));
    const char *lw_big[] = {"jwt", "verify", "--alg", "HS256", "--key-file", "hs256.key",
                            "--leeway", "301", "x.y.z", NULL};
    assert_int_equal(2, keel(dir(), out, sizeof(out), lw_big));
}

static void test_sign_round_trip_and_usage(void **state)
{
    (void)state;
    char out[8192], tok[4096];
    const char *sign[] = {"jwt", "sign", "--alg", "RS256", "--key-file", "rs256_private.pem",
                          "--kid", "rs1", "--claims",
                          "{\"sub\":\"u9\",\"exp\":4102444800,\"type\":\"refresh\"}", NULL};
    assert_int_equal(0, keel(dir(), out, sizeof(out), sign));
    size_t n = strcspn(out, "\n");
    assert_true(n > 0 && n < sizeof(tok));
    memcpy(tok, out, n);
    tok[n] = '\0';
    const char *verify[] = {"jwt", "verify", "--alg", "RS256", "--key-file", "rs256_public.pem",
                            "--type", "refresh", tok, NULL};
    assert_int_equal(0, keel(dir(), out, sizeof(out), verify));
    assert_string_equal("{\"exp\":4102444800,\"sub\":\"u9\",\"type\":\"refresh\"}\n", out);
    /* the same token under a pinned HS256 policy */
    const char *confused[] = {"jwt", "verify", "--alg", "HS256", "--key-file", "hs256.key",
                              tok, NULL};
    assert_int_equal(1, keel(dir(), out, sizeof(out), confused));
    assert_string_equal("keel jwt verify: alg mismatch\n", out);

    const char *none[] = {"jwt", "sign", "--alg", "none", "--key-file", "hs256.key", "--claims",
                          "{}", NULL};
    assert_int_equal(2, keel(dir(), out, sizeof(out), none));
    const char *pub_sign[] = {"jwt", "sign", "--alg", "RS256", "--key-file", "rs256_public.pem",
                              "--claims", "{}", NULL};
    assert_int_equal(2, keel(dir(), out, sizeof(out), pub_sign));
    const char *bad_claims[] = {"jwt", "sign", "--alg", "HS256", "--key-file", "hs256.key",
                                "--claims", "{\"a\":1,\"a\":2}", NULL};
    assert_int_equal(2, keel(dir(), out, sizeof(out), bad_claims));
    const char *no_key[] = {"jwt", "sign", "--alg", "HS256", "--key-file", "/nonexistent",
                            "--claims", "{}", NULL};
    assert_int_equal(2, keel(dir(), out, sizeof(out), no_key));
    const char *missing[] = {"jwt", "verify", "--alg", "HS256", NULL};
    assert_int_equal(2, keel(dir(), out, sizeof(out), missing));
    const char *unknown[] = {"jwt", "frob", NULL};
    assert_int_equal(2, keel(dir(), out, sizeof(out), unknown));
    const char *help[] = {"jwt", "--help", NULL};
    assert_int_equal(0, keel(dir(), out, sizeof(out), help));
    assert_non_null(strstr(out, "keel jwt sign"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_fixtures),
        cmocka_unit_test(test_verify_rejects),
        cmocka_unit_test(test_sign_round_trip_and_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
