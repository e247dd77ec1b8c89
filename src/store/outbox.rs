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
//! SQLite runs one relay; its claim is a single `UPDATE … RETURNING`, atomic by itself.

use std::time::Duration;

use sqlx::FromRow;

use super::{PgStore, SqliteStore, Store, StoreError, db_err};

/// A claimed event, ready to publish.
#[derive(Debug, Clone, FromRow)]
pub struct OutboxEvent {
    /// The message id consumers deduplicate on.
    pub id: i64,
    pub tenant: String,
    pub event_type: String,
    /// The message body: seed 003's JSON envelope, as written with the change.
    pub payload: String,
    pub created_at: i64,
    /// Tries so far, this claim included.
    pub attempts: i64,
}

/// An unpublished event as `outbox list` shows it (without its payload, which may carry a
/// consumer's name and contact details).
#[derive(Debug, Clone, FromRow)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
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

const SQLITE_CLAIM: &str = "UPDATE outbox SET claimed_by = ?, next_attempt_at = ?, attempts = attempts + 1
     WHERE id IN (SELECT id FROM outbox
                  WHERE published_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ?
                  ORDER BY id LIMIT ?)
     RETURNING id, tenant, event_type, payload, created_at, attempts";

const PG_CLAIM: &str = "WITH batch AS (
         SELECT id FROM outbox
         WHERE published_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $3
         ORDER BY id LIMIT $4
         FOR UPDATE SKIP LOCKED)
     UPDATE outbox SET claimed_by = $1, next_attempt_at = $2, attempts = outbox.attempts + 1
     FROM batch WHERE outbox.id = batch.id
     RETURNING outbox.id, outbox.tenant, outbox.event_type, outbox.payload, outbox.created_at, outbox.attempts";

impl SqliteStore {
    pub async fn claim_outbox(&self, owner: &str, now: i64, lease_until: i64, limit: i64) -> Result<Vec<OutboxEvent>, StoreError> {
        let mut events: Vec<OutboxEvent> = sqlx::query_as(SQLITE_CLAIM)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("claim outbox events"))?;
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    pub async fn mark_outbox_published(&self, ids: &[i64], now: i64) -> Result<u64, StoreError> {
        let ids = serde_json::Value::from(ids).to_string();
        let done = sqlx::query(
            "UPDATE outbox SET published_at = ?, claimed_by = NULL
             WHERE published_at IS NULL AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(now)
        .bind(ids)
        .execute(&self.pool)
        .await
        .map_err(db_err("mark outbox events published"))?;
        Ok(done.rows_affected())
    }

    pub async fn mark_outbox_failed(&self, id: i64, owner: &str, error: &str, retry: Retry) -> Result<bool, StoreError> {
        let (next_attempt_at, dead_at) = retry.columns();
        let done = sqlx::query(
            "UPDATE outbox SET last_error = ?, next_attempt_at = ?, dead_at = ?, claimed_by = NULL
             WHERE id = ? AND claimed_by = ? AND published_at IS NULL",
        )
        .bind(error)
        .bind(next_attempt_at)
        .bind(dead_at)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(db_err("record outbox failure"))?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE dead_at IS NULL) AS waiting,
                    MIN(created_at) FILTER (WHERE dead_at IS NULL) AS oldest_waiting,
                    COUNT(*) FILTER (WHERE dead_at IS NOT NULL) AS dead
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("count outbox events"))
    }

    pub async fn list_outbox(&self, dead: bool, limit: i64) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = if dead {
            "SELECT id, tenant, event_type, created_at, attempts, next_attempt_at, last_error, dead_at, claimed_by
             FROM outbox WHERE published_at IS NULL AND dead_at IS NOT NULL ORDER BY id LIMIT ?"
        } else {
            "SELECT id, tenant, event_type, created_at, attempts, next_attempt_at, last_error, dead_at, claimed_by
             FROM outbox WHERE published_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT ?"
        };
        sqlx::query_as(sql).bind(limit).fetch_all(&self.pool).await.map_err(db_err("list outbox events"))
    }

    pub async fn redrive_outbox(&self, ids: Option<&[i64]>, now: i64) -> Result<Vec<i64>, StoreError> {
        let query = match ids {
            None => sqlx::query_as(
                "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = ?, claimed_by = NULL
                 WHERE dead_at IS NOT NULL AND published_at IS NULL RETURNING id",
            )
            .bind(now),
            Some(ids) => sqlx::query_as(
                "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = ?, claimed_by = NULL
                 WHERE dead_at IS NOT NULL AND published_at IS NULL AND id IN (SELECT value FROM json_each(?))
                 RETURNING id",
            )
            .bind(now)
            .bind(serde_json::Value::from(ids).to_string()),
        };
        let rows: Vec<(i64,)> = query.fetch_all(&self.pool).await.map_err(db_err("redrive outbox events"))?;
        Ok(sorted_ids(rows))
    }
}

impl PgStore {
    pub async fn claim_outbox(&self, owner: &str, now: i64, lease_until: i64, limit: i64) -> Result<Vec<OutboxEvent>, StoreError> {
        let mut events: Vec<OutboxEvent> = sqlx::query_as(PG_CLAIM)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("claim outbox events"))?;
        // RETURNING follows no ORDER BY; publish in order of creation all the same.
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    pub async fn mark_outbox_published(&self, ids: &[i64], now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE outbox SET published_at = $1, claimed_by = NULL WHERE published_at IS NULL AND id = ANY($2)")
            .bind(now)
            .bind(ids)
            .execute(&self.pool)
            .await
            .map_err(db_err("mark outbox events published"))?;
        Ok(done.rows_affected())
    }

    pub async fn mark_outbox_failed(&self, id: i64, owner: &str, error: &str, retry: Retry) -> Result<bool, StoreError> {
        let (next_attempt_at, dead_at) = retry.columns();
        let done = sqlx::query(
            "UPDATE outbox SET last_error = $1, next_attempt_at = $2, dead_at = $3, claimed_by = NULL
             WHERE id = $4 AND claimed_by = $5 AND published_at IS NULL",
        )
        .bind(error)
        .bind(next_attempt_at)
        .bind(dead_at)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(db_err("record outbox failure"))?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE dead_at IS NULL) AS waiting,
                    MIN(created_at) FILTER (WHERE dead_at IS NULL) AS oldest_waiting,
                    COUNT(*) FILTER (WHERE dead_at IS NOT NULL) AS dead
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("count outbox events"))
    }

    pub async fn list_outbox(&self, dead: bool, limit: i64) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = if dead {
            "SELECT id, tenant, event_type, created_at, attempts, next_attempt_at, last_error, dead_at, claimed_by
             FROM outbox WHERE published_at IS NULL AND dead_at IS NOT NULL ORDER BY id LIMIT $1"
        } else {
            "SELECT id, tenant, event_type, created_at, attempts, next_attempt_at, last_error, dead_at, claimed_by
             FROM outbox WHERE published_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT $1"
        };
        sqlx::query_as(sql).bind(limit).fetch_all(&self.pool).await.map_err(db_err("list outbox events"))
    }

    pub async fn redrive_outbox(&self, ids: Option<&[i64]>, now: i64) -> Result<Vec<i64>, StoreError> {
        let query = match ids {
            None => sqlx::query_as(
                "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $1, claimed_by = NULL
                 WHERE dead_at IS NOT NULL AND published_at IS NULL RETURNING id",
            )
            .bind(now),
            Some(ids) => sqlx::query_as(
                "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $1, claimed_by = NULL
                 WHERE dead_at IS NOT NULL AND published_at IS NULL AND id = ANY($2) RETURNING id",
            )
            .bind(now)
            .bind(ids),
        };
        let rows: Vec<(i64,)> = query.fetch_all(&self.pool).await.map_err(db_err("redrive outbox events"))?;
        Ok(sorted_ids(rows))
    }
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

fn sorted_ids(rows: Vec<(i64,)>) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.into_iter().map(|(id,)| id).collect();
    ids.sort_unstable();
    ids
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Claims up to `limit` events that are due at `now`, oldest first, for `lease`: until
    /// then no other relay takes them. `owner` names the claiming relay.
    pub async fn claim_outbox(&self, owner: &str, now: i64, lease: Duration, limit: i64) -> Result<Vec<OutboxEvent>, StoreError> {
        let lease_until = now.saturating_add(millis(lease));
        match self {
            Store::Sqlite(s) => s.claim_outbox(owner, now, lease_until, limit).await,
            Store::Postgres(s) => s.claim_outbox(owner, now, lease_until, limit).await,
        }
    }

    /// Records that the broker confirmed these events. Returns how many rows changed (an
    /// event published twice is counted once).
    pub async fn mark_outbox_published(&self, ids: &[i64], now: i64) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        match self {
            Store::Sqlite(s) => s.mark_outbox_published(ids, now).await,
            Store::Postgres(s) => s.mark_outbox_published(ids, now).await,
        }
    }

    /// Records a failed publish of an event `owner` still holds; `false` if it no longer
    /// does (its lease ran out and another relay took it, or it was published meanwhile).
    pub async fn mark_outbox_failed(&self, id: i64, owner: &str, error: &str, retry: Retry) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.mark_outbox_failed(id, owner, error, retry).await,
            Store::Postgres(s) => s.mark_outbox_failed(id, owner, error, retry).await,
        }
    }

    /// How many events wait, since when, and how many are dead.
    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        match self {
            Store::Sqlite(s) => s.outbox_stats().await,
            Store::Postgres(s) => s.outbox_stats().await,
        }
    }

    /// Unpublished events, oldest first: the dead ones, or those still waiting.
    pub async fn list_outbox(&self, dead: bool, limit: i64) -> Result<Vec<OutboxEntry>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_outbox(dead, limit).await,
            Store::Postgres(s) => s.list_outbox(dead, limit).await,
        }
    }

    /// Puts dead events back in line with a fresh count of tries: those in `ids`, or every
    /// dead event when `ids` is `None`. Returns the ids that were dead and now wait again.
    pub async fn redrive_outbox(&self, ids: Option<&[i64]>, now: i64) -> Result<Vec<i64>, StoreError> {
        match self {
            Store::Sqlite(s) => s.redrive_outbox(ids, now).await,
            Store::Postgres(s) => s.redrive_outbox(ids, now).await,
        }
    }
}
