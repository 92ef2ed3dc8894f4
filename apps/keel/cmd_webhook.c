/* cmd_webhook.c - `keel webhook sign|verify`: make and check Stripe-style webhook signature
 * headers ("t=<unix>,v1=<hex HMAC-SHA256>") with libkeel's keel_webhook_* API.  The body is
 * FILE (or stdin) byte for byte: nothing is stripped, not even a trailing newline. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/webhook.h>

#include "cli.h"

#define BODY_MAX (16u * 1024u * 1024u)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: keel webhook sign --secret S[,S2...] [--timestamp T] [FILE]\n"
            "       keel webhook verify --secret S[,S2...] --header H [--tolerance SECONDS]\n"
            "                           [--now T] [FILE]\n"
            "\n"
            "The body is the bytes of FILE exactly (stdin when FILE is absent or '-'); nothing\n"
            "is stripped.  The secret is used as given, including its whsec_ prefix.  Without\n"
            "--secret the comma-separated list in the environment variable WEBHOOK_SECRET is\n"
            "used, which keeps the secret out of the process list.\n"
            "\n"
            "sign prints the header \"t=T,v1=HEX\" (one v1 per secret, in the order given);\n"
            "T defaults to the current Unix time.\n"
            "verify checks header H against the body: the signature must match one of the\n"
            "secrets and |now - t| must be at most --tolerance seconds (default 300; 0 skips\n"
            "the age check; future timestamps are rejected too).  --now replaces the current\n"
            "time (for testing).  Prints \"valid\".\n"
            "\n"
            "Exit status: 0 ok (signed / valid), 1 the signature was rejected (reason on\n"
            "stderr), 2 usage error, bad secret or unreadable input.\n");
}

/* Read all of path (or stdin for NULL / "-") into a malloc'd buffer of at most BODY_MAX
 * bytes.  Returns NULL on error or when the input is too large. */
static char *read_body(const char *path, size_t *len)
{
    int use_stdin = path == NULL || strcmp(path, "-") == 0;
    FILE *f = use_stdin ? stdin : fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int bad = buf == NULL;
    while (!bad) {
        if (n == cap) {
            if (cap > BODY_MAX) {
                bad = 1;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                bad = 1;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) {
            bad = ferror(f) != 0;
            break;
        }
    }
    if (n > BODY_MAX)
        bad = 1;
    if (!use_stdin)
        fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int parse_i64(const char *s, long long *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int do_sign(const char *secrets, int have_t, long long t, const char *body, size_t len)
{
    keel_str parts[KEEL_WEBHOOK_MAX_SECRETS];
    size_t np = 0;
    if (keel_webhook_secrets_split(secrets, parts, KEEL_WEBHOOK_MAX_SECRETS, &np) != KEEL_OK) {
        fprintf(stderr, "keel webhook sign: the secret list must hold 1 to %u non-empty "
                        "secrets of at most %u bytes\n",
                KEEL_WEBHOOK_MAX_SECRETS, KEEL_WEBHOOK_SECRET_MAX);
        return 2;
    }
    if (!have_t)
        t = (long long)(keel_time_wall_ms() / 1000);
    printf("t=%lld", t);
    for (size_t i = 0; i < np; i++) {
        char sig[KEEL_WEBHOOK_SIG_HEX_SIZE];
        keel_err e = keel_webhook_signature(parts[i], body, len, (int64_t)t, sig);
        if (e != KEEL_OK) {
            fputc('\n', stdout);
            fprintf(stderr, "keel webhook sign: %s\n", keel_strerror(e));
            return 1;
        }
        printf(",v1=%s", sig);
    }
    fputc('\n', stdout);
    return 0;
}

static int do_verify(const char *secrets, const char *header, uint32_t tolerance, int have_now,
                     long long now, const char *body, size_t len)
{
    keel_webhook_config cfg;
    keel_webhook_config_default(&cfg);
    cfg.secret_list = secrets;
    cfg.tolerance_s = tolerance;
    keel_webhook_verifier *v = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_webhook_verifier_create(&v, &cfg, &d);
    if (e != KEEL_OK) {
        fprintf(stderr, "keel webhook verify: %s\n", d.msg[0] ? d.msg : keel_strerror(e));
        return 2;
    }
    if (!have_now)
        now = (long long)(keel_time_wall_ms() / 1000);
    e = keel_webhook_verify(v, body, len, header, (int64_t)now, &d);
    keel_webhook_verifier_destroy(v);
    if (e != KEEL_OK) {
        fprintf(stderr, "keel webhook verify: %s: %s\n",
                keel_webhook_reason_name(keel_webhook_reason_of(e)),
                d.msg[0] ? d.msg : keel_strerror(e));
        return keel_webhook_reason_of(e) == KEEL_WEBHOOK_INTERNAL_ERROR ? 2 : 1;
    }
    printf("valid\n");
    return 0;
}

int keel_cmd_webhook(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1];
    int sign = strcmp(verb, "sign") == 0;
    if (!sign && strcmp(verb, "verify") != 0) {
        fprintf(stderr, "keel webhook: unknown subcommand '%s'\n", verb);
        usage(stderr);
        return 2;
    }
    const char *secrets = NULL, *header = NULL, *file = NULL;
    long long t = 0, now = 0, tol = KEEL_WEBHOOK_TOLERANCE_DEFAULT;
    int have_t = 0, have_now = 0, have_tol = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1] == '-' && val != NULL) {
            i++;
            if (strcmp(a, "--secret") == 0)
                secrets = val;
            else if (sign && strcmp(a, "--timestamp") == 0 && parse_i64(val, &t) == 0)
                have_t = 1;
            else if (!sign && strcmp(a, "--header") == 0)
                header = val;
            else if (!sign && strcmp(a, "--tolerance") == 0 && parse_i64(val, &tol) == 0 &&
                     tol <= (long long)UINT32_MAX)
                have_tol = 1;
            else if (!sign && strcmp(a, "--now") == 0 && parse_i64(val, &now) == 0)
                have_now = 1;
            else {
                /* Never echo the value: it may be a secret. */
                fprintf(stderr, "keel webhook %s: unknown option or bad value for '%s'\n", verb,
                        a);
                return 2;
            }
        } else if (file == NULL && (a[0] != '-' || strcmp(a, "-") == 0)) {
            file = a;
        } else {
            fprintf(stderr, "keel webhook %s: unknown or incomplete option '%s'\n", verb, a);
            usage(stderr);
            return 2;
        }
    }
    if (secrets == NULL) {
        secrets = getenv("WEBHOOK_SECRET");
        if (secrets == NULL || secrets[0] == '\0') {
            fprintf(stderr, "keel webhook %s: missing --secret (or WEBHOOK_SECRET)\n", verb);
            usage(stderr);
            return 2;
        }
    }
    if (!sign && header == NULL) {
        fprintf(stderr, "keel webhook verify: missing --header\n");
        usage(stderr);
        return 2;
    }
    (void)have_tol; /* the default applies otherwise */
    size_t len = 0;
    char *body = read_body(file, &len);
    if (body == NULL) {
        fprintf(stderr, "keel webhook %s: cannot read the body from %s (or larger than %u "
                        "bytes)\n",
                verb, file && strcmp(file, "-") != 0 ? file : "stdin", BODY_MAX);
        return 2;
    }
    int rc = sign ? do_sign(secrets, have_t, t, body, len)
                  : do_verify(secrets, header, (uint32_t)tol, have_now, now, body, len);
    free(body);
    return rc;
}
