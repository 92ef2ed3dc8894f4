-- users: the first fixture migration (tests/unit/store/test_migrate.c)
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);
