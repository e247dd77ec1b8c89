//! The SQLite store: the embedded default. WAL journal, one writer at a time; every write
//! transaction starts `BEGIN IMMEDIATE` so that a read-then-write transaction waits for the
//! write lock up front instead of failing with `SQLITE_BUSY` halfway through (read-only
//! transactions start a plain `BEGIN`). Visa's notifications are written by
//! `store::sqlite_attempts`, on a connection of their own.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::batch::GroupCommit;
use super::sqlite_attempts::SqliteAttempts;
use super::{AttemptOutcome, AttemptRow, KitRecord, KitUpsert, StoreError, db_err, epoch_millis};
use crate::visa::VerifiedNotification;

/// How long a connection waits for SQLite's write lock before giving up.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every connection's settings, the pool's (through sqlx) and the notification writer's
/// and reader's (through rusqlite, `store::sqlite_attempts`) alike.
pub(super) const CONNECTION_PRAGMAS: &[(&str, &str)] = &[
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
    // Statement journals in memory rather than in a temp file.
    ("temp_store", "memory"),
    // 8 MiB of page cache per connection (default 2 MiB): the notification writer's
    // inserts land on random pages of the envelope-hash index.
    ("cache_size", "-8192"),
];

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// Visa's notifications: duplicate checks and writes, batched (see `store::batch`).
    attempts: GroupCommit,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT);
        let options = CONNECTION_PRAGMAS.iter().fold(options, |options, (name, value)| options.pragma(*name, *value));
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Url(format!("cannot create {}: {e}", parent.display())))?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            // A connection to a local file does not go stale; the default ping before
            // every acquire was a round trip to the connection's thread per query.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(db_err("connect"))?;
        // One writer: SQLite has one write lock, and one transaction per batch of
        // notifications replaces a queue of transactions waiting on it.
        // The writer never checkpoints the WAL itself: the checkpointer does, in the
        // background (see `store::checkpoint`).
        tokio::spawn(super::checkpoint::run(pool.clone(), options.clone()));
        let writer = SqliteAttempts::new(options.get_filename().to_owned());
        let attempts = GroupCommit::spawn(writer, 1, 1);
        Ok(Self { pool, attempts })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        Ok(MIGRATOR.run(&self.pool).await?)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err("ping"))?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn upsert_kit(&self, kit: &KitRecord) -> Result<KitUpsert, StoreError> {
        let now = epoch_millis(SystemTime::now());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err("begin"))?;

        let owner: Option<(String, String)> = sqlx::query_as("SELECT tenant, kit_no FROM kit WHERE pan_fingerprint = ?")
            .bind(&kit.pan_fingerprint)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("find card owner"))?;
        if owner.is_some_and(|(t, k)| t != kit.tenant || k != kit.kit_no) {
            return Ok(KitUpsert::CardTaken);
        }

        let entity_changed = sqlx::query(
            "INSERT INTO entity (tenant, entity_id, first_name, last_name, email, phone, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tenant, entity_id) DO UPDATE SET
                 first_name = COALESCE(excluded.first_name, entity.first_name),
                 last_name  = COALESCE(excluded.last_name, entity.last_name),
                 email      = COALESCE(excluded.email, entity.email),
                 phone      = COALESCE(excluded.phone, entity.phone),
                 updated_at = excluded.updated_at
             WHERE COALESCE(excluded.first_name, entity.first_name) IS NOT entity.first_name
                OR COALESCE(excluded.last_name, entity.last_name) IS NOT entity.last_name
                OR COALESCE(excluded.email, entity.email) IS NOT entity.email
                OR COALESCE(excluded.phone, entity.phone) IS NOT entity.phone",
        )
        .bind(&kit.tenant)
        .bind(&kit.entity_id)
        .bind(&kit.first_name)
        .bind(&kit.last_name)
        .bind(&kit.email)
        .bind(&kit.phone)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err("upsert entity"))?
        .rows_affected()
            > 0;

        let existing: Option<(String, String, Option<String>)> =
            sqlx::query_as("SELECT entity_id, pan_fingerprint, expiry FROM kit WHERE tenant = ? AND kit_no = ?")
                .bind(&kit.tenant)
                .bind(&kit.kit_no)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("read kit"))?;
        let outcome = match existing {
            None => {
                sqlx::query(
                    "INSERT INTO kit (tenant, kit_no, entity_id, pan_fingerprint, pan_sealed, pan_last4, expiry, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&kit.tenant)
                .bind(&kit.kit_no)
                .bind(&kit.entity_id)
                .bind(&kit.pan_fingerprint)
                .bind(&kit.pan_sealed)
                .bind(&kit.pan_last4)
                .bind(&kit.expiry)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err("insert kit"))?;
                KitUpsert::Inserted
            }
            Some((entity_id, fingerprint, expiry))
                if entity_id == kit.entity_id && fingerprint == kit.pan_fingerprint && expiry == kit.expiry =>
            {
                if entity_changed {
                    KitUpsert::Updated
                } else {
                    KitUpsert::Unchanged
                }
            }
            Some(_) => {
                sqlx::query(
                    "UPDATE kit SET entity_id = ?, pan_fingerprint = ?, pan_sealed = ?, pan_last4 = ?, expiry = ?, updated_at = ?
                     WHERE tenant = ? AND kit_no = ?",
                )
                .bind(&kit.entity_id)
                .bind(&kit.pan_fingerprint)
                .bind(&kit.pan_sealed)
                .bind(&kit.pan_last4)
                .bind(&kit.expiry)
                .bind(now)
                .bind(&kit.tenant)
                .bind(&kit.kit_no)
                .execute(&mut *tx)
                .await
                .map_err(db_err("update kit"))?;
                KitUpsert::Updated
            }
        };
        tx.commit().await.map_err(db_err("commit kit"))?;
        Ok(outcome)
    }

    /// Whether an envelope with this hash has been recorded; concurrent checks share one
    /// query (see `store::batch`).
    pub async fn attempt_seen(&self, envelope_hash: &str) -> Result<bool, StoreError> {
        self.attempts.attempt_seen(envelope_hash).await
    }

    /// Records a verified notification; concurrent ones share one transaction (see
    /// `store::batch`), each with the outcome it would have had alone.
    pub async fn record_attempt(&self, n: &VerifiedNotification, fingerprints: &[String]) -> Result<AttemptOutcome, StoreError> {
        self.attempts.record_attempt(n, fingerprints).await
    }

    pub async fn recent_attempts(&self, limit: i64) -> Result<Vec<AttemptRow>, StoreError> {
        sqlx::query_as(
            "SELECT id, tenant, token_requestor_id, entity_id, kit_no, pan_last4, first_name, last_name, email, phone,
                    jws_kid, jwe_kid, iat, received_at
             FROM enrollment_attempt ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("list attempts"))
    }

    pub async fn pending_outbox(&self, limit: i64) -> Result<Vec<super::outbox::OutboxEvent>, StoreError> {
        sqlx::query_as(
            "SELECT id, tenant, event_type, payload, created_at, attempts
             FROM outbox WHERE published_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("list outbox"))
    }
}
