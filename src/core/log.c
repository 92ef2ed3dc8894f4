/* log.c - the structured logger front end: levels, interned loggers, the
 * per-thread request context, the caller side (format + enqueue), the
 * bounded queue and its single writer thread, the hook and the lifecycle.
 * Formatting and sinks live in log_sink.c.
 *
 * Data flow.  The caller encodes a record into a flat "blob" (header, field
 * descriptors, then strings, message last) in a stack buffer and decodes it
 * into its thread's record view, runs the hook and formats the lines the
 * sinks need (JSON, and text for a text console) into its thread's buffer;
 * then it takes the queue mutex and copies the formatted bytes into a ring
 * slot (records too big for a slot's inline area are heap-allocated and the
 * slot just holds the pointer).  The writer takes up to WRITER_BATCH slots at
 * a time, appends their bytes to the sink buffers without the lock, writes
 * them out and then frees the slots.  Formatting on the caller spreads the
 * cost evenly over the requests that log, instead of in writer bursts that
 * stall whoever shares the CPU with it; the writer only copies and writes. */
#include "keel_int.h"

#include "log_int.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

/* Inline bytes per ring slot: a typical access-log record's JSON line (~350
 * bytes) fits, so the hot path does not allocate.  With a text console too
 * (development) both lines rarely fit and the record takes one heap block. */
#define SLOT_INLINE 496
#define WRITER_BATCH 256
#define QUEUE_MAX (1u << 20)
#define BACKUPS_MAX 100u
#define MODULE_MAX 64
#define FUNC_MAX 128
#define TRUNC_MARK " [truncated]"

/* ============================================================== levels == */

static int ascii_ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a + 32) : *a;
        if (x != *b)
            return 0;
    }
    return *a == *b;
}

keel_err keel_log_level_parse(const char *s, keel_log_level *out)
{
    static const struct {
        const char *name;
        keel_log_level lv;
    } names[] = {
        {"debug", KEEL_LOG_LEVEL_DEBUG},       {"info", KEEL_LOG_LEVEL_INFO},
        {"warning", KEEL_LOG_LEVEL_WARNING},   {"warn", KEEL_LOG_LEVEL_WARNING},
        {"error", KEEL_LOG_LEVEL_ERROR},       {"critical", KEEL_LOG_LEVEL_CRITICAL},
        {"fatal", KEEL_LOG_LEVEL_CRITICAL},
    };
    if (s == NULL || out == NULL)
        return KEEL_EINVAL;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(names); i++) {
        if (ascii_ieq(s, names[i].name)) {
            *out = names[i].lv;
            return KEEL_OK;
        }
    }
    return KEEL_EPARSE;
}

const char *keel_log_level_name(keel_log_level lv)
{
    int v = (int)lv;
    if (v >= KEEL_LOG_LEVEL_CRITICAL)
        return "CRITICAL";
    if (v >= KEEL_LOG_LEVEL_ERROR)
        return "ERROR";
    if (v >= KEEL_LOG_LEVEL_WARNING)
        return "WARNING";
    if (v >= KEEL_LOG_LEVEL_INFO)
        return "INFO";
    return "DEBUG";
}

/* ============================================================= loggers == */

static keel_logger g_root = {NULL, "app", 3};
static pthread_mutex_t g_names_mu = PTHREAD_MUTEX_INITIALIZER;
static keel_logger *g_names; /* every interned logger but the root; never freed */

keel_logger *keel_logger_get(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return &g_root;
    size_t n = strnlen(name, KEEL_LOG_NAME_MAX);
    if (n == 3 && memcmp(name, "app", 3) == 0)
        return &g_root;
    pthread_mutex_lock(&g_names_mu);
    keel_logger *lg;
    for (lg = g_names; lg != NULL; lg = lg->next)
        if (lg->name_len == n && memcmp(lg->name, name, n) == 0)
            break;
    if (lg == NULL) {
        /* One allocation: the struct followed by the name. */
        lg = keel_malloc(sizeof *lg + n + 1);
        if (lg != NULL) {
            char *copy = (char *)(lg + 1);
            memcpy(copy, name, n);
            copy[n] = '\0';
            lg->name = copy;
            lg->name_len = n;
            lg->next = g_names;
            g_names = lg;
        }
    }
    pthread_mutex_unlock(&g_names_mu);
    return lg != NULL ? lg : &g_root;
}

const char *keel_logger_name(const keel_logger *lg)
{
    return lg != NULL ? lg->name : g_root.name;
}

/* ============================================================= context == */

typedef struct tl_context {
    uint8_t rid_len;
    uint8_t uid_len;
    char rid[KEEL_LOG_CONTEXT_ID_MAX + 1];
    char uid[KEEL_LOG_CONTEXT_ID_MAX + 1];
} tl_context;

static _Thread_local tl_context tl_ctx;
static _Thread_local int tl_in_hook;   /* this thread is running the hook */
static _Thread_local int tl_is_writer; /* this thread is the writer */

static void ctx_set(char *dst, uint8_t *len, const char *id)
{
    size_t n = id != NULL ? strnlen(id, KEEL_LOG_CONTEXT_ID_MAX) : 0;
    if (n)
        memcpy(dst, id, n);
    dst[n] = '\0';
    *len = (uint8_t)n;
}

void keel_log_context_set_request_id(const char *id)
{
    ctx_set(tl_ctx.rid, &tl_ctx.rid_len, id);
}

void keel_log_context_set_user_id(const char *id)
{
    ctx_set(tl_ctx.uid, &tl_ctx.uid_len, id);
}

void keel_log_context_clear(void)
{
    ctx_set(tl_ctx.rid, &tl_ctx.rid_len, NULL);
    ctx_set(tl_ctx.uid, &tl_ctx.uid_len, NULL);
}

const char *keel_log_context_request_id(void)
{
    return tl_ctx.rid_len ? tl_ctx.rid : NULL;
}

const char *keel_log_context_user_id(void)
{
    return tl_ctx.uid_len ? tl_ctx.uid : NULL;
}

void keel_log_context_save(keel_log_context *out)
{
    if (out == NULL)
        return;
    memcpy(out->request_id, tl_ctx.rid, (size_t)tl_ctx.rid_len + 1);
    memcpy(out->user_id, tl_ctx.uid, (size_t)tl_ctx.uid_len + 1);
}

void keel_log_context_restore(const keel_log_context *c)
{
    if (c == NULL) {
        keel_log_context_clear();
        return;
    }
    /* The arrays are sized MAX + 1, so strnlen stays inside them. */
    char tmp[KEEL_LOG_CONTEXT_ID_MAX + 1];
    size_t n = strnlen(c->request_id, KEEL_LOG_CONTEXT_ID_MAX);
    memcpy(tmp, c->request_id, n);
    tmp[n] = '\0';
    ctx_set(tl_ctx.rid, &tl_ctx.rid_len, tmp);
    n = strnlen(c->user_id, KEEL_LOG_CONTEXT_ID_MAX);
    memcpy(tmp, c->user_id, n);
    tmp[n] = '\0';
    ctx_set(tl_ctx.uid, &tl_ctx.uid_len, tmp);
}

/* ======================================================== global state == */

typedef struct slot {
    unsigned char *heap; /* blob on the heap, or NULL when it is in the inline area */
    union {
        max_align_t align;
        unsigned char b[SLOT_INLINE];
    } in;
} slot;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty; /* writer waits for records */
    pthread_cond_t not_full;  /* BLOCK producers wait for space */
    pthread_cond_t done;      /* flushers wait for seq_done (monotonic clock) */
    int running;              /* records go to the queue */
    int stopping;             /* the writer drains and exits */
    int writer_idle;          /* asleep with an empty queue: the next record wakes it */
    int writer_lingering;     /* collecting a batch: only a full-ish queue or urgency wakes it */
    slot *ring;
    size_t cap, head, count;
    size_t block_waiters, flush_waiters;
    uint64_t seq_in, seq_done;
    keel_log_overflow overflow;
} g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
       PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, KEEL_LOG_OVERFLOW_DROP};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Lifecycle (start/stop) and the sink configuration used for the threshold. */
static pthread_mutex_t g_life_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t g_thread;
static keel__log_sinks g_sinks;    /* owned by the writer thread while running */
static int g_started;              /* under g_life_mu */

static pthread_mutex_t g_level_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_cfg_active, g_cfg_console, g_cfg_files; /* under g_level_mu */
static atomic_int g_level = KEEL_LOG_LEVEL_INFO;
static atomic_int g_threshold = KEEL_LOG_LEVEL_INFO;

/* Hook: the pointer pair is read and called under the read side of g_hook_lock, so calls
 * from several logging threads run at once and keel_log_set_hook() (write side) waits for
 * them.  Writers are preferred where glibc offers it, so a steady stream of records cannot
 * hold keel_log_set_hook() off for ever. */
#ifdef PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
static pthread_rwlock_t g_hook_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
#else
static pthread_rwlock_t g_hook_lock = PTHREAD_RWLOCK_INITIALIZER;
#endif
static keel_log_hook_fn g_hook_fn;
static void *g_hook_ud;
static atomic_int g_hook_set;

/* Synchronous path (logger stopped): stderr text, one record at a time. */
static pthread_mutex_t g_sync_mu = PTHREAD_MUTEX_INITIALIZER;
static keel__log_sinks g_ssinks;
static keel_log_record g_srec;
static int g_sync_ready;

static atomic_uint_fast64_t st_written, st_dropped, st_filtered, st_errors;

/* What callers format while the logger runs (KEEL__LOG_FMT_* of the sinks), and the start
 * generation it belongs to: a caller that formatted for an earlier start formats again. */
static atomic_uint g_formats;
static atomic_uint g_fmt_gen;
static atomic_int g_fmt_live; /* the logger runs: callers format (a hint; g.running decides) */
/* Address of the ring slot the next record will take (updated under g.mu, read without it):
 * a caller prefetches it while formatting.  Under load the producer position sweeps the whole
 * ring (2 MiB by default; it only restarts at slot 0 when the writer empties it), so the slot
 * is cold; copying into it just before unlocking made the
 * unlock wait for the cache misses (~0.25 us per record at 100k records/s).  Only a hint:
 * prefetching a stale address is harmless. */
static atomic_uintptr_t g_next_slot;

/* A formatted record in a slot: this header, then json_len + text_len bytes. */
typedef struct pre_hdr {
    int32_t level;
    uint32_t json_len;
    uint32_t text_len;
} pre_hdr;

/* Each logging thread's record view and format buffer (freed when the thread exits). */
typedef struct fmt_state {
    keel_log_record rec;
    keel__lbuf out; /* pre_hdr + the formatted lines */
} fmt_state;
static _Thread_local fmt_state *tl_fmt;
static pthread_key_t g_fmt_key;
static int g_fmt_key_ok;

static void fmt_state_free(void *p)
{
    fmt_state *f = p;
    if (f == NULL)
        return;
    keel__log_record_cleanup(&f->rec);
    keel__lbuf_free(&f->out);
    keel_free(f);
    tl_fmt = NULL; /* destructors run on the exiting thread: a later record starts afresh */
}

static void init_once(void)
{
    g_fmt_key_ok = pthread_key_create(&g_fmt_key, fmt_state_free) == 0;
    /* the waits on these use monotonic deadlines */
    pthread_cond_destroy(&g.done);
    pthread_cond_destroy(&g.not_empty);
    if (keel__cond_init_mono(&g.done) != 0 || keel__cond_init_mono(&g.not_empty) != 0)
        abort(); /* cannot happen on Linux; a wrong clock would make waits unbounded */
}

void keel__log_count_error(void)
{
    atomic_fetch_add_explicit(&st_errors, 1, memory_order_relaxed);
}

/* Lowest level any active sink takes (under g_level_mu). */
static void recompute_threshold(void)
{
    int lv = atomic_load_explicit(&g_level, memory_order_relaxed);
    int t = lv;
    if (g_cfg_active) {
        t = INT_MAX;
        if (g_cfg_console)
            t = lv;
        if (g_cfg_files)
            t = KEEL_MIN(t, KEEL_MAX(lv, (int)KEEL_LOG_LEVEL_INFO));
        if (t == INT_MAX)
            t = lv; /* no sink: records still reach the hook and the counters */
    }
    atomic_store_explicit(&g_threshold, t, memory_order_relaxed);
}

void keel_log_set_level(keel_log_level lv)
{
    pthread_mutex_lock(&g_level_mu);
    atomic_store_explicit(&g_level, (int)lv, memory_order_relaxed);
    recompute_threshold();
    pthread_mutex_unlock(&g_level_mu);
}

keel_log_level keel_log_get_level(void)
{
    return (keel_log_level)atomic_load_explicit(&g_level, memory_order_relaxed);
}

int keel_log_enabled(const keel_logger *lg, keel_log_level lv)
{
    KEEL_UNUSED(lg);
    return (int)lv >= atomic_load_explicit(&g_threshold, memory_order_relaxed);
}

/* ================================================================ blob == */

typedef struct blob_hdr {
    int64_t wall_ms;
    const keel_logger *lg;
    uint32_t msg_len;
    int32_t level;
    int32_t line;
    uint16_t module_len;
    uint16_t func_len;
    uint8_t rid_len;
    uint8_t uid_len;
    uint8_t nfields;
} blob_hdr;

typedef struct blob_field {
    int64_t i; /* INT value, or BOOL 0/1 */
    double d;
    uint32_t slen;
    uint16_t key_len;
    uint8_t type;
    uint8_t is_null;
} blob_field;

/* Longest prefix of s[0..n) no longer than max that does not split a UTF-8
 * sequence (invalid bytes are left for the sinks to replace). */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80 && max - k < 3)
        k--;
    return k;
}

/* Module name: basename of file without its extension. */
static keel_str module_of(const char *file)
{
    if (file == NULL)
        return KEEL_STR_LIT("");
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    return (keel_str){base, KEEL_MIN(n, (size_t)MODULE_MAX)};
}

static void decode(keel_log_record *r, const unsigned char *b)
{
    blob_hdr h;
    memcpy(&h, b, sizeof h);
    const unsigned char *fp = b + sizeof h;
    const char *sp = (const char *)(fp + (size_t)h.nfields * sizeof(blob_field));
    r->wall_ms = h.wall_ms;
    r->level = h.level;
    r->line = h.line;
    r->lg = h.lg;
    r->module = (keel_str){sp, h.module_len};
    sp += h.module_len;
    r->func = (keel_str){sp, h.func_len};
    sp += h.func_len;
    r->request_id = (keel_str){sp, h.rid_len};
    sp += h.rid_len;
    r->user_id = (keel_str){sp, h.uid_len};
    sp += h.uid_len;
    r->nfields = h.nfields;
    for (size_t i = 0; i < h.nfields; i++) {
        blob_field bf;
        memcpy(&bf, fp + i * sizeof bf, sizeof bf);
        keel__log_rfield *f = &r->f[i];
        f->key = sp;
        f->key_len = bf.key_len;
        sp += bf.key_len;
        f->type = (keel_log_field_type)bf.type;
        f->is_null = bf.is_null;
        f->s = sp;
        f->slen = bf.type == KEEL_LOG_FIELD_STR ? bf.slen : 0;
        sp += f->slen;
        f->i = bf.i;
        f->d = bf.d;
        f->b = (int)bf.i;
    }
    r->msg = (keel_str){sp, h.msg_len};
}

/* Run the hook; 1 if it dropped the record. */
static int run_hook(keel_log_record *r)
{
    if (!atomic_load_explicit(&g_hook_set, memory_order_acquire))
        return 0;
    int drop = 0;
    pthread_rwlock_rdlock(&g_hook_lock);
    if (g_hook_fn != NULL) {
        tl_in_hook = 1;
        drop = g_hook_fn(r, g_hook_ud) != 0;
        tl_in_hook = 0;
    }
    pthread_rwlock_unlock(&g_hook_lock);
    return drop;
}

static void consume(keel_log_record *r, keel__log_sinks *s, const unsigned char *blob)
{
    decode(r, blob);
    if (run_hook(r)) {
        atomic_fetch_add_explicit(&st_filtered, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&st_written, 1, memory_order_relaxed);
    keel__log_sinks_emit(s, r, atomic_load_explicit(&g_level, memory_order_relaxed));
}

/* Count a record lost for want of memory or queue space. */
static void count_drop(void)
{
    atomic_fetch_add_explicit(&st_dropped, 1, memory_order_relaxed);
}

/* Prepare a record view's replacement buffers (they allocate on first use). */
static void record_init(keel_log_record *r)
{
    for (size_t i = 0; i < KEEL_LOG_FIELDS_MAX; i++)
        keel__lbuf_init(&r->f[i].repl, KEEL__LOG_SET_MAX);
    keel__lbuf_init(&r->msg_repl, KEEL__LOG_SET_MAX);
}

/* Take the synchronous path's lock, preparing its sinks and record view the first time. */
static void sync_lock(void)
{
    pthread_mutex_lock(&g_sync_mu);
    if (!g_sync_ready) {
        keel__log_sinks_init_stderr(&g_ssinks);
        record_init(&g_srec);
        g_sync_ready = 1;
    }
}

static void sync_write(const unsigned char *blob)
{
    sync_lock();
    consume(&g_srec, &g_ssinks, blob);
    keel__log_sinks_flush(&g_ssinks);
    pthread_mutex_unlock(&g_sync_mu);
}

/* Write r, already through the hook, synchronously (the logger stopped while its caller was
 * formatting it). */
static void sync_emit(const keel_log_record *r)
{
    sync_lock();
    atomic_fetch_add_explicit(&st_written, 1, memory_order_relaxed);
    keel__log_sinks_emit(&g_ssinks, r, atomic_load_explicit(&g_level, memory_order_relaxed));
    keel__log_sinks_flush(&g_ssinks);
    pthread_mutex_unlock(&g_sync_mu);
}

/* The writer's side of a slot: the caller's formatted lines to the sinks. */
static void consume_formatted(keel__log_sinks *s, const unsigned char *p)
{
    pre_hdr h;
    memcpy(&h, p, sizeof h);
    const char *json = (const char *)p + sizeof h;
    atomic_fetch_add_explicit(&st_written, 1, memory_order_relaxed);
    keel__log_sinks_emit_formatted(s, h.level, atomic_load_explicit(&g_level, memory_order_relaxed),
                                   json, h.json_len, json + h.json_len, h.text_len);
}

/* This thread's record view and format buffer (NULL when out of memory). */
static fmt_state *fmt_state_get(void)
{
    if (tl_fmt != NULL)
        return tl_fmt;
    if (!g_fmt_key_ok)
        return NULL;
    fmt_state *f = keel_calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    record_init(&f->rec);
    keel__lbuf_init(&f->out, KEEL__LOG_LINES_MAX + sizeof(pre_hdr));
    if (pthread_setspecific(g_fmt_key, f) != 0) {
        keel_free(f);
        return NULL;
    }
    tl_fmt = f;
    return f;
}

/* ============================================================== writer == */

/* Sleep on not_empty for at most ms milliseconds (monotonic clock). */
static void wait_ms(unsigned ms)
{
    struct timespec dl = keel__mono_deadline(ms);
    pthread_cond_timedwait(&g.not_empty, &g.mu, &dl);
}

/* The writer wakes once per batch, not once per record: after the first record of a burst
 * arrives it lingers up to WRITER_LINGER_MS so that a busy server pays one wake-up (two
 * context switches) per batch instead of per request.  Flushes, shutdown, ERROR+ records
 * and a queue a quarter full cut the linger short. */
#define WRITER_LINGER_MS 10u

/* Queue depth that ends the linger (a quarter of the queue at most).  Measured on one shared
 * CPU: smaller batches (256) cost more wake-ups and did not shorten tail latency; a writer
 * that yields between batches fell behind and dropped records. */
#ifndef WRITER_WAKE_RECORDS
#define WRITER_WAKE_RECORDS 1024u
#endif
static size_t wake_at(void)
{
    return KEEL_MIN((size_t)WRITER_WAKE_RECORDS, KEEL_MAX(g.cap / 4, (size_t)1));
}

static void *writer_main(void *arg)
{
    KEEL_UNUSED(arg);
    tl_is_writer = 1;
    pthread_mutex_lock(&g.mu);
    for (;;) {
        while (g.count == 0 && !g.stopping) {
            g.writer_idle = 1;
            pthread_cond_wait(&g.not_empty, &g.mu);
            g.writer_idle = 0;
        }
        if (g.count == 0)
            break;
        if (!g.stopping && g.flush_waiters == 0 && g.block_waiters == 0 &&
            g.count < wake_at()) {
            g.writer_lingering = 1;
            wait_ms(WRITER_LINGER_MS);
            g.writer_lingering = 0;
        }
        size_t n = KEEL_MIN(g.count, (size_t)WRITER_BATCH), start = g.head;
        pthread_mutex_unlock(&g.mu);
        /* Slots [start, start + n) are ours until head moves past them:
         * producers only fill slots after head + count. */
        for (size_t k = 0; k < n; k++) {
            slot *s = &g.ring[(start + k) % g.cap];
            consume_formatted(&g_sinks, s->heap != NULL ? s->heap : s->in.b);
            if (s->heap != NULL) {
                keel_free(s->heap);
                s->heap = NULL;
            }
        }
        keel__log_sinks_flush(&g_sinks);
        pthread_mutex_lock(&g.mu);
        g.head = (start + n) % g.cap;
        g.count -= n;
        /* Empty: start again at slot 0, so producers keep writing into the same few slots,
         * which stay in the CPU cache (and the rest of the ring is never touched), instead of
         * sweeping the whole ring and missing the cache on every record. */
        if (g.count == 0) {
            g.head = 0;
            atomic_store_explicit(&g_next_slot, (uintptr_t)&g.ring[0], memory_order_relaxed);
        }
        g.seq_done += n;
        if (g.block_waiters)
            pthread_cond_broadcast(&g.not_full);
        if (g.flush_waiters)
            pthread_cond_broadcast(&g.done);
    }
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

/* ============================================================== caller == */

typedef struct stage {
    union {
        max_align_t align;
        unsigned char b[SLOT_INLINE];
    } u;
} stage;

/* Append the truncation marker to a message of n bytes at m whose buffer
 * holds room bytes (room >= sizeof TRUNC_MARK); returns the new length. */
static size_t truncate_msg(char *m, size_t n, size_t room)
{
    size_t keep = utf8_cut(m, n, room - sizeof TRUNC_MARK);
    memcpy(m + keep, TRUNC_MARK, sizeof TRUNC_MARK); /* includes the NUL */
    return keep + sizeof TRUNC_MARK - 1;
}

/* The running logger's path for the record encoded in blob: decode it into this thread's
 * view, run the hook, format the lines the sinks need, queue them. */
static void enqueue_formatted(const unsigned char *blob, keel_log_level lv)
{
    fmt_state *fs = fmt_state_get();
    if (fs == NULL) {
        count_drop();
        return;
    }
    const char *next = (const char *)atomic_load_explicit(&g_next_slot, memory_order_relaxed);
    if (next != NULL)
        for (size_t off = 0; off < sizeof(slot); off += 64)
            __builtin_prefetch(next + off, 1, 3);
    keel_log_record *r = &fs->rec;
    decode(r, blob);
    if (run_hook(r)) {
        atomic_fetch_add_explicit(&st_filtered, 1, memory_order_relaxed);
        return;
    }
    for (;;) {
        unsigned gen = atomic_load_explicit(&g_fmt_gen, memory_order_acquire);
        unsigned formats = atomic_load_explicit(&g_formats, memory_order_relaxed);
        keel__lbuf *out = &fs->out;
        keel__lbuf_reset(out);
        pre_hdr ph;
        memset(&ph, 0, sizeof ph);
        keel__lbuf_put(out, &ph, sizeof ph);
        size_t jn, tn;
        if (keel__log_format(out, r, formats, &jn, &tn) != KEEL_OK) {
            keel__log_count_error();
            return;
        }
        ph.level = r->level;
        ph.json_len = (uint32_t)jn;
        ph.text_len = (uint32_t)tn;
        memcpy(out->p, &ph, sizeof ph);
        unsigned char *big = NULL;
        if (out->len > SLOT_INLINE) {
            if ((big = keel_malloc(out->len)) == NULL) {
                count_drop();
                return;
            }
            memcpy(big, out->p, out->len);
        }

        pthread_mutex_lock(&g.mu);
        while (g.running && g.count == g.cap) {
            if (g.overflow == KEEL_LOG_OVERFLOW_DROP || tl_is_writer) {
                pthread_mutex_unlock(&g.mu);
                count_drop();
                keel_free(big);
                return;
            }
            g.block_waiters++;
            pthread_cond_wait(&g.not_full, &g.mu);
            g.block_waiters--;
        }
        if (!g.running) {
            /* stopped meanwhile: written synchronously, without running the hook again */
            pthread_mutex_unlock(&g.mu);
            keel_free(big);
            sync_emit(r);
            return;
        }
        if (atomic_load_explicit(&g_fmt_gen, memory_order_relaxed) != gen) {
            /* restarted meanwhile, maybe with other sinks: format again */
            pthread_mutex_unlock(&g.mu);
            keel_free(big);
            continue;
        }
        slot *s = &g.ring[(g.head + g.count) % g.cap];
        if (big != NULL)
            s->heap = big;
        else
            memcpy(s->in.b, out->p, out->len);
        g.count++;
        g.seq_in++;
        atomic_store_explicit(&g_next_slot, (uintptr_t)&g.ring[(g.head + g.count) % g.cap],
                              memory_order_relaxed);
        if (g.writer_idle ||
            (g.writer_lingering && (g.count >= wake_at() || lv >= KEEL_LOG_LEVEL_ERROR)))
            pthread_cond_signal(&g.not_empty);
        pthread_mutex_unlock(&g.mu);
        return;
    }
}

void keel_log_vwrite(const keel_logger *lg, keel_log_level lv, const char *file, int line,
                     const char *func, const keel_log_field *fields, size_t nfields,
                     const char *fmt, va_list ap)
{
    if ((int)lv < atomic_load_explicit(&g_threshold, memory_order_relaxed))
        return;
    if (tl_in_hook) {
        count_drop();
        return;
    }
    blob_hdr h;
    memset(&h, 0, sizeof h);
    h.wall_ms = keel_time_wall_ms();
    h.lg = lg != NULL ? lg : &g_root;
    h.level = (int32_t)lv;
    h.line = line;
    keel_str mod = module_of(file);
    keel_str fn = func != NULL ? (keel_str){func, strnlen(func, FUNC_MAX)} : KEEL_STR_LIT("");
    h.module_len = (uint16_t)mod.len;
    h.func_len = (uint16_t)fn.len;
    h.rid_len = tl_ctx.rid_len;
    h.uid_len = tl_ctx.uid_len;

    /* Field descriptors first: sizes decide where the message goes. */
    blob_field bf[KEEL_LOG_FIELDS_MAX];
    const char *fkey[KEEL_LOG_FIELDS_MAX], *fstr[KEEL_LOG_FIELDS_MAX];
    size_t nf = 0, fixed = sizeof h + mod.len + fn.len + h.rid_len + h.uid_len;
    for (size_t i = 0; fields != NULL && i < nfields && nf < KEEL_LOG_FIELDS_MAX; i++) {
        const keel_log_field *f = &fields[i];
        if (f->key == NULL || f->type < KEEL_LOG_FIELD_STR || f->type > KEEL_LOG_FIELD_BOOL)
            continue;
        blob_field *b = &bf[nf];
        memset(b, 0, sizeof *b);
        b->type = (uint8_t)f->type;
        b->key_len = (uint16_t)strnlen(f->key, KEEL_LOG_KEY_MAX);
        fkey[nf] = f->key;
        fstr[nf] = NULL;
        if (f->type == KEEL_LOG_FIELD_STR) {
            if (f->v.s == NULL) {
                b->is_null = 1;
            } else {
                size_t n = f->len == KEEL_LOG_STRLEN ? strnlen(f->v.s, KEEL_LOG_FIELD_STR_MAX + 1)
                                                     : f->len;
                b->slen = (uint32_t)utf8_cut(f->v.s, n, KEEL_LOG_FIELD_STR_MAX);
                fstr[nf] = f->v.s;
            }
        } else if (f->type == KEEL_LOG_FIELD_INT) {
            b->i = f->v.i;
        } else if (f->type == KEEL_LOG_FIELD_DOUBLE) {
            b->d = f->v.d;
        } else {
            b->i = f->v.b != 0;
        }
        fixed += sizeof *b + b->key_len + b->slen;
        nf++;
    }
    h.nfields = (uint8_t)nf;

    /* Encode the fixed part into the stage, or straight into a heap blob when
     * it cannot leave room for a short message. */
    stage st;
    unsigned char *buf = st.u.b, *heap = NULL;
    size_t room = sizeof st.u.b;
    if (fixed + 64 > room) {
        room = fixed + KEEL_LOG_MESSAGE_MAX + sizeof TRUNC_MARK;
        heap = keel_malloc(room);
        if (heap == NULL) {
            count_drop();
            return;
        }
        buf = heap;
    }
    unsigned char *p = buf + sizeof h;
    memcpy(p, bf, nf * sizeof bf[0]);
    p += nf * sizeof bf[0];
    memcpy(p, mod.ptr, mod.len);
    p += mod.len;
    memcpy(p, fn.ptr, fn.len);
    p += fn.len;
    memcpy(p, tl_ctx.rid, h.rid_len);
    p += h.rid_len;
    memcpy(p, tl_ctx.uid, h.uid_len);
    p += h.uid_len;
    for (size_t i = 0; i < nf; i++) {
        memcpy(p, fkey[i], bf[i].key_len);
        p += bf[i].key_len;
        if (bf[i].slen) {
            memcpy(p, fstr[i], bf[i].slen);
            p += bf[i].slen;
        }
    }
    KEEL_ASSERT((size_t)(p - buf) == fixed);

    /* The message, last.  vsnprintf reports the full length, so a message
     * that did not fit the stage is formatted once more into a heap blob. */
    va_list ap2;
    va_copy(ap2, ap);
    size_t avail = room - fixed;
    int n;
    if (fmt != NULL && fmt[0] == '%' && fmt[1] == 's' && fmt[2] == '\0') {
        /* "%s" with a message built by the caller (the access log): copied without printf */
        va_list ap3;
        va_copy(ap3, ap);
        const char *m = va_arg(ap3, const char *);
        va_end(ap3);
        if (m == NULL)
            m = "(null)"; /* what glibc's printf writes */
        size_t ml = strnlen(m, (size_t)KEEL_LOG_MESSAGE_MAX + 1);
        size_t cp = KEEL_MIN(ml, avail - 1);
        memcpy(buf + fixed, m, cp);
        buf[fixed + cp] = '\0';
        n = (int)ml;
    } else {
        n = fmt != NULL ? vsnprintf((char *)buf + fixed, avail, fmt, ap) : 0;
    }
    size_t mlen;
    if (n < 0) {
        static const char bad[] = "<invalid log format>";
        memcpy(buf + fixed, bad, sizeof bad);
        mlen = sizeof bad - 1;
    } else if ((size_t)n < avail && (size_t)n <= KEEL_LOG_MESSAGE_MAX) {
        mlen = (size_t)n;
    } else if (heap == NULL) {
        size_t want = KEEL_MIN((size_t)n, (size_t)KEEL_LOG_MESSAGE_MAX) + sizeof TRUNC_MARK;
        heap = keel_malloc(fixed + want);
        if (heap != NULL) {
            memcpy(heap, buf, fixed);
            buf = heap;
            avail = want;
            int n2 = vsnprintf((char *)buf + fixed, avail, fmt, ap2);
            mlen = n2 >= 0 ? (size_t)n2 : 0;
            if (mlen >= avail || mlen > KEEL_LOG_MESSAGE_MAX)
                mlen = truncate_msg((char *)buf + fixed, KEEL_MIN(mlen, avail - 1), avail);
        } else {
            /* Out of memory: keep what fitted in the stage. */
            mlen = truncate_msg((char *)buf + fixed, avail - 1, avail);
        }
    } else {
        mlen = truncate_msg((char *)buf + fixed, KEEL_MIN((size_t)n, avail - 1), avail);
    }
    va_end(ap2);
    h.msg_len = (uint32_t)mlen;
    memcpy(buf, &h, sizeof h);

    if (!atomic_load_explicit(&g_fmt_live, memory_order_acquire)) {
        sync_write(buf);
        keel_free(heap);
        return;
    }
    enqueue_formatted(buf, lv);
    keel_free(heap);
}

void keel_log_write(const keel_logger *lg, keel_log_level lv, const char *file, int line,
                    const char *func, const keel_log_field *fields, size_t nfields,
                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    keel_log_vwrite(lg, lv, file, line, func, fields, nfields, fmt, ap);
    va_end(ap);
}

/* ================================================================ hook == */

keel_err keel_log_set_hook(keel_log_hook_fn fn, void *ud)
{
    if (tl_in_hook)
        return KEEL_EBUSY;
    pthread_rwlock_wrlock(&g_hook_lock);
    g_hook_fn = fn;
    g_hook_ud = ud;
    atomic_store_explicit(&g_hook_set, fn != NULL, memory_order_release);
    pthread_rwlock_unlock(&g_hook_lock);
    return KEEL_OK;
}

keel_log_level keel_log_record_level(const keel_log_record *r)
{
    return r != NULL ? (keel_log_level)r->level : KEEL_LOG_LEVEL_DEBUG;
}

const char *keel_log_record_logger(const keel_log_record *r)
{
    return r != NULL ? r->lg->name : g_root.name;
}

keel_str keel_log_record_message(const keel_log_record *r)
{
    return r != NULL ? r->msg : KEEL_STR_NULL;
}

size_t keel_log_record_nfields(const keel_log_record *r)
{
    return r != NULL ? r->nfields : 0;
}

keel_str keel_log_record_field_key(const keel_log_record *r, size_t i)
{
    if (r == NULL || i >= r->nfields)
        return KEEL_STR_NULL;
    return (keel_str){r->f[i].key, r->f[i].key_len};
}

keel_log_field_type keel_log_record_field_type(const keel_log_record *r, size_t i)
{
    if (r == NULL || i >= r->nfields)
        return (keel_log_field_type)0;
    return r->f[i].type;
}

keel_str keel_log_record_field_str(const keel_log_record *r, size_t i)
{
    if (r == NULL || i >= r->nfields || r->f[i].type != KEEL_LOG_FIELD_STR || r->f[i].is_null)
        return KEEL_STR_NULL;
    return (keel_str){r->f[i].s, r->f[i].slen};
}

int64_t keel_log_record_field_int(const keel_log_record *r, size_t i)
{
    if (r == NULL || i >= r->nfields || r->f[i].type != KEEL_LOG_FIELD_INT)
        return 0;
    return r->f[i].i;
}

/* Copy s[0..n) into dst (which may currently hold s itself). */
static keel_err set_copy(keel__lbuf *dst, const char *s, size_t n, keel_str *out)
{
    if (s == NULL && n > 0)
        return KEEL_EINVAL;
    if (n > KEEL__LOG_SET_MAX)
        return KEEL_ETOOBIG;
    char *tmp = NULL;
    if (n > 0 && dst->p != NULL && s >= dst->p && s < dst->p + dst->cap) {
        tmp = keel_malloc(n);
        if (tmp == NULL)
            return KEEL_ENOMEM;
        memcpy(tmp, s, n);
        s = tmp;
    }
    keel__lbuf_reset(dst);
    keel__lbuf_put(dst, s != NULL ? s : "", n);
    keel_free(tmp);
    if (dst->err) {
        keel_err e = dst->err == KEEL_ETOOBIG ? KEEL_ETOOBIG : KEEL_ENOMEM;
        keel__lbuf_reset(dst);
        return e;
    }
    *out = (keel_str){dst->p, dst->len};
    return KEEL_OK;
}

keel_err keel_log_record_set_message(keel_log_record *r, const char *s, size_t n)
{
    if (r == NULL)
        return KEEL_EINVAL;
    keel_str v;
    keel_err e = set_copy(&r->msg_repl, s, n, &v);
    if (e == KEEL_OK)
        r->msg = v;
    return e;
}

keel_err keel_log_record_set_field_str(keel_log_record *r, size_t i, const char *s, size_t n)
{
    if (r == NULL)
        return KEEL_EINVAL;
    if (i >= r->nfields)
        return KEEL_ERANGE;
    keel_str v;
    keel_err e = set_copy(&r->f[i].repl, s, n, &v);
    if (e == KEEL_OK) {
        keel__log_rfield *f = &r->f[i];
        f->type = KEEL_LOG_FIELD_STR;
        f->is_null = 0;
        f->s = v.ptr;
        f->slen = v.len;
    }
    return e;
}

void keel__log_record_cleanup(keel_log_record *r)
{
    for (size_t i = 0; i < KEEL_LOG_FIELDS_MAX; i++)
        keel__lbuf_free(&r->f[i].repl);
    keel__lbuf_free(&r->msg_repl);
}

/* =========================================================== lifecycle == */

void keel_log_config_default(keel_log_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->size = sizeof *cfg;
    cfg->dir = NULL;
    cfg->level = KEEL_LOG_LEVEL_INFO;
    cfg->console = KEEL_LOG_CONSOLE_TEXT;
    cfg->console_color = -1;
    cfg->queue_capacity = 4096;
    cfg->overflow = KEEL_LOG_OVERFLOW_DROP;
    cfg->rotate_bytes = 10u * 1024u * 1024u;
    cfg->rotate_backups = 5;
}

/* Merge a caller's config (possibly an older, shorter struct) over the defaults. */
static keel_err config_take(keel_log_config *c, const keel_log_config *in)
{
    keel_log_config_default(c);
    if (in == NULL)
        return KEEL_OK;
    if (in->size < sizeof(size_t) || in->size > sizeof *c)
        return KEEL_EINVAL;
    memcpy(c, in, in->size);
    c->size = sizeof *c;
    if ((int)c->level < KEEL_LOG_LEVEL_DEBUG || (int)c->level > KEEL_LOG_LEVEL_CRITICAL)
        return KEEL_EINVAL;
    if ((int)c->console < KEEL_LOG_CONSOLE_OFF || (int)c->console > KEEL_LOG_CONSOLE_JSON)
        return KEEL_EINVAL;
    if (c->overflow != KEEL_LOG_OVERFLOW_DROP && c->overflow != KEEL_LOG_OVERFLOW_BLOCK)
        return KEEL_EINVAL;
    if (c->queue_capacity == 0 || c->queue_capacity > QUEUE_MAX)
        return KEEL_EINVAL;
    if (c->rotate_backups > BACKUPS_MAX)
        return KEEL_EINVAL;
    if (c->dir != NULL && c->dir[0] == '\0')
        return KEEL_EINVAL;
    return KEEL_OK;
}

keel_err keel_log_start(const keel_log_config *cfg)
{
    keel_log_config c;
    keel_err e = config_take(&c, cfg);
    if (e != KEEL_OK)
        return e;
    pthread_once(&g_once, init_once);
    pthread_mutex_lock(&g_life_mu);
    if (g_started) {
        pthread_mutex_unlock(&g_life_mu);
        return KEEL_ESTATE;
    }
    slot *ring = keel_calloc(c.queue_capacity, sizeof *ring);
    if (ring == NULL) {
        pthread_mutex_unlock(&g_life_mu);
        return KEEL_ENOMEM;
    }
    e = keel__log_sinks_open(&g_sinks, &c);
    if (e != KEEL_OK) {
        keel_free(ring);
        pthread_mutex_unlock(&g_life_mu);
        return e;
    }
    pthread_mutex_lock(&g.mu);
    g.ring = ring;
    g.cap = c.queue_capacity;
    g.head = g.count = 0;
    g.overflow = c.overflow;
    g.stopping = 0;
    atomic_store_explicit(&g_formats, keel__log_sinks_formats(&g_sinks), memory_order_relaxed);
    atomic_fetch_add_explicit(&g_fmt_gen, 1, memory_order_release);
    pthread_mutex_unlock(&g.mu);

    /* The writer takes no signals: they belong to the application's threads,
     * and a blocked SIGPIPE turns a broken stderr pipe into EPIPE. */
    int rc = keel__thread_start(&g_thread, writer_main, NULL, "log");
    if (rc != 0) {
        pthread_mutex_lock(&g.mu);
        g.ring = NULL;
        g.cap = 0;
        pthread_mutex_unlock(&g.mu);
        keel__log_sinks_close(&g_sinks);
        keel_free(ring);
        pthread_mutex_unlock(&g_life_mu);
        return rc == ENOMEM || rc == EAGAIN ? KEEL_ENOMEM : KEEL_EINTERNAL;
    }
    pthread_mutex_lock(&g.mu);
    g.running = 1;
    atomic_store_explicit(&g_fmt_live, 1, memory_order_release);
    pthread_mutex_unlock(&g.mu);
    g_started = 1;

    pthread_mutex_lock(&g_level_mu);
    atomic_store_explicit(&g_level, (int)c.level, memory_order_relaxed);
    g_cfg_active = 1;
    g_cfg_console = c.console != KEEL_LOG_CONSOLE_OFF;
    g_cfg_files = c.dir != NULL;
    recompute_threshold();
    pthread_mutex_unlock(&g_level_mu);
    pthread_mutex_unlock(&g_life_mu);
    return KEEL_OK;
}

void keel_log_stop(void)
{
    if (tl_is_writer)
        return; /* from the hook: the writer cannot join itself */
    pthread_mutex_lock(&g_life_mu);
    if (!g_started) {
        pthread_mutex_unlock(&g_life_mu);
        return;
    }
    pthread_mutex_lock(&g.mu);
    g.running = 0;
    atomic_store_explicit(&g_fmt_live, 0, memory_order_relaxed);
    g.stopping = 1;
    pthread_cond_broadcast(&g.not_empty);
    pthread_cond_broadcast(&g.not_full);
    pthread_mutex_unlock(&g.mu);
    pthread_join(g_thread, NULL);

    keel__log_sinks_close(&g_sinks);
    pthread_mutex_lock(&g.mu);
    KEEL_ASSERT(g.count == 0);
    keel_free(g.ring);
    g.ring = NULL;
    atomic_store_explicit(&g_next_slot, 0, memory_order_relaxed);
    g.cap = g.head = g.count = 0;
    g.stopping = 0;
    if (g.flush_waiters)
        pthread_cond_broadcast(&g.done);
    pthread_mutex_unlock(&g.mu);
    g_started = 0;

    pthread_mutex_lock(&g_level_mu);
    g_cfg_active = 0;
    recompute_threshold();
    pthread_mutex_unlock(&g_level_mu);
    pthread_mutex_unlock(&g_life_mu);
}

keel_err keel_log_flush(uint64_t timeout_ms)
{
    if (tl_is_writer)
        return KEEL_EBUSY;
    pthread_once(&g_once, init_once);
    struct timespec dl = keel__mono_deadline(timeout_ms);
    keel_err e = KEEL_OK;
    pthread_mutex_lock(&g.mu);
    uint64_t target = g.seq_in;
    g.flush_waiters++;
    if (g.writer_lingering)
        pthread_cond_signal(&g.not_empty);
    while (g.seq_done < target && (g.running || g.stopping)) {
        if (timeout_ms == 0 || pthread_cond_timedwait(&g.done, &g.mu, &dl) == ETIMEDOUT) {
            e = g.seq_done >= target ? KEEL_OK : KEEL_ETIMEOUT;
            break;
        }
    }
    g.flush_waiters--;
    pthread_mutex_unlock(&g.mu);
    return e;
}

void keel_log_stats_get(keel_log_stats *out)
{
    if (out == NULL)
        return;
    out->written = atomic_load_explicit(&st_written, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&st_dropped, memory_order_relaxed);
    out->filtered = atomic_load_explicit(&st_filtered, memory_order_relaxed);
    out->write_errors = atomic_load_explicit(&st_errors, memory_order_relaxed);
    pthread_mutex_lock(&g.mu);
    out->queued = g.count;
    pthread_mutex_unlock(&g.mu);
}
