//! Persistence behind one interface, on two real databases: SQLite (the embedded default,
//! one process) and PostgreSQL (several replicas). The store stores: it knows tables and
//! statements, not the rules that decide what to write, which are the domain's.
//!
//! How one interface covers both:
//! - every statement is written once ([`sql`]), with the few real dialect differences as
//!   named branches;
//! - a read is a statement whose [`value::Row`]s are decoded by position, the same code for
//!   both databases;
//! - a write is a [`plan::Plan`], statements with guards, run in one transaction by each
//!   database's executor. A guard that fails rolls the plan back as a conflict, and the
//!   domain reads again and decides again;
//! - the batched write of Visa's notifications is the one operation written per database
//!   (`sqlite::attempts`, `postgres::attempts`), because the benchmarks justify it.
//!
//! The operations are grouped by what they store: [`registry`] (entities and kits),
//! [`enrollment`] (Click to Pay statuses and request traces), [`attempts`] (Visa's
//! notifications), [`idempotency`], [`outbox`], [`widget`] (the card-details page's
//! one-time links). How SQLite is reached (one writer thread,
//! readers on the caller's thread, a checkpointer, the migrator) is explained in
//! `sqlite`; PostgreSQL is a sqlx pool (`postgres`).
//!
//! Times are epoch milliseconds (BIGINT) in both schemas.

pub mod attempts;
pub mod config;
pub mod enrollment;
pub mod idempotency;
pub mod outbox;
pub mod plan;
pub mod registry;
pub mod retention;
pub mod sql;
pub mod value;
pub mod widget;

mod batch;
mod postgres;
mod sqlite;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::sync::Notify;

pub use attempts::{AttemptOutcome, AttemptRow, MatchedKit};
pub use registry::{KitRecord, KitUpsert};

use config::DatabaseConfig;
use plan::{Applied, Plan};
use sql::Dialect;
use value::{Param, Row};

/// A database failure. Callers map it to their own boundary (a 500 for Visa, a failed row
/// for an import); its message names the operation, never the data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error during {op}: {source}")]
    Database { op: &'static str, source: sqlx::Error },
    #[error("database error during {op}: {source}")]
    Sqlite { op: &'static str, source: rusqlite::Error },
    #[error("column {column} of a result is not {expected}")]
    Decode { column: usize, expected: &'static str },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database url: {0}")]
    Url(String),
    /// The SQLite writer thread is gone (the store was closed, or the thread could not start).
    #[error("the database writer is not running ({0})")]
    WriterGone(&'static str),
}

pub(crate) fn db_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { op, source }
}

/// The database, whichever it is. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Rung when this process commits an outbox event, so that the relay in this process
    /// need not wait for its next poll (other replicas' events wait for that).
    outbox_written: Arc<Notify>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

impl Store {
    /// Opens the database at `config.url` and brings its schema up to date (every command
    /// that touches the database goes through here, so a fresh database just works).
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let url = config.url.expose_secret();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::Sqlite::open(url).await?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres(postgres::Postgres::connect(url, config.max_connections, config.acquire_timeout).await?)
        } else {
            return Err(StoreError::Url("must start with sqlite: or postgres:".into()));
        };
        Ok(Self::over(backend))
    }

    /// Opens an existing SQLite database without creating or migrating it: for commands
    /// that only read, so that one run from the wrong directory does not leave an empty
    /// database behind. PostgreSQL opens as usual.
    pub async fn open_existing(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let url = config.url.expose_secret();
        match url.strip_prefix("sqlite:") {
            Some(_) => Ok(Self::over(Backend::Sqlite(sqlite::Sqlite::open_existing(url).await?))),
            None => Self::connect(config).await,
        }
    }

    fn over(backend: Backend) -> Self {
        Self { backend, outbox_written: Arc::new(Notify::new()) }
    }

    /// Completes once this process has committed an outbox event since the last time it
    /// completed (one wake-up is kept while nobody waits).
    pub async fn outbox_written(&self) {
        self.outbox_written.notified().await
    }

    pub(crate) fn announce_outbox_event(&self) {
        self.outbox_written.notify_one();
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A round trip to the database, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.query("ping", "SELECT 1", Vec::new()).await.map(drop)
    }

    /// Closes the database: the pool, or SQLite's writer and checkpointer.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close(),
            Backend::Postgres(p) => p.close().await,
        }
    }

    /// One read statement.
    pub(crate) async fn query(&self, op: &'static str, sql: &'static str, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.query(op, sql, &params),
            Backend::Postgres(p) => p.query(op, sql, &params).await,
        }
    }

    /// Several read statements that see one snapshot of the database.
    pub(crate) async fn query_together(
        &self,
        op: &'static str,
        statements: Vec<(&'static str, Vec<Param>)>,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.query_together(op, &statements),
            Backend::Postgres(p) => p.query_together(op, &statements).await,
        }
    }

    /// Whether a Visa envelope with this digest has been recorded.
    pub async fn attempt_seen(&self, envelope_digest: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(!self.query("check duplicate", sql::ATTEMPT_SEEN, value::params![envelope_digest]).await?.is_empty()),
            Backend::Postgres(p) => p.attempts.attempt_seen(envelope_digest).await,
        }
    }

    /// Finds the kit of a verified notification, inserts the attempt (unique on the envelope
    /// digest) and its outbox event, in one transaction shared with the writes around it
    /// (see [`attempts`]).
    pub async fn record_attempt(&self, write: attempts::AttemptWrite) -> Result<AttemptOutcome, StoreError> {
        let outcome = match &self.backend {
            Backend::Sqlite(s) => sqlite::attempts::record(s, write).await?,
            Backend::Postgres(p) => p.attempts.record_attempt(write).await?,
        };
        if matches!(outcome, AttemptOutcome::Recorded { .. }) {
            self.announce_outbox_event();
        }
        Ok(outcome)
    }

    /// Runs a plan in one transaction.
    pub(crate) async fn apply(&self, plan: Plan) -> Result<Applied, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.apply(plan).await,
            Backend::Postgres(p) => p.apply(plan).await,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn epoch_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as i64
}

/// A duration in milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
