//! Visa's enrollment-attempt notifications: recorded once each (unique on the envelope's
//! keyed digest), with the kit they matched and their outbox event, in one transaction.
//!
//! Only a [`VerifiedNotification`] can be recorded: the one way to have one is to verify
//! and decrypt a raw notification (`visa::envelope`).
//!
//! The write is batched with the writes around it: on SQLite by the store's one writer
//! (`sqlite::attempts`), on PostgreSQL by a group commit of its own (`store::batch`,
//! `postgres::attempts`). Either way each notification gets the outcome it would have had
//! alone.

use super::value::{Row, params};
use super::{Store, StoreError, sql};
use crate::visa::VerifiedNotification;

/// The kit a notification matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedKit {
    pub tenant: String,
    pub entity_id: String,
    pub kit_no: String,
}

/// What recording a verified notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Recorded {
        attempt_id: String,
        kit: MatchedKit,
    },
    /// The same envelope was recorded before; nothing new was written.
    Duplicate,
    /// No kit (of the tenant that owns the card's BIN range) has this card number; nothing
    /// was written.
    UnknownCard,
}

/// What the outbox event of a recorded attempt is made from.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub attempt_id: &'a str,
    pub kit: &'a MatchedKit,
    pub received_at: i64,
}

/// An outbox event: its type and its payload (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub event_type: &'static str,
    pub payload: String,
}

/// Makes the outbox event of an attempt once it is recorded (the kit it matched is known
/// only then, inside the transaction). Given by the caller, so that the store writes the
/// event without knowing its shape.
pub type Announce = fn(&Recorded<'_>, &VerifiedNotification) -> Announcement;

/// One notification to record.
#[derive(Clone)]
pub struct AttemptWrite {
    pub notification: VerifiedNotification,
    /// Every fingerprint the card could be stored under (one per key version).
    pub fingerprints: Vec<String>,
    /// The tenant whose BIN range holds the card, when tenants are configured: the kit is
    /// looked for there only.
    pub tenant: Option<String>,
    pub announce: Announce,
}

impl std::fmt::Debug for AttemptWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The notification carries a consumer's name and contact details: name it by its envelope.
        f.debug_struct("AttemptWrite")
            .field("envelope", &self.notification.envelope_hash())
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// A recorded enrollment attempt, as listed by `ctp-issuer attempts list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub id: String,
    pub tenant: String,
    pub token_requestor_id: String,
    pub entity_id: String,
    pub kit_no: String,
    pub pan_last4: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub jws_kid: String,
    pub jwe_kid: String,
    pub iat: Option<i64>,
    pub received_at: i64,
}

impl AttemptRow {
    fn read(row: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.text(0)?,
            tenant: row.text(1)?,
            token_requestor_id: row.text(2)?,
            entity_id: row.text(3)?,
            kit_no: row.text(4)?,
            pan_last4: row.text(5)?,
            first_name: row.opt_text(6)?,
            last_name: row.opt_text(7)?,
            email: row.opt_text(8)?,
            phone: row.opt_text(9)?,
            jws_kid: row.text(10)?,
            jwe_kid: row.text(11)?,
            iat: row.opt_int(12)?,
            received_at: row.int(13)?,
        })
    }
}

/// The new attempt's id: a UUIDv7, so that ids sort by arrival.
pub(crate) fn new_attempt_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The kit a notification's first matching fingerprint belongs to, in its tenant
/// (fingerprints in key-version order, newest first; the first match wins). `find` looks
/// one fingerprint up.
pub(crate) fn match_kit(
    item: &AttemptWrite,
    mut find: impl FnMut(&str) -> Result<Option<MatchedKit>, StoreError>,
) -> Result<Option<MatchedKit>, StoreError> {
    for fingerprint in &item.fingerprints {
        if let Some(kit) = find(fingerprint)?
            && item.tenant.as_ref().is_none_or(|tenant| *tenant == kit.tenant)
        {
            return Ok(Some(kit));
        }
    }
    Ok(None)
}

impl Store {
    /// The most recent attempts, newest first.
    pub async fn recent_attempts(&self, limit: i64) -> Result<Vec<AttemptRow>, StoreError> {
        let rows = self.query("list attempts", sql::RECENT_ATTEMPTS, params![limit]).await?;
        rows.iter().map(AttemptRow::read).collect()
    }
}
