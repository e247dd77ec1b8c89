//! What the rest of the issuer hears from us: events written to the transactional outbox
//! in the same transaction as the change they announce, in M2P's envelope
//! (`business`, `transactionType`, `serverNotifyData`). Publishing them is the [`relay`]'s
//! job, through a [`publish::Publish`]er: [`rabbitmq`] or the embedded [`log`]. The
//! operator's side is `ctp-issuer outbox`; the consumer's side is `docs/outbox.md`.

pub mod config;
pub mod log;
pub mod mask;
pub mod publish;
pub mod publisher;
pub mod rabbitmq;
pub mod relay;

use serde::Serialize;

use crate::store::MatchedKit;
use crate::visa::VerifiedNotification;

/// Event type of a recorded Visa notification.
pub const CTP_ENROLLMENT_ATTEMPT: &str = "CTP_ENROLLMENT_ATTEMPT";

/// M2P's lifecycle documentation's message envelope.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification<T: Serialize> {
    pub business: String,
    pub transaction_type: &'static str,
    pub server_notify_data: T,
}

/// `serverNotifyData` of a `CTP_ENROLLMENT_ATTEMPT`: which kit a consumer tried to enroll
/// in Click to Pay, and what Visa told us of them. The card appears only as its last four.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentAttemptData<'a> {
    pub attempt_id: &'a str,
    pub entity_id: &'a str,
    pub kit_no: &'a str,
    pub token_requestor_id: &'a str,
    pub card_last4: &'a str,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub contact_email: Option<&'a str>,
    pub phone_number: Option<&'a str>,
    pub received_at: i64,
    pub transaction_type: &'static str,
    pub tenant: &'a str,
}

/// The outbox payload for a recorded notification.
pub fn enrollment_attempt_payload(attempt_id: &str, kit: &MatchedKit, notification: &VerifiedNotification, received_at: i64) -> String {
    let attempt = notification.attempt();
    let client = &attempt.client;
    message(
        CTP_ENROLLMENT_ATTEMPT,
        &kit.tenant,
        EnrollmentAttemptData {
            attempt_id,
            entity_id: &kit.entity_id,
            kit_no: &kit.kit_no,
            token_requestor_id: notification.token_requestor_id(),
            card_last4: attempt.pan.last4(),
            first_name: client.first_name.as_deref(),
            last_name: client.last_name.as_deref(),
            contact_email: client.contact_email.as_deref(),
            phone_number: client.phone_number.as_deref(),
            received_at,
            transaction_type: CTP_ENROLLMENT_ATTEMPT,
            tenant: &kit.tenant,
        },
    )
}

/// `serverNotifyData` of a finished request that succeeded (the success payload of M2P's Click to Pay lifecycle documentation).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestSuccessData<'a> {
    pub entity_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kit_no: Option<&'a str>,
    pub request_trace_id: Option<&'a str>,
    pub request_status: &'static str,
    pub transaction_type: &'static str,
    pub ctp_entity_status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctp_kit_status: Option<&'a str>,
    pub ctp_entity_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctp_kit_id: Option<&'a str>,
    pub tenant: &'a str,
}

/// `serverNotifyData` of a finished request that failed (the failure payload of M2P's Click to Pay lifecycle documentation).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestFailureData<'a> {
    pub entity_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kit_no: Option<&'a str>,
    pub request_trace_id: Option<&'a str>,
    pub request_status: &'static str,
    pub transaction_type: &'static str,
    pub message: &'static str,
    pub error_details: &'a str,
    pub tenant: &'a str,
}

/// M2P's lifecycle documentation's message for a request that succeeded.
pub fn request_success_payload(event: &'static str, data: RequestSuccessData<'_>) -> String {
    message(event, data.tenant, data)
}

/// M2P's lifecycle documentation's message for a request that failed.
pub fn request_failure_payload(event: &'static str, data: RequestFailureData<'_>) -> String {
    message(event, data.tenant, data)
}

/// Wraps `data` in M2P's envelope, as JSON text.
fn message<T: Serialize>(event: &'static str, tenant: &str, data: T) -> String {
    let message = Notification { business: tenant.to_owned(), transaction_type: event, server_notify_data: data };
    serde_json::to_string(&message).expect("serializing plain strings cannot fail")
}
