/* products.h - the products repository (seed 001 section 1: get, list, create, delete). */
#ifndef KEELD_REPOS_PRODUCTS_H
#define KEELD_REPOS_PRODUCTS_H

#include <keel/keel.h>

typedef struct product {
    char id[KEEL_UUID_SIZE];
    char name[201];
    int64_t price_minor;
    char currency[4];
    int64_t created_at_ms;
} product;

/* KEEL_OK, KEEL_ENOTFOUND, or a storage error. */
keel_err products_get(keel_db *db, const char *id, product *out, keel_diag *diag);
/* Appends up to limit products, oldest first, after skipping skip; *n receives the count. */
keel_err products_list(keel_db *db, int64_t skip, int64_t limit, product *out, size_t *n,
                       keel_diag *diag);
/* Inserts p (id and created_at_ms filled in here). */
keel_err products_create(keel_db *db, product *p, keel_diag *diag);
/* KEEL_OK, KEEL_ENOTFOUND. */
keel_err products_delete(keel_db *db, const char *id, keel_diag *diag);

#endif
