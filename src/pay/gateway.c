/* gateway.c - the gateway interface: request validation and dispatch (keel/gateway.h). */
#include "keel_int.h"

#include <stdio.h>

#include <keel/gateway.h>
#include <keel/payment.h>

/* ------------------------------------------------------------ validation -- */

/* A string field: required or optional, at most max bytes.  Only the length is checked here:
 * descriptions and metadata are free text; ids and keys that travel in headers are checked
 * by their own parsers (keel_idem_key_parse, ...). */
static keel_err check_str(const char *field, const char *s, size_t max, int required,
                          keel_diag *diag)
{
    if (s == NULL || s[0] == '\0') {
        if (required)
            return keel_diag_set(diag, KEEL_EINVAL, 0, "%s: required", field);
        return KEEL_OK;
    }
    size_t n = strnlen(s, max + 1);
    if (n > max)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "%s: longer than %zu bytes", field, max);
    return KEEL_OK;
}

/* Ids, tokens and idempotency keys: visible ASCII only. */
static keel_err check_id(const char *field, const char *s, size_t max, int required,
                         keel_diag *diag)
{
    keel_err e = check_str(field, s, max, required, diag);
    if (e != KEEL_OK || s == NULL)
        return e;
    for (size_t i = 0; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return keel_diag_set(diag, KEEL_EINVAL, i, "%s: invalid character at offset %zu",
                                 field, i);
    }
    return KEEL_OK;
}

keel_err keel_charge_request_validate(const keel_charge_request *req, keel_diag *diag)
{
    keel_err e;
    if (req == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "request: NULL");
    if (req->amount <= 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "amount: must be > 0");
    if (req->currency == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "currency: required");
    e = check_id("payment_token", req->payment_token, KEEL_GATEWAY_ID_MAX - 1, 1, diag);
    if (e != KEEL_OK)
        return e;
    e = check_id("idempotency_key", req->idempotency_key, KEEL_GATEWAY_IDEM_KEY_MAX - 1, 1, diag);
    if (e != KEEL_OK)
        return e;
    e = check_id("customer_id", req->customer_id, KEEL_GATEWAY_ID_MAX - 1, 0, diag);
    if (e != KEEL_OK)
        return e;
    e = check_id("customer_email", req->customer_email, KEEL_GATEWAY_EMAIL_MAX, 0, diag);
    if (e != KEEL_OK)
        return e;
    e = check_str("description", req->description, KEEL_GATEWAY_DESC_MAX - 1, 0, diag);
    if (e != KEEL_OK)
        return e;
    if (req->metadata_len > 0 && req->metadata == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "metadata: NULL with metadata_len %zu",
                             req->metadata_len);
    if (req->metadata_len > KEEL_GATEWAY_META_MAX)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "metadata: more than %d entries",
                             KEEL_GATEWAY_META_MAX);
    for (size_t i = 0; i < req->metadata_len; i++) {
        e = check_str("metadata.key", req->metadata[i].key, KEEL_GATEWAY_META_KEY_MAX, 1, diag);
        if (e != KEEL_OK)
            return e;
        if (req->metadata[i].value == NULL)
            return keel_diag_set(diag, KEEL_EINVAL, i, "metadata.value: required");
        e = check_str("metadata.value", req->metadata[i].value, KEEL_GATEWAY_META_VALUE_MAX, 0,
                      diag);
        if (e != KEEL_OK)
            return e;
    }
    return KEEL_OK;
}

keel_err keel_capture_request_validate(const keel_capture_request *req, keel_diag *diag)
{
    keel_err e;
    if (req == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "request: NULL");
    e = check_id("charge_id", req->charge_id, KEEL_GATEWAY_ID_MAX - 1, 1, diag);
    if (e != KEEL_OK)
        return e;
    if (req->amount < 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "amount: must be >= 0 (0 = full)");
    return check_id("idempotency_key", req->idempotency_key, KEEL_GATEWAY_IDEM_KEY_MAX - 1, 0,
                    diag);
}

keel_err keel_void_request_validate(const keel_void_request *req, keel_diag *diag)
{
    keel_err e;
    if (req == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "request: NULL");
    e = check_id("charge_id", req->charge_id, KEEL_GATEWAY_ID_MAX - 1, 1, diag);
    if (e != KEEL_OK)
        return e;
    return check_id("idempotency_key", req->idempotency_key, KEEL_GATEWAY_IDEM_KEY_MAX - 1, 0,
                    diag);
}

keel_err keel_refund_request_validate(const keel_refund_request *req, keel_diag *diag)
{
    keel_err e;
    if (req == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "request: NULL");
    e = check_id("charge_id", req->charge_id, KEEL_GATEWAY_ID_MAX - 1, 1, diag);
    if (e != KEEL_OK)
        return e;
    if (req->amount < 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "amount: must be >= 0 (0 = remaining)");
    e = check_str("reason", req->reason, KEEL_GATEWAY_DESC_MAX - 1, 0, diag);
    if (e != KEEL_OK)
        return e;
    return check_id("idempotency_key", req->idempotency_key, KEEL_GATEWAY_IDEM_KEY_MAX - 1, 0,
                    diag);
}

/* -------------------------------------------------------------- dispatch -- */

/* Copy a validation diag into the failure (code KEEL_EINVAL, message naming the field). */
static keel_err invalid(keel_pay_failure *fail, const keel_diag *d)
{
    return keel_pay_fail(fail, KEEL_EINVAL, NULL, "%s", d->msg);
}

/* After an implementation returned: make sure a failure is described, and that success
 * leaves the failure clear. */
static keel_err finish(keel_err e, keel_pay_failure *fail)
{
    if (fail == NULL)
        return e;
    if (e == KEEL_OK) {
        memset(fail, 0, sizeof(*fail));
        return e;
    }
    fail->code = e;
    if (fail->message[0] == '\0')
        snprintf(fail->message, sizeof(fail->message), "%s", keel_strerror(e));
    return e;
}

static void prepare(void *out, size_t n, keel_pay_failure *fail)
{
    if (out != NULL)
        memset(out, 0, n);
    if (fail != NULL)
        memset(fail, 0, sizeof(*fail));
}

keel_err keel_gateway_authorize(keel_gateway *gw, const keel_charge_request *req,
                                keel_charge_result *out, keel_pay_failure *fail)
{
    keel_diag d = {KEEL_OK, 0, ""};
    keel_charge_result tmp;
    prepare(out, sizeof(*out), fail);
    if (gw == NULL || gw->ops == NULL || gw->ops->authorize == NULL)
        return keel_pay_fail(fail, KEEL_EINVAL, NULL, "gateway: NULL or without authorize");
    if (keel_charge_request_validate(req, &d) != KEEL_OK)
        return invalid(fail, &d);
    if (out == NULL) {
        memset(&tmp, 0, sizeof(tmp));
        out = &tmp;
    }
    return finish(gw->ops->authorize(gw, req, out, fail), fail);
}

keel_err keel_gateway_capture(keel_gateway *gw, const keel_capture_request *req,
                              keel_charge_result *out, keel_pay_failure *fail)
{
    keel_diag d = {KEEL_OK, 0, ""};
    keel_charge_result tmp;
    prepare(out, sizeof(*out), fail);
    if (gw == NULL || gw->ops == NULL || gw->ops->capture == NULL)
        return keel_pay_fail(fail, KEEL_EINVAL, NULL, "gateway: NULL or without capture");
    if (keel_capture_request_validate(req, &d) != KEEL_OK)
        return invalid(fail, &d);
    if (out == NULL) {
        memset(&tmp, 0, sizeof(tmp));
        out = &tmp;
    }
    return finish(gw->ops->capture(gw, req, out, fail), fail);
}

keel_err keel_gateway_void(keel_gateway *gw, const keel_void_request *req,
                           keel_charge_result *out, keel_pay_failure *fail)
{
    keel_diag d = {KEEL_OK, 0, ""};
    keel_charge_result tmp;
    prepare(out, sizeof(*out), fail);
    if (gw == NULL || gw->ops == NULL || gw->ops->void_charge == NULL)
        return keel_pay_fail(fail, KEEL_EINVAL, NULL, "gateway: NULL or without void");
    if (keel_void_request_validate(req, &d) != KEEL_OK)
        return invalid(fail, &d);
    if (out == NULL) {
        memset(&tmp, 0, sizeof(tmp));
        out = &tmp;
    }
    return finish(gw->ops->void_charge(gw, req, out, fail), fail);
}

keel_err keel_gateway_refund(keel_gateway *gw, const keel_refund_request *req,
                             keel_refund_result *out, keel_pay_failure *fail)
{
    keel_diag d = {KEEL_OK, 0, ""};
    keel_refund_result tmp;
    prepare(out, sizeof(*out), fail);
    if (gw == NULL || gw->ops == NULL || gw->ops->refund == NULL)
        return keel_pay_fail(fail, KEEL_EINVAL, NULL, "gateway: NULL or without refund");
    if (keel_refund_request_validate(req, &d) != KEEL_OK)
        return invalid(fail, &d);
    if (out == NULL) {
        memset(&tmp, 0, sizeof(tmp));
        out = &tmp;
    }
    return finish(gw->ops->refund(gw, req, out, fail), fail);
}

const char *keel_gateway_name(const keel_gateway *gw)
{
    if (gw == NULL || gw->ops == NULL || gw->ops->name == NULL)
        return "";
    return gw->ops->name;
}

void keel_gateway_destroy(keel_gateway *gw)
{
    if (gw != NULL && gw->ops != NULL && gw->ops->destroy != NULL)
        gw->ops->destroy(gw);
}

const char *keel_charge_status_name(keel_charge_status s)
{
    switch (s) {
    case KEEL_CHARGE_NONE:
        return "none";
    case KEEL_CHARGE_AUTHORIZED:
        return "authorized";
    case KEEL_CHARGE_CAPTURED:
        return "captured";
    case KEEL_CHARGE_VOIDED:
        return "voided";
    case KEEL_CHARGE_REFUNDED:
        return "refunded";
    case KEEL_CHARGE_PARTIALLY_REFUNDED:
        return "partially_refunded";
    }
    return "unknown";
}

const char *keel_gateway_op_name(keel_gateway_op op)
{
    switch (op) {
    case KEEL_GATEWAY_AUTHORIZE:
        return "authorize";
    case KEEL_GATEWAY_CAPTURE:
        return "capture";
    case KEEL_GATEWAY_VOID:
        return "void";
    case KEEL_GATEWAY_REFUND:
        return "refund";
    case KEEL_GATEWAY_OP_COUNT:
        break;
    }
    return "unknown";
}
