/* Tests for src/obs/trace.c (W3C traceparent, spans, sampling, the current-span stack and the
 * JSON log record of ended spans) and src/obs/trace_mw.c (the HTTP layer, through a real
 * keel server). */
#define _GNU_SOURCE 1 /* mkdtemp */
#include "test.h"

#include <curl/curl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "keel_int.h"

#include <keel/trace.h>

#include "obs/trace_int.h"

#define TP_VALID "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TID_HEX "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID_HEX "00f067aa0ba902b7"

/* ------------------------------------------------------------ helpers -- */

static char g_dir[64];

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                rm_rf(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/keel_trace_XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keel_trace_stop();
    keel_log_stop();
    rm_rf(g_dir);
    return 0;
}

/* Spans of tests that do not read the log stay out of stderr. */
static void quiet(void)
{
    keel_trace_config c;
    keel_trace_config_default(&c);
    c.log_spans = 0;
    ASSERT_OK(keel_trace_start(&c, NULL));
}

static void start_log(void)
{
    keel_log_config c;
    keel_log_config_default(&c);
    c.dir = g_dir;
    c.console = KEEL_LOG_CONSOLE_OFF;
    c.level = KEEL_LOG_LEVEL_DEBUG;
    ASSERT_OK(keel_log_start(&c));
}

/* Every "keel.trace" record of app.json (after stopping the logger), as a JSON array. */
static json_t *trace_records(void)
{
    ASSERT_OK(keel_log_flush(10000));
    keel_log_stop();
    char p[256];
    snprintf(p, sizeof p, "%s/app.json", g_dir);
    FILE *f = fopen(p, "rb");
    json_t *arr = json_array();
    if (f == NULL)
        return arr;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t err;
        json_t *o = json_loadb(line, (size_t)n, 0, &err);
        if (o == NULL)
            fail_msg("bad JSON line: %s: %s", err.text, line);
        json_t *lg = json_object_get(o, "logger");
        if (json_is_string(lg) && strcmp(json_string_value(lg), "keel.trace") == 0)
            json_array_append(arr, o);
        json_decref(o);
    }
    free(line);
    fclose(f);
    return arr;
}

/* The record whose message (the span name) is name; fails the test when absent. */
static json_t *record_named(json_t *arr, const char *name)
{
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        json_t *m = json_object_get(o, "message");
        if (json_is_string(m) && strcmp(json_string_value(m), name) == 0)
            return o;
    }
    fail_msg("no trace record named %s", name);
    return NULL;
}

static const char *xstr(json_t *rec, const char *key)
{
    json_t *v = json_object_get(json_object_get(rec, "extra"), key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_t *xget(json_t *rec, const char *key)
{
    return json_object_get(json_object_get(rec, "extra"), key);
}

static void hex_of(const uint8_t *p, size_t n, char *out)
{
    keel__hex_encode(p, n, out);
}

/* ------------------------------------------------------- traceparent -- */

static void expect_valid(const char *s, const char *tid, const char *pid, uint8_t flags)
{
    keel_span_context c;
    keel_diag d;
    memset(&c, 0xAA, sizeof c);
    keel_err e = keel_traceparent_parse(keel_str_c(s), &c, &d);
    if (e != KEEL_OK)
        fail_msg("expected valid: '%s' (%s)", s, d.msg);
    char t[33], p[17];
    keel_trace_id_hex(&c, t);
    keel_span_id_hex(&c, p);
    assert_string_equal(tid, t);
    assert_string_equal(pid, p);
    assert_int_equal(flags, c.flags);
    assert_int_equal(1, c.remote);
}

static void expect_invalid(const char *s)
{
    keel_span_context c;
    memset(&c, 0x55, sizeof c);
    keel_span_context before = c;
    keel_err e = keel_traceparent_parse(keel_str_c(s), &c, NULL);
    if (e != KEEL_EPARSE)
        fail_msg("expected KEEL_EPARSE for '%s', got %d", s, e);
    assert_memory_equal(&before, &c, sizeof c); /* untouched on failure */
}

static void test_traceparent_valid(void **state)
{
    (void)state;
    expect_valid(TP_VALID, TID_HEX, PID_HEX, 0x01);
    expect_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", TID_HEX, PID_HEX,
                 0x00);
    /* unknown flag bits are accepted and kept */
    expect_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", TID_HEX, PID_HEX,
                 0x09);
    /* optional whitespace around the header value */
    expect_valid(" \t" TP_VALID " \t", TID_HEX, PID_HEX, 0x01);
    /* future versions: first four fields, then end or '-' */
    expect_valid("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TID_HEX, PID_HEX,
                 0x01);
    expect_valid("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be",
                 TID_HEX, PID_HEX, 0x01);
    expect_valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-", TID_HEX, PID_HEX,
                 0x03);
}

static void test_traceparent_invalid(void **state)
{
    (void)state;
    expect_invalid("");
    expect_invalid("   ");
    /* uppercase is invalid everywhere */
    expect_invalid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01");
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01");
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A");
    expect_invalid("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /* version ff is forbidden */
    expect_invalid("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /* all-zero ids */
    expect_invalid("00-00000000000000000000000000000000-00f067aa0ba902b7-01");
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01");
    /* version 00 must be exactly 55 bytes */
    expect_invalid(TP_VALID "-");
    expect_invalid(TP_VALID "-00");
    expect_invalid(TP_VALID "x");
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1");
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01");
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01");
    /* wrong separators, non-hex */
    expect_invalid("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01");
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01");
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01");
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01");
    expect_invalid("0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /* a future version still needs '-' (or the end) after the flags, and 55 bytes */
    expect_invalid("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x");
    expect_invalid("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1");
    /* two headers folded into one */
    expect_invalid(TP_VALID "," TP_VALID);
    /* whitespace inside the value */
    expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736 -00f067aa0ba902b7-01");

    /* diag: offset of the problem */
    keel_span_context c;
    keel_diag d;
    assert_int_equal(KEEL_EPARSE,
                     keel_traceparent_parse(
                         keel_str_c("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01"),
                         &c, &d));
    assert_int_equal(KEEL_EPARSE, d.code);
    assert_int_equal(51, d.offset);
    /* bad arguments */
    assert_int_equal(KEEL_EINVAL, keel_traceparent_parse(keel_str_c(TP_VALID), NULL, NULL));
    keel_str bad = {NULL, 3};
    assert_int_equal(KEEL_EINVAL, keel_traceparent_parse(bad, &c, NULL));
}

static void test_traceparent_format_roundtrip(void **state)
{
    (void)state;
    keel_span_context c, c2;
    ASSERT_OK(keel_traceparent_parse(keel_str_c(TP_VALID), &c, NULL));
    char out[KEEL_TRACEPARENT_SIZE];
    assert_int_equal(55, keel_traceparent_format(&c, out));
    assert_string_equal(TP_VALID, out);
    /* a future version is re-emitted as version 00 with the same fields */
    ASSERT_OK(keel_traceparent_parse(
        keel_str_c("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"), &c, NULL));
    keel_traceparent_format(&c, out);
    assert_string_equal(TP_VALID, out);
    ASSERT_OK(keel_traceparent_parse(keel_str_c(out), &c2, NULL));
    assert_memory_equal(&c, &c2, sizeof c);
    assert_int_equal(0, keel_traceparent_format(NULL, out));
    assert_true(keel_span_context_valid(&c));
    memset(c.span_id, 0, sizeof c.span_id);
    assert_false(keel_span_context_valid(&c));
    assert_false(keel_span_context_valid(NULL));
}

static void test_tracestate_valid(void **state)
{
    (void)state;
    assert_true(keel_tracestate_valid(keel_str_c("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")));
    assert_true(keel_tracestate_valid(keel_str_c("")));
    assert_false(keel_tracestate_valid(keel_str_c("a=b\r\nX-Evil: 1")));
    assert_false(keel_tracestate_valid(keel_str_c("a=\xc3\xa9")));
    assert_false(keel_tracestate_valid(KEEL_STR_NULL));
    char big[KEEL_TRACESTATE_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_false(keel_tracestate_valid(keel_str_c(big)));
    big[KEEL_TRACESTATE_MAX] = '\0';
    assert_true(keel_tracestate_valid(keel_str_c(big)));
}

/* -------------------------------------------------------------- spans -- */

static void test_parent_child_and_current(void **state)
{
    (void)state;
    quiet();
    assert_null(keel_span_current());
    keel_span *root, *child, *grand, *other;
    ASSERT_OK(keel_span_start(&root, "root", KEEL_SPAN_SERVER));
    assert_int_equal(0, root->has_parent);
    assert_true(keel_span_is_recording(root));
    keel_span_context rc;
    keel_span_get_context(root, &rc);
    assert_true(keel_span_context_valid(&rc));
    assert_int_equal(KEEL_TRACE_FLAG_SAMPLED, rc.flags);
    assert_int_equal(0, rc.remote);

    ASSERT_OK(keel_span_push(root));
    assert_int_equal(KEEL_EBUSY, keel_span_push(root));
    assert_ptr_equal(root, keel_span_current());
    ASSERT_OK(keel_span_start(&child, "child", KEEL_SPAN_INTERNAL));
    keel_span_context cc;
    keel_span_get_context(child, &cc);
    assert_memory_equal(rc.trace_id, cc.trace_id, KEEL_TRACE_ID_LEN);
    assert_memory_not_equal(rc.span_id, cc.span_id, KEEL_SPAN_ID_LEN);
    assert_int_equal(1, child->has_parent);
    assert_memory_equal(rc.span_id, child->parent_id, KEEL_SPAN_ID_LEN);

    ASSERT_OK(keel_span_push(child));
    ASSERT_OK(keel_span_start(&grand, "grandchild", KEEL_SPAN_CLIENT));
    assert_memory_equal(cc.span_id, grand->parent_id, KEEL_SPAN_ID_LEN);
    /* traceparent for an outgoing call */
    char tp[KEEL_TRACEPARENT_SIZE], t[33], s[17];
    assert_int_equal(55, keel_span_traceparent(grand, tp));
    hex_of(grand->ctx.trace_id, KEEL_TRACE_ID_LEN, t);
    hex_of(grand->ctx.span_id, KEEL_SPAN_ID_LEN, s);
    char want[64];
    snprintf(want, sizeof want, "00-%s-%s-01", t, s);
    assert_string_equal(want, tp);
    keel_span_end(grand);

    /* ending the current span pops it */
    keel_span_end(child);
    assert_ptr_equal(root, keel_span_current());
    keel_span_pop(root);
    assert_null(keel_span_current());
    keel_span_pop(root); /* not pushed: no-op */

    /* with no current span a new trace starts */
    ASSERT_OK(keel_span_start(&other, "other", KEEL_SPAN_INTERNAL));
    assert_int_equal(0, other->has_parent);
    assert_memory_not_equal(rc.trace_id, other->ctx.trace_id, KEEL_TRACE_ID_LEN);
    /* popping a span deeper in the stack unlinks it */
    ASSERT_OK(keel_span_push(root));
    ASSERT_OK(keel_span_push(other));
    keel_span_pop(root);
    assert_ptr_equal(other, keel_span_current());
    keel_span_pop(other);
    assert_null(keel_span_current());
    keel_span_end(other);
    keel_span_end(root);
    keel_span_end(NULL);

    assert_int_equal(KEEL_EINVAL, keel_span_start(NULL, "x", KEEL_SPAN_INTERNAL));
    assert_int_equal(KEEL_EINVAL, keel_span_start(&other, NULL, KEEL_SPAN_INTERNAL));
    assert_int_equal(KEEL_EINVAL, keel_span_push(NULL));
}

static void test_remote_parent_and_sampled_flag(void **state)
{
    (void)state;
    quiet();
    keel_span_context remote;
    ASSERT_OK(keel_traceparent_parse(keel_str_c(TP_VALID), &remote, NULL));
    keel_span *sp;
    ASSERT_OK(keel_span_start_with_parent(&sp, "srv", KEEL_SPAN_SERVER, &remote, "congo=t61"));
    char t[33], p[17];
    hex_of(sp->ctx.trace_id, KEEL_TRACE_ID_LEN, t);
    hex_of(sp->parent_id, KEEL_SPAN_ID_LEN, p);
    assert_string_equal(TID_HEX, t);
    assert_string_equal(PID_HEX, p);
    assert_true(keel_span_is_recording(sp));
    assert_string_equal("congo=t61", keel_span_tracestate(sp));
    /* a local child inherits the tracestate */
    ASSERT_OK(keel_span_push(sp));
    keel_span *ch;
    ASSERT_OK(keel_span_start(&ch, "child", KEEL_SPAN_INTERNAL));
    assert_string_equal("congo=t61", keel_span_tracestate(ch));
    keel_span_end(ch);
    keel_span_end(sp);

    /* an unsampled parent: the span does not record, but propagates flags 00 */
    ASSERT_OK(keel_traceparent_parse(
        keel_str_c("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), &remote, NULL));
    ASSERT_OK(keel_span_start_with_parent(&sp, "srv", KEEL_SPAN_SERVER, &remote, NULL));
    assert_false(keel_span_is_recording(sp));
    char tp[KEEL_TRACEPARENT_SIZE];
    keel_span_traceparent(sp, tp);
    assert_int_equal(0, strcmp(tp + 53, "00"));
    assert_int_equal(0, strncmp(tp + 3, TID_HEX, 32));
    ASSERT_OK(keel_span_set_str(sp, "k", "v")); /* no-op */
    assert_int_equal(0, sp->nattrs);
    ASSERT_OK(keel_span_push(sp));
    ASSERT_OK(keel_span_start(&ch, "child", KEEL_SPAN_INTERNAL));
    assert_false(keel_span_is_recording(ch));
    keel_span_end(ch);
    keel_span_end(sp);

    /* invalid tracestate is not kept; no parent means tracestate is ignored */
    ASSERT_OK(keel_span_start_with_parent(&sp, "x", KEEL_SPAN_SERVER, &remote, "a=\n"));
    assert_null(keel_span_tracestate(sp));
    keel_span_end(sp);
    ASSERT_OK(keel_span_start_with_parent(&sp, "x", KEEL_SPAN_SERVER, NULL, "a=b"));
    assert_null(keel_span_tracestate(sp));
    assert_int_equal(0, sp->has_parent);
    keel_span_end(sp);
}

static void test_samplers(void **state)
{
    (void)state;
    keel_trace_config c;
    keel_trace_config_default(&c);
    c.sampler = KEEL_TRACE_SAMPLE_ALWAYS_OFF;
    ASSERT_OK(keel_trace_start(&c, NULL));
    assert_int_equal(KEEL_ESTATE, keel_trace_start(&c, NULL));
    keel_span *sp;
    ASSERT_OK(keel_span_start(&sp, "root", KEEL_SPAN_INTERNAL));
    assert_false(keel_span_is_recording(sp));
    keel_span_end(sp);
    /* parent-based: a sampled remote parent wins over the root sampler */
    keel_span_context remote;
    ASSERT_OK(keel_traceparent_parse(keel_str_c(TP_VALID), &remote, NULL));
    ASSERT_OK(keel_span_start_with_parent(&sp, "srv", KEEL_SPAN_SERVER, &remote, NULL));
    assert_true(keel_span_is_recording(sp));
    keel_span_end(sp);
    keel_trace_stop();

    /* not parent-based: the root sampler decides for every span */
    c.parent_based = 0;
    ASSERT_OK(keel_trace_start(&c, NULL));
    ASSERT_OK(keel_span_start_with_parent(&sp, "srv", KEEL_SPAN_SERVER, &remote, NULL));
    assert_false(keel_span_is_recording(sp));
    keel_span_end(sp);
    keel_trace_stop();

    /* ratio 0 and 1 */
    keel_trace_config_default(&c);
    c.sampler = KEEL_TRACE_SAMPLE_RATIO;
    c.ratio = 0.0;
    ASSERT_OK(keel_trace_start(&c, NULL));
    for (int i = 0; i < 20; i++) {
        ASSERT_OK(keel_span_start(&sp, "r", KEEL_SPAN_INTERNAL));
        assert_false(keel_span_is_recording(sp));
        keel_span_end(sp);
    }
    keel_trace_stop();
    c.ratio = 1.0;
    ASSERT_OK(keel_trace_start(&c, NULL));
    for (int i = 0; i < 20; i++) {
        ASSERT_OK(keel_span_start(&sp, "r", KEEL_SPAN_INTERNAL));
        assert_true(keel_span_is_recording(sp));
        keel_span_end(sp);
    }
    keel_trace_stop();
    /* ratio 0.5: decided by the trace id, so a remote trace id decides deterministically */
    c.ratio = 0.5;
    c.parent_based = 0;
    ASSERT_OK(keel_trace_start(&c, NULL));
    /* low 8 bytes a3ce929d0e0e4736 >= 2^63: not sampled */
    ASSERT_OK(keel_span_start_with_parent(&sp, "srv", KEEL_SPAN_SERVER, &remote, NULL));
    assert_false(keel_span_is_recording(sp));
    keel_span_end(sp);
    ASSERT_OK(keel_traceparent_parse(
        keel_str_c("00-4bf92f3577b34da6000e929d0e0e4736-00f067aa0ba902b7-01"), &remote, NULL));
    ASSERT_OK(keel_span_start_with_parent(&sp, "srv", KEEL_SPAN_SERVER, &remote, NULL));
    assert_true(keel_span_is_recording(sp));
    keel_span_end(sp);
    keel_trace_stop();

    /* bad configs */
    keel_diag d;
    keel_trace_config_default(&c);
    c.ratio = 1.5;
    assert_int_equal(KEEL_EINVAL, keel_trace_start(&c, &d));
    keel_trace_config_default(&c);
    c.otlp_endpoint = "ftp://x";
    assert_int_equal(KEEL_EINVAL, keel_trace_start(&c, &d));
    keel_trace_config_default(&c);
    c.service_name = "";
    assert_int_equal(KEEL_EINVAL, keel_trace_start(&c, &d));
    c.size = 0;
    assert_int_equal(KEEL_EINVAL, keel_trace_start(&c, &d));
}

static void test_attrs_events_status_limits(void **state)
{
    (void)state;
    quiet();
    keel_span *sp;
    ASSERT_OK(keel_span_start(&sp, "limits", KEEL_SPAN_INTERNAL));
    char key[32];
    for (int i = 0; i < KEEL_SPAN_ATTRS_MAX; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ASSERT_OK(keel_span_set_int(sp, key, i));
    }
    assert_int_equal(KEEL_EFULL, keel_span_set_int(sp, "one-too-many", 1));
    assert_int_equal(1, sp->dropped_attrs);
    /* replacing an existing key still works when full, and changes the type */
    ASSERT_OK(keel_span_set_str(sp, "k3", "three"));
    assert_int_equal(KEEL_SPAN_ATTRS_MAX, sp->nattrs);
    assert_int_equal(KEEL_TRACE_ATTR_STR, sp->attrs[3].type);
    assert_string_equal("three", sp->attrs[3].v.s);
    /* a NULL key is skipped, the others are kept */
    keel_trace_attr mix[2] = {KEEL_TA_INT(NULL, 1), KEEL_TA_BOOL("k0", 1)};
    assert_int_equal(KEEL_EINVAL, keel_span_set_attrs(sp, mix, 2));
    assert_int_equal(KEEL_TRACE_ATTR_BOOL, sp->attrs[0].type);
    assert_int_equal(KEEL_EINVAL, keel_span_set_attrs(NULL, mix, 2));
    assert_int_equal(KEEL_EINVAL, keel_span_set_attrs(sp, NULL, 1));

    for (int i = 0; i < KEEL_SPAN_EVENTS_MAX; i++)
        ASSERT_OK(keel_span_add_event(sp, "e", NULL, 0));
    assert_int_equal(KEEL_EFULL, keel_span_add_event(sp, "e", NULL, 0));
    assert_int_equal(1, sp->dropped_events);
    assert_int_equal(KEEL_EINVAL, keel_span_add_event(sp, NULL, NULL, 0));

    /* status: UNSET ignored, ERROR keeps the message, OK is final */
    keel_span_set_status(sp, KEEL_SPAN_STATUS_UNSET, "x");
    assert_int_equal(KEEL_SPAN_STATUS_UNSET, sp->status);
    keel_span_set_status(sp, KEEL_SPAN_STATUS_ERROR, "boom");
    assert_int_equal(KEEL_SPAN_STATUS_ERROR, sp->status);
    assert_string_equal("boom", sp->status_msg);
    keel_span_set_status(sp, KEEL_SPAN_STATUS_OK, "ignored");
    assert_int_equal(KEEL_SPAN_STATUS_OK, sp->status);
    assert_null(sp->status_msg);
    keel_span_set_status(sp, KEEL_SPAN_STATUS_ERROR, "late");
    assert_int_equal(KEEL_SPAN_STATUS_OK, sp->status);
    keel_span_end(sp);

    /* event attributes past the limit are dropped and counted */
    ASSERT_OK(keel_span_start(&sp, "ev", KEEL_SPAN_INTERNAL));
    keel_trace_attr many[KEEL_SPAN_EVENT_ATTRS_MAX + 3];
    for (size_t i = 0; i < KEEL_ARRAY_LEN(many); i++)
        many[i] = KEEL_TA_INT("a", i);
    ASSERT_OK(keel_span_add_event(sp, "big", many, KEEL_ARRAY_LEN(many)));
    assert_int_equal(KEEL_SPAN_EVENT_ATTRS_MAX, sp->events[0].nattrs);
    assert_int_equal(3, sp->events[0].dropped_attrs);
    assert_true(sp->events[0].time_unix_ns >= sp->start_unix_ns);
    /* long strings are truncated */
    char *huge = malloc(KEEL_SPAN_STR_MAX + 100);
    memset(huge, 'x', KEEL_SPAN_STR_MAX + 99);
    huge[KEEL_SPAN_STR_MAX + 99] = '\0';
    ASSERT_OK(keel_span_set_str(sp, "huge", huge));
    assert_int_equal(KEEL_SPAN_STR_MAX, strlen(sp->attrs[0].v.s));
    free(huge);
    keel_span_end(sp);
}

static void test_oom(void **state)
{
    (void)state;
    quiet();
    keel_test_failalloc_install();
    for (int n = 0; n < 40; n++) {
        keel_test_failalloc_arm(n);
        keel_span *sp = NULL;
        keel_err e = keel_span_start(&sp, "oom", KEEL_SPAN_INTERNAL);
        if (e != KEEL_OK) {
            assert_int_equal(KEEL_ENOMEM, e);
            assert_null(sp);
            continue;
        }
        keel_trace_attr ea[2] = {KEEL_TA_STR("a", "b"), KEEL_TA_DOUBLE("d", 1.5)};
        e = keel_span_set_str(sp, "s", "v");
        assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
        e = keel_span_add_event(sp, "ev", ea, 2);
        assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
        e = keel_span_record_error(sp, KEEL_EIO, "disk");
        assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
        keel_span_end(sp); /* must not leak (checked under ASan) */
    }
    keel_test_failalloc_remove();
}

/* ------------------------------------------------------------ log export -- */

static void test_log_record(void **state)
{
    (void)state;
    start_log();
    keel_span *parent, *sp;
    ASSERT_OK(keel_span_start(&parent, "checkout", KEEL_SPAN_SERVER));
    ASSERT_OK(keel_span_push(parent));
    ASSERT_OK(keel_span_start(&sp, "charge card", KEEL_SPAN_CLIENT));
    ASSERT_OK(keel_span_set_str(sp, "payment.gateway", "stripe"));
    ASSERT_OK(keel_span_set_int(sp, "payment.amount_minor", 1999));
    ASSERT_OK(keel_span_set_double(sp, "ratio", 0.25));
    ASSERT_OK(keel_span_set_bool(sp, "retried", 1));
    ASSERT_OK(keel_span_set_str(sp, "name", "collides")); /* reserved -> attr.name */
    keel_trace_attr ea[2] = {KEEL_TA_STR("attempt.kind", "first"), KEEL_TA_INT("attempt", 1)};
    ASSERT_OK(keel_span_add_event(sp, "attempt", ea, 2));
    ASSERT_OK(keel_span_record_error(sp, KEEL_ETIMEOUT, "gateway did not answer"));
    keel_span_context pc, sc;
    keel_span_get_context(parent, &pc);
    keel_span_get_context(sp, &sc);
    keel_span_end(sp);
    keel_span_set_status(parent, KEEL_SPAN_STATUS_OK, NULL);
    keel_span_end(parent);

    json_t *recs = trace_records();
    assert_int_equal(2, json_array_size(recs));
    char pt[33], ps[17], ss[17];
    keel_trace_id_hex(&pc, pt);
    keel_span_id_hex(&pc, ps);
    keel_span_id_hex(&sc, ss);

    json_t *r = record_named(recs, "charge card");
    assert_string_equal("ERROR", json_string_value(json_object_get(r, "level")));
    assert_string_equal(pt, xstr(r, "trace_id"));
    assert_string_equal(ss, xstr(r, "span_id"));
    assert_string_equal(ps, xstr(r, "parent_span_id"));
    assert_string_equal("charge card", xstr(r, "name"));
    assert_string_equal("client", xstr(r, "kind"));
    assert_string_equal("ERROR", xstr(r, "status"));
    assert_string_equal("gateway did not answer", xstr(r, "status_message"));
    assert_true(json_is_number(xget(r, "duration_ms")));
    assert_true(json_number_value(xget(r, "duration_ms")) >= 0.0);
    assert_string_equal("stripe", xstr(r, "payment.gateway"));
    assert_int_equal(1999, json_integer_value(xget(r, "payment.amount_minor")));
    assert_true(json_number_value(xget(r, "ratio")) == 0.25);
    assert_true(json_is_true(xget(r, "retried")));
    assert_string_equal("collides", xstr(r, "attr.name"));
    assert_string_equal("KEEL_ETIMEOUT: gateway did not answer",
                        json_string_value(json_object_get(r, "exception")));
    /* events: a JSON array in a string field */
    const char *evs = xstr(r, "events");
    assert_non_null(evs);
    json_t *ev = json_loads(evs, 0, NULL);
    assert_non_null(ev);
    assert_int_equal(2, json_array_size(ev));
    json_t *e0 = json_array_get(ev, 0), *e1 = json_array_get(ev, 1);
    assert_string_equal("attempt", json_string_value(json_object_get(e0, "name")));
    assert_string_equal("first", json_string_value(
                                     json_object_get(json_object_get(e0, "attributes"),
                                                     "attempt.kind")));
    assert_int_equal(1, json_integer_value(
                            json_object_get(json_object_get(e0, "attributes"), "attempt")));
    assert_int_equal(24, strlen(json_string_value(json_object_get(e0, "timestamp"))));
    assert_string_equal("exception", json_string_value(json_object_get(e1, "name")));
    json_t *ea1 = json_object_get(e1, "attributes");
    assert_string_equal("KEEL_ETIMEOUT",
                        json_string_value(json_object_get(ea1, "exception.type")));
    assert_string_equal("gateway did not answer",
                        json_string_value(json_object_get(ea1, "exception.message")));
    assert_int_equal(KEEL_ETIMEOUT, json_integer_value(json_object_get(ea1, "keel.error_code")));
    json_decref(ev);

    json_t *p = record_named(recs, "checkout");
    assert_string_equal("INFO", json_string_value(json_object_get(p, "level")));
    assert_string_equal(pt, xstr(p, "trace_id"));
    assert_true(json_is_null(xget(p, "parent_span_id")));
    assert_string_equal("OK", xstr(p, "status"));
    assert_string_equal("server", xstr(p, "kind"));
    assert_null(xget(p, "events"));
    assert_null(json_object_get(p, "exception"));
    json_decref(recs);

    keel_trace_stats st;
    keel_trace_stats_get(&st);
    assert_true(st.logged >= 2);
}

/* The log hook (redaction) sees span records like any other. */
static int redact_hook(keel_log_record *r, void *ud)
{
    (void)ud;
    for (size_t i = 0; i < keel_log_record_nfields(r); i++) {
        keel_str k = keel_log_record_field_key(r, i);
        if (keel_str_eq(k, KEEL_STR_LIT("card.pan")))
            assert_int_equal(KEEL_OK, keel_log_record_set_field_str(r, i, "[REDACTED]", 10));
    }
    return 0;
}

static void test_log_hook_and_options(void **state)
{
    (void)state;
    ASSERT_OK(keel_log_set_hook(redact_hook, NULL));
    start_log();
    keel_span *sp;
    ASSERT_OK(keel_span_start(&sp, "pay", KEEL_SPAN_INTERNAL));
    ASSERT_OK(keel_span_set_str(sp, "card.pan", "4242424242424242"));
    keel_span_end(sp);
    /* log_spans = 0: nothing logged */
    keel_trace_config c;
    keel_trace_config_default(&c);
    c.log_spans = 0;
    ASSERT_OK(keel_trace_start(&c, NULL));
    ASSERT_OK(keel_span_start(&sp, "quiet", KEEL_SPAN_INTERNAL));
    keel_span_end(sp);
    keel_trace_stop();
    json_t *recs = trace_records();
    ASSERT_OK(keel_log_set_hook(NULL, NULL));
    assert_int_equal(1, json_array_size(recs));
    json_t *r = record_named(recs, "pay");
    assert_string_equal("[REDACTED]", xstr(r, "card.pan"));
    json_decref(recs);
}

/* ------------------------------------------------------------ middleware -- */

static char g_child_parent[17];

static keel_err item_handler(keel_ctx *cx, void *ud)
{
    (void)ud;
    keel_span *cur = keel_span_current();
    assert_non_null(cur);
    keel_span *sp;
    ASSERT_OK(keel_span_start(&sp, "load item", KEEL_SPAN_INTERNAL));
    hex_of(sp->parent_id, KEEL_SPAN_ID_LEN, g_child_parent);
    keel_span_end(sp);
    if (strcmp(keel_req_param(cx, "id"), "boom") == 0)
        return KEEL_EIO;
    return keel_resp_success(cx, 200, json_pack("{s:s}", "id", keel_req_param(cx, "id")), NULL);
}

static char g_resp_tp[128];

static size_t header_cb(char *p, size_t s, size_t n, void *ud)
{
    (void)ud;
    size_t k = s * n;
    if (k > 13 && strncasecmp(p, "traceparent: ", 13) == 0 && k - 13 < sizeof g_resp_tp) {
        memcpy(g_resp_tp, p + 13, k - 13);
        g_resp_tp[k - 13] = '\0';
        g_resp_tp[strcspn(g_resp_tp, "\r\n")] = '\0';
    }
    return k;
}

static size_t discard(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

static long http_get(uint16_t port, const char *path, const char *tp)
{
    g_resp_tp[0] = '\0';
    CURL *c = curl_easy_init();
    char url[256], h[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    struct curl_slist *hl = NULL;
    if (tp != NULL) {
        snprintf(h, sizeof h, "traceparent: %s", tp);
        hl = curl_slist_append(hl, h);
        hl = curl_slist_append(hl, "tracestate: congo=t61rcWkgMzE");
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return status;
}

static void test_middleware(void **state)
{
    (void)state;
    start_log();
    keel_router *r;
    keel_chain *chain;
    keel_server *s;
    keel_diag d = {0};
    ASSERT_OK(keel_router_create(&r));
    ASSERT_OK(keel_router_add(r, KEEL_METHOD_GET, "/items/{id}", item_handler, NULL, 0, &d));
    ASSERT_OK(keel_chain_create(&chain));
    keel_layer *l;
    ASSERT_OK(keel_mw_request_id(&l));
    ASSERT_OK(keel_chain_add_take(chain, l));
    ASSERT_OK(keel_mw_trace(NULL, &l));
    ASSERT_OK(keel_chain_add_take(chain, l));
    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.port = 0;
    sc.workers = 1;
    ASSERT_OK(keel_server_create(&s, &sc, r, chain, NULL, &d));
    ASSERT_OK(keel_server_start(s, &d));
    uint16_t port = keel_server_port(s);

    /* 1: continue the caller's trace */
    assert_int_equal(200, http_get(port, "/items/42", TP_VALID));
    char echoed[128];
    snprintf(echoed, sizeof echoed, "%s", g_resp_tp);
    keel_span_context ec;
    ASSERT_OK(keel_traceparent_parse(keel_str_c(echoed), &ec, NULL));
    char et[33], es[17];
    keel_trace_id_hex(&ec, et);
    keel_span_id_hex(&ec, es);
    assert_string_equal(TID_HEX, et);
    assert_string_not_equal(PID_HEX, es);
    assert_int_equal(1, ec.flags);
    assert_string_equal(es, g_child_parent); /* handler span is a child of the server span */

    /* 2: a bad traceparent starts a new trace; a failing handler marks the span */
    assert_int_equal(500, http_get(port, "/items/boom", "00-XYZ"));
    keel_span_context ec2;
    ASSERT_OK(keel_traceparent_parse(keel_str_c(g_resp_tp), &ec2, NULL));
    char et2[33];
    keel_trace_id_hex(&ec2, et2);
    assert_string_not_equal(TID_HEX, et2);

    /* 3: unsampled caller: no span recorded, flags 00 echoed */
    assert_int_equal(200, http_get(port, "/items/7",
                                   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
    assert_int_equal(0, strcmp(g_resp_tp + 53, "00"));

    keel_server_destroy(s);
    keel_router_destroy(r);

    json_t *recs = trace_records();
    json_t *srv = NULL, *srv2 = NULL;
    size_t i, nsrv = 0;
    json_t *o;
    json_array_foreach(recs, i, o)
    {
        const char *name = json_string_value(json_object_get(o, "message"));
        if (name && strcmp(name, "GET /items/{id}") == 0) {
            nsrv++;
            if (strcmp(xstr(o, "trace_id"), TID_HEX) == 0)
                srv = o;
            else
                srv2 = o;
        }
    }
    assert_int_equal(2, nsrv); /* the unsampled request left no record */
    assert_non_null(srv);
    assert_non_null(srv2);
    assert_string_equal(PID_HEX, xstr(srv, "parent_span_id"));
    assert_string_equal(es, xstr(srv, "span_id"));
    assert_string_equal("server", xstr(srv, "kind"));
    assert_string_equal("GET", xstr(srv, "http.method"));
    assert_string_equal("/items/{id}", xstr(srv, "http.route"));
    assert_int_equal(200, json_integer_value(xget(srv, "http.status_code")));
    assert_string_equal("congo=t61rcWkgMzE", xstr(srv, "tracestate"));
    assert_non_null(json_object_get(srv, "request_id")); /* emitted inside the request-id layer */
    assert_string_equal(json_string_value(json_object_get(srv, "request_id")),
                        xstr(srv, "http.request_id"));
    assert_string_equal("UNSET", xstr(srv, "status"));

    assert_true(json_is_null(xget(srv2, "parent_span_id")));
    assert_int_equal(500, json_integer_value(xget(srv2, "http.status_code")));
    assert_string_equal("ERROR", xstr(srv2, "status"));
    /* the server answers a failing handler itself, so the layer sees a 500 response */
    assert_string_equal(keel_http_reason(500), xstr(srv2, "status_message"));
    json_decref(recs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_valid),
        cmocka_unit_test(test_traceparent_invalid),
        cmocka_unit_test(test_traceparent_format_roundtrip),
        cmocka_unit_test(test_tracestate_valid),
        cmocka_unit_test_setup_teardown(test_parent_child_and_current, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_parent_and_sampled_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_samplers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attrs_events_status_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_hook_and_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_middleware, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
