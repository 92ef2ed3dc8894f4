/* saga.c - saga orchestrator: definitions, execution, compensation with linear backoff,
 * recovery of sagas a crash left in flight (keel/saga.h). */
#include "keel_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include <keel/payment.h>
#include <keel/saga.h>

#include "saga_int.h"

/* ------------------------------------------------------------- names -- */

static const char *const STATE_NAMES[] = {NULL,          "RUNNING",     "COMPENSATING",
                                          "COMPLETED",   "COMPENSATED", "FAILED_COMPENSATION"};

const char *keel_saga_state_name(keel_saga_state s)
{
    if ((int)s < 1 || (size_t)s >= KEEL_ARRAY_LEN(STATE_NAMES))
        return "?";
    return STATE_NAMES[s];
}

keel_err keel_saga_state_parse(const char *s, keel_saga_state *out)
{
    if (s == NULL || out == NULL)
        return KEEL_EINVAL;
    for (size_t i = 1; i < KEEL_ARRAY_LEN(STATE_NAMES); i++) {
        if (strcmp(s, STATE_NAMES[i]) == 0) {
            *out = (keel_saga_state)i;
            return KEEL_OK;
        }
    }
    return KEEL_EPARSE;
}

static const char *const KIND_NAMES[] = {NULL,
                                         "saga_started",
                                         "step_started",
                                         "step_completed",
                                         "step_failed",
                                         "saga_aborted",
                                         "compensation_started",
                                         "compensation_completed",
                                         "compensation_failed",
                                         "saga_finished",
                                         "saga_claimed"};

const char *keel_saga_event_kind_name(keel_saga_event_kind k)
{
    if ((int)k < 1 || (size_t)k >= KEEL_ARRAY_LEN(KIND_NAMES))
        return "?";
    return KIND_NAMES[k];
}

int keel__saga_name_ok(const char *s, size_t max)
{
    if (s == NULL || *s == '\0')
        return 0;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (n >= max || (unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e)
            return 0;
    }
    return 1;
}

int keel_saga_id_valid(const char *id)
{
    return keel__saga_name_ok(id, KEEL_SAGA_ID_MAX);
}

/* The default owner is computed once per process; a fork()ed child gets its own. */
static pthread_mutex_t g_owner_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_owner[KEEL_SAGA_OWNER_MAX + 1];
static pid_t g_owner_pid;

void keel__saga_default_owner(char *out, size_t cap)
{
    pthread_mutex_lock(&g_owner_mu);
    pid_t pid = getpid();
    if (g_owner[0] == '\0' || g_owner_pid != pid) {
        char host[64];
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "host");
        host[sizeof(host) - 1] = '\0';
        for (char *p = host; *p; p++)
            if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
                *p = '_';
        uint32_t rnd = 0;
        if (keel_random_bytes(&rnd, sizeof(rnd)) != KEEL_OK)
            rnd = (uint32_t)keel_time_mono_ns();
        snprintf(g_owner, sizeof(g_owner), "%s:%ld:%08x", host, (long)pid, (unsigned)rnd);
        g_owner_pid = pid;
    }
    snprintf(out, cap, "%s", g_owner);
    pthread_mutex_unlock(&g_owner_mu);
}

/* ------------------------------------------------------------ context -- */

typedef struct dump_state {
    keel_buf buf;
    keel_err err;
} dump_state;

static int dump_cb(const char *p, size_t n, void *ud)
{
    dump_state *st = ud;
    keel_err e = keel_buf_append(&st->buf, p, n);
    if (e != KEEL_OK) {
        st->err = e;
        return -1;
    }
    return 0;
}

keel_err keel__saga_ctx_dump(const json_t *ctx, char **out, keel_diag *diag)
{
    *out = NULL;
    if (!json_is_object(ctx))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "saga context must be a JSON object");
    dump_state st;
    keel_buf_init(&st.buf, KEEL_SAGA_CONTEXT_MAX);
    st.err = KEEL_OK;
    if (json_dump_callback(ctx, dump_cb, &st, JSON_COMPACT | JSON_SORT_KEYS) != 0) {
        keel_err e = st.err != KEEL_OK ? st.err : KEEL_ENOMEM;
        keel_buf_cleanup(&st.buf);
        if (e == KEEL_ETOOBIG)
            return keel_diag_set(diag, e, 0, "saga context exceeds %u bytes",
                                 (unsigned)KEEL_SAGA_CONTEXT_MAX);
        return keel_diag_set(diag, e, 0, "cannot serialise the saga context");
    }
    size_t n;
    *out = keel_buf_take(&st.buf, &n);
    if (*out == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    return KEEL_OK;
}

keel_err keel__saga_ctx_load(const char *s, size_t len, const char *saga_id, json_t **out,
                             keel_diag *diag)
{
    json_error_t jerr;
    *out = NULL;
    json_t *v = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
        return keel_diag_set(diag, KEEL_EPARSE, 0, "saga '%s': stored context is not JSON",
                             saga_id);
    }
    if (!json_is_object(v)) {
        json_decref(v);
        return keel_diag_set(diag, KEEL_EPARSE, 0,
                             "saga '%s': stored context is not a JSON object", saga_id);
    }
    *out = v;
    return KEEL_OK;
}

keel_err keel__saga_record_copy(keel_saga_record *dst, const keel_saga_record *src, int deep)
{
    *dst = *src;
    dst->context = NULL;
    if (src->context == NULL)
        return KEEL_OK;
    if (deep) {
        dst->context = json_deep_copy(src->context);
        return dst->context != NULL ? KEEL_OK : KEEL_ENOMEM;
    }
    dst->context = json_incref(src->context);
    return KEEL_OK;
}

void keel_saga_record_cleanup(keel_saga_record *rec)
{
    if (rec == NULL)
        return;
    json_decref(rec->context);
    rec->context = NULL;
}

/* --------------------------------------------------------- definitions -- */

typedef struct step_def {
    char *name;
    keel_saga_fn action;
    keel_saga_fn compensate;
    void *ud;
} step_def;

struct keel_saga_def {
    char *name;
    keel_saga_config cfg;
    char owner[KEEL_SAGA_OWNER_MAX + 1]; /* "" = process default */
    step_def steps[KEEL_SAGA_STEPS_MAX];
    size_t n;
    atomic_int used;
};

void keel_saga_config_default(keel_saga_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->compensation_retries = 3;
    cfg->compensation_base_delay_ms = 100;
    cfg->clock = NULL;
    cfg->recovery = KEEL_SAGA_RECOVER_COMPENSATE;
    cfg->owner = NULL;
    cfg->lease_ms = 60000;
}

keel_err keel_saga_def_create(keel_saga_def **out, const char *name, const keel_saga_config *cfg)
{
    if (out == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    keel_saga_config c;
    keel_saga_config_default(&c);
    if (cfg != NULL) {
        if (cfg->size < sizeof(keel_saga_config))
            return KEEL_EINVAL;
        c = *cfg;
    }
    if (!keel__saga_name_ok(name, KEEL_SAGA_NAME_MAX) || c.compensation_retries == 0 ||
        (c.recovery != KEEL_SAGA_RECOVER_COMPENSATE && c.recovery != KEEL_SAGA_RECOVER_RESUME) ||
        (c.owner != NULL && !keel__saga_name_ok(c.owner, KEEL_SAGA_OWNER_MAX)))
        return KEEL_EINVAL;
    keel_saga_def *d = keel__new(keel_saga_def);
    if (d == NULL)
        return KEEL_ENOMEM;
    d->name = keel_strdup(name);
    if (d->name == NULL) {
        keel_free(d);
        return KEEL_ENOMEM;
    }
    if (c.owner != NULL)
        snprintf(d->owner, sizeof(d->owner), "%s", c.owner);
    c.owner = NULL;
    d->cfg = c;
    atomic_init(&d->used, 0);
    *out = d;
    return KEEL_OK;
}

keel_err keel_saga_def_add_step(keel_saga_def *def, const char *name, keel_saga_fn action,
                                keel_saga_fn compensate, void *ud)
{
    if (def == NULL || action == NULL || !keel__saga_name_ok(name, KEEL_SAGA_NAME_MAX))
        return KEEL_EINVAL;
    if (atomic_load(&def->used))
        return KEEL_ESTATE;
    for (size_t i = 0; i < def->n; i++)
        if (strcmp(def->steps[i].name, name) == 0)
            return KEEL_EINVAL;
    if (def->n >= KEEL_SAGA_STEPS_MAX)
        return KEEL_EFULL;
    char *nm = keel_strdup(name);
    if (nm == NULL)
        return KEEL_ENOMEM;
    def->steps[def->n] = (step_def){nm, action, compensate, ud};
    def->n++;
    return KEEL_OK;
}

const char *keel_saga_def_name(const keel_saga_def *def)
{
    return def != NULL ? def->name : NULL;
}

size_t keel_saga_def_nsteps(const keel_saga_def *def)
{
    return def != NULL ? def->n : 0;
}

void keel_saga_def_destroy(keel_saga_def *def)
{
    if (def == NULL)
        return;
    for (size_t i = 0; i < def->n; i++)
        keel_free(def->steps[i].name);
    keel_free(def->name);
    keel_free(def);
}

/* ---------------------------------------------------------- execution -- */

struct keel_saga_exec {
    keel_saga_record rec; /* the saga's state; rec.context is the context */
    keel_saga_step_result steps[KEEL_SAGA_STEPS_MAX];
    size_t nsteps;
    int comp_failed[KEEL_SAGA_STEPS_MAX]; /* compensation failure list, in order */
    size_t ncomp_failed;
    int recovered;
};

/* Everything one drive of a saga needs. */
typedef struct runner {
    const keel_saga_def *def;
    keel_saga_log *log;
    keel_saga_exec *x;
    uint64_t lease_ms;
    int recovering;
    keel_logger *lg;
    keel_diag *diag;
} runner;

static keel_saga_exec *exec_new(const keel_saga_def *def)
{
    keel_saga_exec *x = keel__new(keel_saga_exec);
    if (x == NULL)
        return NULL;
    x->nsteps = def->n;
    for (size_t i = 0; i < def->n; i++) {
        x->steps[i].name = def->steps[i].name;
        x->steps[i].status = KEEL_SAGA_STEP_PENDING;
        x->steps[i].error = KEEL_OK;
    }
    x->rec.failed_step = -1;
    x->rec.comp_next = -1;
    return x;
}

/* Step names point into the definition while running; the result keeps its own copies so
 * that it may outlive the definition. */
static keel_err exec_detach(keel_saga_exec *x)
{
    for (size_t i = 0; i < x->nsteps; i++) {
        char *c = keel_strdup(x->steps[i].name);
        if (c == NULL) {
            for (size_t j = 0; j < i; j++)
                keel_free((char *)(uintptr_t)x->steps[j].name);
            for (size_t j = i; j < x->nsteps; j++)
                x->steps[j].name = NULL;
            return KEEL_ENOMEM;
        }
        x->steps[i].name = c;
    }
    return KEEL_OK;
}

static void exec_free(keel_saga_exec *x, int detached)
{
    if (x == NULL)
        return;
    if (detached)
        for (size_t i = 0; i < x->nsteps; i++)
            keel_free((char *)(uintptr_t)x->steps[i].name);
    keel_saga_record_cleanup(&x->rec);
    keel_free(x);
}

void keel_saga_exec_destroy(keel_saga_exec *x)
{
    exec_free(x, 1);
}

/* Record a transition (the record in r->x->rec already reflects it) and log it at INFO. */
static keel_err emit(runner *r, keel_saga_event_kind kind, int step, keel_err error,
                     unsigned attempt, int final, int ctx_changed)
{
    keel_saga_record *rec = &r->x->rec;
    const char *step_name = step >= 0 ? r->def->steps[step].name : NULL;
    keel_log_field f[6];
    size_t nf = 0;
    f[nf++] = KEEL_LF_STR("saga_id", rec->id);
    f[nf++] = KEEL_LF_STR("saga", rec->name);
    f[nf++] = KEEL_LF_STR("state", keel_saga_state_name(rec->state));
    if (step_name != NULL)
        f[nf++] = KEEL_LF_STR("step", step_name);
    if (attempt > 0)
        f[nf++] = KEEL_LF_INT("attempt", attempt);
    if (error != KEEL_OK)
        f[nf++] = KEEL_LF_STR("error", keel_err_name(error));
    KEEL_LOG_FIELDS(r->lg, KEEL_LOG_LEVEL_INFO, f, nf, "saga %s %s: %s%s%s", rec->name, rec->id,
                    keel_saga_event_kind_name(kind), step_name ? " " : "",
                    step_name ? step_name : "");
    if (r->log == NULL)
        return KEEL_OK;
    keel_saga_event ev = {kind, rec, step, step_name, error, attempt, final, ctx_changed,
                          r->lease_ms};
    keel_err e = r->log->record(r->log, &ev, r->diag);
    if (e != KEEL_OK) {
        keel_log_field ef[3] = {KEEL_LF_STR("saga_id", rec->id), KEEL_LF_STR("saga", rec->name),
                                KEEL_LF_STR("error", keel_err_name(e))};
        KEEL_LOG_FIELDS(r->lg, KEEL_LOG_LEVEL_ERROR, ef, 3,
                        "saga %s %s: cannot record %s (%s); the saga stops here and is left to "
                        "recovery",
                        rec->name, rec->id, keel_saga_event_kind_name(kind), keel_strerror(e));
    }
    return e;
}

static keel_err finish(runner *r, keel_saga_state st)
{
    keel_saga_record *rec = &r->x->rec;
    rec->state = st;
    rec->in_step = 0;
    if (st == KEEL_SAGA_FAILED_COMPENSATION) {
        keel_log_field f[3] = {KEEL_LF_STR("saga_id", rec->id), KEEL_LF_STR("saga", rec->name),
                               KEEL_LF_INT("compensation_failures", rec->comp_failures)};
        KEEL_LOG_FIELDS(r->lg, KEEL_LOG_LEVEL_ERROR, f, 3,
                        "saga %s %s: FAILED_COMPENSATION (%d compensation(s) failed); manual "
                        "reconciliation needed",
                        rec->name, rec->id, rec->comp_failures);
    }
    return emit(r, KEEL_SAGA_EV_FINISHED, -1, KEEL_OK, 0, 0, 1);
}

static keel_saga_call make_call(const runner *r, size_t step, unsigned attempt)
{
    keel_saga_call c = {r->x->rec.id, r->x->rec.name, r->def->steps[step].name,
                        step,         attempt,        r->recovering};
    return c;
}

/* Compensate from rec.comp_next down to step 0, then finish. */
static keel_err compensate(runner *r)
{
    keel_saga_exec *x = r->x;
    keel_saga_record *rec = &x->rec;
    const keel_saga_config *cfg = &r->def->cfg;
    keel_err e;
    rec->state = KEEL_SAGA_COMPENSATING;
    while (rec->comp_next >= 0) {
        int k = rec->comp_next;
        const step_def *sd = &r->def->steps[k];
        if (sd->compensate == NULL) {
            rec->comp_next = k - 1; /* nothing to undo; persisted with the next event */
            continue;
        }
        for (unsigned attempt = 1;; attempt++) {
            if ((e = emit(r, KEEL_SAGA_EV_COMP_STARTED, k, KEEL_OK, attempt, 0, 0)) != KEEL_OK)
                return e;
            keel_saga_call call = make_call(r, (size_t)k, attempt);
            keel_err ce = sd->compensate(&call, rec->context, sd->ud);
            x->steps[k].comp_attempts++;
            if (ce == KEEL_OK) {
                x->steps[k].status = KEEL_SAGA_STEP_COMPENSATED;
                rec->comp_next = k - 1;
                if ((e = emit(r, KEEL_SAGA_EV_COMP_COMPLETED, k, KEEL_OK, attempt, 0, 1)) !=
                    KEEL_OK)
                    return e;
                break;
            }
            x->steps[k].error = ce;
            int final = attempt >= cfg->compensation_retries;
            if (final) {
                x->steps[k].status = KEEL_SAGA_STEP_COMPENSATION_FAILED;
                rec->comp_failures++;
                rec->comp_next = k - 1;
                if (x->ncomp_failed < KEEL_SAGA_STEPS_MAX)
                    x->comp_failed[x->ncomp_failed++] = k;
            }
            if ((e = emit(r, KEEL_SAGA_EV_COMP_FAILED, k, ce, attempt, final, 0)) != KEEL_OK)
                return e;
            if (final) {
                keel_log_field f[4] = {KEEL_LF_STR("saga_id", rec->id),
                                       KEEL_LF_STR("saga", rec->name),
                                       KEEL_LF_STR("step", sd->name),
                                       KEEL_LF_STR("error", keel_err_name(ce))};
                KEEL_LOG_FIELDS(r->lg, KEEL_LOG_LEVEL_ERROR, f, 4,
                                "saga %s %s: compensation of %s failed after %u attempts",
                                rec->name, rec->id, sd->name, attempt);
                break;
            }
            keel_clock_sleep_ms(cfg->clock, cfg->compensation_base_delay_ms * attempt);
        }
    }
    return finish(r, rec->comp_failures > 0 ? KEEL_SAGA_FAILED_COMPENSATION
                                            : KEEL_SAGA_COMPENSATED);
}

/* Run steps from rec.next_step on; compensate on the first failure. */
static keel_err forward(runner *r)
{
    keel_saga_exec *x = r->x;
    keel_saga_record *rec = &x->rec;
    keel_err e;
    rec->state = KEEL_SAGA_RUNNING;
    while ((size_t)rec->next_step < r->def->n) {
        int k = rec->next_step;
        const step_def *sd = &r->def->steps[k];
        rec->in_step = 1;
        x->steps[k].status = KEEL_SAGA_STEP_STARTED;
        if ((e = emit(r, KEEL_SAGA_EV_STEP_STARTED, k, KEEL_OK, 0, 0, 0)) != KEEL_OK)
            return e;
        keel_saga_call call = make_call(r, (size_t)k, 1);
        keel_err se = sd->action(&call, rec->context, sd->ud);
        rec->in_step = 0;
        if (se == KEEL_OK) {
            x->steps[k].status = KEEL_SAGA_STEP_COMPLETED;
            rec->next_step = k + 1;
            if ((e = emit(r, KEEL_SAGA_EV_STEP_COMPLETED, k, KEEL_OK, 0, 0, 1)) != KEEL_OK)
                return e;
            continue;
        }
        x->steps[k].status = KEEL_SAGA_STEP_FAILED;
        x->steps[k].error = se;
        rec->failed_step = k;
        rec->error = se;
        rec->state = KEEL_SAGA_COMPENSATING;
        rec->comp_next = k - 1;
        keel_log_field f[4] = {KEEL_LF_STR("saga_id", rec->id), KEEL_LF_STR("saga", rec->name),
                               KEEL_LF_STR("step", sd->name),
                               KEEL_LF_STR("error", keel_err_name(se))};
        KEEL_LOG_FIELDS(r->lg, KEEL_LOG_LEVEL_WARNING, f, 4,
                        "saga %s %s: step %s failed (%s); compensating", rec->name, rec->id,
                        sd->name, keel_strerror(se));
        if ((e = emit(r, KEEL_SAGA_EV_STEP_FAILED, k, se, 0, 0, 0)) != KEEL_OK)
            return e;
        return compensate(r);
    }
    return finish(r, KEEL_SAGA_COMPLETED);
}

static keel_err new_claim(char out[KEEL_UUID_SIZE], keel_diag *diag)
{
    keel_err e = keel_uuid4(out);
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "cannot generate a saga claim token");
    return KEEL_OK;
}

keel_err keel_saga_execute(const keel_saga_def *def, keel_saga_log *log, const char *saga_id,
                           json_t *ctx, keel_saga_exec **out, keel_diag *diag)
{
    if (out == NULL || def == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_saga_execute: invalid argument");
    *out = NULL;
    if (saga_id != NULL && !keel_saga_id_valid(saga_id))
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "saga id must be 1-%d printable ASCII characters without spaces",
                             KEEL_SAGA_ID_MAX);
    if (ctx != NULL && !json_is_object(ctx))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "saga context must be a JSON object");
    atomic_store(&((keel_saga_def *)(uintptr_t)def)->used, 1);

    keel_saga_exec *x = exec_new(def);
    if (x == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    keel_saga_record *rec = &x->rec;
    keel_err e;
    if (saga_id != NULL) {
        snprintf(rec->id, sizeof(rec->id), "%s", saga_id);
    } else {
        char u[KEEL_UUID_SIZE];
        if ((e = keel_uuid4(u)) != KEEL_OK) {
            exec_free(x, 0);
            return keel_diag_set(diag, e, 0, "cannot generate a saga id");
        }
        snprintf(rec->id, sizeof(rec->id), "%s", u);
    }
    snprintf(rec->name, sizeof(rec->name), "%s", def->name);
    if (def->owner[0] != '\0')
        snprintf(rec->owner, sizeof(rec->owner), "%s", def->owner);
    else
        keel__saga_default_owner(rec->owner, sizeof(rec->owner));
    if ((e = new_claim(rec->claim, diag)) != KEEL_OK) {
        exec_free(x, 0);
        return e;
    }
    rec->context = ctx != NULL ? json_incref(ctx) : json_object();
    if (rec->context == NULL) {
        exec_free(x, 0);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    }
    rec->state = KEEL_SAGA_RUNNING;

    runner r = {def, log, x, def->cfg.lease_ms, 0, keel_logger_get("keel.pay.saga"), diag};
    if ((e = emit(&r, KEEL_SAGA_EV_STARTED, -1, KEEL_OK, 0, 0, 1)) == KEEL_OK)
        e = forward(&r);
    if (e == KEEL_OK)
        e = exec_detach(x);
    if (e != KEEL_OK) {
        exec_free(x, 0);
        if (e == KEEL_ENOMEM)
            keel_diag_set(diag, e, 0, "out of memory");
        return e;
    }
    *out = x;
    return KEEL_OK;
}

keel_err keel_saga_assert_succeeded(const keel_saga_exec *x)
{
    if (x == NULL)
        return KEEL_EINVAL;
    switch (x->rec.state) {
    case KEEL_SAGA_COMPLETED:
        return KEEL_OK;
    case KEEL_SAGA_COMPENSATED:
        return x->rec.error != KEEL_OK ? x->rec.error : KEEL_ESTATE;
    case KEEL_SAGA_FAILED_COMPENSATION:
        return KEEL_EPAY_COMPENSATION;
    default:
        return KEEL_ESTATE;
    }
}

keel_saga_state keel_saga_exec_state(const keel_saga_exec *x)
{
    return x != NULL ? x->rec.state : (keel_saga_state)0;
}

const char *keel_saga_exec_id(const keel_saga_exec *x)
{
    return x != NULL ? x->rec.id : NULL;
}

const char *keel_saga_exec_name(const keel_saga_exec *x)
{
    return x != NULL ? x->rec.name : NULL;
}

json_t *keel_saga_exec_context(const keel_saga_exec *x)
{
    return x != NULL ? x->rec.context : NULL;
}

int keel_saga_exec_failed_step(const keel_saga_exec *x)
{
    return x != NULL ? x->rec.failed_step : -1;
}

keel_err keel_saga_exec_error(const keel_saga_exec *x)
{
    return x != NULL ? x->rec.error : KEEL_EINVAL;
}

size_t keel_saga_exec_nsteps(const keel_saga_exec *x)
{
    return x != NULL ? x->nsteps : 0;
}

const keel_saga_step_result *keel_saga_exec_step(const keel_saga_exec *x, size_t i)
{
    if (x == NULL || i >= x->nsteps)
        return NULL;
    return &x->steps[i];
}

size_t keel_saga_exec_ncompensation_failures(const keel_saga_exec *x)
{
    return x != NULL ? x->ncomp_failed : 0;
}

int keel_saga_exec_compensation_failure(const keel_saga_exec *x, size_t i)
{
    if (x == NULL || i >= x->ncomp_failed)
        return -1;
    return x->comp_failed[i];
}

int keel_saga_exec_recovered(const keel_saga_exec *x)
{
    return x != NULL ? x->recovered : 0;
}

/* ------------------------------------------------------------ logs API -- */

keel_err keel_saga_log_load(keel_saga_log *log, const char *saga_id, keel_saga_record *out,
                            keel_diag *diag)
{
    if (log == NULL || saga_id == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_saga_log_load: invalid argument");
    memset(out, 0, sizeof(*out));
    if (!keel_saga_id_valid(saga_id))
        return keel_diag_set(diag, KEEL_ENOTFOUND, 0, "saga '%.64s' not found (invalid id)",
                             saga_id);
    return log->load(log, saga_id, out, diag);
}

keel_err keel_saga_log_history(keel_saga_log *log, const char *saga_id, keel_saga_entry_fn fn,
                               void *ud, keel_diag *diag)
{
    if (log == NULL || saga_id == NULL || fn == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_saga_log_history: invalid argument");
    if (!keel_saga_id_valid(saga_id))
        return keel_diag_set(diag, KEEL_ENOTFOUND, 0, "saga '%.64s' not found (invalid id)",
                             saga_id);
    return log->history(log, saga_id, fn, ud, diag);
}

void keel_saga_log_destroy(keel_saga_log *log)
{
    if (log != NULL && log->destroy != NULL)
        log->destroy(log);
}

/* ------------------------------------------------------------ recovery -- */

void keel_saga_recover_config_default(keel_saga_recover_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->lease_ms = 60000;
}

static const keel_saga_def *find_def(const keel_saga_def *const *defs, size_t n,
                                     const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (defs[i] != NULL && strcmp(defs[i]->name, name) == 0)
            return defs[i];
    return NULL;
}

/* Rebuild per-step results from a durable record (see keel_saga_exec_step). */
static void reconstruct(keel_saga_exec *x, const keel_saga_def *def)
{
    const keel_saga_record *rec = &x->rec;
    for (size_t i = 0; i < x->nsteps; i++) {
        int k = (int)i;
        if (k < rec->next_step)
            x->steps[i].status = KEEL_SAGA_STEP_COMPLETED;
        else if (k == rec->next_step && rec->in_step)
            x->steps[i].status = KEEL_SAGA_STEP_STARTED;
        if (k == rec->failed_step) {
            x->steps[i].status =
                rec->error == KEEL_ESTATE ? KEEL_SAGA_STEP_STARTED : KEEL_SAGA_STEP_FAILED;
            x->steps[i].error = rec->error;
        }
        if (rec->state == KEEL_SAGA_COMPENSATING && k > rec->comp_next &&
            k < rec->next_step && def->steps[i].compensate != NULL)
            x->steps[i].status = KEEL_SAGA_STEP_COMPENSATED;
    }
}

/* Drive one claimed saga; rec (loaded after the claim) is taken over by the execution. */
static keel_err recover_one(const keel_saga_def *def, keel_saga_log *log,
                            keel_saga_record *rec, const keel_saga_recover_config *cfg,
                            keel_saga_recover_report *rep, keel_diag *diag)
{
    keel_saga_exec *x = exec_new(def);
    if (x == NULL) {
        keel_saga_record_cleanup(rec);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    }
    x->rec = *rec;
    rec->context = NULL;
    x->recovered = 1;
    if (x->rec.context == NULL && (x->rec.context = json_object()) == NULL) {
        exec_free(x, 0);
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    }
    reconstruct(x, def);
    runner r = {def, log, x, cfg->lease_ms, 1, keel_logger_get("keel.pay.saga"), diag};
    keel_saga_record *s = &x->rec;
    KEEL_LOG_INFO(r.lg, "saga %s %s: recovering from %s (step %d%s)", s->name, s->id,
                  keel_saga_state_name(s->state), s->next_step,
                  s->in_step ? ", outcome unknown" : "");
    keel_err e;
    if (s->state == KEEL_SAGA_COMPENSATING) {
        e = compensate(&r);
    } else if (!s->in_step && (size_t)s->next_step >= def->n) {
        e = finish(&r, KEEL_SAGA_COMPLETED);
    } else if (def->cfg.recovery == KEEL_SAGA_RECOVER_RESUME) {
        e = forward(&r);
    } else {
        int k = s->next_step;
        s->failed_step = k;
        s->error = KEEL_ESTATE;
        s->comp_next = s->in_step ? k : k - 1;
        s->in_step = 0;
        s->state = KEEL_SAGA_COMPENSATING;
        e = emit(&r, KEEL_SAGA_EV_ABORTED, k, KEEL_ESTATE, 0, 0, 0);
        if (e == KEEL_OK)
            e = compensate(&r);
    }
    if (e == KEEL_OK)
        e = exec_detach(x);
    if (e != KEEL_OK) {
        exec_free(x, 0);
        return e;
    }
    rep->recovered++;
    if (s->state == KEEL_SAGA_COMPLETED)
        rep->completed++;
    else if (s->state == KEEL_SAGA_COMPENSATED)
        rep->compensated++;
    else
        rep->failed_compensation++;
    if (cfg->on_recovered != NULL)
        cfg->on_recovered(x, cfg->on_recovered_ud);
    keel_saga_exec_destroy(x);
    return KEEL_OK;
}

/* 1 if the durable record's step indices are valid for def. */
static int record_fits(const keel_saga_record *rec, const keel_saga_def *def)
{
    int n = (int)def->n;
    if (rec->next_step < 0 || rec->next_step > n || rec->comp_next < -1 ||
        rec->comp_next >= n || rec->failed_step < -1 || rec->failed_step >= n)
        return 0;
    if (rec->in_step && rec->next_step >= n)
        return 0;
    return 1;
}

#define RECOVER_BATCH 64

keel_err keel_saga_recover_log(keel_saga_log *log, const keel_saga_def *const *defs,
                               size_t ndefs, const keel_saga_recover_config *cfg,
                               keel_saga_recover_report *report, keel_diag *diag)
{
    keel_saga_recover_report local;
    keel_saga_recover_report *rep = report != NULL ? report : &local;
    memset(rep, 0, sizeof(*rep));
    if (log == NULL || (defs == NULL && ndefs > 0))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_saga_recover: invalid argument");
    keel_saga_recover_config c;
    keel_saga_recover_config_default(&c);
    if (cfg != NULL) {
        if (cfg->size < sizeof(c))
            return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_saga_recover: bad config size");
        c = *cfg;
    }
    char owner[KEEL_SAGA_OWNER_MAX + 1];
    if (c.owner != NULL) {
        if (!keel__saga_name_ok(c.owner, KEEL_SAGA_OWNER_MAX))
            return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_saga_recover: bad owner name");
        snprintf(owner, sizeof(owner), "%s", c.owner);
    } else {
        keel__saga_default_owner(owner, sizeof(owner));
    }
    for (size_t i = 0; i < ndefs; i++)
        if (defs[i] != NULL)
            atomic_store(&((keel_saga_def *)(uintptr_t)defs[i])->used, 1);
    const char *prefix = c.id_prefix != NULL ? c.id_prefix : "";

    char(*ids)[KEEL_SAGA_ID_MAX + 1] = keel_calloc(RECOVER_BATCH, sizeof(*ids));
    if (ids == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
    char after[KEEL_SAGA_ID_MAX + 1] = "";
    keel_err first_err = KEEL_OK;
    keel_diag first_diag = {KEEL_OK, 0, ""};
    keel_err unknown_err = KEEL_OK;
    keel_diag unknown_diag = {KEEL_OK, 0, ""};
    size_t claimed = 0;
    int stop = 0;
    while (!stop) {
        size_t n = 0;
        keel_diag d = {KEEL_OK, 0, ""};
        keel_err e = log->list_active(log, prefix, after, ids, RECOVER_BATCH, &n, &d);
        if (e != KEEL_OK) {
            if (first_err == KEEL_OK) {
                first_err = e;
                first_diag = d;
            }
            rep->errors++;
            break;
        }
        if (n == 0)
            break;
        for (size_t i = 0; i < n && !stop; i++) {
            const char *id = ids[i];
            rep->found++;
            keel_saga_record rec;
            memset(&rec, 0, sizeof(rec));
            d = (keel_diag){KEEL_OK, 0, ""};
            e = log->load(log, id, &rec, &d);
            if (e == KEEL_OK && rec.state != KEEL_SAGA_RUNNING &&
                rec.state != KEEL_SAGA_COMPENSATING) {
                keel_saga_record_cleanup(&rec);
                rep->busy++; /* finished meanwhile by someone else */
                continue;
            }
            if (e != KEEL_OK) {
                if (e == KEEL_ENOTFOUND) { /* deleted meanwhile */
                    rep->busy++;
                    continue;
                }
                rep->errors++;
                if (first_err == KEEL_OK) {
                    first_err = e;
                    first_diag = d;
                }
                continue;
            }
            const keel_saga_def *def = find_def(defs, ndefs, rec.name);
            if (def == NULL) {
                rep->unknown++;
                if (rep->first_unknown[0] == '\0')
                    snprintf(rep->first_unknown, sizeof(rep->first_unknown), "%s", id);
                if (unknown_err == KEEL_OK)
                    unknown_err = keel_diag_set(&unknown_diag, KEEL_ENOTFOUND, 0,
                                                "saga '%.64s': no definition registered for "
                                                "saga name '%.64s'; left untouched",
                                                id, rec.name);
                keel_log_field f[2] = {KEEL_LF_STR("saga_id", id), KEEL_LF_STR("saga", rec.name)};
                KEEL_LOG_FIELDS(keel_logger_get("keel.pay.saga"), KEEL_LOG_LEVEL_ERROR, f, 2,
                                "saga %s %s: no definition registered; cannot recover it",
                                rec.name, id);
                keel_saga_record_cleanup(&rec);
                continue;
            }
            if (!record_fits(&rec, def)) {
                /* A record that does not fit the definition (steps were removed since it was
                 * written) cannot be driven safely: report it and leave it alone. */
                rep->errors++;
                if (first_err == KEEL_OK) {
                    first_err = keel_diag_set(&first_diag, KEEL_ESTATE, 0,
                                              "saga '%.64s': stored record (step %d) does not "
                                              "fit definition '%.40s' (%zu steps); left "
                                              "untouched",
                                              id, KEEL_MAX(rec.next_step, rec.comp_next),
                                              rec.name, def->n);
                }
                keel_saga_record_cleanup(&rec);
                continue;
            }
            char token[KEEL_UUID_SIZE];
            if ((e = new_claim(token, &d)) != KEEL_OK) {
                keel_saga_record_cleanup(&rec);
                rep->errors++;
                if (first_err == KEEL_OK) {
                    first_err = e;
                    first_diag = d;
                }
                continue;
            }
            keel_saga_claim cl = {id, rec.claim, token, owner, c.reclaim_owner, c.lease_ms};
            keel_saga_record_cleanup(&rec);
            e = log->claim(log, &cl, &d);
            if (e == KEEL_EBUSY) {
                rep->busy++;
                continue;
            }
            if (e == KEEL_OK) {
                claimed++;
                memset(&rec, 0, sizeof(rec));
                e = log->load(log, id, &rec, &d);
                if (e == KEEL_OK && strcmp(rec.claim, token) != 0) {
                    keel_saga_record_cleanup(&rec);
                    rep->busy++;
                    continue;
                }
                if (e == KEEL_OK)
                    e = recover_one(def, log, &rec, &c, rep, &d);
            }
            if (e == KEEL_EBUSY) {
                rep->busy++;
            } else if (e != KEEL_OK) {
                rep->errors++;
                if (first_err == KEEL_OK) {
                    first_err = e;
                    first_diag = d;
                }
            }
            if (c.max_sagas > 0 && claimed >= c.max_sagas)
                stop = 1;
        }
        snprintf(after, sizeof(after), "%s", ids[n - 1]);
        if (n < RECOVER_BATCH)
            break;
    }
    keel_free(ids);
    if (first_err != KEEL_OK) {
        if (diag != NULL)
            *diag = first_diag;
        return first_err;
    }
    if (unknown_err != KEEL_OK) {
        if (diag != NULL)
            *diag = unknown_diag;
        return unknown_err;
    }
    return KEEL_OK;
}

keel_err keel_saga_recover(keel_store *store, const keel_saga_def *const *defs, size_t ndefs,
                           const keel_saga_recover_config *cfg, keel_saga_recover_report *report,
                           keel_diag *diag)
{
    if (report != NULL)
        memset(report, 0, sizeof(*report));
    if (store == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "keel_saga_recover: invalid argument");
    keel_saga_log *log = NULL;
    keel_err e = keel_saga_log_sql_create(&log, store, diag);
    if (e != KEEL_OK)
        return e;
    e = keel_saga_recover_log(log, defs, ndefs, cfg, report, diag);
    keel_saga_log_destroy(log);
    return e;
}
