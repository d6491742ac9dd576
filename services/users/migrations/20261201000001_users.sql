CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    name TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- Bumped on every write: lets a reader tell a stale cached profile from a fresh one.
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Emails are unique regardless of case.
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));
