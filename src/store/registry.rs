//! The issuer's registry: entities (customers) and their kits (cards). A card number is
//! stored only as a keyed fingerprint (for lookup), a sealed copy (for sending to the
//! network) and its last four digits: [`KitRecord`] carries nothing else of it.

use super::plan::{Applied, Expect, Plan};
use super::value::{Row, params};
use super::{Store, StoreError, sql};
use crate::ctp::CtpStatus;

/// One card of the registry, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitRecord {
    pub tenant: String,
    pub entity_id: String,
    pub kit_no: String,
    pub pan_fingerprint: String,
    pub pan_sealed: String,
    pub pan_last4: String,
    pub expiry: Option<String>,
    pub name_on_card: Option<String>,
    /// Contact details of the entity, as a card file carries them (kept when empty).
    pub contact: ImportedContact,
}

/// The entity columns a card file fills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportedContact {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// What storing a [`KitRecord`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KitUpsert {
    Inserted,
    Updated,
    Unchanged,
    /// The card number belongs to another kit; nothing was written.
    CardTaken,
    /// The kit names an entity that does not exist (when one is required); nothing was written.
    NoEntity,
}

/// An entity as stored: its profile document, the contact columns a card file filled,
/// where it stands on Click to Pay, and its kits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRecord {
    pub tenant: String,
    pub entity_id: String,
    /// The profile as the API last saved it (JSON), if ever.
    pub profile: Option<String>,
    pub imported: ImportedContact,
    pub ctp_status: CtpStatus,
    pub click_to_pay_customer_id: Option<String>,
    pub kits: Vec<KitState>,
}

/// A kit as stored, with its Click to Pay status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitState {
    pub kit_no: String,
    pub pan_last4: String,
    pub expiry: Option<String>,
    pub name_on_card: Option<String>,
    /// The sealed card number: opened only to send it to the network or show it on the
    /// card-details page.
    pub pan_sealed: String,
    pub ctp_status: CtpStatus,
    pub payment_instrument_id: Option<String>,
}

impl EntityRecord {
    pub fn kit(&self, kit_no: &str) -> Option<&KitState> {
        self.kits.iter().find(|k| k.kit_no == kit_no)
    }
}

/// A status column; no row (a LEFT JOIN that found none) is UNREGISTERED.
fn status(row: &Row, i: usize) -> Result<CtpStatus, StoreError> {
    match row.opt_text(i)? {
        None => Ok(CtpStatus::Unregistered),
        Some(s) => CtpStatus::parse(&s).ok_or(StoreError::Decode { column: i, expected: "a Click to Pay status" }),
    }
}

impl Store {
    /// The entity with its statuses and kits, if it exists in this tenant. One statement,
    /// so one consistent view.
    pub async fn entity(&self, tenant: &str, entity_id: &str) -> Result<Option<EntityRecord>, StoreError> {
        let rows = self.query("read entity", sql::ENTITY_WITH_KITS, params![tenant, entity_id]).await?;
        let Some(first) = rows.first() else { return Ok(None) };
        let mut kits = Vec::new();
        for row in &rows {
            let Some(kit_no) = row.opt_text(7)? else { continue };
            kits.push(KitState {
                kit_no,
                pan_last4: row.text(8)?,
                expiry: row.opt_text(9)?,
                name_on_card: row.opt_text(10)?,
                pan_sealed: row.text(11)?,
                ctp_status: status(row, 12)?,
                payment_instrument_id: row.opt_text(13)?,
            });
        }
        Ok(Some(EntityRecord {
            tenant: tenant.to_owned(),
            entity_id: entity_id.to_owned(),
            profile: first.opt_text(0)?,
            imported: ImportedContact {
                first_name: first.opt_text(1)?,
                last_name: first.opt_text(2)?,
                email: first.opt_text(3)?,
                phone: first.opt_text(4)?,
            },
            ctp_status: status(first, 5)?,
            click_to_pay_customer_id: first.opt_text(6)?,
            kits,
        }))
    }

    /// Saves an entity's profile document if the stored one is still `expected` (`None`:
    /// none stored, or no entity yet). `false`: it changed meanwhile, nothing was written.
    pub async fn save_profile(
        &self,
        tenant: &str,
        entity_id: &str,
        profile: &str,
        expected: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut plan = Plan::new("save profile");
        plan.step(sql::SAVE_PROFILE, params![tenant, entity_id, profile, now, expected], Expect::One);
        Ok(matches!(self.apply(plan).await?, Applied::Done(_)))
    }

    /// Creates or updates a kit, and its entity's imported contact columns. Identical data
    /// changes nothing, so re-importing a file is a no-op. With `entity_must_exist`, a kit
    /// of an unknown entity is refused instead of creating the entity.
    pub async fn upsert_kit(&self, kit: &KitRecord, entity_must_exist: bool, now: i64) -> Result<KitUpsert, StoreError> {
        let mut plan = Plan::new("store kit");
        let entity = if entity_must_exist {
            plan.step(sql::ENTITY_EXISTS, params![&kit.tenant, &kit.entity_id], Expect::One)
        } else {
            let c = &kit.contact;
            plan.step(
                sql::UPSERT_IMPORTED_ENTITY,
                params![&kit.tenant, &kit.entity_id, &c.first_name, &c.last_name, &c.email, &c.phone, now],
                Expect::Any,
            )
        };
        let existed = plan.step(sql::KIT_EXISTS, params![&kit.tenant, &kit.kit_no], Expect::Rows);
        let written = plan.step(
            sql::UPSERT_KIT,
            params![
                &kit.tenant,
                &kit.kit_no,
                &kit.entity_id,
                &kit.pan_fingerprint,
                &kit.pan_sealed,
                &kit.pan_last4,
                &kit.expiry,
                &kit.name_on_card,
                now
            ],
            Expect::Any,
        );
        let applied = self.apply(plan).await?;
        Ok(match applied {
            Applied::Conflict { at } if at == entity => KitUpsert::NoEntity,
            Applied::Conflict { .. } => KitUpsert::CardTaken,
            Applied::Done(_) if applied.rows(existed).is_empty() => KitUpsert::Inserted,
            Applied::Done(_) if applied.affected(written) > 0 => KitUpsert::Updated,
            Applied::Done(_) if !entity_must_exist && applied.affected(entity) > 0 => KitUpsert::Updated,
            Applied::Done(_) => KitUpsert::Unchanged,
        })
    }
}
