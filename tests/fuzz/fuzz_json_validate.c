/* fuzz_json_validate.c - strict body parsing plus validation against a fixed nested
 * schema (objects, arrays of objects, every format, literals, ranges, a self-referencing
 * field).  Checks the invariants: a parsed body is an object, the error list never
 * exceeds KEEL_VALIDATE_MAX_ERRORS, every error has loc/msg/type, and the result code
 * agrees with the list. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/validate.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const kinds[] = {"card", "bank", "wallet", NULL};

static const keel_schema_field item_fields[] = {
    {.name = "sku",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SCHEMA_REQUIRED,
     .min_len = 3,
     .max_len = 8},
    {.name = "qty",
     .type = KEEL_SCHEMA_INT,
     .flags = KEEL_SCHEMA_REQUIRED,
     .has_min = 1,
     .min = 1,
     .has_max = 1,
     .max = 100},
    {.name = "price", .type = KEEL_SCHEMA_NUMBER, .has_min = 1, .min = 0},
};
static const keel_schema item_schema = {item_fields, 3, 0};

static const keel_schema_field node_fields[1];
static const keel_schema node_schema = {node_fields, 1, 0};
static const keel_schema_field node_fields[1] = {
    {.name = "next", .type = KEEL_SCHEMA_OBJECT, .object = &node_schema},
};

static const keel_schema_field order_fields[] = {
    {.name = "email",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SCHEMA_REQUIRED,
     .format = KEEL_SCHEMA_FMT_EMAIL},
    {.name = "id", .type = KEEL_SCHEMA_STRING, .format = KEEL_SCHEMA_FMT_UUID},
    {.name = "currency", .type = KEEL_SCHEMA_STRING, .format = KEEL_SCHEMA_FMT_CURRENCY},
    {.name = "at", .type = KEEL_SCHEMA_STRING, .format = KEEL_SCHEMA_FMT_DATE_TIME},
    {.name = "url", .type = KEEL_SCHEMA_STRING, .format = KEEL_SCHEMA_FMT_URL},
    {.name = "kind", .type = KEEL_SCHEMA_STRING, .one_of = kinds},
    {.name = "note", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_NULLABLE, .max_len = 5},
    {.name = "gift", .type = KEEL_SCHEMA_BOOL},
    {.name = "items",
     .type = KEEL_SCHEMA_ARRAY,
     .min_len = 1,
     .max_len = 50,
     .object = &item_schema},
    {.name = "tags", .type = KEEL_SCHEMA_ARRAY, .items = KEEL_SCHEMA_STRING, .one_of = kinds},
    {.name = "nums",
     .type = KEEL_SCHEMA_ARRAY,
     .items = KEEL_SCHEMA_NUMBER,
     .has_max = 1,
     .max = 1e6},
    {.name = "node", .type = KEEL_SCHEMA_OBJECT, .object = &node_schema},
    {.name = "meta", .type = KEEL_SCHEMA_OBJECT},
    {.name = "any", .type = KEEL_SCHEMA_ANY, .flags = KEEL_SCHEMA_NULLABLE},
};
static const keel_schema order_schema = {order_fields,
                                         sizeof(order_fields) / sizeof(order_fields[0]), 0};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v = NULL;
    keel_diag d;
    keel_err rc = keel_validate_parse_object((const char *)data, size, &v, &d);
    if (rc != KEEL_OK) {
        if (v != NULL || (rc != KEEL_EPARSE && rc != KEEL_ENOMEM) || d.offset > size ||
            memchr(d.msg, '\0', sizeof(d.msg)) == NULL)
            abort();
    } else {
        if (!json_is_object(v))
            abort();
        json_t *errors = json_array();
        if (errors == NULL)
            abort();
        rc = keel_validate_json(v, &order_schema, "body", errors);
        size_t n = json_array_size(errors);
        if (n > KEEL_VALIDATE_MAX_ERRORS || (rc == KEEL_OK) != (n == 0) ||
            (rc != KEEL_OK && rc != KEEL_EINVAL))
            abort();
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(errors, i);
            if (!json_is_array(json_object_get(e, "loc")) ||
                !json_is_string(json_object_get(e, "msg")) ||
                !json_is_string(json_object_get(e, "type")))
                abort();
        }
        char *text = json_dumps(errors, JSON_COMPACT);
        free(text);
        json_decref(errors);
        json_decref(v);
    }
    /* The one-call variant must agree with the two-step one. */
    json_t *errors = json_array();
    json_t *out = NULL;
    keel_err rc2 =
        keel_validate_body((const char *)data, size, &order_schema, "body", &out, errors, NULL);
    if ((rc2 == KEEL_OK) != (out != NULL) || (rc2 == KEEL_OK && json_array_size(errors) != 0) ||
        (rc2 == KEEL_EPARSE && json_array_size(errors) != 1))
        abort();
    json_decref(out);
    json_decref(errors);
    return 0;
}
