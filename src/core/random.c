/* random.c - CSPRNG, UUIDv4, secrets and constant-time comparison (OpenSSL). */
#include "keel_int.h"

#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

keel_err keel_random_bytes(void *out, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        if (RAND_bytes(out, chunk) != 1)
            return KEEL_ECRYPTO;
        out = (unsigned char *)out + chunk;
        n -= (size_t)chunk;
    }
    return KEEL_OK;
}

/* Request ids and trace/span ids are drawn per request; asking OpenSSL for 8-16 bytes each
 * time costs more than the rest of the id.  Each thread draws 1 KiB from the CSPRNG at a
 * time and hands it out in small pieces (each byte used once, wiped after use). */
#define UUID_POOL 1024
static _Thread_local unsigned char tl_pool[UUID_POOL];
static _Thread_local size_t tl_pool_off = UUID_POOL;
static _Thread_local unsigned tl_pool_gen;
/* A forked child must not hand out the parent's remaining pool bytes. */
static unsigned g_fork_gen;
static pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    g_fork_gen++;
}

static void fork_hook(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

keel_err keel__random_pooled(void *out, size_t n)
{
    if (n > UUID_POOL / 4)
        return keel_random_bytes(out, n);
    pthread_once(&g_fork_once, fork_hook);
    if (tl_pool_off + n > UUID_POOL || tl_pool_gen != g_fork_gen) {
        keel_err e = keel_random_bytes(tl_pool, UUID_POOL);
        if (e != KEEL_OK)
            return e;
        tl_pool_off = 0;
        tl_pool_gen = g_fork_gen;
    }
    memcpy(out, tl_pool + tl_pool_off, n);
    memset(tl_pool + tl_pool_off, 0, n);
    tl_pool_off += n;
    return KEEL_OK;
}

keel_err keel_uuid4(char out[KEEL_UUID_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    keel_err e = keel__random_pooled(b, sizeof(b));
    if (e != KEEL_OK)
        return e;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10 */
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
    return KEEL_OK;
}

int keel_uuid_valid(keel_str s)
{
    if (s.len != 36)
        return 0;
    for (size_t i = 0; i < 36; i++) {
        char c = s.ptr[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

void keel__wipe(void *p, size_t n)
{
    OPENSSL_cleanse(p, n);
}

struct keel_secret {
    size_t len;
    unsigned char bytes[];
};

keel_err keel_secret_create(keel_secret **out, const void *p, size_t n)
{
    keel_secret *s = keel_malloc(sizeof(*s) + n + 1);
    if (s == NULL)
        return KEEL_ENOMEM;
    s->len = n;
    if (n)
        memcpy(s->bytes, p, n);
    s->bytes[n] = 0;
    *out = s;
    return KEEL_OK;
}

size_t keel_secret_len(const keel_secret *s)
{
    return s ? s->len : 0;
}

const void *keel_secret_data(const keel_secret *s)
{
    return s ? keel__secret_bytes(s) : NULL;
}

const unsigned char *keel__secret_bytes(const keel_secret *s)
{
    return s->bytes;
}

int keel_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

int keel_secret_equals(const keel_secret *s, const void *p, size_t n)
{
    /* Length is not secret-dependent timing we try to hide beyond this branch. */
    if (s == NULL || s->len != n)
        return 0;
    return keel_ct_equal(s->bytes, p, n);
}

void keel_secret_destroy(keel_secret *s)
{
    if (s == NULL)
        return;
    keel__wipe(s->bytes, s->len);
    keel_free(s);
}
