-- Charges made through the payments API.  Money is an integer amount in minor units; the
-- card never appears here, only the gateway's charge id and the payment token's kind.
CREATE TABLE payments (
    charge_id      TEXT PRIMARY KEY,
    status         TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
    currency       TEXT NOT NULL CHECK (char_length(currency) = 3),
    description    TEXT,
    created_at_ms  BIGINT NOT NULL
);
CREATE INDEX payments_created ON payments (created_at_ms, charge_id);
