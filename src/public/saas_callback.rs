//! The SaaS layer's callback, on the public listener: `POST /ctp/v1/saas/callback`.
//!
//! Unverified bytes stay bytes: the Standard Webhooks signature is checked over the raw
//! body first ([`crate::webhook::WebhookVerifier`]), and only the verified body is parsed.
//! Idempotent on the webhook id (recorded in the same transaction as the change);
//! duplicates, late arrivals and results for finished requests are answered 200 (so the
//! SaaS stops retrying) and change nothing.

use std::time::SystemTime;

use http::StatusCode;

use crate::enrollment::service::{Applied, Source, result_of};
use crate::http::{BodyError, Request, Response, empty, read_body};
use crate::saas::wire::Callback;
use crate::state::Services;

/// Callbacks are small; anything larger is not one.
const MAX_CALLBACK_BYTES: usize = 64 * 1024;

pub async fn handle(services: &Services, request: Request) -> Response {
    let status = match process(services, request).await {
        Ok(status) => status,
        Err((status, reason)) => {
            tracing::warn!(reason, status = status.as_u16(), "SaaS callback refused");
            metrics::counter!("ctp_saas_callbacks_rejected_total", "reason" => reason).increment(1);
            status
        }
    };
    empty(status)
}

async fn process(services: &Services, request: Request) -> Result<StatusCode, (StatusCode, &'static str)> {
    let (parts, body) = read_body(request, MAX_CALLBACK_BYTES).await.map_err(|e| match e {
        BodyError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        BodyError::Io(_) => (StatusCode::BAD_REQUEST, "unreadable"),
    })?;
    let verified = services.callbacks.verify(&parts.headers, body, SystemTime::now()).map_err(|e| {
        let status = if e.is_malformed() { StatusCode::BAD_REQUEST } else { StatusCode::UNAUTHORIZED };
        (status, e.reason())
    })?;
    let callback: Callback = verified.json().map_err(|_| (StatusCode::BAD_REQUEST, "malformed"))?;
    let result = result_of(callback.event, &callback.request_id, &callback.request_trace_id, &callback.outcome);
    // The tenant and event must be the request's own: another tenant's callback finds nothing.
    let source = Source::Callback { tenant: &callback.tenant, event: callback.event, webhook_id: verified.id() };
    match services.enrollment.finish(&result, source).await {
        Ok(Applied::Unknown) => Err((StatusCode::NOT_FOUND, "unknown_request")),
        Ok(Applied::WrongEvent) => Err((StatusCode::BAD_REQUEST, "event_mismatch")),
        Ok(_) => Ok(StatusCode::OK),
        Err(e) => {
            tracing::error!(error = %e, "SaaS callback not applied; the SaaS will retry");
            Err((StatusCode::INTERNAL_SERVER_ERROR, "database"))
        }
    }
}
