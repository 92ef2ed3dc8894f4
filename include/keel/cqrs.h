/*
 * keel/cqrs.h - command and query buses (seed 001 section 6, CQRS).
 *
 * Module contract.  A keel_cqrs holds two registries with separate namespaces: commands
 * (change state, return only a keel_err) and queries (read state, return a JSON result).
 * Each type name ("user.create", "user.get") has exactly one handler; registering a name
 * twice is KEEL_EEXIST.  Dispatch looks the handler up by name; an unknown name is
 * KEEL_ENOTFOUND with the name in the diag.  Messages and results are jansson values.
 *
 * Middleware.  An optional keel_chain (keel/chain.h) wraps every dispatch: each layer sees a
 * keel_cqrs_ctx * as its context (kind, name, payload, and for queries the result slot) and
 * may log, time, authorise or refuse before calling keel_chain_next().  The handler is the
 * chain's terminal.  Unknown names are refused before the chain runs.
 *
 * Thread-safety: registration and dispatch are safe from any thread at any time (a
 * read-write lock guards the registries; the lock is not held while a handler runs).
 * Handlers are never removed, so a handler found by a dispatch stays valid.
 */
#ifndef KEEL_CQRS_H
#define KEEL_CQRS_H

#include <jansson.h>
#include <keel/chain.h>
#include <keel/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Longest command/query type name, in bytes. */
#define KEEL_CQRS_NAME_MAX 128

typedef struct keel_cqrs keel_cqrs;

/** Handle a command.  cmd is borrowed (never NULL: JSON null when dispatched with NULL).
 *  d (may be NULL) takes a human message on failure. */
typedef keel_err (*keel_command_fn)(const json_t *cmd, void *ud, keel_diag *d);
/** Handle a query: on KEEL_OK set *result to a new reference (NULL is read as JSON null).
 *  On error *result should stay NULL (a value left there is released). */
typedef keel_err (*keel_query_fn)(const json_t *query, json_t **result, void *ud, keel_diag *d);

typedef enum keel_cqrs_kind { KEEL_CQRS_COMMAND = 1, KEEL_CQRS_QUERY = 2 } keel_cqrs_kind;

/** What a chain layer sees as its context pointer during a dispatch. */
typedef struct keel_cqrs_ctx {
    size_t size;
    keel_cqrs_kind kind;
    const char *name;      /* type name (borrowed) */
    const json_t *payload; /* command or query (borrowed) */
    json_t *result;        /* queries: set by the handler when the terminal returns */
    keel_diag *diag;       /* the dispatcher's diag (may be NULL) */
    void *user;            /* the dispatcher's user pointer */
} keel_cqrs_ctx;

/** Configuration.  Fill with keel_cqrs_config_default(), then override fields. */
typedef struct keel_cqrs_config {
    size_t size;            /* sizeof(keel_cqrs_config) */
    size_t max_handlers;    /* per registry, 1..65536 (default 256) */
    const keel_chain *chain; /* optional middleware around every dispatch; borrowed */
} keel_cqrs_config;

/** Set cfg to the defaults.  NULL is ignored.  Thread-safety: any thread.  Errors: none. */
KEEL_API void keel_cqrs_config_default(keel_cqrs_config *cfg);

/** Create the buses.  cfg NULL = defaults.
 *  @return KEEL_OK, KEEL_EINVAL (a bad field, named in d: "max_handlers", "size"),
 *  KEEL_ENOMEM.  Thread-safety: any thread.  Ownership: caller destroys with
 *  keel_cqrs_destroy(); cfg copied, cfg->chain borrowed (must outlive the buses). */
KEEL_API KEEL_NODISCARD keel_err keel_cqrs_create(keel_cqrs **out, const keel_cqrs_config *cfg,
                                                  keel_diag *d);

/** Register the handler of a command type.
 *  @param name 1..KEEL_CQRS_NAME_MAX printable ASCII bytes without spaces; copied.
 *  @return KEEL_OK, KEEL_EINVAL (NULL fn, bad name; d says which), KEEL_EEXIST (name already
 *  registered as a command), KEEL_EFULL (max_handlers), KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: ud borrowed for the buses' life. */
KEEL_API KEEL_NODISCARD keel_err keel_cqrs_register_command(keel_cqrs *c, const char *name,
                                                            keel_command_fn fn, void *ud,
                                                            keel_diag *d);

/** Register the handler of a query type.  Same rules as keel_cqrs_register_command(); the
 *  query namespace is separate from the command one. */
KEEL_API KEEL_NODISCARD keel_err keel_cqrs_register_query(keel_cqrs *c, const char *name,
                                                          keel_query_fn fn, void *ud,
                                                          keel_diag *d);

/** Dispatch a command to its handler (through the chain, if any).
 *  @param cmd borrowed; NULL is passed as JSON null.
 *  @param user handed to chain layers as ctx->user.
 *  @return the handler's (or a refusing layer's) result; KEEL_EINVAL (NULL c or name);
 *  KEEL_ENOTFOUND (no command of that name; d names it).
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_cqrs_execute(keel_cqrs *c, const char *name,
                                                   const json_t *cmd, void *user, keel_diag *d);

/** Dispatch a query and return its result.
 *  @param result receives a new reference on KEEL_OK (JSON null if the handler gave none);
 *  NULL on error.  Caller json_decref()s it.
 *  @return as keel_cqrs_execute(), plus KEEL_EINVAL for a NULL result pointer.
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_cqrs_query(keel_cqrs *c, const char *name,
                                                 const json_t *query, json_t **result,
                                                 void *user, keel_diag *d);

/** 1 if a handler of that kind and name is registered.  Thread-safety: any thread. */
KEEL_API int keel_cqrs_has(keel_cqrs *c, keel_cqrs_kind kind, const char *name);

/** Free the buses.  NULL is a no-op.  Thread-safety: no dispatch may be running. */
KEEL_API void keel_cqrs_destroy(keel_cqrs *c);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_CQRS_H */
