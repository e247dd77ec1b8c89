-- Trust boundaries and retention. Keep in step with migrations/sqlite/0005_keyed_digests_and_retention.sql.

-- Idempotency keys are claimed before the request runs (so that across replicas one
-- request with a key runs), and the request is kept only as a keyed digest: the unkeyed
-- SHA-256 of a body that may hold a card number, which the table before this one kept,
-- is dropped with it.
DROP TABLE idempotency_key;
CREATE TABLE idempotency_request (
    tenant          TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    request_digest  TEXT    NOT NULL,
    response_status BIGINT,
    response_body   TEXT,
    created_at      BIGINT NOT NULL,
    completed_at    BIGINT,
    PRIMARY KEY (tenant, idempotency_key)
);
CREATE INDEX idx_idempotency_request_created ON idempotency_request (created_at);

-- Envelope digests are keyed from now on (`version:hex`). The unkeyed ones of earlier
-- versions are retired: a redelivery of an envelope recorded before this migration is
-- recorded again, once.
UPDATE enrollment_attempt SET envelope_hash = 'retired:' || id WHERE envelope_hash NOT LIKE '%:%';

-- The relay claims waiting events oldest first: through an index of the waiting ones in
-- id order, so that a claim costs what is waiting, not what was ever published (with the
-- index before, a claim scanned the table from its first row).
DROP INDEX idx_outbox_pending;
CREATE INDEX idx_outbox_waiting ON outbox (id) WHERE published_at IS NULL AND dead_at IS NULL;

-- Retention: published outbox events and applied callbacks are deleted after a while,
-- oldest first, through these indexes.
CREATE INDEX idx_outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX idx_saas_callback_received ON saas_callback (received_at);
