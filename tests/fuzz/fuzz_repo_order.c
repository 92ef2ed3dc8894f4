/* fuzz_repo_order.c - arbitrary bytes (up to the first NUL) as the order of a keel_repo
 * descriptor ("col [ASC|DESC], ..."), which an application may take from a query parameter.
 * Checks: no crash/hang/leak, and keel_repo_check() accepts exactly what an independent
 * reference parser below accepts: comma-separated items, each one or two space-separated
 * words, the first a column of the descriptor (each named at most once), the second ASC or
 * DESC in any case. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <keel/keel.h>
#include <keel/repo.h>

typedef struct row {
    int64_t id;
    char name[16];
    double price;
    int64_t created_at_ms;
} row;

static const keel_repo_column cols[] = {
    KEEL_REPO_INT64(row, id, KEEL_REPO_KEY),
    KEEL_REPO_TEXT(row, name, 0),
    KEEL_REPO_DOUBLE(row, price, 0),
    KEEL_REPO_INT64(row, created_at_ms, 0),
};

static int column_index(const char *w, size_t n)
{
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
        if (strlen(cols[i].name) == n && memcmp(cols[i].name, w, n) == 0)
            return (int)i;
    return -1;
}

static int reference_ok(const char *s)
{
    int seen[sizeof(cols) / sizeof(cols[0])] = {0};
    const char *item = s;
    for (;;) {
        const char *end = strchr(item, ',');
        if (end == NULL)
            end = item + strlen(item);
        const char *words[3];
        size_t lens[3];
        int nw = 0;
        const char *p = item;
        while (p < end) {
            while (p < end && *p == ' ')
                p++;
            if (p == end)
                break;
            const char *w = p;
            while (p < end && *p != ' ')
                p++;
            if (nw == 3)
                return 0;
            words[nw] = w;
            lens[nw++] = (size_t)(p - w);
        }
        if (nw < 1 || nw > 2)
            return 0;
        int c = column_index(words[0], lens[0]);
        if (c < 0 || seen[c])
            return 0;
        seen[c] = 1;
        if (nw == 2 && !((lens[1] == 3 && strncasecmp(words[1], "asc", 3) == 0) ||
                         (lens[1] == 4 && strncasecmp(words[1], "desc", 4) == 0)))
            return 0;
        if (*end == '\0')
            return 1;
        item = end + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    keel_repo repo = {"items", cols, sizeof(cols) / sizeof(cols[0]), sizeof(row), s};
    keel_diag d;
    keel_err e = keel_repo_check(&repo, &d);
    if (e != KEEL_OK && e != KEEL_EINVAL)
        abort();
    if ((e == KEEL_OK) != (reference_ok(s) == 1))
        abort();
    free(s);
    return 0;
}
