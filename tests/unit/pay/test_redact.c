/* Tests for src/pay/redact.c: PAN / CVV / track redaction, one-shot and streaming, and the
 * keel_log hook.  Every expectation goes through check(), which also asserts that streaming
 * the input split at every byte position (and byte by byte) gives the one-shot output, and
 * that redacting the output again changes nothing. */
#define _GNU_SOURCE 1 /* mkdtemp */
#include "test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel_int.h"

#include <keel/log.h>
#include <keel/redact.h>
#include <keel/tokenizer.h>

#include "pay/redact_int.h"

/* ------------------------------------------------------------ helpers -- */

/* Test cards of reference.md 9.1 (all Luhn-valid). */
static const char *const g_pans[] = {
    "4111111111111111", "4242424242424242", "4012888888881881", "4222222222222",
    "378282246310005",  "371449635398431",  "30569309025904",   "38520000023237",
    "36227206271667",   "3056930009020004", "6011111111111117", "6011000990139424",
    "3530111333300000", "3566002020360505", "5555555555554444", "5105105105105100",
    "2223003122003222", "6200000000000005", "6205500000000000004",
};

/* Collecting sink for the streaming redactor. */
typedef struct sink_buf {
    char *p;
    size_t len, cap;
    int fail_after; /* < 0: never; otherwise fail once this many calls succeeded */
    int calls;
} sink_buf;

static keel_err sink_write(void *ud, const char *p, size_t n)
{
    sink_buf *s = ud;
    if (s->fail_after >= 0 && s->calls >= s->fail_after)
        return KEEL_EIO;
    s->calls++;
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;
        char *q = realloc(s->p, cap);
        assert_non_null(q);
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
    return KEEL_OK;
}

/* One-shot redaction of in[0..n) as a malloc'd NUL-terminated string (the input itself when
 * nothing was redacted, checking that the fast path left out untouched). */
static char *oneshot(const char *in, size_t n, size_t *out_len, keel_redact_stats *st)
{
    keel_buf b;
    keel_buf_init(&b, 1 << 20);
    keel_redact_stats s;
    ASSERT_OK(keel_redact(in, n, &b, &s));
    char *r = malloc(KEEL_MAX(n, b.len) + 1);
    assert_non_null(r);
    if (s.pans + s.cvvs + s.tracks == 0) {
        assert_null(b.ptr); /* no copy, no allocation */
        assert_int_equal(0, b.len);
        assert_int_equal(0, keel_redact_needed(in, n));
        memcpy(r, in, n);
        *out_len = n;
    } else {
        assert_int_equal(1, keel_redact_needed(in, n));
        memcpy(r, b.ptr, b.len);
        *out_len = b.len;
    }
    r[*out_len] = '\0';
    keel_buf_cleanup(&b);
    if (st != NULL)
        *st = s;
    return r;
}

/* Stream in[0..n) through a fresh redactor fed in pieces of the given sizes (0-terminated
 * list; the rest in one piece), or byte by byte when bytewise is set. */
static void stream(const char *in, size_t n, const size_t *cuts, int bytewise, sink_buf *out,
                   keel_redact_stats *st)
{
    keel_redactor *r;
    memset(out, 0, sizeof *out);
    out->fail_after = -1;
    ASSERT_OK(keel_redactor_create(&r, sink_write, out));
    size_t off = 0;
    if (bytewise) {
        for (; off < n; off++) {
            ASSERT_OK(keel_redactor_feed(r, in + off, 1));
            assert_true(keel__redactor_pending(r) < KEEL_REDACT_LOOKAHEAD);
        }
    }
    for (size_t k = 0; cuts != NULL && cuts[k] != 0 && off < n; k++) {
        size_t m = KEEL_MIN(cuts[k], n - off);
        ASSERT_OK(keel_redactor_feed(r, in + off, m));
        assert_true(keel__redactor_pending(r) < KEEL_REDACT_LOOKAHEAD);
        off += m;
    }
    ASSERT_OK(keel_redactor_feed(r, in + off, n - off));
    ASSERT_OK(keel_redactor_finish(r));
    assert_int_equal(0, keel__redactor_pending(r));
    if (st != NULL)
        keel_redactor_stats_get(r, st);
    keel_redactor_destroy(r);
    if (out->p == NULL) {
        out->p = calloc(1, 1);
        assert_non_null(out->p);
    }
}

static void assert_stats_eq(const keel_redact_stats *a, const keel_redact_stats *b)
{
    assert_int_equal(a->pans, b->pans);
    assert_int_equal(a->cvvs, b->cvvs);
    assert_int_equal(a->tracks, b->tracks);
}

/* The one-shot result of in, checked for streaming equivalence and idempotence. */
static char *redact_checked(const char *in, size_t n, size_t *out_len, keel_redact_stats *st)
{
    keel_redact_stats s1, s2;
    char *want = oneshot(in, n, out_len, &s1);
    sink_buf sb;
    for (size_t cut = 0; cut <= n; cut++) {
        size_t cuts[2] = {cut, 0};
        stream(in, n, cut == 0 ? NULL : cuts, 0, &sb, &s2);
        if (sb.len != *out_len || memcmp(sb.p, want, sb.len) != 0)
            fail_msg("split at %zu: stream gave \"%s\", one-shot \"%s\"", cut, sb.p, want);
        assert_stats_eq(&s1, &s2);
        free(sb.p);
    }
    stream(in, n, NULL, 1, &sb, &s2);
    assert_int_equal(*out_len, sb.len);
    assert_memory_equal(want, sb.p, sb.len);
    assert_stats_eq(&s1, &s2);
    free(sb.p);
    /* three pieces of every pair of sizes up to 40 bytes */
    for (size_t a = 1; a < KEEL_MIN(n, 40); a++)
        for (size_t b = 1; a + b < KEEL_MIN(n, 40); b++) {
            size_t cuts[3] = {a, b, 0};
            stream(in, n, cuts, 0, &sb, NULL);
            assert_int_equal(*out_len, sb.len);
            assert_memory_equal(want, sb.p, sb.len);
            free(sb.p);
        }
    /* idempotence */
    size_t again_len;
    keel_redact_stats s3;
    char *again = oneshot(want, *out_len, &again_len, &s3);
    if (again_len != *out_len || memcmp(again, want, again_len) != 0)
        fail_msg("not idempotent: \"%s\" -> \"%s\" -> \"%s\"", in, want, again);
    assert_int_equal(0, s3.pans + s3.cvvs + s3.tracks);
    free(again);
    if (st != NULL)
        *st = s1;
    return want;
}

static void check_n(const char *in, const char *expect, uint64_t pans, uint64_t cvvs,
                    uint64_t tracks)
{
    size_t len;
    keel_redact_stats st;
    char *got = redact_checked(in, strlen(in), &len, &st);
    if (strcmp(got, expect) != 0)
        fail_msg("redact(\"%s\")\n  got    \"%s\"\n  wanted \"%s\"", in, got, expect);
    assert_int_equal(strlen(expect), len);
    if (st.pans != pans || st.cvvs != cvvs || st.tracks != tracks)
        fail_msg("redact(\"%s\"): counts %llu/%llu/%llu, wanted %llu/%llu/%llu", in,
                 (unsigned long long)st.pans, (unsigned long long)st.cvvs,
                 (unsigned long long)st.tracks, (unsigned long long)pans,
                 (unsigned long long)cvvs, (unsigned long long)tracks);
    free(got);
}

static void check_pan(const char *in, const char *expect)
{
    check_n(in, expect, 1, 0, 0);
}

static void check_same(const char *in)
{
    check_n(in, in, 0, 0, 0);
}

/* pan laid out in groups of the given sizes (0-terminated) joined by sep. */
static void group(const char *pan, const int *sizes, char sep, char *out)
{
    size_t o = 0, i = 0, n = strlen(pan);
    for (int k = 0; sizes[k] != 0 && i < n; k++) {
        if (k > 0)
            out[o++] = sep;
        for (int j = 0; j < sizes[k] && i < n; j++)
            out[o++] = pan[i++];
    }
    while (i < n)
        out[o++] = pan[i++];
    out[o] = '\0';
}

static void mask_of(const char *pan, char *out)
{
    size_t n = strlen(pan);
    memset(out, '*', n - 4);
    memcpy(out + n - 4, pan + n - 4, 5);
}

/* -------------------------------------------------------------- PANs ---- */

/* The redactor decides with its own running Luhn sum; the reference is the tokenizer's. */
static int luhn(const char *digits, size_t n)
{
    return keel_card_luhn_valid((keel_str){digits, n});
}

static void test_luhn(void **state)
{
    (void)state;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(g_pans); i++)
        assert_int_equal(1, luhn(g_pans[i], strlen(g_pans[i])));
    assert_int_equal(0, luhn("4242424242424241", 16));
    assert_int_equal(0, luhn("1234567890123", 13));
    assert_int_equal(0, luhn("1700000000000", 13));
    assert_int_equal(1, luhn("1111222233334444", 16));
    assert_int_equal(0, luhn("4111x11111111111", 16));
    assert_int_equal(0, luhn(NULL, 3));
}

static void test_reference_pans_every_layout(void **state)
{
    (void)state;
    static const int g4[] = {4, 4, 4, 4, 4, 0};      /* 4-4-4-4(-3) */
    static const int amex[] = {4, 6, 5, 0};          /* Amex 15 */
    static const int diners[] = {4, 6, 4, 0};        /* Diners 14 */
    static const int visa13[] = {4, 4, 5, 0};        /* 13-digit Visa */
    static const int up19[] = {6, 13, 0};            /* 19-digit UnionPay, 6-13 */
    char lay[64], in[160], want[160], mask[32];
    for (size_t i = 0; i < KEEL_ARRAY_LEN(g_pans); i++) {
        const char *pan = g_pans[i];
        size_t n = strlen(pan);
        mask_of(pan, mask);
        const int *typical = n == 15 ? amex : n == 14 ? diners : n == 13 ? visa13 : n == 19 ? up19 : g4;
        check_pan(pan, mask);
        for (int v = 0; v < 4; v++) {
            group(pan, v < 2 ? g4 : typical, v % 2 ? '-' : ' ', lay);
            check_pan(lay, mask);
            snprintf(in, sizeof in, "card %s on file", lay);
            snprintf(want, sizeof want, "card %s on file", mask);
            check_pan(in, want);
            snprintf(in, sizeof in, "{\"pan\":\"%s\",\"amount\":1999}", lay);
            snprintf(want, sizeof want, "{\"pan\":\"%s\",\"amount\":1999}", mask);
            check_pan(in, want);
            snprintf(in, sizeof in, "%s was declined", lay); /* start of text */
            snprintf(want, sizeof want, "%s was declined", mask);
            check_pan(in, want);
            snprintf(in, sizeof in, "declined: %s", lay); /* end of text */
            snprintf(want, sizeof want, "declined: %s", mask);
            check_pan(in, want);
        }
    }
}

static void test_spec_examples(void **state)
{
    (void)state;
    check_pan("card 4111-1111-1111-1111", "card ************1111");
    check_pan("3782 822463 10005", "***********0005");
    check_pan("4111 1111 1111 1111", "************1111");
    check_pan("6205500000000000004", "***************0004");
    check_n("Customer support note: card 4111-1111-1111-1111 cvv: 999 was used",
            "Customer support note: card ************1111 cvv: [REDACTED_CVV] was used", 1, 1, 0);
}

static void test_group_rules(void **state)
{
    (void)state;
    /* a longer chain: the longest valid 13-19 digit candidate wins, the year stays */
    check_pan("4111 1111 1111 1111 2028", "************1111 2028");
    check_pan("exp 4111-1111-1111-1111-2028", "exp ************1111-2028");
    /* a leading group that does not make a valid PAN stays */
    check_pan("qty 12 4111111111111111", "qty 12 ************1111");
    /* letters and '*' are non-digits: adjacent PANs are still redacted (conservative) */
    check_pan("abc4111111111111111", "abc************1111");
    check_pan("4111111111111111abc", "************1111abc");
    check_pan("**4111111111111111**", "**************1111**");
    check_pan("pan=4111111111111111;", "pan=************1111;");
    check_pan("4111 1111-1111 1111", "************1111"); /* mixed separators */
    /* two PANs */
    check_n("4111111111111111 and 5555-5555-5555-4444",
            "************1111 and ************4444", 2, 0, 0);
    /* two overlapping valid numbers in one chain: the kept last four start the second */
    check_n("4111 1111 1111 1111 2222 3333 4444", "************************4444", 2, 0, 0);
    /* 20+ digit runs are left alone, even with a valid 16-digit prefix */
    check_same("41111111111111110000");
    check_same("ref 4111111111111111000000000 x");
    /* a run of 20 digits cannot be split by a separator either */
    check_same("41111111111111110000 2222");
    /* double separators do not chain */
    check_same("4111  1111  1111");
    check_same("4111--1111--1111--1111");
}

static void test_lookalikes_stay(void **state)
{
    (void)state;
    static const char *const same[] = {
        "card=4242424242424241",         /* Stripe's Luhn-invalid card */
        "order 1234567890123",            /* 13 digits, fails Luhn */
        "ts=1700000000000",               /* epoch ms, fails Luhn */
        "id 1234567890123456 / 12345678901234567",
        "acct 123456789012",              /* 12 digits */
        "acct 411111111111",              /* 12 digits */
        "call +1 415-555-0132 today",
        "+44 20 7946 0958",
        "2024-01-15T12:30:45.123Z",
        "2024-01-15 12:30:45,123 INFO",
        "550e8400-e29b-41d4-a716-446655440000",
        "from 192.168.100.200 and 10.0.0.1",
        "amount 1234.56 USD, total 1,234,567.89",
        "Visa ending 4242",
        "last4=4242 brand=Mastercard",
        "exp 12/28",
        "expiry 2028-12",
        "{\"exp_month\":12,\"exp_year\":2028,\"last4\":\"4242\",\"brand\":\"visa\"}",
        "",
        "no digits at all, just cats and cows",
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(same); i++)
        check_same(same[i]);
}

/* --------------------------------------------------------------- CVV ---- */

static void test_cvv_forms(void **state)
{
    (void)state;
    static const char *const pairs[][2] = {
        {"cvv: 999", "cvv: [REDACTED_CVV]"},
        {"\"cvv\":\"123\"", "\"cvv\":\"[REDACTED_CVV]\""},
        {"{\"cvv\": \"123\", \"x\": 1}", "{\"cvv\": \"[REDACTED_CVV]\", \"x\": 1}"},
        {"{\"cvc\":123}", "{\"cvc\":[REDACTED_CVV]}"},
        {"CVC2: 1234", "CVC2: [REDACTED_CVV]"},
        {"cid=987", "cid=[REDACTED_CVV]"},
        {"CVV2=4321;", "CVV2=[REDACTED_CVV];"},
        {"Cvc = 555", "Cvc = [REDACTED_CVV]"},
        {"cvv\t:\t'321'", "cvv\t:\t'[REDACTED_CVV]'"},
        {"{'cvv': '123'}", "{'cvv': '[REDACTED_CVV]'}"},
        {"{\\\"cvv\\\":\\\"123\\\"}", "{\\\"cvv\\\":\\\"[REDACTED_CVV]\\\"}"},
        {"card_cvv: 123", "card_cvv: [REDACTED_CVV]"},
        {"card.cvc=123x", "card.cvc=[REDACTED_CVV]x"},
        {"cvv: 123cvv: 456", "cvv: [REDACTED_CVV]cvv: [REDACTED_CVV]"},
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(pairs); i++) {
        size_t n = 0;
        for (const char *p = pairs[i][1]; (p = strstr(p, "[REDACTED_CVV]")) != NULL; p++)
            n++;
        check_n(pairs[i][0], pairs[i][1], 0, n, 0);
    }
    /* not CVVs */
    check_same("xcvv: 123");
    check_same("cvvx: 123");
    check_same("cvv 123");
    check_same("cvv: 12");
    check_same("cvv: 12345");
    check_same("cvn: 123");
    check_same("cid: abc");
    char pad[64], padw[64];
    snprintf(pad, sizeof pad, "cvv:%16s123", ""); /* 16 spaces: the padding bound */
    snprintf(padw, sizeof padw, "cvv:%16s[REDACTED_CVV]", "");
    check_n(pad, padw, 0, 1, 0);
    snprintf(pad, sizeof pad, "cvv:%17s123", ""); /* 17: past it */
    check_same(pad);
    snprintf(pad, sizeof pad, "cvv%16s=%16s\\\"123", "", "");
    snprintf(padw, sizeof padw, "cvv%16s=%16s\\\"[REDACTED_CVV]", "", "");
    check_n(pad, padw, 0, 1, 0);
    /* a PAN after a CVV label is a PAN */
    check_pan("cvv: 4111 1111 1111 1111", "cvv: ************1111");
    check_pan("cvv: 4111111111111111", "cvv: ************1111");
}

/* ------------------------------------------------------------ tracks ---- */

static void test_tracks(void **state)
{
    (void)state;
    static const char t1[] = "%B4111111111111111^DOE/JOHN^28121010000000000000000000000000?";
    static const char t2[] = ";4111111111111111=28121010000000000000?";
    check_n(t1, "[REDACTED_TRACK]", 0, 0, 1);
    check_n(t2, "[REDACTED_TRACK]", 0, 0, 1);
    check_n("swipe " "%B4111111111111111^DOE/JOHN^28121010000000000000000000000000?" " ok",
            "swipe [REDACTED_TRACK] ok", 0, 0, 1);
    check_n("{\"track1\":\"%B4111111111111111^DOE/JOHN^28121010000000000000000000000000?\","
            "\"track2\":\";4111111111111111=28121010000000000000?\"}",
            "{\"track1\":\"[REDACTED_TRACK]\",\"track2\":\"[REDACTED_TRACK]\"}", 0, 0, 2);
    check_n(";4111111111111111=28121010000000000000?;5555555555554444=2812101?",
            "[REDACTED_TRACK][REDACTED_TRACK]", 0, 0, 2);
    check_n("%B4111111111111111^^2812?", "[REDACTED_TRACK]", 0, 0, 1); /* empty name */
    check_n(";4111111111111111=?", "[REDACTED_TRACK]", 0, 0, 1);
    /* not tracks: the PAN inside is still masked */
    /* the track 2 bound: 40 bytes between the sentinels is a track, 41 is not */
    check_n(";4111111111111111=28121010000000000000000?", "[REDACTED_TRACK]", 0, 0, 1);
    check_pan(";4111111111111111=281210100000000000000000?",
              ";************1111=281210100000000000000000?");
    check_pan("%b4111111111111111^DOE/JOHN^2812?", "%b************1111^DOE/JOHN^2812?");
    check_pan("%B4111111111111111^ABCDEFGHIJKLMNOPQRSTUVWXYZA^2812?", /* 27-byte name */
              "%B************1111^ABCDEFGHIJKLMNOPQRSTUVWXYZA^2812?");
    check_pan(";4111111111111111=2812x?", ";************1111=2812x?");
    check_same(";1234567=2812?"); /* 7-digit PAN */
    check_same("a;b=c?");
    /* '*', '[' and ']' never belong to a track 1, so redacted output cannot form one: here the
     * first "%B" is not a track (a '%' in its name) but would become one around the second
     * track's replacement if brackets were track characters (found by the fuzzer) */
    check_n("%B8222222222222222^DOE/%B4111111111111111^DOE/HN^0CVV20000?L1^DOE?",
            "%B8222222222222222^DOE/[REDACTED_TRACK]L1^DOE?", 0, 0, 1);
    check_same("%B12345678^DOE [JR]^2812?");
    check_same("%B12345678^N^ ***?");
    /* 80 bytes inside: not a track; masking the PAN shortens it to 77, still not a track */
    char t[128], w[128];
    snprintf(t, sizeof t, "%%B12345678^N^4111 1111 1111 1111%s?",
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    snprintf(w, sizeof w, "%%B12345678^N^************1111%s?",
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_int_equal(82, strlen(t));
    check_pan(t, w);
    check_same("100% sure; 50%B off");
    /* the track 1 length bound: 79 bytes between the sentinels is a track, 80 is not */
    char in[160], want[160];
    memcpy(in, "%B4111111111111111^DOE/JOHN^", 28);
    memset(in + 28, '0', 80 - 27);
    in[80] = '?';
    in[81] = '\0';
    check_n(in, "[REDACTED_TRACK]", 0, 0, 1);
    memset(in + 28, '0', 81 - 27);
    in[81] = '?';
    in[82] = '\0';
    memcpy(want, in, 83);
    memcpy(want + 2, "************", 12);
    check_pan(in, want);
}

/* --------------------------------------------------------- the API ---- */

static void test_api_errors_and_fast_path(void **state)
{
    (void)state;
    keel_buf b;
    keel_buf_init(&b, 64);
    keel_redact_stats st = {9, 9, 9};
    assert_int_equal(KEEL_EINVAL, keel_redact("x", 1, NULL, &st));
    assert_int_equal(0, st.pans);
    assert_int_equal(KEEL_EINVAL, keel_redact(NULL, 1, &b, NULL));
    ASSERT_OK(keel_redact(NULL, 0, &b, NULL));
    ASSERT_OK(keel_redact("hello 12", 8, &b, NULL));
    assert_null(b.ptr);
    /* output appended after what the buffer held */
    ASSERT_OK(keel_buf_append_str(&b, ">"));
    ASSERT_OK(keel_redact("cid=123", 7, &b, &st));
    assert_string_equal(">cid=[REDACTED_CVV]", b.ptr);
    assert_int_equal(1, st.cvvs);
    /* the cap */
    keel_buf_reset(&b);
    assert_int_equal(KEEL_ETOOBIG,
                     keel_redact("pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad "
                                 "cvv: 123", 72, &b, NULL));
    keel_buf_cleanup(&b);
    assert_int_equal(0, keel_redact_needed(NULL, 5));
    assert_int_equal(1, keel_redact_needed("x 4111111111111111", 18));

    size_t n;
    char *d = keel_redact_dup(KEEL_STR_LIT("pan 4111111111111111."), &n);
    assert_string_equal("pan ************1111.", d);
    assert_int_equal(21, n);
    keel_free(d);
    d = keel_redact_dup(KEEL_STR_LIT("clean"), &n);
    assert_string_equal("clean", d);
    assert_int_equal(5, n);
    keel_free(d);
    d = keel_redact_dup(KEEL_STR_NULL, &n);
    assert_string_equal("", d);
    keel_free(d);
    assert_null(keel_redact_dup((keel_str){NULL, 3}, &n));

    /* NUL bytes are ordinary bytes */
    static const char nul[] = "a\0 4111111111111111\0b";
    size_t len;
    char *r = redact_checked(nul, sizeof nul - 1, &len, NULL);
    assert_int_equal(sizeof nul - 1, len);
    assert_memory_equal("a\0 ************1111\0b", r, len);
    free(r);
}

static void test_redactor_lifecycle(void **state)
{
    (void)state;
    keel_redactor *r = (keel_redactor *)(uintptr_t)1;
    sink_buf sb;
    memset(&sb, 0, sizeof sb);
    sb.fail_after = -1;
    assert_int_equal(KEEL_EINVAL, keel_redactor_create(NULL, sink_write, &sb));
    assert_int_equal(KEEL_EINVAL, keel_redactor_create(&r, NULL, &sb));
    assert_null(r);
    ASSERT_OK(keel_redactor_create(&r, sink_write, &sb));
    assert_int_equal(KEEL_EINVAL, keel_redactor_feed(NULL, "x", 1));
    assert_int_equal(KEEL_EINVAL, keel_redactor_feed(r, NULL, 1));
    ASSERT_OK(keel_redactor_feed(r, NULL, 0));
    ASSERT_OK(keel_redactor_feed(r, "one 4111 1111 ", 14));
    /* the undecided chain is held back */
    assert_true(keel__redactor_pending(r) > 0);
    ASSERT_OK(keel_redactor_feed(r, "1111 1111\n", 10));
    ASSERT_OK(keel_redactor_finish(r));
    assert_string_equal("one ************1111\n", sb.p);
    assert_int_equal(KEEL_ESTATE, keel_redactor_feed(r, "x", 1));
    assert_int_equal(KEEL_ESTATE, keel_redactor_finish(r));
    assert_int_equal(KEEL_EINVAL, keel_redactor_finish(NULL));

    /* reset: a new independent stream (the held-back tail is discarded), counts are kept */
    keel_redactor_reset(r);
    ASSERT_OK(keel_redactor_feed(r, "4111", 4));
    keel_redactor_reset(r);
    ASSERT_OK(keel_redactor_feed(r, " cid=123", 8));
    ASSERT_OK(keel_redactor_finish(r));
    assert_string_equal("one ************1111\n cid=[REDACTED_CVV]", sb.p);
    keel_redact_stats st;
    keel_redactor_stats_get(r, &st);
    assert_int_equal(1, st.pans);
    assert_int_equal(1, st.cvvs);
    keel_redactor_stats_get(NULL, &st);
    assert_int_equal(0, st.pans + st.cvvs + st.tracks);
    keel_redactor_stats_get(r, NULL);

    /* a failing sink fails the stream until reset */
    keel_redactor_reset(r);
    sb.fail_after = sb.calls;
    assert_int_equal(KEEL_EIO, keel_redactor_feed(r, "hello world\n", 12));
    assert_int_equal(KEEL_ESTATE, keel_redactor_feed(r, "x", 1));
    assert_int_equal(KEEL_ESTATE, keel_redactor_finish(r));
    keel_redactor_reset(r);
    ASSERT_OK(keel_redactor_feed(r, "4111", 4)); /* all held back: the sink is not called */
    assert_int_equal(KEEL_EIO, keel_redactor_finish(r));
    keel_redactor_destroy(r);
    keel_redactor_destroy(NULL);
    keel_redactor_reset(NULL);
    free(sb.p);
}

/* Long input in odd chunk sizes: constant memory, same output as one-shot. */
static void test_stream_long_input(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "{\"ts\":\"2024-01-15T12:30:45.123Z\",\"msg\":\"card 4111 1111 1111 1111\"}\n",
        "12345678901234567890123456789012345678901234567890", /* a long run */
        " 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 ",
        "cvv=123 %B4111111111111111^DOE/JOHN^2812101?;4242424242424242=2812?",
        "ccccccccccccccccccccc;;;;;;;;%%%%%%%%%B",
        "6011-0009-9013-9424 ",
    };
    size_t cap = 1 << 20, n = 0;
    char *in = malloc(cap);
    assert_non_null(in);
    for (unsigned k = 0; n + 200 < cap; k = k * 7 + 3) {
        const char *p = pieces[k % KEEL_ARRAY_LEN(pieces)];
        size_t m = strlen(p);
        memcpy(in + n, p, m);
        n += m;
    }
    size_t want_len;
    keel_redact_stats s1, s2;
    char *want = oneshot(in, n, &want_len, &s1);
    assert_true(s1.pans > 1000 && s1.cvvs > 1000 && s1.tracks > 1000);
    for (size_t chunk = 1; chunk < 300000; chunk = chunk * 3 + 1) {
        size_t cuts[64];
        for (size_t k = 0; k < 63; k++)
            cuts[k] = chunk + k % 5;
        cuts[63] = 0;
        sink_buf sb;
        /* many small feeds, each through the checks in stream() */
        keel_redactor *r;
        memset(&sb, 0, sizeof sb);
        sb.fail_after = -1;
        ASSERT_OK(keel_redactor_create(&r, sink_write, &sb));
        for (size_t off = 0, k = 0; off < n; k++) {
            size_t m = KEEL_MIN(cuts[k % 63], n - off);
            ASSERT_OK(keel_redactor_feed(r, in + off, m));
            assert_true(keel__redactor_pending(r) < KEEL_REDACT_LOOKAHEAD);
            off += m;
        }
        ASSERT_OK(keel_redactor_finish(r));
        keel_redactor_stats_get(r, &s2);
        keel_redactor_destroy(r);
        assert_int_equal(want_len, sb.len);
        assert_memory_equal(want, sb.p, want_len);
        assert_stats_eq(&s1, &s2);
        free(sb.p);
    }
    free(want);
    free(in);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    int ok = 0;
    for (int n = 0; n < 8 && !ok; n++) {
        keel_buf b;
        keel_buf_init(&b, 1024);
        keel_test_failalloc_arm(n);
        keel_err e = keel_redact("x 4111111111111111 y", 20, &b, NULL);
        keel_test_failalloc_arm(-1);
        if (e == KEEL_OK) {
            assert_string_equal("x ************1111 y", b.ptr);
            ok = 1;
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
        }
        keel_buf_cleanup(&b);
    }
    assert_true(ok);
    keel_redactor *r = NULL;
    keel_test_failalloc_arm(0);
    assert_int_equal(KEEL_ENOMEM, keel_redactor_create(&r, sink_write, NULL));
    assert_null(keel_redact_dup(KEEL_STR_LIT("4111111111111111"), NULL));
    keel_test_failalloc_arm(-1);
    assert_null(r);
    keel_test_failalloc_remove();
}

/* ---------------------------------------------------------- log hook ---- */

static char g_dir[64];

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0)
        n += r;
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int g_other_calls;
static int other_hook(keel_log_record *rec, void *ud)
{
    (void)rec;
    (void)ud;
    g_other_calls++;
    return 0;
}

static void test_log_hook_end_to_end(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/keel_redact_XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    /* installing replaces the hook that was there */
    g_other_calls = 0;
    ASSERT_OK(keel_log_set_hook(other_hook, NULL));
    ASSERT_OK(keel_redact_install_log_hook());
    keel_log_config c;
    keel_log_config_default(&c);
    c.dir = g_dir;
    c.console = KEEL_LOG_CONSOLE_OFF;
    ASSERT_OK(keel_log_start(&c));
    keel_logger *lg = keel_logger_get("app.pay.test");
    keel_log_field f[] = {
        KEEL_LF_STR("pan", "4242-4242-4242-4242"),
        KEEL_LF_STR("note", "cvv: 999"),
        KEEL_LF_STR("clean", "order 1234567890123"),
        KEEL_LF_STR("nothing", NULL),
        KEEL_LF_INT("amount", 1999),
        KEEL_LF_EXCEPTION("swipe ;4111111111111111=28121010000000000000? failed"),
    };
    KEEL_LOG_FIELDS(lg, KEEL_LOG_LEVEL_ERROR, f, KEEL_ARRAY_LEN(f),
                    "Customer support note: card %s cvv: %d was used", "4111-1111-1111-1111", 999);
    KEEL_LOG_INFO(lg, "nothing to hide: %d items", 3);
    ASSERT_OK(keel_log_flush(60000));
    keel_log_stop();
    ASSERT_OK(keel_log_set_hook(NULL, NULL));
    assert_int_equal(0, g_other_calls);

    char path[128];
    snprintf(path, sizeof path, "%s/app.json", g_dir);
    char *text = slurp(path);
    assert_null(strstr(text, "4111-1111-1111-1111"));
    assert_null(strstr(text, "4111111111111111"));
    assert_null(strstr(text, "4242-4242"));
    assert_null(strstr(text, "cvv: 999"));
    assert_non_null(strstr(text, "\"message\":\"Customer support note: card ************1111 "
                                 "cvv: [REDACTED_CVV] was used\""));
    assert_non_null(strstr(text, "\"pan\":\"************4242\""));
    assert_non_null(strstr(text, "\"note\":\"cvv: [REDACTED_CVV]\""));
    assert_non_null(strstr(text, "\"clean\":\"order 1234567890123\""));
    assert_non_null(strstr(text, "\"nothing\":null"));
    assert_non_null(strstr(text, "\"amount\":1999"));
    assert_non_null(strstr(text, "\"exception\":\"swipe [REDACTED_TRACK] failed\""));
    assert_non_null(strstr(text, "\"message\":\"nothing to hide: 3 items\""));
    free(text);
    rm_rf(g_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_luhn),
        cmocka_unit_test(test_reference_pans_every_layout),
        cmocka_unit_test(test_spec_examples),
        cmocka_unit_test(test_group_rules),
        cmocka_unit_test(test_lookalikes_stay),
        cmocka_unit_test(test_cvv_forms),
        cmocka_unit_test(test_tracks),
        cmocka_unit_test(test_api_errors_and_fast_path),
        cmocka_unit_test(test_redactor_lifecycle),
        cmocka_unit_test(test_stream_long_input),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_log_hook_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
