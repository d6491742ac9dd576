-- Responses remembered per Idempotency-Key, so a retried POST replays the first outcome
-- instead of running again. `status` is NULL while the first request is still running.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    request_body BYTEA NOT NULL,
    status SMALLINT,
    content_type TEXT,
    response_body BYTEA,
    locked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);
