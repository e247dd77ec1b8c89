-- ctp-issuer schema, PostgreSQL dialect. Keep in step with migrations/sqlite/0001_init.sql.
-- Times are epoch milliseconds. Every row carries its tenant. No column holds a card
-- number in clear: kits keep an HMAC fingerprint, a sealed (AES-256-GCM) copy and the
-- last four digits.

-- The issuer's registry: entities (customers) and their kits (cards).
CREATE TABLE entity (
    tenant      TEXT    NOT NULL,
    entity_id   TEXT    NOT NULL,
    first_name  TEXT,
    last_name   TEXT,
    email       TEXT,
    phone       TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (tenant, entity_id)
);

CREATE TABLE kit (
    tenant          TEXT    NOT NULL,
    kit_no          TEXT    NOT NULL,
    entity_id       TEXT    NOT NULL,
    pan_fingerprint TEXT    NOT NULL,
    pan_sealed      TEXT    NOT NULL,
    pan_last4       TEXT    NOT NULL CHECK (length(pan_last4) = 4),
    expiry          TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (tenant, kit_no),
    FOREIGN KEY (tenant, entity_id) REFERENCES entity (tenant, entity_id)
);
-- A card number is one card: it belongs to one kit, across tenants.
CREATE UNIQUE INDEX idx_kit_pan_fingerprint ON kit (pan_fingerprint);
CREATE INDEX idx_kit_entity ON kit (tenant, entity_id);

-- Seed 003: entity-level Click to Pay status.
CREATE TABLE ctp_customer (
    pkey                     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant                   TEXT    NOT NULL,
    entity_id                TEXT    NOT NULL,
    click_to_pay_customer_id TEXT,
    ctp_entity_status        TEXT    NOT NULL DEFAULT 'UNREGISTERED'
        CHECK (ctp_entity_status IN ('UNREGISTERED', 'REGISTRATION_IN_PROGRESS', 'ACTIVE',
                                     'REMOVAL_IN_PROGRESS', 'REMOVED', 'DISABLED')),
    created_at               BIGINT  NOT NULL,
    updated_at               BIGINT  NOT NULL,
    FOREIGN KEY (tenant, entity_id) REFERENCES entity (tenant, entity_id)
);
CREATE UNIQUE INDEX idx_ctp_customer_business_entity ON ctp_customer (tenant, entity_id);

-- Seed 003: card-level Click to Pay status.
CREATE TABLE ctp_payment (
    pkey                               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant                             TEXT    NOT NULL,
    ctp_customer_pkey                  BIGINT  NOT NULL REFERENCES ctp_customer (pkey),
    kit_no                             TEXT    NOT NULL,
    click_to_pay_payment_instrument_id TEXT,
    ctp_kit_status                     TEXT    NOT NULL DEFAULT 'UNREGISTERED'
        CHECK (ctp_kit_status IN ('UNREGISTERED', 'REGISTRATION_IN_PROGRESS', 'ACTIVE',
                                  'REMOVAL_IN_PROGRESS', 'REMOVED', 'DISABLED')),
    created_at                         BIGINT  NOT NULL,
    updated_at                         BIGINT  NOT NULL,
    FOREIGN KEY (tenant, kit_no) REFERENCES kit (tenant, kit_no)
);
CREATE UNIQUE INDEX idx_ctp_payment_kit ON ctp_payment (tenant, kit_no);

-- Seed 003 (ctp_requestIdTracking): one row per asynchronous SaaS request.
CREATE TABLE ctp_request_trace (
    pkey             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant           TEXT    NOT NULL,
    request_trace_id TEXT,
    entity_id        TEXT    NOT NULL,
    kit_no           TEXT,
    event            TEXT    NOT NULL,
    status_ctp       TEXT    NOT NULL CHECK (status_ctp IN ('IN_PROGRESS', 'SUCCESS', 'FAILED')),
    error_details    TEXT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX idx_ctp_request_trace ON ctp_request_trace (request_trace_id);

-- Visa's CTP_ENROLLMENT_ATTEMPT notifications, recorded once each.
CREATE TABLE enrollment_attempt (
    id                 TEXT    PRIMARY KEY,
    tenant             TEXT    NOT NULL,
    token_requestor_id TEXT    NOT NULL,
    entity_id          TEXT    NOT NULL,
    kit_no             TEXT    NOT NULL,
    pan_last4          TEXT    NOT NULL CHECK (length(pan_last4) = 4),
    first_name         TEXT,
    last_name          TEXT,
    email              TEXT,
    phone              TEXT,
    jws_kid            TEXT    NOT NULL,
    jwe_kid            TEXT    NOT NULL,
    iat                BIGINT,
    received_at        BIGINT  NOT NULL,
    envelope_hash      TEXT    NOT NULL,
    FOREIGN KEY (tenant, kit_no) REFERENCES kit (tenant, kit_no)
);
CREATE UNIQUE INDEX idx_enrollment_attempt_envelope ON enrollment_attempt (envelope_hash);
CREATE INDEX idx_enrollment_attempt_kit ON enrollment_attempt (tenant, kit_no);

-- Transactional outbox: written in the same transaction as the change it announces.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT,
    published_at    BIGINT,
    dead_at         BIGINT
);
CREATE INDEX idx_outbox_pending ON outbox (next_attempt_at, id)
    WHERE published_at IS NULL AND dead_at IS NULL;
