/* policy.c - clocks and the call context shared by the resilience policies. */
#include "keel_int.h"

#include <time.h>

#include <keel/policy.h>

static uint64_t sys_now(void *ud)
{
    KEEL_UNUSED(ud);
    return keel_time_mono_ms();
}

static void sys_sleep(void *ud, uint64_t ms)
{
    KEEL_UNUSED(ud);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const keel_clock system_clock = {sys_now, sys_sleep, NULL};

const keel_clock *keel_clock_system(void)
{
    return &system_clock;
}

uint64_t keel_clock_now_ms(const keel_clock *c)
{
    if (c == NULL || c->now_ms == NULL)
        return keel_time_mono_ms();
    return c->now_ms(c->ud);
}

void keel_clock_sleep_ms(const keel_clock *c, uint64_t ms)
{
    if (c == NULL || c->sleep_ms == NULL)
        sys_sleep(NULL, ms);
    else
        c->sleep_ms(c->ud, ms);
}

static uint64_t manual_now(void *ud)
{
    return ((keel_manual_clock *)ud)->now;
}

static void manual_sleep(void *ud, uint64_t ms)
{
    keel_manual_clock *mc = ud;
    mc->now += ms;
    mc->slept_total += ms;
    mc->sleeps++;
}

void keel_manual_clock_init(keel_manual_clock *mc, uint64_t start_ms)
{
    memset(mc, 0, sizeof(*mc));
    mc->clock.now_ms = manual_now;
    mc->clock.sleep_ms = manual_sleep;
    mc->clock.ud = mc;
    mc->now = start_ms;
}

void keel_manual_clock_advance(keel_manual_clock *mc, uint64_t ms)
{
    mc->now += ms;
}

void keel_call_init(keel_call *call, const char *name, void *user)
{
    memset(call, 0, sizeof(*call));
    call->size = sizeof(*call);
    call->name = name ? name : "call";
    call->user = user;
    call->retriable = -1;
}

int keel_policy_is_transient(const keel_call *call, keel_err e)
{
    if (e == KEEL_OK)
        return 0;
    if (call != NULL && call->retriable >= 0)
        return call->retriable;
    return e == KEEL_ETIMEOUT || e == KEEL_EIO || e == KEEL_EBUSY || e == KEEL_EAGAIN ||
           e == KEEL_EPAY_NETWORK || e == KEEL_EPAY_GATEWAY_TIMEOUT || e == KEEL_EPAY_RATE_LIMITED;
}
