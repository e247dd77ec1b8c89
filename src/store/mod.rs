//! Persistence behind one interface, two real implementations: SQLite (the embedded
//! default, one process) and PostgreSQL (several replicas). Each has its own migrations
//! under `migrations/<dialect>/` and its own SQL, checked at run time.
//!
//! The interface is an enum rather than a trait object: two variants, known at compile
//! time, and every method stays a plain `async fn`.
//!
//! Times are stored as epoch milliseconds (BIGINT) in both dialects, so that the two
//! schemas and their queries stay alike.

mod batch;
mod checkpoint;
pub mod config;
pub mod enrollment;
pub mod outbox;
mod postgres;
mod sqlite;
mod sqlite_attempts;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;

use crate::config::DatabaseConfig;
use crate::visa::VerifiedNotification;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A database failure. Callers map it to their own boundary (a 500 for Visa, a failed row
/// for an import); its message names the operation, never the data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error during {op}: {source}")]
    Database { op: &'static str, source: sqlx::Error },
    /// From the SQLite notification writer, which calls SQLite through rusqlite
    /// (`store::sqlite_attempts`).
    #[error("database error during {op}: {source}")]
    Sqlite { op: &'static str, source: rusqlite::Error },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database url: {0}")]
    Url(String),
}

pub(crate) fn db_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { op, source }
}

/// One card of the issuer's registry, ready to store: the card number only as a
/// fingerprint, a sealed copy and its last four digits.
#[derive(Debug, Clone)]
pub struct KitRecord {
    pub tenant: String,
    pub entity_id: String,
    pub kit_no: String,
    pub pan_fingerprint: String,
    pub pan_sealed: String,
    pub pan_last4: String,
    pub expiry: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// What storing a [`KitRecord`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KitUpsert {
    Inserted,
    Updated,
    Unchanged,
    /// The card number already belongs to another kit; nothing was written.
    CardTaken,
}

/// The kit a notification matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedKit {
    pub tenant: String,
    pub entity_id: String,
    pub kit_no: String,
}

/// What recording a verified notification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Recorded {
        attempt_id: String,
        kit: MatchedKit,
    },
    /// The same envelope was recorded before; nothing new was written.
    Duplicate,
    /// No kit has this card number; nothing was written.
    UnknownCard,
}

/// A recorded enrollment attempt, as listed by `ctp-issuer attempts list`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: String,
    pub tenant: String,
    pub token_requestor_id: String,
    pub entity_id: String,
    pub kit_no: String,
    pub pan_last4: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub jws_kid: String,
    pub jwe_kid: String,
    pub iat: Option<i64>,
    pub received_at: i64,
}

/// The database, whichever it is.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Dispatches a method call to whichever store this is.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens a pool on `config.url`. Does not migrate: see [`Store::migrate`].
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let url = config.url.expose_secret();
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::connect(url, config.max_connections, config.acquire_timeout).await?))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres(PgStore::connect(url, config.max_connections, config.acquire_timeout).await?))
        } else {
            Err(StoreError::Url("must start with sqlite: or postgres:".into()))
        }
    }

    /// Brings the schema up to date. Every command that touches the database calls this
    /// first, so a fresh database just works.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self.migrate())
    }

    /// A round trip to the database, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    /// Creates or updates the kit and its entity. Identical data changes nothing, so
    /// re-importing a file is a no-op.
    pub async fn upsert_kit(&self, kit: &KitRecord) -> Result<KitUpsert, StoreError> {
        dispatch!(self.upsert_kit(kit))
    }

    /// Whether an envelope with this hash has been recorded already.
    pub async fn attempt_seen(&self, envelope_hash: &str) -> Result<bool, StoreError> {
        dispatch!(self.attempt_seen(envelope_hash))
    }

    /// In one transaction: find the kit by any of `fingerprints`, insert the attempt
    /// (unique on the envelope hash) and its outbox event.
    pub async fn record_attempt(&self, notification: &VerifiedNotification, fingerprints: &[String]) -> Result<AttemptOutcome, StoreError> {
        dispatch!(self.record_attempt(notification, fingerprints))
    }

    /// The most recent attempts, newest first.
    pub async fn recent_attempts(&self, limit: i64) -> Result<Vec<AttemptRow>, StoreError> {
        dispatch!(self.recent_attempts(limit))
    }

    /// Outbox events not yet published, oldest first (for inspection; the relay claims
    /// its own through [`outbox`]).
    pub async fn pending_outbox(&self, limit: i64) -> Result<Vec<outbox::OutboxEvent>, StoreError> {
        dispatch!(self.pending_outbox(limit))
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        dispatch!(self.close())
    }
}

/// Milliseconds since the Unix epoch.
pub fn epoch_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as i64
}

/// The new attempt's id: a UUIDv7, so that ids sort by arrival.
pub(crate) fn new_attempt_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
