/*
 * bench/store_bench.c - keel's store interface against the engines' raw C APIs.
 *
 * For each engine, the same two operations run through the raw API and through keel:
 *   insert  one row (id, name, price) per statement, autocommit, N rows;
 *   select  one row by primary key, random existing id, N lookups.
 * raw:  sqlite3_prepare_v2 once, then bind/step/reset per row; libpq PQprepare once, then
 *       PQexecPrepared per row with text parameters.
 * keel: one keel_db acquired once; keel_db_prepare per operation (a statement-cache lookup
 *       after the first), bind, step - the way application code uses the store.
 * Runs are interleaved (raw, keel, raw, keel, raw, keel) so machine noise hits both, and the
 * median ops/s of each is compared: overhead % = (raw / keel - 1) * 100, target <= 10 %.
 *
 * Engines: SQLite in a fresh temporary directory (WAL, synchronous=NORMAL, foreign_keys=ON,
 * busy_timeout=5000: the pragmas keel sets on its connections); PostgreSQL at
 * KEEL_TEST_PG_DSN (skipped when unset).  Raw and keel use separate tables, dropped at the
 * end.  N: 20000 (SQLite), 5000 (PostgreSQL), or BENCH_ROWS for both.
 *
 * Exits 0 whatever the numbers; 1 when something fails to open or run.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, clock_gettime */

#include <keel/keel.h>
#include <keel/store.h>

#include <errno.h>
#include <stdarg.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 3
#define TARGET_OVERHEAD_PCT 10.0
#define MAX_ROWS 100000000UL

enum { OP_INSERT = 0, OP_SELECT = 1, OP_COUNT = 2 };
static const char *const op_names[OP_COUNT] = {"insert", "select"};

/* Portable SQL (keel) and engine SQL (raw) for one engine. */
typedef struct engine_sql {
    const char *name;
    const char *create_raw, *create_keel;
    const char *drop_raw, *drop_keel;
    const char *insert_raw, *select_raw;   /* engine placeholders, table bench_raw */
    const char *insert_keel, *select_keel; /* '?' placeholders, table bench_keel */
} engine_sql;

static const engine_sql sqlite_sql = {
    "sqlite",
    "CREATE TABLE keel_bench_raw (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price INTEGER)",
    "CREATE TABLE keel_bench_keel (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price INTEGER)",
    "DROP TABLE IF EXISTS keel_bench_raw",
    "DROP TABLE IF EXISTS keel_bench_keel",
    "INSERT INTO keel_bench_raw (id, name, price) VALUES (?, ?, ?)",
    "SELECT id, name, price FROM keel_bench_raw WHERE id = ?",
    "INSERT INTO keel_bench_keel (id, name, price) VALUES (?, ?, ?)",
    "SELECT id, name, price FROM keel_bench_keel WHERE id = ?",
};

static const engine_sql pg_sql = {
    "postgres",
    "CREATE TABLE keel_bench_raw (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price INTEGER)",
    "CREATE TABLE keel_bench_keel (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price INTEGER)",
    "DROP TABLE IF EXISTS keel_bench_raw",
    "DROP TABLE IF EXISTS keel_bench_keel",
    "INSERT INTO keel_bench_raw (id, name, price) VALUES ($1, $2, $3)",
    "SELECT id, name, price FROM keel_bench_raw WHERE id = $1",
    "INSERT INTO keel_bench_keel (id, name, price) VALUES (?, ?, ?)",
    "SELECT id, name, price FROM keel_bench_keel WHERE id = ?",
};

/* ----------------------------------------------------------------- helpers -- */

static void die(const char *fmt, ...) KEEL_PRINTF(1, 2);
static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "store_bench: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: a deterministic id sequence, the same for raw and keel in a round. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int64_t random_id(uint64_t *s, unsigned long max_id)
{
    return (int64_t)(rng_next(s) % max_id) + 1;
}

/* Row content derived from the id, so both sides insert the same bytes. */
static void row_name(int64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "item-%lld", (long long)id);
}

static int64_t row_price(int64_t id)
{
    return (id * 7919) % 100000;
}

static double median3(const double v[ROUNDS])
{
    double a[ROUNDS];
    memcpy(a, v, sizeof(a));
    for (int i = 1; i < ROUNDS; i++)
        for (int j = i; j > 0 && a[j - 1] > a[j]; j--) {
            double t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
    return a[ROUNDS / 2];
}

static unsigned long rows_from_env(unsigned long dflt)
{
    const char *s = getenv("BENCH_ROWS");
    char *end = NULL;
    unsigned long v;
    if (!s || !*s)
        return dflt;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || s[0] == '-' || v == 0 || v > MAX_ROWS)
        die("BENCH_ROWS must be a whole number from 1 to %lu, got '%s'", MAX_ROWS, s);
    return v;
}

static void check_keel(keel_err rc, const char *what, const keel_diag *d)
{
    if (rc != KEEL_OK)
        die("keel: %s: %s", what, d && d->msg[0] ? d->msg : keel_strerror(rc));
}

/* Sum of what the selects read, printed so the reads cannot be optimised away and so a
 * wrong result (raw and keel reading different rows) is visible. */
typedef struct run_result {
    double ops_per_s;
    uint64_t checksum;
} run_result;

/* ------------------------------------------------------------- raw SQLite -- */

typedef struct raw_sqlite {
    sqlite3 *db;
    sqlite3_stmt *ins, *sel;
} raw_sqlite;

static void sqlite_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "store_bench: error: sqlite: %s: %s\n", sql, err ? err : "?");
        sqlite3_free(err);
        exit(1);
    }
}

static void raw_sqlite_open(raw_sqlite *r, const char *path)
{
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                          SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        die("sqlite: cannot open %s: %s", path, r->db ? sqlite3_errmsg(r->db) : "out of memory");
    sqlite_exec(r->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                       "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;");
}

static void raw_sqlite_prepare(raw_sqlite *r)
{
    if (sqlite3_prepare_v2(r->db, sqlite_sql.insert_raw, -1, &r->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db, sqlite_sql.select_raw, -1, &r->sel, NULL) != SQLITE_OK)
        die("sqlite: prepare: %s", sqlite3_errmsg(r->db));
}

static void raw_sqlite_close(raw_sqlite *r)
{
    sqlite3_finalize(r->ins);
    sqlite3_finalize(r->sel);
    sqlite3_close(r->db);
}

static run_result raw_sqlite_insert(raw_sqlite *r, int64_t first, unsigned long n)
{
    char name[32];
    run_result res = {0, 0};
    double t0 = now_s();
    for (unsigned long i = 0; i < n; i++) {
        int64_t id = first + (int64_t)i;
        row_name(id, name, sizeof(name));
        sqlite3_bind_int64(r->ins, 1, id);
        sqlite3_bind_text(r->ins, 2, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(r->ins, 3, row_price(id));
        if (sqlite3_step(r->ins) != SQLITE_DONE)
            die("sqlite: raw insert: %s", sqlite3_errmsg(r->db));
        sqlite3_reset(r->ins);
    }
    res.ops_per_s = (double)n / (now_s() - t0);
    return res;
}

static run_result raw_sqlite_select(raw_sqlite *r, uint64_t seed, unsigned long n,
                                    unsigned long max_id)
{
    run_result res = {0, 0};
    double t0 = now_s();
    for (unsigned long i = 0; i < n; i++) {
        sqlite3_bind_int64(r->sel, 1, random_id(&seed, max_id));
        if (sqlite3_step(r->sel) != SQLITE_ROW)
            die("sqlite: raw select: no row (%s)", sqlite3_errmsg(r->db));
        const unsigned char *name = sqlite3_column_text(r->sel, 1);
        res.checksum += (uint64_t)sqlite3_column_int64(r->sel, 0) +
                        (uint64_t)sqlite3_column_int64(r->sel, 2) + (name ? name[5] : 0u);
        sqlite3_reset(r->sel);
    }
    res.ops_per_s = (double)n / (now_s() - t0);
    return res;
}

/* ---------------------------------------------------------- raw PostgreSQL -- */

static void pg_exec(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "store_bench: error: postgres: %s: %s\n", sql, PQerrorMessage(c));
        PQclear(res);
        exit(1);
    }
    PQclear(res);
}

static void raw_pg_prepare(PGconn *c)
{
    PGresult *res = PQprepare(c, "bench_ins", pg_sql.insert_raw, 3, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die("postgres: prepare insert: %s", PQerrorMessage(c));
    PQclear(res);
    res = PQprepare(c, "bench_sel", pg_sql.select_raw, 1, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die("postgres: prepare select: %s", PQerrorMessage(c));
    PQclear(res);
}

static run_result raw_pg_insert(PGconn *c, int64_t first, unsigned long n)
{
    char id_s[24], name[32], price_s[24];
    const char *params[3] = {id_s, name, price_s};
    run_result rr = {0, 0};
    double t0 = now_s();
    for (unsigned long i = 0; i < n; i++) {
        int64_t id = first + (int64_t)i;
        snprintf(id_s, sizeof(id_s), "%lld", (long long)id);
        row_name(id, name, sizeof(name));
        snprintf(price_s, sizeof(price_s), "%lld", (long long)row_price(id));
        PGresult *res = PQexecPrepared(c, "bench_ins", 3, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            die("postgres: raw insert: %s", PQerrorMessage(c));
        PQclear(res);
    }
    rr.ops_per_s = (double)n / (now_s() - t0);
    return rr;
}

static run_result raw_pg_select(PGconn *c, uint64_t seed, unsigned long n, unsigned long max_id)
{
    char id_s[24];
    const char *params[1] = {id_s};
    run_result rr = {0, 0};
    double t0 = now_s();
    for (unsigned long i = 0; i < n; i++) {
        snprintf(id_s, sizeof(id_s), "%lld", (long long)random_id(&seed, max_id));
        PGresult *res = PQexecPrepared(c, "bench_sel", 1, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
            die("postgres: raw select: no row (%s)", PQerrorMessage(c));
        const char *name = PQgetvalue(res, 0, 1);
        rr.checksum += (uint64_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10) +
                       (uint64_t)strtoll(PQgetvalue(res, 0, 2), NULL, 10) +
                       (unsigned char)name[5];
        PQclear(res);
    }
    rr.ops_per_s = (double)n / (now_s() - t0);
    return rr;
}

/* ------------------------------------------------------------------- keel -- */

static run_result keel_insert(keel_db *db, const engine_sql *q, int64_t first, unsigned long n)
{
    char name[32];
    keel_diag d;
    run_result res = {0, 0};
    double t0 = now_s();
    for (unsigned long i = 0; i < n; i++) {
        int64_t id = first + (int64_t)i;
        keel_stmt *st;
        row_name(id, name, sizeof(name));
        check_keel(keel_db_prepare(db, q->insert_keel, &st, &d), "prepare insert", &d);
        check_keel(keel_stmt_bind_int64(st, 1, id), "bind", NULL);
        check_keel(keel_stmt_bind_text(st, 2, name, SIZE_MAX), "bind", NULL);
        check_keel(keel_stmt_bind_int64(st, 3, row_price(id)), "bind", NULL);
        int r = keel_stmt_step(st, &d);
        if (r != 0)
            check_keel(r < 0 ? (keel_err)r : KEEL_ESTATE, "insert", r < 0 ? &d : NULL);
    }
    res.ops_per_s = (double)n / (now_s() - t0);
    return res;
}

static run_result keel_select(keel_db *db, const engine_sql *q, uint64_t seed, unsigned long n,
                              unsigned long max_id)
{
    keel_diag d;
    keel_stmt *last = NULL;
    run_result res = {0, 0};
    double t0 = now_s();
    for (unsigned long i = 0; i < n; i++) {
        keel_stmt *st;
        size_t len;
        check_keel(keel_db_prepare(db, q->select_keel, &st, &d), "prepare select", &d);
        check_keel(keel_stmt_bind_int64(st, 1, random_id(&seed, max_id)), "bind", NULL);
        int r = keel_stmt_step(st, &d);
        if (r != 1)
            check_keel(r < 0 ? (keel_err)r : KEEL_ENOTFOUND, "select", r < 0 ? &d : NULL);
        const char *name = keel_stmt_text(st, 1, &len);
        res.checksum += (uint64_t)keel_stmt_int64(st, 0) + (uint64_t)keel_stmt_int64(st, 2) +
                        (name && len > 5 ? (unsigned char)name[5] : 0u);
        last = st;
    }
    res.ops_per_s = (double)n / (now_s() - t0);
    /* Like application code, each lookup leaves its statement after the one row it read; the
     * next prepare resets it.  Finish the last one outside the timing: on SQLite an unfinished
     * SELECT keeps a WAL read lock, and while one connection of the process holds it the other
     * connection (raw) takes the same lock without a system call, which would flatter raw. */
    if (last != NULL && keel_stmt_step(last, &d) < 0)
        check_keel(KEEL_EIO, "finish select", &d);
    return res;
}

static int64_t keel_count(keel_db *db, const char *table)
{
    char sql[64];
    keel_stmt *st;
    keel_diag d;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    check_keel(keel_db_prepare(db, sql, &st, &d), "prepare count", &d);
    int r = keel_stmt_step(st, &d);
    if (r != 1)
        check_keel(r < 0 ? (keel_err)r : KEEL_ESTATE, "count", r < 0 ? &d : NULL);
    int64_t v = keel_stmt_int64(st, 0);
    (void)keel_stmt_step(st, NULL);
    return v;
}

/* -------------------------------------------------------------- reporting -- */

/* The operations one engine exposes to the round loop. */
typedef struct bench_ops {
    void *raw;
    keel_db *kdb;
    const engine_sql *q;
    run_result (*raw_insert)(void *raw, int64_t first, unsigned long n);
    run_result (*raw_select)(void *raw, uint64_t seed, unsigned long n, unsigned long max_id);
} bench_ops;

static void print_row(const char *label, double raw, double keel_v)
{
    printf("   %-7s %14.0f %14.0f %+9.1f %%\n", label, raw, keel_v, (raw / keel_v - 1.0) * 100.0);
}

static int run_engine(const bench_ops *o, unsigned long n)
{
    double raw_v[OP_COUNT][ROUNDS], keel_v[OP_COUNT][ROUNDS];
    uint64_t raw_sum = 0, keel_sum = 0;
    unsigned long max_id = n * ROUNDS;
    int missed = 0;

    /* Inserts: round r writes ids r*n+1 .. (r+1)*n into each table. */
    for (int r = 0; r < ROUNDS; r++) {
        int64_t first = (int64_t)r * (int64_t)n + 1;
        raw_v[OP_INSERT][r] = o->raw_insert(o->raw, first, n).ops_per_s;
        keel_v[OP_INSERT][r] = keel_insert(o->kdb, o->q, first, n).ops_per_s;
    }
    int64_t c_keel = keel_count(o->kdb, "keel_bench_keel");
    int64_t c_raw = keel_count(o->kdb, "keel_bench_raw");
    if (c_keel != (int64_t)max_id || c_raw != (int64_t)max_id) {
        fprintf(stderr, "store_bench: error: %s: expected %lu rows per table, raw has %lld, keel %lld\n",
                o->q->name, max_id, (long long)c_raw, (long long)c_keel);
        exit(1);
    }
    /* Unmeasured warm-up of both lookup paths (page caches, the keel statement cache). */
    {
        unsigned long w = n / 10 + 1;
        (void)o->raw_select(o->raw, 1, w, max_id);
        (void)keel_select(o->kdb, o->q, 1, w, max_id);
    }
    /* Lookups: both sides read the same random id sequence in a round. */
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t seed = 0x9E3779B97F4A7C15ULL * (uint64_t)(r + 1);
        run_result a = o->raw_select(o->raw, seed, n, max_id);
        run_result b = keel_select(o->kdb, o->q, seed, n, max_id);
        raw_v[OP_SELECT][r] = a.ops_per_s;
        keel_v[OP_SELECT][r] = b.ops_per_s;
        raw_sum += a.checksum;
        keel_sum += b.checksum;
    }
    if (raw_sum != keel_sum) {
        fprintf(stderr, "store_bench: error: %s: raw and keel lookups read different rows\n",
                o->q->name);
        exit(1);
    }

    for (int op = 0; op < OP_COUNT; op++) {
        printf("   %s, %lu %s per run (ops/s)\n", op_names[op], n,
               op == OP_INSERT ? "single-row autocommit INSERTs" : "primary-key SELECTs");
        printf("   %-7s %14s %14s %11s\n", "run", "raw", "keel", "overhead");
        for (int r = 0; r < ROUNDS; r++) {
            char label[16];
            snprintf(label, sizeof(label), "%d", r + 1);
            print_row(label, raw_v[op][r], keel_v[op][r]);
        }
        double mr = median3(raw_v[op]), mk = median3(keel_v[op]);
        print_row("median", mr, mk);
    }
    printf("   summary (medians)\n");
    for (int op = 0; op < OP_COUNT; op++) {
        double mr = median3(raw_v[op]), mk = median3(keel_v[op]);
        double ov = (mr / mk - 1.0) * 100.0;
        int ok = ov <= TARGET_OVERHEAD_PCT;
        missed |= !ok;
        printf("   %s %-6s raw %10.0f ops/s  keel %10.0f ops/s  overhead %+6.1f %%   "
               "target <= %.0f %% %s\n",
               o->q->name, op_names[op], mr, mk, ov, TARGET_OVERHEAD_PCT, ok ? "ok" : "MISSED");
    }
    return missed;
}

/* ----------------------------------------------------------------- SQLite -- */

static run_result raw_sqlite_insert_v(void *raw, int64_t first, unsigned long n)
{
    return raw_sqlite_insert(raw, first, n);
}

static run_result raw_sqlite_select_v(void *raw, uint64_t seed, unsigned long n,
                                      unsigned long max_id)
{
    return raw_sqlite_select(raw, seed, n, max_id);
}

static void remove_file(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    (void)unlink(path);
}

static void bench_sqlite(unsigned long n)
{
    char dir[] = "/tmp/keel-storebench.XXXXXX";
    char path[512], url[520];
    const char *tmpdir = getenv("TMPDIR");
    char dirbuf[400];
    raw_sqlite r = {NULL, NULL, NULL};
    keel_store *s = NULL;
    keel_db *db = NULL;
    keel_store_config cfg;
    keel_diag d;

    if (tmpdir && *tmpdir && strlen(tmpdir) < 300) {
        snprintf(dirbuf, sizeof(dirbuf), "%s/keel-storebench.XXXXXX", tmpdir);
    } else {
        snprintf(dirbuf, sizeof(dirbuf), "%s", dir);
    }
    if (!mkdtemp(dirbuf))
        die("cannot create a temporary directory %s: %s", dirbuf, strerror(errno));
    snprintf(path, sizeof(path), "%s/bench.db", dirbuf);
    snprintf(url, sizeof(url), "sqlite:%s", path);

    printf("\n== sqlite %s  (%s, WAL, synchronous=NORMAL), N = %lu\n", sqlite3_libversion(), path,
           n);
    raw_sqlite_open(&r, path);
    sqlite_exec(r.db, sqlite_sql.drop_raw);
    sqlite_exec(r.db, sqlite_sql.drop_keel);
    sqlite_exec(r.db, sqlite_sql.create_raw);
    sqlite_exec(r.db, sqlite_sql.create_keel);
    raw_sqlite_prepare(&r);

    keel_store_config_default(&cfg);
    cfg.url = url;
    check_keel(keel_store_open(&s, &cfg, &d), "open sqlite store", &d);
    check_keel(keel_db_acquire(s, &db, &d), "acquire", &d);

    bench_ops o = {&r, db, &sqlite_sql, raw_sqlite_insert_v, raw_sqlite_select_v};
    (void)run_engine(&o, n);

    keel_db_release(db);
    keel_store_close(s);
    sqlite3_finalize(r.ins);
    sqlite3_finalize(r.sel);
    r.ins = r.sel = NULL;
    sqlite_exec(r.db, sqlite_sql.drop_raw);
    sqlite_exec(r.db, sqlite_sql.drop_keel);
    raw_sqlite_close(&r);
    remove_file(dirbuf, "bench.db");
    remove_file(dirbuf, "bench.db-wal");
    remove_file(dirbuf, "bench.db-shm");
    if (rmdir(dirbuf) != 0)
        fprintf(stderr, "store_bench: warning: cannot remove %s: %s\n", dirbuf, strerror(errno));
}

/* ------------------------------------------------------------- PostgreSQL -- */

static run_result raw_pg_insert_v(void *raw, int64_t first, unsigned long n)
{
    return raw_pg_insert(raw, first, n);
}

static run_result raw_pg_select_v(void *raw, uint64_t seed, unsigned long n, unsigned long max_id)
{
    return raw_pg_select(raw, seed, n, max_id);
}

static void bench_pg(unsigned long n)
{
    const char *dsn = getenv("KEEL_TEST_PG_DSN");
    keel_store *s = NULL;
    keel_db *db = NULL;
    keel_store_config cfg;
    keel_diag d;
    PGconn *c;

    if (!dsn || !*dsn) {
        printf("\n== postgres: skipped (KEEL_TEST_PG_DSN is not set; run under "
               "scripts/with-services.sh)\n");
        return;
    }
    /* The DSN may hold a password: it is never printed. */
    c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK)
        die("postgres: cannot connect (KEEL_TEST_PG_DSN): %s", PQerrorMessage(c));
    int ver = PQserverVersion(c);
    printf("\n== postgres %d.%d  (KEEL_TEST_PG_DSN, %s:%s), N = %lu\n", ver / 10000, ver % 10000,
           PQhost(c), PQport(c), n);
    pg_exec(c, "SET client_min_messages = warning");
    pg_exec(c, pg_sql.drop_raw);
    pg_exec(c, pg_sql.drop_keel);
    pg_exec(c, pg_sql.create_raw);
    pg_exec(c, pg_sql.create_keel);
    raw_pg_prepare(c);

    keel_store_config_default(&cfg);
    cfg.url = dsn;
    check_keel(keel_store_open(&s, &cfg, &d), "open postgres store", &d);
    check_keel(keel_db_acquire(s, &db, &d), "acquire", &d);

    bench_ops o = {c, db, &pg_sql, raw_pg_insert_v, raw_pg_select_v};
    (void)run_engine(&o, n);

    keel_db_release(db);
    keel_store_close(s);
    pg_exec(c, pg_sql.drop_raw);
    pg_exec(c, pg_sql.drop_keel);
    PQfinish(c);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("keel store benchmark: raw engine C API vs keel_db_prepare/bind/step, %d interleaved "
           "rounds each, median ops/s; overhead = (raw/keel - 1) x 100, target <= %.0f %%\n",
           ROUNDS, TARGET_OVERHEAD_PCT);
    bench_sqlite(rows_from_env(20000));
    bench_pg(rows_from_env(5000));
    return 0;
}
