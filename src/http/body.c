/* body.c - strict JSON request bodies: content type, parse, schema validation, and the
 * matching 415 / 400 / 422 problem responses. */
#include "ctx.h"

#include <keel/validate.h>

static int is_json_type(const char *ct)
{
    if (ct == NULL)
        return 0;
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, "; \t");
    keel_str t = {ct, n};
    if (keel_str_ieq(t, KEEL_STR_LIT("application/json")))
        return 1;
    /* application/<anything>+json (e.g. merge-patch+json) */
    return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
           strncasecmp(ct + n - 5, "+json", 5) == 0;
}

keel_err keel_req_json(keel_ctx *cx, const struct keel_schema *schema, json_t **out)
{
    *out = NULL;
    if (!is_json_type(keel_req_header(cx, "Content-Type"))) {
        (void)keel_resp_problem(cx, 415, NULL,
                                "The request body must be JSON (Content-Type: application/json).",
                                NULL);
        return KEEL_EINVAL;
    }
    keel_str body = keel_req_body(cx);
    keel_diag d = {0};
    json_t *v = NULL;
    keel_err e = keel_validate_parse_object(body.ptr, body.len, &v, &d);
    if (e == KEEL_ENOMEM)
        return e;
    if (e != KEEL_OK) {
        (void)keel_resp_problem(cx, 400, NULL, d.msg[0] ? d.msg : "The body is not valid JSON.",
                                NULL);
        return KEEL_EINVAL;
    }
    if (schema != NULL) {
        json_t *errors = json_array();
        if (errors == NULL) {
            json_decref(v);
            return KEEL_ENOMEM;
        }
        if (keel_validate_json(v, schema, "body", errors) != KEEL_OK) {
            json_decref(v);
            (void)keel_resp_problem(cx, 422, "Validation Error",
                                    "The request body failed validation; see errors.", errors);
            return KEEL_EINVAL;
        }
        json_decref(errors);
    }
    *out = v;
    return KEEL_OK;
}
