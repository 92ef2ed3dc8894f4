/* Two statements in one file; a literal with a semicolon and a '?' inside. */
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    note TEXT NOT NULL DEFAULT 'a;b?'
);
CREATE INDEX orders_user ON orders(user_id);
