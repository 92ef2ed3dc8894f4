/*
 * obs_sys_int.h - private parsers behind keel_system_metrics (src/obs/system.c).
 *
 * The /proc parsers work on byte ranges so unit tests can feed them fixed
 * sample text.  Never installed.
 */
#ifndef KEEL_OBS_SYS_INT_H
#define KEEL_OBS_SYS_INT_H

#include "keel_int.h"

#include <keel/metrics.h>

/* Aggregate CPU jiffies from the first "cpu" line of /proc/stat.
 * total = user + nice + system + idle + iowait + irq + softirq + steal (the
 * fields present; guest and guest_nice are already included in user/nice);
 * busy = total - idle - iowait. */
typedef struct keel__cpu_times {
    uint64_t busy;
    uint64_t total;
} keel__cpu_times;

/* Memory figures from /proc/meminfo, in kB. */
typedef struct keel__meminfo {
    uint64_t total_kb;
    uint64_t available_kb;
} keel__meminfo;

/* Parse the first line of /proc/stat text (len bytes, need not be NUL-terminated).
 * The line must be "cpu" followed by at least four decimal fields.
 * Returns KEEL_OK, KEEL_EINVAL (NULL arguments) or KEEL_EPARSE (malformed or overflow). */
keel_err keel__sys_parse_stat(const char *text, size_t len, keel__cpu_times *out);

/* Parse /proc/meminfo text.  Needs MemTotal (non-zero) and MemAvailable; when
 * MemAvailable is absent (kernels before 3.14) MemFree + Buffers + Cached is used.
 * Returns KEEL_OK, KEEL_EINVAL or KEEL_EPARSE (missing/malformed field,
 * available > total). */
keel_err keel__sys_parse_meminfo(const char *text, size_t len, keel__meminfo *out);

/* 100 * delta busy / delta total between two samples, clamped to [0, 100];
 * 0 when no time has passed or the counters went backwards. */
double keel__sys_cpu_percent(const keel__cpu_times *prev, const keel__cpu_times *cur);

/* Used memory percentage: 100 * (total - available) / total. */
double keel__sys_mem_used_percent(const keel__meminfo *mi);

/* Apply one sample given as text (what keel_system_metrics_update reads from
 * /proc) and update the gauges.  Either text may be NULL to skip that part.
 * Returns the first error; a part that parses is applied even if the other fails. */
keel_err keel__system_metrics_apply(keel_system_metrics *s, const char *stat, size_t stat_len,
                                    const char *meminfo, size_t meminfo_len);

#endif /* KEEL_OBS_SYS_INT_H */
