//! What the store forgets, and when: rows that only served a moment (published outbox
//! events, the webhook ids of applied callbacks, idempotency keys, the card-details page's
//! expired links) are deleted once they can no longer matter, so that no table grows
//! without bound with traffic. The records of the service's business (enrollment
//! attempts, request traces, statuses) are kept.
//!
//! A janitor in every replica deletes in small batches (at most [`BATCH`] rows a
//! statement), oldest first, through indexes of their own (migrations 0005 and 0006), so
//! that it never holds the write lock long nor scans a table.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::plan::{Expect, Plan};
use super::value::params;
use super::{Store, StoreError, epoch_millis, millis, sql};
use crate::setting::Problems;

/// Rows deleted by one statement.
pub const BATCH: i64 = 1000;

/// The `[retention]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// A published outbox event is kept this long after its publication (for an operator
    /// who wants to see what went out). Default: 7d.
    #[serde(with = "crate::setting::duration")]
    pub published_events: Duration,
    /// A callback's webhook id is kept this long, to answer a redelivery as a duplicate.
    /// Past the callbacks' timestamp tolerance (`saas.webhook_tolerance`) a redelivery is
    /// refused by its timestamp anyway. Default: 1d.
    #[serde(with = "crate::setting::duration")]
    pub callback_ids: Duration,
    /// An Idempotency-Key is remembered this long after its first use. Default: 24h.
    #[serde(with = "crate::setting::duration")]
    pub idempotency_keys: Duration,
    /// A card-details link's row is kept this long after the link expired. An expired
    /// link is refused by its own token first, so the row serves only an operator looking
    /// into a complaint. Default: 1h.
    #[serde(with = "crate::setting::duration")]
    pub widget_links: Duration,
    /// How often the janitor looks. Default: 1m.
    #[serde(with = "crate::setting::duration")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            published_events: Duration::from_secs(7 * 24 * 3600),
            callback_ids: Duration::from_secs(24 * 3600),
            idempotency_keys: Duration::from_secs(24 * 3600),
            widget_links: Duration::from_secs(3600),
            interval: Duration::from_secs(60),
        }
    }
}

impl RetentionConfig {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut problems = Problems::new();
        problems.require(!self.interval.is_zero(), "retention.interval", "must be positive");
        problems.require(
            self.idempotency_keys >= Duration::from_secs(60),
            "retention.idempotency_keys",
            "must be at least 1m (a retry must find its key)",
        );
        problems.require(self.callback_ids >= Duration::from_secs(3600), "retention.callback_ids", "must be at least 1h");
        problems.into_result()
    }
}

/// Rows one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub published_events: u64,
    pub callback_ids: u64,
    pub idempotency_keys: u64,
    pub widget_links: u64,
}

impl Store {
    /// Deletes what `retention` says may go, as of `now`, in batches until none is left.
    pub async fn purge(&self, retention: &RetentionConfig, now: SystemTime) -> Result<Purged, StoreError> {
        let now = epoch_millis(now);
        let before = |keep: Duration| now.saturating_sub(millis(keep));
        Ok(Purged {
            published_events: self
                .purge_all("purge published events", sql::PURGE_PUBLISHED_OUTBOX, before(retention.published_events))
                .await?,
            callback_ids: self.purge_all("purge callback ids", sql::PURGE_CALLBACKS, before(retention.callback_ids)).await?,
            idempotency_keys: self
                .purge_all("purge idempotency keys", sql::PURGE_IDEMPOTENCY_KEYS, before(retention.idempotency_keys))
                .await?,
            widget_links: self.purge_all("purge widget links", sql::PURGE_WIDGET_LINKS, before(retention.widget_links)).await?,
        })
    }

    async fn purge_all(&self, op: &'static str, statement: &'static str, before: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let mut plan = Plan::new(op);
            let step = plan.step(statement, params![before, BATCH], Expect::Any);
            let n = self.apply(plan).await?.affected(step);
            deleted += n;
            if n < BATCH as u64 {
                return Ok(deleted);
            }
        }
    }
}

/// Purges every `retention.interval` until `shutdown`.
pub async fn janitor(store: Store, retention: RetentionConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(retention.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.purge(&retention, SystemTime::now()).await {
            Ok(purged) => {
                metrics::counter!("ctp_retention_deleted_total", "table" => "outbox").increment(purged.published_events);
                metrics::counter!("ctp_retention_deleted_total", "table" => "saas_callback").increment(purged.callback_ids);
                metrics::counter!("ctp_retention_deleted_total", "table" => "idempotency_request").increment(purged.idempotency_keys);
                metrics::counter!("ctp_retention_deleted_total", "table" => "widget_link").increment(purged.widget_links);
            }
            Err(e) => tracing::warn!(error = %e, "retention pass failed; trying again at the next interval"),
        }
    }
}
