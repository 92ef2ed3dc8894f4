/* Tests for src/core/config.c: env view and precedence, typed getters, keel_settings
 * defaults, collected errors, production key rules, secrecy, dependency timeouts. */
#define _GNU_SOURCE 1 /* setenv, strdup, chdir */
#include "test.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel_int.h"

#include <keel/config.h>

/* ------------------------------------------------------------- helpers -- */

static keel_env *env_of(const char *const *vars, const char *dotenv)
{
    keel_env *e = NULL;
    keel_diag d;
    keel_err err = keel_env_from(&e, vars, dotenv, dotenv ? strlen(dotenv) : 0, &d);
    if (err != KEEL_OK)
        print_error("keel_env_from: %s\n", d.msg);
    assert_int_equal(KEEL_OK, err);
    return e;
}

/* Load settings from vars; returns the code; *errs gets the error text (caller frees). */
static keel_err load(const char *const *vars, keel_settings **out, char **errs)
{
    keel_env *e = env_of(vars, NULL);
    keel_buf b;
    keel_buf_init(&b, 1 << 16);
    keel_err err = keel_settings_load(out, e, &b);
    keel_env_destroy(e);
    *errs = keel_buf_take(&b, NULL);
    return err;
}

#define GOOD_ACCESS "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  /* 36 bytes */
#define GOOD_REFRESH "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8" /* 36 bytes */

/* ------------------------------------------------------------ env view -- */

static void test_env_precedence(void **state)
{
    (void)state;
    const char *vars[] = {"PORT=9000", "SHARED=real", "DUP=first", "DUP=second",
                          "NOEQUALS",  "=nameless",   "EMPTY=",    NULL};
    const char *dotenv = "PORT=1\nSHARED=file\nONLY_DOTENV=x\nLAST=1\nLAST=2\nEMPTY=fromfile\n";
    keel_env *e = env_of(vars, dotenv);
    assert_string_equal("9000", keel_env_get(e, "PORT")); /* real env wins */
    assert_string_equal("real", keel_env_get(e, "SHARED"));
    assert_string_equal("x", keel_env_get(e, "ONLY_DOTENV")); /* .env fills the gaps */
    assert_string_equal("2", keel_env_get(e, "LAST"));        /* last .env line wins */
    assert_string_equal("first", keel_env_get(e, "DUP"));     /* like getenv() */
    assert_string_equal("", keel_env_get(e, "EMPTY"));        /* set-but-empty is still set */
    assert_null(keel_env_get(e, "NOEQUALS"));
    assert_null(keel_env_get(e, "MISSING"));
    assert_null(keel_env_get(e, "port")); /* case-sensitive */
    assert_null(keel_env_get(e, NULL));
    assert_null(keel_env_get(NULL, "PORT"));
    assert_int_equal(6, keel_env_count(e)); /* PORT SHARED DUP EMPTY ONLY_DOTENV LAST */
    keel_env_destroy(e);
    keel_env_destroy(NULL);

    /* empty inputs */
    e = env_of(NULL, NULL);
    assert_int_equal(0, keel_env_count(e));
    keel_env_destroy(e);

    /* a .env error is reported with its line, and nothing is built */
    keel_diag d;
    e = (keel_env *)1;
    assert_int_equal(KEEL_EPARSE, keel_env_from(&e, vars, "A=1\nB\n", 6, &d));
    assert_null(e);
    assert_int_equal(2, d.offset);
    assert_string_equal("line 2: missing '=' after key 'B'", d.msg);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(strlen(text), fwrite(text, 1, strlen(text), f));
    fclose(f);
}

static void test_env_load_file(void **state)
{
    (void)state;
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/config_%d", KEEL_TEST_TMP, (int)getpid());
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/.env", dir);
    write_file(path, "KEEL_CFGTEST_A=file\nexport KEEL_CFGTEST_B=\"file b\"\n");
    assert_int_equal(0, setenv("KEEL_CFGTEST_A", "real", 1));
    unsetenv("KEEL_CFGTEST_B");

    keel_env *e = NULL;
    keel_diag d;
    ASSERT_OK(keel_env_load(&e, path, &d));
    assert_string_equal("real", keel_env_get(e, "KEEL_CFGTEST_A"));
    assert_string_equal("file b", keel_env_get(e, "KEEL_CFGTEST_B"));
    keel_env_destroy(e);

    /* a missing file is fine: only the environment */
    char missing[640];
    snprintf(missing, sizeof(missing), "%s/does-not-exist.env", dir);
    ASSERT_OK(keel_env_load(&e, missing, &d));
    assert_string_equal("real", keel_env_get(e, "KEEL_CFGTEST_A"));
    assert_null(keel_env_get(e, "KEEL_CFGTEST_B"));
    keel_env_destroy(e);

    /* an empty file too */
    write_file(path, "");
    ASSERT_OK(keel_env_load(&e, path, &d));
    keel_env_destroy(e);

    /* a broken file names the path and the line */
    write_file(path, "OK=1\n\nNOT VALID\n");
    assert_int_equal(KEEL_EPARSE, keel_env_load(&e, path, &d));
    assert_null(e);
    assert_int_equal(3, d.offset);
    char expect[800];
    snprintf(expect, sizeof(expect), "%.60s: line 3: missing '=' after key 'NOT'", path);
    assert_string_equal(expect, d.msg);

    /* a directory cannot be read */
    assert_int_equal(KEEL_EIO, keel_env_load(&e, dir, &d));
    assert_null(e);

    /* NULL means ./.env in the working directory */
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    write_file(path, "KEEL_CFGTEST_B=cwd\n");
    assert_int_equal(0, chdir(dir));
    ASSERT_OK(keel_env_load(&e, NULL, &d));
    assert_int_equal(0, chdir(cwd));
    assert_string_equal("cwd", keel_env_get(e, "KEEL_CFGTEST_B"));
    keel_env_destroy(e);

    unlink(path);
    rmdir(dir);
    unsetenv("KEEL_CFGTEST_A");
}

/* ------------------------------------------------------------- getters -- */

static void test_get_int(void **state)
{
    (void)state;
    const char *vars[] = {"N=42",
                          "NEG= -7 ",
                          "BAD=abc",
                          "BIG=99999999999999999999",
                          "HEX=0x10",
                          "BLANK=  ",
                          "MIN=-9223372036854775808",
                          "SUFFIX=10ms",
                          "PLUS=+5",
                          NULL};
    keel_env *e = env_of(vars, NULL);
    long long v = 0;
    keel_diag d;
    ASSERT_OK(keel_env_get_int(e, "N", 1, 0, 100, &v, &d));
    assert_int_equal(42, v);
    ASSERT_OK(keel_env_get_int(e, "NEG", 1, -10, 10, &v, &d));
    assert_int_equal(-7, v);
    ASSERT_OK(keel_env_get_int(e, "PLUS", 1, -10, 10, &v, &d));
    assert_int_equal(5, v);
    ASSERT_OK(keel_env_get_int(e, "UNSET", 77, 0, 10, &v, &d)); /* default not range-checked */
    assert_int_equal(77, v);
    ASSERT_OK(keel_env_get_int(e, "BLANK", 3, 0, 10, &v, &d));
    assert_int_equal(3, v);
    ASSERT_OK(keel_env_get_int(e, "MIN", 0, LLONG_MIN, 0, &v, &d));
    assert_true(v == LLONG_MIN);

    v = 5;
    assert_int_equal(KEEL_EINVAL, keel_env_get_int(e, "BAD", 1, 1, 65535, &v, &d));
    assert_string_equal("BAD: must be an integer in 1..65535, got 'abc'", d.msg);
    assert_int_equal(5, v); /* untouched on error */
    assert_int_equal(KEEL_ERANGE, keel_env_get_int(e, "N", 1, 0, 10, &v, &d));
    assert_string_equal("N: must be an integer in 0..10, got '42'", d.msg);
    assert_int_equal(KEEL_EINVAL, keel_env_get_int(e, "BIG", 1, 0, 10, &v, &d));
    assert_string_equal("BIG: must be an integer in 0..10, got '99999999999999999999'", d.msg);
    assert_int_equal(KEEL_EINVAL, keel_env_get_int(e, "HEX", 1, 0, 100, &v, &d));
    assert_int_equal(KEEL_EINVAL, keel_env_get_int(e, "SUFFIX", 1, 0, 100, &v, &d));
    assert_int_equal(KEEL_EINVAL, keel_env_get_int(e, "N", 1, 10, 0, &v, &d)); /* min > max */
    assert_int_equal(KEEL_EINVAL, keel_env_get_int(e, NULL, 1, 0, 10, &v, &d));
    /* NULL env behaves as empty */
    ASSERT_OK(keel_env_get_int(NULL, "N", 9, 0, 10, &v, NULL));
    assert_int_equal(9, v);
    keel_env_destroy(e);
}

static void test_get_bool(void **state)
{
    (void)state;
    const char *vars[] = {
        "T1=true",  "T2=1",
        "T3=YES",   "T4=On",
        "F1=False", "F2=0",
        "F3=no",    "F4=OFF",
        "B=maybe",  "LONG=\x01xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        NULL};
    keel_env *e = env_of(vars, NULL);
    keel_diag d;
    bool b;
    const char *t[] = {"T1", "T2", "T3", "T4"}, *f[] = {"F1", "F2", "F3", "F4"};
    for (int i = 0; i < 4; i++) {
        b = false;
        ASSERT_OK(keel_env_get_bool(e, t[i], false, &b, &d));
        assert_true(b);
        b = true;
        ASSERT_OK(keel_env_get_bool(e, f[i], true, &b, &d));
        assert_false(b);
    }
    ASSERT_OK(keel_env_get_bool(e, "UNSET", true, &b, &d));
    assert_true(b);
    assert_int_equal(KEEL_EINVAL, keel_env_get_bool(e, "B", true, &b, &d));
    assert_string_equal("B: must be a boolean (true/false, 1/0, yes/no, on/off), got 'maybe'",
                        d.msg);
    /* long values are cut and control bytes masked */
    assert_int_equal(KEEL_EINVAL, keel_env_get_bool(e, "LONG", true, &b, &d));
    assert_string_equal("LONG: must be a boolean (true/false, 1/0, yes/no, on/off), got "
                        "'?xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'",
                        d.msg);
    keel_env_destroy(e);
}

static void test_get_str_choice_list(void **state)
{
    (void)state;
    const char *vars[] = {"S= spaced ",    "EMPTY=",   "C=Block",     "CBAD=sometimes",
                          "L= a, b ,,c ,", "LBLANK= ", "LCOMMAS=,,,", NULL};
    keel_env *e = env_of(vars, NULL);
    const char *s = NULL;
    ASSERT_OK(keel_env_get_str(e, "S", "d", &s));
    assert_string_equal(" spaced ", s); /* raw */
    ASSERT_OK(keel_env_get_str(e, "EMPTY", "d", &s));
    assert_string_equal("", s);
    ASSERT_OK(keel_env_get_str(e, "UNSET", "d", &s));
    assert_string_equal("d", s);
    ASSERT_OK(keel_env_get_str(e, "UNSET", NULL, &s));
    assert_null(s);
    assert_int_equal(KEEL_EINVAL, keel_env_get_str(e, NULL, NULL, &s));

    static const char *const ch[] = {"drop", "block"};
    size_t i = 9;
    keel_diag d;
    ASSERT_OK(keel_env_get_choice(e, "C", ch, 2, 0, &i, &d));
    assert_int_equal(1, i);
    ASSERT_OK(keel_env_get_choice(e, "UNSET", ch, 2, 0, &i, &d));
    assert_int_equal(0, i);
    assert_int_equal(KEEL_EINVAL, keel_env_get_choice(e, "CBAD", ch, 2, 0, &i, &d));
    assert_string_equal("CBAD: must be one of drop, block, got 'sometimes'", d.msg);

    char **l = NULL;
    size_t n = 99;
    ASSERT_OK(keel_env_get_list(e, "L", "x", &l, &n, &d));
    assert_int_equal(3, n);
    assert_string_equal("a", l[0]);
    assert_string_equal("b", l[1]);
    assert_string_equal("c", l[2]);
    assert_null(l[3]);
    keel_free(l);
    ASSERT_OK(keel_env_get_list(e, "UNSET", " *, x", &l, &n, &d));
    assert_int_equal(2, n);
    assert_string_equal("*", l[0]);
    assert_string_equal("x", l[1]);
    keel_free(l);
    ASSERT_OK(keel_env_get_list(e, "LBLANK", "def", &l, &n, &d)); /* blank = unset */
    assert_int_equal(1, n);
    assert_string_equal("def", l[0]);
    keel_free(l);
    ASSERT_OK(keel_env_get_list(e, "UNSET", NULL, &l, &n, &d));
    assert_int_equal(0, n);
    assert_non_null(l);
    assert_null(l[0]);
    keel_free(l);
    ASSERT_OK(keel_env_get_list(e, "LCOMMAS", NULL, &l, &n, &d));
    assert_int_equal(0, n);
    keel_free(l);
    keel_env_destroy(e);

    /* the item cap */
    size_t many = KEEL_ENV_LIST_MAX + 1;
    char *big = malloc(many * 2 + 8);
    assert_non_null(big);
    memcpy(big, "L=", 2);
    for (size_t k = 0; k < many; k++) {
        big[2 + 2 * k] = 'x';
        big[3 + 2 * k] = ',';
    }
    big[2 + 2 * many] = '\0';
    const char *v2[] = {big, NULL};
    e = env_of(v2, NULL);
    assert_int_equal(KEEL_ETOOBIG, keel_env_get_list(e, "L", NULL, &l, &n, &d));
    assert_string_equal("L: more than 4096 items", d.msg);
    keel_env_destroy(e);
    free(big);
}

/* ------------------------------------------------------------ settings -- */

static void test_settings_defaults(void **state)
{
    (void)state;
    keel_settings *s = NULL;
    char *errs = NULL;
    ASSERT_OK(load(NULL, &s, &errs));
    assert_string_equal("", errs);
    keel_free(errs);
    assert_int_equal(sizeof(keel_settings), s->size);
    assert_int_equal(KEEL_ENVIRONMENT_DEVELOPMENT, s->environment);
    assert_string_equal("development", s->environment_name);
    assert_string_equal("keel", s->project_name);
    assert_string_equal(KEEL_VERSION_STRING, s->project_version);
    assert_string_equal("127.0.0.1", s->host);
    assert_int_equal(8080, s->port);
    assert_int_equal(20, s->log_level);
    assert_string_equal("logs", s->log_dir);
    assert_int_equal(4096, s->log_queue_size);
    assert_false(s->log_overflow_block);
    assert_string_equal("sqlite:./var/keel.db", s->database_url);
    assert_null(s->redis_url);
    assert_non_null(s->access_token_signing_key);
    assert_non_null(s->refresh_token_signing_key);
    assert_int_equal(32, keel_secret_len(s->access_token_signing_key));
    assert_int_equal(32, keel_secret_len(s->refresh_token_signing_key));
    assert_true(s->signing_keys_generated);
    assert_string_equal("HS256", s->jwt_algorithm);
    assert_int_equal(15, s->access_token_expire_minutes);
    assert_int_equal(60, s->refresh_token_expire_days);
    assert_int_equal(180, s->session_expire_days);
    assert_int_equal(1, s->cors_allow_origins_len);
    assert_string_equal("*", s->cors_allow_origins[0]);
    assert_null(s->cors_allow_origins[1]);
    assert_int_equal(1, s->cors_allow_methods_len);
    assert_string_equal("*", s->cors_allow_methods[0]);
    assert_int_equal(1, s->cors_allow_headers_len);
    assert_string_equal("*", s->cors_allow_headers[0]);
    assert_true(s->cors_allow_credentials);
    assert_false(s->cors_wildcard_with_credentials); /* only flagged in production */
    assert_int_equal(30, s->shutdown_timeout_seconds);
    assert_int_equal(0, s->webhook_secrets_len);
    assert_null(s->webhook_secrets);
    assert_null(s->otel_exporter_otlp_endpoint);
    assert_false(s->trace_log_spans);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long w = 4 * (cpus < 1 ? 1 : cpus);
    assert_int_equal(w < 2 ? 2 : w > 256 ? 256 : w, s->http_workers);
    assert_int_equal(1048576, s->http_max_body_bytes);
    assert_int_equal(1024, s->http_max_connections);
    assert_int_equal(0, s->http_max_connections_per_ip);
    assert_int_equal(30, s->http_connection_timeout_seconds);
    assert_int_equal(16384, s->http_connection_memory_limit);
    assert_int_equal(1234, keel_settings_dep_timeout_ms(s, "stripe", 1234));
    /* the two generated keys differ */
    assert_false(keel_secret_equals(s->access_token_signing_key,
                                    keel__secret_bytes(s->refresh_token_signing_key), 32));
    keel_settings_destroy(s);
    keel_settings_destroy(NULL);
}

static void test_settings_overrides(void **state)
{
    (void)state;
    const char *vars[] = {"ENVIRONMENT= Test ",
                          "PROJECT_NAME=shop",
                          "PROJECT_VERSION=2.3.4",
                          "HOST=0.0.0.0",
                          "PORT=65535",
                          "LOG_LEVEL=warning",
                          "LOG_DIR=/var/log/shop",
                          "LOG_QUEUE_SIZE=16",
                          "LOG_OVERFLOW=BLOCK",
                          "DATABASE_URL=postgresql://u:p@db:5432/shop",
                          "REDIS_URL=rediss://cache:6380/0",
                          "ACCESS_TOKEN_SIGNING_KEY=short-is-fine-outside-production",
                          "JWT_ALGORITHM=es256",
                          "ACCESS_TOKEN_EXPIRE_MINUTES=1440",
                          "REFRESH_TOKEN_EXPIRE_DAYS=1",
                          "SESSION_EXPIRE_DAYS=3650",
                          "CORS_ALLOW_ORIGINS=https://a.example, https://b.example",
                          "CORS_ALLOW_CREDENTIALS=off",
                          "CORS_ALLOW_METHODS=GET,POST",
                          "CORS_ALLOW_HEADERS=Authorization",
                          "SHUTDOWN_TIMEOUT_SECONDS=0",
                          "WEBHOOK_SECRET= whsec_new , ,whsec_old",
                          "OTEL_EXPORTER_OTLP_ENDPOINT=http://otel:4318",
                          "HTTP_WORKERS=1024",
                          "HTTP_MAX_BODY_BYTES=1073741824",
                          "HTTP_MAX_CONNECTIONS=5",
                          "HTTP_MAX_CONNECTIONS_PER_IP=3",
                          "HTTP_CONNECTION_TIMEOUT_SECONDS=3600",
                          "HTTP_CONNECTION_MEMORY_LIMIT=8192",
                          "STRIPE_TIMEOUT_MS=2500",
                          "USER_SERVICE_TIMEOUT_MS=600000",
                          "TRACE_LOG_SPANS=yes",
                          NULL};
    keel_settings *s = NULL;
    char *errs = NULL;
    keel_err e = load(vars, &s, &errs);
    if (e != KEEL_OK)
        print_error("%s", errs);
    assert_int_equal(KEEL_OK, e);
    keel_free(errs);
    assert_int_equal(KEEL_ENVIRONMENT_TEST, s->environment);
    assert_string_equal("test", s->environment_name);
    assert_string_equal("shop", s->project_name);
    assert_string_equal("2.3.4", s->project_version);
    assert_string_equal("0.0.0.0", s->host);
    assert_int_equal(65535, s->port);
    assert_int_equal(30, s->log_level);
    assert_string_equal("/var/log/shop", s->log_dir);
    assert_int_equal(16, s->log_queue_size);
    assert_true(s->log_overflow_block);
    assert_string_equal("postgresql://u:p@db:5432/shop", s->database_url);
    assert_string_equal("rediss://cache:6380/0", s->redis_url);
    assert_true(
        keel_secret_equals(s->access_token_signing_key, "short-is-fine-outside-production", 32));
    assert_int_equal(32, keel_secret_len(s->refresh_token_signing_key)); /* generated */
    assert_true(s->signing_keys_generated);
    assert_string_equal("ES256", s->jwt_algorithm);
    assert_int_equal(1440, s->access_token_expire_minutes);
    assert_int_equal(1, s->refresh_token_expire_days);
    assert_int_equal(3650, s->session_expire_days);
    assert_int_equal(2, s->cors_allow_origins_len);
    assert_string_equal("https://a.example", s->cors_allow_origins[0]);
    assert_string_equal("https://b.example", s->cors_allow_origins[1]);
    assert_false(s->cors_allow_credentials);
    assert_int_equal(2, s->cors_allow_methods_len);
    assert_string_equal("POST", s->cors_allow_methods[1]);
    assert_int_equal(1, s->cors_allow_headers_len);
    assert_string_equal("Authorization", s->cors_allow_headers[0]);
    assert_int_equal(0, s->shutdown_timeout_seconds);
    assert_int_equal(2, s->webhook_secrets_len);
    assert_true(keel_secret_equals(s->webhook_secrets[0], "whsec_new", 9));
    assert_true(keel_secret_equals(s->webhook_secrets[1], "whsec_old", 9));
    assert_string_equal("http://otel:4318", s->otel_exporter_otlp_endpoint);
    assert_true(s->trace_log_spans);
    assert_int_equal(1024, s->http_workers);
    assert_int_equal(1073741824, s->http_max_body_bytes);
    assert_int_equal(5, s->http_max_connections);
    assert_int_equal(3, s->http_max_connections_per_ip);
    assert_int_equal(3600, s->http_connection_timeout_seconds);
    assert_int_equal(8192, s->http_connection_memory_limit);
    /* dependency timeouts */
    assert_int_equal(2500, keel_settings_dep_timeout_ms(s, "stripe", 1));
    assert_int_equal(2500, keel_settings_dep_timeout_ms(s, "STRIPE", 1));
    assert_int_equal(600000, keel_settings_dep_timeout_ms(s, "user-service", 1));
    assert_int_equal(600000, keel_settings_dep_timeout_ms(s, "user.service", 1));
    assert_int_equal(7, keel_settings_dep_timeout_ms(s, "s3", 7));
    assert_int_equal(7, keel_settings_dep_timeout_ms(s, "", 7));
    assert_int_equal(7, keel_settings_dep_timeout_ms(s, NULL, 7));
    assert_int_equal(7, keel_settings_dep_timeout_ms(NULL, "stripe", 7));
    keel_settings_destroy(s);
}

static void test_settings_all_errors_at_once(void **state)
{
    (void)state;
    const char *vars[] = {"ENVIRONMENT=staging",
                          "PORT=abc",
                          "HOST=bad host",
                          "LOG_LEVEL=verbose",
                          "LOG_QUEUE_SIZE=8",
                          "LOG_OVERFLOW=wait",
                          "DATABASE_URL=mysql://x",
                          "REDIS_URL=http://cache",
                          "JWT_ALGORITHM=none",
                          "ACCESS_TOKEN_EXPIRE_MINUTES=0",
                          "CORS_ALLOW_CREDENTIALS=maybe",
                          "SHUTDOWN_TIMEOUT_SECONDS=-1",
                          "OTEL_EXPORTER_OTLP_ENDPOINT=grpc://x",
                          "HTTP_WORKERS=2000",
                          "HTTP_MAX_BODY_BYTES=0",
                          "HTTP_CONNECTION_MEMORY_LIMIT=4096",
                          "PAYMENT_API_TIMEOUT_MS=0",
                          "S3_TIMEOUT_MS=fast",
                          "OK_TIMEOUT_MS=100",
                          NULL};
    keel_settings *s = (keel_settings *)1;
    char *errs = NULL;
    assert_int_equal(KEEL_EINVAL, load(vars, &s, &errs));
    assert_null(s);
    assert_string_equal(
        "ENVIRONMENT: must be one of development, production, test, got 'staging'\n"
        "HOST: must be a host name or IP address without blanks (at most 255 bytes), got 'bad "
        "host'\n"
        "PORT: must be an integer in 1..65535, got 'abc'\n"
        "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, WARN, ERROR, CRITICAL, got 'verbose'\n"
        "LOG_QUEUE_SIZE: must be an integer in 16..1048576, got '8'\n"
        "LOG_OVERFLOW: must be one of drop, block, got 'wait'\n"
        "DATABASE_URL: must start with 'sqlite:', 'postgres://' or 'postgresql://', got "
        "'mysql://x'\n"
        "REDIS_URL: must start with 'redis://' or 'rediss://', got 'http://cache'\n"
        "JWT_ALGORITHM: 'none' (unsigned tokens) is not allowed; see RFC 8725 section 3.1\n"
        "ACCESS_TOKEN_EXPIRE_MINUTES: must be an integer in 1..1440, got '0'\n"
        "CORS_ALLOW_CREDENTIALS: must be a boolean (true/false, 1/0, yes/no, on/off), got "
        "'maybe'\n"
        "SHUTDOWN_TIMEOUT_SECONDS: must be an integer in 0..3600, got '-1'\n"
        "OTEL_EXPORTER_OTLP_ENDPOINT: must start with 'http://' or 'https://', got 'grpc://x'\n"
        "HTTP_WORKERS: must be an integer in 1..1024, got '2000'\n"
        "HTTP_MAX_BODY_BYTES: must be an integer in 1..1073741824, got '0'\n"
        "HTTP_CONNECTION_MEMORY_LIMIT: must be an integer in 8192..1073741824, got '4096'\n"
        "PAYMENT_API_TIMEOUT_MS: must be an integer in 1..600000, got '0'\n"
        "S3_TIMEOUT_MS: must be an integer in 1..600000, got 'fast'\n",
        errs);
    keel_free(errs);

    /* without an errors buffer the verdict is the same */
    keel_env *e = env_of(vars, NULL);
    assert_int_equal(KEEL_EINVAL, keel_settings_load(&s, e, NULL));
    keel_env_destroy(e);

    /* other bad values */
    const char *v2[] = {"JWT_ALGORITHM=HS1024", "DATABASE_URL=sqlite:", "PORT=0",
                        "REDIS_URL=redis://a b", NULL};
    assert_int_equal(KEEL_EINVAL, load(v2, &s, &errs));
    assert_string_equal("PORT: must be an integer in 1..65535, got '0'\n"
                        "DATABASE_URL: must start with 'sqlite:', 'postgres://' or "
                        "'postgresql://', got 'sqlite:'\n"
                        "REDIS_URL: must not contain blanks or control characters, got "
                        "'redis://a b'\n"
                        "JWT_ALGORITHM: must be one of HS256, HS384, HS512, RS256, RS384, RS512, "
                        "ES256, ES384, PS256, PS384, PS512, EdDSA, got 'HS1024'\n",
                        errs);
    keel_free(errs);
    assert_int_equal(KEEL_EINVAL, keel_settings_load(&s, NULL, NULL));

    /* credentials in a rejected URL never reach the message */
    const char *v3[] = {"DATABASE_URL=mysql://admin:hunter22@db:3306/shop",
                        "REDIS_URL=redis://:s3cret@cache host:6379", NULL};
    assert_int_equal(KEEL_EINVAL, load(v3, &s, &errs));
    assert_string_equal("DATABASE_URL: must start with 'sqlite:', 'postgres://' or "
                        "'postgresql://', got 'mysql://***@db:3306/shop'\n"
                        "REDIS_URL: must not contain blanks or control characters, got "
                        "'redis://***@cache host:6379'\n",
                        errs);
    keel_free(errs);
}

static void test_settings_blank_means_default(void **state)
{
    (void)state;
    const char *vars[] = {
        "PORT=", "HOST=  ", "REDIS_URL=", "LOG_LEVEL=", "WEBHOOK_SECRET=", "FOO_TIMEOUT_MS=", NULL};
    keel_settings *s = NULL;
    char *errs = NULL;
    ASSERT_OK(load(vars, &s, &errs));
    keel_free(errs);
    assert_int_equal(8080, s->port);
    assert_string_equal("127.0.0.1", s->host);
    assert_null(s->redis_url);
    assert_int_equal(20, s->log_level);
    assert_int_equal(0, s->webhook_secrets_len);
    assert_int_equal(5, keel_settings_dep_timeout_ms(s, "foo", 5));
    keel_settings_destroy(s);
}

/* Production: each key rule, and no secret value in any message. */
static void expect_prod_errors(const char *access, const char *refresh, const char *alg,
                               const char *expect)
{
    char a[256], r[256], j[64];
    const char *vars[5];
    size_t n = 0;
    vars[n++] = "ENVIRONMENT=production";
    if (access) {
        snprintf(a, sizeof(a), "ACCESS_TOKEN_SIGNING_KEY=%s", access);
        vars[n++] = a;
    }
    if (refresh) {
        snprintf(r, sizeof(r), "REFRESH_TOKEN_SIGNING_KEY=%s", refresh);
        vars[n++] = r;
    }
    if (alg) {
        snprintf(j, sizeof(j), "JWT_ALGORITHM=%s", alg);
        vars[n++] = j;
    }
    vars[n] = NULL;
    keel_settings *s = NULL;
    char *errs = NULL;
    keel_err e = load(vars, &s, &errs);
    if (expect == NULL) {
        if (e != KEEL_OK)
            print_error("%s", errs);
        assert_int_equal(KEEL_OK, e);
        assert_false(s->signing_keys_generated);
        keel_settings_destroy(s);
    } else {
        assert_int_equal(KEEL_EINVAL, e);
        assert_string_equal(expect, errs);
        if (access && strlen(access) >= 4)
            assert_null(strstr(errs, access));
        if (refresh && strlen(refresh) >= 4)
            assert_null(strstr(errs, refresh));
    }
    keel_free(errs);
}

static void test_production_key_rules(void **state)
{
    (void)state;
    /* missing */
    expect_prod_errors(NULL, NULL, NULL,
                       "ACCESS_TOKEN_SIGNING_KEY: required when ENVIRONMENT=production\n"
                       "REFRESH_TOKEN_SIGNING_KEY: required when ENVIRONMENT=production\n");
    expect_prod_errors(GOOD_ACCESS, "   ", NULL,
                       "REFRESH_TOKEN_SIGNING_KEY: required when ENVIRONMENT=production\n");
    /* placeholders (exact, any case, and the CHANGE... prefix even when long) */
    const char *ph[] = {
        "changeme", "CHANGE-ME", "secret",      "your-secret-key",
        "dev",      "Test",      "PLACEHOLDER", "CHANGE_THIS_TO_SOMETHING_RANDOM_AND_LONG_ENOUGH"};
    for (size_t i = 0; i < sizeof(ph) / sizeof(ph[0]); i++)
        expect_prod_errors(ph[i], GOOD_REFRESH, NULL,
                           "ACCESS_TOKEN_SIGNING_KEY: is a well-known placeholder; set a random "
                           "value (e.g. openssl rand -base64 48)\n");
    /* short keys with HS*; the length is reported, the value is not */
    expect_prod_errors(GOOD_ACCESS, "k3y-0f-31-bytes-aaaaaaaaaaaaaaa", NULL,
                       "REFRESH_TOKEN_SIGNING_KEY: must be at least 32 bytes for HS256 in "
                       "production (got 31)\n");
    expect_prod_errors("hunter2-hunter2", GOOD_REFRESH, "HS512",
                       "ACCESS_TOKEN_SIGNING_KEY: must be at least 32 bytes for HS512 in "
                       "production (got 15)\n");
    /* no HMAC minimum for asymmetric algorithms */
    expect_prod_errors("rsa-key-ref-1", "rsa-key-ref-2", "RS256", NULL);
    /* equal keys */
    expect_prod_errors(GOOD_ACCESS, GOOD_ACCESS, NULL,
                       "REFRESH_TOKEN_SIGNING_KEY: must differ from ACCESS_TOKEN_SIGNING_KEY\n");
    /* good */
    expect_prod_errors(GOOD_ACCESS, GOOD_REFRESH, NULL, NULL);
}

static void test_production_other_rules(void **state)
{
    (void)state;
    const char *vars[] = {"ENVIRONMENT=PRODUCTION", "ACCESS_TOKEN_SIGNING_KEY=" GOOD_ACCESS,
                          "REFRESH_TOKEN_SIGNING_KEY=" GOOD_REFRESH, NULL};
    keel_settings *s = NULL;
    char *errs = NULL;
    ASSERT_OK(load(vars, &s, &errs));
    keel_free(errs);
    assert_int_equal(KEEL_ENVIRONMENT_PRODUCTION, s->environment);
    assert_string_equal("production", s->environment_name);
    assert_true(s->cors_wildcard_with_credentials); /* default "*" + credentials: warn only */
    assert_false(s->signing_keys_generated);
    assert_true(keel_secret_equals(s->access_token_signing_key, GOOD_ACCESS, 36));
    assert_true(keel_secret_equals(s->refresh_token_signing_key, GOOD_REFRESH, 36));
    keel_settings_destroy(s);

    const char *v2[] = {"ENVIRONMENT=production", "ACCESS_TOKEN_SIGNING_KEY=" GOOD_ACCESS,
                        "REFRESH_TOKEN_SIGNING_KEY=" GOOD_REFRESH, "CORS_ALLOW_CREDENTIALS=false",
                        NULL};
    ASSERT_OK(load(v2, &s, &errs));
    keel_free(errs);
    assert_false(s->cors_wildcard_with_credentials);
    keel_settings_destroy(s);

    const char *v3[] = {"ENVIRONMENT=production", "ACCESS_TOKEN_SIGNING_KEY=" GOOD_ACCESS,
                        "REFRESH_TOKEN_SIGNING_KEY=" GOOD_REFRESH,
                        "CORS_ALLOW_ORIGINS=https://shop.example", NULL};
    ASSERT_OK(load(v3, &s, &errs));
    keel_free(errs);
    assert_false(s->cors_wildcard_with_credentials);
    keel_settings_destroy(s);

    /* webhook placeholder in production: reported without the value */
    const char *v4[] = {"ENVIRONMENT=production", "ACCESS_TOKEN_SIGNING_KEY=" GOOD_ACCESS,
                        "REFRESH_TOKEN_SIGNING_KEY=" GOOD_REFRESH,
                        "WEBHOOK_SECRET=whsec_real_value,changeme", NULL};
    assert_int_equal(KEEL_EINVAL, load(v4, &s, &errs));
    assert_string_equal("WEBHOOK_SECRET: item 2 is a well-known placeholder\n", errs);
    assert_null(strstr(errs, "whsec_real"));
    keel_free(errs);

    /* production errors are listed together with the others */
    const char *v5[] = {"ENVIRONMENT=production", "PORT=99999", "ACCESS_TOKEN_SIGNING_KEY=dev",
                        NULL};
    assert_int_equal(KEEL_EINVAL, load(v5, &s, &errs));
    assert_string_equal("PORT: must be an integer in 1..65535, got '99999'\n"
                        "ACCESS_TOKEN_SIGNING_KEY: is a well-known placeholder; set a random "
                        "value (e.g. openssl rand -base64 48)\n"
                        "REFRESH_TOKEN_SIGNING_KEY: required when ENVIRONMENT=production\n",
                        errs);
    keel_free(errs);
}

static void test_dev_keys_generated_per_process(void **state)
{
    (void)state;
    keel_settings *a = NULL, *b = NULL;
    char *errs = NULL;
    ASSERT_OK(load(NULL, &a, &errs));
    keel_free(errs);
    ASSERT_OK(load(NULL, &b, &errs));
    keel_free(errs);
    assert_true(a->signing_keys_generated);
    /* fresh random bytes each load (never a fixed built-in key) */
    assert_false(keel_secret_equals(a->access_token_signing_key,
                                    keel__secret_bytes(b->access_token_signing_key), 32));
    keel_settings_destroy(a);
    keel_settings_destroy(b);

    const char *vars[] = {"ACCESS_TOKEN_SIGNING_KEY=" GOOD_ACCESS,
                          "REFRESH_TOKEN_SIGNING_KEY=" GOOD_REFRESH, NULL};
    ASSERT_OK(load(vars, &a, &errs));
    keel_free(errs);
    assert_false(a->signing_keys_generated);
    keel_settings_destroy(a);
}

/* --------------------------------------------------------- OOM injection -- */


static void test_oom_injection(void **state)
{
    (void)state;
    const char *vars[] = {"PORT=1", "WEBHOOK_SECRET=a,b,c", "X_TIMEOUT_MS=5",
                          "CORS_ALLOW_ORIGINS=https://a,https://b", NULL};
    const char *dotenv = "HOST=localhost\nDATABASE_URL=\"postgres://x\"\nY_TIMEOUT_MS=6\n";
    keel_test_failalloc_install();
    int ok = 0;
    for (int n = 0; n < 200 && !ok; n++) {
        keel_test_failalloc_arm(n);
        keel_env *e = NULL;
        keel_err err = keel_env_from(&e, vars, dotenv, strlen(dotenv), NULL);
        if (err != KEEL_OK) {
            assert_int_equal(KEEL_ENOMEM, err);
            assert_null(e);
            continue;
        }
        keel_settings *s = NULL;
        err = keel_settings_load(&s, e, NULL);
        keel_env_destroy(e);
        if (err != KEEL_OK) {
            assert_int_equal(KEEL_ENOMEM, err);
            assert_null(s);
            continue;
        }
        keel_test_failalloc_arm(-1);
        assert_int_equal(3, s->webhook_secrets_len);
        assert_string_equal("postgres://x", s->database_url);
        assert_int_equal(6, keel_settings_dep_timeout_ms(s, "y", 0));
        keel_settings_destroy(s);
        ok = 1;
    }
    keel_test_failalloc_arm(-1);
    ASSERT_OK(keel_set_allocator(NULL));
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_precedence),
        cmocka_unit_test(test_env_load_file),
        cmocka_unit_test(test_get_int),
        cmocka_unit_test(test_get_bool),
        cmocka_unit_test(test_get_str_choice_list),
        cmocka_unit_test(test_settings_defaults),
        cmocka_unit_test(test_settings_overrides),
        cmocka_unit_test(test_settings_all_errors_at_once),
        cmocka_unit_test(test_settings_blank_means_default),
        cmocka_unit_test(test_production_key_rules),
        cmocka_unit_test(test_production_other_rules),
        cmocka_unit_test(test_dev_keys_generated_per_process),
        cmocka_unit_test(test_oom_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
