/* Tests for src/async/cqrs.c: dispatch of commands and queries, duplicates, unknown types,
 * handler errors and results, the chain hook, config errors, concurrency, OOM. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "keel_int.h"

#include <keel/chain.h>
#include <keel/cqrs.h>

/* A tiny in-memory "user repository" the handlers act on. */
typedef struct repo {
    pthread_mutex_t mu;
    json_t *users; /* email -> name */
    int calls;
} repo;

static keel_err create_user(const json_t *cmd, void *ud, keel_diag *d)
{
    repo *r = ud;
    const char *email = json_string_value(json_object_get(cmd, "email"));
    const char *name = json_string_value(json_object_get(cmd, "name"));
    if (email == NULL || name == NULL)
        return keel_diag_set(d, KEEL_EINVAL, 0, "email and name are required");
    pthread_mutex_lock(&r->mu);
    r->calls++;
    keel_err e = KEEL_OK;
    if (json_object_get(r->users, email) != NULL)
        e = keel_diag_set(d, KEEL_EEXIST, 0, "user exists");
    else
        json_object_set_new(r->users, email, json_string(name));
    pthread_mutex_unlock(&r->mu);
    return e;
}

static keel_err get_user(const json_t *q, json_t **result, void *ud, keel_diag *d)
{
    repo *r = ud;
    const char *email = json_string_value(json_object_get(q, "email"));
    pthread_mutex_lock(&r->mu);
    r->calls++;
    json_t *name = email != NULL ? json_object_get(r->users, email) : NULL;
    keel_err e = KEEL_OK;
    if (name == NULL)
        e = keel_diag_set(d, KEEL_ENOTFOUND, 0, "no such user");
    else
        *result = json_pack("{s:s, s:O}", "email", email, "name", name);
    pthread_mutex_unlock(&r->mu);
    return e;
}

static void repo_init(repo *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    r->users = json_object();
}

static void repo_destroy(repo *r)
{
    json_decref(r->users);
    pthread_mutex_destroy(&r->mu);
}

static keel_cqrs *make(const keel_chain *chain, repo *r)
{
    keel_cqrs_config c;
    keel_cqrs_config_default(&c);
    c.chain = chain;
    keel_cqrs *q;
    ASSERT_OK(keel_cqrs_create(&q, &c, NULL));
    ASSERT_OK(keel_cqrs_register_command(q, "user.create", create_user, r, NULL));
    ASSERT_OK(keel_cqrs_register_query(q, "user.get", get_user, r, NULL));
    return q;
}

static void test_dispatch(void **state)
{
    (void)state;
    repo r;
    repo_init(&r);
    keel_cqrs *q = make(NULL, &r);
    keel_diag d;
    json_t *cmd = json_pack("{s:s, s:s}", "email", "a@example.com", "name", "Ada");
    ASSERT_OK(keel_cqrs_execute(q, "user.create", cmd, NULL, &d));
    assert_int_equal(KEEL_EEXIST, keel_cqrs_execute(q, "user.create", cmd, NULL, &d));
    assert_string_equal("user exists", d.msg); /* the handler's diag comes through */
    json_decref(cmd);

    json_t *query = json_pack("{s:s}", "email", "a@example.com");
    json_t *res = NULL;
    ASSERT_OK(keel_cqrs_query(q, "user.get", query, &res, NULL, &d));
    assert_non_null(res);
    assert_string_equal("Ada", json_string_value(json_object_get(res, "name")));
    json_decref(res);
    json_decref(query);

    /* A query error leaves *result NULL. */
    query = json_pack("{s:s}", "email", "nobody@example.com");
    res = json_true();
    assert_int_equal(KEEL_ENOTFOUND, keel_cqrs_query(q, "user.get", query, &res, NULL, &d));
    assert_null(res);
    json_decref(query);

    /* A NULL payload reaches the handler as JSON null. */
    assert_int_equal(KEEL_EINVAL, keel_cqrs_execute(q, "user.create", NULL, NULL, &d));
    assert_string_equal("email and name are required", d.msg);
    assert_int_equal(4, r.calls);

    assert_true(keel_cqrs_has(q, KEEL_CQRS_COMMAND, "user.create"));
    assert_false(keel_cqrs_has(q, KEEL_CQRS_QUERY, "user.create"));
    assert_true(keel_cqrs_has(q, KEEL_CQRS_QUERY, "user.get"));
    keel_cqrs_destroy(q);
    repo_destroy(&r);
}

static void test_unknown_and_duplicates(void **state)
{
    (void)state;
    repo r;
    repo_init(&r);
    keel_cqrs *q = make(NULL, &r);
    keel_diag d;

    assert_int_equal(KEEL_ENOTFOUND, keel_cqrs_execute(q, "order.place", NULL, NULL, &d));
    assert_int_equal(KEEL_ENOTFOUND, d.code);
    assert_string_equal("no command handler registered for 'order.place'", d.msg);
    json_t *res = json_true();
    assert_int_equal(KEEL_ENOTFOUND, keel_cqrs_query(q, "order.get", NULL, &res, NULL, &d));
    assert_null(res);
    assert_string_equal("no query handler registered for 'order.get'", d.msg);
    /* Namespaces are separate: a query name is not a command. */
    assert_int_equal(KEEL_ENOTFOUND, keel_cqrs_execute(q, "user.get", NULL, NULL, &d));
    assert_non_null(strstr(d.msg, "'user.get'"));
    /* An unknown type without a diag is still the same error. */
    assert_int_equal(KEEL_ENOTFOUND, keel_cqrs_execute(q, "x", NULL, NULL, NULL));
    assert_int_equal(KEEL_ENOTFOUND, keel_cqrs_execute(q, "bad name", NULL, NULL, &d));
    assert_int_equal(0, r.calls);

    assert_int_equal(KEEL_EEXIST,
                     keel_cqrs_register_command(q, "user.create", create_user, &r, &d));
    assert_int_equal(KEEL_EEXIST, d.code);
    assert_string_equal("command 'user.create' already has a handler", d.msg);
    assert_int_equal(KEEL_EEXIST, keel_cqrs_register_query(q, "user.get", get_user, &r, &d));
    assert_string_equal("query 'user.get' already has a handler", d.msg);
    /* Same name in the other namespace is fine. */
    ASSERT_OK(keel_cqrs_register_query(q, "user.create", get_user, &r, &d));

    /* Registration errors name the field. */
    assert_int_equal(KEEL_EINVAL, keel_cqrs_register_command(q, "x", NULL, NULL, &d));
    assert_non_null(strstr(d.msg, "fn"));
    assert_int_equal(KEEL_EINVAL, keel_cqrs_register_query(q, "x", NULL, NULL, &d));
    assert_non_null(strstr(d.msg, "fn"));
    assert_int_equal(KEEL_EINVAL, keel_cqrs_register_command(q, "", create_user, NULL, &d));
    assert_non_null(strstr(d.msg, "name"));
    assert_int_equal(KEEL_EINVAL, keel_cqrs_register_command(q, NULL, create_user, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_cqrs_register_command(q, "a b", create_user, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_cqrs_register_command(NULL, "x", create_user, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_cqrs_execute(NULL, "x", NULL, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_cqrs_execute(q, NULL, NULL, NULL, &d));
    assert_int_equal(KEEL_EINVAL, keel_cqrs_query(q, "user.get", NULL, NULL, NULL, &d));
    assert_non_null(strstr(d.msg, "result"));
    keel_cqrs_destroy(q);
    repo_destroy(&r);
}

static keel_err null_result(const json_t *q, json_t **result, void *ud, keel_diag *d)
{
    (void)q;
    (void)ud;
    (void)d;
    *result = NULL;
    return KEEL_OK;
}

static keel_err leaky_failure(const json_t *q, json_t **result, void *ud, keel_diag *d)
{
    (void)q;
    (void)ud;
    (void)d;
    *result = json_object(); /* set despite failing: the bus must release it (ASan) */
    return KEEL_EIO;
}

static void test_query_results(void **state)
{
    (void)state;
    keel_cqrs *q;
    ASSERT_OK(keel_cqrs_create(&q, NULL, NULL));
    ASSERT_OK(keel_cqrs_register_query(q, "nothing", null_result, NULL, NULL));
    ASSERT_OK(keel_cqrs_register_query(q, "leaky", leaky_failure, NULL, NULL));
    json_t *res = NULL;
    ASSERT_OK(keel_cqrs_query(q, "nothing", NULL, &res, NULL, NULL));
    assert_true(json_is_null(res));
    json_decref(res);
    res = NULL;
    assert_int_equal(KEEL_EIO, keel_cqrs_query(q, "leaky", NULL, &res, NULL, NULL));
    assert_null(res);
    keel_cqrs_destroy(q);
}

/* ----------------------------------------------------------------- chain -- */

typedef struct trace_layer {
    keel_layer base;
    char log[512];
} trace_layer;

static keel_err trace_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    trace_layer *t = (trace_layer *)self;
    keel_cqrs_ctx *ctx = cx;
    size_t len = strlen(t->log);
    snprintf(t->log + len, sizeof(t->log) - len, "%s>%s:%s:%s", len ? " " : "",
             ctx->kind == KEEL_CQRS_COMMAND ? "cmd" : "query", ctx->name,
             (const char *)ctx->user);
    keel_err e = keel_chain_next(cur, cx);
    len = strlen(t->log);
    snprintf(t->log + len, sizeof(t->log) - len, " <%s%s", keel_err_name(e),
             ctx->result != NULL ? "+result" : "");
    return e;
}

/* Refuses every name starting with "admin." unless the user pointer is "root". */
static keel_err auth_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    (void)self;
    keel_cqrs_ctx *ctx = cx;
    if (strncmp(ctx->name, "admin.", 6) == 0 && strcmp((const char *)ctx->user, "root") != 0)
        return keel_diag_set(ctx->diag, KEEL_EDENIED, 0, "%s needs root", ctx->name);
    return keel_chain_next(cur, cx);
}

static keel_err admin_reset(const json_t *cmd, void *ud, keel_diag *d)
{
    (void)cmd;
    (void)d;
    (*(int *)ud)++;
    return KEEL_OK;
}

static void test_chain_hook(void **state)
{
    (void)state;
    trace_layer trace = {{"trace", trace_call, NULL}, ""};
    keel_layer auth = {"auth", auth_call, NULL};
    keel_chain *ch;
    ASSERT_OK(keel_chain_create(&ch));
    ASSERT_OK(keel_chain_add_take(ch, &trace.base));
    ASSERT_OK(keel_chain_add_take(ch, &auth));
    repo r;
    repo_init(&r);
    keel_cqrs *q = make(ch, &r);
    int resets = 0;
    ASSERT_OK(keel_cqrs_register_command(q, "admin.reset", admin_reset, &resets, NULL));

    keel_diag d;
    json_t *cmd = json_pack("{s:s, s:s}", "email", "b@example.com", "name", "Bob");
    ASSERT_OK(keel_cqrs_execute(q, "user.create", cmd, "alice", &d));
    json_decref(cmd);
    json_t *query = json_pack("{s:s}", "email", "b@example.com");
    json_t *res = NULL;
    ASSERT_OK(keel_cqrs_query(q, "user.get", query, &res, "alice", &d));
    assert_string_equal("Bob", json_string_value(json_object_get(res, "name")));
    json_decref(res);
    json_decref(query);
    assert_int_equal(KEEL_EDENIED, keel_cqrs_execute(q, "admin.reset", NULL, "alice", &d));
    assert_string_equal("admin.reset needs root", d.msg);
    assert_int_equal(0, resets);
    ASSERT_OK(keel_cqrs_execute(q, "admin.reset", NULL, "root", &d));
    assert_int_equal(1, resets);
    /* Unknown names are refused before the chain runs. */
    assert_int_equal(KEEL_ENOTFOUND, keel_cqrs_execute(q, "nope", NULL, "alice", &d));

    assert_string_equal(">cmd:user.create:alice <KEEL_OK >query:user.get:alice <KEEL_OK+result "
                        ">cmd:admin.reset:alice <KEEL_EDENIED >cmd:admin.reset:root <KEEL_OK",
                        trace.log);
    keel_cqrs_destroy(q);
    keel_chain_destroy(ch);
    repo_destroy(&r);
}

/* ---------------------------------------------------------------- config -- */

static void test_config_errors(void **state)
{
    (void)state;
    keel_cqrs_config c;
    keel_cqrs *q = (keel_cqrs *)&c;
    keel_diag d;
    keel_cqrs_config_default(&c);
    c.max_handlers = 0;
    assert_int_equal(KEEL_EINVAL, keel_cqrs_create(&q, &c, &d));
    assert_null(q);
    assert_non_null(strstr(d.msg, "max_handlers"));
    keel_cqrs_config_default(&c);
    c.size = 1;
    assert_int_equal(KEEL_EINVAL, keel_cqrs_create(&q, &c, &d));
    assert_non_null(strstr(d.msg, "size"));
    assert_int_equal(KEEL_EINVAL, keel_cqrs_create(NULL, NULL, &d));

    /* The cap applies per registry. */
    keel_cqrs_config_default(&c);
    c.max_handlers = 10;
    ASSERT_OK(keel_cqrs_create(&q, &c, &d));
    char name[16];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        ASSERT_OK(keel_cqrs_register_command(q, name, create_user, NULL, &d));
    }
    assert_int_equal(KEEL_EFULL, keel_cqrs_register_command(q, "c10", create_user, NULL, &d));
    assert_non_null(strstr(d.msg, "max_handlers"));
    ASSERT_OK(keel_cqrs_register_query(q, "q0", get_user, NULL, &d));
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        assert_true(keel_cqrs_has(q, KEEL_CQRS_COMMAND, name));
    }
    keel_cqrs_destroy(q);
    keel_cqrs_destroy(NULL);
}

/* ----------------------------------------------------------- concurrency -- */

typedef struct worker_arg {
    keel_cqrs *q;
    repo *r;
    int index;
    int failures;
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *w = arg;
    char name[32], email[64];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "t%d.cmd%d", w->index, i);
        if (keel_cqrs_register_command(w->q, name, create_user, w->r, NULL) != KEEL_OK)
            w->failures++;
        snprintf(email, sizeof(email), "u%d-%d@example.com", w->index, i);
        json_t *cmd = json_pack("{s:s, s:s}", "email", email, "name", "N");
        if (keel_cqrs_execute(w->q, name, cmd, NULL, NULL) != KEEL_OK)
            w->failures++;
        json_decref(cmd);
        json_t *query = json_pack("{s:s}", "email", email), *res = NULL;
        if (keel_cqrs_query(w->q, "user.get", query, &res, NULL, NULL) != KEEL_OK)
            w->failures++;
        json_decref(res);
        json_decref(query);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    repo r;
    repo_init(&r);
    keel_cqrs_config c;
    keel_cqrs_config_default(&c);
    c.max_handlers = 1000;
    keel_cqrs *q;
    ASSERT_OK(keel_cqrs_create(&q, &c, NULL));
    ASSERT_OK(keel_cqrs_register_query(q, "user.get", get_user, &r, NULL));
    pthread_t t[4];
    worker_arg w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_arg){q, &r, i, 0};
        assert_int_equal(0, pthread_create(&t[i], NULL, worker, &w[i]));
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(0, w[i].failures);
    }
    assert_int_equal(1600, r.calls);
    assert_int_equal(800, json_object_size(r.users));
    keel_cqrs_destroy(q);
    repo_destroy(&r);
}

static void test_oom(void **state)
{
    (void)state;
    keel_test_failalloc_install();
    for (int n = 0; n < 12; n++) {
        keel_test_failalloc_arm(n);
        keel_cqrs *q;
        if (keel_cqrs_create(&q, NULL, NULL) != KEEL_OK)
            continue;
        for (int i = 0; i < 10; i++) {
            char name[8];
            snprintf(name, sizeof(name), "n%d", i);
            keel_err e = keel_cqrs_register_command(q, name, create_user, NULL, NULL);
            assert_true(e == KEEL_OK || e == KEEL_ENOMEM);
        }
        keel_cqrs_destroy(q);
    }
    keel_test_failalloc_remove();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_unknown_and_duplicates),
        cmocka_unit_test(test_query_results),
        cmocka_unit_test(test_chain_hook),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
