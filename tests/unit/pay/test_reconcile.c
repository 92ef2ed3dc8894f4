/* Tests for src/pay/reconcile.c: matching, the summary line, handlers, the CSV front end and
 * a generated 1,000,000-row-per-side run. */
#define _GNU_SOURCE 1
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel_int.h"
#include <keel/reconcile.h>

/* ------------------------------------------------------------- helpers -- */

/* Handler log: one line per call, "tag type id i=<rec> g=<rec>". */
typedef struct log_t {
    char text[8192];
    size_t len;
    unsigned calls;
    keel_err ret; /* what the handler returns */
} log_t;

static void put_rec(log_t *l, const char *tag, const keel_recon_record *r)
{
    char amt[KEEL_MONEY_STR_MAX + 1];
    if (r == NULL) {
        l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, " %s=-", tag);
        return;
    }
    assert_int_not_equal(0, keel_money_format(r->amount, r->currency, amt, sizeof(amt)));
    l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, " %s=%s:%s:%.*s@%llu",
                               tag, amt, r->currency->code, (int)r->status.len, r->status.ptr,
                               (unsigned long long)r->line);
}

static keel_err log_handler(const keel_recon_discrepancy *d, void *ud)
{
    log_t *l = ud;
    l->calls++;
    l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, "%s %.*s",
                               keel_recon_type_name(d->type), (int)d->id.len, d->id.ptr);
    put_rec(l, "i", d->internal);
    put_rec(l, "g", d->gateway);
    l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, "\n");
    assert_true(l->len < sizeof(l->text));
    return l->ret;
}

static keel_recon *new_logged(log_t *l)
{
    memset(l, 0, sizeof(*l));
    keel_recon *r;
    ASSERT_OK(keel_recon_create(&r, NULL));
    for (int t = 0; t < KEEL_RECON_TYPE_COUNT; t++)
        ASSERT_OK(keel_recon_on(r, (keel_recon_type)t, log_handler, l));
    return r;
}

static const char *summary(const keel_recon *r)
{
    static char buf[KEEL_RECON_SUMMARY_MAX];
    size_t n = keel_recon_summary(r, buf, sizeof(buf));
    assert_int_equal(strlen(buf), n);
    return buf;
}

/* Reconcile two CSV texts; returns the summary (static) and fills l. */
static const char *run_csv(const char *internal, const char *gateway, log_t *l)
{
    keel_recon *r = new_logged(l);
    keel_diag d = {0};
    keel_err e = keel_recon_feed_csv_mem(r, KEEL_RECON_INTERNAL, internal, strlen(internal),
                                         "in.csv", &d);
    if (e != KEEL_OK)
        fail_msg("internal: %s", d.msg);
    e = keel_recon_feed_csv_mem(r, KEEL_RECON_GATEWAY, gateway, strlen(gateway), "gw.csv", &d);
    if (e != KEEL_OK)
        fail_msg("gateway: %s", d.msg);
    ASSERT_OK(keel_recon_finish(r));
    const char *s = summary(r);
    keel_recon_destroy(r);
    return s;
}

/* Expect feeding text as side (after a valid other side when gateway) to fail. */
static void csv_err(keel_recon_side side, const char *text, keel_err code, const char *msg)
{
    keel_recon *r;
    ASSERT_OK(keel_recon_create(&r, NULL));
    keel_diag d = {0};
    if (side == KEEL_RECON_GATEWAY)
        ASSERT_OK(keel_recon_feed_csv_mem(r, KEEL_RECON_INTERNAL, "id,amount,currency,status\n",
                                          26, NULL, &d));
    keel_err e = keel_recon_feed_csv_mem(r, side, text, strlen(text), NULL, &d);
    assert_int_equal(code, e);
    assert_string_equal(msg, d.msg);
    /* The reconciler is failed afterwards. */
    assert_int_equal(KEEL_ESTATE, keel_recon_finish(r));
    keel_recon_destroy(r);
}

static keel_recon_record rec(const char *id, int64_t amount, const char *cur, const char *status)
{
    keel_recon_record x = {keel_str_c(id), amount, keel_currency_find(keel_str_c(cur)),
                           keel_str_c(status), 0};
    return x;
}

/* --------------------------------------------------------------- summary -- */

static void test_summary_empty(void **state)
{
    (void)state;
    keel_recon *r;
    ASSERT_OK(keel_recon_create(&r, NULL));
    ASSERT_OK(keel_recon_finish(r));
    assert_string_equal("0/0 matched, 0 discrepancies", summary(r));
    assert_int_equal(KEEL_ESTATE, keel_recon_finish(r));
    keel_recon_destroy(r);
    log_t l;
    assert_string_equal("0/0 matched, 0 discrepancies",
                        run_csv("id,amount,currency,status\n", "ID,Amount,Currency,Status\r\n",
                                &l));
    assert_int_equal(0, l.calls);
    char small[8];
    assert_int_equal(28, keel_recon_summary_format(NULL, small, sizeof(small)));
    assert_string_equal("0/0 mat", small);
}

static void test_summary_clean(void **state)
{
    (void)state;
    log_t l;
    assert_string_equal("2/2 matched, 0 discrepancies",
                        run_csv("id,amount,currency,status\nA,1.00,USD,settled\nB,5,JPY,ok\n",
                                "status,currency,amount,id\nok,jpy,5,B\nsettled,USD,1,A\n", &l));
    assert_int_equal(0, l.calls);
}

/* The seed's line, reproduced with generated data: 1249 internal, 1251 gateway records;
 * 2 gateway-only ids, 1 status mismatch. */
static void test_summary_seed(void **state)
{
    (void)state;
    log_t l;
    keel_recon *r = new_logged(&l);
    char id[32];
    for (int i = 0; i < 1249; i++) {
        snprintf(id, sizeof(id), "txn_%04d", i);
        keel_recon_record x = rec(id, 1000 + i, "USD", "settled");
        ASSERT_OK(keel_recon_add_internal(r, &x, NULL));
    }
    for (int i = 1250; i >= 0; i--) {
        snprintf(id, sizeof(id), "txn_%04d", i);
        keel_recon_record x = rec(id, 1000 + i, "USD", i == 700 ? "refunded" : "settled");
        ASSERT_OK(keel_recon_add_gateway(r, &x, NULL));
    }
    ASSERT_OK(keel_recon_finish(r));
    assert_string_equal("1248/1251 matched, 3 discrepancies: 2 missing_internal, 1 status_mismatch",
                        summary(r));
    assert_string_equal("missing_internal txn_1250 i=- g=22.50:USD:settled@1\n"
                        "missing_internal txn_1249 i=- g=22.49:USD:settled@2\n"
                        "status_mismatch txn_0700 i=17.00:USD:settled@701 "
                        "g=17.00:USD:refunded@551\n",
                        l.text);
    keel_recon_stats s;
    keel_recon_stats_get(r, &s);
    assert_int_equal(1248, s.matched);
    assert_int_equal(1251, s.total);
    assert_int_equal(3, s.discrepancies);
    assert_int_equal(2, s.count[KEEL_RECON_MISSING_INTERNAL]);
    assert_int_equal(0, s.count[KEEL_RECON_MISSING_GATEWAY]);
    assert_int_equal(1, s.count[KEEL_RECON_STATUS_MISMATCH]);
    assert_int_equal(1249, s.internal_records);
    assert_int_equal(1251, s.gateway_records);
    keel_recon_destroy(r);
}

static void test_summary_all_types(void **state)
{
    (void)state;
    log_t l;
    const char *in = "id,amount,currency,status\n"
                     "g1,1,USD,s\ng2,1,USD,s\n"             /* missing_gateway x2 */
                     "a1,1,USD,s\na2,1,USD,s\na3,1,USD,s\n" /* amount_mismatch x3 */
                     "s1,1,USD,s\ns2,1,USD,s\ns3,1,USD,s\ns4,1,USD,s\n" /* status x4 */
                     "ok,1,USD,s\n";
    const char *gw = "id,amount,currency,status\n"
                     "s1,1,USD,S\ns2,1,USD,x\ns3,1,USD,\ns4,1.00,usd,s \n"
                     "a1,2,USD,s\na2,1,EUR,s\na3,1.01,EUR,refunded\n"
                     "m1,9,GBP,s\nok,1.0,USD,s\n";
    assert_string_equal("1/11 matched, 10 discrepancies: 1 missing_internal, 2 missing_gateway, "
                        "3 amount_mismatch, 4 status_mismatch",
                        run_csv(in, gw, &l));
    /* Gateway order first (as the gateway rows arrive), then internal order. */
    assert_string_equal("status_mismatch s1 i=1.00:USD:s@7 g=1.00:USD:S@2\n"
                        "status_mismatch s2 i=1.00:USD:s@8 g=1.00:USD:x@3\n"
                        "status_mismatch s3 i=1.00:USD:s@9 g=1.00:USD:@4\n"
                        "status_mismatch s4 i=1.00:USD:s@10 g=1.00:USD:s @5\n"
                        "amount_mismatch a1 i=1.00:USD:s@4 g=2.00:USD:s@6\n"
                        "amount_mismatch a2 i=1.00:USD:s@5 g=1.00:EUR:s@7\n"
                        "amount_mismatch a3 i=1.00:USD:s@6 g=1.01:EUR:refunded@8\n"
                        "missing_internal m1 i=- g=9.00:GBP:s@9\n"
                        "missing_gateway g1 i=1.00:USD:s@2 g=-\n"
                        "missing_gateway g2 i=1.00:USD:s@3 g=-\n",
                        l.text);
    assert_int_equal(10, l.calls);
}

static void test_summary_one_and_huge(void **state)
{
    (void)state;
    log_t l;
    assert_string_equal("0/1 matched, 1 discrepancies: 1 missing_gateway",
                        run_csv("id,amount,currency,status\nA,1,USD,s\n",
                                "id,amount,currency,status\n", &l));
    keel_recon_stats s;
    memset(&s, 0xff, sizeof(s));
    char buf[KEEL_RECON_SUMMARY_MAX];
    size_t n = keel_recon_summary_format(&s, buf, sizeof(buf));
    assert_true(n < sizeof(buf));
    assert_string_equal("18446744073709551615/18446744073709551615 matched, 18446744073709551615 "
                        "discrepancies: 18446744073709551615 missing_internal, "
                        "18446744073709551615 missing_gateway, 18446744073709551615 "
                        "amount_mismatch, 18446744073709551615 status_mismatch",
                        buf);
    assert_string_equal("missing_internal", keel_recon_type_name(KEEL_RECON_MISSING_INTERNAL));
    assert_null(keel_recon_type_name((keel_recon_type)4));
}

/* ---------------------------------------------------------- comparisons -- */

static void test_both_differ_is_amount(void **state)
{
    (void)state;
    log_t l;
    keel_recon *r = new_logged(&l);
    keel_recon_record i1 = rec("x", 100, "USD", "settled");
    keel_recon_record g1 = rec("x", 101, "USD", "failed");
    ASSERT_OK(keel_recon_add_internal(r, &i1, NULL));
    ASSERT_OK(keel_recon_add_gateway(r, &g1, NULL));
    ASSERT_OK(keel_recon_finish(r));
    assert_string_equal("0/1 matched, 1 discrepancies: 1 amount_mismatch", summary(r));
    assert_string_equal("amount_mismatch x i=1.00:USD:settled@1 g=1.01:USD:failed@1\n", l.text);
    keel_recon_destroy(r);
}

static void test_currency_is_amount(void **state)
{
    (void)state;
    log_t l;
    keel_recon *r = new_logged(&l);
    /* Same minor units, different currency (and exponent). */
    keel_recon_record i1 = rec("x", 500, "JPY", "ok");
    keel_recon_record g1 = rec("x", 500, "USD", "ok");
    keel_recon_record i2 = rec("y", 500, "EUR", "ok");
    keel_recon_record g2 = rec("y", 500, "USD", "ok");
    ASSERT_OK(keel_recon_add_internal(r, &i1, NULL));
    ASSERT_OK(keel_recon_add_internal(r, &i2, NULL));
    ASSERT_OK(keel_recon_add_gateway(r, &g2, NULL));
    ASSERT_OK(keel_recon_add_gateway(r, &g1, NULL));
    ASSERT_OK(keel_recon_finish(r));
    assert_string_equal("0/2 matched, 2 discrepancies: 2 amount_mismatch", summary(r));
    assert_string_equal("amount_mismatch y i=5.00:EUR:ok@2 g=5.00:USD:ok@1\n"
                        "amount_mismatch x i=500:JPY:ok@1 g=5.00:USD:ok@2\n",
                        l.text);
    keel_recon_destroy(r);
}

static void test_exact_amounts(void **state)
{
    (void)state;
    log_t l;
    /* Different spellings of the same amount match; negative refunds match themselves. */
    assert_string_equal(
        "4/4 matched, 0 discrepancies",
        run_csv("id,amount,currency,status\nA,12.3,USD,s\nB,-5.00,USD,refund\nC,1.234,BHD,s\n"
                "D,0.000,KWD,s\n",
                "id,amount,currency,status\nA,12.30,USD,s\nB,-5,usd,refund\nC,1.2340,BHD,s\n"
                "D,-0,KWD,s\n",
                &l));
    /* One minor unit apart is a mismatch. */
    assert_string_equal("0/1 matched, 1 discrepancies: 1 amount_mismatch",
                        run_csv("id,amount,currency,status\nA,0.10,USD,s\n",
                                "id,amount,currency,status\nA,0.11,USD,s\n", &l));
}

/* -------------------------------------------------------------- handlers -- */

static keel_err count_handler(const keel_recon_discrepancy *d, void *ud)
{
    (void)d;
    (*(int *)ud)++;
    return KEEL_OK;
}

static void test_handlers(void **state)
{
    (void)state;
    keel_recon *r;
    ASSERT_OK(keel_recon_create(&r, NULL));
    int a = 0, b = 0;
    /* Only missing_gateway handlers: other types are counted but call nothing. */
    ASSERT_OK(keel_recon_on(r, KEEL_RECON_MISSING_GATEWAY, count_handler, &a));
    ASSERT_OK(keel_recon_on(r, KEEL_RECON_MISSING_GATEWAY, count_handler, &b));
    assert_int_equal(KEEL_EINVAL, keel_recon_on(r, (keel_recon_type)9, count_handler, &a));
    assert_int_equal(KEEL_EINVAL, keel_recon_on(r, KEEL_RECON_MISSING_GATEWAY, NULL, &a));
    for (unsigned i = 2; i < KEEL_RECON_HANDLERS_MAX; i++)
        ASSERT_OK(keel_recon_on(r, KEEL_RECON_AMOUNT_MISMATCH, count_handler, &b));
    ASSERT_OK(keel_recon_on(r, KEEL_RECON_AMOUNT_MISMATCH, count_handler, &b));
    ASSERT_OK(keel_recon_on(r, KEEL_RECON_AMOUNT_MISMATCH, count_handler, &b));
    assert_int_equal(KEEL_EFULL, keel_recon_on(r, KEEL_RECON_AMOUNT_MISMATCH, count_handler, &b));
    keel_recon_record x = rec("x", 1, "USD", "s"), y = rec("y", 1, "USD", "s");
    keel_recon_record z = rec("z", 1, "USD", "s");
    ASSERT_OK(keel_recon_add_internal(r, &x, NULL));
    assert_int_equal(KEEL_ESTATE, keel_recon_on(r, KEEL_RECON_MISSING_GATEWAY, count_handler, &a));
    ASSERT_OK(keel_recon_add_internal(r, &y, NULL));
    ASSERT_OK(keel_recon_add_gateway(r, &z, NULL));
    assert_int_equal(0, a);
    keel_diag d;
    assert_int_equal(KEEL_ESTATE, keel_recon_add_internal(r, &z, &d));
    assert_string_equal("internal records must come before gateway ones", d.msg);
    ASSERT_OK(keel_recon_finish(r));
    assert_int_equal(2, a);
    assert_int_equal(2, b);
    assert_string_equal("0/3 matched, 3 discrepancies: 1 missing_internal, 2 missing_gateway",
                        summary(r));
    assert_int_equal(KEEL_ESTATE, keel_recon_add_gateway(r, &z, &d));
    assert_string_equal("the reconciliation is finished", d.msg);
    keel_recon_destroy(r);
}

static void test_handler_error_stops(void **state)
{
    (void)state;
    log_t l;
    keel_recon *r = new_logged(&l);
    l.ret = KEEL_EBUSY;
    keel_recon_record x = rec("x", 1, "USD", "s"), y = rec("y", 1, "USD", "s");
    ASSERT_OK(keel_recon_add_internal(r, &x, NULL));
    keel_diag d;
    assert_int_equal(KEEL_EBUSY, keel_recon_add_gateway(r, &y, &d));
    assert_string_equal("missing_internal handler failed for 'y': resource busy", d.msg);
    assert_int_equal(KEEL_ESTATE, keel_recon_add_gateway(r, &y, &d));
    assert_string_equal("the reconciliation already failed", d.msg);
    assert_int_equal(KEEL_ESTATE, keel_recon_finish(r));
    keel_recon_destroy(r);
    /* In finish too; and a non-keel_err return becomes KEEL_EINTERNAL. */
    r = new_logged(&l);
    l.ret = (keel_err)7;
    ASSERT_OK(keel_recon_add_internal(r, &x, NULL));
    assert_int_equal(KEEL_EINTERNAL, keel_recon_finish(r));
    assert_int_equal(1, l.calls);
    keel_recon_destroy(r);
}

static void test_api_records(void **state)
{
    (void)state;
    keel_recon *r;
    ASSERT_OK(keel_recon_create(&r, NULL));
    keel_diag d;
    keel_recon_record bad = rec("", 1, "USD", "s");
    assert_int_equal(KEEL_EINVAL, keel_recon_add_internal(r, &bad, &d));
    bad = rec("x", 1, "XXX", "s");
    assert_int_equal(KEEL_EINVAL, keel_recon_add_internal(r, &bad, &d));
    assert_int_equal(KEEL_EINVAL, keel_recon_add_internal(r, NULL, &d));
    keel_recon_record x = rec("x", 1, "USD", "s");
    ASSERT_OK(keel_recon_add_internal(r, &x, &d)); /* EINVAL did not fail the run */
    keel_recon_record x2 = rec("x", 2, "USD", "s");
    assert_int_equal(KEEL_EEXIST, keel_recon_add_internal(r, &x2, &d));
    assert_string_equal("internal:2: duplicate id 'x' (first at line 1)", d.msg);
    assert_int_equal(2, d.offset);
    keel_recon_destroy(r);

    /* Gateway duplicates, of a matched id and of a gateway-only id. */
    ASSERT_OK(keel_recon_create(&r, NULL));
    ASSERT_OK(keel_recon_add_internal(r, &x, &d));
    ASSERT_OK(keel_recon_add_gateway(r, &x, &d));
    assert_int_equal(KEEL_EEXIST, keel_recon_add_gateway(r, &x, &d));
    assert_string_equal("gateway:2: duplicate id 'x' (first at line 1)", d.msg);
    keel_recon_destroy(r);
    ASSERT_OK(keel_recon_create(&r, NULL));
    keel_recon_record y = rec("y\n'z", 1, "USD", "s");
    y.line = 40;
    ASSERT_OK(keel_recon_add_gateway(r, &y, &d));
    y.line = 41;
    assert_int_equal(KEEL_EEXIST, keel_recon_add_gateway(r, &y, &d));
    assert_string_equal("gateway:41: duplicate id 'y??z' (first at line 40)", d.msg);
    keel_recon_destroy(r);

    assert_int_equal(KEEL_EINVAL, keel_recon_create(NULL, NULL));
    keel_recon_config c;
    keel_recon_config_default(&c);
    c.size = 4;
    assert_int_equal(KEEL_EINVAL, keel_recon_create(&r, &c));
    keel_recon_destroy(NULL);
}

static void test_caps(void **state)
{
    (void)state;
    keel_recon_config c;
    keel_recon_config_default(&c);
    c.max_records = 3;
    keel_recon *r;
    ASSERT_OK(keel_recon_create(&r, &c));
    keel_diag d;
    keel_recon_record a = rec("a", 1, "USD", "s"), b = rec("b", 1, "USD", "s");
    keel_recon_record cc = rec("c", 1, "USD", "s"), dd = rec("d", 1, "USD", "s");
    ASSERT_OK(keel_recon_add_internal(r, &a, &d));
    ASSERT_OK(keel_recon_add_internal(r, &b, &d));
    ASSERT_OK(keel_recon_add_gateway(r, &cc, &d)); /* gateway-only ids count too */
    assert_int_equal(KEEL_ETOOBIG, keel_recon_add_gateway(r, &dd, &d));
    assert_string_equal("gateway:2: too many records or bytes for the configured limits", d.msg);
    keel_recon_destroy(r);

    keel_recon_config_default(&c);
    c.max_bytes = 10;
    ASSERT_OK(keel_recon_create(&r, &c));
    keel_recon_record big = rec("0123456789", 1, "USD", "s");
    assert_int_equal(KEEL_ETOOBIG, keel_recon_add_internal(r, &big, &d));
    keel_recon_destroy(r);
}

static uint64_t progress_last;
static int progress_calls;
static void on_progress(uint64_t n, void *ud)
{
    assert_ptr_equal(&progress_calls, ud);
    progress_last = n;
    progress_calls++;
}

static void test_progress(void **state)
{
    (void)state;
    keel_recon_config c;
    keel_recon_config_default(&c);
    c.expected_records = 70000;
    c.progress = on_progress;
    c.progress_ud = &progress_calls;
    keel_recon *r;
    ASSERT_OK(keel_recon_create(&r, &c));
    char id[32];
    for (int i = 0; i < 70000; i++) {
        snprintf(id, sizeof(id), "i%d", i);
        keel_recon_record x = rec(id, i, "USD", "s");
        ASSERT_OK(keel_recon_add_internal(r, &x, NULL));
    }
    assert_int_equal(1, progress_calls);
    assert_int_equal(65536, progress_last);
    for (int i = 0; i < 70000; i++) {
        snprintf(id, sizeof(id), "i%d", i);
        keel_recon_record x = rec(id, i, "USD", "s");
        ASSERT_OK(keel_recon_add_gateway(r, &x, NULL));
    }
    ASSERT_OK(keel_recon_finish(r));
    assert_int_equal(2, progress_calls);
    assert_int_equal(131072, progress_last);
    assert_string_equal("70000/70000 matched, 0 discrepancies", summary(r));
    keel_recon_destroy(r);
}

/* ------------------------------------------------------------------- CSV -- */

static void test_csv_front_end(void **state)
{
    (void)state;
    log_t l;
    /* Quoted fields, embedded commas/newlines/quotes in ids and statuses, CRLF, a BOM, extra
     * columns, header names in any case with spaces around, trailing empty lines. */
    const char *in = "\xEF\xBB\xBF note , ID ,Amount,\tCURRENCY ,status\r\n"
                     "\"x, y\",\"id,1\",1.00,USD,\"settled\"\r\n"
                     "z,\"id\"\"2\",2,USD,\"multi\nline\"\n"
                     "w,id3,3,USD,s\r\n\r\n\n";
    const char *gw = "id,status,currency,amount,fee\n"
                     "\"id\"\"2\",\"multi\nline\",USD,2.00,0.1\n"
                     "\"id,1\",settled,USD,1,0\n"
                     "id3,S,USD,3,0";
    assert_string_equal("2/3 matched, 1 discrepancies: 1 status_mismatch", run_csv(in, gw, &l));
    assert_string_equal("status_mismatch id3 i=3.00:USD:s@5 g=3.00:USD:S@5\n", l.text);
}

static const char H[] = "id,amount,currency,status\n";

static void test_csv_errors(void **state)
{
    (void)state;
    const keel_recon_side I = KEEL_RECON_INTERNAL, G = KEEL_RECON_GATEWAY;
    csv_err(I, "", KEEL_EPARSE, "internal:1: missing header line (id,amount,currency,status)");
    csv_err(G, "\xEF\xBB\xBF\n\n", KEEL_EPARSE,
            "gateway:1: missing header line (id,amount,currency,status)");
    csv_err(I, "id,amount,status\nA,1,s\n", KEEL_EPARSE,
            "internal:1: header lacks column 'currency' (needs id,amount,currency,status)");
    csv_err(G, "identifier,amount,currency,status\n", KEEL_EPARSE,
            "gateway:1: header lacks column 'id' (needs id,amount,currency,status)");
    csv_err(I, "id,amount,currency,status,Id\n", KEEL_EPARSE,
            "internal:1:27: duplicate column 'id' in the header");
    /* Duplicate ids name the input and both lines. */
    char buf[512];
    snprintf(buf, sizeof(buf), "%sA,1,USD,s\nB,1,USD,s\n\"A\",2,USD,s\n", H);
    csv_err(I, buf, KEEL_EEXIST, "internal:4: duplicate id 'A' (first at line 2)");
    snprintf(buf, sizeof(buf), "%sA,1,USD,s\r\nA,1,USD,s\r\n", H);
    csv_err(G, buf, KEEL_EEXIST, "gateway:3: duplicate id 'A' (first at line 2)");
    /* Wrong field count, both ways. */
    snprintf(buf, sizeof(buf), "%sA,1,USD,s\nB,1,USD\n", H);
    csv_err(I, buf, KEEL_EPARSE, "internal:3: expected 4 fields (as in the header), found 3");
    snprintf(buf, sizeof(buf), "%sA,1,USD,s,extra\n", H);
    csv_err(G, buf, KEEL_EPARSE, "gateway:2: expected 4 fields (as in the header), found 5");
    /* Bad quoting, through the front end. */
    snprintf(buf, sizeof(buf), "%sA,1,USD,s\"x\n", H);
    csv_err(I, buf, KEEL_EPARSE, "internal:2:10: quote inside an unquoted field");
    snprintf(buf, sizeof(buf), "%sA,1,USD,\"s", H);
    csv_err(G, buf, KEEL_EPARSE, "gateway:2:9: unterminated quoted field");
    snprintf(buf, sizeof(buf), "%s\"A\"x,1,USD,s\n", H);
    csv_err(I, buf, KEEL_EPARSE, "internal:2:4: unexpected character after a closing quote");
    /* Currency and amount. */
    snprintf(buf, sizeof(buf), "%sA,1,USD,s\nB,1,usdx,s\n", H);
    csv_err(I, buf, KEEL_ENOTFOUND, "internal:3:5: unknown currency 'usdx'");
    snprintf(buf, sizeof(buf), "%sA,1,XAU,s\n", H);
    csv_err(G, buf, KEEL_ENOTFOUND, "gateway:2:5: unknown currency 'XAU'");
    snprintf(buf, sizeof(buf), "%sA,12.3x,USD,s\n", H);
    csv_err(I, buf, KEEL_EPARSE,
            "internal:2:7: bad amount '12.3x': unexpected character in amount");
    snprintf(buf, sizeof(buf), "%sA,\"1,5\",USD,s\n", H);
    csv_err(I, buf, KEEL_EPARSE, "internal:2:5: bad amount '1,5': unexpected character in amount");
    snprintf(buf, sizeof(buf), "%sA,abc,USD,s\n", H);
    csv_err(G, buf, KEEL_EPARSE,
            "gateway:2:3: bad amount 'abc': amount must start with a digit (after an optional "
            "'-')");
    snprintf(buf, sizeof(buf), "%sA,,USD,s\n", H);
    csv_err(G, buf, KEEL_EPARSE, "gateway:2:3: bad amount '': empty amount");
    snprintf(buf, sizeof(buf), "%sA, 1,USD,s\n", H);
    csv_err(G, buf, KEEL_EPARSE,
            "gateway:2:3: bad amount ' 1': amount must start with a digit (after an optional "
            "'-')");
    snprintf(buf, sizeof(buf), "%sA,1.234,USD,s\n", H);
    csv_err(I, buf, KEEL_ERANGE,
            "internal:2:7: bad amount '1.234': amount has more decimal places than USD allows "
            "(2)");
    snprintf(buf, sizeof(buf), "%sA,99999999999999999999,USD,s\n", H);
    csv_err(I, buf, KEEL_ERANGE, "internal:2:21: bad amount '99999999999999999999': amount too "
                                 "large");
    snprintf(buf, sizeof(buf), "%s,1,USD,s\n", H);
    csv_err(I, buf, KEEL_EPARSE, "internal:2:1: empty id");
    snprintf(buf, sizeof(buf), "%sA,1,USD,s\n\nB,1,USD,s\n", H);
    csv_err(G, buf, KEEL_EPARSE, "gateway:3: empty line inside the data");
}

static void test_csv_order_and_names(void **state)
{
    (void)state;
    keel_recon *r;
    ASSERT_OK(keel_recon_create(&r, NULL));
    keel_diag d;
    ASSERT_OK(keel_recon_feed_csv_mem(r, KEEL_RECON_GATEWAY, H, sizeof(H) - 1, NULL, &d));
    assert_int_equal(KEEL_ESTATE,
                     keel_recon_feed_csv_mem(r, KEEL_RECON_INTERNAL, H, sizeof(H) - 1, NULL, &d));
    /* Several gateway inputs in a row are fine (one report in parts). */
    ASSERT_OK(keel_recon_feed_csv_mem(r, KEEL_RECON_GATEWAY, H, sizeof(H) - 1, NULL, &d));
    assert_int_equal(KEEL_EINVAL,
                     keel_recon_feed_csv(r, KEEL_RECON_GATEWAY, NULL, NULL, NULL, &d));
    ASSERT_OK(keel_recon_finish(r));
    keel_recon_destroy(r);

    ASSERT_OK(keel_recon_create(&r, NULL));
    assert_int_equal(KEEL_EIO, keel_recon_feed_csv_file(r, KEEL_RECON_INTERNAL,
                                                       "/nonexistent/in.csv", &d));
    assert_string_equal("/nonexistent/in.csv: cannot open: No such file or directory", d.msg);
    keel_recon_destroy(r);

    /* Files are named by path in messages. */
    char path[512];
    snprintf(path, sizeof(path), "%s/recon_names_%d.csv", KEEL_TEST_TMP, (int)getpid());
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("id,amount,currency,status\nA,1,USD,s\nA,1,USD,s\n", f);
    fclose(f);
    ASSERT_OK(keel_recon_create(&r, NULL));
    assert_int_equal(KEEL_EEXIST, keel_recon_feed_csv_file(r, KEEL_RECON_INTERNAL, path, &d));
    char want[640];
    snprintf(want, sizeof(want), "%s:3: duplicate id 'A' (first at line 2)", path);
    if (strlen(path) <= 64)
        assert_string_equal(want, d.msg);
    else
        assert_non_null(strstr(d.msg, ".csv:3: duplicate id 'A' (first at line 2)"));
    assert_int_equal(3, d.offset);
    keel_recon_destroy(r);
    unlink(path);
}

static void test_oom(void **state)
{
    (void)state;
    const char *in = "id,amount,currency,status\nA,1,USD,s\nB,2,USD,s\nC,3,USD,s\n";
    const char *gw = "id,amount,currency,status\nA,1,USD,s\nD,2,USD,s\nC,3,USD,x\n";
    keel_test_failalloc_install();
    int done = 0;
    for (int n = 0; n < 200 && !done; n++) {
        keel_test_failalloc_arm(n);
        keel_recon *r = NULL;
        keel_err e = keel_recon_create(&r, NULL);
        if (e != KEEL_OK) {
            assert_int_equal(KEEL_ENOMEM, e);
            continue;
        }
        keel_diag d;
        e = keel_recon_feed_csv_mem(r, KEEL_RECON_INTERNAL, in, strlen(in), NULL, &d);
        if (e == KEEL_OK)
            e = keel_recon_feed_csv_mem(r, KEEL_RECON_GATEWAY, gw, strlen(gw), NULL, &d);
        if (e == KEEL_OK)
            e = keel_recon_finish(r);
        if (e == KEEL_OK) {
            char s[KEEL_RECON_SUMMARY_MAX];
            keel_recon_summary(r, s, sizeof(s));
            assert_string_equal("1/4 matched, 3 discrepancies: 1 missing_internal, "
                                "1 missing_gateway, 1 status_mismatch",
                                s);
            done = 1;
        } else {
            assert_int_equal(KEEL_ENOMEM, e);
        }
        keel_recon_destroy(r);
    }
    keel_test_failalloc_remove();
    assert_true(done);
}

/* ------------------------------------------------------ 1M rows per side -- */

#define BIG_N 1000000u
/* Injected discrepancies, decided per internal index i (0..BIG_N-1):
 *   i % 99991 == 5      missing from the gateway
 *   i % 49999 == 7      amount differs by one cent
 *   i % 77773 == 11     currency differs (EUR)
 *   i % 33331 == 13     status differs (and, when also an amount case, counts as amount)
 * plus BIG_EXTRA gateway-only ids; the gateway keeps BIG_N rows in a scrambled order. */
#define BIG_EXTRA 17u

static int big_missing_gw(uint32_t i)
{
    return i % 99991u == 5;
}
static int big_amount(uint32_t i)
{
    return i % 49999u == 7;
}
static int big_currency(uint32_t i)
{
    return i % 77773u == 11;
}
static int big_status(uint32_t i)
{
    return i % 33331u == 13;
}

static void test_million_rows(void **state)
{
    (void)state;
    char pin[512], pgw[512];
    snprintf(pin, sizeof(pin), "%s/recon_big_in_%d.csv", KEEL_TEST_TMP, (int)getpid());
    snprintf(pgw, sizeof(pgw), "%s/recon_big_gw_%d.csv", KEEL_TEST_TMP, (int)getpid());
    FILE *fi = fopen(pin, "wb"), *fg = fopen(pgw, "wb");
    assert_non_null(fi);
    assert_non_null(fg);
    static char iobuf_i[1 << 16], iobuf_g[1 << 16];
    setvbuf(fi, iobuf_i, _IOFBF, sizeof(iobuf_i));
    setvbuf(fg, iobuf_g, _IOFBF, sizeof(iobuf_g));
    fputs("id,amount,currency,status,created\n", fi);
    fputs("currency,id,status,amount\r\n", fg);
    uint64_t want[KEEL_RECON_TYPE_COUNT] = {0};
    uint64_t gw_rows = 0;
    for (uint32_t i = 0; i < BIG_N; i++) {
        unsigned cents = (i * 7919u) % 1000000u;
        fprintf(fi, "txn_%07u,%u.%02u,USD,%s,2026-01-01\n", i, cents / 100, cents % 100,
                i % 10 == 0 ? "refunded" : "settled");
        int amt = big_amount(i) || big_currency(i);
        if (big_missing_gw(i))
            want[KEEL_RECON_MISSING_GATEWAY]++;
        else if (amt)
            want[KEEL_RECON_AMOUNT_MISMATCH]++;
        else if (big_status(i))
            want[KEEL_RECON_STATUS_MISMATCH]++;
    }
    /* Gateway: a permutation of the internal ids (stride coprime with BIG_N). */
    for (uint64_t k = 0; k < BIG_N; k++) {
        uint32_t i = (uint32_t)((k * 7777777u + 12345u) % BIG_N);
        if (big_missing_gw(i))
            continue;
        unsigned cents = (i * 7919u) % 1000000u + (big_amount(i) ? 1u : 0u);
        fprintf(fg, "%s,\"txn_%07u\",%s,%u.%02u\r\n", big_currency(i) ? "EUR" : "usd", i,
                big_status(i) ? "disputed" : i % 10 == 0 ? "refunded" : "settled", cents / 100,
                cents % 100);
        gw_rows++;
    }
    for (uint32_t j = 0; j < BIG_EXTRA; j++) {
        fprintf(fg, "USD,extra_%u,settled,1.00\r\n", j);
        gw_rows++;
    }
    want[KEEL_RECON_MISSING_INTERNAL] = BIG_EXTRA;
    assert_int_equal(0, fclose(fi));
    assert_int_equal(0, fclose(fg));

    log_t l;
    keel_recon *r = new_logged(&l);
    keel_diag d = {0};
    keel_err e = keel_recon_feed_csv_file(r, KEEL_RECON_INTERNAL, pin, &d);
    if (e != KEEL_OK)
        fail_msg("%s", d.msg);
    e = keel_recon_feed_csv_file(r, KEEL_RECON_GATEWAY, pgw, &d);
    if (e != KEEL_OK)
        fail_msg("%s", d.msg);
    ASSERT_OK(keel_recon_finish(r));
    keel_recon_stats s;
    keel_recon_stats_get(r, &s);
    uint64_t disc = 0;
    for (int t = 0; t < KEEL_RECON_TYPE_COUNT; t++) {
        assert_int_equal(want[t], s.count[t]);
        disc += want[t];
    }
    assert_true(want[KEEL_RECON_MISSING_GATEWAY] > 5 && want[KEEL_RECON_AMOUNT_MISMATCH] > 20 &&
                want[KEEL_RECON_STATUS_MISMATCH] > 20);
    assert_int_equal(disc, l.calls);
    assert_int_equal(BIG_N + BIG_EXTRA, s.total);
    assert_int_equal(BIG_N, s.internal_records);
    assert_int_equal(gw_rows, s.gateway_records);
    assert_int_equal(s.total - disc, s.matched);
    char expect_line[KEEL_RECON_SUMMARY_MAX];
    snprintf(expect_line, sizeof(expect_line),
             "%llu/%llu matched, %llu discrepancies: %llu missing_internal, %llu "
             "missing_gateway, %llu amount_mismatch, %llu status_mismatch",
             (unsigned long long)(s.total - disc), (unsigned long long)s.total,
             (unsigned long long)disc, (unsigned long long)want[0], (unsigned long long)want[1],
             (unsigned long long)want[2], (unsigned long long)want[3]);
    assert_string_equal(expect_line, summary(r));
    keel_recon_destroy(r);
    unlink(pin);
    unlink(pgw);
}

int main(void)
{
    mkdir(KEEL_TEST_TMP, 0700);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_summary_empty),
        cmocka_unit_test(test_summary_clean),
        cmocka_unit_test(test_summary_seed),
        cmocka_unit_test(test_summary_all_types),
        cmocka_unit_test(test_summary_one_and_huge),
        cmocka_unit_test(test_both_differ_is_amount),
        cmocka_unit_test(test_currency_is_amount),
        cmocka_unit_test(test_exact_amounts),
        cmocka_unit_test(test_handlers),
        cmocka_unit_test(test_handler_error_stops),
        cmocka_unit_test(test_api_records),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_csv_front_end),
        cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_csv_order_and_names),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_million_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
