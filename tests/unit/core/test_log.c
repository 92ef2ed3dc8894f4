/* Tests for src/core/log.c and log_sink.c: the structured logger. */
#define _GNU_SOURCE 1 /* mkdtemp, lstat, usleep */
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "keel_int.h"

#include <keel/log.h>

#include "log_int.h"

/* ------------------------------------------------------------ helpers -- */

static char g_dir[64];

static void mk_tmpdir(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/keel_log_XXXXXX");
    assert_non_null(mkdtemp(g_dir));
}

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

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

static int file_exists(const char *name)
{
    char p[256];
    struct stat st;
    path_of(p, sizeof p, name);
    return stat(p, &st) == 0;
}

static long file_size(const char *name)
{
    char p[256];
    struct stat st;
    path_of(p, sizeof p, name);
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static char *slurp_path(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    if (f == NULL) {
        *len = 0;
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Parse every line of dir/name as a JSON object (failing the test on a bad
 * line); returns a JSON array of the objects (empty if the file is missing). */
static json_t *load_lines(const char *name)
{
    char p[256];
    size_t n;
    path_of(p, sizeof p, name);
    char *buf = slurp_path(p, &n);
    json_t *arr = json_array();
    if (buf == NULL)
        return arr;
    char *line = buf;
    while (line < buf + n) {
        char *nl = memchr(line, '\n', (size_t)(buf + n - line));
        assert_non_null(nl); /* every record ends with a newline */
        json_error_t err;
        json_t *o = json_loadb(line, (size_t)(nl - line), JSON_ALLOW_NUL, &err);
        if (o == NULL)
            fail_msg("bad JSON line in %s: %s: %.*s", name, err.text, (int)(nl - line), line);
        assert_true(json_is_object(o));
        json_array_append_new(arr, o);
        line = nl + 1;
    }
    free(buf);
    return arr;
}

static size_t count_lines(const char *name)
{
    json_t *a = load_lines(name);
    size_t n = json_array_size(a);
    json_decref(a);
    return n;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void start_files(keel_log_level level, size_t qcap, keel_log_overflow ov)
{
    keel_log_config c;
    keel_log_config_default(&c);
    c.dir = g_dir;
    c.level = level;
    c.console = KEEL_LOG_CONSOLE_OFF;
    c.queue_capacity = qcap;
    c.overflow = ov;
    ASSERT_OK(keel_log_start(&c));
}

static int setup(void **state)
{
    (void)state;
    mk_tmpdir();
    return 0;
}

static void writer_release(void);
static void writer_hold_end(void);

static int teardown(void **state)
{
    (void)state;
    writer_release(); /* a failed overflow test must not leave the writer blocked */
    keel_log_stop();
    writer_hold_end();
    assert_int_equal(KEEL_OK, keel_log_set_hook(NULL, NULL));
    keel_log_context_clear();
    keel_log_set_level(KEEL_LOG_LEVEL_INFO);
    rm_rf(g_dir);
    return 0;
}

/* -------------------------------------------------------------- tests -- */

static void test_levels(void **state)
{
    (void)state;
    keel_log_level lv;
    ASSERT_OK(keel_log_level_parse("info", &lv));
    assert_int_equal(KEEL_LOG_LEVEL_INFO, lv);
    ASSERT_OK(keel_log_level_parse("INFO", &lv));
    assert_int_equal(20, lv);
    ASSERT_OK(keel_log_level_parse("Warning", &lv));
    assert_int_equal(30, lv);
    ASSERT_OK(keel_log_level_parse("warn", &lv));
    assert_int_equal(30, lv);
    ASSERT_OK(keel_log_level_parse("debug", &lv));
    assert_int_equal(10, lv);
    ASSERT_OK(keel_log_level_parse("ERROR", &lv));
    assert_int_equal(40, lv);
    ASSERT_OK(keel_log_level_parse("critical", &lv));
    assert_int_equal(50, lv);
    ASSERT_OK(keel_log_level_parse("fatal", &lv));
    assert_int_equal(50, lv);
    assert_int_equal(KEEL_EPARSE, keel_log_level_parse("verbose", &lv));
    assert_int_equal(KEEL_EPARSE, keel_log_level_parse("", &lv));
    assert_int_equal(KEEL_EPARSE, keel_log_level_parse("infos", &lv));
    assert_int_equal(KEEL_EPARSE, keel_log_level_parse("inf", &lv));
    assert_int_equal(KEEL_EINVAL, keel_log_level_parse(NULL, &lv));
    assert_int_equal(KEEL_EINVAL, keel_log_level_parse("info", NULL));
    assert_string_equal("DEBUG", keel_log_level_name(KEEL_LOG_LEVEL_DEBUG));
    assert_string_equal("INFO", keel_log_level_name(KEEL_LOG_LEVEL_INFO));
    assert_string_equal("WARNING", keel_log_level_name(KEEL_LOG_LEVEL_WARNING));
    assert_string_equal("ERROR", keel_log_level_name(KEEL_LOG_LEVEL_ERROR));
    assert_string_equal("CRITICAL", keel_log_level_name(KEEL_LOG_LEVEL_CRITICAL));
    assert_string_equal("WARNING", keel_log_level_name((keel_log_level)35));
    assert_string_equal("DEBUG", keel_log_level_name((keel_log_level)0));
    assert_string_equal("CRITICAL", keel_log_level_name((keel_log_level)99));
}

static void test_loggers_interned(void **state)
{
    (void)state;
    keel_logger *a = keel_logger_get("app.auth.service");
    keel_logger *b = keel_logger_get("app.auth.service");
    keel_logger *c = keel_logger_get("app.db.postgres");
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_string_equal("app.auth.service", keel_logger_name(a));
    assert_string_equal("app.db.postgres", keel_logger_name(c));
    assert_ptr_equal(keel_logger_get(NULL), keel_logger_get("app"));
    assert_ptr_equal(keel_logger_get(""), keel_logger_get("app"));
    assert_string_equal("app", keel_logger_name(keel_logger_get(NULL)));
    assert_string_equal("app", keel_logger_name(NULL));
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    keel_logger *l = keel_logger_get(longname);
    assert_int_equal(KEEL_LOG_NAME_MAX, strlen(keel_logger_name(l)));
    longname[KEEL_LOG_NAME_MAX] = '\0';
    assert_ptr_equal(l, keel_logger_get(longname));
}

static void test_json_record_fields(void **state)
{
    (void)state;
    start_files(KEEL_LOG_LEVEL_INFO, 64, KEEL_LOG_OVERFLOW_DROP);
    keel_logger *lg = keel_logger_get("app.infra.email");
    keel_log_field f[] = {
        KEEL_LF_STR("to", "a@example.com"), KEEL_LF_INT("attempt", 2),
        KEEL_LF_DOUBLE("duration_ms", 3.25),  KEEL_LF_BOOL("final", 0),
        KEEL_LF_STR("nothing", NULL),         KEEL_LF_STRN("reason", "timeout!!", 7),
        KEEL_LF_EXCEPTION("Traceback: boom"), KEEL_LF_INT("attempt", 3),
    };
    int line1 = __LINE__ + 1;
    KEEL_LOG_FIELDS(lg, KEEL_LOG_LEVEL_WARNING, f, KEEL_ARRAY_LEN(f), "Retrying %s", "send");
    int line2 = __LINE__ + 1;
    KEEL_LOG_INFO(NULL, "plain %d", 42);
    ASSERT_OK(keel_log_flush(60000));

    json_t *a = load_lines("app.json");
    assert_int_equal(2, json_array_size(a));
    json_t *o = json_array_get(a, 0);
    const char *keys1[] = {"timestamp", "level",    "logger", "message", "module",
                           "function",  "line",     "extra",  "exception"};
    assert_int_equal(KEEL_ARRAY_LEN(keys1), json_object_size(o));
    for (size_t i = 0; i < KEEL_ARRAY_LEN(keys1); i++)
        assert_non_null(json_object_get(o, keys1[i]));
    /* members come in the documented order */
    const char *k;
    json_t *v;
    size_t idx = 0;
    json_object_foreach(o, k, v)
    {
        assert_string_equal(keys1[idx], k);
        idx++;
    }
    const char *ts = jstr(o, "timestamp");
    assert_non_null(ts);
    assert_int_equal(24, strlen(ts));
    assert_int_equal('T', ts[10]);
    assert_int_equal('.', ts[19]);
    assert_int_equal('Z', ts[23]);
    assert_string_equal("WARNING", jstr(o, "level"));
    assert_string_equal("app.infra.email", jstr(o, "logger"));
    assert_string_equal("Retrying send", jstr(o, "message"));
    assert_string_equal("test_log", jstr(o, "module"));
    assert_string_equal("test_json_record_fields", jstr(o, "function"));
    assert_int_equal(line1, json_integer_value(json_object_get(o, "line")));
    assert_string_equal("Traceback: boom", jstr(o, "exception"));
    json_t *ex = json_object_get(o, "extra");
    assert_true(json_is_object(ex));
    assert_int_equal(6, json_object_size(ex));
    assert_string_equal("a@example.com", jstr(ex, "to"));
    assert_int_equal(3, json_integer_value(json_object_get(ex, "attempt"))); /* last wins */
    assert_true(json_is_real(json_object_get(ex, "duration_ms")));
    assert_true(json_real_value(json_object_get(ex, "duration_ms")) == 3.25);
    assert_true(json_is_false(json_object_get(ex, "final")));
    assert_true(json_is_null(json_object_get(ex, "nothing")));
    assert_string_equal("timeout", jstr(ex, "reason"));
    assert_null(json_object_get(ex, "exception"));

    o = json_array_get(a, 1);
    assert_int_equal(7, json_object_size(o));
    assert_string_equal("INFO", jstr(o, "level"));
    assert_string_equal("app", jstr(o, "logger"));
    assert_string_equal("plain 42", jstr(o, "message"));
    assert_int_equal(line2, json_integer_value(json_object_get(o, "line")));
    assert_null(json_object_get(o, "request_id"));
    assert_null(json_object_get(o, "user_id"));
    assert_null(json_object_get(o, "extra"));
    assert_null(json_object_get(o, "exception"));
    json_decref(a);
    /* WARNING is below ERROR: error.json has nothing */
    assert_int_equal(0, count_lines("error.json"));
    keel_log_stop();
}

typedef struct ctx_arg {
    const char *rid;
    const char *uid;
    int n;
} ctx_arg;

static void *ctx_thread(void *p)
{
    ctx_arg *a = p;
    keel_log_context_set_request_id(a->rid);
    keel_log_context_set_user_id(a->uid);
    for (int i = 0; i < a->n; i++)
        KEEL_LOG_INFO(NULL, "from %s", a->rid);
    keel_log_context_clear();
    KEEL_LOG_INFO(NULL, "after clear");
    return NULL;
}

static void test_context_per_thread(void **state)
{
    (void)state;
    start_files(KEEL_LOG_LEVEL_INFO, 1024, KEEL_LOG_OVERFLOW_BLOCK);
    assert_null(keel_log_context_request_id());
    assert_null(keel_log_context_user_id());
    ctx_arg a1 = {"req-one", "user-1", 50}, a2 = {"req-two", NULL, 50};
    pthread_t t1, t2;
    assert_int_equal(0, pthread_create(&t1, NULL, ctx_thread, &a1));
    assert_int_equal(0, pthread_create(&t2, NULL, ctx_thread, &a2));
    KEEL_LOG_INFO(NULL, "from main");
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);

    /* save on this thread, restore on another */
    keel_log_context_set_request_id("req-main");
    assert_string_equal("req-main", keel_log_context_request_id());
    keel_log_context saved;
    keel_log_context_save(&saved);
    keel_log_context_clear();
    assert_null(keel_log_context_request_id());
    keel_log_context_restore(&saved);
    KEEL_LOG_INFO(NULL, "from req-main");
    keel_log_context_restore(NULL);
    assert_null(keel_log_context_request_id());

    /* long ids are truncated to KEEL_LOG_CONTEXT_ID_MAX bytes */
    char longid[200];
    memset(longid, 'r', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    keel_log_context_set_request_id(longid);
    assert_int_equal(KEEL_LOG_CONTEXT_ID_MAX, strlen(keel_log_context_request_id()));
    keel_log_context_set_request_id("");
    assert_null(keel_log_context_request_id());
    ASSERT_OK(keel_log_flush(60000));

    json_t *arr = load_lines("app.json");
    assert_int_equal(50 + 50 + 2 + 1 + 1, json_array_size(arr));
    size_t i, n1 = 0, n2 = 0, nmain = 0, nclear = 0, nsaved = 0;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        const char *m = jstr(o, "message");
        const char *rid = jstr(o, "request_id");
        const char *uid = jstr(o, "user_id");
        if (strcmp(m, "from req-one") == 0) {
            assert_string_equal("req-one", rid);
            assert_string_equal("user-1", uid);
            n1++;
        } else if (strcmp(m, "from req-two") == 0) {
            assert_string_equal("req-two", rid);
            assert_null(json_object_get(o, "user_id"));
            n2++;
        } else if (strcmp(m, "from main") == 0) {
            assert_null(json_object_get(o, "request_id"));
            assert_null(json_object_get(o, "user_id"));
            nmain++;
        } else if (strcmp(m, "after clear") == 0) {
            assert_null(json_object_get(o, "request_id"));
            nclear++;
        } else if (strcmp(m, "from req-main") == 0) {
            assert_string_equal("req-main", rid);
            nsaved++;
        } else {
            fail_msg("unexpected message %s", m);
        }
    }
    assert_int_equal(50, n1);
    assert_int_equal(50, n2);
    assert_int_equal(1, nmain);
    assert_int_equal(2, nclear);
    assert_int_equal(1, nsaved);
    json_decref(arr);
}

static void test_level_routing(void **state)
{
    (void)state;
    start_files(KEEL_LOG_LEVEL_INFO, 64, KEEL_LOG_OVERFLOW_DROP);
    keel_logger *lg = keel_logger_get("app.route");
    assert_false(keel_log_enabled(lg, KEEL_LOG_LEVEL_DEBUG));
    assert_true(keel_log_enabled(lg, KEEL_LOG_LEVEL_INFO));
    static int evaluated;
    evaluated = 0;
    KEEL_LOG_DEBUG(lg, "debug %d", ++evaluated); /* not even evaluated */
    assert_int_equal(0, evaluated);
    KEEL_LOG_INFO(lg, "info");
    KEEL_LOG_WARNING(lg, "warning");
    KEEL_LOG_ERROR(lg, "error");
    KEEL_LOG_CRITICAL(lg, "critical");
    keel_log_write(lg, KEEL_LOG_LEVEL_DEBUG, __FILE__, __LINE__, __func__, NULL, 0, "debug2");
    ASSERT_OK(keel_log_flush(60000));

    json_t *app = load_lines("app.json"), *err = load_lines("error.json");
    assert_int_equal(4, json_array_size(app));
    assert_string_equal("info", jstr(json_array_get(app, 0), "message"));
    assert_string_equal("warning", jstr(json_array_get(app, 1), "message"));
    assert_string_equal("error", jstr(json_array_get(app, 2), "message"));
    assert_string_equal("critical", jstr(json_array_get(app, 3), "message"));
    assert_int_equal(2, json_array_size(err));
    assert_string_equal("ERROR", jstr(json_array_get(err, 0), "level"));
    assert_string_equal("CRITICAL", jstr(json_array_get(err, 1), "level"));
    json_decref(app);
    json_decref(err);

    /* raising the level at run time filters WARNING out */
    keel_log_set_level(KEEL_LOG_LEVEL_ERROR);
    assert_int_equal(KEEL_LOG_LEVEL_ERROR, keel_log_get_level());
    assert_false(keel_log_enabled(lg, KEEL_LOG_LEVEL_WARNING));
    KEEL_LOG_WARNING(lg, "hidden");
    KEEL_LOG_ERROR(lg, "shown");
    ASSERT_OK(keel_log_flush(60000));
    assert_int_equal(5, count_lines("app.json"));
    assert_int_equal(3, count_lines("error.json"));
}

static void test_debug_level_files_never_below_info(void **state)
{
    (void)state;
    start_files(KEEL_LOG_LEVEL_DEBUG, 64, KEEL_LOG_OVERFLOW_DROP);
    /* console off and files take INFO+, so DEBUG is disabled at the source */
    assert_false(keel_log_enabled(NULL, KEEL_LOG_LEVEL_DEBUG));
    KEEL_LOG_DEBUG(NULL, "debug");
    KEEL_LOG_INFO(NULL, "info");
    ASSERT_OK(keel_log_flush(60000));
    assert_int_equal(1, count_lines("app.json"));
}

static void test_rotation(void **state)
{
    (void)state;
    keel_log_config c;
    keel_log_config_default(&c);
    c.dir = g_dir;
    c.console = KEEL_LOG_CONSOLE_OFF;
    c.rotate_bytes = 1000;
    c.rotate_backups = 3;
    ASSERT_OK(keel_log_start(&c));
    for (int i = 0; i < 200; i++)
        KEEL_LOG_INFO(NULL, "record %03d padding padding padding", i);
    ASSERT_OK(keel_log_flush(60000));
    assert_true(file_exists("app.json"));
    assert_true(file_exists("app.json.1"));
    assert_true(file_exists("app.json.2"));
    assert_true(file_exists("app.json.3"));
    assert_false(file_exists("app.json.4"));
    assert_false(file_exists("error.json.1"));
    const char *names[] = {"app.json", "app.json.1", "app.json.2", "app.json.3"};
    int prev_first = 1000;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(names); i++) {
        assert_true(file_size(names[i]) <= 1000);
        assert_true(file_size(names[i]) > 0);
        json_t *a = load_lines(names[i]);
        assert_true(json_array_size(a) > 0);
        /* newer files hold newer records */
        int first = (int)strtol(jstr(json_array_get(a, 0), "message") + 7, NULL, 10);
        assert_true(first < prev_first);
        prev_first = first;
        if (i == 0)
            assert_string_equal("record 199 padding padding padding",
                                jstr(json_array_get(a, json_array_size(a) - 1), "message"));
        json_decref(a);
    }
    keel_log_stop();

    /* restart appends to the existing file and keeps rotating */
    ASSERT_OK(keel_log_start(&c));
    for (int i = 0; i < 50; i++)
        KEEL_LOG_INFO(NULL, "again %03d padding padding padding", i);
    keel_log_stop();
    assert_false(file_exists("app.json.4"));
    assert_true(file_size("app.json") <= 1000);
}

static void test_rotation_no_backups_truncates(void **state)
{
    (void)state;
    keel_log_config c;
    keel_log_config_default(&c);
    c.dir = g_dir;
    c.console = KEEL_LOG_CONSOLE_OFF;
    c.rotate_bytes = 600;
    c.rotate_backups = 0;
    ASSERT_OK(keel_log_start(&c));
    for (int i = 0; i < 40; i++)
        KEEL_LOG_ERROR(NULL, "record %03d", i);
    keel_log_stop();
    assert_false(file_exists("app.json.1"));
    assert_false(file_exists("error.json.1"));
    assert_true(file_size("app.json") <= 600);
    json_t *a = load_lines("error.json");
    assert_string_equal("record 039", jstr(json_array_get(a, json_array_size(a) - 1), "message"));
    json_decref(a);
}

/* Holding the writer: stderr becomes a pipe that is already full and the console gets every
 * record, so the writer blocks in write() with its batch taken (the slots stay in use); a
 * thread that drains the pipe lets it go on. */
static int hold_fds[2] = {-1, -1};
static int hold_saved_stderr = -1;
static pthread_t hold_drainer;
static int hold_draining;

static void *hold_drain(void *p)
{
    (void)p;
    char b[65536];
    while (read(hold_fds[0], b, sizeof b) > 0)
        ;
    return NULL;
}

static void writer_hold(void)
{
    assert_int_equal(0, pipe(hold_fds));
    assert_int_equal(0, fcntl(hold_fds[1], F_SETFL, O_NONBLOCK));
    char junk[4096];
    memset(junk, 'x', sizeof junk);
    while (write(hold_fds[1], junk, sizeof junk) > 0)
        ;
    while (write(hold_fds[1], junk, 1) == 1)
        ;
    assert_int_equal(0, fcntl(hold_fds[1], F_SETFL, 0));
    fflush(stderr);
    hold_saved_stderr = dup(STDERR_FILENO);
    assert_true(hold_saved_stderr >= 0);
    assert_true(dup2(hold_fds[1], STDERR_FILENO) >= 0);
}

/* Let the writer go on (idempotent). */
static void writer_release(void)
{
    if (hold_fds[0] >= 0 && !hold_draining) {
        assert_int_equal(0, pthread_create(&hold_drainer, NULL, hold_drain, NULL));
        hold_draining = 1;
    }
}

/* After the logger stopped: stderr back, the pipe closed. */
static void writer_hold_end(void)
{
    if (hold_fds[0] < 0)
        return;
    writer_release();
    dup2(hold_saved_stderr, STDERR_FILENO);
    close(hold_saved_stderr);
    close(hold_fds[1]); /* the drainer sees end of file */
    pthread_join(hold_drainer, NULL);
    close(hold_fds[0]);
    hold_fds[0] = hold_fds[1] = hold_saved_stderr = -1;
    hold_draining = 0;
}

/* start_files() with a JSON console, so that every record also goes to stderr. */
static void start_files_console(size_t qcap, keel_log_overflow ov)
{
    keel_log_config c;
    keel_log_config_default(&c);
    c.dir = g_dir;
    c.level = KEEL_LOG_LEVEL_INFO;
    c.console = KEEL_LOG_CONSOLE_JSON;
    c.queue_capacity = qcap;
    c.overflow = ov;
    ASSERT_OK(keel_log_start(&c));
}

static void test_overflow_drop(void **state)
{
    (void)state;
    keel_log_stats before, after;
    keel_log_stats_get(&before);
    writer_hold();
    start_files_console(4, KEEL_LOG_OVERFLOW_DROP);
    KEEL_LOG_INFO(NULL, "first");
    for (int i = 0; i < 13; i++)
        KEEL_LOG_INFO(NULL, "more %d", i);
    keel_log_stats_get(&after);
    assert_int_equal(10, after.dropped - before.dropped);
    assert_int_equal(4, after.queued);
    assert_int_equal(KEEL_ETIMEOUT, keel_log_flush(0));
    writer_release();
    ASSERT_OK(keel_log_flush(60000));
    keel_log_stats_get(&after);
    assert_int_equal(0, after.queued);
    assert_int_equal(4, after.written - before.written);
    assert_int_equal(10, after.dropped - before.dropped);
    keel_log_stop();
    writer_hold_end();
    json_t *a = load_lines("app.json");
    assert_int_equal(4, json_array_size(a));
    assert_string_equal("first", jstr(json_array_get(a, 0), "message"));
    assert_string_equal("more 2", jstr(json_array_get(a, 3), "message"));
    json_decref(a);
}

static void *block_producer(void *p)
{
    (void)p;
    for (int i = 0; i < 50; i++)
        KEEL_LOG_INFO(NULL, "blocked %d", i);
    return NULL;
}

static void test_overflow_block(void **state)
{
    (void)state;
    keel_log_stats before, after;
    keel_log_stats_get(&before);
    writer_hold();
    start_files_console(4, KEEL_LOG_OVERFLOW_BLOCK);
    KEEL_LOG_INFO(NULL, "first");
    pthread_t t;
    assert_int_equal(0, pthread_create(&t, NULL, block_producer, NULL));
    /* wait until the producer has filled the queue and is blocked */
    for (;;) {
        keel_log_stats_get(&after);
        if (after.queued == 4)
            break;
        usleep(1000);
    }
    usleep(20000);
    keel_log_stats_get(&after);
    assert_int_equal(4, after.queued); /* still full: the producer waits */
    writer_release();
    pthread_join(t, NULL);
    keel_log_stop(); /* drains */
    writer_hold_end();
    keel_log_stats_get(&after);
    assert_int_equal(0, after.dropped - before.dropped);
    assert_int_equal(51, after.written - before.written);
    json_t *a = load_lines("app.json");
    assert_int_equal(51, json_array_size(a));
    for (size_t i = 1; i < 51; i++) {
        char want[32];
        snprintf(want, sizeof want, "blocked %zu", i - 1);
        assert_string_equal(want, jstr(json_array_get(a, i), "message"));
    }
    json_decref(a);
}

/* Redaction-like hook: digits in the message and string fields become '*',
 * an "amount" int field becomes a string, messages starting "DROP" are dropped,
 * and a record emitted from inside the hook is dropped, not deadlocked. */
static int hook_calls;
static int redact_hook(keel_log_record *r, void *ud)
{
    hook_calls++;
    assert_ptr_equal((void *)0x1234, ud);
    keel_str m = keel_log_record_message(r);
    if (m.len >= 4 && memcmp(m.ptr, "DROP", 4) == 0)
        return 1;
    KEEL_LOG_ERROR(NULL, "logged from the hook");
    assert_int_equal(KEEL_EBUSY, keel_log_set_hook(NULL, NULL));
    char buf[256];
    size_t n = KEEL_MIN(m.len, sizeof buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (m.ptr[i] >= '0' && m.ptr[i] <= '9') ? '*' : m.ptr[i];
    assert_int_equal(KEEL_OK, keel_log_record_set_message(r, buf, n));
    /* setting from the record's own (replaced) message is allowed */
    m = keel_log_record_message(r);
    assert_int_equal(KEEL_OK, keel_log_record_set_message(r, m.ptr, m.len));
    for (size_t i = 0; i < keel_log_record_nfields(r); i++) {
        keel_str k = keel_log_record_field_key(r, i);
        if (keel_log_record_field_type(r, i) == KEEL_LOG_FIELD_STR) {
            keel_str v = keel_log_record_field_str(r, i);
            n = KEEL_MIN(v.len, sizeof buf);
            for (size_t j = 0; j < n; j++)
                buf[j] = (v.ptr[j] >= '0' && v.ptr[j] <= '9') ? '*' : v.ptr[j];
            assert_int_equal(KEEL_OK, keel_log_record_set_field_str(r, i, buf, n));
        } else if (keel_str_eq(k, KEEL_STR_LIT("amount"))) {
            assert_int_equal(1999, keel_log_record_field_int(r, i));
            assert_int_equal(KEEL_OK, keel_log_record_set_field_str(r, i, "[hidden]", 8));
        }
    }
    assert_int_equal(KEEL_ERANGE, keel_log_record_set_field_str(r, 99, "x", 1));
    assert_int_equal(KEEL_EINVAL, keel_log_record_set_message(r, NULL, 3));
    assert_int_equal(KEEL_ETOOBIG, keel_log_record_set_message(r, buf, (size_t)1 << 20));
    return 0;
}

static void test_hook_rewrites_and_drops(void **state)
{
    (void)state;
    keel_log_stats before, after;
    keel_log_stats_get(&before);
    hook_calls = 0;
    ASSERT_OK(keel_log_set_hook(redact_hook, (void *)0x1234));
    start_files(KEEL_LOG_LEVEL_INFO, 64, KEEL_LOG_OVERFLOW_DROP);
    keel_log_field f[] = {KEEL_LF_STR("pan", "4111111111111111"), KEEL_LF_INT("amount", 1999),
                          KEEL_LF_INT("count", 7), KEEL_LF_EXCEPTION("at line 12")};
    KEEL_LOG_FIELDS(NULL, KEEL_LOG_LEVEL_ERROR, f, 4, "card 4111111111111111 charged %d", 5);
    KEEL_LOG_WARNING(NULL, "DROP me 123");
    KEEL_LOG_INFO(NULL, "kept 42");
    ASSERT_OK(keel_log_flush(60000));
    keel_log_stats_get(&after);
    assert_int_equal(3, hook_calls);
    assert_int_equal(1, after.filtered - before.filtered);
    assert_int_equal(2, after.written - before.written);
    assert_int_equal(2, after.dropped - before.dropped); /* the two records from the hook */
    json_t *a = load_lines("app.json");
    assert_int_equal(2, json_array_size(a));
    json_t *o = json_array_get(a, 0);
    assert_string_equal("card **************** charged *", jstr(o, "message"));
    json_t *ex = json_object_get(o, "extra");
    assert_string_equal("****************", jstr(ex, "pan"));
    assert_string_equal("[hidden]", jstr(ex, "amount"));
    assert_int_equal(7, json_integer_value(json_object_get(ex, "count")));
    assert_string_equal("at line **", jstr(o, "exception"));
    assert_string_equal("kept **", jstr(json_array_get(a, 1), "message"));
    json_decref(a);

    /* removing the hook: records pass untouched */
    ASSERT_OK(keel_log_set_hook(NULL, NULL));
    KEEL_LOG_INFO(NULL, "raw 42");
    ASSERT_OK(keel_log_flush(60000));
    a = load_lines("app.json");
    assert_string_equal("raw 42", jstr(json_array_get(a, 2), "message"));
    json_decref(a);
    assert_int_equal(3, hook_calls);
}

static void test_stop_flushes_everything(void **state)
{
    (void)state;
    start_files(KEEL_LOG_LEVEL_INFO, 16384, KEEL_LOG_OVERFLOW_BLOCK);
    assert_int_equal(KEEL_ESTATE, keel_log_start(NULL));
    for (int i = 0; i < 3000; i++)
        KEEL_LOG_ERROR(NULL, "n=%d", i);
    keel_log_stop();
    keel_log_stop(); /* idempotent */
    assert_int_equal(3000, count_lines("app.json"));
    assert_int_equal(3000, count_lines("error.json"));
    ASSERT_OK(keel_log_flush(0)); /* not running: nothing to wait for */
    keel_log_stats st;
    keel_log_stats_get(&st);
    assert_int_equal(0, st.queued);
}

typedef struct stress_arg {
    int id;
} stress_arg;

static void *stress_thread(void *p)
{
    stress_arg *a = p;
    char rid[16];
    snprintf(rid, sizeof rid, "t%d", a->id);
    keel_log_context_set_request_id(rid);
    keel_log_field f[] = {KEEL_LF_INT("thread", a->id), KEEL_LF_STR("path", "/api/v1/x")};
    for (int i = 0; i < 2000; i++)
        KEEL_LOG_FIELDS(NULL, KEEL_LOG_LEVEL_INFO, f, 2, "GET /api/v1/x %d", i);
    return NULL;
}

static void test_many_threads_block_loses_nothing(void **state)
{
    (void)state;
    start_files(KEEL_LOG_LEVEL_INFO, 128, KEEL_LOG_OVERFLOW_BLOCK);
    pthread_t t[4];
    stress_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].id = i;
        assert_int_equal(0, pthread_create(&t[i], NULL, stress_thread, &args[i]));
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    keel_log_stop();
    json_t *a = load_lines("app.json");
    assert_int_equal(8000, json_array_size(a));
    int next[4] = {0, 0, 0, 0};
    size_t i;
    json_t *o;
    json_array_foreach(a, i, o)
    {
        int id = (int)json_integer_value(json_object_get(json_object_get(o, "extra"), "thread"));
        assert_true(id >= 0 && id < 4);
        char rid[16], msg[64];
        snprintf(rid, sizeof rid, "t%d", id);
        snprintf(msg, sizeof msg, "GET /api/v1/x %d", next[id]++); /* per-thread order kept */
        assert_string_equal(rid, jstr(o, "request_id"));
        assert_string_equal(msg, jstr(o, "message"));
    }
    json_decref(a);
}

/* The hook runs on the logging threads, several at once; threads that logged and exited (their
 * per-thread formatting state freed) leave nothing behind, and a new thread logs afresh. */
static atomic_int g_conc_calls, g_conc_inside, g_conc_overlap;

static int counting_hook(keel_log_record *r, void *ud)
{
    (void)r;
    (void)ud;
    if (atomic_fetch_add(&g_conc_inside, 1) > 0)
        atomic_store(&g_conc_overlap, 1);
    atomic_fetch_add(&g_conc_calls, 1);
    usleep(50); /* widen the window in which calls can overlap */
    atomic_fetch_sub(&g_conc_inside, 1);
    return 0;
}

static void *short_lived(void *p)
{
    int id = *(const int *)p;
    for (int i = 0; i < 200; i++)
        KEEL_LOG_INFO(NULL, "thread %d record %d", id, i);
    return NULL;
}

static void test_hook_on_many_threads(void **state)
{
    (void)state;
    atomic_store(&g_conc_calls, 0);
    atomic_store(&g_conc_overlap, 0);
    ASSERT_OK(keel_log_set_hook(counting_hook, NULL));
    start_files(KEEL_LOG_LEVEL_INFO, 4096, KEEL_LOG_OVERFLOW_BLOCK);
    for (int round = 0; round < 2; round++) { /* the second round reuses exited threads' ids */
        pthread_t t[4];
        int ids[4];
        for (int i = 0; i < 4; i++) {
            ids[i] = round * 4 + i;
            assert_int_equal(0, pthread_create(&t[i], NULL, short_lived, &ids[i]));
        }
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
    }
    KEEL_LOG_INFO(NULL, "main");
    keel_log_stop();
    ASSERT_OK(keel_log_set_hook(NULL, NULL));
    assert_int_equal(1601, atomic_load(&g_conc_calls));
    assert_int_equal(1, atomic_load(&g_conc_overlap)); /* not serialised any more */
    json_t *a = load_lines("app.json");
    assert_int_equal(1601, json_array_size(a));
    assert_string_equal("main", jstr(json_array_get(a, 1600), "message"));
    json_decref(a);
}

static void test_invalid_utf8_and_control_chars(void **state)
{
    (void)state;
    start_files(KEEL_LOG_LEVEL_INFO, 64, KEEL_LOG_OVERFLOW_DROP);
    keel_log_context_set_request_id("rid\n\xff");
    /* lone byte, control chars, quote/backslash, overlong, surrogate, truncated sequence */
    static const char bad[] = "a\xff" "b\x01\x1f\x7f\t\n\"\\ \xc0\xaf \xed\xa0\x80 \xe2\x82";
    keel_log_field f[] = {KEEL_LF_STRN("bin", "x\0y\xfe", 4),
                          KEEL_LF_STR("k\x02\xff", "\xf4\x90\x80\x80"),
                          KEEL_LF_STR("ok", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")};
    KEEL_LOG_FIELDS(NULL, KEEL_LOG_LEVEL_INFO, f, 3, "%s", bad);
    keel_log_context_clear();
    ASSERT_OK(keel_log_flush(60000));

    char p[256];
    size_t n;
    path_of(p, sizeof p, "app.json");
    char *raw = slurp_path(p, &n);
    assert_non_null(raw);
    /* one line: the embedded newlines were escaped */
    assert_ptr_equal(raw + n - 1, strchr(raw, '\n'));
    /* strict parse: jansson rejects invalid UTF-8, so this proves the line is valid */
    json_error_t err;
    json_t *o = json_loadb(raw, n, JSON_ALLOW_NUL, &err);
    if (o == NULL)
        fail_msg("invalid JSON: %s", err.text);
    free(raw);
#define R "\xef\xbf\xbd"
    assert_string_equal("a" R "b\x01\x1f\x7f\t\n\"\\ " R R " " R R R " " R R, jstr(o, "message"));
    assert_string_equal("rid\n" R, jstr(o, "request_id"));
    json_t *ex = json_object_get(o, "extra");
    json_t *bin = json_object_get(ex, "bin");
    assert_int_equal(6, json_string_length(bin));
    assert_memory_equal("x\0y" R, json_string_value(bin), 6);
    assert_string_equal(R R R R, jstr(ex, "k\x02" R));
    assert_string_equal("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", jstr(ex, "ok"));
#undef R
    json_decref(o);
}

static void test_message_truncation(void **state)
{
    (void)state;
    start_files(KEEL_LOG_LEVEL_INFO, 64, KEEL_LOG_OVERFLOW_DROP);
    size_t big = 20000;
    char *s = malloc(big + 1);
    memset(s, 'x', big);
    s[big] = '\0';
    /* a 3-byte character straddles the cut */
    memcpy(s + KEEL_LOG_MESSAGE_MAX - 1, "\xe2\x82\xac", 3);
    KEEL_LOG_INFO(NULL, "%s", s);
    /* exactly at the limit: kept whole */
    s[KEEL_LOG_MESSAGE_MAX] = '\0';
    memset(s, 'y', KEEL_LOG_MESSAGE_MAX);
    KEEL_LOG_INFO(NULL, "%s", s);
    /* a huge string field is cut too */
    keel_log_field f[] = {KEEL_LF_STR("blob", s)};
    KEEL_LOG_FIELDS(NULL, KEEL_LOG_LEVEL_INFO, f, 1, "short");
    ASSERT_OK(keel_log_flush(60000));
    json_t *a = load_lines("app.json");
    assert_int_equal(3, json_array_size(a));
    const char *m = jstr(json_array_get(a, 0), "message");
    assert_int_equal(KEEL_LOG_MESSAGE_MAX - 1 + strlen(" [truncated]"), strlen(m));
    assert_string_equal(" [truncated]", m + KEEL_LOG_MESSAGE_MAX - 1);
    m = jstr(json_array_get(a, 1), "message");
    assert_int_equal(KEEL_LOG_MESSAGE_MAX, strlen(m));
    const char *b = jstr(json_object_get(json_array_get(a, 2), "extra"), "blob");
    assert_int_equal(KEEL_LOG_FIELD_STR_MAX, strlen(b));
    json_decref(a);
    free(s);
}

/* Redirect fd 2 into a file while fn runs; returns what was written. */
static char *capture_stderr(void (*fn)(void))
{
    char p[256];
    path_of(p, sizeof p, "stderr.txt");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    close(fd);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t n;
    return slurp_path(p, &n);
}

static void emit_stopped(void)
{
    keel_log_context_set_request_id("early-1");
    keel_log_field f[] = {KEEL_LF_STR("key", "va\"l"), KEEL_LF_INT("n", 5)};
    KEEL_LOG_FIELDS(keel_logger_get("app.boot"), KEEL_LOG_LEVEL_ERROR, f, 2, "cannot bind %d",
                    8080);
    keel_log_context_clear();
    KEEL_LOG_DEBUG(NULL, "not shown");
}

static void test_sync_stderr_when_stopped(void **state)
{
    (void)state;
    char *out = capture_stderr(emit_stopped);
    assert_non_null(out);
    /* "<timestamp> ERROR    app.boot: cannot bind 8080 request_id=early-1 key="va\"l" n=5\n" */
    assert_int_equal(24, strchr(out, ' ') - out);
    assert_string_equal(
        " ERROR    app.boot: cannot bind 8080 request_id=early-1 key=\"va\\\"l\" n=5\n", out + 24);
    free(out);
}

static void emit_console_json(void)
{
    keel_log_config c;
    keel_log_config_default(&c);
    c.console = KEEL_LOG_CONSOLE_JSON;
    c.level = KEEL_LOG_LEVEL_DEBUG;
    ASSERT_OK(keel_log_start(&c));
    assert_true(keel_log_enabled(NULL, KEEL_LOG_LEVEL_DEBUG));
    KEEL_LOG_DEBUG(NULL, "dbg");
    KEEL_LOG_INFO(NULL, "inf");
    keel_log_stop();
}

static void test_console_json(void **state)
{
    (void)state;
    char *out = capture_stderr(emit_console_json);
    assert_non_null(out);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    json_t *o1 = json_loadb(out, (size_t)(nl - out), 0, NULL);
    json_t *o2 = json_loads(nl + 1, 0, NULL);
    assert_non_null(o1);
    assert_non_null(o2);
    assert_string_equal("dbg", jstr(o1, "message"));
    assert_string_equal("DEBUG", jstr(o1, "level"));
    assert_string_equal("inf", jstr(o2, "message"));
    json_decref(o1);
    json_decref(o2);
    free(out);
    assert_false(file_exists("app.json")); /* no dir: no files */
}

/* Out of memory: lookups fall back to the root logger, start fails cleanly, and
 * emitting (including a message too long for the stack stage) never crashes. */
static void *null_alloc(void *ctx, size_t n)
{
    (void)ctx;
    (void)n;
    return NULL;
}
static void *null_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return NULL;
}
static void std_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static void emit_oom(void)
{
    char big[2000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    KEEL_LOG_ERROR(NULL, "oom %s", big);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    keel_log_stats before, after;
    keel_log_stats_get(&before);
    keel_allocator fa = {null_alloc, null_realloc, std_free, NULL};
    ASSERT_OK(keel_set_allocator(&fa));
    keel_logger *lg = keel_logger_get("app.oom.never.seen");
    keel_log_config c;
    keel_log_config_default(&c);
    c.dir = g_dir;
    keel_err e = keel_log_start(&c);
    char *out = capture_stderr(emit_oom);
    ASSERT_OK(keel_set_allocator(NULL));
    assert_string_equal("app", keel_logger_name(lg));
    assert_int_equal(KEEL_ENOMEM, e);
    keel_log_stats_get(&after);
    /* the record was either written (truncated to what fitted) or counted as dropped */
    assert_int_equal(1, (after.written - before.written) + (after.dropped - before.dropped));
    free(out);
}

static void test_format_text_color(void **state)
{
    (void)state;
    keel_log_record r;
    memset(&r, 0, sizeof r);
    r.wall_ms = 1700000000123;
    r.level = KEEL_LOG_LEVEL_ERROR;
    r.lg = keel_logger_get("app.x");
    r.msg = KEEL_STR_LIT("hello\nworld");
    r.request_id = KEEL_STR_LIT("r1");
    r.nfields = 3;
    r.f[0].key = "k";
    r.f[0].key_len = 1;
    r.f[0].type = KEEL_LOG_FIELD_STR;
    r.f[0].s = "v";
    r.f[0].slen = 1;
    r.f[1].key = "d";
    r.f[1].key_len = 1;
    r.f[1].type = KEEL_LOG_FIELD_DOUBLE;
    r.f[1].d = 0.1;
    r.f[2].key = "exception";
    r.f[2].key_len = 9;
    r.f[2].type = KEEL_LOG_FIELD_STR;
    r.f[2].s = "E";
    r.f[2].slen = 1;
    keel__lbuf b;
    keel__lbuf_init(&b, 4096);
    keel__log_format_text(&b, &r, 1);
    assert_int_equal(0, b.err);
    assert_string_equal("2023-11-14T22:13:20.123Z \x1b[31mERROR\x1b[0m    app.x: hello\\nworld "
                        "request_id=r1 k=\"v\" d=0.1 exception=\"E\"\n",
                        b.p);
    keel__lbuf_reset(&b);
    r.level = KEEL_LOG_LEVEL_DEBUG;
    r.nfields = 0;
    r.request_id = KEEL_STR_NULL;
    keel__log_format_text(&b, &r, 0);
    assert_string_equal("2023-11-14T22:13:20.123Z DEBUG    app.x: hello\\nworld\n", b.p);
    keel__lbuf_reset(&b);
    r.module = KEEL_STR_LIT("mod");
    r.func = KEEL_STR_LIT("fn");
    r.line = 7;
    r.nfields = 2;
    r.f[1].d = INFINITY;
    keel__log_format_json(&b, &r);
    assert_string_equal("{\"timestamp\":\"2023-11-14T22:13:20.123Z\",\"level\":\"DEBUG\","
                        "\"logger\":\"app.x\",\"message\":\"hello\\nworld\",\"module\":\"mod\","
                        "\"function\":\"fn\",\"line\":7,\"extra\":{\"k\":\"v\",\"d\":null}}\n",
                        b.p);
    keel__lbuf_free(&b);
}

static void test_config_errors(void **state)
{
    (void)state;
    keel_log_config c;
    keel_log_config_default(&c);
    assert_int_equal(sizeof c, c.size);
    assert_int_equal(KEEL_LOG_LEVEL_INFO, c.level);
    assert_int_equal(4096, c.queue_capacity);
    assert_int_equal(KEEL_LOG_OVERFLOW_DROP, c.overflow);
    assert_int_equal(10u * 1024 * 1024, c.rotate_bytes);
    assert_int_equal(5, c.rotate_backups);
    assert_null(c.dir);
    c.queue_capacity = 0;
    assert_int_equal(KEEL_EINVAL, keel_log_start(&c));
    keel_log_config_default(&c);
    c.level = (keel_log_level)5;
    assert_int_equal(KEEL_EINVAL, keel_log_start(&c));
    keel_log_config_default(&c);
    c.console = (keel_log_console)7;
    assert_int_equal(KEEL_EINVAL, keel_log_start(&c));
    keel_log_config_default(&c);
    c.size = sizeof c + 8;
    assert_int_equal(KEEL_EINVAL, keel_log_start(&c));
    keel_log_config_default(&c);
    c.rotate_backups = 1000;
    assert_int_equal(KEEL_EINVAL, keel_log_start(&c));
    keel_log_config_default(&c);
    c.dir = "";
    assert_int_equal(KEEL_EINVAL, keel_log_start(&c));

    /* a path under a regular file cannot be a directory */
    char file[256], sub[300];
    path_of(file, sizeof file, "plain");
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(sub, sizeof sub, "%s/logs", file);
    keel_log_config_default(&c);
    c.dir = sub;
    c.console = KEEL_LOG_CONSOLE_OFF;
    assert_int_equal(KEEL_EIO, keel_log_start(&c));

    /* mkdir -p of a nested directory */
    snprintf(sub, sizeof sub, "%s/a/b/c/", g_dir);
    c.dir = sub;
    ASSERT_OK(keel_log_start(&c));
    KEEL_LOG_INFO(NULL, "nested");
    keel_log_stop();
    assert_true(file_exists("a/b/c/app.json"));
    assert_true(file_exists("a/b/c/error.json"));
    assert_int_equal(1, count_lines("a/b/c/app.json"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_loggers_interned),
        cmocka_unit_test_setup_teardown(test_json_record_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_per_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debug_level_files_never_below_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_no_backups_truncates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overflow_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overflow_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_rewrites_and_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_on_many_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_flushes_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_threads_block_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8_and_control_chars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_stderr_when_stopped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_console_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
        cmocka_unit_test(test_format_text_color),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
