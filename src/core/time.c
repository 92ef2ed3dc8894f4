/* time.c - monotonic and wall clocks, ISO-8601 formatting. */
#include "keel_int.h"

#include <stdio.h>
#include <time.h>

uint64_t keel_time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t keel_time_mono_ms(void)
{
    return keel_time_mono_ns() / 1000000u;
}

int64_t keel_time_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t keel_time_iso8601(int64_t wall_ms, char out[KEEL_TIME_ISO8601_SIZE])
{
    int64_t secs = wall_ms / 1000, ms = wall_ms % 1000;
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    int n = snprintf(out, KEEL_TIME_ISO8601_SIZE, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                     (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (int)ms);
    return n > 0 ? (size_t)n : 0;
}
