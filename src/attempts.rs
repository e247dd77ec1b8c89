//! Visa's enrollment-attempt notifications, once verified: which issuer the card belongs
//! to (the tenant whose BIN range holds it), which of that issuer's kits it is (by keyed
//! fingerprint, under every key version), and the record of the attempt with its outbox
//! event, once however often Visa delivers it.

use std::sync::Arc;

use crate::notify::{CTP_ENROLLMENT_ATTEMPT, enrollment_attempt_payload};
use crate::pan::PanKeys;
use crate::store::attempts::{Announcement, AttemptWrite, Recorded};
use crate::store::{AttemptOutcome, Store, StoreError};
use crate::tenants::{Owner, Tenants};
use crate::visa::VerifiedNotification;

/// Records verified notifications. Cheap to clone.
#[derive(Clone)]
pub struct AttemptRecorder {
    store: Store,
    keys: Arc<PanKeys>,
    tenants: Arc<Tenants>,
}

impl std::fmt::Debug for AttemptRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptRecorder").finish_non_exhaustive()
    }
}

impl AttemptRecorder {
    pub fn new(store: Store, keys: Arc<PanKeys>, tenants: Arc<Tenants>) -> Self {
        Self { store, keys, tenants }
    }

    /// The keys that make envelope digests and card fingerprints.
    pub fn keys(&self) -> &PanKeys {
        &self.keys
    }

    /// Whether an envelope with this digest has been recorded.
    pub async fn seen(&self, envelope_digest: &str) -> Result<bool, StoreError> {
        self.store.attempt_seen(envelope_digest).await
    }

    /// Records the attempt, if a kit of the card's issuer holds the card.
    pub async fn record(&self, notification: VerifiedNotification) -> Result<AttemptOutcome, StoreError> {
        let pan = &notification.attempt().pan;
        let tenant = match self.tenants.owner_of(pan) {
            Owner::SingleIssuer => None,
            Owner::Tenant(tenant) => Some(tenant.to_owned()),
            Owner::Nobody => return Ok(AttemptOutcome::UnknownCard),
        };
        let fingerprints = self.keys.lookup_fingerprints(pan);
        self.store.record_attempt(AttemptWrite { notification, fingerprints, tenant, announce }).await
    }
}

/// The outbox event of a recorded attempt.
fn announce(recorded: &Recorded<'_>, notification: &VerifiedNotification) -> Announcement {
    Announcement {
        event_type: CTP_ENROLLMENT_ATTEMPT,
        payload: enrollment_attempt_payload(recorded.attempt_id, recorded.kit, notification, recorded.received_at),
    }
}
