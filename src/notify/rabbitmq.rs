//! The RabbitMQ publisher (AMQP 0-9-1, lapin).
//!
//! An event counts as published only when the broker has confirmed it: the channel is in
//! confirm mode, every message is persistent and `mandatory`, and a message the broker
//! hands back as unroutable (it acknowledges those too) is a failure, not a success.
//!
//! Where messages go:
//! - no exchange configured: the default exchange, routing key = the queue, which is
//!   declared durable if it does not exist yet (an existing queue is used as it is, so an
//!   operator may create it as a quorum queue or with any arguments);
//! - an exchange configured: that exchange with the routing key (the queue name when no
//!   key is set). The exchange must exist and its bindings are the operator's; nothing is
//!   declared.
//!
//! Each message carries `message_id` = the outbox id (consumers deduplicate on it:
//! delivery is at least once), `content_type` = `application/json`, `delivery_mode` = 2
//! (persistent), `type` = the event type, `timestamp` = when the event was written
//! (seconds), `app_id` = `ctp-issuer` and a `tenant` header.
//!
//! Reconnection: a lost connection, a failed channel or a publish that timed out drops
//! the link; the relay's next [`Publish::ready`] opens a new one. Nothing is claimed while
//! the broker is unreachable.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::{Instant, timeout, timeout_at};

use super::config::OutboxConfig;
use super::publish::{Publish, PublishError};
use crate::store::outbox::OutboxEvent;

pub struct RabbitMqPublisher {
    url: SecretString,
    queue: String,
    exchange: Option<String>,
    routing_key: String,
    timeout: Duration,
    link: Option<Link>,
}

/// An open connection with its confirm-mode channel and where to publish.
struct Link {
    connection: Connection,
    channel: Channel,
    exchange: ShortString,
    routing_key: ShortString,
}

impl std::fmt::Debug for RabbitMqPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqPublisher")
            .field("queue", &self.queue)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("connected", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl RabbitMqPublisher {
    pub fn new(config: &OutboxConfig) -> Self {
        Self {
            url: config.amqp_url.clone(),
            queue: config.queue.clone(),
            exchange: config.exchange.clone(),
            routing_key: config.routing_key.clone().unwrap_or_else(|| config.queue.clone()),
            timeout: config.publish_timeout,
            link: None,
        }
    }

    async fn connect(&self) -> Result<Link, PublishError> {
        let name = |what: &str, s: &str| ShortString::try_new(s).map_err(|e| PublishError::Unavailable(format!("{what} `{s}`: {e}")));
        let (exchange, routing_key) = match &self.exchange {
            Some(exchange) => (name("exchange", exchange)?, name("routing key", &self.routing_key)?),
            None => (ShortString::default(), name("queue", &self.queue)?),
        };
        let properties = ConnectionProperties::default().with_connection_name("ctp-issuer outbox relay".into());
        let connection = Connection::connect(self.url.expose_secret(), properties)
            .await
            .map_err(|e| PublishError::Unavailable(format!("cannot connect: {e}")))?;
        let mut channel = confirm_channel(&connection).await?;
        match &self.exchange {
            Some(_) => {
                let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
                channel.exchange_declare(exchange.clone(), ExchangeKind::Direct, passive, FieldTable::default()).await.map_err(|e| {
                    PublishError::Unavailable(format!("exchange `{exchange}` cannot be used (it must exist, with its bindings): {e}"))
                })?;
            }
            None => {
                let passive = QueueDeclareOptions { passive: true, ..Default::default() };
                if channel.queue_declare(routing_key.clone(), passive, FieldTable::default()).await.is_err() {
                    // The broker closes a channel whose passive declare failed: declare the
                    // queue on a fresh one.
                    channel = confirm_channel(&connection).await?;
                    channel
                        .queue_declare(routing_key.clone(), QueueDeclareOptions::durable(), FieldTable::default())
                        .await
                        .map_err(|e| PublishError::Unavailable(format!("cannot declare queue `{routing_key}`: {e}")))?;
                }
            }
        }
        Ok(Link { connection, channel, exchange, routing_key })
    }

    /// Waits for one message's confirmation and says what it means.
    async fn outcome(confirm: lapin::PublisherConfirm, deadline: Instant, limit: Duration) -> Result<(), PublishError> {
        match timeout_at(deadline, confirm).await {
            Err(_) => Err(PublishError::Timeout(limit)),
            Ok(Err(e)) => Err(PublishError::Broker(e.to_string())),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)))) => {
                Err(PublishError::Returned { code: returned.reply_code, text: returned.reply_text.to_string() })
            }
            Ok(Ok(Confirmation::Nack(None))) => Err(PublishError::Nacked),
            Ok(Ok(Confirmation::NotRequested)) => Err(PublishError::Broker("the channel is not in confirm mode".into())),
        }
    }
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, PublishError> {
    let channel = connection.create_channel().await.map_err(|e| PublishError::Unavailable(format!("cannot open a channel: {e}")))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| PublishError::Unavailable(format!("cannot enable publisher confirms: {e}")))?;
    Ok(channel)
}

/// The message properties of an event (see the module docs).
fn properties(event: &OutboxEvent) -> Result<BasicProperties, PublishError> {
    let kind = ShortString::try_new(event.event_type.as_str()).map_err(|e| PublishError::Unsendable(format!("event type: {e}")))?;
    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString(event.tenant.as_str().into()));
    Ok(BasicProperties::default()
        .with_message_id(event.id.to_string().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_type(kind)
        .with_timestamp(u64::try_from(event.created_at / 1000).unwrap_or(0))
        .with_app_id("ctp-issuer".into())
        .with_headers(headers))
}

impl Publish for RabbitMqPublisher {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    async fn ready(&mut self) -> Result<(), PublishError> {
        if let Some(link) = &self.link {
            if link.connection.status().connected() && link.channel.status().connected() {
                return Ok(());
            }
            tracing::warn!("broker connection lost; reconnecting");
            self.link = None;
        }
        let link = timeout(self.timeout, self.connect())
            .await
            .map_err(|_| PublishError::Unavailable(format!("no connection within {:?}", self.timeout)))??;
        tracing::info!(exchange = %link.exchange, routing_key = %link.routing_key, "connected to the broker");
        self.link = Some(link);
        Ok(())
    }

    async fn publish(&mut self, events: &[OutboxEvent]) -> Vec<Result<(), PublishError>> {
        let Some(link) = &self.link else {
            return events.iter().map(|_| Err(PublishError::Unavailable("not connected".into()))).collect();
        };
        // Send the whole batch, then collect the confirmations: one round trip, not one
        // per message.
        let options = BasicPublishOptions { mandatory: true, ..Default::default() };
        let mut sent = Vec::with_capacity(events.len());
        for event in events {
            let confirm = match properties(event) {
                Ok(props) => link
                    .channel
                    .basic_publish(link.exchange.clone(), link.routing_key.clone(), options, event.payload.as_bytes(), props)
                    .await
                    .map_err(|e| PublishError::Broker(e.to_string())),
                Err(e) => Err(e),
            };
            sent.push(confirm);
        }
        let deadline = Instant::now() + self.timeout;
        let mut outcomes = Vec::with_capacity(sent.len());
        for confirm in sent {
            outcomes.push(match confirm {
                Ok(confirm) => Self::outcome(confirm, deadline, self.timeout).await,
                Err(e) => Err(e),
            });
        }
        // After a broken channel or a lost confirmation the link cannot be trusted: the
        // next round starts on a new one.
        if outcomes.iter().any(|o| matches!(o, Err(PublishError::Broker(_) | PublishError::Timeout(_)))) {
            self.link = None;
        }
        outcomes
    }
}
