/* timer.c - duration histogram and audit record around a keel_call chain. */
#include "keel_int.h"

#include <keel/timer.h>

struct keel_timer {
    const keel_clock *clock;
    keel_metric *hist;
    keel_logger *audit;
};

void keel_timer_config_default(keel_timer_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
}

keel_err keel_timer_create(keel_timer **out, const keel_timer_config *cfg, keel_diag *diag)
{
    if (out == NULL || cfg == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "timer: out and cfg must not be NULL");
    *out = NULL;
    if (cfg->size != sizeof(*cfg))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "timer: size must be sizeof(keel_timer_config)");
    if (cfg->buckets == NULL && cfg->nbuckets > 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0,
                             "timer: buckets must not be NULL when nbuckets is %zu",
                             cfg->nbuckets);
    keel_timer *t = keel__new(keel_timer);
    if (t == NULL)
        return keel_diag_set(diag, KEEL_ENOMEM, 0, "timer: out of memory");
    t->clock = cfg->clock;
    if (cfg->metrics != NULL) {
        static const char *const labels[] = {"name", "outcome", NULL};
        keel_err e = keel_metrics_histogram(cfg->metrics, "keel_call_duration_seconds",
                                            "Duration of protected calls.", labels, cfg->buckets,
                                            cfg->nbuckets, &t->hist);
        if (e != KEEL_OK) {
            keel_free(t);
            return keel_diag_set(diag, e, 0, "timer: buckets: cannot register histogram: %s",
                                 keel_strerror(e));
        }
    }
    if (cfg->audit_log)
        t->audit = keel_logger_get("app.audit");
    *out = t;
    return KEEL_OK;
}

void keel_timer_destroy(keel_timer *t)
{
    keel_free(t);
}

void keel_timer_record(keel_timer *t, const keel_call *call, keel_err result,
                       uint64_t duration_ms)
{
    if (t == NULL)
        return;
    const char *name = (call != NULL && call->name != NULL) ? call->name : "call";
    const char *outcome = result == KEEL_OK ? "ok" : keel_err_name(result);
    if (t->hist != NULL) {
        const char *vals[] = {name, outcome, NULL};
        (void)keel_metric_observe(t->hist, vals, (double)duration_ms / 1000.0);
    }
    if (t->audit != NULL && keel_log_enabled(t->audit, KEEL_LOG_LEVEL_INFO)) {
        keel_log_field f[4];
        f[0] = KEEL_LF_STR("name", name);
        f[1] = KEEL_LF_STR("outcome", outcome);
        f[2] = KEEL_LF_INT("duration_ms", duration_ms > INT64_MAX ? INT64_MAX : (int64_t)duration_ms);
        f[3] = KEEL_LF_INT("attempt", call != NULL ? call->attempt : 0u);
        keel_log_write(t->audit, KEEL_LOG_LEVEL_INFO, __FILE__, __LINE__, __func__, f, 4,
                       "call finished");
    }
}

/* ------------------------------------------------------------- layer -- */

typedef struct timer_layer {
    keel_layer base;
    keel_timer *t;
} timer_layer;

static keel_err timer_layer_call(keel_layer *self, void *cx, keel_chain_cursor *cur)
{
    timer_layer *tl = (timer_layer *)self;
    uint64_t start = keel_clock_now_ms(tl->t->clock);
    keel_err e = keel_chain_next(cur, cx);
    uint64_t end = keel_clock_now_ms(tl->t->clock);
    keel_timer_record(tl->t, cx, e, end >= start ? end - start : 0);
    return e;
}

keel_err keel_timer_layer(keel_timer *t, keel_layer **out)
{
    if (out != NULL)
        *out = NULL;
    if (t == NULL || out == NULL)
        return KEEL_EINVAL;
    timer_layer *tl = keel__layer_new(sizeof(*tl), "timer", timer_layer_call);
    if (tl == NULL)
        return KEEL_ENOMEM;
    tl->t = t;
    *out = &tl->base;
    return KEEL_OK;
}
