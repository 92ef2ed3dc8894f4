/* fraud.c - the fraud rule engine, the blocklist and the built-in rules (keel/fraud.h). */
#include "keel_int.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include <keel/fraud.h>
#include <keel/payment.h>

#define FRAUD_VALUE_MAX 254 /* longest blocklist entry (an e-mail address) */

/* --------------------------------------------------------------- engine -- */

typedef struct fraud_rule {
    char name[KEEL_FRAUD_NAME_MAX];
    keel_fraud_rule_fn fn;
    void *ud;
    void (*dispose)(void *ud);
} fraud_rule;

struct keel_fraud_engine {
    keel_fraud_config cfg;
    fraud_rule rules[KEEL_FRAUD_MAX_RULES];
    size_t nrules;
};

static int decision_valid(keel_fraud_decision d)
{
    return (unsigned)d <= (unsigned)KEEL_FRAUD_BLOCK;
}

const char *keel_fraud_decision_name(keel_fraud_decision d)
{
    switch (d) {
    case KEEL_FRAUD_APPROVE:
        return "approve";
    case KEEL_FRAUD_REVIEW:
        return "review";
    case KEEL_FRAUD_CHALLENGE:
        return "challenge";
    case KEEL_FRAUD_BLOCK:
        return "block";
    }
    return "unknown";
}

void keel_fraud_config_default(keel_fraud_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->review_threshold = 50;
    cfg->on_rule_error = KEEL_FRAUD_REVIEW;
}

keel_err keel_fraud_engine_create(keel_fraud_engine **out, const keel_fraud_config *cfg,
                                  keel_diag *diag)
{
    keel_fraud_config c;
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "out: NULL");
    *out = NULL;
    keel_fraud_config_default(&c);
    if (cfg != NULL) {
        if (cfg->size != sizeof(*cfg))
            return keel_diag_set(diag, KEEL_EINVAL, 0,
                                 "size: not sizeof(keel_fraud_config); use "
                                 "keel_fraud_config_default()");
        c = *cfg;
    }
    if (c.review_threshold < 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "review_threshold: must be >= 0");
    if (!decision_valid(c.on_rule_error))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "on_rule_error: not a keel_fraud_decision");
    keel_fraud_engine *fe = keel__new(keel_fraud_engine);
    if (fe == NULL)
        return KEEL_ENOMEM;
    fe->cfg = c;
    *out = fe;
    return KEEL_OK;
}

void keel_fraud_engine_destroy(keel_fraud_engine *fe)
{
    if (fe == NULL)
        return;
    for (size_t i = 0; i < fe->nrules; i++)
        if (fe->rules[i].dispose != NULL)
            fe->rules[i].dispose(fe->rules[i].ud);
    keel_free(fe);
}

size_t keel_fraud_engine_rules(const keel_fraud_engine *fe)
{
    return fe != NULL ? fe->nrules : 0;
}

keel_err keel_fraud_add_rule(keel_fraud_engine *fe, const char *name, keel_fraud_rule_fn fn,
                             void *ud, void (*dispose)(void *ud), keel_diag *diag)
{
    keel_err e = KEEL_OK;
    size_t n = name != NULL ? strnlen(name, KEEL_FRAUD_NAME_MAX) : 0;
    if (fe == NULL)
        e = keel_diag_set(diag, KEEL_EINVAL, 0, "engine: NULL");
    else if (fn == NULL)
        e = keel_diag_set(diag, KEEL_EINVAL, 0, "fn: NULL rule function");
    else if (n == 0 || n >= KEEL_FRAUD_NAME_MAX)
        e = keel_diag_set(diag, KEEL_EINVAL, 0, "name: must be 1 to %d bytes",
                          KEEL_FRAUD_NAME_MAX - 1);
    else if (fe->nrules >= KEEL_FRAUD_MAX_RULES)
        e = keel_diag_set(diag, KEEL_EFULL, 0, "rules: at most %d per engine",
                          KEEL_FRAUD_MAX_RULES);
    for (size_t i = 0; e == KEEL_OK && i < fe->nrules; i++)
        if (strcmp(fe->rules[i].name, name) == 0)
            e = keel_diag_set(diag, KEEL_EINVAL, 0, "name: rule '%s' already exists", name);
    if (e != KEEL_OK) {
        if (dispose != NULL)
            dispose(ud);
        return e;
    }
    fraud_rule *r = &fe->rules[fe->nrules++];
    memcpy(r->name, name, n);
    r->name[n] = '\0';
    r->fn = fn;
    r->ud = ud;
    r->dispose = dispose;
    return KEEL_OK;
}

keel_err keel_fraud_evaluate(const keel_fraud_engine *fe, const keel_fraud_context *cx,
                             keel_fraud_result *out)
{
    if (out == NULL)
        return KEEL_EINVAL;
    memset(out, 0, sizeof(*out));
    if (fe == NULL || cx == NULL)
        return KEEL_EINVAL;
    for (size_t i = 0; i < fe->nrules; i++) {
        const fraud_rule *r = &fe->rules[i];
        keel_fraud_verdict v;
        memset(&v, 0, sizeof(v));
        keel_err e = r->fn(cx, r->ud, &v);
        if (e == KEEL_OK && !decision_valid(v.verdict))
            e = KEEL_EINVAL;
        keel_fraud_audit *a = &out->audit[out->evaluated++];
        a->rule = r->name;
        if (e != KEEL_OK) {
            out->errors++;
            a->err = e;
            memset(&v, 0, sizeof(v));
            v.verdict = fe->cfg.on_rule_error;
            snprintf(v.reason, sizeof(v.reason), "rule failed: %s", keel_strerror(e));
        }
        v.reason[sizeof(v.reason) - 1] = '\0';
        a->verdict = v.verdict;
        a->score = v.score;
        memcpy(a->reason, v.reason, sizeof(a->reason));
        out->total_score += v.score;
        if (v.verdict > out->decision)
            out->decision = v.verdict;
        if (v.verdict == KEEL_FRAUD_BLOCK) {
            out->blocked_by = r->name;
            break; /* first BLOCK short-circuits: later rules do not run */
        }
    }
    if (out->decision == KEEL_FRAUD_APPROVE && out->total_score > 0 &&
        out->total_score >= fe->cfg.review_threshold)
        out->decision = KEEL_FRAUD_REVIEW;
    return KEEL_OK;
}

keel_err keel_fraud_result_err(const keel_fraud_result *r, keel_pay_failure *fail)
{
    if (fail != NULL)
        memset(fail, 0, sizeof(*fail));
    if (r == NULL)
        return KEEL_EINVAL;
    switch (r->decision) {
    case KEEL_FRAUD_BLOCK:
        return keel_pay_fail(fail, KEEL_EPAY_FRAUD_BLOCKED, "fraudulent",
                             "blocked by fraud rule '%s'",
                             r->blocked_by != NULL ? r->blocked_by : "?");
    case KEEL_FRAUD_CHALLENGE:
        return keel_pay_fail(fail, KEEL_EPAY_AUTH_REQUIRED, "authentication_required",
                             "fraud screening requires 3-D Secure authentication");
    case KEEL_FRAUD_APPROVE:
    case KEEL_FRAUD_REVIEW:
        break;
    }
    return KEEL_OK;
}

/* Fill a verdict with a formatted reason. */
static void say(keel_fraud_verdict *v, keel_fraud_decision d, int32_t score, const char *fmt,
                ...) KEEL_PRINTF(4, 5);
static void say(keel_fraud_verdict *v, keel_fraud_decision d, int32_t score, const char *fmt,
                ...)
{
    va_list ap;
    v->verdict = d;
    v->score = score;
    va_start(ap, fmt);
    vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
    va_end(ap);
}

static int known(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* ------------------------------------------------------------ blocklist -- */

typedef struct fraud_set {
    char **items; /* sorted (strcmp) */
    size_t len, cap;
} fraud_set;

struct keel_fraud_blocklist {
    pthread_rwlock_t lock;
    fraud_set lists[KEEL_FRAUD_LIST_COUNT];
};

keel_err keel_fraud_blocklist_create(keel_fraud_blocklist **out)
{
    if (out == NULL)
        return KEEL_EINVAL;
    keel_fraud_blocklist *bl = keel__new(keel_fraud_blocklist);
    if (bl == NULL)
        return KEEL_ENOMEM;
    if (pthread_rwlock_init(&bl->lock, NULL) != 0) {
        keel_free(bl);
        return KEEL_ENOMEM;
    }
    *out = bl;
    return KEEL_OK;
}

void keel_fraud_blocklist_destroy(keel_fraud_blocklist *bl)
{
    if (bl == NULL)
        return;
    for (size_t l = 0; l < KEEL_FRAUD_LIST_COUNT; l++) {
        for (size_t i = 0; i < bl->lists[l].len; i++)
            keel_free(bl->lists[l].items[i]);
        keel_free(bl->lists[l].items);
    }
    pthread_rwlock_destroy(&bl->lock);
    keel_free(bl);
}

/* Normalise a value for its list into buf (e-mails lower-cased).  0 when unusable. */
static size_t normalise(keel_fraud_list list, const char *value, char *buf, size_t cap)
{
    if (value == NULL)
        return 0;
    size_t n = strnlen(value, cap);
    if (n == 0 || n >= cap)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = value[i];
        if (list == KEEL_FRAUD_LIST_EMAIL && c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        buf[i] = c;
    }
    buf[n] = '\0';
    return n;
}

/* Binary search: index of value, or where it would go (*found 0). */
static size_t set_find(const fraud_set *s, const char *value, int *found)
{
    size_t lo = 0, hi = s->len;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->items[mid], value);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

keel_err keel_fraud_blocklist_add(keel_fraud_blocklist *bl, keel_fraud_list list,
                                  const char *value)
{
    char buf[FRAUD_VALUE_MAX + 1];
    if (bl == NULL || (unsigned)list >= KEEL_FRAUD_LIST_COUNT)
        return KEEL_EINVAL;
    size_t n = normalise(list, value, buf, sizeof(buf));
    if (n == 0)
        return KEEL_EINVAL;
    keel_err e = KEEL_OK;
    pthread_rwlock_wrlock(&bl->lock);
    fraud_set *s = &bl->lists[list];
    int found;
    size_t at = set_find(s, buf, &found);
    if (found)
        goto out;
    if (s->len >= KEEL_FRAUD_BLOCKLIST_MAX) {
        e = KEEL_EFULL;
        goto out;
    }
    if (s->len == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        char **ni = keel_realloc(s->items, nc * sizeof(*ni));
        if (ni == NULL) {
            e = KEEL_ENOMEM;
            goto out;
        }
        s->items = ni;
        s->cap = nc;
    }
    char *copy = keel_strndup(buf, n);
    if (copy == NULL) {
        e = KEEL_ENOMEM;
        goto out;
    }
    memmove(&s->items[at + 1], &s->items[at], (s->len - at) * sizeof(*s->items));
    s->items[at] = copy;
    s->len++;
out:
    pthread_rwlock_unlock(&bl->lock);
    return e;
}

keel_err keel_fraud_blocklist_remove(keel_fraud_blocklist *bl, keel_fraud_list list,
                                     const char *value)
{
    char buf[FRAUD_VALUE_MAX + 1];
    if (bl == NULL || (unsigned)list >= KEEL_FRAUD_LIST_COUNT)
        return KEEL_EINVAL;
    if (normalise(list, value, buf, sizeof(buf)) == 0)
        return KEEL_EINVAL;
    keel_err e = KEEL_ENOTFOUND;
    pthread_rwlock_wrlock(&bl->lock);
    fraud_set *s = &bl->lists[list];
    int found;
    size_t at = set_find(s, buf, &found);
    if (found) {
        keel_free(s->items[at]);
        memmove(&s->items[at], &s->items[at + 1], (s->len - at - 1) * sizeof(*s->items));
        s->len--;
        e = KEEL_OK;
    }
    pthread_rwlock_unlock(&bl->lock);
    return e;
}

int keel_fraud_blocklist_contains(const keel_fraud_blocklist *cbl, keel_fraud_list list,
                                  const char *value)
{
    char buf[FRAUD_VALUE_MAX + 1];
    if (cbl == NULL || (unsigned)list >= KEEL_FRAUD_LIST_COUNT)
        return 0;
    if (normalise(list, value, buf, sizeof(buf)) == 0)
        return 0;
    /* Lookups only read, but the lock lives inside the (const) list. */
    keel_fraud_blocklist *bl = (keel_fraud_blocklist *)(uintptr_t)cbl;
    pthread_rwlock_rdlock(&bl->lock);
    int found;
    (void)set_find(&bl->lists[list], buf, &found);
    pthread_rwlock_unlock(&bl->lock);
    return found;
}

static keel_err blocklist_rule(const keel_fraud_context *cx, void *ud, keel_fraud_verdict *out)
{
    const keel_fraud_blocklist *bl = ud;
    if (keel_fraud_blocklist_contains(bl, KEEL_FRAUD_LIST_EMAIL, cx->email))
        say(out, KEEL_FRAUD_BLOCK, 100, "e-mail address is blocklisted");
    else if (keel_fraud_blocklist_contains(bl, KEEL_FRAUD_LIST_FINGERPRINT, cx->card_fingerprint))
        say(out, KEEL_FRAUD_BLOCK, 100, "card is blocklisted");
    else if (keel_fraud_blocklist_contains(bl, KEEL_FRAUD_LIST_IP, cx->ip))
        say(out, KEEL_FRAUD_BLOCK, 100, "IP address is blocklisted");
    return KEEL_OK;
}

keel_err keel_fraud_add_blocklist(keel_fraud_engine *fe, const char *name,
                                  keel_fraud_blocklist *bl, keel_diag *diag)
{
    if (bl == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "blocklist: NULL");
    return keel_fraud_add_rule(fe, name, blocklist_rule, bl, NULL, diag);
}

/* -------------------------------------------------------------- AVS/CVV -- */

void keel_fraud_avs_cvv_config_default(keel_fraud_avs_cvv_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->cvv_no_match = KEEL_FRAUD_BLOCK;
    cfg->avs_no_match = KEEL_FRAUD_BLOCK;
    cfg->avs_partial_score = 10;
    cfg->unavailable_score = 0;
    cfg->mismatch_score = 100;
}

static keel_err avs_cvv_rule(const keel_fraud_context *cx, void *ud, keel_fraud_verdict *out)
{
    const keel_fraud_avs_cvv_config *c = ud;
    keel_fraud_decision d = KEEL_FRAUD_APPROVE;
    int32_t score = 0;
    const char *cvv = "", *avs = "";
    if (cx->cvv_result == KEEL_CVV_NO_MATCH) {
        d = c->cvv_no_match;
        score += c->mismatch_score;
        cvv = "CVV does not match";
    } else if (cx->cvv_result == KEEL_CVV_UNAVAILABLE) {
        score += c->unavailable_score;
        cvv = "CVV unavailable";
    }
    if (cx->avs_result == KEEL_AVS_NO_MATCH) {
        if (c->avs_no_match > d)
            d = c->avs_no_match;
        score += c->mismatch_score;
        avs = "AVS does not match";
    } else if (cx->avs_result == KEEL_AVS_ADDRESS_ONLY || cx->avs_result == KEEL_AVS_ZIP_ONLY) {
        score += c->avs_partial_score;
        avs = "AVS partial match";
    } else if (cx->avs_result == KEEL_AVS_UNAVAILABLE) {
        score += c->unavailable_score;
        avs = "AVS unavailable";
    }
    say(out, d, score, "%s%s%s", cvv, (cvv[0] && avs[0]) ? "; " : "", avs);
    return KEEL_OK;
}

keel_err keel_fraud_add_avs_cvv(keel_fraud_engine *fe, const char *name,
                                const keel_fraud_avs_cvv_config *cfg, keel_diag *diag)
{
    keel_fraud_avs_cvv_config *c = keel__new(keel_fraud_avs_cvv_config);
    if (c == NULL)
        return KEEL_ENOMEM;
    keel_fraud_avs_cvv_config_default(c);
    keel_err e = KEEL_OK;
    if (cfg != NULL) {
        if (cfg->size != sizeof(*cfg))
            e = keel_diag_set(diag, KEEL_EINVAL, 0,
                              "size: not sizeof(keel_fraud_avs_cvv_config); use "
                              "keel_fraud_avs_cvv_config_default()");
        else
            *c = *cfg;
    }
    if (e == KEEL_OK && !decision_valid(c->cvv_no_match))
        e = keel_diag_set(diag, KEEL_EINVAL, 0, "cvv_no_match: not a keel_fraud_decision");
    if (e == KEEL_OK && !decision_valid(c->avs_no_match))
        e = keel_diag_set(diag, KEEL_EINVAL, 0, "avs_no_match: not a keel_fraud_decision");
    if (e != KEEL_OK) {
        keel_free(c);
        return e;
    }
    return keel_fraud_add_rule(fe, name, avs_cvv_rule, c, keel_free, diag);
}

/* ------------------------------------------------------------- velocity -- */

typedef struct velocity_rule {
    keel_fraud_velocity_config cfg;
    char name[KEEL_FRAUD_NAME_MAX];
} velocity_rule;

static const char *KEY_NAMES[] = {"user_id", "email", "card", "ip", "custom key"};

void keel_fraud_velocity_config_default(keel_fraud_velocity_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->key = KEEL_FRAUD_KEY_USER_ID;
    cfg->max_count = 5;
    cfg->window_ms = 3600000;
    cfg->exceeded = KEEL_FRAUD_BLOCK;
    cfg->score = 50;
}

/* "<rule>:<value>" into buf; 0 when the context has no value for the key, SIZE_MAX when the
 * key does not fit. */
static size_t velocity_key(const velocity_rule *r, const keel_fraud_context *cx, char *buf,
                           size_t cap)
{
    size_t pre = strlen(r->name) + 1;
    memcpy(buf, r->name, pre - 1);
    buf[pre - 1] = ':';
    const char *v = NULL;
    switch (r->cfg.key) {
    case KEEL_FRAUD_KEY_USER_ID:
        v = cx->user_id;
        break;
    case KEEL_FRAUD_KEY_EMAIL:
        v = cx->email;
        break;
    case KEEL_FRAUD_KEY_CARD_FINGERPRINT:
        v = cx->card_fingerprint;
        break;
    case KEEL_FRAUD_KEY_IP:
        v = cx->ip;
        break;
    case KEEL_FRAUD_KEY_CUSTOM: {
        size_t n = r->cfg.key_fn(cx, r->cfg.key_ud, buf + pre, cap - pre);
        if (n == 0)
            return 0;
        if (n >= cap - pre)
            return SIZE_MAX;
        return pre + n;
    }
    }
    if (!known(v))
        return 0;
    size_t n = strlen(v);
    if (n >= cap - pre)
        return SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (r->cfg.key == KEEL_FRAUD_KEY_EMAIL && c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        buf[pre + i] = c;
    }
    return pre + n;
}

static keel_err velocity_rule_fn(const keel_fraud_context *cx, void *ud, keel_fraud_verdict *out)
{
    const velocity_rule *r = ud;
    char key[KEEL_VELOCITY_KEY_MAX + 1];
    size_t n = velocity_key(r, cx, key, sizeof(key));
    if (n == 0) {
        say(out, KEEL_FRAUD_APPROVE, 0, "no %s to count by", KEY_NAMES[r->cfg.key]);
        return KEEL_OK;
    }
    if (n == SIZE_MAX)
        return KEEL_EINVAL;
    uint64_t count = 0;
    keel_err e = keel_velocity_hit(r->cfg.tracker, (keel_str){key, n}, r->cfg.window_ms, &count);
    if (e != KEEL_OK)
        return e;
    if (count > r->cfg.max_count)
        say(out, r->cfg.exceeded, r->cfg.score,
            "%llu attempts by this %s within %llu ms (limit %llu)", (unsigned long long)count,
            KEY_NAMES[r->cfg.key], (unsigned long long)r->cfg.window_ms,
            (unsigned long long)r->cfg.max_count);
    return KEEL_OK;
}

keel_err keel_fraud_add_velocity(keel_fraud_engine *fe, const char *name,
                                 const keel_fraud_velocity_config *cfg, keel_diag *diag)
{
    if (cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cfg: NULL (tracker is required)");
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "size: not sizeof(keel_fraud_velocity_config); use "
                             "keel_fraud_velocity_config_default()");
    if (cfg->tracker == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "tracker: NULL");
    if ((unsigned)cfg->key > (unsigned)KEEL_FRAUD_KEY_CUSTOM)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "key: not a keel_fraud_key");
    if (cfg->key == KEEL_FRAUD_KEY_CUSTOM && cfg->key_fn == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "key_fn: NULL with KEEL_FRAUD_KEY_CUSTOM");
    if (cfg->max_count == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "max_count: must be > 0");
    if (cfg->window_ms == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "window_ms: must be > 0");
    if (!decision_valid(cfg->exceeded))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "exceeded: not a keel_fraud_decision");
    if (name == NULL || strnlen(name, KEEL_FRAUD_NAME_MAX) >= KEEL_FRAUD_NAME_MAX)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "name: must be 1 to %d bytes",
                             KEEL_FRAUD_NAME_MAX - 1);
    velocity_rule *r = keel__new(velocity_rule);
    if (r == NULL)
        return KEEL_ENOMEM;
    r->cfg = *cfg;
    memcpy(r->name, name, strlen(name) + 1);
    return keel_fraud_add_rule(fe, name, velocity_rule_fn, r, keel_free, diag);
}

/* ------------------------------------------------------ country mismatch -- */

void keel_fraud_country_config_default(keel_fraud_country_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->mismatch = KEEL_FRAUD_CHALLENGE;
    cfg->score = 20;
    cfg->check_card_billing = 1;
    cfg->check_card_ip = 1;
    cfg->check_billing_ip = 1;
}

static int differ(const char *a, const char *b)
{
    return known(a) && known(b) && !keel_str_ieq(keel_str_c(a), keel_str_c(b));
}

static keel_err country_rule(const keel_fraud_context *cx, void *ud, keel_fraud_verdict *out)
{
    const keel_fraud_country_config *c = ud;
    if (c->check_card_billing && differ(cx->card_country, cx->billing_country))
        say(out, c->mismatch, c->score, "card country %.8s differs from billing country %.8s",
            cx->card_country, cx->billing_country);
    else if (c->check_card_ip && differ(cx->card_country, cx->ip_country))
        say(out, c->mismatch, c->score, "card country %.8s differs from IP country %.8s",
            cx->card_country, cx->ip_country);
    else if (c->check_billing_ip && differ(cx->billing_country, cx->ip_country))
        say(out, c->mismatch, c->score, "billing country %.8s differs from IP country %.8s",
            cx->billing_country, cx->ip_country);
    return KEEL_OK;
}

keel_err keel_fraud_add_country_mismatch(keel_fraud_engine *fe, const char *name,
                                         const keel_fraud_country_config *cfg, keel_diag *diag)
{
    keel_fraud_country_config *c = keel__new(keel_fraud_country_config);
    if (c == NULL)
        return KEEL_ENOMEM;
    keel_fraud_country_config_default(c);
    keel_err e = KEEL_OK;
    if (cfg != NULL) {
        if (cfg->size != sizeof(*cfg))
            e = keel_diag_set(diag, KEEL_EINVAL, 0,
                              "size: not sizeof(keel_fraud_country_config); use "
                              "keel_fraud_country_config_default()");
        else
            *c = *cfg;
    }
    if (e == KEEL_OK && !decision_valid(c->mismatch))
        e = keel_diag_set(diag, KEEL_EINVAL, 0, "mismatch: not a keel_fraud_decision");
    if (e != KEEL_OK) {
        keel_free(c);
        return e;
    }
    return keel_fraud_add_rule(fe, name, country_rule, c, keel_free, diag);
}

/* ---------------------------------------------------------- high amount -- */

typedef struct amount_rule {
    keel_fraud_decision above;
    int32_t score;
    size_t nlimits;
    keel_fraud_amount_limit limits[];
} amount_rule;

void keel_fraud_amount_config_default(keel_fraud_amount_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->above = KEEL_FRAUD_CHALLENGE;
    cfg->score = 0;
}

static int same_currency(const keel_currency *a, const keel_currency *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a->code, b->code) == 0);
}

static keel_err amount_rule_fn(const keel_fraud_context *cx, void *ud, keel_fraud_verdict *out)
{
    const amount_rule *r = ud;
    if (cx->currency == NULL)
        return KEEL_OK;
    for (size_t i = 0; i < r->nlimits; i++) {
        const keel_fraud_amount_limit *l = &r->limits[i];
        if (!same_currency(l->currency, cx->currency))
            continue;
        if (cx->amount > l->threshold) {
            char a[KEEL_MONEY_STR_MAX + 1], t[KEEL_MONEY_STR_MAX + 1];
            keel_money_format(cx->amount, cx->currency, a, sizeof(a));
            keel_money_format(l->threshold, cx->currency, t, sizeof(t));
            say(out, r->above, r->score, "amount %s %s above the threshold %s", a,
                cx->currency->code, t);
        }
        break;
    }
    return KEEL_OK;
}

keel_err keel_fraud_add_high_amount(keel_fraud_engine *fe, const char *name,
                                    const keel_fraud_amount_config *cfg, keel_diag *diag)
{
    if (cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "cfg: NULL (limits are required)");
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "size: not sizeof(keel_fraud_amount_config); use "
                             "keel_fraud_amount_config_default()");
    if (cfg->nlimits == 0 || cfg->limits == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "limits: at least one threshold required");
    if (cfg->nlimits > 256)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "nlimits: at most 256");
    if (!decision_valid(cfg->above))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "above: not a keel_fraud_decision");
    for (size_t i = 0; i < cfg->nlimits; i++) {
        if (cfg->limits[i].currency == NULL)
            return keel_diag_set(diag, KEEL_EINVAL, i, "limits[%zu].currency: NULL", i);
        if (cfg->limits[i].threshold <= 0)
            return keel_diag_set(diag, KEEL_EINVAL, i, "limits[%zu].threshold: must be > 0", i);
        for (size_t j = 0; j < i; j++)
            if (same_currency(cfg->limits[i].currency, cfg->limits[j].currency))
                return keel_diag_set(diag, KEEL_EINVAL, i,
                                     "limits[%zu].currency: %s appears twice", i,
                                     cfg->limits[i].currency->code);
    }
    amount_rule *r = keel_calloc(1, sizeof(*r) + cfg->nlimits * sizeof(r->limits[0]));
    if (r == NULL)
        return KEEL_ENOMEM;
    r->above = cfg->above;
    r->score = cfg->score;
    r->nlimits = cfg->nlimits;
    memcpy(r->limits, cfg->limits, cfg->nlimits * sizeof(r->limits[0]));
    return keel_fraud_add_rule(fe, name, amount_rule_fn, r, keel_free, diag);
}
