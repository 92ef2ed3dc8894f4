/*
 * keel/common.h - definitions shared by every libkeel module.
 *
 * Module contract: everything here is a value type, a macro or a function
 * that is safe to call from any thread once keel_set_allocator() (if used at
 * all) has returned.  Fallible functions return keel_err: KEEL_OK (0) on
 * success, a negative KEEL_E* code on failure.  Codes are append-only.
 */
#ifndef KEEL_COMMON_H
#define KEEL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define KEEL_API __attribute__((visibility("default")))
#define KEEL_NODISCARD __attribute__((warn_unused_result))
#define KEEL_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define KEEL_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#else
#define KEEL_API
#define KEEL_NODISCARD
#define KEEL_PRINTF(fmt, args)
#define KEEL_NONNULL(...)
#endif

/* X(name, value, message).  Append only: never remove or renumber. */
#define KEEL_ERR_MAP(X)                                                                            \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(TOOBIG, -3, "size limit exceeded")                                                           \
    X(TIMEOUT, -4, "timed out")                                                                    \
    X(NOTFOUND, -5, "not found")                                                                   \
    X(EXIST, -6, "already exists")                                                                 \
    X(IO, -7, "input/output error")                                                                \
    X(PARSE, -8, "malformed input")                                                                \
    X(RANGE, -9, "value out of range")                                                             \
    X(STATE, -10, "operation not valid in the current state")                                      \
    X(FULL, -11, "queue or table full")                                                            \
    X(CLOSED, -12, "already closed or shutting down")                                              \
    X(BUSY, -13, "resource busy")                                                                  \
    X(OPEN, -14, "circuit open")                                                                   \
    X(DENIED, -15, "permission denied")                                                            \
    X(UNSUPPORTED, -16, "operation not supported")                                                 \
    X(INTERNAL, -17, "internal error")                                                             \
    X(AGAIN, -18, "temporarily unavailable, try again")                                            \
    X(CRYPTO, -19, "cryptographic library failure")                                              \
    X(CONSTRAINT, -20, "constraint violation")                                                     \
    X(PAY_NETWORK, -21, "payment network error")                                                   \
    X(PAY_GATEWAY_TIMEOUT, -22, "payment gateway timed out; outcome unknown")                     \
    X(PAY_RATE_LIMITED, -23, "payment gateway rate limit")                                         \
    X(PAY_DECLINED, -24, "card declined")                                                          \
    X(PAY_INSUFFICIENT_FUNDS, -25, "insufficient funds")                                           \
    X(PAY_FRAUD_BLOCKED, -26, "blocked by fraud screening")                                        \
    X(PAY_AUTH_REQUIRED, -27, "customer authentication required (3-D Secure)")                    \
    X(PAY_IDEMPOTENCY_CONFLICT, -28, "idempotency key reused with a different request")          \
    X(PAY_IN_FLIGHT, -29, "a request with this idempotency key is still in progress")             \
    X(PAY_COMPENSATION, -30, "saga compensation failed")                                           \
    X(PAY_GATEWAY, -31, "payment gateway rejected the request")

/** Error codes.  0 is success; every error is negative. */
typedef enum keel_err {
    KEEL_OK = 0,
#define KEEL__ERR_ENUM(name, value, msg) KEEL_E##name = (value),
    KEEL_ERR_MAP(KEEL__ERR_ENUM)
#undef KEEL__ERR_ENUM
} keel_err;

/** Human-readable message for an error code ("unknown error" for others).
 *  Thread-safety: any thread. Ownership: returns a static string. */
KEEL_API const char *keel_strerror(int err);
/** Symbolic name ("KEEL_ENOMEM") of an error code, "KEEL_OK" for 0, "KEEL_E?" otherwise. */
KEEL_API const char *keel_err_name(int err);

/** A borrowed byte slice; not necessarily NUL-terminated. */
typedef struct keel_str {
    const char *ptr;
    size_t len;
} keel_str;
#define KEEL_STR_LIT(s) ((keel_str){(s), sizeof(s) - 1})
#define KEEL_STR_NULL ((keel_str){NULL, 0})
/** Slice over a NUL-terminated string (NULL gives the empty slice). */
KEEL_API keel_str keel_str_c(const char *s);
/** 1 if a and b hold the same bytes. */
KEEL_API int keel_str_eq(keel_str a, keel_str b);
/** 1 if a and b are equal ignoring ASCII case. */
KEEL_API int keel_str_ieq(keel_str a, keel_str b);

/** Detail channel for parsers and validators (optional out-parameter).
 *  Control flow branches on the returned keel_err only; msg is for humans. */
typedef struct keel_diag {
    keel_err code;
    size_t offset; /* byte offset or 1-based line number, as the function documents */
    char msg[160];
} keel_diag;
/** Fill d (if not NULL) with code, offset and a formatted message. Returns code. */
KEEL_API keel_err keel_diag_set(keel_diag *d, keel_err code, size_t offset, const char *fmt, ...)
    KEEL_PRINTF(4, 5);

/** Allocator hook.  All libkeel memory goes through it.  Must be thread-safe. */
typedef struct keel_allocator {
    void *(*alloc)(void *ctx, size_t n);
    void *(*realloc)(void *ctx, void *p, size_t n);
    void (*free)(void *ctx, void *p);
    void *ctx;
} keel_allocator;

/** Replace the allocator.  Call before any other keel_* function; NULL restores malloc.
 *  jansson is pointed at the same hook (json_set_alloc_funcs), so JSON values built by keel
 *  and by handlers are accounted for too; NULL restores jansson's malloc/free as well.
 *  Thread-safety: not thread-safe; call once at startup. */
KEEL_API keel_err keel_set_allocator(const keel_allocator *a);
/** Allocate through the hook; NULL on failure.  Memory returned by keel functions documented
 *  as "caller frees with keel_free()" must be released with keel_free(). */
KEEL_API void *keel_malloc(size_t n);
KEEL_API void *keel_calloc(size_t count, size_t n);
KEEL_API void *keel_realloc(void *p, size_t n);
/** Free memory from keel_malloc & co.  NULL is a no-op.  Preserves errno. */
KEEL_API void keel_free(void *p);
/** Duplicate a NUL-terminated string (NULL in, NULL out). Caller frees with keel_free(). */
KEEL_API char *keel_strdup(const char *s);
/** Duplicate n bytes as a NUL-terminated string. Caller frees with keel_free(). */
KEEL_API char *keel_strndup(const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_COMMON_H */
