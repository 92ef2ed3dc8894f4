/* fuzz_device.c - keel_device_parse() on arbitrary header values.
 *
 * Input layout: the bytes are split on '\n' into up to six header values, in
 * the order User-Agent, Sec-CH-UA, Sec-CH-UA-Platform, Sec-CH-UA-Mobile,
 * Sec-CH-UA-Platform-Version, X-App-Version.  Each value is copied into its own
 * exact-size heap block so ASan catches any read past a slice.  The result must
 * be NUL-terminated printable ASCII in every field. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/device.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *s, size_t cap)
{
    const char *nul = memchr(s, '\0', cap);
    if (nul == NULL)
        abort();
    for (const char *p = s; p < nul; p++)
        if (*p < 0x20 || *p > 0x7e)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keel_str parts[6];
    char *blocks[6];
    size_t start = 0;
    for (size_t i = 0; i < 6; i++) {
        size_t end = start;
        while (end < size && (i == 5 || data[end] != '\n'))
            end++;
        size_t len = start < size ? end - start : 0;
        blocks[i] = malloc(len > 0 ? len : 1);
        if (blocks[i] == NULL)
            abort();
        if (len > 0)
            memcpy(blocks[i], data + start, len);
        parts[i] = (keel_str){blocks[i], len};
        start = end < size ? end + 1 : size;
    }
    keel_device_headers h = {parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]};
    keel_device_info d;
    keel_device_parse(&h, &d);
    check_field(d.os, sizeof(d.os));
    check_field(d.os_version, sizeof(d.os_version));
    check_field(d.browser, sizeof(d.browser));
    check_field(d.browser_version, sizeof(d.browser_version));
    check_field(d.app_version, sizeof(d.app_version));
    if ((unsigned)d.type > (unsigned)KEEL_DEVICE_BOT)
        abort();
    char fp[128];
    size_t n = keel_device_fingerprint(&d, fp, sizeof(fp));
    if (n >= sizeof(fp) || strlen(fp) != n)
        abort();
    for (size_t i = 0; i < 6; i++)
        free(blocks[i]);
    return 0;
}
