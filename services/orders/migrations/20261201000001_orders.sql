-- An order is its saga: `step` is the next thing to do, persisted before it is done, so a
-- restarted orders picks every unfinished saga up where it stopped. Every step is
-- idempotent at the peer (reservation id and charge key derive from the order id).
CREATE TABLE orders (
    id BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT CONSTRAINT orders_idempotency_key UNIQUE,
    user_id BIGINT NOT NULL,
    item_id BIGINT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    amount_minor BIGINT,
    currency TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'failed')),
    step TEXT NOT NULL CHECK (step IN ('reserve', 'charge', 'confirm', 'refund', 'release', 'done')),
    failure TEXT,
    attempts INT NOT NULL DEFAULT 0,
    -- The lease of the process driving the saga; a crashed driver's lease runs out.
    locked_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((step = 'done') = (status <> 'pending'))
);
CREATE INDEX orders_unfinished ON orders (id) WHERE step <> 'done';

-- What each step did, for people reading an order's history.
CREATE TABLE order_events (
    id BIGSERIAL PRIMARY KEY,
    order_id BIGINT NOT NULL REFERENCES orders (id),
    from_step TEXT NOT NULL,
    to_step TEXT NOT NULL,
    detail TEXT,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX order_events_order ON order_events (order_id);
