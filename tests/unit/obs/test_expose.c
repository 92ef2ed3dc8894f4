/* Tests for src/obs/expose.c: golden exposition text, prefix filter, empty families, number
 * formatting, buffer cap, collectors, and a line-by-line grammar check of a full registry. */
/* keel_int.h first: it defines _GNU_SOURCE, which obs_int.h needs (pthread_rwlock_t). */
#include "keel_int.h"

#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/metrics.h>

#include "obs/obs_int.h"

/* ------------------------------------------------------- grammar checker -- */

/* A checker for the text format 0.0.4 as we emit it (reference.md section 6): every line is
 * a HELP, a TYPE or a sample; TYPE precedes the samples of its family; each family's samples
 * are grouped; histograms have increasing le, cumulative counts, +Inf last and equal to
 * _count.  Returns 0 when valid, else the 1-based line number of the first error. */

#define CK_MAX_TYPED 256

typedef struct checker {
    char typed[CK_MAX_TYPED][128];
    char helped[CK_MAX_TYPED][128];
    size_t ntyped, nhelped;
    char fam[128]; /* current family (last TYPE) */
    char type[16];
    /* histogram state for the current series */
    double last_le;
    double last_bucket;
    double inf_count;
    int have_inf;
} checker;

static int ck_name(const char **p, char *out, size_t outsz, int label)
{
    const char *s = *p;
    size_t n = 0;
    while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') || s[n] == '_' ||
           (!label && s[n] == ':') || (n > 0 && s[n] >= '0' && s[n] <= '9'))
        n++;
    if (n == 0 || n >= outsz)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    *p = s + n;
    return 0;
}

static int ck_value(const char *s, const char *end, double *v)
{
    size_t n = (size_t)(end - s);
    char tmp[64];
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (strcmp(tmp, "NaN") == 0) {
        *v = NAN;
        return 0;
    }
    if (strcmp(tmp, "+Inf") == 0 || strcmp(tmp, "-Inf") == 0) {
        *v = tmp[0] == '+' ? INFINITY : -INFINITY;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789.eE+-", tmp[i]))
            return -1;
    char *e;
    *v = strtod(tmp, &e);
    return *e == '\0' ? 0 : -1;
}

static int ck_in(char list[][128], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

static int ck_has_suffix(const char *name, const char *fam, const char *suffix)
{
    size_t f = strlen(fam);
    return strncmp(name, fam, f) == 0 && strcmp(name + f, suffix) == 0;
}

static int ck_sample(checker *c, const char *line, const char *eol)
{
    char name[128];
    const char *p = line;
    if (ck_name(&p, name, sizeof(name), 0) != 0)
        return -1;
    char lnames[16][64];
    size_t nl = 0;
    double le = NAN;
    int has_le = 0;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (nl == 16 || ck_name(&p, lnames[nl], sizeof(lnames[nl]), 1) != 0)
                return -1;
            if (lnames[nl][0] == '_' && lnames[nl][1] == '_')
                return -1;
            for (size_t i = 0; i < nl; i++)
                if (strcmp(lnames[i], lnames[nl]) == 0)
                    return -1; /* duplicate label */
            if (p[0] != '=' || p[1] != '"')
                return -1;
            p += 2;
            const char *vs = p;
            while (*p != '"') {
                if (p >= eol || *p == '\n')
                    return -1;
                if (*p == '\\') {
                    if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                        return -1;
                    p++;
                }
                p++;
            }
            if (strcmp(lnames[nl], "le") == 0) {
                has_le = 1;
                if (ck_value(vs, p, &le) != 0)
                    return -1;
            }
            nl++;
            p++; /* closing quote */
            if (*p == ',')
                p++;
            else if (*p != '}')
                return -1;
        }
        p++;
    }
    if (*p != ' ')
        return -1;
    p++;
    double v;
    if (ck_value(p, eol, &v) != 0)
        return -1;

    /* The sample must belong to the family whose TYPE came last. */
    if (c->fam[0] == '\0')
        return -1;
    if (strcmp(c->type, "histogram") == 0) {
        if (ck_has_suffix(name, c->fam, "_bucket")) {
            if (!has_le || c->have_inf)
                return -1;
            if (!isnan(c->last_le) && !(le > c->last_le))
                return -1; /* le strictly increasing */
            if (!isnan(c->last_bucket) && v < c->last_bucket)
                return -1; /* cumulative */
            c->last_le = le;
            c->last_bucket = v;
            if (isinf(le) && le > 0) {
                c->have_inf = 1;
                c->inf_count = v;
            }
        } else if (ck_has_suffix(name, c->fam, "_sum")) {
            if (!c->have_inf || has_le)
                return -1;
        } else if (ck_has_suffix(name, c->fam, "_count")) {
            if (!c->have_inf || has_le || v != c->inf_count)
                return -1;
            c->have_inf = 0; /* next series starts */
            c->last_le = NAN;
            c->last_bucket = NAN;
        } else {
            return -1;
        }
    } else {
        if (strcmp(name, c->fam) != 0 || has_le)
            return -1;
        if (strcmp(c->type, "counter") == 0 && !(v >= 0))
            return -1;
    }
    return 0;
}

static int ck_line(checker *c, const char *line, const char *eol)
{
    if (strncmp(line, "# HELP ", 7) == 0) {
        const char *p = line + 7;
        char name[128];
        if (ck_name(&p, name, sizeof(name), 0) != 0 || *p != ' ')
            return -1;
        if (ck_in(c->helped, c->nhelped, name) || ck_in(c->typed, c->ntyped, name))
            return -1; /* one HELP per name, before TYPE */
        for (p++; p < eol; p++)
            if (*p == '\\' && (++p >= eol || (*p != '\\' && *p != 'n')))
                return -1;
        if (c->nhelped == CK_MAX_TYPED)
            return -1;
        memcpy(c->helped[c->nhelped++], name, sizeof(name));
        return 0;
    }
    if (strncmp(line, "# TYPE ", 7) == 0) {
        const char *p = line + 7;
        char name[128];
        if (ck_name(&p, name, sizeof(name), 0) != 0 || *p != ' ')
            return -1;
        p++;
        size_t n = (size_t)(eol - p);
        const char *types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
        int ok = 0;
        for (size_t i = 0; i < KEEL_ARRAY_LEN(types); i++)
            if (strlen(types[i]) == n && strncmp(p, types[i], n) == 0)
                ok = 1;
        if (!ok || ck_in(c->typed, c->ntyped, name) || c->have_inf || c->ntyped == CK_MAX_TYPED)
            return -1;
        memcpy(c->typed[c->ntyped++], name, sizeof(name));
        memcpy(c->fam, name, sizeof(name));
        memcpy(c->type, p, n);
        c->type[n] = '\0';
        c->last_le = NAN;
        c->last_bucket = NAN;
        return 0;
    }
    if (line[0] == '#')
        return -1; /* we never emit other comments */
    return ck_sample(c, line, eol);
}

static size_t check_exposition(const char *text)
{
    static checker c; /* large; keep it off the stack */
    memset(&c, 0, sizeof(c));
    size_t n = strlen(text);
    if (n > 0 && text[n - 1] != '\n')
        return (size_t)-1;
    size_t lineno = 0;
    for (const char *line = text; *line != '\0';) {
        const char *eol = strchr(line, '\n');
        lineno++;
        if (eol == line || ck_line(&c, line, eol) != 0)
            return lineno;
        line = eol + 1;
    }
    if (c.have_inf)
        return lineno; /* histogram without _count */
    return 0;
}

/* ------------------------------------------------------------- fixtures -- */

static char *expose_all(keel_metrics *m, const char *prefix)
{
    keel_buf out;
    keel_buf_init(&out, 1 << 22);
    ASSERT_OK(keel_metrics_expose(m, prefix, &out));
    char *s = keel_buf_take(&out, NULL);
    assert_non_null(s);
    return s;
}

#define REFUSED_TEXT                                                                               \
    "# HELP keel_metrics_series_refused_total Label sets refused because a metric family "        \
    "reached its series cap.\n"                                                                    \
    "# TYPE keel_metrics_series_refused_total counter\n"                                          \
    "keel_metrics_series_refused_total 0\n"

static const char golden_app[] =
    "# HELP app_requests_total Total requests.\n"
    "# TYPE app_requests_total counter\n"
    "app_requests_total{method=\"GET\",code=\"200\"} 1027\n"
    "app_requests_total{method=\"POST\",code=\"201\"} 3\n"
    "# HELP app_build_info Build \\\\ info\\nsecond line\n"
    "# TYPE app_build_info gauge\n"
    "app_build_info{version=\"1.0.0\",note=\"say \\\"hi\\\"\\\\n\\nok\"} 1\n"
    "# HELP app_latency_seconds Latency.\n"
    "# TYPE app_latency_seconds histogram\n"
    "app_latency_seconds_bucket{route=\"/v1\",le=\"0.25\"} 2\n"
    "app_latency_seconds_bucket{route=\"/v1\",le=\"0.5\"} 3\n"
    "app_latency_seconds_bucket{route=\"/v1\",le=\"1\"} 4\n"
    "app_latency_seconds_bucket{route=\"/v1\",le=\"+Inf\"} 5\n"
    "app_latency_seconds_sum{route=\"/v1\"} 5.5\n"
    "app_latency_seconds_count{route=\"/v1\"} 5\n"
    "# HELP app_starts_total Process starts.\n"
    "# TYPE app_starts_total counter\n"
    "app_starts_total 0\n"
    "# HELP app_queue_depth Queue depth.\n"
    "# TYPE app_queue_depth gauge\n"
    "# HELP app_empty_seconds Nothing yet.\n"
    "# TYPE app_empty_seconds histogram\n"
    "app_empty_seconds_bucket{le=\"0.005\"} 0\n"
    "app_empty_seconds_bucket{le=\"0.01\"} 0\n"
    "app_empty_seconds_bucket{le=\"0.025\"} 0\n"
    "app_empty_seconds_bucket{le=\"0.05\"} 0\n"
    "app_empty_seconds_bucket{le=\"0.1\"} 0\n"
    "app_empty_seconds_bucket{le=\"0.25\"} 0\n"
    "app_empty_seconds_bucket{le=\"0.5\"} 0\n"
    "app_empty_seconds_bucket{le=\"1\"} 0\n"
    "app_empty_seconds_bucket{le=\"2.5\"} 0\n"
    "app_empty_seconds_bucket{le=\"5\"} 0\n"
    "app_empty_seconds_bucket{le=\"10\"} 0\n"
    "app_empty_seconds_bucket{le=\"+Inf\"} 0\n"
    "app_empty_seconds_sum 0\n"
    "app_empty_seconds_count 0\n"
    "# TYPE app_nohelp gauge\n"
    "app_nohelp -0.5\n";

static keel_metrics *golden_registry(void)
{
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_metric *req, *info, *lat, *starts, *queue, *empty, *nohelp;
    const char *req_l[] = {"method", "code", NULL};
    const char *info_l[] = {"version", "note", NULL};
    const char *route_l[] = {"route", NULL};
    const char *queue_l[] = {"queue", NULL};
    const double b[] = {0.25, 0.5, 1};
    ASSERT_OK(keel_metrics_counter(m, "app_requests_total", "Total requests.", req_l, &req));
    ASSERT_OK(keel_metrics_gauge(m, "app_build_info", "Build \\ info\nsecond line", info_l, &info));
    ASSERT_OK(keel_metrics_histogram(m, "app_latency_seconds", "Latency.", route_l, b, 3, &lat));
    ASSERT_OK(keel_metrics_counter(m, "app_starts_total", "Process starts.", NULL, &starts));
    ASSERT_OK(keel_metrics_gauge(m, "app_queue_depth", "Queue depth.", queue_l, &queue));
    ASSERT_OK(keel_metrics_histogram(m, "app_empty_seconds", "Nothing yet.", NULL, NULL, 0,
                                     &empty));
    ASSERT_OK(keel_metrics_gauge(m, "app_nohelp", NULL, NULL, &nohelp));

    const char *get[] = {"GET", "200"};
    const char *post[] = {"POST", "201"};
    ASSERT_OK(keel_metric_add(req, get, 1000));
    ASSERT_OK(keel_metric_add(req, post, 3));
    ASSERT_OK(keel_metric_add(req, get, 27));
    const char *note[] = {"1.0.0", "say \"hi\"\\n\nok"};
    ASSERT_OK(keel_metric_set(info, note, 1));
    const char *v1[] = {"/v1"};
    const double obs[] = {0.125, 0.25, 0.375, 0.75, 4};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(obs); i++)
        ASSERT_OK(keel_metric_observe(lat, v1, obs[i]));
    ASSERT_OK(keel_metric_set(nohelp, NULL, -0.5));
    return m;
}

/* ---------------------------------------------------------------- tests -- */

static void test_golden(void **state)
{
    (void)state;
    keel_metrics *m = golden_registry();
    char *s = expose_all(m, NULL);
    char expected[sizeof(golden_app) + 256];
    snprintf(expected, sizeof(expected), "%s%s", REFUSED_TEXT, golden_app);
    assert_string_equal(expected, s);
    assert_int_equal(0, check_exposition(s));
    keel_free(s);
    /* Exposing twice gives the same text (nothing is reset by reading). */
    s = expose_all(m, "");
    assert_string_equal(expected, s);
    keel_free(s);
    keel_metrics_destroy(m);
}

static void test_prefix_filter(void **state)
{
    (void)state;
    keel_metrics *m = golden_registry();
    char *s = expose_all(m, "app_");
    assert_string_equal(golden_app, s);
    keel_free(s);
    s = expose_all(m, "app_l");
    assert_string_equal("# HELP app_latency_seconds Latency.\n"
                        "# TYPE app_latency_seconds histogram\n"
                        "app_latency_seconds_bucket{route=\"/v1\",le=\"0.25\"} 2\n"
                        "app_latency_seconds_bucket{route=\"/v1\",le=\"0.5\"} 3\n"
                        "app_latency_seconds_bucket{route=\"/v1\",le=\"1\"} 4\n"
                        "app_latency_seconds_bucket{route=\"/v1\",le=\"+Inf\"} 5\n"
                        "app_latency_seconds_sum{route=\"/v1\"} 5.5\n"
                        "app_latency_seconds_count{route=\"/v1\"} 5\n",
                        s);
    keel_free(s);
    s = expose_all(m, "nothing_matches");
    assert_string_equal("", s);
    keel_free(s);
    s = expose_all(m, "keel_");
    assert_string_equal(REFUSED_TEXT, s);
    keel_free(s);
    keel_metrics_destroy(m);
}

static void test_appends_and_caps(void **state)
{
    (void)state;
    keel_metrics *m = golden_registry();
    keel_buf out;
    /* Appends after existing content. */
    keel_buf_init(&out, 1 << 20);
    ASSERT_OK(keel_buf_append_str(&out, "PRE\n"));
    ASSERT_OK(keel_metrics_expose(m, "app_starts", &out));
    assert_string_equal("PRE\n# HELP app_starts_total Process starts.\n"
                        "# TYPE app_starts_total counter\napp_starts_total 0\n",
                        out.ptr);
    keel_buf_cleanup(&out);
    /* Every cap short of the full size fails with ETOOBIG and leaves the buffer as it was. */
    char *full = expose_all(m, NULL);
    size_t need = strlen(full);
    for (size_t cap = 0; cap < need; cap += (cap < 64 ? 1 : 97)) {
        keel_buf_init(&out, cap + 4);
        ASSERT_OK(keel_buf_append_str(&out, "abcd"));
        assert_int_equal(KEEL_ETOOBIG, keel_metrics_expose(m, NULL, &out));
        assert_int_equal(4, out.len);
        assert_string_equal("abcd", out.ptr);
        keel_buf_cleanup(&out);
    }
    keel_buf_init(&out, need);
    ASSERT_OK(keel_metrics_expose(m, NULL, &out));
    assert_string_equal(full, out.ptr);
    keel_buf_cleanup(&out);
    keel_free(full);
    assert_int_equal(KEEL_EINVAL, keel_metrics_expose(NULL, NULL, &out));
    assert_int_equal(KEEL_EINVAL, keel_metrics_expose(m, NULL, NULL));
    keel_metrics_destroy(m);
}

static void check_fmt(double v, const char *want)
{
    char out[KEEL__METRICS_NUM_SIZE];
    size_t n = keel__metrics_format_double(v, out);
    assert_string_equal(want, out);
    assert_int_equal(strlen(want), n);
}

static void test_format_double(void **state)
{
    (void)state;
    check_fmt(0.0, "0");
    check_fmt(-0.0, "0");
    check_fmt(1027, "1027");
    check_fmt(-5, "-5");
    check_fmt(0.1, "0.1");
    check_fmt(3.2, "3.2");
    check_fmt(0.005, "0.005");
    check_fmt(2.5, "2.5");
    check_fmt(1e-05, "1e-05");
    check_fmt(0.1 + 0.2, "0.30000000000000004");
    check_fmt(1.0 / 3.0, "0.3333333333333333");
    check_fmt(9007199254740991.0, "9007199254740991");
    check_fmt(9007199254740992.0, "9007199254740992"); /* %.16g, still no exponent */
    check_fmt(123456789012345678.0, "1.2345678901234568e+17");
    check_fmt(1e20, "1e+20");
    check_fmt(-1.5e300, "-1.5e+300");
    check_fmt(5e-324, "4.94065645841247e-324"); /* subnormal: 15 digits suffice */
    check_fmt(18446744073709551615.0, "1.8446744073709552e+19");
    check_fmt(NAN, "NaN");
    check_fmt(INFINITY, "+Inf");
    check_fmt(-INFINITY, "-Inf");

    /* Round trip over many bit patterns (a fixed LCG, so the test is repeatable). */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 200000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double v = keel__bitsd(x);
        if (i % 3 == 0)
            v = (double)(int64_t)(x >> 12) / 1024.0; /* plenty of "ordinary" values */
        char out[KEEL__METRICS_NUM_SIZE];
        keel__metrics_format_double(v, out);
        if (isnan(v)) {
            assert_string_equal("NaN", out);
            continue;
        }
        char *end;
        double back = strtod(out, &end);
        assert_int_equal('\0', *end);
        if (back != v) {
            print_error("format(%a) = %s\n", v, out);
            fail();
        }
    }
}

static int g_collects;

static void bump_collector(keel_metrics *m, void *ud)
{
    keel_series *s = ud;
    keel_series_add(s, 1);
    g_collects++;
    /* Collectors may create series (and take locks) while running. */
    keel_metric *f;
    const char *l[] = {"k", NULL};
    const char *v[] = {"created"};
    if (keel_metrics_gauge(m, "col_dynamic", "Made by a collector.", l, &f) == KEEL_OK)
        (void)keel_metric_set(f, v, 7);
}

static void test_collectors_run_first(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    keel_metric *f;
    keel_series *s;
    ASSERT_OK(keel_metrics_counter(m, "col_runs_total", "Collector runs.", NULL, &f));
    ASSERT_OK(keel_metric_series(f, NULL, &s));
    g_collects = 0;
    ASSERT_OK(keel_metrics_add_collector(m, bump_collector, s));
    assert_int_equal(KEEL_EINVAL, keel_metrics_add_collector(m, NULL, NULL));
    assert_int_equal(KEEL_EINVAL, keel_metrics_add_collector(NULL, bump_collector, NULL));
    char *t = expose_all(m, "col_");
    assert_int_equal(1, g_collects);
    assert_string_equal("# HELP col_runs_total Collector runs.\n"
                        "# TYPE col_runs_total counter\n"
                        "col_runs_total 1\n"
                        "# HELP col_dynamic Made by a collector.\n"
                        "# TYPE col_dynamic gauge\n"
                        "col_dynamic{k=\"created\"} 7\n",
                        t);
    keel_free(t);
    t = expose_all(m, "col_runs");
    assert_int_equal(2, g_collects);
    assert_string_equal("# HELP col_runs_total Collector runs.\n"
                        "# TYPE col_runs_total counter\n"
                        "col_runs_total 2\n",
                        t);
    keel_free(t);
    keel_metrics_destroy(m);
}

static void test_full_registry_grammar(void **state)
{
    (void)state;
    keel_metrics *m = golden_registry();
    ASSERT_OK(keel_metrics_add_process_collector(m));
    keel_metric *g, *h, *c;
    const char *l3[] = {"path", "q", "_u", NULL};
    ASSERT_OK(keel_metrics_gauge(m, "weird_values", "Help with \\backslash\\ and \"quotes\".",
                                 l3, &g));
    const char *odd[][3] = {
        {"/a\\b", "\"", ""},       {"\n\n", "\\\\", "x,y=z"}, {"é ü 日本", "}{", "a\"b\\c\nd"},
        {"trailing\\", "#", " "},
    };
    const double vals[] = {NAN, INFINITY, -INFINITY, 1e-300};
    for (size_t i = 0; i < KEEL_ARRAY_LEN(odd); i++)
        ASSERT_OK(keel_metric_set(g, odd[i], vals[i]));
    const double b[] = {-1, 0, 1e-9, 1e9};
    const char *l1[] = {"k", NULL};
    ASSERT_OK(keel_metrics_histogram(m, "wide_seconds", "Wide.", l1, b, 4, &h));
    char k[16];
    const char *kv[] = {k};
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "s%d", i % 5);
        ASSERT_OK(keel_metric_observe(h, kv, (double)(i - 10) * 0.37));
    }
    ASSERT_OK(keel_metrics_counter(m, "big_total", "Big.", l1, &c));
    ASSERT_OK(keel_metric_add(c, kv, 1e300));
    char *s = expose_all(m, NULL);
    size_t bad = check_exposition(s);
    if (bad != 0)
        print_error("line %zu is not valid text format:\n%s\n", bad, s);
    assert_int_equal(0, bad);
    assert_non_null(strstr(s, "weird_values{path=\"/a\\\\b\",q=\"\\\"\",_u=\"\"} NaN\n"));
    assert_non_null(strstr(s, "weird_values{path=\"\\n\\n\",q=\"\\\\\\\\\",_u=\"x,y=z\"} +Inf\n"));
    assert_non_null(strstr(s, "} -Inf\n"));
    assert_non_null(strstr(s, "wide_seconds_bucket{k=\"s0\",le=\"-1\"} "));
    assert_non_null(strstr(s, "wide_seconds_bucket{k=\"s0\",le=\"1e-09\"} "));
    assert_non_null(strstr(s, "wide_seconds_bucket{k=\"s0\",le=\"1000000000\"} "));
    assert_non_null(strstr(s, "big_total{k=\"s4\"} 1e+300\n"));
    assert_non_null(strstr(s, "# TYPE process_open_fds gauge\n"));
    keel_free(s);
    keel_metrics_destroy(m);
}

/* The checker itself must reject what is not text format (else the test above proves
 * nothing). */
static void test_checker_rejects_bad_text(void **state)
{
    (void)state;
    assert_int_equal(0, check_exposition(""));
    assert_int_equal(0, check_exposition("# TYPE a counter\na 1\n"));
    assert_int_equal((size_t)-1, check_exposition("# TYPE a counter\na 1"));
    assert_int_equal(2, check_exposition("# TYPE a counter\nb 1\n"));
    assert_int_equal(1, check_exposition("a 1\n"));
    assert_int_equal(2, check_exposition("# TYPE a counter\na{x=\"1} 1\n"));
    assert_int_equal(2, check_exposition("# TYPE a counter\na{x=\"\\t\"} 1\n"));
    assert_int_equal(2, check_exposition("# TYPE a counter\na{__x=\"1\"} 1\n"));
    assert_int_equal(2, check_exposition("# TYPE a counter\na 1.2.3x\n"));
    assert_int_equal(2, check_exposition("# TYPE a counter\na inf\n"));
    assert_int_equal(1, check_exposition("# TYPE a countr\n"));
    assert_int_equal(2, check_exposition("# TYPE a gauge\n# TYPE a gauge\n"));
    assert_int_equal(1, check_exposition("# HELP a bad \\t escape\n"));
    assert_int_equal(3, check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                                         "h_bucket{le=\"0.5\"} 2\n"));
    assert_int_equal(3, check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                                         "h_bucket{le=\"2\"} 1\n"));
    assert_int_equal(4, check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                                         "h_bucket{le=\"+Inf\"} 3\nh_count 2\n"));
    assert_int_equal(3, check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                                         "h_sum 2\n"));
    assert_int_equal(3, check_exposition("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\n"
                                         "h_sum 2\n"));
    assert_int_equal(0, check_exposition("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\n"
                                         "h_sum 2\nh_count 3\n"));
}

/* Scrapes racing with inserts and updates (run under TSan in CI): every exposition is
 * well-formed and the final one is exact. */
typedef struct racer {
    keel_metric *c, *h;
    int id;
} racer;

static void *racer_main(void *arg)
{
    racer *r = arg;
    char k[16];
    const char *kv[] = {k};
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "t%d_%d", r->id, i % 200);
        if (keel_metric_add(r->c, kv, 1) != KEEL_OK || keel_metric_observe(r->h, kv, 0.1) != KEEL_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_expose_during_updates(void **state)
{
    (void)state;
    keel_metrics *m;
    ASSERT_OK(keel_metrics_create(&m));
    const char *l[] = {"k", NULL};
    racer r[2];
    pthread_t t[2];
    keel_metric *c, *h;
    ASSERT_OK(keel_metrics_counter(m, "race_total", "Race.", l, &c));
    ASSERT_OK(keel_metrics_histogram(m, "race_seconds", "Race.", l, NULL, 0, &h));
    for (int i = 0; i < 2; i++) {
        r[i] = (racer){c, h, i};
        assert_int_equal(0, pthread_create(&t[i], NULL, racer_main, &r[i]));
    }
    for (int i = 0; i < 20; i++) {
        char *s = expose_all(m, NULL);
        assert_int_equal(0, check_exposition(s));
        keel_free(s);
    }
    for (int i = 0; i < 2; i++) {
        void *rv;
        assert_int_equal(0, pthread_join(t[i], &rv));
        assert_null(rv);
    }
    char *s = expose_all(m, "race_total");
    assert_int_equal(0, check_exposition(s));
    assert_non_null(strstr(s, "race_total{k=\"t0_0\"} 10\n"));
    assert_non_null(strstr(s, "race_total{k=\"t1_199\"} 10\n"));
    keel_free(s);
    assert_int_equal(400, c->nseries);
    keel_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_rejects_bad_text),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_prefix_filter),
        cmocka_unit_test(test_appends_and_caps),
        cmocka_unit_test(test_format_double),
        cmocka_unit_test(test_collectors_run_first),
        cmocka_unit_test(test_full_registry_grammar),
        cmocka_unit_test(test_expose_during_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
