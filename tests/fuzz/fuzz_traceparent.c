/* Fuzz the W3C traceparent parser (untrusted: every request may carry one).  Any bytes give
 * KEEL_EPARSE or a valid context; a valid context formats as a version-00 header that parses
 * back to the identical context and formats identically again (round trip); a version-00
 * input formats back to itself; and the diag offset never points past the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/trace.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keel_str in = {(const char *)data, size};
    keel_span_context c, c2;
    keel_diag d;
    memset(&d, 0, sizeof d);
    keel_err e = keel_traceparent_parse(in, &c, &d);
    if (e != KEEL_OK) {
        if (e != KEEL_EPARSE || d.code != KEEL_EPARSE || d.offset > size)
            abort();
        return 0;
    }
    if (!keel_span_context_valid(&c) || c.remote != 1)
        abort();
    char out[KEEL_TRACEPARENT_SIZE], out2[KEEL_TRACEPARENT_SIZE];
    if (keel_traceparent_format(&c, out) != 55 || strlen(out) != 55)
        abort();
    for (size_t i = 0; i < 55; i++) {
        char ch = out[i];
        int dash = i == 2 || i == 35 || i == 52;
        if (dash ? ch != '-' : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            abort();
    }
    if (keel_traceparent_parse(keel_str_c(out), &c2, NULL) != KEEL_OK ||
        memcmp(&c, &c2, sizeof c) != 0)
        abort();
    if (keel_traceparent_format(&c2, out2) != 55 || memcmp(out, out2, sizeof out) != 0)
        abort();
    /* a version-00 header is canonical: formatting reproduces the (trimmed) input */
    size_t lead = 0, n = size;
    while (lead < n && (data[lead] == ' ' || data[lead] == '\t'))
        lead++;
    while (n > lead && (data[n - 1] == ' ' || data[n - 1] == '\t'))
        n--;
    if (data[lead] == '0' && data[lead + 1] == '0' &&
        (n - lead != 55 || memcmp(data + lead, out, 55) != 0))
        abort();
    /* a tracestate check on the same bytes must not crash either */
    (void)keel_tracestate_valid(in);
    return 0;
}
