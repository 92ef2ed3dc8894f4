/*
 * keel_int.h - private definitions every libkeel source includes first.
 * Never installed.
 */
#ifndef KEEL_INT_H
#define KEEL_INT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <keel/keel.h>

/* Invariant checks: active in debug and fuzz builds only, never for input. */
#ifdef NDEBUG
#define KEEL_ASSERT(x) ((void)0)
#else
#include <assert.h>
#define KEEL_ASSERT(x) assert(x)
#endif
/* "Cannot happen" branches that stay safe in release builds (SQLite ALWAYS/NEVER). */
#define KEEL_ALWAYS(x) (__builtin_expect(!!(x), 1))
#define KEEL_NEVER(x) (__builtin_expect(!!(x), 0))

#define KEEL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define KEEL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KEEL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define KEEL_UNUSED(x) ((void)(x))

/* Internal allocation shorthands (all through the hook). */
#define keel__new(T) ((T *)keel_calloc(1, sizeof(T)))

/* Wipe memory in a way the compiler cannot elide. */
void keel__wipe(void *p, size_t n);
/* n bytes from the CSPRNG through a per-thread 1 KiB pool (each byte handed out once; reset
 * in a forked child): for ids drawn per request.  Large requests go straight to OpenSSL. */
keel_err keel__random_pooled(void *out, size_t n);

/* Secret bytes for the few internal users (HMAC, JWT); never log the result. */
const unsigned char *keel__secret_bytes(const keel_secret *s);

/* Allocate a layer struct of `size` bytes whose first member is a keel_layer: zeroed, with
 * name and call set and a dispose that frees it (chain.c).  NULL on OOM.  Layers with state
 * to release override dispose afterwards. */
void *keel__layer_new(size_t size, const char *name,
                      keel_err (*call)(keel_layer *self, void *cx, keel_chain_cursor *cur));

/* Unpadded base64 (url = 0: RFC 4648 section 4; url = 1: base64url), strict decode (base64.c).
 * encode: out needs keel__b64_encoded_len(n) + 1 bytes (NUL-terminated); returns the length.
 * decode: out needs len * 3 / 4 + 1 bytes; returns the byte count, or -1 bad character,
 * -2 impossible length, -3 non-zero unused trailing bits. */
size_t keel__b64_encoded_len(size_t n);
size_t keel__b64_encode(int url, const unsigned char *in, size_t n, char *out);
long keel__b64_decode(int url, const char *in, size_t len, unsigned char *out);
/* Value of one base64 character, or -1. */
int keel__b64_value(char c, int url);

/* Hex (encoding.c): out gets 2n lowercase digits and a NUL; the digit value of c (either
 * case) or -1. */
void keel__hex_encode(const void *in, size_t n, char *out);
int keel__hex_value(char c);

/* Threads (thread.c).  keel__thread_start creates a library thread with every asynchronous
 * signal blocked (process signals belong to the application's threads; synchronous faults
 * stay deliverable) and names it ("keel:<name>", Linux) when name is not NULL; returns
 * pthread_create's result.  keel__cond_init_mono initialises a condition variable on
 * CLOCK_MONOTONIC (0 or an errno), for waits that wall-clock jumps must not disturb;
 * keel__mono_deadline is the absolute CLOCK_MONOTONIC time ms from now for such waits
 * (capped at ten years, which stands for "no limit"). */
int keel__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name);
int keel__cond_init_mono(pthread_cond_t *c);
struct timespec keel__mono_deadline(uint64_t ms);

/* FNV-1a 64 for in-memory hash tables (not for anything an attacker must not collide:
 * tables that hold untrusted keys compare them exactly and bound their chains).
 * Chain calls: h = keel__fnv1a(keel__fnv1a(KEEL__FNV1A_INIT, a, n), b, m). */
#define KEEL__FNV1A_INIT 14695981039346656037ull
uint64_t keel__fnv1a(uint64_t h, const void *p, size_t n);

#endif /* KEEL_INT_H */
