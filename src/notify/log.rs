//! The embedded default publisher: each event as one JSON line, on standard output or in
//! the service's log. Enough for one machine and for development, where the "queue" is a
//! pipe into `jq` or a log shipper; RabbitMQ is the choice past that.
//!
//! A line is `{"messageId":…,"eventType":…,"tenant":…,"createdAt":…,"payload":{…}}`: the
//! payload as stored (the envelope of M2P's Click to Pay lifecycle documentation), with the outbox id a consumer deduplicates on.
//! Consumers' names and contact details in it are masked unless `outbox.log_payloads` is
//! `full` ([`super::mask`]). A round's lines are written with one write.

use std::io::Write;

use serde::Serialize;

use super::config::{LogPayloads, LogTarget};
use super::mask::mask_personal_data;
use super::publish::{Publish, PublishError};
use crate::store::outbox::OutboxEvent;

#[derive(Debug)]
pub struct LogPublisher {
    target: LogTarget,
    payloads: LogPayloads,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    message_id: i64,
    event_type: &'a str,
    tenant: &'a str,
    created_at: i64,
    payload: serde_json::Value,
}

impl LogPublisher {
    pub fn new(target: LogTarget, payloads: LogPayloads) -> Self {
        Self { target, payloads }
    }

    /// The event's line, masked as configured.
    fn line(&self, event: &OutboxEvent) -> Result<String, PublishError> {
        line(event, self.payloads)
    }
}

/// The event's JSON line. The payload is embedded as JSON (re-serialized, so that a
/// payload stored over several lines still makes one line), its personal data masked
/// unless `payloads` is [`LogPayloads::Full`].
pub fn line(event: &OutboxEvent, payloads: LogPayloads) -> Result<String, PublishError> {
    let mut payload: serde_json::Value =
        serde_json::from_str(&event.payload).map_err(|e| PublishError::Unsendable(format!("payload is not JSON: {e}")))?;
    if payloads == LogPayloads::Masked {
        mask_personal_data(&mut payload);
    }
    let line = Line { message_id: event.id, event_type: &event.event_type, tenant: &event.tenant, created_at: event.created_at, payload };
    serde_json::to_string(&line).map_err(|e| PublishError::Unsendable(e.to_string()))
}

impl Publish for LogPublisher {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn ready(&mut self) -> Result<(), PublishError> {
        Ok(())
    }

    async fn publish(&mut self, events: &[OutboxEvent]) -> Vec<Result<(), PublishError>> {
        let lines: Vec<Result<String, PublishError>> = events.iter().map(|e| self.line(e)).collect();
        match self.target {
            LogTarget::Tracing => {
                for (event, line) in events.iter().zip(&lines) {
                    if let Ok(line) = line {
                        tracing::info!(target: "ctp_issuer::outbox", message_id = event.id, event = %line, "outbox event");
                    }
                }
                lines.into_iter().map(|l| l.map(drop)).collect()
            }
            LogTarget::Stdout => {
                let mut text = String::new();
                for line in lines.iter().flatten() {
                    text.push_str(line);
                    text.push('\n');
                }
                let mut out = std::io::stdout().lock();
                match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                    Ok(()) => lines.into_iter().map(|l| l.map(drop)).collect(),
                    Err(e) => {
                        let error = PublishError::Write(e.to_string());
                        lines.into_iter().map(|l| l.and(Err(error.clone()))).collect()
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str) -> OutboxEvent {
        OutboxEvent {
            id: 42,
            tenant: "DEMOBANK".into(),
            event_type: "CTP_ENROLLMENT_ATTEMPT".into(),
            payload: payload.into(),
            created_at: 1_700_000_000_000,
            attempts: 1,
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_the_payload_embedded() {
        let payload = r#"{"business":"DEMOBANK","transactionType":"CTP_ENROLLMENT_ATTEMPT","serverNotifyData":{"tenant":"DEMOBANK"}}"#;
        let line = line(&event(payload), LogPayloads::Full).unwrap();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["messageId"], 42);
        assert_eq!(v["eventType"], "CTP_ENROLLMENT_ATTEMPT");
        assert_eq!(v["tenant"], "DEMOBANK");
        assert_eq!(v["createdAt"], 1_700_000_000_000i64);
        assert_eq!(v["payload"], serde_json::from_str::<serde_json::Value>(payload).unwrap());
    }

    #[test]
    fn a_payload_spread_over_lines_still_makes_one_line() {
        let line = line(&event("{\n  \"business\": \"X\"\n}"), LogPayloads::Full).unwrap();
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn a_malformed_payload_is_unsendable_not_a_panic() {
        assert!(matches!(line(&event("{not json"), LogPayloads::Masked), Err(PublishError::Unsendable(_))));
    }
}
