/* jwt_bench.c - JWT HS256 sign and verify per second in one thread (target: verify >= 300k/s).
 * Besides wall-clock rates it reports the thread's CPU time per operation (median of the
 * rounds), which a loaded machine disturbs far less than the wall-clock figure. */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keel/keel.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    unsigned n = getenv("BENCH_CALLS") ? (unsigned)strtoul(getenv("BENCH_CALLS"), NULL, 10) : 200000;
    keel_jwt_keyset *ks;
    if (keel_jwt_keyset_create(&ks) != KEEL_OK ||
        keel_jwt_keyset_add_hmac(ks, "k1", "0123456789abcdef0123456789abcdef", 32,
                                 KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY) != KEEL_OK) {
        fprintf(stderr, "jwt_bench: keyset\n");
        return 1;
    }
    uint64_t now_s = (uint64_t)time(NULL);
    /* the seed 002 access-token claims */
    json_t *claims = json_pack("{s:s, s:[s,s], s:I, s:I, s:s, s:s, s:s, s:s, s:s}", "sub",
                               "7d1a5c1e-2f4b-4b7e-9a31-2c7e6f0a9b11", "roles", "user", "admin",
                               "exp", (json_int_t)(now_s + 900), "iat", (json_int_t)now_s, "iss",
                               "keel", "aud", "keel-client", "type", "access", "sid",
                               "5b0e7c52-1c9d-4e0a-8f3e-6a1d2b3c4d5e", "jti",
                               "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b");
    keel_jwt_policy pol;
    keel_jwt_policy_default(&pol);
    pol.iss = "keel";
    pol.aud = "keel-client";
    pol.type = "access";
    char *tok = NULL;
    double sign[3], verify[3], sign_cpu[3], verify_cpu[3];
    for (int r = 0; r < 3; r++) {
        uint64_t t0 = now_ns(), c0 = cpu_ns();
        for (unsigned i = 0; i < n; i++) {
            keel_free(tok);
            tok = NULL;
            if (keel_jwt_sign(ks, claims, &tok) != KEEL_OK)
                return 1;
        }
        sign[r] = n / ((double)(now_ns() - t0) / 1e9);
        sign_cpu[r] = (double)(cpu_ns() - c0) / 1e3 / n;
        size_t len = strlen(tok);
        t0 = now_ns();
        c0 = cpu_ns();
        for (unsigned i = 0; i < n; i++) {
            json_t *out = NULL;
            keel_diag d;
            if (keel_jwt_verify(ks, &pol, tok, len, now_s, &out, &d) != KEEL_OK) {
                fprintf(stderr, "jwt_bench: verify: %s\n", d.msg);
                return 1;
            }
            json_decref(out);
        }
        verify[r] = n / ((double)(now_ns() - t0) / 1e9);
        verify_cpu[r] = (double)(cpu_ns() - c0) / 1e3 / n;
    }
    qsort(sign, 3, sizeof(double), cmp);
    qsort(verify, 3, sizeof(double), cmp);
    qsort(sign_cpu, 3, sizeof(double), cmp);
    qsort(verify_cpu, 3, sizeof(double), cmp);
    printf("JWT HS256, seed 002 access-token claims (%zu-byte token), one thread, %u ops x 3 rounds\n",
           strlen(tok), n);
    printf("   sign      %10.0f /s (median)\n", sign[1]);
    printf("   verify    %10.0f /s (median)   target >= 300000 /s   %s\n", verify[1],
           verify[1] >= 300000 ? "ok" : "MISSED");
    printf("   CPU time  sign %.2f us/op (%.0f /CPU-s), verify %.2f us/op (%.0f /CPU-s), medians\n",
           sign_cpu[1], 1e6 / sign_cpu[1], verify_cpu[1], 1e6 / verify_cpu[1]);
    keel_free(tok);
    json_decref(claims);
    keel_jwt_keyset_destroy(ks);
    return 0;
}
