//! The service's side of the page's two traits: the link ledger is the store's
//! `widget_link` table ([`StoreLedger`]), the card source is the registry
//! ([`RegistryCards`]), which opens the sealed card number.
//!
//! The ledger keeps time in epoch milliseconds like every table; the page counts in epoch
//! seconds like the token. The conversion is here and nowhere else.

use std::time::SystemTime;

use super::flow::{CardForDisplay, CardSource, CardSourceError, Consume, KitLookup, LedgerError, LinkLedger, LinkState, WrongDob};
use super::{LinkHash, MAX_DOB_TRIES};
use crate::enrollment::EntityProfile;
use crate::ids::{EntityId, Expiry, KitNo, TenantId};
use crate::registry::CardRegistry;
use crate::store::registry::{EntityRecord, KitState};
use crate::store::{Store, StoreError, epoch_millis};

fn millis(epoch_seconds: i64) -> i64 {
    epoch_seconds.saturating_mul(1000)
}

fn ledger_error(e: StoreError) -> LedgerError {
    LedgerError(e.to_string())
}

/// The links in the database, shared by every replica.
#[derive(Debug, Clone)]
pub struct StoreLedger {
    store: Store,
}

impl StoreLedger {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl LinkLedger for StoreLedger {
    async fn register(&self, link: &LinkHash, tenant: &TenantId, expires_at: i64) -> Result<(), LedgerError> {
        let now = epoch_millis(SystemTime::now());
        let inserted = self
            .store
            .insert_widget_link(link.as_str(), tenant.as_str(), millis(expires_at), i64::from(MAX_DOB_TRIES), now)
            .await
            .map_err(ledger_error)?;
        // 128 random bits: a collision means the random source is broken, not bad luck.
        if inserted { Ok(()) } else { Err(LedgerError("a link with this hash is already recorded".into())) }
    }

    async fn state(&self, link: &LinkHash, now: i64) -> Result<LinkState, LedgerError> {
        let row = self.store.widget_link(link.as_str()).await.map_err(ledger_error)?;
        Ok(match row {
            Some(row) if row.used_at.is_none() && row.dob_tries_left > 0 && millis(now) < row.expires_at => {
                LinkState::Usable { tries_left: u8::try_from(row.dob_tries_left).unwrap_or(MAX_DOB_TRIES).min(MAX_DOB_TRIES) }
            }
            _ => LinkState::Gone,
        })
    }

    async fn consume(&self, link: &LinkHash, now: i64) -> Result<Consume, LedgerError> {
        let won = self.store.use_widget_link(link.as_str(), millis(now)).await.map_err(ledger_error)?;
        Ok(if won { Consume::Won } else { Consume::Gone })
    }

    async fn record_wrong_dob(&self, link: &LinkHash, now: i64) -> Result<WrongDob, LedgerError> {
        let left = self.store.count_wrong_dob(link.as_str(), millis(now)).await.map_err(ledger_error)?;
        Ok(match left {
            None => WrongDob::Gone,
            Some(n) if n <= 0 => WrongDob::Burned,
            Some(n) => WrongDob::TriesLeft(u8::try_from(n).unwrap_or(MAX_DOB_TRIES).min(MAX_DOB_TRIES)),
        })
    }
}

/// Cards from the registry: the entity's kit, its expiry and name, the card number opened
/// from its sealed copy; and the holder's date of birth from the profile.
#[derive(Debug, Clone)]
pub struct RegistryCards {
    store: Store,
    registry: CardRegistry,
}

impl RegistryCards {
    pub fn new(store: Store, registry: CardRegistry) -> Self {
        Self { store, registry }
    }

    async fn entity(&self, tenant: &TenantId, entity_id: &EntityId) -> Result<Option<EntityRecord>, CardSourceError> {
        self.store.entity(tenant.as_str(), entity_id.as_str()).await.map_err(|e| CardSourceError(e.to_string()))
    }
}

fn expiry(kit: &KitState) -> Option<Expiry> {
    kit.expiry.as_deref().and_then(|e| Expiry::parse(e).ok())
}

impl CardSource for RegistryCards {
    async fn lookup(&self, tenant: &TenantId, entity_id: &EntityId, kit_no: &KitNo) -> Result<KitLookup, CardSourceError> {
        let Some(record) = self.entity(tenant, entity_id).await? else { return Ok(KitLookup::NoEntity) };
        let Some(kit) = record.kit(kit_no.as_str()) else { return Ok(KitLookup::NoKit) };
        let profile = EntityProfile::from_stored(record.profile.as_deref(), &record.imported);
        Ok(KitLookup::Found { expiry: expiry(kit), date_of_birth: profile.date_of_birth() })
    }

    async fn card(&self, tenant: &TenantId, entity_id: &EntityId, kit_no: &KitNo) -> Result<Option<CardForDisplay>, CardSourceError> {
        let Some(record) = self.entity(tenant, entity_id).await? else { return Ok(None) };
        let Some(kit) = record.kit(kit_no.as_str()) else { return Ok(None) };
        let Some(expiry) = expiry(kit) else { return Ok(None) };
        let pan = self
            .registry
            .open(tenant.as_str(), kit_no.as_str(), &kit.pan_sealed)
            .map_err(|e| CardSourceError(format!("the kit's sealed card number does not open: {e}")))?;
        Ok(Some(CardForDisplay { pan, expiry, name_on_card: kit.name_on_card.clone() }))
    }
}
