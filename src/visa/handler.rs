//! `POST /vtis/v1/tokenRequestors/{tokenRequestorID}/cardEnrollment/notification`
//!
//! limit body → parse → (RSA-OAEP only: already seen?) → verify and decrypt (RSA
//! private-key work off the async threads, a bounded number at a time) →
//! fingerprint the card → record attempt and outbox event in one transaction → 200.
//! Every outcome is counted and logged here, once.

use std::time::{Instant, SystemTime};

use http::StatusCode;

use super::envelope::RawNotification;
use super::error::{NotificationError, Rejection};
use crate::app::App;
use crate::http::{BodyError, Request, Response, empty, read_body};
use crate::store::AttemptOutcome;

/// What a successful notification did.
#[derive(Debug)]
pub enum Accepted {
    Recorded { attempt_id: String, tenant: String, kit_no: String, card: String },
    Duplicate,
}

pub async fn handle(app: &App, token_requestor_id: &str, request: Request) -> Response {
    let started = Instant::now();
    let result = process(app, token_requestor_id, request).await;
    let (status, outcome) = match &result {
        Ok(Accepted::Recorded { attempt_id, tenant, kit_no, card }) => {
            tracing::info!(%attempt_id, %tenant, %kit_no, %card, "enrollment attempt recorded");
            (StatusCode::OK, "recorded")
        }
        Ok(Accepted::Duplicate) => {
            tracing::info!("duplicate notification answered without effect");
            (StatusCode::OK, "duplicate")
        }
        Err(NotificationError::Rejected(r)) => {
            tracing::warn!(
                reason = r.reason.code(),
                detail = r.detail.unwrap_or(""),
                status = r.reason.status().as_u16(),
                "notification rejected"
            );
            metrics::counter!("ctp_visa_notification_rejections_total", "reason" => r.reason.code()).increment(1);
            let outcome = match r.reason.status() {
                StatusCode::UNAUTHORIZED => "unauthorized",
                StatusCode::NOT_FOUND => "unknown_card",
                _ => "bad_request",
            };
            (r.reason.status(), outcome)
        }
        Err(NotificationError::Internal(e)) => {
            tracing::error!(error = %e, "notification failed on our side; Visa will retry");
            (StatusCode::INTERNAL_SERVER_ERROR, "error")
        }
    };
    metrics::counter!("ctp_visa_notifications_total", "outcome" => outcome).increment(1);
    metrics::histogram!("ctp_visa_notification_duration_seconds", "outcome" => outcome).record(started.elapsed().as_secs_f64());
    empty(status)
}

/// Reads the HTTP request and hands its parts to [`accept`].
async fn process(app: &App, token_requestor_id: &str, request: Request) -> Result<Accepted, NotificationError> {
    let event_type = request
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "eventType").map(|(_, v)| v.into_owned()));
    let (_, body) = read_body(request, app.config().visa.max_body_bytes).await.map_err(|e| match e {
        BodyError::TooLarge(_) => Rejection::BodyTooLarge,
        BodyError::Io(_) => Rejection::BodyNotJson,
    })?;
    accept(app, token_requestor_id, event_type.as_deref(), &body).await
}

/// The whole notification path without HTTP: parse, deduplicate, verify and decrypt,
/// fingerprint, record. (The benchmarks call this directly.)
pub async fn accept(app: &App, token_requestor_id: &str, event_type: Option<&str>, body: &[u8]) -> Result<Accepted, NotificationError> {
    let raw = RawNotification::parse(token_requestor_id, event_type, body)?;
    let store = app.store();
    let keys = app.visa_keys();
    let replay = app.replay_policy();

    let verified = if raw.needs_private_key() {
        // A redelivery is answered before the private-key operation, which it would
        // repeat for nothing.
        if store.attempt_seen(raw.envelope_hash()).await.map_err(internal)? {
            return Ok(Accepted::Duplicate);
        }
        // On the blocking pool, a few per core at once, so that a burst queues here
        // (cheaply, as tasks) instead of as dozens of threads preempting each other.
        let _permit = private_key_slots().acquire().await.map_err(|_| internal_msg("private-key limiter closed"))?;
        tokio::task::spawn_blocking(move || raw.open(&keys, replay, SystemTime::now()))
            .await
            .map_err(|e| NotificationError::Internal(format!("verification task failed: {e}")))??
    } else {
        // Shared-secret key wrapping: HMAC or one RSA public-key verification and AES-GCM,
        // tens of microseconds, cheaper inline than a hand-off to another thread and
        // cheaper than a duplicate check first: the write below tells a redelivery by its
        // envelope hash anyway. Only a rejection asks whether the envelope was recorded
        // before, so that a redelivery whose `iat` has aged out of the window, or whose
        // key has since been rotated away, is still answered as the duplicate it is.
        let envelope_hash = raw.envelope_hash().to_owned();
        match raw.open(&keys, replay, SystemTime::now()) {
            Ok(verified) => verified,
            Err(rejected) if store.attempt_seen(&envelope_hash).await.map_err(internal)? => {
                tracing::debug!(reason = rejected.reason.code(), "rejection of a recorded envelope answered as a duplicate");
                return Ok(Accepted::Duplicate);
            }
            Err(rejected) => return Err(rejected.into()),
        }
    };

    let pan = &verified.attempt().pan;
    let fingerprints = app.pan_keys().lookup_fingerprints(pan);
    match store.record_attempt(&verified, &fingerprints).await.map_err(internal)? {
        AttemptOutcome::Recorded { attempt_id, kit } => {
            Ok(Accepted::Recorded { attempt_id, tenant: kit.tenant, kit_no: kit.kit_no, card: pan.to_string() })
        }
        AttemptOutcome::Duplicate => Ok(Accepted::Duplicate),
        AttemptOutcome::UnknownCard => {
            tracing::info!(card = %pan, "no kit has this card");
            Err(Rejection::UnknownCard.into())
        }
    }
}

/// Permits for concurrent private-key operations: four per core. One per core starved the
/// cores (measured: a quarter to a third less throughput at concurrency 64): a finished
/// operation's permit has to travel back through the async side before the next one
/// starts. No bound at all lets a burst start one blocking thread per request.
fn private_key_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(4 * std::thread::available_parallelism().map_or(2, |n| n.get())))
}

fn internal_msg(message: &str) -> NotificationError {
    NotificationError::Internal(message.to_owned())
}

fn internal(e: crate::store::StoreError) -> NotificationError {
    NotificationError::Internal(e.to_string())
}
