/* Tests for src/pay/csv.c: the streaming RFC 4180 reader behind keel reconcile. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"
#include "pay/csv_int.h"

/* A source that hands out at most `chunk` bytes per read. */
typedef struct src {
    const char *p;
    size_t len, pos, chunk;
    int fail_at; /* fail the read that would start at or after this offset (-1 never) */
} src;

static long src_read(void *ud, char *buf, size_t cap)
{
    src *s = ud;
    if (s->fail_at >= 0 && s->pos >= (size_t)s->fail_at)
        return -1;
    size_t n = s->len - s->pos;
    if (n > cap)
        n = cap;
    if (n > s->chunk)
        n = s->chunk;
    memcpy(buf, s->p + s->pos, n);
    s->pos += n;
    return (long)n;
}

/* Parse text completely, rendering each record as "L<line>:[f1|f2|...]\n" (fields with
 * quotes shown as q"..."), into out.  Returns the final keel__csv_next code (0 or error). */
static int render(const char *text, size_t len, size_t chunk, char *out, size_t cap,
                  keel_diag *d)
{
    src s = {text, len, 0, chunk, -1};
    keel__csv *c = NULL;
    ASSERT_OK(keel__csv_create(&c, src_read, &s, "t.csv"));
    size_t o = 0;
    out[0] = '\0';
    int n;
    while ((n = keel__csv_next(c, d)) == 1) {
        const keel__csv_field *f = keel__csv_fields(c);
        o += (size_t)snprintf(out + o, cap - o, "L%llu:[", (unsigned long long)keel__csv_line(c));
        for (size_t i = 0; i < keel__csv_nfields(c); i++)
            o += (size_t)snprintf(out + o, cap - o, "%s%s%.*s", i ? "|" : "",
                                  f[i].quoted ? "q" : "", (int)f[i].len, f[i].ptr);
        o += (size_t)snprintf(out + o, cap - o, "]\n");
        assert_true(o < cap);
    }
    keel__csv_destroy(c);
    return n;
}

/* Every case must give the same result however the input is split into reads. */
static void expect(const char *text, const char *want)
{
    static const size_t chunks[] = {1, 2, 3, 7, 64 * 1024};
    for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        char out[4096];
        keel_diag d = {0};
        int n = render(text, strlen(text), chunks[k], out, sizeof(out), &d);
        if (n != 0)
            fail_msg("chunk %zu: error %d: %s", chunks[k], n, d.msg);
        assert_string_equal(want, out);
    }
}

static void expect_err(const char *text, int code, const char *msg)
{
    static const size_t chunks[] = {1, 4, 64 * 1024};
    for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        char out[4096];
        keel_diag d = {0};
        assert_int_equal(code, render(text, strlen(text), chunks[k], out, sizeof(out), &d));
        assert_string_equal(msg, d.msg);
        assert_int_equal(code, d.code);
    }
}

static void test_plain(void **state)
{
    (void)state;
    expect("id,amount\nA,1\nB,2\n", "L1:[id|amount]\nL2:[A|1]\nL3:[B|2]\n");
    expect("a,b", "L1:[a|b]\n");                   /* no final newline */
    expect("a,b,\n,,\n", "L1:[a|b|]\nL2:[||]\n");  /* empty fields */
    expect("a,b,", "L1:[a|b|]\n");                 /* empty last field at the end */
    expect("", "");
    expect("x\n", "L1:[x]\n");
    expect(" a , b \n", "L1:[ a | b ]\n"); /* spaces are data */
}

static void test_quotes(void **state)
{
    (void)state;
    expect("\"a\",\"b,c\"\n", "L1:[qa|qb,c]\n");
    expect("\"say \"\"hi\"\"\",x\n", "L1:[qsay \"hi\"|x]\n");
    expect("\"\"\n", "L1:[q]\n");
    expect("\"\",\"\"\n", "L1:[q|q]\n");
    expect("\"\"\"\"\n", "L1:[q\"]\n");
    /* Newlines inside quotes are data; the record keeps its first line number. */
    expect("id,note\n1,\"two\nlines\"\n2,x\n", "L1:[id|note]\nL2:[1|qtwo\nlines]\n"
                                              "L4:[2|x]\n");
    expect("1,\"cr\r\nlf\"\r\n2,y\r\n", "L1:[1|qcr\r\nlf]\nL3:[2|y]\n");
    expect("\"a\"", "L1:[qa]\n");
}

static void test_line_endings(void **state)
{
    (void)state;
    expect("a,b\r\nc,d\r\n", "L1:[a|b]\nL2:[c|d]\n");
    expect("a,b\r\nc,d\ne,f\r\ng,h", "L1:[a|b]\nL2:[c|d]\nL3:[e|f]\nL4:[g|h]\n");
    expect("\"a\"\r\n\"b\"\n", "L1:[qa]\nL2:[qb]\n");
    expect("a,\r\n", "L1:[a|]\n");
    /* Empty lines at the end are fine, in either style. */
    expect("a\n\n\r\n\n", "L1:[a]\n");
}

static void test_bom(void **state)
{
    (void)state;
    expect("\xEF\xBB\xBFid,x\n1,2\n", "L1:[id|x]\nL2:[1|2]\n");
    expect("\xEF\xBB\xBF", "");
    expect("\xEF\xBB\xBF\"q\"\n", "L1:[qq]\n");
    /* Only at the start, and only the full sequence. */
    expect("\xEF\xBBx\n", "L1:[\xEF\xBBx]\n");
    expect("a\n\xEF\xBB\xBF\n", "L1:[a]\nL2:[\xEF\xBB\xBF]\n");
}

static void test_field_positions(void **state)
{
    (void)state;
    const char *text = "ab,\"cd\"\n\"x\ny\",zz\n";
    src s = {text, strlen(text), 0, 3, -1};
    keel__csv *c;
    ASSERT_OK(keel__csv_create(&c, src_read, &s, "p.csv"));
    keel_diag d;
    assert_int_equal(1, keel__csv_next(c, &d));
    const keel__csv_field *f = keel__csv_fields(c);
    assert_int_equal(1, f[0].line);
    assert_int_equal(1, f[0].col);
    assert_int_equal(1, f[1].line);
    assert_int_equal(4, f[1].col);
    assert_int_equal(1, f[1].quoted);
    assert_int_equal(1, keel__csv_next(c, &d));
    f = keel__csv_fields(c);
    assert_int_equal(2, keel__csv_line(c));
    assert_int_equal(2, f[0].line);
    assert_int_equal(1, f[0].col);
    assert_int_equal(3, f[1].line); /* after the quoted newline */
    assert_int_equal(4, f[1].col);
    assert_int_equal(0, keel__csv_next(c, &d));
    assert_int_equal(0, keel__csv_next(c, &d)); /* stays at the end */
    assert_string_equal("p.csv", keel__csv_name(c));
    keel__csv_destroy(c);
}

static void test_bad_quoting(void **state)
{
    (void)state;
    expect_err("id\nab\"c\n", KEEL_EPARSE, "t.csv:2:3: quote inside an unquoted field");
    expect_err("id,x\n1,\"open\n\nmore", KEEL_EPARSE, "t.csv:2:3: unterminated quoted field");
    expect_err("\"a\"b\n", KEEL_EPARSE, "t.csv:1:4: unexpected character after a closing quote");
    expect_err("\"a\" \n", KEEL_EPARSE, "t.csv:1:4: unexpected character after a closing quote");
    expect_err("a\rb\n", KEEL_EPARSE, "t.csv:1:2: carriage return not followed by line feed");
    expect_err("a,b\r", KEEL_EPARSE, "t.csv:1:4: carriage return not followed by line feed");
}

static void test_blank_line_inside(void **state)
{
    (void)state;
    expect_err("a\n\nb\n", KEEL_EPARSE, "t.csv:2: empty line inside the data");
    expect_err("\na\n", KEEL_EPARSE, "t.csv:1: empty line inside the data");
    expect_err("a\r\n\r\n\r\nb\r\n", KEEL_EPARSE, "t.csv:2: empty line inside the data");
}

static void test_caps(void **state)
{
    (void)state;
    /* Exactly KEEL_RECON_RECORD_MAX raw bytes (newline included) is fine, one more is not. */
    size_t n = KEEL_RECON_RECORD_MAX;
    char *big = malloc(n + 16);
    assert_non_null(big);
    memcpy(big, "h\n", 2);
    memset(big + 2, 'x', n - 1);
    big[2 + n - 1] = '\n';
    big[2 + n] = '\0';
    char *out = malloc(n + 64);
    keel_diag d;
    assert_int_equal(0, render(big, strlen(big), 4096, out, n + 64, &d));
    memset(big + 2, 'x', n);
    big[2 + n] = '\n';
    big[3 + n] = '\0';
    assert_int_equal(KEEL_ETOOBIG, render(big, strlen(big), 4096, out, n + 64, &d));
    assert_string_equal("t.csv:2: record longer than 65536 bytes", d.msg);
    assert_int_equal(2, d.offset);
    /* Quoted content counts too. */
    big[2] = '"';
    memset(big + 3, 'y', n);
    memcpy(big + 3 + n, "\"\n", 3);
    assert_int_equal(KEEL_ETOOBIG, render(big, strlen(big), 4096, out, n + 64, &d));
    /* Field count cap. */
    size_t k = 0;
    for (unsigned i = 0; i <= KEEL_RECON_FIELDS_MAX; i++)
        big[k++] = ',';
    big[k++] = '\n';
    big[k] = '\0';
    assert_int_equal(KEEL_ETOOBIG, render(big, k, 4096, out, n + 64, &d));
    assert_string_equal("t.csv:1: more than 1024 fields", d.msg);
    big[KEEL_RECON_FIELDS_MAX - 1] = '\n'; /* 1023 commas: 1024 fields, fine */
    big[KEEL_RECON_FIELDS_MAX] = '\0';
    assert_int_equal(0, render(big, KEEL_RECON_FIELDS_MAX, 4096, out, n + 64, &d));
    free(big);
    free(out);
}

static void test_read_error(void **state)
{
    (void)state;
    const char *text = "a,b\nc,d\n";
    src s = {text, strlen(text), 0, 4, 4};
    keel__csv *c;
    ASSERT_OK(keel__csv_create(&c, src_read, &s, "r.csv"));
    keel_diag d;
    assert_int_equal(1, keel__csv_next(c, &d));
    assert_int_equal(KEEL_EIO, keel__csv_next(c, &d));
    assert_string_equal("r.csv:2: read error", d.msg);
    keel__csv_destroy(c);
}

static void test_long_name_and_nul(void **state)
{
    (void)state;
    char name[200];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    memcpy(name + sizeof(name) - 7, "/x.csv", 7);
    const char text[] = "a\"";
    src s = {text, 2, 0, 10, -1};
    keel__csv *c;
    ASSERT_OK(keel__csv_create(&c, src_read, &s, name));
    assert_int_equal(64, strlen(keel__csv_name(c)));
    assert_memory_equal("...", keel__csv_name(c), 3);
    keel_diag d;
    assert_int_equal(KEEL_EPARSE, keel__csv_next(c, &d));
    assert_non_null(strstr(d.msg, "/x.csv:1:2: quote inside"));
    keel__csv_destroy(c);
    /* NUL bytes are data. */
    const char nul[] = "a\0b,c\n";
    src s2 = {nul, sizeof(nul) - 1, 0, 100, -1};
    ASSERT_OK(keel__csv_create(&c, src_read, &s2, NULL));
    assert_int_equal(1, keel__csv_next(c, &d));
    assert_int_equal(2, keel__csv_nfields(c));
    assert_int_equal(3, keel__csv_fields(c)[0].len);
    keel__csv_destroy(c);
}

static void test_oom(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    int ok = 0;
    for (int n = 0; n < 10 && !ok; n++) {
        keel_test_failalloc_arm(n);
        src s = {"a", 1, 0, 1, -1};
        keel__csv *c = NULL;
        keel_err e = keel__csv_create(&c, src_read, &s, "m");
        if (e == KEEL_OK) {
            ok = 1;
            keel__csv_destroy(c);
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
            assert_null(c);
        }
    }
    keel_test_failalloc_remove();
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_quotes),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_field_positions),
        cmocka_unit_test(test_bad_quoting),
        cmocka_unit_test(test_blank_line_inside),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_read_error),
        cmocka_unit_test(test_long_name_and_nul),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
