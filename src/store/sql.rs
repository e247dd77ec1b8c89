//! Every statement the store runs, each written once with `$1 … $n` placeholders, which
//! both SQLite (through rusqlite, binding by name) and PostgreSQL (through sqlx) accept.
//!
//! The dialects differ in four places only, each a [`Dialect`] branch below: claiming rows
//! that other replicas may be claiming too (`FOR UPDATE SKIP LOCKED` exists only in
//! PostgreSQL; SQLite has one writer), a parameter that is a list of ids (an array in
//! PostgreSQL, JSON text read by `json_each` in SQLite), and the batched notification
//! write (PostgreSQL's `UNNEST` of arrays, `store::postgres::attempts`; SQLite writes row by
//! row with prepared statements, `store::sqlite::attempts`).

/// Which database a statement is for, where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

// --- The registry: entities (customers) and kits (cards). ---

/// An entity and everything the API and the enrollment service read with it: its profile,
/// Click to Pay status and id, and each kit with its status. One row per kit (one row with
/// null kit columns for an entity without kits), in kit order.
pub const ENTITY_WITH_KITS: &str = "
    SELECT e.profile, e.first_name, e.last_name, e.email, e.phone,
           c.ctp_entity_status, c.click_to_pay_customer_id,
           k.kit_no, k.pan_last4, k.expiry, k.name_on_card, k.pan_sealed,
           p.ctp_kit_status, p.click_to_pay_payment_instrument_id
    FROM entity e
    LEFT JOIN ctp_customer c ON c.tenant = e.tenant AND c.entity_id = e.entity_id
    LEFT JOIN kit k ON k.tenant = e.tenant AND k.entity_id = e.entity_id
    LEFT JOIN ctp_payment p ON p.tenant = k.tenant AND p.kit_no = k.kit_no
    WHERE e.tenant = $1 AND e.entity_id = $2
    ORDER BY k.kit_no";

/// Replaces an entity's profile if it is still the one read before (`$5`, null for none):
/// a concurrent change makes this touch no row.
pub const SAVE_PROFILE: &str = "
    INSERT INTO entity (tenant, entity_id, profile, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
    ON CONFLICT (tenant, entity_id) DO UPDATE SET profile = excluded.profile, updated_at = excluded.updated_at
    WHERE entity.profile IS NOT DISTINCT FROM $5";

/// The entity of an imported kit, with the contact columns the import carries; a column the
/// row leaves empty keeps its value. Touches no row when nothing changes.
pub const UPSERT_IMPORTED_ENTITY: &str = "
    INSERT INTO entity (tenant, entity_id, first_name, last_name, email, phone, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
    ON CONFLICT (tenant, entity_id) DO UPDATE SET
        first_name = COALESCE(excluded.first_name, entity.first_name),
        last_name  = COALESCE(excluded.last_name, entity.last_name),
        email      = COALESCE(excluded.email, entity.email),
        phone      = COALESCE(excluded.phone, entity.phone),
        updated_at = excluded.updated_at
    WHERE COALESCE(excluded.first_name, entity.first_name) IS DISTINCT FROM entity.first_name
       OR COALESCE(excluded.last_name, entity.last_name) IS DISTINCT FROM entity.last_name
       OR COALESCE(excluded.email, entity.email) IS DISTINCT FROM entity.email
       OR COALESCE(excluded.phone, entity.phone) IS DISTINCT FROM entity.phone";

/// Touches the entity only to require that it exists (a kit PUT names an existing entity).
pub const ENTITY_EXISTS: &str = "UPDATE entity SET updated_at = updated_at WHERE tenant = $1 AND entity_id = $2";

pub const KIT_EXISTS: &str = "SELECT 1 FROM kit WHERE tenant = $1 AND kit_no = $2";

/// Creates or replaces a kit. The sealed copy differs at every sealing (a fresh nonce), so
/// "unchanged" is judged on the fingerprint; a null name keeps the one stored. Touches no
/// row when nothing changes. A card number that another kit holds breaks the
/// fingerprint's unique index.
pub const UPSERT_KIT: &str = "
    INSERT INTO kit (tenant, kit_no, entity_id, pan_fingerprint, pan_sealed, pan_last4, expiry, name_on_card, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
    ON CONFLICT (tenant, kit_no) DO UPDATE SET
        entity_id = excluded.entity_id, pan_fingerprint = excluded.pan_fingerprint, pan_sealed = excluded.pan_sealed,
        pan_last4 = excluded.pan_last4, expiry = excluded.expiry,
        name_on_card = COALESCE(excluded.name_on_card, kit.name_on_card), updated_at = excluded.updated_at
    WHERE kit.entity_id IS DISTINCT FROM excluded.entity_id
       OR kit.pan_fingerprint IS DISTINCT FROM excluded.pan_fingerprint
       OR kit.expiry IS DISTINCT FROM excluded.expiry
       OR COALESCE(excluded.name_on_card, kit.name_on_card) IS DISTINCT FROM kit.name_on_card";

// --- The enrollment loop: statuses and request traces. ---

/// The customer's status row, created UNREGISTERED if it is missing.
pub const ENSURE_CUSTOMER: &str = "
    INSERT INTO ctp_customer (tenant, entity_id, ctp_entity_status, created_at, updated_at) VALUES ($1, $2, 'UNREGISTERED', $3, $3)
    ON CONFLICT (tenant, entity_id) DO NOTHING";

/// Moves the customer's status from `$3` to `$4` (a guard when they are equal), and records
/// the network's consumer id `$5` when given. Touches no row if the status is not `$3`.
pub const MOVE_CUSTOMER: &str = "
    UPDATE ctp_customer SET ctp_entity_status = $4, click_to_pay_customer_id = COALESCE($5, click_to_pay_customer_id), updated_at = $6
    WHERE tenant = $1 AND entity_id = $2 AND ctp_entity_status = $3";

/// Moves a card that has no status row yet, or one still UNREGISTERED (`$4`), to `$5`,
/// recording the network's instrument id `$6` when given. Touches no row if the card's row
/// holds another status.
pub const MOVE_NEW_KIT: &str = "
    INSERT INTO ctp_payment (tenant, ctp_customer_pkey, kit_no, ctp_kit_status, click_to_pay_payment_instrument_id, created_at, updated_at)
    SELECT $1, c.pkey, $3, $5, $6, $7, $7 FROM ctp_customer c WHERE c.tenant = $1 AND c.entity_id = $2
    ON CONFLICT (tenant, kit_no) DO UPDATE SET
        ctp_kit_status = excluded.ctp_kit_status, ctp_customer_pkey = excluded.ctp_customer_pkey,
        click_to_pay_payment_instrument_id = COALESCE(excluded.click_to_pay_payment_instrument_id, ctp_payment.click_to_pay_payment_instrument_id),
        updated_at = excluded.updated_at
    WHERE ctp_payment.ctp_kit_status = $4";

/// Moves a card of the entity's customer from `$4` (any status a row holds) to `$5`, with
/// the same parameters as [`MOVE_NEW_KIT`]. Touches no row if the status is not `$4`.
/// (A card read in a status other than UNREGISTERED has a row: rows are never deleted.)
pub const MOVE_KIT: &str = "
    UPDATE ctp_payment SET ctp_kit_status = $5, click_to_pay_payment_instrument_id = COALESCE($6, click_to_pay_payment_instrument_id), updated_at = $7
    WHERE tenant = $1 AND kit_no = $3 AND ctp_kit_status = $4
      AND ctp_customer_pkey = (SELECT pkey FROM ctp_customer WHERE tenant = $1 AND entity_id = $2)";

pub const INSERT_TRACE: &str = "
    INSERT INTO ctp_request_trace (tenant, request_id, entity_id, kit_no, event, status_ctp, prev_entity_status, prev_kit_status,
                                   correlation_id, next_poll_at, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, 'IN_PROGRESS', $6, $7, $8, $9, $10, $10)";

pub const ATTACH_TRACE_ID: &str =
    "UPDATE ctp_request_trace SET request_trace_id = $2, updated_at = $3 WHERE request_id = $1 AND request_trace_id IS NULL";

/// Finishes a request that is still IN_PROGRESS; touches no row otherwise.
pub const FINISH_TRACE: &str = "
    UPDATE ctp_request_trace SET status_ctp = $2, error_details = $3, request_trace_id = COALESCE(request_trace_id, $4), updated_at = $5
    WHERE request_id = $1 AND status_ctp = 'IN_PROGRESS'";

/// A callback's webhook id, once: a second delivery inserts nothing.
pub const RECORD_CALLBACK: &str = "INSERT INTO saas_callback (webhook_id, received_at) VALUES ($1, $2) ON CONFLICT (webhook_id) DO NOTHING";

/// The columns of a request trace, in [`super::enrollment::TraceRow`]'s order.
macro_rules! trace_columns {
    ($t:literal) => {
        concat!(
            $t,
            "tenant, ",
            $t,
            "request_id, ",
            $t,
            "request_trace_id, ",
            $t,
            "entity_id, ",
            $t,
            "kit_no, ",
            $t,
            "event, ",
            $t,
            "status_ctp, ",
            $t,
            "error_details, ",
            $t,
            "correlation_id, ",
            $t,
            "created_at, ",
            $t,
            "updated_at"
        )
    };
}

/// A trace by the SaaS's trace id or our request id, within a tenant.
pub const TRACE_IN_TENANT: &str =
    concat!("SELECT ", trace_columns!(""), " FROM ctp_request_trace WHERE tenant = $1 AND (request_trace_id = $2 OR request_id = $2)");

/// A trace with what finishing it needs: the statuses it moved things from, and where the
/// customer stands now.
pub const TRACE_TO_FINISH: &str = concat!(
    "SELECT ",
    trace_columns!("t."),
    ", t.prev_entity_status, t.prev_kit_status, c.ctp_entity_status, c.click_to_pay_customer_id
     FROM ctp_request_trace t LEFT JOIN ctp_customer c ON c.tenant = t.tenant AND c.entity_id = t.entity_id
     WHERE t.request_id = $1"
);

/// Each kit of a request's entity with its Click to Pay status, by our request id.
pub const KIT_STATUSES_OF_REQUEST: &str = "
    SELECT k.kit_no, p.ctp_kit_status
    FROM ctp_request_trace t
    JOIN kit k ON k.tenant = t.tenant AND k.entity_id = t.entity_id
    LEFT JOIN ctp_payment p ON p.tenant = k.tenant AND p.kit_no = k.kit_no
    WHERE t.request_id = $1 ORDER BY k.kit_no";

/// Claims up to `$3` requests IN_PROGRESS whose poll time `$2` has come, pushing it to `$1`.
pub fn claim_due_traces(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => concat!(
            "UPDATE ctp_request_trace SET next_poll_at = $1
             WHERE pkey IN (SELECT pkey FROM ctp_request_trace WHERE status_ctp = 'IN_PROGRESS' AND next_poll_at <= $2
                            ORDER BY next_poll_at LIMIT $3)
             RETURNING ",
            trace_columns!("")
        ),
        Dialect::Postgres => concat!(
            "UPDATE ctp_request_trace SET next_poll_at = $1
             WHERE pkey IN (SELECT pkey FROM ctp_request_trace WHERE status_ctp = 'IN_PROGRESS' AND next_poll_at <= $2
                            ORDER BY next_poll_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            trace_columns!("")
        ),
    }
}

// --- Idempotency keys. ---

/// Claims a key for a request about to run; inserts nothing if the key is taken.
pub const CLAIM_IDEMPOTENCY_KEY: &str = "
    INSERT INTO idempotency_request (tenant, idempotency_key, request_digest, created_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (tenant, idempotency_key) DO NOTHING";

pub const IDEMPOTENCY_KEY: &str = "
    SELECT request_digest, response_status, response_body, created_at FROM idempotency_request
    WHERE tenant = $1 AND idempotency_key = $2";

/// Takes over a claim whose request never finished (its process died) and is older than `$5`.
pub const RECLAIM_IDEMPOTENCY_KEY: &str = "
    UPDATE idempotency_request SET request_digest = $3, created_at = $4
    WHERE tenant = $1 AND idempotency_key = $2 AND response_status IS NULL AND created_at < $5";

pub const COMPLETE_IDEMPOTENCY_KEY: &str = "
    UPDATE idempotency_request SET response_status = $4, response_body = $5, completed_at = $6
    WHERE tenant = $1 AND idempotency_key = $2 AND created_at = $3 AND response_status IS NULL";

/// Gives a claim back (our own failure: a retry with the key may succeed).
pub const RELEASE_IDEMPOTENCY_KEY: &str =
    "DELETE FROM idempotency_request WHERE tenant = $1 AND idempotency_key = $2 AND created_at = $3 AND response_status IS NULL";

/// Idempotency keys first used before `$1`, at most `$2` at a time.
pub const PURGE_IDEMPOTENCY_KEYS: &str = "
    DELETE FROM idempotency_request WHERE (tenant, idempotency_key) IN
        (SELECT tenant, idempotency_key FROM idempotency_request WHERE created_at < $1 ORDER BY created_at LIMIT $2)";

// --- Visa's notifications. ---

pub const ATTEMPT_SEEN: &str = "SELECT 1 FROM enrollment_attempt WHERE envelope_hash = $1";

/// The kit holding a card, within the tenant that owns its BIN range (`$2`), or in any
/// tenant when none is configured (`$2` null).
pub const FIND_KIT: &str =
    "SELECT tenant, entity_id, kit_no FROM kit WHERE pan_fingerprint = $1 AND (CAST($2 AS TEXT) IS NULL OR tenant = $2)";

/// `ON CONFLICT DO NOTHING` makes a redelivery (or a second copy in the same batch) change
/// no row, which is how a duplicate is told from a new attempt.
pub const INSERT_ATTEMPT: &str = "
    INSERT INTO enrollment_attempt (id, tenant, token_requestor_id, entity_id, kit_no, pan_last4,
        first_name, last_name, email, phone, jws_kid, jwe_kid, iat, received_at, envelope_hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
    ON CONFLICT (envelope_hash) DO NOTHING";

pub const RECENT_ATTEMPTS: &str = "
    SELECT id, tenant, token_requestor_id, entity_id, kit_no, pan_last4, first_name, last_name, email, phone,
           jws_kid, jwe_kid, iat, received_at
    FROM enrollment_attempt ORDER BY id DESC LIMIT $1";

// --- The outbox. ---

pub const INSERT_OUTBOX: &str = "INSERT INTO outbox (tenant, event_type, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $4)";

/// Claims up to `$4` due events for relay `$1` until `$2`: see `store::outbox`.
pub fn claim_outbox(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "UPDATE outbox SET claimed_by = $1, next_attempt_at = $2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $3
                          ORDER BY id LIMIT $4)
             RETURNING id, tenant, event_type, payload, created_at, attempts"
        }
        Dialect::Postgres => {
            "WITH batch AS (
                 SELECT id FROM outbox WHERE published_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $3
                 ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE outbox SET claimed_by = $1, next_attempt_at = $2, attempts = outbox.attempts + 1
             FROM batch WHERE outbox.id = batch.id
             RETURNING outbox.id, outbox.tenant, outbox.event_type, outbox.payload, outbox.created_at, outbox.attempts"
        }
    }
}

/// Marks the events whose ids are the list `$2` published at `$1`.
pub fn mark_outbox_published(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "UPDATE outbox SET published_at = $1, claimed_by = NULL
             WHERE published_at IS NULL AND id IN (SELECT value FROM json_each($2))"
        }
        Dialect::Postgres => "UPDATE outbox SET published_at = $1, claimed_by = NULL WHERE published_at IS NULL AND id = ANY($2)",
    }
}

/// Records a failed publish of an event relay `$5` still holds.
pub const MARK_OUTBOX_FAILED: &str = "
    UPDATE outbox SET last_error = $1, next_attempt_at = $2, dead_at = $3, claimed_by = NULL
    WHERE id = $4 AND claimed_by = $5 AND published_at IS NULL";

/// Waiting events, the creation time of the oldest, and dead events. Each count reads
/// through its own partial index, so the cost follows the backlog, not the table.
pub const OUTBOX_STATS: &str = "
    SELECT (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND dead_at IS NULL),
           (SELECT created_at FROM outbox WHERE id = (SELECT MIN(id) FROM outbox WHERE published_at IS NULL AND dead_at IS NULL)),
           (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND dead_at IS NOT NULL)";

pub const LIST_WAITING_OUTBOX: &str = "
    SELECT id, tenant, event_type, created_at, attempts, next_attempt_at, last_error, dead_at, claimed_by
    FROM outbox WHERE published_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT $1";

pub const LIST_DEAD_OUTBOX: &str = "
    SELECT id, tenant, event_type, created_at, attempts, next_attempt_at, last_error, dead_at, claimed_by
    FROM outbox WHERE published_at IS NULL AND dead_at IS NOT NULL ORDER BY id LIMIT $1";

/// Waiting events with their payloads, oldest first (for inspection and tests).
pub const WAITING_OUTBOX_EVENTS: &str = "
    SELECT id, tenant, event_type, payload, created_at, attempts
    FROM outbox WHERE published_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT $1";

pub const REDRIVE_ALL_OUTBOX: &str = "
    UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $1, claimed_by = NULL
    WHERE dead_at IS NOT NULL AND published_at IS NULL RETURNING id";

pub const REDRIVE_OUTBOX: &str = "
    UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $1, claimed_by = NULL
    WHERE id = $2 AND dead_at IS NOT NULL AND published_at IS NULL RETURNING id";

/// Published events older than `$1`, at most `$2` at a time (the outbox's retention).
pub const PURGE_PUBLISHED_OUTBOX: &str =
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at < $1 ORDER BY published_at LIMIT $2)";

/// Callback receipts older than `$1`, at most `$2` at a time: past the webhook tolerance a
/// redelivery is refused by its timestamp anyway.
pub const PURGE_CALLBACKS: &str = "DELETE FROM saas_callback WHERE webhook_id IN (SELECT webhook_id FROM saas_callback WHERE received_at < $1 ORDER BY received_at LIMIT $2)";

// --- The card-details page's one-time links (`store::widget`). ---

pub const INSERT_WIDGET_LINK: &str =
    "INSERT INTO widget_link (link_hash, tenant, expires_at, dob_tries_left, created_at) VALUES ($1, $2, $3, $4, $5)";

pub const WIDGET_LINK: &str = "SELECT expires_at, dob_tries_left, used_at FROM widget_link WHERE link_hash = $1";

/// Uses a link that is still usable at `$2` (unused, tries left, not expired). Exactly one
/// caller touches the row; every other, concurrent or later, touches none.
pub const USE_WIDGET_LINK: &str = "
    UPDATE widget_link SET used_at = $2
    WHERE link_hash = $1 AND used_at IS NULL AND dob_tries_left > 0 AND expires_at > $2";

/// Counts one wrong date of birth against a link still usable at `$2`, returning the
/// tries left (0: it is burned). Touches no row for a link that is not usable.
pub const WRONG_DOB_WIDGET_LINK: &str = "
    UPDATE widget_link SET dob_tries_left = dob_tries_left - 1
    WHERE link_hash = $1 AND used_at IS NULL AND dob_tries_left > 0 AND expires_at > $2
    RETURNING dob_tries_left";

/// Links that expired before `$1`, at most `$2` at a time.
pub const PURGE_WIDGET_LINKS: &str =
    "DELETE FROM widget_link WHERE link_hash IN (SELECT link_hash FROM widget_link WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)";
