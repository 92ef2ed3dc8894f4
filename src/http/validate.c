/*
 * validate.c - strict JSON body parsing and pydantic-style schema validation.
 *
 * The parser is jansson with the strict flags plus a pre-scan (NUL bytes,
 * nesting depth) that gives precise positions.  The validator walks the schema,
 * not the data, so its recursion depth is bounded by the schema (and by
 * KEEL_VALIDATE_MAX_DEPTH for self-referencing schemas).  Error types and
 * messages follow pydantic v2 where pydantic has one.
 */
#include "keel_int.h"

#include <stdio.h>
#include <stdlib.h>

#include <keel/validate.h>

/* ------------------------------------------------------------ loc path -- */

/* A "loc" path as a chain of stack frames, materialised only when an error is reported. */
typedef struct vloc {
    const struct vloc *parent;
    const char *key; /* NULL for an array index */
    size_t key_len;
    size_t index;
} vloc;

typedef struct vctx {
    json_t *errors;
    const char *root;
    int invalid; /* at least one problem found (reported or not) */
    int full;    /* errors reached KEEL_VALIDATE_MAX_ERRORS */
} vctx;

static keel_err loc_append(json_t *arr, const vloc *at)
{
    if (at == NULL)
        return KEEL_OK;
    keel_err e = loc_append(arr, at->parent);
    if (e != KEEL_OK)
        return e;
    json_t *item =
        at->key != NULL ? json_stringn(at->key, at->key_len) : json_integer((json_int_t)at->index);
    if (item == NULL && at->key != NULL)
        item = json_string("?"); /* a key that is not UTF-8 (only in hand-built values) */
    if (item == NULL)
        return KEEL_ENOMEM;
    return json_array_append_new(arr, item) == 0 ? KEEL_OK : KEEL_ENOMEM;
}

/* Append {"loc": [...], "msg": msg, "type": type} unless the list is full.
 * Only KEEL_ENOMEM is an error: reporting never fails otherwise. */
static keel_err report(vctx *cx, const vloc *at, const char *type, const char *msg)
{
    cx->invalid = 1;
    if (cx->full || json_array_size(cx->errors) >= KEEL_VALIDATE_MAX_ERRORS) {
        cx->full = 1;
        return KEEL_OK;
    }
    json_t *loc = json_array();
    json_t *err = json_object();
    keel_err e = KEEL_ENOMEM;
    if (loc == NULL || err == NULL)
        goto fail;
    if (cx->root != NULL && json_array_append_new(loc, json_string(cx->root)) != 0)
        goto fail;
    e = loc_append(loc, at);
    if (e != KEEL_OK)
        goto fail;
    if (json_object_set_new(err, "loc", loc) != 0) {
        loc = NULL;
        goto oom;
    }
    loc = NULL;
    if (json_object_set_new(err, "msg", json_string(msg)) != 0 ||
        json_object_set_new(err, "type", json_string(type)) != 0)
        goto oom;
    if (json_array_append_new(cx->errors, err) != 0)
        return KEEL_ENOMEM; /* append_new released err */
    return KEEL_OK;
oom:
    e = KEEL_ENOMEM;
fail:
    json_decref(loc);
    json_decref(err);
    return e;
}

/* ------------------------------------------------------------- messages -- */

/* Shortest "%g" rendering of x that reads back as x; integers print without a point,
 * as pydantic prints "ge=1" as 1. */
static void fmt_num(double x, char *buf, size_t n)
{
    if (x >= -1e15 && x <= 1e15 && (double)(long long)x == x) {
        snprintf(buf, n, "%lld", (long long)x);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            return;
    }
}

/* Bounded string builder for messages; silently truncates. */
typedef struct sb {
    char buf[256];
    size_t len;
} sb;

static void sb_add(sb *s, const char *str)
{
    size_t n = strlen(str);
    size_t room = sizeof(s->buf) - 1 - s->len;
    if (n > room)
        n = room;
    memcpy(s->buf + s->len, str, n);
    s->len += n;
    s->buf[s->len] = '\0';
}

static keel_err report_bound(vctx *cx, const vloc *at, const char *type, const char *prefix,
                             double bound)
{
    char num[40];
    char msg[96];
    fmt_num(bound, num, sizeof(num));
    snprintf(msg, sizeof(msg), "%s%s", prefix, num);
    return report(cx, at, type, msg);
}

/* "<prefix> <limit> <unit>[s][ after validation, not <actual>]" (pydantic's wording). */
static keel_err report_count(vctx *cx, const vloc *at, const char *type, const char *prefix,
                             size_t limit, const char *unit, const size_t *actual)
{
    char msg[128];
    const char *plural = limit == 1 ? "" : "s";
    if (actual != NULL)
        snprintf(msg, sizeof(msg), "%s %zu %s%s after validation, not %zu", prefix, limit, unit,
                 plural, *actual);
    else
        snprintf(msg, sizeof(msg), "%s %zu %s%s", prefix, limit, unit, plural);
    return report(cx, at, type, msg);
}

static keel_err report_type(vctx *cx, const vloc *at, keel_schema_type t)
{
    switch (t) {
    case KEEL_SCHEMA_STRING:
        return report(cx, at, "string_type", "Input should be a valid string");
    case KEEL_SCHEMA_INT:
        return report(cx, at, "int_type", "Input should be a valid integer");
    case KEEL_SCHEMA_NUMBER:
        return report(cx, at, "float_type", "Input should be a valid number");
    case KEEL_SCHEMA_BOOL:
        return report(cx, at, "bool_type", "Input should be a valid boolean");
    case KEEL_SCHEMA_OBJECT:
        return report(cx, at, "dict_type", "Input should be a valid dictionary");
    case KEEL_SCHEMA_ARRAY:
        return report(cx, at, "list_type", "Input should be a valid list");
    case KEEL_SCHEMA_ANY:
    default:
        return report(cx, at, "null_not_allowed", "Input should not be null");
    }
}

/* -------------------------------------------------------------- formats -- */

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_xdigit(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_alnum(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int valid_domain(const char *s, size_t n)
{
    size_t labels = 0, i = 0;
    if (n == 0 || n > 253)
        return 0;
    while (i <= n) {
        size_t start = i;
        int all_digits = 1;
        while (i < n && s[i] != '.') {
            unsigned char c = (unsigned char)s[i];
            if (!is_alnum(c) && c != '-')
                return 0;
            if (!is_digit(c))
                all_digits = 0;
            i++;
        }
        size_t len = i - start;
        if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-')
            return 0;
        labels++;
        if (i == n) /* last label: the TLD must not be numeric */
            return labels >= 2 && !all_digits;
        i++;
    }
    return 0;
}

static int valid_email(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);
    if (n > 254 || at == NULL || memchr(at + 1, '@', n - (size_t)(at - s) - 1) != NULL)
        return 0;
    size_t local = (size_t)(at - s);
    if (local == 0 || local > 64 || s[0] == '.' || s[local - 1] == '.')
        return 0;
    for (size_t i = 0; i < local; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (s[i + 1] == '.')
                return 0;
        } else if (!is_alnum(c) && strchr("!#$%&'*+/=?^_`{|}~-", c) == NULL) {
            return 0;
        }
    }
    return valid_domain(at + 1, n - local - 1);
}

/* Exactly width digits at s; their value in *v. */
static int digits(const char *s, size_t width, int *v)
{
    int x = 0;
    for (size_t i = 0; i < width; i++) {
        if (!is_digit((unsigned char)s[i]))
            return 0;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 1;
}

/* RFC 3339 section 5.6 date-time: YYYY-MM-DD(T|t| )hh:mm:ss[.frac](Z|z|+hh:mm|-hh:mm). */
static int valid_date_time(const char *s, size_t n)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, se, oh, om;
    if (n < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &se))
        return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
        return 0;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 0;
    size_t i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < n && is_digit((unsigned char)s[i]))
            i++;
        if (i == start || i - start > 9)
            return 0;
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z'))
        return i + 1 == n;
    if (i + 6 != n || (s[i] != '+' && s[i] != '-') || !digits(s + i + 1, 2, &oh) ||
        s[i + 3] != ':' || !digits(s + i + 4, 2, &om))
        return 0;
    return oh <= 23 && om <= 59;
}

static int prefix_ieq(const char *s, size_t n, const char *p)
{
    size_t m = strlen(p);
    if (n < m)
        return 0;
    for (size_t i = 0; i < m; i++) {
        int c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != p[i])
            return 0;
    }
    return 1;
}

enum { URL_OK, URL_BAD, URL_SCHEME, URL_LONG };

static int check_url(const char *s, size_t n)
{
    size_t i;
    if (prefix_ieq(s, n, "https://"))
        i = 8;
    else if (prefix_ieq(s, n, "http://"))
        i = 7;
    else {
        /* Something that looks like scheme://: the wrong scheme, else not a URL at all. */
        size_t k = 0;
        while (k < n &&
               (is_alnum((unsigned char)s[k]) || s[k] == '+' || s[k] == '-' || s[k] == '.'))
            k++;
        return (k > 0 && k + 1 < n && s[k] == ':' && s[k + 1] == '/') ? URL_SCHEME : URL_BAD;
    }
    if (n > KEEL_VALIDATE_URL_MAX)
        return URL_LONG;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c <= 0x20 || c == 0x7f || c == '\\')
            return URL_BAD;
    }
    size_t end = i;
    while (end < n && s[end] != '/' && s[end] != '?' && s[end] != '#')
        end++;
    /* authority = [userinfo "@"] host [":" port] */
    size_t h = i;
    for (size_t k = i; k < end; k++)
        if (s[k] == '@')
            h = k + 1;
    size_t host_end;
    if (h < end && s[h] == '[') {
        host_end = h + 1;
        while (host_end < end &&
               (is_xdigit((unsigned char)s[host_end]) || s[host_end] == ':' || s[host_end] == '.'))
            host_end++;
        if (host_end >= end || s[host_end] != ']' || host_end == h + 1)
            return URL_BAD;
        host_end++;
    } else {
        host_end = h;
        while (host_end < end && (is_alnum((unsigned char)s[host_end]) || s[host_end] == '-' ||
                                  s[host_end] == '.' || s[host_end] == '_' || s[host_end] == '%'))
            host_end++;
        if (host_end == h)
            return URL_BAD;
    }
    if (host_end < end) {
        if (s[host_end] != ':')
            return URL_BAD;
        size_t p = host_end + 1, digits_n = end - p;
        unsigned long port = 0;
        if (digits_n == 0 || digits_n > 5)
            return URL_BAD;
        for (; p < end; p++) {
            if (!is_digit((unsigned char)s[p]))
                return URL_BAD;
            port = port * 10 + (unsigned long)(s[p] - '0');
        }
        if (port > 65535)
            return URL_BAD;
    }
    return URL_OK;
}

static keel_err check_format(vctx *cx, const vloc *at, keel_schema_format f, const char *s,
                             size_t n)
{
    switch (f) {
    case KEEL_SCHEMA_FMT_EMAIL:
        if (!valid_email(s, n))
            return report(cx, at, "value_error", "value is not a valid email address");
        break;
    case KEEL_SCHEMA_FMT_UUID:
        if (!keel_uuid_valid((keel_str){s, n}))
            return report(cx, at, "uuid_parsing", "Input should be a valid UUID");
        break;
    case KEEL_SCHEMA_FMT_CURRENCY:
        if (n != 3 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' || s[2] < 'A' ||
            s[2] > 'Z')
            return report(cx, at, "value_error", "Input should be a valid ISO 4217 currency code");
        break;
    case KEEL_SCHEMA_FMT_DATE_TIME:
        if (!valid_date_time(s, n))
            return report(cx, at, "datetime_parsing", "Input should be a valid datetime");
        break;
    case KEEL_SCHEMA_FMT_URL:
        switch (check_url(s, n)) {
        case URL_OK:
            break;
        case URL_SCHEME:
            return report(cx, at, "url_scheme", "URL scheme should be 'http' or 'https'");
        case URL_LONG:
            return report(cx, at, "url_too_long", "URL should have at most 2083 characters");
        default:
            return report(cx, at, "url_parsing", "Input should be a valid URL");
        }
        break;
    case KEEL_SCHEMA_FMT_NONE:
    default:
        break;
    }
    return KEEL_OK;
}

/* ------------------------------------------------------------ validator -- */

static keel_err validate_object(vctx *cx, const keel_schema *schema, const json_t *v,
                                const vloc *at, unsigned depth);

static size_t utf8_code_points(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            count++;
    return count;
}

static keel_err check_one_of(vctx *cx, const vloc *at, const char *const *one_of, const char *s,
                             size_t n)
{
    size_t count = 0;
    for (; one_of[count] != NULL; count++)
        if (strlen(one_of[count]) == n && memcmp(one_of[count], s, n) == 0)
            return KEEL_OK;
    /* pydantic: "Input should be 'a'", "'a' or 'b'", "'a', 'b' or 'c'". */
    sb msg = {{0}, 0};
    sb_add(&msg, "Input should be ");
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            sb_add(&msg, i + 1 == count ? " or " : ", ");
        sb_add(&msg, "'");
        sb_add(&msg, one_of[i]);
        sb_add(&msg, "'");
    }
    return report(cx, at, "literal_error", msg.buf);
}

static keel_err check_range(vctx *cx, const vloc *at, const keel_schema_field *f, double x)
{
    if (f->has_min && x < f->min)
        return report_bound(cx, at, "greater_than_equal",
                            "Input should be greater than or equal to ", f->min);
    if (f->has_max && x > f->max)
        return report_bound(cx, at, "less_than_equal", "Input should be less than or equal to ",
                            f->max);
    return KEEL_OK;
}

/* Check one non-null value of type t.  is_item: v is an item of the array field f, so the
 * length bounds (which belong to the array) are not applied to it. */
static keel_err check_value(vctx *cx, const keel_schema_field *f, keel_schema_type t,
                            const json_t *v, const vloc *at, unsigned depth, int is_item)
{
    keel_err e = KEEL_OK;
    switch (t) {
    case KEEL_SCHEMA_STRING: {
        if (!json_is_string(v))
            return report_type(cx, at, t);
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (!is_item) {
            size_t cp = (f->min_len > 0 || f->max_len > 0) ? utf8_code_points(s, n) : 0;
            if (f->min_len > 0 && cp < f->min_len)
                return report_count(cx, at, "string_too_short", "String should have at least",
                                    f->min_len, "character", NULL);
            if (f->max_len > 0 && cp > f->max_len)
                return report_count(cx, at, "string_too_long", "String should have at most",
                                    f->max_len, "character", NULL);
        }
        if (f->format != KEEL_SCHEMA_FMT_NONE) {
            e = check_format(cx, at, f->format, s, n);
            if (e != KEEL_OK)
                return e;
        }
        if (f->one_of != NULL)
            e = check_one_of(cx, at, f->one_of, s, n);
        return e;
    }
    case KEEL_SCHEMA_INT:
        if (!json_is_integer(v))
            return report_type(cx, at, t);
        return check_range(cx, at, f, (double)json_integer_value(v));
    case KEEL_SCHEMA_NUMBER:
        if (!json_is_number(v))
            return report_type(cx, at, t);
        return check_range(cx, at, f, json_number_value(v));
    case KEEL_SCHEMA_BOOL:
        if (!json_is_boolean(v))
            return report_type(cx, at, t);
        return KEEL_OK;
    case KEEL_SCHEMA_OBJECT:
        if (f->object != NULL)
            return validate_object(cx, f->object, v, at, depth + 1);
        if (!json_is_object(v))
            return report_type(cx, at, t);
        return KEEL_OK;
    case KEEL_SCHEMA_ARRAY: {
        if (!json_is_array(v))
            return report_type(cx, at, t);
        if (is_item)
            return KEEL_OK; /* nested arrays: the item spec describes the outer items only */
        size_t n = json_array_size(v);
        if (f->min_len > 0 && n < f->min_len)
            return report_count(cx, at, "too_short", "List should have at least", f->min_len,
                                "item", &n);
        if (f->max_len > 0 && n > f->max_len)
            return report_count(cx, at, "too_long", "List should have at most", f->max_len, "item",
                                &n);
        keel_schema_type it =
            f->items != 0 ? f->items : (f->object != NULL ? KEEL_SCHEMA_OBJECT : KEEL_SCHEMA_ANY);
        if (it == KEEL_SCHEMA_ANY)
            return KEEL_OK;
        for (size_t i = 0; i < n && !cx->full; i++) {
            vloc child = {at, NULL, 0, i};
            const json_t *item = json_array_get(v, i);
            e = json_is_null(item) ? report_type(cx, &child, it)
                                   : check_value(cx, f, it, item, &child, depth + 1, 1);
            if (e != KEEL_OK)
                return e;
        }
        return KEEL_OK;
    }
    case KEEL_SCHEMA_ANY:
        return KEEL_OK;
    default:
        return report(cx, at, "schema_error", "Field has an unknown type in the schema");
    }
}

static keel_err validate_field(vctx *cx, const keel_schema_field *f, const json_t *v,
                               const vloc *at, unsigned depth)
{
    if (json_is_null(v))
        return (f->flags & KEEL_SCHEMA_NULLABLE) ? KEEL_OK : report_type(cx, at, f->type);
    return check_value(cx, f, f->type, v, at, depth, 0);
}

static int schema_has(const keel_schema *schema, const char *key, size_t key_len)
{
    for (size_t i = 0; i < schema->nfields; i++) {
        const char *name = schema->fields[i].name;
        if (name != NULL && strlen(name) == key_len && memcmp(name, key, key_len) == 0)
            return 1;
    }
    return 0;
}

static keel_err validate_object(vctx *cx, const keel_schema *schema, const json_t *v,
                                const vloc *at, unsigned depth)
{
    keel_err e;
    if (!json_is_object(v))
        return report_type(cx, at, KEEL_SCHEMA_OBJECT);
    if (depth > KEEL_VALIDATE_MAX_DEPTH)
        return report(cx, at, "recursion_loop", "Recursion error - input nested too deeply");
    for (size_t i = 0; i < schema->nfields && !cx->full; i++) {
        const keel_schema_field *f = &schema->fields[i];
        if (f->name == NULL)
            continue;
        vloc child = {at, f->name, strlen(f->name), 0};
        const json_t *fv = json_object_get(v, f->name);
        if (fv == NULL)
            e = (f->flags & KEEL_SCHEMA_REQUIRED) ? report(cx, &child, "missing", "Field required")
                                                  : KEEL_OK;
        else
            e = validate_field(cx, f, fv, &child, depth);
        if (e != KEEL_OK)
            return e;
    }
    if (schema->allow_unknown)
        return KEEL_OK;
    /* jansson iterates object members in insertion (document) order. */
    for (void *it = json_object_iter((json_t *)(uintptr_t)v); it != NULL && !cx->full;
         it = json_object_iter_next((json_t *)(uintptr_t)v, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        if (schema_has(schema, key, key_len))
            continue;
        vloc child = {at, key, key_len, 0};
        e = report(cx, &child, "extra_forbidden", "Extra inputs are not permitted");
        if (e != KEEL_OK)
            return e;
    }
    return KEEL_OK;
}

keel_err keel_validate_json(const json_t *value, const keel_schema *schema, const char *loc_root,
                            json_t *errors)
{
    if (value == NULL || schema == NULL || errors == NULL || !json_is_array(errors) ||
        (schema->nfields > 0 && schema->fields == NULL))
        return KEEL_EINVAL;
    vctx cx = {errors, loc_root, 0, 0};
    keel_err e = validate_object(&cx, schema, value, NULL, 0);
    if (e != KEEL_OK)
        return e;
    return cx.invalid ? KEEL_EINVAL : KEEL_OK;
}

/* --------------------------------------------------------------- parser -- */

/* Line and column (1-based, in bytes) of byte offset off. */
static void line_col(const char *body, size_t off, size_t *line, size_t *col)
{
    size_t l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (body[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

typedef enum { PARSE_OK, PARSE_BAD, PARSE_NOT_OBJECT } parse_kind;

static keel_err parse_object(const char *body, size_t len, json_t **out, keel_diag *diag,
                             parse_kind *kind)
{
    size_t line, col;
    *kind = PARSE_BAD;
    if (len == 0)
        return keel_diag_set(diag, KEEL_EPARSE, 0, "invalid JSON at line 1 column 1: empty body");

    /* Pre-scan: NUL bytes and nesting depth, with exact positions.  Brackets inside
     * strings do not count; a malformed document is left for jansson to describe. */
    unsigned depth = 0;
    int in_str = 0, esc = 0;
    for (size_t i = 0; i < len; i++) {
        char c = body[i];
        if (c == '\0') {
            line_col(body, i, &line, &col);
            return keel_diag_set(diag, KEEL_EPARSE, i,
                                 "invalid JSON at line %zu column %zu: NUL byte", line, col);
        }
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > KEEL_VALIDATE_MAX_NESTING) {
                line_col(body, i, &line, &col);
                return keel_diag_set(diag, KEEL_EPARSE, i,
                                     "invalid JSON at line %zu column %zu: nesting deeper than "
                                     "%u levels",
                                     line, col, (unsigned)KEEL_VALIDATE_MAX_NESTING);
            }
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }

    json_error_t jerr;
    memset(&jerr, 0, sizeof(jerr));
    /* JSON_DECODE_ANY so that a scalar top level gets the same "must be an object" answer
     * as an array; no JSON_ALLOW_NUL ("\u0000" is rejected); no JSON_DISABLE_EOF_CHECK
     * (trailing garbage is rejected).  jansson itself rejects invalid UTF-8 (including
     * encoded surrogates) and lone surrogate escapes. */
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (v == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory while parsing JSON");
        /* jansson appends " near '<token>'": drop it, it may quote a secret. */
        char *near = strstr(jerr.text, " near ");
        if (near != NULL)
            *near = '\0';
        const char *why = jerr.text;
        if (strncmp(why, "\\u0000 is not allowed", 21) == 0)
            why = "escaped NUL (\\u0000) is not allowed";
        size_t pos = jerr.position > 0 ? (size_t)jerr.position : 0;
        if (pos > len)
            pos = len;
        return keel_diag_set(diag, KEEL_EPARSE, pos, "invalid JSON at line %d column %d: %s",
                             jerr.line, jerr.column, why);
    }
    if (!json_is_object(v)) {
        json_decref(v);
        *kind = PARSE_NOT_OBJECT;
        return keel_diag_set(diag, KEEL_EPARSE, 0,
                             "invalid JSON at line 1 column 1: top-level value must be an object");
    }
    *kind = PARSE_OK;
    *out = v;
    return KEEL_OK;
}

keel_err keel_validate_parse_object(const char *body, size_t len, json_t **out, keel_diag *diag)
{
    parse_kind kind;
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "out is NULL");
    *out = NULL;
    if (body == NULL && len > 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "body is NULL");
    return parse_object(body, len, out, diag, &kind);
}

keel_err keel_validate_body(const char *body, size_t len, const keel_schema *schema,
                            const char *loc_root, json_t **out, json_t *errors, keel_diag *diag)
{
    json_t *v = NULL;
    parse_kind kind;
    keel_diag local;
    if (out != NULL)
        *out = NULL;
    if (schema == NULL || errors == NULL || !json_is_array(errors) || (body == NULL && len > 0))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid argument");
    if (diag == NULL)
        diag = &local;
    keel_err e = parse_object(body, len, &v, diag, &kind);
    if (e == KEEL_EPARSE) {
        vctx cx = {errors, loc_root, 0, 0};
        if (kind == PARSE_NOT_OBJECT) {
            e = report_type(&cx, NULL, KEEL_SCHEMA_OBJECT);
        } else {
            /* FastAPI: {"type": "json_invalid", "loc": ["body", pos], "msg": "JSON decode
             * error", "ctx": {"error": "..."}}; the reason is the text after "...: ". */
            const char *why = strstr(diag->msg, ": ");
            vloc pos = {NULL, NULL, 0, diag->offset};
            e = report(&cx, &pos, "json_invalid", "JSON decode error");
            size_t n = json_array_size(errors);
            json_t *last = n > 0 ? json_array_get(errors, n - 1) : NULL;
            if (e == KEEL_OK && !cx.full && last != NULL &&
                json_object_set_new(
                    last, "ctx", json_pack("{s:s}", "error", why != NULL ? why + 2 : diag->msg)) !=
                    0)
                e = KEEL_ENOMEM;
        }
        return e == KEEL_OK ? KEEL_EPARSE : e;
    }
    if (e != KEEL_OK)
        return e;
    e = keel_validate_json(v, schema, loc_root, errors);
    if (e == KEEL_OK && out != NULL)
        *out = v;
    else
        json_decref(v);
    return e;
}
