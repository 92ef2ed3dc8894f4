/* users.h - the users repository (keel issue 5): each function is one bound statement. */
#ifndef KEELD_REPOS_USERS_H
#define KEELD_REPOS_USERS_H

#include <keel/keel.h>

#define USER_EMAIL_MAX 254
#define USER_NAME_MAX 100 /* code points; a name fits in 4 bytes each */
#define USER_ROLES_MAX 255

typedef struct user {
    char id[KEEL_UUID_SIZE];
    char email[USER_EMAIL_MAX + 1]; /* lower-case */
    char name[USER_NAME_MAX * 4 + 1];
    char password_hash[KEEL_PASSWORD_PHC_SIZE];
    char roles[USER_ROLES_MAX + 1]; /* JSON array text, e.g. ["user"] */
    int64_t created_at_ms;
    int64_t updated_at_ms;
} user;

/* Inserts u (id, roles ["user"] when empty, created/updated filled in here).
 * KEEL_OK, KEEL_EEXIST (email taken), or a storage error. */
keel_err users_create(keel_db *db, user *u, keel_diag *diag);
/* KEEL_OK, KEEL_ENOTFOUND, or a storage error.  email must already be lower-case. */
keel_err users_get_by_email(keel_db *db, const char *email, user *out, keel_diag *diag);
keel_err users_get(keel_db *db, const char *id, user *out, keel_diag *diag);
/* Replace the password hash (rehash on login).  KEEL_OK, KEEL_ENOTFOUND. */
keel_err users_set_password_hash(keel_db *db, const char *id, const char *phc, keel_diag *diag);
/* Replace the roles (JSON array text).  KEEL_OK, KEEL_ENOTFOUND. */
keel_err users_set_roles(keel_db *db, const char *id, const char *roles_json, keel_diag *diag);
/* Up to cap users, oldest first, after skipping skip; *n receives the count. */
keel_err users_list(keel_db *db, int64_t skip, size_t cap, user *out, size_t *n,
                    keel_diag *diag);

#endif
