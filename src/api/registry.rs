//! `/registry/v1/entities/{entityId}` and `/registry/v1/entities/{entityId}/kits/{kitNo}`:
//! the issuer's customers and cards. PUT creates or replaces, GET reads; card numbers go
//! in, never out.

use std::time::SystemTime;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::envelope::{ApiError, ErrorCode, ok};
use super::{Call, internal, invalid};
use crate::enrollment::EntityProfile;
use crate::http::Response;
use crate::ids::{EntityId, Expiry, KitNo};
use crate::pan::Pan;
use crate::registry::{NewCard, PutError, Stored};
use crate::store::epoch_millis;
use crate::store::registry::{EntityRecord, ImportedContact, KitState};

/// An entity as answered by the API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityBody<'a> {
    pub tenant: &'a str,
    pub entity_id: &'a str,
    pub profile: &'a EntityProfile,
    pub ctp_status: &'static str,
    pub click_to_pay_customer_id: Option<&'a str>,
    pub kits: Vec<KitBody<'a>>,
}

/// A kit as answered by the API: last four digits only.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KitBody<'a> {
    pub kit_no: &'a str,
    pub last4: &'a str,
    pub expiry: Option<&'a str>,
    pub name_on_card: Option<&'a str>,
    pub ctp_status: &'static str,
    pub payment_instrument_id: Option<&'a str>,
}

pub fn entity_body<'a>(record: &'a EntityRecord, profile: &'a EntityProfile) -> EntityBody<'a> {
    EntityBody {
        tenant: &record.tenant,
        entity_id: &record.entity_id,
        profile,
        ctp_status: record.ctp_status.as_str(),
        click_to_pay_customer_id: record.click_to_pay_customer_id.as_deref(),
        kits: record.kits.iter().map(kit_body).collect(),
    }
}

fn kit_body(kit: &KitState) -> KitBody<'_> {
    KitBody {
        kit_no: &kit.kit_no,
        last4: &kit.pan_last4,
        expiry: kit.expiry.as_deref(),
        name_on_card: kit.name_on_card.as_deref(),
        ctp_status: kit.ctp_status.as_str(),
        payment_instrument_id: kit.payment_instrument_id.as_deref(),
    }
}

pub async fn put_entity(call: &Call<'_>) -> Result<Response, ApiError> {
    let entity_id = call.id("entityId", EntityId::parse)?;
    let profile: EntityProfile = call.json()?;
    profile.validate().map_err(|e| ApiError::with(ErrorCode::InvalidRequest, e.to_string()))?;
    let enrollment = &call.services.enrollment;
    let saved = enrollment.save_profile(&call.tenant, &entity_id, &profile, call.correlation_id.clone()).await.map_err(internal)?;
    let (record, profile) =
        enrollment.entity(&call.tenant, &entity_id).await.map_err(internal)?.ok_or_else(|| internal("entity vanished"))?;
    Ok(ok(if saved.created { StatusCode::CREATED } else { StatusCode::OK }, entity_body(&record, &profile)))
}

pub async fn get_entity(call: &Call<'_>) -> Result<Response, ApiError> {
    let entity_id = call.id("entityId", EntityId::parse)?;
    let found = call.services.enrollment.entity(&call.tenant, &entity_id).await.map_err(internal)?;
    let (record, profile) = found.ok_or(ApiError::new(ErrorCode::EntityNotFound))?;
    Ok(ok(StatusCode::OK, entity_body(&record, &profile)))
}

/// `PUT …/kits/{kitNo}`: the card of a kit. The same rules as the CSV import.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KitPut {
    #[serde(deserialize_with = "zeroizing_string")]
    pan: Zeroizing<String>,
    #[serde(default)]
    expiry: Option<String>,
    #[serde(default)]
    name_on_card: Option<String>,
}

fn zeroizing_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

impl std::fmt::Debug for KitPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KitPut").field("pan", &"<redacted>").finish_non_exhaustive()
    }
}

pub async fn put_kit(call: &Call<'_>) -> Result<Response, ApiError> {
    let entity_id = call.id("entityId", EntityId::parse)?;
    let kit_no = call.id("kitNo", KitNo::parse)?;
    let body: KitPut = call.json()?;
    let card = NewCard {
        tenant: call.tenant.clone(),
        entity_id: entity_id.clone(),
        kit_no: kit_no.clone(),
        pan: Pan::parse(&body.pan).map_err(|e| ApiError::with(ErrorCode::InvalidRequest, format!("pan: {e}")))?,
        expiry: body.expiry.as_deref().map(Expiry::parse).transpose().map_err(invalid)?,
        name_on_card: body.name_on_card,
        contact: ImportedContact::default(),
    };
    let stored = call.services.registry.put(&card, epoch_millis(SystemTime::now())).await.map_err(|e| match e {
        PutError::Refused(refusal) => ApiError::with(ErrorCode::InvalidRequest, refusal.to_string()),
        PutError::NoEntity => ApiError::new(ErrorCode::EntityNotFound),
        PutError::Store(e) => internal(e),
    })?;
    kit_answer(call, &entity_id, &kit_no, if stored == Stored::Inserted { StatusCode::CREATED } else { StatusCode::OK }).await
}

pub async fn get_kit(call: &Call<'_>) -> Result<Response, ApiError> {
    let entity_id = call.id("entityId", EntityId::parse)?;
    let kit_no = call.id("kitNo", KitNo::parse)?;
    kit_answer(call, &entity_id, &kit_no, StatusCode::OK).await
}

async fn kit_answer(call: &Call<'_>, entity_id: &EntityId, kit_no: &KitNo, status: StatusCode) -> Result<Response, ApiError> {
    let found = call.services.enrollment.entity(&call.tenant, entity_id).await.map_err(internal)?;
    let (record, _) = found.ok_or(ApiError::new(ErrorCode::EntityNotFound))?;
    let kit = record.kit(kit_no.as_str()).ok_or(ApiError::new(ErrorCode::KitNotFound))?;
    Ok(ok(status, kit_body(kit)))
}
