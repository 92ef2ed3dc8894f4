/* sessions.h - the login sessions repository (keel issue 5). */
#ifndef KEELD_REPOS_SESSIONS_H
#define KEELD_REPOS_SESSIONS_H

#include <keel/keel.h>

typedef struct session {
    char id[KEEL_UUID_SIZE]; /* the "sid" claim */
    char user_id[KEEL_UUID_SIZE];
    char refresh_token_hash[KEEL_TOKEN_HASH_SIZE];
    char previous_token_hash[KEEL_TOKEN_HASH_SIZE]; /* "" before the first rotation */
    int64_t rotations;
    char device_fingerprint[128];
    char ip_address[64];
    int64_t created_at_ms;
    int64_t last_used_at_ms;
    int64_t expires_at_ms;
    int64_t revoked_at_ms; /* 0 = active */
    char revoke_reason[64];
} session;

/* Inserts s as given (the caller chooses the id: it is signed into the tokens first).
 * KEEL_OK or a storage error. */
keel_err sessions_create(keel_db *db, const session *s, keel_diag *diag);
/* KEEL_OK, KEEL_ENOTFOUND, or a storage error. */
keel_err sessions_get(keel_db *db, const char *id, session *out, keel_diag *diag);
/* Compare-and-swap rotation: when the session is active at now_ms and its current hash is
 * old_hash, make new_hash current (old_hash becomes previous), count the rotation and touch
 * last_used.  KEEL_OK, or KEEL_ESTATE when nothing matched (revoked, expired, or old_hash no
 * longer current: a concurrent or replayed refresh). */
keel_err sessions_rotate(keel_db *db, const char *id, const char *old_hash, const char *new_hash,
                         int64_t now_ms, keel_diag *diag);
/* Revoke an active session.  KEEL_OK, KEEL_ENOTFOUND (no such session, or already revoked). */
keel_err sessions_revoke(keel_db *db, const char *id, const char *reason, int64_t now_ms,
                         keel_diag *diag);
/* Is session id active at now_ms and owned by user_id?  KEEL_OK, KEEL_EDENIED (unknown,
 * revoked, expired, other user), or a storage error. */
keel_err sessions_check(keel_db *db, const char *id, const char *user_id, int64_t now_ms,
                        keel_diag *diag);
/* Number of active sessions of a user at now_ms. */
keel_err sessions_count_active(keel_db *db, const char *user_id, int64_t now_ms, int64_t *n,
                               keel_diag *diag);

#endif
