/* fuzz_dotenv.c - arbitrary bytes into keel_dotenv_parse() and keel_env_from().
 * Checks: no crash/hang/leak; every key the callback sees is [A-Za-z_][A-Za-z0-9_]*,
 * keys and values are NUL-terminated at the reported length with no NUL inside; a
 * successful parse yields an env whose every reported key is present. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <keel/config.h>
#include <keel/keel.h>

static int key_ok(const char *k, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

typedef struct seen {
    keel_env *env; /* second pass: check lookups */
    size_t calls;
} seen;

static keel_err check_cb(const char *key, size_t klen, const char *value, size_t vlen, void *ud)
{
    seen *s = ud;
    if (!key_ok(key, klen) || key[klen] != '\0' || value[vlen] != '\0' ||
        memchr(value, '\0', vlen) != NULL)
        abort();
    if (s->env != NULL && keel_env_get(s->env, key) == NULL)
        abort();
    s->calls++;
    return KEEL_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    seen s = {NULL, 0};
    keel_diag d;
    keel_err e = keel_dotenv_parse(text, size, check_cb, &s, &d);
    if (e != KEEL_OK) {
        if (s.calls != 0 || memchr(d.msg, '\0', sizeof(d.msg)) == NULL)
            abort(); /* errors are reported before any callback; msg is terminated */
        return 0;
    }
    keel_env *env = NULL;
    if (keel_env_from(&env, NULL, text, size, NULL) != KEEL_OK)
        abort(); /* the parse succeeded, so only OOM could fail, and we have memory */
    seen s2 = {env, 0};
    if (keel_dotenv_parse(text, size, check_cb, &s2, NULL) != KEEL_OK || s2.calls != s.calls)
        abort();
    keel_env_destroy(env);
    return 0;
}
