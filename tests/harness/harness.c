/* harness.c - keeld launcher and HTTP helpers for integration tests. */
#define _GNU_SOURCE 1
#include "test.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        return 0;
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int keel_test_server_start(keel_test_server *s, const char *const *env)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "%s/keeld.XXXXXX", KEEL_TEST_TMP);
    mkdir(KEEL_TEST_TMP, 0700);
    if (mkdtemp(s->dir) == NULL)
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = free_port();
        snprintf(s->base_url, sizeof(s->base_url), "http://127.0.0.1:%u", s->port);
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            if (chdir(s->dir) != 0)
                _exit(127);
            char port[16];
            snprintf(port, sizeof(port), "%u", s->port);
            setenv("PORT", port, 1);
            setenv("HOST", "127.0.0.1", 1);
            if (getenv("ENVIRONMENT") == NULL)
                setenv("ENVIRONMENT", "test", 1);
            for (size_t i = 0; env && env[i]; i++)
                putenv(strdup(env[i]));
            char logf[300];
            snprintf(logf, sizeof(logf), "%s/stderr.log", s->dir);
            if (freopen(logf, "a", stderr) == NULL)
                _exit(127);
            execl(KEEL_TEST_KEELD, "keeld", (char *)NULL);
            _exit(127);
        }
        s->pid = pid;
        for (int i = 0; i < 200; i++) { /* up to 10 s */
            keel_test_resp r;
            int got = keel_test_http(s, "GET", "/health/live", NULL, NULL, 0, &r);
            long st = r.status;
            keel_test_resp_free(&r);
            if (got == 0 && st == 200)
                return 0;
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                s->pid = 0;
                break; /* died: maybe the port was taken; try again */
            }
            sleep_ms(50);
        }
        if (s->pid)
            keel_test_server_stop(s, SIGKILL, 2000);
    }
    return -1;
}

int keel_test_server_stop(keel_test_server *s, int sig, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        int status;
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid) {
            s->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

typedef struct sink {
    char *p;
    size_t n;
} sink;

static size_t on_data(char *d, size_t sz, size_t nm, void *ud)
{
    sink *k = ud;
    size_t n = sz * nm;
    char *p = realloc(k->p, k->n + n + 1);
    if (p == NULL)
        return 0;
    memcpy(p + k->n, d, n);
    k->n += n;
    p[k->n] = '\0';
    k->p = p;
    return n;
}

static size_t on_header(char *d, size_t sz, size_t nm, void *ud)
{
    size_t n = sz * nm;
    sink *k = ud;
    size_t start = k->n;
    size_t r = on_data(d, sz, nm, ud);
    if (r == n) {
        for (size_t i = start; i < k->n && k->p[i] != ':'; i++)
            k->p[i] = (char)tolower((unsigned char)k->p[i]);
    }
    return r;
}

int keel_test_http(const keel_test_server *s, const char *method, const char *path,
                   const char *const *headers, const char *body, size_t body_len,
                   keel_test_resp *out)
{
    memset(out, 0, sizeof(*out));
    CURL *c = curl_easy_init();
    if (c == NULL)
        return -1;
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", s->base_url, path);
    sink b = {0}, h = {0};
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &out->total_s);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    out->body = b.p ? b.p : strdup("");
    out->body_len = b.n;
    out->headers = h.p ? h.p : strdup("");
    return rc == CURLE_OK ? 0 : -1;
}

int keel_test_resp_header(const keel_test_resp *r, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = r->headers; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(p + ll - v);
            while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            if (out && n) {
                size_t k = vl < n - 1 ? vl : n - 1;
                memcpy(out, v, k);
                out[k] = '\0';
            }
            return 1;
        }
        p = eol ? eol + 1 : NULL;
    }
    return 0;
}

void keel_test_resp_free(keel_test_resp *r)
{
    free(r->body);
    free(r->headers);
    r->body = r->headers = NULL;
}

long keel_test_raw(const keel_test_server *s, const char *data, size_t len, int timeout_ms,
                   char **reply)
{
    *reply = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(s->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, data + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0)
            break;
        if (n + 1024 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *reply = buf;
    return (long)n;
}

int keel_test_run(const char *bin, const char *const *argv, const keel_test_run_opts *opts,
                  char *out, size_t cap)
{
    static const keel_test_run_opts none = {0};
    const keel_test_run_opts *o = opts ? opts : &none;
    int ip[2], op[2];
    if (pipe(ip) != 0)
        return -1;
    if (pipe(op) != 0) {
        close(ip[0]);
        close(ip[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (o->dir != NULL && chdir(o->dir) != 0)
            _exit(127);
        dup2(ip[0], 0);
        dup2(op[1], 1);
        dup2(op[1], 2);
        close(ip[0]);
        close(ip[1]);
        close(op[0]);
        close(op[1]);
        for (size_t i = 0; o->unset && o->unset[i]; i++)
            unsetenv(o->unset[i]);
        for (size_t i = 0; o->env && o->env[i]; i++)
            putenv(strdup(o->env[i]));
        execv(bin, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(ip[0]);
    close(op[1]);
    signal(SIGPIPE, SIG_IGN);
    /* Inputs are small enough for the pipe buffer: write all, then read. */
    for (size_t w = 0; o->in != NULL && w < o->in_len;) {
        ssize_t r = write(ip[1], o->in + w, o->in_len - w);
        if (r <= 0)
            break;
        w += (size_t)r;
    }
    close(ip[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(op[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    if (cap > 0)
        out[n] = '\0';
    close(op[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
