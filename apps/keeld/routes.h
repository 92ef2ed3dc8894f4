/* routes.h - keeld's HTTP routes. */
#ifndef KEELD_ROUTES_H
#define KEELD_ROUTES_H

#include <keel/config.h>
#include <keel/keel.h>
#include <keel/store.h>

/* Register the application routes on r (the built-in /, /health and /metrics routes are added
 * by the server).  With ENVIRONMENT=test, a few diagnostic routes under /_test and
 * /api/v{1,2}/_test are added for the integration tests; they do not exist otherwise. */
keel_err keeld_routes_register(keel_router *r, const keel_settings *st, keel_store *store,
                               keel_diag *diag);

/* routes/products.c */
keel_err keeld_products_routes(keel_router *r, keel_store *store, keel_diag *diag);
/* Answer a storage error: 503 when the database is unavailable, else 500; logs the cause. */
keel_err keeld_store_problem(keel_ctx *cx, keel_err e, const keel_diag *d);
void keeld_routes_cleanup(void);

#endif
