-- Checkout: stock per product, orders, the stock each order holds, and shipments.  Money is
-- an integer amount in minor units.  The checkout saga's own log lives in keel_sagas /
-- keel_saga_events (libkeel's "keel.pay.saga" component).
CREATE TABLE inventory (
    product_id    TEXT PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
    on_hand       BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved      BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
    updated_at_ms BIGINT NOT NULL
);
CREATE TABLE orders (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed',
                                                  'needs_attention')),
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    currency      TEXT NOT NULL CHECK (char_length(currency) = 3),
    charge_id     TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX orders_status ON orders (status, created_at_ms);
CREATE TABLE reservations (
    order_id   TEXT NOT NULL REFERENCES orders (id),
    product_id TEXT NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE shipments (
    order_id      TEXT PRIMARY KEY REFERENCES orders (id),
    created_at_ms BIGINT NOT NULL
);
