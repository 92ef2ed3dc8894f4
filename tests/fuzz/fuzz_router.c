/* Fuzz route matching: the input's first line is a route template added to a router that
 * already holds a fixed set of routes; the rest are paths matched with every method. */
#include "http/http_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static keel_err h(keel_ctx *cx, void *ud)
{
    (void)cx;
    (void)ud;
    return KEEL_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keel_router *r;
    keel_arena *a;
    if (keel_router_create(&r) != KEEL_OK)
        return 0;
    if (keel_arena_create(&a, 0) != KEEL_OK) {
        keel_router_destroy(r);
        return 0;
    }
    static const char *const fixed[] = {"/", "/api/v1/products/{id}", "/api/v1/products/featured",
                                        "/api/v2/orders/{oid}/items/{iid}", "/a/b/c", "/a/{x}/d"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (keel_router_add(r, KEEL_METHOD_GET | KEEL_METHOD_POST, fixed[i], h, NULL, 0, NULL))
            abort();
    if (keel_router_version(r, "/api", "1") != KEEL_OK)
        abort();
    char *text = keel_strndup((const char *)data, size);
    if (text != NULL) {
        char *save = NULL;
        char *line = strtok_r(text, "\n", &save);
        if (line != NULL) {
            keel_diag d;
            keel_err added = keel_router_add(r, KEEL_METHOD_GET, line, h, NULL, 0, &d);
            (void)added;
            while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
                const char *p = keel__router_version_rewrite(r, line, "2", a);
                for (unsigned m = 1; m <= KEEL_METHOD_OPTIONS; m <<= 1) {
                    keel_route_match rm;
                    keel_router_match(r, (keel_method)m, keel_str_c(p ? p : line), &rm);
                    if (rm.found && rm.fn != h)
                        abort();
                    for (size_t i = 0; i < rm.nparams; i++)
                        if (rm.values[i].len == 0)
                            abort();
                }
            }
        }
        keel_free(text);
    }
    keel_arena_destroy(a);
    keel_router_destroy(r);
    return 0;
}
