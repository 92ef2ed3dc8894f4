/* jwt.c - JWS compact tokens (HS256, RS256, ES256) on OpenSSL EVP, with RFC 7519 claim
 * validation and the RFC 8725 rules: the algorithm comes from the caller's policy, never
 * from the token, "none" does not exist, and each key serves exactly one algorithm.
 *
 * Why not Debian's libjwt 1.10: it verifies with whatever alg the header names, has no
 * claim validation or leeway and rejects any typ other than "JWT"; wrapping it safely
 * would take more code than the three signature schemes do here. */
#include "keel_int.h"

#include <keel/jwt.h>

#include <limits.h>
#include <stdio.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "jwt_int.h"

#define JWT_MAX_KEYS 64u
#define JWT_HS_MAX_SECRET 4096u
#define JWT_PEM_FILE_MAX (64u * 1024u)
#define JWT_JSON_MAX (48u * 1024u) /* largest header or payload JSON we produce */
#define ES256_COORD 32u

/* ------------------------------------------------------------- base64url -- */

/* Thin names over the core codec (src/core/base64.c); the tests use them too. */
size_t keel__b64url_encoded_len(size_t n)
{
    return keel__b64_encoded_len(n);
}

size_t keel__b64url_encode(const unsigned char *in, size_t n, char *out)
{
    return keel__b64_encode(1, in, n, out);
}

int keel__b64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len)
{
    long n = keel__b64_decode(1, in, len, out);
    if (n < 0)
        return -1;
    *out_len = (size_t)n;
    return 0;
}

/* ------------------------------------------------------------ algorithms -- */

keel_err keel_jwt_alg_parse(const char *name, keel_jwt_alg *out)
{
    if (name == NULL || out == NULL)
        return KEEL_EINVAL;
    /* Exact, case-sensitive comparison: "none", "None", "hs256" are all rejected. */
    if (strcmp(name, "HS256") == 0)
        *out = KEEL_JWT_HS256;
    else if (strcmp(name, "RS256") == 0)
        *out = KEEL_JWT_RS256;
    else if (strcmp(name, "ES256") == 0)
        *out = KEEL_JWT_ES256;
    else
        return KEEL_EUNSUPPORTED;
    return KEEL_OK;
}

const char *keel_jwt_alg_name(keel_jwt_alg alg)
{
    switch (alg) {
    case KEEL_JWT_HS256:
        return "HS256";
    case KEEL_JWT_RS256:
        return "RS256";
    case KEEL_JWT_ES256:
        return "ES256";
    case KEEL_JWT_ALG_INVALID:
    default:
        return NULL;
    }
}

/* ---------------------------------------------------------------- keyset -- */

/* HS256 keys keep the SHA-256 states after absorbing the key XOR ipad and XOR opad blocks
 * (RFC 2104: HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m))).  A MAC copies the two
 * states and hashes only the message and the inner digest: exactly HMAC-SHA256, with no
 * allocation, no provider lookup and no context duplication per token.  The states are
 * key-equivalent secrets: they live only in the keyset and are wiped with it. */
typedef struct hs_state {
    SHA256_CTX inner, outer;
} hs_state;

typedef struct jwt_key {
    keel_jwt_alg alg;
    unsigned usage;
    char *kid;           /* NULL: no kid */
    keel_secret *secret; /* HS256 */
    hs_state *hs;        /* HS256: pad states, keyed once */
    EVP_PKEY *pkey;      /* RS256 / ES256 */
} jwt_key;

/* The SHA256_* functions are deprecated in OpenSSL 3 in favour of EVP, but EVP has no way
 * to copy a digest state without allocating; they stay available through 3.x. */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

#define HS_BLOCK 64u

static hs_state *hmac_keyed(const unsigned char *key, size_t len)
{
    hs_state *st = keel_malloc(sizeof(*st));
    if (st == NULL)
        return NULL;
    unsigned char k[HS_BLOCK], pad[HS_BLOCK];
    memset(k, 0, sizeof(k));
    if (len > HS_BLOCK) /* longer keys are hashed first (RFC 2104 section 2) */
        SHA256(key, len, k);
    else
        memcpy(k, key, len);
    int ok = 1;
    for (size_t i = 0; i < HS_BLOCK; i++)
        pad[i] = (unsigned char)(k[i] ^ 0x36u);
    ok &= SHA256_Init(&st->inner) == 1 && SHA256_Update(&st->inner, pad, HS_BLOCK) == 1;
    for (size_t i = 0; i < HS_BLOCK; i++)
        pad[i] = (unsigned char)(k[i] ^ 0x5cu);
    ok &= SHA256_Init(&st->outer) == 1 && SHA256_Update(&st->outer, pad, HS_BLOCK) == 1;
    keel__wipe(k, sizeof(k));
    keel__wipe(pad, sizeof(pad));
    if (!ok) {
        keel__wipe(st, sizeof(*st));
        keel_free(st);
        return NULL;
    }
    return st;
}

static void hmac_free(hs_state *st)
{
    if (st == NULL)
        return;
    keel__wipe(st, sizeof(*st));
    keel_free(st);
}

static int hmac_sha256(const hs_state *st, const unsigned char *msg, size_t n,
                       unsigned char out[SHA256_DIGEST_LENGTH], unsigned int *outlen)
{
    SHA256_CTX c = st->inner;
    unsigned char ih[SHA256_DIGEST_LENGTH];
    int ok = SHA256_Update(&c, msg, n) == 1 && SHA256_Final(ih, &c) == 1;
    c = st->outer;
    ok = ok && SHA256_Update(&c, ih, sizeof(ih)) == 1 && SHA256_Final(out, &c) == 1;
    keel__wipe(&c, sizeof(c));
    keel__wipe(ih, sizeof(ih));
    *outlen = ok ? SHA256_DIGEST_LENGTH : 0;
    return ok;
}

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif

struct keel_jwt_keyset {
    jwt_key keys[JWT_MAX_KEYS];
    size_t n;
    size_t sign; /* index of the signing key, or JWT_MAX_KEYS when none */
};

keel_err keel_jwt_keyset_create(keel_jwt_keyset **out)
{
    if (out == NULL)
        return KEEL_EINVAL;
    keel_jwt_keyset *ks = keel__new(keel_jwt_keyset);
    if (ks == NULL)
        return KEEL_ENOMEM;
    ks->sign = JWT_MAX_KEYS;
    *out = ks;
    return KEEL_OK;
}

void keel_jwt_keyset_destroy(keel_jwt_keyset *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->n; i++) {
        keel_free(ks->keys[i].kid);
        keel_secret_destroy(ks->keys[i].secret);
        hmac_free(ks->keys[i].hs);
        EVP_PKEY_free(ks->keys[i].pkey);
    }
    keel_free(ks);
}

int keel__jwt_keyset_key(const keel_jwt_keyset *ks, size_t i, keel_jwt_alg *alg,
                         const char **kid, unsigned *usage, const EVP_PKEY **pkey)
{
    if (ks == NULL || i >= ks->n)
        return -1;
    const jwt_key *k = &ks->keys[i];
    *alg = k->alg;
    *kid = k->kid;
    *usage = k->usage;
    *pkey = k->pkey;
    return 0;
}

static int kid_valid(const char *kid)
{
    size_t n = strlen(kid);
    if (n == 0 || n > KEEL_JWT_KID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (kid[i] < 0x21 || kid[i] > 0x7e)
            return 0;
    return 1;
}

/* Validate the common arguments and reserve a slot; fills alg/usage/kid. */
static keel_err key_begin(keel_jwt_keyset *ks, keel_jwt_alg alg, const char *kid, unsigned usage,
                          jwt_key **out)
{
    if (ks == NULL || keel_jwt_alg_name(alg) == NULL || usage == 0 ||
        (usage & ~(KEEL_JWT_KEY_SIGN | KEEL_JWT_KEY_VERIFY)) != 0)
        return KEEL_EINVAL;
    if (kid != NULL && !kid_valid(kid))
        return KEEL_EINVAL;
    if (ks->n >= JWT_MAX_KEYS)
        return KEEL_EFULL;
    if (usage & KEEL_JWT_KEY_VERIFY) {
        for (size_t i = 0; i < ks->n; i++) {
            const jwt_key *k = &ks->keys[i];
            if ((k->usage & KEEL_JWT_KEY_VERIFY) && k->alg == alg && kid != NULL &&
                k->kid != NULL && strcmp(k->kid, kid) == 0)
                return KEEL_EEXIST;
        }
    }
    jwt_key *k = &ks->keys[ks->n];
    memset(k, 0, sizeof(*k));
    k->alg = alg;
    k->usage = usage;
    if (kid != NULL && (k->kid = keel_strdup(kid)) == NULL)
        return KEEL_ENOMEM;
    *out = k;
    return KEEL_OK;
}

static void key_commit(keel_jwt_keyset *ks)
{
    if (ks->keys[ks->n].usage & KEEL_JWT_KEY_SIGN)
        ks->sign = ks->n;
    ks->n++;
}

keel_err keel_jwt_keyset_add_hmac(keel_jwt_keyset *ks, const char *kid, const void *secret,
                                  size_t len, unsigned usage)
{
    if (secret == NULL || len < KEEL_JWT_HS_MIN_SECRET || len > JWT_HS_MAX_SECRET)
        return KEEL_EINVAL;
    jwt_key *k;
    keel_err e = key_begin(ks, KEEL_JWT_HS256, kid, usage, &k);
    if (e != KEEL_OK)
        return e;
    if (keel_secret_create(&k->secret, secret, len) != KEEL_OK ||
        (k->hs = hmac_keyed(secret, len)) == NULL) {
        keel_secret_destroy(k->secret);
        k->secret = NULL;
        keel_free(k->kid);
        k->kid = NULL;
        return KEEL_ENOMEM;
    }
    key_commit(ks);
    return KEEL_OK;
}

/* Never prompt for a passphrase: encrypted keys are not supported. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

static keel_err key_fits_alg(EVP_PKEY *pkey, keel_jwt_alg alg)
{
    if (alg == KEEL_JWT_RS256) {
        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pkey) < 2048)
            return KEEL_EUNSUPPORTED;
        return KEEL_OK;
    }
    if (alg == KEEL_JWT_ES256) {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC ||
            EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof(group), &glen) != 1)
            return KEEL_EUNSUPPORTED;
        if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
            return KEEL_EUNSUPPORTED;
        return KEEL_OK;
    }
    return KEEL_EINVAL;
}

keel_err keel_jwt_keyset_add_pem(keel_jwt_keyset *ks, keel_jwt_alg alg, const char *kid,
                                 const char *pem, size_t len, unsigned usage)
{
    if (pem == NULL || len == 0 || len > INT_MAX || alg == KEEL_JWT_HS256)
        return KEEL_EINVAL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return KEEL_ENOMEM;
    int is_private = 1;
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    if (pkey == NULL) {
        is_private = 0;
        (void)BIO_reset(bio);
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    }
    BIO_free(bio);
    ERR_clear_error();
    if (pkey == NULL)
        return KEEL_EPARSE;
    keel_err e = key_fits_alg(pkey, alg);
    if (e == KEEL_OK && (usage & KEEL_JWT_KEY_SIGN) && !is_private)
        e = KEEL_EINVAL;
    jwt_key *k = NULL;
    if (e == KEEL_OK)
        e = key_begin(ks, alg, kid, usage, &k);
    if (e != KEEL_OK) {
        EVP_PKEY_free(pkey);
        return e;
    }
    k->pkey = pkey;
    key_commit(ks);
    return KEEL_OK;
}

keel_err keel_jwt_keyset_add_pem_file(keel_jwt_keyset *ks, keel_jwt_alg alg, const char *kid,
                                      const char *path, unsigned usage)
{
    if (path == NULL)
        return KEEL_EINVAL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return KEEL_EIO;
    char *buf = keel_malloc(JWT_PEM_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return KEEL_ENOMEM;
    }
    size_t n = fread(buf, 1, JWT_PEM_FILE_MAX + 1, f);
    int failed = ferror(f);
    fclose(f);
    keel_err e;
    if (failed)
        e = KEEL_EIO;
    else if (n > JWT_PEM_FILE_MAX)
        e = KEEL_ETOOBIG;
    else
        e = keel_jwt_keyset_add_pem(ks, alg, kid, buf, n, usage);
    keel__wipe(buf, n < JWT_PEM_FILE_MAX ? n : JWT_PEM_FILE_MAX);
    keel_free(buf);
    return e;
}

/* ------------------------------------------------------------ signatures -- */

/* Compute the JWS signature of msg with key k into sig (room for 512 bytes). */
#define JWT_SIG_MAX 512u

static keel_err pkey_sign(EVP_PKEY *pkey, const unsigned char *msg, size_t n, unsigned char *sig,
                          size_t *siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return KEEL_ENOMEM;
    keel_err e = KEEL_ECRYPTO;
    *siglen = JWT_SIG_MAX;
    if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
        EVP_DigestSign(ctx, sig, siglen, msg, n) == 1)
        e = KEEL_OK;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return e;
}

static int pkey_verify(EVP_PKEY *pkey, const unsigned char *msg, size_t n,
                       const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return -1;
    int ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestVerify(ctx, sig, siglen, msg, n) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

static keel_err jws_sign(const jwt_key *k, const unsigned char *msg, size_t n, unsigned char *sig,
                         size_t *siglen)
{
    if (k->alg == KEEL_JWT_HS256) {
        unsigned int mdlen = 0;
        if (!hmac_sha256(k->hs, msg, n, sig, &mdlen))
            return KEEL_ECRYPTO;
        *siglen = mdlen;
        return KEEL_OK;
    }
    if (k->alg == KEEL_JWT_RS256)
        return pkey_sign(k->pkey, msg, n, sig, siglen);
    /* ES256: OpenSSL gives DER; JWS wants the raw 32-byte R and S (RFC 7518 §3.4). */
    unsigned char der[JWT_SIG_MAX];
    size_t derlen = 0;
    keel_err e = pkey_sign(k->pkey, msg, n, der, &derlen);
    if (e != KEEL_OK)
        return e;
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (es == NULL)
        return KEEL_ECRYPTO;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(es, &r, &s);
    e = KEEL_OK;
    if (BN_bn2binpad(r, sig, ES256_COORD) != ES256_COORD ||
        BN_bn2binpad(s, sig + ES256_COORD, ES256_COORD) != ES256_COORD)
        e = KEEL_ECRYPTO;
    ECDSA_SIG_free(es);
    *siglen = 2 * ES256_COORD;
    return e;
}

/* 1 valid, 0 invalid, -1 resource failure. */
static int jws_verify(const jwt_key *k, const unsigned char *msg, size_t n,
                      const unsigned char *sig, size_t siglen)
{
    if (k->alg == KEEL_JWT_HS256) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (!hmac_sha256(k->hs, msg, n, mac, &mdlen))
            return -1;
        int ok = siglen == mdlen && CRYPTO_memcmp(mac, sig, mdlen) == 0;
        keel__wipe(mac, sizeof(mac));
        return ok;
    }
    if (k->alg == KEEL_JWT_RS256)
        return pkey_verify(k->pkey, msg, n, sig, siglen);
    if (siglen != 2 * ES256_COORD)
        return 0;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, ES256_COORD, NULL);
    BIGNUM *s = BN_bin2bn(sig + ES256_COORD, ES256_COORD, NULL);
    if (es == NULL || r == NULL || s == NULL) {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return -1;
    }
    ECDSA_SIG_set0(es, r, s); /* es owns r and s now */
    unsigned char der[JWT_SIG_MAX];
    unsigned char *p = der;
    int ok = -1;
    int derlen = i2d_ECDSA_SIG(es, NULL);
    if (derlen > 0 && (size_t)derlen <= sizeof(der) && i2d_ECDSA_SIG(es, &p) == derlen)
        ok = pkey_verify(k->pkey, msg, n, der, (size_t)derlen);
    ECDSA_SIG_free(es);
    ERR_clear_error();
    return ok;
}

/* ------------------------------------------------------------------ sign -- */

typedef struct dump_state {
    keel_buf buf;
    keel_err err;
} dump_state;

static int dump_cb(const char *buffer, size_t size, void *data)
{
    dump_state *st = data;
    st->err = keel_buf_append(&st->buf, buffer, size);
    return st->err == KEEL_OK ? 0 : -1;
}

/* Append base64url(JSON of v) to out. */
static keel_err append_json_b64(keel_buf *out, const json_t *v)
{
    dump_state st = {.err = KEEL_OK};
    keel_buf_init(&st.buf, JWT_JSON_MAX);
    if (json_dump_callback(v, dump_cb, &st, JSON_COMPACT) != 0) {
        /* jansson fails without calling us only when its own allocations fail. */
        keel_err e = st.err != KEEL_OK ? st.err : KEEL_ENOMEM;
        keel_buf_cleanup(&st.buf);
        return e;
    }
    keel_buf js = st.buf;
    size_t need = keel__b64url_encoded_len(js.len);
    char *enc = keel_malloc(need + 1);
    if (enc == NULL) {
        keel_buf_cleanup(&js);
        return KEEL_ENOMEM;
    }
    keel__b64url_encode((const unsigned char *)js.ptr, js.len, enc);
    keel_err e = keel_buf_append(out, enc, need);
    keel_free(enc);
    keel_buf_cleanup(&js);
    return e;
}

keel_err keel_jwt_sign(const keel_jwt_keyset *ks, const json_t *claims, char **out_token)
{
    if (ks == NULL || claims == NULL || out_token == NULL || !json_is_object(claims))
        return KEEL_EINVAL;
    *out_token = NULL;
    if (ks->sign >= ks->n)
        return KEEL_ESTATE;
    const jwt_key *k = &ks->keys[ks->sign];
    json_t *hdr = json_object();
    if (hdr == NULL)
        return KEEL_ENOMEM;
    if (json_object_set_new(hdr, "alg", json_string(keel_jwt_alg_name(k->alg))) != 0 ||
        json_object_set_new(hdr, "typ", json_string("JWT")) != 0 ||
        (k->kid != NULL && json_object_set_new(hdr, "kid", json_string(k->kid)) != 0)) {
        json_decref(hdr);
        return KEEL_ENOMEM;
    }
    keel_buf tok;
    keel_buf_init(&tok, KEEL_JWT_MAX_LEN_LIMIT);
    keel_err e = append_json_b64(&tok, hdr);
    json_decref(hdr);
    if (e == KEEL_OK)
        e = keel_buf_append_char(&tok, '.');
    if (e == KEEL_OK)
        e = append_json_b64(&tok, claims);
    unsigned char sig[JWT_SIG_MAX];
    size_t siglen = 0;
    if (e == KEEL_OK)
        e = jws_sign(k, (const unsigned char *)tok.ptr, tok.len, sig, &siglen);
    if (e == KEEL_OK)
        e = keel_buf_append_char(&tok, '.');
    if (e == KEEL_OK) {
        char enc[JWT_SIG_MAX * 2];
        size_t n = keel__b64url_encode(sig, siglen, enc);
        e = keel_buf_append(&tok, enc, n);
    }
    if (e != KEEL_OK) {
        keel_buf_cleanup(&tok);
        return e;
    }
    size_t n;
    *out_token = keel_buf_take(&tok, &n);
    return *out_token != NULL ? KEEL_OK : KEEL_ENOMEM;
}

/* ---------------------------------------------------------------- verify -- */

void keel_jwt_policy_default(keel_jwt_policy *p)
{
    if (p == NULL)
        return;
    memset(p, 0, sizeof(*p));
    p->size = sizeof(*p);
    p->alg = KEEL_JWT_HS256;
    p->leeway_s = KEEL_JWT_LEEWAY_DEFAULT;
    p->require_exp = 1;
    p->max_len = KEEL_JWT_MAX_LEN_DEFAULT;
}

/* ------------------------------------------------------- JSON fast path -- */

/* Every verify parses the payload (and, on a header-memo miss, the header), and jansson's
 * loader spent ~60 % of a verify reading it one character at a time through a callback.
 * fj_* parses the shapes our tokens are made of directly into jansson values: objects,
 * arrays, strings of printable ASCII with the short escapes, integers of up to 18 digits,
 * true/false/null.  Anything else -- \u escapes, non-ASCII bytes, reals, long integers,
 * duplicate keys, syntax errors, deep nesting, allocation failures -- returns NULL and the
 * caller hands the same bytes to json_loadb(JSON_REJECT_DUPLICATES), so what is accepted,
 * the values produced and every error are jansson's: the fast path only ever accepts a
 * document that jansson would accept with an equal value. */
#define FJ_MAX_DEPTH 32
#define FJ_UNESCAPE_MAX 256

typedef struct fj {
    const char *p, *end;
} fj;

static void fj_ws(fj *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* At an opening quote: the string's bytes, unescaped into buf when needed.  Returns the
 * length and sets *out (into the input or buf), or -1 to defer to jansson. */
static long fj_string(fj *s, char *buf, const char **out)
{
    const char *start = ++s->p;
    const char *q = start;
    while (q < s->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20 &&
           (unsigned char)*q < 0x80)
        q++;
    if (q < s->end && *q == '"') { /* no escapes: the common case */
        s->p = q + 1;
        *out = start;
        return (long)(q - start);
    }
    size_t n = 0;
    for (q = start; q < s->end; q++) {
        unsigned char c = (unsigned char)*q;
        if (c == '"') {
            s->p = q + 1;
            *out = buf;
            return (long)n;
        }
        if (c < 0x20 || c >= 0x80 || n == FJ_UNESCAPE_MAX)
            return -1;
        if (c == '\\') {
            if (++q == s->end)
                return -1;
            switch (*q) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            default: return -1; /* \u and invalid escapes: jansson */
            }
        }
        buf[n++] = (char)c;
    }
    return -1;
}

static json_t *fj_value(fj *s, int depth);

static json_t *fj_object(fj *s, int depth)
{
    json_t *obj = json_object();
    if (obj == NULL)
        return NULL;
    s->p++; /* '{' */
    fj_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return obj;
    }
    char buf[FJ_UNESCAPE_MAX];
    for (;;) {
        const char *key;
        long klen;
        if (s->p == s->end || *s->p != '"' || (klen = fj_string(s, buf, &key)) < 0)
            break;
        fj_ws(s);
        if (s->p == s->end || *s->p != ':')
            break;
        s->p++;
        fj_ws(s);
        size_t before = json_object_size(obj);
        json_t *v = fj_value(s, depth + 1);
        /* setn_new_nocheck: the key is printable ASCII; it consumes v even on failure.  A
         * size that did not grow means the key was already there: a duplicate. */
        if (v == NULL || json_object_setn_new_nocheck(obj, key, (size_t)klen, v) != 0 ||
            json_object_size(obj) != before + 1)
            break;
        fj_ws(s);
        if (s->p == s->end)
            break;
        if (*s->p == '}') {
            s->p++;
            return obj;
        }
        if (*s->p != ',')
            break;
        s->p++;
        fj_ws(s);
    }
    json_decref(obj);
    return NULL;
}

static json_t *fj_array(fj *s, int depth)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return NULL;
    s->p++; /* '[' */
    fj_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return arr;
    }
    for (;;) {
        json_t *v = fj_value(s, depth + 1);
        if (v == NULL || json_array_append_new(arr, v) != 0)
            break;
        fj_ws(s);
        if (s->p == s->end)
            break;
        if (*s->p == ']') {
            s->p++;
            return arr;
        }
        if (*s->p != ',')
            break;
        s->p++;
        fj_ws(s);
    }
    json_decref(arr);
    return NULL;
}

static json_t *fj_integer(fj *s)
{
    const char *q = s->p;
    int neg = 0;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    const char *digits = q;
    uint64_t v = 0;
    while (q < s->end && *q >= '0' && *q <= '9' && q - digits < 19) {
        v = v * 10u + (uint64_t)(*q - '0');
        q++;
    }
    size_t nd = (size_t)(q - digits);
    /* No digit, a leading zero, more than 18 digits, or a fraction/exponent (a real):
     * jansson decides. */
    if (nd == 0 || nd > 18 || (nd > 1 && *digits == '0') ||
        (q < s->end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E')))
        return NULL;
    s->p = q;
    json_int_t i = (json_int_t)v; /* < 10^18: fits */
    return json_integer(neg ? -i : i);
}

static int fj_literal(fj *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return 0;
    s->p += n;
    return 1;
}

static json_t *fj_value(fj *s, int depth)
{
    if (s->p == s->end || depth > FJ_MAX_DEPTH)
        return NULL;
    switch (*s->p) {
    case '{':
        return fj_object(s, depth);
    case '[':
        return fj_array(s, depth);
    case '"': {
        char buf[FJ_UNESCAPE_MAX];
        const char *str;
        long n = fj_string(s, buf, &str);
        return n < 0 ? NULL : json_stringn_nocheck(str, (size_t)n);
    }
    case 't':
        return fj_literal(s, "true", 4) ? json_true() : NULL;
    case 'f':
        return fj_literal(s, "false", 5) ? json_false() : NULL;
    case 'n':
        return fj_literal(s, "null", 4) ? json_null() : NULL;
    default:
        return fj_integer(s);
    }
}

/* A JSON object exactly as json_loadb(JSON_REJECT_DUPLICATES) would return it, or NULL
 * when this parser is not sure (the caller then asks jansson). */
static json_t *fj_parse_object(const char *js, size_t n)
{
    fj s = {js, js + n};
    fj_ws(&s);
    if (s.p == s.end || *s.p != '{')
        return NULL;
    json_t *v = fj_object(&s, 1);
    if (v == NULL)
        return NULL;
    fj_ws(&s);
    if (s.p != s.end) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/* Decode one base64url segment and parse it as a JSON object (duplicates rejected). */
#define DECODE_STACK 2048u
static keel_err decode_object(const char *seg, size_t len, const char *what, json_t **out,
                              keel_diag *diag)
{
    unsigned char stack[DECODE_STACK];
    size_t need = len * 3 / 4 + 1;
    unsigned char *raw = need <= sizeof(stack) ? stack : keel_malloc(need);
    if (raw == NULL)
        return KEEL_ENOMEM;
    size_t n = 0;
    if (keel__b64url_decode(seg, len, raw, &n) != 0) {
        if (raw != stack)
            keel_free(raw);
        return keel_diag_set(diag, KEEL_EPARSE, 0, "%s is not base64url", what);
    }
    json_t *v = fj_parse_object((const char *)raw, n);
    if (v != NULL) {
        if (raw != stack)
            keel_free(raw);
        *out = v;
        return KEEL_OK;
    }
    json_error_t jerr;
    memset(&jerr, 0, sizeof(jerr)); /* jansson leaves it untouched when lex_init fails */
    v = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, &jerr);
    if (raw != stack)
        keel_free(raw);
    if (v == NULL) {
        enum json_error_code code = json_error_code(&jerr);
        /* jansson reports a failed lexer allocation as an unknown error without text. */
        if (code == json_error_out_of_memory || (code == json_error_unknown && jerr.text[0] == 0))
            return keel_diag_set(diag, KEEL_ENOMEM, 0, "out of memory");
        if (code == json_error_duplicate_key)
            return keel_diag_set(diag, KEEL_EPARSE, 0, "%s has duplicate keys", what);
        return keel_diag_set(diag, KEEL_EPARSE, 0, "%s is not valid JSON", what);
    }
    if (!json_is_object(v)) {
        json_decref(v);
        return keel_diag_set(diag, KEEL_EPARSE, 0, "%s is not a JSON object", what);
    }
    *out = v;
    return KEEL_OK;
}

/* Optional NumericDate claim: 0 absent, 1 present (*out set), -1 not a number. */
static int numeric_claim(const json_t *claims, const char *name, double *out)
{
    const json_t *v = json_object_get(claims, name);
    if (v == NULL)
        return 0;
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return 1;
}

static keel_err check_claims(const keel_jwt_policy *p, const json_t *c, uint64_t now_s,
                             keel_diag *diag)
{
    double now = (double)now_s, leeway = (double)p->leeway_s, t = 0;
    int r = numeric_claim(c, "exp", &t);
    if (r < 0)
        return keel_diag_set(diag, KEEL_EDENIED, 0, "exp claim is not a number");
    if (r == 0 && p->require_exp)
        return keel_diag_set(diag, KEEL_EDENIED, 0, "exp claim missing");
    if (r == 1 && now >= t + leeway)
        return keel_diag_set(diag, KEEL_EDENIED, 0, "token expired");
    r = numeric_claim(c, "nbf", &t);
    if (r < 0)
        return keel_diag_set(diag, KEEL_EDENIED, 0, "nbf claim is not a number");
    if (r == 1 && now + leeway < t)
        return keel_diag_set(diag, KEEL_EDENIED, 0, "token not yet valid");
    if (numeric_claim(c, "iat", &t) < 0)
        return keel_diag_set(diag, KEEL_EDENIED, 0, "iat claim is not a number");
    if (p->iss != NULL) {
        const char *iss = json_string_value(json_object_get(c, "iss"));
        if (iss == NULL || strcmp(iss, p->iss) != 0)
            return keel_diag_set(diag, KEEL_EDENIED, 0, "issuer mismatch");
    }
    if (p->aud != NULL) {
        const json_t *aud = json_object_get(c, "aud");
        int found = 0;
        if (json_is_string(aud)) {
            found = strcmp(json_string_value(aud), p->aud) == 0;
        } else if (json_is_array(aud)) {
            for (size_t i = 0; i < json_array_size(aud) && !found; i++) {
                const char *a = json_string_value(json_array_get(aud, i));
                found = a != NULL && strcmp(a, p->aud) == 0;
            }
        }
        if (!found)
            return keel_diag_set(diag, KEEL_EDENIED, 0, "audience mismatch");
    }
    if (p->type != NULL) {
        const char *type = json_string_value(json_object_get(c, "type"));
        if (type == NULL || strcmp(type, p->type) != 0)
            return keel_diag_set(diag, KEEL_EDENIED, 0, "type mismatch");
    }
    return KEEL_OK;
}

static keel_err check_policy(const keel_jwt_policy *p)
{
    if (p->size < sizeof(*p) || keel_jwt_alg_name(p->alg) == NULL ||
        p->leeway_s > KEEL_JWT_LEEWAY_MAX || p->max_len == 0 ||
        p->max_len > KEEL_JWT_MAX_LEN_LIMIT)
        return KEEL_EINVAL;
    return KEEL_OK;
}

/* Check the header: pinned alg, no crit, well-typed kid/typ.  *kid is borrowed from hdr. */
static keel_err check_header(const keel_jwt_policy *p, const json_t *hdr, const char **kid,
                             keel_diag *diag)
{
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (alg == NULL)
        return keel_diag_set(diag, KEEL_EDENIED, 0, "alg header missing");
    if (strcmp(alg, keel_jwt_alg_name(p->alg)) != 0)
        return keel_diag_set(diag, KEEL_EDENIED, 0, "alg mismatch");
    if (json_object_get(hdr, "crit") != NULL)
        return keel_diag_set(diag, KEEL_EDENIED, 0, "unsupported crit header");
    const json_t *typ = json_object_get(hdr, "typ");
    if (typ != NULL && !json_is_string(typ))
        return keel_diag_set(diag, KEEL_EDENIED, 0, "typ header is not a string");
    const json_t *k = json_object_get(hdr, "kid");
    *kid = NULL;
    if (k != NULL) {
        if (!json_is_string(k) || json_string_length(k) == 0 ||
            json_string_length(k) > KEEL_JWT_KID_MAX)
            return keel_diag_set(diag, KEEL_EDENIED, 0, "invalid kid header");
        *kid = json_string_value(k);
    }
    return KEEL_OK;
}

/* The header segment of a keyset's tokens is nearly always the same bytes ({"alg","typ","kid"}),
 * so each thread remembers the last header segment that passed check_header() for a pinned
 * algorithm, and the kid it named.  Byte-identical input gives an identical parse, so the
 * memo only skips repeated work; it holds no secret and no verdict on the signature. */
#define HDR_MEMO_MAX 256
#define HDR_MEMO_KID 128
static _Thread_local struct {
    size_t len;
    keel_jwt_alg alg;
    int has_kid;
    char seg[HDR_MEMO_MAX];
    char kid[HDR_MEMO_KID + 1];
} tl_hdr;

static int hdr_memo_hit(const char *seg, size_t len, keel_jwt_alg alg, const char **kid)
{
    if (len == 0 || len != tl_hdr.len || alg != tl_hdr.alg || memcmp(seg, tl_hdr.seg, len) != 0)
        return 0;
    *kid = tl_hdr.has_kid ? tl_hdr.kid : NULL;
    return 1;
}

static void hdr_memo_store(const char *seg, size_t len, keel_jwt_alg alg, const char *kid)
{
    size_t kl = kid ? strlen(kid) : 0;
    if (len > HDR_MEMO_MAX || kl > HDR_MEMO_KID) {
        tl_hdr.len = 0;
        return;
    }
    memcpy(tl_hdr.seg, seg, len);
    tl_hdr.len = len;
    tl_hdr.alg = alg;
    tl_hdr.has_kid = kid != NULL;
    if (kid != NULL)
        memcpy(tl_hdr.kid, kid, kl + 1);
}

/* The base64url alphabet (RFC 4648 section 5), as keel__b64_value(c, 1) >= 0, inlined for
 * the per-character scan of the whole token. */
static int b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

keel_err keel_jwt_verify(const keel_jwt_keyset *ks, const keel_jwt_policy *policy,
                         const char *token, size_t len, uint64_t now_s, json_t **out_claims,
                         keel_diag *diag)
{
    if (diag != NULL)
        memset(diag, 0, sizeof(*diag));
    if (ks == NULL || policy == NULL || token == NULL || out_claims == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid argument");
    *out_claims = NULL;
    if (check_policy(policy) != KEEL_OK)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "invalid policy");
    if (len > policy->max_len)
        return keel_diag_set(diag, KEEL_EPARSE, 0, "token too long");

    /* Compact serialization: three segments of [A-Za-z0-9_-], two dots. */
    size_t dot[2], ndots = 0;
    for (size_t i = 0; i < len; i++) {
        char c = token[i];
        if (c == '.') {
            if (ndots == 2)
                return keel_diag_set(diag, KEEL_EPARSE, i, "token has more than three segments");
            dot[ndots++] = i;
        } else if (!b64url_char(c)) {
            return keel_diag_set(diag, KEEL_EPARSE, i, "invalid character in token");
        }
    }
    if (ndots != 2)
        return keel_diag_set(diag, KEEL_EPARSE, 0, "token does not have three segments");
    if (dot[0] == 0 || dot[1] == dot[0] + 1)
        return keel_diag_set(diag, KEEL_EPARSE, 0, "empty header or payload segment");

    json_t *hdr = NULL;
    const char *kid = NULL;
    keel_err e = KEEL_OK;
    if (!hdr_memo_hit(token, dot[0], policy->alg, &kid)) {
        e = decode_object(token, dot[0], "header", &hdr, diag);
        if (e != KEEL_OK)
            return e;
        e = check_header(policy, hdr, &kid, diag);
        if (e == KEEL_OK)
            hdr_memo_store(token, dot[0], policy->alg, kid);
    }

    unsigned char sig[JWT_SIG_MAX];
    size_t siglen = 0;
    const char *sseg = token + dot[1] + 1;
    size_t slen = len - dot[1] - 1;
    if (e == KEEL_OK && (slen > keel__b64url_encoded_len(JWT_SIG_MAX) ||
                         keel__b64url_decode(sseg, slen, sig, &siglen) != 0))
        e = keel_diag_set(diag, KEEL_EPARSE, dot[1] + 1, "signature is not base64url");

    if (e == KEEL_OK) {
        const unsigned char *msg = (const unsigned char *)token;
        int candidates = 0, valid = 0;
        for (size_t i = 0; i < ks->n && valid == 0; i++) {
            const jwt_key *k = &ks->keys[i];
            if (!(k->usage & KEEL_JWT_KEY_VERIFY) || k->alg != policy->alg)
                continue;
            /* A key without a kid matches any token; a key with one only its own. */
            if (kid != NULL && k->kid != NULL && strcmp(k->kid, kid) != 0)
                continue;
            candidates++;
            valid = jws_verify(k, msg, dot[1], sig, siglen);
        }
        if (valid < 0)
            e = keel_diag_set(diag, KEEL_ECRYPTO, 0, "signature check failed to run");
        else if (candidates == 0)
            e = keel_diag_set(diag, KEEL_EDENIED, 0,
                              kid != NULL ? "unknown kid" : "no verification key for alg");
        else if (!valid)
            e = keel_diag_set(diag, KEEL_EDENIED, 0, "bad signature");
    }
    json_decref(hdr);
    if (e != KEEL_OK)
        return e;

    json_t *claims = NULL;
    e = decode_object(token + dot[0] + 1, dot[1] - dot[0] - 1, "payload", &claims, diag);
    if (e != KEEL_OK)
        return e;
    e = check_claims(policy, claims, now_s, diag);
    if (e != KEEL_OK) {
        json_decref(claims);
        return e;
    }
    *out_claims = claims;
    return KEEL_OK;
}
