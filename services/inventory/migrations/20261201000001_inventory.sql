CREATE TABLE items (
    id BIGSERIAL PRIMARY KEY,
    sku TEXT NOT NULL CONSTRAINT items_sku_key UNIQUE CHECK (char_length(sku) BETWEEN 1 AND 64),
    name TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    currency TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The last line of defence against overselling; the conditional UPDATE is the first.
    stock BIGINT NOT NULL CONSTRAINT items_stock_nonnegative CHECK (stock >= 0),
    version BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per reservation id, chosen by the caller (orders uses its saga's id), which makes
-- reserve, release and commit idempotent. A release of an id never reserved leaves a
-- tombstone (state released, no item) so that a reserve arriving late cannot take stock.
CREATE TABLE reservations (
    id TEXT PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 128),
    item_id BIGINT REFERENCES items (id),
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    unit_price_minor BIGINT,
    currency TEXT,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'released', 'committed')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reservations_item ON reservations (item_id);
