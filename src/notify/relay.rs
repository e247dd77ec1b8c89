//! The outbox relay: claims due events oldest first, publishes them, and records what the
//! publisher said — published, or failed with a jittered exponential backoff, or dead
//! after `outbox.max_attempts` tries.
//!
//! Delivery is at least once: an event is marked published only after the broker
//! confirmed it, so a crash between the confirmation and the mark publishes it again.
//! Consumers deduplicate on the message id (the outbox id). How claims keep two relays
//! apart is described in [`crate::store::outbox`].
//!
//! Metrics:
//! - `ctp_outbox_waiting_events`, `ctp_outbox_dead_events` (gauges): events not yet
//!   published, and those given up on;
//! - `ctp_outbox_oldest_waiting_age_seconds` (gauge): how long the oldest waiting event
//!   has waited, the one number that says the relay is keeping up;
//! - `ctp_outbox_published_total`, `ctp_outbox_publish_failures_total`,
//!   `ctp_outbox_dead_total` (counters, by `event_type`);
//! - `ctp_outbox_publish_duration_seconds` (histogram, by `publisher`): one batch, from
//!   the first send to the last confirmation;
//! - `ctp_outbox_delivery_delay_seconds` (histogram, by `event_type`): from the event's
//!   commit to the broker's confirmation.

use std::time::{Duration, SystemTime};

use serde::de::IgnoredAny;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::OutboxConfig;
use super::publish::{Publish, PublishError};
use super::publisher::Publisher;
use crate::store::outbox::{OutboxEvent, Retry};
use crate::store::{Store, StoreError, epoch_millis};

/// Why a round published nothing.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox relay: {0}")]
    Store(#[from] StoreError),
    #[error("outbox relay: {0}")]
    Publisher(#[from] PublishError),
}

/// The shortest time between the starts of two rounds woken by this process's own
/// events: under steady traffic the relay then publishes in batches (a round costs two
/// writes whatever its size) while no event waits much longer than this.
pub const ROUND_GAP: Duration = Duration::from_millis(50);

/// What the relay does after a round.
enum Next {
    /// The batch was full: more are likely waiting.
    Now,
    /// Nothing more waits: the next event of this process, or the next poll.
    Wake,
    /// The round failed: back off.
    After(Duration),
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    pub published: usize,
    pub failed: usize,
}

pub struct Relay<P> {
    store: Store,
    publisher: P,
    config: OutboxConfig,
    owner: String,
}

/// Runs the configured relay until `shutdown` (nothing, if `outbox.enabled` is off).
pub async fn run(store: Store, config: OutboxConfig, shutdown: CancellationToken) {
    if !config.enabled {
        tracing::info!("outbox relay disabled in this process (outbox.enabled = false)");
        return;
    }
    let publisher = Publisher::from_config(&config);
    Relay::new(store, publisher, config).run(shutdown).await
}

impl<P: Publish> Relay<P> {
    pub fn new(store: Store, publisher: P, config: OutboxConfig) -> Self {
        let owner = format!("relay-{}", uuid::Uuid::new_v4().simple());
        Self { store, publisher, config, owner }
    }

    /// The id this relay writes into the rows it claims.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Rounds until `shutdown`. A round that fills its batch is followed at once by the
    /// next. Otherwise the relay waits for this process to commit an event (but leaves at
    /// least [`ROUND_GAP`] between the starts of two rounds) or for `poll_interval`, which
    /// is how events of other replicas and retries that fell due are found. After a failed
    /// round (store or broker unreachable) it backs off. A round under way when `shutdown`
    /// comes is finished, so that what the broker confirmed is also recorded.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, publisher = self.publisher.name(), "outbox relay started");
        let mut failures: i64 = 0;
        let mut observed: Option<Instant> = None;
        loop {
            if observed.is_none_or(|t| t.elapsed() >= self.config.poll_interval) {
                self.observe().await;
                observed = Some(Instant::now());
            }
            let started = Instant::now();
            let next = match self.run_once().await {
                Ok(round) => {
                    failures = 0;
                    if round.claimed >= self.config.batch_size as usize { Next::Now } else { Next::Wake }
                }
                Err(e) => {
                    failures += 1;
                    let pause = backoff(failures, self.config.backoff_base, self.config.backoff_max).max(self.config.poll_interval);
                    tracing::warn!(error = %e, retry_in = ?pause, "outbox relay round failed");
                    Next::After(pause)
                }
            };
            let wait = async {
                match next {
                    Next::Now => {}
                    Next::Wake => {
                        let woken = async {
                            self.store.outbox_written().await;
                            tokio::time::sleep_until(started + ROUND_GAP).await;
                        };
                        tokio::select! {
                            _ = woken => {}
                            _ = tokio::time::sleep(self.config.poll_interval) => {}
                        }
                    }
                    Next::After(pause) => tokio::time::sleep(pause).await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = wait => {}
            }
        }
        tracing::info!(owner = %self.owner, "outbox relay stopped");
    }

    /// One round: make sure the publisher can publish, claim a batch, publish it, record
    /// the outcome of each event.
    pub async fn run_once(&mut self) -> Result<Round, RelayError> {
        self.publisher.ready().await?;
        let now = epoch_millis(SystemTime::now());
        let limit = i64::from(self.config.batch_size);
        let events = self.store.claim_outbox(&self.owner, now, self.config.lease, limit).await?;
        let mut round = Round { claimed: events.len(), ..Round::default() };
        if events.is_empty() {
            return Ok(round);
        }

        // A payload that is not JSON never will be: it is dead at once and never sent.
        let (sendable, malformed): (Vec<OutboxEvent>, Vec<OutboxEvent>) =
            events.into_iter().partition(|e| serde_json::from_str::<IgnoredAny>(&e.payload).is_ok());
        for event in &malformed {
            let error = PublishError::Unsendable("payload is not JSON".into());
            self.record_failure(event, &error, now).await?;
            round.failed += 1;
        }
        if sendable.is_empty() {
            return Ok(round);
        }

        let started = Instant::now();
        let mut outcomes = self.publisher.publish(&sendable).await;
        metrics::histogram!("ctp_outbox_publish_duration_seconds", "publisher" => self.publisher.name()).record(started.elapsed());
        outcomes.resize_with(sendable.len(), || Err(PublishError::Broker("the publisher reported no outcome".into())));

        let done = epoch_millis(SystemTime::now());
        let mut published = Vec::with_capacity(sendable.len());
        let mut failed = Vec::new();
        for (event, outcome) in sendable.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    published.push(event.id);
                    metrics::counter!("ctp_outbox_published_total", "event_type" => event.event_type.clone()).increment(1);
                    let delay = Duration::from_millis(u64::try_from(done - event.created_at).unwrap_or(0));
                    metrics::histogram!("ctp_outbox_delivery_delay_seconds", "event_type" => event.event_type.clone()).record(delay);
                }
                Err(error) => failed.push((event, error)),
            }
        }
        // What the broker confirmed is recorded first: every moment it is not is a moment
        // in which a crash means a duplicate.
        self.store.mark_outbox_published(&published, done).await?;
        round.published = published.len();
        for (event, error) in failed {
            self.record_failure(event, &error, done).await?;
            round.failed += 1;
        }
        Ok(round)
    }

    async fn record_failure(&self, event: &OutboxEvent, error: &PublishError, now: i64) -> Result<(), StoreError> {
        let hopeless = matches!(error, PublishError::Unsendable(_));
        let retry = if hopeless || event.attempts >= i64::from(self.config.max_attempts) {
            Retry::Dead(now)
        } else {
            let delay = backoff(event.attempts, self.config.backoff_base, self.config.backoff_max);
            Retry::At(now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)))
        };
        metrics::counter!("ctp_outbox_publish_failures_total", "event_type" => event.event_type.clone()).increment(1);
        match retry {
            Retry::Dead(_) => {
                metrics::counter!("ctp_outbox_dead_total", "event_type" => event.event_type.clone()).increment(1);
                tracing::error!(
                    id = event.id, event_type = %event.event_type, attempts = event.attempts, error = %error,
                    "outbox event is dead; `ctp-issuer outbox redrive {}` puts it back", event.id
                );
            }
            Retry::At(at) => tracing::warn!(
                id = event.id, event_type = %event.event_type, attempts = event.attempts, error = %error,
                retry_in_ms = at - now, "outbox event not published; will retry"
            ),
        }
        let held = self.store.mark_outbox_failed(event.id, &self.owner, &error.to_string(), retry).await?;
        if !held {
            tracing::warn!(id = event.id, "claim on the outbox event expired before its failure was recorded");
        }
        Ok(())
    }

    /// Sets the gauges from the table (every relay reports the same numbers: take the max).
    async fn observe(&self) {
        match self.store.outbox_stats().await {
            Ok(stats) => {
                let now = epoch_millis(SystemTime::now());
                let age = stats.oldest_waiting.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
                metrics::gauge!("ctp_outbox_waiting_events").set(stats.waiting as f64);
                metrics::gauge!("ctp_outbox_dead_events").set(stats.dead as f64);
                metrics::gauge!("ctp_outbox_oldest_waiting_age_seconds").set(age);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the outbox gauges"),
        }
    }
}

/// The delay after try number `attempts`: `base · 2^(attempts−1)`, at most `max`, then
/// jittered to between half and all of it, so that events (and replicas) that failed
/// together do not all come back at the same instant.
pub fn backoff(attempts: i64, base: Duration, max: Duration) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 31)).unwrap_or(31);
    let full = base.saturating_mul(1u32 << doublings).min(max);
    let half = full / 2;
    half.saturating_add(half.mul_f64(fastrand::f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for _ in 0..200 {
            for (attempts, full) in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (40, 60), (i64::MAX, 60)] {
                let d = backoff(attempts, base, max);
                let full = Duration::from_secs(full);
                assert!(d >= full / 2 && d <= full, "attempts {attempts}: {d:?} not in [{:?}, {full:?}]", full / 2);
            }
        }
    }

    #[test]
    fn backoff_is_jittered() {
        let delays: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff(5, Duration::from_secs(1), Duration::from_secs(300))).collect();
        assert!(delays.len() > 1);
    }

    #[test]
    fn backoff_never_panics_on_odd_input() {
        assert_eq!(backoff(0, Duration::ZERO, Duration::ZERO), Duration::ZERO);
        assert!(backoff(-5, Duration::from_secs(1), Duration::from_secs(10)) <= Duration::from_secs(1));
        assert!(backoff(100, Duration::MAX, Duration::MAX) >= Duration::MAX / 2 - Duration::from_secs(1));
    }
}
