/* process.c - the standard process_* metrics, read from /proc at exposition time.
 *
 * Every read goes through open/read into a fixed stack buffer (or getdents64 for the fd
 * count): collecting never allocates.  The start time is constant, so it is computed once
 * when the collector is added (and retried at collection time if /proc was unreadable).
 */
#include "keel_int.h"

#include <keel/metrics.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "obs_int.h"

typedef struct proc_collector {
    keel_series *cpu, *rss, *vms, *start, *fds, *max_fds, *threads;
    double clk_tck;
    double page_size;
    int have_start;
} proc_collector;

/* /proc/self/stat fields we use (1-based field numbers, proc(5)). */
typedef struct proc_stat {
    uint64_t utime, stime;    /* 14, 15: clock ticks */
    uint64_t num_threads;     /* 20 */
    uint64_t starttime;       /* 22: clock ticks after boot */
    uint64_t vsize;           /* 23: bytes */
    uint64_t rss;             /* 24: pages */
} proc_stat;

/* ---------------------------------------------------------------- readers -- */

/* Read up to cap-1 bytes of path into buf, NUL-terminated.  Returns the length or -1. */
static ssize_t read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/* Parse /proc/self/stat.  The command name (field 2) is in parentheses and may contain
 * spaces and ')' itself, so fields are counted from the last ')'. */
static int parse_stat(const char *buf, proc_stat *st)
{
    const char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    p++;
    memset(st, 0, sizeof(*st));
    int found = 0;
    for (int field = 3; field <= 24; field++) {
        while (*p == ' ')
            p++;
        if (*p == '\0' || *p == '\n')
            return -1;
        uint64_t *dst = NULL;
        switch (field) {
        case 14: dst = &st->utime; break;
        case 15: dst = &st->stime; break;
        case 20: dst = &st->num_threads; break;
        case 22: dst = &st->starttime; break;
        case 23: dst = &st->vsize; break;
        case 24: dst = &st->rss; break;
        default: break;
        }
        if (dst != NULL) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p, &end, 10);
            if (end == p || errno != 0 || (*end != ' ' && *end != '\n' && *end != '\0'))
                return -1;
            *dst = (uint64_t)v;
            found++;
            p = end;
        } else {
            while (*p != ' ' && *p != '\0' && *p != '\n')
                p++;
        }
    }
    return found == 6 ? 0 : -1;
}

static int read_self_stat(proc_stat *st)
{
    char buf[2048];
    if (read_small_file("/proc/self/stat", buf, sizeof(buf)) <= 0)
        return -1;
    return parse_stat(buf, st);
}

/* Find "btime <seconds>" in /proc/stat.  The file can be long (an "intr" line with
 * thousands of numbers on big machines), so it is scanned line by line through a fixed
 * buffer; lines longer than the buffer are skipped. */
static int read_btime(uint64_t *out)
{
    int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[4096];
    size_t have = 0;
    int skipping = 0; /* inside a line too long for buf */
    int rc = -1;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        int eof = n <= 0;
        if (!eof)
            have += (size_t)n;
        buf[have] = '\0';
        char *line = buf;
        for (;;) {
            char *nl = memchr(line, '\n', have - (size_t)(line - buf));
            if (nl == NULL && !(eof && line < buf + have))
                break;
            if (nl != NULL)
                *nl = '\0';
            if (!skipping && strncmp(line, "btime ", 6) == 0) {
                char *end;
                errno = 0;
                unsigned long long v = strtoull(line + 6, &end, 10);
                if (end != line + 6 && errno == 0) {
                    *out = (uint64_t)v;
                    rc = 0;
                }
                close(fd);
                return rc;
            }
            skipping = 0;
            if (nl == NULL)
                break;
            line = nl + 1;
        }
        if (eof)
            break;
        size_t rest = have - (size_t)(line - buf);
        if (rest == sizeof(buf) - 1) {
            skipping = 1; /* drop the start of an over-long line */
            have = 0;
        } else {
            memmove(buf, line, rest);
            have = rest;
        }
    }
    close(fd);
    return rc;
}

/* Entries of /proc/self/fd (including the descriptor used to list it, as the Prometheus
 * clients count).  Returns -1 when unreadable. */
static long count_open_fds(void)
{
    int fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    union {
        struct dirent64 align;
        char bytes[4096];
    } u;
    long count = 0;
    for (;;) {
        ssize_t n = getdents64(fd, u.bytes, sizeof(u.bytes));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            count = -1;
            break;
        }
        if (n == 0)
            break;
        for (size_t off = 0; off < (size_t)n;) {
            const struct dirent64 *d = (const struct dirent64 *)(const void *)(u.bytes + off);
            if (d->d_reclen == 0)
                break;
            if (!(d->d_name[0] == '.' &&
                  (d->d_name[1] == '\0' || (d->d_name[1] == '.' && d->d_name[2] == '\0'))))
                count++;
            off += d->d_reclen;
        }
    }
    close(fd);
    return count;
}

/* -------------------------------------------------------------- collector -- */

static int compute_start(proc_collector *pc, const proc_stat *st)
{
    uint64_t btime;
    if (read_btime(&btime) != 0)
        return -1;
    keel_series_set(pc->start, (double)btime + (double)st->starttime / pc->clk_tck);
    pc->have_start = 1;
    return 0;
}

static void proc_collect(keel_metrics *m, void *ud)
{
    KEEL_UNUSED(m);
    proc_collector *pc = ud;
    proc_stat st;
    if (read_self_stat(&st) == 0) {
        keel__series_set_counter(pc->cpu, (double)(st.utime + st.stime) / pc->clk_tck);
        keel_series_set(pc->vms, (double)st.vsize);
        keel_series_set(pc->rss, (double)st.rss * pc->page_size);
        keel_series_set(pc->threads, (double)st.num_threads);
        if (!pc->have_start)
            (void)compute_start(pc, &st);
    }
    long fds = count_open_fds();
    if (fds >= 0)
        keel_series_set(pc->fds, (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        keel_series_set(pc->max_fds, (double)rl.rlim_cur);
}

static void proc_free(void *ud)
{
    keel_free(ud);
}

static keel_err solo(keel_metrics *m, keel_metric_type t, const char *name, const char *help,
                     keel_series **out)
{
    keel_metric *f;
    keel_err e = t == KEEL_METRIC_COUNTER ? keel_metrics_counter(m, name, help, NULL, &f)
                                          : keel_metrics_gauge(m, name, help, NULL, &f);
    if (e == KEEL_OK)
        e = keel_metric_series(f, NULL, out);
    return e;
}

keel_err keel_metrics_add_process_collector(keel_metrics *m)
{
    if (m == NULL)
        return KEEL_EINVAL;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&m->process_registered, &expected, 1))
        return KEEL_OK; /* already added: one collector is enough */

    proc_collector *pc = keel__new(proc_collector);
    if (pc == NULL) {
        atomic_store(&m->process_registered, 0);
        return KEEL_ENOMEM;
    }
    long tck = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    pc->clk_tck = tck > 0 ? (double)tck : 100.0;
    pc->page_size = page > 0 ? (double)page : 4096.0;

    keel_err e = solo(m, KEEL_METRIC_COUNTER, "process_cpu_seconds_total",
                      "Total user and system CPU time spent in seconds.", &pc->cpu);
    if (e == KEEL_OK)
        e = solo(m, KEEL_METRIC_GAUGE, "process_resident_memory_bytes",
                 "Resident memory size in bytes.", &pc->rss);
    if (e == KEEL_OK)
        e = solo(m, KEEL_METRIC_GAUGE, "process_virtual_memory_bytes",
                 "Virtual memory size in bytes.", &pc->vms);
    if (e == KEEL_OK)
        e = solo(m, KEEL_METRIC_GAUGE, "process_start_time_seconds",
                 "Start time of the process since unix epoch in seconds.", &pc->start);
    if (e == KEEL_OK)
        e = solo(m, KEEL_METRIC_GAUGE, "process_open_fds", "Number of open file descriptors.",
                 &pc->fds);
    if (e == KEEL_OK)
        e = solo(m, KEEL_METRIC_GAUGE, "process_max_fds",
                 "Maximum number of open file descriptors.", &pc->max_fds);
    if (e == KEEL_OK)
        e = solo(m, KEEL_METRIC_GAUGE, "process_threads", "Number of OS threads in the process.",
                 &pc->threads);
    if (e == KEEL_OK) {
        proc_stat st;
        if (read_self_stat(&st) == 0)
            (void)compute_start(pc, &st);
        e = keel__metrics_add_collector_ex(m, proc_collect, pc, proc_free);
    }
    if (e != KEEL_OK) {
        keel_free(pc);
        atomic_store(&m->process_registered, 0);
    }
    return e;
}
