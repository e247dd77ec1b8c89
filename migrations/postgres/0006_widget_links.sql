-- The card-details page's one-time links. Keep in step with migrations/sqlite/0006_widget_links.sql.

-- One row per issued link, keyed by the keyed hash of the link's random id
-- (`<kid>:<hex HMAC-SHA-256>`): never the id itself, never the token, never a card number.
-- A link is usable while it is unused, has date-of-birth tries left and has not expired;
-- using it is one guarded UPDATE, so of concurrent reveals on any replicas exactly one
-- wins. Rows are deleted by the retention janitor a while after they expire.
CREATE TABLE widget_link (
    link_hash      TEXT   PRIMARY KEY,
    tenant         TEXT   NOT NULL,
    expires_at     BIGINT NOT NULL,
    dob_tries_left BIGINT NOT NULL CHECK (dob_tries_left >= 0),
    used_at        BIGINT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX idx_widget_link_expires ON widget_link (expires_at);
