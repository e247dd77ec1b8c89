//! `POST /registry/v1/entities/{entityId}/kits/{kitNo}/detailsUrl`: a one-time link to
//! the secure card-details page (M2P's "Get secure card details widget URL"). The answer
//! is `{url, expiresAt}`; the issuer's app opens the URL in a web view, and the card number
//! never passes through the app.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::envelope::{ApiError, ErrorCode, ok};
use super::{Call, internal};
use crate::http::Response;
use crate::ids::{EntityId, KitNo};
use crate::widget::IssueLinkError;

/// The body, if any: nothing is asked for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DetailsUrl {
    url: String,
    /// RFC 3339, UTC, to the second.
    expires_at: String,
}

pub async fn details_url(call: &Call<'_>) -> Result<Response, ApiError> {
    let entity_id = call.id("entityId", EntityId::parse)?;
    let kit_no = call.id("kitNo", KitNo::parse)?;
    if !call.body.iter().all(u8::is_ascii_whitespace) {
        let _: NoFields = call.json()?;
    }
    let services = call.services;
    let Some(page) = services.widget.as_ref() else {
        return Err(ApiError::with(ErrorCode::NoSuchRoute, "the card-details page is switched off (widget.enabled)"));
    };
    let base = services.widget_url().ok_or_else(|| internal("the card-details page's address is not known yet"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let issued = page.issue(&call.tenant, &entity_id, &kit_no, now).await.map_err(|e| match e {
        IssueLinkError::NoEntity => ApiError::new(ErrorCode::EntityNotFound),
        IssueLinkError::NoKit => ApiError::new(ErrorCode::KitNotFound),
        e @ (IssueLinkError::NoExpiry | IssueLinkError::DobRequired) => ApiError::with(ErrorCode::InvalidRequest, e.to_string()),
        e @ (IssueLinkError::NoCvk | IssueLinkError::Input(_) | IssueLinkError::Ledger(_) | IssueLinkError::Cards(_)) => internal(e),
    })?;
    let expires = UNIX_EPOCH + Duration::from_secs(u64::try_from(issued.expires_at).unwrap_or(0));
    let expires_at = humantime_serde::re::humantime::format_rfc3339_seconds(expires).to_string();
    Ok(ok(StatusCode::OK, DetailsUrl { url: issued.token.url(base), expires_at }))
}
