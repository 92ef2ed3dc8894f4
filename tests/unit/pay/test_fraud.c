/* Tests for src/pay/fraud.c: rule order, the BLOCK short-circuit, score thresholds,
 * decision precedence, the audit trail, rule errors, every built-in rule (blocklist, AVS/CVV,
 * velocity, country mismatch, high amount), user-defined rules, the mapping to payment
 * errors, and configuration errors named in the diag.  Time comes from a manual clock. */
#include "test.h"

#include <string.h>

#include <keel/fraud.h>
#include <keel/gateway.h>
#include <keel/payment.h>
#include <keel/policy.h>

static const keel_currency *cur(const char *code)
{
    const keel_currency *c = keel_currency_find(keel_str_c(code));
    assert_non_null(c);
    return c;
}

static keel_fraud_engine *engine(int64_t threshold)
{
    keel_fraud_config cfg;
    keel_fraud_config_default(&cfg);
    cfg.review_threshold = threshold;
    keel_fraud_engine *fe = NULL;
    keel_diag d;
    ASSERT_OK(keel_fraud_engine_create(&fe, &cfg, &d));
    return fe;
}

static keel_fraud_context ctx(void)
{
    keel_fraud_context c;
    memset(&c, 0, sizeof(c));
    c.user_id = "u_42";
    c.email = "Alice@Example.com";
    c.ip = "203.0.113.7";
    c.amount = 5000;
    c.currency = cur("USD");
    c.avs_result = KEEL_AVS_MATCH;
    c.cvv_result = KEEL_CVV_MATCH;
    c.card_country = "US";
    c.billing_country = "US";
    c.ip_country = "US";
    c.card_fingerprint = "0f3a9c1d2b4e5f60718293a4b5c6d7e8";
    return c;
}

static keel_fraud_result eval(const keel_fraud_engine *fe, const keel_fraud_context *c)
{
    keel_fraud_result r;
    ASSERT_OK(keel_fraud_evaluate(fe, c, &r));
    return r;
}

/* ------------------------------------------------------- scripted rules -- */

/* A rule that says what it is told and logs its position in a shared trace. */
typedef struct scripted {
    keel_fraud_decision verdict;
    int32_t score;
    const char *reason;
    keel_err err;
    int calls;
    char *trace; /* appended with `tag` */
    char tag;
} scripted;

static keel_err scripted_rule(const keel_fraud_context *cx, void *ud, keel_fraud_verdict *out)
{
    (void)cx;
    scripted *s = ud;
    s->calls++;
    if (s->trace != NULL) {
        size_t n = strlen(s->trace);
        s->trace[n] = s->tag;
        s->trace[n + 1] = '\0';
    }
    /* The engine hands over a clean verdict. */
    assert_int_equal(KEEL_FRAUD_PASS, out->verdict);
    assert_int_equal(0, out->score);
    assert_string_equal("", out->reason);
    if (s->err != KEEL_OK)
        return s->err;
    out->verdict = s->verdict;
    out->score = s->score;
    if (s->reason != NULL)
        snprintf(out->reason, sizeof(out->reason), "%s", s->reason);
    return KEEL_OK;
}

static void add_scripted(keel_fraud_engine *fe, const char *name, scripted *s)
{
    keel_diag d;
    keel_err e = keel_fraud_add_rule(fe, name, scripted_rule, s, NULL, &d);
    if (e != KEEL_OK)
        fail_msg("add %s: %s", name, d.msg);
}

static void test_order_and_audit(void **state)
{
    (void)state;
    char trace[16] = "";
    scripted a = {KEEL_FRAUD_PASS, 0, "fine", KEEL_OK, 0, trace, 'a'};
    scripted b = {KEEL_FRAUD_REVIEW, 15, "odd hour", KEEL_OK, 0, trace, 'b'};
    scripted c = {KEEL_FRAUD_PASS, 5, NULL, KEEL_OK, 0, trace, 'c'};
    keel_fraud_engine *fe = engine(50);
    add_scripted(fe, "first", &a);
    add_scripted(fe, "second", &b);
    add_scripted(fe, "third", &c);
    assert_int_equal(3, keel_fraud_engine_rules(fe));
    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_string_equal("abc", trace);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.decision); /* a REVIEW verdict forces review */
    assert_int_equal(20, r.total_score);
    assert_null(r.blocked_by);
    assert_int_equal(3, r.evaluated);
    assert_int_equal(0, r.errors);
    assert_string_equal("first", r.audit[0].rule);
    assert_int_equal(KEEL_FRAUD_PASS, r.audit[0].verdict);
    assert_int_equal(0, r.audit[0].score);
    assert_string_equal("fine", r.audit[0].reason);
    assert_string_equal("second", r.audit[1].rule);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.audit[1].verdict);
    assert_int_equal(15, r.audit[1].score);
    assert_string_equal("odd hour", r.audit[1].reason);
    assert_string_equal("third", r.audit[2].rule);
    assert_int_equal(5, r.audit[2].score);
    assert_string_equal("", r.audit[2].reason);
    assert_int_equal(KEEL_OK, r.audit[2].err);
    keel_fraud_engine_destroy(fe);
}

static void test_block_short_circuits(void **state)
{
    (void)state;
    char trace[16] = "";
    scripted a = {KEEL_FRAUD_CHALLENGE, 10, "new device", KEEL_OK, 0, trace, 'a'};
    scripted b = {KEEL_FRAUD_BLOCK, 100, "stolen card", KEEL_OK, 0, trace, 'b'};
    scripted c = {KEEL_FRAUD_BLOCK, 100, "never runs", KEEL_OK, 0, trace, 'c'};
    keel_fraud_engine *fe = engine(50);
    add_scripted(fe, "device", &a);
    add_scripted(fe, "stolen", &b);
    add_scripted(fe, "later", &c);
    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_string_equal("ab", trace);
    assert_int_equal(0, c.calls);
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    assert_string_equal("stolen", r.blocked_by);
    assert_int_equal(2, r.evaluated);
    assert_int_equal(110, r.total_score);
    assert_string_equal("stolen card", r.audit[1].reason);

    keel_pay_failure f;
    assert_int_equal(KEEL_EPAY_FRAUD_BLOCKED, keel_fraud_result_err(&r, &f));
    assert_int_equal(KEEL_EPAY_FRAUD_BLOCKED, f.code);
    assert_string_equal("fraudulent", f.decline_code);
    assert_string_equal("blocked by fraud rule 'stolen'", f.message);
    assert_int_equal(0, keel_pay_err_retriable(f.code));
    keel_fraud_engine_destroy(fe);
}

static void test_thresholds(void **state)
{
    (void)state;
    scripted a = {KEEL_FRAUD_PASS, 30, "a", KEEL_OK, 0, NULL, 0};
    scripted b = {KEEL_FRAUD_PASS, 19, "b", KEEL_OK, 0, NULL, 0};
    keel_fraud_engine *fe = engine(50);
    add_scripted(fe, "a", &a);
    add_scripted(fe, "b", &b);
    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(49, r.total_score);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    b.score = 20; /* exactly the threshold */
    r = eval(fe, &cx);
    assert_int_equal(50, r.total_score);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.decision);
    b.score = -30; /* trust signals lower the score */
    r = eval(fe, &cx);
    assert_int_equal(0, r.total_score);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    keel_pay_failure f;
    assert_int_equal(KEEL_OK, keel_fraud_result_err(&r, &f));
    assert_int_equal(KEEL_OK, f.code);
    keel_fraud_engine_destroy(fe);

    /* Threshold 0: any positive score is reviewed, a zero score is not. */
    fe = engine(0);
    a.score = 0;
    b.score = 0;
    add_scripted(fe, "a", &a);
    add_scripted(fe, "b", &b);
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    b.score = 1;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.decision);
    assert_int_equal(KEEL_OK, keel_fraud_result_err(&r, NULL)); /* REVIEW is not an error */
    keel_fraud_engine_destroy(fe);
}

static void test_precedence(void **state)
{
    (void)state;
    scripted a = {KEEL_FRAUD_REVIEW, 0, NULL, KEEL_OK, 0, NULL, 0};
    scripted b = {KEEL_FRAUD_CHALLENGE, 0, NULL, KEEL_OK, 0, NULL, 0};
    scripted c = {KEEL_FRAUD_REVIEW, 90, NULL, KEEL_OK, 0, NULL, 0};
    keel_fraud_engine *fe = engine(50);
    add_scripted(fe, "a", &a);
    add_scripted(fe, "b", &b);
    add_scripted(fe, "c", &c);
    keel_fraud_context cx = ctx();
    /* CHALLENGE beats REVIEW, and a score over the threshold does not demote it. */
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_CHALLENGE, r.decision);
    assert_null(r.blocked_by);
    keel_pay_failure f;
    assert_int_equal(KEEL_EPAY_AUTH_REQUIRED, keel_fraud_result_err(&r, &f));
    assert_string_equal("authentication_required", f.decline_code);
    /* BLOCK beats everything, wherever it comes. */
    c.verdict = KEEL_FRAUD_BLOCK;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    assert_string_equal("c", r.blocked_by);
    a.verdict = KEEL_FRAUD_PASS;
    b.verdict = KEEL_FRAUD_PASS;
    c.verdict = KEEL_FRAUD_CHALLENGE;
    c.score = 0;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_CHALLENGE, r.decision);
    keel_fraud_engine_destroy(fe);

    assert_string_equal("approve", keel_fraud_decision_name(KEEL_FRAUD_APPROVE));
    assert_string_equal("review", keel_fraud_decision_name(KEEL_FRAUD_REVIEW));
    assert_string_equal("challenge", keel_fraud_decision_name(KEEL_FRAUD_CHALLENGE));
    assert_string_equal("block", keel_fraud_decision_name(KEEL_FRAUD_BLOCK));
    assert_string_equal("unknown", keel_fraud_decision_name((keel_fraud_decision)9));
}

static void test_rule_errors(void **state)
{
    (void)state;
    scripted a = {KEEL_FRAUD_PASS, 0, NULL, KEEL_EIO, 0, NULL, 0};
    scripted b = {(keel_fraud_decision)7, 0, NULL, KEEL_OK, 0, NULL, 0}; /* invalid verdict */
    scripted c = {KEEL_FRAUD_PASS, 0, NULL, KEEL_OK, 0, NULL, 0};
    keel_fraud_engine *fe = engine(50);
    add_scripted(fe, "redis_rule", &a);
    add_scripted(fe, "buggy", &b);
    add_scripted(fe, "fine", &c);
    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.decision); /* default on_rule_error */
    assert_int_equal(2, r.errors);
    assert_int_equal(3, r.evaluated);
    assert_int_equal(KEEL_EIO, r.audit[0].err);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.audit[0].verdict);
    assert_string_equal("rule failed: input/output error", r.audit[0].reason);
    assert_int_equal(KEEL_EINVAL, r.audit[1].err);
    keel_fraud_engine_destroy(fe);

    /* Fail closed when configured so. */
    keel_fraud_config cfg;
    keel_fraud_config_default(&cfg);
    cfg.on_rule_error = KEEL_FRAUD_BLOCK;
    ASSERT_OK(keel_fraud_engine_create(&fe, &cfg, NULL));
    add_scripted(fe, "redis_rule", &a);
    add_scripted(fe, "fine", &c);
    c.calls = 0;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    assert_string_equal("redis_rule", r.blocked_by);
    assert_int_equal(0, c.calls);
    keel_fraud_engine_destroy(fe);

    assert_int_equal(KEEL_EINVAL, keel_fraud_evaluate(NULL, &cx, &r));
    assert_int_equal(KEEL_EINVAL, keel_fraud_evaluate(fe, &cx, NULL));
    assert_int_equal(KEEL_EINVAL, keel_fraud_result_err(NULL, NULL));
}

/* ------------------------------------------------------------ user rules -- */

typedef struct risky_bin {
    const char *bad_prefix;
    int disposed;
} risky_bin;

static keel_err email_domain_rule(const keel_fraud_context *cx, void *ud, keel_fraud_verdict *out)
{
    const risky_bin *rb = ud;
    const char *at = cx->email ? strchr(cx->email, '@') : NULL;
    if (at != NULL && strcmp(at + 1, rb->bad_prefix) == 0) {
        out->verdict = KEEL_FRAUD_REVIEW;
        out->score = 35;
        snprintf(out->reason, sizeof(out->reason), "disposable e-mail domain");
    }
    return KEEL_OK;
}

static void dispose_risky(void *ud)
{
    ((risky_bin *)ud)->disposed++;
}

static void test_user_rule(void **state)
{
    (void)state;
    risky_bin rb = {"mailinator.com", 0};
    keel_fraud_engine *fe = engine(50);
    ASSERT_OK(keel_fraud_add_rule(fe, "disposable_email", email_domain_rule, &rb, dispose_risky,
                                  NULL));
    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    cx.email = "x@mailinator.com";
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.decision);
    assert_int_equal(35, r.total_score);
    assert_string_equal("disposable_email", r.audit[0].rule);
    assert_string_equal("disposable e-mail domain", r.audit[0].reason);
    keel_fraud_engine_destroy(fe);
    assert_int_equal(1, rb.disposed);
}

/* ------------------------------------------------------------- blocklist -- */

static void test_blocklist(void **state)
{
    (void)state;
    keel_fraud_blocklist *bl = NULL;
    ASSERT_OK(keel_fraud_blocklist_create(&bl));
    ASSERT_OK(keel_fraud_blocklist_add(bl, KEEL_FRAUD_LIST_EMAIL, "Fraudster@Evil.example"));
    ASSERT_OK(keel_fraud_blocklist_add(bl, KEEL_FRAUD_LIST_EMAIL, "fraudster@evil.example"));
    ASSERT_OK(keel_fraud_blocklist_add(bl, KEEL_FRAUD_LIST_FINGERPRINT, "deadbeef"));
    ASSERT_OK(keel_fraud_blocklist_add(bl, KEEL_FRAUD_LIST_IP, "198.51.100.9"));
    assert_int_equal(KEEL_EINVAL, keel_fraud_blocklist_add(bl, KEEL_FRAUD_LIST_IP, ""));
    assert_int_equal(KEEL_EINVAL, keel_fraud_blocklist_add(bl, KEEL_FRAUD_LIST_COUNT, "x"));
    char big[300];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(KEEL_EINVAL, keel_fraud_blocklist_add(bl, KEEL_FRAUD_LIST_EMAIL, big));
    assert_int_equal(1, keel_fraud_blocklist_contains(bl, KEEL_FRAUD_LIST_EMAIL,
                                                      "FRAUDSTER@evil.EXAMPLE"));
    /* Fingerprints and IPs are exact. */
    assert_int_equal(0, keel_fraud_blocklist_contains(bl, KEEL_FRAUD_LIST_FINGERPRINT, "DEADBEEF"));
    assert_int_equal(0, keel_fraud_blocklist_contains(bl, KEEL_FRAUD_LIST_IP, NULL));
    /* Lists are separate. */
    assert_int_equal(0, keel_fraud_blocklist_contains(bl, KEEL_FRAUD_LIST_IP, "deadbeef"));

    keel_fraud_engine *fe = engine(50);
    scripted later = {KEEL_FRAUD_PASS, 0, NULL, KEEL_OK, 0, NULL, 0};
    ASSERT_OK(keel_fraud_add_blocklist(fe, "blocklist", bl, NULL));
    add_scripted(fe, "later", &later);
    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    assert_int_equal(1, later.calls);

    cx.email = "FraudSter@evil.example";
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    assert_string_equal("blocklist", r.blocked_by);
    assert_string_equal("e-mail address is blocklisted", r.audit[0].reason);
    assert_null(strstr(r.audit[0].reason, "evil")); /* the value is not repeated */
    assert_int_equal(1, later.calls);                /* blocked before any later rule */

    cx = ctx();
    cx.card_fingerprint = "deadbeef";
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    assert_string_equal("card is blocklisted", r.audit[0].reason);
    cx = ctx();
    cx.ip = "198.51.100.9";
    r = eval(fe, &cx);
    assert_string_equal("IP address is blocklisted", r.audit[0].reason);

    /* Updates apply to a running engine. */
    ASSERT_OK(keel_fraud_blocklist_remove(bl, KEEL_FRAUD_LIST_IP, "198.51.100.9"));
    assert_int_equal(KEEL_ENOTFOUND,
                     keel_fraud_blocklist_remove(bl, KEEL_FRAUD_LIST_IP, "198.51.100.9"));
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);

    /* Many entries stay sorted and findable. */
    for (int i = 0; i < 100; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i % 7, i);
        ASSERT_OK(keel_fraud_blocklist_add(bl, KEEL_FRAUD_LIST_IP, ip));
    }
    for (int i = 0; i < 100; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i % 7, i);
        assert_int_equal(1, keel_fraud_blocklist_contains(bl, KEEL_FRAUD_LIST_IP, ip));
    }
    assert_int_equal(0, keel_fraud_blocklist_contains(bl, KEEL_FRAUD_LIST_IP, "10.0.0.1"));
    keel_diag d;
    assert_int_equal(KEEL_EINVAL, keel_fraud_add_blocklist(fe, "bl2", NULL, &d));
    assert_non_null(strstr(d.msg, "blocklist"));
    keel_fraud_engine_destroy(fe);
    keel_fraud_blocklist_destroy(bl);
}

/* --------------------------------------------------------------- AVS/CVV -- */

static void test_avs_cvv(void **state)
{
    (void)state;
    keel_fraud_engine *fe = engine(50);
    ASSERT_OK(keel_fraud_add_avs_cvv(fe, "avs_cvv", NULL, NULL));
    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    assert_int_equal(0, r.total_score);

    cx.cvv_result = KEEL_CVV_NO_MATCH;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    assert_string_equal("avs_cvv", r.blocked_by);
    assert_string_equal("CVV does not match", r.audit[0].reason);
    assert_int_equal(100, r.audit[0].score);

    cx = ctx();
    cx.avs_result = KEEL_AVS_NO_MATCH;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    assert_string_equal("AVS does not match", r.audit[0].reason);

    cx.cvv_result = KEEL_CVV_NO_MATCH;
    r = eval(fe, &cx);
    assert_string_equal("CVV does not match; AVS does not match", r.audit[0].reason);
    assert_int_equal(200, r.total_score);

    cx = ctx();
    cx.avs_result = KEEL_AVS_ZIP_ONLY;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    assert_int_equal(10, r.total_score);
    assert_string_equal("AVS partial match", r.audit[0].reason);
    cx.avs_result = KEEL_AVS_UNAVAILABLE;
    cx.cvv_result = 0; /* unknown */
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    assert_int_equal(0, r.total_score);
    keel_fraud_engine_destroy(fe);

    /* AVS mismatch configurable: review instead of block; unavailable costs points. */
    keel_fraud_avs_cvv_config c;
    keel_fraud_avs_cvv_config_default(&c);
    assert_int_equal(KEEL_FRAUD_BLOCK, c.cvv_no_match);
    assert_int_equal(KEEL_FRAUD_BLOCK, c.avs_no_match);
    c.avs_no_match = KEEL_FRAUD_REVIEW;
    c.mismatch_score = 40;
    c.unavailable_score = 5;
    fe = engine(50);
    ASSERT_OK(keel_fraud_add_avs_cvv(fe, "avs_cvv", &c, NULL));
    cx = ctx();
    cx.avs_result = KEEL_AVS_NO_MATCH;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.decision);
    assert_int_equal(40, r.total_score);
    assert_null(r.blocked_by);
    cx.cvv_result = KEEL_CVV_UNAVAILABLE;
    r = eval(fe, &cx);
    assert_int_equal(45, r.total_score);
    assert_string_equal("CVV unavailable; AVS does not match", r.audit[0].reason);
    keel_fraud_engine_destroy(fe);

    keel_diag d;
    fe = engine(50);
    c.cvv_no_match = (keel_fraud_decision)12;
    assert_int_equal(KEEL_EINVAL, keel_fraud_add_avs_cvv(fe, "x", &c, &d));
    assert_non_null(strstr(d.msg, "cvv_no_match"));
    assert_int_equal(0, keel_fraud_engine_rules(fe));
    keel_fraud_engine_destroy(fe);
}

/* The sandbox's tok_cvcFail answer, fed to the engine, blocks before capture. */
static void test_avs_cvv_from_sandbox(void **state)
{
    (void)state;
    keel_sandbox *sb = NULL;
    ASSERT_OK(keel_sandbox_create(&sb, NULL, NULL));
    keel_charge_request req;
    memset(&req, 0, sizeof(req));
    req.amount = 1500;
    req.currency = cur("USD");
    req.payment_token = "tok_cvcFail";
    req.idempotency_key = "order-7";
    keel_charge_result auth;
    ASSERT_OK(keel_gateway_authorize(keel_sandbox_gateway(sb), &req, &auth, NULL));
    keel_fraud_engine *fe = engine(50);
    ASSERT_OK(keel_fraud_add_avs_cvv(fe, "avs_cvv", NULL, NULL));
    keel_fraud_context cx = ctx();
    cx.avs_result = auth.avs_result;
    cx.cvv_result = auth.cvv_result;
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_EPAY_FRAUD_BLOCKED, keel_fraud_result_err(&r, NULL));
    /* ... so the authorization is voided instead of captured. */
    keel_void_request v = {auth.charge_id, NULL};
    keel_charge_result out;
    ASSERT_OK(keel_gateway_void(keel_sandbox_gateway(sb), &v, &out, NULL));
    assert_int_equal(KEEL_CHARGE_VOIDED, out.status);
    keel_fraud_engine_destroy(fe);
    keel_sandbox_destroy(sb);
}

/* -------------------------------------------------------------- velocity -- */

static keel_velocity *memory_tracker(keel_manual_clock *mc)
{
    keel_velocity_memory_config c;
    keel_velocity_memory_config_default(&c);
    c.clock = &mc->clock;
    keel_velocity *v = NULL;
    ASSERT_OK(keel_velocity_memory_create(&v, &c, NULL));
    return v;
}

static void test_velocity_rule(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 1000000);
    keel_velocity *v = memory_tracker(&mc);
    keel_fraud_engine *fe = engine(50);
    keel_fraud_velocity_config vc;
    keel_fraud_velocity_config_default(&vc);
    assert_int_equal(5, vc.max_count);
    assert_int_equal(3600000, vc.window_ms);
    assert_int_equal(KEEL_FRAUD_BLOCK, vc.exceeded);
    vc.tracker = v;
    vc.key = KEEL_FRAUD_KEY_USER_ID;
    vc.max_count = 3;
    vc.window_ms = 60000;
    ASSERT_OK(keel_fraud_add_velocity(fe, "user_minute", &vc, NULL));

    keel_fraud_context cx = ctx();
    for (int i = 0; i < 3; i++) {
        keel_fraud_result r = eval(fe, &cx);
        assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
        mc.now += 1000;
    }
    keel_fraud_result r = eval(fe, &cx); /* 4th within the minute */
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    assert_string_equal("user_minute", r.blocked_by);
    assert_int_equal(50, r.total_score);
    assert_string_equal("4 attempts by this user_id within 60000 ms (limit 3)", r.audit[0].reason);

    /* Another user is counted separately. */
    cx.user_id = "u_43";
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);

    /* The window slides: the first attempt (t=1000000) leaves it at t=1060000. */
    cx.user_id = "u_42";
    mc.now = 1060000; /* attempts at 1000000..1003000 (4 so far, incl. the blocked one) */
    r = eval(fe, &cx);
    /* remaining: 1001000, 1002000, 1003000 + this = 4 > 3 */
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    mc.now = 1063000; /* 1001000..1003000 gone; 1060000 + this = 2 */
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);

    /* No key in the context: the rule passes and records nothing. */
    cx.user_id = NULL;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    assert_string_equal("no user_id to count by", r.audit[0].reason);
    keel_fraud_engine_destroy(fe);
    keel_velocity_destroy(v);
}

static size_t bin_key(const keel_fraud_context *cx, void *ud, char *buf, size_t cap)
{
    (void)ud;
    if (cx->card_fingerprint == NULL || cap < 7)
        return 0;
    memcpy(buf, cx->card_fingerprint, 6); /* pretend: the first 6 characters */
    return 6;
}

static void test_velocity_keys_and_review(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_velocity *v = memory_tracker(&mc);
    keel_fraud_engine *fe = engine(50);
    keel_fraud_velocity_config vc;
    keel_fraud_velocity_config_default(&vc);
    vc.tracker = v;
    vc.key = KEEL_FRAUD_KEY_EMAIL;
    vc.max_count = 1;
    vc.exceeded = KEEL_FRAUD_REVIEW;
    vc.score = 20;
    ASSERT_OK(keel_fraud_add_velocity(fe, "email_hourly", &vc, NULL));
    keel_fraud_velocity_config_default(&vc);
    vc.tracker = v;
    vc.key = KEEL_FRAUD_KEY_CUSTOM;
    vc.key_fn = bin_key;
    vc.max_count = 2;
    vc.exceeded = KEEL_FRAUD_CHALLENGE;
    vc.score = 5;
    ASSERT_OK(keel_fraud_add_velocity(fe, "bin_hourly", &vc, NULL));

    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    cx.email = "ALICE@example.COM"; /* same address, other case */
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.decision);
    assert_int_equal(20, r.audit[0].score);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.audit[0].verdict);
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_CHALLENGE, r.decision); /* 3rd by the same card prefix */
    assert_int_equal(25, r.total_score);
    assert_int_equal(2, r.evaluated);

    /* Both rules share the tracker, under their own key prefix. */
    uint64_t n = 0;
    ASSERT_OK(keel_velocity_count(v, KEEL_STR_LIT("email_hourly:alice@example.com"), 3600000, &n));
    assert_int_equal(3, n);
    ASSERT_OK(keel_velocity_count(v, KEEL_STR_LIT("bin_hourly:0f3a9c"), 3600000, &n));
    assert_int_equal(3, n);
    keel_fraud_engine_destroy(fe);
    keel_velocity_destroy(v);
}

/* ------------------------------------------------------ country, amount -- */

static void test_country_mismatch(void **state)
{
    (void)state;
    keel_fraud_engine *fe = engine(50);
    ASSERT_OK(keel_fraud_add_country_mismatch(fe, "country", NULL, NULL));
    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    cx.billing_country = "us"; /* case-insensitive */
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    cx.billing_country = "GB";
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_CHALLENGE, r.decision);
    assert_int_equal(20, r.total_score);
    assert_string_equal("card country US differs from billing country GB", r.audit[0].reason);
    keel_pay_failure f;
    assert_int_equal(KEEL_EPAY_AUTH_REQUIRED, keel_fraud_result_err(&r, &f));
    cx = ctx();
    cx.ip_country = "NG";
    r = eval(fe, &cx);
    assert_string_equal("card country US differs from IP country NG", r.audit[0].reason);
    cx = ctx();
    cx.card_country = NULL; /* unknown: not compared */
    cx.ip_country = "FR";
    r = eval(fe, &cx);
    assert_string_equal("billing country US differs from IP country FR", r.audit[0].reason);
    cx.billing_country = "";
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    keel_fraud_engine_destroy(fe);

    /* Only card vs billing, and as a review. */
    keel_fraud_country_config c;
    keel_fraud_country_config_default(&c);
    c.check_card_ip = 0;
    c.check_billing_ip = 0;
    c.mismatch = KEEL_FRAUD_REVIEW;
    fe = engine(50);
    ASSERT_OK(keel_fraud_add_country_mismatch(fe, "country", &c, NULL));
    cx = ctx();
    cx.ip_country = "NG";
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    cx.billing_country = "DE";
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_REVIEW, r.decision);
    keel_fraud_engine_destroy(fe);
}

static void test_high_amount(void **state)
{
    (void)state;
    keel_fraud_amount_limit limits[] = {{cur("USD"), 200000}, {cur("JPY"), 300000}};
    keel_fraud_amount_config c;
    keel_fraud_amount_config_default(&c);
    c.limits = limits;
    c.nlimits = 2;
    keel_fraud_engine *fe = engine(50);
    ASSERT_OK(keel_fraud_add_high_amount(fe, "high_amount", &c, NULL));
    limits[0].threshold = 1; /* copied at add time: later edits do not matter */
    keel_fraud_context cx = ctx();
    cx.amount = 200000; /* $2000.00: at the threshold, not above */
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    cx.amount = 200001;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_CHALLENGE, r.decision);
    assert_string_equal("amount 2000.01 USD above the threshold 2000.00", r.audit[0].reason);
    cx.currency = cur("JPY");
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision); /* 200001 yen is under 300000 */
    cx.amount = 300001;
    r = eval(fe, &cx);
    assert_string_equal("amount 300001 JPY above the threshold 300000", r.audit[0].reason);
    cx.currency = cur("EUR"); /* no threshold for EUR */
    cx.amount = INT64_MAX;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    cx.currency = NULL;
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    keel_fraud_engine_destroy(fe);
}

/* ---------------------------------------------------------- config errors -- */

static void expect_diag(keel_err got, keel_diag *d, const char *field)
{
    assert_int_equal(KEEL_EINVAL, got);
    if (strstr(d->msg, field) == NULL)
        fail_msg("diag \"%s\" does not name %s", d->msg, field);
}

static void test_config_errors(void **state)
{
    (void)state;
    keel_diag d;
    keel_fraud_engine *fe = NULL;
    keel_fraud_config cfg;
    keel_fraud_config_default(&cfg);
    assert_int_equal(50, cfg.review_threshold);
    assert_int_equal(KEEL_FRAUD_REVIEW, cfg.on_rule_error);
    cfg.review_threshold = -1;
    expect_diag(keel_fraud_engine_create(&fe, &cfg, &d), &d, "review_threshold");
    assert_null(fe);
    keel_fraud_config_default(&cfg);
    cfg.on_rule_error = (keel_fraud_decision)5;
    expect_diag(keel_fraud_engine_create(&fe, &cfg, &d), &d, "on_rule_error");
    keel_fraud_config_default(&cfg);
    cfg.size = 1;
    expect_diag(keel_fraud_engine_create(&fe, &cfg, &d), &d, "size");

    fe = engine(50);
    risky_bin rb = {"x", 0};
    expect_diag(keel_fraud_add_rule(fe, "r", NULL, &rb, dispose_risky, &d), &d, "fn");
    assert_int_equal(1, rb.disposed); /* ownership passed even on failure */
    expect_diag(keel_fraud_add_rule(fe, "", email_domain_rule, NULL, NULL, &d), &d, "name");
    expect_diag(keel_fraud_add_rule(fe, NULL, email_domain_rule, NULL, NULL, &d), &d, "name");
    char longname[KEEL_FRAUD_NAME_MAX + 1];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    expect_diag(keel_fraud_add_rule(fe, longname, email_domain_rule, NULL, NULL, &d), &d, "name");
    ASSERT_OK(keel_fraud_add_rule(fe, "dup", email_domain_rule, &rb, NULL, &d));
    expect_diag(keel_fraud_add_rule(fe, "dup", email_domain_rule, &rb, NULL, &d), &d, "dup");

    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 0);
    keel_velocity *v = memory_tracker(&mc);
    keel_fraud_velocity_config vc;
    keel_fraud_velocity_config_default(&vc);
    expect_diag(keel_fraud_add_velocity(fe, "v", &vc, &d), &d, "tracker");
    vc.tracker = v;
    vc.max_count = 0;
    expect_diag(keel_fraud_add_velocity(fe, "v", &vc, &d), &d, "max_count");
    vc.max_count = 5;
    vc.window_ms = 0;
    expect_diag(keel_fraud_add_velocity(fe, "v", &vc, &d), &d, "window_ms");
    vc.window_ms = 1000;
    vc.key = KEEL_FRAUD_KEY_CUSTOM;
    expect_diag(keel_fraud_add_velocity(fe, "v", &vc, &d), &d, "key_fn");
    vc.key = (keel_fraud_key)17;
    expect_diag(keel_fraud_add_velocity(fe, "v", &vc, &d), &d, "key");
    vc.key = KEEL_FRAUD_KEY_IP;
    vc.exceeded = (keel_fraud_decision)4;
    expect_diag(keel_fraud_add_velocity(fe, "v", &vc, &d), &d, "exceeded");
    expect_diag(keel_fraud_add_velocity(fe, "v", NULL, &d), &d, "cfg");
    vc.exceeded = KEEL_FRAUD_BLOCK;
    expect_diag(keel_fraud_add_velocity(fe, "", &vc, &d), &d, "name");

    keel_fraud_amount_config ac;
    keel_fraud_amount_config_default(&ac);
    expect_diag(keel_fraud_add_high_amount(fe, "amt", &ac, &d), &d, "limits");
    keel_fraud_amount_limit lim[] = {{cur("USD"), 0}, {cur("USD"), 5}};
    ac.limits = lim;
    ac.nlimits = 1;
    expect_diag(keel_fraud_add_high_amount(fe, "amt", &ac, &d), &d, "limits[0].threshold");
    lim[0].threshold = -100;
    expect_diag(keel_fraud_add_high_amount(fe, "amt", &ac, &d), &d, "limits[0].threshold");
    lim[0].threshold = 100;
    ac.nlimits = 2;
    expect_diag(keel_fraud_add_high_amount(fe, "amt", &ac, &d), &d, "limits[1].currency");
    lim[1].currency = NULL;
    expect_diag(keel_fraud_add_high_amount(fe, "amt", &ac, &d), &d, "limits[1].currency");
    expect_diag(keel_fraud_add_high_amount(fe, "amt", NULL, &d), &d, "cfg");

    keel_fraud_country_config cc;
    keel_fraud_country_config_default(&cc);
    cc.mismatch = (keel_fraud_decision)-1;
    expect_diag(keel_fraud_add_country_mismatch(fe, "c", &cc, &d), &d, "mismatch");
    assert_int_equal(1, keel_fraud_engine_rules(fe)); /* only "dup" made it */

    /* The rule table is bounded. */
    for (int i = 1; i < KEEL_FRAUD_MAX_RULES; i++) {
        char name[16];
        snprintf(name, sizeof(name), "r%d", i);
        ASSERT_OK(keel_fraud_add_rule(fe, name, email_domain_rule, &rb, NULL, &d));
    }
    assert_int_equal(KEEL_EFULL, keel_fraud_add_rule(fe, "one_more", email_domain_rule, &rb,
                                                     dispose_risky, &d));
    assert_int_equal(2, rb.disposed);
    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_MAX_RULES, r.evaluated);
    keel_fraud_engine_destroy(fe);
    keel_velocity_destroy(v);
}

/* ------------------------------------------------ the seed's full engine -- */

static void test_seed_engine(void **state)
{
    (void)state;
    keel_manual_clock mc;
    keel_manual_clock_init(&mc, 5000);
    keel_velocity *v = memory_tracker(&mc);
    keel_fraud_blocklist *bl = NULL;
    ASSERT_OK(keel_fraud_blocklist_create(&bl));
    ASSERT_OK(keel_fraud_blocklist_add(bl, KEEL_FRAUD_LIST_EMAIL, "blocked@example.com"));
    keel_fraud_engine *fe = engine(50);
    keel_diag d;
    ASSERT_OK(keel_fraud_add_blocklist(fe, "blocklist", bl, &d));
    ASSERT_OK(keel_fraud_add_avs_cvv(fe, "avs_cvv", NULL, &d));
    keel_fraud_velocity_config vc;
    keel_fraud_velocity_config_default(&vc);
    vc.tracker = v;
    ASSERT_OK(keel_fraud_add_velocity(fe, "user_hourly", &vc, &d));
    ASSERT_OK(keel_fraud_add_country_mismatch(fe, "country_mismatch", NULL, &d));
    keel_fraud_amount_limit lim = {cur("USD"), 200000};
    keel_fraud_amount_config ac;
    keel_fraud_amount_config_default(&ac);
    ac.limits = &lim;
    ac.nlimits = 1;
    ASSERT_OK(keel_fraud_add_high_amount(fe, "high_amount", &ac, &d));

    keel_fraud_context cx = ctx();
    keel_fraud_result r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_APPROVE, r.decision);
    assert_int_equal(5, r.evaluated);
    const char *names[] = {"blocklist", "avs_cvv", "user_hourly", "country_mismatch",
                           "high_amount"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(names[i], r.audit[i].rule);

    /* Blocklisted e-mail: blocked before the velocity rule counts the attempt. */
    cx.email = "Blocked@Example.com";
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_BLOCK, r.decision);
    assert_string_equal("blocklist", r.blocked_by);
    assert_int_equal(1, r.evaluated);
    uint64_t n = 0;
    ASSERT_OK(keel_velocity_count(v, KEEL_STR_LIT("user_hourly:u_42"), 3600000, &n));
    assert_int_equal(1, n);

    /* Over $2k from abroad: CHALLENGE (two rules agree), not BLOCK. */
    cx = ctx();
    cx.amount = 250000;
    cx.ip_country = "BR";
    r = eval(fe, &cx);
    assert_int_equal(KEEL_FRAUD_CHALLENGE, r.decision);
    assert_int_equal(KEEL_FRAUD_CHALLENGE, r.audit[3].verdict);
    assert_int_equal(KEEL_FRAUD_CHALLENGE, r.audit[4].verdict);
    keel_fraud_engine_destroy(fe);
    keel_fraud_blocklist_destroy(bl);
    keel_velocity_destroy(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_audit),
        cmocka_unit_test(test_block_short_circuits),
        cmocka_unit_test(test_thresholds),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_rule_errors),
        cmocka_unit_test(test_user_rule),
        cmocka_unit_test(test_blocklist),
        cmocka_unit_test(test_avs_cvv),
        cmocka_unit_test(test_avs_cvv_from_sandbox),
        cmocka_unit_test(test_velocity_rule),
        cmocka_unit_test(test_velocity_keys_and_review),
        cmocka_unit_test(test_country_mismatch),
        cmocka_unit_test(test_high_amount),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_seed_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
