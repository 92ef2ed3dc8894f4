/* cmd_redact.c - `keel redact [--stats] [FILE...]`: mask card numbers, CVVs and track data
 * (keel/redact.h has the rules) in files or stdin, streaming: 64 KiB reads, constant memory
 * whatever the input size.  Each file is an independent stream (a number split across two
 * files is not joined). */
#define _GNU_SOURCE 1
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/redact.h>

#include "cli.h"

#define CHUNK (64 * 1024)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: keel redact [--stats] [FILE...]\n"
            "\n"
            "Copy each FILE (stdin when none is given, or for '-') to stdout with PCI data\n"
            "masked: card numbers (13-19 digits passing Luhn, spaces or dashes allowed) keep\n"
            "only their last four digits (4111-1111-1111-1111 -> ************1111), labelled\n"
            "CVV/CVC/CVV2/CVC2/CID values become [REDACTED_CVV] and magnetic-stripe track 1/2\n"
            "data becomes [REDACTED_TRACK].  Everything else passes through byte for byte.\n"
            "\n"
            "  --stats   print the number of items redacted to stderr at the end\n"
            "  --        end of options\n"
            "\n"
            "Exit status: 0 success, 1 write error on stdout, 2 usage error or a file that\n"
            "cannot be read (the other files are still processed).\n");
}

static keel_err write_stdout(void *ud, const char *p, size_t n)
{
    (void)ud;
    return fwrite(p, 1, n, stdout) == n ? KEEL_OK : KEEL_EIO;
}

/* Stream one file (NULL name = stdin) through r.  Returns 0, 1 (write error) or 2 (read). */
static int redact_file(keel_redactor *r, const char *name, char *buf)
{
    int is_stdin = name == NULL || strcmp(name, "-") == 0;
    const char *shown = is_stdin ? "(stdin)" : name;
    FILE *f = is_stdin ? stdin : fopen(name, "rb");
    if (f == NULL) {
        fprintf(stderr, "keel redact: %s: %s\n", shown, strerror(errno));
        return 2;
    }
    int rc = 0;
    keel_redactor_reset(r);
    for (;;) {
        size_t n = fread(buf, 1, CHUNK, f);
        if (n > 0 && keel_redactor_feed(r, buf, n) != KEEL_OK) {
            rc = 1;
            break;
        }
        if (n < CHUNK) {
            if (ferror(f)) {
                fprintf(stderr, "keel redact: %s: %s\n", shown, strerror(errno));
                rc = 2;
            }
            break;
        }
    }
    if (rc == 0 && keel_redactor_finish(r) != KEEL_OK)
        rc = 1;
    if (rc == 1)
        fprintf(stderr, "keel redact: write error on stdout: %s\n", strerror(errno));
    if (is_stdin)
        clearerr(stdin);
    else
        fclose(f);
    return rc;
}

int keel_cmd_redact(int argc, char **argv)
{
    int stats = 0, i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0') /* a file, or "-" for stdin */
            break;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--stats") == 0) {
            stats = 1;
            continue;
        }
        fprintf(stderr, "keel redact: unknown option '%s'\n", a);
        usage(stderr);
        return 2;
    }
    int first = i;

    keel_redactor *r;
    if (keel_redactor_create(&r, write_stdout, NULL) != KEEL_OK) {
        fprintf(stderr, "keel redact: out of memory\n");
        return 1;
    }
    static char buf[CHUNK];
    int rc = 0;
    if (first >= argc) {
        rc = redact_file(r, NULL, buf);
    } else {
        for (i = first; i < argc && rc != 1; i++) {
            int frc = redact_file(r, argv[i], buf);
            if (frc > rc || frc == 1)
                rc = frc;
        }
    }
    if (fflush(stdout) != 0 && rc != 1) {
        fprintf(stderr, "keel redact: write error on stdout: %s\n", strerror(errno));
        rc = 1;
    }
    if (stats) {
        keel_redact_stats st;
        keel_redactor_stats_get(r, &st);
        fprintf(stderr, "keel redact: pans=%llu cvvs=%llu tracks=%llu\n",
                (unsigned long long)st.pans, (unsigned long long)st.cvvs,
                (unsigned long long)st.tracks);
    }
    keel_redactor_destroy(r);
    return rc;
}
