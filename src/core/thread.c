/* thread.c - how libkeel starts its threads and waits on monotonic time (keel_int.h). */
#include "keel_int.h"

#include <signal.h>
#include <stdio.h>

int keel__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
#ifdef __linux__
    if (rc == 0 && name != NULL) {
        char tn[16]; /* the kernel keeps 15 characters */
        snprintf(tn, sizeof(tn), "keel:%s", name);
        pthread_setname_np(*t, tn); /* for ps/top/gdb; failure is harmless */
    }
#else
    (void)name;
#endif
    return rc;
}

int keel__cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

struct timespec keel__mono_deadline(uint64_t ms)
{
    const uint64_t cap = UINT64_C(10) * 365 * 86400000; /* ten years: "no limit" */
    if (ms > cap)
        ms = cap;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t ns = (uint64_t)now.tv_nsec + (ms % 1000u) * 1000000u;
    struct timespec at;
    at.tv_sec = now.tv_sec + (time_t)(ms / 1000u) + (time_t)(ns / 1000000000u);
    at.tv_nsec = (long)(ns % 1000000000u);
    return at;
}
