/* outbox_bus.c - the outbox relay's publish function for keel's event bus: each relayed row
 * becomes an event of the row's type with the row's payload, and the row's id travels in the
 * event's metadata as "dedup_id" (stable across re-deliveries, so consumers can deduplicate
 * the at-least-once stream). */
#include "keel_int.h"

#include <keel/bus.h>
#include <keel/outbox.h>

keel_err keel_outbox_publish_to_bus(const char *type, const char *id, const json_t *payload,
                                    void *bus)
{
    if (bus == NULL || type == NULL || id == NULL)
        return KEEL_EINVAL;
    json_t *data = payload ? json_deep_copy(payload) : json_null();
    if (data == NULL)
        return KEEL_ENOMEM;
    keel_event *ev = NULL;
    keel_err e = keel_event_create(&ev, type, data);
    if (e != KEEL_OK)
        return e;
    if (json_object_set_new(keel_event_metadata(ev), "dedup_id", json_string(id)) != 0) {
        keel_event_destroy(ev);
        return KEEL_ENOMEM;
    }
    return keel_bus_publish_take(bus, ev);
}
