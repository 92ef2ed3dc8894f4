/* Tests for src/core/dotenv.c: every syntax rule and every error with its line and message. */
#define _GNU_SOURCE 1 /* setenv, strdup, chdir */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/config.h>

/* Collects assignments as "KEY=[VALUE]|" so one string comparison checks a whole file. */
typedef struct collect {
    keel_buf out;
    int calls;
    int fail_at; /* return KEEL_EDENIED on this call number (1-based), 0 = never */
} collect;

static keel_err collect_cb(const char *key, size_t klen, const char *value, size_t vlen, void *ud)
{
    collect *c = ud;
    c->calls++;
    assert_int_equal(klen, strlen(key));   /* NUL-terminated, no embedded NUL */
    assert_int_equal(vlen, strlen(value)); /* idem */
    if (c->fail_at == c->calls)
        return KEEL_EDENIED;
    keel_err e = keel_buf_appendf(&c->out, "%s=[%s]|", key, value);
    return e;
}

/* Parse text (NUL-terminated) and return the collected string; caller frees with free(). */
static char *run(const char *text)
{
    collect c;
    memset(&c, 0, sizeof(c));
    keel_buf_init(&c.out, 1 << 16);
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_dotenv_parse(text, strlen(text), collect_cb, &c, &d);
    if (e != KEEL_OK)
        print_error("unexpected error %d: %s\n", e, d.msg);
    assert_int_equal(KEEL_OK, e);
    char *r = strdup(c.out.ptr ? c.out.ptr : "");
    keel_buf_cleanup(&c.out);
    return r;
}

#define ASSERT_PARSES(text, expect)                                                                \
    do {                                                                                           \
        char *got_ = run(text);                                                                    \
        assert_string_equal(expect, got_);                                                         \
        free(got_);                                                                                \
    } while (0)

/* Expect a parse failure of len bytes: code, line, exact message, and no callback at all. */
static void expect_error(const char *text, size_t len, keel_err code, size_t line, const char *msg)
{
    collect c;
    memset(&c, 0, sizeof(c));
    keel_buf_init(&c.out, 1 << 16);
    keel_diag d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(code, keel_dotenv_parse(text, len, collect_cb, &c, &d));
    assert_int_equal(code, d.code);
    assert_int_equal(line, d.offset);
    assert_string_equal(msg, d.msg);
    assert_int_equal(0, c.calls);
    keel_buf_cleanup(&c.out);
}

#define EXPECT_ERROR(text, line, msg) expect_error(text, sizeof(text) - 1, KEEL_EPARSE, line, msg)

static void test_basic_blank_comment(void **state)
{
    (void)state;
    ASSERT_PARSES("", "");
    ASSERT_PARSES("A=1\nB=two\n", "A=[1]|B=[two]|");
    ASSERT_PARSES("A=1", "A=[1]|"); /* no final newline */
    ASSERT_PARSES("\n  \n\t\n# comment\n   # indented comment\nA=1\n\n", "A=[1]|");
    ASSERT_PARSES("_x9=1\nlower_case=2\n", "_x9=[1]|lower_case=[2]|");
    /* a later assignment is reported again (the env view keeps the last one) */
    ASSERT_PARSES("A=1\nA=2\n", "A=[1]|A=[2]|");
}

static void test_export_prefix(void **state)
{
    (void)state;
    ASSERT_PARSES("export A=1\nexport\tB=2\n  export   C = 3\n", "A=[1]|B=[2]|C=[3]|");
    /* "export" alone is an ordinary name */
    ASSERT_PARSES("export=3\nexport = 4\nexported=5\n", "export=[3]|export=[4]|exported=[5]|");
}

static void test_blanks_around_equals(void **state)
{
    (void)state;
    ASSERT_PARSES("A = 1\nB\t=\t2  \nC=   \n", "A=[1]|B=[2]|C=[]|");
}

static void test_unquoted_values(void **state)
{
    (void)state;
    ASSERT_PARSES("A=  x y  \n", "A=[x y]|");
    ASSERT_PARSES("B=x#y\n", "B=[x#y]|");
    ASSERT_PARSES("C=x #y\n", "C=[x]|");
    ASSERT_PARSES("D=x\t# tab comment\n", "D=[x]|");
    ASSERT_PARSES("E=#notcomment\n", "E=[#notcomment]|");
    ASSERT_PARSES("F= # only a comment\n", "F=[]|");
    ASSERT_PARSES("G=\n", "G=[]|");
    ASSERT_PARSES("H=a=b=c\n", "H=[a=b=c]|");
    ASSERT_PARSES("I=it's\n", "I=[it's]|");
    ASSERT_PARSES("J=postgres://u:p@h:5432/db?x=1#frag\n",
                  "J=[postgres://u:p@h:5432/db?x=1#frag]|");
}

static void test_single_quoted_literal(void **state)
{
    (void)state;
    ASSERT_PARSES("A='lit \\n $X # no'\n", "A=[lit \\n $X # no]|");
    ASSERT_PARSES("B='  sp  '  # comment\n", "B=[  sp  ]|");
    ASSERT_PARSES("C='say \"hi\"'\n", "C=[say \"hi\"]|");
    ASSERT_PARSES("D=''\n", "D=[]|");
    ASSERT_PARSES("E='two\nlines'\nF=1\n", "E=[two\nlines]|F=[1]|");
}

static void test_double_quoted_escapes(void **state)
{
    (void)state;
    ASSERT_PARSES("A=\"a\\nb\\tc\\\\d\\\"e\\qf\\rg\"\n", "A=[a\nb\tc\\d\"e\\qf\rg]|");
    ASSERT_PARSES("B=\"  x # not a comment '  \"\n", "B=[  x # not a comment '  ]|");
    ASSERT_PARSES("C=\"\"\n", "C=[]|");
    ASSERT_PARSES("D=\"x\" # trailing comment\n", "D=[x]|");
    /* an escaped backslash just before the closing quote */
    ASSERT_PARSES("E=\"end\\\\\"\n", "E=[end\\]|");
}

static void test_multiline(void **state)
{
    (void)state;
    ASSERT_PARSES("KEY=\"-----BEGIN-----\nabc\ndef\n-----END-----\"\nNEXT=1\n",
                  "KEY=[-----BEGIN-----\nabc\ndef\n-----END-----]|NEXT=[1]|");
    /* line numbers keep counting inside multi-line values */
    EXPECT_ERROR("A=\"x\ny\nz\"\nBAD\n", 4, "line 4: missing '=' after key 'BAD'");
    EXPECT_ERROR("A='x\ny'\n\nB=1 \nC C=1\n", 5, "line 5: missing '=' after key 'C'");
}

static void test_crlf_and_bom(void **state)
{
    (void)state;
    ASSERT_PARSES("A=1\r\nB=\"x\r\ny\"\r\n# c\r\nC='q'\r\nD=v # c\r\n\r\nE=e",
                  "A=[1]|B=[x\ny]|C=[q]|D=[v]|E=[e]|");
    ASSERT_PARSES("\xEF\xBB\xBF"
                  "A=1\n",
                  "A=[1]|");
    EXPECT_ERROR("A=1\r\nB=2\r\nNOPE\r\n", 3, "line 3: missing '=' after key 'NOPE'");
}

static void test_errors_with_line_numbers(void **state)
{
    (void)state;
    EXPECT_ERROR("A=1\nB=2\nFOO\n", 3, "line 3: missing '=' after key 'FOO'");
    EXPECT_ERROR("FOO BAR=1\n", 1, "line 1: missing '=' after key 'FOO'");
    EXPECT_ERROR("FOO # comment\n", 1, "line 1: missing '=' after key 'FOO'");
    EXPECT_ERROR("A=1\nFOO-BAR=1\n", 2, "line 2: unexpected '-' in variable name 'FOO'");
    EXPECT_ERROR("FOO.BAR=1\n", 1, "line 1: unexpected '.' in variable name 'FOO'");
    EXPECT_ERROR("\n\n1A=2\n", 3, "line 3: unexpected '1' where a variable name should start");
    EXPECT_ERROR("=2\n", 1, "line 1: unexpected '=' where a variable name should start");
    EXPECT_ERROR("\xc3\xa9=1\n", 1,
                 "line 1: unexpected byte c3 where a variable name should start");
    EXPECT_ERROR("A=\"x\" y\n", 1, "line 1: unexpected 'y' after the closing quote of key 'A'");
    EXPECT_ERROR("A='x'y\n", 1, "line 1: unexpected 'y' after the closing quote of key 'A'");
    EXPECT_ERROR("A=1\nB=\"abc\nC=1\n", 2, "line 2: unterminated double-quoted value for key 'B'");
    EXPECT_ERROR("A=1\nB='abc", 2, "line 2: unterminated single-quoted value for key 'B'");
    EXPECT_ERROR("A=\"ends with backslash\\", 1,
                 "line 1: unterminated double-quoted value for key 'A'");
}

static void test_nul_bytes(void **state)
{
    (void)state;
    EXPECT_ERROR("A=1\nB=x\0y\n", 2, "line 2: NUL byte in input");
    EXPECT_ERROR("A=1\n# comment \0\n", 2, "line 2: NUL byte in input");
    EXPECT_ERROR("A=\"a\nb\0\"\n", 2, "line 2: NUL byte in input");
    EXPECT_ERROR("\0", 1, "line 1: NUL byte in input");
    EXPECT_ERROR("A\0=1", 1, "line 1: NUL byte in input");
}

static void test_values_never_in_messages(void **state)
{
    (void)state;
    keel_diag d;
    const char *t = "KEY=\"supersecretvalue\nmore";
    assert_int_equal(KEEL_EPARSE, keel_dotenv_parse(t, strlen(t), NULL, NULL, &d));
    assert_null(strstr(d.msg, "supersecret"));
    t = "KEY='hunter2' trailing";
    assert_int_equal(KEEL_EPARSE, keel_dotenv_parse(t, strlen(t), NULL, NULL, &d));
    assert_null(strstr(d.msg, "hunter2"));
}

static void test_size_cap_and_arguments(void **state)
{
    (void)state;
    size_t n = KEEL_DOTENV_MAX_BYTES + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, '\n', n);
    keel_diag d;
    assert_int_equal(KEEL_ETOOBIG, keel_dotenv_parse(big, n, NULL, NULL, &d));
    assert_int_equal(0, d.offset);
    assert_string_equal("input is 1048577 bytes, larger than the 1048576-byte limit", d.msg);
    /* exactly at the limit is fine; one long value too */
    memcpy(big, "A=", 2);
    memset(big + 2, 'v', n - 3);
    collect c;
    memset(&c, 0, sizeof(c));
    keel_buf_init(&c.out, 2 * n);
    ASSERT_OK(keel_dotenv_parse(big, n - 1, collect_cb, &c, &d));
    assert_int_equal(1, c.calls);
    assert_int_equal(2 + (n - 3) + 3, c.out.len); /* "A=[" + value + "]|" */
    keel_buf_cleanup(&c.out);
    free(big);

    ASSERT_OK(keel_dotenv_parse(NULL, 0, collect_cb, &c, NULL));
    assert_int_equal(KEEL_EINVAL, keel_dotenv_parse(NULL, 5, NULL, NULL, &d));
    /* validation only, no diag */
    ASSERT_OK(keel_dotenv_parse("A=1", 3, NULL, NULL, NULL));
    assert_int_equal(KEEL_EPARSE, keel_dotenv_parse("A", 1, NULL, NULL, NULL));
    /* len is honoured: the text need not be NUL-terminated */
    ASSERT_OK(keel_dotenv_parse("A=1\nBROKEN", 4, NULL, NULL, NULL));
}

static void test_callback_error_stops(void **state)
{
    (void)state;
    collect c;
    memset(&c, 0, sizeof(c));
    c.fail_at = 2;
    keel_buf_init(&c.out, 1024);
    keel_diag d;
    const char *t = "A=1\n\nB=2\nC=3\n";
    assert_int_equal(KEEL_EDENIED, keel_dotenv_parse(t, strlen(t), collect_cb, &c, &d));
    assert_int_equal(2, c.calls);
    assert_int_equal(3, d.offset);
    assert_string_equal("line 3: assignment of 'B' rejected: permission denied", d.msg);
    assert_string_equal("A=[1]|", c.out.ptr);
    keel_buf_cleanup(&c.out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_blank_comment),
        cmocka_unit_test(test_export_prefix),
        cmocka_unit_test(test_blanks_around_equals),
        cmocka_unit_test(test_unquoted_values),
        cmocka_unit_test(test_single_quoted_literal),
        cmocka_unit_test(test_double_quoted_escapes),
        cmocka_unit_test(test_multiline),
        cmocka_unit_test(test_crlf_and_bom),
        cmocka_unit_test(test_errors_with_line_numbers),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_values_never_in_messages),
        cmocka_unit_test(test_size_cap_and_arguments),
        cmocka_unit_test(test_callback_error_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
