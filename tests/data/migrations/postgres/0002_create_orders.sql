CREATE TABLE orders (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    note TEXT NOT NULL DEFAULT 'a;b?'
);
CREATE INDEX orders_user ON orders(user_id);
