/* Integration: storage that fails under a running keeld.
 *
 *  - disk full: keeld's SQLite file lives on a small tmpfs of its own; the test fills it.
 *    Writes answer a 503 problem, reads keep working, readiness goes 503, no half-written row
 *    remains, and after space is freed readiness and writes recover without a restart.
 *  - read-only: keeld's SQLite file lives on an ext4 image (loop device, errors=remount-ro);
 *    the test makes the kernel remount it read-only (ext4's trigger_fs_error).  Writes answer
 *    a 503 problem, reads keep working, readiness goes 503, nothing half-written remains.  (A tmpfs cannot be
 *    remounted read-only while keeld holds the file open for writing, and on current kernels
 *    an emergency read-only ext4 cannot be made writable again, so recovery from read-only is
 *    not driven here; the disk-full case covers recovery of the same error path.)
 *  - Redis outage: keeld keeps payment idempotency records in a redis-server this test starts
 *    on a port of its own (the shared test Redis is never touched).  With Redis stopped a
 *    payment answers a 503 problem without reaching the gateway (fail closed), readiness is
 *    503 naming redis, and once Redis is back on the same port payments succeed again and
 *    readiness is 200, without restarting keeld.
 *
 * Mounting needs root: each case is skipped (cmocka skip) when it cannot set up its mount.
 * Every mount and process is cleaned up in the group teardown, whatever failed. */
#define _GNU_SOURCE 1
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static keel_test_server srv;
static char mnt[256];  /* our mount point while mounted, else "" */
static char img[256];  /* ext4 image file, else "" */
static pid_t redis_pid;
static uint16_t redis_port;
static char redis_dir[256];
static const char *const json_ct[] = {"Content-Type: application/json", NULL};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ------------------------------------------------------------- clean-up -- */

static void stop_redis(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        for (int i = 0; i < 200; i++) {
            if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid) {
                redis_pid = 0;
                return;
            }
            sleep_ms(10);
        }
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = 0;
    }
}

static int teardown(void **state)
{
    (void)state;
    if (srv.pid > 0)
        keel_test_server_stop(&srv, SIGTERM, 10000);
    stop_redis();
    char cmd[700];
    if (mnt[0]) {
        snprintf(cmd, sizeof(cmd), "umount '%s' 2>/dev/null || umount -l '%s'", mnt, mnt);
        if (run(cmd) != 0)
            fprintf(stderr, "could not unmount %s\n", mnt);
        rmdir(mnt);
        mnt[0] = '\0';
    }
    if (img[0]) {
        unlink(img);
        img[0] = '\0';
    }
    if (redis_dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", redis_dir);
        (void)run(cmd);
        redis_dir[0] = '\0';
    }
    return 0;
}

/* ------------------------------------------------------------- helpers -- */

static json_t *json_of(const keel_test_resp *r)
{
    json_t *v = json_loads(r->body, 0, NULL);
    if (v == NULL)
        fail_msg("not JSON: %s", r->body);
    return v;
}

/* A 503 answer carries a problem body, not a dropped connection or an engine message. */
static void assert_problem_503(const keel_test_resp *r)
{
    assert_int_equal(503, r->status);
    char ct[128];
    assert_true(keel_test_resp_header(r, "content-type", ct, sizeof(ct)));
    assert_non_null(strstr(ct, "application/problem+json"));
    json_t *v = json_of(r);
    assert_int_equal(503, json_integer_value(json_object_get(v, "status")));
    assert_non_null(json_object_get(v, "title"));
    json_decref(v);
    assert_null(strstr(r->body, "sqlite"));
    assert_null(strstr(r->body, "disk"));
}

static long post_product(const char *name, keel_test_resp *out)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"price_minor\":100,\"currency\":\"EUR\"}",
             name);
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/products", json_ct, body, strlen(body), &r));
    long st = r.status;
    if (out != NULL)
        *out = r;
    else
        keel_test_resp_free(&r);
    return st;
}

/* Products in the table, counted through the API (the tests stay under 100). */
static long count_products(void)
{
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/api/v1/products?limit=100", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    json_t *v = json_of(&r);
    long n = (long)json_array_size(json_object_get(v, "data"));
    json_decref(v);
    keel_test_resp_free(&r);
    return n;
}

static long ready_status(char *body, size_t cap)
{
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/health/ready", NULL, NULL, 0, &r));
    long st = r.status;
    if (body != NULL)
        snprintf(body, cap, "%s", r.body ? r.body : "");
    keel_test_resp_free(&r);
    return st;
}

static int make_mount_point(void)
{
    snprintf(mnt, sizeof(mnt), "%s/storage-mnt.XXXXXX", KEEL_TEST_TMP);
    mkdir(KEEL_TEST_TMP, 0700);
    if (mkdtemp(mnt) == NULL) {
        mnt[0] = '\0';
        return -1;
    }
    return 0;
}

static int start_keeld_on(const char *dbdir)
{
    static char url[400];
    snprintf(url, sizeof(url), "DATABASE_URL=sqlite:%s/keel.db", dbdir);
    const char *env[] = {url, NULL};
    return keel_test_server_start(&srv, env);
}

/* 128-byte names make each insert a visible amount of WAL. */
static void long_name(char *out, size_t cap, const char *tag, int i)
{
    int n = snprintf(out, cap, "%s-%03d-", tag, i);
    for (size_t k = (size_t)n; k + 1 < cap && k < 128; k++)
        out[k] = 'x';
    out[cap - 1 > 128 ? 128 : cap - 1] = '\0';
}

/* ---------------------------------------------------------- disk full -- */

static void test_disk_full(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    if (make_mount_point() != 0)
        skip();
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=4m,mode=0700 keeltest '%s'", mnt);
    if (run(cmd) != 0) {
        rmdir(mnt);
        mnt[0] = '\0';
        skip();
    }
    assert_int_equal(0, start_keeld_on(mnt));

    char name[160];
    long created = 0;
    for (int i = 0; i < 3; i++) {
        long_name(name, sizeof(name), "before", i);
        assert_int_equal(201, post_product(name, NULL));
        created++;
    }
    assert_int_equal(created, count_products());

    /* fill the file system */
    char filler[400];
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char chunk[4096];
    memset(chunk, 'f', sizeof(chunk));
    for (;;) {
        ssize_t w = write(fd, chunk, sizeof(chunk));
        if (w <= 0)
            break;
    }
    while (write(fd, chunk, 1) == 1) /* the last partial page */
        ;
    assert_int_equal(ENOSPC, errno);
    close(fd);

    /* writes fail, as 503 problems; successes before the failure are counted (the WAL may
     * still have had room for a frame or two) */
    keel_test_resp r;
    long st = 0;
    for (int i = 0; i < 200; i++) {
        long_name(name, sizeof(name), "full", i);
        st = post_product(name, &r);
        if (st != 201)
            break;
        created++;
        keel_test_resp_free(&r);
    }
    fprintf(stderr, "disk full: %ld products written, first failure %ld\n", created, st);
    assert_problem_503(&r);
    keel_test_resp_free(&r);
    /* a second write fails the same way: the connection is not wedged in a transaction */
    assert_int_equal(503, post_product("full-again", NULL));

    /* reads still work and show no half-written row */
    assert_int_equal(created, count_products());
    /* readiness goes 503: the database answers reads but refuses writes */
    char body[2048];
    assert_int_equal(503, ready_status(body, sizeof(body)));
    assert_non_null(strstr(body, "refuses writes"));

    /* space comes back: readiness probes a write and recovers by itself, then writes
     * succeed again, all without a restart */
    assert_int_equal(0, unlink(filler));
    assert_int_equal(200, ready_status(NULL, 0));
    long_name(name, sizeof(name), "after", 0);
    assert_int_equal(201, post_product(name, NULL));
    created++;
    assert_int_equal(created, count_products());
    assert_int_equal(200, ready_status(NULL, 0));
}

/* ---------------------------------------------------------- read-only -- */

static void test_read_only(void **state)
{
    (void)state;
    if (geteuid() != 0 || run("command -v mkfs.ext4 >/dev/null 2>&1") != 0)
        skip();
    if (make_mount_point() != 0)
        skip();
    snprintf(img, sizeof(img), "%s.img", mnt);
    char cmd[900];
    snprintf(cmd, sizeof(cmd),
             "truncate -s 16M '%s' && mkfs.ext4 -q -F '%s' >/dev/null 2>&1 && "
             "mount -o loop,errors=remount-ro '%s' '%s' 2>/dev/null",
             img, img, img, mnt);
    if (run(cmd) != 0) {
        unlink(img);
        img[0] = '\0';
        rmdir(mnt);
        mnt[0] = '\0';
        skip(); /* no loop devices here */
    }
    /* the file system's sysfs name is the loop device's */
    char trigger[256] = "";
    snprintf(cmd, sizeof(cmd), "findmnt -no SOURCE '%s'", mnt);
    FILE *p = popen(cmd, "r");
    char dev[128] = "";
    if (p != NULL) {
        if (fgets(dev, sizeof(dev), p) == NULL)
            dev[0] = '\0';
        pclose(p);
    }
    dev[strcspn(dev, "\n")] = '\0';
    const char *base = strrchr(dev, '/');
    snprintf(trigger, sizeof(trigger), "/sys/fs/ext4/%s/trigger_fs_error",
             base ? base + 1 : dev);
    if (access(trigger, W_OK) != 0)
        skip();
    assert_int_equal(0, start_keeld_on(mnt));

    char name[160];
    for (int i = 0; i < 2; i++) {
        long_name(name, sizeof(name), "rw", i);
        assert_int_equal(201, post_product(name, NULL));
    }
    assert_int_equal(2, count_products());

    /* the kernel turns the file system read-only under keeld */
    FILE *t = fopen(trigger, "w");
    assert_non_null(t);
    fputs("keel test: make read-only", t);
    fclose(t);
    snprintf(cmd, sizeof(cmd), "findmnt -no OPTIONS '%s' | grep -q 'ro'", mnt);
    assert_int_equal(0, run(cmd));

    keel_test_resp r;
    long_name(name, sizeof(name), "ro", 0);
    assert_int_equal(503, post_product(name, &r));
    assert_problem_503(&r);
    keel_test_resp_free(&r);
    assert_int_equal(503, post_product("ro-again", NULL));
    /* reads are still served, and the failed writes left nothing behind */
    assert_int_equal(2, count_products());
    /* readiness is 503 while writes are refused */
    char body[2048];
    assert_int_equal(503, ready_status(body, sizeof(body)));
    assert_non_null(strstr(body, "refuses writes"));
    /* keeld is still alive and answering */
    ASSERT_OK(keel_test_http(&srv, "GET", "/health/live", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    keel_test_resp_free(&r);
    /* stop keeld before the group teardown unmounts the file system */
    keel_test_server_stop(&srv, SIGTERM, 10000);
}

/* ------------------------------------------------------- Redis outage -- */

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static int redis_answers(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "redis-cli -h 127.0.0.1 -p %u ping 2>/dev/null | grep -q PONG",
             redis_port);
    return run(cmd) == 0;
}

/* Our own redis-server in the foreground (so its pid is ours), no persistence. */
static int start_redis(void)
{
    char port[16];
    snprintf(port, sizeof(port), "%u", redis_port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (chdir(redis_dir) != 0)
            _exit(127);
        if (freopen("redis.log", "a", stdout) == NULL || freopen("redis.log", "a", stderr) == NULL)
            _exit(127);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    redis_pid = pid;
    for (int i = 0; i < 200; i++) {
        if (redis_answers())
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            redis_pid = 0;
            return -1;
        }
        sleep_ms(25);
    }
    return -1;
}

static json_int_t gateway_authorizations(void)
{
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "GET", "/_test/gateway/calls", NULL, NULL, 0, &r));
    assert_int_equal(200, r.status);
    json_t *v = json_of(&r);
    json_int_t n = json_integer_value(json_object_get(json_object_get(v, "data"), "authorize"));
    json_decref(v);
    keel_test_resp_free(&r);
    return n;
}

static long charge(const char *key, keel_test_resp *out)
{
    const char *body = "{\"amount\":\"5.00\",\"currency\":\"usd\",\"payment_token\":\"tok_visa\"}";
    char kh[128];
    snprintf(kh, sizeof(kh), "Idempotency-Key: %s", key);
    const char *hdrs[] = {"Content-Type: application/json", kh, NULL};
    keel_test_resp r;
    ASSERT_OK(keel_test_http(&srv, "POST", "/api/v1/payments", hdrs, body, strlen(body), &r));
    long st = r.status;
    if (out != NULL)
        *out = r;
    else
        keel_test_resp_free(&r);
    return st;
}

static void test_redis_outage(void **state)
{
    (void)state;
    if (run("command -v redis-server >/dev/null 2>&1") != 0)
        skip();
    snprintf(redis_dir, sizeof(redis_dir), "%s/redis.XXXXXX", KEEL_TEST_TMP);
    mkdir(KEEL_TEST_TMP, 0700);
    assert_non_null(mkdtemp(redis_dir));
    int started = -1;
    for (int attempt = 0; attempt < 5 && started != 0; attempt++) {
        redis_port = free_port();
        started = start_redis();
    }
    assert_int_equal(0, started);
    static char env_redis[96];
    snprintf(env_redis, sizeof(env_redis), "REDIS_URL=redis://127.0.0.1:%u/0", redis_port);
    const char *env[] = {env_redis, NULL};
    assert_int_equal(0, keel_test_server_start(&srv, env));
    assert_int_equal(200, ready_status(NULL, 0));

    char key[64];
    snprintf(key, sizeof(key), "outage-%d-ok", (int)getpid());
    assert_int_equal(201, charge(key, NULL));
    json_int_t charged = gateway_authorizations();
    assert_true(charged >= 1);

    /* Redis goes away: fail closed, nothing charged */
    stop_redis();
    keel_test_resp r;
    snprintf(key, sizeof(key), "outage-%d-down", (int)getpid());
    assert_int_equal(503, charge(key, &r));
    assert_problem_503(&r);
    assert_null(strstr(r.body, "redis"));
    keel_test_resp_free(&r);
    assert_int_equal(charged, gateway_authorizations());
    char body[2048];
    assert_int_equal(503, ready_status(body, sizeof(body)));
    assert_non_null(strstr(body, "\"check\":\"redis\""));

    /* Redis returns on the same port: keeld recovers on its own */
    assert_int_equal(0, start_redis());
    long st = 0;
    snprintf(key, sizeof(key), "outage-%d-back", (int)getpid());
    for (int i = 0; i < 50 && st != 201; i++) {
        st = charge(key, NULL);
        if (st != 201)
            sleep_ms(100);
    }
    assert_int_equal(201, st);
    assert_int_equal(charged + 1, gateway_authorizations());
    /* the same key now replays instead of charging again */
    assert_int_equal(201, charge(key, &r));
    char h[16];
    assert_int_equal(1, keel_test_resp_header(&r, "idempotent-replayed", h, sizeof(h)));
    keel_test_resp_free(&r);
    assert_int_equal(charged + 1, gateway_authorizations());
    long rs = 0;
    for (int i = 0; i < 50 && rs != 200; i++) {
        rs = ready_status(NULL, 0);
        if (rs != 200)
            sleep_ms(100);
    }
    assert_int_equal(200, rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_disk_full, teardown),
        cmocka_unit_test_teardown(test_read_only, teardown),
        cmocka_unit_test_teardown(test_redis_outage, teardown),
    };
    return cmocka_run_group_tests_name("storage failures", tests, NULL, teardown);
}
