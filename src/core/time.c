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

/* Every log record and response envelope carries a timestamp, so the "YYYY-MM-DDTHH:MM:SS"
 * part is cached per thread and recomputed only when the second changes. */
static _Thread_local int64_t tl_secs = INT64_MIN;
static _Thread_local char tl_prefix[20];

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

size_t keel_time_iso8601(int64_t wall_ms, char out[KEEL_TIME_ISO8601_SIZE])
{
    int64_t secs = wall_ms / 1000, ms = wall_ms % 1000;
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    if (secs != tl_secs) {
        time_t t = (time_t)secs;
        struct tm tm;
        gmtime_r(&t, &tm);
        int year = (tm.tm_year + 1900) % 10000;
        put2(tl_prefix, year / 100);
        put2(tl_prefix + 2, year % 100);
        tl_prefix[4] = '-';
        put2(tl_prefix + 5, tm.tm_mon + 1);
        tl_prefix[7] = '-';
        put2(tl_prefix + 8, tm.tm_mday);
        tl_prefix[10] = 'T';
        put2(tl_prefix + 11, tm.tm_hour);
        tl_prefix[13] = ':';
        put2(tl_prefix + 14, tm.tm_min);
        tl_prefix[16] = ':';
        put2(tl_prefix + 17, tm.tm_sec);
        tl_secs = secs;
    }
    memcpy(out, tl_prefix, 19);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    out[24] = '\0';
    return 24;
}
