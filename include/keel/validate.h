/*
 * keel/validate.h - strict JSON request-body parsing and schema validation.
 *
 * Module contract: this is keel's equivalent of a pydantic model with
 * extra="forbid" behind a FastAPI route.  A schema is a static, caller-owned
 * table of fields (usually `static const`), so declaring one allocates nothing.
 * keel_validate_parse_object() turns a body into a jansson object, strictly:
 * the top level must be an object, duplicate keys, NUL bytes, invalid UTF-8,
 * lone surrogate escapes and trailing garbage are rejected, and nesting is
 * capped.  keel_validate_json() then reports EVERY problem (up to
 * KEEL_VALIDATE_MAX_ERRORS) as FastAPI/pydantic v2 style error objects:
 *
 *     {"loc": ["body", "items", 0, "qty"],
 *      "msg": "Input should be greater than or equal to 1",
 *      "type": "greater_than_equal"}
 *
 * Error objects never echo the offending input value (pydantic's "input"
 * member is left out on purpose: bodies carry passwords and card data).
 *
 * Thread-safety: schemas are read-only and may be shared by any number of
 * threads; every function here is reentrant.  Memory: json_t values come from
 * jansson's allocator (see json_set_alloc_funcs()).
 */
#ifndef KEEL_VALIDATE_H
#define KEEL_VALIDATE_H

#include <jansson.h>
#include <keel/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** At most this many error objects are appended to an errors array (counting the ones
 *  already in it), so a hostile body cannot produce a huge 422 response. */
#define KEEL_VALIDATE_MAX_ERRORS 100u
/** Deepest nesting of objects/arrays keel_validate_parse_object() accepts.  (jansson has
 *  its own, much larger, limit: JSON_PARSER_MAX_DEPTH, 2048 by default.) */
#define KEEL_VALIDATE_MAX_NESTING 64u
/** Deepest schema recursion keel_validate_json() follows (self-referencing schemas). */
#define KEEL_VALIDATE_MAX_DEPTH 32u
/** Longest URL accepted by KEEL_SCHEMA_FMT_URL (pydantic HttpUrl's limit). */
#define KEEL_VALIDATE_URL_MAX 2083u

/** Value types.  Append only. */
typedef enum keel_schema_type {
    KEEL_SCHEMA_STRING = 1,
    KEEL_SCHEMA_INT,    /* a JSON integer: 1.0 and true are not integers */
    KEEL_SCHEMA_NUMBER, /* a JSON integer or real; not a boolean */
    KEEL_SCHEMA_BOOL,
    KEEL_SCHEMA_OBJECT,
    KEEL_SCHEMA_ARRAY,
    KEEL_SCHEMA_ANY
} keel_schema_type;

/** String formats.  Append only. */
typedef enum keel_schema_format {
    KEEL_SCHEMA_FMT_NONE = 0,
    KEEL_SCHEMA_FMT_EMAIL,     /* ASCII addr-spec: local@domain.tld (no quoted local parts) */
    KEEL_SCHEMA_FMT_UUID,      /* 8-4-4-4-12 hex, any version */
    KEEL_SCHEMA_FMT_CURRENCY,  /* ISO 4217 shape: exactly 3 upper-case ASCII letters */
    KEEL_SCHEMA_FMT_DATE_TIME, /* RFC 3339 date-time with an offset ("Z" or +hh:mm) */
    KEEL_SCHEMA_FMT_URL        /* absolute http:// or https:// URL with a host */
} keel_schema_format;

/** Field flags. */
#define KEEL_SCHEMA_REQUIRED 1u /* absent -> "missing" */
#define KEEL_SCHEMA_NULLABLE 2u /* JSON null is accepted */

typedef struct keel_schema keel_schema;

/** One field of an object schema.  Zero means "no constraint" for every member, so
 *  designated initializers only name what they need:
 *
 *      { .name = "qty", .type = KEEL_SCHEMA_INT, .flags = KEEL_SCHEMA_REQUIRED,
 *        .has_min = 1, .min = 1 }
 *
 *  For KEEL_SCHEMA_ARRAY fields, min_len/max_len bound the number of items, and the
 *  item checks (items, object, has_min/has_max, format, one_of) apply to each item. */
typedef struct keel_schema_field {
    const char *name; /* member name (NUL-terminated) */
    keel_schema_type type;
    unsigned flags;       /* KEEL_SCHEMA_REQUIRED | KEEL_SCHEMA_NULLABLE */
    int has_min, has_max; /* numbers: inclusive range [min, max] */
    double min, max;
    size_t min_len;            /* strings: code points; arrays: items */
    size_t max_len;            /* 0 = unbounded */
    keel_schema_format format; /* strings (or string items) */
    const char *const *one_of; /* NULL-terminated list of allowed strings, or NULL */
    const keel_schema *object; /* object schema of an OBJECT field or of OBJECT items */
    keel_schema_type items;    /* item type of an ARRAY (0 = any, or OBJECT if object set) */
} keel_schema_field;

/** An object schema.  allow_unknown = 0 rejects members not listed ("extra_forbidden"). */
struct keel_schema {
    const keel_schema_field *fields;
    size_t nfields;
    int allow_unknown;
};

/** Validate value against schema and append one error object per problem to errors.
 *  Fields are checked in schema order, then unknown members in document order.
 *  @param value    the value to check (normally the object from keel_validate_parse_object()).
 *  @param schema   object schema for value.
 *  @param loc_root first element of every "loc" ("body", "query"...), or NULL for none.
 *  @param errors   a JSON array; error objects are appended until it holds
 *                  KEEL_VALIDATE_MAX_ERRORS entries, further problems are only counted.
 *  @return KEEL_OK if value is valid; KEEL_EINVAL if it is not (errors appended) or if an
 *          argument is NULL / errors is not an array (nothing appended); KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: borrows everything; new error objects are owned by
 *  errors.  Errors: see @return; on KEEL_ENOMEM errors may hold a partial list. */
KEEL_API KEEL_NODISCARD keel_err keel_validate_json(const json_t *value, const keel_schema *schema,
                                                    const char *loc_root, json_t *errors);

/** Strictly parse a request body that must be a JSON object.  The caller caps len (the
 *  server's body limit).  Rejected: empty input, NUL bytes, invalid UTF-8, escapes that
 *  decode to U+0000 or to a lone surrogate, duplicate keys, trailing garbage, nesting deeper
 *  than KEEL_VALIDATE_MAX_NESTING, integers outside the int64 range, and any top-level
 *  value other than an object.
 *  @param body bytes (need not be NUL-terminated); may be NULL only when len is 0.
 *  @param out  receives a new reference on success (caller releases it with json_decref()),
 *              NULL on failure.
 *  @param diag optional; on KEEL_EPARSE msg reads "invalid JSON at line L column C: <why>"
 *              and offset is the byte offset of the problem.  The message never quotes the
 *              input.
 *  @return KEEL_OK, KEEL_EPARSE, KEEL_EINVAL (NULL arguments), KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: borrows body. */
KEEL_API KEEL_NODISCARD keel_err keel_validate_parse_object(const char *body, size_t len,
                                                            json_t **out, keel_diag *diag);

/** Parse then validate a body, the way a route handler wants it: on a parse failure a single
 *  FastAPI-style error is appended ({"loc": [loc_root, <byte offset>], "msg": "JSON decode
 *  error", "type": "json_invalid", "ctx": {"error": "<why>"}}), or for a valid JSON value
 *  that is not an object, {"loc": [loc_root], "msg": "Input should be a valid dictionary",
 *  "type": "dict_type"}.
 *  @param out optional; receives the parsed object on KEEL_OK (caller json_decref()s it).
 *  @return KEEL_OK; KEEL_EPARSE (not JSON / not an object); KEEL_EINVAL (schema errors, or
 *          bad arguments); KEEL_ENOMEM.
 *  Thread-safety: any thread.  Ownership: as keel_validate_parse_object() and
 *  keel_validate_json(). */
KEEL_API KEEL_NODISCARD keel_err keel_validate_body(const char *body, size_t len,
                                                    const keel_schema *schema, const char *loc_root,
                                                    json_t **out, json_t *errors, keel_diag *diag);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_VALIDATE_H */
