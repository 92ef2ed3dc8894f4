/*
 * system.c - host CPU and memory gauges sampled from /proc (seed 002,
 * metrics_background_tasks.py: system_cpu_usage_percentage and
 * system_memory_usage_percentage{type="used"|"free"}).
 *
 * Each update reads /proc/stat and /proc/meminfo into fixed-size stack buffers,
 * parses them with the bounded parsers below and sets the gauges.  CPU usage is
 * a rate, so it needs two samples: the first update only remembers the counters
 * and sets the gauge to 0.
 */
#include "keel_int.h"

#include <keel/metrics.h>

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "obs_sys_int.h"

/* The first line of /proc/stat is well under 256 bytes even with 20-digit
 * counters; meminfo is about 1.5 KB.  Both buffers leave ample headroom. */
#define SYS_STAT_BUF 4096
#define SYS_MEMINFO_BUF 8192

struct keel_system_metrics {
    keel_series *cpu;
    keel_series *mem_used;
    keel_series *mem_free;
    pthread_mutex_t mu; /* guards primed and prev */
    bool primed;
    keel__cpu_times prev;
};

/* ------------------------------------------------------------ parsing -- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Parse a run of decimal digits at *p (before end) into *out, advancing *p.
 * Fails without digits or on overflow. */
static bool parse_u64(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (s >= end || *s < '0' || *s > '9')
        return false;
    while (s < end && *s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10u)
            return false;
        v = v * 10u + d;
        s++;
    }
    *p = s;
    *out = v;
    return true;
}

keel_err keel__sys_parse_stat(const char *text, size_t len, keel__cpu_times *out)
{
    if (text == NULL || out == NULL)
        return KEEL_EINVAL;
    const char *nl = memchr(text, '\n', len);
    const char *end = nl != NULL ? nl : text + len;
    const char *p = text;
    /* The aggregate line is "cpu" then blanks; "cpu0" lines are per core. */
    if ((size_t)(end - p) < 4 || memcmp(p, "cpu", 3) != 0 || !is_blank(p[3]))
        return KEEL_EPARSE;
    p += 3;
    uint64_t f[10] = {0};
    size_t n = 0;
    for (;;) {
        while (p < end && is_blank(*p))
            p++;
        if (p == end)
            break;
        if (n == KEEL_ARRAY_LEN(f))
            return KEEL_EPARSE; /* more fields than any kernel writes */
        if (!parse_u64(&p, end, &f[n]))
            return KEEL_EPARSE;
        if (p < end && !is_blank(*p) && *p != '\r')
            return KEEL_EPARSE;
        if (p < end && *p == '\r')
            p++;
        n++;
    }
    if (n < 4)
        return KEEL_EPARSE;
    /* user nice system idle iowait irq softirq steal; guest fields are
     * already counted in user and nice. */
    size_t use = KEEL_MIN(n, (size_t)8);
    uint64_t total = 0;
    for (size_t i = 0; i < use; i++) {
        if (total > UINT64_MAX - f[i])
            return KEEL_EPARSE;
        total += f[i];
    }
    uint64_t idle = f[3] + (n > 4 ? f[4] : 0); /* both already summed into total */
    out->total = total;
    out->busy = total - idle;
    return KEEL_OK;
}

/* Value of a "Key:   123 kB" line; the unit is optional.  Returns false if malformed. */
static bool meminfo_value(const char *p, const char *end, uint64_t *out)
{
    while (p < end && is_blank(*p))
        p++;
    if (!parse_u64(&p, end, out))
        return false;
    while (p < end && is_blank(*p))
        p++;
    if ((size_t)(end - p) >= 2 && memcmp(p, "kB", 2) == 0)
        p += 2;
    while (p < end && (is_blank(*p) || *p == '\r'))
        p++;
    return p == end;
}

keel_err keel__sys_parse_meminfo(const char *text, size_t len, keel__meminfo *out)
{
    if (text == NULL || out == NULL)
        return KEEL_EINVAL;
    enum { K_TOTAL, K_AVAIL, K_FREE, K_BUFFERS, K_CACHED, K_N };
    static const char *const keys[K_N] = {"MemTotal", "MemAvailable", "MemFree", "Buffers",
                                          "Cached"};
    uint64_t v[K_N] = {0};
    bool seen[K_N] = {false};
    const char *p = text, *stop = text + len;
    while (p < stop) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        const char *end = nl != NULL ? nl : stop;
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (colon != NULL) {
            size_t klen = (size_t)(colon - p);
            for (size_t k = 0; k < K_N; k++) {
                if (strlen(keys[k]) == klen && memcmp(p, keys[k], klen) == 0) {
                    if (!meminfo_value(colon + 1, end, &v[k]))
                        return KEEL_EPARSE;
                    seen[k] = true;
                }
            }
        }
        p = nl != NULL ? nl + 1 : stop;
    }
    if (!seen[K_TOTAL] || v[K_TOTAL] == 0)
        return KEEL_EPARSE;
    uint64_t avail;
    if (seen[K_AVAIL]) {
        avail = v[K_AVAIL];
    } else if (seen[K_FREE] && seen[K_BUFFERS] && seen[K_CACHED]) {
        avail = v[K_FREE];
        if (avail > UINT64_MAX - v[K_BUFFERS] || avail + v[K_BUFFERS] > UINT64_MAX - v[K_CACHED])
            return KEEL_EPARSE;
        avail += v[K_BUFFERS] + v[K_CACHED];
        avail = KEEL_MIN(avail, v[K_TOTAL]); /* the estimate may exceed total */
    } else {
        return KEEL_EPARSE;
    }
    if (avail > v[K_TOTAL])
        return KEEL_EPARSE;
    out->total_kb = v[K_TOTAL];
    out->available_kb = avail;
    return KEEL_OK;
}

double keel__sys_cpu_percent(const keel__cpu_times *prev, const keel__cpu_times *cur)
{
    if (cur->total <= prev->total || cur->busy < prev->busy)
        return 0.0;
    /* iowait is known to go backwards on some kernels, which can make busy grow
     * faster than total: clamp. */
    double pct = 100.0 * (double)(cur->busy - prev->busy) / (double)(cur->total - prev->total);
    return pct > 100.0 ? 100.0 : pct;
}

double keel__sys_mem_used_percent(const keel__meminfo *mi)
{
    if (mi->total_kb == 0 || mi->available_kb > mi->total_kb)
        return 0.0;
    return 100.0 * (double)(mi->total_kb - mi->available_kb) / (double)mi->total_kb;
}

/* ------------------------------------------------------------ reading -- */

/* Read up to cap bytes of path into buf.  When the buffer fills before EOF, a
 * trailing partial line is dropped so the parsers never see a cut number. */
static keel_err read_proc(const char *path, char *buf, size_t cap, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return KEEL_EIO;
    size_t n = 0;
    bool eof = false;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return KEEL_EIO;
        }
        if (r == 0) {
            eof = true;
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    if (!eof) {
        while (n > 0 && buf[n - 1] != '\n')
            n--;
        if (n == 0)
            return KEEL_EPARSE; /* one line longer than the whole buffer */
    }
    *len = n;
    return KEEL_OK;
}

/* ---------------------------------------------------------------- API -- */

keel_err keel_system_metrics_create(keel_system_metrics **out, keel_metrics *m)
{
    if (out == NULL || m == NULL)
        return KEEL_EINVAL;
    *out = NULL;
    keel_metric *cpu_f, *mem_f;
    static const char *const mem_labels[] = {"type", NULL};
    static const char *const used[] = {"used"};
    static const char *const freev[] = {"free"};
    keel_err e = keel_metrics_gauge(m, "system_cpu_usage_percentage", "System CPU usage %", NULL,
                                    &cpu_f);
    if (e)
        return e;
    e = keel_metrics_gauge(m, "system_memory_usage_percentage", "System memory usage %",
                           mem_labels, &mem_f);
    if (e)
        return e;
    keel_system_metrics *s = keel__new(keel_system_metrics);
    if (s == NULL)
        return KEEL_ENOMEM;
    if ((e = keel_metric_series(cpu_f, NULL, &s->cpu)) != KEEL_OK ||
        (e = keel_metric_series(mem_f, used, &s->mem_used)) != KEEL_OK ||
        (e = keel_metric_series(mem_f, freev, &s->mem_free)) != KEEL_OK) {
        keel_free(s);
        return e;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        keel_free(s);
        return KEEL_ENOMEM;
    }
    *out = s;
    return KEEL_OK;
}

keel_err keel__system_metrics_apply(keel_system_metrics *s, const char *stat, size_t stat_len,
                                    const char *meminfo, size_t meminfo_len)
{
    if (s == NULL)
        return KEEL_EINVAL;
    keel_err first = KEEL_OK;
    if (stat != NULL) {
        keel__cpu_times cur;
        keel_err e = keel__sys_parse_stat(stat, stat_len, &cur);
        if (e == KEEL_OK) {
            pthread_mutex_lock(&s->mu);
            double pct = s->primed ? keel__sys_cpu_percent(&s->prev, &cur) : 0.0;
            s->prev = cur;
            s->primed = true;
            /* set under the lock so concurrent updates cannot publish out of order */
            keel_series_set(s->cpu, pct);
            pthread_mutex_unlock(&s->mu);
        } else {
            first = e;
        }
    }
    if (meminfo != NULL) {
        keel__meminfo mi;
        keel_err e = keel__sys_parse_meminfo(meminfo, meminfo_len, &mi);
        if (e == KEEL_OK) {
            double used = keel__sys_mem_used_percent(&mi);
            pthread_mutex_lock(&s->mu);
            keel_series_set(s->mem_used, used);
            keel_series_set(s->mem_free, 100.0 - used);
            pthread_mutex_unlock(&s->mu);
        } else if (first == KEEL_OK) {
            first = e;
        }
    }
    return first;
}

keel_err keel_system_metrics_update(keel_system_metrics *s)
{
    if (s == NULL)
        return KEEL_EINVAL;
    char stat[SYS_STAT_BUF], meminfo[SYS_MEMINFO_BUF];
    size_t stat_len = 0, meminfo_len = 0;
    keel_err es = read_proc("/proc/stat", stat, sizeof(stat), &stat_len);
    keel_err em = read_proc("/proc/meminfo", meminfo, sizeof(meminfo), &meminfo_len);
    keel_err ea = keel__system_metrics_apply(s, es == KEEL_OK ? stat : NULL, stat_len,
                                             em == KEEL_OK ? meminfo : NULL, meminfo_len);
    return es != KEEL_OK ? es : em != KEEL_OK ? em : ea;
}

void keel_system_metrics_destroy(keel_system_metrics *s)
{
    if (s == NULL)
        return;
    pthread_mutex_destroy(&s->mu);
    keel_free(s);
}
