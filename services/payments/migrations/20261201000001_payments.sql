-- One row per idempotency key: the unique constraint is what makes a charge happen exactly
-- once however many retries race. A refund of a key that was never charged leaves a
-- `voided` row, so the charge cannot happen after its compensation.
CREATE TABLE charges (
    id BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT NOT NULL CONSTRAINT charges_idempotency_key UNIQUE
        CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    user_id BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL CONSTRAINT charges_amount_positive
        CHECK (amount_minor > 0 OR state = 'voided'),
    currency TEXT NOT NULL,
    description TEXT,
    state TEXT NOT NULL CHECK (state IN ('succeeded', 'declined', 'refunded', 'voided')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX charges_user ON charges (user_id);

-- Money moves only here: + for a charge, - for its refund, at most one of each per charge.
CREATE TABLE ledger_entries (
    id BIGSERIAL PRIMARY KEY,
    charge_id BIGINT NOT NULL REFERENCES charges (id),
    user_id BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('charge', 'refund')),
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT ledger_one_per_kind UNIQUE (charge_id, kind)
);
CREATE INDEX ledger_entries_user ON ledger_entries (user_id);
