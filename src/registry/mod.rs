//! The issuer's card registry: the one place a card number comes in and is turned into
//! what is kept of it (a keyed fingerprint, a sealed copy, the last four digits), for the
//! kit PUT of the internal API and the CSV import alike. Its rules: a valid card number
//! (digits, length, Luhn), a valid expiry, a name that fits on a card, and a card inside
//! the BIN ranges of the tenant that files it (`tenants`).

pub mod import;

use std::sync::Arc;

use crate::ids::{EntityId, Expiry, KitNo, TenantId};
use crate::pan::{Pan, PanKeys, UnsealError};
use crate::store::registry::ImportedContact;
use crate::store::{KitRecord, KitUpsert, Store, StoreError};
use crate::tenants::Tenants;

/// A card as the issuer hands it in, its fields already parsed.
#[derive(Debug, Clone)]
pub struct NewCard {
    pub tenant: TenantId,
    pub entity_id: EntityId,
    pub kit_no: KitNo,
    pub pan: Pan,
    pub expiry: Option<Expiry>,
    pub name_on_card: Option<String>,
    pub contact: ImportedContact,
}

/// Why a card is not taken. The message names the field and the rule, never the value, and
/// never says anything of another tenant's cards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardRefusal {
    /// The card number is not in the tenant's BIN ranges: the same answer whether another
    /// tenant holds it or nobody does, decided before anything is read.
    #[error("pan: card number is outside this tenant's BIN ranges")]
    OutsideRanges,
    #[error("pan: card number is already registered to another kit")]
    Taken,
    #[error("nameOnCard must be 1 to 26 characters without control characters")]
    NameOnCard,
}

/// What storing a card did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Inserted,
    Updated,
    Unchanged,
}

/// Why a card was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error(transparent)]
    Refused(#[from] CardRefusal),
    #[error("entity not found")]
    NoEntity,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The registry's service. Cheap to clone.
#[derive(Clone)]
pub struct CardRegistry {
    store: Store,
    keys: Arc<PanKeys>,
    tenants: Arc<Tenants>,
}

impl std::fmt::Debug for CardRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardRegistry").field("tenants", &self.tenants.declared().len()).finish_non_exhaustive()
    }
}

/// The associated data a kit's sealed card number is bound to: a sealed value copied to
/// another row will not open.
pub fn sealing_context(tenant: &str, kit_no: &str) -> String {
    format!("kit:{tenant}/{kit_no}")
}

impl CardRegistry {
    pub fn new(store: Store, keys: Arc<PanKeys>, tenants: Arc<Tenants>) -> Self {
        Self { store, keys, tenants }
    }

    /// Checks a card against the rules and makes what is kept of it.
    pub fn seal(&self, card: &NewCard) -> Result<KitRecord, CardRefusal> {
        if !self.tenants.may_hold(card.tenant.as_str(), &card.pan) {
            return Err(CardRefusal::OutsideRanges);
        }
        if card.name_on_card.as_ref().is_some_and(|n| n.is_empty() || n.chars().count() > 26 || n.chars().any(char::is_control)) {
            return Err(CardRefusal::NameOnCard);
        }
        Ok(KitRecord {
            tenant: card.tenant.to_string(),
            entity_id: card.entity_id.to_string(),
            kit_no: card.kit_no.to_string(),
            pan_fingerprint: self.keys.fingerprint(&card.pan),
            pan_sealed: self.keys.seal(&card.pan, &sealing_context(card.tenant.as_str(), card.kit_no.as_str())),
            pan_last4: card.pan.last4().to_owned(),
            expiry: card.expiry.map(|e| e.to_string()),
            name_on_card: card.name_on_card.clone(),
            contact: card.contact.clone(),
        })
    }

    /// Stores a card of an entity that must exist already (the internal API's kit PUT).
    pub async fn put(&self, card: &NewCard, now: i64) -> Result<Stored, PutError> {
        let record = self.seal(card)?;
        stored(self.store.upsert_kit(&record, true, now).await?)
    }

    /// Stores a card of the import, creating its entity if needed.
    pub async fn import_one(&self, record: &KitRecord, now: i64) -> Result<Stored, PutError> {
        stored(self.store.upsert_kit(record, false, now).await?)
    }

    /// Opens a kit's sealed card number, for the one place it goes in clear (a request
    /// to the network, the card-details page).
    pub fn open(&self, tenant: &str, kit_no: &str, sealed: &str) -> Result<Pan, UnsealError> {
        self.keys.open(sealed, &sealing_context(tenant, kit_no))
    }
}

fn stored(upsert: KitUpsert) -> Result<Stored, PutError> {
    match upsert {
        KitUpsert::Inserted => Ok(Stored::Inserted),
        KitUpsert::Updated => Ok(Stored::Updated),
        KitUpsert::Unchanged => Ok(Stored::Unchanged),
        KitUpsert::CardTaken => Err(CardRefusal::Taken.into()),
        KitUpsert::NoEntity => Err(PutError::NoEntity),
    }
}
