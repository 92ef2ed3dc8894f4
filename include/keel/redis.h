/*
 * keel/redis.h - Redis client (hiredis): the shared fast state that rate limits, dedup sets
 * and caches use when more than one keeld runs.
 *
 * Model.  A keel_redis is a pool of blocking connections to one server, opened from a URL
 * (REDIS_URL, "redis://[[user]:password@]host[:port][/db]").  Each command checks a
 * connection out, runs, and gives it back; callers never see connections.  Commands are
 * passed as argument vectors with explicit lengths (binary-safe, never a format string), so
 * values cannot change the shape of a command.
 *
 * Reconnect.  A connection whose socket failed is closed and reopened on its next use.  When
 * a command fails with a connection error on a pooled connection that had been sitting idle
 * (for example Redis restarted between two requests), the command is retried once on a
 * fresh connection, so a restart costs no error.  A timeout is never retried (the server may
 * have run the command).  A server that stays down gives KEEL_EIO.
 *
 * Scripts.  keel_redis_script_create() keeps a Lua body and its SHA1; keel_redis_eval() runs
 * it with EVALSHA and, when the server answers NOSCRIPT (restart, SCRIPT FLUSH), loads it
 * with SCRIPT LOAD and retries once.
 *
 * Thread-safety.  Every function taking a keel_redis or keel_redis_script is thread-safe.  A
 * reply belongs to the caller that received it.  The process should ignore SIGPIPE (keeld
 * does): hiredis writes with write(2), and a peer that vanished mid-write raises it.
 *
 * Errors.  KEEL_EINVAL (bad argument or URL, or a server error reply: its text, stripped of
 * argument values, is in the diag), KEEL_EUNSUPPORTED (rediss:// - this hiredis has no TLS),
 * KEEL_ETIMEOUT (connect, command or pool checkout timed out), KEEL_EIO (server unreachable,
 * connection lost, protocol error), KEEL_ENOMEM.  Passwords never appear in a diag.
 *
 * Metrics.  With cfg->metrics set: histogram redis_command_duration_seconds{command}, where
 * command is the upper-cased command name; the first 16 distinct names get their own series
 * and any later one is counted as "OTHER".
 */
#ifndef KEEL_REDIS_H
#define KEEL_REDIS_H

#include <keel/common.h>
#include <keel/core.h>
#include <keel/metrics.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_redis keel_redis;               /* connection pool */
typedef struct keel_redis_reply keel_redis_reply;   /* one reply (or an element of one) */
typedef struct keel_redis_script keel_redis_script; /* a registered Lua script */

/** Most distinct command names given their own metrics series (later ones: "OTHER"). */
#define KEEL_REDIS_METRIC_COMMANDS 16

typedef struct keel_redis_config {
    size_t size;                  /* sizeof(keel_redis_config), set by the defaults function */
    const char *url;              /* "redis://[[user]:password@]host[:port][/db]" (port 6379) */
    unsigned pool_size;           /* connections kept (8) */
    uint32_t connect_timeout_ms;  /* TCP connect (1000) */
    uint32_t command_timeout_ms;  /* one command's send + reply (1000) */
    uint32_t checkout_timeout_ms; /* wait for a free connection (1000) */
    keel_metrics *metrics;        /* redis_command_duration_seconds{command}; NULL = none */
} keel_redis_config;

/** Reply types.  KEEL_REDIS_ERROR only occurs as an element of an array (EXEC, scripts);
 *  a top-level error reply is returned as KEEL_EINVAL instead. */
typedef enum keel_redis_type {
    KEEL_REDIS_NIL = 0,
    KEEL_REDIS_INT = 1,
    KEEL_REDIS_STR = 2,
    KEEL_REDIS_STATUS = 3,
    KEEL_REDIS_ARRAY = 4,
    KEEL_REDIS_ERROR = 5
} keel_redis_type;

/** Fill cfg with the defaults above (url NULL).
 *  Thread-safety: any thread.  Ownership: writes *cfg only.  Errors: none. */
KEEL_API void keel_redis_config_default(keel_redis_config *cfg);

/** Parse cfg->url and open the pool, connecting one connection at once so that a bad URL,
 *  bad password or unreachable server fails at startup.  The URL is copied.
 *  @return KEEL_OK; KEEL_EINVAL (NULL argument, malformed URL, AUTH or SELECT refused);
 *  KEEL_EUNSUPPORTED (rediss:// or another scheme); KEEL_EIO (cannot connect);
 *  KEEL_ETIMEOUT (connect timed out); KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: caller closes *out with keel_redis_close(). */
KEEL_API KEEL_NODISCARD keel_err keel_redis_open(keel_redis **out, const keel_redis_config *cfg,
                                                 keel_diag *diag);

/** Close every connection and free the pool.  No command may be running and every script
 *  created on it must have been destroyed.  NULL is a no-op.
 *  Thread-safety: not concurrently with any other use of r.  Ownership: consumes r. */
KEEL_API void keel_redis_close(keel_redis *r);

/** Readiness probe (matches keel_probe_fn): PING on a pooled connection.  detail (may be
 *  NULL) receives "ok" or the reason.
 *  @return KEEL_OK or the error of keel_redis_cmd().
 *  Thread-safety: any thread.  Ownership: borrows redis. */
KEEL_API keel_err keel_redis_ping(void *redis, char *detail, size_t detail_len);

/** Run one command given as argc arguments argv[i] of argvlen[i] bytes each (argvlen NULL:
 *  every argument is NUL-terminated).  On KEEL_OK *out holds the reply.
 *  @return KEEL_OK; KEEL_EINVAL (bad arguments, or the server's error reply with its text in
 *  diag); KEEL_ETIMEOUT; KEEL_EIO; KEEL_ENOMEM.  On error *out is NULL.
 *  Thread-safety: any thread.  Ownership: caller frees *out with keel_redis_reply_free(). */
KEEL_API KEEL_NODISCARD keel_err keel_redis_cmd(keel_redis *r, keel_redis_reply **out,
                                                size_t argc, const char *const *argv,
                                                const size_t *argvlen, keel_diag *diag);

/* ---------------------------------------------------------------- replies -- */

/** Free a reply returned by keel_redis_cmd() or keel_redis_eval() (not an element of one).
 *  NULL is a no-op.  Thread-safety: the owner's thread.  Ownership: consumes reply. */
KEEL_API void keel_redis_reply_free(keel_redis_reply *reply);
/** Type of a reply.  Errors: none (NULL reads as KEEL_REDIS_NIL).  Ownership: borrows. */
KEEL_API keel_redis_type keel_redis_reply_type(const keel_redis_reply *reply);
/** Integer value (KEEL_REDIS_INT), 0 for other types.  Ownership: borrows. */
KEEL_API int64_t keel_redis_reply_int(const keel_redis_reply *reply);
/** Bytes of a KEEL_REDIS_STR, KEEL_REDIS_STATUS or KEEL_REDIS_ERROR reply (NUL-terminated,
 *  may contain NULs); NULL and *len 0 for other types.  len may be NULL.
 *  Ownership: borrowed, valid until the reply is freed. */
KEEL_API const char *keel_redis_reply_str(const keel_redis_reply *reply, size_t *len);
/** Number of elements of a KEEL_REDIS_ARRAY, 0 for other types.  Ownership: borrows. */
KEEL_API size_t keel_redis_reply_count(const keel_redis_reply *reply);
/** Element i of an array (NULL past the end or for other types).
 *  Ownership: borrowed, valid until the top-level reply is freed; never free it. */
KEEL_API const keel_redis_reply *keel_redis_reply_at(const keel_redis_reply *reply, size_t i);

/* ---------------------------------------------------------------- scripts -- */

/** Register a Lua script: copies lua and computes its SHA1 locally.  Nothing is sent.
 *  @return KEEL_OK, KEEL_EINVAL (NULL argument), KEEL_ECRYPTO, KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: caller destroys *out with
 *  keel_redis_script_destroy() before closing r; r is borrowed. */
KEEL_API KEEL_NODISCARD keel_err keel_redis_script_create(keel_redis *r, const char *lua,
                                                          keel_redis_script **out);
/** Free a script.  NULL is a no-op.  Ownership: consumes s. */
KEEL_API void keel_redis_script_destroy(keel_redis_script *s);
/** Hex SHA1 of the script body (40 characters).  Ownership: borrowed, lives as long as s. */
KEEL_API const char *keel_redis_script_sha(const keel_redis_script *s);

/** Run the script with EVALSHA on nkeys keys and nargs arguments (NUL-terminated strings);
 *  on NOSCRIPT, SCRIPT LOAD it and retry once.
 *  @return as keel_redis_cmd() (a Lua error is KEEL_EINVAL with its text in diag).
 *  Thread-safety: any thread.  Ownership: caller frees *out with keel_redis_reply_free(). */
KEEL_API KEEL_NODISCARD keel_err keel_redis_eval(keel_redis_script *s, keel_redis_reply **out,
                                                 size_t nkeys, const char *const *keys,
                                                 size_t nargs, const char *const *args,
                                                 keel_diag *diag);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_REDIS_H */
