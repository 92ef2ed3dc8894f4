/* ctx.h - the request context shared by server.c, response.c and the layers. */
#ifndef KEEL_HTTP_CTX_H
#define KEEL_HTTP_CTX_H

#include "http_int.h"

#include <microhttpd.h>

typedef struct resp_header {
    struct resp_header *next;
    const char *name;
    const char *value;
} resp_header;

typedef struct ctx_defer {
    struct ctx_defer *next;
    void (*fn)(void *);
    void *arg;
} ctx_defer;

typedef enum ctx_state {
    CTX_READING = 0, /* headers seen, body arriving */
    CTX_QUEUED,      /* handed to a worker */
    CTX_DONE         /* response ready to queue */
} ctx_state;

struct keel_ctx {
    struct MHD_Connection *conn;
    keel_server *srv;
    keel_arena *arena;
    ctx_state state;
    uint64_t start_ns;

    /* request */
    keel_method method;
    const char *method_name;
    const char *path;
    keel_route_match match;
    keel_buf body;
    int early_status; /* 413/400/... decided before the chain runs */
    const char *early_detail;
    size_t discarded; /* body bytes read and dropped after a 413 */
    int preflight;
    keel_err handler_err; /* what the handler returned (for app_errors_total) */
    char request_id[KEEL__REQUEST_ID_MAX + 1];
    char client_ip[48];

    /* response */
    int status;
    const char *content_type;
    const char *body_ptr;
    size_t body_len;
    resp_header *headers;

    /* layer/handler slots */
    const void *slot_keys[KEEL__CTX_SLOTS];
    void *slot_vals[KEEL__CTX_SLOTS];
    ctx_defer *defers; /* newest first */

    struct keel_ctx *next_job; /* worker queue link */
};

/* Run the chain and the routed handler for cx (on whatever thread calls it). */
void keel__ctx_process(keel_ctx *cx);
/* Run and forget cx's deferred callbacks (newest first). */
void keel__ctx_run_defers(keel_ctx *cx);

#endif
