/* redis.c - Redis pools for tests: the shared test server, and one that vanishes. */
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <keel/redis.h>

keel_redis *keel_test_redis_open(const char *url, unsigned pool_size)
{
    keel_redis_config rc;
    keel_redis_config_default(&rc);
    rc.url = url;
    rc.pool_size = pool_size;
    rc.command_timeout_ms = 2000;
    keel_redis *r = NULL;
    keel_diag d = {KEEL_OK, 0, ""};
    keel_err e = keel_redis_open(&r, &rc, &d);
    if (e != KEEL_OK)
        fprintf(stderr, "redis open: %s\n", d.msg);
    assert_int_equal(KEEL_OK, e);
    return r;
}

keel_redis *keel_test_redis_vanishing(void)
{
    /* A listening socket nobody accepts on: the kernel completes the handshake, the pool
     * connects, then the socket is closed. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(0, bind(fd, (struct sockaddr *)&a, sizeof(a)));
    assert_int_equal(0, listen(fd, 8));
    socklen_t len = sizeof(a);
    assert_int_equal(0, getsockname(fd, (struct sockaddr *)&a, &len));
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    keel_redis_config rc;
    keel_redis_config_default(&rc);
    rc.url = url;
    rc.pool_size = 1;
    rc.command_timeout_ms = 500;
    rc.connect_timeout_ms = 500;
    keel_redis *r = NULL;
    assert_int_equal(KEEL_OK, keel_redis_open(&r, &rc, NULL));
    close(fd);
    return r;
}
