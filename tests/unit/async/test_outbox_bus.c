/* The transactional outbox relayed to the event bus (src/async/outbox_bus.c): events written
 * in the same transaction as a business row reach the bus's subscribers after commit, never
 * after a rollback, with the row id as metadata.dedup_id - also on a re-delivery. */
#define _GNU_SOURCE 1
#include "test.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <keel/bus.h>
#include <keel/keel.h>
#include <keel/outbox.h>

typedef struct seen {
    int n;
    char types[8][32];
    char dedup[8][64];
    long amounts[8];
} seen;

static keel_err on_event(const keel_event *ev, void *ud)
{
    seen *s = ud;
    if (s->n < 8) {
        snprintf(s->types[s->n], sizeof(s->types[0]), "%s", keel_event_type(ev));
        const char *d = json_string_value(json_object_get(keel_event_metadata(ev), "dedup_id"));
        snprintf(s->dedup[s->n], sizeof(s->dedup[0]), "%s", d ? d : "");
        s->amounts[s->n] = (long)json_integer_value(json_object_get(keel_event_data(ev), "amount"));
    }
    s->n++;
    return KEEL_OK;
}

static void place_order(keel_store *st, long amount, int commit, char id[KEEL_UUID_SIZE])
{
    keel_db *db;
    ASSERT_OK(keel_db_acquire(st, &db, NULL));
    ASSERT_OK(keel_db_begin(db));
    ASSERT_OK(keel_db_exec(db, "INSERT INTO orders DEFAULT VALUES", NULL));
    json_t *p = json_pack("{s:i}", "amount", (int)amount);
    ASSERT_OK(keel_outbox_add(db, "order.created", p, id, NULL));
    json_decref(p);
    if (commit)
        ASSERT_OK(keel_db_commit(db));
    else
        ASSERT_OK(keel_db_rollback(db));
    keel_db_release(db);
}

static void test_relay_to_bus(void **state)
{
    (void)state;
    char path[512], url[600];
    snprintf(path, sizeof(path), "%s/outbox_bus_%ld.db", KEEL_TEST_TMP, (long)getpid());
    unlink(path);
    snprintf(url, sizeof(url), "sqlite:%s", path);
    keel_store_config sc;
    keel_store_config_default(&sc);
    sc.url = url;
    keel_store *st;
    ASSERT_OK(keel_store_open(&st, &sc, NULL));
    ASSERT_OK(keel_outbox_migrate(st, NULL));
    keel_db *db;
    ASSERT_OK(keel_db_acquire(st, &db, NULL));
    ASSERT_OK(keel_db_exec(db, "CREATE TABLE orders (id INTEGER PRIMARY KEY)", NULL));
    keel_db_release(db);

    keel_bus_config bc;
    keel_bus_config_default(&bc);
    keel_bus *bus;
    ASSERT_OK(keel_bus_create(&bus, &bc, NULL));
    seen s;
    memset(&s, 0, sizeof(s));
    uint64_t sub;
    ASSERT_OK(keel_bus_subscribe(bus, "order.created", on_event, &s, &sub));

    keel_outbox_relay_config rc;
    keel_outbox_relay_config_default(&rc);
    rc.store = st;
    rc.publish = keel_outbox_publish_to_bus;
    rc.ud = bus;
    keel_outbox_relay *relay;
    ASSERT_OK(keel_outbox_relay_create(&relay, &rc, NULL));

    char id1[KEEL_UUID_SIZE], id2[KEEL_UUID_SIZE], id3[KEEL_UUID_SIZE];
    place_order(st, 100, 1, id1);
    place_order(st, 200, 0, id2); /* rolled back: no event */
    place_order(st, 300, 1, id3);
    assert_int_equal(0, s.n);     /* nothing is published before the relay runs */
    size_t published = 0;
    ASSERT_OK(keel_outbox_relay_run_once(relay, &published, NULL));
    assert_int_equal(2, published);
    assert_int_equal(2, s.n);
    assert_string_equal("order.created", s.types[0]);
    assert_int_equal(100, s.amounts[0]);
    assert_string_equal(id1, s.dedup[0]);
    assert_int_equal(300, s.amounts[1]);
    assert_string_equal(id3, s.dedup[1]);
    ASSERT_OK(keel_outbox_relay_run_once(relay, &published, NULL));
    assert_int_equal(0, published); /* each row once */
    assert_int_equal(2, s.n);
    int64_t pending = -1;
    ASSERT_OK(keel_outbox_pending(st, &pending, NULL));
    assert_int_equal(0, pending);

    keel_outbox_relay_destroy(relay);
    keel_bus_destroy(bus);
    keel_store_close(st);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_to_bus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
