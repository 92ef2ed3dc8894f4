/* fuzz_redact.c - the PCI redactor (src/pay/redact.c): log text is untrusted input.
 *
 * The whole input is the text; its first two bytes also seed two chunkings.  Invariants:
 *  - streaming, with either chunking, gives exactly the one-shot output and counts, and never
 *    holds back KEEL_REDACT_LOOKAHEAD bytes or more;
 *  - redaction is idempotent: redacting the output again finds nothing;
 *  - independent oracle: the output holds no run of 13-19 digits, delimited by non-digits,
 *    that passes Luhn;
 *  - keel_redact_needed() agrees with keel_redact(). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/redact.h>
#include <keel/tokenizer.h>

#include "pay/redact_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct out_buf {
    char *p;
    size_t len, cap;
} out_buf;

static keel_err sink(void *ud, const char *p, size_t n)
{
    out_buf *o = ud;
    if (o->len + n > o->cap) {
        size_t cap = (o->len + n) * 2 + 64;
        char *q = realloc(o->p, cap);
        if (q == NULL)
            abort();
        o->p = q;
        o->cap = cap;
    }
    memcpy(o->p + o->len, p, n);
    o->len += n;
    return KEEL_OK;
}

static void stream(const uint8_t *data, size_t size, uint32_t seed, uint32_t maxchunk,
                   out_buf *o, keel_redact_stats *st)
{
    keel_redactor *r;
    memset(o, 0, sizeof *o);
    if (keel_redactor_create(&r, sink, o) != KEEL_OK)
        abort();
    size_t off = 0;
    while (off < size) {
        seed = seed * 1103515245u + 12345u;
        size_t m = 1 + (size_t)((seed >> 16) % maxchunk);
        if (m > size - off)
            m = size - off;
        if (keel_redactor_feed(r, (const char *)data + off, m) != KEEL_OK)
            abort();
        if (keel__redactor_pending(r) >= KEEL_REDACT_LOOKAHEAD)
            abort();
        off += m;
    }
    if (keel_redactor_finish(r) != KEEL_OK)
        abort();
    keel_redactor_stats_get(r, st);
    keel_redactor_destroy(r);
}

static int same_stats(const keel_redact_stats *a, const keel_redact_stats *b)
{
    return a->pans == b->pans && a->cvvs == b->cvvs && a->tracks == b->tracks;
}

static void check_no_luhn_run(const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (p[i] < '0' || p[i] > '9') {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && p[j] >= '0' && p[j] <= '9')
            j++;
        if (j - i >= 13 && j - i <= 19 && keel_card_luhn_valid((keel_str){(const char *)p + i, j - i})) {
            fprintf(stderr, "fuzz_redact: Luhn-valid run left at %zu: %.*s\n", i, (int)(j - i),
                    p + i);
            abort();
        }
        i = j;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    const char *in = (const char *)data;
    keel_buf b;
    keel_buf_init(&b, size * 3 + 64);
    keel_redact_stats st, s1, s2;
    if (keel_redact(in, size, &b, &st) != KEEL_OK)
        abort();
    int dirty = st.pans + st.cvvs + st.tracks > 0;
    if (dirty != (b.len > 0) || keel_redact_needed(in, size) != dirty)
        abort();
    const char *want = dirty ? b.ptr : in;
    size_t want_len = dirty ? b.len : size;

    uint32_t seed1 = size > 0 ? data[0] : 1, seed2 = size > 1 ? data[1] : 2;
    out_buf o1, o2;
    stream(data, size, seed1 * 2654435761u, 1 + seed1 % 97, &o1, &s1);
    stream(data, size, seed2 * 40503u + 7, 1 + seed2 % 300, &o2, &s2);
    if (o1.len != want_len || (want_len > 0 && memcmp(o1.p, want, want_len) != 0) ||
        !same_stats(&st, &s1))
        abort();
    if (o2.len != want_len || (want_len > 0 && memcmp(o2.p, want, want_len) != 0) ||
        !same_stats(&st, &s2))
        abort();

    /* idempotence */
    keel_buf again;
    keel_buf_init(&again, want_len * 3 + 64);
    keel_redact_stats s3;
    if (keel_redact(want, want_len, &again, &s3) != KEEL_OK)
        abort();
    if (s3.pans + s3.cvvs + s3.tracks != 0 || again.len != 0) {
        fprintf(stderr, "fuzz_redact: not idempotent: %.*s\n", (int)want_len, want);
        abort();
    }
    check_no_luhn_run(want, want_len);

    keel_buf_cleanup(&again);
    free(o1.p);
    free(o2.p);
    keel_buf_cleanup(&b);
    return 0;
}
