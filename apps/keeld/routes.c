/* routes.c - keeld's routes: products, payments and, in the test environment only,
 * diagnostic routes that let the integration tests exercise validation, versioning, slow
 * handlers and handler failures over real HTTP. */
#define _GNU_SOURCE 1
#include "routes.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include <keel/validate.h>

/* Handlers inside t_sleep right now (so a test knows its slow request is in flight). */
static atomic_int g_sleeping;

static keel_err t_sleep(keel_ctx *cx, void *ud)
{
    (void)ud;
    const char *ms = keel_req_query(cx, "ms");
    long v = ms ? strtol(ms, NULL, 10) : 0;
    if (v < 0 || v > 30000)
        return keel_resp_problem(cx, 422, NULL, "ms must be between 0 and 30000.", NULL);
    atomic_fetch_add(&g_sleeping, 1);
    struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    atomic_fetch_sub(&g_sleeping, 1);
    return keel_resp_success(cx, 200, json_pack("{s:i}", "slept_ms", (int)v), NULL);
}

static keel_err t_sleeping(keel_ctx *cx, void *ud)
{
    (void)ud;
    return keel_resp_success(cx, 200, json_pack("{s:i}", "sleeping", atomic_load(&g_sleeping)),
                             NULL);
}

static const char *const currencies[] = {"EUR", "USD", "GBP", NULL};
static const keel_schema_field echo_fields[] = {
    {.name = "name", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 1,
     .max_len = 50},
    {.name = "quantity", .type = KEEL_SCHEMA_INT, .flags = KEEL_SCHEMA_REQUIRED, .has_min = 1,
     .min = 1, .has_max = 1, .max = 100},
    {.name = "email", .type = KEEL_SCHEMA_STRING, .format = KEEL_SCHEMA_FMT_EMAIL},
    {.name = "currency", .type = KEEL_SCHEMA_STRING, .one_of = currencies},
};
static const keel_schema echo_schema = {echo_fields, sizeof(echo_fields) / sizeof(echo_fields[0]),
                                        0};

static keel_err t_echo(keel_ctx *cx, void *ud)
{
    (void)ud;
    json_t *body;
    if (keel_req_json(cx, &echo_schema, &body) != KEEL_OK)
        return KEEL_OK; /* the 4xx problem is already set */
    return keel_resp_success(cx, 201, body, NULL);
}

static keel_err t_item(keel_ctx *cx, void *ud)
{
    int version = (int)(intptr_t)ud;
    return keel_resp_success(
        cx, 200, json_pack("{s:i, s:s}", "version", version, "id", keel_req_param(cx, "id")),
        NULL);
}

static keel_err t_fail(keel_ctx *cx, void *ud)
{
    (void)cx;
    (void)ud;
    return KEEL_EINTERNAL;
}

keel_err keeld_routes_register(keel_router *r, const keeld_app *app, keel_diag *diag)
{
    const keel_settings *st = app->settings;
    keel_err e = keel_router_version(r, "/api", "1");
    if (e == KEEL_OK)
        e = keeld_products_routes(r, app->store, diag);
    if (e == KEEL_OK)
        e = keeld_payments_routes(r, app, diag);
    if (e == KEEL_OK)
        e = keeld_checkout_routes(r, app, diag);
    if (e == KEEL_OK)
        e = keeld_webhook_routes(r, app, diag);
    if (e == KEEL_OK)
        e = keeld_auth_routes(r, app, diag);
    if (e != KEEL_OK || st->environment != KEEL_ENVIRONMENT_TEST)
        return e;
    if ((e = keel_router_add(r, KEEL_METHOD_GET, "/_test/sleep", t_sleep, NULL, 0, diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/_test/sleeping", t_sleeping, NULL,
                             KEEL_ROUTE_INLINE, diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/_test/fail", t_fail, NULL, 0, diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_POST, "/api/v1/_test/echo", t_echo, NULL, 0,
                             diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET | KEEL_METHOD_DELETE, "/api/v1/_test/items/{id}",
                             t_item, (void *)(intptr_t)1, 0, diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/api/v2/_test/items/{id}", t_item,
                             (void *)(intptr_t)2, 0, diag)))
        return e;
    return KEEL_OK;
}

void keeld_routes_cleanup(void)
{
    keeld_checkout_cleanup();
    keeld_payments_cleanup();
    keeld_webhook_cleanup();
    keeld_auth_cleanup();
}
