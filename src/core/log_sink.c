/* log_sink.c - record formatting (JSON lines, coloured text) and the sinks:
 * rotating files and the console.  Everything here runs on one consumer
 * thread at a time (the writer thread, or the synchronous path under its
 * lock), so nothing in this file locks. */
#include "keel_int.h"

#include "log_int.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Buffered bytes per sink before an early write. */
#define SINK_FLUSH_AT (256u * 1024u)
#define SINK_BUF_MAX (4u * 1024u * 1024u)
/* Longest path we build (dir + "/error.json.100"). */
#define LOG_PATH_MAX 4096

/* ================================================================ lbuf == */

void keel__lbuf_init(keel__lbuf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->err = 0;
}

void keel__lbuf_reset(keel__lbuf *b)
{
    b->len = 0;
    b->err = 0;
}

void keel__lbuf_free(keel__lbuf *b)
{
    keel_free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->err = 0;
}

static int lbuf_reserve(keel__lbuf *b, size_t n)
{
    if (b->err)
        return -1;
    if (n > b->max - b->len || b->len > b->max) {
        b->err = KEEL_ETOOBIG;
        return -1;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = keel_realloc(b->p, cap);
    if (p == NULL) {
        b->err = KEEL_ENOMEM;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void keel__lbuf_put_slow(keel__lbuf *b, const void *p, size_t n)
{
    if (lbuf_reserve(b, n) != 0)
        return;
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void keel__lbuf_puts(keel__lbuf *b, const char *s)
{
    keel__lbuf_put(b, s, strlen(s));
}


/* ============================================================ escaping == */

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 table 4), 0 if the
 * bytes there are not one (overlong, surrogate, past U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return (n >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && p[1] > 0x9F)
            return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && p[1] > 0x8F)
            return 0; /* past U+10FFFF */
        return 4;
    }
    return 0;
}

static const char HEX[] = "0123456789abcdef";

void keel__lbuf_json_str(keel__lbuf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    keel__lbuf_putc(b, '"');
    while (i < n) {
        unsigned c = p[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            i++;
            continue;
        }
        keel__lbuf_put(b, p + run, i - run);
        if (c < 0x80) {
            char esc[6] = {'\\', 'u', '0', '0', HEX[c >> 4], HEX[c & 15]};
            switch (c) {
            case '"': keel__lbuf_put(b, "\\\"", 2); break;
            case '\\': keel__lbuf_put(b, "\\\\", 2); break;
            case '\n': keel__lbuf_put(b, "\\n", 2); break;
            case '\r': keel__lbuf_put(b, "\\r", 2); break;
            case '\t': keel__lbuf_put(b, "\\t", 2); break;
            case '\b': keel__lbuf_put(b, "\\b", 2); break;
            case '\f': keel__lbuf_put(b, "\\f", 2); break;
            default: keel__lbuf_put(b, esc, sizeof esc); break;
            }
            i++;
        } else {
            size_t k = utf8_seq(p + i, n - i);
            if (k) {
                keel__lbuf_put(b, p + i, k);
                i += k;
            } else {
                keel__lbuf_put(b, "\xEF\xBF\xBD", 3); /* U+FFFD */
                i++;
            }
        }
        run = i;
    }
    keel__lbuf_put(b, p + run, i - run);
    keel__lbuf_putc(b, '"');
}

void keel__lbuf_text(keel__lbuf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c >= 0x20 && c < 0x7F) {
            i++;
            continue;
        }
        keel__lbuf_put(b, p + run, i - run);
        if (c < 0x80) {
            char esc[4] = {'\\', 'x', HEX[c >> 4], HEX[c & 15]};
            if (c == '\n')
                keel__lbuf_put(b, "\\n", 2);
            else if (c == '\r')
                keel__lbuf_put(b, "\\r", 2);
            else if (c == '\t')
                keel__lbuf_put(b, "\\t", 2);
            else
                keel__lbuf_put(b, esc, sizeof esc);
            i++;
        } else {
            size_t k = utf8_seq(p + i, n - i);
            if (k) {
                keel__lbuf_put(b, p + i, k);
                i += k;
            } else {
                char esc[4] = {'\\', 'x', HEX[c >> 4], HEX[c & 15]};
                keel__lbuf_put(b, esc, sizeof esc);
                i++;
            }
        }
        run = i;
    }
    keel__lbuf_put(b, p + run, i - run);
}

/* ========================================================== formatting == */

static void put_int(keel__lbuf *b, int64_t v)
{
    char tmp[24];
    /* by hand: every record has a line number and most have integer fields */
    char *end = tmp + sizeof tmp, *p = end;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    keel__lbuf_put(b, p, (size_t)(end - p));
}

/* Shortest of %.15g / %.17g that reads back exactly; JSON has no NaN or
 * infinity, so those become null. */
static void put_double(keel__lbuf *b, double d)
{
    char tmp[40];
    if (d != d || d > 1.7976931348623157e308 || d < -1.7976931348623157e308) {
        keel__lbuf_puts(b, "null");
        return;
    }
    /* Fast path for values with at most three decimals (durations in ms rounded to the
     * microsecond): exact when the digits read back as the same double. */
    if (d > -1e12 && d < 1e12) {
        double scaled = d * 1000.0;
        long long m = (long long)(scaled < 0 ? scaled - 0.5 : scaled + 0.5);
        if ((double)m / 1000.0 == d) {
            unsigned long long a = m < 0 ? (unsigned long long)-m : (unsigned long long)m;
            char *end = tmp + sizeof tmp, *p = end;
            unsigned frac = (unsigned)(a % 1000);
            int digits = 3;
            while (digits > 0 && frac % 10 == 0) {
                frac /= 10;
                digits--;
            }
            for (int i = 0; i < digits; i++) {
                *--p = (char)('0' + frac % 10);
                frac /= 10;
            }
            if (digits > 0)
                *--p = '.';
            unsigned long long whole = a / 1000;
            do {
                *--p = (char)('0' + whole % 10);
                whole /= 10;
            } while (whole != 0);
            if (m < 0)
                *--p = '-';
            keel__lbuf_put(b, p, (size_t)(end - p));
            return;
        }
    }
    int n = snprintf(tmp, sizeof tmp, "%.15g", d);
    if (n > 0 && strtod(tmp, NULL) != d)
        n = snprintf(tmp, sizeof tmp, "%.17g", d);
    if (n > 0)
        keel__lbuf_put(b, tmp, (size_t)n);
}

static void put_json_value(keel__lbuf *b, const keel__log_rfield *f)
{
    switch (f->type) {
    case KEEL_LOG_FIELD_STR:
        if (f->is_null)
            keel__lbuf_puts(b, "null");
        else
            keel__lbuf_json_str(b, f->s, f->slen);
        break;
    case KEEL_LOG_FIELD_INT: put_int(b, f->i); break;
    case KEEL_LOG_FIELD_DOUBLE: put_double(b, f->d); break;
    case KEEL_LOG_FIELD_BOOL: keel__lbuf_puts(b, f->b ? "true" : "false"); break;
    default: keel__lbuf_puts(b, "null"); break;
    }
}

static int key_is(const keel__log_rfield *f, const char *k, size_t n)
{
    return f->key_len == n && memcmp(f->key, k, n) == 0;
}

static int is_exception(const keel__log_rfield *f)
{
    return key_is(f, "exception", 9);
}

/* Field i is shadowed when a later field has the same key ("last wins", as
 * with a Python dict), so every key appears once in the output. */
static int shadowed(const keel_log_record *r, size_t i)
{
    for (size_t j = i + 1; j < r->nfields; j++)
        if (key_is(&r->f[j], r->f[i].key, r->f[i].key_len))
            return 1;
    return 0;
}

static void put_key(keel__lbuf *b, const char *k)
{
    keel__lbuf_putc(b, '"');
    keel__lbuf_puts(b, k);
    keel__lbuf_put(b, "\":", 2);
}

void keel__log_format_json(keel__lbuf *b, const keel_log_record *r)
{
    char ts[KEEL_TIME_ISO8601_SIZE];
    size_t tsn = keel_time_iso8601(r->wall_ms, ts);
    keel__lbuf_put(b, "{\"timestamp\":\"", 14);
    keel__lbuf_put(b, ts, tsn);
    keel__lbuf_put(b, "\",\"level\":\"", 11);
    keel__lbuf_puts(b, keel_log_level_name((keel_log_level)r->level));
    keel__lbuf_put(b, "\",", 2);
    put_key(b, "logger");
    keel__lbuf_json_str(b, r->lg->name, r->lg->name_len);
    keel__lbuf_putc(b, ',');
    put_key(b, "message");
    keel__lbuf_json_str(b, r->msg.ptr, r->msg.len);
    keel__lbuf_putc(b, ',');
    put_key(b, "module");
    keel__lbuf_json_str(b, r->module.ptr, r->module.len);
    keel__lbuf_putc(b, ',');
    put_key(b, "function");
    keel__lbuf_json_str(b, r->func.ptr, r->func.len);
    keel__lbuf_putc(b, ',');
    put_key(b, "line");
    put_int(b, r->line);
    if (r->request_id.len) {
        keel__lbuf_putc(b, ',');
        put_key(b, "request_id");
        keel__lbuf_json_str(b, r->request_id.ptr, r->request_id.len);
    }
    if (r->user_id.len) {
        keel__lbuf_putc(b, ',');
        put_key(b, "user_id");
        keel__lbuf_json_str(b, r->user_id.ptr, r->user_id.len);
    }
    const keel__log_rfield *exc = NULL;
    int extra_open = 0;
    for (size_t i = 0; i < r->nfields; i++) {
        const keel__log_rfield *f = &r->f[i];
        if (is_exception(f)) {
            exc = f; /* the last one wins */
            continue;
        }
        if (shadowed(r, i))
            continue;
        keel__lbuf_put(b, extra_open ? "," : ",\"extra\":{", extra_open ? 1 : 10);
        extra_open = 1;
        keel__lbuf_json_str(b, f->key, f->key_len);
        keel__lbuf_putc(b, ':');
        put_json_value(b, f);
    }
    if (extra_open)
        keel__lbuf_putc(b, '}');
    if (exc != NULL) {
        keel__lbuf_putc(b, ',');
        put_key(b, "exception");
        put_json_value(b, exc);
    }
    keel__lbuf_put(b, "}\n", 2);
}

static const char *level_color(int lv)
{
    if (lv >= KEEL_LOG_LEVEL_CRITICAL)
        return "\x1b[1;31m";
    if (lv >= KEEL_LOG_LEVEL_ERROR)
        return "\x1b[31m";
    if (lv >= KEEL_LOG_LEVEL_WARNING)
        return "\x1b[33m";
    if (lv >= KEEL_LOG_LEVEL_INFO)
        return "\x1b[32m";
    return "\x1b[36m";
}

/* "2026-01-02T03:04:05.678Z INFO     app.auth: message request_id=.. key=value" */
void keel__log_format_text(keel__lbuf *b, const keel_log_record *r, int color)
{
    char ts[KEEL_TIME_ISO8601_SIZE];
    size_t tsn = keel_time_iso8601(r->wall_ms, ts);
    const char *name = keel_log_level_name((keel_log_level)r->level);
    size_t nlen = strlen(name);
    keel__lbuf_put(b, ts, tsn);
    keel__lbuf_putc(b, ' ');
    if (color)
        keel__lbuf_puts(b, level_color(r->level));
    keel__lbuf_put(b, name, nlen);
    if (color)
        keel__lbuf_puts(b, "\x1b[0m");
    keel__lbuf_put(b, "         ", 9 - KEEL_MIN(nlen, 8));
    keel__lbuf_text(b, r->lg->name, r->lg->name_len);
    keel__lbuf_put(b, ": ", 2);
    keel__lbuf_text(b, r->msg.ptr, r->msg.len);
    if (r->request_id.len) {
        keel__lbuf_puts(b, " request_id=");
        keel__lbuf_text(b, r->request_id.ptr, r->request_id.len);
    }
    if (r->user_id.len) {
        keel__lbuf_puts(b, " user_id=");
        keel__lbuf_text(b, r->user_id.ptr, r->user_id.len);
    }
    const keel__log_rfield *exc = NULL;
    for (size_t i = 0; i < r->nfields; i++) {
        const keel__log_rfield *f = &r->f[i];
        if (is_exception(f)) {
            exc = f;
            continue;
        }
        if (shadowed(r, i))
            continue;
        keel__lbuf_putc(b, ' ');
        keel__lbuf_text(b, f->key, f->key_len);
        keel__lbuf_putc(b, '=');
        put_json_value(b, f);
    }
    if (exc != NULL) {
        keel__lbuf_puts(b, " exception=");
        put_json_value(b, exc);
    }
    keel__lbuf_putc(b, '\n');
}

/* =============================================================== files == */

int keel__log_mkdir_p(const char *path, unsigned mode)
{
    char tmp[LOG_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, n + 1);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST)
            return -1;
        tmp[i] = saved;
    }
    struct stat st;
    if (stat(tmp, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static void file_warn(keel__log_file *f, const char *what, int err)
{
    keel__log_count_error();
    if (f->warned)
        return;
    f->warned = 1;
    char msg[LOG_PATH_MAX + 128];
    int n = snprintf(msg, sizeof msg, "keel log: %s %s: %s (further errors are only counted)\n",
                     what, f->path, strerror(err));
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, msg, KEEL_MIN((size_t)n, sizeof msg - 1));
        KEEL_UNUSED(w);
    }
}

static int file_open(keel__log_file *f, int trunc)
{
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (trunc ? O_TRUNC : 0);
    f->fd = open(f->path, flags, 0640);
    if (f->fd < 0) {
        file_warn(f, "cannot open", errno);
        return -1;
    }
    struct stat st;
    f->size = (fstat(f->fd, &st) == 0 && st.st_size > 0) ? (uint64_t)st.st_size : 0;
    return 0;
}

/* write() all of p, retrying short writes and EINTR; 0 or an errno value. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void file_flush(keel__log_file *f)
{
    if (f->out.len == 0)
        return;
    if (f->fd < 0 && file_open(f, 0) != 0) {
        keel__lbuf_reset(&f->out);
        return;
    }
    int e = write_all(f->fd, f->out.p, f->out.len);
    if (e != 0)
        file_warn(f, "cannot write", e);
    keel__lbuf_reset(&f->out);
}

/* Bytes freed per step when a rotated-out file is emptied. */
#define SHRINK_STEP (1u << 20)

/* Empty the file at path a step at a time (each step returns to user space, where the
 * scheduler can hand the CPU to a waiting thread).  Dropping a 10 MiB file
 * at once (the rename over the oldest backup, or O_TRUNC) frees its page cache and blocks in
 * one system call: several milliseconds of kernel time during which nothing else runs on the
 * writer's CPU, which is a request-latency spike on a server sharing it.  RocksDB's
 * DeleteScheduler truncates big files in chunks for the same reason.  Best effort: any
 * failure leaves the rest to the rename / truncation that follows. */
static void shrink_gradually(const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t size = st.st_size;
        while (size > 0) {
            size = size > (off_t)SHRINK_STEP ? size - (off_t)SHRINK_STEP : 0;
            if (ftruncate(fd, size) != 0)
                break;
        }
    }
    close(fd);
}

/* Python RotatingFileHandler order: name.(N-1) -> name.N, ..., name -> name.1,
 * so name.N (the oldest) is replaced and at most N backups ever exist. */
static void file_rotate(keel__log_sinks *s, keel__log_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    if (s->rotate_backups > 0) {
        char src[LOG_PATH_MAX + 8], dst[LOG_PATH_MAX + 8];
        snprintf(dst, sizeof dst, "%s.%u", f->path, s->rotate_backups);
        shrink_gradually(dst); /* the oldest backup, about to be replaced */
        for (unsigned i = s->rotate_backups; i > 1; i--) {
            snprintf(src, sizeof src, "%s.%u", f->path, i - 1);
            snprintf(dst, sizeof dst, "%s.%u", f->path, i);
            if (rename(src, dst) != 0 && errno != ENOENT)
                file_warn(f, "cannot rotate", errno);
        }
        snprintf(dst, sizeof dst, "%s.1", f->path);
        if (rename(f->path, dst) != 0 && errno != ENOENT)
            file_warn(f, "cannot rotate", errno);
        file_open(f, 0);
    } else {
        shrink_gradually(f->path);
        file_open(f, 1);
    }
    f->size = 0;
}

static void file_append(keel__log_sinks *s, keel__log_file *f, const char *line, size_t n)
{
    if (s->rotate_bytes > 0 && f->size > 0 && f->size + n > s->rotate_bytes) {
        file_flush(f);
        file_rotate(s, f);
    }
    if (f->out.len + n > f->out.max)
        file_flush(f);
    keel__lbuf_put(&f->out, line, n);
    if (f->out.err) {
        keel__log_count_error();
        keel__lbuf_reset(&f->out);
        return;
    }
    f->size += n;
    if (f->out.len >= SINK_FLUSH_AT)
        file_flush(f);
}

static int file_init(keel__log_file *f, const char *dir, const char *name, int min_level)
{
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    size_t n = dlen + 1 + strlen(name) + 1;
    f->fd = -1;
    f->size = 0;
    f->min_level = min_level;
    f->warned = 0;
    keel__lbuf_init(&f->out, SINK_BUF_MAX);
    f->path = keel_malloc(n);
    if (f->path == NULL)
        return KEEL_ENOMEM;
    snprintf(f->path, n, "%.*s/%s", (int)dlen, dir, name);
    f->fd = open(f->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (f->fd < 0)
        return errno == EACCES || errno == EPERM ? KEEL_EDENIED : KEEL_EIO;
    struct stat st;
    f->size = (fstat(f->fd, &st) == 0 && st.st_size > 0) ? (uint64_t)st.st_size : 0;
    return KEEL_OK;
}

static void file_close(keel__log_file *f)
{
    file_flush(f);
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    keel__lbuf_free(&f->out);
    keel_free(f->path);
    f->path = NULL;
}

/* =============================================================== sinks == */

static void sinks_zero(keel__log_sinks *s)
{
    memset(s, 0, sizeof *s);
    s->console_fd = STDERR_FILENO;
    s->app.fd = -1;
    s->err.fd = -1;
    keel__lbuf_init(&s->console_out, SINK_BUF_MAX);
    keel__lbuf_init(&s->lines, KEEL__LOG_LINES_MAX);
}

void keel__log_sinks_init_stderr(keel__log_sinks *s)
{
    sinks_zero(s);
    s->console = KEEL_LOG_CONSOLE_TEXT;
    s->color = 0;
}

keel_err keel__log_sinks_open(keel__log_sinks *s, const keel_log_config *cfg)
{
    sinks_zero(s);
    s->console = cfg->console;
    s->color = cfg->console_color < 0 ? isatty(STDERR_FILENO) : cfg->console_color != 0;
    s->rotate_bytes = cfg->rotate_bytes;
    s->rotate_backups = cfg->rotate_backups;
    if (cfg->dir == NULL)
        return KEEL_OK;
    if (strlen(cfg->dir) > LOG_PATH_MAX - 32)
        return KEEL_EINVAL;
    if (keel__log_mkdir_p(cfg->dir, 0750) != 0)
        return errno == EACCES || errno == EPERM || errno == EROFS ? KEEL_EDENIED : KEEL_EIO;
    s->have_files = 1;
    keel_err e = file_init(&s->app, cfg->dir, "app.json", KEEL_LOG_LEVEL_INFO);
    if (e == KEEL_OK)
        e = file_init(&s->err, cfg->dir, "error.json", KEEL_LOG_LEVEL_ERROR);
    if (e != KEEL_OK)
        keel__log_sinks_close(s);
    return e;
}

unsigned keel__log_sinks_formats(const keel__log_sinks *s)
{
    unsigned w = s->have_files ? KEEL__LOG_FMT_JSON : 0;
    if (s->console == KEEL_LOG_CONSOLE_JSON)
        w |= KEEL__LOG_FMT_JSON;
    else if (s->console == KEEL_LOG_CONSOLE_TEXT)
        w |= KEEL__LOG_FMT_TEXT | (s->color ? KEEL__LOG_FMT_COLOR : 0);
    return w;
}

keel_err keel__log_format(keel__lbuf *b, const keel_log_record *r, unsigned formats,
                          size_t *json_len, size_t *text_len)
{
    size_t start = b->len;
    *json_len = *text_len = 0;
    if (formats & KEEL__LOG_FMT_JSON) {
        keel__log_format_json(b, r);
        *json_len = b->len - start;
    }
    if (formats & KEEL__LOG_FMT_TEXT) {
        keel__log_format_text(b, r, (formats & KEEL__LOG_FMT_COLOR) != 0);
        *text_len = b->len - start - *json_len;
    }
    return b->err ? KEEL_ETOOBIG : KEEL_OK;
}

void keel__log_sinks_emit_formatted(keel__log_sinks *s, int lv, int level, const char *json,
                                    size_t json_len, const char *text, size_t text_len)
{
    int to_console = s->console != KEEL_LOG_CONSOLE_OFF && lv >= level;
    int to_app = s->have_files && lv >= KEEL_MAX(level, s->app.min_level);
    int to_err = s->have_files && lv >= KEEL_MAX(level, s->err.min_level);
    if (to_app)
        file_append(s, &s->app, json, json_len);
    if (to_err)
        file_append(s, &s->err, json, json_len);
    if (!to_console)
        return;
    const char *src = json;
    size_t n = json_len;
    if (s->console == KEEL_LOG_CONSOLE_TEXT) {
        src = text;
        n = text_len;
    }
    if (s->console_out.len + n > s->console_out.max)
        keel__log_sinks_flush(s);
    keel__lbuf_put(&s->console_out, src, n);
    if (s->console_out.err) {
        keel__log_count_error();
        keel__lbuf_reset(&s->console_out);
    }
}

void keel__log_sinks_emit(keel__log_sinks *s, const keel_log_record *r, int level)
{
    keel__lbuf_reset(&s->lines);
    size_t jn, tn;
    if (keel__log_format(&s->lines, r, keel__log_sinks_formats(s), &jn, &tn) != KEEL_OK) {
        keel__log_count_error();
        return;
    }
    keel__log_sinks_emit_formatted(s, r->level, level, s->lines.p, jn, s->lines.p + jn, tn);
}

void keel__log_sinks_flush(keel__log_sinks *s)
{
    if (s->console_out.len) {
        if (write_all(s->console_fd, s->console_out.p, s->console_out.len) != 0)
            keel__log_count_error();
        keel__lbuf_reset(&s->console_out);
    }
    if (s->have_files) {
        file_flush(&s->app);
        file_flush(&s->err);
    }
}

void keel__log_sinks_close(keel__log_sinks *s)
{
    keel__log_sinks_flush(s);
    if (s->have_files) {
        file_close(&s->app);
        file_close(&s->err);
        s->have_files = 0;
    }
    keel__lbuf_free(&s->console_out);
    keel__lbuf_free(&s->lines);
}
