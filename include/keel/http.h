/*
 * keel/http.h - HTTP/1.1 server (libmicrohttpd), router, request context,
 * response envelopes and RFC 9457 problem details, and the built-in
 * middleware layers.
 *
 * Threading model: a small set of I/O threads (one event loop each, sized by
 * io_threads) parse requests and run "inline" routes directly; every other
 * route is handed to a pool of worker threads (workers) so that a handler may
 * block on a database or an outbound call without stalling other connections.
 * A keel_ctx belongs to exactly one thread at a time and is not thread-safe.
 * Routers and chains are built before keel_server_start() and are read-only
 * afterwards.
 *
 * Middleware is a keel_chain (keel/chain.h) whose context pointer is the
 * keel_ctx *: the same abstraction the resilience policies use.
 */
#ifndef KEEL_HTTP_H
#define KEEL_HTTP_H

#include <jansson.h>

#include <keel/chain.h>
#include <keel/common.h>
#include <keel/core.h>
#include <keel/metrics.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------- methods -- */

typedef enum keel_method {
    KEEL_METHOD_GET = 1 << 0,
    KEEL_METHOD_HEAD = 1 << 1,
    KEEL_METHOD_POST = 1 << 2,
    KEEL_METHOD_PUT = 1 << 3,
    KEEL_METHOD_PATCH = 1 << 4,
    KEEL_METHOD_DELETE = 1 << 5,
    KEEL_METHOD_OPTIONS = 1 << 6
} keel_method;
#define KEEL_METHOD_ANY 0x7f

/** "GET", "POST", ... for one method bit; "" otherwise. */
KEEL_API const char *keel_method_name(keel_method m);
/** Parse a method token (case-sensitive, as HTTP requires); 0 if unknown. */
KEEL_API keel_method keel_method_parse(keel_str s);
/** Reason phrase for a status code ("Not Found"); "Unknown" for unlisted codes. */
KEEL_API const char *keel_http_reason(int status);

/* --------------------------------------------------------------- context -- */

typedef struct keel_ctx keel_ctx;

/** A route handler.  Return KEEL_OK after setting a response (keel_resp_*); returning KEEL_OK
 *  without one is a bug and is answered with a logged 500.  Any other keel_err is logged and
 *  answered with a generic 500 problem (no internal detail reaches the client).
 *  Runs on a worker thread (may block) unless the route was added with KEEL_ROUTE_INLINE. */
typedef keel_err (*keel_handler_fn)(keel_ctx *cx, void *ud);

/** Request accessors.  Returned strings are borrowed and valid until the request ends. */
KEEL_API keel_method keel_req_method(const keel_ctx *cx);
KEEL_API const char *keel_req_method_name(const keel_ctx *cx);
/** Decoded path without the query string, e.g. "/api/v1/products/42". */
KEEL_API const char *keel_req_path(const keel_ctx *cx);
/** The matched route template ("/api/v1/products/{id}"), or a fixed label for unmatched
 *  requests ("<unmatched>") so that metrics never see raw paths. */
KEEL_API const char *keel_req_route(const keel_ctx *cx);
/** Request header (case-insensitive name) or NULL. */
KEEL_API const char *keel_req_header(const keel_ctx *cx, const char *name);
/** Query-string argument or NULL (a present argument without value gives ""). */
KEEL_API const char *keel_req_query(const keel_ctx *cx, const char *name);
/** Path parameter declared in the route template ("{id}") or NULL.  Each call copies the value
 *  into the request arena; keep the pointer rather than calling it in a loop. */
KEEL_API const char *keel_req_param(const keel_ctx *cx, const char *name);
/** Request body (empty slice when there is none). */
KEEL_API keel_str keel_req_body(const keel_ctx *cx);
/** Client address as text ("127.0.0.1"). */
KEEL_API const char *keel_req_client_ip(const keel_ctx *cx);
/** The request id (set by the request-id layer; "" before it runs). */
KEEL_API const char *keel_req_id(const keel_ctx *cx);
/** Monotonic start time of the request in nanoseconds. */
KEEL_API uint64_t keel_req_start_ns(const keel_ctx *cx);
/** 1 when this is a CORS preflight that the CORS layer is answering. */
KEEL_API int keel_req_is_preflight(const keel_ctx *cx);

/** Per-request arena: memory released when the response has been sent. */
KEEL_API keel_arena *keel_ctx_arena(keel_ctx *cx);
/** Per-request slots for layers and handlers (device info, authenticated user, ...).
 *  Keys are compared by pointer: use the address of a static object as the key. */
KEEL_API keel_err keel_ctx_set(keel_ctx *cx, const void *key, void *value);
KEEL_API void *keel_ctx_get(const keel_ctx *cx, const void *key);
/** Run fn(arg) when the request is finished with (after the response was sent, or the
 *  connection failed), on the connection's I/O thread; callbacks run in the reverse order of
 *  registration.  For request-scoped resources that outlive a layer's call (a value put in a
 *  slot by one layer and taken by another).
 *  @return KEEL_OK, KEEL_EINVAL (cx or fn NULL), KEEL_ENOMEM (the request arena is full: fn
 *  was not registered, the caller still owns arg). */
KEEL_API KEEL_NODISCARD keel_err keel_ctx_defer(keel_ctx *cx, void (*fn)(void *arg), void *arg);
/** Set the request id: 1..64 characters of [A-Za-z0-9._:-] (it is echoed in headers, logs and
 *  JSON unescaped).  Used by the request-id layer.
 *  @return KEEL_OK, or KEEL_EINVAL (id NULL or not of that form; the id is unchanged). */
KEEL_API keel_err keel_ctx_set_request_id(keel_ctx *cx, const char *id);

/* -------------------------------------------------------------- response -- */

/** Set the status code (the keel_resp_* body setters take their status explicitly). */
KEEL_API void keel_resp_status(keel_ctx *cx, int status);
/** Current status code (0 if no response was produced yet). */
KEEL_API int keel_resp_get_status(const keel_ctx *cx);
/** Add a response header (name and value copied; CR/LF in either gives KEEL_EINVAL).
 *  A second call with the same name adds a second header line. */
KEEL_API keel_err keel_resp_header(keel_ctx *cx, const char *name, const char *value);
/** Replace (or add) a response header. */
KEEL_API keel_err keel_resp_header_set(keel_ctx *cx, const char *name, const char *value);
/** Response header previously set, or NULL. */
KEEL_API const char *keel_resp_get_header(const keel_ctx *cx, const char *name);
/** The response body set so far (empty slice if none) and, if content_type is not NULL, its
 *  content type (NULL if none).  Borrowed from the request arena. */
KEEL_API keel_str keel_resp_get_body(const keel_ctx *cx, const char **content_type);
/** Set the status, the body and its content type (both copied into the request arena). */
KEEL_API keel_err keel_resp_body(keel_ctx *cx, int status, const char *content_type,
                                 const void *data, size_t len);
/** Success envelope {"data": data, "meta": {"timestamp", "success": true, "request_id"}}.
 *  Takes data (a jansson reference is stolen, also on error).  meta_ext members, if any,
 *  are merged into meta (borrowed). */
KEEL_API keel_err keel_resp_success(keel_ctx *cx, int status, json_t *data,
                                    const json_t *meta_ext);
/** Success envelope around data that is already serialised JSON (len bytes, not checked:
 *  for constant bodies on hot routes).  @return KEEL_OK, KEEL_EINVAL (empty), KEEL_ENOMEM. */
KEEL_API keel_err keel_resp_success_raw(keel_ctx *cx, int status, const char *json, size_t len);
/** Send a JSON value as the body without the envelope (stolen). */
KEEL_API keel_err keel_resp_json(keel_ctx *cx, int status, json_t *value);
/** RFC 9457 problem (application/problem+json):
 *  {"type","title","status","detail","instance","errors","meta":{...,"success":false}}.
 *  title NULL = reason phrase; detail may be NULL; errors (stolen) may be NULL (then []).
 *  Never put secrets or card data in detail. */
KEEL_API keel_err keel_resp_problem(keel_ctx *cx, int status, const char *title,
                                    const char *detail, json_t *errors);
/** Same with an explicit problem type URI. */
KEEL_API keel_err keel_resp_problem_typed(keel_ctx *cx, int status, const char *type,
                                          const char *title, const char *detail,
                                          json_t *errors);

/* ---------------------------------------------------------- JSON bodies -- */

struct keel_schema; /* keel/validate.h */
/** Parse the request body as a strict JSON object and validate it against schema (NULL = no
 *  schema).  On success *out is a new reference (caller json_decref()s it) and KEEL_OK is
 *  returned.  On bad input the 4xx problem response is already set (415 wrong content type,
 *  400 malformed JSON, 422 with every field error) and KEEL_EINVAL is returned: the handler
 *  should just return KEEL_OK. */
KEEL_API keel_err keel_req_json(keel_ctx *cx, const struct keel_schema *schema, json_t **out);

/* ---------------------------------------------------------------- router -- */

typedef struct keel_router keel_router;

/** Route flags. */
#define KEEL_ROUTE_INLINE 1u /* run on the I/O thread: handler never blocks (health, metrics) */

KEEL_API KEEL_NODISCARD keel_err keel_router_create(keel_router **out);
KEEL_API void keel_router_destroy(keel_router *r);
/** Add a route.  methods: OR of keel_method bits.  pattern: "/a/{id}/b" (segments are
 *  literals or {name} parameters, names [A-Za-z_][A-Za-z0-9_]*, at most 8 parameters).
 *  Literal segments win over parameters.  Adding GET also answers HEAD.
 *  @return KEEL_OK, KEEL_EINVAL (bad pattern, diag says why), KEEL_EEXIST (same method and
 *  shape already routed), KEEL_ENOMEM. */
KEEL_API KEEL_NODISCARD keel_err keel_router_add(keel_router *r, unsigned methods,
                                                 const char *pattern, keel_handler_fn fn,
                                                 void *ud, unsigned flags, keel_diag *diag);
/** Header versioning: requests under base (e.g. "/api") whose next segment is not a
 *  version ("v1", "v2", ...) are routed to base + "/v" + X-API-Version ("2" or "v2"), or to
 *  default_version when the header is absent.  An unknown version gives 404. */
KEEL_API KEEL_NODISCARD keel_err keel_router_version(keel_router *r, const char *base,
                                                     const char *default_version);

/** Result of a lookup (for tests and the fuzz target). */
typedef struct keel_route_match {
    int found;         /* 1: path and method matched */
    unsigned allowed;  /* methods routed on this path (0: no such path) */
    const char *route; /* template */
    keel_handler_fn fn;
    void *ud;
    unsigned flags;
    size_t nparams;
    keel_str names[8];
    keel_str values[8];
} keel_route_match;
/** Match path (no query string) for method.  Never allocates; params point into path. */
KEEL_API void keel_router_match(const keel_router *r, keel_method method, keel_str path,
                                keel_route_match *m);

/* ---------------------------------------------------------------- server -- */

typedef struct keel_server keel_server;

typedef struct keel_server_config {
    size_t size;
    const char *host;              /* "127.0.0.1" */
    uint16_t port;                 /* 0 = ephemeral (see keel_server_port) */
    unsigned io_threads;           /* event-loop threads (default: CPUs this process may use) */
    unsigned workers;              /* blocking handler pool (HTTP_WORKERS) */
    size_t max_body;               /* bytes; larger bodies get 413 (default 1 MiB) */
    unsigned max_connections;      /* total (default 1024) */
    unsigned max_connections_per_ip; /* 0 = unlimited */
    size_t connection_memory;      /* per-connection buffer incl. request headers (16 KiB) */
    unsigned connection_timeout_s; /* idle/slow client timeout (30) */
    size_t arena_max;              /* per-request arena cap (8 MiB) */
    const char *environment;       /* shown by GET / */
    const char *name;              /* project name shown by GET / */
    const char *version;           /* project version shown by GET / */
    /* Optional: called on the event loop for a routed request that would go to the worker
     * pool; returning 1 runs it right there instead (its data is all in memory, so nothing
     * blocks).  Must be fast and must not block.  ud is borrowed. */
    int (*inline_check)(keel_ctx *cx, void *ud);
    void *inline_ud;
} keel_server_config;

KEEL_API void keel_server_config_default(keel_server_config *cfg);

/** Create a server.  On KEEL_OK it takes the chain (may be NULL; on failure the caller still
 *  owns it) and borrows the router and metrics (may be NULL), which must outlive the server.  The built-in routes GET /, /health/live,
 *  /health/ready, /metrics and /metrics/{prefix} are added to the router here. */
KEEL_API KEEL_NODISCARD keel_err keel_server_create(keel_server **out,
                                                    const keel_server_config *cfg,
                                                    keel_router *router, keel_chain *chain,
                                                    keel_metrics *metrics, keel_diag *diag);
/** Bind and start serving. */
KEEL_API KEEL_NODISCARD keel_err keel_server_start(keel_server *s, keel_diag *diag);
/** Port actually bound (useful with port 0). */
KEEL_API uint16_t keel_server_port(const keel_server *s);
/** Mark startup complete: /health/ready answers 200 when no probe fails. */
KEEL_API void keel_server_set_ready(keel_server *s, int ready);
/** Readiness probe: returns KEEL_OK when the dependency is healthy; detail names the problem.
 *  Probes run on a worker thread at each GET /health/ready, so they may block briefly.  The
 *  name is copied. */
typedef keel_err (*keel_probe_fn)(void *ud, char *detail, size_t detail_len);
KEEL_API KEEL_NODISCARD keel_err keel_server_add_probe(keel_server *s, const char *name,
                                                       keel_probe_fn fn, void *ud);
/** Graceful drain: readiness goes 503, the listening socket closes, in-flight requests get up
 *  to timeout_ms to finish.  Returns KEEL_OK when all finished, KEEL_ETIMEOUT otherwise. */
KEEL_API keel_err keel_server_drain(keel_server *s, uint64_t timeout_ms);
/** Requests currently being processed. */
KEEL_API unsigned keel_server_inflight(const keel_server *s);
/** Stop (closing every connection) and free.  NULL is a no-op. */
KEEL_API void keel_server_destroy(keel_server *s);

/* ------------------------------------------------------------ middleware -- */

typedef struct keel_cors_config {
    size_t size;
    const char *const *origins; /* NULL-terminated; {"*"} allows any */
    const char *const *methods; /* NULL-terminated; {"*"} allows any */
    const char *const *headers; /* NULL-terminated; {"*"} allows any */
    const char *const *expose_headers; /* NULL-terminated or NULL */
    int allow_credentials;
    unsigned max_age_s;         /* Access-Control-Max-Age on preflight (600) */
} keel_cors_config;
KEEL_API void keel_cors_config_default(keel_cors_config *cfg);

/** CORS (config copied).  Preflight requests (OPTIONS with Origin and
 *  Access-Control-Request-Method) are answered 204 (or 400 for a disallowed origin, method
 *  or header) after the inner layers have run, so they carry the same headers as others. */
KEEL_API KEEL_NODISCARD keel_err keel_mw_cors(const keel_cors_config *cfg, keel_layer **out);
/** app_requests_total, app_request_latency_seconds, app_errors_total, labelled by route
 *  template, registered on m. */
KEEL_API KEEL_NODISCARD keel_err keel_mw_metrics(keel_metrics *m, keel_layer **out);
/** Accept a sane incoming X-Request-ID (1..64 chars of [A-Za-z0-9._:-]) or generate a UUIDv4;
 *  echo it in the response; bind it to the log context for the request. */
KEEL_API KEEL_NODISCARD keel_err keel_mw_request_id(keel_layer **out);
/** One log record per request (logger "app.http.access"): method, path, status,
 *  duration_ms, plus X-Process-Time on the response. */
KEEL_API KEEL_NODISCARD keel_err keel_mw_access_log(keel_layer **out);
/** Parse User-Agent and Client Hints into a keel_device_info stored in the context
 *  (keel_ctx_device()). */
KEEL_API KEEL_NODISCARD keel_err keel_mw_device_info(keel_layer **out);
struct keel_device_info;
/** Device info of the request (NULL if the device layer did not run). Borrowed. */
KEEL_API const struct keel_device_info *keel_ctx_device(const keel_ctx *cx);
/** Strict-Transport-Security, X-Content-Type-Options: nosniff, X-Frame-Options: DENY,
 *  Referrer-Policy: strict-origin-when-cross-origin on every response (a value the handler set
 *  itself is kept). */
KEEL_API KEEL_NODISCARD keel_err keel_mw_security_headers(keel_layer **out);

/** Layers of the seed 002 chain, in order; rate_limit and auth are the slots later modules
 *  fill (NULL = empty slot). */
typedef struct keel_http_chain_config {
    size_t size;
    const keel_cors_config *cors; /* NULL = no CORS layer */
    keel_metrics *metrics;        /* NULL = no metrics layer */
    int access_log;
    keel_layer *rate_limit;       /* taken */
    keel_layer *auth;             /* taken */
} keel_http_chain_config;
KEEL_API void keel_http_chain_config_default(keel_http_chain_config *cfg);
/** Build the standard chain: CORS, metrics, request id, access log, device info, security
 *  headers, rate limit, auth.  The rate_limit and auth layers are taken in every case (disposed
 *  if the build fails).  Ownership: caller destroys the chain (or gives it to the server). */
KEEL_API KEEL_NODISCARD keel_err keel_http_chain_build(const keel_http_chain_config *cfg,
                                                       keel_chain **out);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_HTTP_H */
