/* products.c - the products repository: a keel_repo descriptor and one call per operation. */
#include "products.h"

#include <keel/repo.h>

#include <stdio.h>

static const keel_repo_column product_columns[] = {
    KEEL_REPO_TEXT(product, id, KEEL_REPO_KEY),
    KEEL_REPO_TEXT(product, name, 0),
    KEEL_REPO_INT64(product, price_minor, 0),
    KEEL_REPO_TEXT(product, currency, 0),
    KEEL_REPO_INT64(product, created_at_ms, KEEL_REPO_IMMUTABLE),
};
/* Oldest first; the key breaks ties (keel_repo appends it). */
static const keel_repo products_repo = {"products", product_columns,
                                        KEEL_REPO_NCOLS(product_columns), sizeof(product),
                                        "created_at_ms"};

/* A row holding only the key; ENOTFOUND for an id that cannot be one. */
static keel_err with_id(product *p, const char *id)
{
    int n = snprintf(p->id, sizeof(p->id), "%s", id);
    return n < 0 || (size_t)n >= sizeof(p->id) ? KEEL_ENOTFOUND : KEEL_OK;
}

keel_err products_get(keel_db *db, const char *id, product *out, keel_diag *diag)
{
    keel_err e = with_id(out, id);
    return e != KEEL_OK ? e : keel_repo_get(db, &products_repo, out, diag);
}

keel_err products_list(keel_db *db, int64_t skip, int64_t limit, product *out, size_t *n,
                       keel_diag *diag)
{
    keel_repo_page page = {skip, limit, NULL};
    return keel_repo_list(db, &products_repo, &page, out, (size_t)limit, n, diag);
}

keel_err products_create(keel_db *db, product *p, keel_diag *diag)
{
    keel_err e = keel_uuid4(p->id);
    if (e != KEEL_OK)
        return e;
    p->created_at_ms = keel_time_wall_ms();
    return keel_repo_insert(db, &products_repo, p, diag);
}

keel_err products_delete(keel_db *db, const char *id, keel_diag *diag)
{
    product key;
    keel_err e = with_id(&key, id);
    return e != KEEL_OK ? e : keel_repo_delete(db, &products_repo, &key, diag);
}
