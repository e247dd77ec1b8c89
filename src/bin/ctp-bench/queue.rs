//! A consumer that empties a RabbitMQ queue while a long run publishes to it, as the
//! issuer's systems would: without one, the broker's memory fills and it stops accepting
//! publishes, which would measure the broker, not the service.

use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

/// Consumes (and acknowledges on receipt) every message of `queue` until `stop`, then
/// until the queue has been quiet for a second; returns how many arrived.
pub async fn drain(url: &str, queue: &str, stop: CancellationToken) -> anyhow::Result<u64> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await.context("connecting to the broker")?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(1000, BasicQosOptions::default()).await?;
    channel.queue_declare(queue.into(), QueueDeclareOptions::durable(), FieldTable::default()).await?;
    let mut consumer = channel
        .basic_consume(queue.into(), "ctp-bench".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
        .await?;
    let mut received = 0u64;
    loop {
        let quiet = if stop.is_cancelled() { Duration::from_secs(1) } else { Duration::from_secs(3600) };
        tokio::select! {
            _ = stop.cancelled(), if !stop.is_cancelled() => continue,
            next = tokio::time::timeout(quiet, consumer.next()) => match next {
                Ok(Some(Ok(_))) => received += 1,
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(None) | Err(_) => break,
            },
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(received)
}
