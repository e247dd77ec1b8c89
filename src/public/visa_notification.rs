//! `POST /vtis/v1/tokenRequestors/{tokenRequestorID}/cardEnrollment/notification`
//!
//! limit body → parse → (RSA-OAEP only: already seen?) → verify and decrypt (RSA
//! private-key work off the async threads, a bounded number at a time) →
//! fingerprint the card → record attempt and outbox event in one transaction → 200.
//! Every outcome is counted and logged here, once.

use std::time::{Instant, SystemTime};

use http::StatusCode;

use crate::http::{BodyError, Request, Response, empty, read_body};
use crate::state::Services;
use crate::store::AttemptOutcome;
use crate::store::StoreError;
use crate::visa::envelope::RawNotification;
use crate::visa::error::{Rejected, Rejection};

/// The outcome of handling one notification that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("rejected: {0}")]
    Rejected(Rejected),
    /// Our own failure (the database): 500, and Visa retries.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The private-key work could not run (its task panicked or the runtime is stopping).
    #[error("verification task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<Rejected> for NotificationError {
    fn from(r: Rejected) -> Self {
        Self::Rejected(r)
    }
}

impl From<Rejection> for NotificationError {
    fn from(r: Rejection) -> Self {
        Self::Rejected(r.into())
    }
}

/// What a successful notification did.
#[derive(Debug)]
pub enum Accepted {
    Recorded { attempt_id: String, tenant: String, kit_no: String, card: String },
    Duplicate,
}

pub async fn handle(services: &Services, token_requestor_id: &str, request: Request) -> Response {
    let started = Instant::now();
    let result = process(services, token_requestor_id, request).await;
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
        Err(e @ (NotificationError::Store(_) | NotificationError::Task(_))) => {
            tracing::error!(error = %e, "notification failed on our side; Visa will retry");
            (StatusCode::INTERNAL_SERVER_ERROR, "error")
        }
    };
    metrics::counter!("ctp_visa_notifications_total", "outcome" => outcome).increment(1);
    metrics::histogram!("ctp_visa_notification_duration_seconds", "outcome" => outcome).record(started.elapsed().as_secs_f64());
    empty(status)
}

/// Reads the HTTP request and hands its parts to [`accept`].
async fn process(services: &Services, token_requestor_id: &str, request: Request) -> Result<Accepted, NotificationError> {
    let event_type = request
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "eventType").map(|(_, v)| v.into_owned()));
    let (_, body) = read_body(request, services.config.visa.max_body_bytes).await.map_err(|e| match e {
        BodyError::TooLarge(_) => Rejection::BodyTooLarge,
        BodyError::Io(_) => Rejection::BodyNotJson,
    })?;
    accept(services, token_requestor_id, event_type.as_deref(), &body).await
}

/// The whole notification path without HTTP: parse, deduplicate, verify and decrypt,
/// fingerprint, record. (The benchmarks call this directly.)
pub async fn accept(
    services: &Services,
    token_requestor_id: &str,
    event_type: Option<&str>,
    body: &[u8],
) -> Result<Accepted, NotificationError> {
    let attempts = &services.attempts;
    let raw = RawNotification::parse(token_requestor_id, event_type, body, attempts.keys())?;
    let keys = services.visa_keys();
    let replay = services.replay_policy();

    let verified = if raw.needs_private_key() {
        // A redelivery is answered before the private-key operation, which it would
        // repeat for nothing.
        if attempts.seen(raw.envelope_hash()).await? {
            return Ok(Accepted::Duplicate);
        }
        // On the blocking pool, a few per core at once, so that a burst queues here
        // (cheaply, as tasks) instead of as dozens of threads preempting each other.
        // (The limiter is never closed: an error here cannot happen, and would only lift the bound.)
        let _permit = private_key_slots().acquire().await.ok();
        tokio::task::spawn_blocking(move || raw.open(&keys, replay, SystemTime::now())).await??
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
            Err(rejected) if attempts.seen(&envelope_hash).await? => {
                tracing::debug!(reason = rejected.reason.code(), "rejection of a recorded envelope answered as a duplicate");
                return Ok(Accepted::Duplicate);
            }
            Err(rejected) => return Err(rejected.into()),
        }
    };

    let card = verified.attempt().pan.to_string();
    match attempts.record(verified).await? {
        AttemptOutcome::Recorded { attempt_id, kit } => Ok(Accepted::Recorded { attempt_id, tenant: kit.tenant, kit_no: kit.kit_no, card }),
        AttemptOutcome::Duplicate => Ok(Accepted::Duplicate),
        AttemptOutcome::UnknownCard => {
            tracing::info!(%card, "no kit has this card");
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
