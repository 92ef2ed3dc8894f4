/*
 * device.c - device / OS / browser detection from User-Agent and Client Hints.
 *
 * Everything here works on borrowed, untrusted slices: each read is checked
 * against the slice end, nothing is allocated, and only printable ASCII from
 * fixed tables, version digits, or validated structured-field strings (RFC 8941
 * sf-string: 0x20..0x7E) is copied into the fixed-size result.
 */
#include "keel_int.h"

#include <stdio.h>

#include <keel/device.h>

/* Only the first KEEL_DEVICE_UA_SCAN_MAX bytes of a User-Agent are examined: real
 * ones are a few hundred bytes, and the cap bounds the work on hostile headers. */
#define KEEL_DEVICE_UA_SCAN_MAX 4096u
/* Client-hint brand names longer than this are truncated (and then match nothing). */
#define BRAND_MAX 48u

/* ------------------------------------------------------------ helpers -- */

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Position of needle in [p, end), or NULL.  icase compares ASCII letters without case. */
static const char *find_in(const char *p, const char *end, const char *needle, int icase)
{
    size_t m = strlen(needle);
    if (p == NULL || m == 0 || (size_t)(end - p) < m)
        return NULL;
    const char *last = end - m;
    for (; p <= last; p++) {
        size_t i = 0;
        if (icase) {
            while (i < m && lower((unsigned char)p[i]) == lower((unsigned char)needle[i]))
                i++;
        } else {
            while (i < m && p[i] == needle[i])
                i++;
        }
        if (i == m)
            return p;
    }
    return NULL;
}

/* Bounded copy of a NUL-terminated (trusted, static) string. */
static void set_str(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (len >= n)
        len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Copy a version number starting at p: digits and dots (and '_' turned into '.', for
 * "10_15_7"), keeping at most max_dots dots, stopping at the first other byte or at the
 * end of the slice.  A trailing dot is dropped.  Empty unless it starts with a digit. */
static void copy_version(const char *p, const char *end, char *dst, size_t n, int max_dots)
{
    size_t len = 0;
    int dots = 0;
    dst[0] = '\0';
    if (p == NULL || p >= end || !is_digit((unsigned char)*p))
        return;
    for (; p < end && len + 1 < n; p++) {
        char c = *p;
        if (c == '_')
            c = '.';
        if (c == '.') {
            if (dots == max_dots)
                break;
            dots++;
        } else if (!is_digit((unsigned char)c)) {
            break;
        }
        dst[len++] = c;
    }
    while (len > 0 && dst[len - 1] == '.')
        len--;
    dst[len] = '\0';
}

/* Leading decimal integer at [p, end) (saturating); *next is set past it. */
static unsigned read_uint(const char *p, const char *end, const char **next)
{
    unsigned v = 0;
    while (p < end && is_digit((unsigned char)*p)) {
        if (v < 100000u)
            v = v * 10u + (unsigned)(*p - '0');
        p++;
    }
    *next = p;
    return v;
}

static int str_ieq_c(const char *a, size_t alen, const char *b)
{
    size_t m = strlen(b);
    if (alen != m)
        return 0;
    for (size_t i = 0; i < m; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

/* -------------------------------------- RFC 8941 structured fields -- */

/* A cursor over one header value.  Parsers return 1 on success, 0 on malformed input
 * (the caller then ignores the whole field, as RFC 8941 section 4.2 requires). */
typedef struct sf_cur {
    const char *p;
    const char *end;
} sf_cur;

enum { SF_NONE, SF_STRING, SF_TOKEN, SF_NUMBER, SF_BOOL, SF_BYTES };

typedef struct sf_item {
    int kind;
    int boolean;     /* SF_BOOL */
    char *str;       /* SF_STRING destination (may be NULL: skip) */
    size_t str_size; /* capacity of str including NUL */
    size_t str_len;  /* untruncated length of the string */
} sf_item;

static void sf_skip_sp(sf_cur *c)
{
    while (c->p < c->end && *c->p == ' ')
        c->p++;
}

static void sf_skip_ows(sf_cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static int sf_is_tchar(int ch)
{
    return is_alpha(ch) || is_digit(ch) || (ch != 0 && strchr("!#$%&'*+-.^_`|~:/", ch) != NULL);
}

static int sf_is_b64(int ch)
{
    return is_alpha(ch) || is_digit(ch) || ch == '+' || ch == '/' || ch == '=';
}

static int sf_parse_string(sf_cur *c, sf_item *it)
{
    size_t len = 0;
    c->p++; /* opening quote */
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '\\') {
            if (c->p >= c->end)
                return 0;
            ch = (unsigned char)*c->p++;
            if (ch != '"' && ch != '\\')
                return 0;
        } else if (ch == '"') {
            if (it->str != NULL)
                it->str[KEEL_MIN(len, it->str_size - 1)] = '\0';
            it->str_len = len;
            it->kind = SF_STRING;
            return 1;
        } else if (ch < 0x20 || ch > 0x7e) {
            return 0;
        }
        if (it->str != NULL && len + 1 < it->str_size)
            it->str[len] = (char)ch;
        len++;
    }
    return 0; /* unterminated */
}

static int sf_parse_number(sf_cur *c, sf_item *it)
{
    int digits = 0, frac = -1;
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (c->p >= c->end || !is_digit((unsigned char)*c->p))
        return 0;
    while (c->p < c->end) {
        char ch = *c->p;
        if (is_digit((unsigned char)ch)) {
            if (frac >= 0)
                frac++;
            else
                digits++;
        } else if (ch == '.' && frac < 0) {
            if (digits > 12)
                return 0;
            frac = 0;
        } else {
            break;
        }
        c->p++;
    }
    if (frac < 0 ? digits > 15 : (frac < 1 || frac > 3))
        return 0;
    it->kind = SF_NUMBER;
    return 1;
}

static int sf_parse_bare_item(sf_cur *c, sf_item *it)
{
    if (c->p >= c->end)
        return 0;
    unsigned char ch = (unsigned char)*c->p;
    if (ch == '"')
        return sf_parse_string(c, it);
    if (ch == '-' || is_digit(ch))
        return sf_parse_number(c, it);
    if (ch == '?') {
        if (c->end - c->p < 2 || (c->p[1] != '0' && c->p[1] != '1'))
            return 0;
        it->kind = SF_BOOL;
        it->boolean = c->p[1] == '1';
        c->p += 2;
        return 1;
    }
    if (ch == ':') {
        c->p++;
        while (c->p < c->end && sf_is_b64((unsigned char)*c->p))
            c->p++;
        if (c->p >= c->end || *c->p != ':')
            return 0;
        c->p++;
        it->kind = SF_BYTES;
        return 1;
    }
    if (is_alpha(ch) || ch == '*') {
        c->p++;
        while (c->p < c->end && sf_is_tchar((unsigned char)*c->p))
            c->p++;
        it->kind = SF_TOKEN;
        return 1;
    }
    return 0;
}

/* Parameters after an item.  When v is not NULL, the string value of a "v" parameter is
 * copied into it (Sec-CH-UA brand versions). */
static int sf_parse_params(sf_cur *c, char *v, size_t vsize)
{
    while (c->p < c->end && *c->p == ';') {
        c->p++;
        sf_skip_sp(c);
        const char *key = c->p;
        if (c->p >= c->end || !((*c->p >= 'a' && *c->p <= 'z') || *c->p == '*'))
            return 0;
        while (c->p < c->end && ((*c->p >= 'a' && *c->p <= 'z') || is_digit((unsigned char)*c->p) ||
                                 *c->p == '_' || *c->p == '-' || *c->p == '.' || *c->p == '*'))
            c->p++;
        size_t klen = (size_t)(c->p - key);
        if (c->p < c->end && *c->p == '=') {
            c->p++;
            int want = v != NULL && klen == 1 && key[0] == 'v';
            sf_item it = {SF_NONE, 0, want ? v : NULL, vsize, 0};
            if (!sf_parse_bare_item(c, &it))
                return 0;
            if (want && it.kind != SF_STRING)
                v[0] = '\0';
        }
    }
    return 1;
}

/* A single item (with optional parameters) filling the whole field. */
static int sf_parse_item_field(keel_str field, sf_item *it)
{
    sf_cur c = {field.ptr, field.ptr + field.len};
    if (field.ptr == NULL)
        return 0;
    sf_skip_sp(&c);
    if (!sf_parse_bare_item(&c, it) || !sf_parse_params(&c, NULL, 0))
        return 0;
    sf_skip_sp(&c);
    return c.p == c.end;
}

/* ------------------------------------------------ Sec-CH-UA brands -- */

static int brand_is_grease(const char *b)
{
    size_t n = strlen(b);
    return find_in(b, b + n, "not", 1) != NULL && find_in(b, b + n, "brand", 1) != NULL;
}

typedef struct brand {
    char name[BRAND_MAX];
    char version[24];
    int set;
} brand;

/* Parse the Sec-CH-UA list and pick the meaningful brand: the first one that is neither
 * GREASE nor "Chromium", else "Chromium".  Returns 0 when the field is malformed or holds
 * nothing useful. */
static int parse_brands(keel_str field, brand *out)
{
    brand best = {{0}, {0}, 0}, chromium = {{0}, {0}, 0};
    sf_cur c = {field.ptr, field.ptr + field.len};
    if (field.ptr == NULL || field.len == 0)
        return 0;
    sf_skip_sp(&c);
    while (c.p < c.end) {
        char name[BRAND_MAX];
        char ver[24];
        sf_item it = {SF_NONE, 0, name, sizeof(name), 0};
        name[0] = '\0';
        ver[0] = '\0';
        if (*c.p == '(') { /* inner list: valid syntax, never a brand */
            c.p++;
            for (;;) {
                sf_skip_sp(&c);
                if (c.p < c.end && *c.p == ')') {
                    c.p++;
                    break;
                }
                sf_item inner = {SF_NONE, 0, NULL, 0, 0};
                if (!sf_parse_bare_item(&c, &inner) || !sf_parse_params(&c, NULL, 0))
                    return 0;
                if (c.p >= c.end || (*c.p != ' ' && *c.p != ')'))
                    return 0;
            }
            if (!sf_parse_params(&c, NULL, 0))
                return 0;
        } else {
            if (!sf_parse_bare_item(&c, &it) || !sf_parse_params(&c, ver, sizeof(ver)))
                return 0;
            if (it.kind == SF_STRING && it.str_len > 0 && it.str_len < sizeof(name) &&
                !brand_is_grease(name)) {
                brand *slot = strcmp(name, "Chromium") == 0 ? &chromium : &best;
                if (!slot->set) {
                    set_str(slot->name, sizeof(slot->name), name);
                    copy_version(ver, ver + strlen(ver), slot->version, sizeof(slot->version), 1);
                    slot->set = 1;
                }
            }
        }
        sf_skip_ows(&c);
        if (c.p >= c.end)
            break;
        if (*c.p != ',')
            return 0;
        c.p++;
        sf_skip_ows(&c);
        if (c.p >= c.end)
            return 0; /* trailing comma */
    }
    if (best.set)
        *out = best;
    else if (chromium.set)
        *out = chromium;
    else
        return 0;
    return 1;
}

static const char *brand_display_name(const char *b)
{
    static const struct {
        const char *brand, *name;
    } map[] = {
        {"Google Chrome", "Chrome"}, {"Microsoft Edge", "Edge"},
        {"Opera", "Opera"},          {"Brave", "Brave"},
        {"Chromium", "Chromium"},    {"Samsung Internet", "Samsung Internet"},
    };
    for (size_t i = 0; i < KEEL_ARRAY_LEN(map); i++)
        if (str_ieq_c(b, strlen(b), map[i].brand))
            return map[i].name;
    return b;
}

/* ------------------------------------------------- Client Hints OS -- */

/* Sec-CH-UA-Platform into os (empty when absent, malformed or "Unknown"). */
static void parse_ch_platform(keel_str field, char *os, size_t n)
{
    char val[40];
    sf_item it = {SF_NONE, 0, val, sizeof(val), 0};
    os[0] = '\0';
    if (!sf_parse_item_field(field, &it) || it.kind != SF_STRING || it.str_len == 0 ||
        it.str_len >= sizeof(val))
        return;
    static const struct {
        const char *hint, *name;
    } map[] = {
        {"Windows", "Windows"},   {"macOS", "macOS"},        {"Mac OS X", "macOS"},
        {"iOS", "iOS"},           {"iPadOS", "iPadOS"},      {"Android", "Android"},
        {"Linux", "Linux"},       {"Chrome OS", "ChromeOS"}, {"Chromium OS", "ChromeOS"},
        {"ChromeOS", "ChromeOS"}, {"Fuchsia", "Fuchsia"},
    };
    if (str_ieq_c(val, it.str_len, "Unknown"))
        return;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(map); i++) {
        if (str_ieq_c(val, it.str_len, map[i].hint)) {
            set_str(os, n, map[i].name);
            return;
        }
    }
    set_str(os, n, val);
}

/* Sec-CH-UA-Platform-Version for the given OS.  Windows reports an API level that maps
 * to marketing names (Microsoft: >= 13 is Windows 11, 1..12 is Windows 10, 0.1/0.2/0.3
 * are 7/8/8.1). */
static void parse_ch_platform_version(keel_str field, const char *os, char *dst, size_t n)
{
    char val[32];
    sf_item it = {SF_NONE, 0, val, sizeof(val), 0};
    dst[0] = '\0';
    if (!sf_parse_item_field(field, &it) || it.kind != SF_STRING || it.str_len == 0 ||
        it.str_len >= sizeof(val))
        return;
    if (strcmp(os, "Windows") == 0) {
        const char *end = val + it.str_len, *q;
        unsigned major = read_uint(val, end, &q);
        if (q == val)
            return;
        unsigned minor = 0;
        if (q < end && *q == '.')
            minor = read_uint(q + 1, end, &q);
        if (major >= 13)
            set_str(dst, n, "11");
        else if (major >= 1)
            set_str(dst, n, "10");
        else if (minor == 1)
            set_str(dst, n, "7");
        else if (minor == 2)
            set_str(dst, n, "8");
        else if (minor == 3)
            set_str(dst, n, "8.1");
        return;
    }
    copy_version(val, val + it.str_len, dst, n, 8);
}

/* ------------------------------------------------------- User-Agent -- */

typedef struct ua_tool {
    const char *needle; /* case-insensitive; a trailing '/' means a version follows */
    const char *name;
} ua_tool;

/* Named bots and HTTP tools: checked first, their product name becomes the browser. */
static const ua_tool ua_tools[] = {
    {"googlebot/", "Googlebot"},
    {"bingbot/", "Bingbot"},
    {"duckduckbot/", "DuckDuckBot"},
    {"yandexbot/", "YandexBot"},
    {"baiduspider/", "Baiduspider"},
    {"applebot/", "Applebot"},
    {"twitterbot/", "Twitterbot"},
    {"facebookexternalhit/", "facebookexternalhit"},
    {"slackbot", "Slackbot"},
    {"headlesschrome/", "HeadlessChrome"},
    {"curl/", "curl"},
    {"wget/", "Wget"},
    {"python-requests/", "python-requests"},
    {"python-urllib/", "Python-urllib"},
    {"python-httpx/", "python-httpx"},
    {"aiohttp/", "aiohttp"},
    {"go-http-client/", "Go-http-client"},
    {"okhttp/", "okhttp"},
    {"apache-httpclient/", "Apache-HttpClient"},
    {"java/", "Java"},
    {"libwww-perl/", "libwww-perl"},
    {"postmanruntime/", "PostmanRuntime"},
    {"axios/", "axios"},
    {"node-fetch/", "node-fetch"},
    {"httpie/", "HTTPie"},
};

/* Generic bot markers (case-insensitive substrings). */
static const char *const ua_bot_words[] = {"bot",   "crawler", "spider",
                                           "crawl", "slurp",   "headless"};

typedef struct ua_browser {
    const char *needle; /* case-sensitive token followed by the version */
    const char *name;
} ua_browser;

/* Order matters: Chromium-based browsers also say "Chrome/", and everything says "Safari/". */
static const ua_browser ua_browsers[] = {
    {"Edg/", "Edge"},
    {"EdgA/", "Edge"},
    {"EdgiOS/", "Edge"},
    {"Edge/", "Edge"},
    {"OPR/", "Opera"},
    {"OPiOS/", "Opera"},
    {"SamsungBrowser/", "Samsung Internet"},
    {"YaBrowser/", "Yandex"},
    {"Vivaldi/", "Vivaldi"},
    {"Firefox/", "Firefox"},
    {"FxiOS/", "Firefox"},
    {"Chrome/", "Chrome"},
    {"CriOS/", "Chrome"},
};

static void ua_browser_detect(const char *ua, const char *end, keel_device_info *d)
{
    const char *p;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(ua_browsers); i++) {
        p = find_in(ua, end, ua_browsers[i].needle, 0);
        if (p != NULL) {
            set_str(d->browser, sizeof(d->browser), ua_browsers[i].name);
            p += strlen(ua_browsers[i].needle);
            copy_version(p, end, d->browser_version, sizeof(d->browser_version), 1);
            return;
        }
    }
    if (find_in(ua, end, "Safari/", 0) != NULL && (p = find_in(ua, end, "Version/", 0)) != NULL) {
        set_str(d->browser, sizeof(d->browser), "Safari");
        copy_version(p + 8, end, d->browser_version, sizeof(d->browser_version), 1);
        return;
    }
    if ((p = find_in(ua, end, "Trident/", 0)) != NULL && (p = find_in(p, end, "rv:", 0)) != NULL) {
        set_str(d->browser, sizeof(d->browser), "Internet Explorer");
        copy_version(p + 3, end, d->browser_version, sizeof(d->browser_version), 1);
        return;
    }
    if ((p = find_in(ua, end, "MSIE ", 0)) != NULL) {
        set_str(d->browser, sizeof(d->browser), "Internet Explorer");
        copy_version(p + 5, end, d->browser_version, sizeof(d->browser_version), 1);
    }
}

static void windows_nt_version(const char *p, const char *end, char *dst, size_t n)
{
    const char *q;
    dst[0] = '\0';
    if (p >= end || !is_digit((unsigned char)*p))
        return;
    unsigned major = read_uint(p, end, &q), minor = 0;
    if (q < end && *q == '.')
        minor = read_uint(q + 1, end, &q);
    if (major == 10 && minor == 0)
        set_str(dst, n, "10");
    else if (major == 6 && minor == 3)
        set_str(dst, n, "8.1");
    else if (major == 6 && minor == 2)
        set_str(dst, n, "8");
    else if (major == 6 && minor == 1)
        set_str(dst, n, "7");
    else if (major == 6 && minor == 0)
        set_str(dst, n, "Vista");
    else if (major == 5 && (minor == 1 || minor == 2))
        set_str(dst, n, "XP");
}

static void ua_os_detect(const char *ua, const char *end, keel_device_info *d)
{
    const char *p;
    size_t vn = sizeof(d->os_version);
    if ((p = find_in(ua, end, "Windows NT ", 0)) != NULL) {
        set_str(d->os, sizeof(d->os), "Windows");
        windows_nt_version(p + 11, end, d->os_version, vn);
    } else if (find_in(ua, end, "iPad", 0) != NULL) {
        set_str(d->os, sizeof(d->os), "iPadOS");
        if ((p = find_in(ua, end, "CPU OS ", 0)) != NULL)
            copy_version(p + 7, end, d->os_version, vn, 8);
    } else if (find_in(ua, end, "iPhone", 0) != NULL || find_in(ua, end, "iPod", 0) != NULL) {
        set_str(d->os, sizeof(d->os), "iOS");
        if ((p = find_in(ua, end, "iPhone OS ", 0)) != NULL)
            copy_version(p + 10, end, d->os_version, vn, 8);
        else if ((p = find_in(ua, end, "CPU OS ", 0)) != NULL)
            copy_version(p + 7, end, d->os_version, vn, 8);
    } else if ((p = find_in(ua, end, "Android", 0)) != NULL) {
        set_str(d->os, sizeof(d->os), "Android");
        p += 7;
        if (p < end && (*p == ' ' || *p == '/'))
            p++;
        copy_version(p, end, d->os_version, vn, 8);
    } else if ((p = find_in(ua, end, "CrOS ", 0)) != NULL) {
        set_str(d->os, sizeof(d->os), "ChromeOS");
        p += 5;
        while (p < end && *p != ' ' && *p != ')' && *p != ';') /* architecture */
            p++;
        if (p < end && *p == ' ')
            copy_version(p + 1, end, d->os_version, vn, 8);
    } else if ((p = find_in(ua, end, "Mac OS X", 0)) != NULL) {
        set_str(d->os, sizeof(d->os), "macOS");
        if (p + 8 < end && p[8] == ' ')
            copy_version(p + 9, end, d->os_version, vn, 8);
    } else if (find_in(ua, end, "Macintosh", 0) != NULL) {
        set_str(d->os, sizeof(d->os), "macOS");
    } else if (find_in(ua, end, "Linux", 0) != NULL) {
        set_str(d->os, sizeof(d->os), "Linux");
    } else if (find_in(ua, end, "Windows", 0) != NULL) {
        set_str(d->os, sizeof(d->os), "Windows");
    }
}

/* Classify a User-Agent, filling os/browser fields of d.  Returns the device type. */
static keel_device_type ua_detect(keel_str ua_s, keel_device_info *d)
{
    if (ua_s.ptr == NULL || ua_s.len == 0)
        return KEEL_DEVICE_UNKNOWN;
    const char *ua = ua_s.ptr;
    const char *end = ua + KEEL_MIN(ua_s.len, (size_t)KEEL_DEVICE_UA_SCAN_MAX);
    int bot = 0;

    ua_os_detect(ua, end, d);
    for (size_t i = 0; i < KEEL_ARRAY_LEN(ua_tools) && !bot; i++) {
        const char *p = find_in(ua, end, ua_tools[i].needle, 1);
        if (p != NULL) {
            size_t nl = strlen(ua_tools[i].needle);
            set_str(d->browser, sizeof(d->browser), ua_tools[i].name);
            if (ua_tools[i].needle[nl - 1] == '/')
                copy_version(p + nl, end, d->browser_version, sizeof(d->browser_version), 1);
            bot = 1;
        }
    }
    for (size_t i = 0; i < KEEL_ARRAY_LEN(ua_bot_words) && !bot; i++)
        bot = find_in(ua, end, ua_bot_words[i], 1) != NULL;
    if (bot) {
        if (d->browser[0] == '\0')
            ua_browser_detect(ua, end, d);
        return KEEL_DEVICE_BOT;
    }

    ua_browser_detect(ua, end, d);
    if (find_in(ua, end, "iPad", 0) != NULL || find_in(ua, end, "Tablet", 1) != NULL ||
        find_in(ua, end, "Kindle", 0) != NULL || find_in(ua, end, "Silk/", 0) != NULL)
        return KEEL_DEVICE_TABLET;
    if (find_in(ua, end, "iPhone", 0) != NULL || find_in(ua, end, "iPod", 0) != NULL)
        return KEEL_DEVICE_MOBILE;
    if (strcmp(d->os, "Android") == 0)
        return find_in(ua, end, "Mobile", 0) != NULL ? KEEL_DEVICE_MOBILE : KEEL_DEVICE_TABLET;
    if (find_in(ua, end, "Mobi", 0) != NULL)
        return KEEL_DEVICE_MOBILE;
    return d->os[0] != '\0' ? KEEL_DEVICE_DESKTOP : KEEL_DEVICE_UNKNOWN;
}

/* X-App-Version: the leading [0-9A-Za-z.+_-] run after optional whitespace. */
static void parse_app_version(keel_str v, char *dst, size_t n)
{
    size_t i = 0, len = 0;
    dst[0] = '\0';
    if (v.ptr == NULL)
        return;
    while (i < v.len && (v.ptr[i] == ' ' || v.ptr[i] == '\t'))
        i++;
    for (; i < v.len && len + 1 < n; i++) {
        char c = v.ptr[i];
        if (!(is_alpha((unsigned char)c) || is_digit((unsigned char)c) || c == '.' || c == '+' ||
              c == '_' || c == '-'))
            break;
        dst[len++] = c;
    }
    dst[len] = '\0';
}

/* ---------------------------------------------------------- public -- */

void keel_device_parse(const keel_device_headers *h, keel_device_info *out)
{
    memset(out, 0, sizeof(*out));
    out->type = KEEL_DEVICE_UNKNOWN;
    if (h == NULL)
        return;

    keel_device_info ua;
    memset(&ua, 0, sizeof(ua));
    keel_device_type ua_type = ua_detect(h->user_agent, &ua);

    /* OS: the platform hint wins; the UA version is kept only when both agree. */
    char ch_os[sizeof(out->os)];
    parse_ch_platform(h->sec_ch_ua_platform, ch_os, sizeof(ch_os));
    if (ch_os[0] != '\0') {
        set_str(out->os, sizeof(out->os), ch_os);
        parse_ch_platform_version(h->sec_ch_ua_platform_version, ch_os, out->os_version,
                                  sizeof(out->os_version));
        if (out->os_version[0] == '\0' && strcmp(ch_os, ua.os) == 0)
            set_str(out->os_version, sizeof(out->os_version), ua.os_version);
    } else {
        set_str(out->os, sizeof(out->os), ua.os);
        set_str(out->os_version, sizeof(out->os_version), ua.os_version);
    }

    /* Browser: a meaningful Sec-CH-UA brand wins over the UA, except for bots and tools. */
    brand b;
    if (ua_type != KEEL_DEVICE_BOT && parse_brands(h->sec_ch_ua, &b)) {
        set_str(out->browser, sizeof(out->browser), brand_display_name(b.name));
        set_str(out->browser_version, sizeof(out->browser_version), b.version);
    } else {
        set_str(out->browser, sizeof(out->browser), ua.browser);
        set_str(out->browser_version, sizeof(out->browser_version), ua.browser_version);
    }

    /* Type: bots stay bots; Sec-CH-UA-Mobile decides mobile vs not; a "not mobile" device
     * is a tablet when the UA or the platform says so, a desktop otherwise. */
    sf_item mob = {SF_NONE, 0, NULL, 0, 0};
    if (ua_type == KEEL_DEVICE_BOT) {
        out->type = KEEL_DEVICE_BOT;
    } else if (sf_parse_item_field(h->sec_ch_ua_mobile, &mob) && mob.kind == SF_BOOL) {
        if (mob.boolean)
            out->type = KEEL_DEVICE_MOBILE;
        else if (ua_type == KEEL_DEVICE_TABLET || strcmp(out->os, "Android") == 0 ||
                 strcmp(out->os, "iPadOS") == 0)
            out->type = KEEL_DEVICE_TABLET;
        else
            out->type = KEEL_DEVICE_DESKTOP;
    } else if (ua_type != KEEL_DEVICE_UNKNOWN) {
        out->type = ua_type;
    } else if (strcmp(out->os, "Windows") == 0 || strcmp(out->os, "macOS") == 0 ||
               strcmp(out->os, "Linux") == 0 || strcmp(out->os, "ChromeOS") == 0) {
        out->type = KEEL_DEVICE_DESKTOP;
    }

    parse_app_version(h->x_app_version, out->app_version, sizeof(out->app_version));
}

const char *keel_device_type_name(keel_device_type t)
{
    switch (t) {
    case KEEL_DEVICE_MOBILE:
        return "mobile";
    case KEEL_DEVICE_TABLET:
        return "tablet";
    case KEEL_DEVICE_DESKTOP:
        return "desktop";
    case KEEL_DEVICE_BOT:
        return "bot";
    case KEEL_DEVICE_UNKNOWN:
    default:
        return "unknown";
    }
}

size_t keel_device_fingerprint(const keel_device_info *d, char *out, size_t n)
{
    const char *type = "unknown", *os = "unknown", *browser = "unknown";
    if (d != NULL) {
        type = keel_device_type_name(d->type);
        if (d->os[0] != '\0')
            os = d->os;
        if (d->browser[0] != '\0')
            browser = d->browser;
    }
    /* The parts are bounded (< 32 bytes each), so the length always fits an int. */
    int len = snprintf(n > 0 ? out : NULL, n, "%s | %.31s | %.31s", type, os, browser);
    return len > 0 ? (size_t)len : 0;
}
