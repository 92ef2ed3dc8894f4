/*
 * password.c - Argon2id password hashing in PHC format, and HMAC-SHA256 token hashing.
 *
 * The PHC string is parsed here rather than by libargon2's decoder so that every field is
 * checked against keel's caps before any memory is committed, and so that a malformed string
 * gets a diagnostic naming the field.  libargon2 is then called on raw bytes (argon2_ctx) with
 * keel's allocator, one thread, and the comparison of the recomputed tag is constant-time.
 */
#include "keel_int.h"

#include <keel/password.h>

#include <limits.h>
#include <stdio.h>

#include <argon2.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "password_int.h"

/* Unpadded base64 of the largest salt/hash: ceil(64 * 4 / 3). */
#define B64_MAX_CHARS 86u

/* ------------------------------------------------------------- base64 -- */

/* ---------------------------------------------------------- PHC parse -- */

/* Read a canonical decimal uint32 ("0" or no leading zero, at most 10 digits) at *pos. */
static int parse_u32(const char *s, size_t *pos, uint32_t *out)
{
    size_t i = *pos;
    uint64_t v = 0;
    size_t nd = 0;
    while (s[i] >= '0' && s[i] <= '9') {
        if (nd == 10)
            return -1;
        v = v * 10u + (uint64_t)(s[i] - '0');
        i++;
        nd++;
    }
    if (nd == 0 || (nd > 1 && s[*pos] == '0') || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    *pos = i;
    return 0;
}

/* Expect the literal lit at *pos; advance past it. */
static int expect(const char *s, size_t *pos, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(s + *pos, lit, n) != 0)
        return -1;
    *pos += n;
    return 0;
}

static keel_err parse_param(const char *s, size_t *pos, const char *lit, const char *name,
                            uint32_t *out, keel_diag *diag)
{
    size_t at = *pos;
    if (expect(s, pos, lit) != 0)
        return keel_diag_set(diag, KEEL_EPARSE, at, "%s: expected '%s'", name, lit);
    if (parse_u32(s, pos, out) != 0)
        return keel_diag_set(diag, KEEL_EPARSE, *pos, "%s: not a canonical decimal number",
                             name);
    return KEEL_OK;
}

static keel_err parse_b64_field(const char *s, size_t *pos, const char *name, size_t min_len,
                                size_t max_len, unsigned char *out, size_t *out_len,
                                keel_diag *diag)
{
    size_t at = *pos, n = 0;
    while (s[at + n] != '\0' && s[at + n] != '$')
        n++;
    if (n == 0)
        return keel_diag_set(diag, KEEL_EPARSE, at, "%s: missing", name);
    if (n > B64_MAX_CHARS)
        return keel_diag_set(diag, KEEL_ERANGE, at, "%s: longer than %zu bytes", name, max_len);
    unsigned char tmp[KEEL_PASSWORD_MAX_HASH_LEN > KEEL_PASSWORD_MAX_SALT_LEN
                          ? KEEL_PASSWORD_MAX_HASH_LEN
                          : KEEL_PASSWORD_MAX_SALT_LEN];
    long got = keel__b64_decode(0, s + at, n, tmp);
    if (got == -1)
        return keel_diag_set(diag, KEEL_EPARSE, at, "%s: invalid base64 character", name);
    if (got == -2)
        return keel_diag_set(diag, KEEL_EPARSE, at, "%s: impossible base64 length", name);
    if (got < 0)
        return keel_diag_set(diag, KEEL_EPARSE, at, "%s: non-canonical base64 (trailing bits)",
                             name);
    if ((size_t)got < min_len || (size_t)got > max_len)
        return keel_diag_set(diag, KEEL_ERANGE, at, "%s: length %ld outside %zu..%zu bytes",
                             name, got, min_len, max_len);
    memcpy(out, tmp, (size_t)got);
    *out_len = (size_t)got;
    *pos = at + n;
    return KEEL_OK;
}

keel_err keel__phc_parse(const char *phc, const keel__phc_caps *caps, keel__phc *out,
                         keel_diag *diag)
{
    static const keel__phc_caps public_caps = {KEEL_PASSWORD_MAX_MEMORY_KIB,
                                               KEEL_PASSWORD_MAX_ITERATIONS,
                                               KEEL_PASSWORD_MAX_PARALLELISM};
    if (phc == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "hash is NULL");
    if (caps == NULL)
        caps = &public_caps;
    memset(out, 0, sizeof(*out));
    if (strnlen(phc, KEEL_PASSWORD_PHC_SIZE) >= KEEL_PASSWORD_PHC_SIZE)
        return keel_diag_set(diag, KEEL_EPARSE, 0, "hash: longer than %u characters",
                             KEEL_PASSWORD_PHC_SIZE - 1u);
    size_t pos = 0;
    if (phc[0] != '$')
        return keel_diag_set(diag, KEEL_EPARSE, 0, "hash: not a PHC string (no leading '$')");
    pos = 1;
    size_t idlen = 0;
    while (phc[pos + idlen] != '\0' && phc[pos + idlen] != '$')
        idlen++;
    if (idlen == 8 && memcmp(phc + pos, "argon2id", 8) == 0)
        out->type = KEEL__PHC_ARGON2ID;
    else if (idlen == 7 && memcmp(phc + pos, "argon2i", 7) == 0)
        out->type = KEEL__PHC_ARGON2I;
    else if (idlen == 7 && memcmp(phc + pos, "argon2d", 7) == 0)
        out->type = KEEL__PHC_ARGON2D;
    else if (idlen == 0)
        return keel_diag_set(diag, KEEL_EPARSE, pos, "algorithm: missing");
    else
        return keel_diag_set(diag, KEEL_EUNSUPPORTED, pos,
                             "algorithm: not argon2id, argon2i or argon2d");
    pos += idlen;
    if (strncmp(phc + pos, "$m=", 3) == 0)
        return keel_diag_set(diag, KEEL_EUNSUPPORTED, pos,
                             "v: missing (version 16) not supported (19 only)");
    keel_err e = parse_param(phc, &pos, "$v=", "v", &out->version, diag);
    if (e != KEEL_OK)
        return e;
    if (out->version != ARGON2_VERSION_13)
        return keel_diag_set(diag, KEEL_EUNSUPPORTED, pos, "v: version %u not supported (19 only)",
                             out->version);
    size_t mpos = pos + 3;
    e = parse_param(phc, &pos, "$m=", "m", &out->m, diag);
    if (e != KEEL_OK)
        return e;
    size_t tpos = pos + 3;
    e = parse_param(phc, &pos, ",t=", "t", &out->t, diag);
    if (e != KEEL_OK)
        return e;
    size_t ppos = pos + 3;
    e = parse_param(phc, &pos, ",p=", "p", &out->p, diag);
    if (e != KEEL_OK)
        return e;
    if (out->p < 1 || out->p > caps->max_p)
        return keel_diag_set(diag, KEEL_ERANGE, ppos, "p: %u outside 1..%u", out->p, caps->max_p);
    if (out->t < 1 || out->t > caps->max_t)
        return keel_diag_set(diag, KEEL_ERANGE, tpos, "t: %u outside 1..%u", out->t, caps->max_t);
    if (out->m < 8u * out->p || out->m > caps->max_m)
        return keel_diag_set(diag, KEEL_ERANGE, mpos, "m: %u outside %u..%u KiB", out->m,
                             8u * out->p, caps->max_m);
    if (phc[pos] != '$')
        return keel_diag_set(diag, KEEL_EPARSE, pos, "salt: expected '$' after parameters");
    pos++;
    e = parse_b64_field(phc, &pos, "salt", KEEL_PASSWORD_MIN_SALT_LEN, KEEL_PASSWORD_MAX_SALT_LEN,
                        out->salt, &out->salt_len, diag);
    if (e != KEEL_OK)
        return e;
    if (phc[pos] != '$')
        return keel_diag_set(diag, KEEL_EPARSE, pos, "hash: missing");
    pos++;
    e = parse_b64_field(phc, &pos, "hash", KEEL_PASSWORD_MIN_HASH_LEN, KEEL_PASSWORD_MAX_HASH_LEN,
                        out->hash, &out->hash_len, diag);
    if (e != KEEL_OK)
        return e;
    if (phc[pos] != '\0')
        return keel_diag_set(diag, KEEL_EPARSE, pos, "hash: unexpected '$' after the hash");
    return KEEL_OK;
}

/* ------------------------------------------------------------ argon2 -- */

static int a2_alloc(uint8_t **memory, size_t n)
{
    *memory = keel_malloc(n);
    return *memory != NULL ? 0 : -1;
}

static void a2_free(uint8_t *memory, size_t n)
{
    KEEL_UNUSED(n); /* libargon2 has already wiped the blocks */
    keel_free(memory);
}

/* Compute the raw Argon2 tag of pw under the parameters and salt of h into tag (h->hash_len
 * bytes).  The password is copied into keel memory (libargon2 wants a mutable pointer) and
 * the copy is wiped. */
static keel_err argon2_raw(const keel__phc *h, const char *pw, size_t len, unsigned char *tag)
{
    unsigned char *pwc = keel_malloc(len > 0 ? len : 1);
    if (pwc == NULL)
        return KEEL_ENOMEM;
    if (len > 0)
        memcpy(pwc, pw, len);
    unsigned char salt[KEEL_PASSWORD_MAX_SALT_LEN];
    memcpy(salt, h->salt, h->salt_len);
    argon2_context c;
    memset(&c, 0, sizeof(c));
    c.out = tag;
    c.outlen = (uint32_t)h->hash_len;
    c.pwd = pwc;
    c.pwdlen = (uint32_t)len;
    c.salt = salt;
    c.saltlen = (uint32_t)h->salt_len;
    c.t_cost = h->t;
    c.m_cost = h->m;
    c.lanes = h->p;
    c.threads = 1; /* a library must not spawn threads on behalf of a request */
    c.version = h->version;
    c.allocate_cbk = a2_alloc;
    c.free_cbk = a2_free;
    c.flags = ARGON2_DEFAULT_FLAGS;
    argon2_type type = h->type == KEEL__PHC_ARGON2ID  ? Argon2_id
                       : h->type == KEEL__PHC_ARGON2I ? Argon2_i
                                                      : Argon2_d;
    int rc = argon2_ctx(&c, type);
    keel__wipe(pwc, len > 0 ? len : 1);
    keel_free(pwc);
    if (rc == ARGON2_OK)
        return KEEL_OK;
    keel__wipe(tag, h->hash_len);
    return rc == ARGON2_MEMORY_ALLOCATION_ERROR ? KEEL_ENOMEM : KEEL_ECRYPTO;
}

/* ------------------------------------------------------------- public -- */

void keel_password_params_default(keel_password_params *p)
{
    if (p == NULL)
        return;
    memset(p, 0, sizeof(*p));
    p->size = sizeof(*p);
    p->memory_kib = KEEL_PASSWORD_MEMORY_KIB_DEFAULT;
    p->iterations = KEEL_PASSWORD_ITERATIONS_DEFAULT;
    p->parallelism = KEEL_PASSWORD_PARALLELISM_DEFAULT;
    p->salt_len = KEEL_PASSWORD_SALT_LEN_DEFAULT;
    p->hash_len = KEEL_PASSWORD_HASH_LEN_DEFAULT;
}

/* Copy caller params (or the defaults) after checking the size field. */
static keel_err get_params(const keel_password_params *in, keel_password_params *p)
{
    keel_password_params_default(p);
    if (in == NULL)
        return KEEL_OK;
    if (in->size < sizeof(*p))
        return KEEL_EINVAL;
    *p = *in;
    return KEEL_OK;
}

keel_err keel_password_hash(const keel_password_params *params, const char *pw, size_t len,
                            char *out, size_t outsz)
{
    if (out != NULL && outsz > 0)
        out[0] = '\0';
    if (pw == NULL || out == NULL)
        return KEEL_EINVAL;
    keel_password_params p;
    if (get_params(params, &p) != KEEL_OK)
        return KEEL_EINVAL;
    if (len > KEEL_PASSWORD_MAX_LEN)
        return KEEL_ETOOBIG;
    if (p.parallelism < 1 || p.parallelism > KEEL_PASSWORD_MAX_PARALLELISM ||
        p.iterations < 1 || p.iterations > KEEL_PASSWORD_MAX_ITERATIONS ||
        p.memory_kib < 8u * p.parallelism || p.memory_kib > KEEL_PASSWORD_MAX_MEMORY_KIB ||
        p.salt_len < KEEL_PASSWORD_MIN_SALT_LEN || p.salt_len > KEEL_PASSWORD_MAX_SALT_LEN ||
        p.hash_len < KEEL_PASSWORD_MIN_HASH_LEN || p.hash_len > KEEL_PASSWORD_MAX_HASH_LEN)
        return KEEL_ERANGE;
    keel__phc h;
    memset(&h, 0, sizeof(h));
    h.type = KEEL__PHC_ARGON2ID;
    h.version = ARGON2_VERSION_13;
    h.m = p.memory_kib;
    h.t = p.iterations;
    h.p = p.parallelism;
    h.salt_len = p.salt_len;
    h.hash_len = p.hash_len;
    keel_err e = keel_random_bytes(h.salt, h.salt_len);
    if (e != KEEL_OK)
        return e;
    e = argon2_raw(&h, pw, len, h.hash);
    if (e != KEEL_OK)
        return e;
    char salt64[B64_MAX_CHARS + 1], hash64[B64_MAX_CHARS + 1];
    keel__b64_encode(0, h.salt, h.salt_len, salt64);
    keel__b64_encode(0, h.hash, h.hash_len, hash64);
    int n = snprintf(out, outsz, "$argon2id$v=%u$m=%u,t=%u,p=%u$%s$%s", h.version, h.m, h.t, h.p,
                     salt64, hash64);
    keel__wipe(&h, sizeof(h));
    if (n < 0 || (size_t)n >= outsz) {
        if (outsz > 0)
            out[0] = '\0';
        return KEEL_ETOOBIG;
    }
    return KEEL_OK;
}

keel_err keel__password_verify_caps(const char *phc, const char *pw, size_t len,
                                    const keel__phc_caps *caps, keel_diag *diag)
{
    if (phc == NULL || pw == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "hash or password is NULL");
    if (len > KEEL_PASSWORD_MAX_LEN)
        return keel_diag_set(diag, KEEL_ETOOBIG, 0, "password longer than %u bytes",
                             KEEL_PASSWORD_MAX_LEN);
    keel__phc h;
    keel_err e = keel__phc_parse(phc, caps, &h, diag);
    if (e != KEEL_OK)
        return e;
    if (h.type == KEEL__PHC_ARGON2D)
        return keel_diag_set(diag, KEEL_EUNSUPPORTED, 1,
                             "algorithm: argon2d is not accepted for passwords");
    unsigned char tag[KEEL_PASSWORD_MAX_HASH_LEN];
    e = argon2_raw(&h, pw, len, tag);
    if (e != KEEL_OK)
        return keel_diag_set(diag, e, 0, "argon2 computation failed");
    int same = keel_ct_equal(tag, h.hash, h.hash_len);
    keel__wipe(tag, sizeof(tag));
    if (!same)
        return keel_diag_set(diag, KEEL_EDENIED, 0, "password does not match");
    if (diag != NULL)
        memset(diag, 0, sizeof(*diag));
    return KEEL_OK;
}

keel_err keel_password_verify(const char *phc, const char *pw, size_t len, keel_diag *diag)
{
    return keel__password_verify_caps(phc, pw, len, NULL, diag);
}

keel_err keel_password_needs_rehash(const char *phc, const keel_password_params *current,
                                    int *out, keel_diag *diag)
{
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "out is NULL");
    *out = 0;
    keel_password_params p;
    if (get_params(current, &p) != KEEL_OK)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "current->size too small");
    keel__phc h;
    keel_err e = keel__phc_parse(phc, NULL, &h, diag);
    if (e != KEEL_OK)
        return e;
    *out = h.type != KEEL__PHC_ARGON2ID || h.m < p.memory_kib || h.t < p.iterations ||
           h.p < p.parallelism || h.salt_len < p.salt_len || h.hash_len < p.hash_len;
    return KEEL_OK;
}

/* --------------------------------------------------------- token hash -- */

static keel_err token_mac(const keel_secret *key, const void *token, size_t len,
                          char out[KEEL_TOKEN_HASH_SIZE])
{
    if (key == NULL || out == NULL || (token == NULL && len > 0))
        return KEEL_EINVAL;
    size_t klen = keel_secret_len(key);
    if (klen == 0 || klen > INT_MAX)
        return KEEL_EINVAL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const unsigned char empty[1] = {0};
    if (HMAC(EVP_sha256(), keel__secret_bytes(key), (int)klen,
             len > 0 ? (const unsigned char *)token : empty, len, md, &mdlen) == NULL ||
        mdlen != 32)
        return KEEL_ECRYPTO;
    keel__hex_encode(md, 32, out);
    keel__wipe(md, sizeof(md));
    return KEEL_OK;
}

keel_err keel_token_hash(const keel_secret *key, const void *token, size_t len,
                         char out[KEEL_TOKEN_HASH_SIZE])
{
    if (out != NULL)
        out[0] = '\0';
    return token_mac(key, token, len, out);
}

keel_err keel_token_verify(const keel_secret *key, const void *token, size_t len,
                           const char *stored_hex)
{
    if (stored_hex == NULL)
        return KEEL_EINVAL;
    char mine[KEEL_TOKEN_HASH_SIZE];
    keel_err e = token_mac(key, token, len, mine);
    if (e != KEEL_OK)
        return e;
    /* The length of a stored hash is public; its content is compared in constant time. */
    int same = strnlen(stored_hex, KEEL_TOKEN_HASH_SIZE) == KEEL_TOKEN_HASH_SIZE - 1 &&
               keel_ct_equal(mine, stored_hex, KEEL_TOKEN_HASH_SIZE - 1);
    keel__wipe(mine, sizeof(mine));
    return same ? KEEL_OK : KEEL_EDENIED;
}
