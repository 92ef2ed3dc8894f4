/* Tests for src/client/s3.c.  The listing parser, status mapping and configuration checks
 * run everywhere; the round trips run against a real S3-compatible server (s3rver, started
 * by scripts/s3-server.sh) found through KEEL_TEST_S3_ENDPOINT, and the test exits 77
 * (skipped) after the offline part when it is unset. */
#define _GNU_SOURCE 1
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/client.h>
#include <keel/s3.h>

#include "client/client_int.h"

/* ----------------------------------------------------------------- offline -- */

static void test_status_error(void **state)
{
    (void)state;
    assert_int_equal(KEEL_OK, keel_s3_status_error(200));
    assert_int_equal(KEEL_OK, keel_s3_status_error(204));
    assert_int_equal(KEEL_ENOTFOUND, keel_s3_status_error(404));
    assert_int_equal(KEEL_EDENIED, keel_s3_status_error(403));
    assert_int_equal(KEEL_EAGAIN, keel_s3_status_error(500));
    assert_int_equal(KEEL_EAGAIN, keel_s3_status_error(503));
    assert_int_equal(KEEL_EAGAIN, keel_s3_status_error(429));
    assert_int_equal(KEEL_EINVAL, keel_s3_status_error(400));
    assert_int_equal(KEEL_EINVAL, keel_s3_status_error(409));
    assert_int_equal(KEEL_EIO, keel_s3_status_error(0));
    assert_int_equal(KEEL_EIO, keel_s3_status_error(304));
}

static void test_parse_list(void **state)
{
    (void)state;
    const char *xml =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
        "<IsTruncated>true</IsTruncated>"
        "<Contents><Key>p/a&amp;b &lt;1&gt;</Key><LastModified>x</LastModified>"
        "<ETag>&quot;5d41402abc4b2a76b9719d911017c592&quot;</ETag><Size>5</Size></Contents>"
        "<Contents><Key>p/caf&#233;&#x2603;</Key><Size>18446744073709551615</Size></Contents>"
        "<NextContinuationToken>tok/+=</NextContinuationToken></ListBucketResult>";
    keel_s3_list l;
    assert_int_equal(KEEL_OK, keel__s3_parse_list(xml, strlen(xml), &l));
    assert_int_equal(2, l.count);
    assert_string_equal("p/a&b <1>", l.objects[0].key);
    assert_int_equal(5, l.objects[0].size);
    assert_string_equal("5d41402abc4b2a76b9719d911017c592", l.objects[0].etag);
    assert_string_equal("p/caf\xc3\xa9\xe2\x98\x83", l.objects[1].key);
    assert_true(l.objects[1].size == UINT64_MAX);
    assert_string_equal("", l.objects[1].etag);
    assert_int_equal(1, l.truncated);
    assert_string_equal("tok/+=", l.next_token);
    keel_s3_list_cleanup(&l);
    assert_null(l.objects);

    const char *empty = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
    assert_int_equal(KEEL_OK, keel__s3_parse_list(empty, strlen(empty), &l));
    assert_int_equal(0, l.count);
    assert_int_equal(0, l.truncated);
    assert_null(l.next_token);
    keel_s3_list_cleanup(&l);

    static const char *const bad[] = {
        "<Error><Code>x</Code></Error>",                                     /* not a listing */
        "<ListBucketResult><Contents><Key>a</Key>",                          /* unterminated */
        "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>", /* no key */
        "<ListBucketResult><Contents><Key>a&bogus;</Key></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>&#0;</Key></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>&#xD800;</Key></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key>a</Key><Size>18446744073709551616</Size></Contents>"
        "</ListBucketResult>",
        "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", /* no token */
        /* nested: the second element is swallowed by the first (found by fuzzing) */
        "<ListBucketResult><Contents>x<Contents><Key>a</Key></Contents></ListBucketResult>",
        NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        if (keel__s3_parse_list(bad[i], strlen(bad[i]), &l) != KEEL_EPARSE)
            fail_msg("case %zu accepted: %s", i, bad[i]);
        assert_int_equal(0, l.count);
        assert_null(l.objects);
    }
}

static void expect_reject(const keel_s3_config *cfg, const char *field)
{
    keel_s3 *s3 = (keel_s3 *)1;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(KEEL_EINVAL, keel_s3_create(&s3, cfg, &d));
    assert_null(s3);
    if (strstr(d.msg, field) == NULL)
        fail_msg("diag '%s' does not name '%s'", d.msg, field);
    assert_null(strstr(d.msg, "sekrit")); /* never the secret */
}

static keel_s3_config offline_cfg(void)
{
    keel_s3_config cfg;
    keel_s3_config_default(&cfg);
    cfg.endpoint = "http://127.0.0.1:9";
    cfg.bucket = "keel-test";
    cfg.access_key = "AKID";
    cfg.secret_key = "sekrit";
    return cfg;
}

static void test_config_rejected(void **state)
{
    (void)state;
    keel_s3_config cfg = offline_cfg();
    cfg.bucket = "";
    expect_reject(&cfg, "bucket");
    cfg = offline_cfg();
    cfg.bucket = "Bad_Bucket";
    expect_reject(&cfg, "bucket");
    cfg = offline_cfg();
    cfg.timeout_ms = 0;
    expect_reject(&cfg, "timeout_ms must be >= 1, got 0");
    cfg = offline_cfg();
    cfg.connect_timeout_ms = 0;
    expect_reject(&cfg, "connect_timeout_ms");
    cfg = offline_cfg();
    cfg.secret_key = "";
    expect_reject(&cfg, "secret_key");
    cfg = offline_cfg();
    cfg.access_key = NULL;
    expect_reject(&cfg, "access_key");
    cfg = offline_cfg();
    cfg.endpoint = "";
    expect_reject(&cfg, "endpoint");
    cfg = offline_cfg();
    cfg.endpoint = "s3.local:9000";
    expect_reject(&cfg, "endpoint");
    cfg = offline_cfg();
    cfg.region = "US EAST";
    expect_reject(&cfg, "region");
    cfg = offline_cfg();
    keel_s3 *s3;
    assert_int_equal(KEEL_OK, keel_s3_create(&s3, &cfg, NULL));
    /* bad arguments are refused before any network traffic */
    keel_diag d;
    assert_int_equal(KEEL_EINVAL, keel_s3_put(s3, "", "x", 1, NULL, &d));
    assert_non_null(strstr(d.msg, "key"));
    assert_int_equal(KEEL_EINVAL, keel_s3_put(s3, "a\nb", "x", 1, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_s3_put(s3, "k", "x", 1, "text/plain\r\nX: y", &d));
    char *data;
    size_t len;
    assert_int_equal(KEEL_EINVAL, keel_s3_get(s3, NULL, &data, &len, &d));
    assert_null(data);
    keel_s3_list l;
    assert_int_equal(KEEL_EINVAL, keel_s3_list_objects(s3, NULL, NULL, 1001, &l, &d));
    assert_non_null(strstr(d.msg, "max_keys"));
    keel_s3_destroy(s3);
}

/* -------------------------------------------------------------- live S3 -- */

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : def;
}

static keel_s3_config live_cfg(keel_metrics *m)
{
    keel_s3_config cfg;
    keel_s3_config_default(&cfg);
    cfg.endpoint = getenv("KEEL_TEST_S3_ENDPOINT");
    cfg.bucket = env_or("KEEL_TEST_S3_BUCKET", "keel-test");
    cfg.region = env_or("KEEL_TEST_S3_REGION", "us-east-1");
    cfg.access_key = env_or("KEEL_TEST_S3_ACCESS_KEY", "S3RVER");
    cfg.secret_key = env_or("KEEL_TEST_S3_SECRET_KEY", "S3RVER");
    cfg.timeout_ms = 20000;
    cfg.metrics = m;
    cfg.max_attempts = 1;
    return cfg;
}

static char prefix[64]; /* unique per run: tests never see each other's objects */

static double metric(keel_metrics *m, const char *name, const char *const *labels,
                     const char *const *values)
{
    keel_metric *f;
    assert_int_equal(KEEL_OK, keel_metrics_counter(m, name, "", labels, &f));
    keel_series *s;
    assert_int_equal(KEEL_OK, keel_metric_series(f, values, &s));
    return keel_series_value(s);
}

static void test_put_get_roundtrip(void **state)
{
    (void)state;
    keel_metrics *m;
    assert_int_equal(KEEL_OK, keel_metrics_create(&m));
    keel_s3_config cfg = live_cfg(m);
    keel_s3 *s3;
    keel_diag d;
    if (keel_s3_create(&s3, &cfg, &d) != KEEL_OK)
        fail_msg("%s", d.msg);
    char key[160];
    snprintf(key, sizeof(key), "%ssmall file+&=.txt", prefix);
    if (keel_s3_put(s3, key, "hello, s3", 9, "text/plain", &d) != KEEL_OK)
        fail_msg("%s", d.msg);
    char *data;
    size_t len;
    if (keel_s3_get(s3, key, &data, &len, &d) != KEEL_OK)
        fail_msg("%s", d.msg);
    assert_int_equal(9, len);
    assert_memory_equal("hello, s3", data, 9);
    keel_free(data);

    /* 5 MiB of pseudo-random bytes, NULs included */
    size_t big = 5u * 1024u * 1024u;
    unsigned char *blob = malloc(big);
    assert_non_null(blob);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < big; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blob[i] = (unsigned char)(x >> 32);
    }
    snprintf(key, sizeof(key), "%sbig.bin", prefix);
    if (keel_s3_put(s3, key, blob, big, NULL, &d) != KEEL_OK)
        fail_msg("%s", d.msg);
    if (keel_s3_get(s3, key, &data, &len, &d) != KEEL_OK)
        fail_msg("%s", d.msg);
    assert_int_equal(big, len);
    assert_int_equal(0, memcmp(blob, data, big));
    keel_free(data);
    free(blob);

    /* an empty object */
    snprintf(key, sizeof(key), "%sempty", prefix);
    assert_int_equal(KEEL_OK, keel_s3_put(s3, key, NULL, 0, NULL, NULL));
    assert_int_equal(KEEL_OK, keel_s3_get(s3, key, &data, &len, NULL));
    assert_int_equal(0, len);
    assert_string_equal("", data);
    keel_free(data);

    static const char *const rl[] = {"operation", "status", NULL};
    static const char *const bl[] = {"operation", "direction", NULL};
    const char *put_ok[] = {"PutObject", "success"};
    const char *get_ok[] = {"GetObject", "success"};
    const char *up[] = {"PutObject", "upload"};
    const char *down[] = {"GetObject", "download"};
    assert_true(metric(m, "s3_requests_total", rl, put_ok) == 3.0);
    assert_true(metric(m, "s3_requests_total", rl, get_ok) == 3.0);
    assert_true(metric(m, "s3_bytes_transferred_total", bl, up) == (double)(9 + big));
    assert_true(metric(m, "s3_bytes_transferred_total", bl, down) == (double)(9 + big));
    keel_s3_destroy(s3);
    keel_metrics_destroy(m);
}

static void test_list_with_prefix_and_pages(void **state)
{
    (void)state;
    keel_s3_config cfg = live_cfg(NULL);
    keel_s3 *s3;
    assert_int_equal(KEEL_OK, keel_s3_create(&s3, &cfg, NULL));
    char p[96], key[160];
    snprintf(p, sizeof(p), "%slist/", prefix);
    const char *names[] = {"a.txt", "b c.txt", "d/e.txt"};
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof(key), "%s%s", p, names[i]);
        assert_int_equal(KEEL_OK, keel_s3_put(s3, key, names[i], strlen(names[i]), NULL, NULL));
    }
    snprintf(key, sizeof(key), "%slisted-not.txt", prefix); /* shares a shorter prefix only */
    assert_int_equal(KEEL_OK, keel_s3_put(s3, key, "x", 1, NULL, NULL));

    keel_s3_list l;
    keel_diag d;
    if (keel_s3_list_objects(s3, p, NULL, 0, &l, &d) != KEEL_OK)
        fail_msg("%s", d.msg);
    assert_int_equal(3, l.count);
    assert_int_equal(0, l.truncated);
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof(key), "%s%s", p, names[i]);
        assert_string_equal(key, l.objects[i].key);
        assert_int_equal(strlen(names[i]), l.objects[i].size);
        assert_int_equal(32, strlen(l.objects[i].etag)); /* MD5 of a single-part upload */
    }
    keel_s3_list_cleanup(&l);

    /* two pages of at most two keys */
    assert_int_equal(KEEL_OK, keel_s3_list_objects(s3, p, NULL, 2, &l, NULL));
    assert_int_equal(2, l.count);
    assert_int_equal(1, l.truncated);
    assert_non_null(l.next_token);
    char *tok = keel_strdup(l.next_token);
    keel_s3_list_cleanup(&l);
    assert_int_equal(KEEL_OK, keel_s3_list_objects(s3, p, tok, 2, &l, NULL));
    keel_free(tok);
    assert_int_equal(1, l.count);
    assert_int_equal(0, l.truncated);
    snprintf(key, sizeof(key), "%s%s", p, names[2]);
    assert_string_equal(key, l.objects[0].key);
    keel_s3_list_cleanup(&l);

    /* a prefix nothing has */
    snprintf(key, sizeof(key), "%snothing-here/", prefix);
    assert_int_equal(KEEL_OK, keel_s3_list_objects(s3, key, NULL, 0, &l, NULL));
    assert_int_equal(0, l.count);
    keel_s3_list_cleanup(&l);
    keel_s3_destroy(s3);
}

static void test_delete_then_get_is_not_found(void **state)
{
    (void)state;
    keel_metrics *m;
    assert_int_equal(KEEL_OK, keel_metrics_create(&m));
    keel_s3_config cfg = live_cfg(m);
    keel_s3 *s3;
    assert_int_equal(KEEL_OK, keel_s3_create(&s3, &cfg, NULL));
    char key[160];
    snprintf(key, sizeof(key), "%sdoomed", prefix);
    assert_int_equal(KEEL_OK, keel_s3_put(s3, key, "bye", 3, NULL, NULL));
    assert_int_equal(KEEL_OK, keel_s3_delete(s3, key, NULL));
    char *data = (char *)1;
    size_t len = 99;
    keel_diag d;
    assert_int_equal(KEEL_ENOTFOUND, keel_s3_get(s3, key, &data, &len, &d));
    assert_null(data);
    assert_int_equal(0, len);
    assert_non_null(strstr(d.msg, "404"));
    assert_non_null(strstr(d.msg, "NoSuchKey"));
    /* deleting what is not there is still a success (S3 answers 204) */
    assert_int_equal(KEEL_OK, keel_s3_delete(s3, key, NULL));
    static const char *const rl[] = {"operation", "status", NULL};
    const char *del_ok[] = {"DeleteObject", "success"};
    const char *get_404[] = {"GetObject", "client_error"};
    assert_true(metric(m, "s3_requests_total", rl, del_ok) == 2.0);
    assert_true(metric(m, "s3_requests_total", rl, get_404) == 1.0);
    keel_s3_destroy(s3);
    keel_metrics_destroy(m);
}

/* s3rver checks that the access key exists (403 InvalidAccessKeyId) but does not verify
 * SigV4 signatures, so only an unknown access key can be tested here. */
static void test_wrong_credentials_denied(void **state)
{
    (void)state;
    keel_s3_config cfg = live_cfg(NULL);
    cfg.access_key = "NOT-A-KEY";
    cfg.secret_key = "not-the-secret";
    keel_s3 *s3;
    assert_int_equal(KEEL_OK, keel_s3_create(&s3, &cfg, NULL));
    char key[160];
    snprintf(key, sizeof(key), "%sdenied", prefix);
    keel_diag d;
    assert_int_equal(KEEL_EDENIED, keel_s3_put(s3, key, "x", 1, NULL, &d));
    assert_non_null(strstr(d.msg, "403"));
    assert_null(strstr(d.msg, "not-the-secret"));
    char *data;
    size_t len;
    assert_int_equal(KEEL_EDENIED, keel_s3_get(s3, key, &data, &len, NULL));
    keel_s3_list l;
    assert_int_equal(KEEL_EDENIED, keel_s3_list_objects(s3, prefix, NULL, 0, &l, NULL));
    keel_s3_list_cleanup(&l);
    keel_s3_destroy(s3);
}

static void test_missing_bucket_not_found(void **state)
{
    (void)state;
    keel_s3_config cfg = live_cfg(NULL);
    cfg.bucket = "no-such-bucket-keel";
    keel_s3 *s3;
    assert_int_equal(KEEL_OK, keel_s3_create(&s3, &cfg, NULL));
    keel_s3_list l;
    assert_int_equal(KEEL_ENOTFOUND, keel_s3_list_objects(s3, NULL, NULL, 0, &l, NULL));
    keel_s3_list_cleanup(&l);
    keel_s3_destroy(s3);
}

static int quiet_hook(keel_log_record *r, void *ud)
{
    (void)r;
    (void)ud;
    return 1;
}

int main(void)
{
    if (keel_log_set_hook(quiet_hook, NULL) != KEEL_OK)
        return 1;
    const struct CMUnitTest offline[] = {
        cmocka_unit_test(test_status_error),
        cmocka_unit_test(test_parse_list),
        cmocka_unit_test(test_config_rejected),
    };
    int rc = cmocka_run_group_tests_name("s3_offline", offline, NULL, NULL);
    if (rc != 0)
        return rc;
    const char *ep = getenv("KEEL_TEST_S3_ENDPOINT");
    if (ep == NULL || ep[0] == '\0') {
        fprintf(stderr, "KEEL_TEST_S3_ENDPOINT is not set: S3 round trips skipped "
                        "(eval \"$(scripts/s3-server.sh start)\")\n");
        return 77;
    }
    char uuid[KEEL_UUID_SIZE];
    if (keel_uuid4(uuid) != KEEL_OK)
        return 1;
    snprintf(prefix, sizeof(prefix), "t-%s/", uuid);
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_put_get_roundtrip),
        cmocka_unit_test(test_list_with_prefix_and_pages),
        cmocka_unit_test(test_delete_then_get_is_not_found),
        cmocka_unit_test(test_wrong_credentials_denied),
        cmocka_unit_test(test_missing_bucket_not_found),
    };
    return cmocka_run_group_tests_name("s3_live", live, NULL, NULL);
}
