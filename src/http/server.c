/* server.c - the HTTP/1.1 server on libmicrohttpd.
 *
 * I/O threads (MHD's internal thread pool, one epoll loop each) read requests.
 * Routes flagged KEEL_ROUTE_INLINE run right there; every other request is
 * suspended (MHD_suspend_connection), pushed onto a queue served by a pool of
 * worker threads that run the chain and the handler, and resumed when the
 * response is ready.  A slow handler therefore never stalls other connections.
 *
 * Request memory comes from one arena per request, released by the
 * completion callback after the response has been sent. */
#include "ctx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <keel/log.h>

#define WORK_QUEUE_MAX 65536u

typedef struct probe {
    char *name;
    keel_probe_fn fn;
    void *ud;
} probe;

struct keel_server {
    keel_server_config cfg;
    char *host, *env, *name, *version;
    keel_router *router;
    keel_chain *chain;
    keel_metrics *metrics;
    struct MHD_Daemon *mhd;
    uint16_t port;
    atomic_int ready;
    atomic_int draining;
    atomic_uint inflight;
    probe probes[16];
    size_t nprobes;

    /* worker pool */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    keel_ctx *q_head, *q_tail;
    unsigned q_len;
    int stopping;
    pthread_t *threads;
    unsigned nthreads;
    keel_logger *log;
};

void keel_server_config_default(keel_server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    /* One event loop per CPU the process may run on (taskset/cgroup aware): more loops than
     * CPUs only preempt each other and add tail latency. */
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
                                                         : sysconf(_SC_NPROCESSORS_ONLN);
    cfg->io_threads = n > 0 ? (unsigned)n : 1;
    cfg->workers = cfg->io_threads * 4;
    cfg->max_body = 1024 * 1024;
    cfg->max_connections = 1024;
    cfg->max_connections_per_ip = 0;
    cfg->connection_memory = 16 * 1024;
    cfg->connection_timeout_s = 30;
    cfg->arena_max = KEEL_ARENA_DEFAULT_MAX;
    cfg->environment = "development";
    cfg->name = "keel";
    cfg->version = KEEL_VERSION_STRING;
}

int keel__server_draining(const keel_server *s)
{
    return atomic_load(&s->draining);
}

/* ------------------------------------------------------------ pipeline -- */

/* End of the chain: route to the handler, or answer 404/405/OPTIONS/early errors. */
static keel_err terminal(void *vcx, void *ud)
{
    keel_ctx *cx = vcx;
    keel_server *s = ud;
    if (cx->early_status)
        return keel_resp_problem(cx, cx->early_status, NULL, cx->early_detail, NULL);
    if (cx->preflight) {
        keel_resp_status(cx, 204);
        return KEEL_OK;
    }
    const keel_route_match *m = &cx->match;
    if (!m->found) {
        if (m->allowed == 0)
            return keel_resp_problem(cx, 404, NULL, "No route matches this path.", NULL);
        char allow[96] = "";
        size_t off = 0;
        for (unsigned bit = 1; bit <= KEEL_METHOD_OPTIONS; bit <<= 1) {
            if ((m->allowed & bit) || bit == KEEL_METHOD_OPTIONS) {
                int w = snprintf(allow + off, sizeof(allow) - off, "%s%s", off ? ", " : "",
                                 keel_method_name((keel_method)bit));
                if (w > 0 && (size_t)w < sizeof(allow) - off)
                    off += (size_t)w;
            }
        }
        keel_err e = keel_resp_header_set(cx, "Allow", allow);
        if (e != KEEL_OK)
            return e;
        if (cx->method == KEEL_METHOD_OPTIONS) {
            keel_resp_status(cx, 204);
            return KEEL_OK;
        }
        return keel_resp_problem(cx, 405, NULL, "Method not allowed on this route.", NULL);
    }
    keel_err e = m->fn(cx, m->ud);
    cx->handler_err = e;
    if (e != KEEL_OK) {
        KEEL_LOG_ERROR(s->log, "handler for %s %s failed: %s", cx->method_name,
                       keel_req_route(cx), keel_strerror(e));
        return keel_resp_problem(cx, 500, NULL, "The server could not complete the request.",
                                 NULL);
    }
    if (cx->status == 0) {
        KEEL_LOG_ERROR(s->log, "handler for %s %s produced no response", cx->method_name,
                       keel_req_route(cx));
        return keel_resp_problem(cx, 500, NULL, "The server could not complete the request.",
                                 NULL);
    }
    return KEEL_OK;
}

void keel__ctx_process(keel_ctx *cx)
{
    keel_server *s = cx->srv;
    keel_err e = keel_chain_run(s->chain, cx, terminal, s);
    if (e != KEEL_OK && cx->status == 0) {
        KEEL_LOG_ERROR(s->log, "request pipeline failed for %s %s: %s", cx->method_name,
                       keel_req_route(cx), keel_strerror(e));
        if (keel_resp_problem(cx, 500, NULL, "The server could not complete the request.",
                              NULL) != KEEL_OK) {
            cx->status = 500;
            cx->body_ptr = "";
            cx->body_len = 0;
        }
    }
    if (cx->status == 0)
        cx->status = 500;
    cx->state = CTX_DONE;
}

static enum MHD_Result queue_response(keel_ctx *cx)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        cx->body_len, (void *)(uintptr_t)(cx->body_ptr ? cx->body_ptr : ""),
        MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    if (cx->content_type && cx->body_len)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, cx->content_type);
    /* headers were prepended; add in the order they were set */
    resp_header *rev = NULL;
    for (resp_header *h = cx->headers; h;) {
        resp_header *next = h->next;
        h->next = rev;
        rev = h;
        h = next;
    }
    cx->headers = rev;
    for (resp_header *h = cx->headers; h; h = h->next)
        MHD_add_response_header(r, h->name, h->value);
    if (atomic_load(&cx->srv->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(cx->conn, (unsigned)cx->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---------------------------------------------------------- worker pool -- */

static void *worker_main(void *arg)
{
    keel_server *s = arg;
    pthread_setname_np(pthread_self(), "keel-worker"); /* the name tools and tests know */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->q_head == NULL && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->q_head == NULL && s->stopping) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        keel_ctx *cx = s->q_head;
        s->q_head = cx->next_job;
        if (s->q_head == NULL)
            s->q_tail = NULL;
        s->q_len--;
        pthread_mutex_unlock(&s->mu);
        keel__ctx_process(cx);
        MHD_resume_connection(cx->conn);
    }
}

static int enqueue(keel_server *s, keel_ctx *cx)
{
    pthread_mutex_lock(&s->mu);
    if (s->q_len >= WORK_QUEUE_MAX || s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    cx->next_job = NULL;
    if (s->q_tail)
        s->q_tail->next_job = cx;
    else
        s->q_head = cx;
    s->q_tail = cx;
    s->q_len++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 1;
}

/* ------------------------------------------------------------ MHD glue --- */

static void client_ip_format(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)n);
}

/* The client address is formatted once per connection (MHD_OPTION_NOTIFY_CONNECTION keeps it
 * in the connection's socket context), not once per request. */
#define CLIENT_IP_MAX 48

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    KEEL_UNUSED(cls);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        char *ip = keel_malloc(CLIENT_IP_MAX);
        if (ip != NULL)
            client_ip_format(c, ip, CLIENT_IP_MAX);
        *socket_context = ip; /* NULL: formatted per request instead */
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        keel_free(*socket_context);
        *socket_context = NULL;
    }
}

static void client_ip(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci != NULL && ci->socket_context != NULL) {
        const char *ip = ci->socket_context;
        size_t k = strnlen(ip, n - 1);
        memcpy(out, ip, k);
        out[k] = '\0';
        return;
    }
    client_ip_format(c, out, n);
}

/* One spare arena per I/O thread: a request takes it and gives it back (reset) when it
 * completes, so the steady state allocates no arena per request.  Completion runs on the
 * connection's I/O thread, the same thread that created the context. */
static pthread_key_t arena_key;
static int arena_key_ok;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;

static void arena_key_free(void *p)
{
    keel_arena_destroy(p);
}

static void arena_key_init(void)
{
    arena_key_ok = pthread_key_create(&arena_key, arena_key_free) == 0;
}

static keel_arena *arena_take(size_t max)
{
    pthread_once(&arena_once, arena_key_init);
    keel_arena *a = arena_key_ok ? pthread_getspecific(arena_key) : NULL;
    if (a != NULL && pthread_setspecific(arena_key, NULL) == 0)
        return a;
    if (keel_arena_create(&a, max) != KEEL_OK)
        return NULL;
    return a;
}

static void arena_give(keel_arena *a)
{
    if (arena_key_ok && pthread_getspecific(arena_key) == NULL) {
        keel_arena_reset(a);
        if (pthread_setspecific(arena_key, a) == 0)
            return;
    }
    keel_arena_destroy(a);
}

static keel_ctx *ctx_new(keel_server *s, struct MHD_Connection *conn, const char *url,
                         const char *method)
{
    keel_arena *a = arena_take(s->cfg.arena_max);
    if (a == NULL)
        return NULL;
    keel_ctx *cx = keel_arena_alloc(a, sizeof(*cx), 0);
    if (cx == NULL) {
        keel_arena_destroy(a);
        return NULL;
    }
    memset(cx, 0, sizeof(*cx));
    cx->arena = a;
    cx->conn = conn;
    cx->srv = s;
    cx->start_ns = keel_time_mono_ns();
    cx->method = keel_method_parse(keel_str_c(method));
    cx->method_name = cx->method ? keel_method_name(cx->method) : "OTHER";
    cx->path = url;
    keel_buf_init(&cx->body, s->cfg.max_body);
    client_ip(conn, cx->client_ip, sizeof(cx->client_ip));
    atomic_fetch_add(&s->inflight, 1);
    return cx;
}

static void route_request(keel_server *s, keel_ctx *cx)
{
    if (cx->method == 0) {
        cx->early_status = 501;
        cx->early_detail = "This request method is not supported.";
        return;
    }
    const char *path = keel__router_version_rewrite(
        s->router, cx->path, keel_req_header(cx, "X-API-Version"), cx->arena);
    if (path == NULL) {
        cx->early_status = 400;
        cx->early_detail = "X-API-Version must be a version number such as 2 or v2.";
        return;
    }
    cx->path = path;
    keel_router_match(s->router, cx->method, keel_str_c(path), &cx->match);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    keel_server *s = cls;
    keel_ctx *cx = *con_cls;
    KEEL_UNUSED(version);
    if (cx == NULL) {
        cx = ctx_new(s, conn, url, method);
        if (cx == NULL)
            return MHD_NO;
        *con_cls = cx;
        route_request(s, cx);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && cx->early_status == 0) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno != 0 || end == cl || *end != '\0' || v > s->cfg.max_body) {
                cx->early_status = 413;
                cx->early_detail = "The request body is larger than the server accepts.";
                keel__ctx_process(cx);
                return queue_response(cx);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (cx->early_status == 0 && keel_buf_append(&cx->body, upload_data, n) != KEEL_OK) {
            /* A chunked body outgrew the limit.  MHD cannot answer in the middle of an
             * upload, so the rest is read and discarded and the 413 goes out at the end;
             * a client that keeps sending past 4x the limit is cut off instead. */
            cx->early_status = 413;
            cx->early_detail = "The request body is larger than the server accepts.";
            cx->discarded = cx->body.len;
            keel_buf_cleanup(&cx->body);
        }
        if (cx->early_status != 0) {
            cx->discarded += n;
            if (cx->discarded / 4 > s->cfg.max_body)
                return MHD_NO;
        }
        return MHD_YES;
    }
    if (cx->state == CTX_DONE)
        return queue_response(cx);
    if (cx->state == CTX_QUEUED)
        return MHD_YES; /* spurious call while suspended */
    if (cx->early_status == 0 && cx->match.found && !(cx->match.flags & KEEL_ROUTE_INLINE) &&
        !(s->cfg.inline_check != NULL && s->cfg.inline_check(cx, s->cfg.inline_ud))) {
        cx->state = CTX_QUEUED;
        MHD_suspend_connection(conn);
        if (enqueue(s, cx))
            return MHD_YES;
        MHD_resume_connection(conn);
        cx->state = CTX_READING;
        cx->early_status = 503;
        cx->early_detail = "The server is overloaded; retry later.";
    }
    keel__ctx_process(cx);
    return queue_response(cx);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    keel_server *s = cls;
    keel_ctx *cx = *con_cls;
    KEEL_UNUSED(conn);
    KEEL_UNUSED(toe);
    if (cx == NULL)
        return;
    *con_cls = NULL;
    keel__ctx_run_defers(cx);
    keel_buf_cleanup(&cx->body);
    arena_give(cx->arena);
    atomic_fetch_sub(&s->inflight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    keel_server *s = cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    KEEL_LOG_WARNING(s->log, "libmicrohttpd: %s", msg);
}

/* ---------------------------------------------------------------- public -- */

keel_err keel_server_create(keel_server **out, const keel_server_config *cfg,
                            keel_router *router, keel_chain *chain, keel_metrics *metrics,
                            keel_diag *diag)
{
    if (out == NULL || cfg == NULL || router == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "server: NULL argument");
    keel_server *s = keel__new(keel_server);
    if (s == NULL)
        return KEEL_ENOMEM;
    keel_server_config_default(&s->cfg);
    memcpy(&s->cfg, cfg, KEEL_MIN(cfg->size ? cfg->size : sizeof(*cfg), sizeof(s->cfg)));
    s->cfg.size = sizeof(s->cfg);
    if (s->cfg.io_threads == 0)
        s->cfg.io_threads = 1;
    if (s->cfg.workers == 0)
        s->cfg.workers = 1;
    if (s->cfg.max_body == 0)
        s->cfg.max_body = 1024 * 1024;
    s->host = keel_strdup(s->cfg.host ? s->cfg.host : "127.0.0.1");
    s->env = keel_strdup(s->cfg.environment ? s->cfg.environment : "development");
    s->name = keel_strdup(s->cfg.name ? s->cfg.name : "keel");
    s->version = keel_strdup(s->cfg.version ? s->cfg.version : KEEL_VERSION_STRING);
    s->router = router;
    s->metrics = metrics;
    s->log = keel_logger_get("app.http.server");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    keel_err e = KEEL_OK;
    if (s->host == NULL || s->env == NULL || s->name == NULL || s->version == NULL)
        e = KEEL_ENOMEM;
    if (e == KEEL_OK)
        e = keel__builtin_routes(router, s);
    if (e != KEEL_OK) {
        keel_diag_set(diag, e, 0, "server: %s", keel_strerror(e));
        keel_server_destroy(s);
        return e;
    }
    s->chain = chain;
    *out = s;
    return KEEL_OK;
}

keel_err keel_server_start(keel_server *s, keel_diag *diag)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    const struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    memset(&a4, 0, sizeof(a4));
    memset(&a6, 0, sizeof(a6));
    if (inet_pton(AF_INET, s->host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(s->cfg.port);
        sa = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, s->host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(s->cfg.port);
        sa = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        return keel_diag_set(diag, KEEL_EINVAL, 0, "HOST '%.64s' is not a numeric IP address",
                             s->host);
    }
    s->threads = keel_calloc(s->cfg.workers, sizeof(pthread_t));
    if (s->threads == NULL)
        return KEEL_ENOMEM;
    for (; s->nthreads < s->cfg.workers; s->nthreads++)
        if (keel__thread_start(&s->threads[s->nthreads], worker_main, s, NULL) != 0)
            break;
    if (s->nthreads == 0)
        return keel_diag_set(diag, KEEL_EIO, 0, "cannot start worker threads");

    s->mhd = MHD_start_daemon(
        flags, s->cfg.port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_THREAD_POOL_SIZE, s->cfg.io_threads, MHD_OPTION_CONNECTION_LIMIT,
        s->cfg.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        s->cfg.max_connections_per_ip, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        s->cfg.connection_memory, MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.connection_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        s, MHD_OPTION_END);
    if (s->mhd == NULL)
        return keel_diag_set(diag, KEEL_EIO, 0, "cannot listen on %s:%u (address in use?)",
                             s->host, s->cfg.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->cfg.port;
    return KEEL_OK;
}

uint16_t keel_server_port(const keel_server *s)
{
    return s->port;
}

void keel_server_set_ready(keel_server *s, int ready)
{
    atomic_store(&s->ready, ready ? 1 : 0);
}

keel_err keel_server_add_probe(keel_server *s, const char *name, keel_probe_fn fn, void *ud)
{
    if (s == NULL || name == NULL || fn == NULL)
        return KEEL_EINVAL;
    if (s->nprobes == KEEL_ARRAY_LEN(s->probes))
        return KEEL_EFULL;
    char *copy = keel_strdup(name);
    if (copy == NULL)
        return KEEL_ENOMEM;
    s->probes[s->nprobes++] = (probe){copy, fn, ud};
    return KEEL_OK;
}

unsigned keel_server_inflight(const keel_server *s)
{
    return atomic_load(&s->inflight);
}

keel_err keel_server_drain(keel_server *s, uint64_t timeout_ms)
{
    atomic_store(&s->draining, 1);
    if (s->mhd != NULL) {
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
    uint64_t deadline = keel_time_mono_ms() + timeout_ms;
    while (atomic_load(&s->inflight) > 0) {
        if (keel_time_mono_ms() >= deadline)
            return KEEL_ETIMEOUT;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return KEEL_OK;
}

void keel_server_destroy(keel_server *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->draining, 1);
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    /* Workers finish what is queued (resuming their connections) before MHD stops. */
    for (unsigned i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    if (s->mhd != NULL)
        MHD_stop_daemon(s->mhd);
    keel_chain_destroy(s->chain);
    for (size_t i = 0; i < s->nprobes; i++)
        keel_free(s->probes[i].name);
    keel_free(s->threads);
    keel_free(s->host);
    keel_free(s->env);
    keel_free(s->name);
    keel_free(s->version);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    keel_free(s);
}

/* ------------------------------------------------------- built-in routes -- */

static keel_err h_root(keel_ctx *cx, void *ud)
{
    keel_server *s = ud;
    return keel_resp_json(cx, 200,
                          json_pack("{s:s, s:s, s:s, s:s}", "name", s->name, "status", "ok",
                                    "environment", s->env, "version", s->version));
}

static keel_err h_live(keel_ctx *cx, void *ud)
{
    KEEL_UNUSED(ud);
    static const char alive[] = "{\"status\":\"alive\"}";
    return keel_resp_success_raw(cx, 200, alive, sizeof(alive) - 1);
}

static keel_err h_ready(keel_ctx *cx, void *ud)
{
    keel_server *s = ud;
    json_t *checks = json_object();
    json_t *errors = json_array();
    if (checks == NULL || errors == NULL) {
        json_decref(checks);
        json_decref(errors);
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < s->nprobes; i++) {
        char detail[160] = "";
        keel_err e = s->probes[i].fn(s->probes[i].ud, detail, sizeof(detail));
        json_object_set_new(checks, s->probes[i].name, json_string(e == KEEL_OK ? "ok" : "failing"));
        if (e != KEEL_OK)
            json_array_append_new(errors,
                                  json_pack("{s:s, s:s}", "check", s->probes[i].name, "detail",
                                            detail[0] ? detail : keel_strerror(e)));
    }
    const char *why = NULL;
    if (atomic_load(&s->draining))
        why = "The server is shutting down.";
    else if (!atomic_load(&s->ready))
        why = "The server has not finished starting.";
    else if (json_array_size(errors) > 0)
        why = "A readiness check is failing.";
    if (why != NULL) {
        json_decref(checks);
        return keel_resp_problem(cx, 503, NULL, why, errors);
    }
    json_decref(errors);
    return keel_resp_success(cx, 200, json_pack("{s:s, s:o}", "status", "ready", "checks", checks),
                             NULL);
}

static keel_err h_metrics(keel_ctx *cx, void *ud)
{
    keel_server *s = ud;
    if (s->metrics == NULL)
        return keel_resp_problem(cx, 404, NULL, "Metrics are not enabled.", NULL);
    keel_buf b;
    keel_buf_init(&b, 64u * 1024u * 1024u);
    keel_err e = keel_metrics_expose(s->metrics, keel_req_param(cx, "prefix"), &b);
    if (e == KEEL_OK)
        e = keel_resp_body(cx, 200, KEEL_METRICS_CONTENT_TYPE, b.ptr ? b.ptr : "", b.len);
    keel_buf_cleanup(&b);
    return e;
}

keel_err keel__builtin_routes(keel_router *r, keel_server *s)
{
    keel_err e;
    if ((e = keel_router_add(r, KEEL_METHOD_GET, "/", h_root, s, KEEL_ROUTE_INLINE, NULL)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/health/live", h_live, s, KEEL_ROUTE_INLINE,
                             NULL)) ||
        /* readiness runs the probes, which may block: a worker route */
        (e = keel_router_add(r, KEEL_METHOD_GET, "/health/ready", h_ready, s, 0, NULL)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/metrics", h_metrics, s, KEEL_ROUTE_INLINE,
                             NULL)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/metrics/{prefix}", h_metrics, s,
                             KEEL_ROUTE_INLINE, NULL)))
        return e;
    return KEEL_OK;
}
