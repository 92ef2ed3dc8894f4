/* pay_recon_bench.c - reconcile 1 M internal against 1 M gateway rows from CSV files.
 *
 * The two files (~35 MB each, ~0.1% injected discrepancies, gateway in a scrambled order)
 * are generated into a fresh directory under $TMPDIR (default /tmp) first, untimed; then
 * one reconciliation runs, parsing both files, indexing the internal side and streaming the
 * gateway side.  Reported: wall seconds (target <= 2 s) and the process's peak RSS
 * (getrusage ru_maxrss) in MiB.  BENCH_ROWS overrides the row count per side. */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <keel/keel.h>
#include <keel/reconcile.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static keel_err count(const keel_recon_discrepancy *d, void *ud)
{
    (void)d;
    (*(uint64_t *)ud)++;
    return KEEL_OK;
}

static void generate(const char *pin, const char *pgw, uint32_t n)
{
    FILE *fi = fopen(pin, "wb"), *fg = fopen(pgw, "wb");
    if (fi == NULL || fg == NULL) {
        perror("pay_recon_bench: create");
        exit(1);
    }
    fputs("id,amount,currency,status,created_at\n", fi);
    fputs("id,amount,currency,status,fee\n", fg);
    for (uint32_t i = 0; i < n; i++) {
        unsigned cents = (unsigned)(((uint64_t)i * 7919u) % 10000000u);
        fprintf(fi, "ch_%010u,%u.%02u,USD,%s,2026-11-22T10:00:00Z\n", i, cents / 100,
                cents % 100, i % 20 == 0 ? "refunded" : "succeeded");
    }
    /* Scrambled order (stride coprime with n for the default n); 0.1% changed. */
    uint64_t stride = 7777777u;
    for (uint64_t k = 0; k < n; k++) {
        uint32_t i = (uint32_t)((k * stride + 12345u) % n);
        unsigned cents = (unsigned)(((uint64_t)i * 7919u) % 10000000u);
        if (i % 3001 == 1)
            continue; /* missing_gateway */
        if (i % 2003 == 2)
            cents++; /* amount_mismatch */
        fprintf(fg, "ch_%010u,%u.%02u,usd,%s,0.30\n", i, cents / 100, cents % 100,
                i % 4001 == 3 ? "disputed" : i % 20 == 0 ? "refunded" : "succeeded");
    }
    for (uint32_t j = 0; j < n / 3001; j++)
        fprintf(fg, "ch_x%09u,1.00,USD,succeeded,0.30\n", j); /* missing_internal */
    if (fclose(fi) != 0 || fclose(fg) != 0) {
        perror("pay_recon_bench: write");
        exit(1);
    }
}

int main(void)
{
    uint32_t n = getenv("BENCH_ROWS") ? (uint32_t)strtoul(getenv("BENCH_ROWS"), NULL, 10)
                                      : 1000000u;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[512], pin[600], pgw[600];
    snprintf(dir, sizeof(dir), "%s/keel_recon_bench.XXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
        perror("pay_recon_bench: mkdtemp");
        return 1;
    }
    snprintf(pin, sizeof(pin), "%s/internal.csv", dir);
    snprintf(pgw, sizeof(pgw), "%s/gateway.csv", dir);
    generate(pin, pgw, n);

    keel_recon *r;
    uint64_t calls = 0;
    if (keel_recon_create(&r, NULL) != KEEL_OK)
        return 1;
    for (int t = 0; t < KEEL_RECON_TYPE_COUNT; t++)
        if (keel_recon_on(r, (keel_recon_type)t, count, &calls) != KEEL_OK)
            return 1;
    keel_diag d = {0};
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t0 = now_ns();
    keel_err e = keel_recon_feed_csv_file(r, KEEL_RECON_INTERNAL, pin, &d);
    uint64_t t1 = now_ns();
    if (e == KEEL_OK)
        e = keel_recon_feed_csv_file(r, KEEL_RECON_GATEWAY, pgw, &d);
    if (e == KEEL_OK)
        e = keel_recon_finish(r);
    uint64_t t2 = now_ns();
    unlink(pin);
    unlink(pgw);
    rmdir(dir);
    if (e != KEEL_OK) {
        fprintf(stderr, "pay_recon_bench: %s\n", d.msg);
        return 1;
    }
    char line[KEEL_RECON_SUMMARY_MAX];
    keel_recon_summary(r, line, sizeof(line));
    keel_recon_destroy(r);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double secs = (double)(t2 - t0) / 1e9;
    double cpu = (double)(ru.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (double)(ru.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    printf("pay_recon_bench: %u + %u rows\n", n, n);
    printf("  %s\n", line);
    printf("  handler calls             %llu\n", (unsigned long long)calls);
    printf("  wall seconds              %.3f  (internal %.3f, gateway+finish %.3f; target <= 2)\n",
           secs, (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9);
    printf("  CPU seconds (user+sys)    %.3f\n", cpu);
    printf("  rows per second           %.2f M\n", 2.0 * n / secs / 1e6);
    printf("  peak RSS                  %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
    return 0;
}
