/* fuzz_phc.c - the PHC string parser (a stored hash is untrusted input) and verification.
 *
 * Input layout: bytes up to the first '\n' are the PHC string, the rest is the password.  The
 * string is copied into an exact-size NUL-terminated heap block so ASan catches any read past
 * its end.  Verification runs with tiny cost caps (m <= 64 KiB, t <= 2, p <= 2) so that a
 * well-formed hash costs microseconds; parsing itself is exercised with the public caps.
 * Invariants: codes come from the documented set, and a string that parses re-encodes to
 * exactly the input (the parser accepts only canonical strings). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/password.h>

#include "security/password_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void b64(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = a[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t nl = 0;
    while (nl < size && data[nl] != '\n')
        nl++;
    char *phc = malloc(nl + 1);
    if (phc == NULL)
        abort();
    memcpy(phc, data, nl);
    phc[nl] = '\0';
    const char *pw = nl < size ? (const char *)data + nl + 1 : "";
    size_t pwlen = nl < size ? size - nl - 1 : 0;

    keel__phc h;
    keel_diag d;
    keel_err e = keel__phc_parse(phc, NULL, &h, &d);
    if (e != KEEL_OK && e != KEEL_EPARSE && e != KEEL_ERANGE && e != KEEL_EUNSUPPORTED)
        abort();
    if (e == KEEL_OK) {
        if (h.salt_len < KEEL_PASSWORD_MIN_SALT_LEN || h.salt_len > KEEL_PASSWORD_MAX_SALT_LEN ||
            h.hash_len < KEEL_PASSWORD_MIN_HASH_LEN || h.hash_len > KEEL_PASSWORD_MAX_HASH_LEN ||
            h.p < 1 || h.t < 1 || h.m < 8u * h.p || h.m > KEEL_PASSWORD_MAX_MEMORY_KIB)
            abort();
        static const char *const names[] = {"", "argon2d", "argon2i", "argon2id"};
        char s64[100], h64[100], again[KEEL_PASSWORD_PHC_SIZE + 64];
        b64(h.salt, h.salt_len, s64);
        b64(h.hash, h.hash_len, h64);
        snprintf(again, sizeof(again), "$%s$v=%u$m=%u,t=%u,p=%u$%s$%s", names[h.type], h.version,
                 h.m, h.t, h.p, s64, h64);
        if (strcmp(again, phc) != 0)
            abort();
        int need = -1;
        if (keel_password_needs_rehash(phc, NULL, &need, NULL) != KEEL_OK || (need != 0 && need != 1))
            abort();
    } else if (d.code != e || d.offset > nl || memchr(d.msg, '\0', sizeof(d.msg)) == NULL) {
        abort();
    }

    keel__phc_caps tiny = {64, 2, 2};
    e = keel__password_verify_caps(phc, pw, pwlen, &tiny, &d);
    if (e != KEEL_OK && e != KEEL_EDENIED && e != KEEL_EPARSE && e != KEEL_ERANGE &&
        e != KEEL_EUNSUPPORTED && e != KEEL_ETOOBIG)
        abort();
    free(phc);
    return 0;
}
