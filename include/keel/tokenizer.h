/*
 * keel/tokenizer.h - card tokenization: swap a PAN for a token as early as possible so that
 * nothing past the vault ever holds a card number (seed 004 redaction.py: Tokenizer,
 * EphemeralTokenizer; PCI DSS Req 3.5.1: PAN unreadable wherever stored - index tokens).
 *
 * Interface.  A keel_tokenizer is a vtable (tokenize, detokenize, lookup, forget, destroy);
 * an implementation embeds struct keel_tokenizer as its first member.  Production code
 * implements it over a vault (a gateway's hosted fields, a tokenization service); keel ships
 * the ephemeral in-memory tokenizer for tests and local development.
 *
 * Tokens are "tok_" followed by 24 characters [A-Za-z0-9] from the CSPRNG: they carry no
 * information about the card.  Next to the token a keel_card_token gives what may be shown
 * or stored (PCI DSS 3.4.1): the last four digits, the brand (from the IIN prefix) and a
 * fingerprint - a keyed hash (HMAC-SHA256, hex) of the PAN that is equal for equal PANs and
 * usable by the fraud blocklist and velocity rules, but cannot be reversed without the key.
 *
 * PAN hygiene.  PANs are validated (13 to 19 ASCII digits, Luhn) and error messages never
 * contain any digit of the PAN.  The ephemeral tokenizer never logs or persists a PAN, keys
 * its map by an HMAC of the PAN under a random per-instance key (never the PAN itself), keeps
 * each PAN in a keel_secret and wipes it on forget and destroy.
 *
 * Thread-safety: the ephemeral tokenizer is fully thread-safe (one mutex).
 */
#ifndef KEEL_TOKENIZER_H
#define KEEL_TOKENIZER_H

#include <keel/common.h>
#include <keel/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Length of a token ("tok_" + 24) and the size of its buffer with NUL. */
#define KEEL_CARD_TOKEN_LEN 28
#define KEEL_CARD_TOKEN_SIZE (KEEL_CARD_TOKEN_LEN + 1)
/** Hex characters of a card fingerprint (128 bits of HMAC-SHA256), and buffer size. */
#define KEEL_CARD_FINGERPRINT_LEN 32
#define KEEL_CARD_FINGERPRINT_SIZE (KEEL_CARD_FINGERPRINT_LEN + 1)
/** PAN length bounds (ISO/IEC 7812) and the buffer size detokenize needs. */
#define KEEL_PAN_MIN 13
#define KEEL_PAN_MAX 19
#define KEEL_PAN_SIZE (KEEL_PAN_MAX + 1)

/** Card brands, detected from the IIN prefix. */
typedef enum keel_card_brand {
    KEEL_CARD_UNKNOWN = 0,
    KEEL_CARD_VISA = 1,       /* 4 */
    KEEL_CARD_MASTERCARD = 2, /* 51-55, 2221-2720 */
    KEEL_CARD_AMEX = 3,       /* 34, 37 */
    KEEL_CARD_DISCOVER = 4,   /* 6011, 644-649, 65 */
    KEEL_CARD_DINERS = 5,     /* 300-305, 3095, 36, 38, 39 */
    KEEL_CARD_JCB = 6,        /* 3528-3589 */
    KEEL_CARD_UNIONPAY = 7    /* 62, 81 */
} keel_card_brand;

/** What a token stands for, minus the card number: safe to display, log and store. */
typedef struct keel_card_token {
    char token[KEEL_CARD_TOKEN_SIZE];
    char last4[5];
    keel_card_brand brand;
    char fingerprint[KEEL_CARD_FINGERPRINT_SIZE];
} keel_card_token;

/** "visa", "mastercard", "amex", "discover", "diners", "jcb", "unionpay", "unknown".
 *  Ownership: static string.  Thread-safety: any thread. */
KEEL_API const char *keel_card_brand_name(keel_card_brand b);
/** Brand of a PAN (or of its first digits) from the IIN prefix; KEEL_CARD_UNKNOWN when none
 *  matches or the input is not digits.  Thread-safety: any thread. */
KEEL_API keel_card_brand keel_card_brand_detect(keel_str digits);
/** 1 if digits is non-empty, all ASCII digits and passes the Luhn check, else 0. */
KEEL_API int keel_card_luhn_valid(keel_str digits);
/** Validate a PAN: 13 to 19 ASCII digits (no spaces or dashes) passing the Luhn check.
 *  @return KEEL_OK or KEEL_EINVAL; diag->msg names the problem ("pan: ...") and never holds a
 *  digit of the PAN; diag->offset is the offset of a non-digit character.
 *  Thread-safety: any thread. */
KEEL_API KEEL_NODISCARD keel_err keel_card_pan_validate(keel_str pan, keel_diag *diag);

typedef struct keel_tokenizer keel_tokenizer;

/** Operations of a tokenizer implementation (see the keel_tokenizer_* wrappers). */
typedef struct keel_tokenizer_ops {
    const char *name;
    keel_err (*tokenize)(keel_tokenizer *tk, keel_str pan, keel_card_token *out,
                         keel_diag *diag);
    keel_err (*detokenize)(keel_tokenizer *tk, const char *token, char *pan, size_t cap,
                           size_t *len);
    keel_err (*lookup)(keel_tokenizer *tk, const char *token, keel_card_token *out);
    keel_err (*forget)(keel_tokenizer *tk, const char *token);
    void (*destroy)(keel_tokenizer *tk);
} keel_tokenizer_ops;

/** The interface.  Embed as the first member of an implementation's struct. */
struct keel_tokenizer {
    const keel_tokenizer_ops *ops;
};

/** Swap a PAN for a token.  The same PAN gives the same token for as long as the tokenizer
 *  remembers it.  The PAN is validated first (keel_card_pan_validate()).
 *  @return KEEL_OK; KEEL_EINVAL (invalid PAN, NULL argument; diag never contains the PAN);
 *  KEEL_EFULL (the tokenizer holds its maximum of cards); KEEL_ECRYPTO; KEEL_ENOMEM.
 *  Thread-safety: as the implementation.  Ownership: the PAN is copied, never kept by the
 *  caller's pointer; the caller should wipe its own copy. */
KEEL_API KEEL_NODISCARD keel_err keel_tokenizer_tokenize(keel_tokenizer *tk, keel_str pan,
                                                         keel_card_token *out, keel_diag *diag);
/** The vault side: recover the PAN of a token into pan (cap >= KEEL_PAN_SIZE), NUL-terminated,
 *  length in *len (may be NULL).  The caller must wipe pan after use.
 *  @return KEEL_OK, KEEL_ENOTFOUND (unknown or forgotten token), KEEL_ETOOBIG (cap too small),
 *  KEEL_EINVAL.  Thread-safety: as the implementation. */
KEEL_API KEEL_NODISCARD keel_err keel_tokenizer_detokenize(keel_tokenizer *tk, const char *token,
                                                           char *pan, size_t cap, size_t *len);
/** Display data of a token (last4, brand, fingerprint) without the PAN.
 *  @return KEEL_OK, KEEL_ENOTFOUND, KEEL_EINVAL. */
KEEL_API KEEL_NODISCARD keel_err keel_tokenizer_lookup(keel_tokenizer *tk, const char *token,
                                                       keel_card_token *out);
/** Forget a token and wipe its PAN.  A later tokenize of the same PAN gives a new token.
 *  @return KEEL_OK, KEEL_ENOTFOUND, KEEL_EINVAL. */
KEEL_API KEEL_NODISCARD keel_err keel_tokenizer_forget(keel_tokenizer *tk, const char *token);
/** Destroy through the ops (every PAN is wiped).  NULL is a no-op.
 *  Thread-safety: no call may be running.  Ownership: consumes tk. */
KEEL_API void keel_tokenizer_destroy(keel_tokenizer *tk);

/** Configuration of the ephemeral in-memory tokenizer. */
typedef struct keel_tokenizer_config {
    size_t size;                         /* sizeof(keel_tokenizer_config) */
    size_t max_cards;                    /* cards held at once (10000); then KEEL_EFULL */
    const keel_secret *fingerprint_key;  /* HMAC key for fingerprints, >= 16 bytes; NULL =
                                            random per instance (fingerprints then differ
                                            between instances).  Copied. */
} keel_tokenizer_config;

/** Fill cfg with the defaults above.  Errors: none. */
KEEL_API void keel_tokenizer_config_default(keel_tokenizer_config *cfg);
/** Create the ephemeral tokenizer (tests, local development: nothing survives destroy).
 *  @return KEEL_OK; KEEL_EINVAL (zero max_cards, short fingerprint key: field named in
 *  diag); KEEL_ECRYPTO (no randomness); KEEL_ENOMEM.
 *  Ownership: caller destroys *out with keel_tokenizer_destroy(). */
KEEL_API KEEL_NODISCARD keel_err keel_tokenizer_ephemeral_create(keel_tokenizer **out,
                                                                 const keel_tokenizer_config *cfg,
                                                                 keel_diag *diag);
/** Number of cards the tokenizer holds (0 for NULL).  Thread-safety: as the implementation;
 *  only the ephemeral tokenizer answers (others: 0). */
KEEL_API size_t keel_tokenizer_ephemeral_count(const keel_tokenizer *tk);

#ifdef __cplusplus
}
#endif
#endif /* KEEL_TOKENIZER_H */
