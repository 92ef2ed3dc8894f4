/* fuzz_s3_list.c - the ListObjectsV2 response parser (the body comes from a server keel does
 * not control).  Invariants: only the documented codes; on success every object has a key
 * and the counts are consistent; on error the list is empty; nothing leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/s3.h>

#include "client/client_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *xml = malloc(size ? size : 1);
    if (xml == NULL)
        return 0;
    memcpy(xml, data, size);
    keel_s3_list l;
    keel_err e = keel__s3_parse_list(xml, size, &l);
    if (e != KEEL_OK && e != KEEL_EPARSE && e != KEEL_ENOMEM)
        abort();
    if (e != KEEL_OK && (l.count != 0 || l.objects != NULL || l.next_token != NULL))
        abort();
    if (e == KEEL_OK) {
        if (l.count > 0 && l.objects == NULL)
            abort();
        for (size_t i = 0; i < l.count; i++)
            if (l.objects[i].key == NULL)
                abort();
    }
    keel_s3_list_cleanup(&l);
    free(xml);
    return 0;
}
