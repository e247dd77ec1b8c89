//! The publishers behind [`Publish`]: an enum of the real ones, chosen by configuration,
//! so that the service itself names no trait object.

use super::config::{OutboxConfig, PublisherKind};
use super::log::LogPublisher;
use super::publish::{Publish, PublishError};
use super::rabbitmq::RabbitMqPublisher;
use crate::store::outbox::OutboxEvent;

/// The publisher configuration asks for. (Boxed: the broker link is large, the log
/// publisher nothing.)
#[derive(Debug)]
pub enum Publisher {
    Log(LogPublisher),
    RabbitMq(Box<RabbitMqPublisher>),
}

impl Publisher {
    /// Builds the configured publisher. Connects to nothing yet: that is [`Publish::ready`]'s
    /// job, so that the service starts while the broker is down.
    pub fn from_config(config: &OutboxConfig) -> Self {
        match config.publisher {
            PublisherKind::Log => Publisher::Log(LogPublisher::new(config.log_target, config.log_payloads)),
            PublisherKind::Rabbitmq => Publisher::RabbitMq(Box::new(RabbitMqPublisher::new(config))),
        }
    }
}

impl Publish for Publisher {
    fn name(&self) -> &'static str {
        match self {
            Publisher::Log(p) => p.name(),
            Publisher::RabbitMq(p) => p.name(),
        }
    }

    async fn ready(&mut self) -> Result<(), PublishError> {
        match self {
            Publisher::Log(p) => p.ready().await,
            Publisher::RabbitMq(p) => p.ready().await,
        }
    }

    async fn publish(&mut self, events: &[OutboxEvent]) -> Vec<Result<(), PublishError>> {
        match self {
            Publisher::Log(p) => p.publish(events).await,
            Publisher::RabbitMq(p) => p.publish(events).await,
        }
    }
}
