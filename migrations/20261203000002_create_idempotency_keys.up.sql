-- Idempotency keys of the creating POSTs (src/api/idempotency.rs). A row is a claim while its
-- first request runs (`in_flight`), then that request's answer (`done`: status and the exact
-- body bytes sent), replayed to every retry with the same key and body until `expires_at`.
-- Keyed by the operation as well: one key sent to two operations is two keys.
CREATE TABLE idempotency_keys (
    operation   text        NOT NULL,
    key         text        NOT NULL,
    -- SHA-256 of the request's method, path and exact body bytes.
    fingerprint bytea       NOT NULL,
    state       text        NOT NULL DEFAULT 'in_flight',
    -- Who holds the claim: a new one for each claim (or take-over of a stale one), so a request
    -- whose claim was taken over cannot complete it.
    claim       uuid        NOT NULL,
    status      smallint,
    response    bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (operation, key),
    CONSTRAINT idempotency_keys_key_length CHECK (octet_length(key) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_keys_fingerprint_sha256 CHECK (octet_length(fingerprint) = 32),
    CONSTRAINT idempotency_keys_state_known CHECK (state IN ('in_flight', 'done')),
    CONSTRAINT idempotency_keys_done_has_answer
        CHECK ((state = 'done') = (status IS NOT NULL AND response IS NOT NULL))
);

-- The sweep deletes expired keys in expires_at order.
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
