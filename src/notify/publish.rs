//! The one interface the relay publishes through: a trait, so that the relay's logic can be
//! tested against a stand-in broker, and the error every publisher reports.

use std::future::Future;

use crate::store::outbox::OutboxEvent;

/// Why an event (or a whole round) was not published. The text goes to the row's
/// `last_error` and the log: it names what failed, never the payload.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// The broker cannot be reached or set up; nothing was sent.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker answered the publish with a negative acknowledgement.
    #[error("broker refused the message (basic.nack)")]
    Nacked,
    /// No binding routed the message (mandatory publish); the broker handed it back.
    #[error("message returned unroutable: {code} {text}")]
    Returned { code: u16, text: String },
    /// No confirmation within the publish timeout; the message may or may not have arrived.
    #[error("no confirmation from the broker within {0:?}")]
    Timeout(std::time::Duration),
    /// The channel or connection failed while the message was in flight.
    #[error("broker connection failed: {0}")]
    Broker(String),
    /// The event cannot be turned into a message (it will not get better by retrying).
    #[error("event cannot be sent: {0}")]
    Unsendable(String),
    /// Writing the event line failed.
    #[error("cannot write the event: {0}")]
    Write(String),
}

/// Something the relay can publish events through.
///
/// `Send + Sync`, and the methods return `Send` futures explicitly, so that a relay over
/// any publisher can be spawned on the multi-threaded runtime.
pub trait Publish: Send + Sync {
    /// A short name for logs and metric labels.
    fn name(&self) -> &'static str;

    /// Makes sure the next publish can be attempted (connects, declares what it needs).
    /// The relay claims nothing while this fails, so an outage costs events no tries.
    fn ready(&mut self) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Publishes `events` in order and reports one outcome per event, in the same order.
    /// `Ok` means the destination has the event (for a broker: it confirmed it).
    fn publish(&mut self, events: &[OutboxEvent]) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send;
}
