/* fuzz_sql_dialect.c - arbitrary bytes (up to the first NUL) into keel_store_dialect_sql().
 * Checks: no crash/hang/leak; both engines lex identically (same result code and placeholder
 * count, since only the replacement text differs); on success the output is NUL-terminated
 * at its length, and a tight cap gives KEEL_ETOOBIG or the same answer, never anything else. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/keel.h>
#include <keel/store.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *sql = malloc(size + 1);
    if (sql == NULL)
        return 0;
    if (size)
        memcpy(sql, data, size);
    sql[size] = '\0';
    size_t big = size * 64 + 1024;

    keel_buf a, b, c;
    keel_buf_init(&a, big);
    keel_buf_init(&b, big);
    keel_buf_init(&c, size / 2);
    int na = -1, nb = -1, nc = -1;
    keel_diag d;
    keel_err ea = keel_store_dialect_sql(KEEL_STORE_SQLITE, sql, &a, &na, &d);
    if (ea != KEEL_OK && (d.code != ea || memchr(d.msg, '\0', sizeof(d.msg)) == NULL))
        abort();
    keel_err eb = keel_store_dialect_sql(KEEL_STORE_POSTGRES, sql, &b, &nb, NULL);
    if (ea != eb || na != nb)
        abort();
    if (ea == KEEL_OK) {
        if (a.ptr == NULL || b.ptr == NULL || strlen(a.ptr) != a.len || strlen(b.ptr) != b.len)
            abort();
        if (na < 0 || (size_t)na > size)
            abort();
    } else if (ea != KEEL_EPARSE || na != 0) {
        abort();
    }
    keel_err ec = keel_store_dialect_sql(KEEL_STORE_POSTGRES, sql, &c, &nc, NULL);
    if (ec != eb && ec != KEEL_ETOOBIG)
        abort();
    if (ec == KEEL_OK && (nc != nb || c.len != b.len || memcmp(c.ptr, b.ptr, b.len) != 0))
        abort();
    keel_buf_cleanup(&a);
    keel_buf_cleanup(&b);
    keel_buf_cleanup(&c);
    free(sql);
    return 0;
}
