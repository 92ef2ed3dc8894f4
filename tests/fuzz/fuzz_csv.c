/* fuzz_csv.c - arbitrary bytes into the CSV reader and the reconciler (keel/reconcile.h).
 *
 * Input layout: byte 0 picks where the rest is split into the internal and the gateway CSV,
 * byte 1 picks the read size (1..256 bytes, or 64 KiB) so chunk boundaries land everywhere.
 * Checks: no crash/hang/leak; every CSV field lies inside the record limits; a successful run
 * satisfies total == matched + discrepancies, calls the handlers exactly once per discrepancy,
 * and gives the same counts whatever the read size; every error has a terminated message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/reconcile.h>

#include "pay/csv_int.h"

typedef struct src {
    const uint8_t *p;
    size_t len, pos, chunk;
} src;

static long src_read(void *ud, char *buf, size_t cap)
{
    src *s = ud;
    size_t n = s->len - s->pos;
    if (n > cap)
        n = cap;
    if (n > s->chunk)
        n = s->chunk;
    if (n > 0)
        memcpy(buf, s->p + s->pos, n);
    s->pos += n;
    return (long)n;
}

static keel_err count(const keel_recon_discrepancy *d, void *ud)
{
    uint64_t *n = ud;
    if ((d->type == KEEL_RECON_MISSING_INTERNAL) != (d->internal == NULL) ||
        (d->type == KEEL_RECON_MISSING_GATEWAY) != (d->gateway == NULL) || d->id.len == 0)
        abort();
    n[d->type]++;
    return KEEL_OK;
}

static void csv_only(const uint8_t *p, size_t n, size_t chunk)
{
    src s = {p, n, 0, chunk};
    keel__csv *c;
    if (keel__csv_create(&c, src_read, &s, "f") != KEEL_OK)
        return;
    keel_diag d;
    uint64_t last = 0;
    int r;
    while ((r = keel__csv_next(c, &d)) == 1) {
        size_t nf = keel__csv_nfields(c);
        const keel__csv_field *f = keel__csv_fields(c);
        if (nf == 0 || nf > KEEL_RECON_FIELDS_MAX || keel__csv_line(c) <= last)
            abort();
        last = keel__csv_line(c);
        size_t total = 0;
        for (size_t i = 0; i < nf; i++) {
            total += f[i].len;
            if (f[i].line < last || f[i].col == 0 || (i > 0 && f[i].ptr != f[i - 1].ptr +
                                                                             f[i - 1].len))
                abort();
        }
        if (total > KEEL_RECON_RECORD_MAX)
            abort();
    }
    if (r < 0 && memchr(d.msg, '\0', sizeof(d.msg)) == NULL)
        abort();
    keel__csv_destroy(c);
}

/* Returns 1 and fills st/calls when the whole run succeeded. */
static int reconcile(const uint8_t *a, size_t na, const uint8_t *b, size_t nb, size_t chunk,
                     keel_recon_stats *st)
{
    keel_recon *r;
    if (keel_recon_create(&r, NULL) != KEEL_OK)
        abort();
    uint64_t calls[KEEL_RECON_TYPE_COUNT] = {0};
    for (int t = 0; t < KEEL_RECON_TYPE_COUNT; t++)
        if (keel_recon_on(r, (keel_recon_type)t, count, calls) != KEEL_OK)
            abort();
    keel_diag d;
    src sa = {a, na, 0, chunk}, sb = {b, nb, 0, chunk};
    keel_err e = keel_recon_feed_csv(r, KEEL_RECON_INTERNAL, src_read, &sa, NULL, &d);
    if (e == KEEL_OK)
        e = keel_recon_feed_csv(r, KEEL_RECON_GATEWAY, src_read, &sb, NULL, &d);
    if (e == KEEL_OK)
        e = keel_recon_finish(r);
    int ok = e == KEEL_OK;
    if (!ok && memchr(d.msg, '\0', sizeof(d.msg)) == NULL)
        abort();
    keel_recon_stats_get(r, st);
    if (ok) {
        if (st->total != st->matched + st->discrepancies)
            abort();
        for (int t = 0; t < KEEL_RECON_TYPE_COUNT; t++)
            if (calls[t] != st->count[t])
                abort();
        char line[KEEL_RECON_SUMMARY_MAX];
        size_t n = keel_recon_summary(r, line, sizeof(line));
        if (n >= sizeof(line) || strlen(line) != n)
            abort();
    }
    keel_recon_destroy(r);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t rest = size - 2;
    size_t split = (size_t)data[0] * rest / 255;
    size_t chunk = data[1] == 255 ? 65536 : (size_t)data[1] + 1;
    const uint8_t *p = data + 2;
    csv_only(p, rest, chunk);
    keel_recon_stats s1, s2;
    int ok1 = reconcile(p, split, p + split, rest - split, chunk, &s1);
    int ok2 = reconcile(p, split, p + split, rest - split, 65536, &s2);
    if (ok1 != ok2 || (ok1 && memcmp(&s1, &s2, sizeof(s1)) != 0))
        abort();
    return 0;
}
