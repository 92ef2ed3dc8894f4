/* products.c - /api/v1/products: list (skip/limit), get, create, delete. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../repos/products.h"
#include "../routes.h"

#define LIST_MAX 100

/* Storage failures become problems: unavailable (503) or internal (500), never a dropped
 * connection; the engine's message goes to the log, not to the client. */
keel_err keeld_store_problem(keel_ctx *cx, keel_err e, const keel_diag *d)
{
    static keel_logger *log;
    if (log == NULL)
        log = keel_logger_get("app.db");
    KEEL_LOG_ERROR(log, "storage error on %s %s: %s (%s)", keel_req_method_name(cx),
                   keel_req_route(cx), keel_strerror(e), d && d->msg[0] ? d->msg : "-");
    if (e == KEEL_EBUSY || e == KEEL_ETIMEOUT || e == KEEL_EIO)
        return keel_resp_problem(cx, 503, NULL, "The database is unavailable; retry later.",
                                 NULL);
    return keel_resp_problem(cx, 500, NULL, "The server could not complete the request.", NULL);
}

static json_t *product_json(const product *p)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:I}", "id", p->id, "name", p->name, "price_minor",
                     (json_int_t)p->price_minor, "currency", p->currency, "created_at_ms",
                     (json_int_t)p->created_at_ms);
}

/* Parse an optional non-negative integer query argument; appends a 422 error on failure. */
static int64_t query_int(keel_ctx *cx, const char *name, int64_t def, int64_t min, int64_t max,
                         json_t *errors)
{
    const char *v = keel_req_query(cx, name);
    if (v == NULL)
        return def;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno != 0 || n < min || n > max) {
        json_array_append_new(
            errors, json_pack("{s:[s,s], s:s, s:s}", "loc", "query", name, "msg",
                              max == INT64_MAX ? "Input should be a non-negative integer"
                                               : "Input should be an integer between 1 and 100",
                              "type", "int_parsing"));
        return def;
    }
    return (int64_t)n;
}

static keel_err h_list(keel_ctx *cx, void *ud)
{
    keel_store *store = ud;
    json_t *errors = json_array();
    int64_t skip = query_int(cx, "skip", 0, 0, INT64_MAX, errors);
    int64_t limit = query_int(cx, "limit", 20, 1, LIST_MAX, errors);
    if (json_array_size(errors) > 0)
        return keel_resp_problem(cx, 422, "Validation Error", "Invalid query parameters.", errors);
    json_decref(errors);
    product *items = keel_arena_alloc(keel_ctx_arena(cx), sizeof(product) * LIST_MAX, 0);
    if (items == NULL)
        return KEEL_ENOMEM;
    keel_db *db;
    keel_diag d = {0};
    size_t n = 0;
    keel_err e = keel_db_acquire(store, &db, &d);
    if (e == KEEL_OK) {
        e = products_list(db, skip, limit, items, &n, &d);
        keel_db_release(db);
    }
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, product_json(&items[i]));
    json_t *meta = json_pack("{s:I, s:I, s:I}", "skip", (json_int_t)skip, "limit",
                             (json_int_t)limit, "count", (json_int_t)n);
    e = keel_resp_success(cx, 200, arr, meta);
    json_decref(meta);
    return e;
}

static keel_err h_get(keel_ctx *cx, void *ud)
{
    keel_store *store = ud;
    const char *id = keel_req_param(cx, "id");
    if (id == NULL || !keel_uuid_valid(keel_str_c(id)))
        return keel_resp_problem(cx, 404, NULL, "No product with this id.", NULL);
    product p;
    keel_db *db;
    keel_diag d = {0};
    keel_err e = keel_db_acquire(store, &db, &d);
    if (e == KEEL_OK) {
        e = products_get(db, id, &p, &d);
        keel_db_release(db);
    }
    if (e == KEEL_ENOTFOUND)
        return keel_resp_problem(cx, 404, NULL, "No product with this id.", NULL);
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    return keel_resp_success(cx, 200, product_json(&p), NULL);
}

static const keel_schema_field create_fields[] = {
    {.name = "name", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 1,
     .max_len = 200},
    {.name = "price_minor", .type = KEEL_SCHEMA_INT, .flags = KEEL_SCHEMA_REQUIRED, .has_min = 1,
     .min = 0, .has_max = 1, .max = 1e15},
    {.name = "currency", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED,
     .format = KEEL_SCHEMA_FMT_CURRENCY},
};
static const keel_schema create_schema = {create_fields,
                                          sizeof(create_fields) / sizeof(create_fields[0]), 0};

typedef struct create_job {
    product *p;
} create_job;

static keel_err create_tx(keel_db *db, void *ud)
{
    create_job *j = ud;
    return products_create(db, j->p, NULL);
}

static keel_err h_create(keel_ctx *cx, void *ud)
{
    keel_store *store = ud;
    json_t *body;
    if (keel_req_json(cx, &create_schema, &body) != KEEL_OK)
        return KEEL_OK; /* 4xx already set */
    product p;
    memset(&p, 0, sizeof(p));
    snprintf(p.name, sizeof(p.name), "%s", json_string_value(json_object_get(body, "name")));
    p.price_minor = (int64_t)json_integer_value(json_object_get(body, "price_minor"));
    snprintf(p.currency, sizeof(p.currency), "%s",
             json_string_value(json_object_get(body, "currency")));
    json_decref(body);
    create_job j = {&p};
    keel_diag d = {0};
    keel_err e = keel_store_tx(store, create_tx, &j, &d);
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    char loc[96];
    snprintf(loc, sizeof(loc), "/api/v1/products/%s", p.id);
    if ((e = keel_resp_header(cx, "Location", loc)) != KEEL_OK)
        return e;
    return keel_resp_success(cx, 201, product_json(&p), NULL);
}

static keel_err h_delete(keel_ctx *cx, void *ud)
{
    keel_store *store = ud;
    const char *id = keel_req_param(cx, "id");
    if (id == NULL || !keel_uuid_valid(keel_str_c(id)))
        return keel_resp_problem(cx, 404, NULL, "No product with this id.", NULL);
    keel_db *db;
    keel_diag d = {0};
    keel_err e = keel_db_acquire(store, &db, &d);
    if (e == KEEL_OK) {
        e = products_delete(db, id, &d);
        keel_db_release(db);
    }
    if (e == KEEL_ENOTFOUND)
        return keel_resp_problem(cx, 404, NULL, "No product with this id.", NULL);
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    keel_resp_status(cx, 204);
    return KEEL_OK;
}

keel_err keeld_products_routes(keel_router *r, keel_store *store, keel_diag *diag)
{
    keel_err e;
    if ((e = keel_router_add(r, KEEL_METHOD_GET, "/api/v1/products", h_list, store, 0, diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_POST, "/api/v1/products", h_create, store, 0,
                             diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/api/v1/products/{id}", h_get, store, 0,
                             diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_DELETE, "/api/v1/products/{id}", h_delete, store, 0,
                             diag)))
        return e;
    return KEEL_OK;
}
