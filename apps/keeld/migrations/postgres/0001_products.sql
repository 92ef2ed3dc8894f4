-- Products of the checkout catalogue.  Money is an integer amount in minor units.
CREATE TABLE products (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    price_minor   BIGINT NOT NULL CHECK (price_minor >= 0),
    currency      TEXT NOT NULL CHECK (char_length(currency) = 3),
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX products_created ON products (created_at_ms, id);
