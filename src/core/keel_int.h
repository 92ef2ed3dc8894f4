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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* Secret bytes for the few internal users (HMAC, JWT); never log the result. */
const unsigned char *keel__secret_bytes(const keel_secret *s);

#endif /* KEEL_INT_H */
