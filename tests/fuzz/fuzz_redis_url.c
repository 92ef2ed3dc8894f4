/* Fuzz the REDIS_URL parser (redis.c's static parse_url, included as h2o and libuv test
 * static functions): any bytes give KEEL_OK with a host and a sane port/db, or an error, and
 * never a crash or a leak.  (Its messages are fixed strings: the URL, which may carry a
 * password, is never formatted into them.) */
#include "store/redis.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = keel_strndup((const char *)data, size); /* stops at an embedded NUL */
    if (url == NULL)
        return 0;
    keel_redis r;
    memset(&r, 0, sizeof(r));
    keel_diag d;
    keel_err e = parse_url(&r, url, &d);
    if (e == KEEL_OK && (r.host == NULL || r.host[0] == '\0' || r.port < 1 || r.port > 65535 ||
                         r.db < 0))
        abort();
    keel_free(r.host);
    keel_free(r.user);
    keel_secret_destroy(r.pass);
    keel_free(url);
    return 0;
}
