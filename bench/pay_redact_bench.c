/* pay_redact_bench.c - throughput of the PCI redactor (src/pay/redact.c).
 *
 * Input: ~64 MiB of generated JSON log lines (timestamps, UUIDs, paths with ids, durations,
 * amounts: digits and 'c's everywhere, as in real logs), in three cases:
 *   clean     no card data at all (the log hook's common case: nothing is copied)
 *   pan/1KB   the same lines with a card number in a message about every 1 KB
 *   prose     plain text without digits (the best case of the clean path)
 * For each case: the one-shot keel_redact() into a reused keel_buf, and a keel_redactor fed
 * 64 KiB chunks into a sink that only counts bytes.  Rounds are interleaved and the median
 * reported, as MB/s (10^6 bytes) of wall-clock time and of the thread's CPU time.  Targets (issue): >= 1 GB/s clean, >= 300 MB/s with a PAN every 1 KB.
 * BENCH_MIB sets the input size (default 64), BENCH_ROUNDS the rounds (default 5). */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keel/keel.h>
#include <keel/redact.h>

/* Wall-clock and this thread's CPU time: on a shared box the CPU figure is the steadier. */
static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct stamp {
    uint64_t wall, cpu;
} stamp;

static stamp now(void)
{
    stamp s = {clock_ns(CLOCK_MONOTONIC), clock_ns(CLOCK_THREAD_CPUTIME_ID)};
    return s;
}

/* MB/s (10^6 bytes) of len bytes between a and b: wall-clock into *wall, CPU into *cpu. */
static void rate(size_t len, stamp a, stamp b, double *wall, double *cpu)
{
    *wall = (double)len / ((double)(b.wall - a.wall + 1) / 1e9) / 1e6;
    *cpu = (double)len / ((double)(b.cpu - a.cpu + 1) / 1e9) / 1e6;
}

static uint32_t g_rng = 12345;
static uint32_t next_u32(void)
{
    g_rng = g_rng * 1103515245u + 12345u;
    return g_rng >> 8;
}

static const char *const g_paths[] = {"/api/v1/orders", "/api/v1/customers", "/api/v1/charges",
                                      "/health/live", "/api/v1/refunds"};
static const char *const g_msgs[] = {
    "request completed", "cache miss for product catalogue", "charge captured",
    "customer record updated", "connection pool checkout took longer than expected"};

/* One clean log line at p (at most 400 bytes); returns its length.  The request id is
 * UUID-shaped, with letters placed so that no digit chain in it passes 12 digits: a random
 * UUID whose first groups are all digits forms a 13-19 digit chain passing Luhn about once in
 * 20000, and the "clean" case must hold no card number at all. */
static size_t clean_line(char *p, size_t cap)
{
    uint32_t r = next_u32();
    int n = snprintf(p, cap,
                     "{\"timestamp\":\"2024-01-%02uT%02u:%02u:%02u.%03uZ\",\"level\":\"INFO\","
                     "\"logger\":\"app.http.access\",\"message\":\"%s\",\"module\":\"server\","
                     "\"function\":\"handle_request\",\"line\":%u,\"request_id\":"
                     "\"%08x-%04x-4%03x-a%03x-b%07x%04x\",\"extra\":{\"method\":\"GET\",\"path\":"
                     "\"%s/%u\",\"status\":200,\"duration_ms\":%u.%02u,\"amount\":%u.%02u}}\n",
                     1 + r % 28, r % 24, r % 60, (r >> 3) % 60, r % 1000, g_msgs[r % 5],
                     100 + r % 900, next_u32() | 0xa0000000u, (r & 0xfff) | 0xa000, r & 0xfff,
                     (r >> 4) & 0xfff, next_u32(), r & 0xffff, g_paths[(r >> 5) % 5], r % 100000, r % 500, r % 100,
                     r % 10000, (r >> 2) % 100);
    return n > 0 ? (size_t)n : 0;
}

static const char *const g_cards[] = {"4111 1111 1111 1111", "5555-5555-5555-4444",
                                      "378282246310005", "6011 0009 9013 9424"};

static size_t pan_line(char *p, size_t cap)
{
    uint32_t r = next_u32();
    int n = snprintf(p, cap,
                     "{\"timestamp\":\"2024-01-15T12:30:45.123Z\",\"level\":\"WARNING\","
                     "\"logger\":\"app.pay\",\"message\":\"support note: card %s declined\","
                     "\"request_id\":\"%08x\"}\n",
                     g_cards[r % 4], r);
    return n > 0 ? (size_t)n : 0;
}

static size_t prose_line(char *p, size_t cap)
{
    static const char *const words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy",
                                        "dog", "while", "server", "handles", "requests"};
    size_t o = 0;
    for (int k = 0; k < 30 && o + 16 < cap; k++) {
        const char *w = words[next_u32() % 12];
        size_t m = strlen(w);
        memcpy(p + o, w, m);
        o += m;
        p[o++] = ' ';
    }
    p[o++] = '\n';
    return o;
}

/* kind 0 clean, 1 PAN about every 1 KB, 2 prose. */
static char *make_input(int kind, size_t size, size_t *len)
{
    char *buf = malloc(size + 512);
    if (buf == NULL) {
        fprintf(stderr, "pay_redact_bench: out of memory\n");
        exit(1);
    }
    size_t n = 0, since_pan = 0;
    while (n < size) {
        size_t m;
        if (kind == 2) {
            m = prose_line(buf + n, 512);
        } else if (kind == 1 && since_pan >= 1024 - 150) {
            m = pan_line(buf + n, 512);
            since_pan = 0;
        } else {
            m = clean_line(buf + n, 512);
            since_pan += m;
        }
        n += m;
    }
    *len = n;
    return buf;
}

static keel_err count_sink(void *ud, const char *p, size_t n)
{
    (void)p;
    *(size_t *)ud += n;
    return KEEL_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAX_ROUNDS 31

int main(void)
{
    size_t mib = 64;
    int rounds = 5;
    const char *e = getenv("BENCH_MIB");
    if (e != NULL && strtoul(e, NULL, 10) > 0)
        mib = strtoul(e, NULL, 10);
    e = getenv("BENCH_ROUNDS");
    if (e != NULL && strtol(e, NULL, 10) > 0)
        rounds = (int)strtol(e, NULL, 10);
    if (rounds > MAX_ROUNDS)
        rounds = MAX_ROUNDS;
    static const char *const names[] = {"clean", "pan/1KB", "prose"};
    keel_buf out;
    keel_buf_init(&out, mib * 3 * 1024 * 1024 + 4096);
    printf("pay_redact_bench: %zu MiB per case, median of %d rounds\n", mib, rounds);
    for (int kind = 0; kind < 3; kind++) {
        size_t len;
        char *in = make_input(kind, mib * 1024 * 1024, &len);
        double one[MAX_ROUNDS], str[MAX_ROUNDS], one_cpu[MAX_ROUNDS], str_cpu[MAX_ROUNDS];
        keel_redact_stats st = {0, 0, 0}, ss = {0, 0, 0};
        size_t produced = 0;
        for (int r = 0; r < rounds; r++) {
            keel_buf_reset(&out);
            stamp t0 = now();
            if (keel_redact(in, len, &out, &st) != KEEL_OK) {
                fprintf(stderr, "pay_redact_bench: keel_redact failed\n");
                return 1;
            }
            stamp t1 = now();
            rate(len, t0, t1, &one[r], &one_cpu[r]);

            keel_redactor *rd;
            produced = 0;
            if (keel_redactor_create(&rd, count_sink, &produced) != KEEL_OK)
                return 1;
            t0 = now();
            for (size_t off = 0; off < len; off += 65536) {
                size_t m = len - off < 65536 ? len - off : 65536;
                if (keel_redactor_feed(rd, in + off, m) != KEEL_OK)
                    return 1;
            }
            if (keel_redactor_finish(rd) != KEEL_OK)
                return 1;
            t1 = now();
            keel_redactor_stats_get(rd, &ss);
            keel_redactor_destroy(rd);
            rate(len, t0, t1, &str[r], &str_cpu[r]);
        }
        qsort(one, (size_t)rounds, sizeof one[0], cmp_double);
        qsort(str, (size_t)rounds, sizeof str[0], cmp_double);
        qsort(one_cpu, (size_t)rounds, sizeof one_cpu[0], cmp_double);
        qsort(str_cpu, (size_t)rounds, sizeof str_cpu[0], cmp_double);
        if (st.pans != ss.pans || (st.pans > 0 && produced != out.len)) {
            fprintf(stderr, "pay_redact_bench: one-shot and stream disagree\n");
            return 1;
        }
        printf("%-8s one-shot %6.0f MB/s (cpu %6.0f)   stream %6.0f MB/s (cpu %6.0f)   "
               "[%zu bytes, %llu PANs]\n",
               names[kind], one[rounds / 2], one_cpu[rounds / 2], str[rounds / 2],
               str_cpu[rounds / 2], len, (unsigned long long)st.pans);
        free(in);
    }
    keel_buf_cleanup(&out);
    return 0;
}
