/* cmd_jwt.c - `keel jwt sign|verify`: make and check JWS compact tokens (HS256, RS256,
 * ES256) with libkeel's keel_jwt_* API.  The algorithm is always the one given with --alg;
 * the token's own "alg" header is never trusted. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/jwt.h>

#include "cli.h"

#define KEY_FILE_MAX (64u * 1024u)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: keel jwt sign --alg ALG --key-file FILE [--kid KID] --claims JSON\n"
            "       keel jwt verify --alg ALG --key-file FILE [--kid KID] [--iss ISS] [--aud AUD]\n"
            "                       [--type TYPE] [--leeway SECONDS] [--now SECONDS] TOKEN\n"
            "\n"
            "ALG is HS256, RS256 or ES256.  For HS256 FILE holds the secret (at least 32 bytes;\n"
            "trailing newlines are ignored); for RS256/ES256 a PEM key (private to sign, private\n"
            "or public to verify).  sign prints the token; verify prints the claims as JSON.\n"
            "The token's alg header must equal ALG.  verify requires exp; --leeway (default 30,\n"
            "at most 300) allows clock skew; --now replaces the current time (for testing).\n"
            "TOKEN '-' reads the token from stdin.\n"
            "\n"
            "Exit status: 0 ok, 1 the token was rejected or signing failed (reason on stderr),\n"
            "2 usage or unusable key/claims.\n");
}

/* Read at most KEY_FILE_MAX bytes of path into a malloc'd buffer. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(KEY_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, KEY_FILE_MAX + 1, f) : 0;
    int bad = buf == NULL || ferror(f) || n > KEY_FILE_MAX;
    if (f != stdin)
        fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int parse_u64(const char *s, unsigned long long max, unsigned long long *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Build a one-key keyset from the key file. Returns 0, or 2 after printing the reason. */
static int load_key(keel_jwt_keyset **out, keel_jwt_alg alg, const char *path, const char *kid,
                    unsigned usage, const char *verb)
{
    size_t n = 0;
    char *buf = read_file(path, &n);
    if (buf == NULL) {
        fprintf(stderr, "keel jwt %s: cannot read key file '%s'\n", verb, path);
        return 2;
    }
    keel_err e = keel_jwt_keyset_create(out);
    if (e == KEEL_OK) {
        if (alg == KEEL_JWT_HS256) {
            while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                n--;
            e = keel_jwt_keyset_add_hmac(*out, kid, buf, n, usage);
        } else {
            e = keel_jwt_keyset_add_pem(*out, alg, kid, buf, n, usage);
        }
    }
    memset(buf, 0, n);
    free(buf);
    if (e != KEEL_OK) {
        const char *why = keel_strerror(e);
        if (e == KEEL_EINVAL && alg == KEEL_JWT_HS256)
            why = "HS256 secret must be 32 to 4096 bytes (or bad --kid)";
        else if (e == KEEL_EINVAL)
            why = "signing needs a private key (or bad --kid)";
        else if (e == KEEL_EUNSUPPORTED)
            why = alg == KEEL_JWT_RS256 ? "not an RSA key of at least 2048 bits"
                                        : "not an EC P-256 key";
        else if (e == KEEL_EPARSE)
            why = "not a PEM key";
        fprintf(stderr, "keel jwt %s: key file '%s': %s\n", verb, path, why);
        keel_jwt_keyset_destroy(*out);
        *out = NULL;
        return 2;
    }
    return 0;
}

int keel_cmd_jwt(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1];
    int sign = strcmp(verb, "sign") == 0;
    if (!sign && strcmp(verb, "verify") != 0) {
        fprintf(stderr, "keel jwt: unknown subcommand '%s'\n", verb);
        usage(stderr);
        return 2;
    }
    const char *alg_name = NULL, *key_file = NULL, *kid = NULL, *claims_text = NULL;
    const char *token_arg = NULL;
    keel_jwt_policy pol;
    keel_jwt_policy_default(&pol);
    int have_now = 0;
    unsigned long long now = 0, v = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1] == '-' && val != NULL) {
            i++;
            if (strcmp(a, "--alg") == 0)
                alg_name = val;
            else if (strcmp(a, "--key-file") == 0)
                key_file = val;
            else if (strcmp(a, "--kid") == 0)
                kid = val;
            else if (sign && strcmp(a, "--claims") == 0)
                claims_text = val;
            else if (!sign && strcmp(a, "--iss") == 0)
                pol.iss = val;
            else if (!sign && strcmp(a, "--aud") == 0)
                pol.aud = val;
            else if (!sign && strcmp(a, "--type") == 0)
                pol.type = val;
            else if (!sign && strcmp(a, "--leeway") == 0 &&
                     parse_u64(val, KEEL_JWT_LEEWAY_MAX, &v) == 0)
                pol.leeway_s = (uint32_t)v;
            else if (!sign && strcmp(a, "--now") == 0 && parse_u64(val, UINT64_MAX, &now) == 0)
                have_now = 1;
            else {
                fprintf(stderr, "keel jwt %s: unknown option or bad value '%s %s'\n", verb, a,
                        val);
                return 2;
            }
        } else if (!sign && token_arg == NULL && (a[0] != '-' || strcmp(a, "-") == 0)) {
            token_arg = a;
        } else {
            fprintf(stderr, "keel jwt %s: unknown or incomplete option '%s'\n", verb, a);
            usage(stderr);
            return 2;
        }
    }
    keel_jwt_alg alg = KEEL_JWT_ALG_INVALID;
    if (alg_name == NULL || key_file == NULL || (sign ? claims_text == NULL : token_arg == NULL)) {
        fprintf(stderr, "keel jwt %s: missing %s\n", verb,
                alg_name == NULL   ? "--alg"
                : key_file == NULL ? "--key-file"
                : sign             ? "--claims"
                                   : "TOKEN");
        usage(stderr);
        return 2;
    }
    if (keel_jwt_alg_parse(alg_name, &alg) != KEEL_OK) {
        fprintf(stderr, "keel jwt %s: unsupported --alg '%s' (HS256, RS256 or ES256)\n", verb,
                alg_name);
        return 2;
    }
    keel_jwt_keyset *ks = NULL;
    int rc = load_key(&ks, alg, key_file, kid, sign ? KEEL_JWT_KEY_SIGN : KEEL_JWT_KEY_VERIFY,
                      verb);
    if (rc != 0)
        return rc;

    if (sign) {
        json_error_t jerr;
        json_t *claims = json_loads(claims_text, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(claims)) {
            fprintf(stderr, "keel jwt sign: --claims must be a JSON object%s%s\n",
                    claims == NULL ? ": " : "", claims == NULL ? jerr.text : "");
            json_decref(claims);
            keel_jwt_keyset_destroy(ks);
            return 2;
        }
        char *tok = NULL;
        keel_err e = keel_jwt_sign(ks, claims, &tok);
        json_decref(claims);
        if (e != KEEL_OK) {
            fprintf(stderr, "keel jwt sign: %s\n", keel_strerror(e));
            rc = 1;
        } else {
            printf("%s\n", tok);
        }
        keel_free(tok);
        keel_jwt_keyset_destroy(ks);
        return rc;
    }

    pol.alg = alg;
    size_t tlen = 0;
    char *tokbuf = NULL;
    const char *tok = token_arg;
    if (strcmp(token_arg, "-") == 0) {
        tokbuf = read_file("-", &tlen);
        if (tokbuf == NULL) {
            fprintf(stderr, "keel jwt verify: cannot read the token from stdin\n");
            keel_jwt_keyset_destroy(ks);
            return 2;
        }
        while (tlen > 0 && (tokbuf[tlen - 1] == '\n' || tokbuf[tlen - 1] == '\r'))
            tlen--;
        tok = tokbuf;
    } else {
        tlen = strlen(tok);
    }
    if (!have_now)
        now = (unsigned long long)(keel_time_wall_ms() / 1000);
    json_t *claims = NULL;
    keel_diag d = {0};
    keel_err e = keel_jwt_verify(ks, &pol, tok, tlen, (uint64_t)now, &claims, &d);
    if (e != KEEL_OK) {
        fprintf(stderr, "keel jwt verify: %s\n", d.msg[0] ? d.msg : keel_strerror(e));
        rc = 1;
    } else {
        json_dumpf(claims, stdout, JSON_COMPACT | JSON_SORT_KEYS);
        fputc('\n', stdout);
    }
    json_decref(claims);
    free(tokbuf);
    keel_jwt_keyset_destroy(ks);
    return rc;
}
