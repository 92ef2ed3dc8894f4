/* test.h - shared test fixtures: cmocka, and a keeld launcher + HTTP client for
 * integration tests. */
#ifndef KEEL_TEST_H
#define KEEL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <keel/keel.h>

#define ASSERT_OK(expr) assert_int_equal(KEEL_OK, (expr))

/* ------------------------------------------------------ failing allocator -- */

/* Install the failing allocator as keel's hook (and jansson's), disarmed. */
void keel_test_failalloc_install(void);
/* -1: never fail; 0: the next allocation and all later ones fail; n: n more succeed first. */
void keel_test_failalloc_arm(int n);
/* Disarm and restore the default allocator. */
void keel_test_failalloc_remove(void);

/* ------------------------------------------------ keeld process fixture -- */

typedef struct keel_test_server {
    int pid;
    uint16_t port;
    char base_url[64];
    char dir[256]; /* private working directory (logs/, .env) */
} keel_test_server;

/* Start keeld in a fresh temporary directory with the given extra environment
 * ("NAME=value" strings, NULL-terminated, may be NULL) on a free loopback port;
 * waits until /health/live answers.  Returns 0 on success. */
int keel_test_server_start(keel_test_server *s, const char *const *env);
/* Send sig and wait up to timeout_ms for exit; returns the exit status or -1. */
int keel_test_server_stop(keel_test_server *s, int sig, int timeout_ms);

/* ------------------------------------------------------ running binaries -- */

typedef struct keel_test_run_opts {
    const char *dir;           /* working directory (NULL = inherit) */
    const char *const *env;    /* extra "NAME=value" entries, NULL-terminated (or NULL) */
    const char *const *unset;  /* variables to remove, NULL-terminated (or NULL) */
    const char *in;            /* bytes for stdin (NULL = empty stdin) */
    size_t in_len;
} keel_test_run_opts;

/* Run bin with argv (argv[0] included, NULL-terminated); stdout and stderr go, interleaved,
 * into out (NUL-terminated, truncated at cap).  Returns the exit status, or -1. */
int keel_test_run(const char *bin, const char *const *argv, const keel_test_run_opts *opts,
                  char *out, size_t cap);

/* -------------------------------------------------------------- HTTP ---- */

typedef struct keel_test_resp {
    long status;
    char *body;    /* NUL-terminated, caller frees with keel_test_resp_free */
    size_t body_len;
    char *headers; /* raw header block, lower-cased names */
    double total_s;
} keel_test_resp;

/* Perform a request.  headers: NULL-terminated "Name: value" list or NULL.
 * body may be NULL.  Returns 0 if a response was received. */
int keel_test_http(const keel_test_server *s, const char *method, const char *path,
                   const char *const *headers, const char *body, size_t body_len,
                   keel_test_resp *out);
/* Value of a response header (case-insensitive name) copied into out; 1 if found. */
int keel_test_resp_header(const keel_test_resp *r, const char *name, char *out, size_t n);
void keel_test_resp_free(keel_test_resp *r);

/* Send raw bytes on a fresh TCP connection and read until close or timeout_ms;
 * the reply (NUL-terminated) goes in *reply, caller frees with free(). Returns bytes read or -1. */
long keel_test_raw(const keel_test_server *s, const char *data, size_t len, int timeout_ms,
                   char **reply);

/* ------------------------------------------------------------- Redis ---- */

struct keel_redis;
/* A pool of pool_size connections to url (2 s command timeout); fails the test on error. */
struct keel_redis *keel_test_redis_open(const char *url, unsigned pool_size);
/* A pool whose server vanishes: it connects to a loopback socket that is then closed, so
 * every command finds the server gone (one connection, 500 ms timeouts).  For outage tests
 * that must not touch the shared test Redis. */
struct keel_redis *keel_test_redis_vanishing(void);

#endif
