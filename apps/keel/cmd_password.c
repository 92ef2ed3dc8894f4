/* cmd_password.c - `keel password hash|verify`: Argon2id PHC strings from the command line.
 * The password is read from stdin (never from argv, where other users could see it in ps). */
#define _GNU_SOURCE 1
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/password.h>

#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: keel password hash [--memory-kib N] [--iterations N] [--parallelism N]\n"
            "       keel password verify HASH\n"
            "\n"
            "hash    read a password from stdin and print its Argon2id PHC string\n"
            "        (defaults: m=%u KiB, t=%u, p=%u, the OWASP minimum)\n"
            "verify  read a password from stdin and check it against HASH\n"
            "\n"
            "The password is everything on stdin up to EOF, minus one trailing newline\n"
            "(\\n or \\r\\n); at most %u bytes.\n"
            "\n"
            "Exit status: 0 hashed / password matches, 1 mismatch or failure,\n"
            "2 usage error or malformed HASH.\n",
            KEEL_PASSWORD_MEMORY_KIB_DEFAULT, KEEL_PASSWORD_ITERATIONS_DEFAULT,
            KEEL_PASSWORD_PARALLELISM_DEFAULT, KEEL_PASSWORD_MAX_LEN);
}

/* Read the password from stdin into buf; returns its length, or -1 if it is too long or
 * stdin fails (message printed). */
static long read_password(char *buf, size_t cap, const char *cmd)
{
    size_t n = 0;
    while (n < cap) {
        size_t r = fread(buf + n, 1, cap - n, stdin);
        if (r == 0)
            break;
        n += r;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "keel password %s: cannot read stdin: %s\n", cmd, strerror(errno));
        return -1;
    }
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
    }
    if (n > KEEL_PASSWORD_MAX_LEN) {
        fprintf(stderr, "keel password %s: password longer than %u bytes\n", cmd,
                KEEL_PASSWORD_MAX_LEN);
        return -1;
    }
    return (long)n;
}

static void wipe(char *p, size_t n)
{
    volatile char *v = p;
    while (n-- > 0)
        *v++ = 0;
}

static int parse_u32_opt(const char *s, uint32_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int cmd_hash(int argc, char **argv)
{
    keel_password_params p;
    keel_password_params_default(&p);
    for (int i = 1; i < argc; i++) {
        uint32_t *dst = NULL;
        if (strcmp(argv[i], "--memory-kib") == 0)
            dst = &p.memory_kib;
        else if (strcmp(argv[i], "--iterations") == 0)
            dst = &p.iterations;
        else if (strcmp(argv[i], "--parallelism") == 0)
            dst = &p.parallelism;
        if (dst == NULL || i + 1 >= argc) {
            fprintf(stderr, "keel password hash: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (parse_u32_opt(argv[i + 1], dst) != 0) {
            fprintf(stderr, "keel password hash: %s: not a number: '%s'\n", argv[i], argv[i + 1]);
            return 2;
        }
        i++;
    }
    char pw[KEEL_PASSWORD_MAX_LEN + 3];
    long n = read_password(pw, sizeof(pw), "hash");
    if (n < 0) {
        wipe(pw, sizeof(pw));
        return 2;
    }
    if (n == 0) {
        wipe(pw, sizeof(pw));
        fprintf(stderr, "keel password hash: empty password on stdin\n");
        return 2;
    }
    char out[KEEL_PASSWORD_PHC_SIZE];
    keel_err e = keel_password_hash(&p, pw, (size_t)n, out, sizeof(out));
    wipe(pw, sizeof(pw));
    if (e == KEEL_ERANGE) {
        fprintf(stderr,
                "keel password hash: parameters out of range (memory-kib 8*p..%u, "
                "iterations 1..%u, parallelism 1..%u)\n",
                KEEL_PASSWORD_MAX_MEMORY_KIB, KEEL_PASSWORD_MAX_ITERATIONS,
                KEEL_PASSWORD_MAX_PARALLELISM);
        return 2;
    }
    if (e != KEEL_OK) {
        fprintf(stderr, "keel password hash: %s\n", keel_strerror(e));
        return 1;
    }
    printf("%s\n", out);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_verify(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "keel password verify: expected exactly one argument, the hash\n");
        usage(stderr);
        return 2;
    }
    char pw[KEEL_PASSWORD_MAX_LEN + 3];
    long n = read_password(pw, sizeof(pw), "verify");
    if (n < 0) {
        wipe(pw, sizeof(pw));
        return 2;
    }
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_password_verify(argv[1], pw, (size_t)n, &d);
    wipe(pw, sizeof(pw));
    switch (e) {
    case KEEL_OK:
        return 0;
    case KEEL_EDENIED:
        fprintf(stderr, "keel password verify: password does not match\n");
        return 1;
    case KEEL_EPARSE:
    case KEEL_ERANGE:
    case KEEL_EUNSUPPORTED:
        fprintf(stderr, "keel password verify: malformed hash: %s (at offset %zu)\n", d.msg,
                d.offset);
        return 2;
    default:
        fprintf(stderr, "keel password verify: %s\n", keel_strerror(e));
        return 1;
    }
}

int keel_cmd_password(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "hash") == 0)
        return cmd_hash(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    fprintf(stderr, "keel password: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
