/*
 * keel/log.h - structured JSON logger (seed 002 "Logger").
 *
 * Module contract: one process-wide logger.  Callers get named loggers with
 * keel_logger_get("app.auth.service") and emit records through the
 * KEEL_LOG_* macros.  Emitting is safe from any number of threads at once
 * and never does I/O on the caller's thread while the logger runs: the
 * caller formats the message, snapshots its thread's request/user context,
 * runs the hook (redaction), formats the record's lines (JSON, and text for
 * a text console) and pushes them onto a bounded queue; one writer thread
 * hands them to the sinks (rotating app.json and error.json, console) and
 * does the writes.  When the queue is full the configured policy either
 * drops the record (and counts it) or makes the caller wait for space.
 *
 * Before keel_log_start() and after keel_log_stop() records are written
 * synchronously to stderr as plain text (through the hook, if one is set),
 * so early startup errors are never lost.
 *
 * Every JSON record is one line holding, in this order: timestamp (UTC
 * ISO-8601 with milliseconds), level, logger, message, module (source file
 * basename without extension), function, line, request_id and user_id (only
 * when set in the emitting thread's context), extra (only when fields other
 * than "exception" were given) and exception (only when given).  Strings are
 * always valid JSON: control characters are escaped and invalid UTF-8 is
 * replaced by U+FFFD.
 */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

#include <stdarg.h>
#include <stdint.h>
#include <keel/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- levels -- */

/** Severity levels (the Python logging values). */
typedef enum keel_log_level {
    KEEL_LOG_LEVEL_DEBUG = 10,
    KEEL_LOG_LEVEL_INFO = 20,
    KEEL_LOG_LEVEL_WARNING = 30,
    KEEL_LOG_LEVEL_ERROR = 40,
    KEEL_LOG_LEVEL_CRITICAL = 50
} keel_log_level;

/** Parse a level name, ASCII case-insensitive: "debug", "info", "warning" or "warn", "error",
 *  "critical" or "fatal".
 *  @return KEEL_OK (*out set), KEEL_EINVAL if s or out is NULL, KEEL_EPARSE for other names.
 *  Thread-safety: any thread. Ownership: borrows s. */
KEEL_API KEEL_NODISCARD keel_err keel_log_level_parse(const char *s, keel_log_level *out);
/** Upper-case name of a level ("DEBUG" .. "CRITICAL").  A value between two levels gets the
 *  name of the level below it; values under DEBUG give "DEBUG", above CRITICAL "CRITICAL".
 *  Thread-safety: any thread. Ownership: returns a static string. Errors: none. */
KEEL_API const char *keel_log_level_name(keel_log_level lv);

/* --------------------------------------------------------------- loggers -- */

/** A named logger.  Interned: the same name always gives the same pointer. */
typedef struct keel_logger keel_logger;

/** Longest logger name kept, in bytes; longer names are truncated. */
#define KEEL_LOG_NAME_MAX 128

/** Get (creating on first use) the logger called name, e.g. "app.auth.service".
 *  NULL or "" gives the root logger "app".
 *  @return never NULL: on out-of-memory the root logger "app" is returned.
 *  Thread-safety: any thread (takes a mutex; look loggers up once and keep them).
 *  Ownership: the logger lives until the process exits; do not free it. Errors: none. */
KEEL_API keel_logger *keel_logger_get(const char *name);
/** Name of a logger (NUL-terminated).  NULL gives "app".
 *  Thread-safety: any thread. Ownership: borrowed, valid for the process lifetime. */
KEEL_API const char *keel_logger_name(const keel_logger *lg);

/* ---------------------------------------------------------------- fields -- */

typedef enum keel_log_field_type {
    KEEL_LOG_FIELD_STR = 1,
    KEEL_LOG_FIELD_INT = 2,
    KEEL_LOG_FIELD_DOUBLE = 3,
    KEEL_LOG_FIELD_BOOL = 4
} keel_log_field_type;

/** keel_log_field.len value meaning "NUL-terminated, use strlen". */
#define KEEL_LOG_STRLEN ((size_t)-1)

/** One structured extra: a key and a small tagged value.  Transparent value type; build it with
 *  the KEEL_LF_* macros.  A string value of NULL is written as JSON null.  The key "exception"
 *  is special: its value becomes the top-level "exception" member instead of going to "extra".
 *  Keys appearing more than once keep the last value. */
typedef struct keel_log_field {
    const char *key;
    keel_log_field_type type;
    size_t len; /* KEEL_LOG_FIELD_STR only: byte length, or KEEL_LOG_STRLEN */
    union {
        const char *s;
        int64_t i;
        double d;
        int b;
    } v;
} keel_log_field;

#define KEEL_LF_STR(k, str)                                                                        \
    ((keel_log_field){(k), KEEL_LOG_FIELD_STR, KEEL_LOG_STRLEN, {.s = (str)}})
#define KEEL_LF_STRN(k, str, n) ((keel_log_field){(k), KEEL_LOG_FIELD_STR, (n), {.s = (str)}})
#define KEEL_LF_INT(k, x) ((keel_log_field){(k), KEEL_LOG_FIELD_INT, 0, {.i = (int64_t)(x)}})
#define KEEL_LF_DOUBLE(k, x) ((keel_log_field){(k), KEEL_LOG_FIELD_DOUBLE, 0, {.d = (double)(x)}})
#define KEEL_LF_BOOL(k, x) ((keel_log_field){(k), KEEL_LOG_FIELD_BOOL, 0, {.b = (x) ? 1 : 0}})
/** The traceback / error description shown as the top-level "exception" member. */
#define KEEL_LF_EXCEPTION(str) KEEL_LF_STR("exception", (str))

/** Limits applied by the caller side; longer input is truncated (never rejected). */
#define KEEL_LOG_MESSAGE_MAX 8192 /* message bytes kept; then " [truncated]" is appended */
#define KEEL_LOG_FIELDS_MAX 32    /* fields kept per record; later ones are ignored */
#define KEEL_LOG_KEY_MAX 64       /* bytes of a field key */
#define KEEL_LOG_FIELD_STR_MAX 4096 /* bytes of a string field value ("exception" included) */

/* -------------------------------------------------------------- emitting -- */

/** 1 if a record at level lv from lg would be written by some sink (or reach the hook).
 *  The macros call it so that disabled levels cost no formatting.
 *  Thread-safety: any thread (one atomic load). Errors: none. */
KEEL_API int keel_log_enabled(const keel_logger *lg, keel_log_level lv);

/** Emit one record.  Use the KEEL_LOG_* macros rather than calling this directly.
 *  @param lg      logger (NULL = root "app")
 *  @param file    source file (the module is its basename without extension); may be NULL
 *  @param line    source line
 *  @param func    function name; may be NULL
 *  @param fields  nfields structured extras (copied); may be NULL when nfields is 0
 *  @param fmt     printf format of the message (truncated at KEEL_LOG_MESSAGE_MAX bytes)
 *  Records below the enabled level are ignored.  The thread's request_id and user_id are
 *  captured now.  Thread-safety: any thread; never blocks on I/O while the logger runs, but
 *  with KEEL_LOG_OVERFLOW_BLOCK waits for queue space.  Ownership: copies everything it is
 *  given before returning.  Errors: none reported; records lost to a full queue are counted
 *  in keel_log_stats().  Records emitted from inside the hook are dropped (and counted). */
KEEL_API void keel_log_write(const keel_logger *lg, keel_log_level lv, const char *file, int line,
                             const char *func, const keel_log_field *fields, size_t nfields,
                             const char *fmt, ...) KEEL_PRINTF(8, 9);
/** keel_log_write() with a va_list (same contract; ap is consumed). */
KEEL_API void keel_log_vwrite(const keel_logger *lg, keel_log_level lv, const char *file, int line,
                              const char *func, const keel_log_field *fields, size_t nfields,
                              const char *fmt, va_list ap) KEEL_PRINTF(8, 0);

/** Emit at a level: KEEL_LOG_AT(lg, level, fmt, ...).  Arguments are not evaluated when the
 *  level is disabled. */
#define KEEL_LOG_AT(lg, lv, ...)                                                                   \
    do {                                                                                           \
        if (keel_log_enabled((lg), (lv)))                                                          \
            keel_log_write((lg), (lv), __FILE__, __LINE__, __func__, NULL, 0, __VA_ARGS__);        \
    } while (0)
/** KEEL_LOG_INFO(lg, fmt, ...) and friends. */
#define KEEL_LOG_DEBUG(lg, ...) KEEL_LOG_AT((lg), KEEL_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define KEEL_LOG_INFO(lg, ...) KEEL_LOG_AT((lg), KEEL_LOG_LEVEL_INFO, __VA_ARGS__)
#define KEEL_LOG_WARNING(lg, ...) KEEL_LOG_AT((lg), KEEL_LOG_LEVEL_WARNING, __VA_ARGS__)
#define KEEL_LOG_ERROR(lg, ...) KEEL_LOG_AT((lg), KEEL_LOG_LEVEL_ERROR, __VA_ARGS__)
#define KEEL_LOG_CRITICAL(lg, ...) KEEL_LOG_AT((lg), KEEL_LOG_LEVEL_CRITICAL, __VA_ARGS__)
/** Emit with structured extras: KEEL_LOG_FIELDS(lg, level, fields_array, n, fmt, ...). */
#define KEEL_LOG_FIELDS(lg, lv, fields, n, ...)                                                    \
    do {                                                                                           \
        if (keel_log_enabled((lg), (lv)))                                                          \
            keel_log_write((lg), (lv), __FILE__, __LINE__, __func__, (fields), (n),               \
                           __VA_ARGS__);                                                           \
    } while (0)

/* --------------------------------------------------------------- context -- */

/** Bytes kept of a request id or user id (longer values are truncated). */
#define KEEL_LOG_CONTEXT_ID_MAX 64

/** A copy of a thread's logging context, to carry it to another thread (a background task). */
typedef struct keel_log_context {
    char request_id[KEEL_LOG_CONTEXT_ID_MAX + 1]; /* "" = unset */
    char user_id[KEEL_LOG_CONTEXT_ID_MAX + 1];    /* "" = unset */
} keel_log_context;

/** Set the calling thread's request id (copied, at most KEEL_LOG_CONTEXT_ID_MAX bytes); NULL or
 *  "" unsets it.  Every record the thread emits afterwards carries it.
 *  Thread-safety: affects only the calling thread. Ownership: copies id. Errors: none. */
KEEL_API void keel_log_context_set_request_id(const char *id);
/** Set the calling thread's user id; same rules as keel_log_context_set_request_id().
 *  Thread-safety: calling thread only. Ownership: copies id. Errors: none. */
KEEL_API void keel_log_context_set_user_id(const char *id);
/** Unset both ids of the calling thread (call it when a request ends).
 *  Thread-safety: calling thread only. Errors: none. */
KEEL_API void keel_log_context_clear(void);
/** The calling thread's request id, or NULL when unset.
 *  Ownership: borrowed thread-local storage, valid until the thread changes its context. */
KEEL_API const char *keel_log_context_request_id(void);
/** The calling thread's user id, or NULL when unset (same ownership as the request id).
 *  Thread-safety: calling thread only. Errors: none. */
KEEL_API const char *keel_log_context_user_id(void);
/** Copy the calling thread's context into *out (NULL is ignored).
 *  Thread-safety: calling thread only. Ownership: out is the caller's. Errors: none. */
KEEL_API void keel_log_context_save(keel_log_context *out);
/** Make *c (from keel_log_context_save(), possibly on another thread) the calling thread's
 *  context; NULL clears it.
 *  Thread-safety: calling thread only. Ownership: copies c. Errors: none. */
KEEL_API void keel_log_context_restore(const keel_log_context *c);

/* ------------------------------------------------------------------ hook -- */

/** A record as seen by the hook.  Only valid inside the hook call. */
typedef struct keel_log_record keel_log_record;

/** Called for every record before any sink.  Return 0 to keep the record (possibly
 *  rewritten with the keel_log_record_set_* functions), nonzero to drop it.
 *  Runs on the emitting thread before the record is queued, possibly on several threads at
 *  once: it must be thread-safe (keel_redact_log_hook keeps no state), quick and must not
 *  block; records it emits itself are dropped. */
typedef int (*keel_log_hook_fn)(keel_log_record *rec, void *ud);

/** Install the hook (replacing any previous one); NULL removes it.  When this returns, the
 *  previous hook is not running and will not be called again, so its ud may be freed.
 *  @return KEEL_OK, or KEEL_EBUSY when called from inside the hook.
 *  Thread-safety: any thread. Ownership: borrows ud until the hook is replaced. */
KEEL_API keel_err keel_log_set_hook(keel_log_hook_fn fn, void *ud);

/* The accessors below: Thread-safety: inside the hook only. Ownership: results are borrowed
 * from the record, valid until the hook returns. Errors: none (NULL r or a bad index gives
 * the documented empty value). */

/** Level of the record. */
KEEL_API keel_log_level keel_log_record_level(const keel_log_record *r);
/** Logger name of the record (borrowed, process lifetime). */
KEEL_API const char *keel_log_record_logger(const keel_log_record *r);
/** The message bytes (not NUL-terminated; valid until the hook returns or the message is set). */
KEEL_API keel_str keel_log_record_message(const keel_log_record *r);
/** Number of fields (the "exception" field included). */
KEEL_API size_t keel_log_record_nfields(const keel_log_record *r);
/** Key of field i (KEEL_STR_NULL if i is out of range). */
KEEL_API keel_str keel_log_record_field_key(const keel_log_record *r, size_t i);
/** Type of field i (0 if i is out of range). */
KEEL_API keel_log_field_type keel_log_record_field_type(const keel_log_record *r, size_t i);
/** String value of field i; KEEL_STR_NULL if it is not a string, is null or i is out of range. */
KEEL_API keel_str keel_log_record_field_str(const keel_log_record *r, size_t i);
/** Integer value of field i (0 if not an integer field). */
KEEL_API int64_t keel_log_record_field_int(const keel_log_record *r, size_t i);
/** Replace the message with n bytes at s (copied into record-owned memory; s may point into
 *  the current message).  @return KEEL_OK, KEEL_EINVAL (NULL r, or NULL s with n > 0),
 *  KEEL_ETOOBIG past 64 KiB, KEEL_ENOMEM.  Thread-safety: inside the hook only. */
KEEL_API KEEL_NODISCARD keel_err keel_log_record_set_message(keel_log_record *r, const char *s,
                                                            size_t n);
/** Replace the value of field i by the string of n bytes at s (copied); a field of another
 *  type becomes a string field.  @return KEEL_OK, KEEL_ERANGE (bad i), KEEL_EINVAL,
 *  KEEL_ETOOBIG past 64 KiB, KEEL_ENOMEM.  Thread-safety: inside the hook only. */
KEEL_API KEEL_NODISCARD keel_err keel_log_record_set_field_str(keel_log_record *r, size_t i,
                                                              const char *s, size_t n);

/* ------------------------------------------------------------- lifecycle -- */

typedef enum keel_log_console {
    KEEL_LOG_CONSOLE_OFF = 0,
    KEEL_LOG_CONSOLE_TEXT = 1, /* plain text, ANSI colours by level when enabled (development) */
    KEEL_LOG_CONSOLE_JSON = 2  /* JSON lines (production) */
} keel_log_console;

typedef enum keel_log_overflow {
    KEEL_LOG_OVERFLOW_DROP = 0, /* full queue: drop the record and count it */
    KEEL_LOG_OVERFLOW_BLOCK = 1 /* full queue: the caller waits for space */
} keel_log_overflow;

/** Logger configuration.  Fill with keel_log_config_default(), then override fields. */
typedef struct keel_log_config {
    size_t size;              /* sizeof(keel_log_config), set by keel_log_config_default() */
    const char *dir;          /* directory of app.json / error.json (created); NULL = no files */
    keel_log_level level;     /* minimum level (default INFO); app.json is never below INFO */
    keel_log_console console; /* stderr output (default KEEL_LOG_CONSOLE_TEXT) */
    int console_color;        /* 1 ANSI colours, 0 none, -1 (default) when stderr is a tty */
    size_t queue_capacity;    /* records (default 4096, 1 .. 1048576) */
    keel_log_overflow overflow; /* default KEEL_LOG_OVERFLOW_DROP */
    uint64_t rotate_bytes;    /* rotate before a file would pass this (default 10 MiB); 0 = never */
    unsigned rotate_backups;  /* keep name.1 .. name.N (default 5, at most 100); 0 = truncate */
} keel_log_config;

/** Set cfg to the defaults listed in keel_log_config (NULL is ignored).
 *  Thread-safety: any thread. Ownership: cfg is the caller's. Errors: none. */
KEEL_API void keel_log_config_default(keel_log_config *cfg);

/** Start the global logger: create the directory (mkdir -p), open the files, start the writer
 *  thread.  cfg NULL uses the defaults.
 *  @return KEEL_OK; KEEL_ESTATE if already started; KEEL_EINVAL for a bad config;
 *  KEEL_EDENIED or KEEL_EIO if the directory or files cannot be created; KEEL_ENOMEM.
 *  Thread-safety: any thread, but start/stop are meant for main().  Ownership: copies cfg. */
KEEL_API KEEL_NODISCARD keel_err keel_log_start(const keel_log_config *cfg);
/** Write everything already queued, close the files and join the writer thread.  Later
 *  records go synchronously to stderr.  Idempotent; a no-op if never started.
 *  Thread-safety: any thread except the hook. Errors: none. */
KEEL_API void keel_log_stop(void);
/** Wait until every record queued before the call has been handled by the sinks (bytes are
 *  handed to the kernel; no fsync).  timeout_ms 0 only checks.
 *  @return KEEL_OK (also when the logger is not running), KEEL_ETIMEOUT.
 *  Thread-safety: any thread except the hook (which would wait for itself: KEEL_EBUSY). */
KEEL_API KEEL_NODISCARD keel_err keel_log_flush(uint64_t timeout_ms);
/** Change the minimum level at run time (before or after start; keel_log_start() sets it
 *  from the config).  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_log_set_level(keel_log_level lv);
/** The current minimum level.  Thread-safety: any thread. Errors: none. */
KEEL_API keel_log_level keel_log_get_level(void);

/** Counters since process start (monotonic except queued). */
typedef struct keel_log_stats {
    uint64_t written;      /* records handed to the sinks (after the hook) */
    uint64_t dropped;      /* records lost because the queue was full (or emitted by the hook) */
    uint64_t filtered;     /* records dropped by the hook */
    uint64_t write_errors; /* failed writes, opens or rotations */
    uint64_t queued;       /* current queue depth */
} keel_log_stats;

/** Fill *out with the current counters (NULL is ignored).  Named _get because C does not let
 *  a function share the keel_log_stats type's name.  Thread-safety: any thread. Errors: none. */
KEEL_API void keel_log_stats_get(keel_log_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_LOG_H */
