/* payments.h - what routes/payments.c shares with the other keeld routes (checkout): the
 * gateway behind its breaker -> retry -> timer chain, the idempotency store and the answer
 * for a payment error.  Valid between keeld_payments_routes() and keeld_payments_cleanup(). */
#ifndef KEELD_ROUTES_PAYMENTS_H
#define KEELD_ROUTES_PAYMENTS_H

#include <keel/gateway.h>
#include <keel/idempotency.h>
#include <keel/keel.h>

/* One gateway operation through the resilience chain (breaker -> retry on retriable payment
 * errors only -> timer).  op: KEEL_GATEWAY_AUTHORIZE (req: keel_charge_request, out:
 * keel_charge_result), _CAPTURE (keel_capture_request, keel_charge_result), _VOID
 * (keel_void_request, keel_charge_result) or _REFUND (keel_refund_request,
 * keel_refund_result).  fail may be NULL.  Returns the gateway's error (KEEL_EOPEN when the
 * breaker is open). */
keel_err keeld_gateway_call(keel_gateway_op op, const void *req, void *out,
                            keel_pay_failure *fail);
/* The idempotency store the payments policy uses (SQL or Redis). */
keel_idem_store *keeld_payments_idem_store(void);
/* Answer a payment error: 503 (gateway unavailable), 402/409/422/429/502/504 problems typed
 * https://keel.dev/problems/<type>, 500 for anything else (logged). */
keel_err keeld_payment_problem(keel_ctx *cx, keel_err e, const keel_pay_failure *f);

#endif
