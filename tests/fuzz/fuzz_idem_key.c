/* fuzz_idem_key.c - the Idempotency-Key header value (untrusted) and the payload hash.
 *
 * Invariants: the parser accepts exactly 1..255 printable non-space ASCII characters,
 * optionally inside one pair of double quotes; an accepted key is a slice of the input; a
 * rejection carries a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/idempotency.h>
#include <keel/keel.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *raw = malloc(size ? size : 1);
    if (raw == NULL)
        return 0;
    memcpy(raw, data, size);
    keel_str k;
    keel_diag d;
    memset(&d, 0, sizeof(d));
    keel_err e = keel_idem_key_parse((keel_str){raw, size}, &k, &d);
    /* Reference: the same rule written plainly. */
    size_t off = 0, len = size;
    if (len >= 2 && raw[0] == '"' && raw[len - 1] == '"') {
        off = 1;
        len -= 2;
    }
    int ok = len >= 1 && len <= KEEL_IDEM_KEY_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = raw[off + i] >= 0x21 && raw[off + i] <= 0x7e;
    if (ok != (e == KEEL_OK))
        abort();
    if (e == KEEL_OK && (k.ptr != raw + off || k.len != len))
        abort();
    if (e != KEEL_OK && (e != KEEL_EINVAL || d.msg[0] == '\0'))
        abort();
    uint8_t h[32];
    if (keel_idem_hash((keel_str){raw, size}, h) != KEEL_OK)
        abort();
    free(raw);
    return 0;
}
