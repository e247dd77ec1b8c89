-- The enrollment loop. Keep in step with migrations/sqlite/0003_enrollment.sql.

-- The entity's full Click to Pay profile (names, emails, phones, locale, country,
-- national identifiers, consent, billing address) as JSON, beside the columns the kit
-- import fills.
ALTER TABLE entity ADD COLUMN profile TEXT;
-- A kit's name as printed on the card, sent to the network with it.
ALTER TABLE kit ADD COLUMN name_on_card TEXT;

-- Each asynchronous request: our idempotency key for the SaaS (request_id), the statuses
-- it moved things from (restored if it fails), and when the reconciler may next look at it.
ALTER TABLE ctp_request_trace ADD COLUMN request_id TEXT;
ALTER TABLE ctp_request_trace ADD COLUMN prev_entity_status TEXT;
ALTER TABLE ctp_request_trace ADD COLUMN prev_kit_status TEXT;
ALTER TABLE ctp_request_trace ADD COLUMN correlation_id TEXT;
ALTER TABLE ctp_request_trace ADD COLUMN next_poll_at BIGINT;
CREATE UNIQUE INDEX idx_ctp_request_trace_request_id ON ctp_request_trace (request_id);
CREATE INDEX idx_ctp_request_trace_pending ON ctp_request_trace (next_poll_at) WHERE status_ctp = 'IN_PROGRESS';

-- Callbacks already applied, by their webhook id: a redelivered callback is a no-op.
CREATE TABLE saas_callback (
    webhook_id  TEXT    PRIMARY KEY,
    received_at BIGINT  NOT NULL
);

-- Idempotency-Key: the first answer to a key, replayed for the same body.
CREATE TABLE idempotency_key (
    tenant          TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    response_status BIGINT  NOT NULL,
    response_body   TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (tenant, idempotency_key)
);
