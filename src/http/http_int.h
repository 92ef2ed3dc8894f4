/* http_int.h - private declarations of the http module. */
#ifndef KEEL_HTTP_INT_H
#define KEEL_HTTP_INT_H

#include "keel_int.h"

#include <keel/http.h>

#define KEEL__ROUTE_MAX_PARAMS 8
#define KEEL__CTX_SLOTS 8
#define KEEL__REQUEST_ID_MAX 64

/* Rewrite a versionless path under a versioned base (see keel_router_version).
 * Returns the rewritten path in arena memory, path itself when nothing applies, or NULL when
 * the requested version is malformed. */
const char *keel__router_version_rewrite(const keel_router *r, const char *path,
                                         const char *header, keel_arena *a);

/* Called by the server for the built-in routes. */
keel_err keel__builtin_routes(keel_router *r, keel_server *s);

/* Whether the server is draining, for Connection: close and readiness. */
int keel__server_draining(const keel_server *s);

/* Add (or replace) a response header without copying: name and value must stay valid until
 * the request ends (string literals, or memory of the context itself).  Layers use these on
 * every request; values are trusted (no CR/LF check). */
keel_err keel__resp_header_static(keel_ctx *cx, const char *name, const char *value);
keel_err keel__resp_header_set_static(keel_ctx *cx, const char *name, const char *value);

/* 1 if s is 1..64 characters of [A-Za-z0-9._:-] (response.c). */
int keel__request_id_sane(const char *s);

/* Hot-path formatting without printf (middleware.c). */
void keel__format_seconds6(uint64_t ns, char out[32]);
void keel__format_status(int status, char out[8]);

#endif
