-- Products of the checkout catalogue.  Money is an integer amount in minor units.
CREATE TABLE products (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price_minor   INTEGER NOT NULL CHECK (price_minor >= 0),
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX products_created ON products (created_at_ms, id);
