/*
 * keel/config.h - settings from the environment and a `.env` file: a .env
 * parser, an immutable view of the merged environment with typed getters,
 * and the validated keel_settings every keel process reads at startup.
 *
 * Module contract: keel_dotenv_parse() is a pure function (any thread).  A
 * keel_env and a keel_settings are immutable once created: any number of
 * threads may read them at once; destroy them once, after every reader is
 * done.  keel_env_load() reads the process environment (`environ`), so it must
 * not race with setenv()/putenv() in other threads: call it at startup.
 *
 * Precedence: a real environment variable always wins over the same name in
 * the .env file; inside a .env file the last assignment of a name wins.
 * Names are case-sensitive.
 *
 * Secrets: values of the signing-key and webhook-secret variables are held in
 * keel_secret objects and never appear in error messages.  A keel_env wipes
 * every value it holds when destroyed.
 */
#ifndef KEEL_CONFIG_H
#define KEEL_CONFIG_H

#include <stdbool.h>

#include <keel/common.h>
#include <keel/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------- dotenv -- */

/** Largest .env input accepted, in bytes (1 MiB). */
#define KEEL_DOTENV_MAX_BYTES (1024u * 1024u)

/** Called once per assignment, in file order.  key is klen bytes of
 *  [A-Za-z_][A-Za-z0-9_]*; value is vlen bytes, unescaped, without NUL bytes.
 *  Both are NUL-terminated and valid only during the call.  Return KEEL_OK to
 *  continue; any other value stops the parse and is returned by
 *  keel_dotenv_parse(). */
typedef keel_err (*keel_dotenv_cb)(const char *key, size_t klen, const char *value, size_t vlen,
                                   void *ud);

/** Parse a .env file held in memory.
 *
 *  Syntax (the common subset of python-dotenv and docker compose): one
 *  `KEY=VALUE` per line; blank lines and lines starting with `#` are ignored;
 *  an optional `export ` prefix; KEY is [A-Za-z_][A-Za-z0-9_]*; blanks around
 *  `=` are allowed.  Unquoted values are trimmed and a `#` preceded by a blank
 *  starts a comment (`A=x#y` is "x#y", `A=x #y` is "x").  'single-quoted'
 *  values are literal.  "double-quoted" values understand \n \t \r \\ \" (any
 *  other backslash is kept as is).  Quoted values may span lines; after the
 *  closing quote only blanks and a comment may follow.  LF and CRLF line ends
 *  are accepted (CRLF inside a quoted value becomes LF); a UTF-8 byte order
 *  mark is skipped.
 *
 *  The whole input is validated before the first callback: on any parse error
 *  cb has not been called at all.
 *
 *  @param text the bytes (may be NULL when len is 0); need not be NUL-terminated.
 *  @param cb   may be NULL to only validate.
 *  @param diag optional; on error diag->offset is the 1-based line number of
 *              the first error (0 for size errors) and diag->msg reads like
 *              "line 3: missing '=' after key 'FOO'".  Values are never quoted
 *              in messages.
 *  @return KEEL_OK; KEEL_EPARSE (syntax error, NUL byte, unterminated quote);
 *          KEEL_ETOOBIG (len > KEEL_DOTENV_MAX_BYTES); KEEL_EINVAL (text NULL
 *          with len > 0); KEEL_ENOMEM; or the first non-OK value returned by cb.
 *  Thread-safety: any thread. Ownership: borrows everything; allocates one
 *  scratch buffer that is wiped before it is freed. */
KEEL_API KEEL_NODISCARD keel_err keel_dotenv_parse(const char *text, size_t len, keel_dotenv_cb cb,
                                                   void *ud, keel_diag *diag);

/* ------------------------------------------------------------------ env -- */

/** An immutable name -> value map: the process environment merged over a .env file. */
typedef struct keel_env keel_env;

/** Largest number of items keel_env_get_list() returns. */
#define KEEL_ENV_LIST_MAX 4096

/** Build the environment view of this process: the .env file at dotenv_path
 *  (NULL means "./.env"; a missing file is fine) overlaid by `environ`.
 *  @param diag optional; for a parse error offset is the line number and msg
 *              starts with the path ("./.env: line 3: ...").
 *  @return KEEL_OK; KEEL_EPARSE, KEEL_ETOOBIG (see keel_dotenv_parse());
 *          KEEL_EIO (the file exists but cannot be read); KEEL_ENOMEM.
 *  Thread-safety: reads environ; do not race with setenv(). Ownership: *out
 *  belongs to the caller, destroy with keel_env_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_env_load(keel_env **out, const char *dotenv_path,
                                               keel_diag *diag);

/** Like keel_env_load() but from explicit inputs (for tests and embedding).
 *  @param vars NULL-terminated array of "NAME=VALUE" strings standing in for
 *              environ (entries without '=' are skipped; for a repeated name the
 *              first one wins, like getenv()); may be NULL.
 *  @param dotenv_text .env content (len bytes), may be NULL.
 *  @return as keel_env_load(), without KEEL_EIO.
 *  Thread-safety: any thread. Ownership: copies everything it needs. */
KEEL_API KEEL_NODISCARD keel_err keel_env_from(keel_env **out, const char *const *vars,
                                               const char *dotenv_text, size_t len,
                                               keel_diag *diag);

/** Raw value of name, or NULL when unset (a variable set to "" returns "").
 *  Thread-safety: any thread. Ownership: borrowed, valid until keel_env_destroy().
 *  Errors: none (NULL e or name give NULL). */
KEEL_API const char *keel_env_get(const keel_env *e, const char *name);

/** Number of distinct variables in e (0 for NULL). */
KEEL_API size_t keel_env_count(const keel_env *e);

/** Wipe every value and free. NULL is a no-op.
 *  Thread-safety: not while other threads read e. */
KEEL_API void keel_env_destroy(keel_env *e);

/*
 * Typed getters.  Shared rules: a variable that is unset, or set to only
 * blanks, yields the default and KEEL_OK.  Values are trimmed of ASCII
 * blanks before parsing.  On error *out is left unchanged and diag->msg is a
 * complete sentence naming the variable, the rule and the offending value,
 * e.g. "PORT: must be an integer in 1..65535, got 'abc'" (values longer than
 * 48 bytes are cut, control bytes shown as '?').  Do not use the getters that
 * echo values (int, bool, choice) on secrets.  All of them: any thread;
 * borrow e and name.
 */

/** Decimal integer (optional sign, no hex, no suffix) in min..max.
 *  @return KEEL_OK; KEEL_EINVAL (not an integer, or NULL name/out, or min > max);
 *          KEEL_ERANGE (outside min..max). */
KEEL_API KEEL_NODISCARD keel_err keel_env_get_int(const keel_env *e, const char *name,
                                                  long long def, long long min, long long max,
                                                  long long *out, keel_diag *diag);

/** Boolean: true/false, 1/0, yes/no, on/off, ignoring ASCII case.
 *  @return KEEL_OK or KEEL_EINVAL. */
KEEL_API KEEL_NODISCARD keel_err keel_env_get_bool(const keel_env *e, const char *name, bool def,
                                                   bool *out, keel_diag *diag);

/** String value, untrimmed; def (which may be NULL) when unset.  Unlike the
 *  other getters, a variable set to "" yields "".
 *  @return KEEL_OK, or KEEL_EINVAL for NULL name/out.
 *  Ownership: *out is borrowed from e (or is def). */
KEEL_API KEEL_NODISCARD keel_err keel_env_get_str(const keel_env *e, const char *name,
                                                  const char *def, const char **out);

/** One of n choices, matched ignoring ASCII case; *out receives its index.
 *  def_index is used when unset.  The message lists the choices.
 *  @return KEEL_OK or KEEL_EINVAL. */
KEEL_API KEEL_NODISCARD keel_err keel_env_get_choice(const keel_env *e, const char *name,
                                                     const char *const *choices, size_t n,
                                                     size_t def_index, size_t *out,
                                                     keel_diag *diag);

/** Comma-separated list; items are trimmed and empty items skipped.  def (a
 *  comma-separated string, may be NULL for "none") is used when unset.
 *  @param out receives a NULL-terminated array of *count strings held in a
 *             single allocation (never NULL on KEEL_OK, even when empty).
 *  @return KEEL_OK; KEEL_ETOOBIG (more than KEEL_ENV_LIST_MAX items);
 *          KEEL_EINVAL (NULL name/out/count); KEEL_ENOMEM.
 *  Ownership: caller frees *out with a single keel_free(). */
KEEL_API KEEL_NODISCARD keel_err keel_env_get_list(const keel_env *e, const char *name,
                                                   const char *def, char ***out, size_t *count,
                                                   keel_diag *diag);

/* ------------------------------------------------------------- settings -- */

typedef enum keel_environment {
    KEEL_ENVIRONMENT_DEVELOPMENT = 0,
    KEEL_ENVIRONMENT_PRODUCTION = 1,
    KEEL_ENVIRONMENT_TEST = 2
} keel_environment;

/** Minimum signing-key length, in bytes, for HS* algorithms in production. */
#define KEEL_SETTINGS_MIN_HMAC_KEY 32

/** The validated settings of a keel process.  Transparent and read-only: every
 *  pointer is owned by the struct and valid until keel_settings_destroy().
 *  In keel_settings_load() values are trimmed of ASCII blanks and a variable set to
 *  only blanks counts as unset.
 *  Variable, default and accepted range are given per field. */
typedef struct keel_settings {
    size_t size; /* sizeof(keel_settings) of the library that filled it */

    /* ENVIRONMENT: development | production | test (any case); development. */
    keel_environment environment;
    const char *environment_name; /* "development", "production" or "test" */
    /* PROJECT_NAME ("keel"), PROJECT_VERSION (KEEL_VERSION_STRING). */
    const char *project_name;
    const char *project_version;

    /* HOST ("127.0.0.1"; no blanks or control bytes, <= 255 bytes), PORT (8080, 1..65535). */
    const char *host;
    uint16_t port;

    /* LOG_LEVEL: DEBUG|INFO|WARNING (or WARN)|ERROR|CRITICAL, any case; INFO.
     * Stored as the Python logging number: 10, 20, 30, 40, 50. */
    int log_level;
    const char *log_dir;     /* LOG_DIR ("logs") */
    uint32_t log_queue_size; /* LOG_QUEUE_SIZE (4096, 16..1048576) */
    bool log_overflow_block; /* LOG_OVERFLOW: drop (false, default) | block (true) */

    /* DATABASE_URL ("sqlite:./var/keel.db"): "sqlite:", "postgres://" or "postgresql://"
     * followed by at least one byte. */
    const char *database_url;
    /* REDIS_URL: NULL when unset; else "redis://" or "rediss://" + host. */
    const char *redis_url;

    /* ACCESS_TOKEN_SIGNING_KEY, REFRESH_TOKEN_SIGNING_KEY.  Never NULL after a
     * successful load: in development and test a missing key is replaced by 32
     * random bytes (per process) and signing_keys_generated is set so the app
     * can log a warning.  In production a missing key, a well-known placeholder
     * ("changeme", "secret", "CHANGE..." ...), a key shorter than
     * KEEL_SETTINGS_MIN_HMAC_KEY bytes with an HS* algorithm, or two equal keys
     * are startup errors. */
    keel_secret *access_token_signing_key;
    keel_secret *refresh_token_signing_key;
    bool signing_keys_generated;
    /* JWT_ALGORITHM: HS256 (default) HS384 HS512 RS256 RS384 RS512 ES256 ES384
     * PS256 PS384 PS512 EdDSA, any case, stored canonical; "none" is rejected (RFC 8725). */
    const char *jwt_algorithm;
    uint32_t access_token_expire_minutes; /* ACCESS_TOKEN_EXPIRE_MINUTES (15, 1..1440) */
    uint32_t refresh_token_expire_days;   /* REFRESH_TOKEN_EXPIRE_DAYS (60, 1..3650) */
    uint32_t session_expire_days;         /* SESSION_EXPIRE_DAYS (180, 1..3650) */
    /* Argon2id cost for new password hashes (keel/password.h); OWASP minimum by default.
     * Raising them makes stored hashes report needs_rehash (rehashed on the next login). */
    uint32_t password_hash_memory_kib;  /* PASSWORD_HASH_MEMORY_KIB (19456, 8..1048576,
                                           at least 8 x parallelism) */
    uint32_t password_hash_iterations;  /* PASSWORD_HASH_ITERATIONS (2, 1..20) */
    uint32_t password_hash_parallelism; /* PASSWORD_HASH_PARALLELISM (1, 1..16) */

    /* CORS_ALLOW_ORIGINS, CORS_ALLOW_METHODS, CORS_ALLOW_HEADERS: comma-separated
     * lists, default "*"; NULL-terminated arrays of *_len items. */
    const char *const *cors_allow_origins;
    size_t cors_allow_origins_len;
    const char *const *cors_allow_methods;
    size_t cors_allow_methods_len;
    const char *const *cors_allow_headers;
    size_t cors_allow_headers_len;
    bool cors_allow_credentials; /* CORS_ALLOW_CREDENTIALS (true) */
    /* Set in production when the origins include "*" and credentials are allowed:
     * accepted (the seed allows it) but insecure, so the app should warn. */
    bool cors_wildcard_with_credentials;

    uint32_t shutdown_timeout_seconds; /* SHUTDOWN_TIMEOUT_SECONDS (30, 0..3600) */

    /* WEBHOOK_SECRET: comma-separated for rotation (first = current); empty
     * items skipped; none by default (webhook_secrets is then NULL). */
    keel_secret *const *webhook_secrets;
    size_t webhook_secrets_len;

    /* OTEL_EXPORTER_OTLP_ENDPOINT: NULL when unset; else "http://" or "https://" + host. */
    const char *otel_exporter_otlp_endpoint;

    /* HTTP_WORKERS (4 x online CPUs clamped to 2..256; 1..1024). */
    uint32_t http_workers;
    /* HTTP_MAX_BODY_BYTES (1048576; 1..1073741824). */
    size_t http_max_body_bytes;
    /* HTTP_MAX_CONNECTIONS (1024; 1..1048576). */
    uint32_t http_max_connections;
    /* HTTP_MAX_CONNECTIONS_PER_IP (0 = unlimited; 0..1048576). */
    uint32_t http_max_connections_per_ip;
    /* HTTP_CONNECTION_TIMEOUT_SECONDS (30; 1..3600). */
    uint32_t http_connection_timeout_seconds;
    /* HTTP_CONNECTION_MEMORY_LIMIT (16384 bytes; 8192..1073741824): the request line and
     * headers must fit; libmicrohttpd clears it on every request, so bigger costs CPU. */
    uint32_t http_connection_memory_limit;

    /* LOG_CONSOLE: auto (0, default: coloured text in development and test, JSON lines in
     * production) | text (1) | json (2) | off (3).  The files under LOG_DIR are unaffected. */
    uint32_t log_console;

    /* TRACE_LOG_SPANS (false): also write every finished span as a JSON log record on the
     * keel.trace logger.  Off by default: the access log already has one record per request
     * (with its request id, which spans carry too) and spans go to OTLP when
     * OTEL_EXPORTER_OTLP_ENDPOINT is set; turn it on to see traces without a collector. */
    bool trace_log_spans;
} keel_settings;

/** Read and validate every setting from env.
 *
 *  Every variable is checked; each invalid one adds one line to errors, e.g.
 *  "PORT: must be an integer in 1..65535, got 'abc'\n" (secret values never
 *  appear).  Variables named <DEP>_TIMEOUT_MS are validated too (1..600000)
 *  and kept for keel_settings_dep_timeout_ms().
 *
 *  @param env    the environment view (borrowed; not needed after the call).
 *  @param errors optional, initialised by the caller with keel_buf_init();
 *                lines past its cap are dropped.
 *  @return KEEL_OK with *out set; KEEL_EINVAL if any variable was invalid
 *          (*out is NULL; print errors and exit with status 2); KEEL_ENOMEM;
 *          KEEL_ECRYPTO (no randomness for a generated key).
 *  Thread-safety: any thread. Ownership: destroy *out with keel_settings_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_settings_load(keel_settings **out, const keel_env *env,
                                                    keel_buf *errors);

/** Timeout in milliseconds for a dependency, from <DEP>_TIMEOUT_MS, where DEP
 *  is dep upper-cased with every byte other than [A-Za-z0-9] turned into '_'
 *  ("stripe" -> STRIPE_TIMEOUT_MS, "user-service" -> USER_SERVICE_TIMEOUT_MS).
 *  @return the configured value, or def when unset (or s/dep is NULL).
 *  Thread-safety: any thread. Ownership: borrows s. */
KEEL_API uint32_t keel_settings_dep_timeout_ms(const keel_settings *s, const char *dep,
                                               uint32_t def);

/** Destroy the secrets (wiped) and free everything. NULL is a no-op. */
KEEL_API void keel_settings_destroy(keel_settings *s);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_CONFIG_H */
