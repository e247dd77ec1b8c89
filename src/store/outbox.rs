//! The outbox's own operations: the relay's claim → publish → record cycle, and the
//! operator's list and redrive.
//!
//! # How a claim survives the publish: a lease, not a held transaction
//!
//! A claim is one short statement that marks a batch as the relay's own: `claimed_by` is
//! set to the relay's id, `attempts` goes up by one and `next_attempt_at` is pushed out by
//! the lease. The publish then runs with no transaction open, and a second short statement
//! records the outcome. On PostgreSQL the claim selects its rows `FOR UPDATE SKIP LOCKED`,
//! so two replicas claiming at the same instant take different rows instead of queueing
//! behind each other; once the claim commits, the pushed-out `next_attempt_at` is what
//! keeps every other relay away.
//!
//! Holding a transaction (and its row locks) across the publish was the alternative. We
//! chose the lease because:
//! - a broker that is slow or down would otherwise pin one database connection per
//!   replica, idle in transaction, for as long as the publish waits;
//! - on SQLite a write transaction held across a network call would block every other
//!   writer, Visa's notifications included;
//! - the failure bookkeeping (`attempts`, `next_attempt_at`, `last_error`) is committed
//!   whatever happens to the publish, and an operator can see which relay holds a row.
//!
//! The price: a relay that dies mid-publish leaves its rows until the lease runs out
//! (configuration keeps the lease well above the publish timeout), and they are then
//! published again — delivery is at least once, as it is with any outbox. Since
//! `attempts` is counted at the claim, an event that crashes the relay every time still
//! ends up dead instead of looping forever.
//!
//! Recording a failure only touches a row the relay still holds (`claimed_by` matches), so
//! a relay that outlived its lease cannot reschedule a row another relay is publishing.
//! Recording success needs no such check: the broker has the message, whoever sent it.
//!
//! SQLite runs one relay; its claim is a single `UPDATE … RETURNING` on the store's one
//! writer, atomic by itself.

use std::time::Duration;

use super::plan::{Expect, Plan};
use super::value::{Row, params};
use super::{Store, StoreError, millis, sql};

/// A claimed event, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The message id consumers deduplicate on.
    pub id: i64,
    pub tenant: String,
    pub event_type: String,
    /// The message body: M2P's JSON envelope, as written with the change.
    pub payload: String,
    pub created_at: i64,
    /// Tries so far, this claim included.
    pub attempts: i64,
}

impl OutboxEvent {
    fn read(row: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.int(0)?,
            tenant: row.text(1)?,
            event_type: row.text(2)?,
            payload: row.text(3)?,
            created_at: row.int(4)?,
            attempts: row.int(5)?,
        })
    }
}

/// An unpublished event as `outbox list` shows it (without its payload, which may carry a
/// consumer's name and contact details).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    pub tenant: String,
    pub event_type: String,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub dead_at: Option<i64>,
    pub claimed_by: Option<String>,
}

/// What the relay's gauges report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStats {
    /// Neither published nor dead (claimed ones included).
    pub waiting: i64,
    /// `created_at` of the oldest waiting event.
    pub oldest_waiting: Option<i64>,
    pub dead: i64,
}

/// What to do with an event whose publish failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again from this time (epoch milliseconds).
    At(i64),
    /// No more tries: dead since this time, until an operator redrives it.
    Dead(i64),
}

impl Retry {
    /// `(next_attempt_at, dead_at)`.
    fn columns(self) -> (i64, Option<i64>) {
        match self {
            Retry::At(at) => (at, None),
            Retry::Dead(at) => (at, Some(at)),
        }
    }
}

impl Store {
    /// Claims up to `limit` events that are due at `now`, oldest first, for `lease`: until
    /// then no other relay takes them. `owner` names the claiming relay.
    pub async fn claim_outbox(&self, owner: &str, now: i64, lease: Duration, limit: i64) -> Result<Vec<OutboxEvent>, StoreError> {
        let mut plan = Plan::new("claim outbox events");
        let lease_until = now.saturating_add(millis(lease));
        let claim = plan.step(sql::claim_outbox(self.dialect()), params![owner, lease_until, now, limit], Expect::Rows);
        let applied = self.apply(plan).await?;
        let mut events = applied.rows(claim).iter().map(OutboxEvent::read).collect::<Result<Vec<_>, _>>()?;
        // RETURNING follows no ORDER BY; publish in order of creation all the same.
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    /// Records that the broker confirmed these events. Returns how many rows changed (an
    /// event published twice is counted once).
    pub async fn mark_outbox_published(&self, ids: &[i64], now: i64) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut plan = Plan::new("mark outbox events published");
        let mark = plan.step(sql::mark_outbox_published(self.dialect()), params![now, ids.to_vec()], Expect::Any);
        Ok(self.apply(plan).await?.affected(mark))
    }

    /// Records a failed publish of an event `owner` still holds; `false` if it no longer
    /// does (its lease ran out and another relay took it, or it was published meanwhile).
    pub async fn mark_outbox_failed(&self, id: i64, owner: &str, error: &str, retry: Retry) -> Result<bool, StoreError> {
        let (next_attempt_at, dead_at) = retry.columns();
        let mut plan = Plan::new("record outbox failure");
        let mark = plan.step(sql::MARK_OUTBOX_FAILED, params![error, next_attempt_at, dead_at, id, owner], Expect::Any);
        Ok(self.apply(plan).await?.affected(mark) == 1)
    }

    /// How many events wait, since when, and how many are dead.
    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let rows = self.query("count outbox events", sql::OUTBOX_STATS, Vec::new()).await?;
        let row = rows.first().ok_or(StoreError::Decode { column: 0, expected: "one row of counts" })?;
        Ok(OutboxStats { waiting: row.int(0)?, oldest_waiting: row.opt_int(1)?, dead: row.int(2)? })
    }

    /// Unpublished events, oldest first: the dead ones, or those still waiting.
    pub async fn list_outbox(&self, dead: bool, limit: i64) -> Result<Vec<OutboxEntry>, StoreError> {
        let statement = if dead { sql::LIST_DEAD_OUTBOX } else { sql::LIST_WAITING_OUTBOX };
        let rows = self.query("list outbox events", statement, params![limit]).await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxEntry {
                    id: row.int(0)?,
                    tenant: row.text(1)?,
                    event_type: row.text(2)?,
                    created_at: row.int(3)?,
                    attempts: row.int(4)?,
                    next_attempt_at: row.int(5)?,
                    last_error: row.opt_text(6)?,
                    dead_at: row.opt_int(7)?,
                    claimed_by: row.opt_text(8)?,
                })
            })
            .collect()
    }

    /// Events not yet published, with their payloads, oldest first (for inspection; the
    /// relay claims its own).
    pub async fn pending_outbox(&self, limit: i64) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = self.query("list outbox events", sql::WAITING_OUTBOX_EVENTS, params![limit]).await?;
        rows.iter().map(OutboxEvent::read).collect()
    }

    /// Puts dead events back in line with a fresh count of tries: those in `ids`, or every
    /// dead event. Returns the ids redriven, in order.
    pub async fn redrive_outbox(&self, ids: Option<&[i64]>, now: i64) -> Result<Vec<i64>, StoreError> {
        let mut plan = Plan::new("redrive outbox events");
        match ids {
            None => {
                plan.step(sql::REDRIVE_ALL_OUTBOX, params![now], Expect::Rows);
            }
            Some(ids) => {
                for id in ids {
                    plan.step(sql::REDRIVE_OUTBOX, params![now, *id], Expect::Rows);
                }
            }
        }
        let steps = plan.steps.len();
        let applied = self.apply(plan).await?;
        let mut redriven = Vec::new();
        for step in 0..steps {
            for row in applied.rows(step) {
                redriven.push(row.int(0)?);
            }
        }
        redriven.sort_unstable();
        Ok(redriven)
    }
}
