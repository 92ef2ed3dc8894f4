/* keeld - the reference checkout API service built on libkeel.
 *
 * Startup: settings (.env + environment, every invalid variable reported, exit 2), logger,
 * metrics, background tasks, router, middleware chain, HTTP server, ready.
 * Shutdown (seed 003): SIGTERM/SIGINT -> readiness 503, stop accepting, let in-flight
 * requests finish for up to SHUTDOWN_TIMEOUT_SECONDS, stop background tasks, flush logs,
 * exit 0.  A second signal exits at once. */
#define _GNU_SOURCE 1
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keel/config.h>
#include <keel/keel.h>
#include <keel/redis.h>
#include <keel/store.h>
#include <keel/tasks.h>

#include "routes.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: keeld [--help] [--version] [--migrate-only]\n"
               "\n"
               "Starts the keel reference checkout API.  Configuration comes from the\n"
               "environment and from ./.env (real environment variables win); see README.md\n"
               "for the variables.  Invalid configuration exits with status 2.\n"
               "\n"
               "  --migrate-only   apply the database migrations, then exit\n");
}

static keel_err system_metrics_task(void *ud)
{
    return keel_system_metrics_update(ud);
}

static void fatal(const char *what, keel_err e, const keel_diag *d)
{
    fprintf(stderr, "keeld: %s: %s\n", what, d && d->msg[0] ? d->msg : keel_strerror(e));
}

/* Where keeld's migrations live: KEELD_MIGRATIONS_DIR, else the source tree this binary was
 * built from (running from a checkout), else the installed data directory. */
static const char *migrations_dir(void)
{
    const char *env = getenv("KEELD_MIGRATIONS_DIR");
    if (env != NULL && env[0] != '\0')
        return env;
    if (access(KEELD_SOURCE_MIGRATIONS, R_OK | X_OK) == 0)
        return KEELD_SOURCE_MIGRATIONS;
    return KEELD_INSTALLED_MIGRATIONS;
}

/* keeld's own variables (README): the identity rate limits and the session-check cache.
 * Each invalid one adds a line to errors; returns the number of invalid variables. */
static int auth_settings_load(const keel_env *env, keeld_auth_settings *as, keel_buf *errors)
{
    static const struct {
        const char *name;
        long long min, max;
        size_t off;
    } vars[] = {
        {"AUTH_RATE_LIMIT_PER_IP", 0, 1000000, offsetof(keeld_auth_settings, rate_limit_per_ip)},
        {"AUTH_RATE_LIMIT_PER_ACCOUNT", 0, 1000000,
         offsetof(keeld_auth_settings, rate_limit_per_account)},
        {"AUTH_RATE_LIMIT_WINDOW_SECONDS", 1, 86400,
         offsetof(keeld_auth_settings, rate_limit_window_s)},
        {"AUTH_SESSION_CACHE_MS", 0, 60000, offsetof(keeld_auth_settings, session_cache_ms)},
    };
    int bad = 0;
    keeld_auth_settings_default(as);
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        uint32_t *field = (uint32_t *)(void *)((char *)as + vars[i].off);
        long long v = 0;
        keel_diag d = {0};
        if (keel_env_get_int(env, vars[i].name, (long long)*field, vars[i].min, vars[i].max, &v,
                             &d) != KEEL_OK) {
            keel_err ae = keel_buf_appendf(errors, "%s\n", d.msg); /* past the cap: dropped */
            (void)ae;
            bad++;
            continue;
        }
        *field = (uint32_t)v;
    }
    return bad;
}

int main(int argc, char **argv)
{
    int migrate_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--migrate-only") == 0) {
            migrate_only = 1;
            continue;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("keeld %s\n", keel_version());
            return 0;
        }
        fprintf(stderr, "keeld: unknown option '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }

    /* Signals are handled synchronously by the main thread: block them before any
     * thread starts so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    keel_diag d = {0};
    keel_env *env = NULL;
    keel_err e = keel_env_load(&env, NULL, &d);
    if (e != KEEL_OK) {
        fprintf(stderr, "keeld: .env: %s\n", d.msg[0] ? d.msg : keel_strerror(e));
        return 2;
    }
    keel_settings *st = NULL;
    keel_buf errors;
    keel_buf_init(&errors, 64 * 1024);
    e = keel_settings_load(&st, env, &errors);
    keeld_auth_settings auth_settings;
    if (auth_settings_load(env, &auth_settings, &errors) > 0 && e == KEEL_OK) {
        keel_settings_destroy(st);
        st = NULL;
        e = KEEL_EINVAL;
    }
    keel_env_destroy(env);
    if (e != KEEL_OK) {
        fprintf(stderr, "keeld: invalid configuration:\n%s", errors.ptr ? errors.ptr : "");
        if (errors.ptr == NULL)
            fprintf(stderr, "%s\n", keel_strerror(e));
        keel_buf_cleanup(&errors);
        return 2;
    }
    keel_buf_cleanup(&errors);

    keel_log_config lc;
    keel_log_config_default(&lc);
    lc.dir = st->log_dir;
    lc.level = (keel_log_level)st->log_level;
    static const keel_log_console consoles[] = {KEEL_LOG_CONSOLE_TEXT, KEEL_LOG_CONSOLE_TEXT,
                                                KEEL_LOG_CONSOLE_JSON, KEEL_LOG_CONSOLE_OFF};
    lc.console = consoles[st->log_console < 4 ? st->log_console : 0];
    if (st->log_console == 0 && st->environment == KEEL_ENVIRONMENT_PRODUCTION)
        lc.console = KEEL_LOG_CONSOLE_JSON;
    lc.queue_capacity = st->log_queue_size;
    lc.overflow = st->log_overflow_block ? KEEL_LOG_OVERFLOW_BLOCK : KEEL_LOG_OVERFLOW_DROP;
    /* PCI: every record, to every sink, is redacted (card numbers, CVVs, track data) from
     * before the first record on - the seed's install_root_redaction_filter(). */
    if ((e = keel_redact_install_log_hook()) != KEEL_OK || (e = keel_log_start(&lc)) != KEEL_OK) {
        fprintf(stderr, "keeld: cannot start logging in '%s': %s\n", st->log_dir,
                keel_strerror(e));
        keel_settings_destroy(st);
        return 1;
    }
    keel_logger *log = keel_logger_get("app.main");
    /* Tracing: spans go to OTLP with OTEL_EXPORTER_OTLP_ENDPOINT, and to the log as JSON
     * records with TRACE_LOG_SPANS. */
    {
        keel_trace_config tc;
        keel_trace_config_default(&tc);
        tc.service_name = st->project_name;
        tc.service_version = st->project_version;
        tc.environment = st->environment_name;
        tc.otlp_endpoint = st->otel_exporter_otlp_endpoint;
        tc.log_spans = st->trace_log_spans;
        keel_diag td;
        memset(&td, 0, sizeof(td));
        if ((e = keel_trace_start(&tc, &td)) != KEEL_OK) {
            fatal("tracing", e, &td);
            keel_log_stop();
            keel_settings_destroy(st);
            return 1;
        }
    }
    if (st->signing_keys_generated)
        KEEL_LOG_WARNING(log, "signing keys not configured: using random per-process keys "
                              "(tokens will not survive a restart)");
    if (st->cors_wildcard_with_credentials)
        KEEL_LOG_WARNING(log, "CORS allows any origin with credentials; set "
                              "CORS_ALLOW_ORIGINS to the real origins in production");

    int rc = 1;
    keel_store *store = NULL;
    keel_redis *redis = NULL;
    keel_metrics *metrics = NULL;
    keel_system_metrics *sysm = NULL;
    keel_tasks *tasks = NULL;
    keel_router *router = NULL;
    keel_chain *chain = NULL;
    keel_server *srv = NULL;

    if ((e = keel_metrics_create(&metrics)) || (e = keel_metrics_add_process_collector(metrics)) ||
        (e = keel_metrics_add_log_collector(metrics)) ||
        (e = keel_system_metrics_create(&sysm, metrics))) {
        fatal("metrics", e, NULL);
        goto out;
    }
    keel_store_config dc;
    keel_store_config_default(&dc);
    dc.url = st->database_url;
    dc.metrics = metrics;
    dc.pool_size = st->http_workers < 64 ? st->http_workers : 64;
    dc.query_timeout_ms = keel_settings_dep_timeout_ms(st, "db_query", 0); /* DB_QUERY_TIMEOUT_MS */
    if ((e = keel_store_open(&store, &dc, &d)) != KEEL_OK) {
        fprintf(stderr, "keeld: database: %s\n", d.msg[0] ? d.msg : keel_strerror(e));
        KEEL_LOG_CRITICAL(log, "cannot open the database: %s", d.msg[0] ? d.msg : keel_strerror(e));
        rc = (e == KEEL_EINVAL || e == KEEL_EUNSUPPORTED) ? 2 : 1;
        goto out;
    }
    if ((e = keel_store_migrate(store, migrations_dir(), &d)) != KEEL_OK) {
        fprintf(stderr, "keeld: migrations: %s\n", d.msg[0] ? d.msg : keel_strerror(e));
        KEEL_LOG_CRITICAL(log, "migrations failed: %s", d.msg[0] ? d.msg : keel_strerror(e));
        goto out;
    }
    if (st->redis_url != NULL) {
        keel_redis_config rc_cfg;
        keel_redis_config_default(&rc_cfg);
        rc_cfg.url = st->redis_url;
        rc_cfg.metrics = metrics;
        rc_cfg.command_timeout_ms = keel_settings_dep_timeout_ms(st, "redis", 1000);
        if ((e = keel_redis_open(&redis, &rc_cfg, &d)) != KEEL_OK) {
            fprintf(stderr, "keeld: redis: %s\n", d.msg[0] ? d.msg : keel_strerror(e));
            KEEL_LOG_CRITICAL(log, "cannot reach Redis: %s", d.msg[0] ? d.msg : keel_strerror(e));
            rc = (e == KEEL_EINVAL || e == KEEL_EUNSUPPORTED) ? 2 : 1;
            goto out;
        }
    }
    if (migrate_only) {
        int64_t version = 0;
        if (keel_store_schema_version(store, &version) == KEEL_OK)
            printf("keeld: database at schema version %lld\n", (long long)version);
        rc = 0;
        goto out;
    }
    if ((e = keel_tasks_create(&tasks, metrics)) ||
        (e = keel_tasks_add_periodic(tasks, "update_system_metrics", 5000, system_metrics_task,
                                     sysm))) {
        fatal("background tasks", e, NULL);
        goto out;
    }
    keeld_app app = {st, store, redis, metrics, tasks, &auth_settings};
    if ((e = keel_router_create(&router)) != KEEL_OK ||
        (e = keeld_routes_register(router, &app, &d)) != KEEL_OK) {
        fatal("routes", e, &d);
        if (e == KEEL_EUNSUPPORTED || e == KEEL_EINVAL) /* e.g. JWT_ALGORITHM, signing keys */
            rc = 2;
        goto out;
    }
    /* Checkout sagas a crash left in flight are compensated before the first request. */
    if ((e = keeld_checkout_recover(&d)) != KEEL_OK)
        KEEL_LOG_ERROR(log, "saga recovery at startup: %s",
                       d.msg[0] ? d.msg : keel_strerror(e));

    keel_cors_config cors;
    keel_cors_config_default(&cors);
    cors.origins = st->cors_allow_origins;
    cors.methods = st->cors_allow_methods;
    cors.headers = st->cors_allow_headers;
    cors.allow_credentials = st->cors_allow_credentials;
    keel_http_chain_config hc;
    keel_http_chain_config_default(&hc);
    hc.cors = &cors;
    hc.metrics = metrics;
    /* Bearer tokens on every routed path but the public ones; per-IP limits on login and
     * register (routes/auth.c). */
    if ((e = keeld_auth_layers(&hc.auth, &hc.rate_limit, &d)) != KEEL_OK) {
        fatal("auth", e, &d);
        goto out;
    }
    if ((e = keel_http_chain_build(&hc, &chain)) != KEEL_OK) {
        fatal("middleware", e, NULL);
        goto out;
    }
    {
        /* Innermost: a server span per routed request, continuing an incoming traceparent. */
        keel_layer *tl = NULL;
        if ((e = keel_mw_trace(NULL, &tl)) != KEEL_OK ||
            (e = keel_chain_add_take(chain, tl)) != KEEL_OK) {
            if (tl != NULL && e == KEEL_ENOMEM)
                tl->dispose(tl);
            fatal("middleware", e, NULL);
            goto out;
        }
    }

    keel_server_config sc;
    keel_server_config_default(&sc);
    sc.host = st->host;
    sc.port = st->port;
    sc.workers = st->http_workers;
    sc.max_body = st->http_max_body_bytes;
    sc.max_connections = st->http_max_connections;
    sc.max_connections_per_ip = st->http_max_connections_per_ip;
    sc.connection_memory = st->http_connection_memory_limit;
    sc.connection_timeout_s = st->http_connection_timeout_seconds;
    sc.environment = st->environment_name;
    sc.name = st->project_name;
    sc.version = st->project_version;
    sc.inline_check = keeld_inline_check;
    e = keel_server_create(&srv, &sc, router, chain, metrics, &d);
    if (e != KEEL_OK) {
        fatal("server", e, &d);
        goto out;
    }
    chain = NULL; /* the server owns it now */
    if ((e = keel_server_add_probe(srv, "database", keel_store_ping, store)) != KEEL_OK ||
        (redis != NULL && (e = keel_server_add_probe(srv, "redis", keel_redis_ping, redis)))) {
        fatal("server", e, NULL);
        goto out;
    }
    if ((e = keel_server_start(srv, &d)) != KEEL_OK) {
        fatal("server", e, &d);
        KEEL_LOG_CRITICAL(log, "cannot start HTTP server: %s", d.msg);
        goto out;
    }
    if ((e = keel_tasks_start(tasks)) != KEEL_OK) {
        fatal("background tasks", e, NULL);
        goto out;
    }
#ifdef __GLIBC__
    /* Startup (migrations, saga recovery, the dummy Argon2id hash, TLS and crypto set-up)
     * leaves freed memory in the heap: handing it back before serving saves ~0.24 MiB of
     * resident memory (measured), about what the RSS budget of bench/http.sh has to spare. */
    (void)malloc_trim(0);
#endif
    keel_server_set_ready(srv, 1);
    {
        keel_log_field f[3] = {KEEL_LF_STR("host", st->host),
                               KEEL_LF_INT("port", keel_server_port(srv)),
                               KEEL_LF_STR("environment", st->environment_name)};
        KEEL_LOG_FIELDS(log, KEEL_LOG_LEVEL_INFO, f, 3, "keeld %s listening on http://%s:%u",
                        keel_version(), st->host, keel_server_port(srv));
    }

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    KEEL_LOG_INFO(log, "received %s: draining (up to %u s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                  st->shutdown_timeout_seconds);
    /* Drain: quiesce, then wait for in-flight requests while watching for a second signal. */
    (void)keel_server_drain(srv, 0);
    uint64_t deadline = keel_time_mono_ms() + (uint64_t)st->shutdown_timeout_seconds * 1000u;
    while (keel_server_inflight(srv) > 0 && keel_time_mono_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        if (sigtimedwait(&sigs, NULL, &ts) > 0) {
            fprintf(stderr, "keeld: second signal, exiting now\n");
            _exit(1);
        }
    }
    if (keel_server_inflight(srv) > 0)
        KEEL_LOG_WARNING(log, "shutdown timeout: %u request(s) still in flight",
                         keel_server_inflight(srv));
    if (keel_tasks_stop(tasks, 5000) != KEEL_OK)
        KEEL_LOG_WARNING(log, "a background task did not stop within 5 s");
    keel_server_destroy(srv);
    srv = NULL;
    KEEL_LOG_INFO(log, "keeld stopped");
    rc = 0;
out:
    keel_server_destroy(srv);
    keel_chain_destroy(chain);
    keel_tasks_destroy(tasks);
    keel_router_destroy(router);
    keel_system_metrics_destroy(sysm);
    keel_store_close(store);
    keel_redis_close(redis);
    keel_metrics_destroy(metrics);
    keeld_routes_cleanup();
    keel_trace_stop();
    keel_log_stop();
    keel_settings_destroy(st);
    return rc;
}
