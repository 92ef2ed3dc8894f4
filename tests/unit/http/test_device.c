/* Tests for src/http/device.c: User-Agent and Client Hints parsing, fingerprints. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/device.h>

/* Heap copy of exactly strlen(s) bytes with no terminator, so ASan flags any read past
 * the slice.  The returned slice owns the memory: release with slice_free(). */
static keel_str slice_dup(const char *s, size_t len)
{
    char *p = malloc(len > 0 ? len : 1);
    assert_non_null(p);
    if (len > 0)
        memcpy(p, s, len);
    return (keel_str){p, len};
}

static keel_str slice(const char *s)
{
    return s == NULL ? KEEL_STR_NULL : slice_dup(s, strlen(s));
}

static void slice_free(keel_str s)
{
    free((void *)(uintptr_t)s.ptr);
}

typedef struct dcase {
    const char *ua, *ch_ua, *platform, *mobile, *platform_version;
    const char *type, *os, *os_version, *browser, *browser_version;
} dcase;

static void run_case(const dcase *c)
{
    keel_device_headers h;
    memset(&h, 0, sizeof(h));
    h.user_agent = slice(c->ua);
    h.sec_ch_ua = slice(c->ch_ua);
    h.sec_ch_ua_platform = slice(c->platform);
    h.sec_ch_ua_mobile = slice(c->mobile);
    h.sec_ch_ua_platform_version = slice(c->platform_version);
    keel_device_info d;
    memset(&d, 0x5a, sizeof(d));
    keel_device_parse(&h, &d);
    if (strcmp(c->type, keel_device_type_name(d.type)) != 0 || strcmp(c->os, d.os) != 0 ||
        strcmp(c->os_version, d.os_version) != 0 || strcmp(c->browser, d.browser) != 0 ||
        strcmp(c->browser_version, d.browser_version) != 0)
        print_error("case UA=%s CH=%s\n  got  %s|%s|%s|%s|%s\n  want %s|%s|%s|%s|%s\n",
                    c->ua ? c->ua : "-", c->ch_ua ? c->ch_ua : "-", keel_device_type_name(d.type),
                    d.os, d.os_version, d.browser, d.browser_version, c->type, c->os, c->os_version,
                    c->browser, c->browser_version);
    assert_string_equal(c->type, keel_device_type_name(d.type));
    assert_string_equal(c->os, d.os);
    assert_string_equal(c->os_version, d.os_version);
    assert_string_equal(c->browser, d.browser);
    assert_string_equal(c->browser_version, d.browser_version);
    assert_string_equal("", d.app_version);
    slice_free(h.user_agent);
    slice_free(h.sec_ch_ua);
    slice_free(h.sec_ch_ua_platform);
    slice_free(h.sec_ch_ua_mobile);
    slice_free(h.sec_ch_ua_platform_version);
}

#define UA_CHROME_MAC                                                                              \
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "      \
    "Chrome/124.0.0.0 Safari/537.36"
#define UA_CHROME_WIN                                                                              \
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "            \
    "Chrome/124.0.0.0 Safari/537.36"
#define UA_ANDROID_TABLET                                                                          \
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "             \
    "Chrome/124.0.0.0 Safari/537.36"

static void test_user_agents(void **state)
{
    (void)state;
    static const dcase cases[] = {
        {UA_CHROME_MAC, NULL, NULL, NULL, NULL, "desktop", "macOS", "10.15.7", "Chrome", "124.0"},
        {"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
         "Gecko) Version/17.4 Safari/605.1.15",
         NULL, NULL, NULL, NULL, "desktop", "macOS", "10.15.7", "Safari", "17.4"},
        {"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", NULL,
         NULL, NULL, NULL, "desktop", "Windows", "10", "Firefox", "125.0"},
        {UA_CHROME_WIN " Edg/124.0.2478.51", NULL, NULL, NULL, NULL, "desktop", "Windows", "10",
         "Edge", "124.0"},
        {"Mozilla/5.0 (Windows NT 6.3; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/123.0.0.0 Safari/537.36 OPR/109.0.0.0",
         NULL, NULL, NULL, NULL, "desktop", "Windows", "8.1", "Opera", "109.0"},
        {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
         "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
         NULL, NULL, NULL, NULL, "mobile", "iOS", "17.4", "Safari", "17.4"},
        {"Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/16.6 Mobile/15E148 Safari/604.1",
         NULL, NULL, NULL, NULL, "tablet", "iPadOS", "16.6", "Safari", "16.6"},
        {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
         "like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
         NULL, NULL, NULL, NULL, "mobile", "iOS", "17.4.1", "Chrome", "124.0"},
        {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
         "Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
         NULL, NULL, NULL, NULL, "mobile", "iOS", "17.4", "Firefox", "125.0"},
        {"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/124.0.0.0 Mobile Safari/537.36",
         NULL, NULL, NULL, NULL, "mobile", "Android", "10", "Chrome", "124.0"},
        {UA_ANDROID_TABLET, NULL, NULL, NULL, NULL, "tablet", "Android", "13", "Chrome", "124.0"},
        {"Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
         "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
         NULL, NULL, NULL, NULL, "mobile", "Android", "14", "Samsung Internet", "24.0"},
        {"Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0", NULL, NULL, NULL,
         NULL, "mobile", "Android", "14", "Firefox", "125.0"},
        {"Mozilla/5.0 (Android 13; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0", NULL, NULL, NULL,
         NULL, "tablet", "Android", "13", "Firefox", "125.0"},
        {"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", NULL,
         NULL, NULL, NULL, "desktop", "Linux", "", "Firefox", "125.0"},
        {"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/124.0.0.0 Safari/537.36",
         NULL, NULL, NULL, NULL, "desktop", "ChromeOS", "14541.0.0", "Chrome", "124.0"},
        {"Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko", NULL, NULL, NULL,
         NULL, "desktop", "Windows", "7", "Internet Explorer", "11.0"},
        {"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", NULL, NULL,
         NULL, NULL, "bot", "", "", "Googlebot", "2.1"},
        {"Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
         "like Gecko) Chrome/124.0.6367.118 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
         "+http://www.google.com/bot.html)",
         NULL, NULL, NULL, NULL, "bot", "Android", "6.0.1", "Googlebot", "2.1"},
        {"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
         "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
         NULL, NULL, NULL, NULL, "bot", "", "", "Bingbot", "2.0"},
        {"SomeCrawler/1.0 (+https://example.com)", NULL, NULL, NULL, NULL, "bot", "", "", "", ""},
        {"curl/8.4.0", NULL, NULL, NULL, NULL, "bot", "", "", "curl", "8.4"},
        {"Wget/1.21.3", NULL, NULL, NULL, NULL, "bot", "", "", "Wget", "1.21"},
        {"python-requests/2.31.0", NULL, NULL, NULL, NULL, "bot", "", "", "python-requests",
         "2.31"},
        {"Go-http-client/1.1", NULL, NULL, NULL, NULL, "bot", "", "", "Go-http-client", "1.1"},
        {"Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
         NULL, NULL, NULL, NULL, "desktop", "macOS", "14.4", "Firefox", "125.0"},
        {"MyApp/3.2 (unknown platform)", NULL, NULL, NULL, NULL, "unknown", "", "", "", ""},
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(cases); i++)
        run_case(&cases[i]);
}

static void test_client_hints(void **state)
{
    (void)state;
    static const dcase cases[] = {
        /* Hints agree with the UA: the UA keeps supplying the OS version. */
        {UA_CHROME_MAC,
         "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"",
         "\"macOS\"", "?0", NULL, "desktop", "macOS", "10.15.7", "Chrome", "124"},
        /* Edge with a Windows 11 platform version (the UA says NT 10.0 forever). */
        {UA_CHROME_WIN " Edg/124.0.2478.51",
         "\"Microsoft Edge\";v=\"124\", \"Chromium\";v=\"124\", \"Not-A.Brand\";v=\"99\"",
         "\"Windows\"", "?0", "\"15.0.0\"", "desktop", "Windows", "11", "Edge", "124"},
        {UA_CHROME_WIN,
         "\"Not/A)Brand\";v=\"8\", \"Chromium\";v=\"126\", \"Google Chrome\";v=\"126\"",
         "\"Windows\"", "?0", "\"10.0.0\"", "desktop", "Windows", "10", "Chrome", "126"},
        {UA_CHROME_WIN, NULL, "\"Windows\"", NULL, "\"0.3.0\"", "desktop", "Windows", "8.1",
         "Chrome", "124.0"},
        /* Brave is only visible through the hints. */
        {UA_CHROME_WIN, "\"Brave\";v=\"123\", \"Not:A-Brand\";v=\"8\", \"Chromium\";v=\"123\"",
         "\"Windows\"", "?0", NULL, "desktop", "Windows", "10", "Brave", "123"},
        {UA_CHROME_WIN, "\"Opera\";v=\"109\", \"Not:A-Brand\";v=\"8\", \"Chromium\";v=\"123\"",
         NULL, NULL, NULL, "desktop", "Windows", "10", "Opera", "109"},
        /* Only GREASE and Chromium: Chromium it is. */
        {NULL, "\"Not_A Brand\";v=\"8\", \"Chromium\";v=\"120\"", "\"Linux\"", "?0", NULL,
         "desktop", "Linux", "", "Chromium", "120"},
        /* Only GREASE: no browser from the hints, the UA decides. */
        {UA_CHROME_WIN, "\"Not?A_Brand\";v=\"99\"", NULL, NULL, NULL, "desktop", "Windows", "10",
         "Chrome", "124.0"},
        /* Mobile hint wins over a desktop-looking UA ("request desktop site"). */
        {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/124.0.0.0 Safari/537.36",
         "\"Google Chrome\";v=\"124\"", "\"Android\"", "?1", "\"14.0.0\"", "mobile", "Android",
         "14.0.0", "Chrome", "124"},
        /* Not mobile, Android: a tablet. */
        {UA_ANDROID_TABLET, "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\"", "\"Android\"",
         "?0", NULL, "tablet", "Android", "13", "Chrome", "124"},
        /* Platform mismatch with the UA: the UA's version is not borrowed. */
        {UA_CHROME_MAC, NULL, "\"Chrome OS\"", NULL, NULL, "desktop", "ChromeOS", "", "Chrome",
         "124.0"},
        /* Hints only. */
        {NULL, NULL, "\"Linux\"", "?0", NULL, "desktop", "Linux", "", "", ""},
        {NULL, NULL, NULL, "?1", NULL, "mobile", "", "", "", ""},
        {NULL, NULL, "\"macOS\"", NULL, "\"14.4.1\"", "desktop", "macOS", "14.4.1", "", ""},
        /* Escapes, parameters, inner lists, tabs around commas. */
        {NULL, "\"A\\\\B\\\"C\";v=\"3\"", NULL, NULL, NULL, "unknown", "", "", "A\\B\"C", "3"},
        {NULL, "(\"x\" tok);p=1, \"Opera\";x=?1;v=\"109\";y=2.5,\t\"Chromium\";v=\"123\"", NULL,
         NULL, NULL, "unknown", "", "", "Opera", "109"},
        {NULL, "  \"Google Chrome\";v=\"124.0.6367.91\"  ", NULL, NULL, NULL, "unknown", "", "",
         "Chrome", "124.0"},
        /* Malformed hints are ignored as a whole; the UA is used instead. */
        {UA_CHROME_MAC, "\"Google Chrome\";v=\"124\", \"Brave", "\"macOS", "?2", NULL, "desktop",
         "macOS", "10.15.7", "Chrome", "124.0"},
        {UA_CHROME_MAC, "\"Brave\";v=\"1\", ", "macOS", "1", NULL, "desktop", "macOS", "10.15.7",
         "Chrome", "124.0"},
        {UA_CHROME_MAC, "\"Bra\\ve\";v=\"1\"", "\"mac\x01OS\"", "?1;", NULL, "desktop", "macOS",
         "10.15.7", "Chrome", "124.0"},
        {UA_CHROME_MAC, "\"Brave\";V=\"1\"", "\"Unknown\"", "?1 x", NULL, "desktop", "macOS",
         "10.15.7", "Chrome", "124.0"},
        /* Bots and tools stay bots whatever the hints say. */
        {"curl/8.4.0", "\"Google Chrome\";v=\"124\"", "\"macOS\"", "?1", NULL, "bot", "macOS", "",
         "curl", "8.4"},
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(cases); i++)
        run_case(&cases[i]);
}

static void test_app_version(void **state)
{
    (void)state;
    keel_device_headers h;
    keel_device_info d;
    memset(&h, 0, sizeof(h));
    h.x_app_version = slice(" 2.3.1-beta+7 (build 99)");
    keel_device_parse(&h, &d);
    assert_string_equal("2.3.1-beta+7", d.app_version);
    assert_string_equal("unknown", keel_device_type_name(d.type));
    slice_free(h.x_app_version);

    h.x_app_version = slice("123456789012345678901234567890");
    keel_device_parse(&h, &d);
    assert_string_equal("12345678901234567890123", d.app_version);
    slice_free(h.x_app_version);

    h.x_app_version = slice("\xff\xfe"
                            "1.0");
    keel_device_parse(&h, &d);
    assert_string_equal("", d.app_version);
    slice_free(h.x_app_version);
}

static void test_empty_and_null(void **state)
{
    (void)state;
    keel_device_info d;
    memset(&d, 0x7f, sizeof(d));
    keel_device_parse(NULL, &d);
    assert_int_equal(KEEL_DEVICE_UNKNOWN, d.type);
    assert_string_equal("", d.os);
    assert_string_equal("", d.browser);
    assert_string_equal("", d.os_version);
    assert_string_equal("", d.browser_version);
    assert_string_equal("", d.app_version);

    keel_device_headers h;
    memset(&h, 0, sizeof(h));
    h.user_agent = (keel_str){"", 0};
    h.sec_ch_ua = (keel_str){"", 0};
    h.sec_ch_ua_mobile = (keel_str){"", 0};
    h.sec_ch_ua_platform = (keel_str){"   ", 3};
    keel_device_parse(&h, &d);
    assert_int_equal(KEEL_DEVICE_UNKNOWN, d.type);
    assert_string_equal("", d.os);
    assert_string_equal("", d.browser);
}

/* UAs cut right after each token the parser looks for: nothing may be read past the end. */
static void test_truncated_slices(void **state)
{
    (void)state;
    static const char *const prefixes[] = {
        "Windows NT ",
        "Windows NT 10",
        "Windows NT 10.",
        "Mac OS X",
        "Mac OS X ",
        "Mac OS X 10_",
        "iPhone; CPU iPhone OS ",
        "iPad; CPU OS ",
        "Linux; Android",
        "Linux; Android ",
        "X11; CrOS",
        "X11; CrOS x86_64",
        "X11; CrOS x86_64 ",
        "Chrome/",
        "Chrome/124.",
        "Edg/",
        "Version/",
        "Safari/ Version/",
        "Trident/7.0; rv:",
        "MSIE ",
        "curl/",
        "Slackbot",
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(prefixes); i++) {
        keel_device_headers h;
        keel_device_info d;
        memset(&h, 0, sizeof(h));
        h.user_agent = slice(prefixes[i]);
        keel_device_parse(&h, &d);
        slice_free(h.user_agent);
    }
    static const char *const hints[] = {"\"",       "\"abc",      "\"abc\\", "\"a\";", "\"a\";V",
                                        "\"a\";v=", "\"a\";v=\"", "(",       "(\"a\"", "(\"a\" ",
                                        "\"a\",",   "?",          ":",       ":YWJj",  "-",
                                        "1.",       "1.2345",     "*",       ""};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(hints); i++) {
        keel_device_headers h;
        keel_device_info d;
        memset(&h, 0, sizeof(h));
        h.sec_ch_ua = slice(hints[i]);
        h.sec_ch_ua_platform = slice(hints[i]);
        h.sec_ch_ua_mobile = slice(hints[i]);
        h.sec_ch_ua_platform_version = slice(hints[i]);
        keel_device_parse(&h, &d);
        assert_string_equal("", d.browser);
        assert_string_equal("", d.os);
        assert_int_equal(KEEL_DEVICE_UNKNOWN, d.type);
        slice_free(h.sec_ch_ua);
        slice_free(h.sec_ch_ua_platform);
        slice_free(h.sec_ch_ua_mobile);
        slice_free(h.sec_ch_ua_platform_version);
    }
}

static void assert_printable(const char *s, size_t cap)
{
    const char *nul = memchr(s, '\0', cap);
    assert_non_null(nul);
    size_t n = (size_t)(nul - s);
    for (size_t i = 0; i < n; i++)
        assert_true(s[i] >= 0x20 && s[i] <= 0x7e);
}

static void test_long_and_binary(void **state)
{
    (void)state;
    keel_device_headers h;
    keel_device_info d;
    memset(&h, 0, sizeof(h));

    /* Very long version numbers and brand names are truncated to the field sizes. */
    char ua[512];
    memcpy(ua, "Mozilla/5.0 (Windows NT 10.0) Chrome/", 37);
    memset(ua + 37, '7', 200);
    h.user_agent = slice_dup(ua, 237);
    h.sec_ch_ua = slice("\"0123456789012345678901234567890123456789\";v=\"9\"");
    h.sec_ch_ua_platform = slice("\"A very long platform name that goes on and on\"");
    keel_device_parse(&h, &d);
    assert_string_equal("0123456789012345678901234567890", d.browser);
    assert_string_equal("9", d.browser_version);
    assert_string_equal("Windows", d.os); /* over-long platform hints are ignored */
    slice_free(h.user_agent);
    slice_free(h.sec_ch_ua);
    slice_free(h.sec_ch_ua_platform);

    memset(&h, 0, sizeof(h));
    h.user_agent = slice_dup(ua, 237);
    keel_device_parse(&h, &d);
    assert_string_equal("Chrome", d.browser);
    assert_string_equal("77777777777777777777777", d.browser_version);
    slice_free(h.user_agent);
    h.user_agent = KEEL_STR_NULL;

    /* A brand longer than the internal buffer is skipped, not truncated. */
    h.sec_ch_ua = slice("\"0123456789012345678901234567890123456789012345678901234567\";v=\"1\", "
                        "\"Opera\";v=\"2\"");
    keel_device_parse(&h, &d);
    assert_string_equal("Opera", d.browser);
    slice_free(h.sec_ch_ua);

    /* Tokens beyond the scan cap are not looked at. */
    size_t big = 5000;
    char *p = malloc(big);
    assert_non_null(p);
    memset(p, 'x', big);
    memcpy(p + big - 11, "Firefox/125", 11);
    h.sec_ch_ua = KEEL_STR_NULL;
    h.user_agent = (keel_str){p, big};
    keel_device_parse(&h, &d);
    assert_string_equal("", d.browser);
    free(p);

    /* Every byte value, in every header: output stays printable ASCII. */
    unsigned char bin[256 * 3];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)((i * 37u + 11u) & 0xff);
    for (size_t off = 0; off < 64; off++) {
        keel_str s = slice_dup((const char *)bin + off, sizeof(bin) - off);
        h.user_agent = s;
        h.sec_ch_ua = s;
        h.sec_ch_ua_platform = s;
        h.sec_ch_ua_mobile = s;
        h.sec_ch_ua_platform_version = s;
        h.x_app_version = s;
        keel_device_parse(&h, &d);
        assert_printable(d.os, sizeof(d.os));
        assert_printable(d.os_version, sizeof(d.os_version));
        assert_printable(d.browser, sizeof(d.browser));
        assert_printable(d.browser_version, sizeof(d.browser_version));
        assert_printable(d.app_version, sizeof(d.app_version));
        slice_free(s);
    }
}

static void test_fingerprint(void **state)
{
    (void)state;
    keel_device_headers h;
    keel_device_info d;
    char buf[64];
    memset(&h, 0, sizeof(h));
    h.user_agent = slice(UA_CHROME_MAC);
    keel_device_parse(&h, &d);
    slice_free(h.user_agent);
    assert_int_equal(24, keel_device_fingerprint(&d, buf, sizeof(buf)));
    assert_string_equal("desktop | macOS | Chrome", buf);

    /* snprintf semantics: truncated output, full length returned. */
    assert_int_equal(24, keel_device_fingerprint(&d, buf, 10));
    assert_string_equal("desktop |", buf);
    assert_int_equal(24, keel_device_fingerprint(&d, NULL, 0));

    memset(&d, 0, sizeof(d));
    assert_int_equal(27, keel_device_fingerprint(&d, buf, sizeof(buf)));
    assert_string_equal("unknown | unknown | unknown", buf);
    keel_device_fingerprint(NULL, buf, sizeof(buf));
    assert_string_equal("unknown | unknown | unknown", buf);

    d.type = KEEL_DEVICE_BOT;
    memcpy(d.browser, "curl", 5);
    keel_device_fingerprint(&d, buf, sizeof(buf));
    assert_string_equal("bot | unknown | curl", buf);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal("unknown", keel_device_type_name(KEEL_DEVICE_UNKNOWN));
    assert_string_equal("mobile", keel_device_type_name(KEEL_DEVICE_MOBILE));
    assert_string_equal("tablet", keel_device_type_name(KEEL_DEVICE_TABLET));
    assert_string_equal("desktop", keel_device_type_name(KEEL_DEVICE_DESKTOP));
    assert_string_equal("bot", keel_device_type_name(KEEL_DEVICE_BOT));
    assert_string_equal("unknown", keel_device_type_name((keel_device_type)99));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_agents),      cmocka_unit_test(test_client_hints),
        cmocka_unit_test(test_app_version),      cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_truncated_slices), cmocka_unit_test(test_long_and_binary),
        cmocka_unit_test(test_fingerprint),      cmocka_unit_test(test_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
