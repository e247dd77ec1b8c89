//! What every internal API request passes before its handler runs: the bearer token, the
//! tenant (the token must allow it, and when tenants are declared it must be one), the
//! correlation id, the body limit, and the Idempotency-Key.
//!
//! An Idempotency-Key is claimed in the database before the handler runs, so that across
//! replicas exactly one request with a key runs: a concurrent one with the same body is
//! answered 409 Y121 while the first runs and gets its answer after; one with another body
//! is 409 Y120. The request is remembered only as a keyed digest of method, path and body
//! (a body may hold a card number). Our own failures (5xx) give the key back, so that a
//! retry may succeed; a claim whose process died is taken over once it is older than twice
//! the request timeout.

use std::time::SystemTime;

use http::{HeaderMap, Method, StatusCode, header};
use serde_json::Value;

use super::envelope::{ApiError, ErrorCode};
use super::{Call, Route, internal, invalid, run};
use crate::http::{BodyError, Request, Response, read_body};
use crate::ids::{CorrelationId, IdempotencyKey, TenantId};
use crate::state::Services;
use crate::store::epoch_millis;
use crate::store::idempotency::Claim;

/// Largest request body the internal API reads.
const MAX_BODY: usize = 64 * 1024;

pub(super) async fn pass(services: &Services, route: Route, params: Vec<(String, String)>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = services.api_auth.verify(authorization, SystemTime::now()).map_err(|e| {
        tracing::info!(reason = %e, "internal API: unauthorized");
        ApiError::new(ErrorCode::Unauthorized)
    })?;
    let tenant = tenant_header(&headers)?;
    if !caller.may_act_for(tenant.as_str()) || !services.tenants.accepts(tenant.as_str()) {
        return Err(ApiError::new(ErrorCode::TenantNotAllowed));
    }
    let correlation_id = correlation_id(&headers)?;
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (_, body) = read_body(request, MAX_BODY).await.map_err(|e| match e {
        BodyError::TooLarge(n) => ApiError::with(ErrorCode::InvalidRequest, format!("body exceeds {n} bytes")),
        BodyError::Io(_) => ApiError::with(ErrorCode::InvalidRequest, "body could not be read"),
    })?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(IdempotencyKey::parse(v.to_str().unwrap_or_default()).map_err(invalid)?),
    };
    tracing::debug!(
        route = route.name(),
        %tenant,
        correlation_id = correlation_id.as_ref().map(CorrelationId::as_str).unwrap_or(""),
        "internal API call"
    );
    let call = Call { services, tenant, correlation_id, method, params, body };
    match idempotency_key.filter(|_| call.method != Method::GET && route.replays()) {
        None => run(route, &call).await,
        Some(key) => once(route, &call, &path, &key).await,
    }
}

/// Runs the request at most once for its key.
async fn once(route: Route, call: &Call<'_>, path: &str, key: &IdempotencyKey) -> Result<Response, ApiError> {
    let services = call.services;
    let tenant = call.tenant.as_str();
    let digest = services.keys.digest_parts(&[call.method.as_str().as_bytes(), path.as_bytes(), &call.body]);
    let now = epoch_millis(SystemTime::now());
    let stale = i64::try_from((services.config.http.request_timeout * 2).as_millis()).unwrap_or(i64::MAX);
    let claim = services.store.claim_idempotency_key(tenant, key.as_str(), &digest, now, now.saturating_sub(stale)).await;
    let claimed_at = match claim.map_err(internal)? {
        Claim::Mismatch => return Err(ApiError::new(ErrorCode::IdempotencyConflict)),
        Claim::InFlight => return Err(ApiError::new(ErrorCode::IdempotencyInFlight)),
        Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let mut response = crate::http::json(status, &body);
            response.headers_mut().insert("idempotent-replayed", header::HeaderValue::from_static("true"));
            return Ok(response);
        }
        Claim::Claimed { claimed_at } => claimed_at,
    };
    let (status, body) = match run(route, call).await {
        Ok(response) => response_parts(response).await,
        Err(error) => (error.status(), error.body()),
    };
    let store = &services.store;
    let kept = if status.is_server_error() {
        store.release_idempotency_key(tenant, key.as_str(), claimed_at).await
    } else {
        store
            .complete_idempotency_key(tenant, key.as_str(), claimed_at, status.as_u16(), &body.to_string(), epoch_millis(SystemTime::now()))
            .await
    };
    if let Err(e) = kept {
        // The answer stands; the key stays claimed until it is stale, and a retry meanwhile is told to wait.
        tracing::warn!(error = %e, "idempotency key not updated");
    }
    Ok(crate::http::json(status, &body))
}

async fn response_parts(response: Response) -> (StatusCode, Value) {
    use http_body_util::BodyExt;
    let status = response.status();
    let bytes = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// `TENANT` (M2P's name) or `X-TENANT-ID`.
pub fn tenant_header(headers: &HeaderMap) -> Result<TenantId, ApiError> {
    let value = headers.get("tenant").or_else(|| headers.get("x-tenant-id")).ok_or(ApiError::new(ErrorCode::MissingTenant))?;
    let tenant = value.to_str().map_err(|_| ApiError::new(ErrorCode::MissingTenant))?.trim();
    TenantId::parse(tenant).map_err(invalid)
}

/// `x-correlation-id`: Thales D1's rule, because it is logged in clear and passed on.
pub fn correlation_id(headers: &HeaderMap) -> Result<Option<CorrelationId>, ApiError> {
    let Some(value) = headers.get("x-correlation-id") else { return Ok(None) };
    CorrelationId::parse(value.to_str().unwrap_or_default()).map(Some).map_err(invalid)
}
