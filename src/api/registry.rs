//! `/registry/v1/entities/{entityId}` and `/registry/v1/entities/{entityId}/kits/{kitNo}`:
//! the issuer's customers and cards. PUT creates or replaces, GET reads; card numbers go
//! in, never out.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::envelope::{ApiError, ErrorCode, ok};
use super::{Call, check_id, internal};
use crate::enrollment::EntityProfile;
use crate::enrollment::service::spawn_automatic_updates;
use crate::http::Response;
use crate::pan::Pan;
use crate::registry::import::sealing_context;
use crate::store::KitRecord;
use crate::store::enrollment::{EntityView, KitView};

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

pub fn entity_body(view: &EntityView) -> EntityBody<'_> {
    EntityBody {
        tenant: &view.tenant,
        entity_id: &view.entity_id,
        profile: &view.profile,
        ctp_status: view.ctp_status.as_str(),
        click_to_pay_customer_id: view.click_to_pay_customer_id.as_deref(),
        kits: view.kits.iter().map(kit_body).collect(),
    }
}

fn kit_body(kit: &KitView) -> KitBody<'_> {
    KitBody {
        kit_no: &kit.kit_no,
        last4: &kit.pan_last4,
        expiry: kit.expiry.as_deref(),
        name_on_card: kit.name_on_card.as_deref(),
        ctp_status: kit.ctp_status.0.as_str(),
        payment_instrument_id: kit.payment_instrument_id.as_deref(),
    }
}

pub async fn put_entity(call: &Call) -> Result<Response, ApiError> {
    let entity_id = call.param("entityId");
    check_id("entityId", entity_id)?;
    let profile: EntityProfile = call.json()?;
    profile.validate().map_err(|e| ApiError::with(ErrorCode::InvalidRequest, e.to_string()))?;
    let store = call.app.store();
    let saved = store.save_profile(&call.tenant, entity_id, &profile).await.map_err(internal)?;
    // Seed 003: only after the change has committed (it has, here).
    spawn_automatic_updates(&call.app, &call.tenant, entity_id, &saved, call.correlation_id.clone());
    let view = store.entity_view(&call.tenant, entity_id).await.map_err(internal)?.ok_or_else(|| internal("entity vanished"))?;
    Ok(ok(if saved.created { StatusCode::CREATED } else { StatusCode::OK }, entity_body(&view)))
}

pub async fn get_entity(call: &Call) -> Result<Response, ApiError> {
    let entity_id = call.param("entityId");
    check_id("entityId", entity_id)?;
    let view = call.app.store().entity_view(&call.tenant, entity_id).await.map_err(internal)?;
    let view = view.ok_or(ApiError::new(ErrorCode::EntityNotFound))?;
    Ok(ok(StatusCode::OK, entity_body(&view)))
}

/// `PUT …/kits/{kitNo}`: the card of a kit. The same rules as the CSV import.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KitPut {
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

pub async fn put_kit(call: &Call) -> Result<Response, ApiError> {
    let (entity_id, kit_no) = (call.param("entityId"), call.param("kitNo"));
    check_id("entityId", entity_id)?;
    check_id("kitNo", kit_no)?;
    let body: KitPut = call.json()?;
    let pan = Pan::parse(&body.pan).map_err(|e| ApiError::with(ErrorCode::InvalidRequest, format!("pan: {e}")))?;
    if let Some(expiry) = &body.expiry {
        let valid = expiry.len() == 7
            && expiry.as_bytes()[4] == b'-'
            && expiry[..4].bytes().all(|b| b.is_ascii_digit())
            && expiry[5..].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
        if !valid {
            return Err(ApiError::with(ErrorCode::InvalidRequest, "expiry must be YYYY-MM"));
        }
    }
    if body.name_on_card.as_ref().is_some_and(|n| n.is_empty() || n.chars().count() > 26) {
        return Err(ApiError::with(ErrorCode::InvalidRequest, "nameOnCard must be 1 to 26 characters"));
    }
    let store = call.app.store();
    if store.entity_view(&call.tenant, entity_id).await.map_err(internal)?.is_none() {
        return Err(ApiError::new(ErrorCode::EntityNotFound));
    }
    let keys = call.app.pan_keys();
    let record = KitRecord {
        tenant: call.tenant.clone(),
        entity_id: entity_id.into(),
        kit_no: kit_no.into(),
        pan_fingerprint: keys.fingerprint(&pan),
        pan_sealed: keys.seal(&pan, &sealing_context(&call.tenant, kit_no)),
        pan_last4: pan.last4().into(),
        expiry: body.expiry.clone(),
        first_name: None,
        last_name: None,
        email: None,
        phone: None,
    };
    let outcome = store.upsert_kit(&record).await.map_err(internal)?;
    if outcome == crate::store::KitUpsert::CardTaken {
        return Err(ApiError::with(ErrorCode::InvalidRequest, "pan: card number is already registered to another kit"));
    }
    store.set_name_on_card(&call.tenant, kit_no, body.name_on_card.as_deref()).await.map_err(internal)?;
    kit_answer(call, entity_id, kit_no, if outcome == crate::store::KitUpsert::Inserted { StatusCode::CREATED } else { StatusCode::OK })
        .await
}

pub async fn get_kit(call: &Call) -> Result<Response, ApiError> {
    let (entity_id, kit_no) = (call.param("entityId"), call.param("kitNo"));
    check_id("entityId", entity_id)?;
    check_id("kitNo", kit_no)?;
    kit_answer(call, entity_id, kit_no, StatusCode::OK).await
}

async fn kit_answer(call: &Call, entity_id: &str, kit_no: &str, status: StatusCode) -> Result<Response, ApiError> {
    let view = call.app.store().entity_view(&call.tenant, entity_id).await.map_err(internal)?;
    let view = view.ok_or(ApiError::new(ErrorCode::EntityNotFound))?;
    let kit = view.kits.iter().find(|k| k.kit_no == kit_no).ok_or(ApiError::new(ErrorCode::KitNotFound))?;
    Ok(ok(status, kit_body(kit)))
}
