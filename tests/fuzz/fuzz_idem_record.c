/* fuzz_idem_record.c - the idempotency record as stored in Redis (a value another process,
 * or anyone with access to Redis, may have written).  Invariants: decode never crashes and
 * answers KEEL_OK, KEEL_EPARSE or KEEL_ENOMEM; a decoded record re-encodes to a value that
 * decodes to the same record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keel_int.h"

#include <keel/idempotency.h>

#include "pay/idem_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = malloc(size ? size : 1);
    if (v == NULL)
        return 0;
    memcpy(v, data, size);
    keel_idem_record rec;
    keel_err e = keel__idem_redis_decode(v, size, &rec, NULL);
    if (e != KEEL_OK && e != KEEL_EPARSE && e != KEEL_ENOMEM)
        abort();
    if (e == KEEL_OK) {
        char *again = keel__idem_redis_encode(&rec);
        if (again != NULL) {
            keel_idem_record back;
            if (keel__idem_redis_decode(again, strlen(again), &back, NULL) != KEEL_OK)
                abort();
            if (back.state != rec.state || back.error != rec.error ||
                back.created_ms != rec.created_ms || back.expires_ms != rec.expires_ms ||
                strcmp(back.owner, rec.owner) != 0 ||
                memcmp(back.payload_hash, rec.payload_hash, 32) != 0 ||
                back.result_len != rec.result_len ||
                (rec.result_len && memcmp(back.result, rec.result, rec.result_len) != 0))
                abort();
            keel_idem_record_clear(&back);
            keel_free(again);
        }
        keel_idem_record_clear(&rec);
    }
    free(v);
    return 0;
}
