/* reconcile.c - internal ledger vs gateway report (keel/reconcile.h).
 *
 * Design.  The internal side is copied into an index: one growing block holding the records
 * back to back in input order (a fixed header followed by the id and status bytes), and an
 * open-addressing (linear probing) table of {hash high bits, record offset} slots, kept at most 3/4 full
 * and doubled as it fills, so every operation is amortised O(1) and a run is linear in the
 * input.  The gateway side is streamed: each gateway record is looked up, compared and
 * marked on the internal record it matched (gw_line); gateway ids unknown to the internal
 * side go into a second, id-only index so that a duplicate among them is still detected.
 * keel_recon_finish() walks the internal records in order and reports the unmarked ones.
 *
 * Hashes are seeded per reconciler from the CSPRNG so that crafted ids cannot be aimed at
 * one probe chain in advance. */
#include "keel_int.h"

#include <stdio.h>
#include <sys/stat.h>

#include <keel/reconcile.h>

#include "csv_int.h"

#define DEFAULT_MAX_RECORDS 100000000u
#define DEFAULT_MAX_BYTES (8ull * 1024u * 1024u * 1024u)
/* Slots hold a 32-bit record offset / 8 + 1: at most 32 GiB of records per side. */
#define HARD_MAX_RECORDS 0xFFFFFFF0u
#define HARD_MAX_BYTES (32ull * 1024u * 1024u * 1024u - 64u)

enum { S_INTERNAL, S_GATEWAY, S_DONE, S_FAILED };

/* A stored record: this header, then the id bytes, then the status bytes, padded to 8.
 * Keeping the id next to the header means a successful lookup touches the table slot and
 * one record, not a third place. */
typedef struct rrec {
    int64_t amount;
    const keel_currency *cur;
    uint64_t line;    /* source line (or ordinal) */
    uint64_t gw_line; /* internal index: line of the matching gateway record, 0 = unseen */
    uint32_t id_len;
    uint32_t status_len;
} rrec;

#define REC_ALIGN 8u

typedef struct slot {
    uint32_t h;    /* high half of the hash */
    uint32_t ref;  /* record offset / REC_ALIGN + 1; 0 = empty */
} slot;

typedef struct rec_index {
    char *mem; /* records back to back, in input order */
    uint64_t len, cap;
    uint64_t n; /* records */
    slot *tab;
    uint64_t tab_cap; /* power of two, or 0 */
} rec_index;

typedef struct handler {
    keel_recon_handler fn;
    void *ud;
} handler;

struct keel_recon {
    keel_recon_config cfg;
    uint64_t seed;
    int state;
    int any_added;
    rec_index in;  /* internal records */
    rec_index gwx; /* gateway ids absent from the internal side (id only) */
    handler handlers[KEEL_RECON_TYPE_COUNT][KEEL_RECON_HANDLERS_MAX];
    unsigned nhandlers[KEEL_RECON_TYPE_COUNT];
    uint64_t count[KEEL_RECON_TYPE_COUNT];
    uint64_t matched;
    uint64_t gateway_records;
    uint64_t seen; /* records read, both sides, for progress */
};

static const char *const TYPE_NAMES[KEEL_RECON_TYPE_COUNT] = {
    "missing_internal", "missing_gateway", "amount_mismatch", "status_mismatch"};

const char *keel_recon_type_name(keel_recon_type t)
{
    return (unsigned)t < KEEL_RECON_TYPE_COUNT ? TYPE_NAMES[t] : NULL;
}

/* ------------------------------------------------------------------ hash -- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_id(const char *p, size_t n, uint64_t seed)
{
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ull);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, p, 8);
        h = (h ^ mix64(k + seed)) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k |= (uint64_t)(unsigned char)p[i] << (8 * i);
    h = (h ^ mix64(k + seed + n)) * 0x9e3779b97f4a7c15ull;
    return mix64(h);
}

/* ----------------------------------------------------------------- index -- */

static void index_free(rec_index *x)
{
    keel_free(x->mem);
    keel_free(x->tab);
    memset(x, 0, sizeof(*x));
}

static size_t rec_size(size_t id_len, size_t status_len)
{
    return (sizeof(rrec) + id_len + status_len + REC_ALIGN - 1) & ~(size_t)(REC_ALIGN - 1);
}

static rrec *rec_at(const rec_index *x, uint32_t ref)
{
    return (rrec *)(void *)(x->mem + (uint64_t)(ref - 1) * REC_ALIGN);
}

static keel_str rec_id(const rrec *r)
{
    keel_str s = {(const char *)(r + 1), r->id_len};
    return s;
}

static keel_str rec_status(const rrec *r)
{
    keel_str s = {(const char *)(r + 1) + r->id_len, r->status_len};
    return s;
}

/* Find id: returns the record's ref or 0; *pos receives the slot where it is or where it
 * would go. */
static uint32_t index_find(const rec_index *x, keel_str id, uint64_t h, uint64_t *pos)
{
    if (x->tab_cap == 0) {
        *pos = 0;
        return 0;
    }
    uint64_t mask = x->tab_cap - 1, i = h & mask;
    uint32_t hh = (uint32_t)(h >> 32);
    for (;;) {
        const slot *s = &x->tab[i];
        if (s->ref == 0) {
            *pos = i;
            return 0;
        }
        if (s->h == hh) {
            const rrec *r = rec_at(x, s->ref);
            if (r->id_len == id.len && memcmp(r + 1, id.ptr, id.len) == 0) {
                *pos = i;
                return s->ref;
            }
        }
        i = (i + 1) & mask;
    }
}

/* Make room in the table for want_records at a load of at most 3/4 (rehashing). */
static keel_err index_grow_table(rec_index *x, uint64_t want_records, uint64_t seed)
{
    uint64_t cap = x->tab_cap ? x->tab_cap : 16;
    while (want_records * 4 > cap * 3)
        cap *= 2;
    if (cap == x->tab_cap)
        return KEEL_OK;
    if (cap > SIZE_MAX / sizeof(slot))
        return KEEL_ENOMEM;
    slot *t = keel_calloc((size_t)cap, sizeof(slot));
    if (t == NULL)
        return KEEL_ENOMEM;
    uint64_t mask = cap - 1;
    for (uint64_t off = 0; off < x->len;) {
        const rrec *r = (const rrec *)(const void *)(x->mem + off);
        uint64_t h = hash_id((const char *)(r + 1), r->id_len, seed), i = h & mask;
        while (t[i].ref != 0)
            i = (i + 1) & mask;
        t[i].h = (uint32_t)(h >> 32);
        t[i].ref = (uint32_t)(off / REC_ALIGN + 1);
        off += rec_size(r->id_len, r->status_len);
    }
    keel_free(x->tab);
    x->tab = t;
    x->tab_cap = cap;
    return KEEL_OK;
}

/* Make room for `more` bytes of records, never past max bytes in total. */
static keel_err mem_reserve(rec_index *x, uint64_t more, uint64_t max)
{
    uint64_t need = x->len + more;
    if (need > max)
        return KEEL_ETOOBIG;
    if (need <= x->cap)
        return KEEL_OK;
    uint64_t cap = x->cap ? x->cap : 4096;
    while (cap < need)
        cap *= 2;
    if (cap > max)
        cap = max;
    if (cap > (uint64_t)(SIZE_MAX / 2))
        return KEEL_ENOMEM;
    char *p = keel_realloc(x->mem, (size_t)cap);
    if (p == NULL)
        return KEEL_ENOMEM;
    x->mem = p;
    x->cap = cap;
    return KEEL_OK;
}

/* ----------------------------------------------------------- lifecycle -- */

void keel_recon_config_default(keel_recon_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->max_records = DEFAULT_MAX_RECORDS;
    cfg->max_bytes = DEFAULT_MAX_BYTES;
}

keel_err keel_recon_create(keel_recon **out, const keel_recon_config *cfg)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    keel_recon_config c;
    keel_recon_config_default(&c);
    if (cfg != NULL) {
        if (cfg->size < sizeof(c))
            return KEEL_EINVAL;
        c = *cfg;
        c.size = sizeof(c);
    }
    if (c.max_records == 0 || c.max_bytes == 0)
        return KEEL_EINVAL;
    if (c.max_records > HARD_MAX_RECORDS)
        c.max_records = HARD_MAX_RECORDS;
    if (c.max_bytes > HARD_MAX_BYTES)
        c.max_bytes = HARD_MAX_BYTES;
    keel_recon *r = keel__new(keel_recon);
    if (r == NULL)
        return KEEL_ENOMEM;
    r->cfg = c;
    if (keel_random_bytes(&r->seed, sizeof(r->seed)) != KEEL_OK)
        r->seed = mix64(keel_time_mono_ns() ^ (uint64_t)(uintptr_t)r);
    if (c.expected_records > 0) {
        uint64_t n = KEEL_MIN(c.expected_records, c.max_records);
        if (mem_reserve(&r->in, KEEL_MIN(n * rec_size(16, 8), c.max_bytes), c.max_bytes) !=
                KEEL_OK ||
            index_grow_table(&r->in, n, r->seed) != KEEL_OK) {
            keel_recon_destroy(r);
            return KEEL_ENOMEM;
        }
    }
    *out = r;
    return KEEL_OK;
}

void keel_recon_destroy(keel_recon *r)
{
    if (r == NULL)
        return;
    index_free(&r->in);
    index_free(&r->gwx);
    keel_free(r);
}

keel_err keel_recon_on(keel_recon *r, keel_recon_type type, keel_recon_handler fn, void *ud)
{
    if (r == NULL || fn == NULL || (unsigned)type >= KEEL_RECON_TYPE_COUNT)
        return KEEL_EINVAL;
    if (r->any_added || r->state != S_INTERNAL)
        return KEEL_ESTATE;
    if (r->nhandlers[type] >= KEEL_RECON_HANDLERS_MAX)
        return KEEL_EFULL;
    r->handlers[type][r->nhandlers[type]].fn = fn;
    r->handlers[type][r->nhandlers[type]].ud = ud;
    r->nhandlers[type]++;
    return KEEL_OK;
}

/* ------------------------------------------------------------ matching -- */

/* Copy at most 32 bytes of an id for a message, '?' for anything unprintable. */
static void shown_id(keel_str id, char out[40])
{
    size_t n = KEEL_MIN(id.len, 32), k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)id.ptr[i];
        out[k++] = (ch >= 0x20 && ch < 0x7f && ch != '\'') ? (char)ch : '?';
    }
    if (id.len > n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

static keel_err fire(keel_recon *r, keel_recon_type t, keel_str id, const keel_recon_record *in,
                     const keel_recon_record *gw, keel_diag *diag)
{
    r->count[t]++;
    keel_recon_discrepancy d = {t, id, in, gw};
    for (unsigned i = 0; i < r->nhandlers[t]; i++) {
        keel_err e = r->handlers[t][i].fn(&d, r->handlers[t][i].ud);
        if (e != KEEL_OK) {
            char sid[40];
            shown_id(id, sid);
            if (e > 0 || strcmp(keel_err_name(e), "KEEL_E?") == 0)
                e = KEEL_EINTERNAL; /* a handler returned something that is not a keel_err */
            return keel_diag_set(diag, e, 0, "%s handler failed for '%s': %s", TYPE_NAMES[t],
                                 sid, keel_strerror(e));
        }
    }
    return KEEL_OK;
}

static keel_recon_record view(const rrec *p)
{
    keel_recon_record v = {rec_id(p), p->amount, p->cur, rec_status(p), p->line};
    return v;
}

static void progress_tick(keel_recon *r)
{
    r->seen++;
    if (r->cfg.progress != NULL && r->seen % KEEL_RECON_PROGRESS_EVERY == 0)
        r->cfg.progress(r->seen, r->cfg.progress_ud);
}

static keel_err check_rec(const keel_recon_record *rec)
{
    if (rec == NULL || rec->id.ptr == NULL || rec->id.len == 0 || rec->currency == NULL ||
        rec->id.len > KEEL_RECON_RECORD_MAX || rec->status.len > KEEL_RECON_RECORD_MAX ||
        (rec->status.ptr == NULL && rec->status.len != 0))
        return KEEL_EINVAL;
    return KEEL_OK;
}

/* Append a record to x (id, and status when with_status) and enter it at table slot pos. */
static keel_err index_add(keel_recon *r, rec_index *x, const keel_recon_record *rec, uint64_t line,
                          int with_status, uint64_t h, uint64_t pos)
{
    if (r->in.n + r->gwx.n >= r->cfg.max_records)
        return KEEL_ETOOBIG;
    size_t slen = with_status ? rec->status.len : 0;
    size_t size = rec_size(rec->id.len, slen);
    const rec_index *other = x == &r->in ? &r->gwx : &r->in;
    keel_err e = mem_reserve(x, size, r->cfg.max_bytes - other->len);
    if (e != KEEL_OK)
        return e;
    if ((x->n + 1) * 4 > x->tab_cap * 3) {
        e = index_grow_table(x, x->n + 1, r->seed);
        if (e != KEEL_OK)
            return e;
        index_find(x, rec->id, h, &pos); /* the table moved */
    }
    rrec *p = (rrec *)(void *)(x->mem + x->len);
    p->amount = rec->amount;
    p->cur = rec->currency;
    p->line = line;
    p->gw_line = 0;
    p->id_len = (uint32_t)rec->id.len;
    p->status_len = (uint32_t)slen;
    char *data = (char *)(p + 1);
    memcpy(data, rec->id.ptr, rec->id.len);
    if (slen > 0)
        memcpy(data + rec->id.len, rec->status.ptr, slen);
    x->tab[pos].h = (uint32_t)(h >> 32);
    x->tab[pos].ref = (uint32_t)(x->len / REC_ALIGN + 1);
    x->len += size;
    x->n++;
    return KEEL_OK;
}

static keel_err cap_error(keel_err e, const char *name, uint64_t line, keel_diag *diag)
{
    if (e == KEEL_ETOOBIG)
        return keel_diag_set(diag, e, (size_t)line,
                             "%s:%llu: too many records or bytes for the configured limits",
                             name, (unsigned long long)line);
    return keel_diag_set(diag, e, (size_t)line, "%s:%llu: %s", name, (unsigned long long)line,
                         keel_strerror(e));
}

static keel_err add_internal(keel_recon *r, const keel_recon_record *rec, const char *name,
                             keel_diag *diag)
{
    uint64_t line = rec->line ? rec->line : r->in.n + 1;
    uint64_t h = hash_id(rec->id.ptr, rec->id.len, r->seed), pos = 0;
    uint32_t hit = index_find(&r->in, rec->id, h, &pos);
    if (hit != 0) {
        char sid[40];
        shown_id(rec->id, sid);
        return keel_diag_set(diag, KEEL_EEXIST, (size_t)line,
                             "%s:%llu: duplicate id '%s' (first at line %llu)", name,
                             (unsigned long long)line, sid,
                             (unsigned long long)rec_at(&r->in, hit)->line);
    }
    keel_err e = index_add(r, &r->in, rec, line, 1, h, pos);
    if (e != KEEL_OK)
        return cap_error(e, name, line, diag);
    return KEEL_OK;
}

static keel_err add_gateway(keel_recon *r, const keel_recon_record *rec, const char *name,
                            keel_diag *diag)
{
    uint64_t line = rec->line ? rec->line : r->gateway_records + 1;
    uint64_t h = hash_id(rec->id.ptr, rec->id.len, r->seed), pos = 0;
    uint32_t hit = index_find(&r->in, rec->id, h, &pos);
    uint64_t first = 0;
    if (hit != 0) {
        rrec *p = rec_at(&r->in, hit);
        first = p->gw_line;
        if (first == 0) {
            p->gw_line = line;
            r->gateway_records++;
            keel_recon_record gv = *rec;
            gv.line = line;
            keel_recon_record iv = view(p);
            int same_money = p->amount == rec->amount &&
                             memcmp(p->cur->code, rec->currency->code, 3) == 0;
            int same_status = p->status_len == rec->status.len &&
                              (rec->status.len == 0 ||
                               memcmp(iv.status.ptr, rec->status.ptr, rec->status.len) == 0);
            if (same_money && same_status) {
                r->matched++;
                return KEEL_OK;
            }
            return fire(r, same_money ? KEEL_RECON_STATUS_MISMATCH : KEEL_RECON_AMOUNT_MISMATCH,
                        iv.id, &iv, &gv, diag);
        }
    } else {
        uint32_t seen = index_find(&r->gwx, rec->id, h, &pos);
        if (seen != 0) {
            first = rec_at(&r->gwx, seen)->line;
        } else {
            keel_err e = index_add(r, &r->gwx, rec, line, 0, h, pos);
            if (e != KEEL_OK)
                return cap_error(e, name, line, diag);
            r->gateway_records++;
            keel_recon_record gv = *rec;
            gv.line = line;
            return fire(r, KEEL_RECON_MISSING_INTERNAL, rec->id, NULL, &gv, diag);
        }
    }
    char sid[40];
    shown_id(rec->id, sid);
    return keel_diag_set(diag, KEEL_EEXIST, (size_t)line,
                         "%s:%llu: duplicate id '%s' (first at line %llu)", name,
                         (unsigned long long)line, sid, (unsigned long long)first);
}

/* Order check and state change before adding to side.  KEEL_OK or KEEL_ESTATE. */
static keel_err enter(keel_recon *r, keel_recon_side side, keel_diag *diag)
{
    if (side == KEEL_RECON_INTERNAL && r->state == S_INTERNAL)
        return KEEL_OK;
    if (side == KEEL_RECON_GATEWAY && (r->state == S_INTERNAL || r->state == S_GATEWAY)) {
        r->state = S_GATEWAY;
        return KEEL_OK;
    }
    return keel_diag_set(diag, KEEL_ESTATE, 0,
                         r->state == S_FAILED ? "the reconciliation already failed"
                         : r->state == S_DONE ? "the reconciliation is finished"
                                              : "internal records must come before gateway ones");
}

static keel_err add_one(keel_recon *r, keel_recon_side side, const keel_recon_record *rec,
                        const char *name, keel_diag *diag)
{
    keel_err e = side == KEEL_RECON_INTERNAL ? add_internal(r, rec, name, diag)
                                             : add_gateway(r, rec, name, diag);
    if (e != KEEL_OK)
        r->state = S_FAILED;
    else
        progress_tick(r);
    return e;
}

static keel_err add_api(keel_recon *r, keel_recon_side side, const keel_recon_record *rec,
                        keel_diag *diag)
{
    if (r == NULL || check_rec(rec) != KEEL_OK)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid record (empty id or no currency)");
    keel_err e = enter(r, side, diag);
    if (e != KEEL_OK)
        return e;
    r->any_added = 1;
    return add_one(r, side, rec, side == KEEL_RECON_INTERNAL ? "internal" : "gateway", diag);
}

keel_err keel_recon_add_internal(keel_recon *r, const keel_recon_record *rec, keel_diag *diag)
{
    return add_api(r, KEEL_RECON_INTERNAL, rec, diag);
}

keel_err keel_recon_add_gateway(keel_recon *r, const keel_recon_record *rec, keel_diag *diag)
{
    return add_api(r, KEEL_RECON_GATEWAY, rec, diag);
}

keel_err keel_recon_finish(keel_recon *r)
{
    if (r == NULL)
        return KEEL_EINVAL;
    if (r->state != S_INTERNAL && r->state != S_GATEWAY)
        return KEEL_ESTATE;
    for (uint64_t off = 0; off < r->in.len;) {
        const rrec *p = (const rrec *)(const void *)(r->in.mem + off);
        off += rec_size(p->id_len, p->status_len);
        if (p->gw_line != 0)
            continue;
        keel_recon_record iv = view(p);
        keel_err e = fire(r, KEEL_RECON_MISSING_GATEWAY, iv.id, &iv, NULL, NULL);
        if (e != KEEL_OK) {
            r->state = S_FAILED;
            return e;
        }
    }
    r->state = S_DONE;
    return KEEL_OK;
}

/* ------------------------------------------------------------- results -- */

void keel_recon_stats_get(const keel_recon *r, keel_recon_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    if (r == NULL)
        return;
    out->matched = r->matched;
    out->total = r->in.n + r->gwx.n;
    for (unsigned t = 0; t < KEEL_RECON_TYPE_COUNT; t++) {
        out->count[t] = r->count[t];
        out->discrepancies += r->count[t];
    }
    out->internal_records = r->in.n;
    out->gateway_records = r->gateway_records;
}

size_t keel_recon_summary_format(const keel_recon_stats *s, char *buf, size_t cap)
{
    char tmp[KEEL_RECON_SUMMARY_MAX];
    keel_recon_stats zero;
    if (s == NULL) {
        memset(&zero, 0, sizeof(zero));
        s = &zero;
    }
    int n = snprintf(tmp, sizeof(tmp), "%llu/%llu matched, %llu discrepancies",
                     (unsigned long long)s->matched, (unsigned long long)s->total,
                     (unsigned long long)s->discrepancies);
    size_t len = n > 0 ? (size_t)n : 0;
    const char *sep = ": ";
    for (unsigned t = 0; t < KEEL_RECON_TYPE_COUNT; t++) {
        if (s->count[t] == 0)
            continue;
        n = snprintf(tmp + len, sizeof(tmp) - len, "%s%llu %s", sep,
                     (unsigned long long)s->count[t], TYPE_NAMES[t]);
        len += n > 0 ? (size_t)n : 0;
        sep = ", ";
    }
    /* 4 * (20 digits + 18) + 3 * 20 + 30 < KEEL_RECON_SUMMARY_MAX: never truncated. */
    if (buf != NULL && cap > 0) {
        size_t k = KEEL_MIN(len, cap - 1);
        memcpy(buf, tmp, k);
        buf[k] = '\0';
    }
    return len;
}

size_t keel_recon_summary(const keel_recon *r, char *buf, size_t cap)
{
    keel_recon_stats s;
    keel_recon_stats_get(r, &s);
    return keel_recon_summary_format(&s, buf, cap);
}

/* ----------------------------------------------------------------- CSV -- */

enum { COL_ID, COL_AMOUNT, COL_CURRENCY, COL_STATUS, NCOLS };
static const char *const COL_NAMES[NCOLS] = {"id", "amount", "currency", "status"};

static keel_str trim(const char *p, size_t n)
{
    while (n > 0 && (p[0] == ' ' || p[0] == '\t')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    keel_str s = {p, n};
    return s;
}

static keel_err read_header(keel__csv *c, size_t col[NCOLS], size_t *nfields, keel_diag *diag)
{
    const char *name = keel__csv_name(c);
    int n = keel__csv_next(c, diag);
    if (n < 0)
        return (keel_err)n;
    if (n == 0)
        return keel_diag_set(diag, KEEL_EPARSE, 1,
                             "%s:1: missing header line (id,amount,currency,status)", name);
    const keel__csv_field *f = keel__csv_fields(c);
    size_t nf = keel__csv_nfields(c);
    for (size_t k = 0; k < NCOLS; k++)
        col[k] = SIZE_MAX;
    for (size_t i = 0; i < nf; i++) {
        keel_str h = trim(f[i].ptr, f[i].len);
        for (size_t k = 0; k < NCOLS; k++) {
            if (!keel_str_ieq(h, keel_str_c(COL_NAMES[k])))
                continue;
            if (col[k] != SIZE_MAX)
                return keel_diag_set(diag, KEEL_EPARSE, (size_t)f[i].line,
                                     "%s:%llu:%llu: duplicate column '%s' in the header", name,
                                     (unsigned long long)f[i].line,
                                     (unsigned long long)f[i].col, COL_NAMES[k]);
            col[k] = i;
        }
    }
    for (size_t k = 0; k < NCOLS; k++)
        if (col[k] == SIZE_MAX)
            return keel_diag_set(diag, KEEL_EPARSE, (size_t)keel__csv_line(c),
                                 "%s:%llu: header lacks column '%s' (needs "
                                 "id,amount,currency,status)",
                                 name, (unsigned long long)keel__csv_line(c), COL_NAMES[k]);
    *nfields = nf;
    return KEEL_OK;
}

/* Column of the byte at offset off inside field f's content. */
static unsigned long long content_col(const keel__csv_field *f, size_t off)
{
    return (unsigned long long)(f->col + (uint64_t)(f->quoted ? 1 : 0) + off);
}

static keel_err row_to_record(keel__csv *c, const size_t col[NCOLS], size_t nh,
                              keel_recon_record *rec, keel_diag *diag)
{
    const char *name = keel__csv_name(c);
    uint64_t line = keel__csv_line(c);
    size_t nf = keel__csv_nfields(c);
    const keel__csv_field *f = keel__csv_fields(c);
    if (nf != nh)
        return keel_diag_set(diag, KEEL_EPARSE, (size_t)line,
                             "%s:%llu: expected %zu fields (as in the header), found %zu", name,
                             (unsigned long long)line, nh, nf);
    const keel__csv_field *fid = &f[col[COL_ID]], *fam = &f[col[COL_AMOUNT]],
                          *fcur = &f[col[COL_CURRENCY]], *fst = &f[col[COL_STATUS]];
    if (fid->len == 0)
        return keel_diag_set(diag, KEEL_EPARSE, (size_t)line, "%s:%llu:%llu: empty id", name,
                             (unsigned long long)fid->line, (unsigned long long)fid->col);
    keel_str code = {fcur->ptr, fcur->len};
    const keel_currency *cur = keel_currency_find(code);
    if (cur == NULL) {
        char shown[40];
        shown_id(code, shown);
        return keel_diag_set(diag, KEEL_ENOTFOUND, (size_t)line,
                             "%s:%llu:%llu: unknown currency '%s'", name,
                             (unsigned long long)fcur->line, (unsigned long long)fcur->col,
                             shown);
    }
    keel_diag md = {0};
    int64_t amount = 0;
    keel_str text = {fam->ptr, fam->len};
    keel_err e = keel_money_parse(text, cur, KEEL_MONEY_ALLOW_NEGATIVE, &amount, &md);
    if (e != KEEL_OK) {
        char shown[40];
        shown_id(text, shown);
        return keel_diag_set(diag, e, (size_t)line, "%s:%llu:%llu: bad amount '%s': %s", name,
                             (unsigned long long)fam->line,
                             content_col(fam, KEEL_MIN(md.offset, fam->len)), shown,
                             md.msg[0] ? md.msg : keel_strerror(e));
    }
    rec->id.ptr = fid->ptr;
    rec->id.len = fid->len;
    rec->amount = amount;
    rec->currency = cur;
    rec->status.ptr = fst->ptr;
    rec->status.len = fst->len;
    rec->line = line;
    return KEEL_OK;
}

keel_err keel_recon_feed_csv(keel_recon *r, keel_recon_side side, keel_recon_read_fn read,
                             void *ud, const char *name, keel_diag *diag)
{
    if (r == NULL || read == NULL || (side != KEEL_RECON_INTERNAL && side != KEEL_RECON_GATEWAY))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid argument");
    keel_err e = enter(r, side, diag);
    if (e != KEEL_OK)
        return e;
    r->any_added = 1;
    if (name == NULL)
        name = side == KEEL_RECON_INTERNAL ? "internal" : "gateway";
    keel__csv *c = NULL;
    e = keel__csv_create(&c, read, ud, name);
    if (e != KEEL_OK) {
        r->state = S_FAILED;
        return keel_diag_set(diag, e, 0, "%s: %s", name, keel_strerror(e));
    }
    size_t col[NCOLS], nh = 0;
    e = read_header(c, col, &nh, diag);
    while (e == KEEL_OK) {
        int n = keel__csv_next(c, diag);
        if (n <= 0) {
            e = (keel_err)n;
            break;
        }
        keel_recon_record rec;
        e = row_to_record(c, col, nh, &rec, diag);
        if (e == KEEL_OK)
            e = add_one(r, side, &rec, keel__csv_name(c), diag);
    }
    if (e != KEEL_OK)
        r->state = S_FAILED;
    keel__csv_destroy(c);
    return e;
}

typedef struct mem_src {
    const char *p;
    size_t len, pos;
} mem_src;

static long mem_read(void *ud, char *buf, size_t cap)
{
    mem_src *m = ud;
    size_t n = KEEL_MIN(cap, m->len - m->pos);
    if (n > 0)
        memcpy(buf, m->p + m->pos, n);
    m->pos += n;
    return (long)n;
}

keel_err keel_recon_feed_csv_mem(keel_recon *r, keel_recon_side side, const void *data,
                                 size_t len, const char *name, keel_diag *diag)
{
    if (data == NULL && len != 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid argument");
    mem_src m = {data, data ? len : 0, 0};
    return keel_recon_feed_csv(r, side, mem_read, &m, name, diag);
}

static long file_read(void *ud, char *buf, size_t cap)
{
    FILE *f = ud;
    size_t n = fread(buf, 1, cap, f);
    if (n == 0 && ferror(f))
        return -1;
    return (long)n;
}

keel_err keel_recon_feed_csv_file(keel_recon *r, keel_recon_side side, const char *path,
                                  keel_diag *diag)
{
    if (r == NULL || path == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid argument");
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int err = errno;
        /* Keep the reconciler's state rules: opening failures fail the run too. */
        keel_err e = enter(r, side, diag);
        if (e != KEEL_OK)
            return e;
        r->state = S_FAILED;
        return keel_diag_set(diag, KEEL_EIO, 0, "%s: cannot open: %s", path, strerror(err));
    }
    /* Presize the internal index from the file size (~48 bytes a row) to spare rehashes;
     * a wrong guess costs one doubling more or a sparser table, never correctness. */
    struct stat st;
    if (side == KEEL_RECON_INTERNAL && r->state == S_INTERNAL && r->in.n == 0 &&
        fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        (void)index_grow_table(&r->in, KEEL_MIN((uint64_t)st.st_size / 48, r->cfg.max_records),
                               r->seed);
    keel_err e = keel_recon_feed_csv(r, side, file_read, f, path, diag);
    fclose(f);
    return e;
}
