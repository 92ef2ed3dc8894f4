/*
 * keel/core.h - runtime basics: arenas, bounded buffers, clocks, secure random,
 * UUIDs and secrets.
 *
 * Module contract: a keel_arena or keel_buf is not thread-safe; use one per
 * thread or request.  The free functions (clocks, random, uuid) are callable
 * from any thread.
 */
#ifndef KEEL_CORE_H
#define KEEL_CORE_H

#include <stdarg.h>
#include <keel/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- arena -- */

/** A region allocator: many small allocations, released together.
 *  Used for per-request memory; never freed piecemeal. */
typedef struct keel_arena keel_arena;

/** Default cap on one request arena (bytes). */
#define KEEL_ARENA_DEFAULT_MAX (8u * 1024u * 1024u)

/** Create an arena that refuses to grow past max_bytes in total (0 = KEEL_ARENA_DEFAULT_MAX).
 *  @return KEEL_OK, KEEL_ENOMEM.  Ownership: caller destroys with keel_arena_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_arena_create(keel_arena **out, size_t max_bytes);
/** Allocate n bytes aligned to align (a power of two, 0 = max_align_t).
 *  @return memory valid until reset/destroy, or NULL past the cap or on OOM. */
KEEL_API void *keel_arena_alloc(keel_arena *a, size_t n, size_t align);
/** Copy n bytes into the arena and NUL-terminate. NULL on cap/OOM. */
KEEL_API char *keel_arena_strndup(keel_arena *a, const char *s, size_t n);
/** Copy a NUL-terminated string into the arena. NULL on cap/OOM or if s is NULL. */
KEEL_API char *keel_arena_strdup(keel_arena *a, const char *s);
/** printf into arena memory. NULL on cap/OOM. */
KEEL_API char *keel_arena_sprintf(keel_arena *a, const char *fmt, ...) KEEL_PRINTF(2, 3);
/** Bytes handed out so far (for metrics and tests). */
KEEL_API size_t keel_arena_used(const keel_arena *a);
/** Release every allocation but keep the first block for reuse. */
KEEL_API void keel_arena_reset(keel_arena *a);
/** Free the arena and everything in it. NULL is a no-op. */
KEEL_API void keel_arena_destroy(keel_arena *a);

/* ------------------------------------------------------------------ buf -- */

/** A growable byte buffer with a hard cap.  Transparent value; ptr is always
 *  NUL-terminated when not NULL (the terminator is not counted in len). */
typedef struct keel_buf {
    char *ptr;
    size_t len;
    size_t cap;
    size_t max;
} keel_buf;

/** Initialise an empty buffer that may grow to max bytes of content. Does not allocate. */
KEEL_API void keel_buf_init(keel_buf *b, size_t max);
/** Append n bytes. @return KEEL_OK, KEEL_ETOOBIG past max (buffer unchanged), KEEL_ENOMEM. */
KEEL_API KEEL_NODISCARD keel_err keel_buf_append(keel_buf *b, const void *p, size_t n);
/** Append a NUL-terminated string. */
KEEL_API KEEL_NODISCARD keel_err keel_buf_append_str(keel_buf *b, const char *s);
/** Append one byte. */
KEEL_API KEEL_NODISCARD keel_err keel_buf_append_char(keel_buf *b, char c);
/** Append printf-formatted text. */
KEEL_API KEEL_NODISCARD keel_err keel_buf_appendf(keel_buf *b, const char *fmt, ...)
    KEEL_PRINTF(2, 3);
KEEL_API KEEL_NODISCARD keel_err keel_buf_vappendf(keel_buf *b, const char *fmt, va_list ap);
/** Forget the content, keep the storage. */
KEEL_API void keel_buf_reset(keel_buf *b);
/** Free the storage; the buffer is empty and reusable afterwards. */
KEEL_API void keel_buf_cleanup(keel_buf *b);
/** Hand the storage to the caller (free with keel_free()); the buffer becomes empty.
 *  Returns an empty allocated string rather than NULL when nothing was appended; NULL on OOM. */
KEEL_API char *keel_buf_take(keel_buf *b, size_t *len);

/* --------------------------------------------------------------- clocks -- */

/** Monotonic clock in nanoseconds / milliseconds (CLOCK_MONOTONIC). */
KEEL_API uint64_t keel_time_mono_ns(void);
KEEL_API uint64_t keel_time_mono_ms(void);
/** Wall clock in milliseconds since the Unix epoch (CLOCK_REALTIME). */
KEEL_API int64_t keel_time_wall_ms(void);
/** Size of an ISO-8601 UTC timestamp with milliseconds, "2026-11-23T14:55:59.123Z", plus NUL. */
#define KEEL_TIME_ISO8601_SIZE 25
/** Format wall_ms as UTC ISO-8601 with milliseconds into out. Returns the length (24). */
KEEL_API size_t keel_time_iso8601(int64_t wall_ms, char out[KEEL_TIME_ISO8601_SIZE]);

/* --------------------------------------------------------- random, uuid -- */

/** n bytes from the CSPRNG (OpenSSL RAND_bytes). @return KEEL_OK or KEEL_ECRYPTO. */
KEEL_API KEEL_NODISCARD keel_err keel_random_bytes(void *out, size_t n);
/** Size of a textual UUID plus NUL. */
#define KEEL_UUID_SIZE 37
/** Write a random (version 4, RFC 9562) UUID in lower-case canonical form. */
KEEL_API KEEL_NODISCARD keel_err keel_uuid4(char out[KEEL_UUID_SIZE]);
/** 1 if s is a canonical UUID string (8-4-4-4-12 hex, any version), else 0. */
KEEL_API int keel_uuid_valid(keel_str s);

/* -------------------------------------------------------------- secrets -- */

/** Bytes that must never be logged: signing keys, webhook secrets, passwords.
 *  Wiped (with a wipe the compiler cannot elide) when destroyed. */
typedef struct keel_secret keel_secret;

/** Copy n bytes into a new secret.  Ownership: caller destroys it. */
KEEL_API KEEL_NODISCARD keel_err keel_secret_create(keel_secret **out, const void *p, size_t n);
/** Length of the secret in bytes. */
KEEL_API size_t keel_secret_len(const keel_secret *s);
/** The secret's bytes (keel_secret_len of them), for handing to a MAC or signature API.
 *  Never log or copy them.  Ownership: borrowed, valid until the secret is destroyed. */
KEEL_API const void *keel_secret_data(const keel_secret *s);
/** Constant-time comparison of the secret with n bytes at p; 1 when equal. */
KEEL_API int keel_secret_equals(const keel_secret *s, const void *p, size_t n);
/** Constant-time comparison of two byte ranges of equal length n; 1 when equal. */
KEEL_API int keel_ct_equal(const void *a, const void *b, size_t n);
/** Wipe and free. NULL is a no-op. */
KEEL_API void keel_secret_destroy(keel_secret *s);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_CORE_H */
