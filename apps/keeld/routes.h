/* routes.h - keeld's HTTP routes. */
#ifndef KEELD_ROUTES_H
#define KEELD_ROUTES_H

#include <keel/config.h>
#include <keel/keel.h>

/* Register the application routes on r (the built-in /, /health and /metrics routes are added
 * by the server).  With ENVIRONMENT=test, a few diagnostic routes under /_test and
 * /api/v{1,2}/_test are added for the integration tests; they do not exist otherwise. */
keel_err keeld_routes_register(keel_router *r, const keel_settings *st, keel_diag *diag);
void keeld_routes_cleanup(void);

#endif
