/* auth.c - keeld's identity routes (keel issue 5): register, login, refresh (rotation with
 * reuse detection), logout, users/me (v1, v2), an admin-only user list, the JWKS document, the
 * auth and login/register rate-limit layers of the chain, and the session check the auth
 * layer calls.
 *
 * Tokens.  Access tokens are signed with ACCESS_TOKEN_SIGNING_KEY, refresh tokens with
 * REFRESH_TOKEN_SIGNING_KEY (separate keysets), both with JWT_ALGORITHM (HS256 by default;
 * RS256/ES256 take a PEM private key, given inline or as a file path).  Claims: sub, roles,
 * scopes, exp, iat, nbf, iss (project identifier: PROJECT_NAME lower-cased and hyphenated), aud
 * (identifier + "-client"), type ("access"/"refresh"), sid (session id), jti.
 *
 * Sessions.  A login creates a session row; its refresh token is stored only as
 * keel_token_hash() under a key derived from REFRESH_TOKEN_SIGNING_KEY
 * (HMAC-SHA256(REFRESH_TOKEN_SIGNING_KEY, "keeld refresh-token storage v1"), hex).  A refresh
 * swaps the stored hash with a compare-and-swap.  A refresh token that verifies (so we signed
 * it, for this session) but is not the current one can only be one that was already rotated
 * out: the whole session is revoked and a security event is logged on "app.security".
 */
#define _GNU_SOURCE 1
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/auth.h>
#include <keel/validate.h>

#include "../repos/sessions.h"
#include "../repos/users.h"
#include "../routes.h"

#define ADMIN_LIST_MAX 100
#define PASSWORD_MIN_BYTES 8
#define PASSWORD_MAX_BYTES 128
#define REFRESH_HASH_LABEL "keeld refresh-token storage v1"

typedef struct auth_state {
    keel_store *store;
    const keel_settings *st;
    keel_jwt_keyset *access_ks;
    keel_jwt_keyset *refresh_ks;
    keel_jwt_policy access_pol;
    keel_jwt_policy refresh_pol;
    char iss[160];
    char aud[168];
    keel_secret *refresh_hash_key;
    char dummy_hash[KEEL_PASSWORD_PHC_SIZE];
    keel_password_params pw; /* PASSWORD_HASH_* settings */
    keel_limiter *ip_lim;   /* NULL = no per-IP limit */
    keel_limiter *acct_lim; /* NULL = no per-account limit */
    uint32_t session_cache_ms;
    keel_cache *user_cache; /* sub -> the v1 /users/me "data" JSON, as long as the session
                               cache; NULL when AUTH_SESSION_CACHE_MS is 0 */
    keel_layer *auth_layer; /* borrowed: the chain owns it */
    keel_logger *sec_log;
    keel_logger *log;
} auth_state;

static auth_state g;

static void forget_user(const char *id);

/* ------------------------------------------------------------------ helpers -- */

/* PROJECT_NAME lower-cased, every run of other characters turned into one '-'. */
static void project_identifier(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    int dash = 0;
    for (const char *p = name ? name : ""; *p && n + 1 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c) && c < 0x80) {
            if (dash && n > 0 && n + 2 < cap)
                out[n++] = '-';
            dash = 0;
            out[n++] = (char)tolower(c);
        } else {
            dash = 1;
        }
    }
    if (n == 0)
        n = (size_t)snprintf(out, cap, "keel");
    out[n < cap ? n : cap - 1] = '\0';
}

static void lower_ascii(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static keel_err problem_with_header(keel_ctx *cx, int status, const char *detail,
                                    const char *hname, const char *hvalue)
{
    keel_err e = keel_resp_problem(cx, status, NULL, detail, NULL);
    if (e == KEEL_OK && hname != NULL)
        e = keel_resp_header_set(cx, hname, hvalue);
    return e;
}

static keel_err unauthorized(keel_ctx *cx, const char *detail)
{
    return problem_with_header(cx, 401, detail, "WWW-Authenticate", "Bearer realm=\"keel\"");
}

/* One 422 error object naming a body field. */
static keel_err field_problem(keel_ctx *cx, const char *field, const char *msg, const char *type)
{
    json_t *errors = json_pack("[{s:[s,s], s:s, s:s}]", "loc", "body", field, "msg", msg,
                               "type", type);
    if (errors == NULL)
        return KEEL_ENOMEM;
    return keel_resp_problem(cx, 422, "Validation Error", "Invalid request body.", errors);
}

/* Take one unit for key from l; when refused, answer 429 (or 503 when a fail-closed backend
 * is down) and return 1. */
static int limited(keel_ctx *cx, keel_limiter *l, const char *what, const char *id, keel_err *out)
{
    *out = KEEL_OK;
    if (l == NULL)
        return 0;
    char key[KEEL_LIMITER_KEY_MAX];
    int n = snprintf(key, sizeof(key), "%s:%s", what, id);
    if (n < 0 || (size_t)n >= sizeof(key))
        return 0;
    keel_limit_result res;
    keel_err e = keel_limiter_take(l, keel_str_c(key), 1, &res);
    if (e == KEEL_EAGAIN) {
        uint64_t secs = res.retry_after_ms == UINT64_MAX
                            ? 3600
                            : res.retry_after_ms / 1000 + (res.retry_after_ms % 1000 != 0);
        if (secs == 0)
            secs = 1;
        char ra[24], detail[96];
        snprintf(ra, sizeof(ra), "%llu", (unsigned long long)secs);
        snprintf(detail, sizeof(detail),
                 "Too many attempts for this account; retry in %llu seconds.",
                 (unsigned long long)secs);
        *out = problem_with_header(cx, 429, detail, "Retry-After", ra);
        return 1;
    }
    if (e == KEEL_EIO) {
        *out = problem_with_header(cx, 503, "The rate limiter is unavailable; retry shortly.",
                                   "Retry-After", "1");
        return 1;
    }
    return 0; /* allowed, or the limiter failed open */
}

/* The roles of a user as a JSON array of strings (invalid stored text gives []). */
static json_t *roles_of(const user *u)
{
    json_t *v = json_loads(u->roles, JSON_REJECT_DUPLICATES, NULL);
    json_t *out = json_array();
    size_t i;
    json_t *it;
    if (json_is_array(v))
        json_array_foreach(v, i, it) if (json_is_string(it))
            json_array_append(out, it);
    json_decref(v);
    return out;
}

/* Scopes granted by roles: "user" -> users:me; "admin" -> users:me, users:read. */
static json_t *scopes_of(const json_t *roles)
{
    int plain = 0, admin = 0;
    size_t i;
    json_t *it;
    json_array_foreach(roles, i, it)
    {
        plain |= strcmp(json_string_value(it), "user") == 0;
        admin |= strcmp(json_string_value(it), "admin") == 0;
    }
    json_t *s = json_array();
    if (plain || admin)
        json_array_append_new(s, json_string("users:me"));
    if (admin)
        json_array_append_new(s, json_string("users:read"));
    return s;
}

static void iso(int64_t ms, char out[KEEL_TIME_ISO8601_SIZE])
{
    keel_time_iso8601(ms, out);
}

static json_t *user_json(const user *u, int v2)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "id", u->id, "email", u->email, "name", u->name);
    if (o != NULL && v2) {
        char c[KEEL_TIME_ISO8601_SIZE], up[KEEL_TIME_ISO8601_SIZE];
        iso(u->created_at_ms, c);
        iso(u->updated_at_ms, up);
        json_object_set_new(o, "roles", roles_of(u));
        json_object_set_new(o, "created_at", json_string(c));
        json_object_set_new(o, "updated_at", json_string(up));
    }
    return o;
}

/* Sign one token of type typ for u in session sid, expiring at exp_s. */
static keel_err sign_token(const keel_jwt_keyset *ks, const char *typ, const user *u,
                           const char *sid, uint64_t now_s, uint64_t exp_s, char **out)
{
    char jti[KEEL_UUID_SIZE];
    keel_err e = keel_uuid4(jti);
    if (e != KEEL_OK)
        return e;
    json_t *roles = roles_of(u);
    json_t *scopes = scopes_of(roles);
    json_t *claims = json_pack("{s:s, s:o, s:o, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:s}", "sub",
                               u->id, "roles", roles, "scopes", scopes, "iat", (json_int_t)now_s,
                               "nbf", (json_int_t)now_s, "exp", (json_int_t)exp_s, "iss", g.iss,
                               "aud", g.aud, "type", typ, "sid", sid, "jti", jti);
    if (claims == NULL)
        return KEEL_ENOMEM;
    e = keel_jwt_sign(ks, claims, out);
    json_decref(claims);
    return e;
}

typedef struct token_pair {
    char *access;
    char *refresh;
    char refresh_hash[KEEL_TOKEN_HASH_SIZE];
} token_pair;

static void token_pair_free(token_pair *t)
{
    if (t->access)
        keel_free(t->access);
    if (t->refresh)
        keel_free(t->refresh);
    t->access = t->refresh = NULL;
}

/* Access + refresh tokens for u in session sid (the refresh token never outlives the
 * session), and the storage hash of the refresh token. */
static keel_err issue_tokens(const user *u, const char *sid, int64_t session_expires_ms,
                             token_pair *t)
{
    memset(t, 0, sizeof(*t));
    uint64_t now = (uint64_t)(keel_time_wall_ms() / 1000);
    uint64_t access_exp = now + (uint64_t)g.st->access_token_expire_minutes * 60u;
    uint64_t refresh_exp = now + (uint64_t)g.st->refresh_token_expire_days * 86400u;
    uint64_t session_exp = session_expires_ms > 0 ? (uint64_t)(session_expires_ms / 1000) : 0;
    if (session_exp > now && refresh_exp > session_exp)
        refresh_exp = session_exp;
    keel_err e = sign_token(g.access_ks, "access", u, sid, now, access_exp, &t->access);
    if (e == KEEL_OK)
        e = sign_token(g.refresh_ks, "refresh", u, sid, now, refresh_exp, &t->refresh);
    if (e == KEEL_OK)
        e = keel_token_hash(g.refresh_hash_key, t->refresh, strlen(t->refresh), t->refresh_hash);
    if (e != KEEL_OK)
        token_pair_free(t);
    return e;
}

static keel_err tokens_response(keel_ctx *cx, int status, const token_pair *t)
{
    (void)keel_resp_header_set(cx, "Cache-Control", "no-store");
    return keel_resp_success(
        cx, status,
        json_pack("{s:s, s:s, s:s, s:I}", "access_token", t->access, "refresh_token", t->refresh,
                  "token_type", "bearer", "expires_in",
                  (json_int_t)g.st->access_token_expire_minutes * 60),
        NULL);
}

static void security_event(keel_ctx *cx, keel_log_level lv, const char *event, const char *uid,
                           const char *sid, const char *msg)
{
    keel_log_field f[4] = {KEEL_LF_STR("event", event), KEEL_LF_STR("user_id", uid ? uid : ""),
                           KEEL_LF_STR("session_id", sid ? sid : ""),
                           KEEL_LF_STR("client_ip", keel_req_client_ip(cx))};
    KEEL_LOG_FIELDS(g.sec_log, lv, f, 4, "%s", msg);
}

/* ------------------------------------------------------------------ register -- */

static const keel_schema_field register_fields[] = {
    {.name = "email", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 3,
     .max_len = USER_EMAIL_MAX, .format = KEEL_SCHEMA_FMT_EMAIL},
    {.name = "password", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED,
     .max_len = PASSWORD_MAX_BYTES},
    {.name = "name", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 1,
     .max_len = USER_NAME_MAX},
};
static const keel_schema register_schema = {
    register_fields, sizeof(register_fields) / sizeof(register_fields[0]), 0};

/* A few passwords every guessing list starts with (compared ignoring ASCII case). */
static const char *const common_passwords[] = {
    "password",   "password1",  "password123", "12345678",  "123456789", "1234567890",
    "qwertyuiop", "qwerty123",  "iloveyou",    "sunshine",  "princess",  "football",
    "baseball",   "welcome1",   "letmein1",    "abc12345",  "trustno1",  "changeme",
    "passw0rd",   "admin123",   "00000000",    "87654321",  "qwertyui",  NULL};

/* The password policy (README): 8..128 bytes, not one repeated character, not a well-known
 * password, not the email address.  Returns the reason or NULL when acceptable. */
static const char *password_policy(const char *pw, size_t len, const char *email)
{
    if (len < PASSWORD_MIN_BYTES)
        return "Password must be at least 8 bytes long";
    if (len > PASSWORD_MAX_BYTES)
        return "Password must be at most 128 bytes long";
    size_t same = 1;
    while (same < len && pw[same] == pw[0])
        same++;
    if (same == len)
        return "Password must not be a single repeated character";
    for (size_t i = 0; common_passwords[i]; i++)
        if (strcasecmp(pw, common_passwords[i]) == 0)
            return "Password is too common";
    if (strcasecmp(pw, email) == 0)
        return "Password must not be the email address";
    return NULL;
}

typedef struct create_job {
    user *u;
} create_job;

static keel_err create_tx(keel_db *db, void *ud)
{
    create_job *j = ud;
    return users_create(db, j->u, NULL);
}

static keel_err h_register(keel_ctx *cx, void *ud)
{
    (void)ud;
    json_t *body;
    if (keel_req_json(cx, &register_schema, &body) != KEEL_OK)
        return KEEL_OK; /* the 4xx problem is already set */
    user *u = keel_arena_alloc(keel_ctx_arena(cx), sizeof(user), 0);
    if (u == NULL) {
        json_decref(body);
        return KEEL_ENOMEM;
    }
    memset(u, 0, sizeof(*u));
    snprintf(u->email, sizeof(u->email), "%s", json_string_value(json_object_get(body, "email")));
    lower_ascii(u->email);
    const char *name = json_string_value(json_object_get(body, "name"));
    json_t *pwv = json_object_get(body, "password");
    const char *pw = json_string_value(pwv);
    size_t pwlen = json_string_length(pwv);
    keel_err e = KEEL_OK;
    int blank = 1, ctrl = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        blank &= (*p == ' ' || *p == '\t');
        ctrl |= (*p < 0x20 || *p == 0x7f);
    }
    if (blank || ctrl) {
        json_decref(body);
        return field_problem(cx, "name",
                             blank ? "Name must not be blank"
                                   : "Name must not contain control characters",
                             "value_error");
    }
    snprintf(u->name, sizeof(u->name), "%s", name);
    const char *why = password_policy(pw, pwlen, u->email);
    if (why != NULL) {
        json_decref(body);
        return field_problem(cx, "password", why, "password_policy");
    }
    if (limited(cx, g.acct_lim, "register", u->email, &e)) {
        json_decref(body);
        return e;
    }
    e = keel_password_hash(&g.pw, pw, pwlen, u->password_hash, sizeof(u->password_hash));
    json_decref(body);
    if (e != KEEL_OK)
        return e;
    create_job j = {u};
    keel_diag d = {0};
    e = keel_store_tx(g.store, create_tx, &j, &d);
    if (e == KEEL_EEXIST)
        return keel_resp_problem(cx, 409, NULL, "Email already registered", NULL);
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    char loc[96];
    snprintf(loc, sizeof(loc), "/api/v1/users/%s", u->id);
    (void)keel_resp_header(cx, "Location", loc);
    return keel_resp_success(cx, 201, user_json(u, 1), NULL);
}

/* --------------------------------------------------------------------- login -- */

static const keel_schema_field login_fields[] = {
    {.name = "email", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 1,
     .max_len = USER_EMAIL_MAX},
    {.name = "password", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 1,
     .max_len = 1024},
};
static const keel_schema login_schema = {login_fields,
                                         sizeof(login_fields) / sizeof(login_fields[0]), 0};

#define BAD_CREDENTIALS "Incorrect email or password."

typedef struct login_job {
    const session *s;
} login_job;

static keel_err login_tx(keel_db *db, void *ud)
{
    login_job *j = ud;
    return sessions_create(db, j->s, NULL);
}

static keel_err h_login(keel_ctx *cx, void *ud)
{
    (void)ud;
    json_t *body;
    if (keel_req_json(cx, &login_schema, &body) != KEEL_OK)
        return KEEL_OK;
    keel_arena *a = keel_ctx_arena(cx);
    user *u = keel_arena_alloc(a, sizeof(user), 0);
    session *s = keel_arena_alloc(a, sizeof(session), 0);
    if (u == NULL || s == NULL) {
        json_decref(body);
        return KEEL_ENOMEM;
    }
    memset(u, 0, sizeof(*u));
    memset(s, 0, sizeof(*s));
    char email[USER_EMAIL_MAX * 4 + 1];
    snprintf(email, sizeof(email), "%s", json_string_value(json_object_get(body, "email")));
    lower_ascii(email);
    json_t *pwv = json_object_get(body, "password");
    keel_err e = KEEL_OK;
    if (limited(cx, g.acct_lim, "login", email, &e)) {
        json_decref(body);
        return e;
    }
    keel_db *db;
    keel_diag d = {0};
    e = keel_db_acquire(g.store, &db, &d);
    if (e == KEEL_OK) {
        e = users_get_by_email(db, email, u, &d);
        keel_db_release(db);
    }
    if (e != KEEL_OK && e != KEEL_ENOTFOUND) {
        json_decref(body);
        return keeld_store_problem(cx, e, &d);
    }
    /* Unknown email: verify against a dummy hash with the same parameters, so that both
     * failures cost one Argon2id verification and answer the same body. */
    int found = e == KEEL_OK;
    keel_err ve = keel_password_verify(found ? u->password_hash : g.dummy_hash,
                                       json_string_value(pwv), json_string_length(pwv), NULL);
    if (!found || ve != KEEL_OK) {
        if (found && ve != KEEL_EDENIED)
            KEEL_LOG_ERROR(g.log, "stored password hash of user %s cannot be verified: %s",
                           u->id, keel_strerror(ve));
        json_decref(body);
        return unauthorized(cx, BAD_CREDENTIALS);
    }
    int rehash = 0;
    if (keel_password_needs_rehash(u->password_hash, &g.pw, &rehash, NULL) == KEEL_OK && rehash) {
        char phc[KEEL_PASSWORD_PHC_SIZE];
        if (keel_password_hash(&g.pw, json_string_value(pwv), json_string_length(pwv), phc,
                               sizeof(phc)) == KEEL_OK &&
            keel_db_acquire(g.store, &db, &d) == KEEL_OK) {
            forget_user(u->id);
            if (users_set_password_hash(db, u->id, phc, &d) == KEEL_OK)
                KEEL_LOG_INFO(g.log, "password hash of user %s upgraded to current parameters",
                              u->id);
            keel_db_release(db);
        }
    }
    json_decref(body);

    int64_t now = keel_time_wall_ms();
    if ((e = keel_uuid4(s->id)) != KEEL_OK)
        return e;
    snprintf(s->user_id, sizeof(s->user_id), "%s", u->id);
    keel_device_fingerprint(keel_ctx_device(cx), s->device_fingerprint,
                            sizeof(s->device_fingerprint));
    snprintf(s->ip_address, sizeof(s->ip_address), "%s", keel_req_client_ip(cx));
    s->created_at_ms = s->last_used_at_ms = now;
    s->expires_at_ms = now + (int64_t)g.st->session_expire_days * 86400000;
    token_pair t;
    if ((e = issue_tokens(u, s->id, s->expires_at_ms, &t)) != KEEL_OK)
        return e;
    snprintf(s->refresh_token_hash, sizeof(s->refresh_token_hash), "%s", t.refresh_hash);
    login_job j = {s};
    e = keel_store_tx(g.store, login_tx, &j, &d);
    if (e != KEEL_OK) {
        token_pair_free(&t);
        return keeld_store_problem(cx, e, &d);
    }
    e = tokens_response(cx, 200, &t);
    token_pair_free(&t);
    return e;
}

/* ------------------------------------------------------------------- refresh -- */

static const keel_schema_field refresh_fields[] = {
    {.name = "refresh_token", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED,
     .min_len = 1, .max_len = KEEL_JWT_MAX_LEN_DEFAULT},
};
static const keel_schema refresh_schema = {
    refresh_fields, sizeof(refresh_fields) / sizeof(refresh_fields[0]), 0};

enum refresh_outcome { R_ROTATED = 1, R_INVALID, R_REUSE };

typedef struct refresh_job {
    const char *sid, *sub, *token;
    size_t token_len;
    const char *new_hash;
    int outcome;
    int matched_previous;
} refresh_job;

static keel_err refresh_tx(keel_db *db, void *ud)
{
    refresh_job *j = ud;
    session s;
    int64_t now = keel_time_wall_ms();
    j->outcome = R_INVALID;
    j->matched_previous = 0;
    keel_err e = sessions_get(db, j->sid, &s, NULL);
    if (e == KEEL_ENOTFOUND)
        return KEEL_OK;
    if (e != KEEL_OK)
        return e;
    if (s.revoked_at_ms != 0 || s.expires_at_ms <= now || strcmp(s.user_id, j->sub) != 0)
        return KEEL_OK;
    if (keel_token_verify(g.refresh_hash_key, j->token, j->token_len, s.refresh_token_hash) ==
        KEEL_OK) {
        e = sessions_rotate(db, s.id, s.refresh_token_hash, j->new_hash, now, NULL);
        if (e == KEEL_OK) {
            j->outcome = R_ROTATED;
            return KEEL_OK;
        }
        if (e != KEEL_ESTATE)
            return e;
        /* lost a race with another refresh of the same token: that is a second use */
    } else if (s.previous_token_hash[0] != '\0' &&
               keel_token_verify(g.refresh_hash_key, j->token, j->token_len,
                                 s.previous_token_hash) == KEEL_OK) {
        j->matched_previous = 1;
    }
    j->outcome = R_REUSE;
    e = sessions_revoke(db, s.id, "refresh_token_reuse", now, NULL);
    return e == KEEL_ENOTFOUND ? KEEL_OK : e;
}

#define BAD_REFRESH "The refresh token is invalid or expired."

static keel_err h_refresh(keel_ctx *cx, void *ud)
{
    (void)ud;
    json_t *body;
    if (keel_req_json(cx, &refresh_schema, &body) != KEEL_OK)
        return KEEL_OK;
    json_t *tv = json_object_get(body, "refresh_token");
    const char *token = json_string_value(tv);
    size_t tlen = json_string_length(tv);
    json_t *claims = NULL;
    keel_err e = keel_jwt_verify(g.refresh_ks, &g.refresh_pol, token, tlen,
                                 (uint64_t)(keel_time_wall_ms() / 1000), &claims, NULL);
    if (e == KEEL_ENOMEM || e == KEEL_ECRYPTO) {
        json_decref(body);
        return e;
    }
    const char *sid = json_string_value(json_object_get(claims, "sid"));
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    if (e != KEEL_OK || sid == NULL || sub == NULL || !keel_uuid_valid(keel_str_c(sid)) ||
        !keel_uuid_valid(keel_str_c(sub))) {
        json_decref(claims);
        json_decref(body);
        return unauthorized(cx, BAD_REFRESH);
    }
    user *u = keel_arena_alloc(keel_ctx_arena(cx), sizeof(user), 0);
    char *sid_c = keel_arena_strdup(keel_ctx_arena(cx), sid);
    if (u == NULL || sid_c == NULL) {
        json_decref(claims);
        json_decref(body);
        return KEEL_ENOMEM;
    }
    keel_db *db;
    keel_diag d = {0};
    e = keel_db_acquire(g.store, &db, &d);
    if (e == KEEL_OK) {
        e = users_get(db, sub, u, &d);
        keel_db_release(db);
    }
    json_decref(claims);
    if (e == KEEL_ENOTFOUND) {
        json_decref(body);
        return unauthorized(cx, BAD_REFRESH);
    }
    if (e != KEEL_OK) {
        json_decref(body);
        return keeld_store_problem(cx, e, &d);
    }
    /* The session's expiry caps the new refresh token: read it with the rotation. */
    session cur;
    e = keel_db_acquire(g.store, &db, &d);
    if (e == KEEL_OK) {
        e = sessions_get(db, sid_c, &cur, &d);
        keel_db_release(db);
    }
    if (e == KEEL_ENOTFOUND) {
        json_decref(body);
        return unauthorized(cx, BAD_REFRESH);
    }
    if (e != KEEL_OK) {
        json_decref(body);
        return keeld_store_problem(cx, e, &d);
    }
    token_pair t;
    if ((e = issue_tokens(u, sid_c, cur.expires_at_ms, &t)) != KEEL_OK) {
        json_decref(body);
        return e;
    }
    refresh_job j = {sid_c, u->id, token, tlen, t.refresh_hash, 0, 0};
    e = keel_store_tx(g.store, refresh_tx, &j, &d);
    json_decref(body);
    if (e != KEEL_OK) {
        token_pair_free(&t);
        return keeld_store_problem(cx, e, &d);
    }
    if (j.outcome == R_ROTATED) {
        e = tokens_response(cx, 200, &t);
        token_pair_free(&t);
        return e;
    }
    token_pair_free(&t);
    if (j.outcome == R_REUSE) {
        keel_auth_forget_session(g.auth_layer, sid_c);
        security_event(cx, KEEL_LOG_LEVEL_ERROR, "refresh_token_reuse", u->id, sid_c,
                       j.matched_previous
                           ? "refresh token reuse detected (the previous token was presented "
                             "again); session revoked"
                           : "refresh token reuse detected (an already rotated token was "
                             "presented); session revoked");
        return unauthorized(cx, "The refresh token was already used; the session has been "
                                "revoked. Log in again.");
    }
    return unauthorized(cx, BAD_REFRESH);
}

/* -------------------------------------------------------------------- logout -- */

static keel_err h_logout(keel_ctx *cx, void *ud)
{
    (void)ud;
    keel_err e = keel_auth_require_roles(cx, NULL);
    if (e != KEEL_OK)
        return e == KEEL_EDENIED ? KEEL_OK : e;
    const keel_principal *p = keel_ctx_principal(cx);
    if (p->sid != NULL && keel_uuid_valid(keel_str_c(p->sid))) {
        keel_db *db;
        keel_diag d = {0};
        e = keel_db_acquire(g.store, &db, &d);
        if (e == KEEL_OK) {
            e = sessions_revoke(db, p->sid, "logout", keel_time_wall_ms(), &d);
            keel_db_release(db);
        }
        if (e != KEEL_OK && e != KEEL_ENOTFOUND)
            return keeld_store_problem(cx, e, &d);
        keel_auth_forget_session(g.auth_layer, p->sid);
        security_event(cx, KEEL_LOG_LEVEL_INFO, "logout", p->sub, p->sid, "session revoked by "
                                                                         "logout");
    }
    keel_resp_status(cx, 204);
    return KEEL_OK;
}

/* ------------------------------------------------------------------ users/me -- */

/* The user row of /api/v1/users/me comes from a short cache (as long as the session-check
 * cache, so a change shows within the same bound); role and password changes drop it. */
static void forget_user(const char *id)
{
    if (g.user_cache != NULL && id != NULL) {
        keel_err e = keel_cache_delete(g.user_cache, keel_str_c(id));
        (void)e; /* absent is fine */
    }
}

/* Most bytes of a cached v1 /users/me "data" JSON (longer ones are not cached). */
#define ME_JSON_MAX 2048

/* The cached v1 /users/me "data" JSON of sub into out (ME_JSON_MAX bytes): its length, or 0
 * when it is not cached. */
static size_t cached_me(const char *sub, char *out)
{
    size_t n = 0;
    if (g.user_cache == NULL ||
        keel_cache_get_into(g.user_cache, keel_str_c(sub), out, ME_JSON_MAX, &n) != KEEL_OK)
        return 0;
    return n;
}

static void cache_me(const user *u)
{
    if (g.user_cache == NULL)
        return;
    json_t *o = user_json(u, 0);
    char buf[ME_JSON_MAX];
    size_t n = o != NULL ? json_dumpb(o, buf, sizeof(buf), JSON_COMPACT) : 0;
    json_decref(o);
    if (n > 0 && n <= sizeof(buf)) {
        keel_err e = keel_cache_set(g.user_cache, keel_str_c(u->id), (keel_str){buf, n});
        (void)e; /* not caching only costs a read */
    }
}

/* Request slot where keeld_inline_check() leaves the cached body it found, for h_me. */
static const char me_slot = 0;
typedef struct me_body {
    size_t len;
    char json[];
} me_body;

/* keel_server_config.inline_check: GET /api/v1/users/me whose session verdict and user row are
 * both cached needs no I/O, so it is answered on the event loop (no worker hand-off). */
int keeld_inline_check(keel_ctx *cx, void *ud)
{
    (void)ud;
    const char *route = keel_req_route(cx);
    if (g.user_cache == NULL || route == NULL || strcmp(route, "/api/v1/users/me") != 0 ||
        keel_req_method(cx) != KEEL_METHOD_GET)
        return 0;
    char sub[KEEL_UUID_SIZE + 1], body[ME_JSON_MAX];
    if (!keel_auth_ready_inline(g.auth_layer, cx, sub, sizeof(sub)))
        return 0;
    if (sub[0] == '\0')
        return 1; /* answered 401 without I/O */
    size_t n = cached_me(sub, body);
    if (n == 0)
        return 0;
    /* Hand the body to the handler (it runs next on this thread) instead of a second lookup;
     * without room in the arena or a slot, the handler looks it up again. */
    me_body *m = keel_arena_alloc(keel_ctx_arena(cx), sizeof(*m) + n, _Alignof(me_body));
    if (m != NULL) {
        m->len = n;
        memcpy(m->json, body, n);
        (void)keel_ctx_set(cx, &me_slot, m);
    }
    return 1;
}

static keel_err h_me(keel_ctx *cx, void *ud)
{
    int v2 = (int)(intptr_t)ud;
    keel_err e = keel_auth_require_roles(cx, NULL);
    if (e != KEEL_OK)
        return e == KEEL_EDENIED ? KEEL_OK : e;
    const keel_principal *p = keel_ctx_principal(cx);
    if (!keel_uuid_valid(keel_str_c(p->sub)))
        return unauthorized(cx, "The access token is invalid or expired");
    if (!v2) {
        const me_body *m = keel_ctx_get(cx, &me_slot);
        if (m != NULL)
            return keel_resp_success_raw(cx, 200, m->json, m->len);
        char body[ME_JSON_MAX];
        size_t n = cached_me(p->sub, body);
        if (n > 0)
            return keel_resp_success_raw(cx, 200, body, n);
    }
    user u;
    session s;
    int have_session = 0;
    keel_db *db;
    keel_diag d = {0};
    if ((e = keel_db_acquire(g.store, &db, &d)) == KEEL_OK) {
        e = users_get(db, p->sub, &u, &d);
        if (e == KEEL_OK && v2 && p->sid != NULL && keel_uuid_valid(keel_str_c(p->sid)))
            have_session = sessions_get(db, p->sid, &s, &d) == KEEL_OK;
        keel_db_release(db);
        if (e == KEEL_OK)
            cache_me(&u);
    }
    if (e == KEEL_ENOTFOUND)
        return keel_resp_problem(cx, 404, NULL, "The user of this token no longer exists.",
                                 NULL);
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    json_t *o = user_json(&u, v2);
    if (o != NULL && v2) {
        json_t *scopes = json_array();
        for (size_t i = 0; i < p->nscopes; i++)
            json_array_append_new(scopes, json_string(p->scopes[i]));
        json_object_set_new(o, "scopes", scopes);
        if (have_session) {
            char c[KEEL_TIME_ISO8601_SIZE], lu[KEEL_TIME_ISO8601_SIZE],
                ex[KEEL_TIME_ISO8601_SIZE];
            iso(s.created_at_ms, c);
            iso(s.last_used_at_ms, lu);
            iso(s.expires_at_ms, ex);
            json_object_set_new(o, "session",
                                json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "id", s.id,
                                          "created_at", c, "last_used_at", lu, "expires_at", ex,
                                          "device", s.device_fingerprint, "ip_address",
                                          s.ip_address, "rotations", (json_int_t)s.rotations));
        }
    }
    return keel_resp_success(cx, 200, o, NULL);
}

/* --------------------------------------------------------------------- admin -- */

static const char *const admin_roles[] = {"admin", NULL};
static const char *const admin_scopes[] = {"users:read", NULL};

static keel_err h_admin_users(keel_ctx *cx, void *ud)
{
    (void)ud;
    keel_err e = keel_auth_require_roles(cx, admin_roles);
    if (e == KEEL_OK)
        e = keel_auth_require_scopes(cx, admin_scopes);
    if (e != KEEL_OK)
        return e == KEEL_EDENIED ? KEEL_OK : e;
    long long skip = 0, limit = 20;
    const char *qs = keel_req_query(cx, "skip"), *ql = keel_req_query(cx, "limit");
    char *end;
    if (qs != NULL) {
        errno = 0;
        skip = strtoll(qs, &end, 10);
        if (*qs == '\0' || *end != '\0' || errno != 0 || skip < 0)
            return keel_resp_problem(cx, 422, NULL, "skip must be a non-negative integer.",
                                     NULL);
    }
    if (ql != NULL) {
        errno = 0;
        limit = strtoll(ql, &end, 10);
        if (*ql == '\0' || *end != '\0' || errno != 0 || limit < 1 || limit > ADMIN_LIST_MAX)
            return keel_resp_problem(cx, 422, NULL, "limit must be an integer in 1..100.", NULL);
    }
    user *items = keel_arena_alloc(keel_ctx_arena(cx), sizeof(user) * (size_t)limit, 0);
    if (items == NULL)
        return KEEL_ENOMEM;
    size_t n = 0;
    keel_db *db;
    keel_diag d = {0};
    e = keel_db_acquire(g.store, &db, &d);
    if (e == KEEL_OK) {
        e = users_list(db, (int64_t)skip, (size_t)limit, items, &n, &d);
        keel_db_release(db);
    }
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, user_json(&items[i], 1));
    json_t *meta = json_pack("{s:I, s:I, s:I}", "skip", (json_int_t)skip, "limit",
                             (json_int_t)limit, "count", (json_int_t)n);
    e = keel_resp_success(cx, 200, arr, meta);
    json_decref(meta);
    return e;
}

/* ---------------------------------------------------------------------- JWKS -- */

static keel_err h_jwks(keel_ctx *cx, void *ud)
{
    (void)ud;
    json_t *doc = NULL;
    keel_err e = keel_jwt_keyset_jwks(g.access_ks, &doc);
    if (e != KEEL_OK)
        return e;
    (void)keel_resp_header_set(cx, "Cache-Control", "public, max-age=300");
    return keel_resp_json(cx, 200, doc);
}

/* ------------------------------------------------ test environment: set roles -- */

static const keel_schema_field roles_fields[] = {
    {.name = "email", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SCHEMA_REQUIRED, .min_len = 1,
     .max_len = USER_EMAIL_MAX},
    {.name = "roles", .type = KEEL_SCHEMA_ARRAY, .flags = KEEL_SCHEMA_REQUIRED, .max_len = 8,
     .items = KEEL_SCHEMA_STRING},
};
static const keel_schema roles_schema = {roles_fields,
                                         sizeof(roles_fields) / sizeof(roles_fields[0]), 0};

static keel_err h_test_roles(keel_ctx *cx, void *ud)
{
    (void)ud;
    json_t *body;
    if (keel_req_json(cx, &roles_schema, &body) != KEEL_OK)
        return KEEL_OK;
    char email[USER_EMAIL_MAX * 4 + 1];
    snprintf(email, sizeof(email), "%s", json_string_value(json_object_get(body, "email")));
    lower_ascii(email);
    char roles[USER_ROLES_MAX + 1];
    size_t rn = json_dumpb(json_object_get(body, "roles"), roles, sizeof(roles), JSON_COMPACT);
    json_decref(body);
    if (rn == 0 || rn >= sizeof(roles))
        return keel_resp_problem(cx, 422, NULL, "Too many roles.", NULL);
    roles[rn] = '\0';
    user u;
    keel_db *db;
    keel_diag d = {0};
    keel_err e = keel_db_acquire(g.store, &db, &d);
    if (e == KEEL_OK) {
        e = users_get_by_email(db, email, &u, &d);
        if (e == KEEL_OK)
            e = users_set_roles(db, u.id, roles, &d);
        keel_db_release(db);
        forget_user(u.id);
    }
    if (e == KEEL_ENOTFOUND)
        return keel_resp_problem(cx, 404, NULL, "No user with this email.", NULL);
    if (e != KEEL_OK)
        return keeld_store_problem(cx, e, &d);
    return keel_resp_success(cx, 200, json_pack("{s:s}", "id", u.id), NULL);
}

/* ------------------------------------------------------------- session check -- */

static keel_err session_check(const keel_principal *p, void *ud)
{
    (void)ud;
    if (p->sid == NULL || !keel_uuid_valid(keel_str_c(p->sid)))
        return KEEL_EDENIED;
    keel_db *db;
    keel_err e = keel_db_acquire(g.store, &db, NULL);
    if (e != KEEL_OK)
        return e;
    e = sessions_check(db, p->sid, p->sub, keel_time_wall_ms(), NULL);
    keel_db_release(db);
    return e;
}

/* ------------------------------------------------------------------- startup -- */

/* Add the key of one token kind to ks: HS256 takes the secret's bytes; RS256/ES256 a PEM
 * private key, inline ("-----BEGIN ...") or as a path.  kid: for asymmetric keys, the first
 * 16 hex digits of HMAC-SHA256("keeld kid", PEM) so that rotated keys get distinct kids. */
static keel_err add_key(keel_jwt_keyset *ks, keel_jwt_alg alg, const keel_secret *key,
                        const char *var, keel_diag *diag)
{
    keel_err e;
    if (alg == KEEL_JWT_HS256) {
        e = keel_jwt_keyset_add_hmac(ks, NULL, keel_secret_data(key), keel_secret_len(key),
                                     KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY);
        if (e == KEEL_EINVAL)
            keel_diag_set(diag, KEEL_EINVAL, 0, "%s: must be at least %u bytes for HS256", var,
                          KEEL_JWT_HS_MIN_SECRET);
        return e;
    }
    const char *v = keel_secret_data(key);
    size_t len = keel_secret_len(key);
    keel_secret *label = NULL;
    char kid[KEEL_TOKEN_HASH_SIZE];
    if ((e = keel_secret_create(&label, "keeld kid", 9)) != KEEL_OK)
        return e;
    e = keel_token_hash(label, v, len, kid);
    keel_secret_destroy(label);
    if (e != KEEL_OK)
        return e;
    kid[16] = '\0';
    if (len > 10 && memcmp(v, "-----BEGIN", 10) == 0) {
        e = keel_jwt_keyset_add_pem(ks, alg, kid, v, len, KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY);
    } else {
        char path[4096];
        if (len >= sizeof(path) || memchr(v, '\0', len) != NULL)
            e = KEEL_EINVAL;
        else {
            memcpy(path, v, len);
            path[len] = '\0';
            e = keel_jwt_keyset_add_pem_file(ks, alg, kid, path,
                                             KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY);
        }
    }
    if (e != KEEL_OK && e != KEEL_ENOMEM)
        keel_diag_set(diag, KEEL_EINVAL, 0,
                      "%s: with JWT_ALGORITHM=%s it must be a PEM private key (inline or a file "
                      "path) of that type: %s",
                      var, keel_jwt_alg_name(alg), keel_strerror(e));
    return e;
}

static keel_err make_limiter(const keeld_app *app, const char *name, uint32_t limit,
                             uint32_t window_s, keel_limiter **out, keel_diag *diag)
{
    *out = NULL;
    if (limit == 0)
        return KEEL_OK;
    keel_limiter_config lc;
    keel_limiter_config_default(&lc);
    lc.algorithm = KEEL_LIMIT_SLIDING_LOG; /* exact sliding window */
    lc.name = name;
    lc.limit = limit;
    lc.window_ms = (uint64_t)window_s * 1000u;
    lc.max_keys = 100000;
    if (app->redis == NULL)
        return keel_limiter_create(&lc, out, diag);
    keel_limiter_redis_config rc;
    keel_limiter_redis_config_default(&rc);
    rc.redis = app->redis;
    rc.on_error = KEEL_LIMITER_FAIL_CLOSED; /* login guessing must not go unchecked */
    rc.metrics = app->metrics;
    return keel_limiter_redis_create(&lc, &rc, out, diag);
}

keel_err keeld_auth_routes(keel_router *r, const keeld_app *app, keel_diag *diag)
{
    memset(&g, 0, sizeof(g));
    g.store = app->store;
    g.st = app->settings;
    g.log = keel_logger_get("app.auth");
    g.sec_log = keel_logger_get("app.security");
    const keel_settings *st = app->settings;
    keel_jwt_alg alg;
    keel_err e = keel_jwt_alg_parse(st->jwt_algorithm, &alg);
    if (e != KEEL_OK) {
        keel_diag_set(diag, KEEL_EINVAL, 0,
                      "JWT_ALGORITHM=%s is not supported by keeld (use HS256, RS256 or ES256)",
                      st->jwt_algorithm);
        return KEEL_EUNSUPPORTED;
    }
    project_identifier(st->project_name, g.iss, sizeof(g.iss));
    snprintf(g.aud, sizeof(g.aud), "%s-client", g.iss);
    if ((e = keel_jwt_keyset_create(&g.access_ks)) != KEEL_OK ||
        (e = keel_jwt_keyset_create(&g.refresh_ks)) != KEEL_OK ||
        (e = add_key(g.access_ks, alg, st->access_token_signing_key, "ACCESS_TOKEN_SIGNING_KEY",
                     diag)) != KEEL_OK ||
        (e = add_key(g.refresh_ks, alg, st->refresh_token_signing_key,
                     "REFRESH_TOKEN_SIGNING_KEY", diag)) != KEEL_OK)
        return e;
    keel_jwt_policy_default(&g.access_pol);
    g.access_pol.alg = alg;
    g.access_pol.iss = g.iss;
    g.access_pol.aud = g.aud;
    g.access_pol.type = "access";
    g.refresh_pol = g.access_pol;
    g.refresh_pol.type = "refresh";
    /* The refresh-token storage key: HMAC-SHA256(REFRESH_TOKEN_SIGNING_KEY, label), hex. */
    char derived[KEEL_TOKEN_HASH_SIZE];
    if ((e = keel_token_hash(st->refresh_token_signing_key, REFRESH_HASH_LABEL,
                             strlen(REFRESH_HASH_LABEL), derived)) != KEEL_OK ||
        (e = keel_secret_create(&g.refresh_hash_key, derived, KEEL_TOKEN_HASH_SIZE - 1)) !=
            KEEL_OK)
        return e;
    memset(derived, 0, sizeof(derived));
    /* Argon2id cost from the settings (OWASP minimum unless raised). */
    keel_password_params_default(&g.pw);
    g.pw.memory_kib = st->password_hash_memory_kib;
    g.pw.iterations = st->password_hash_iterations;
    g.pw.parallelism = st->password_hash_parallelism;
    /* The dummy hash verified when a login names an unknown email: same cost as real ones,
     * so both paths take the same time. */
    unsigned char rnd[24];
    if ((e = keel_random_bytes(rnd, sizeof(rnd))) != KEEL_OK ||
        (e = keel_password_hash(&g.pw, (const char *)rnd, sizeof(rnd), g.dummy_hash,
                                sizeof(g.dummy_hash))) != KEEL_OK)
        return e;
    const keeld_auth_settings *as = app->auth;
    keeld_auth_settings defaults;
    if (as == NULL) {
        keeld_auth_settings_default(&defaults);
        as = &defaults;
    }
    g.session_cache_ms = as->session_cache_ms;
    if (g.session_cache_ms > 0) {
        keel_cache_config cc;
        keel_cache_config_default(&cc);
        cc.name = "users_me";
        cc.max_entries = 10000;
        cc.ttl_ms = g.session_cache_ms;
        if ((e = keel_cache_create(&g.user_cache, &cc, diag)) != KEEL_OK)
            return e;
    }
    if ((e = make_limiter(app, "auth_ip", as->rate_limit_per_ip, as->rate_limit_window_s,
                          &g.ip_lim, diag)) != KEEL_OK ||
        (e = make_limiter(app, "auth_account", as->rate_limit_per_account,
                          as->rate_limit_window_s, &g.acct_lim, diag)) != KEEL_OK)
        return e;

    if ((e = keel_router_add(r, KEEL_METHOD_POST, "/api/v1/auth/register", h_register, NULL, 0,
                             diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_POST, "/api/v1/auth/login", h_login, NULL, 0,
                             diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_POST, "/api/v1/auth/refresh", h_refresh, NULL, 0,
                             diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_POST, "/api/v1/auth/logout", h_logout, NULL, 0,
                             diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/api/v1/users/me", h_me, (void *)(intptr_t)0,
                             0, diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/api/v2/users/me", h_me, (void *)(intptr_t)1,
                             0, diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/api/v1/admin/users", h_admin_users, NULL, 0,
                             diag)) ||
        (e = keel_router_add(r, KEEL_METHOD_GET, "/.well-known/jwks.json", h_jwks, NULL, 0,
                             diag)))
        return e;
    if (st->environment == KEEL_ENVIRONMENT_TEST &&
        (e = keel_router_add(r, KEEL_METHOD_POST, "/_test/auth/roles", h_test_roles, NULL, 0,
                             diag)))
        return e;
    return KEEL_OK;
}

/* Public paths: everything else that is routed needs a valid access token.  Products,
 * orders, payments and checkout stay public until their clients send tokens. */
static const char *const public_paths[] = {"/",
                                           "/health/*",
                                           "/metrics",
                                           "/metrics/*",
                                           "/.well-known/jwks.json",
                                           "/api/v1/auth/register",
                                           "/api/v1/auth/login",
                                           "/api/v1/auth/refresh",
                                           "/api/v1/products",
                                           "/api/v1/products/*",
                                           "/api/v1/orders/*",
                                           "/api/v1/payments",
                                           "/api/v1/checkout",
                                           "/api/v1/webhooks/payments",
                                           "/_test/*",
                                           "/api/v1/_test/*",
                                           "/api/v2/_test/*",
                                           NULL};

/* The chain's auth slot: the auth layer, applied to routed requests only, so that an unknown
 * path is a 404 (and a wrong method a 405) with or without a token, as before. */
static const char *const limited_paths[] = {"/api/v1/auth/login", "/api/v1/auth/register", NULL};

keel_err keeld_auth_layers(keel_layer **auth, keel_layer **rate_limit, keel_diag *diag)
{
    *auth = NULL;
    *rate_limit = NULL;
    keel_auth_config ac;
    keel_auth_config_default(&ac);
    ac.keys = g.access_ks;
    ac.policy = &g.access_pol;
    ac.exclude = public_paths;
    ac.session_check = session_check;
    ac.session_cache_ms = g.session_cache_ms;
    ac.routed_only = 1; /* unknown paths stay 404 */
    keel_layer *inner = NULL;
    keel_err e = keel_mw_auth(&ac, &inner, diag);
    if (e != KEEL_OK)
        return e;
    g.auth_layer = inner;
    if (g.ip_lim != NULL) {
        keel_mw_rate_limit_config rc;
        keel_mw_rate_limit_config_default(&rc);
        rc.limiter = g.ip_lim;
        rc.path_prefixes = limited_paths;
        if ((e = keel_mw_rate_limit(&rc, rate_limit)) != KEEL_OK) {
            inner->dispose(inner);
            g.auth_layer = NULL;
            return e;
        }
    }
    *auth = inner;
    return KEEL_OK;
}

void keeld_auth_settings_default(keeld_auth_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->rate_limit_per_ip = 10;
    s->rate_limit_per_account = 5;
    s->rate_limit_window_s = 60;
    s->session_cache_ms = 2000;
}

void keeld_auth_cleanup(void)
{
    keel_cache_destroy(g.user_cache);
    keel_limiter_destroy(g.ip_lim);
    keel_limiter_destroy(g.acct_lim);
    keel_jwt_keyset_destroy(g.access_ks);
    keel_jwt_keyset_destroy(g.refresh_ks);
    keel_secret_destroy(g.refresh_hash_key);
    memset(&g, 0, sizeof(g));
}
