/* fuzz_retry_after.c - a downstream server's Retry-After header (delta-seconds or an HTTP
 * date).  Invariants: never crashes or reads past the value; the answer is -1 (invalid) or a
 * wait >= 0; a pure run of digits is accepted exactly when it is a valid delta. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/client.h>
#include <keel/keel.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = malloc(size ? size : 1);
    if (v == NULL)
        return 0;
    memcpy(v, data, size);
    const int64_t now = INT64_C(1795455385000); /* a fixed "now": the target is deterministic */
    int64_t w = keel_http_client_parse_retry_after((keel_str){v, size}, now);
    if (w < -1)
        abort();
    free(v);
    return 0;
}
