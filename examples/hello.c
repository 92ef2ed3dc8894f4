/* hello.c - the smallest keel service: one route behind the standard middleware chain.
 *
 *   cc hello.c $(pkg-config --cflags --libs keel) -o hello && ./hello
 *   curl http://127.0.0.1:8081/api/v1/hello/world
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include <keel/keel.h>

static keel_err hello(keel_ctx *cx, void *ud)
{
    (void)ud;
    return keel_resp_success(cx, 200, json_pack("{s:s}", "hello", keel_req_param(cx, "name")),
                             NULL);
}

int main(void)
{
    keel_metrics *m = NULL;
    keel_router *r = NULL;
    keel_chain *chain = NULL;
    keel_server *srv = NULL;
    keel_diag d = {0};
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    keel_http_chain_config hc;
    keel_http_chain_config_default(&hc);
    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.port = 8081;
    if (keel_log_start(NULL) != KEEL_OK || keel_metrics_create(&m) != KEEL_OK ||
        keel_router_create(&r) != KEEL_OK ||
        keel_router_add(r, KEEL_METHOD_GET, "/api/v1/hello/{name}", hello, NULL, 0, &d) ||
        (hc.metrics = m, keel_http_chain_build(&hc, &chain)) != KEEL_OK ||
        keel_server_create(&srv, &sc, r, chain, m, &d) != KEEL_OK ||
        keel_server_start(srv, &d) != KEEL_OK) {
        fprintf(stderr, "hello: %s\n", d.msg[0] ? d.msg : "startup failed");
        return 1;
    }
    keel_server_set_ready(srv, 1);
    int sig;
    sigwait(&sigs, &sig);
    (void)keel_server_drain(srv, 5000);
    keel_server_destroy(srv);
    keel_router_destroy(r);
    keel_metrics_destroy(m);
    keel_log_stop();
    return 0;
}
