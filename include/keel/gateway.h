/*
 * keel/gateway.h - the payment gateway interface (seed 004 gateway.py: PaymentGateway,
 * ChargeRequest, ChargeResult, RefundRequest) and the deterministic sandbox gateway.
 *
 * Interface.  Business code talks to a keel_gateway through keel_gateway_authorize(),
 * _capture(), _void() and _refund() and never to a concrete gateway, so a Stripe or Adyen
 * adapter and the sandbox are interchangeable.  An implementation embeds struct keel_gateway
 * as its first member and points `ops` at a static operations table.  The keel_gateway_*
 * helpers validate every request (KEEL_EINVAL naming the field, before the gateway is
 * called), clear the outputs, dispatch, and make sure a failure is always described in the
 * keel_pay_failure.
 *
 * Card data.  Requests carry a payment token ("tok_..."), never a PAN: a gateway adapter is
 * outside PCI scope for card numbers.  Amounts are int64 minor units with a keel_currency;
 * there is no floating point anywhere.
 *
 * Errors.  Gateway failures are KEEL_EPAY_* codes (keel/payment.h) whose retriable flag
 * drives the retry policy: KEEL_EPAY_NETWORK, KEEL_EPAY_GATEWAY_TIMEOUT (outcome unknown: the
 * operation may have happened - retry with the same idempotency key or reconcile) and
 * KEEL_EPAY_RATE_LIMITED (retry_after_ms set) are retriable; KEEL_EPAY_DECLINED,
 * KEEL_EPAY_INSUFFICIENT_FUNDS, KEEL_EPAY_AUTH_REQUIRED (3-D Secure), KEEL_EPAY_GATEWAY (the
 * gateway rejected the request: unknown token or charge, wrong state, amount too large) and
 * KEEL_EPAY_IDEMPOTENCY_CONFLICT are not.
 *
 * Limits (bytes, NUL excluded; validated): ids, tokens, customer ids KEEL_GATEWAY_ID_MAX - 1;
 * idempotency keys KEEL_GATEWAY_IDEM_KEY_MAX - 1 (Stripe: 255); e-mail 254; description
 * KEEL_GATEWAY_DESC_MAX - 1; metadata KEEL_GATEWAY_META_MAX entries with keys of at most 40
 * and values of at most 500 bytes (Stripe's limits).
 *
 * Thread-safety: keel_gateway_* helpers are as thread-safe as the implementation; the
 * sandbox gateway is fully thread-safe (one mutex).
 */
#ifndef KEEL_GATEWAY_H
#define KEEL_GATEWAY_H

#include <keel/common.h>
#include <keel/payment.h>
#include <keel/policy.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Size of id fields (charge id, refund id, gateway reference, token, customer id) with NUL. */
#define KEEL_GATEWAY_ID_MAX 64
/** Size of an idempotency key field with NUL (keys up to 255 bytes, as Stripe). */
#define KEEL_GATEWAY_IDEM_KEY_MAX 256
/** Longest customer e-mail accepted (RFC 5321 path limit). */
#define KEEL_GATEWAY_EMAIL_MAX 254
/** Size of a description with NUL. */
#define KEEL_GATEWAY_DESC_MAX 256
/** Most metadata entries; key and value length limits. */
#define KEEL_GATEWAY_META_MAX 50
#define KEEL_GATEWAY_META_KEY_MAX 40
#define KEEL_GATEWAY_META_VALUE_MAX 500

/** AVS results (address verification), as gateways report them. */
#define KEEL_AVS_MATCH 'Y'       /* street and postal code match */
#define KEEL_AVS_ADDRESS_ONLY 'A' /* street matches, postal code does not */
#define KEEL_AVS_ZIP_ONLY 'Z'    /* postal code matches, street does not */
#define KEEL_AVS_NO_MATCH 'N'    /* neither matches */
#define KEEL_AVS_UNAVAILABLE 'U' /* not checked / not supported */
/** CVV (card verification value) results. */
#define KEEL_CVV_MATCH 'M'
#define KEEL_CVV_NO_MATCH 'N'
#define KEEL_CVV_UNAVAILABLE 'U'

/** State of a charge at the gateway. */
typedef enum keel_charge_status {
    KEEL_CHARGE_NONE = 0, /* no charge (a failed call) */
    KEEL_CHARGE_AUTHORIZED = 1,
    KEEL_CHARGE_CAPTURED = 2,
    KEEL_CHARGE_VOIDED = 3,
    KEEL_CHARGE_REFUNDED = 4,          /* fully refunded */
    KEEL_CHARGE_PARTIALLY_REFUNDED = 5 /* captured, part of it refunded */
} keel_charge_status;

/** Gateway operations (for fault injection and call records). */
typedef enum keel_gateway_op {
    KEEL_GATEWAY_AUTHORIZE = 0,
    KEEL_GATEWAY_CAPTURE = 1,
    KEEL_GATEWAY_VOID = 2,
    KEEL_GATEWAY_REFUND = 3,
    KEEL_GATEWAY_OP_COUNT = 4 /* number of operations; also "any" in keel_sandbox_count() */
} keel_gateway_op;

/** One metadata entry (borrowed strings). */
typedef struct keel_gateway_meta {
    const char *key;
    const char *value;
} keel_gateway_meta;

/** An authorization request.  All strings are borrowed for the duration of the call. */
typedef struct keel_charge_request {
    int64_t amount;                   /* minor units, > 0 */
    const keel_currency *currency;    /* required */
    const char *payment_token;        /* required; a token, never a PAN */
    const char *idempotency_key;      /* required; forwarded to the gateway */
    const char *customer_id;          /* optional */
    const char *customer_email;       /* optional */
    const char *description;          /* optional */
    const keel_gateway_meta *metadata; /* optional, metadata_len entries */
    size_t metadata_len;
} keel_charge_request;

/** Capture of an authorized charge. */
typedef struct keel_capture_request {
    const char *charge_id;       /* required */
    int64_t amount;              /* 0 = the full authorized amount; else 0 < amount <= it */
    const char *idempotency_key; /* optional (NULL = no idempotency) */
} keel_capture_request;

/** Void (cancel) of an authorized, not yet captured charge. */
typedef struct keel_void_request {
    const char *charge_id;       /* required */
    const char *idempotency_key; /* optional */
} keel_void_request;

/** Refund of a captured charge. */
typedef struct keel_refund_request {
    const char *charge_id;       /* required */
    int64_t amount;              /* 0 = everything not refunded yet; else > 0 */
    const char *reason;          /* optional ("requested_by_customer", "duplicate", ...) */
    const char *idempotency_key; /* optional */
} keel_refund_request;

/** What the gateway says about a charge after an operation. */
typedef struct keel_charge_result {
    char charge_id[KEEL_GATEWAY_ID_MAX];
    keel_charge_status status;
    int64_t amount;          /* authorized amount */
    int64_t amount_captured; /* 0 until captured */
    int64_t amount_refunded; /* sum of refunds */
    const keel_currency *currency;
    char avs_result; /* KEEL_AVS_*, 0 when the gateway did not say */
    char cvv_result; /* KEEL_CVV_*, 0 when the gateway did not say */
    char gateway_reference[KEEL_GATEWAY_ID_MAX]; /* the processor's own reference */
    int replayed; /* 1 when the answer is a replay of an earlier request with the same key */
} keel_charge_result;

/** What the gateway says about a refund. */
typedef struct keel_refund_result {
    char refund_id[KEEL_GATEWAY_ID_MAX];
    char charge_id[KEEL_GATEWAY_ID_MAX];
    int64_t amount; /* this refund */
    const keel_currency *currency;
    keel_charge_status charge_status; /* the charge after the refund */
    int64_t charge_amount_refunded;   /* the charge's refunds in total */
    int replayed;
} keel_refund_result;

typedef struct keel_gateway keel_gateway;

/** Operations of a gateway implementation.  Each receives a validated request, zeroed outputs
 *  and a cleared failure; it returns KEEL_OK or an error and describes failures in *fail
 *  (which may be NULL). */
typedef struct keel_gateway_ops {
    const char *name; /* "sandbox", "stripe", ... */
    keel_err (*authorize)(keel_gateway *gw, const keel_charge_request *req,
                          keel_charge_result *out, keel_pay_failure *fail);
    keel_err (*capture)(keel_gateway *gw, const keel_capture_request *req,
                        keel_charge_result *out, keel_pay_failure *fail);
    keel_err (*void_charge)(keel_gateway *gw, const keel_void_request *req,
                            keel_charge_result *out, keel_pay_failure *fail);
    keel_err (*refund)(keel_gateway *gw, const keel_refund_request *req, keel_refund_result *out,
                       keel_pay_failure *fail);
    void (*destroy)(keel_gateway *gw);
} keel_gateway_ops;

/** The interface.  Embed as the first member of an implementation's struct. */
struct keel_gateway {
    const keel_gateway_ops *ops;
};

/** Check a charge request against the documented limits.
 *  @return KEEL_OK or KEEL_EINVAL with the offending field named in diag ("amount: must be
 *  > 0"); never quotes the token.  Thread-safety: any thread.  Ownership: borrows req. */
KEEL_API KEEL_NODISCARD keel_err keel_charge_request_validate(const keel_charge_request *req,
                                                              keel_diag *diag);
/** Same for capture, void and refund requests. */
KEEL_API KEEL_NODISCARD keel_err keel_capture_request_validate(const keel_capture_request *req,
                                                               keel_diag *diag);
KEEL_API KEEL_NODISCARD keel_err keel_void_request_validate(const keel_void_request *req,
                                                            keel_diag *diag);
KEEL_API KEEL_NODISCARD keel_err keel_refund_request_validate(const keel_refund_request *req,
                                                              keel_diag *diag);

/** Authorize (place a hold for) req->amount on the card behind req->payment_token.
 *  out and fail may be NULL; both are cleared first.
 *  @return KEEL_OK (out->status KEEL_CHARGE_AUTHORIZED); KEEL_EINVAL (NULL gw or a request
 *  outside the limits: fail->code is KEEL_EINVAL and fail->message names the field); a
 *  KEEL_EPAY_* code (fail->code the same code, decline_code and message from the gateway;
 *  filled with keel_strerror() if the implementation left it empty).
 *  Thread-safety: as the implementation.  Ownership: borrows everything. */
KEEL_API KEEL_NODISCARD keel_err keel_gateway_authorize(keel_gateway *gw,
                                                        const keel_charge_request *req,
                                                        keel_charge_result *out,
                                                        keel_pay_failure *fail);
/** Capture an authorized charge (status KEEL_CHARGE_CAPTURED).  Errors as authorize;
 *  capturing a charge that is not authorized is KEEL_EPAY_GATEWAY. */
KEEL_API KEEL_NODISCARD keel_err keel_gateway_capture(keel_gateway *gw,
                                                      const keel_capture_request *req,
                                                      keel_charge_result *out,
                                                      keel_pay_failure *fail);
/** Void an authorized, uncaptured charge (status KEEL_CHARGE_VOIDED).  Errors as authorize;
 *  voiding a captured or voided charge is KEEL_EPAY_GATEWAY. */
KEEL_API KEEL_NODISCARD keel_err keel_gateway_void(keel_gateway *gw, const keel_void_request *req,
                                                   keel_charge_result *out,
                                                   keel_pay_failure *fail);
/** Refund part or all of a captured charge.  Errors as authorize; refunding more than
 *  captured minus earlier refunds, or an uncaptured charge, is KEEL_EPAY_GATEWAY. */
KEEL_API KEEL_NODISCARD keel_err keel_gateway_refund(keel_gateway *gw,
                                                     const keel_refund_request *req,
                                                     keel_refund_result *out,
                                                     keel_pay_failure *fail);
/** Name of the implementation ("sandbox"); "" for NULL.  Ownership: static string. */
KEEL_API const char *keel_gateway_name(const keel_gateway *gw);
/** Destroy the gateway through its ops.  NULL is a no-op.
 *  Thread-safety: no call may be running.  Ownership: consumes gw. */
KEEL_API void keel_gateway_destroy(keel_gateway *gw);

/** "authorized", "captured", "voided", "refunded", "partially_refunded", "none";
 *  "unknown" otherwise.  Ownership: static string. */
KEEL_API const char *keel_charge_status_name(keel_charge_status s);
/** "authorize", "capture", "void", "refund"; "unknown" otherwise. */
KEEL_API const char *keel_gateway_op_name(keel_gateway_op op);

/* ============================================================== sandbox == */

/*
 * The sandbox gateway: an in-memory gateway for tests and local development that behaves
 * like a real one (state rules, idempotency keys) and fails on demand.
 *
 * Test tokens (Stripe-like), for authorize:
 *
 *   tok_visa, tok_mastercard, tok_amex  succeed; AVS 'Y', CVV 'M'
 *   tok_avsFail                         succeeds with AVS 'N' (no match), CVV 'M'
 *   tok_cvcFail                         succeeds with AVS 'Y', CVV 'N' (no match)
 *   tok_chargeDeclined                  KEEL_EPAY_DECLINED, decline_code "generic_decline"
 *   tok_insufficientFunds               KEEL_EPAY_INSUFFICIENT_FUNDS,
 *                                       decline_code "insufficient_funds"
 *   tok_threeDSecureRequired            KEEL_EPAY_AUTH_REQUIRED,
 *                                       decline_code "authentication_required"
 *   anything else                       KEEL_EPAY_GATEWAY "no such token",
 *                                       decline_code "resource_missing"
 *
 * keel_sandbox_add_token() makes another token (for example one from a keel_tokenizer)
 * behave like one of these.
 *
 * Ids are deterministic: charges "ch_sandbox_000001", "ch_sandbox_000002", ...; refunds
 * "re_sandbox_000001", ...; the gateway reference is "sbx_ref_000001", ....
 *
 * State rules: capture only an AUTHORIZED charge (0 < amount <= authorized; a partial
 * capture releases the rest); void only an AUTHORIZED one; refund only a CAPTURED or
 * PARTIALLY_REFUNDED one, at most captured minus earlier refunds.  Violations are
 * KEEL_EPAY_GATEWAY with decline_code "charge_not_capturable", "charge_already_captured",
 * "charge_already_voided", "charge_not_refundable", "amount_too_large" or "resource_missing"
 * (unknown charge id).
 *
 * Idempotency keys, as Stripe: an operation with a key seen before for the same operation
 * replays the first answer (the same charge, or the same failure for a declined card) without
 * doing anything, marks the result `replayed` and is recorded as a replay.  The same key
 * with different parameters is KEEL_EPAY_IDEMPOTENCY_CONFLICT.  Answers are saved only when
 * the operation ran: a network error, rate limit or timeout before the operation saves
 * nothing, so a retry runs it.
 *
 * Faults are injected per operation and take precedence over the token's behaviour.
 */

typedef struct keel_sandbox keel_sandbox;

/** Fault kinds. */
typedef enum keel_sandbox_fault_kind {
    KEEL_SANDBOX_SUCCEED = 0,            /* no fault: behave normally */
    KEEL_SANDBOX_DECLINE = 1,            /* KEEL_EPAY_DECLINED "generic_decline" */
    KEEL_SANDBOX_INSUFFICIENT_FUNDS = 2, /* KEEL_EPAY_INSUFFICIENT_FUNDS */
    KEEL_SANDBOX_NETWORK_ERROR = 3,      /* KEEL_EPAY_NETWORK, nothing happens */
    KEEL_SANDBOX_TIMEOUT = 4,            /* KEEL_EPAY_GATEWAY_TIMEOUT (after `performed`) */
    KEEL_SANDBOX_SLOW = 5,               /* sleep delay_ms on the clock, then behave normally */
    KEEL_SANDBOX_RATE_LIMITED = 6        /* KEEL_EPAY_RATE_LIMITED with retry_after_ms */
} keel_sandbox_fault_kind;

/** A fault for one operation. */
typedef struct keel_sandbox_fault {
    keel_sandbox_fault_kind kind;
    unsigned times;          /* affected calls, then the fault clears; 0 = until cleared */
    int performed;           /* TIMEOUT: 1 = the operation happened before the timeout */
    uint64_t delay_ms;       /* SLOW: how long the call takes (on the sandbox clock) */
    uint64_t retry_after_ms; /* RATE_LIMITED: reported in fail->retry_after_ms */
} keel_sandbox_fault;

/** One recorded call. */
typedef struct keel_sandbox_call {
    keel_gateway_op op;
    char idempotency_key[KEEL_GATEWAY_IDEM_KEY_MAX]; /* "" when none */
    int64_t amount;                                  /* requested (0 = full, for capture) */
    const keel_currency *currency;                   /* authorize only (else NULL) */
    char token[KEEL_GATEWAY_ID_MAX];                 /* authorize only */
    char charge_id[KEEL_GATEWAY_ID_MAX];             /* the charge concerned, "" if none */
    keel_err outcome;                                /* what the call returned */
    int replay;                                      /* 1 = answered from the idempotency store */
    int fault;                                       /* 1 = an injected fault decided it */
} keel_sandbox_call;

typedef struct keel_sandbox_config {
    size_t size;              /* sizeof(keel_sandbox_config), set by the defaults function */
    const keel_clock *clock;  /* for SLOW faults; NULL = system clock (borrowed) */
    size_t max_charges;       /* charges kept (100000); beyond: KEEL_EPAY_GATEWAY */
    size_t max_recorded_calls; /* calls recorded (10000); later ones are counted only */
} keel_sandbox_config;

/** Fill cfg with the defaults above.  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_sandbox_config_default(keel_sandbox_config *cfg);

/** Create a sandbox gateway.  Use it through keel_sandbox_gateway().
 *  @return KEEL_OK, KEEL_EINVAL (NULL out, zero limits; field named in diag), KEEL_ENOMEM.
 *  Ownership: caller destroys with keel_sandbox_destroy() (or keel_gateway_destroy() on the
 *  interface); the clock is borrowed and must outlive the sandbox. */
KEEL_API KEEL_NODISCARD keel_err keel_sandbox_create(keel_sandbox **out,
                                                     const keel_sandbox_config *cfg,
                                                     keel_diag *diag);
/** The keel_gateway interface of the sandbox (borrowed, lives as long as sb). */
KEEL_API keel_gateway *keel_sandbox_gateway(keel_sandbox *sb);
/** Free the sandbox.  NULL is a no-op.  No call may be running. */
KEEL_API void keel_sandbox_destroy(keel_sandbox *sb);

/** Inject a fault for operation op (replacing any earlier one for op).
 *  @return KEEL_OK, KEEL_EINVAL (bad op or kind).  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_sandbox_inject(keel_sandbox *sb, keel_gateway_op op,
                                                     const keel_sandbox_fault *fault);
/** Remove every injected fault. */
KEEL_API void keel_sandbox_clear_faults(keel_sandbox *sb);
/** Make `token` behave like the built-in test token `like` ("tok_visa", ...).
 *  @return KEEL_OK, KEEL_EINVAL (unknown `like`, token too long or empty), KEEL_ENOMEM. */
KEEL_API KEEL_NODISCARD keel_err keel_sandbox_add_token(keel_sandbox *sb, const char *token,
                                                        const char *like);

/** Calls of operation op (KEEL_GATEWAY_OP_COUNT = all operations), replays included. */
KEEL_API size_t keel_sandbox_count(const keel_sandbox *sb, keel_gateway_op op);
/** Calls of op answered from the idempotency store. */
KEEL_API size_t keel_sandbox_replays(const keel_sandbox *sb, keel_gateway_op op);
/** Charges created so far (successful authorizations, replays excluded). */
KEEL_API size_t keel_sandbox_charges(const keel_sandbox *sb);
/** Copy the i-th recorded call (0 = first) into *out.
 *  @return KEEL_OK, KEEL_ENOTFOUND (no such call or not recorded), KEEL_EINVAL. */
KEEL_API KEEL_NODISCARD keel_err keel_sandbox_call_at(const keel_sandbox *sb, size_t i,
                                                      keel_sandbox_call *out);
/** Current state of a charge (as the gateway knows it).
 *  @return KEEL_OK, KEEL_ENOTFOUND, KEEL_EINVAL. */
KEEL_API KEEL_NODISCARD keel_err keel_sandbox_charge(const keel_sandbox *sb,
                                                     const char *charge_id,
                                                     keel_charge_result *out);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_GATEWAY_H */
