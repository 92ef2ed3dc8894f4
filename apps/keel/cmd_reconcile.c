/* cmd_reconcile.c - `keel reconcile`: compare an internal ledger export with a gateway report
 * (both CSV) by transaction id with libkeel's keel_recon_* API, and print the summary line and
 * one entry per discrepancy.
 *
 * Both inputs are streamed; discrepancies are spooled to an anonymous temporary file as they
 * are found, because the summary line that comes first is only known at the end.  Memory is
 * the internal side's index plus fixed buffers, whatever the number of discrepancies. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <keel/keel.h>
#include <keel/reconcile.h>

#include "cli.h"

/* Inputs larger than this (together) get a progress line on a terminal. */
#define PROGRESS_MIN_BYTES (8u * 1024u * 1024u)
#define PROGRESS_INTERVAL_NS 250000000u

static void usage(FILE *f)
{
    fprintf(f,
            "usage: keel reconcile --internal FILE --gateway FILE [--format text|json]\n"
            "                      [--exit-code]\n"
            "\n"
            "Compare internal transaction records with a gateway report by transaction id.\n"
            "Both FILEs are CSV (RFC 4180; '-' for stdin, at most one of them) whose header\n"
            "names at least the columns id, amount, currency and status (any order, any case;\n"
            "other columns are ignored).  amount is a decimal in major units ('12.34', '-5.00'\n"
            "for a refund), exact for the row's ISO 4217 currency; status compares exactly\n"
            "(case-sensitive); ids must be unique within each file.\n"
            "\n"
            "Text output (the default) is the summary line, then one line per discrepancy:\n"
            "  1248/1251 matched, 3 discrepancies: 2 missing_internal, 1 status_mismatch\n"
            "  missing_internal ID gateway=AMOUNT CUR STATUS\n"
            "  missing_gateway ID internal=AMOUNT CUR STATUS\n"
            "  amount_mismatch ID internal=AMOUNT CUR STATUS gateway=AMOUNT CUR STATUS\n"
            "  status_mismatch ID internal=AMOUNT CUR STATUS gateway=AMOUNT CUR STATUS\n"
            "amount_mismatch means amount or currency differ (whatever the status);\n"
            "status_mismatch means only the status does.  ID and STATUS are printed as-is\n"
            "unless empty or holding a space, control character, '\"' or '\\'; then they are\n"
            "double-quoted with \\\" \\\\ \\n \\r \\t and \\xHH escapes.  Discrepancies come in\n"
            "gateway file order, then missing_gateway in internal file order.\n"
            "\n"
            "--format json prints one JSON object:\n"
            "  {\"summary\": \"...\", \"matched\": N, \"total\": N,\n"
            "   \"counts\": {\"missing_internal\": N, \"missing_gateway\": N,\n"
            "              \"amount_mismatch\": N, \"status_mismatch\": N},\n"
            "   \"discrepancies\": [{\"type\": \"...\", \"id\": \"...\", \"internal\": REC|null,\n"
            "                      \"gateway\": REC|null}, ...]}\n"
            "  REC = {\"amount\": \"12.34\", \"amount_minor\": 1234, \"currency\": \"USD\",\n"
            "         \"status\": \"...\", \"line\": N}\n"
            "(invalid UTF-8 in ids and statuses is replaced by U+FFFD in JSON).\n"
            "\n"
            "A progress line goes to stderr when it is a terminal and the inputs exceed 8 MiB.\n"
            "\n"
            "Exit status: 0 done (discrepancies or not), 1 discrepancies found with --exit-code,\n"
            "2 usage, input (message names the file and line) or I/O error.\n");
}

/* ---------------------------------------------------------------- output -- */

typedef struct run {
    int json;
    FILE *spool;
    int first;    /* no discrepancy spooled yet (JSON commas) */
    int progress; /* print progress on stderr */
    int progressed;
    uint64_t last_ns;
} run;

/* An id or status as one whitespace-free token (see usage()). */
static void put_token(FILE *f, keel_str s)
{
    int bare = s.len > 0;
    for (size_t i = 0; i < s.len && bare; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\')
            bare = 0;
    }
    if (bare) {
        fwrite(s.ptr, 1, s.len, f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\x%02x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void put_text_rec(FILE *f, const char *tag, const keel_recon_record *r)
{
    char amt[KEEL_MONEY_STR_MAX + 1];
    keel_money_format(r->amount, r->currency, amt, sizeof(amt));
    fprintf(f, " %s=%s %s ", tag, amt, r->currency->code);
    put_token(f, r->status);
}

/* Length of the valid UTF-8 sequence at p (n bytes available), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t min, cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
        cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* A JSON string from arbitrary bytes; invalid UTF-8 becomes U+FFFD.  NULL on OOM. */
static json_t *json_bytes(keel_str s)
{
    const unsigned char *p = (const unsigned char *)s.ptr;
    size_t i = 0;
    for (; i < s.len;) {
        size_t k = utf8_seq(p + i, s.len - i);
        if (k == 0)
            break;
        i += k;
    }
    if (i == s.len)
        return json_stringn(s.len ? s.ptr : "", s.len);
    /* Worst case every byte becomes 3. */
    char *buf = malloc(s.len * 3 + 1);
    if (buf == NULL)
        return NULL;
    size_t o = 0;
    for (i = 0; i < s.len;) {
        size_t k = utf8_seq(p + i, s.len - i);
        if (k == 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, p + i, k);
            o += k;
            i += k;
        }
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

static json_t *json_rec(const keel_recon_record *r)
{
    if (r == NULL)
        return json_null();
    char amt[KEEL_MONEY_STR_MAX + 1];
    keel_money_format(r->amount, r->currency, amt, sizeof(amt));
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int bad = json_object_set_new(o, "amount", json_string(amt));
    bad |= json_object_set_new(o, "amount_minor", json_integer((json_int_t)r->amount));
    bad |= json_object_set_new(o, "currency", json_string(r->currency->code));
    bad |= json_object_set_new(o, "status", json_bytes(r->status));
    bad |= json_object_set_new(o, "line", json_integer((json_int_t)r->line));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static keel_err on_discrepancy(const keel_recon_discrepancy *d, void *ud)
{
    run *rn = ud;
    FILE *f = rn->spool;
    if (!rn->json) {
        fputs(keel_recon_type_name(d->type), f);
        fputc(' ', f);
        put_token(f, d->id);
        if (d->internal != NULL)
            put_text_rec(f, "internal", d->internal);
        if (d->gateway != NULL)
            put_text_rec(f, "gateway", d->gateway);
        fputc('\n', f);
    } else {
        json_t *o = json_object();
        if (o == NULL)
            return KEEL_ENOMEM;
        int bad = json_object_set_new(o, "type", json_string(keel_recon_type_name(d->type)));
        bad |= json_object_set_new(o, "id", json_bytes(d->id));
        bad |= json_object_set_new(o, "internal", json_rec(d->internal));
        bad |= json_object_set_new(o, "gateway", json_rec(d->gateway));
        if (!bad) {
            fputs(rn->first ? "\n" : ",\n", f);
            bad = json_dumpf(o, f, JSON_COMPACT | JSON_ENSURE_ASCII) != 0;
        }
        json_decref(o);
        if (bad)
            return ferror(f) ? KEEL_EIO : KEEL_ENOMEM;
    }
    rn->first = 0;
    return ferror(f) ? KEEL_EIO : KEEL_OK;
}

static void on_progress(uint64_t records, void *ud)
{
    run *rn = ud;
    if (!rn->progress)
        return;
    uint64_t now = keel_time_mono_ns();
    if (rn->progressed && now - rn->last_ns < PROGRESS_INTERVAL_NS)
        return;
    rn->last_ns = now;
    rn->progressed = 1;
    fprintf(stderr, "\rkeel reconcile: %llu rows processed", (unsigned long long)records);
    fflush(stderr);
}

static void progress_done(run *rn)
{
    if (rn->progressed) {
        fprintf(stderr, "\r%40s\r", "");
        fflush(stderr);
        rn->progressed = 0;
    }
}

/* ----------------------------------------------------------------- input -- */

static long file_read(void *ud, char *buf, size_t cap)
{
    FILE *f = ud;
    size_t n = fread(buf, 1, cap, f);
    if (n == 0 && ferror(f))
        return -1;
    return (long)n;
}

static int feed(keel_recon *r, keel_recon_side side, const char *path, run *rn)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    const char *name = f == stdin ? "<stdin>" : path;
    if (f == NULL) {
        progress_done(rn);
        fprintf(stderr, "keel reconcile: cannot open %s file '%s': %s\n",
                side == KEEL_RECON_INTERNAL ? "internal" : "gateway", path, strerror(errno));
        return 2;
    }
    keel_diag d = {0};
    keel_err e = keel_recon_feed_csv(r, side, file_read, f, name, &d);
    if (f != stdin)
        fclose(f);
    if (e != KEEL_OK) {
        progress_done(rn);
        fprintf(stderr, "keel reconcile: %s\n", d.msg[0] ? d.msg : keel_strerror(e));
        return 2;
    }
    return 0;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    if (strcmp(path, "-") == 0 || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    return (uint64_t)st.st_size;
}

/* Write the summary (and JSON head), then the spooled discrepancies. */
static int emit(keel_recon *r, run *rn)
{
    keel_recon_stats s;
    keel_recon_stats_get(r, &s);
    char line[KEEL_RECON_SUMMARY_MAX];
    keel_recon_summary(r, line, sizeof(line));
    if (!rn->json) {
        printf("%s\n", line);
    } else {
        json_t *sum = json_string(line);
        char *sumtxt = sum ? json_dumps(sum, JSON_ENCODE_ANY) : NULL;
        json_decref(sum);
        if (sumtxt == NULL) {
            fprintf(stderr, "keel reconcile: out of memory\n");
            return 2;
        }
        printf("{\"summary\": %s, \"matched\": %llu, \"total\": %llu, \"counts\": {", sumtxt,
               (unsigned long long)s.matched, (unsigned long long)s.total);
        free(sumtxt);
        for (int t = 0; t < KEEL_RECON_TYPE_COUNT; t++)
            printf("%s\"%s\": %llu", t ? ", " : "", keel_recon_type_name((keel_recon_type)t),
                   (unsigned long long)s.count[t]);
        printf("}, \"discrepancies\": [");
    }
    if (fflush(rn->spool) != 0 || fseek(rn->spool, 0, SEEK_SET) != 0) {
        fprintf(stderr, "keel reconcile: temporary file: %s\n", strerror(errno));
        return 2;
    }
    char buf[64 * 1024];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), rn->spool)) > 0)
        if (fwrite(buf, 1, n, stdout) != n)
            break;
    if (ferror(rn->spool)) {
        fprintf(stderr, "keel reconcile: temporary file: read error\n");
        return 2;
    }
    if (rn->json)
        printf("%s]}\n", rn->first ? "" : "\n");
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "keel reconcile: cannot write the output: %s\n", strerror(errno));
        return 2;
    }
    return 0;
}

int keel_cmd_reconcile(int argc, char **argv)
{
    const char *internal = NULL, *gateway = NULL, *format = "text";
    int exit_code = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--exit-code") == 0) {
            exit_code = 1;
        } else if ((strcmp(a, "--internal") == 0 || strcmp(a, "--gateway") == 0 ||
                    strcmp(a, "--format") == 0) &&
                   val != NULL) {
            i++;
            if (strcmp(a, "--internal") == 0)
                internal = val;
            else if (strcmp(a, "--gateway") == 0)
                gateway = val;
            else
                format = val;
        } else {
            fprintf(stderr, "keel reconcile: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (internal == NULL || gateway == NULL) {
        fprintf(stderr, "keel reconcile: missing %s\n",
                internal == NULL ? "--internal FILE" : "--gateway FILE");
        usage(stderr);
        return 2;
    }
    if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0) {
        fprintf(stderr, "keel reconcile: --format must be text or json, not '%s'\n", format);
        return 2;
    }
    if (strcmp(internal, "-") == 0 && strcmp(gateway, "-") == 0) {
        fprintf(stderr, "keel reconcile: only one of --internal and --gateway can be '-'\n");
        return 2;
    }

    run rn = {0};
    rn.json = strcmp(format, "json") == 0;
    rn.first = 1;
    rn.progress = isatty(STDERR_FILENO) &&
                  file_size(internal) + file_size(gateway) > PROGRESS_MIN_BYTES;
    rn.spool = tmpfile();
    if (rn.spool == NULL) {
        fprintf(stderr, "keel reconcile: cannot create a temporary file: %s\n", strerror(errno));
        return 2;
    }
    keel_recon_config cfg;
    keel_recon_config_default(&cfg);
    cfg.expected_records = file_size(internal) / 48; /* presize the index (~48 B a row) */
    cfg.progress = on_progress;
    cfg.progress_ud = &rn;
    keel_recon *r = NULL;
    int rc = 0;
    if (keel_recon_create(&r, &cfg) != KEEL_OK) {
        fprintf(stderr, "keel reconcile: out of memory\n");
        fclose(rn.spool);
        return 2;
    }
    for (int t = 0; t < KEEL_RECON_TYPE_COUNT && rc == 0; t++)
        if (keel_recon_on(r, (keel_recon_type)t, on_discrepancy, &rn) != KEEL_OK)
            rc = 2;
    if (rc == 0)
        rc = feed(r, KEEL_RECON_INTERNAL, internal, &rn);
    if (rc == 0)
        rc = feed(r, KEEL_RECON_GATEWAY, gateway, &rn);
    if (rc == 0) {
        keel_err e = keel_recon_finish(r);
        progress_done(&rn);
        if (e != KEEL_OK) {
            fprintf(stderr, "keel reconcile: %s\n", keel_strerror(e));
            rc = 2;
        }
    }
    if (rc == 0) {
        rc = emit(r, &rn);
        if (rc == 0 && exit_code) {
            keel_recon_stats s;
            keel_recon_stats_get(r, &s);
            rc = s.discrepancies > 0 ? 1 : 0;
        }
    }
    keel_recon_destroy(r);
    fclose(rn.spool);
    return rc;
}
