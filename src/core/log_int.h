/*
 * log_int.h - private declarations shared by log.c (front end: loggers,
 * context, queue, writer thread) and log_sink.c (formatting and sinks).
 * Include after "keel_int.h".
 */
#ifndef KEEL_LOG_INT_H
#define KEEL_LOG_INT_H

#include <keel/log.h>

/* A named logger; interned in a list owned by log.c, never freed. */
struct keel_logger {
    struct keel_logger *next;
    const char *name;
    size_t name_len;
};

/* Most bytes the hook may set for a message or a string field. */
#define KEEL__LOG_SET_MAX (64u * 1024u)

/* Sticky-error output buffer used while formatting: appends never fail loudly,
 * they set err and later appends become no-ops.  The storage persists across
 * records (reset keeps it) so formatting does not allocate per record. */
typedef struct keel__lbuf {
    char *p;
    size_t len;
    size_t cap;
    size_t max;
    int err;
} keel__lbuf;

void keel__lbuf_init(keel__lbuf *b, size_t max);
void keel__lbuf_reset(keel__lbuf *b);
void keel__lbuf_free(keel__lbuf *b);
/* Append n bytes: the growing / overflowing case. */
void keel__lbuf_put_slow(keel__lbuf *b, const void *p, size_t n);
/* Append n bytes (inline: formatting a record appends a few dozen small pieces). */
static inline void keel__lbuf_put(keel__lbuf *b, const void *p, size_t n)
{
    if (b->err == 0 && n < b->cap - b->len && n <= b->max - b->len) {
        if (n)
            memcpy(b->p + b->len, p, n);
        b->len += n;
        b->p[b->len] = '\0';
        return;
    }
    keel__lbuf_put_slow(b, p, n);
}
void keel__lbuf_puts(keel__lbuf *b, const char *s);
static inline void keel__lbuf_putc(keel__lbuf *b, char c)
{
    keel__lbuf_put(b, &c, 1);
}
/* Append s as a quoted JSON string: control characters escaped, invalid UTF-8 -> U+FFFD. */
void keel__lbuf_json_str(keel__lbuf *b, const char *s, size_t n);
/* Append s for humans: control characters as \n \r \t \xNN, invalid UTF-8 bytes as \xNN. */
void keel__lbuf_text(keel__lbuf *b, const char *s, size_t n);

/* One field of a decoded record. */
typedef struct keel__log_rfield {
    const char *key;
    size_t key_len;
    keel_log_field_type type;
    int is_null; /* string field whose value was NULL */
    const char *s;
    size_t slen;
    int64_t i;
    double d;
    int b;
    keel__lbuf repl; /* storage for a hook replacement (persists across records) */
} keel__log_rfield;

/* The record view the hook and the formatters see.  Points into the caller's
 * encoded record or into the replacement buffers; one instance per logging
 * thread (and one for the synchronous path), reused for every record. */
struct keel_log_record {
    int64_t wall_ms;
    int level;
    int line;
    const keel_logger *lg;
    keel_str module;
    keel_str func;
    keel_str request_id;
    keel_str user_id;
    keel_str msg;
    size_t nfields;
    keel__log_rfield f[KEEL_LOG_FIELDS_MAX];
    keel__lbuf msg_repl;
};

/* Release the replacement buffers of a record view. */
void keel__log_record_cleanup(keel_log_record *r);

/* A rotating JSON file. */
typedef struct keel__log_file {
    char *path;
    int fd;
    uint64_t size; /* bytes in the current file, including what is buffered */
    int min_level; /* the file takes records at or above max(min_level, current level) */
    int warned;    /* an error was already reported on stderr */
    keel__lbuf out;
} keel__log_file;

/* Every sink, owned by one consumer. */
typedef struct keel__log_sinks {
    keel_log_console console;
    int color;
    int console_fd;
    keel__lbuf console_out;
    int have_files;
    keel__log_file app;
    keel__log_file err;
    uint64_t rotate_bytes;
    unsigned rotate_backups;
    keel__lbuf lines; /* scratch: the record's formatted lines (synchronous path) */
} keel__log_sinks;

/* Prepare sinks from a validated config (opens the files). Returns KEEL_OK,
 * KEEL_EDENIED / KEEL_EIO (directory or file), KEEL_ENOMEM. */
keel_err keel__log_sinks_open(keel__log_sinks *s, const keel_log_config *cfg);
/* Sinks for the stopped logger: plain text on stderr, no colours, no files. */
void keel__log_sinks_init_stderr(keel__log_sinks *s);
/* Format r once and buffer it for every sink whose level admits it. */
void keel__log_sinks_emit(keel__log_sinks *s, const keel_log_record *r, int level);

/* Most bytes of one record's formatted lines (its JSON line and text line together).  A
 * record never needs that much (message and every field escaped at 6 bytes per input byte
 * stay well below); one that did would be counted as a write error and not written. */
#define KEEL__LOG_LINES_MAX (4u * 1024u * 1024u)

/* Record formats (bits). */
#define KEEL__LOG_FMT_JSON 1u  /* the JSON line (files, JSON console) */
#define KEEL__LOG_FMT_TEXT 2u  /* the text line (text console) */
#define KEEL__LOG_FMT_COLOR 4u /* ... with ANSI colours */
/* The formats the sinks of s can need. */
unsigned keel__log_sinks_formats(const keel__log_sinks *s);
/* Append r to b in the formats asked for: the JSON line, then the text line; their lengths
 * go to *json_len / *text_len (0 when not asked).  KEEL_ETOOBIG when b overflowed. */
keel_err keel__log_format(keel__lbuf *b, const keel_log_record *r, unsigned formats,
                          size_t *json_len, size_t *text_len);
/* Buffer a record formatted by keel__log_format() for every sink whose level admits a
 * record at lv (level: the current minimum level). */
void keel__log_sinks_emit_formatted(keel__log_sinks *s, int lv, int level, const char *json,
                                    size_t json_len, const char *text, size_t text_len);
/* Write the buffered bytes of every sink. */
void keel__log_sinks_flush(keel__log_sinks *s);
/* Flush, close the files and free everything. */
void keel__log_sinks_close(keel__log_sinks *s);

/* Formatters (exposed for the tests). */
void keel__log_format_json(keel__lbuf *b, const keel_log_record *r);
void keel__log_format_text(keel__lbuf *b, const keel_log_record *r, int color);

/* mkdir -p with the given mode for created directories; 0 or -1 with errno. */
int keel__log_mkdir_p(const char *path, unsigned mode);

/* Count a failed write/open/rotation (defined in log.c). */
void keel__log_count_error(void);

#endif /* KEEL_LOG_INT_H */
