/* tokenizer.c - PAN validation, brand detection and the ephemeral in-memory tokenizer
 * (keel/tokenizer.h).
 *
 * The ephemeral tokenizer keeps one entry per card, reachable through two chained hash
 * indexes: by HMAC-SHA256(lookup_key, PAN) - so the PAN itself is never a map key and never
 * compared outside constant-time code - and by token string.  PANs live in keel_secret
 * objects, which wipe on destroy; every temporary copy is wiped with keel__wipe(). */
#include "keel_int.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>

#include <keel/tokenizer.h>

#define TK_MAC_LEN 32
#define TK_KEY_LEN 32
#define TK_MIN_FP_KEY 16
#define TK_TOKEN_ATTEMPTS 8

/* ------------------------------------------------------------ card data -- */

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int all_digits(keel_str d)
{
    if (d.ptr == NULL || d.len == 0)
        return 0;
    for (size_t i = 0; i < d.len; i++)
        if (!is_digit(d.ptr[i]))
            return 0;
    return 1;
}

/* Value of the first k digits, or -1 when there are fewer. */
static int prefix(keel_str d, size_t k)
{
    if (d.len < k)
        return -1;
    int v = 0;
    for (size_t i = 0; i < k; i++)
        v = v * 10 + (d.ptr[i] - '0');
    return v;
}

static int in(int v, int lo, int hi)
{
    return v >= lo && v <= hi;
}

keel_card_brand keel_card_brand_detect(keel_str d)
{
    if (!all_digits(d))
        return KEEL_CARD_UNKNOWN;
    int p1 = prefix(d, 1), p2 = prefix(d, 2), p3 = prefix(d, 3), p4 = prefix(d, 4);
    if (p1 == 4)
        return KEEL_CARD_VISA;
    if (p2 == 34 || p2 == 37)
        return KEEL_CARD_AMEX;
    if (in(p2, 51, 55) || in(p4, 2221, 2720))
        return KEEL_CARD_MASTERCARD;
    if (p4 == 6011 || in(p3, 644, 649) || p2 == 65)
        return KEEL_CARD_DISCOVER;
    if (in(p4, 3528, 3589))
        return KEEL_CARD_JCB;
    if (in(p3, 300, 305) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39)
        return KEEL_CARD_DINERS;
    if (p2 == 62 || p2 == 81)
        return KEEL_CARD_UNIONPAY;
    return KEEL_CARD_UNKNOWN;
}

const char *keel_card_brand_name(keel_card_brand b)
{
    switch (b) {
    case KEEL_CARD_VISA:
        return "visa";
    case KEEL_CARD_MASTERCARD:
        return "mastercard";
    case KEEL_CARD_AMEX:
        return "amex";
    case KEEL_CARD_DISCOVER:
        return "discover";
    case KEEL_CARD_DINERS:
        return "diners";
    case KEEL_CARD_JCB:
        return "jcb";
    case KEEL_CARD_UNIONPAY:
        return "unionpay";
    case KEEL_CARD_UNKNOWN:
        break;
    }
    return "unknown";
}

int keel_card_luhn_valid(keel_str d)
{
    if (!all_digits(d))
        return 0;
    unsigned sum = 0;
    int dbl = 0;
    for (size_t i = d.len; i-- > 0;) {
        unsigned v = (unsigned)(d.ptr[i] - '0');
        if (dbl) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
        dbl = !dbl;
    }
    return sum % 10 == 0;
}

/* Messages say what is wrong without repeating any digit of the input. */
keel_err keel_card_pan_validate(keel_str pan, keel_diag *diag)
{
    if (pan.ptr == NULL || pan.len == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "pan: required");
    for (size_t i = 0; i < pan.len; i++)
        if (!is_digit(pan.ptr[i]))
            return keel_diag_set(diag, KEEL_EINVAL, i,
                                 "pan: only digits are allowed (non-digit at offset %zu)", i);
    if (pan.len < KEEL_PAN_MIN || pan.len > KEEL_PAN_MAX)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "pan: must be %d to %d digits long (is %zu)",
                             KEEL_PAN_MIN, KEEL_PAN_MAX, pan.len);
    if (!keel_card_luhn_valid(pan))
        return keel_diag_set(diag, KEEL_EINVAL, 0, "pan: check digit wrong (Luhn)");
    return KEEL_OK;
}

/* ------------------------------------------------------------ interface -- */

keel_err keel_tokenizer_tokenize(keel_tokenizer *tk, keel_str pan, keel_card_token *out,
                                 keel_diag *diag)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (tk == NULL || tk->ops == NULL || tk->ops->tokenize == NULL || out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "tokenizer or out: NULL");
    keel_err e = keel_card_pan_validate(pan, diag);
    if (e != KEEL_OK)
        return e;
    return tk->ops->tokenize(tk, pan, out, diag);
}

keel_err keel_tokenizer_detokenize(keel_tokenizer *tk, const char *token, char *pan, size_t cap,
                                   size_t *len)
{
    if (len != NULL)
        *len = 0;
    if (pan != NULL && cap > 0)
        pan[0] = '\0';
    if (tk == NULL || tk->ops == NULL || tk->ops->detokenize == NULL || token == NULL ||
        pan == NULL)
        return KEEL_EINVAL;
    return tk->ops->detokenize(tk, token, pan, cap, len);
}

keel_err keel_tokenizer_lookup(keel_tokenizer *tk, const char *token, keel_card_token *out)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (tk == NULL || tk->ops == NULL || tk->ops->lookup == NULL || token == NULL || out == NULL)
        return KEEL_EINVAL;
    return tk->ops->lookup(tk, token, out);
}

keel_err keel_tokenizer_forget(keel_tokenizer *tk, const char *token)
{
    if (tk == NULL || tk->ops == NULL || tk->ops->forget == NULL || token == NULL)
        return KEEL_EINVAL;
    return tk->ops->forget(tk, token);
}

void keel_tokenizer_destroy(keel_tokenizer *tk)
{
    if (tk != NULL && tk->ops != NULL && tk->ops->destroy != NULL)
        tk->ops->destroy(tk);
}

/* ------------------------------------------------------------ ephemeral -- */

typedef struct tk_entry {
    struct tk_entry *next_mac;
    struct tk_entry *next_tok;
    unsigned char mac[TK_MAC_LEN]; /* HMAC(lookup_key, PAN) */
    uint64_t tok_hash;
    keel_card_token card;
    keel_secret *pan;
} tk_entry;

typedef struct tk_ephemeral {
    keel_tokenizer tk; /* first member: the interface */
    pthread_mutex_t mu;
    keel_secret *lookup_key;
    keel_secret *fp_key;
    size_t max_cards;
    size_t count;
    size_t nbuckets; /* power of two */
    tk_entry **by_mac;
    tk_entry **by_tok;
} tk_ephemeral;

static const keel_tokenizer_ops EPHEMERAL_OPS;

static uint64_t str_hash(const char *s)
{
    return keel__fnv1a(KEEL__FNV1A_INIT, s, strlen(s));
}

static size_t mac_bucket(const tk_ephemeral *t, const unsigned char *mac)
{
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = (h << 8) | mac[i];
    return (size_t)(h & (t->nbuckets - 1));
}

static keel_err hmac(const keel_secret *key, const void *p, size_t n, unsigned char *out)
{
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), keel__secret_bytes(key), (int)keel_secret_len(key), p, n, out, &len) ==
            NULL ||
        len != TK_MAC_LEN)
        return KEEL_ECRYPTO;
    return KEEL_OK;
}

static tk_entry *find_by_mac(const tk_ephemeral *t, const unsigned char *mac)
{
    for (tk_entry *e = t->by_mac[mac_bucket(t, mac)]; e != NULL; e = e->next_mac)
        if (keel_ct_equal(e->mac, mac, TK_MAC_LEN))
            return e;
    return NULL;
}

static tk_entry *find_by_token(const tk_ephemeral *t, const char *token)
{
    uint64_t h = str_hash(token);
    for (tk_entry *e = t->by_tok[h & (t->nbuckets - 1)]; e != NULL; e = e->next_tok)
        if (e->tok_hash == h && strcmp(e->card.token, token) == 0)
            return e;
    return NULL;
}

/* "tok_" + 24 characters of [A-Za-z0-9], uniformly (rejection sampling of random bytes). */
static keel_err new_token(char out[KEEL_CARD_TOKEN_SIZE])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[64];
    size_t n = 4;
    memcpy(out, "tok_", 4);
    while (n < KEEL_CARD_TOKEN_LEN) {
        if (keel_random_bytes(rnd, sizeof(rnd)) != KEEL_OK)
            return KEEL_ECRYPTO;
        for (size_t i = 0; i < sizeof(rnd) && n < KEEL_CARD_TOKEN_LEN; i++)
            if (rnd[i] < 248) /* 248 = 4 * 62: keeps the mapping uniform */
                out[n++] = alphabet[rnd[i] % 62];
    }
    out[KEEL_CARD_TOKEN_LEN] = '\0';
    return KEEL_OK;
}


static keel_err eph_tokenize(keel_tokenizer *base, keel_str pan, keel_card_token *out,
                             keel_diag *diag)
{
    tk_ephemeral *t = (tk_ephemeral *)base;
    unsigned char mac[TK_MAC_LEN], fp[TK_MAC_LEN];
    keel_err e = hmac(t->lookup_key, pan.ptr, pan.len, mac);
    if (e == KEEL_OK)
        e = hmac(t->fp_key, pan.ptr, pan.len, fp);
    if (e != KEEL_OK) {
        keel__wipe(mac, sizeof(mac));
        return keel_diag_set(diag, e, 0, "tokenizer: HMAC failed");
    }
    pthread_mutex_lock(&t->mu);
    tk_entry *ent = find_by_mac(t, mac);
    if (ent != NULL) {
        *out = ent->card;
        goto out;
    }
    if (t->count >= t->max_cards) {
        e = keel_diag_set(diag, KEEL_EFULL, 0, "tokenizer: holds max_cards (%zu) cards",
                          t->max_cards);
        goto out;
    }
    ent = keel__new(tk_entry);
    if (ent == NULL) {
        e = KEEL_ENOMEM;
        goto out;
    }
    e = keel_secret_create(&ent->pan, pan.ptr, pan.len);
    for (int i = 0; e == KEEL_OK; i++) {
        if (i == TK_TOKEN_ATTEMPTS) {
            e = KEEL_EINTERNAL; /* 8 collisions in 143 bits of randomness: the CSPRNG is broken */
            break;
        }
        e = new_token(ent->card.token);
        if (e == KEEL_OK && find_by_token(t, ent->card.token) == NULL)
            break;
    }
    if (e != KEEL_OK) {
        keel_secret_destroy(ent->pan);
        keel_free(ent);
        if (e == KEEL_ECRYPTO || e == KEEL_EINTERNAL)
            keel_diag_set(diag, e, 0, "tokenizer: cannot generate a token");
        goto out;
    }
    memcpy(ent->mac, mac, sizeof(mac));
    memcpy(ent->card.last4, pan.ptr + pan.len - 4, 4);
    ent->card.last4[4] = '\0';
    ent->card.brand = keel_card_brand_detect(pan);
    keel__hex_encode(fp, KEEL_CARD_FINGERPRINT_LEN / 2, ent->card.fingerprint);
    ent->tok_hash = str_hash(ent->card.token);
    size_t mb = mac_bucket(t, mac), tb = (size_t)(ent->tok_hash & (t->nbuckets - 1));
    ent->next_mac = t->by_mac[mb];
    t->by_mac[mb] = ent;
    ent->next_tok = t->by_tok[tb];
    t->by_tok[tb] = ent;
    t->count++;
    *out = ent->card;
out:
    pthread_mutex_unlock(&t->mu);
    keel__wipe(mac, sizeof(mac));
    keel__wipe(fp, sizeof(fp));
    return e;
}

static keel_err eph_detokenize(keel_tokenizer *base, const char *token, char *pan, size_t cap,
                               size_t *len)
{
    tk_ephemeral *t = (tk_ephemeral *)base;
    keel_err e = KEEL_ENOTFOUND;
    pthread_mutex_lock(&t->mu);
    const tk_entry *ent = find_by_token(t, token);
    if (ent != NULL) {
        size_t n = keel_secret_len(ent->pan);
        if (cap < n + 1) {
            e = KEEL_ETOOBIG;
        } else {
            memcpy(pan, keel__secret_bytes(ent->pan), n);
            pan[n] = '\0';
            if (len != NULL)
                *len = n;
            e = KEEL_OK;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return e;
}

static keel_err eph_lookup(keel_tokenizer *base, const char *token, keel_card_token *out)
{
    tk_ephemeral *t = (tk_ephemeral *)base;
    keel_err e = KEEL_ENOTFOUND;
    pthread_mutex_lock(&t->mu);
    const tk_entry *ent = find_by_token(t, token);
    if (ent != NULL) {
        *out = ent->card;
        e = KEEL_OK;
    }
    pthread_mutex_unlock(&t->mu);
    return e;
}

static void entry_free(tk_entry *ent)
{
    keel_secret_destroy(ent->pan); /* wipes the PAN */
    keel__wipe(ent, sizeof(*ent));
    keel_free(ent);
}

static keel_err eph_forget(keel_tokenizer *base, const char *token)
{
    tk_ephemeral *t = (tk_ephemeral *)base;
    keel_err e = KEEL_ENOTFOUND;
    pthread_mutex_lock(&t->mu);
    uint64_t h = str_hash(token);
    tk_entry **pp = &t->by_tok[h & (t->nbuckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->next_tok)
        if ((*pp)->tok_hash == h && strcmp((*pp)->card.token, token) == 0)
            break;
    tk_entry *ent = *pp;
    if (ent != NULL) {
        *pp = ent->next_tok;
        tk_entry **mp = &t->by_mac[mac_bucket(t, ent->mac)];
        while (*mp != NULL && *mp != ent)
            mp = &(*mp)->next_mac;
        if (KEEL_ALWAYS(*mp == ent))
            *mp = ent->next_mac;
        t->count--;
        entry_free(ent);
        e = KEEL_OK;
    }
    pthread_mutex_unlock(&t->mu);
    return e;
}

static void eph_destroy(keel_tokenizer *base)
{
    tk_ephemeral *t = (tk_ephemeral *)base;
    if (t->by_tok != NULL) {
        for (size_t i = 0; i < t->nbuckets; i++) {
            tk_entry *ent = t->by_tok[i];
            while (ent != NULL) {
                tk_entry *next = ent->next_tok;
                entry_free(ent);
                ent = next;
            }
        }
    }
    keel_free(t->by_tok);
    keel_free(t->by_mac);
    keel_secret_destroy(t->lookup_key);
    keel_secret_destroy(t->fp_key);
    pthread_mutex_destroy(&t->mu);
    keel_free(t);
}

static const keel_tokenizer_ops EPHEMERAL_OPS = {
    "ephemeral", eph_tokenize, eph_detokenize, eph_lookup, eph_forget, eph_destroy,
};

void keel_tokenizer_config_default(keel_tokenizer_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->max_cards = 10000;
    cfg->fingerprint_key = NULL;
}

static keel_err random_secret(keel_secret **out)
{
    unsigned char k[TK_KEY_LEN];
    keel_err e = keel_random_bytes(k, sizeof(k));
    if (e == KEEL_OK)
        e = keel_secret_create(out, k, sizeof(k));
    keel__wipe(k, sizeof(k));
    return e;
}

keel_err keel_tokenizer_ephemeral_create(keel_tokenizer **out, const keel_tokenizer_config *cfg,
                                         keel_diag *diag)
{
    keel_tokenizer_config c;
    if (out == NULL)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "out: NULL");
    *out = NULL;
    keel_tokenizer_config_default(&c);
    if (cfg != NULL) {
        if (cfg->size != sizeof(*cfg))
            return keel_diag_set(diag, KEEL_EINVAL, 0,
                                 "size: not sizeof(keel_tokenizer_config); use "
                                 "keel_tokenizer_config_default()");
        c = *cfg;
    }
    if (c.max_cards == 0)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "max_cards: must be > 0");
    if (c.fingerprint_key != NULL && keel_secret_len(c.fingerprint_key) < TK_MIN_FP_KEY)
        return keel_diag_set(diag, KEEL_EINVAL, 0, "fingerprint_key: shorter than %d bytes",
                             TK_MIN_FP_KEY);
    tk_ephemeral *t = keel__new(tk_ephemeral);
    if (t == NULL)
        return KEEL_ENOMEM;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        keel_free(t);
        return KEEL_ENOMEM;
    }
    t->tk.ops = &EPHEMERAL_OPS;
    t->max_cards = c.max_cards;
    t->nbuckets = 16;
    while (t->nbuckets < c.max_cards && t->nbuckets < 65536)
        t->nbuckets *= 2;
    t->by_mac = keel_calloc(t->nbuckets, sizeof(*t->by_mac));
    t->by_tok = keel_calloc(t->nbuckets, sizeof(*t->by_tok));
    keel_err e = (t->by_mac && t->by_tok) ? KEEL_OK : KEEL_ENOMEM;
    if (e == KEEL_OK)
        e = random_secret(&t->lookup_key);
    if (e == KEEL_OK) {
        if (c.fingerprint_key != NULL)
            e = keel_secret_create(&t->fp_key, keel__secret_bytes(c.fingerprint_key),
                                   keel_secret_len(c.fingerprint_key));
        else
            e = random_secret(&t->fp_key);
    }
    if (e != KEEL_OK) {
        eph_destroy(&t->tk);
        if (e == KEEL_ECRYPTO)
            keel_diag_set(diag, e, 0, "tokenizer: no randomness for the keys");
        return e;
    }
    *out = &t->tk;
    return KEEL_OK;
}

size_t keel_tokenizer_ephemeral_count(const keel_tokenizer *tk)
{
    if (tk == NULL || tk->ops != &EPHEMERAL_OPS)
        return 0;
    const tk_ephemeral *t = (const tk_ephemeral *)tk;
    pthread_mutex_t *mu = (pthread_mutex_t *)(uintptr_t)&t->mu;
    pthread_mutex_lock(mu);
    size_t n = t->count;
    pthread_mutex_unlock(mu);
    return n;
}
