/* redact.c - PCI-aware redaction of PANs, CVVs and track data (include/keel/redact.h has the
 * exact rules).
 *
 * Design: one left-to-right scanner, scan(), shared by the one-shot and the streaming API.
 * Every decision at a position reads a bounded number of bytes ahead (at most about 82; the
 * budget is KEEL_REDACT_LOOKAHEAD) and one byte behind: the last byte written, kept in the
 * state.  When a matcher would read past the end of a non-final buffer it answers R_MORE and
 * scan() stops there, so the streaming redactor holds back only the undecided tail and
 * resumes at the same position with the same state: the output cannot depend on chunking.
 *
 * The clean path: SSE2 (a byte loop elsewhere) computes, 64 bytes at a time, a bit mask of
 * the only positions that can start a match: a digit after a non-digit, '%', ';', and a 'c'
 * or 'C' after a byte that is not a letter or digit; the bits are then consumed in order.  A
 * digit group of fewer than 13 digits that no separator extends is rejected on the spot, so
 * a typical log line (timestamps, ids, durations) costs a few compares per candidate.
 */
#include "keel_int.h"

#include <keel/redact.h>

#include "redact_int.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ------------------------------------------------------------- classes -- */

enum {
    C_DIGIT = 1,
    C_ALNUM = 2,
    C_START = 4,  /* may start a match: digit % ; c C */
    C_T1 = 8,     /* track 1 name / discretionary byte: printable ASCII except % ^ ? * [ ] */
    C_T2 = 16,    /* track 2 data after the PAN: 0-9 = : < > */
    C_SPACE = 32  /* space or tab (CVV label padding) */
};

/* Byte classes, generated from the definitions above (rows of 16 bytes from 0x00). */
static const unsigned char g_cls[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0, 32,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    40,  8,  8,  8,  8,  4,  8,  8,  8,  8,  0,  8,  8,  8,  8,  8,
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 24, 12, 24, 24, 24,  0,
     8, 10, 10, 14, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,  0,  8,  0,  0,  8,
     8, 10, 10, 14, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,  8,  8,  8,  8,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
};

#define IS(c, k) ((g_cls[(unsigned char)(c)] & (k)) != 0)

/* ------------------------------------------------------------ matchers -- */

enum { R_NO = 0, R_YES = 1, R_MORE = 2 };

/* The bytes a matcher may look at.  at() gives a byte, AT_EOF past the end of final input, or
 * AT_MORE past the end of a non-final buffer (the matcher must then answer R_MORE). */
typedef struct rctx {
    const unsigned char *p;
    size_t n;
    int final;
} rctx;

#define AT_EOF (-1)
#define AT_MORE (-2)

static int at(const rctx *c, size_t i)
{
    if (i < c->n)
        return c->p[i];
    return c->final ? AT_EOF : AT_MORE;
}

#define PAN_MIN 13
#define PAN_MAX 19
#define CVV_PAD_MAX 16
#define TRACK_PAN_MIN 8
#define TRACK1_INNER_MAX 79
#define TRACK1_NAME_MAX 26
#define TRACK2_INNER_MAX 40

typedef struct pan_match {
    size_t end;            /* index just past the candidate's last digit */
    unsigned ndigits;      /* digits in the candidate, a virtual prefix included */
    unsigned char last4[4]; /* its last four digits */
} pan_match;

/* Luhn accumulator: a[q] sums the digits with those at even (q = 0) or odd (q = 1) indices
 * from the left doubled.  A candidate of n digits doubles the indices i with n - 1 - i odd,
 * i.e. i = n (mod 2), so it is valid iff a[n & 1] % 10 == 0. */
typedef struct luhn_acc {
    unsigned a[2];
    unsigned nd;
} luhn_acc;

static void luhn_add(luhn_acc *l, unsigned char ch)
{
    static const unsigned char dbl[10] = {0, 2, 4, 6, 8, 1, 3, 5, 7, 9};
    unsigned d = (unsigned)(ch - '0');
    unsigned q = l->nd & 1u;
    l->a[q] += dbl[d];
    l->a[q ^ 1u] += d;
    l->nd++;
}

/* The last four digits before end (separators skipped); the candidate holds at least nine
 * digits of its own after any virtual prefix, so they are all in the buffer. */
static void last_four(const rctx *c, size_t end, unsigned char out[4])
{
    int k = 4;
    while (k > 0 && end > 0) {
        unsigned char ch = c->p[--end];
        if (IS(ch, C_DIGIT))
            out[--k] = ch;
    }
}

/* PAN candidates starting at s (a group start), or, with a 4-digit prefix (the kept digits of
 * the PAN just masked), continuing the prefix through a separator at s.  Sets *m to the
 * longest valid candidate.  Reads at most s + 2 * PAN_MAX + 2 bytes. */
static int match_pan(const rctx *c, size_t s, const unsigned char *prefix, unsigned npre,
                     pan_match *m)
{
    luhn_acc l;
    int found = 0;
    size_t i = s;
    memset(&l, 0, sizeof l);
    for (unsigned k = 0; k < npre; k++)
        luhn_add(&l, prefix[k]);
    int in_group = npre == 0; /* with a prefix, s is where a separator must be */
    for (;;) {
        if (in_group) {
            for (;;) {
                int ch = at(c, i);
                if (ch == AT_MORE)
                    return R_MORE;
                if (ch < 0 || !IS(ch, C_DIGIT))
                    break;
                if (l.nd == PAN_MAX) /* this group cannot end within 19 digits */
                    goto done;
                luhn_add(&l, (unsigned char)ch);
                i++;
            }
            if (l.nd >= PAN_MIN && l.a[l.nd & 1u] % 10 == 0) {
                found = 1;
                m->end = i;
                m->ndigits = l.nd;
            }
        }
        in_group = 1;
        if (l.nd >= PAN_MAX)
            break;
        int ch = at(c, i);
        if (ch == AT_MORE)
            return R_MORE;
        if (ch != ' ' && ch != '-')
            break;
        int ch2 = at(c, i + 1);
        if (ch2 == AT_MORE)
            return R_MORE;
        if (ch2 < 0 || !IS(ch2, C_DIGIT))
            break;
        i++;
    }
done:
    if (!found)
        return R_NO;
    last_four(c, m->end, m->last4);
    return R_YES;
}

/* An optional quote at *i: " or ', or a backslash-escaped one.  R_MORE or R_NO/R_YES (the
 * latter only says the scan may go on; *i is advanced past a quote if there is one). */
static int skip_quote(const rctx *c, size_t *i)
{
    int ch = at(c, *i);
    if (ch == AT_MORE)
        return R_MORE;
    if (ch == '"' || ch == '\'') {
        (*i)++;
    } else if (ch == '\\') {
        int ch2 = at(c, *i + 1);
        if (ch2 == AT_MORE)
            return R_MORE;
        if (ch2 == '"' || ch2 == '\'')
            *i += 2;
    }
    return R_YES;
}

static int skip_pad(const rctx *c, size_t *i)
{
    for (unsigned k = 0;; k++) {
        int ch = at(c, *i);
        if (ch == AT_MORE)
            return R_MORE;
        if (ch < 0 || !IS(ch, C_SPACE))
            return R_YES;
        if (k == CVV_PAD_MAX)
            return R_NO;
        (*i)++;
    }
}

static int lower(int ch)
{
    return (ch >= 'A' && ch <= 'Z') ? ch + ('a' - 'A') : ch;
}

/* CVV at s (a 'c' or 'C' starting a word): on R_YES, the value is [*vs, *ve). */
static int match_cvv(const rctx *c, size_t s, size_t *vs, size_t *ve)
{
    int l1 = lower(at(c, s + 1));
    if (l1 == AT_MORE)
        return R_MORE;
    if (l1 != 'v' && l1 != 'i')
        return R_NO;
    int l2 = lower(at(c, s + 2));
    if (l2 == AT_MORE)
        return R_MORE;
    size_t i;
    if (l1 == 'i') {
        if (l2 != 'd')
            return R_NO;
        i = s + 3;
    } else {
        if (l2 != 'v' && l2 != 'c')
            return R_NO;
        i = s + 3;
        int l3 = at(c, i);
        if (l3 == AT_MORE)
            return R_MORE;
        if (l3 == '2')
            i++;
    }
    if (skip_quote(c, &i) == R_MORE)
        return R_MORE;
    int r = skip_pad(c, &i);
    if (r != R_YES)
        return r;
    int ch = at(c, i);
    if (ch == AT_MORE)
        return R_MORE;
    if (ch != ':' && ch != '=')
        return R_NO;
    i++;
    r = skip_pad(c, &i);
    if (r != R_YES)
        return r;
    if (skip_quote(c, &i) == R_MORE)
        return R_MORE;
    size_t v = i;
    for (;;) {
        ch = at(c, i);
        if (ch == AT_MORE)
            return R_MORE;
        if (ch < 0 || !IS(ch, C_DIGIT))
            break;
        if (i - v == 4) /* a fifth digit */
            return R_NO;
        i++;
    }
    if (i - v < 3)
        return R_NO;
    /* The PAN rule has priority over the CVV rule for the same digits. */
    pan_match m;
    r = match_pan(c, v, NULL, 0, &m);
    if (r != R_NO)
        return r == R_MORE ? R_MORE : R_NO;
    *vs = v;
    *ve = i;
    return R_YES;
}

/* Digits of a track PAN at *i, then the byte sep. */
static int track_pan(const rctx *c, size_t *i, int sep)
{
    size_t d = *i;
    for (;;) {
        int ch = at(c, *i);
        if (ch == AT_MORE)
            return R_MORE;
        if (ch == sep)
            break;
        if (ch < 0 || !IS(ch, C_DIGIT) || *i - d == PAN_MAX)
            return R_NO;
        (*i)++;
    }
    if (*i - d < TRACK_PAN_MIN)
        return R_NO;
    (*i)++;
    return R_YES;
}

/* Track 1 at s ('%'): on R_YES the track is [s, *end). */
static int match_track1(const rctx *c, size_t s, size_t *end)
{
    int ch = at(c, s + 1);
    if (ch == AT_MORE)
        return R_MORE;
    if (ch != 'B')
        return R_NO;
    size_t i = s + 2;
    int r = track_pan(c, &i, '^');
    if (r != R_YES)
        return r;
    size_t name = i;
    for (;;) {
        ch = at(c, i);
        if (ch == AT_MORE)
            return R_MORE;
        if (ch == '^')
            break;
        if (ch < 0 || !IS(ch, C_T1) || i - name == TRACK1_NAME_MAX)
            return R_NO;
        i++;
    }
    i++;
    for (;;) {
        if (i - (s + 1) > TRACK1_INNER_MAX)
            return R_NO;
        ch = at(c, i);
        if (ch == AT_MORE)
            return R_MORE;
        if (ch == '?')
            break;
        if (ch < 0 || !IS(ch, C_T1))
            return R_NO;
        i++;
    }
    *end = i + 1;
    return R_YES;
}

/* Track 2 at s (';'): on R_YES the track is [s, *end). */
static int match_track2(const rctx *c, size_t s, size_t *end)
{
    size_t i = s + 1;
    int r = track_pan(c, &i, '=');
    if (r != R_YES)
        return r;
    for (;;) {
        if (i - (s + 1) > TRACK2_INNER_MAX)
            return R_NO;
        int ch = at(c, i);
        if (ch == AT_MORE)
            return R_MORE;
        if (ch == '?')
            break;
        if (ch < 0 || !IS(ch, C_T2))
            return R_NO;
        i++;
    }
    *end = i + 1;
    return R_YES;
}

/* ------------------------------------------------------------- scanner -- */

/* Where output goes: write(em, p, n, raw).  raw = 1 for input bytes written unchanged (in
 * input order, without gaps before the first replacement), 0 for replacement text. */
typedef struct remit remit;
struct remit {
    keel_err (*write)(remit *em, const char *p, size_t n, int raw);
};

typedef struct rstate {
    unsigned char prev;       /* last byte written (0 at the start: a boundary) */
    unsigned char npending;   /* 4 while the kept digits of a masked PAN are not written yet */
    unsigned char pending[4];
    keel_redact_stats stats;
} rstate;

static const char g_stars[PAN_MAX + 1] = "*******************";

/* 1 if ch, after the byte prev, may start a match: a digit starting a group, '%', ';', or a
 * 'c'/'C' starting a word. */
static int is_start(unsigned char ch, unsigned char prev)
{
    unsigned char k = g_cls[ch];
    if ((k & C_START) == 0)
        return 0;
    if (k & C_DIGIT)
        return !IS(prev, C_DIGIT);
    if (ch == '%' || ch == ';')
        return 1;
    return !IS(prev, C_ALNUM);
}

/* Candidate positions, a 64-byte block at a time: bit k of mask is set when position
 * base + k may start a match, judged with the raw byte before it.  A block is computed once
 * and its bits consumed in order, so a hit costs a bit scan rather than a new vector scan. */
typedef struct hits {
    size_t base;   /* first position of the block */
    uint64_t mask; /* its candidate bits (bits already passed are cleared as we go) */
    int valid;
} hits;

#if defined(__SSE2__)
static unsigned block16(const unsigned char *p)
{
    const __m128i d_lo = _mm_set1_epi8('0' - 1), d_hi = _mm_set1_epi8('9' + 1);
    const __m128i a_lo = _mm_set1_epi8('a' - 1), a_hi = _mm_set1_epi8('z' + 1);
    const __m128i pct = _mm_set1_epi8('%'), semi = _mm_set1_epi8(';');
    const __m128i cc = _mm_set1_epi8('c'), x20 = _mm_set1_epi8(0x20);
    /* v: 16 bytes at p; w: the byte before each of them */
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i w = _mm_loadu_si128((const __m128i *)(const void *)(p - 1));
    __m128i vd = _mm_and_si128(_mm_cmpgt_epi8(v, d_lo), _mm_cmplt_epi8(v, d_hi));
    __m128i wd = _mm_and_si128(_mm_cmpgt_epi8(w, d_lo), _mm_cmplt_epi8(w, d_hi));
    __m128i wl = _mm_or_si128(w, x20);
    __m128i wa =
        _mm_or_si128(wd, _mm_and_si128(_mm_cmpgt_epi8(wl, a_lo), _mm_cmplt_epi8(wl, a_hi)));
    __m128i hit = _mm_andnot_si128(wd, vd); /* a digit after a non-digit */
    hit = _mm_or_si128(hit, _mm_andnot_si128(wa, _mm_cmpeq_epi8(_mm_or_si128(v, x20), cc)));
    hit = _mm_or_si128(hit, _mm_or_si128(_mm_cmpeq_epi8(v, pct), _mm_cmpeq_epi8(v, semi)));
    return (unsigned)_mm_movemask_epi8(hit);
}
#endif

/* Next position in [i, n) that may start a match, or n.  prev0 is the byte before position i
 * (the last byte written, which differs from p[i - 1] right after a match); later positions
 * use the raw byte before them, which will be written unchanged if no match starts first. */
static size_t next_start(hits *h, const unsigned char *p, size_t i, size_t n,
                         unsigned char prev0)
{
    if (i >= n)
        return n;
    if (is_start(p[i], prev0))
        return i;
    i++;
#if defined(__SSE2__)
    for (;;) {
        if (h->valid && i >= h->base && i < h->base + 64) {
            uint64_t m = h->mask & (~(uint64_t)0 << (i - h->base));
            if (m != 0)
                return h->base + (size_t)__builtin_ctzll(m);
            i = h->base + 64;
        }
        if (i + 64 > n)
            break;
        h->base = i;
        h->mask = (uint64_t)block16(p + i) | (uint64_t)block16(p + i + 16) << 16 |
                  (uint64_t)block16(p + i + 32) << 32 | (uint64_t)block16(p + i + 48) << 48;
        h->valid = 1;
    }
#else
    (void)h;
#endif
    while (i < n && !is_start(p[i], p[i - 1]))
        i++;
    return i;
}

static size_t skip_digits(const unsigned char *p, size_t i, size_t n)
{
    while (i < n && IS(p[i], C_DIGIT))
        i++;
    return i;
}

/* Write the raw span [from, to) of p and remember its last byte. */
static keel_err flush_raw(rstate *st, remit *em, const unsigned char *p, size_t from, size_t to)
{
    if (to <= from)
        return KEEL_OK;
    st->prev = p[to - 1];
    return em->write(em, (const char *)p + from, to - from, 1);
}

/* Write the mask of a PAN of nd digits (all but the last four) and hold its last four back. */
static keel_err emit_mask(rstate *st, remit *em, const pan_match *m)
{
    st->stats.pans++;
    memcpy(st->pending, m->last4, 4);
    st->npending = 4;
    st->prev = '*';
    return em->write(em, g_stars, m->ndigits - 4, 0);
}

/* Scan p[0..n).  With final = 0, stops where a decision needs bytes past n; *consumed tells
 * how far it got (everything before is written).  With final = 1 consumes everything. */
static keel_err scan(rstate *st, const unsigned char *p, size_t n, int final, remit *em,
                     size_t *consumed)
{
    rctx c = {p, n, final};
    hits h = {0, 0, 0};
    size_t i = 0, cs = 0; /* cs: start of the raw span not written yet */
    keel_err e = KEEL_OK;
    pan_match m;
    for (;;) {
        if (st->npending) {
            /* The kept digits of the PAN just masked: do they start another PAN? */
            int r = match_pan(&c, i, st->pending, 4, &m);
            if (r == R_MORE)
                break;
            if (r == R_YES) {
                e = emit_mask(st, em, &m);
                if (e != KEEL_OK)
                    return e;
                i = cs = m.end;
                continue;
            }
            st->npending = 0;
            st->prev = st->pending[3];
            e = em->write(em, (const char *)st->pending, 4, 0);
            if (e != KEEL_OK)
                return e;
        }
        /* The byte before i is the last one written (st->prev) or a raw byte not written
         * yet but that will be written unchanged, unless a match starts before it. */
        i = next_start(&h, p, i, n, i > cs ? p[i - 1] : st->prev);
        if (i >= n)
            break;
        unsigned char ch = p[i];
        int r;
        if (IS(ch, C_DIGIT)) {
            /* Fast reject: a group of fewer than 13 digits that no separator extends. */
            size_t j = i + 1;
            while (j < n && j - i < PAN_MIN && IS(p[j], C_DIGIT))
                j++;
            if (j - i < PAN_MIN && j + 1 < n &&
                !((p[j] == ' ' || p[j] == '-') && IS(p[j + 1], C_DIGIT))) {
                i = j;
                continue;
            }
            r = match_pan(&c, i, NULL, 0, &m);
            if (r == R_MORE)
                break;
            if (r == R_NO) {
                i = skip_digits(p, i + 1, n);
                continue;
            }
            e = flush_raw(st, em, p, cs, i);
            if (e == KEEL_OK)
                e = emit_mask(st, em, &m);
            if (e != KEEL_OK)
                return e;
            i = cs = m.end;
        } else if (ch == '%' || ch == ';') {
            size_t end = 0;
            r = ch == '%' ? match_track1(&c, i, &end) : match_track2(&c, i, &end);
            if (r == R_MORE)
                break;
            if (r == R_NO) {
                i++;
                continue;
            }
            e = flush_raw(st, em, p, cs, i);
            if (e == KEEL_OK)
                e = em->write(em, KEEL_REDACT_TRACK, sizeof(KEEL_REDACT_TRACK) - 1, 0);
            if (e != KEEL_OK)
                return e;
            st->stats.tracks++;
            st->prev = ']';
            i = cs = end;
        } else {
            size_t vs = 0, ve = 0;
            r = match_cvv(&c, i, &vs, &ve);
            if (r == R_MORE)
                break;
            if (r == R_NO) {
                i++;
                continue;
            }
            e = flush_raw(st, em, p, cs, vs);
            if (e == KEEL_OK)
                e = em->write(em, KEEL_REDACT_CVV, sizeof(KEEL_REDACT_CVV) - 1, 0);
            if (e != KEEL_OK)
                return e;
            st->stats.cvvs++;
            st->prev = ']';
            i = cs = ve;
        }
    }
    if (i > n)
        i = n;
    *consumed = i;
    return flush_raw(st, em, p, cs, i);
}

/* ------------------------------------------------------------- one-shot -- */

/* One-shot output: nothing is copied until the first replacement; then the clean prefix
 * (the raw bytes seen so far, which are exactly in[0..nraw)) is copied and everything after
 * is appended. */
typedef struct oneshot_emit {
    remit base;
    const char *in;
    size_t nraw;
    int dirty;
    int dry; /* keel_redact_needed(): stop at the first replacement */
    keel_buf *out;
} oneshot_emit;

static keel_err oneshot_write(remit *em, const char *p, size_t n, int raw)
{
    oneshot_emit *o = (oneshot_emit *)(void *)em;
    if (!o->dirty) {
        if (raw) {
            o->nraw += n;
            return KEEL_OK;
        }
        o->dirty = 1;
        if (o->dry)
            return KEEL_EEXIST; /* internal signal: something would be redacted */
        keel_err e = keel_buf_append(o->out, o->in, o->nraw);
        if (e != KEEL_OK)
            return e;
    }
    return keel_buf_append(o->out, p, n);
}

keel_err keel_redact(const char *in, size_t len, keel_buf *out, keel_redact_stats *stats)
{
    if (stats != NULL)
        memset(stats, 0, sizeof *stats);
    if (out == NULL || (in == NULL && len > 0))
        return KEEL_EINVAL;
    if (len == 0)
        return KEEL_OK;
    rstate st;
    memset(&st, 0, sizeof st);
    oneshot_emit o = {{oneshot_write}, in, 0, 0, 0, out};
    size_t used = 0;
    keel_err e = scan(&st, (const unsigned char *)in, len, 1, &o.base, &used);
    if (e == KEEL_OK && stats != NULL)
        *stats = st.stats;
    return e;
}

int keel_redact_needed(const char *in, size_t len)
{
    if (in == NULL || len == 0)
        return 0;
    rstate st;
    memset(&st, 0, sizeof st);
    oneshot_emit o = {{oneshot_write}, in, 0, 0, 1, NULL};
    size_t used = 0;
    return scan(&st, (const unsigned char *)in, len, 1, &o.base, &used) == KEEL_EEXIST;
}

char *keel_redact_dup(keel_str in, size_t *out_len)
{
    if (out_len != NULL)
        *out_len = 0;
    if (in.ptr == NULL && in.len > 0)
        return NULL;
    if (in.len > (SIZE_MAX - 64) / 3)
        return NULL;
    keel_buf b;
    /* A replacement is at most 3 times what it replaces, plus 16 bytes. */
    keel_buf_init(&b, in.len * 3 + 64);
    keel_redact_stats s;
    keel_err e = keel_redact(in.ptr, in.len, &b, &s);
    if (e == KEEL_OK && s.pans + s.cvvs + s.tracks == 0)
        e = keel_buf_append(&b, in.ptr, in.len);
    if (e != KEEL_OK) {
        keel_buf_cleanup(&b);
        return NULL;
    }
    return keel_buf_take(&b, out_len);
}

/* ------------------------------------------------------------ streaming -- */

/* The tail buffer: the held-back bytes (< KEEL_REDACT_LOOKAHEAD) plus room to append new
 * input before scanning again. */
#define TAIL_CAP (2 * KEEL_REDACT_LOOKAHEAD)

enum { RS_OPEN = 0, RS_FINISHED = 1, RS_FAILED = 2 };

typedef struct stream_emit {
    remit base;
    keel_redact_write_fn sink;
    void *ud;
} stream_emit;

struct keel_redactor {
    rstate st;
    stream_emit em;
    int state;
    size_t tail_len;
    unsigned char tail[TAIL_CAP];
};

static keel_err stream_write(remit *em, const char *p, size_t n, int raw)
{
    stream_emit *s = (stream_emit *)(void *)em;
    (void)raw;
    if (n == 0)
        return KEEL_OK;
    return s->sink(s->ud, p, n);
}

keel_err keel_redactor_create(keel_redactor **out, keel_redact_write_fn sink, void *ud)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    if (sink == NULL)
        return KEEL_EINVAL;
    keel_redactor *r = keel__new(keel_redactor);
    if (r == NULL)
        return KEEL_ENOMEM;
    r->em.base.write = stream_write;
    r->em.sink = sink;
    r->em.ud = ud;
    *out = r;
    return KEEL_OK;
}

static keel_err fail(keel_redactor *r, keel_err e)
{
    r->state = RS_FAILED;
    return e;
}

keel_err keel_redactor_feed(keel_redactor *r, const char *buf, size_t n)
{
    if (r == NULL || (buf == NULL && n > 0))
        return KEEL_EINVAL;
    if (r->state != RS_OPEN)
        return KEEL_ESTATE;
    const unsigned char *p = (const unsigned char *)buf;
    size_t used;
    keel_err e;
    /* First complete the held-back tail with new bytes, until the scan gets past the old
     * tail; the new bytes it did not consume are still in the caller's buffer. */
    while (r->tail_len > 0 && n > 0) {
        size_t old = r->tail_len;
        size_t k = KEEL_MIN(n, TAIL_CAP - old);
        if (KEEL_NEVER(k == 0))
            return fail(r, KEEL_EINTERNAL);
        memcpy(r->tail + old, p, k);
        r->tail_len += k;
        p += k;
        n -= k;
        e = scan(&r->st, r->tail, r->tail_len, 0, &r->em.base, &used);
        if (e != KEEL_OK)
            return fail(r, e);
        if (used >= old) {
            size_t back = r->tail_len - used;
            p -= back;
            n += back;
            r->tail_len = 0;
            break;
        }
        memmove(r->tail, r->tail + used, r->tail_len - used);
        r->tail_len -= used;
    }
    if (r->tail_len == 0 && n > 0) {
        e = scan(&r->st, p, n, 0, &r->em.base, &used);
        if (e != KEEL_OK)
            return fail(r, e);
        if (KEEL_NEVER(n - used >= KEEL_REDACT_LOOKAHEAD))
            return fail(r, KEEL_EINTERNAL);
        memcpy(r->tail, p + used, n - used);
        r->tail_len = n - used;
    }
    return KEEL_OK;
}

keel_err keel_redactor_finish(keel_redactor *r)
{
    if (r == NULL)
        return KEEL_EINVAL;
    if (r->state != RS_OPEN)
        return KEEL_ESTATE;
    size_t used;
    keel_err e = scan(&r->st, r->tail, r->tail_len, 1, &r->em.base, &used);
    if (e != KEEL_OK)
        return fail(r, e);
    r->tail_len = 0;
    r->state = RS_FINISHED;
    return KEEL_OK;
}

void keel_redactor_reset(keel_redactor *r)
{
    if (r == NULL)
        return;
    keel_redact_stats s = r->st.stats;
    memset(&r->st, 0, sizeof r->st);
    r->st.stats = s;
    keel__wipe(r->tail, sizeof r->tail);
    r->tail_len = 0;
    r->state = RS_OPEN;
}

void keel_redactor_stats_get(const keel_redactor *r, keel_redact_stats *out)
{
    if (out == NULL)
        return;
    if (r == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = r->st.stats;
}

void keel_redactor_destroy(keel_redactor *r)
{
    if (r == NULL)
        return;
    keel__wipe(r, sizeof *r); /* the tail may hold part of a PAN */
    keel_free(r);
}

size_t keel__redactor_pending(const keel_redactor *r)
{
    return r == NULL ? 0 : r->tail_len + r->st.npending;
}

/* ------------------------------------------------------------- log hook -- */

/* Redact one string of the record; *changed tells whether the buffer holds a new value. */
static keel_err redact_into(keel_buf *b, keel_str s, int *changed)
{
    keel_redact_stats st;
    keel_buf_reset(b);
    *changed = 0;
    keel_err e = keel_redact(s.ptr, s.len, b, &st);
    if (e == KEEL_OK && st.pans + st.cvvs + st.tracks > 0)
        *changed = 1;
    return e;
}

int keel_redact_log_hook(keel_log_record *rec, void *ud)
{
    (void)ud;
    if (rec == NULL)
        return 0;
    keel_buf b;
    keel_buf_init(&b, KEEL_REDACT_LOG_MAX);
    int changed;
    keel_err e = redact_into(&b, keel_log_record_message(rec), &changed);
    if (e == KEEL_OK && changed)
        e = keel_log_record_set_message(rec, b.ptr, b.len);
    size_t nf = keel_log_record_nfields(rec);
    for (size_t i = 0; e == KEEL_OK && i < nf; i++) {
        if (keel_log_record_field_type(rec, i) != KEEL_LOG_FIELD_STR)
            continue;
        keel_str v = keel_log_record_field_str(rec, i);
        if (v.ptr == NULL)
            continue;
        e = redact_into(&b, v, &changed);
        if (e == KEEL_OK && changed)
            e = keel_log_record_set_field_str(rec, i, b.ptr, b.len);
    }
    keel_buf_cleanup(&b);
    /* Fail closed: a record that could not be redacted is dropped, never written as is. */
    return e == KEEL_OK ? 0 : 1;
}

keel_err keel_redact_install_log_hook(void)
{
    return keel_log_set_hook(keel_redact_log_hook, NULL);
}
