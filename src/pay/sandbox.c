/* sandbox.c - the deterministic in-memory sandbox gateway (keel/gateway.h).
 *
 * One mutex guards everything.  Charges live in an array indexed by their sequence number
 * (the id "ch_sandbox_000042" is element 41), so lookups need no map.  Idempotency records
 * are kept in a chained hash table keyed by (operation, key); each holds a fingerprint of the
 * request parameters and the saved answer (result or failure). */
#include "keel_int.h"

#include <pthread.h>
#include <stdio.h>

#include <keel/gateway.h>
#include <keel/payment.h>
#include <keel/policy.h>

#define SB_MAX_ALIASES 1024

/* --------------------------------------------------------------- tokens -- */

typedef struct sb_token {
    const char *name;
    keel_err err;
    const char *decline_code;
    const char *message;
    char avs;
    char cvv;
} sb_token;

static const sb_token SB_TOKENS[] = {
    {"tok_visa", KEEL_OK, NULL, NULL, KEEL_AVS_MATCH, KEEL_CVV_MATCH},
    {"tok_mastercard", KEEL_OK, NULL, NULL, KEEL_AVS_MATCH, KEEL_CVV_MATCH},
    {"tok_amex", KEEL_OK, NULL, NULL, KEEL_AVS_MATCH, KEEL_CVV_MATCH},
    {"tok_avsFail", KEEL_OK, NULL, NULL, KEEL_AVS_NO_MATCH, KEEL_CVV_MATCH},
    {"tok_cvcFail", KEEL_OK, NULL, NULL, KEEL_AVS_MATCH, KEEL_CVV_NO_MATCH},
    {"tok_chargeDeclined", KEEL_EPAY_DECLINED, "generic_decline", "Your card was declined.", 0,
     0},
    {"tok_insufficientFunds", KEEL_EPAY_INSUFFICIENT_FUNDS, "insufficient_funds",
     "Your card has insufficient funds.", 0, 0},
    {"tok_threeDSecureRequired", KEEL_EPAY_AUTH_REQUIRED, "authentication_required",
     "This payment requires 3-D Secure authentication.", 0, 0},
};

static const sb_token *builtin_token(const char *name)
{
    for (size_t i = 0; i < KEEL_ARRAY_LEN(SB_TOKENS); i++)
        if (strcmp(SB_TOKENS[i].name, name) == 0)
            return &SB_TOKENS[i];
    return NULL;
}

/* ---------------------------------------------------------------- state -- */

typedef struct sb_charge {
    char id[KEEL_GATEWAY_ID_MAX];
    char ref[KEEL_GATEWAY_ID_MAX];
    keel_charge_status status;
    int64_t amount;
    int64_t captured;
    int64_t refunded;
    const keel_currency *currency;
    char avs;
    char cvv;
} sb_charge;

typedef struct sb_idem {
    struct sb_idem *next;
    keel_gateway_op op;
    uint64_t hash;
    uint64_t fingerprint; /* of the request parameters */
    char *key;
    keel_err err;
    keel_pay_failure fail;
    keel_charge_result charge; /* authorize / capture / void */
    keel_refund_result refund; /* refund */
} sb_idem;

typedef struct sb_alias {
    char token[KEEL_GATEWAY_ID_MAX];
    const sb_token *like;
} sb_alias;

typedef struct sb_fault {
    keel_sandbox_fault f;
    int active;
    unsigned remaining;
} sb_fault;

struct keel_sandbox {
    keel_gateway gw; /* first member: the interface */
    pthread_mutex_t mu;
    keel_sandbox_config cfg;

    sb_charge *charges;
    size_t ncharges, charges_cap;
    size_t nrefunds;

    sb_idem **buckets;
    size_t nbuckets, nidem;

    sb_alias *aliases;
    size_t naliases;

    sb_fault faults[KEEL_GATEWAY_OP_COUNT];

    keel_sandbox_call *calls;
    size_t ncalls, calls_cap;
    size_t counts[KEEL_GATEWAY_OP_COUNT];
    size_t replays[KEEL_GATEWAY_OP_COUNT];
};

/* Keys and parameter fingerprints are hashed with core's FNV-1a (not security relevant: the
 * sandbox is a test double).  Strings are hashed with their terminator so that ("ab","c") differs from ("a","bc"). */
static uint64_t fnv_str(uint64_t h, const char *s)
{
    if (s == NULL)
        return keel__fnv1a(h, "\xff", 1);
    return keel__fnv1a(h, s, strlen(s) + 1);
}

static uint64_t fnv_i64(uint64_t h, int64_t v)
{
    return keel__fnv1a(h, &v, sizeof(v));
}

/* --------------------------------------------------------- idempotency -- */

static uint64_t idem_hash(keel_gateway_op op, const char *key)
{
    uint64_t h = fnv_i64(KEEL__FNV1A_INIT, (int64_t)op);
    return fnv_str(h, key);
}

static sb_idem *idem_find(const keel_sandbox *sb, keel_gateway_op op, const char *key)
{
    if (sb->nbuckets == 0)
        return NULL;
    uint64_t h = idem_hash(op, key);
    for (sb_idem *e = sb->buckets[h & (sb->nbuckets - 1)]; e != NULL; e = e->next)
        if (e->hash == h && e->op == op && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static keel_err idem_grow(keel_sandbox *sb)
{
    size_t n = sb->nbuckets ? sb->nbuckets * 2 : 64;
    sb_idem **nb = keel_calloc(n, sizeof(*nb));
    if (nb == NULL)
        return KEEL_ENOMEM;
    for (size_t i = 0; i < sb->nbuckets; i++) {
        sb_idem *e = sb->buckets[i];
        while (e != NULL) {
            sb_idem *next = e->next;
            e->next = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    keel_free(sb->buckets);
    sb->buckets = nb;
    sb->nbuckets = n;
    return KEEL_OK;
}

/* Reserve a record (before the operation runs, so OOM cannot lose an executed answer). */
static keel_err idem_new(keel_sandbox *sb, keel_gateway_op op, const char *key, uint64_t fp,
                         sb_idem **out)
{
    if (sb->nidem >= sb->cfg.max_charges * 4)
        return KEEL_EFULL;
    if (sb->nidem >= sb->nbuckets) {
        keel_err e = idem_grow(sb);
        if (e != KEEL_OK)
            return e;
    }
    sb_idem *r = keel__new(sb_idem);
    if (r == NULL)
        return KEEL_ENOMEM;
    r->key = keel_strdup(key);
    if (r->key == NULL) {
        keel_free(r);
        return KEEL_ENOMEM;
    }
    r->op = op;
    r->hash = idem_hash(op, key);
    r->fingerprint = fp;
    *out = r;
    return KEEL_OK;
}

static void idem_insert(keel_sandbox *sb, sb_idem *r)
{
    size_t b = r->hash & (sb->nbuckets - 1);
    r->next = sb->buckets[b];
    sb->buckets[b] = r;
    sb->nidem++;
}

static void idem_discard(sb_idem *r)
{
    if (r != NULL) {
        keel_free(r->key);
        keel_free(r);
    }
}

/* ---------------------------------------------------------------- calls -- */

static void copy_str(char *dst, size_t cap, const char *src)
{
    if (src == NULL) {
        dst[0] = '\0';
        return;
    }
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Record one call.  Failing to grow the record array only loses the record (counts stay
 * exact), it never fails the payment call. */
static void record(keel_sandbox *sb, const keel_sandbox_call *c)
{
    sb->counts[c->op]++;
    if (c->replay)
        sb->replays[c->op]++;
    if (sb->ncalls >= sb->cfg.max_recorded_calls)
        return;
    if (sb->ncalls == sb->calls_cap) {
        size_t n = sb->calls_cap ? sb->calls_cap * 2 : 16;
        if (n > sb->cfg.max_recorded_calls)
            n = sb->cfg.max_recorded_calls;
        keel_sandbox_call *nc = keel_realloc(sb->calls, n * sizeof(*nc));
        if (nc == NULL)
            return;
        sb->calls = nc;
        sb->calls_cap = n;
    }
    sb->calls[sb->ncalls++] = *c;
}

/* --------------------------------------------------------------- faults -- */

/* Take the fault for op (if any), consuming one of its `times`. */
static keel_sandbox_fault take_fault(keel_sandbox *sb, keel_gateway_op op)
{
    keel_sandbox_fault none;
    memset(&none, 0, sizeof(none));
    sb_fault *f = &sb->faults[op];
    if (!f->active)
        return none;
    keel_sandbox_fault got = f->f;
    if (f->f.times > 0 && --f->remaining == 0)
        f->active = 0;
    return got;
}

/* Faults that stop the call before it reaches the (simulated) gateway logic. */
static keel_err early_fault(const keel_sandbox_fault *f, keel_pay_failure *fail)
{
    switch (f->kind) {
    case KEEL_SANDBOX_NETWORK_ERROR:
        return keel_pay_fail(fail, KEEL_EPAY_NETWORK, NULL,
                             "sandbox: connection reset (injected)");
    case KEEL_SANDBOX_RATE_LIMITED: {
        keel_err e = keel_pay_fail(fail, KEEL_EPAY_RATE_LIMITED, "rate_limit",
                                   "sandbox: too many requests (injected)");
        if (fail != NULL)
            fail->retry_after_ms = f->retry_after_ms;
        return e;
    }
    case KEEL_SANDBOX_TIMEOUT:
        if (!f->performed)
            return keel_pay_fail(fail, KEEL_EPAY_GATEWAY_TIMEOUT, NULL,
                                 "sandbox: gateway timed out (injected)");
        return KEEL_OK;
    default:
        return KEEL_OK;
    }
}

/* Faults that decide the answer of an executed operation. */
static keel_err decline_fault(const keel_sandbox_fault *f, keel_pay_failure *fail)
{
    if (f->kind == KEEL_SANDBOX_DECLINE)
        return keel_pay_fail(fail, KEEL_EPAY_DECLINED, "generic_decline",
                             "Your card was declined. (injected)");
    if (f->kind == KEEL_SANDBOX_INSUFFICIENT_FUNDS)
        return keel_pay_fail(fail, KEEL_EPAY_INSUFFICIENT_FUNDS, "insufficient_funds",
                             "Your card has insufficient funds. (injected)");
    return KEEL_OK;
}

/* ------------------------------------------------------------- charges -- */

static void charge_result(const sb_charge *c, keel_charge_result *out)
{
    memset(out, 0, sizeof(*out));
    copy_str(out->charge_id, sizeof(out->charge_id), c->id);
    copy_str(out->gateway_reference, sizeof(out->gateway_reference), c->ref);
    out->status = c->status;
    out->amount = c->amount;
    out->amount_captured = c->captured;
    out->amount_refunded = c->refunded;
    out->currency = c->currency;
    out->avs_result = c->avs;
    out->cvv_result = c->cvv;
}

static sb_charge *find_charge(const keel_sandbox *sb, const char *id)
{
    static const char prefix[] = "ch_sandbox_";
    if (strncmp(id, prefix, sizeof(prefix) - 1) != 0)
        return NULL;
    const char *p = id + sizeof(prefix) - 1;
    size_t n = 0;
    if (*p == '\0')
        return NULL;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || n > sb->ncharges)
            return NULL;
        n = n * 10 + (size_t)(*p - '0');
    }
    if (n == 0 || n > sb->ncharges)
        return NULL;
    sb_charge *c = &sb->charges[n - 1];
    return strcmp(c->id, id) == 0 ? c : NULL;
}

static keel_err no_such_charge(keel_pay_failure *fail)
{
    return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "resource_missing", "no such charge");
}

static const sb_token *resolve_token(const keel_sandbox *sb, const char *tok)
{
    const sb_token *t = builtin_token(tok);
    if (t != NULL)
        return t;
    for (size_t i = 0; i < sb->naliases; i++)
        if (strcmp(sb->aliases[i].token, tok) == 0)
            return sb->aliases[i].like;
    return NULL;
}

/* Authorize under the lock (no fault decided the answer). */
static keel_err do_authorize(keel_sandbox *sb, const keel_charge_request *req,
                             keel_charge_result *out, keel_pay_failure *fail)
{
    const sb_token *t = resolve_token(sb, req->payment_token);
    if (t == NULL)
        return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "resource_missing", "no such token");
    if (t->err != KEEL_OK)
        return keel_pay_fail(fail, t->err, t->decline_code, "%s", t->message);
    if (sb->ncharges >= sb->cfg.max_charges)
        return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "sandbox_full",
                             "sandbox: charge limit reached");
    if (sb->ncharges == sb->charges_cap) {
        size_t n = sb->charges_cap ? sb->charges_cap * 2 : 16;
        if (n > sb->cfg.max_charges)
            n = sb->cfg.max_charges;
        sb_charge *nc = keel_realloc(sb->charges, n * sizeof(*nc));
        if (nc == NULL)
            return KEEL_ENOMEM;
        sb->charges = nc;
        sb->charges_cap = n;
    }
    sb_charge *c = &sb->charges[sb->ncharges++];
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "ch_sandbox_%06zu", sb->ncharges);
    snprintf(c->ref, sizeof(c->ref), "sbx_ref_%06zu", sb->ncharges);
    c->status = KEEL_CHARGE_AUTHORIZED;
    c->amount = req->amount;
    c->currency = req->currency;
    c->avs = t->avs;
    c->cvv = t->cvv;
    charge_result(c, out);
    return KEEL_OK;
}

static keel_err do_capture(keel_sandbox *sb, const keel_capture_request *req,
                           keel_charge_result *out, keel_pay_failure *fail)
{
    sb_charge *c = find_charge(sb, req->charge_id);
    if (c == NULL)
        return no_such_charge(fail);
    if (c->status != KEEL_CHARGE_AUTHORIZED) {
        if (c->status == KEEL_CHARGE_VOIDED)
            return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "charge_not_capturable",
                                 "charge %s is voided and cannot be captured", c->id);
        return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "charge_already_captured",
                             "charge %s has already been captured", c->id);
    }
    int64_t amount = req->amount == 0 ? c->amount : req->amount;
    if (amount > c->amount)
        return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "amount_too_large",
                             "capture amount %lld exceeds the authorized %lld", (long long)amount,
                             (long long)c->amount);
    c->captured = amount;
    c->status = KEEL_CHARGE_CAPTURED;
    charge_result(c, out);
    return KEEL_OK;
}

static keel_err do_void(keel_sandbox *sb, const keel_void_request *req, keel_charge_result *out,
                        keel_pay_failure *fail)
{
    sb_charge *c = find_charge(sb, req->charge_id);
    if (c == NULL)
        return no_such_charge(fail);
    if (c->status == KEEL_CHARGE_VOIDED)
        return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "charge_already_voided",
                             "charge %s is already voided", c->id);
    if (c->status != KEEL_CHARGE_AUTHORIZED)
        return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "charge_already_captured",
                             "charge %s has been captured; refund it instead", c->id);
    c->status = KEEL_CHARGE_VOIDED;
    charge_result(c, out);
    return KEEL_OK;
}

static keel_err do_refund(keel_sandbox *sb, const keel_refund_request *req,
                          keel_refund_result *out, keel_pay_failure *fail)
{
    sb_charge *c = find_charge(sb, req->charge_id);
    if (c == NULL)
        return no_such_charge(fail);
    if (c->status != KEEL_CHARGE_CAPTURED && c->status != KEEL_CHARGE_PARTIALLY_REFUNDED) {
        if (c->status == KEEL_CHARGE_REFUNDED)
            return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "charge_already_refunded",
                                 "charge %s has already been refunded", c->id);
        return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "charge_not_refundable",
                             "charge %s is %s and cannot be refunded", c->id,
                             keel_charge_status_name(c->status));
    }
    int64_t left = c->captured - c->refunded;
    int64_t amount = req->amount == 0 ? left : req->amount;
    if (amount > left)
        return keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "amount_too_large",
                             "refund amount %lld exceeds the refundable %lld", (long long)amount,
                             (long long)left);
    c->refunded += amount;
    c->status = c->refunded == c->captured ? KEEL_CHARGE_REFUNDED
                                           : KEEL_CHARGE_PARTIALLY_REFUNDED;
    sb->nrefunds++;
    memset(out, 0, sizeof(*out));
    snprintf(out->refund_id, sizeof(out->refund_id), "re_sandbox_%06zu", sb->nrefunds);
    copy_str(out->charge_id, sizeof(out->charge_id), c->id);
    out->amount = amount;
    out->currency = c->currency;
    out->charge_status = c->status;
    out->charge_amount_refunded = c->refunded;
    return KEEL_OK;
}

/* ------------------------------------------------------------- dispatch -- */

/* One operation, whatever its kind: the request pointers for the kind in use are set. */
typedef struct sb_op {
    keel_gateway_op op;
    const char *key; /* idempotency key or NULL */
    uint64_t fingerprint;
    const keel_charge_request *auth;
    const keel_capture_request *cap;
    const keel_void_request *vd;
    const keel_refund_request *ref;
    keel_charge_result *charge_out;
    keel_refund_result *refund_out;
} sb_op;

static keel_err run_op(keel_sandbox *sb, const sb_op *o, keel_pay_failure *fail)
{
    switch (o->op) {
    case KEEL_GATEWAY_AUTHORIZE:
        return do_authorize(sb, o->auth, o->charge_out, fail);
    case KEEL_GATEWAY_CAPTURE:
        return do_capture(sb, o->cap, o->charge_out, fail);
    case KEEL_GATEWAY_VOID:
        return do_void(sb, o->vd, o->charge_out, fail);
    case KEEL_GATEWAY_REFUND:
        return do_refund(sb, o->ref, o->refund_out, fail);
    case KEEL_GATEWAY_OP_COUNT:
        break;
    }
    return KEEL_EINTERNAL;
}

/* The common path: faults, idempotency, the operation, the call record. */
static keel_err sandbox_call(keel_sandbox *sb, const sb_op *o, keel_sandbox_call *rec,
                             keel_pay_failure *fail)
{
    keel_pay_failure local;
    if (fail == NULL)
        fail = &local;
    memset(fail, 0, sizeof(*fail));
    pthread_mutex_lock(&sb->mu);
    keel_sandbox_fault f = take_fault(sb, o->op);
    if (f.kind == KEEL_SANDBOX_SLOW) {
        /* Sleep without the lock so other calls proceed (a slow gateway is not a stuck one). */
        pthread_mutex_unlock(&sb->mu);
        keel_clock_sleep_ms(sb->cfg.clock, f.delay_ms);
        pthread_mutex_lock(&sb->mu);
    }
    keel_err e = early_fault(&f, fail);
    sb_idem *saved = NULL, *fresh = NULL;
    if (e != KEEL_OK) {
        rec->fault = 1;
        goto done;
    }
    if (o->key != NULL && o->key[0] != '\0') {
        saved = idem_find(sb, o->op, o->key);
        if (saved != NULL && saved->fingerprint != o->fingerprint) {
            e = keel_pay_fail(fail, KEEL_EPAY_IDEMPOTENCY_CONFLICT, "idempotency_error",
                              "idempotency key reused with different parameters");
            goto done;
        }
        if (saved != NULL) {
            e = saved->err;
            *fail = saved->fail;
            if (o->charge_out != NULL) {
                *o->charge_out = saved->charge;
                if (e == KEEL_OK)
                    o->charge_out->replayed = 1;
            }
            if (o->refund_out != NULL) {
                *o->refund_out = saved->refund;
                if (e == KEEL_OK)
                    o->refund_out->replayed = 1;
            }
            rec->replay = 1;
            if (o->op == KEEL_GATEWAY_AUTHORIZE)
                copy_str(rec->charge_id, sizeof(rec->charge_id), saved->charge.charge_id);
            goto done;
        }
        e = idem_new(sb, o->op, o->key, o->fingerprint, &fresh);
        if (e == KEEL_EFULL)
            e = keel_pay_fail(fail, KEEL_EPAY_GATEWAY, "sandbox_full",
                              "sandbox: idempotency record limit reached");
        if (e != KEEL_OK)
            goto done;
    }
    e = decline_fault(&f, fail);
    if (e != KEEL_OK)
        rec->fault = 1;
    else
        e = run_op(sb, o, fail);
    if (e == KEEL_ENOMEM) {
        idem_discard(fresh);
        fresh = NULL;
        goto done;
    }
    if (o->op == KEEL_GATEWAY_AUTHORIZE && e == KEEL_OK)
        copy_str(rec->charge_id, sizeof(rec->charge_id), o->charge_out->charge_id);
    if (fresh != NULL) {
        fresh->err = e;
        fresh->fail = *fail;
        if (o->charge_out != NULL)
            fresh->charge = *o->charge_out;
        if (o->refund_out != NULL)
            fresh->refund = *o->refund_out;
        idem_insert(sb, fresh);
        fresh = NULL;
    }
    if (f.kind == KEEL_SANDBOX_TIMEOUT && f.performed) {
        /* The operation happened, but the caller never hears about it. */
        rec->fault = 1;
        if (o->charge_out != NULL)
            memset(o->charge_out, 0, sizeof(*o->charge_out));
        if (o->refund_out != NULL)
            memset(o->refund_out, 0, sizeof(*o->refund_out));
        e = keel_pay_fail(fail, KEEL_EPAY_GATEWAY_TIMEOUT, NULL,
                          "sandbox: gateway timed out after performing the %s (injected)",
                          keel_gateway_op_name(o->op));
    }
done:
    rec->outcome = e;
    record(sb, rec);
    pthread_mutex_unlock(&sb->mu);
    return e;
}

static void rec_init(keel_sandbox_call *rec, keel_gateway_op op, const char *key,
                     int64_t amount)
{
    memset(rec, 0, sizeof(*rec));
    rec->op = op;
    copy_str(rec->idempotency_key, sizeof(rec->idempotency_key), key);
    rec->amount = amount;
}

static keel_err sb_authorize(keel_gateway *gw, const keel_charge_request *req,
                             keel_charge_result *out, keel_pay_failure *fail)
{
    keel_sandbox *sb = (keel_sandbox *)gw;
    sb_op o;
    memset(&o, 0, sizeof(o));
    o.op = KEEL_GATEWAY_AUTHORIZE;
    o.key = req->idempotency_key;
    o.auth = req;
    o.charge_out = out;
    uint64_t h = fnv_i64(KEEL__FNV1A_INIT, req->amount);
    h = fnv_str(h, req->currency->code);
    h = fnv_str(h, req->payment_token);
    h = fnv_str(h, req->customer_id);
    h = fnv_str(h, req->customer_email);
    h = fnv_str(h, req->description);
    for (size_t i = 0; i < req->metadata_len; i++) {
        h = fnv_str(h, req->metadata[i].key);
        h = fnv_str(h, req->metadata[i].value);
    }
    o.fingerprint = h;
    keel_sandbox_call rec;
    rec_init(&rec, o.op, o.key, req->amount);
    rec.currency = req->currency;
    copy_str(rec.token, sizeof(rec.token), req->payment_token);
    return sandbox_call(sb, &o, &rec, fail);
}

static keel_err sb_capture(keel_gateway *gw, const keel_capture_request *req,
                           keel_charge_result *out, keel_pay_failure *fail)
{
    keel_sandbox *sb = (keel_sandbox *)gw;
    sb_op o;
    memset(&o, 0, sizeof(o));
    o.op = KEEL_GATEWAY_CAPTURE;
    o.key = req->idempotency_key;
    o.cap = req;
    o.charge_out = out;
    o.fingerprint = fnv_i64(fnv_str(KEEL__FNV1A_INIT, req->charge_id), req->amount);
    keel_sandbox_call rec;
    rec_init(&rec, o.op, o.key, req->amount);
    copy_str(rec.charge_id, sizeof(rec.charge_id), req->charge_id);
    return sandbox_call(sb, &o, &rec, fail);
}

static keel_err sb_void(keel_gateway *gw, const keel_void_request *req, keel_charge_result *out,
                        keel_pay_failure *fail)
{
    keel_sandbox *sb = (keel_sandbox *)gw;
    sb_op o;
    memset(&o, 0, sizeof(o));
    o.op = KEEL_GATEWAY_VOID;
    o.key = req->idempotency_key;
    o.vd = req;
    o.charge_out = out;
    o.fingerprint = fnv_str(KEEL__FNV1A_INIT, req->charge_id);
    keel_sandbox_call rec;
    rec_init(&rec, o.op, o.key, 0);
    copy_str(rec.charge_id, sizeof(rec.charge_id), req->charge_id);
    return sandbox_call(sb, &o, &rec, fail);
}

static keel_err sb_refund(keel_gateway *gw, const keel_refund_request *req,
                          keel_refund_result *out, keel_pay_failure *fail)
{
    keel_sandbox *sb = (keel_sandbox *)gw;
    sb_op o;
    memset(&o, 0, sizeof(o));
    o.op = KEEL_GATEWAY_REFUND;
    o.key = req->idempotency_key;
    o.ref = req;
    o.refund_out = out;
    o.fingerprint = fnv_str(fnv_i64(fnv_str(KEEL__FNV1A_INIT, req->charge_id), req->amount), req->reason);
    keel_sandbox_call rec;
    rec_init(&rec, o.op, o.key, req->amount);
    copy_str(rec.charge_id, sizeof(rec.charge_id), req->charge_id);
    return sandbox_call(sb, &o, &rec, fail);
}

static void sb_destroy(keel_gateway *gw)
{
    keel_sandbox_destroy((keel_sandbox *)gw);
}

static const keel_gateway_ops SANDBOX_OPS = {
    "sandbox", sb_authorize, sb_capture, sb_void, sb_refund, sb_destroy,
};

/* ------------------------------------------------------------ lifecycle -- */

void keel_sandbox_config_default(keel_sandbox_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->clock = NULL;
    cfg->max_charges = 100000;
    cfg->max_recorded_calls = 10000;
}

keel_err keel_sandbox_create(keel_sandbox **out, const keel_sandbox_config *cfg, keel_diag *diag)
{
    keel_sandbox_config c;
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "out: NULL");
    *out = NULL;
    keel_sandbox_config_default(&c);
    if (cfg != NULL) {
        if (cfg->size != sizeof(*cfg))
            return keel_diag_set(diag, KEEL_EINVAL, 0,
                                 "size: not sizeof(keel_sandbox_config); use "
                                 "keel_sandbox_config_default()");
        c = *cfg;
    }
    if (c.max_charges == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "max_charges: must be > 0");
    if (c.max_recorded_calls == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "max_recorded_calls: must be > 0");
    keel_sandbox *sb = keel__new(keel_sandbox);
    if (sb == NULL)
        return KEEL_ENOMEM;
    if (pthread_mutex_init(&sb->mu, NULL) != 0) {
        keel_free(sb);
        return KEEL_ENOMEM;
    }
    sb->gw.ops = &SANDBOX_OPS;
    sb->cfg = c;
    *out = sb;
    return KEEL_OK;
}

keel_gateway *keel_sandbox_gateway(keel_sandbox *sb)
{
    return sb != NULL ? &sb->gw : NULL;
}

void keel_sandbox_destroy(keel_sandbox *sb)
{
    if (sb == NULL)
        return;
    for (size_t i = 0; i < sb->nbuckets; i++) {
        sb_idem *e = sb->buckets[i];
        while (e != NULL) {
            sb_idem *next = e->next;
            idem_discard(e);
            e = next;
        }
    }
    keel_free(sb->buckets);
    keel_free(sb->charges);
    keel_free(sb->aliases);
    keel_free(sb->calls);
    pthread_mutex_destroy(&sb->mu);
    keel_free(sb);
}

keel_err keel_sandbox_inject(keel_sandbox *sb, keel_gateway_op op, const keel_sandbox_fault *fault)
{
    if (sb == NULL || fault == NULL || (unsigned)op >= KEEL_GATEWAY_OP_COUNT)
        return KEEL_EINVAL;
    if ((unsigned)fault->kind > (unsigned)KEEL_SANDBOX_RATE_LIMITED)
        return KEEL_EINVAL;
    pthread_mutex_lock(&sb->mu);
    sb_fault *f = &sb->faults[op];
    f->f = *fault;
    f->active = fault->kind != KEEL_SANDBOX_SUCCEED;
    f->remaining = fault->times;
    pthread_mutex_unlock(&sb->mu);
    return KEEL_OK;
}

void keel_sandbox_clear_faults(keel_sandbox *sb)
{
    if (sb == NULL)
        return;
    pthread_mutex_lock(&sb->mu);
    memset(sb->faults, 0, sizeof(sb->faults));
    pthread_mutex_unlock(&sb->mu);
}

keel_err keel_sandbox_add_token(keel_sandbox *sb, const char *token, const char *like)
{
    if (sb == NULL || token == NULL || like == NULL || token[0] == '\0' ||
        strnlen(token, KEEL_GATEWAY_ID_MAX) >= KEEL_GATEWAY_ID_MAX)
        return KEEL_EINVAL;
    const sb_token *t = builtin_token(like);
    if (t == NULL)
        return KEEL_EINVAL;
    keel_err e = KEEL_OK;
    pthread_mutex_lock(&sb->mu);
    for (size_t i = 0; i < sb->naliases; i++) {
        if (strcmp(sb->aliases[i].token, token) == 0) {
            sb->aliases[i].like = t;
            goto out;
        }
    }
    if (sb->naliases >= SB_MAX_ALIASES) {
        e = KEEL_EFULL;
        goto out;
    }
    sb_alias *na = keel_realloc(sb->aliases, (sb->naliases + 1) * sizeof(*na));
    if (na == NULL) {
        e = KEEL_ENOMEM;
        goto out;
    }
    sb->aliases = na;
    copy_str(na[sb->naliases].token, sizeof(na[sb->naliases].token), token);
    na[sb->naliases].like = t;
    sb->naliases++;
out:
    pthread_mutex_unlock(&sb->mu);
    return e;
}

/* ---------------------------------------------------------------- queries -- */

/* The query functions take a const sandbox but must lock its mutex. */
static pthread_mutex_t *mutex_of(const keel_sandbox *sb)
{
    return (pthread_mutex_t *)(uintptr_t)&sb->mu;
}

size_t keel_sandbox_count(const keel_sandbox *sb, keel_gateway_op op)
{
    if (sb == NULL || (unsigned)op > KEEL_GATEWAY_OP_COUNT)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(mutex_of(sb));
    if (op == KEEL_GATEWAY_OP_COUNT) {
        for (size_t i = 0; i < KEEL_GATEWAY_OP_COUNT; i++)
            n += sb->counts[i];
    } else {
        n = sb->counts[op];
    }
    pthread_mutex_unlock(mutex_of(sb));
    return n;
}

size_t keel_sandbox_replays(const keel_sandbox *sb, keel_gateway_op op)
{
    if (sb == NULL || (unsigned)op > KEEL_GATEWAY_OP_COUNT)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(mutex_of(sb));
    if (op == KEEL_GATEWAY_OP_COUNT) {
        for (size_t i = 0; i < KEEL_GATEWAY_OP_COUNT; i++)
            n += sb->replays[i];
    } else {
        n = sb->replays[op];
    }
    pthread_mutex_unlock(mutex_of(sb));
    return n;
}

size_t keel_sandbox_charges(const keel_sandbox *sb)
{
    if (sb == NULL)
        return 0;
    pthread_mutex_lock(mutex_of(sb));
    size_t n = sb->ncharges;
    pthread_mutex_unlock(mutex_of(sb));
    return n;
}

keel_err keel_sandbox_call_at(const keel_sandbox *sb, size_t i, keel_sandbox_call *out)
{
    if (sb == NULL || out == NULL)
        return KEEL_EINVAL;
    keel_err e = KEEL_ENOTFOUND;
    pthread_mutex_lock(mutex_of(sb));
    if (i < sb->ncalls) {
        *out = sb->calls[i];
        e = KEEL_OK;
    }
    pthread_mutex_unlock(mutex_of(sb));
    return e;
}

keel_err keel_sandbox_charge(const keel_sandbox *sb, const char *charge_id,
                             keel_charge_result *out)
{
    if (sb == NULL || charge_id == NULL || out == NULL)
        return KEEL_EINVAL;
    keel_err e = KEEL_ENOTFOUND;
    pthread_mutex_lock(mutex_of(sb));
    const sb_charge *c = find_charge(sb, charge_id);
    if (c != NULL) {
        charge_result(c, out);
        e = KEEL_OK;
    }
    pthread_mutex_unlock(mutex_of(sb));
    return e;
}
