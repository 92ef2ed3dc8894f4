/*
 * keel/fraud.h - pre-charge fraud screening: a composable rule engine with blocklist,
 * AVS/CVV, velocity, country-mismatch and high-amount rules, plus the velocity trackers the
 * velocity rule counts with (seed 004 fraud.py: FraudEngine, FraudContext, Decision,
 * VelocityTracker; reference.md section 10: Hyperswitch blocklist / FRM / #9930 rules).
 *
 * Engine.  Rules run in the order they were added.  Each returns a verdict - PASS (with an
 * optional score), REVIEW, CHALLENGE or BLOCK - with a score and a reason, all kept on the
 * result for audit.  The first BLOCK stops the evaluation (later rules do not run, so a
 * blocked attempt does not count against velocity limits).  The decision is the strongest
 * verdict, with precedence BLOCK > CHALLENGE > REVIEW > APPROVE; an APPROVE becomes REVIEW
 * when the total score is positive and reaches review_threshold.  PASS with a score adds
 * risk without forcing review; a REVIEW verdict always forces review.  keel_fraud_result_err()
 * turns a result into the payment error that drives control flow: BLOCK ->
 * KEEL_EPAY_FRAUD_BLOCKED, CHALLENGE -> KEEL_EPAY_AUTH_REQUIRED (3-D Secure step-up).
 *
 *     keel_fraud_engine *fe;
 *     keel_fraud_config fc;  keel_fraud_config_default(&fc);  fc.review_threshold = 50;
 *     keel_fraud_engine_create(&fe, &fc, &diag);
 *     keel_fraud_add_blocklist(fe, "blocklist", blocklist, &diag);
 *     keel_fraud_add_avs_cvv(fe, "avs_cvv", NULL, &diag);
 *     keel_fraud_velocity_config vc;  keel_fraud_velocity_config_default(&vc);
 *     vc.tracker = tracker;  vc.key = KEEL_FRAUD_KEY_USER_ID;  vc.max_count = 5;
 *     vc.window_ms = 3600000;
 *     keel_fraud_add_velocity(fe, "user_hourly", &vc, &diag);
 *     ...
 *     keel_fraud_result r;
 *     keel_fraud_evaluate(fe, &ctx, &r);
 *     keel_err e = keel_fraud_result_err(&r, &failure);
 *
 * Rule errors.  A rule that fails (for example the Redis tracker cannot reach Redis) gets the
 * engine's on_rule_error verdict (REVIEW by default: neither open nor closed), its error in
 * the audit entry, and counts in result.errors.
 *
 * Thread-safety.  Build the engine (create, add rules) on one thread; afterwards
 * keel_fraud_evaluate() may run on any number of threads at once (user rules must be
 * thread-safe).  Blocklists and velocity trackers are thread-safe and may change while the
 * engine evaluates.
 */
#ifndef KEEL_FRAUD_H
#define KEEL_FRAUD_H

#include <keel/common.h>
#include <keel/gateway.h> /* KEEL_AVS_*, KEEL_CVV_* */
#include <keel/payment.h>
#include <keel/policy.h>
#include <keel/redis.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------ velocity tracker -- */

/*
 * A velocity tracker counts events per key in a sliding window: hit() records one event at
 * the current time and returns how many events the key had in (now - window, now], this one
 * included.  Two implementations with the same semantics:
 *
 *   memory  one process; a mutex; per-key timestamp logs; bounded (max_keys, with eviction of
 *           the least recently used key; max_events per key, oldest dropped - counts saturate
 *           there); time from a keel_clock.
 *   Redis   shared by every instance: one sorted set per key (<prefix><key>, member = unique
 *           event id, score = time in ms), updated atomically by one Lua script (ZREMRANGEBYSCORE,
 *           ZADD, ZCARD, PEXPIRE) through EVALSHA.  Time is the Redis server's clock (TIME),
 *           or cfg->clock when set (tests; then every instance must share that clock).
 */

typedef struct keel_velocity keel_velocity;

/** Operations of a tracker implementation. */
typedef struct keel_velocity_ops {
    const char *name;
    keel_err (*hit)(keel_velocity *v, keel_str key, uint64_t window_ms, uint64_t *count);
    keel_err (*count)(keel_velocity *v, keel_str key, uint64_t window_ms, uint64_t *count);
    void (*destroy)(keel_velocity *v);
} keel_velocity_ops;

/** The interface.  Embed as the first member of an implementation. */
struct keel_velocity {
    const keel_velocity_ops *ops;
};

/** Longest key accepted by the trackers (bytes). */
#define KEEL_VELOCITY_KEY_MAX 256

/** Record one event for key now; *count receives the events in the window, this one included.
 *  @return KEEL_OK; KEEL_EINVAL (NULL argument, empty or too long key, window 0);
 *  KEEL_ENOMEM; Redis: KEEL_EIO, KEEL_ETIMEOUT.  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_velocity_hit(keel_velocity *v, keel_str key,
                                                   uint64_t window_ms, uint64_t *count);
/** Events for key in the window, without recording one.  Errors as keel_velocity_hit(). */
KEEL_API KEEL_NODISCARD keel_err keel_velocity_count(keel_velocity *v, keel_str key,
                                                     uint64_t window_ms, uint64_t *count);
/** Destroy through the ops.  NULL is a no-op.  Ownership: consumes v. */
KEEL_API void keel_velocity_destroy(keel_velocity *v);

typedef struct keel_velocity_memory_config {
    size_t size;             /* sizeof(keel_velocity_memory_config) */
    const keel_clock *clock; /* NULL = system monotonic clock (borrowed) */
    size_t max_keys;         /* keys tracked (100000); then the least recently used goes */
    size_t max_events;       /* events kept per key (1000); counts saturate there */
} keel_velocity_memory_config;

KEEL_API void keel_velocity_memory_config_default(keel_velocity_memory_config *cfg);
/** In-memory tracker.  @return KEEL_OK, KEEL_EINVAL (zero limits: field named in diag),
 *  KEEL_ENOMEM.  Ownership: caller destroys with keel_velocity_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_velocity_memory_create(
    keel_velocity **out, const keel_velocity_memory_config *cfg, keel_diag *diag);
/** Keys the memory tracker holds (0 for other trackers). */
KEEL_API size_t keel_velocity_memory_keys(const keel_velocity *v);

typedef struct keel_velocity_redis_config {
    size_t size;             /* sizeof(keel_velocity_redis_config) */
    keel_redis *redis;       /* required, borrowed: must outlive the tracker */
    const char *prefix;      /* key prefix ("keel:velocity:"), copied, <= 128 bytes */
    const keel_clock *clock; /* NULL = the Redis server's clock (TIME); borrowed */
    size_t max_events;       /* events kept per key (1000) */
} keel_velocity_redis_config;

KEEL_API void keel_velocity_redis_config_default(keel_velocity_redis_config *cfg);
/** Redis tracker (nothing is sent until the first hit).
 *  @return KEEL_OK, KEEL_EINVAL (field named in diag), KEEL_ECRYPTO, KEEL_ENOMEM.
 *  Ownership: caller destroys with keel_velocity_destroy() before closing the Redis pool. */
KEEL_API KEEL_NODISCARD keel_err keel_velocity_redis_create(keel_velocity **out,
                                                            const keel_velocity_redis_config *cfg,
                                                            keel_diag *diag);

/* ------------------------------------------------------------- context -- */

/** What is known about a payment attempt.  All strings borrowed; NULL or "" = unknown. */
typedef struct keel_fraud_context {
    const char *user_id;
    const char *email;
    const char *ip;
    int64_t amount;                /* minor units */
    const keel_currency *currency; /* NULL = unknown */
    char avs_result;               /* KEEL_AVS_* ('Y','A','Z','N','U'); 0 = unknown */
    char cvv_result;               /* KEEL_CVV_* ('M','N','U'); 0 = unknown */
    const char *card_country;      /* ISO 3166-1 alpha-2, any case */
    const char *billing_country;
    const char *ip_country;
    const char *card_fingerprint;  /* keel_card_token.fingerprint */
    void *user;                    /* for user-defined rules */
} keel_fraud_context;

/* ------------------------------------------------------------- verdicts -- */

/** A rule's verdict and the engine's decision share one scale (ordered by precedence). */
typedef enum keel_fraud_decision {
    KEEL_FRAUD_APPROVE = 0,   /* rule: pass */
    KEEL_FRAUD_REVIEW = 1,    /* flag for human review */
    KEEL_FRAUD_CHALLENGE = 2, /* step up: 3-D Secure */
    KEEL_FRAUD_BLOCK = 3      /* refuse */
} keel_fraud_decision;

/** Synonym for a rule that finds nothing. */
#define KEEL_FRAUD_PASS KEEL_FRAUD_APPROVE

/** Rule names and reasons are bounded. */
#define KEEL_FRAUD_NAME_MAX 48
#define KEEL_FRAUD_REASON_MAX 128
/** Most rules in one engine. */
#define KEEL_FRAUD_MAX_RULES 32

/** What one rule says. */
typedef struct keel_fraud_verdict {
    keel_fraud_decision verdict;
    int32_t score;                      /* risk points added to the total (may be negative) */
    char reason[KEEL_FRAUD_REASON_MAX]; /* for humans and the audit log; never card data */
} keel_fraud_verdict;

/** A rule: fill *out (zeroed by the engine: PASS, score 0) and return KEEL_OK, or an error
 *  (the engine then applies on_rule_error).  Must be thread-safe. */
typedef keel_err (*keel_fraud_rule_fn)(const keel_fraud_context *cx, void *ud,
                                       keel_fraud_verdict *out);

/** One audit entry: a rule that ran. */
typedef struct keel_fraud_audit {
    const char *rule; /* borrowed from the engine */
    keel_fraud_decision verdict;
    int32_t score;
    char reason[KEEL_FRAUD_REASON_MAX];
    keel_err err; /* KEEL_OK, or the rule's error */
} keel_fraud_audit;

/** The engine's answer. */
typedef struct keel_fraud_result {
    keel_fraud_decision decision;
    int64_t total_score;
    const char *blocked_by; /* name of the blocking rule, NULL unless BLOCK (borrowed) */
    size_t evaluated;       /* rules that ran = entries in audit */
    size_t errors;          /* rules that failed */
    keel_fraud_audit audit[KEEL_FRAUD_MAX_RULES];
} keel_fraud_result;

/** "approve", "review", "challenge", "block"; "unknown" otherwise.  Static string. */
KEEL_API const char *keel_fraud_decision_name(keel_fraud_decision d);

/** The payment error for a result: BLOCK -> KEEL_EPAY_FRAUD_BLOCKED (fail: decline_code
 *  "fraudulent", message naming the rule), CHALLENGE -> KEEL_EPAY_AUTH_REQUIRED (decline_code
 *  "authentication_required"), APPROVE and REVIEW -> KEEL_OK (fail cleared).  fail may be
 *  NULL.  KEEL_EINVAL for a NULL result.  Thread-safety: any thread. */
KEEL_API keel_err keel_fraud_result_err(const keel_fraud_result *r, keel_pay_failure *fail);

/* --------------------------------------------------------------- engine -- */

typedef struct keel_fraud_engine keel_fraud_engine;

typedef struct keel_fraud_config {
    size_t size;                       /* sizeof(keel_fraud_config) */
    int64_t review_threshold;          /* total score that turns APPROVE into REVIEW (50);
                                          must be >= 0 */
    keel_fraud_decision on_rule_error; /* verdict of a failing rule (KEEL_FRAUD_REVIEW) */
} keel_fraud_config;

KEEL_API void keel_fraud_config_default(keel_fraud_config *cfg);
/** Create an engine without rules.
 *  @return KEEL_OK, KEEL_EINVAL (field named in diag), KEEL_ENOMEM.
 *  Ownership: caller destroys with keel_fraud_engine_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_engine_create(keel_fraud_engine **out,
                                                          const keel_fraud_config *cfg,
                                                          keel_diag *diag);
/** Free the engine and the state of its built-in rules (dispose callbacks of user rules
 *  run).  NULL is a no-op.  No evaluation may be running. */
KEEL_API void keel_fraud_engine_destroy(keel_fraud_engine *fe);
/** Rules added so far. */
KEEL_API size_t keel_fraud_engine_rules(const keel_fraud_engine *fe);

/** Add a user-defined rule at the end.  name: 1..KEEL_FRAUD_NAME_MAX-1 bytes, unique in the
 *  engine (copied).  dispose (may be NULL) is called with ud at destroy - also when adding
 *  fails, so ownership of ud always passes to the engine.
 *  @return KEEL_OK; KEEL_EINVAL (NULL fn, bad or duplicate name: field named in diag);
 *  KEEL_EFULL (KEEL_FRAUD_MAX_RULES reached); KEEL_ENOMEM.
 *  Thread-safety: not while evaluating. */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_add_rule(keel_fraud_engine *fe, const char *name,
                                                     keel_fraud_rule_fn fn, void *ud,
                                                     void (*dispose)(void *ud), keel_diag *diag);

/** Evaluate every rule on cx (see the module comment).  out is filled completely.
 *  @return KEEL_OK (rule errors are reported in the result, not here) or KEEL_EINVAL (NULL
 *  argument).  Thread-safety: any thread, concurrently. */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_evaluate(const keel_fraud_engine *fe,
                                                     const keel_fraud_context *cx,
                                                     keel_fraud_result *out);

/* ------------------------------------------------------------ blocklist -- */

/** What a blocklist entry matches. */
typedef enum keel_fraud_list {
    KEEL_FRAUD_LIST_EMAIL = 0,       /* compared ASCII case-insensitively */
    KEEL_FRAUD_LIST_FINGERPRINT = 1, /* card fingerprints, exact */
    KEEL_FRAUD_LIST_IP = 2,          /* IP addresses, exact text */
    KEEL_FRAUD_LIST_COUNT = 3
} keel_fraud_list;

/** A thread-safe set of blocked e-mails, card fingerprints and IPs (rwlock); entries may be
 *  added and removed while engines use it.  Entries are at most 254 bytes. */
typedef struct keel_fraud_blocklist keel_fraud_blocklist;

/** @return KEEL_OK, KEEL_ENOMEM.  Ownership: caller destroys it after every engine using it. */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_blocklist_create(keel_fraud_blocklist **out);
KEEL_API void keel_fraud_blocklist_destroy(keel_fraud_blocklist *bl);
/** Most entries per list. */
#define KEEL_FRAUD_BLOCKLIST_MAX 1000000
/** Add an entry (no-op if present).  @return KEEL_OK, KEEL_EINVAL (empty, too long, bad
 *  list), KEEL_EFULL (KEEL_FRAUD_BLOCKLIST_MAX entries), KEEL_ENOMEM. */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_blocklist_add(keel_fraud_blocklist *bl,
                                                          keel_fraud_list list, const char *value);
/** Remove an entry.  @return KEEL_OK, KEEL_ENOTFOUND, KEEL_EINVAL. */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_blocklist_remove(keel_fraud_blocklist *bl,
                                                             keel_fraud_list list,
                                                             const char *value);
/** 1 if value is on the list, else 0. */
KEEL_API int keel_fraud_blocklist_contains(const keel_fraud_blocklist *bl, keel_fraud_list list,
                                           const char *value);

/** Blocklist rule: BLOCK when the context's e-mail, card fingerprint or IP is listed (the
 *  reason names which kind, not the value).  bl is borrowed and must outlive the engine. */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_add_blocklist(keel_fraud_engine *fe,
                                                          const char *name,
                                                          keel_fraud_blocklist *bl,
                                                          keel_diag *diag);

/* -------------------------------------------------------------- AVS/CVV -- */

typedef struct keel_fraud_avs_cvv_config {
    size_t size;
    keel_fraud_decision cvv_no_match;  /* CVV 'N' (BLOCK) */
    keel_fraud_decision avs_no_match;  /* AVS 'N' (BLOCK) */
    int32_t avs_partial_score;         /* AVS 'A' or 'Z': PASS with this score (10) */
    int32_t unavailable_score;         /* AVS or CVV 'U': PASS with this score (0) */
    int32_t mismatch_score;            /* score attached to a mismatch verdict (100) */
} keel_fraud_avs_cvv_config;

KEEL_API void keel_fraud_avs_cvv_config_default(keel_fraud_avs_cvv_config *cfg);
/** AVS/CVV rule (cfg NULL = defaults: hard BLOCK on CVV or AVS mismatch). */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_add_avs_cvv(keel_fraud_engine *fe, const char *name,
                                                        const keel_fraud_avs_cvv_config *cfg,
                                                        keel_diag *diag);

/* ------------------------------------------------------------- velocity -- */

/** Which context field a velocity rule counts by. */
typedef enum keel_fraud_key {
    KEEL_FRAUD_KEY_USER_ID = 0,
    KEEL_FRAUD_KEY_EMAIL = 1, /* lower-cased */
    KEEL_FRAUD_KEY_CARD_FINGERPRINT = 2,
    KEEL_FRAUD_KEY_IP = 3,
    KEEL_FRAUD_KEY_CUSTOM = 4 /* key_fn decides */
} keel_fraud_key;

/** A custom key: write it into buf (cap bytes) and return its length; 0 = no key (the rule
 *  passes). */
typedef size_t (*keel_fraud_key_fn)(const keel_fraud_context *cx, void *ud, char *buf,
                                    size_t cap);

typedef struct keel_fraud_velocity_config {
    size_t size;
    keel_velocity *tracker;         /* required, borrowed: must outlive the engine */
    keel_fraud_key key;             /* KEEL_FRAUD_KEY_USER_ID */
    keel_fraud_key_fn key_fn;       /* required with KEEL_FRAUD_KEY_CUSTOM */
    void *key_ud;
    uint64_t max_count;             /* attempts allowed in the window (5); must be > 0 */
    uint64_t window_ms;             /* (3600000); must be > 0 */
    keel_fraud_decision exceeded;   /* verdict beyond max_count (KEEL_FRAUD_BLOCK) */
    int32_t score;                  /* score attached to that verdict (50) */
} keel_fraud_velocity_config;

KEEL_API void keel_fraud_velocity_config_default(keel_fraud_velocity_config *cfg);
/** Velocity rule: every evaluation that reaches it records one attempt under
 *  "<rule name>:<key>" and the verdict is cfg->exceeded when the attempts in the window
 *  (this one included) exceed max_count.  A context without the key passes. */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_add_velocity(keel_fraud_engine *fe, const char *name,
                                                         const keel_fraud_velocity_config *cfg,
                                                         keel_diag *diag);

/* ------------------------------------------------------ country mismatch -- */

typedef struct keel_fraud_country_config {
    size_t size;
    keel_fraud_decision mismatch; /* verdict when two known countries differ (CHALLENGE) */
    int32_t score;                /* (20) */
    int check_card_billing;       /* compare card vs billing country (1) */
    int check_card_ip;            /* card vs IP country (1) */
    int check_billing_ip;         /* billing vs IP country (1) */
} keel_fraud_country_config;

KEEL_API void keel_fraud_country_config_default(keel_fraud_country_config *cfg);
/** Country-mismatch rule (cfg NULL = defaults).  Unknown countries are not compared. */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_add_country_mismatch(
    keel_fraud_engine *fe, const char *name, const keel_fraud_country_config *cfg,
    keel_diag *diag);

/* ---------------------------------------------------------- high amount -- */

/** A threshold in one currency, in minor units. */
typedef struct keel_fraud_amount_limit {
    const keel_currency *currency;
    int64_t threshold; /* > 0; amounts strictly above it trigger the rule */
} keel_fraud_amount_limit;

typedef struct keel_fraud_amount_config {
    size_t size;
    const keel_fraud_amount_limit *limits; /* copied; currencies must be distinct */
    size_t nlimits;                        /* >= 1 */
    keel_fraud_decision above;             /* verdict above the threshold (CHALLENGE) */
    int32_t score;                         /* (0) */
} keel_fraud_amount_config;

KEEL_API void keel_fraud_amount_config_default(keel_fraud_amount_config *cfg);
/** High-amount rule.  Currencies without a threshold pass. */
KEEL_API KEEL_NODISCARD keel_err keel_fraud_add_high_amount(keel_fraud_engine *fe,
                                                            const char *name,
                                                            const keel_fraud_amount_config *cfg,
                                                            keel_diag *diag);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_FRAUD_H */
