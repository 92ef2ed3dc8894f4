/* Tests for src/security/password.c: Argon2id PHC hashing, parsing, caps, token hashing. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/password.h>

#include "security/password_int.h"

/* A valid argon2-cffi hash (m=64,t=1,p=2, 12-byte salt, 24-byte hash) of the empty password. */
#define SMALL_EMPTY "$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d"

/* ------------------------------------------------------------ fixtures -- */

typedef struct fixture {
    char pw[512];
    size_t pwlen;
    char phc[KEEL_PASSWORD_PHC_SIZE];
} fixture;

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Load "<hex password> <phc>" lines from tests/data/password/<name>; returns the count. */
static size_t load(const char *name, fixture *fx, size_t cap)
{
    char path[512], line[2048];
    snprintf(path, sizeof(path), "%s/password/%s", KEEL_TEST_DATA, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        assert_true(n < cap);
        char *sp = strchr(line, ' ');
        assert_non_null(sp);
        size_t hl = (size_t)(sp - line);
        assert_int_equal(0, hl % 2);
        assert_true(hl / 2 < sizeof(fx[n].pw));
        for (size_t i = 0; i < hl / 2; i++) {
            int hi = hexval(line[2 * i]), lo = hexval(line[2 * i + 1]);
            assert_true(hi >= 0 && lo >= 0);
            fx[n].pw[i] = (char)(hi << 4 | lo);
        }
        fx[n].pwlen = hl / 2;
        char *phc = sp + 1;
        phc[strcspn(phc, "\r\n")] = '\0';
        assert_true(strlen(phc) < sizeof(fx[n].phc));
        memcpy(fx[n].phc, phc, strlen(phc) + 1);
        n++;
    }
    fclose(f);
    return n;
}

static void check_file(const char *name, size_t expect_n)
{
    fixture fx[8];
    size_t n = load(name, fx, 8);
    assert_int_equal(expect_n, n);
    for (size_t i = 0; i < n; i++) {
        keel_diag d;
        ASSERT_OK(keel_password_verify(fx[i].phc, fx[i].pw, fx[i].pwlen, &d));
        /* one changed byte, one byte more */
        char wrong[513];
        memcpy(wrong, fx[i].pw, fx[i].pwlen);
        wrong[fx[i].pwlen] = 'x';
        assert_int_equal(KEEL_EDENIED, keel_password_verify(fx[i].phc, wrong, fx[i].pwlen + 1, &d));
        assert_int_equal(KEEL_EDENIED, d.code);
        if (fx[i].pwlen > 0) {
            wrong[0] ^= 1;
            assert_int_equal(KEEL_EDENIED, keel_password_verify(fx[i].phc, wrong, fx[i].pwlen, NULL));
        }
    }
}

static void test_argon2_cffi_hashes_verify(void **state)
{
    (void)state;
    check_file("argon2id_custom.txt", 4);
    check_file("argon2id_default.txt", 2);
}

static void test_argon2i_verifies_and_needs_rehash(void **state)
{
    (void)state;
    fixture fx[2];
    assert_int_equal(1, load("argon2i.txt", fx, 2));
    ASSERT_OK(keel_password_verify(fx[0].phc, fx[0].pw, fx[0].pwlen, NULL));
    assert_int_equal(KEEL_EDENIED, keel_password_verify(fx[0].phc, "legacy", 6, NULL));
    int need = -1;
    keel_password_params cur;
    keel_password_params_default(&cur);
    cur.memory_kib = 1024;
    cur.iterations = 1;
    ASSERT_OK(keel_password_needs_rehash(fx[0].phc, &cur, &need, NULL));
    assert_int_equal(1, need); /* the type alone triggers it */
}

static void test_argon2d_rejected(void **state)
{
    (void)state;
    fixture fx[2];
    assert_int_equal(1, load("argon2d.txt", fx, 2));
    keel_diag d;
    assert_int_equal(KEEL_EUNSUPPORTED, keel_password_verify(fx[0].phc, fx[0].pw, fx[0].pwlen, &d));
    assert_string_equal("algorithm: argon2d is not accepted for passwords", d.msg);
    int need = 0;
    ASSERT_OK(keel_password_needs_rehash(fx[0].phc, NULL, &need, NULL));
    assert_int_equal(1, need);
}

/* ----------------------------------------------------------- round trip -- */

static void test_hash_round_trip(void **state)
{
    (void)state;
    char a[KEEL_PASSWORD_PHC_SIZE], b[KEEL_PASSWORD_PHC_SIZE];
    ASSERT_OK(keel_password_hash(NULL, "s3cret pass", 11, a, sizeof(a)));
    const char *prefix = "$argon2id$v=19$m=19456,t=2,p=1$";
    assert_int_equal(0, strncmp(a, prefix, strlen(prefix)));
    /* 16-byte salt -> 22 chars, 32-byte hash -> 43 chars, no padding */
    assert_int_equal(strlen(prefix) + 22 + 1 + 43, strlen(a));
    assert_null(strchr(a + strlen(prefix), '='));
    ASSERT_OK(keel_password_verify(a, "s3cret pass", 11, NULL));
    assert_int_equal(KEEL_EDENIED, keel_password_verify(a, "s3cret pasS", 11, NULL));
    assert_int_equal(KEEL_EDENIED, keel_password_verify(a, "s3cret pass", 10, NULL));
    int need = -1;
    ASSERT_OK(keel_password_needs_rehash(a, NULL, &need, NULL));
    assert_int_equal(0, need);

    /* fresh salt every time */
    ASSERT_OK(keel_password_hash(NULL, "s3cret pass", 11, b, sizeof(b)));
    assert_string_not_equal(a, b);

    /* custom parameters, embedded NUL and the empty password */
    keel_password_params p;
    keel_password_params_default(&p);
    p.memory_kib = 64;
    p.iterations = 1;
    p.parallelism = 4;
    p.salt_len = 8;
    p.hash_len = 64;
    ASSERT_OK(keel_password_hash(&p, "a\0b", 3, a, sizeof(a)));
    assert_int_equal(0, strncmp(a, "$argon2id$v=19$m=64,t=1,p=4$", 28));
    ASSERT_OK(keel_password_verify(a, "a\0b", 3, NULL));
    assert_int_equal(KEEL_EDENIED, keel_password_verify(a, "a\0c", 3, NULL));
    ASSERT_OK(keel_password_hash(&p, "", 0, a, sizeof(a)));
    ASSERT_OK(keel_password_verify(a, "", 0, NULL));
    assert_int_equal(KEEL_EDENIED, keel_password_verify(a, " ", 1, NULL));

    /* parse back what we wrote */
    keel__phc h;
    ASSERT_OK(keel__phc_parse(a, NULL, &h, NULL));
    assert_int_equal(KEEL__PHC_ARGON2ID, h.type);
    assert_int_equal(19, h.version);
    assert_int_equal(64, h.m);
    assert_int_equal(1, h.t);
    assert_int_equal(4, h.p);
    assert_int_equal(8, h.salt_len);
    assert_int_equal(64, h.hash_len);
}

static void test_hash_argument_errors(void **state)
{
    (void)state;
    char out[KEEL_PASSWORD_PHC_SIZE];
    keel_password_params p;
    keel_password_params_default(&p);
    assert_int_equal(19456, p.memory_kib);
    assert_int_equal(2, p.iterations);
    assert_int_equal(1, p.parallelism);
    assert_int_equal(16, p.salt_len);
    assert_int_equal(32, p.hash_len);
    assert_int_equal(sizeof(p), p.size);
    assert_int_equal(KEEL_EINVAL, keel_password_hash(&p, NULL, 0, out, sizeof(out)));
    assert_int_equal(KEEL_EINVAL, keel_password_hash(&p, "x", 1, NULL, 0));
    p.size = 0;
    assert_int_equal(KEEL_EINVAL, keel_password_hash(&p, "x", 1, out, sizeof(out)));
    static char big[KEEL_PASSWORD_MAX_LEN + 1];
    assert_int_equal(KEEL_ETOOBIG, keel_password_hash(NULL, big, sizeof(big), out, sizeof(out)));
    assert_int_equal(KEEL_ETOOBIG, keel_password_verify(SMALL_EMPTY, big, sizeof(big), NULL));

    struct {
        uint32_t m, t, par, salt, hash;
    } bad[] = {
        {KEEL_PASSWORD_MAX_MEMORY_KIB + 1, 1, 1, 16, 32},
        {15, 1, 2, 16, 32}, /* m < 8 * p */
        {64, 0, 1, 16, 32},
        {64, KEEL_PASSWORD_MAX_ITERATIONS + 1, 1, 16, 32},
        {64, 1, 0, 16, 32},
        {256, 1, KEEL_PASSWORD_MAX_PARALLELISM + 1, 16, 32},
        {64, 1, 1, 7, 32},
        {64, 1, 1, 65, 32},
        {64, 1, 1, 16, 15},
        {64, 1, 1, 16, 65},
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        keel_password_params_default(&p);
        p.memory_kib = bad[i].m;
        p.iterations = bad[i].t;
        p.parallelism = bad[i].par;
        p.salt_len = bad[i].salt;
        p.hash_len = bad[i].hash;
        assert_int_equal(KEEL_ERANGE, keel_password_hash(&p, "x", 1, out, sizeof(out)));
    }
    /* output too small: refused, and the buffer holds an empty string */
    keel_password_params_default(&p);
    p.memory_kib = 64;
    p.iterations = 1;
    char small[40];
    assert_int_equal(KEEL_ETOOBIG, keel_password_hash(&p, "x", 1, small, sizeof(small)));
    assert_string_equal("", small);
}

/* ---------------------------------------------------------- needs_rehash -- */

static void test_needs_rehash(void **state)
{
    (void)state;
    const char *h = "$argon2id$v=19$m=19456,t=2,p=1$970hLEBLIf+Bi+RV4oT2gQ$"
                    "52Dz/N8tY2oYNciso9m0bLWkmVO8nXa2CEQ8Jjmgb+0";
    keel_password_params cur;
    int need = -1;
    keel_password_params_default(&cur);
    ASSERT_OK(keel_password_needs_rehash(h, &cur, &need, NULL));
    assert_int_equal(0, need);
    cur.memory_kib = 19457;
    ASSERT_OK(keel_password_needs_rehash(h, &cur, &need, NULL));
    assert_int_equal(1, need);
    keel_password_params_default(&cur);
    cur.iterations = 3;
    ASSERT_OK(keel_password_needs_rehash(h, &cur, &need, NULL));
    assert_int_equal(1, need);
    keel_password_params_default(&cur);
    cur.parallelism = 2;
    ASSERT_OK(keel_password_needs_rehash(h, &cur, &need, NULL));
    assert_int_equal(1, need);
    keel_password_params_default(&cur);
    cur.hash_len = 48;
    ASSERT_OK(keel_password_needs_rehash(h, &cur, &need, NULL));
    assert_int_equal(1, need);
    keel_password_params_default(&cur);
    cur.salt_len = 24;
    ASSERT_OK(keel_password_needs_rehash(h, &cur, &need, NULL));
    assert_int_equal(1, need);
    /* lowered parameters never ask for a rehash */
    keel_password_params_default(&cur);
    cur.memory_kib = 4096;
    cur.iterations = 1;
    ASSERT_OK(keel_password_needs_rehash(h, &cur, &need, NULL));
    assert_int_equal(0, need);
    /* argon2-cffi 21.1 defaults: 16-byte hash is below keel's 32 */
    ASSERT_OK(keel_password_needs_rehash(
        "$argon2id$v=19$m=102400,t=2,p=8$cVqUQAz8JzMQlxrc23Tqzg$QTzMBRe5Iz86krGpy4thww", NULL,
        &need, NULL));
    assert_int_equal(1, need);
    keel_diag d;
    need = -1;
    assert_int_equal(KEEL_EPARSE, keel_password_needs_rehash("$argon2id$v=19", NULL, &need, &d));
    assert_int_equal(0, need);
    assert_int_equal(KEEL_EINVAL, keel_password_needs_rehash(h, NULL, NULL, NULL));
    cur.size = 1;
    assert_int_equal(KEEL_EINVAL, keel_password_needs_rehash(h, &cur, &need, NULL));
}

/* ------------------------------------------------------------ malformed -- */

static void test_malformed_fields(void **state)
{
    (void)state;
    static const struct {
        const char *phc;
        keel_err code;
        const char *msg;
        size_t offset;
    } cases[] = {
        {"", KEEL_EPARSE, "hash: not a PHC string (no leading '$')", 0},
        {"argon2id$v=19", KEEL_EPARSE, "hash: not a PHC string (no leading '$')", 0},
        {"$", KEEL_EPARSE, "algorithm: missing", 1},
        {"$$v=19", KEEL_EPARSE, "algorithm: missing", 1},
        {"$2b$12$abcdefghijklmnopqrstuv", KEEL_EUNSUPPORTED,
         "algorithm: not argon2id, argon2i or argon2d", 1},
        {"$argon2ix$v=19$m=64,t=1,p=1$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_EUNSUPPORTED, "algorithm: not argon2id, argon2i or argon2d", 1},
        {"$argon2id", KEEL_EPARSE, "v: expected '$v='", 9},
        {"$argon2id$m=64,t=1,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_EUNSUPPORTED, "v: missing (version 16) not supported (19 only)", 9},
        {"$argon2id$v=16$m=64,t=1,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_EUNSUPPORTED, "v: version 16 not supported (19 only)", 14},
        {"$argon2id$v=019$m=64,t=1,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_EPARSE, "v: not a canonical decimal number", 12},
        {"$argon2id$v=$m=64", KEEL_EPARSE, "v: not a canonical decimal number", 12},
        {"$argon2id$v=19$t=1,m=64,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_EPARSE, "m: expected '$m='", 14},
        {"$argon2id$v=19$m=-64,t=1,p=2$x$y", KEEL_EPARSE, "m: not a canonical decimal number",
         17},
        {"$argon2id$v=19$m=4294967296,t=1,p=2$x$y", KEEL_EPARSE,
         "m: not a canonical decimal number", 17},
        {"$argon2id$v=19$m=99999999999,t=1,p=2$x$y", KEEL_EPARSE,
         "m: not a canonical decimal number", 17},
        {"$argon2id$v=19$m=64$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d", KEEL_EPARSE,
         "t: expected ',t='", 19},
        {"$argon2id$v=19$m=64,t=1$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d", KEEL_EPARSE,
         "p: expected ',p='", 23},
        {"$argon2id$v=19$m=64,t=1,p=2,keyid=a$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_EPARSE, "salt: expected '$' after parameters", 27},
        {"$argon2id$v=19$m=64,t=1,p=2", KEEL_EPARSE, "salt: expected '$' after parameters", 27},
        {"$argon2id$v=19$m=64,t=1,p=2$", KEEL_EPARSE, "salt: missing", 28},
        {"$argon2id$v=19$m=64,t=1,p=2$$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d", KEEL_EPARSE,
         "salt: missing", 28},
        {"$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JX9B4EA8*$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_EPARSE, "salt: invalid base64 character", 28},
        {"$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JX9B4EA==$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_EPARSE, "salt: invalid base64 character", 28},
        {"$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JX9B4EA85A$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_EPARSE, "salt: impossible base64 length", 28},
        {"$argon2id$v=19$m=64,t=1,p=2$970hLEBLIf+Bi+RV4oT2gR$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_EPARSE, "salt: non-canonical base64 (trailing bits)", 28},
        {"$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JXA$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d", KEEL_ERANGE,
         "salt: length 7 outside 8..64 bytes", 28},
        {"$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JX9B4EA85", KEEL_EPARSE, "hash: missing", 44},
        {"$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JX9B4EA85$", KEEL_EPARSE, "hash: missing", 45},
        {"$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d$",
         KEEL_EPARSE, "hash: unexpected '$' after the hash", 77},
        {"$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5-",
         KEEL_EPARSE, "hash: invalid base64 character", 45},
        {"$argon2id$v=19$m=64,t=1,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1a", KEEL_ERANGE,
         "hash: length 15 outside 16..64 bytes", 45},
        /* caps */
        {"$argon2id$v=19$m=1048577,t=1,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_ERANGE, "m: 1048577 outside 16..1048576 KiB", 17},
        {"$argon2id$v=19$m=15,t=1,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_ERANGE, "m: 15 outside 16..1048576 KiB", 17},
        {"$argon2id$v=19$m=64,t=21,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_ERANGE, "t: 21 outside 1..20", 22},
        {"$argon2id$v=19$m=64,t=0,p=2$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_ERANGE, "t: 0 outside 1..20", 22},
        {"$argon2id$v=19$m=256,t=1,p=17$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_ERANGE, "p: 17 outside 1..16", 27},
        {"$argon2id$v=19$m=64,t=1,p=0$0A3Y7m6JX9B4EA85$Rz5fuA6QnwLd8BPPHP1ausmpxU1hW+5d",
         KEEL_ERANGE, "p: 0 outside 1..16", 26},
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(cases); i++) {
        keel_diag d;
        memset(&d, 0, sizeof(d));
        keel_err e = keel_password_verify(cases[i].phc, "", 0, &d);
        if (e != cases[i].code || strcmp(d.msg, cases[i].msg) != 0 ||
            d.offset != cases[i].offset)
            fail_msg("case %zu (%s): got %s '%s' @%zu", i, cases[i].phc, keel_err_name(e), d.msg,
                     d.offset);
        assert_int_equal(cases[i].code, d.code);
        int need = -1;
        assert_int_equal(cases[i].code, keel_password_needs_rehash(cases[i].phc, NULL, &need, NULL));
    }
    /* longest accepted salt/hash; one more base64 character is too long */
    char s[KEEL_PASSWORD_PHC_SIZE + 8];
    memset(s, 0, sizeof(s));
    memcpy(s, "$argon2id$v=19$m=64,t=1,p=2$", 28);
    memset(s + 28, 'A', 87);
    keel_diag d;
    assert_int_equal(KEEL_ERANGE, keel_password_verify(s, "", 0, &d));
    assert_string_equal("salt: longer than 64 bytes", d.msg);
    /* over-long string */
    memset(s, 'A', sizeof(s) - 1);
    s[0] = '$';
    s[sizeof(s) - 1] = '\0';
    assert_int_equal(KEEL_EPARSE, keel_password_verify(s, "", 0, &d));
    assert_string_equal("hash: longer than 255 characters", d.msg);
    assert_int_equal(KEEL_EINVAL, keel_password_verify(NULL, "", 0, &d));
    assert_int_equal(KEEL_EINVAL, keel_password_verify(SMALL_EMPTY, NULL, 0, &d));
    /* sanity: the base string itself is valid */
    ASSERT_OK(keel_password_verify(SMALL_EMPTY, "", 0, &d));
}

static void test_internal_caps(void **state)
{
    (void)state;
    keel__phc_caps tiny = {32, 1, 1};
    keel_diag d;
    assert_int_equal(KEEL_ERANGE, keel__password_verify_caps(SMALL_EMPTY, "", 0, &tiny, &d));
    assert_string_equal("p: 2 outside 1..1", d.msg);
    tiny.max_p = 2;
    assert_int_equal(KEEL_ERANGE, keel__password_verify_caps(SMALL_EMPTY, "", 0, &tiny, &d));
    assert_string_equal("m: 64 outside 16..32 KiB", d.msg);
    tiny.max_m = 64;
    ASSERT_OK(keel__password_verify_caps(SMALL_EMPTY, "", 0, &tiny, &d));
}

static void test_verify_out_of_memory(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    for (int n = 0; n < 2; n++) {
        keel_test_failalloc_arm(n);
        assert_int_equal(KEEL_ENOMEM, keel_password_verify(SMALL_EMPTY, "", 0, NULL));
    }
    keel_test_failalloc_arm(-1);
    ASSERT_OK(keel_password_verify(SMALL_EMPTY, "", 0, NULL));
    keel_test_failalloc_remove();
}

/* ------------------------------------------------------------ tokens -- */

static void test_token_hash_known_answer(void **state)
{
    (void)state;
    /* printf 'rt_4f9c2a7e1b3d5f60' | openssl dgst -sha256 -hmac 'keel-token-key-0123456789abcdef' */
    const char *expect = "6f85ba75918174e9581854af7fedb754d1f4e72013510f8e3e51174bfc6cb21e";
    /* printf '' | openssl dgst -sha256 -hmac 'keel-token-key-0123456789abcdef' */
    const char *expect_empty = "870157c3e973fa874e6635c37831add6e530711587dfc515212fca9a9f8fcbfd";
    keel_secret *k;
    ASSERT_OK(keel_secret_create(&k, "keel-token-key-0123456789abcdef", 31));
    char out[KEEL_TOKEN_HASH_SIZE];
    ASSERT_OK(keel_token_hash(k, "rt_4f9c2a7e1b3d5f60", 19, out));
    assert_string_equal(expect, out);
    ASSERT_OK(keel_token_hash(k, NULL, 0, out));
    assert_string_equal(expect_empty, out);

    ASSERT_OK(keel_token_verify(k, "rt_4f9c2a7e1b3d5f60", 19, expect));
    assert_int_equal(KEEL_EDENIED, keel_token_verify(k, "rt_4f9c2a7e1b3d5f61", 19, expect));
    assert_int_equal(KEEL_EDENIED, keel_token_verify(k, "rt_4f9c2a7e1b3d5f60", 18, expect));
    char upper[KEEL_TOKEN_HASH_SIZE];
    memcpy(upper, expect, sizeof(upper));
    upper[0] = '6';
    upper[1] = 'F';
    assert_int_equal(KEEL_EDENIED, keel_token_verify(k, "rt_4f9c2a7e1b3d5f60", 19, upper));
    char shorter[KEEL_TOKEN_HASH_SIZE];
    memcpy(shorter, expect, sizeof(shorter));
    shorter[63] = '\0';
    assert_int_equal(KEEL_EDENIED, keel_token_verify(k, "rt_4f9c2a7e1b3d5f60", 19, shorter));
    char longer[KEEL_TOKEN_HASH_SIZE + 1];
    memcpy(longer, expect, 64);
    longer[64] = 'e';
    longer[65] = '\0';
    assert_int_equal(KEEL_EDENIED, keel_token_verify(k, "rt_4f9c2a7e1b3d5f60", 19, longer));

    /* a different key gives a different hash */
    keel_secret *k2;
    ASSERT_OK(keel_secret_create(&k2, "keel-token-key-0123456789abcdeF", 31));
    assert_int_equal(KEEL_EDENIED, keel_token_verify(k2, "rt_4f9c2a7e1b3d5f60", 19, expect));

    assert_int_equal(KEEL_EINVAL, keel_token_hash(NULL, "t", 1, out));
    assert_int_equal(KEEL_EINVAL, keel_token_hash(k, NULL, 1, out));
    assert_int_equal(KEEL_EINVAL, keel_token_hash(k, "t", 1, NULL));
    assert_int_equal(KEEL_EINVAL, keel_token_verify(k, "t", 1, NULL));
    keel_secret_destroy(k);
    keel_secret_destroy(k2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argon2_cffi_hashes_verify),
        cmocka_unit_test(test_argon2i_verifies_and_needs_rehash),
        cmocka_unit_test(test_argon2d_rejected),
        cmocka_unit_test(test_hash_round_trip),
        cmocka_unit_test(test_hash_argument_errors),
        cmocka_unit_test(test_needs_rehash),
        cmocka_unit_test(test_malformed_fields),
        cmocka_unit_test(test_internal_caps),
        cmocka_unit_test(test_verify_out_of_memory),
        cmocka_unit_test(test_token_hash_known_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
