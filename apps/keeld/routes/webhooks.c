/* webhooks.c - POST /api/v1/webhooks/payments: the gateway's event callbacks.
 *
 * Seed 004's three guarantees, in order: authenticity (Stripe-Signature HMAC over the raw
 * body bytes, every WEBHOOK_SECRET accepted during a rotation), freshness (timestamp within
 * 300 s) and at-most-once processing (dedup on the event id, in Redis when REDIS_URL is set,
 * else in the database, kept 30 days).  A bad signature is a 400 problem naming the reason;
 * a duplicate is acknowledged with 200 so the gateway stops retrying.  Without
 * WEBHOOK_SECRET the route answers 503: an unverifiable webhook is never processed. */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <string.h>

#include <keel/webhook.h>

#include "../routes.h"

static struct {
    keel_webhook_verifier *verifier;
    keel_webhook_dedup *dedup;
    keel_logger *log;
} W;

static keel_err h_webhook(keel_ctx *cx, void *ud)
{
    (void)ud;
    if (W.verifier == NULL)
        return keel_resp_problem(cx, 503, NULL,
                                 "Webhooks are disabled: WEBHOOK_SECRET is not configured.",
                                 NULL);
    keel_str body = keel_req_body(cx);
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_webhook_verify(W.verifier, body.ptr, body.len,
                                     keel_req_header(cx, "Stripe-Signature"),
                                     keel_time_wall_ms() / 1000, &d);
    if (e != KEEL_OK) {
        keel_webhook_reason why = keel_webhook_reason_of(e);
        KEEL_LOG_WARNING(W.log, "webhook rejected: %s", keel_webhook_reason_name(why));
        char type[128];
        snprintf(type, sizeof(type), "https://keel.dev/problems/webhook-%s",
                 keel_webhook_reason_name(why));
        return keel_resp_problem_typed(cx, keel_webhook_reason_http_status(why), type,
                                       keel_webhook_reason_title(why), d.msg, NULL);
    }
    char id[KEEL_WEBHOOK_EVENT_ID_MAX + 1];
    if (keel_webhook_event_id(body.ptr, body.len, id, sizeof(id)) != KEEL_OK)
        return keel_resp_problem(cx, 400, NULL,
                                 "The event must be a JSON object with a string \"id\".", NULL);
    int first = keel_webhook_is_first_delivery(W.dedup, id, &d);
    if (first < 0)
        return keeld_store_problem(cx, (keel_err)first, &d);
    if (first == 0) {
        KEEL_LOG_INFO(W.log, "webhook %s already processed; acknowledged", id);
        return keel_resp_success(cx, 200, json_pack("{s:s, s:b}", "id", id, "duplicate", 1),
                                 NULL);
    }
    /* Processing: the reference service records the event in the log.  An application would
     * update its orders here; if that fails it calls keel_webhook_dedup_forget() so the
     * gateway's retry is processed instead of being taken for a duplicate. */
    json_t *ev = json_loadb(body.ptr, body.len, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    KEEL_LOG_INFO(W.log, "webhook %s (%s) accepted", id, type ? type : "untyped");
    json_decref(ev);
    return keel_resp_success(cx, 200, json_pack("{s:s, s:b}", "id", id, "duplicate", 0), NULL);
}

/* Event ids are kept 30 days; a maintenance task deletes the expired ones (a no-op on Redis,
 * which expires them itself). */
static keel_err purge_webhook_events(void *ud)
{
    (void)ud;
    uint64_t removed = 0;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = W.dedup ? keel_webhook_dedup_purge(W.dedup, &removed, &d) : KEEL_OK;
    if (e == KEEL_OK && removed > 0)
        KEEL_LOG_INFO(W.log, "purged %llu expired webhook event ids", (unsigned long long)removed);
    return e;
}

keel_err keeld_webhook_routes(keel_router *r, const keeld_app *app, keel_diag *diag)
{
    memset(&W, 0, sizeof(W));
    W.log = keel_logger_get("app.webhooks");
    const keel_settings *st = app->settings;
    keel_err e;
    if (st->webhook_secrets_len > 0) {
        keel_str secrets[KEEL_WEBHOOK_MAX_SECRETS];
        size_t n = st->webhook_secrets_len < KEEL_WEBHOOK_MAX_SECRETS ? st->webhook_secrets_len
                                                                      : KEEL_WEBHOOK_MAX_SECRETS;
        for (size_t i = 0; i < n; i++) {
            secrets[i].ptr = keel_secret_data(st->webhook_secrets[i]);
            secrets[i].len = keel_secret_len(st->webhook_secrets[i]);
        }
        keel_webhook_config wc;
        keel_webhook_config_default(&wc);
        wc.secrets = secrets;
        wc.nsecrets = n;
        if ((e = keel_webhook_verifier_create(&W.verifier, &wc, diag)) != KEEL_OK)
            return e;
        keel_webhook_dedup_config dc;
        keel_webhook_dedup_config_default(&dc);
        dc.retention_ms = KEEL_WEBHOOK_RETENTION_RECOMMENDED_MS;
        e = app->redis != NULL ? keel_webhook_dedup_redis_create(&W.dedup, app->redis, &dc)
                               : keel_webhook_dedup_sql_create(&W.dedup, app->store, &dc, diag);
        if (e != KEEL_OK)
            return e;
        if (app->tasks != NULL &&
            (e = keel_tasks_add_periodic(app->tasks, "purge_webhook_events", 600000,
                                         purge_webhook_events, NULL)) != KEEL_OK)
            return e;
    }
    return keel_router_add(r, KEEL_METHOD_POST, "/api/v1/webhooks/payments", h_webhook, NULL, 0,
                           diag);
}

void keeld_webhook_cleanup(void)
{
    keel_webhook_dedup_destroy(W.dedup);
    keel_webhook_verifier_destroy(W.verifier);
    memset(&W, 0, sizeof(W));
}
