/* routes.h - keeld's HTTP routes. */
#ifndef KEELD_ROUTES_H
#define KEELD_ROUTES_H

#include <keel/config.h>
#include <keel/keel.h>
#include <keel/redis.h>
#include <keel/store.h>
#include <keel/tasks.h>

/* Identity settings read by main.c from the environment (README: AUTH_* variables). */
typedef struct keeld_auth_settings {
    uint32_t rate_limit_per_ip;      /* AUTH_RATE_LIMIT_PER_IP (10; 0 = off) */
    uint32_t rate_limit_per_account; /* AUTH_RATE_LIMIT_PER_ACCOUNT (5; 0 = off) */
    uint32_t rate_limit_window_s;    /* AUTH_RATE_LIMIT_WINDOW_SECONDS (60) */
    uint32_t session_cache_ms;       /* AUTH_SESSION_CACHE_MS (2000; 0 = no cache) */
} keeld_auth_settings;
void keeld_auth_settings_default(keeld_auth_settings *s);

/* What the routes need from the service (all borrowed; redis and metrics may be NULL). */
typedef struct keeld_app {
    const keel_settings *settings;
    keel_store *store;
    keel_redis *redis;
    keel_metrics *metrics;
    keel_tasks *tasks; /* routes may add periodic maintenance tasks (not started yet) */
    const keeld_auth_settings *auth; /* NULL = defaults */
} keeld_app;

/* Register the application routes on r (the built-in /, /health and /metrics routes are added
 * by the server).  With ENVIRONMENT=test, a few diagnostic routes under /_test and
 * /api/v{1,2}/_test are added for the integration tests; they do not exist otherwise. */
keel_err keeld_routes_register(keel_router *r, const keeld_app *app, keel_diag *diag);

/* routes/products.c */
keel_err keeld_products_routes(keel_router *r, keel_store *store, keel_diag *diag);
/* Answer a storage error: 503 when the database is unavailable, else 500; logs the cause. */
keel_err keeld_store_problem(keel_ctx *cx, keel_err e, const keel_diag *d);
/* routes/payments.c: POST /api/v1/payments (idempotent charges through the gateway). */
keel_err keeld_payments_routes(keel_router *r, const keeld_app *app, keel_diag *diag);
void keeld_payments_cleanup(void);
/* routes/webhooks.c: POST /api/v1/webhooks/payments (verified, deduplicated). */
keel_err keeld_webhook_routes(keel_router *r, const keeld_app *app, keel_diag *diag);
void keeld_webhook_cleanup(void);
/* routes/checkout.c: POST /api/v1/checkout (saga: stock, payment, shipment),
 * PUT/GET /api/v1/products/{id}/inventory, GET /api/v1/orders/{id}.  Needs the payments
 * routes registered first (it shares their gateway chain and idempotency store). */
keel_err keeld_checkout_routes(keel_router *r, const keeld_app *app, keel_diag *diag);
/* Drive the checkout sagas a crash left in flight to a final state (compensating them) and
 * log what was recovered.  Call after keeld_routes_register(), before serving; sagas still
 * leased by a live instance are left to the periodic recovery task. */
keel_err keeld_checkout_recover(keel_diag *diag);
void keeld_checkout_cleanup(void);
/* routes/auth.c: register, login, refresh, logout, users/me (v1, v2), admin users, JWKS
 * (and POST /_test/auth/roles with ENVIRONMENT=test). */
keel_err keeld_auth_routes(keel_router *r, const keeld_app *app, keel_diag *diag);
/* The chain's auth layer (bearer tokens, session check; applied to routed, non-public paths)
 * and rate_limit layer (per client IP on login/register; NULL when disabled).  Call after
 * keeld_routes_register(); both are the caller's until given to the chain. */
keel_err keeld_auth_layers(keel_layer **auth, keel_layer **rate_limit, keel_diag *diag);
/* keel_server_config.inline_check: cache-only GET /api/v1/users/me runs on the event loop. */
int keeld_inline_check(keel_ctx *cx, void *ud);
void keeld_auth_cleanup(void);
/* Free what the routes allocated (after the server stopped). */
void keeld_routes_cleanup(void);

#endif
