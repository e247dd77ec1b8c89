//! The `[outbox]` section: whether this process runs the relay, which publisher it uses,
//! and how it paces and retries.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::setting::Problems;

/// Which publisher the outbox relay uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublisherKind {
    /// One JSON line per event: the embedded default, no broker needed.
    Log,
    /// RabbitMQ (AMQP 0-9-1) with publisher confirms.
    Rabbitmq,
}

/// Where the log publisher writes its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// Standard output, apart from the service's own logs (which go to stderr).
    Stdout,
    /// The service's log, at INFO, target `ctp_issuer::outbox`. Events carry consumers'
    /// names and contact details: only where the log is guarded like the queue would be.
    Tracing,
}

/// What the log publisher shows of an event's personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogPayloads {
    /// Names, email addresses, phone numbers and addresses masked: what a log pipeline may hold.
    Masked,
    /// Everything, as the queue's consumers get it: for development only.
    Full,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Whether this process runs the relay. Every replica may; with it off, events wait
    /// in the outbox for a process that runs it. Default: on.
    pub enabled: bool,
    /// `log` or `rabbitmq`. Default: `log`.
    pub publisher: PublisherKind,
    /// With the `log` publisher: `stdout` or `tracing`. Default: `stdout`.
    pub log_target: LogTarget,
    /// With the `log` publisher: personal data `masked` or shown in `full`. Default: `masked`.
    pub log_payloads: LogPayloads,
    /// `amqp://user:password@host:5672/vhost` or `amqps://…`. A secret: it holds a password.
    /// Default: `amqp://guest:guest@127.0.0.1:5672/%2f`, a local broker's.
    #[serde(serialize_with = "crate::setting::redacted")]
    pub amqp_url: SecretString,
    /// The durable queue events go to, declared if missing, when no exchange is set; the
    /// default routing key when one is. Default: `ctp.notification.all`.
    pub queue: String,
    /// Publish to this exchange instead of straight to `queue`. It must exist, and its
    /// bindings are the operator's: an event no binding routes is a failed publish.
    /// Default: none.
    pub exchange: Option<String>,
    /// Routing key with `exchange`. Default: `queue`.
    pub routing_key: Option<String>,
    /// Events claimed and published per round, 1 to 1000. Default: 100.
    pub batch_size: u32,
    /// Pause between rounds that found less than a full batch. Default: 1s.
    #[serde(with = "crate::setting::duration")]
    pub poll_interval: Duration,
    /// Tries before an event is dead (see `ctp-issuer outbox list --dead` and `redrive`).
    /// Default: 12.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles with every try, jittered, up to
    /// `backoff_max`. Default: 1s.
    #[serde(with = "crate::setting::duration")]
    pub backoff_base: Duration,
    /// Longest delay between two tries. Default: 5m.
    #[serde(with = "crate::setting::duration")]
    pub backoff_max: Duration,
    /// Longest wait on the broker: to connect, and for one batch's confirmations.
    /// Default: 10s.
    #[serde(with = "crate::setting::duration")]
    pub publish_timeout: Duration,
    /// How long a claimed event is left to its relay before another may take it (after a
    /// crash, the delay before it is published again). At least twice `publish_timeout`,
    /// so that a live relay never loses a claim mid-publish. Default: 60s.
    #[serde(with = "crate::setting::duration")]
    pub lease: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            publisher: PublisherKind::Log,
            log_target: LogTarget::Stdout,
            log_payloads: LogPayloads::Masked,
            amqp_url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            queue: "ctp.notification.all".into(),
            exchange: None,
            routing_key: None,
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            max_attempts: 12,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            publish_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
        }
    }
}

impl OutboxConfig {
    /// Ranges, lengths (AMQP names are at most 255 bytes) and the lease rule.
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::new();
        problems.require((1..=1000).contains(&self.batch_size), "outbox.batch_size", "must be between 1 and 1000");
        problems.require(self.max_attempts >= 1, "outbox.max_attempts", "must be at least 1");
        for (key, d) in [
            ("outbox.poll_interval", self.poll_interval),
            ("outbox.backoff_base", self.backoff_base),
            ("outbox.publish_timeout", self.publish_timeout),
        ] {
            problems.require(!d.is_zero(), key, "must be positive");
        }
        problems.require(self.backoff_max >= self.backoff_base, "outbox.backoff_max", "must not be less than outbox.backoff_base");
        problems.require(self.lease >= self.publish_timeout * 2, "outbox.lease", "must be at least twice outbox.publish_timeout");
        let names = [
            ("outbox.queue", Some(&self.queue)),
            ("outbox.exchange", self.exchange.as_ref()),
            ("outbox.routing_key", self.routing_key.as_ref()),
        ];
        for (key, value) in names {
            if let Some(v) = value {
                problems.require(!v.is_empty() && v.len() <= 255, key, "must be 1 to 255 bytes long");
            }
        }
        if self.publisher == PublisherKind::Rabbitmq {
            let url = self.amqp_url.expose_secret();
            problems.require(
                url.starts_with("amqp://") || url.starts_with("amqps://"),
                "outbox.amqp_url",
                "must start with amqp:// or amqps://",
            );
        }
        problems.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outbox_problem_is_reported_at_once() {
        let outbox = OutboxConfig {
            batch_size: 0,
            max_attempts: 0,
            queue: String::new(),
            publisher: PublisherKind::Rabbitmq,
            amqp_url: SecretString::from("http://u:hunter2@broker"),
            ..OutboxConfig::default()
        };
        let text = outbox.validate().unwrap_err().to_string();
        assert!(text.starts_with("4 problems"), "{text}");
        for key in ["outbox.batch_size", "outbox.max_attempts", "outbox.queue", "outbox.amqp_url"] {
            assert!(text.contains(key), "{key}: {text}");
        }
        assert!(!text.contains("hunter2"));
    }
}
