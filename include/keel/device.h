/*
 * keel/device.h - device, OS and browser detection from request headers.
 *
 * Module contract: keel_device_parse() turns the User-Agent and the User-Agent
 * Client Hints (Sec-CH-UA, Sec-CH-UA-Mobile, Sec-CH-UA-Platform,
 * Sec-CH-UA-Platform-Version) plus an optional X-App-Version header into a
 * small fixed-size value (keel_device_info), in the spirit of the seed's
 * "Device Info" middleware and SessionDeviceInfo.  Client Hints win over the
 * User-Agent when they are present and well formed.
 *
 * Header values are untrusted: they may be arbitrarily long or binary garbage.
 * The parser never reads outside the given slices, never allocates, never
 * fails, and only ever copies printable ASCII into the result, truncating it to
 * the field sizes below.  Every function here is pure and callable from any
 * thread.
 */
#ifndef KEEL_DEVICE_H
#define KEEL_DEVICE_H

#include <keel/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Kind of client.  Numbering is stable: append only. */
typedef enum keel_device_type {
    KEEL_DEVICE_UNKNOWN = 0,
    KEEL_DEVICE_MOBILE,
    KEEL_DEVICE_TABLET,
    KEEL_DEVICE_DESKTOP,
    KEEL_DEVICE_BOT
} keel_device_type;

/** Detected device information.  Every string is NUL-terminated printable ASCII;
 *  an empty string means "unknown".  Browser versions are "major.minor" (or just
 *  "major" when that is all that is known); OS versions keep what the client sent
 *  ("10.15.7", "17.4", "14"), Windows versions are marketing names ("10", "11", "8.1"). */
typedef struct keel_device_info {
    keel_device_type type;
    char os[32]; /* "Windows", "macOS", "iOS", "iPadOS", "Android", "Linux", "ChromeOS" */
    char os_version[24];
    char browser[32]; /* "Chrome", "Edge", "Firefox", "Safari", "Opera", "Samsung Internet",
                         "curl"... */
    char browser_version[24];
    char app_version[24]; /* from X-App-Version: [0-9A-Za-z.+_-] prefix of the value */
} keel_device_info;

/** The request headers the parser looks at.  All slices are borrowed and may be
 *  empty ({NULL, 0}) when the header is absent. */
typedef struct keel_device_headers {
    keel_str user_agent;                 /* User-Agent */
    keel_str sec_ch_ua;                  /* Sec-CH-UA (structured-field list of brands) */
    keel_str sec_ch_ua_platform;         /* Sec-CH-UA-Platform (sf-string, e.g. "\"macOS\"") */
    keel_str sec_ch_ua_mobile;           /* Sec-CH-UA-Mobile (sf-boolean, "?1" or "?0") */
    keel_str sec_ch_ua_platform_version; /* Sec-CH-UA-Platform-Version (sf-string) */
    keel_str x_app_version;              /* X-App-Version (free text from our own apps) */
} keel_device_headers;

/** Parse the headers in h into *out (which is fully overwritten).
 *  Malformed Client Hints are ignored (the User-Agent is used instead), as RFC 8941
 *  asks for structured fields that fail to parse.
 *  @param h   headers; NULL is treated as "no headers" (type UNKNOWN, all strings empty).
 *  @param out result; must not be NULL.
 *  Thread-safety: any thread.  Ownership: borrows h for the duration of the call; copies
 *  what it keeps into *out.  Errors: none; never allocates. */
KEEL_API void keel_device_parse(const keel_device_headers *h, keel_device_info *out)
    KEEL_NONNULL(2);

/** Lower-case name of a device type: "mobile", "tablet", "desktop", "bot", or "unknown"
 *  (also for values outside the enum).
 *  Thread-safety: any thread.  Ownership: returns a static string.  Errors: none. */
KEEL_API const char *keel_device_type_name(keel_device_type t);

/** Write the session fingerprint "<type> | <os> | <browser>" (for example
 *  "desktop | macOS | Chrome"), with "unknown" standing for each missing part.
 *  Like snprintf: writes at most n bytes including the terminating NUL (nothing when n
 *  is 0; out may then be NULL) and returns the length the full string has.
 *  Thread-safety: any thread.  Ownership: borrows d.  Errors: none; d NULL gives
 *  "unknown | unknown | unknown". */
KEEL_API size_t keel_device_fingerprint(const keel_device_info *d, char *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_DEVICE_H */
